/*
 * The admin listener (--admin, loopback by default), on a thread and loop of its own so that it answers even when
 * the workers are saturated: /healthz (alive), /readyz (routes loaded, consumer groups assigned, reply partitions
 * owned; 503 with the reason otherwise), /metrics (Prometheus text), /status (JSON). Read-only: it changes nothing.
 */
#ifndef SY_LUA_ADMIN_H
#define SY_LUA_ADMIN_H

#include <stddef.h>

struct st_sy_host_t;
typedef struct st_sy_admin_t sy_admin_t;

/* Binds host->admin_listen and starts serving. Returns NULL (errbuf set) when the address cannot be bound. */
sy_admin_t *sy_admin_start(struct st_sy_host_t *host, char *errbuf, size_t errbuf_size);
/* Stops the thread and frees. Main thread. */
void sy_admin_stop(sy_admin_t *admin);

#endif
