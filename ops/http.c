/* http.c: the admin/ops HTTP API: healthz, REST credentials, users and secrets in the database. */
#include "http.h"

#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include <jansson.h>
#include <microhttpd.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "log.h"
#include "addr.h"
#include "qos.h"
#include "relay.h"
#include "rest.h"
#include "store.h"
#include "uris.h"
#include "cluster.h"
#include "fleet.h"
#include "web_assets.h"

#define BODY_MAX (64 * 1024) /* bytes of a request body */
/* Slow clients: MHD's own timeout is per byte (each byte resets it), so a client trickling a
 * header byte every few seconds holds a connection forever. We track every connection and close
 * it when its request (header and body) is not complete REQUEST_DEADLINE_MS after the
 * connection opened or its previous request ended; one address holds at most PER_IP_LIMIT; and
 * when more than CONNECTION_LIMIT - CONNECTION_RESERVE are open, each new connection closes
 * the oldest unfinished one, so a quick request (/healthz, a probe) always finds a slot. */
#define CONNECTION_LIMIT       256
#define CONNECTION_RESERVE     16
#define PER_IP_LIMIT           16
#define REQUEST_DEADLINE_MS    5000
#define SWEEP_MS               200
#define SHED_LOG_MS            10000 /* at most one ops_http_shed line per 10 s of attack */
#define CONNECTION_TIMEOUT     10    /* seconds a connection may idle */
#define FLEET_URI_NODES        3     /* credentials name the best three nodes of a fleet */
#define TTL_DEFAULT            86400
#define TTL_MIN                60
#define TTL_MAX                604800
#define GENERATED_SECRET_BYTES 32
#define MSG_LEN                512

/* One open connection, for the deadline. */
struct conn_slot {
    int fd;
    int64_t since_ms; /* when it opened, or when its previous request ended */
    bool used;
    bool busy;    /* its request is complete and being answered: no deadline */
    bool closing; /* shut down by us; MHD closes it on the next pass */
};

/* The connection guard: the table of connections, the sweeper thread, what it shed. */
struct conn_guard {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_t sweeper;
    bool running;
    bool stop;
    size_t open; /* used and not closing */
    struct conn_slot slots[CONNECTION_LIMIT];
    uint64_t late, evicted, refused; /* closed at the deadline, evicted, refused at a limit */
    uint64_t logged;                 /* late + evicted + refused at the last ops_http_shed */
    int64_t logged_ms;
};

struct ops_http {
    struct MHD_Daemon *daemon;
    struct conn_guard guard;
    /* The running configuration as of this thread's last request: renewed between requests
     * after a reload (sync_config), so a request sees one configuration from start to end. */
    const struct tern_config *cfg;
    uint64_t gen;
    const char *path;        /* the configuration file (POST /api/v1/reload); NULL: embedded */
    struct relay *relay;     /* allocations and metrics are read from its workers */
    struct cluster *cluster; /* the fleet (GET /api/v1/nodes, credentials' URIs); NULL: none */
    uint8_t token_hash[32];  /* SHA-256 of ops.token; compared in constant time */
    bool have_token;
    atomic_bool starting; /* MHD messages while starting explain a bind failure */
    char start_error[MSG_LEN];
};

/* One request: its route and the body gathered across calls. */
struct req {
    struct ops_http *h;
    char *body;
    size_t len;
    bool too_big;
    bool answered;
};

enum route {
    R_NONE,
    R_HEALTHZ,
    R_METRICS,
    R_CREDENTIALS,
    R_USERS,
    R_USER,
    R_SECRETS,
    R_SECRET,
    R_ALLOCS,
    R_ALLOC,
    R_TIMELINE, /* GET /api/v1/allocations/{id}/timeline */
    R_WEB,      /* the ops page: /, /index.html, /app.js, /app.css */
    R_DRAIN,
    R_RELOAD,
    R_NODES /* GET /api/v1/nodes: the fleet's registry (ops/cluster.c) */
};

/* What a handler answers: a status and a body (NULL: none, as for 204). */
struct reply {
    unsigned status;
    json_t *body;
};

/* ---- the connection guard: a deadline per request, eviction under pressure ---- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Shut the socket down (MHD sees EOF and closes the connection on its next pass). The caller
 * holds the lock; MHD's CLOSED notification takes it before the fd is closed, so the fd is
 * still this connection's. */
static void slot_close(struct conn_guard *g, struct conn_slot *c)
{
    shutdown(c->fd, SHUT_RDWR);
    c->closing = true;
    g->open--;
}

static struct conn_slot *conn_slot_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

/* A request is complete (busy) or a keep-alive connection starts waiting for its next one. */
static void conn_mark(struct ops_http *h, struct MHD_Connection *conn, bool busy)
{
    struct conn_slot *c = conn_slot_of(conn);
    if (!c) return;
    pthread_mutex_lock(&h->guard.lock);
    c->busy = busy;
    c->since_ms = now_ms();
    pthread_mutex_unlock(&h->guard.lock);
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    struct conn_guard *g = &((struct ops_http *)cls)->guard;
    pthread_mutex_lock(&g->lock);
    struct conn_slot *c = *socket_context;
    if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        if (c) {
            if (!c->closing) g->open--;
            *c = (struct conn_slot){.fd = -1};
        }
        *socket_context = NULL;
    } else {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        for (size_t i = 0; ci && i < CONNECTION_LIMIT; i++) {
            if (g->slots[i].used) continue;
            g->slots[i] =
                (struct conn_slot){.fd = ci->connect_fd, .since_ms = now_ms(), .used = true};
            g->open++;
            *socket_context = &g->slots[i];
            break;
        }
    }
    pthread_mutex_unlock(&g->lock);
}

/* Accept policy, run before each new connection: above the soft limit, make room by closing
 * the oldest connection whose request is still arriving. */
static enum MHD_Result on_accept(void *cls, const struct sockaddr *addr, socklen_t len)
{
    struct conn_guard *g = &((struct ops_http *)cls)->guard;
    (void)addr;
    (void)len;
    pthread_mutex_lock(&g->lock);
    if (g->open >= CONNECTION_LIMIT - CONNECTION_RESERVE) {
        struct conn_slot *oldest = NULL;
        for (size_t i = 0; i < CONNECTION_LIMIT; i++) {
            struct conn_slot *c = &g->slots[i];
            if (c->used && !c->busy && !c->closing && (!oldest || c->since_ms < oldest->since_ms))
                oldest = c;
        }
        if (oldest) {
            slot_close(g, oldest);
            g->evicted++;
        }
    }
    pthread_mutex_unlock(&g->lock);
    return MHD_YES;
}

