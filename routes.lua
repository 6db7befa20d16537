-- routes.lua: the reference application of switchyard.
--
-- The sign-up / user lookup / payments system of the classic NestJS + Kafka microservices tutorial (an API gateway,
-- an auth service and a payments service), declared in one file: schemas, then HTTP endpoints, then topic handlers.
-- Edit it while switchyard runs; `switchyard --check routes.lua` says whether it loads. The DSL is documented in
-- README.md ("The routes file").

-- Schemas ------------------------------------------------------------------------------------------------------

local CreateUserDto = dto.object {
  name = dto.string { not_empty = true, max_length = 200 },
  email = dto.email { not_empty = true },
}

local MakePaymentDto = dto.object {
  userId = dto.number {},
  amount = dto.number {},
}

local UserParams = dto.object { id = dto.integer { min = 1 } }
local PaymentParams = dto.object { id = dto.integer { min = 1 } }

-- Topics and stores ---------------------------------------------------------------------------------------------

kafka.topic("create_user", { partitions = 4 })
kafka.topic("process_payment", { partitions = 16 }) -- each payment waits on a get_user round trip: more in flight
kafka.topic("payment_processed", { partitions = 4 })
kafka.topic("payment_failed", { partitions = 4 })
-- request-reply: a partition handles one request at a time, so the partition count bounds the lookups in flight
kafka.topic("get_user", { partitions = 16 })

local users = store.open("users")       -- id -> { id, name, email }
local emails = store.open("emails")     -- lower-cased e-mail -> id (uniqueness)
local payments = store.open("payments") -- id -> { id, userId, amount, status, reason? }

-- HTTP endpoints (the API gateway) ------------------------------------------------------------------------------

-- one record per request (route, method, status, body length, response time), 10 per gzip batch
http.telemetry { topic = "http_telemetry", batch = 10, flush_ms = 1000 }

http.static("GET", "/healthz", 200, { status = "ok" })

http.post("/auth/sign-up", { body = CreateUserDto }, function(req)
  local email = req.body.email:lower()
  local id = users:next_id()
  -- reserve the e-mail before emitting, so two concurrent sign-ups cannot both succeed
  if not emails:put_new(email, id) then
    http.error(409, "a user with this email already exists")
  end
  local ok, err, retry_after = kafka.emit("create_user", { id = id, name = req.body.name, email = req.body.email },
    { key = id })
  if not ok then
    emails:delete(email)
    return http.unavailable(err, retry_after)
  end
  return 202, { id = id }
end)

http.get("/users/:id", { params = UserParams }, function(req)
  local user, err = kafka.request("get_user", { userId = req.params.id })
  if err == "timeout" then
    return 504, { statusCode = 504, message = "the auth service did not answer in time", error = "Gateway Timeout" }
  elseif err then
    return 502, { statusCode = 502, message = "the auth service failed: " .. err, error = "Bad Gateway" }
  end
  if user == nil then http.error(404, "user " .. req.params.id .. " not found") end
  return 200, user
end)

http.post("/payments/pay", { body = MakePaymentDto }, function(req)
  local id = payments:next_id()
  local payment = { id = id, userId = req.body.userId, amount = req.body.amount, status = "pending" }
  payments:put(id, payment)
  local ok, err, retry_after = kafka.emit("process_payment", { userId = req.body.userId, amount = req.body.amount },
    { key = id })
  if not ok then
    payments:delete(id)
    return http.unavailable(err, retry_after)
  end
  return 202, { id = id, status = "pending" }
end)

http.get("/payments/:id", { params = PaymentParams }, function(req)
  local payment = payments:get(req.params.id)
  if payment == nil then http.error(404, "payment " .. req.params.id .. " not found") end
  return 200, payment
end)

-- Topic handlers (the auth and payments services) ---------------------------------------------------------------

-- Events from NestJS producers carry no key: the user then gets the next id here.
kafka.on("create_user", { group = "auth-consumer", body = CreateUserDto }, function(msg)
  local id = tonumber(msg.key) or users:next_id()
  local user = { id = id, name = msg.value.name, email = msg.value.email }
  users:put(id, user)
  emails:put_new(user.email:lower(), id) -- already reserved when the sign-up came through our HTTP route
  log.info("user %d stored (%s)", id, user.email)
end)

kafka.reply("get_user", { group = "auth-consumer" }, function(msg)
  local id = type(msg.value) == "table" and tonumber(msg.value.userId) or nil
  if id == nil then return nil end
  return users:get(id)
end)

kafka.on("process_payment", { group = "payment-consumer", body = MakePaymentDto }, function(msg)
  local p = msg.value
  local id = tonumber(msg.key) or payments:next_id()
  local user, err = kafka.request("get_user", { userId = p.userId })
  if err then error("get_user failed: " .. err) end -- retried with backoff, then sent to process_payment.dlq
  if user == nil then
    local failed = { id = id, userId = p.userId, amount = p.amount, status = "failed", reason = "user not found" }
    payments:put(id, failed)
    assert(kafka.emit("payment_failed", failed, { key = id }))
    return
  end
  log.info("process payment for user %s - amount: %s", user.name, p.amount)
  local done = { id = id, userId = p.userId, amount = p.amount, status = "processed" }
  payments:put(id, done)
  assert(kafka.emit("payment_processed", done, { key = id }))
end)
