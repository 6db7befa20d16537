/*
 * The consumer: one librdkafka KafkaConsumer per event loop per group, served on the loop through the consumer
 * queue's io event. It hands the application at most one message per partition at a time (the next waits in an
 * in-order queue of that partition), stores a message's offset only when the application says it is done with it
 * (at-least-once), pauses a partition whose backlog grows too long, and keeps revoked partitions from committing
 * work that the new owner will redo. It does not decode payloads or retry failed handlers, and commits explicitly
 * only when partitions are revoked: otherwise librdkafka's auto-commit timer, and its close, commit what was stored.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "h2o/timeout.h"
#include "common/log.h"
#include "common/mem.h"
#include "kafka/internal.h"

/* messages taken from librdkafka per wakeup, and messages handed to the application per loop turn, so that a busy
 * topic cannot starve the HTTP side of the loop */
#define BATCH 256
/* librdkafka leaves the group when the consumer is not polled for max.poll.interval.ms; with io events nothing
 * polls an idle consumer, so a tick does */
#define TICK_MS 1000

/* one assigned (or recently revoked) partition */
typedef struct st_part_t {
    char *topic;
    int32_t partition;
    int assigned;
    int paused;
    /* the message the application holds, and whether the partition was revoked since it was handed out */
    rd_kafka_message_t *inflight;
    int stale;
    /* ring of messages waiting for their turn, in offset order */
    rd_kafka_message_t **ring;
    size_t head, count, capacity;
} part_t;

struct st_sy_kafka_consumer_t {
    sy_kafka_cluster_t *cluster;
    h2o_loop_t *loop;
    rd_kafka_t *rk;
    sy_kafka_watch_t watch;
    sy_kafka_message_cb cb;
    void *cookie;
    char *group;
    size_t max_queued;
    part_t **parts;
    size_t nparts;
    h2o_timeout_t zero_timeout;
    h2o_timeout_entry_t again; /* more to take or to hand out: come back on the next loop turn */
    h2o_timeout_t tick_timeout;
    h2o_timeout_entry_t tick;
    int dispatching;
    int closing;
    sy_kafka_errlog_t errlog;
};

static part_t *part_find(sy_kafka_consumer_t *c, const char *topic, int32_t partition)
{
    for (size_t i = 0; i != c->nparts; ++i)
        if (c->parts[i]->partition == partition && strcmp(c->parts[i]->topic, topic) == 0) return c->parts[i];
    return NULL;
}

static part_t *part_get(sy_kafka_consumer_t *c, const char *topic, int32_t partition)
{
    part_t *p = part_find(c, topic, partition);
    if (p == NULL) {
        p = sy_calloc(1, sizeof(*p));
        p->topic = sy_strdup(topic);
        p->partition = partition;
        c->parts = sy_realloc(c->parts, (c->nparts + 1) * sizeof(*c->parts));
        c->parts[c->nparts++] = p;
    }
    return p;
}

static void part_push(part_t *p, rd_kafka_message_t *msg)
{
    if (p->count == p->capacity) {
        size_t capacity = p->capacity == 0 ? 16 : p->capacity * 2;
        rd_kafka_message_t **ring = sy_malloc(capacity * sizeof(*ring));
        for (size_t i = 0; i != p->count; ++i)
            ring[i] = p->ring[(p->head + i) % p->capacity];
        free(p->ring);
        p->ring = ring;
        p->head = 0;
        p->capacity = capacity;
    }
    p->ring[(p->head + p->count++) % p->capacity] = msg;
}

static rd_kafka_message_t *part_shift(part_t *p)
{
    rd_kafka_message_t *msg = p->ring[p->head];
    p->head = (p->head + 1) % p->capacity;
    --p->count;
    return msg;
}

static void part_drop_queued(part_t *p)
{
    while (p->count != 0)
        rd_kafka_message_destroy(part_shift(p));
}

static void part_free(part_t *p)
{
    part_drop_queued(p);
    if (p->inflight != NULL) rd_kafka_message_destroy(p->inflight);
    free(p->ring);
    free(p->topic);
    free(p);
}

/* Forgets revoked partitions whose last message the application has finished. */
static void parts_compact(sy_kafka_consumer_t *c)
{
    size_t kept = 0;
    for (size_t i = 0; i != c->nparts; ++i) {
        part_t *p = c->parts[i];
        if (p->assigned || p->inflight != NULL)
            c->parts[kept++] = p;
        else
            part_free(p);
    }
    c->nparts = kept;
}

