/*
 * Unit tests of the durable store (core/store) and of its Lua binding (core/lua/store.c), against real LMDB
 * environments in a temporary directory that is removed at the end. Failures logged by the store on purpose appear
 * on stderr as "error store: ..." lines.
 */
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include "common/log.h"
#include "lua/store.h"
#include "store/store.h"
#include "test.h"

static char base_dir[] = "/tmp/sy-store-test-XXXXXX";

/* A fresh, not yet existing directory under base_dir (the store creates it). */
static const char *dir_for(const char *name)
{
    static char path[256];
    snprintf(path, sizeof(path), "%s/%s", base_dir, name);
    return path;
}

static sy_store_t *open_store(const char *name, const sy_store_options_t *opts)
{
    char err[256] = "";
    sy_store_t *store = sy_store_open(dir_for(name), opts, err, sizeof(err));
    if (store == NULL) fprintf(stderr, "sy_store_open(%s): %s\n", name, err);
    return store;
}

/* Returns the value as a string for comparisons ("(none)" when not found, "(error)" on failure); frees nothing. */
static char got[1024];
static const char *get(sy_store_t *store, const char *db, const char *key)
{
    char *val;
    size_t vlen;
    int ret = sy_store_get(store, db, key, strlen(key), &val, &vlen);
    if (ret == 1) return "(none)";
    if (ret != 0) return "(error)";
    snprintf(got, sizeof(got), "%s", val);
    free(val);
    return got;
}

static int put(sy_store_t *store, const char *db, const char *key, const char *val, int flags)
{
    return sy_store_put(store, db, key, strlen(key), val, strlen(val), flags);
}

TEST(test_put_get_delete)
{
    sy_store_t *store = open_store("basic", NULL);
    CHECK(store != NULL);
    if (store == NULL) return;

    CHECK_STR(get(store, "users", "alice"), "(none)");
    CHECK(put(store, "users", "alice", "1", 0) == 0);
    CHECK_STR(get(store, "users", "alice"), "1");
    CHECK(put(store, "users", "alice", "2", 0) == 0);
    CHECK_STR(get(store, "users", "alice"), "2");

    CHECK(put(store, "users", "alice", "3", SY_STORE_NOOVERWRITE) == 1);
    CHECK_STR(get(store, "users", "alice"), "2");
    CHECK(put(store, "users", "bob", "b", SY_STORE_NOOVERWRITE) == 0);
    CHECK_STR(get(store, "users", "bob"), "b");

    /* stores are separate namespaces */
    CHECK_STR(get(store, "other", "alice"), "(none)");

    /* an empty value is a value */
    CHECK(put(store, "users", "empty", "", 0) == 0);
    char *val = (char *)"x";
    size_t vlen = 99;
    CHECK(sy_store_get(store, "users", "empty", 5, &val, &vlen) == 0);
    CHECK(val != NULL && vlen == 0 && val[0] == '\0');
    free(val);
    CHECK(sy_store_get(store, "users", "nope", 4, &val, &vlen) == 1);
    CHECK(val == NULL && vlen == 0);

    CHECK(sy_store_delete(store, "users", "alice", 5) == 0);
    CHECK(sy_store_delete(store, "users", "alice", 5) == 1);
    CHECK_STR(get(store, "users", "alice"), "(none)");
    CHECK(sy_store_sync(store) == 0);
    sy_store_close(store);
}

