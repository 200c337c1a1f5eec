/* reload.c: live reload. A new configuration becomes a new generation (struct relay_gen,
 * worker.h), built completely on the reloading thread (users' keys, peer policy, TLS context,
 * record file, the sockets of new listeners, port pools) before anything changes; a problem
 * anywhere leaves the running generation alone. Once built it is published under gen_lock, and
 * each worker adopts it between two loop passes (worker_adopt): it swaps its server's options,
 * re-checks its allocations' permissions and channels against the new peer policy, puts new
 * listeners into its loop and retires removed ones. Nothing on the forwarding path takes a lock
 * or sees a half-applied configuration, and no allocation is dropped: each lives in its worker
 * across generations. The old generation is freed when the last worker lets go of it. */
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "addr.h"
#include "credcache.h"
#include "dtls.h"
#include "hostaddr.h"
#include "log.h"
#include "fwd.h"
#include "offload.h"
#include "tcp.h"
#include "udp.h"
#include "worker.h"

#define ADOPT_WAIT_MS 5000 /* how long relay_reload waits for every worker to adopt */

static const char *name_of(const struct tern_config *c)
{
    return c->name ? c->name : "(config)";
}

static unsigned line_of(const struct tern_config *c, const char *key)
{
    unsigned l = cfg_key_line(c, key);
    return l ? l : 1;
}

/* ---- listeners ---- */

int listener_open(const struct cfg_listen *cl, union stun_addr *addr, FILE *err, const char *name,
                  unsigned line)
{
    int type = cfg_transport_dgram(cl->transport) ? SOCK_DGRAM : SOCK_STREAM;
    int fd = socket(addr->sa.sa_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    const char *step = "socket";
    int one = 1;
    if (fd < 0) goto fail;
    step = "SO_REUSEPORT";
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one))) goto fail;
    if (type == SOCK_STREAM) {
        step = "SO_REUSEADDR";
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one))) goto fail;
    }
    /* [::] must not also take IPv4: an IPv4 listener may sit on the same port. */
    step = "IPV6_V6ONLY";
    if (addr->sa.sa_family == AF_INET6 &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)))
        goto fail;
    step = "IP_PKTINFO";
    if (type == SOCK_DGRAM && addr_is_wildcard(addr) && udp_listener_setup(fd, addr->sa.sa_family))
        goto fail;
    step = "bind";
    if (bind(fd, &addr->sa, addr_len(addr))) goto fail;
    if (type == SOCK_STREAM) {
        step = "listen";
        if (listen(fd, 1024)) goto fail;
    }
    step = "getsockname";
    socklen_t sl = sizeof(*addr);
    if (getsockname(fd, &addr->sa, &sl)) goto fail;
    return fd;
fail:;
    int e = errno;
    tlog(CFG_LOG_ERROR, "listen_failed", LF_S("transport", cfg_transport_name(cl->transport)),
         LF_A("address", addr), LF_S("step", step), LF_S("error", strerror(e)));
    if (err) {
        char a[ADDR_STRLEN];
        fprintf(err, "%s:%u: listen: %s %s: %s failed: %s\n", name, line,
                cfg_transport_name(cl->transport), addr_str(addr, a), step, strerror(e));
    }
    if (fd >= 0) close(fd);
    return -1;
}

