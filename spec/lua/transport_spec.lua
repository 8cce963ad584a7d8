-- The transport: one HTTP/2 connection per client, retries with backoff
-- that honour Retry-After, the rate limit and per-request timeouts. Faults
-- come from spec/support/fault_server.py (a real server cannot produce a 429
-- or a 503 on demand); the HTTP/2 checks use the real control plane.
local kinformer = require "kinformer"
local cluster = require "support.cluster"

local helpers = require "support.helpers"
local must = helpers.must

local function now()
  local p = io.popen("date +%s.%N")
  local t = tonumber(p:read("l"))
  p:close()
  return t
end

describe("transport", function()
  local fault, port, pid, dir
  setup(function()
    fault = assert(io.popen("exec python3 spec/support/fault_server.py", "r"))
    port, pid = fault:read("l"):match("^(%d+) (%d+)$")
    assert(port, "the fault server did not start")
  end)
  teardown(function()
    os.execute("kill " .. pid)
    fault:close()
  end)
  before_each(function() dir = cluster.tmpdir() end)
  after_each(function() cluster.cleanup() end)

  local function fake_client(opts)
    local kc = cluster.write_kubeconfig(dir, "kc", { cluster = { server = "http://127.0.0.1:" .. port } })
    opts = opts or {}
    opts.kubeconfig = kc
    local c = must(kinformer.client(opts))
    must(c:request("GET", "/reset"))
    return c
  end

  it("multiplexes every request of a client over one HTTP/2 connection", function()
    local c = must(kinformer.client{ kubeconfig = cluster.kubeconfig })
    for _ = 1, 20 do must(c:request("GET", "/api/v1/namespaces/default")) end
    must(c:list("configmaps", { namespace = "default" }))
    local st = c:transport_stats()
    assert.are.equal(1, st.connections)
    assert.are.equal(st.requests, st.http2)
  end)

  it("speaks HTTP/1.1 when asked to", function()
    local c = must(kinformer.client{ kubeconfig = cluster.kubeconfig, http1 = true })
    must(c:version())
    assert.are.equal(0, c:transport_stats().http2)
  end)

  it("retries a GET after 503 and 429, honouring Retry-After", function()
    local c = fake_client()
    local t0 = now()
    local ans = must(c:request("GET", "/fail/503/2?retry_after=1"))
    assert.are.equal(3, ans.attempt)
    assert.is_true(now() - t0 >= 1.9, "Retry-After: 1 must be waited for, twice")
    assert.are.equal(2, c:transport_stats().retries)
    ans = must(c:request("GET", "/fail/429/1"))
    assert.are.equal(2, ans.attempt)
  end)

  it("retries a POST after 429 but not after 500", function()
    local c = fake_client()
    assert.are.equal(2, must(c:request("POST", "/fail/429/1", { x = 1 })).attempt)
    local ok, err = c:request("POST", "/fail/500/1", { x = 1 })
    assert.is_nil(ok)
    assert.are.same({ 500, "InternalError" }, { err.code, err.reason })
    assert.are.equal(2, must(c:request("PUT", "/fail/500/1", { x = 1 })).attempt) -- PUT is safe to repeat
  end)

  it("gives up after max_retries and returns the last answer", function()
    local c = fake_client{ max_retries = 2 }
    local ok, err = c:request("GET", "/fail/503/10")
    assert.is_nil(ok)
    assert.are.same({ 503, "ServiceUnavailable" }, { err.code, err.reason })
    assert.matches("fault 3 of 10", err.message)
  end)

  it("applies a per-request timeout", function()
    local c = fake_client{ timeout = 30 }
    local ok, err = c:request("GET", "/slow/3", nil, { timeout = 0.5 })
    assert.is_nil(ok)
    assert.are.equal("Transport", err.reason)
    assert.matches("[Tt]imeout", err.message)
    assert.are.equal(1, must(c:request("GET", "/slow/0.1")).slept * 10)
  end)

  it("limits the request rate to qps after a burst", function()
    local c = fake_client{ qps = 10, burst = 2 }
    local t0 = now()
    for _ = 1, 12 do must(c:request("GET", "/count")) end
    -- 2 at once, then 10 at 10/s: at least ~1 s
    assert.is_true(now() - t0 >= 0.9, "12 requests at qps 10, burst 2 took " .. (now() - t0))
  end)

  it("reports an answer that is not JSON", function()
    local c = fake_client()
    local ok, err = c:request("GET", "/garbage")
    assert.is_nil(ok)
    assert.are.equal("BadResponse", err.reason)
  end)
end)