TEST(test_incr)
{
    sy_store_t *store = open_store("incr", NULL);
    int64_t r = 0;
    CHECK(store != NULL);
    if (store == NULL) return;

    CHECK(sy_store_incr(store, "c", "hits", 4, 1, &r) == 0 && r == 1);
    CHECK(sy_store_incr(store, "c", "hits", 4, 41, &r) == 0 && r == 42);
    CHECK(sy_store_incr(store, "c", "hits", 4, -50, &r) == 0 && r == -8);
    CHECK_STR(get(store, "c", "hits"), "-8");
    CHECK(sy_store_incr(store, "c", "hits", 4, 0, NULL) == 0);

    /* a value written by put counts if it is decimal text */
    CHECK(put(store, "c", "n", "100", 0) == 0);
    CHECK(sy_store_incr(store, "c", "n", 1, 5, &r) == 0 && r == 105);

    CHECK(put(store, "c", "word", "abc", 0) == 0);
    CHECK(sy_store_incr(store, "c", "word", 4, 1, &r) == SY_STORE_ENOTNUM);
    CHECK_STR(get(store, "c", "word"), "abc");
    CHECK(strstr(sy_store_last_error(), "not a decimal") != NULL);
    CHECK(put(store, "c", "partial", "12x", 0) == 0);
    CHECK(sy_store_incr(store, "c", "partial", 7, 1, &r) == SY_STORE_ENOTNUM);
    CHECK(put(store, "c", "blank", "", 0) == 0);
    CHECK(sy_store_incr(store, "c", "blank", 5, 1, &r) == SY_STORE_ENOTNUM);

    CHECK(put(store, "c", "max", "9223372036854775807", 0) == 0);
    CHECK(sy_store_incr(store, "c", "max", 3, 1, &r) == SY_STORE_ENOTNUM);
    CHECK_STR(get(store, "c", "max"), "9223372036854775807");
    CHECK(sy_store_incr(store, "c", "max", 3, -1, &r) == 0 && r == INT64_MAX - 1);
    CHECK(put(store, "c", "min", "-9223372036854775808", 0) == 0);
    CHECK(sy_store_incr(store, "c", "min", 3, 0, &r) == 0 && r == INT64_MIN);
    CHECK(sy_store_incr(store, "c", "min", 3, -1, &r) == SY_STORE_ENOTNUM);
    CHECK(put(store, "c", "huge", "9223372036854775808", 0) == 0);
    CHECK(sy_store_incr(store, "c", "huge", 4, 0, &r) == SY_STORE_ENOTNUM);
    sy_store_close(store);
}

typedef struct {
    char keys[16][32];
    char vals[16][32];
    int n, stop_after;
} collected_t;

static int collect(const void *k, size_t kl, const void *v, size_t vl, void *cookie)
{
    collected_t *c = cookie;
    if (c->n < 16) {
        snprintf(c->keys[c->n], 32, "%.*s", (int)kl, (const char *)k);
        snprintf(c->vals[c->n], 32, "%.*s", (int)vl, (const char *)v);
    }
    ++c->n;
    return c->stop_after != 0 && c->n == c->stop_after;
}

TEST(test_scan)
{
    sy_store_t *store = open_store("scan", NULL);
    collected_t c;
    CHECK(store != NULL);
    if (store == NULL) return;

    /* inserted out of order; bytewise order puts "b" before "ba" before "c" */
    const char *keys[] = {"c", "a", "ba", "b", "d"};
    for (int i = 0; i < 5; ++i)
        CHECK(put(store, "s", keys[i], keys[i], 0) == 0);
    CHECK(put(store, "t", "zz", "other store", 0) == 0);

    memset(&c, 0, sizeof(c));
    CHECK(sy_store_scan(store, "s", NULL, 0, 100, collect, &c) == 5);
    CHECK(c.n == 5);
    CHECK_STR(c.keys[0], "a");
    CHECK_STR(c.keys[1], "b");
    CHECK_STR(c.keys[2], "ba");
    CHECK_STR(c.keys[3], "c");
    CHECK_STR(c.keys[4], "d");
    CHECK_STR(c.vals[2], "ba");

    memset(&c, 0, sizeof(c));
    CHECK(sy_store_scan(store, "s", NULL, 0, 2, collect, &c) == 2);
    CHECK(c.n == 2);
    CHECK_STR(c.keys[1], "b");

    /* start is inclusive; a start key that does not exist begins at the next one */
    memset(&c, 0, sizeof(c));
    CHECK(sy_store_scan(store, "s", "ba", 2, 100, collect, &c) == 3);
    CHECK_STR(c.keys[0], "ba");
    memset(&c, 0, sizeof(c));
    CHECK(sy_store_scan(store, "s", "bb", 2, 2, collect, &c) == 2);
    CHECK_STR(c.keys[0], "c");
    CHECK_STR(c.keys[1], "d");
    memset(&c, 0, sizeof(c));
    CHECK(sy_store_scan(store, "s", "e", 1, 100, collect, &c) == 0);
    CHECK(c.n == 0);
    /* a zero-length start means "from the first" */
    memset(&c, 0, sizeof(c));
    CHECK(sy_store_scan(store, "s", "", 0, 1, collect, &c) == 1);
    CHECK_STR(c.keys[0], "a");

    /* the callback stops the scan; the stopping entry counts */
    memset(&c, 0, sizeof(c));
    c.stop_after = 3;
    CHECK(sy_store_scan(store, "s", NULL, 0, 100, collect, &c) == 3);

    memset(&c, 0, sizeof(c));
    CHECK(sy_store_scan(store, "s", NULL, 0, 0, collect, &c) == 0);
    CHECK(sy_store_scan(store, "empty", NULL, 0, 10, collect, &c) == 0);
    CHECK(c.n == 0);
    sy_store_close(store);
}

