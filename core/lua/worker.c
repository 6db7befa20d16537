/*
 * Workers: one thread per loop, each with its own h2o context and listener, its own Lua app, its own Kafka
 * producer and one consumer per consumer group the routes file names. See worker.h.
 * Start-up order per worker: loop, app (routes), producer, request-reply, consumers, listener. Shutdown runs it
 * backwards after a drain: stop accepting, let in-flight handlers finish (up to the shutdown timeout), then
 * consumers (offsets committed), request-reply, producer (flushed), app, loop.
 * It does not parse options or handle signals: main.c does.
 */
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "common/log.h"
#include "common/mem.h"
#include "lua/http.h"
#include "lua/worker.h"
#include "lua/kafka.h"
#include "lua/telemetry.h"
#include "kafka/rpc.h"

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void sy_worker_timer_link(sy_worker_t *w, uint64_t ms, h2o_timeout_entry_t *entry)
{
    sy_worker_timeout_t *t = NULL;
    for (size_t i = 0; i < w->ntimeouts; ++i) {
        if (w->timeouts[i]->ms == ms) {
            t = w->timeouts[i];
            break;
        }
    }
    if (t == NULL) {
        /* h2o_timeout_t registers its address with the loop, so each one is allocated on its own */
        t = sy_calloc(1, sizeof(*t));
        t->ms = ms;
        h2o_timeout_init(w->loop, &t->timeout, ms);
        w->timeouts = sy_realloc(w->timeouts, (w->ntimeouts + 1) * sizeof(*w->timeouts));
        w->timeouts[w->ntimeouts++] = t;
    }
    h2o_timeout_link(w->loop, &t->timeout, entry);
}

static int worker_setup(sy_worker_t *w)
{
    sy_host_t *host = w->host;
    char errbuf[512];

    w->loop = h2o_evloop_create();
    w->app = sy_app_create(host->opts.routes_path, host->opts.scripts_dir, w, errbuf, sizeof(errbuf));
    if (w->app == NULL) {
        sy_error("worker", "worker %zu cannot load %s: %s", w->id, host->opts.routes_path, errbuf);
        return -1;
    }
    if (sy_lua_kafka_worker_start(w, errbuf, sizeof(errbuf)) != 0) {
        sy_error("worker", "worker %zu: kafka: %s", w->id, errbuf);
        return -1;
    }
    int fd = sy_http_listen(host->opts.listen, errbuf, sizeof(errbuf));
    if (fd < 0) {
        sy_error("worker", "worker %zu: %s", w->id, errbuf);
        return -1;
    }
    sy_http_worker_init(&w->http, &host->http, w->loop, fd, w);
    return 0;
}

static int context_idle(h2o_context_t *ctx)
{
    return ctx->loop == NULL || (h2o_linklist_is_empty(&ctx->zero_timeout._entries) &&
                                 h2o_linklist_is_empty(&ctx->one_sec_timeout._entries) &&
                                 h2o_linklist_is_empty(&ctx->http1.req_timeout._entries) &&
                                 h2o_linklist_is_empty(&ctx->http2.idle_timeout._entries));
}

static void worker_teardown(sy_worker_t *w)
{
    if (w->loop == NULL) return;
    sy_http_worker_stop_accepting(&w->http);
    /* h2o 2.2.5 has no way to close idle HTTP/1 keep-alive connections at shutdown (request_shutdown only marks
     * the context): make its idle timeout expire at once, so that h2o closes them itself on the next loop turns */
    if (w->http.ctx.loop != NULL) w->http.ctx.http1.req_timeout.timeout = 0;
    sy_telemetry_flush(w);
    sy_lua_kafka_worker_stop(w);
    sy_telemetry_flush(w); /* records of requests that finished during the stop: counted as dropped, freed */
    if (w->app != NULL) sy_app_force_close(w->app);
    w->app = NULL;
    sy_lua_kafka_worker_dispose(w);
    /* let h2o finish closing connections (it frees them on the loop) */
    for (int i = 0; i < 10; ++i)
        h2o_evloop_run(w->loop, 0);
    /* h2o asserts that nothing waits on the context's timeouts when it is disposed: connections still closing
     * (or a client that keeps one open) must be given the time to go, boundedly */
    uint64_t until = now_ms() + 2000;
    while (!context_idle(&w->http.ctx) && now_ms() < until)
        h2o_evloop_run(w->loop, 10);
    if (!context_idle(&w->http.ctx)) {
        sy_warn("worker", "worker %zu: connections still open at exit; their memory is left to the OS", w->id);
        w->loop = NULL;
        return;
    }
    if (w->http.ctx.loop != NULL) h2o_context_dispose(&w->http.ctx);
    for (size_t i = 0; i < w->ntimeouts; ++i) {
        h2o_timeout_dispose(w->loop, &w->timeouts[i]->timeout);
        free(w->timeouts[i]);
    }
    free(w->timeouts);
    h2o_evloop_destroy(w->loop);
    w->loop = NULL;
}

