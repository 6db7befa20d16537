/*
 * Loading a routes file into a fresh Lua state, and running coroutines in it. See app.h.
 * The language itself (http/kafka/store/dto DSL, request pipeline) lives in scripts/switchyard/runtime.lua; this
 * file only builds the state, hands the runtime its C primitives, and copies the declarations into C structures.
 */
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/time.h>
#include <time.h>
#include "common/log.h"
#include "common/mem.h"
#include "lua/app.h"
#include "lua/primitives.h"

static sy_app_limits_t limits = {.memory_limit = (size_t)256 << 20, .slice_budget_ms = 1000};
/* when the Lua code running on this thread must have yielded or returned; 0 when nothing is being timed */
static __thread uint64_t slice_deadline_ns;
/* the memory limit applies to Lua code (a handler, the routes file loading), never to the host's own bookkeeping
 * between resumes, which must not fail unprotected */
static __thread int limit_memory;

void sy_app_configure(const sy_app_limits_t *l)
{
    limits = *l;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void slice_start(void)
{
    slice_deadline_ns = limits.slice_budget_ms != 0 ? now_ns() + limits.slice_budget_ms * 1000000ull : 0;
}

/* The instruction-count hook: a handler that runs too long without yielding gets an error where it stands (it is
 * then a 500 or a failed handler attempt, like any error). Interpreted code only: runtime.lua keeps the routes
 * file's functions out of the JIT for this reason. */
static void budget_hook(lua_State *L, lua_Debug *ar)
{
    if (slice_deadline_ns != 0 && now_ns() > slice_deadline_ns) {
        slice_deadline_ns = 0; /* once: the error handler and the cleanup must be able to run */
        luaL_error(L, "handler exceeded its time budget of %d ms without yielding", (int)limits.slice_budget_ms);
    }
}

/* lua_Alloc with a per-state ceiling: past it an allocation fails and Lua raises "not enough memory". It wraps
 * LuaJIT's own allocator (faster than malloc for Lua's many small objects), which stays in charge of the memory. */
static void *limited_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    sy_app_t *app = ud;
    size_t old = ptr != NULL ? osize : 0;
    if (nsize > old && limit_memory && limits.memory_limit != 0 && app->mem_used + (nsize - old) > limits.memory_limit)
        return NULL;
    void *p = app->base_alloc(app->base_ud, ptr, osize, nsize);
    if (p != NULL || nsize == 0) app->mem_used = app->mem_used - old + nsize;
    return p;
}

static int panic_handler(lua_State *L)
{
    sy_error("lua", "unprotected Lua error, aborting: %s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "?");
    abort();
    return 0;
}

static int full_gc(lua_State *L)
{
    lua_gc(L, LUA_GCCOLLECT, 0);
    return 0;
}

/* After Lua code ran close to the memory limit: collect now (protected, as finalizers run Lua code), so that the
 * garbage of a handler that hit the limit does not fail the next one. */
static void collect_if_needed(sy_app_t *app)
{
    if (limits.memory_limit != 0 && app->mem_used > limits.memory_limit / 4 * 3) lua_cpcall(app->L, full_gc, NULL);
}

static int traceback_handler(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (msg == NULL) msg = "(error object is not a string)";
    luaL_traceback(L, L, msg, 1);
    return 1;
}

/* Runs `nargs` arguments + function below them under pcall with a traceback; on error copies the first line of the
 * message (file:line: message) into errbuf and logs the traceback at debug level. */
static int protected_call(lua_State *L, int nargs, int nresults, char *errbuf, size_t errbuf_size)
{
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, traceback_handler);
    lua_insert(L, base);
    int rc = lua_pcall(L, nargs, nresults, base);
    lua_remove(L, base);
    if (rc != 0) {
        const char *msg = lua_tostring(L, -1);
        if (msg == NULL) msg = "unknown error";
        sy_debug("lua", "%s", msg);
        size_t first = strcspn(msg, "\n");
        snprintf(errbuf, errbuf_size, "%.*s", (int)first, msg);
        lua_pop(L, 1);
        return -1;
    }
    return 0;
}

