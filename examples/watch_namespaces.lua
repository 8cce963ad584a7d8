-- Prints every namespace event as it happens: first the namespaces that exist (ADDED), then each change.
-- Run: lua5.4 examples/watch_namespaces.lua [--until-deleted NAME] [--timeout SECONDS]
--   --until-deleted NAME  stop after the DELETED event of namespace NAME (exit 1 if the timeout comes first)
--   --timeout SECONDS     stop after that long (exit 0 unless --until-deleted is waiting)
local kinformer = require "kinformer"

local until_deleted, timeout
local i = 1
while arg[i] do
  if arg[i] == "--until-deleted" then until_deleted = arg[i + 1]
  elseif arg[i] == "--timeout" then timeout = tonumber(arg[i + 1])
  else
    io.stderr:write("usage: watch_namespaces.lua [--until-deleted NAME] [--timeout SECONDS]\n")
    os.exit(2)
  end
  i = i + 2
end

-- Kubernetes writes timestamps in UTC ("2024-05-01T12:34:56Z"); os.time would read them as local time.
local function unix_seconds(ts)
  local y, mo, d, h, mi, s = ts:match("^(%d+)-(%d+)-(%d+)T(%d+):(%d+):(%d+)")
  y, mo = tonumber(y), tonumber(mo)
  if mo <= 2 then y, mo = y - 1, mo + 12 end -- count years from March: the leap day comes last
  local days = 365 * y + y // 4 - y // 100 + y // 400 + (153 * (mo - 3) + 2) // 5 + d - 719469
  return days * 86400 + h * 3600 + mi * 60 + s
end

io.stdout:setvbuf("line") -- each event shows at once, also through a pipe
local c = assert(kinformer.client())

assert(c:watch("namespaces", {}, function(type, ns)
  if not ns then print(type) return end -- EXPIRED: the watch starts again from a fresh version
  local m = ns.metadata
  print(("%-8s kind: %s  name: %s  created: %d  resourceVersion: %s"):format(type, ns.kind, m.name,
    unix_seconds(m.creationTimestamp), m.resourceVersion))
  if type == "DELETED" and m.name == until_deleted then kinformer.stop() end
end))

if not kinformer.run{ timeout = timeout } and until_deleted then
  io.stderr:write(("watch_namespaces.lua: no DELETED event for %s within %s s\n"):format(until_deleted, timeout))
  os.exit(1)
end
