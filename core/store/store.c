/*
 * The durable key-value store over LMDB; see store.h for the contract.
 *
 * One MDB_env per process, opened with MDB_NOTLS so that a read transaction belongs to its MDB_txn object rather
 * than to a thread. Each call is one transaction: reads take a reset read transaction from a small pool (renewing one
 * costs no allocation and no reader-table lock), writes take LMDB's single writer lock. Named databases are opened on
 * first use, under a mutex because LMDB forbids concurrent mdb_dbi_open, and published in an append-only table that
 * readers scan without locking. It does not grow the map when it fills: that is a configuration error, logged.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "common/log.h"
#include "common/mem.h"
#include "store/store.h"

/* Reset read transactions kept for reuse; each holds a reader slot (but no snapshot) while pooled. */
#define READ_POOL_SIZE 64
/* Reader slots: concurrent reads (at most one per worker thread) plus the pool. */
#define MAX_READERS 1024

typedef struct st_sy_store_db_t {
    char name[SY_STORE_MAX_NAME + 1];
    size_t len;
    MDB_dbi dbi;
} sy_store_db_t;

struct st_sy_store_t {
    MDB_env *env;
    size_t map_size;
    /* dbs[0 .. ndbs) never change once published (release store of ndbs); appended under open_mutex */
    pthread_mutex_t open_mutex;
    atomic_size_t ndbs;
    sy_store_db_t dbs[SY_STORE_MAX_DBS];
    pthread_mutex_t pool_mutex;
    size_t npool;
    MDB_txn *pool[READ_POOL_SIZE];
};

static _Thread_local char last_error[256];

__attribute__((format(printf, 2, 3))) static int fail(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof(last_error), fmt, ap);
    va_end(ap);
    sy_error("store", "%s", last_error);
    return code;
}

static int lmdb_fail(sy_store_t *store, int rc, const char *op, const char *db)
{
    switch (rc) {
    case MDB_MAP_FULL:
    case MDB_TXN_FULL:
        return fail(SY_STORE_EFULL, "%s in store \"%s\": the store is full (map size %zu bytes); raise the map size",
                    op, db, store->map_size);
    case MDB_DBS_FULL:
        return fail(SY_STORE_EFULL, "%s in store \"%s\": too many named stores (at most %d)", op, db, SY_STORE_MAX_DBS);
    default:
        return fail(SY_STORE_EIO, "%s in store \"%s\": %s", op, db, mdb_strerror(rc));
    }
}

int sy_store_check_name(const char *db, size_t len)
{
    if (len == 0 || len > SY_STORE_MAX_NAME) return -1;
    for (size_t i = 0; i < len; ++i) {
        char c = db[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
              c == '-'))
            return -1;
    }
    return 0;
}

const char *sy_store_last_error(void)
{
    return last_error;
}

static int check_key(const char *op, const char *db, size_t klen)
{
    if (klen == 0 || klen > SY_STORE_MAX_KEY)
        return fail(SY_STORE_EKEY, "%s in store \"%s\": key of %zu bytes (must be 1..%d)", op, db, klen,
                    SY_STORE_MAX_KEY);
    return 0;
}

static int lookup(sy_store_t *store, size_t n, const char *db, size_t len, MDB_dbi *dbi)
{
    for (size_t i = 0; i < n; ++i) {
        if (store->dbs[i].len == len && memcmp(store->dbs[i].name, db, len) == 0) {
            *dbi = store->dbs[i].dbi;
            return 1;
        }
    }
    return 0;
}

/* Opens (creating) a named database and publishes its handle. The handle only becomes usable by other transactions
 * once the transaction that opened it commits, so it is published after the commit. Callers hold no transaction. */
static int open_db(sy_store_t *store, const char *op, const char *db, size_t len, MDB_dbi *dbi)
{
    MDB_txn *txn = NULL;
    int rc, ret;

    pthread_mutex_lock(&store->open_mutex);
    size_t n = atomic_load_explicit(&store->ndbs, memory_order_relaxed);
    if (lookup(store, n, db, len, dbi)) {
        ret = 0;
        goto Exit;
    }
    if (n == SY_STORE_MAX_DBS) {
        ret = lmdb_fail(store, MDB_DBS_FULL, op, db);
        goto Exit;
    }
    if ((rc = mdb_txn_begin(store->env, NULL, 0, &txn)) != 0 || (rc = mdb_dbi_open(txn, db, MDB_CREATE, dbi)) != 0) {
        ret = lmdb_fail(store, rc, op, db);
        goto Exit;
    }
    rc = mdb_txn_commit(txn);
    txn = NULL;
    if (rc != 0) {
        ret = lmdb_fail(store, rc, op, db);
        goto Exit;
    }
    memcpy(store->dbs[n].name, db, len);
    store->dbs[n].name[len] = '\0';
    store->dbs[n].len = len;
    store->dbs[n].dbi = *dbi;
    atomic_store_explicit(&store->ndbs, n + 1, memory_order_release);
    sy_debug("store", "opened store \"%s\"", db);
    ret = 0;

Exit:
    if (txn != NULL) mdb_txn_abort(txn);
    pthread_mutex_unlock(&store->open_mutex);
    return ret;
}

