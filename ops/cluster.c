/* cluster.c: the fleet thread: heartbeat, registry, steering, shared nonce keys, fleet quota. */
#include "cluster.h"

#include <errno.h>
#include <stdio.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "addr.h"
#include "fleet.h"
#include "log.h"
#include "store.h"

#define MAX_LISTENERS 64

struct cluster {
    struct relay *r;
    pthread_t thread;
    pthread_mutex_t lock; /* guards stop and the snapshot */
    pthread_cond_t cond;
    bool stop;
    char node_id[STORE_MAX_NODE + 1];
    char version[32];
    int64_t started_at;
    struct store *db; /* the thread's own connection */
    /* The registry as last read (under lock). */
    struct fleet snap;
    bool have_snap;
    uint64_t snap_ms;  /* relay_now_ms() of that reading */
    uint64_t prune_ms; /* relay_now_ms() of the last prune of long-dead rows */
    uint32_t dead_after;
    /* For the rates of the row: the previous heartbeat's readings. */
    uint64_t last_ms, last_relayed;
    double last_cpu_s;
    double cpu;
    bool db_down;           /* an episode of failures is logged once, and its end */
    uint64_t beat_failures; /* passes that could not write or read the registry (under lock) */
    size_t nkeys;           /* fleet nonce keys in use (under lock) */
    char steer_desc[512];   /* the steering table as last logged */
    char steer_node[2][FLEET_TRANSPORTS][STORE_MAX_NODE + 1]; /* each target's node id */
};

static double cpu_seconds(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru)) return 0;
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

struct users_ctx {
    json_t *obj;
};

static void add_user(void *ctx, const char *user, uint32_t n)
{
    struct users_ctx *u = ctx;
    if (u->obj) json_object_set_new(u->obj, user, json_integer(n));
}

struct fleet_users {
    char **names;
    uint32_t *counts;
    size_t n, cap;
};

static int take_user(void *ctx, const char *user, uint64_t count)
{
    struct fleet_users *f = ctx;
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 64;
        char **nn = realloc(f->names, cap * sizeof(*nn));
        if (!nn) return 1;
        f->names = nn;
        uint32_t *nc = realloc(f->counts, cap * sizeof(*nc));
        if (!nc) return 1;
        f->counts = nc;
        f->cap = cap;
    }
    if (!(f->names[f->n] = strdup(user))) return 1;
    f->counts[f->n++] = count > UINT32_MAX ? UINT32_MAX : (uint32_t)count;
    return 0;
}

static void fleet_users_free(struct fleet_users *f)
{
    for (size_t i = 0; i < f->n; i++)
        free(f->names[i]);
    free(f->names);
    free(f->counts);
}

/* A failure of the registry: logged once per episode. */
static void db_failed(struct cluster *c, const char *step, const char *err)
{
    pthread_mutex_lock(&c->lock);
    c->beat_failures++;
    pthread_mutex_unlock(&c->lock);
    if (c->db_down) return;
    c->db_down = true;
    tlog(CFG_LOG_WARN, "fleet_unavailable", LF_S("step", step), LF_S("error", err),
         LF_S("effect", "the last steering table holds for cluster.dead_after, then none; the "
                        "last nonce keys and fleet counts stay"));
}

