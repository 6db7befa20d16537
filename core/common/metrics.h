/*
 * Metrics: labelled counters, gauges and histograms kept per thread (one registry per worker, so the hot path takes
 * an uncontended lock), summed over registries when rendered in the Prometheus text format (version 0.0.4).
 * Series are created on first use. It does not export anything by itself: the admin listener renders it.
 */
#ifndef SY_COMMON_METRICS_H
#define SY_COMMON_METRICS_H

#include <stddef.h>

typedef struct st_sy_metrics_t sy_metrics_t;

typedef enum { SY_METRIC_COUNTER, SY_METRIC_GAUGE, SY_METRIC_HISTOGRAM } sy_metric_type_t;

/* Histogram buckets (seconds), shared by every histogram. */
#define SY_METRICS_NBUCKETS 14
extern const double sy_metrics_buckets[SY_METRICS_NBUCKETS];

sy_metrics_t *sy_metrics_create(void);
void sy_metrics_destroy(sy_metrics_t *m);

/* `name` must be a metric name known to the HELP table in metrics.c (or any [a-z_:]+ name; unknown ones get a generic
 * HELP). `labels` is the inside of the braces, already escaped (see sy_metrics_escape), or "" for none. Both are
 * copied on first use. Callable from any thread. */
void sy_metrics_add(sy_metrics_t *m, const char *name, const char *labels, double delta);
void sy_metrics_set(sy_metrics_t *m, const char *name, const char *labels, double value);
void sy_metrics_observe(sy_metrics_t *m, const char *name, const char *labels, double value);

/* Escapes a label value (backslash, double quote, newline) into buf; returns buf. Truncates to size. */
const char *sy_metrics_escape(char *buf, size_t size, const char *value);

/* Renders the sum of `n` registries. Returns a malloc'd NUL-terminated text (the caller frees it). */
char *sy_metrics_render(sy_metrics_t *const *registries, size_t n, size_t *len);

#endif