TEST(test_binary)
{
    sy_store_t *store = open_store("binary", NULL);
    CHECK(store != NULL);
    if (store == NULL) return;

    const char k1[] = {'\0'}, k2[] = {'\0', '\0'}, k3[] = {'a', '\0', 'b'}, k4[] = {(char)0xff, '\0'};
    const char v[] = {'x', '\0', 'y', '\0', (char)0xfe};
    CHECK(sy_store_put(store, "bin", k3, sizeof(k3), v, sizeof(v), 0) == 0);
    CHECK(sy_store_put(store, "bin", k1, sizeof(k1), "one", 3, 0) == 0);
    CHECK(sy_store_put(store, "bin", k2, sizeof(k2), "two", 3, 0) == 0);
    CHECK(sy_store_put(store, "bin", k4, sizeof(k4), "four", 4, 0) == 0);

    char *val;
    size_t vlen;
    CHECK(sy_store_get(store, "bin", k3, sizeof(k3), &val, &vlen) == 0);
    CHECK(vlen == sizeof(v) && memcmp(val, v, sizeof(v)) == 0 && val[vlen] == '\0');
    free(val);
    /* "a" is a different key from "a\0b" */
    CHECK(sy_store_get(store, "bin", "a", 1, &val, &vlen) == 1);
    CHECK(sy_store_get(store, "bin", k2, sizeof(k2), &val, &vlen) == 0);
    CHECK(vlen == 3 && memcmp(val, "two", 3) == 0);
    free(val);

    collected_t c;
    memset(&c, 0, sizeof(c));
    CHECK(sy_store_scan(store, "bin", k2, sizeof(k2), 10, collect, &c) == 3);
    CHECK_STR(c.vals[0], "two");
    CHECK_STR(c.vals[2], "four");
    sy_store_close(store);
}

TEST(test_invalid_arguments)
{
    sy_store_t *store = open_store("invalid", NULL);
    char key[SY_STORE_MAX_KEY + 1], name[SY_STORE_MAX_NAME + 2], *val;
    size_t vlen;
    int64_t r;
    collected_t c;
    CHECK(store != NULL);
    if (store == NULL) return;

    const char *bad_names[] = {"", "a b", "a/b", "../x", "caf\xc3\xa9", "x\n"};
    for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); ++i) {
        CHECK(sy_store_get(store, bad_names[i], "k", 1, &val, &vlen) == SY_STORE_ENAME);
        CHECK(sy_store_put(store, bad_names[i], "k", 1, "v", 1, 0) == SY_STORE_ENAME);
    }
    CHECK(strstr(sy_store_last_error(), "invalid store name") != NULL);
    memset(name, 'n', sizeof(name));
    name[SY_STORE_MAX_NAME + 1] = '\0';
    CHECK(sy_store_put(store, name, "k", 1, "v", 1, 0) == SY_STORE_ENAME);
    name[SY_STORE_MAX_NAME] = '\0';
    CHECK(sy_store_put(store, name, "k", 1, "v", 1, 0) == 0);
    CHECK(sy_store_put(store, "Az09_.-", "k", 1, "v", 1, 0) == 0);
    CHECK(sy_store_check_name("ok", 2) == 0);
    CHECK(sy_store_check_name("o\0k", 3) == -1);

    memset(key, 'k', sizeof(key));
    CHECK(sy_store_put(store, "d", key, SY_STORE_MAX_KEY, "v", 1, 0) == 0);
    CHECK(sy_store_get(store, "d", key, SY_STORE_MAX_KEY, &val, &vlen) == 0);
    free(val);
    CHECK(sy_store_put(store, "d", key, SY_STORE_MAX_KEY + 1, "v", 1, 0) == SY_STORE_EKEY);
    CHECK(strstr(sy_store_last_error(), "key of 512 bytes") != NULL);
    CHECK(sy_store_get(store, "d", key, SY_STORE_MAX_KEY + 1, &val, &vlen) == SY_STORE_EKEY);
    CHECK(val == NULL);
    CHECK(sy_store_delete(store, "d", key, SY_STORE_MAX_KEY + 1) == SY_STORE_EKEY);
    CHECK(sy_store_incr(store, "d", key, SY_STORE_MAX_KEY + 1, 1, &r) == SY_STORE_EKEY);
    CHECK(sy_store_scan(store, "d", key, SY_STORE_MAX_KEY + 1, 1, collect, &c) == SY_STORE_EKEY);
    CHECK(sy_store_put(store, "d", "", 0, "v", 1, 0) == SY_STORE_EKEY);
    CHECK(sy_store_get(store, "d", "", 0, &val, &vlen) == SY_STORE_EKEY);
    sy_store_close(store);
}