/* The sweeper thread: every SWEEP_MS, close the connections past their deadline; log what
 * was shed once per episode (at most every SHED_LOG_MS). */
static void *sweeper(void *arg)
{
    struct conn_guard *g = arg;
    pthread_mutex_lock(&g->lock);
    while (!g->stop) {
        int64_t now = now_ms();
        for (size_t i = 0; i < CONNECTION_LIMIT; i++) {
            struct conn_slot *c = &g->slots[i];
            if (c->used && !c->busy && !c->closing && now - c->since_ms >= REQUEST_DEADLINE_MS) {
                slot_close(g, c);
                g->late++;
            }
        }
        uint64_t shed = g->late + g->evicted + g->refused;
        if (shed != g->logged && (g->logged_ms == 0 || now - g->logged_ms >= SHED_LOG_MS)) {
            tlog(CFG_LOG_WARN, "ops_http_shed", LF_U("late", g->late), LF_U("evicted", g->evicted),
                 LF_U("refused", g->refused), LF_U("open", g->open),
                 LF_U("deadline_ms", REQUEST_DEADLINE_MS), LF_U("per_ip_limit", PER_IP_LIMIT));
            g->logged = shed;
            g->logged_ms = now;
        }
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += SWEEP_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&g->wake, &g->lock, &until);
    }
    pthread_mutex_unlock(&g->lock);
    return NULL;
}

static int guard_init(struct conn_guard *g)
{
    pthread_condattr_t ca;
    if (pthread_mutex_init(&g->lock, NULL)) return -1;
    if (pthread_condattr_init(&ca) || pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) ||
        pthread_cond_init(&g->wake, &ca)) {
        pthread_mutex_destroy(&g->lock);
        return -1;
    }
    pthread_condattr_destroy(&ca);
    for (size_t i = 0; i < CONNECTION_LIMIT; i++)
        g->slots[i].fd = -1;
    return 0;
}

static void guard_stop(struct conn_guard *g)
{
    if (!g->running) return;
    pthread_mutex_lock(&g->lock);
    g->stop = true;
    pthread_cond_signal(&g->wake);
    pthread_mutex_unlock(&g->lock);
    pthread_join(g->sweeper, NULL);
    g->running = false;
}

static void guard_destroy(struct conn_guard *g)
{
    pthread_cond_destroy(&g->wake);
    pthread_mutex_destroy(&g->lock);
}

/* ---- memory: everything jansson and the responses held is wiped before it is freed ---- */

static void wipe_free(void *p)
{
    if (!p) return;
    OPENSSL_cleanse(p, malloc_usable_size(p));
    free(p);
}

static void response_free(void *cls)
{
    wipe_free(cls);
}

/* ---- JSON helpers ---- */

static struct reply error_reply(unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static struct reply error_reply(unsigned status, const char *fmt, ...)
{
    char msg[MSG_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return (struct reply){status, json_pack("{s:o}", "error", ops_json_text(msg))};
}

static void format_time(int64_t t, char out[32])
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm) || !strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(out, 32, "%" PRId64, t);
}

/* A non-empty string member without NUL bytes: 1 and *out, 0 when absent, -1 otherwise. */
static int get_text(json_t *in, const char *key, const char **out)
{
    json_t *v = json_object_get(in, key);
    if (!v) return 0;
    if (!json_is_string(v) || json_string_length(v) == 0 ||
        strlen(json_string_value(v)) != json_string_length(v))
        return -1;
    *out = json_string_value(v);
    return 1;
}

/* An integer member in [min, max]: 1 and *out, 0 when absent, -1 otherwise. */
static int get_int(json_t *in, const char *key, json_int_t min, json_int_t max, json_int_t *out)
{
    json_t *v = json_object_get(in, key);
    if (!v) return 0;
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
        return -1;
    *out = json_integer_value(v);
    return 1;
}

/* The first member of in not in the NULL-terminated list allowed, else NULL: a typo such as
 * "max_allocation" must not silently give the default. */
static const char *unknown_field(json_t *in, const char *const *allowed)
{
    const char *key;
    json_t *v;
    json_object_foreach(in, key, v)
    {
        size_t i = 0;
        while (allowed[i] && strcmp(allowed[i], key) != 0)
            i++;
        if (!allowed[i]) return key;
    }
    return NULL;
}

/* ---- the database: a connection of our own per call, so ternd's reader sees our commits ---- */

static struct store *open_db(const struct ops_http *h, struct reply *r)
{
    if (!h->cfg->database) {
        *r = error_reply(409, "no credential database configured (auth.database)");
        return NULL;
    }
    char err[STORE_ERR_LEN] = "";
    struct store *s =
        store_open_with(h->cfg->database, h->cfg->database_password_file, STORE_EXISTING, err);
    if (!s) *r = error_reply(500, "%s", err[0] ? err : "cannot open the credential database");
    return s;
}

static struct reply store_error(int rc, const char *err, const char *doing)
{
    if (rc == STORE_INVALID) return error_reply(400, "%s", err[0] ? err : "invalid value");
    return error_reply(500, "%s", err[0] ? err : doing);
}

/* ---- POST /api/v1/credentials ---- */

static struct reply post_credentials(const struct ops_http *h, json_t *in)
{
    const struct tern_config *cfg = h->cfg;
    const char *user = NULL;
    json_int_t ttl = TTL_DEFAULT;
    int g = get_text(in, "user", &user);
    if (g == 0) return error_reply(400, "missing \"user\" (the user ID the credential is for)");
    if (g < 0) return error_reply(400, "\"user\" must be a non-empty string");
    char why[OPS_ERR_LEN];
    if (ops_name_refused(user, why)) return error_reply(400, "\"user\": %s", why);
    if (get_int(in, "ttl", TTL_MIN, TTL_MAX, &ttl) < 0)
        return error_reply(400, "\"ttl\" must be an integer number of seconds from %d to %d",
                           TTL_MIN, TTL_MAX);

    /* The newest secret: the config's last one (rotation lists old then new), else the
     * database's newest. */
    char secret[STORE_MAX_SECRET + 1];
    struct reply r = {0};
    if (cfg->nsecrets > 0) {
        const char *last = cfg->secrets[cfg->nsecrets - 1];
        if (strlen(last) > STORE_MAX_SECRET)
            return error_reply(500, "auth.secrets: the last secret is longer than %d bytes",
                               STORE_MAX_SECRET);
        snprintf(secret, sizeof secret, "%s", last);
    } else if (!cfg->database) {
        return error_reply(409, "no REST secret configured: set auth.secrets or auth.database");
    } else {
        struct store *s = open_db(h, &r);
        if (!s) return r;
        char err[OPS_ERR_LEN];
        int rc = ops_newest_db_secret(s, secret, err);
        store_close(s);
        if (rc == OPS_NO_SECRET)
            return error_reply(409, "no REST secret configured: auth.secrets is empty and the "
                                    "database has none (add one with POST /api/v1/secrets)");
        if (rc != OPS_OK) return error_reply(500, "%s", err);
    }

