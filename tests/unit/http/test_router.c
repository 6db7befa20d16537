/*
 * Unit tests of the route matcher (core/http/router.h): precedence of static segments over parameters, parameter
 * extraction, trailing slashes and empty segments, 404 versus 405 and the Allow mask, and the patterns that
 * sy_router_add refuses. Pure string work: no loop, no Lua, nothing on disk.
 */
#include <stdlib.h>
#include <string.h>
#include "http/router.h"
#include "test.h"

#define GET SY_METHOD_GET
#define POST SY_METHOD_POST
#define PUT SY_METHOD_PUT
#define PATCH SY_METHOD_PATCH
#define DELETE SY_METHOD_DELETE
#define HEAD SY_METHOD_HEAD
#define OPTIONS SY_METHOD_OPTIONS

static char errbuf[256];

static int add(sy_router_t *router, unsigned methods, const char *pattern, int id)
{
    errbuf[0] = '\0';
    return sy_router_add(router, methods, pattern, id, errbuf, sizeof(errbuf));
}

static int match(const sy_router_t *router, unsigned method, const char *path, sy_route_match_t *m)
{
    return sy_router_match(router, method, path, strlen(path), m);
}

/* The value of parameter `name` in m as a NUL-terminated copy in a static buffer, or "(none)". */
static const char *param(const sy_route_match_t *m, const char *name)
{
    static char buf[256];
    for (size_t i = 0; i < m->nparams; ++i) {
        if (strcmp(m->params[i].name, name) == 0) {
            snprintf(buf, sizeof(buf), "%.*s", (int)m->params[i].value_len, m->params[i].value);
            return buf;
        }
    }
    return "(none)";
}

TEST(test_static_beats_param)
{
    sy_router_t *router = sy_router_create();
    sy_route_match_t m;
    /* the parameter route is declared first: precedence must not depend on declaration order */
    CHECK(add(router, GET, "/users/:id", 1) == 0);
    CHECK(add(router, GET, "/users/me", 2) == 0);
    CHECK(add(router, GET, "/users", 3) == 0);

    CHECK(match(router, GET, "/users/me", &m) == 2);
    CHECK(m.route_id == 2);
    CHECK(m.nparams == 0);
    CHECK(match(router, GET, "/users/42", &m) == 1);
    CHECK(m.nparams == 1);
    CHECK_STR(param(&m, "id"), "42");
    CHECK(match(router, GET, "/users", &m) == 3);
    /* "me" is matched as a whole segment, not as a prefix */
    CHECK(match(router, GET, "/users/mex", &m) == 1);
    CHECK_STR(param(&m, "id"), "mex");

    /* the leftmost static segment decides between two partly static routes */
    CHECK(add(router, GET, "/a/:x/c", 10) == 0);
    CHECK(add(router, GET, "/a/b/:y", 11) == 0);
    CHECK(match(router, GET, "/a/b/c", &m) == 11);
    CHECK_STR(param(&m, "y"), "c");
    CHECK(match(router, GET, "/a/z/c", &m) == 10);
    CHECK_STR(param(&m, "x"), "z");
    CHECK(match(router, GET, "/a/z/d", &m) == SY_ROUTER_NOT_FOUND);

    /* a fully static route wins over both */
    CHECK(add(router, GET, "/a/b/c", 12) == 0);
    CHECK(match(router, GET, "/a/b/c", &m) == 12);
    sy_router_destroy(router);
}

