/*
 * The HTTP entry into the app; see http.h. The request pipeline itself (decoding, validation, error bodies) is in
 * runtime.lua (App.handle_http); this file builds the request table, resumes the coroutine and sends what it returns.
 */
#include <lauxlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "common/log.h"
#include "common/mem.h"
#include "http/router.h"
#include "http/server.h"
#include "lua/http.h"
#include "lua/telemetry.h"
#include "lua/worker.h"

typedef struct {
    h2o_req_t *req; /* NULL once the request's pool is gone (client disconnected or response finished) */
    sy_worker_t *worker;
    int refcnt; /* the pool's hold + the coroutine's hold */
    char request_id[40];
    char traceparent[64];
    char method[16];
    size_t body_len;
    uint64_t start_ns;
    const char *route; /* borrowed from the app, which the coroutine keeps alive */
} pending_t;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Metrics and telemetry of one answered request. */
static void account(sy_worker_t *w, const char *route, const char *method, size_t method_len, int status,
                    size_t body_len, uint64_t start_ns, const char *request_id)
{
    char labels[400], esc[256], m[17];
    uint64_t elapsed_ns = now_ns() - start_ns;
    size_t n = 0;
    for (size_t i = 0; i < method_len && n < sizeof(m) - 1; ++i)
        if (method[i] >= 'A' && method[i] <= 'Z') m[n++] = method[i];
    m[n] = '\0';
    sy_metrics_escape(esc, sizeof(esc), route);
    snprintf(labels, sizeof(labels), "route=\"%s\",method=\"%s\",status=\"%d\"", esc, m, status);
    sy_metrics_add(w->metrics, "switchyard_http_requests_total", labels, 1);
    snprintf(labels, sizeof(labels), "route=\"%s\"", esc);
    sy_metrics_observe(w->metrics, "switchyard_http_request_duration_seconds", labels, elapsed_ns / 1e9);
    if (status == 500) sy_metrics_add(w->metrics, "switchyard_lua_errors_total", "", 1);
    sy_telemetry_record(w, route, method, method_len, status, body_len, elapsed_ns / 1000, request_id);
}

typedef struct {
    pending_t *pending;
} pool_hold_t;

static void pending_release(pending_t *p)
{
    if (--p->refcnt == 0) free(p);
}

static void on_pool_dispose(void *data)
{
    pool_hold_t *hold = data;
    hold->pending->req = NULL;
    pending_release(hold->pending);
}

