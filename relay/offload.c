/* offload.c: the control plane of the kernel fast path; docs/offload.md tells the design.
 *
 *   offload_open         relay.offload -> load relay/bpf/tern_xdp.bpf.c (libbpf skeleton),
 *                        one ring buffer per worker, attach to the interfaces of the relay's
 *                        UDP listener and relay addresses through bpf_links (native XDP, then
 *                        generic), or log why the user-space path runs;
 *   offload_channel_bound a ChannelBind succeeded (srv_io hook): if the channel qualifies,
 *                        two bindings go into the maps, c2p (client -> peer) and p2c;
 *   offload_pass         each loop pass: after a configuration or policy change, and once a
 *                        second, every binding is re-checked exactly as srv_handle would
 *                        decide (channel, permission, allocation alive, peer policy) and
 *                        removed when it no longer holds; its expiry is kept in the map, so
 *                        the program itself stops forwarding at the very millisecond;
 *   on_record            each datagram the program forwarded left a record in the worker's
 *                        ring: the same QoS tap and counters as the user-space path run on it;
 *   offload_forget       the allocation ends: its bindings go first, then its records.
 *
 * Only the worker that owns an allocation touches its bindings and its ring: no locks. */
#include "offload.h"

#include <string.h>

#include "log.h"
#include "worker.h"

#ifndef TERN_OFFLOAD

void offload_open(struct relay *r)
{
    if (r->gen->cfg.offload != CFG_OFFLOAD_OFF)
        tlog(CFG_LOG_WARN, "offload", LF_S("path", "user"),
             LF_S("reason", "built without the XDP fast path (no libbpf, clang or bpftool)"));
}

void offload_close(struct relay *r)
{
    (void)r;
}

void offload_worker_free(struct worker *w)
{
    (void)w;
}

void offload_pass(struct worker *w)
{
    (void)w;
}

void offload_drain(struct worker *w)
{
    (void)w;
}

void offload_channel_bound(void *ctx, struct allocation *a, uint16_t num,
                           const union stun_addr *peer)
{
    (void)ctx, (void)a, (void)num, (void)peer;
}

void offload_forget(struct worker *w, const struct allocation *a, int family)
{
    (void)w, (void)a, (void)family;
}

const char *offload_datapath(const struct worker *w, const struct allocation *a, uint16_t num)
{
    (void)w, (void)a, (void)num;
    return "user";
}

bool offload_stats(const struct relay *r, uint64_t *out, unsigned n)
{
    (void)r, (void)out, (void)n;
    return false;
}

unsigned offload_stat_names(const char *const **names)
{
    *names = NULL;
    return 0;
}

#else

#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>

#include "addr.h"
#include "offload_abi.h"
#include "tern_xdp.skel.h"

#define OFFLOAD_MAX_IFACES          16
_Static_assert(TERN_XDP_ST_COUNT <= OFFLOAD_MAX_STATS, "OFFLOAD_MAX_STATS too small");

static const char *const stat_names[TERN_XDP_ST_COUNT] = {
#define TERN_XDP_X_NAME(name, help) #name,
    TERN_XDP_STATS(TERN_XDP_X_NAME)
#undef TERN_XDP_X_NAME
};

struct offload {
    struct tern_xdp *skel;
    int link_fd[OFFLOAD_MAX_IFACES];
    unsigned nlinks;
    int ring_fd[TERN_XDP_MAX_WORKERS];
    unsigned nrings;
    int c2p_fd, p2c_fd;
};

/* One channel of one allocation handed to the kernel. */
struct binding {
    struct allocation *a;
    union stun_addr peer; /* canonical */
    uint16_t num;
    bool used;
    uint32_t gen;
    uint32_t next;       /* used: the next in its allocation's bucket; free: the next free
                            slot (index + 1; 0: none) */
    uint64_t expires_ms; /* as the maps hold it */
    struct tern_c2p_key ck;
    struct tern_p2c_key pk;
    struct tern_bind_val cv, pv;
};

