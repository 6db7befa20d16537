/*
 * Unit tests of loading a routes file (core/lua/app.h) in check mode (no worker): what sy_app_create copies out of
 * the Lua state (router, statics, groups, topics, reply topics, telemetry, summary), the "file:line: message" of
 * every way a file can fail to load, and HTTP requests run through App.handle_http in a coroutine with the request
 * table core/lua/http.c builds. Routes files are written to a temporary directory removed at the end. Handler errors
 * logged on purpose appear on stderr as "error routes: error_id=..." lines.
 */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <lauxlib.h>
#include <lua.h>
#include "common/log.h"
#include "lua/app.h"
#include "test.h"

static char dir[] = "/tmp/sy-app-XXXXXX";
static char errbuf[1024];

/* Writes `text` to dir/name and returns the path (static buffer, valid until the next call). */
static const char *write_file(const char *name, const char *text)
{
    static char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

static sy_app_t *load(const char *name, const char *text)
{
    errbuf[0] = '\0';
    return sy_app_create(write_file(name, text), SY_SCRIPTS_BUILD_DIR, NULL, errbuf, sizeof(errbuf));
}

/* Loads a file that must fail; returns 1 when errbuf starts with "<dir>/<name>:<line>:" and contains `needle`. */
static int fails_at(const char *name, const char *text, int line, const char *needle)
{
    sy_app_t *app = load(name, text);
    if (app != NULL) {
        fprintf(stderr, "  %s loaded, expected an error\n", name);
        sy_app_release(app);
        return 0;
    }
    char prefix[300];
    snprintf(prefix, sizeof(prefix), "%s/%s:%d:", dir, name, line);
    int ok = strncmp(errbuf, prefix, strlen(prefix)) == 0 && strstr(errbuf, needle) != NULL;
    if (!ok) fprintf(stderr, "  %s: errbuf \"%s\", expected \"%s ...%s...\"\n", name, errbuf, prefix, needle);
    return ok;
}

/* fails_at in a child process, for files that crash the loader instead of failing it */
static int fails_at_isolated(const char *name, const char *text, int line, const char *needle)
{
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) _exit(fails_at(name, text, line, needle) ? 0 : 1);
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid) return 0;
    if (WIFSIGNALED(status)) fprintf(stderr, "  %s: the loader crashed (signal %d)\n", name, WTERMSIG(status));
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static const char *APP_LUA =
    "local User = dto.object { name = dto.string { not_empty = true }, email = dto.email { not_empty = true } }\n"
    "local Id = dto.object { id = dto.integer { min = 1 } }\n"
    "kafka.topic('create_user', { partitions = 3, compression = 'lz4' })\n"
    "http.telemetry { topic = 'tele', batch = 5, flush_ms = 250 }\n"
    "http.static('GET', '/healthz', 200, { status = 'ok' }, { ['X-Static'] = 'yes' })\n"
    "http.post('/users', { body = User }, function(req) return 201, { id = 7, name = req.body.name } end)\n"
    "http.get('/users/me', function(req) return 'me' end)\n"
    "http.get('/users/:id', { params = Id }, function(req)\n"
    "  return 200, { id = req.params.id, q = req.query.q }, { ['X-Id'] = tostring(req.params.id) }\n"
    "end)\n"
    "http.get('/boom', function(req) local t = nil; return t.field end)\n"
    "http.get('/raise', function(req) http.error(409, 'taken') end)\n"
    "http.post('/emit', function(req)\n"
    "  local ok, err, retry = kafka.emit('create_user', { a = 1 })\n"
    "  if not ok then return http.unavailable(err, retry) end\n"
    "  return 202\n"
    "end)\n"
    "http.post('/small', { max_body = 10 }, function(req) return 204 end)\n"
    "kafka.on('create_user', { group = 'auth' }, function(msg) end)\n"
    "kafka.reply('get_user', { group = 'auth' }, function(msg) return nil end)\n"
    "kafka.on('process_payment', { group = 'pay', body = User }, function(msg) end)\n";

/* The Lua value of app.routes[id].path, to find route ids by path. */
static int route_id(sy_app_t *app, unsigned method, const char *path)
{
    sy_route_match_t m;
    return sy_router_match(app->router, method, path, strlen(path), &m);
}

