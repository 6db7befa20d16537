/*
 * Unit tests of core/kafka against the embedded broker (librdkafka's mock cluster, in-process) and one h2o evloop
 * on the test thread. Nothing sleeps and hopes: every wait runs the loop until a condition holds or a deadline
 * passes. The slow parts are the mock's group joins (about 3 s for a new group, up to session.timeout when a group
 * is joined again, platform-notes section 2); the timings measured are printed to stderr.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include "h2o.h"
#include "common/log.h"
#include "kafka/kafka.h"
#include "test.h"

#define RUN_UNTIL(loop, cond, timeout_ms)                                                                              \
    ({                                                                                                                 \
        uint64_t deadline_ = now_ms() + (timeout_ms);                                                                  \
        while (!(cond) && now_ms() < deadline_)                                                                        \
            h2o_evloop_run((loop), 10);                                                                                \
        (cond);                                                                                                        \
    })

/* SY_TEST_DEBUG=1 shows the module's debug lines (pauses, resumes, suppressed errors) */
__attribute__((constructor)) static void log_level_from_env(void)
{
    if (getenv("SY_TEST_DEBUG") != NULL) sy_log_min_level = SY_LOG_DEBUG;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void unique_name(char *buf, size_t size, const char *prefix)
{
    static int seq;
    snprintf(buf, size, "%s-%d-%" PRIu64 "-%d", prefix, (int)getpid(), now_ms(), ++seq);
}

static sy_kafka_cluster_t *embedded(int brokers)
{
    char errbuf[256] = "";
    sy_kafka_cluster_config_t cfg = {.brokers = NULL, .mock_brokers = brokers};
    sy_kafka_cluster_t *cluster = sy_kafka_cluster_create(&cfg, errbuf, sizeof(errbuf));
    if (cluster == NULL) fprintf(stderr, "cluster: %s\n", errbuf);
    return cluster;
}

static void loop_destroy(h2o_loop_t *loop)
{
    h2o_evloop_run(loop, 0); /* lets closed sockets be reaped */
    h2o_evloop_destroy(loop);
}

/* ---------------------------------------------------------------------------------------------------------------
 * delivery reports
 */

typedef struct {
    int calls;
    rd_kafka_resp_err_t err;
    int32_t partition;
    int64_t offset;
    uint64_t produced_at, reported_at;
} report_t;

static size_t nreports;

static void on_report(void *cookie, rd_kafka_resp_err_t err, int32_t partition, int64_t offset)
{
    report_t *r = cookie;
    ++r->calls;
    r->err = err;
    r->partition = partition;
    r->offset = offset;
    r->reported_at = now_ms();
    ++nreports;
}

/* ---------------------------------------------------------------------------------------------------------------
 * a consuming application: checks what it receives against what was produced
 */

#define MAX_MSGS 200
#define MAX_SLOTS 16

typedef struct {
    const char *topic;
    char key[32];
    char value[32];
    int null_value;
    report_t report;
} expected_t;

static expected_t expected[MAX_MSGS];
static size_t nexpected;

typedef struct st_app_t app_t;
typedef struct {
    h2o_timeout_entry_t te;
    app_t *app;
    rd_kafka_message_t *msg;
    int64_t last_offset;
} slot_t;

struct st_app_t {
    h2o_loop_t *loop;
    const char *const *topics; /* slot = topic index * 8 + partition */
    size_t ntopics;
    int mode; /* APP_SYNC: done() inside the callback; APP_ASYNC: 1 ms later; APP_HOLD: when the test says */
    h2o_timeout_t later;
    slot_t slots[MAX_SLOTS];
    int seen[MAX_MSGS];
    size_t received;
    size_t first_index; /* lowest message index received */
    int max_concurrent;
    uint64_t first_at;
    sy_kafka_consumer_t *c;
};

enum { APP_SYNC, APP_ASYNC, APP_HOLD };

static void app_init(app_t *app, h2o_loop_t *loop, const char *const *topics, size_t ntopics, int mode)
{
    memset(app, 0, sizeof(*app));
    app->loop = loop;
    app->topics = topics;
    app->ntopics = ntopics;
    app->mode = mode;
    app->first_index = MAX_MSGS;
    h2o_timeout_init(loop, &app->later, 1);
    for (size_t i = 0; i != MAX_SLOTS; ++i) {
        app->slots[i].app = app;
        app->slots[i].last_offset = -1;
    }
}

static void app_dispose(app_t *app)
{
    for (size_t i = 0; i != MAX_SLOTS; ++i)
        if (h2o_timeout_is_linked(&app->slots[i].te)) h2o_timeout_unlink(&app->slots[i].te);
    h2o_timeout_dispose(app->loop, &app->later);
}

static int in_flight(app_t *app)
{
    int n = 0;
    for (size_t i = 0; i != MAX_SLOTS; ++i)
        n += app->slots[i].msg != NULL;
    return n;
}

static void app_finish(slot_t *slot)
{
    rd_kafka_message_t *msg = slot->msg;
    slot->msg = NULL;
    sy_kafka_consumer_done(slot->app->c, msg);
}

static void on_later(h2o_timeout_entry_t *te)
{
    app_finish(H2O_STRUCT_FROM_MEMBER(slot_t, te, te));
}

/* done() for every held message; what follows may be a redelivery, so the order check starts over */
static void app_release(app_t *app)
{
    for (size_t i = 0; i != MAX_SLOTS; ++i) {
        if (app->slots[i].msg != NULL) app_finish(&app->slots[i]);
        app->slots[i].last_offset = -1;
    }
}

static void check_message(const rd_kafka_message_t *msg, size_t index)
{
    expected_t *e = &expected[index];
    size_t len;
    const char *v;

    CHECK_STR(rd_kafka_topic_name(msg->rkt), e->topic);
    CHECK(msg->partition == e->report.partition);
    CHECK(msg->offset == e->report.offset);
    CHECK(msg->key_len == strlen(e->key) && memcmp(msg->key, e->key, msg->key_len) == 0);
    if (e->null_value)
        CHECK(msg->payload == NULL && msg->len == 0);
    else
        CHECK(msg->payload != NULL && msg->len == strlen(e->value) && memcmp(msg->payload, e->value, msg->len) == 0);
    CHECK((v = sy_kafka_header_get(msg, "h-bin", &len)) != NULL && len == 3 && memcmp(v, "a\0b", 3) == 0);
    CHECK(sy_kafka_header_get(msg, "h-null", &len) == NULL);
    CHECK(sy_kafka_header_get(msg, "absent", &len) == NULL);
    /* a header given twice: the last value wins */
    CHECK((v = sy_kafka_header_get(msg, "h-twice", &len)) != NULL && len == 6 && memcmp(v, "second", 6) == 0);
}

static void on_message(sy_kafka_consumer_t *c, rd_kafka_message_t *msg, void *cookie)
{
    app_t *app = cookie;
    size_t t, len, index;
    char buf[16];
    const char *v;

    if (app->first_at == 0) app->first_at = now_ms();
    for (t = 0; t != app->ntopics; ++t)
        if (strcmp(app->topics[t], rd_kafka_topic_name(msg->rkt)) == 0) break;
    CHECK(t != app->ntopics && msg->partition < 8);
    slot_t *slot = &app->slots[(t * 8 + (size_t)msg->partition) % MAX_SLOTS];
    /* the module's core promise: never two messages of a partition in flight */
    CHECK(slot->msg == NULL);
    /* and in order, without gaps or repeats within one consumer */
    CHECK(msg->offset > slot->last_offset);
    slot->last_offset = msg->offset;
    slot->msg = msg;

    CHECK((v = sy_kafka_header_get(msg, "h-index", &len)) != NULL && len < sizeof(buf));
    if (v != NULL && len < sizeof(buf)) {
        memcpy(buf, v, len);
        buf[len] = '\0';
        index = strtoul(buf, NULL, 10);
        CHECK(index < nexpected);
        if (index < nexpected) {
            check_message(msg, index);
            ++app->seen[index];
            if (index < app->first_index) app->first_index = index;
        }
    }
    ++app->received;
    int n = in_flight(app);
    if (n > app->max_concurrent) app->max_concurrent = n;

    switch (app->mode) {
    case APP_SYNC:
        app_finish(slot);
        break;
    case APP_ASYNC:
        slot->te.cb = on_later;
        h2o_timeout_link(app->loop, &app->later, &slot->te);
        break;
    default:
        break;
    }
}

/* Produces one message of the table, with a key, headers, and a null value every 7th. */
static rd_kafka_resp_err_t produce_expected(sy_kafka_producer_t *p, const char *topic)
{
    expected_t *e = &expected[nexpected];
    char index[16];
    e->topic = topic;
    snprintf(e->key, sizeof(e->key), "key-%zu", nexpected);
    snprintf(e->value, sizeof(e->value), "{\"n\":%zu}", nexpected);
    e->null_value = nexpected % 7 == 3;
    snprintf(index, sizeof(index), "%zu", nexpected);
    sy_kafka_header_t headers[] = {
        {"h-index", index, strlen(index)}, {"h-bin", "a\0b", 3},     {"h-null", NULL, 0},
        {"h-twice", "first", 5},           {"h-twice", "second", 6},
    };
    e->report.produced_at = now_ms();
    rd_kafka_resp_err_t err =
        sy_kafka_produce(p, topic, RD_KAFKA_PARTITION_UA, e->key, strlen(e->key), e->null_value ? NULL : e->value,
                         strlen(e->value), headers, sizeof(headers) / sizeof(headers[0]), on_report, &e->report);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) ++nexpected;
    return err;
}

