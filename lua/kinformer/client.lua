--- A connection to one cluster as one user: kinformer.client{...}.
local core = require "kinformer.core"
local errors = require "kinformer.errors"
local opts_check = require("kinformer.opts").check
local sched = require "kinformer.sched"
local metrics = require "kinformer.metrics"

local Client = {}
Client.__index = Client
Client.__name = "kinformer.client"

-- JSON in and out goes through the binding's lossless codec, not cjson:
-- empty arrays stay arrays, int64 values stay exact (see README, "JSON").
local json_encode, json_decode = core.json_encode, core.json_decode

local option_types = {
  kubeconfig = "string", context = "string", in_cluster = "boolean", timeout = "number",
  qps = "number", burst = "number", max_retries = "number", http1 = "boolean",
  ping_interval = "number", ping_timeout = "number",
}

-- Defaults: a rate limit that protects the server from a runaway loop yet
-- lets a script create a few thousand objects in a minute.
local defaults = { timeout = 30, qps = 50, burst = 100, max_retries = 4 }

local function check_options(opts)
  opts = opts_check("kinformer.client", opts, option_types, 3)
  if opts.timeout and opts.timeout <= 0 then
    error("kinformer.client: timeout must be a positive number of seconds", 3)
  end
  if opts.ping_interval and opts.ping_interval < 0 then
    error("kinformer.client: ping_interval must be a number of seconds >= 0 (0: no probing)", 3)
  end
  if opts.ping_timeout and opts.ping_timeout <= 0 then
    error("kinformer.client: ping_timeout must be a positive number of seconds", 3)
  end
  if opts.in_cluster and (opts.kubeconfig or opts.context) then
    error("kinformer.client: in_cluster excludes kubeconfig and context", 3)
  end
  if opts.burst and (opts.burst < 1 or math.type(opts.burst) ~= "integer") then
    error("kinformer.client: burst must be a positive integer", 3)
  end
  if opts.max_retries and (opts.max_retries < 0 or math.type(opts.max_retries) ~= "integer") then
    error("kinformer.client: max_retries must be an integer >= 0", 3)
  end
  local o = {}
  for k, v in pairs(defaults) do o[k] = v end
  for k, v in pairs(opts) do o[k] = v end
  return o
end

local M = {}

--- Opens a client. Returns the client, or nil and an error.
function M.new(opts)
  opts = check_options(opts)
  local h, err = core.client(opts)
  if not h then return nil, errors.from_core(err) end
  local info = h:info()
  return setmetatable({ _h = h, _info = info }, Client)
end

local function is_json(ctype)
  return ctype == nil or ctype == "" or ctype:find("json", 1, true) ~= nil
end

local idempotent = { GET = true, HEAD = true, PUT = true, DELETE = true, OPTIONS = true }

--- The low-level request every verb stands on: sends `body` (a table is
-- encoded as JSON) and returns the decoded answer and the HTTP status, or
-- nil and an error for transport failures and non-2xx answers.
-- opts: { content_type =, accept =, timeout = seconds }.
local request_options = { content_type = "string", accept = "string", timeout = "seconds" }

function Client:request(method, path, body, opts)
  if type(method) ~= "string" or type(path) ~= "string" or path:sub(1, 1) ~= "/" then
    error("kinformer: client:request(method, path [, body [, opts]]): path must start with '/'", 2)
  end
  if body ~= nil and type(body) ~= "table" and type(body) ~= "string" then
    error("kinformer: client:request: the body must be a table or a string, got " .. type(body), 2)
  end
  return self:_request(method, path, body, opts_check("kinformer: request", opts, request_options))
end

-- The request behind every verb; `where` names the call in errors.
function Client:_request(method, path, body, opts, where)
  where = where or (method .. " " .. path)
  if type(body) == "table" then
    local text, jerr = json_encode(body)
    if not text then error(("kinformer: %s: cannot encode the body: %s"):format(where, jerr), 3) end
    body = text
  end
  local ctype_out = opts.content_type
  local req = {
    method = method, path = path, body = body, content_type = ctype_out, accept = opts.accept,
    timeout = opts.timeout,
    -- server-side apply is a declaration, safe to send twice
    idempotent = idempotent[method] or ctype_out == "application/apply-patch+yaml",
  }
  local status, text, ctype
  if sched.current() then -- in a reconcile: wait for the answer while others run
    status, text, ctype = sched.request(self._h, req)
  else
    status, text, ctype = self._h:request(req)
  end
  metrics.request(self._info.server:match("^%a+://([^/]+)") or self._info.server, method, status or "<error>")
  if not status then return nil, errors.from_core(text, where) end
  local decoded
  if is_json(ctype) and text ~= "" then decoded = json_decode(text) end
  if status < 200 or status > 299 then
    return nil, errors.from_http(status, decoded, text, where)
  end
  if decoded == nil and is_json(ctype) and text ~= "" then
    return nil, errors.new("BadResponse", "the server's answer is not valid JSON", where, status)
  end
  return decoded == nil and text or decoded, status
end

--- The server's version: { major, minor, gitVersion, ... }.
function Client:version()
  return self:request("GET", "/version")
end

--- The default namespace of the client's context ("default" when unset).
function Client:namespace()
  return self._info.namespace
end

--- Where the client points: server, context, cluster, user, origin, auth.
function Client:info()
  local t = {}
  for k, v in pairs(self._info) do t[k] = v end
  return t
end

--- Releases the connection and the credentials held in memory.
function Client:close()
  self._h:close()
end

Client.__close = Client.close

function Client:__tostring()
  return ("kinformer.client (%s, context %s)"):format(self._info.server, self._info.context or "in-cluster")
end

--- How many times the exec credential plugin ran for this client.
function Client:exec_runs()
  return self._h:stats().exec_runs
end

--- Transport counters: { requests, connections, retries, http2, exec_runs, pings, dead_connections }.
function Client:transport_stats()
  return self._h:stats()
end

require("kinformer.rest").install(Client)
require("kinformer.informer").install(Client)
require("kinformer.controller").install(Client)
require("kinformer.leader").install(Client)
require("kinformer.events").install(Client)

M.Client = Client
return M
