/* offload.c: the control plane of the kernel fast path; docs/offload.md tells the design.
 *
 *   offload_open         relay.offload -> load relay/bpf/tern_xdp.bpf.c (libbpf skeleton),
 *                        its counter and RTP maps, attach to the interfaces of the relay's
 *                        UDP listener and relay addresses through bpf_links (native XDP, then
 *                        generic), or log why the user-space path runs;
 *   offload_channel_bound a ChannelBind succeeded (srv_io hook): if the channel qualifies,
 *                        two bindings go into the maps, c2p (client -> peer) and p2c;
 *   offload_pass         each loop pass: after a configuration or policy change, and once a
 *                        second, every binding is re-checked exactly as srv_handle would
 *                        decide (channel, permission, allocation alive, peer policy) and
 *                        removed when it no longer holds; its expiry is kept in the map, so
 *                        the program itself stops forwarding at the very millisecond;
 *   merge                what the program measured (per-CPU counters per binding direction,
 *                        the per-SSRC RTP state of relay/bpf/offload_rtp.h) goes into the
 *                        allocation's QoS meter and the relay's counters, every second, before
 *                        every query and before a binding goes;
 *   offload_tap_begin/end a datagram of a bound flow that user space taps (the first packets
 *                        of a stream: the program passes an SSRC up until it is handed over):
 *                        a stream the meter has just confirmed is handed to the program;
 *   offload_forget       the allocation ends: its bindings go, what they measured is merged.
 *
 * Only the worker that owns an allocation touches its bindings and their QoS entries: no
 * locks in user space (the program's RTP updates hold the stream's bpf_spin_lock, and user
 * space reads and writes those values with BPF_F_LOCK). */
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

void offload_tap_begin(struct worker *w, struct allocation *a, enum qos_leg leg,
                       const union stun_addr *peer, const uint8_t *p, size_t len)
{
    (void)w, (void)a, (void)leg, (void)peer, (void)p, (void)len;
}

void offload_tap_end(struct worker *w, struct allocation *a, enum qos_leg leg,
                     const union stun_addr *peer, const uint8_t *p, size_t len)
{
    (void)w, (void)a, (void)leg, (void)peer, (void)p, (void)len;
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
#include "timeline.h"

_Static_assert(sizeof(struct tern_rtp) == sizeof(struct qos_rtp_state), "tern_rtp layout");
_Static_assert(offsetof(struct tern_rtp, bits) == offsetof(struct qos_rtp_state, bits),
               "tern_rtp layout");
_Static_assert(offsetof(struct tern_rtp, acc_lost) == offsetof(struct qos_rtp_state, acc_lost),
               "tern_rtp layout");
_Static_assert(TERN_CLS_COUNT == QOS_CLASS_COUNT && TERN_CLS_RTP == QOS_CLASS_RTP,
               "class numbering");

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
    int c2p_fd, p2c_fd, ctr_fd, rtp_fd;
    int ncpu;
};

/* The streams of one binding direction handed to the program (at most the meter's). */
struct handed {
    uint32_t ssrc[QOS_MAX_STREAMS];
    uint8_t n;
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
    struct handed hs[QOS_LEG_COUNT];
    struct tern_ctr seen[QOS_LEG_COUNT]; /* the counters as merged last (summed over CPUs) */
};