static void set_package_paths(lua_State *L, const char *scripts_dir, const char *routes_path)
{
    char routes_dir[1024];
    const char *slash = strrchr(routes_path, '/');
    if (slash == NULL)
        snprintf(routes_dir, sizeof(routes_dir), ".");
    else
        snprintf(routes_dir, sizeof(routes_dir), "%.*s", (int)(slash - routes_path), routes_path);
    if (routes_dir[0] == '\0') snprintf(routes_dir, sizeof(routes_dir), "/");

    lua_getglobal(L, "package"); /* package */
    /* the Lua library, the routes file's directory, then the system's pure-Lua modules (dkjson) without "./" */
    lua_getfield(L, -1, "path"); /* package path */
    const char *syspath = lua_tostring(L, -1);
    luaL_Buffer pb;
    luaL_buffinit(L, &pb);
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s/?.lua;%s/?/init.lua", scripts_dir, scripts_dir, routes_dir,
                    routes_dir);
    luaL_addvalue(&pb);
    for (const char *p = syspath ? syspath : ""; *p != '\0';) {
        size_t n = strcspn(p, ";");
        if (n > 0 && strncmp(p, "./", 2) != 0) {
            luaL_addchar(&pb, ';');
            luaL_addlstring(&pb, p, n);
        }
        p += n;
        if (*p == ';') ++p;
    }
    luaL_pushresult(&pb);        /* package path newpath */
    lua_setfield(L, -3, "path"); /* package path */
    lua_pop(L, 1);               /* package */
    /* keep LuaJIT's compiled-in C module path (the multiarch lua/5.1 directory that holds cjson.so) but never the
     * current directory: nothing in the working directory is loaded as native code */
    lua_getfield(L, -1, "cpath"); /* package cpath */
    const char *cpath = lua_tostring(L, -1);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    int first = 1;
    for (const char *p = cpath ? cpath : ""; *p != '\0';) {
        size_t n = strcspn(p, ";");
        if (n > 0 && strncmp(p, "./", 2) != 0) {
            if (!first) luaL_addchar(&b, ';');
            luaL_addlstring(&b, p, n);
            first = 0;
        }
        p += n;
        if (*p == ';') ++p;
    }
    luaL_pushresult(&b);          /* package cpath newcpath */
    lua_setfield(L, -3, "cpath"); /* package cpath */
    lua_pop(L, 2);
}

static char *field_string(lua_State *L, int idx, const char *name)
{
    lua_getfield(L, idx, name);
    char *s = lua_isstring(L, -1) ? sy_strdup(lua_tostring(L, -1)) : NULL;
    lua_pop(L, 1);
    return s;
}

static sy_static_response_t *read_static(lua_State *L, int idx)
{
    sy_static_response_t *s = sy_calloc(1, sizeof(*s));
    lua_getfield(L, idx, "status");
    s->status = (int)lua_tointeger(L, -1);
    lua_getfield(L, idx, "body");
    size_t len;
    const char *body = lua_tolstring(L, -1, &len);
    s->body = sy_strndup(body ? body : "", body ? len : 0);
    s->body_len = body ? len : 0;
    lua_getfield(L, idx, "headers"); /* static status body headers */
    size_t n = lua_objlen(L, -1);
    s->headers = sy_calloc(n + 1, sizeof(char *));
    for (size_t i = 0; i < n; ++i) {
        lua_rawgeti(L, -1, (int)i + 1);
        s->headers[i] = sy_strdup(lua_tostring(L, -1));
        lua_pop(L, 1);
    }
    s->nheaders = n / 2;
    lua_pop(L, 3);
    return s;
}

static void free_static(sy_static_response_t *s)
{
    if (s == NULL) return;
    for (size_t i = 0; i < s->nheaders * 2; ++i)
        free(s->headers[i]);
    free(s->headers);
    free(s->body);
    free(s);
}

/* Copies app.routes into the C router; stack: app at the top. */
static int compile_routes(sy_app_t *app, char *errbuf, size_t errbuf_size)
{
    lua_State *L = app->L;
    lua_getfield(L, -1, "routes"); /* app routes */
    app->nroutes = lua_objlen(L, -1);
    app->statics = sy_calloc(app->nroutes + 1, sizeof(*app->statics));
    app->route_labels = sy_calloc(app->nroutes + 1, sizeof(char *));
    app->router = sy_router_create();
    for (size_t i = 1; i <= app->nroutes; ++i) {
        lua_rawgeti(L, -1, (int)i); /* app routes route */
        char *method = field_string(L, -1, "method"), *path = field_string(L, -1, "path"),
             *where = field_string(L, -1, "where");
        char err[256];
        int rc = -1;
        if (method == NULL || path == NULL) /* the runtime checks both; never trust a NULL into the router */
            snprintf(err, sizeof(err), "route %zu has no method or path", i);
        else
            rc = sy_router_add(app->router, sy_method_parse(method, strlen(method)), path, (int)i, err, sizeof(err));
        if (rc != 0) snprintf(errbuf, errbuf_size, "%s: %s", where ? where : "routes", err);
        app->route_labels[i - 1] = sy_strdup(path ? path : "?");
        lua_getfield(L, -1, "static");
        if (rc == 0 && lua_istable(L, -1)) app->statics[i - 1] = read_static(L, lua_gettop(L));
        lua_pop(L, 2);
        free(method);
        free(path);
        free(where);
        if (rc != 0) {
            lua_pop(L, 1);
            return -1;
        }
    }
    lua_pop(L, 1);
    return 0;
}