    struct ops_credential cred;
    int rc = ops_mint_credential(secret, cfg->rest_separator[0], user, (uint64_t)ttl,
                                 (int64_t)time(NULL), AUTH_REST_HMAC_SHA1, &cred);
    OPENSSL_cleanse(secret, sizeof secret);
    if (rc == OPS_TOO_LONG)
        return error_reply(400, "\"user\" is too long: the username would exceed %d bytes",
                           STUN_MAX_USERNAME);
    if (rc != OPS_OK) return error_reply(500, "computing the REST password failed");

    /* In a fleet, the best nodes' URIs (least loaded first, this one among them when it is
     * offerable); else, or while the registry is unknown, this node's listeners. */
    struct ops_uris *u = calloc(1, sizeof *u);
    char err[OPS_ERR_LEN] = "";
    bool fleet = u && h->cluster && cluster_uris(h->cluster, FLEET_URI_NODES, u) > 0;
    if (!fleet && (!u || ops_listener_uris(cfg, u, err))) {
        free(u);
        OPENSSL_cleanse(&cred, sizeof cred);
        return error_reply(500, "%s", err[0] ? err : "out of memory");
    }
    json_t *uris = json_array();
    for (size_t i = 0; uris && i < u->n; i++)
        json_array_append_new(uris, json_string(u->v[i]));
    free(u);
    r.status = 200;
    r.body = json_pack("{s:o, s:s, s:I, s:o}", "username", ops_json_text(cred.username), "password",
                       cred.password, "ttl", ttl, "uris", uris);
    OPENSSL_cleanse(&cred, sizeof cred);
    return r;
}

/* ---- the fleet ---- */

static struct reply get_nodes(const struct ops_http *h)
{
    if (!h->cluster)
        return error_reply(409, "this node is not in a fleet: the registry needs a PostgreSQL "
                                "auth.database (a postgresql:// URI)");
    json_t *j = cluster_nodes(h->cluster);
    if (!j) return error_reply(500, "out of memory");
    return (struct reply){200, j};
}

/* ---- users ---- */

static json_t *user_json(const struct store_user *u)
{
    char when[32];
    format_time(u->created, when);
    return json_pack("{s:o, s:o, s:I, s:I, s:b, s:s}", "realm", ops_json_text(u->realm), "name",
                     ops_json_text(u->name), "max_allocations", (json_int_t)u->max_allocations,
                     "bandwidth_bps", (json_int_t)u->bandwidth_bps, "disabled", u->disabled,
                     "created", when);
}

static int list_user_fn(void *ctx, const struct store_user *u)
{
    json_array_append_new(ctx, user_json(u));
    return 0;
}

struct find_user {
    const char *name;
    struct store_user u;
    bool found;
};

static int find_user_fn(void *ctx, const struct store_user *u)
{
    struct find_user *f = ctx;
    if (strcmp(u->name, f->name) == 0) {
        f->u = *u;
        f->found = true;
    }
    return f->found;
}

/* 1 found (into *f), 0 absent, -1 failed (*r set). */
static int find_user(const struct ops_http *h, struct store *s, struct find_user *f,
                     struct reply *r)
{
    char err[STORE_ERR_LEN] = "";
    f->found = false;
    int rc = store_user_each(s, h->cfg->realm, find_user_fn, f, err);
    if (rc != STORE_OK) {
        *r = store_error(rc, err, "reading the users failed");
        return -1;
    }
    return f->found;
}

static struct reply get_users(const struct ops_http *h)
{
    struct reply r = {0};
    struct store *s = open_db(h, &r);
    if (!s) return r;
    json_t *list = json_array();
    char err[STORE_ERR_LEN] = "";
    int rc = store_user_each(s, h->cfg->realm, list_user_fn, list, err);
    store_close(s);
    if (rc != STORE_OK) {
        json_decref(list);
        return store_error(rc, err, "reading the users failed");
    }
    return (struct reply){200, list};
}

/* The optional limits of a user body. 0, or -1 with *r set. */
static int get_limits(json_t *in, json_int_t *max_alloc, json_int_t *bandwidth, bool *any,
                      struct reply *r)
{
    int a = get_int(in, "max_allocations", 0, UINT32_MAX, max_alloc);
    int b = get_int(in, "bandwidth_bps", 0, INT64_MAX, bandwidth);
    if (a < 0) {
        *r = error_reply(400,
                         "\"max_allocations\" must be an integer from 0 (the config's "
                         "allocation.max_per_user) to %" PRIu32,
                         UINT32_MAX);
        return -1;
    }
    if (b < 0) {
        *r = error_reply(400, "\"bandwidth_bps\" must be a non-negative integer (bytes per "
                              "second; 0 is unlimited)");
        return -1;
    }
    *any = a > 0 || b > 0;
    return 0;
}

static struct reply post_users(const struct ops_http *h, json_t *in)
{
    const char *name = NULL, *password = NULL;
    json_int_t max_alloc = 0, bandwidth = 0;
    bool any;
    struct reply r = {0};
    int g = get_text(in, "name", &name);
    if (g <= 0)
        return error_reply(400, "%s",
                           g ? "\"name\" must be a non-empty string" : "missing \"name\"");
    char why[OPS_ERR_LEN];
    if (ops_name_refused(name, why)) return error_reply(400, "\"name\": %s", why);
    g = get_text(in, "password", &password);
    if (g <= 0)
        return error_reply(400, "%s",
                           g ? "\"password\" must be a non-empty string" : "missing \"password\"");
    if (get_limits(in, &max_alloc, &bandwidth, &any, &r)) return r;

    struct store *s = open_db(h, &r);
    if (!s) return r;
    char err[STORE_ERR_LEN] = "";
    int rc = store_user_add(s, h->cfg->realm, name, password, (uint32_t)max_alloc,
                            (uint64_t)bandwidth, err);
    store_close(s);
    if (rc == STORE_EXISTS)
        return error_reply(409, "user %s already exists in realm %s", name, h->cfg->realm);
    if (rc != STORE_OK) return store_error(rc, err, "adding the user failed");
    return (struct reply){201, json_pack("{s:o}", "name", ops_json_text(name))};
}