/* ---------------------------------------------------------------------------------------------------------------
 * tests
 */

TEST(cluster_config)
{
    char errbuf[256];
    sy_kafka_cluster_t *cluster;

    const char *unknown[] = {"linger.ms=5", "no.such.property=1"};
    sy_kafka_cluster_config_t cfg = {.brokers = "127.0.0.1:9", .props = unknown, .nprops = 2};
    errbuf[0] = '\0';
    CHECK(sy_kafka_cluster_create(&cfg, errbuf, sizeof(errbuf)) == NULL);
    CHECK(strstr(errbuf, "no.such.property") != NULL && strstr(errbuf, "No such configuration property") != NULL);

    const char *no_value[] = {"linger.ms"};
    cfg.props = no_value;
    cfg.nprops = 1;
    CHECK(sy_kafka_cluster_create(&cfg, errbuf, sizeof(errbuf)) == NULL);
    CHECK(strstr(errbuf, "expected key=value") != NULL);

    const char *bad_value[] = {"linger.ms=soon"};
    cfg.props = bad_value;
    CHECK(sy_kafka_cluster_create(&cfg, errbuf, sizeof(errbuf)) == NULL);
    CHECK(strstr(errbuf, "linger.ms") != NULL);

    const char *good[] = {"socket.keepalive.enable=true", "statistics.interval.ms=0"};
    cfg.props = good;
    cfg.nprops = 2;
    CHECK((cluster = sy_kafka_cluster_create(&cfg, errbuf, sizeof(errbuf))) != NULL);
    if (cluster != NULL) {
        CHECK_STR(sy_kafka_cluster_bootstrap(cluster), "127.0.0.1:9");
        CHECK(sy_kafka_cluster_mock(cluster) == NULL);
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        char value[64];
        size_t size = sizeof(value);
        CHECK(sy_kafka_cluster_apply_props(cluster, conf, errbuf, sizeof(errbuf)) == 0);
        CHECK(rd_kafka_conf_get(conf, "bootstrap.servers", value, &size) == RD_KAFKA_CONF_OK);
        CHECK_STR(value, "127.0.0.1:9");
        size = sizeof(value);
        CHECK(rd_kafka_conf_get(conf, "socket.keepalive.enable", value, &size) == RD_KAFKA_CONF_OK);
        CHECK_STR(value, "true");
        rd_kafka_conf_destroy(conf);
        sy_kafka_cluster_destroy(cluster);
    }

    CHECK((cluster = embedded(3)) != NULL);
    if (cluster != NULL) {
        const char *boot = sy_kafka_cluster_bootstrap(cluster);
        CHECK(boot != NULL && strncmp(boot, "127.0.0.1:", 10) == 0 && strchr(boot, ',') != NULL);
        CHECK(sy_kafka_cluster_mock(cluster) != NULL);
        CHECK(sy_kafka_cluster_ensure_topic(cluster, "cfg-topic", 2) == 0);
        CHECK(sy_kafka_cluster_ensure_topic(cluster, "cfg-topic", 2) == 0); /* idempotent */
        sy_kafka_cluster_destroy(cluster);
    }
}