int listener_add(struct worker *w, const struct cfg_listen *cl, int fd, const union stun_addr *addr,
                 const struct relay_gen *g)
{
    if (w->nlisteners == w->caplisteners) {
        size_t cap = w->caplisteners ? w->caplisteners * 2 : 4;
        struct listener **n = realloc(w->listeners, cap * sizeof(*n));
        if (!n) return -1;
        w->listeners = n;
        w->caplisteners = cap;
    }
    struct listener *l = calloc(1, sizeof(*l));
    if (!l) return -1;
    l->transport = cl->transport;
    l->conf = *cl;
    l->addr = *addr;
    l->wildcard = addr_is_wildcard(addr);
    l->tls = cfg_transport_tls(l->transport) ? g->tls : l->transport == CFG_DTLS ? g->dtls : NULL;
    l->demux = l->transport == CFG_TCP_TLS;
    l->proxy_protocol = cl->proxy_protocol;
    l->h = (struct ep_handler){.fd = fd,
                               .fn = l->transport == CFG_UDP    ? fwd_udp_readable
                                     : l->transport == CFG_DTLS ? fwd_dtls_readable
                                                                : tcp_acceptable};
    l->conn_fn = fwd_tcp_event;
    if (cfg_transport_dgram(l->transport)) {
        udp_rx_options(w, fd, addr->sa.sa_family);
        udp_listener_buffers(fd);
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &l->h};
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev)) {
        free(l);
        return -1;
    }
    w->listeners[w->nlisteners++] = l;
    return 0;
}

/* Removed by a reload: see struct listener's retired. */
static void listener_retire(struct worker *w, struct listener *l)
{
    l->retired = true;
    l->tls = NULL; /* no new handshakes on it (TCP: it accepts nothing more anyway) */
    if (!cfg_transport_dgram(l->transport)) {
        epoll_ctl(w->epfd, EPOLL_CTL_DEL, l->h.fd, NULL);
        close(l->h.fd);
        l->h.fd = -1;
        l->accept_paused = false;
    }
    tlog(CFG_LOG_INFO, "listener_retired", LF_U("worker", w->id),
         LF_S("transport", cfg_transport_name(l->transport)), LF_A("address", &l->addr),
         LF_S("until", l->transport == CFG_UDP    ? "its last allocation ends"
                       : l->transport == CFG_DTLS ? "its last session ends"
                                                  : "its last connection closes"));
}

/* Does anything still use retired listener l? */
static bool listener_used(const struct worker *w, const struct listener *l)
{
    if (l->transport == CFG_DTLS) return dtls_uses_listener(w, l);
    if (l->transport != CFG_UDP) return tcp_uses_listener(w, l);
    const struct alloc_table *t = &w->srv.allocs;
    for (size_t i = 0; i < t->count; i++)
        if (t->heap[i]->tuple.transport == SRV_UDP && t->heap[i]->client_io == l) return true;
    return false;
}

void listeners_reap(struct worker *w)
{
    if (w->now_ms - w->reaped_ms < 1000) return;
    w->reaped_ms = w->now_ms;
    size_t k = 0;
    for (size_t i = 0; i < w->nlisteners; i++) {
        struct listener *l = w->listeners[i];
        if (!l->retired || listener_used(w, l)) {
            w->listeners[k++] = l;
            continue;
        }
        tlog(CFG_LOG_INFO, "listener_closed", LF_U("worker", w->id),
             LF_S("transport", cfg_transport_name(l->transport)), LF_A("address", &l->addr));
        if (l->h.fd >= 0) epoll_ctl(w->epfd, EPOLL_CTL_DEL, l->h.fd, NULL);
        worker_bury(w, &l->h, l); /* an event for it may still be in this pass's batch */
    }
    w->nlisteners = k;
}

/* ---- generations ---- */

void relay_gen_put(struct relay_gen *g)
{
    if (!g || atomic_fetch_sub(&g->refs, 1) != 1) return;
    size_t nfds = g->fds ? g->cfg.nlisten * g->nfds_per : 0;
    for (size_t i = 0; i < nfds; i++)
        if (g->fds[i] >= 0) close(g->fds[i]);
    free(g->fds);
    free(g->addrs);
    if (g->record_fd >= 0) close(g->record_fd);
    SSL_CTX_free(g->tls);  /* connections hold their own reference to the context */
    SSL_CTX_free(g->dtls); /* so do DTLS sessions */
    auth_users_free(&g->users);
    free(g->allow);
    free(g->deny);
    free(g->pool_addrs);
    cfg_free(&g->cfg);
    free(g);
}