/* This node's row. */
static int beat(struct cluster *c, const struct tern_config *cfg, uint64_t now_ms, char *err)
{
    struct relay_listener_info li[MAX_LISTENERS];
    struct relay_bound b[MAX_LISTENERS];
    size_t n = relay_listeners(c->r, li, MAX_LISTENERS);
    if (n > MAX_LISTENERS) n = MAX_LISTENERS;
    for (size_t i = 0; i < n; i++)
        b[i] = (struct relay_bound){.transport = li[i].transport, .addr = li[i].addr};
    char uerr[OPS_ERR_LEN];
    char *eps = fleet_endpoints_json(cfg, b, n, uerr);
    if (!eps) {
        snprintf(err, STORE_ERR_LEN, "%s", uerr);
        return STORE_INVALID;
    }
    struct users_ctx u = {json_object()};
    relay_user_allocations(c->r, add_user, &u);
    char *users = u.obj ? json_dumps(u.obj, JSON_COMPACT) : NULL;
    json_decref(u.obj);

    uint64_t relayed = relay_relayed(c->r);
    double cpu_s = cpu_seconds();
    double dt = c->last_ms && now_ms > c->last_ms ? (double)(now_ms - c->last_ms) / 1e3 : 0;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    double pps = dt > 0 ? (double)(relayed - c->last_relayed) / dt : 0;
    if (dt > 0) c->cpu = (cpu_s - c->last_cpu_s) / dt / (double)(ncpu > 0 ? ncpu : 1);
    c->last_ms = now_ms;
    c->last_relayed = relayed;
    c->last_cpu_s = cpu_s;

    struct store_node row = {
        .started_at = c->started_at,
        .draining = relay_draining(c->r, NULL),
        .allocations = relay_active(c->r),
        .max_allocations =
            cfg->cluster_max_allocations ? cfg->cluster_max_allocations : cfg->max_total,
        .relayed_pps = pps,
        .cpu = c->cpu,
        .max_cpu = cfg->cluster_max_cpu,
        .poor = relay_poor(c->r),
        .endpoints_json = eps,
        .users_json = users ? users : "{}",
    };
    memcpy(row.node_id, c->node_id, sizeof row.node_id);
    snprintf(row.version, sizeof row.version, "%s", c->version);
    int rc = store_node_beat(c->db, &row, err);
    free(eps);
    free(users);
    return rc;
}

/* A node's endpoint clients of family f (0: IPv4) and transport t can be sent to, or NULL. */
static const struct fleet_endpoint *steer_endpoint(const struct fleet_node *n, int f, int t)
{
    for (size_t k = 0; k < n->nep; k++) {
        const struct fleet_endpoint *ep = &n->ep[k];
        if (ep->transport == t && ep->family == (f ? 6 : 4) && ep->has_addr) return ep;
    }
    return NULL;
}

_Static_assert((int)FLEET_TRANSPORTS == (int)SRV_TRANSPORTS && (int)FLEET_DTLS == (int)SRV_DTLS &&
                   (int)FLEET_TLS == (int)SRV_TLS,
               "fleet_transport indexes srv.steer");

#define STEER_STICKY 0.05 /* a target is kept while at most 5 load points above the best */