TEST(test_load_declarations)
{
    sy_app_t *app = load("app.lua", APP_LUA);
    CHECK(app != NULL);
    if (app == NULL) {
        fprintf(stderr, "  %s\n", errbuf);
        return;
    }
    CHECK(app->worker == NULL);
    CHECK(app->refcnt == 1);
    CHECK(lua_gettop(app->L) == 0);
    CHECK(app->nroutes == 8);

    /* routes compiled into the C router, with the runtime's precedence */
    int id_static = route_id(app, SY_METHOD_GET, "/healthz");
    int id_me = route_id(app, SY_METHOD_GET, "/users/me");
    int id_user = route_id(app, SY_METHOD_GET, "/users/5");
    CHECK(id_static >= 1 && id_me >= 1 && id_user >= 1);
    CHECK(id_me != id_user);
    CHECK(route_id(app, SY_METHOD_POST, "/users") >= 1);
    CHECK(route_id(app, SY_METHOD_HEAD, "/healthz") == id_static);
    CHECK(route_id(app, SY_METHOD_DELETE, "/users") == SY_ROUTER_METHOD_NOT_ALLOWED);
    CHECK(route_id(app, SY_METHOD_GET, "/nope") == SY_ROUTER_NOT_FOUND);
    if (id_user >= 1) CHECK_STR(app->route_labels[id_user - 1], "/users/:id");

    /* statics: only the static route has one */
    sy_static_response_t *st = id_static >= 1 ? app->statics[id_static - 1] : NULL;
    CHECK(st != NULL);
    if (st != NULL) {
        CHECK(st->status == 200);
        CHECK(st->body_len == strlen("{\"status\":\"ok\"}") &&
              memcmp(st->body, "{\"status\":\"ok\"}", st->body_len) == 0);
        CHECK(st->nheaders == 2);
        CHECK_STR(st->headers[0], "content-type");
        CHECK_STR(st->headers[1], "application/json");
        CHECK_STR(st->headers[2], "x-static");
        CHECK_STR(st->headers[3], "yes");
    }
    if (id_user >= 1) CHECK(app->statics[id_user - 1] == NULL);

    /* consumer groups, in declaration order */
    CHECK(app->ngroups == 2);
    if (app->ngroups == 2) {
        CHECK_STR(app->groups[0].group, "auth");
        CHECK(app->groups[0].ntopics == 2);
        CHECK_STR(app->groups[0].topics[0], "create_user");
        CHECK_STR(app->groups[0].topics[1], "get_user");
        CHECK_STR(app->groups[1].group, "pay");
        CHECK(app->groups[1].ntopics == 1);
    }

    /* topics: declared, implied by handlers (+ .dlq), the telemetry topic and the reply topic */
    int seen_create = 0, seen_tele = 0, seen_dlq = 0, seen_reply = 0;
    for (size_t i = 0; i < app->ntopics; ++i) {
        sy_app_topic_t *t = &app->topics[i];
        if (strcmp(t->name, "create_user") == 0) {
            seen_create = t->partitions == 3 && t->compression != NULL && strcmp(t->compression, "lz4") == 0;
        } else if (strcmp(t->name, "tele") == 0) {
            seen_tele = t->compression != NULL && strcmp(t->compression, "gzip") == 0;
        } else if (strcmp(t->name, "create_user.dlq") == 0) {
            seen_dlq = t->partitions == 4 && t->compression == NULL;
        } else if (strcmp(t->name, "get_user.reply") == 0) {
            seen_reply = t->partitions == 16;
        }
    }
    CHECK(seen_create && seen_tele && seen_dlq && seen_reply);
    CHECK(app->nreply_topics == 1);
    if (app->nreply_topics == 1) CHECK_STR(app->reply_topics[0], "get_user.reply");

    CHECK_STR(app->telemetry_topic, "tele");
    CHECK(app->telemetry_batch == 5);
    CHECK(app->telemetry_flush_ms == 250);

    /* the --check summary */
    CHECK(app->summary != NULL && strstr(app->summary, "route   POST   /users body=object{") != NULL);
    CHECK(app->summary != NULL && strstr(app->summary, "route   GET    /healthz (static 200)") != NULL);
    CHECK(app->summary != NULL && strstr(app->summary, "reply   get_user (group auth)") != NULL);
    CHECK(app->summary != NULL && strstr(app->summary, "topic   create_user (3 partitions, lz4)") != NULL);

    CHECK(app->handle_http_ref != LUA_NOREF && app->handle_message_ref != LUA_NOREF && app->app_ref != LUA_NOREF);
    CHECK(app->loaded_at > 1e9);
    sy_app_release(app);
}

TEST(test_minimal_and_modules)
{
    /* an empty file is a valid app with nothing in it */
    sy_app_t *app = load("empty.lua", "");
    CHECK(app != NULL);
    if (app != NULL) {
        CHECK(app->nroutes == 0 && app->ngroups == 0 && app->ntopics == 0 && app->nreply_topics == 0);
        CHECK(app->telemetry_topic == NULL);
        sy_app_release(app);
    }

    /* a module next to the routes file is found and reported as a file to watch */
    write_file("helper_mod.lua", "return { path = '/from-module' }\n");
    app = load("uses_module.lua", "local h = require('helper_mod')\nhttp.get(h.path, function() return 'x' end)\n");
    CHECK(app != NULL);
    if (app != NULL) {
        CHECK(route_id(app, SY_METHOD_GET, "/from-module") == 1);
        CHECK(app->nmodule_files == 1);
        if (app->nmodule_files == 1) {
            char expected[300];
            snprintf(expected, sizeof(expected), "%s/helper_mod.lua", dir);
            CHECK_STR(app->module_files[0], expected);
        }
        sy_app_release(app);
    } else {
        fprintf(stderr, "  %s\n", errbuf);
    }
}

