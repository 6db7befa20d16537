/*
 * The C primitives handed to scripts/switchyard/runtime.lua as its `core` table (the same names as the in-memory
 * twins of scripts/switchyard/testing.lua). One file per API area registers its part: core.c (log, time, sleep),
 * kafka.c (emit, request), store.c (store_*).
 */
#ifndef SY_LUA_PRIMITIVES_H
#define SY_LUA_PRIMITIVES_H

#include <lua.h>
#include "lua/app.h"

/* Pushes a new table holding every primitive, bound to `app`. */
void sy_lua_push_primitives(lua_State *L, sy_app_t *app);

/* Per area: set the area's functions on the table at the top of the stack. */
void sy_lua_core_register(lua_State *L, sy_app_t *app);
void sy_lua_kafka_register(lua_State *L, sy_app_t *app);

#endif
