/*
 * The general primitives of the `core` table: log, now_ms, sleep; and the assembly of the whole table.
 * Kafka and store primitives live in their own files.
 */
#include <lauxlib.h>
#include <string.h>
#include <time.h>
#include "common/log.h"
#include "lua/primitives.h"
#include "lua/store.h"
#include "lua/worker.h"

static int l_log(lua_State *L)
{
    const char *level = luaL_checkstring(L, 1);
    size_t len;
    const char *msg = luaL_checklstring(L, 2, &len);
    sy_log_level_t lv;
    if (sy_log_parse_level(level, &lv) != 0) return luaL_argerror(L, 1, "level must be debug, info, warn or error");
    sy_app_t *app = sy_app_from_upvalue(L);
    if (lv >= sy_log_min_level) {
        if (app->worker != NULL)
            sy_log(lv, "routes", "[w%zu] %.*s", app->worker->id, (int)len, msg);
        else
            sy_log(lv, "routes", "%.*s", (int)len, msg);
    }
    return 0;
}

static int l_now_ms(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec * 1000.0 + (lua_Number)ts.tv_nsec / 1e6);
    return 1;
}

static void on_sleep_done(h2o_timeout_entry_t *entry)
{
    sy_co_t *co = H2O_STRUCT_FROM_MEMBER(sy_co_t, timer, entry);
    sy_co_resume(co, 0);
}

static int l_sleep(lua_State *L)
{
    lua_Number ms = luaL_checknumber(L, 1);
    sy_app_t *app = sy_app_from_upvalue(L);
    if (ms < 0 || ms > 24 * 3600 * 1000.0) return luaL_argerror(L, 1, "milliseconds out of range");
    sy_co_t *co = sy_co_check(L, app, "sleep");
    if (app->worker == NULL) return luaL_error(L, "sleep is not available here");
    co->timer.cb = on_sleep_done;
    sy_worker_timer_link(app->worker, (uint64_t)ms, &co->timer);
    return lua_yield(L, 0);
}

void sy_lua_core_register(lua_State *L, sy_app_t *app)
{
    static const luaL_Reg fns[] = {{"log", l_log}, {"now_ms", l_now_ms}, {"sleep", l_sleep}, {NULL, NULL}};
    for (const luaL_Reg *f = fns; f->name != NULL; ++f) {
        lua_pushlightuserdata(L, app);
        lua_pushcclosure(L, f->func, 1);
        lua_setfield(L, -2, f->name);
    }
}

static int l_unavailable(lua_State *L)
{
    return luaL_error(L, "%s is not available while only checking a routes file", lua_tostring(L, lua_upvalueindex(1)));
}

void sy_lua_push_primitives(lua_State *L, sy_app_t *app)
{
    lua_newtable(L);
    sy_lua_core_register(L, app);
    sy_lua_kafka_register(L, app);
    if (app->worker != NULL) {
        sy_lua_store_register(L, app->worker->host->store);
    } else {
        static const char *names[] = {"store_get",    "store_put",  "store_put_new",
                                      "store_delete", "store_incr", "store_scan"};
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); ++i) {
            lua_pushstring(L, names[i]);
            lua_pushcclosure(L, l_unavailable, 1);
            lua_setfield(L, -2, names[i]);
        }
    }
}
