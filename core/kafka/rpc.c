/*
 * Request-reply in the NestJS wire format; see rpc.h. Pending requests live in a small hash keyed by the numeric
 * suffix of their correlation id, each with a timer; replies arrive on this instance's own consumer of the reply
 * topics, served on the loop through the consumer queue's io event (like consumer.c). Reply offsets are committed
 * automatically: a reply is never work to redo, only something to match.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include "h2o/timeout.h"
#include "common/log.h"
#include "common/mem.h"
#include "kafka/internal.h"
#include "kafka/rpc.h"

#define NBUCKETS 256
#define BATCH 256
#define TICK_MS 1000
#define MAX_HEADERS 64

typedef struct {
    char *name;
    int32_t *parts; /* owned partitions, ascending */
    size_t nparts;
} reply_topic_t;

/* Outlives the rpc for delivery reports that arrive after it is gone. */
typedef struct {
    sy_kafka_rpc_t *rpc; /* NULL once destroyed */
    size_t refcnt;
} anchor_t;

typedef struct {
    uint64_t ms;
    h2o_timeout_t timeout;
} duration_t;

typedef struct st_request_t {
    sy_kafka_rpc_t *rpc;
    uint64_t id;
    char correlation_id[48];
    reply_topic_t *reply_topic;
    sy_kafka_reply_cb cb;
    void *cookie;
    h2o_linklist_t link; /* in a bucket (sent) or in rpc->waiting (no partition owned yet) */
    h2o_timeout_entry_t timer;
    /* kept until sent */
    char *topic;
    char *key, *value;
    size_t klen, vlen;
    int has_key, has_value;
    sy_kafka_header_t *headers;
    size_t nheaders;
} request_t;

struct st_sy_kafka_rpc_t {
    sy_kafka_cluster_t *cluster;
    h2o_loop_t *loop;
    sy_kafka_producer_t *producer;
    rd_kafka_t *rk;
    sy_kafka_watch_t watch;
    reply_topic_t *topics;
    size_t ntopics;
    h2o_linklist_t buckets[NBUCKETS];
    h2o_linklist_t waiting;
    duration_t **durations;
    size_t ndurations;
    h2o_timeout_t zero_timeout;
    h2o_timeout_entry_t again;
    h2o_timeout_t tick_timeout;
    h2o_timeout_entry_t tick;
    anchor_t *anchor;
    char prefix[24];
    uint64_t next_id;
    sy_kafka_rpc_stats_t stats;
    sy_kafka_errlog_t errlog;
};

typedef struct {
    anchor_t *anchor;
    uint64_t id;
} delivery_t;

static void anchor_release(anchor_t *a)
{
    if (--a->refcnt == 0) free(a);
}

static void request_free(request_t *r)
{
    free(r->topic);
    free(r->key);
    free(r->value);
    for (size_t i = 0; i < r->nheaders; ++i) {
        free((void *)r->headers[i].name);
        free((void *)r->headers[i].value);
    }
    free(r->headers);
    free(r);
}

/* Unlinks r from wherever it waits and calls its callback once. */
static void complete(request_t *r, rd_kafka_resp_err_t err, const rd_kafka_message_t *reply)
{
    if (h2o_linklist_is_linked(&r->link)) h2o_linklist_unlink(&r->link);
    if (h2o_timeout_is_linked(&r->timer)) h2o_timeout_unlink(&r->timer);
    r->cb(r->cookie, err, reply);
    request_free(r);
}

static request_t *find(sy_kafka_rpc_t *rpc, const char *cid, size_t len)
{
    const char *dash = memrchr(cid, '-', len);
    if (dash == NULL) return NULL;
    uint64_t id = 0;
    for (const char *p = dash + 1; p < cid + len; ++p) {
        if (*p < '0' || *p > '9') return NULL;
        id = id * 10 + (uint64_t)(*p - '0');
    }
    h2o_linklist_t *bucket = &rpc->buckets[id % NBUCKETS];
    for (h2o_linklist_t *l = bucket->next; l != bucket; l = l->next) {
        request_t *r = H2O_STRUCT_FROM_MEMBER(request_t, link, l);
        if (r->id == id && strlen(r->correlation_id) == len && memcmp(r->correlation_id, cid, len) == 0) return r;
    }
    return NULL;
}

