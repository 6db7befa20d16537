/*
 * core.request: NestJS-style request-reply from a handler. The coroutine yields until kafka/rpc.c reports the
 * reply, the timeout or a failure. Decoding the reply (JSON or string, kafka_nest-err) is runtime.lua's job.
 * Each worker has one request-reply instance for the reply topics its app declares; a reload that changes them
 * starts a new instance and keeps the old one until shutdown, so requests already waiting still get their answer.
 */
#include <lauxlib.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include "common/log.h"
#include "common/mem.h"
#include "kafka/rpc.h"
#include "lua/kafka.h"
#include "lua/worker.h"

#define MAX_HEADERS 64

typedef struct {
    sy_co_t *co;
    sy_worker_t *worker;
    char topic[200];
} request_ctx_t;

static void count(sy_worker_t *w, const char *topic, const char *outcome)
{
    char esc[256], labels[400];
    sy_metrics_escape(esc, sizeof(esc), topic);
    snprintf(labels, sizeof(labels), "topic=\"%s\",outcome=\"%s\"", esc, outcome);
    sy_metrics_add(w->metrics, "switchyard_kafka_requests_total", labels, 1);
}

static void on_reply(void *cookie, rd_kafka_resp_err_t err, const rd_kafka_message_t *reply)
{
    request_ctx_t *ctx = cookie;
    sy_co_t *co = ctx->co;
    lua_State *L = co->L;
    count(ctx->worker, ctx->topic,
          err == RD_KAFKA_RESP_ERR_NO_ERROR     ? "reply"
          : err == RD_KAFKA_RESP_ERR__TIMED_OUT ? "timeout"
                                                : "failed");
    free(ctx);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (err == RD_KAFKA_RESP_ERR__TIMED_OUT)
            lua_pushliteral(L, "timeout");
        else if (err == RD_KAFKA_RESP_ERR__DESTROY)
            lua_pushliteral(L, "shutting down");
        else
            lua_pushfstring(L, "request failed: %s", rd_kafka_err2str(err));
        lua_pushnil(L);
        sy_co_resume(co, 2);
        return;
    }
    if (reply->payload != NULL)
        lua_pushlstring(L, reply->payload, reply->len);
    else
        lua_pushnil(L);
    sy_lua_push_kafka_headers(L, reply);
    sy_co_resume(co, 2);
}

/* core.request(topic, value|nil, key|nil, headers|nil, timeout_ms) -> raw_value|nil, headers | reason, nil */
int sy_lua_rpc_request(lua_State *L)
{
    sy_app_t *app = sy_app_from_upvalue(L);
    size_t vlen = 0, klen = 0;
    const char *topic = luaL_checkstring(L, 1);
    const char *value = luaL_optlstring(L, 2, NULL, &vlen);
    const char *key = luaL_optlstring(L, 3, NULL, &klen);
    lua_Number timeout = luaL_checknumber(L, 5);
    sy_kafka_header_t hs[MAX_HEADERS + 2];
    size_t nh = 0;
    if (!lua_isnoneornil(L, 4)) {
        luaL_checktype(L, 4, LUA_TTABLE);
        lua_pushnil(L);
        while (lua_next(L, 4) != 0) {
            if (lua_type(L, -2) != LUA_TSTRING || !lua_isstring(L, -1))
                return luaL_error(L, "kafka headers must map strings to strings");
            if (nh == MAX_HEADERS) return luaL_error(L, "more than %d kafka headers", MAX_HEADERS);
            hs[nh].name = lua_tostring(L, -2);
            hs[nh].value = lua_tolstring(L, -1, &hs[nh].value_len);
            ++nh;
            lua_pop(L, 1);
        }
    }
    nh = sy_lua_kafka_trace_headers(L, app, hs, nh);
    if (timeout < 1 || timeout > 3600 * 1000.0) return luaL_argerror(L, 5, "timeout must be between 1 ms and 1 hour");
    sy_co_t *co = sy_co_check(L, app, "kafka.request");
    sy_worker_t *w = app->worker;
    sy_kafka_rpc_t *rpc = w != NULL ? w->rpc : NULL;
    if (rpc == NULL && w != NULL && w->app != NULL && w->app->nreply_topics == 0) {
        lua_pushfstring(L, "no reply topic for %s: declare kafka.topic(\"%s\", { replies = true })", topic, topic);
        lua_pushnil(L);
        return 2;
    }
    if (rpc == NULL) {
        lua_pushliteral(L, "request-reply is not available (shutting down)");
        lua_pushnil(L);
        return 2;
    }
    request_ctx_t *ctx = sy_malloc(sizeof(*ctx));
    ctx->co = co;
    ctx->worker = w;
    snprintf(ctx->topic, sizeof(ctx->topic), "%s", topic);
    rd_kafka_resp_err_t err =
        sy_kafka_rpc_request(rpc, topic, key, klen, value, vlen, hs, nh, (uint64_t)timeout, on_reply, ctx);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        count(w, topic, "refused");
        free(ctx);
        if (err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC)
            lua_pushfstring(L, "no reply topic for %s: declare kafka.topic(\"%s\", { replies = true })", topic, topic);
        else if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL)
            lua_pushliteral(L, "producer queue full");
        else
            lua_pushfstring(L, "cannot send the request: %s", rd_kafka_err2str(err));
        lua_pushnil(L);
        return 2;
    }
    return lua_yield(L, 0);
}

