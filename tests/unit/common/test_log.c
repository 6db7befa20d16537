/*
 * Unit tests of the logger (core/common/log.h): level names, the line format, the level filter, and that one call is
 * one line whatever the message holds (newlines escaped, long messages truncated, threads not interleaved). stderr
 * is redirected to a temporary file with dup2 while a test logs, then read back.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "common/log.h"
#include "test.h"

static FILE *capture_file;
static int saved_stderr = -1;

static void capture_begin(void)
{
    capture_file = tmpfile();
    fflush(stderr);
    saved_stderr = dup(STDERR_FILENO);
    dup2(fileno(capture_file), STDERR_FILENO);
}

/* Restores stderr and returns what was written meanwhile (malloc'd, NUL-terminated). */
static char *capture_end(size_t *len)
{
    dup2(saved_stderr, STDERR_FILENO);
    close(saved_stderr);
    off_t size = lseek(fileno(capture_file), 0, SEEK_END);
    if (size < 0) size = 0;
    char *text = calloc(1, (size_t)size + 1);
    if (size > 0 && pread(fileno(capture_file), text, (size_t)size, 0) != size) text[0] = '\0';
    fclose(capture_file);
    if (len != NULL) *len = (size_t)size;
    return text;
}

static size_t count_char(const char *s, size_t len, char c)
{
    size_t n = 0;
    for (size_t i = 0; i < len; ++i)
        n += s[i] == c;
    return n;
}

TEST(test_parse_level)
{
    sy_log_level_t level = SY_LOG_ERROR;
    CHECK(sy_log_parse_level("debug", &level) == 0 && level == SY_LOG_DEBUG);
    CHECK(sy_log_parse_level("info", &level) == 0 && level == SY_LOG_INFO);
    CHECK(sy_log_parse_level("warn", &level) == 0 && level == SY_LOG_WARN);
    CHECK(sy_log_parse_level("error", &level) == 0 && level == SY_LOG_ERROR);
    /* unknown names fail and leave the level alone */
    level = SY_LOG_INFO;
    CHECK(sy_log_parse_level("WARN", &level) == -1);
    CHECK(sy_log_parse_level("warning", &level) == -1);
    CHECK(sy_log_parse_level("err", &level) == -1);
    CHECK(sy_log_parse_level("", &level) == -1);
    CHECK(sy_log_parse_level("info ", &level) == -1);
    CHECK(level == SY_LOG_INFO);
}

TEST(test_line_format)
{
    sy_log_min_level = SY_LOG_INFO;
    capture_begin();
    sy_info("http", "listening on %s:%d", "127.0.0.1", 8080);
    size_t len;
    char *text = capture_end(&len);
    int y, mo, d, h, mi, s, ms, n = 0;
    char level[16], rest[128];
    CHECK(sscanf(text, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ %15s %n", &y, &mo, &d, &h, &mi, &s, &ms, level, &n) == 8);
    CHECK(y >= 2024 && mo >= 1 && mo <= 12 && d >= 1 && d <= 31 && h < 24 && mi < 60 && s <= 60 && ms < 1000);
    CHECK_STR(level, "info");
    CHECK(n > 0 && n < (int)len);
    snprintf(rest, sizeof(rest), "%s", text + n);
    CHECK_STR(rest, "http: listening on 127.0.0.1:8080\n");
    CHECK(text[23] == 'Z' && text[10] == 'T');
    free(text);
}

TEST(test_level_filter)
{
    sy_log_min_level = SY_LOG_WARN;
    capture_begin();
    sy_debug("t", "debug line");
    sy_info("t", "info line");
    sy_warn("t", "warn line");
    sy_error("t", "error line");
    size_t len;
    char *text = capture_end(&len);
    CHECK(strstr(text, "debug line") == NULL);
    CHECK(strstr(text, "info line") == NULL);
    CHECK(strstr(text, " warn t: warn line\n") != NULL);
    CHECK(strstr(text, " error t: error line\n") != NULL);
    CHECK(count_char(text, len, '\n') == 2);
    free(text);

    sy_log_min_level = SY_LOG_DEBUG;
    capture_begin();
    sy_debug("t", "now %s", "shown");
    text = capture_end(&len);
    CHECK(strstr(text, " debug t: now shown\n") != NULL);
    free(text);
    sy_log_min_level = SY_LOG_INFO;
}

TEST(test_newlines_make_one_line)
{
    sy_log_min_level = SY_LOG_INFO;
    capture_begin();
    sy_error("lua", "error_id=42 boom\nstack traceback:\n\t[C]: in ?\n\troutes.lua:3: in function <x>\n");
    size_t len;
    char *text = capture_end(&len);
    CHECK(count_char(text, len, '\n') == 1);
    CHECK(len > 0 && text[len - 1] == '\n');
    CHECK(strstr(text, "lua: error_id=42 boom\\nstack traceback:\\n [C]: in ?\\n routes.lua:3: in function <x>\\n\n") !=
          NULL);
    free(text);
}

TEST(test_long_messages)
{
    sy_log_min_level = SY_LOG_INFO;
    /* longer than the message buffer: truncated, marked, still one line */
    size_t n = 10000;
    char *big = malloc(n + 1);
    memset(big, 'x', n);
    big[n] = '\0';
    capture_begin();
    sy_info("t", "%s", big);
    size_t len;
    char *text = capture_end(&len);
    CHECK(count_char(text, len, '\n') == 1);
    CHECK(len <= 4096);
    CHECK(len > 3000);
    CHECK(len >= 4 && memcmp(text + len - 4, "...\n", 4) == 0);
    free(text);

    /* newlines that double in size when escaped: still one line within the limit */
    memset(big, '\n', 3000);
    big[3000] = '\0';
    capture_begin();
    sy_info("t", "%s", big);
    text = capture_end(&len);
    CHECK(count_char(text, len, '\n') == 1);
    CHECK(len <= 4096);
    CHECK(text[len - 1] == '\n');
    free(text);
    free(big);
}

enum { NTHREADS = 4, NLINES = 200 };

static void *log_lines(void *arg)
{
    char payload[1001];
    memset(payload, 'a' + (int)(long)arg, 1000);
    payload[1000] = '\0';
    for (int i = 0; i < NLINES; ++i)
        sy_info("t", "[%ld] %s", (long)arg, payload);
    return NULL;
}

TEST(test_threads_do_not_interleave)
{
    sy_log_min_level = SY_LOG_INFO;
    pthread_t threads[NTHREADS];
    capture_begin();
    for (long i = 0; i < NTHREADS; ++i)
        pthread_create(&threads[i], NULL, log_lines, (void *)i);
    for (int i = 0; i < NTHREADS; ++i)
        pthread_join(threads[i], NULL);
    size_t len;
    char *text = capture_end(&len);
    CHECK(count_char(text, len, '\n') == NTHREADS * NLINES);
    /* every line is whole: its payload is 1000 times the letter of its thread */
    int whole = 1;
    for (char *line = text, *end; *line != '\0'; line = end + 1) {
        end = strchr(line, '\n');
        if (end == NULL) break;
        char *open = strstr(line, " t: [");
        if (open == NULL || open > end) {
            whole = 0;
            break;
        }
        long id = strtol(open + 5, NULL, 10);
        char *p = strchr(open, ']') + 2;
        whole &= end - p == 1000;
        for (; whole && p < end; ++p)
            whole &= *p == 'a' + id;
    }
    CHECK(whole);
    free(text);
}

RUN_TESTS(T(test_parse_level), T(test_line_format), T(test_level_filter), T(test_newlines_make_one_line),
          T(test_long_messages), T(test_threads_do_not_interleave))
