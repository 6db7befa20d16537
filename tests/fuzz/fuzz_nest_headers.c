/*
 * libFuzzer target: the NestJS side of the Kafka wire format in the Lua runtime. Each input becomes
 *   1. a call of runtime.deserialize (the JSON-or-string parser of every consumed value and reply), and
 *   2. a record handed to App.handle_message (in a coroutine made with sy_co_create, as core/lua/kafka.c does) with
 *      an arbitrary value, key and NestJS headers (kafka_correlationId, kafka_replyTopic, kafka_replyPartition, one
 *      more header), for a handler of each kind in routes_nest.lua; one of them calls kafka.request, whose reply
 *      (value and kafka_nest-err header) also comes from the input.
 * The app is loaded in check mode, where the Kafka primitives are unavailable; the harness replaces core.emit,
 * core.request and core.sleep by recording stubs (core.emit refuses topic names Kafka refuses, as the broker would),
 * so replies, dead letters and retries run and can be checked. The C correlation-id matcher of core/kafka/rpc.c is
 * static and only reachable with a broker: it is not fuzzed here.
 *
 * Input: byte 0 chooses the topic (bits 0-2) and which fields are present (bits 3-7: value, key, correlation id,
 * reply topic, reply partition); the rest is split on 0x1E into value, key, correlation id, reply topic, reply
 * partition, extra header name, extra header value. For the kafka.request handler the value is the reply's value
 * and the correlation id field, when present, its kafka_nest-err header.
 */
#include <stdint.h>
#include <string.h>
#include "fuzz_lua.h"

/* The harness, run once on the app's state with the runtime's app object as `...`. Defines the stubs and the global
 * fuzz_rec, whose prepare() builds a record and check() verifies what happened to it (raising on a violation). */
