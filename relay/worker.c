/* worker.c: the relay's workers (sockets bound per worker with SO_REUSEPORT, one epoll loop
 * and one TURN server each) and the state they share (port pools, quotas, credentials). */
#include <errno.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "credcache.h"
#include "hostaddr.h"
#include "log.h"
#include "addr.h"
#include "fwd.h"
#include "offload.h"
#include "tcp.h"
#include "udp.h"
#include "worker.h"

const char *const relay_counter_names[RELAY_C_COUNT] = {
#define X(name, help) #name,
    RELAY_COUNTERS(X)
#undef X
};
const char *const relay_counter_help[RELAY_C_COUNT] = {
#define X(name, help) help,
    RELAY_COUNTERS(X)
#undef X
};

static int64_t realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static uint64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Open one listening socket. On failure logs address and reason and returns -1. */
static int open_listener(const struct cfg_listen *cl, union stun_addr *addr)
{
    int type = cl->transport == CFG_UDP ? SOCK_DGRAM : SOCK_STREAM;
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
    int err = errno;
    tlog(CFG_LOG_ERROR, "listen_failed", LF_S("transport", cfg_transport_name(cl->transport)),
         LF_A("address", addr), LF_S("step", step), LF_S("error", strerror(err)));
    if (fd >= 0) close(fd);
    return -1;
}

static void on_stop(struct worker *w, struct ep_handler *h, uint32_t events)
{
    (void)w;
    (void)h;
    (void)events;
}

static int epoll_add(struct worker *w, struct ep_handler *h)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = h};
    return epoll_ctl(w->epfd, EPOLL_CTL_ADD, h->fd, &ev);
}

void worker_bury(struct worker *w, struct ep_handler *h, void *p)
{
    if (h->fd >= 0) close(h->fd);
    h->fd = -1;
    if (w->ngraves == w->capgraves) {
        size_t cap = w->capgraves ? w->capgraves * 2 : 64;
        void **g = realloc(w->graveyard, cap * sizeof(*g));
        if (!g) {
            /* Out of memory: leak p rather than risk a stale event touching freed memory. */
            tlog(CFG_LOG_ERROR, "out_of_memory", LF_S("where", "worker_bury"));
            return;
        }
        w->graveyard = g;
        w->capgraves = cap;
    }
    w->graveyard[w->ngraves++] = p;
}

static void graveyard_flush(struct worker *w)
{
    for (size_t i = 0; i < w->ngraves; i++)
        free(w->graveyard[i]);
    w->ngraves = 0;
}

static void worker_free(struct worker *w)
{
    tcp_close_all(w); /* deletes TCP/TLS allocations with their connections */
    if (w->srv_ready) srv_free(&w->srv);
    offload_worker_free(w);
    if (w->hostaddr) hostaddr_drop(w->hostaddr, w->self);
    graveyard_flush(w);
    free(w->graveyard);
    for (size_t i = 0; i < w->nlisteners; i++)
        if (w->listeners[i].h.fd >= 0) close(w->listeners[i].h.fd);
    if (w->stop.fd >= 0) close(w->stop.fd);
    if (w->mbox.fd >= 0) close(w->mbox.fd);
    if (w->mbox_ready) {
        pthread_mutex_destroy(&w->mbox_lock);
        pthread_cond_destroy(&w->mbox_cond);
    }
    if (w->epfd >= 0) close(w->epfd);
    free(w->listeners);
    fwd_free(w->fwd);
}

