/*
 * Kafka for the Lua apps: the `emit` and `request` primitives, and each worker's Kafka handles (producer,
 * request-reply, one consumer per consumer group of the routes file) with messages run as coroutines of the app.
 */
#ifndef SY_LUA_KAFKA_H
#define SY_LUA_KAFKA_H

#include <stddef.h>
#include <lua.h>
#include <librdkafka/rdkafka.h>

struct st_sy_worker_t;

/* Creates the worker's producer, request-reply and consumers from its app's declarations. Loop thread. */
int sy_lua_kafka_worker_start(struct st_sy_worker_t *w, char *errbuf, size_t errbuf_size);
/* After a reload switched the worker from old_app to new_app: consumer groups follow the new declarations (removed
 * or changed groups stop with their offsets committed, new ones join). Loop thread; may block while a group is left. */
struct st_sy_app_t;
void sy_lua_kafka_worker_update(struct st_sy_worker_t *w, const struct st_sy_app_t *old_app,
                                const struct st_sy_app_t *new_app);
/* Shutdown, first step: consumed messages are no longer handed to handlers (they stay uncommitted). */
void sy_lua_kafka_worker_pause(struct st_sy_worker_t *w);
/* Shutdown: destroys consumers (committing what was handled), request-reply, then the producer (flushed; every
 * waiting emit is answered). Loop thread; blocks. */
void sy_lua_kafka_worker_stop(struct st_sy_worker_t *w);

/* After the app is closed: frees what sy_lua_kafka_worker_stop left for late handlers to look at. */
void sy_lua_kafka_worker_dispose(struct st_sy_worker_t *w);

/* Request-reply (rpc.c): the worker's reply consumer and pending requests, and the core.request primitive. */
int sy_lua_rpc_worker_start(struct st_sy_worker_t *w, char *errbuf, size_t errbuf_size);
void sy_lua_rpc_worker_stop(struct st_sy_worker_t *w);
void sy_lua_rpc_worker_update(struct st_sy_worker_t *w, const struct st_sy_app_t *old_app, struct st_sy_app_t *new_app);
int sy_lua_rpc_request(lua_State *L);

/* Pushes a table of the record's headers (name -> value; the last of a repeated name wins; a null value is ""). */
void sy_lua_push_kafka_headers(lua_State *L, const rd_kafka_message_t *msg);

/* Appends x-request-id and traceparent of the HTTP request a handler serves (unless the handler set them) to hs,
 * which must have room for 2 more. Returns the new count. */
struct st_sy_app_t;
typedef struct st_sy_kafka_header_t sy_kafka_header_t;
size_t sy_lua_kafka_trace_headers(lua_State *L, struct st_sy_app_t *app, sy_kafka_header_t *hs, size_t nh);

#endif
