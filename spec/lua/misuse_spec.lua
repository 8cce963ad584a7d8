-- Misuse raises, as the README promises: every public function that takes an
-- option table refuses a name it does not know, names the closest valid one,
-- and does nothing. Tried as a new user would, against the real control plane.
local kinformer = require "kinformer"
local cluster = require "support.cluster"
local helpers = require "support.helpers"
local must = helpers.must

local run_id = tostring(os.time() % 100000) .. tostring(math.random(100, 999))

local function raises(pattern, fn)
  local ok, err = pcall(fn)
  assert(not ok, "expected an error matching " .. pattern)
  assert(tostring(err):find(pattern, 1, true), ("error %q does not say %q"):format(tostring(err), pattern))
end

describe("a misspelled option", function()
  local c, ns
  setup(function()
    c = must(kinformer.client{ kubeconfig = cluster.kubeconfig })
    ns = "misuse-" .. run_id
    must(c:create("namespaces", { metadata = { name = ns } }))
    for i = 1, 3 do
      must(c:create("configmaps", { metadata = { name = "keep" .. i, namespace = ns, labels = { tmp = "0" } } }))
    end
  end)
  teardown(function()
    c:stop_all{ clear = true }
    c:delete("namespaces", ns)
  end)

  it("in delete_collection raises, names label_selector, and deletes nothing", function()
    raises("did you mean 'label_selector'", function()
      c:delete_collection("configmaps", { namespace = ns, labelSelector = "tmp=1" })
    end)
    local list = must(c:list("configmaps", { namespace = ns, label_selector = "tmp=0" }))
    assert.are.equal(3, #list.items)
  end)

  it("raises in every REST verb", function()
    local cm = { metadata = { name = "x", namespace = ns } }
    raises("did you mean 'namespace'", function() c:get("configmaps", "keep1", { namspace = ns }) end)
    raises("did you mean 'label_selector'", function() c:list("configmaps", { labelselector = "a" }) end)
    raises("did you mean", function() c:create("configmaps", cm, { namspace = ns }) end)
    raises("did you mean", function() c:update("configmaps", cm, { namspace = ns }) end)
    raises("did you mean", function() c:patch("configmaps", "keep1", { data = {} }, { namspace = ns }) end)
    raises("did you mean", function() c:delete("configmaps", "keep1", { namspace = ns }) end)
    assert.is_nil(c:get("configmaps", "x", { namespace = ns }))
    assert.is_truthy(c:get("configmaps", "keep1", { namespace = ns }))
  end)

  it("raises in the client, informer, watch, list of a cache and run", function()
    raises("did you mean 'timeout'", function() kinformer.client{ kubeconfig = cluster.kubeconfig, timout = 1 } end)
    raises("did you mean 'namespace'", function() c:informer("configmaps", { namspace = ns }) end)
    raises("did you mean 'namespace'", function() c:watch("configmaps", { namspace = ns }, function() end) end)
    local inf = must(c:informer("configmaps", { namespace = ns }))
    must(inf:wait_for_sync(20))
    raises("did you mean 'namespace'", function() inf:list{ namspace = "x" } end)
    raises("did you mean 'timeout'", function() kinformer.run{ timout = 1 } end)
    assert.are.equal(3, #inf:list{ namespace = ns })
  end)

  it("step with a negative or fractional timeout has a defined behaviour", function()
    local t0 = helpers.uptime()
    kinformer.step(-1) -- does not wait
    kinformer.step(1.5) -- a fraction of a millisecond is fine
    assert.is_true(helpers.uptime() - t0 < 1)
    raises("step", function() kinformer.step("x") end)
  end)
end)
