/*
 * Allocation wrappers that abort on out-of-memory (h2o's h2o_mem_alloc convention), so callers never check for
 * NULL. Nothing here pools or caches memory.
 */
#ifndef SY_COMMON_MEM_H
#define SY_COMMON_MEM_H

#include <stddef.h>

void *sy_malloc(size_t size);
void *sy_calloc(size_t n, size_t size);
void *sy_realloc(void *p, size_t size);
/* Returns a NUL-terminated heap copy of s[0..len); the caller owns it (free()). */
char *sy_strndup(const char *s, size_t len);
char *sy_strdup(const char *s);

#endif
