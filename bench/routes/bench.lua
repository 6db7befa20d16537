-- bench/routes/bench.lua: the routes of the scenarios that use no Kafka (bench/run scenarios 1 and 2, --soak).
--
-- Scenario 1, the ceiling: a response computed once at load and served by C without entering Lua.
-- Scenario 2: a Lua route that decodes and validates the reference's CreateUserDto and answers, with no Kafka and
-- no store: the cost of the Lua request pipeline (coroutine, cjson decode, dto validation, cjson encode).

local CreateUserDto = dto.object {   -- the same schema as routes.lua's sign-up
  name = dto.string { not_empty = true, max_length = 200 },
  email = dto.email { not_empty = true },
}

http.static("GET", "/static", 200, { status = "ok" })

http.post("/validate", { body = CreateUserDto }, function(req)
  return 200, { name = req.body.name, email = req.body.email:lower() }
end)