TEST(test_open_errors)
{
    char err[256] = "";
    char path[300];
    snprintf(path, sizeof(path), "%s/missing-parent/store", base_dir);
    CHECK(sy_store_open(path, NULL, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "cannot create store directory") != NULL);

    /* a file where the directory should be */
    snprintf(path, sizeof(path), "%s/a-file", base_dir);
    FILE *fp = fopen(path, "w");
    CHECK(fp != NULL);
    if (fp != NULL) fclose(fp);
    err[0] = '\0';
    CHECK(sy_store_open(path, NULL, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "not a directory") != NULL);

    sy_store_close(NULL);
}

TEST(test_reopen)
{
    sy_store_options_t opts = {.map_size = 16 << 20, .sync_each_commit = 1};
    sy_store_t *store = open_store("reopen", &opts);
    int64_t r;
    CHECK(store != NULL);
    if (store == NULL) return;
    CHECK(put(store, "keep", "k", "v", 0) == 0);
    CHECK(put(store, "gone", "k", "v", 0) == 0);
    CHECK(sy_store_delete(store, "gone", "k", 1) == 0);
    CHECK(sy_store_incr(store, "ctr", "n", 1, 7, &r) == 0);
    sy_store_close(store);

    /* reopened with the default (no sync per commit) flags and map size */
    store = open_store("reopen", NULL);
    CHECK(store != NULL);
    if (store == NULL) return;
    CHECK_STR(get(store, "keep", "k"), "v");
    CHECK_STR(get(store, "gone", "k"), "(none)");
    CHECK(sy_store_incr(store, "ctr", "n", 1, 1, &r) == 0 && r == 8);
    CHECK(put(store, "keep", "k2", "v2", 0) == 0);
    sy_store_close(store);

    store = open_store("reopen", NULL);
    CHECK(store != NULL);
    if (store == NULL) return;
    CHECK_STR(get(store, "keep", "k2"), "v2");
    CHECK_STR(get(store, "ctr", "n"), "8");
    sy_store_close(store);
}

TEST(test_many_dbs)
{
    sy_store_t *store = open_store("many", NULL);
    char name[32];
    CHECK(store != NULL);
    if (store == NULL) return;
    for (int i = 0; i < SY_STORE_MAX_DBS; ++i) {
        snprintf(name, sizeof(name), "db%03d", i);
        CHECK(put(store, name, "id", name, 0) == 0);
    }
    CHECK(put(store, "one-too-many", "id", "x", 0) == SY_STORE_EFULL);
    CHECK(strstr(sy_store_last_error(), "too many named stores") != NULL);
    for (int i = SY_STORE_MAX_DBS - 1; i >= 0; --i) {
        snprintf(name, sizeof(name), "db%03d", i);
        CHECK_STR(get(store, name, "id"), name);
    }
    sy_store_close(store);

    /* after a reopen every store is found again, in any order */
    store = open_store("many", NULL);
    CHECK(store != NULL);
    if (store == NULL) return;
    CHECK_STR(get(store, "db127", "id"), "db127");
    CHECK_STR(get(store, "db000", "id"), "db000");
    sy_store_close(store);
}