static void pause_resume(sy_kafka_consumer_t *c, part_t *p, int pause)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(list, p->topic, p->partition);
    /* librdkafka drops what it already fetched for a paused partition and, on resume, fetches again from the last
     * message we took: nothing is lost or seen twice */
    rd_kafka_resp_err_t err = pause ? rd_kafka_pause_partitions(c->rk, list) : rd_kafka_resume_partitions(c->rk, list);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
        sy_warn("kafka", "consumer %s: cannot %s %s [%d]: %s", c->group, pause ? "pause" : "resume", p->topic,
                (int)p->partition, rd_kafka_err2str(err));
    else
        sy_debug("kafka", "consumer %s: %s %s [%d] (%zu queued)", c->group, pause ? "paused" : "resumed", p->topic,
                 (int)p->partition, p->count);
    rd_kafka_topic_partition_list_destroy(list);
}

static void schedule(sy_kafka_consumer_t *c)
{
    if (!h2o_timeout_is_linked(&c->again)) h2o_timeout_link(c->loop, &c->zero_timeout, &c->again);
}

/* Hands the application the head of every idle partition's queue, within the per-turn budget. A handler that
 * calls done() from inside the callback gets its partition's next message in the same pass. */
static void dispatch(sy_kafka_consumer_t *c)
{
    size_t budget = BATCH;
    int progress;

    if (c->dispatching) return;
    c->dispatching = 1;
    do {
        progress = 0;
        /* the callback may call done(), which never changes c->parts, so indexing stays valid */
        for (size_t i = 0; i != c->nparts && budget != 0; ++i) {
            part_t *p = c->parts[i];
            if (!p->assigned || p->inflight != NULL || p->count == 0) continue;
            rd_kafka_message_t *msg = part_shift(p);
            p->inflight = msg;
            p->stale = 0;
            if (p->paused && p->count <= c->max_queued / 2) {
                pause_resume(c, p, 0);
                p->paused = 0;
            }
            --budget;
            progress = 1;
            c->cb(c, msg, c->cookie);
        }
    } while (progress && budget != 0);
    c->dispatching = 0;

    if (budget == 0) schedule(c);
}

static void on_consume_error(sy_kafka_consumer_t *c, rd_kafka_message_t *msg)
{
    if (msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) return;
    char who[300];
    if (msg->rkt != NULL)
        snprintf(who, sizeof(who), "consumer %s, %s [%d]", c->group, rd_kafka_topic_name(msg->rkt),
                 (int)msg->partition);
    else
        snprintf(who, sizeof(who), "consumer %s", c->group);
    sy_kafka_errlog(&c->errlog, SY_LOG_WARN, who, msg->err, rd_kafka_message_errstr(msg));
}

static void enqueue(sy_kafka_consumer_t *c, rd_kafka_message_t *msg)
{
    part_t *p = part_find(c, rd_kafka_topic_name(msg->rkt), msg->partition);
    if (p == NULL || !p->assigned) {
        /* fetched before a revoke; the partition's new owner will get it */
        rd_kafka_message_destroy(msg);
        return;
    }
    part_push(p, msg);
    if (!p->paused && p->count >= c->max_queued) {
        pause_resume(c, p, 1);
        p->paused = 1;
    }
}

/* Takes up to BATCH messages (serving rebalances and errors on the way), then hands out what it can. */
static void serve(sy_kafka_consumer_t *c)
{
    size_t n;
    for (n = 0; n != BATCH; ++n) {
        rd_kafka_message_t *msg = rd_kafka_consumer_poll(c->rk, 0);
        if (msg == NULL) break;
        if (msg->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            on_consume_error(c, msg);
            rd_kafka_message_destroy(msg);
            continue;
        }
        sy_kafka_errlog_reset(&c->errlog);
        enqueue(c, msg);
    }
    /* the queue may still hold messages, and librdkafka writes to the eventfd only when it goes from empty to not
     * empty: come back by ourselves */
    if (n == BATCH) schedule(c);
    dispatch(c);
}

static void on_ready(sy_kafka_watch_t *watch)
{
    serve(H2O_STRUCT_FROM_MEMBER(sy_kafka_consumer_t, watch, watch));
}

static void on_again(h2o_timeout_entry_t *entry)
{
    serve(H2O_STRUCT_FROM_MEMBER(sy_kafka_consumer_t, again, entry));
}

