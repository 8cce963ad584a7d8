-- Lists every resource the cluster serves (the preferred version of each)
-- and counts its objects: the seed of "watch anything".
-- Run: KUBECONFIG=.cluster/kubeconfig lua5.4 examples/resources.lua
local kinformer = require "kinformer"

local c = assert(kinformer.client())
local resources = assert(c:resources())
table.sort(resources, function(a, b)
  return a.api_version .. a.resource < b.api_version .. b.resource
end)

print(("%-56s %-34s %-10s %s"):format("RESOURCE", "APIVERSION", "NAMESPACED", "OBJECTS"))
for _, r in ipairs(resources) do
  local listable = false
  for _, v in ipairs(r.verbs) do listable = listable or v == "list" end
  local count = "-"
  if listable then
    local list, err = c:list(r, { limit = 500 })
    count = list and tostring(#list.items) or ("error: " .. err.reason)
  end
  local name = r.group == "" and r.resource or (r.resource .. "." .. r.group)
  print(("%-56s %-34s %-10s %s"):format(name, r.api_version, tostring(r.namespaced), count))
end
