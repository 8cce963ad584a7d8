-- The kinformer peer of the benchmark: an informer on one kind, with an
-- update handler that reads the object's name (or none: store only). Same
-- CLI and output as the other peers (see bench/README.md).
--   lua5.4 peer.lua --kubeconfig K --kind configmaps|pods [--namespace NS] [--events M]
--                   [--handler true|false] [--keep-managed-fields] [--all-resources --idle S]
local kinformer = require "kinformer"
local core = kinformer.core

local args = { handler = "true", events = "0" }
do
  local i = 1
  while i <= #arg do
    local k = arg[i]:match("^%-%-([%w%-]+)$")
    if not k then error("bad argument " .. arg[i]) end
    k = k:gsub("%-", "_")
    if k == "all_resources" or k == "keep_managed_fields" then
      args[k] = "true"
      i = i + 1
    else
      args[k] = arg[i + 1]
      i = i + 2
    end
  end
end

local function proc_status()
  local f = io.open("/proc/self/status")
  local s = f:read("a")
  f:close()
  return tonumber(s:match("VmRSS:%s+(%d+)")), tonumber(s:match("VmHWM:%s+(%d+)"))
end

-- process CPU (all threads), to the microsecond like the other peers' getrusage:
-- glibc's clock() reads CLOCK_PROCESS_CPUTIME_ID (/proc/self/stat counts 10 ms ticks)
local cpu_s = os.clock

local function emit(t)
  local rss, hwm = proc_status()
  t.rss_kb, t.hwm_kb, t.cpu_s = rss, hwm, cpu_s()
  local parts = {}
  for _, k in ipairs{ "phase", "t", "count", "events", "informers", "rss_kb", "hwm_kb", "cpu_s" } do
    local v = t[k]
    if v ~= nil then
      parts[#parts + 1] = ("%q:%s"):format(k, type(v) == "string" and ("%q"):format(v) or tostring(v))
    end
  end
  io.stdout:write("{", table.concat(parts, ","), "}\n")
  io.stdout:flush()
end

local t0 = core.now()
local c = assert(kinformer.client{ kubeconfig = args.kubeconfig, qps = 50, burst = 100 })

if args.all_resources then
  local infs = {}
  for _, r in ipairs(assert(c:resources())) do
    local verbs = {}
    for _, v in ipairs(r.verbs) do verbs[v] = true end
    if verbs.list and verbs.watch then
      local inf = assert(c:informer(r))
      if args.handler == "true" then
        inf:on("update", function(_, obj) local _ = obj.metadata.name end)
      end
      infs[#infs + 1] = inf
    end
  end
  local total = 0
  for _, inf in ipairs(infs) do
    assert(inf:wait_for_sync(120))
    total = total + inf:count()
  end
  emit{ phase = "synced", t = core.now() - t0, count = total }
  local cpu0 = cpu_s()
  kinformer.run{ timeout = tonumber(args.idle or "60") }
  local rss, hwm = proc_status()
  io.stdout:write(('{"phase":"idle","t":%s,"informers":%d,"cpu_s":%.3f,"rss_kb":%d,"hwm_kb":%d}\n')
    :format(args.idle or "60", #infs, cpu_s() - cpu0, rss, hwm))
  io.stdout:flush()
  os.exit(0)
end

local inf = assert(c:informer(args.kind, { namespace = args.namespace,
  keep_managed_fields = args.keep_managed_fields == "true" }))
local want = tonumber(args.events)
local seen, t_sync = 0, nil
if args.handler == "true" then
  inf:on("update", function(_, obj)
    local _ = obj.metadata.name
    seen = seen + 1
    if seen == want then kinformer.stop() end
  end)
end
assert(inf:wait_for_sync(600))
t_sync = core.now()
emit{ phase = "synced", t = t_sync - t0, count = inf:count() }
if want > 0 then
  if args.handler == "true" then
    while seen < want do kinformer.run{ timeout = 600 } end
  else
    -- store only: no notifications at all; the core's counter of MODIFIED events says when
    while inf:stats().modified < want do kinformer.step(5) end
    seen = inf:stats().modified
  end
  emit{ phase = "done", t = core.now() - t_sync, events = seen }
end
os.exit(0)
