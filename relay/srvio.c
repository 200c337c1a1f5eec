/* srvio.c: the I/O the TURN server asks for through struct srv_io (server.h): port pools and
 * per-user quotas (shared by the workers, under the shared lock: allocation set-up only),
 * relay sockets, randomness and the log events of allocations. */
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "addr.h"
#include "dtls.h"
#include "log.h"
#include "wire.h"
#include "fwd.h"
#include "offload.h"
#include "tcp.h"
#include "tcprelay.h"
#include "udp.h"
#include "worker.h"

static int io_port_take(void *ctx, unsigned pool, bool even, bool reserve_next, uint64_t token,
                        uint64_t now_s, uint16_t *port)
{
    struct worker *w = ctx;
    struct relay_shared *sh = w->shared;
    int rc = -1;
    pthread_mutex_lock(&sh->lock);
    if (pool < sh->npools)
        rc = ports_take(&sh->pools[pool], even, reserve_next, token, now_s, port);
    pthread_mutex_unlock(&sh->lock);
    return rc;
}

static int io_port_claim(void *ctx, uint64_t token, uint64_t now_s, unsigned *pool, uint16_t *port)
{
    struct worker *w = ctx;
    struct relay_shared *sh = w->shared;
    int rc = -1;
    pthread_mutex_lock(&sh->lock);
    /* Only the pools of this generation: a reservation in a pool a reload retired is not
     * honoured (the address or range it came from is gone; the client gets 508). */
    for (size_t i = 0; i < sh->npools && i < w->gen->npools && rc; i++)
        if (w->gen->pool_addrs[i].sa.sa_family != AF_UNSPEC &&
            ports_claim(&sh->pools[i], token, now_s, port) == 0) {
            *pool = (unsigned)i;
            rc = 0;
        }
    pthread_mutex_unlock(&sh->lock);
    return rc;
}

static void io_port_release(void *ctx, unsigned pool, uint16_t port)
{
    struct worker *w = ctx;
    struct relay_shared *sh = w->shared;
    pthread_mutex_lock(&sh->lock);
    if (pool < sh->npools) ports_release(&sh->pools[pool], port);
    pthread_mutex_unlock(&sh->lock);
}

/* A relay socket refused for want of file descriptors: counted, logged once per episode. */
static int relay_fd_short(struct worker *w)
{
    struct relay_shared *sh = w->shared;
    w->io.v[RELAY_C_relay_fd_refused]++;
    if (!atomic_exchange(&sh->fd_short_relay, true))
        tlog(CFG_LOG_WARN, "relay_fd_limit", LF_U("worker", w->id),
             LF_U("open_fds", (uint64_t)atomic_load(&sh->fds)), LF_U("limit", (uint64_t)sh->fd_max),
             LF_U("reserve", (uint64_t)fd_spare_relay(sh)));
    return -EMFILE;
}

static int io_relay_open(void *ctx, struct allocation *a, struct alloc_relay *r)
{
    struct worker *w = ctx;
    int family = r->addr.sa.sa_family;
    /* Keep a reserve for listeners, the database, the ops API and accepts: new allocations
     * get 508 before the process runs out. */
    if (!fd_take(w->shared, fd_spare_relay(w->shared))) return relay_fd_short(w);
    /* The episode ends with room to spare again (not at the first success: no flapping). */
    if (atomic_load(&w->shared->fd_short_relay) &&
        fd_room(w->shared) > 2 * fd_spare_relay(w->shared) &&
        atomic_exchange(&w->shared->fd_short_relay, false))
        tlog(CFG_LOG_WARN, "relay_fd_limit_ended", LF_U("worker", w->id),
             LF_U("open_fds", (uint64_t)atomic_load(&w->shared->fds)));
    if (a->tcp) { /* RFC 6062: the relayed address listens for peers */
        int rc = tcprelay_listen(w, a, r);
        if (rc) fd_give(w->shared);
        return rc;
    }
    int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        int err = errno;
        fd_give(w->shared);
        return -err;
    }
    int one = 1;
    if (family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (a->dont_fragment) {
        int v4 = IP_PMTUDISC_DO;
        int rc = family == AF_INET ? setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &v4, sizeof(v4))
                                   : setsockopt(fd, IPPROTO_IPV6, IPV6_DONTFRAG, &one, sizeof(one));
        if (rc) {
            int err = errno;
            close(fd);
            fd_give(w->shared);
            return -err;
        }
    }
    if (bind(fd, &r->addr.sa, addr_len(&r->addr))) {
        int err = errno;
        close(fd);
        fd_give(w->shared);
        return -err;
    }
    udp_rx_options(w, fd, family);
    udp_recverr_on(fd, family); /* RFC 8656 11: ICMP errors from peers (fwd.c peer_errors) */
    struct relay_sock *rs = calloc(1, sizeof(*rs));
    if (!rs) {
        close(fd);
        fd_give(w->shared);
        return -ENOMEM;
    }
    *rs = (struct relay_sock){.h = {.fd = fd, .fn = fwd_peer_readable},
                              .a = a,
                              .family = family,
                              .dont_fragment = a->dont_fragment};
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &rs->h};
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev)) {
        int err = errno;
        close(fd);
        fd_give(w->shared);
        free(rs);
        return -err;
    }
    r->io = rs;
    return 0;
}

