--- Kubernetes Events (events.k8s.io/v1), as client-go's tools/events
-- records them: repeats of the same object, type, reason and message within
-- 6 minutes update one Event's series instead of creating new ones, and a
-- spam filter lets 25 events per object through in a burst, then one every
-- 5 minutes. Best effort: emitting never raises for a server's answer and
-- never blocks; the loop sends them (in a coroutine of its own), and what
-- cannot be sent or would exceed the limits is dropped and counted.
local core = require "kinformer.core"
local sched = require "kinformer.sched"
local informer = require "kinformer.informer"
local opts_check = require("kinformer.opts").check

local M = {}

local SERIES_WINDOW = 6 * 60 -- s: client-go's isomorphic-event window
local BURST, REFILL = 25, 1 / 300 -- per object: 25 at once, then one per 5 minutes
local MAX_PENDING = 1000

local identity
--- host name + pid, as client-go's default identity
function M.identity()
  if not identity then
    local f = io.open("/proc/sys/kernel/hostname")
    local host = f and f:read("l") or "unknown"
    if f then f:close() end
    identity = ("%s_%d"):format(host, core.pid())
  end
  return identity
end

--- MicroTime as the API wants it: RFC 3339 in UTC with microseconds.
local function micro_time()
  local t = core.wall_time()
  local s = math.floor(t)
  return os.date("!%Y-%m-%dT%H:%M:%S", s) .. (".%06dZ"):format(math.floor((t - s) * 1e6))
end

-- The recorder of one client: pending events, the series cache, the buckets.
local function recorder(c)
  if c._events then return c._events end
  local r = { client = c, pending = {}, head = 1, tail = 0, series = {}, buckets = {},
    stats = { emitted = 0, created = 0, updated = 0, dropped = 0, failed = 0 } }
  c._events = r
  require("kinformer.metrics").add_refresher(r, function(rec)
    require("kinformer.metrics").families.events_dropped:set(rec.stats.dropped + rec.stats.failed,
      rec.client._info.server)
  end)
  return r
end

local function allow(r, okey)
  local now = core.now()
  local b = r.buckets[okey]
  if not b then
    b = { tokens = BURST, at = now }
    r.buckets[okey] = b
  end
  b.tokens = math.min(BURST, b.tokens + (now - b.at) * REFILL)
  b.at = now
  if b.tokens < 1 then return false end
  b.tokens = b.tokens - 1
  return true
end

local function send(r, ev)
  local c = r.client
  local s = r.series[ev.skey]
  local now = core.now()
  if s and now - s.first < SERIES_WINDOW then
    s.count = s.count + 1
    local _, err = c:patch("events.events.k8s.io", s.name, {
      series = { count = s.count, lastObservedTime = ev.time } }, { namespace = s.namespace })
    if not err then r.stats.updated = r.stats.updated + 1 return end
    if err.reason ~= "NotFound" then r.stats.failed = r.stats.failed + 1 return end
    -- deleted meanwhile (events expire after an hour): start a new one
  end
  local body = ev.body
  local created = c:create("events.events.k8s.io", body, { namespace = body.metadata.namespace })
  if not created then
    r.stats.failed = r.stats.failed + 1
    return
  end
  r.stats.created = r.stats.created + 1
  r.series[ev.skey] = { name = created.metadata.name, namespace = created.metadata.namespace, count = 1, first = now }
end

local function pump(r)
  r.sending = true
  while r.head <= r.tail do
    local ev = r.pending[r.head]
    r.pending[r.head] = nil
    r.head = r.head + 1
    local ok, err = pcall(send, r, ev)
    if not ok then
      r.stats.failed = r.stats.failed + 1
      informer.report(err, "event " .. ev.body.reason)
    end
  end
  r.head, r.tail = 1, 0
  -- forget series that can no longer grow
  local now = core.now()
  for k, s in pairs(r.series) do
    if now - s.first >= SERIES_WINDOW then r.series[k] = nil end
  end
  r.sending = false
end

local event_options = { action = "string", reporting_controller = "string", reporting_instance = "string",
  related = "table" }

--- Emits an event about obj. Returns true when queued, false when dropped
-- (spam filter or a full queue); raises only on misuse.
function M.emit(c, obj, etype, reason, message, opts, level)
  level = (level or 2) + 1
  opts = opts_check("kinformer: event", opts, event_options, level)
  if type(obj) ~= "table" or type(obj.metadata) ~= "table" or type(obj.metadata.name) ~= "string" then
    error("kinformer: event(obj, type, reason, message): obj must be an object with metadata.name", level)
  end
  if etype ~= "Normal" and etype ~= "Warning" then
    error(("kinformer: event: type must be \"Normal\" or \"Warning\", not %q"):format(tostring(etype)), level)
  end
  if type(reason) ~= "string" or reason == "" then error("kinformer: event: reason must be a string", level) end
  message = message == nil and "" or tostring(message)
  local r = recorder(c)
  r.stats.emitted = r.stats.emitted + 1
  local md = obj.metadata
  local okey = (md.uid or "") .. "|" .. tostring(obj.kind) .. "|" .. tostring(md.namespace) .. "|" .. md.name
  if not allow(r, okey) or r.tail - r.head + 1 >= MAX_PENDING then
    r.stats.dropped = r.stats.dropped + 1
    return false
  end
  local rc = opts.reporting_controller or "kinformer"
  local ri = opts.reporting_instance or M.identity()
  local time = micro_time()
  local ns = md.namespace or "default"
  local body = {
    apiVersion = "events.k8s.io/v1", kind = "Event",
    metadata = { name = ("%s.%x%04x"):format(md.name, math.floor(core.wall_time() * 1e6), math.random(0, 0xffff)),
      namespace = ns },
    eventTime = time, reportingController = rc, reportingInstance = ri,
    action = opts.action or reason, reason = reason, note = message:sub(1, 1024), type = etype,
    regarding = { apiVersion = obj.apiVersion, kind = obj.kind, name = md.name, namespace = md.namespace,
      uid = md.uid, resourceVersion = md.resourceVersion },
    related = opts.related,
  }
  r.tail = r.tail + 1
  r.pending[r.tail] = { body = body, time = time,
    skey = table.concat({ okey, etype, reason, message, body.action, rc }, "\0") }
  if not r.sending then
    sched.spawn(pump, function(_, ok, err)
      r.sending = false
      if not ok then informer.report(err, "events") end
    end, r)
  end
  return true
end

M.micro_time = micro_time

function M.stats(c)
  local s = recorder(c).stats
  return { emitted = s.emitted, created = s.created, updated = s.updated, dropped = s.dropped, failed = s.failed }
end

function M.install(Client)
  --- c:event(obj, "Normal" | "Warning", reason, message [, { action =, reporting_controller =,
  -- reporting_instance =, related = }]) --> true (queued) | false (dropped)
  function Client:event(obj, etype, reason, message, opts)
    return M.emit(self, obj, etype, reason, message, opts, 2)
  end

  --- { emitted, created, updated, dropped, failed }
  function Client:event_stats()
    return M.stats(self)
  end
end

return M
