#!/usr/bin/env bash
# Kills the test control plane's kube-apiserver and starts it again with the
# same command line, for specs that show a client surviving a server restart.
#   spec/cluster/restart_apiserver.sh STATE_DIR [SECONDS_DOWN]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/procs.sh"
state=$(cluster_abspath "$1")
down=${2:-0}
name=kube-apiserver
pid=$(cluster_running_pid "$state" "$name") || { echo "restart_apiserver.sh: $name is not running in $state" >&2; exit 1; }
mapfile -d '' cmd <"/proc/$pid/cmdline"
kill -KILL "$pid"
for ((i = 0; i < 100; i++)); do
  cluster_pid_is "$name" "$pid" || break
  sleep 0.05
done
# A killed Go process can hold its listening socket a moment longer than its pid.
server=$(sed -n 's/^export KINFORMER_SERVER=//p' "$state/env")
port=${server##*:}
for ((i = 0; i < 200; i++)); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || break
  sleep 0.05
done
sleep "$down"
# shellcheck disable=SC2016 # expanded by the inner shell
setsid bash -c 'echo $$ >"$0.tmp" && mv "$0.tmp" "$0" && exec nohup "$@"' \
  "$state/pids/$name.pid" "${cmd[@]}" </dev/null >>"$state/logs/$name.log" 2>&1 &
for ((i = 0; i < 300; i++)); do
  if [ "$(curl -sf --max-time 2 --cacert "$state/pki/ca.crt" --cert "$state/pki/admin.crt" \
      --key "$state/pki/admin.key" "$server/readyz" 2>/dev/null)" = ok ]; then
    exit 0
  fi
  sleep 0.1
done
echo "restart_apiserver.sh: $name did not become ready" >&2
exit 1