static request_t *find_by_id(sy_kafka_rpc_t *rpc, uint64_t id)
{
    h2o_linklist_t *bucket = &rpc->buckets[id % NBUCKETS];
    for (h2o_linklist_t *l = bucket->next; l != bucket; l = l->next) {
        request_t *r = H2O_STRUCT_FROM_MEMBER(request_t, link, l);
        if (r->id == id) return r;
    }
    return NULL;
}

static void on_delivered(void *cookie, rd_kafka_resp_err_t err, int32_t partition, int64_t offset)
{
    delivery_t *d = cookie;
    sy_kafka_rpc_t *rpc = d->anchor->rpc;
    if (rpc != NULL && err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        request_t *r = find_by_id(rpc, d->id);
        if (r != NULL) {
            ++rpc->stats.failed;
            complete(r, err, NULL);
        }
    }
    anchor_release(d->anchor);
    free(d);
}

/* Produces a request that has a reply partition to name. On failure completes it with the error. */
static rd_kafka_resp_err_t send_request(sy_kafka_rpc_t *rpc, request_t *r, int complete_on_error)
{
    sy_kafka_header_t hs[MAX_HEADERS + 3];
    char partition[16];
    size_t n = 0;
    snprintf(partition, sizeof(partition), "%" PRId32, r->reply_topic->parts[0]);
    for (size_t i = 0; i < r->nheaders; ++i)
        hs[n++] = r->headers[i];
    hs[n++] = (sy_kafka_header_t){"kafka_correlationId", r->correlation_id, strlen(r->correlation_id)};
    hs[n++] = (sy_kafka_header_t){"kafka_replyTopic", r->reply_topic->name, strlen(r->reply_topic->name)};
    hs[n++] = (sy_kafka_header_t){"kafka_replyPartition", partition, strlen(partition)};

    delivery_t *d = sy_malloc(sizeof(*d));
    d->anchor = rpc->anchor;
    d->id = r->id;
    ++rpc->anchor->refcnt;
    rd_kafka_resp_err_t err =
        sy_kafka_produce(rpc->producer, r->topic, RD_KAFKA_PARTITION_UA, r->has_key ? r->key : NULL, r->klen,
                         r->has_value ? r->value : NULL, r->vlen, hs, n, on_delivered, d);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        anchor_release(d->anchor);
        free(d);
        if (complete_on_error) {
            ++rpc->stats.failed;
            complete(r, err, NULL);
        }
        return err;
    }
    h2o_linklist_insert(&rpc->buckets[r->id % NBUCKETS], &r->link);
    return RD_KAFKA_RESP_ERR_NO_ERROR;
}

static void send_waiting(sy_kafka_rpc_t *rpc)
{
    h2o_linklist_t pending;
    h2o_linklist_init_anchor(&pending);
    h2o_linklist_insert_list(&pending, &rpc->waiting);
    while (!h2o_linklist_is_empty(&pending)) {
        request_t *r = H2O_STRUCT_FROM_MEMBER(request_t, link, pending.next);
        h2o_linklist_unlink(&r->link);
        if (r->reply_topic->nparts == 0)
            h2o_linklist_insert(&rpc->waiting, &r->link);
        else
            send_request(rpc, r, 1);
    }
}

static void on_timeout(h2o_timeout_entry_t *entry)
{
    request_t *r = H2O_STRUCT_FROM_MEMBER(request_t, timer, entry);
    ++r->rpc->stats.timeouts;
    complete(r, RD_KAFKA_RESP_ERR__TIMED_OUT, NULL);
}

static void on_reply(sy_kafka_rpc_t *rpc, rd_kafka_message_t *msg)
{
    size_t len;
    const char *cid = sy_kafka_header_get(msg, "kafka_correlationId", &len);
    request_t *r = cid != NULL ? find(rpc, cid, len) : NULL;
    if (r == NULL) {
        ++rpc->stats.late;
        sy_debug("kafka", "reply on %s [%d] at %lld matches no pending request (late or not ours)",
                 rd_kafka_topic_name(msg->rkt), (int)msg->partition, (long long)msg->offset);
        return;
    }
    ++rpc->stats.replies;
    complete(r, RD_KAFKA_RESP_ERR_NO_ERROR, msg);
}

