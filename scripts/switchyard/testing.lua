-- switchyard.testing: run a routes file under busted, with no server and no broker.
--
--   local testing = require("switchyard.testing")
--   local app = testing.load("routes.lua")
--   local res = app:request("POST", "/auth/sign-up", { body = { name = "Ada", email = "ada@example.com" } })
--   assert.equals(202, res.status)
--   assert.equals("create_user", app.emitted[1].topic)
--
-- Two layers:
--
-- * The core twin (testing.new_core / app.core): in-memory versions of every primitive the C host hands to
--   runtime.lua (core/lua/core.c, kafka.c, store.c), with the same names, arguments, results and errors: argument
--   mistakes raise "bad argument #n to 'name' (...)", runtime failures return nil, "reason" (store) or
--   nil, "delivery failed: ...", 1 (emit); waiting primitives (sleep, emit with wait, request) may only be called
--   from the handler's own coroutine, and yield it like the C ones do. Time is virtual: sleep and request timeouts
--   advance a fake clock at once. tests/spec/twin_parity_spec.lua keeps the twin's name list equal to
--   runtime.CORE_FUNCTIONS and to what core/lua/*.c registers.
--
-- * The harness (what testing.load returns): what the C host does around runtime.lua. HTTP: h2o's body limit (413),
--   path normalisation, the C router (core/http/router.c: most static segments win, 404 "Cannot GET /x", 405 with
--   Allow), static routes, the request table of core/lua/http.c, then App.handle_http in a coroutine. Kafka: the
--   records the app produced (app.emitted), delivery of a record to the declared handlers (App.handle_message in a
--   coroutine, with retries and DLQ as runtime.lua does them), request-reply answered in process, broker failures
--   on demand. Store: the LMDB semantics (byte-ordered keys, put_new, decimal counters, scan limits).
--
-- Like the real binary, which first loads a routes file with no worker to validate it (main.c), a routes file
-- cannot use the store, emit or wait while it loads. It also sees the globals the binary's sandbox leaves
-- (runtime.sandbox: no io, debug, C modules or ffi, a reduced os; testing.load(path, { unsafe_lua = true }) is
-- --unsafe-lua), handlers that run too long without yielding are stopped like --handler-budget does (1000 ms of CPU
-- by default), and http.telemetry records are produced like core/lua/telemetry.c does.

local runtime = require("switchyard.runtime")
local cjson = require("cjson")
local bit = require("bit")

local M = {}

local unpack = unpack or table.unpack
local format = string.format
local App = runtime.App

local function pack(...)
  return { n = select("#", ...), ... }
end

local codec = cjson.new()
codec.encode_sparse_array(true)

local function try_decode(text)
  if type(text) ~= "string" or text == "" then return nil end
  local ok, v = pcall(codec.decode, text)
  if ok then return v end
  return nil
end
M.decode = try_decode

local function copy(t)
  local out = {}
  for k, v in pairs(t or {}) do out[k] = v end
  return out
end

-- The message of a waiting primitive called where the C host has no coroutine to suspend (sy_co_check).
local function not_in_handler(what)
  return what .. " can only be called from an HTTP or topic handler (not at load time or from a nested coroutine)"
end

---------------------------------------------------------------------------------------------------------------
-- lauxlib-style argument checks, with lauxlib's messages ("bad argument #2 to 'store_get' (string expected, got
-- nil)"). A C function has no line information, so these errors carry no position either.

local function arg_type(args, i)
  if i > args.n then return "no value" end
  return type(args[i])
end

local function argerror(fname, i, msg)
  error(format("bad argument #%d to '%s' (%s)", i, fname, msg), 0)
end

local function typeerror(fname, args, i, expected)
  argerror(fname, i, expected .. " expected, got " .. arg_type(args, i))
end

-- luaL_checklstring: a string, or a number converted as tostring does.
local function check_string(fname, args, i)
  local v = args[i]
  if type(v) == "string" then return v end
  if type(v) == "number" then return tostring(v) end
  typeerror(fname, args, i, "string")
end

local function opt_string(fname, args, i)
  if args[i] == nil then return nil end
  return check_string(fname, args, i)
end

-- luaL_checknumber: a number, or a string that converts to one.
local function check_number(fname, args, i)
  local v = args[i]
  if type(v) == "number" then return v end
  if type(v) == "string" and tonumber(v) ~= nil then return tonumber(v) end
  typeerror(fname, args, i, "number")
end

local function opt_number(fname, args, i, default)
  if args[i] == nil then return default end
  return check_number(fname, args, i)
end

-- luaL_checkinteger: lua_tointeger truncates towards zero.
local function check_integer(fname, args, i)
  local n = check_number(fname, args, i)
  if n >= 0 then return math.floor(n) end
  return math.ceil(n)
end

---------------------------------------------------------------------------------------------------------------
-- Kafka partitioner: librdkafka's default (consistent_random) is CRC32 of the key modulo the partition count.

local CRC_TABLE = {}
for i = 0, 255 do
  local c = i
  for _ = 1, 8 do
    if bit.band(c, 1) ~= 0 then c = bit.bxor(bit.rshift(c, 1), 0xEDB88320) else c = bit.rshift(c, 1) end
  end
  CRC_TABLE[i] = c
end

local function crc32(s)
  local c = 0xFFFFFFFF
  for i = 1, #s do
    c = bit.bxor(CRC_TABLE[bit.band(bit.bxor(c, s:byte(i)), 0xFF)], bit.rshift(c, 8))
  end
  return bit.bnot(c) % 4294967296
end
M.crc32 = crc32

---------------------------------------------------------------------------------------------------------------
-- Scripted request-reply answers (app:on_request).

-- No reply: the request times out after its timeout (the virtual clock advances by it).
M.timeout = setmetatable({}, { __tostring = function() return "testing.timeout" end })

local ErrorReply = {}
ErrorReply.__index = ErrorReply
ErrorReply.__tostring = function(e) return "testing.error(" .. tostring(e.message) .. ")" end

-- A NestJS error reply: the replier threw; the reply carries header kafka_nest-err. `err` is the message (sent as
-- {"status":"error","message":err}) or a table sent as the whole error object.
function M.error(err)
  return setmetatable({ message = err }, ErrorReply)
end

---------------------------------------------------------------------------------------------------------------
-- HTTP helpers that reproduce h2o and core/http/router.c.

local ROUTER_METHODS = {
  { "GET", 1 }, { "POST", 2 }, { "PUT", 4 }, { "PATCH", 8 }, { "DELETE", 16 }, { "HEAD", 32 }, { "OPTIONS", 64 },
}
local METHOD_BIT = {}
for _, m in ipairs(ROUTER_METHODS) do METHOD_BIT[m[1]] = m[2] end
local GET, HEAD = 1, 32
local MAX_SEGMENTS, MAX_PARAMS = 32, 8

local function format_methods(mask)
  local names = {}
  for _, m in ipairs(ROUTER_METHODS) do
    if bit.band(mask, m[2]) ~= 0 then names[#names + 1] = m[1] end
  end
  return table.concat(names, ", ")
end

-- router.c split(): segments after the leading '/', a trailing '/' ignored, empty segments kept; nil if too many.
local function split(path)
  local len = #path
  if len > 1 and path:byte(len) == 47 then len = len - 1 end
  local segs = {}
  local i = 2
  while i <= len do
    local j = i
    while j <= len and path:byte(j) ~= 47 do j = j + 1 end
    if #segs == MAX_SEGMENTS then return nil end
    segs[#segs + 1] = path:sub(i, j - 1)
    i = j + 1
  end
  return segs
end

local function hex_value(c)
  if c == nil then return nil end
  if c >= 48 and c <= 57 then return c - 48 end
  if c >= 97 and c <= 102 then return c - 87 end
  if c >= 65 and c <= 70 then return c - 55 end
  return nil
end

-- core/lua/http.c push_decoded() (and h2o's normalisation): %XX decoded when two hex digits follow.
local function percent_decode(s)
  local out, i, len = {}, 1, #s
  while i <= len do
    local c = s:byte(i)
    local hi, lo = hex_value(s:byte(i + 1)), hex_value(s:byte(i + 2))
    if c == 37 and hi and lo then
      out[#out + 1] = string.char(hi * 16 + lo)
      i = i + 3
    else
      out[#out + 1] = string.char(c)
      i = i + 1
    end
  end
  return table.concat(out)
end

-- h2o's path_normalized: always starting with '/', percent-decoded, "." and ".." segments resolved (a final one
-- leaves a trailing '/'). Paths without '%' or "/." are used as they are.
local function normalize_path(path)
  if path == "" or path:byte(1) ~= 47 then path = "/" .. path end
  if not (path:find("%", 1, true) or path:find("/.", 1, true)) then return path end
  local parts = {}
  for seg in (percent_decode(path):sub(2) .. "/"):gmatch("([^/]*)/") do parts[#parts + 1] = seg end
  local out = {}
  for i, seg in ipairs(parts) do
    if seg == "." or seg == ".." then
      if seg == ".." and #out > 0 then out[#out] = nil end
      if i == #parts then out[#out + 1] = "" end
    else
      out[#out + 1] = seg
    end
  end
  return "/" .. table.concat(out, "/")
end
M._normalize_path = normalize_path

-- server.c json_escape(): '"' and '\' escaped, control characters as \u00XX, other bytes as they are.
local function json_escape(s)
  return (s:gsub('[%c"\\]', function(c)
    if c == '"' or c == "\\" then return "\\" .. c end
    return format("\\u%04x", c:byte())
  end))
end

-- server.c sy_http_send_error()
local function error_response(status, message, extra_name, extra_value)
  local body = format('{"statusCode":%d,"message":"%s","error":"%s"}', status, json_escape(message),
    runtime.REASONS[status] or (status < 400 and "OK" or "Error"))
  local hs = { "content-type", "application/json" }
  if extra_name then hs[3], hs[4] = extra_name, extra_value end
  return status, body, hs
end

local function url_encode(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(c) return format("%%%02X", c:byte()) end))
end

local function encode_query(q)
  local keys = {}
  for k in pairs(q) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  local parts = {}
  for _, k in ipairs(keys) do
    local v = q[k]
    if type(v) == "table" then
      for _, e in ipairs(v) do parts[#parts + 1] = url_encode(k) .. "=" .. url_encode(e) end
    elseif v == true then
      parts[#parts + 1] = url_encode(k)
    else
      parts[#parts + 1] = url_encode(k) .. "=" .. url_encode(v)
    end
  end
  return table.concat(parts, "&")
end

-- core/lua/http.c make_request_id(): a client's x-request-id when it is 1..39 of [0-9A-Za-z_.-].
local function valid_request_id(v)
  return type(v) == "string" and #v > 0 and #v < 40 and v:find("^[%w%-_%.]+$") ~= nil
end

---------------------------------------------------------------------------------------------------------------
-- The harness.

local Harness = {}
Harness.__index = Harness
M.Harness = Harness

local WAIT = setmetatable({}, { __tostring = function() return "switchyard.testing.wait" end })
local LEVELS = { debug = true, info = true, warn = true, error = true }
local SCAN_MAX = 1000
local MAX_KEY = 511
local MAX_EXACT = 2 ^ 53
local INT64_MAX = 2 ^ 63 -- as a double; the C store checks overflow exactly

-- Yields the handler's coroutine until the driver has performed `op`; returns what op returned.
function Harness:_wait(op)
  return coroutine.yield(WAIT, op)
end

-- sy_co_check(): the caller must be the handler's own coroutine.
function Harness:_check_handler(what)
  local co = coroutine.running()
  if co == nil or co ~= self.running then error(not_in_handler(what), 0) end
end

-- core/lua/app.c budget_hook: a handler that runs too long without yielding gets an error where it stands. The
-- budget is CPU time here (os.clock), wall time in the binary. LuaJIT's hooks are global, so it is set only while a
-- handler's coroutine runs, and not at all when another hook (a coverage tool) is active.
local budget = { deadline = nil, ms = 0 }
local function budget_hook()
  if budget.deadline ~= nil and os.clock() > budget.deadline then
    budget.deadline = nil -- once: the error handler and the cleanup must be able to run
    error(format("handler exceeded its time budget of %d ms without yielding", budget.ms), 2)
  end
end

-- Resumes co with the time budget armed (a "slice" in app.c's words).
function Harness:_resume(co, args)
  local use = self.budget_ms > 0 and debug.gethook() == nil
  local saved_deadline, saved_ms = budget.deadline, budget.ms
  if use then
    budget.deadline, budget.ms = os.clock() + self.budget_ms / 1000, self.budget_ms
    debug.sethook(co, budget_hook, "", 1000)
  end
  local res = pack(coroutine.resume(co, unpack(args, 1, args.n)))
  if use then
    debug.sethook(co)
    budget.deadline, budget.ms = saved_deadline, saved_ms
  end
  return res
end

-- Runs fn(...) as a handler coroutine to completion, performing every wait at once (virtual time).
-- Returns true, { n =, results... } or false, message-with-traceback.
function Harness:_run(fn, ...)
  local co = coroutine.create(fn)
  if self.pending_http then -- an HTTP request's coroutine (see add_trace_headers)
    self.http_requests[co] = self.pending_http
    self.pending_http = nil
  end
  local args = pack(...)
  local waits = 0
  while true do
    local saved = self.running
    self.running = co
    local res = self:_resume(co, args)
    self.running = saved
    if not res[1] then
      return false, debug.traceback(co, tostring(res[2]))
    end
    if coroutine.status(co) == "dead" then
      return true, pack(unpack(res, 2, res.n))
    end
    if res[2] ~= WAIT then
      return false, "the handler called coroutine.yield itself: in switchyard it would never be resumed"
    end
    waits = waits + 1
    if waits > self.max_waits then
      return false, format("switchyard.testing: the handler still waits after %d waits (an emit that never "
        .. "succeeds? see app:fail_emits)", self.max_waits)
    end
    args = pack(res[3]())
  end
end

function Harness:_log(level, message, module)
  local entry = { level = level, message = message, module = module or "routes" }
  self.logs[#self.logs + 1] = entry
  if self.print_logs then io.stderr:write(format("[%s] %s: %s\n", level, entry.module, message)) end
end

function Harness:_partitions(topic)
  local t = self.app and self.app.topics[topic]
  if t ~= nil then return t.partitions end
  return (self.app and self.app.config.default_partitions) or 4
end

-- The next offset of topic/partition, shared by everything produced to it (the app's records and delivered ones).
function Harness:_next_offset(topic, partition)
  local tp = topic .. "\0" .. partition
  local offset = self.offsets[tp] or 0
  self.offsets[tp] = offset + 1
  return offset
end

function Harness:_choose_partition(topic, key)
  local n = self:_partitions(topic)
  if key ~= nil then return crc32(key) % n end
  local rr = self.round_robin[topic] or 0
  self.round_robin[topic] = rr + 1
  return rr % n
end

-- Records a record the app produced and returns it.
function Harness:_record(topic, partition, key, value, headers)
  if partition == nil then partition = self:_choose_partition(topic, key) end
  local rec = {
    topic = topic, key = key, value = value, json = try_decode(value), headers = copy(headers),
    partition = partition, offset = self:_next_offset(topic, partition), timestamp = self.clock,
  }
  self.emitted[#self.emitted + 1] = rec
  self.consumed[rec] = {}
  return rec
end

-- The failure configured by fail_emits for `topic`, consuming one use; nil when the emit goes through.
function Harness:_take_failure(topic)
  local f = self.failures[topic] or self.failures["*"]
  if f == nil then return nil end
  f.remaining = f.remaining - 1
  if f.remaining <= 0 then
    for k, v in pairs(self.failures) do
      if v == f then self.failures[k] = nil end
    end
  end
  return f.reason
end

function Harness:_groups_for(topic)
  local out = {}
  for _, g in ipairs(self.app.groups) do
    if self.app.handlers[g.group][topic] then out[#out + 1] = g.group end
  end
  return out
end

function Harness:_reply_group(topic)
  for _, g in ipairs(self.app.groups) do
    local h = self.app.handlers[g.group][topic]
    if h and h.kind == "reply" then return g.group end
  end
  return nil
end

-- core/lua/kafka.c on_message + push_message: App.handle_message(app, group, msg) in a coroutine.
function Harness:_handle_message(group, rec)
  local msg = { topic = rec.topic, partition = rec.partition, offset = rec.offset, key = rec.key, value = rec.value,
                headers = copy(rec.headers) }
  local ok, res = self:_run(App.handle_message, self.app, group, msg)
  if not ok then
    -- the C host logs this and commits the offset; in a test it is a bug worth failing on
    error(format("group %s: message %s/%d@%d failed outside its handler: %s", group, rec.topic, rec.partition,
      rec.offset, res), 0)
  end
  -- App.handle_message's outcome ("ok", "dlq", "replied", ...) and failed attempts, as kafka.c counts them
  local handled = { topic = rec.topic, group = group, outcome = res[1], failures = tonumber(res[2]) or 0 }
  self.handled[#self.handled + 1] = handled
  return handled
end

local function reply_headers(corr, extra)
  local hs = { kafka_correlationId = corr, ["kafka_nest-is-disposed"] = "\0" }
  for k, v in pairs(extra or {}) do hs[k] = v end
  return hs
end

-- A scripted reply (app:on_request): returns what core.request returns.
function Harness:_scripted_reply(reply, reply_topic, corr, timeout)
  if reply == M.timeout then
    self.clock = self.clock + timeout
    return "timeout", nil
  end
  if getmetatable(reply) == ErrorReply then
    local err = reply.message
    if type(err) ~= "table" then err = { status = "error", message = tostring(err) } end
    local rec = self:_record(reply_topic, 0, nil, nil, reply_headers(corr, { ["kafka_nest-err"] = codec.encode(err) }))
    return rec.value, copy(rec.headers)
  end
  local rec = self:_record(reply_topic, 0, nil, runtime.serialize(reply), reply_headers(corr))
  return rec.value, copy(rec.headers)
end

-- core.request: a NestJS request on `topic`, answered in process. Returns raw_value, headers on a reply (the value
-- may be nil: the replier answered null), or reason, nil on a failure ("timeout", "request failed: ...").
function Harness:_request(topic, value, key, headers, timeout)
  local failure = self:_take_failure(topic)
  if failure then return "request failed: " .. failure, nil end -- kafka/rpc.c: the request's delivery report
  self.correlations = self.correlations + 1
  local corr = format("%08x-0000-4000-8000-%012x", self.id, self.correlations)
  local reply_topic = topic .. ".reply"
  local hs = copy(headers)
  hs.kafka_correlationId, hs.kafka_replyTopic, hs.kafka_replyPartition = corr, reply_topic, "0"
  local req = self:_record(topic, nil, key, value, hs)
  self.rpc_records[req] = true
  local responder = self.responders[topic]
  if responder ~= nil then
    local reply = responder
    if type(responder) == "function" then reply = responder(runtime.deserialize(value), copy(hs)) end
    return self:_scripted_reply(reply, reply_topic, corr, timeout)
  end
  local group = self:_reply_group(topic)
  if group ~= nil then
    local mark = #self.emitted
    self.consumed[req][group] = true
    self:_handle_message(group, req)
    for i = mark + 1, #self.emitted do
      local r = self.emitted[i]
      if r.topic == reply_topic and r.headers.kafka_correlationId == corr then
        return r.value, copy(r.headers)
      end
    end
  end
  -- nobody answered: the requester gives up after its timeout
  self.clock = self.clock + timeout
  return "timeout", nil
end

---------------------------------------------------------------------------------------------------------------
-- The core twin.

local function check_db(fname, args, i)
  if type(args[i]) ~= "string" then typeerror(fname, args, i, "string") end
  local db = args[i]
  if #db == 0 or #db > 64 or db:find("[^%w_%.%-]") then
    argerror(fname, i, "invalid store name (1..64 characters of A-Z a-z 0-9 _ . -)")
  end
  return db
end

local function check_key(fname, args, i)
  local v = args[i]
  if type(v) == "string" then return v end
  if type(v) == "number" then
    if not (v == math.floor(v) and math.abs(v) < 1e14) then
      argerror(fname, i, "a number key must be an integer below 1e14 in magnitude (pass a string)")
    end
    return format("%d", v)
  end
  typeerror(fname, args, i, "string or integer")
end

local function bad_key(key)
  if #key == 0 then return "empty key" end
  if #key > MAX_KEY then return format("key too long (%d bytes, at most %d)", #key, MAX_KEY) end
  return nil
end

-- store.c parse_int64: an optional '-' and 1..19 digits.
local function parse_int64(s)
  if not s:find("^%-?%d+$") then return nil end
  local digits = s:gsub("^%-", "")
  if #digits > 19 then return nil end
  local n = tonumber(s)
  if n >= INT64_MAX or n < -INT64_MAX then return nil end
  return n
end

local function read_headers(fname, args, i)
  local t = args[i]
  if t == nil then return {} end
  if type(t) ~= "table" then typeerror(fname, args, i, "table") end
  local out, n = {}, 0
  for k, v in pairs(t) do
    if type(k) ~= "string" or (type(v) ~= "string" and type(v) ~= "number") then
      error("kafka headers must map strings to strings", 0)
    end
    n = n + 1
    if n > 64 then error("more than 64 kafka headers", 0) end
    out[k] = tostring(v)
  end
  return out
end

-- kafka.c sy_lua_kafka_trace_headers: a record produced while serving an HTTP request (its own coroutine, not a
-- handler it calls in process) carries the request's x-request-id and traceparent, unless the handler set them.
local function add_trace_headers(h, headers)
  local req = h.http_requests[h.running]
  if req == nil then return headers end
  if headers["x-request-id"] == nil then headers["x-request-id"] = req.id end
  if headers.traceparent == nil and req.traceparent ~= nil then headers.traceparent = req.traceparent end
  return headers
end

-- The twin of the C `core` table for harness h (see core/lua/primitives.h). Every function takes its arguments
-- exactly like the C one.
function M.new_core(h)
  local core = {}

  -- core.c l_log(level, message)
  function core.log(...)
    local a = pack(...)
    local level = check_string("log", a, 1)
    local msg = check_string("log", a, 2)
    if not LEVELS[level] then argerror("log", 1, "level must be debug, info, warn or error") end
    h:_log(level, msg)
  end

  -- core.c l_now_ms(): milliseconds of a monotonic clock (here the virtual clock)
  function core.now_ms()
    return h.clock
  end

  -- core.c l_sleep(ms): yields for ms milliseconds (here: advances the virtual clock at once)
  function core.sleep(...)
    local a = pack(...)
    local ms = check_number("sleep", a, 1)
    if ms < 0 or ms > 24 * 3600 * 1000 then argerror("sleep", 1, "milliseconds out of range") end
    h:_check_handler("sleep")
    return h:_wait(function()
      h.clock = h.clock + ms
      h.sleeps[#h.sleeps + 1] = ms
    end)
  end

  -- kafka.c l_emit(topic, value|nil, key|nil, headers|nil, partition|nil, wait)
  --   -> partition, offset | true | nil, reason, retry_after
  function core.emit(...)
    local a = pack(...)
    local topic = check_string("emit", a, 1)
    local value = opt_string("emit", a, 2)
    local key = opt_string("emit", a, 3)
    local headers = add_trace_headers(h, read_headers("emit", a, 4))
    local partition
    if a[5] ~= nil then
      partition = check_number("emit", a, 5)
      if not (partition >= 0 and partition <= 2147483647) or partition ~= math.floor(partition) then
        argerror("emit", 5, "partition must be an integer between 0 and 2^31-1")
      end
    end
    local wait = a[6] ~= nil and a[6] ~= false
    if wait then h:_check_handler("kafka.emit") end
    if h.loading then return nil, "kafka is not available while loading routes", 1 end
    if partition ~= nil and (partition < 0 or partition >= h:_partitions(topic)) then
      return nil, format("cannot produce to %s: Local: Unknown partition", topic), 1
    end
    if not wait then
      local failure = h:_take_failure(topic)
      if failure then
        h:_log("error", format("a record emitted without waiting to %s was not delivered: %s", topic, failure),
          "kafka")
      else
        h:_record(topic, partition, key, value, headers)
      end
      return true
    end
    return h:_wait(function()
      local failure = h:_take_failure(topic)
      if failure then return nil, "delivery failed: " .. failure, 1 end
      local rec = h:_record(topic, partition, key, value, headers)
      return rec.partition, rec.offset
    end)
  end

  -- rpc.c sy_lua_rpc_request(topic, value|nil, key|nil, headers|nil, timeout_ms)
  --   -> raw_value|nil, headers | reason, nil
  function core.request(...)
    local a = pack(...)
    local topic = check_string("request", a, 1)
    local value = opt_string("request", a, 2)
    local key = opt_string("request", a, 3)
    local timeout = check_number("request", a, 5)
    local headers = add_trace_headers(h, read_headers("request", a, 4))
    if timeout < 1 or timeout > 3600 * 1000 then argerror("request", 5, "timeout must be between 1 ms and 1 hour") end
    h:_check_handler("kafka.request")
    -- a worker has a request-reply instance only when its app declares reply topics, and it sends requests only
    -- to topics whose TOPIC.reply is one of them
    local reply_topics = h.app and h.app.reply_topics or {}
    if #reply_topics == 0 then
      return format('no reply topic for %s: declare kafka.topic("%s", { replies = true })', topic, topic), nil
    end
    local declared = false
    for _, t in ipairs(reply_topics) do
      if t == topic .. ".reply" then declared = true end
    end
    if not declared then
      return format('no reply topic for %s: declare kafka.topic("%s", { replies = true })', topic, topic), nil
    end
    return h:_wait(function() return h:_request(topic, value, key, headers, timeout) end)
  end

  -- store.c: the same checks in the same order, then the LMDB semantics on a Lua table.
  local function store_of(db)
    local s = h.stores[db]
    if s == nil then
      s = {}
      h.stores[db] = s
    end
    return s
  end

  local function unavailable(name)
    if h.loading then error(name .. " is not available while only checking a routes file", 0) end
  end

  function core.store_get(...)
    unavailable("store_get")
    local a = pack(...)
    local db, key = check_db("store_get", a, 1), check_key("store_get", a, 2)
    local bad = bad_key(key)
    if bad then return nil, bad end
    return store_of(db)[key]
  end

  local function put(fname, no_overwrite, ...)
    unavailable(fname)
    local a = pack(...)
    local db, key = check_db(fname, a, 1), check_key(fname, a, 2)
    local value = check_string(fname, a, 3)
    local bad = bad_key(key)
    if bad then return nil, bad end
    local s = store_of(db)
    if no_overwrite and s[key] ~= nil then return false end
    s[key] = value
    return true
  end
  function core.store_put(...) return put("store_put", false, ...) end
  function core.store_put_new(...) return put("store_put_new", true, ...) end

  function core.store_delete(...)
    unavailable("store_delete")
    local a = pack(...)
    local db, key = check_db("store_delete", a, 1), check_key("store_delete", a, 2)
    local bad = bad_key(key)
    if bad then return nil, bad end
    local s = store_of(db)
    if s[key] == nil then return false end
    s[key] = nil
    return true
  end

  function core.store_incr(...)
    unavailable("store_incr")
    local a = pack(...)
    local db, key = check_db("store_incr", a, 1), check_key("store_incr", a, 2)
    local delta = opt_number("store_incr", a, 3, 1)
    if not (delta == math.floor(delta) and math.abs(delta) <= MAX_EXACT) then
      argerror("store_incr", 3, "delta must be an integer of magnitude at most 2^53")
    end
    local bad = bad_key(key)
    if bad then return nil, bad end
    local s = store_of(db)
    local cur = 0
    if s[key] ~= nil then
      cur = parse_int64(s[key])
      if cur == nil then return nil, format('incr in store "%s": the value is not a decimal integer', db) end
    end
    local sum = cur + delta
    if sum >= INT64_MAX or sum < -INT64_MAX then
      return nil, format('incr in store "%s": %d + %d overflows', db, cur, delta)
    end
    s[key] = format("%d", sum)
    return sum
  end

  function core.store_scan(...)
    unavailable("store_scan")
    local a = pack(...)
    local db = check_db("store_scan", a, 1)
    local start
    if a[2] ~= nil then
      start = check_key("store_scan", a, 2)
      if #start ~= 0 then
        local bad = bad_key(start)
        if bad then return nil, bad end
      end
    end
    local limit = opt_number("store_scan", a, 3, SCAN_MAX)
    if not (limit == math.floor(limit) and limit >= 0) then
      argerror("store_scan", 3, "limit must be a non-negative integer")
    end
    if limit > SCAN_MAX then limit = SCAN_MAX end
    local s = store_of(db)
    local keys = {}
    for k in pairs(s) do
      if start == nil or k >= start then keys[#keys + 1] = k end
    end
    table.sort(keys) -- LuaJIT compares strings bytewise, like LMDB's default order
    local out = {}
    for i = 1, math.min(#keys, limit) do
      out[#out + 1] = keys[i]
      out[#out + 1] = s[keys[i]]
    end
    return out
  end

  return core
end

---------------------------------------------------------------------------------------------------------------
-- Loading.

local next_harness_id = 0

-- The C router's checks at load (router.c sy_router_add), so that a file the twin accepts also loads in the binary.
function Harness:_compile_routes()
  local table_ = {}
  for id, r in ipairs(self.app.routes) do
    local where = r.where or "routes"
    local function fail(msg) error(where .. ": " .. msg, 0) end
    local mask = METHOD_BIT[r.method] or 0
    local pattern = r.path
    if mask == 0 then fail(format("route %s: no method", pattern)) end
    if type(pattern) ~= "string" or pattern == "" or pattern:sub(1, 1) ~= "/" then
      fail(format("route '%s': a path must start with '/'", tostring(pattern)))
    end
    if pattern:find("[%?#%* ]") then
      fail(format("route '%s': a path may not contain '?', '#', '*' or spaces", pattern))
    end
    local segs = split(pattern)
    if segs == nil then fail(format("route '%s': more than %d segments", pattern, MAX_SEGMENTS)) end
    local segments, nparams, specificity = {}, 0, 0
    for i, s in ipairs(segs) do
      local is_param = s:sub(1, 1) == ":"
      if is_param and #s == 1 then fail(format("route '%s': a parameter needs a name after ':'", pattern)) end
      if is_param then
        nparams = nparams + 1
        if nparams > MAX_PARAMS then fail(format("route '%s': more than %d parameters", pattern, MAX_PARAMS)) end
      elseif i <= 32 then
        specificity = specificity + 2 ^ (32 - i)
      end
      segments[i] = { is_param = is_param, text = is_param and s:sub(2) or s }
    end
    for _, o in ipairs(table_) do
      if bit.band(o.methods, mask) ~= 0 and #o.segments == #segments then
        local same = true
        for i, s in ipairs(segments) do
          local os = o.segments[i]
          if s.is_param ~= os.is_param or (not s.is_param and s.text ~= os.text) then
            same = false
            break
          end
        end
        if same then
          fail(format("route '%s' is declared twice for the same method (first as '%s')", pattern, o.pattern))
        end
      end
    end
    local entry = { methods = mask, id = id, pattern = pattern, segments = segments, specificity = specificity }
    local pos = #table_ + 1
    while pos > 1 and table_[pos - 1].specificity < specificity do pos = pos - 1 end
    table.insert(table_, pos, entry)
  end
  self.router = table_
end

-- router.c sy_router_match: route id and raw params, or nil, "not found" | "method", allowed_mask.
function Harness:_match(method, path)
  local mbit = METHOD_BIT[method] or 0
  if mbit == HEAD then mbit = bit.bor(mbit, GET) end
  if path == "" or path:sub(1, 1) ~= "/" then return nil, "not found" end
  local segs = split(path)
  if segs == nil then return nil, "not found" end
  local allowed = 0
  for _, r in ipairs(self.router) do
    if #r.segments == #segs then
      local params, ok = {}, true
      for i, s in ipairs(r.segments) do
        if s.is_param then
          if segs[i] == "" then
            ok = false
            break
          end
          params[#params + 1] = { s.text, segs[i] }
        elseif s.text ~= segs[i] then
          ok = false
          break
        end
      end
      if ok then
        if bit.band(r.methods, mbit) == 0 then
          allowed = bit.bor(allowed, r.methods)
        else
          return r.id, params
        end
      end
    end
  end
  if allowed ~= 0 then
    if bit.band(allowed, GET) ~= 0 then allowed = bit.bor(allowed, HEAD) end
    return nil, "method", allowed
  end
  return nil, "not found"
end

-- The standard globals of a LuaJIT state (luaL_openlibs), without what busted adds to this process.
local STD_GLOBALS = {
  "_VERSION", "bit", "collectgarbage", "coroutine", "error", "gcinfo", "getfenv", "getmetatable", "ipairs", "jit",
  "load", "loadstring", "math", "module", "newproxy", "next", "package", "pairs", "pcall", "print", "rawequal",
  "rawget", "rawset", "select", "setfenv", "setmetatable", "string", "table", "tonumber", "tostring", "type",
  "unpack", "xpcall",
}

-- LuaJIT's own assert (busted replaces the global one): the message gets the caller's position.
local function lua_assert(v, msg, ...)
  if v then return v, msg, ... end
  if msg == nil then error("assertion failed!", 2) end
  if type(msg) == "string" or type(msg) == "number" then error(msg, 2) end
  error(msg, 0)
end

-- What a routes file sees as its globals in the binary: a fresh state's standard library, reduced by
-- runtime.sandbox(routes_dir) unless --unsafe-lua. Its modules are looked up in routes_dir, like app.c's
-- package.path does.
local function globals_for(routes_dir, unsafe)
  local g = {}
  for _, k in ipairs(STD_GLOBALS) do g[k] = _G[k] end
  g.assert = lua_assert
  g._G = g
  local function with_routes_path(fn, ...)
    local saved = package.path
    package.path = routes_dir .. "/?.lua;" .. routes_dir .. "/?/init.lua;" .. saved
    local res = pack(pcall(fn, ...))
    package.path = saved
    if not res[1] then error(res[2], 0) end
    return unpack(res, 2, res.n)
  end
  if unsafe then
    g.io, g.debug, g.os, g.loadfile, g.dofile = io, debug, os, loadfile, dofile
    g.require = function(name) return with_routes_path(require, name) end
    return g
  end
  local prefix = routes_dir:gsub("/+$", "") .. "/"
  local function inside(p)
    if type(p) ~= "string" or p:find("..", 1, true) or p:find("%z") then return false end
    if p:sub(1, 1) ~= "/" then return true end
    return p:sub(1, #prefix) == prefix
  end
  g.loadfile = function(p)
    if not inside(p) then return nil, "loadfile: " .. tostring(p) .. " is outside the routes directory" end
    return loadfile(p)
  end
  g.dofile = function(p)
    local f, err = g.loadfile(p)
    if not f then error(err, 2) end
    return f()
  end
  g.os = { time = os.time, clock = os.clock, date = os.date, difftime = os.difftime, getenv = os.getenv }
  g.require = function(name)
    if name == "os" then return g.os end
    local found = type(name) == "string" and (package.loaded[name] ~= nil or package.preload[name] ~= nil
      or package.searchpath(name, routes_dir .. "/?.lua;" .. routes_dir .. "/?/init.lua;" .. package.path) ~= nil)
    if not found or name == "ffi" or name == "io" or name == "debug" then
      error(format("module '%s' not found (the routes file is sandboxed: no C modules, ffi, io or debug; "
        .. "see --unsafe-lua)", tostring(name)), 2)
    end
    return with_routes_path(require, name)
  end
  return g
end

-- testing.load(path, opts) -> harness. Raises "file:line: message" when the file does not load (like --check).
-- opts: max_body (bytes, default 1 MiB, as --max-body), stores (another harness's app.stores: share the durable
-- store, as after a restart), clock (start of the virtual clock, ms), print_logs (echo logs to stderr; also
-- SWITCHYARD_TEST_LOGS=1), max_waits (guard against a handler that waits forever, default 10000),
-- handler_budget_ms (as --handler-budget, default 1000, 0 = none), unsafe_lua (as --unsafe-lua).
function M.load(path, opts)
  opts = opts or {}
  next_harness_id = next_harness_id + 1
  local h = setmetatable({
    id = next_harness_id,
    path = path,
    opts = opts,
    max_body = opts.max_body or 1048576,
    max_waits = opts.max_waits or 10000,
    budget_ms = opts.handler_budget_ms or 1000,
    print_logs = opts.print_logs or os.getenv("SWITCHYARD_TEST_LOGS") == "1",
    clock = opts.clock or 1000000,
    emitted = {},     -- every record the app produced, in order
    delivered = {},   -- every record handed to a handler by app:deliver
    handled = {},     -- { topic, group, outcome, failures } per record a handler took (App.handle_message)
    telemetry = {},   -- http.telemetry records not produced yet
    wall_start = os.time() * 1000,
    logs = {},        -- { level =, message =, module = }
    sleeps = {},      -- every virtual sleep, in ms
    http_requests = setmetatable({}, { __mode = "k" }), -- HTTP coroutine -> { id, traceparent }
    stores = opts.stores or {},
    offsets = {},
    round_robin = {},
    failures = {},
    responders = {},
    consumed = setmetatable({}, { __mode = "k" }),
    rpc_records = setmetatable({}, { __mode = "k" }),
    correlations = 0,
    requests = 0,
  }, Harness)
  h.core = M.new_core(h)

  -- like the C host: the routes file's directory is on package.path, the file sees the sandbox's globals, and each
  -- load gets fresh copies of the modules it requires (a new Lua state in the binary)
  local dir = path:match("^(.*)/[^/]*$") or "."
  local globals = globals_for(dir, opts.unsafe_lua)
  local saved_path = package.path
  local before = {}
  for k in pairs(package.loaded) do before[k] = true end
  package.path = dir .. "/?.lua;" .. dir .. "/?/init.lua;" .. package.path
  h.loading = true
  local ok, app = pcall(runtime.load, h.core, path, { globals = globals })
  h.loading = false
  package.path = saved_path
  for k in pairs(package.loaded) do
    if not before[k] then package.loaded[k] = nil end
  end
  if not ok then error(tostring(app), 0) end
  h.app = app
  h.env = app.env
  h:_compile_routes()
  return h
end

-- testing.load_string(source, opts): the same from Lua source (written to a temporary file).
function M.load_string(source, opts)
  local name = os.tmpname()
  local f = assert(io.open(name, "w"))
  f:write(source)
  f:close()
  local ok, h = pcall(M.load, name, opts)
  os.remove(name)
  if not ok then error(h, 0) end
  return h
end

-- A new harness on the same file (or another one) sharing this one's store and clock: a restart or a reload.
function Harness:reload(path, opts)
  opts = copy(opts)
  opts.stores = self.stores
  opts.clock = opts.clock or self.clock
  if opts.max_body == nil then opts.max_body = self.max_body end
  return M.load(path or self.path, opts)
end

---------------------------------------------------------------------------------------------------------------
-- HTTP.

-- app:request(method, target, opts) -> res { status, headers (lowercase names), body (string), json (decoded when
-- the response is JSON, else nil), request_id }. target may carry a query string. opts: body (a table is sent as
-- JSON with content-type application/json unless headers name another one; a string is sent as it is), headers,
-- query (a string, or a table encoded with sorted keys, appended to target's query).
function Harness:request(method, target, opts)
  opts = opts or {}
  method = tostring(method):upper()
  local raw_path, qs = target:match("^([^?]*)%?(.*)$")
  if raw_path == nil then raw_path = target end
  if opts.query ~= nil then
    local q = type(opts.query) == "table" and encode_query(opts.query) or tostring(opts.query)
    if qs ~= nil and qs ~= "" then
      if q ~= "" then qs = qs .. "&" .. q end
    elseif q ~= "" or qs ~= nil then
      qs = q
    end
  end
  local headers = {}
  for k, v in pairs(opts.headers or {}) do
    local name = tostring(k):lower()
    if type(v) == "table" then
      local parts = {}
      for i, e in ipairs(v) do parts[i] = tostring(e) end
      v = table.concat(parts, ", ")
    else
      v = tostring(v)
    end
    headers[name] = headers[name] and (headers[name] .. ", " .. v) or v
  end
  local body = opts.body
  if type(body) == "table" then
    body = codec.encode(body)
    if headers["content-type"] == nil then headers["content-type"] = "application/json" end
  elseif body ~= nil then
    body = tostring(body)
  end

  self:_tick()
  local start = self.clock
  local body_len = body and #body or 0
  local path = normalize_path(raw_path)
  -- like core/lua/http.c: every request gets its id first (404 and 413 answers carry it too)
  local request_id = headers["x-request-id"]
  if not valid_request_id(request_id) then
    self.requests = self.requests + 1
    request_id = format("%08x%02x%06x", self.id, 0, self.requests % 0x1000000)
  end
  local id, params, allowed = self:_match(method, path)
  if id == nil and params == "not found" then
    self:_account("unmatched", method, 404, body_len, start, request_id)
    local shown = #path > 200 and path:sub(1, 200) or path
    return self:_response(method, error_response(404, format("Cannot %s %s", method:sub(1, 16), shown),
      "x-request-id", request_id))
  elseif id == nil then
    self:_account("unmatched", method, 405, body_len, start, request_id)
    return self:_response(method, error_response(405, format("method %s is not allowed here", method:sub(1, 16)),
      "allow", format_methods(allowed)))
  end
  local route = self.app.routes[id]
  -- like core/lua/http.c: a matched route refuses a body over --max-body with a JSON 413 before anything else
  if body ~= nil and #body > self.max_body then
    self:_account(route.path, method, 413, body_len, start, request_id)
    return self:_response(method, error_response(413, format("request body is larger than %d bytes", self.max_body),
      "x-request-id", request_id))
  end
  if route.static then
    self:_account(route.path, method, route.static.status, body_len, start, request_id)
    return self:_response(method, route.static.status, route.static.body, route.static.headers)
  end

  local decoded_params = {}
  for _, p in ipairs(params) do decoded_params[p[1]] = percent_decode(p[2]) end
  local req = { method = method, path = path, query_string = qs, body_raw = body, id = request_id,
                headers = headers, params = decoded_params }
  local tp = headers.traceparent
  self.pending_http = { id = request_id, traceparent = (type(tp) == "string" and #tp == 55) and tp or nil }
  local ok, res = self:_run(App.handle_http, self.app, id, req)
  if not ok then
    -- core/lua/http.c on_http_done: the runtime failed outside the handler
    self:_log("error", format("request %s failed outside the handler: %s", request_id, res), "http")
    self:_account(route.path, method, 500, body_len, start, request_id)
    local status, text, hs = error_response(500, "Internal Server Error", "x-request-id", request_id)
    local r = self:_response(method, status, text, hs)
    r.failure = res
    return r
  end
  local status = tonumber(res[1]) or 0
  status = status >= 0 and math.floor(status) or math.ceil(status)
  self:_account(route.path, method, status, body_len, start, request_id)
  local text = res[2]
  if type(text) == "number" then text = tostring(text) elseif type(text) ~= "string" then text = "" end
  local hs = {}
  local list = type(res[3]) == "table" and res[3] or {}
  for i = 1, #list - 1, 2 do
    local name, value = list[i], list[i + 1]
    if (type(name) == "string" or type(name) == "number") and (type(value) == "string" or type(value) == "number") then
      hs[#hs + 1] = tostring(name)
      hs[#hs + 1] = tostring(value)
    end
  end
  hs[#hs + 1] = "x-request-id"
  hs[#hs + 1] = request_id
  if status < 100 or status > 599 then status = 500 end
  local r = self:_response(method, status, text, hs)
  r.request_id = request_id
  return r
end

local function is_json_type(ct)
  if ct == nil then return false end
  local media = ct:lower():match("^%s*([^;%s]+)")
  return media == "application/json" or (media ~= nil and media:match("^application/[%w%.%-]+%+json$") ~= nil)
end

function Harness:_response(method, status, body, flat)
  local headers = {}
  for i = 1, #flat - 1, 2 do
    local name = flat[i]:lower()
    headers[name] = headers[name] and (headers[name] .. ", " .. flat[i + 1]) or flat[i + 1]
  end
  headers["content-length"] = tostring(#body)
  if method == "HEAD" then body = "" end
  local res = { status = status, headers = headers, body = body }
  if is_json_type(headers["content-type"]) then res.json = try_decode(body) end
  return res
end

function Harness:get(path, opts) return self:request("GET", path, opts) end
function Harness:delete(path, opts) return self:request("DELETE", path, opts) end
function Harness:head(path, opts) return self:request("HEAD", path, opts) end
local function with_body(body, opts)
  opts = copy(opts)
  opts.body = body
  return opts
end
function Harness:post(path, body, opts) return self:request("POST", path, with_body(body, opts)) end
function Harness:put(path, body, opts) return self:request("PUT", path, with_body(body, opts)) end
function Harness:patch(path, body, opts) return self:request("PATCH", path, with_body(body, opts)) end

---------------------------------------------------------------------------------------------------------------
-- http.telemetry (core/lua/telemetry.c): one JSON record per answered request, produced in batches.

-- Produces what is buffered: no key, no headers, not waited; a refused record is dropped (and counted in C).
function Harness:flush_telemetry()
  local t = self.app.telemetry
  local buffered = self.telemetry
  self.telemetry, self.telemetry_deadline = {}, nil
  for _, rec in ipairs(buffered) do
    local failure = t and self:_take_failure(t.topic)
    if failure then
      self:_log("debug", "a record was not delivered: " .. failure, "telemetry")
    elseif t then
      self:_record(t.topic, nil, nil, rec, nil)
    end
  end
  return #buffered
end

-- The flush timer: a partial batch leaves flush_ms after its first record (checked when the test does something).
function Harness:_tick()
  if self.telemetry_deadline ~= nil and self.clock >= self.telemetry_deadline then self:flush_telemetry() end
end

-- sy_telemetry_record(): route and method reduced to a safe character set, the request body's length, the time
-- the request took on the virtual clock, the wall clock of the harness.
function Harness:_account(route, method, status, body_len, start, request_id)
  local t = self.app.telemetry
  if t == nil then return end
  local m = method:gsub("[^A-Za-z]", ""):sub(1, 16)
  local r = route:gsub('[%z\1-\31"\\]', ""):sub(1, 199)
  local now = self.wall_start + (self.clock - (self.opts.clock or 1000000))
  local rec = format('{"route":"%s","method":"%s","status":%d,"bodyLength":%d,"durationUs":%d,"requestId":"%s",'
    .. '"ts":%d}', r, m, status, body_len, math.floor((self.clock - start) * 1000), request_id or "", now)
  if #rec >= 512 then return end
  self.telemetry[#self.telemetry + 1] = rec
  if #self.telemetry >= t.batch then
    self:flush_telemetry()
  elseif self.telemetry_deadline == nil then
    self.telemetry_deadline = self.clock + t.flush_ms
  end
end

---------------------------------------------------------------------------------------------------------------
-- Kafka.

-- The records produced to `topic` (every record when topic is nil), in order. Each record: { topic, key, value
-- (raw string or nil), json (value decoded as JSON, or nil), headers, partition, offset, timestamp }.
function Harness:events(topic)
  local out = {}
  for _, r in ipairs(self.emitted) do
    if topic == nil or r.topic == topic then out[#out + 1] = r end
  end
  return out
end

function Harness:last_event(topic)
  local evs = self:events(topic)
  return evs[#evs]
end

-- Forgets the records and logs seen so far (the store is kept).
function Harness:clear()
  self.emitted, self.logs, self.sleeps, self.delivered, self.handled = {}, {}, {}, {}, {}
end

local function to_value(value)
  if value == nil or type(value) == "string" then return value end
  return runtime.serialize(value)
end

-- Hands a record to the handlers declared for `topic` (all the groups that consume it, or opts.group) and runs them
-- to completion: validation, retries with (virtual) backoff, DLQ, replies. value: the raw record value (a string),
-- or a table/number/boolean serialized the NestJS way. opts: key, headers, group, partition.
-- Returns the records the handlers produced meanwhile, then the outcome App.handle_message reported ("ok", "dlq",
-- "replied", "invalid", "reply_error", "unhandled") and its count of failed attempts (for the last group; every
-- group's is in app.handled).
function Harness:deliver(topic, value, opts)
  opts = opts or {}
  self:_tick()
  local groups
  if opts.group ~= nil then
    groups = { opts.group }
  else
    groups = self:_groups_for(topic)
    if #groups == 0 then error("switchyard.testing: no handler is declared for topic '" .. topic .. "'", 2) end
  end
  local key = opts.key ~= nil and tostring(opts.key) or nil
  local headers = {}
  for k, v in pairs(opts.headers or {}) do headers[tostring(k)] = tostring(v) end
  local partition = opts.partition or self:_choose_partition(topic, key)
  local rec = { topic = topic, key = key, value = to_value(value), headers = headers, partition = partition,
                offset = self:_next_offset(topic, partition), timestamp = self.clock }
  rec.json = try_decode(rec.value)
  self.delivered[#self.delivered + 1] = rec
  local mark = #self.emitted
  local handled
  for _, group in ipairs(groups) do handled = self:_handle_message(group, rec) end
  local out = {}
  for i = mark + 1, #self.emitted do out[#out + 1] = self.emitted[i] end
  return out, handled.outcome, handled.failures
end

-- Delivers every produced record to the groups that consume its topic and have not seen it yet, including the
-- records those handlers produce, until nothing is left (requests answered in process are not redelivered).
-- Returns the number of deliveries.
function Harness:pump()
  self:_tick()
  local n, i = 0, 1
  while i <= #self.emitted do
    local rec = self.emitted[i]
    if not self.rpc_records[rec] then
      local consumed = self.consumed[rec]
      for _, group in ipairs(self:_groups_for(rec.topic)) do
        if not consumed[group] then
          consumed[group] = true
          n = n + 1
          if n > 10000 then error("switchyard.testing: pump delivered 10000 records; a loop of handlers?", 2) end
          self:_handle_message(group, rec)
        end
      end
    end
    i = i + 1
  end
  return n
end

-- Scripts the answer to kafka.request(topic, ...): a function(value, headers) returning the reply value (or
-- testing.timeout / testing.error(...)), a constant reply value, testing.timeout, or testing.error(message).
-- nil removes the script (requests then go to the routes file's own kafka.reply handler, or time out).
function Harness:on_request(topic, responder)
  self.responders[topic] = responder
  return self
end

-- Makes the broker refuse records to `topic` (every topic when nil): emit answers nil, "delivery failed: <reason>",
-- 1, and kafka.request answers nil, "request failed: <reason>" (kafka/rpc.c). times: only the next `times` records
-- (default: until cleared).
-- fail_emits(topic) or fail_emits(nil) without a reason clears (that topic's, or every) failure.
function Harness:fail_emits(topic, reason, times)
  local k = topic or "*"
  if reason == nil then
    if topic == nil then self.failures = {} else self.failures[k] = nil end
    return self
  end
  self.failures[k] = { reason = tostring(reason), remaining = times or math.huge }
  return self
end

---------------------------------------------------------------------------------------------------------------
-- Store, logs, time.

-- The content of store `name` as { key = decoded value } (values that are not JSON stay strings).
function Harness:store(name)
  local out = {}
  for k, v in pairs(self.stores[name] or {}) do
    local d = try_decode(v)
    if d == nil then d = v end
    out[k] = d
  end
  return out
end

-- Puts a value (JSON-encoded, like Store:put) into store `name` before a test: app:seed("users", 1, { ... }).
function Harness:seed(name, key, value)
  if type(key) == "number" then key = format("%d", key) end
  self.stores[name] = self.stores[name] or {}
  self.stores[name][key] = codec.encode(value)
  return self
end

-- The first log entry whose message contains `text` (plain) or matches it as a Lua pattern, optionally of `level`.
function Harness:logged(text, level)
  for _, e in ipairs(self.logs) do
    if level == nil or e.level == level then
      if e.message:find(text, 1, true) then return e end
      local ok, found = pcall(string.find, e.message, text)
      if ok and found then return e end
    end
  end
  return nil
end

function Harness:now()
  return self.clock
end

function Harness:advance(ms)
  self.clock = self.clock + ms
  self:_tick()
  return self.clock
end

-- Runs fn(...) as a handler coroutine (the DSL's waiting functions work in it) and returns its results; raises
-- its error. app:run(function() return app.env.kafka.emit("t", { a = 1 }) end)
function Harness:run(fn, ...)
  local ok, res = self:_run(fn, ...)
  if not ok then error(res, 2) end
  return unpack(res, 1, res.n)
end

return M
