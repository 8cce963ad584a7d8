#!/usr/bin/env bash
# Kills the test control plane's etcd and starts it again with the same
# command line (so the same port and the same data directory), for specs that
# show informers surviving a storage outage behind a running API server.
#   spec/cluster/restart_etcd.sh STATE_DIR [SECONDS_DOWN]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/procs.sh"
state=$(cluster_abspath "$1")
down=${2:-0}
name=etcd
pid=$(cluster_running_pid "$state" "$name") || { echo "restart_etcd.sh: $name is not running in $state" >&2; exit 1; }
mapfile -d '' cmd <"/proc/$pid/cmdline"
kill -KILL "$pid"
for ((i = 0; i < 100; i++)); do
  cluster_pid_is "$name" "$pid" || break
  sleep 0.05
done
# A killed Go process can hold its listening sockets a moment longer than its pid.
etcd=$(sed -n 's/^export KINFORMER_ETCD=//p' "$state/env")
port=${etcd##*:}
for ((i = 0; i < 200; i++)); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || break
  sleep 0.05
done
sleep "$down"
# The data directory already holds a member: etcd restarts it and ignores the
# --initial-cluster* flags, so the recorded command line serves as it is.
# shellcheck disable=SC2016 # expanded by the inner shell
setsid bash -c 'echo $$ >"$0.tmp" && mv "$0.tmp" "$0" && exec nohup "$@"' \
  "$state/pids/$name.pid" "${cmd[@]}" </dev/null >>"$state/logs/$name.log" 2>&1 &
for ((i = 0; i < 300; i++)); do
  if curl -sf --max-time 2 "$etcd/health" 2>/dev/null | grep -q '"health":"true"'; then
    # and the API server sees it again
    server=$(sed -n 's/^export KINFORMER_SERVER=//p' "$state/env")
    for ((j = 0; j < 600; j++)); do
      if [ "$(curl -sf --max-time 2 --cacert "$state/pki/ca.crt" --cert "$state/pki/admin.crt" \
          --key "$state/pki/admin.key" "$server/readyz" 2>/dev/null)" = ok ]; then
        exit 0
      fi
      sleep 0.1
    done
    echo "restart_etcd.sh: kube-apiserver did not become ready again" >&2
    exit 1
  fi
  sleep 0.1
done
echo "restart_etcd.sh: $name did not become healthy" >&2
exit 1
