/*
 * The `emit` and `request` primitives and the per-worker Kafka wiring; see kafka.h. Waiting primitives yield the
 * calling coroutine and resume it from the delivery report / reply callback on the worker's loop. Handler logic
 * (retries, DLQ, replies in the NestJS format) is in runtime.lua: consumed messages are handed to App.handle_message
 * and their offset is stored only when it returns.
 */
#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "common/log.h"
#include "common/mem.h"
#include "lua/kafka.h"
#include "lua/primitives.h"
#include "lua/worker.h"

#define MAX_HEADERS 64

typedef struct {
    sy_co_t *co; /* NULL: nobody waits (emit without wait) */
    char *topic; /* for the log of an unwaited failure and the metrics */
    sy_worker_t *worker;
    uint64_t start_ns;
} emit_ctx_t;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void count_topic(sy_worker_t *w, const char *name, const char *topic, const char *extra, double delta)
{
    char esc[256], labels[400];
    sy_metrics_escape(esc, sizeof(esc), topic);
    snprintf(labels, sizeof(labels), "topic=\"%s\"%s", esc, extra ? extra : "");
    sy_metrics_add(w->metrics, name, labels, delta);
}

/* Reads the headers table at `idx` into hs (names and values borrowed from the Lua stack, which keeps them alive
 * until the primitive returns). Returns the count, raises on a non-string. */
static size_t read_headers(lua_State *L, int idx, sy_kafka_header_t *hs)
{
    size_t n = 0;
    if (lua_isnoneornil(L, idx)) return 0;
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        if (lua_type(L, -2) != LUA_TSTRING || !lua_isstring(L, -1))
            luaL_error(L, "kafka headers must map strings to strings");
        if (n == MAX_HEADERS) luaL_error(L, "more than %d kafka headers", MAX_HEADERS);
        size_t len;
        hs[n].name = lua_tostring(L, -2);
        hs[n].value = lua_tolstring(L, -1, &len);
        hs[n].value_len = len;
        ++n;
        lua_pop(L, 1);
    }
    return n;
}

size_t sy_lua_kafka_trace_headers(lua_State *L, sy_app_t *app, sy_kafka_header_t *hs, size_t nh)
{
    sy_co_t *co = app->running;
    if (co == NULL || co->L != L || co->request_id == NULL) return nh;
    int has_id = 0, has_tp = 0;
    for (size_t i = 0; i < nh; ++i) {
        has_id |= strcmp(hs[i].name, "x-request-id") == 0;
        has_tp |= strcmp(hs[i].name, "traceparent") == 0;
    }
    if (!has_id) hs[nh++] = (sy_kafka_header_t){"x-request-id", co->request_id, strlen(co->request_id)};
    if (!has_tp && co->traceparent != NULL)
        hs[nh++] = (sy_kafka_header_t){"traceparent", co->traceparent, strlen(co->traceparent)};
    return nh;
}

static void on_delivered(void *cookie, rd_kafka_resp_err_t err, int32_t partition, int64_t offset)
{
    emit_ctx_t *ctx = cookie;
    sy_co_t *co = ctx->co;
    if (err != 0) {
        count_topic(ctx->worker, "switchyard_kafka_failed_total", ctx->topic, ",reason=\"delivery\"", 1);
    } else {
        count_topic(ctx->worker, "switchyard_kafka_acked_total", ctx->topic, NULL, 1);
        sy_metrics_observe(ctx->worker->metrics, "switchyard_kafka_delivery_seconds", "",
                           (now_ns() - ctx->start_ns) / 1e9);
    }
    if (co == NULL) {
        if (err != 0)
            sy_error("kafka", "a record emitted without waiting to %s was not delivered: %s", ctx->topic,
                     rd_kafka_err2str(err));
        free(ctx->topic);
        free(ctx);
        return;
    }
    free(ctx->topic);
    free(ctx);
    if (err != 0) {
        lua_pushnil(co->L);
        lua_pushfstring(co->L, "delivery failed: %s", rd_kafka_err2str(err));
        lua_pushinteger(co->L, 1);
        sy_co_resume(co, 3);
    } else {
        lua_pushinteger(co->L, partition);
        lua_pushnumber(co->L, (lua_Number)offset);
        sy_co_resume(co, 2);
    }
}

/* core.emit(topic, value|nil, key|nil, headers|nil, partition|nil, wait) -> partition, offset | true |
 *                                                                         nil, reason, retry_after */
