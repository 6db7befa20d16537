/*
 * libFuzzer target: the HTTP request pipeline of the Lua runtime (App.handle_http: JSON decoding, dto validation with
 * and without coercion, error bodies, rendering of the handler's answer), fed the input as a JSON body, as a query
 * string and as path parameters of the routes in routes_dto.lua. Requests run in coroutines created with
 * sy_co_create, with the request table core/lua/http.c builds, in an app loaded in check mode.
 * Invariants: the pipeline itself never fails, a request is answered 2xx or 4xx (a 500 means client input raised a
 * Lua error: a bug), error bodies have the NestJS shape, and the Lua state stays balanced and bounded. The input
 * also goes through the JSON layer alone (switchyard.json): decode, encode, decode must give the same value.
 * It does not fuzz h2o's parsing or the body size limit: those are C and are exercised by the e2e tests.
 */
#include <stdint.h>
#include <string.h>
#include "fuzz_lua.h"

/* Round trip of the JSON layer (scripts/switchyard/json.lua) alone: what the decoder accepts, the encoder writes back
 * as the same value (numbers, strings, empty arrays versus empty objects). Raises on a violation. */
static const char HARNESS[] =
    "local json = require('switchyard.json')\n"
    "local function same(a, b, depth)\n"
    "  -- JSON.stringify writes NaN and Infinity as null\n"
    "  if type(a) == 'number' and (a ~= a or a == math.huge or a == -math.huge) and b == json.null then return true "
    "end\n"
    "  if type(a) ~= type(b) then return false end\n"
    "  if type(a) == 'number' then return a == b or (a ~= a and b ~= b) end\n"
    "  if type(a) ~= 'table' then return a == b end\n"
    "  if next(a) == nil and next(b) == nil then return json.is_array(a) == json.is_array(b) end\n"
    "  for k, v in pairs(a) do if not same(v, b[k], depth + 1) then return false end end\n"
    "  for k in pairs(b) do if a[k] == nil then return false end end\n"
    "  return true\n"
    "end\n"
    "function fuzz_json_roundtrip(raw)\n"
    "  local ok, v = pcall(json.decode, raw)\n"
    "  if not ok then return end\n"
    "  local eok, text = pcall(json.encode, v)\n"
    "  if not eok then error('a decoded value cannot be encoded again (' .. tostring(text) .. '): ' .. raw:sub(1, "
    "200)) end\n"
    "  local dok, w = pcall(json.decode, text)\n"
    "  if not dok then error('the encoder wrote JSON the decoder refuses: ' .. text:sub(1, 200)) end\n"
    "  if not same(v, w, 0) then\n"
    "    error('decode(encode(v)) differs from v: ' .. raw:sub(1, 200) .. '  ->  ' .. text:sub(1, 200))\n"
    "  end\n"
    "end\n";

typedef struct {
    int done, ok, nresults, status;
    const char *route;
    char body[256]; /* the start of the body, for the assertion messages */
    size_t body_len;
} result_t;

static sy_app_t *app;
static int id_orders, id_loose, id_scalars, id_any, id_search, id_things;
static uint64_t runs;

static void on_done(sy_co_t *co, int ok, int nresults)
{
    result_t *r = co->data;
    lua_State *L = co->L;
    r->done = 1;
    r->ok = ok;
    r->nresults = nresults;
    if (ok != 1) {
        snprintf(r->body, sizeof(r->body), "%s", ok == 0 ? lua_tostring(L, -1) : "abandoned");
        return;
    }
    int base = lua_gettop(L) - nresults + 1;
    r->status = (int)lua_tointeger(L, base);
    const char *body = lua_tolstring(L, base + 1, &r->body_len);
    snprintf(r->body, sizeof(r->body), "%.*s", (int)(r->body_len < 255 ? r->body_len : 255), body ? body : "");
}

static int route_id(const char *method, const char *path)
{
    sy_route_match_t m;
    int id = sy_router_match(app->router, sy_method_parse(method, strlen(method)), path, strlen(path), &m);
    if (id < 0) {
        fprintf(stderr, "fuzz: no route for %s %s\n", method, path);
        exit(2);
    }
    return id;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    app = sy_fuzz_load_app("routes_dto.lua");
    sy_fuzz_run_lua(app, HARNESS);
    id_orders = route_id("POST", "/orders");
    id_loose = route_id("POST", "/loose");
    id_scalars = route_id("POST", "/scalars");
    id_any = route_id("POST", "/any");
    id_search = route_id("GET", "/search");
    id_things = route_id("GET", "/things/1/x");
    return 0;
}

typedef struct {
    const char *method, *path;
    int id;
    const uint8_t *body, *query;
    size_t body_len, query_len;
    const uint8_t *params[2];
    size_t params_len[2];
} request_t;