static struct reply put_user(const struct ops_http *h, const char *name, json_t *in)
{
    const char *password = NULL;
    json_int_t max_alloc = 0, bandwidth = 0;
    bool limits;
    struct reply r = {0};
    json_t *dis = json_object_get(in, "disabled");
    if (get_text(in, "password", &password) < 0)
        return error_reply(400, "\"password\" must be a non-empty string");
    if (dis && !json_is_boolean(dis)) return error_reply(400, "\"disabled\" must be true or false");
    if (get_limits(in, &max_alloc, &bandwidth, &limits, &r)) return r;

    struct store *s = open_db(h, &r);
    if (!s) return r;
    struct find_user f = {.name = name};
    int found = find_user(h, s, &f, &r);
    char err[STORE_ERR_LEN] = "";
    int rc = STORE_OK;
    if (found == 0) r = error_reply(404, "no user %s in realm %s", name, h->cfg->realm);
    if (found <= 0) goto out;
    if (password && (rc = store_user_passwd(s, h->cfg->realm, name, password, err)) != STORE_OK)
        goto failed;
    if (dis &&
        (rc = store_user_set_disabled(s, h->cfg->realm, name, json_is_true(dis), err)) != STORE_OK)
        goto failed;
    if (limits) {
        uint32_t m =
            json_object_get(in, "max_allocations") ? (uint32_t)max_alloc : f.u.max_allocations;
        uint64_t b = json_object_get(in, "bandwidth_bps") ? (uint64_t)bandwidth : f.u.bandwidth_bps;
        if ((rc = store_user_set_limits(s, h->cfg->realm, name, m, b, err)) != STORE_OK)
            goto failed;
    }
    found = find_user(h, s, &f, &r);
    if (found == 0) r = error_reply(404, "no user %s in realm %s", name, h->cfg->realm);
    if (found > 0) r = (struct reply){200, user_json(&f.u)};
    goto out;
failed:
    r = rc == STORE_NOT_FOUND ? error_reply(404, "no user %s in realm %s", name, h->cfg->realm)
                              : store_error(rc, err, "updating the user failed");
out:
    store_close(s);
    OPENSSL_cleanse(&f.u, sizeof f.u);
    return r;
}

static struct reply delete_user(const struct ops_http *h, const char *name)
{
    struct reply r = {0};
    struct store *s = open_db(h, &r);
    if (!s) return r;
    char err[STORE_ERR_LEN] = "";
    int rc = store_user_del(s, h->cfg->realm, name, err);
    store_close(s);
    if (rc == STORE_NOT_FOUND)
        return error_reply(404, "no user %s in realm %s", name, h->cfg->realm);
    if (rc != STORE_OK) return store_error(rc, err, "deleting the user failed");
    return (struct reply){204, NULL};
}

/* ---- secrets ---- */

static int list_secret_fn(void *ctx, const struct store_secret *sec)
{
    /* The first 4 characters, fewer for a short secret so at most half of it shows. */
    size_t chars = 0, len = 0;
    for (const char *p = sec->secret; *p; p++)
        if (((unsigned char)*p & 0xC0) != 0x80) chars++;
    size_t show = chars / 2 < 4 ? chars / 2 : 4;
    for (size_t k = 0; k < show; k++) {
        len++;
        while (((unsigned char)sec->secret[len] & 0xC0) == 0x80)
            len++;
    }
    char prefix[4 * 4 + 1];
    snprintf(prefix, sizeof prefix, "%.*s", (int)len, sec->secret);
    char when[32];
    format_time(sec->created, when);
    json_array_append_new(ctx, json_pack("{s:I, s:s, s:o}", "id", (json_int_t)sec->id, "created",
                                         when, "prefix", ops_json_text(prefix)));
    OPENSSL_cleanse(prefix, sizeof prefix);
    return 0;
}

static struct reply get_secrets(const struct ops_http *h)
{
    struct reply r = {0};
    struct store *s = open_db(h, &r);
    if (!s) return r;
    json_t *list = json_array();
    char err[STORE_ERR_LEN] = "";
    int rc = store_secret_each(s, list_secret_fn, list, err);
    store_close(s);
    if (rc != STORE_OK) {
        json_decref(list);
        return store_error(rc, err, "reading the secrets failed");
    }
    return (struct reply){200, list};
}

static struct reply post_secrets(const struct ops_http *h, json_t *in)
{
    const char *given = NULL;
    struct reply r = {0};
    int g = get_text(in, "secret", &given);
    if (g < 0)
        return error_reply(400, "\"secret\" must be a non-empty string (or omit it to "
                                "generate one)");
    if (given && strlen(given) > STORE_MAX_SECRET)
        return error_reply(400, "\"secret\" is longer than %d bytes", STORE_MAX_SECRET);

    char secret[STORE_MAX_SECRET + 1];
    if (given)
        snprintf(secret, sizeof secret, "%s", given);
    else {
        uint8_t raw[GENERATED_SECRET_BYTES];
        if (RAND_bytes(raw, sizeof raw) != 1) return error_reply(500, "generating a secret failed");
        EVP_EncodeBlock((unsigned char *)secret, raw, (int)sizeof raw);
        OPENSSL_cleanse(raw, sizeof raw);
    }
    struct store *s = open_db(h, &r);
    if (s) {
        char err[STORE_ERR_LEN] = "";
        int64_t id = 0;
        int rc = store_secret_add(s, secret, &id, err);
        store_close(s);
        if (rc == STORE_EXISTS)
            r = error_reply(409, "this secret is already stored");
        else if (rc != STORE_OK)
            r = store_error(rc, err, "adding the secret failed");
        else if (given)
            r = (struct reply){201, json_pack("{s:I}", "id", (json_int_t)id)};
        else
            r = (struct reply){201,
                               json_pack("{s:I, s:s}", "id", (json_int_t)id, "secret", secret)};
    }
    OPENSSL_cleanse(secret, sizeof secret);
    return r;
}

static struct reply delete_secret(const struct ops_http *h, const char *arg)
{
    int64_t id = 0;
    for (const char *p = arg; *p; p++) {
        if (*p < '0' || *p > '9' || id > (INT64_MAX - (*p - '0')) / 10) {
            id = 0;
            break;
        }
        id = id * 10 + (*p - '0');
    }
    if (id <= 0)
        return error_reply(400, "the secret id is a positive integer (see GET /api/v1/secrets)");
    struct reply r = {0};
    struct store *s = open_db(h, &r);
    if (!s) return r;
    char err[STORE_ERR_LEN] = "";
    int rc = store_secret_del(s, id, err);
    store_close(s);
    if (rc == STORE_NOT_FOUND) return error_reply(404, "no secret %" PRId64, id);
    if (rc != STORE_OK) return store_error(rc, err, "deleting the secret failed");
    return (struct reply){204, NULL};
}

