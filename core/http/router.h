/*
 * The route matcher: maps (method, path) to a route id and extracts path parameters (`/users/:id`).
 * Patterns are split into segments once, at load; matching walks the segments of each route without allocating.
 * Static segments win over parameters when two routes could match (`/users/me` before `/users/:id`).
 * It knows nothing of HTTP servers or Lua: it is pure string work, so it can be unit-tested and fuzzed alone.
 */
#ifndef SY_HTTP_ROUTER_H
#define SY_HTTP_ROUTER_H

#include <stddef.h>

#define SY_ROUTER_MAX_PARAMS 8
#define SY_ROUTER_MAX_SEGMENTS 32

typedef enum {
    SY_METHOD_GET = 1 << 0,
    SY_METHOD_POST = 1 << 1,
    SY_METHOD_PUT = 1 << 2,
    SY_METHOD_PATCH = 1 << 3,
    SY_METHOD_DELETE = 1 << 4,
    SY_METHOD_HEAD = 1 << 5,
    SY_METHOD_OPTIONS = 1 << 6,
} sy_method_t;

typedef struct st_sy_router_t sy_router_t;

typedef struct {
    const char *name;  /* borrowed from the router, valid while it lives */
    const char *value; /* points into the matched path (not NUL-terminated, not percent-decoded) */
    size_t value_len;
} sy_route_param_t;

typedef struct {
    int route_id;
    size_t nparams;
    sy_route_param_t params[SY_ROUTER_MAX_PARAMS];
    unsigned allowed; /* on SY_ROUTER_METHOD_NOT_ALLOWED: the methods the path accepts (sy_method_t bits) */
} sy_route_match_t;

#define SY_ROUTER_NOT_FOUND (-1)
#define SY_ROUTER_METHOD_NOT_ALLOWED (-2)

/* Returns the sy_method_t bit for a method name ("GET", ...), or 0 when unknown. */
unsigned sy_method_parse(const char *name, size_t len);
/* Writes the names of the methods in `mask` as "GET, POST" into buf (always NUL-terminated). */
void sy_method_format(unsigned mask, char *buf, size_t size);

sy_router_t *sy_router_create(void);
void sy_router_destroy(sy_router_t *router);

/* Adds a route. `pattern` must start with '/'; a segment ":name" is a parameter; a trailing "/" is ignored.
 * The same method and pattern twice, a method mask of 0, a bad pattern or too many segments or parameters
 * fail with -1 and a message in errbuf. The router copies the pattern. */
int sy_router_add(sy_router_t *router, unsigned methods, const char *pattern, int route_id, char *errbuf,
                  size_t errbuf_size);

/* Matches `path` (without the query string). Returns the route id (>= 0), SY_ROUTER_NOT_FOUND or
 * SY_ROUTER_METHOD_NOT_ALLOWED (m->allowed is set). HEAD matches a GET route. Params point into `path`. */
int sy_router_match(const sy_router_t *router, unsigned method, const char *path, size_t path_len, sy_route_match_t *m);

#endif
