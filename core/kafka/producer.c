/*
 * The producer: one idempotent librdkafka producer per event loop. Messages are copied into librdkafka at once;
 * their delivery reports come back through the main queue's io event and are served on the loop, where each
 * message's callback runs exactly once. It never blocks the loop: a full queue is reported to the caller as
 * backpressure. It does not batch or retry on its own (librdkafka does both) and keeps no copy of a payload.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "common/log.h"
#include "common/mem.h"
#include "kafka/internal.h"

/* what travels with a message as its opaque, when the caller wants a report */
typedef struct st_delivery_t {
    sy_kafka_delivery_cb cb;
    void *cookie;
} delivery_t;

struct st_sy_kafka_producer_t {
    sy_kafka_cluster_t *cluster;
    h2o_loop_t *loop;
    rd_kafka_t *rk;
    sy_kafka_watch_t watch;
    int message_timeout_ms;
    /* topic handles, created on first use (those with their own codec at creation); a router has few topics, so a
     * linear search is cheaper than hashing */
    rd_kafka_topic_t **topics;
    size_t ntopics;
    size_t outstanding; /* messages queued with a callback and not yet reported */
    sy_kafka_errlog_t errlog;
};

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
    sy_kafka_producer_t *p = opaque;
    delivery_t *d = msg->_private;
    if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR)
        sy_kafka_errlog_reset(&p->errlog); /* working again: the next outage is news */
    if (d == NULL) return;
    --p->outstanding;
    sy_kafka_delivery_cb cb = d->cb;
    void *cookie = d->cookie;
    free(d);
    if (msg->err != RD_KAFKA_RESP_ERR_NO_ERROR)
        cb(cookie, msg->err, msg->partition, -1);
    else
        cb(cookie, RD_KAFKA_RESP_ERR_NO_ERROR, msg->partition, msg->offset);
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    sy_kafka_producer_t *p = opaque;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char fatal[512];
        rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, fatal, sizeof(fatal));
        sy_error("kafka", "producer %s: fatal error, no more messages can be produced: %s (%s)", rd_kafka_name(rk),
                 fatal, rd_kafka_err2name(orig));
        return;
    }
    sy_kafka_errlog(&p->errlog, SY_LOG_WARN, rd_kafka_name(rk), (rd_kafka_resp_err_t)err, reason);
}

static void on_ready(sy_kafka_watch_t *watch)
{
    sy_kafka_producer_t *p = H2O_STRUCT_FROM_MEMBER(sy_kafka_producer_t, watch, watch);
    /* serves everything queued: delivery reports and errors */
    rd_kafka_poll(p->rk, 0);
}

static rd_kafka_topic_t *topic_new(sy_kafka_producer_t *p, const char *name, const char *compression, char *errbuf,
                                   size_t errbuf_size)
{
    rd_kafka_topic_conf_t *tconf = NULL;
    rd_kafka_topic_t *rkt;
    char err[256];

    if (compression != NULL) {
        tconf = rd_kafka_topic_conf_new();
        if (rd_kafka_topic_conf_set(tconf, "compression.codec", compression, err, sizeof(err)) != RD_KAFKA_CONF_OK) {
            snprintf(errbuf, errbuf_size, "kafka topic %s: compression %s: %s", name, compression, err);
            rd_kafka_topic_conf_destroy(tconf);
            return NULL;
        }
    }
    /* takes tconf in every case */
    if ((rkt = rd_kafka_topic_new(p->rk, name, tconf)) == NULL) {
        snprintf(errbuf, errbuf_size, "kafka topic %s: %s", name, rd_kafka_err2str(rd_kafka_last_error()));
        return NULL;
    }
    p->topics = sy_realloc(p->topics, (p->ntopics + 1) * sizeof(*p->topics));
    p->topics[p->ntopics++] = rkt;
    return rkt;
}

static rd_kafka_topic_t *topic_get(sy_kafka_producer_t *p, const char *name)
{
    char errbuf[256];
    rd_kafka_topic_t *rkt;
    for (size_t i = 0; i != p->ntopics; ++i)
        if (strcmp(rd_kafka_topic_name(p->topics[i]), name) == 0) return p->topics[i];
    if ((rkt = topic_new(p, name, NULL, errbuf, sizeof(errbuf))) == NULL) sy_warn("kafka", "%s", errbuf);
    return rkt;
}

