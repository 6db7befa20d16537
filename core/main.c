/*
 * switchyard: command line, start-up, signals, shutdown order.
 *
 * Start-up: parse options; load the routes file once here to validate it and learn its topics (this is also all that
 * --check does); open the store; start the Kafka cluster (embedded unless --brokers) and create the declared topics;
 * start the workers, each of which loads the routes into its own Lua state. Then the main thread only waits for
 * signals and syncs the store once a second. SIGTERM/SIGINT: graceful stop (a second one exits at once).
 * Shutdown order: workers (drain, consumers, producers), Kafka cluster, store.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include "common/log.h"
#include "common/mem.h"
#include "kafka/kafka.h"
#include "lua/app.h"
#include "lua/admin.h"
#include "lua/http.h"
#include "lua/worker.h"
#include "store/store.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: switchyard [OPTIONS] [ROUTES_FILE]\n"
            "\n"
            "Serves the HTTP endpoints and Kafka topic handlers declared in ROUTES_FILE (default: routes.lua).\n"
            "\n"
            "options:\n"
            "  --listen ADDR:PORT      public HTTP address (default 0.0.0.0:8080)\n"
            "  --admin ADDR:PORT|off   admin listener: /healthz /readyz /metrics /status (default 127.0.0.1:9090)\n"
            "  --workers N             event-loop threads (default: number of CPUs)\n"
            "  --data-dir DIR          store and kafka.bootstrap location (default .switchyard)\n"
            "  --brokers LIST          use this Kafka cluster (host:port,...) instead of the embedded broker\n"
            "  --kafka KEY=VALUE       librdkafka property for every Kafka client (repeatable)\n"
            "  --max-body BYTES        largest request body; larger ones get 413 (default 1048576)\n"
            "  --max-headers BYTES     largest total of request header names and values; more gets 431 (default 16k)\n"
            "  --io-timeout S          a client that sends nothing for this long is disconnected (default 10)\n"
            "  --max-connections N     open connections per process; more get a 503 and are closed (default 10000)\n"
            "  --shutdown-timeout S    seconds in-flight work may take after SIGTERM (default 10)\n"
            "  --lua-memory BYTES      memory limit of each Lua state (default 256m; 0 = none)\n"
            "  --handler-budget MS     longest a handler may run without yielding before it is stopped (default 1000)\n"
            "  --fault-injection       tests only: POST /faults/brokers/<id>/down|up on the admin listener\n"
            "  --unsafe-lua            let the routes file load C modules, use io/os.execute/ffi (default: sandboxed)\n"
            "  --log-level LEVEL       debug, info, warn or error (default info)\n"
            "  --check                 load and validate ROUTES_FILE, print what it declares, exit 0 or 1\n"
            "  --help                  this text\n"
            "  --version               the version\n");
}

static int parse_size(const char *s, size_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s) return -1;
    if (*end == 'k' || *end == 'K')
        v <<= 10, ++end;
    else if (*end == 'm' || *end == 'M')
        v <<= 20, ++end;
    if (*end != '\0' || v == 0) return -1;
    *out = (size_t)v;
    return 0;
}

static int dir_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The Lua library: $SWITCHYARD_SCRIPTS, else next to an installed binary (../share/switchyard/scripts), else the
 * source tree the binary was built from, else the configured install prefix. */
static char *find_scripts_dir(void)
{
    char buf[PATH_MAX + 64], probe[PATH_MAX + 128];
    const char *env = getenv("SWITCHYARD_SCRIPTS");
    if (env != NULL && *env != '\0') return sy_strdup(env);
    ssize_t n = readlink("/proc/self/exe", buf, PATH_MAX);
    if (n > 0) {
        buf[n] = '\0';
        char *slash = strrchr(buf, '/');
        if (slash != NULL) {
            *slash = '\0';
            snprintf(probe, sizeof(probe), "%s/../share/switchyard/scripts", buf);
            if (dir_exists(probe)) {
                char *real = realpath(probe, NULL);
                if (real != NULL) return real;
            }
        }
    }
    if (dir_exists(SY_SCRIPTS_BUILD_DIR "/switchyard")) return sy_strdup(SY_SCRIPTS_BUILD_DIR);
    return sy_strdup(SY_SCRIPTS_INSTALL_DIR);
}

