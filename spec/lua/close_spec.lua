-- The lifetime of an informer and of a raw watch, as the README promises it
-- (issue 11): inf:close() and `local inf <close> = ...` stop the informer and
-- drop its cache; a raw watch is an object with stop(), close(), `<close>`,
-- resource_version() and a __tostring that says its state.
local kinformer = require "kinformer"
local cluster = require "support.cluster"
local helpers = require "support.helpers"
local must, uptime, spin = helpers.must, helpers.uptime, helpers.spin

local run_id = tostring(os.time() % 100000) .. tostring(math.random(100, 999))
local ns_count = 0

local errors_seen = {}
kinformer.on_error(function(err, where) errors_seen[#errors_seen + 1] = tostring(where) .. ": " .. tostring(err) end)

local admin
setup(function() admin = must(kinformer.client{ kubeconfig = cluster.kubeconfig, qps = 1000, burst = 1000 }) end)

local closed_msg = "kinformer: the informer is closed (close() or stop_all{ clear = true }): ask the client for a new one"

-- the entry of kinformer.stats() for the informers (raw: the watches) of a
-- namespace's ConfigMaps, if one still counts
local function counted(ns, raw)
  for _, s in ipairs(kinformer.stats().informers) do
    if s.what == "configmaps in " .. ns and s.raw == (raw or false) then return s end
  end
  return nil
end

-- Waits, without running a callback, until that entry has at least n events queued.
local function queued(ns, raw, n)
  local deadline = uptime() + 20
  while true do
    local s = counted(ns, raw)
    if s and s.queued >= n then return true end
    if uptime() > deadline then return false end
    os.execute("sleep 0.05")
  end
end

describe("closing", function()
  local c, ns
  before_each(function()
    ns_count = ns_count + 1
    ns = ("close-%s-%d"):format(run_id, ns_count)
    must(admin:create("namespaces", { metadata = { name = ns } }))
    c = must(kinformer.client{ kubeconfig = cluster.kubeconfig })
    errors_seen = {}
  end)
  after_each(function()
    c:close()
    admin:delete("namespaces", ns)
  end)

  local function cm(name)
    return must(admin:create("configmaps", { metadata = { name = name, namespace = ns } }))
  end

  describe("an informer", function()
    it("with <close>: leaving the block stops it and frees its cache; start() says it is closed; "
      .. "closing again does nothing; the client gives a new one", function()
      for i = 1, 3 do cm("a" .. i) end
      local adds = 0
      local outside
      do
        local inf <close> = must(c:informer("configmaps", { namespace = ns }))
        outside = inf
        inf:on("add", function() adds = adds + 1 end)
        must(inf:wait_for_sync(20))
        assert.are.equal(3, adds)
        assert.are.equal(3, counted(ns).objects)
      end
      assert.is_nil(counted(ns), "a closed informer's cache still counts in kinformer.stats()")
      assert.is_false(outside:has_synced())
      assert.has_error(function() outside:start() end, closed_msg)
      assert.has_error(function() outside:wait_for_sync(1) end, closed_msg)
      assert.has_no_error(function() outside:close() end)
      assert.has_no_error(function() outside:stop() end)
      assert.has_error(function() outside:get("a1") end, "kinformer: the informer is closed")
      -- stopped: what changes now calls nothing
      cm("after")
      kinformer.run{ timeout = 1 }
      assert.are.equal(3, adds)
      -- the client forgot it: asking again makes a new one, which lists afresh
      local again = must(c:informer("configmaps", { namespace = ns }))
      assert.are_not.equal(outside, again)
      must(again:wait_for_sync(20))
      assert.are.equal(4, again:count())
      assert.are.same({}, errors_seen)
    end)

    it("with <close>: also when the block ends with an error", function()
      local inf_out
      local ok, err = pcall(function()
        local inf <close> = must(c:informer("configmaps", { namespace = ns }))
        inf_out = inf
        must(inf:wait_for_sync(20))
        error("the block fails")
      end)
      assert.is_false(ok)
      assert.matches("the block fails", err)
      assert.is_nil(counted(ns))
      assert.has_error(function() inf_out:start() end, closed_msg)
    end)

    it("close() drops the callbacks still waiting, late adds included", function()
      local inf = must(c:informer("configmaps", { namespace = ns }))
      local calls = 0
      inf:on("update", function() calls = calls + 1 end)
      must(inf:wait_for_sync(20))
      cm("w1")
      cm("w2")
      assert.is_true(spin(function() return inf:count() == 2 end))
      -- a handler added now has two late adds waiting; a change waits in the queue
      inf:on("add", function() calls = calls + 1 end)
      local w1 = must(admin:get("configmaps", "w1", { namespace = ns }))
      w1.data = { k = "v" }
      must(admin:update("configmaps", w1))
      assert.is_true(queued(ns, false, 1), "the update did not reach the queue")
      inf:close()
      kinformer.run{ timeout = 1 }
      assert.are.equal(0, calls)
      assert.are.equal(0, kinformer.stats().queued)
    end)

    it("may be closed from inside its own callback: the rest of its batch is dropped", function()
      for i = 1, 5 do cm("b" .. i) end
      local inf = must(c:informer("configmaps", { namespace = ns }))
      local calls = 0
      inf:on("add", function()
        calls = calls + 1
        inf:close()
      end)
      kinformer.run{ timeout = 2 }
      assert.are.equal(1, calls)
      assert.has_error(function() inf:start() end, closed_msg)
      assert.are.same({}, errors_seen)
    end)
  end)

  describe("a raw watch", function()
    local function watch(log, opts)
      return must(c:watch("configmaps", opts or { namespace = ns }, function(t, o)
        log[#log + 1] = t .. " " .. o.metadata.name .. " " .. o.metadata.resourceVersion
      end))
    end

    it("says what it is and its state; stop() ends its callbacks and keeps its version", function()
      local log = {}
      local w = watch(log)
      assert.are.equal(("kinformer.watch (configmaps in %s)"):format(ns), tostring(w))
      local made = cm("one")
      assert.is_true(spin(function() return #log == 1 end))
      assert.are.equal("ADDED one " .. made.metadata.resourceVersion, log[1])
      w:stop()
      local version = w:resource_version()
      assert.matches("^%d+$", version)
      assert.is_true(tonumber(version) >= tonumber(made.metadata.resourceVersion))
      assert.are.equal(("kinformer.watch (configmaps in %s, stopped)"):format(ns), tostring(w))
      cm("two")
      kinformer.run{ timeout = 1 }
      assert.are.equal(1, #log)
      assert.are.equal(version, w:resource_version())
      assert.has_no_error(function() w:stop() end)
      -- a new watch from that version gets what came after it, and nothing before
      local later = {}
      local w2 = watch(later, { namespace = ns, resource_version = version })
      assert.is_true(spin(function() return #later == 1 end))
      kinformer.run{ timeout = 0.5 }
      assert.are.same({ "ADDED two" }, { (later[1]:gsub(" %d+$", "")) })
      assert.are.equal(1, #later)
      w2:close()
      w:close()
      assert.are.same({}, errors_seen)
    end)

    it("close() frees it and drops its waiting events; closing again, or stopping, does nothing", function()
      local log = {}
      local w = watch(log)
      cm("one")
      assert.is_true(spin(function() return #log == 1 end))
      cm("two")
      assert.is_true(queued(ns, true, 1), "the event did not reach the queue")
      w:close()
      assert.are.equal(("kinformer.watch (configmaps in %s, closed)"):format(ns), tostring(w))
      assert.is_nil(w:resource_version())
      assert.is_nil(counted(ns, true))
      kinformer.run{ timeout = 1 }
      assert.are.equal(1, #log)
      assert.has_no_error(function() w:close() end)
      assert.has_no_error(function() w:stop() end)
      assert.are.equal(("kinformer.watch (configmaps in %s, closed)"):format(ns), tostring(w))
      -- the client no longer holds it: stop_all and close pass it by
      assert.has_no_error(function() c:stop_all{ clear = true } end)
    end)

    it("with <close>: closed when the block ends, also by an error", function()
      local log = {}
      local outside
      do
        local w <close> = watch(log)
        outside = w
        cm("one")
        assert.is_true(spin(function() return #log == 1 end))
      end
      assert.are.equal(("kinformer.watch (configmaps in %s, closed)"):format(ns), tostring(outside))
      cm("two")
      kinformer.run{ timeout = 1 }
      assert.are.equal(1, #log)
      local ok = pcall(function()
        local w <close> = watch(log)
        outside = w
        error("the block fails")
      end)
      assert.is_false(ok)
      assert.are.equal(("kinformer.watch (configmaps in %s, closed)"):format(ns), tostring(outside))
      kinformer.run{ timeout = 1 }
      assert.are.equal(1, #log)
      assert.are.same({}, errors_seen)
    end)
  end)
end)
