-- The examples in examples/ run as a user runs them, against the control plane.
local cluster = require "support.cluster"

local function chunk(script, args)
  local quoted = {}
  for i, a in ipairs(args or {}) do quoted[i] = ("%q"):format(a) end
  return ("arg = { [0] = %q, %s }\ndofile(%q)"):format(script, table.concat(quoted, ", "), script)
end

local function run(script, args)
  return cluster.run_lua({ KUBECONFIG = cluster.kubeconfig, LUA_PATH = package.path, LUA_CPATH = package.cpath },
    chunk(script, args))
end

-- Starts an example in the background; returns the paths of its output and of its exit status (once it ended).
local function spawn(script, args)
  local dir = cluster.tmpdir()
  local file = cluster.write(dir .. "/chunk.lua", chunk(script, args))
  local out, rc = dir .. "/out", dir .. "/rc"
  os.execute(("(env -u KUBERNETES_SERVICE_HOST KUBECONFIG=%q LUA_PATH=%q LUA_CPATH=%q lua5.4 %q >%q 2>&1;"
    .. " echo $? >%q) &"):format(cluster.kubeconfig, package.path, package.cpath, file, out, rc))
  return out, rc
end

local function contents(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

-- Waits until the file at path matches pattern; its contents, or nil after timeout seconds.
local function wait_for(path, pattern, timeout)
  for _ = 1, timeout * 5 do
    local s = contents(path)
    if s:find(pattern) then return s end
    os.execute("sleep 0.2")
  end
  return nil
end

local run_id = tostring(os.time() % 100000) .. tostring(math.random(100, 999))

-- Starts an example that runs until it is stopped (an operator); returns the path of its output and a
-- function that stops it with SIGTERM, as Ctrl-C or a Pod's stop would.
local function start(script, args)
  local dir = cluster.tmpdir()
  local file = cluster.write(dir .. "/chunk.lua", chunk(script, args))
  local out, pidf = dir .. "/out", dir .. "/pid"
  os.execute(("sh -c 'echo $$ >%q; exec env -u KUBERNETES_SERVICE_HOST KUBECONFIG=%q LUA_PATH=%q LUA_CPATH=%q"
    .. " lua5.4 %q >%q 2>&1' &"):format(pidf, cluster.kubeconfig, package.path, package.cpath, file, out))
  return out, function()
    local pid = contents(pidf):match("%d+")
    if pid then os.execute("kill " .. pid .. " 2>/dev/null") end
  end
end

-- Polls kubectl until check(output) is true; the last output and whether it came true within timeout s.
local function kubectl_until(args, check, timeout)
  local out
  for _ = 1, (timeout or 30) * 4 do
    local ok, o = pcall(cluster.kubectl, args)
    out = o
    if ok and check(o) then return o, true end
    os.execute("sleep 0.25")
  end
  return out, false
end

describe("examples", function()
  after_each(function() cluster.cleanup() end)

  it("version.lua prints the server, context and namespaces", function()
    local out, ok = run("examples/version.lua")
    assert(ok, out)
    assert.matches("server%s+https://127%.0%.0%.1:%d+ %(Kubernetes v1%.36%.%d+%)", out)
    assert.matches("namespaces .*kube%-system", out)
  end)

  it("resources.lua lists every preferred resource with a count", function()
    local out, ok = run("examples/resources.lua")
    assert(ok, out)
    assert.matches("\nnamespaces%s+v1%s+false%s+%d+", out)
    assert.matches("\ndeployments%.apps%s+apps/v1%s+true%s+%d+", out)
  end)

  it("watch_namespaces.lua prints ADDED, MODIFIED and DELETED of a namespace, then stops after DELETED", function()
    local ns = "ex-watch-" .. run_id
    local out_path, rc_path = spawn("examples/watch_namespaces.lua", { "--until-deleted", ns, "--timeout", "60" })
    local ok, err = pcall(function()
      -- the namespaces that exist come first, as ADDED
      assert(wait_for(out_path, "name: kube%-system", 20), "no first output: " .. contents(out_path))
      cluster.kubectl("create namespace " .. ns)
      os.execute("sleep 1")
      cluster.kubectl("delete namespace " .. ns .. " --wait=false")
      assert(wait_for(rc_path, "%d", 60), "the watch did not stop: " .. contents(out_path))
    end)
    if not ok then pcall(cluster.kubectl, "delete namespace " .. ns .. " --wait=false --ignore-not-found") end
    assert(ok, err)
    local out = contents(out_path)
    assert.equals("0", contents(rc_path):match("%d+"), out)
    local pat = "(%u+)%s+kind: Namespace  name: " .. ns:gsub("%-", "%%-") .. "  created: (%d+)  resourceVersion: (%d+)\n"
    local seen = {}
    for type, created, rv in out:gmatch(pat) do
      seen[#seen + 1] = type
      -- the conversion of creationTimestamp: within a few minutes of this machine's clock
      assert(math.abs(tonumber(created) - os.time()) < 300, out)
      assert(tonumber(rv) > 0)
    end
    assert.equals("ADDED", seen[1], out)
    assert.equals("MODIFIED", seen[2], out)
    assert.equals("DELETED", seen[#seen], out)
    assert.matches("DELETED [^\n]*name: " .. ns:gsub("%-", "%%-") .. "[^\n]*\n$", out) -- it stopped there
  end)

  it("watch_namespaces.lua --timeout: exit 0 alone, 1 when --until-deleted still waits", function()
    local out, ok = run("examples/watch_namespaces.lua", { "--timeout", "1" })
    assert(ok, out)
    assert.matches("ADDED%s+kind: Namespace  name: kube%-system  created: %d+  resourceVersion: %d+\n", out)
    out, ok = run("examples/watch_namespaces.lua", { "--until-deleted", "ex-never-" .. run_id, "--timeout", "1" })
    assert.falsy(ok)
    assert.matches("no DELETED event for ex%-never%-%d+ within 1 s", out)
  end)

  it("namespace_aaa.lua creates and deletes a namespace; --clean deletes a leftover and waits until it is gone",
    function()
      local ns = "ex-aaa-" .. run_id
      local out, ok = run("examples/namespace_aaa.lua", { ns })
      assert(ok, out)
      assert.matches("creating namespace " .. ns:gsub("%-", "%%-"), out)
      assert.matches("deleting namespace " .. ns:gsub("%-", "%%-"), out)
      out, ok = run("examples/namespace_aaa.lua", { "--clean", ns }) -- still terminating, or gone already
      assert(ok, out)
      assert.has_error(function() cluster.kubectl("get namespace " .. ns) end)

      cluster.kubectl("create namespace " .. ns)
      out, ok = run("examples/namespace_aaa.lua", { "--clean", ns })
      assert(ok, out)
      assert.matches(ns:gsub("%-", "%%-") .. " is left from an earlier run", out)
      assert.has_error(function() cluster.kubectl("get namespace " .. ns) end)
    end)

  it("informer_index.lua follows a label selector and an index through an update and a delete", function()
    local out, ok = run("examples/informer_index.lua", { "--timeout", "20" })
    assert(ok, out)
    local ns = assert(out:match("created namespace (kinformer%-index%-%w+)"), out)
    assert.matches("tier=web: web%-1 web%-2%s+tier=db: db%-1%s+%(3 cached%)", out)
    assert.matches("update web%-2: tier web %-> db", out)
    assert.matches("tier=web: web%-1%s+tier=db: db%-1 web%-2%s+%(3 cached%)", out)
    assert.matches("delete web%-1\n", out)
    assert.matches("tier=web:%s+tier=db: db%-1 web%-2%s+%(2 cached%)", out)
    assert.matches("keys: " .. ns:gsub("%-", "%%-") .. "/db%-1 " .. ns:gsub("%-", "%%-") .. "/web%-2\n", out)
    assert.matches("deleted namespace " .. ns:gsub("%-", "%%-"), out)
    assert.not_matches("other", out) -- outside the selector
  end)

  it("watch_everything.lua starts an informer for every listable resource and prints the counts", function()
    local out, ok = run("examples/watch_everything.lua", { "--timeout", "2" })
    assert(ok, out)
    local n = tonumber(out:match("(%d+) informers synced: %d+ objects, %d+ bytes of JSON"))
    assert(n and n > 40, out)
    assert.matches("\nnamespaces%s+(%d+)%s+%d+%s+%d+%s+%d+\n", out)
    assert(tonumber(out:match("\nnamespaces%s+(%d+)")) >= 4, out)
    assert.matches("\nclusterroles%.rbac%.authorization%.k8s%.io%s+%d+", out)
    assert.not_matches("\nbindings%s", out) -- create only: not watched
  end)

  it("two_clusters.lua frees everything of cluster A before it watches cluster B", function()
    local cm = "ex-two-" .. run_id
    cluster.kubectl("create configmap " .. cm .. " -n default")
    cluster.kubectl("create configmap " .. cm .. " -n kinformer-limited")
    local out, ok = run("examples/two_clusters.lua",
      { cluster.kubeconfig, cluster.limited_kubeconfig, "--timeout", "20" })
    cluster.kubectl("delete configmap " .. cm .. " -n default")
    cluster.kubectl("delete configmap " .. cm .. " -n kinformer-limited")
    assert(ok, out)
    local p = cm:gsub("%-", "%%-")
    assert.matches("cluster A: https://[^\n]*namespace default\n  %d+ configmaps: [^\n]*default/" .. p, out)
    assert.matches("stats with A%s+informers 1, objects [1-9]", out)
    assert.matches("stats after A:stop_all%s+informers 0, objects 0, bytes 0, queued 0", out)
    assert.matches("cluster B: [^\n]*namespace kinformer%-limited\n  %d+ configmaps: [^\n]*kinformer%-limited/" .. p,
      out)
    assert.matches("stats after B:close%s+informers 0, objects 0, bytes 0, queued 0", out)
  end)

  it("replicator.lua copies labelled ConfigMaps into labelled namespaces and keeps them right", function()
    local src, t1, t2, t3 = "ex-rsrc-" .. run_id, "ex-rt1-" .. run_id, "ex-rt2-" .. run_id, "ex-rt3-" .. run_id
    local function ns_args(...) return table.concat({ ... }, " ") end
    for _, ns in ipairs{ src, t1, t2 } do cluster.kubectl("create namespace " .. ns) end
    cluster.kubectl(("label namespace %s replicate=true"):format(t1))
    cluster.kubectl(("-n %s create configmap app --from-literal=k=v1"):format(src))
    cluster.kubectl(("-n %s label configmap app replicate=true"):format(src))
    cluster.kubectl(("-n %s create configmap private --from-literal=k=secret"):format(src))
    -- a stale copy from an earlier run whose source is gone
    cluster.kubectl(("-n %s create configmap gone --from-literal=k=old"):format(t1))
    cluster.kubectl(("-n %s label configmap gone replicated-from=%s"):format(t1, src))
    local out_path, stop = start("examples/replicator.lua", { src })
    local ok, err = pcall(function()
      local function copies(ns) return ("-n %s get configmaps -l replicated-from=%s -o jsonpath={.items[*].metadata.name}=" ..
        "{.items[*].data.k}"):format(ns, src) end
      local o, done = kubectl_until(copies(t1), function(x) return x == "app=v1" end)
      assert(done, "t1 copies: " .. tostring(o) .. "\n" .. contents(out_path))
      o = cluster.kubectl(copies(t2))
      assert.equals("=", o) -- not labelled: nothing
      -- kept identical: a change of the source, and a hand edit of the copy
      cluster.kubectl(("-n %s patch configmap app --type merge -p '{\"data\":{\"k\":\"v2\"}}'"):format(src))
      o, done = kubectl_until(copies(t1), function(x) return x == "app=v2" end)
      assert(done, "after the source changed: " .. tostring(o))
      cluster.kubectl(("-n %s patch configmap app --type merge -p '{\"data\":{\"k\":\"by-hand\"}}'"):format(t1))
      o, done = kubectl_until(copies(t1), function(x) return x == "app=v2" end)
      assert(done, "after a hand edit: " .. tostring(o))
      -- a namespace that appears later, and one that gets the label
      cluster.kubectl("create namespace " .. t3)
      cluster.kubectl(("label namespace %s replicate=true"):format(t3))
      cluster.kubectl(("label namespace %s replicate=true"):format(t2))
      for _, ns in ipairs{ t2, t3 } do
        o, done = kubectl_until(copies(ns), function(x) return x == "app=v2" end)
        assert(done, ns .. ": " .. tostring(o))
      end
      -- a namespace that loses the label loses the copy; removed with the source
      cluster.kubectl(("label namespace %s replicate-"):format(t2))
      o, done = kubectl_until(copies(t2), function(x) return x == "=" end)
      assert(done, "t2 after unlabel: " .. tostring(o))
      cluster.kubectl(("-n %s delete configmap app"):format(src))
      for _, ns in ipairs{ t1, t3 } do
        o, done = kubectl_until(copies(ns), function(x) return x == "=" end)
        assert(done, ns .. " after the source went: " .. tostring(o))
      end
    end)
    stop()
    pcall(cluster.kubectl, "delete namespace --wait=false --ignore-not-found " .. ns_args(src, t1, t2, t3))
    assert(ok, tostring(err) .. "\n" .. contents(out_path))
    assert.not_matches("private", contents(out_path))
  end)

  it("website_operator.lua gives a Website its Deployment, Service, status and finalizer, and repairs them",
    function()
      cluster.kubectl("apply -f examples/website-crd.yaml")
      cluster.kubectl("wait --for condition=established --timeout=30s crd/websites.example.com")
      local ns = "ex-web-" .. run_id
      cluster.kubectl("create namespace " .. ns)
      local out_path, stop = start("examples/website_operator.lua", { ns })
      local dir = cluster.tmpdir()
      local site = cluster.write(dir .. "/site.yaml", ([[
apiVersion: example.com/v1
kind: Website
metadata: { name: blog, namespace: %s }
spec: { image: "nginx:1.27", replicas: 2 }
]]):format(ns))
      local ok, err = pcall(function()
        assert(wait_for(out_path, "website%-operator: watching", 20), contents(out_path))
        cluster.kubectl("apply -f " .. site)
        local dep = ("-n %s get deployment blog -o jsonpath={.spec.replicas}/{.spec.template.spec.containers[0].image}/" ..
          "{.metadata.ownerReferences[0].kind}"):format(ns)
        local o, done = kubectl_until(dep, function(x) return x == "2/nginx:1.27/Website" end)
        assert(done, "deployment: " .. tostring(o) .. "\n" .. contents(out_path))
        o = cluster.kubectl(("-n %s get service blog -o jsonpath={.spec.ports[0].port}"):format(ns))
        assert.equals("80", o)
        o = cluster.kubectl(("-n %s get website blog -o jsonpath={.metadata.finalizers}"):format(ns))
        assert.matches("example.com/cleanup", o)
        o = cluster.kubectl(("-n %s get configmap website-registry -o jsonpath={.data.blog}"):format(ns))
        assert.equals("nginx:1.27", o)
        -- status: observedGeneration, and availableReplicas from the Deployment once its Pods run
        local st = ("-n %s get website blog -o jsonpath={.status.observedGeneration}/{.status.availableReplicas}")
          :format(ns)
        -- the test control plane's fake Nodes (kwok) run the Pods: the Deployment becomes available
        o, done = kubectl_until(st, function(x) return x == "1/2" end, 60)
        assert(done, "status: " .. tostring(o))
        o = cluster.kubectl(("-n %s get events.events.k8s.io -o jsonpath={.items[*].reason}"):format(ns))
        assert.matches("Synced", o)
        -- a hand edit and a deletion of the Deployment are repaired
        cluster.kubectl(("-n %s scale deployment blog --replicas=5"):format(ns))
        o, done = kubectl_until(dep, function(x) return x == "2/nginx:1.27/Website" end)
        assert(done, "after a hand edit: " .. tostring(o))
        cluster.kubectl(("-n %s delete deployment blog"):format(ns))
        o, done = kubectl_until(dep, function(x) return x == "2/nginx:1.27/Website" end)
        assert(done, "after a delete: " .. tostring(o))
        -- a spec change reaches the Deployment and the status
        cluster.kubectl(("-n %s patch website blog --type merge -p '{\"spec\":{\"image\":\"nginx:1.28\"}}'"):format(ns))
        o, done = kubectl_until(dep, function(x) return x == "2/nginx:1.28/Website" end)
        assert(done, "after a spec change: " .. tostring(o))
        o, done = kubectl_until(st, function(x) return x == "2/2" end, 60)
        assert(done, "status after a spec change: " .. tostring(o))
        -- deletion: the cleanup runs, then the Website goes
        cluster.kubectl(("-n %s delete website blog --wait=false"):format(ns))
        assert(wait_for(out_path, "website " .. ns:gsub("%-", "%%-") .. "/blog: cleaned up", 30), contents(out_path))
        o, done = kubectl_until(("-n %s get websites -o name"):format(ns), function(x) return x == "" end)
        assert(done, "website still there: " .. tostring(o))
        o = cluster.kubectl(("-n %s get configmap website-registry -o jsonpath={.data}"):format(ns))
        assert.not_matches("blog", o)
      end)
      stop()
      cluster.kubectl("delete namespace --wait=false " .. ns)
      assert(ok, tostring(err) .. "\n" .. contents(out_path))
    end)
end)