static int write_bootstrap_file(const char *data_dir, const char *bootstrap)
{
    char path[PATH_MAX], tmp[PATH_MAX + 8];
    snprintf(path, sizeof(path), "%s/kafka.bootstrap", data_dir);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (f == NULL) return -1;
    fprintf(f, "%s\n", bootstrap);
    if (fclose(f) != 0) return -1;
    return rename(tmp, path);
}

/* --- hot reload ------------------------------------------------------------------------------------------------ */

typedef struct {
    int fd;
    int *wds;
    size_t nwds;
} watcher_t;

static void watch_dir_of(watcher_t *wt, const char *file)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(file, '/');
    if (slash == NULL)
        snprintf(dir, sizeof(dir), ".");
    else if (slash == file)
        snprintf(dir, sizeof(dir), "/");
    else
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - file), file);
    /* editors replace files by rename, so watch the directory rather than the file */
    int wd = inotify_add_watch(wt->fd, dir, IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_MOVED_FROM);
    if (wd < 0) {
        sy_warn("reload", "cannot watch %s: %s", dir, strerror(errno));
        return;
    }
    for (size_t i = 0; i < wt->nwds; ++i)
        if (wt->wds[i] == wd) return;
    wt->wds = sy_realloc(wt->wds, (wt->nwds + 1) * sizeof(int));
    wt->wds[wt->nwds++] = wd;
}

static void watch_app(watcher_t *wt, const char *routes_path, const sy_app_t *app)
{
    watch_dir_of(wt, routes_path);
    for (size_t i = 0; app != NULL && i < app->nmodule_files; ++i)
        watch_dir_of(wt, app->module_files[i]);
}

/* Validates the routes file, creates its topics and switches every worker to it. Main thread. */
static void reload(sy_host_t *host, watcher_t *wt, const char *why)
{
    char errbuf[1024];
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    sy_app_t *app = sy_app_create(host->opts.routes_path, host->opts.scripts_dir, NULL, errbuf, sizeof(errbuf));
    if (app == NULL) {
        sy_error("reload", "%s: %s does not load, the previous routes stay active: %s", why, host->opts.routes_path,
                 errbuf);
        pthread_mutex_lock(&host->status_mutex);
        snprintf(host->last_reload_error, sizeof(host->last_reload_error), "%s", errbuf);
        pthread_mutex_unlock(&host->status_mutex);
        sy_metrics_add(host->metrics, "switchyard_reloads_total", "result=\"failed\"", 1);
        return;
    }
    for (size_t i = 0; i < app->ntopics; ++i)
        if (sy_kafka_cluster_ensure_topic(host->cluster, app->topics[i].name, app->topics[i].partitions) != 0)
            sy_warn("reload", "cannot create topic %s", app->topics[i].name);
    watch_app(wt, host->opts.routes_path, app);
    sy_app_release(app);
    int rc = sy_host_reload(host, 30000);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
    pthread_mutex_lock(&host->status_mutex);
    if (rc == 0) {
        sy_info("reload", "%s: %s reloaded on %zu worker(s) in %.1f ms", why, host->opts.routes_path, host->nworkers,
                ms);
        host->last_reload_error[0] = '\0';
        struct timeval tv;
        gettimeofday(&tv, NULL);
        host->routes_loaded_at = tv.tv_sec + tv.tv_usec / 1e6;
    } else {
        sy_error("reload", "%s: not every worker could load %s; the previous routes stay active", why,
                 host->opts.routes_path);
        snprintf(host->last_reload_error, sizeof(host->last_reload_error), "not every worker could load the file");
    }
    pthread_mutex_unlock(&host->status_mutex);
    sy_metrics_add(host->metrics, "switchyard_reloads_total", rc == 0 ? "result=\"ok\"" : "result=\"failed\"", 1);
}

