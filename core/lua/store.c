/*
 * Lua bindings of the durable store; see lua/store.h for the functions and their results.
 *
 * Each function is a C closure whose first upvalue is the sy_store_t (lightuserdata). Arguments are checked here, so
 * that a programming mistake raises before reaching the store and a key that comes from client data (empty, too long)
 * returns nil, "reason" without an error line in the log. No Lua code runs inside an LMDB transaction: values are
 * copied out of the store before anything is pushed.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <lauxlib.h>
#include <lua.h>
#include "common/mem.h"
#include "lua/store.h"

#define SCAN_MAX 1000
#define SCANBUF_MT "switchyard.store.scanbuf"
/* Integers up to 2^53 are exact in a lua_Number. */
#define MAX_EXACT 9007199254740992.0

static sy_store_t *self(lua_State *L)
{
    return lua_touserdata(L, lua_upvalueindex(1));
}

static const char *check_db(lua_State *L, int idx)
{
    size_t len;
    if (lua_type(L, idx) != LUA_TSTRING) luaL_typerror(L, idx, "string");
    const char *db = lua_tolstring(L, idx, &len);
    if (sy_store_check_name(db, len) != 0)
        luaL_argerror(L, idx, "invalid store name (1..64 characters of A-Z a-z 0-9 _ . -)");
    return db;
}

/* A string, or an integer number written as tostring() writes it. Below 1e14 tostring's "%.14g" prints every digit,
 * which "%lld" reproduces; beyond, it prints an exponent and distinct numbers would share a key, so they raise. */
static const char *check_key(lua_State *L, int idx, char *buf, size_t size, size_t *len)
{
    switch (lua_type(L, idx)) {
    case LUA_TSTRING:
        return lua_tolstring(L, idx, len);
    case LUA_TNUMBER: {
        lua_Number n = lua_tonumber(L, idx);
        if (!(n == floor(n) && fabs(n) < 1e14))
            luaL_argerror(L, idx, "a number key must be an integer below 1e14 in magnitude (pass a string)");
        *len = (size_t)snprintf(buf, size, "%lld", (long long)n);
        return buf;
    }
    default:
        luaL_typerror(L, idx, "string or integer");
        return NULL;
    }
}

/* The key comes from data, not code: a bad length is a runtime failure. Returns 0 or the number of results pushed. */
static int bad_key(lua_State *L, size_t klen)
{
    if (klen != 0 && klen <= SY_STORE_MAX_KEY) return 0;
    lua_pushnil(L);
    if (klen == 0)
        lua_pushliteral(L, "empty key");
    else
        lua_pushfstring(L, "key too long (%d bytes, at most %d)", (int)klen, SY_STORE_MAX_KEY);
    return 2;
}

static int push_error(lua_State *L)
{
    lua_pushnil(L);
    lua_pushstring(L, sy_store_last_error());
    return 2;
}

static int l_get(lua_State *L)
{
    char buf[32], *val;
    size_t klen, vlen;
    const char *db = check_db(L, 1), *key = check_key(L, 2, buf, sizeof(buf), &klen);
    int n;

    if ((n = bad_key(L, klen)) != 0) return n;
    switch (sy_store_get(self(L), db, key, klen, &val, &vlen)) {
    case 0:
        /* lua_pushlstring raises only when the Lua state is out of memory; val would then leak */
        lua_pushlstring(L, val, vlen);
        free(val);
        return 1;
    case 1:
        lua_pushnil(L);
        return 1;
    default:
        return push_error(L);
    }
}

static int put(lua_State *L, int flags)
{
    char buf[32];
    size_t klen, vlen;
    const char *db = check_db(L, 1), *key = check_key(L, 2, buf, sizeof(buf), &klen);
    const char *val = luaL_checklstring(L, 3, &vlen);
    int n;

    if ((n = bad_key(L, klen)) != 0) return n;
    int ret = sy_store_put(self(L), db, key, klen, val, vlen, flags);
    if (ret < 0) return push_error(L);
    lua_pushboolean(L, ret == 0);
    return 1;
}

static int l_put(lua_State *L)
{
    return put(L, 0);
}

static int l_put_new(lua_State *L)
{
    return put(L, SY_STORE_NOOVERWRITE);
}

static int l_delete(lua_State *L)
{
    char buf[32];
    size_t klen;
    const char *db = check_db(L, 1), *key = check_key(L, 2, buf, sizeof(buf), &klen);
    int n;

    if ((n = bad_key(L, klen)) != 0) return n;
    int ret = sy_store_delete(self(L), db, key, klen);
    if (ret < 0) return push_error(L);
    lua_pushboolean(L, ret == 0);
    return 1;
}

