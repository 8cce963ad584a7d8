--- The dynamic REST verbs: get, list, create, update, patch, delete and
-- delete_collection on any resource, named as kubectl names it.
local discovery = require "kinformer.discovery"
local errors = require "kinformer.errors"
local opts_check = require("kinformer.opts").check

local M = {}

local function check(cond, msg)
  if not cond then error("kinformer: " .. msg, 3) end
end

local function escape(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(ch) return ("%%%02X"):format(ch:byte()) end))
end

local function query(params)
  local keys, parts = {}, {}
  for k in pairs(params) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local v = params[k]
    if v ~= nil and v ~= false then parts[#parts + 1] = k .. "=" .. escape(v) end
  end
  return #parts > 0 and ("?" .. table.concat(parts, "&")) or ""
end

-- /api/v1[/namespaces/ns]/resource[/name[/sub]]
local function path_of(r, namespace, name, subresource)
  local p = r.group == "" and ("/api/" .. r.version) or ("/apis/" .. r.group .. "/" .. r.version)
  if r.namespaced and namespace then p = p .. "/namespaces/" .. escape(namespace) end
  p = p .. "/" .. r.resource
  if name then p = p .. "/" .. escape(name) end
  if subresource then p = p .. "/" .. subresource end
  return p
end
M.path_of = path_of

local function where(verb, r, namespace, name)
  local s = verb .. " " .. discovery.full_name(r)
  if name then s = s .. " " .. (r.namespaced and namespace and (namespace .. "/") or "") .. name
  elseif r.namespaced and namespace then s = s .. " in " .. namespace end
  return s
end

-- The options each verb documents (README, "REST verbs"), by verb.
local common = { namespace = "string", timeout = "seconds" }
local function spec(t)
  for k, v in pairs(common) do t[k] = v end
  return t
end
local write = { subresource = "string", dry_run = "boolean", field_manager = "string" }
local deleting = { propagation_policy = "string", grace_period = "integer", preconditions = "table",
  dry_run = "boolean" }
local verb_options = {
  get = spec{ subresource = "string", resource_version = "string" },
  list = spec{ label_selector = "string", field_selector = "string", limit = "integer", resource_version = "string",
    resource_version_match = "string" },
  create = spec{},
  update = spec{},
  patch = spec{ type = "string", force = "boolean" },
  delete = spec{},
  delete_collection = spec{ label_selector = "string", field_selector = "string" },
}
for _, v in ipairs{ "create", "update", "patch" } do
  for k, t in pairs(write) do verb_options[v][k] = t end
end
for _, v in ipairs{ "delete", "delete_collection" } do
  for k, t in pairs(deleting) do verb_options[v][k] = t end
end

-- raises at the caller of the verb
local function opts_table(opts, fname)
  return opts_check("kinformer: " .. fname, opts, verb_options[fname], 3)
end

-- Every object handed out carries apiVersion and kind.
local function stamp(obj, r)
  if type(obj) == "table" then
    if obj.apiVersion == nil then obj.apiVersion = r.api_version end
    if obj.kind == nil then obj.kind = r.kind end
  end
  return obj
end

function M.install(Client)
  --- Every preferred resource the server serves (cached; c:refresh() reloads).
  function Client:resources()
    if not self._resources then
      local list, how = discovery.load(self)
      if not list then return nil, how end
      self._resources, self._discovery = list, how
    end
    return self._resources
  end

  --- Forgets the cached discovery and loads it again.
  function Client:refresh()
    self._resources = nil
    return self:resources()
  end

  --- The description of a resource named as kubectl names it.
  function Client:resolve(name)
    local list, err = self:resources()
    if not list then return nil, err end
    local r, rerr = discovery.resolve(list, name)
    if r or rerr then return r, rerr end
    -- not found: the resource may be new (a CRD created a moment ago)
    list, err = self:refresh()
    if not list then return nil, err end
    r, rerr = discovery.resolve(list, name)
    if r or rerr then return r, rerr end
    return nil, discovery.unknown(list, name)
  end

  -- The namespace a namespaced call works in: the option, the object's, or the context's.
  local function ns_for(self, r, opts, obj)
    if not r.namespaced then return nil end
    return opts.namespace or (obj and obj.metadata and obj.metadata.namespace) or self:namespace()
  end

  local function call(self, verb, method, r, ns, name, path, body, opts, ctype)
    local res, err = self:_request(method, path, body, { content_type = ctype, timeout = opts.timeout },
      where(verb, r, ns, name))
    if res == nil then return nil, err end
    return stamp(res, r)
  end

  function Client:get(resource, name, opts)
    opts = opts_table(opts, "get")
    check(type(name) == "string" and name ~= "", "get(resource, name [, opts]): name must be a non-empty string")
    local r, err = self:resolve(resource)
    if not r then return nil, err end
    local ns = ns_for(self, r, opts)
    local path = path_of(r, ns, name, opts.subresource) .. query{ resourceVersion = opts.resource_version }
    return call(self, "get", "GET", r, ns, name, path, nil, opts)
  end

  --- Lists in pages of opts.limit, following continue tokens; when a token
  -- expires (410) the list starts again, as client-go's pager does.
  function Client:list(resource, opts)
    opts = opts_table(opts, "list")
    check(opts.limit == nil or (math.type(opts.limit) == "integer" and opts.limit > 0),
      "list: limit must be a positive integer")
    local r, err = self:resolve(resource)
    if not r then return nil, err end
    local ns = r.namespaced and opts.namespace or nil -- omitted: every namespace
    local base = path_of(r, ns)
    local items, cont, first, restarts = {}, nil, nil, 0
    while true do
      local params = { labelSelector = opts.label_selector, fieldSelector = opts.field_selector,
        limit = opts.limit, ["continue"] = cont }
      if not cont then
        params.resourceVersion = opts.resource_version
        params.resourceVersionMatch = opts.resource_version_match
      end
      local page, perr = self:_request("GET", base .. query(params), nil, { timeout = opts.timeout },
        where("list", r, ns))
      if page then
        first = first or page
        local item_version = page.apiVersion or r.api_version
        local item_kind = (page.kind or ""):match("^(.*)List$") or r.kind
        for _, it in ipairs(page.items or {}) do
          if it.apiVersion == nil then it.apiVersion = item_version end
          if it.kind == nil then it.kind = item_kind end
          items[#items + 1] = it
        end
        first.metadata = page.metadata
        cont = page.metadata and page.metadata["continue"]
        if cont == nil or cont == "" then break end
      elseif cont and perr.code == 410 and restarts < 3 then
        -- the snapshot the token pointed at is gone: a consistent list again
        restarts, items, cont, first = restarts + 1, {}, nil, nil
      else
        return nil, perr
      end
    end
    first.items = items
    if first.metadata then first.metadata["continue"] = nil end
    return first
  end

  function Client:create(resource, obj, opts)
    opts = opts_table(opts, "create")
    check(type(obj) == "table", "create(resource, obj [, opts]): obj must be a table")
    local r, err = self:resolve(resource)
    if not r then return nil, err end
    stamp(obj, r)
    local ns = ns_for(self, r, opts, obj)
    local path = path_of(r, ns, nil, opts.subresource)
      .. query{ dryRun = opts.dry_run and "All" or nil, fieldManager = opts.field_manager }
    return call(self, "create", "POST", r, ns, obj.metadata and obj.metadata.name, path, obj, opts)
  end

  function Client:update(resource, obj, opts)
    opts = opts_table(opts, "update")
    check(type(obj) == "table" and type(obj.metadata) == "table" and type(obj.metadata.name) == "string",
      "update(resource, obj [, opts]): obj.metadata.name is needed")
    local r, err = self:resolve(resource)
    if not r then return nil, err end
    stamp(obj, r)
    local ns = ns_for(self, r, opts, obj)
    local path = path_of(r, ns, obj.metadata.name, opts.subresource)
      .. query{ dryRun = opts.dry_run and "All" or nil, fieldManager = opts.field_manager }
    return call(self, "update", "PUT", r, ns, obj.metadata.name, path, obj, opts)
  end

  local patch_types = {
    merge = "application/merge-patch+json",
    json = "application/json-patch+json",
    strategic = "application/strategic-merge-patch+json",
    apply = "application/apply-patch+yaml",
  }

  function Client:patch(resource, name, patch, opts)
    opts = opts_table(opts, "patch")
    check(type(name) == "string" and name ~= "", "patch(resource, name, patch [, opts]): name must be a string")
    check(type(patch) == "table" or type(patch) == "string", "patch: the patch must be a table or a string")
    local ptype = opts.type or "merge"
    local ctype = patch_types[ptype]
    check(ctype, ("patch: type must be merge, json, strategic or apply, not %q"):format(tostring(ptype)))
    check(ptype ~= "apply" or type(opts.field_manager) == "string",
      "patch: a server-side apply (type = \"apply\") needs field_manager")
    local r, err = self:resolve(resource)
    if not r then return nil, err end
    if ptype == "apply" and type(patch) == "table" then stamp(patch, r) end
    local ns = ns_for(self, r, opts, type(patch) == "table" and patch or nil)
    local path = path_of(r, ns, name, opts.subresource) .. query{
      dryRun = opts.dry_run and "All" or nil, fieldManager = opts.field_manager,
      force = ptype == "apply" and opts.force and "true" or nil }
    return call(self, "patch", "PATCH", r, ns, name, path, patch, opts, ctype)
  end

  local function delete_options(opts, fname)
    local pre = opts_check("kinformer: " .. fname .. ": preconditions", opts.preconditions,
      { uid = "string", resource_version = "string", resourceVersion = "string" }, 3)
    if opts.preconditions == nil then pre = nil end
    if opts.propagation_policy == nil and opts.grace_period == nil and pre == nil and not opts.dry_run then
      return nil
    end
    return {
      apiVersion = "v1", kind = "DeleteOptions", propagationPolicy = opts.propagation_policy,
      gracePeriodSeconds = opts.grace_period, dryRun = opts.dry_run and { "All" } or nil,
      preconditions = pre and { uid = pre.uid, resourceVersion = pre.resourceVersion or pre.resource_version } or nil,
    }
  end

  function Client:delete(resource, name, opts)
    opts = opts_table(opts, "delete")
    check(type(name) == "string" and name ~= "", "delete(resource, name [, opts]): name must be a string")
    local body = delete_options(opts, "delete")
    local r, err = self:resolve(resource)
    if not r then return nil, err end
    local ns = ns_for(self, r, opts)
    return call(self, "delete", "DELETE", r, ns, name, path_of(r, ns, name), body, opts)
  end

  function Client:delete_collection(resource, opts)
    opts = opts_table(opts, "delete_collection")
    local body = delete_options(opts, "delete_collection")
    local r, err = self:resolve(resource)
    if not r then return nil, err end
    local ns = ns_for(self, r, opts)
    local path = path_of(r, ns) .. query{ labelSelector = opts.label_selector, fieldSelector = opts.field_selector }
    return call(self, "delete_collection", "DELETE", r, ns, nil, path, body, opts)
  end
end

M.errors = errors
return M
