--- c:controller{...}: a reconcile loop over a primary resource, with
-- client-go's work queue (csrc/kn_workqueue.c), owned children and watched
-- resources mapped to keys, finalizers, status writes and server-side apply.
-- Each reconcile runs in a coroutine of its own (kinformer.sched): the REST
-- calls it makes yield, so `concurrency` reconciles overlap their waits.
local core = require "kinformer.core"
local errors = require "kinformer.errors"
local sched = require "kinformer.sched"
local informer = require "kinformer.informer"
local opts_check = require("kinformer.opts").check
local metrics = require "kinformer.metrics"

local M = {}

local Controller = {}
Controller.__index = Controller
Controller.__name = "kinformer.controller"

local Ctx = {}
Ctx.__index = Ctx
Ctx.__name = "kinformer.controller.context"

-- Controllers not yet stopped: kinformer.step and run start them.
local live = {}
local close_all -- lets go of a controller's informers (below)

local option_types = {
  name = "string", resource = { "string", "table" }, namespace = "string", label_selector = "string",
  owns = "table", watches = "table", concurrency = "integer", finalizer = "string",
  reconcile = "function", cleanup = "function", on_error = "function",
  base_delay = "seconds", max_delay = "seconds", qps = "number", burst = "integer",
  leader_election = "table",
}

local function fail(fmt, ...)
  error("kinformer: controller: " .. fmt:format(...), 3)
end

local function key_of(obj)
  local md = obj.metadata or {}
  if md.namespace and md.namespace ~= "" then return md.namespace .. "/" .. md.name end
  return md.name
end

local function split_key(key)
  local ns, name = key:match("^([^/]*)/(.+)$")
  if ns then return name, ns ~= "" and ns or nil end
  return key, nil
end

local function group_of(api_version)
  return api_version:match("^(.+)/[^/]+$") or ""
end

