-- Telemetry: measurements shipped to Kafka in batches, aggregated by a consumer.
--
-- Two sources feed the same per-route counters:
-- * switchyard's own requests: http.telemetry produces one record per request (route, method, status, body length,
--   response time) to telemetry.requests, 10 per gzip batch;
-- * measurements sent by others (a frontend beacon, a sidecar): POST /telemetry records one in a buffer kept in the
--   store, so every worker and every reload shares it, and each BATCH_SIZE-th measurement ships the oldest buffered
--   ones as one gzip-compressed record on telemetry.batches. POST /telemetry/flush ships whatever is buffered (the
--   DSL has no timers: call it from cron when traffic is low).
-- A consumer (group telemetry-aggregator) adds both to per-route counters; GET /telemetry/stats reads them.
--
-- Guarantees for the measurements sent to POST /telemetry, given what the store offers (single-key atomic
-- operations, no transactions):
-- * a measurement is shipped at most once: a batch only takes the entries whose delete it won;
-- * a measurement is not lost when the broker refuses a batch: its entries go back to the buffer;
-- * the counters use store:incr, so concurrent consumers never lose an update; a batch redelivered after it was
--   fully counted is skipped. A process that dies in the middle of a batch counts that batch's first part twice.

local BATCH_SIZE = 10
local FLUSH_MAX = 1000 -- store:scan's limit

-- Schemas -------------------------------------------------------------------------------------------------------

local Measurement = dto.object {
  route = dto.string { not_empty = true, max_length = 200, pattern = "^[^|]+$" },
  status = dto.integer { min = 100, max = 599 },
  bytes = dto.integer { min = 0 },
  ms = dto.number { min = 0, max = 3600000 },
}

-- what http.telemetry produces (requestId and ts are dropped)
local RequestRecord = dto.object {
  route = dto.string { not_empty = true, max_length = 200 },
  method = dto.string { not_empty = true, max_length = 16 },
  status = dto.integer { min = 100, max = 599 },
  bodyLength = dto.integer { min = 0 },
  durationUs = dto.integer { min = 0 },
}

local Batch = dto.object {
  id = dto.integer { min = 1 },
  measurements = dto.array(Measurement, { min_size = 1, max_size = FLUSH_MAX }),
}

-- Topics and stores ---------------------------------------------------------------------------------------------

http.telemetry { topic = "telemetry.requests", batch = 10, flush_ms = 1000 }
kafka.topic("telemetry.batches", { partitions = 4, compression = "gzip" })

local buffer = store.open("telemetry_buffer")   -- "%012d" sequence -> measurement (the key order is arrival order)
local batches = store.open("telemetry_batches") -- only its id sequence
local counted = store.open("telemetry_counted") -- batch id -> true once aggregated
local stats = store.open("telemetry_stats")     -- "<route>|<field>" -> counter

-- Ships up to `limit` of the oldest buffered measurements as one batch.
-- Returns batch_id, count; or nil, 0 when the buffer is empty; or nil, reason, retry_after when the broker said no.
local function flush(limit)
  local entries = buffer:scan(nil, limit)
  local keys, measurements = {}, {}
  for _, e in ipairs(entries) do
    if buffer:delete(e.key) then -- claimed: no other flush ships it
      keys[#keys + 1] = e.key
      measurements[#measurements + 1] = e.value
    end
  end
  if #measurements == 0 then return nil, 0 end
  local id = batches:next_id()
  local ack, err, retry_after = kafka.emit("telemetry.batches", { id = id, measurements = measurements }, { key = id })
  if not ack then
    for i, key in ipairs(keys) do buffer:put(key, measurements[i]) end
    log.warn("telemetry batch %d (%d measurements) not shipped, kept in the buffer: %s", id, #measurements, err)
    return nil, err, retry_after
  end
  return id, #measurements
end

-- HTTP endpoints ------------------------------------------------------------------------------------------------

http.post("/telemetry", { body = Measurement }, function(req)
  local seq = buffer:next_id()
  buffer:put(string.format("%012d", seq), req.body)
  if seq % BATCH_SIZE ~= 0 then return 202, { buffered = true } end
  local id, count = flush(BATCH_SIZE)
  -- a refused batch stays buffered: this measurement is accepted either way
  return 202, { buffered = true, batch = id and { id = id, count = count } or nil }
end)

http.post("/telemetry/flush", function()
  local id, count_or_err, retry_after = flush(FLUSH_MAX)
  if id == nil and count_or_err ~= 0 then return http.unavailable(count_or_err, retry_after) end
  return 200, { batch = id, count = id and count_or_err or 0 }
end)

http.get("/telemetry/stats", function()
  local routes, order = {}, {}
  for _, e in ipairs(stats:scan(nil, FLUSH_MAX)) do
    local route, field = e.key:match("^(.*)|([^|]+)$")
    local r = routes[route]
    if r == nil then
      r = { route = route, count = 0, bytes = 0, ms = 0, ["4xx"] = 0, ["5xx"] = 0 }
      routes[route] = r
      order[#order + 1] = route
    end
    r[field] = e.value
  end
  local out = {}
  for _, route in ipairs(order) do
    local r = routes[route]
    r.avg_ms = r.count > 0 and math.floor(r.ms / r.count + 0.5) or 0
    out[#out + 1] = r
  end
  return 200, { routes = out, buffered = #buffer:scan(nil, FLUSH_MAX) }
end)

-- Topic handlers ------------------------------------------------------------------------------------------------

-- Adds one measurement to the counters of `route` (store:incr is atomic across workers).
local function count(route, status, bytes, ms)
  local prefix = route:gsub("|", "/") .. "|"
  assert(stats:incr(prefix .. "count", 1))
  assert(stats:incr(prefix .. "bytes", bytes))
  assert(stats:incr(prefix .. "ms", math.floor(ms + 0.5)))
  if status >= 500 then
    assert(stats:incr(prefix .. "5xx", 1))
  elseif status >= 400 then
    assert(stats:incr(prefix .. "4xx", 1))
  end
end

kafka.on("telemetry.batches", { group = "telemetry-aggregator", body = Batch }, function(msg)
  local batch = msg.value
  if counted:get(batch.id) then
    log.info("telemetry batch %d already counted, skipped", batch.id)
    return
  end
  for _, m in ipairs(batch.measurements) do count(m.route, m.status, m.bytes, m.ms) end
  counted:put(batch.id, true)
end)

-- switchyard's own requests, one record each: "POST /telemetry", "GET /telemetry/stats", "GET unmatched" (404/405)
kafka.on("telemetry.requests", { group = "telemetry-aggregator", body = RequestRecord }, function(msg)
  local r = msg.value
  count(r.method .. " " .. r.route, r.status, r.bodyLength, r.durationUs / 1000)
end)