TEST(test_params)
{
    sy_router_t *router = sy_router_create();
    sy_route_match_t m;
    CHECK(add(router, GET | POST, "/orgs/:org/repos/:repo/issues/:n", 7) == 0);
    const char *path = "/orgs/acme/repos/switch-yard/issues/12";
    CHECK(match(router, POST, path, &m) == 7);
    CHECK(m.nparams == 3);
    CHECK_STR(m.params[0].name, "org");
    CHECK_STR(m.params[1].name, "repo");
    CHECK_STR(m.params[2].name, "n");
    CHECK_STR(param(&m, "org"), "acme");
    CHECK_STR(param(&m, "repo"), "switch-yard");
    CHECK_STR(param(&m, "n"), "12");
    /* values point into the path, not into a copy */
    CHECK(m.params[0].value == path + 6);
    CHECK(m.params[0].value_len == 4);

    /* not percent-decoded, and a ':' inside a value is just a character */
    CHECK(match(router, GET, "/orgs/a%20b/repos/x:y/issues/%2F", &m) == 7);
    CHECK_STR(param(&m, "org"), "a%20b");
    CHECK_STR(param(&m, "repo"), "x:y");
    CHECK_STR(param(&m, "n"), "%2F");

    /* the most parameters a route may have */
    CHECK(add(router, GET, "/p/:a/:b/:c/:d/:e/:f/:g/:h", 8) == 0);
    CHECK(match(router, GET, "/p/1/2/3/4/5/6/7/8", &m) == 8);
    CHECK(m.nparams == SY_ROUTER_MAX_PARAMS);
    CHECK_STR(param(&m, "a"), "1");
    CHECK_STR(param(&m, "h"), "8");

    /* a ':' that does not start a segment is static text */
    CHECK(add(router, GET, "/v1/items:batch", 9) == 0);
    CHECK(match(router, GET, "/v1/items:batch", &m) == 9);
    CHECK(m.nparams == 0);
    CHECK(match(router, GET, "/v1/itemsXbatch", &m) == SY_ROUTER_NOT_FOUND);

    /* a failed match leaves no parameters behind */
    CHECK(match(router, GET, "/nothing/here", &m) == SY_ROUTER_NOT_FOUND);
    CHECK(m.nparams == 0);
    CHECK(m.route_id == -1);
    sy_router_destroy(router);
}

TEST(test_trailing_slash_and_root)
{
    sy_router_t *router = sy_router_create();
    sy_route_match_t m;
    CHECK(add(router, GET, "/", 1) == 0);
    CHECK(add(router, GET, "/users/", 2) == 0); /* declared with a trailing slash */
    CHECK(add(router, GET, "/items", 3) == 0);
    CHECK(add(router, GET, "/items/:id", 4) == 0);

    CHECK(match(router, GET, "/", &m) == 1);
    CHECK(match(router, GET, "/users", &m) == 2);
    CHECK(match(router, GET, "/users/", &m) == 2);
    CHECK(match(router, GET, "/items/", &m) == 3);
    CHECK(match(router, GET, "/items/5/", &m) == 4);
    CHECK_STR(param(&m, "id"), "5");

    /* not a path */
    CHECK(sy_router_match(router, GET, "", 0, &m) == SY_ROUTER_NOT_FOUND);
    CHECK(match(router, GET, "users", &m) == SY_ROUTER_NOT_FOUND);
    CHECK(match(router, GET, "*", &m) == SY_ROUTER_NOT_FOUND);
    /* path_len is honoured: the bytes after it are not part of the path */
    CHECK(sy_router_match(router, GET, "/users/extra", 6, &m) == 2);
    sy_router_destroy(router);
}

TEST(test_empty_segments)
{
    sy_router_t *router = sy_router_create();
    sy_route_match_t m;
    CHECK(add(router, GET, "/a/b", 1) == 0);
    CHECK(add(router, GET, "/c/:x/d", 2) == 0);
    CHECK(add(router, GET, "/e/:x", 3) == 0);

    CHECK(match(router, GET, "/a/b", &m) == 1);
    CHECK(match(router, GET, "/a//b", &m) == SY_ROUTER_NOT_FOUND);
    CHECK(match(router, GET, "//a/b", &m) == SY_ROUTER_NOT_FOUND);
    /* an empty segment is never a parameter value */
    CHECK(match(router, GET, "/c//d", &m) == SY_ROUTER_NOT_FOUND);
    CHECK(match(router, GET, "/c/x/d", &m) == 2);
    CHECK(match(router, GET, "/e/", &m) == SY_ROUTER_NOT_FOUND);
    CHECK(match(router, GET, "/e//", &m) == SY_ROUTER_NOT_FOUND);

    /* a pattern may declare an empty segment on purpose; it then matches only that */
    CHECK(add(router, GET, "/f//g", 4) == 0);
    CHECK(match(router, GET, "/f//g", &m) == 4);
    CHECK(match(router, GET, "/f/g", &m) == SY_ROUTER_NOT_FOUND);
    sy_router_destroy(router);
}

/* fuzz_router regression (tests/fuzz/corpus/fuzz_router/regression_empty_segment_before_trailing_slash): router.h
 * keeps empty segments and ignores one trailing slash, so "/a//" is "a" followed by an empty segment. split() dropped
 * an empty last segment, and "/a//" matched "/a" (a POST to it was a 405 naming /:x's methods instead of a 404). */
