-- kinformer.core's metrics registry and /metrics, /healthz, /readyz server, as the Lua face
-- (kinformer.serve) uses them. Needs no cluster; HTTP goes through the curl command.
local core = require "kinformer.core"

-- status, body of a request to the server (curl's -w prints the status last)
local function http(port, path, method)
  local cmd = string.format("curl -s -m 5 -X %s -w '\\n%%{http_code}' http://127.0.0.1:%d%s",
    method or "GET", port, path)
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  p:close()
  local body, status = out:match("^(.*)\n(%d+)$")
  return tonumber(status), body
end

local function sleep(s)
  os.execute("sleep " .. s)
end

describe("core.metrics", function()
  it("renders counters, gauges and histograms with their labels", function()
    local reg = core.metrics()
    local total = reg:counter("controller_runtime_reconcile_total", "Total reconciles", { "controller", "result" })
    local depth = reg:gauge("workqueue_depth", "Depth", { "name" })
    local time = reg:histogram("controller_runtime_reconcile_time_seconds", "Time", { "controller" }, { 0.1, 1 })
    total:add(1, "web", "success")
    total:add(2, "web", "success")
    depth:set(4, 'a "b"\n')
    depth:add(-1, 'a "b"\n')
    time:observe(0.5, "web")
    assert.are.equal(table.concat {
      "# HELP controller_runtime_reconcile_time_seconds Time\n",
      "# TYPE controller_runtime_reconcile_time_seconds histogram\n",
      'controller_runtime_reconcile_time_seconds_bucket{controller="web",le="0.1"} 0\n',
      'controller_runtime_reconcile_time_seconds_bucket{controller="web",le="1"} 1\n',
      'controller_runtime_reconcile_time_seconds_bucket{controller="web",le="+Inf"} 1\n',
      'controller_runtime_reconcile_time_seconds_sum{controller="web"} 0.5\n',
      'controller_runtime_reconcile_time_seconds_count{controller="web"} 1\n',
      "# HELP controller_runtime_reconcile_total Total reconciles\n",
      "# TYPE controller_runtime_reconcile_total counter\n",
      'controller_runtime_reconcile_total{controller="web",result="success"} 3\n',
      "# HELP workqueue_depth Depth\n",
      "# TYPE workqueue_depth gauge\n",
      'workqueue_depth{name="a \\"b\\"\\n"} 3\n',
    }, reg:render())
    assert.are.equal(3, total:get("web", "success"))
    assert.are.equal(0, total:get("web", "error"))
    local count, sum = time:get("web")
    assert.are.equal(1, count)
    assert.are.equal(0.5, sum)
    assert.is_true(total:remove("web", "success"))
    assert.is_false(total:remove("web", "success"))
    assert.matches("kinformer.core.metric %(counter controller_runtime_reconcile_total%)", tostring(total))
  end)

  it("gives the same family for the same definition and raises on misuse", function()
    local reg = core.metrics()
    local a = reg:counter("a_total", "help", { "k" })
    a:add(1, "x")
    reg:counter("a_total", "help", { "k" }):add(1, "x")
    assert.are.equal(2, a:get("x"))
    assert.has_error(function() reg:gauge("a_total", "help", { "k" }) end,
      "kinformer: metric a_total is already registered as a counter with other help, labels or buckets; " ..
      "this gauge would differ")
    assert.has_error(function() reg:counter("bad-name", "") end,
      'kinformer: metric name "bad-name" is not [a-zA-Z_:][a-zA-Z0-9_:]*')
    assert.has_error(function() reg:counter("b_total", "", { 1 }) end, "kinformer: label name 1 is not a string")
    assert.has_error(function() a:add(-1, "x") end, "kinformer: metric a_total is a counter: it cannot add -1")
    assert.has_error(function() a:add(1) end, "kinformer: metric a_total takes 1 label values, not 0")
    assert.has_error(function() a:add(1, "x", "y") end, "kinformer: metric a_total takes 1 label values, not 2")
    assert.has_error(function() a:set(1, "x") end, "kinformer: metric a_total is a counter: it has no set")
    assert.has_error(function() a:add(1, "a\0b") end, "kinformer: metric a_total: a label value holds a NUL byte")
    assert.has_error(function() reg:histogram("h", "", nil, { 2, 1 }) end,
      "kinformer: metric h: buckets must increase (bucket 2 is 1 after 2)")
    a:add(1, 42) -- a number is its string
    assert.are.equal(1, a:get("42"))
  end)
end)

describe("core.serve", function()
  it("serves the registry, health and readiness, and stops", function()
    local reg = core.metrics()
    reg:counter("up_total", "ups"):add(1)
    local srv = assert(core.serve { address = "127.0.0.1", port = 0, metrics = reg, busy_threshold = 0.3 })
    local port = srv:port()
    assert.is_true(port > 0)
    local status, body = http(port, "/metrics")
    assert.are.equal(200, status)
    assert.are.equal(reg:render(), body)

    assert.are.equal(503, (http(port, "/readyz")))
    srv:set_ready(true)
    assert.is_true(srv:ready())
    assert.are.equal(200, (http(port, "/readyz")))

    -- a stuck callback: busy for longer than the threshold
    srv:loop_state("busy")
    assert.are.equal(200, (http(port, "/healthz")))
    sleep(0.5)
    status, body = http(port, "/healthz")
    assert.are.equal(500, status)
    assert.matches("a callback is stuck", body)
    local ok, why = srv:health()
    assert.is_false(ok)
    assert.matches("more than 0.3 s", why)
    srv:loop_state("waiting")
    assert.are.equal(200, (http(port, "/healthz")))
    assert.is_true(srv:health())

    srv:liveness("io", 0.3)
    srv:beat("io")
    sleep(0.5)
    status, body = http(port, "/healthz")
    assert.are.equal(500, status)
    assert.matches("liveness check io: no beat for", body)
    srv:beat("io")
    srv:down("io", "the I/O thread exited")
    assert.are.same({ false, "liveness check io is down: the I/O thread exited" }, { srv:health() })
    srv:beat("io")
    assert.is_true(srv:health())
    assert.has_error(function() srv:beat("nope") end,
      "kinformer: no liveness check named nope (srv:liveness adds one)")
    assert.has_error(function() srv:loop_state("idle") end)

    assert.are.equal(405, (http(port, "/metrics", "POST")))
    assert.are.equal(404, (http(port, "/other")))

    srv:stop()
    assert.is_nil(srv:port())
    assert.are.equal("kinformer.core.server (stopped)", tostring(srv))
    srv:stop()
    srv:loop_state("busy") -- the state outlives the port: the Lua face may still mark its loop
    srv:loop_state("waiting")
  end)

  it("returns nil and an error naming the address when it cannot bind", function()
    local srv = assert(core.serve { address = "127.0.0.1", port = 0 })
    local again, err = core.serve { address = "127.0.0.1", port = srv:port() }
    assert.is_nil(again)
    assert.are.equal("Bind", err.reason)
    assert.are.equal("cannot listen on 127.0.0.1:" .. srv:port() .. ": Address already in use", err.message)
    srv:stop()
    local _, err2 = core.serve { address = "192.0.2.1", port = 0 }
    assert.are.equal("cannot listen on 192.0.2.1:0: Cannot assign requested address", err2.message)
    assert.has_error(function() core.serve { port = 70000 } end,
      "kinformer: serve: port must be an integer from 0 to 65535")
    assert.has_error(function() core.serve { metrics = {} } end,
      "kinformer: serve: metrics must be a registry from core.metrics()")
  end)

  it("closes with a <close> variable and with the collector", function()
    local port
    do
      local srv <close> = assert(core.serve { address = "127.0.0.1", port = 0 })
      port = srv:port()
      assert.are.equal(200, (http(port, "/healthz")))
    end
    local again = assert(core.serve { address = "127.0.0.1", port = port }) -- the port is free again
    assert.are.equal(port, again:port())
    local reg = core.metrics()
    local fam = reg:gauge("g", "")
    again, reg = nil, nil -- luacheck: ignore
    collectgarbage()
    collectgarbage()
    local third = assert(core.serve { address = "127.0.0.1", port = port }) -- the collector closed it
    third:stop()
    fam:set(2) -- the family holds its registry
    assert.are.equal(2, fam:get())
  end)
end)