TEST(test_load_errors)
{
    /* syntax error */
    CHECK(fails_at("syntax.lua", "http.get('/a', function() return 1 end)\nlocal x = = 2\n", 2, "'='"));
    /* runtime error while loading */
    CHECK(fails_at("runtime.lua", "local t = nil\n\nlocal y = t.field\n", 3, "attempt to index"));
    CHECK(fails_at("raise.lua", "\nerror('custom failure')\n", 2, "custom failure"));
    /* bad schema option: the routes file line, not a line of dto.lua */
    CHECK(fails_at("schema.lua", "local A = dto.object {\n  name = dto.string { bogus = true },\n}\n", 2,
                   "unknown option \"bogus\""));
    CHECK(fails_at("schema2.lua", "\n\nlocal S = dto.string { min_length = 5, max_length = 2 }\n", 3, "greater than"));
    /* route declared twice: the line of the second declaration */
    CHECK(fails_at("dup.lua",
                   "http.get('/users/:id', function() end)\nhttp.post('/users/:id', function() end)\n"
                   "http.get('/users/:name', function() end)\n",
                   3, "declared twice"));
    /* paths the router refuses */
    CHECK(fails_at("badpath.lua", "\nhttp.get('/a/:', function() end)\n", 2, "needs a name"));
    CHECK(fails_at("nopath.lua", "http.get('users', function() end)\n", 1, "must be a string starting with '/'"));
    CHECK(fails_at("nohandler.lua", "\nhttp.post('/x', {})\n", 2, "no handler function"));
    /* checked once the whole file has run, so without a line */
    sy_app_t *bad = load("badtopic.lua", "kafka.topic('t', { partitions = 0 })\n");
    CHECK(bad == NULL);
    CHECK(strstr(errbuf, "topic t: partitions must be between 1 and 1024") != NULL);
    CHECK(fails_at("nogroup.lua", "\n\nkafka.on('t', {}, function() end)\n", 3, "option 'group' is required"));
    CHECK(fails_at("badcfg.lua", "config { retries = 'x' }\n", 1, "retries must be a number"));

    /* the sandbox: no io, os.execute or C modules for a routes file */
    CHECK(fails_at("sandbox_io.lua", "\nlocal f = io.open('/etc/passwd')\n", 2, "io"));
    CHECK(fails_at("sandbox_os.lua", "os.execute('true')\n", 1, "execute"));
    CHECK(fails_at("sandbox_c.lua", "\n\nrequire('lpeg')\n", 3, "lpeg"));

    /* a file that does not exist */
    errbuf[0] = '\0';
    char missing[300];
    snprintf(missing, sizeof(missing), "%s/missing.lua", dir);
    sy_app_t *app = sy_app_create(missing, SY_SCRIPTS_BUILD_DIR, NULL, errbuf, sizeof(errbuf));
    CHECK(app == NULL);
    CHECK(strstr(errbuf, "missing.lua") != NULL);

    /* the runtime itself cannot be found */
    errbuf[0] = '\0';
    app = sy_app_create(write_file("ok.lua", ""), "/nonexistent-scripts", NULL, errbuf, sizeof(errbuf));
    CHECK(app == NULL);
    CHECK(strstr(errbuf, "switchyard.runtime") != NULL);

    /* a tiny errbuf is filled and terminated */
    char tiny[8];
    memset(tiny, 'x', sizeof(tiny));
    app = sy_app_create(write_file("tiny.lua", "error('x')\n"), SY_SCRIPTS_BUILD_DIR, NULL, tiny, sizeof(tiny));
    CHECK(app == NULL);
    CHECK(strlen(tiny) == sizeof(tiny) - 1);
}

/* Unknown route or consumer options are reported at the line of the routes file that declares them, like every
 * other declaration error. */
TEST(test_unknown_option_names_routes_line)
{
    CHECK(fails_at("routeopt.lua", "\nhttp.get('/x', { bogus = 1 }, function() end)\n", 2, "unknown option 'bogus'"));
    CHECK(fails_at("consumeropt.lua", "\n\nkafka.on('t', { group = 'g', bogus = 1 }, function() end)\n", 3,
                   "unknown option 'bogus'"));
}

/* http.static validates what it declares: a path that is not a string and a status that is no HTTP status are load
 * errors naming the routes file line (not a crash of `switchyard --check`, not a response with status 0). */
TEST(test_static_route_validation)
{
    CHECK(fails_at_isolated("static_nil_path.lua", "\nhttp.static('GET', nil, 200, 'x')\n", 2, "path"));
    CHECK(fails_at_isolated("static_table_path.lua", "http.static('GET', {}, 200, 'x')\n", 1, "path"));
    CHECK(fails_at_isolated("static_no_status.lua", "\n\nhttp.static('GET', '/s', nil, 'x')\n", 3, "status"));
    CHECK(fails_at_isolated("static_bad_status.lua", "http.static('GET', '/s', 1000, 'x')\n", 1, "status"));
    /* a path the router refuses is already reported at its line */
    CHECK(fails_at("static_bad_path.lua", "\nhttp.static('GET', 'nope', 200, 'x')\n", 2, "'/'"));
}

/* --- requests through App.handle_http ------------------------------------------------------------------------ */

typedef struct {
    int done, ok, status;
    char body[2048];
    char headers[1024]; /* "name: value\n" ... */
    char error[512];
} result_t;

static void on_done(sy_co_t *co, int ok, int nresults)
{
    result_t *r = co->data;
    lua_State *L = co->L;
    r->done = 1;
    r->ok = ok;
    if (ok <= 0) {
        snprintf(r->error, sizeof(r->error), "%s", ok < 0 ? "abandoned" : lua_tostring(L, -1));
        return;
    }
    int base = lua_gettop(L) - nresults + 1;
    r->status = (int)lua_tointeger(L, base);
    size_t len = 0;
    const char *body = lua_tolstring(L, base + 1, &len);
    snprintf(r->body, sizeof(r->body), "%.*s", (int)len, body ? body : "");
    size_t off = 0, n = lua_istable(L, base + 2) ? lua_objlen(L, base + 2) : 0;
    for (size_t i = 1; i + 1 <= n; i += 2) {
        lua_rawgeti(L, base + 2, (int)i);
        lua_rawgeti(L, base + 2, (int)i + 1);
        off += (size_t)snprintf(r->headers + off, sizeof(r->headers) - off, "%s: %s\n", lua_tostring(L, -2),
                                lua_tostring(L, -1));
        lua_pop(L, 2);
        if (off >= sizeof(r->headers)) break;
    }
}