typedef struct {
    sy_worker_t *w;
    const char *group;
} lag_ctx_t;

static void on_lag(const char *topic, int32_t partition, int64_t lag, void *cookie)
{
    lag_ctx_t *ctx = cookie;
    char labels[512], g[128], t[256];
    sy_metrics_escape(g, sizeof(g), ctx->group);
    sy_metrics_escape(t, sizeof(t), topic);
    snprintf(labels, sizeof(labels), "group=\"%s\",topic=\"%s\",partition=\"%d\"", g, t, (int)partition);
    sy_metrics_set(ctx->w->metrics, "switchyard_kafka_consumer_lag", labels, (double)lag);
}

/* Readiness and a JSON summary for the admin thread, computed on the loop that owns the handles; also the gauges
 * only this loop can read (consumer lag, late replies). */
static void worker_refresh_state(sy_worker_t *w)
{
    char buf[4096], reason[160] = "";
    size_t off = 0;
    int ready = w->app != NULL;
    off += (size_t)snprintf(buf + off, sizeof(buf) - off, "{\"id\":%zu,\"inflight\":%zu,\"consumers\":[", w->id,
                            w->inflight);
    for (size_t i = 0; i < w->nconsumers; ++i) {
        int assigned = w->consumers[i]->consumer != NULL ? sy_kafka_consumer_assigned(w->consumers[i]->consumer) : 0;
        if (off < sizeof(buf))
            off += (size_t)snprintf(buf + off, sizeof(buf) - off, "%s{\"group\":\"%s\",\"assigned\":%d}", i ? "," : "",
                                    w->consumers[i]->group, assigned);
        if (assigned == 0 && ready) {
            ready = 0;
            snprintf(reason, sizeof(reason), "worker %zu: consumer group %s has no partition assigned yet", w->id,
                     w->consumers[i]->group);
        }
    }
    for (size_t i = 0; i < w->nconsumers; ++i) {
        if (w->consumers[i]->consumer == NULL) continue;
        lag_ctx_t ctx = {w, w->consumers[i]->group};
        sy_kafka_consumer_lag(w->consumers[i]->consumer, on_lag, &ctx);
    }
    if (w->rpc != NULL) {
        sy_kafka_rpc_stats_t st;
        sy_kafka_rpc_stats(w->rpc, &st);
        /* a counter kept by the request-reply instance: published as its running total (summed over workers) */
        sy_metrics_set(w->metrics, "switchyard_kafka_late_replies_total", "", (double)st.late);
    }
    int replies = w->rpc == NULL || sy_kafka_rpc_ready(w->rpc);
    if (!replies && ready) {
        ready = 0;
        snprintf(reason, sizeof(reason), "worker %zu: no reply partition owned yet", w->id);
    }
    if (off < sizeof(buf))
        snprintf(buf + off, sizeof(buf) - off, "],\"reply_partitions_owned\":%s,\"ready\":%s}",
                 replies ? "true" : "false", ready ? "true" : "false");
    pthread_mutex_lock(&w->state_mutex);
    free(w->state_json);
    w->state_json = sy_strdup(buf);
    snprintf(w->ready_reason, sizeof(w->ready_reason), "%s", reason);
    pthread_mutex_unlock(&w->state_mutex);
    atomic_store(&w->ready, ready);
}

/* Called on every loop turn: takes part in a reload that main started. */
static void worker_poll_reload(sy_worker_t *w)
{
    sy_host_t *host = w->host;
    unsigned seq = atomic_load(&host->reload_seq);
    if (seq != w->reload_seen) {
        char errbuf[512];
        w->reload_seen = seq;
        if (w->next_app != NULL) sy_app_release(w->next_app);
        w->next_app = sy_app_create(host->opts.routes_path, host->opts.scripts_dir, w, errbuf, sizeof(errbuf));
        if (w->next_app == NULL) {
            sy_error("worker", "worker %zu cannot reload %s: %s", w->id, host->opts.routes_path, errbuf);
            atomic_fetch_add(&host->reload_failed, 1);
        } else {
            atomic_fetch_add(&host->reload_prepared, 1);
        }
    }
    if (w->next_app != NULL && atomic_load(&host->reload_decided) == w->reload_seen) {
        sy_app_t *next = w->next_app;
        w->next_app = NULL;
        if (atomic_load(&host->reload_commit)) {
            sy_app_t *old = w->app;
            w->app = next;
            sy_lua_kafka_worker_update(w, old, next);
            sy_app_release(old); /* closed when its last coroutine ends */
        } else {
            sy_app_release(next);
        }
    }
}