static const char HARNESS[] =
    "local app = ...\n"
    "local runtime = require('switchyard.runtime')\n"
    "local cjson = require('cjson')\n"
    "local strict = cjson.new()\n"
    "strict.decode_invalid_numbers(false) -- JSON.parse accepts no NaN, Infinity, hex or leading zeros\n"
    "strict.decode_max_depth(1000)\n"
    "local TOPICS = { 'ev', 'ev_body', 'rq', 'rq_body', 'ev_req', 'nope', 'ev', 'rq' }\n"
    "local rec = { emits = {}, sleeps = 0 }\n"
    "fuzz_rec = rec\n"
    "local function valid_topic(t)\n"
    "  return type(t) == 'string' and #t >= 1 and #t <= 249 and t:find('^[%w%._%-]+$') ~= nil\n"
    "end\n"
    "app.core.emit = function(topic, value, key, headers, partition, wait)\n"
    "  assert(type(topic) == 'string', 'emit: topic')\n"
    "  assert(value == nil or type(value) == 'string', 'emit: value')\n"
    "  assert(key == nil or type(key) == 'string', 'emit: key')\n"
    "  for k, v in pairs(headers or {}) do\n"
    "    assert(type(k) == 'string' and (type(v) == 'string' or type(v) == 'number'), 'emit: headers')\n"
    "  end\n"
    "  assert(partition == nil or type(partition) == 'number', 'emit: partition')\n"
    "  local copy = {}\n"
    "  for k, v in pairs(headers or {}) do copy[k] = v end\n"
    "  rec.emits[#rec.emits + 1] = { topic = topic, value = value, key = key, headers = copy, partition = partition }\n"
    "  -- the broker refuses these for good: retrying cannot help\n"
    "  if not valid_topic(topic) then return nil, 'cannot produce to ' .. topic .. ': invalid topic', 1 end\n"
    "  if not wait then return true end\n"
    "  return 0, #rec.emits\n"
    "end\n"
    "app.core.sleep = function(ms)\n"
    "  rec.sleeps = rec.sleeps + 1\n"
    "  if rec.sleeps > 50 then error('fuzz: still retrying after 50 sleeps (a message that can never be handled)') "
    "end\n"
    "end\n"
    "app.core.request = function(topic, payload, key, headers, timeout)\n"
    "  return rec.reply_raw, rec.reply_headers\n"
    "end\n"
    "\n"
    "function rec.check_deserialize(raw)\n"
    "  local ok, v = pcall(runtime.deserialize, raw)\n"
    "  if not ok then error('deserialize raised: ' .. tostring(v)) end\n"
    "  local c = raw:byte(1)\n"
    "  if c ~= 123 and c ~= 91 then\n"
    "    if v ~= raw then error('deserialize changed a value that is not JSON') end\n"
    "    return\n"
    "  end\n"
    "  local sok = pcall(strict.decode, raw)\n"
    "  if not sok and v ~= raw then\n"
    "    error('deserialize decoded text that is not JSON (NestJS keeps it as a string): ' .. raw:sub(1, 80))\n"
    "  end\n"
    "  if sok and type(v) ~= 'table' then error('deserialize kept valid JSON as a string: ' .. raw:sub(1, 80)) end\n"
    "end\n"
    "\n"
    "function rec.prepare(flags, value, key, cid, rtopic, rpart, xname, xvalue)\n"
    "  rec.emits, rec.sleeps, rec.request_result = {}, 0, nil\n"
    "  local topic = TOPICS[flags % 8 + 1]\n"
    "  local has = function(bit) return math.floor(flags / bit) % 2 == 1 end\n"
    "  local headers = {}\n"
    "  if xname ~= '' then headers[xname] = xvalue end\n"
    "  local m = { topic = topic, partition = 0, offset = 42, headers = headers }\n"
    "  m.value = has(8) and value or nil\n"
    "  m.key = has(16) and key or nil\n"
    "  if topic == 'ev_req' then\n"
    "    rec.reply_raw, rec.reply_headers = m.value, {}\n"
    "    if has(32) then rec.reply_headers['kafka_nest-err'] = cid end\n"
    "  else\n"
    "    if has(32) then headers.kafka_correlationId = cid end\n"
    "    if has(64) then headers.kafka_replyTopic = rtopic end\n"
    "    if has(128) then headers.kafka_replyPartition = rpart end\n"
    "  end\n"
    "  local orig = {}\n"
    "  for k, v in pairs(headers) do orig[k] = v end\n"
    "  rec.msg = { topic = topic, value = m.value, key = m.key, headers = orig }\n"
    "  return 'g', m\n"
    "end\n"
    "\n"
    "local function is_partition(p)\n"
    "  return type(p) == 'number' and p == math.floor(p) and p >= 0 and p <= 2147483647\n"
    "end\n"
    "local function one_emit(to)\n"
    "  if #rec.emits ~= 1 then error(string.format('%d records emitted, expected one to %s', #rec.emits, to)) end\n"
    "  local e = rec.emits[1]\n"
    "  if e.topic ~= to then error('emitted to ' .. tostring(e.topic) .. ', expected ' .. to) end\n"
    "  return e\n"
    "end\n"
    "local function dead_letter(m, outcome)\n"
    "  if outcome ~= 'dlq' then return end\n"
    "  local e = one_emit(m.topic .. '.dlq')\n"
    "  if e.value ~= m.value or e.key ~= m.key then error('the dead letter does not keep the original value and key') "
    "end\n"
    "  if e.headers['x-original-topic'] ~= m.topic then error('the dead letter has no x-original-topic') end\n"
    "end\n"
    "\n"
    "function rec.check(outcome, failed)\n"
    "  local m, h = rec.msg, rec.msg.headers\n"
    "  local t = m.topic\n"
    "  if t == 'nope' then\n"
    "    if outcome ~= 'unhandled' or #rec.emits ~= 0 then error('an unknown topic was handled: ' .. "
    "tostring(outcome)) end\n"
    "    return\n"
    "  end\n"
    "  local request = (t == 'rq' or t == 'rq_body') and h.kafka_correlationId ~= nil and h.kafka_replyTopic ~= nil\n"
    "  if request then\n"
    "    if outcome ~= 'replied' and outcome ~= 'reply_error' and outcome ~= 'invalid' then\n"
    "      error('a request ended as ' .. tostring(outcome))\n"
    "    end\n"
    "    if h.kafka_replyTopic ~= t .. '.reply' then\n"
    "      -- only <pattern>.reply is answered (NestJS's reply topic): anything else gets no reply at all\n"
    "      if #rec.emits ~= 0 then error('replied to a foreign reply topic ' .. tostring(h.kafka_replyTopic)) end\n"
    "      return\n"
    "    end\n"
    "    local e = one_emit(h.kafka_replyTopic)\n"
    "    if e.headers.kafka_correlationId ~= h.kafka_correlationId then error('the reply lost the correlation id') "
    "end\n"
    "    if e.headers['kafka_nest-is-disposed'] ~= '\\0' then error('the reply is not marked disposed') end\n"
    "    if (outcome == 'replied') == (e.headers['kafka_nest-err'] ~= nil) then error('kafka_nest-err vs ' .. outcome) "
    "end\n"
    "    if e.partition ~= nil and not is_partition(e.partition) then\n"
    "      error(string.format('reply partition %.17g (from kafka_replyPartition %q) is no partition', e.partition,\n"
    "        tostring(h.kafka_replyPartition)))\n"
    "    end\n"
    "    local p = h.kafka_replyPartition\n"
    "    if p ~= nil and p:find('^%d+$') and #p < 10 and e.partition ~= tonumber(p) then\n"
    "      error('the reply does not go to partition ' .. p)\n"
    "    end\n"
    "    return\n"
    "  end\n"
    "  if t == 'ev' then\n"
    "    if outcome ~= 'ok' or #rec.emits ~= 0 then error('ev: ' .. tostring(outcome)) end\n"
    "  elseif t == 'ev_req' then\n"
    "    if outcome ~= 'ok' then error('ev_req: ' .. tostring(outcome)) end\n"
    "    local r = rec.request_result\n"
    "    if r == nil or not r.done then error('ev_req: the handler did not finish') end\n"
    "    if rec.reply_headers['kafka_nest-err'] ~= nil then\n"
    "      if r.v ~= nil or type(r.err) ~= 'string' then error('an error reply was not returned as nil, message') end\n"
    "    elseif r.err ~= nil then\n"
    "      error('a reply without kafka_nest-err was returned as an error: ' .. tostring(r.err))\n"
    "    elseif type(r.v) ~= type(runtime.deserialize(rec.reply_raw)) then\n"
    "      error('the reply value was not decoded like deserialize does')\n"
    "    end\n"
    "  else -- ev_body, rq, rq_body as events\n"
    "    if outcome ~= 'ok' and outcome ~= 'dlq' then error(t .. ' as an event: ' .. tostring(outcome)) end\n"
    "    if outcome == 'ok' and #rec.emits ~= 0 then error(t .. ': emitted for a handled event') end\n"
    "    dead_letter(m, outcome)\n"
    "  end\n"
    "end\n";

