#!/usr/bin/env bash
# Runs a command with one test control plane up for its whole run, and always
# tears that control plane down afterwards (also on failure or Ctrl-C). It
# uses its own state directory, so a `make cluster` the user keeps running in
# .cluster/ is left alone.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export KINFORMER_CLUSTER_DIR=${KINFORMER_CLUSTER_DIR:-$(cd "$here/.." && pwd)/build/test-cluster}

down() { "$here/cluster/down.sh" "$KINFORMER_CLUSTER_DIR" >/dev/null 2>&1 || true; }
trap down EXIT
trap 'exit 130' INT TERM

# Free ports are picked before they are bound: on a busy machine another
# process may take one first. A failed start cleans up after itself, so try
# again a couple of times before giving up.
started=0
for attempt in 1 2 3; do
  if "$here/cluster/up.sh" "$KINFORMER_CLUSTER_DIR"; then
    started=1
    break
  fi
  echo "with_cluster.sh: the test control plane did not start (attempt $attempt)" >&2
  sleep 2
done
[ "$started" = 1 ] || { echo "with_cluster.sh: giving up" >&2; exit 1; }
"$@"