static int build_users(struct relay_gen *g, FILE *err)
{
    const struct tern_config *c = &g->cfg;
    const char **names = calloc(c->nusers + 1, sizeof(*names));
    const char **pws = calloc(c->nusers + 1, sizeof(*pws));
    int bad = -1;
    if (names && pws) {
        for (size_t i = 0; i < c->nusers; i++) {
            names[i] = c->users[i].name;
            pws[i] = c->users[i].password;
        }
        bad = auth_users_init(&g->users, c->realm, names, pws, c->nusers);
    }
    free(names);
    free(pws);
    if (!bad) return 0;
    tlog(CFG_LOG_ERROR, "users_failed",
         LF_S("reason", bad > 0 ? "SASLprep refused a name or password" : "out of memory"),
         LF_S("user", bad > 0 ? c->users[bad - 1].name : ""));
    if (err) {
        char key[48];
        snprintf(key, sizeof key, "auth.users[%d].name", bad > 0 ? bad - 1 : 0);
        fprintf(err, "%s:%u: auth.users: %s%s\n", name_of(c), line_of(c, bad > 0 ? key : "auth"),
                bad > 0 ? "SASLprep (RFC 8265) refuses the name or password of " : "out of memory",
                bad > 0 ? c->users[bad - 1].name : "");
    }
    return -1;
}

static int build_policy(struct relay_gen *g)
{
    const struct tern_config *c = &g->cfg;
    g->allow = calloc(c->npeers_allow + 1, sizeof(*g->allow));
    g->deny = calloc(c->npeers_deny + 1, sizeof(*g->deny));
    if (!g->allow || !g->deny) return -1;
    for (size_t i = 0; i < c->npeers_allow; i++)
        g->allow[i] = (struct policy_cidr){.addr = c->peers_allow[i].addr,
                                           .prefix = c->peers_allow[i].prefix};
    for (size_t i = 0; i < c->npeers_deny; i++)
        g->deny[i] =
            (struct policy_cidr){.addr = c->peers_deny[i].addr, .prefix = c->peers_deny[i].prefix};
    g->policy = (struct peer_policy){.allow_loopback = c->allow_loopback,
                                     .allow = g->allow,
                                     .nallow = c->npeers_allow,
                                     .deny = g->deny,
                                     .ndeny = c->npeers_deny};
    return 0;
}

/* Listener sockets: kept from prev where the same listener was configured, else one per
 * worker (the first resolves port 0, the others share it). */
static int build_listeners(struct relay *r, struct relay_gen *g, const struct relay_gen *prev,
                           FILE *err)
{
    const struct tern_config *c = &g->cfg;
    size_t n = r->nworkers;
    g->nfds_per = n;
    g->fds = malloc((c->nlisten * n + 1) * sizeof(*g->fds));
    g->addrs = calloc(c->nlisten + 1, sizeof(*g->addrs));
    if (!g->fds || !g->addrs) return -1;
    for (size_t i = 0; i < c->nlisten * n; i++)
        g->fds[i] = -1;
    for (size_t j = 0; j < c->nlisten; j++) {
        bool kept = false;
        for (size_t k = 0; prev && k < prev->cfg.nlisten && !kept; k++)
            if (cfg_listen_same(&c->listen[j], &prev->cfg.listen[k])) {
                g->addrs[j] = prev->addrs[k];
                kept = true;
            }
        if (kept) continue;
        union stun_addr addr = c->listen[j].addr;
        for (size_t i = 0; i < n; i++) {
            int fd = listener_open(&c->listen[j], &addr, err, name_of(c), line_of(c, "listen"));
            if (fd < 0) return -1;
            g->fds[j * n + i] = fd;
        }
        g->addrs[j] = addr;
        if (prev)
            tlog(CFG_LOG_INFO, "listening",
                 LF_S("transport", cfg_transport_name(c->listen[j].transport)),
                 LF_A("address", &addr), LF_U("port", addr_port(&addr)), LF_U("workers", n),
                 LF_U("generation", g->id));
    }
    return 0;
}