static void on_tick(h2o_timeout_entry_t *entry)
{
    sy_kafka_consumer_t *c = H2O_STRUCT_FROM_MEMBER(sy_kafka_consumer_t, tick, entry);
    h2o_timeout_link(c->loop, &c->tick_timeout, &c->tick);
    serve(c);
}

static void commit_stored(sy_kafka_consumer_t *c, const char *why)
{
    rd_kafka_resp_err_t err = rd_kafka_commit(c->rk, NULL, 0 /* synchronous */);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
        sy_warn("kafka", "consumer %s: commit %s failed: %s", c->group, why, rd_kafka_err2str(err));
}

/* Gives up `list` (NULL: everything). */
static void revoke(sy_kafka_consumer_t *c, rd_kafka_t *rk, rd_kafka_topic_partition_list_t *list, int incremental)
{
    rd_kafka_topic_partition_list_t *paused = rd_kafka_topic_partition_list_new(0);

    /* what the application finished so far is committed before another member can start on these partitions */
    if (!c->closing && !rd_kafka_assignment_lost(rk)) commit_stored(c, "on revoke");
    for (size_t i = 0; i != c->nparts; ++i) {
        part_t *p = c->parts[i];
        if (!p->assigned || (list != NULL && rd_kafka_topic_partition_list_find(list, p->topic, p->partition) == NULL))
            continue;
        part_drop_queued(p);
        if (p->paused) rd_kafka_topic_partition_list_add(paused, p->topic, p->partition);
        p->assigned = 0;
        p->paused = 0;
        p->stale = p->inflight != NULL;
    }
    if (incremental && list != NULL) {
        rd_kafka_error_t *error = rd_kafka_incremental_unassign(rk, list);
        if (error != NULL) {
            sy_warn("kafka", "consumer %s: unassign: %s", c->group, rd_kafka_error_string(error));
            rd_kafka_error_destroy(error);
        }
    } else {
        rd_kafka_assign(rk, NULL);
    }
    /* a pause outlives the assignment in librdkafka: lift it, or the partition would stay paused if it came back */
    if (paused->cnt != 0) rd_kafka_resume_partitions(rk, paused);
    rd_kafka_topic_partition_list_destroy(paused);
    parts_compact(c);
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *list, void *opaque)
{
    sy_kafka_consumer_t *c = opaque;
    /* NULL when the consumer is not (or no longer) in a group, e.g. during rd_kafka_consumer_close */
    const char *protocol = rd_kafka_rebalance_protocol(rk);
    int incremental = protocol != NULL && strcmp(protocol, "COOPERATIVE") == 0;

    switch (err) {
    case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
        for (int i = 0; i != list->cnt; ++i) {
            part_t *p = part_get(c, list->elems[i].topic, list->elems[i].partition);
            p->assigned = 1;
            p->paused = 0;
        }
        if (incremental) {
            rd_kafka_error_t *error = rd_kafka_incremental_assign(rk, list);
            if (error != NULL) {
                sy_warn("kafka", "consumer %s: assign: %s", c->group, rd_kafka_error_string(error));
                rd_kafka_error_destroy(error);
            }
        } else {
            rd_kafka_assign(rk, list);
        }
        sy_info("kafka", "consumer %s: assigned %d partition(s), %d in total", c->group, list->cnt,
                sy_kafka_consumer_assigned(c));
        break;
    case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
        revoke(c, rk, list, incremental);
        sy_info("kafka", "consumer %s: revoked %d partition(s), %d left", c->group, list != NULL ? list->cnt : 0,
                sy_kafka_consumer_assigned(c));
        break;
    default:
        /* give everything up; the group will assign again */
        sy_warn("kafka", "consumer %s: rebalance failed: %s", c->group, rd_kafka_err2str(err));
        revoke(c, rk, incremental ? list : NULL, incremental);
        break;
    }
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    sy_kafka_consumer_t *c = opaque;
    char who[300];
    snprintf(who, sizeof(who), "consumer %s", c->group);
    sy_kafka_errlog(&c->errlog, err == RD_KAFKA_RESP_ERR__FATAL ? SY_LOG_ERROR : SY_LOG_WARN, who,
                    (rd_kafka_resp_err_t)err, reason);
}