static int l_emit(lua_State *L)
{
    sy_app_t *app = sy_app_from_upvalue(L);
    size_t vlen = 0, klen = 0;
    const char *topic = luaL_checkstring(L, 1);
    const char *value = luaL_optlstring(L, 2, NULL, &vlen);
    const char *key = luaL_optlstring(L, 3, NULL, &klen);
    sy_kafka_header_t hs[MAX_HEADERS + 2];
    size_t nh = read_headers(L, 4, hs);
    nh = sy_lua_kafka_trace_headers(L, app, hs, nh);
    int32_t partition = RD_KAFKA_PARTITION_UA;
    if (!lua_isnoneornil(L, 5)) {
        lua_Number p = luaL_checknumber(L, 5);
        if (!(p >= 0 && p <= 2147483647.0) || p != floor(p))
            return luaL_argerror(L, 5, "partition must be an integer between 0 and 2^31-1");
        partition = (int32_t)p;
    }
    int wait = lua_toboolean(L, 6);
    sy_co_t *co = wait ? sy_co_check(L, app, "kafka.emit") : NULL;
    sy_worker_t *w = app->worker;

    if (w == NULL || w->producer == NULL) {
        lua_pushnil(L);
        lua_pushstring(L, w == NULL ? "kafka is not available while loading routes" : "the producer is shut down");
        lua_pushinteger(L, 1);
        return 3;
    }
    emit_ctx_t *ctx = sy_malloc(sizeof(*ctx));
    ctx->co = co;
    ctx->topic = sy_strdup(topic);
    ctx->worker = w;
    ctx->start_ns = now_ns();
    rd_kafka_resp_err_t err =
        sy_kafka_produce(w->producer, topic, partition, key, klen, value, vlen, hs, nh, on_delivered, ctx);
    if (err != 0) {
        count_topic(w, "switchyard_kafka_failed_total", topic,
                    err == RD_KAFKA_RESP_ERR__QUEUE_FULL ? ",reason=\"queue_full\"" : ",reason=\"refused\"", 1);
        free(ctx->topic);
        free(ctx);
        lua_pushnil(L);
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL)
            lua_pushstring(L, "producer queue full");
        else
            lua_pushfstring(L, "cannot produce to %s: %s", topic, rd_kafka_err2str(err));
        lua_pushinteger(L, 1);
        return 3;
    }
    count_topic(w, "switchyard_kafka_produced_total", topic, NULL, 1);
    if (!wait) {
        lua_pushboolean(L, 1);
        return 1;
    }
    return lua_yield(L, 0);
}

void sy_lua_kafka_register(lua_State *L, sy_app_t *app)
{
    lua_pushlightuserdata(L, app);
    lua_pushcclosure(L, l_emit, 1);
    lua_setfield(L, -2, "emit");
    lua_pushlightuserdata(L, app);
    lua_pushcclosure(L, sy_lua_rpc_request, 1);
    lua_setfield(L, -2, "request");
}

/* --- consumers ------------------------------------------------------------------------------------------------ */

typedef struct {
    sy_worker_consumer_t *wc;
    rd_kafka_message_t *msg;
} message_ctx_t;

static void on_message_done(sy_co_t *co, int ok, int nresults)
{
    message_ctx_t *ctx = co->data;
    sy_worker_consumer_t *wc = ctx->wc;
    --wc->worker->inflight;
    if (ok < 0 || wc->consumer == NULL) {
        /* abandoned at shutdown: not committed, so the group redelivers it */
        free(ctx);
        return;
    }
    const char *topic = rd_kafka_topic_name(ctx->msg->rkt);
    count_topic(wc->worker, "switchyard_kafka_consumed_total", topic, NULL, 1);
    if (ok) {
        int base = lua_gettop(co->L) - nresults + 1;
        const char *outcome = nresults >= 1 ? lua_tostring(co->L, base) : NULL;
        lua_Number failed = nresults >= 2 ? lua_tonumber(co->L, base + 1) : 0;
        if (failed > 0) {
            count_topic(wc->worker, "switchyard_kafka_handler_errors_total", topic, NULL, failed);
            sy_metrics_add(wc->worker->metrics, "switchyard_lua_errors_total", "", failed);
        }
        if (outcome != NULL && (strcmp(outcome, "dlq") == 0))
            count_topic(wc->worker, "switchyard_kafka_dlq_total", topic, NULL, 1);
    }
    if (!ok)
        sy_error("kafka",
                 "group %s: message %s/%d@%lld failed outside its handler (committed to keep the partition "
                 "moving): %s",
                 wc->group, rd_kafka_topic_name(ctx->msg->rkt), (int)ctx->msg->partition, (long long)ctx->msg->offset,
                 lua_tostring(co->L, -1));
    sy_kafka_consumer_done(wc->consumer, ctx->msg);
    free(ctx);
}