/* Everything the workers share, built from the configuration. 0, or -1 after logging. */
static int shared_init(struct relay *r)
{
    const struct tern_config *cfg = r->cfg;
    struct relay_shared *sh = &r->shared;
    pthread_mutex_init(&sh->lock, NULL);
    sh->max_per_user = cfg->max_per_user;
    sh->max_total = cfg->max_total;
    sh->npools = cfg->nrelay_addresses;
    sh->pools = calloc(sh->npools ? sh->npools : 1, sizeof(*sh->pools));
    if (!sh->pools) return -1;
    for (size_t i = 0; i < sh->npools; i++) {
        uint32_t start;
        if (getrandom(&start, sizeof(start), 0) != sizeof(start)) start = (uint32_t)i * 7919;
        if (ports_init(&sh->pools[i], cfg->port_min, cfg->port_max, start)) return -1;
    }

    const char **names = calloc(cfg->nusers + 1, sizeof(*names));
    const char **pws = calloc(cfg->nusers + 1, sizeof(*pws));
    int bad = -1;
    if (names && pws) {
        for (size_t i = 0; i < cfg->nusers; i++) {
            names[i] = cfg->users[i].name;
            pws[i] = cfg->users[i].password;
        }
        bad = auth_users_init(&r->users, cfg->realm, names, pws, cfg->nusers);
    }
    free(names);
    free(pws);
    if (bad) {
        tlog(CFG_LOG_ERROR, "users_failed",
             LF_S("reason", bad > 0 ? "SASLprep refused a name or password" : "out of memory"),
             LF_S("user", bad > 0 ? cfg->users[bad - 1].name : ""));
        return -1;
    }
    r->cache = credcache_open(cfg, &r->users);
    if (!r->cache) return -1;
    r->creds = credcache_creds(r->cache);
    if (getrandom(r->nonce_key.secret, sizeof(r->nonce_key.secret), 0) !=
        sizeof(r->nonce_key.secret))
        return -1;

    r->allow = calloc(cfg->npeers_allow + 1, sizeof(*r->allow));
    r->deny = calloc(cfg->npeers_deny + 1, sizeof(*r->deny));
    if (!r->allow || !r->deny) return -1;
    for (size_t i = 0; i < cfg->npeers_allow; i++)
        r->allow[i] = (struct policy_cidr){.addr = cfg->peers_allow[i].addr,
                                           .prefix = cfg->peers_allow[i].prefix};
    for (size_t i = 0; i < cfg->npeers_deny; i++)
        r->deny[i] = (struct policy_cidr){.addr = cfg->peers_deny[i].addr,
                                          .prefix = cfg->peers_deny[i].prefix};
    r->policy = (struct peer_policy){.allow_loopback = cfg->allow_loopback,
                                     .allow = r->allow,
                                     .nallow = cfg->npeers_allow,
                                     .deny = r->deny,
                                     .ndeny = cfg->npeers_deny};
    r->opt = (struct srv_options){
        .software = cfg->software,
        .realm = cfg->realm,
        .default_lifetime_s = cfg->default_lifetime,
        .max_lifetime_s = cfg->max_lifetime,
        .nonce_lifetime_s = cfg->nonce_lifetime,
        .strict_channels = cfg->strict_channel_numbers,
        .policy = &r->policy,
        .creds = &r->creds,
        .nonce_key = &r->nonce_key,
        .relay_addrs = cfg->relay_addresses,
        .nrelay_addrs = cfg->nrelay_addresses,
        .external = cfg->relay_external.sa.sa_family == AF_UNSPEC ? NULL : &cfg->relay_external,
        .rest_secrets = (const char *const *)cfg->secrets,
        .nrest_secrets = cfg->nsecrets,
        .rest_separator = cfg->rest_separator ? cfg->rest_separator[0] : ':',
        .bandwidth_bps = cfg->bandwidth_limit,
        .alternates = cfg->drain_alternates,
        .nalternates = cfg->ndrain_alternates,
        .unauth_rate = cfg->unauth_rate,
        .unauth_burst = cfg->unauth_burst,
        .unauth_global_rate = cfg->unauth_global_rate,
    };
    return 0;
}

static void shared_free(struct relay *r)
{
    struct relay_shared *sh = &r->shared;
    for (size_t i = 0; sh->pools && i < sh->npools; i++)
        ports_free(&sh->pools[i]);
    free(sh->pools);
    free(sh->quota);
    pthread_mutex_destroy(&sh->lock);
    credcache_close(r->cache);
    auth_users_free(&r->users);
    OPENSSL_cleanse(&r->nonce_key, sizeof(r->nonce_key));
    free(r->allow);
    free(r->deny);
    hostaddr_close(r->hostaddr);
}

