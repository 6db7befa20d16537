/*
 * The process-wide cluster handle: where the brokers are (a real cluster, or librdkafka's mock cluster started here
 * as the embedded broker), the user's librdkafka properties, topic creation at start-up, and the log routing shared
 * by every handle. It does not own producers or consumers and keeps no connection of its own to a real cluster
 * (topic creation uses a short-lived admin handle).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include "common/log.h"
#include "common/mem.h"
#include "kafka/internal.h"

#define ADMIN_TIMEOUT_MS 10000

struct st_sy_kafka_cluster_t {
    char *bootstrap;
    /* embedded broker: the book-keeping handle the mock cluster hangs off, and the cluster itself */
    rd_kafka_t *mock_rk;
    rd_kafka_mock_cluster_t *mock;
    int mock_brokers;
    /* user properties, split at the first '=' */
    char **keys;
    char **values;
    size_t nprops;
    /* topics already ensured (start-up is usually single-threaded, a reload may not be) */
    pthread_mutex_t mutex;
    char **topics;
    size_t ntopics;
};

uint64_t sy_kafka_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void sy_kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    sy_log_level_t sylevel;
    if (level <= LOG_ERR)
        sylevel = SY_LOG_ERROR;
    else if (level == LOG_WARNING)
        sylevel = SY_LOG_WARN;
    else if (level <= LOG_INFO)
        sylevel = SY_LOG_INFO;
    else
        sylevel = SY_LOG_DEBUG;
    /* a broker connection failing is logged here on every retry and reported once more to the error callback,
     * which logs it without repeating itself: keep only the latter */
    if (strcmp(fac, "FAIL") == 0 && sylevel > SY_LOG_DEBUG) sylevel = SY_LOG_DEBUG;
    /* the commit librdkafka attempts while a closing member unassigns is refused when another member left first;
     * the offsets were committed just before (sy_kafka_consumer_commit at shutdown), so this one is only noise */
    if (strcmp(fac, "COMMITFAIL") == 0 && strstr(buf, "(unassigned partitions)") != NULL && sylevel > SY_LOG_DEBUG)
        sylevel = SY_LOG_DEBUG;
    if (sylevel < sy_log_min_level) return;
    sy_log(sylevel, "kafka", "%s [%s] %s", rk != NULL ? rd_kafka_name(rk) : "-", fac, buf);
}

/* The mock cluster's book-keeping handle has no bootstrap.servers by design: drop the warning saying so. */
static void mock_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    if (strcmp(fac, "CONFWARN") == 0 && strstr(buf, "bootstrap.servers") != NULL) return;
    sy_kafka_log_cb(rk, level, fac, buf);
}

void sy_kafka_errlog(sy_kafka_errlog_t *errlog, int level, const char *who, rd_kafka_resp_err_t err, const char *reason)
{
    uint64_t now = sy_kafka_now_ms();
    size_t i, oldest = 0;

    for (i = 0; i != errlog->n; ++i) {
        if (errlog->recent[i].err == err) break;
        if (errlog->recent[i].at_ms < errlog->recent[oldest].at_ms) oldest = i;
    }
    if (i != errlog->n && now - errlog->recent[i].at_ms < 60000) {
        sy_debug("kafka", "%s: %s (%s)", who, reason, rd_kafka_err2name(err));
        return;
    }
    if (i == errlog->n) {
        if (errlog->n < SY_KAFKA_ERRLOG_SLOTS)
            ++errlog->n;
        else
            i = oldest;
    }
    errlog->recent[i].err = err;
    errlog->recent[i].at_ms = now;
    sy_log((sy_log_level_t)level, "kafka", "%s: %s (%s)", who, reason, rd_kafka_err2name(err));
}

int sy_kafka_conf_set(rd_kafka_conf_t *conf, const char *name, const char *value, char *errbuf, size_t errbuf_size)
{
    char err[256];
    if (rd_kafka_conf_set(conf, name, value, err, sizeof(err)) != RD_KAFKA_CONF_OK) {
        snprintf(errbuf, errbuf_size, "kafka property %s=%s: %s", name, value, err);
        return -1;
    }
    return 0;
}