local function same(a, b)
  if a == b then return true end
  if type(a) ~= "table" or type(b) ~= "table" then return false end
  for k, v in pairs(a) do if not same(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

local function has(list, v)
  for i, x in ipairs(list or {}) do if x == v then return i end end
  return nil
end

-- The update of a primary that calls for a reconcile: what the user or
-- another controller asked for changed, not what this controller reported
-- (a status write must not trigger its own reconcile). An object without
-- metadata.generation (a ConfigMap, a Secret) has no spec/status split: any
-- change counts.
local function worth_reconciling(old, new)
  local o, n = old.metadata or {}, new.metadata or {}
  if o.generation == nil and n.generation == nil then return o.resourceVersion ~= n.resourceVersion end
  return o.generation ~= n.generation or not same(o.labels, n.labels) or not same(o.annotations, n.annotations)
    or not same(o.finalizers, n.finalizers) or o.deletionTimestamp ~= n.deletionTimestamp
end

-- The controller ownerReference of a child, if it points at the primary's kind.
local function controller_owner(obj, prim)
  for _, ref in ipairs((obj.metadata or {}).ownerReferences or {}) do
    if ref.controller == true and ref.kind == prim.kind and group_of(ref.apiVersion or "") == prim.group then
      return ref
    end
  end
  return nil
end

local function owner_uid(obj)
  for _, ref in ipairs((obj.metadata or {}).ownerReferences or {}) do
    if ref.controller == true then return { ref.uid } end
  end
  return {}
end

function Controller:enqueue(key, after)
  if type(key) ~= "string" or key == "" then
    error("kinformer: controller:enqueue(key [, after_seconds]): key is \"namespace/name\" or \"name\"", 2)
  end
  if after ~= nil and (type(after) ~= "number" or after ~= after) then
    error("kinformer: controller:enqueue(key, after_seconds): after_seconds must be a number", 2)
  end
  if after and after > 0 then self._q:add_after(key, after) else self._q:add(key) end
end

--- The controller's leader election (nil without the leader_election option).
function Controller:leader_election()
  return self._le
end

--- The informer of a resource the controller watches (its primary, an owned
-- or a watched one), by the name it was given or its full name.
function Controller:informer(resource)
  local inf = self._by_name[resource]
  if inf then return inf end
  local r = self.client:resolve(resource)
  return r and self._by_name[r.resource .. (r.group ~= "" and ("." .. r.group) or "")] or nil
end

local function all_synced(self)
  for _, inf in ipairs(self._informers) do
    if not inf._synced_seen then return false end
  end
  return true
end

function Controller:start()
  if self._stopped then error("kinformer: controller " .. self.name .. " is stopped; make a new one", 2) end
  if self._started then return self end
  self._started = true
  for _, inf in ipairs(self._informers) do inf:start() end
  self._unpump = sched.add_pump(self, Controller._pump)
  sched.add_stopper(self, function(ctl) ctl:stop() end, function(ctl) return not ctl._stopped end)

  if self._le then self._le:start() end
  return self
end

-- One reconcile's end: success forgets the key's backoff (a number asks for a
-- requeue after it), a failure is reported and retried with backoff.
local function finish(self, key, co, ok, res, err)
  self._in_flight = self._in_flight - 1
  local took = core.now() - (self._running[key] or core.now())
  self._running[key] = nil
  local st = self._stats
  st.reconciles = st.reconciles + 1
  if ok and (res ~= nil or err == nil) then
    metrics.reconciled(self.name, type(res) == "number" and "requeue_after" or "success", took)
    st.succeeded = st.succeeded + 1
    self._q:forget(key)
    if type(res) == "number" and not self._stopping then
      st.requeued = st.requeued + 1
      self._q:add_after(key, res)
    end
  else
    metrics.reconciled(self.name, "error", took)
    st.failed = st.failed + 1
    local e = ok and err or res
    if not ok and type(e) == "string" then e = debug.traceback(co, e) end
    if not self._stopping then self._q:add_rate_limited(key) end
    local where = ("reconcile of %s by controller %s"):format(key, self.name)
    if self._on_error then
      local hok, herr = pcall(self._on_error, e, key, self)
      if not hok then informer.report(herr, "on_error of controller " .. self.name) end
    else
      informer.report(e, where)
    end
  end
  self._q:done(key)
end

local function new_ctx(self, key, obj)
  return setmetatable({ key = key, client = self.client, controller = self, obj = obj,
    failures = self._q:failures(key), name = obj.metadata.name, namespace = obj.metadata.namespace }, Ctx)
end

-- Adds or removes the finalizer with a JSON patch that tests the list first,
-- so a concurrent change by someone else fails (and is retried) instead of
-- being overwritten.
local function patch_finalizers(self, obj, add)
  local md, fin = obj.metadata, self._finalizer
  local ops
  if add then
    if md.finalizers == nil then
      ops = { { op = "add", path = "/metadata/finalizers", value = core.array{ fin } } }
    else
      ops = { { op = "test", path = "/metadata/finalizers", value = core.array(md.finalizers) },
              { op = "add", path = "/metadata/finalizers/-", value = fin } }
    end
  else
    local i = has(md.finalizers, fin)
    ops = { { op = "test", path = "/metadata/finalizers/" .. (i - 1), value = fin },
            { op = "remove", path = "/metadata/finalizers/" .. (i - 1) } }
  end
  return self.client:patch(self._resource, md.name, core.array(ops), { type = "json", namespace = md.namespace })
end

-- The body of one reconcile, in its coroutine.
local function run_key(self, key)
  local name, ns = split_key(key)
  local obj = self._primary:get(name, ns)
  if not obj then return end -- deleted: nothing left to reconcile
  local fin = self._finalizer
  if fin then
    if obj.metadata.deletionTimestamp then
      if not has(obj.metadata.finalizers, fin) then return end
      local res, err = self._cleanup(obj, new_ctx(self, key, obj))
      if res == nil and err ~= nil then return nil, err end
      local _, perr = patch_finalizers(self, obj, false)
      if perr then return nil, perr end
      return
    end
    if not has(obj.metadata.finalizers, fin) then
      local updated, err = patch_finalizers(self, obj, true)
      if not updated then return nil, err end
      obj = updated
    end
  end
  return self._reconcile(obj, new_ctx(self, key, obj))
end

function Controller:_pump()
  if self._stopped or not all_synced(self) then return 0, nil end
  if self._le and not self._le:is_leader() and not self._stopping then return 0, nil end
  local ran = 0
  while self._in_flight < self._concurrency and not self._stopping do
    local key, waited = self._q._h:get()
    if not key then break end
    metrics.dequeued(self.name, waited)
    ran = ran + 1
    self._in_flight = self._in_flight + 1
    self._running[key] = core.now()
    sched.spawn(run_key, function(co, ok, res, err) finish(self, key, co, ok, res, err) end, self, key)
  end
  if self._stopping and self._in_flight == 0 then
    self._stopped = true
    live[self] = nil
    if self._unpump then self._unpump() end
    if self._le then self._le:release() end
    close_all(self)
    return ran, nil
  end
  if self._in_flight < self._concurrency then return ran, self._q._h:next_due() end
  return ran, nil
end

--- Stops taking keys. drain = true: waits (running the loop; yielding inside
-- a reconcile) until the running reconciles have finished; otherwise returns
-- at once and they finish on their own. Then the informers are closed.
function Controller:stop(opts)
  opts = opts_check("kinformer: controller:stop", opts, { drain = "boolean" })
  if self._stopped then return true end
  self._stopping = true
  self._q:shutdown{ drain = false }
  if not self._started then
    self._stopped = true
    live[self] = nil
    close_all(self)
    if self._le then self._le:release() end
    return true
  end
  if opts.drain then
    while not self._stopped do
      if sched.current() then sched.sleep(0.01) else informer.step(100) end
    end
  end
  return true
end

--- { queued, in_flight, reconciles, succeeded, failed, requeued, delayed, adds, retries }
function Controller:stats()
  local q = self._q:stats()
  local st = self._stats
  return { queued = q.depth + q.delayed, ready = q.depth, delayed = q.delayed, in_flight = self._in_flight,
    reconciles = st.reconciles, succeeded = st.succeeded, failed = st.failed, requeued = st.requeued,
    adds = q.adds, retries = q.retries, synced = all_synced(self),
    leader = self._le == nil or self._le:is_leader() }
end

function Controller:__tostring()
  return ("kinformer.controller %s (%s, %d in flight)"):format(self.name, self._resource, self._in_flight)
end

-- ---- inside a reconcile ----

--- The child from the cache: an owned or watched resource's informer; the
-- namespace defaults to the primary's.
function Ctx:get(resource, name, namespace)
  local inf = self.controller:informer(resource)
  if not inf then
    error(("kinformer: ctx:get: %s is not owned or watched by controller %s (use ctx.client:get)")
      :format(tostring(resource), self.controller.name), 2)
  end
  return inf:get(name, namespace or self.namespace)
end

--- Server-side apply of a child (field manager: the controller's name, forced),
-- with the primary as its controller owner unless opts.owner == false.
function Ctx:apply(child, opts)
  opts = opts_check("kinformer: ctx:apply", opts, { owner = "boolean", force = "boolean", field_manager = "string" })
  if type(child) ~= "table" or type(child.apiVersion) ~= "string" or type(child.kind) ~= "string"
    or type(child.metadata) ~= "table" or type(child.metadata.name) ~= "string" then
    error("kinformer: ctx:apply(child): the child needs apiVersion, kind and metadata.name", 2)
  end
  local c, prim, pr = self.client, self.obj, self.controller._prim
  local version = child.apiVersion:match("([^/]+)$")
  local r, err = c:resolve{ group = group_of(child.apiVersion), version = version, resource = child.kind }
  if not r then
    return nil, err or errors.new("NotFound", ("the server has no %s %s"):format(child.apiVersion, child.kind),
      "ctx:apply")
  end
  local md = child.metadata
  if r.namespaced and md.namespace == nil then md.namespace = prim.metadata.namespace or c:namespace() end
  if opts.owner ~= false then
    -- the garbage collector deletes a child whose owner it cannot see from
    -- where the child lives: refuse instead of leaving a silent orphan
    if pr.namespaced and not r.namespaced then
      return nil, errors.new("Invalid", ("%s %s is cluster-scoped and cannot be owned by the namespaced %s %s"):format(
        child.kind, md.name, prim.kind, key_of(prim)), "ctx:apply")
    end
    if pr.namespaced and md.namespace ~= prim.metadata.namespace then
      return nil, errors.new("Invalid", ("%s %s/%s is in another namespace than its owner %s %s"):format(
        child.kind, md.namespace, md.name, prim.kind, key_of(prim)), "ctx:apply")
    end
    local refs = {}
    for _, ref in ipairs(md.ownerReferences or {}) do
      if ref.uid ~= prim.metadata.uid then refs[#refs + 1] = ref end
    end
    refs[#refs + 1] = { apiVersion = prim.apiVersion, kind = prim.kind, name = prim.metadata.name,
      uid = prim.metadata.uid, controller = true, blockOwnerDeletion = true }
    md.ownerReferences = core.array(refs)
  end
  return c:patch(r, md.name, child, { type = "apply", field_manager = opts.field_manager or self.controller.name,
    force = opts.force ~= false, namespace = md.namespace })
end

--- An Event about the primary (events.k8s.io/v1), from this controller:
-- ctx:event("Warning", "ImagePullFailed", "image %s not found", img). Best
-- effort: it never fails or blocks the reconcile (see c:event).
function Ctx:event(etype, reason, fmt, ...)
  local msg = fmt
  if select("#", ...) > 0 then msg = tostring(fmt):format(...) end
  local ctl = self.controller
  return require("kinformer.events").emit(self.client, self.obj, etype, reason, msg,
    { reporting_controller = ctl.name, reporting_instance = ctl._le and ctl._le.identity or nil }, 2)
end

--- Merge-patches the primary's status through the status subresource, only
-- when one of the fields differs from the cached object. Returns the object
-- (the cached one when nothing was written) and whether it wrote.
function Ctx:set_status(fields)
  if type(fields) ~= "table" then error("kinformer: ctx:set_status(fields): fields must be a table", 2) end
  local cur = self.obj.status or {}
  local differs = false
  for k, v in pairs(fields) do
    if not same(v, cur[k]) then differs = true break end
  end
  if not differs then return self.obj, false end
  local md = self.obj.metadata
  local obj, err = self.client:patch(self.controller._resource, md.name, { status = fields },
    { subresource = "status", namespace = md.namespace })
  if not obj then return nil, err end
  self.obj = obj
  return obj, true
end

-- ---- construction ----

-- The informers are shared (c:informer's): a controller holds them through
-- _acquire_informer and lets go with informer.release, which closes one only
-- when nobody else uses it. The first informer of a resource names it for
-- ctl:informer and ctx:get.
local function add_informer(self, resource, r, opts)
  local inf, err = self.client:_acquire_informer(resource, opts)
  if not inf then return nil, err end
  self._informers[#self._informers + 1] = inf
  self._handles[inf] = self._handles[inf] or {}
  local full = r.resource .. (r.group ~= "" and ("." .. r.group) or "")
  self._by_name[resource] = self._by_name[resource] or inf
  self._by_name[full] = self._by_name[full] or inf
  return inf
end

-- inf:on, remembered for release
local function on(self, inf, event, fn)
  local list = self._handles[inf]
  list[#list + 1] = inf:on(event, fn)
end

local function enqueue_all(self, keys)
  if type(keys) == "string" then keys = { keys } end
  if type(keys) ~= "table" then return end
  for _, k in ipairs(keys) do
    if type(k) == "string" and k ~= "" then self._q:add(k) end
  end
end

close_all = function(self)
  for _, inf in ipairs(self._informers) do informer.release(inf, self._handles[inf]) end
  self._informers = {}
end

function M.install(Client)
  -- stop_all stops the client's controllers first (their reconciles finish
  -- on their own), then its informers as before
  local stop_all = Client.stop_all
  function Client:stop_all(opts)
    for ctl in pairs(live) do
      if ctl.client == self then ctl:stop() end
    end
    return stop_all(self, opts)
  end

  --- c:controller{ name =, resource =, reconcile =, ... } (README, "Operators")
  --> the controller, not started | nil, err (an unknown resource, a failed discovery).
  function Client:controller(opts)
    if type(opts) ~= "table" then error("kinformer: c:controller{...}: options must be a table", 2) end
    opts = opts_check("kinformer: controller", opts, option_types)
    if type(opts.name) ~= "string" or opts.name == "" then fail("name is needed (the field manager and the label)") end
    if opts.resource == nil then fail("resource is needed (the primary, as c:resolve takes it)") end
    if type(opts.reconcile) ~= "function" then fail("reconcile = function(obj, ctx) ... end is needed") end
    if opts.finalizer and type(opts.cleanup) ~= "function" then
      fail("finalizer %q needs cleanup = function(obj, ctx) ... end", opts.finalizer)
    end
    if opts.cleanup and not opts.finalizer then fail("cleanup runs only with a finalizer: set finalizer") end
    if opts.concurrency and opts.concurrency < 1 then fail("concurrency must be 1 or more") end
    for i, w in ipairs(opts.watches or {}) do
      if type(w) ~= "table" or type(w[1]) ~= "string" or type(w.map) ~= "function" then
        fail("watches[%d] must be { \"resource\", map = function(obj) return { \"ns/name\", ... } end }", i)
      end
      local named = {} -- the entry without its resource, for the option check
      for k, v in pairs(w) do if k ~= 1 then named[k] = v end end
      opts_check(("kinformer: controller: watches[%d]"):format(i), named,
        { map = "function", namespace = "string", label_selector = "string" }, 2)
    end
    for i, o in ipairs(opts.owns or {}) do
      if type(o) ~= "string" then fail("owns[%d] must be a resource name such as \"deployments.apps\"", i) end
    end

    local prim, err = self:resolve(opts.resource)
    if not prim then return nil, err end
    local self_ = setmetatable({
      name = opts.name, client = self, _resource = prim, _prim = prim,
      _reconcile = opts.reconcile, _cleanup = opts.cleanup, _finalizer = opts.finalizer,
      _on_error = opts.on_error, _concurrency = opts.concurrency or 1,
      _q = require("kinformer.queue").new{ base_delay = opts.base_delay, max_delay = opts.max_delay,
        qps = opts.qps, burst = opts.burst },
      _informers = {}, _by_name = {}, _handles = {}, _in_flight = 0, _running = {},
      _stats = { reconciles = 0, succeeded = 0, failed = 0, requeued = 0 },
    }, Controller)

    local primary, perr = add_informer(self_, opts.resource, prim,
      { namespace = opts.namespace, label_selector = opts.label_selector })
    if not primary then return nil, perr end
    self_._primary = primary
    local q = self_._q
    on(self_, primary, "add", function(obj) q:add(key_of(obj)) end)
    on(self_, primary, "update", function(old, new) if worth_reconciling(old, new) then q:add(key_of(new)) end end)
    on(self_, primary, "delete", function(obj) q:forget(key_of(obj)) end)

    local function owner_key(obj)
      local ref = controller_owner(obj, prim)
      if not ref then return end
      local ns = (obj.metadata or {}).namespace
      q:add(prim.namespaced and ns and (ns .. "/" .. ref.name) or ref.name)
    end
    for _, res in ipairs(opts.owns or {}) do
      local r, rerr = self:resolve(res)
      if not r then close_all(self_) return nil, rerr end
      local inf, ierr = add_informer(self_, res, r, { namespace = opts.namespace })
      if not inf then close_all(self_) return nil, ierr end
      if not inf._indexes.owner then inf:add_index("owner", owner_uid) end
      on(self_, inf, "add", owner_key)
      on(self_, inf, "update", function(old, new) owner_key(old) owner_key(new) end)
      on(self_, inf, "delete", owner_key)
    end
    for i, w in ipairs(opts.watches or {}) do
      local r, rerr = self:resolve(w[1])
      if not r then close_all(self_) return nil, rerr end
      local inf, ierr = add_informer(self_, w[1], r, { namespace = w.namespace, label_selector = w.label_selector })
      if not inf then close_all(self_) return nil, ierr end
      local where = ("map of watches[%d] (%s) of controller %s"):format(i, w[1], opts.name)
      local function mapped(obj)
        local ok, keys = pcall(w.map, obj)
        if not ok then informer.report(keys, where) return end
        enqueue_all(self_, keys)
      end
      on(self_, inf, "add", mapped)
      on(self_, inf, "update", function(old, new) mapped(old) mapped(new) end)
      on(self_, inf, "delete", mapped)
    end
    if opts.leader_election then
      local le, lerr = require("kinformer.leader").new(self, opts.leader_election,
        "kinformer: controller: leader_election")
      if not le then close_all(self_) return nil, lerr end
      self_._le = le
      local user_started = le._on_started
      -- a new leader starts from everything in its (warm) cache: another
      -- replica may have left any of it half done
      le._on_started = function()
        for _, obj in ipairs(primary:list()) do q:add(key_of(obj)) end
        if user_started then user_started() end
      end
    end
    live[self_] = true
    -- /metrics and /readyz: its queue, and whether its caches have synced (not before it started)
    metrics.add_refresher(self_, function(ctl)
      if ctl._stopped then return nil end
      metrics.queue_stats(ctl.name, ctl._q:stats(), ctl._in_flight, ctl._concurrency)
      return ctl._started == true and all_synced(ctl)
    end)
    return self_
  end
end

--- Starts every controller that is neither started nor stopped: the first
-- turn of kinformer.step or run does, as they start informers.
function M.start_all()
  for ctl in pairs(live) do
    if not ctl._started and not ctl._stopping then ctl:start() end
  end
  return 0, nil
end
sched.add_pump(M, M.start_all)

return M
