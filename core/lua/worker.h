/*
 * The host and its workers: the application layer that wires http/, kafka/ and store/ to the Lua apps.
 * The host is process-wide (options, the store, the Kafka cluster, the listening address); each worker is one
 * thread with its own h2o loop and context, its own SO_REUSEPORT listener, its own Lua app, producer and consumers.
 * Nothing Lua is shared between workers.
 */
#ifndef SY_LUA_WORKER_H
#define SY_LUA_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <h2o.h>
#include "common/metrics.h"
#include "http/server.h"
#include "kafka/kafka.h"
#include "lua/app.h"
#include "store/store.h"

typedef struct st_sy_host_options_t {
    const char *routes_path;
    const char *scripts_dir;
    const char *listen;
    const char *data_dir;
    const char *brokers; /* NULL: embedded */
    const char **kafka_props;
    size_t nkafka_props;
    size_t workers;
    size_t max_body;
    size_t max_header_bytes; /* sum of header names and values; more gets 431 */
    uint64_t shutdown_timeout_ms;
} sy_host_options_t;

typedef struct st_sy_worker_t sy_worker_t;

typedef struct st_sy_host_t {
    sy_host_options_t opts;
    sy_http_server_t http;
    sy_store_t *store;
    sy_kafka_cluster_t *cluster;
    int listen_fd;
    size_t nworkers;
    sy_worker_t **workers;
    atomic_int stopping;       /* 1: graceful shutdown requested */
    atomic_int workers_failed; /* a worker could not start */
    atomic_int workers_ready;
    sy_metrics_t *metrics; /* process-wide (main thread: reloads) */
    pthread_mutex_t status_mutex;
    char last_reload_error[1024];
    double routes_loaded_at;
    const char *admin_listen; /* NULL: no admin listener */
    int fault_injection;      /* --fault-injection: the admin listener may take embedded brokers down */
    /* reload, two phases: main bumps reload_seq; every worker loads the new routes aside and counts itself in
     * reload_prepared or reload_failed; main then sets reload_commit and reload_decided = reload_seq, and every
     * worker switches (or drops what it loaded) */
    atomic_uint reload_seq;
    atomic_uint reload_decided;
    atomic_int reload_commit;
    atomic_int reload_prepared;
    atomic_int reload_failed;
    atomic_int consumers_committed; /* shutdown: workers that committed their offsets and may now leave the groups */
} sy_host_t;

typedef struct {
    uint64_t ms;
    h2o_timeout_t timeout;
} sy_worker_timeout_t;

/* One consumer group of the worker's app. */
typedef struct st_sy_worker_consumer_t {
    sy_worker_t *worker;
    char *group;
    sy_kafka_consumer_t *consumer; /* NULL once stopped (shutdown or removed by a reload) */
    int paused;
} sy_worker_consumer_t;

struct st_sy_worker_t {
    sy_host_t *host;
    size_t id;
    pthread_t thread;
    h2o_loop_t *loop;
    sy_http_worker_t http;
    sy_app_t *app;
    sy_kafka_producer_t *producer;
    struct st_sy_kafka_rpc_t *rpc;
    struct st_sy_kafka_rpc_t **retired_rpcs; /* replaced by a reload; kept for their waiting requests */
    size_t nretired_rpcs;
    sy_worker_consumer_t **consumers;
    size_t nconsumers;
    sy_worker_consumer_t **retired; /* consumers of groups a reload removed; freed at shutdown */
    size_t nretired;
    unsigned reload_seen;
    sy_app_t *next_app;             /* loaded by a reload, waiting for the decision */
    sy_worker_timeout_t **timeouts; /* h2o 2.2.5 keeps one list per duration */
    size_t ntimeouts;
    size_t inflight; /* live coroutines of this worker (all app versions) */
    uint64_t requests;
    sy_metrics_t *metrics;
    /* request telemetry waiting to be produced as one batch */
    char **telemetry;
    size_t ntelemetry;
    h2o_timeout_entry_t telemetry_timer;
    /* what the admin thread may read: refreshed on the loop a few times a second */
    pthread_mutex_t state_mutex;
    atomic_int ready;
    char *state_json; /* {"id":..,"consumers":[..],"replies":..} */
    char ready_reason[160];
    uint64_t state_refreshed_ms;
};

/* Starts the workers (each loads the routes itself). Returns 0 when every worker is serving, -1 otherwise. */
int sy_host_start(sy_host_t *host);
/* Asks every worker to stop (graceful: stop accepting, finish in-flight work up to the shutdown timeout) and joins
 * them. Main thread. */
void sy_host_stop(sy_host_t *host);

/* Runs a two-phase reload of the routes file on every worker (main thread, blocks up to `timeout_ms`). The file
 * must already have been validated by the caller. Returns 0 when every worker switched, -1 when none did. */
int sy_host_reload(sy_host_t *host, uint64_t timeout_ms);

/* Links `entry` to fire after `ms` milliseconds on the worker's loop. Loop thread only. */
void sy_worker_timer_link(sy_worker_t *w, uint64_t ms, h2o_timeout_entry_t *entry);

#endif