static sy_app_t *app;
static int ref_rec;

typedef struct {
    int done, ok;
    char outcome[32];
    double failed;
    char error[512];
} result_t;

static void on_done(sy_co_t *co, int ok, int nresults)
{
    result_t *r = co->data;
    lua_State *L = co->L;
    r->done = 1;
    r->ok = ok;
    if (ok != 1) {
        snprintf(r->error, sizeof(r->error), "%s", ok == 0 ? lua_tostring(L, -1) : "abandoned");
        return;
    }
    int base = lua_gettop(L) - nresults + 1;
    snprintf(r->outcome, sizeof(r->outcome), "%s", nresults >= 1 && lua_isstring(L, base) ? lua_tostring(L, base) : "");
    r->failed = nresults >= 2 ? lua_tonumber(L, base + 1) : 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    app = sy_fuzz_load_app("routes_nest.lua");
    sy_fuzz_run_lua(app, HARNESS);
    lua_getglobal(app->L, "fuzz_rec");
    ref_rec = luaL_ref(app->L, LUA_REGISTRYINDEX);
    return 0;
}

/* Calls fuzz_rec[name](args) on the app's state; `nargs` values are on its stack. Aborts on error. */
static void call_rec(const char *name, int nargs, int nresults)
{
    lua_State *L = app->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref_rec);
    lua_getfield(L, -1, name);
    lua_remove(L, -2);
    lua_insert(L, -1 - nargs);
    if (lua_pcall(L, nargs, nresults, 0) != 0) {
        fprintf(stderr, "fuzz: %s: %s\n", name, lua_tostring(L, -1));
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lua_State *L = app->L;
    SY_FUZZ_ASSERT(lua_gettop(L) == 0, "the app's stack holds %d values before a record", lua_gettop(L));
    if (size == 0) return 0;

    /* the fields */
    const char *fields[7];
    size_t lens[7], nfields = 0;
    const char *p = (const char *)data + 1, *end = (const char *)data + size;
    while (nfields < 7) {
        const char *sep = nfields < 6 ? memchr(p, 0x1e, (size_t)(end - p)) : NULL;
        fields[nfields] = p;
        lens[nfields] = sep ? (size_t)(sep - p) : (size_t)(end - p);
        ++nfields;
        if (sep == NULL) break;
        p = sep + 1;
    }
    for (size_t i = nfields; i < 7; ++i) {
        fields[i] = "";
        lens[i] = 0;
    }

    /* 1. the parser alone */
    lua_pushlstring(L, fields[0], lens[0]);
    call_rec("check_deserialize", 1, 0);

    /* 2. the record through App.handle_message */
    result_t r = {0};
    sy_co_t *co = sy_co_create(app, app->handle_message_ref, on_done, &r);
    lua_rawgeti(co->L, LUA_REGISTRYINDEX, app->app_ref); /* fn app */
    lua_pushinteger(L, data[0]);
    for (size_t i = 0; i < 7; ++i)
        lua_pushlstring(L, fields[i], lens[i]);
    call_rec("prepare", 8, 2); /* group msg */
    lua_xmove(L, co->L, 2);    /* fn app group msg */
    sy_co_resume(co, 3);

    SY_FUZZ_ASSERT(r.done, "handle_message did not finish (nothing in these handlers waits)");
    SY_FUZZ_ASSERT(r.ok == 1, "handle_message failed outside the handler: %s", r.error);
    SY_FUZZ_ASSERT(app->refcnt == 1, "the coroutine did not release the app (refcnt %zu)", app->refcnt);
    lua_pushstring(L, r.outcome);
    lua_pushnumber(L, r.failed);
    call_rec("check", 2, 0);
    SY_FUZZ_ASSERT(lua_gettop(L) == 0, "the app's stack holds %d values after a record", lua_gettop(L));
    return 0;
}
