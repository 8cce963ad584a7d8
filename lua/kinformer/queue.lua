--- kinformer.queue: client-go's work queue for scripts (and the one behind
-- every controller). The queue itself is C (csrc/kn_workqueue.c): dedup,
-- delays, per-key backoff and the overall bucket. Here: get() that waits.
local core = require "kinformer.core"
local sched = require "kinformer.sched"
local opts_check = require("kinformer.opts").check

local M = {}

local Queue = {}
Queue.__index = Queue
Queue.__name = "kinformer.queue"

local option_types = { base_delay = "seconds", max_delay = "seconds", qps = "number", burst = "integer" }

local function check_key(key, fname)
  if type(key) ~= "string" or key == "" then
    error(("kinformer: queue:%s(key): key must be a non-empty string, got %s"):format(fname, type(key)), 3)
  end
end

--- kinformer.queue{ base_delay = 0.005, max_delay = 1000, qps = 10, burst = 100 }
-- (client-go's DefaultControllerRateLimiter; qps < 0: no overall bucket).
function M.new(opts)
  opts = opts_check("kinformer.queue", opts, option_types)
  local q = setmetatable({ _h = core.workqueue(opts), _waiters = {} }, Queue)
  -- hands ready keys to coroutines waiting in get(); wakes when a delayed
  -- key is due only while someone waits for it
  q._unpump = sched.add_pump(q, Queue._pump)
  return q
end

function Queue:_pump()
  local ran = 0
  while self._waiters[1] do
    local key = self._h:get()
    if not key then
      if self._h:shutting_down() and self._h:len() == 0 then
        -- shut down and empty: every waiter gets nil
        for _, co in ipairs(self._waiters) do sched.wake(co, nil) end
        self._waiters = {}
      end
      break
    end
    sched.wake(table.remove(self._waiters, 1), key)
    ran = ran + 1
  end
  if self._waiters[1] then return ran, self._h:next_due() end
  return ran, nil
end

function Queue:add(key)
  check_key(key, "add")
  self._h:add(key)
end

--- Adds key after `seconds` (an earlier pending time wins).
function Queue:add_after(key, seconds)
  check_key(key, "add_after")
  if type(seconds) ~= "number" or seconds ~= seconds then
    error("kinformer: queue:add_after(key, seconds): seconds must be a number", 2)
  end
  self._h:add_after(key, seconds)
end

--- Adds key after its backoff (5 ms doubling per failure, and the bucket);
-- returns the delay chosen.
function Queue:add_rate_limited(key)
  check_key(key, "add_rate_limited")
  return self._h:add_rate_limited(key)
end

--- Forgets key's failures (the next backoff starts again at base_delay).
function Queue:forget(key)
  check_key(key, "forget")
  self._h:forget(key)
end

--- Failures of key since the last forget (client-go's NumRequeues).
function Queue:failures(key)
  check_key(key, "failures")
  return self._h:failures(key)
end

--- The next key to work on, which is the caller's until done(key); nil once
-- the queue is shut down and empty. Waits for one: inside a reconcile (or any
-- coroutine kinformer runs) it yields; elsewhere it runs the loop
-- (kinformer.step) until a key is ready, so callbacks that add keys run.
function Queue:get()
  local key = self._h:get()
  if key then return key end
  if self._h:shutting_down() and self._h:len() == 0 then return nil end
  if sched.current() then
    self._waiters[#self._waiters + 1] = coroutine.running()
    return sched.wait()
  end
  local step = require("kinformer.informer").step
  while true do
    local due = self._h:next_due()
    step(due and math.max(1, math.ceil(due * 1000)) or 60000)
    key = self._h:get()
    if key then return key end
    if self._h:shutting_down() and self._h:len() == 0 then return nil end
  end
end

--- Ends the work on key: if it was added meanwhile, it waits again.
function Queue:done(key)
  check_key(key, "done")
  return self._h:done(key)
end

--- Keys waiting (ready or delayed), not those being worked on.
function Queue:len()
  return self._h:len()
end

--- No new keys from now on; delayed keys are dropped. drain = true: keys
-- already waiting are still handed out (get returns nil after the last);
-- otherwise they are dropped too.
function Queue:shutdown(opts)
  opts = opts_check("kinformer: queue:shutdown", opts, { drain = "boolean" })
  self._h:shutdown(opts.drain == true)
end

function Queue:shutting_down()
  return self._h:shutting_down()
end

--- { depth, delayed, processing, adds, retries }
function Queue:stats()
  return self._h:stats()
end

--- Frees the queue now (it is unusable afterwards); also done when collected.
function Queue:close()
  if self._unpump then self._unpump() self._unpump = nil end
  self._h:close()
end
Queue.__close = Queue.close

function Queue:__tostring()
  return ("kinformer.queue (%d waiting)"):format(self._h:len())
end

return M