/* Runs one request like core/lua/http.c does: App.handle_http(app, id, req) in a coroutine. `headers` is a flat
 * NULL-terminated list of lowercase names and values. */
static result_t run(sy_app_t *app, const char *method, const char *path, const char *query, const char *body,
                    const char *const *headers)
{
    result_t r = {0};
    sy_route_match_t m;
    unsigned mbit = sy_method_parse(method, strlen(method));
    int id = sy_router_match(app->router, mbit, path, strlen(path), &m);
    if (id < 0) {
        r.status = id == SY_ROUTER_NOT_FOUND ? 404 : 405;
        r.done = 1;
        return r;
    }
    size_t refcnt = app->refcnt;
    sy_co_t *co = sy_co_create(app, app->handle_http_ref, on_done, &r);
    CHECK(app->refcnt == refcnt + 1);
    lua_State *L = co->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, app->app_ref); /* fn app */
    lua_pushinteger(L, id);                          /* fn app id */
    lua_createtable(L, 0, 9);                        /* fn app id req */
    lua_pushstring(L, method);
    lua_setfield(L, -2, "method");
    lua_pushstring(L, path);
    lua_setfield(L, -2, "path");
    if (query != NULL) {
        lua_pushstring(L, query);
        lua_setfield(L, -2, "query_string");
    }
    if (body != NULL) {
        lua_pushstring(L, body);
        lua_setfield(L, -2, "body_raw");
    }
    lua_pushstring(L, "test-request-1");
    lua_setfield(L, -2, "id");
    lua_newtable(L); /* ... req headers */
    for (const char *const *h = headers; h != NULL && *h != NULL; h += 2) {
        lua_pushstring(L, h[1]);
        lua_setfield(L, -2, h[0]);
    }
    lua_setfield(L, -2, "headers");
    lua_createtable(L, 0, (int)m.nparams); /* ... req params */
    for (size_t i = 0; i < m.nparams; ++i) {
        lua_pushlstring(L, m.params[i].value, m.params[i].value_len);
        lua_setfield(L, -2, m.params[i].name);
    }
    lua_setfield(L, -2, "params");
    sy_co_resume(co, 3);
    /* nothing in these handlers waits: the coroutine has ended and released the app */
    CHECK(r.done);
    CHECK(app->refcnt == refcnt);
    CHECK(lua_gettop(app->L) == 0);
    return r;
}

static const char *const JSON[] = {"content-type", "application/json", NULL};

TEST(test_requests)
{
    sy_app_t *app = load("app.lua", APP_LUA);
    CHECK(app != NULL);
    if (app == NULL) return;

    /* 201 with a JSON body built from the validated body */
    result_t r = run(app, "POST", "/users", NULL, "{\"name\":\"Ada\",\"email\":\"ada@example.com\",\"extra\":1}", JSON);
    CHECK(r.ok == 1);
    CHECK(r.status == 201);
    CHECK(strstr(r.body, "\"id\":7") != NULL && strstr(r.body, "\"name\":\"Ada\"") != NULL);
    CHECK(strstr(r.headers, "content-type: application/json\n") != NULL);

    /* 200: params coerced by the schema, query parsed, handler headers lower-cased */
    r = run(app, "GET", "/users/42", "q=a%20b&x", NULL, NULL);
    CHECK(r.status == 200);
    CHECK(strstr(r.body, "\"id\":42") != NULL && strstr(r.body, "\"q\":\"a b\"") != NULL);
    CHECK(strstr(r.headers, "x-id: 42\n") != NULL);

    /* a bare string body: 200 text/plain */
    r = run(app, "GET", "/users/me", NULL, NULL, NULL);
    CHECK(r.status == 200);
    CHECK_STR(r.body, "me");
    CHECK(strstr(r.headers, "content-type: text/plain; charset=utf-8\n") != NULL);

    /* 400: validation failure in the NestJS shape, every message */
    r = run(app, "POST", "/users", NULL, "{\"name\":\"\",\"email\":\"nope\"}", JSON);
    CHECK(r.ok == 1);
    CHECK(r.status == 400);
    CHECK_STR(r.body, "{\"statusCode\":400,\"message\":[\"email must be an email\",\"name should not be empty\"],"
                      "\"error\":\"Bad Request\"}");
    CHECK(strstr(r.headers, "content-type: application/json\n") != NULL);

    /* 400: a path parameter that fails its schema */
    r = run(app, "GET", "/users/0", NULL, NULL, NULL);
    CHECK(r.status == 400);
    CHECK(strstr(r.body, "id must not be less than 1") != NULL);
    r = run(app, "GET", "/users/abc", NULL, NULL, NULL);
    CHECK(r.status == 400);
    CHECK(strstr(r.body, "id must be an integer number") != NULL);

    /* 400: malformed JSON, missing body, a top-level value that is not an object */
    r = run(app, "POST", "/users", NULL, "{\"name\":", JSON);
    CHECK(r.status == 400);
    CHECK(strstr(r.body, "malformed JSON") != NULL);
    r = run(app, "POST", "/users", NULL, NULL, JSON);
    CHECK(r.status == 400);
    r = run(app, "POST", "/users", NULL, "[1,2]", JSON);
    CHECK(r.status == 400);
    CHECK(strstr(r.body, "body must be an object") != NULL);

    /* 415: a body that is not declared as JSON */
    static const char *const TEXT[] = {"content-type", "text/plain", NULL};
    r = run(app, "POST", "/users", NULL, "{\"name\":\"Ada\",\"email\":\"ada@example.com\"}", TEXT);
    CHECK(r.status == 415);
    static const char *const VND[] = {"content-type", "Application/Vnd.Api+JSON; charset=utf-8", NULL};
    r = run(app, "POST", "/users", NULL, "{\"name\":\"Ada\",\"email\":\"ada@example.com\"}", VND);
    CHECK(r.status == 201);

    /* 500: a Lua error in the handler; the body has an error id and nothing of the error or the traceback */
    r = run(app, "GET", "/boom", NULL, NULL, NULL);
    CHECK(r.ok == 1);
    CHECK(r.status == 500);
    static const char PREFIX_500[] =
        "{\"statusCode\":500,\"message\":\"Internal Server Error\",\"error\":\"Internal Server Error\",\"errorId\":\"";
    CHECK(strncmp(r.body, PREFIX_500, sizeof(PREFIX_500) - 1) == 0);
    CHECK(strlen(r.body) == sizeof(PREFIX_500) - 1 + 12 + 2); /* 12 hex digits, then "} */
    CHECK(strstr(r.body, "traceback") == NULL && strstr(r.body, "attempt to index") == NULL &&
          strstr(r.body, ".lua") == NULL);
    CHECK(strstr(r.headers, "content-type: application/json\n") != NULL);

    /* http.error: the status and message the handler chose */
    r = run(app, "GET", "/raise", NULL, NULL, NULL);
    CHECK(r.status == 409);
    CHECK_STR(r.body, "{\"statusCode\":409,\"message\":\"taken\",\"error\":\"Conflict\"}");

    /* check mode has no producer: kafka.emit fails softly, the handler answers 503 + Retry-After */
    r = run(app, "POST", "/emit", NULL, NULL, NULL);
    CHECK(r.status == 503);
    CHECK(strstr(r.headers, "retry-after: 1\n") != NULL);

    /* a route's own body limit: 413 in the JSON error shape */
    r = run(app, "POST", "/small", NULL, "0123456789", NULL);
    CHECK(r.status == 204);
    r = run(app, "POST", "/small", NULL, "0123456789A", NULL);
    CHECK(r.status == 413);
    CHECK(strncmp(r.body, "{\"statusCode\":413,", 17) == 0);

    /* many requests leave the state balanced (checked in run) and the app at one reference */
    for (int i = 0; i < 200; ++i)
        run(app, "POST", "/users", NULL, i % 2 ? "{\"name\":\"A\",\"email\":\"a@b.co\"}" : "{", JSON);
    CHECK(app->refcnt == 1);
    sy_app_release(app);
}

