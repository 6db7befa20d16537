-- The in-memory twins (switchyard.testing) and the C primitives (core/lua/*.c) must not drift: both expose exactly
-- runtime.CORE_FUNCTIONS. The C side is read from the source, so adding a primitive in C without its twin (or the
-- other way round) fails here before it fails in production.
local runtime = require("switchyard.runtime")
local testing = require("switchyard.testing")

local function read(path)
  local f = assert(io.open(path, "r"), "cannot open " .. path .. " (run busted from the repository root)")
  local text = f:read("*a")
  f:close()
  return text
end

-- The body of C function `name` (from its definition line to the first "}" at the start of a line).
local function c_function(text, name)
  local s = text:find("\n[%w_ ]-[%s%*]" .. name .. "%(")
  assert(s, "function " .. name .. " not found")
  local e = text:find("\n}", s, true)
  return text:sub(s, e)
end

local function sorted(t)
  local out = {}
  for _, v in ipairs(t) do out[#out + 1] = v end
  table.sort(out)
  return out
end

-- The names each registration function of core/lua/*.c sets on the core table.
local function c_registered()
  local names = {}
  local function add(body)
    for n in body:gmatch('{%s*"([%w_]+)"%s*,%s*[%w_]+%s*}') do names[#names + 1] = n end -- luaL_Reg entries
    for n in body:gmatch('lua_setfield%(L,%s*[^,]+,%s*"([%w_]+)"%)') do
      if not n:match("^__") then names[#names + 1] = n end -- not the scan buffer's metatable
    end
  end
  add(c_function(read("core/lua/core.c"), "sy_lua_core_register"))
  add(c_function(read("core/lua/kafka.c"), "sy_lua_kafka_register"))
  add(c_function(read("core/lua/store.c"), "sy_lua_store_register"))
  return names
end

describe("twin parity", function()
  local app = testing.load_string("")

  it("the twin core has exactly runtime.CORE_FUNCTIONS, all functions", function()
    local names = {}
    for k, v in pairs(app.core) do
      assert.equals("function", type(v), k)
      names[#names + 1] = k
    end
    assert.same(sorted(runtime.CORE_FUNCTIONS), sorted(names))
  end)

  it("testing.new_core builds the same set for any harness", function()
    local core = testing.new_core(app)
    for _, name in ipairs(runtime.CORE_FUNCTIONS) do assert.is_function(core[name], name) end
  end)

  it("the C host registers exactly runtime.CORE_FUNCTIONS (core.c, kafka.c, store.c)", function()
    assert.same(sorted(runtime.CORE_FUNCTIONS), sorted(c_registered()))
  end)

  it("the C --check stand-ins cover every store primitive the runtime needs", function()
    local body = c_function(read("core/lua/core.c"), "sy_lua_push_primitives")
    local stand_ins = {}
    for n in body:gmatch('"(store_[%w_]+)"') do stand_ins[#stand_ins + 1] = n end
    local expected = {}
    for _, n in ipairs(runtime.CORE_FUNCTIONS) do
      if n:match("^store_") then expected[#expected + 1] = n end
    end
    assert.same(sorted(expected), sorted(stand_ins))
  end)

  it("runtime.new accepts the twin and refuses a core with a missing primitive", function()
    assert.is_table(runtime.new(app.core))
    local partial = {}
    for k, v in pairs(app.core) do partial[k] = v end
    partial.store_scan = nil
    local ok, err = pcall(runtime.new, partial)
    assert.is_false(ok)
    assert.matches("core primitive missing: store_scan", err, 1, true)
  end)
end)
