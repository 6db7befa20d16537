/* Request telemetry batching; see telemetry.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include "common/log.h"
#include "common/mem.h"
#include "lua/telemetry.h"
#include "lua/worker.h"

static void on_delivered(void *cookie, rd_kafka_resp_err_t err, int32_t partition, int64_t offset)
{
    sy_worker_t *w = cookie;
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        sy_metrics_add(w->metrics, "switchyard_telemetry_records_total", "outcome=\"failed\"", 1);
        sy_debug("telemetry", "a record was not delivered: %s", rd_kafka_err2str(err));
    } else {
        sy_metrics_add(w->metrics, "switchyard_telemetry_records_total", "outcome=\"delivered\"", 1);
    }
}

void sy_telemetry_flush(sy_worker_t *w)
{
    sy_app_t *app = w->app;
    if (h2o_timeout_is_linked(&w->telemetry_timer)) h2o_timeout_unlink(&w->telemetry_timer);
    /* one key per batch: the whole batch goes to one partition, so it travels as one compressed message set */
    static __thread uint64_t batches;
    char key[48];
    int klen = snprintf(key, sizeof(key), "w%zu-%llu", w->id, (unsigned long long)++batches);
    for (size_t i = 0; i < w->ntelemetry; ++i) {
        rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR__STATE;
        if (w->producer != NULL && app != NULL && app->telemetry_topic != NULL)
            err = sy_kafka_produce(w->producer, app->telemetry_topic, RD_KAFKA_PARTITION_UA, key, (size_t)klen,
                                   w->telemetry[i], strlen(w->telemetry[i]), NULL, 0, on_delivered, w);
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
            sy_metrics_add(w->metrics, "switchyard_telemetry_records_total", "outcome=\"dropped\"", 1);
        free(w->telemetry[i]);
    }
    w->ntelemetry = 0;
}

static void on_flush_timer(h2o_timeout_entry_t *entry)
{
    sy_telemetry_flush(H2O_STRUCT_FROM_MEMBER(sy_worker_t, telemetry_timer, entry));
}

void sy_telemetry_record(sy_worker_t *w, const char *route, const char *method, size_t method_len, int status,
                         size_t body_len, uint64_t duration_us, const char *request_id)
{
    sy_app_t *app = w->app;
    if (app == NULL || app->telemetry_topic == NULL || w->producer == NULL) return;
    char rec[512];
    struct timeval tv;
    gettimeofday(&tv, NULL);
    /* route comes from the routes file and method from the client: keep both to a safe character set */
    char m[17];
    size_t n = 0;
    for (size_t i = 0; i < method_len && n < sizeof(m) - 1; ++i)
        if ((method[i] >= 'A' && method[i] <= 'Z') || (method[i] >= 'a' && method[i] <= 'z')) m[n++] = method[i];
    m[n] = '\0';
    char r[200];
    n = 0;
    for (const char *p = route; *p != '\0' && n < sizeof(r) - 1; ++p)
        if (*p != '"' && *p != '\\' && (unsigned char)*p >= 0x20) r[n++] = *p;
    r[n] = '\0';
    int len = snprintf(rec, sizeof(rec),
                       "{\"route\":\"%s\",\"method\":\"%s\",\"status\":%d,\"bodyLength\":%zu,\"durationUs\":%llu,"
                       "\"requestId\":\"%s\",\"ts\":%lld%03d}",
                       r, m, status, body_len, (unsigned long long)duration_us, request_id ? request_id : "",
                       (long long)tv.tv_sec, (int)(tv.tv_usec / 1000));
    if (len < 0 || (size_t)len >= sizeof(rec)) return;
    int batch = app->telemetry_batch > 0 ? app->telemetry_batch : 10;
    w->telemetry = sy_realloc(w->telemetry, ((size_t)batch + w->ntelemetry + 1) * sizeof(char *));
    w->telemetry[w->ntelemetry++] = sy_strndup(rec, (size_t)len);
    if (w->ntelemetry >= (size_t)batch) {
        sy_telemetry_flush(w);
    } else if (!h2o_timeout_is_linked(&w->telemetry_timer)) {
        w->telemetry_timer.cb = on_flush_timer;
        sy_worker_timer_link(w, (uint64_t)(app->telemetry_flush_ms > 0 ? app->telemetry_flush_ms : 1000),
                             &w->telemetry_timer);
    }
}
