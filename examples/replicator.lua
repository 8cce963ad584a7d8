-- Copies the ConfigMaps labelled replicate=true in a source namespace into every namespace labelled
-- replicate=true: kept identical, created in namespaces that appear later, removed with their source or when
-- a namespace loses its label, and converged after a restart (stale copies are deleted).
-- Run: lua5.4 examples/replicator.lua [SOURCE_NAMESPACE]   (default: default; Ctrl-C stops it)
local kinformer = require "kinformer"
local source = arg[1] or "default"
local c = assert(kinformer.client())
local FROM = "replicated-from" -- the label that marks a copy

local ctl
ctl = assert(c:controller{
  name = "configmap-replicator",
  resource = "namespaces", -- a reconcile makes one namespace's copies right
  watches = { { "configmaps", map = function(cm)
    if cm.metadata.namespace ~= source then return { cm.metadata.namespace } end -- a copy: its namespace
    local keys = {} -- a source: every namespace
    for _, ns in ipairs(ctl:informer("namespaces"):list()) do keys[#keys + 1] = ns.metadata.name end
    return keys
  end } },
  reconcile = function(ns, ctx)
    local name, cms = ns.metadata.name, ctl:informer("configmaps")
    if name == source then return end
    local want = {}
    if (ns.metadata.labels or {}).replicate == "true" and not ns.metadata.deletionTimestamp then
      for _, src in ipairs(cms:list{ namespace = source, label_selector = "replicate=true" }) do
        want[src.metadata.name] = true
        local _, err = ctx:apply{ apiVersion = "v1", kind = "ConfigMap",
          metadata = { name = src.metadata.name, namespace = name, labels = { [FROM] = source } },
          data = src.data, binaryData = src.binaryData } -- owned by the namespace (a cluster-scoped owner)
        if err then return nil, err end
      end
    end
    for _, copy in ipairs(cms:list{ namespace = name, label_selector = FROM .. "=" .. source }) do
      if not want[copy.metadata.name] then
        local _, err = c:delete("configmaps", copy.metadata.name, { namespace = name })
        if err and err.reason ~= "NotFound" then return nil, err end
      end
    end
  end,
})
print(("replicating ConfigMaps labelled replicate=true from %s"):format(source))
kinformer.run()