TEST(test_map_full)
{
    sy_store_options_t opts = {.map_size = 1 << 20};
    sy_store_t *store = open_store("full", &opts);
    static char big[100000];
    char key[16];
    int ret = 0, i;
    CHECK(store != NULL);
    if (store == NULL) return;
    memset(big, 'b', sizeof(big));
    for (i = 0; i < 100 && ret == 0; ++i) {
        snprintf(key, sizeof(key), "k%d", i);
        ret = sy_store_put(store, "blobs", key, strlen(key), big, sizeof(big), 0);
    }
    CHECK(ret == SY_STORE_EFULL);
    CHECK(strstr(sy_store_last_error(), "full") != NULL);
    CHECK(i > 2);
    /* the failed write left nothing behind and the store still works */
    snprintf(key, sizeof(key), "k%d", i - 1);
    CHECK_STR(get(store, "blobs", key), "(none)");
    CHECK(sy_store_delete(store, "blobs", "k0", 2) == 0);
    CHECK(sy_store_put(store, "blobs", "small", 5, "v", 1, 0) == 0);
    sy_store_close(store);
}

typedef struct {
    sy_store_t *store;
    int failures;
    atomic_int *stop;
} worker_t;

static void *incr_worker(void *arg)
{
    worker_t *w = arg;
    for (int i = 0; i < 1000; ++i) {
        /* "hits" is first used by all threads at once: the store opening races too */
        if (sy_store_incr(w->store, "hits", "total", 5, 1, NULL) != 0) ++w->failures;
    }
    return NULL;
}

static int count_cb(const void *k, size_t kl, const void *v, size_t vl, void *cookie)
{
    return 0;
}

static void *read_worker(void *arg)
{
    worker_t *w = arg;
    while (!atomic_load(w->stop)) {
        char *val;
        size_t vlen;
        int ret = sy_store_get(w->store, "hits", "total", 5, &val, &vlen);
        if (ret == 0)
            free(val);
        else if (ret != 1)
            ++w->failures;
        if (sy_store_scan(w->store, "hits", NULL, 0, 10, count_cb, NULL) < 0) ++w->failures;
    }
    return NULL;
}

TEST(test_concurrent_incr)
{
    sy_store_t *store = open_store("concurrent", NULL);
    pthread_t incr_threads[4], read_threads[2];
    worker_t incr_workers[4], read_workers[2];
    atomic_int stop = 0;
    CHECK(store != NULL);
    if (store == NULL) return;

    for (int i = 0; i < 2; ++i) {
        read_workers[i] = (worker_t){store, 0, &stop};
        CHECK(pthread_create(&read_threads[i], NULL, read_worker, &read_workers[i]) == 0);
    }
    for (int i = 0; i < 4; ++i) {
        incr_workers[i] = (worker_t){store, 0, &stop};
        CHECK(pthread_create(&incr_threads[i], NULL, incr_worker, &incr_workers[i]) == 0);
    }
    for (int i = 0; i < 4; ++i) {
        pthread_join(incr_threads[i], NULL);
        CHECK(incr_workers[i].failures == 0);
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < 2; ++i) {
        pthread_join(read_threads[i], NULL);
        CHECK(read_workers[i].failures == 0);
    }
    CHECK_STR(get(store, "hits", "total"), "4000");
    sy_store_close(store);
}

static void run_lua(lua_State *L, const char *chunk)
{
    if (luaL_dostring(L, chunk) != 0) {
        fprintf(stderr, "FAIL %s: lua: %s\n", sy_test_current, lua_tostring(L, -1));
        ++sy_test_failures;
        lua_pop(L, 1);
    }
}

