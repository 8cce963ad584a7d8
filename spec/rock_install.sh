#!/usr/bin/env bash
# Proves the documented offline install: `luarocks make --deps-mode=none`
# with lua-cjson from Debian's package, into a throwaway tree, then loads the
# installed module (not the one in the checkout) with a clean search path.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tree=$(mktemp -d)
work=$(mktemp -d)
trap 'rm -rf "$tree" "$work"' EXIT
# Build from a copy so the checkout gets no object files.
cp -r "$root/csrc" "$root/lua" "$root/rockspec" "$work/"
rm -f "$work"/lua/kinformer/*.so
(cd "$work" && luarocks --lua-version=5.4 --tree "$tree" make --deps-mode=none rockspec/kinformer-scm-1.rockspec >"$work/luarocks.log" 2>&1) ||
  { cat "$work/luarocks.log" >&2; echo "rock_install.sh: luarocks make failed" >&2; exit 1; }
env -u LUA_PATH -u LUA_CPATH ROCK_TREE="$tree" LUA_PATH="$tree/share/lua/5.4/?.lua;$tree/share/lua/5.4/?/init.lua;;" \
  LUA_CPATH="$tree/lib/lua/5.4/?.so;;" lua5.4 -e '
  local k = require "kinformer"
  local where = package.searchpath("kinformer.core", package.cpath)
  assert(where and where:find(os.getenv("ROCK_TREE"), 1, true), "kinformer.core did not come from the rock tree: " .. tostring(where))
  assert(type(k.client) == "function")
  local c, err = k.client{ kubeconfig = "/nonexistent/kubeconfig" }
  assert(c == nil and err.reason == "Config", tostring(err))
  local srv = assert(require("kinformer.core").serve{ address = "127.0.0.1", port = 0 }) -- libmicrohttpd is linked
  srv:stop()
  print("rock_install.sh: luarocks make --deps-mode=none installed kinformer " .. k._VERSION .. " with Debian lua-cjson")
'