static void io_relay_close(void *ctx, struct allocation *a, struct alloc_relay *r)
{
    struct worker *w = ctx;
    struct relay_sock *rs = r->io;
    if (!rs) return;
    offload_forget(w, a, rs->family); /* the kernel stops relaying for this socket first */
    if (rs->h.fd >= 0) fd_give(w->shared);
    worker_bury(w, &rs->h, rs);
}

/* Per-user counts: open addressing on the name; entries stay (count 0) once made, so the
 * table only grows with distinct users seen, bounded by the users that can authenticate. */
struct quota_entry {
    char name[STUN_MAX_USERNAME + 1];
    uint32_t count;
    uint32_t fleet; /* the user's allocations on the other nodes (relay_set_fleet_users) */
    bool used;
};

static struct quota_entry *quota_slot(struct relay_shared *sh, const char *user, size_t ulen)
{
    if (!sh->quota_cap) return NULL;
    uint64_t h = fnv1a64(FNV64_INIT, user, ulen);
    for (size_t k = 0; k < sh->quota_cap; k++) {
        struct quota_entry *e = &sh->quota[(h + k) & (sh->quota_cap - 1)];
        if (!e->used || (strlen(e->name) == ulen && memcmp(e->name, user, ulen) == 0)) return e;
    }
    return NULL;
}

static int quota_grow(struct relay_shared *sh)
{
    size_t cap = sh->quota_cap ? sh->quota_cap * 2 : 256;
    struct quota_entry *old = sh->quota, *nq = calloc(cap, sizeof(*nq));
    if (!nq) return -1;
    size_t oldcap = sh->quota_cap;
    sh->quota = nq;
    sh->quota_cap = cap;
    for (size_t i = 0; i < oldcap; i++) {
        if (!old[i].used) continue;
        struct quota_entry *e = quota_slot(sh, old[i].name, strlen(old[i].name));
        *e = old[i];
    }
    free(old);
    return 0;
}

/* The entry for user, made when missing (under the lock); NULL: out of memory. */
static struct quota_entry *quota_entry(struct relay_shared *sh, const char *user, size_t ulen)
{
    if ((sh->quota_used + 1) * 2 > sh->quota_cap && quota_grow(sh)) return NULL;
    struct quota_entry *e = quota_slot(sh, user, ulen);
    if (e && !e->used) {
        memcpy(e->name, user, ulen);
        e->name[ulen] = 0;
        e->used = true;
        sh->quota_used++;
    }
    return e;
}

void relay_set_fleet_users(struct relay *r, const char *const *users, const uint32_t *counts,
                           size_t n)
{
    struct relay_shared *sh = &r->shared;
    pthread_mutex_lock(&sh->lock);
    for (size_t i = 0; i < sh->quota_cap; i++)
        sh->quota[i].fleet = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(users[i]);
        if (len > STUN_MAX_USERNAME) continue;
        struct quota_entry *e = quota_entry(sh, users[i], len);
        if (e) e->fleet = counts[i];
    }
    pthread_mutex_unlock(&sh->lock);
}

void relay_user_allocations(struct relay *r, void (*fn)(void *ctx, const char *user, uint32_t n),
                            void *ctx)
{
    struct relay_shared *sh = &r->shared;
    pthread_mutex_lock(&sh->lock);
    for (size_t i = 0; i < sh->quota_cap; i++)
        if (sh->quota[i].used && sh->quota[i].count) fn(ctx, sh->quota[i].name, sh->quota[i].count);
    pthread_mutex_unlock(&sh->lock);
}