int sy_host_reload(sy_host_t *host, uint64_t timeout_ms)
{
    atomic_store(&host->reload_prepared, 0);
    atomic_store(&host->reload_failed, 0);
    unsigned seq = atomic_fetch_add(&host->reload_seq, 1) + 1;
    uint64_t deadline = now_ms() + timeout_ms;
    while (atomic_load(&host->reload_prepared) + atomic_load(&host->reload_failed) < (int)host->nworkers &&
           now_ms() < deadline)
        usleep(2000);
    int commit = atomic_load(&host->reload_prepared) == (int)host->nworkers;
    atomic_store(&host->reload_commit, commit);
    atomic_store(&host->reload_decided, seq);
    return commit ? 0 : -1;
}

static void *worker_main(void *arg)
{
    sy_worker_t *w = arg;
    sy_host_t *host = w->host;

    if (worker_setup(w) != 0) {
        atomic_fetch_add(&host->workers_failed, 1);
        worker_teardown(w);
        return NULL;
    }
    atomic_fetch_add(&host->workers_ready, 1);
    sy_debug("worker", "worker %zu serving", w->id);

    /* h2o_evloop_run returns -1 on EINTR: loop on our own flag instead (platform-notes section 1) */
    while (!atomic_load(&host->stopping)) {
        h2o_evloop_run(w->loop, 50);
        worker_poll_reload(w);
        uint64_t now = now_ms();
        if (now - w->state_refreshed_ms >= 200) {
            w->state_refreshed_ms = now;
            worker_refresh_state(w);
        }
    }
    atomic_store(&w->ready, 0);
    if (w->next_app != NULL) {
        sy_app_release(w->next_app);
        w->next_app = NULL;
    }

    /* graceful drain: no new connections; in-flight handlers run to completion up to the deadline */
    sy_http_worker_stop_accepting(&w->http);
    /* keep-alive connections: idle ones close now, busy ones after their current response ("connection: close") */
    h2o_context_request_shutdown(&w->http.ctx);
    sy_lua_kafka_worker_pause(w);
    uint64_t deadline = now_ms() + host->opts.shutdown_timeout_ms;
    while (w->inflight != 0 && now_ms() < deadline && atomic_load(&host->stopping) < 2)
        h2o_evloop_run(w->loop, 10);
    if (w->inflight != 0)
        sy_warn("worker", "worker %zu: %zu handler(s) still running after the shutdown timeout", w->id, w->inflight);
    worker_teardown(w);
    return NULL;
}

int sy_host_start(sy_host_t *host)
{
    host->workers = sy_calloc(host->nworkers, sizeof(*host->workers));
    for (size_t i = 0; i < host->nworkers; ++i) {
        sy_worker_t *w = sy_calloc(1, sizeof(*w));
        w->host = host;
        w->id = i;
        w->metrics = sy_metrics_create();
        pthread_mutex_init(&w->state_mutex, NULL);
        host->workers[i] = w;
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            sy_error("worker", "cannot start worker thread %zu", i);
            sy_metrics_destroy(w->metrics);
            free(w);
            host->workers[i] = NULL;
            atomic_fetch_add(&host->workers_failed, 1);
        }
    }
    while (atomic_load(&host->workers_ready) + atomic_load(&host->workers_failed) < (int)host->nworkers)
        usleep(1000);
    return atomic_load(&host->workers_failed) == 0 ? 0 : -1;
}

void sy_host_stop(sy_host_t *host)
{
    if (atomic_load(&host->stopping) == 0) atomic_store(&host->stopping, 1);
    for (size_t i = 0; i < host->nworkers; ++i) {
        if (host->workers[i] == NULL) continue;
        pthread_join(host->workers[i]->thread, NULL);
        sy_metrics_destroy(host->workers[i]->metrics);
        pthread_mutex_destroy(&host->workers[i]->state_mutex);
        free(host->workers[i]->state_json);
        free(host->workers[i]->telemetry);
        free(host->workers[i]);
    }
    free(host->workers);
    host->workers = NULL;
}
