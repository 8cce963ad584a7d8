-- Faults between kinformer and the API server (issue 6, section 1): a proxy on
-- loopback (spec/support/fault_proxy.py) between the informer and the real
-- control plane cuts, stalls, trickles and corrupts watch streams and answers
-- lists and watches with 410, 5xx, 429 and 401. After each fault the
-- informer's cache must equal a fresh list from the server (read directly, not
-- through the proxy), and every object's last callback must be the server's
-- final state. Set FAULTS_VERBOSE=1 to print what each fault cost.
local kinformer = require "kinformer"
local cluster = require "support.cluster"

local helpers = require "support.helpers"
local must, uptime, spin = helpers.must, helpers.uptime, helpers.spin

local run_id = tostring(os.time() % 100000) .. tostring(math.random(100, 999))

local errors_seen = {}
kinformer.on_error(function(err, where) errors_seen[#errors_seen + 1] = { err = tostring(err), where = where } end)

local notes = {}
local function note(fmt, ...) notes[#notes + 1] = fmt:format(...) end
-- an error message for a note: without the URL, which the namespace already names
local function short(msg) return (msg or ""):gsub("GET https://%S+", "GET <url>"):sub(1, 180) end

local admin, ctl, proxy, proxy_pid, proxy_server, proxied_kc, dir

local function target(ns) return "/api/v1/namespaces/" .. ns .. "/configmaps" end

-- ---- the proxy's control channel ----

local function fault(spec)
  return must(ctl:request("POST", "/fault", spec)).ids[1]
end

local function fault_state(id)
  for _, f in ipairs(must(ctl:request("GET", "/faults")).faults) do
    if f.id == id then return f end
  end
end

local function fired(id) return (fault_state(id) or {}).fired or 0 end

-- The requests the proxy saw for the namespace's ConfigMaps, in order.
local function requests(ns)
  return must(ctl:request("GET", "/requests?match=" .. target(ns))).log
end

local function watches(ns)
  local out = {}
  for _, e in ipairs(requests(ns)) do if e.watch then out[#out + 1] = e end end
  return out
end

-- Waits until the proxy carries a watch stream of the namespace.
local function wait_stream(ns)
  assert(spin(function()
    for _, s in ipairs(must(ctl:request("GET", "/streams")).streams) do
      if s.state == "open" and s.target:find(target(ns) .. "?", 1, true) and s.target:find("watch=1", 1, true) then
        return true
      end
    end
    return false
  end, 20), "no watch stream of " .. ns .. " reached the proxy")
end

-- ---- informers and what they told ----

local namespaces, clients = {}, {}

local function make_ns(s)
  local ns = ("flt-%s-%s"):format(s, run_id)
  must(admin:create("namespaces", { metadata = { name = ns } }))
  namespaces[#namespaces + 1] = ns
  return ns
end

local function cm(ns, name, data)
  return must(admin:create("configmaps", { metadata = { name = name, namespace = ns }, data = data or { v = "0" } }))
end

local function update(ns, name, v)
  local o = must(admin:get("configmaps", name, { namespace = ns }))
  o.data = { v = v }
  return must(admin:update("configmaps", o))
end

-- Every callback, and the last one per key: { kind, resourceVersion, final_state_unknown }.
local function record(inf)
  local rec = { last = {}, log = {} }
  local function put(kind, o, unknown)
    local key = o.metadata.namespace .. "/" .. o.metadata.name
    rec.last[key] = { kind, o.metadata.resourceVersion, unknown }
    rec.log[#rec.log + 1] = { kind, key, o.metadata.resourceVersion, unknown }
  end
  inf:on("add", function(o) put("add", o) end)
  inf:on("update", function(_, o) put("update", o) end)
  inf:on("delete", function(o, unknown) put("delete", o, unknown) end)
  return rec
end

local function count_calls(rec, kind, key)
  local n = 0
  for _, e in ipairs(rec.log) do if e[1] == kind and e[2] == key then n = n + 1 end end
  return n
end

-- An informer through the proxy, synced.
local function open(ns, opts, kubeconfig)
  local c = must(kinformer.client{ kubeconfig = kubeconfig or proxied_kc })
  clients[#clients + 1] = c
  opts = opts or {}
  opts.namespace = ns
  local inf = must(c:informer("configmaps", opts))
  local rec = record(inf)
  return c, inf, rec
end

local function errors_of(ns)
  local out = {}
  for _, e in ipairs(errors_seen) do
    if (e.where or ""):find(ns, 1, true) or e.err:find(ns, 1, true) then out[#out + 1] = e.err end
  end
  return out
end

-- The server's state, read directly (not through the proxy): key -> resourceVersion.
local function server_state(ns)
  local want = {}
  for _, o in ipairs(must(admin:list("configmaps", { namespace = ns })).items) do
    want[ns .. "/" .. o.metadata.name] = o.metadata.resourceVersion
  end
  return want
end

local function store_diff(inf, want)
  local have = {}
  for _, o in ipairs(inf:list()) do have[o.metadata.namespace .. "/" .. o.metadata.name] = o.metadata.resourceVersion end
  for k, rv in pairs(want) do
    if have[k] ~= rv then return ("%s: the cache has %s, the server %s"):format(k, tostring(have[k]), rv) end
  end
  for k, rv in pairs(have) do
    if not want[k] then return ("%s: cached (resourceVersion %s) but gone from the server"):format(k, rv) end
  end
end

local function callback_diff(rec, want)
  for k, rv in pairs(want) do
    local last = rec.last[k]
    if not last then return k .. ": no callback" end
    if last[1] == "delete" or last[2] ~= rv then
      return ("%s: last callback %s %s, the server has %s"):format(k, last[1], tostring(last[2]), rv)
    end
  end
  for k, last in pairs(rec.last) do
    if not want[k] and last[1] ~= "delete" then return ("%s: gone from the server, last callback %s"):format(k, last[1]) end
  end
end

-- The check after every fault: the cache equals a fresh list, and every
-- object's last callback is the server's final state.
local function assert_converged(inf, rec, ns, timeout)
  local want = server_state(ns)
  spin(function() return store_diff(inf, want) == nil and callback_diff(rec, want) == nil end, timeout or 30)
  kinformer.step(100)
  local d = store_diff(inf, want)
  assert(d == nil, "the cache differs from a fresh list: " .. tostring(d))
  d = callback_diff(rec, want)
  assert(d == nil, "the callbacks differ from the server's final state: " .. tostring(d))
end

-- ---- setup ----

setup(function()
  admin = must(kinformer.client{ kubeconfig = cluster.kubeconfig, qps = 1000, burst = 1000 })
  proxy = assert(io.popen(("exec python3 spec/support/fault_proxy.py --cluster-dir %q"):format(cluster.dir), "r"))
  local line = proxy:read("l") or ""
  local tls_port, ctl_port, pid = line:match("^PROXY (%d+) (%d+) (%d+)$")
  assert(tls_port, "the fault proxy did not start: " .. line)
  proxy_pid = pid
  dir = cluster.tmpdir()
  ctl = must(kinformer.client{ kubeconfig = cluster.write_kubeconfig(dir, "ctl",
    { cluster = { server = "http://127.0.0.1:" .. ctl_port } }), max_retries = 0, qps = 1000, burst = 1000 })
  -- kinformer sees the proxy with the test CA; the proxy drops this token and
  -- speaks to the API server as the admin client certificate
  proxy_server = "https://127.0.0.1:" .. tls_port
  proxied_kc = cluster.write_kubeconfig(dir, "proxied", {
    cluster = { server = proxy_server, ["certificate-authority-data"] = cluster.b64(cluster.ca_pem) },
    user = { token = cluster.token } })
end)

teardown(function()
  if proxy_pid then os.execute("kill " .. proxy_pid) end
  if proxy then proxy:close() end
  for _, ns in ipairs(namespaces) do admin:delete("namespaces", ns) end
  cluster.cleanup()
  if os.getenv("FAULTS_VERBOSE") then
    io.stderr:write("\n-- faults_spec observations --\n", table.concat(notes, "\n"), "\n")
  end
end)

local function cleanup()
  for _, c in ipairs(clients) do c:close() end
  clients = {}
  ctl:request("POST", "/reset")
  errors_seen = {}
end

-- ---- faults inside a watch stream ----

describe("a watch stream through the fault proxy", function()
  after_each(cleanup)

  -- each fault meets the ADDED event of "during"; "p1" changes and "p2" goes meanwhile
  local stream_faults = {
    { action = "cut_mid_event", what = "the connection cut in the middle of an event (half a JSON line delivered)" },
    { action = "cut_between_events", what = "the connection cut between events" },
    { action = "garbage", what = "garbage bytes", reported = "not valid JSON" },
    { action = "truncate_chunk", what = "a truncated chunk" },
    { action = "invalid_json_line", what = "an invalid JSON line", reported = "not valid JSON" },
    { action = "unknown_event_type", what = "an unknown event type", reported = 'unknown type "EXPLODED"' },
  }
  for _, sf in ipairs(stream_faults) do
    it(("survives %s: reported, resumed from the last version, nothing lost"):format(sf.what), function()
      local ns = make_ns(sf.action:gsub("_", ""):sub(1, 12))
      for i = 1, 3 do cm(ns, "p" .. i) end
      local _, inf, rec = open(ns)
      must(inf:wait_for_sync(20))
      wait_stream(ns)
      local id = fault{ action = sf.action, event_type = "ADDED", match = { target(ns), "watch=1" } }
      local t0 = uptime()
      local during = cm(ns, "during")
      update(ns, "p1", "1")
      must(admin:delete("configmaps", "p2", { namespace = ns }))
      assert.is_true(spin(function() return fired(id) == 1 end, 10), "the fault did not fire")
      assert_converged(inf, rec, ns)
      local took = uptime() - t0
      -- the event that met the fault came exactly once, after the resume
      assert.are.equal(1, count_calls(rec, "add", ns .. "/during"))
      assert.are.same({ "add", during.metadata.resourceVersion }, { rec.last[ns .. "/during"][1], rec.last[ns .. "/during"][2] })
      assert.are.equal(1, count_calls(rec, "delete", ns .. "/p2"))
      assert.is_false(rec.last[ns .. "/p2"][3], "a watched delete is not final_state_unknown")
      assert.is_nil(rec.last[ns .. "/ghost"], "the event of unknown type reached a handler")
      assert.is_nil(inf:get("ghost", ns))
      -- reported through on_error, with what to act on
      local errs = errors_of(ns)
      assert.is_true(#errs >= 1, "nothing was reported through on_error")
      assert.matches("resuming from resourceVersion %d+", errs[1])
      if sf.reported then assert.matches(sf.reported, errs[1], 1, true) end
      -- resumed from the version it had (no relist), once
      local ws = watches(ns)
      assert.are.equal(2, #ws, "watch requests: " .. #ws)
      assert.matches("sendInitialEvents=true", ws[1].query)
      assert.is_nil(ws[2].query:find("sendInitialEvents", 1, true))
      assert.matches("resourceVersion=%d+", ws[2].query)
      assert.are.equal(0, inf:stats().relists)
      local f = fault_state(id)
      note("%-20s reported: %s | resumed %.2f s after the fault; converged in %.2f s", sf.action, short(errs[1]),
        ws[2].t - f.fired_at[1], took)
    end)
  end

  it("survives a trickle of one byte at a time, from the first byte of the response", function()
    local ns = make_ns("trickle")
    cm(ns, "t1")
    cm(ns, "t2")
    -- posted before the informer exists: it binds to its first watch request (the streaming list)
    local id = fault{ action = "trickle", delay = 0.001, match = { target(ns), "watch=1" } }
    local t0 = uptime()
    local _, inf, rec = open(ns)
    must(inf:wait_for_sync(60))
    local synced = uptime() - t0
    assert.are.equal(1, fired(id))
    cm(ns, "t3")
    update(ns, "t1", "1")
    must(admin:delete("configmaps", "t2", { namespace = ns }))
    assert_converged(inf, rec, ns, 60)
    assert.are.same({}, errors_of(ns))
    local ws = watches(ns)
    assert.are.equal(1, #ws, "the trickled stream was dropped")
    assert.is_true(ws[1].events >= 6, "events through the trickle: " .. ws[1].events)
    assert.are.same({ 1, 0 }, { inf:stats().watches, inf:stats().relists })
    note("%-20s synced in %.2f s; %d events through it; no error", "trickle", synced, ws[1].events)
  end)

  it("detects a stream that stalls with no bytes and no FIN, and resumes within 60 s", function()
    local ns = make_ns("stall")
    cm(ns, "s1")
    local _, inf, rec = open(ns) -- the default options, as a user gets them
    must(inf:wait_for_sync(20))
    wait_stream(ns)
    local id = fault{ action = "stall", now = true, match = { target(ns), "watch=1" } }
    local stalled_at = fault_state(id).fired_at[1]
    assert.are.equal(1, fired(id))
    local t0 = uptime()
    cm(ns, "during")
    update(ns, "s1", "1")
    -- waits past the 60 s to tell how late a slow detection is, then lets the
    -- stalled stream go (a cut) so that what follows can still be checked
    local resumed = spin(function() return inf:get("during", ns) ~= nil end, 90)
    local took = uptime() - t0
    local ws = watches(ns)
    local stall_end = type(ws[1].end_t) == "number" and (ws[1].end_t - stalled_at) or -1
    if not resumed then ctl:request("POST", "/release") end
    assert_converged(inf, rec, ns)
    note("%-20s resumed: %s after %.1f s (the stalled stream was closed by kinformer %.1f s after the stall: %s); "
      .. "stats: %s watches, %s stalls, %d errors", "stall", tostring(resumed), took, stall_end, tostring(ws[1]["end"]),
      inf:stats().watches, tostring(inf:stats().stalls), #errors_of(ns))
    assert(resumed and took <= 60, resumed and ("the stalled watch was resumed after %.1f s, not within 60 s"):format(took)
      or "the stalled watch was not resumed within 90 s")
    assert.are.equal(0, inf:stats().relists)
  end)
end)

-- ---- 410: relist, and deletes with final_state_unknown ----

describe("an expired version through the fault proxy", function()
  after_each(cleanup)

  local function expired(kind)
    local ns = make_ns(kind == "event" and "e410" or "h410")
    for i = 1, 3 do cm(ns, "a" .. i) end
    local _, inf, rec = open(ns)
    must(inf:wait_for_sync(20))
    wait_stream(ns)
    local ids
    if kind == "event" then
      -- the watch gets ERROR 410 in place of a1's DELETED
      ids = { fault{ action = "error_410_event", event_type = "DELETED", match = { target(ns), "watch=1" } } }
    else
      -- the watch breaks before a1's DELETED, and its resume is answered 410
      ids = { fault{ action = "cut_between_events", event_type = "DELETED", match = { target(ns), "watch=1" } },
              fault{ action = "http_410", match = { target(ns), "watch=1", "resourceVersion=" },
                     exclude = "sendInitialEvents" } }
    end
    local t0 = uptime()
    must(admin:delete("configmaps", "a1", { namespace = ns }))
    update(ns, "a2", "1")
    assert_converged(inf, rec, ns)
    for _, id in ipairs(ids) do assert.are.equal(1, fired(id)) end
    -- a1 vanished while the watch was broken: the relist deletes it, final state unknown
    assert.are.same({ "delete", true }, { rec.last[ns .. "/a1"][1], rec.last[ns .. "/a1"][3] })
    assert.are.equal(1, count_calls(rec, "delete", ns .. "/a1"))
    assert.are.equal(1, inf:stats().relists)
    -- the relist is a consistent read: resourceVersion ""
    local ws = watches(ns)
    local last = ws[#ws]
    assert.matches("sendInitialEvents=true", last.query)
    assert.is_nil(last.query:match("resourceVersion=%d"), "the relist after 410 must not name a version")
    note("%-20s relisted %.2f s after the fault; %d watch requests; on_error: %s", "410 " .. kind,
      last.t - fault_state(ids[#ids]).fired_at[1], #ws, short(table.concat(errors_of(ns), " | ")))
    return uptime() - t0
  end

  it("relists after an ERROR event with code 410, deleting what vanished with final_state_unknown", function()
    expired("event")
  end)

  it("relists after an HTTP 410 on the watch request, deleting what vanished with final_state_unknown", function()
    expired("http")
  end)
end)

-- ---- 5xx and 429: backoff, never a tight loop ----

describe("failing lists and watches through the fault proxy", function()
  after_each(cleanup)

  it("back off as documented after 500, 503 and 429 with Retry-After, on list and on watch", function()
    -- six informers at once, one per case, each in its own namespace
    local cases = {
      { name = "list-500", code = 500, list = true, count = 3 },
      { name = "list-503", code = 503, list = true, count = 3 },
      { name = "list-429", code = 429, list = true, count = 2, retry_after = 2 },
      { name = "watch-500", code = 500, count = 3 },
      { name = "watch-503", code = 503, count = 3 },
      { name = "watch-429", code = 429, count = 2, retry_after = 2 },
    }
    for _, k in ipairs(cases) do
      k.ns = make_ns(k.name)
      cm(k.ns, "x1")
      if k.list then
        -- paged lists: the list request itself fails
        k.id = fault{ action = "http_" .. k.code, count = k.count, retry_after = k.retry_after,
                      match = { target(k.ns), "limit=" }, exclude = "watch=" }
        k.c, k.inf, k.rec = open(k.ns, { streaming_list = false })
        k.inf:start()
      else
        k.c, k.inf, k.rec = open(k.ns)
        must(k.inf:wait_for_sync(20))
      end
    end
    for _, k in ipairs(cases) do
      if not k.list then
        wait_stream(k.ns)
        -- a 5xx watch relists (a streaming list is a watch too, and fails as well); a 429 only watches again
        k.id = fault{ action = "http_" .. k.code, count = k.count, retry_after = k.retry_after,
                      match = { target(k.ns), "watch=1" }, exclude = k.code == 429 and "sendInitialEvents" or nil }
        fault{ action = "end", now = true, match = { target(k.ns), "watch=1" } } -- as at the watch's timeout
      end
      cm(k.ns, "during")
    end
    for _, k in ipairs(cases) do
      assert.is_true(spin(function() return k.inf:has_synced() and k.inf:get("during", k.ns) ~= nil end, 30),
        k.name .. " did not recover")
    end
    spin(function() return false end, 1) -- a quiet second: nothing more may come
    for _, k in ipairs(cases) do
      assert_converged(k.inf, k.rec, k.ns)
      local log = requests(k.ns)
      local first
      for i, e in ipairs(log) do if e.fault == "http_" .. k.code and not first then first = i end end
      assert(first, k.name .. ": no request met the fault")
      -- count failures, then the one that got through, then at most the next watch: no tight loop
      local failed, gaps = 0, {}
      for i = first, #log do
        if log[i].status == k.code then failed = failed + 1 end
        if i > first and i <= first + k.count then gaps[#gaps + 1] = log[i].t - log[i - 1].t end
      end
      assert.are.equal(k.count, failed, k.name .. ": failed requests")
      assert.are.equal(k.count, fired(k.id))
      local tail = #log - first + 1
      assert.is_true(tail <= k.count + 2, ("%s: %d requests from the first failure on"):format(k.name, tail))
      local shown = {}
      -- the upper bounds allow for the client's own delay; under valgrind
      -- (scale small) that delay is tens of times longer
      local late = cluster.scale == "small" and 1.5 or 0.3
      for i, g in ipairs(gaps) do
        shown[i] = ("%.2f"):format(g)
        if k.retry_after then
          -- the server's Retry-After, not a jittered guess
          assert.is_true(g >= k.retry_after - 0.05 and g <= k.retry_after + 0.3 + late,
            ("%s: retry %d after %.2f s, Retry-After was %d"):format(k.name, i, g, k.retry_after))
        else
          -- about 0.8 s doubling, jittered 0.5x..1.5x
          local base = 0.8 * 2 ^ (i - 1)
          assert.is_true(g >= 0.5 * base - 0.05 and g <= 1.5 * base + late,
            ("%s: retry %d after %.2f s (expected %.1f..%.1f)"):format(k.name, i, g, 0.5 * base, 1.5 * base))
        end
      end
      -- every failure went to on_error, with its HTTP code
      local errs = errors_of(k.ns)
      assert.is_true(#errs >= k.count, k.name .. ": errors reported: " .. #errs)
      assert.matches("HTTP " .. k.code, errs[1], 1, true)
      if not k.list and k.code == 429 then
        -- waited and watched again from the same version, without listing
        for i = first, #log do assert.is_nil(log[i].query:find("sendInitialEvents", 1, true)) end
        assert.are.equal(0, k.inf:stats().relists)
      end
      note("%-20s retries after %s s; %d requests from the first failure on; relists %d; on_error: %s", k.name,
        table.concat(shown, ", "), tail, k.inf:stats().relists, short(errs[1]))
    end
  end)
end)

-- ---- 401 with an exec plugin ----

describe("an expired token through the fault proxy", function()
  after_each(cleanup)

  local plugin = (function()
    local p = assert(io.popen("pwd"))
    local cwd = p:read("l")
    p:close()
    return cwd .. "/spec/support/exec-plugin.sh"
  end)()

  local function runs(d)
    local f = io.open(d .. "/runs")
    if not f then return 0 end
    local n = 0
    for _ in f:lines() do n = n + 1 end
    f:close()
    return n
  end

  it("runs the exec plugin again after a 401 and the watch resumes", function()
    local ns = make_ns("auth401")
    cm(ns, "k1")
    local kp = cluster.tmpdir()
    local tok_a, tok_b = "faults-token-a-" .. run_id, "faults-token-b-" .. run_id
    cluster.write(kp .. "/token", tok_a)
    -- the proxy plays a server that accepts only these tokens
    must(ctl:request("POST", "/tokens", { valid = { tok_a } }))
    local exec = ("\n      apiVersion: client.authentication.k8s.io/v1\n      command: %s\n      env:\n"
      .. "      - name: KP_DIR\n        value: %q\n"):format(plugin, kp)
    local kc = cluster.write_kubeconfig(kp, "kc", { user = { exec = exec },
      cluster = { server = proxy_server, ["certificate-authority-data"] = cluster.b64(cluster.ca_pem) } })
    local c, inf, rec = open(ns, nil, kc)
    must(inf:wait_for_sync(20))
    assert.are.equal(1, runs(kp))
    wait_stream(ns)
    -- the token expires: the server refuses it from now on, and the plugin hands out a new one
    cluster.write(kp .. "/token", tok_b)
    must(ctl:request("POST", "/tokens", { valid = { tok_b } }))
    fault{ action = "end", now = true, match = { target(ns), "watch=1" } } -- the watch ends, as at its timeout
    local t0 = uptime()
    cm(ns, "during")
    update(ns, "k1", "1")
    assert_converged(inf, rec, ns)
    local took = uptime() - t0
    assert.are.equal(2, runs(kp), "the plugin must run again after the 401, once")
    assert.are.equal(2, c:exec_runs())
    local ws = watches(ns)
    local refused = 0
    for _, e in ipairs(ws) do if e.status == 401 then refused = refused + 1 end end
    assert.are.equal(1, refused, "watch requests refused with 401")
    assert.are.equal(200, ws[#ws].status)
    local errs = errors_of(ns)
    assert.is_true(#errs >= 1)
    assert.matches("401", errs[1], 1, true)
    for _, e in ipairs(errors_seen) do
      assert.is_nil(e.err:find("faults-token", 1, true), "a token in an error message")
    end
    note("%-20s converged %.2f s after the expiry; %d watch requests (%d refused); plugin runs %d; relists %d; "
      .. "on_error: %s", "401 exec", took, #ws, refused, runs(kp), inf:stats().relists, short(errs[1]))
  end)
end)
