-- A Website (examples/website-crd.yaml: spec.image, spec.replicas) gets a Deployment and a Service that it
-- owns, repaired when edited or deleted by hand; its status reports observedGeneration and the Deployment's
-- availableReplicas; a finalizer takes its entry out of the ConfigMap "website-registry" before it goes.
-- Run: kubectl apply -f examples/website-crd.yaml; lua5.4 examples/website_operator.lua [NAMESPACE]
--   [--leader-elect LEASE_NAMESPACE]  run as one of several replicas (a Lease "website-operator" there)
--   [--serve ADDRESS]                  /metrics, /healthz and /readyz on ADDRESS (":8080")
local kinformer = require "kinformer"
local c = assert(kinformer.client())
local namespace, lease_ns, serve
for i = 1, #arg do
  if arg[i] == "--leader-elect" then lease_ns = arg[i + 1]
  elseif arg[i] == "--serve" then serve = arg[i + 1]
  elseif arg[i - 1] ~= "--leader-elect" and arg[i - 1] ~= "--serve" and arg[i] ~= "" then namespace = arg[i] end
end
if serve then print("serving on port " .. assert(kinformer.serve{ address = serve }):port()) end
local REGISTRY = "website-registry" -- a record outside the cluster's garbage collection: the cleanup's job

local function registry(ctx, site, value) -- value nil: take the site out
  local _, err = ctx.client:patch("configmaps", REGISTRY, { data = { [site.metadata.name] = value or kinformer.null } },
    { namespace = site.metadata.namespace })
  if err and err.reason == "NotFound" and value then
    _, err = ctx.client:create("configmaps", { metadata = { name = REGISTRY, namespace = site.metadata.namespace },
      data = { [site.metadata.name] = value } })
  end
  if err and err.reason ~= "NotFound" then return err end
end

assert(c:controller{
  name = "website-operator",
  resource = "websites.example.com",
  namespace = namespace,
  leader_election = lease_ns and { namespace = lease_ns, name = "website-operator" } or nil,
  owns = { "deployments.apps", "services" },
  finalizer = "example.com/cleanup",
  concurrency = 4,
  reconcile = function(site, ctx)
    local name = site.metadata.name
    local labels = { app = name, ["app.kubernetes.io/managed-by"] = "website-operator" }
    local _, err = ctx:apply{ apiVersion = "apps/v1", kind = "Deployment", metadata = { name = name, labels = labels },
      spec = { replicas = site.spec.replicas or 1, selector = { matchLabels = { app = name } },
        template = { metadata = { labels = labels }, spec = { containers = {
          { name = "web", image = site.spec.image, ports = { { containerPort = 80 } } } } } } } }
    if err then return nil, err end
    _, err = ctx:apply{ apiVersion = "v1", kind = "Service", metadata = { name = name, labels = labels },
      spec = { selector = { app = name }, ports = { { port = 80, targetPort = 80 } } } }
    if err then return nil, err end
    err = registry(ctx, site, site.spec.image)
    if err then return nil, err end
    local dep = ctx:get("deployments.apps", name) -- from the cache: its status changes bring us back here
    local available = dep and dep.status and dep.status.availableReplicas or 0
    local ok, wrote = ctx:set_status{ observedGeneration = site.metadata.generation, availableReplicas = available }
    if not ok then return nil, wrote end
    if wrote then ctx:event("Normal", "Synced", "%d of %d replicas available", available, site.spec.replicas or 1) end
  end,
  cleanup = function(site, ctx)
    local err = registry(ctx, site, nil)
    if err then return nil, err end
    print(("website %s/%s: cleaned up"):format(site.metadata.namespace, site.metadata.name))
  end,
})
print("website-operator: watching websites.example.com" .. (namespace and (" in " .. namespace) or ""))
kinformer.run()
