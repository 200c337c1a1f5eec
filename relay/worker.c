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
#include "dtls.h"
#include "hostaddr.h"
#include "log.h"
#include "addr.h"
#include "fwd.h"
#include "mobility.h"
#include "offload.h"
#include "tcp.h"
#include "timeline.h"
#include "udp.h"
#include "store.h"
#include "records.h"
#include "webhook.h"
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
    tcp_handoff_close_all(w);
    mobility_close_all(w); /* allocations on their way here: ended with the rest */
    dtls_close_all(w);     /* and DTLS ones with their sessions */
    if (w->srv_ready) srv_free(&w->srv);
    offload_worker_free(w);
    if (w->hostaddr) hostaddr_drop(w->hostaddr, w->self);
    graveyard_flush(w);
    free(w->graveyard);
    for (size_t i = 0; i < w->nlisteners; i++) {
        if (w->listeners[i]->h.fd >= 0) close(w->listeners[i]->h.fd);
        free(w->listeners[i]);
    }
    relay_gen_put(w->gen); /* after srv_free: the last quality records went to its file */
    w->gen = NULL;
    if (w->stop.fd >= 0) close(w->stop.fd);
    if (w->mbox.fd >= 0) close(w->mbox.fd);
    if (w->handoff.fd >= 0) close(w->handoff.fd);
    if (w->mob.fd >= 0) close(w->mob.fd);
    if (w->mbox_ready) {
        pthread_mutex_destroy(&w->mbox_lock);
        pthread_cond_destroy(&w->mbox_cond);
    }
    if (w->epfd >= 0) close(w->epfd);
    free(w->listeners);
    fwd_free(w->fwd);
}

/* What the workers share beyond a generation: the quota table's limits, the nonce key. The
 * port pools come with the first generation (reload.c build_pools). 0, or -1. */
static int shared_init(struct relay *r, const struct tern_config *cfg)
{
    struct relay_shared *sh = &r->shared;
    pthread_mutex_init(&sh->lock, NULL);
    sh->max_per_user = cfg->max_per_user;
    sh->max_per_user_fleet = cfg->max_per_user_fleet;
    sh->max_total = cfg->max_total;
    if (getrandom(r->nonce_key.secret, sizeof(r->nonce_key.secret), 0) !=
        sizeof(r->nonce_key.secret))
        return -1;
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
    OPENSSL_cleanse(&r->nonce_key, sizeof(r->nonce_key));
    hostaddr_close(r->hostaddr);
}

/* The relay's own addresses (listeners, relay addresses, external address; with a wildcard
 * every address of the host, kept current by relay/hostaddr.c) at every listener port and
 * every relayed port: peers the policy refuses so the relay never sends into itself. Each
 * worker decides with its own copy of the policy, holding its own snapshot of the set; a
 * reload changes the spec (hostaddr_respec) and the workers take the new snapshot. */
int self_addresses(struct relay *r, const struct relay_gen *g)
{
    const struct tern_config *cfg = &g->cfg;
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
    int rc = -1;
    if (ips && ports) {
        for (size_t i = 0; i < nip; i++) {
            ips[i] = i < cfg->nlisten ? g->addrs[i]
                     : i < cfg->nlisten + cfg->nrelay_addresses
                         ? cfg->relay_addresses[i - cfg->nlisten]
                         : cfg->relay_external;
            spec.wildcard |= i < nip - 1 && addr_is_wildcard(&ips[i]);
        }
        for (size_t j = 0; j < cfg->nlisten; j++)
            ports[j] = (uint16_t)addr_port(&g->addrs[j]);
        if (r->hostaddr)
            rc = hostaddr_respec(r->hostaddr, &spec);
        else
            rc = (r->hostaddr = hostaddr_open(&spec)) ? 0 : -1;
    }
    free(ips);
    free(ports);
    return rc;
}

