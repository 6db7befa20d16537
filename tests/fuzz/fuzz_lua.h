/*
 * What the Lua fuzz targets share: loading a routes file of tests/fuzz into an app in check mode (no worker, as
 * `switchyard --check` does), and coverage of the Lua code for libFuzzer. LuaJIT and lua-cjson are not built with
 * coverage instrumentation, so without help libFuzzer would only see the C side and mutate blindly: a line hook
 * feeds (previous line, line) pairs of every Lua function into libFuzzer's "extra counters" section, the way AFL
 * counts edges. The JIT is turned off so that the hook sees every line (JIT traces run without hooks).
 * Header-only on purpose: each target is one translation unit plus the core sources.
 */
#ifndef SY_FUZZ_LUA_H
#define SY_FUZZ_LUA_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <lauxlib.h>
#include <lua.h>
#include <luajit.h>
#include "common/log.h"
#include "lua/app.h"

#ifndef SY_FUZZ_DIR
#error "SY_FUZZ_DIR (the tests/fuzz directory) must be defined by the build"
#endif

#define SY_FUZZ_LUA_COUNTERS (1 << 16)

/* libFuzzer reads this section as coverage counters (FuzzerExtraCounters.cpp). */
__attribute__((section("__libfuzzer_extra_counters"), used)) uint8_t sy_fuzz_lua_counters[SY_FUZZ_LUA_COUNTERS];
static uintptr_t sy_fuzz_prev_line;

static inline void sy_fuzz_line_hook(lua_State *L, lua_Debug *ar)
{
    if (lua_getinfo(L, "S", ar) == 0) return;
    /* a source string is interned once per chunk, so its address names the file for the life of the state */
    uintptr_t loc = ((uintptr_t)ar->source >> 4) * 0x9e3779b1u + (uintptr_t)ar->currentline * 0x85ebca6bu;
    loc ^= loc >> 15;
    ++sy_fuzz_lua_counters[(loc ^ sy_fuzz_prev_line) & (SY_FUZZ_LUA_COUNTERS - 1)];
    sy_fuzz_prev_line = loc >> 1;
}

/* Loads tests/fuzz/<name> with the runtime of SY_FUZZ_SCRIPTS_DIR (default: the source tree's scripts/, the same
 * files the binary runs; pointing it to a patched copy tries a fix without touching the tree). Exits on failure. */
static inline sy_app_t *sy_fuzz_load_app(const char *name)
{
    char path[1024], errbuf[1024];
    const char *scripts = getenv("SY_FUZZ_SCRIPTS_DIR");
    if (scripts == NULL || scripts[0] == '\0') scripts = SY_SCRIPTS_BUILD_DIR;
    /* handler errors are logged at error level on purpose; SY_FUZZ_LOG=1 shows them */
    sy_log_min_level = getenv("SY_FUZZ_LOG") != NULL ? SY_LOG_DEBUG : (sy_log_level_t)(SY_LOG_ERROR + 1);
    snprintf(path, sizeof(path), "%s/%s", SY_FUZZ_DIR, name);
    sy_app_t *app = sy_app_create(path, scripts, NULL, errbuf, sizeof(errbuf));
    if (app == NULL) {
        fprintf(stderr, "fuzz: cannot load %s: %s\n", path, errbuf);
        exit(2);
    }
    luaJIT_setmode(app->L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
    lua_sethook(app->L, sy_fuzz_line_hook, LUA_MASKLINE, 0);
    return app;
}

/* Runs `chunk` on app->L with the runtime's app object as its argument (`...`); exits on error. */
static inline void sy_fuzz_run_lua(sy_app_t *app, const char *chunk)
{
    lua_State *L = app->L;
    if (luaL_loadstring(L, chunk) != 0) {
        fprintf(stderr, "fuzz: %s\n", lua_tostring(L, -1));
        exit(2);
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, app->app_ref);
    if (lua_pcall(L, 1, 0, 0) != 0) {
        fprintf(stderr, "fuzz: %s\n", lua_tostring(L, -1));
        exit(2);
    }
}

/* Aborts with a message: libFuzzer saves the input as a crash. */
#define SY_FUZZ_ASSERT(cond, ...)                                                                                      \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "fuzz assertion failed (%s:%d): %s\n  ", __FILE__, __LINE__, #cond);                       \
            fprintf(stderr, __VA_ARGS__);                                                                              \
            fprintf(stderr, "\n");                                                                                     \
            abort();                                                                                                   \
        }                                                                                                              \
    } while (0)

#endif
