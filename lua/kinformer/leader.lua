--- Leader election with a coordination.k8s.io/v1 Lease, as client-go's
-- tools/leaderelection does it, with these differences on purpose: a leader
-- that cannot renew before renew_deadline becomes a candidate again instead
-- of exiting; a clean stop releases the Lease; and candidates watch the
-- Lease, so a released one is taken at once rather than at the next retry.
local errors = require "kinformer.errors"
local sched = require "kinformer.sched"
local informer = require "kinformer.informer"
local opts_check = require("kinformer.opts").check
local core = require "kinformer.core"

local M = {}

local LE = {}
LE.__index = LE
LE.__name = "kinformer.leader_election"

local LEASES = "leases.coordination.k8s.io"

local option_types = {
  namespace = "string", name = "string", lease_duration = "seconds", renew_deadline = "seconds",
  retry_period = "seconds", identity = "string", on_started = "function", on_stopped = "function",
  on_new_leader = "function",
}

local events = require "kinformer.events"
local micro_time, default_identity = events.micro_time, events.identity

local function call(self, fn, ...)
  local ok, cb_err = pcall(fn, ...)
  if not ok then informer.report(cb_err, "leader election " .. self.name) end
end

function LE:is_leader()
  return self._leader == true
end

--- The identity that holds the Lease as last seen (nil: none or not seen yet).
function LE:holder()
  local h = self._record and self._record.holderIdentity
  if h == nil or h == "" then return nil end
  return h
end

local function set_leader(self, leader)
  if self._leader == leader then return end
  self._leader = leader
  require("kinformer.metrics").leading(self.name, leader)
  if leader then
    if self._on_started then call(self, self._on_started) end
  elseif self._on_stopped then
    call(self, self._on_stopped)
  end
end

-- Notes what the Lease says; the time it changed is ours (client-go's
-- observedTime): another machine's clock never decides when a lease expired.
local function observe(self, lease)
  local spec = lease and lease.spec or {}
  local old = self._record
  if not old or old.holderIdentity ~= spec.holderIdentity or old.renewTime ~= spec.renewTime then
    self._observed_at = core.now()
    if self._on_new_leader and (not old or old.holderIdentity ~= spec.holderIdentity)
      and spec.holderIdentity and spec.holderIdentity ~= "" then
      call(self, self._on_new_leader, spec.holderIdentity)
    end
  end
  self._record = spec
  self._lease = lease
end

-- One try: create the Lease, renew ours, or take one that expired or was
-- released. true when we hold it afterwards.
local function try_acquire_or_renew(self, timeout)
  local c, ropts = self._client, { namespace = self.namespace, timeout = timeout }
  local now = micro_time()
  local lease, err = c:get(LEASES, self.name, ropts)
  if not lease then
    if err.reason ~= "NotFound" then self._last_error = err return false end
    local created, cerr = c:create(LEASES, { apiVersion = "coordination.k8s.io/v1", kind = "Lease",
      metadata = { name = self.name, namespace = self.namespace },
      spec = { holderIdentity = self.identity, leaseDurationSeconds = self._duration_s, acquireTime = now,
        renewTime = now, leaseTransitions = 0 } }, ropts)
    if not created then self._last_error = cerr return false end
    observe(self, created)
    return true
  end
  observe(self, lease)
  local spec = lease.spec or {}
  local holder = spec.holderIdentity or ""
  local mine = holder == self.identity
  if holder ~= "" and not mine and core.now() < self._observed_at + (spec.leaseDurationSeconds or self._duration_s) then
    return false -- held by another, and not expired by our clock
  end
  lease.spec = {
    holderIdentity = self.identity, leaseDurationSeconds = self._duration_s,
    acquireTime = mine and spec.acquireTime or now, renewTime = now,
    leaseTransitions = mine and (spec.leaseTransitions or 0) or ((spec.leaseTransitions or 0) + 1),
  }
  local updated, uerr = c:update(LEASES, lease, ropts) -- with its resourceVersion: a race loses with 409
  if not updated then self._last_error = uerr return false end
  observe(self, updated)
  return true
end

