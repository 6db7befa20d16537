/*
 * The Kafka service: one process-wide cluster handle (a real cluster, or librdkafka's mock cluster started
 * in-process as the "embedded broker"), one producer per event loop and one consumer per event loop per consumer
 * group. librdkafka's queues are wired into the h2o evloop with rd_kafka_queue_io_event_enable, so delivery reports
 * and consumed messages are handled on the loop thread that owns the producer or consumer; there is no polling
 * thread of ours (librdkafka still runs its own internal threads).
 *
 * It knows nothing of Lua, HTTP or the store: work is handed upward through callbacks. It does not retry what
 * librdkafka already retries, does not serialize payloads, and does not implement request-reply correlation (that is
 * built on top of produce + consume with headers).
 */
#ifndef SY_KAFKA_KAFKA_H
#define SY_KAFKA_KAFKA_H

#include <stddef.h>
#include <stdint.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include "h2o/socket.h"

/* -------------------------------------------------------------------------------------------------------------------
 * Cluster
 */

typedef struct st_sy_kafka_cluster_t sy_kafka_cluster_t;

typedef struct st_sy_kafka_cluster_config_t {
    /* "host:port,..." of a real cluster; NULL starts librdkafka's mock cluster in-process (the embedded broker) */
    const char *brokers;
    /* embedded only: number of brokers, 1 when 0 */
    int mock_brokers;
    /* "key=value" librdkafka properties applied to every handle created through this cluster (--kafka) */
    const char *const *props;
    size_t nprops;
} sy_kafka_cluster_config_t;

/* Creates the cluster handle; main thread, start-up. Copies everything in `cfg`. Validates `props` (each must be
 * "key=value" and known to librdkafka) and, when `cfg->brokers` is NULL, starts the mock cluster (its brokers
 * listen on 127.0.0.1, ephemeral ports). Returns NULL and fills errbuf on failure. librdkafka's log lines of every
 * handle made through this cluster go to sy_log with module "kafka". */
sy_kafka_cluster_t *sy_kafka_cluster_create(const sy_kafka_cluster_config_t *cfg, char *errbuf, size_t errbuf_size);

/* The bootstrap servers: the embedded brokers' "127.0.0.1:port,..." or cfg->brokers. Borrowed, valid until
 * sy_kafka_cluster_destroy. Any thread. */
const char *sy_kafka_cluster_bootstrap(sy_kafka_cluster_t *cluster);

/* Makes sure `topic` exists with `partitions` partitions (values below 1 mean 1). Start-up, may block up to ~10 s.
 * Thread-safe. Embedded: rd_kafka_mock_topic_create (an existing topic, created here or by the mock's automatic
 * creation, is success and keeps its partition count). Real cluster: Admin API CreateTopics with the broker's default
 * replication factor (falling back to 1 for brokers older than 2.4); TOPIC_ALREADY_EXISTS is success. Returns 0, or
 * -1 after logging the reason. */
int sy_kafka_cluster_ensure_topic(sy_kafka_cluster_t *cluster, const char *topic, int partitions);

/* The embedded mock cluster for fault injection (rd_kafka_mock_broker_set_down, ...), NULL for a real cluster.
 * Borrowed, valid until sy_kafka_cluster_destroy. */
rd_kafka_mock_cluster_t *sy_kafka_cluster_mock(sy_kafka_cluster_t *cluster);

/* Applies this cluster's settings to `conf`, in order: the log callback (to sy_log), client.id=switchyard,
 * bootstrap.servers, then the user props (which may override the former). For handles made outside this module
 * (e.g. a request-reply consumer). Any thread. Returns 0, or -1 and fills errbuf. */
int sy_kafka_cluster_apply_props(sy_kafka_cluster_t *cluster, rd_kafka_conf_t *conf, char *errbuf, size_t errbuf_size);

/* Stops the embedded brokers (their messages are lost) and frees the handle. Call after every producer and consumer
 * made from it is destroyed. Main thread. */
void sy_kafka_cluster_destroy(sy_kafka_cluster_t *cluster);

