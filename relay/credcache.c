/* credcache.c: database-backed credentials without database reads on the workers: a snapshot
 * swapped under a rwlock held only for the swap; a thread polls PRAGMA data_version each
 * second and reloads after any commit (ternctl, the admin API). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "credcache.h"
#include "tern_mem.h"
#include "wire.h"
#include "log.h"
#include "store.h"

#define REFRESH_MS      1000  /* version checks (and the first retry when the database is gone) */
#define WAIT_SLICE_MS   250   /* a LISTEN wait, so a stop is seen this soon */
#define FULL_REFRESH_MS 60000 /* a full reload even without a change seen */
#define RETRY_MAX_MS    5000  /* a reconnect attempt is cheap: come back soon after an outage */

/* One immutable copy of the database's users (of our realm, not disabled) and secrets. */
struct snapshot {
    struct auth_user *users;
    size_t nusers, cap;
    struct store_secret *secrets;
    size_t nsecrets, capsecrets;
    size_t disabled; /* for the log */
    bool oom;        /* a walk stopped early: never install a partial copy */
    /* Open-addressing indexes (slot: user index + 1, 0 empty) by name and by USERHASH, so a
     * lookup costs the same with ten users or a million. */
    uint32_t *by_name, *by_hash;
    size_t nslots; /* power of two, at least twice nusers */
};

static uint64_t name_hash(const uint8_t *p, size_t n)
{
    return fnv1a64(FNV64_INIT, p, n);
}

static uint64_t userhash_hash(const uint8_t *p)
{
    uint64_t h; /* the USERHASH is a SHA-256 already: its first bytes are a hash */
    memcpy(&h, p, sizeof h);
    return h;
}

/* Build the indexes; false when out of memory. */
static bool index_users(struct snapshot *s)
{
    size_t n = 16;
    while (n < 2 * s->nusers)
        n *= 2;
    s->by_name = tern_calloc(n, sizeof(*s->by_name));
    s->by_hash = tern_calloc(n, sizeof(*s->by_hash));
    if (!s->by_name || !s->by_hash) return false;
    s->nslots = n;
    for (size_t i = 0; i < s->nusers; i++) {
        const struct auth_user *e = &s->users[i];
        size_t k = name_hash((const uint8_t *)e->name, e->namelen) & (n - 1);
        while (s->by_name[k])
            k = (k + 1) & (n - 1);
        s->by_name[k] = (uint32_t)(i + 1);
        k = userhash_hash(e->userhash) & (n - 1);
        while (s->by_hash[k])
            k = (k + 1) & (n - 1);
        s->by_hash[k] = (uint32_t)(i + 1);
    }
    return true;
}

struct credcache {
    const struct auth_users *statics; /* under lock: a reload swaps them (credcache_statics) */
    char *realm, *path;               /* copies: the config they came from may be reloaded */
    struct store *db;                 /* NULL: no database configured */
    pthread_rwlock_t lock;
    struct snapshot *cur;
    _Atomic uint64_t generation; /* bumped at every swap: workers re-check allocations */
    int64_t version;
    bool can_wait;            /* the backend notifies changes (PostgreSQL): wait, do not poll */
    _Atomic bool up;          /* the database answered the last check */
    _Atomic uint64_t outages; /* times it went away */
    pthread_t thread;
    bool running;
    pthread_mutex_t stop_lock;
    pthread_cond_t stop_cond;
    bool stop;
};

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = tern_malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static void snapshot_free(struct snapshot *s)
{
    if (!s) return;
    if (s->users) OPENSSL_cleanse(s->users, s->cap * sizeof(*s->users));
    if (s->secrets) OPENSSL_cleanse(s->secrets, s->capsecrets * sizeof(*s->secrets));
    tern_free(s->users);
    tern_free(s->secrets);
    tern_free(s->by_name);
    tern_free(s->by_hash);
    tern_free(s);
}

static int add_user(void *ctx, const struct store_user *u)
{
    struct snapshot *s = ctx;
    if (u->disabled) {
        s->disabled++; /* a disabled user is unknown to authentication: 401 */
        return 0;
    }
    if (s->nusers == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        struct auth_user *p = tern_realloc(s->users, cap * sizeof(*p));
        if (!p) {
            s->oom = true;
            return -1;
        }
        s->users = p;
        s->cap = cap;
    }
    struct auth_user *e = &s->users[s->nusers++];
    memset(e, 0, sizeof(*e));
    e->namelen = strlen(u->name);
    memcpy(e->name, u->name, e->namelen + 1);
    memcpy(e->key_md5, u->key_md5, sizeof(e->key_md5));
    memcpy(e->key_sha256, u->key_sha256, sizeof(e->key_sha256));
    memcpy(e->userhash, u->userhash, sizeof(e->userhash));
    e->max_allocations = u->max_allocations;
    e->bandwidth_bps = u->bandwidth_bps;
    return 0;
}

