-- Security (issue 6, section 5): TLS is always verified unless the kubeconfig
-- says insecure-skip-tls-verify; no secret ever shows in an error, an on_error
-- report or the process's output; key data never touches the disk; an
-- informer that is Forbidden backs off instead of hammering the server.
local kinformer = require "kinformer"
local cluster = require "support.cluster"

local helpers = require "support.helpers"
local must, uptime = helpers.must, helpers.uptime

local function sh(cmd)
  local p = assert(io.popen("(" .. cmd .. ") 2>&1"))
  local out = p:read("a")
  local ok = p:close()
  assert(ok, cmd .. " failed: " .. out)
  return out
end

-- A distinctive secret: nothing else in any output can contain it by chance.
local function secret(kind)
  local hex = {}
  for i = 1, 24 do hex[i] = ("%x"):format(math.random(0, 15)) end
  return ("SECRET-%s-%s"):format(kind, table.concat(hex))
end

local errors_seen = {}
local function record_error(err, where) errors_seen[#errors_seen + 1] = { err = err, text = tostring(err), where = where } end
kinformer.on_error(record_error)

-- Certificates made for this run: another CA and a server certificate it signed
-- for 127.0.0.1 ("wrongca"), a certificate the cluster's own CA signed for another
-- name ("wronghost"), and a self-signed client certificate ("client").
local pki
local function make_pki()
  local dir = cluster.tmpdir()
  local ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
  sh(("cd %q && openssl req -x509 %s -keyout otherca.key -out otherca.crt -days 2 -subj /CN=other-ca"):format(dir, ec))
  local function leaf(nm, ca, ca_key, san)
    cluster.write(dir .. "/" .. nm .. ".ext", "subjectAltName=" .. san .. "\nextendedKeyUsage=serverAuth,clientAuth\n")
    sh(("cd %q && openssl req %s -keyout %s.key -out %s.csr -subj /CN=%s && openssl x509 -req -in %s.csr -CA %q "
      .. "-CAkey %q -set_serial %d -days 2 -extfile %s.ext -out %s.crt")
      :format(dir, ec, nm, nm, nm, nm, ca, ca_key, math.random(1000, 999999), nm, nm))
  end
  leaf("wrongca", dir .. "/otherca.crt", dir .. "/otherca.key", "IP:127.0.0.1,DNS:localhost")
  leaf("wronghost", cluster.env.KINFORMER_CA, cluster.env.KINFORMER_CA_KEY, "DNS:wrong.example")
  sh(("cd %q && openssl req -x509 %s -keyout client.key -out client.crt -days 2 -subj /CN=secret-user"):format(dir, ec))
  return { dir = dir, other_ca = cluster.read(dir .. "/otherca.crt"),
    client_cert = cluster.read(dir .. "/client.crt"), client_key = cluster.read(dir .. "/client.key") }
end

-- ---------------------------------------------------------------------------
-- A man in the middle on loopback: "pass" forwards the bytes to the API server
-- (so discovery works and TLS is the real server's); any other mode is the
-- name of a certificate it presents itself, answering every request with a
-- planted ConfigMapList (a 400 for watches, so an informer falls back to
-- lists) and logging the Authorization header it received. A change of mode
-- closes every open connection.
local mitm_py = [=[
import json, os, socket, ssl, sys, threading, time
mode_file, upstream, certdir, capture = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", 0))
ls.listen(64)
print(ls.getsockname()[1], os.getpid(), flush=True)
lock = threading.Lock()
live = set()

def mode():
    with open(mode_file) as f:
        return f.read().strip()

def log(line):
    with lock, open(capture, "a") as f:
        f.write(line + "\n")

def close_all():
    with lock:
        for s in list(live):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        live.clear()

def watcher():
    last = mode()
    while True:
        time.sleep(0.05)
        m = mode()
        if m != last:
            close_all()
            last = m

def pipe(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            b.sendall(d)
    except OSError:
        pass
    for s in (a, b):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

def fake(c, m):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(certdir, m + ".crt"), os.path.join(certdir, m + ".key"))
    ctx.set_alpn_protocols(["http/1.1"])
    try:
        s = ctx.wrap_socket(c, server_side=True)
    except (ssl.SSLError, OSError) as e:
        log("handshake refused: %s" % e)
        c.close()
        return
    with lock:
        live.add(s)
    try:
        f = s.makefile("rb")
        while True:
            line = f.readline()
            if not line:
                return
            headers = {}
            while True:
                h = f.readline()
                if h in (b"\r\n", b"\n", b""):
                    break
                k, _, v = h.decode("latin-1").partition(":")
                headers[k.strip().lower()] = v.strip()
            n = int(headers.get("content-length") or 0)
            if n:
                f.read(n)
            path = line.split()[1].decode()
            log("request %s authorization=%s" % (path, headers.get("authorization", "")))
            if "watch=" in path:
                code, body = 400, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                   "reason": "BadRequest", "code": 400, "message": "no watch here"}
            elif path.startswith("/version"):
                code, body = 200, {"major": "1", "minor": "0", "gitVersion": "v0.0.0-mitm"}
            else:
                code, body = 200, {"kind": "ConfigMapList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"},
                                   "items": [{"metadata": {"name": "mitm", "namespace": "default",
                                                           "resourceVersion": "1"},
                                              "data": {"planted": "by the man in the middle"}}]}
            data = json.dumps(body).encode()
            s.sendall(b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                      % (code, len(data)) + data)
    except OSError:
        pass
    finally:
        with lock:
            live.discard(s)
        s.close()

def handle(c):
    m = mode()
    if m != "pass":
        return fake(c, m)
    try:
        u = socket.create_connection(("127.0.0.1", upstream))
    except OSError:
        c.close()
        return
    with lock:
        live.add(c)
        live.add(u)
    threading.Thread(target=pipe, args=(u, c), daemon=True).start()
    pipe(c, u)

threading.Thread(target=watcher, daemon=True).start()
while True:
    conn, _ = ls.accept()
    threading.Thread(target=handle, args=(conn,), daemon=True).start()
]=]