/* Validates the name and key length, then resolves the database handle. Must be called before beginning the
 * operation's transaction: a transaction only sees handles published before it began. */
static int prepare(sy_store_t *store, const char *op, const char *db, size_t klen, MDB_dbi *dbi)
{
    size_t len = strnlen(db, SY_STORE_MAX_NAME + 1);
    if (sy_store_check_name(db, len) != 0)
        return fail(SY_STORE_ENAME, "%s: invalid store name \"%.*s\" (1..%d of A-Z a-z 0-9 _ . -)", op,
                    (int)(len > SY_STORE_MAX_NAME ? SY_STORE_MAX_NAME : len), db, SY_STORE_MAX_NAME);
    int ret = check_key(op, db, klen);
    if (ret != 0) return ret;
    if (lookup(store, atomic_load_explicit(&store->ndbs, memory_order_acquire), db, len, dbi)) return 0;
    return open_db(store, op, db, len, dbi);
}

static int read_begin(sy_store_t *store, MDB_txn **txn)
{
    MDB_txn *pooled = NULL;

    pthread_mutex_lock(&store->pool_mutex);
    if (store->npool != 0) pooled = store->pool[--store->npool];
    pthread_mutex_unlock(&store->pool_mutex);

    if (pooled != NULL) {
        if (mdb_txn_renew(pooled) == 0) {
            *txn = pooled;
            return 0;
        }
        mdb_txn_abort(pooled);
    }
    return mdb_txn_begin(store->env, NULL, MDB_RDONLY, txn);
}

static void read_end(sy_store_t *store, MDB_txn *txn)
{
    /* reset releases the snapshot (so it pins no pages) but keeps the reader slot for the next renew */
    mdb_txn_reset(txn);
    pthread_mutex_lock(&store->pool_mutex);
    if (store->npool < READ_POOL_SIZE) {
        store->pool[store->npool++] = txn;
        txn = NULL;
    }
    pthread_mutex_unlock(&store->pool_mutex);
    if (txn != NULL) mdb_txn_abort(txn);
}

sy_store_t *sy_store_open(const char *dir, const sy_store_options_t *opts, char *errbuf, size_t errbuf_size)
{
    sy_store_t *store = NULL;
    MDB_env *env = NULL;
    struct stat st;
    int rc;
    size_t map_size = opts != NULL && opts->map_size != 0 ? opts->map_size : SY_STORE_DEFAULT_MAP_SIZE;
    unsigned flags = MDB_NOTLS;

    if (opts == NULL || !opts->sync_each_commit) flags |= MDB_NOSYNC | MDB_NOMETASYNC;

    if (mkdir(dir, 0750) != 0 && errno != EEXIST) {
        snprintf(errbuf, errbuf_size, "cannot create store directory %s: %s", dir, strerror(errno));
        goto Exit;
    }
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(errbuf, errbuf_size, "store directory %s is not a directory", dir);
        goto Exit;
    }
    if ((rc = mdb_env_create(&env)) != 0) {
        snprintf(errbuf, errbuf_size, "mdb_env_create: %s", mdb_strerror(rc));
        goto Exit;
    }
    if ((rc = mdb_env_set_mapsize(env, map_size)) != 0 || (rc = mdb_env_set_maxdbs(env, SY_STORE_MAX_DBS)) != 0 ||
        (rc = mdb_env_set_maxreaders(env, MAX_READERS)) != 0) {
        snprintf(errbuf, errbuf_size, "cannot configure the store: %s", mdb_strerror(rc));
        goto Exit;
    }
    if ((rc = mdb_env_open(env, dir, flags, 0640)) != 0) {
        snprintf(errbuf, errbuf_size, "cannot open the store in %s: %s", dir, mdb_strerror(rc));
        goto Exit;
    }
    if (mdb_env_get_maxkeysize(env) < SY_STORE_MAX_KEY) {
        snprintf(errbuf, errbuf_size, "liblmdb allows keys of only %d bytes, %d needed", mdb_env_get_maxkeysize(env),
                 SY_STORE_MAX_KEY);
        goto Exit;
    }
    /* a process that crashed inside a read leaves its reader slot taken; free it so the file can reuse pages */
    int dead = 0;
    if (mdb_reader_check(env, &dead) == 0 && dead != 0)
        sy_info("store", "cleared %d stale reader slot(s) in %s", dead, dir);

    store = sy_calloc(1, sizeof(*store));
    store->env = env;
    env = NULL;
    store->map_size = map_size;
    pthread_mutex_init(&store->open_mutex, NULL);
    pthread_mutex_init(&store->pool_mutex, NULL);
    atomic_init(&store->ndbs, 0);