/* Port pools for the relay addresses: the running ones when neither the addresses nor the
 * range changed, else new pools (the old ones stay for the ports their allocations hold). The
 * last step of a build: nothing after it can fail. */
static int build_pools(struct relay *r, struct relay_gen *g, const struct relay_gen *prev)
{
    const struct tern_config *c = &g->cfg;
    struct relay_shared *sh = &r->shared;
    bool same = prev && prev->cfg.port_min == c->port_min && prev->cfg.port_max == c->port_max &&
                prev->cfg.nrelay_addresses == c->nrelay_addresses;
    for (size_t i = 0; same && i < c->nrelay_addresses; i++)
        same = addr_equal(&prev->cfg.relay_addresses[i], &c->relay_addresses[i]);
    if (same) {
        g->npools = prev->npools;
        g->pool_addrs = calloc(g->npools + 1, sizeof(*g->pool_addrs));
        if (!g->pool_addrs) return -1;
        memcpy(g->pool_addrs, prev->pool_addrs, g->npools * sizeof(*g->pool_addrs));
        return 0;
    }
    pthread_mutex_lock(&sh->lock);
    size_t base = sh->npools, need = base + c->nrelay_addresses;
    int rc = 0;
    if (need > sh->cappools) {
        struct port_pool *p = realloc(sh->pools, (need + 1) * sizeof(*p));
        if (p) {
            sh->pools = p;
            sh->cappools = need + 1;
        } else {
            rc = -1;
        }
    }
    g->pool_addrs = rc ? NULL : calloc(need + 1, sizeof(*g->pool_addrs));
    if (!g->pool_addrs) rc = -1;
    for (size_t i = 0; !rc && i < c->nrelay_addresses; i++) {
        uint32_t start;
        if (getrandom(&start, sizeof(start), 0) != sizeof(start)) start = (uint32_t)(i * 7919);
        if (ports_init(&sh->pools[base + i], c->port_min, c->port_max, start)) {
            while (i--)
                ports_free(&sh->pools[base + i]);
            rc = -1;
            break;
        }
    }
    if (!rc) {
        sh->npools = need;
        g->npools = need;
        /* Retired pools (ids below base) keep AF_UNSPEC: no new allocation picks them. */
        for (size_t i = 0; i < c->nrelay_addresses; i++)
            g->pool_addrs[base + i] = c->relay_addresses[i];
    }
    pthread_mutex_unlock(&sh->lock);
    return rc;
}

