/*
 * libFuzzer target: the route matcher (core/http/router.h).
 * Mode A (byte 0 < 0xf0): byte 0 picks the method (or an unknown one), the rest is the path, matched against a fixed
 * router built once; the answer is compared with a deliberately naive reference written from router.h's contract
 * (split on every '/', one trailing '/' ignored, empty segments kept and never parameter values, more static segments
 * from the left win, declaration order breaks ties, HEAD matches GET, 405 lists every method of the path).
 * Mode B (byte 0 >= 0xf0): the rest is a list of patterns separated by '\n' added to a fresh router; each accepted
 * pattern must match itself with its parameters filled in, and refusals must leave a message.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "http/router.h"

#define CHECKF(cond, ...)                                                                                              \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "fuzz assertion failed (%s:%d): %s\n  ", __FILE__, __LINE__, #cond);                       \
            fprintf(stderr, __VA_ARGS__);                                                                              \
            fprintf(stderr, "\n");                                                                                     \
            abort();                                                                                                   \
        }                                                                                                              \
    } while (0)

static const struct {
    unsigned methods;
    const char *pattern;
} ROUTES[] = {
    {SY_METHOD_GET, "/"},
    {SY_METHOD_GET, "/users"},
    {SY_METHOD_POST, "/users/"},
    {SY_METHOD_GET, "/users/me"},
    {SY_METHOD_GET | SY_METHOD_PUT | SY_METHOD_DELETE, "/users/:id"},
    {SY_METHOD_GET, "/users/:id/posts/:post"},
    {SY_METHOD_POST, "/a/:x/c"},
    {SY_METHOD_GET, "/a/b/:y"},
    {SY_METHOD_GET, "/a/b/c"},
    {SY_METHOD_HEAD, "/probe"},
    {SY_METHOD_OPTIONS, "/probe"},
    {SY_METHOD_GET, "/f//g"},
    {SY_METHOD_GET, "/p/:a/:b/:c/:d/:e/:f/:g/:h"},
    {SY_METHOD_GET, "/v1/items:batch"},
    {SY_METHOD_PATCH, "/:any"},
    {SY_METHOD_POST, "/:a/:b"},
    {SY_METHOD_GET, "/s/s/s/s/s/s/s/s/s/s/s/s/s/s/s/s/s/s/s/s/s/s/s/s/s/s/s/s/s/s/s/:last"},
};
#define NROUTES (sizeof(ROUTES) / sizeof(ROUTES[0]))

static const unsigned METHODS[8] = {0,
                                    SY_METHOD_GET,
                                    SY_METHOD_POST,
                                    SY_METHOD_PUT,
                                    SY_METHOD_PATCH,
                                    SY_METHOD_DELETE,
                                    SY_METHOD_HEAD,
                                    SY_METHOD_OPTIONS};

typedef struct {
    size_t n;
    const char *s[SY_ROUTER_MAX_SEGMENTS + 1];
    size_t len[SY_ROUTER_MAX_SEGMENTS + 1];
} segs_t;

/* The contract's split: "/" has no segment; one trailing '/' is ignored; every other '/' starts a segment, empty or
 * not. Returns -1 past SY_ROUTER_MAX_SEGMENTS. */
static int ref_split(const char *p, size_t len, segs_t *out)
{
    out->n = 0;
    if (len > 1 && p[len - 1] == '/') --len;
    if (len <= 1) return 0;
    size_t i = 1;
    for (;;) {
        size_t j = i;
        while (j < len && p[j] != '/')
            ++j;
        if (out->n == SY_ROUTER_MAX_SEGMENTS) return -1;
        out->s[out->n] = p + i;
        out->len[out->n] = j - i;
        ++out->n;
        if (j >= len) return 0;
        i = j + 1;
    }
}

static segs_t route_segs[NROUTES];
static sy_router_t *router;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char err[256];
    router = sy_router_create();
    for (size_t i = 0; i < NROUTES; ++i) {
        if (sy_router_add(router, ROUTES[i].methods, ROUTES[i].pattern, (int)i, err, sizeof(err)) != 0) {
            fprintf(stderr, "fuzz: %s\n", err);
            exit(2);
        }
        ref_split(ROUTES[i].pattern, strlen(ROUTES[i].pattern), &route_segs[i]);
    }
    return 0;
}

static int is_param(const segs_t *s, size_t i)
{
    return s->len[i] > 1 && s->s[i][0] == ':';
}

/* 1 when route r has the shape of the path */
static int ref_shape(size_t r, const segs_t *path)
{
    const segs_t *rs = &route_segs[r];
    if (rs->n != path->n) return 0;
    for (size_t i = 0; i < rs->n; ++i) {
        if (is_param(rs, i)) {
            if (path->len[i] == 0) return 0;
        } else if (rs->len[i] != path->len[i] || memcmp(rs->s[i], path->s[i], rs->len[i]) != 0) {
            return 0;
        }
    }
    return 1;
}