Exit:
    if (env != NULL) mdb_env_close(env);
    return store;
}

void sy_store_close(sy_store_t *store)
{
    if (store == NULL) return;
    for (size_t i = 0; i < store->npool; ++i)
        mdb_txn_abort(store->pool[i]);
    sy_store_sync(store);
    mdb_env_close(store->env); /* also closes the database handles */
    pthread_mutex_destroy(&store->open_mutex);
    pthread_mutex_destroy(&store->pool_mutex);
    free(store);
}

int sy_store_sync(sy_store_t *store)
{
    int rc = mdb_env_sync(store->env, 1);
    if (rc != 0) return fail(SY_STORE_EIO, "sync: %s", mdb_strerror(rc));
    return 0;
}

int sy_store_get(sy_store_t *store, const char *db, const void *key, size_t klen, char **val, size_t *vlen)
{
    MDB_txn *txn = NULL;
    MDB_dbi dbi;
    MDB_val k = {klen, (void *)key}, v;
    int rc, ret;

    *val = NULL;
    *vlen = 0;
    if ((ret = prepare(store, "get", db, klen, &dbi)) != 0) goto Exit;
    if ((rc = read_begin(store, &txn)) != 0) {
        ret = lmdb_fail(store, rc, "get", db);
        goto Exit;
    }
    if ((rc = mdb_get(txn, dbi, &k, &v)) != 0) {
        ret = rc == MDB_NOTFOUND ? 1 : lmdb_fail(store, rc, "get", db);
        goto Exit;
    }
    *val = sy_strndup(v.mv_data, v.mv_size);
    *vlen = v.mv_size;
    ret = 0;

Exit:
    if (txn != NULL) read_end(store, txn);
    return ret;
}

int sy_store_put(sy_store_t *store, const char *db, const void *key, size_t klen, const void *val, size_t vlen,
                 int flags)
{
    MDB_txn *txn = NULL;
    MDB_dbi dbi;
    MDB_val k = {klen, (void *)key}, v = {vlen, (void *)val};
    int rc, ret;

    if ((ret = prepare(store, "put", db, klen, &dbi)) != 0) goto Exit;
    if ((rc = mdb_txn_begin(store->env, NULL, 0, &txn)) != 0) {
        ret = lmdb_fail(store, rc, "put", db);
        goto Exit;
    }
    if ((rc = mdb_put(txn, dbi, &k, &v, (flags & SY_STORE_NOOVERWRITE) ? MDB_NOOVERWRITE : 0)) != 0) {
        ret = rc == MDB_KEYEXIST ? 1 : lmdb_fail(store, rc, "put", db);
        goto Exit;
    }
    rc = mdb_txn_commit(txn);
    txn = NULL; /* freed by commit, even when it fails */
    ret = rc == 0 ? 0 : lmdb_fail(store, rc, "put", db);

Exit:
    if (txn != NULL) mdb_txn_abort(txn);
    return ret;
}

int sy_store_delete(sy_store_t *store, const char *db, const void *key, size_t klen)
{
    MDB_txn *txn = NULL;
    MDB_dbi dbi;
    MDB_val k = {klen, (void *)key};
    int rc, ret;

    if ((ret = prepare(store, "delete", db, klen, &dbi)) != 0) goto Exit;
    if ((rc = mdb_txn_begin(store->env, NULL, 0, &txn)) != 0) {
        ret = lmdb_fail(store, rc, "delete", db);
        goto Exit;
    }
    if ((rc = mdb_del(txn, dbi, &k, NULL)) != 0) {
        ret = rc == MDB_NOTFOUND ? 1 : lmdb_fail(store, rc, "delete", db);
        goto Exit;
    }
    rc = mdb_txn_commit(txn);
    txn = NULL;
    ret = rc == 0 ? 0 : lmdb_fail(store, rc, "delete", db);

Exit:
    if (txn != NULL) mdb_txn_abort(txn);
    return ret;
}