TEST(produce_consume_resume)
{
    h2o_loop_t *loop = h2o_evloop_create();
    sy_kafka_cluster_t *cluster = embedded(1);
    char errbuf[256] = "", group[96], t1[64], t2[64];
    app_t app;

    unique_name(group, sizeof(group), "g");
    unique_name(t1, sizeof(t1), "orders");
    unique_name(t2, sizeof(t2), "audit");
    CHECK(cluster != NULL);
    if (cluster == NULL) return;
    CHECK(sy_kafka_cluster_bootstrap(cluster)[0] != '\0');
    CHECK(sy_kafka_cluster_ensure_topic(cluster, t1, 3) == 0);
    CHECK(sy_kafka_cluster_ensure_topic(cluster, t2, 1) == 0);

    /* t1 gzip, t2 the default codec (lz4): compression must be invisible to the consumer */
    sy_kafka_topic_config_t tconf[] = {{t1, "gzip"}};
    sy_kafka_producer_config_t pcfg = {.topics = tconf, .ntopics = 1, .default_compression = "lz4"};
    sy_kafka_producer_t *p = sy_kafka_producer_create(cluster, loop, &pcfg, errbuf, sizeof(errbuf));
    CHECK(p != NULL);
    if (p == NULL) {
        fprintf(stderr, "producer: %s\n", errbuf);
        return;
    }

    nexpected = 0;
    nreports = 0;
    uint64_t started = now_ms();
    for (int i = 0; i != 100; ++i)
        CHECK(produce_expected(p, t1) == RD_KAFKA_RESP_ERR_NO_ERROR);
    for (int i = 0; i != 5; ++i)
        CHECK(produce_expected(p, t2) == RD_KAFKA_RESP_ERR_NO_ERROR);
    CHECK(nreports == 0); /* never from inside produce */
    CHECK(RUN_UNTIL(loop, nreports == 105, 10000));
    fprintf(stderr, "  105 delivery reports %" PRIu64 " ms after the first produce (includes connection + PID)\n",
            now_ms() - started);
    int64_t last[2][8];
    memset(last, 0xff, sizeof(last));
    for (size_t i = 0; i != nexpected; ++i) {
        report_t *r = &expected[i].report;
        CHECK(r->calls == 1 && r->err == RD_KAFKA_RESP_ERR_NO_ERROR);
        CHECK(r->partition >= 0 && r->partition < 3);
        /* per partition, offsets increase in produce order */
        int64_t *l = &last[expected[i].topic == t2][r->partition & 7];
        CHECK(r->offset > *l);
        *l = r->offset;
    }
    CHECK(last[0][0] >= 0 && last[0][1] >= 0 && last[0][2] >= 0); /* the keys spread over the partitions */
    CHECK(sy_kafka_producer_outstanding(p) == 0);

    /* steady-state produce -> delivery report latency */
    uint64_t sum = 0, worst = 0;
    for (int i = 0; i != 20; ++i) {
        report_t r = {0};
        size_t before = nreports;
        uint64_t t0 = now_ms();
        CHECK(sy_kafka_produce(p, "latency", RD_KAFKA_PARTITION_UA, NULL, 0, "x", 1, NULL, 0, on_report, &r) == 0);
        CHECK(RUN_UNTIL(loop, nreports == before + 1, 5000));
        CHECK(r.calls == 1 && r.err == 0);
        uint64_t d = now_ms() - t0;
        sum += d;
        worst = d > worst ? d : worst;
    }
    fprintf(stderr, "  produce -> delivery report, sequential: avg %.1f ms, max %" PRIu64 " ms\n", sum / 20.0, worst);

    /* consume everything in a fresh group; a small backlog limit makes partitions pause and resume */
    const char *topics[] = {t1, t2};
    app_init(&app, loop, topics, 2, APP_ASYNC);
    sy_kafka_consumer_config_t ccfg = {.max_queued_per_partition = 4, .session_timeout_ms = 6000};
    started = now_ms();
    app.c = sy_kafka_consumer_create(cluster, loop, group, topics, 2, &ccfg, on_message, &app, errbuf, sizeof(errbuf));
    CHECK(app.c != NULL);
    if (app.c == NULL) {
        fprintf(stderr, "consumer: %s\n", errbuf);
        return;
    }
    CHECK(RUN_UNTIL(loop, sy_kafka_consumer_assigned(app.c) == 4, 15000));
    fprintf(stderr, "  first group join: %" PRIu64 " ms\n", now_ms() - started);
    CHECK(RUN_UNTIL(loop, app.received == 105 && in_flight(&app) == 0, 15000));
    fprintf(stderr, "  105 messages consumed %" PRIu64 " ms after the consumer was created (max %d in flight)\n",
            now_ms() - started, app.max_concurrent);
    for (size_t i = 0; i != 105; ++i)
        CHECK(app.seen[i] == 1);
    CHECK(app.max_concurrent >= 2); /* different partitions run concurrently */

    started = now_ms();
    sy_kafka_consumer_destroy(app.c);
    fprintf(stderr, "  consumer destroy (commit + leave): %" PRIu64 " ms\n", now_ms() - started);
    app_dispose(&app);

    /* the same group again resumes after the committed offsets: only the new messages arrive */
    size_t before = nreports;
    for (int i = 0; i != 10; ++i)
        CHECK(produce_expected(p, t1) == RD_KAFKA_RESP_ERR_NO_ERROR);
    CHECK(RUN_UNTIL(loop, nreports == before + 10, 10000));
    app_init(&app, loop, topics, 2, APP_SYNC);
    started = now_ms();
    app.c = sy_kafka_consumer_create(cluster, loop, group, topics, 2, &ccfg, on_message, &app, errbuf, sizeof(errbuf));
    CHECK(app.c != NULL);
    if (app.c != NULL) {
        CHECK(RUN_UNTIL(loop, app.received == 10, 20000));
        fprintf(stderr, "  re-join of the same group + 10 messages: %" PRIu64 " ms\n", now_ms() - started);
        CHECK(app.first_index == 105);
        for (size_t i = 105; i != 115; ++i)
            CHECK(app.seen[i] == 1);
        sy_kafka_consumer_destroy(app.c);
    }
    app_dispose(&app);

    sy_kafka_producer_destroy(p);
    sy_kafka_cluster_destroy(cluster);
    loop_destroy(loop);
}

