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

--- JSON as the client sends and reads it: lossless for Kubernetes objects.
-- decode: arrays get kinformer.array_mt (so [] stays []), integers are Lua
-- integers (int64, exact), null is kinformer.null (the same value as cjson.null).
M.json = { encode = M.core.json_encode, decode = M.core.json_decode }
M.null = require("cjson").null -- the binding decodes null to this same value
assert(M.null == M.core.null)
M.array_mt = M.core.array_mt

--- Marks a table as a JSON array (so an empty one encodes as []).
function M.array(t)
  return M.core.array(t)
end

local informer = require "kinformer.informer"
M.run, M.step, M.stop, M.fd, M.stats, M.on_error = informer.run, informer.step, informer.stop, informer.fd,
  informer.stats, informer.on_error

--- kinformer.queue{ base_delay =, max_delay =, qps =, burst = }: client-go's work queue (README, "Operators").
M.queue = require("kinformer.queue").new
--- kinformer.sleep(seconds): inside a reconcile it yields; elsewhere it waits.
M.sleep = require("kinformer.sched").sleep

--- kinformer.serve{ address = "127.0.0.1:8080" }: /metrics, /healthz, /readyz (README, "Metrics and probes").
M.serve = require("kinformer.metrics").serve

--- Opens a client from $KUBECONFIG or ~/.kube/config, else in-cluster.
-- opts: { kubeconfig = path, context = name, in_cluster = bool, timeout = seconds }.
-- Returns the client, or nil and an error that says what to fix.
function M.client(opts)
  return client.new(opts)
end

return M