/* Handlers that run away: a loop that never yields is stopped by the time budget, a handler that allocates without
 * bound by the memory limit; both become 500s and the state keeps serving. */
TEST(test_limits)
{
    sy_app_limits_t limits = {.memory_limit = (size_t)64 << 20, .slice_budget_ms = 100};
    sy_app_configure(&limits);
    sy_app_t *app =
        load("limits.lua", "http.get('/spin', function() while true do end end)\n"
                           "http.get('/hog', function() local t = {} for i = 1, 1e9 do t[i] = {i} end end)\n"
                           "http.get('/ok', function() return { ok = true } end)\n");
    CHECK(app != NULL);
    if (app != NULL) {
        result_t r = run(app, "GET", "/spin", NULL, NULL, NULL);
        CHECK(r.ok == 1 && r.status == 500);
        r = run(app, "GET", "/hog", NULL, NULL, NULL);
        /* the runtime answers 500 itself, or (when even its answer cannot be allocated) the error reaches the host,
         * which answers 500 (core/lua/http.c); either way the state serves the next request */
        CHECK((r.ok == 1 && r.status == 500) || (r.ok == 0 && strstr(r.error, "not enough memory") != NULL));
        r = run(app, "GET", "/ok", NULL, NULL, NULL);
        CHECK(r.status == 200);
        CHECK_STR(r.body, "{\"ok\":true}");
        sy_app_release(app);
    }
    sy_app_limits_t defaults = {.memory_limit = (size_t)256 << 20, .slice_budget_ms = 1000};
    sy_app_configure(&defaults);
}

/* --- the JSON layer (scripts/switchyard/json.lua) through the pipeline ------------------------------------------ */

static const char *ECHO_LUA = "http.post('/echo', function(req) return 200, req.body end)\n";

TEST(test_json_round_trip)
{
    sy_app_t *app = load("echo.lua", ECHO_LUA);
    CHECK(app != NULL);
    if (app == NULL) return;
    result_t r = run(app, "POST", "/echo", NULL, "{\"a\":[],\"b\":{},\"c\":[1,\"x\",null,true],\"d\":-0.5}", JSON);
    CHECK(r.status == 200);
    CHECK(strstr(r.body, "\"a\":[]") != NULL && strstr(r.body, "\"b\":{}") != NULL);
    CHECK(strstr(r.body, "\"c\":[1,\"x\",null,true]") != NULL && strstr(r.body, "\"d\":-0.5") != NULL);
    r = run(app, "POST", "/echo", NULL, "[[[[1]]]]", JSON);
    CHECK_STR(r.body, "[[[[1]]]]");
    sy_app_release(app);
}