TEST(backpressure_and_broker_down)
{
    h2o_loop_t *loop = h2o_evloop_create();
    sy_kafka_cluster_t *cluster = embedded(1);
    char errbuf[256] = "";
    CHECK(cluster != NULL);
    if (cluster == NULL) return;
    rd_kafka_mock_cluster_t *mock = sy_kafka_cluster_mock(cluster);
    CHECK(sy_kafka_cluster_ensure_topic(cluster, "bp", 1) == 0);

    sy_kafka_producer_config_t pcfg = {.queue_max_messages = 5, .message_timeout_ms = 2000};
    sy_kafka_producer_t *p = sy_kafka_producer_create(cluster, loop, &pcfg, errbuf, sizeof(errbuf));
    CHECK(p != NULL);
    if (p == NULL) return;

    /* warm up: connection, metadata and producer id */
    report_t warm = {0};
    nreports = 0;
    CHECK(sy_kafka_produce(p, "bp", RD_KAFKA_PARTITION_UA, "k", 1, "v", 1, NULL, 0, on_report, &warm) == 0);
    CHECK(RUN_UNTIL(loop, nreports == 1, 10000));
    CHECK(warm.err == 0 && warm.offset == 0);

    /* destroying a producer with messages in flight, broker up: they are delivered first */
    sy_kafka_producer_t *p2 = sy_kafka_producer_create(cluster, loop, &pcfg, errbuf, sizeof(errbuf));
    report_t quick[5] = {{0}};
    nreports = 0;
    for (int i = 0; i != 5; ++i)
        CHECK(sy_kafka_produce(p2, "bp", 0, NULL, 0, "q", 1, NULL, 0, on_report, &quick[i]) == 0);
    sy_kafka_producer_destroy(p2);
    CHECK(nreports == 5);
    for (int i = 0; i != 5; ++i)
        CHECK(quick[i].calls == 1 && quick[i].err == 0);

    /* broker down: the queue fills and stays full; a refused message never gets a callback */
    rd_kafka_mock_broker_set_down(mock, 1);
    report_t r[10] = {{0}};
    size_t accepted = 0;
    rd_kafka_resp_err_t err = 0;
    nreports = 0;
    uint64_t started = now_ms();
    for (int i = 0; i != 10; ++i) {
        r[i].produced_at = now_ms();
        if ((err = sy_kafka_produce(p, "bp", RD_KAFKA_PARTITION_UA, NULL, 0, "down", 4, NULL, 0, on_report, &r[i])) !=
            0)
            break;
        ++accepted;
    }
    CHECK(err == RD_KAFKA_RESP_ERR__QUEUE_FULL);
    CHECK(accepted == 5);
    CHECK(sy_kafka_producer_outstanding(p) == accepted);
    /* every accepted message gets an error within message_timeout + 2 s, and nothing hangs */
    CHECK(RUN_UNTIL(loop, nreports == accepted, 2000 + 2000 + 1000));
    uint64_t worst = 0;
    for (size_t i = 0; i != accepted; ++i) {
        CHECK(r[i].calls == 1 && r[i].err != RD_KAFKA_RESP_ERR_NO_ERROR);
        if (r[i].reported_at - r[i].produced_at > worst) worst = r[i].reported_at - r[i].produced_at;
    }
    CHECK(worst <= 2000 + 2000);
    CHECK(r[accepted].calls == 0);
    fprintf(stderr, "  broker down: %zu queued, errors (%s) after at most %" PRIu64 " ms (message_timeout 2000)\n",
            accepted, rd_kafka_err2name(r[0].err), worst);
    (void)started;

    /* the broker comes back: producing works again */
    rd_kafka_mock_broker_set_up(mock, 1);
    report_t back = {0};
    nreports = 0;
    started = now_ms();
    CHECK(sy_kafka_produce(p, "bp", RD_KAFKA_PARTITION_UA, NULL, 0, "back", 4, NULL, 0, on_report, &back) == 0);
    CHECK(RUN_UNTIL(loop, nreports == 1, 10000));
    CHECK(back.err == 0);
    fprintf(stderr, "  broker back up: delivered after %" PRIu64 " ms\n", now_ms() - started);

    /* destroy with outstanding messages while the broker is down: every callback runs before destroy returns */
    rd_kafka_mock_broker_set_down(mock, 1);
    report_t last[3] = {{0}};
    nreports = 0;
    for (int i = 0; i != 3; ++i)
        CHECK(sy_kafka_produce(p, "bp", RD_KAFKA_PARTITION_UA, NULL, 0, "bye", 3, NULL, 0, on_report, &last[i]) == 0);
    CHECK(sy_kafka_produce(p, "bp", RD_KAFKA_PARTITION_UA, NULL, 0, "no report", 9, NULL, 0, NULL, NULL) == 0);
    started = now_ms();
    sy_kafka_producer_destroy(p);
    fprintf(stderr, "  producer destroy with 4 outstanding, broker down: %" PRIu64 " ms\n", now_ms() - started);
    CHECK(nreports == 3);
    for (int i = 0; i != 3; ++i)
        CHECK(last[i].calls == 1 && last[i].err != RD_KAFKA_RESP_ERR_NO_ERROR);

    sy_kafka_cluster_destroy(cluster);
    loop_destroy(loop);
}

