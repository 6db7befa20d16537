/*
 * Per-thread metric registries and their Prometheus rendering; see metrics.h. A registry is an open-addressing hash
 * of series keyed by "name{labels}". Rendering copies every series out under each registry's lock, sorts by key and
 * merges equal keys, so the output groups each metric family with one HELP and TYPE line.
 */
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "common/mem.h"
#include "common/metrics.h"

const double sy_metrics_buckets[SY_METRICS_NBUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                        0.1,    0.25,  0.5,    1,     2.5,  5,     10};

static const struct {
    const char *name;
    sy_metric_type_t type;
    const char *help;
} families[] = {
    {"switchyard_http_requests_total", SY_METRIC_COUNTER, "HTTP requests answered, by route, method and status."},
    {"switchyard_http_request_duration_seconds", SY_METRIC_HISTOGRAM, "HTTP request duration, by route."},
    {"switchyard_kafka_produced_total", SY_METRIC_COUNTER, "Kafka records handed to the producer, by topic."},
    {"switchyard_kafka_acked_total", SY_METRIC_COUNTER, "Kafka records acknowledged by the broker, by topic."},
    {"switchyard_kafka_failed_total", SY_METRIC_COUNTER,
     "Kafka records refused or not delivered, by topic and reason."},
    {"switchyard_kafka_delivery_seconds", SY_METRIC_HISTOGRAM, "Time from produce to the broker's acknowledgement."},
    {"switchyard_kafka_consumed_total", SY_METRIC_COUNTER, "Kafka records handled by topic handlers, by topic."},
    {"switchyard_kafka_handler_errors_total", SY_METRIC_COUNTER, "Failed topic handler attempts, by topic."},
    {"switchyard_kafka_dlq_total", SY_METRIC_COUNTER, "Records sent to a dead-letter topic, by original topic."},
    {"switchyard_kafka_consumer_lag", SY_METRIC_GAUGE,
     "Records behind the high watermark, by group, topic and partition."},
    {"switchyard_kafka_requests_total", SY_METRIC_COUNTER, "Request-reply calls, by topic and outcome."},
    {"switchyard_kafka_late_replies_total", SY_METRIC_COUNTER, "Replies that matched no waiting request."},
    {"switchyard_telemetry_records_total", SY_METRIC_COUNTER, "Request telemetry records, by outcome."},
    {"switchyard_reloads_total", SY_METRIC_COUNTER, "Routes reloads, by result."},
    {"switchyard_lua_errors_total", SY_METRIC_COUNTER, "Lua errors in handlers (500s and handler failures)."},
    {"switchyard_workers", SY_METRIC_GAUGE, "Worker threads."},
    {"switchyard_inflight_handlers", SY_METRIC_GAUGE, "Handlers (coroutines) running or waiting."},
};

typedef struct {
    char *key; /* "name\0labels" */
    size_t name_len;
    sy_metric_type_t type;
    double value; /* counter, gauge; histogram: sum */
    double count;
    double buckets[SY_METRICS_NBUCKETS];
} series_t;

struct st_sy_metrics_t {
    pthread_mutex_t mutex;
    series_t *slots;
    size_t capacity, size;
};

static sy_metric_type_t family_type(const char *name, sy_metric_type_t fallback)
{
    for (size_t i = 0; i < sizeof(families) / sizeof(families[0]); ++i)
        if (strcmp(families[i].name, name) == 0) return families[i].type;
    return fallback;
}

static const char *family_help(const char *name)
{
    for (size_t i = 0; i < sizeof(families) / sizeof(families[0]); ++i)
        if (strcmp(families[i].name, name) == 0) return families[i].help;
    return "switchyard metric.";
}

sy_metrics_t *sy_metrics_create(void)
{
    sy_metrics_t *m = sy_calloc(1, sizeof(*m));
    pthread_mutex_init(&m->mutex, NULL);
    m->capacity = 64;
    m->slots = sy_calloc(m->capacity, sizeof(series_t));
    return m;
}

