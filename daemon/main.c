/* main.c: ternd, the Tern relay daemon: parse options, load the config, bind and start the
 * workers and the ops API, drop privileges, tell systemd, then wait for signals. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "cluster.h"
#include "http.h"
#include "log.h"
#include "relay.h"
#include "service.h"
#include "tern_version.h"

static void usage(FILE *out)
{
    fprintf(out, "Usage: ternd [-c FILE] [--check-config] [--version] [--help]\n"
                 "  -c, --config FILE   configuration file (YAML); without it the embedded\n"
                 "                      default runs (configs/tern.yaml)\n"
                 "      --check-config  validate the configuration and exit (0 valid, 1 not)\n"
                 "  -V, --version       print the version and exit\n"
                 "  -h, --help          this text\n");
}

/* One "counters" event with every counter, so a run's totals reach the log when it ends. */
static void log_counters(const struct srv_counters *srv, const struct relay_counters *io)
{
    struct log_field f[SRV_C_COUNT + RELAY_C_COUNT];
    size_t n = 0;
    for (int i = 0; i < SRV_C_COUNT; i++)
        f[n++] = LF_U(srv_counter_names[i], srv->v[i]);
    for (int i = 0; i < RELAY_C_COUNT; i++)
        f[n++] = LF_U(relay_counter_names[i], io->v[i]);
    log_emit(CFG_LOG_INFO, "counters", f, n);
}

static const char *ready_status(struct relay *r)
{
    static char msg[160];
    const struct tern_config *cfg = relay_config_get(r);
    snprintf(msg, sizeof msg, "READY=1\nSTATUS=relaying: %u workers, %zu listeners",
             relay_workers(r), cfg->nlisten);
    relay_config_put(r, cfg);
    return msg;
}

static void notify_state(const char *state)
{
    service_notify(state);
}

/* SIGHUP: re-read the file. What is wrong (or cannot change live) is logged by the relay, one
 * config_problem event per problem, and the running configuration stays. */
static void reload(struct relay *r, const char *path)
{
    struct relay_reload_result res;
    relay_reload(r, path, NULL, &res);
}

/* The main thread's life once everything runs: signals (SIGTERM/SIGINT stop, SIGHUP reloads
 * the configuration file, SIGUSR1 drains, SIGUSR2 cancels a drain), the systemd watchdog and
 * status, and the drain (whoever started it: a signal or the ops API): exit when the last
 * allocation ends, or at the deadline after ending the rest. Returns when ternd should stop. */
