-- busted spec for examples/telemetry/routes.lua (run from the repository root: busted --lua=luajit)
local testing = require("switchyard.testing")
require("helpers")

local HERE = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."

local function measure(app, route, status, bytes, ms)
  local res = app:post("/telemetry", { route = route, status = status or 200, bytes = bytes or 100, ms = ms or 10 })
  assert.status(202, res)
  return res
end

describe("telemetry", function()
  local app
  before_each(function()
    app = testing.load(HERE .. "/routes.lua")
  end)

  it("buffers measurements and ships every 10th as one batch of the oldest 10", function()
    for i = 1, 9 do
      assert.json_body({ buffered = true }, measure(app, "GET /a", 200, i))
    end
    assert.is_not.emitted(app, "telemetry.batches")
    assert.json_body({ buffered = true, batch = { id = 1, count = 10 } }, measure(app, "GET /a", 200, 10))
    local batch = app:last_event("telemetry.batches")
    assert.equals("1", batch.key)
    assert.equals(10, #batch.json.measurements)
    for i, m in ipairs(batch.json.measurements) do assert.equals(i, m.bytes) end -- arrival order
    assert.same({}, app:store("telemetry_buffer"))
  end)

  it("declares both telemetry topics gzip-compressed", function()
    assert.equals("gzip", app.app.topics["telemetry.batches"].compression)
    assert.equals("gzip", app.app.topics["telemetry.requests"].compression)
  end)

  it("aggregates shipped batches per route, next to switchyard's own requests", function()
    for i = 1, 10 do measure(app, i <= 6 and "GET /a" or "POST /b", i == 7 and 503 or (i == 8 and 404 or 200), 10, i) end
    app:pump()
    local posted = 0 -- the bodies of the 10 POST /telemetry, as http.telemetry measured them
    for _, r in ipairs(app:events("telemetry.requests")) do posted = posted + r.json.bodyLength end
    assert.json_body({ buffered = 0, routes = {
      { route = "GET /a", count = 6, bytes = 60, ms = 21, avg_ms = 4, ["4xx"] = 0, ["5xx"] = 0 },
      { route = "POST /b", count = 4, bytes = 40, ms = 34, avg_ms = 9, ["4xx"] = 1, ["5xx"] = 1 },
      { route = "POST /telemetry", count = 10, bytes = posted, ms = 0, avg_ms = 0, ["4xx"] = 0, ["5xx"] = 0 },
    } }, app:get("/telemetry/stats"))
  end)

  it("measures its own requests with http.telemetry, 10 per batch, and counts them by method and route", function()
    for _ = 1, 8 do app:get("/telemetry/stats") end
    app:get("/nowhere")
    assert.is_not.emitted(app, "telemetry.requests")
    assert.status(400, app:post("/telemetry", {}))
    local recs = app:events("telemetry.requests")
    assert.equals(10, #recs)
    assert.same({ "/telemetry/stats", "GET", 200 }, { recs[1].json.route, recs[1].json.method, recs[1].json.status })
    assert.same({ "unmatched", 404 }, { recs[9].json.route, recs[9].json.status })
    assert.same({ "/telemetry", 400, 2 }, { recs[10].json.route, recs[10].json.status, recs[10].json.bodyLength })
    app:pump()
    local stats = app:store("telemetry_stats")
    assert.equals(8, stats["GET /telemetry/stats|count"])
    assert.equals(1, stats["GET unmatched|4xx"])
    assert.equals(1, stats["POST /telemetry|4xx"])
  end)

  it("ships a partial batch of its own requests after flush_ms", function()
    app:get("/telemetry/stats")
    app:advance(999)
    assert.is_not.emitted(app, "telemetry.requests")
    app:advance(1)
    assert.emitted(app, "telemetry.requests", { route = "/telemetry/stats" })
  end)

  it("a batch delivered twice is counted once", function()
    for _ = 1, 10 do measure(app, "GET /a") end
    local batch = app:last_event("telemetry.batches")
    app:deliver("telemetry.batches", batch.value, { key = batch.key })
    app:deliver("telemetry.batches", batch.value, { key = batch.key })
    assert.equals(10, app:store("telemetry_stats")["GET /a|count"])
    assert.truthy(app:logged("telemetry batch 1 already counted, skipped"))
  end)

  it("keeps the measurements when the broker refuses a batch, and ships them with the next one", function()
    app:fail_emits("telemetry.batches", "Local: Message timed out", 1)
    for _ = 1, 10 do measure(app, "GET /a") end
    assert.is_not.emitted(app, "telemetry.batches")
    assert.truthy(app:logged("telemetry batch 1 (10 measurements) not shipped, kept in the buffer"))
    for _ = 1, 10 do measure(app, "GET /a") end
    assert.equals(1, #app:events("telemetry.batches"))
    assert.equals(10, #app:last_event("telemetry.batches").json.measurements)
    local res = app:post("/telemetry/flush")
    assert.json_body({ batch = 3, count = 10 }, res)
    app:pump()
    assert.equals(20, app:store("telemetry_stats")["GET /a|count"])
    assert.equals(20, app:store("telemetry_stats")["POST /telemetry|count"]) -- the 20 requests themselves
  end)

  it("flush ships a partial batch, answers count 0 when empty, 503 when the broker is down", function()
    measure(app, "GET /a")
    measure(app, "GET /b")
    assert.json_body({ batch = 1, count = 2 }, app:post("/telemetry/flush"))
    assert.json_body({ count = 0 }, app:post("/telemetry/flush"))
    measure(app, "GET /c")
    app:fail_emits(nil, "Local: All broker connections are down")
    local res = app:post("/telemetry/flush")
    assert.status(503, res)
    assert.equals("1", res.headers["retry-after"])
    assert.equals(1, app:get("/telemetry/stats").json.buffered)
  end)

  it("rejects invalid measurements with class-validator messages", function()
    local res = app:post("/telemetry", { route = "a|b", status = 99, bytes = -1, ms = "fast" })
    assert.status(400, res)
    assert.same({ "bytes must not be less than 0", "ms must be a number conforming to the specified constraints",
      "ms must not be less than 0", "ms must not be greater than 3600000", "route must match /^[^|]+$/ regular expression",
      "status must not be less than 100" }, res.json.message)
  end)

  it("dead-letters a malformed batch instead of counting it", function()
    app:deliver("telemetry.batches", { id = 1, measurements = {} }, { key = "1" })
    assert.emitted(app, "telemetry.batches.dlq")
    assert.same({}, app:store("telemetry_stats"))
  end)

  it("survives a restart: the buffer and the counters are in the store", function()
    for _ = 1, 4 do measure(app, "GET /a") end
    local restarted = app:reload()
    for _ = 1, 6 do measure(restarted, "GET /a") end
    assert.equals(10, #restarted:last_event("telemetry.batches").json.measurements)
  end)
end)