TEST(revoke_while_in_flight)
{
    h2o_loop_t *loop = h2o_evloop_create();
    sy_kafka_cluster_t *cluster = embedded(1);
    char errbuf[256] = "", group[96], topic[64];
    app_t a, b;

    unique_name(group, sizeof(group), "g");
    unique_name(topic, sizeof(topic), "rv");
    CHECK(cluster != NULL);
    if (cluster == NULL) return;
    CHECK(sy_kafka_cluster_ensure_topic(cluster, topic, 2) == 0);
    sy_kafka_producer_config_t pcfg = {0};
    sy_kafka_producer_t *p = sy_kafka_producer_create(cluster, loop, &pcfg, errbuf, sizeof(errbuf));
    CHECK(p != NULL);
    if (p == NULL) return;

    /* three messages per partition: index i goes to partition i % 2 */
    nexpected = 0;
    nreports = 0;
    for (int i = 0; i != 6; ++i) {
        expected_t *e = &expected[nexpected];
        char index[16];
        snprintf(index, sizeof(index), "%zu", nexpected);
        e->topic = topic;
        snprintf(e->key, sizeof(e->key), "key-%zu", nexpected);
        snprintf(e->value, sizeof(e->value), "v%zu", nexpected);
        sy_kafka_header_t headers[] = {
            {"h-index", index, strlen(index)}, {"h-bin", "a\0b", 3}, {"h-null", NULL, 0}, {"h-twice", "second", 6}};
        CHECK(sy_kafka_produce(p, topic, i % 2, e->key, strlen(e->key), e->value, strlen(e->value), headers, 4,
                               on_report, &e->report) == 0);
        ++nexpected;
    }
    CHECK(RUN_UNTIL(loop, nreports == 6, 10000));

    /* a holds the first message of each partition, and with a backlog limit of 1 both partitions get paused... */
    const char *topics[] = {topic};
    sy_kafka_consumer_config_t ccfg = {.session_timeout_ms = 6000, .max_queued_per_partition = 1};
    app_init(&a, loop, topics, 1, APP_HOLD);
    a.c = sy_kafka_consumer_create(cluster, loop, group, topics, 1, &ccfg, on_message, &a, errbuf, sizeof(errbuf));
    CHECK(a.c != NULL);
    if (a.c == NULL) return;
    CHECK(RUN_UNTIL(loop, a.received == 2, 15000));
    CHECK(in_flight(&a) == 2);

    /* ...when b joins: the eager rebalance revokes both from a, drops their backlog, and each member gets one back */
    uint64_t started = now_ms();
    app_init(&b, loop, topics, 1, APP_HOLD);
    b.c = sy_kafka_consumer_create(cluster, loop, group, topics, 1, &ccfg, on_message, &b, errbuf, sizeof(errbuf));
    CHECK(b.c != NULL);
    if (b.c == NULL) return;
    CHECK(RUN_UNTIL(loop, sy_kafka_consumer_assigned(a.c) == 1 && sy_kafka_consumer_assigned(b.c) == 1, 20000));
    fprintf(stderr, "  rebalance to two members: %" PRIu64 " ms\n", now_ms() - started);
    /* b gets its partition's message again, as nothing was committed */
    CHECK(RUN_UNTIL(loop, b.received == 1, 10000));
    /* a's stale messages block its partition until done; done() must not store their offsets */
    CHECK(a.received == 2);
    app_release(&a);
    /* a's partition comes again from the start (held, not done): the pause did not survive the revoke */
    CHECK(RUN_UNTIL(loop, a.received == 3, 10000));
    CHECK(a.seen[0] + b.seen[0] == 2 && a.seen[1] + b.seen[1] == 2);
    for (size_t i = 2; i != 6; ++i)
        CHECK(a.seen[i] + b.seen[i] == 0);

    /* nothing was done() on a live assignment: nothing may be committed, not even at close */
    started = now_ms();
    sy_kafka_consumer_destroy(b.c);
    sy_kafka_consumer_destroy(a.c);
    fprintf(stderr, "  two consumers destroyed in %" PRIu64 " ms\n", now_ms() - started);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    CHECK(sy_kafka_cluster_apply_props(cluster, conf, errbuf, sizeof(errbuf)) == 0);
    CHECK(rd_kafka_conf_set(conf, "group.id", group, errbuf, sizeof(errbuf)) == RD_KAFKA_CONF_OK);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errbuf, sizeof(errbuf));
    CHECK(rk != NULL);
    if (rk != NULL) {
        rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(2);
        rd_kafka_topic_partition_list_add(list, topic, 0);
        rd_kafka_topic_partition_list_add(list, topic, 1);
        CHECK(rd_kafka_committed(rk, list, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR);
        CHECK(list->elems[0].offset == RD_KAFKA_OFFSET_INVALID && list->elems[1].offset == RD_KAFKA_OFFSET_INVALID);
        rd_kafka_topic_partition_list_destroy(list);
        rd_kafka_destroy(rk);
    }
    app_dispose(&a);
    app_dispose(&b);
    sy_kafka_producer_destroy(p);
    sy_kafka_cluster_destroy(cluster);
    loop_destroy(loop);
}

RUN_TESTS(T(cluster_config), T(produce_consume_resume), T(backpressure_and_broker_down), T(revoke_while_in_flight))