struct offload_worker {
    struct ep_handler h; /* the ring's map fd, in the worker's epoll */
    struct worker *w;
    struct offload *o;
    struct ring_buffer *rb;
    int64_t mono_to_real; /* CLOCK_REALTIME - CLOCK_MONOTONIC, read at a drain's first record */
    bool have_offset;
    struct binding *b;
    uint32_t nb, capb, live;
    /* Bindings by allocation: buckets of slot chains (index + 1), so that a ChannelBind, an
     * allocation's end and a query find an allocation's bindings in O(1). */
    uint32_t *heads, nheads, free_head;
    uint64_t swept_ms;
    uint64_t gen_seen; /* the configuration generation the bindings were checked with */
    struct peer_policy policy_seen;
};

/* ---- helpers ---- */

__attribute__((format(printf, 2, 0))) static int libbpf_log(enum libbpf_print_level level,
                                                            const char *fmt, va_list ap)
{
    if (level == LIBBPF_DEBUG || !log_enabled(CFG_LOG_DEBUG)) return 0;
    char buf[512];
    vsnprintf(buf, sizeof(buf), fmt, ap);
    size_t n = strlen(buf);
    while (n && buf[n - 1] == '\n')
        buf[--n] = 0;
    tlog(CFG_LOG_DEBUG, "libbpf", LF_S("message", buf));
    return 0;
}