describe("TLS", function()
  local dir, mitm, mitm_port, mitm_pid
  setup(function()
    pki = make_pki()
    dir = pki.dir
    cluster.write(dir .. "/mitm.py", mitm_py)
    cluster.write(dir .. "/mode", "pass\n")
    mitm = assert(io.popen(("exec python3 %q %q %d %q %q"):format(dir .. "/mitm.py", dir .. "/mode", cluster.port, dir,
      dir .. "/capture")))
    mitm_port, mitm_pid = mitm:read("l"):match("^(%d+) (%d+)$")
    assert(mitm_port, "the man in the middle did not start")
  end)
  teardown(function()
    os.execute("kill " .. mitm_pid)
    mitm:close()
    cluster.cleanup()
  end)
  before_each(function()
    errors_seen = {}
    cluster.write(dir .. "/mode", "pass\n")
    os.remove(dir .. "/capture")
  end)

  local function set_mode(m)
    cluster.write(dir .. "/mode", m .. "\n")
    os.execute("sleep 0.3") -- the proxy closes what is open
  end
  local function captured()
    local f = io.open(dir .. "/capture")
    if not f then return "" end
    local s = f:read("a")
    f:close()
    return s
  end

  local function client_through_mitm(cluster_fields)
    local c = { server = "https://127.0.0.1:" .. mitm_port }
    for k, v in pairs(cluster_fields) do c[k] = v end
    local kc = cluster.write_kubeconfig(dir, "kc-" .. math.random(1e6), { cluster = c, user = { token = cluster.token } })
    local cl = must(kinformer.client{ kubeconfig = kc, timeout = 5 })
    must(cl:resources()) -- discovery through the real server, as before an attack
    return cl
  end

  local function transport_error(err)
    assert.is_table(err)
    assert.are.equal("Transport", err.reason)
    assert.is_nil(tostring(err):find(cluster.token, 1, true))
  end

  for _, case in ipairs{
    { mode = "wrongca", what = "a certificate from another CA", pattern = "certificate" },
    { mode = "wronghost", what = "a certificate of the cluster's CA for another host name", pattern = "host name" },
  } do
    it(("refuses %s: the request fails, the informer reports through on_error and never syncs, "
      .. "the token never leaves"):format(case.what), function()
      local c = client_through_mitm{ ["certificate-authority-data"] = cluster.b64(cluster.ca_pem) }
      assert.are.equal("Namespace", must(c:request("GET", "/api/v1/namespaces/default")).kind) -- the real server
      set_mode(case.mode)
      local v, err = c:version()
      assert.is_nil(v)
      transport_error(err)
      assert.matches(case.pattern, err.message)
      local inf = must(c:informer("configmaps", { namespace = "default" }))
      local ok = inf:wait_for_sync(4)
      assert.is_nil(ok)
      assert.is_false(inf:has_synced())
      assert.are.equal(0, inf:count())
      assert.is_true(#errors_seen >= 1, "no on_error report")
      for _, e in ipairs(errors_seen) do
        assert.matches("configmaps in default", e.where)
        assert.is_nil(e.text:find(cluster.token, 1, true))
      end
      assert.is_nil(captured():find("request", 1, true), "a request reached the man in the middle:\n" .. captured())
      c:stop_all{ clear = true }
    end)
  end

  it("is skipped only with insecure-skip-tls-verify: true (and then the man in the middle gets the token: "
    .. "this spec would see a verification that is not done)", function()
    local c = client_through_mitm{ ["insecure-skip-tls-verify"] = true }
    set_mode("wrongca")
    assert.are.equal("v0.0.0-mitm", must(c:version()).gitVersion)
    local inf = must(c:informer("configmaps", { namespace = "default" }))
    must(inf:wait_for_sync(10))
    assert.are.same({ "default/mitm" }, inf:keys())
    assert.is_truthy(captured():find("authorization=Bearer " .. cluster.token, 1, true))
    c:stop_all{ clear = true }
  end)

  it("is not skipped by insecure-skip-tls-verify: false, nor without any CA (the system's CAs do not know the cluster)",
    function()
    for _, fields in ipairs{ { ["insecure-skip-tls-verify"] = false }, {} } do
      local kc = cluster.write_kubeconfig(dir, "kc-" .. math.random(1e6), { cluster = (function()
        local t = { server = cluster.server }
        for k, v in pairs(fields) do t[k] = v end
        return t
      end)(), user = { token = cluster.token } })
      local c = must(kinformer.client{ kubeconfig = kc, timeout = 5 })
      local v, err = c:version()
      assert.is_nil(v)
      transport_error(err)
      local inf, ierr = c:informer("configmaps", { namespace = "default" })
      assert.is_nil(inf)
      transport_error(ierr)
    end
  end)

  it("checks the name given by tls-server-name, for requests and for informers", function()
    local kc = cluster.write_kubeconfig(dir, "kc-name", { cluster = cluster.cluster_data{
      ["tls-server-name"] = "wrong.example" }, user = { token = cluster.token } })
    local c = must(kinformer.client{ kubeconfig = kc, timeout = 5 })
    local v, err = c:version()
    assert.is_nil(v)
    transport_error(err)
    local inf, ierr = c:informer("configmaps", { namespace = "default" })
    assert.is_nil(inf)
    transport_error(ierr)
  end)
end)

-- ---------------------------------------------------------------------------
-- The credential paths, driven through failures by one scenario that runs both
-- in this process (every error and report is kept and searched, field by field)
-- and in a child process (its stdout and stderr are searched; errors go to the
-- default on_error handler, which writes to stderr).

local scenario = [==[
local P, sink = ...
local kinformer = require "kinformer"
local function write(path, s)
  local f = assert(io.open(path .. ".new", "wb"))
  f:write(s)
  f:close()
  assert(os.rename(path .. ".new", path))
end
for _, case in ipairs(P.cases) do
  local c, err = kinformer.client{ kubeconfig = case.kubeconfig, timeout = 5 }
  if not c then
    sink(case.name, "client", err)
  else
    sink(case.name, "info", c:info())
    sink(case.name, "tostring", tostring(c))
    local ok, e = c:request("GET", "/api/v1/namespaces/default")
    sink(case.name, "request", ok and (case.ok and "ok" or "unexpected success") or e)
    local inf, ierr = c:informer("configmaps", { namespace = "default" })
    if inf then
      local synced, serr = inf:wait_for_sync(case.ok and 10 or 2)
      sink(case.name, "informer", synced and (case.ok and "ok" or "unexpected sync") or serr)
    else
      sink(case.name, "informer", ierr)
    end
    c:close()
  end
end
-- credentials that go bad while an informer runs: its watches end every second
for _, rot in ipairs(P.rotations) do
  local c = assert(kinformer.client{ kubeconfig = rot.kubeconfig, timeout = 5 })
  local inf = assert(c:informer("configmaps", { namespace = "default", watch_timeout = { 1, 1 } }))
  assert(inf:wait_for_sync(10))
  write(rot.file, rot.content)
  kinformer.run{ timeout = 4 }
  sink(rot.name, "stats", inf:stats())
  c:close()
end
]==]

describe("secrets", function()
  local dir, S, P, plugin, reset
  setup(function()
    pki = pki or make_pki()
    dir = cluster.tmpdir()
    S = {
      token = secret("token"), token_file = secret("tokenfile"), exec_token = secret("exec"),
      exec_fail = secret("execfail"), exec_json = secret("execjson"), exec_kind = secret("execkind"),
      rot_file = secret("rotfile"), rot_exec = secret("rotexec"), bad_key = secret("badkey"),
    }
    -- an exec plugin for each way a plugin goes wrong; it never writes a secret to stderr itself
    plugin = cluster.write(dir .. "/plugin.sh", [[#!/bin/sh
set -eu
tok=$(cat "$KP_DIR/token")
api=client.authentication.k8s.io/v1
exp=""
if [ -e "$KP_DIR/ttl" ]; then
  exp=", \"expirationTimestamp\": \"$(date -u -d "+$(cat "$KP_DIR/ttl") seconds" +%Y-%m-%dT%H:%M:%SZ)\""
fi
case $(cat "$KP_DIR/mode") in
ok) printf '{"apiVersion": "%s", "kind": "ExecCredential", "status": {"token": "%s"%s}}\n' "$api" "$tok" "$exp" ;;
fail) printf '{"apiVersion": "%s", "kind": "ExecCredential", "status": {"token": "%s"}}\n' "$api" "$tok"
  if [ -n "${KP_LOUD:-}" ]; then echo "plugin: failing on purpose" >&2; fi
  exit 3 ;;
badjson) printf '{"apiVersion": "%s", "kind": "ExecCredential", "status": {"token": "%s"' "$api" "$tok" ;;
kind) printf '{"apiVersion": "%s", "kind": "Secret", "status": {"token": "%s"}}\n' "$api" "$tok" ;;
esac
]], "0755")
    local function plugin_dir(nm, mode, token, ttl)
      local d = dir .. "/" .. nm
      os.execute(("mkdir -p %q"):format(d))
      cluster.write(d .. "/mode", mode)
      cluster.write(d .. "/token", token)
      if ttl then cluster.write(d .. "/ttl", tostring(ttl)) end
      return d
    end
    local function exec_user(d)
      return { exec = ("\n      apiVersion: client.authentication.k8s.io/v1\n      command: %s\n      env:\n"
        .. "      - name: KP_DIR\n        value: %q\n"):format(plugin, d) }
    end
    local function kc(nm, user, cl)
      return cluster.write_kubeconfig(dir, "kc-" .. nm, { cluster = cl or cluster.cluster_data(), user = user })
    end
    cluster.write(dir .. "/token-file", S.token_file .. "\n")
    local rot_exec_dir = plugin_dir("rot-exec", "ok", cluster.token, 1)
    -- the rotations start from good credentials in each test
    reset = function()
      cluster.write(dir .. "/rot-token", cluster.token .. "\n")
      cluster.write(rot_exec_dir .. "/token", cluster.token)
    end
    P = {
      cases = {
        { name = "token", expect = "Unauthorized", kubeconfig = kc("token", { token = S.token }) },
        { name = "token-file", expect = "Unauthorized", kubeconfig = kc("token-file", { tokenFile = dir .. "/token-file" }) },
        { name = "client-key-data", expect = "Unauthorized", kubeconfig = kc("key-data", {
          ["client-certificate-data"] = cluster.b64(pki.client_cert), ["client-key-data"] = cluster.b64(pki.client_key) }) },
        { name = "bad-client-key-data", expect = "*", kubeconfig = kc("bad-key", {
          ["client-certificate-data"] = cluster.b64(pki.client_cert), ["client-key-data"] = cluster.b64(S.bad_key) }) },
        { name = "exec-401", expect = "Unauthorized", kubeconfig = kc("exec-401", exec_user(plugin_dir("e401", "ok",
          S.exec_token))) },
        { name = "exec-fails", expect = "ExecPlugin", kubeconfig = kc("exec-fail", exec_user(plugin_dir("efail", "fail",
          S.exec_fail))) },
        { name = "exec-bad-json", expect = "ExecPlugin", kubeconfig = kc("exec-json", exec_user(plugin_dir("ejson",
          "badjson", S.exec_json))) },
        { name = "exec-wrong-kind", expect = "ExecPlugin", kubeconfig = kc("exec-kind", exec_user(plugin_dir("ekind",
          "kind", S.exec_kind))) },
        { name = "bad-ca", expect = "Transport", kubeconfig = kc("bad-ca", { token = S.token }, {
          server = cluster.server, ["certificate-authority-data"] = cluster.b64(pki.other_ca) }) },
        { name = "unreachable", expect = "Transport", kubeconfig = kc("unreachable", { token = S.token }, {
          server = "https://127.0.0.1:1", ["certificate-authority-data"] = cluster.b64(cluster.ca_pem) }) },
        -- and paths that work: what they hold must not show either
        { name = "exec-ok", ok = true, kubeconfig = kc("exec-ok", exec_user(plugin_dir("eok", "ok", cluster.token))) },
        { name = "admin-key-data", ok = true, kubeconfig = cluster.kubeconfig },
      },
      rotations = {
        { name = "token-file-rotated", kubeconfig = kc("rot-file", { tokenFile = dir .. "/rot-token" }),
          file = dir .. "/rot-token", content = S.rot_file .. "\n" },
        { name = "exec-rotated", kubeconfig = kc("rot-exec", exec_user(rot_exec_dir)),
          file = rot_exec_dir .. "/token", content = S.rot_exec },
      },
    }
  end)
  teardown(function() cluster.cleanup() end)

  -- What must never show: each secret, and its random part alone (a cut message
  -- can hold part of it); each line of every private key and its base64.
  local function needles()
    local out = {}
    for _, s in pairs(S) do
      out[#out + 1] = s
      out[#out + 1] = s:match("(%x+)$")
    end
    out[#out + 1] = cluster.token
    for _, key in ipairs{ pki.client_key, cluster.admin_key_pem } do
      for line in key:gmatch("[^\n]+") do
        if not line:find("^%-%-%-%-%-") and #line >= 16 then out[#out + 1] = line end
      end
      local b = cluster.b64(key)
      out[#out + 1] = b:sub(1, 48)
      out[#out + 1] = b:sub(100, 148)
    end
    out[#out + 1] = cluster.b64(S.bad_key)
    return out
  end

  -- The first needle found anywhere in v (strings, keys, fields, and tostring
  -- of a table with a __tostring), or nil.
  local function leak_in(v, list, seen)
    seen = seen or {}
    if type(v) == "string" then
      for _, n in ipairs(list) do
        if v:find(n, 1, true) then return n end
      end
    elseif type(v) == "table" and not seen[v] then
      seen[v] = true
      local mt = getmetatable(v)
      if mt and mt.__tostring then
        local found = leak_in(tostring(v), list, seen)
        if found then return found end
      end
      for k, x in pairs(v) do
        local found = leak_in(k, list, seen) or leak_in(x, list, seen)
        if found then return found end
      end
    end
    return nil
  end

  it("never appear in an error (its text or any field), an on_error report or client:info()", function()
    errors_seen = {}
    reset()
    local got = {}
    local function sink(case, what, v) got[#got + 1] = { case = case, what = what, v = v } end
    assert(load(scenario, "scenario"))(P, sink)
    local list = needles()
    for _, g in ipairs(got) do
      local found = leak_in(g.v, list)
      assert.is_nil(found, ("%s %s shows a secret (%s): %s"):format(g.case, g.what, tostring(found), tostring(g.v)))
    end
    for _, e in ipairs(errors_seen) do
      local found = leak_in(e.err, list) or leak_in(e.text, list) or leak_in(e.where, list)
      assert.is_nil(found, "an on_error report shows a secret: " .. e.text)
    end
    -- and each path failed the way it should (so the search above searched real failures)
    local by = {}
    for _, g in ipairs(got) do by[g.case .. " " .. g.what] = g.v end
    for _, case in ipairs(P.cases) do
      if case.ok then
        assert.are.equal("ok", by[case.name .. " request"], case.name)
        assert.are.equal("ok", by[case.name .. " informer"], case.name)
      else
        local e = by[case.name .. " request"] or by[case.name .. " client"]
        assert.is_table(e, case.name .. ": " .. tostring(e))
        if case.expect ~= "*" then assert.are.equal(case.expect, e.reason, case.name .. ": " .. tostring(e)) end
      end
    end
    local function reports(pattern)
      local n = 0
      for _, e in ipairs(errors_seen) do if e.text:find(pattern) then n = n + 1 end end
      return n
    end
    assert.is_true(reports("Unauthorized") >= 2, "the rotated credentials were not refused")
  end)

  it("never appear in a process's stdout or stderr, also from the exec plugins and the default on_error handler", function()
    reset()
    local params = cluster.write(cluster.tmpdir() .. "/params.lua", "return " .. (function()
      local function ser(v)
        if type(v) == "table" then
          local parts = {}
          for k, x in pairs(v) do parts[#parts + 1] = ("[%s] = %s"):format(ser(k), ser(x)) end
          return "{" .. table.concat(parts, ", ") .. "}"
        elseif type(v) == "string" then return ("%q"):format(v) end
        return tostring(v)
      end
      return ser(P)
    end)())
    local out = cluster.run_lua({ LUA_PATH = package.path, LUA_CPATH = package.cpath, PARAMS = params, KP_LOUD = "1",
      SCENARIO = cluster.write(cluster.tmpdir() .. "/scenario.lua", scenario) }, [[
local function dump(v, seen)
  seen = seen or {}
  if type(v) ~= "table" then return tostring(v) end
  if seen[v] then return "..." end
  seen[v] = true
  local parts = { tostring(v) }
  for k, x in pairs(v) do parts[#parts + 1] = tostring(k) .. "=" .. dump(x, seen) end
  return table.concat(parts, " ")
end
local P = dofile(os.getenv("PARAMS"))
local f = assert(loadfile(os.getenv("SCENARIO")))
f(P, function(case, what, v) print(case, what, dump(v)) end)
print("SCENARIO DONE")
]])
    assert.matches("SCENARIO DONE", out)
    assert.matches("Unauthorized", out)
    assert.matches("ExecPlugin", out)
    assert.matches("plugin: failing on purpose", out) -- the plugin's own stderr passes through
    assert.matches("kinformer: %a+ configmaps in default: [^\n]*Unauthorized", out) -- on_error's default reports
    local found = leak_in(out, needles())
    assert.is_nil(found, "the output shows a secret (" .. tostring(found) .. "):\n" .. out)
  end)

  it("in a token, a token file, an exec plugin's token or an impersonated user are never sent with a line break "
    .. "(no header can be smuggled in)", function()
    local lp = assert(io.popen([[exec python3 -c "
import os, socket, sys
s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(8); s.settimeout(20)
print(s.getsockname()[1], os.getpid(), flush=True)
while True:
    try:
        c, _ = s.accept()
    except OSError:
        break
    c.settimeout(2)
    data = b''
    try:
        while b'\r\n\r\n' not in data:
            d = c.recv(65536)
            if not d:
                break
            data += d
    except OSError:
        pass
    sys.stdout.write(repr(data) + '\n'); sys.stdout.flush()
    c.sendall(b'HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n')
    c.close()
"]]))
    local port, pid = lp:read("l"):match("^(%d+) (%d+)$")
    local d = cluster.tmpdir()
    local tok = secret("crlf")
    -- written by hand: YAML's own escapes (\r\n) in double quotes
    local function kubeconfig(nm, user_yaml)
      return cluster.write(d .. "/" .. nm, ("apiVersion: v1\nkind: Config\ncurrent-context: t\nclusters:\n- name: c\n"
        .. "  cluster:\n    server: http://127.0.0.1:%s\nusers:\n- name: u\n  user:\n%s\ncontexts:\n- name: t\n"
        .. "  context: {cluster: c, user: u}\n"):format(port, user_yaml))
    end
    cluster.write(d .. "/tokfile", tok .. "\r\nX-Smuggled: from-file\n")
    os.execute(("mkdir -p %q"):format(d .. "/plugin"))
    cluster.write(d .. "/plugin/mode", "ok")
    cluster.write(d .. "/plugin/token", tok .. "\\r\\nX-Smuggled: from-exec") -- JSON escapes in the plugin's output
    local kcs = {
      kubeconfig("inline", ('    token: "%s\\r\\nX-Smuggled: inline"'):format(tok)),
      kubeconfig("file", "    tokenFile: " .. d .. "/tokfile"),
      kubeconfig("exec", ("    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: %s\n"
        .. "      env:\n      - name: KP_DIR\n        value: %q"):format(plugin, d .. "/plugin")),
      kubeconfig("as", ('    token: "%s"\n    as: "someone\\r\\nX-Smuggled: as"'):format(tok)),
    }
    local errs = {}
    for i, kc in ipairs(kcs) do
      local c, err = kinformer.client{ kubeconfig = kc, timeout = 3 }
      if c then
        local _, rerr = c:request("GET", "/version")
        err = rerr
        c:close()
      end
      errs[i] = err
    end
    os.execute("kill " .. pid)
    local seen = lp:read("a")
    lp:close()
    assert.is_nil(seen:find("X-Smuggled", 1, true), "a header was smuggled in:\n" .. seen)
    for _, e in ipairs(errs) do
      assert.is_table(e)
      assert.is_nil(leak_in(e, { tok, tok:match("(%x+)$") }), tostring(e))
    end
  end)
end)

-- ---------------------------------------------------------------------------

describe("key data", function()
  local dir
  setup(function() dir = cluster.tmpdir() end)
  teardown(function() cluster.cleanup() end)

  -- Every file a process opens (strace), with its flags.
  local function traced_run(env, code)
    local script = cluster.write(dir .. "/chunk.lua", code)
    local trace = dir .. "/trace"
    local parts = {}
    for k, v in pairs(env) do parts[#parts + 1] = ("%s=%q"):format(k, v) end
    local cmd = ("env -u KUBECONFIG -u KUBERNETES_SERVICE_HOST %s strace -f -qq -o %q -e trace=open,openat,openat2,creat,"
      .. "rename,renameat,renameat2,link,linkat,symlink,symlinkat,mknod,mknodat,mkdir,mkdirat,unlink,unlinkat "
      .. "lua5.4 %q 2>&1"):format(table.concat(parts, " "), trace, script)
    local p = assert(io.popen(cmd))
    local out = p:read("a")
    p:close()
    return out, cluster.read(trace)
  end

  it("never touches the disk: the process opens no file to write and creates none, "
    .. "and no new file in /tmp or $TMPDIR holds the key", function()
    local has_strace = os.execute("command -v strace >/dev/null 2>&1")
    assert(has_strace, "strace is needed (Debian package strace)")
    -- the admin's certificate and key, as data in the kubeconfig
    local kc = cluster.write(dir .. "/kc", cluster.kubeconfig_text{ cluster = cluster.cluster_data(), user = {
      ["client-certificate-data"] = cluster.b64(cluster.admin_cert_pem),
      ["client-key-data"] = cluster.b64(cluster.admin_key_pem) } })
    local marker = cluster.write(dir .. "/marker", "")
    os.execute("sleep 1") -- whole seconds on some file systems
    local out, trace = traced_run({ LUA_PATH = package.path, LUA_CPATH = package.cpath, KC = kc }, [[
local kinformer = require "kinformer"
local c = assert(kinformer.client{ kubeconfig = os.getenv("KC") })
assert(c:request("GET", "/api/v1/namespaces/default"))
local inf = assert(c:informer("configmaps", { namespace = "default" }))
assert(inf:wait_for_sync(10))
kinformer.run{ timeout = 1 }
c:close()
print("RUN DONE")
]])
    assert.matches("RUN DONE", out)
    local writes, creates, outside, opened = {}, {}, {}, {}
    local allowed = { "^/etc/", "^/usr/", "^/lib", "^/proc/", "^/sys/", "^/dev/",
      "^" .. dir:gsub("%p", "%%%0") .. "/chunk%.lua$", "^" .. dir:gsub("%p", "%%%0") .. "/kc$" }
    for p in package.path:gmatch("[^;]+") do
      local d = p:match("^(/.-/)%?")
      if d then allowed[#allowed + 1] = "^" .. d:gsub("%p", "%%%0") end
    end
    for p in package.cpath:gmatch("[^;]+") do
      local d = p:match("^(/.-/)%?")
      if d then allowed[#allowed + 1] = "^" .. d:gsub("%p", "%%%0") end
    end
    for line in trace:gmatch("[^\n]+") do
      local call, args = line:match("^%d+%s+(%w+)%((.*)$")
      if call then
        local path = args:match('"(.-)"')
        if call:match("^open") or call == "creat" then
          if path then opened[path] = true end
          local flags = args:match('"[^"]*",%s*([%w_|]+)') or ""
          if call == "creat" or flags:find("O_WRONLY") or flags:find("O_RDWR") or flags:find("O_CREAT")
            or flags:find("O_TRUNC") then
            if path ~= "/dev/null" and path ~= "/dev/tty" then writes[#writes + 1] = line end
          end
          local ok = false
          for _, a in ipairs(allowed) do if path and path:find(a) then ok = true end end
          -- (a failed open reads nothing: libldap looks for ~/.ldaprc, for one)
          if path and path:sub(1, 1) == "/" and not ok and not line:find("= %-1 ") then outside[#outside + 1] = line end
        else
          creates[#creates + 1] = line
        end
      end
    end
    -- the trace is read right: it saw the kubeconfig and the module opened
    assert.is_true(opened[kc], "the trace does not show the kubeconfig opened")
    assert.is_truthy(trace:find("core.so", 1, true))
    assert.are.same({}, writes)
    assert.are.same({}, creates)
    assert.are.same({}, outside)
    -- whatever else on this machine wrote to /tmp meanwhile, none of it holds the key
    local key_lines = {}
    for line in cluster.admin_key_pem:gmatch("[^\n]+") do
      if not line:find("^%-%-%-%-%-") and #line >= 16 then key_lines[#key_lines + 1] = line end
    end
    local tmpdirs = { "/tmp" }
    if os.getenv("TMPDIR") and os.getenv("TMPDIR") ~= "" then tmpdirs[#tmpdirs + 1] = os.getenv("TMPDIR") end
    for _, t in ipairs(tmpdirs) do
      local p = assert(io.popen(("find %q -xdev -type f -newer %q -size -5M 2>/dev/null"):format(t, marker)))
      for file in p:lines() do
        if file:sub(1, #dir + 1) ~= dir .. "/" then
          local f = io.open(file, "rb")
          local s = f and f:read("a") or ""
          if f then f:close() end
          for _, l in ipairs(key_lines) do
            assert.is_nil(s:find(l, 1, true), "the key is in " .. file)
          end
        end
      end
      p:close()
    end
  end)
end)

-- ---------------------------------------------------------------------------

describe("a Forbidden informer", function()
  it("reports Forbidden through on_error, never syncs and backs off (0.8 s doubling): "
    .. "at most 7 requests in 10 s", function()
    errors_seen = {}
    local clients, infs, wheres = {}, {}, {}
    for i, spec in ipairs{ { "pods", "kinformer-limited" }, { "configmaps", "default" } } do
      local c = must(kinformer.client{ kubeconfig = cluster.limited_kubeconfig })
      must(c:resources()) -- discovery is allowed to every user
      clients[i] = c
      infs[i] = must(c:informer(spec[1], { namespace = spec[2] }))
      wheres[i] = spec[1] .. " in " .. spec[2]
    end
    local before = {}
    for i, c in ipairs(clients) do before[i] = c:transport_stats() end
    local t0 = uptime()
    kinformer.run{ timeout = 10 }
    local took = uptime() - t0
    for i, c in ipairs(clients) do
      local st = c:transport_stats()
      local requests = st.requests - before[i].requests
      assert.is_false(infs[i]:has_synced())
      assert.are.equal(0, infs[i]:count())
      assert.is_true(requests >= 3, ("%s: only %d requests in %.1f s"):format(wheres[i], requests, took))
      assert.is_true(requests <= 7, ("%s: %d requests in %.1f s"):format(wheres[i], requests, took))
      assert.are.equal(0, st.retries - before[i].retries) -- a 403 is not retried by the transport
      local reports = 0
      for _, e in ipairs(errors_seen) do
        if e.where == wheres[i] then
          reports = reports + 1
          assert.matches("Forbidden", e.text)
          assert.matches("forbidden", e.text)
        end
      end
      -- each refusal reported once (the last answer may still be on its way)
      assert.is_true(reports == requests or reports == requests - 1, ("%d reports, %d requests"):format(reports, requests))
      if os.getenv("KINFORMER_SPEC_TIMES") then
        io.stderr:write(("security: %s: %d requests in %.1f s\n"):format(wheres[i], requests, took))
      end
      c:close()
    end
  end)
end)
