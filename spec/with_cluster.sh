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

"$here/cluster/up.sh" "$KINFORMER_CLUSTER_DIR" || { echo "with_cluster.sh: the test control plane did not start" >&2; exit 1; }
"$@"