struct relay_gen *relay_gen_new(struct relay *r, struct tern_config *cfg,
                                const struct relay_gen *prev, FILE *err)
{
    struct relay_gen *g = calloc(1, sizeof(*g));
    if (!g) {
        if (err) fprintf(err, "%s: out of memory\n", cfg->name ? cfg->name : "(config)");
        cfg_free(cfg);
        return NULL;
    }
    atomic_init(&g->refs, 1);
    g->record_fd = -1;
    g->cfg = *cfg;
    memset(cfg, 0, sizeof(*cfg));
    g->id = prev ? prev->id + 1 : 1;
    const struct tern_config *c = &g->cfg;
    const char *step = "memory";
    if (build_users(g, err)) goto fail_quiet;
    if (build_policy(g)) goto fail;
    if (build_listeners(r, g, prev, err)) goto fail_quiet;
    for (size_t j = 0; j < c->nlisten && !g->tls; j++) {
        if (!cfg_transport_tls(c->listen[j].transport)) continue;
        g->tls = tls_context(c, err, false);
        if (!g->tls) goto fail_quiet;
    }
    for (size_t j = 0; j < c->nlisten && !g->dtls; j++) {
        if (c->listen[j].transport != CFG_DTLS) continue;
        g->dtls = tls_context(c, err, true);
        if (!g->dtls) goto fail_quiet;
    }
    if (c->qos_record_file) {
        g->record_fd = open(c->qos_record_file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
        if (g->record_fd < 0) {
            int e = errno;
            tlog(CFG_LOG_ERROR, "record_file_failed", LF_S("file", c->qos_record_file),
                 LF_S("error", strerror(e)));
            if (err)
                fprintf(err, "%s:%u: qos.record_file: cannot open %s: %s\n", name_of(c),
                        line_of(c, "qos.record_file"), c->qos_record_file, strerror(e));
            goto fail_quiet;
        }
    }
    step = "port pools";
    if (build_pools(r, g, prev)) goto fail;
    g->opt = (struct srv_options){
        .software = c->software,
        .realm = c->realm,
        .default_lifetime_s = c->default_lifetime,
        .max_lifetime_s = c->max_lifetime,
        .nonce_lifetime_s = c->nonce_lifetime,
        .strict_channels = c->strict_channel_numbers,
        .policy = &g->policy,
        .creds = &r->creds,
        .nonce_key = &r->nonce_key,
        .relay_addrs = g->pool_addrs,
        .nrelay_addrs = g->npools,
        .external = c->relay_external.sa.sa_family == AF_UNSPEC ? NULL : &c->relay_external,
        .rest_secrets = (const char *const *)c->secrets,
        .nrest_secrets = c->nsecrets,
        .rest_separator = c->rest_separator ? c->rest_separator[0] : ':',
        .bandwidth_bps = c->bandwidth_limit,
        .max_tcp_connections = c->max_tcp_connections,
        .mobility = c->mobility,
        .alternates = c->drain_alternates,
        .nalternates = c->ndrain_alternates,
        .unauth_rate = c->unauth_rate,
        .unauth_burst = c->unauth_burst,
        .unauth_global_rate = c->unauth_global_rate,
    };
    return g;
fail:
    tlog(CFG_LOG_ERROR, "config_build_failed", LF_S("step", step));
    if (err) fprintf(err, "%s: %s: out of memory\n", name_of(c), step);
fail_quiet:
    relay_gen_put(g);
    return NULL;
}

/* ---- the worker's side ---- */

static bool listener_wanted(const struct relay_gen *g, const struct listener *l)
{
    for (size_t j = 0; j < g->cfg.nlisten; j++)
        if (cfg_listen_same(&g->cfg.listen[j], &l->conf)) return true;
    return false;
}

void worker_adopt(struct worker *w)
{
    struct relay *r = w->relay;
    if (atomic_load_explicit(&r->generation, memory_order_acquire) == w->gen->id) return;
    pthread_mutex_lock(&r->gen_lock);
    struct relay_gen *g = r->gen;
    atomic_fetch_add(&g->refs, 1);
    pthread_mutex_unlock(&r->gen_lock);
    struct relay_gen *old = w->gen;
    const struct tern_config *c = &g->cfg;

    if (c->qos_enabled && !w->qos_on) /* kernel receive timestamps for the tap, from now on */
        for (size_t i = 0; i < w->nlisteners; i++)
            if (cfg_transport_dgram(w->listeners[i]->transport) && w->listeners[i]->h.fd >= 0)
                udp_timestamps_on(w->listeners[i]->h.fd);
    w->qos_on = c->qos_enabled;

    /* Listeners: the new ones into the loop, the removed ones retired, TLS contexts renewed. */
    for (size_t i = 0; i < w->nlisteners; i++) {
        struct listener *l = w->listeners[i];
        if (l->retired) continue;
        if (!listener_wanted(g, l))
            listener_retire(w, l);
        else if (cfg_transport_tls(l->transport))
            l->tls = g->tls;
        else if (l->transport == CFG_DTLS)
            l->tls = g->dtls;
    }
    for (size_t j = 0; j < c->nlisten; j++) {
        int *fd = &g->fds[j * g->nfds_per + w->id];
        if (*fd < 0) continue;
        if (listener_add(w, &c->listen[j], *fd, &g->addrs[j], g)) {
            tlog(CFG_LOG_ERROR, "listener_add_failed", LF_U("worker", w->id),
                 LF_A("address", &g->addrs[j]), LF_S("error", strerror(errno)));
            close(*fd);
        }
        *fd = -1; /* this worker's slot: only it writes it */
    }

    /* The server decides with the new options and re-checks what its allocations hold. */
    w->policy = g->policy;
    w->policy.self = w->self;
    struct srv_options opt = g->opt;
    opt.policy = &w->policy;
    struct srv_reconf rc;
    if (srv_reconfigure(&w->srv, &opt, w->now_ms, &rc))
        tlog(CFG_LOG_ERROR, "out_of_memory", LF_S("where", "reload: unauthenticated limits"),
             LF_U("worker", w->id));
    if (rc.permissions || rc.channels)
        tlog(CFG_LOG_WARN, "permissions_revoked", LF_U("worker", w->id),
             LF_U("permissions", rc.permissions), LF_U("channels", rc.channels),
             LF_S("reason", "the reloaded peer policy refuses the peer"));
    w->record_fd = g->record_fd;
    w->gen = g;
    w->cfg = c;
    /* The kernel's bindings re-checked against the new policy before the reload counts as
     * adopted: once relay_reload returns, nothing goes to a peer the policy now refuses. */
    offload_pass(w);
    atomic_store_explicit(&w->gen_seen, g->id, memory_order_release);
    relay_gen_put(old);
}

/* ---- the reloading thread's side ---- */

/* Wake every worker (its mailbox eventfd: a wake-up with no query is a no-op) and wait until
 * each runs on generation id. */
static bool wait_adopted(struct relay *r, uint64_t id)
{
    uint64_t one = 1;
    for (unsigned i = 0; i < r->nworkers; i++)
        if (write(r->workers[i].mbox.fd, &one, sizeof(one)) != sizeof(one))
            tlog(CFG_LOG_WARN, "wake_failed", LF_U("worker", i));
    for (int t = 0; t < ADOPT_WAIT_MS / 5; t++) {
        bool all = true;
        for (unsigned i = 0; i < r->nworkers && all; i++)
            all = atomic_load_explicit(&r->workers[i].gen_seen, memory_order_acquire) >= id;
        if (all) return true;
        struct timespec ts = {0, 5 * 1000000};
        nanosleep(&ts, NULL);
    }
    return false;
}

static int reload(struct relay *r, const char *path, FILE *err, struct relay_reload_result *res);

int relay_reload(struct relay *r, const char *path, FILE *err, struct relay_reload_result *res)
{
    /* Problems are logged here, one config_problem event each, whoever asked for the reload,
     * and handed to the caller (the API answers them, ternctl prints them). */
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    int rc = reload(r, path, mem ? mem : err ? err : stderr, res);
    if (!mem) return rc;
    fclose(mem);
    for (char *line = buf, *nl; line && *line; line = nl ? nl + 1 : NULL) {
        nl = strchr(line, '\n');
        if (nl) *nl = '\0';
        tlog(CFG_LOG_ERROR, "config_problem", LF_S("problem", line));
        if (err) fprintf(err, "%s\n", line);
    }
    free(buf);
    return rc;
}

static int reload(struct relay *r, const char *path, FILE *err, struct relay_reload_result *res)
{
    memset(res, 0, sizeof(*res));
    pthread_mutex_lock(&r->reload_lock);
    struct relay_gen *cur = r->gen; /* only this function replaces it, under reload_lock */
    int rc = -1;
    if (r->notify) r->notify("RELOADING=1\nSTATUS=reloading the configuration");
    struct tern_config cfg;
    struct cfg_diff d;
    if (!path) {
        fprintf(err, "(embedded default): nothing to reload: ternd runs the embedded default; "
                     "start it with -c FILE to reload that file\n");
        goto out;
    }
    if (cfg_load(&cfg, path, err)) goto out;
    cfg_diff(&cur->cfg, &cfg, &d, err);
    if (d.refused) {
        cfg_free(&cfg);
        goto out;
    }
    struct relay_gen *g = relay_gen_new(r, &cfg, cur, err);
    if (!g) goto out;

    /* Shared state first (quotas, static users, the self-loop guard, logs), then publish. */
    pthread_mutex_lock(&r->shared.lock);
    r->shared.max_per_user = g->cfg.max_per_user;
    r->shared.max_per_user_fleet = g->cfg.max_per_user_fleet;
    r->shared.max_total = g->cfg.max_total;
    pthread_mutex_unlock(&r->shared.lock);
    credcache_statics(r->cache, &g->users);
    self_addresses(r, g); /* listeners, relay addresses and ranges (republished if changed) */
    log_change(g->cfg.log_level, g->cfg.log_format);
    pthread_mutex_lock(&r->gen_lock);
    r->gen = g;
    atomic_store_explicit(&r->generation, g->id, memory_order_release);
    pthread_mutex_unlock(&r->gen_lock);
    bool all = wait_adopted(r, g->id);
    relay_gen_put(cur); /* the relay's reference; workers drop theirs as they adopt */

    char keys[1024] = "";
    size_t kl = 0;
    for (size_t i = 0; i < d.nchanged && kl + 2 < sizeof keys; i++) {
        int n = snprintf(keys + kl, sizeof keys - kl, "%s%s", i ? "," : "", d.changed[i]);
        if (n < 0) break;
        kl += (size_t)n;
        if (kl >= sizeof keys) kl = sizeof keys - 1;
    }
    tlog(CFG_LOG_WARN, "config_reloaded", LF_S("file", path), LF_U("generation", g->id),
         LF_S("changed", d.nchanged ? keys : "nothing"), LF_U("workers_adopted", all));
    res->generation = g->id;
    res->nchanged = d.nchanged;
    for (size_t i = 0; i < d.nchanged && i < CFG_DIFF_MAX; i++)
        res->changed[i] = d.changed[i]; /* static strings (config_diff.c) */
    rc = 0;
out:
    atomic_fetch_add(rc ? &r->reloads_failed : &r->reloads_ok, 1);
    if (rc)
        tlog(CFG_LOG_ERROR, "config_reload_failed", LF_S("file", path ? path : "-"),
             LF_U("generation", cur->id), LF_S("kept", "the running configuration"));
    if (r->notify) {
        char msg[96];
        snprintf(msg, sizeof msg, "READY=1\nSTATUS=%s (configuration generation %llu)",
                 rc ? "reload failed, running configuration kept" : "relaying",
                 (unsigned long long)atomic_load(&r->generation));
        r->notify(msg);
    }
    pthread_mutex_unlock(&r->reload_lock);
    return rc;
}

uint64_t relay_generation(struct relay *r)
{
    return atomic_load_explicit(&r->generation, memory_order_acquire);
}

void relay_reload_counts(struct relay *r, uint64_t *ok, uint64_t *failed)
{
    *ok = atomic_load(&r->reloads_ok);
    *failed = atomic_load(&r->reloads_failed);
}

const struct tern_config *relay_config_get(struct relay *r)
{
    pthread_mutex_lock(&r->gen_lock);
    struct relay_gen *g = r->gen;
    atomic_fetch_add(&g->refs, 1);
    pthread_mutex_unlock(&r->gen_lock);
    return &g->cfg;
}

void relay_config_put(struct relay *r, const struct tern_config *c)
{
    (void)r;
    if (!c) return;
    struct relay_gen *g =
        (struct relay_gen *)(void *)((char *)(uintptr_t)c - offsetof(struct relay_gen, cfg));
    relay_gen_put(g);
}

void relay_set_notify(struct relay *r, void (*notify)(const char *state))
{
    r->notify = notify;
}