static int nibble(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static void push_decoded(lua_State *L, const char *s, size_t len)
{
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (size_t i = 0; i < len; ++i) {
        int hi, lo;
        if (s[i] == '%' && i + 2 < len && (hi = nibble(s[i + 1])) >= 0 && (lo = nibble(s[i + 2])) >= 0) {
            luaL_addchar(&b, (char)(hi << 4 | lo));
            i += 2;
        } else {
            luaL_addchar(&b, s[i]);
        }
    }
    luaL_pushresult(&b);
}

static void make_request_id(sy_worker_t *w, h2o_req_t *req, char *buf, size_t size)
{
    ssize_t i = h2o_find_header_by_str(&req->headers, H2O_STRLIT("x-request-id"), -1);
    if (i >= 0) {
        h2o_iovec_t v = req->headers.entries[i].value;
        int ok = v.len > 0 && v.len < size;
        for (size_t k = 0; ok && k < v.len; ++k) {
            char c = v.base[k];
            ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' || c == '_' ||
                 c == '.';
        }
        if (ok) {
            memcpy(buf, v.base, v.len);
            buf[v.len] = '\0';
            return;
        }
    }
    static __thread uint64_t salt;
    if (salt == 0) salt = ((uint64_t)(uintptr_t)w * 0x9e3779b97f4a7c15ull) ^ (uint64_t)time(NULL);
    ++w->requests;
    snprintf(buf, size, "%08x%02zx%06llx", (unsigned)(salt >> 16), w->id & 0xff,
             (unsigned long long)(w->requests & 0xffffff));
}

static void on_http_done(sy_co_t *co, int ok, int nresults)
{
    pending_t *p = co->data;
    sy_worker_t *w = p->worker;
    lua_State *L = co->L;
    --w->inflight;
    if (ok < 0) {
        if (p->req != NULL) sy_http_send_error(p->req, 503, "the server is shutting down", "retry-after", "1");
        goto Exit;
    }
    if (!ok) {
        /* the runtime catches handler errors itself: this is a failure of the runtime (out of memory, a bug) */
        /* the runtime answers handler errors itself; this is a failure it could not answer (out of memory even
         * after collecting, a bug): the request id doubles as the error id of the log line */
        sy_error("http", "error_id=%s request failed outside the handler: %s", p->request_id, lua_tostring(L, -1));
        account(w, p->route, p->method, strlen(p->method), 500, p->body_len, p->start_ns, p->request_id);
        if (p->req != NULL) {
            char body[200];
            int n = snprintf(body, sizeof(body),
                             "{\"statusCode\":500,\"message\":\"Internal Server Error\",\"error\":\"Internal Server "
                             "Error\",\"errorId\":\"%s\"}",
                             p->request_id);
            const char *hs[] = {"content-type", "application/json", "x-request-id", p->request_id};
            sy_http_send(p->req, 500, body, (size_t)n, hs, 2);
        }
        goto Exit;
    }
    {
        int status = (int)lua_tointeger(L, lua_gettop(L) - nresults + 1);
        account(w, p->route, p->method, strlen(p->method), status >= 100 && status <= 599 ? status : 500, p->body_len,
                p->start_ns, p->request_id);
    }
    if (p->req == NULL) {
        sy_debug("http", "request %s: client went away before the response", p->request_id);
        goto Exit;
    }
    {
        int base = lua_gettop(L) - nresults + 1;
        int status = (int)lua_tointeger(L, base);
        size_t len = 0;
        const char *body = lua_tolstring(L, base + 1, &len);
        size_t n = lua_istable(L, base + 2) ? lua_objlen(L, base + 2) : 0;
        const char **headers = h2o_mem_alloc_pool(&p->req->pool, (n + 2) * sizeof(char *));
        size_t nh = 0;
        for (size_t i = 0; i + 1 < n; i += 2) {
            lua_rawgeti(L, base + 2, (int)i + 1);
            lua_rawgeti(L, base + 2, (int)i + 2);
            const char *name = lua_tostring(L, -2), *value = lua_tostring(L, -1);
            if (name != NULL && value != NULL) {
                headers[2 * nh] = h2o_strdup(&p->req->pool, name, SIZE_MAX).base;
                headers[2 * nh + 1] = h2o_strdup(&p->req->pool, value, SIZE_MAX).base;
                ++nh;
            }
            lua_pop(L, 2);
        }
        headers[2 * nh] = "x-request-id";
        headers[2 * nh + 1] = p->request_id;
        ++nh;
        if (status < 100 || status > 599) status = 500;
        sy_http_send(p->req, status, body ? body : "", body ? len : 0, headers, nh);
    }
Exit:
    pending_release(p);
}

int sy_lua_http_handle(void *cookie, h2o_req_t *req)
{
    sy_worker_t *w = cookie;
    sy_app_t *app = w->app;
    sy_route_match_t m;
    unsigned method = sy_method_parse(req->method.base, req->method.len);
    h2o_iovec_t path = req->path_normalized;

    size_t header_bytes = 0;
    for (size_t i = 0; i < req->headers.size; ++i)
        header_bytes += req->headers.entries[i].name->len + req->headers.entries[i].value.len;
    if (header_bytes > w->host->opts.max_header_bytes) {
        char msg[96];
        snprintf(msg, sizeof(msg), "request headers are larger than %zu bytes", w->host->opts.max_header_bytes);
        sy_http_send_error(req, 431, msg, "connection", "close");
        return 0;
    }
    if (app == NULL) {
        /* the worker is past its drain (a request on a keep-alive connection during the final stop) */
        sy_http_send_error(req, 503, "the server is shutting down", "retry-after", "1");
        return 0;
    }
    uint64_t start_ns = now_ns();
    char request_id[40];
    make_request_id(w, req, request_id, sizeof(request_id));
    int id = sy_router_match(app->router, method, path.base, path.len, &m);
    if (id == SY_ROUTER_NOT_FOUND) {
        account(w, "unmatched", req->method.base, req->method.len, 404, req->entity.len, start_ns, request_id);
        /* NestJS's wording: "Cannot GET /path" */
        size_t n = path.len > 200 ? 200 : path.len;
        char *msg = h2o_mem_alloc_pool(&req->pool, n + 32);
        snprintf(msg, n + 32, "Cannot %.*s %.*s", (int)(req->method.len > 16 ? 16 : req->method.len), req->method.base,
                 (int)n, path.base);
        sy_http_send_error(req, 404, msg, "x-request-id", h2o_strdup(&req->pool, request_id, SIZE_MAX).base);
        return 0;
    }
    if (id == SY_ROUTER_METHOD_NOT_ALLOWED) {
        char allow[96];
        account(w, "unmatched", req->method.base, req->method.len, 405, req->entity.len, start_ns, request_id);
        sy_method_format(m.allowed, allow, sizeof(allow));
        char *msg = h2o_mem_alloc_pool(&req->pool, 160);
        snprintf(msg, 160, "method %.*s is not allowed here", (int)(req->method.len > 16 ? 16 : req->method.len),
                 req->method.base);
        sy_http_send_error(req, 405, msg, "allow", h2o_strdup(&req->pool, allow, SIZE_MAX).base);
        return 0;
    }
    if (req->entity.len > w->host->opts.max_body) {
        /* h2o buffers bodies up to a multiple of --max-body (see main.c) so that this answer can be JSON */
        char msg[96];
        snprintf(msg, sizeof(msg), "request body is larger than %zu bytes", w->host->opts.max_body);
        account(w, app->route_labels[id - 1], req->method.base, req->method.len, 413, req->entity.len, start_ns,
                request_id);
        sy_http_send_error(req, 413, msg, "x-request-id", h2o_strdup(&req->pool, request_id, SIZE_MAX).base);
        return 0;
    }
    sy_static_response_t *st = app->statics[id - 1];
    if (st != NULL) {
        sy_http_send(req, st->status, st->body, st->body_len, (const char *const *)st->headers, st->nheaders);
        account(w, app->route_labels[id - 1], req->method.base, req->method.len, st->status, req->entity.len, start_ns,
                request_id);
        return 0;
    }

    pending_t *p = sy_calloc(1, sizeof(*p));
    p->req = req;
    p->worker = w;
    p->refcnt = 2;
    p->start_ns = start_ns;
    p->body_len = req->entity.len;
    p->route = app->route_labels[id - 1];
    snprintf(p->method, sizeof(p->method), "%.*s", (int)(req->method.len < 15 ? req->method.len : 15),
             req->method.base);
    memcpy(p->request_id, request_id, sizeof(p->request_id));
    pool_hold_t *hold = h2o_mem_alloc_shared(&req->pool, sizeof(*hold), on_pool_dispose);
    hold->pending = p;

    sy_co_t *co = sy_co_create(app, app->handle_http_ref, on_http_done, p);
    co->request_id = p->request_id;
    ssize_t tp = h2o_find_header_by_str(&req->headers, H2O_STRLIT("traceparent"), -1);
    if (tp >= 0 && req->headers.entries[tp].value.len == 55) { /* version 00: 2+1+32+1+16+1+2 */
        memcpy(p->traceparent, req->headers.entries[tp].value.base, 55);
        p->traceparent[55] = '\0';
        co->traceparent = p->traceparent;
    }
    lua_State *L = co->L;
    ++w->inflight;
    lua_rawgeti(L, LUA_REGISTRYINDEX, app->app_ref); /* fn app */
    lua_pushinteger(L, id);                          /* fn app id */
    lua_createtable(L, 0, 9);                        /* fn app id req */
    lua_pushlstring(L, req->method.base, req->method.len);
    lua_setfield(L, -2, "method");
    lua_pushlstring(L, path.base, path.len);
    lua_setfield(L, -2, "path");
    if (req->query_at != SIZE_MAX) {
        lua_pushlstring(L, req->path.base + req->query_at + 1, req->path.len - req->query_at - 1);
        lua_setfield(L, -2, "query_string");
    }
    if (req->entity.base != NULL) {
        lua_pushlstring(L, req->entity.base, req->entity.len);
        lua_setfield(L, -2, "body_raw");
    }
    lua_pushstring(L, p->request_id);
    lua_setfield(L, -2, "id");
    lua_createtable(L, 0, (int)req->headers.size); /* ... req headers */
    for (size_t i = 0; i < req->headers.size; ++i) {
        h2o_header_t *h = &req->headers.entries[i];
        lua_pushlstring(L, h->name->base, h->name->len);
        lua_pushvalue(L, -1);
        lua_rawget(L, -3); /* ... headers name old */
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            lua_pushlstring(L, h->value.base, h->value.len);
        } else {
            lua_pushliteral(L, ", ");
            lua_pushlstring(L, h->value.base, h->value.len);
            lua_concat(L, 3);
        }
        lua_rawset(L, -3);
    }
    lua_setfield(L, -2, "headers");
    lua_createtable(L, 0, (int)m.nparams); /* ... req params */
    for (size_t i = 0; i < m.nparams; ++i) {
        push_decoded(L, m.params[i].value, m.params[i].value_len);
        lua_setfield(L, -2, m.params[i].name);
    }
    lua_setfield(L, -2, "params");
    sy_co_resume(co, 3);
    return 0;
}