TEST(test_empty_segment_before_trailing_slash)
{
    sy_router_t *router = sy_router_create();
    sy_route_match_t m;
    CHECK(add(router, GET, "/a", 1) == 0);
    CHECK(add(router, GET, "/users/:id", 2) == 0);
    CHECK(add(router, PATCH, "/:x", 3) == 0);

    CHECK(match(router, GET, "/a/", &m) == 1);
    CHECK(match(router, GET, "/a//", &m) == SY_ROUTER_NOT_FOUND);
    CHECK(match(router, POST, "/a//", &m) == SY_ROUTER_NOT_FOUND);
    CHECK(match(router, GET, "/users/5//", &m) == SY_ROUTER_NOT_FOUND);
    CHECK(match(router, GET, "/users/5/", &m) == 2);
    sy_router_destroy(router);
}

TEST(test_not_found_vs_method_not_allowed)
{
    sy_router_t *router = sy_router_create();
    sy_route_match_t m;
    CHECK(add(router, POST, "/items", 1) == 0);
    CHECK(add(router, GET, "/items/:id", 2) == 0);
    CHECK(add(router, DELETE, "/items/:id", 3) == 0);
    CHECK(add(router, GET, "/health", 4) == 0);

    CHECK(match(router, GET, "/nope", &m) == SY_ROUTER_NOT_FOUND);
    CHECK(m.allowed == 0);

    /* POST only: no HEAD in the mask, since HEAD answers only where GET does */
    CHECK(match(router, GET, "/items", &m) == SY_ROUTER_METHOD_NOT_ALLOWED);
    CHECK(m.allowed == POST);
    CHECK(m.route_id == -1);
    CHECK(match(router, HEAD, "/items", &m) == SY_ROUTER_METHOD_NOT_ALLOWED);
    CHECK(m.allowed == POST);

    /* the mask is the union over every route of that shape, with HEAD added where GET is */
    CHECK(match(router, PUT, "/items/1", &m) == SY_ROUTER_METHOD_NOT_ALLOWED);
    CHECK(m.allowed == (GET | HEAD | DELETE));
    CHECK(match(router, DELETE, "/items/1", &m) == 3);
    CHECK(match(router, GET, "/items/1", &m) == 2);

    /* HEAD matches a GET route */
    CHECK(match(router, HEAD, "/health", &m) == 4);
    CHECK(match(router, HEAD, "/items/9", &m) == 2);
    CHECK_STR(param(&m, "id"), "9");
    CHECK(match(router, OPTIONS, "/health", &m) == SY_ROUTER_METHOD_NOT_ALLOWED);
    CHECK(m.allowed == (GET | HEAD));

    /* an unknown method (0 from sy_method_parse) on a known path is a 405, not a 404 */
    CHECK(match(router, 0, "/health", &m) == SY_ROUTER_METHOD_NOT_ALLOWED);
    CHECK(m.allowed == (GET | HEAD));
    CHECK(match(router, 0, "/nope", &m) == SY_ROUTER_NOT_FOUND);

    /* a route declared for HEAD explicitly is matched by HEAD and not by GET */
    CHECK(add(router, HEAD, "/probe", 5) == 0);
    CHECK(match(router, HEAD, "/probe", &m) == 5);
    CHECK(match(router, GET, "/probe", &m) == SY_ROUTER_METHOD_NOT_ALLOWED);
    CHECK(m.allowed == HEAD);

    /* a more specific route of the wrong method falls through to a parameter route of the right one */
    CHECK(add(router, POST, "/items/special", 6) == 0);
    CHECK(match(router, GET, "/items/special", &m) == 2);
    CHECK_STR(param(&m, "id"), "special");
    CHECK(match(router, PUT, "/items/special", &m) == SY_ROUTER_METHOD_NOT_ALLOWED);
    CHECK(m.allowed == (GET | HEAD | POST | DELETE));
    sy_router_destroy(router);
}

