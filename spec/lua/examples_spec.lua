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
end)