/* fuzz_dto regression (tests/fuzz/corpus/fuzz_dto/regression_nan): NaN, Infinity, hexadecimal numbers and leading
 * zeros are not JSON; lua-cjson accepts them unless decode_invalid_numbers(false). A NestJS service answers 400;
 * switchyard decoded them, and echoing the NaN then failed in the encoder: a 500 for client input. */
TEST(test_json_rejects_non_json_numbers)
{
    sy_app_t *app = load("echo.lua", ECHO_LUA);
    CHECK(app != NULL);
    if (app == NULL) return;
    static const char *const bodies[] = {"{\"x\":NaN}",  "{\"x\":Infinity}", "{\"x\":-inf}",
                                         "{\"x\":0x10}", "{\"x\":012}",      "[+1]"};
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); ++i) {
        result_t r = run(app, "POST", "/echo", NULL, bodies[i], JSON);
        if (r.status != 400) fprintf(stderr, "  %s: %d %s\n", bodies[i], r.status, r.body);
        CHECK(r.status == 400);
    }
    sy_app_release(app);
}

/* fuzz_dto regression (regression_overflow): 1e999 is valid JSON that overflows to infinity. JSON.stringify writes it
 * null; switchyard's encoder raised, so echoing or forwarding such a body was a 500. */
TEST(test_json_overflowing_number_is_not_500)
{
    sy_app_t *app = load("echo.lua", ECHO_LUA);
    CHECK(app != NULL);
    if (app == NULL) return;
    result_t r = run(app, "POST", "/echo", NULL, "{\"x\":1e999,\"y\":[-1e400]}", JSON);
    if (r.status >= 500) fprintf(stderr, "  %d %s\n", r.status, r.body);
    CHECK(r.status < 500);
    sy_app_release(app);
}

/* fuzz_dto regression (regression_precision): lua-cjson 2.1.0 writes numbers with 14 significant digits, so a 15-17
 * digit number (a microsecond timestamp, a 64-bit id below 2^53) came back rounded from any echo, reply or emit. */
TEST(test_json_keeps_every_digit)
{
    sy_app_t *app = load("echo.lua", ECHO_LUA);
    CHECK(app != NULL);
    if (app == NULL) return;
    result_t r =
        run(app, "POST", "/echo", NULL,
            "{\"ts\":1700000000123456,\"id\":555555555555555,\"max\":9007199254740991,\"f\":0.1234567890123456}", JSON);
    CHECK(r.status == 200);
    CHECK(strstr(r.body, "\"ts\":1700000000123456") != NULL);
    CHECK(strstr(r.body, "\"id\":555555555555555") != NULL);
    CHECK(strstr(r.body, "\"max\":9007199254740991") != NULL);
    CHECK(strstr(r.body, "\"f\":0.1234567890123456") != NULL);
    if (strstr(r.body, "\"ts\":1700000000123456") == NULL) fprintf(stderr, "  %s\n", r.body);
    sy_app_release(app);
}

/* Review finding (regression_sentinel in the fuzz_dto corpus): json.lua encodes empty arrays by writing a sentinel
 * string into them and replacing its encoding afterwards; a client string equal to the sentinel was replaced too. */
TEST(test_json_sentinel_string_survives)
{
    sy_app_t *app = load("echo.lua", ECHO_LUA);
    CHECK(app != NULL);
    if (app == NULL) return;
    result_t r = run(app, "POST", "/echo", NULL, "{\"x\":[\"\\u0000switchyard-empty-array\\u0000\"],\"y\":[]}", JSON);
    CHECK(r.status == 200);
    CHECK(strstr(r.body, "\"x\":[\"\\u0000switchyard-empty-array\\u0000\"]") != NULL);
    CHECK(strstr(r.body, "\"y\":[]") != NULL);
    sy_app_release(app);
}

/* --- Kafka records through App.handle_message, with core.emit and core.sleep replaced by recording stubs ---------- */

static const char *NEST_LUA = "kafka.reply('rq', { group = 'g' }, function(msg) return msg.value end)\n"
                              "kafka.on('ev', { group = 'g' }, function(msg) end)\n";

/* The stubs: core.emit records and refuses topic names Kafka refuses, as the broker does for good; core.sleep counts
 * and gives up after 20 (a real one would wait forever). */
static const char STUBS[] =
    "local app = ...\n"
    "stub = { emits = {}, sleeps = 0 }\n"
    "app.core.emit = function(topic, value, key, headers, partition, wait)\n"
    "  stub.emits[#stub.emits + 1] = { topic = topic, value = value, headers = headers, partition = partition }\n"
    "  if #topic < 1 or #topic > 249 or not topic:find('^[%w%._%-]+$') then return nil, 'invalid topic', 1 end\n"
    "  return 0, #stub.emits\n"
    "end\n"
    "app.core.sleep = function(ms)\n"
    "  stub.sleeps = stub.sleeps + 1\n"
    "  if stub.sleeps > 20 then error('still retrying after 20 sleeps') end\n"
    "end\n";

static sy_app_t *load_with_stubs(const char *name, const char *text)
{
    sy_app_t *app = load(name, text);
    if (app == NULL) return NULL;
    luaL_loadstring(app->L, STUBS);
    lua_rawgeti(app->L, LUA_REGISTRYINDEX, app->app_ref);
    if (lua_pcall(app->L, 1, 0, 0) != 0) {
        fprintf(stderr, "  stubs: %s\n", lua_tostring(app->L, -1));
        lua_pop(app->L, 1);
    }
    return app;
}

