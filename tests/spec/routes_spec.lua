-- busted spec for routes.lua, the reference application (DESIGN.md section 1), run against the in-memory twins:
-- call an endpoint, see the events it emitted; deliver an event, see what was stored.
local testing = require("switchyard.testing")
local cjson = require("cjson")
require("helpers")

local ADA = { name = "Ada Lovelace", email = "Ada@Example.com" }

local function nest_request_headers(corr, partition)
  return { kafka_correlationId = corr, kafka_replyTopic = "get_user.reply", kafka_replyPartition = partition or "3" }
end

local function bad_request(messages)
  return { statusCode = 400, message = messages, error = "Bad Request" }
end

describe("routes.lua", function()
  local app
  before_each(function()
    app = testing.load("routes.lua")
  end)

  -- a user known to the auth service: sign up and let the create_user consumer store it
  local function sign_up(user)
    local res = app:post("/auth/sign-up", user or ADA)
    assert.status(202, res)
    app:pump()
    return res.json.id
  end

  describe("GET /healthz", function()
    it("answers 200 ok from a static route", function()
      local res = app:get("/healthz")
      assert.status(200, res)
      assert.json_body({ status = "ok" }, res)
    end)
  end)

  describe("routing", function()
    it("404 for an unknown path, 405 with Allow for a known path and another method", function()
      assert.json_body({ statusCode = 404, message = "Cannot GET /auth/login", error = "Not Found" },
        app:get("/auth/login"))
      local res = app:get("/auth/sign-up")
      assert.status(405, res)
      assert.equals("POST", res.headers.allow)
    end)
  end)

  describe("POST /auth/sign-up", function()
    it("emits create_user keyed by the new id and answers 202 with the id", function()
      local res = app:post("/auth/sign-up", ADA)
      assert.status(202, res)
      assert.json_body({ id = 1 }, res)
      assert.emitted(app, "create_user", { id = 1, name = "Ada Lovelace", email = "Ada@Example.com" }, { key = "1" })
      assert.json_body({ id = 2 }, app:post("/auth/sign-up", { name = "Grace", email = "grace@example.com" }))
      assert.emitted(app, "create_user", { id = 2, name = "Grace" }, { key = "2" })
    end)

    it("emits a NestJS event: JSON value, no Nest headers, the request id for tracing", function()
      local res = app:post("/auth/sign-up", ADA)
      local ev = app:last_event("create_user")
      assert.same({ ["x-request-id"] = res.headers["x-request-id"] }, ev.headers)
      assert.same({ id = 1, name = "Ada Lovelace", email = "Ada@Example.com" }, cjson.decode(ev.value))
    end)

    it("drops unknown fields from the event", function()
      app:post("/auth/sign-up", { name = "Eve", email = "eve@example.com", admin = true })
      assert.is_nil(app:last_event("create_user").json.admin)
    end)

    it("400 with every class-validator message for an empty object", function()
      assert.json_body(bad_request({ "email should not be empty", "email must be an email", "name should not be empty",
        "name must be a string", "name must be shorter than or equal to 200 characters" }),
        app:post("/auth/sign-up", {}))
      assert.is_not.emitted(app, "create_user")
    end)

    it("400 for an invalid e-mail", function()
      assert.json_body(bad_request({ "email must be an email" }),
        app:post("/auth/sign-up", { name = "Ada", email = "not-an-email" }))
    end)

    it("400 for an empty name and an empty e-mail", function()
      assert.json_body(bad_request({ "email should not be empty", "email must be an email", "name should not be empty" }),
        app:post("/auth/sign-up", { name = "", email = "" }))
    end)

    it("400 for a name that is not a string or too long", function()
      assert.json_body(bad_request({ "name must be a string", "name must be shorter than or equal to 200 characters" }),
        app:post("/auth/sign-up", { name = 5, email = "a@example.com" }))
      assert.json_body(bad_request({ "name must be shorter than or equal to 200 characters" }),
        app:post("/auth/sign-up", { name = ("x"):rep(201), email = "a@example.com" }))
      assert.status(202, app:post("/auth/sign-up", { name = ("x"):rep(200), email = "a@example.com" }))
    end)

    it("400 for a body that is not an object, is missing, or is not JSON", function()
      assert.json_body(bad_request({ "body must be an object" }), app:post("/auth/sign-up", "[1,2]",
        { headers = { ["content-type"] = "application/json" } }))
      assert.json_body(bad_request({ "request body must be a JSON object" }), app:request("POST", "/auth/sign-up"))
      local res = app:post("/auth/sign-up", "{nope", { headers = { ["content-type"] = "application/json" } })
      assert.status(400, res)
      assert.matches("^malformed JSON: ", res.json.message)
    end)

    it("415 for a body that is not declared as JSON", function()
      local res = app:post("/auth/sign-up", cjson.encode(ADA), { headers = { ["content-type"] = "text/plain" } })
      assert.json_body({ statusCode = 415, message = "Content-Type must be application/json",
        error = "Unsupported Media Type" }, res)
    end)

    it("409 for an e-mail already taken, whatever its case", function()
      assert.status(202, app:post("/auth/sign-up", ADA))
      local res = app:post("/auth/sign-up", { name = "Other Ada", email = "ada@EXAMPLE.com" })
      assert.json_body({ statusCode = 409, message = "a user with this email already exists", error = "Conflict" }, res)
      assert.equals(1, #app:events("create_user"))
    end)

    it("503 with Retry-After when the broker refuses the event, and the e-mail is free again", function()
      app:fail_emits("create_user", "Local: Message timed out")
      local res = app:post("/auth/sign-up", ADA)
      assert.status(503, res)
      assert.equals("1", res.headers["retry-after"])
      assert.json_body({ statusCode = 503, message = "delivery failed: Local: Message timed out",
        error = "Service Unavailable" }, res)
      assert.same({}, app:store("emails"))
      app:fail_emits(nil)
      assert.status(202, app:post("/auth/sign-up", ADA))
      assert.emitted(app, "create_user", { email = "Ada@Example.com" })
    end)
  end)

  describe("topic create_user (group auth-consumer)", function()
    it("stores the user under the record's key and reserves the lower-cased e-mail", function()
      app:deliver("create_user", { id = 7, name = "Ada", email = "Ada@Example.com" }, { key = "7" })
      assert.same({ id = 7, name = "Ada", email = "Ada@Example.com" }, app:store("users")["7"])
      assert.equals(7, app:store("emails")["ada@example.com"])
      assert.truthy(app:logged("user 7 stored (Ada@Example.com)", "info"))
    end)

    it("gives a NestJS event without a key the next user id", function()
      app:post("/auth/sign-up", ADA) -- takes id 1
      app:deliver("create_user", '{"name":"Nest","email":"nest@example.com"}')
      assert.same({ id = 2, name = "Nest", email = "nest@example.com" }, app:store("users")["2"])
    end)

    it("dead-letters an invalid event without retrying", function()
      app:deliver("create_user", { name = "", email = "nope" }, { key = "9" })
      assert.same({}, app.sleeps)
      assert.same({}, app:store("users"))
      local dlq = app:last_event("create_user.dlq")
      assert.equals("validation failed: email must be an email; name should not be empty", dlq.headers["x-error"])
      assert.equals("9", dlq.key)
    end)

    it("the sign-up flow ends with a stored user", function()
      local id = sign_up()
      assert.same({ id = id, name = "Ada Lovelace", email = "Ada@Example.com" }, app:store("users")[tostring(id)])
    end)
  end)

  describe("topic get_user (request-reply)", function()
    it("replies with the stored user in the NestJS format", function()
      sign_up()
      app:deliver("get_user", { userId = 1 }, { headers = nest_request_headers("c-1", "3") })
      local reply = app:last_event("get_user.reply")
      assert.equals(3, reply.partition)
      assert.equals("c-1", reply.headers.kafka_correlationId)
      assert.equals("\0", reply.headers["kafka_nest-is-disposed"])
      assert.same({ id = 1, name = "Ada Lovelace", email = "Ada@Example.com" }, reply.json)
    end)

    it("replies null (an empty record) for an unknown user or a payload without userId", function()
      app:deliver("get_user", { userId = 99 }, { headers = nest_request_headers("c-2") })
      assert.is_nil(app:last_event("get_user.reply").value)
      app:deliver("get_user", '"hello"', { headers = nest_request_headers("c-3") })
      assert.equals("c-3", app:last_event("get_user.reply").headers.kafka_correlationId)
      assert.is_nil(app:last_event("get_user.reply").value)
    end)

    it("treats a record without correlation headers as an event: no reply", function()
      app:deliver("get_user", { userId = 1 })
      assert.is_not.emitted(app, "get_user.reply")
    end)
  end)

  describe("GET /users/:id", function()
    it("200 with the user, asked on get_user with the id as a number", function()
      sign_up()
      local res = app:get("/users/1")
      assert.status(200, res)
      assert.json_body({ id = 1, name = "Ada Lovelace", email = "Ada@Example.com" }, res)
      assert.emitted(app, "get_user", '{"userId":1}')
    end)

    it("404 for an unknown user", function()
      assert.json_body({ statusCode = 404, message = "user 2 not found", error = "Not Found" }, app:get("/users/2"))
    end)

    it("the request carries the HTTP request id; the reply, made by another handler, does not", function()
      sign_up()
      local res = app:get("/users/1", { headers = { ["x-request-id"] = "lookup-7" } })
      assert.status(200, res)
      assert.equals("lookup-7", app:last_event("get_user").headers["x-request-id"])
      assert.is_nil(app:last_event("get_user.reply").headers["x-request-id"])
    end)

    it("504 when the auth service does not answer in time (5 s by default)", function()
      app:on_request("get_user", testing.timeout)
      local t0 = app:now()
      assert.json_body({ statusCode = 504, message = "the auth service did not answer in time",
        error = "Gateway Timeout" }, app:get("/users/1"))
      assert.equals(t0 + 5000, app:now())
    end)

    it("502 when the auth service answers with an error", function()
      app:on_request("get_user", testing.error("database is down"))
      assert.json_body({ statusCode = 502, message = "the auth service failed: database is down",
        error = "Bad Gateway" }, app:get("/users/1"))
    end)

    it("502 when the request cannot be produced", function()
      app:fail_emits("get_user", "Local: Unknown topic")
      assert.status(502, app:get("/users/1"))
    end)

    it("400 for an id that is not a positive integer", function()
      assert.json_body(bad_request({ "id must be an integer number", "id must not be less than 1" }),
        app:get("/users/abc"))
      assert.json_body(bad_request({ "id must not be less than 1" }), app:get("/users/0"))
      assert.json_body(bad_request({ "id must be an integer number" }), app:get("/users/1.5"))
      assert.is_not.emitted(app, "get_user")
    end)
  end)

  describe("POST /payments/pay", function()
    it("stores a pending payment, emits process_payment keyed by its id, answers 202", function()
      local res = app:post("/payments/pay", { userId = 1, amount = 100 })
      assert.status(202, res)
      assert.json_body({ id = 1, status = "pending" }, res)
      assert.emitted(app, "process_payment", { userId = 1, amount = 100 }, { key = "1" })
      assert.same({ id = 1, userId = 1, amount = 100, status = "pending" }, app:store("payments")["1"])
    end)

    it("400 with class-validator's number messages", function()
      local msg = "must be a number conforming to the specified constraints"
      assert.json_body(bad_request({ "amount " .. msg, "userId " .. msg }), app:post("/payments/pay", {}))
      assert.json_body(bad_request({ "amount " .. msg }), app:post("/payments/pay", { userId = 1, amount = "100" }))
      assert.is_not.emitted(app, "process_payment")
    end)

    it("503 when the broker refuses the event, and no payment is left behind", function()
      app:fail_emits("process_payment", "Local: Queue full")
      local res = app:post("/payments/pay", { userId = 1, amount = 5 })
      assert.status(503, res)
      assert.equals("1", res.headers["retry-after"])
      assert.same({}, app:store("payments"))
      assert.status(404, app:get("/payments/1"))
    end)
  end)

  describe("topic process_payment (group payment-consumer)", function()
    it("for a known user: logs, stores the payment processed, emits payment_processed", function()
      sign_up()
      app:post("/payments/pay", { userId = 1, amount = 100 })
      app:pump()
      assert.truthy(app:logged("process payment for user Ada Lovelace - amount: 100", "info"))
      local done = { id = 1, userId = 1, amount = 100, status = "processed" }
      assert.emitted(app, "payment_processed", done, { key = "1" })
      assert.same(done, app:store("payments")["1"])
      assert.is_not.emitted(app, "payment_failed")
    end)

    it("asks get_user for the payment's user", function()
      app:seed("users", 4, { id = 4, name = "Grace", email = "grace@example.com" })
      app:deliver("process_payment", { userId = 4, amount = 12.5 }, { key = "2" })
      assert.emitted(app, "get_user", { userId = 4 })
      assert.truthy(app:logged("process payment for user Grace - amount: 12.5"))
      assert.emitted(app, "payment_processed", { id = 2, amount = 12.5 })
    end)

    it("for an unknown user: stores the payment failed and emits payment_failed", function()
      app:deliver("process_payment", { userId = 42, amount = 10 }, { key = "3" })
      local failed = { id = 3, userId = 42, amount = 10, status = "failed", reason = "user not found" }
      assert.emitted(app, "payment_failed", failed, { key = "3" })
      assert.same(failed, app:store("payments")["3"])
      assert.is_not.emitted(app, "payment_processed")
    end)

    it("retries with backoff when get_user fails, then dead-letters to process_payment.dlq", function()
      app:on_request("get_user", testing.timeout)
      app:deliver("process_payment", { userId = 1, amount = 10 }, { key = "5" })
      assert.equals(4, #app:events("get_user")) -- the first attempt and 3 retries
      assert.same({ 100, 200, 400 }, app.sleeps)
      local dlq = app:last_event("process_payment.dlq")
      assert.equals(app.delivered[1].value, dlq.value) -- the original record, untouched
      assert.equals("5", dlq.key)
      assert.equals("process_payment", dlq.headers["x-original-topic"])
      assert.matches("get_user failed: timeout", dlq.headers["x-error"], 1, true)
      assert.truthy(app:logged("handler for process_payment failed (attempt 4 of 4)", "error"))
      assert.is_not.emitted(app, "payment_processed")
    end)

    it("recovers when get_user answers again before the retries run out", function()
      local calls = 0
      app:seed("users", 1, { id = 1, name = "Ada", email = "ada@example.com" })
      app:on_request("get_user", function(value)
        calls = calls + 1
        if calls < 3 then return testing.timeout end
        return { id = value.userId, name = "Ada" }
      end)
      app:deliver("process_payment", { userId = 1, amount = 10 }, { key = "6" })
      assert.same({ 100, 200 }, app.sleeps)
      assert.emitted(app, "payment_processed", { id = 6 })
      assert.is_not.emitted(app, "process_payment.dlq")
    end)

    it("dead-letters an invalid payload at once", function()
      app:deliver("process_payment", { userId = 1, amount = "ten" }, { key = "7" })
      assert.same({}, app.sleeps)
      assert.is_not.emitted(app, "get_user")
      assert.equals("validation failed: amount must be a number conforming to the specified constraints",
        app:last_event("process_payment.dlq").headers["x-error"])
    end)

    it("gives a NestJS event without a key the next payment id", function()
      app:post("/payments/pay", { userId = 9, amount = 1 }) -- takes payment id 1
      app:deliver("process_payment", '{"userId":9,"amount":2}')
      assert.emitted(app, "payment_failed", { id = 2, amount = 2 })
    end)
  end)

  describe("http.telemetry (topic http_telemetry)", function()
    it("measures every request, sends them 10 at a time", function()
      for _ = 1, 9 do app:get("/healthz") end
      assert.is_not.emitted(app, "http_telemetry")
      app:post("/auth/sign-up", ADA, { headers = { ["x-request-id"] = "signup-1" } })
      local recs = app:events("http_telemetry")
      assert.equals(10, #recs)
      assert.same({ route = "/healthz", method = "GET", status = 200, bodyLength = 0, durationUs = 0 },
        { route = recs[1].json.route, method = recs[1].json.method, status = recs[1].json.status,
          bodyLength = recs[1].json.bodyLength, durationUs = recs[1].json.durationUs })
      assert.matches("^%x+$", recs[1].json.requestId) -- every request gets an id, static ones too
      assert.same({ "/auth/sign-up", "POST", 202, "signup-1" },
        { recs[10].json.route, recs[10].json.method, recs[10].json.status, recs[10].json.requestId })
      assert.equals(#cjson.encode(ADA), recs[10].json.bodyLength)
      assert.equals("gzip", app.app.topics.http_telemetry.compression)
    end)

    it("sends a partial batch after flush_ms, with the time a request waited", function()
      app:on_request("get_user", testing.timeout)
      app:get("/users/1")
      app:advance(1000)
      assert.emitted(app, "http_telemetry", { route = "/users/:id", status = 504, durationUs = 5000000 })
    end)
  end)

  describe("GET /payments/:id", function()
    it("shows the payment pending, then processed", function()
      sign_up()
      app:post("/payments/pay", { userId = 1, amount = 30 })
      assert.json_body({ id = 1, userId = 1, amount = 30, status = "pending" }, app:get("/payments/1"))
      app:pump()
      assert.json_body({ id = 1, userId = 1, amount = 30, status = "processed" }, app:get("/payments/1"))
    end)

    it("404 for an unknown payment, 400 for a bad id", function()
      assert.json_body({ statusCode = 404, message = "payment 5 not found", error = "Not Found" },
        app:get("/payments/5"))
      assert.json_body(bad_request({ "id must be an integer number", "id must not be less than 1" }),
        app:get("/payments/x"))
    end)
  end)
end)
