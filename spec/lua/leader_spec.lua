-- Operators in production, as a team runs them: leader election between real processes (kill -9 and
-- SIGTERM), signals during kinformer.run and during a blocking call, and Events counted with kubectl.
local kinformer = require "kinformer"
local cluster = require "support.cluster"
local helpers = require "support.helpers"
local must, spin = helpers.must, helpers.spin

local run_id = tostring(os.time() % 100000) .. tostring(math.random(100, 999))
local now = kinformer.core.wall_time

local read = helpers.read

-- Starts a Lua chunk as its own process (as a Pod would run it); returns its output path, its pid file
-- and the path its exit status lands in.
local function start(code, tag)
  local dir = cluster.tmpdir()
  local file = cluster.write(dir .. "/" .. tag .. ".lua", code)
  local out, pidf, rc = dir .. "/out", dir .. "/pid", dir .. "/rc"
  os.execute(("(sh -c 'echo $$ >%q; exec env -u KUBERNETES_SERVICE_HOST KUBECONFIG=%q LUA_PATH=%q LUA_CPATH=%q"
    .. " lua5.4 %q >%q 2>&1'; echo $? >%q) &"):format(pidf, cluster.kubeconfig, package.path, package.cpath, file,
    out, rc))
  return { out = out, pid = function() return read(pidf):match("%d+") end, rc = rc }
end

local function signal(p, sig)
  local pid = p.pid()
  assert(pid, "no pid")
  os.execute(("kill -%s %s 2>/dev/null"):format(sig, pid))
end

local function wait_file(path, pattern, timeout)
  local deadline = now() + timeout
  while now() < deadline do
    local s = read(path)
    if s:find(pattern) then return s end
    os.execute("sleep 0.05")
  end
  return nil
end

-- An operator process: a controller with leader election on short timings; every reconcile is logged
-- with its start and end times (wall clock, the same machine for both replicas).
local function operator_code(ns, id)
  return ([[
local kinformer = require "kinformer"
io.stdout:setvbuf("line")
local c = assert(kinformer.client())
local now = kinformer.core.wall_time
local ctl = assert(c:controller{ name = "ha", resource = "configmaps", namespace = %q, concurrency = 2,
  leader_election = { namespace = %q, name = "ha-lease", identity = %q, lease_duration = 4, renew_deadline = 3,
    retry_period = 0.5,
    on_started = function() print(("LEAD %%.3f"):format(now())) end,
    on_stopped = function() print(("FOLLOW %%.3f"):format(now())) end },
  reconcile = function(obj)
    local t0 = now()
    kinformer.sleep(0.05)
    print(("R %%s %%.3f %%.3f"):format(obj.metadata.name, t0, now()))
    return 0.2 -- keep reconciling: a leader is always busy
  end })
print("READY")
local ok, why = kinformer.run()
print(("EXIT %%s %%s %%.3f"):format(tostring(ok), tostring(why), now()))
]]):format(ns, ns, id)
end

