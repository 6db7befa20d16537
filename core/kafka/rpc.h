/*
 * Request-reply over Kafka in the NestJS wire format (DESIGN section 3), one instance per event loop.
 * A request is produced to TOPIC with the headers kafka_correlationId, kafka_replyTopic (TOPIC.reply) and
 * kafka_replyPartition; the reply is read from a partition of TOPIC.reply that this instance owns. Ownership comes
 * from a consumer group shared by every requester (all workers of all processes): Kafka gives each member its own
 * partitions, so two processes never read each other's replies. Requests made before the group has given this
 * instance a partition wait (within their timeout) until it has one. Late replies are counted and dropped.
 * It does not decode values or interpret kafka_nest-err: the caller does.
 */
#ifndef SY_KAFKA_RPC_H
#define SY_KAFKA_RPC_H

#include "kafka/kafka.h"

typedef struct st_sy_kafka_rpc_t sy_kafka_rpc_t;

/* Called exactly once per accepted request, on the loop thread: err 0 with the reply (borrowed for the duration of
 * the call), RD_KAFKA_RESP_ERR__TIMED_OUT, RD_KAFKA_RESP_ERR__DESTROY (shut down), or the produce error. */
typedef void (*sy_kafka_reply_cb)(void *cookie, rd_kafka_resp_err_t err, const rd_kafka_message_t *reply);

typedef struct {
    const char *group;     /* the requesters' group, shared by every process; "switchyard-replies" when NULL */
    int fetch_wait_max_ms; /* reply latency is bounded by it on the embedded broker; 1 when 0 */
} sy_kafka_rpc_config_t;

/* `reply_topics`: the TOPIC.reply topics this instance may receive on (copied). `producer` is borrowed and must
 * outlive the instance. Loop thread. */
sy_kafka_rpc_t *sy_kafka_rpc_create(sy_kafka_cluster_t *cluster, h2o_loop_t *loop, sy_kafka_producer_t *producer,
                                    const char *const *reply_topics, size_t ntopics, const sy_kafka_rpc_config_t *cfg,
                                    char *errbuf, size_t errbuf_size);
/* Sends a request. Returns 0 (cb will run), or an error without calling cb: RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC when
 * TOPIC.reply is not one of the reply topics, or the producer's refusal (e.g. __QUEUE_FULL). */
rd_kafka_resp_err_t sy_kafka_rpc_request(sy_kafka_rpc_t *rpc, const char *topic, const void *key, size_t klen,
                                         const void *value, size_t vlen, const sy_kafka_header_t *headers,
                                         size_t nheaders, uint64_t timeout_ms, sy_kafka_reply_cb cb, void *cookie);
/* 1 when every reply topic has at least one partition owned by this instance. */
int sy_kafka_rpc_ready(sy_kafka_rpc_t *rpc);

typedef struct {
    uint64_t requests, replies, timeouts, late, failed;
} sy_kafka_rpc_stats_t;
void sy_kafka_rpc_stats(sy_kafka_rpc_t *rpc, sy_kafka_rpc_stats_t *stats);

/* Completes every pending request with RD_KAFKA_RESP_ERR__DESTROY, leaves the group and frees. Blocks. */
void sy_kafka_rpc_destroy(sy_kafka_rpc_t *rpc);

#endif
