/*
 * A minimal unit-test harness: TEST(name) { ... } functions, CHECK(expr) assertions that report file and line and
 * keep going, and a main() that runs the list given to RUN_TESTS(...). Exit status is the number of failures.
 */
#ifndef SY_TEST_H
#define SY_TEST_H

#include <stdio.h>
#include <string.h>

static int sy_test_failures;
static const char *sy_test_current;

#define TEST(name) static void name(void)
#define CHECK(expr)                                                                                                    \
    do {                                                                                                               \
        if (!(expr)) {                                                                                                 \
            fprintf(stderr, "FAIL %s (%s:%d): %s\n", sy_test_current, __FILE__, __LINE__, #expr);                      \
            ++sy_test_failures;                                                                                        \
        }                                                                                                              \
    } while (0)
#define CHECK_STR(a, b)                                                                                                \
    do {                                                                                                               \
        const char *sy_a_ = (a), *sy_b_ = (b);                                                                         \
        if (sy_a_ == NULL || sy_b_ == NULL || strcmp(sy_a_, sy_b_) != 0) {                                             \
            fprintf(stderr, "FAIL %s (%s:%d): %s == \"%s\", expected \"%s\"\n", sy_test_current, __FILE__, __LINE__,   \
                    #a, sy_a_ ? sy_a_ : "(null)", sy_b_ ? sy_b_ : "(null)");                                           \
            ++sy_test_failures;                                                                                        \
        }                                                                                                              \
    } while (0)

typedef struct {
    const char *name;
    void (*fn)(void);
} sy_test_case_t;

#define T(fn)                                                                                                          \
    {                                                                                                                  \
#fn, fn                                                                                                        \
    }
#define RUN_TESTS(...)                                                                                                 \
    int main(void)                                                                                                     \
    {                                                                                                                  \
        sy_test_case_t cases[] = {__VA_ARGS__};                                                                        \
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); ++i) {                                                \
            sy_test_current = cases[i].name;                                                                           \
            int before = sy_test_failures;                                                                             \
            cases[i].fn();                                                                                             \
            fprintf(stderr, "%s %s\n", sy_test_failures == before ? "ok  " : "FAIL", cases[i].name);                   \
        }                                                                                                              \
        return sy_test_failures != 0;                                                                                  \
    }

#endif