void sy_metrics_destroy(sy_metrics_t *m)
{
    if (m == NULL) return;
    for (size_t i = 0; i < m->capacity; ++i)
        free(m->slots[i].key);
    free(m->slots);
    pthread_mutex_destroy(&m->mutex);
    free(m);
}

static size_t hash(const char *name, const char *labels)
{
    size_t h = 1469598103934665603ull;
    for (const char *p = name; *p; ++p)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    h = (h ^ 0xff) * 1099511628211ull;
    for (const char *p = labels; *p; ++p)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    return h;
}

static int key_equal(const series_t *s, const char *name, size_t nlen, const char *labels)
{
    return s->name_len == nlen && memcmp(s->key, name, nlen) == 0 && strcmp(s->key + nlen + 1, labels) == 0;
}

static void grow(sy_metrics_t *m);

/* the series for name{labels}, created when missing; called with the lock held */
static series_t *lookup(sy_metrics_t *m, const char *name, const char *labels, sy_metric_type_t type)
{
    size_t nlen = strlen(name);
    if ((m->size + 1) * 2 > m->capacity) grow(m);
    for (size_t i = hash(name, labels) & (m->capacity - 1);; i = (i + 1) & (m->capacity - 1)) {
        series_t *s = &m->slots[i];
        if (s->key == NULL) {
            size_t llen = strlen(labels);
            s->key = sy_malloc(nlen + llen + 2);
            memcpy(s->key, name, nlen + 1);
            memcpy(s->key + nlen + 1, labels, llen + 1);
            s->name_len = nlen;
            s->type = family_type(name, type);
            ++m->size;
            return s;
        }
        if (key_equal(s, name, nlen, labels)) return s;
    }
}

static void grow(sy_metrics_t *m)
{
    series_t *old = m->slots;
    size_t oldcap = m->capacity;
    m->capacity *= 2;
    m->slots = sy_calloc(m->capacity, sizeof(series_t));
    for (size_t i = 0; i < oldcap; ++i) {
        if (old[i].key == NULL) continue;
        const char *name = old[i].key, *labels = old[i].key + old[i].name_len + 1;
        for (size_t j = hash(name, labels) & (m->capacity - 1);; j = (j + 1) & (m->capacity - 1)) {
            if (m->slots[j].key == NULL) {
                m->slots[j] = old[i];
                break;
            }
        }
    }
    free(old);
}

void sy_metrics_add(sy_metrics_t *m, const char *name, const char *labels, double delta)
{
    pthread_mutex_lock(&m->mutex);
    lookup(m, name, labels, SY_METRIC_COUNTER)->value += delta;
    pthread_mutex_unlock(&m->mutex);
}

void sy_metrics_set(sy_metrics_t *m, const char *name, const char *labels, double value)
{
    pthread_mutex_lock(&m->mutex);
    lookup(m, name, labels, SY_METRIC_GAUGE)->value = value;
    pthread_mutex_unlock(&m->mutex);
}

void sy_metrics_observe(sy_metrics_t *m, const char *name, const char *labels, double value)
{
    pthread_mutex_lock(&m->mutex);
    series_t *s = lookup(m, name, labels, SY_METRIC_HISTOGRAM);
    s->value += value;
    s->count += 1;
    for (size_t i = 0; i < SY_METRICS_NBUCKETS; ++i)
        if (value <= sy_metrics_buckets[i]) s->buckets[i] += 1; /* cumulative, as Prometheus wants them */
    pthread_mutex_unlock(&m->mutex);
}

const char *sy_metrics_escape(char *buf, size_t size, const char *value)
{
    size_t o = 0;
    for (const char *p = value; *p != '\0' && o + 3 < size; ++p) {
        if (*p == '\\' || *p == '"') {
            buf[o++] = '\\';
            buf[o++] = *p;
        } else if (*p == '\n') {
            buf[o++] = '\\';
            buf[o++] = 'n';
        } else {
            buf[o++] = *p;
        }
    }
    buf[o] = '\0';
    return buf;
}

static int cmp_series(const void *a, const void *b)
{
    const series_t *x = a, *y = b;
    int c = strcmp(x->key, y->key); /* name first (it ends at the NUL) */
    if (c != 0) return c;
    return strcmp(x->key + x->name_len + 1, y->key + y->name_len + 1);
}

