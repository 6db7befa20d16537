-- busted spec for scripts/switchyard/testing.lua: the core twin behaves like core/lua/*.c, and the harness does
-- what the C host does around runtime.lua (core/http/router.c, core/lua/http.c, h2o, core/lua/kafka.c).
local testing = require("switchyard.testing")
require("helpers")

local function raised(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  return tostring(err)
end

local function pack(...) return { n = select("#", ...), ... } end

describe("core twin: store (core/lua/store.c)", function()
  local app, core
  before_each(function()
    app = testing.load_string("")
    core = app.core
  end)

  it("get, put, put_new and delete follow the LMDB wrapper's results", function()
    assert.is_nil(core.store_get("s", "k"))
    assert.is_true(core.store_put("s", "k", "v1"))
    assert.equals("v1", core.store_get("s", "k"))
    assert.is_false(core.store_put_new("s", "k", "v2"))
    assert.equals("v1", core.store_get("s", "k"))
    assert.is_true(core.store_put_new("s", "k2", "v2"))
    assert.is_true(core.store_delete("s", "k"))
    assert.is_false(core.store_delete("s", "k"))
    assert.is_nil(core.store_get("s", "k"))
  end)

  it("keeps stores apart by name", function()
    core.store_put("a", "k", "1")
    assert.is_nil(core.store_get("b", "k"))
  end)

  it("incr counts from 0, stores decimal text and refuses a non-number", function()
    assert.equals(1, core.store_incr("c", "n"))
    assert.equals(6, core.store_incr("c", "n", 5))
    assert.equals(-4, core.store_incr("c", "n", -10))
    assert.equals("-4", core.store_get("c", "n"))
    core.store_put("c", "text", '{"a":1}')
    assert.same(pack(nil, 'incr in store "c": the value is not a decimal integer'), pack(core.store_incr("c", "text")))
    assert.matches("delta must be an integer of magnitude at most 2^53",
      raised(core.store_incr, "c", "n", 1.5), 1, true)
  end)

  it("scan walks keys in byte order from start, at most limit (capped at 1000)", function()
    for _, k in ipairs({ "2", "10", "1", "b", "a" }) do core.store_put("s", k, "v" .. k) end
    assert.same({ "1", "v1", "10", "v10", "2", "v2", "a", "va", "b", "vb" }, core.store_scan("s"))
    assert.same({ "2", "v2", "a", "va" }, core.store_scan("s", "2", 2))
    assert.same({ "a", "va", "b", "vb" }, core.store_scan("s", "3"))
    assert.same({ "1", "v1" }, core.store_scan("s", "", 1))
    assert.same({}, core.store_scan("s", nil, 0))
    for i = 1, 1005 do core.store_put("big", string.format("%05d", i), "x") end
    assert.equals(2000, #core.store_scan("big", nil, 5000))
    assert.matches("limit must be a non-negative integer", raised(core.store_scan, "s", nil, -1), 1, true)
  end)

  it("returns nil, reason for a key that comes from data (empty, too long)", function()
    assert.same(pack(nil, "empty key"), pack(core.store_get("s", "")))
    assert.same(pack(nil, "key too long (512 bytes, at most 511)"), pack(core.store_put("s", ("k"):rep(512), "v")))
    assert.is_true(core.store_put("s", ("k"):rep(511), "v"))
  end)

  it("raises on programming mistakes with lauxlib's messages", function()
    assert.equals("bad argument #2 to 'store_get' (string or integer expected, got table)",
      raised(core.store_get, "s", {}))
    assert.equals("bad argument #2 to 'store_get' (a number key must be an integer below 1e14 in magnitude "
      .. "(pass a string))", raised(core.store_get, "s", 1.5))
    assert.equals("bad argument #1 to 'store_put' (invalid store name (1..64 characters of A-Z a-z 0-9 _ . -))",
      raised(core.store_put, "no spaces", "k", "v"))
    assert.equals("bad argument #1 to 'store_get' (string expected, got number)", raised(core.store_get, 1, "k"))
    assert.equals("bad argument #3 to 'store_put' (string expected, got nil)", raised(core.store_put, "s", "k", nil))
  end)

  it("turns integer keys into their decimal text", function()
    core.store_put("s", 42, "v")
    assert.equals("v", core.store_get("s", "42"))
  end)
end)

describe("core twin: log, time, emit (core/lua/core.c, kafka.c)", function()
  local app, core
  before_each(function()
    app = testing.load_string("")
    core = app.core
  end)

  it("log records entries and checks the level", function()
    core.log("warn", "careful")
    assert.same({ level = "warn", message = "careful", module = "routes" }, app.logs[1])
    assert.equals("bad argument #1 to 'log' (level must be debug, info, warn or error)", raised(core.log, "loud", "x"))
  end)

  it("sleep advances the virtual clock at once and is recorded", function()
    local t0 = core.now_ms()
    app:run(function() core.sleep(250) end)
    assert.equals(t0 + 250, core.now_ms())
    assert.same({ 250 }, app.sleeps)
    assert.equals("bad argument #1 to 'sleep' (milliseconds out of range)", raised(core.sleep, -1))
  end)

  it("waiting primitives raise outside the handler's own coroutine, like sy_co_check", function()
    local msg = "can only be called from an HTTP or topic handler (not at load time or from a nested coroutine)"
    assert.equals("sleep " .. msg, raised(core.sleep, 1))
    assert.equals("kafka.emit " .. msg, raised(core.emit, "t", "v", nil, nil, nil, true))
    assert.equals("kafka.request " .. msg, raised(core.request, "t", "v", nil, nil, 100))
    local err = raised(app.run, app, function()
      local co = coroutine.create(function() return core.sleep(1) end)
      local ok, e = coroutine.resume(co)
      error(e, 0)
    end)
    assert.matches("sleep " .. msg, err, 1, true)
  end)

  it("emit waits and answers partition, offset; a key always maps to the same partition", function()
    local p1, o1 = app:run(function() return core.emit("t", "a", "user-7", nil, nil, true) end)
    local p2, o2 = app:run(function() return core.emit("t", "b", "user-7", nil, nil, true) end)
    assert.equals(p1, p2)
    assert.equals(0, o1)
    assert.equals(1, o2)
    assert.equals(testing.crc32("user-7") % 4, p1)
    local r = app.emitted[2]
    assert.same({ "t", "user-7", "b", p1, 1 }, { r.topic, r.key, r.value, r.partition, r.offset })
  end)

  it("emit without waiting answers true, even outside a handler", function()
    assert.is_true(core.emit("t", '{"a":1}', nil, { h = "v" }, 2, false))
    assert.same({ a = 1 }, app.emitted[1].json)
    assert.same({ h = "v" }, app.emitted[1].headers)
    assert.equals(2, app.emitted[1].partition)
  end)

  it("emit refuses an unknown partition at once", function()
    assert.same(pack(nil, "cannot produce to t: Local: Unknown partition", 1), pack(core.emit("t", "v", nil, nil, 9)))
  end)

  it("emit checks its headers like read_headers()", function()
    assert.equals("kafka headers must map strings to strings", raised(core.emit, "t", "v", nil, { [1] = "x" }))
    assert.equals("bad argument #4 to 'emit' (table expected, got string)", raised(core.emit, "t", "v", nil, "h"))
  end)

  it("fail_emits: nil, 'delivery failed: reason', 1 for a waited emit; a log line for an unwaited one", function()
    app:fail_emits("t", "Local: Message timed out")
    assert.same(pack(nil, "delivery failed: Local: Message timed out", 1),
      pack(app:run(function() return core.emit("t", "v", nil, nil, nil, true) end)))
    assert.is_true(core.emit("t", "v", nil, nil, nil, false))
    assert.truthy(app:logged("a record emitted without waiting to t was not delivered: Local: Message timed out"))
    assert.equals(0, #app.emitted)
    assert.is_number((app:run(function() return core.emit("other", "v", nil, nil, nil, true) end)))
    app:fail_emits("t")
    assert.is_number((app:run(function() return core.emit("t", "v", nil, nil, nil, true) end)))
  end)

  it("fail_emits with a count fails only the next records, and nil fails every topic", function()
    app:fail_emits(nil, "down", 1)
    local emit = function(topic) return app:run(function() return core.emit(topic, "v", nil, nil, nil, true) end) end
    assert.is_nil((emit("a")))
    assert.is_number((emit("b")))
  end)
end)

describe("harness: loading", function()
  it("a routes file cannot use the store, emit or wait while it loads (the binary validates it first)", function()
    assert.equals("store_get is not available while only checking a routes file",
      raised(testing.load_string, 'local s = store.open("x"); s:get("k")'))
    assert.matches("kafka.emit can only be called from an HTTP or topic handler",
      raised(testing.load_string, 'kafka.emit("t", "v")'), 1, true)
    local app = testing.load_string('ok = kafka.emit("t", "v", { wait = false })')
    assert.equals(0, #app.emitted)
  end)

  it("reports the C router's load errors with the declaration's position", function()
    local err = raised(testing.load_string, 'http.get("/a/:id", function() end)\nhttp.get("/a/:other", function() end)')
    assert.matches(":2: route '/a/:other' is declared twice for the same method (first as '/a/:id')", err, 1, true)
    assert.matches(":1: http.static: the path must be a string starting with '/'",
      raised(testing.load_string, 'http.static("GET", "healthz", 200, "ok")'), 1, true)
    assert.matches(":1: http.static /x: status must be an HTTP status (100-599)",
      raised(testing.load_string, 'http.static("GET", "/x", 1000, "ok")'), 1, true)
    assert.matches("a parameter needs a name after ':'",
      raised(testing.load_string, 'http.get("/a/:", function() end)'), 1, true)
  end)

  it("reports a syntax error as file:line: message", function()
    assert.matches("^[^:]+:1: ", raised(testing.load_string, "http.get(("))
  end)

  it("reload shares the durable store, not the Lua state", function()
    local src = [[
      local counters = store.open("counters")
      local hits = 0
      http.post("/hit", function() hits = hits + 1; return { total = counters:incr("hits"), here = hits } end)
    ]]
    local name = os.tmpname()
    local f = assert(io.open(name, "w"))
    f:write(src)
    f:close()
    local app = testing.load(name)
    app:post("/hit")
    local again = app:reload()
    assert.json_body({ total = 2, here = 1 }, again:post("/hit"))
    os.remove(name)
  end)
end)

describe("harness: HTTP around the runtime (router.c, http.c, h2o)", function()
  local app
  before_each(function()
    app = testing.load_string([[
      http.static("GET", "/healthz", 200, { status = "ok" })
      http.get("/users/:id", function(req) return { route = "param", id = req.params.id } end)
      http.get("/users/me", function(req) return { route = "static" } end)
      http.post("/users/:id", function(req) return 201, { method = req.method } end)
      http.get("/echo", function(req)
        return { query_string = req.query_string, query = req.query, headers = req.headers, path = req.path,
                 id = req.id, has_body = req.body_raw ~= nil }
      end)
      http.post("/echo", function(req) return { body_raw = req.body_raw, body = req.body } end)
      http.post("/typed", { body = dto.object { n = dto.number {} } }, function(req) return req.body end)
      http.get("/boom", function() error("kaput") end)
      http.get("/yield", function() coroutine.yield() end)
      http.get("/nested", function()
        local co = coroutine.create(function() return kafka.emit("t", "v") end)
        local ok, err = coroutine.resume(co)
        if not ok then error(err, 0) end
      end)
    ]])
  end)

  it("404 in NestJS's words for an unknown path", function()
    local res = app:get("/nope?x=1")
    assert.status(404, res)
    assert.equals('{"statusCode":404,"message":"Cannot GET /nope","error":"Not Found"}', res.body)
    assert.matches("^%x+$", res.headers["x-request-id"]) -- like core/lua/http.c: a 404 carries the request id
    assert.equals("application/json", res.headers["content-type"])
  end)

  it("405 with Allow when the path exists for other methods", function()
    local res = app:request("DELETE", "/users/1")
    assert.status(405, res)
    assert.equals("GET, POST, HEAD", res.headers.allow)
    assert.json_body({ statusCode = 405, message = "method DELETE is not allowed here", error = "Method Not Allowed" },
      res)
    assert.status(405, app:request("OPTIONS", "/healthz"))
  end)

  it("the most specific route wins whatever the declaration order", function()
    assert.json_body({ route = "static" }, app:get("/users/me"))
    assert.json_body({ route = "param", id = "42" }, app:get("/users/42"))
  end)

  it("ignores a trailing slash, keeps empty segments", function()
    assert.status(200, app:get("/users/42/"))
    assert.status(404, app:get("//users/42"))
  end)

  it("percent-decodes the path and its parameters", function()
    assert.json_body({ route = "param", id = "a b" }, app:get("/users/a%20b"))
    assert.json_body({ route = "param", id = "7" }, app:get("/users/x/../7"))
  end)

  it("HEAD runs the GET route and sends no body", function()
    local res = app:head("/users/42")
    assert.status(200, res)
    assert.equals("", res.body)
  end)

  it("serves static routes without entering Lua", function()
    local res = app:get("/healthz")
    assert.status(200, res)
    assert.json_body({ status = "ok" }, res)
    assert.is_nil(res.headers["x-request-id"])
  end)

  it("builds the request table like core/lua/http.c", function()
    local res = app:request("GET", "/echo?a=1&b=x%20y", { headers = { ["X-Multi"] = { "1", "2" }, Accept = "*/*" } })
    local r = res.json
    assert.equals("a=1&b=x%20y", r.query_string)
    assert.same({ a = "1", b = "x y" }, r.query)
    assert.equals("1, 2", r.headers["x-multi"])
    assert.equals("*/*", r.headers.accept)
    assert.equals("/echo", r.path)
    assert.is_false(r.has_body)
    assert.equals(res.headers["x-request-id"], r.id)
    assert.equals("a=1", app:get("/echo", { query = { a = 1 } }).json.query_string)
  end)

  it("keeps a client's valid x-request-id and replaces an invalid one", function()
    assert.equals("abc-123", app:get("/echo", { headers = { ["x-request-id"] = "abc-123" } }).headers["x-request-id"])
    local res = app:get("/echo", { headers = { ["x-request-id"] = "no spaces allowed" } })
    assert.matches("^%x+$", res.headers["x-request-id"])
  end)

  it("sends a table body as JSON and a string body as it is", function()
    assert.json_body({ body_raw = '{"a":1}', body = { a = 1 } }, app:post("/echo", { a = 1 }))
    assert.json_body({ body_raw = "plain" }, app:post("/echo", "plain"))
    assert.status(415, app:post("/typed", '{"n":1}', { headers = { ["content-type"] = "text/plain" } }))
    assert.json_body({ n = 1 }, app:post("/typed", '{"n":1}', { headers = { ["content-type"] = "application/json" } }))
  end)

  it("answers a JSON 413 for a body over max_body on a matched route", function()
    local small = testing.load_string('http.post("/x", function() return 200 end)', { max_body = 8 })
    assert.status(200, small:post("/x", "12345678"))
    local res = small:post("/x", "123456789")
    assert.status(413, res)
    assert.same({ statusCode = 413, message = "request body is larger than 8 bytes", error = "Payload Too Large" },
      res.json)
    assert.status(404, small:post("/unknown", "123456789"))
  end)

  it("answers 413 for a body over a route's own max_body", function()
    local small = testing.load_string('http.post("/x", { max_body = 4 }, function() return 200 end)')
    assert.status(200, small:post("/x", "1234"))
    local res = small:post("/x", "12345")
    assert.status(413, res)
    assert.equals("request body is larger than 4 bytes", res.json.message)
  end)

  it("turns a Lua error into 500 with an error id, and logs the traceback", function()
    local res = app:get("/boom")
    assert.status(500, res)
    assert.matches("^%x+$", res.json.errorId)
    local entry = app:logged("error_id=" .. res.json.errorId)
    assert.truthy(entry)
    assert.matches("kaput", entry.message, 1, true)
    assert.matches("stack traceback", entry.message, 1, true)
  end)

  it("a waiting primitive in a nested coroutine fails like sy_co_check", function()
    local res = app:get("/nested")
    assert.status(500, res)
    assert.truthy(app:logged("kafka.emit can only be called from an HTTP or topic handler"))
  end)

  it("a handler that yields by itself is reported (it would hang in the server)", function()
    local res = app:get("/yield")
    assert.status(500, res)
    assert.matches("coroutine.yield", res.failure, 1, true)
  end)