static void serve(sy_kafka_rpc_t *rpc)
{
    size_t n;
    for (n = 0; n != BATCH; ++n) {
        rd_kafka_message_t *msg = rd_kafka_consumer_poll(rpc->rk, 0);
        if (msg == NULL) break;
        if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR)
            on_reply(rpc, msg);
        else if (msg->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            sy_kafka_errlog(&rpc->errlog, SY_LOG_WARN, "request-reply consumer", msg->err,
                            rd_kafka_message_errstr(msg));
        rd_kafka_message_destroy(msg);
    }
    if (n == BATCH && !h2o_timeout_is_linked(&rpc->again)) h2o_timeout_link(rpc->loop, &rpc->zero_timeout, &rpc->again);
}

static void on_ready(sy_kafka_watch_t *watch)
{
    serve(H2O_STRUCT_FROM_MEMBER(sy_kafka_rpc_t, watch, watch));
}

static void on_again(h2o_timeout_entry_t *entry)
{
    serve(H2O_STRUCT_FROM_MEMBER(sy_kafka_rpc_t, again, entry));
}

static void on_tick(h2o_timeout_entry_t *entry)
{
    sy_kafka_rpc_t *rpc = H2O_STRUCT_FROM_MEMBER(sy_kafka_rpc_t, tick, entry);
    h2o_timeout_link(rpc->loop, &rpc->tick_timeout, &rpc->tick);
    serve(rpc);
}

static reply_topic_t *find_topic(sy_kafka_rpc_t *rpc, const char *name)
{
    for (size_t i = 0; i < rpc->ntopics; ++i)
        if (strcmp(rpc->topics[i].name, name) == 0) return &rpc->topics[i];
    return NULL;
}

static int cmp_int32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *list, void *opaque)
{
    sy_kafka_rpc_t *rpc = opaque;
    for (size_t i = 0; i < rpc->ntopics; ++i)
        rpc->topics[i].nparts = 0;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        for (int i = 0; i < list->cnt; ++i) {
            reply_topic_t *t = find_topic(rpc, list->elems[i].topic);
            if (t == NULL) continue;
            t->parts = sy_realloc(t->parts, (t->nparts + 1) * sizeof(*t->parts));
            t->parts[t->nparts++] = list->elems[i].partition;
        }
        for (size_t i = 0; i < rpc->ntopics; ++i) {
            reply_topic_t *t = &rpc->topics[i];
            qsort(t->parts, t->nparts, sizeof(*t->parts), cmp_int32);
            sy_info("kafka", "request-reply: %s partition %d owned (%zu in all)", t->name,
                    t->nparts ? (int)t->parts[0] : -1, t->nparts);
        }
        rd_kafka_assign(rk, list);
        send_waiting(rpc);
    } else {
        if (err != RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS)
            sy_warn("kafka", "request-reply: rebalance failed: %s", rd_kafka_err2str(err));
        rd_kafka_assign(rk, NULL);
    }
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    sy_kafka_rpc_t *rpc = opaque;
    sy_kafka_errlog(&rpc->errlog, err == RD_KAFKA_RESP_ERR__FATAL ? SY_LOG_ERROR : SY_LOG_WARN,
                    "request-reply consumer", (rd_kafka_resp_err_t)err, reason);
}