/* Copies app.groups and app.topics; stack: app at the top. */
static void read_declarations(sy_app_t *app)
{
    lua_State *L = app->L;
    lua_getfield(L, -1, "groups"); /* app groups */
    app->ngroups = lua_objlen(L, -1);
    app->groups = sy_calloc(app->ngroups + 1, sizeof(*app->groups));
    for (size_t i = 0; i < app->ngroups; ++i) {
        lua_rawgeti(L, -1, (int)i + 1); /* app groups g */
        app->groups[i].group = field_string(L, -1, "group");
        lua_getfield(L, -1, "serves_requests");
        app->groups[i].serves_requests = lua_toboolean(L, -1);
        lua_pop(L, 1);
        lua_getfield(L, -1, "topics"); /* app groups g topics */
        app->groups[i].ntopics = lua_objlen(L, -1);
        app->groups[i].topics = sy_calloc(app->groups[i].ntopics + 1, sizeof(char *));
        for (size_t j = 0; j < app->groups[i].ntopics; ++j) {
            lua_rawgeti(L, -1, (int)j + 1);
            app->groups[i].topics[j] = sy_strdup(lua_tostring(L, -1));
            lua_pop(L, 1);
        }
        lua_pop(L, 2);
    }
    lua_pop(L, 1);

    lua_getfield(L, -1, "topic_order"); /* app order */
    lua_getfield(L, -2, "topics");      /* app order topics */
    app->ntopics = lua_objlen(L, -2);
    app->topics = sy_calloc(app->ntopics + 1, sizeof(*app->topics));
    for (size_t i = 0; i < app->ntopics; ++i) {
        lua_rawgeti(L, -2, (int)i + 1); /* app order topics name */
        app->topics[i].name = sy_strdup(lua_tostring(L, -1));
        lua_gettable(L, -2); /* app order topics t */
        lua_getfield(L, -1, "partitions");
        app->topics[i].partitions = (int)lua_tointeger(L, -1);
        lua_pop(L, 1);
        app->topics[i].compression = field_string(L, -1, "compression");
        lua_pop(L, 1);
    }
    lua_pop(L, 2);
}