struct relay *relay_open(struct tern_config *cfg)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned n = cfg->workers ? cfg->workers : (unsigned)(cpus > 0 ? cpus : 1);
    struct relay *r = calloc(1, sizeof(*r));
    if (!r) {
        cfg_free(cfg);
        return NULL;
    }
    pthread_mutex_init(&r->query_lock, NULL);
    pthread_mutex_init(&r->gen_lock, NULL);
    pthread_mutex_init(&r->reload_lock, NULL);
    pthread_mutex_init(&r->fleet_lock, NULL);
    r->workers = calloc(n, sizeof(*r->workers));
    if (!r->workers || shared_init(r, cfg)) {
        tlog(CFG_LOG_ERROR, "startup_failed", LF_S("step", "shared state"));
        cfg_free(cfg);
        relay_close(r, NULL, NULL);
        return NULL;
    }
    /* Every worker closable before it is set up (relay_close on a failure half-way). */
    r->nworkers = n;
    for (unsigned i = 0; i < n; i++) {
        struct worker *w = &r->workers[i];
        w->epfd = w->stop.fd = w->mbox.fd = w->handoff.fd = w->mob.fd = -1;
    }
    /* The first generation: users, policy, listener sockets, TLS, record file, port pools. */
    r->gen = relay_gen_new(r, cfg, NULL, NULL);
    if (!r->gen) {
        relay_close(r, NULL, NULL);
        return NULL;
    }
    atomic_store(&r->generation, r->gen->id);
    struct relay_gen *g = r->gen;
    const struct tern_config *c = &g->cfg;
    r->cache = credcache_open(c, &g->users);
    if (!r->cache) {
        relay_close(r, NULL, NULL);
        return NULL;
    }
    r->creds = credcache_creds(r->cache);

    if (c->qos_webhook && !(r->webhook = webhook_start(c->qos_webhook, c->qos_webhook_queue))) {
        relay_close(r, NULL, NULL);
        return NULL;
    }
    if (c->qos_record_database &&
        !(r->records = records_start(c->database, c->database_password_file, c->cluster_node_id,
                                     c->qos_record_database_queue, NULL))) {
        relay_close(r, NULL, NULL);
        return NULL;
    }

    for (unsigned i = 0; i < n; i++) {
        struct worker *w = &r->workers[i];
        w->id = i;
        w->relay = r;
        atomic_fetch_add(&g->refs, 1);
        w->gen = g;
        w->cfg = c;
        atomic_store(&w->gen_seen, g->id);
        w->shared = &r->shared;
        w->epfd = epoll_create1(EPOLL_CLOEXEC);
        w->stop = (struct ep_handler){.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC), .fn = on_stop};
        w->mbox =
            (struct ep_handler){.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC), .fn = worker_mbox};
        w->handoff = (struct ep_handler){.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC),
                                         .fn = tcp_handoff_event};
        w->mob =
            (struct ep_handler){.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC), .fn = mobility_event};
        w->mbox_ready = pthread_mutex_init(&w->mbox_lock, NULL) == 0;
        if (w->mbox_ready && pthread_cond_init(&w->mbox_cond, NULL)) {
            pthread_mutex_destroy(&w->mbox_lock);
            w->mbox_ready = false;
        }
        w->qos_on = c->qos_enabled;
        w->record_fd = g->record_fd;
        w->webhook = r->webhook;
        w->records = r->records;
        w->tl_gen = g->id;
        w->now_ns = realtime_ns();
        w->fwd = fwd_new();
        struct srv_io io = srvio_template;
        io.ctx = w;
        w->now_ms = monotonic_ms();
        /* Allocation ids carry the worker number in the top bits: unique relay-wide. */
        if (w->epfd < 0 || w->stop.fd < 0 || w->mbox.fd < 0 || w->handoff.fd < 0 || w->mob.fd < 0 ||
            !w->mbox_ready || !w->fwd || epoll_add(w, &w->stop) || epoll_add(w, &w->mbox) ||
            epoll_add(w, &w->handoff) || epoll_add(w, &w->mob) ||
            srv_init(&w->srv, &g->opt, &io, (uint64_t)(i + 1) << 48)) {
            tlog(CFG_LOG_ERROR, "worker_failed", LF_U("worker", i), LF_S("error", strerror(errno)));
            relay_close(r, NULL, NULL);
            return NULL;
        }
        w->srv_ready = true;
        w->srv.worker = (uint8_t)i; /* the top byte of its CONNECTION-IDs (server.workers <= 256) */
        w->srv.unix_s = (uint64_t)time(NULL);
        for (size_t j = 0; j < c->nlisten; j++) {
            int *fd = &g->fds[j * g->nfds_per + i];
            if (listener_add(w, &c->listen[j], *fd, &g->addrs[j], g)) {
                tlog(CFG_LOG_ERROR, "worker_failed", LF_U("worker", i),
                     LF_S("error", strerror(errno)));
                relay_close(r, NULL, NULL);
                return NULL;
            }
            *fd = -1; /* the listener owns it now */
        }
    }
    for (size_t j = 0; j < c->nlisten; j++)
        tlog(CFG_LOG_INFO, "listening",
             LF_S("transport", cfg_transport_name(c->listen[j].transport)),
             LF_A("address", &g->addrs[j]), LF_U("port", addr_port(&g->addrs[j])),
             LF_U("workers", n));
    if (self_addresses(r, g)) {
        relay_close(r, NULL, NULL);
        return NULL;
    }
    for (unsigned i = 0; i < n; i++) {
        struct worker *w = &r->workers[i];
        w->hostaddr = r->hostaddr;
        w->policy = g->policy;
        w->policy.self = w->self = hostaddr_take(r->hostaddr, NULL, &w->self_gen);
        w->srv.opt.policy = &w->policy;
    }
    for (size_t i = 0; i < c->nrelay_addresses; i++)
        tlog(CFG_LOG_INFO, "relay_address", LF_A("address", &c->relay_addresses[i]),
             LF_U("port_min", c->port_min), LF_U("port_max", c->port_max));
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

