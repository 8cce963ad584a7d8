-- make soak: churn at a steady rate against the control plane while an informer
-- with handlers and an index runs; RSS sampled every 10 s, one line each:
--   <seconds> rss_kb=<VmRSS> objects=<cached> bytes=<store bytes> events=<handled> queued=<waiting>
-- It fails if the cache does not equal the server at the end. SOAK_SECONDS (default 1800), SOAK_RATE
-- (changes per second, default 20), KINFORMER_CLUSTER_DIR (the control plane).
local kinformer = require "kinformer"
local dir = os.getenv("KINFORMER_CLUSTER_DIR") or ".cluster"
local seconds = tonumber(os.getenv("SOAK_SECONDS") or "1800")
local rate = tonumber(os.getenv("SOAK_RATE") or "20")
local now = kinformer.core.now

local function rss_kb()
  local f = io.open("/proc/self/status")
  local kb = tonumber(f:read("a"):match("VmRSS:%s+(%d+)"))
  f:close()
  return kb
end

local c = assert(kinformer.client{ kubeconfig = dir .. "/kubeconfig" })
local writer = assert(kinformer.client{ kubeconfig = dir .. "/kubeconfig", qps = 1000, burst = 1000 })
local ns = "soak-" .. os.time()
assert(writer:create("namespaces", { metadata = { name = ns } }))
local inf = assert(c:informer("configmaps", { namespace = ns }))
local handled = 0
inf:on("add", function(o) handled = handled + 1 local _ = o.metadata.name end)
inf:on("update", function(_, o) handled = handled + 1 local _ = o.data end)
inf:on("delete", function() handled = handled + 1 end)
inf:add_index("by_slot", function(o) return { o.data and o.data.slot or "none" } end)
assert(inf:wait_for_sync(60))

local live, keys = {}, 300
local t0, next_sample, next_op = now(), now(), now()
local ops = 0
while now() - t0 < seconds do
  if now() >= next_sample then
    local st = inf:stats()
    io.stdout:write(("%d rss_kb=%d objects=%d bytes=%d events=%d queued=%d\n"):format(
      math.floor(now() - t0 + 0.5), rss_kb(), st.objects, st.bytes, handled, st.queued))
    io.stdout:flush()
    next_sample = next_sample + 10
  end
  while now() >= next_op do
    local name = "cm-" .. math.random(1, keys)
    if not live[name] then
      live[name] = writer:create("configmaps", { metadata = { name = name, namespace = ns },
        data = { slot = tostring(math.random(1, 10)), payload = ("x"):rep(math.random(100, 2000)) } }) and true
    elseif math.random() < 0.7 then
      writer:patch("configmaps", name, { data = { slot = tostring(math.random(1, 10)) } }, { namespace = ns })
    else
      writer:delete("configmaps", name, { namespace = ns })
      live[name] = nil
    end
    ops = ops + 1
    next_op = next_op + 1 / rate
  end
  kinformer.step(20)
end
-- the end: the cache equals a fresh list
local deadline = now() + 30
local fresh
repeat
  kinformer.step(100)
  fresh = assert(writer:list("configmaps", { namespace = ns }))
  local same = #fresh.items == inf:count()
  for _, o in ipairs(fresh.items) do
    local mine = inf:get(o.metadata.name, ns)
    same = same and mine ~= nil and mine.metadata.resourceVersion == o.metadata.resourceVersion
  end
until same or now() > deadline
writer:delete("namespaces", ns)
print(("soak: %d changes in %d s; cache %s the server (%d objects)"):format(ops, seconds,
  now() <= deadline and "equals" or "DIFFERS FROM", #fresh.items))
os.exit(now() <= deadline and 0 or 1)