/* app[name] as a NULL-terminated array of copies; stack: app at the top. */
static char **read_string_list(lua_State *L, const char *name, size_t *n)
{
    lua_getfield(L, -1, name);
    *n = lua_istable(L, -1) ? lua_objlen(L, -1) : 0;
    char **list = sy_calloc(*n + 1, sizeof(char *));
    for (size_t i = 0; i < *n; ++i) {
        lua_rawgeti(L, -1, (int)i + 1);
        list[i] = sy_strdup(lua_tostring(L, -1) ? lua_tostring(L, -1) : "");
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return list;
}

static void free_string_list(char **list, size_t n)
{
    for (size_t i = 0; i < n; ++i)
        free(list[i]);
    free(list);
}

static void seed_random(lua_State *L)
{
    uint32_t seed;
    if (getrandom(&seed, sizeof(seed), 0) != sizeof(seed)) {
        struct timeval tv;
        gettimeofday(&tv, NULL);
        seed = (uint32_t)(tv.tv_sec ^ tv.tv_usec);
    }
    lua_getglobal(L, "math");
    lua_getfield(L, -1, "randomseed");
    lua_pushnumber(L, (lua_Number)(seed & 0x7fffffff));
    lua_call(L, 1, 0);
    lua_pop(L, 1);
}

sy_app_t *sy_app_create(const char *routes_path, const char *scripts_dir, struct st_sy_worker_t *worker, char *errbuf,
                        size_t errbuf_size)
{
    sy_app_t *app = sy_calloc(1, sizeof(*app));
    lua_State *L;

    app->worker = worker;
    app->refcnt = 1;
    h2o_linklist_init_anchor(&app->coroutines);
    app->app_ref = app->handle_http_ref = app->handle_message_ref = LUA_NOREF;
    if ((L = app->L = luaL_newstate()) == NULL) {
        snprintf(errbuf, errbuf_size, "cannot create a Lua state");
        goto Error;
    }
    app->base_alloc = lua_getallocf(L, &app->base_ud);
    app->mem_used = (size_t)lua_gc(L, LUA_GCCOUNT, 0) * 1024 + (size_t)lua_gc(L, LUA_GCCOUNTB, 0);
    lua_setallocf(L, limited_alloc, app);
    lua_atpanic(L, panic_handler);
    luaL_openlibs(L);
    lua_sethook(L, budget_hook, LUA_MASKCOUNT, 10000);
    set_package_paths(L, scripts_dir, routes_path);
    seed_random(L);

    /* runtime = require "switchyard.runtime" */
    lua_getglobal(L, "require");
    lua_pushstring(L, "switchyard.runtime");
    if (protected_call(L, 1, 1, errbuf, errbuf_size) != 0) goto Error;
    int runtime = lua_gettop(L);

    if (!limits.unsafe) {
        char dir[1024];
        const char *slash = strrchr(routes_path, '/');
        if (slash == NULL)
            snprintf(dir, sizeof(dir), ".");
        else
            snprintf(dir, sizeof(dir), "%.*s", (int)(slash - routes_path), routes_path);
        lua_getfield(L, runtime, "sandbox");
        lua_pushstring(L, dir);
        if (protected_call(L, 1, 0, errbuf, errbuf_size) != 0) goto Error;
    }

    /* app = runtime.load(core, routes_path) */
    lua_getfield(L, runtime, "load"); /* runtime load */
    sy_lua_push_primitives(L, app);   /* runtime load core */
    lua_pushstring(L, routes_path);
    if (protected_call(L, 2, 1, errbuf, errbuf_size) != 0) goto Error;
    /* runtime app */
    if (compile_routes(app, errbuf, errbuf_size) != 0) goto Error;
    read_declarations(app);

    app->module_files = read_string_list(L, "module_files", &app->nmodule_files);
    lua_getfield(L, -1, "config"); /* runtime app config */
    lua_getfield(L, -1, "linger_ms");
    app->linger_ms = (int)lua_tointeger(L, -1);
    lua_getfield(L, -2, "batch_size");
    app->batch_size = (int)lua_tointeger(L, -1);
    lua_getfield(L, -3, "delivery_timeout_ms");
    app->delivery_timeout_ms = (int)lua_tointeger(L, -1);
    lua_getfield(L, -4, "fetch_wait_ms");
    app->fetch_wait_ms = (int)lua_tointeger(L, -1);
    lua_getfield(L, -5, "event_fetch_wait_ms");
    app->event_fetch_wait_ms = (int)lua_tointeger(L, -1);
    lua_getfield(L, -6, "reply_fetch_wait_ms");
    app->reply_fetch_wait_ms = (int)lua_tointeger(L, -1);
    lua_pop(L, 7);
    lua_getfield(L, -1, "telemetry"); /* runtime app telemetry */
    if (lua_istable(L, -1)) {
        app->telemetry_topic = field_string(L, -1, "topic");
        lua_getfield(L, -1, "batch");
        app->telemetry_batch = (int)lua_tointeger(L, -1);
        lua_getfield(L, -2, "flush_ms");
        app->telemetry_flush_ms = (int)lua_tointeger(L, -1);
        lua_pop(L, 2);
    }
    lua_pop(L, 1);
    app->reply_topics = read_string_list(L, "reply_topics", &app->nreply_topics);

    lua_getfield(L, -1, "describe"); /* runtime app describe */
    lua_pushvalue(L, -2);
    if (protected_call(L, 1, 1, errbuf, errbuf_size) != 0) goto Error;
    app->summary = sy_strdup(lua_tostring(L, -1) ? lua_tostring(L, -1) : "");
    lua_pop(L, 1);

    app->app_ref = luaL_ref(L, LUA_REGISTRYINDEX); /* runtime */
    lua_getfield(L, runtime, "App");               /* runtime App */
    lua_getfield(L, -1, "handle_http");
    app->handle_http_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_getfield(L, -1, "handle_message");
    app->handle_message_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pop(L, 2);

    struct timeval tv;
    gettimeofday(&tv, NULL);
    app->loaded_at = (double)tv.tv_sec + tv.tv_usec / 1e6;
    return app;

Error:
    app->refcnt = 1;
    sy_app_release(app);
    return NULL;
}

void sy_app_retain(sy_app_t *app)
{
    ++app->refcnt;
}

void sy_app_release(sy_app_t *app)
{
    if (--app->refcnt != 0) return;
    if (app->L != NULL) {
        /* LuaJIT frees its own allocator's arena at close only when it recognises it as the state's allocator */
        lua_setallocf(app->L, app->base_alloc, app->base_ud);
        lua_close(app->L);
    }
    sy_router_destroy(app->router);
    for (size_t i = 0; i < app->nroutes; ++i) {
        free_static(app->statics ? app->statics[i] : NULL);
        free(app->route_labels ? app->route_labels[i] : NULL);
    }
    free(app->statics);
    free(app->route_labels);
    free(app->telemetry_topic);
    for (size_t i = 0; i < app->ngroups; ++i) {
        for (size_t j = 0; j < app->groups[i].ntopics; ++j)
            free(app->groups[i].topics[j]);
        free(app->groups[i].topics);
        free(app->groups[i].group);
    }
    free(app->groups);
    for (size_t i = 0; i < app->ntopics; ++i) {
        free(app->topics[i].name);
        free(app->topics[i].compression);
    }
    free(app->topics);
    free(app->summary);
    free_string_list(app->module_files, app->nmodule_files);
    free_string_list(app->reply_topics, app->nreply_topics);
    free(app);
}

sy_co_t *sy_co_create(sy_app_t *app, int func_ref, sy_co_done_cb done, void *data)
{
    sy_co_t *co = sy_calloc(1, sizeof(*co));
    co->app = app;
    co->done = done;
    co->data = data;
    co->L = lua_newthread(app->L);
    co->ref = luaL_ref(app->L, LUA_REGISTRYINDEX); /* anchors the thread against the GC */
    lua_rawgeti(co->L, LUA_REGISTRYINDEX, func_ref);
    h2o_linklist_insert(&app->coroutines, &co->link);
    sy_app_retain(app);
    return co;
}

void sy_co_resume(sy_co_t *co, int nargs)
{
    sy_app_t *app = co->app;
    sy_co_t *saved = app->running;
    uint64_t saved_deadline = slice_deadline_ns;
    app->running = co;
    slice_start();
    int saved_limit = limit_memory;
    limit_memory = 1;
    int rc = lua_resume(co->L, nargs);
    limit_memory = saved_limit;
    slice_deadline_ns = saved_deadline;
    app->running = saved;
    if (rc == LUA_YIELD) return;
    if (rc == 0) {
        co->done(co, 1, lua_gettop(co->L));
    } else {
        const char *msg = lua_tostring(co->L, -1);
        luaL_traceback(app->L, co->L, msg ? msg : "(error object is not a string)", 0);
        lua_xmove(app->L, co->L, 1);
        co->done(co, 0, 1);
    }
    if (h2o_timeout_is_linked(&co->timer)) h2o_timeout_unlink(&co->timer);
    h2o_linklist_unlink(&co->link);
    luaL_unref(app->L, LUA_REGISTRYINDEX, co->ref);
    free(co);
    collect_if_needed(app);
    sy_app_release(app);
}

void sy_app_force_close(sy_app_t *app)
{
    size_t n = 0;
    while (!h2o_linklist_is_empty(&app->coroutines)) {
        sy_co_t *co = H2O_STRUCT_FROM_MEMBER(sy_co_t, link, app->coroutines.next);
        if (h2o_timeout_is_linked(&co->timer)) h2o_timeout_unlink(&co->timer);
        h2o_linklist_unlink(&co->link);
        co->done(co, -1, 0);
        free(co);
        ++n;
    }
    if (n != 0) sy_warn("lua", "%zu handler(s) still waiting at shutdown were abandoned", n);
    app->refcnt = 1;
    sy_app_release(app);
}

sy_co_t *sy_co_check(lua_State *L, sy_app_t *app, const char *what)
{
    if (app->running == NULL || app->running->L != L)
        luaL_error(L,
                   "%s can only be called from an HTTP or topic handler (not at load time or from a nested "
                   "coroutine)",
                   what);
    return app->running;
}

sy_app_t *sy_app_from_upvalue(lua_State *L)
{
    return lua_touserdata(L, lua_upvalueindex(1));
}