static void run(const request_t *q)
{
    result_t r = {.route = q->path};
    lua_State *L0 = app->L;
    SY_FUZZ_ASSERT(lua_gettop(L0) == 0, "the app's stack holds %d values before a request", lua_gettop(L0));

    sy_co_t *co = sy_co_create(app, app->handle_http_ref, on_done, &r);
    lua_State *L = co->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, app->app_ref); /* fn app */
    lua_pushinteger(L, q->id);                       /* fn app id */
    lua_createtable(L, 0, 9);                        /* fn app id req */
    lua_pushstring(L, q->method);
    lua_setfield(L, -2, "method");
    lua_pushstring(L, q->path);
    lua_setfield(L, -2, "path");
    if (q->query != NULL) {
        lua_pushlstring(L, (const char *)q->query, q->query_len);
        lua_setfield(L, -2, "query_string");
    }
    if (q->body != NULL) {
        lua_pushlstring(L, (const char *)q->body, q->body_len);
        lua_setfield(L, -2, "body_raw");
    }
    lua_pushliteral(L, "fuzz");
    lua_setfield(L, -2, "id");
    lua_createtable(L, 0, 1); /* ... req headers */
    lua_pushliteral(L, "application/json");
    lua_setfield(L, -2, "content-type");
    lua_setfield(L, -2, "headers");
    lua_createtable(L, 0, 2); /* ... req params */
    if (q->params[0] != NULL) {
        lua_pushlstring(L, (const char *)q->params[0], q->params_len[0]);
        lua_setfield(L, -2, "id");
        lua_pushlstring(L, (const char *)q->params[1], q->params_len[1]);
        lua_setfield(L, -2, "slug");
    }
    lua_setfield(L, -2, "params");
    sy_co_resume(co, 3);

    SY_FUZZ_ASSERT(r.done, "%s: the handler did not finish (nothing in these routes waits)", r.route);
    SY_FUZZ_ASSERT(r.ok == 1, "%s: the pipeline failed outside the handler: %s", r.route, r.body);
    SY_FUZZ_ASSERT(r.nresults == 3, "%s: handle_http returned %d values", r.route, r.nresults);
    SY_FUZZ_ASSERT((r.status >= 200 && r.status < 300) || (r.status >= 400 && r.status < 500),
                   "%s: status %d for client input, body %s", r.route, r.status, r.body);
    if (r.status >= 400)
        SY_FUZZ_ASSERT(strncmp(r.body, "{\"statusCode\":", 14) == 0, "%s: error body not in the NestJS shape: %s",
                       r.route, r.body);
    else
        SY_FUZZ_ASSERT(r.body[0] == '{' || r.body[0] == '[', "%s: %d answer is not JSON: %s", r.route, r.status,
                       r.body);
    SY_FUZZ_ASSERT(lua_gettop(L0) == 0, "%s: the app's stack holds %d values after a request", r.route, lua_gettop(L0));
    SY_FUZZ_ASSERT(app->refcnt == 1, "%s: the coroutine did not release the app (refcnt %zu)", r.route, app->refcnt);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const int *const body_routes[] = {&id_orders, &id_loose, &id_scalars, &id_any};
    static const char *const body_paths[] = {"/orders", "/loose", "/scalars", "/any"};
    for (size_t i = 0; i < 4; ++i)
        run(&(request_t){
            .method = "POST", .path = body_paths[i], .id = *body_routes[i], .body = data, .body_len = size});

    run(&(request_t){.method = "GET", .path = "/search", .id = id_search, .query = data, .query_len = size});

    /* path parameters: the input up to the first '/' is :id, the rest :slug (as decoded by core/lua/http.c) */
    const uint8_t *slash = memchr(data, '/', size);
    size_t idlen = slash ? (size_t)(slash - data) : size;
    request_t q = {.method = "GET", .path = "/things/:id/:slug", .id = id_things};
    q.params[0] = data;
    q.params_len[0] = idlen;
    q.params[1] = slash ? slash + 1 : data + size;
    q.params_len[1] = slash ? size - idlen - 1 : 0;
    run(&q);

    /* the JSON layer alone */
    lua_getglobal(app->L, "fuzz_json_roundtrip");
    lua_pushlstring(app->L, (const char *)data, size);
    if (lua_pcall(app->L, 1, 0, 0) != 0) {
        fprintf(stderr, "fuzz assertion failed: %s\n", lua_tostring(app->L, -1));
        abort();
    }

    /* memory held by the state stays bounded (the GC reclaims finished coroutines and request tables) */
    if (++runs % 4096 == 0) {
        lua_gc(app->L, LUA_GCCOLLECT, 0);
        int kb = lua_gc(app->L, LUA_GCCOUNT, 0);
        SY_FUZZ_ASSERT(kb < 64 * 1024, "the Lua state holds %d KiB after %llu inputs", kb, (unsigned long long)runs);
    }
    return 0;
}