int sy_kafka_conf_set_int(rd_kafka_conf_t *conf, const char *name, int value, char *errbuf, size_t errbuf_size)
{
    char num[24];
    snprintf(num, sizeof(num), "%d", value);
    return sy_kafka_conf_set(conf, name, num, errbuf, errbuf_size);
}

int sy_kafka_cluster_apply_props(sy_kafka_cluster_t *cluster, rd_kafka_conf_t *conf, char *errbuf, size_t errbuf_size)
{
    rd_kafka_conf_set_log_cb(conf, sy_kafka_log_cb);
    /* reconnect.backoff.max.ms: without it a handle waits out up to 10 s of reconnect backoff after a broker comes
     * back, and a producer times its messages out that much later (platform-notes section 10) */
    if (sy_kafka_conf_set(conf, "client.id", "switchyard", errbuf, errbuf_size) != 0 ||
        sy_kafka_conf_set(conf, "bootstrap.servers", cluster->bootstrap, errbuf, errbuf_size) != 0 ||
        sy_kafka_conf_set(conf, "reconnect.backoff.max.ms", "1000", errbuf, errbuf_size) != 0)
        return -1;
    for (size_t i = 0; i != cluster->nprops; ++i)
        if (sy_kafka_conf_set(conf, cluster->keys[i], cluster->values[i], errbuf, errbuf_size) != 0) return -1;
    return 0;
}

static int start_mock(sy_kafka_cluster_t *cluster, char *errbuf, size_t errbuf_size)
{
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, mock_log_cb);
    if (sy_kafka_conf_set(conf, "client.id", "switchyard-embedded", errbuf, errbuf_size) != 0) {
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    if ((cluster->mock_rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err))) == NULL) {
        rd_kafka_conf_destroy(conf);
        snprintf(errbuf, errbuf_size, "embedded broker: %s", err);
        return -1;
    }
    if ((cluster->mock = rd_kafka_mock_cluster_new(cluster->mock_rk, cluster->mock_brokers)) == NULL) {
        snprintf(errbuf, errbuf_size, "embedded broker: could not start the mock cluster");
        return -1;
    }
    cluster->bootstrap = sy_strdup(rd_kafka_mock_cluster_bootstraps(cluster->mock));
    return 0;
}

sy_kafka_cluster_t *sy_kafka_cluster_create(const sy_kafka_cluster_config_t *cfg, char *errbuf, size_t errbuf_size)
{
    sy_kafka_cluster_t *cluster = sy_calloc(1, sizeof(*cluster));
    rd_kafka_conf_t *scratch = NULL;
    int ok = 0;

    pthread_mutex_init(&cluster->mutex, NULL);
    cluster->mock_brokers = cfg->mock_brokers > 0 ? cfg->mock_brokers : 1;

    /* split and validate the properties on a scratch configuration, before anything is started */
    cluster->keys = sy_calloc(cfg->nprops + 1, sizeof(char *));
    cluster->values = sy_calloc(cfg->nprops + 1, sizeof(char *));
    scratch = rd_kafka_conf_new();
    for (size_t i = 0; i != cfg->nprops; ++i) {
        const char *prop = cfg->props[i], *eq = strchr(prop, '=');
        if (eq == NULL || eq == prop) {
            snprintf(errbuf, errbuf_size, "kafka property '%s': expected key=value", prop);
            goto Exit;
        }
        cluster->keys[i] = sy_strndup(prop, (size_t)(eq - prop));
        cluster->values[i] = sy_strdup(eq + 1);
        cluster->nprops = i + 1;
        if (sy_kafka_conf_set(scratch, cluster->keys[i], cluster->values[i], errbuf, errbuf_size) != 0) goto Exit;
    }

    if (cfg->brokers != NULL) {
        if (cfg->brokers[0] == '\0') {
            snprintf(errbuf, errbuf_size, "kafka: empty broker list");
            goto Exit;
        }
        cluster->bootstrap = sy_strdup(cfg->brokers);
    } else {
        if (start_mock(cluster, errbuf, errbuf_size) != 0) goto Exit;
        sy_info("kafka", "embedded broker (librdkafka mock cluster, %d broker%s, in memory) listening on %s",
                cluster->mock_brokers, cluster->mock_brokers == 1 ? "" : "s", cluster->bootstrap);
    }
    ok = 1;

Exit:
    if (scratch != NULL) rd_kafka_conf_destroy(scratch);
    if (!ok) {
        sy_kafka_cluster_destroy(cluster);
        cluster = NULL;
    }
    return cluster;
}