/* The fleet thread published a new steering table or nonce keys: this worker's copies. */
static void fleet_take(struct worker *w)
{
    struct relay *r = w->relay;
    pthread_mutex_lock(&r->fleet_lock);
    w->steer = r->steer;
    memcpy(w->fleet_keys, r->fleet_keys, sizeof(w->fleet_keys));
    w->srv.nfleet_keys = r->nfleet_keys;
    w->fleet_gen = atomic_load(&r->fleet_gen);
    pthread_mutex_unlock(&r->fleet_lock);
    w->srv.fleet_keys = w->fleet_keys;
    w->steer_any = false;
    for (int f = 0; f < 2; f++)
        for (int t = 0; t < SRV_TRANSPORTS; t++)
            w->steer_any |= w->steer.set[f][t];
    if (!w->steer_any) memset(w->srv.steer, 0, sizeof(w->srv.steer));
}

/* Steer new Allocates now? While draining (known here at once, not at the fleet's next
 * heartbeat), when the fleet thread says so (CPU), or once the node holds steer.above
 * allocations (summed over the workers' last passes: at most a pass's worth past the limit). */
static void steer_pass(struct worker *w)
{
    bool on = atomic_load_explicit(&w->shared->draining, memory_order_relaxed) || w->steer.always ||
              (w->steer.above && relay_active(w->relay) >= w->steer.above);
    for (int f = 0; f < 2; f++)
        for (int t = 0; t < SRV_TRANSPORTS; t++)
            w->srv.steer[f][t] = on && w->steer.set[f][t] ? &w->steer.to[f][t] : NULL;
}

void relay_set_steer(struct relay *r, const struct relay_steer *st)
{
    pthread_mutex_lock(&r->fleet_lock);
    if (memcmp(&r->steer, st, sizeof(*st)) != 0) {
        r->steer = *st;
        atomic_fetch_add(&r->fleet_gen, 1);
    }
    pthread_mutex_unlock(&r->fleet_lock);
}

void relay_set_nonce_keys(struct relay *r, const struct auth_nonce_key *keys, size_t n)
{
    if (n > RELAY_FLEET_KEYS) n = RELAY_FLEET_KEYS;
    pthread_mutex_lock(&r->fleet_lock);
    if (n != r->nfleet_keys || memcmp(r->fleet_keys, keys, n * sizeof(*keys)) != 0) {
        memset(r->fleet_keys, 0, sizeof(r->fleet_keys));
        memcpy(r->fleet_keys, keys, n * sizeof(*keys));
        r->nfleet_keys = n;
        atomic_fetch_add(&r->fleet_gen, 1);
    }
    pthread_mutex_unlock(&r->fleet_lock);
}

