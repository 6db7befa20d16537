-- switchyard.json: JSON for the router, lua-cjson's speed with empty arrays kept.
--
-- Debian's lua-cjson (2.1.0) decodes `[]` and `{}` to the same empty table and encodes every empty table as `{}`,
-- so an empty array would come back as an object: NestJS peers and HTTP clients notice. This module keeps cjson
-- for the common case and marks arrays with `json.array_mt` (the name OpenResty's lua-cjson uses):
-- * decode: cjson first (it enforces the depth limit and rejects bad JSON fast); when the text holds an empty
--   array, it is decoded again with dkjson (also packaged by Debian), which gives arrays the array metatable.
-- * encode: cjson, except that tables carrying `array_mt` with no elements are written `[]`.
-- Values are the same as cjson's otherwise (`json.null` is cjson.null). It does no I/O.

local cjson = require("cjson")

local M = {}

M.null = cjson.null
M.array_mt = { __jsontype = "array" }
M.MAX_DEPTH = 64

local decoder = cjson.new()
decoder.decode_max_depth(M.MAX_DEPTH)
local encoder = cjson.new()
encoder.encode_sparse_array(true)
encoder.encode_max_depth(M.MAX_DEPTH)

local dkjson = require("dkjson")
local EMPTY = "\0switchyard-empty-array\0"
local EMPTY_ENCODED = '%["\\u0000switchyard%-empty%-array\\u0000"%]'

-- Marks `t` (or a new table) as a JSON array, so that it encodes as [] when empty.
function M.array(t)
  return setmetatable(t or {}, M.array_mt)
end

function M.is_array(t)
  return getmetatable(t) == M.array_mt
end

-- Decodes JSON text; raises on malformed input (message without a Lua position prefix).
function M.decode(text)
  local v = decoder.decode(text)
  if type(v) == "table" and text:find("%[%s*%]") then
    local w, _, err = dkjson.decode(text, 1, cjson.null, nil, M.array_mt)
    if err then error(err, 0) end
    v = w
  end
  return v
end

-- Collects the empty tables marked as arrays in v (depth-bounded like the encoder).
local function collect(v, out, depth)
  if depth > M.MAX_DEPTH then return end
  if getmetatable(v) == M.array_mt and next(v) == nil then
    out[#out + 1] = v
    return
  end
  for _, x in pairs(v) do
    if type(x) == "table" then collect(x, out, depth + 1) end
  end
end

-- Encodes a Lua value as JSON text; raises on what JSON cannot hold (functions, excessive depth).
function M.encode(v)
  if type(v) ~= "table" then return encoder.encode(v) end
  local empties = {}
  collect(v, empties, 0)
  if #empties == 0 then return encoder.encode(v) end
  for _, t in ipairs(empties) do rawset(t, 1, EMPTY) end
  local ok, text = pcall(encoder.encode, v)
  for _, t in ipairs(empties) do rawset(t, 1, nil) end
  if not ok then error(text, 2) end
  return (text:gsub(EMPTY_ENCODED, "[]"))
end

return M