/* The relay's own addresses (listeners, relay addresses, external address; with a wildcard
 * every address of the host, kept current by relay/hostaddr.c) at every listener port and
 * every relayed port: peers the policy refuses so the relay never sends into itself. Each
 * worker decides with its own copy of the policy, holding its own snapshot of the set. */
static int self_addresses(struct relay *r)
{
    const struct tern_config *cfg = r->cfg;
    const struct listener *ls = r->workers[0].listeners;
    size_t nip = cfg->nlisten + cfg->nrelay_addresses + 1;
    union stun_addr *ips = calloc(nip, sizeof(*ips));
    uint16_t *ports = calloc(cfg->nlisten + 1, sizeof(*ports));
    struct hostaddr_spec spec = {.ips = ips,
                                 .nips = nip,
                                 .ports = ports,
                                 .nports = cfg->nlisten,
                                 /* relay to relay allowed: no relayed range (min > max) */
                                 .relay_min = cfg->allow_relay_to_relay ? 1 : cfg->port_min,
                                 .relay_max = cfg->allow_relay_to_relay ? 0 : cfg->port_max};
    if (ips && ports) {
        for (size_t i = 0; i < nip; i++) {
            ips[i] = i < cfg->nlisten ? ls[i].addr
                     : i < cfg->nlisten + cfg->nrelay_addresses
                         ? cfg->relay_addresses[i - cfg->nlisten]
                         : cfg->relay_external;
            spec.wildcard |= i < nip - 1 && addr_is_wildcard(&ips[i]);
        }
        for (size_t j = 0; j < cfg->nlisten; j++)
            ports[j] = (uint16_t)addr_port(&ls[j].addr);
        r->hostaddr = hostaddr_open(&spec);
    }
    free(ips);
    free(ports);
    if (!r->hostaddr) return -1;
    for (unsigned i = 0; i < r->nworkers; i++) {
        struct worker *w = &r->workers[i];
        w->hostaddr = r->hostaddr;
        w->policy = r->policy;
        w->policy.self = w->self = hostaddr_take(r->hostaddr, NULL, &w->self_gen);
        w->srv.opt.policy = &w->policy;
    }
    return 0;
}