/* Parses an optional '-' and 1..19 digits into an int64; returns 0, or -1 for anything else or out of range. */
static int parse_int64(const char *s, size_t len, int64_t *out)
{
    size_t i = 0;
    int neg = 0;
    uint64_t acc = 0, limit;

    if (len > 0 && s[0] == '-') {
        neg = 1;
        i = 1;
    }
    if (i == len || len - i > 19) return -1;
    limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; i < len; ++i) {
        if (s[i] < '0' || s[i] > '9') return -1;
        acc = acc * 10 + (uint64_t)(s[i] - '0'); /* 19 digits cannot wrap a uint64 */
        if (acc > limit) return -1;
    }
    *out = neg ? (int64_t)(0 - acc) : (int64_t)acc;
    return 0;
}

int sy_store_incr(sy_store_t *store, const char *db, const void *key, size_t klen, int64_t delta, int64_t *result)
{
    MDB_txn *txn = NULL;
    MDB_dbi dbi;
    MDB_val k = {klen, (void *)key}, v;
    int64_t cur = 0, sum;
    char text[24];
    int rc, ret;

    if ((ret = prepare(store, "incr", db, klen, &dbi)) != 0) goto Exit;
    /* read and write in the one write transaction: the writer lock makes the increment atomic */
    if ((rc = mdb_txn_begin(store->env, NULL, 0, &txn)) != 0) {
        ret = lmdb_fail(store, rc, "incr", db);
        goto Exit;
    }
    rc = mdb_get(txn, dbi, &k, &v);
    if (rc == 0) {
        if (parse_int64(v.mv_data, v.mv_size, &cur) != 0) {
            ret = fail(SY_STORE_ENOTNUM, "incr in store \"%s\": the value is not a decimal integer", db);
            goto Exit;
        }
    } else if (rc != MDB_NOTFOUND) {
        ret = lmdb_fail(store, rc, "incr", db);
        goto Exit;
    }
    if (__builtin_add_overflow(cur, delta, &sum)) {
        ret = fail(SY_STORE_ENOTNUM, "incr in store \"%s\": %" PRId64 " + %" PRId64 " overflows", db, cur, delta);
        goto Exit;
    }
    v.mv_size = (size_t)snprintf(text, sizeof(text), "%" PRId64, sum);
    v.mv_data = text;
    if ((rc = mdb_put(txn, dbi, &k, &v, 0)) != 0) {
        ret = lmdb_fail(store, rc, "incr", db);
        goto Exit;
    }
    rc = mdb_txn_commit(txn);
    txn = NULL;
    if (rc != 0) {
        ret = lmdb_fail(store, rc, "incr", db);
        goto Exit;
    }
    if (result != NULL) *result = sum;
    ret = 0;

Exit:
    if (txn != NULL) mdb_txn_abort(txn);
    return ret;
}

int sy_store_scan(sy_store_t *store, const char *db, const void *start, size_t slen, size_t limit, sy_store_scan_cb cb,
                  void *cookie)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cursor = NULL;
    MDB_dbi dbi;
    MDB_val k = {slen, (void *)start}, v;
    int rc, ret, from_start = start != NULL && slen != 0;
    size_t n = 0;

    /* an absent start key is "from the first": validate a real one as a key, a dummy length otherwise */
    if ((ret = prepare(store, "scan", db, from_start ? slen : 1, &dbi)) != 0) goto Exit;
    if (limit > INT_MAX) limit = INT_MAX;
    if (limit == 0) goto Exit;
    if ((rc = read_begin(store, &txn)) != 0 || (rc = mdb_cursor_open(txn, dbi, &cursor)) != 0) {
        ret = lmdb_fail(store, rc, "scan", db);
        goto Exit;
    }
    rc = mdb_cursor_get(cursor, &k, &v, from_start ? MDB_SET_RANGE : MDB_FIRST);
    while (rc == 0) {
        ++n;
        if (cb(k.mv_data, k.mv_size, v.mv_data, v.mv_size, cookie) != 0 || n == limit) break;
        rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT);
    }
    if (rc != 0 && rc != MDB_NOTFOUND) {
        ret = lmdb_fail(store, rc, "scan", db);
        goto Exit;
    }
    ret = (int)n;

Exit:
    /* a read-only transaction does not free its cursors */
    if (cursor != NULL) mdb_cursor_close(cursor);
    if (txn != NULL) read_end(store, txn);
    return ret;
}
