/*
 * The durable key-value store: one LMDB environment per process in a directory, shared by every worker thread, with
 * named stores (LMDB named databases) holding arbitrary byte keys and values, plus atomic decimal counters.
 *
 * Every call runs in its own short LMDB transaction and is callable from any thread; there is no transaction API,
 * no TTL and no secondary index. Commits reach the data file at once (they survive a crash of the process); by default
 * they reach the disk only at sy_store_sync(), which the application calls every second and at close, unless
 * `sync_each_commit` is set. It knows nothing of Lua or HTTP.
 */
#ifndef SY_STORE_STORE_H
#define SY_STORE_STORE_H

#include <stddef.h>
#include <stdint.h>

typedef struct st_sy_store_t sy_store_t;

typedef struct st_sy_store_options_t {
    size_t map_size;      /* the most the data file may grow to, in bytes; 0 = SY_STORE_DEFAULT_MAP_SIZE */
    int sync_each_commit; /* nonzero: every commit is flushed to disk before the call returns (slow, fully durable) */
} sy_store_options_t;

#define SY_STORE_DEFAULT_MAP_SIZE ((size_t)1 << 30)
/* Named stores per environment (LMDB maxdbs). */
#define SY_STORE_MAX_DBS 128
/* A store name is 1..SY_STORE_MAX_NAME characters of [A-Za-z0-9_.-]. */
#define SY_STORE_MAX_NAME 64
/* A key is 1..SY_STORE_MAX_KEY bytes (LMDB's compiled-in limit). Values may be empty and of any length the map
 * holds. */
#define SY_STORE_MAX_KEY 511

/* Flags for sy_store_put. */
#define SY_STORE_NOOVERWRITE 0x1

/* Negative results. Every one of them is logged (module "store") and described by sy_store_last_error(). */
#define SY_STORE_EIO (-1)     /* LMDB failed (I/O, corruption, environment state) */
#define SY_STORE_ENAME (-2)   /* invalid store name */
#define SY_STORE_EKEY (-3)    /* key empty or longer than SY_STORE_MAX_KEY */
#define SY_STORE_EFULL (-4)   /* the map is full (map_size reached) or SY_STORE_MAX_DBS stores exist */
#define SY_STORE_ENOTNUM (-5) /* sy_store_incr: the value is not a decimal int64, or the sum overflows */

/* Opens (creating if needed) the environment in `dir`, creating the directory itself if missing (not its parents).
 * `opts` is borrowed, NULL means defaults. Returns NULL and fills errbuf on failure. A process must open a given
 * directory only once at a time (LMDB's locks are per process). Call from the main thread before the workers start. */
sy_store_t *sy_store_open(const char *dir, const sy_store_options_t *opts, char *errbuf, size_t errbuf_size);

/* Flushes to disk and closes the environment; after the call `store` is no longer valid. No other call may be in
 * progress or follow on any thread (stop the workers first). NULL is a no-op. */
void sy_store_close(sy_store_t *store);

/* Flushes every committed write to disk (fdatasync). Returns 0 or SY_STORE_EIO. Callable from any thread; meant for
 * a timer off the request path, since it blocks on the disk. */
int sy_store_sync(sy_store_t *store);

/* Looks `key` up in store `db`. Returns 0 and sets *val to a malloc'd copy of the value, NUL-terminated after *vlen
 * bytes (the caller owns it and free()s it), 1 if there is no such key (*val = NULL, *vlen = 0), or a negative
 * SY_STORE_E*. `db` and `key` are borrowed for the call. Any thread. The first use of a store name creates it. */
int sy_store_get(sy_store_t *store, const char *db, const void *key, size_t klen, char **val, size_t *vlen);

/* Writes `key` = `val` (both copied). With SY_STORE_NOOVERWRITE an existing key is left unchanged and 1 is returned.
 * Returns 0 when written, or a negative SY_STORE_E* (SY_STORE_EFULL when the map is full). Any thread. */
int sy_store_put(sy_store_t *store, const char *db, const void *key, size_t klen, const void *val, size_t vlen,
                 int flags);

/* Removes `key`. Returns 0 when it was removed, 1 if there was no such key, or a negative SY_STORE_E*. Any thread. */
int sy_store_delete(sy_store_t *store, const char *db, const void *key, size_t klen);

/* Adds `delta` to the counter at `key` in one write transaction, so concurrent calls never lose an update. The counter
 * is stored as decimal text ("42"), so it reads back with sy_store_get; a missing key counts as 0. Sets *result (may
 * be NULL) to the new value. Returns 0, SY_STORE_ENOTNUM if the stored value is not a decimal int64 or the sum would
 * overflow (value unchanged), or another negative SY_STORE_E*. Any thread. */
int sy_store_incr(sy_store_t *store, const char *db, const void *key, size_t klen, int64_t delta, int64_t *result);

/* Called by sy_store_scan for each entry; `k` and `v` are borrowed, valid only until it returns. Return nonzero to
 * stop. It runs inside a read transaction: keep it short and do not call the store from it. */
typedef int (*sy_store_scan_cb)(const void *k, size_t kl, const void *v, size_t vl, void *cookie);

/* Calls `cb` for at most `limit` entries of `db` in key order (bytewise, shorter first on a common prefix), starting
 * at the first key >= `start` (NULL or slen 0 = from the first key). All entries come from one consistent snapshot.
 * Returns the number of entries passed to cb (counting the one that stopped it), or a negative SY_STORE_E*. Any
 * thread. */
int sy_store_scan(sy_store_t *store, const char *db, const void *start, size_t slen, size_t limit, sy_store_scan_cb cb,
                  void *cookie);

/* Returns 0 if `db` (`len` bytes, which must not contain NUL) is a valid store name, -1 otherwise. Logs nothing. */
int sy_store_check_name(const char *db, size_t len);

/* The message of the last failed call on this thread ("" if none yet). Thread-local storage: valid until the next
 * failure on this thread. */
const char *sy_store_last_error(void);

#endif
