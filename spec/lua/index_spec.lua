-- by_index and the cache agree (issue 11). The README's claim: by_index(name,
-- value) returns the cached objects with that value "as the cache is at the
-- moment of the call: the same moment get and list read", even while the
-- callbacks (and the index, which is kept at dispatch) lag behind the cache.
-- Checked where a caller can look: between steps and inside a callback, with
-- the cache still and with another process relabelling objects as fast as the
-- API server takes it.
local kinformer = require "kinformer"
local cluster = require "support.cluster"
local helpers = require "support.helpers"
local must, uptime, spin = helpers.must, helpers.uptime, helpers.spin

local run_id = tostring(os.time() % 100000) .. tostring(math.random(100, 999))
local ns_count = 0
local colors = { "red", "green", "blue" }

local errors_seen = {}
kinformer.on_error(function(err, where) errors_seen[#errors_seen + 1] = tostring(where) .. ": " .. tostring(err) end)

local admin
setup(function() admin = must(kinformer.client{ kubeconfig = cluster.kubeconfig, qps = 1000, burst = 1000 }) end)
teardown(function() cluster.cleanup() end)

local function key(o) return o.metadata.namespace .. "/" .. o.metadata.name end
local function color_of(o) return o.metadata.labels and o.metadata.labels.color end
local function rv(o) return tonumber(o.metadata.resourceVersion) end

local function keys_of(list)
  local out = {}
  for _, o in ipairs(list) do out[#out + 1] = key(o) .. "@" .. o.metadata.resourceVersion end
  return out
end

-- what inf:list() holds with that color, as by_index should give it
local function filtered(inf, color)
  local out = {}
  for _, o in ipairs(inf:list()) do
    if color_of(o) == color then out[#out + 1] = o end
  end
  return keys_of(out)
end

-- Waits, without running a single callback, until pred(inf:list()) holds.
local function cache_reaches(inf, pred)
  local deadline = uptime() + 20
  while not pred(inf:list()) do
    if uptime() > deadline then return false end
    os.execute("sleep 0.05")
  end
  return true
end

describe("by_index", function()
  local c, ns
  before_each(function()
    ns_count = ns_count + 1
    ns = ("index-%s-%d"):format(run_id, ns_count)
    must(admin:create("namespaces", { metadata = { name = ns } }))
    c = must(kinformer.client{ kubeconfig = cluster.kubeconfig })
    errors_seen = {}
  end)
  after_each(function()
    c:close()
    admin:delete("namespaces", ns)
  end)

  local function make(names, color)
    for _, nm in ipairs(names) do
      must(admin:create("configmaps", { metadata = { name = nm, namespace = ns, labels = { color = color } } }))
    end
  end

  local function relabel(nm, color)
    must(admin:patch("configmaps", nm, { metadata = { labels = { color = color } } }, { namespace = ns }))
  end

  local function color_index(inf)
    inf:add_index("color", color_of)
  end

  it("answers from the cache while the callbacks (and the index kept at dispatch) lag behind it, "
    .. "between steps and inside a callback", function()
    local names = {}
    for i = 1, 10 do names[i] = ("cm%02d"):format(i) end
    make(names, "red")
    local inf = must(c:informer("configmaps", { namespace = ns }))
    color_index(inf)
    local updates, deletes, inside = 0, 0, {}
    inf:on("update", function(_, new)
      updates = updates + 1
      -- inside the first callback the cache is already ahead of it: by_index reads the cache
      if updates == 1 then
        inside.green = keys_of(inf:by_index("color", "green"))
        inside.red = keys_of(inf:by_index("color", "red"))
        inside.list_green, inside.list_red = filtered(inf, "green"), filtered(inf, "red")
        inside.new = key(new) .. "@" .. new.metadata.resourceVersion
      end
    end)
    inf:on("delete", function() deletes = deletes + 1 end)
    must(inf:wait_for_sync(20))
    assert.are.equal(10, #inf:by_index("color", "red"))

    -- every object turns green, four of them go; no callback runs meanwhile
    for _, nm in ipairs(names) do relabel(nm, "green") end
    for i = 7, 10 do must(admin:delete("configmaps", names[i], { namespace = ns })) end
    assert.is_true(cache_reaches(inf, function(list)
      if #list ~= 6 then return false end
      for _, o in ipairs(list) do if color_of(o) ~= "green" then return false end end
      return true
    end), "the cache did not take the changes")
    assert.are.equal(0, updates + deletes)
    assert.is_true(inf:stats().queued >= 14, "the changes should still wait for their callbacks")

    -- between steps: the cache's answer, object for object
    local green = inf:by_index("color", "green")
    assert.are.same(filtered(inf, "green"), keys_of(green))
    assert.are.equal(6, #green)
    for _, o in ipairs(green) do
      assert.are.same(inf:get(o.metadata.name, ns), o)
    end
    assert.are.same({}, inf:by_index("color", "red"))
    assert.are.same(keys_of(inf:list()), keys_of(inf:by_index("namespace", ns)))

    -- inside a callback: the same
    assert.is_true(spin(function() return updates == 10 and deletes == 4 end))
    assert.are.same(inside.list_green, inside.green)
    assert.are.same(inside.list_red, inside.red)
    assert.are.equal(6, #inside.green)
    assert.are.same({}, inside.red)
    assert.matches("@", inside.new)

    -- and once the callbacks have caught up
    assert.are.same(filtered(inf, "green"), keys_of(inf:by_index("color", "green")))
    assert.are.same({}, inf:by_index("color", "red"))
    assert.are.same({}, errors_seen)
  end)

  it("agrees with the cache after stop() while changes still wait, and after start()", function()
    local names = { "a", "b", "c", "d" }
    make(names, "red")
    local inf = must(c:informer("configmaps", { namespace = ns }))
    color_index(inf)
    local updates = 0
    inf:on("update", function() updates = updates + 1 end)
    must(inf:wait_for_sync(20))
    relabel("a", "blue")
    relabel("b", "blue")
    assert.is_true(cache_reaches(inf, function(list)
      return color_of(list[1]) == "blue" and color_of(list[2]) == "blue"
    end))
    inf:stop()
    assert.are.same(filtered(inf, "blue"), keys_of(inf:by_index("color", "blue")))
    assert.are.same(filtered(inf, "red"), keys_of(inf:by_index("color", "red")))
    assert.are.equal(2, #inf:by_index("color", "blue"))
    -- the changes that waited are still delivered, and the index stays with the cache
    assert.is_true(spin(function() return updates == 2 end))
    assert.are.same(filtered(inf, "blue"), keys_of(inf:by_index("color", "blue")))
    -- stopped: the cache no longer follows, and neither does by_index
    relabel("c", "blue")
    kinformer.run{ timeout = 0.5 }
    assert.are.equal(2, #inf:by_index("color", "blue"))
    assert.are.same(filtered(inf, "red"), keys_of(inf:by_index("color", "red")))
    inf:start()
    assert.is_true(spin(function() return #inf:by_index("color", "blue") == 3 end))
    assert.are.same(filtered(inf, "blue"), keys_of(inf:by_index("color", "blue")))
    assert.are.same(filtered(inf, "red"), keys_of(inf:by_index("color", "red")))
  end)

  -- Another process relabels, unlabels, deletes and recreates objects as fast as
  -- the API server takes it, while this one checks by_index against list() around
  -- it: the cache moves between the calls, so each check brackets by_index with a
  -- list before and a list after. Every object by_index gives must carry the
  -- value, be sorted by key, and be a state the cache held between the two lists;
  -- every object that did not change between them must be there exactly when its
  -- value matches.
  -- Under valgrind (scale small) the I/O thread reads a few dozen events a second:
  -- the writer pauses between writes, so that the test waits for the checks, not
  -- for a backlog, and the handler's own slowness is valgrind's.
  local small = cluster.scale == "small"
  local seconds, pause, check_every, min_writes = 6, 0, 3, 100
  if small then seconds, pause, check_every, min_writes = 10, 0.1, 2, 40 end
  it(("agrees with get and list while another process relabels objects for %d s"):format(seconds), function()
    local n_objects = 30
    local names = {}
    for i = 1, n_objects do names[i] = ("x%02d"):format(i) end
    make(names, "red")
    local inf = must(c:informer("configmaps", { namespace = ns }))
    color_index(inf)

    local stats = { where = {}, exact = 0, lagging = 0, objects = 0 }
    local dispatched = {} -- key -> the version its callbacks last saw (the index's state)
    local function snapshot()
      local m = {}
      for _, o in ipairs(inf:list()) do m[key(o)] = o end
      return m
    end
    local function check(where)
      local before = snapshot()
      local got = {}
      for _, col in ipairs(colors) do got[col] = inf:by_index("color", col) end
      local after = snapshot()
      stats.where[where] = (stats.where[where] or 0) + 1
      for _, col in ipairs(colors) do
        local found, prev = {}, nil
        for _, o in ipairs(got[col]) do
          local k = key(o)
          stats.objects = stats.objects + 1
          if prev and prev >= k then error(("%s: by_index(%q) is not sorted by key: %s, %s"):format(where, col, prev, k)) end
          prev = k
          if color_of(o) ~= col then
            error(("%s: by_index(%q) gave %s with color %s"):format(where, col, k, tostring(color_of(o))))
          end
          local b, a = before[k], after[k]
          if (b and rv(b) > rv(o)) or (a and rv(o) > rv(a)) then
            error(("%s: by_index(%q) gave %s at version %d, not a state between the lists (%s, %s)")
              :format(where, col, k, rv(o), b and b.metadata.resourceVersion or "absent",
                a and a.metadata.resourceVersion or "absent"))
          end
          found[k] = o.metadata.resourceVersion
        end
        for k, b in pairs(before) do
          local a = after[k]
          if a and a.metadata.resourceVersion == b.metadata.resourceVersion then
            local want = color_of(b) == col and b.metadata.resourceVersion or nil
            if found[k] ~= want then
              error(("%s: %s stayed at version %s with color %s, but by_index(%q) %s"):format(where, k,
                b.metadata.resourceVersion, tostring(color_of(b)), col,
                found[k] and ("gave version " .. found[k]) or "left it out"))
            end
            if col == colors[1] then
              stats.exact = stats.exact + 1
              -- the index as kept at dispatch is behind the cache for this one
              if dispatched[k] ~= b.metadata.resourceVersion then stats.lagging = stats.lagging + 1 end
            end
          end
        end
      end
    end

    local calls = 0
    local function saw(o, gone)
      dispatched[key(o)] = not gone and o.metadata.resourceVersion or nil
      calls = calls + 1
      if calls % check_every == 0 then check("inside a callback") end
      if not small and calls % 20 == 0 then os.execute("sleep 0.02") end -- a slow handler now and then
    end
    inf:on("add", function(o) saw(o) end)
    inf:on("update", function(_, o) saw(o) end)
    inf:on("delete", function(o) saw(o, true) end)
    must(inf:wait_for_sync(20))

    local dir = cluster.tmpdir()
    local stop = dir .. "/stop"
    local writer = io.popen(("env KC=%q NS=%q STOP=%q SPEC_LUA_PATH=%q SPEC_LUA_CPATH=%q N=%d PAUSE=%s lua5.4 - 2>&1 "
      .. "<<'EOF'\n%s\nEOF"):format(cluster.kubeconfig, ns, stop, package.path, package.cpath, n_objects, pause, [[
package.path = os.getenv("SPEC_LUA_PATH")
package.cpath = os.getenv("SPEC_LUA_CPATH")
local kinformer = require "kinformer"
local c = assert(kinformer.client{ kubeconfig = os.getenv("KC"), qps = 0 })
local ns, n, pause = os.getenv("NS"), tonumber(os.getenv("N")), tonumber(os.getenv("PAUSE"))
local colors = { "red", "green", "blue" }
local writes, done = 0, false
while not done and writes < 20000 do
  local name = ("x%02d"):format(math.random(1, n))
  local r = math.random()
  local ok, err
  if r < 0.8 then
    ok, err = c:patch("configmaps", name, { metadata = { labels = { color = colors[math.random(1, 3)] } } },
      { namespace = ns })
  elseif r < 0.9 then -- no color: in no index value
    ok, err = c:patch("configmaps", name, { metadata = { labels = { color = kinformer.null } } }, { namespace = ns })
  else
    ok, err = c:delete("configmaps", name, { namespace = ns })
    if ok then
      ok, err = c:create("configmaps", { metadata = { name = name, namespace = ns,
        labels = { color = colors[math.random(1, 3)] } } })
    end
  end
  if not ok then io.write("FAILED ", tostring(err), "\n") os.exit(1) end
  writes = writes + 1
  if pause > 0 then os.execute("sleep " .. pause) end
  if writes % 10 == 0 then
    local f = io.open(os.getenv("STOP"))
    if f then f:close() done = true end
  end
end
io.write("WRITES ", writes, "\n")
]]))
    local t_end = uptime() + seconds
    while uptime() < t_end do
      kinformer.step(5)
      check("between steps")
    end
    cluster.write(stop, "")
    local out = writer:read("a")
    writer:close()
    local writes = tonumber(out:match("WRITES (%d+)"))
    assert(writes, "the writer failed: " .. out)
    -- the callbacks catch up with the cache, and the last checks are made on a still cache
    assert.is_true(spin(function() return inf:stats().queued == 0 end, 60))
    check("between steps")
    for _, col in ipairs(colors) do assert.are.same(filtered(inf, col), keys_of(inf:by_index("color", col))) end

    print(("\n  by_index under %d writes in %.0f s: %d checks between steps, %d inside callbacks; %d objects "
      .. "given; %d still objects checked both ways, %d of them while their callbacks lagged")
      :format(writes, seconds, stats.where["between steps"] or 0, stats.where["inside a callback"] or 0,
        stats.objects, stats.exact, stats.lagging))
    assert.are.same({}, errors_seen)
    assert.is_true(writes >= min_writes, "the writer made too few changes")
    assert.is_true((stats.where["inside a callback"] or 0) >= 20, "too few checks inside callbacks")
    assert.is_true((stats.where["between steps"] or 0) >= 20, "too few checks between steps")
    -- the case by_index must get right: objects whose index entry (kept at dispatch) is stale
    assert.is_true(stats.lagging >= 20, "the callbacks never lagged behind the cache: nothing hard was checked")
  end)
end)
