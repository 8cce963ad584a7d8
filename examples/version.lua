-- Connects to the cluster of $KUBECONFIG (or ~/.kube/config, or in-cluster)
-- and prints who and where we are. Run: KUBECONFIG=.cluster/kubeconfig lua5.4 examples/version.lua
local kinformer = require "kinformer"

local c, err = kinformer.client{ timeout = 10 }
if not c then
  io.stderr:write(tostring(err), "\n")
  os.exit(1)
end

local info = c:info()
local v = assert(c:version())
print(("server     %s (Kubernetes %s)"):format(info.server, v.gitVersion))
print(("context    %s, user %s, namespace %s"):format(info.context or "in-cluster", info.user or "-", c:namespace()))

local list, lerr = c:request("GET", "/api/v1/namespaces")
if list then
  local names = {}
  for _, ns in ipairs(list.items) do names[#names + 1] = ns.metadata.name end
  print("namespaces " .. table.concat(names, ", "))
else
  print("namespaces not readable: " .. tostring(lerr))
end
c:close()