void sy_lua_push_kafka_headers(lua_State *L, const rd_kafka_message_t *msg)
{
    lua_newtable(L);
    rd_kafka_headers_t *hdrs = NULL;
    if (rd_kafka_message_headers(msg, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR) return;
    const char *name;
    const void *value;
    size_t size;
    for (size_t i = 0; rd_kafka_header_get_all(hdrs, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR; ++i) {
        lua_pushstring(L, name);
        if (value != NULL)
            lua_pushlstring(L, value, size);
        else
            lua_pushliteral(L, "");
        lua_rawset(L, -3); /* the last value of a repeated header wins */
    }
}

static void push_message(lua_State *L, const rd_kafka_message_t *msg)
{
    lua_createtable(L, 0, 6);
    lua_pushstring(L, rd_kafka_topic_name(msg->rkt));
    lua_setfield(L, -2, "topic");
    lua_pushinteger(L, msg->partition);
    lua_setfield(L, -2, "partition");
    lua_pushnumber(L, (lua_Number)msg->offset);
    lua_setfield(L, -2, "offset");
    if (msg->key != NULL) {
        lua_pushlstring(L, msg->key, msg->key_len);
        lua_setfield(L, -2, "key");
    }
    if (msg->payload != NULL) {
        lua_pushlstring(L, msg->payload, msg->len);
        lua_setfield(L, -2, "value");
    }
    sy_lua_push_kafka_headers(L, msg); /* msg headers */
    lua_setfield(L, -2, "headers");
}

static void on_message(sy_kafka_consumer_t *c, rd_kafka_message_t *msg, void *cookie)
{
    sy_worker_consumer_t *wc = cookie;
    sy_worker_t *w = wc->worker;
    if (wc->paused) {
        /* shutting down: leave it uncommitted; the consumer frees it when destroyed */
        return;
    }
    sy_app_t *app = w->app;
    message_ctx_t *ctx = sy_malloc(sizeof(*ctx));
    ctx->wc = wc;
    ctx->msg = msg;
    sy_co_t *co = sy_co_create(app, app->handle_message_ref, on_message_done, ctx);
    ++w->inflight;
    lua_rawgeti(co->L, LUA_REGISTRYINDEX, app->app_ref);
    lua_pushstring(co->L, wc->group);
    push_message(co->L, msg);
    sy_co_resume(co, 3);
}

static sy_worker_consumer_t *consumer_start(sy_worker_t *w, const sy_app_group_t *g, char *errbuf, size_t errbuf_size);

int sy_lua_kafka_worker_start(sy_worker_t *w, char *errbuf, size_t errbuf_size)
{
    sy_app_t *app = w->app;
    sy_kafka_cluster_t *cluster = w->host->cluster;
    int ret = -1;
    sy_kafka_topic_config_t *topics = sy_calloc(app->ntopics + 1, sizeof(*topics));

    for (size_t i = 0; i < app->ntopics; ++i) {
        topics[i].name = app->topics[i].name;
        topics[i].compression = app->topics[i].compression;
    }
    sy_kafka_producer_config_t pcfg = {.topics = topics,
                                       .ntopics = app->ntopics,
                                       .linger_ms = app->linger_ms,
                                       .batch_size = app->batch_size,
                                       .message_timeout_ms = app->delivery_timeout_ms};
    if ((w->producer = sy_kafka_producer_create(cluster, w->loop, &pcfg, errbuf, errbuf_size)) == NULL) goto Exit;
    if (sy_lua_rpc_worker_start(w, errbuf, errbuf_size) != 0) goto Exit;
    w->consumers = sy_calloc(app->ngroups + 1, sizeof(*w->consumers));
    for (size_t i = 0; i < app->ngroups; ++i) {
        sy_worker_consumer_t *wc = consumer_start(w, &app->groups[i], errbuf, errbuf_size);
        if (wc == NULL) goto Exit;
        w->consumers[w->nconsumers++] = wc;
    }
    ret = 0;
Exit:
    free(topics);
    return ret;
}

static const sy_app_group_t *find_group(const sy_app_t *app, const char *group)
{
    for (size_t i = 0; i < app->ngroups; ++i)
        if (strcmp(app->groups[i].group, group) == 0) return &app->groups[i];
    return NULL;
}

static int same_topics(const sy_app_group_t *a, const sy_app_group_t *b)
{
    if (a->ntopics != b->ntopics) return 0;
    for (size_t i = 0; i < a->ntopics; ++i) {
        size_t j = 0;
        while (j < b->ntopics && strcmp(a->topics[i], b->topics[j]) != 0)
            ++j;
        if (j == b->ntopics) return 0;
    }
    return 1;
}

static sy_worker_consumer_t *consumer_start(sy_worker_t *w, const sy_app_group_t *g, char *errbuf, size_t errbuf_size)
{
    sy_worker_consumer_t *wc = sy_calloc(1, sizeof(*wc));
    wc->worker = w;
    wc->group = sy_strdup(g->group);
    const sy_app_t *app = w->app;
    int wait = g->serves_requests ? app->fetch_wait_ms : app->event_fetch_wait_ms;
    sy_kafka_consumer_config_t ccfg = {.fetch_wait_max_ms = wait > 0 ? wait : 1};
    wc->consumer = sy_kafka_consumer_create(w->host->cluster, w->loop, wc->group, (const char *const *)g->topics,
                                            g->ntopics, &ccfg, on_message, wc, errbuf, errbuf_size);
    if (wc->consumer == NULL) {
        free(wc->group);
        free(wc);
        return NULL;
    }
    return wc;
}

void sy_lua_kafka_worker_update(sy_worker_t *w, const sy_app_t *old_app, const sy_app_t *new_app)
{
    char errbuf[512];
    size_t kept = 0;
    sy_lua_rpc_worker_update(w, old_app, (sy_app_t *)new_app);
    /* groups that went away or changed topics stop (committing what was handled); handlers still running for
     * them finish on the old app and are not committed (the group redelivers) */
    for (size_t i = 0; i < w->nconsumers; ++i) {
        sy_worker_consumer_t *wc = w->consumers[i];
        const sy_app_group_t *ng = find_group(new_app, wc->group), *og = find_group(old_app, wc->group);
        if (ng != NULL && og != NULL && same_topics(ng, og)) {
            w->consumers[kept++] = wc;
            continue;
        }
        sy_info("kafka", "worker %zu: consumer group %s %s", w->id, wc->group,
                ng == NULL ? "removed by the reload" : "changed topics; rejoining");
        wc->paused = 1;
        sy_kafka_consumer_destroy(wc->consumer);
        wc->consumer = NULL;
        w->retired = sy_realloc(w->retired, (w->nretired + 1) * sizeof(*w->retired));
        w->retired[w->nretired++] = wc;
    }
    w->nconsumers = kept;
    w->consumers = sy_realloc(w->consumers, (w->nconsumers + new_app->ngroups + 1) * sizeof(*w->consumers));
    for (size_t i = 0; i < new_app->ngroups; ++i) {
        const sy_app_group_t *g = &new_app->groups[i];
        size_t j = 0;
        while (j < w->nconsumers && strcmp(w->consumers[j]->group, g->group) != 0)
            ++j;
        if (j < w->nconsumers) continue;
        sy_worker_consumer_t *wc = consumer_start(w, g, errbuf, sizeof(errbuf));
        if (wc == NULL) {
            sy_error("kafka", "worker %zu: cannot start consumer group %s: %s", w->id, g->group, errbuf);
            continue;
        }
        w->consumers[w->nconsumers++] = wc;
    }
}

void sy_lua_kafka_worker_pause(sy_worker_t *w)
{
    for (size_t i = 0; i < w->nconsumers; ++i)
        w->consumers[i]->paused = 1;
}

void sy_lua_kafka_worker_stop(sy_worker_t *w)
{
    sy_lua_kafka_worker_pause(w);
    /* answer every waiting emit first, so the handlers waiting on them can finish and commit */
    if (w->producer != NULL) sy_kafka_producer_flush(w->producer, 2000);
    sy_lua_rpc_worker_stop(w);
    /* every worker commits before any leaves its groups: a member that leaves starts a rebalance, and during a
     * rebalance the coordinator refuses the others' commits (bounded wait: a worker that failed to start, or a
     * broker that is down, must not hold the exit) */
    for (size_t i = 0; i < w->nconsumers; ++i)
        sy_kafka_consumer_commit(w->consumers[i]->consumer);
    atomic_fetch_add(&w->host->consumers_committed, 1);
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        h2o_evloop_run(w->loop, 10);
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while (atomic_load(&w->host->consumers_committed) < atomic_load(&w->host->workers_ready) &&
             (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 < 2000);
    for (size_t i = 0; i < w->nconsumers; ++i) {
        sy_kafka_consumer_destroy(w->consumers[i]->consumer);
        w->consumers[i]->consumer = NULL; /* handlers finishing later must not touch it */
    }
    if (w->producer != NULL) {
        sy_kafka_producer_t *p = w->producer;
        w->producer = NULL; /* emits from here on fail at once instead of queueing on a dying producer */
        sy_kafka_producer_destroy(p);
    }
}

void sy_lua_kafka_worker_dispose(sy_worker_t *w)
{
    for (size_t i = 0; i < w->nconsumers; ++i) {
        free(w->consumers[i]->group);
        free(w->consumers[i]);
    }
    free(w->consumers);
    w->consumers = NULL;
    w->nconsumers = 0;
    for (size_t i = 0; i < w->nretired; ++i) {
        free(w->retired[i]->group);
        free(w->retired[i]);
    }
    free(w->retired);
    w->retired = NULL;
    w->nretired = 0;
}