end)

describe("harness: Kafka around the runtime", function()
  local app
  before_each(function()
    app = testing.load_string([[
      local seen = store.open("seen")
      kafka.on("jobs", { group = "workers", retries = 2, backoff_ms = 100,
                         body = dto.object { n = dto.integer { min = 0 } } }, function(msg)
        if msg.value.n == 13 then error("unlucky") end
        seen:put(msg.value.n, { n = msg.value.n, key = msg.key, trace = msg.headers["x-trace"] })
        kafka.emit("jobs.done", { n = msg.value.n }, { key = msg.key })
      end)
      kafka.on("jobs", { group = "audit" }, function(msg) log.info("audit %s", msg.raw) end)
      kafka.reply("square", { group = "math" }, function(msg) return { r = msg.value.x * msg.value.x } end)
      kafka.topic("other", { replies = true })
      kafka.topic("nobody", { replies = true })
      http.get("/square/:x", { params = dto.object { x = dto.number {} } }, function(req)
        local v, err = kafka.request("square", { x = req.params.x }, { timeout = 1500 })
        if err then return 502, { err = err } end
        return v
      end)
      http.get("/ask/:topic", function(req)
        local v, err = kafka.request(req.params.topic, { q = 1 }, { timeout = 700 })
        return { v = v, err = err }
      end)
    ]])
  end)

  it("deliver runs every group's handler and returns what they produced", function()
    local out = app:deliver("jobs", { n = 1 }, { key = "k1", headers = { ["x-trace"] = "t-1" } })
    assert.equals(1, #out)
    assert.emitted(app, "jobs.done", { n = 1 }, { key = "k1" })
    assert.same({ n = 1, key = "k1", trace = "t-1" }, app:store("seen")["1"])
    assert.truthy(app:logged('audit {"n":1}'))
  end)

  it("deliver to a single group with opts.group", function()
    app:deliver("jobs", { n = 2 }, { group = "audit" })
    assert.same({}, app:store("seen"))
  end)

  it("retries a failing handler with exponential backoff, then dead-letters it", function()
    app:deliver("jobs", { n = 13 }, { group = "workers", key = "k13" })
    assert.same({ 100, 200 }, app.sleeps)
    local dlq = app:last_event("jobs.dlq")
    assert.equals('{"n":13}', dlq.value)
    assert.equals("k13", dlq.key)
    assert.equals("jobs", dlq.headers["x-original-topic"])
    assert.matches("unlucky", dlq.headers["x-error"], 1, true)
    assert.equals(3, #app.logs - 1) -- three failed attempts + the DLQ warning
  end)

  it("dead-letters an invalid payload without retrying", function()
    app:deliver("jobs", { n = -1 }, { group = "workers" })
    assert.same({}, app.sleeps)
    assert.equals("validation failed: n must not be less than 0", app:last_event("jobs.dlq").headers["x-error"])
  end)

  it("keeps trying the DLQ while the broker refuses it", function()
    app:fail_emits("jobs.dlq", "Local: All broker connections are down", 3)
    app:deliver("jobs", { n = -1 }, { group = "workers" })
    assert.same({ 100, 200, 400 }, app.sleeps)
    assert.emitted(app, "jobs.dlq")
  end)

  it("gives up with an error when a handler would wait forever", function()
    local small = testing.load_string('kafka.on("t", { group = "g", body = dto.object { a = dto.string {} } }, '
      .. 'function() end)', { max_waits = 50 })
    small:fail_emits(nil, "down")
    assert.matches("still waits after 50 waits", raised(small.deliver, small, "t", "{}"), 1, true)
  end)

  it("deliver reports App.handle_message's outcome and failed attempts", function()
    local _, outcome, failures = app:deliver("jobs", { n = 3 }, { group = "workers" })
    assert.same({ "ok", 0 }, { outcome, failures })
    _, outcome, failures = app:deliver("jobs", { n = 13 }, { group = "workers" })
    assert.same({ "dlq", 3 }, { outcome, failures })
    _, outcome = app:deliver("jobs", { n = -1 }, { group = "workers" })
    assert.equals("dlq", outcome)
    _, outcome = app:deliver("square", { x = 2 }, { headers = { kafka_correlationId = "c", kafka_replyTopic = "r" } })
    assert.equals("replied", outcome)
    assert.same({ topic = "jobs", group = "workers", outcome = "ok", failures = 0 }, app.handled[1])
  end)

  it("answers only on <pattern>.reply: a request naming another reply topic gets no reply", function()
    local produced = app:deliver("square", { x = 2 },
      { headers = { kafka_correlationId = "c9", kafka_replyTopic = "someone-elses-topic" } })
    assert.same({}, produced)
    assert.truthy(app:logged("expected square.reply", "error"))
    produced = app:deliver("square", { x = 3 },
      { headers = { kafka_correlationId = "c10", kafka_replyTopic = "square.reply", kafka_replyPartition = "2" } })
    assert.equals(1, #produced)
    assert.equals("square.reply", produced[1].topic)
    assert.equals(2, produced[1].partition)
  end)

  it("deliver refuses a topic nobody consumes", function()
    assert.matches("no handler is declared for topic 'nobody'", raised(app.deliver, app, "nobody", "x"), 1, true)
  end)

  it("answers kafka.request with the file's own kafka.reply handler, in the NestJS format", function()
    assert.json_body({ r = 9 }, app:get("/square/3"))
    local req = app:last_event("square")
    assert.equals("square.reply", req.headers.kafka_replyTopic)
    assert.equals("0", req.headers.kafka_replyPartition)
    local reply = app:last_event("square.reply")
    assert.equals(req.headers.kafka_correlationId, reply.headers.kafka_correlationId)
    assert.equals("\0", reply.headers["kafka_nest-is-disposed"])
    assert.equals('{"r":9}', reply.value)
  end)

  it("on_request scripts the answer: a function, a value, a timeout, an error", function()
    local seen
    app:on_request("other", function(value, headers)
      seen = { value = value, corr = headers.kafka_correlationId }
      return { fine = true }
    end)
    assert.json_body({ v = { fine = true } }, app:get("/ask/other"))
    assert.same({ q = 1 }, seen.value)
    assert.is_string(seen.corr)

    app:on_request("other", "just text")
    assert.json_body({ v = "just text" }, app:get("/ask/other"))

    local t0 = app:now()
    app:on_request("other", testing.timeout)
    assert.json_body({ err = "timeout" }, app:get("/ask/other"))
    assert.equals(t0 + 700, app:now())

    app:on_request("other", testing.error("no such thing"))
    assert.json_body({ err = "no such thing" }, app:get("/ask/other"))
    assert.equals('{"message":"no such thing","status":"error"}',
      require("helpers").canonical(require("cjson").decode(app:last_event("other.reply").headers["kafka_nest-err"])))

    app:on_request("square", testing.timeout)
    assert.status(502, app:get("/square/2"))
    app:on_request("square", nil)
    assert.status(200, app:get("/square/2"))
  end)

  it("a request nobody answers times out after its timeout", function()
    local t0 = app:now()
    assert.json_body({ err = "timeout" }, app:get("/ask/nobody"))
    assert.equals(t0 + 700, app:now())
  end)

  it("a request to a refused topic fails with the delivery error", function()
    app:fail_emits("square", "Broker: Not enough in-sync replicas")
    assert.json_body({ err = "request failed: Broker: Not enough in-sync replicas" }, app:get("/square/2"))
  end)

  it("a request to a topic whose reply topic is not declared is refused at once, like kafka/rpc.c", function()
    assert.json_body({ err = 'no reply topic for undeclared: declare kafka.topic("undeclared", { replies = true })' },
      app:get("/ask/undeclared"))
    assert.is_not.emitted(app, "undeclared")
    local bare = testing.load_string([[
      http.get("/", function() local v, err = kafka.request("x", "q"); return { err = err } end)
    ]])
    assert.json_body({ err = 'no reply topic for x: declare kafka.topic("x", { replies = true })' }, bare:get("/"))
  end)

  it("core.request checks its timeout like rpc.c", function()
    local core = app.core
    assert.equals("bad argument #5 to 'request' (number expected, got no value)", raised(core.request, "t", "v"))
    assert.equals("bad argument #5 to 'request' (timeout must be between 1 ms and 1 hour)",
      raised(core.request, "t", "v", nil, nil, 0))
  end)

  it("pump delivers produced records to their consumers once", function()
    local chain = testing.load_string([[
      kafka.on("a", { group = "g" }, function(msg) kafka.emit("b", msg.value) end)
      kafka.on("b", { group = "g" }, function(msg) log.info("b got %s", msg.raw) end)
      http.post("/start", function(req) kafka.emit("a", req.body); return 202 end)
    ]])
    chain:post("/start", { x = 1 })
    assert.equals(2, chain:pump())
    assert.truthy(chain:logged('b got {"x":1}'))
    assert.equals(0, chain:pump())
  end)
end)

describe("harness: what the binary does around a handler (sandbox, time budget, telemetry)", function()
  it("a routes file sees the sandbox's globals: no io, debug, ffi or C modules, a reduced os", function()
    local app = testing.load_string([[
      http.get("/g", function()
        local ok_ffi = pcall(require, "ffi")
        return { io = io == nil, debug = debug == nil, execute = os.execute == nil, time = type(os.time),
                 ffi = not ok_ffi, cjson = type(require("cjson")), describe = describe == nil,
                 outside = select(2, loadfile("/etc/passwd")) }
      end)
    ]])
    assert.json_body({ io = true, debug = true, execute = true, time = "function", ffi = true, cjson = "table",
      describe = true, outside = "loadfile: /etc/passwd is outside the routes directory" }, app:get("/g"))
    local unsafe = testing.load_string('http.get("/g", function() return { io = io ~= nil } end)', { unsafe_lua = true })
    assert.json_body({ io = true }, unsafe:get("/g"))
  end)

  it("assert fails like LuaJIT's: the caller's position and the message (the DLQ's x-error in production)", function()
    local app = testing.load_string([[
      kafka.on("t", { group = "g", retries = 0 }, function() assert(nil, "plain message", 1) end)
    ]])
    app:deliver("t", "x")
    assert.matches("^[^:]+:1: plain message$", app:last_event("t.dlq").headers["x-error"])
  end)

  it("stops a handler that runs past its time budget without yielding: 500, and the next request works", function()
    local app = testing.load_string([[
      http.get("/spin", function() while true do end end)
      http.get("/ok", function() return "fine" end)
    ]], { handler_budget_ms = 50 })
    local res = app:get("/spin")
    assert.status(500, res)
    assert.truthy(app:logged("handler exceeded its time budget of 50 ms without yielding"))
    assert.status(200, app:get("/ok"))
  end)

  it("http.telemetry: one record per request, produced in batches, partial ones after flush_ms", function()
    local app = testing.load_string([[
      http.telemetry { topic = "tele", batch = 3, flush_ms = 500 }
      http.static("GET", "/healthz", 200, "ok")
      http.post("/items/:id", function(req) sleep(7); return 201, { id = req.params.id } end)
    ]])
    app:post("/items/1", { a = 1 }, { headers = { ["x-request-id"] = "r-1" } })
    app:get("/healthz")
    assert.is_not.emitted(app, "tele")
    app:get("/nope")
    local recs = app:events("tele")
    assert.equals(3, #recs)
    assert.same({ route = "/items/:id", method = "POST", status = 201, bodyLength = 7, durationUs = 7000,
      requestId = "r-1" }, { route = recs[1].json.route, method = recs[1].json.method, status = recs[1].json.status,
      bodyLength = recs[1].json.bodyLength, durationUs = recs[1].json.durationUs, requestId = recs[1].json.requestId })
    assert.same({ "/healthz", 200 }, { recs[2].json.route, recs[2].json.status })
    assert.matches("^%x+$", recs[2].json.requestId)
    assert.same({ "unmatched", 404 }, { recs[3].json.route, recs[3].json.status })
    assert.is_number(recs[1].json.ts)
    assert.is_nil(recs[1].key)
    assert.equals("gzip", app.app.topics.tele.compression)

    app:get("/healthz")
    app:advance(499)
    assert.equals(3, #app:events("tele"))
    app:advance(1)
    assert.equals(4, #app:events("tele"))
  end)

  it("http.telemetry drops a batch the broker refuses, without failing the request", function()
    local app = testing.load_string([[
      http.telemetry { topic = "tele", batch = 1 }
      http.get("/", function() return "ok" end)
    ]])
    app:fail_emits("tele", "Local: Queue full")
    assert.status(200, app:get("/"))
    assert.is_not.emitted(app, "tele")
    assert.truthy(app:logged("a record was not delivered: Local: Queue full", "debug"))
  end)
end)
