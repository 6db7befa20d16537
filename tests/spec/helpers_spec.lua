-- busted spec for tests/spec/helpers.lua: each assertion passes when it should, fails when it should, and says why.
local testing = require("switchyard.testing")
local helpers = require("helpers")

-- The message of the assertion error raised by fn(...).
local function failure(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected the assertion to fail")
  return tostring(err)
end

describe("helpers", function()
  local app
  before_each(function()
    app = testing.load_string([[
      http.get("/ok", function() return { id = 1, tags = { "a", "b" }, nested = { x = json.null } } end)
      http.get("/text", function() return 200, "plain" end)
      http.post("/emit", function(req)
        kafka.emit("events", req.body, { key = req.body.id, headers = { ["x-source"] = "test" } })
        kafka.emit("other", { id = 0 })
        return 202
      end)
    ]])
  end)

  describe("assert.status", function()
    it("passes on the expected status and on a different one when negated", function()
      local res = app:get("/ok")
      assert.status(200, res)
      assert.is_not.status(404, res)
    end)

    it("fails with the actual status, headers and body", function()
      local msg = failure(assert.status, 201, app:get("/missing"))
      assert.matches("Expected HTTP status 201, got 404.", msg, 1, true)
      assert.matches('body: {"statusCode":404,"message":"Cannot GET /missing","error":"Not Found"}', msg, 1, true)
      assert.matches("content-type: application/json", msg, 1, true)
    end)

    it("fails readably when negated or given something that is not a response", function()
      assert.matches("Expected an HTTP status other than 200.", failure(assert.is_not.status, 200, app:get("/ok")), 1,
        true)
      assert.matches("got no response", failure(assert.status, 200, nil), 1, true)
    end)
  end)

  describe("assert.json_body", function()
    it("deep-compares the decoded body, JSON null included", function()
      assert.json_body({ id = 1, tags = { "a", "b" }, nested = { x = require("cjson").null } }, app:get("/ok"))
      assert.is_not.json_body({ id = 2 }, app:get("/ok"))
    end)

    it("fails with the expected and the actual JSON, keys sorted", function()
      local msg = failure(assert.json_body, { id = 2 }, app:get("/ok"))
      assert.matches('Expected the JSON body {"id":2}, but the bodies differ.', msg, 1, true)
      assert.matches('decoded: {"id":1,"nested":{"x":null},"tags":["a","b"]}', msg, 1, true)
    end)

    it("says when the body is not JSON at all", function()
      local msg = failure(assert.json_body, { id = 1 }, app:get("/text"))
      assert.matches("but the body is not JSON", msg, 1, true)
      assert.matches("body: plain", msg, 1, true)
    end)
  end)

  describe("assert.emitted", function()
    before_each(function()
      app:post("/emit", { id = "7", name = "Ada", address = { city = "Paris", zip = "75001" } })
    end)

    it("finds a record whose JSON value contains the fields, nested ones included", function()
      assert.emitted(app, "events", { name = "Ada" })
      assert.emitted(app, "events", { address = { city = "Paris" } })
      assert.emitted(app, "events")
      assert.emitted(app, "events", { id = "7" }, { key = "7", headers = { ["x-source"] = "test" } })
      assert.emitted(app, "other", '{"id":0}')
    end)

    it("negated, passes when nothing matches", function()
      assert.is_not.emitted(app, "events", { name = "Bob" })
      assert.is_not.emitted(app, "events", { name = "Ada" }, { key = "8" })
      assert.is_not.emitted(app, "nothing")
    end)

    it("fails listing the records of the topic and the other topics", function()
      local msg = failure(assert.emitted, app, "events", { name = "Bob" })
      assert.matches([[Expected a record matching {"name":"Bob"} on topic 'events']], msg, 1, true)
      assert.matches("the 1 record(s) emitted on 'events':", msg, 1, true)
      assert.matches("[1] key=7 partition=", msg, 1, true)
      assert.matches('"name":"Ada"', msg, 1, true)
      assert.matches("other topics: other (1)", msg, 1, true)
    end)

    it("fails saying that nothing was emitted on the topic", function()
      local msg = failure(assert.emitted, app, "missing", { a = 1 })
      assert.matches("no record was emitted on 'missing'", msg, 1, true)
    end)

    it("negated, fails showing the record that matched", function()
      local msg = failure(assert.is_not.emitted, app, "events", { name = "Ada" })
      assert.matches([[Expected no record matching {"name":"Ada"} on topic 'events']], msg, 1, true)
      assert.matches("x-source=test", msg, 1, true)
    end)
  end)

  describe("contains and canonical", function()
    it("contains is a recursive subset test", function()
      assert.is_true(helpers.contains({ a = 1, b = { c = 2, d = 3 } }, { b = { c = 2 } }))
      assert.is_false(helpers.contains({ a = 1 }, { a = 2 }))
      assert.is_false(helpers.contains(nil, { a = 1 }))
      assert.is_true(helpers.contains({ 1, 2, 3 }, { [2] = 2 }))
    end)

    it("canonical writes JSON with sorted keys", function()
      assert.equals('{"a":[1,2],"b":{"c":null},"z":"x"}',
        helpers.canonical({ z = "x", b = { c = require("cjson").null }, a = { 1, 2 } }))
    end)
  end)
end)