struct relay *relay_open(const struct tern_config *cfg)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned n = cfg->workers ? cfg->workers : (unsigned)(cpus > 0 ? cpus : 1);
    struct relay *r = calloc(1, sizeof(*r));
    if (!r) return NULL;
    r->cfg = cfg;
    r->record_fd = -1;
    pthread_mutex_init(&r->query_lock, NULL);
    r->workers = calloc(n, sizeof(*r->workers));
    if (!r->workers || shared_init(r)) {
        tlog(CFG_LOG_ERROR, "startup_failed", LF_S("step", "shared state"));
        relay_close(r, NULL, NULL);
        return NULL;
    }
    if (cfg->qos_record_file) {
        r->record_fd = open(cfg->qos_record_file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
        if (r->record_fd < 0) {
            tlog(CFG_LOG_ERROR, "startup_failed", LF_S("step", "qos.record_file"),
                 LF_S("file", cfg->qos_record_file), LF_S("error", strerror(errno)));
            relay_close(r, NULL, NULL);
            return NULL;
        }
    }
    for (size_t j = 0; j < cfg->nlisten && !r->tls; j++) {
        if (cfg->listen[j].transport != CFG_TLS) continue;
        r->tls = tls_context(cfg);
        if (!r->tls) {
            relay_close(r, NULL, NULL);
            return NULL;
        }
    }
    for (unsigned i = 0; i < n; i++) {
        struct worker *w = &r->workers[i];
        r->nworkers = i + 1;
        w->id = i;
        w->cfg = cfg;
        w->shared = &r->shared;
        w->epfd = epoll_create1(EPOLL_CLOEXEC);
        w->stop = (struct ep_handler){.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC), .fn = on_stop};
        w->mbox =
            (struct ep_handler){.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC), .fn = worker_mbox};
        w->mbox_ready = pthread_mutex_init(&w->mbox_lock, NULL) == 0;
        if (w->mbox_ready && pthread_cond_init(&w->mbox_cond, NULL)) {
            pthread_mutex_destroy(&w->mbox_lock);
            w->mbox_ready = false;
        }
        w->qos_on = cfg->qos_enabled;
        w->record_fd = r->record_fd;
        w->now_ns = realtime_ns();
        w->listeners = calloc(cfg->nlisten, sizeof(*w->listeners));
        if (w->listeners)
            for (size_t j = 0; j < cfg->nlisten; j++)
                w->listeners[j].h.fd = -1;
        w->fwd = fwd_new();
        struct srv_io io = srvio_template;
        io.ctx = w;
        w->now_ms = monotonic_ms();
        /* Allocation ids carry the worker number in the top bits: unique relay-wide. */
        if (w->epfd < 0 || w->stop.fd < 0 || w->mbox.fd < 0 || !w->mbox_ready || !w->listeners ||
            !w->fwd || epoll_add(w, &w->stop) || epoll_add(w, &w->mbox) ||
            srv_init(&w->srv, &r->opt, &io, (uint64_t)(i + 1) << 48)) {
            tlog(CFG_LOG_ERROR, "worker_failed", LF_U("worker", i), LF_S("error", strerror(errno)));
            relay_close(r, NULL, NULL);
            return NULL;
        }
        w->srv_ready = true;
        w->srv.unix_s = (uint64_t)time(NULL);
    }

    /* Listener by listener: the first worker's bind resolves port 0, the others reuse it. */
    for (size_t j = 0; j < cfg->nlisten; j++) {
        union stun_addr addr = cfg->listen[j].addr;
        for (unsigned i = 0; i < n; i++) {
            struct worker *w = &r->workers[i];
            struct listener *l = &w->listeners[j];
            int fd = open_listener(&cfg->listen[j], &addr);
            if (fd < 0) {
                relay_close(r, NULL, NULL);
                return NULL;
            }
            w->nlisteners = j + 1;
            if (cfg->listen[j].transport == CFG_UDP) {
                udp_rx_options(w, fd, addr.sa.sa_family);
                udp_listener_buffers(fd);
            }
            l->transport = cfg->listen[j].transport;
            l->addr = addr;
            l->wildcard = addr_is_wildcard(&addr);
            l->tls = l->transport == CFG_TLS ? r->tls : NULL;
            l->h = (struct ep_handler){
                .fd = fd, .fn = l->transport == CFG_UDP ? fwd_udp_readable : tcp_acceptable};
            l->conn_fn = fwd_tcp_event;
            if (epoll_add(w, &l->h)) {
                tlog(CFG_LOG_ERROR, "worker_failed", LF_U("worker", i),
                     LF_S("error", strerror(errno)));
                relay_close(r, NULL, NULL);
                return NULL;
            }
        }
        tlog(CFG_LOG_INFO, "listening",
             LF_S("transport", cfg_transport_name(cfg->listen[j].transport)),
             LF_A("address", &addr), LF_U("port", addr_port(&addr)), LF_U("workers", n));
    }
    if (self_addresses(r)) {
        relay_close(r, NULL, NULL);
        return NULL;
    }
    for (size_t i = 0; i < cfg->nrelay_addresses; i++)
        tlog(CFG_LOG_INFO, "relay_address", LF_A("address", &cfg->relay_addresses[i]),
             LF_U("port_min", cfg->port_min), LF_U("port_max", cfg->port_max));
    offload_open(r);
    return r;
}

/* auth.strict_expiry: after a credential change, and once a minute for REST usernames that
 * expired with time alone, close the allocations whose credentials no longer hold. */
static void revalidate(struct worker *w)
{
    const struct auth_creds *cr = w->srv.opt.creds;
    uint64_t gen = cr->generation ? cr->generation(cr->ctx) : 0;
    if (gen == w->cred_gen && w->now_ms - w->revalidated_ms < 60 * 1000) return;
    w->cred_gen = gen;
    w->revalidated_ms = w->now_ms;
    size_t n = srv_revalidate(&w->srv);
    if (n) tlog(CFG_LOG_INFO, "allocations_revoked", LF_U("worker", w->id), LF_U("count", n));
}

