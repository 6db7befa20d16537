/*
 * The store as seen from Lua: store_get, store_put, store_put_new, store_delete, store_incr and store_scan, set on a
 * table the caller chooses (the router's `core` table). Thin wrappers over store/store.h that convert arguments and
 * results; they add no caching and no Lua-side state.
 */
#ifndef SY_LUA_STORE_H
#define SY_LUA_STORE_H

#include <lua.h>
#include "store/store.h"

/* Sets the store_* functions on the table at the top of the stack, each a C closure over `store` (borrowed: it must
 * outlive every call from this state). Leaves the stack as it found it. Returns 0, or -1 if the top of the stack is
 * not a table. Call on the thread that owns `L`.
 *
 * In Lua, `db` is a store name (1..64 of A-Z a-z 0-9 _ . -) and `key` a string or an integer number (converted as
 * tostring() does, 42 -> "42"; magnitude below 1e14). Wrong argument types and bad names raise; runtime failures
 * (an empty or too long key, a full store, an I/O error, incr on a non-number) return nil, "reason":
 *   store_get(db, key)              -> value | nil
 *   store_put(db, key, value)       -> true
 *   store_put_new(db, key, value)   -> true, or false if the key exists (value unchanged)
 *   store_delete(db, key)           -> true, or false if there was no such key
 *   store_incr(db, key [, delta=1]) -> the new value (a number; exact up to 2^53)
 *   store_scan(db, start_key|nil [, limit=1000]) -> {k1, v1, k2, v2, ...} in key order from the first key >= start,
 *                                      at most min(limit, 1000) pairs */
int sy_lua_store_register(lua_State *L, sy_store_t *store);

#endif
