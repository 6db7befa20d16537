-- busted spec for examples/webhook-relay/routes.lua (run from the repository root: busted --lua=luajit)
local testing = require("switchyard.testing")
local cjson = require("cjson")
require("helpers")

local HERE = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."

local PUSH = '{"ref":"refs/heads/main","commits":[],"repository":{"full_name":"acme/api"}}'

local function github(delivery, extra)
  local headers = { ["content-type"] = "application/json", ["x-github-event"] = "push",
                    ["x-hub-signature-256"] = "sha256=abc" }
  if delivery then headers["x-delivery-id"] = delivery end
  for k, v in pairs(extra or {}) do headers[k] = v end
  return { body = PUSH, headers = headers }
end

describe("webhook relay", function()
  local app
  before_each(function()
    app = testing.load(HERE .. "/routes.lua")
  end)

  it("relays the body byte for byte to webhooks.<source>, keyed by the delivery id", function()
    local res = app:request("POST", "/hooks/github", github("d-1"))
    assert.status(202, res)
    local rec = app:last_event("webhooks.github")
    assert.equals(PUSH, rec.value)
    assert.equals("d-1", rec.key)
    assert.json_body({ topic = "webhooks.github", partition = rec.partition, offset = rec.offset }, res)
  end)

  it("forwards the x-* headers and says where the record came from", function()
    local res = app:request("POST", "/hooks/github", github("d-2", { ["x-request-id"] = "req-42" }))
    assert.emitted(app, "webhooks.github", { ref = "refs/heads/main" }, { headers = {
      ["x-github-event"] = "push", ["x-hub-signature-256"] = "sha256=abc", ["webhook-source"] = "github",
      ["webhook-request-id"] = "req-42", ["content-type"] = "application/json" } })
    local headers = app:last_event("webhooks.github").headers
    assert.is_nil(headers["x-delivery-id"])
    assert.equals("req-42", headers["x-request-id"]) -- the request id travels with every record it produces
    assert.status(202, res)
  end)

  it("relays a delivery id once: a redelivery answers 200 with the first record's position", function()
    local first = app:request("POST", "/hooks/stripe", github("evt_1"))
    local again = app:request("POST", "/hooks/stripe", github("evt_1"))
    assert.status(200, again)
    assert.json_body({ duplicate = true, topic = "webhooks.stripe", partition = first.json.partition,
      offset = first.json.offset }, again)
    assert.equals(1, #app:events("webhooks.stripe"))
    assert.status(202, app:request("POST", "/hooks/github", github("evt_1"))) -- ids are per source
  end)

  it("409 with Retry-After for a redelivery while the first one still waits for the broker", function()
    app:seed("webhook_deliveries", "github:d-9", { status = "relaying" }) -- another worker is relaying it
    local res = app:request("POST", "/hooks/github", github("d-9"))
    assert.status(409, res)
    assert.equals("1", res.headers["retry-after"])
    assert.is_not.emitted(app, "webhooks.github")
  end)

  it("400 for an unknown source", function()
    assert.json_body({ statusCode = 400, error = "Bad Request",
      message = { "source must be one of the following values: github, stripe, shopify" } },
      app:request("POST", "/hooks/gitlab", github("d-3")))
    assert.same({}, app.emitted)
  end)

  it("400 without a delivery id", function()
    local res = app:request("POST", "/hooks/github", github(nil))
    assert.status(400, res)
    assert.same({ "x-delivery-id should not be empty", "x-delivery-id must be a string",
      "x-delivery-id must be shorter than or equal to 128 characters" }, res.json.message)
  end)

  it("400 for a body that is not a JSON object, 415 for one that is not JSON", function()
    local req = github("d-4")
    req.body = "[1,2,3]"
    assert.json_body({ statusCode = 400, message = { "body must be an object" }, error = "Bad Request" },
      app:request("POST", "/hooks/github", req))
    req.headers["content-type"] = "application/x-www-form-urlencoded"
    req.body = "payload=%7B%7D"
    assert.status(415, app:request("POST", "/hooks/github", req))
  end)

  it("400 when a request carries too many x- headers for one Kafka record", function()
    local extra = {}
    for i = 1, 33 do extra["x-custom-" .. i] = "v" end
    local res = app:request("POST", "/hooks/github", github("d-5", extra))
    assert.status(400, res)
    assert.same({ "too many x- headers (35, at most 32)" }, res.json.message)
  end)

  it("503 with Retry-After when the broker does not take the record; the sender's retry is relayed", function()
    app:fail_emits("webhooks.shopify", "Local: Message timed out")
    local res = app:request("POST", "/hooks/shopify", github("o-1"))
    assert.status(503, res)
    assert.equals("1", res.headers["retry-after"])
    assert.truthy(app:logged("webhook o-1 from shopify not relayed: delivery failed: Local: Message timed out"))
    app:fail_emits("webhooks.shopify")
    assert.status(202, app:request("POST", "/hooks/shopify", github("o-1")))
    assert.equals(1, #app:events("webhooks.shopify"))
  end)

  it("keeps a delivery's records in order on one partition", function()
    app:request("POST", "/hooks/github", github("same"))
    local p = app:last_event("webhooks.github").partition
    assert.equals(testing.crc32("same") % 8, p)
    assert.equals(8, app.app.topics["webhooks.github"].partitions)
    assert.equals("lz4", app.app.topics["webhooks.github"].compression)
    assert.same({ status = "ok" }, cjson.decode(app:get("/healthz").body))
  end)
end)
