--- Metrics with the names controller-runtime and client-go use (so existing
-- dashboards work), and kinformer.serve: /metrics, /healthz and /readyz on a
-- libmicrohttpd thread (csrc/kn_serve.c) that never touches Lua. The loop
-- records into a C registry (csrc/kn_metrics.c); gauges read from the caches
-- and queues are refreshed once a second while a server runs.
local core = require "kinformer.core"
local sched = require "kinformer.sched"
local opts_check = require("kinformer.opts").check

local M = {}

local reg = core.metrics()
M.registry = reg

local function counter(name, help, labels) return reg:counter(name, help, labels) end
local function gauge(name, help, labels) return reg:gauge(name, help, labels) end
local function histogram(name, help, labels) return reg:histogram(name, help, labels) end

local f = {
  reconcile_total = counter("controller_runtime_reconcile_total",
    "Total number of reconciliations per controller", { "controller", "result" }),
  reconcile_errors = counter("controller_runtime_reconcile_errors_total",
    "Total number of reconciliation errors per controller", { "controller" }),
  reconcile_time = histogram("controller_runtime_reconcile_time_seconds",
    "Length of time per reconciliation per controller", { "controller" }),
  active_workers = gauge("controller_runtime_active_workers",
    "Number of currently used workers per controller", { "controller" }),
  max_workers = gauge("controller_runtime_max_concurrent_reconciles",
    "Maximum number of concurrent reconciles per controller", { "controller" }),
  wq_depth = gauge("workqueue_depth", "Current depth of workqueue", { "name" }),
  wq_adds = counter("workqueue_adds_total", "Total number of adds handled by workqueue", { "name" }),
  wq_retries = counter("workqueue_retries_total", "Total number of retries handled by workqueue", { "name" }),
  wq_queue_time = histogram("workqueue_queue_duration_seconds",
    "How long in seconds an item stays in workqueue before being requested", { "name" }),
  wq_work_time = histogram("workqueue_work_duration_seconds",
    "How long in seconds processing an item from workqueue takes", { "name" }),
  rest_requests = counter("rest_client_requests_total",
    "Number of HTTP requests, partitioned by status code, method, and host", { "code", "method", "host" }),
  leader = gauge("leader_election_master_status",
    "Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 indicates master",
    { "name" }),
  objects = gauge("kinformer_informer_objects", "Objects held in an informer's cache", { "informer" }),
  bytes = gauge("kinformer_informer_bytes", "Bytes of JSON held in an informer's cache", { "informer" }),
  restarts = gauge("kinformer_watch_restarts", "Watches an informer has reopened (resumes and relists)",
    { "informer" }),
  relists = gauge("kinformer_informer_relists", "Lists an informer has made after its first", { "informer" }),
  events_dropped = gauge("kinformer_events_dropped", "Events (the Kubernetes kind) dropped by the spam filter "
    .. "or a full queue, or not written", { "client" }),
}
M.families = f

-- ---- what the runtime records ----

function M.reconciled(controller, result, seconds)
  f.reconcile_total:add(1, controller, result)
  if result == "error" then f.reconcile_errors:add(1, controller) end
  f.reconcile_time:observe(seconds, controller)
  f.wq_work_time:observe(seconds, controller)
end

function M.dequeued(queue, waited)
  f.wq_queue_time:observe(waited, queue)
end

function M.request(host, method, code)
  f.rest_requests:add(1, tostring(code), method, host)
end

function M.leading(name, yes)
  f.leader:set(yes and 1 or 0, name)
end

-- counters kept elsewhere (the C queue's), raised to their new totals
local last = {}
local function raise_to(fam, key, total, ...)
  local k = key .. "\0" .. table.concat({ ... }, "\0")
  local delta = total - (last[k] or 0)
  if delta > 0 then fam:add(delta, ...) end
  last[k] = total
end

-- Controllers and informers report through refreshers: fn(owner) called once a second while a server runs.
local refreshers = setmetatable({}, { __mode = "k" })
function M.add_refresher(owner, fn)
  refreshers[owner] = fn
end

function M.queue_stats(name, st, in_flight, concurrency)
  f.wq_depth:set(st.depth + st.delayed, name)
  raise_to(f.wq_adds, "adds", st.adds, name)
  raise_to(f.wq_retries, "retries", st.retries, name)
  f.active_workers:set(in_flight, name)
  f.max_workers:set(concurrency, name)
end

local function refresh()
  local st = require("kinformer.informer").stats()
  for _, i in ipairs(st.informers or {}) do
    if not i.raw then
      f.objects:set(i.objects or 0, i.what)
      f.bytes:set(i.bytes or 0, i.what)
      f.restarts:set(i.reconnects or 0, i.what)
      f.relists:set(i.relists or 0, i.what)
    end
  end
  local ready = true
  for owner, fn in pairs(refreshers) do
    if fn(owner) == false then ready = false end
  end
  return ready
end

-- ---- kinformer.serve ----

local Server = {}
Server.__index = Server
Server.__name = "kinformer.server"

local current -- the server the loop reports to (one per Lua state)

--- The loop marks itself around its wait for events (informer.step calls these).
function M.loop_waiting()
  if current then current._h:loop_state("waiting") end
end
function M.loop_busy()
  if current then current._h:loop_state("busy") end
end

function Server:port() return self._h:port() end
function Server:address() return self._address end

function Server:stop()
  if current == self then current = nil end
  if self._unpump then self._unpump() self._unpump = nil end
  sched.remove_stopper(self)
  self._h:stop()
end
Server.close = Server.stop
Server.__close = Server.stop

function Server:__tostring()
  local p = self._h:port()
  return p and ("kinformer.server http://%s:%d"):format(self._host, p) or "kinformer.server (stopped)"
end

local serve_options = { address = "string", busy_threshold = "seconds", max_connections = "integer",
  timeout = "seconds" }

--- kinformer.serve{ address = "127.0.0.1:8080", busy_threshold = 30 } --> server | nil, err
-- GET /metrics (Prometheus text), /healthz (200 while the Lua loop is not stuck in a callback for longer
-- than busy_threshold seconds), /readyz (200 once every informer of every controller has synced).
function M.serve(opts)
  opts = opts_check("kinformer.serve", opts, serve_options)
  local address = opts.address or "127.0.0.1:8080"
  local host, port = address:match("^%[(.*)%]:(%d+)$")
  if not host then host, port = address:match("^(.*):(%d+)$") end
  if not host then
    error(("kinformer.serve: address must be \"host:port\" (\"127.0.0.1:8080\", \":9090\"), not %q"):format(address), 2)
  end
  local h, err = core.serve{ address = host ~= "" and host or nil, port = tonumber(port), metrics = reg,
    busy_threshold = opts.busy_threshold, max_connections = opts.max_connections, timeout = opts.timeout }
  if not h then return nil, require("kinformer.errors").from_core(err, "kinformer.serve") end
  if current then current:stop() end
  local self = setmetatable({ _h = h, _host = host ~= "" and host or "0.0.0.0", _address = address }, Server)
  current = self
  h:loop_state("busy")
  h:set_ready(false)
  local next_at = 0
  self._unpump = sched.add_pump(self, function(s)
    local now = core.now()
    if now >= next_at then
      next_at = now + 1
      s._h:set_ready(refresh())
    end
    return 0, math.max(next_at - now, 0)
  end)
  sched.add_stopper(self, Server.stop)
  return self
end

return M