static void serve(struct relay *r, const char *path, const sigset_t *set)
{
    uint64_t wd_ms = service_watchdog_ms(), last_wd = 0, last_status = 0, shown = UINT64_MAX;
    bool closing = false;
    for (;;) {
        uint64_t deadline;
        bool draining = relay_draining(r, &deadline);
        /* Wake often enough for the watchdog (half its interval) and, while draining, to see
         * the last allocation go; workers wake at least once a second (expiry timers). */
        uint64_t tick = draining ? 200 : 1000;
        if (wd_ms && wd_ms / 2 < tick) tick = wd_ms / 2 > 100 ? wd_ms / 2 : 100;
        struct timespec ts = {.tv_sec = (time_t)(tick / 1000),
                              .tv_nsec = (long)(tick % 1000) * 1000000};
        int sig = sigtimedwait(set, NULL, &ts);
        if (sig == SIGINT || sig == SIGTERM) {
            tlog(CFG_LOG_INFO, "stopping", LF_S("signal", sig == SIGINT ? "SIGINT" : "SIGTERM"));
            service_notify("STOPPING=1\nSTATUS=stopping");
            return;
        }
        if (sig == SIGUSR1) {
            const struct tern_config *cfg = relay_config_get(r);
            relay_drain(r, cfg->drain_deadline);
            relay_config_put(r, cfg);
        }
        if (sig == SIGUSR2) relay_drain_cancel(r);
        if (sig == SIGHUP) reload(r, path);

        uint64_t now = relay_now_ms(), active = relay_active(r);
        draining = relay_draining(r, &deadline);
        if (!draining) closing = false;
        if (draining && active == 0) {
            tlog(CFG_LOG_INFO, "drain_finished",
                 LF_S("reason", closing ? "deadline" : "no allocations left"));
            service_notify("STOPPING=1\nSTATUS=drained");
            return;
        }
        if (draining && !closing && now >= deadline) {
            tlog(CFG_LOG_WARN, "drain_deadline", LF_U("allocations", active));
            relay_drain_close(r); /* the workers end them; the next ticks see 0 */
            closing = true;
        }
        if (wd_ms && now - last_wd >= wd_ms / 2) {
            uint64_t age = wd_ms / 2 > 3000 ? wd_ms / 2 : 3000;
            if (relay_alive(r, age)) {
                service_notify("WATCHDOG=1");
                last_wd = now;
            } else {
                tlog(CFG_LOG_ERROR, "worker_stuck", LF_U("max_age_ms", age));
            }
        }
        if (active != shown || now - last_status >= 10000) {
            char msg[96];
            snprintf(msg, sizeof msg, "STATUS=%s: %llu allocations",
                     draining ? "draining" : "relaying", (unsigned long long)active);
            service_notify(msg);
            shown = active;
            last_status = now;
        }
    }
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"check-config", no_argument, NULL, 'k'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *path = NULL;
    int check = 0, opt;
    while ((opt = getopt_long(argc, argv, "c:Vh", opts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            break;
        case 'k':
            check = 1;
            break;
        case 'V':
            printf("ternd %s\n", TERN_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "ternd: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }

    struct tern_config cfg;
    const char *name = path ? path : "<embedded default>";
    int rc = path ? cfg_load(&cfg, path, stderr)
                  : cfg_parse(&cfg, name, cfg_default_yaml, strlen(cfg_default_yaml), stderr);
    if (rc) {
        fprintf(stderr, "ternd: %s: configuration is not valid\n", name);
        return 1;
    }
    if (check) {
        printf("%s: configuration ok\n", name);
        cfg_free(&cfg);
        return 0;
    }
    log_setup(cfg.log_level, cfg.log_format, stderr);
    tlog(CFG_LOG_INFO, "config", LF_S("file", name), LF_S("version", TERN_VERSION));

    /* Signals are taken synchronously by this thread; workers inherit the blocked mask. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct relay *r = relay_open(&cfg); /* takes the configuration */
    if (!r) return 1;
    relay_set_notify(r, notify_state);
    if (relay_start(r)) {
        relay_close(r, NULL, NULL);
        return 1;
    }
    /* The fleet (a PostgreSQL auth.database): this node's registry row is written, and the
     * fleet's nonce keys taken up, before it is announced ready. */
    bool fleet_failed;
    struct cluster *fleet = cluster_start(r, TERN_VERSION, &fleet_failed);
    if (fleet_failed) {
        relay_close(r, NULL, NULL);
        return 1;
    }
    /* The ops/admin HTTP API (ops.listen; null turns it off). A bind failure stops ternd. */
    struct ops_http *ops = NULL;
    const struct tern_config *c = relay_config_get(r);
    int bad = c->ops_listen.sa.sa_family != AF_UNSPEC && !(ops = ops_http_start(r, fleet, path));
    /* Everything is bound: privileges are not needed any more. */
    if (!bad) bad = service_drop_privileges(c->user, c->group);
    relay_config_put(r, c);
    if (bad) {
        ops_http_stop(ops);
        cluster_stop(fleet);
        relay_close(r, NULL, NULL);
        return 1;
    }
    if (service_notify(ready_status(r)))
        tlog(CFG_LOG_WARN, "notify_failed", LF_S("error", strerror(errno)));
    serve(r, path, &set);
    ops_http_stop(ops);
    cluster_stop(fleet);
    struct srv_counters srv;
    struct relay_counters io;
    relay_close(r, &srv, &io);
    log_counters(&srv, &io);
    tlog(CFG_LOG_INFO, "stopped", LF_S("file", name));
    return 0;
}
