#!/usr/bin/env bash
# Starts the test control plane on loopback, as controller-runtime's envtest
# does: etcd, kube-apiserver and kube-controller-manager with its default
# controllers (namespaces finish deleting, owners garbage-collect, Deployments
# get ReplicaSets and Pods), with throwaway certificates; and kube-scheduler
# with kwok, which plays the kubelet of fake Nodes, so that Pods are scheduled
# and reach Running.
#
#   [KINFORMER_NODES=N] spec/cluster/up.sh [STATE_DIR]   (default: <repo root>/.cluster)
#
# KINFORMER_NODES: how many fake Nodes (kwok-node-0 ...; default 3, 0 for
# none: Pods then stay Pending). up.sh returns once they are Ready and
# schedulable. Given to a running cluster, it adds or removes Nodes to match.
#
# STATE_DIR gets the binaries (bin -> build cache), the PKI, the kubeconfigs,
# a sourceable `env`, the logs and the pids that down.sh stops. Running it
# again while the cluster is healthy only prints how to use it (and matches
# the Nodes to KINFORMER_NODES when that is given).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$here/procs.sh"

state=$(cluster_abspath "${1:-$root/.cluster}")
nodes=${KINFORMER_NODES:-3}
if ! [[ $nodes =~ ^[0-9]{1,4}$ ]] || [ "$((10#$nodes))" -gt 1000 ]; then
  echo "up.sh: KINFORMER_NODES must be a number from 0 to 1000, not '$nodes'" >&2
  exit 1
