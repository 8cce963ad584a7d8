-- Credentials that come from outside the kubeconfig: exec plugins, merged
-- $KUBECONFIG files and the in-cluster service account.
local kinformer = require "kinformer"
local cluster = require "support.cluster"
local helpers = require "support.helpers"
local cjson = require "cjson"

local plugin = (function()
  local p = assert(io.popen("pwd"))
  local cwd = p:read("l")
  p:close()
  return cwd .. "/spec/support/exec-plugin.sh"
end)()

local function runs(dir)
  local f = io.open(dir .. "/runs")
  if not f then return 0 end
  local n = 0
  for _ in f:lines() do n = n + 1 end
  f:close()
  return n
end

local function exec_kubeconfig(dir, api, extra)
  local exec = ("\n      apiVersion: %s\n      command: %s\n      env:\n      - name: KP_DIR\n        value: %q\n"
    .. "      - name: KP_API\n        value: %s\n%s"):format(api, plugin, dir, api, extra or "")
  return cluster.write_kubeconfig(dir, "kc", { cluster = cluster.cluster_data(), user = { exec = exec } })
end

local function read_ns(c)
  return c:request("GET", "/api/v1/namespaces/default")
end

describe("exec credential plugins", function()
  local dir
  before_each(function() dir = cluster.tmpdir() end)
  after_each(function() cluster.cleanup() end)

  it("runs the plugin once for many requests while the token is valid", function()
    cluster.write(dir .. "/token", cluster.token)
    local c = assert(kinformer.client{ kubeconfig = exec_kubeconfig(dir, "client.authentication.k8s.io/v1") })
    assert.are.equal(0, runs(dir), "the plugin must not run before the first request")
    for _ = 1, 5 do assert.are.equal("Namespace", assert(read_ns(c)).kind) end
    assert.are.equal(1, runs(dir))
    assert.are.equal(1, c:exec_runs())
  end)

  it("runs it again once the credential expires, not before", function()
    cluster.write(dir .. "/token", cluster.token)
    cluster.write(dir .. "/ttl", "2")
    local c = assert(kinformer.client{ kubeconfig = exec_kubeconfig(dir, "client.authentication.k8s.io/v1") })
    assert(read_ns(c))
    assert(read_ns(c))
    assert.are.equal(1, runs(dir))
    os.execute("sleep 3")
    assert(read_ns(c))
    assert(read_ns(c))
    assert.are.equal(2, runs(dir))
  end)

  it("runs it again when the server answers 401", function()
    cluster.write(dir .. "/token", "revoked-token-abcdef")
    local c = assert(kinformer.client{ kubeconfig = exec_kubeconfig(dir, "client.authentication.k8s.io/v1") })
    local ok, err = read_ns(c)
    assert.is_nil(ok)
    assert.are.equal("Unauthorized", err.reason)
    assert.are.equal(2, runs(dir)) -- the first answer, then one retry with a fresh credential
    assert.is_nil(tostring(err):find("revoked-token", 1, true))
    cluster.write(dir .. "/token", cluster.token) -- the plugin now has a good token
    assert.are.equal("Namespace", assert(read_ns(c)).kind)
    assert.are.equal(3, runs(dir))
    assert(read_ns(c))
    assert.are.equal(3, runs(dir))
  end)

  it("accepts a client certificate from a v1beta1 plugin", function()
    cluster.write(dir .. "/cert", cluster.admin_cert_pem)
    cluster.write(dir .. "/key", cluster.admin_key_pem)
    local c = assert(kinformer.client{ kubeconfig = exec_kubeconfig(dir, "client.authentication.k8s.io/v1beta1") })
    assert.are.equal("Namespace", assert(read_ns(c)).kind)
    assert.are.equal(1, runs(dir))
  end)

  it("passes the cluster to the plugin with provideClusterInfo", function()
    cluster.write(dir .. "/token", cluster.token)
    local kc = exec_kubeconfig(dir, "client.authentication.k8s.io/v1", "      provideClusterInfo: true\n")
    local c = assert(kinformer.client{ kubeconfig = kc })
    assert(read_ns(c))
    local info = cjson.decode(cluster.read(dir .. "/info"))
    assert.are.equal("ExecCredential", info.kind)
    assert.are.equal(cluster.server, info.spec.cluster.server)
    assert.are.equal(cluster.b64(cluster.ca_pem), info.spec.cluster["certificate-authority-data"])
    assert.is_false(info.spec.interactive)
  end)

  it("reports a failing plugin and keeps the client usable", function()
    cluster.write(dir .. "/token", cluster.token)
    cluster.write(dir .. "/fail", "")
    local c = assert(kinformer.client{ kubeconfig = exec_kubeconfig(dir, "client.authentication.k8s.io/v1") })
    local ok, err = read_ns(c)
    assert.is_nil(ok)
    assert.are.equal("ExecPlugin", err.reason)
    assert.matches("exited with status 1", err.message)
    os.remove(dir .. "/fail")
    assert.are.equal("Namespace", assert(read_ns(c)).kind)
  end)

  -- A plugin that takes seconds (a cloud SDK, a login) must not hold up the
  -- client's other watches: it runs off the I/O thread, and only the streams
  -- that need the new credential wait for it. A second process writes a
  -- ConfigMap every 100 ms, stamped with the time (seconds since boot, which
  -- both processes read alike); the delay of an event is when its callback
  -- runs minus that stamp.
  it("keeps the client's other watches flowing while the plugin refreshes slowly", function()
    local must, uptime, spin = helpers.must, helpers.uptime, helpers.spin
    local admin = must(kinformer.client{ kubeconfig = cluster.kubeconfig })
    local ns = ("auth-slow-%d-%d"):format(os.time() % 100000, math.random(1000, 9999))
    must(admin:create("namespaces", { metadata = { name = ns } }))
    cluster.write(dir .. "/token", cluster.token)
    cluster.write(dir .. "/ttl", "3")
    local c = must(kinformer.client{ kubeconfig = exec_kubeconfig(dir, "client.authentication.k8s.io/v1") })
    local inf = must(c:informer("configmaps", { namespace = ns }))
    local seen = {}
    local function note(o)
      local t = o.data and tonumber(o.data.t)
      if t then
        local now = uptime()
        seen[#seen + 1] = { at = now, delay = now - t }
      end
    end
    inf:on("add", note)
    inf:on("update", function(_, o) note(o) end)
    must(inf:wait_for_sync(20))
    local expires = uptime() + 3

    local stop = dir .. "/stop"
    local writer = io.popen(("env KC=%q NS=%q STOP=%q SPEC_LUA_PATH=%q SPEC_LUA_CPATH=%q lua5.4 - 2>&1 <<'EOF'\n%s\nEOF")
      :format(cluster.kubeconfig, ns, stop, package.path, package.cpath, [[
package.path = os.getenv("SPEC_LUA_PATH")
package.cpath = os.getenv("SPEC_LUA_CPATH")
local kinformer = require "kinformer"
local uptime = require("support.helpers").uptime
local c = assert(kinformer.client{ kubeconfig = os.getenv("KC") })
local cm = { metadata = { name = "tick", namespace = os.getenv("NS") }, data = { t = "" } }
local n, done = 0, false
while not done and n < 400 do
  cm.data.t = ("%.2f"):format(uptime())
  cm = assert((n == 0 and c.create or c.update)(c, "configmaps", cm))
  n = n + 1
  os.execute("sleep 0.1")
  local f = io.open(os.getenv("STOP"))
  if f then f:close() done = true end
end
print("writes " .. n)
]]))
    -- the credential expires meanwhile; the next stream opened needs a refresh, which now sleeps 5 s
    assert.is_true(spin(function() return uptime() > expires + 1 end, 10))
    cluster.write(dir .. "/sleep", "5")
    local refresh_start = uptime()
    local inf2 = must(c:informer("secrets", { namespace = ns }))
    inf2:start()
    local synced = spin(function() return inf2:has_synced() end, 20)
    local refresh_end = uptime()
    spin(function() return false end, 1)
    cluster.write(stop, "")
    local out = writer:read("a")
    writer:close()
    c:stop_all{ clear = true }
    admin:delete("namespaces", ns)

    assert.is_true(synced)
    assert.matches("writes %d+", out)
    assert.are.equal(2, c:exec_runs())
    assert.is_true(refresh_end - refresh_start >= 4.5, "the plugin slept, and the new list waited for it")
    local during, worst = 0, 0
    for _, e in ipairs(seen) do
      if e.at >= refresh_start and e.at <= refresh_end then during = during + 1 end
      if e.delay > worst then worst = e.delay end
    end
    print(("slow refresh: %.1f s; %d events, %d during it; worst delay %.2f s"):format(
      refresh_end - refresh_start, #seen, during, worst))
    assert.is_true(during >= 20, ("only %d events arrived while the plugin ran"):format(during))
    assert.is_true(worst < 1, ("an event was delayed %.2f s"):format(worst))
  end)

  -- #novalgrind: under valgrind posix_spawnp cannot tell that the program is missing
  -- (glibc's child reports a failed exec through memory shared by CLONE_VM, which
  -- valgrind runs as a plain fork): it returns 0 and the child exits 127, so there
  -- is no "could not be started" and no hint to show. spec/valgrind/run.sh skips it.
  it("reports a plugin that is not installed, with its install hint #novalgrind", function()
    local kc = cluster.write_kubeconfig(dir, "kc", { cluster = cluster.cluster_data(), user = { exec =
      "\n      apiVersion: client.authentication.k8s.io/v1\n      command: kinformer-no-such-plugin\n"
      .. "      installHint: install it from your cloud's SDK\n" } })
    local c = assert(kinformer.client{ kubeconfig = kc })
    local _, err = read_ns(c)
    assert.are.equal("ExecPlugin", err.reason)
    assert.matches("kinformer%-no%-such%-plugin", err.message)
    assert.matches("install it from your cloud's SDK", err.message)
  end)
end)

describe("$KUBECONFIG", function()
  local dir
  before_each(function() dir = cluster.tmpdir() end)
  after_each(function() cluster.cleanup() end)

  local probe = [[
package.path = os.getenv("SPEC_LUA_PATH")
package.cpath = os.getenv("SPEC_LUA_CPATH")
local kinformer = require "kinformer"
local c, err = kinformer.client()
if not c then print("ERR " .. tostring(err)) return end
local ns, e = c:request("GET", "/api/v1/namespaces/default")
print("NS " .. c:namespace(), "CTX " .. tostring(c:info().context), ns and "OK" or ("FAIL " .. e.reason))
]]
  local function run(kubeconfig)
    return cluster.run_lua({ KUBECONFIG = kubeconfig, SPEC_LUA_PATH = package.path, SPEC_LUA_CPATH = package.cpath }, probe)
  end

  it("merges files: the first file to set a value wins", function()
    -- a: current-context, the cluster and a user "u" with a bad token.
    -- b: the context "merged" (namespace from-b), another current-context, and "u" with the good token.
    local a = cluster.write(dir .. "/a", cluster.kubeconfig_text{ current = "merged",
      clusters = { c = cluster.cluster_data() }, users = { u = { token = "bad-token-from-a" } }, contexts = {} })
    local b = cluster.write(dir .. "/b", cluster.kubeconfig_text{ current = "other",
      clusters = { c = { server = "https://127.0.0.1:1" } },
      users = { u = { token = cluster.token } },
      contexts = { merged = { cluster = "c", user = "u", namespace = "from-b" },
                   other = { cluster = "c", user = "u", namespace = "other-ns" } } })
    local out = run(a .. ":" .. b)
    assert.matches("NS from%-b\tCTX merged\tFAIL Unauthorized", out)
    -- the other order: b's current-context, b's user, but b's cluster (unreachable)
    out = run(b .. ":" .. a)
    assert.matches("NS other%-ns\tCTX other\tFAIL Transport", out)
  end)

  it("skips files that do not exist, as kubectl does", function()
    local out = run(dir .. "/missing:" .. cluster.kubeconfig)
    assert.matches("NS default\tCTX %S+\tOK", out)
  end)

  it("says so when none of its files exists", function()
    local out = run(dir .. "/missing1:" .. dir .. "/missing2")
    assert.matches("ERR .*none of them exists", out)
  end)
end)

describe("in-cluster configuration", function()
  local dir
  before_each(function() dir = cluster.tmpdir() end)
  after_each(function() cluster.cleanup() end)

  setup(function()
    os.execute(("%q --kubeconfig %q create serviceaccount kinformer-spec -n default >/dev/null 2>&1")
      :format(cluster.env.KINFORMER_KUBECTL, cluster.kubeconfig))
    -- its own role: the built-in "view" is aggregated, which needs a controller the test plane may not run
    os.execute(("%q --kubeconfig %q create clusterrole kinformer-spec-read --verb=get,list,watch "
      .. "--resource=configmaps >/dev/null 2>&1"):format(cluster.env.KINFORMER_KUBECTL, cluster.kubeconfig))
    os.execute(("%q --kubeconfig %q create clusterrolebinding kinformer-spec-read --clusterrole=kinformer-spec-read "
      .. "--serviceaccount=default:kinformer-spec >/dev/null 2>&1"):format(cluster.env.KINFORMER_KUBECTL, cluster.kubeconfig))
  end)

  local function sa_token()
    return (cluster.kubectl("create token kinformer-spec -n default"):gsub("%s+$", ""))
  end

  local probe = [[
package.path = os.getenv("SPEC_LUA_PATH")
package.cpath = os.getenv("SPEC_LUA_CPATH")
local kinformer = require "kinformer"
local dir = os.getenv("KINFORMER_SERVICE_ACCOUNT_DIR")
local c, err = kinformer.client{ in_cluster = true }
if not c then print("ERR " .. tostring(err)) return end
local function try()
  local ok, e = c:request("GET", "/api/v1/namespaces/" .. c:namespace() .. "/configmaps")
  return ok and "OK" or e.reason
end
print("NS " .. c:namespace(), "AUTH " .. c:info().auth, try())
-- rotation: the token file is replaced as kubelet does it
os.rename(dir .. "/token.bad", dir .. "/token")
print("BAD " .. try())
os.rename(dir .. "/token.next", dir .. "/token")
print("NEXT " .. try())
]]

  it("uses the service account token, CA and namespace, and follows token rotation", function()
    cluster.write(dir .. "/token", sa_token())
    cluster.write(dir .. "/token.bad", "garbage-token")
    cluster.write(dir .. "/token.next", sa_token())
    cluster.write(dir .. "/ca.crt", cluster.ca_pem)
    cluster.write(dir .. "/namespace", "kube-system\n")
    local out = cluster.run_lua({ KUBERNETES_SERVICE_HOST = "127.0.0.1", KUBERNETES_SERVICE_PORT = tostring(cluster.port),
      KINFORMER_SERVICE_ACCOUNT_DIR = dir, SPEC_LUA_PATH = package.path, SPEC_LUA_CPATH = package.cpath }, probe)
    assert.matches("NS kube%-system\tAUTH token%-file\tOK", out)
    assert.matches("BAD Unauthorized", out)
    assert.matches("NEXT OK", out)
  end)

  it("is the fallback when no kubeconfig exists", function()
    cluster.write(dir .. "/token", sa_token())
    cluster.write(dir .. "/ca.crt", cluster.ca_pem)
    local out = cluster.run_lua({ HOME = dir, KUBERNETES_SERVICE_HOST = "127.0.0.1",
      KUBERNETES_SERVICE_PORT = tostring(cluster.port), KINFORMER_SERVICE_ACCOUNT_DIR = dir,
      SPEC_LUA_PATH = package.path, SPEC_LUA_CPATH = package.cpath },
      probe:gsub("{ in_cluster = true }", "()"))
    assert.matches("NS default\tAUTH token%-file\tOK", out)
  end)

  it("says what is missing outside a cluster", function()
    local out = cluster.run_lua({ KINFORMER_SERVICE_ACCOUNT_DIR = dir, SPEC_LUA_PATH = package.path,
      SPEC_LUA_CPATH = package.cpath }, probe)
    assert.matches("ERR .*KUBERNETES_SERVICE_HOST", out)
  end)
end)