/* ---- routing, authorization, responses ---- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Percent-decode a path segment into out (cap bytes). 0, or -1: a bad escape, a NUL byte, or
 * too long. */
static int pct_decode(const char *in, char *out, size_t cap)
{
    size_t o = 0;
    for (; *in; in++) {
        int c = (unsigned char)*in;
        if (c == '%') {
            int hi = hexval(in[1]), lo = hi < 0 ? -1 : hexval(in[2]);
            if (lo < 0) return -1;
            c = hi * 16 + lo;
            in += 2;
            if (c == 0) return -1;
        }
        if (o + 1 >= cap) return -1;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return 0;
}

/* The route of a path, and for /users/{name} and /secrets/{id} the raw last segment. */
static enum route route_of(const char *url, const char **arg)
{
    static const struct {
        const char *prefix;
        enum route exact, with_arg;
    } routes[] = {
        {"/api/v1/credentials", R_CREDENTIALS, R_NONE},
        {"/api/v1/users", R_USERS, R_USER},
        {"/api/v1/secrets", R_SECRETS, R_SECRET},
        {"/api/v1/allocations", R_ALLOCS, R_ALLOC},
        {"/api/v1/drain", R_DRAIN, R_NONE},
        {"/api/v1/reload", R_RELOAD, R_NONE},
        {"/api/v1/nodes", R_NODES, R_NONE},
    };
    static const char tl_prefix[] = "/api/v1/allocations/", tl_suffix[] = "/timeline";
    *arg = NULL;
    if (strcmp(url, "/healthz") == 0) return R_HEALTHZ;
    if (strcmp(url, "/") == 0) {
        *arg = "/index.html";
        return R_WEB;
    }
    for (unsigned i = 0; i < web_nassets; i++)
        if (strcmp(url, web_assets[i].path) == 0) {
            *arg = url;
            return R_WEB;
        }
    size_t ul = strlen(url), pl = sizeof tl_prefix - 1, sl = sizeof tl_suffix - 1;
    if (ul > pl + sl && strncmp(url, tl_prefix, pl) == 0 && strcmp(url + ul - sl, tl_suffix) == 0 &&
        memchr(url + pl, '/', ul - pl - sl) == NULL) {
        *arg = url + pl; /* the id, up to the '/' of the suffix */
        return R_TIMELINE;
    }
    if (strcmp(url, "/metrics") == 0) return R_METRICS;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        size_t n = strlen(routes[i].prefix);
        if (strncmp(url, routes[i].prefix, n) != 0) continue;
        if (url[n] == '\0') return routes[i].exact;
        if (url[n] == '/' && url[n + 1] && !strchr(url + n + 1, '/') && routes[i].with_arg) {
            *arg = url + n + 1;
            return routes[i].with_arg;
        }
    }
    return R_NONE;
}

static const char *allowed_methods(enum route r)
{
    switch (r) {
    case R_HEALTHZ:
        return "GET, HEAD";
    case R_METRICS:
        return "GET, HEAD";
    case R_ALLOCS:
        return "GET, HEAD";
    case R_ALLOC:
        return "GET, HEAD, DELETE";
    case R_TIMELINE:
        return "GET, HEAD";
    case R_WEB:
        return "GET, HEAD";
    case R_CREDENTIALS:
        return "POST";
    case R_USERS:
        return "GET, POST";
    case R_USER:
        return "PUT, DELETE";
    case R_SECRETS:
        return "GET, POST";
    case R_SECRET:
        return "DELETE";
    case R_DRAIN:
        return "GET, HEAD, POST, DELETE";
    case R_RELOAD:
        return "POST";
    case R_NODES:
        return "GET, HEAD";
    case R_NONE:
        break;
    }
    return "";
}

static bool method_allowed(enum route r, const char *method)
{
    const char *list = allowed_methods(r);
    size_t n = strlen(method);
    for (const char *p = list; (p = strstr(p, method)) != NULL; p += n)
        if ((p == list || p[-1] == ' ') && (p[n] == '\0' || p[n] == ',')) return true;
    return false;
}

static bool token_ok(const struct ops_http *h, struct MHD_Connection *conn)
{
    const char *v =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h->have_token || !v || strncasecmp(v, "Bearer ", 7) != 0) return false;
    v += 7;
    while (*v == ' ')
        v++;
    uint8_t md[32];
    unsigned mdlen = 0;
    if (!EVP_Digest(v, strlen(v), md, &mdlen, EVP_sha256(), NULL) || mdlen != sizeof md)
        return false;
    bool ok = CRYPTO_memcmp(md, h->token_hash, sizeof md) == 0;
    OPENSSL_cleanse(md, sizeof md);
    return ok;
}

static void remote_addr(struct MHD_Connection *conn, union stun_addr *a)
{
    memset(a, 0, sizeof *a);
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (!ci || !ci->client_addr) return;
    if (ci->client_addr->sa_family == AF_INET)
        memcpy(&a->v4, ci->client_addr, sizeof a->v4);
    else if (ci->client_addr->sa_family == AF_INET6)
        memcpy(&a->v6, ci->client_addr, sizeof a->v6);
}

