--- kinformer: Kubernetes clients and informers for Lua, with a C core.
--
--   local kinformer = require "kinformer"
--   local c = assert(kinformer.client())
--   print(assert(c:version()).gitVersion)
local client = require "kinformer.client"
local errors = require "kinformer.errors"

local M = {
  _VERSION = "0.1.0",
  core = require "kinformer.core",
  errors = errors,
}

--- Opens a client from $KUBECONFIG or ~/.kube/config, else in-cluster.
-- opts: { kubeconfig = path, context = name, in_cluster = bool, timeout = seconds }.
-- Returns the client, or nil and an error that says what to fix.
function M.client(opts)
  return client.new(opts)
end

return M