/* -1 when a is more specific than b (a static segment further left), 1 when less, 0 when the same */
static int ref_cmp(size_t a, size_t b)
{
    for (size_t i = 0; i < route_segs[a].n; ++i) {
        int sa = !is_param(&route_segs[a], i), sb = !is_param(&route_segs[b], i);
        if (sa != sb) return sa ? -1 : 1;
    }
    return 0;
}

static void match_mode(unsigned method, const char *path, size_t len)
{
    sy_route_match_t m;
    int got = sy_router_match(router, method, path, len, &m);

    int want = SY_ROUTER_NOT_FOUND;
    unsigned allowed = 0, wanted = method == SY_METHOD_HEAD ? (SY_METHOD_HEAD | SY_METHOD_GET) : method;
    segs_t ps;
    if (len > 0 && path[0] == '/' && ref_split(path, len, &ps) == 0) {
        long best = -1;
        for (size_t r = 0; r < NROUTES; ++r) {
            if (!ref_shape(r, &ps)) continue;
            if ((ROUTES[r].methods & wanted) == 0) {
                allowed |= ROUTES[r].methods;
            } else if (best < 0 || ref_cmp(r, (size_t)best) < 0) {
                best = (long)r;
            }
        }
        if (best >= 0)
            want = (int)best;
        else if (allowed != 0)
            want = SY_ROUTER_METHOD_NOT_ALLOWED;
    }
    CHECKF(got == want, "method %u path \"%.*s\": router %d, reference %d", method, (int)(len > 200 ? 200 : len), path,
           got, want);
    if (want == SY_ROUTER_METHOD_NOT_ALLOWED) {
        unsigned expect = allowed | ((allowed & SY_METHOD_GET) ? SY_METHOD_HEAD : 0);
        CHECKF(m.allowed == expect, "allowed mask %#x, reference %#x", m.allowed, expect);
    }
    if (want >= 0) {
        const segs_t *rs = &route_segs[want];
        size_t np = 0;
        for (size_t i = 0; i < rs->n; ++i) {
            if (!is_param(rs, i)) continue;
            CHECKF(np < m.nparams, "parameter %zu missing", np);
            const sy_route_param_t *p = &m.params[np++];
            CHECKF(strlen(p->name) == rs->len[i] - 1 && memcmp(p->name, rs->s[i] + 1, rs->len[i] - 1) == 0,
                   "parameter name %s", p->name);
            CHECKF(p->value == ps.s[i] && p->value_len == ps.len[i], "parameter %s does not point at segment %zu",
                   p->name, i);
        }
        CHECKF(np == m.nparams, "%zu parameters, reference %zu", m.nparams, np);
    }
}

static void add_mode(const char *data, size_t size)
{
    sy_router_t *r = sy_router_create();
    char err[128];
    int id = 0;
    for (const char *p = data, *end = data + size; p < end && id < 64;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        char *pattern = strndup(p, len); /* a NUL byte ends the pattern, as it would in C */
        p += len + 1;
        unsigned methods = (unsigned)(len % 127) + 1;
        memset(err, 'x', sizeof(err));
        int rc = sy_router_add(r, methods, pattern, id, err, sizeof(err));
        CHECKF(rc == 0 || rc == -1, "sy_router_add returned %d", rc);
        if (rc == -1) {
            CHECKF(memchr(err, '\0', sizeof(err)) != NULL, "errbuf not terminated");
            CHECKF(err[0] != '\0' && err[0] != 'x', "refused \"%s\" without a message", pattern);
        } else {
            /* the pattern with every parameter replaced by "v" is a path that reaches this route (or an equally
             * specific earlier one for the same method) */
            size_t o = 0, plen = strlen(pattern);
            char *path = malloc(plen + 1);
            for (size_t i = 0; i < plen;) {
                if (pattern[i] == ':' && (i == 0 || pattern[i - 1] == '/')) {
                    path[o++] = 'v';
                    while (i < plen && pattern[i] != '/')
                        ++i;
                } else {
                    path[o++] = pattern[i++];
                }
            }
            sy_route_match_t m;
            unsigned one = methods & -methods;
            int got = sy_router_match(r, one, path, o, &m);
            CHECKF(got >= 0, "pattern \"%s\" does not match its own path \"%.*s\" (%d)", pattern, (int)o, path, got);
            free(path);
            ++id;
        }
        free(pattern);
    }
    sy_router_destroy(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) return 0;
    if (data[0] >= 0xf0)
        add_mode((const char *)data + 1, size - 1);
    else
        match_mode(METHODS[data[0] & 7], (const char *)data + 1, size - 1);
    return 0;
}