/* -------------------------------------------------------------------------------------------------------------------
 * Producer: one per event loop. Every function below runs on the thread of the loop given at creation.
 */

typedef struct st_sy_kafka_producer_t sy_kafka_producer_t;

typedef struct st_sy_kafka_header_t {
    const char *name;
    const void *value; /* NULL: a header with a null value */
    size_t value_len;
} sy_kafka_header_t;

typedef struct st_sy_kafka_topic_config_t {
    const char *name;
    const char *compression; /* gzip|lz4|zstd|snappy|none; NULL: the producer's default codec */
} sy_kafka_topic_config_t;

typedef struct st_sy_kafka_producer_config_t {
    int linger_ms;                         /* 1 when 0 */
    int batch_size;                        /* bytes, 0 = librdkafka default */
    int message_timeout_ms;                /* delivery timeout, 5000 when 0 */
    int queue_max_messages;                /* 0 = librdkafka default (100000) */
    const sy_kafka_topic_config_t *topics; /* per-topic compression; other topics use default_compression */
    size_t ntopics;
    const char *default_compression; /* NULL = none */
} sy_kafka_producer_config_t;

/* The broker's verdict on one message: err 0 with its partition and offset, or an error (partition and offset may
 * then be -1). Runs on the producer's loop thread. It may produce again; it must not destroy the producer. */
typedef void (*sy_kafka_delivery_cb)(void *cookie, rd_kafka_resp_err_t err, int32_t partition, int64_t offset);

/* Creates an idempotent producer (acks=all) whose delivery reports are served on `loop`. Copies `cfg`. `cluster` and
 * `loop` are borrowed and must outlive the producer. Returns NULL and fills errbuf on failure (bad codec, bad
 * property). */
sy_kafka_producer_t *sy_kafka_producer_create(sy_kafka_cluster_t *cluster, h2o_loop_t *loop,
                                              const sy_kafka_producer_config_t *cfg, char *errbuf, size_t errbuf_size);

/* Queues one message. Copies topic, key, value and headers (the caller keeps ownership of everything). `partition`
 * is RD_KAFKA_PARTITION_UA for the partitioner; a NULL key means no key, a NULL value a null record. Returns 0 when
 * queued: `cb` (if not NULL) then runs exactly once, later, on the loop thread, never from within this call.
 * Otherwise returns the error and `cb` is never called: RD_KAFKA_RESP_ERR__QUEUE_FULL is backpressure (nothing
 * blocks or sleeps); others are permanent (unknown partition, message too large, fatal producer error). */
rd_kafka_resp_err_t sy_kafka_produce(sy_kafka_producer_t *p, const char *topic, int32_t partition, const void *key,
                                     size_t klen, const void *value, size_t vlen, const sy_kafka_header_t *headers,
                                     size_t nheaders, sy_kafka_delivery_cb cb, void *cookie);

/* Number of messages produced and not yet reported. */
size_t sy_kafka_producer_outstanding(sy_kafka_producer_t *p);

/* Shutdown only: blocks until every queued message is reported or `timeout_ms` passes; delivery callbacks run
 * inside. Returns 0 when nothing is outstanding any more, -1 on timeout. */
int sy_kafka_producer_flush(sy_kafka_producer_t *p, int timeout_ms);

/* Shutdown only, blocks: flushes for up to message_timeout_ms, then purges what is left, so that every outstanding
 * callback has run (with an error if undelivered) before it returns. Must not be called from a delivery callback,
 * and must be called before the loop is destroyed. After the call `p` is no longer valid. */
void sy_kafka_producer_destroy(sy_kafka_producer_t *p);

/* -------------------------------------------------------------------------------------------------------------------
 * Consumer: one per event loop per consumer group. Every function below runs on the thread of the loop given at
 * creation. Delivery is at-least-once: a message's offset is committed only after sy_kafka_consumer_done.
 */

typedef struct st_sy_kafka_consumer_t sy_kafka_consumer_t;

