--- Test support: the small helpers every spec that talks to the control
-- plane uses.
local kinformer = require "kinformer"

local M = {}

-- The value, or a failed assertion with the error that came instead
-- (kinformer's calls return nil, err).
function M.must(v, err)
  assert(v ~= nil, tostring(err))
  return v
end

-- Seconds since boot: monotonic, and readable from a shell as well.
function M.uptime()
  local f = io.open("/proc/uptime")
  local t = tonumber(f:read("a"):match("^(%S+)"))
  f:close()
  return t
end

-- Drives the loop until pred() holds; false after timeout seconds (default 20).
function M.spin(pred, timeout)
  local deadline = M.uptime() + (timeout or 20)
  while not pred() do
    if M.uptime() > deadline then return false end
    kinformer.step(50)
  end
  return true
end

-- A file's contents, or "" when it cannot be read (yet).
function M.read(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

return M
