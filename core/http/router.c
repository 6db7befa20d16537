/*
 * Route matching by segments; see router.h. Routes live in one array, matched in order of specificity computed at
 * insertion (more static segments first), so the first full match is the most specific one. The number of routes
 * in a routes file is small (tens), and a linear walk over pre-split segments beats a trie at that size while
 * staying obviously correct. It does not percent-decode parameters: that is the caller's job.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "common/mem.h"
#include "http/router.h"

typedef struct {
    char *text; /* static text, or the parameter name without ':' */
    size_t len;
    int is_param;
} segment_t;

typedef struct {
    unsigned methods;
    int route_id;
    char *pattern;
    size_t nsegments;
    segment_t segments[SY_ROUTER_MAX_SEGMENTS];
    unsigned specificity; /* bit i set when segment i is static: higher sorts first */
} route_t;

struct st_sy_router_t {
    route_t *routes;
    size_t nroutes;
    size_t capacity;
};

static const struct {
    const char *name;
    unsigned bit;
} methods[] = {{"GET", SY_METHOD_GET},        {"POST", SY_METHOD_POST},     {"PUT", SY_METHOD_PUT},
               {"PATCH", SY_METHOD_PATCH},    {"DELETE", SY_METHOD_DELETE}, {"HEAD", SY_METHOD_HEAD},
               {"OPTIONS", SY_METHOD_OPTIONS}};

unsigned sy_method_parse(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); ++i)
        if (strlen(methods[i].name) == len && memcmp(methods[i].name, name, len) == 0) return methods[i].bit;
    return 0;
}

void sy_method_format(unsigned mask, char *buf, size_t size)
{
    size_t off = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); ++i) {
        if ((mask & methods[i].bit) == 0) continue;
        int n = snprintf(buf + off, size - off, "%s%s", off == 0 ? "" : ", ", methods[i].name);
        if (n < 0 || (size_t)n >= size - off) break;
        off += (size_t)n;
    }
}

sy_router_t *sy_router_create(void)
{
    return sy_calloc(1, sizeof(sy_router_t));
}

static void route_dispose(route_t *r)
{
    for (size_t i = 0; i < r->nsegments; ++i)
        free(r->segments[i].text);
    free(r->pattern);
}

void sy_router_destroy(sy_router_t *router)
{
    if (router == NULL) return;
    for (size_t i = 0; i < router->nroutes; ++i)
        route_dispose(&router->routes[i]);
    free(router->routes);
    free(router);
}

/* Splits a path into segments; returns the count or -1 when there are too many. Empty segments ("//") are kept
 * as empty static segments so that "/a//b" does not match "/a/b". */
static int split(const char *path, size_t len, const char **starts, size_t *lens, size_t max)
{
    size_t n = 0, i = 1;                        /* skip the leading '/' */
    if (len > 1 && path[len - 1] == '/') --len; /* a trailing slash is ignored */
    if (len <= 1) return 0;                     /* "/" */
    for (;;) {
        size_t j = i;
        while (j < len && path[j] != '/')
            ++j;
        if (n == max) return -1;
        starts[n] = path + i;
        lens[n] = j - i;
        ++n;
        if (j >= len) return (int)n; /* the last segment, possibly empty ("/a//" is "a" then "") */
        i = j + 1;
    }
}

