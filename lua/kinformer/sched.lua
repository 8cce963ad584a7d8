--- Coroutines on the Lua thread: each reconcile (and kinformer.queue's get
-- inside one) runs in a coroutine of ours. A REST call, kinformer.sleep or
-- an empty queue inside one yields; the loop (kinformer.step / run) resumes
-- it when the answer, the time or the key comes, and runs others meanwhile.
-- Outside our coroutines the same calls block, as a script expects.
local core = require "kinformer.core"

local M = {}

local monotonic = core.now
local ours = setmetatable({}, { __mode = "k" }) -- coroutine -> its record
local replies = {}   -- request id -> coroutine waiting for the answer
local next_id = 0
local timers = {}    -- a binary min-heap of { due, co }
local runnable = {}  -- coroutines to resume at the next turn, with their values
-- owner -> fn(owner) --> ran, seconds until it needs a turn again (nil: only
-- when something happens): controllers and queues. Weak: a queue nobody
-- holds is collected.
local pumps = setmetatable({}, { __mode = "k" })
local WAIT = {}      -- what our coroutines yield, so a stray yield is told apart

--- The running coroutine if it is one of ours, else nil.
function M.current()
  local co, main = coroutine.running()
  if not main and ours[co] then return co end
  return nil
end

-- Resumes co with ...; when it ends, its record's done(ok, ...) runs.
local function resume(co, ...)
  local rec = ours[co]
  local res = table.pack(coroutine.resume(co, ...))
  if coroutine.status(co) == "dead" then
    ours[co] = nil
    if rec.done then rec.done(co, table.unpack(res, 1, res.n)) end
  elseif res[2] ~= WAIT then
    -- a yield that is not ours (the function yielded by itself): a turn
    -- given away; it goes on at the next one
    runnable[#runnable + 1] = { co, n = 0 }
  end
end

--- Runs fn(...) in a new coroutine of ours, at once, until it ends or first
-- waits; done(co, ok, results or error) runs when it ends (an error raised
-- inside is caught: debug.traceback(co, err) tells where).
function M.spawn(fn, done, ...)
  local co = coroutine.create(fn)
  ours[co] = { done = done }
  resume(co, ...)
  return co
end

--- Waits in the running coroutine of ours (it must be one) until
-- M.wake(co, ...) is called for it; returns those values.
function M.wait()
  return coroutine.yield(WAIT)
end

--- Makes co run again at the next turn with the values given.
function M.wake(co, ...)
  runnable[#runnable + 1] = table.pack(co, ...)
end

--- A background request for a coroutine of ours: h:request_async(req, id);
-- returns what h:request returns, once the answer has come.
function M.request(h, req)
  next_id = next_id + 1
  local id = next_id
  local ok, err = h:request_async(req, id)
  if not ok then return nil, err end
  replies[id] = coroutine.running()
  local r = coroutine.yield(WAIT)
  if r.err then return nil, r.err end
  return r.status, r.body, r.content_type, r.http_version
end

--- The loop's hand-off of a "reply" event.
function M.reply(ev)
  local co = replies[ev.source]
  if not co then return end
  replies[ev.source] = nil
  resume(co, ev)
end

local function heap_push(item)
  local i = #timers + 1
  timers[i] = item
  while i > 1 do
    local p = i // 2
    if timers[p][1] <= timers[i][1] then break end
    timers[p], timers[i] = timers[i], timers[p]
    i = p
  end
end

local function heap_pop()
  local top, n = timers[1], #timers
  timers[1] = timers[n]
  timers[n] = nil
  n = n - 1
  local i = 1
  while true do
    local l, r, m = 2 * i, 2 * i + 1, i
    if l <= n and timers[l][1] < timers[m][1] then m = l end
    if r <= n and timers[r][1] < timers[m][1] then m = r end
    if m == i then break end
    timers[m], timers[i] = timers[i], timers[m]
    i = m
  end
  return top
end

--- kinformer.sleep(seconds): inside a coroutine of ours it yields for that
-- long; elsewhere it waits (nothing is dispatched meanwhile).
function M.sleep(seconds)
  if type(seconds) ~= "number" or seconds ~= seconds then
    error("kinformer.sleep(seconds): seconds must be a number, got " .. type(seconds), 2)
  end
  if M.current() then
    heap_push{ monotonic() + math.max(seconds, 0), coroutine.running() }
    coroutine.yield(WAIT)
  elseif seconds > 0 then
    core.sleep(seconds)
  end
end

--- Calls fn() on the Lua thread, in the loop, once `seconds` have passed.
function M.after(seconds, fn)
  heap_push{ monotonic() + math.max(seconds, 0), fn }
end

--- Waits in the running coroutine of ours until `seconds` pass or the wait
-- is poked, whichever comes first: register(poke) gets the function that
-- ends it early (poking after the wait is over does nothing).
function M.nap(seconds, register)
  local co, live = coroutine.running(), true
  local function poke()
    if live then
      live = false
      M.wake(co)
    end
  end
  if register then register(poke) end
  M.after(seconds, poke)
  coroutine.yield(WAIT)
  live = false
end

--- Adds a pump: fn(owner) runs at every turn of the loop and returns what
-- it ran and the seconds until it needs a turn again (nil: only when
-- something happens); it goes with owner. Returns a function that removes it.
function M.add_pump(owner, fn)
  pumps[owner] = fn
  return function() pumps[owner] = nil end
end

--- One turn: due timers, runnable coroutines, pumps. Returns how many things
-- ran and the seconds until the next turn is needed (nil: none pending).
function M.turn()
  local n = 0
  local now = monotonic()
  while timers[1] and timers[1][1] <= now do
    local t = heap_pop()
    n = n + 1
    if type(t[2]) == "function" then t[2]() else resume(t[2]) end
  end
  while #runnable > 0 do
    local list = runnable
    runnable = {}
    for _, r in ipairs(list) do
      n = n + 1
      resume(r[1], table.unpack(r, 2, r.n))
    end
  end
  local next_in
  local list = {}
  for owner, fn in pairs(pumps) do list[#list + 1] = { owner, fn } end -- a pump may add or remove pumps
  for _, p in ipairs(list) do
    local ran, due = p[2](p[1])
    n = n + (ran or 0)
    if due and (not next_in or due < next_in) then next_in = due end
  end
  if #runnable > 0 then next_in = 0 end
  if timers[1] then
    local d = math.max(timers[1][1] - monotonic(), 0)
    if not next_in or d < next_in then next_in = d end
  end
  return n, next_in
end

-- owner -> { stop = fn(owner), busy = fn(owner) --> true while it still winds down }:
-- what kinformer.run stops on SIGTERM or SIGINT (controllers, leader elections).
local stoppers = setmetatable({}, { __mode = "k" })

function M.add_stopper(owner, stop, busy)
  stoppers[owner] = { stop = stop, busy = busy }
end

function M.remove_stopper(owner)
  stoppers[owner] = nil
end

--- Asks every stopper to stop; returns a function that is true while one is
-- still winding down.
function M.stop_all()
  local list = {}
  for owner, s in pairs(stoppers) do list[#list + 1] = { owner, s } end
  for _, p in ipairs(list) do p[2].stop(p[1]) end
  return function()
    for _, p in ipairs(list) do
      if p[2].busy and p[2].busy(p[1]) then return true end
    end
    return false
  end
end

--- Coroutines of ours that wait for a request's answer.
function M.waiting_requests()
  local n = 0
  for _ in pairs(replies) do n = n + 1 end
  return n
end

return M
