/*
 * The admin listener; see admin.h. Worker state is read through what each worker publishes (an atomic ready flag and
 * a JSON summary under its state mutex) and through the metric registries, which are thread-safe by design.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "common/log.h"
#include "common/mem.h"
#include "http/server.h"
#include "lua/admin.h"
#include "lua/worker.h"

struct st_sy_admin_t {
    sy_host_t *host;
    sy_http_server_t server;
    sy_http_worker_t http;
    h2o_loop_t *loop;
    pthread_t thread;
    atomic_int stop;
    int fd;
};

static void send_json(h2o_req_t *req, int status, const char *body)
{
    const char *headers[] = {"content-type", "application/json", "cache-control", "no-store"};
    sy_http_send(req, status, body, strlen(body), headers, 2);
}

static int readiness(sy_host_t *host, char *reason, size_t size)
{
    if (host->workers == NULL || atomic_load(&host->workers_ready) < (int)host->nworkers) {
        snprintf(reason, size, "workers are starting");
        return 0;
    }
    for (size_t i = 0; i < host->nworkers; ++i) {
        sy_worker_t *w = host->workers[i];
        if (!atomic_load(&w->ready)) {
            pthread_mutex_lock(&w->state_mutex);
            snprintf(reason, size, "%s", w->ready_reason[0] ? w->ready_reason : "worker starting");
            pthread_mutex_unlock(&w->state_mutex);
            return 0;
        }
    }
    return 1;
}

static void json_string(char *dst, size_t size, const char *s)
{
    dst[0] = '"';
    size_t n = sy_http_json_escape(dst + 1, size - 2, s != NULL ? s : "");
    dst[n + 1] = '"';
    dst[n + 2] = '\0';
}

static void send_status(sy_admin_t *admin, h2o_req_t *req)
{
    sy_host_t *host = admin->host;
    size_t cap = 8192 + host->nworkers * 4096, off = 0;
    char *buf = sy_malloc(cap), routes[1100], err[1100], boot[2100];
    char reason[200];
    int ready = readiness(host, reason, sizeof(reason));

    pthread_mutex_lock(&host->status_mutex);
    json_string(err, sizeof(err), host->last_reload_error[0] ? host->last_reload_error : NULL);
    double loaded_at = host->routes_loaded_at;
    pthread_mutex_unlock(&host->status_mutex);
    json_string(routes, sizeof(routes), host->opts.routes_path);
    json_string(boot, sizeof(boot), host->cluster != NULL ? sy_kafka_cluster_bootstrap(host->cluster) : "");
    off += (size_t)snprintf(buf + off, cap - off,
                            "{\"version\":\"%s\",\"routes_file\":%s,\"routes_loaded_at\":%.3f,\"last_reload_error\":%s,"
                            "\"ready\":%s,\"kafka\":{\"bootstrap\":%s,\"embedded\":%s},\"workers\":[",
                            SY_VERSION, routes, loaded_at, host->last_reload_error[0] ? err : "null",
                            ready ? "true" : "false", boot, host->opts.brokers == NULL ? "true" : "false");
    for (size_t i = 0; i < host->nworkers && host->workers != NULL; ++i) {
        sy_worker_t *w = host->workers[i];
        pthread_mutex_lock(&w->state_mutex);
        const char *state = w->state_json != NULL ? w->state_json : "null";
        if (off + strlen(state) + 8 < cap) off += (size_t)snprintf(buf + off, cap - off, "%s%s", i ? "," : "", state);
        pthread_mutex_unlock(&w->state_mutex);
    }
    snprintf(buf + off, cap - off, "]}");
    send_json(req, 200, buf);
    free(buf);
}

static void send_metrics(sy_admin_t *admin, h2o_req_t *req)
{
    sy_host_t *host = admin->host;
    size_t n = host->nworkers, inflight = 0, len;
    sy_metrics_t **regs = sy_calloc(n + 1, sizeof(*regs));
    regs[0] = host->metrics;
    for (size_t i = 0; i < n; ++i) {
        regs[i + 1] = host->workers[i]->metrics;
        inflight += host->workers[i]->inflight; /* a racy read of a size_t: a gauge, good enough */
    }
    sy_metrics_set(host->metrics, "switchyard_workers", "", (double)n);
    sy_metrics_set(host->metrics, "switchyard_inflight_handlers", "", (double)inflight);
    char *text = sy_metrics_render(regs, n + 1, &len);
    const char *headers[] = {"content-type", "text/plain; version=0.0.4; charset=utf-8"};
    sy_http_send(req, 200, text, len, headers, 1);
    free(text);
    free(regs);
}

/* Fault injection into the embedded broker (--fault-injection only), for tests of broker trouble:
 *   POST /faults/brokers/<id>/down | /up         take a broker down (connections and listener) or back up
 *   POST /faults/brokers/<id>/rtt/<ms>           delay every answer of a broker
 *   POST /faults/produce-errors/<code>/<count>   fail the next <count> produce requests with Kafka error <code> */