/* An IPv4-mapped IPv6 address (a dual-stack listener's IPv4 client) as the IPv4 it is. */
static union stun_addr unmapped(const union stun_addr *a)
{
    union stun_addr o = *a;
    static const uint8_t pfx[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (a->sa.sa_family == AF_INET6 && memcmp(a->v6.sin6_addr.s6_addr, pfx, 12) == 0) {
        memset(&o, 0, sizeof(o));
        o.v4.sin_family = AF_INET;
        o.v4.sin_port = a->v6.sin6_port;
        memcpy(&o.v4.sin_addr, a->v6.sin6_addr.s6_addr + 12, 4);
    }
    return o;
}

static void ip_bytes(const union stun_addr *a, uint8_t out[16])
{
    memset(out, 0, 16);
    if (a->sa.sa_family == AF_INET)
        memcpy(out, &a->v4.sin_addr, 4);
    else
        memcpy(out, a->v6.sin6_addr.s6_addr, 16);
}

static uint16_t port_be(const union stun_addr *a)
{
    return a->sa.sa_family == AF_INET ? a->v4.sin_port : a->v6.sin6_port;
}

static int64_t clock_ns(clockid_t c)
{
    struct timespec ts;
    clock_gettime(c, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static const struct alloc_relay *relay_of(const struct allocation *a, int family)
{
    for (unsigned i = 0; i < a->nrelay; i++)
        if (a->relay[i].addr.sa.sa_family == family && a->relay[i].io) return &a->relay[i];
    return NULL;
}

/* The source address the kernel picks toward peer (a wildcard relay address). */
static bool source_for(const union stun_addr *peer, union stun_addr *src)
{
    int fd = socket(peer->sa.sa_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    socklen_t sl = sizeof(*src);
    bool ok = connect(fd, &peer->sa, addr_len(peer)) == 0 && getsockname(fd, &src->sa, &sl) == 0;
    close(fd);
    return ok;
}

/* ---- the decision: may this channel be forwarded by the kernel right now? ---- */

/* NULL when it may (with *exp_ms: when it stops), else why not. */
static const char *eligible(const struct worker *w, const struct allocation *a, uint16_t num,
                            const union stun_addr *peer, uint64_t *exp_ms)
{
    const struct tern_config *cfg = w->cfg;
    if (cfg->offload == CFG_OFFLOAD_OFF) return "relay.offload: off";
    if (a->tuple.transport != SRV_UDP) return "TCP/TLS client";
    if (a->bw_to_peer.rate || a->bw_to_client.rate) return "bandwidth limit";
    if (cfg->qos_dscp == CFG_DSCP_BY_CLASS) return "qos.dscp: by-class";
    if (cfg->qos_priority) return "qos.priority";
    union stun_addr client = unmapped(&a->tuple.client);
    if (client.sa.sa_family != peer->sa.sa_family) return "client and peer families differ";
    if (!relay_of(a, peer->sa.sa_family)) return "no relay of the peer's family";
    if (policy_check_canonical(&w->policy, peer, true) != POLICY_OK) return "peer policy";
    uint64_t now = w->now_ms;
    const struct alloc_chan *c = alloc_channel(a, num, now);
    if (!c || !addr_equal(&c->peer, peer)) return "channel unbound or expired";
    if (!alloc_permitted(a, peer, now)) return "permission expired";
    if (a->expires_ms <= now) return "allocation expired";
    uint64_t e = c->expires_ms < a->expires_ms ? c->expires_ms : a->expires_ms;
    for (unsigned i = 0; i < a->nperms; i++)
        if (addr_ip_equal(&a->perms[i].ip, peer) && a->perms[i].expires_ms > now &&
            a->perms[i].expires_ms < e)
            e = a->perms[i].expires_ms;
    *exp_ms = e;
    return NULL;
}

/* ---- the worker's bindings ---- */

static uint32_t bucket(const struct offload_worker *ow, const struct allocation *a)
{
    uint64_t x = (uint64_t)(uintptr_t)a;
    x ^= x >> 29;
    x *= 0x9e3779b97f4a7c15ull;
    return (uint32_t)(x >> 32) & (ow->nheads - 1);
}

static void link_slot(struct offload_worker *ow, uint32_t i)
{
    uint32_t h = bucket(ow, ow->b[i].a);
    ow->b[i].next = ow->heads[h];
    ow->heads[h] = i + 1;
}

static void unlink_slot(struct offload_worker *ow, uint32_t i)
{
    uint32_t *pp = &ow->heads[bucket(ow, ow->b[i].a)];
    while (*pp && *pp != i + 1)
        pp = &ow->b[*pp - 1].next;
    if (*pp) *pp = ow->b[i].next;
}

static struct binding *find(struct offload_worker *ow, const struct allocation *a, uint16_t num)
{
    if (!ow->nheads) return NULL;
    for (uint32_t i = ow->heads[bucket(ow, a)]; i; i = ow->b[i - 1].next)
        if (ow->b[i - 1].a == a && ow->b[i - 1].num == num) return &ow->b[i - 1];
    return NULL;
}

/* A free slot (not yet linked); NULL when out of memory. */
static struct binding *slot_new(struct offload_worker *ow)
{
    if (ow->free_head) {
        struct binding *b = &ow->b[ow->free_head - 1];
        ow->free_head = b->next;
        return b;
    }
    if (ow->nb == ow->capb) {
        uint32_t cap = ow->capb ? ow->capb * 2 : 64;
        struct binding *nb = realloc(ow->b, cap * sizeof(*nb));
        if (!nb) return NULL;
        ow->b = nb;
        ow->capb = cap;
    }
    if (ow->nheads < ow->capb) { /* at most one binding per bucket on average */
        uint32_t *nh = calloc(ow->capb, sizeof(*nh));
        if (!nh) return NULL;
        free(ow->heads);
        ow->heads = nh;
        ow->nheads = ow->capb;
        for (uint32_t i = 0; i < ow->nb; i++)
            if (ow->b[i].used) link_slot(ow, i);
    }
    struct binding *b = &ow->b[ow->nb++];
    memset(b, 0, sizeof(*b));
    return b;
}

static void drain(struct offload_worker *ow)
{
    if (!ow->rb) return;
    ow->have_offset = false;
    ring_buffer__consume(ow->rb);
}

static void unbind(struct offload_worker *ow, struct binding *b, const char *why)
{
    struct worker *w = ow->w;
    bpf_map_delete_elem(ow->o->c2p_fd, &b->ck);
    bpf_map_delete_elem(ow->o->p2c_fd, &b->pk);
    /* What the program forwarded so far is still measured under this binding. */
    drain(ow);
    uint32_t i = (uint32_t)(b - ow->b);
    unlink_slot(ow, i);
    b->used = false;
    b->gen++;
    b->next = ow->free_head;
    ow->free_head = i + 1;
    ow->live--;
    w->io.v[RELAY_C_offload_unbound]++;
    tlog(CFG_LOG_DEBUG, "offload_unbind", LF_U("allocation", b->a->id), LF_U("channel", b->num),
         LF_A("peer", &b->peer), LF_S("reason", why));
}

static int maps_put(struct offload_worker *ow, struct binding *b)
{
    b->cv.expires_ns = b->pv.expires_ns = b->expires_ms * 1000000;
    if (bpf_map_update_elem(ow->o->c2p_fd, &b->ck, &b->cv, BPF_ANY)) return -errno;
    if (bpf_map_update_elem(ow->o->p2c_fd, &b->pk, &b->pv, BPF_ANY)) {
        int err = -errno;
        bpf_map_delete_elem(ow->o->c2p_fd, &b->ck);
        return err;
    }
    return 0;
}

static void bind_new(struct offload_worker *ow, struct allocation *a, uint16_t num,
                     const union stun_addr *peer, uint64_t exp_ms)
{
    struct worker *w = ow->w;
    const struct alloc_relay *rel = relay_of(a, peer->sa.sa_family);
    union stun_addr client = unmapped(&a->tuple.client), server = unmapped(&a->tuple.local);
    union stun_addr src = rel->addr;
    if (addr_is_wildcard(&server)) return; /* the listener address is not known */
    if (addr_is_wildcard(&src)) {
        if (!source_for(peer, &src)) return;
        if (src.sa.sa_family == AF_INET)
            src.v4.sin_port = rel->addr.v4.sin_port;
        else
            src.v6.sin6_port = rel->addr.v6.sin6_port;
    }
    struct binding *b = slot_new(ow);
    if (!b) return;
    uint32_t gen = b->gen;
    memset(b, 0, sizeof(*b));
    b->gen = gen;
    b->a = a;
    b->peer = *peer;
    b->num = num;
    b->expires_ms = exp_ms;
    uint8_t fam = peer->sa.sa_family == AF_INET ? 4 : 6;
    uint32_t slot = (uint32_t)(b - ow->b);
    uint8_t dscp_zero = w->cfg->qos_dscp == CFG_DSCP_ZERO;

    ip_bytes(&client, b->ck.client);
    ip_bytes(&server, b->ck.server);
    b->ck.client_port = port_be(&client);
    b->ck.server_port = port_be(&server);
    b->ck.channel = num;
    b->ck.family = fam;
    ip_bytes(&src, b->cv.src);
    ip_bytes(peer, b->cv.dst);
    b->cv.src_port = port_be(&src);
    b->cv.dst_port = port_be(peer);
    b->cv.leg = QOS_LEG_CLIENT;

    ip_bytes(peer, b->pk.peer);
    ip_bytes(&src, b->pk.relay);
    b->pk.peer_port = port_be(peer);
    b->pk.relay_port = port_be(&src);
    b->pk.family = fam;
    ip_bytes(&server, b->pv.src);
    ip_bytes(&client, b->pv.dst);
    b->pv.src_port = port_be(&server);
    b->pv.dst_port = port_be(&client);
    b->pv.channel = num;
    b->pv.leg = QOS_LEG_PEER;
    b->cv.dscp_zero = b->pv.dscp_zero = dscp_zero;
    b->cv.worker = b->pv.worker = w->id;
    b->cv.slot = b->pv.slot = slot;
    b->cv.gen = b->pv.gen = gen;

    int rc = maps_put(ow, b);
    if (rc) {
        b->next = ow->free_head; /* the slot goes back */
        ow->free_head = slot + 1;
        w->io.v[RELAY_C_offload_bind_failed]++;
        tlog(CFG_LOG_WARN, "offload_bind_failed", LF_U("allocation", a->id), LF_U("channel", num),
             LF_A("peer", peer), LF_S("error", strerror(-rc)));
        return;
    }
    b->used = true;
    link_slot(ow, slot);
    ow->live++;
    w->io.v[RELAY_C_offload_bound]++;
    tlog(CFG_LOG_DEBUG, "offload_bind", LF_U("allocation", a->id), LF_U("channel", num),
         LF_A("client", &client), LF_A("peer", peer), LF_A("relayed", &src));
}

void offload_channel_bound(void *ctx, struct allocation *a, uint16_t num,
                           const union stun_addr *peer)
{
    struct worker *w = ctx;
    struct offload_worker *ow = w->offload;
    if (!ow) return;
    struct binding *b = find(ow, a, num);
    uint64_t exp = 0;
    const char *why = eligible(w, a, num, peer, &exp);
    if (b && (why || !addr_equal(&b->peer, peer))) {
        unbind(ow, b, why ? why : "peer changed");
        b = NULL;
    }
    if (why) {
        tlog(CFG_LOG_DEBUG, "offload_not_bound", LF_U("allocation", a->id), LF_U("channel", num),
             LF_S("reason", why));
        return;
    }
    if (!b) {
        bind_new(ow, a, num, peer, exp);
        return;
    }
    if (b->expires_ms != exp) { /* a refresh: the maps learn the new expiry */
        b->expires_ms = exp;
        if (maps_put(ow, b)) unbind(ow, b, "map update failed");
    }
}

/* Every binding checked as srv_handle / srv_peer_data would decide now. */
static void sweep(struct offload_worker *ow)
{
    for (uint32_t i = 0; i < ow->nb; i++) {
        struct binding *b = &ow->b[i];
        if (!b->used) continue;
        uint64_t exp = 0;
        const char *why = eligible(ow->w, b->a, b->num, &b->peer, &exp);
        if (why) {
            unbind(ow, b, why);
        } else if (exp != b->expires_ms) {
            b->expires_ms = exp;
            if (maps_put(ow, b)) unbind(ow, b, "map update failed");
        }
    }
}

void offload_pass(struct worker *w)
{
    struct offload_worker *ow = w->offload;
    if (!ow) return;
    drain(ow);
    bool changed =
        w->gen->id != ow->gen_seen || memcmp(&w->policy, &ow->policy_seen, sizeof(w->policy));
    if (!changed && w->now_ms - ow->swept_ms < 1000) return;
    ow->gen_seen = w->gen->id;
    ow->policy_seen = w->policy;
    ow->swept_ms = w->now_ms;
    if (ow->live) sweep(ow);
}

void offload_drain(struct worker *w)
{
    if (w->offload) drain(w->offload);
}

void offload_forget(struct worker *w, const struct allocation *a, int family)
{
    struct offload_worker *ow = w->offload;
    if (!ow || !ow->live) return;
    for (uint32_t i = ow->heads[bucket(ow, a)]; i;) {
        struct binding *b = &ow->b[i - 1];
        i = b->next; /* before unbind unlinks b */
        if (b->a == a && (!family || b->peer.sa.sa_family == family))
            unbind(ow, b, family ? "relay closed" : "allocation ended");
    }
}

const char *offload_datapath(const struct worker *w, const struct allocation *a, uint16_t num)
{
    const struct offload_worker *ow = w->offload;
    if (!ow) return "user";
    if (!ow->nheads) return "user";
    for (uint32_t i = ow->heads[bucket(ow, a)]; i; i = ow->b[i - 1].next)
        if (ow->b[i - 1].a == a && (!num || ow->b[i - 1].num == num)) return "xdp";
    return "user";
}

/* ---- the records: one per datagram the program forwarded ---- */

static int on_record(void *ctx, void *data, size_t size)
{
    struct offload_worker *ow = ctx;
    struct worker *w = ow->w;
    const struct tern_rec *r = data;
    if (size < sizeof(*r) || r->slot >= ow->nb || !ow->b[r->slot].used ||
        ow->b[r->slot].gen != r->gen) {
        w->io.v[RELAY_C_offload_stale_records]++;
        return 0;
    }
    struct binding *b = &ow->b[r->slot];
    struct allocation *a = b->a;
    uint64_t len = r->len;
    if (r->leg == QOS_LEG_CLIENT) {
        w->srv.c.v[SRV_C_rx_channeldata]++;
        w->srv.c.v[SRV_C_channel_to_peer]++;
        w->io.v[RELAY_C_udp_rx_datagrams]++;
        w->io.v[RELAY_C_udp_rx_bytes] += len + 4;
        w->io.v[RELAY_C_peer_tx_datagrams]++;
        w->io.v[RELAY_C_peer_tx_bytes] += len;
        w->io.v[RELAY_C_offload_to_peer]++;
        a->pkts_to_peer++;
        a->bytes_to_peer += len;
    } else {
        w->srv.c.v[SRV_C_peer_to_client_channel]++;
        w->io.v[RELAY_C_peer_rx_datagrams]++;
        w->io.v[RELAY_C_peer_rx_bytes] += len;
        w->io.v[RELAY_C_udp_tx_datagrams]++;
        w->io.v[RELAY_C_udp_tx_bytes] += len + 4;
        w->io.v[RELAY_C_offload_to_client]++;
        a->pkts_to_client++;
        a->bytes_to_client += len;
    }
    if (!w->qos_on) return 0;
    if (!ow->have_offset) {
        ow->mono_to_real = clock_ns(CLOCK_REALTIME) - clock_ns(CLOCK_MONOTONIC);
        ow->have_offset = true;
    }
    /* The tap reads no further than an RTP header (with CSRCs and the extension header) for
     * what the program forwards (STUN and RTCP go up): the copied bytes are enough. */
    uint8_t buf[TERN_XDP_REC_DATA] = {0};
    memcpy(buf, r->data, r->ncopy < sizeof(buf) ? r->ncopy : sizeof(buf));
    if (!a->qos) a->qos = qos_alloc_new(worker_created_ns(w, a));
    if (a->qos)
        qos_packet_tos(a->qos, &w->qm, (enum qos_leg)r->leg, &b->peer, buf, len,
                       (int64_t)r->ts_ns + ow->mono_to_real, r->tos, NULL);
    return 0;
}

static void ring_readable(struct worker *w, struct ep_handler *h, uint32_t events)
{
    (void)h, (void)events;
    drain(w->offload);
}

/* ---- load and attach ---- */

/* The interfaces holding the relay's UDP listener and relay addresses (every interface that
 * is up, loopback aside, when one is a wildcard). */
static unsigned interfaces(const struct tern_config *cfg, int *idx, char names[][IF_NAMESIZE],
                           bool *v4, bool *v6)
{
    const union stun_addr *want[64];
    size_t nwant = 0;
    bool all = false;
    for (size_t i = 0; i < cfg->nlisten && nwant < 64; i++)
        if (cfg->listen[i].transport == CFG_UDP) want[nwant++] = &cfg->listen[i].addr;
    for (size_t i = 0; i < cfg->nrelay_addresses && nwant < 64; i++)
        want[nwant++] = &cfg->relay_addresses[i];
    *v4 = *v6 = false;
    for (size_t i = 0; i < nwant; i++) {
        all |= addr_is_wildcard(want[i]);
        *(want[i]->sa.sa_family == AF_INET ? v4 : v6) = true;
    }
    struct ifaddrs *ifs;
    if (getifaddrs(&ifs)) return 0;
    unsigned n = 0;
    for (struct ifaddrs *f = ifs; f; f = f->ifa_next) {
        if (!f->ifa_addr || (f->ifa_flags & IFF_LOOPBACK) || !(f->ifa_flags & IFF_UP)) continue;
        int fam = f->ifa_addr->sa_family;
        if (fam != AF_INET && fam != AF_INET6) continue;
        union stun_addr ia;
        memset(&ia, 0, sizeof(ia));
        memcpy(&ia, f->ifa_addr, fam == AF_INET ? sizeof(ia.v4) : sizeof(ia.v6));
        bool match = false;
        for (size_t i = 0; i < nwant && !match; i++)
            match = addr_is_wildcard(want[i]) ? want[i]->sa.sa_family == fam
                                              : addr_ip_equal(want[i], &ia);
        if (!match && !all) continue;
        int ix = (int)if_nametoindex(f->ifa_name);
        bool dup = !ix;
        for (unsigned k = 0; k < n && !dup; k++)
            dup = idx[k] == ix;
        if (dup || n == OFFLOAD_MAX_IFACES) continue;
        idx[n] = ix;
        snprintf(names[n], IF_NAMESIZE, "%s", f->ifa_name);
        n++;
    }
    freeifaddrs(ifs);
    return n;
}

/* bpf_fib_lookup answers only on interfaces that forward. */
static bool forwarding(const char *ifname, bool v6)
{
    char path[320];
    snprintf(path, sizeof(path), "/proc/sys/net/%s/conf/%s/forwarding", v6 ? "ipv6" : "ipv4",
             ifname);
    FILE *f = fopen(path, "re");
    if (!f) return false;
    int c = fgetc(f);
    fclose(f);
    return c == '1';
}

static void fallback(const char *why, const char *detail)
{
    tlog(CFG_LOG_WARN, "offload", LF_S("path", "user"), LF_S("reason", why),
         LF_S("detail", detail ? detail : ""));
}

static void offload_free(struct offload *o)
{
    for (unsigned i = 0; i < o->nlinks; i++)
        close(o->link_fd[i]);
    for (unsigned i = 0; i < o->nrings; i++)
        close(o->ring_fd[i]);
    tern_xdp__destroy(o->skel);
    free(o);
}

void offload_open(struct relay *r)
{
    const struct tern_config *cfg = &r->gen->cfg; /* at start: no reload yet */
    enum cfg_offload mode = cfg->offload;
    if (mode == CFG_OFFLOAD_OFF) return;
    if (mode == CFG_OFFLOAD_TC) {
        fallback("relay.offload: tc is not implemented yet", NULL);
        return;
    }
    if (r->nworkers > TERN_XDP_MAX_WORKERS) {
        fallback("more workers than the program has rings", NULL);
        return;
    }
    int idx[OFFLOAD_MAX_IFACES];
    char names[OFFLOAD_MAX_IFACES][IF_NAMESIZE];
    bool v4, v6;
    unsigned nif = interfaces(cfg, idx, names, &v4, &v6);
    if (!nif) {
        fallback("no interface to attach to (loopback addresses only?)", NULL);
        return;
    }
    for (unsigned i = 0; i < nif; i++)
        if ((v4 && !forwarding(names[i], false)) || (v6 && !forwarding(names[i], true))) {
            fallback("forwarding is off: bpf_fib_lookup needs net.ipv4/ipv6.conf.IF.forwarding=1",
                     names[i]);
            return;
        }
    libbpf_set_print(libbpf_log);
    struct offload *o = calloc(1, sizeof(*o));
    if (!o) return;
    o->skel = tern_xdp__open();
    if (!o->skel) {
        fallback("the program did not open", strerror(errno));
        free(o);
        return;
    }
    int err = tern_xdp__load(o->skel);
    if (err) {
        fallback(err == -EPERM ? "no privileges to load BPF (CAP_BPF, CAP_NET_ADMIN)"
                               : "the program did not load (verifier or kernel)",
                 strerror(-err));
        offload_free(o);
        return;
    }
    o->c2p_fd = bpf_map__fd(o->skel->maps.c2p);
    o->p2c_fd = bpf_map__fd(o->skel->maps.p2c);
    int rings_fd = bpf_map__fd(o->skel->maps.rings);
    for (unsigned i = 0; i < r->nworkers; i++) {
        int fd = bpf_map_create(BPF_MAP_TYPE_RINGBUF, "tern_ring", 0, 0, TERN_XDP_RING_BYTES, NULL);
        if (fd < 0 || bpf_map_update_elem(rings_fd, &i, &fd, BPF_ANY)) {
            if (fd >= 0) close(fd);
            fallback("ring buffer", strerror(errno));
            offload_free(o);
            return;
        }
        o->ring_fd[o->nrings++] = fd;
    }
    /* Attach: native XDP first (auto, xdp), then generic (auto, xdp-generic). */
    const char *path = "xdp";
    char list[OFFLOAD_MAX_IFACES * (IF_NAMESIZE + 1)] = "";
    int prog = bpf_program__fd(o->skel->progs.tern_xdp);
    for (unsigned i = 0; i < nif; i++) {
        int fd = -1;
        const char *how = NULL;
        if (mode == CFG_OFFLOAD_AUTO || mode == CFG_OFFLOAD_XDP) {
            LIBBPF_OPTS(bpf_link_create_opts, opts, .flags = XDP_FLAGS_DRV_MODE);
            fd = bpf_link_create(prog, idx[i], BPF_XDP, &opts);
            how = "native";
            if (fd < 0)
                tlog(CFG_LOG_INFO, "offload_native_refused", LF_S("interface", names[i]),
                     LF_S("error", strerror(errno)));
        }
        if (fd < 0 && (mode == CFG_OFFLOAD_AUTO || mode == CFG_OFFLOAD_XDP_GENERIC)) {
            LIBBPF_OPTS(bpf_link_create_opts, opts, .flags = XDP_FLAGS_SKB_MODE);
            fd = bpf_link_create(prog, idx[i], BPF_XDP, &opts);
            how = "generic";
            path = "xdp-generic";
        }
        if (fd < 0) {
            fallback("attach failed", names[i]);
            offload_free(o);
            return;
        }
        o->link_fd[o->nlinks++] = fd;
        tlog(CFG_LOG_INFO, "offload_attached", LF_S("interface", names[i]), LF_S("mode", how));
        if (i) strcat(list, ",");
        strcat(list, names[i]);
    }
    /* Each worker drains its own ring in its own loop. */
    for (unsigned i = 0; i < r->nworkers; i++) {
        struct worker *w = &r->workers[i];
        struct offload_worker *ow = calloc(1, sizeof(*ow));
        if (ow) ow->rb = ring_buffer__new(o->ring_fd[i], on_record, ow, NULL);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = ow ? &ow->h : NULL};
        if (!ow || !ow->rb || epoll_ctl(w->epfd, EPOLL_CTL_ADD, o->ring_fd[i], &ev)) {
            fallback("ring buffer consumer", strerror(errno));
            if (ow) ring_buffer__free(ow->rb);
            free(ow);
            for (unsigned k = 0; k < i; k++)
                offload_worker_free(&r->workers[k]);
            offload_free(o);
            return;
        }
        ow->h = (struct ep_handler){.fd = o->ring_fd[i], .fn = ring_readable};
        ow->w = w;
        ow->o = o;
        ow->gen_seen = w->gen->id;
        ow->policy_seen = w->policy;
        w->offload = ow;
    }
    r->offload = o;
    tlog(CFG_LOG_INFO, "offload", LF_S("path", path), LF_S("interfaces", list),
         LF_U("workers", r->nworkers),
         LF_S("reason", mode == CFG_OFFLOAD_AUTO ? "relay.offload: auto" : "as configured"));
}

void offload_worker_free(struct worker *w)
{
    struct offload_worker *ow = w->offload;
    if (!ow) return;
    if (w->epfd >= 0) epoll_ctl(w->epfd, EPOLL_CTL_DEL, ow->h.fd, NULL);
    ring_buffer__free(ow->rb);
    free(ow->heads);
    free(ow->b);
    free(ow);
    w->offload = NULL;
}

bool offload_stats(const struct relay *r, uint64_t *out, unsigned n)
{
    const struct offload *o = r->offload;
    if (!o) return false;
    int ncpu = libbpf_num_possible_cpus();
    if (ncpu <= 0) return false;
    uint64_t *v = calloc((size_t)ncpu, sizeof(*v));
    if (!v) return false;
    int fd = bpf_map__fd(o->skel->maps.stats);
    for (unsigned k = 0; k < n && k < TERN_XDP_ST_COUNT; k++) {
        out[k] = 0;
        if (bpf_map_lookup_elem(fd, &k, v)) continue;
        for (int c = 0; c < ncpu; c++)
            out[k] += v[c];
    }
    free(v);
    return true;
}

unsigned offload_stat_names(const char *const **names)
{
    *names = stat_names;
    return TERN_XDP_ST_COUNT;
}

void offload_close(struct relay *r)
{
    struct offload *o = r->offload;
    if (!o) return;
    uint64_t st[TERN_XDP_ST_COUNT];
    if (offload_stats(r, st, TERN_XDP_ST_COUNT)) {
        struct log_field f[TERN_XDP_ST_COUNT];
        for (unsigned k = 0; k < TERN_XDP_ST_COUNT; k++)
            f[k] = LF_U(stat_names[k], st[k]);
        if (log_enabled(CFG_LOG_INFO))
            log_emit(CFG_LOG_INFO, "offload_stats", f, TERN_XDP_ST_COUNT);
    }
    offload_free(o);
    r->offload = NULL;
}

#endif
