-- kinformer.serve against the real control plane: /metrics parsed as Prometheus text (values move as
-- reconciles happen), /readyz before and after the caches sync, /healthz failing under a stuck callback,
-- bad requests answered 4xx, and the server gone after stop.
local kinformer = require "kinformer"
local cluster = require "support.cluster"
local helpers = require "support.helpers"
local must, spin = helpers.must, helpers.spin

local run_id = tostring(os.time() % 100000) .. tostring(math.random(100, 999))

local function http(port, path, method)
  local p = assert(io.popen(("curl -s -m 5 -X %s -w '\\n%%{http_code}' http://127.0.0.1:%d%s")
    :format(method or "GET", port, path)))
  local out = p:read("a")
  p:close()
  local body, status = out:match("^(.*)\n(%d+)$")
  return tonumber(status), body
end

-- The Prometheus text format 0.0.4: { ["name{labels}"] = value }, and the TYPE of each family; raises on
-- a line that is neither a comment nor a sample.
local function parse(text)
  local samples, types = {}, {}
  for line in text:gmatch("[^\n]+") do
    local fam, t = line:match("^# TYPE (%S+) (%S+)$")
    if fam then
      types[fam] = t
    elseif not line:match("^# HELP ") then
      local series, value = line:match("^([%w_:]+%b{}) (%S+)$")
      if not series then series, value = line:match("^([%w_:]+) (%S+)$") end
      assert(series and tonumber(value), "not a sample line: " .. line)
      samples[series] = tonumber(value)
    end
  end
  return samples, types
end

describe("kinformer.serve", function()
  it("serves /metrics, /readyz and /healthz for a controller", function()
    local c = must(kinformer.client{ kubeconfig = cluster.kubeconfig })
    local ns = "srv-" .. run_id
    must(c:create("namespaces", { metadata = { name = ns } }))
    for i = 1, 5 do must(c:create("configmaps", { metadata = { name = "m" .. i, namespace = ns } })) end
    local srv = must(kinformer.serve{ address = "127.0.0.1:0", busy_threshold = 1 })
    finally(function()
      srv:stop()
      c:stop_all()
      c:delete("namespaces", ns)
    end)
    local port = srv:port()
    local fail = true
    local ctl = must(c:controller{ name = "metered", resource = "configmaps", namespace = ns, base_delay = 0.01,
      on_error = function() end,
      reconcile = function(obj)
        if fail and obj.metadata.name == "m1" then fail = false return nil, "once" end
      end })
    -- not ready before its caches synced (the refresh runs in the loop, once a second)
    kinformer.step(0)
    assert.are.equal(503, (http(port, "/readyz")))
    assert.is_true(spin(function() return ctl:stats().succeeded >= 5 end, 30))
    assert.is_true(spin(function() return http(port, "/readyz") == 200 end, 5))
    local status, body = http(port, "/metrics")
    assert.are.equal(200, status)
    local m, types = parse(body)
    assert.are.equal(5, m['controller_runtime_reconcile_total{controller="metered",result="success"}'])
    assert.are.equal(1, m['controller_runtime_reconcile_total{controller="metered",result="error"}'])
    assert.are.equal(1, m['controller_runtime_reconcile_errors_total{controller="metered"}'])
    assert.are.equal(6, m['controller_runtime_reconcile_time_seconds_count{controller="metered"}'])
    assert.are.equal("histogram", types.controller_runtime_reconcile_time_seconds)
    assert.are.equal("histogram", types.workqueue_queue_duration_seconds)
    assert.are.equal("counter", types.rest_client_requests_total)
    assert.is_true(spin(function()
      m = parse(select(2, http(port, "/metrics")))
      return m['workqueue_retries_total{name="metered"}'] == 1 and m['workqueue_adds_total{name="metered"}'] == 6
    end, 5))
    assert.are.equal(0, m['workqueue_depth{name="metered"}'])
    assert.are.equal(5, m[('kinformer_informer_objects{informer="configmaps in %s"}'):format(ns)])
    local gets = 0
    for k, v in pairs(m) do
      if k:match('^rest_client_requests_total{code="200",method="GET"') then gets = gets + v end
    end
    assert.is_true(gets > 0)
    -- the values move: one more reconcile
    ctl:enqueue(ns .. "/m2")
    assert.is_true(spin(function() return ctl:stats().succeeded >= 6 end, 10))
    m = parse(select(2, http(port, "/metrics")))
    assert.are.equal(6, m['controller_runtime_reconcile_total{controller="metered",result="success"}'])
    -- healthy while idle, failing while a callback is stuck for longer than busy_threshold
    assert.are.equal(200, (http(port, "/healthz")))
    local f = io.popen(("sleep 1.6; curl -s -m 5 -w ' %%{http_code}' http://127.0.0.1:%d/healthz"):format(port))
    kinformer.core.sleep(2.5) -- stuck
    local out = f:read("a")
    f:close()
    assert.matches("stuck%s+500$", out)
    kinformer.step(10)
    assert.are.equal(200, (http(port, "/healthz")))
    -- bad requests get 4xx
    assert.are.equal(405, (http(port, "/metrics", "POST")))
    assert.are.equal(404, (http(port, "/nothing")))
    srv:stop()
    assert.is_nil(srv:port())
    local st = http(port, "/healthz")
    assert.is_true(st == nil or st == 0, tostring(st))
  end)

  it("says what is wrong with an address", function()
    assert.has_error(function() kinformer.serve{ address = "8080" } end)
    assert.has_error(function() kinformer.serve{ adress = "127.0.0.1:1" } end,
      "kinformer.serve: unknown option 'adress' (did you mean 'address'?)")
    local a = must(kinformer.serve{ address = "127.0.0.1:0" })
    local b, err = kinformer.serve{ address = "127.0.0.1:" .. a:port() }
    assert.is_nil(b)
    assert.matches("127%.0%.0%.1:" .. a:port(), err.message)
    a:stop()
  end)
end)
