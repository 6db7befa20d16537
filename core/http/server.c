/*
 * h2o glue: one catch-all handler per host, SO_REUSEPORT listeners, per-worker accept contexts, and complete
 * responses (always with content-length, so they are never chunked). See server.h. It does not route: the
 * application layer matches paths with http/router.h.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "common/log.h"
#include "common/mem.h"
#include "http/server.h"

typedef struct {
    h2o_handler_t super;
    sy_http_server_t *server;
} catchall_handler_t;

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    catchall_handler_t *h = (catchall_handler_t *)self;
    sy_http_worker_t *w = H2O_STRUCT_FROM_MEMBER(sy_http_worker_t, ctx, req->conn->ctx);
    return h->server->fn(w->cookie, req);
}

void sy_http_server_init(sy_http_server_t *server, const sy_http_config_t *cfg, sy_http_handler_fn fn)
{
    h2o_config_init(&server->config);
    server->fn = fn;
    server->config.max_request_entity_size = cfg->max_body;
    if (cfg->io_timeout_ms != 0) server->config.http1.req_timeout = cfg->io_timeout_ms;
    server->max_connections = cfg->max_connections;
    server->config.server_name = h2o_iovec_init(H2O_STRLIT("switchyard"));
    h2o_hostconf_t *host = h2o_config_register_host(&server->config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *pathconf = h2o_config_register_path(host, "/", 0);
    catchall_handler_t *h = (catchall_handler_t *)h2o_create_handler(pathconf, sizeof(*h));
    h->super.on_req = on_req;
    h->server = server;
}

void sy_http_server_dispose(sy_http_server_t *server)
{
    h2o_config_dispose(&server->config);
}

static int listen_on(const char *addr_port, int reuseport, char *errbuf, size_t errbuf_size);

int sy_http_listen(const char *addr_port, char *errbuf, size_t errbuf_size)
{
    return listen_on(addr_port, 1, errbuf, errbuf_size);
}

int sy_http_listen_exclusive(const char *addr_port, char *errbuf, size_t errbuf_size)
{
    return listen_on(addr_port, 0, errbuf, errbuf_size);
}

static int listen_on(const char *addr_port, int reuseport, char *errbuf, size_t errbuf_size)
{
    char host[256] = "0.0.0.0", port[16];
    const char *colon = strrchr(addr_port, ':');
    int fd = -1, on = 1;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *res = NULL;

    if (colon != NULL) {
        size_t hl = (size_t)(colon - addr_port);
        if (hl >= sizeof(host)) {
            snprintf(errbuf, errbuf_size, "listen address too long: %s", addr_port);
            goto Error;
        }
        if (hl > 0) {
            memcpy(host, addr_port, hl);
            host[hl] = '\0';
        }
        snprintf(port, sizeof(port), "%s", colon + 1);
    } else {
        snprintf(port, sizeof(port), "%s", addr_port);
    }
    char *end;
    long p = strtol(port, &end, 10);
    if (port[0] == '\0' || *end != '\0' || p < 0 || p > 65535) {
        snprintf(errbuf, errbuf_size, "invalid port in '%s' (expected ADDR:PORT)", addr_port);
        goto Error;
    }
    /* "[::1]:8080" */
    if (host[0] == '[') {
        size_t hl = strlen(host);
        if (hl > 2 && host[hl - 1] == ']') {
            memmove(host, host + 1, hl - 2);
            host[hl - 2] = '\0';
        }
    }
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        snprintf(errbuf, errbuf_size, "cannot resolve '%s': %s", host, gai_strerror(rc));
        goto Error;
    }
    if ((fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
        (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) != 0) ||
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on)) != 0) {
        snprintf(errbuf, errbuf_size, "socket: %s", strerror(errno));
        goto Error;
    }
    if (bind(fd, res->ai_addr, res->ai_addrlen) != 0) {
        snprintf(errbuf, errbuf_size, "cannot listen on %s: %s", addr_port, strerror(errno));
        goto Error;
    }
    if (listen(fd, SOMAXCONN) != 0) {
        snprintf(errbuf, errbuf_size, "listen %s: %s", addr_port, strerror(errno));
        goto Error;
    }
    freeaddrinfo(res);
    return fd;

Error:
    if (res != NULL) freeaddrinfo(res);
    if (fd >= 0) close(fd);
    return -1;
}

static void on_connection_close(void *data)
{
    sy_http_worker_t *w = data;
    --w->connections;
}

/* A connection over the limit: read what the client sent (so that closing does not reset the connection before the
 * client has read the answer), write a complete 503, close. A client that sends nothing is closed after a second. */
typedef struct {
    h2o_socket_t *sock;
    h2o_timeout_entry_t timeout;
} refusal_t;

static void refusal_close(refusal_t *r)
{
    if (h2o_timeout_is_linked(&r->timeout)) h2o_timeout_unlink(&r->timeout);
    h2o_socket_close(r->sock);
    free(r);
}

static void on_refusal_written(h2o_socket_t *sock, const char *err)
{
    refusal_close(sock->data);
}

