#!/usr/bin/env bash
# Stops the test control plane that up.sh started and removes its state.
#
#   spec/cluster/down.sh [STATE_DIR]    (default: <repo root>/.cluster)
#
# Only the processes recorded in STATE_DIR/pids are stopped, and only while
# they still run the binary they were recorded for. Safe when nothing runs.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$here/procs.sh"

state=$(cluster_abspath "${1:-$root/.cluster}")

if [ "${KINFORMER_CLUSTER_LOCKED:-}" != 1 ]; then
  exec 9<"$here/up.sh"
  flock -w 600 9 || { echo "down.sh: another up.sh/down.sh holds the lock" >&2; exit 1; }
fi

[ -e "$state" ] || [ -L "$state" ] || exit 0
if [ ! -f "$state/$cluster_marker" ]; then
  if [ -d "$state" ] && [ ! -L "$state" ] && [ -z "$(ls -A "$state")" ]; then
    rmdir "$state"
    exit 0
  fi
  echo "down.sh: $state was not made by up.sh (no $cluster_marker); leaving it alone" >&2
  exit 1
fi

cluster_stop_all "$state"
rm -rf "$state"