TEST(test_lua_binding)
{
    sy_store_t *store = open_store("lua", NULL);
    sy_store_options_t small_opts = {.map_size = 1 << 20};
    sy_store_t *small = open_store("lua-small", &small_opts);
    CHECK(store != NULL && small != NULL);
    if (store == NULL || small == NULL) {
        sy_store_close(store);
        sy_store_close(small);
        return;
    }

    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    lua_pushnil(L);
    CHECK(sy_lua_store_register(L, store) == -1);
    lua_pop(L, 1);
    lua_newtable(L);
    int top = lua_gettop(L);
    CHECK(sy_lua_store_register(L, store) == 0);
    CHECK(lua_gettop(L) == top);
    lua_setglobal(L, "core");
    lua_newtable(L);
    CHECK(sy_lua_store_register(L, small) == 0);
    lua_setglobal(L, "small");
    CHECK(lua_gettop(L) == 0);

    run_lua(L, "local c = core\n"
               "assert(c.store_put('u', 'a', '1') == true)\n"
               "assert(c.store_get('u', 'a') == '1')\n"
               "assert(c.store_get('u', 'missing') == nil)\n"
               "assert(select('#', c.store_get('u', 'missing')) == 1)\n"
               "assert(c.store_put('u', 'a', 'one') == true and c.store_get('u', 'a') == 'one')\n"
               "assert(c.store_put_new('u', 'b', 'x') == true)\n"
               "assert(c.store_put_new('u', 'b', 'y') == false)\n"
               "assert(c.store_get('u', 'b') == 'x')\n"
               "assert(c.store_delete('u', 'b') == true)\n"
               "assert(c.store_delete('u', 'b') == false)\n"
               "assert(c.store_get('u', 'b') == nil)\n");

    run_lua(L, "local c = core\n"
               "assert(c.store_incr('n', 'hits', 5) == 5)\n"
               "assert(c.store_incr('n', 'hits') == 6)\n"
               "assert(c.store_incr('n', 'hits', -10) == -4)\n"
               "assert(c.store_get('n', 'hits') == '-4')\n");

    /* number keys are written as tostring() writes them */
    run_lua(L, "local c = core\n"
               "assert(c.store_put('u', 42, 'forty-two'))\n"
               "assert(c.store_get('u', '42') == 'forty-two')\n"
               "assert(c.store_get('u', 42.0) == 'forty-two')\n"
               "assert(c.store_put('u', -7, 'minus'))\n"
               "assert(c.store_get('u', tostring(-7)) == 'minus')\n"
               "local big = 99999999999999\n"
               "assert(c.store_put('u', big, 'big'))\n"
               "assert(c.store_get('u', tostring(big)) == 'big')\n"
               "assert(c.store_incr('n', 7, 1) == 1 and c.store_get('n', '7') == '1')\n");

    /* binary keys and values */
    run_lua(L, "local c = core\n"
               "local k, v = 'a\\0b\\255', '\\0x\\0'\n"
               "assert(c.store_put('bin', k, v))\n"
               "assert(c.store_get('bin', k) == v and #c.store_get('bin', k) == 3)\n"
               "assert(c.store_get('bin', 'a') == nil)\n");

    run_lua(L, "local c = core\n"
               "for i = 1, 5 do assert(c.store_put('s', 'k' .. i, 'v' .. i)) end\n"
               "local t = c.store_scan('s', nil, 10)\n"
               "assert(#t == 10 and t[1] == 'k1' and t[2] == 'v1' and t[9] == 'k5' and t[10] == 'v5')\n"
               "t = c.store_scan('s', 'k3', 2)\n"
               "assert(#t == 4 and t[1] == 'k3' and t[2] == 'v3' and t[3] == 'k4')\n"
               "t = c.store_scan('s', 'k9')\n"
               "assert(type(t) == 'table' and #t == 0)\n"
               "t = c.store_scan('s', '', 1)\n"
               "assert(#t == 2 and t[1] == 'k1')\n"
               "t = c.store_scan('s', nil, 0)\n"
               "assert(#t == 0)\n"
               "t = c.store_scan('empty', nil)\n"
               "assert(#t == 0)\n"
               "for i = 1, 1005 do c.store_put('many', string.format('%05d', i), 'x') end\n"
               "t = c.store_scan('many', nil, 5000)\n"
               "assert(#t == 2000 and t[1] == '00001' and t[1999] == '01000')\n"
               "t = c.store_scan('many')\n"
               "assert(#t == 2000)\n"
               "t = c.store_scan('many', 1001, 3)\n"
               "assert(#t == 0)\n"
               "t = c.store_scan('many', '01001', 3)\n"
               "assert(#t == 6 and t[5] == '01003')\n");

    /* runtime failures: nil, "reason" */
    run_lua(L, "local c = core\n"
               "local v, err = c.store_get('u', '')\n"
               "assert(v == nil and err == 'empty key')\n"
               "v, err = c.store_put('u', string.rep('x', 512), 'v')\n"
               "assert(v == nil and err:find('too long'), err)\n"
               "assert(c.store_put('u', string.rep('x', 511), 'v') == true)\n"
               "v, err = c.store_scan('u', string.rep('x', 600), 1)\n"
               "assert(v == nil and err:find('too long'))\n"
               "assert(c.store_put('n', 'text', 'abc'))\n"
               "v, err = c.store_incr('n', 'text', 1)\n"
               "assert(v == nil and err:find('not a decimal integer'), err)\n"
               "local big = string.rep('b', 100000)\n"
               "local ok\n"
               "for i = 1, 100 do\n"
               "  ok, err = small.store_put('blobs', 'k' .. i, big)\n"
               "  if not ok then break end\n"
               "end\n"
               "assert(ok == nil and err:find('full'), err)\n");

    /* programming mistakes raise */
    run_lua(L, "local c = core\n"
               "local function raises(pattern, f, ...)\n"
               "  local ok, err = pcall(f, ...)\n"
               "  assert(not ok, 'expected an error')\n"
               "  assert(tostring(err):find(pattern), err)\n"
               "end\n"
               "raises('invalid store name', c.store_get, 'bad name', 'k')\n"
               "raises('invalid store name', c.store_put, '', 'k', 'v')\n"
               "raises('invalid store name', c.store_get, string.rep('d', 65), 'k')\n"
               "raises('invalid store name', c.store_get, 'a\\0b', 'k')\n"
               "raises('string expected', c.store_get, 5, 'k')\n"
               "raises('string expected', c.store_get, nil, 'k')\n"
               "raises('integer', c.store_get, 'u', 1.5)\n"
               "raises('integer', c.store_get, 'u', 1e14)\n"
               "raises('integer', c.store_get, 'u', 0/0)\n"
               "raises('integer', c.store_get, 'u', math.huge)\n"
               "raises('string or integer', c.store_get, 'u', {})\n"
               "raises('string or integer', c.store_delete, 'u', nil)\n"
               "raises('string expected', c.store_put, 'u', 'k', {})\n"
               "raises('string expected', c.store_put_new, 'u', 'k')\n"
               "raises('delta', c.store_incr, 'n', 'k', 0.5)\n"
               "raises('number expected', c.store_incr, 'n', 'k', 'x')\n"
               "raises('limit', c.store_scan, 's', nil, -1)\n"
               "raises('limit', c.store_scan, 's', nil, 1.5)\n"
               "raises('string or integer', c.store_scan, 's', true)\n");
    CHECK(lua_gettop(L) == 0);

    /* what Lua wrote, C reads */
    CHECK_STR(get(store, "u", "42"), "forty-two");
    CHECK_STR(get(store, "n", "hits"), "-4");

    lua_close(L);
    sy_store_close(small);
    sy_store_close(store);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

TEST(test_cleanup)
{
    CHECK(nftw(base_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) == 0);
}

static void setup(void)
{
    if (mkdtemp(base_dir) == NULL) {
        perror("mkdtemp");
        exit(1);
    }
    sy_log_min_level = SY_LOG_WARN;
}

TEST(test_setup)
{
    setup();
}

RUN_TESTS(T(test_setup), T(test_put_get_delete), T(test_incr), T(test_scan), T(test_binary), T(test_invalid_arguments),
          T(test_open_errors), T(test_reopen), T(test_many_dbs), T(test_map_full), T(test_concurrent_incr),
          T(test_lua_binding), T(test_cleanup))