/* The limit on unauthenticated answers at work (allocation/ratelimit.h): one warn event when
 * drops begin and one when a second passes without any, checked once a second, not per
 * packet. */
static void unauth_episode(struct worker *w)
{
    if (w->now_ms - w->unauth_checked_ms < 1000) return;
    w->unauth_checked_ms = w->now_ms;
    const uint64_t *c = w->srv.c.v;
    uint64_t d = c[SRV_C_drop_unauth_ratelimited] + c[SRV_C_drop_unauth_global];
    if (d != w->unauth_drops && !w->unauth_episode) {
        tlog(CFG_LOG_WARN, "unauth_ratelimited", LF_U("worker", w->id),
             LF_U("dropped", d - w->unauth_drops));
        w->unauth_episode = true;
        w->unauth_episode_drops = w->unauth_drops;
    } else if (d == w->unauth_drops && w->unauth_episode) {
        tlog(CFG_LOG_INFO, "unauth_ratelimit_ended", LF_U("worker", w->id),
             LF_U("dropped", d - w->unauth_episode_drops));
        w->unauth_episode = false;
    }
    w->unauth_drops = d;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct epoll_event ev[64];
    for (;;) {
        /* Sleep until the next allocation expires, at most a second (TCP idle checks). */
        uint64_t next = alloc_next_expiry(&w->srv.allocs);
        int timeout = 1000;
        if (next != UINT64_MAX)
            timeout =
                next <= w->now_ms ? 0 : (int)(next - w->now_ms < 1000 ? next - w->now_ms : 1000);
        timeout = tcp_timeout(w, timeout);
        int n = epoll_wait(w->epfd, ev, 64, timeout);
        if (hostaddr_generation(w->hostaddr) != w->self_gen) /* the host's addresses changed */
            w->policy.self = w->self = hostaddr_take(w->hostaddr, w->self, &w->self_gen);
        w->now_ms = monotonic_ms();
        w->now_ns = realtime_ns();
        w->srv.unix_s = (uint64_t)(w->now_ns / 1000000000); /* REST usernames: wall-clock time */
        atomic_store_explicit(&w->beat_ms, w->now_ms, memory_order_relaxed);
        atomic_store_explicit(&w->nallocs, w->srv.allocs.count, memory_order_relaxed);
        if (n < 0 && errno != EINTR) {
            tlog(CFG_LOG_ERROR, "epoll_failed", LF_U("worker", w->id),
                 LF_S("error", strerror(errno)));
            break;
        }
        bool stop = false;
        for (int i = 0; i < n; i++) {
            struct ep_handler *h = ev[i].data.ptr;
            if (h == &w->stop) {
                stop = true;
                continue;
            }
            if (h->fd >= 0) h->fn(w, h, ev[i].events);
        }
        fwd_flush(w); /* the pass's one flush point: peer datagrams queued for UDP clients */
        srv_expire(&w->srv, w->now_ms);
        offload_pass(w);
        w->srv.draining = atomic_load_explicit(&w->shared->draining, memory_order_relaxed);
        if (w->srv.draining && w->srv.allocs.count &&
            atomic_load_explicit(&w->shared->drain_close, memory_order_relaxed)) {
            size_t ended = srv_close_all(&w->srv, "drained");
            atomic_store_explicit(&w->nallocs, w->srv.allocs.count, memory_order_relaxed);
            tlog(CFG_LOG_INFO, "drain_closed", LF_U("worker", w->id), LF_U("allocations", ended));
        }
        if (w->cfg->strict_expiry) revalidate(w);
        unauth_episode(w);
        tcp_expire(w);
        graveyard_flush(w);
        if (stop) break;
    }
    return NULL;
}