sy_kafka_rpc_t *sy_kafka_rpc_create(sy_kafka_cluster_t *cluster, h2o_loop_t *loop, sy_kafka_producer_t *producer,
                                    const char *const *reply_topics, size_t ntopics, const sy_kafka_rpc_config_t *cfg,
                                    char *errbuf, size_t errbuf_size)
{
    sy_kafka_rpc_t *rpc = sy_calloc(1, sizeof(*rpc));
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_topic_partition_list_t *subscription = NULL;
    char errstr[512];
    int ok = 0;
    uint64_t rnd = 0;

    rpc->cluster = cluster;
    rpc->loop = loop;
    rpc->producer = producer;
    rpc->anchor = sy_calloc(1, sizeof(*rpc->anchor));
    rpc->anchor->rpc = rpc;
    rpc->anchor->refcnt = 1;
    for (size_t i = 0; i < NBUCKETS; ++i)
        h2o_linklist_init_anchor(&rpc->buckets[i]);
    h2o_linklist_init_anchor(&rpc->waiting);
    h2o_timeout_init(loop, &rpc->zero_timeout, 0);
    h2o_timeout_init(loop, &rpc->tick_timeout, TICK_MS);
    rpc->again.cb = on_again;
    rpc->tick.cb = on_tick;
    /* correlation ids unique across processes and restarts: random prefix, then a counter */
    if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd)) rnd = (uint64_t)(uintptr_t)rpc ^ (uint64_t)time(NULL);
    snprintf(rpc->prefix, sizeof(rpc->prefix), "%012" PRIx64, rnd & (uint64_t)0xffffffffffff);
    rpc->topics = sy_calloc(ntopics + 1, sizeof(*rpc->topics));
    rpc->ntopics = ntopics;
    for (size_t i = 0; i < ntopics; ++i)
        rpc->topics[i].name = sy_strdup(reply_topics[i]);

    if (sy_kafka_conf_set(conf, "group.id", cfg && cfg->group ? cfg->group : "switchyard-replies", errbuf,
                          errbuf_size) != 0 ||
        sy_kafka_conf_set(conf, "enable.auto.commit", "true", errbuf, errbuf_size) != 0 ||
        sy_kafka_conf_set(conf, "auto.offset.reset", "earliest", errbuf, errbuf_size) != 0 ||
        sy_kafka_conf_set(conf, "session.timeout.ms", "6000", errbuf, errbuf_size) != 0 ||
        sy_kafka_conf_set(conf, "heartbeat.interval.ms", "2000", errbuf, errbuf_size) != 0 ||
        sy_kafka_conf_set_int(conf, "fetch.wait.max.ms", cfg && cfg->fetch_wait_max_ms > 0 ? cfg->fetch_wait_max_ms : 1,
                              errbuf, errbuf_size) != 0)
        goto Exit;
    if (sy_kafka_cluster_apply_props(cluster, conf, errbuf, errbuf_size) != 0) goto Exit;
    rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_conf_set_opaque(conf, rpc);
    if ((rpc->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr))) == NULL) {
        snprintf(errbuf, errbuf_size, "request-reply consumer: %s", errstr);
        goto Exit;
    }
    conf = NULL;
    rd_kafka_poll_set_consumer(rpc->rk);
    if (sy_kafka_watch_init(&rpc->watch, loop, rd_kafka_queue_get_consumer(rpc->rk), on_ready, errbuf, errbuf_size) !=
        0)
        goto Exit;
    if (ntopics > 0) {
        subscription = rd_kafka_topic_partition_list_new((int)ntopics);
        for (size_t i = 0; i < ntopics; ++i)
            rd_kafka_topic_partition_list_add(subscription, reply_topics[i], RD_KAFKA_PARTITION_UA);
        rd_kafka_resp_err_t err = rd_kafka_subscribe(rpc->rk, subscription);
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            snprintf(errbuf, errbuf_size, "request-reply consumer: subscribe: %s", rd_kafka_err2str(err));
            goto Exit;
        }
    }
    h2o_timeout_link(loop, &rpc->tick_timeout, &rpc->tick);
    serve(rpc);
    ok = 1;

Exit:
    if (subscription != NULL) rd_kafka_topic_partition_list_destroy(subscription);
    if (conf != NULL) rd_kafka_conf_destroy(conf);
    if (!ok) {
        sy_kafka_rpc_destroy(rpc);
        rpc = NULL;
    }
    return rpc;
}

static h2o_timeout_t *duration(sy_kafka_rpc_t *rpc, uint64_t ms)
{
    for (size_t i = 0; i < rpc->ndurations; ++i)
        if (rpc->durations[i]->ms == ms) return &rpc->durations[i]->timeout;
    duration_t *d = sy_calloc(1, sizeof(*d));
    d->ms = ms;
    h2o_timeout_init(rpc->loop, &d->timeout, ms);
    rpc->durations = sy_realloc(rpc->durations, (rpc->ndurations + 1) * sizeof(*rpc->durations));
    rpc->durations[rpc->ndurations++] = d;
    return &d->timeout;
}