sy_kafka_producer_t *sy_kafka_producer_create(sy_kafka_cluster_t *cluster, h2o_loop_t *loop,
                                              const sy_kafka_producer_config_t *cfg, char *errbuf, size_t errbuf_size)
{
    sy_kafka_producer_t *p = sy_calloc(1, sizeof(*p));
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char err[512];
    int ok = 0;

    p->cluster = cluster;
    p->loop = loop;
    p->message_timeout_ms = cfg->message_timeout_ms > 0 ? cfg->message_timeout_ms : 5000;

    if (sy_kafka_conf_set(conf, "enable.idempotence", "true", errbuf, errbuf_size) != 0 ||
        sy_kafka_conf_set(conf, "acks", "all", errbuf, errbuf_size) != 0 ||
        sy_kafka_conf_set_int(conf, "linger.ms", cfg->linger_ms > 0 ? cfg->linger_ms : 1, errbuf, errbuf_size) != 0 ||
        (cfg->batch_size > 0 && sy_kafka_conf_set_int(conf, "batch.size", cfg->batch_size, errbuf, errbuf_size) != 0) ||
        sy_kafka_conf_set_int(conf, "message.timeout.ms", p->message_timeout_ms, errbuf, errbuf_size) != 0 ||
        (cfg->queue_max_messages > 0 && sy_kafka_conf_set_int(conf, "queue.buffering.max.messages",
                                                              cfg->queue_max_messages, errbuf, errbuf_size) != 0) ||
        sy_kafka_conf_set(conf, "compression.codec",
                          cfg->default_compression != NULL ? cfg->default_compression : "none", errbuf,
                          errbuf_size) != 0)
        goto Exit;
    /* the user's --kafka properties come last, so that they can override any of the above */
    if (sy_kafka_cluster_apply_props(cluster, conf, errbuf, errbuf_size) != 0) goto Exit;
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_conf_set_opaque(conf, p);

    if ((p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err))) == NULL) {
        snprintf(errbuf, errbuf_size, "kafka producer: %s", err);
        goto Exit;
    }
    conf = NULL;
    if (sy_kafka_watch_init(&p->watch, loop, rd_kafka_queue_get_main(p->rk), on_ready, errbuf, errbuf_size) != 0)
        goto Exit;
    for (size_t i = 0; i != cfg->ntopics; ++i)
        if (topic_new(p, cfg->topics[i].name, cfg->topics[i].compression, errbuf, errbuf_size) == NULL) goto Exit;
    on_ready(&p->watch);
    ok = 1;

Exit:
    if (conf != NULL) rd_kafka_conf_destroy(conf);
    if (!ok) {
        sy_kafka_producer_destroy(p);
        p = NULL;
    }
    return p;
}

rd_kafka_resp_err_t sy_kafka_produce(sy_kafka_producer_t *p, const char *topic, int32_t partition, const void *key,
                                     size_t klen, const void *value, size_t vlen, const sy_kafka_header_t *headers,
                                     size_t nheaders, sy_kafka_delivery_cb cb, void *cookie)
{
    rd_kafka_topic_t *rkt;
    rd_kafka_headers_t *hdrs = NULL;
    delivery_t *d = NULL;
    rd_kafka_resp_err_t err;

    if ((rkt = topic_get(p, topic)) == NULL) return RD_KAFKA_RESP_ERR__INVALID_ARG;
    if (nheaders != 0) {
        hdrs = rd_kafka_headers_new(nheaders);
        for (size_t i = 0; i != nheaders; ++i)
            rd_kafka_header_add(hdrs, headers[i].name, -1, headers[i].value,
                                headers[i].value != NULL ? (ssize_t)headers[i].value_len : 0);
    }
    if (cb != NULL) {
        d = sy_malloc(sizeof(*d));
        d->cb = cb;
        d->cookie = cookie;
    }
    /* the RD_KAFKA_V_ macros do not parenthesize their arguments */
    size_t key_len = key != NULL ? klen : 0, value_len = value != NULL ? vlen : 0;
    err = rd_kafka_producev(p->rk, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_PARTITION(partition),
                            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_KEY(key, key_len),
                            RD_KAFKA_V_VALUE((void *)value, value_len), RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE(d),
                            RD_KAFKA_V_END);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        /* on failure librdkafka keeps nothing, not even the headers */
        if (hdrs != NULL) rd_kafka_headers_destroy(hdrs);
        free(d);
        return err;
    }
    if (d != NULL) ++p->outstanding;
    return RD_KAFKA_RESP_ERR_NO_ERROR;
}

size_t sy_kafka_producer_outstanding(sy_kafka_producer_t *p)
{
    return p->outstanding;
}

int sy_kafka_producer_flush(sy_kafka_producer_t *p, int timeout_ms)
{
    /* rd_kafka_flush serves the main queue itself, so delivery callbacks run inside it */
    return rd_kafka_flush(p->rk, timeout_ms) == RD_KAFKA_RESP_ERR_NO_ERROR ? 0 : -1;
}

void sy_kafka_producer_destroy(sy_kafka_producer_t *p)
{
    if (p == NULL) return;
    if (p->rk != NULL) {
        if (rd_kafka_flush(p->rk, p->message_timeout_ms) != RD_KAFKA_RESP_ERR_NO_ERROR) {
            sy_warn("kafka", "producer %s: %d message(s) still undelivered at shutdown, purging them",
                    rd_kafka_name(p->rk), rd_kafka_outq_len(p->rk));
            /* purged messages (queued or in flight) get their delivery report at once, with a purge error */
            rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
            rd_kafka_flush(p->rk, 5000);
        }
        if (p->outstanding != 0)
            sy_error("kafka", "producer %s: %zu delivery report(s) never arrived", rd_kafka_name(p->rk),
                     p->outstanding);
    }
    sy_kafka_watch_dispose(&p->watch);
    for (size_t i = 0; i != p->ntopics; ++i)
        rd_kafka_topic_destroy(p->topics[i]);
    free(p->topics);
    if (p->rk != NULL) rd_kafka_destroy(p->rk);
    free(p);
}