void relay_drain(struct relay *r, uint32_t deadline_s)
{
    struct relay_shared *sh = &r->shared;
    uint64_t deadline = monotonic_ms() + (uint64_t)deadline_s * 1000;
    atomic_store(&sh->drain_deadline_ms, deadline);
    atomic_store(&sh->drain_close, false);
    bool was = atomic_exchange(&sh->draining, true);
    tlog(CFG_LOG_WARN, was ? "drain_extended" : "drain_started", LF_U("deadline_s", deadline_s),
         LF_U("allocations", relay_active(r)),
         LF_U("alternate_servers", r->cfg->ndrain_alternates));
}

void relay_drain_cancel(struct relay *r)
{
    struct relay_shared *sh = &r->shared;
    if (!atomic_exchange(&sh->draining, false)) return;
    atomic_store(&sh->drain_close, false);
    tlog(CFG_LOG_WARN, "drain_cancelled", LF_U("allocations", relay_active(r)));
}

bool relay_draining(struct relay *r, uint64_t *deadline_ms)
{
    if (deadline_ms) *deadline_ms = atomic_load(&r->shared.drain_deadline_ms);
    return atomic_load(&r->shared.draining);
}

void relay_drain_close(struct relay *r)
{
    atomic_store(&r->shared.drain_close, true);
}

uint64_t relay_now_ms(void)
{
    return monotonic_ms();
}

unsigned relay_workers(const struct relay *r)
{
    return r->nworkers;
}

bool relay_alive(struct relay *r, uint64_t max_age_ms)
{
    uint64_t now = monotonic_ms();
    for (unsigned i = 0; i < r->nworkers; i++) {
        uint64_t beat = atomic_load_explicit(&r->workers[i].beat_ms, memory_order_relaxed);
        if (now > beat + max_age_ms) return false;
    }
    return true;
}

uint64_t relay_active(struct relay *r)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < r->nworkers; i++)
        n += atomic_load_explicit(&r->workers[i].nallocs, memory_order_relaxed);
    return n;
}

int relay_start(struct relay *r)
{
    fd_budget_init(&r->shared);
    for (unsigned i = 0; i < r->nworkers; i++) {
        struct worker *w = &r->workers[i];
        w->now_ms = monotonic_ms();
        atomic_store_explicit(&w->beat_ms, w->now_ms, memory_order_relaxed);
        int rc = pthread_create(&w->thread, NULL, worker_main, w);
        if (rc) {
            tlog(CFG_LOG_ERROR, "thread_failed", LF_U("worker", i), LF_S("error", strerror(rc)));
            return -1;
        }
        w->started = true;
    }
    tlog(CFG_LOG_INFO, "started", LF_U("workers", r->nworkers), LF_S("realm", r->cfg->realm),
         LF_U("users", r->users.n), LF_U("rest_secrets", r->cfg->nsecrets),
         LF_S("database", r->cfg->database ? r->cfg->database : ""));
    return 0;
}

void relay_close(struct relay *r, struct srv_counters *srv, struct relay_counters *io)
{
    if (!r) return;
    uint64_t one = 1;
    for (unsigned i = 0; i < r->nworkers; i++) {
        struct worker *w = &r->workers[i];
        if (w->started && write(w->stop.fd, &one, sizeof(one)) != sizeof(one))
            tlog(CFG_LOG_WARN, "stop_signal_failed", LF_U("worker", i));
    }
    if (srv) memset(srv, 0, sizeof(*srv));
    if (io) memset(io, 0, sizeof(*io));
    for (unsigned i = 0; i < r->nworkers; i++) {
        struct worker *w = &r->workers[i];
        if (w->started) pthread_join(w->thread, NULL);
        w->now_ms = monotonic_ms();
        w->now_ns = realtime_ns();
        worker_free(w);
        for (int k = 0; srv && k < SRV_C_COUNT; k++)
            srv->v[k] += w->srv.c.v[k];
        for (int k = 0; io && k < RELAY_C_COUNT; k++)
            io->v[k] += w->io.v[k];
    }
    offload_close(r);
    shared_free(r);
    if (r->record_fd >= 0) close(r->record_fd);
    pthread_mutex_destroy(&r->query_lock);
    SSL_CTX_free(r->tls);
    free(r->workers);
    free(r);
}