/* The value of a Lua expression on the app's state, as a string in a static buffer ("(error)" on failure). */
static const char *eval(sy_app_t *app, const char *expr)
{
    static char buf[512];
    char chunk[512];
    snprintf(chunk, sizeof(chunk), "return tostring(%s)", expr);
    if (luaL_dostring(app->L, chunk) != 0) {
        snprintf(buf, sizeof(buf), "(error) %s", lua_tostring(app->L, -1));
    } else {
        snprintf(buf, sizeof(buf), "%s", lua_tostring(app->L, -1));
    }
    lua_settop(app->L, 0);
    return buf;
}

/* The outcome of App.handle_message (its first result) into a result_t: body = outcome, status = failed attempts. */
static void on_message_done(sy_co_t *co, int ok, int nresults)
{
    result_t *r = co->data;
    lua_State *L = co->L;
    r->done = 1;
    r->ok = ok;
    if (ok <= 0) {
        snprintf(r->error, sizeof(r->error), "%s", ok < 0 ? "abandoned" : lua_tostring(L, -1));
        return;
    }
    int base = lua_gettop(L) - nresults + 1;
    snprintf(r->body, sizeof(r->body), "%s", nresults >= 1 && lua_isstring(L, base) ? lua_tostring(L, base) : "");
    r->status = nresults >= 2 ? (int)lua_tointeger(L, base + 1) : 0;
}

/* Hands one record to App.handle_message like core/lua/kafka.c does; resets the stubs first. headers: flat
 * NULL-terminated name/value list. Returns the outcome ("ok", "replied", ...) or "(failed) <error>". */
static const char *message(sy_app_t *app, const char *topic, const char *value, const char *const *headers)
{
    static result_t r;
    memset(&r, 0, sizeof(r));
    eval(app, "(function() stub.emits, stub.sleeps = {}, 0 end)()");
    sy_co_t *co = sy_co_create(app, app->handle_message_ref, on_message_done, &r);
    lua_State *L = co->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, app->app_ref); /* fn app */
    lua_pushliteral(L, "g");                         /* fn app group */
    lua_createtable(L, 0, 6);                        /* fn app group msg */
    lua_pushstring(L, topic);
    lua_setfield(L, -2, "topic");
    lua_pushinteger(L, 0);
    lua_setfield(L, -2, "partition");
    lua_pushnumber(L, 7);
    lua_setfield(L, -2, "offset");
    if (value != NULL) {
        lua_pushstring(L, value);
        lua_setfield(L, -2, "value");
    }
    lua_newtable(L); /* ... msg headers */
    for (const char *const *h = headers; h != NULL && *h != NULL; h += 2) {
        lua_pushstring(L, h[1]);
        lua_setfield(L, -2, h[0]);
    }
    lua_setfield(L, -2, "headers");
    sy_co_resume(co, 3);
    CHECK(r.done);
    CHECK(lua_gettop(app->L) == 0);
    if (r.ok != 1) {
        snprintf(r.headers, sizeof(r.headers), "(failed) %.900s", r.error);
        return r.headers;
    }
    return r.body;
}

TEST(test_message_request_detection)
{
    sy_app_t *app = load_with_stubs("nest.lua", NEST_LUA);
    CHECK(app != NULL);
    if (app == NULL) return;
    static const char *const REQUEST[] = {
        "kafka_correlationId", "abc-1", "kafka_replyTopic", "rq.reply", "kafka_replyPartition", "3", NULL};
    CHECK_STR(message(app, "rq", "{\"userId\":1}", REQUEST), "replied");
    CHECK_STR(eval(app, "#stub.emits"), "1");
    CHECK_STR(eval(app, "stub.emits[1].topic"), "rq.reply");
    CHECK_STR(eval(app, "stub.emits[1].partition"), "3");
    CHECK_STR(eval(app, "stub.emits[1].value"), "{\"userId\":1}");
    CHECK_STR(eval(app, "stub.emits[1].headers.kafka_correlationId"), "abc-1");
    CHECK_STR(eval(app, "stub.emits[1].headers['kafka_nest-is-disposed'] == '\\0'"), "true");
    CHECK_STR(eval(app, "stub.emits[1].headers['kafka_nest-err']"), "nil");

    /* without kafka_replyTopic (or kafka_correlationId) it is an event, even on a request-reply topic */
    static const char *const NO_REPLY_TOPIC[] = {"kafka_correlationId", "abc-2", NULL};
    CHECK_STR(message(app, "rq", "hello", NO_REPLY_TOPIC), "ok");
    CHECK_STR(eval(app, "#stub.emits"), "0");
    static const char *const NO_CID[] = {"kafka_replyTopic", "rq.reply", NULL};
    CHECK_STR(message(app, "rq", "hello", NO_CID), "ok");
    CHECK_STR(eval(app, "#stub.emits"), "0");
    /* Nest headers on an event topic change nothing */
    CHECK_STR(message(app, "ev", "x", REQUEST), "ok");
    CHECK_STR(eval(app, "#stub.emits"), "0");
    CHECK_STR(message(app, "nope", "x", NULL), "unhandled");

    /* the NestJS parser: JSON when it starts with { or [, otherwise the text */
    CHECK_STR(eval(app, "type(require('switchyard.runtime').deserialize('{\"a\":1}'))"), "table");
    CHECK_STR(eval(app, "require('switchyard.runtime').deserialize('[1,')"), "[1,");
    CHECK_STR(eval(app, "require('switchyard.runtime').deserialize('42')"), "42");
    CHECK_STR(eval(app, "require('switchyard.runtime').deserialize(nil)"), "nil");
    sy_app_release(app);
}

