-- Informers and raw watches against the real control plane: callbacks,
-- sharing, indexes, churn, resumed watches, a server restart, 410s, clear()
-- and switching clusters.
local kinformer = require "kinformer"
local cluster = require "support.cluster"

local helpers = require "support.helpers"
local must, uptime, spin = helpers.must, helpers.uptime, helpers.spin

local run_id = tostring(os.time() % 100000) .. tostring(math.random(100, 999))
local function name(s) return ("inf-%s-%s"):format(s, run_id) end

local errors_seen = {}
kinformer.on_error(function(err, where) errors_seen[#errors_seen + 1] = { err = tostring(err), where = where } end)

local admin
setup(function() admin = must(kinformer.client{ kubeconfig = cluster.kubeconfig, qps = 1000, burst = 1000 }) end)

-- a counter in every name: random suffixes alone can repeat within a run
local ns_count = 0
local function make_ns(s)
  ns_count = ns_count + 1
  local ns = name(s .. "-" .. ns_count)
  must(admin:create("namespaces", { metadata = { name = ns } }))
  return ns
end

describe("an informer", function()
  local c, ns
  before_each(function()
    c = must(kinformer.client{ kubeconfig = cluster.kubeconfig })
    ns = make_ns("basic" .. math.random(1000, 9999))
    errors_seen = {}
  end)
  after_each(function()
    c:stop_all{ clear = true }
    admin:delete("namespaces", ns)
  end)

  it("lists, then tells add, update and delete, every object with apiVersion and kind", function()
    must(admin:create("configmaps", { metadata = { name = "pre", namespace = ns }, data = { a = "1" } }))
    local inf = must(c:informer("configmaps", { namespace = ns }))
    local log = {}
    inf:on("add", function(o) log[#log + 1] = { "add", o.metadata.name, o.apiVersion, o.kind } end)
    inf:on("update", function(old, new)
      log[#log + 1] = { "update", new.metadata.name, old.data.a, new.data.a, new.apiVersion, new.kind }
    end)
    inf:on("delete", function(o, unknown) log[#log + 1] = { "delete", o.metadata.name, unknown, o.apiVersion, o.kind } end)
    assert.is_false(inf:has_synced())
    must(inf:wait_for_sync(20))
    assert.is_true(inf:has_synced())
    assert.are.same({ { "add", "pre", "v1", "ConfigMap" } }, log)
    local cm = must(admin:create("configmaps", { metadata = { name = "x", namespace = ns }, data = { a = "1" } }))
    cm.data.a = "2"
    must(admin:update("configmaps", cm))
    must(admin:delete("configmaps", "x", { namespace = ns }))
    assert.is_true(spin(function() return #log == 4 end))
    assert.are.same({ "add", "x", "v1", "ConfigMap" }, log[2])
    assert.are.same({ "update", "x", "1", "2", "v1", "ConfigMap" }, log[3])
    assert.are.same({ "delete", "x", false, "v1", "ConfigMap" }, log[4])
    assert.are.equal(1, inf:count())
    assert.are.same({ ns .. "/pre" }, inf:keys())
    local pre = inf:get("pre", ns)
    assert.are.same({ "v1", "ConfigMap", "1" }, { pre.apiVersion, pre.kind, pre.data.a })
    assert.are.equal("pre", inf:get(ns .. "/pre").metadata.name)
    assert.are.equal("pre", inf:get("pre").metadata.name) -- the informer's namespace
    assert.is_nil(inf:get("x", ns))
    assert.is_nil(pre.metadata.managedFields)
    assert.matches("^%d+$", inf:resource_version())
    assert.are.equal(0, #errors_seen)
  end)

  it("is shared: the same resource and options give one informer, one list and one watch", function()
    local a = must(c:informer("configmaps", { namespace = ns }))
    local b = must(c:informer("cm", { namespace = ns }))
    assert.are.equal(a, b)
    local other = must(c:informer("configmaps", { namespace = ns, label_selector = "x=y" }))
    assert.are_not.equal(a, other)
    local seen_a, seen_b = 0, 0
    a:on("add", function() seen_a = seen_a + 1 end)
    b:on("add", function() seen_b = seen_b + 1 end)
    must(a:wait_for_sync(20))
    must(admin:create("configmaps", { metadata = { name = "s", namespace = ns } }))
    assert.is_true(spin(function() return seen_a == 1 and seen_b == 1 end))
    local st = a:stats()
    assert.are.same({ 1, 1 }, { st.lists, st.watches })
  end)

  it("gives a handler added after the sync an add for every cached object, then what follows", function()
    for i = 1, 3 do must(admin:create("configmaps", { metadata = { name = "l" .. i, namespace = ns } })) end
    local inf = must(c:informer("configmaps", { namespace = ns }))
    must(inf:wait_for_sync(20))
    local adds = {}
    local h = inf:on("add", function(o) adds[#adds + 1] = o.metadata.name end)
    assert.is_true(spin(function() return #adds == 3 end))
    must(admin:create("configmaps", { metadata = { name = "l4", namespace = ns } }))
    assert.is_true(spin(function() return #adds == 4 end))
    kinformer.step(200)
    table.sort(adds)
    assert.are.same({ "l1", "l2", "l3", "l4" }, adds)
    h:remove()
    must(admin:create("configmaps", { metadata = { name = "l5", namespace = ns } }))
    assert.is_true(spin(function() return inf:count() == 5 end))
    kinformer.step(100)
    assert.are.equal(4, #adds)
  end)

  it("caches only metadata when asked, and keeps managedFields only when asked", function()
    must(admin:create("configmaps", { metadata = { name = "m", namespace = ns }, data = { secret = "big" } },
      { field_manager = "spec" }))
    local meta = must(c:informer("configmaps", { namespace = ns, metadata_only = true }))
    local full = must(c:informer("configmaps", { namespace = ns, keep_managed_fields = true }))
    must(meta:wait_for_sync(20))
    must(full:wait_for_sync(20))
    local m = meta:get("m", ns)
    assert.are.same({ "v1", "ConfigMap", "m" }, { m.apiVersion, m.kind, m.metadata.name })
    assert.is_nil(m.data)
    assert.is_nil(m.metadata.managedFields)
    assert.is_table(full:get("m", ns).metadata.managedFields)
    assert.are.equal("big", full:get("m", ns).data.secret)
    assert.is_true(meta:stats().bytes < full:stats().bytes)
  end)

  it("indexes objects and filters by label", function()
    for i = 1, 6 do
      must(admin:create("configmaps", { metadata = { name = "i" .. i, namespace = ns,
        labels = { tier = i % 2 == 0 and "db" or "web" } }, data = { node = "node-" .. (i % 3) } }))
    end
    local inf = must(c:informer("configmaps", { namespace = ns }))
    must(inf:wait_for_sync(20))
    inf:add_index("by_node", function(o) return { o.data.node } end)
    local function names(list)
      local out = {}
      for _, o in ipairs(list) do out[#out + 1] = o.metadata.name end
      table.sort(out)
      return out
    end
    assert.are.same({ "i1", "i4" }, names(inf:by_index("by_node", "node-1")))
    assert.are.same({ "i2", "i4", "i6" }, names(inf:list{ label_selector = "tier=db" }))
    assert.are.same({ "i1", "i3", "i5" }, names(inf:list{ label_selector = "tier in (web),!missing" }))
    assert.are.equal(6, #inf:by_index("namespace", ns))
    local cm = must(admin:get("configmaps", "i1", { namespace = ns }))
    cm.data.node = "node-2"
    must(admin:update("configmaps", cm))
    assert.is_true(spin(function() return #inf:by_index("by_node", "node-2") == 3 end))
    assert.are.same({ "i4" }, names(inf:by_index("by_node", "node-1")))
    must(admin:delete("configmaps", "i4", { namespace = ns }))
    assert.is_true(spin(function() return #inf:by_index("by_node", "node-1") == 0 end))
  end)

  it("hands a Lua error in a callback to on_error and goes on", function()
    local inf = must(c:informer("configmaps", { namespace = ns }))
    local good = 0
    inf:on("add", function(o) if o.metadata.name == "bad" then error("boom in handler") end end)
    inf:on("add", function() good = good + 1 end)
    must(inf:wait_for_sync(20))
    must(admin:create("configmaps", { metadata = { name = "bad", namespace = ns } }))
    must(admin:create("configmaps", { metadata = { name = "good", namespace = ns } }))
    assert.is_true(spin(function() return good == 2 end))
    assert.are.equal(1, #errors_seen)
    assert.matches("boom in handler", errors_seen[1].err)
    assert.matches("add handler of configmaps in " .. ns:gsub("%-", "%%-") .. " " .. ns:gsub("%-", "%%-") .. "/bad",
      errors_seen[1].where)
    assert.are.equal(2, inf:count())
  end)

  it("keeps the cache converging while a slow callback holds the Lua thread", function()
    local inf = must(c:informer("configmaps", { namespace = ns }))
    local calls = 0
    inf:on("add", function()
      calls = calls + 1
      os.execute("sleep 0.1")
    end)
    must(inf:wait_for_sync(20))
    for i = 1, 30 do must(admin:create("configmaps", { metadata = { name = "s" .. i, namespace = ns } })) end
    -- the store fills without any callback running
    local deadline = uptime() + 20
    while inf:count() < 30 and uptime() < deadline do os.execute("sleep 0.05") end
    assert.are.equal(30, inf:count())
    assert.are.equal(0, calls)
    assert.are.equal(30, inf:stats().queued)
    assert.is_true(spin(function() return calls == 30 end, 30))
  end)

  it("fires update(obj, obj) for every cached object on resync", function()
    for i = 1, 3 do must(admin:create("configmaps", { metadata = { name = "r" .. i, namespace = ns } })) end
    local inf = must(c:informer("configmaps", { namespace = ns, resync = 1 }))
    local same = {}
    inf:on("update", function(old, new)
      if old.metadata.resourceVersion == new.metadata.resourceVersion then same[new.metadata.name] = true end
    end)
    must(inf:wait_for_sync(20))
    assert.is_true(spin(function() return same.r1 and same.r2 and same.r3 end, 10))
  end)

  it("clears its cache, gives the memory back and relists when running", function()
    for i = 1, 20 do
      must(admin:create("configmaps", { metadata = { name = "c" .. i, namespace = ns }, data = { v = ("x"):rep(1000) } }))
    end
    local inf = must(c:informer("configmaps", { namespace = ns }))
    local adds = 0
    inf:on("add", function() adds = adds + 1 end)
    must(inf:wait_for_sync(20))
    assert.are.equal(20, adds)
    assert.is_true(inf:stats().bytes > 20000)
    inf:stop()
    inf:clear()
    local st = inf:stats()
    assert.are.same({ 0, 0 }, { st.objects, st.bytes })
    assert.is_nil(inf:get("c1", ns))
    inf:start()
    must(inf:wait_for_sync(20))
    assert.are.equal(20, inf:count())
    assert.are.equal(40, adds)
    inf:clear() -- while running: it lists again by itself
    assert.are.equal(0, inf:count())
    assert.is_true(spin(function() return inf:count() == 20 end))
    c:stop_all{ clear = true }
    local total = kinformer.stats()
    for _, s in ipairs(total.informers) do assert.is_not.equal("configmaps in " .. ns, s.what) end
  end)
end)

describe("a raw watch", function()
  local c, ns
  before_each(function()
    c = must(kinformer.client{ kubeconfig = cluster.kubeconfig })
    ns = make_ns("raw" .. math.random(1000, 9999))
  end)
  after_each(function()
    c:stop_all{ clear = true }
    admin:delete("namespaces", ns)
  end)

  it("calls back with ADDED, MODIFIED and DELETED, the current state first", function()
    must(admin:create("configmaps", { metadata = { name = "old", namespace = ns } }))
    local seen = {}
    local w = must(c:watch("configmaps", { namespace = ns }, function(t, o)
      seen[#seen + 1] = t .. " " .. o.metadata.name .. " " .. o.kind
    end))
    assert.is_true(spin(function() return #seen == 1 end))
    local cm = must(admin:create("configmaps", { metadata = { name = "new", namespace = ns } }))
    cm.data = { k = "v" }
    must(admin:update("configmaps", cm))
    must(admin:delete("configmaps", "new", { namespace = ns }))
    assert.is_true(spin(function() return #seen == 4 end))
    assert.are.same({ "ADDED old ConfigMap", "ADDED new ConfigMap", "MODIFIED new ConfigMap", "DELETED new ConfigMap" }, seen)
    w:stop()
    must(admin:create("configmaps", { metadata = { name = "after", namespace = ns } }))
    kinformer.step(500)
    assert.are.equal(4, #seen)
  end)

  it("says EXPIRED for a version the server no longer has and goes on from a fresh one", function()
    -- a version from before an API server restart: its new watch cache starts later
    local old = must(admin:create("configmaps", { metadata = { name = "old", namespace = ns } }))
    must(admin:create("configmaps", { metadata = { name = "newer", namespace = ns } }))
    assert(os.execute("spec/cluster/restart_apiserver.sh " .. cluster.dir), "the API server did not restart")
    local seen = {}
    must(c:watch("configmaps", { namespace = ns, resource_version = old.metadata.resourceVersion }, function(t, o)
      seen[#seen + 1] = t .. (o and (" " .. o.metadata.name) or "")
    end))
    assert.is_true(spin(function() return #seen >= 1 end))
    assert.are.equal("EXPIRED", seen[1])
    kinformer.step(300)
    must(admin:create("configmaps", { metadata = { name = "fresh", namespace = ns } }))
    assert.is_true(spin(function() return seen[#seen] == "ADDED fresh" end))
  end)
end)

describe("informers under churn", function()
  local c, namespaces = nil, {}
  setup(function()
    c = must(kinformer.client{ kubeconfig = cluster.kubeconfig })
    for i = 1, 5 do namespaces[i] = make_ns("churn" .. i) end
  end)
  teardown(function()
    c:stop_all{ clear = true }
    for _, ns in ipairs(namespaces) do admin:delete("namespaces", ns) end
  end)

  -- under KINFORMER_SPEC_SCALE=small: 200 changes to 30 keys, 3 informers, 30 resumed watches
  local small = cluster.scale == "small"
  local changes, keys_per_ns, n_informers, min_resumed = 2000, 60, 11, 200
  if small then changes, keys_per_ns, n_informers, min_resumed = 200, 6, 3, 30 end
  it(("converge to the server after %d random changes, also with watches resumed %d+ times")
      :format(changes, min_resumed), function()
    local label = "churn=" .. run_id
    -- one informer with the default watch timeout, and ten whose watches end every second
    local infs, logs = {}, {}
    for i = 0, n_informers - 1 do
      -- half of them get their initial state in pages, half as a streaming list
      local opts = { label_selector = label, page_size = 100 + i, streaming_list = i % 2 == 0 }
      if i > 0 then opts.watch_timeout = { 1, 1 } end
      local inf = must(c:informer("configmaps", opts))
      local log = {}
      logs[i + 1], infs[i + 1] = log, inf
      local function rec(kind, o) log[#log + 1] = { kind, o.metadata.namespace .. "/" .. o.metadata.name,
        o.metadata.resourceVersion, o.data and o.data.n } end
      inf:on("add", function(o) rec("add", o) end)
      inf:on("update", function(_, o) rec("update", o) end)
      inf:on("delete", function(o) rec("delete", o) end)
      must(inf:wait_for_sync(20))
    end
    -- the second client's changes, and what each must look like to an informer
    local expected, live, names = {}, {}, {}
    for i = 1, keys_per_ns do names[i] = "cm" .. i end
    local t0 = uptime()
    for step = 1, changes do
      local ns = namespaces[math.random(1, 5)]
      local key_name = names[math.random(1, #names)]
      local key = ns .. "/" .. key_name
      local exp = expected[key] or {}
      expected[key] = exp
      if not live[key] then
        local o = must(admin:create("configmaps", { metadata = { name = key_name, namespace = ns,
          labels = { churn = run_id } }, data = { n = tostring(step) } }))
        live[key] = o
        exp[#exp + 1] = { "add", o.metadata.resourceVersion }
      elseif math.random() < 0.7 then
        local o = live[key]
        o.data = { n = tostring(step) }
        o = must(admin:update("configmaps", o))
        live[key] = o
        exp[#exp + 1] = { "update", o.metadata.resourceVersion }
      else
        must(admin:delete("configmaps", key_name, { namespace = ns }))
        live[key] = nil
        exp[#exp + 1] = { "delete" }
      end
      if step % 50 == 0 then kinformer.step(0) end
    end
    -- keep the loop going until every informer holds what the server holds
    local fresh = must(admin:list("configmaps", { label_selector = label }))
    local want = {}
    for _, o in ipairs(fresh.items) do want[o.metadata.namespace .. "/" .. o.metadata.name] = o.metadata.resourceVersion end
    local function same(inf)
      local n = 0
      for _, o in ipairs(inf:list()) do
        n = n + 1
        if want[o.metadata.namespace .. "/" .. o.metadata.name] ~= o.metadata.resourceVersion then return false end
      end
      return n == #fresh.items
    end
    assert.is_true(spin(function()
      for _, inf in ipairs(infs) do if not same(inf) then return false end end
      return true
    end, 60), "the caches did not converge")
    -- while a few seconds pass, watches keep ending and resuming
    local elapsed = uptime() - t0
    if elapsed < 22 then spin(function() return false end, 22 - elapsed) end
    kinformer.step(200)
    -- every informer saw every change exactly once, in order
    for i, log in ipairs(logs) do
      local got = {}
      for _, e in ipairs(log) do
        got[e[2]] = got[e[2]] or {}
        local g = got[e[2]]
        g[#g + 1] = e[1] == "delete" and { "delete" } or { e[1], e[3] }
      end
      for key, exp in pairs(expected) do
        assert.are.same(exp, got[key] or {}, ("informer %d, %s"):format(i - 1, key))
      end
      -- and the last callback for each key is the server's final state
      for key, rv in pairs(want) do
        local last
        for _, e in ipairs(log) do if e[2] == key then last = e end end
        assert.are.same({ "update", rv }, { last[1] == "add" and "update" or last[1], last[3] })
      end
    end
    local resumed = 0
    for i = 2, #infs do resumed = resumed + infs[i]:stats().watches end
    assert.is_true(resumed >= min_resumed, "only " .. resumed .. " watches were started")
    for i, inf in ipairs(infs) do
      local st = inf:stats()
      assert.are.equal(0, st.relists)
      assert.are.equal((i - 1) % 2 == 0 and 1 or 0, st.streamed_lists)
    end
  end)
end)

describe("informers and the server's own failures", function()
  local c, ns
  before_each(function()
    c = must(kinformer.client{ kubeconfig = cluster.kubeconfig })
    ns = make_ns("fail" .. math.random(1000, 9999))
  end)
  after_each(function()
    c:stop_all{ clear = true }
    admin:delete("namespaces", ns)
  end)

  local function etcd_compact()
    local etcd = cluster.env.KINFORMER_ETCD
    local p = assert(io.popen(("curl -sf -X POST %s/v3/kv/range -d '{\"key\":\"AA==\"}'"):format(etcd)))
    local rev = assert(p:read("a"):match('"revision":"(%d+)"'), "cannot read etcd's revision")
    p:close()
    os.execute(("curl -s -X POST %s/v3/kv/compaction -d '{\"revision\": %s}' >/dev/null"):format(etcd, rev))
  end

  for _, streaming in ipairs{ true, false } do
  it(("relists after a real 410 and deletes what vanished with final_state_unknown (%s)")
      :format(streaming and "streaming list" or "paged list"), function()
    for i = 1, 5 do must(admin:create("configmaps", { metadata = { name = "a" .. i, namespace = ns } })) end
    local inf = must(c:informer("configmaps", { namespace = ns, streaming_list = streaming }))
    local log = {}
    inf:on("add", function(o) log[#log + 1] = "add " .. o.metadata.name end)
    inf:on("update", function(_, o) log[#log + 1] = "update " .. o.metadata.name end)
    inf:on("delete", function(o, unknown) log[#log + 1] = "delete " .. o.metadata.name .. " " .. tostring(unknown) end)
    must(inf:wait_for_sync(20))
    inf:stop()
    log = {}
    -- while it is stopped: two objects go, one comes, and the history goes too (etcd
    -- compacted, the API server's watch cache restarted), so the version it holds is gone
    must(admin:delete("configmaps", "a1", { namespace = ns }))
    must(admin:delete("configmaps", "a2", { namespace = ns }))
    must(admin:create("configmaps", { metadata = { name = "b1", namespace = ns } }))
    etcd_compact()
    assert(os.execute("spec/cluster/restart_apiserver.sh " .. cluster.dir), "the API server did not restart")
    inf:start()
    assert.is_true(spin(function() return #log == 3 end))
    table.sort(log)
    assert.are.same({ "add b1", "delete a1 true", "delete a2 true" }, log)
    assert.are.equal(1, inf:stats().relists)
    assert.are.equal(streaming and 2 or 0, inf:stats().streamed_lists)
    assert.are.same({ ns .. "/a3", ns .. "/a4", ns .. "/a5", ns .. "/b1" }, inf:keys())
  end)
  end

  it("recovers when the API server is killed and restarted mid-watch", function()
    local inf = must(c:informer("configmaps", { namespace = ns }))
    local adds = 0
    inf:on("add", function() adds = adds + 1 end)
    must(inf:wait_for_sync(20))
    must(admin:create("configmaps", { metadata = { name = "before", namespace = ns } }))
    assert.is_true(spin(function() return adds == 1 end))
    assert(os.execute("spec/cluster/restart_apiserver.sh " .. cluster.dir .. " 2"), "the API server did not restart")
    for i = 1, 5 do must(admin:create("configmaps", { metadata = { name = "after" .. i, namespace = ns } })) end
    assert.is_true(spin(function() return inf:count() == 6 and adds == 6 end, 60))
    assert.is_true(inf:stats().watches >= 2)
    assert.is_true(inf:stats().errors >= 1) -- the break went to on_error
  end)
end)

describe("informers on a custom resource", function()
  it("watch a CRD created at run time", function()
    local c = must(kinformer.client{ kubeconfig = cluster.kubeconfig })
    local crd = "gadgets.kinformer.test"
    admin:delete("customresourcedefinitions", crd)
    spin(function() return admin:get("customresourcedefinitions", crd) == nil end, 20)
    must(admin:create("customresourcedefinitions", { metadata = { name = crd }, spec = {
      group = "kinformer.test", scope = "Cluster", names = { plural = "gadgets", singular = "gadget", kind = "Gadget" },
      versions = { { name = "v1", served = true, storage = true, schema = { openAPIV3Schema = { type = "object",
        ["x-kubernetes-preserve-unknown-fields"] = true } } } } } }))
    local inf
    assert.is_true(spin(function()
      inf = c:informer("gadgets")
      return inf ~= nil
    end, 20))
    local seen = {}
    inf:on("add", function(o) seen[#seen + 1] = o end)
    must(inf:wait_for_sync(20))
    assert.is_true(spin(function() return admin:create("gadgets", { metadata = { name = "g1" }, size = 7 }) ~= nil end, 20))
    assert.is_true(spin(function() return #seen == 1 end))
    assert.are.same({ "kinformer.test/v1", "Gadget", "g1", 7 },
      { seen[1].apiVersion, seen[1].kind, seen[1].metadata.name, seen[1].size })
    assert.are.equal(7, inf:get("g1").size)
    c:stop_all{ clear = true }
    admin:delete("customresourcedefinitions", crd)
  end)
end)

describe("two clusters", function()
  local second = cluster.dir .. "-second"
  setup(function()
    assert(os.execute(("spec/cluster/up.sh %q >/dev/null"):format(second)), "the second control plane did not start")
  end)
  teardown(function() os.execute(("spec/cluster/down.sh %q >/dev/null 2>&1"):format(second)) end)

  it("run side by side, and switching by stop_all{ clear = true } keeps nothing stale", function()
    local a = must(kinformer.client{ kubeconfig = cluster.kubeconfig })
    local b = must(kinformer.client{ kubeconfig = second .. "/kubeconfig" })
    assert.are_not.equal(a:info().server, b:info().server)
    local tag = "two-" .. run_id
    must(a:create("configmaps", { metadata = { name = tag .. "-a", labels = { two = run_id } } }))
    must(b:create("configmaps", { metadata = { name = tag .. "-b", labels = { two = run_id } } }))
    local ia = must(a:informer("configmaps", { label_selector = "two=" .. run_id }))
    local ib = must(b:informer("configmaps", { label_selector = "two=" .. run_id }))
    must(ia:wait_for_sync(20))
    must(ib:wait_for_sync(20))
    assert.are.same({ "default/" .. tag .. "-a" }, ia:keys())
    assert.are.same({ "default/" .. tag .. "-b" }, ib:keys())
    -- switch A's program over to B
    a:stop_all{ clear = true }
    for _, s in ipairs(kinformer.stats().informers) do
      assert.are_not.equal(ia._id, s.id, "a cleared informer still counts")
    end
    a:close()
    local again = must(kinformer.client{ kubeconfig = second .. "/kubeconfig" })
    local ia2 = must(again:informer("configmaps", { label_selector = "two=" .. run_id }))
    must(ia2:wait_for_sync(20))
    assert.are.same({ "default/" .. tag .. "-b" }, ia2:keys())
    again:stop_all{ clear = true }
    b:stop_all{ clear = true }
    admin:delete("configmaps", tag .. "-a")
  end)
end)

describe("the loop", function()
  local c, ns
  before_each(function()
    c = must(kinformer.client{ kubeconfig = cluster.kubeconfig })
    ns = make_ns("loop" .. math.random(1000, 9999))
  end)
  after_each(function()
    c:stop_all{ clear = true }
    admin:delete("namespaces", ns)
  end)

  it("does not start an informer the user stopped", function()
    local inf = must(c:informer("configmaps", { namespace = ns }))
    must(inf:wait_for_sync(20))
    inf:stop()
    kinformer.run{ timeout = 0.5 }
    assert.are.equal(1, inf:stats().lists)
    must(admin:create("configmaps", { metadata = { name = "late", namespace = ns } }))
    kinformer.run{ timeout = 0.5 }
    assert.are.equal(0, inf:count())
  end)

  it("ends the batch when a callback calls kinformer.stop()", function()
    for i = 1, 5 do must(admin:create("configmaps", { metadata = { name = "b" .. i, namespace = ns } })) end
    local inf = must(c:informer("configmaps", { namespace = ns }))
    local calls = 0
    inf:on("add", function() calls = calls + 1 kinformer.stop() end)
    assert.is_true(kinformer.run{ timeout = 20 })
    assert.are.equal(1, calls)
    assert.is_true(kinformer.run{ timeout = 20 })
    assert.are.equal(2, calls)
  end)

  -- over HTTP/1.1 each watch has its own connection, and its silence alone judges it
  it("over HTTP/1.1, resumes a watch that sends nothing for the stall limit, quietly and without losing events",
    function()
    local h1 = must(kinformer.client{ kubeconfig = cluster.kubeconfig, http1 = true })
    local inf = must(h1:informer("configmaps", { namespace = ns, stall_limit = 2 }))
    local adds = 0
    inf:on("add", function() adds = adds + 1 end)
    errors_seen = {}
    must(inf:wait_for_sync(20))
    assert.is_true(spin(function() return inf:stats().stalls >= 2 end, 15))
    assert.are.equal(0, #errors_seen)
    assert.are.equal(0, inf:stats().relists)
    must(admin:create("configmaps", { metadata = { name = "after-stall", namespace = ns } }))
    assert.is_true(spin(function() return adds == 1 end))
    h1:stop_all{ clear = true }
  end)

  -- over HTTP/2 the connection is judged as a whole, by probes when it is
  -- silent: a quiet watch on a live connection is never ended
  it("over HTTP/2, leaves a quiet watch alone, while its connection is busy and after", function()
    local c2 = must(kinformer.client{ kubeconfig = cluster.kubeconfig, ping_interval = 1 })
    local quiet = must(c2:informer("configmaps", { namespace = ns, stall_limit = 2 }))
    local busy = must(c2:informer("secrets", { namespace = ns, stall_limit = 2 }))
    must(quiet:wait_for_sync(20))
    must(busy:wait_for_sync(20))
    local secret = must(admin:create("secrets", { metadata = { name = "ticker", namespace = ns }, data = {} }))
    local t_end = uptime() + 5
    local n = 0
    while uptime() < t_end do
      n = n + 1
      secret.data = { n = cluster.b64(tostring(n)) }
      secret = must(admin:update("secrets", secret))
      kinformer.run{ timeout = 0.5 }
    end
    -- and once the connection goes quiet too
    kinformer.run{ timeout = 6 }
    assert.are.equal(0, busy:stats().stalls)
    assert.are.equal(0, quiet:stats().stalls)
    assert.are.equal(1, c2:transport_stats().connections)
    -- probed, and answered (how many probes 6 quiet seconds hold varies: 1 to 5 seen)
    assert.is_true(c2:transport_stats().pings >= 1)
    assert.are.equal(0, #errors_seen)
    c2:stop_all{ clear = true }
  end)

  it("keeps a store without handlers and queues nothing for it", function()
    for i = 1, 5 do must(admin:create("configmaps", { metadata = { name = "q" .. i, namespace = ns } })) end
    local inf = must(c:informer("configmaps", { namespace = ns }))
    must(inf:wait_for_sync(20))
    must(admin:create("configmaps", { metadata = { name = "q6", namespace = ns } }))
    assert.is_true(spin(function() return inf:count() == 6 end))
    assert.are.equal(0, inf:stats().queued)
    local adds = {}
    inf:on("add", function(o) adds[#adds + 1] = o.metadata.name end)
    assert.is_true(spin(function() return #adds == 6 end))
  end)
end)