typedef struct {
    char *buf;
    size_t len, cap;
} out_t;

static void out_printf(out_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void out_printf(out_t *o, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
        va_end(ap);
        if (n >= 0 && (size_t)n < o->cap - o->len) {
            o->len += (size_t)n;
            return;
        }
        o->cap = o->cap * 2 + (size_t)(n > 0 ? n : 0);
        o->buf = sy_realloc(o->buf, o->cap);
    }
}

static void render_value(out_t *o, double v)
{
    if (isnan(v))
        out_printf(o, "NaN\n");
    else if (isinf(v))
        out_printf(o, "%s\n", v > 0 ? "+Inf" : "-Inf");
    else if (fabs(v) < 9007199254740992.0 && v == (double)(long long)v)
        out_printf(o, "%lld\n", (long long)v);
    else
        out_printf(o, "%.9g\n", v);
}

char *sy_metrics_render(sy_metrics_t *const *registries, size_t n, size_t *len)
{
    size_t total = 0, k = 0;
    for (size_t i = 0; i < n; ++i) {
        pthread_mutex_lock(&registries[i]->mutex);
        total += registries[i]->size;
        pthread_mutex_unlock(&registries[i]->mutex);
    }
    series_t *all = sy_calloc(total + 1, sizeof(series_t));
    for (size_t i = 0; i < n; ++i) {
        sy_metrics_t *m = registries[i];
        pthread_mutex_lock(&m->mutex);
        for (size_t j = 0; j < m->capacity && k < total; ++j) {
            if (m->slots[j].key == NULL) continue;
            all[k] = m->slots[j];
            size_t klen = m->slots[j].name_len + 1 + strlen(m->slots[j].key + m->slots[j].name_len + 1) + 1;
            all[k].key = sy_malloc(klen);
            memcpy(all[k].key, m->slots[j].key, klen);
            ++k;
        }
        pthread_mutex_unlock(&m->mutex);
    }
    qsort(all, k, sizeof(series_t), cmp_series);

    out_t o = {sy_malloc(4096), 0, 4096};
    o.buf[0] = '\0';
    const char *family = NULL;
    for (size_t i = 0; i < k;) {
        series_t s = all[i];
        size_t j = i + 1;
        while (j < k && cmp_series(&all[i], &all[j]) == 0) { /* merge the same series from several workers */
            s.value += all[j].value;
            s.count += all[j].count;
            for (size_t b = 0; b < SY_METRICS_NBUCKETS; ++b)
                s.buckets[b] += all[j].buckets[b];
            ++j;
        }
        const char *name = s.key, *labels = s.key + s.name_len + 1;
        if (family == NULL || strcmp(family, name) != 0) {
            static const char *types[] = {"counter", "gauge", "histogram"};
            out_printf(&o, "# HELP %s %s\n# TYPE %s %s\n", name, family_help(name), name, types[s.type]);
            family = name;
        }
        if (s.type == SY_METRIC_HISTOGRAM) {
            const char *sep = labels[0] ? "," : "";
            for (size_t b = 0; b < SY_METRICS_NBUCKETS; ++b) {
                out_printf(&o, "%s_bucket{%s%sle=\"%g\"} ", name, labels, sep, sy_metrics_buckets[b]);
                render_value(&o, s.buckets[b]);
            }
            out_printf(&o, "%s_bucket{%s%sle=\"+Inf\"} ", name, labels, sep);
            render_value(&o, s.count);
            out_printf(&o, labels[0] ? "%s_sum{%s} " : "%s_sum%s ", name, labels);
            render_value(&o, s.value);
            out_printf(&o, labels[0] ? "%s_count{%s} " : "%s_count%s ", name, labels);
            render_value(&o, s.count);
        } else {
            out_printf(&o, labels[0] ? "%s{%s} " : "%s%s ", name, labels);
            render_value(&o, s.value);
        }
        i = j;
    }
    for (size_t i = 0; i < k; ++i)
        free(all[i].key);
    free(all);
    if (len != NULL) *len = o.len;
    return o.buf;
}