const char *sy_kafka_cluster_bootstrap(sy_kafka_cluster_t *cluster)
{
    return cluster->bootstrap;
}

rd_kafka_mock_cluster_t *sy_kafka_cluster_mock(sy_kafka_cluster_t *cluster)
{
    return cluster->mock;
}

/* One CreateTopics round trip on `rk`; returns the topic's error (or the request's). */
static rd_kafka_resp_err_t create_topic(rd_kafka_t *rk, const char *topic, int partitions, int replication,
                                        char *reason, size_t reason_size)
{
    rd_kafka_NewTopic_t *newt = NULL;
    rd_kafka_AdminOptions_t *opts = NULL;
    rd_kafka_queue_t *queue = NULL;
    rd_kafka_event_t *ev = NULL;
    rd_kafka_resp_err_t err;
    char errstr[256];

    if ((newt = rd_kafka_NewTopic_new(topic, partitions, replication, errstr, sizeof(errstr))) == NULL) {
        snprintf(reason, reason_size, "%s", errstr);
        err = RD_KAFKA_RESP_ERR__INVALID_ARG;
        goto Exit;
    }
    opts = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_AdminOptions_set_request_timeout(opts, ADMIN_TIMEOUT_MS, errstr, sizeof(errstr));
    rd_kafka_AdminOptions_set_operation_timeout(opts, ADMIN_TIMEOUT_MS, errstr, sizeof(errstr));
    queue = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, &newt, 1, opts, queue);
    /* the request timeout above bounds this; the margin only guards against a lost result */
    if ((ev = rd_kafka_queue_poll(queue, ADMIN_TIMEOUT_MS + 5000)) == NULL) {
        snprintf(reason, reason_size, "no answer within %d ms", ADMIN_TIMEOUT_MS);
        err = RD_KAFKA_RESP_ERR__TIMED_OUT;
        goto Exit;
    }
    if ((err = rd_kafka_event_error(ev)) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(reason, reason_size, "%s", rd_kafka_event_error_string(ev));
        goto Exit;
    }
    size_t n;
    const rd_kafka_topic_result_t **results =
        rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
    err = n == 1 ? rd_kafka_topic_result_error(results[0]) : RD_KAFKA_RESP_ERR__FAIL;
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        const char *s = n == 1 ? rd_kafka_topic_result_error_string(results[0]) : NULL;
        snprintf(reason, reason_size, "%s", s != NULL ? s : rd_kafka_err2str(err));
    }

Exit:
    if (ev != NULL) rd_kafka_event_destroy(ev);
    if (queue != NULL) rd_kafka_queue_destroy(queue);
    if (opts != NULL) rd_kafka_AdminOptions_destroy(opts);
    if (newt != NULL) rd_kafka_NewTopic_destroy(newt);
    return err;
}

/* 1 when the cluster's metadata lists `topic`, 0 when not, -1 when the metadata could not be had. Asking for all
 * topics (not the one topic) does not trigger a broker's automatic topic creation. */
static int topic_exists(rd_kafka_t *rk, const char *topic)
{
    const struct rd_kafka_metadata *md = NULL;
    if (rd_kafka_metadata(rk, 1, NULL, &md, ADMIN_TIMEOUT_MS) != RD_KAFKA_RESP_ERR_NO_ERROR) return -1;
    int found = 0;
    for (int i = 0; i < md->topic_cnt && !found; ++i)
        found = strcmp(md->topics[i].topic, topic) == 0 && md->topics[i].err == RD_KAFKA_RESP_ERR_NO_ERROR;
    rd_kafka_metadata_destroy(md);
    return found;
}