fi
nodes=$((10#$nodes))
umask 077 # keys, tokens and kubeconfigs with embedded keys stay private

# One up.sh or down.sh at a time per checkout; the lock is the script itself,
# so no lock file is left behind. Every child closes fd 9.
exec 9<"$here/up.sh"
flock -w 600 9 || { echo "up.sh: another up.sh/down.sh holds the lock" >&2; exit 1; }

print_usage() {
  local server
  server=$(sed -n 's/^export KINFORMER_SERVER=//p' "$state/env")
  echo "kinformer test cluster: $server (state in $state)"
  echo "  export KUBECONFIG=$state/kubeconfig"
  echo "  $state/bin/kubectl get ns,nodes      (fake nodes, played by kwok: $(sed -n 's/^export KINFORMER_NODES=//p' "$state/env"))"
  if [ "$state" = "$root/.cluster" ]; then
    echo "  tests: . $state/env    stop: $here/down.sh"
  else
    echo "  tests: . $state/env    stop: $here/down.sh $state"
  fi
}

curl_admin() { # PATH; prints the body, fails unless 2xx
  curl -sf --max-time 5 --cacert "$state/pki/ca.crt" \
    --cert "$state/pki/admin.crt" --key "$state/pki/admin.key" "$server$1"
}

kubectl_admin() { "$state/bin/kubectl" --kubeconfig="$state/kubeconfig" "$@" 9<&-; }

die() { echo "up.sh: $*" >&2; exit 1; }

wait_for() { # NAME SECONDS WHAT COMMAND...
  local name=$1 secs=$2 what=$3 i
  shift 3
  for ((i = 0; i < secs * 10; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    cluster_running_pid "$state" "$name" >/dev/null || die "$name exited before $what"
    sleep 0.1
  done
  die "$what: no answer after ${secs}s"
}

# The fake Nodes kwok-node-0 .. N-1: kwok manages the Nodes that carry its
# annotation. They have no taint, so that the Pods of a plain Deployment (no
# tolerations) are scheduled on them. kwok-node-N and up are deleted; Nodes
# named otherwise (a user's own) are left alone.
apply_nodes() { # N
  local n=$1 i name
  if [ "$n" -gt 0 ]; then
    for ((i = 0; i < n; i++)); do
      cat <<EOF
---
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    type: kwok
    kubernetes.io/hostname: kwok-node-$i
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
EOF
    done | kubectl_admin apply -f - >/dev/null
  fi
  for name in $(kubectl_admin get nodes -o 'jsonpath={.items[*].metadata.name}'); do
    [[ $name =~ ^kwok-node-([0-9]{1,4})$ ]] || continue
    if [ "$((10#${BASH_REMATCH[1]}))" -ge "$n" ]; then
      kubectl_admin delete node "$name" --wait=false >/dev/null
    fi
  done
  sed -i "s/^export KINFORMER_NODES=.*/export KINFORMER_NODES=$n/" "$state/env"
}

# kwok-node-0 .. N-1 and no other kwok-node-<n>, each Ready and without
# taints: kwok has initialized them and the node lifecycle controller has
# lifted the not-ready taint that every new Node gets, so a Pod created now is
# scheduled at once.
nodes_ready() { # N
  curl_admin /api/v1/nodes | python3 -c '
import json, re, sys
ours = {n["metadata"]["name"]: n for n in json.load(sys.stdin)["items"]
        if re.fullmatch(r"kwok-node-[0-9]+", n["metadata"]["name"])}
want = {"kwok-node-%d" % i for i in range(int(sys.argv[1]))}
ready = {name for name, n in ours.items() if not n["spec"].get("taints") and any(
    c["type"] == "Ready" and c["status"] == "True" for c in n.get("status", {}).get("conditions", []))}
sys.exit(0 if set(ours) == want == ready else 1)' "$1"
}

healthy() {
  local name
  [ -f "$state/$cluster_marker" ] && [ -f "$state/env" ] && [ -f "$state/kubeconfig" ] || return 1
  for name in $cluster_procs_stop_order; do
    cluster_running_pid "$state" "$name" >/dev/null || return 1
  done
  server=$(sed -n 's/^export KINFORMER_SERVER=//p' "$state/env")
  [ "$(curl_admin /readyz 2>/dev/null)" = ok ]
}

if healthy; then
  if [ -n "${KINFORMER_NODES:-}" ]; then
    apply_nodes "$nodes"
    wait_for kwok 60 "$nodes Ready fake nodes" nodes_ready "$nodes"
  fi
  print_usage
  exit 0
fi

start_time=${EPOCHREALTIME//[.,]/}
# Whatever is left of an earlier cluster (a crash, a failed start) goes first:
# a fresh etcd and fresh PKI, so nothing stale survives. down.sh refuses a
# directory it did not make.
if [ -e "$state" ] || [ -L "$state" ]; then
  KINFORMER_CLUSTER_LOCKED=1 "$here/down.sh" "$state" 9<&-
fi

bindir=$("$here/build.sh" 9<&-)
mkdir -p "$state"
touch "$state/$cluster_marker"
mkdir -p "$state/pki" "$state/logs" "$state/pids" "$state/etcd"
ln -sfn "$bindir" "$state/bin"
bin=$state/bin
pki=$state/pki

# From here on, a failure stops what was started and shows why.
started=()
up_done=0
on_exit() {
  local name i
  [ "$up_done" = 1 ] && return 0
  echo "up.sh: failed; stopping what was started (logs kept in $state/logs)" >&2
  for ((i = ${#started[@]} - 1; i >= 0; i--)); do
    name=${started[i]}
    echo "---- tail of $state/logs/$name.log" >&2
    tail -n 25 "$state/logs/$name.log" >&2 2>/dev/null || true
    cluster_stop "$state" "$name" 5
  done
}
trap on_exit EXIT
trap 'exit 130' INT TERM HUP

# ---------------------------------------------------------------- PKI
# openssl chatters on stderr; show it only when it fails.
ossl() {
  local out
  out=$(openssl "$@" 2>&1) || { printf '%s\n' "$out" >&2; die "openssl $1 failed"; }
}

cat >"$pki/openssl.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier = hash
[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = IP:127.0.0.1,DNS:localhost,IP:10.96.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF

ecdsa_key() { ossl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"; }

ecdsa_key "$pki/ca.key"
ossl req -x509 -new -key "$pki/ca.key" -sha256 -days 365 -subj "/CN=kinformer-ca" \
  -config "$pki/openssl.cnf" -extensions ca -out "$pki/ca.crt"

issue() { # NAME SUBJECT PROFILE
  ecdsa_key "$pki/$1.key"
  ossl req -new -key "$pki/$1.key" -subj "$2" -config "$pki/openssl.cnf" -out "$pki/$1.csr"
  ossl x509 -req -in "$pki/$1.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -sha256 -days 365 \
    -extfile "$pki/openssl.cnf" -extensions "$3" -out "$pki/$1.crt"
  rm -f "$pki/$1.csr"
}
issue apiserver "/CN=kube-apiserver" server
issue admin "/O=system:masters/CN=kinformer-admin" client
issue limited "/CN=kinformer-limited" client
# The controller-manager acts with the admin's group too (see below).
issue kcm "/O=system:masters/CN=system:kube-controller-manager" client
issue scheduler "/CN=system:kube-scheduler" client
# kwok plays every fake Node's kubelet (Node and Pod status, Leases, deleting
# Pods): in a throwaway cluster it simply gets the admin's group.
issue kwok "/O=system:masters/CN=kinformer-kwok" client

# Service-account tokens are signed with RSA, the algorithm every verifier knows.
ossl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$pki/sa.key"
ossl pkey -in "$pki/sa.key" -pubout -out "$pki/sa.pub"

token=$(openssl rand -hex 32)
printf '%s,kinformer-token,kinformer-token,"system:masters"\n' "$token" >"$pki/tokens.csv"
printf '%s' "$token" >"$state/token"
unset token

# ---------------------------------------------------------------- ports
# Bound together so the five are distinct; the kernel will not hand them out
# again at once, and each is taken within seconds.
ports=$(python3 -c '
import socket
socks = [socket.socket() for _ in range(5)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
')
read -r etcd_port peer_port api_port kcm_port sched_port <<<"$ports"
server=https://127.0.0.1:$api_port

# ---------------------------------------------------------------- processes
# setsid: own session, no controlling terminal, so neither the end of this
# script nor a ^C in its terminal reaches them. The pid is written by the
# shell that then execs the binary, so it is the binary's own pid.
start() { # NAME ARGS...
  local name=$1 i
  shift
  started+=("$name")
  # shellcheck disable=SC2016 # expanded by the inner shell
  setsid bash -c 'echo $$ >"$0.tmp" && mv "$0.tmp" "$0" && exec nohup "$@"' \
    "$state/pids/$name.pid" "$bin/$name" "$@" \
    </dev/null >>"$state/logs/$name.log" 2>&1 9<&- &
  for ((i = 0; i < 50; i++)); do
    [ -s "$state/pids/$name.pid" ] && return 0
    sleep 0.02
  done
  die "$name did not start"
}

start etcd \
  --name=kinformer \
  --data-dir="$state/etcd" \
  --listen-client-urls="http://127.0.0.1:$etcd_port" \
  --advertise-client-urls="http://127.0.0.1:$etcd_port" \
  --listen-peer-urls="http://127.0.0.1:$peer_port" \
  --initial-advertise-peer-urls="http://127.0.0.1:$peer_port" \
  --initial-cluster="kinformer=http://127.0.0.1:$peer_port" \
  --initial-cluster-state=new \
  --unsafe-no-fsync \
  --log-level=warn
etcd_healthy() { curl -sf --max-time 2 "http://127.0.0.1:$etcd_port/health" | grep -q '"health":"true"'; }
wait_for etcd 20 "etcd /health" etcd_healthy

# Flags after envtest's. --endpoint-reconciler-type=none: the "kubernetes"
# Service cannot have a loopback endpoint, and the default reconciler logs
# that failure every 10 seconds. The service range is a /16 (kubeadm's
# 10.96.0.0 base): a /24 is full at the 251st Service, and benchmarks create
# thousands.
mkdir -p "$pki/apiserver-certs"
start kube-apiserver \
  --etcd-servers="http://127.0.0.1:$etcd_port" \
  --cert-dir="$pki/apiserver-certs" \
  --tls-cert-file="$pki/apiserver.crt" \
  --tls-private-key-file="$pki/apiserver.key" \
  --secure-port="$api_port" \
  --bind-address=127.0.0.1 \
  --advertise-address=127.0.0.1 \
  --service-cluster-ip-range=10.96.0.0/16 \
  --authorization-mode=RBAC \
  --client-ca-file="$pki/ca.crt" \
  --token-auth-file="$pki/tokens.csv" \
  --service-account-issuer=https://kubernetes.default.svc \
  --service-account-key-file="$pki/sa.pub" \
  --service-account-signing-key-file="$pki/sa.key" \
  --allow-privileged=true \
  --endpoint-reconciler-type=none \
  --disable-admission-plugins=ServiceAccount
apiserver_ready() { [ "$(curl_admin /readyz)" = ok ]; }
wait_for kube-apiserver 60 "kube-apiserver /readyz" apiserver_ready

# ---------------------------------------------------------------- kubeconfigs
b64() { base64 -w0 <"$1"; }
write_kubeconfig() { # FILE USER CERT KEY NAMESPACE
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: kinformer
  cluster:
    server: $server
    certificate-authority-data: $(b64 "$pki/ca.crt")
users:
- name: $2
  user:
    client-certificate-data: $(b64 "$3")
    client-key-data: $(b64 "$4")
contexts:
- name: kinformer
  context:
    cluster: kinformer
    user: $2
    namespace: $5
current-context: kinformer
EOF
}
write_kubeconfig "$state/kubeconfig" admin "$pki/admin.crt" "$pki/admin.key" default
write_kubeconfig "$state/kubeconfig-limited" kinformer-limited "$pki/limited.crt" "$pki/limited.key" kinformer-limited
write_kubeconfig "$state/kcm.kubeconfig" kube-controller-manager "$pki/kcm.crt" "$pki/kcm.key" default
write_kubeconfig "$state/scheduler.kubeconfig" kube-scheduler "$pki/scheduler.crt" "$pki/scheduler.key" default
write_kubeconfig "$state/kwok.kubeconfig" kwok "$pki/kwok.crt" "$pki/kwok.key" default

# The limited user may read configmaps in its namespace and nothing else.
"$bin/kubectl" --kubeconfig="$state/kubeconfig" apply -f - >/dev/null 9<&- <<'EOF'
apiVersion: v1
kind: Namespace
metadata:
  name: kinformer-limited
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: configmap-reader
  namespace: kinformer-limited
rules:
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: kinformer-limited-configmap-reader
  namespace: kinformer-limited
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: configmap-reader
subjects:
- apiGroup: rbac.authorization.k8s.io
  kind: User
  name: kinformer-limited
EOF

# The default controllers, as in a real cluster: Deployments get ReplicaSets
# and Pods, Services EndpointSlices, Jobs run. Those that need a cloud
# provider or --allocate-node-cidrs skip themselves; the CSR signer signs with
# the cluster CA. All but one: the root CA publisher would put a
# kube-root-ca.crt ConfigMap in every namespace, which the specs' fresh
# namespaces must not hold (they count ConfigMaps), and nothing here reads it:
# without the ServiceAccount admission plugin no Pod mounts it.
#
# Every controller acts as the controller-manager's own user, in group
# system:masters. The alternative, --use-service-account-credentials (each
# controller as its own service account with its bootstrap RBAC role, as in a
# production cluster), asks for a token per controller, one after the other:
# with the default controllers that made start-up 4 to 5 seconds slower.
# (With neither, as plain system:kube-controller-manager, it could not delete
# a namespace's contents, and namespaces would stay Terminating.)
mkdir -p "$pki/kcm-certs"
start kube-controller-manager \
  --kubeconfig="$state/kcm.kubeconfig" \
  --authentication-kubeconfig="$state/kcm.kubeconfig" \
  --authorization-kubeconfig="$state/kcm.kubeconfig" \
  --service-account-private-key-file="$pki/sa.key" \
  --root-ca-file="$pki/ca.crt" \
  --cluster-signing-cert-file="$pki/ca.crt" \
  --cluster-signing-key-file="$pki/ca.key" \
  --leader-elect=false \
  --controllers='*,-root-ca-certificate-publisher-controller' \
  --bind-address=127.0.0.1 \
  --secure-port="$kcm_port" \
  --cert-dir="$pki/kcm-certs"

mkdir -p "$pki/scheduler-certs"
start kube-scheduler \
  --kubeconfig="$state/scheduler.kubeconfig" \
  --authentication-kubeconfig="$state/scheduler.kubeconfig" \
  --authorization-kubeconfig="$state/scheduler.kubeconfig" \
  --leader-elect=false \
  --bind-address=127.0.0.1 \
  --secure-port="$sched_port" \
  --cert-dir="$pki/scheduler-certs"

# kwok: the fake kubelets. Only Nodes with its annotation are its own; the
# stages are kwok's defaults (spec/cluster/kwok/stages.yaml); Pod IPs come from
# a /16 of their own. HOME is the state directory: kwok would otherwise also
# load ~/.kwok/kwok.yaml. It serves nothing (no --node-port), so no port.
mkdir -p "$state/kwok"
HOME=$state/kwok start kwok \
  --kubeconfig="$state/kwok.kubeconfig" \
  --config="$here/kwok/stages.yaml" \
  --manage-all-nodes=false \
  --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
  --node-lease-duration-seconds=40 \
  --cidr=10.244.0.0/16 \
  --node-ip=127.0.0.1

# ---------------------------------------------------------------- env
{
  q() { printf 'export %s=%q\n' "$1" "$2"; }
  q KINFORMER_STATE "$state"
  q KINFORMER_SERVER "$server"
  q KINFORMER_ETCD "http://127.0.0.1:$etcd_port"
  q KINFORMER_CA "$pki/ca.crt"
  q KINFORMER_CA_KEY "$pki/ca.key" # to sign more client certificates in tests
  q KINFORMER_TOKEN_FILE "$state/token"
  q KINFORMER_ADMIN_CERT "$pki/admin.crt"
  q KINFORMER_ADMIN_KEY "$pki/admin.key"
  q KINFORMER_LIMITED_CERT "$pki/limited.crt"
  q KINFORMER_LIMITED_KEY "$pki/limited.key"
  q KINFORMER_KUBECONFIG "$state/kubeconfig"
  q KINFORMER_LIMITED_KUBECONFIG "$state/kubeconfig-limited"
  q KINFORMER_KUBECTL "$bin/kubectl"
  q KINFORMER_NODES "$nodes"
} >"$state/env"

# The Nodes now, so that kwok and the node lifecycle controller take them up
# while the rest starts.
apply_nodes "$nodes"

# The default namespace comes from kube-apiserver, its default serviceaccount
# from the controller-manager: both present means both work.
default_sa() { curl_admin /api/v1/namespaces/default/serviceaccounts/default; }
wait_for kube-controller-manager 60 "the default serviceaccount in namespace default" default_sa
scheduler_ready() { [ "$(curl -sk --max-time 2 "https://127.0.0.1:$sched_port/readyz")" = ok ]; }
wait_for kube-scheduler 60 "kube-scheduler /readyz" scheduler_ready
wait_for kwok 60 "$nodes Ready fake nodes" nodes_ready "$nodes"

up_done=1
elapsed=$(( (${EPOCHREALTIME//[.,]/} - start_time) / 100000 ))
echo "up.sh: started in $((elapsed / 10)).$((elapsed % 10))s" >&2
print_usage
