-- Watches every resource the cluster serves: one informer per resource that can be listed and watched
-- (metadata only, to keep the caches small), then prints each change for a while and a table of counts.
-- Run: lua5.4 examples/watch_everything.lua [--timeout SECONDS]    (how long to watch; default 10)
local kinformer = require "kinformer"

local timeout = arg[1] == "--timeout" and tonumber(arg[2]) or 10
local c = assert(kinformer.client())

local function can(r, verb)
  for _, v in ipairs(r.verbs) do if v == verb then return true end end
  return false
end

local watched, live = {}, false -- live: the initial lists are in; print each change from now on
for _, r in ipairs(assert(c:resources())) do
  if can(r, "list") and can(r, "watch") then
    local name = r.group == "" and r.resource or (r.resource .. "." .. r.group)
    local w = { name = name, add = 0, update = 0, delete = 0 }
    local function count(event, obj)
      w[event] = w[event] + 1
      if live then
        local m = obj.metadata
        print(("%-7s %s %s"):format(event, name, m.namespace and (m.namespace .. "/" .. m.name) or m.name))
      end
    end
    w.inf = assert(c:informer(r, { metadata_only = true }))
    w.inf:on("add", function(obj) count("add", obj) end)
    w.inf:on("update", function(_, obj) count("update", obj) end)
    w.inf:on("delete", function(obj) count("delete", obj) end)
    w.inf:start()
    watched[#watched + 1] = w
  end
end

for _, w in ipairs(watched) do
  local ok, err = w.inf:wait_for_sync(30)
  if not ok then print(w.name .. ": " .. tostring(err)) end
end
local s = kinformer.stats()
print(("%d informers synced: %d objects, %d bytes of JSON; watching for %d s"):format(#s.informers, s.objects,
  s.bytes, timeout))
live = true
kinformer.run{ timeout = timeout }

table.sort(watched, function(a, b) return a.name < b.name end)
local width = 8
for _, w in ipairs(watched) do width = math.max(width, #w.name) end
local row = "%-" .. width .. "s %8s %6s %6s %6s"
print("\n" .. row:format("RESOURCE", "CACHED", "ADD", "UPDATE", "DELETE"))
for _, w in ipairs(watched) do
  print(row:format(w.name, w.inf:count(), w.add, w.update, w.delete))
end
c:stop_all{ clear = true }
