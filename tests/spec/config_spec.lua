-- config { ... } in a routes file: known settings with their types and ranges, everything else refused at load.
local testing = require("switchyard.testing")

describe("config", function()
  it("takes the producer settings and the request timeout", function()
    local app = testing.load_string([[
      config { linger_ms = 5, batch_size = 65536, delivery_timeout_ms = 3000, request_timeout_ms = 250 }
    ]])
    assert.equals(5, app.app.config.linger_ms)
    assert.equals(65536, app.app.config.batch_size)
    assert.equals(3000, app.app.config.delivery_timeout_ms)
    assert.equals(250, app.app.config.request_timeout_ms)
  end)

  it("takes the consumer fetch waits, with defaults for each kind of consumer", function()
    local app = testing.load_string("config { reply_fetch_wait_ms = 5 }")
    assert.equals(5, app.app.config.reply_fetch_wait_ms)
    assert.equals(5, app.app.config.fetch_wait_ms)
    assert.equals(100, app.app.config.event_fetch_wait_ms)
  end)

  it("marks the consumer groups that answer requests", function()
    local app = testing.load_string([[
      kafka.on("ev", { group = "events" }, function() end)
      kafka.reply("ask", { group = "answers" }, function() end)
      kafka.on("ev2", { group = "answers" }, function() end)
    ]])
    local by = {}
    for _, g in ipairs(app.app.groups) do by[g.group] = g end
    assert.is_nil(by.events.serves_requests)
    assert.is_true(by.answers.serves_requests)
  end)

  it("refuses unknown settings, wrong types and negative or fractional numbers, naming the line", function()
    for _, src in ipairs({
      "config { lingerms = 5 }",
      "config { linger_ms = '5' }",
      "config { linger_ms = -1 }",
      "config { batch_size = 1.5 }",
    }) do
      local ok, err = pcall(testing.load_string, src)
      assert.is_false(ok, src)
      assert.matches(":1:", tostring(err), 1, true)
    end
  end)
end)
