-- The test control plane itself is a real cluster (spec/cluster/up.sh): the
-- default controllers, kube-scheduler and kwok's fake Nodes run a Deployment's
-- Pods, and the service range holds more than a /24's 250 Services.
local kinformer = require "kinformer"
local cluster = require "support.cluster"

local helpers = require "support.helpers"
local must = helpers.must

local run_id = tostring(os.time()) .. tostring(math.random(1000, 9999))

local function controller_of(obj)
  for _, ref in ipairs(obj.metadata.ownerReferences or {}) do
    if ref.controller then return ref end
  end
end

describe("the test control plane", function()
  local c, ns
  setup(function()
    c = must(kinformer.client{ kubeconfig = cluster.kubeconfig, qps = 0 })
    ns = "cluster-" .. run_id
    must(c:create("namespaces", { metadata = { name = ns } }))
  end)
  teardown(function() c:delete("namespaces", ns) end)

  it("has the fake nodes it was asked for, Ready and schedulable", function()
    local want = tonumber(cluster.env.KINFORMER_NODES)
    local nodes = must(c:list("nodes", { label_selector = "type=kwok" })).items
    assert.are.equal(want, #nodes)
    for _, n in ipairs(nodes) do
      assert.is_nil(n.spec.taints, n.metadata.name)
      local ready
      for _, cond in ipairs(n.status.conditions) do
        if cond.type == "Ready" then ready = cond.status end
      end
      assert.are.equal("True", ready, n.metadata.name)
    end
  end)

  it("runs a Deployment: its ReplicaSet, two Pods Running on fake nodes, availableReplicas = 2", function()
    if tonumber(cluster.env.KINFORMER_NODES) == 0 then
      pending("no fake nodes (KINFORMER_NODES=0): Pods stay Pending")
      return
    end
    local deps <close> = must(c:informer("deployments.apps", { namespace = ns }))
    local rss <close> = must(c:informer("replicasets.apps", { namespace = ns }))
    local pods <close> = must(c:informer("pods", { namespace = ns }))
    for _, inf in ipairs{ deps, rss, pods } do must(inf:wait_for_sync(30)) end

    local t0 = helpers.uptime()
    local dep = must(c:create("deployments.apps", {
      metadata = { name = "web", namespace = ns },
      spec = { replicas = 2, selector = { matchLabels = { app = "web" } },
        template = { metadata = { labels = { app = "web" } },
          spec = { containers = { { name = "web", image = "web:1" } } } } },
    }))
    local function available()
      local d = deps:get("web")
      return d and d.status and d.status.availableReplicas == 2 and d.status.observedGeneration == d.metadata.generation
    end
    assert(helpers.spin(available, 60), "the Deployment did not report 2 available replicas within 60 s")
    -- each cache converges on its own; the Pods' Running may land a moment after the Deployment's status
    local function running()
      local n = 0
      for _, p in ipairs(pods:list()) do
        if p.status.phase == "Running" and not p.metadata.deletionTimestamp then n = n + 1 end
      end
      return n == 2
    end
    assert(helpers.spin(running, 30), "the two Pods were not Running")
    print(("\ncluster_spec: Deployment available with 2 Running Pods in %.1f s"):format(helpers.uptime() - t0))

    local rs = rss:list()
    assert.are.equal(1, #rs)
    assert.are.equal(dep.metadata.uid, controller_of(rs[1]).uid)
    assert.are.equal(2, rs[1].status.readyReplicas)
    for _, p in ipairs(pods:list()) do
      assert.are.equal(rs[1].metadata.uid, controller_of(p).uid)
      assert.are.equal("Running", p.status.phase)
      assert.matches("^kwok%-node%-%d+$", p.spec.nodeName)
      assert.matches("^10%.244%.%d+%.%d+$", p.status.podIP)
    end

    -- scaled down, the Pod goes (kwok finishes the deletion a kubelet would)
    must(c:patch("deployments", "web", { spec = { replicas = 1 } }, { namespace = ns, subresource = "scale" }))
    assert(helpers.spin(function()
      local d = deps:get("web")
      return pods:count() == 1 and d.status.replicas == 1 and d.status.availableReplicas == 1
    end, 60), "the Deployment did not scale down to one Pod")
  end)

  it("gives 300 Services each its own cluster IP from the /16", function()
    local t0 = helpers.uptime()
    local seen = {}
    for i = 1, 300 do
      local svc = must(c:create("services", {
        metadata = { name = ("svc-%03d"):format(i), namespace = ns },
        spec = { selector = { app = "none" }, ports = { { port = 80 } } },
      }))
      local ip = svc.spec.clusterIP
      assert.matches("^10%.96%.%d+%.%d+$", ip)
      assert.is_nil(seen[ip], ip)
      seen[ip] = true
    end
    print(("\ncluster_spec: 300 Services created in %.1f s"):format(helpers.uptime() - t0))
    local all = must(c:list("services", { namespace = ns })).items
    assert.are.equal(300, #all)
  end)
end)
