-- The examples in examples/ run as a user runs them, against the control plane.
local cluster = require "support.cluster"

local function run(script)
  return cluster.run_lua({ KUBECONFIG = cluster.kubeconfig, LUA_PATH = package.path, LUA_CPATH = package.cpath },
    ("arg = { [0] = %q }\ndofile(%q)"):format(script, script))
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
end)
