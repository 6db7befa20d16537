/*
 * HTTP plumbing over h2o 2.2.5 (evloop flavour): listening sockets, the per-worker context that accepts
 * connections, and helpers that send a complete response or a JSON error. It knows nothing of Lua or Kafka: the
 * application layer registers one catch-all handler (sy_http_handler_fn) and decides what each request means.
 */
#ifndef SY_HTTP_SERVER_H
#define SY_HTTP_SERVER_H

#include <h2o.h>

/* The request callback: return 0 when the request was (or will be) answered, like h2o's on_req. */
typedef int (*sy_http_handler_fn)(void *cookie, h2o_req_t *req);

typedef struct {
    size_t max_body;        /* bytes; larger bodies get 413 before any handler runs */
    uint64_t io_timeout_ms; /* idle read/write timeout (slow clients) */
    size_t max_connections; /* per worker; past it a new connection gets a 503 and is closed (0: no limit) */
} sy_http_config_t;

/* The process-wide h2o configuration with one catch-all path whose handler calls fn(cookie, req) on the loop thread
 * of the worker that accepted the connection. `cookie` is resolved per worker: see sy_http_worker_t. */
typedef struct st_sy_http_server_t {
    h2o_globalconf_t config;
    sy_http_handler_fn fn;
    size_t max_connections;
} sy_http_server_t;

void sy_http_server_init(sy_http_server_t *server, const sy_http_config_t *cfg, sy_http_handler_fn fn);
void sy_http_server_dispose(sy_http_server_t *server);

/* Opens a listening TCP socket on "ADDR:PORT" (or ":PORT", or "PORT") with SO_REUSEPORT, so every worker can bind
 * its own socket to the same address and the kernel balances connections. Returns the fd or -1 (errbuf set). */
int sy_http_listen(const char *addr_port, char *errbuf, size_t errbuf_size);
/* The same without SO_REUSEPORT: a second process asking for the same port fails (the admin listener). */
int sy_http_listen_exclusive(const char *addr_port, char *errbuf, size_t errbuf_size);

/* One per worker thread: an h2o context on `loop` accepting from `fd`. The handler receives `cookie`. */
typedef struct st_sy_http_worker_t {
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;
    h2o_socket_t *listener;
    void *cookie;
    size_t connections; /* open connections of this worker */
    size_t refused;     /* connections refused over the limit */
} sy_http_worker_t;

void sy_http_worker_init(sy_http_worker_t *w, sy_http_server_t *server, h2o_loop_t *loop, int listen_fd, void *cookie);
/* Stops accepting new connections (existing ones continue). */
void sy_http_worker_stop_accepting(sy_http_worker_t *w);
void sy_http_worker_dispose(sy_http_worker_t *w);

/* Sends a complete response. `headers` is a flat list of name/value pairs (lowercase names), n pairs.
 * The body is copied into the request pool. */
void sy_http_send(h2o_req_t *req, int status, const char *body, size_t body_len, const char *const *headers,
                  size_t nheaders);
/* Sends {"statusCode":status,"message":message,"error":<reason phrase>} with content-type application/json.
 * `extra_header`/`extra_value` may be NULL. */
void sy_http_send_error(h2o_req_t *req, int status, const char *message, const char *extra_header,
                        const char *extra_value);
const char *sy_http_reason(int status);
/* Escapes s for the inside of a JSON string (quotes, backslashes, control characters) into dst, always
 * NUL-terminated, truncated to fit. Returns the length written. */
size_t sy_http_json_escape(char *dst, size_t size, const char *s);

#endif
