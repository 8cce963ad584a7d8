-- Real process faults and odd input (issue 6, section 2): informers through a
-- killed API server and a killed etcd under a churn of writes; objects at the
-- server's limits; Lua callbacks that fail, yield, stop or clear; informers and
-- clients dropped or closed while they run. Each "it" says the behaviour it pins.
local kinformer = require "kinformer"
local cluster = require "support.cluster"
local cjson = require "cjson"

local helpers = require "support.helpers"
local must, uptime, spin = helpers.must, helpers.uptime, helpers.spin

local run_id = tostring(os.time() % 100000) .. tostring(math.random(100, 999))
local function name(s) return ("rob-%s-%s"):format(s, run_id) end

-- Measured times, printed when KINFORMER_SPEC_TIMES is set (for the issue's notes).
local function note(fmt, ...)
  if os.getenv("KINFORMER_SPEC_TIMES") then io.stderr:write(("robustness: " .. fmt .. "\n"):format(...)) end
end

local errors_seen = {}
local function record_error(err, where) errors_seen[#errors_seen + 1] = { err = err, text = tostring(err), where = where } end
kinformer.on_error(record_error)

local admin
setup(function() admin = must(kinformer.client{ kubeconfig = cluster.kubeconfig, qps = 1000, burst = 1000 }) end)
teardown(function() cluster.cleanup() end)

-- a counter in every name: random suffixes alone can repeat within a run
local ns_count = 0
local function make_ns(s)
  ns_count = ns_count + 1
  local ns = name(s .. "-" .. ns_count)
  must(admin:create("namespaces", { metadata = { name = ns } }))
  return ns
end

-- A value as one canonical string: keys sorted, arrays and objects alike, integers
-- and floats alike (lua-cjson reads every number as a float), null as null.
local function canon(v, out)
  out = out or {}
  local t = type(v)
  if t == "table" then
    local n, keys = #v, {}
    for k in pairs(v) do keys[#keys + 1] = k end
    if n > 0 and #keys == n then
      out[#out + 1] = "["
      for i = 1, n do canon(v[i], out) out[#out + 1] = "," end
      out[#out + 1] = "]"
    else
      table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
      out[#out + 1] = "{"
      for _, k in ipairs(keys) do
        out[#out + 1] = ("%q:"):format(tostring(k))
        canon(v[k], out)
        out[#out + 1] = ","
      end
      out[#out + 1] = "}"
    end
  elseif t == "number" then
    local i = math.tointeger(v)
    out[#out + 1] = i and tostring(i) or ("%.17g"):format(v)
  elseif v == kinformer.null then
    out[#out + 1] = "null"
  elseif t == "string" then
    out[#out + 1] = ("%q"):format(v)
  else
    out[#out + 1] = tostring(v)
  end
  return out
end
local function canonical(v) return table.concat(canon(v)) end

-- What an informer caches: the object without metadata.managedFields.
local function without_managed(o)
  if o and o.metadata then o.metadata.managedFields = nil end
  return o
end

-- kubectl's view of an object (its own JSON decoder, then lua-cjson's).
local function kubectl_json(args)
  cjson.decode_max_depth(20000)
  return without_managed(cjson.decode(cluster.kubectl("get -o json " .. args)))
end

-- ---------------------------------------------------------------------------

describe("informers through real process faults", function()
  local c, writer, namespaces = nil, nil, {}
  local label = "robust=" .. run_id
  setup(function()
    c = must(kinformer.client{ kubeconfig = cluster.kubeconfig })
    -- the writer gives up on a request after 5 s and tries again itself
    writer = must(kinformer.client{ kubeconfig = cluster.kubeconfig, timeout = 5, qps = 1000, burst = 1000 })
    for i = 1, 3 do namespaces[i] = make_ns("fault" .. i) end
  end)
  teardown(function()
    for _, ns in ipairs(namespaces) do admin:delete("namespaces", ns) end
  end)
  after_each(function() c:stop_all{ clear = true } end)

  -- Several informers of different shapes, each logging the last callback per key.
  local function start_informers()
    local set = {}
    local shapes = {
      { label_selector = label },                                          -- streaming list, all namespaces
      { label_selector = label, streaming_list = false, page_size = 7 },  -- paged lists
      { label_selector = label, watch_timeout = { 2, 3 } },               -- watches that end every few seconds
      { label_selector = label, metadata_only = true },
      { namespace = namespaces[1], label_selector = label },              -- one namespace
    }
    for i, opts in ipairs(shapes) do
      local inf = must(c:informer("configmaps", opts))
      local last = {}
      inf:on("add", function(o) last[o.metadata.namespace .. "/" .. o.metadata.name] = { "add", o.metadata.resourceVersion } end)
      inf:on("update", function(_, o)
        last[o.metadata.namespace .. "/" .. o.metadata.name] = { "update", o.metadata.resourceVersion }
      end)
      inf:on("delete", function(o) last[o.metadata.namespace .. "/" .. o.metadata.name] = { "delete" } end)
      set[i] = { inf = inf, last = last, ns = opts.namespace }
    end
    for _, s in ipairs(set) do must(s.inf:wait_for_sync(30)) end
    return set
  end

  -- One random change, as a program that must not die with the server does it:
  -- on any failure it reads the object again and retries, driving the loop meanwhile.
  local step_no, write_failures = 0, 0
  local slowest = 0 -- the longest a write took: an outage shows as failures, or as writes held until it ends
  local function churn_once()
    local t0 = uptime()
    step_no = step_no + 1
    local ns = namespaces[math.random(1, #namespaces)]
    local nm = "cm" .. math.random(1, 25)
    local deadline = uptime() + 120
    while true do
      local cur, err = writer:get("configmaps", nm, { namespace = ns })
      local ok
      if cur or err.code == 404 then
        if not cur then
          ok, err = writer:create("configmaps", { metadata = { name = nm, namespace = ns, labels = { robust = run_id } },
            data = { n = tostring(step_no) } })
        elseif math.random() < 0.7 then
          cur.data = { n = tostring(step_no) }
          ok, err = writer:update("configmaps", cur)
        else
          ok, err = writer:delete("configmaps", nm, { namespace = ns })
        end
      end
      if ok then
        slowest = math.max(slowest, uptime() - t0)
        return
      end
      write_failures = write_failures + 1
      assert(uptime() < deadline, "the writer could not write for 120 s: " .. tostring(err))
      kinformer.step(100)
    end
  end

  -- Starts a restart script in the background; returns a function that says,
  -- once it ended, its exit status and the uptime at which the server was back.
  local function background(script, down)
    local dir = cluster.tmpdir()
    os.execute(("(%s %q %d >%q 2>&1; echo $? $(cut -d' ' -f1 /proc/uptime) >%q.tmp; mv %q.tmp %q) &")
      :format(script, cluster.dir, down, dir .. "/log", dir .. "/done", dir .. "/done", dir .. "/done"))
    return function()
      local f = io.open(dir .. "/done")
      if not f then return nil end
      local rc, t = f:read("a"):match("^(%d+) (%S+)")
      f:close()
      local lf = io.open(dir .. "/log")
      local log = lf and lf:read("a") or ""
      if lf then lf:close() end
      return tonumber(rc), tonumber(t), log
    end
  end

  -- The store of every informer equals a fresh list, and the last callback of
  -- every key is the server's final state (a delete for what is gone).
  local function converged(set, want)
    for _, s in ipairs(set) do
      local n = 0
      for _, o in ipairs(s.inf:list()) do
        local key = o.metadata.namespace .. "/" .. o.metadata.name
        n = n + 1
        if want[key] ~= o.metadata.resourceVersion then return false, "store differs at " .. key end
      end
      local expected = 0
      for key, rv in pairs(want) do
        if not s.ns or key:sub(1, #s.ns + 1) == s.ns .. "/" then
          expected = expected + 1
          local l = s.last[key]
          if not l or l[1] == "delete" or l[2] ~= rv then return false, "last callback differs at " .. key end
        end
      end
      if n ~= expected then return false, "store holds " .. n .. " objects, the server " .. expected end
      for key, l in pairs(s.last) do
        if want[key] == nil and l[1] ~= "delete" then return false, "no delete callback for " .. key end
      end
    end
    return true
  end

  local function fresh_list()
    local list
    assert.is_true(spin(function()
      list = writer:list("configmaps", { label_selector = label })
      return list ~= nil
    end, 60), "cannot list after the restart")
    local want = {}
    for _, o in ipairs(list.items) do want[o.metadata.namespace .. "/" .. o.metadata.name] = o.metadata.resourceVersion end
    return want
  end

  local bound = 60 -- seconds from "the server is back" to converged informers

  for _, fault in ipairs{
    { what = "kube-apiserver", script = "spec/cluster/restart_apiserver.sh", down = 5 },
    { what = "etcd", script = "spec/cluster/restart_etcd.sh", down = 5 },
  } do
    it(("converge within %d s after %s is killed and restarted during a churn of writes"):format(bound, fault.what), function()
      errors_seen = {}
      local set = start_informers()
      for _ = 1, 100 do churn_once() kinformer.step(0) end
      local t_kill, failures_before = uptime(), write_failures
      slowest = 0
      local done = background(fault.script, fault.down)
      local rc, t_back, log
      -- write on through the outage (the writer retries) and for a while after it
      local after = 0
      while after < 100 do
        churn_once()
        kinformer.step(0)
        if not rc then rc, t_back, log = done() end
        if rc then after = after + 1 end
        assert(uptime() - t_kill < 150, fault.what .. " did not come back within 150 s")
      end
      assert.are.equal(0, rc, fault.script .. " failed: " .. tostring(log))
      -- the API server holds writes while etcd is away: most wait and succeed, some time out (5 s)
      assert.is_true(write_failures > failures_before or slowest >= 2,
        ("the writer never saw the outage (no failure, slowest write %.1f s)"):format(slowest))
      local want = fresh_list()
      local why
      local ok = spin(function()
        local same
        same, why = converged(set, want)
        return same
      end, math.max(1, t_back + bound - uptime()))
      assert.is_true(ok, ("not converged %d s after %s was back: %s"):format(bound, fault.what, tostring(why)))
      note("%s: down for %.1f s, converged %.1f s after it was back (%d writes, %d failed, %d errors reported)",
        fault.what, t_back - t_kill, uptime() - t_back, step_no, write_failures - failures_before, #errors_seen)
      -- and it stays so: the informers go on watching after the outage
      churn_once()
      want = fresh_list()
      assert.is_true(spin(function() return (converged(set, want)) end, 20), "the informers stopped watching")
      if fault.what == "kube-apiserver" then
        for _, s in ipairs(set) do assert.is_true(s.inf:stats().reconnects >= 1) end
      end
    end)
  end
end)

-- ---------------------------------------------------------------------------

describe("objects at the API server's limits", function()
  local c, ns
  local crd = "robusts.kinformer.test"
  setup(function()
    c = must(kinformer.client{ kubeconfig = cluster.kubeconfig })
    ns = make_ns("odd")
    admin:delete("customresourcedefinitions", crd)
    spin(function() return admin:get("customresourcedefinitions", crd) == nil end, 30)
    must(admin:create("customresourcedefinitions", { metadata = { name = crd }, spec = {
      group = "kinformer.test", scope = "Namespaced",
      names = { plural = "robusts", singular = "robust", kind = "Robust" },
      versions = { { name = "v1", served = true, storage = true, schema = { openAPIV3Schema = { type = "object",
        ["x-kubernetes-preserve-unknown-fields"] = true } } } } } }))
    -- served once discovery and the storage are ready
    assert(spin(function()
      local r = c:list("robusts", { namespace = ns })
      if not r then c:refresh() end
      return r ~= nil
    end, 30), "the CRD is not served")
  end)
  teardown(function()
    c:stop_all{ clear = true }
    admin:delete("namespaces", ns)
    admin:delete("customresourcedefinitions", crd)
  end)
  before_each(function() errors_seen = {} end)
  after_each(function() c:stop_all{ clear = true } end)

  -- The informer's copy, the REST client's and kubectl's are the same value.
  local function same_three_ways(inf, resource, nm)
    local cached = inf:get(nm, ns)
    assert.is_table(cached, nm .. " is not cached")
    local got = without_managed(must(c:get(resource, nm, { namespace = ns })))
    local kc = kubectl_json(("%s %s -n %s"):format(resource, nm, ns))
    local a, b, k = canonical(cached), canonical(got), canonical(kc)
    assert.is_true(a == b, nm .. ": the informer's copy differs from client:get's")
    assert.is_true(a == k, nm .. ": the informer's copy differs from kubectl's")
    return cached
  end

  -- An informer on resource in ns, only objects labelled test=tag (so that each
  -- test sees only its own objects), synced.
  local function informer_for(resource, tag)
    local inf = must(c:informer(resource, { namespace = ns, label_selector = "test=" .. tag }))
    local updates = {}
    inf:on("update", function(_, o) updates[#updates + 1] = o end)
    must(inf:wait_for_sync(30))
    return inf, updates
  end

  it("caches a ConfigMap of 1,000,000 bytes of data, and its update, byte for byte", function()
    local inf, updates = informer_for("configmaps", "big")
    local chunk = {}
    for i = 0, 255 do chunk[#chunk + 1] = string.char(i < 32 and 65 + i % 26 or i < 128 and i or 97 + i % 26) end
    local pattern = table.concat(chunk)
    local big = pattern:rep(1000000 // #pattern + 1):sub(1, 1000000)
    must(admin:create("configmaps", { metadata = { name = "big", namespace = ns, labels = { test = "big" } },
      data = { big = big } }))
    assert.is_true(spin(function() return inf:get("big", ns) ~= nil end, 20))
    local o = same_three_ways(inf, "configmaps", "big")
    assert.are.equal(1000000, #o.data.big)
    assert.is_true(o.data.big == big)
    -- an update of the same size: one watch event of about a megabyte
    local nearly = pattern:rep(1048576 // #pattern + 1):sub(1, 1048576 - 16)
    must(admin:patch("configmaps", "big", { data = { big = nearly } }, { namespace = ns }))
    assert.is_true(spin(function() return #updates == 1 end, 20))
    assert.is_true(updates[1].data.big == nearly)
    same_three_ways(inf, "configmaps", "big")
    -- one byte over 1 MiB of data is refused by the server, with a readable error
    local _, err = admin:patch("configmaps", "big", { data = { big = nearly .. ("x"):rep(17) } }, { namespace = ns })
    assert.are.equal(422, err and err.code)
    assert.matches("1048576 bytes", err.message)
    assert.are.same({}, errors_seen)
  end)

  it("caches an object with 10,000 labels (the server sets no limit on their number) and selects by them", function()
    local inf = informer_for("configmaps", "labels")
    local labels = { test = "labels" }
    for i = 1, 10000 do labels[("example.com/key-%05d"):format(i)] = ("value-%05d"):format(i) end
    must(admin:create("configmaps", { metadata = { name = "labels", namespace = ns, labels = labels } }))
    assert.is_true(spin(function() return inf:get("labels", ns) ~= nil end, 20))
    local o = same_three_ways(inf, "configmaps", "labels")
    local n = 0
    for k, v in pairs(o.metadata.labels) do
      n = n + 1
      assert.are.equal(labels[k], v)
    end
    assert.are.equal(10001, n)
    assert.are.equal(1, #inf:list{ label_selector = "example.com/key-09999=value-09999,test=labels" })
    assert.are.equal(0, #inf:list{ label_selector = "example.com/key-09999=value-00001" })
    -- and an informer whose server-side selector names one of them
    local sel = must(c:informer("configmaps", { namespace = ns, label_selector = "example.com/key-05000=value-05000" }))
    must(sel:wait_for_sync(20))
    assert.are.same({ ns .. "/labels" }, sel:keys())
  end)

  -- Every byte JSON must escape, and text that is not ASCII.
  local weird = "emoji 😀🧪👩‍👩‍👧 quotes \" ' ` backslashes \\ \\\\ \\n \\u0041 controls \1\2\8\11\12\27\31\127 tab\t "
    .. "lf\n cr\r nul\0 html <>& separators \u{2028}\u{2029} bom \u{FEFF} ☃ 中文 Ελληνικά עברית ﷽ last"

  it("caches values and field names with emoji, quotes, backslashes and control characters, unchanged", function()
    local inf = informer_for("configmaps", "unicode")
    must(admin:create("configmaps", { metadata = { name = "unicode", namespace = ns, labels = { test = "unicode" },
      annotations = { ["example.com/weird"] = weird } }, data = { ["weird.key_-"] = weird, plain = "x" } }))
    assert.is_true(spin(function() return inf:get("unicode", ns) ~= nil end, 20))
    local o = same_three_ways(inf, "configmaps", "unicode")
    assert.is_true(o.data["weird.key_-"] == weird, "the data value changed on its way")
    assert.is_true(o.metadata.annotations["example.com/weird"] == weird)
    -- field names are free in a custom resource that keeps unknown fields
    local crs = informer_for("robusts", "unicode")
    local spec = { [weird] = weird, ["😀"] = { ["\"quoted\""] = "\\", ["back\\slash"] = "\0", ["nul\0key"] = "\1" },
      ["ключ"] = kinformer.array{ "значение", "\u{10FFFF}", "" } }
    must(admin:create("robusts", { metadata = { name = "unicode", namespace = ns, labels = { test = "unicode" } },
      spec = spec }))
    assert.is_true(spin(function() return crs:get("unicode", ns) ~= nil end, 20))
    local cr = same_three_ways(crs, "robusts", "unicode")
    assert.are.equal(canonical(spec), canonical(cr.spec))
    -- bytes that are not UTF-8 come back as the server stores them: U+FFFD
    must(admin:patch("configmaps", "unicode", { data = { plain = "bad \xff\xfe utf-8" } }, { namespace = ns }))
    assert.is_true(spin(function() return inf:get("unicode", ns).data.plain ~= "x" end, 20))
    assert.are.equal("bad \u{FFFD}\u{FFFD} utf-8", same_three_ways(inf, "configmaps", "unicode").data.plain)
    assert.are.same({}, errors_seen)
  end)

  it("gets the server's refusal of non-ASCII label values and data keys as a readable Invalid error", function()
    local _, err = admin:create("configmaps", { metadata = { name = "bad-label", namespace = ns,
      labels = { test = "ünïcode" } } })
    assert.are.equal("Invalid", err.reason)
    assert.is_truthy(err.message:find("ünïcode", 1, true), err.message)
    _, err = admin:create("configmaps", { metadata = { name = "bad-key", namespace = ns }, data = { ["ключ"] = "v" } })
    assert.are.equal("Invalid", err.reason)
    assert.is_truthy(err.message:find("ключ", 1, true), err.message)
  end)

  -- An object nested depth levels: { x = { x = ... "bottom" } }, or arrays [[[ "bottom" ]]].
  local function nested_json(depth, arrays)
    if arrays then return ("["):rep(depth) .. '"bottom"' .. ("]"):rep(depth) end
    return ('{"x":'):rep(depth) .. '"bottom"' .. ("}"):rep(depth)
  end
  local function create_deep(nm, tag, depth, arrays)
    -- as raw JSON: kinformer's own encoder stops at 1,000 levels
    local body = ('{"apiVersion":"kinformer.test/v1","kind":"Robust","metadata":{"name":"%s","namespace":"%s",'
      .. '"labels":{"test":"%s"}},"spec":%s}'):format(nm, ns, tag, nested_json(depth, arrays))
    local res, err = admin:request("POST", ("/apis/kinformer.test/v1/namespaces/%s/robusts"):format(ns), body,
      { content_type = "application/json" })
    -- a reply too deep for the Lua decoder still says 201: the object exists
    assert(res ~= nil or err.code == 201, tostring(err))
  end
  local function depth_of(v)
    local d = 0
    while type(v) == "table" do
      v = v.x or v[1]
      d = d + 1
    end
    return d, v
  end

  it("caches objects nested 100 levels deep (objects and arrays)", function()
    local inf = informer_for("robusts", "deep100")
    create_deep("objects100", "deep100", 100)
    create_deep("arrays100", "deep100", 100, true)
    assert.is_true(spin(function() return inf:count() == 2 end, 20))
    for _, nm in ipairs{ "objects100", "arrays100" } do
      local o = same_three_ways(inf, "robusts", nm)
      assert.are.same({ 100, "bottom" }, { depth_of(o.spec) })
    end
    assert.are.same({}, errors_seen)
  end)

  -- The API server accepts JSON up to 10,000 levels (k8s.io/apimachinery's limit):
  -- a spec nested 9,994 levels is the deepest it stores. Whatever depth it
  -- stores, an informer must cache, or one user's object stops everyone's informers.
  for _, depth in ipairs{ 600, 9994 } do
    it(("caches an object nested %d levels deep, which the API server accepts, and syncs"):format(depth), function()
      local tag = "deep" .. depth
      create_deep("shallow" .. depth, tag, 3)
      create_deep("deep" .. depth, tag, depth)
      local inf = must(c:informer("robusts", { namespace = ns, label_selector = "test=" .. tag }))
      local ok, err = inf:wait_for_sync(10)
      assert.is_true(ok, tostring(err))
      assert.are.same({ ns .. "/deep" .. depth, ns .. "/shallow" .. depth }, inf:keys())
      local o = inf:get("deep" .. depth, ns)
      assert.are.same({ depth, "bottom" }, { depth_of(o and o.spec) })
      local kc = kubectl_json(("robusts deep%d -n %s"):format(depth, ns))
      assert.are.same({ depth, "bottom" }, { depth_of(kc.spec) })
    end)
  end
end)

-- ---------------------------------------------------------------------------

describe("callbacks that misbehave", function()
  local c, ns
  before_each(function()
    c = must(kinformer.client{ kubeconfig = cluster.kubeconfig })
    ns = make_ns("cb" .. math.random(1000, 9999))
    errors_seen = {}
    kinformer.on_error(record_error)
  end)
  after_each(function()
    kinformer.on_error(record_error)
    c:stop_all{ clear = true }
    admin:delete("namespaces", ns)
  end)

  local function cm(nm, data)
    return must(admin:create("configmaps", { metadata = { name = nm, namespace = ns }, data = data }))
  end

  local function errors_matching(pattern)
    local out = {}
    for _, e in ipairs(errors_seen) do
      if e.text:find(pattern) or tostring(e.where):find(pattern) then out[#out + 1] = e end
    end
    return out
  end

  it("hands a Lua error in add, update, delete, an index function and a raw watch callback to on_error, "
    .. "and delivers every later event", function()
    local inf = must(c:informer("configmaps", { namespace = ns }))
    local seen = {}
    local function log(s) seen[#seen + 1] = s end
    inf:on("add", function(o) if o.metadata.name == "x" then error("boom in add") end end)
    inf:on("update", function() error("boom in update") end)
    inf:on("delete", function() error({ code = "a table as the error" }) end)
    inf:on("add", function(o) log("add " .. o.metadata.name) end)
    inf:on("update", function(_, o) log("update " .. o.metadata.name) end)
    inf:on("delete", function(o) log("delete " .. o.metadata.name) end)
    inf:add_index("broken", function(o)
      if o.data and o.data.v == "1" then error("boom in index") end
      return o.data and o.data.v
    end)
    local raw = {}
    must(c:watch("configmaps", { namespace = ns }, function(t, o)
      if t == "ADDED" and o.metadata.name ~= "probe" then error("boom in raw watch") end
      raw[#raw + 1] = t .. " " .. o.metadata.name
    end))
    must(inf:wait_for_sync(20))
    -- the raw watch is established once it sees this
    cm("probe")
    assert.is_true(spin(function() return #raw == 1 end))
    raw = {}
    local x = cm("x", { v = "1" })
    x.data.v = "2"
    must(admin:update("configmaps", x))
    must(admin:delete("configmaps", "x", { namespace = ns }))
    cm("y", { v = "3" })
    -- two streams: the raw watch's ADDED y may come after the informer's add y
    assert.is_true(spin(function()
      return #seen == 5 and #raw == 2 and #errors_matching("boom in raw watch") == 2
    end))
    assert.are.same({ "add probe", "add x", "update x", "delete x", "add y" }, seen)
    assert.are.same({ "MODIFIED x", "DELETED x" }, raw)
    assert.are.equal(1, #errors_matching("boom in add"))
    assert.are.equal(1, #errors_matching("boom in update"))
    assert.are.equal(1, #errors_matching("boom in index"))
    assert.are.equal(2, #errors_matching("boom in raw watch"))
    local del = errors_matching("^delete handler of")
    assert.are.equal(1, #del)
    assert.are.equal("a table as the error", del[1].err.code) -- the error value itself, not a string of it
    assert.matches("add handler of configmaps in " .. ns:gsub("%p", "%%%0") .. " " .. ns:gsub("%p", "%%%0") .. "/x",
      errors_matching("boom in add")[1].where)
    assert.matches("index \"broken\" of configmaps", errors_matching("boom in index")[1].where)
    assert.matches("watch callback of configmaps", errors_matching("boom in raw watch")[1].where)
    -- the index went on with the objects its function could index
    assert.are.same({ ns .. "/y" }, (function()
      local out = {}
      for _, o in ipairs(inf:by_index("broken", "3")) do out[#out + 1] = o.metadata.namespace .. "/" .. o.metadata.name end
      return out
    end)())
    assert.are.equal(2, inf:count())
  end)

  it("writes an error of the on_error handler itself to stderr, naming where, and goes on", function()
    local out = cluster.run_lua({ LUA_PATH = package.path, LUA_CPATH = package.cpath, NS = ns,
      KUBECONFIG = cluster.kubeconfig }, [[
local kinformer = require "kinformer"
local c = assert(kinformer.client())
local inf = assert(c:informer("configmaps", { namespace = os.getenv("NS") }))
local adds = 0
inf:on("add", function(o) adds = adds + 1 error("handler failed on " .. o.metadata.name) end)
kinformer.on_error(function(err) error("on_error failed too") end)
assert(c:create("configmaps", { metadata = { name = "a", namespace = os.getenv("NS") } }))
assert(c:create("configmaps", { metadata = { name = "b", namespace = os.getenv("NS") } }))
kinformer.run{ timeout = 3 }
print("ADDS " .. adds)
c:close()
]])
    assert.matches("ADDS 2", out)
    assert.matches("add handler of configmaps in [^\n]*: on_error handler failed: [^\n]*on_error failed too", out)
    local _, n = out:gsub("on_error handler failed", "")
    assert.are.equal(2, n)
  end)

  it("keeps kinformer.run going when the on_error handler raises an error whose tostring fails", function()
    kinformer.on_error(function()
      error(setmetatable({}, { __tostring = function() error("tostring fails too") end }))
    end)
    local inf = must(c:informer("configmaps", { namespace = ns }))
    local adds = {}
    inf:on("add", function(o)
      adds[#adds + 1] = o.metadata.name
      if o.metadata.name == "bad" then error("first failure") end
    end)
    cm("bad")
    cm("good")
    local ok, err = pcall(kinformer.run, { timeout = 3 })
    assert.is_true(ok, "kinformer.run raised: " .. tostring(select(2, pcall(tostring, err))))
    table.sort(adds)
    assert.are.same({ "bad", "good" }, adds)
  end)

  it("reports a callback that yields outside a coroutine (\"attempt to yield from outside a coroutine\") and goes on",
    function()
    assert(not coroutine.isyieldable(), "this test needs to run on the main thread")
    local inf = must(c:informer("configmaps", { namespace = ns }))
    local before, after = 0, 0
    inf:on("add", function()
      before = before + 1
      coroutine.yield("nowhere to go")
      after = after + 1
    end)
    cm("a")
    cm("b")
    must(inf:wait_for_sync(20))
    assert.is_true(spin(function() return before == 2 end))
    assert.are.equal(0, after)
    local yields = errors_matching("attempt to yield from outside a coroutine")
    assert.are.equal(2, #yields)
    assert.matches("add handler of", yields[1].where)
  end)

  it("suspends kinformer.run when a callback yields inside a coroutine; resuming goes on where it was, nothing lost",
    function()
    for i = 1, 3 do cm("y" .. i) end
    local inf = must(c:informer("configmaps", { namespace = ns }))
    local got = {}
    inf:on("add", function(o)
      local answer = coroutine.yield("yielded", o.metadata.name)
      got[#got + 1] = o.metadata.name .. "=" .. tostring(answer)
      if #got == 4 then kinformer.stop() end
    end)
    local co = coroutine.create(function() return kinformer.run{ timeout = 30 } end)
    local names = {}
    for i = 1, 4 do
      local ok, what, nm = coroutine.resume(co, "answer" .. i)
      assert.is_true(ok, tostring(what))
      assert.are.equal("suspended", coroutine.status(co))
      assert.are.equal("yielded", what)
      names[i] = nm
      if i == 1 then
        -- while the run is suspended, the cache goes on following the server
        cm("y4")
        local deadline = uptime() + 20
        while inf:count() < 4 and uptime() < deadline do os.execute("sleep 0.05") end
        assert.are.equal(4, inf:count())
      end
    end
    table.sort(names)
    assert.are.same({ "y1", "y2", "y3", "y4" }, names)
    -- the last resume lets the fourth callback end; it stops the run
    local ok, ret = coroutine.resume(co, "answer5")
    assert.is_true(ok, tostring(ret))
    assert.are.equal("dead", coroutine.status(co))
    assert.is_true(ret)
    assert.are.equal(4, #got)
    for i, s in ipairs(got) do assert.matches("=answer" .. (i + 1) .. "$", s) end
    assert.are.same({}, errors_seen)
  end)

  it("ends kinformer.run after the callback that calls kinformer.stop() (in update, delete, a raw watch "
    .. "and on_error); the next run delivers the rest", function()
    local inf = must(c:informer("configmaps", { namespace = ns }))
    local log = {}
    inf:on("update", function(_, o) log[#log + 1] = "update " .. o.metadata.name kinformer.stop() end)
    inf:on("delete", function(o) log[#log + 1] = "delete " .. o.metadata.name kinformer.stop() end)
    must(inf:wait_for_sync(20))
    local a = cm("a", { v = "1" })
    local b = cm("b", { v = "1" })
    a.data.v, b.data.v = "2", "2"
    must(admin:update("configmaps", a))
    must(admin:update("configmaps", b))
    must(admin:delete("configmaps", "a", { namespace = ns }))
    -- wait without dispatching until two updates and a delete are queued
    local deadline = uptime() + 20
    while not (inf:count() == 1 and inf:stats().queued >= 3) and uptime() < deadline do os.execute("sleep 0.05") end
    assert.is_true(inf:stats().queued >= 3)
    local runs = 0
    while #log < 3 and runs < 10 do
      runs = runs + 1
      assert.is_true(kinformer.run{ timeout = 10 })
    end
    assert.are.same({ "update a", "update b", "delete a" }, log)
    assert.are.equal(3, runs) -- one callback per run
    -- a raw watch callback and the on_error handler stop it the same way
    local raw = {}
    must(c:watch("configmaps", { namespace = ns }, function(t) raw[#raw + 1] = t kinformer.stop() end))
    assert.is_true(kinformer.run{ timeout = 10 })
    assert.are.equal(1, #raw)
    kinformer.on_error(function() kinformer.stop() end)
    inf:on("add", function() error("stop from on_error") end)
    assert.is_true(kinformer.run{ timeout = 10 })
  end)

  it("stops its own informer from inside a callback: no more list or watch; started again, it syncs "
    .. "and its handlers catch up with the cache", function()
    for i = 1, 5 do cm("s" .. i) end
    local inf = must(c:informer("configmaps", { namespace = ns }))
    local added = {}
    inf:on("add", function(o)
      added[o.metadata.name] = (added[o.metadata.name] or 0) + 1
      if o.metadata.name == "s2" then inf:stop() end
    end)
    kinformer.run{ timeout = 3 }
    local stats = inf:stats()
    cm("late")
    kinformer.run{ timeout = 1 }
    assert.is_nil(inf:get("late", ns)) -- stopped: the store does not follow the server
    assert.are.same({ stats.lists, stats.watches }, { inf:stats().lists, inf:stats().watches })
    inf:start()
    local ok, err = inf:wait_for_sync(10)
    assert.is_true(ok, tostring(err))
    assert.is_true(spin(function() return inf:count() == 6 end))
    kinformer.run{ timeout = 1 }
    -- every cached object had its add (the ones queued when it stopped included)
    for _, key in ipairs(inf:keys()) do
      local nm = key:match("/(.*)$")
      assert.is_truthy(added[nm], "no add callback for " .. nm)
    end
  end)

  it("clears its own informer from inside a callback: the events still queued go, the informer relists, "
    .. "every object comes again as add and it syncs", function()
    for i = 1, 5 do cm("c" .. i) end
    local inf = must(c:informer("configmaps", { namespace = ns }))
    local adds, cleared = {}, false
    inf:on("add", function(o)
      adds[#adds + 1] = o.metadata.name
      if o.metadata.name == "c2" and not cleared then
        cleared = true
        inf:clear()
        assert.are.equal(0, inf:count())
      end
    end)
    must(inf:wait_for_sync(20))
    assert.is_true(cleared)
    assert.are.equal(5, inf:count())
    kinformer.run{ timeout = 1 }
    local count = {}
    for _, nm in ipairs(adds) do count[nm] = (count[nm] or 0) + 1 end
    -- the first list's adds up to c2, then the relist's five
    assert.are.equal(5 + 2, #adds)
    for i = 1, 5 do assert.is_truthy(count["c" .. i], "no add for c" .. i) end
    cm("c6")
    assert.is_true(spin(function() return adds[#adds] == "c6" end))
    assert.are.same({}, errors_seen)
  end)

  it("keeps an informer nobody references registered and running (garbage collection does not stop it); "
    .. "stop_all{ clear = true } closes it and lets it be collected", function()
    local weak = setmetatable({}, { __mode = "v" })
    local adds = 0
    do
      local inf = must(c:informer("configmaps", { namespace = ns }))
      inf:on("add", function() adds = adds + 1 end)
      must(inf:wait_for_sync(20))
      weak.inf = inf
      weak.watch = must(c:watch("configmaps", { namespace = ns }, function() adds = adds + 100 end))
    end
    for _ = 1, 5 do
      collectgarbage("collect")
      kinformer.step(20)
    end
    assert.is_not_nil(weak.inf, "the running informer was collected")
    assert.is_not_nil(weak.watch, "the running watch was collected")
    cm("after-gc")
    assert.is_true(spin(function() return adds == 101 end))
    -- the shared informer is the same one
    assert.are.equal(weak.inf, c:informer("configmaps", { namespace = ns }))
    c:stop_all{ clear = true }
    for _ = 1, 5 do
      collectgarbage("collect")
      kinformer.step(20)
    end
    assert.is_nil(weak.inf, "a closed informer is still referenced")
    assert.is_nil(weak.watch, "a closed watch is still referenced")
    cm("after-close")
    kinformer.run{ timeout = 1 }
    assert.are.equal(101, adds)
  end)

  it("keeps a client nobody references alive while its informers run", function()
    local weak = setmetatable({}, { __mode = "v" })
    local adds = 0
    do
      local c2 = must(kinformer.client{ kubeconfig = cluster.kubeconfig })
      local inf = must(c2:informer("configmaps", { namespace = ns }))
      inf:on("add", function() adds = adds + 1 end)
      must(inf:wait_for_sync(20))
      weak.c2 = c2
    end
    for _ = 1, 5 do
      collectgarbage("collect")
      kinformer.step(20)
    end
    cm("x")
    assert.is_true(spin(function() return adds == 1 end))
    assert.is_not_nil(weak.c2)
    weak.c2:close()
    for _ = 1, 5 do collectgarbage("collect") end
    assert.is_nil(weak.c2, "a closed client is still referenced")
  end)

  it("closes a client's informers with c:close() while they run, also from inside their own callback; "
    .. "other clients' informers go on", function()
    local other = must(kinformer.client{ kubeconfig = cluster.kubeconfig })
    local keep = must(other:informer("configmaps", { namespace = ns }))
    local kept = 0
    keep:on("add", function() kept = kept + 1 end)
    must(keep:wait_for_sync(20))
    local c2 = must(kinformer.client{ kubeconfig = cluster.kubeconfig })
    local inf = must(c2:informer("configmaps", { namespace = ns }))
    local adds = 0
    inf:on("add", function() adds = adds + 1 end)
    must(inf:wait_for_sync(20))
    cm("one")
    assert.is_true(spin(function() return adds == 1 and kept == 1 end))
    c2:close()
    cm("two")
    assert.is_true(spin(function() return kept == 2 end))
    kinformer.run{ timeout = 0.5 }
    assert.are.equal(1, adds)
    assert.is_false(inf:has_synced())
    assert.has_error(function() inf:get("one", ns) end, "kinformer: the informer is closed")
    assert.has_error(function() inf:start() end,
      "kinformer: the informer is closed (close() or stop_all{ clear = true }): ask the client for a new one")
    assert.has_error(function() c2:informer("configmaps", { namespace = ns }) end)
    -- from inside a callback: the rest of the batch for it is dropped, no crash
    local c3 = must(kinformer.client{ kubeconfig = cluster.kubeconfig })
    local inf3 = must(c3:informer("configmaps", { namespace = ns }))
    local calls = 0
    inf3:on("add", function()
      calls = calls + 1
      c3:close()
    end)
    kinformer.run{ timeout = 2 }
    assert.are.equal(1, calls)
    cm("three")
    assert.is_true(spin(function() return kept == 3 end))
    assert.are.equal(1, calls)
    other:close()
  end)
end)
