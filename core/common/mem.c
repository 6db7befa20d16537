/* Aborting allocation wrappers; see mem.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "common/mem.h"

static void oom(size_t size)
{
    fprintf(stderr, "switchyard: out of memory allocating %zu bytes\n", size);
    abort();
}

void *sy_malloc(size_t size)
{
    void *p = malloc(size == 0 ? 1 : size);
    if (p == NULL) oom(size);
    return p;
}

void *sy_calloc(size_t n, size_t size)
{
    void *p = calloc(n == 0 ? 1 : n, size == 0 ? 1 : size);
    if (p == NULL) oom(n * size);
    return p;
}

void *sy_realloc(void *p, size_t size)
{
    void *q = realloc(p, size == 0 ? 1 : size);
    if (q == NULL) oom(size);
    return q;
}

char *sy_strndup(const char *s, size_t len)
{
    char *d = sy_malloc(len + 1);
    memcpy(d, s, len);
    d[len] = '\0';
    return d;
}

char *sy_strdup(const char *s)
{
    return sy_strndup(s, strlen(s));
}
