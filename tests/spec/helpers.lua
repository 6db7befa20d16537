-- Custom luassert assertions for specs of routes files (require("helpers") registers them):
--
--   assert.status(200, res)                          -- res from app:request(...)
--   assert.json_body({ id = 1 }, res)                -- the decoded body deep-equals the table
--   assert.emitted(app, "create_user", { id = 1 })   -- some record on the topic whose JSON value contains the fields
--   assert.emitted(app, "create_user", { id = 1 }, { key = "1", headers = { ["x-a"] = "b" } })
--   assert.is_not.emitted(app, "payment_failed")     -- no record at all on the topic
--
-- Their failure messages show what was there instead: the actual status and body, the records on the topic.
-- The module also returns the helpers it uses: contains(actual, expected), canonical(value) (JSON with sorted keys)
-- and describe_response(res).
local say = require("say")
local luassert = require("luassert")
local util = require("luassert.util")
local cjson = require("cjson")

local M = {}
local format = string.format

local function is_array(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  for i = 1, n do
    if t[i] == nil then return false end
  end
  return n > 0
end

-- JSON text with sorted keys, so that messages are stable and comparable by eye.
local function canonical(v)
  local t = type(v)
  if v == cjson.null then return "null" end
  if t == "table" then
    if next(v) == nil then return "{}" end
    local parts = {}
    if is_array(v) then
      for _, e in ipairs(v) do parts[#parts + 1] = canonical(e) end
      return "[" .. table.concat(parts, ",") .. "]"
    end
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    for _, k in ipairs(keys) do parts[#parts + 1] = cjson.encode(tostring(k)) .. ":" .. canonical(v[k]) end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  if t == "string" or t == "number" or t == "boolean" then return cjson.encode(v) end
  return "<" .. tostring(v) .. ">"
end
M.canonical = canonical

-- True when `actual` has every field of `expected` (recursively); scalars compare with ==.
local function contains(actual, expected)
  if type(expected) ~= "table" or expected == cjson.null then return actual == expected end
  if type(actual) ~= "table" then return false end
  for k, v in pairs(expected) do
    if not contains(actual[k], v) then return false end
  end
  return true
end
M.contains = contains

local function shorten(s, max)
  max = max or 600
  if #s > max then return s:sub(1, max) .. format("... (%d bytes)", #s) end
  return s
end

function M.describe_response(res)
  if type(res) ~= "table" then return "not a response: " .. tostring(res) end
  local hs = {}
  for k, v in pairs(res.headers or {}) do hs[#hs + 1] = k .. ": " .. v end
  table.sort(hs)
  return format("response: %s\n  headers: %s\n  body: %s", tostring(res.status), table.concat(hs, "; "),
    shorten(tostring(res.body)))
end

local function describe_record(i, r)
  local hs = {}
  for k, v in pairs(r.headers or {}) do hs[#hs + 1] = k .. "=" .. (v == "\0" and "\\0" or v) end
  table.sort(hs)
  return format("  [%d] key=%s partition=%s offset=%s%s value=%s", i, tostring(r.key), tostring(r.partition),
    tostring(r.offset), #hs > 0 and (" headers={" .. table.concat(hs, ", ") .. "}") or "",
    r.value == nil and "nil" or shorten(r.value, 300))
end

local function describe_topic(app, topic)
  local lines, others = {}, {}
  for _, r in ipairs(app.emitted) do
    if r.topic == topic then
      lines[#lines + 1] = describe_record(#lines + 1, r)
    else
      others[r.topic] = (others[r.topic] or 0) + 1
    end
  end
  local other = {}
  for t, n in pairs(others) do other[#other + 1] = format("%s (%d)", t, n) end
  table.sort(other)
  local text
  if #lines == 0 then
    text = format("no record was emitted on '%s'", topic)
  else
    text = format("the %d record(s) emitted on '%s':\n%s", #lines, topic, table.concat(lines, "\n"))
  end
  if #other > 0 then text = text .. "\n  other topics: " .. table.concat(other, ", ") end
  return text
end

-- Puts the finished message in arguments[1] (unformatted), so the registered message is just "%s".
local function set_message(arguments, message)
  arguments[1] = message
  arguments.n = 1
  arguments.nofmt = { true }
end

local function status(state, arguments)
  local expected, res = arguments[1], arguments[2]
  local ok = type(res) == "table" and res.status == expected
  if state.mod then
    set_message(arguments, format("Expected HTTP status %s, got %s.\n%s", tostring(expected),
      type(res) == "table" and tostring(res.status) or "no response", M.describe_response(res)))
  else
    set_message(arguments, format("Expected an HTTP status other than %s.\n%s", tostring(expected),
      M.describe_response(res)))
  end
  return ok
end

local function json_body(state, arguments)
  local expected, res = arguments[1], arguments[2]
  local actual = type(res) == "table" and res.json or nil
  local ok = actual ~= nil and util.deepcompare(expected, actual, true)
  local why = actual == nil and "the body is not JSON" or "the bodies differ"
  if state.mod then
    set_message(arguments, format("Expected the JSON body %s, but %s.\n  decoded: %s\n%s", canonical(expected), why,
      actual == nil and "-" or canonical(actual), M.describe_response(res)))
  else
    set_message(arguments, format("Expected a body other than %s.\n%s", canonical(expected), M.describe_response(res)))
  end
  return ok
end

local function record_matches(r, matcher, opts)
  if matcher ~= nil then
    if type(matcher) == "table" then
      if not contains(r.json, matcher) then return false end
    elseif r.value ~= matcher then
      return false
    end
  end
  if opts then
    if opts.key ~= nil and r.key ~= tostring(opts.key) then return false end
    if opts.partition ~= nil and r.partition ~= opts.partition then return false end
    if opts.headers ~= nil and not contains(r.headers, opts.headers) then return false end
  end
  return true
end

-- assert.emitted(app, topic, matcher, opts): matcher is a table of fields the decoded value must contain, a string
-- the raw value must equal, or nil (any record); opts: key, partition, headers (a subset).
local function emitted(state, arguments)
  local app, topic, matcher, opts = arguments[1], arguments[2], arguments[3], arguments[4]
  if type(app) ~= "table" or type(app.emitted) ~= "table" then
    set_message(arguments, "assert.emitted: the first argument must be a harness from testing.load")
    return not state.mod
  end
  local found
  for _, r in ipairs(app.emitted) do
    if r.topic == topic and record_matches(r, matcher, opts) then
      found = r
      break
    end
  end
  local what = matcher == nil and "a record" or ("a record matching " .. canonical(matcher))
  if opts then
    local o = {}
    for k, v in pairs(opts) do o[k] = v end
    what = what .. " with " .. canonical(o)
  end
  if state.mod then
    set_message(arguments, format("Expected %s on topic '%s', but %s", what, tostring(topic),
      describe_topic(app, topic)))
  else
    set_message(arguments, format("Expected no %s on topic '%s', but %s", (what:gsub("^a ", "")), tostring(topic),
      describe_topic(app, topic)))
  end
  return found ~= nil
end

say:set("assertion.switchyard.message", "%s")
luassert:register("assertion", "status", status, "assertion.switchyard.message", "assertion.switchyard.message")
luassert:register("assertion", "json_body", json_body, "assertion.switchyard.message", "assertion.switchyard.message")
luassert:register("assertion", "emitted", emitted, "assertion.switchyard.message", "assertion.switchyard.message")

return M