static int same_list(char **a, size_t na, char **b, size_t nb)
{
    if (na != nb) return 0;
    for (size_t i = 0; i < na; ++i)
        if (strcmp(a[i], b[i]) != 0) return 0;
    return 1;
}

static sy_kafka_rpc_t *rpc_start(sy_worker_t *w, sy_app_t *app, char *errbuf, size_t errbuf_size)
{
    sy_kafka_rpc_config_t cfg = {.fetch_wait_max_ms = app->reply_fetch_wait_ms > 0 ? app->reply_fetch_wait_ms : 1};
    return sy_kafka_rpc_create(w->host->cluster, w->loop, w->producer, (const char *const *)app->reply_topics,
                               app->nreply_topics, &cfg, errbuf, errbuf_size);
}

int sy_lua_rpc_worker_start(sy_worker_t *w, char *errbuf, size_t errbuf_size)
{
    if (w->app->nreply_topics == 0) return 0;
    w->rpc = rpc_start(w, w->app, errbuf, errbuf_size);
    return w->rpc != NULL ? 0 : -1;
}

void sy_lua_rpc_worker_update(sy_worker_t *w, const sy_app_t *old_app, sy_app_t *new_app)
{
    char errbuf[512];
    if (same_list(old_app->reply_topics, old_app->nreply_topics, new_app->reply_topics, new_app->nreply_topics)) return;
    if (w->rpc != NULL) {
        w->retired_rpcs = sy_realloc(w->retired_rpcs, (w->nretired_rpcs + 1) * sizeof(*w->retired_rpcs));
        w->retired_rpcs[w->nretired_rpcs++] = w->rpc;
        w->rpc = NULL;
    }
    if (new_app->nreply_topics != 0 && (w->rpc = rpc_start(w, new_app, errbuf, sizeof(errbuf))) == NULL)
        sy_error("kafka", "worker %zu: request-reply after reload: %s", w->id, errbuf);
}

void sy_lua_rpc_worker_stop(sy_worker_t *w)
{
    sy_kafka_rpc_destroy(w->rpc);
    w->rpc = NULL;
    for (size_t i = 0; i < w->nretired_rpcs; ++i)
        sy_kafka_rpc_destroy(w->retired_rpcs[i]);
    free(w->retired_rpcs);
    w->retired_rpcs = NULL;
    w->nretired_rpcs = 0;
}
