/*
 * Request telemetry: one JSON record per HTTP request (route, method, status, request body length, response time in
 * microseconds, request id) buffered per worker and produced to the topic the routes file names, in batches of its
 * declared size (one produce burst, so one gzip message set), and after its flush interval for partial batches.
 * Never on the request's critical path beyond an append; a full producer queue drops the batch with a counted error
 * rather than blocking.
 */
#ifndef SY_LUA_TELEMETRY_H
#define SY_LUA_TELEMETRY_H

#include <stddef.h>
#include <stdint.h>

struct st_sy_worker_t;

/* Appends a record when the worker's current app declares telemetry. Loop thread. */
void sy_telemetry_record(struct st_sy_worker_t *w, const char *route, const char *method, size_t method_len, int status,
                         size_t body_len, uint64_t duration_us, const char *request_id);
/* Produces what is buffered (shutdown, interval). Loop thread. */
void sy_telemetry_flush(struct st_sy_worker_t *w);

#endif
