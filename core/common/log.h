/*
 * Logging: one line per event on stderr, "2026-11-22T04:14:22.123Z level module: message".
 * Thread-safe (each line is written with a single write(2)). It does not rotate, buffer or ship logs anywhere:
 * stderr is the contract, the process supervisor owns the rest.
 */
#ifndef SY_COMMON_LOG_H
#define SY_COMMON_LOG_H

#include <stdarg.h>

typedef enum { SY_LOG_DEBUG = 0, SY_LOG_INFO, SY_LOG_WARN, SY_LOG_ERROR } sy_log_level_t;

/* The minimum level printed; set once at start-up, read by every thread. */
extern sy_log_level_t sy_log_min_level;

/* Parses "debug", "info", "warn" or "error"; returns 0 and sets *level, or -1 for an unknown name. */
int sy_log_parse_level(const char *name, sy_log_level_t *level);

/* Writes one line. `module` is a short constant ("http", "kafka", "lua", ...). Newlines in the message are
 * escaped so that a line is always one event. Callable from any thread. */
void sy_log(sy_log_level_t level, const char *module, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void sy_vlog(sy_log_level_t level, const char *module, const char *fmt, va_list ap);

#define sy_debug(module, ...)                                                                                          \
    do {                                                                                                               \
        if (sy_log_min_level <= SY_LOG_DEBUG) sy_log(SY_LOG_DEBUG, module, __VA_ARGS__);                               \
    } while (0)
#define sy_info(module, ...) sy_log(SY_LOG_INFO, module, __VA_ARGS__)
#define sy_warn(module, ...) sy_log(SY_LOG_WARN, module, __VA_ARGS__)
#define sy_error(module, ...) sy_log(SY_LOG_ERROR, module, __VA_ARGS__)

#endif
