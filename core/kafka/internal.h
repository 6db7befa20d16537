/*
 * Private to core/kafka: the pieces the cluster, the producer and the consumer share. The queue watcher turns a
 * librdkafka queue into an eventfd watched by the h2o loop (platform-notes section 3); the error log keeps a broker
 * outage from printing the same error on every retry. Nothing here is part of the module's contract.
 */
#ifndef SY_KAFKA_INTERNAL_H
#define SY_KAFKA_INTERNAL_H

#include <stdint.h>
#include "kafka/kafka.h"

/* Watches one librdkafka queue from an h2o loop. librdkafka writes to the eventfd only when an element is added to
 * an empty queue, so `on_ready` must serve the queue until it is empty, or arrange to be called again. */
typedef struct st_sy_kafka_watch_t {
    rd_kafka_queue_t *queue;
    h2o_socket_t *sock;
    void (*on_ready)(struct st_sy_kafka_watch_t *watch);
} sy_kafka_watch_t;

/* Takes ownership of `queue` and enables its io event into a new eventfd watched by `loop`. Does not call
 * `on_ready`: the caller serves once after the set-up, for what was queued before. Returns 0, or -1 and fills errbuf
 * (then `queue` is still destroyed). */
int sy_kafka_watch_init(sy_kafka_watch_t *watch, h2o_loop_t *loop, rd_kafka_queue_t *queue,
                        void (*on_ready)(sy_kafka_watch_t *watch), char *errbuf, size_t errbuf_size);
/* Disables the io event, closes the eventfd and releases the queue. Safe on a zeroed watch. */
void sy_kafka_watch_dispose(sy_kafka_watch_t *watch);

/* Logs repeated errors once: an error code is printed at `level` the first time and then at most once a minute,
 * otherwise at debug, until sy_kafka_errlog_reset (called when things work again, so that the next outage is seen).
 * Used on one thread per instance. */
#define SY_KAFKA_ERRLOG_SLOTS 8
typedef struct st_sy_kafka_errlog_t {
    struct {
        rd_kafka_resp_err_t err;
        uint64_t at_ms;
    } recent[SY_KAFKA_ERRLOG_SLOTS];
    size_t n;
} sy_kafka_errlog_t;

void sy_kafka_errlog(sy_kafka_errlog_t *errlog, int level, const char *who, rd_kafka_resp_err_t err,
                     const char *reason);
static inline void sy_kafka_errlog_reset(sy_kafka_errlog_t *errlog)
{
    errlog->n = 0;
}

/* The log callback installed on every handle of the module: librdkafka's syslog levels mapped onto sy_log. */
void sy_kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf);

/* Sets one property, formatting librdkafka's complaint into errbuf. Returns 0 or -1. */
int sy_kafka_conf_set(rd_kafka_conf_t *conf, const char *name, const char *value, char *errbuf, size_t errbuf_size);
/* The same for an integer value. */
int sy_kafka_conf_set_int(rd_kafka_conf_t *conf, const char *name, int value, char *errbuf, size_t errbuf_size);

uint64_t sy_kafka_now_ms(void);

#endif