sy_kafka_consumer_t *sy_kafka_consumer_create(sy_kafka_cluster_t *cluster, h2o_loop_t *loop, const char *group,
                                              const char *const *topics, size_t ntopics,
                                              const sy_kafka_consumer_config_t *cfg, sy_kafka_message_cb cb,
                                              void *cookie, char *errbuf, size_t errbuf_size)
{
    static const sy_kafka_consumer_config_t defaults = {0};
    sy_kafka_consumer_t *c = sy_calloc(1, sizeof(*c));
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_topic_partition_list_t *subscription = NULL;
    rd_kafka_resp_err_t err;
    char errstr[512];
    int ok = 0;

    if (cfg == NULL) cfg = &defaults;
    c->cluster = cluster;
    c->loop = loop;
    c->cb = cb;
    c->cookie = cookie;
    c->group = sy_strdup(group);
    c->max_queued = cfg->max_queued_per_partition > 0 ? (size_t)cfg->max_queued_per_partition : 1000;
    h2o_timeout_init(loop, &c->zero_timeout, 0);
    h2o_timeout_init(loop, &c->tick_timeout, TICK_MS);
    c->again.cb = on_again;
    c->tick.cb = on_tick;

    int session_timeout_ms = cfg->session_timeout_ms > 0 ? cfg->session_timeout_ms : 6000;
    int heartbeat_ms = session_timeout_ms / 3 < 3000 ? session_timeout_ms / 3 : 3000;
    if (sy_kafka_conf_set(conf, "group.id", group, errbuf, errbuf_size) != 0 ||
        sy_kafka_conf_set(conf, "enable.auto.commit", "true", errbuf, errbuf_size) != 0 ||
        sy_kafka_conf_set(conf, "enable.auto.offset.store", "false", errbuf, errbuf_size) != 0 ||
        sy_kafka_conf_set_int(conf, "fetch.wait.max.ms", cfg->fetch_wait_max_ms > 0 ? cfg->fetch_wait_max_ms : 5,
                              errbuf, errbuf_size) != 0 ||
        sy_kafka_conf_set_int(conf, "session.timeout.ms", session_timeout_ms, errbuf, errbuf_size) != 0 ||
        sy_kafka_conf_set_int(conf, "heartbeat.interval.ms", heartbeat_ms, errbuf, errbuf_size) != 0 ||
        sy_kafka_conf_set(conf, "auto.offset.reset",
                          cfg->auto_offset_reset != NULL ? cfg->auto_offset_reset : "earliest", errbuf,
                          errbuf_size) != 0)
        goto Exit;
    /* the user's --kafka properties come last, so that they can override any of the above */
    if (sy_kafka_cluster_apply_props(cluster, conf, errbuf, errbuf_size) != 0) goto Exit;
    rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_conf_set_opaque(conf, c);

    if ((c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr))) == NULL) {
        snprintf(errbuf, errbuf_size, "kafka consumer %s: %s", group, errstr);
        goto Exit;
    }
    conf = NULL;
    /* everything (rebalances, errors, messages) then arrives on the consumer queue, the one to watch */
    rd_kafka_poll_set_consumer(c->rk);
    if (sy_kafka_watch_init(&c->watch, loop, rd_kafka_queue_get_consumer(c->rk), on_ready, errbuf, errbuf_size) != 0)
        goto Exit;

    subscription = rd_kafka_topic_partition_list_new((int)ntopics);
    for (size_t i = 0; i != ntopics; ++i)
        rd_kafka_topic_partition_list_add(subscription, topics[i], RD_KAFKA_PARTITION_UA);
    if ((err = rd_kafka_subscribe(c->rk, subscription)) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(errbuf, errbuf_size, "kafka consumer %s: subscribe: %s", group, rd_kafka_err2str(err));
        goto Exit;
    }
    h2o_timeout_link(loop, &c->tick_timeout, &c->tick);
    serve(c);
    ok = 1;

Exit:
    if (subscription != NULL) rd_kafka_topic_partition_list_destroy(subscription);
    if (conf != NULL) rd_kafka_conf_destroy(conf);
    if (!ok) {
        sy_kafka_consumer_destroy(c);
        c = NULL;
    }
    return c;
}

