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
decoder.decode_invalid_numbers(false) -- NaN, Infinity, hex, leading zeros are not JSON
local encoder = cjson.new()
encoder.encode_sparse_array(true)
encoder.encode_max_depth(M.MAX_DEPTH)
encoder.encode_invalid_numbers("null") -- as JSON.stringify

local dkjson = require("dkjson")
-- a sentinel no input can know in advance
local NONCE = string.format("%08x%08x", math.random(0, 0x7fffffff), math.random(0, 0x7fffffff))
local EMPTY = "\0switchyard-empty-array-" .. NONCE .. "\0"
local EMPTY_ENCODED = '%["\\u0000switchyard%-empty%-array%-' .. NONCE .. '\\u0000"%]'

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

-- Collects the empty tables marked as arrays in v (depth-bounded like the encoder), and the numbers that
-- %.14g would round.
local NUM = "\0switchyard-number\0"
local function collect(v, out, nums, depth)
  if depth > M.MAX_DEPTH then return end
  if getmetatable(v) == M.array_mt and next(v) == nil then
    out[#out + 1] = v
    return
  end
  for k, x in pairs(v) do
    if type(x) == "table" then collect(x, out, nums, depth + 1)
    elseif type(x) == "number" and x == x and x ~= math.huge and x ~= -math.huge
      and tonumber(string.format("%.14g", x)) ~= x then
      nums[#nums + 1] = { v, k, x }
    end
  end
end

local function exact(x)
  for p = 15, 17 do
    local s = string.format("%." .. p .. "g", x)
    if tonumber(s) == x then return s end
  end
end

function M.encode(v)
  if type(v) ~= "table" then
    if type(v) == "number" and v == v and v ~= math.huge and v ~= -math.huge then return exact(v) or encoder.encode(v) end
    return encoder.encode(v)
  end
  local empties, nums = {}, {}
  collect(v, empties, nums, 0)
  if #empties == 0 and #nums == 0 then return encoder.encode(v) end
  for _, t in ipairs(empties) do rawset(t, 1, EMPTY) end
  for _, n in ipairs(nums) do rawset(n[1], n[2], NUM .. exact(n[3]) .. NUM) end
  local ok, text = pcall(encoder.encode, v)
  for _, t in ipairs(empties) do rawset(t, 1, nil) end
  for _, n in ipairs(nums) do rawset(n[1], n[2], n[3]) end
  if not ok then error(text, 2) end
  text = text:gsub('"\\u0000switchyard%-number\\u0000([^\\]*)\\u0000switchyard%-number\\u0000"', "%1")
  return (text:gsub(EMPTY_ENCODED, "[]"))
end

return M
