/*
 * Logging to stderr, one event per line. See log.h. No buffering: a line is formatted into a stack buffer and
 * written with one write(2), so lines from different threads never interleave.
 */
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include "common/log.h"

sy_log_level_t sy_log_min_level = SY_LOG_INFO;

static const char *level_names[] = {"debug", "info", "warn", "error"};

int sy_log_parse_level(const char *name, sy_log_level_t *level)
{
    for (int i = 0; i < 4; ++i) {
        if (strcmp(name, level_names[i]) == 0) {
            *level = (sy_log_level_t)i;
            return 0;
        }
    }
    return -1;
}

void sy_vlog(sy_log_level_t level, const char *module, const char *fmt, va_list ap)
{
    if (level < sy_log_min_level) return;

    char line[4096], msg[3800];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);

    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    if (n < 0) return;
    /* one event per line: escape newlines that a Lua traceback or a peer's message may contain */
    size_t off = (size_t)snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %s %s: ", tm.tm_year + 1900,
                                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(tv.tv_usec / 1000),
                                  level_names[level], module);
    for (const char *p = msg; *p != '\0' && off < sizeof(line) - 8; ++p) {
        if (*p == '\n') {
            line[off++] = '\\';
            line[off++] = 'n';
        } else if (*p == '\t') {
            line[off++] = ' ';
        } else {
            line[off++] = *p;
        }
    }
    if ((size_t)n >= sizeof(msg) && off < sizeof(line) - 8) {
        memcpy(line + off, "...", 3);
        off += 3;
    }
    line[off++] = '\n';
    ssize_t r = write(STDERR_FILENO, line, off);
    (void)r;
}

void sy_log(sy_log_level_t level, const char *module, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sy_vlog(level, module, fmt, ap);
    va_end(ap);
}