void sy_kafka_consumer_done(sy_kafka_consumer_t *c, rd_kafka_message_t *msg)
{
    part_t *p = part_find(c, rd_kafka_topic_name(msg->rkt), msg->partition);

    if (p == NULL || p->inflight != msg) {
        sy_error("kafka", "consumer %s: done() for a message that was not handed out (%s [%d] at %lld)", c->group,
                 rd_kafka_topic_name(msg->rkt), (int)msg->partition, (long long)msg->offset);
        rd_kafka_message_destroy(msg);
        return;
    }
    p->inflight = NULL;
    if (p->assigned && !p->stale) {
        rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(list, p->topic, p->partition)->offset = msg->offset + 1;
        rd_kafka_resp_err_t err = rd_kafka_offsets_store(c->rk, list);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR) err = list->elems[0].err;
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
            sy_debug("kafka", "consumer %s: cannot store offset %lld of %s [%d]: %s", c->group,
                     (long long)msg->offset + 1, p->topic, (int)p->partition, rd_kafka_err2str(err));
        rd_kafka_topic_partition_list_destroy(list);
    }
    p->stale = 0;
    rd_kafka_message_destroy(msg);
    /* the next message of the partition goes out on the next loop turn, never from inside done() */
    if (p->count != 0 && !c->dispatching) schedule(c);
}

void sy_kafka_consumer_lag(sy_kafka_consumer_t *c,
                           void (*cb)(const char *topic, int32_t partition, int64_t lag, void *cookie), void *cookie)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new((int)c->nparts + 1);
    for (size_t i = 0; i != c->nparts; ++i)
        if (c->parts[i]->assigned) rd_kafka_topic_partition_list_add(list, c->parts[i]->topic, c->parts[i]->partition);
    /* positions and watermarks are both local state (no broker round trip): the watermarks are those of the
     * latest fetch response */
    if (list->cnt > 0 && rd_kafka_position(c->rk, list) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        for (int i = 0; i < list->cnt; ++i) {
            int64_t low, high;
            rd_kafka_topic_partition_t *tp = &list->elems[i];
            if (rd_kafka_get_watermark_offsets(c->rk, tp->topic, tp->partition, &low, &high) !=
                    RD_KAFKA_RESP_ERR_NO_ERROR ||
                high < 0)
                continue;
            /* no position yet (nothing fetched): everything from the low watermark is behind */
            int64_t pos = tp->offset >= 0 ? tp->offset : low;
            cb(tp->topic, tp->partition, high > pos ? high - pos : 0, cookie);
        }
    }
    rd_kafka_topic_partition_list_destroy(list);
}

int sy_kafka_consumer_assigned(sy_kafka_consumer_t *c)
{
    int n = 0;
    for (size_t i = 0; i != c->nparts; ++i)
        n += c->parts[i]->assigned;
    return n;
}

void sy_kafka_consumer_commit(sy_kafka_consumer_t *c)
{
    if (c == NULL || c->rk == NULL) return;
    rd_kafka_resp_err_t err = rd_kafka_commit(c->rk, NULL, 1 /* async: the result arrives on the consumer queue */);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
        sy_warn("kafka", "consumer %s: commit: %s", c->group, rd_kafka_err2str(err));
}

void sy_kafka_consumer_destroy(sy_kafka_consumer_t *c)
{
    if (c == NULL) return;
    if (h2o_timeout_is_linked(&c->again)) h2o_timeout_unlink(&c->again);
    if (h2o_timeout_is_linked(&c->tick)) h2o_timeout_unlink(&c->tick);
    h2o_timeout_dispose(c->loop, &c->zero_timeout);
    h2o_timeout_dispose(c->loop, &c->tick_timeout);
    sy_kafka_watch_dispose(&c->watch);
    if (c->rk != NULL) {
        /* closing commits the stored offsets: auto-commit on unassign (one wait for the coordinator when it is
         * unreachable, instead of one per explicit commit) */
        c->closing = 1;
        rd_kafka_resp_err_t err = rd_kafka_consumer_close(c->rk);
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
            sy_warn("kafka", "consumer %s: close: %s", c->group, rd_kafka_err2str(err));
    }
    /* messages reference the handle: they go first */
    for (size_t i = 0; i != c->nparts; ++i)
        part_free(c->parts[i]);
    free(c->parts);
    if (c->rk != NULL) rd_kafka_destroy(c->rk);
    free(c->group);
    free(c);
}

const char *sy_kafka_header_get(const rd_kafka_message_t *m, const char *name, size_t *len)
{
    rd_kafka_headers_t *hdrs;
    const void *value;
    size_t size;

    /* parsing caches the headers inside the message, hence the cast */
    if (rd_kafka_message_headers((rd_kafka_message_t *)m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        rd_kafka_header_get_last(hdrs, name, &value, &size) != RD_KAFKA_RESP_ERR_NO_ERROR || value == NULL)
        return NULL;
    *len = size;
    return value;
}