local function run(self)
  while not self._stopped do
    if self._leader then
      local left = self.renew_deadline - (core.now() - self._renewed_at)
      if try_acquire_or_renew(self, math.max(left, 0.5)) then
        self._renewed_at = core.now()
      elseif core.now() - self._renewed_at >= self.renew_deadline then
        set_leader(self, false) -- stop acting; stay a candidate
      end
      if self._stopped then break end
      sched.nap(self.retry_period)
    else
      if try_acquire_or_renew(self, self.renew_deadline) then
        self._renewed_at = core.now()
        set_leader(self, true)
      else
        -- until the lease can have expired or the next retry, whichever is
        -- first; a change of the Lease (a release) pokes us at once
        sched.nap(self.retry_period, function(poke) self._poke = poke end)
        self._poke = nil
      end
    end
  end
  self._loop = nil
end

--- Starts campaigning (kinformer.run does it for you when it starts the controllers).
function LE:start()
  if self._stopped then error("kinformer: leader election " .. self.name .. " is stopped", 2) end
  if self._loop then return self end
  self._watch:start()
  require("kinformer.metrics").leading(self.name, false) -- a candidate: 0 until it leads
  sched.add_stopper(self, function(le) le:release() end)
  self._loop = sched.spawn(run, function(_, ok, err)
    if not ok then informer.report(err, "leader election " .. self.name) end
  end, self)
  return self
end

--- Gives the Lease up (if held) and stops campaigning: a standby takes over at
-- once. Returns true, or nil, err when the release could not be written (the
-- lease then expires after lease_duration).
function LE:release()
  sched.remove_stopper(self)
  if self._released then return true end
  self._released = true
  self._stopped = true
  if self._poke then self._poke() end
  local was = self._leader
  set_leader(self, false)
  informer.release(self._watch, self._watch_handles)
  if not was or not self._lease then return true end
  local lease = self._lease
  lease.spec = { holderIdentity = "", leaseDurationSeconds = 1, renewTime = micro_time(),
    acquireTime = micro_time(), leaseTransitions = (self._record.leaseTransitions or 0) }
  local ok, err = self._client:update(LEASES, lease, { namespace = self.namespace, timeout = 5 })
  if not ok then return nil, err end
  return true
end
LE.stop = LE.release
LE.__close = function(self) self:release() end

function LE:__tostring()
  return ("kinformer.leader_election %s/%s (%s, holder %s)"):format(self.namespace, self.name,
    self._leader and "leading" or "candidate", tostring(self:holder()))
end

--- The constructor behind c:leader_election and a controller's leader_election option.
function M.new(c, opts, fname)
  opts = opts_check(fname or "kinformer: leader_election", opts, option_types, 3)
  if type(opts.name) ~= "string" or opts.name == "" then
    error(("%s: name (the Lease's) is needed"):format(fname or "kinformer: leader_election"), 3)
  end
  local self = setmetatable({
    _client = c, name = opts.name, namespace = opts.namespace or c:namespace() or "default",
    lease_duration = opts.lease_duration or 15, renew_deadline = opts.renew_deadline or 10,
    retry_period = opts.retry_period or 2, identity = opts.identity or default_identity(),
    _on_started = opts.on_started, _on_stopped = opts.on_stopped, _on_new_leader = opts.on_new_leader,
    _leader = false, _observed_at = 0, _renewed_at = 0,
  }, LE)
  if not (self.lease_duration > self.renew_deadline and self.renew_deadline > self.retry_period) then
    error(("%s: lease_duration (%s) > renew_deadline (%s) > retry_period (%s) is needed, or two replicas "
      .. "may lead at once"):format(fname or "kinformer: leader_election", self.lease_duration,
      self.renew_deadline, self.retry_period), 3)
  end
  self._duration_s = math.max(1, math.ceil(self.lease_duration))
  local w, err = c:_acquire_informer(LEASES, { namespace = self.namespace,
    field_selector = "metadata.name=" .. self.name })
  if not w then return nil, err end
  self._watch = w
  local function changed() if self._poke then self._poke() end end
  self._watch_handles = {
    w:on("update", function(_, new) if (new.spec or {}).holderIdentity == "" then changed() end end),
    w:on("delete", changed),
  }
  return self
end

function M.install(Client)
  --- c:leader_election{ namespace =, name =, on_started =, on_stopped =, lease_duration = 15,
  -- renew_deadline = 10, retry_period = 2, identity = host_pid } --> le (campaigning) | nil, err
  function Client:leader_election(opts)
    local le, err = M.new(self, opts)
    if not le then return nil, err end
    return le:start()
  end
end

M.errors = errors
return M
