-- Webhook relay: HTTP in, Kafka out.
--
-- POST /hooks/:source takes a webhook (GitHub, Stripe, Shopify, ...) and relays its JSON body, byte for byte, to
-- topic webhooks.<source>, keyed by the sender's delivery id, with the request's x-* headers as Kafka headers. It
-- answers 202 once the broker has acknowledged the record, so the sender retries anything that was not stored. A
-- delivery id seen before is not relayed twice.

-- Schemas -------------------------------------------------------------------------------------------------------

local SOURCES = { "github", "stripe", "shopify" }

local HookParams = dto.object { source = dto.enum(SOURCES) }
-- any JSON object; its fields are the sender's business
local AnyObject = dto.object({}, { unknown = "allow" })
local DeliveryId = dto.string { not_empty = true, max_length = 128 }

local MAX_FORWARDED_HEADERS = 32

-- Topics and stores ---------------------------------------------------------------------------------------------

for _, source in ipairs(SOURCES) do
  kafka.topic("webhooks." .. source, { partitions = 8, compression = "lz4" })
end

-- "<source>:<delivery id>" -> { status = "relaying" } while the record is in flight, then { topic, partition, offset }
local deliveries = store.open("webhook_deliveries")

-- The Kafka headers of the relayed record: the request's x-* headers (x-github-event, x-hub-signature-256, ...),
-- plus where it came from. Returns nil, message when there are too many.
local function forwarded_headers(req, source)
  local headers, n = {}, 0
  for name, value in pairs(req.headers) do
    if name:sub(1, 2) == "x-" and name ~= "x-request-id" and name ~= "x-delivery-id" then
      n = n + 1
      headers[name] = value
    end
  end
  if n > MAX_FORWARDED_HEADERS then
    return nil, string.format("too many x- headers (%d, at most %d)", n, MAX_FORWARDED_HEADERS)
  end
  headers["webhook-source"] = source
  headers["webhook-request-id"] = req.id
  if req.headers["content-type"] then headers["content-type"] = req.headers["content-type"] end
  return headers
end

-- HTTP endpoints ------------------------------------------------------------------------------------------------

http.static("GET", "/healthz", 200, { status = "ok" })

http.post("/hooks/:source", { params = HookParams, body = AnyObject }, function(req)
  local source = req.params.source
  local delivery, errors = DeliveryId:validate(req.headers["x-delivery-id"], { name = "x-delivery-id" })
  if delivery == nil then http.error(400, errors) end
  local headers, too_many = forwarded_headers(req, source)
  if headers == nil then http.error(400, { too_many }) end

  local seen_key = source .. ":" .. delivery
  if not deliveries:put_new(seen_key, { status = "relaying" }) then
    local seen = deliveries:get(seen_key)
    if seen.status == "relaying" then
      -- the first attempt is still waiting for the broker: let the sender come back rather than drop it
      http.error(409, "delivery " .. delivery .. " is being relayed", { ["retry-after"] = "1" })
    end
    return 200, { duplicate = true, topic = seen.topic, partition = seen.partition, offset = seen.offset }
  end

  local topic = "webhooks." .. source
  local ack, err, retry_after = kafka.emit(topic, req.body_raw, { key = delivery, headers = headers })
  if not ack then
    deliveries:delete(seen_key) -- not relayed: the sender's retry must go through
    log.warn("webhook %s from %s not relayed: %s", delivery, source, err)
    return http.unavailable(err, retry_after)
  end
  local relayed = { topic = topic, partition = ack.partition, offset = ack.offset }
  deliveries:put(seen_key, relayed)
  return 202, relayed
end)
