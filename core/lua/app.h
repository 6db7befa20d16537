/*
 * An app is one loaded version of the routes file inside one Lua state: the state, the route table compiled into
 * a C router, the static responses, and the coroutines running in it. Each worker thread owns its own app (a Lua
 * state is never shared between threads). A reload builds a new app; the old one lives until its last coroutine
 * ends (refcount). This is the only module that creates Lua states.
 */
#ifndef SY_LUA_APP_H
#define SY_LUA_APP_H

#include <stddef.h>
#include <stdint.h>
#include <lua.h>
#include <h2o.h>
#include "http/router.h"

struct st_sy_worker_t;

typedef struct {
    int status;
    char *body;
    size_t body_len;
    char **headers; /* flat name/value list */
    size_t nheaders;
} sy_static_response_t;

typedef struct {
    char *group;
    char **topics;
    size_t ntopics;
    int serves_requests; /* a kafka.reply handler is in this group: someone waits for its answers */
} sy_app_group_t;

typedef struct {
    char *name;
    int partitions;
    char *compression; /* NULL = default */
} sy_app_topic_t;

typedef struct st_sy_co_t sy_co_t;

typedef struct st_sy_app_t {
    lua_State *L;
    struct st_sy_worker_t *worker; /* NULL when only checking a file */
    sy_router_t *router;
    size_t nroutes;
    sy_static_response_t **statics; /* per route id: NULL unless the route is static */
    char **route_labels;            /* per route id: the declared path, for metrics and telemetry */
    sy_app_group_t *groups;
    size_t ngroups;
    sy_app_topic_t *topics;
    size_t ntopics;
    int app_ref;               /* the runtime's app object */
    int handle_http_ref;       /* App.handle_http */
    int handle_message_ref;    /* App.handle_message */
    size_t refcnt;             /* 1 while current + 1 per live coroutine */
    sy_co_t *running;          /* the coroutine being resumed, if any */
    h2o_linklist_t coroutines; /* every live coroutine (sy_co_t.link) */
    double loaded_at;          /* unix time */
    size_t mem_used;           /* bytes allocated by the Lua state */
    lua_Alloc base_alloc;      /* LuaJIT's own allocator, wrapped by the memory limit */
    void *base_ud;
    char *summary;       /* App:describe(), for --check and /status */
    char **reply_topics; /* "<topic>.reply" topics kafka.request reads from */
    size_t nreply_topics;
    int linger_ms; /* config: the producer's batching and delivery timeout */
    int batch_size;
    int delivery_timeout_ms;
    int fetch_wait_ms; /* config: consumer fetch waits (groups that answer requests, event-only groups, replies) */
    int event_fetch_wait_ms;
    int reply_fetch_wait_ms;
    char *telemetry_topic; /* NULL: no request telemetry */
    int telemetry_batch;
    int telemetry_flush_ms;
    char **module_files; /* Lua modules the routes file required (watched for reload) */
    size_t nmodule_files;
} sy_app_t;

/* Process-wide limits for every Lua state; set once by main before any app is created (defaults otherwise). */
typedef struct {
    size_t memory_limit;      /* bytes per Lua state; 0 = unlimited (default 256 MiB) */
    uint64_t slice_budget_ms; /* longest a handler may run without yielding; 0 = unlimited (default 1000 ms) */
    int unsafe;               /* 1: no sandbox (C modules, io, os.execute, ffi available to the routes file) */
} sy_app_limits_t;
void sy_app_configure(const sy_app_limits_t *limits);

/* Creates a Lua state, loads the runtime from `scripts_dir` and the routes file into it, and compiles the routes.
 * `worker` may be NULL (a check: primitives that need a worker raise if called). Returns NULL with a message
 * ("routes.lua:12: ...") in errbuf when the file does not load. The app starts with refcnt 1. */
sy_app_t *sy_app_create(const char *routes_path, const char *scripts_dir, struct st_sy_worker_t *worker, char *errbuf,
                        size_t errbuf_size);
void sy_app_retain(sy_app_t *app);
/* Drops one reference; the state is closed when the last one goes. */
void sy_app_release(sy_app_t *app);

/* Shutdown only, after every producer, consumer and request that could resume a coroutine is gone: frees the
 * coroutines still suspended (on a timer) and closes the state, whatever the refcount. */
void sy_app_force_close(sy_app_t *app);

/* Coroutines. A coroutine runs a function of the app with arguments; when it ends, `done` runs with the results
 * (ok = 1) or the error message (ok = 0) on co->L's stack, then the coroutine is freed. ok = -1: abandoned at
 * shutdown by sy_app_force_close (nothing on the stack; release what the coroutine held). Loop thread only. */
typedef void (*sy_co_done_cb)(sy_co_t *co, int ok, int nresults);
struct st_sy_co_t {
    sy_app_t *app;
    lua_State *L;
    int ref;
    sy_co_done_cb done;
    void *data;
    h2o_timeout_entry_t timer; /* for primitives that wait on time (sleep) */
    h2o_linklist_t link;       /* in app->coroutines */
    const char *request_id;    /* HTTP coroutines: propagated as Kafka headers (borrowed, lives as long as co) */
    const char *traceparent;   /* the client's W3C traceparent, or NULL */
};

/* Creates a coroutine that will call the registry function `func_ref`; push the arguments on co->L, then call
 * sy_co_resume(co, nargs). */
sy_co_t *sy_co_create(sy_app_t *app, int func_ref, sy_co_done_cb done, void *data);
/* Resumes with the `nargs` values on top of co->L (they become the results of the primitive that yielded). After the
 * call `co` may have been freed. */
void sy_co_resume(sy_co_t *co, int nargs);
/* The coroutine a primitive was called from, or raises a Lua error naming `what` when it is not called directly from a
 * handler (load time, a nested coroutine). Never returns NULL. */
sy_co_t *sy_co_check(lua_State *L, sy_app_t *app, const char *what);

/* Registered on the app's state for the primitives: the app they belong to (upvalue 1 of each primitive). */
sy_app_t *sy_app_from_upvalue(lua_State *L);

#endif
