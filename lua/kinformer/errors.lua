--- Error values: what a caller can handle comes back as `nil, err`, where
-- `err` is a table with `code`, `reason` and `message` (and `details`,
-- `status` for a Kubernetes Status), whose tostring is one readable line.
local M = {}

local Error = {}
Error.__index = Error
Error.__name = "kinformer.error"

function Error.__tostring(e)
  local where = e.where and (e.where .. ": ") or ""
  local tail
  if e.code and e.code > 0 then
    tail = (" (%s, HTTP %d)"):format(e.reason or "Unknown", e.code)
  else
    tail = (" (%s)"):format(e.reason or "Unknown")
  end
  return "kinformer: " .. where .. tostring(e.message) .. tail
end

-- Reasons for HTTP answers that carry no Status body.
local reason_of = {
  [400] = "BadRequest", [401] = "Unauthorized", [403] = "Forbidden", [404] = "NotFound",
  [405] = "MethodNotAllowed", [406] = "NotAcceptable", [409] = "Conflict", [410] = "Expired",
  [415] = "UnsupportedMediaType", [422] = "Invalid", [429] = "TooManyRequests",
  [500] = "InternalError", [503] = "ServiceUnavailable", [504] = "Timeout",
}

--- Wraps a table from the C core ({code, reason, message}).
function M.from_core(t, where)
  t.where = where
  return setmetatable(t, Error)
end

--- An error from an HTTP answer; `status` is the decoded body when it is a
-- Kubernetes Status object.
function M.from_http(code, status, body, where)
  local e = { code = code, where = where }
  if type(status) == "table" and status.kind == "Status" then
    e.reason = status.reason ~= "" and status.reason or reason_of[code] or "Unknown"
    e.message = status.message or ""
    e.details = status.details
    e.status = status
  else
    e.reason = reason_of[code] or "Unknown"
    local text = type(body) == "string" and body:gsub("%s+$", ""):sub(1, 200) or ""
    e.message = text ~= "" and text or ("the server answered HTTP " .. code)
  end
  return setmetatable(e, Error)
end

--- A misuse-free failure made in Lua (bad answer, unexpected content).
function M.new(reason, message, where, code)
  return setmetatable({ code = code or 0, reason = reason, message = message, where = where }, Error)
end

--- Whether v is a kinformer error.
function M.is(v)
  return getmetatable(v) == Error
end

return M