TEST(test_duplicates)
{
    sy_router_t *router = sy_router_create();
    CHECK(add(router, GET, "/users/:id", 1) == 0);
    CHECK(add(router, GET, "/users/:id", 2) == -1);
    CHECK(strstr(errbuf, "declared twice") != NULL);
    CHECK(strstr(errbuf, "/users/:id") != NULL);
    /* the same shape with another parameter name is the same route */
    CHECK(add(router, GET, "/users/:name", 3) == -1);
    CHECK(strstr(errbuf, "declared twice") != NULL);
    /* a trailing slash does not make it another route */
    CHECK(add(router, GET, "/users/:id/", 4) == -1);
    /* overlapping method masks */
    CHECK(add(router, POST | GET, "/users/:id", 5) == -1);
    /* another method, or another shape, is fine */
    CHECK(add(router, POST, "/users/:id", 6) == 0);
    CHECK(add(router, GET, "/users/me", 7) == 0);
    CHECK(add(router, GET, "/users/:id/posts", 8) == 0);
    CHECK(add(router, PUT | PATCH, "/users/:id", 9) == 0);
    CHECK(add(router, PATCH, "/users/:x", 10) == -1);

    /* a refused route changes nothing */
    sy_route_match_t m;
    CHECK(match(router, GET, "/users/5", &m) == 1);
    CHECK(match(router, PATCH, "/users/5", &m) == 9);
    sy_router_destroy(router);
}

TEST(test_bad_patterns)
{
    sy_router_t *router = sy_router_create();
    CHECK(add(router, GET, "users", 1) == -1);
    CHECK(strstr(errbuf, "must start with '/'") != NULL);
    CHECK(add(router, GET, "", 1) == -1);
    CHECK(add(router, GET, "/a/:", 1) == -1);
    CHECK(strstr(errbuf, "needs a name") != NULL);
    CHECK(add(router, GET, "/:/a", 1) == -1);
    CHECK(add(router, GET, "/a?b=1", 1) == -1);
    CHECK(strstr(errbuf, "'?'") != NULL);
    CHECK(add(router, GET, "/a#frag", 1) == -1);
    CHECK(add(router, GET, "/a/*", 1) == -1);
    CHECK(add(router, GET, "/a b", 1) == -1);
    CHECK(add(router, 0, "/a", 1) == -1);
    CHECK(strstr(errbuf, "no method") != NULL);

    /* segments: 32 is the limit */
    char pattern[512] = "";
    for (int i = 0; i < SY_ROUTER_MAX_SEGMENTS; ++i)
        strcat(pattern, "/s");
    CHECK(add(router, GET, pattern, 2) == 0);
    strcat(pattern, "/s");
    CHECK(add(router, GET, pattern, 3) == -1);
    CHECK(strstr(errbuf, "segments") != NULL);

    /* parameters: 8 is the limit */
    CHECK(add(router, GET, "/:a/:b/:c/:d/:e/:f/:g/:h/:i", 4) == -1);
    CHECK(strstr(errbuf, "parameters") != NULL);

    /* an error message is truncated to the buffer, never overflows it */
    char small[8];
    memset(small, 'x', sizeof(small));
    CHECK(sy_router_add(router, GET, "no-slash-and-very-long", 5, small, sizeof(small)) == -1);
    CHECK(strlen(small) == sizeof(small) - 1);

    /* nothing was added by the refused patterns */
    sy_route_match_t m;
    CHECK(match(router, GET, "/a", &m) == SY_ROUTER_NOT_FOUND);
    sy_router_destroy(router);
}

TEST(test_long_paths)
{
    sy_router_t *router = sy_router_create();
    sy_route_match_t m;
    size_t n = 100000;
    char *path = malloc(n + 1);

    /* a long static segment in a pattern */
    char *pattern = malloc(5002);
    pattern[0] = '/';
    memset(pattern + 1, 'p', 5000);
    pattern[5001] = '\0';
    CHECK(add(router, GET, pattern, 1) == 0);
    CHECK(add(router, GET, "/:one", 2) == 0);
    CHECK(match(router, GET, pattern, &m) == 1);

    /* one huge segment: the parameter takes all of it */
    path[0] = '/';
    memset(path + 1, 'a', n - 1);
    path[n] = '\0';
    CHECK(sy_router_match(router, GET, path, n, &m) == 2);
    CHECK(m.params[0].value_len == n - 1);

    /* many segments: more than SY_ROUTER_MAX_SEGMENTS is simply not found */
    for (size_t i = 0; i < n; i += 2) {
        path[i] = '/';
        path[i + 1] = 'x';
    }
    CHECK(sy_router_match(router, GET, path, n, &m) == SY_ROUTER_NOT_FOUND);
    /* only slashes */
    memset(path, '/', n);
    CHECK(sy_router_match(router, GET, path, n, &m) == SY_ROUTER_NOT_FOUND);
    /* NUL bytes inside the path are data */
    CHECK(sy_router_match(router, GET, "/a\0b", 4, &m) == 2);
    CHECK(m.params[0].value_len == 3);
    free(pattern);
    free(path);
    sy_router_destroy(router);
}

