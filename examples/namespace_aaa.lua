-- The second client of `make demo`: creates a namespace, waits a moment, deletes it.
-- Run: lua5.4 examples/namespace_aaa.lua [--clean] [NAME]     (NAME: default "aaa")
--   --clean  only make sure NAME does not exist: delete it if it does and wait until it is gone
local kinformer = require "kinformer"

local clean = arg[1] == "--clean"
local name = arg[clean and 2 or 1] or "aaa"
local c = assert(kinformer.client())

local function say(fmt, ...) io.stdout:write("namespace_aaa.lua: ", fmt:format(...), "\n"):flush() end
local function sleep(s) os.execute("sleep " .. s) end

if clean then
  local ns, err = c:get("namespaces", name)
  if not ns and err.reason ~= "NotFound" then error(tostring(err)) end
  if ns then
    say("%s is left from an earlier run; deleting it", name)
    local ok, derr = c:delete("namespaces", name)
    if not ok and derr.reason ~= "NotFound" then error(tostring(derr)) end
    -- the controller-manager empties the namespace, then the namespace goes
    for _ = 1, 120 do
      ns, err = c:get("namespaces", name)
      if not ns and err.reason == "NotFound" then break end
      sleep(0.5)
    end
    assert(not ns, name .. " is still there after 60 s")
  end
  return
end

say("creating namespace %s", name)
assert(c:create("namespaces", { metadata = { name = name } }))
sleep(2)
say("deleting namespace %s (the controller-manager empties it first: a few seconds)", name)
assert(c:delete("namespaces", name))
