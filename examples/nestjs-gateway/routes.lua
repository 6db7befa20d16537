-- NestJS gateway: an HTTP API in front of NestJS microservices that already speak Kafka.
--
-- The services (orders, inventory) are NestJS apps with @MessagePattern handlers; they stay as they are. This file
-- only turns HTTP calls into Kafka requests to their patterns (NestJS's wire format: request on the pattern, reply on
-- <pattern>.reply) and maps the outcome to HTTP: the reply -> 200/201, null -> 404, no reply in time -> 504, an
-- error thrown by the service (kafka_nest-err) or a request that cannot be sent -> 502. It stores nothing and emits
-- nothing else.

config { request_timeout_ms = 3000 }

-- Schemas -------------------------------------------------------------------------------------------------------

local IdParams = dto.object { id = dto.integer { min = 1 } }
local SkuParams = dto.object { sku = dto.string { pattern = "^[%u%d%-]+$", max_length = 32 } }

local OrderLine = dto.object {
  sku = dto.string { not_empty = true, max_length = 32 },
  quantity = dto.integer { min = 1, max = 1000 },
}
local CreateOrderDto = dto.object({
  customerId = dto.integer { min = 1 },
  lines = dto.array(OrderLine, { min_size = 1, max_size = 100 }),
  note = dto.string { max_length = 500, optional = true },
}, { unknown = "reject" })

-- Topics ---------------------------------------------------------------------------------------------------------

-- The patterns this gateway asks. `replies = true` declares <pattern>.reply, where switchyard reads the answers
-- (on partitions it owns); a request to a pattern not declared here is refused at once.
for _, pattern in ipairs({ "orders.get", "orders.create", "orders.by_customer", "inventory.level" }) do
  kafka.topic(pattern, { replies = true })
end

-- One request to a NestJS pattern; raises the HTTP error that says how it went wrong.
local function call(pattern, payload, timeout)
  local value, err = kafka.request(pattern, payload, { timeout = timeout })
  if err == "timeout" then
    http.error(504, pattern .. " did not answer in time")
  elseif err ~= nil then
    http.error(502, pattern .. " failed: " .. err)
  end
  return value
end

-- HTTP endpoints ------------------------------------------------------------------------------------------------

http.static("GET", "/healthz", 200, { status = "ok" })

http.get("/orders/:id", { params = IdParams }, function(req)
  local order = call("orders.get", { id = req.params.id })
  if order == nil then http.error(404, "order " .. req.params.id .. " not found") end
  return 200, order
end)

http.post("/orders", { body = CreateOrderDto }, function(req)
  -- creating an order may take longer than a lookup on the service side
  return 201, call("orders.create", req.body, 10000)
end)

http.get("/customers/:id/orders", { params = IdParams }, function(req)
  local orders = call("orders.by_customer", { customerId = req.params.id })
  return 200, { customerId = req.params.id, orders = orders or json.null }
end)

http.get("/stock/:sku", { params = SkuParams }, function(req)
  local level = call("inventory.level", req.params.sku) -- a plain string payload, as Nest sends one
  if level == nil then http.error(404, "unknown sku " .. req.params.sku) end
  -- NestJS's parser reads only {...} and [...] as JSON: a number comes back as its text
  return 200, { sku = req.params.sku, available = tonumber(level) or level }
end)
