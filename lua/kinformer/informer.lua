--- Informers and raw watches, and the loop that calls Lua back.
--
-- The C core lists, watches and keeps each informer's cache on the client's
-- I/O thread; what changed waits, in order, in one queue per Lua state. Lua
-- callbacks run only inside kinformer.run / kinformer.step (or
-- wait_for_sync), on the thread that calls them.
local core = require "kinformer.core"
local errors = require "kinformer.errors"
local rest = require "kinformer.rest"
local discovery = require "kinformer.discovery"
local selector = require "kinformer.selector"
local opts_check = require("kinformer.opts").check
local sched = require "kinformer.sched"
local metrics = require "kinformer.metrics"

local M = {}

-- Lua-side state of this Lua state's informers and watches, by id.
local sources = {}
-- Synthetic adds for handlers added after a sync: a FIFO taken from late_head
-- on (table.remove(late, 1) made 100,000 of them quadratic: 79 s).
-- (late[late_head .. late_tail]; the slots before late_head are nil).
local late, late_head, late_tail = {}, 1, 0
local stop_requested = false
local error_handler

-- tostring that cannot raise (an error value's __tostring may)
local function text(v)
  local ok, s = pcall(tostring, v)
  return ok and s or ("(an error value that cannot be shown: " .. tostring(s) .. ")")
end

local function default_error_handler(err, where)
  if errors.is(err) then
    io.stderr:write(text(err), "\n") -- it names where already
  else
    io.stderr:write(("kinformer: %s: %s\n"):format(where, text(err)))
  end
end
error_handler = default_error_handler

local function report(err, where)
  local ok, e = pcall(error_handler, err, where)
  if not ok then
    default_error_handler(("on_error handler failed: %s (while reporting: %s)"):format(text(e), text(err)), where)
  end
end
M.report = report -- for the controllers' errors

-- Drops the waiting late adds for which drop(item) is true, in one pass.
local function drop_late(drop)
  local kept = {}
  for i = late_head, late_tail do
    local item = late[i]
    if not drop(item) then kept[#kept + 1] = item end
  end
  late, late_head, late_tail = kept, 1, #kept
end

-- Frees a source's core handle (its cache and waiting events); idempotent.
local function close_source(src)
  if src._closed then return end
  src._h:close()
  src._closed = true
  sources[src._id] = nil
end

-- ---- informer ----

local Informer = {}
Informer.__index = Informer
Informer.__name = "kinformer.informer"

local Handle = {}
Handle.__index = Handle

local events = { add = true, update = true, delete = true }
local reindex -- below, with the indexes
local bits = core.notify_bits

-- The core queues only the notifications someone handles: an informer with
-- no handler keeps only its store, and no object is decoded for Lua.
local function wanted(inf)
  if next(inf._indexes) ~= nil then return bits.add | bits.update | bits.delete end
  local mask = 0
  for _, h in ipairs(inf._handlers) do mask = mask | bits[h.event] end
  return mask
end

local function set_mask(inf, mask)
  if mask ~= inf._mask and not inf._closed then
    inf._h:notify(mask)
    inf._mask = mask
  end
end

local function key_of(obj)
  local m = obj.metadata or {}
  if m.namespace and m.namespace ~= "" then return m.namespace .. "/" .. m.name end
  return m.name
end

local function describe(inf, key)
  return ("%s %s"):format(inf._what, key or "")
end

--- Adds a handler: "add" fn(obj), "update" fn(old, new), "delete" fn(obj, final_state_unknown).
-- A handler added after the informer has synced first gets "add" for every cached object.
function Informer:on(event, fn)
  if not events[event] then
    error(("kinformer: informer:on: event must be \"add\", \"update\" or \"delete\", not %q")
      :format(tostring(event)), 2)
  end
  if type(fn) ~= "function" then error("kinformer: informer:on: the handler must be a function", 2) end
  local h = setmetatable({ event = event, fn = fn, informer = self, skip_seq = 0 }, Handle)
  self._handlers[#self._handlers + 1] = h
  local mask = wanted(self)
  if event == "add" and (self._synced_seen or self._mask & bits.add == 0) then
    -- what is cached now, as adds, then only what comes after (one step in
    -- the core, so nothing falls between; the adds of the initial list were
    -- not queued while nobody handled adds)
    local objs, seq = self._h:snapshot(mask)
    self._mask = mask
    h.skip_seq = seq
    for _, obj in ipairs(objs) do
      late_tail = late_tail + 1
      late[late_tail] = { handler = h, obj = obj }
    end
    if #objs > 0 then core.wake() end -- so that kinformer.fd() turns readable for them
  else
    set_mask(self, mask)
  end
  return h
end

--- Removes the handler; it is not called again.
function Handle:remove()
  local list = self.informer._handlers
  for i = #list, 1, -1 do
    if list[i] == self then table.remove(list, i) end
  end
  self.removed = true
  set_mask(self.informer, wanted(self.informer))
end

function Informer:start()
  if self._closed then
    error("kinformer: the informer is closed (close() or stop_all{ clear = true }): ask the client for a new one", 2)
  end
  self._stopped_by_user = false
  if not self._h:running() then self._h:start() end
  return self
end

--- Stops listing and watching (the cache stays); kinformer.run does not start it again.
function Informer:stop()
  if not self._closed then
    self._stopped_by_user = true
    self._h:stop()
    reindex(self)
  end
end

--- Stops it and frees its cache, its waiting events and its late adds; the
-- client forgets it (asking again makes a new one). Also `local inf <close> = ...`.
function Informer:close()
  if self._closed then return end
  close_source(self)
  drop_late(function(item) return item.handler.informer == self end)
  local c = self._client
  for key, inf in pairs(c._informers or {}) do
    if inf == self then c._informers[key] = nil end
  end
end

function Informer:__close()
  self:close()
end

--- True once the initial list is in the cache.
function Informer:has_synced()
  return not self._closed and self._h:synced()
end

--- Drives the loop until the initial list is in the cache and its "add"
-- callbacks have run. nil, err when timeout (seconds) passes first.
function Informer:wait_for_sync(timeout)
  if timeout ~= nil and (type(timeout) ~= "number" or timeout ~= timeout or timeout < 0) then
    error("kinformer: informer:wait_for_sync([timeout]): timeout must be a number of seconds >= 0", 2)
  end
  self:start()
  local deadline = timeout and (core.now() + timeout) or nil
  while not self._synced_seen do
    local left = deadline and (deadline - core.now()) or 1
    if deadline and left < 0 then
      local msg = ("%s did not sync within %s s"):format(self._what, tostring(timeout))
      if self._last_error then msg = msg .. "; last error: " .. tostring(self._last_error) end
      return nil, errors.new("Timeout", msg, "wait_for_sync")
    end
    M.step(100)
  end
  return true
end

local function key_for(inf, name, namespace)
  if namespace then return namespace .. "/" .. name end
  if name:find("/", 1, true) or not inf._namespaced then return name end
  if inf._namespace then return inf._namespace .. "/" .. name end
  return name
end

--- The cached object: inf:get("name", "namespace") or inf:get("namespace/name"); nil if absent.
function Informer:get(name, namespace)
  if type(name) ~= "string" then error("kinformer: informer:get(name [, namespace])", 2) end
  return self._h:get(key_for(self, name, namespace))
end

--- Cached objects: all, or inf:list{ namespace = "x", label_selector = "tier=db" }.
function Informer:list(opts)
  opts = opts_check("kinformer: informer:list", opts, { namespace = "string", label_selector = "string" })
  local all = self._h:list(opts.namespace)
  if not opts.label_selector then return all end
  local match = selector.parse(opts.label_selector)
  local out = {}
  for _, obj in ipairs(all) do
    if match(obj.metadata and obj.metadata.labels) then out[#out + 1] = obj end
  end
  return out
end

function Informer:keys(namespace) return self._h:keys(namespace) end
function Informer:count() return self._h:count() end
function Informer:resource_version() return self._h:resource_version() end

--- Drops every cached object and frees its memory; a running informer relists.
function Informer:clear()
  self._h:clear()
  self._synced_seen = false
  for name, ix in pairs(self._indexes) do
    self._indexes[name] = { by_value = {}, by_key = {}, fn = ix.fn, since = 0 }
  end
  drop_late(function(item) return item.handler.informer == self end)
end

-- ---- indexes ----

local function index_remove(ix, key)
  local vals = ix.by_key[key]
  if not vals then return end
  for _, v in ipairs(vals) do
    local set = ix.by_value[v]
    if set then
      set[key] = nil
      if next(set) == nil then ix.by_value[v] = nil end
    end
  end
  ix.by_key[key] = nil
end

local function index_add(inf, name, ix, obj)
  local key = key_of(obj)
  local ok, vals = pcall(ix.fn, obj)
  if not ok then
    report(vals, ("index %q of %s"):format(name, describe(inf, key)))
    return
  end
  if vals == nil then return end
  if type(vals) ~= "table" then vals = { vals } end
  local list = {}
  for _, v in ipairs(vals) do
    v = tostring(v)
    ix.by_value[v] = ix.by_value[v] or {}
    ix.by_value[v][key] = true
    list[#list + 1] = v
  end
  ix.by_key[key] = list
end

--- Adds an index: fn(obj) returns the index values of an object (a list or one value).
function Informer:add_index(name, fn)
  if type(name) ~= "string" or type(fn) ~= "function" then
    error("kinformer: informer:add_index(name, function(obj) return { values } end)", 2)
  end
  if name == "namespace" then error("kinformer: the index \"namespace\" is built in", 2) end
  local all = bits.add | bits.update | bits.delete
  local objs, seq = self._h:snapshot(all) -- the cache, and every notification from here
  self._mask = all
  local ix = { fn = fn, by_value = {}, by_key = {}, since = seq }
  self._indexes[name] = ix
  for _, obj in ipairs(objs) do index_add(self, name, ix, obj) end
  return self
end

-- Whether fn(obj) gives `value` (an error counts as no: it is reported when
-- the change is dispatched).
local function has_value(ix, obj, value)
  local ok, vals = pcall(ix.fn, obj)
  if not ok or vals == nil then return false end
  if type(vals) ~= "table" then vals = { vals } end
  for _, v in ipairs(vals) do
    if tostring(v) == value then return true end
  end
  return false
end

--- Cached objects whose index `name` has `value` (built-in: "namespace"), as
-- the cache is at the moment of the call, the moment get and list read: the
-- index itself is kept at dispatch, which the cache may be ahead of, so the
-- objects whose changes still wait in the queue are read from the cache and
-- indexed afresh, in one picture with the others (informer:view).
function Informer:by_index(name, value)
  if name == "namespace" then return self._h:list(value) end
  local ix = self._indexes[name]
  if not ix then error(("kinformer: informer:by_index: no index %q"):format(tostring(name)), 2) end
  value = tostring(value)
  local keys = {}
  for k in pairs(ix.by_value[value] or {}) do keys[#keys + 1] = k end
  local now, pending = self._h:view(keys)
  local found = {}
  for k, obj in pairs(now) do
    -- an object with no change waiting is as it was dispatched: the index is right for it
    if obj and (not pending[k] or has_value(ix, obj, value)) then found[#found + 1] = k end
  end
  table.sort(found)
  local out = {}
  for i, k in ipairs(found) do out[i] = now[k] end
  return out
end

-- At stop() the indexes are built again from the cache; the events still
-- waiting are delivered to the handlers but, older than that, leave the
-- indexes alone.
reindex = function(inf)
  if next(inf._indexes) == nil or inf._closed then return end
  local objs, seq = inf._h:snapshot(inf._mask)
  for name, ix in pairs(inf._indexes) do
    local fresh = { fn = ix.fn, by_value = {}, by_key = {}, since = seq }
    inf._indexes[name] = fresh
    for _, obj in ipairs(objs) do index_add(inf, name, fresh, obj) end
  end
end

local function update_indexes(inf, ev)
  if next(inf._indexes) == nil then return end
  local key = key_of(ev.obj)
  for name, ix in pairs(inf._indexes) do
    if ev.seq > ix.since then
      index_remove(ix, key)
      if ev.type ~= "delete" then index_add(inf, name, ix, ev.obj) end
    end
  end
end

function Informer:stats()
  local s = self._h:stats()
  s.resource, s.namespace = self._resource, self._namespace
  return s
end

function Informer:__tostring()
  return "kinformer.informer (" .. self._what .. ")"
end

-- ---- dispatch ----

local function call(fn, where, ...)
  local ok, err = pcall(fn, ...)
  if not ok then report(err, where) end
end

local function dispatch_informer(inf, ev)
  if ev.type == "synced" then
    inf._synced_seen = true
    return
  end
  if ev.type == "error" then
    inf._last_error = ev.message
    report(errors.new("Watch", ev.message), inf._what)
    return
  end
  update_indexes(inf, ev)
  for _, h in ipairs(inf._handlers) do
    if h.event == ev.type and not h.removed and ev.seq > h.skip_seq then
      -- the hot path: the "where" of an error is only spelled out when one happens
      local ok, err
      if ev.type == "add" then ok, err = pcall(h.fn, ev.obj)
      elseif ev.type == "update" then ok, err = pcall(h.fn, ev.old, ev.obj)
      else ok, err = pcall(h.fn, ev.obj, ev.final_state_unknown == true) end
      if not ok then report(err, ("%s handler of %s"):format(ev.type, describe(inf, key_of(ev.obj)))) end
    end
  end
end

local function dispatch(ev)
  if ev.type == "reply" then return sched.reply(ev) end
  local src = sources[ev.source]
  if not src then return end
  if src._raw then
    if ev.type == "error" then
      report(errors.new("Watch", ev.message), src._what)
    elseif ev.type == "raw" then
      call(src._fn, ("watch callback of %s"):format(src._what), ev.raw_type, ev.obj)
    end
  else
    dispatch_informer(src, ev)
  end
end

-- step's wait in whole milliseconds for the core: nil, 0 or less: none; a
-- fraction: rounded up (step(0.5) waits up to 1 ms); math.huge (or more than
-- 2^31 ms, 24 days): until an event comes.
local function wait_ms(timeout)
  if timeout == nil then return 0 end
  if type(timeout) ~= "number" or timeout ~= timeout then
    error("kinformer.step([timeout_ms]): timeout_ms must be a number of milliseconds, got "
      .. (type(timeout) == "number" and "nan" or type(timeout)), 3)
  end
  if timeout <= 0 then return 0 end
  if timeout >= 0x7fffffff then return -1 end
  return math.tointeger(math.ceil(timeout))
end

--- Lets go of an informer from Client:_acquire_informer: removes the
-- handlers given, and closes it when nobody else holds it.
function M.release(inf, handles)
  for _, h in ipairs(handles or {}) do h:remove() end
  inf._runtime_users = (inf._runtime_users or 1) - 1
  if inf._runtime and inf._runtime_users <= 0 and not inf._closed then inf:close() end
end

--- Dispatches what is pending, waiting up to timeout_ms for the first event.
-- Returns the number of callbacks' events handled.
function M.step(timeout_ms)
  local wait = wait_ms(timeout_ms)
  local n = 0
  while late_head <= late_tail do
    local item = late[late_head]
    late[late_head] = nil
    late_head = late_head + 1
    if late_head > late_tail then late, late_head, late_tail = {}, 1, 0 end -- drained: start afresh
    local h = item.handler
    if not h.removed then
      local ok, err = pcall(h.fn, item.obj) -- the where is only spelled out on an error
      if not ok then report(err, ("add handler of %s"):format(describe(h.informer, key_of(item.obj)))) end
    end
    n = n + 1
  end
  -- reconciles and sleepers whose time has come, controllers with keys ready
  local ran, next_in = sched.turn()
  n = n + ran
  if next_in and wait ~= 0 then
    local ms = math.tointeger(math.ceil(next_in * 1000))
    if wait < 0 or ms < wait then wait = ms end
  end
  local ev
  if n > 0 or wait == 0 then
    ev = core.next_event(0)
  else
    -- idle is healthy however long it lasts; a callback is "busy" (/healthz)
    metrics.loop_waiting()
    ev = core.next_event(wait)
    metrics.loop_busy()
  end
  while ev do
    dispatch(ev)
    n = n + 1
    -- a callback that called kinformer.stop() ends the batch: the rest waits
    -- for the next run or step; and big batches let the caller breathe
    if stop_requested or n >= 10000 then break end
    ev = core.next_event(0)
  end
  if n > ran then n = n + (sched.turn()) end -- what the events made ready runs in this step
  return n
end

local monotonic = core.now

--- Starts every informer not yet started and dispatches callbacks until
-- kinformer.stop() (returns true) or timeout seconds pass (returns false).
function M.run(opts)
  opts = opts_check("kinformer.run", opts, { timeout = "seconds", shutdown_timeout = "seconds" })
  for _, src in pairs(sources) do
    if not src._raw and not src._closed and not src._stopped_by_user then src:start() end
  end
  local deadline = opts.timeout and (monotonic() + opts.timeout)
  -- SIGTERM or SIGINT: a clean stop (below); a second one exits at once
  core.signals_begin(true)
  local ok, res, why = pcall(function()
    -- a stop() asked for before run (or in a callback of an earlier step) ends it at once
    while not stop_requested do
      local sig = core.signal()
      if sig then return "signal", sig end
      -- callbacks run only inside step, so a long wait never delays a stop();
      -- a signal ends the wait early; an idle script wakes once a minute
      local wait = 60000
      if deadline then
        local left = deadline - monotonic()
        if left <= 0 then return "timeout" end
        wait = math.max(1, math.min(wait, math.floor(left * 1000)))
      end
      M.step(wait)
    end
    return "stopped"
  end)
  if ok and res == "signal" then
    -- controllers take no new keys, running reconciles get shutdown_timeout,
    -- leases are released; the loop keeps going meanwhile, for their answers
    local busy = sched.stop_all()
    local until_t = monotonic() + (opts.shutdown_timeout or 30)
    while busy() and monotonic() < until_t do M.step(50) end
  end
  core.signals_end()
  core.signal_clear()
  if not ok then error(res, 0) end
  if res == "timeout" then return false end
  stop_requested = false
  if res == "signal" then return true, why end
  return true
end

function M.stop()
  stop_requested = true
end

function M.fd()
  return core.fd()
end

function M.on_error(fn)
  if fn ~= nil and type(fn) ~= "function" then error("kinformer.on_error(function(err, where) end)", 2) end
  error_handler = fn or default_error_handler
end

--- Objects and bytes held by each store, events queued, relists, reconnects.
function M.stats()
  local out = { informers = {}, objects = 0, bytes = 0, queued = core.pending() }
  for id, src in pairs(sources) do
    if not src._closed then
      local s = src._h:stats()
      s.id, s.what, s.raw = id, src._what, src._raw or false
      out.informers[#out.informers + 1] = s
      out.objects = out.objects + s.objects
      out.bytes = out.bytes + s.bytes
    end
  end
  table.sort(out.informers, function(a, b) return a.id < b.id end)
  return out
end

-- ---- raw watches ----

local Watch = {}
Watch.__index = Watch
Watch.__name = "kinformer.watch"

--- Stops the watch; no callback comes after the events already waiting.
function Watch:stop()
  if not self._closed then
    self._stopped = true
    self._h:stop()
  end
end

--- The last version seen (nil once closed).
function Watch:resource_version()
  if self._closed then return nil end
  return self._h:resource_version()
end

--- Stops it and frees it: its waiting events are dropped. Also `local w <close> = ...`.
function Watch:close()
  if self._closed then return end
  close_source(self)
  local list = self._client._watches or {}
  for i = #list, 1, -1 do
    if list[i] == self then table.remove(list, i) end
  end
end

function Watch:__close()
  self:close()
end

function Watch:__tostring()
  return ("kinformer.watch (%s%s)"):format(self._what,
    self._closed and ", closed" or self._stopped and ", stopped" or "")
end

-- The core's error table as a kinformer error (a bare string from an older core still works).
local function core_error(e, reason, what)
  if type(e) ~= "table" then e = { code = 0, message = tostring(e) } end
  if e.reason == nil or e.reason == "" then e.reason = reason end
  return errors.from_core(e, what)
end

-- ---- client methods ----

local informer_options = {
  namespace = "string", label_selector = "string", field_selector = "string", resync = "seconds",
  page_size = "integer", keep_managed_fields = "boolean", metadata_only = "boolean",
  watch_timeout = "pair", streaming_list = "boolean", stall_limit = "seconds",
}
local watch_options = { resource_version = "string", namespace = "string", label_selector = "string",
  field_selector = "string", bookmarks = "boolean", watch_timeout = "pair", stall_limit = "seconds" }

-- raises at the caller of the public function
local function check_opts(opts, allowed, fname)
  return opts_check("kinformer: " .. fname, opts, allowed, 3)
end


function M.install(Client)
  --- A shared informer: the same resource with the same options gives the same one.
  local make_informer
  function Client:informer(resource, opts)
    opts = check_opts(opts, informer_options, "informer")
    local inf, err = make_informer(self, resource, opts)
    if inf then inf._runtime = false end -- the user holds it: the runtime never closes it
    return inf, err
  end

  --- For controllers and leader elections: the shared informer, counted, so
  -- that M.release closes it when the last of them lets go of one the user
  -- never asked for.
  function Client:_acquire_informer(resource, opts)
    opts = check_opts(opts, informer_options, "informer")
    local inf, err = make_informer(self, resource, opts)
    if not inf then return nil, err end
    if inf._runtime == nil then inf._runtime = true end
    inf._runtime_users = (inf._runtime_users or 0) + 1
    return inf
  end

  make_informer = function(self, resource, opts)
    local r, err = self:resolve(resource)
    if not r then return nil, err end
    local has = {}
    for _, v in ipairs(r.verbs) do has[v] = true end
    if not (has.list and has.watch) then
      return nil, errors.new("MethodNotAllowed", discovery.full_name(r) .. " cannot be listed and watched", "informer")
    end
    local ns = r.namespaced and opts.namespace or nil
    local wt = opts.watch_timeout or {}
    local key = table.concat({ r.group, r.version, r.resource, ns or "", opts.label_selector or "",
      opts.field_selector or "", tostring(opts.resync or 0), tostring(opts.page_size or 500),
      tostring(opts.keep_managed_fields or false), tostring(opts.metadata_only or false),
      tostring(wt[1] or ""), tostring(wt[2] or ""), tostring(opts.streaming_list ~= false),
      tostring(opts.stall_limit or 55) }, "\0")
    self._informers = self._informers or {}
    local existing = self._informers[key]
    if existing and not existing._closed then return existing end
    local what = discovery.full_name(r) .. (ns and (" in " .. ns) or "")
    local h, cerr = core.informer(self._h, {
      path = rest.path_of(r, ns), what = what, api_version = r.api_version, kind = r.kind,
      label_selector = opts.label_selector, field_selector = opts.field_selector,
      page_size = opts.page_size, resync = opts.resync, keep_managed_fields = opts.keep_managed_fields,
      metadata_only = opts.metadata_only, watch_min = wt[1], watch_max = wt[2],
      paged_only = opts.streaming_list == false, stall_limit = opts.stall_limit,
    })
    if not h then return nil, core_error(cerr, "Informer", what) end
    local inf = setmetatable({
      _h = h, _id = h:id(), _client = self, _what = what, _resource = discovery.full_name(r),
      _namespace = ns, _namespaced = r.namespaced, _handlers = {}, _indexes = {}, _synced_seen = false,
      _mask = 0,
    }, Informer)
    sources[inf._id] = inf
    self._informers[key] = inf
    return inf
  end

  --- A raw watch: fn(type, obj) for "ADDED", "MODIFIED", "DELETED", "BOOKMARK" (with bookmarks = true)
  -- and "EXPIRED" (the version was too old, or newer than the server can serve: what happened meanwhile
  -- is not replayed; the watch goes on from a fresh version). Resumes from the last version after any break.
  function Client:watch(resource, opts, fn)
    if type(opts) == "function" and fn == nil then opts, fn = nil, opts end
    opts = check_opts(opts, watch_options, "watch")
    if type(fn) ~= "function" then error("kinformer: client:watch(resource, opts, function(type, obj) end)", 2) end
    local r, err = self:resolve(resource)
    if not r then return nil, err end
    local ns = r.namespaced and opts.namespace or nil
    local what = discovery.full_name(r) .. (ns and (" in " .. ns) or "")
    local wt = opts.watch_timeout or {}
    local h, cerr = core.informer(self._h, {
      path = rest.path_of(r, ns), what = what, api_version = r.api_version, kind = r.kind,
      label_selector = opts.label_selector, field_selector = opts.field_selector, raw = true,
      resource_version = opts.resource_version, bookmarks = opts.bookmarks, watch_min = wt[1], watch_max = wt[2],
      stall_limit = opts.stall_limit,
    })
    if not h then return nil, core_error(cerr, "Watch", what) end
    local w = setmetatable({ _h = h, _id = h:id(), _raw = true, _fn = fn, _what = what, _client = self }, Watch)
    sources[w._id] = w
    self._watches = self._watches or {}
    self._watches[#self._watches + 1] = w
    h:start()
    return w
  end

  --- Stops every informer and watch of this client; with clear = true also
  -- frees their caches and closes them (kinformer.stats() then counts nothing of theirs).
  function Client:stop_all(opts)
    opts = check_opts(opts, { clear = "boolean" }, "stop_all")
    for key, inf in pairs(self._informers or {}) do
      if opts.clear then -- closing stops it; its indexes go with it
        inf._stopped_by_user = true
        close_source(inf)
        self._informers[key] = nil
      else
        inf:stop()
      end
    end
    for i = #(self._watches or {}), 1, -1 do
      local w = self._watches[i]
      w:stop()
      if opts.clear then
        close_source(w)
        table.remove(self._watches, i)
      end
    end
    if opts.clear then
      drop_late(function(item) return item.handler.informer._client == self end)
    end
  end

  local close = Client.close
  function Client:close()
    self:stop_all{ clear = true }
    close(self)
  end
  Client.__close = Client.close
end

return M
