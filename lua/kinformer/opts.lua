--- The one checker of option tables: every public function that takes
-- `opts` passes it here with the names and types it documents, so that a
-- misspelled option raises (naming the closest valid one) instead of being
-- ignored, as `labelSelector` once was by delete_collection (it deleted all).
local M = {}

-- Edit distance (insertions, deletions, substitutions), for the suggestion.
local function distance(a, b)
  if a == b then return 0 end
  local la, lb = #a, #b
  local prev, cur = {}, {}
  for j = 0, lb do prev[j] = j end
  for i = 1, la do
    cur[0] = i
    local ca = a:byte(i)
    for j = 1, lb do
      local cost = ca == b:byte(j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev, cur = cur, prev
  end
  return prev[lb]
end

-- labelSelector, label-selector and LABEL_SELECTOR all mean label_selector.
local function normalize(s)
  return (s:gsub("(%l)(%u)", "%1_%2"):gsub("%-", "_"):lower())
end

--- The valid name closest to `name` (ties: the first in sorted order).
function M.closest(name, valid)
  local names = {}
  for k in pairs(valid) do names[#names + 1] = tostring(k) end
  table.sort(names)
  local n = normalize(tostring(name))
  local best, bestd
  for _, k in ipairs(names) do
    local d = distance(n, k)
    if not bestd or d < bestd then best, bestd = k, d end
  end
  return best
end

-- Type names a spec may use beyond type()'s: "integer" (math.type), "seconds"
-- (a number >= 0), "pair" (a table of two numbers: watch_timeout's { min, max }).
local function type_ok(want, v)
  if want == "integer" then return math.type(v) == "integer" end
  if want == "seconds" then return type(v) == "number" and v >= 0 and v == v end
  if want == "pair" then
    return type(v) == "table" and type(v[1]) == "number" and type(v[2]) == "number" and v[1] <= v[2]
  end
  return type(v) == want
end

local describe = {
  integer = "an integer", seconds = "a number of seconds >= 0", pair = "a table { min, max } of two numbers",
  table = "a table", string = "a string", number = "a number", boolean = "a boolean",
}

local function ename(want)
  return describe[want] or want
end

--- Checks `opts` against `spec` ({ name = type, ... }, type one of type()'s
-- names or "integer", "seconds", "pair", or a list of them) and returns it
-- (an empty table for nil). `fname` prefixes the error, which is raised at
-- `level` (the caller of the public function by default).
function M.check(fname, opts, spec, level)
  level = (level or 2) + 1
  if opts == nil then return {} end
  if type(opts) ~= "table" then
    error(("%s: options must be a table, got %s"):format(fname, type(opts)), level)
  end
  for k, v in pairs(opts) do
    local want = type(k) == "string" and spec[k] or nil
    if not want then
      error(("%s: unknown option '%s' (did you mean '%s'?)"):format(fname, tostring(k), M.closest(k, spec)), level)
    end
    local ok
    if type(want) == "table" then
      for _, w in ipairs(want) do ok = ok or type_ok(w, v) end
    else
      ok = type_ok(want, v)
    end
    if not ok then
      local names = {}
      for _, w in ipairs(type(want) == "table" and want or { want }) do names[#names + 1] = ename(w) end
      error(("%s: option '%s' must be %s, got %s"):format(fname, k, table.concat(names, " or "),
        type(v) == "number" and tostring(v) or type(v)), level)
    end
  end
  return opts
end

return M