static int io_quota_take(void *ctx, const char *user, size_t ulen, uint32_t user_max)
{
    struct worker *w = ctx;
    struct relay_shared *sh = w->shared;
    int rc = -1;
    pthread_mutex_lock(&sh->lock);
    if (sh->total >= sh->max_total) goto out;
    struct quota_entry *e = quota_entry(sh, user, ulen);
    if (!e) goto out;
    uint32_t limit = user_max ? user_max : sh->max_per_user; /* 0: unlimited */
    if (limit && e->count >= limit) goto out;
    /* Across the fleet: as of the other nodes' last heartbeats (eventually consistent). */
    if (sh->max_per_user_fleet && (uint64_t)e->count + e->fleet >= sh->max_per_user_fleet) goto out;
    e->count++;
    sh->total++;
    rc = 0;
out:
    pthread_mutex_unlock(&sh->lock);
    return rc;
}

static void io_quota_release(void *ctx, const char *user, size_t ulen)
{
    struct worker *w = ctx;
    struct relay_shared *sh = w->shared;
    pthread_mutex_lock(&sh->lock);
    struct quota_entry *e = quota_slot(sh, user, ulen);
    if (e && e->used && e->count) {
        e->count--;
        sh->total--;
    }
    pthread_mutex_unlock(&sh->lock);
}

static void io_random(void *ctx, void *buf, size_t len)
{
    (void)ctx;
    uint8_t *p = buf;
    while (len) {
        ssize_t k = getrandom(p, len, 0);
        if (k <= 0) continue; /* EINTR; the pool is initialised long before a relay runs */
        p += k;
        len -= (size_t)k;
    }
}

static void io_event(void *ctx, const struct allocation *a, const char *what,
                     const union stun_addr *peer, enum policy_verdict verdict)
{
    struct worker *w = ctx;
    if (peer) {
        tlog(CFG_LOG_WARN, "peer_denied", LF_U("allocation", a->id), LF_S("user", a->username),
             LF_A("client", &a->tuple.client), LF_A("peer", peer),
             LF_S("reason", policy_verdict_names[verdict]));
        return;
    }
    if (what[0] != 'a') {
        /* The allocation ends (it is freed right after this): its fast-path bindings go (what
         * they carried is measured), its quality record, then its meter goes. */
        offload_forget(w, a, 0);
        worker_record(w, a, what);
        qos_alloc_free(a->qos);
        /* Over DTLS the session ends with its allocation (at the end of this loop pass, so
         * that the answer to a Refresh with lifetime 0 still goes out through it). */
        if (a->tuple.transport == SRV_DTLS) dtls_alloc_ended(w, a->client_io);
    }
    enum cfg_log_level lvl = CFG_LOG_INFO;
    if (!log_enabled(lvl)) return;
    char relayed[ADDR_STRLEN * 2 + 2] = "";
    for (unsigned i = 0; i < a->nrelay; i++) {
        char buf[ADDR_STRLEN];
        if (i) strcat(relayed, ",");
        strcat(relayed, addr_str(&a->relay[i].advertised, buf));
    }
    uint64_t age = w->now_ms > a->created_ms ? w->now_ms - a->created_ms : 0;
    tlog(lvl, what[0] == 'a' ? "allocation_created" : "allocation_ended", LF_U("allocation", a->id),
         LF_S("reason", what), LF_S("user", a->username), LF_A("client", &a->tuple.client),
         LF_S("relayed", relayed), LF_U("worker", w->id), LF_U("age_ms", age),
         LF_U("pkts_to_peer", a->pkts_to_peer), LF_U("bytes_to_peer", a->bytes_to_peer),
         LF_U("pkts_to_client", a->pkts_to_client), LF_U("bytes_to_client", a->bytes_to_client));
}

static int io_peer_connect(void *ctx, struct allocation *a, struct srv_tconn *tc)
{
    return tcprelay_connect(ctx, a, tc);
}

static void io_tconn_close(void *ctx, struct srv_tconn *tc)
{
    tcprelay_close(ctx, tc);
}

static void io_client_send(void *ctx, struct allocation *a, const uint8_t *msg, size_t len)
{
    tcprelay_client_send(ctx, a, msg, len);
}

const struct srv_io srvio_template = {
    .peer_connect = io_peer_connect,
    .tconn_close = io_tconn_close,
    .client_send = io_client_send,
    .port_take = io_port_take,
    .port_claim = io_port_claim,
    .port_release = io_port_release,
    .relay_open = io_relay_open,
    .relay_close = io_relay_close,
    .quota_take = io_quota_take,
    .quota_release = io_quota_release,
    .random = io_random,
    .event = io_event,
    .channel_bound = offload_channel_bound,
};