static int add_secret(void *ctx, const struct store_secret *sec)
{
    struct snapshot *s = ctx;
    if (s->nsecrets == s->capsecrets) {
        size_t cap = s->capsecrets ? s->capsecrets * 2 : 8;
        struct store_secret *p = tern_realloc(s->secrets, cap * sizeof(*p));
        if (!p) {
            s->oom = true;
            return -1;
        }
        s->secrets = p;
        s->capsecrets = cap;
    }
    s->secrets[s->nsecrets++] = *sec;
    return 0;
}

/* Read the whole database into a new snapshot (on the refresher, or at start). */
static struct snapshot *load(struct credcache *c, char err[STORE_ERR_LEN])
{
    struct snapshot *s = tern_calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, STORE_ERR_LEN, "%s: out of memory reading it", c->path);
        return NULL;
    }
    if (store_user_each(c->db, c->realm, add_user, s, err) != STORE_OK || s->oom ||
        store_secret_each(c->db, add_secret, s, err) != STORE_OK || s->oom ||
        (!index_users(s) && (s->oom = true))) {
        if (s->oom) snprintf(err, STORE_ERR_LEN, "%s: out of memory reading it", c->path);
        snapshot_free(s);
        return NULL;
    }
    return s;
}

static void swap_in(struct credcache *c, struct snapshot *s)
{
    pthread_rwlock_wrlock(&c->lock);
    struct snapshot *old = c->cur;
    c->cur = s;
    pthread_rwlock_unlock(&c->lock);
    atomic_fetch_add(&c->generation, 1);
    snapshot_free(old); /* no reader holds it: they copy out under the read lock */
    tlog(CFG_LOG_INFO, "credentials_loaded", LF_S("database", c->path), LF_U("users", s->nusers),
         LF_U("disabled", s->disabled), LF_U("secrets", s->nsecrets));
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Sleep on the stop condition until stop or ms pass; true when asked to stop. */
static bool nap(struct credcache *c, uint64_t ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += (time_t)(ms / 1000);
    until.tv_nsec += (long)(ms % 1000) * 1000000;
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&c->stop_lock);
    if (!c->stop) pthread_cond_timedwait(&c->stop_cond, &c->stop_lock, &until);
    bool stop = c->stop;
    pthread_mutex_unlock(&c->stop_lock);
    return stop;
}

/* The database went away (or came back): logged once per change, and shown by /healthz and
 * /metrics. Authentication goes on from the last snapshot meanwhile. */
static void set_up(struct credcache *c, bool up, const char *why)
{
    if (atomic_exchange(&c->up, up) == up) return;
    if (up) {
        tlog(CFG_LOG_WARN, "database_restored", LF_S("database", c->path));
    } else {
        atomic_fetch_add(&c->outages, 1);
        tlog(CFG_LOG_ERROR, "database_unavailable", LF_S("database", c->path), LF_S("error", why),
             LF_S("serving", "the last credentials loaded"));
    }
}

/* Keep the snapshot current: on a change notification (PostgreSQL LISTEN) or a moved version
 * (checked every second), and in full every FULL_REFRESH_MS as a backstop for a lost
 * notification. While the database is unreachable, retry with backoff (1 s, doubling, 5 s at
 * most) and serve the last snapshot. */
static void *refresher(void *arg)
{
    struct credcache *c = arg;
    uint64_t last_check = mono_ms(), last_full = last_check, backoff = REFRESH_MS;
    for (;;) {
        bool up = atomic_load(&c->up), notified = false;
        if (!up) {
            if (nap(c, backoff)) break;
            backoff = backoff * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : backoff * 2;
        } else if (c->can_wait) {
            int w = store_wait_change(c->db, WAIT_SLICE_MS);
            if (nap(c, 0)) break;
            notified = w == 1;
            /* -1: the connection is lost; the version read below says so and reconnects. */
            if (w == 0 && mono_ms() - last_check < REFRESH_MS) continue;
        } else if (nap(c, REFRESH_MS)) {
            break;
        }
        uint64_t now = mono_ms();
        last_check = now;
        int64_t v = store_data_version(c->db);
        if (v < 0) {
            set_up(c, false, "the version cannot be read (connection lost or database gone)");
            continue;
        }
        bool restored = !atomic_load(&c->up);
        if (restored) {
            set_up(c, true, NULL);
            backoff = REFRESH_MS;
        }
        if (v == c->version && !notified && !restored && now - last_full < FULL_REFRESH_MS)
            continue;
        char err[STORE_ERR_LEN] = "";
        struct snapshot *s = load(c, err);
        if (s) {
            c->version = v;
            last_full = now;
            swap_in(c, s);
        } else {
            /* Keep serving the last good copy; try again. */
            tlog(CFG_LOG_ERROR, "credentials_reload_failed", LF_S("database", c->path),
                 LF_S("error", err));
        }
    }
    return NULL;
}

