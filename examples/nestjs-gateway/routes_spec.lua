-- busted spec for examples/nestjs-gateway/routes.lua (run from the repository root: busted --lua=luajit)
-- The NestJS services are outside this process: their answers are scripted with app:on_request.
local testing = require("switchyard.testing")
require("helpers")

local HERE = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."

local ORDER = { id = 7, customerId = 3, status = "open", lines = { { sku = "AB-1", quantity = 2 } } }

describe("NestJS gateway", function()
  local app
  before_each(function()
    app = testing.load(HERE .. "/routes.lua")
  end)

  it("GET /orders/:id asks orders.get the NestJS way and answers the reply", function()
    local asked
    app:on_request("orders.get", function(value, headers)
      asked = { value = value, headers = headers }
      return ORDER
    end)
    local res = app:get("/orders/7")
    assert.status(200, res)
    assert.json_body(ORDER, res)
    assert.same({ id = 7 }, asked.value)
    assert.equals("orders.get.reply", asked.headers.kafka_replyTopic)
    assert.is_string(asked.headers.kafka_correlationId)
    assert.equals("0", asked.headers.kafka_replyPartition)
  end)

  it("404 when the service answers null", function()
    app:on_request("orders.get", function() return nil end)
    assert.json_body({ statusCode = 404, message = "order 8 not found", error = "Not Found" }, app:get("/orders/8"))
  end)

  it("504 when the service does not answer within request_timeout_ms (3 s here)", function()
    app:on_request("orders.get", testing.timeout)
    local t0 = app:now()
    assert.json_body({ statusCode = 504, message = "orders.get did not answer in time", error = "Gateway Timeout" },
      app:get("/orders/7"))
    assert.equals(t0 + 3000, app:now())
  end)

  it("502 with the service's message when it throws", function()
    app:on_request("orders.get", testing.error("Connection terminated unexpectedly"))
    assert.json_body({ statusCode = 502, message = "orders.get failed: Connection terminated unexpectedly",
      error = "Bad Gateway" }, app:get("/orders/7"))
  end)

  it("502 when the request cannot be produced", function()
    app:fail_emits("orders.get", "Broker: Leader not available")
    assert.json_body({ statusCode = 502, message = "orders.get failed: request failed: Broker: Leader not available",
      error = "Bad Gateway" }, app:get("/orders/7"))
  end)

  it("declares a reply topic for every pattern it asks", function()
    assert.same({ "inventory.level.reply", "orders.by_customer.reply", "orders.create.reply", "orders.get.reply" },
      (function()
        local t = {}
        for _, name in ipairs(app.app.reply_topics) do t[#t + 1] = name end
        table.sort(t)
        return t
      end)())
    assert.equals(16, app.app.topics["orders.get.reply"].partitions)
  end)

  it("POST /orders sends the validated body to orders.create and answers 201", function()
    local sent
    app:on_request("orders.create", function(value) sent = value; return ORDER end)
    local body = { customerId = 3, lines = { { sku = "AB-1", quantity = 2 } } }
    assert.json_body(ORDER, app:post("/orders", body))
    assert.same(body, sent)
  end)

  it("POST /orders waits up to 10 s for orders.create", function()
    app:on_request("orders.create", testing.timeout)
    local t0 = app:now()
    assert.status(504, app:post("/orders", { customerId = 3, lines = { { sku = "AB-1", quantity = 1 } } }))
    assert.equals(t0 + 10000, app:now())
  end)

  it("POST /orders rejects bad input before asking anyone", function()
    local res = app:post("/orders", { customerId = 0, lines = { { sku = "", quantity = 0 } }, coupon = "X" })
    assert.status(400, res)
    assert.same({ "property coupon should not exist", "customerId must not be less than 1",
      "lines.0.quantity must not be less than 1", "lines.0.sku should not be empty" }, res.json.message)
    assert.same({}, app.emitted)
  end)

  it("GET /customers/:id/orders wraps the list, null when the service knows nothing", function()
    app:on_request("orders.by_customer", { ORDER })
    assert.json_body({ customerId = 3, orders = { ORDER } }, app:get("/customers/3/orders"))
    app:on_request("orders.by_customer", function() return nil end)
    assert.json_body({ customerId = 3, orders = require("cjson").null }, app:get("/customers/3/orders"))
  end)

  it("GET /stock/:sku sends the sku as a plain string; a number reply arrives as text", function()
    local sent
    app:on_request("inventory.level", function(value) sent = value; return 12 end)
    assert.json_body({ sku = "AB-1", available = 12 }, app:get("/stock/AB-1"))
    assert.equals("AB-1", sent)
    assert.equals("AB-1", app:last_event("inventory.level").value)
    assert.equals("12", app:last_event("inventory.level.reply").value)
    assert.status(400, app:get("/stock/ab_1"))
  end)

  it("only ever sends requests: every record it produces carries NestJS correlation headers", function()
    app:on_request("orders.get", ORDER)
    app:on_request("orders.by_customer", {})
    app:get("/orders/1")
    app:get("/customers/1/orders")
    for _, rec in ipairs(app.emitted) do
      if not rec.topic:match("%.reply$") then
        assert.is_string(rec.headers.kafka_correlationId, rec.topic)
        assert.equals(rec.topic .. ".reply", rec.headers.kafka_replyTopic)
      end
    end
    assert.equals(2, #app:events("orders.get") + #app:events("orders.by_customer"))
  end)
end)