/* Where this node steers new Allocates from now on (cluster.redirect). */
static void steer(struct cluster *c, const struct tern_config *cfg, uint64_t now_ms)
{
    struct relay_steer st;
    memset(&st, 0, sizeof st);
    char desc[sizeof c->steer_desc] = "";
    size_t dl = 0;
    bool fresh = c->have_snap && now_ms - c->snap_ms < (uint64_t)cfg->cluster_dead_after * 1000;
    if (cfg->cluster_redirect && fresh) {
        /* Draining is seen by the workers themselves, at once: targets are kept for it. */
        st.always = cfg->cluster_max_cpu > 0 && c->cpu >= cfg->cluster_max_cpu;
        st.above = cfg->cluster_max_allocations;
        for (int f = 0; f < 2; f++)
            for (int t = 0; t < FLEET_TRANSPORTS; t++) {
                /* The best target, unless the last one is still offerable and within
                 * STEER_STICKY of it: equally loaded nodes would otherwise take turns at every
                 * heartbeat (ties are broken by what each heartbeat happened to read). */
                const struct fleet_node *best = NULL, *last = NULL;
                const struct fleet_endpoint *best_ep = NULL, *last_ep = NULL;
                for (size_t i = 0; i < c->snap.n; i++) {
                    const struct fleet_node *n = &c->snap.v[i]; /* ranked: best first */
                    if (n->self || !fleet_offerable(n)) continue;
                    const struct fleet_endpoint *ep = steer_endpoint(n, f, t);
                    if (!ep) continue;
                    if (!best) best = n, best_ep = ep;
                    if (strcmp(n->row.node_id, c->steer_node[f][t]) == 0) last = n, last_ep = ep;
                }
                if (last && last->load <= best->load + STEER_STICKY) best = last, best_ep = last_ep;
                if (!best) {
                    c->steer_node[f][t][0] = '\0';
                    continue;
                }
                memcpy(c->steer_node[f][t], best->row.node_id, sizeof c->steer_node[f][t]);
                st.to[f][t].to = best_ep->addr;
                if (t == SRV_TLS || t == SRV_DTLS)
                    snprintf(st.to[f][t].domain, 256, "%s", best_ep->domain);
                st.set[f][t] = true;
                char a[ADDR_STRLEN];
                int w = snprintf(desc + dl, sizeof desc - dl, "%s%s%d->%s %s", dl ? ", " : "",
                                 fleet_transport_names[t], f ? 6 : 4, best->row.node_id,
                                 addr_str(&best_ep->addr, a));
                if (w > 0 && (size_t)w < sizeof desc - dl) dl += (size_t)w;
            }
    }
    relay_set_steer(c->r, &st);
    if (strcmp(desc, c->steer_desc) != 0) {
        char when[64];
        if (st.always)
            snprintf(when, sizeof when, "%s", "every new allocation (CPU)");
        else if (st.above)
            snprintf(when, sizeof when, "while draining, or from %llu allocations",
                     (unsigned long long)st.above);
        else
            snprintf(when, sizeof when, "%s", "while draining");
        tlog(CFG_LOG_INFO, "fleet_steering", LF_S("targets", desc[0] ? desc : "none"),
             LF_S("when", desc[0] ? when : "never"));
        memcpy(c->steer_desc, desc, sizeof desc);
    }
}

static void shared_state(struct cluster *c, const struct tern_config *cfg, char *err)
{
    if (cfg->cluster_shared_nonce) {
        uint8_t keys[2][STORE_NONCE_KEY_LEN];
        size_t n = 0;
        if (store_nonce_keys(c->db, cfg->cluster_nonce_rotation, keys, 2, &n, err) == STORE_OK &&
            n) {
            struct auth_nonce_key k[2];
            for (size_t i = 0; i < n; i++)
                memcpy(k[i].secret, keys[i], sizeof k[i].secret);
            relay_set_nonce_keys(c->r, k, n);
            OPENSSL_cleanse(k, sizeof k);
            pthread_mutex_lock(&c->lock);
            c->nkeys = n;
            pthread_mutex_unlock(&c->lock);
        } else if (n == 0 && err[0]) {
            db_failed(c, "nonce keys", err);
        }
        OPENSSL_cleanse(keys, sizeof keys);
    } else {
        relay_set_nonce_keys(c->r, NULL, 0);
        pthread_mutex_lock(&c->lock);
        c->nkeys = 0;
        pthread_mutex_unlock(&c->lock);
    }
    struct fleet_users fu = {0};
    if (cfg->max_per_user_fleet) {
        if (store_fleet_users(c->db, c->node_id, cfg->cluster_dead_after, take_user, &fu, err) ==
            STORE_OK)
            relay_set_fleet_users(c->r, (const char *const *)fu.names, fu.counts, fu.n);
        else
            db_failed(c, "fleet allocations per user", err);
    } else {
        relay_set_fleet_users(c->r, NULL, NULL, 0);
    }
    fleet_users_free(&fu);
}

/* Rows of nodes dead for cluster.forget_after go, once a minute (any node may do it: a DELETE
 * of rows nobody writes is idempotent). A failure is only logged: the rows stay shown dead. */
