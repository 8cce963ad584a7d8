#!/usr/bin/env bash
# Runs the busted specs with Lua 5.4 against the control plane whose state is
# in $KINFORMER_CLUSTER_DIR (default: .cluster of the repository).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
export KINFORMER_CLUSTER_DIR=${KINFORMER_CLUSTER_DIR:-$root/.cluster}
export LUA_PATH="$root/lua/?.lua;$root/lua/?/init.lua;$root/spec/?.lua;;"
export LUA_CPATH="$root/lua/?.so;;"
# The specs build their own configurations; the user's must not leak in.
unset KUBECONFIG KUBERNETES_SERVICE_HOST KUBERNETES_SERVICE_PORT
cd "$root"
exec lua5.4 /usr/bin/busted --lua=lua5.4 "${@:-spec/lua}"