TEST(test_many_routes)
{
    sy_router_t *router = sy_router_create();
    sy_route_match_t m;
    char pattern[64], path[64];
    /* more than the initial capacity, parameters and statics interleaved */
    for (int i = 0; i < 300; ++i) {
        snprintf(pattern, sizeof(pattern), "/r%d/:id", i);
        CHECK(add(router, GET, pattern, 2 * i) == 0);
        snprintf(pattern, sizeof(pattern), "/r%d/fixed", i);
        CHECK(add(router, GET, pattern, 2 * i + 1) == 0);
    }
    int ok = 1;
    for (int i = 0; i < 300; ++i) {
        snprintf(path, sizeof(path), "/r%d/abc", i);
        ok &= sy_router_match(router, GET, path, strlen(path), &m) == 2 * i;
        ok &= m.nparams == 1 && m.params[0].value_len == 3;
        snprintf(path, sizeof(path), "/r%d/fixed", i);
        ok &= sy_router_match(router, GET, path, strlen(path), &m) == 2 * i + 1;
    }
    CHECK(ok);
    sy_router_destroy(router);
    sy_router_destroy(NULL);
}

TEST(test_method_parse_format)
{
    CHECK(sy_method_parse("GET", 3) == GET);
    CHECK(sy_method_parse("POST", 4) == POST);
    CHECK(sy_method_parse("PUT", 3) == PUT);
    CHECK(sy_method_parse("PATCH", 5) == PATCH);
    CHECK(sy_method_parse("DELETE", 6) == DELETE);
    CHECK(sy_method_parse("HEAD", 4) == HEAD);
    CHECK(sy_method_parse("OPTIONS", 7) == OPTIONS);
    /* method names are case-sensitive (RFC 9110 9.1) */
    CHECK(sy_method_parse("get", 3) == 0);
    CHECK(sy_method_parse("GETX", 4) == 0);
    CHECK(sy_method_parse("GE", 2) == 0);
    CHECK(sy_method_parse("", 0) == 0);
    CHECK(sy_method_parse("CONNECT", 7) == 0);
    /* the length is honoured: the name need not be NUL-terminated */
    CHECK(sy_method_parse("GETX", 3) == GET);
    CHECK(sy_method_parse("POST /x HTTP/1.1", 4) == POST);

    char buf[96];
    sy_method_format(GET | POST, buf, sizeof(buf));
    CHECK_STR(buf, "GET, POST");
    sy_method_format(0, buf, sizeof(buf));
    CHECK_STR(buf, "");
    sy_method_format(DELETE, buf, sizeof(buf));
    CHECK_STR(buf, "DELETE");
    sy_method_format(GET | POST | PUT | PATCH | DELETE | HEAD | OPTIONS, buf, sizeof(buf));
    CHECK_STR(buf, "GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS");
    /* bits that are no method are ignored */
    sy_method_format(GET | (1u << 20), buf, sizeof(buf));
    CHECK_STR(buf, "GET");
    /* a small buffer is always NUL-terminated */
    char small[6];
    memset(small, 'x', sizeof(small));
    sy_method_format(GET | POST, small, sizeof(small));
    CHECK(memchr(small, '\0', sizeof(small)) != NULL);
    CHECK(strncmp(small, "GET", 3) == 0);
    /* round trip */
    for (unsigned bit = 1; bit <= OPTIONS; bit <<= 1) {
        sy_method_format(bit, buf, sizeof(buf));
        CHECK(sy_method_parse(buf, strlen(buf)) == bit);
    }
}

RUN_TESTS(T(test_static_beats_param), T(test_params), T(test_trailing_slash_and_root), T(test_empty_segments),
          T(test_empty_segment_before_trailing_slash), T(test_not_found_vs_method_not_allowed), T(test_duplicates),
          T(test_bad_patterns), T(test_long_paths), T(test_many_routes), T(test_method_parse_format))
