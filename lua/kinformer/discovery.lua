--- Discovery: what the server serves, and kubectl-style resource names.
-- Uses the aggregated discovery document (one request for /api, one for
-- /apis) where the server offers it, and the classic /api + /apis walk
-- otherwise. Results are cached per client.
local errors = require "kinformer.errors"

local M = {}

local AGGREGATED = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
  .. "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"

local function copy_list(t)
  local out = {}
  for i, v in ipairs(t or {}) do out[i] = v end
  return out
end

local function describe(group, version, r)
  return {
    group = group, version = version, resource = r.resource, kind = r.kind,
    api_version = group == "" and version or (group .. "/" .. version),
    namespaced = r.namespaced, singular = r.singular ~= "" and r.singular or r.kind:lower(),
    verbs = copy_list(r.verbs), short_names = copy_list(r.short_names), categories = copy_list(r.categories),
    subresources = r.subresources or {},
  }
end

-- Adds a group's resources in version-preference order: a resource seen in
-- a preferred version hides the same resource in later ones, as in
-- client-go's ServerPreferredResources.
local function add_group(out, group, versions)
  local seen = {}
  for _, v in ipairs(versions) do
    for _, r in ipairs(v.resources) do
      if not seen[r.resource] then
        seen[r.resource] = true
        out[#out + 1] = describe(group, v.version, r)
      end
    end
  end
end

-- The aggregated document (apidiscovery.k8s.io/v2 APIGroupDiscoveryList).
local function from_aggregated(out, doc)
  for _, g in ipairs(doc.items or {}) do
    local group = g.metadata and g.metadata.name or ""
    local versions = {}
    for _, v in ipairs(g.versions or {}) do
      local rs = {}
      for _, r in ipairs(v.resources or {}) do
        local subs = {}
        for _, s in ipairs(r.subresources or {}) do
          subs[s.subresource] = { kind = s.responseKind and s.responseKind.kind, verbs = copy_list(s.verbs) }
        end
        rs[#rs + 1] = {
          resource = r.resource, kind = r.responseKind and r.responseKind.kind or "",
          namespaced = r.scope == "Namespaced", singular = r.singularResource or "",
          verbs = r.verbs, short_names = r.shortNames, categories = r.categories, subresources = subs,
        }
      end
      versions[#versions + 1] = { version = v.version, resources = rs }
    end
    add_group(out, group, versions)
  end
end

-- A classic APIResourceList: subresources are entries named "pods/status".
local function from_resource_list(list)
  local rs, by_name = {}, {}
  for _, r in ipairs(list.resources or {}) do
    local base = r.name:match("^([^/]+)/(.+)$")
    if not base then
      local d = { resource = r.name, kind = r.kind, namespaced = r.namespaced, singular = r.singularName or "",
                  verbs = r.verbs, short_names = r.shortNames, categories = r.categories, subresources = {} }
      rs[#rs + 1] = d
      by_name[r.name] = d
    end
  end
  for _, r in ipairs(list.resources or {}) do
    local base, sub = r.name:match("^([^/]+)/(.+)$")
    if base and by_name[base] then
      by_name[base].subresources[sub] = { kind = r.kind, verbs = copy_list(r.verbs) }
    end
  end
  return rs
end

local function classic(c, out)
  local api, err = c:request("GET", "/api")
  if not api then return nil, err end
  local versions = {}
  for _, v in ipairs(api.versions or {}) do
    local list, lerr = c:request("GET", "/api/" .. v)
    if not list then return nil, lerr end
    versions[#versions + 1] = { version = v, resources = from_resource_list(list) }
  end
  add_group(out, "", versions)
  local apis, aerr = c:request("GET", "/apis")
  if not apis then return nil, aerr end
  for _, g in ipairs(apis.groups or {}) do
    -- preferred version first, then the others in the server's order
    local order = { g.preferredVersion }
    for _, v in ipairs(g.versions or {}) do
      if v.version ~= g.preferredVersion.version then order[#order + 1] = v end
    end
    local gversions = {}
    for _, v in ipairs(order) do
      local list, lerr = c:request("GET", "/apis/" .. v.groupVersion)
      -- an aggregated API server that is down must not hide everything else
      if list then gversions[#gversions + 1] = { version = v.version, resources = from_resource_list(list) }
      elseif lerr.code ~= 503 and lerr.code ~= 404 then return nil, lerr end
    end
    add_group(out, g.name, gversions)
  end
  return out
end

--- Loads the preferred resources of every group (a fresh list).
function M.load(c)
  local out = {}
  local ok = true
  for _, path in ipairs{ "/api", "/apis" } do
    local doc, err = c:request("GET", path, nil, { accept = AGGREGATED })
    if not doc then return nil, err end
    if doc.kind ~= "APIGroupDiscoveryList" then ok = false break end
    from_aggregated(out, doc)
  end
  if ok then return out, "aggregated" end
  out = {}
  local res, err = classic(c, out)
  if not res then return nil, err end
  return out, "classic"
end

-- ---- names ----

local function looks_like_version(s)
  return s:match("^v%d+$") or s:match("^v%d+alpha%d+$") or s:match("^v%d+beta%d+$")
end

local function edit_distance(a, b)
  if math.abs(#a - #b) > 3 then return 99 end
  local prev = {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = { [0] = i }
    for j = 1, #b do
      local cost = a:sub(i, i) == b:sub(j, j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev = cur
  end
  return prev[#b]
end

local function full_name(r)
  return r.group == "" and r.resource or (r.resource .. "." .. r.group)
end
M.full_name = full_name

-- Candidates for a bare name, by kubectl's order of kinds of match.
local function match_name(list, name, group, version)
  local lname = name:lower()
  local tiers = { {}, {}, {}, {} }
  for _, r in ipairs(list) do
    if (group == nil or r.group == group) and (version == nil or r.version == version) then
      if r.resource == lname then tiers[1][#tiers[1] + 1] = r
      elseif r.singular == lname then tiers[2][#tiers[2] + 1] = r
      elseif r.kind:lower() == lname then tiers[4][#tiers[4] + 1] = r
      else
        for _, s in ipairs(r.short_names) do
          if s == lname then tiers[3][#tiers[3] + 1] = r break end
        end
      end
    end
  end
  for _, t in ipairs(tiers) do
    if #t > 0 then return t end
  end
  return {}
end

local function suggestions(list, name)
  local lname, out, seen = name:lower():match("^[^./]+") or name:lower(), {}, {}
  for _, r in ipairs(list) do
    local cands = { r.resource, r.singular, r.kind:lower() }
    for _, s in ipairs(r.short_names) do cands[#cands + 1] = s end
    for _, cand in ipairs(cands) do
      if not seen[full_name(r)] and (edit_distance(lname, cand) <= 2 or
          (#lname >= 3 and cand:sub(1, #lname) == lname)) and #cand >= 4 then
        seen[full_name(r)] = true
        out[#out + 1] = full_name(r)
        break
      end
    end
  end
  table.sort(out)
  return out
end

--- Resolves a name against a resource list. Returns the description, or
-- nil and an error (nil, nil when nothing matched, so the caller can refresh).
function M.resolve(list, name)
  local group, version, resource
  if type(name) == "table" then
    group, version, resource = name.group or "", name.version, name.resource
    if type(resource) ~= "string" then
      error("kinformer: a resource table needs { group =, version =, resource = }", 3)
    end
    local m = match_name(list, resource, group, version)
    return m[1]
  end
  if type(name) ~= "string" or name == "" then
    error("kinformer: a resource is a name (\"pods\", \"deployments.apps\", \"apps/v1/deployments\") or a table", 3)
  end
  local parts = {}
  for p in name:gmatch("[^/]+") do parts[#parts + 1] = p end
  local matches
  if #parts == 3 then
    matches = match_name(list, parts[3], parts[1], parts[2])
  elseif #parts == 2 then
    matches = match_name(list, parts[2], "", parts[1])
  elseif #parts == 1 then
    resource = name:match("^([^.]+)")
    local rest = name:sub(#resource + 2)
    if rest == "" then
      matches = match_name(list, resource)
    else
      local v, g = rest:match("^([^.]+)%.(.+)$")
      matches = {}
      if v and looks_like_version(v) then matches = match_name(list, resource, g, v) end
      if #matches == 0 then matches = match_name(list, resource, rest) end
    end
  else
    matches = {}
  end
  if #matches == 0 then return nil, nil end
  -- kubectl's priority: the core group wins (events, not events.events.k8s.io)
  local groups, core = {}, nil
  for _, r in ipairs(matches) do
    groups[r.group] = r
    if r.group == "" then core = r end
  end
  if core then return core end
  local distinct = {}
  for g in pairs(groups) do distinct[#distinct + 1] = g end
  if #distinct == 1 then return matches[1] end
  local names = {}
  for _, r in ipairs(matches) do names[#names + 1] = full_name(r) end
  table.sort(names)
  return nil, errors.new("Ambiguous", ("resource %q is ambiguous: %s; name one with its group"):format(
    name, table.concat(names, ", ")), "resolve")
end

--- The error for a name that matched nothing.
function M.unknown(list, name)
  local s = type(name) == "table" and ((name.group or "") .. "/" .. tostring(name.version) .. "/" .. name.resource)
    or name
  local close = suggestions(list, type(name) == "table" and name.resource or name)
  local hint = #close > 0 and ("; did you mean " .. table.concat(close, ", ", 1, math.min(#close, 6)) .. "?") or ""
  return errors.new("NotFound", ("the server has no resource %q%s"):format(s, hint), "resolve", 404)
end

return M
