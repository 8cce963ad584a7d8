-- Running in a cluster, the way a Pod runs the operator: examples/deploy/ passes a server-side dry run,
-- and two operator processes with the in-cluster configuration (a service account directory holding a
-- real token from the TokenRequest API for that ServiceAccount, its CA and namespace) do a full example
-- run with only the Role's rights (no Forbidden), one of them leading.
local kinformer = require "kinformer"
local cluster = require "support.cluster"
local helpers = require "support.helpers"
local must, spin = helpers.must, helpers.spin

local run_id = tostring(os.time() % 100000) .. tostring(math.random(100, 999))

local read = helpers.read

describe("examples/deploy", function()
  local c
  setup(function()
    c = must(kinformer.client{ kubeconfig = cluster.kubeconfig })
    cluster.kubectl("apply -f examples/website-crd.yaml")
    cluster.kubectl("wait --for condition=established --timeout=30s crd/websites.example.com")
  end)
  teardown(function() cluster.cleanup() end)

  it("applies on the server (dry run), and its ServiceAccount's rights suffice for two replicas", function()
    -- the namespace first: a dry run of objects in a namespace that does not exist yet fails
    cluster.kubectl("apply -f examples/deploy/00-namespace.yaml")
    local out = cluster.kubectl("apply --dry-run=server -f examples/deploy/")
    -- created, or unchanged when an earlier run left them
    assert.matches("deployment.apps/website%-operator %a+ %(server dry run%)", out)
    assert.matches("clusterrole.rbac.authorization.k8s.io/website%-operator %a+ %(server dry run%)", out)
    assert.not_matches("[Ee]rror", out)
    cluster.kubectl("apply -f examples/deploy/10-rbac.yaml")
    -- what the kubelet would mount: a bound token from the TokenRequest API, the CA, the namespace
    local dir = cluster.tmpdir()
    local token = cluster.kubectl("-n website-system create token website-operator --duration 1h"):gsub("%s+$", "")
    cluster.write(dir .. "/token", token)
    cluster.write(dir .. "/ca.crt", cluster.ca_pem)
    cluster.write(dir .. "/namespace", "website-system")
    local procs = {}
    for i = 1, 2 do
      local out_path, pidf = ("%s/out%d"):format(dir, i), ("%s/pid%d"):format(dir, i)
      os.execute(("sh -c 'echo $$ >%q; exec env -i PATH=\"$PATH\" HOME=%q KUBERNETES_SERVICE_HOST=127.0.0.1"
        .. " KUBERNETES_SERVICE_PORT=%d KINFORMER_SERVICE_ACCOUNT_DIR=%q LUA_PATH=%q LUA_CPATH=%q"
        .. " lua5.4 examples/website_operator.lua \"\" --leader-elect website-system --serve 127.0.0.1:0 >%q 2>&1' &")
        :format(pidf, dir, cluster.port, dir, package.path, package.cpath, out_path))
      procs[i] = { out = out_path, pidf = pidf }
    end
    finally(function()
      for _, p in ipairs(procs) do
        local pid = read(p.pidf):match("%d+")
        if pid then os.execute("kill " .. pid .. " 2>/dev/null") end
      end
    end)
    local ns = "deploy-" .. run_id
    must(c:create("namespaces", { metadata = { name = ns } }))
    must(c:create("websites.example.com", { apiVersion = "example.com/v1", kind = "Website",
      metadata = { name = "shop", namespace = ns }, spec = { image = "nginx:1.27", replicas = 1 } }))
    local ok = spin(function()
      local site = c:get("websites.example.com", "shop", { namespace = ns })
      return site and site.status and site.status.observedGeneration == 1
        and c:get("deployments.apps", "shop", { namespace = ns }) and c:get("services", "shop", { namespace = ns })
    end, 60)
    assert(ok, "not converged:\n" .. read(procs[1].out) .. "\n" .. read(procs[2].out))
    -- the Synced event, the cleanup through the finalizer, and the Lease
    assert(spin(function()
      local evs = c:list("events.events.k8s.io", { namespace = ns })
      return evs and #evs.items > 0
    end, 20), "no event")
    must(c:delete("websites.example.com", "shop", { namespace = ns }))
    assert(spin(function()
      local _, err = c:get("websites.example.com", "shop", { namespace = ns })
      return err and err.reason == "NotFound"
    end, 30), "the finalizer was not removed")
    local lease = must(c:get("leases.coordination.k8s.io", "website-operator", { namespace = "website-system" }))
    local holder = lease.spec.holderIdentity
    assert.is_truthy(holder and holder ~= "")
    local all = read(procs[1].out) .. read(procs[2].out)
    assert.not_matches("[Ff]orbidden", all)
    -- both replicas answer their probes (the standby's caches are synced too); one is the leader
    local leaders = 0
    for _, p in ipairs(procs) do
      local port = assert(read(p.out):match("serving on port (%d+)"), read(p.out))
      local text
      spin(function() -- /readyz is refreshed once a second: the standby may have synced a moment ago
        local h = io.popen(("curl -s -m 5 -w ' %%{http_code}' http://127.0.0.1:%s/readyz; echo;"
          .. " curl -s -m 5 http://127.0.0.1:%s/metrics"):format(port, port))
        text = h:read("a")
        h:close()
        return text:match("^ok%s+200\n") ~= nil
      end, 10)
      assert(text:match("^ok%s+200\n"), text:sub(1, 200) .. "\n" .. read(p.out))
      local status = text:match('leader_election_master_status{name="website%-operator"} (%d)')
      assert(status, text)
      leaders = leaders + tonumber(status)
    end
    assert.are.equal(1, leaders)
    assert.matches("cleaned up", all)
    c:delete("namespaces", ns)
  end)
end)