uint64_t relay_poor(struct relay *r)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < r->nworkers; i++)
        n += atomic_load_explicit(&r->workers[i].npoor, memory_order_relaxed);
    return n;
}

size_t relay_listeners(struct relay *r, struct relay_listener_info *out, size_t max)
{
    const struct tern_config *c = relay_config_get(r);
    const struct relay_gen *g =
        (const struct relay_gen *)(const void *)((const char *)c - offsetof(struct relay_gen, cfg));
    for (size_t j = 0; j < c->nlisten && j < max; j++)
        out[j] =
            (struct relay_listener_info){.transport = c->listen[j].transport, .addr = g->addrs[j]};
    size_t n = c->nlisten;
    relay_config_put(r, c);
    return n;
}

uint64_t relay_relayed(struct relay *r)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < r->nworkers; i++)
        n += atomic_load_explicit(&r->workers[i].relayed, memory_order_relaxed);
    return n;
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
        atomic_store_explicit(
            &w->relayed, w->io.v[RELAY_C_peer_tx_datagrams] + w->io.v[RELAY_C_peer_rx_datagrams],
            memory_order_relaxed);
        if (atomic_load_explicit(&w->relay->fleet_gen, memory_order_acquire) != w->fleet_gen)
            fleet_take(w);
        if (w->steer_any) steer_pass(w);
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
        fwd_flush(w);    /* the pass's one flush point: peer datagrams queued for UDP clients */
        mobility_run(w); /* RFC 8016: allocations moving between workers, nothing queued now */
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
        timeline_sweep(w); /* once a second: meters ticked, quality episodes logged */
        tcp_expire(w);
        dtls_expire(w);  /* also closes the sessions whose allocations ended in this pass */
        worker_adopt(w); /* a reloaded configuration, between two passes */
        listeners_reap(w);
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
    const struct tern_config *cfg = relay_config_get(r);
    tlog(CFG_LOG_WARN, was ? "drain_extended" : "drain_started", LF_U("deadline_s", deadline_s),
         LF_U("allocations", relay_active(r)), LF_U("alternate_servers", cfg->ndrain_alternates));
    relay_config_put(r, cfg);
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

int relay_database(struct relay *r, uint64_t *outages)
{
    return credcache_database(r->cache, outages);
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
        char name[32]; /* top -H, ps -L and /proc/PID/task/TID/comm show it (15 bytes kept) */
        snprintf(name, sizeof name, "tern-worker-%u", i % 1000);
        name[15] = '\0';
        pthread_setname_np(w->thread, name);
    }
    const struct tern_config *c = &r->gen->cfg; /* no reload before this returns */
    char db[STORE_ERR_LEN];
    store_display_name(c->database, db, sizeof db); /* a URI without its password */
    tlog(CFG_LOG_INFO, "started", LF_U("workers", r->nworkers), LF_S("realm", c->realm),
         LF_U("users", r->gen->users.n), LF_U("rest_secrets", c->nsecrets),
         LF_S("database", c->database ? db : ""));
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
    /* All joined before any is freed: a worker may hand a connection to another until it
     * stops (tcp_handoff). */
    for (unsigned i = 0; i < r->nworkers; i++)
        if (r->workers[i].started) pthread_join(r->workers[i].thread, NULL);
    for (unsigned i = 0; i < r->nworkers; i++) {
        struct worker *w = &r->workers[i];
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
    webhook_stop(r->webhook);       /* after the workers: their last records are queued */
    records_stop(r->records, NULL); /* likewise; it flushes them within RECORDS_STOP_MS */
    relay_gen_put(r->gen);
    pthread_mutex_destroy(&r->query_lock);
    pthread_mutex_destroy(&r->gen_lock);
    pthread_mutex_destroy(&r->reload_lock);
    pthread_mutex_destroy(&r->fleet_lock);
    OPENSSL_cleanse(r->fleet_keys, sizeof(r->fleet_keys));
    for (unsigned i = 0; r->workers && i < r->nworkers; i++)
        OPENSSL_cleanse(r->workers[i].fleet_keys, sizeof(r->workers[i].fleet_keys));
    free(r->workers);
    free(r);
}
