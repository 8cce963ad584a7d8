-- The controller runtime (c:controller, kinformer.queue, kinformer.sleep) against the real control plane,
-- with kubectl as the other client: every rule of the README's "Operators" section.
local kinformer = require "kinformer"
local cluster = require "support.cluster"
local helpers = require "support.helpers"
local must, spin = helpers.must, helpers.spin

local run_id = tostring(os.time() % 100000) .. tostring(math.random(100, 999))
local seq = 0
local function fresh_ns(c)
  seq = seq + 1
  local name = ("ctl-%s-%d"):format(run_id, seq)
  must(c:create("namespaces", { metadata = { name = name } }))
  return name
end

local function cm(ns, name, data, labels)
  return { apiVersion = "v1", kind = "ConfigMap", metadata = { name = name, namespace = ns, labels = labels },
    data = data or { v = "1" } }
end

local now = kinformer.core.now

describe("kinformer.queue", function()
  it("hands a key out once however often it was added, and never twice at once", function()
    local q = kinformer.queue{}
    for _ = 1, 100 do q:add("a") end
    q:add("b")
    assert.are.equal(2, q:len())
    assert.are.equal("a", q:get())
    q:add("a") -- while it is processed: it runs again after done, not now
    assert.are.equal("b", q:get())
    q:done("b")
    assert.are.equal(0, q:len())
    q:done("a")
    assert.are.equal(1, q:len())
    assert.are.equal("a", q:get())
    q:done("a")
    assert.are.equal(0, q:len())
  end)

  it("waits for a delayed key in get(), running the loop", function()
    local q = kinformer.queue{}
    local t0 = now()
    q:add_after("later", 0.2)
    assert.are.equal("later", q:get())
    assert.is_true(now() - t0 >= 0.19)
    q:done("later")
  end)

  it("backs off per key by 5 ms doubling, then the overall bucket, and forget resets", function()
    local q = kinformer.queue{}
    local got = {}
    for i = 1, 5 do got[i] = q:add_rate_limited("k") end
    assert.are.same({ 0.005, 0.01, 0.02, 0.04, 0.08 }, got)
    assert.are.equal(5, q:failures("k"))
    q:forget("k")
    assert.are.equal(0, q:failures("k"))
    assert.are.equal(0.005, q:add_rate_limited("k"))
    local capped = kinformer.queue{ qps = -1, max_delay = 1 }
    for _ = 1, 20 do capped:add_rate_limited("x") end
    assert.are.equal(1, capped:add_rate_limited("x"))
    -- 10 per second with a burst of 100: the 101st key of a burst waits about 0.1 s
    local b = kinformer.queue{}
    local last
    for i = 1, 101 do last = b:add_rate_limited("key" .. i) end
    assert.is_true(last > 0.09 and last <= 0.11, tostring(last))
  end)

  it("shuts down: get returns the waiting keys with drain, then nil", function()
    local q = kinformer.queue{}
    q:add("a")
    q:add_after("b", 10)
    q:shutdown{ drain = true }
    q:add("c")
    assert.are.equal("a", q:get())
    q:done("a")
    assert.is_nil(q:get())
  end)

  it("raises on misuse", function()
    assert.has_error(function() kinformer.queue{ basedelay = 1 } end,
      "kinformer.queue: unknown option 'basedelay' (did you mean 'base_delay'?)")
    local q = kinformer.queue{}
    assert.has_error(function() q:add(42) end)
  end)
end)

