--- Label selectors, as the API server reads them: "a=b,c!=d,e in (f,g),h notin (i),j,!k".
local M = {}

local function trim(s) return (s:gsub("^%s+", ""):gsub("%s+$", "")) end

local function split_terms(s)
  local terms, depth, start = {}, 0, 1
  for i = 1, #s do
    local ch = s:sub(i, i)
    if ch == "(" then depth = depth + 1
    elseif ch == ")" then depth = depth - 1
    elseif ch == "," and depth == 0 then
      terms[#terms + 1] = s:sub(start, i - 1)
      start = i + 1
    end
  end
  terms[#terms + 1] = s:sub(start)
  return terms
end

local function set_of(list)
  local set = {}
  for v in list:gmatch("[^,]+") do set[trim(v)] = true end
  return set
end

--- Parses a selector into a predicate over a labels table. Raises on bad syntax.
function M.parse(s)
  if s == nil or trim(s) == "" then return function() return true end end
  local tests = {}
  for _, term in ipairs(split_terms(s)) do
    term = trim(term)
    local k, list = term:match("^([%w%._/%-]+)%s+in%s+%((.*)%)$")
    local nk, nlist = term:match("^([%w%._/%-]+)%s+notin%s+%((.*)%)$")
    local ek, ev = term:match("^([%w%._/%-]+)%s*==?%s*([%w%._%-]*)$")
    local xk, xv = term:match("^([%w%._/%-]+)%s*!=%s*([%w%._%-]*)$")
    if k then
      local set = set_of(list)
      tests[#tests + 1] = function(l) return l[k] ~= nil and set[l[k]] == true end
    elseif nk then
      local set = set_of(nlist)
      tests[#tests + 1] = function(l) return l[nk] == nil or not set[l[nk]] end
    elseif xk then
      tests[#tests + 1] = function(l) return l[xk] ~= xv end
    elseif ek then
      tests[#tests + 1] = function(l) return l[ek] == ev end
    elseif term:match("^![%w%._/%-]+$") then
      local key = term:sub(2)
      tests[#tests + 1] = function(l) return l[key] == nil end
    elseif term:match("^[%w%._/%-]+$") then
      tests[#tests + 1] = function(l) return l[term] ~= nil end
    else
      error(("kinformer: bad label selector %q (at %q)"):format(s, term), 3)
    end
  end
  return function(labels)
    labels = type(labels) == "table" and labels or {}
    for _, t in ipairs(tests) do
      if not t(labels) then return false end
    end
    return true
  end
end

return M
