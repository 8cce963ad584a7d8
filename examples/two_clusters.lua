-- Switches from one cluster to another: an informer on cluster A, then stop_all{ clear = true } frees all
-- it held (kinformer.stats() counts nothing), then a client and an informer for cluster B.
-- Run: lua5.4 examples/two_clusters.lua [KUBECONFIG_A [KUBECONFIG_B]] [--timeout SECONDS]
--   A: default $KUBECONFIG (or ~/.kube/config); B: default A (the same cluster again, when there is one)
--   Each informer watches the ConfigMaps of its context's namespace.
local kinformer = require "kinformer"

local files, timeout = {}, 30
local i = 1
while arg[i] do
  if arg[i] == "--timeout" then timeout, i = tonumber(arg[i + 1]), i + 1
  else files[#files + 1] = arg[i] end
  i = i + 1
end

local function show(when)
  local s = kinformer.stats()
  print(("  stats %-22s informers %d, objects %d, bytes %d, queued %d"):format(when, #s.informers, s.objects,
    s.bytes, s.queued))
end

local function watch(label, kubeconfig)
  local c = assert(kinformer.client{ kubeconfig = kubeconfig })
  local ns = c:namespace()
  print(("cluster %s: %s, context %s, namespace %s"):format(label, c:info().server, c:info().context, ns))
  local inf = assert(c:informer("configmaps", { namespace = ns }))
  assert(inf:wait_for_sync(timeout))
  print(("  %d configmaps: %s"):format(inf:count(), table.concat(inf:keys(), " ")))
  return c
end

show("at start")
local a = watch("A", files[1])
show("with A")
a:stop_all{ clear = true } -- every informer and watch of client A: stopped, caches freed, closed
show("after A:stop_all")
assert(#kinformer.stats().informers == 0 and kinformer.stats().objects == 0)
a:close()

local b = watch("B", files[2] or files[1])
show("with B")
b:close() -- close also does stop_all{ clear = true }
show("after B:close")
