-- tests/interop/routes.lua: switchyard's side of the NestJS wire interop test (tests/interop/run.sh).
--
-- NestJS -> switchyard: reply handlers that a NestJS ClientKafka.send() reaches (sy_user, sy_fail, sy_text,
-- sy_number, sy_null). switchyard -> NestJS: HTTP routes that call kafka.request() on the NestJS microservice's
-- @MessagePattern topics and show the test what came back, with its Lua type.

config { request_timeout_ms = 15000 }

-- the topics this app sends requests on (their .reply topics are read through the group switchyard-replies)
for _, name in ipairs({ "nest_echo", "nest_fail", "nest_number", "nest_null", "nest_silent" }) do
  kafka.topic(name, { partitions = 1, replies = true })
end

-- NestJS -> switchyard ------------------------------------------------------------------------------------------

-- an object built from the request's object
kafka.reply("sy_user", { group = "sy-interop" }, function(msg)
  local v = msg.value
  return { id = v.id, name = v.name, tags = v.tags, nested = v.nested, by = "switchyard", topic = msg.topic }
end)

-- an error in a reply handler: NestJS's RpcException counterpart is http.error (its message goes on the wire)
kafka.reply("sy_fail", { group = "sy-interop" }, function(msg)
  http.error(409, "sy_fail refused " .. tostring(msg.value.id))
end)

-- any other Lua error: the message stays in switchyard's log; NestJS gets "internal error <id>" (NestJS itself
-- answers "Internal server error" for an exception that is not an RpcException)
kafka.reply("sy_crash", { group = "sy-interop" }, function(msg)
  error("sy_crash: a bug in the handler")
end)

-- a string in, a string out
kafka.reply("sy_text", { group = "sy-interop" }, function(msg)
  return "sy:" .. tostring(msg.value)
end)

-- a number out (NestJS sends numbers as their text too)
kafka.reply("sy_number", { group = "sy-interop" }, function(msg)
  return 42
end)

-- nil out: a null record value
kafka.reply("sy_null", { group = "sy-interop" }, function(msg)
  return nil
end)

-- switchyard -> NestJS ------------------------------------------------------------------------------------------

-- 200 { type = <Lua type of the decoded reply>, value = <reply> }; 404 for a null reply; 502 + the replier's error
-- message; 504 on timeout.
local function relay(topic, value, timeout)
  local v, err = kafka.request(topic, value, { timeout = timeout })
  if err == "timeout" then
    return 504, { statusCode = 504, message = topic .. " did not answer in time", error = "Gateway Timeout" }
  elseif err then
    return 502, { statusCode = 502, message = err, error = "Bad Gateway" }
  end
  if v == nil then
    return 404, { statusCode = 404, message = topic .. " answered null", error = "Not Found" }
  end
  return 200, { type = type(v), value = v }
end

-- the request body is sent as-is (its raw JSON text), so the request bytes are the test's own
http.post("/nest/echo", function(req) return relay("nest_echo", req.body_raw) end)
http.get("/nest/number", function(req) return relay("nest_number", { n = 41 }) end)
http.get("/nest/null", function(req) return relay("nest_null", { id = 0 }) end)
http.get("/nest/fail", function(req) return relay("nest_fail", { id = 13 }) end)
-- nobody answers nest_silent
http.get("/nest/silent", function(req) return relay("nest_silent", { id = 1 }, 500) end)
