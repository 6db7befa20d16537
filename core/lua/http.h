/*
 * HTTP requests into Lua: route matching (404/405 answered in C), static routes served without Lua, and every
 * other request run as a coroutine of the worker's current app. A client that goes away while its coroutine waits is
 * harmless: the coroutine finishes and its response is dropped.
 */
#ifndef SY_LUA_HTTP_H
#define SY_LUA_HTTP_H

#include <h2o.h>

/* The sy_http_handler_fn of the public listener; `cookie` is the sy_worker_t. Loop thread. */
int sy_lua_http_handle(void *cookie, h2o_req_t *req);

#endif