struct offload_worker {
    struct worker *w;
    struct offload *o;
    struct tern_ctr *percpu; /* a lookup's values, one per possible CPU */
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

/* ---- what the program measured, into the meter (docs/offload.md §4) ---- */

static struct tern_qkey qkey(const struct binding *b, int leg, uint32_t ssrc)
{
    struct tern_qkey k;
    memset(&k, 0, sizeof(k));
    const struct tern_bind_val *v = leg == QOS_LEG_CLIENT ? &b->cv : &b->pv;
    k.worker = v->worker;
    k.slot = v->slot;
    k.gen = v->gen;
    k.ssrc = ssrc;
    k.leg = (uint8_t)leg;
    return k;
}

static int64_t mono_to_real(void)
{
    return clock_ns(CLOCK_REALTIME) - clock_ns(CLOCK_MONOTONIC);
}

static void rtp_times(struct qos_rtp_state *st, int64_t off)
{
    st->first_rx += off;
    st->last_rx += off;
    st->infer_rx += off;
}

/* The counters of one direction: what came since the last merge goes into the meter and the
 * relay's counters exactly as on_tap in user space would have counted it. */
static void merge_counts(struct offload_worker *ow, struct binding *b, int leg, int64_t off)
{
    struct worker *w = ow->w;
    struct tern_qkey k = qkey(b, leg, 0);
    int ncpu = ow->o->ncpu;
    if (bpf_map_lookup_elem(ow->o->ctr_fd, &k, ow->percpu)) return;
    struct tern_ctr sum;
    memset(&sum, 0, sizeof(sum));
    uint64_t last = 0;
    for (int c = 0; c < ncpu; c++) {
        const struct tern_ctr *x = &ow->percpu[c];
        sum.packets += x->packets;
        sum.bytes += x->bytes;
        for (int i = 0; i < TERN_CLS_COUNT; i++) {
            sum.cls_packets[i] += x->cls_packets[i];
            sum.cls_bytes[i] += x->cls_bytes[i];
        }
        for (int i = 0; i < 4; i++)
            sum.ecn[i] += x->ecn[i];
        for (int i = 0; i < 64; i++)
            sum.dscp[i] += x->dscp[i];
        if (x->last_ns > last) {
            last = x->last_ns;
            sum.dscp_last = x->dscp_last;
        }
    }
    struct tern_ctr *seen = &b->seen[leg];
    uint64_t n = sum.packets - seen->packets, len = sum.bytes - seen->bytes;
    if (!n) return;
    struct qos_counts d;
    memset(&d, 0, sizeof(d));
    d.packets = n;
    d.bytes = len;
    for (int i = 0; i < TERN_CLS_COUNT; i++) {
        d.cls_packets[i] = sum.cls_packets[i] - seen->cls_packets[i];
        d.cls_bytes[i] = sum.cls_bytes[i] - seen->cls_bytes[i];
    }
    for (int i = 0; i < 4; i++)
        d.ecn[i] = sum.ecn[i] - seen->ecn[i];
    for (int i = 0; i < 64; i++)
        d.dscp[i] = sum.dscp[i] - seen->dscp[i];
    d.dscp_last = (int)(sum.dscp_last & 63);
    d.last_rx = (int64_t)last + off;
    *seen = sum;
    struct allocation *a = b->a;
    if (leg == QOS_LEG_CLIENT) {
        w->srv.c.v[SRV_C_rx_channeldata] += n;
        w->srv.c.v[SRV_C_channel_to_peer] += n;
        w->io.v[RELAY_C_udp_rx_datagrams] += n;
        w->io.v[RELAY_C_udp_rx_bytes] += len + 4 * n;
        w->io.v[RELAY_C_peer_tx_datagrams] += n;
        w->io.v[RELAY_C_peer_tx_bytes] += len;
        w->io.v[RELAY_C_offload_to_peer] += n;
        a->pkts_to_peer += n;
        a->bytes_to_peer += len;
    } else {
        w->srv.c.v[SRV_C_peer_to_client_channel] += n;
        w->io.v[RELAY_C_peer_rx_datagrams] += n;
        w->io.v[RELAY_C_peer_rx_bytes] += len;
        w->io.v[RELAY_C_udp_tx_datagrams] += n;
        w->io.v[RELAY_C_udp_tx_bytes] += len + 4 * n;
        w->io.v[RELAY_C_offload_to_client] += n;
        a->pkts_to_client += n;
        a->bytes_to_client += len;
    }
    if (!w->qos_on) return;
    if (!a->qos) a->qos = timeline_meter(w, a);
    struct qos_alloc *q = a->qos;
    if (q) qos_counts_add(q, &w->qm, (enum qos_leg)leg, &b->peer, &d, w->now_ns);
}

static void handed_drop(struct offload_worker *ow, struct binding *b, int leg, unsigned i)
{
    struct tern_qkey k = qkey(b, leg, b->hs[leg].ssrc[i]);
    bpf_map_delete_elem(ow->o->rtp_fd, &k);
    struct handed *h = &b->hs[leg];
    h->ssrc[i] = h->ssrc[--h->n];
}

/* One handed-over stream back into the meter; false when it is gone (no longer counted). */
static bool merge_stream(struct offload_worker *ow, struct binding *b, int leg, unsigned i,
                         int64_t off)
{
    struct worker *w = ow->w;
    struct tern_qkey k = qkey(b, leg, b->hs[leg].ssrc[i]);
    struct tern_rtp_val v;
    if (bpf_map_lookup_elem_flags(ow->o->rtp_fd, &k, &v, BPF_F_LOCK)) return true;
    if (!w->qos_on || !b->a->qos) return true;
    struct qos_rtp_state st;
    memcpy(&st, &v.st, sizeof(st));
    rtp_times(&st, off);
    return qos_rtp_import(b->a->qos, &w->qm, (enum qos_leg)leg, &b->peer, k.ssrc, &st, w->now_ns);
}

static void merge(struct offload_worker *ow, struct binding *b)
{
    int64_t off = mono_to_real();
    for (int leg = 0; leg < QOS_LEG_COUNT; leg++) {
        merge_counts(ow, b, leg, off);
        for (unsigned i = 0; i < b->hs[leg].n;) {
            if (merge_stream(ow, b, leg, i, off))
                i++;
            else
                handed_drop(ow, b, leg, i);
        }
    }
}

static void merge_all(struct offload_worker *ow)
{
    for (uint32_t i = 0; i < ow->nb; i++)
        if (ow->b[i].used) merge(ow, &ow->b[i]);
}

/* The binding of a's channel to peer, if any. */
static struct binding *find_peer(struct offload_worker *ow, const struct allocation *a,
                                 const union stun_addr *peer)
{
    if (!ow->nheads || !ow->live) return NULL;
    for (uint32_t i = ow->heads[bucket(ow, a)]; i; i = ow->b[i - 1].next)
        if (ow->b[i - 1].a == a && addr_equal(&ow->b[i - 1].peer, peer)) return &ow->b[i - 1];
    return NULL;
}

static bool rtp_ssrc(const uint8_t *p, size_t len, uint32_t *ssrc)
{
    if (qos_classify(p, len) != QOS_CLASS_RTP) return false;
    *ssrc = (uint32_t)p[8] << 24 | (uint32_t)p[9] << 16 | (uint32_t)p[10] << 8 | p[11];
    return true;
}

static int handed_index(const struct handed *h, uint32_t ssrc)
{
    for (unsigned i = 0; i < h->n; i++)
        if (h->ssrc[i] == ssrc) return (int)i;
    return -1;
}

void offload_tap_begin(struct worker *w, struct allocation *a, enum qos_leg leg,
                       const union stun_addr *peer, const uint8_t *p, size_t len)
{
    struct offload_worker *ow = w->offload;
    uint32_t ssrc;
    if (!ow || !ow->live || (unsigned)leg >= QOS_LEG_COUNT || !rtp_ssrc(p, len, &ssrc)) return;
    struct binding *b = find_peer(ow, a, peer);
    if (!b) return;
    int i = handed_index(&b->hs[leg], ssrc);
    /* A datagram of a stream the program counts came up (no route yet, over the MTU): the
     * meter takes the program's state first, so that it counts this one in its place. */
    if (i >= 0 && !merge_stream(ow, b, leg, (unsigned)i, mono_to_real()))
        handed_drop(ow, b, leg, (unsigned)i);
}

void offload_tap_end(struct worker *w, struct allocation *a, enum qos_leg leg,
                     const union stun_addr *peer, const uint8_t *p, size_t len)
{
    struct offload_worker *ow = w->offload;
    uint32_t ssrc;
    if (!ow || !ow->live || (unsigned)leg >= QOS_LEG_COUNT || !a->qos || !rtp_ssrc(p, len, &ssrc))
        return;
    struct binding *b = find_peer(ow, a, peer);
    if (!b) return;
    struct qos_rtp_state st;
    if (!qos_rtp_export(a->qos, leg, peer, ssrc, &st)) return; /* in probation still */
    rtp_times(&st, -mono_to_real());
    struct tern_rtp_val v;
    memset(&v, 0, sizeof(v));
    memcpy(&v.st, &st, sizeof(st));
    struct tern_qkey k = qkey(b, leg, ssrc);
    struct handed *h = &b->hs[leg];
    int i = handed_index(h, ssrc);
    if (i >= 0) { /* back to the program, this datagram included */
        bpf_map_update_elem(ow->o->rtp_fd, &k, &v, BPF_EXIST | BPF_F_LOCK);
        return;
    }
    if (h->n == QOS_MAX_STREAMS) return; /* the meter evicts before this fills */
    if (bpf_map_update_elem(ow->o->rtp_fd, &k, &v, BPF_NOEXIST)) return; /* full: stays up */
    h->ssrc[h->n++] = ssrc;
    w->io.v[RELAY_C_offload_streams_handed]++;
}

static void unbind(struct offload_worker *ow, struct binding *b, const char *why)
{
    struct worker *w = ow->w;
    bpf_map_delete_elem(ow->o->c2p_fd, &b->ck);
    bpf_map_delete_elem(ow->o->p2c_fd, &b->pk);
    /* What the program forwarded so far is still measured under this binding. */
    merge(ow, b);
    for (int leg = 0; leg < QOS_LEG_COUNT; leg++) {
        while (b->hs[leg].n)
            handed_drop(ow, b, leg, 0);
        struct tern_qkey k = qkey(b, leg, 0);
        bpf_map_delete_elem(ow->o->ctr_fd, &k);
    }
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

    /* The counters first: the program passes up what it could not count. */
    int rc = 0;
    memset(ow->percpu, 0, sizeof(*ow->percpu) * (size_t)ow->o->ncpu);
    for (int leg = 0; leg < QOS_LEG_COUNT && !rc; leg++) {
        struct tern_qkey k = qkey(b, leg, 0);
        if (bpf_map_update_elem(ow->o->ctr_fd, &k, ow->percpu, BPF_ANY)) rc = -errno;
    }
    if (!rc) rc = maps_put(ow, b);
    if (rc) {
        for (int leg = 0; leg < QOS_LEG_COUNT; leg++) {
            struct tern_qkey k = qkey(b, leg, 0);
            bpf_map_delete_elem(ow->o->ctr_fd, &k);
        }
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
    bool changed =
        w->gen->id != ow->gen_seen || memcmp(&w->policy, &ow->policy_seen, sizeof(w->policy));
    if (!changed && w->now_ms - ow->swept_ms < 1000) return;
    ow->gen_seen = w->gen->id;
    ow->policy_seen = w->policy;
    ow->swept_ms = w->now_ms;
    if (ow->live) {
        merge_all(ow); /* the tick: one set of numbers, whichever path carried them */
        sweep(ow);
    }
}

void offload_drain(struct worker *w)
{
    if (w->offload && w->offload->live) merge_all(w->offload);
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
        fallback("more workers than the program has binding numbers for", NULL);
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
    o->ctr_fd = bpf_map__fd(o->skel->maps.ctrs);
    o->rtp_fd = bpf_map__fd(o->skel->maps.rtp);
    o->ncpu = libbpf_num_possible_cpus();
    if (o->ncpu <= 0) {
        fallback("cannot count the CPUs", strerror(-o->ncpu));
        offload_free(o);
        return;
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
    /* Each worker merges what the program measured for its own bindings. */
    for (unsigned i = 0; i < r->nworkers; i++) {
        struct worker *w = &r->workers[i];
        struct offload_worker *ow = calloc(1, sizeof(*ow));
        if (ow) ow->percpu = calloc((size_t)o->ncpu, sizeof(*ow->percpu));
        if (!ow || !ow->percpu) {
            fallback("out of memory", NULL);
            free(ow);
            for (unsigned k = 0; k < i; k++)
                offload_worker_free(&r->workers[k]);
            offload_free(o);
            return;
        }
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
    free(ow->percpu);
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