rd_kafka_resp_err_t sy_kafka_rpc_request(sy_kafka_rpc_t *rpc, const char *topic, const void *key, size_t klen,
                                         const void *value, size_t vlen, const sy_kafka_header_t *headers,
                                         size_t nheaders, uint64_t timeout_ms, sy_kafka_reply_cb cb, void *cookie)
{
    char reply_name[512];
    snprintf(reply_name, sizeof(reply_name), "%s.reply", topic);
    reply_topic_t *t = find_topic(rpc, reply_name);
    if (t == NULL) return RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
    if (nheaders > MAX_HEADERS) return RD_KAFKA_RESP_ERR__INVALID_ARG;

    request_t *r = sy_calloc(1, sizeof(*r));
    r->rpc = rpc;
    r->id = ++rpc->next_id;
    snprintf(r->correlation_id, sizeof(r->correlation_id), "%s-%" PRIu64, rpc->prefix, r->id);
    r->reply_topic = t;
    r->cb = cb;
    r->cookie = cookie;
    r->timer.cb = on_timeout;
    r->topic = sy_strdup(topic);
    if ((r->has_key = key != NULL)) r->key = sy_strndup(key, klen), r->klen = klen;
    if ((r->has_value = value != NULL)) r->value = sy_strndup(value, vlen), r->vlen = vlen;
    r->headers = sy_calloc(nheaders + 1, sizeof(*r->headers));
    for (size_t i = 0; i < nheaders; ++i) {
        r->headers[i].name = sy_strdup(headers[i].name);
        r->headers[i].value = headers[i].value ? sy_strndup(headers[i].value, headers[i].value_len) : NULL;
        r->headers[i].value_len = headers[i].value_len;
    }
    r->nheaders = nheaders;
    ++rpc->stats.requests;

    if (t->nparts == 0) {
        /* the group has not given us a reply partition yet: wait for it, within the request's own timeout */
        h2o_linklist_insert(&rpc->waiting, &r->link);
    } else {
        rd_kafka_resp_err_t err = send_request(rpc, r, 0);
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            --rpc->stats.requests;
            request_free(r);
            return err;
        }
    }
    h2o_timeout_link(rpc->loop, duration(rpc, timeout_ms), &r->timer);
    return RD_KAFKA_RESP_ERR_NO_ERROR;
}

int sy_kafka_rpc_ready(sy_kafka_rpc_t *rpc)
{
    for (size_t i = 0; i < rpc->ntopics; ++i)
        if (rpc->topics[i].nparts == 0) return 0;
    return 1;
}

void sy_kafka_rpc_stats(sy_kafka_rpc_t *rpc, sy_kafka_rpc_stats_t *stats)
{
    *stats = rpc->stats;
}

void sy_kafka_rpc_destroy(sy_kafka_rpc_t *rpc)
{
    if (rpc == NULL) return;
    if (h2o_timeout_is_linked(&rpc->tick)) h2o_timeout_unlink(&rpc->tick);
    if (h2o_timeout_is_linked(&rpc->again)) h2o_timeout_unlink(&rpc->again);
    while (!h2o_linklist_is_empty(&rpc->waiting))
        complete(H2O_STRUCT_FROM_MEMBER(request_t, link, rpc->waiting.next), RD_KAFKA_RESP_ERR__DESTROY, NULL);
    for (size_t i = 0; i < NBUCKETS; ++i)
        while (!h2o_linklist_is_empty(&rpc->buckets[i]))
            complete(H2O_STRUCT_FROM_MEMBER(request_t, link, rpc->buckets[i].next), RD_KAFKA_RESP_ERR__DESTROY, NULL);
    if (rpc->rk != NULL) {
        rd_kafka_consumer_close(rpc->rk);
        sy_kafka_watch_dispose(&rpc->watch);
        rd_kafka_destroy(rpc->rk);
    }
    for (size_t i = 0; i < rpc->ndurations; ++i) {
        h2o_timeout_dispose(rpc->loop, &rpc->durations[i]->timeout);
        free(rpc->durations[i]);
    }
    free(rpc->durations);
    h2o_timeout_dispose(rpc->loop, &rpc->zero_timeout);
    h2o_timeout_dispose(rpc->loop, &rpc->tick_timeout);
    for (size_t i = 0; i < rpc->ntopics; ++i) {
        free(rpc->topics[i].name);
        free(rpc->topics[i].parts);
    }
    free(rpc->topics);
    rpc->anchor->rpc = NULL;
    anchor_release(rpc->anchor);
    free(rpc);
}