local function reconciles(out)
  local list = {}
  for t0, t1 in out:gmatch("\nR %S+ ([%d.]+) ([%d.]+)") do list[#list + 1] = { tonumber(t0), tonumber(t1) } end
  return list
end

describe("leader election between processes", function()
  local c, ns
  setup(function()
    c = must(kinformer.client{ kubeconfig = cluster.kubeconfig })
    ns = "ha-" .. run_id
    must(c:create("namespaces", { metadata = { name = ns } }))
    for i = 1, 3 do
      must(c:create("configmaps", { metadata = { name = "cm" .. i, namespace = ns }, data = { v = "1" } }))
    end
  end)
  teardown(function()
    c:delete("namespaces", ns)
    cluster.cleanup()
  end)

  it("one replica leads; kill -9 and SIGTERM hand over in time; two never reconcile at once", function()
    local a = start(operator_code(ns, "a"), "a")
    local b = start(operator_code(ns, "b"), "b")
    local procs = { a, b }
    finally(function()
      for _, p in ipairs(procs) do pcall(signal, p, "KILL") end
    end)
    local first
    assert(spin(function()
      for _, p in ipairs(procs) do if read(p.out):find("LEAD") then first = p return true end end
      return false
    end, 30), "nobody leads: " .. read(a.out) .. read(b.out))
    local second = first == a and b or a
    os.execute("sleep 2")
    assert.is_nil(read(second.out):find("LEAD"), "both lead")
    assert.is_true(#reconciles(read(first.out)) > 3)
    assert.are.equal(0, #reconciles(read(second.out)))
    -- kill -9 of the leader: the Lease is not released; the follower takes over after it expires
    local killed_at = now()
    signal(first, "KILL")
    local out2 = wait_file(second.out, "LEAD ([%d.]+)", 15)
    assert(out2, "no takeover after kill -9: " .. read(second.out))
    local took = tonumber(out2:match("LEAD ([%d.]+)")) - killed_at
    print(("\n  takeover after kill -9: %.2f s (lease 4 s, retry 0.5 s)"):format(took))
    assert.is_true(took <= 4 + 0.5 + 1, ("took %.2f s"):format(took))
    -- no overlap: the killed one's last reconcile ended before the new leader's first began
    assert(wait_file(second.out, "\nR ", 5), "the new leader does not reconcile: " .. read(second.out))
    local r1, r2 = reconciles(read(first.out)), reconciles(read(second.out))
    assert.is_true(r1[#r1][2] < r2[1][1], "reconciles overlapped across the handover")
    -- a third replica; then SIGTERM of the leader: it releases the Lease and the standby leads within 2 s
    local third = start(operator_code(ns, "c"), "c")
    procs[#procs + 1] = third
    assert(wait_file(third.out, "READY", 20))
    os.execute("sleep 1.5")
    local term_at = now()
    signal(second, "TERM")
    local out3 = wait_file(third.out, "LEAD ([%d.]+)", 10)
    assert(out3, "no takeover after SIGTERM: " .. read(third.out))
    assert(wait_file(third.out, "\nR ", 5), "the new leader does not reconcile: " .. read(third.out))
    local took2 = tonumber(out3:match("LEAD ([%d.]+)")) - term_at
    print(("  takeover after SIGTERM: %.2f s"):format(took2))
    assert.is_true(took2 <= 2, ("took %.2f s"):format(took2))
    assert(wait_file(second.rc, "%d", 10), "the SIGTERMed replica did not exit")
    assert.are.equal("0", read(second.rc):match("%d+"), read(second.out))
    assert.matches("EXIT true SIGTERM", read(second.out))
    local r2b, r3 = reconciles(read(second.out)), reconciles(read(third.out))
    assert.is_true(r2b[#r2b][2] < r3[1][1], "reconciles overlapped across the SIGTERM handover")
    signal(third, "TERM")
    assert(wait_file(third.rc, "%d", 10))
    assert.are.equal("0", read(third.rc):match("%d+"), read(third.out))
  end)
end)

describe("signals", function()
  it("end a blocking call at once with reason Interrupted", function()
    local p = start(([[
local kinformer = require "kinformer"
io.stdout:setvbuf("line")
local c = assert(kinformer.client())
print("CALLING")
local t0 = kinformer.core.now()
-- a watch that the server keeps open for 30 s: the call blocks until it ends
local ok, err = c:request("GET", "/api/v1/namespaces?watch=1&timeoutSeconds=30")
print(("RESULT %%s %%s %%.2f"):format(tostring(ok), err and err.reason or "-", kinformer.core.now() - t0))
]]):format(), "block")
    assert(wait_file(p.out, "CALLING", 20))
    os.execute("sleep 1")
    signal(p, "INT")
    local out = wait_file(p.out, "RESULT", 5)
    assert(out, "the call went on: " .. read(p.out))
    local ok, reason, t = out:match("RESULT (%S+) (%S+) ([%d.]+)")
    assert.are.equal("nil", ok)
    assert.are.equal("Interrupted", reason)
    assert.is_true(tonumber(t) < 3, out)
  end)

  it("a second signal during the clean stop exits at once", function()
    local p = start(([[
local kinformer = require "kinformer"
io.stdout:setvbuf("line")
local c = assert(kinformer.client())
local ns = c:namespace()
assert(c:controller{ name = "slow", resource = "namespaces",
  reconcile = function() print("RECONCILE") kinformer.sleep(60) end })
local ok, why = kinformer.run{ shutdown_timeout = 60 }
print("EXIT", ok, why)
]]):format(), "twice")
    assert(wait_file(p.out, "RECONCILE", 20), read(p.out))
    signal(p, "TERM")
    os.execute("sleep 0.5")
    assert.are.equal("", read(p.rc)) -- still waiting for the reconcile
    signal(p, "TERM")
    assert(wait_file(p.rc, "%d", 3), "did not exit")
    assert.are.equal("143", read(p.rc):match("%d+"))
  end)
end)

describe("events", function()
  it("are Events of events.k8s.io/v1 with a series, and at most 25 per object in a burst", function()
    local c = must(kinformer.client{ kubeconfig = cluster.kubeconfig })
    local ns = "ev-" .. run_id
    must(c:create("namespaces", { metadata = { name = ns } }))
    local obj = must(c:create("configmaps", { metadata = { name = "subject", namespace = ns } }))
    local results = {}
    for i = 1, 30 do results[i] = c:event(obj, "Warning", "Repeated", "the same thing") end
    assert.is_true(results[25])
    assert.is_false(results[26])
    assert.is_true(spin(function() return c:event_stats().updated + c:event_stats().created == 25 end, 20))
    local out = cluster.kubectl(("-n %s get events.events.k8s.io -o 'jsonpath={range .items[*]}" ..
      "{.reason}/{.series.count}/{.regarding.name}/{.reportingController}{\"\\n\"}{end}'"):format(ns))
    assert.are.equal("Repeated/25/subject/kinformer\n", out)
    local st = c:event_stats()
    assert.are.same({ emitted = 30, created = 1, updated = 24, dropped = 5, failed = 0 }, st)
    -- another object has its own budget
    local other = must(c:create("configmaps", { metadata = { name = "other", namespace = ns } }))
    assert.is_true(c:event(other, "Normal", "Fine", "ok", { action = "Check" }))
    assert.is_true(spin(function() return c:event_stats().created == 2 end, 20))
    assert.has_error(function() c:event(other, "Info", "X", "y") end)
    assert.has_error(function() c:event(other, "Normal", "X", "y", { actoin = "z" }) end)
    c:delete("namespaces", ns)
  end)
end)
