-- switchyard.runtime: the language routes.lua is written in, and the entry points the host calls.
--
-- A routes file is loaded into a fresh environment holding the DSL (`http`, `kafka`, `store`, `dto`, `log`,
-- `json`, `config`). Loading only declares: routes, schemas, topics and handlers are recorded in an `app` object.
-- The host (the C router, or switchyard.testing under busted) then calls `app:handle_http` and
-- `app:handle_message` inside coroutines.
--
-- Everything that touches the outside world goes through `core`, a table of primitives: the C host passes its
-- bindings (core/lua/*.c), the test harness passes in-memory twins with the same names and behaviour. This file
-- is shared by both, so the request pipeline (decoding, validation, error mapping, retries, DLQ, NestJS wire
-- format) is the same code under test and in production. It deliberately does no I/O of its own.

local cjson = require("cjson")
local dto = require("switchyard.dto")
-- kept as locals: the sandbox removes them from the routes file's reach, not from ours
local debug, jit, setfenv, loadfile = debug, jit, setfenv, loadfile

local M = {}

-- The primitives a host must provide; tests/spec/twin_parity_spec.lua checks both hosts against this list.
M.CORE_FUNCTIONS = {
  "log", "now_ms", "sleep", "emit", "request",
  "store_get", "store_put", "store_put_new", "store_delete", "store_incr", "store_scan",
}

local json = require("switchyard.json")
local json_null = json.null
local decoder = { decode = json.decode }
local encoder = { encode = json.encode }

local REASONS = {
  [200] = "OK", [201] = "Created", [202] = "Accepted", [204] = "No Content",
  [400] = "Bad Request", [401] = "Unauthorized", [403] = "Forbidden", [404] = "Not Found",
  [405] = "Method Not Allowed", [408] = "Request Timeout", [409] = "Conflict", [413] = "Payload Too Large",
  [415] = "Unsupported Media Type", [422] = "Unprocessable Entity", [429] = "Too Many Requests",
  [500] = "Internal Server Error", [501] = "Not Implemented", [502] = "Bad Gateway",
  [503] = "Service Unavailable", [504] = "Gateway Timeout",
}
M.REASONS = REASONS

local METHODS = { GET = true, POST = true, PUT = true, PATCH = true, DELETE = true }

-- An HTTP error raised by a handler (http.error) or by the pipeline; carries the status and the JSON body.
local HttpError = {}
HttpError.__index = HttpError
HttpError.__tostring = function(e) return string.format("HTTP %d: %s", e.status, tostring(e.message)) end

local function http_error(status, message, headers)
  return setmetatable({ status = status, message = message, headers = headers }, HttpError)
end

-- The same body as JSON text, keys in NestJS's order (statusCode, message, error, then extras sorted).
local function error_json(status, message, extra)
  local parts = { '{"statusCode":', tostring(status), ',"message":', encoder.encode(message), ',"error":',
                  encoder.encode(REASONS[status] or "Error") }
  if extra then
    local keys = {}
    for k in pairs(extra) do keys[#keys + 1] = k end
    table.sort(keys)
    for _, k in ipairs(keys) do
      parts[#parts + 1] = "," .. encoder.encode(k) .. ":" .. encoder.encode(extra[k])
    end
  end
  parts[#parts + 1] = "}"
  return table.concat(parts)
end
M.error_json = error_json

local function new_error_id()
  return string.format("%08x%04x", math.random(0, 0x7fffffff), math.random(0, 0xffff))
end

local function traceback(err)
  if getmetatable(err) == HttpError then return err end
  return { message = tostring(err), traceback = debug.traceback(tostring(err), 2) }
end

-- JSON text of a value the NestJS way: tables as JSON, strings as-is, numbers and booleans as text, nil as null.
local function serialize(value)
  local t = type(value)
  if value == nil or value == json_null then return nil end
  if t == "string" then return value end
  if t == "number" or t == "boolean" then return tostring(value) end
  if t == "table" then return encoder.encode(value) end
  error("cannot send a " .. t .. " as a Kafka value", 3)
end
M.serialize = serialize

-- The NestJS parser: JSON when the text starts with '{' or '[', otherwise the string itself; a null record is nil.
local function deserialize(raw)
  if raw == nil then return nil end
  local c = raw:byte(1)
  if c == 123 or c == 91 then
    local ok, v = pcall(decoder.decode, raw)
    if ok then return v end
  end
  return raw
end
M.deserialize = deserialize

local function url_decode(s)
  s = s:gsub("+", " ")
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

local function parse_query(qs)
  local q = {}
  if qs == nil or qs == "" then return q end
  for pair in qs:gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    if k ~= "" then q[url_decode(k)] = url_decode(v) end
  end
  return q
end
M.parse_query = parse_query

local function is_json_content_type(ct)
  if ct == nil then return false end
  ct = ct:lower()
  local media = ct:match("^%s*([^;%s]+)")
  return media == "application/json" or (media ~= nil and media:match("^application/[%w%.%-]+%+json$") ~= nil)
end

---------------------------------------------------------------------------------------------------------------
-- The app: what a routes file declared.

local App = {}
App.__index = App

local function caller_where(level)
  local info = debug.getinfo(level + 1, "Sl")
  if info == nil then return "?" end
  return string.format("%s:%d", info.short_src, info.currentline or 0)
end

function M.new(core, options)
  assert(type(core) == "table", "runtime.new needs the core primitives")
  for _, name in ipairs(M.CORE_FUNCTIONS) do
    assert(type(core[name]) == "function", "core primitive missing: " .. name)
  end
  local app = setmetatable({
    core = core,
    options = options or {},
    routes = {},          -- array: { method=, path=, handler=, body=, params=, query=, static=, where= }
    groups = {},          -- array: { group=, topics = {topic,...} } one consumer per group per worker
    handlers = {},        -- handlers[group][topic] = { kind = "event"|"reply", fn=, body=, retries=, backoff_ms= }
    topics = {},          -- topics[name] = { partitions=, compression= } (declared and implied)
    topic_order = {},
    stores = {},
    reply_topics = {},    -- the "<topic>.reply" topics this app's kafka.request calls read from
    config = { request_timeout_ms = 5000, retries = 3, backoff_ms = 100, default_partitions = 4,
               reply_partitions = 16,
               -- the producer's batching (librdkafka linger.ms, batch.size) and delivery timeout: one producer per
               -- worker serves every topic, so these are per routes file, not per topic
               linger_ms = 1, batch_size = 0, delivery_timeout_ms = 5000,
               -- how long a consumer's fetch may wait on an idle partition (librdkafka fetch.wait.max.ms): short
               -- where someone waits for the answer, longer for events (an idle consumer then costs less CPU)
               fetch_wait_ms = 5, event_fetch_wait_ms = 100, reply_fetch_wait_ms = 1 },
  }, App)
  app.env = app:make_env()
  return app
end

function App:declare_topic(name, opts)
  local t = self.topics[name]
  if t == nil then
    t = { partitions = self.config.default_partitions }
    self.topics[name] = t
    self.topic_order[#self.topic_order + 1] = name
  end
  if opts then
    if opts.partitions ~= nil then t.partitions = opts.partitions end
    if opts.compression ~= nil then t.compression = opts.compression end
    if opts.replies then self:declare_requests(name) end
  end
  return t
end

-- This app sends requests on `topic` and reads their replies from `topic`.reply.
function App:declare_requests(topic)
  local reply = topic .. ".reply"
  for _, t in ipairs(self.reply_topics) do
    if t == reply then return end
  end
  self.reply_topics[#self.reply_topics + 1] = reply
  self:declare_topic(reply, { partitions = self.config.reply_partitions })
end

-- Loads a routes file; raises with "file:line: message" when it is broken. Returns the app.
function M.load(core, path, options)
  local app = M.new(core, options)
  local chunk, err = loadfile(path)
  if not chunk then error(err, 0) end
  setfenv(chunk, app.env)
  -- the routes file's own functions (its handlers) run in LuaJIT's interpreter, where the host's instruction-count
  -- hook can stop a runaway handler; compiled traces never call hooks. Libraries (dto, runtime, modules) stay JIT-ed.
  if jit then jit.off(chunk, true) end
  local before = {}
  for name in pairs(package.loaded) do before[name] = true end
  chunk()
  app:finalize()
  -- the Lua modules the routes file required: a change to one of them reloads the routes too
  app.module_files = {}
  for name in pairs(package.loaded) do
    if not before[name] and type(name) == "string" then
      local file = package.searchpath and package.searchpath(name, package.path)
      if file then app.module_files[#app.module_files + 1] = file end
    end
  end
  table.sort(app.module_files)
  return app
end

function App:finalize()
  for _, name in ipairs(self.topic_order) do
    local t = self.topics[name]
    if type(t.partitions) ~= "number" or t.partitions < 1 or t.partitions > 1024 then
      error(string.format("topic %s: partitions must be between 1 and 1024", name), 0)
    end
  end
end

function App:log(level, fmt, ...)
  local msg = select("#", ...) > 0 and string.format(fmt, ...) or tostring(fmt)
  self.core.log(level, msg)
end

---------------------------------------------------------------------------------------------------------------
-- The DSL.

-- `level`: how many frames above check_opts's caller the routes file's line is (1 when the caller is the DSL
-- function the routes file called).
local function check_opts(opts, allowed, what, level)
  level = (level or 1) + 2
  if opts == nil then return {} end
  if type(opts) ~= "table" then error(what .. ": options must be a table", level) end
  for k in pairs(opts) do
    if not allowed[k] then error(string.format("%s: unknown option '%s'", what, tostring(k)), level) end
  end
  return opts
end

local ROUTE_OPTS = { body = true, params = true, query = true, max_body = true }
local CONSUMER_OPTS = { group = true, body = true, retries = true, backoff_ms = true }
local EMIT_OPTS = { key = true, headers = true, partition = true, wait = true }
local REQUEST_OPTS = { key = true, headers = true, timeout = true }
local TOPIC_OPTS = { partitions = true, compression = true, replies = true }
local COMPRESSIONS = { gzip = true, lz4 = true, zstd = true, snappy = true, none = true }

function App:make_env()
  local app = self
  local core = self.core

  local http = {}
  local function add_route(method, path, opts, handler, level)
    if handler == nil and type(opts) == "function" then opts, handler = nil, opts end
    if type(path) ~= "string" or path:sub(1, 1) ~= "/" then
      error("http." .. method:lower() .. ": the path must be a string starting with '/'", level)
    end
    if type(handler) ~= "function" then error("http." .. method:lower() .. " " .. path .. ": no handler function", level) end
    opts = check_opts(opts, ROUTE_OPTS, "http." .. method:lower() .. " " .. path, level - 1)
    for _, k in ipairs({ "body", "params", "query" }) do
      if opts[k] ~= nil and not dto.is_schema(opts[k]) then
        error(string.format("http.%s %s: option '%s' must be a dto schema", method:lower(), path, k), level)
      end
    end
    if opts.max_body ~= nil and (type(opts.max_body) ~= "number" or opts.max_body < 0) then
      error(string.format("http.%s %s: max_body must be a number of bytes", method:lower(), path), level)
    end
    app.routes[#app.routes + 1] = {
      method = method, path = path, handler = handler, body = opts.body, params = opts.params,
      query = opts.query, max_body = opts.max_body, where = caller_where(level),
    }
  end
  for m in pairs(METHODS) do
    http[m:lower()] = function(path, opts, handler) add_route(m, path, opts, handler, 3) end
  end
  http.delete = function(path, opts, handler) add_route("DELETE", path, opts, handler, 3) end

  -- A response computed once at load and served by C without entering Lua.
  function http.static(method, path, status, body, headers)
    if not METHODS[method] then error("http.static: unknown method " .. tostring(method), 2) end
    if type(path) ~= "string" or path:sub(1, 1) ~= "/" then
      error("http.static: the path must be a string starting with '/'", 2)
    end
    if type(status) ~= "number" or status < 100 or status > 599 or status % 1 ~= 0 then
      error("http.static " .. path .. ": status must be an HTTP status (100-599)", 2)
    end
    local text, ctype = body, "text/plain; charset=utf-8"
    if type(body) == "table" then text, ctype = encoder.encode(body), "application/json" end
    local hs = { "content-type", ctype }
    for k, v in pairs(headers or {}) do hs[#hs + 1] = k:lower(); hs[#hs + 1] = tostring(v) end
    app.routes[#app.routes + 1] = {
      method = method, path = path, static = { status = status, body = text or "", headers = hs },
      where = caller_where(2),
    }
  end

  -- Per-request telemetry: one record per request (route, method, status, body length, response time in
  -- microseconds) produced to `topic` in batches of `batch`, gzip-compressed, off the request's path.
  local TELEMETRY_OPTS = { topic = true, batch = true, flush_ms = true }
  function http.telemetry(opts)
    opts = check_opts(opts, TELEMETRY_OPTS, "http.telemetry")
    if type(opts.topic) ~= "string" or opts.topic == "" then error("http.telemetry: option 'topic' is required", 2) end
    local batch, flush_ms = opts.batch or 10, opts.flush_ms or 1000
    if type(batch) ~= "number" or batch < 1 or batch > 10000 then error("http.telemetry: batch must be 1..10000", 2) end
    if type(flush_ms) ~= "number" or flush_ms < 10 or flush_ms > 600000 then
      error("http.telemetry: flush_ms must be 10..600000", 2)
    end
    app.telemetry = { topic = opts.topic, batch = math.floor(batch), flush_ms = math.floor(flush_ms) }
    app:declare_topic(opts.topic, { compression = "gzip" })
  end

  function http.error(status, message, headers)
    error(http_error(status, message, headers), 2)
  end

  -- 503 + Retry-After, the answer to a Kafka failure that may pass (queue full, broker unreachable).
  function http.unavailable(message, retry_after)
    return 503, error_json(503, tostring(message or "service unavailable")),
      { ["retry-after"] = tostring(retry_after or 1), ["content-type"] = "application/json" }
  end

  local kafka = {}
  function kafka.topic(name, opts)
    opts = check_opts(opts, TOPIC_OPTS, "kafka.topic " .. tostring(name))
    if opts.compression ~= nil and not COMPRESSIONS[opts.compression] then
      error("kafka.topic " .. name .. ": compression must be one of gzip, lz4, zstd, snappy, none", 2)
    end
    app:declare_topic(name, opts)
  end

  local function add_consumer(kind, topic, opts, fn)
    local what = "kafka." .. (kind == "reply" and "reply" or "on") .. " " .. tostring(topic)
    if type(topic) ~= "string" or topic == "" then error(what .. ": the topic must be a non-empty string", 3) end
    if type(fn) ~= "function" then error(what .. ": no handler function", 3) end
    opts = check_opts(opts, CONSUMER_OPTS, what, 2)
    if type(opts.group) ~= "string" or opts.group == "" then error(what .. ": option 'group' is required", 3) end
    if opts.body ~= nil and not dto.is_schema(opts.body) then error(what .. ": option 'body' must be a dto schema", 3) end
    local by_topic = app.handlers[opts.group]
    if by_topic == nil then
      by_topic = {}
      app.handlers[opts.group] = by_topic
      app.groups[#app.groups + 1] = { group = opts.group, topics = {} }
    end
    if by_topic[topic] then error(what .. ": a handler for this topic and group already exists", 3) end
    by_topic[topic] = {
      kind = kind, fn = fn, body = opts.body, topic = topic, group = opts.group,
      retries = opts.retries or app.config.retries, backoff_ms = opts.backoff_ms or app.config.backoff_ms,
    }
    for _, g in ipairs(app.groups) do
      if g.group == opts.group then
        g.topics[#g.topics + 1] = topic
        if kind == "reply" then g.serves_requests = true end
      end
    end
    app:declare_topic(topic)
    app:declare_topic(topic .. ".dlq")
    -- an app that answers a topic may also ask it (a gateway and a service in one file)
    if kind == "reply" then app:declare_requests(topic) end
  end
  function kafka.on(topic, opts, fn) add_consumer("event", topic, opts, fn) end
  function kafka.reply(topic, opts, fn) add_consumer("reply", topic, opts, fn) end

  -- Produces a record. Waits for the broker's acknowledgement unless opts.wait == false.
  -- Returns { partition =, offset = } (or true when not waiting), or nil, "reason", retry_after_seconds.
  function kafka.emit(topic, value, opts)
    if type(topic) ~= "string" or topic == "" then error("kafka.emit: the topic must be a non-empty string", 2) end
    opts = check_opts(opts, EMIT_OPTS, "kafka.emit " .. topic)
    local key = opts.key
    if key ~= nil then key = tostring(key) end
    local wait = opts.wait ~= false
    local partition, offset, retry_after = core.emit(topic, serialize(value), key, opts.headers, opts.partition, wait)
    if partition == nil then return nil, offset, retry_after end
    if not wait then return true end
    return { partition = partition, offset = offset }
  end

  -- Sends a NestJS-style request and waits for the reply. Returns the decoded reply (nil when the replier
  -- answered null), or nil, err where err is "timeout", the replier's error, or a produce failure.
  function kafka.request(topic, value, opts)
    if type(topic) ~= "string" or topic == "" then error("kafka.request: the topic must be a non-empty string", 2) end
    opts = check_opts(opts, REQUEST_OPTS, "kafka.request " .. topic)
    local key = opts.key
    if key ~= nil then key = tostring(key) end
    local timeout = opts.timeout or app.config.request_timeout_ms
    local raw, headers, err = core.request(topic, serialize(value), key, opts.headers, timeout)
    if headers == nil then return nil, raw end -- failure: raw holds the reason
    local nest_err = headers["kafka_nest-err"]
    if nest_err ~= nil then
      local decoded = deserialize(nest_err)
      if type(decoded) == "table" and decoded.message ~= nil then return nil, tostring(decoded.message), decoded end
      return nil, tostring(decoded), decoded
    end
    return deserialize(raw)
  end

  local store = {}
  local Store = {}
  Store.__index = Store
  local function key_of(k)
    if type(k) == "number" then
      if k ~= math.floor(k) then error("store: a numeric key must be an integer", 3) end
      return string.format("%d", k)
    end
    if type(k) ~= "string" or k == "" then error("store: a key must be a non-empty string or an integer", 3) end
    return k
  end
  function store.open(name)
    if type(name) ~= "string" or not name:match("^[%w_%.%-]+$") or #name > 64 then
      error("store.open: a store name is 1-64 characters of letters, digits, '_', '.', '-'", 2)
    end
    local s = app.stores[name]
    if s == nil then
      s = setmetatable({ name = name }, Store)
      app.stores[name] = s
    end
    return s
  end
  function Store:get(key)
    local raw = core.store_get(self.name, key_of(key))
    if raw == nil then return nil end
    return decoder.decode(raw)
  end
  function Store:put(key, value)
    if value == nil then error("store:put: use delete to remove a key", 2) end
    return core.store_put(self.name, key_of(key), encoder.encode(value))
  end
  -- Stores only when the key is absent; returns true when stored, false when the key already existed.
  function Store:put_new(key, value)
    if value == nil then error("store:put_new: value is nil", 2) end
    return core.store_put_new(self.name, key_of(key), encoder.encode(value))
  end
  function Store:delete(key) return core.store_delete(self.name, key_of(key)) end
  function Store:incr(key, delta) return core.store_incr(self.name, key_of(key), delta or 1) end
  -- The next value of this store's id sequence (1, 2, 3, ...), atomic across workers, durable across restarts.
  function Store:next_id() return core.store_incr("_sequences", self.name, 1) end
  -- Up to `limit` (default 100, max 1000) entries in key order from `start` (inclusive): { {key=, value=}, ... }
  function Store:scan(start, limit)
    local flat, err = core.store_scan(self.name, start and key_of(start) or nil, limit or 100)
    if flat == nil then return nil, err end
    local out = {}
    for i = 1, #flat, 2 do out[#out + 1] = { key = flat[i], value = decoder.decode(flat[i + 1]) } end
    return out
  end

  local log = {}
  for _, level in ipairs({ "debug", "info", "warn", "error" }) do
    log[level] = function(fmt, ...) app:log(level, fmt, ...) end
  end

  local json_dsl = {
    encode = encoder.encode,
    -- returns true, value or false, error (never raises on bad input)
    decode = function(s) return pcall(decoder.decode, s) end,
    null = json_null,
    array = json.array, -- json.array({}) encodes as [] even when empty
  }

  local function config(t)
    for k, v in pairs(t) do
      if app.config[k] == nil then error("config: unknown setting '" .. tostring(k) .. "'", 2) end
      if type(v) ~= type(app.config[k]) then error("config: " .. k .. " must be a " .. type(app.config[k]), 2) end
      if type(v) == "number" and (v < 0 or v ~= math.floor(v)) then
        error("config: " .. k .. " must be a non-negative integer", 2)
      end
      app.config[k] = v
    end
  end

  local function sleep(ms)
    if type(ms) ~= "number" or ms < 0 then error("sleep: milliseconds must be a non-negative number", 2) end
    core.sleep(ms)
  end

  self.dsl = { http = http, kafka = kafka, store = store, dto = dto, log = log, json = json_dsl, config = config,
               sleep = sleep }
  local env = {}
  for k, v in pairs(self.dsl) do env[k] = v end
  -- options.globals: what the routes file sees besides the DSL (the test harness passes a sandboxed view)
  return setmetatable(env, { __index = self.options.globals or _G })
end

---------------------------------------------------------------------------------------------------------------
-- HTTP entry point.

local function bad_request(messages)
  return http_error(400, messages)
end

local function flatten_headers(headers, into)
  if headers == nil then return into end
  for k, v in pairs(headers) do
    into[#into + 1] = tostring(k):lower()
    into[#into + 1] = tostring(v)
  end
  return into
end

function App:render(status, body, headers)
  if type(status) ~= "number" then
    -- a handler may return just a body
    status, body, headers = 200, status, body
  end
  if status < 100 or status > 599 or status ~= math.floor(status) then
    error("handler returned an invalid HTTP status " .. tostring(status), 0)
  end
  local hs = {}
  local text
  if body == nil then
    text = ""
  elseif type(body) == "table" then
    text = encoder.encode(body)
    hs[1], hs[2] = "content-type", "application/json"
  elseif type(body) == "string" then
    text = body
    hs[1], hs[2] = "content-type", "text/plain; charset=utf-8"
  else
    text = tostring(body)
    hs[1], hs[2] = "content-type", "text/plain; charset=utf-8"
  end
  if headers ~= nil then
    if type(headers) ~= "table" then error("handler returned headers that are not a table", 0) end
    for k, v in pairs(headers) do
      local name = tostring(k):lower()
      if name == "content-type" and hs[1] == "content-type" then hs[2] = tostring(v)
      else hs[#hs + 1] = name; hs[#hs + 1] = tostring(v) end
    end
  end
  return status, text, hs
end

function App:render_error(e, req)
  if type(e) ~= "table" then e = { message = tostring(e) } end -- out of memory arrives as a bare string
  if getmetatable(e) == HttpError then
    local hs = flatten_headers(e.headers, { "content-type", "application/json" })
    return e.status, error_json(e.status, e.message), hs
  end
  local id = new_error_id()
  local route = req and req.route or "?"
  local function answer()
    self:log("error", "error_id=%s route=%s %s", id, route, e.traceback or tostring(e.message))
    return 500, error_json(500, "Internal Server Error", { errorId = id }), { "content-type", "application/json" }
  end
  local ok, status, body, hs = pcall(answer)
  if not ok then
    -- the handler failed near the memory limit (out of memory, or stopped by its time budget while allocating):
    -- collect its garbage, then answer
    collectgarbage()
    status, body, hs = answer()
  end
  return status, body, hs
end

local function validate_part(schema, value, coerce)
  local v, errs = schema:validate(value, coerce and { coerce = true } or nil)
  if errs ~= nil then error(bad_request(errs), 0) end
  return v
end

-- Runs route `id` for `req` and returns status, body text, flat header list { name, value, ... }.
-- req: { method, path, query_string, headers = { lowercase name = value }, params = { name = value },
--        body_raw (string or nil), id (request id) }
function App:prepare(route, req)
  req.route = route.path
  req.query = parse_query(req.query_string)
  if route.params then req.params = validate_part(route.params, req.params, true) end
  if route.query then req.query = validate_part(route.query, req.query, true) end
  local raw = req.body_raw
  if route.max_body and raw and #raw > route.max_body then
    error(http_error(413, string.format("request body is larger than %d bytes", route.max_body)), 0)
  end
  local ctype = req.headers and req.headers["content-type"]
  if route.body then
    if raw == nil or raw == "" then
      error(bad_request({ "request body must be a JSON object" }), 0)
    end
    if not is_json_content_type(ctype) then
      error(http_error(415, "Content-Type must be application/json"), 0)
    end
    local ok, decoded = pcall(decoder.decode, raw)
    if not ok then error(bad_request("malformed JSON: " .. tostring(decoded):gsub("^.-:%d+: ", "")), 0) end
    req.body = validate_part(route.body, decoded, false)
  elseif raw ~= nil and raw ~= "" and is_json_content_type(ctype) then
    local ok, decoded = pcall(decoder.decode, raw)
    if not ok then error(bad_request("malformed JSON: " .. tostring(decoded)), 0) end
    req.body = decoded
  end
end

function App:handle_http(id, req)
  local route = self.routes[id]
  local ok, err = xpcall(self.prepare, traceback, self, route, req)
  if not ok then return self:render_error(err, req) end
  local results = { xpcall(route.handler, traceback, req) }
  if not results[1] then return self:render_error(results[2], req) end
  local rok, status, text, hs = xpcall(self.render, traceback, self, results[2], results[3], results[4])
  if not rok then return self:render_error(status, req) end
  return status, text, hs
end

---------------------------------------------------------------------------------------------------------------
-- Kafka entry point.

local function header_pairs(headers, extra)
  local out = {}
  for k, v in pairs(headers or {}) do out[k] = v end
  for k, v in pairs(extra or {}) do out[k] = v end
  return out
end

-- Sends to the DLQ, retrying with capped backoff until the broker takes it: a message is never dropped.
function App:send_to_dlq(msg, reason)
  local dlq = msg.topic .. ".dlq"
  local headers = header_pairs(msg.headers, {
    ["x-original-topic"] = msg.topic,
    ["x-original-partition"] = tostring(msg.partition),
    ["x-original-offset"] = tostring(msg.offset),
    ["x-error"] = reason,
  })
  local backoff = 100
  while true do
    local p, err = self.core.emit(dlq, msg.value, msg.key, headers, nil, true)
    if p ~= nil then
      self:log("warn", "message %s/%d@%d sent to %s: %s", msg.topic, msg.partition or -1, msg.offset or -1, dlq, reason)
      return
    end
    self:log("error", "cannot send %s/%d@%d to %s (%s); retrying in %d ms", msg.topic, msg.partition or -1,
      msg.offset or -1, dlq, tostring(err), backoff)
    self.core.sleep(backoff)
    backoff = math.min(backoff * 2, 5000)
  end
end

function App:reply(msg, value, err)
  local h = msg.headers
  local headers = {
    kafka_correlationId = h.kafka_correlationId,
    ["kafka_nest-is-disposed"] = "\0",
  }
  local payload
  if err ~= nil then
    headers["kafka_nest-err"] = encoder.encode({ status = "error", message = err })
  else
    local ok, text = pcall(serialize, value)
    if ok then
      payload = text
    else
      self:log("error", "reply to %s cannot be serialized: %s", tostring(h.kafka_replyTopic), tostring(text))
      headers["kafka_nest-err"] = encoder.encode({ status = "error", message = "the reply cannot be serialized" })
    end
  end
  -- a reply is not waited for: its requester owns the outcome (it gets the reply or times out), and waiting for the
  -- broker's acknowledgement would hold the request partition for a round trip per request. Only a refusal to
  -- queue (a full producer queue) is retried here.
  local partition = tonumber(h.kafka_replyPartition)
  if partition ~= nil and (partition ~= math.floor(partition) or partition < 0 or partition > 2147483647) then
    partition = nil -- not a partition number: let the partitioner choose
  end
  -- NestJS replies on "<pattern>.reply"; any other topic is refused, so that a request cannot make the router
  -- produce to (and, on clusters that auto-create, create) topics of the sender's choosing
  local t = h.kafka_replyTopic
  if t ~= msg.topic .. ".reply" then
    self:log("error", "request on %s names kafka_replyTopic %q (expected %s.reply): no reply sent", msg.topic,
      tostring(t):sub(1, 100), msg.topic)
    return
  end
  local backoff = 100
  for _ = 1, 10 do
    local ok, perr = self.core.emit(t, payload, nil, headers, partition, false)
    if ok ~= nil then return end
    self:log("error", "cannot send the reply to %s (%s); retrying in %d ms", h.kafka_replyTopic, tostring(perr), backoff)
    self.core.sleep(backoff)
    backoff = math.min(backoff * 2, 5000)
  end
  self:log("error", "gave up sending the reply to %s; its requester will time out", h.kafka_replyTopic)
end

-- Runs the handler that `group` declared for msg.topic. msg: { topic, partition, offset, key, value (raw string
-- or nil), headers = { name = value } }. Returns when the message is done (handled, replied or dead-lettered):
-- the host commits the offset after it returns.
function App:handle_message(group, msg)
  local h = self.handlers[group] and self.handlers[group][msg.topic]
  if h == nil then
    self:log("error", "no handler for topic %s in group %s; message %d@%d skipped", msg.topic, group,
      msg.partition or -1, msg.offset or -1)
    return "unhandled", 0
  end
  msg.headers = msg.headers or {}
  local is_request = h.kind == "reply" and msg.headers.kafka_correlationId ~= nil and msg.headers.kafka_replyTopic ~= nil
  local value = deserialize(msg.value)
  if h.body then
    local v, errs = h.body:validate(value)
    if errs ~= nil then
      local reason = "validation failed: " .. table.concat(errs, "; ")
      if is_request then
        self:reply(msg, nil, reason)
        return "invalid", 0
      end
      self:send_to_dlq(msg, reason)
      return "dlq", 0
    end
    value = v
  end
  local m = { topic = msg.topic, partition = msg.partition, offset = msg.offset, key = msg.key, value = value,
              raw = msg.value, headers = msg.headers }
  if is_request then
    local ok, result = xpcall(h.fn, traceback, m)
    if not ok then
      if type(result) ~= "table" then result = { message = tostring(result) } end
      local id = new_error_id()
      self:log("error", "error_id=%s reply handler %s: %s", id, msg.topic, result.traceback or tostring(result.message))
      self:reply(msg, nil, (getmetatable(result) == HttpError) and tostring(result.message) or
        ("internal error " .. id))
      return "reply_error", 1
    end
    self:reply(msg, result)
    return "replied", 0
  end
  local attempts = h.retries + 1
  local last
  for attempt = 1, attempts do
    local ok, err = xpcall(h.fn, traceback, m)
    if ok then return "ok", attempt - 1 end
    if type(err) ~= "table" then err = { message = tostring(err) } end
    last = err.traceback or tostring(err.message)
    self:log("error", "handler for %s failed (attempt %d of %d) on %d@%d: %s", msg.topic, attempt, attempts,
      msg.partition or -1, msg.offset or -1, last)
    if attempt < attempts then self.core.sleep(h.backoff_ms * 2 ^ (attempt - 1)) end
  end
  local reason = last and last:match("^[^\n]*") or "handler failed"
  self:send_to_dlq(msg, reason)
  return "dlq", attempts
end

-- A summary of what the file declares (switchyard --check).
function App:describe()
  local lines = {}
  for _, r in ipairs(self.routes) do
    local extra = ""
    if r.static then extra = " (static " .. r.static.status .. ")" end
    if r.body then extra = extra .. " body=" .. dto.describe(r.body) end
    if r.params then extra = extra .. " params=" .. dto.describe(r.params) end
    if r.query then extra = extra .. " query=" .. dto.describe(r.query) end
    lines[#lines + 1] = string.format("route   %-6s %s%s", r.method, r.path, extra)
  end
  for _, g in ipairs(self.groups) do
    for _, t in ipairs(g.topics) do
      local h = self.handlers[g.group][t]
      lines[#lines + 1] = string.format("%-7s %s (group %s)%s", h.kind == "reply" and "reply" or "consume", t,
        g.group, h.body and (" body=" .. dto.describe(h.body)) or "")
    end
  end
  for _, name in ipairs(self.topic_order) do
    local t = self.topics[name]
    lines[#lines + 1] = string.format("topic   %s (%d partitions%s)", name, t.partitions,
      t.compression and (", " .. t.compression) or "")
  end
  return table.concat(lines, "\n")
end

-- Takes from this Lua state what a routes file has no business with: native code (C modules, ffi, package.loadlib),
-- processes (os.execute, os.exit), the filesystem outside `routes_dir` (io is removed; loadfile and dofile only
-- read Lua files under routes_dir), and the debug library. `switchyard --unsafe-lua` skips this. Call it after the
-- runtime is loaded (cjson is in already) and before the routes file.
function M.sandbox(routes_dir)
  local real_loadfile = loadfile
  local prefix = routes_dir:gsub("/+$", "") .. "/"
  local function inside(path)
    if type(path) ~= "string" or path:find("%.%.") or path:find("%z") then return false end
    if path:sub(1, 1) ~= "/" then return true end -- relative to the working directory is the routes dir's business
    return path:sub(1, #prefix) == prefix
  end
  _G.loadfile = function(path, ...)
    if not inside(path) then return nil, "loadfile: " .. tostring(path) .. " is outside the routes directory" end
    return real_loadfile(path, ...)
  end
  _G.dofile = function(path)
    local f, err = _G.loadfile(path)
    if not f then error(err, 2) end
    return f()
  end
  _G.io = nil
  _G.debug = nil
  local os = _G.os
  _G.os = { time = os.time, clock = os.clock, date = os.date, difftime = os.difftime, getenv = os.getenv }
  package.loadlib = nil
  package.cpath = ""
  package.loaders[3], package.loaders[4] = nil, nil -- the C and all-in-one C loaders
  package.loaded.ffi, package.preload.ffi = nil, nil
  package.loaded.io, package.loaded.debug, package.loaded.os = nil, nil, _G.os
end

M.App = App
M.HttpError = HttpError
return M
