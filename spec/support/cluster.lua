--- Test support: the running test control plane (spec/cluster/up.sh) and
-- helpers that build every kubeconfig form the specs need.
local M = {}

M.dir = os.getenv("KINFORMER_CLUSTER_DIR") or ".cluster"

-- How big the heavy specs are: "full" (default), "small" where each step
-- costs much more, as under valgrind (KINFORMER_SPEC_SCALE=small), or "large"
-- for a one-off measurement at the issue's scale (KINFORMER_SPEC_SCALE=large:
-- minutes, and a heavy load on the control plane).
local scale = os.getenv("KINFORMER_SPEC_SCALE")
M.scale = (scale == "small" or scale == "large") and scale or "full"

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end
M.read = read

local function write(path, s, mode)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
  if mode then os.execute(("chmod %s %q"):format(mode, path)) end
  return path
end
M.write = write

-- env: the variables up.sh wrote (server, certificate and key paths, kubectl).
M.env = {}
do
  local f = io.open(M.dir .. "/env")
  if not f then
    error("no test control plane in " .. M.dir .. ": run `make cluster` (or the specs through `make test`)")
  end
  for line in f:lines() do
    local k, v = line:match("^export ([%w_]+)=(.*)$")
    if k then M.env[k] = v:gsub("\\(.)", "%1") end
  end
  f:close()
end

M.server = M.env.KINFORMER_SERVER
M.port = tonumber(M.server:match(":(%d+)$"))
M.kubeconfig = M.env.KINFORMER_KUBECONFIG
M.limited_kubeconfig = M.env.KINFORMER_LIMITED_KUBECONFIG
M.token = read(M.env.KINFORMER_TOKEN_FILE):gsub("%s+$", "")

--- Base64 of a string (for *-data fields), through the openssl command.
function M.b64(s)
  local tmp = os.tmpname()
  write(tmp, s)
  local p = assert(io.popen(("base64 -w0 < %q"):format(tmp)))
  local out = p:read("a")
  p:close()
  os.remove(tmp)
  return out
end

M.ca_pem = read(M.env.KINFORMER_CA)
M.admin_cert_pem = read(M.env.KINFORMER_ADMIN_CERT)
M.admin_key_pem = read(M.env.KINFORMER_ADMIN_KEY)

--- A fresh temporary directory, removed by M.cleanup().
local dirs = {}
function M.tmpdir()
  local p = assert(io.popen("mktemp -d"))
  local d = p:read("l")
  p:close()
  dirs[#dirs + 1] = d
  return d
end

function M.cleanup()
  for _, d in ipairs(dirs) do os.execute(("rm -rf %q"):format(d)) end
  dirs = {}
end

--- Writes a kubeconfig with one context "test" from a cluster table and a
-- user table given as YAML lines (strings), into dir; returns its path.
-- cluster/user: { key = value } written as `key: "value"` (values quoted
-- unless they are booleans or nested YAML given as a string starting with \n).
local function yaml_fields(t, indent)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  local out = {}
  for _, k in ipairs(keys) do
    local v = t[k]
    if type(v) == "boolean" then
      out[#out + 1] = ("%s%s: %s"):format(indent, k, tostring(v))
    elseif type(v) == "string" and v:sub(1, 1) == "\n" then
      out[#out + 1] = ("%s%s:%s"):format(indent, k, v)
    else
      out[#out + 1] = ("%s%s: %q"):format(indent, k, tostring(v))
    end
  end
  return table.concat(out, "\n")
end

function M.kubeconfig_text(spec)
  local lines = { "apiVersion: v1", "kind: Config" }
  if spec.current ~= false then
    lines[#lines + 1] = "current-context: " .. (spec.current or "test")
  end
  lines[#lines + 1] = "clusters:"
  for name, c in pairs(spec.clusters or { test = spec.cluster }) do
    lines[#lines + 1] = "- name: " .. name
    lines[#lines + 1] = "  cluster:"
    lines[#lines + 1] = yaml_fields(c, "    ")
  end
  lines[#lines + 1] = "users:"
  for name, u in pairs(spec.users or { test = spec.user or {} }) do
    lines[#lines + 1] = "- name: " .. name
    if next(u) then
      lines[#lines + 1] = "  user:"
      lines[#lines + 1] = yaml_fields(u, "    ")
    else
      lines[#lines + 1] = "  user: {}"
    end
  end
  lines[#lines + 1] = "contexts:"
  for name, x in pairs(spec.contexts or { test = { cluster = "test", user = "test", namespace = spec.namespace } }) do
    lines[#lines + 1] = "- name: " .. name
    lines[#lines + 1] = "  context:"
    lines[#lines + 1] = yaml_fields(x, "    ")
  end
  return table.concat(lines, "\n") .. "\n"
end

function M.write_kubeconfig(dir, name, spec)
  return write(dir .. "/" .. name, M.kubeconfig_text(spec))
end

--- The cluster entry with the CA embedded.
function M.cluster_data(extra)
  local c = { server = M.server, ["certificate-authority-data"] = M.b64(M.ca_pem) }
  for k, v in pairs(extra or {}) do c[k] = v end
  return c
end

--- Runs kubectl as admin; returns its output, and raises on failure.
function M.kubectl(args)
  local cmd = ("%q --kubeconfig %q %s 2>&1"):format(M.env.KINFORMER_KUBECTL, M.kubeconfig, args)
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  local ok = p:close()
  if not ok then error("kubectl " .. args .. " failed: " .. out) end
  return out
end

--- Runs a Lua chunk in a new lua5.4 process with extra environment
-- variables (the only way to test $KUBECONFIG and in-cluster settings, which
-- the process reads from its environment). Returns the chunk's stdout and
-- whether it exited 0.
function M.run_lua(env, code)
  local dir = M.tmpdir()
  local script = write(dir .. "/chunk.lua", code)
  local parts = {}
  for k, v in pairs(env) do
    parts[#parts + 1] = ("%s=%q"):format(k, v)
  end
  local cmd = ("env -u KUBECONFIG -u KUBERNETES_SERVICE_HOST -u KUBERNETES_SERVICE_PORT %s lua5.4 %q 2>&1")
    :format(table.concat(parts, " "), script)
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  local ok = p:close()
  return out, ok
end

return M