static void prune(struct cluster *c, const struct tern_config *cfg, uint64_t now_ms)
{
    if (!cfg->cluster_forget_after || (c->prune_ms && now_ms - c->prune_ms < 60000)) return;
    c->prune_ms = now_ms;
    uint64_t removed = 0;
    char err[STORE_ERR_LEN] = "";
    if (store_nodes_prune(c->db, cfg->cluster_forget_after, &removed, err) != STORE_OK)
        tlog(CFG_LOG_WARN, "fleet_prune_failed", LF_S("error", err));
    else if (removed)
        tlog(CFG_LOG_INFO, "fleet_pruned", LF_U("nodes", removed),
             LF_U("forget_after", cfg->cluster_forget_after));
}

static void pass(struct cluster *c)
{
    const struct tern_config *cfg = relay_config_get(c->r);
    uint64_t now_ms = relay_now_ms();
    char err[STORE_ERR_LEN] = "";
    if (!c->db)
        c->db = store_open_with(cfg->database, cfg->database_password_file, STORE_EXISTING, err);
    if (!c->db) {
        db_failed(c, "connect", err);
    } else if (beat(c, cfg, now_ms, err) != STORE_OK) {
        db_failed(c, "heartbeat", err);
    } else {
        struct fleet f;
        if (fleet_read(c->db, c->node_id, cfg->cluster_dead_after, &f, err) != STORE_OK) {
            db_failed(c, "read the registry", err);
        } else {
            pthread_mutex_lock(&c->lock);
            fleet_free(&c->snap);
            c->snap = f;
            c->have_snap = true;
            c->snap_ms = now_ms;
            c->dead_after = cfg->cluster_dead_after;
            pthread_mutex_unlock(&c->lock);
            err[0] = '\0';
            prune(c, cfg, now_ms);
            shared_state(c, cfg, err);
            if (c->db_down && !err[0]) {
                c->db_down = false;
                tlog(CFG_LOG_INFO, "fleet_restored", LF_U("nodes", f.n));
            }
        }
    }
    steer(c, cfg, now_ms);
    relay_config_put(c->r, cfg);
}

