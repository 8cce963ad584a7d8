-- The first Lua API against the real test control plane: every way a
-- kubeconfig can name a server and a user, and what goes wrong when it is bad.
local kinformer = require "kinformer"
local cluster = require "support.cluster"

local function must(c, err)
  assert(c, tostring(err))
  return c
end

-- A request that needs an authorized user (/version is public).
local function can_read_default_ns(c)
  return c:request("GET", "/api/v1/namespaces/default")
end

local secrets = {}
local function no_secret_in(msg)
  for _, s in ipairs(secrets) do
    assert.is_nil(msg:find(s, 1, true), "a secret appears in: " .. msg)
  end
end

describe("kinformer.client", function()
  local dir
  before_each(function() dir = cluster.tmpdir() end)
  after_each(function() cluster.cleanup() end)

  setup(function()
    secrets = { cluster.token, cluster.admin_key_pem:match("\n(%S+)\n"), cluster.b64(cluster.admin_key_pem):sub(1, 40) }
  end)

  it("talks TLS to the control plane with the admin kubeconfig (certificates as data)", function()
    local c = must(kinformer.client{ kubeconfig = cluster.kubeconfig, timeout = 10 })
    local v = must(c:version())
    assert.are.equal("1", v.major)
    assert.are.equal("36", v.minor)
    assert.matches("^v1%.36%.%d+$", v.gitVersion)
    assert.are.equal("default", c:namespace())
    local ns = must(can_read_default_ns(c))
    assert.are.equal("Namespace", ns.kind)
    assert.are.equal("client-certificate", c:info().auth)
    c:close()
  end)

  it("reports the context's namespace and the server", function()
    local c = must(kinformer.client{ kubeconfig = cluster.limited_kubeconfig })
    assert.are.equal("kinformer-limited", c:namespace())
    assert.are.equal(cluster.server, c:info().server)
    assert.matches("kinformer.client", tostring(c))
  end)

  it("authenticates with a token", function()
    local kc = cluster.write_kubeconfig(dir, "kc", { cluster = cluster.cluster_data(), user = { token = cluster.token } })
    local c = must(kinformer.client{ kubeconfig = kc })
    assert.are.equal("token", c:info().auth)
    assert.are.equal("Namespace", must(can_read_default_ns(c)).kind)
  end)

  it("fails with Unauthorized and no token in the message when the token is wrong", function()
    local bad = "not-the-token-0123456789"
    secrets[#secrets + 1] = bad
    local kc = cluster.write_kubeconfig(dir, "kc", { cluster = cluster.cluster_data(), user = { token = bad } })
    local c = must(kinformer.client{ kubeconfig = kc })
    local ok, err = can_read_default_ns(c)
    assert.is_nil(ok)
    assert.are.equal(401, err.code)
    assert.are.equal("Unauthorized", err.reason)
    no_secret_in(tostring(err))
  end)

  it("reads tokenFile relative to the kubeconfig and again when the file changes", function()
    cluster.write(dir .. "/token", "wrong-token-value\n")
    local kc = cluster.write_kubeconfig(dir, "kc", { cluster = cluster.cluster_data(), user = { tokenFile = "token" } })
    local c = must(kinformer.client{ kubeconfig = kc })
    assert.are.equal("token-file", c:info().auth)
    local ok, err = can_read_default_ns(c)
    assert.is_nil(ok)
    assert.are.equal("Unauthorized", err.reason)
    -- rotate: a new file (as kubelet swaps the projected token)
    cluster.write(dir .. "/token.new", cluster.token .. "\n")
    assert(os.rename(dir .. "/token.new", dir .. "/token"))
    assert.are.equal("Namespace", must(can_read_default_ns(c)).kind)
  end)

  it("uses client certificate and key files and a CA file", function()
    local kc = cluster.write_kubeconfig(dir, "kc", {
      cluster = { server = cluster.server, ["certificate-authority"] = cluster.env.KINFORMER_CA },
      user = { ["client-certificate"] = cluster.env.KINFORMER_ADMIN_CERT, ["client-key"] = cluster.env.KINFORMER_ADMIN_KEY },
    })
    local c = must(kinformer.client{ kubeconfig = kc })
    assert.are.equal("Namespace", must(can_read_default_ns(c)).kind)
  end)

  it("switches contexts and keeps each context's namespace", function()
    local kc = cluster.write_kubeconfig(dir, "kc", {
      current = "admin",
      clusters = { local_ = cluster.cluster_data() },
      users = {
        admin = { ["client-certificate-data"] = cluster.b64(cluster.admin_cert_pem),
                  ["client-key-data"] = cluster.b64(cluster.admin_key_pem) },
        limited = { ["client-certificate"] = cluster.env.KINFORMER_LIMITED_CERT,
                    ["client-key"] = cluster.env.KINFORMER_LIMITED_KEY },
      },
      contexts = {
        admin = { cluster = "local_", user = "admin" },
        limited = { cluster = "local_", user = "limited", namespace = "kinformer-limited" },
      },
    })
    local a = must(kinformer.client{ kubeconfig = kc })
    assert.are.equal("default", a:namespace())
    assert.are.equal("admin", a:info().context)
    local l = must(kinformer.client{ kubeconfig = kc, context = "limited" })
    assert.are.equal("kinformer-limited", l:namespace())
    assert.are.equal("limited", l:info().user)
    local _, err = can_read_default_ns(l)
    assert.are.equal("Forbidden", err.reason)
  end)

  it("gives the limited user only its configmaps", function()
    local c = must(kinformer.client{ kubeconfig = cluster.limited_kubeconfig })
    local list = must(c:request("GET", "/api/v1/namespaces/kinformer-limited/configmaps"))
    assert.are.equal("ConfigMapList", list.kind)
    for _, path in ipairs{ "/api/v1/namespaces/default/configmaps", "/api/v1/namespaces/kinformer-limited/pods",
                           "/api/v1/namespaces/kinformer-limited/secrets" } do
      local ok, err = c:request("GET", path)
      assert.is_nil(ok)
      assert.are.equal(403, err.code)
      assert.are.equal("Forbidden", err.reason)
      assert.matches("forbidden", err.message)
      assert.matches("GET " .. path:gsub("%p", "%%%0"), tostring(err))
    end
  end)

  it("impersonates with as and as-groups", function()
    local kc = cluster.write_kubeconfig(dir, "kc", { cluster = cluster.cluster_data(),
      user = { token = cluster.token, as = "kinformer-limited" } })
    local c = must(kinformer.client{ kubeconfig = kc })
    local _, err = can_read_default_ns(c)
    assert.are.equal("Forbidden", err.reason)
    assert.matches("kinformer%-limited", err.message)
    assert(c:request("GET", "/api/v1/namespaces/kinformer-limited/configmaps"))
    kc = cluster.write_kubeconfig(dir, "kc2", { cluster = cluster.cluster_data(),
      user = { token = cluster.token, as = "someone", ["as-groups"] = "\n    - system:masters" } })
    c = must(kinformer.client{ kubeconfig = kc })
    assert.are.equal("Namespace", must(can_read_default_ns(c)).kind)
  end)

  it("verifies the server as tls-server-name", function()
    local kc = cluster.write_kubeconfig(dir, "kc", { cluster = cluster.cluster_data{ ["tls-server-name"] = "localhost" },
      user = { token = cluster.token } })
    local c = must(kinformer.client{ kubeconfig = kc })
    assert.are.equal("Namespace", must(can_read_default_ns(c)).kind)
    kc = cluster.write_kubeconfig(dir, "kc2", { cluster = cluster.cluster_data{ ["tls-server-name"] = "elsewhere.example" },
      user = { token = cluster.token } })
    c = must(kinformer.client{ kubeconfig = kc })
    local ok, err = c:version()
    assert.is_nil(ok)
    assert.are.equal("Transport", err.reason)
  end)

  it("skips TLS verification only when insecure-skip-tls-verify is set", function()
    local kc = cluster.write_kubeconfig(dir, "kc", { cluster = { server = cluster.server }, user = { token = cluster.token } })
    local c = must(kinformer.client{ kubeconfig = kc })
    local ok, err = c:version()
    assert.is_nil(ok)
    assert.are.equal("Transport", err.reason)
    assert.matches("certificate", err.message)
    kc = cluster.write_kubeconfig(dir, "kc2", { cluster = { server = cluster.server, ["insecure-skip-tls-verify"] = true },
      user = { token = cluster.token } })
    c = must(kinformer.client{ kubeconfig = kc })
    assert.are.equal("Namespace", must(can_read_default_ns(c)).kind)
  end)

  it("fails TLS with the wrong CA, never falling back to insecure", function()
    local kc = cluster.write_kubeconfig(dir, "kc", {
      cluster = { server = cluster.server, ["certificate-authority-data"] = cluster.b64(cluster.admin_cert_pem) },
      user = { token = cluster.token } })
    local c = must(kinformer.client{ kubeconfig = kc })
    local ok, err = c:version()
    assert.is_nil(ok)
    assert.are.equal("Transport", err.reason)
    assert.matches("certificate%-authority", tostring(err))
    no_secret_in(tostring(err))
  end)

  it("sends requests through proxy-url", function()
    local kc = cluster.write_kubeconfig(dir, "kc", { cluster = cluster.cluster_data{ ["proxy-url"] = "http://127.0.0.1:9" },
      user = { token = cluster.token } })
    local c = must(kinformer.client{ kubeconfig = kc, timeout = 5 })
    local ok, err = c:version()
    assert.is_nil(ok)
    assert.are.equal("Transport", err.reason)
    assert.matches("127%.0%.0%.1 port 9", err.message)
  end)
end)

describe("kinformer.client errors", function()
  local dir
  before_each(function() dir = cluster.tmpdir() end)
  after_each(function() cluster.cleanup() end)

  local function fails(opts, pattern)
    local c, err = kinformer.client(opts)
    assert.is_nil(c)
    assert.are.equal("Config", err.reason)
    assert.matches(pattern, tostring(err))
    assert.is_nil(tostring(err):find(cluster.token, 1, true))
    return err
  end

  it("names a missing kubeconfig file", function()
    fails({ kubeconfig = dir .. "/absent" }, "absent: cannot read: No such file")
  end)

  it("gives the line of a YAML syntax error", function()
    local kc = cluster.write(dir .. "/kc", "apiVersion: v1\nclusters:\n- name: x\n  cluster: [unclosed\n")
    fails({ kubeconfig = kc }, "kc:%d+:%d+: YAML syntax error")
  end)

  it("lists the known contexts for an unknown one", function()
    local kc = cluster.write_kubeconfig(dir, "kc", { cluster = cluster.cluster_data(), user = { token = cluster.token } })
    fails({ kubeconfig = kc, context = "nope" }, 'context "nope" not found %(contexts: test%)')
  end)

  it("names a missing certificate file and its field", function()
    local kc = cluster.write_kubeconfig(dir, "kc", { cluster = cluster.cluster_data(),
      user = { ["client-certificate"] = "missing.crt", ["client-key"] = "missing.key" } })
    fails({ kubeconfig = kc }, 'kc:%d+: user "test": client%-certificate: cannot read .*missing%.crt')
  end)

  it("names malformed base64 and its line, without the data", function()
    local kc = cluster.write_kubeconfig(dir, "kc", { cluster = cluster.cluster_data(),
      user = { ["client-certificate-data"] = cluster.b64(cluster.admin_cert_pem), ["client-key-data"] = "@@not*base64@@" } })
    local err = fails({ kubeconfig = kc }, 'kc:%d+: user "test": client%-key%-data is not valid base64')
    assert.is_nil(tostring(err):find("@@not", 1, true))
  end)

  it("rejects username and password with a clear error", function()
    local kc = cluster.write_kubeconfig(dir, "kc", { cluster = cluster.cluster_data(),
      user = { username = "admin", password = "hunter2-secret" } })
    local err = fails({ kubeconfig = kc }, "username/password")
    assert.is_nil(tostring(err):find("hunter2", 1, true))
  end)

  it("points auth-provider users to exec plugins", function()
    local kc = cluster.write_kubeconfig(dir, "kc", { cluster = cluster.cluster_data(),
      user = { ["auth-provider"] = "\n      name: gcp\n      config:\n        access-token: secret-access" } })
    local err = fails({ kubeconfig = kc }, 'auth%-provider "gcp".*exec credential plugin')
    assert.is_nil(tostring(err):find("secret-access", 1, true))
  end)

  it("answers within the timeout when the server does not", function()
    -- a TCP listener that never speaks TLS: the connection opens, the handshake stalls
    local p = assert(io.popen([[python3 -c "
import os, socket, time
s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(8)
print(s.getsockname()[1], os.getpid(), flush=True); time.sleep(20)" &]]))
    local port, pid = p:read("l"):match("(%d+) (%d+)")
    local kc = cluster.write_kubeconfig(dir, "kc", { cluster = { server = "https://127.0.0.1:" .. port,
      ["certificate-authority-data"] = cluster.b64(cluster.ca_pem) }, user = { token = cluster.token } })
    local c = must(kinformer.client{ kubeconfig = kc, timeout = 1 })
    local t0 = os.time()
    local ok, err = c:version()
    local took = os.time() - t0
    os.execute("kill " .. pid)
    p:close()
    assert.is_nil(ok)
    assert.are.equal("Transport", err.reason)
    assert.matches("[Tt]imeout", err.message)
    assert.is_true(took <= 3, "the 1 s timeout took " .. took .. " s")
    no_secret_in(tostring(err))
  end)

  it("says when nothing answers at all", function()
    local kc = cluster.write_kubeconfig(dir, "kc", { cluster = { server = "https://127.0.0.1:1",
      ["certificate-authority-data"] = cluster.b64(cluster.ca_pem) }, user = { token = cluster.token } })
    local c = must(kinformer.client{ kubeconfig = kc, timeout = 5 })
    local ok, err = c:version()
    assert.is_nil(ok)
    assert.are.equal("Transport", err.reason)
    assert.matches("GET https://127%.0%.0%.1:1/version", tostring(err))
    assert.matches("API server running", tostring(err))
  end)

  it("raises on misuse", function()
    assert.has_error(function() kinformer.client("path") end)
    assert.has_error(function() kinformer.client{ kubeconfg = "typo" } end,
      "kinformer.client: unknown option 'kubeconfg' (did you mean 'kubeconfig'?)")
    assert.has_error(function() kinformer.client{ timeout = -1 } end)
    assert.has_error(function() kinformer.client{ in_cluster = true, context = "x" } end)
  end)
end)
