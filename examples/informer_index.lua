-- An informer with a label selector and an index: the ConfigMaps labelled app=demo in a namespace of
-- its own, looked up by their "tier" label. Creates the namespace, and deletes it at the end.
-- Run: lua5.4 examples/informer_index.lua [--timeout SECONDS]    (the longest wait for the cluster; 30)
local kinformer = require "kinformer"

local timeout = arg[1] == "--timeout" and tonumber(arg[2]) or 30
local c = assert(kinformer.client())

local ns = assert(c:create("namespaces", { metadata = { generateName = "kinformer-index-" } })).metadata.name
local _ <close> = setmetatable({}, { __close = function() -- also when an assert below fails
  c:delete("namespaces", ns)
  print("deleted namespace " .. ns)
end })
print("created namespace " .. ns)

local function configmap(name, labels, data)
  assert(c:create("configmaps", { metadata = { name = name, labels = labels }, data = data }, { namespace = ns }))
end
configmap("web-1", { app = "demo", tier = "web" }, { port = "8080" })
configmap("web-2", { app = "demo", tier = "web" }, { port = "8081" })
configmap("db-1", { app = "demo", tier = "db" }, { port = "5432" })
configmap("other", { app = "other", tier = "web" }) -- not app=demo: the informer never sees it

local inf = assert(c:informer("configmaps", { namespace = ns, label_selector = "app=demo" }))
inf:add_index("tier", function(cm) return cm.metadata.labels.tier end)

local function names(objs)
  local out = {}
  for _, o in ipairs(objs) do out[#out + 1] = o.metadata.name end
  return table.concat(out, " ")
end
local function show()
  print(("  tier=web: %-12s tier=db: %-12s (%d cached)"):format(names(inf:by_index("tier", "web")),
    names(inf:by_index("tier", "db")), inf:count()))
end

-- Handlers run inside kinformer.run/step or wait_for_sync, one at a time, in the order of the events.
inf:on("add", function(cm) print("add    " .. cm.metadata.name) end)
inf:on("update", function(old, new)
  print(("update %s: tier %s -> %s"):format(new.metadata.name, old.metadata.labels.tier, new.metadata.labels.tier))
  kinformer.stop()
end)
inf:on("delete", function(cm, unknown)
  print(("delete %s%s"):format(cm.metadata.name, unknown and " (final state unknown)" or ""))
  kinformer.stop()
end)

assert(inf:wait_for_sync(timeout))
show()

-- Move web-2 to tier db: the index follows the update.
assert(c:patch("configmaps", "web-2", { metadata = { labels = { tier = "db" } } }, { namespace = ns }))
assert(kinformer.run{ timeout = timeout }, "no update event")
show()

-- Drop web-1's app=demo label: it leaves the selection, and the informer sees a delete.
assert(c:patch("configmaps", "web-1", { metadata = { labels = { app = "gone" } } }, { namespace = ns }))
assert(kinformer.run{ timeout = timeout }, "no delete event")
show()

local cm = inf:get("db-1") -- by name in the informer's namespace (or inf:get(ns .. "/db-1"))
print(("db-1: port %s, resourceVersion %s; the informer is at %s"):format(cm.data.port,
  cm.metadata.resourceVersion, inf:resource_version()))
print(("keys: %s"):format(table.concat(inf:keys(), " ")))
c:stop_all{ clear = true }
