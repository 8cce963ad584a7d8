-- Dead connections, tried as users meet them: a TCP proxy (spec/support/tcp_proxy.py)
-- between kinformer and the real API server passes TLS and HTTP/2 through untouched,
-- then stops forwarding in both directions without closing anything (a vanished
-- peer, a dropped NAT entry, a load balancer that lost the flow). Connections are
-- counted on the proxy's side, not only in kinformer's stats.
local kinformer = require "kinformer"
local cluster = require "support.cluster"
local helpers = require "support.helpers"
local must, uptime, spin = helpers.must, helpers.uptime, helpers.spin

local run_id = tostring(os.time() % 100000) .. tostring(math.random(100, 999))
local ns_count = 0

local admin, proxy_pipe, proxy_pid, ctl, dir, proxied_kc
local namespaces = {}
local errors_seen = {}
kinformer.on_error(function(err, where) errors_seen[#errors_seen + 1] = tostring(where) .. ": " .. tostring(err) end)

local function make_ns(s)
  ns_count = ns_count + 1
  local ns = ("conn-%s-%s-%d"):format(s, run_id, ns_count)
  must(admin:create("namespaces", { metadata = { name = ns } }))
  namespaces[#namespaces + 1] = ns
  return ns
end

local function proxy(method, what)
  return must(ctl:request(method, "/" .. what))
end

setup(function()
  admin = must(kinformer.client{ kubeconfig = cluster.kubeconfig, qps = 1000, burst = 1000 })
  proxy_pipe = assert(io.popen(("exec python3 spec/support/tcp_proxy.py --upstream 127.0.0.1:%d"):format(cluster.port)))
  local line = proxy_pipe:read("l") or ""
  local port, ctl_port, pid = line:match("^TCPPROXY (%d+) (%d+) (%d+)$")
  assert(port, "the TCP proxy did not start: " .. line)
  proxy_pid = pid
  dir = cluster.tmpdir()
  ctl = must(kinformer.client{ kubeconfig = cluster.write_kubeconfig(dir, "ctl",
    { cluster = { server = "http://127.0.0.1:" .. ctl_port } }), max_retries = 0 })
  -- the API server's certificate names 127.0.0.1, so TLS through the proxy is
  -- verified as it would be without it; the credential is a real token
  proxied_kc = cluster.write_kubeconfig(dir, "proxied", {
    cluster = { server = "https://127.0.0.1:" .. port, ["certificate-authority-data"] = cluster.b64(cluster.ca_pem) },
    user = { token = cluster.token } })
end)

teardown(function()
  if proxy_pid then os.execute("kill " .. proxy_pid) end
  if proxy_pipe then proxy_pipe:close() end
  for _, ns in ipairs(namespaces) do admin:delete("namespaces", ns) end
  cluster.cleanup()
end)

-- the names in the server's list, and in the informer's cache
local function server_names(ns)
  local list = must(admin:list("configmaps", { namespace = ns }))
  local out = {}
  for _, o in ipairs(list.items) do out[#out + 1] = o.metadata.name .. "=" .. tostring(o.data and o.data.v) end
  table.sort(out)
  return table.concat(out, ",")
end

local function cache_names(inf)
  local out = {}
  for _, o in ipairs(inf:list()) do out[#out + 1] = o.metadata.name .. "=" .. tostring(o.data and o.data.v) end
  table.sort(out)
  return table.concat(out, ",")
end

describe("a dead HTTP/2 connection", function()
  it("is found within 45 s, closed, and replaced by a new one; informer and raw watch miss nothing", function()
    local ns = make_ns("dead")
    for i = 1, 3 do
      must(admin:create("configmaps", { metadata = { name = "pre" .. i, namespace = ns }, data = { v = "0" } }))
    end
    local c = must(kinformer.client{ kubeconfig = proxied_kc })
    local inf = must(c:informer("configmaps", { namespace = ns }))
    local seen = {} -- "type name v" -> count, from the informer's handlers
    local function saw(k) seen[k] = (seen[k] or 0) + 1 end
    inf:on("add", function(o) saw("add " .. o.metadata.name .. " " .. tostring(o.data.v)) end)
    inf:on("update", function(_, o) saw("update " .. o.metadata.name .. " " .. tostring(o.data.v)) end)
    inf:on("delete", function(o) saw("delete " .. o.metadata.name) end)
    local raw = {}
    local w = must(c:watch("configmaps", { namespace = ns }, function(t, o)
      raw[#raw + 1] = t .. " " .. o.metadata.name .. " " .. tostring(o.data and o.data.v)
    end))
    must(inf:wait_for_sync(20))
    assert.is_true(spin(function() return #raw == 3 end))
    local before = proxy("GET", "stats")
    assert.are.equal(1, before.open, "kinformer should share one HTTP/2 connection")
    assert.are.equal(1, c:transport_stats().connections)

    proxy("POST", "stall")
    local t0 = uptime()
    errors_seen = {}
    -- changes while the connection is dead: each must arrive exactly once
    must(admin:create("configmaps", { metadata = { name = "during", namespace = ns }, data = { v = "1" } }))
    local pre1 = must(admin:get("configmaps", "pre1", { namespace = ns }))
    pre1.data.v = "2"
    must(admin:update("configmaps", pre1))
    must(admin:delete("configmaps", "pre2", { namespace = ns }))

    -- a request sent on the dead connection fails over too (a GET is safe to repeat)
    local got, gerr = c:get("configmaps", "during", { namespace = ns, timeout = 60 })
    local request_took = uptime() - t0
    assert(got, "a GET on the dead connection did not fail over: " .. tostring(gerr))
    assert.is_true(spin(function() return c:transport_stats().dead_connections >= 1 end, 60))
    local detected = uptime() - t0
    assert.is_true(spin(function() return cache_names(inf) == server_names(ns) end, 30))
    assert.is_true(spin(function() return #raw == 6 end, 30))
    local after = proxy("GET", "stats")
    print(("\n  dead HTTP/2 connection: closed %.1f s after the stall, the GET answered after %.1f s; "
      .. "proxy: %d connections accepted, %d open; stats: %s"):format(detected, request_took, after.accepted,
      after.open, kinformer.json.encode(c:transport_stats())))
    assert(detected <= 47, ("the dead connection was closed after %.1f s, not within 45 s"):format(detected))
    assert.is_true(after.accepted > before.accepted, "no new TCP connection reached the proxy")
    assert.are.equal(1, after.open - after.stalled, "everything should run on one new connection")
    assert.are.same({
      ["add pre1 0"] = 1, ["add pre2 0"] = 1, ["add pre3 0"] = 1,
      ["add during 1"] = 1, ["update pre1 2"] = 1, ["delete pre2"] = 1 }, seen)
    assert.are.same({ "ADDED during 1", "MODIFIED pre1 2", "DELETED pre2 0" }, { raw[4], raw[5], raw[6] })
    assert.are.equal(0, inf:stats().relists)
    -- resumed quietly, as a stall: nothing for on_error
    assert.are.same({}, errors_seen)

    -- and the new connection carries on
    must(admin:create("configmaps", { metadata = { name = "after", namespace = ns }, data = { v = "3" } }))
    assert.is_true(spin(function() return seen["add after 3"] == 1 and #raw == 7 end))
    proxy("POST", "reset")
    w:stop()
    c:stop_all{ clear = true }
    c:close()
  end)

  it("is never taken for dead while it answers, however quiet its watch", function()
    local ns = make_ns("quiet")
    local before = proxy("GET", "stats")
    -- a short ping interval stands in for five quiet minutes at the default 30 s
    local c = must(kinformer.client{ kubeconfig = proxied_kc, ping_interval = 0.5, ping_timeout = 2 })
    local inf = must(c:informer("configmaps", { namespace = ns, stall_limit = 1 }))
    must(inf:wait_for_sync(20))
    errors_seen = {}
    local t_end = uptime() + 12
    kinformer.run{ timeout = 12 }
    assert.is_true(uptime() >= t_end - 0.1)
    local st = c:transport_stats()
    local after = proxy("GET", "stats")
    print(("\n  quiet watch, 12 s, ping every 0.5 s of silence: %s; proxy accepted %d"):format(
      kinformer.json.encode(st), after.accepted - before.accepted))
    assert.are.equal(0, inf:stats().stalls)
    assert.are.equal(1, inf:stats().watches)
    assert.are.equal(0, st.dead_connections)
    -- 20 or more natively; under valgrind (scale small) each probe, a TLS request, takes about a second
    assert.is_true(st.pings >= (cluster.scale == "small" and 4 or 8), "the silent connection was not probed")
    assert.are.equal(1, after.accepted - before.accepted)
    assert.are.equal(1, st.connections)
    assert.are.same({}, errors_seen)
    c:stop_all{ clear = true }
    c:close()
  end)

  it("over HTTP/1.1 still ends a watch whose connection is silent for the stall limit", function()
    local ns = make_ns("h1")
    local c = must(kinformer.client{ kubeconfig = proxied_kc, http1 = true })
    local inf = must(c:informer("configmaps", { namespace = ns, stall_limit = 3 }))
    local adds = 0
    inf:on("add", function() adds = adds + 1 end)
    must(inf:wait_for_sync(20))
    local before = proxy("GET", "stats")
    proxy("POST", "stall")
    must(admin:create("configmaps", { metadata = { name = "during", namespace = ns } }))
    assert.is_true(spin(function() return adds == 1 end, 20))
    assert.is_true(inf:stats().stalls >= 1)
    assert.is_true(proxy("GET", "stats").accepted > before.accepted)
    proxy("POST", "reset")
    c:stop_all{ clear = true }
    c:close()
  end)
end)