static void on_refusal_read(h2o_socket_t *sock, const char *err)
{
    static const char answer[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                                 "Retry-After: 1\r\nConnection: close\r\nContent-Length: 81\r\n\r\n"
                                 "{\"statusCode\":503,\"message\":\"too many connections\",\"error\":"
                                 "\"Service Unavailable\"}";
    refusal_t *r = sock->data;
    if (err != NULL) {
        refusal_close(r);
        return;
    }
    h2o_socket_read_stop(sock);
    h2o_buffer_consume(&sock->input, sock->input->size);
    h2o_timeout_unlink(&r->timeout); /* from here on_refusal_written closes it */
    h2o_iovec_t buf = h2o_iovec_init(answer, sizeof(answer) - 1);
    h2o_socket_write(sock, &buf, 1, on_refusal_written);
}

static void on_refusal_timeout(h2o_timeout_entry_t *entry)
{
    refusal_close(H2O_STRUCT_FROM_MEMBER(refusal_t, timeout, entry));
}

static void refuse(sy_http_worker_t *w, h2o_socket_t *sock)
{
    refusal_t *r = sy_calloc(1, sizeof(*r));
    r->sock = sock;
    r->timeout.cb = on_refusal_timeout;
    sock->data = r;
    ++w->refused;
    h2o_timeout_link(w->ctx.loop, &w->ctx.one_sec_timeout, &r->timeout);
    h2o_socket_read_start(sock, on_refusal_read);
}

static void on_accept(h2o_socket_t *listener, const char *err)
{
    sy_http_worker_t *w = listener->data;
    h2o_socket_t *sock;
    if (err != NULL) return;
    /* bounded, so one busy listener cannot starve the rest of the loop */
    for (int i = 0; i < 64 && (sock = h2o_evloop_socket_accept(listener)) != NULL; ++i) {
        sy_http_server_t *server = H2O_STRUCT_FROM_MEMBER(sy_http_server_t, config, w->ctx.globalconf);
        if (server->max_connections != 0 && w->connections >= server->max_connections) {
            refuse(w, sock);
            continue;
        }
        ++w->connections;
        sock->on_close.cb = on_connection_close;
        sock->on_close.data = w;
        h2o_accept(&w->accept_ctx, sock);
    }
}

void sy_http_worker_init(sy_http_worker_t *w, sy_http_server_t *server, h2o_loop_t *loop, int listen_fd, void *cookie)
{
    memset(w, 0, sizeof(*w));
    h2o_context_init(&w->ctx, loop, &server->config);
    w->accept_ctx.ctx = &w->ctx;
    w->accept_ctx.hosts = server->config.hosts;
    w->cookie = cookie;
    w->listener = h2o_evloop_socket_create(loop, listen_fd, H2O_SOCKET_FLAG_DONT_READ);
    w->listener->data = w;
    h2o_socket_read_start(w->listener, on_accept);
}

void sy_http_worker_stop_accepting(sy_http_worker_t *w)
{
    if (w->listener == NULL) return;
    h2o_socket_read_stop(w->listener);
    h2o_socket_close(w->listener); /* closes the fd too: the kernel stops queueing connections for this worker */
    w->listener = NULL;
}

void sy_http_worker_dispose(sy_http_worker_t *w)
{
    sy_http_worker_stop_accepting(w);
    h2o_context_dispose(&w->ctx);
}

const char *sy_http_reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 413:
        return "Payload Too Large";
    case 415:
        return "Unsupported Media Type";
    case 431:
        return "Request Header Fields Too Large";
    case 422:
        return "Unprocessable Entity";
    case 429:
        return "Too Many Requests";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return status < 400 ? "OK" : "Error";
    }
}

void sy_http_send(h2o_req_t *req, int status, const char *body, size_t body_len, const char *const *headers,
                  size_t nheaders)
{
    static h2o_generator_t generator = {NULL, NULL};
    req->res.status = status;
    req->res.reason = sy_http_reason(status);
    req->res.content_length = body_len;
    for (size_t i = 0; i < nheaders; ++i) {
        const char *name = headers[2 * i], *value = headers[2 * i + 1];
        size_t nlen = strlen(name);
        const h2o_token_t *token = h2o_lookup_token(name, nlen);
        h2o_iovec_t v = h2o_strdup(&req->pool, value, SIZE_MAX);
        if (token != NULL)
            h2o_add_header(&req->pool, &req->res.headers, token, NULL, v.base, v.len);
        else
            h2o_add_header_by_str(&req->pool, &req->res.headers, h2o_strdup(&req->pool, name, nlen).base, nlen, 0, NULL,
                                  v.base, v.len);
    }
    h2o_start_response(req, &generator);
    h2o_iovec_t buf = h2o_strdup(&req->pool, body, body_len);
    h2o_send(req, &buf, 1, H2O_SEND_STATE_FINAL);
}

size_t sy_http_json_escape(char *dst, size_t size, const char *s)
{
    size_t o = 0;
    for (; *s != '\0' && o + 7 < size; ++s) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            dst[o++] = '\\';
            dst[o++] = (char)c;
        } else if (c < 0x20) {
            o += (size_t)snprintf(dst + o, size - o, "\\u%04x", c);
        } else {
            dst[o++] = (char)c;
        }
    }
    dst[o] = '\0';
    return o;
}

void sy_http_send_error(h2o_req_t *req, int status, const char *message, const char *extra_header,
                        const char *extra_value)
{
    char esc[512], body[700];
    sy_http_json_escape(esc, sizeof(esc), message);
    int n = snprintf(body, sizeof(body), "{\"statusCode\":%d,\"message\":\"%s\",\"error\":\"%s\"}", status, esc,
                     sy_http_reason(status));
    const char *headers[4] = {"content-type", "application/json", extra_header, extra_value};
    sy_http_send(req, status, body, (size_t)n, headers, extra_header != NULL ? 2 : 1);
}