static int l_incr(lua_State *L)
{
    char buf[32];
    size_t klen;
    const char *db = check_db(L, 1), *key = check_key(L, 2, buf, sizeof(buf), &klen);
    lua_Number delta = luaL_optnumber(L, 3, 1);
    int64_t result;
    int n;

    if (!(delta == floor(delta) && fabs(delta) <= MAX_EXACT))
        luaL_argerror(L, 3, "delta must be an integer of magnitude at most 2^53");
    if ((n = bad_key(L, klen)) != 0) return n;
    if (sy_store_incr(self(L), db, key, klen, (int64_t)delta, &result) != 0) return push_error(L);
    lua_pushnumber(L, (lua_Number)result);
    return 1;
}

/* Entries copied out of the read transaction, as [size_t klen][key][size_t vlen][value]... The buffer hangs off a
 * userdata whose __gc frees it, so a Lua error while building the result table cannot leak it. */
typedef struct st_scanbuf_t {
    char *buf;
    size_t len, cap;
} scanbuf_t;

static int scanbuf_gc(lua_State *L)
{
    scanbuf_t *sb = lua_touserdata(L, 1);
    free(sb->buf);
    sb->buf = NULL;
    return 0;
}

static void scanbuf_append(scanbuf_t *sb, const void *p, size_t len)
{
    size_t need = sb->len + sizeof(size_t) + len;
    if (need > sb->cap) {
        sb->cap = need < 4096 ? 4096 : need * 2;
        sb->buf = sy_realloc(sb->buf, sb->cap);
    }
    memcpy(sb->buf + sb->len, &len, sizeof(size_t));
    memcpy(sb->buf + sb->len + sizeof(size_t), p, len);
    sb->len = need;
}

static int scan_collect(const void *k, size_t kl, const void *v, size_t vl, void *cookie)
{
    scanbuf_append(cookie, k, kl);
    scanbuf_append(cookie, v, vl);
    return 0;
}

static int l_scan(lua_State *L)
{
    char buf[32];
    size_t slen = 0;
    const char *db = check_db(L, 1), *start = NULL;
    lua_Number limit = luaL_optnumber(L, 3, SCAN_MAX);
    int n;

    if (!lua_isnoneornil(L, 2)) {
        start = check_key(L, 2, buf, sizeof(buf), &slen);
        /* "" sorts before every key: it means "from the first" */
        if (slen != 0 && (n = bad_key(L, slen)) != 0) return n;
    }
    if (!(limit == floor(limit) && limit >= 0)) luaL_argerror(L, 3, "limit must be a non-negative integer");
    if (limit > SCAN_MAX) limit = SCAN_MAX;

    scanbuf_t *sb = lua_newuserdata(L, sizeof(*sb));
    memset(sb, 0, sizeof(*sb));
    lua_pushvalue(L, lua_upvalueindex(2));
    lua_setmetatable(L, -2); /* sb */
    n = sy_store_scan(self(L), db, start, slen, (size_t)limit, scan_collect, sb);
    if (n < 0) return push_error(L);

    lua_createtable(L, 2 * n, 0); /* sb result */
    size_t off = 0;
    for (int i = 1; i <= 2 * n; ++i) {
        size_t len;
        memcpy(&len, sb->buf + off, sizeof(size_t));
        lua_pushlstring(L, sb->buf + off + sizeof(size_t), len);
        lua_rawseti(L, -2, i);
        off += sizeof(size_t) + len;
    }
    free(sb->buf);
    sb->buf = NULL;
    return 1;
}

int sy_lua_store_register(lua_State *L, sy_store_t *store)
{
    static const luaL_Reg fns[] = {{"store_get", l_get},       {"store_put", l_put},   {"store_put_new", l_put_new},
                                   {"store_delete", l_delete}, {"store_incr", l_incr}, {NULL, NULL}};

    if (!lua_istable(L, -1)) return -1;
    int tbl = lua_gettop(L);
    for (const luaL_Reg *fn = fns; fn->name != NULL; ++fn) {
        lua_pushlightuserdata(L, store);
        lua_pushcclosure(L, fn->func, 1);
        lua_setfield(L, tbl, fn->name);
    }
    lua_pushlightuserdata(L, store);
    luaL_newmetatable(L, SCANBUF_MT); /* tbl store mt (created once per state, shared by later registrations) */
    lua_pushcfunction(L, scanbuf_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcclosure(L, l_scan, 2);
    lua_setfield(L, tbl, "store_scan");
    return 0;
}