static void *run(void *arg)
{
    struct cluster *c = arg;
    pthread_mutex_lock(&c->lock);
    while (!c->stop) {
        pthread_mutex_unlock(&c->lock);
        pass(c);
        const struct tern_config *cfg = relay_config_get(c->r);
        uint32_t hb = cfg->cluster_heartbeat;
        relay_config_put(c->r, cfg);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += hb;
        pthread_mutex_lock(&c->lock);
        while (!c->stop && pthread_cond_timedwait(&c->cond, &c->lock, &until) != ETIMEDOUT)
            ;
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

struct cluster *cluster_start(struct relay *r, const char *version, bool *failed)
{
    *failed = false;
    const struct tern_config *cfg = relay_config_get(r);
    bool pg = cfg->database && store_is_uri(cfg->database);
    struct cluster *c = pg ? calloc(1, sizeof(*c)) : NULL;
    if (!pg) {
        relay_config_put(r, cfg);
        return NULL;
    }
    const char *step = "memory";
    if (!c) goto fail;
    c->r = r;
    c->started_at = (int64_t)time(NULL);
    snprintf(c->version, sizeof c->version, "%s", version);
    step = "cluster.node_id (no host name)";
    if (fleet_node_id(cfg, c->node_id)) goto fail;
    step = "thread";
    if (pthread_mutex_init(&c->lock, NULL)) goto fail;
    if (pthread_cond_init(&c->cond, NULL)) {
        pthread_mutex_destroy(&c->lock);
        goto fail;
    }
    relay_config_put(r, cfg);
    cfg = NULL;
    pass(c); /* the row is there, and the fleet's nonce keys in use, before clients come */
    if (pthread_create(&c->thread, NULL, run, c)) {
        pthread_cond_destroy(&c->cond);
        pthread_mutex_destroy(&c->lock);
        if (c->db) store_close(c->db);
        fleet_free(&c->snap);
        step = "thread";
        goto fail;
    }
    tlog(CFG_LOG_INFO, "fleet_joined", LF_S("node", c->node_id), LF_U("nodes", c->snap.n));
    return c;
fail:
    if (cfg) relay_config_put(r, cfg);
    tlog(CFG_LOG_ERROR, "startup_failed", LF_S("step", "fleet registry"), LF_S("error", step));
    free(c);
    *failed = true;
    return NULL;
}

void cluster_stop(struct cluster *c)
{
    if (!c) return;
    pthread_mutex_lock(&c->lock);
    c->stop = true;
    pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->lock);
    pthread_join(c->thread, NULL);
    char err[STORE_ERR_LEN];
    if (c->db && store_node_forget(c->db, c->node_id, err) == STORE_OK)
        tlog(CFG_LOG_INFO, "fleet_left", LF_S("node", c->node_id));
    if (c->db) store_close(c->db);
    fleet_free(&c->snap);
    pthread_cond_destroy(&c->cond);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

json_t *cluster_nodes(struct cluster *c)
{
    pthread_mutex_lock(&c->lock);
    json_t *j = fleet_json(&c->snap, c->dead_after);
    if (j && c->have_snap)
        json_object_set_new(j, "read_age_seconds",
                            json_real((double)(relay_now_ms() - c->snap_ms) / 1e3));
    json_object_set_new(j, "node_id", json_string(c->node_id));
    pthread_mutex_unlock(&c->lock);
    return j;
}

size_t cluster_uris(struct cluster *c, size_t max_nodes, struct ops_uris *u)
{
    pthread_mutex_lock(&c->lock);
    size_t n = c->have_snap ? fleet_uris(&c->snap, max_nodes, u) : 0;
    pthread_mutex_unlock(&c->lock);
    return n;
}

char *cluster_metrics(struct cluster *c)
{
    static const char *const states[] = {"alive", "draining", "full", "dead"};
    uint64_t count[4] = {0};
    pthread_mutex_lock(&c->lock);
    for (size_t i = 0; i < c->snap.n; i++) {
        const struct fleet_node *n = &c->snap.v[i];
        count[!n->alive ? 3 : n->row.draining ? 1 : n->full ? 2 : 0]++;
    }
    bool up = c->have_snap && !c->db_down;
    double age = c->have_snap ? (double)(relay_now_ms() - c->snap_ms) / 1e3 : -1;
    uint64_t failures = c->beat_failures;
    size_t nkeys = c->nkeys;
    pthread_mutex_unlock(&c->lock);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) return NULL;
    fprintf(f, "# HELP tern_fleet_nodes Nodes in the fleet's registry by state, as of this "
               "node's last reading (docs/fleet.md).\n# TYPE tern_fleet_nodes gauge\n");
    for (int k = 0; k < 4; k++)
        fprintf(f, "tern_fleet_nodes{state=\"%s\"} %llu\n", states[k],
                (unsigned long long)count[k]);
    fprintf(f,
            "# HELP tern_fleet_registry_up 1 when the last heartbeat wrote and read the "
            "registry.\n# TYPE tern_fleet_registry_up gauge\ntern_fleet_registry_up %d\n"
            "# HELP tern_fleet_registry_age_seconds Age of the last reading of the registry "
            "(-1: none yet).\n# TYPE tern_fleet_registry_age_seconds gauge\n"
            "tern_fleet_registry_age_seconds %.3f\n"
            "# HELP tern_fleet_nonce_keys Fleet nonce keys in use (0: this process's own key).\n"
            "# TYPE tern_fleet_nonce_keys gauge\ntern_fleet_nonce_keys %zu\n"
            "# HELP tern_fleet_heartbeat_failures_total Heartbeats that could not write or read "
            "the registry.\n# TYPE tern_fleet_heartbeat_failures_total counter\n"
            "tern_fleet_heartbeat_failures_total %llu\n",
            up ? 1 : 0, age, nkeys, (unsigned long long)failures);
    if (fclose(f)) {
        free(text);
        return NULL;
    }
    return text;
}
