--- Test support: many objects on the test control plane, fast. The REST verbs
-- block, so one process creates one object at a time; `procs` processes, each
-- with its own client and connection, create their share side by side.
local cluster = require "support.cluster"

local M = {}

local child = [[
package.path = os.getenv("SPEC_LUA_PATH")
package.cpath = os.getenv("SPEC_LUA_CPATH")
local kinformer = require "kinformer"
local c = assert(kinformer.client{ kubeconfig = os.getenv("KC"), qps = 0 })
local ns, prefix = os.getenv("NS"), os.getenv("PREFIX")
local first, last, stride = tonumber(os.getenv("FIRST")), tonumber(os.getenv("LAST")), tonumber(os.getenv("STRIDE"))
local made = 0
for i = first, last, stride do
  local cm = { metadata = { name = ("%s%06d"):format(prefix, i), namespace = ns },
    data = { i = tostring(i) } }
  local ok, err
  for _ = 1, 5 do -- a busy API server may answer 429 or time out once in a while
    ok, err = c:create("configmaps", cm)
    if ok or err.reason == "AlreadyExists" then break end
  end
  if not ok and err.reason ~= "AlreadyExists" then io.write("FAILED ", tostring(err), "\n") os.exit(1) end
  made = made + 1
end
io.write("MADE ", made, "\n")
]]

--- Creates ConfigMaps <prefix>000001 .. <prefix>NNNNNN in namespace ns (small:
-- one key of data) with `procs` processes (default 4);
-- raises unless all n exist. Returns the seconds it took.
function M.configmaps(ns, n, prefix, procs)
  procs = procs or 4
  local t0 = require("kinformer").core.now()
  local pipes = {}
  for k = 1, procs do
    local env = ("KC=%q NS=%q PREFIX=%q FIRST=%d LAST=%d STRIDE=%d SPEC_LUA_PATH=%q SPEC_LUA_CPATH=%q")
      :format(cluster.kubeconfig, ns, prefix, k, n, procs, package.path, package.cpath)
    pipes[k] = assert(io.popen(("env %s lua5.4 - 2>&1 <<'EOF'\n%s\nEOF"):format(env, child)))
  end
  local made, out = 0, {}
  for k = 1, procs do
    local s = pipes[k]:read("a")
    pipes[k]:close()
    made = made + tonumber(s:match("MADE (%d+)") or 0)
    out[#out + 1] = s
  end
  assert(made == n, ("made %d of %d ConfigMaps: %s"):format(made, n, table.concat(out)))
  return require("kinformer").core.now() - t0
end

return M
