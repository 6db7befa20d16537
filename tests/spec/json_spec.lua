-- switchyard.json: cjson's values, with empty arrays kept as arrays both ways.
local json = require("switchyard.json")

describe("switchyard.json", function()
  it("round-trips empty arrays and empty objects", function()
    local text = '{"a":[],"b":{},"c":[1,[]],"d":{"e":[]}}'
    local v = json.decode(text)
    assert.is_true(json.is_array(v.a))
    assert.is_false(json.is_array(v.b))
    assert.same(json.decode(json.encode(v)), v)
    local again = json.encode(v)
    assert.truthy(again:find('"a":[]', 1, true))
    assert.truthy(again:find('"b":{}', 1, true))
    assert.truthy(again:find('"c":[1,[]]', 1, true))
    assert.truthy(again:find('"e":[]', 1, true))
  end)

  it("encodes an unmarked empty table as an object, a marked one as an array", function()
    assert.equals("{}", json.encode({}))
    assert.equals("[]", json.encode(json.array()))
    assert.equals('{"list":[]}', json.encode({ list = json.array({}) }))
    assert.equals("[1,2]", json.encode(json.array({ 1, 2 })))
  end)

  it("leaves the encoded value unchanged (no marker left behind)", function()
    local v = { list = json.array() }
    json.encode(v)
    assert.is_nil(v.list[1])
    assert.is_nil(next(v.list))
  end)

  it("keeps JSON null as json.null", function()
    local v = json.decode('{"a":null,"b":[]}')
    assert.equals(json.null, v.a)
    assert.equals('null', json.encode(json.null))
  end)

  it("rejects malformed JSON and JSON nested deeper than the limit", function()
    assert.has_error(function() json.decode('{"a": ') end)
    assert.has_error(function() json.decode(string.rep("[", 200) .. string.rep("]", 200)) end)
    assert.has_error(function() json.decode(string.rep("[", 200) .. "[]" .. string.rep("]", 200)) end)
  end)

  it("raises when a value cannot be encoded", function()
    assert.has_error(function() json.encode({ f = function() end }) end)
    assert.has_error(function() json.encode({ f = function() end, e = json.array() }) end)
  end)
end)
