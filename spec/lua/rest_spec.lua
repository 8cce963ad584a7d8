-- Discovery and the dynamic REST verbs against the real control plane.
local kinformer = require "kinformer"
local cluster = require "support.cluster"

local helpers = require "support.helpers"
local must = helpers.must

local run_id = tostring(os.time()) .. tostring(math.random(1000, 9999))
local function ns_name(s) return ("rest-%s-%s"):format(s, run_id) end

-- The deployment controller writes Deployments too (their revision annotation, their status), so an
-- update of one read a moment before gets 409 Conflict: read it again and retry, as client-go's
-- RetryOnConflict does. change(obj) edits the fresh copy.
local function update_retrying(c, resource, name, ns, change, opts)
  for _ = 1, 10 do
    local obj = must(c:get(resource, name, { namespace = ns }))
    change(obj)
    local out, err = c:update(resource, obj, opts)
    if out or err.code ~= 409 then return must(out, err) end
  end
  error("update " .. resource .. " " .. ns .. "/" .. name .. ": still conflicting after 10 attempts")
end

describe("discovery", function()
  local c
  setup(function() c = must(kinformer.client{ kubeconfig = cluster.kubeconfig }) end)

  it("matches kubectl api-resources", function()
    local out = cluster.kubectl("api-resources --no-headers -o wide")
    local want = {}
    for line in out:gmatch("[^\n]+") do
      -- NAME SHORTNAMES APIVERSION NAMESPACED KIND VERBS CATEGORIES: short names may be absent
      local f = {}
      for w in line:gmatch("%S+") do f[#f + 1] = w end
      local i = (f[3] == "true" or f[3] == "false") and 2 or 3
      local api_version, namespaced, kind = f[i], f[i + 1] == "true", f[i + 2]
      local group = api_version:match("^(.*)/[^/]+$") or ""
      want[f[1] .. "." .. group] = { api_version = api_version, namespaced = namespaced, kind = kind }
    end
    local got = {}
    for _, r in ipairs(must(c:refresh())) do
      got[r.resource .. "." .. r.group] = r
    end
    local n = 0
    for key, w in pairs(want) do
      n = n + 1
      local r = got[key]
      assert(r, "kinformer is missing " .. key)
      assert.are.equal(w.api_version, r.api_version, key)
      assert.are.equal(w.namespaced, r.namespaced, key)
      assert.are.equal(w.kind, r.kind, key)
    end
    for key in pairs(got) do assert(want[key], "kubectl does not list " .. key) end
    assert.is_true(n > 40)
  end)

  it("falls back to the classic /api + /apis walk and finds the same resources", function()
    local aggregated = {}
    for _, r in ipairs(must(c:refresh())) do aggregated[r.resource .. "." .. r.group] = r end
    assert.are.equal("aggregated", c._discovery)
    -- ask without the aggregated media type: the real server answers with the classic documents
    local classic = must(kinformer.client{ kubeconfig = cluster.kubeconfig })
    local real = classic.request
    classic.request = function(self, method, path, body, opts)
      if opts and opts.accept then opts.accept = nil end
      return real(self, method, path, body, opts)
    end
    local list = must(classic:resources())
    assert.are.equal("classic", classic._discovery)
    local n = 0
    for _, r in ipairs(list) do
      local a = aggregated[r.resource .. "." .. r.group]
      assert(a, "classic discovery found " .. r.resource .. "." .. r.group .. " that aggregated did not")
      assert.are.same({ a.version, a.kind, a.namespaced, a.singular }, { r.version, r.kind, r.namespaced, r.singular })
      assert.are.same(a.short_names, r.short_names)
      n = n + 1
    end
    local total = 0
    for _ in pairs(aggregated) do total = total + 1 end
    assert.are.equal(total, n)
    assert.is_table(must(classic:resolve("pods")).subresources.status)
  end)

  it("keeps subresources out of the list but known", function()
    for _, r in ipairs(must(c:resources())) do assert.is_nil(r.resource:find("/", 1, true)) end
    local pods = must(c:resolve("pods"))
    assert.is_table(pods.subresources.status)
    assert.is_table(pods.subresources.log)
    assert.are.equal("Scale", must(c:resolve("deployments")).subresources.scale.kind)
  end)

  it("resolves every name kubectl accepts", function()
    for _, name in ipairs{ "pods", "pod", "po", "Pod", "v1/pods", { group = "", version = "v1", resource = "pods" } } do
      local r = must(c:resolve(name))
      assert.are.same({ "", "v1", "pods", "Pod", true }, { r.group, r.version, r.resource, r.kind, r.namespaced })
    end
    for _, name in ipairs{ "deployments.apps", "deployments.v1.apps", "apps/v1/deployments", "deploy", "Deployment",
                           { group = "apps", version = "v1", resource = "deployments" } } do
      local r = must(c:resolve(name))
      assert.are.same({ "apps", "v1", "deployments", "Deployment" }, { r.group, r.version, r.resource, r.kind })
    end
    assert.are.equal("networking.k8s.io", must(c:resolve("ingresses.networking.k8s.io")).group)
    assert.are.equal("", must(c:resolve("events")).group) -- kubectl's priority: the core group
    assert.is_false(must(c:resolve("namespaces")).namespaced)
    assert.is_true(#must(c:resolve("pods")).verbs > 3)
  end)

  it("lists close matches for an unknown name", function()
    local r, err = c:resolve("deploymnets")
    assert.is_nil(r)
    assert.are.equal("NotFound", err.reason)
    assert.matches("deployments%.apps", tostring(err))
  end)
end)

describe("REST verbs", function()
  local c, ns
  setup(function()
    c = must(kinformer.client{ kubeconfig = cluster.kubeconfig })
    ns = ns_name("verbs")
    must(c:create("namespaces", { metadata = { name = ns } }))
  end)
  teardown(function() c:delete("namespaces", ns) end)

  it("creates, gets, updates, patches and deletes a ConfigMap", function()
    local cm = must(c:create("configmaps", { metadata = { name = "a", labels = { app = "x" } }, data = { k = "v" } },
      { namespace = ns, field_manager = "spec" }))
    assert.are.same({ "v1", "ConfigMap", ns }, { cm.apiVersion, cm.kind, cm.metadata.namespace })
    local got = must(c:get("configmaps", "a", { namespace = ns }))
    assert.are.equal("v", got.data.k)
    got.data.k = "w"
    local upd = must(c:update("configmaps", got))
    assert.are.equal("w", upd.data.k)
    local p = must(c:patch("configmaps", "a", { data = { m = "1" } }, { namespace = ns, type = "merge" }))
    assert.are.same({ k = "w", m = "1" }, p.data)
    p = must(c:patch("configmaps", "a", { { op = "replace", path = "/data/m", value = "2" } },
      { namespace = ns, type = "json" }))
    assert.are.equal("2", p.data.m)
    p = must(c:patch("configmaps", "a", { metadata = { labels = { tier = "db" } } }, { namespace = ns, type = "strategic" }))
    assert.are.same({ app = "x", tier = "db" }, p.metadata.labels)
    must(c:delete("configmaps", "a", { namespace = ns }))
    local gone, err = c:get("configmaps", "a", { namespace = ns })
    assert.is_nil(gone)
    assert.are.equal(404, err.code)
    assert.are.equal("NotFound", err.reason)
    assert.truthy(tostring(err):find("get configmaps " .. ns .. "/a: configmaps \"a\" not found (NotFound, HTTP 404)", 1, true))
  end)

  it("uses the context namespace when none is given", function()
    local cm = must(c:create("configmaps", { metadata = { name = "ctx-" .. run_id } }))
    assert.are.equal("default", cm.metadata.namespace)
    must(c:delete("configmaps", cm.metadata.name))
  end)

  it("works on cluster-scoped and grouped resources, and the status and scale subresources", function()
    local dep = must(c:create("deployments.apps", {
      metadata = { name = "web", namespace = ns },
      spec = { replicas = 1, selector = { matchLabels = { app = "web" } },
        template = { metadata = { labels = { app = "web" } }, spec = { containers = { { name = "c", image = "x" } } } } },
    }))
    assert.are.same({ "apps/v1", "Deployment" }, { dep.apiVersion, dep.kind })
    local scale = must(c:patch("deployments", "web", { spec = { replicas = 3 } }, { namespace = ns, subresource = "scale" }))
    assert.are.equal("Scale", scale.kind)
    assert.are.equal(3, scale.spec.replicas)
    assert.are.equal(3, must(c:get("deployments", "web", { namespace = ns, subresource = "scale" })).spec.replicas)
    local st = update_retrying(c, "deployments", "web", ns,
      function(d) d.status = { observedGeneration = 7, replicas = 0 } end, { subresource = "status" })
    assert.are.equal(7, st.status.observedGeneration)
    assert.are.equal(math.type(7), math.type(st.status.observedGeneration))
    local nsobj = must(c:get("namespaces", ns))
    assert.are.same({ "v1", "Namespace" }, { nsobj.apiVersion, nsobj.kind })
    local cr = must(c:create("clusterroles", { metadata = { name = "rest-" .. run_id },
      rules = { { apiGroups = { "" }, resources = { "pods" }, verbs = { "get" } } } }))
    assert.are.same({ "rbac.authorization.k8s.io/v1", "ClusterRole" }, { cr.apiVersion, cr.kind })
    must(c:delete("clusterroles", cr.metadata.name))
  end)

  it("lists with selectors and across namespaces, every item with apiVersion and kind", function()
    for i = 1, 4 do
      must(c:create("configmaps", { metadata = { name = "sel" .. i, labels = { tmp = i % 2 == 0 and "1" or "0" } } },
        { namespace = ns }))
    end
    local l = must(c:list("configmaps", { namespace = ns, label_selector = "tmp=1" }))
    assert.are.equal(2, #l.items)
    for _, it in ipairs(l.items) do
      assert.are.same({ "v1", "ConfigMap", "1" }, { it.apiVersion, it.kind, it.metadata.labels.tmp })
    end
    assert.is_string(l.metadata.resourceVersion)
    l = must(c:list("configmaps", { namespace = ns, field_selector = "metadata.name=sel3" }))
    assert.are.equal("sel3", l.items[1].metadata.name)
    local all = must(c:list("configmaps", { label_selector = "tmp" }))
    local seen = 0
    for _, it in ipairs(all.items) do if it.metadata.namespace == ns then seen = seen + 1 end end
    assert.are.equal(4, seen)
    local d = must(c:list("deployments.apps"))
    for _, it in ipairs(d.items) do assert.are.same({ "apps/v1", "Deployment" }, { it.apiVersion, it.kind }) end
    must(c:delete_collection("configmaps", { namespace = ns, label_selector = "tmp=1" }))
    assert.are.equal(2, #must(c:list("configmaps", { namespace = ns, label_selector = "tmp" })).items)
  end)

  it("dry-runs create and delete", function()
    must(c:create("configmaps", { metadata = { name = "dry" } }, { namespace = ns, dry_run = true }))
    assert.is_nil((c:get("configmaps", "dry", { namespace = ns })))
    must(c:create("configmaps", { metadata = { name = "dry" } }, { namespace = ns }))
    must(c:delete("configmaps", "dry", { namespace = ns, dry_run = true }))
    must(c:get("configmaps", "dry", { namespace = ns }))
  end)

  it("honours delete preconditions and propagation", function()
    local cm = must(c:create("configmaps", { metadata = { name = "pre" } }, { namespace = ns }))
    local ok, err = c:delete("configmaps", "pre", { namespace = ns, preconditions = { uid = "not-the-uid" } })
    assert.is_nil(ok)
    assert.are.equal(409, err.code)
    must(c:delete("configmaps", "pre", { namespace = ns, propagation_policy = "Foreground", grace_period = 0,
      preconditions = { uid = cm.metadata.uid, resourceVersion = cm.metadata.resourceVersion } }))
  end)

  it("reports 409 for a stale resourceVersion, 422 for an invalid object, 403 for the limited user", function()
    local cm = must(c:create("configmaps", { metadata = { name = "stale" } }, { namespace = ns }))
    must(c:patch("configmaps", "stale", { data = { x = "1" } }, { namespace = ns }))
    local ok, err = c:update("configmaps", cm)
    assert.is_nil(ok)
    assert.are.same({ 409, "Conflict" }, { err.code, err.reason })
    assert.are.equal("Status", err.status.kind)
    ok, err = c:create("configmaps", { metadata = { name = "Not_Valid" } }, { namespace = ns })
    assert.is_nil(ok)
    assert.are.same({ 422, "Invalid" }, { err.code, err.reason })
    assert.is_table(err.details.causes)
    local limited = must(kinformer.client{ kubeconfig = cluster.limited_kubeconfig })
    ok, err = limited:list("configmaps", { namespace = ns })
    assert.is_nil(ok)
    assert.are.same({ 403, "Forbidden" }, { err.code, err.reason })
    local created; created, err = limited:create("configmaps", { metadata = { name = "x" } })
    assert.is_nil(created)
    assert.are.equal("Forbidden", err.reason)
    assert.is_table(must(limited:list("configmaps", { namespace = limited:namespace() })).items)
  end)

  it("applies server-side, reports conflicts and forces", function()
    local obj = { metadata = { name = "ssa", namespace = ns }, data = { owner = "one" } }
    must(c:patch("configmaps", "ssa", obj, { namespace = ns, type = "apply", field_manager = "one" }))
    obj.data.owner = "two"
    local ok, err = c:patch("configmaps", "ssa", obj, { namespace = ns, type = "apply", field_manager = "two" })
    assert.is_nil(ok)
    assert.are.same({ 409, "Conflict" }, { err.code, err.reason })
    local forced = must(c:patch("configmaps", "ssa", obj, { namespace = ns, type = "apply", field_manager = "two",
      force = true }))
    assert.are.equal("two", forced.data.owner)
    assert.has_error(function() c:patch("configmaps", "ssa", obj, { type = "apply" }) end)
  end)

  it("raises on misuse", function()
    assert.has_error(function() c:get("configmaps") end)
    assert.has_error(function() c:patch("configmaps", "x", {}, { type = "yaml" }) end)
    assert.has_error(function() c:list("configmaps", { limit = 0 }) end)
    assert.has_error(function() c:update("configmaps", { data = {} }) end)
  end)
end)

describe("pagination", function()
  local c, ns
  setup(function()
    c = must(kinformer.client{ kubeconfig = cluster.kubeconfig, qps = 500, burst = 500 })
    ns = ns_name("pages")
    must(c:create("namespaces", { metadata = { name = ns } }))
    for i = 1, 1200 do
      must(c:create("configmaps", { metadata = { name = ("cm-%04d"):format(i) }, data = { i = tostring(i) } },
        { namespace = ns }))
    end
  end)
  teardown(function() c:delete("namespaces", ns) end)

  it("follows continue tokens across 1,200 ConfigMaps in pages of 100", function()
    local before = c:transport_stats().requests
    local l = must(c:list("configmaps", { namespace = ns, limit = 100 }))
    assert.are.equal(12, c:transport_stats().requests - before)
    assert.are.equal(1200, #l.items)
    local seen = {}
    for _, it in ipairs(l.items) do
      assert.is_nil(seen[it.metadata.name])
      seen[it.metadata.name] = true
      assert.are.same({ "v1", "ConfigMap" }, { it.apiVersion, it.kind })
    end
    assert.is_nil(l.metadata["continue"])
  end)

  it("starts again when a continue token has expired (410)", function()
    -- A continue token is only as old as its resourceVersion: the server serves
    -- recent ones from its watch cache. Compact etcd, then present a token for a
    -- compacted version on the second page: the server answers 410 Expired.
    local etcd = cluster.env.KINFORMER_ETCD
    local p = assert(io.popen(("curl -sf -X POST %s/v3/kv/range -d '{\"key\":\"AA==\"}'"):format(etcd)))
    local rev = assert(tonumber(p:read("a"):match('"revision":"(%d+)"')), "cannot read etcd's revision")
    p:close()
    p = assert(io.popen(("curl -s -X POST %s/v3/kv/compaction -d '{\"revision\": %d}'"):format(etcd, rev)))
    local answer = p:read("a")
    p:close()
    assert(answer:find('"header"', 1, true) or answer:find("compacted", 1, true), answer)
    local stale = cluster.b64(('{"v":"meta.k8s.io/v1","rv":1,"start":"cm-0100\\u0000"}')):gsub("=+$", "")
    -- the verbs send through _request (request checks a caller's options first)
    local real_request, pages, expired = c._request, 0, 0
    c._request = function(self, method, path, body, opts, where)
      if path:find("continue=", 1, true) then
        pages = pages + 1
        if pages == 1 then path = path:gsub("continue=[^&]+", "continue=" .. stale) end
      end
      local res, err = real_request(self, method, path, body, opts, where)
      if not res and err.code == 410 then expired = expired + 1 end
      return res, err
    end
    local l, err = c:list("configmaps", { namespace = ns, limit = 500 })
    c._request = nil
    assert(l, tostring(err))
    assert.are.equal(1, expired, "the server must have answered 410 once")
    assert.are.equal(1200, #l.items)
  end)
end)

describe("custom resources and round trips", function()
  local c, ns
  local crd_name = "widgets.kinformer.test"
  setup(function()
    c = must(kinformer.client{ kubeconfig = cluster.kubeconfig })
    ns = ns_name("crd")
    must(c:create("namespaces", { metadata = { name = ns } }))
    c:delete("customresourcedefinitions", crd_name)
    -- wait for an older one to go (a rerun against the same cluster)
    for _ = 1, 100 do
      if not c:get("customresourcedefinitions", crd_name) then break end
      os.execute("sleep 0.1")
    end
    must(c:resources()) -- cache discovery before the CRD exists
    must(c:create("customresourcedefinitions", {
      metadata = { name = crd_name },
      spec = {
        group = "kinformer.test", scope = "Namespaced",
        names = { plural = "widgets", singular = "widget", kind = "Widget", shortNames = { "wdg" } },
        versions = { {
          name = "v1", served = true, storage = true,
          subresources = { status = {} },
          schema = { openAPIV3Schema = { type = "object", properties = {
            spec = { type = "object", ["x-kubernetes-preserve-unknown-fields"] = true },
            status = { type = "object", ["x-kubernetes-preserve-unknown-fields"] = true },
          } } },
        } },
      },
    }))
    for _ = 1, 100 do
      local crd = c:get("customresourcedefinitions", crd_name)
      local established = false
      local status = crd and crd.status ~= kinformer.null and crd.status or {}
      local conditions = status.conditions ~= kinformer.null and status.conditions or {}
      for _, cond in ipairs(conditions) do
        if cond.type == "Established" and cond.status == "True" then established = true end
      end
      if established then break end
      os.execute("sleep 0.1")
    end
  end)
  teardown(function()
    c:delete("namespaces", ns)
    c:delete("customresourcedefinitions", crd_name)
  end)

  it("finds a CRD created a moment ago and uses every verb on it", function()
    local r = must(c:resolve("wdg")) -- not in the cached discovery: one refresh finds it
    assert.are.same({ "kinformer.test", "v1", "widgets", "Widget", true },
      { r.group, r.version, r.resource, r.kind, r.namespaced })
    assert.is_table(r.subresources.status)
    local w = must(c:create("widgets", { metadata = { name = "w1" }, spec = { size = 1 } }, { namespace = ns }))
    assert.are.same({ "kinformer.test/v1", "Widget" }, { w.apiVersion, w.kind })
    w = must(c:get("widget", "w1", { namespace = ns }))
    w.spec.size = 2
    w = must(c:update("widgets.kinformer.test", w))
    assert.are.equal(2, w.spec.size)
    w.status = { ready = true }
    assert.is_true(must(c:update("Widget", w, { subresource = "status" })).status.ready)
    assert.are.equal(3, must(c:patch("kinformer.test/v1/widgets", "w1", { spec = { size = 3 } }, { namespace = ns })).spec.size)
    must(c:patch("widgets", "w1", { apiVersion = "kinformer.test/v1", kind = "Widget", metadata = { name = "w1" },
      spec = { color = "red" } }, { namespace = ns, type = "apply", field_manager = "spec" }))
    local l = must(c:list("widgets.v1.kinformer.test", { namespace = ns }))
    assert.are.equal(1, #l.items)
    assert.are.same({ "kinformer.test/v1", "Widget", 3, "red" },
      { l.items[1].apiVersion, l.items[1].kind, l.items[1].spec.size, l.items[1].spec.color })
    must(c:create("widgets", { metadata = { name = "w2", labels = { tmp = "1" } } }, { namespace = ns }))
    must(c:delete_collection("widgets", { namespace = ns, label_selector = "tmp=1" }))
    must(c:delete("widgets", "w1", { namespace = ns }))
    assert.are.equal(0, #must(c:list("widgets", { namespace = ns })).items)
  end)

  it("keeps empty lists, empty objects, nulls and large integers through get and update", function()
    local big = 9007199254740993 -- 2^53 + 1: a double cannot hold it
    must(c:create("widgets", { metadata = { name = "rt" }, spec = {
      list = kinformer.array{}, obj = {}, nested = { kinformer.array{}, {} }, big = big, neg = -9223372036854775807,
      ratio = 0.1, n = kinformer.null } }, { namespace = ns }))
    local w = must(c:get("widgets", "rt", { namespace = ns }))
    assert.are.equal(big, w.spec.big)
    assert.are.equal("integer", math.type(w.spec.big))
    assert.are.equal(-9223372036854775807, w.spec.neg)
    assert.are.equal(0.1, w.spec.ratio)
    assert.are.equal(kinformer.array_mt, getmetatable(w.spec.list))
    assert.is_nil(getmetatable(w.spec.obj))
    assert.are.equal(kinformer.null, w.spec.n)
    -- written back unchanged but for one field: the server must see the same shapes
    w.spec.touched = true
    local back = must(c:update("widgets", w))
    assert.are.equal('{"big":9007199254740993,"list":[],"n":null,"neg":-9223372036854775807,' ..
      '"nested":[[],{}],"obj":{},"ratio":0.1,"touched":true}', kinformer.json.encode(back.spec))
    -- and as the server stores it (read by kubectl, the other client)
    local out = cluster.kubectl(("get widgets rt -n %s -o jsonpath={.spec}"):format(ns))
    local server = kinformer.json.decode(out)
    assert.are.equal(big, server.big)
    assert.are.equal(kinformer.array_mt, getmetatable(server.list))
  end)

  it("round-trips a Deployment and a ConfigMap with empty data", function()
    local dep = must(c:create("deployments", {
      metadata = { name = "rt", namespace = ns, finalizers = { "kinformer.test/hold" } },
      spec = { replicas = 2, selector = { matchLabels = { app = "rt" } }, revisionHistoryLimit = 3,
        template = { metadata = { labels = { app = "rt" } },
          spec = { containers = { { name = "c", image = "x", args = kinformer.array{}, env = kinformer.array{} } } } } },
    }))
    local upd = update_retrying(c, "deployments", "rt", ns, function(got)
      got.metadata.finalizers = kinformer.array{} -- drop the finalizer: an empty list, not an object
    end)
    assert.is_nil(upd.metadata.finalizers)
    assert.are.equal(2, upd.spec.replicas)
    assert.are.equal("integer", math.type(upd.spec.replicas))
    assert.are.equal(dep.metadata.uid, upd.metadata.uid)
    local cm = must(c:create("configmaps", { metadata = { name = "empty", namespace = ns }, data = {} }))
    cm.data = {}
    cm.binaryData = {}
    must(c:update("configmaps", cm))
    assert.are.equal("", cluster.kubectl(("get configmap empty -n %s -o jsonpath={.data}"):format(ns)))
  end)
end)