describe("kinformer.sleep", function()
  it("yields inside a reconcile's coroutine and waits elsewhere", function()
    local sched = require "kinformer.sched"
    local order = {}
    for i = 1, 3 do
      sched.spawn(function() kinformer.sleep(0.05 * (4 - i)) order[#order + 1] = i end, function() end)
    end
    local t0 = now()
    assert.is_true(spin(function() return #order == 3 end, 5))
    assert.are.same({ 3, 2, 1 }, order) -- they slept side by side
    assert.is_true(now() - t0 < 0.5)
    t0 = now()
    kinformer.sleep(0.1)
    assert.is_true(now() - t0 >= 0.099)
  end)
end)

describe("c:controller", function()
  local c
  setup(function()
    c = must(kinformer.client{ kubeconfig = cluster.kubeconfig, qps = 0 })
  end)
  teardown(function()
    c:stop_all()
  end)

  local function run_until(pred, timeout)
    return spin(pred, timeout or 30)
  end

  it("reconciles every existing primary once after the sync, and a key enqueued many times once", function()
    local ns = fresh_ns(c)
    for i = 1, 5 do must(c:create("configmaps", cm(ns, "cm" .. i))) end
    local runs, running, overlap = {}, {}, 0
    local ctl = must(c:controller{ name = "dedup", resource = "configmaps", namespace = ns, concurrency = 4,
      reconcile = function(_, ctx)
        if running[ctx.key] then overlap = overlap + 1 end
        running[ctx.key] = true
        runs[ctx.key] = (runs[ctx.key] or 0) + 1
        kinformer.sleep(0.3) -- long enough for changes to pile up while it runs
        running[ctx.key] = nil
      end })
    ctl:start()
    assert.is_true(run_until(function() return ctl:stats().reconciles >= 5 end))
    for i = 1, 5 do assert.are.equal(1, runs[ns .. "/cm" .. i]) end
    -- 20 changes of cm1 and 20 enqueues while its reconcile runs and waits
    local key = ns .. "/cm1"
    ctl:enqueue(key)
    assert.is_true(run_until(function() return running[key] end))
    for i = 1, 20 do
      cluster.kubectl(("-n %s patch configmap cm1 --type merge -p '{\"data\":{\"v\":\"%d\"}}'"):format(ns, i))
      ctl:enqueue(key)
    end
    assert.is_true(run_until(function()
      local st = ctl:stats()
      return st.in_flight == 0 and st.queued == 0 and runs[key] >= 3
    end))
    kinformer.step(500)
    assert.are.equal(0, overlap, "a key was reconciled twice at once")
    -- each burst that came during a run became one more run: far fewer than 41
    assert.is_true(runs[key] <= 6, "runs of cm1: " .. runs[key])
    local got = must(c:get("configmaps", "cm1", { namespace = ns }))
    assert.are.equal("20", got.data.v)
    ctl:stop{ drain = true }
  end)

  it("retries a failing key with client-go's backoff, and a success resets it", function()
    local ns = fresh_ns(c)
    must(c:create("configmaps", cm(ns, "flaky")))
    local at, errs = {}, {}
    local ctl = must(c:controller{ name = "backoff", resource = "configmaps", namespace = ns,
      on_error = function(err, key) errs[#errs + 1] = { err = err, key = key } end,
      reconcile = function(_, ctx)
        at[#at + 1] = now()
        assert.are.equal(#at - 1, ctx.failures)
        if #at <= 6 then return nil, "not yet " .. #at end
      end })
    ctl:start()
    assert.is_true(run_until(function() return #at >= 7 end))
    -- failure n waits 5 ms * 2^(n-1): 5, 10, 20, 40, 80, 160 ms
    for i = 2, 7 do
      local gap, want = at[i] - at[i - 1], 0.005 * 2 ^ (i - 2)
      assert.is_true(gap >= want * 0.95, ("attempt %d came %.4f s after the last, before %.3f s"):format(i, gap, want))
      assert.is_true(gap < want + 0.5, ("attempt %d came %.4f s after the last (want %.3f s)"):format(i, gap, want))
    end
    assert.are.equal(6, #errs)
    assert.are.equal(ns .. "/flaky", errs[1].key)
    assert.are.equal("not yet 1", errs[1].err)
    local st = ctl:stats()
    assert.are.equal(6, st.failed)
    assert.are.equal(1, st.succeeded)
    ctl:enqueue(ns .. "/flaky")
    assert.is_true(run_until(function() return #at >= 8 end))
    ctl:stop{ drain = true }
  end)

  it("reports a reconcile error of every kind and keeps going", function()
    local ns = fresh_ns(c)
    for _, n in ipairs{ "ret", "raise", "tbl", "rest", "ok" } do must(c:create("configmaps", cm(ns, n))) end
    local errs = {}
    local ctl = must(c:controller{ name = "kinds", resource = "configmaps", namespace = ns, base_delay = 30,
      on_error = function(err, key) errs[key:match("/(.+)$")] = err end,
      reconcile = function(obj)
        local n = obj.metadata.name
        if n == "ret" then return nil, "returned" end
        if n == "raise" then error("raised") end
        if n == "tbl" then error({ code = 7 }) end
        if n == "rest" then
          local _, err = c:get("configmaps", "does-not-exist", { namespace = ns })
          return nil, err
        end
      end })
    ctl:start()
    assert.is_true(run_until(function() return ctl:stats().reconciles >= 5 end))
    assert.are.equal("returned", errs.ret)
    assert.matches("raised", errs.raise)
    assert.matches("controller_spec", errs.raise) -- a traceback says where
    assert.are.same({ code = 7 }, errs.tbl)
    assert.are.equal("NotFound", errs.rest.reason)
    assert.is_nil(errs.ok)
    assert.are.equal(4, ctl:stats().failed)
    ctl:stop()
  end)

  it("requeues after the seconds a reconcile returns", function()
    local ns = fresh_ns(c)
    must(c:create("configmaps", cm(ns, "again")))
    local at = {}
    local ctl = must(c:controller{ name = "requeue", resource = "configmaps", namespace = ns,
      reconcile = function()
        at[#at + 1] = now()
        if #at < 3 then return 0.3 end
      end })
    ctl:start()
    assert.is_true(run_until(function() return #at >= 3 end))
    for i = 2, 3 do assert.is_true(at[i] - at[i - 1] >= 0.29, tostring(at[i] - at[i - 1])) end
    assert.are.equal(2, ctl:stats().requeued)
    ctl:stop()
  end)

  describe("with a custom resource", function()
    setup(function()
      cluster.kubectl("apply -f examples/website-crd.yaml")
      cluster.kubectl("wait --for condition=established --timeout=30s crd/websites.example.com")
    end)

    local function site(ns, name, image, replicas)
      return { apiVersion = "example.com/v1", kind = "Website", metadata = { name = name, namespace = ns },
        spec = { image = image or "nginx:1", replicas = replicas or 1 } }
    end

    it("does not reconcile again for its own status writes, and writes status only when it differs", function()
      local ns = fresh_ns(c)
      must(c:create("websites.example.com", site(ns, "s1")))
      local runs, wrote = 0, {}
      local ctl = must(c:controller{ name = "status", resource = "websites.example.com", namespace = ns,
        reconcile = function(obj, ctx)
          runs = runs + 1
          local cur, w = ctx:set_status{ observedGeneration = obj.metadata.generation }
          assert(cur, tostring(w))
          wrote[#wrote + 1] = w
        end })
      ctl:start()
      assert.is_true(run_until(function() return runs >= 1 end))
      kinformer.step(1500)
      local t = now()
      while now() - t < 1.5 do kinformer.step(100) end
      assert.are.equal(1, runs) -- the status write came back as an update, and did not enqueue
      assert.are.same({ true }, wrote)
      local got = must(c:get("websites.example.com", "s1", { namespace = ns }))
      assert.are.equal(1, got.status.observedGeneration)
      -- a spec change enqueues; an annotation too; the same status is not written again
      cluster.kubectl(("-n %s annotate website s1 touched=yes"):format(ns))
      assert.is_true(run_until(function() return #wrote >= 2 end))
      assert.are.same({ true, false }, wrote)
      cluster.kubectl(("-n %s patch website s1 --type merge -p '{\"spec\":{\"replicas\":2}}'"):format(ns))
      assert.is_true(run_until(function() return #wrote >= 3 end))
      assert.are.same({ true, false, true }, wrote)
      assert.are.equal(2, must(c:get("websites.example.com", "s1", { namespace = ns })).status.observedGeneration)
      ctl:stop()
    end)

    it("maps an owned child's events to its owner and repairs a deleted child", function()
      local ns = fresh_ns(c)
      must(c:create("websites.example.com", site(ns, "owner")))
      local runs = 0
      local ctl = must(c:controller{ name = "owner-map", resource = "websites.example.com", namespace = ns,
        owns = { "configmaps" },
        reconcile = function(obj, ctx)
          runs = runs + 1
          must(ctx:apply(cm(nil, obj.metadata.name .. "-child", { image = obj.spec.image })))
        end })
      ctl:start()
      local child
      assert.is_true(run_until(function()
        child = ctl:informer("configmaps"):get("owner-child", ns)
        return child ~= nil
      end))
      local ref = child.metadata.ownerReferences[1]
      assert.are.same({ "example.com/v1", "Website", "owner", true, true },
        { ref.apiVersion, ref.kind, ref.name, ref.controller, ref.blockOwnerDeletion })
      local owner = must(c:get("websites.example.com", "owner", { namespace = ns }))
      assert.are.equal(owner.metadata.uid, ref.uid)
      assert.are.equal(1, #ctl:informer("configmaps"):by_index("owner", owner.metadata.uid))
      local before = runs
      cluster.kubectl(("-n %s delete configmap owner-child"):format(ns))
      assert.is_true(run_until(function() return runs > before and ctl:informer("configmaps"):get("owner-child", ns) end))
      cluster.kubectl(("-n %s patch configmap owner-child --type merge -p '{\"data\":{\"image\":\"hand-edited\"}}'")
        :format(ns))
      assert.is_true(run_until(function()
        local cur = ctl:informer("configmaps"):get("owner-child", ns)
        return cur and cur.data.image == "nginx:1" and cur.metadata.resourceVersion ~= child.metadata.resourceVersion
      end))
      ctl:stop()
    end)

    it("refuses to own a child in another namespace or a cluster-scoped one", function()
      local ns = fresh_ns(c)
      must(c:create("websites.example.com", site(ns, "far")))
      local errs = {}
      local done = false
      local ctl = must(c:controller{ name = "far", resource = "websites.example.com", namespace = ns,
        reconcile = function(_, ctx)
          local a, e1 = ctx:apply(cm("default", "far-away"))
          local b, e2 = ctx:apply{ apiVersion = "v1", kind = "Namespace", metadata = { name = "owned-ns-" .. run_id } }
          errs = { a, e1, b, e2 }
          done = true
        end })
      ctl:start()
      assert.is_true(run_until(function() return done end))
      assert.is_nil(errs[1])
      assert.are.equal("Invalid", errs[2].reason)
      assert.matches("another namespace", errs[2].message)
      assert.is_nil(errs[3])
      assert.matches("cluster%-scoped", errs[4].message)
      assert.has_error(function() cluster.kubectl("-n default get configmap far-away") end)
      ctl:stop()
    end)

    it("adds the finalizer before the first reconcile, runs cleanup until it succeeds, then lets go", function()
      local ns = fresh_ns(c)
      must(c:create("websites.example.com", site(ns, "fin")))
      local seen_fin, cleanups = nil, 0
      local ctl = must(c:controller{ name = "fin", resource = "websites.example.com", namespace = ns,
        finalizer = "example.com/cleanup", base_delay = 0.05,
        on_error = function() end,
        reconcile = function(obj) seen_fin = obj.metadata.finalizers end,
        cleanup = function()
          cleanups = cleanups + 1
          if cleanups < 3 then return nil, "cleanup failed " .. cleanups end
        end })
      ctl:start()
      assert.is_true(run_until(function() return seen_fin ~= nil end))
      assert.are.same({ "example.com/cleanup" }, seen_fin)
      cluster.kubectl(("-n %s delete website fin --wait=false"):format(ns))
      assert.is_true(run_until(function() return cleanups >= 1 end))
      -- a failing cleanup keeps the object (terminating, finalizer in place)
      local held = must(c:get("websites.example.com", "fin", { namespace = ns }))
      assert.is_not_nil(held.metadata.deletionTimestamp)
      assert.are.same({ "example.com/cleanup" }, held.metadata.finalizers)
      assert.is_true(run_until(function()
        local _, err = c:get("websites.example.com", "fin", { namespace = ns })
        return err and err.reason == "NotFound"
      end))
      assert.are.equal(3, cleanups)
      ctl:stop()
    end)

    it("converges after a restart without duplicate children and without writes", function()
      local ns = fresh_ns(c)
      for i = 1, 5 do must(c:create("websites.example.com", site(ns, "r" .. i))) end
      local function operator()
        local runs = 0
        return must(c:controller{ name = "restart", resource = "websites.example.com", namespace = ns,
          owns = { "configmaps" },
          reconcile = function(obj, ctx)
            runs = runs + 1
            must(ctx:apply(cm(nil, obj.metadata.name .. "-child", { image = obj.spec.image })))
            must(ctx:set_status{ observedGeneration = obj.metadata.generation })
          end }), function() return runs end
      end
      local ctl, runs = operator()
      ctl:start()
      assert.is_true(run_until(function() return runs() >= 5 and ctl:stats().in_flight == 0 end))
      ctl:stop{ drain = true }
      local function versions()
        local v = {}
        for _, r in ipairs{ "configmaps", "websites.example.com" } do
          for _, item in ipairs(must(c:list(r, { namespace = ns })).items) do
            v[r .. "/" .. item.metadata.name] = item.metadata.resourceVersion
          end
        end
        return v
      end
      local before = versions()
      local ctl2, runs2 = operator()
      ctl2:start()
      assert.is_true(run_until(function() return runs2() >= 5 and ctl2:stats().in_flight == 0 end))
      kinformer.step(500)
      assert.are.equal(5, runs2())
      local list = must(c:list("configmaps", { namespace = ns }))
      local children = 0
      for _, item in ipairs(list.items) do
        if item.metadata.name:match("%-child$") then children = children + 1 end
      end
      assert.are.equal(5, children)
      -- apply of unchanged children and an unchanged status write nothing
      assert.are.same(before, versions())
      ctl2:stop()
    end)
  end)

  -- CPU seconds used so far by a process of the control plane (its pid file in the cluster's state dir)
  local function cpu_of(name)
    local pf = io.open(cluster.dir .. "/pids/" .. name .. ".pid")
    if not pf then return 0 end
    local pid = pf:read("l")
    pf:close()
    local f = io.open("/proc/" .. tostring(pid) .. "/stat")
    if not f then return 0 end
    local fields = {}
    for w in f:read("a"):gmatch("%S+") do fields[#fields + 1] = w end
    f:close()
    return (tonumber(fields[14]) + tonumber(fields[15])) / 100
  end
  local function server_cpu() return cpu_of("kube-apiserver") + cpu_of("etcd") end

  -- Reconciles overlap their API calls' waits. On loopback a call has no network wait: it is the API
  -- server's CPU, which shares this machine's cores with the client, so the overlap is measured through a
  -- TCP proxy (spec/support/tcp_proxy.py, TLS and HTTP/2 end to end) that holds each chunk 2.5 ms each
  -- way: a 5 ms round trip, as to a managed control plane behind its load balancer. The loopback figures
  -- are printed.
  it("overlaps reconciles: concurrency 8 converges in at most a third of the time of concurrency 1", function()
    local n = cluster.scale == "small" and 60 or 200
    local ns = fresh_ns(c)
    for i = 1, n do must(c:create("configmaps", cm(ns, "p" .. i))) end
    local pipe = assert(io.popen(("exec python3 spec/support/tcp_proxy.py --upstream 127.0.0.1:%d --delay 2.5")
      :format(cluster.port)))
    local port, _, pid = (pipe:read("l") or ""):match("^TCPPROXY (%d+) (%d+) (%d+)$")
    assert(port, "the TCP proxy did not start")
    finally(function()
      os.execute("kill " .. pid)
      pipe:close()
    end)
    local pc = must(kinformer.client{ qps = 0, kubeconfig = cluster.write_kubeconfig(cluster.tmpdir(), "rtt", {
      cluster = { server = "https://127.0.0.1:" .. port, ["certificate-authority-data"] = cluster.b64(cluster.ca_pem) },
      user = { token = cluster.token } }) })
    local function measure(client, concurrency, tag)
      local done, t0, cpu0 = 0, nil, nil
      local ctl = must(client:controller{ name = "speed-" .. tag, resource = "configmaps", namespace = ns,
        label_selector = "!child", concurrency = concurrency,
        reconcile = function(obj, ctx)
          t0 = t0 or now()
          cpu0 = cpu0 or server_cpu()
          -- three API calls: read the primary, apply a child, read the child back
          must(ctx.client:get("configmaps", obj.metadata.name, { namespace = ns }))
          must(ctx:apply(cm(nil, obj.metadata.name .. "-" .. tag, { v = tag }, { child = "1" }), { owner = false }))
          must(ctx.client:get("configmaps", obj.metadata.name .. "-" .. tag, { namespace = ns }))
          done = done + 1
        end })
      ctl:start()
      assert.is_true(run_until(function() return done >= n end, 300))
      local t, cpu = now() - t0, server_cpu() - cpu0
      ctl:stop{ drain = true }
      return t, cpu
    end
    local l1 = measure(c, 1, "l1")
    local l8, cpu8 = measure(c, 8, "l8")
    local t1 = measure(pc, 1, "p1")
    local t8 = measure(pc, 8, "p8")
    pc:stop_all()
    print(("\n  %d reconciles of read, apply, read; 5 ms round trip: concurrency 1 %.2f s, concurrency 8 %.2f s"
      .. " (%.1fx); loopback: %.2f s, %.2f s (%.1fx, the API server and etcd used %.2f s of CPU at concurrency 8)")
      :format(n, t1, t8, t1 / t8, l1, l8, l1 / l8, cpu8))
    -- under valgrind (scale small) the client's own CPU, 20-50x slower, bounds both runs: the overlap is
    -- only measured at full scale
    if cluster.scale ~= "small" then
      assert.is_true(t8 <= t1 / 3, ("concurrency 8 took %.2f s, concurrency 1 %.2f s"):format(t8, t1))
    end
  end)

  it("stops with drain: no new keys, running reconciles finish", function()
    local ns = fresh_ns(c)
    for i = 1, 4 do must(c:create("configmaps", cm(ns, "d" .. i))) end
    local started, finished = 0, 0
    local ctl = must(c:controller{ name = "drain", resource = "configmaps", namespace = ns, concurrency = 2,
      reconcile = function()
        started = started + 1
        kinformer.sleep(0.3)
        finished = finished + 1
      end })
    ctl:start()
    assert.is_true(run_until(function() return started == 2 end))
    ctl:stop{ drain = true }
    assert.are.equal(2, started)
    assert.are.equal(2, finished)
    kinformer.step(200)
    assert.are.equal(2, started)
    assert.has_error(function() ctl:start() end)
  end)

  it("raises on misuse and returns nil, err for an unknown resource", function()
    assert.has_error(function() c:controller{ name = "x", resource = "configmaps", reconcile = function() end,
      concurency = 2 } end, "kinformer: controller: unknown option 'concurency' (did you mean 'concurrency'?)")
    assert.has_error(function() c:controller{ resource = "configmaps", reconcile = function() end } end)
    assert.has_error(function() c:controller{ name = "x", resource = "configmaps" } end)
    assert.has_error(function() c:controller{ name = "x", resource = "configmaps", reconcile = function() end,
      finalizer = "a/b" } end)
    local ctl, err = c:controller{ name = "x", resource = "nosuchthings", reconcile = function() end }
    assert.is_nil(ctl)
    assert.are.equal("NotFound", err.reason)
  end)
end)