static int ensure_on_cluster(sy_kafka_cluster_t *cluster, const char *topic, int partitions)
{
    char errbuf[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk = NULL;
    rd_kafka_resp_err_t err;
    int ret = -1;

    if (sy_kafka_cluster_apply_props(cluster, conf, errbuf, sizeof(errbuf)) != 0) goto Exit;
    if ((rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errbuf, sizeof(errbuf))) == NULL) goto Exit;
    conf = NULL;
    if (topic_exists(rk, topic) == 1) {
        sy_debug("kafka", "topic %s exists", topic);
        ret = 0;
        goto Exit;
    }
    err = create_topic(rk, topic, partitions, -1, errbuf, sizeof(errbuf));
    /* a broker older than 2.4 does not know "the default replication factor" */
    if (err == RD_KAFKA_RESP_ERR_INVALID_REPLICATION_FACTOR || err == RD_KAFKA_RESP_ERR_INVALID_REQUEST ||
        err == RD_KAFKA_RESP_ERR_UNSUPPORTED_VERSION)
        err = create_topic(rk, topic, partitions, 1, errbuf, sizeof(errbuf));
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        sy_info("kafka", "created topic %s (%d partition%s)", topic, partitions, partitions == 1 ? "" : "s");
    } else if (err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
        sy_debug("kafka", "topic %s exists", topic);
    } else {
        snprintf(errbuf + strlen(errbuf), sizeof(errbuf) - strlen(errbuf), " (%s)", rd_kafka_err2name(err));
        goto Exit;
    }
    ret = 0;

Exit:
    if (ret != 0) sy_error("kafka", "cannot create topic %s: %s", topic, errbuf);
    if (conf != NULL) rd_kafka_conf_destroy(conf);
    if (rk != NULL) rd_kafka_destroy(rk);
    return ret;
}

static int ensure_on_mock(sy_kafka_cluster_t *cluster, const char *topic, int partitions)
{
    int replication = cluster->mock_brokers < 3 ? cluster->mock_brokers : 3;
    rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(cluster->mock, topic, partitions, replication);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        sy_info("kafka", "created topic %s (%d partition%s) on the embedded broker", topic, partitions,
                partitions == 1 ? "" : "s");
    } else if (err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
        /* created earlier by the mock's automatic topic creation (4 partitions), e.g. by a client naming it */
        sy_debug("kafka", "topic %s exists on the embedded broker", topic);
    } else {
        sy_error("kafka", "cannot create topic %s on the embedded broker: %s", topic, rd_kafka_err2str(err));
        return -1;
    }
    return 0;
}

int sy_kafka_cluster_ensure_topic(sy_kafka_cluster_t *cluster, const char *topic, int partitions)
{
    int ret = 0;
    if (partitions < 1) partitions = 1;

    pthread_mutex_lock(&cluster->mutex);
    for (size_t i = 0; i != cluster->ntopics; ++i)
        if (strcmp(cluster->topics[i], topic) == 0) goto Exit;
    if ((ret = cluster->mock != NULL ? ensure_on_mock(cluster, topic, partitions)
                                     : ensure_on_cluster(cluster, topic, partitions)) != 0)
        goto Exit;
    cluster->topics = sy_realloc(cluster->topics, (cluster->ntopics + 1) * sizeof(char *));
    cluster->topics[cluster->ntopics++] = sy_strdup(topic);

Exit:
    pthread_mutex_unlock(&cluster->mutex);
    return ret;
}

void sy_kafka_cluster_destroy(sy_kafka_cluster_t *cluster)
{
    if (cluster == NULL) return;
    /* the mock cluster runs on its own thread and must go before the handle it hangs off */
    if (cluster->mock != NULL) rd_kafka_mock_cluster_destroy(cluster->mock);
    if (cluster->mock_rk != NULL) rd_kafka_destroy(cluster->mock_rk);
    for (size_t i = 0; i != cluster->nprops; ++i) {
        free(cluster->keys[i]);
        free(cluster->values[i]);
    }
    free(cluster->keys);
    free(cluster->values);
    for (size_t i = 0; i != cluster->ntopics; ++i)
        free(cluster->topics[i]);
    free(cluster->topics);
    free(cluster->bootstrap);
    pthread_mutex_destroy(&cluster->mutex);
    free(cluster);
}