struct credcache *credcache_open(const struct tern_config *cfg, const struct auth_users *statics)
{
    struct credcache *c = tern_calloc(1, sizeof(*c));
    if (!c) return NULL;
    c->statics = statics;
    pthread_rwlock_init(&c->lock, NULL);
    pthread_mutex_init(&c->stop_lock, NULL);
    pthread_cond_init(&c->stop_cond, NULL);
    c->realm = dup_str(cfg->realm);
    char shown[STORE_ERR_LEN];
    store_display_name(cfg->database, shown, sizeof shown); /* a URI without its password */
    c->path = cfg->database ? dup_str(shown) : NULL;
    atomic_init(&c->up, true);
    if (!c->realm || (cfg->database && !c->path)) {
        tlog(CFG_LOG_ERROR, "out_of_memory", LF_S("where", "credcache_open"));
        credcache_close(c);
        return NULL;
    }
    if (!cfg->database) return c;

    char err[STORE_ERR_LEN] = "";
    c->db = store_open_with(cfg->database, cfg->database_password_file, STORE_EXISTING, err);
    c->can_wait = c->db && store_wait_change(c->db, 0) != -2;
    /* The version before the read: a commit during the read is then seen as a change. */
    if (c->db) c->version = store_data_version(c->db);
    struct snapshot *s = c->db ? load(c, err) : NULL;
    if (!s) {
        tlog(CFG_LOG_ERROR, "database_failed", LF_S("database", c->path), LF_S("error", err));
        credcache_close(c);
        return NULL;
    }
    swap_in(c, s);
    int rc = pthread_create(&c->thread, NULL, refresher, c);
    if (rc) {
        tlog(CFG_LOG_ERROR, "thread_failed", LF_S("what", "credential refresher"),
             LF_S("error", strerror(rc)));
        credcache_close(c);
        return NULL;
    }
    c->running = true;
    return c;
}

void credcache_close(struct credcache *c)
{
    if (!c) return;
    if (c->running) {
        pthread_mutex_lock(&c->stop_lock);
        c->stop = true;
        pthread_cond_signal(&c->stop_cond);
        pthread_mutex_unlock(&c->stop_lock);
        pthread_join(c->thread, NULL);
    }
    store_close(c->db);
    snapshot_free(c->cur);
    pthread_rwlock_destroy(&c->lock);
    pthread_mutex_destroy(&c->stop_lock);
    pthread_cond_destroy(&c->stop_cond);
    tern_free(c->realm);
    tern_free(c->path);
    tern_free(c);
}

int credcache_database(const struct credcache *c, uint64_t *outages)
{
    if (outages) *outages = atomic_load(&c->outages);
    if (!c->db) return -1;
    return atomic_load(&c->up) ? 1 : 0;
}

void credcache_statics(struct credcache *c, const struct auth_users *statics)
{
    pthread_rwlock_wrlock(&c->lock);
    c->statics = statics;
    pthread_rwlock_unlock(&c->lock);
    atomic_fetch_add(&c->generation, 1); /* strict_expiry: a removed user's allocations end */
}

static int lookup(void *ctx, const uint8_t *name, size_t len, bool userhash, struct auth_user *out)
{
    struct credcache *c = ctx;
    int rc = -1;
    pthread_rwlock_rdlock(&c->lock);
    struct auth_creds st = auth_users_creds(c->statics);
    if (st.lookup(st.ctx, name, len, userhash, out) == 0) {
        pthread_rwlock_unlock(&c->lock);
        return 0;
    }
    const struct snapshot *s = c->cur;
    if (s && s->nslots && (!userhash || len == STUN_USERHASH_LEN)) {
        const uint32_t *slots = userhash ? s->by_hash : s->by_name;
        size_t k = (userhash ? userhash_hash(name) : name_hash(name, len)) & (s->nslots - 1);
        for (; slots[k]; k = (k + 1) & (s->nslots - 1)) {
            const struct auth_user *e = &s->users[slots[k] - 1];
            bool hit = userhash ? CRYPTO_memcmp(e->userhash, name, len) == 0
                                : len == e->namelen && memcmp(e->name, name, len) == 0;
            if (hit) {
                *out = *e;
                rc = 0;
                break;
            }
        }
    }
    pthread_rwlock_unlock(&c->lock);
    return rc;
}

static int each_secret(void *ctx, int (*fn)(void *arg, const char *secret), void *arg)
{
    struct credcache *c = ctx;
    int rc = 0;
    pthread_rwlock_rdlock(&c->lock);
    const struct snapshot *s = c->cur;
    for (size_t i = 0; s && i < s->nsecrets && !rc; i++)
        rc = fn(arg, s->secrets[i].secret);
    pthread_rwlock_unlock(&c->lock);
    return rc;
}

static uint64_t generation(void *ctx)
{
    struct credcache *c = ctx;
    return atomic_load(&c->generation);
}

struct auth_creds credcache_creds(struct credcache *c)
{
    return (struct auth_creds){.lookup = lookup,
                               .each_secret = c->db ? each_secret : NULL,
                               .generation = generation,
                               .ctx = c};
}