static void handle_fault(sy_admin_t *admin, h2o_req_t *req)
{
    h2o_iovec_t path = req->path_normalized;
    rd_kafka_mock_cluster_t *mock = admin->host->cluster ? sy_kafka_cluster_mock(admin->host->cluster) : NULL;
    char buf[96], what[8], tail;
    int id, a, b;
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (!admin->host->fault_injection || mock == NULL) {
        sy_http_send_error(req, 403, "fault injection needs --fault-injection and the embedded broker", NULL, NULL);
        return;
    }
    snprintf(buf, sizeof(buf), "%.*s", (int)(path.len < 95 ? path.len : 95), path.base);
    if (sscanf(buf, "/faults/brokers/%d/rtt/%d%c", &id, &a, &tail) == 2 && a >= 0 && a <= 60000) {
        err = rd_kafka_mock_broker_set_rtt(mock, id, a);
        sy_warn("admin", "fault injection: embedded broker %d answers after %d ms", id, a);
    } else if (sscanf(buf, "/faults/produce-errors/%d/%d%c", &a, &b, &tail) == 2 && a > 0 && a < 1000 && b > 0 &&
               b <= 10000) {
        rd_kafka_resp_err_t *errs = sy_malloc((size_t)b * sizeof(*errs));
        for (int i = 0; i < b; ++i)
            errs[i] = (rd_kafka_resp_err_t)a;
        rd_kafka_mock_push_request_errors_array(mock, 0 /* Produce */, (size_t)b, errs);
        free(errs);
        sy_warn("admin", "fault injection: the next %d produce request(s) fail with %s", b,
                rd_kafka_err2name((rd_kafka_resp_err_t)a));
    } else if (sscanf(buf, "/faults/brokers/%d/%7s", &id, what) == 2 &&
               (strcmp(what, "down") == 0 || strcmp(what, "up") == 0)) {
        err =
            strcmp(what, "down") == 0 ? rd_kafka_mock_broker_set_down(mock, id) : rd_kafka_mock_broker_set_up(mock, id);
        sy_warn("admin", "fault injection: embedded broker %d set %s", id, what);
    } else {
        sy_http_send_error(req, 404,
                           "expected /faults/brokers/<id>/down|up, /faults/brokers/<id>/rtt/<ms> or "
                           "/faults/produce-errors/<code>/<count>",
                           NULL, NULL);
        return;
    }
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        sy_http_send_error(req, 400, rd_kafka_err2str(err), NULL, NULL);
        return;
    }
    send_json(req, 200, "{\"ok\":true}");
}

static int on_admin_request(void *cookie, h2o_req_t *req)
{
    sy_admin_t *admin = cookie;
    h2o_iovec_t path = req->path_normalized;
    if (h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST")) && path.len > 8 &&
        memcmp(path.base, "/faults/", 8) == 0) {
        handle_fault(admin, req);
        return 0;
    }
    if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) &&
        !h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"))) {
        sy_http_send_error(req, 405, "the admin listener is read-only", "allow", "GET, HEAD");
    } else if (h2o_memis(path.base, path.len, H2O_STRLIT("/healthz"))) {
        send_json(req, 200, "{\"status\":\"ok\"}");
    } else if (h2o_memis(path.base, path.len, H2O_STRLIT("/readyz"))) {
        char reason[200], body[400], esc[300];
        if (readiness(admin->host, reason, sizeof(reason))) {
            send_json(req, 200, "{\"ready\":true}");
        } else {
            json_string(esc, sizeof(esc), reason);
            snprintf(body, sizeof(body), "{\"ready\":false,\"reason\":%s}", esc);
            send_json(req, 503, body);
        }
    } else if (h2o_memis(path.base, path.len, H2O_STRLIT("/metrics"))) {
        send_metrics(admin, req);
    } else if (h2o_memis(path.base, path.len, H2O_STRLIT("/status"))) {
        send_status(admin, req);
    } else {
        sy_http_send_error(req, 404, "admin paths: /healthz /readyz /metrics /status", NULL, NULL);
    }
    return 0;
}

static void *admin_main(void *arg)
{
    sy_admin_t *admin = arg;
    while (!atomic_load(&admin->stop))
        h2o_evloop_run(admin->loop, 100);
    return NULL;
}

sy_admin_t *sy_admin_start(sy_host_t *host, char *errbuf, size_t errbuf_size)
{
    int fd = sy_http_listen_exclusive(host->admin_listen, errbuf, errbuf_size);
    if (fd < 0) return NULL;
    sy_admin_t *admin = sy_calloc(1, sizeof(*admin));
    admin->host = host;
    admin->fd = fd;
    sy_http_config_t cfg = {.max_body = 1024, .io_timeout_ms = 10000};
    sy_http_server_init(&admin->server, &cfg, on_admin_request);
    admin->loop = h2o_evloop_create();
    sy_http_worker_init(&admin->http, &admin->server, admin->loop, fd, admin);
    if (pthread_create(&admin->thread, NULL, admin_main, admin) != 0) {
        snprintf(errbuf, errbuf_size, "cannot start the admin thread");
        sy_http_worker_dispose(&admin->http);
        h2o_evloop_destroy(admin->loop);
        sy_http_server_dispose(&admin->server);
        free(admin);
        return NULL;
    }
    return admin;
}

void sy_admin_stop(sy_admin_t *admin)
{
    if (admin == NULL) return;
    atomic_store(&admin->stop, 1);
    pthread_join(admin->thread, NULL);
    sy_http_worker_stop_accepting(&admin->http);
    for (int i = 0; i < 10; ++i)
        h2o_evloop_run(admin->loop, 0);
    sy_http_worker_dispose(&admin->http);
    h2o_evloop_destroy(admin->loop);
    sy_http_server_dispose(&admin->server);
    free(admin);
}