static int is_lua_file(const char *name)
{
    size_t n = strlen(name);
    return n > 4 && strcmp(name + n - 4, ".lua") == 0;
}

/* The main thread's loop: signals, file changes (debounced) and the store's periodic sync. */
static void serve(sy_host_t *host, sigset_t *sigs)
{
    watcher_t wt = {.fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC)};
    int sfd = signalfd(-1, sigs, SFD_NONBLOCK | SFD_CLOEXEC);
    uint64_t pending_since = 0; /* a change was seen: reload once the files have been quiet for DEBOUNCE_MS */
    const uint64_t DEBOUNCE_MS = 150;
    uint64_t last_sync = 0;
    struct timespec ts;

    if (wt.fd < 0)
        sy_warn("reload", "inotify unavailable (%s): reload on SIGHUP only", strerror(errno));
    else {
        char errbuf[256];
        sy_app_t *app = sy_app_create(host->opts.routes_path, host->opts.scripts_dir, NULL, errbuf, sizeof(errbuf));
        watch_app(&wt, host->opts.routes_path, app);
        if (app != NULL) sy_app_release(app);
    }
    for (;;) {
        struct pollfd fds[2] = {{.fd = sfd, .events = POLLIN}, {.fd = wt.fd, .events = POLLIN}};
        int timeout = 1000;
        if (pending_since != 0) timeout = (int)DEBOUNCE_MS;
        int n = poll(fds, wt.fd >= 0 ? 2 : 1, timeout);
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t now = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
        if (n > 0 && (fds[0].revents & POLLIN)) {
            struct signalfd_siginfo si;
            if (read(sfd, &si, sizeof(si)) == sizeof(si)) {
                if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
                    sy_info("main", "%s: shutting down (in-flight work has %.1f s)",
                            si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT", host->opts.shutdown_timeout_ms / 1000.0);
                    break;
                }
                if (si.ssi_signo == SIGHUP) {
                    reload(host, &wt, "SIGHUP");
                    pending_since = 0;
                }
            }
        }
        if (n > 0 && wt.fd >= 0 && (fds[1].revents & POLLIN)) {
            char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
            ssize_t len;
            while ((len = read(wt.fd, buf, sizeof(buf))) > 0) {
                for (char *p = buf; p < buf + len;) {
                    struct inotify_event *ev = (struct inotify_event *)p;
                    if (ev->len > 0 && is_lua_file(ev->name)) pending_since = now;
                    p += sizeof(*ev) + ev->len;
                }
            }
        }
        if (pending_since != 0 && now - pending_since >= DEBOUNCE_MS) {
            pending_since = 0;
            reload(host, &wt, "file change");
        }
        if (now - last_sync >= 1000) {
            sy_store_sync(host->store);
            last_sync = now;
        }
    }
    if (wt.fd >= 0) close(wt.fd);
    free(wt.wds);
    close(sfd);
}