/* fuzz_nest_headers regression (corpus regression_empty_reply_topic): App.reply retries every refusal of the
 * producer forever (backoff capped at 5 s), also refusals that cannot pass (a kafka_replyTopic Kafka refuses, a
 * partition that does not exist): the handler never ends, the record is never committed, the partition stalls.
 * Handling a record must end. */
TEST(test_reply_to_unusable_topic_terminates)
{
    sy_app_t *app = load_with_stubs("nest.lua", NEST_LUA);
    CHECK(app != NULL);
    if (app == NULL) return;
    static const char *const topics[] = {"", "no spaces allowed", "a/b"};
    for (size_t i = 0; i < sizeof(topics) / sizeof(topics[0]); ++i) {
        const char *headers[] = {"kafka_correlationId", "c1", "kafka_replyTopic", topics[i], NULL};
        const char *outcome = message(app, "rq", "1", headers);
        if (strncmp(outcome, "(failed)", 8) == 0) fprintf(stderr, "  reply topic \"%s\": %.120s\n", topics[i], outcome);
        CHECK(strncmp(outcome, "(failed)", 8) != 0);
    }
    sy_app_release(app);
}

/* fuzz_nest_headers regression (regression_reply_partition): kafka_replyPartition went through tonumber() unchecked:
 * "-1" became RD_KAFKA_PARTITION_UA (the reply lands on any partition, the requester never sees it), "1.5" was
 * truncated, "1e10" and "1e999" were cast to int32 in core/lua/kafka.c. A reply goes to a real partition or to none
 * named. */
TEST(test_reply_partition_header_validated)
{
    sy_app_t *app = load_with_stubs("nest.lua", NEST_LUA);
    CHECK(app != NULL);
    if (app == NULL) return;
    static const char *const partitions[] = {"-1", "1.5", "1e10", "1e999", "99999999999"};
    for (size_t i = 0; i < sizeof(partitions) / sizeof(partitions[0]); ++i) {
        const char *headers[] = {"kafka_correlationId", "c1", "kafka_replyTopic", "rq.reply", "kafka_replyPartition",
                                 partitions[i],         NULL};
        message(app, "rq", "1", headers);
        char ok[64];
        snprintf(ok, sizeof(ok), "%s",
                 eval(app, "(function(p) return p == nil or (p == math.floor(p) and p >= 0 and p < 2^31) end)"
                           "(stub.emits[1] and stub.emits[1].partition)"));
        if (strcmp(ok, "true") != 0)
            fprintf(stderr, "  kafka_replyPartition \"%s\" -> partition %s\n", partitions[i],
                    eval(app, "stub.emits[1] and stub.emits[1].partition"));
        CHECK_STR(ok, "true");
    }
    sy_app_release(app);
}

/* fuzz_nest_headers regression (regression_reply_not_serializable): a reply value the encoder refuses (here the echo
 * of [1e999]) raised in App.reply, outside the handler's protection: no reply at all, the requester waits for its
 * timeout. It must get a reply (an error reply, or null). */
TEST(test_reply_value_not_serializable)
{
    sy_app_t *app = load_with_stubs("nest.lua", NEST_LUA);
    CHECK(app != NULL);
    if (app == NULL) return;
    static const char *const REQUEST[] = {"kafka_correlationId", "c9", "kafka_replyTopic", "rq.reply", NULL};
    const char *outcome = message(app, "rq", "[1e999]", REQUEST);
    if (strncmp(outcome, "(failed)", 8) == 0) fprintf(stderr, "  %.160s\n", outcome);
    CHECK(strncmp(outcome, "(failed)", 8) != 0);
    CHECK_STR(eval(app, "#stub.emits"), "1");
    sy_app_release(app);
}

/* fuzz_nest_headers regression (regression_deserialize_nan): the NestJS parser is JSON.parse; text that is not JSON
 * stays a string. "[NaN]" was decoded into a table holding NaN. */
TEST(test_deserialize_keeps_non_json_as_string)
{
    sy_app_t *app = load_with_stubs("nest.lua", NEST_LUA);
    CHECK(app != NULL);
    if (app == NULL) return;
    CHECK_STR(eval(app, "require('switchyard.runtime').deserialize('[NaN]')"), "[NaN]");
    CHECK_STR(eval(app, "require('switchyard.runtime').deserialize('{\"a\":0x1F}')"), "{\"a\":0x1F}");
    sy_app_release(app);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

TEST(test_setup)
{
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        exit(1);
    }
    /* handler errors are logged on purpose: SY_TEST_DEBUG=1 shows them */
    sy_log_min_level = getenv("SY_TEST_DEBUG") != NULL ? SY_LOG_DEBUG : (sy_log_level_t)(SY_LOG_ERROR + 1);
}

TEST(test_cleanup)
{
    CHECK(nftw(dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS) == 0);
}

RUN_TESTS(T(test_setup), T(test_load_declarations), T(test_minimal_and_modules), T(test_load_errors),
          T(test_unknown_option_names_routes_line), T(test_static_route_validation), T(test_requests), T(test_limits),
          T(test_json_round_trip), T(test_json_rejects_non_json_numbers), T(test_json_overflowing_number_is_not_500),
          T(test_json_keeps_every_digit), T(test_json_sentinel_string_survives), T(test_message_request_detection),
          T(test_reply_to_unusable_topic_terminates), T(test_reply_partition_header_validated),
          T(test_reply_value_not_serializable), T(test_deserialize_keeps_non_json_as_string), T(test_cleanup))