/* Hands one message to the application, which takes ownership of `msg` and must later call
 * sy_kafka_consumer_done(c, msg) exactly once on the loop thread (from inside the callback or any time after). At
 * most one message per partition is handed out at a time; the next one of that partition follows after done() (in
 * the same pass when done() is called from inside the callback, else on a later loop turn); different partitions run
 * concurrently. A null record has msg->payload NULL. The callback must not destroy the consumer.
 * Rebalances (EAGER by default) run on the loop thread too: a revoke commits the stored offsets synchronously (one
 * round trip to the coordinator) and drops the revoked partitions' queued messages, which the new owner receives. */
typedef void (*sy_kafka_message_cb)(sy_kafka_consumer_t *c, rd_kafka_message_t *msg, void *cookie);

typedef struct st_sy_kafka_consumer_config_t {
    int fetch_wait_max_ms;         /* 5 when 0 */
    int session_timeout_ms;        /* 6000 when 0 */
    int max_queued_per_partition;  /* 1000 when 0; above it the partition is paused until half the backlog drained */
    const char *auto_offset_reset; /* "earliest" when NULL */
} sy_kafka_consumer_config_t;

/* Creates a consumer that joins `group` and subscribes to `topics` (the strings are copied; `cfg` may be NULL for
 * the defaults). The join completes asynchronously (seconds); see sy_kafka_consumer_assigned. `cluster` and `loop`
 * are borrowed and must outlive the consumer; `cookie` is passed to `cb` as is. Returns NULL and fills errbuf on
 * failure. */
sy_kafka_consumer_t *sy_kafka_consumer_create(sy_kafka_cluster_t *cluster, h2o_loop_t *loop, const char *group,
                                              const char *const *topics, size_t ntopics,
                                              const sy_kafka_consumer_config_t *cfg, sy_kafka_message_cb cb,
                                              void *cookie, char *errbuf, size_t errbuf_size);

/* Ends the application's work on `msg` and frees it (after the call `msg` is no longer valid). Stores offset+1 for
 * the next commit, unless the partition was revoked since the message was handed out (the new owner will receive it
 * again). Never calls the message callback itself. */
void sy_kafka_consumer_done(sy_kafka_consumer_t *c, rd_kafka_message_t *msg);

/* Number of partitions currently assigned to this consumer (0 until the group join completes). */
int sy_kafka_consumer_assigned(sy_kafka_consumer_t *c);

/* Calls cb for every assigned partition with the number of records between the consumer's position and the high
 * watermark of the last fetch (0 when caught up). Local state only, no broker round trip. Loop thread. */
void sy_kafka_consumer_lag(sy_kafka_consumer_t *c,
                           void (*cb)(const char *topic, int32_t partition, int64_t lag, void *cookie), void *cookie);

/* Shutdown only, blocks: leaves the group, committing the stored offsets on the way (librdkafka's commit on
 * unassign), and frees the consumer. Takes milliseconds with a reachable coordinator, about session_timeout_ms when
 * the brokers are down (6.5 s measured with the default). Messages handed out and not yet done are freed here,
 * uncommitted: the application must drop its pointers to them and not call done() for them. Must not be called from
 * the message callback, and must be called before the loop is destroyed. After the call `c` is no longer valid. */
/* Sends the stored offsets to the group coordinator now, without waiting (shutdown: every member commits before
 * any leaves, since a member leaving starts a rebalance during which the others' commits are refused). */
void sy_kafka_consumer_commit(sy_kafka_consumer_t *c);

void sy_kafka_consumer_destroy(sy_kafka_consumer_t *c);

/* -------------------------------------------------------------------------------------------------------------------
 * Helpers
 */

/* The value of the last header named `name` of `m` and its length in *len (not NUL-terminated), or NULL when there
 * is no such header or its value is null. Borrowed from `m`, valid until the message is freed. Loop thread of the
 * consumer that owns `m` (the headers are parsed lazily into the message). */
const char *sy_kafka_header_get(const rd_kafka_message_t *m, const char *name, size_t *len);

#endif