/* Queue the reply (its body is consumed) and log the call unless it is /healthz. */
static enum MHD_Result respond(struct MHD_Connection *conn, struct req *rq, const char *method,
                               const char *url, enum route route, struct reply rep)
{
    char *text = NULL;
    rq->answered = true;
    conn_mark(rq->h, conn, true);
    if (rep.body) {
        text = json_dumps(rep.body, JSON_COMPACT | JSON_REAL_PRECISION(9));
        json_decref(rep.body);
    } else if (rep.status != 204) {
        rep.status = 500; /* a handler's json_pack failed: out of memory */
    }
    if (rep.status == 500 && !text) text = strdup("{\"error\":\"out of memory\"}");
    struct MHD_Response *res;
    if (text)
        res = MHD_create_response_from_buffer_with_free_callback(strlen(text), text, response_free);
    else
        res = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (!res) {
        wipe_free(text);
        return MHD_NO;
    }
    if (text) MHD_add_response_header(res, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    MHD_add_response_header(res, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (rep.status == 405)
        MHD_add_response_header(res, MHD_HTTP_HEADER_ALLOW, allowed_methods(route));
    if (rep.status == 401)
        MHD_add_response_header(res, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"tern\"");
    enum MHD_Result ret = MHD_queue_response(conn, rep.status, res);
    MHD_destroy_response(res);
    if (route != R_HEALTHZ && !(route == R_ALLOCS || route == R_TIMELINE || route == R_NODES ||
                                (route == R_ALLOC && strcmp(method, "DELETE")))) {
        union stun_addr from;
        remote_addr(conn, &from);
        tlog(rep.status >= 500 ? CFG_LOG_ERROR : CFG_LOG_INFO, "admin_call", LF_S("method", method),
             LF_S("path", url), LF_U("status", rep.status), LF_A("remote", &from));
    }
    return ret;
}

/* ---- ops reads: allocations and metrics ---- */

/* An allocation id from the path: decimal digits only. */
static bool parse_id(const char *arg, uint64_t *id)
{
    if (!arg || !*arg || strlen(arg) > 20) return false;
    for (const char *p = arg; *p; p++)
        if (*p < '0' || *p > '9') return false;
    errno = 0;
    unsigned long long v = strtoull(arg, NULL, 10);
    if (errno) return false;
    *id = v;
    return true;
}

static struct reply get_allocations(const struct ops_http *h)
{
    json_t *arr = relay_allocations(h->relay);
    if (!arr) return (struct reply){500, NULL};
    char now[32];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    qos_format_time((int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec, now);
    return (struct reply){200, json_pack("{s:s,s:I,s:o}", "sampled_at", now, "count",
                                         (json_int_t)json_array_size(arr), "allocations", arr)};
}

static struct reply allocation_call(const struct ops_http *h, const char *method, const char *arg)
{
    uint64_t id;
    if (!parse_id(arg, &id))
        return error_reply(400,
                           "an allocation id is a decimal number (as in GET /api/v1/allocations)");
    if (strcmp(method, "DELETE") == 0) {
        if (relay_close_allocation(h->relay, id)) return error_reply(404, "no allocation %s", arg);
        return (struct reply){204, NULL};
    }
    json_t *a = relay_allocation(h->relay, id);
    if (!a) return error_reply(404, "no allocation %s", arg);
    return (struct reply){200, a};
}

/* GET /api/v1/allocations/{id}/timeline; arg: the id, ended by "/timeline". */
static struct reply timeline_call(const struct ops_http *h, const char *arg)
{
    char idtext[24];
    uint64_t id;
    size_t n = strcspn(arg, "/");
    if (n >= sizeof idtext) n = sizeof idtext - 1; /* too long: parse_id refuses it */
    memcpy(idtext, arg, n);
    idtext[n] = '\0';
    if (strspn(arg, "0123456789") != strcspn(arg, "/") || !parse_id(idtext, &id))
        return error_reply(400,
                           "an allocation id is a decimal number (as in GET /api/v1/allocations)");
    json_t *t = relay_allocation_timeline(h->relay, id);
    if (!t) return error_reply(404, "no allocation %s", idtext);
    return (struct reply){200, t};
}

/* GET /metrics: Prometheus text (not JSON), open like /healthz: it names no allocation,
 * user or address. */
static enum MHD_Result respond_metrics(const struct ops_http *h, struct MHD_Connection *conn,
                                       struct req *rq)
{
    rq->answered = true;
    conn_mark(rq->h, conn, true);
    size_t len = 0;
    char *text = relay_metrics(h->relay, &len);
    char *fleet = text && h->cluster ? cluster_metrics(h->cluster) : NULL;
    if (fleet) { /* the fleet's lines after the relay's */
        size_t fl = strlen(fleet);
        char *both = realloc(text, len + fl + 1);
        if (both) {
            memcpy(both + len, fleet, fl + 1);
            text = both;
            len += fl;
        }
        free(fleet);
    }
    struct MHD_Response *res =
        text ? MHD_create_response_from_buffer_with_free_callback(len, text, free)
             : MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (!res) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(res, MHD_HTTP_HEADER_CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8");
    MHD_add_response_header(res, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    enum MHD_Result ret = MHD_queue_response(conn, text ? 200 : 500, res);
    MHD_destroy_response(res);
    return ret;
}

/* The ops page's files (open: they hold no data; the page asks for the token the API
 * wants). A strict Content-Security-Policy: nothing but these files, no inline script or
 * style, no frames, requests only to this origin. */
#define WEB_CSP                                                                                    \
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "              \
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
static enum MHD_Result respond_web(struct MHD_Connection *conn, struct req *rq, const char *path)
{
    rq->answered = true;
    conn_mark(rq->h, conn, true);
    const struct web_asset *a = NULL;
    for (unsigned i = 0; i < web_nassets && !a; i++)
        if (strcmp(path, web_assets[i].path) == 0) a = &web_assets[i];
    if (!a) return MHD_NO; /* route_of only routes known paths here */
    struct MHD_Response *res =
        MHD_create_response_from_buffer(a->len, (void *)a->data, MHD_RESPMEM_PERSISTENT);
    if (!res) return MHD_NO;
    MHD_add_response_header(res, MHD_HTTP_HEADER_CONTENT_TYPE, a->type);
    MHD_add_response_header(res, "Content-Security-Policy", WEB_CSP);
    MHD_add_response_header(res, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(res, "Referrer-Policy", "no-referrer");
    MHD_add_response_header(res, "Cross-Origin-Opener-Policy", "same-origin");
    MHD_add_response_header(res, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    enum MHD_Result ret = MHD_queue_response(conn, 200, res);
    MHD_destroy_response(res);
    return ret;
}

/* The checks a request passes before its body is read: route, method, token. */
static bool early_reply(const struct ops_http *h, struct MHD_Connection *conn, enum route route,
                        const char *method, struct reply *r)
{
    if (route == R_NONE) {
        *r = error_reply(404, "no such endpoint");
        return true;
    }
    if (!method_allowed(route, method)) {
        *r = error_reply(405, "method %s is not allowed here (allowed: %s)", method,
                         allowed_methods(route));
        return true;
    }
    if (route == R_HEALTHZ) {
        /* A draining node answers 503 so that load balancers stop sending it new clients. */
        json_int_t gen = (json_int_t)relay_generation(h->relay);
        if (relay_draining(h->relay, NULL))
            *r = (struct reply){503,
                                json_pack("{s:s,s:I,s:I}", "status", "draining", "allocations",
                                          (json_int_t)relay_active(h->relay), "generation", gen)};
        else
            *r = (struct reply){200, json_pack("{s:s,s:I}", "status", "ok", "generation", gen)};
        /* The database is not the node's health: calls and known users go on without it. */
        int db = relay_database(h->relay, NULL);
        if (db >= 0 && r->body)
            json_object_set_new(r->body, "database", json_string(db ? "up" : "down"));
        return true;
    }
    bool read_only = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    if ((route == R_ALLOCS || route == R_ALLOC || route == R_TIMELINE || route == R_DRAIN ||
         route == R_NODES) &&
        read_only && !h->have_token)
        return false; /* ops reads are open when no token is configured (loopback default) */
    if (!h->have_token) {
        *r = error_reply(401, "the admin API is disabled: ops.token is not set");
        return true;
    }
    if (!token_ok(h, conn)) {
        *r = error_reply(401, "missing or wrong bearer token (Authorization: Bearer <ops.token>)");
        return true;
    }
    const char *cl =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl && strtoull(cl, NULL, 10) > BODY_MAX) {
        *r = error_reply(413, "the body is larger than %d bytes", BODY_MAX);
        return true;
    }
    return false;
}

/* GET: the drain state; POST {"deadline": seconds}: start (or restart) a drain; DELETE: back
 * in service. The drain itself is relay_drain's; ternd exits when it is done (daemon/). */
static struct reply drain_call(const struct ops_http *h, const char *method, json_t *in)
{
    if (strcmp(method, "POST") == 0) {
        json_t *d = json_object_get(in, "deadline");
        json_int_t secs = h->cfg->drain_deadline;
        if (d &&
            (!json_is_integer(d) || json_integer_value(d) < 1 || json_integer_value(d) > 7 * 86400))
            return error_reply(400, "deadline must be an integer from 1 to 604800 (seconds)");
        if (d) secs = json_integer_value(d);
        relay_drain(h->relay, (uint32_t)secs);
    } else if (strcmp(method, "DELETE") == 0) {
        relay_drain_cancel(h->relay);
    }
    uint64_t deadline = 0;
    bool on = relay_draining(h->relay, &deadline);
    uint64_t now = relay_now_ms();
    return (struct reply){
        200, json_pack("{s:b,s:I,s:o}", "draining", on, "allocations",
                       (json_int_t)relay_active(h->relay), "deadline_seconds",
                       on ? json_integer((json_int_t)(deadline > now ? (deadline - now) / 1000 : 0))
                          : json_null())};
}

/* POST /api/v1/reload: re-read the configuration file (as SIGHUP does). 200 with the new
 * generation and the keys that changed, or 422 with every problem ("file:line: key:
 * problem") and nothing changed. */
static struct reply reload_call(const struct ops_http *h)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *err = open_memstream(&buf, &len);
    if (!err) return error_reply(500, "out of memory");
    struct relay_reload_result res;
    int rc = relay_reload(h->relay, h->path, err, &res);
    fclose(err);
    json_t *out;
    if (rc == 0) {
        json_t *keys = json_array();
        for (size_t i = 0; keys && i < res.nchanged; i++)
            json_array_append_new(keys, json_string(res.changed[i]));
        out = json_pack("{s:I,s:o}", "generation", (json_int_t)res.generation, "changed",
                        keys ? keys : json_null());
    } else {
        json_t *problems = json_array();
        for (char *line = buf, *nl; problems && line && *line; line = nl ? nl + 1 : NULL) {
            nl = strchr(line, '\n');
            if (nl) *nl = '\0';
            json_array_append_new(problems, ops_json_text(line));
        }
        out = json_pack("{s:s,s:I,s:o}", "error",
                        "the configuration was not reloaded: the running one stays", "generation",
                        (json_int_t)relay_generation(h->relay), "problems",
                        problems ? problems : json_null());
    }
    free(buf);
    return (struct reply){rc == 0 ? 200 : 422, out};
}

/* Run an admin call on its complete body. */
static struct reply dispatch(const struct ops_http *h, enum route route, const char *method,
                             const char *arg, const struct req *rq)
{
    char name[STUN_MAX_USERNAME + 1] = "";
    if (route == R_ALLOCS) return get_allocations(h);
    if (route == R_ALLOC) return allocation_call(h, method, arg);
    if (route == R_TIMELINE) return timeline_call(h, arg);
    if (route == R_DRAIN && strcmp(method, "POST") != 0) return drain_call(h, method, NULL);
    if (route == R_RELOAD) return reload_call(h);
    if (route == R_NODES) return get_nodes(h);
    if (route == R_USER && pct_decode(arg, name, sizeof name))
        return error_reply(400,
                           "the user name in the path is not valid (bad %%-escape, NUL "
                           "byte, or longer than %d bytes)",
                           STUN_MAX_USERNAME);
    if (strcmp(method, "GET") == 0) return route == R_USERS ? get_users(h) : get_secrets(h);
    if (strcmp(method, "DELETE") == 0)
        return route == R_USER ? delete_user(h, name) : delete_secret(h, arg);

    json_t *in;
    if (rq->len == 0)
        in = json_object();
    else {
        json_error_t jerr;
        in = json_loadb(rq->body, rq->len, JSON_REJECT_DUPLICATES, &jerr);
        if (!in)
            return error_reply(400, "the body is not valid JSON: %s (line %d, column %d)",
                               jerr.text, jerr.line, jerr.column);
    }
    static const char *const cred_fields[] = {"user", "ttl", NULL};
    static const char *const user_fields[] = {"name", "password", "max_allocations",
                                              "bandwidth_bps", NULL};
    static const char *const put_fields[] = {"password", "disabled", "max_allocations",
                                             "bandwidth_bps", NULL};
    static const char *const secret_fields[] = {"secret", NULL};
    static const char *const drain_fields[] = {"deadline", NULL};
    const char *const *allowed = route == R_CREDENTIALS ? cred_fields
                                 : route == R_USERS     ? user_fields
                                 : route == R_USER      ? put_fields
                                 : route == R_DRAIN     ? drain_fields
                                                        : secret_fields;
    const char *unknown = json_is_object(in) ? unknown_field(in, allowed) : NULL;
    struct reply r;
    if (!json_is_object(in))
        r = error_reply(400, "the body must be a JSON object");
    else if (unknown) {
        char *shown = ops_text_escaped(unknown), list[128] = "";
        for (size_t i = 0; allowed[i]; i++)
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "",
                     allowed[i]);
        r = error_reply(400, "unknown field \"%s\" in the body (this endpoint takes: %s)",
                        shown ? shown : "?", list);
        free(shown);
    } else if (route == R_CREDENTIALS)
        r = post_credentials(h, in);
    else if (route == R_USERS)
        r = post_users(h, in);
    else if (route == R_USER)
        r = put_user(h, name, in);
    else if (route == R_DRAIN)
        r = drain_call(h, method, in);
    else
        r = post_secrets(h, in);
    json_decref(in);
    return r;
}

static void token_set(struct ops_http *h, const struct tern_config *cfg)
{
    unsigned mdlen = 0;
    h->have_token = cfg->ops_token &&
                    EVP_Digest(cfg->ops_token, strlen(cfg->ops_token), h->token_hash, &mdlen,
                               EVP_sha256(), NULL) &&
                    mdlen == sizeof h->token_hash;
    if (!h->have_token) OPENSSL_cleanse(h->token_hash, sizeof h->token_hash);
}

/* Take up a reloaded configuration (ops.token, drain deadline, ...) before a new request. */
static void sync_config(struct ops_http *h)
{
    uint64_t gen = relay_generation(h->relay);
    if (h->cfg && gen == h->gen) return;
    const struct tern_config *c = relay_config_get(h->relay);
    relay_config_put(h->relay, h->cfg);
    h->cfg = c;
    h->gen = gen;
    token_set(h, c);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    struct ops_http *h = cls;
    struct req *rq = *con_cls;
    const char *arg;
    enum route route = route_of(url, &arg);
    struct reply r;
    (void)version;

    if (!rq) {
        sync_config(h);
        rq = calloc(1, sizeof *rq);
        if (!rq) return MHD_NO;
        rq->h = h;
        *con_cls = rq;
        if (route == R_METRICS && method_allowed(route, method))
            return respond_metrics(h, conn, rq);
        if (route == R_WEB && method_allowed(route, method)) return respond_web(conn, rq, arg);
        if (early_reply(h, conn, route, method, &r))
            return respond(conn, rq, method, url, route, r);
        return MHD_YES;
    }
    if (rq->answered) {
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (rq->too_big || rq->len + n > BODY_MAX) {
            rq->too_big = true;
            return MHD_YES; /* keep reading and dropping; answered at the end */
        }
        if (!rq->body && !(rq->body = malloc(BODY_MAX))) return MHD_NO;
        memcpy(rq->body + rq->len, upload_data, n);
        rq->len += n;
        return MHD_YES;
    }
    if (rq->too_big)
        r = error_reply(413, "the body is larger than %d bytes", BODY_MAX);
    else
        r = dispatch(h, route, method, arg, rq);
    return respond(conn, rq, method, url, route, r);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct req *rq = *con_cls;
    (void)toe;
    conn_mark(cls, conn, false); /* a keep-alive connection's next request has its own deadline */
    if (!rq) return;
    if (rq->body) {
        OPENSSL_cleanse(rq->body, rq->len);
        free(rq->body);
    }
    free(rq);
    *con_cls = NULL;
}

/* Paths are decoded per segment by the handlers (so %2F stays inside a user name). */
static size_t no_unescape(void *cls, struct MHD_Connection *conn, char *s)
{
    (void)cls;
    (void)conn;
    return strlen(s);
}

static void mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    struct ops_http *h = cls;
    char msg[MSG_LEN];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    if (atomic_load(&h->starting)) {
        memcpy(h->start_error, msg, sizeof msg);
        return;
    }
    if (strstr(msg, "reached connection limit")) { /* the total or the per-IP limit */
        pthread_mutex_lock(&h->guard.lock);
        h->guard.refused++; /* counted; logged per episode by the sweeper */
        pthread_mutex_unlock(&h->guard.lock);
        return;
    }
    tlog(CFG_LOG_WARN, "ops_http_error", LF_S("error", msg));
}

struct ops_http *ops_http_start(struct relay *relay, struct cluster *cluster, const char *path)
{
    struct ops_http *h = calloc(1, sizeof *h);
    const struct tern_config *cfg = relay_config_get(relay);
    if (!h) {
        tlog(CFG_LOG_ERROR, "ops_listen_failed", LF_A("address", &cfg->ops_listen),
             LF_S("error", "out of memory"));
        relay_config_put(relay, cfg);
        return NULL;
    }
    h->cfg = cfg;
    h->gen = relay_generation(relay);
    h->relay = relay;
    h->cluster = cluster;
    h->path = path;
    if (guard_init(&h->guard)) {
        tlog(CFG_LOG_ERROR, "ops_listen_failed", LF_A("address", &cfg->ops_listen),
             LF_S("error", "cannot create the connection guard's lock"));
        relay_config_put(relay, cfg);
        free(h);
        return NULL;
    }
    atomic_init(&h->starting, true);
    json_set_alloc_funcs(malloc, wipe_free); /* request bodies hold passwords and secrets */
    token_set(h, cfg);
    union stun_addr bind = cfg->ops_listen;
    /* MHD_USE_ITC: MHD_stop_daemon wakes the thread through a pipe; without it, it only shuts
     * the listen socket, which MHD stops polling at the connection limit, so a stop waited
     * for the next byte of some slow client. */
    unsigned flags =
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG | MHD_USE_ITC;
    if (bind.sa.sa_family == AF_INET6) flags |= MHD_USE_IPv6;
    errno = 0;
    h->daemon = MHD_start_daemon(
        flags, (uint16_t)addr_port(&bind), on_accept, h, on_request, h, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&bind.sa, MHD_OPTION_CONNECTION_LIMIT, (unsigned)CONNECTION_LIMIT,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)PER_IP_LIMIT, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)CONNECTION_TIMEOUT, MHD_OPTION_NOTIFY_CONNECTION, on_connection, (void *)h,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, (void *)h, MHD_OPTION_EXTERNAL_LOGGER, mhd_log,
        (void *)h, MHD_OPTION_UNESCAPE_CALLBACK, no_unescape, (void *)NULL, MHD_OPTION_END);
    int saved = errno;
    atomic_store(&h->starting, false);
    if (h->daemon && pthread_create(&h->guard.sweeper, NULL, sweeper, &h->guard) == 0)
        h->guard.running = true;
    else if (h->daemon) {
        MHD_stop_daemon(h->daemon);
        h->daemon = NULL;
        snprintf(h->start_error, sizeof h->start_error, "cannot start the connection sweeper");
    }
    if (!h->daemon) {
        tlog(CFG_LOG_ERROR, "ops_listen_failed", LF_A("address", &cfg->ops_listen),
             LF_S("error", h->start_error[0] ? h->start_error
                           : saved           ? strerror(saved)
                                             : "the HTTP server did not start"));
        guard_destroy(&h->guard);
        relay_config_put(relay, cfg);
        free(h);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
    if (info && info->port) addr_set_port(&bind, info->port);
    tlog(CFG_LOG_INFO, "ops_listening", LF_A("address", &bind), LF_U("port", addr_port(&bind)),
         LF_S("admin", h->have_token ? "enabled" : "disabled (ops.token is null)"));
    return h;
}

void ops_http_stop(struct ops_http *h)
{
    if (!h) return;
    guard_stop(&h->guard);
    MHD_stop_daemon(h->daemon);
    guard_destroy(&h->guard);
    OPENSSL_cleanse(h->token_hash, sizeof h->token_hash);
    relay_config_put(h->relay, h->cfg);
    free(h);
}
