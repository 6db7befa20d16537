-- The routes file fuzz_nest_headers.c loads: topic handlers of each kind, fed records with arbitrary values and
-- NestJS headers. The harness replaces core.emit and core.sleep with recording stubs, so replies, dead letters and
-- retries run without a broker (check mode would refuse them).

local Payment = dto.object { userId = dto.number {}, amount = dto.number { min = 0 } }

-- an event handler with no schema: any value is accepted
kafka.on("ev", { group = "g" }, function(msg) local _ = msg.value, msg.key, msg.headers end)

-- an event handler with a schema: invalid values go to ev_body.dlq
kafka.on("ev_body", { group = "g", body = Payment, retries = 1, backoff_ms = 10 }, function(msg)
  if msg.value.amount > 1e6 then error("amount too large") end -- retried, then dead-lettered
end)

-- a request-reply handler: echoes the value; a table with fail = true makes it raise
kafka.reply("rq", { group = "g" }, function(msg)
  if type(msg.value) == "table" and msg.value.fail then error("asked to fail") end
  return msg.value
end)

-- the same with a schema: an invalid request gets an error reply
kafka.reply("rq_body", { group = "g", body = Payment }, function(msg)
  return { ok = true, userId = msg.value.userId }
end)

-- a handler that asks another service: the reply (value and headers) comes from the harness's core.request stub,
-- so kafka.request's NestJS reply parsing (kafka_nest-err, JSON-or-string value) sees arbitrary input
kafka.topic("svc", { replies = true })
kafka.on("ev_req", { group = "g", retries = 0 }, function(msg)
  local v, err, detail = kafka.request("svc", "ask", { timeout = 100 })
  fuzz_rec.request_result = { done = true, v = v, err = err, detail = detail } -- fuzz_rec: a global of the harness
end)
