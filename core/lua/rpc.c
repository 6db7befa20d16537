/*
 * Request-reply for the Lua apps (core.request). Placeholder until core/kafka/rpc lands: requests fail at once
 * with a clear reason, so handlers answer 503 rather than hang.
 */
#include <lauxlib.h>
#include "lua/kafka.h"
#include "lua/worker.h"

int sy_lua_rpc_worker_start(sy_worker_t *w, char *errbuf, size_t errbuf_size)
{
    return 0;
}

void sy_lua_rpc_worker_stop(sy_worker_t *w)
{
}

int sy_lua_rpc_request(lua_State *L)
{
    lua_pushstring(L, "request-reply is not available in this build");
    lua_pushnil(L);
    return 2;
}
