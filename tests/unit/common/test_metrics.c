/*
 * Unit tests of the metric registries (core/common/metrics.h): counters, gauges and histograms, the exact Prometheus
 * text of a small case (one HELP and TYPE per family, cumulative buckets, +Inf, _sum, _count), the merge of several
 * registries at render time, label escaping, growth past the initial table and concurrent writers.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "common/metrics.h"
#include "test.h"

/* Number of occurrences of `needle` in `text`. */
static size_t count(const char *text, const char *needle)
{
    size_t n = 0;
    for (const char *p = text; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        ++n;
    return n;
}

/* The value on the line "<series> <value>", or NAN when there is no such line. */
static double value_of(const char *text, const char *series)
{
    size_t len = strlen(series);
    for (const char *line = text; line != NULL && *line != '\0';) {
        if (strncmp(line, series, len) == 0 && line[len] == ' ') return strtod(line + len + 1, NULL);
        line = strchr(line, '\n');
        if (line != NULL) ++line;
    }
    return NAN;
}

static char *render1(sy_metrics_t *m)
{
    return sy_metrics_render(&m, 1, NULL);
}

TEST(test_exact_text)
{
    sy_metrics_t *regs[3] = {sy_metrics_create(), sy_metrics_create(), sy_metrics_create()}; /* the last stays empty */
    sy_metrics_add(regs[0], "switchyard_http_requests_total", "route=\"/a\",status=\"200\"", 2);
    sy_metrics_add(regs[1], "switchyard_http_requests_total", "route=\"/a\",status=\"200\"", 3);
    sy_metrics_add(regs[1], "switchyard_http_requests_total", "route=\"/a\",status=\"404\"", 1);
    sy_metrics_observe(regs[0], "switchyard_kafka_delivery_seconds", "", 0.003);
    sy_metrics_observe(regs[0], "switchyard_kafka_delivery_seconds", "", 20);
    sy_metrics_observe(regs[1], "switchyard_kafka_delivery_seconds", "", 0.2);
    sy_metrics_set(regs[0], "switchyard_workers", "", 2);
    sy_metrics_add(regs[1], "my_custom_total", "", 0.5); /* not in the HELP table */

    size_t len = 0;
    char *text = sy_metrics_render(regs, 3, &len);
    const char *expected =
        "# HELP my_custom_total switchyard metric.\n"
        "# TYPE my_custom_total counter\n"
        "my_custom_total 0.5\n"
        "# HELP switchyard_http_requests_total HTTP requests answered, by route, method and status.\n"
        "# TYPE switchyard_http_requests_total counter\n"
        "switchyard_http_requests_total{route=\"/a\",status=\"200\"} 5\n"
        "switchyard_http_requests_total{route=\"/a\",status=\"404\"} 1\n"
        "# HELP switchyard_kafka_delivery_seconds Time from produce to the broker's acknowledgement.\n"
        "# TYPE switchyard_kafka_delivery_seconds histogram\n"
        "switchyard_kafka_delivery_seconds_bucket{le=\"0.0005\"} 0\n"
        "switchyard_kafka_delivery_seconds_bucket{le=\"0.001\"} 0\n"
        "switchyard_kafka_delivery_seconds_bucket{le=\"0.0025\"} 0\n"
        "switchyard_kafka_delivery_seconds_bucket{le=\"0.005\"} 1\n"
        "switchyard_kafka_delivery_seconds_bucket{le=\"0.01\"} 1\n"
        "switchyard_kafka_delivery_seconds_bucket{le=\"0.025\"} 1\n"
        "switchyard_kafka_delivery_seconds_bucket{le=\"0.05\"} 1\n"
        "switchyard_kafka_delivery_seconds_bucket{le=\"0.1\"} 1\n"
        "switchyard_kafka_delivery_seconds_bucket{le=\"0.25\"} 2\n"
        "switchyard_kafka_delivery_seconds_bucket{le=\"0.5\"} 2\n"
        "switchyard_kafka_delivery_seconds_bucket{le=\"1\"} 2\n"
        "switchyard_kafka_delivery_seconds_bucket{le=\"2.5\"} 2\n"
        "switchyard_kafka_delivery_seconds_bucket{le=\"5\"} 2\n"
        "switchyard_kafka_delivery_seconds_bucket{le=\"10\"} 2\n"
        "switchyard_kafka_delivery_seconds_bucket{le=\"+Inf\"} 3\n"
        "switchyard_kafka_delivery_seconds_sum 20.203\n"
        "switchyard_kafka_delivery_seconds_count 3\n"
        "# HELP switchyard_workers Worker threads.\n"
        "# TYPE switchyard_workers gauge\n"
        "switchyard_workers 2\n";
    CHECK_STR(text, expected);
    CHECK(len == strlen(expected));
    free(text);
    for (int i = 0; i < 3; ++i)
        sy_metrics_destroy(regs[i]);
}

TEST(test_counter_gauge_histogram)
{
    sy_metrics_t *m = sy_metrics_create();
    sy_metrics_add(m, "switchyard_kafka_acked_total", "topic=\"t\"", 1);
    sy_metrics_add(m, "switchyard_kafka_acked_total", "topic=\"t\"", 41);
    /* a gauge keeps the last value, down as well as up */
    sy_metrics_set(m, "switchyard_inflight_handlers", "", 7);
    sy_metrics_set(m, "switchyard_inflight_handlers", "", 3);
    /* labelled histogram; a value on a bucket bound counts in that bucket (le = less or equal) */
    const char *l = "route=\"/x\"";
    sy_metrics_observe(m, "switchyard_http_request_duration_seconds", l, 0.001);
    sy_metrics_observe(m, "switchyard_http_request_duration_seconds", l, 0.0001);
    sy_metrics_observe(m, "switchyard_http_request_duration_seconds", l, 1000);

    char *text = render1(m);
    CHECK(value_of(text, "switchyard_kafka_acked_total{topic=\"t\"}") == 42);
    CHECK(value_of(text, "switchyard_inflight_handlers") == 3);
    CHECK(strstr(text, "# TYPE switchyard_inflight_handlers gauge\n") != NULL);
    const char *h = "switchyard_http_request_duration_seconds";
    char series[256];
    snprintf(series, sizeof(series), "%s_bucket{route=\"/x\",le=\"0.0005\"}", h);
    CHECK(value_of(text, series) == 1);
    snprintf(series, sizeof(series), "%s_bucket{route=\"/x\",le=\"0.001\"}", h);
    CHECK(value_of(text, series) == 2);
    snprintf(series, sizeof(series), "%s_bucket{route=\"/x\",le=\"10\"}", h);
    CHECK(value_of(text, series) == 2);
    snprintf(series, sizeof(series), "%s_bucket{route=\"/x\",le=\"+Inf\"}", h);
    CHECK(value_of(text, series) == 3);
    snprintf(series, sizeof(series), "%s_sum{route=\"/x\"}", h);
    CHECK(fabs(value_of(text, series) - 1000.0011) < 1e-6);
    snprintf(series, sizeof(series), "%s_count{route=\"/x\"}", h);
    CHECK(value_of(text, series) == 3);
    CHECK(count(text, "# TYPE switchyard_http_request_duration_seconds histogram\n") == 1);
    CHECK(count(text, h) == 1 /* HELP */ + 1 /* TYPE */ + SY_METRICS_NBUCKETS + 1 + 2);
    free(text);
    sy_metrics_destroy(m);
}

TEST(test_merge_across_registries)
{
    enum { N = 4 };
    sy_metrics_t *regs[N];
    for (int i = 0; i < N; ++i) {
        regs[i] = sy_metrics_create();
        sy_metrics_add(regs[i], "switchyard_kafka_produced_total", "topic=\"a\"", i + 1); /* 1+2+3+4 */
        if (i % 2 == 0) sy_metrics_add(regs[i], "switchyard_kafka_produced_total", "topic=\"b\"", 10);
        sy_metrics_observe(regs[i], "switchyard_kafka_delivery_seconds", "", 0.01 * (i + 1));
    }
    char *text = sy_metrics_render(regs, N, NULL);
    CHECK(value_of(text, "switchyard_kafka_produced_total{topic=\"a\"}") == 10);
    CHECK(value_of(text, "switchyard_kafka_produced_total{topic=\"b\"}") == 20);
    /* one HELP and one TYPE per family, whatever the number of registries and label sets */
    CHECK(count(text, "# HELP switchyard_kafka_produced_total ") == 1);
    CHECK(count(text, "# TYPE switchyard_kafka_produced_total counter\n") == 1);
    CHECK(count(text, "# HELP switchyard_kafka_delivery_seconds ") == 1);
    CHECK(count(text, "switchyard_kafka_produced_total{topic=\"a\"} ") == 1);
    /* buckets are merged bucket by bucket: 0.01 | 0.02 | 0.03 | 0.04 */
    CHECK(value_of(text, "switchyard_kafka_delivery_seconds_bucket{le=\"0.01\"}") == 1);
    CHECK(value_of(text, "switchyard_kafka_delivery_seconds_bucket{le=\"0.025\"}") == 2);
    CHECK(value_of(text, "switchyard_kafka_delivery_seconds_bucket{le=\"0.05\"}") == 4);
    CHECK(value_of(text, "switchyard_kafka_delivery_seconds_count") == 4);
    CHECK(fabs(value_of(text, "switchyard_kafka_delivery_seconds_sum") - 0.1) < 1e-9);
    free(text);

    /* nothing at all renders as an empty text */
    size_t len = 99;
    text = sy_metrics_render(regs, 0, &len);
    CHECK_STR(text, "");
    CHECK(len == 0);
    free(text);
    for (int i = 0; i < N; ++i)
        sy_metrics_destroy(regs[i]);
}

TEST(test_escape)
{
    char buf[64];
    CHECK_STR(sy_metrics_escape(buf, sizeof(buf), "plain /users/:id"), "plain /users/:id");
    CHECK_STR(sy_metrics_escape(buf, sizeof(buf), "a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    CHECK_STR(sy_metrics_escape(buf, sizeof(buf), ""), "");
    CHECK_STR(sy_metrics_escape(buf, sizeof(buf), "caf\xc3\xa9"), "caf\xc3\xa9");
    /* truncation never splits an escape sequence and always terminates */
    char small[4];
    CHECK_STR(sy_metrics_escape(small, sizeof(small), "\"\"\""), "\\\"");
    CHECK_STR(sy_metrics_escape(small, sizeof(small), "abcdef"), "a");
    char one[1];
    CHECK_STR(sy_metrics_escape(one, sizeof(one), "abc"), "");

    /* an escaped value renders as a valid label */
    sy_metrics_t *m = sy_metrics_create();
    char labels[128];
    snprintf(labels, sizeof(labels), "topic=\"%s\"", sy_metrics_escape(buf, sizeof(buf), "we\"ird\ntopic"));
    sy_metrics_add(m, "switchyard_kafka_consumed_total", labels, 1);
    char *text = render1(m);
    CHECK(strstr(text, "switchyard_kafka_consumed_total{topic=\"we\\\"ird\\ntopic\"} 1\n") != NULL);
    CHECK(count(text, "\n") == 3); /* HELP, TYPE, the series: the newline stayed escaped */
    free(text);
    sy_metrics_destroy(m);
}

/* The text format writes non-finite values as +Inf, -Inf and NaN; Prometheus refuses a scrape with "inf" or "-nan".
 * (metrics.c render_value also converts them to long long, which is undefined behaviour.) */
TEST(test_render_non_finite_values)
{
    sy_metrics_t *m = sy_metrics_create();
    sy_metrics_set(m, "g_pos", "", INFINITY);
    sy_metrics_set(m, "g_neg", "", -INFINITY);
    sy_metrics_set(m, "g_nan", "", NAN);
    sy_metrics_set(m, "g_big", "", 1e20);
    char *text = render1(m);
    CHECK(strstr(text, "\ng_pos +Inf\n") != NULL);
    CHECK(strstr(text, "\ng_neg -Inf\n") != NULL);
    CHECK(strstr(text, "\ng_nan NaN\n") != NULL);
    CHECK(value_of(text, "g_big") == 1e20);
    free(text);
    sy_metrics_destroy(m);
}

TEST(test_growth)
{
    sy_metrics_t *m = sy_metrics_create();
    char labels[64];
    for (int round = 0; round < 2; ++round) {
        for (int i = 0; i < 1000; ++i) {
            snprintf(labels, sizeof(labels), "i=\"%d\"", i);
            sy_metrics_add(m, "switchyard_kafka_consumed_total", labels, i);
        }
    }
    sy_metrics_observe(m, "switchyard_kafka_delivery_seconds", "", 0.1);
    char *text = render1(m);
    CHECK(count(text, "\nswitchyard_kafka_consumed_total{i=") == 1000);
    CHECK(count(text, "# HELP switchyard_kafka_consumed_total ") == 1);
    int ok = 1;
    for (int i = 0; i < 1000; ++i) {
        char series[96];
        snprintf(series, sizeof(series), "switchyard_kafka_consumed_total{i=\"%d\"}", i);
        ok &= value_of(text, series) == 2.0 * i;
    }
    CHECK(ok);
    CHECK(value_of(text, "switchyard_kafka_delivery_seconds_count") == 1);
    free(text);
    sy_metrics_destroy(m);
}

enum { NTHREADS = 4, NADDS = 50000, NSERIES = 200 };

static void *writer(void *arg)
{
    sy_metrics_t *m = arg;
    char labels[64];
    for (int i = 0; i < NADDS; ++i) {
        sy_metrics_add(m, "switchyard_kafka_consumed_total", "topic=\"shared\"", 1);
        if (i < NSERIES) {
            /* new series while the others write: the table grows under contention */
            snprintf(labels, sizeof(labels), "topic=\"t%p-%d\"", (void *)pthread_self(), i);
            sy_metrics_observe(m, "switchyard_kafka_delivery_seconds", labels, 0.001);
        }
    }
    return NULL;
}

static void *reader(void *arg)
{
    sy_metrics_t *m = arg;
    for (int i = 0; i < 20; ++i)
        free(sy_metrics_render(&m, 1, NULL));
    return NULL;
}

TEST(test_concurrent_writers)
{
    sy_metrics_t *m = sy_metrics_create();
    pthread_t threads[NTHREADS + 1];
    for (int i = 0; i < NTHREADS; ++i)
        pthread_create(&threads[i], NULL, writer, m);
    pthread_create(&threads[NTHREADS], NULL, reader, m);
    for (int i = 0; i <= NTHREADS; ++i)
        pthread_join(threads[i], NULL);
    char *text = render1(m);
    CHECK(value_of(text, "switchyard_kafka_consumed_total{topic=\"shared\"}") == (double)NTHREADS * NADDS);
    CHECK(count(text, "switchyard_kafka_delivery_seconds_count{") == NTHREADS * NSERIES);
    free(text);
    sy_metrics_destroy(m);
    sy_metrics_destroy(NULL);
}

RUN_TESTS(T(test_exact_text), T(test_counter_gauge_histogram), T(test_merge_across_registries), T(test_escape),
          T(test_render_non_finite_values), T(test_growth), T(test_concurrent_writers))