int sy_router_add(sy_router_t *router, unsigned methods_mask, const char *pattern, int route_id, char *errbuf,
                  size_t errbuf_size)
{
    const char *starts[SY_ROUTER_MAX_SEGMENTS];
    size_t lens[SY_ROUTER_MAX_SEGMENTS], nparams = 0;
    route_t r = {.methods = methods_mask, .route_id = route_id};

    if (methods_mask == 0) {
        snprintf(errbuf, errbuf_size, "route %s: no method", pattern);
        return -1;
    }
    size_t plen = strlen(pattern);
    if (plen == 0 || pattern[0] != '/') {
        snprintf(errbuf, errbuf_size, "route '%s': a path must start with '/'", pattern);
        return -1;
    }
    if (strpbrk(pattern, "?#* ") != NULL) {
        snprintf(errbuf, errbuf_size, "route '%s': a path may not contain '?', '#', '*' or spaces", pattern);
        return -1;
    }
    int n = split(pattern, plen, starts, lens, SY_ROUTER_MAX_SEGMENTS);
    if (n < 0) {
        snprintf(errbuf, errbuf_size, "route '%s': more than %d segments", pattern, SY_ROUTER_MAX_SEGMENTS);
        return -1;
    }
    for (int i = 0; i < n; ++i) {
        int is_param = lens[i] > 0 && starts[i][0] == ':';
        if (is_param && lens[i] == 1) {
            snprintf(errbuf, errbuf_size, "route '%s': a parameter needs a name after ':'", pattern);
            return -1;
        }
        if (is_param && ++nparams > SY_ROUTER_MAX_PARAMS) {
            snprintf(errbuf, errbuf_size, "route '%s': more than %d parameters", pattern, SY_ROUTER_MAX_PARAMS);
            return -1;
        }
        if (!is_param && i < 32) r.specificity |= 1u << (31 - i);
    }
    /* the same method on the same shape of path is ambiguous, whatever the parameter names */
    for (size_t k = 0; k < router->nroutes; ++k) {
        route_t *o = &router->routes[k];
        if ((o->methods & methods_mask) == 0 || o->nsegments != (size_t)n) continue;
        int same = 1;
        for (int i = 0; i < n && same; ++i) {
            int p = lens[i] > 0 && starts[i][0] == ':';
            if (p != o->segments[i].is_param)
                same = 0;
            else if (!p && (lens[i] != o->segments[i].len || memcmp(starts[i], o->segments[i].text, lens[i]) != 0))
                same = 0;
        }
        if (same) {
            snprintf(errbuf, errbuf_size, "route '%s' is declared twice for the same method (first as '%s')", pattern,
                     o->pattern);
            return -1;
        }
    }

    r.pattern = sy_strdup(pattern);
    r.nsegments = (size_t)n;
    for (int i = 0; i < n; ++i) {
        r.segments[i].is_param = lens[i] > 0 && starts[i][0] == ':';
        r.segments[i].text =
            r.segments[i].is_param ? sy_strndup(starts[i] + 1, lens[i] - 1) : sy_strndup(starts[i], lens[i]);
        r.segments[i].len = r.segments[i].is_param ? lens[i] - 1 : lens[i];
    }
    if (router->nroutes == router->capacity) {
        router->capacity = router->capacity ? router->capacity * 2 : 16;
        router->routes = sy_realloc(router->routes, router->capacity * sizeof(route_t));
    }
    /* keep the array ordered by specificity (stable: equal ones stay in declaration order) */
    size_t pos = router->nroutes;
    while (pos > 0 && router->routes[pos - 1].specificity < r.specificity)
        --pos;
    memmove(router->routes + pos + 1, router->routes + pos, (router->nroutes - pos) * sizeof(route_t));
    router->routes[pos] = r;
    ++router->nroutes;
    return 0;
}

int sy_router_match(const sy_router_t *router, unsigned method, const char *path, size_t path_len, sy_route_match_t *m)
{
    const char *starts[SY_ROUTER_MAX_SEGMENTS];
    size_t lens[SY_ROUTER_MAX_SEGMENTS];
    unsigned allowed = 0;

    m->route_id = -1;
    m->nparams = 0;
    m->allowed = 0;
    if (path_len == 0 || path[0] != '/') return SY_ROUTER_NOT_FOUND;
    int n = split(path, path_len, starts, lens, SY_ROUTER_MAX_SEGMENTS);
    if (n < 0) return SY_ROUTER_NOT_FOUND;
    if (method == SY_METHOD_HEAD) method |= SY_METHOD_GET;

    for (size_t k = 0; k < router->nroutes; ++k) {
        const route_t *r = &router->routes[k];
        if (r->nsegments != (size_t)n) continue;
        size_t np = 0;
        int ok = 1;
        for (int i = 0; i < n && ok; ++i) {
            const segment_t *s = &r->segments[i];
            if (s->is_param) {
                if (lens[i] == 0)
                    ok = 0;
                else if (np < SY_ROUTER_MAX_PARAMS) {
                    m->params[np].name = s->text;
                    m->params[np].value = starts[i];
                    m->params[np].value_len = lens[i];
                    ++np;
                }
            } else if (s->len != lens[i] || memcmp(s->text, starts[i], lens[i]) != 0) {
                ok = 0;
            }
        }
        if (!ok) continue;
        if ((r->methods & method) == 0) {
            allowed |= r->methods;
            continue;
        }
        m->route_id = r->route_id;
        m->nparams = np;
        return r->route_id;
    }
    if (allowed != 0) {
        m->allowed = allowed | ((allowed & SY_METHOD_GET) ? SY_METHOD_HEAD : 0);
        return SY_ROUTER_METHOD_NOT_ALLOWED;
    }
    return SY_ROUTER_NOT_FOUND;
}
