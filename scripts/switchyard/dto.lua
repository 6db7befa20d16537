-- switchyard.dto: declarative DTO schemas, compiled once, validated per request.
--
--   local dto = require("switchyard.dto")
--   local CreateUserDto = dto.object {
--     name = dto.string { not_empty = true },
--     email = dto.email { not_empty = true },
--   }
--   local body, messages = CreateUserDto:validate(decoded_json)
--   -- success: body is a new, cleaned table and messages is nil
--   -- failure: body is nil and messages lists every failure, e.g.
--   --   { "email should not be empty", "email must be an email" }
--
-- Messages use class-validator's wording and NestJS ValidationPipe's flattening of nested
-- errors, so a 400 answer reads like the one of a NestJS service:
--   * a failure of field `city` inside field `address`: "address.city must be a string";
--   * a failure inside the element 0 of an array of objects: "items.0.name should not be empty";
--   * an array of scalars reports each failing constraint once for the whole array:
--     "each value in tags must be a string" (class-validator's `{ each: true }`); nested deeper,
--     NestJS prefixes the parent path: "user.each value in tags must be a string";
--   * an object field whose value is not an object (or is missing/null while required):
--     "nested property address must be either object or array"; an element of an array of
--     objects that is not an object: "each value in nested property items must be either
--     object or array" (reported once, on the array);
--   * an unknown key with unknown = "reject": "property zip should not exist" (NestJS
--     forbidNonWhitelisted); those come before the messages of the declared fields, sorted by
--     key, as class-validator runs its whitelist check first.
--   * dto.any on a missing/null value: "x should not be null or undefined" (IsDefined).
--   * Not class-validator: a string that is not valid UTF-8 fails with
--     "x must be a valid UTF-8 string"; a top-level value that is not an object, for an object
--     schema, fails with the single message "body must be an object".
-- A required property that is missing (nil) or JSON null (cjson.null) fails every constraint
-- it carries, as in class-validator: dto.string{ not_empty = true } on a missing `name` gives
-- { "name should not be empty", "name must be a string" }. Within one property the order is:
-- not_empty, the type check, then the other constraints (min/min_length, max/max_length,
-- length, pattern; min_size, max_size for arrays). A value of the wrong type also fails every
-- constraint that needs the right type (class-validator's MinLength fails on a number, ...).
--
-- Field order. dto.object receives either a hash table ({ name = ..., email = ... }), whose
-- fields are then checked and reported in alphabetical order of their names (a Lua hash table
-- has no order), or an ordered list of pairs ({ { "name", dto.string{} }, { "email",
-- dto.email{} } }), whose declaration order is kept. schema.fields is that order.
--
-- Arrays and objects. cjson decodes [] and {} both as an empty Lua table: a table is an array
-- when its keys are exactly the integers 1..n (n may be 0) and an object when all its keys are
-- strings, so an empty table is both. A table with the metatable switchyard.json.array_mt (what
-- switchyard.json gives decoded arrays) is an array only. Cleaned arrays get that metatable, so
-- that an empty one encodes back as [].
--
-- Cleaned values. validate() never mutates its input. Objects and arrays are rebuilt (unknown
-- keys dropped under "strip"); values of dto.any and of unknown keys kept under "allow" are
-- shared with the input, not copied. A null on an optional field is kept as cjson.null (JSON
-- semantics: compare with cjson.null, which is truthy in Lua); a missing optional field stays
-- absent.
--
-- Strings are measured in Unicode code points (JavaScript counts UTF-16 units, so an emoji
-- counts 1 here and 2 in class-validator). Patterns are Lua patterns, unanchored like a JS
-- regex without ^...$, and checked at declaration time.
--
-- Nesting is bounded at declaration time: a schema may not nest deeper than 32 levels, so
-- validation depth is bounded whatever the input is. Sizes are the HTTP layer's business.
local dto = {}

local type, pairs, ipairs, next, select = type, pairs, ipairs, next, select
local tostring, tonumber = tostring, tonumber
local getmetatable, setmetatable, error, getinfo = getmetatable, setmetatable, error, debug.getinfo
local byte, find, format, sub = string.byte, string.find, string.format, string.sub
local concat, sort = table.concat, table.sort
local floor, huge = math.floor, math.huge

local cjson_ok, cjson = pcall(require, "cjson")
if not cjson_ok then
  cjson = nil
end
-- JSON null as decoded by lua-cjson; a private sentinel when cjson is unavailable.
local NULL = cjson and cjson.null or setmetatable({}, { __tostring = function() return "null" end })
local ARRAY_MT = require("switchyard.json").array_mt
local EMPTY_ARRAY_MT = cjson and cjson.empty_array_mt or nil

local new_table
do
  local ok, tnew = pcall(require, "table.new")
  if ok then
    new_table = tnew
  else
    new_table = function() return {} end
  end
end

local MAX_DEPTH = 32
local MAX_SAFE_INTEGER = 2 ^ 53

dto.null = NULL
dto.MAX_DEPTH = MAX_DEPTH

local Schema = {}
Schema.__index = Schema

local function is_schema(x)
  return type(x) == "table" and getmetatable(x) == Schema
end
dto.is_schema = is_schema

---------------------------------------------------------------------------------------------------
-- helpers

-- JavaScript-like rendering of a number (as in "must not be less than 1.5").
local function fmt_num(n)
  if n ~= n then
    return "NaN"
  elseif n == huge then
    return "Infinity"
  elseif n == -huge then
    return "-Infinity"
  elseif n == 0 then
    return "0"
  elseif n == floor(n) and n < 1e21 and n > -1e21 then
    return format("%.0f", n)
  end
  local s
  for precision = 15, 17 do
    s = format("%." .. precision .. "g", n)
    if tonumber(s) == n then
      break
    end
  end
  return (s:gsub("e([%+%-])0*(%d)", "e%1%2"))
end

local function fmt_value(v)
  if type(v) == "number" then
    return fmt_num(v)
  end
  return tostring(v)
end

-- Number of code points of a UTF-8 string, or nil when it is not valid UTF-8 (RFC 3629: no
-- overlong forms, no surrogates, nothing above U+10FFFF).
-- (Byte loops rather than string.find patterns here and in is_email: LuaJIT compiles them.)
local function utf8_len(s)
  local len = #s
  local i = 1
  while i <= len and byte(s, i) < 0x80 do -- ASCII prefix
    i = i + 1
  end
  if i > len then
    return len
  end
  local n = i - 1
  while i <= len do
    local c = byte(s, i)
    if c < 0x80 then
      i = i + 1
    elseif c >= 0xC2 and c <= 0xDF then
      local c2 = byte(s, i + 1)
      if not c2 or c2 < 0x80 or c2 > 0xBF then
        return nil
      end
      i = i + 2
    elseif c >= 0xE0 and c <= 0xEF then
      local c2, c3 = byte(s, i + 1, i + 2)
      local lo, hi = 0x80, 0xBF
      if c == 0xE0 then
        lo = 0xA0
      elseif c == 0xED then
        hi = 0x9F
      end
      if not c3 or c2 < lo or c2 > hi or c3 < 0x80 or c3 > 0xBF then
        return nil
      end
      i = i + 3
    elseif c >= 0xF0 and c <= 0xF4 then
      local c2, c3, c4 = byte(s, i + 1, i + 3)
      local lo, hi = 0x80, 0xBF
      if c == 0xF0 then
        lo = 0x90
      elseif c == 0xF4 then
        hi = 0x8F
      end
      if not c4 or c2 < lo or c2 > hi or c3 < 0x80 or c3 > 0xBF or c4 < 0x80 or c4 > 0xBF then
        return nil
      end
      i = i + 4
    else
      return nil
    end
    n = n + 1
  end
  return n
end
dto._utf8_len = utf8_len

-- Strict decimal syntax for opts.coerce: [+-] digits [. digits] [e [+-] digits]; no hex, no
-- blanks, no "inf"/"nan", no empty string.
local function parse_decimal(s)
  if not (find(s, "^[%+%-]?%d+%.?%d*$") or find(s, "^[%+%-]?%.%d+$")
      or find(s, "^[%+%-]?%d+%.?%d*[eE][%+%-]?%d+$") or find(s, "^[%+%-]?%.%d+[eE][%+%-]?%d+$")) then
    return nil
  end
  if byte(s, 1) == 43 then -- "+"
    s = sub(s, 2)
  end
  return tonumber(s)
end

-- validator.js isEmail with its defaults (allow_utf8_local_part, require_tld, no display
-- name, no IP domain, no quoted local part): local@domain, at most 254 bytes in all and 64 in
-- the local part. The local part is atoms of letters, digits, !#$%&'*+-/=?^_`{|}~ and
-- non-ASCII, separated by single dots. The domain is two labels or more of letters, digits,
-- hyphens (not first or last) and non-ASCII, 63 bytes at most each; the last label (the TLD)
-- is two letters or more, or an IDN "xn--..." label.
local function byte_set(chars, non_ascii)
  local set = {}
  for k = 1, #chars do
    set[byte(chars, k)] = true
  end
  for b = 48, 57 do set[b] = true end -- digits
  for b = 65, 90 do set[b] = true end -- letters
  for b = 97, 122 do set[b] = true end
  if non_ascii then
    for b = 128, 255 do set[b] = true end
  end
  return set
end
local EMAIL_LOCAL = byte_set("!#$%&'*+-/=?^_`{|}~", true)
local DOMAIN_LABEL = byte_set("-", true)

local function is_email(s)
  local len = #s
  if len > 254 then
    return false
  end
  local at = len
  while at > 0 and byte(s, at) ~= 64 do -- the last "@"
    at = at - 1
  end
  if at <= 1 or at > 65 or at == len then
    return false
  end
  local prev = 46 -- as if after a dot: no leading dot
  for i = 1, at - 1 do
    local b = byte(s, i)
    if b == 46 then
      if prev == 46 then
        return false
      end
    elseif not EMAIL_LOCAL[b] then
      return false
    end
    prev = b
  end
  if prev == 46 then
    return false
  end
  local start, labels = at + 1, 0
  for i = at + 1, len + 1 do
    local b = i <= len and byte(s, i) or 46
    if b == 46 then
      local size = i - start
      if size < 1 or size > 63 or byte(s, start) == 45 or byte(s, i - 1) == 45 then
        return false
      end
      labels = labels + 1
      if i <= len then
        start = i + 1
      end
    elseif not DOMAIN_LABEL[b] then
      return false
    end
  end
  if labels < 2 or len - start < 1 then
    return false
  end
  -- the TLD, s[start..len]: letters (or non-ASCII) only, or "xn--..."
  local b1, b2 = byte(s, start, start + 1)
  if (b1 == 120 or b1 == 88) and (b2 == 110 or b2 == 78) and len - start >= 3 then
    return true
  end
  for i = start, len do
    local b = byte(s, i)
    if b < 128 and not ((b >= 65 and b <= 90) or (b >= 97 and b <= 122)) then
      return false
    end
  end
  return true
end
dto._is_email = is_email

-- Checks the syntax of a Lua pattern without running it; returns nil or an error string.
-- (string.find(s, p) only reports the errors of the part it reaches.)
local function pattern_error(p)
  local n = #p
  local i = 1
  local stack, depth, levels = {}, 0, 0 -- open captures; all captures started
  local closed = {}
  if sub(p, 1, 1) == "^" then
    i = 2
  end
  local function quantifier()
    local q = sub(p, i, i)
    if q == "*" or q == "+" or q == "-" or q == "?" then
      i = i + 1
    end
  end
  local function set_end(j) -- j: index just after "["; returns the index after "]"
    if sub(p, j, j) == "^" then
      j = j + 1
    end
    repeat
      if j > n then
        return nil
      end
      local ch = sub(p, j, j)
      j = j + 1
      if ch == "%" then
        if j > n then
          return nil
        end
        j = j + 1
      end
    until sub(p, j, j) == "]"
    return j + 1
  end
  while i <= n do
    local c = sub(p, i, i)
    if c == "(" then
      levels = levels + 1
      if levels > 32 then
        return "too many captures"
      end
      if sub(p, i + 1, i + 1) == ")" then -- position capture
        closed[levels] = true
        i = i + 2
      else
        depth = depth + 1
        stack[depth] = levels
        i = i + 1
      end
    elseif c == ")" then
      if depth == 0 then
        return "invalid pattern capture (unmatched ')')"
      end
      closed[stack[depth]] = true
      depth = depth - 1
      i = i + 1
    elseif c == "$" and i == n then
      i = i + 1
    elseif c == "%" then
      local d = sub(p, i + 1, i + 1)
      if d == "" then
        return "malformed pattern (ends with '%')"
      elseif d == "b" then
        if i + 3 > n then
          return "missing arguments to '%b'"
        end
        i = i + 4
      elseif d == "f" then
        if sub(p, i + 2, i + 2) ~= "[" then
          return "missing '[' after '%f' in pattern"
        end
        local j = set_end(i + 3)
        if not j then
          return "malformed pattern (missing ']')"
        end
        i = j
      elseif find(d, "^%d$") then
        local k = tonumber(d)
        if k == 0 or k > levels or not closed[k] then
          return "invalid capture index %" .. d
        end
        i = i + 2
      else
        i = i + 2
        quantifier()
      end
    elseif c == "[" then
      local j = set_end(i + 1)
      if not j then
        return "malformed pattern (missing ']')"
      end
      i = j
      quantifier()
    else
      i = i + 1
      quantifier()
    end
  end
  if depth > 0 then
    return "unfinished capture"
  end
  local ok, err = pcall(find, "", p)
  if not ok then
    return tostring(err)
  end
  return nil
end
dto._pattern_error = pattern_error

-- Array length if t is a Lua array (keys exactly 1..n), else nil.
local function array_len(t)
  if type(t) ~= "table" then
    return nil
  end
  local n, max = 0, 0
  for k in next, t do
    if type(k) ~= "number" or k < 1 or k % 1 ~= 0 then
      return nil
    end
    n = n + 1
    if k > max then
      max = k
    end
  end
  if n ~= max then
    return nil
  end
  return n
end

local function new_array(n)
  local t = new_table(n, 0)
  if ARRAY_MT then
    setmetatable(t, ARRAY_MT)
  end
  return t
end

local function describe_value(v)
  if type(v) == "string" then
    return format("%q", v)
  elseif v == NULL then
    return "null"
  elseif type(v) == "number" or type(v) == "boolean" or v == nil then
    return tostring(v)
  elseif is_schema(v) then
    return "a schema"
  end
  return "a " .. type(v)
end

---------------------------------------------------------------------------------------------------
-- option checking (declaration time)

local function is_count(v)
  return type(v) == "number" and v >= 0 and v == floor(v) and v <= MAX_SAFE_INTEGER
end

local OPTION_CHECKS = {
  boolean = function(v)
    return type(v) == "boolean", "must be a boolean"
  end,
  count = function(v)
    return is_count(v), "must be a non-negative integer"
  end,
  number = function(v)
    return type(v) == "number" and v == v and v ~= huge and v ~= -huge, "must be a finite number"
  end,
  length = function(v)
    if type(v) ~= "table" then
      return false, "must be a table { min, max }"
    end
    local lo, hi = v[1] or v.min, v[2] or v.max
    for k in pairs(v) do
      if k ~= 1 and k ~= 2 and k ~= "min" and k ~= "max" then
        return false, "must be a table { min, max } (unexpected key " .. tostring(k) .. ")"
      end
    end
    if not is_count(lo) or not is_count(hi) then
      return false, "must be a table { min, max } of two non-negative integers"
    end
    return true
  end,
  pattern = function(v)
    if type(v) == "string" then
      return true
    end
    if type(v) ~= "table" or type(v.lua) ~= "string" then
      return false, 'must be a Lua pattern string or a table { lua = "...", name = "..." }'
    end
    for k in pairs(v) do
      if k ~= "lua" and k ~= "name" then
        return false, 'must be a Lua pattern string or a table { lua = "...", name = "..." } '
          .. "(unexpected key " .. tostring(k) .. ")"
      end
    end
    if v.name ~= nil and (type(v.name) ~= "string" or v.name == "") then
      return false, "must have a non-empty string as name"
    end
    return true
  end,
  unknown = function(v)
    return v == "strip" or v == "reject" or v == "allow", 'must be "strip", "reject" or "allow"'
  end,
  values = function(v)
    return type(v) == "table", "must be a list of values"
  end,
}

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do
    keys[#keys + 1] = k
  end
  sort(keys, function(a, b)
    if type(a) == type(b) and (type(a) == "string" or type(a) == "number") then
      return a < b
    end
    return type(a) < type(b)
  end)
  return keys
end

-- Returns the options table (or an empty one) or nil, message. `spec` maps option name to a
-- check of OPTION_CHECKS. `allow_positional` lets integer keys through (dto.enum{"a", "b"}).
local function check_options(opts, spec, allow_positional)
  if opts == nil then
    return {}
  end
  if type(opts) ~= "table" or is_schema(opts) then
    return nil, "options must be a table, got " .. describe_value(opts)
  end
  local keys = sorted_keys(opts)
  for _, k in ipairs(keys) do
    if not (allow_positional and type(k) == "number") then
      local check = type(k) == "string" and spec[k]
      if not check then
        return nil, format("unknown option %s (valid options: %s)", describe_value(k),
          concat(sorted_keys(spec), ", "))
      end
      local ok, why = OPTION_CHECKS[check](opts[k])
      if not ok then
        return nil, format("option '%s' %s, got %s", k, why, describe_value(opts[k]))
      end
    end
  end
  return opts
end

local function check_range(lo_name, lo, hi_name, hi)
  if lo ~= nil and hi ~= nil and lo > hi then
    return format("%s (%s) is greater than %s (%s)", lo_name, fmt_num(lo), hi_name, fmt_num(hi))
  end
  return nil
end

local function new_schema(kind, optional, depth, desc_parts, check)
  if depth > MAX_DEPTH then
    return nil, format("schema nests deeper than %d levels", MAX_DEPTH)
  end
  local s = setmetatable({
    kind = kind,
    optional = optional == true,
    _depth = depth,
    _check = check,
  }, Schema)
  local parts = desc_parts or {}
  if s.optional then
    parts[#parts + 1] = "optional"
  end
  s._desc = #parts > 0 and (kind .. "(" .. concat(parts, ", ") .. ")") or kind
  return s
end

-- Message suffix -> rank, to list the deduplicated "each value in" messages of an array of
-- scalars in the constraint order whatever the order of the failing elements.
local function ranks(...)
  local r = {}
  for i = 1, select("#", ...) do
    local suffix = select(i, ...)
    if suffix then
      r[suffix] = i
    end
  end
  return r
end

local THIS_SOURCE = getinfo(1, "S").source

-- Raises msg at the line of the code that called into this module (like error(msg, 2) from
-- the public function), skipping frames without a line: when the call was a tail call
-- (`return dto.string{...}`), the nearest caller that still has a line is reported.
local function raise(msg)
  local level = 2
  while true do
    local info = getinfo(level, "Sl")
    if not info then
      error(msg, 0)
    end
    if info.source ~= THIS_SOURCE and info.currentline and info.currentline > 0 then
      error(msg, level)
    end
    level = level + 1
  end
end

-- Wraps a builder (returning schema or nil, message) into a public constructor that raises
-- at the caller's line.
local function constructor(name, build)
  return function(...)
    local s, err = build(...)
    if not s then
      raise("dto." .. name .. ": " .. err)
    end
    return s
  end
end

---------------------------------------------------------------------------------------------------
-- constructors

local M_NOT_EMPTY = " should not be empty"
local M_UTF8 = " must be a valid UTF-8 string"

dto.string = constructor("string", function(opts)
  local o, err = check_options(opts, {
    not_empty = "boolean", min_length = "count", max_length = "count", length = "length",
    pattern = "pattern", optional = "boolean",
  })
  if not o then
    return nil, err
  end
  local not_empty, min_len, max_len = o.not_empty == true, o.min_length, o.max_length
  local lmin, lmax
  if o.length then
    lmin, lmax = o.length[1] or o.length.min, o.length[2] or o.length.max
  end
  err = check_range("min_length", min_len, "max_length", max_len)
    or check_range("length min", lmin, "length max", lmax)
  if err then
    return nil, err
  end
  local pat, pat_shown
  if o.pattern ~= nil then
    if type(o.pattern) == "string" then
      pat, pat_shown = o.pattern, o.pattern
    else
      pat, pat_shown = o.pattern.lua, o.pattern.name or o.pattern.lua
    end
    local perr = pattern_error(pat)
    if perr then
      return nil, format("invalid pattern %q: %s", pat, perr)
    end
  end

  local M_TYPE = " must be a string"
  local M_MIN = min_len and format(" must be longer than or equal to %d characters", min_len)
  local M_MAX = max_len and format(" must be shorter than or equal to %d characters", max_len)
  local M_LMIN = lmin and format(" must be longer than or equal to %d characters", lmin)
  local M_LMAX = lmax and format(" must be shorter than or equal to %d characters", lmax)
  local M_LBOTH = lmin and format(" must be longer than or equal to %d and shorter than or equal "
    .. "to %d characters", lmin, lmax)
  local M_PAT = pat and format(" must match /%s/ regular expression", pat_shown)

  local function check(v, prefix, name, msgs)
    if type(v) == "string" then
      local ok = true
      if not_empty and v == "" then
        msgs[#msgs + 1] = prefix .. name .. M_NOT_EMPTY
        ok = false
      end
      local n = utf8_len(v)
      if not n then
        msgs[#msgs + 1] = prefix .. name .. M_UTF8
        return nil
      end
      if min_len and n < min_len then
        msgs[#msgs + 1] = prefix .. name .. M_MIN
        ok = false
      end
      if max_len and n > max_len then
        msgs[#msgs + 1] = prefix .. name .. M_MAX
        ok = false
      end
      if lmin then
        if n < lmin then
          msgs[#msgs + 1] = prefix .. name .. M_LMIN
          ok = false
        elseif n > lmax then
          msgs[#msgs + 1] = prefix .. name .. M_LMAX
          ok = false
        end
      end
      if pat and not find(v, pat) then
        msgs[#msgs + 1] = prefix .. name .. M_PAT
        ok = false
      end
      if ok then
        return v
      end
      return nil
    end
    local missing = v == nil or v == NULL
    if not_empty and missing then
      msgs[#msgs + 1] = prefix .. name .. M_NOT_EMPTY
    end
    msgs[#msgs + 1] = prefix .. name .. M_TYPE
    if min_len then
      msgs[#msgs + 1] = prefix .. name .. M_MIN
    end
    if max_len then
      msgs[#msgs + 1] = prefix .. name .. M_MAX
    end
    if lmin then
      -- class-validator's Length message: "longer than" for a falsy value, else the range
      if missing or v == false or v == 0 then
        msgs[#msgs + 1] = prefix .. name .. M_LMIN
      else
        msgs[#msgs + 1] = prefix .. name .. M_LBOTH
      end
    end
    if pat then
      msgs[#msgs + 1] = prefix .. name .. M_PAT
    end
    return nil
  end

  local parts = {}
  if not_empty then parts[#parts + 1] = "not_empty" end
  if min_len then parts[#parts + 1] = "min_length=" .. min_len end
  if max_len then parts[#parts + 1] = "max_length=" .. max_len end
  if lmin then parts[#parts + 1] = format("length=%d..%d", lmin, lmax) end
  if pat then parts[#parts + 1] = "pattern=/" .. pat_shown .. "/" end
  local s, serr = new_schema("string", o.optional, 1, parts, check)
  if not s then
    return nil, serr
  end
  s.not_empty, s.min_length, s.max_length, s.pattern = not_empty, min_len, max_len, pat
  s._ranks = ranks(M_NOT_EMPTY, M_TYPE, M_UTF8, M_MIN, M_MAX, M_LMIN, M_LMAX, M_LBOTH, M_PAT)
  if lmin then
    s.length = { lmin, lmax }
  end
  return s
end)

local function number_builder(kind)
  local M_TYPE = kind == "integer" and " must be an integer number"
    or " must be a number conforming to the specified constraints"
  return function(opts)
    local o, err = check_options(opts, { min = "number", max = "number", optional = "boolean" })
    if not o then
      return nil, err
    end
    local min, max = o.min, o.max
    err = check_range("min", min, "max", max)
    if err then
      return nil, err
    end
    local M_MIN = min and (" must not be less than " .. fmt_num(min))
    local M_MAX = max and (" must not be greater than " .. fmt_num(max))
    local integer = kind == "integer"

    local function check(v, prefix, name, msgs, coerce)
      if coerce and type(v) == "string" then
        v = parse_decimal(v) or v
      end
      if type(v) == "number" then
        local ok = true
        if v ~= v or v == huge or v == -huge
            or (integer and (v % 1 ~= 0 or v > MAX_SAFE_INTEGER or v < -MAX_SAFE_INTEGER)) then
          msgs[#msgs + 1] = prefix .. name .. M_TYPE
          ok = false
        end
        if min and not (v >= min) then
          msgs[#msgs + 1] = prefix .. name .. M_MIN
          ok = false
        end
        if max and not (v <= max) then
          msgs[#msgs + 1] = prefix .. name .. M_MAX
          ok = false
        end
        if ok then
          return v
        end
        return nil
      end
      msgs[#msgs + 1] = prefix .. name .. M_TYPE
      if min then
        msgs[#msgs + 1] = prefix .. name .. M_MIN
      end
      if max then
        msgs[#msgs + 1] = prefix .. name .. M_MAX
      end
      return nil
    end

    local parts = {}
    if min then parts[#parts + 1] = "min=" .. fmt_num(min) end
    if max then parts[#parts + 1] = "max=" .. fmt_num(max) end
    local s, serr = new_schema(kind, o.optional, 1, parts, check)
    if not s then
      return nil, serr
    end
    s.min, s.max = min, max
    s._ranks = ranks(M_TYPE, M_MIN, M_MAX)
    return s
  end
end

dto.number = constructor("number", number_builder("number"))
dto.integer = constructor("integer", number_builder("integer"))

dto.boolean = constructor("boolean", function(opts)
  local o, err = check_options(opts, { optional = "boolean" })
  if not o then
    return nil, err
  end
  local M_TYPE = " must be a boolean value"
  local function check(v, prefix, name, msgs, coerce)
    if v == true or v == false then
      return v
    end
    if coerce then
      if v == "true" then
        return true
      elseif v == "false" then
        return false
      end
    end
    msgs[#msgs + 1] = prefix .. name .. M_TYPE
    return nil
  end
  return new_schema("boolean", o.optional, 1, nil, check)
end)

dto.email = constructor("email", function(opts)
  local o, err = check_options(opts, { not_empty = "boolean", optional = "boolean" })
  if not o then
    return nil, err
  end
  local not_empty = o.not_empty == true
  local M_TYPE = " must be an email"
  local function check(v, prefix, name, msgs)
    if type(v) == "string" then
      if v == "" then
        if not_empty then
          msgs[#msgs + 1] = prefix .. name .. M_NOT_EMPTY
        end
      elseif not utf8_len(v) then
        msgs[#msgs + 1] = prefix .. name .. M_UTF8
        return nil
      elseif is_email(v) then
        return v
      end
    elseif not_empty and (v == nil or v == NULL) then
      msgs[#msgs + 1] = prefix .. name .. M_NOT_EMPTY
    end
    msgs[#msgs + 1] = prefix .. name .. M_TYPE
    return nil
  end
  local s, serr = new_schema("email", o.optional, 1, not_empty and { "not_empty" } or nil, check)
  if not s then
    return nil, serr
  end
  s.not_empty = not_empty
  s._ranks = ranks(M_NOT_EMPTY, M_UTF8, M_TYPE)
  return s
end)

dto.enum = constructor("enum", function(opts)
  local o, err = check_options(opts, { values = "values", optional = "boolean" }, true)
  if not o then
    return nil, err
  end
  local values = o.values
  if o[1] ~= nil then
    if values ~= nil then
      return nil, "give the values either positionally or as values = {...}, not both"
    end
    values = {}
    for k, v in pairs(o) do
      if type(k) == "number" then
        values[k] = v
      end
    end
  end
  if values == nil then
    return nil, 'no values (dto.enum{ "a", "b" } or dto.enum{ values = { "a", "b" } })'
  end
  local n = 0
  for k in pairs(values) do
    if type(k) ~= "number" or k < 1 or k % 1 ~= 0 then
      return nil, "values must be a list (unexpected key " .. describe_value(k) .. ")"
    end
    n = n + 1
  end
  if n == 0 then
    return nil, "values must not be empty"
  end
  local list, set, by_text, shown = {}, {}, {}, {}
  for i = 1, n do
    local v = values[i]
    if v == nil then
      return nil, "values must be a list without holes"
    end
    local tv = type(v)
    if not (tv == "string" or tv == "boolean" or (tv == "number" and v == v and v ~= huge and v ~= -huge)) then
      return nil, format("value #%d must be a string, a finite number or a boolean, got %s", i,
        describe_value(v))
    end
    list[i] = v
    set[v] = true
    shown[i] = fmt_value(v)
    if tv ~= "string" then
      by_text[fmt_value(v)] = v -- opts.coerce: "1" -> 1, "true" -> true
    end
  end
  local M_IN = " must be one of the following values: " .. concat(shown, ", ")
  local function check(v, prefix, name, msgs, coerce)
    if v ~= nil and set[v] then
      return v
    end
    if coerce and type(v) == "string" and by_text[v] ~= nil then
      return by_text[v]
    end
    msgs[#msgs + 1] = prefix .. name .. M_IN
    return nil
  end
  local s, serr = new_schema("enum", o.optional, 1, { concat(shown, "|") }, check)
  if not s then
    return nil, serr
  end
  s.values = list
  return s
end)

dto.any = constructor("any", function(opts)
  local o, err = check_options(opts, { optional = "boolean" })
  if not o then
    return nil, err
  end
  local M_DEFINED = " should not be null or undefined"
  local function check(v, prefix, name, msgs)
    if v == nil or v == NULL then
      msgs[#msgs + 1] = prefix .. name .. M_DEFINED
      return nil
    end
    return v
  end
  return new_schema("any", o.optional, 1, nil, check)
end)

local M_NESTED = " must be either object or array"
local BAD_SHAPE = {} -- second result of an object check asked to stay quiet about the shape

dto.array = constructor("array", function(item, opts)
  if not is_schema(item) then
    return nil, "the first argument must be the schema of the items, got " .. describe_value(item)
      .. " (dto.array(dto.string{}, { min_size = 1 }))"
  end
  local o, err = check_options(opts, { min_size = "count", max_size = "count", optional = "boolean" })
  if not o then
    return nil, err
  end
  local min_size, max_size = o.min_size, o.max_size
  err = check_range("min_size", min_size, "max_size", max_size)
  if err then
    return nil, err
  end
  local M_TYPE = " must be an array"
  local M_MIN = min_size and format(" must contain at least %d elements", min_size)
  local M_MAX = max_size and format(" must contain no more than %d elements", max_size)
  local icheck, ioptional, ikind = item._check, item.optional, item.kind
  local each = ikind ~= "object" and ikind ~= "array" -- scalar items: "each value in x ..."

  local index_names = {} -- "0", "1", ... built once
  local function index_name(i)
    local s = index_names[i]
    if not s then
      s = tostring(i - 1)
      if i <= 1024 then
        index_names[i] = s
      end
    end
    return s
  end

  local iranks = item._ranks
  -- msgs[from..] hold the messages of the items ("each value in x ..."): keep each once, in
  -- the constraint order of the item schema.
  local function dedupe(msgs, from, skip)
    local seen, uniq = {}, {}
    for i = from, #msgs do
      local m = msgs[i]
      msgs[i] = nil
      if not seen[m] then
        seen[m] = #uniq + 1
        uniq[#uniq + 1] = m
      end
    end
    if iranks then
      sort(uniq, function(a, b)
        local ra, rb = iranks[sub(a, skip)] or 0, iranks[sub(b, skip)] or 0
        if ra ~= rb then
          return ra < rb
        end
        return seen[a] < seen[b]
      end)
    end
    for i = 1, #uniq do
      msgs[from + i - 1] = uniq[i]
    end
  end

  local function check(v, prefix, name, msgs, coerce, cprefix)
    local n = array_len(v)
    if not n then
      msgs[#msgs + 1] = prefix .. name .. M_TYPE
      if min_size then
        msgs[#msgs + 1] = prefix .. name .. M_MIN
      end
      if max_size then
        msgs[#msgs + 1] = prefix .. name .. M_MAX
      end
      return nil
    end
    local before = #msgs
    if min_size and n < min_size then
      msgs[#msgs + 1] = prefix .. name .. M_MIN
    end
    if max_size and n > max_size then
      msgs[#msgs + 1] = prefix .. name .. M_MAX
    end
    local out = new_array(n)
    if n == 0 then
      if #msgs > before then
        return nil
      end
      return out
    end
    if each then
      local ename = "each value in " .. name
      local from = #msgs + 1
      for i = 1, n do
        local e = v[i]
        if ioptional and e == NULL then
          out[i] = e
        else
          out[i] = icheck(e, prefix, ename, msgs, coerce)
        end
      end
      if #msgs > from then
        dedupe(msgs, from, #prefix + #ename + 1)
      end
    else
      local cp = cprefix or (prefix .. name .. ".")
      local bad_shape = false
      for i = 1, n do
        local e = v[i]
        if ioptional and e == NULL then
          out[i] = e
        else
          local c, shape = icheck(e, cp, index_name(i), msgs, coerce, nil, true)
          out[i] = c
          if shape == BAD_SHAPE then
            bad_shape = true
          end
        end
      end
      if bad_shape then
        msgs[#msgs + 1] = prefix .. "each value in nested property " .. name .. M_NESTED
      end
    end
    if #msgs > before then
      return nil
    end
    return out
  end

  local s, serr = new_schema("array", o.optional, item._depth + 1, nil, check)
  if not s then
    return nil, serr
  end
  local parts = {}
  if min_size then parts[#parts + 1] = "min_size=" .. min_size end
  if max_size then parts[#parts + 1] = "max_size=" .. max_size end
  if s.optional then parts[#parts + 1] = "optional" end
  s._desc = "array<" .. item._desc .. ">" .. (#parts > 0 and ("(" .. concat(parts, ", ") .. ")") or "")
  s.item, s.min_size, s.max_size = item, min_size, max_size
  return s
end)

-- Fields: a hash table { name = schema } (alphabetical order) or an ordered list
-- { { "name", schema }, ... } (declaration order). Returns the ordered list or nil, message.
local function collect_fields(fields)
  if type(fields) ~= "table" or is_schema(fields) then
    return nil, "the first argument must be a table of fields, got " .. describe_value(fields)
  end
  local list = {}
  if fields[1] ~= nil then
    local n = 0
    for k in pairs(fields) do
      if type(k) ~= "number" then
        return nil, "fields mix the ordered form { { \"name\", schema }, ... } with the named "
          .. "form { name = schema } (key " .. describe_value(k) .. ")"
      end
      n = n + 1
    end
    local seen = {}
    for i = 1, n do
      local entry = fields[i]
      if is_schema(entry) then
        return nil, format("field #%d is a schema without a name (ordered form: { \"name\", schema })", i)
      end
      if type(entry) ~= "table" or type(entry[1]) ~= "string" or entry[1] == "" or entry[3] ~= nil then
        return nil, format("field #%d must be a pair { \"name\", schema }, got %s", i,
          describe_value(entry))
      end
      local fname, fschema = entry[1], entry[2]
      for k in pairs(entry) do
        if k ~= 1 and k ~= 2 then
          return nil, format("field #%d (%s) has an unexpected key %s", i, fname, describe_value(k))
        end
      end
      if seen[fname] then
        return nil, format("field '%s' is declared twice", fname)
      end
      seen[fname] = true
      list[i] = { name = fname, schema = fschema }
    end
  else
    for k, v in pairs(fields) do
      if type(k) ~= "string" or k == "" then
        return nil, "field names must be non-empty strings, got " .. describe_value(k)
      end
      list[#list + 1] = { name = k, schema = v }
    end
    sort(list, function(a, b) return a.name < b.name end)
  end
  for _, f in ipairs(list) do
    if not is_schema(f.schema) then
      local hint = ""
      if type(f.schema) == "function" then
        hint = " (did you forget to call the constructor, e.g. dto.string{}?)"
      elseif f.name == "optional" or f.name == "unknown" then
        hint = " (options go in the second argument: dto.object(fields, { " .. f.name .. " = ... }))"
      end
      return nil, format("field '%s' is not a schema, got %s%s", f.name, describe_value(f.schema), hint)
    end
  end
  return list
end

dto.object = constructor("object", function(fields, opts)
  local list, err = collect_fields(fields)
  if not list then
    return nil, err
  end
  local o
  o, err = check_options(opts, { unknown = "unknown", optional = "boolean" })
  if not o then
    return nil, err
  end
  local mode = o.unknown or "strip"
  local strip, reject = mode == "strip", mode == "reject"
  local nfields = #list
  local names, checks, optionals, known = {}, {}, {}, {}
  local depth = 1
  for i, f in ipairs(list) do
    names[i], checks[i], optionals[i] = f.name, f.schema._check, f.schema.optional
    known[f.name] = true
    if f.schema._depth + 1 > depth then
      depth = f.schema._depth + 1
    end
  end

  -- quiet: the caller (an array of objects) reports a value that is not an object itself
  local function check(v, prefix, name, msgs, coerce, cprefix, quiet)
    local unknown_keys
    local shape_ok = type(v) == "table"
    if shape_ok then
      local mt = getmetatable(v)
      if mt ~= nil and (mt == ARRAY_MT or mt == EMPTY_ARRAY_MT) then
        shape_ok = false
      end
    end
    if shape_ok then
      for k in next, v do
        if type(k) ~= "string" then
          v = nil -- not an object
          break
        end
        if not strip and not known[k] then
          unknown_keys = unknown_keys or {}
          unknown_keys[#unknown_keys + 1] = k
        end
      end
    else
      v = nil
    end
    if v == nil then
      if quiet then
        return nil, BAD_SHAPE
      end
      msgs[#msgs + 1] = prefix .. "nested property " .. name .. M_NESTED
      return nil
    end
    local cp = cprefix or (prefix .. name .. ".")
    local before = #msgs
    local out = {}
    if unknown_keys then
      if reject then
        sort(unknown_keys)
        for i = 1, #unknown_keys do
          msgs[#msgs + 1] = cp .. "property " .. unknown_keys[i] .. " should not exist"
        end
      else -- allow
        for i = 1, #unknown_keys do
          local k = unknown_keys[i]
          out[k] = v[k]
        end
      end
    end
    for i = 1, nfields do
      local fname = names[i]
      local fv = v[fname]
      if fv == nil or fv == NULL then
        if optionals[i] then
          out[fname] = fv
        else
          checks[i](fv, cp, fname, msgs, coerce)
        end
      else
        out[fname] = checks[i](fv, cp, fname, msgs, coerce)
      end
    end
    if #msgs > before then
      return nil
    end
    return out
  end

  local s, serr = new_schema("object", o.optional, depth, nil, check)
  if not s then
    return nil, serr
  end
  local field_desc, parts = {}, {}
  for i, f in ipairs(list) do
    field_desc[i] = f.name .. ": " .. f.schema._desc
  end
  if mode ~= "strip" then parts[#parts + 1] = "unknown=" .. mode end
  if s.optional then parts[#parts + 1] = "optional" end
  s._desc = "object" .. (#parts > 0 and ("(" .. concat(parts, ", ") .. ")") or "")
    .. "{" .. concat(field_desc, ", ") .. "}"
  s.fields, s.unknown = list, mode
  return s
end)

---------------------------------------------------------------------------------------------------
-- schema methods

-- schema:validate(value, opts) -> cleaned, nil | nil, messages
-- opts.coerce = true: strings become numbers/integers ("42", "-1.5", "1e3"; strict decimal
--   syntax), booleans ("true"/"false") and non-string enum values ("1" -> 1) where the schema
--   wants them (path and query parameters).
-- opts.name: the name used for the top-level value in messages (default "body"): "body must
--   be an object", "body must be a string", "each value in body must be ...".
-- When the top-level schema is optional and value is nil or null, that value is returned.
function Schema:validate(value, opts)
  if getmetatable(self) ~= Schema then
    raise("validate must be called as schema:validate(value)")
  end
  local coerce, name = false, "body"
  if opts ~= nil then
    if type(opts) ~= "table" then
      raise("schema:validate: opts must be a table, got " .. describe_value(opts))
    end
    coerce = opts.coerce == true
    if opts.name ~= nil then
      name = tostring(opts.name)
    end
  end
  if (value == nil or value == NULL) and self.optional then
    return value, nil
  end
  local msgs = {}
  local out, shape = self._check(value, "", name, msgs, coerce, "", true)
  if shape == BAD_SHAPE then
    return nil, { name .. " must be an object" }
  end
  if msgs[1] ~= nil then
    return nil, msgs
  end
  return out, nil
end

-- dto.describe(schema) -> "object{email: email(not_empty), name: string(not_empty)}"
function dto.describe(schema)
  if not is_schema(schema) then
    raise("dto.describe: expected a schema, got " .. describe_value(schema))
  end
  return schema._desc
end

Schema.describe = dto.describe

function Schema.__tostring(s)
  return "dto." .. s._desc
end

return dto