static void *second_signal_watch(void *arg)
{
    sigset_t *set = arg;
    int sig;
    while (sigwait(set, &sig) == 0) {
        if (sig == SIGTERM || sig == SIGINT) {
            sy_warn("main", "second signal: exiting at once");
            _exit(1);
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    enum {
        OPT_LUA_MEMORY = 240,
        OPT_BUDGET,
        OPT_UNSAFE,
        OPT_FAULTS,
        OPT_MAX_HEADERS,
        OPT_IO_TIMEOUT,
        OPT_MAX_CONNECTIONS,
        OPT_ADMIN = 255,
        OPT_LISTEN = 256,
        OPT_WORKERS,
        OPT_DATA_DIR,
        OPT_BROKERS,
        OPT_KAFKA,
        OPT_MAX_BODY,
        OPT_SHUTDOWN,
        OPT_LOG
    };
    static const struct option long_opts[] = {{"listen", required_argument, NULL, OPT_LISTEN},
                                              {"admin", required_argument, NULL, OPT_ADMIN},
                                              {"lua-memory", required_argument, NULL, OPT_LUA_MEMORY},
                                              {"handler-budget", required_argument, NULL, OPT_BUDGET},
                                              {"unsafe-lua", no_argument, NULL, OPT_UNSAFE},
                                              {"fault-injection", no_argument, NULL, OPT_FAULTS},
                                              {"max-headers", required_argument, NULL, OPT_MAX_HEADERS},
                                              {"io-timeout", required_argument, NULL, OPT_IO_TIMEOUT},
                                              {"max-connections", required_argument, NULL, OPT_MAX_CONNECTIONS},
                                              {"workers", required_argument, NULL, OPT_WORKERS},
                                              {"data-dir", required_argument, NULL, OPT_DATA_DIR},
                                              {"brokers", required_argument, NULL, OPT_BROKERS},
                                              {"kafka", required_argument, NULL, OPT_KAFKA},
                                              {"max-body", required_argument, NULL, OPT_MAX_BODY},
                                              {"shutdown-timeout", required_argument, NULL, OPT_SHUTDOWN},
                                              {"log-level", required_argument, NULL, OPT_LOG},
                                              {"check", no_argument, NULL, 'c'},
                                              {"help", no_argument, NULL, 'h'},
                                              {"version", no_argument, NULL, 'V'},
                                              {NULL, 0, NULL, 0}};
    sy_host_t host = {0};
    sy_host_options_t *o = &host.opts;
    int check_only = 0, opt, ret = 1;
    long nprocs = sysconf(_SC_NPROCESSORS_ONLN);
    char errbuf[1024];
    sy_app_t *app = NULL;

    o->routes_path = "routes.lua";
    o->listen = "0.0.0.0:8080";
    o->data_dir = ".switchyard";
    o->workers = nprocs > 0 ? (size_t)nprocs : 1;
    o->max_body = 1 << 20;
    o->max_header_bytes = 16 << 10;
    uint64_t io_timeout_ms = 10000;
    size_t max_connections = 10000;
    o->shutdown_timeout_ms = 10000;
    o->kafka_props = sy_calloc((size_t)argc + 1, sizeof(char *));
    host.admin_listen = "127.0.0.1:9090";
    host.metrics = sy_metrics_create();
    pthread_mutex_init(&host.status_mutex, NULL);
    sy_admin_t *admin = NULL;
    sy_app_limits_t limits = {.memory_limit = (size_t)256 << 20, .slice_budget_ms = 1000};

    opterr = 0;
    while ((opt = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
        switch (opt) {
        case OPT_LISTEN:
            o->listen = optarg;
            break;
        case OPT_LUA_MEMORY:
            if (strcmp(optarg, "0") == 0)
                limits.memory_limit = 0;
            else if (parse_size(optarg, &limits.memory_limit) != 0 || limits.memory_limit < ((size_t)16 << 20)) {
                fprintf(stderr, "switchyard: --lua-memory expects a size of at least 16m, or 0\n");
                goto Exit;
            }
            break;
        case OPT_BUDGET: {
            char *end;
            long ms = strtol(optarg, &end, 10);
            if (*end != '\0' || ms < 0 || ms > 3600000) {
                fprintf(stderr, "switchyard: --handler-budget expects milliseconds (0 = none)\n");
                goto Exit;
            }
            limits.slice_budget_ms = (uint64_t)ms;
            break;
        }
        case OPT_UNSAFE:
            limits.unsafe = 1;
            break;
        case OPT_FAULTS:
            host.fault_injection = 1;
            break;
        case OPT_MAX_HEADERS:
            if (parse_size(optarg, &o->max_header_bytes) != 0 || o->max_header_bytes < 1024) {
                fprintf(stderr, "switchyard: --max-headers expects a size of at least 1k\n");
                goto Exit;
            }
            break;
        case OPT_MAX_CONNECTIONS: {
            char *end;
            long n = strtol(optarg, &end, 10);
            if (*end != '\0' || n < 1 || n > 10000000) {
                fprintf(stderr, "switchyard: --max-connections expects a number between 1 and 10000000\n");
                goto Exit;
            }
            max_connections = (size_t)n;
            break;
        }
        case OPT_IO_TIMEOUT: {
            char *end;
            double sec = strtod(optarg, &end);
            if (*end != '\0' || sec < 0.1 || sec > 3600) {
                fprintf(stderr, "switchyard: --io-timeout expects seconds between 0.1 and 3600\n");
                goto Exit;
            }
            io_timeout_ms = (uint64_t)(sec * 1000);
            break;
        }
        case OPT_ADMIN:
            host.admin_listen = strcmp(optarg, "off") == 0 ? NULL : optarg;
            break;
        case OPT_WORKERS: {
            char *end;
            long n = strtol(optarg, &end, 10);
            if (*end != '\0' || n < 1 || n > 256) {
                fprintf(stderr, "switchyard: --workers must be between 1 and 256\n");
                goto Exit;
            }
            o->workers = (size_t)n;
            break;
        }
        case OPT_DATA_DIR:
            o->data_dir = optarg;
            break;
        case OPT_BROKERS:
            o->brokers = optarg;
            break;
        case OPT_KAFKA:
            if (strchr(optarg, '=') == NULL) {
                fprintf(stderr, "switchyard: --kafka expects KEY=VALUE, got '%s'\n", optarg);
                goto Exit;
            }
            o->kafka_props[o->nkafka_props++] = optarg;
            break;
        case OPT_MAX_BODY:
            if (parse_size(optarg, &o->max_body) != 0) {
                fprintf(stderr, "switchyard: --max-body expects a positive size in bytes (k and m suffixes work)\n");
                goto Exit;
            }
            break;
        case OPT_SHUTDOWN: {
            char *end;
            double s = strtod(optarg, &end);
            if (*end != '\0' || s < 0 || s > 3600) {
                fprintf(stderr, "switchyard: --shutdown-timeout expects seconds between 0 and 3600\n");
                goto Exit;
            }
            o->shutdown_timeout_ms = (uint64_t)(s * 1000);
            break;
        }
        case OPT_LOG:
            if (sy_log_parse_level(optarg, &sy_log_min_level) != 0) {
                fprintf(stderr, "switchyard: --log-level must be debug, info, warn or error\n");
                goto Exit;
            }
            break;
        case 'c':
            check_only = 1;
            break;
        case 'h':
            usage(stdout);
            ret = 0;
            goto Exit;
        case 'V': {
            char *dir = find_scripts_dir();
            printf("switchyard %s\nLua library: %s\n", SY_VERSION, dir);
            free(dir);
            ret = 0;
            goto Exit;
        }
        default:
            if (optopt != 0)
                fprintf(stderr, "switchyard: option '%s' needs a value or is unknown\n", argv[optind - 1]);
            else
                fprintf(stderr, "switchyard: unknown option '%s'\n", argv[optind - 1]);
            usage(stderr);
            ret = 2;
            goto Exit;
        }
    }
    if (optind < argc) o->routes_path = argv[optind++];
    if (optind < argc) {
        fprintf(stderr, "switchyard: one routes file only (got '%s' too)\n", argv[optind]);
        ret = 2;
        goto Exit;
    }
    o->scripts_dir = find_scripts_dir();
    sy_app_configure(&limits);

    /* validate the routes file before anything else starts: the same load every worker does */
    if ((app = sy_app_create(o->routes_path, o->scripts_dir, NULL, errbuf, sizeof(errbuf))) == NULL) {
        sy_error("main", "cannot load %s: %s", o->routes_path, errbuf);
        if (check_only) fprintf(stdout, "%s: FAILED\n%s\n", o->routes_path, errbuf);
        goto Exit;
    }
    if (check_only) {
        printf("%s: OK\n%s\n", o->routes_path, app->summary);
        ret = 0;
        goto Exit;
    }

    signal(SIGPIPE, SIG_IGN);
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL); /* every thread created from here on inherits the mask */

    if (mkdir(o->data_dir, 0755) != 0 && errno != EEXIST) {
        sy_error("main", "cannot create the data directory %s: %s", o->data_dir, strerror(errno));
        goto Exit;
    }
    char store_dir[PATH_MAX];
    snprintf(store_dir, sizeof(store_dir), "%s/store", o->data_dir);
    if ((host.store = sy_store_open(store_dir, NULL, errbuf, sizeof(errbuf))) == NULL) {
        sy_error("main", "cannot open the store in %s: %s", store_dir, errbuf);
        goto Exit;
    }

    sy_kafka_cluster_config_t kcfg = {
        .brokers = o->brokers, .props = (const char *const *)o->kafka_props, .nprops = o->nkafka_props};
    if ((host.cluster = sy_kafka_cluster_create(&kcfg, errbuf, sizeof(errbuf))) == NULL) {
        sy_error("main", "kafka: %s", errbuf);
        goto Exit;
    }
    const char *bootstrap = sy_kafka_cluster_bootstrap(host.cluster);
    sy_info("main", "kafka bootstrap: %s%s", bootstrap, o->brokers == NULL ? " (embedded broker)" : "");
    if (write_bootstrap_file(o->data_dir, bootstrap) != 0)
        sy_warn("main", "cannot write %s/kafka.bootstrap: %s", o->data_dir, strerror(errno));
    for (size_t i = 0; i < app->ntopics; ++i) {
        /* on a real cluster the topic may be managed elsewhere (or created automatically): say so, go on */
        if (sy_kafka_cluster_ensure_topic(host.cluster, app->topics[i].name, app->topics[i].partitions) != 0) {
            if (o->brokers == NULL) goto Exit;
            sy_warn("main", "topic %s could not be created; it must exist or be created by the cluster",
                    app->topics[i].name);
        }
    }

    sy_app_release(app); /* each worker loads its own */
    app = NULL;

    /* h2o answers bodies over its own limit with a plain-text 413 before any handler runs; switchyard's limit is
     * checked in the handler (JSON 413), so h2o's is set above it: bodies up to 4 x --max-body (at least 8 MiB)
     * are buffered and refused in JSON, larger ones get h2o's text answer without being read */
    size_t h2o_limit = o->max_body * 4 > ((size_t)8 << 20) ? o->max_body * 4 : ((size_t)8 << 20);
    /* the limit is per process; each worker enforces its share (the kernel balances connections over them) */
    size_t per_worker = (max_connections + o->workers - 1) / o->workers;
    sy_http_config_t hcfg = {.max_body = h2o_limit, .io_timeout_ms = io_timeout_ms, .max_connections = per_worker};
    sy_http_server_init(&host.http, &hcfg, sy_lua_http_handle);
    host.nworkers = o->workers;
    if (sy_host_start(&host) != 0) {
        sy_error("main", "not every worker started; stopping");
        sy_host_stop(&host);
        goto Dispose;
    }
    {
        struct timeval tv;
        gettimeofday(&tv, NULL);
        host.routes_loaded_at = tv.tv_sec + tv.tv_usec / 1e6;
    }
    if (host.admin_listen != NULL && (admin = sy_admin_start(&host, errbuf, sizeof(errbuf))) == NULL) {
        sy_error("main", "admin listener: %s", errbuf);
        sy_host_stop(&host);
        goto Dispose;
    }
    sy_info("main", "switchyard %s serving %s on %s with %zu worker(s)%s%s", SY_VERSION, o->routes_path, o->listen,
            host.nworkers, admin != NULL ? "; admin on " : "", admin != NULL ? host.admin_listen : "");

    serve(&host, &sigs);
    pthread_t watcher;
    pthread_create(&watcher, NULL, second_signal_watch, &sigs);
    pthread_detach(watcher);
    sy_admin_stop(admin);
    sy_host_stop(&host);
    ret = 0;

Dispose:
    sy_http_server_dispose(&host.http);
Exit:
    if (app != NULL) sy_app_release(app);
    if (host.cluster != NULL) sy_kafka_cluster_destroy(host.cluster);
    if (host.store != NULL) sy_store_close(host.store);
    if (ret == 0 && !check_only && host.store != NULL) sy_info("main", "stopped cleanly");
    free((void *)o->scripts_dir);
    free(o->kafka_props);
    sy_metrics_destroy(host.metrics);
    pthread_mutex_destroy(&host.status_mutex);
    return ret;
}
