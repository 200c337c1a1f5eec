/* tern_xdp.bpf.c: the kernel fast path of ternd (docs/offload.md). Attached in XDP to the
 * interfaces of the relay's addresses, it forwards the bound channels of UDP clients:
 *
 *   client -> peer: ChannelData to a listener, for a binding in c2p: the header is taken off,
 *                   the datagram leaves from the relayed address to the peer;
 *   peer -> client: a datagram to a relayed address from a bound peer (p2c): a ChannelData
 *                   header goes in front, it leaves from the listener address to the client.
 *
 * Everything else goes up unchanged (XDP_PASS) and follows docs/datapath.md: STUN (RTT,
 * consent), RTCP, padded or inconsistent ChannelData, IP options, fragments, IPv6 extension
 * headers, datagrams too large for the egress MTU, addresses with no route or neighbour yet,
 * bindings past their expiry, RTP of an SSRC user space has not handed over yet (it confirms
 * new streams). Every lookup happens before the first write, so a datagram that goes up is
 * untouched. Each forwarded datagram is measured here: per-CPU counters of its binding's
 * direction (packets, bytes, class, ECN, DSCP) and, for RTP, its stream's RFC 3550 and jitter
 * state under the stream's lock (offload_rtp.h, the arithmetic the host unit test checks
 * against qos/); user space merges both into its meter every tick (docs/offload.md §4). */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "offload_abi.h"
#include "offload_csum.h"
#include "offload_rtp.h"

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, TERN_XDP_MAX_BINDINGS);
    __type(key, struct tern_c2p_key);
    __type(value, struct tern_bind_val);
} c2p SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, TERN_XDP_MAX_BINDINGS);
    __type(key, struct tern_p2c_key);
    __type(value, struct tern_bind_val);
} p2c SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, TERN_XDP_ST_COUNT);
    __type(key, __u32);
    __type(value, __u64);
} stats SEC(".maps");

/* Per binding direction, made by user space with the binding (two per binding). */
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_HASH);
    __uint(max_entries, 2 * TERN_XDP_MAX_BINDINGS);
    __type(key, struct tern_qkey);
    __type(value, struct tern_ctr);
} ctrs SEC(".maps");

/* Per confirmed RTP stream, handed over by user space. */
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, TERN_XDP_MAX_SSRCS);
    __type(key, struct tern_qkey);
    __type(value, struct tern_rtp_val);
} rtp SEC(".maps");

/* Set by user space before load: 1 skips bpf_fib_lookup and sends back out of the ingress
 * interface with the MACs swapped (BPF_PROG_TEST_RUN in the unit tests has no routes). */
const volatile __u32 test_mode = 0;

static __always_inline int count(enum tern_xdp_stat s, int verdict)
{
    __u32 k = s;
    __u64 *v = bpf_map_lookup_elem(&stats, &k);
    if (v) *v += 1;
    return verdict;
}

/* What the parse found. */
struct pkt {
    int family;
    __u32 l3;   /* offset of the IP header */
    __u32 l4;   /* offset of the UDP header */
    __u32 plen; /* UDP payload length */
    __u8 tos;
};

/* The payload classes user space keeps: STUN (first byte 0-3 and the magic cookie: RTT and
 * consent) and RTCP (RFC 5761: the SRTCP index lies at the end, beyond what a record copies).
 * Anything else starting with 0-3 is "other" to the QoS tap, as it is here. */
static __always_inline int keep_up(const __u8 *q, const void *end, __u32 len)
{
    if (len == 0 || (const void *)(q + 1) > end) return 0;
    if (q[0] <= 3)
        return len >= 20 && (const void *)(q + 8) <= end && q[4] == 0x21 && q[5] == 0x12 &&
               q[6] == 0xa4 && q[7] == 0x42;
    if (len < 2 || (const void *)(q + 2) > end) return 0;
    return q[0] >= 128 && q[0] < 192 && q[1] >= 192 && q[1] <= 223;
}

/* The datagram is forwarded: count it (c: this CPU's counters of its direction) and, for
 * RTP, run its stream's arithmetic under the stream's lock. */
static __always_inline void measure(struct tern_ctr *c, struct tern_rtp_val *r, int cls, __u32 len,
                                    __u8 tos, __u64 now, __u16 seq, __u32 ts)
{
    c->packets++;
    c->bytes += len;
    if (cls >= 0 && cls < TERN_CLS_COUNT) {
        c->cls_packets[cls]++;
        c->cls_bytes[cls] += len;
    }
    c->ecn[tos & 3]++;
    c->dscp[(tos >> 2) & 63]++;
    c->dscp_last = tos >> 2;
    c->last_ns = now;
    if (!r) return;
    bpf_spin_lock(&r->lock);
    tern_rtp_packet(&r->st, seq, ts, (__s64)now);
    bpf_spin_unlock(&r->lock);
}

/* The route out: egress interface and MACs. 0, or the stat that sends the datagram up. */
static __always_inline int route(struct xdp_md *ctx, const struct pkt *k,
                                 const struct tern_bind_val *v, __u32 ip_len, __u32 *ifindex,
                                 __u8 *smac, __u8 *dmac, const struct ethhdr *eth)
{
    if (test_mode) {
        *ifindex = ctx->ingress_ifindex;
        __builtin_memcpy(smac, eth->h_dest, ETH_ALEN);
        __builtin_memcpy(dmac, eth->h_source, ETH_ALEN);
        return 0;
    }
    struct bpf_fib_lookup f = {};
    f.family = k->family;
    f.l4_protocol = IPPROTO_UDP;
    f.sport = v->src_port;
    f.dport = v->dst_port;
    f.tot_len = (__u16)ip_len;
    f.ifindex = ctx->ingress_ifindex;
    if (k->family == AF_INET) {
        __builtin_memcpy(&f.ipv4_src, v->src, 4);
        __builtin_memcpy(&f.ipv4_dst, v->dst, 4);
    } else {
        __builtin_memcpy(f.ipv6_src, v->src, 16);
        __builtin_memcpy(f.ipv6_dst, v->dst, 16);
    }
    long rc = bpf_fib_lookup(ctx, &f, sizeof(f), 0);
    if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED) return TERN_XDP_ST_pass_mtu;
    if (rc != BPF_FIB_LKUP_RET_SUCCESS) return TERN_XDP_ST_pass_fib;
    *ifindex = f.ifindex;
    __builtin_memcpy(smac, f.smac, ETH_ALEN);
    __builtin_memcpy(dmac, f.dmac, ETH_ALEN);
    return 0;
}

/* The headers as they will be written: Ethernet, IP (20 or 40 bytes), UDP. */
struct hdrs {
    struct ethhdr eth;
    union {
        struct iphdr v4;
        struct ipv6hdr v6;
    } ip;
    struct udphdr udp;
};

/* Write the new addresses, lengths and checksums into h (a copy of the old headers);
 * removed / added: the sums of payload words taken out (the ChannelData header) or put in. */
static __always_inline void rewrite(struct hdrs *h, const struct pkt *k,
                                    const struct tern_bind_val *v, __u32 new_plen, __u32 removed,
                                    __u32 added)
{
    __u32 old = removed, neu = added;
    __u16 ulen = bpf_htons((__u16)(new_plen + sizeof(struct udphdr)));
    /* The UDP length counts twice: in the pseudo-header and in the header. */
    old += (__u32)h->udp.len * 2 + h->udp.source + h->udp.dest;
    neu += (__u32)ulen * 2 + v->src_port + v->dst_port;
    if (k->family == AF_INET) {
        old += tcs_words(&h->ip.v4.saddr, 4);
        __builtin_memcpy(&h->ip.v4.saddr, v->src, 4);
        __builtin_memcpy(&h->ip.v4.daddr, v->dst, 4);
        neu += tcs_words(&h->ip.v4.saddr, 4);
        h->ip.v4.tot_len = bpf_htons((__u16)(new_plen + sizeof(struct udphdr) + 20));
        h->ip.v4.ttl = TERN_XDP_TTL;
        /* DF, as the relay's sockets send (path MTU discovery, Linux's default for UDP);
         * fragments never get here. */
        h->ip.v4.frag_off = bpf_htons(0x4000);
        if (v->dscp_zero) h->ip.v4.tos &= 3;
        h->ip.v4.check = 0;
        h->ip.v4.check = tcs_ipv4_header(&h->ip.v4);
    } else {
        old += tcs_words(&h->ip.v6.saddr, 16);
        __builtin_memcpy(&h->ip.v6.saddr, v->src, 16);
        __builtin_memcpy(&h->ip.v6.daddr, v->dst, 16);
        neu += tcs_words(&h->ip.v6.saddr, 16);
        h->ip.v6.payload_len = ulen;
        h->ip.v6.hop_limit = TERN_XDP_TTL;
        if (v->dscp_zero) { /* traffic class: the low 4 bits of byte 0, high 4 of byte 1 */
            __u8 *b = (__u8 *)&h->ip.v6;
            b[0] &= 0xf0;
            b[1] &= 0x3f;
        }
    }
    h->udp.source = v->src_port;
    h->udp.dest = v->dst_port;
    h->udp.len = ulen;
    h->udp.check = tcs_udp_update(h->udp.check, old, neu);
}

SEC("xdp")
int tern_xdp(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > end) return count(TERN_XDP_ST_pass_other, XDP_PASS);
    struct pkt k = {};
    __u32 iplen;
    struct udphdr *udp;
    k.l3 = sizeof(*eth);
    if (eth->h_proto == bpf_htons(ETH_P_IP)) {
        struct iphdr *ip = (void *)(eth + 1);
        if ((void *)(ip + 1) > end) return count(TERN_XDP_ST_pass_other, XDP_PASS);
        if (ip->protocol != IPPROTO_UDP) return count(TERN_XDP_ST_pass_other, XDP_PASS);
        if (ip->ihl != 5 || (ip->frag_off & bpf_htons(0x3fff)))
            return count(TERN_XDP_ST_pass_ip_options, XDP_PASS);
        k.family = AF_INET;
        k.tos = ip->tos;
        iplen = 20;
        udp = (void *)(ip + 1);
        if ((void *)(udp + 1) > end) return count(TERN_XDP_ST_pass_other, XDP_PASS);
        if (bpf_ntohs(ip->tot_len) != iplen + bpf_ntohs(udp->len))
            return count(TERN_XDP_ST_pass_length, XDP_PASS);
    } else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
        struct ipv6hdr *ip6 = (void *)(eth + 1);
        if ((void *)(ip6 + 1) > end) return count(TERN_XDP_ST_pass_other, XDP_PASS);
        if (ip6->nexthdr != IPPROTO_UDP) return count(TERN_XDP_ST_pass_ip_options, XDP_PASS);
        k.family = AF_INET6;
        k.tos = (__u8)((ip6->priority << 4) | (ip6->flow_lbl[0] >> 4));
        iplen = 40;
        udp = (void *)(ip6 + 1);
        if ((void *)(udp + 1) > end) return count(TERN_XDP_ST_pass_other, XDP_PASS);
        if (bpf_ntohs(ip6->payload_len) != bpf_ntohs(udp->len))
            return count(TERN_XDP_ST_pass_length, XDP_PASS);
        if (!udp->check) return count(TERN_XDP_ST_pass_no_csum, XDP_PASS);
    } else {
        return count(TERN_XDP_ST_pass_other, XDP_PASS);
    }
    k.l4 = k.l3 + iplen;
    __u32 ulen = bpf_ntohs(udp->len);
    if (ulen < sizeof(*udp) || (void *)udp + ulen > end)
        return count(TERN_XDP_ST_pass_length, XDP_PASS);
    k.plen = ulen - sizeof(*udp);
    __u8 *p = (void *)(udp + 1);
    __u8 *sa, *da;
    if (k.family == AF_INET) {
        struct iphdr *ip = (void *)(eth + 1);
        sa = (__u8 *)&ip->saddr;
        da = (__u8 *)&ip->daddr;
    } else {
        struct ipv6hdr *ip6 = (void *)(eth + 1);
        sa = (__u8 *)&ip6->saddr;
        da = (__u8 *)&ip6->daddr;
    }
    __u32 alen = k.family == AF_INET ? 4 : 16;
    __u64 now = bpf_ktime_get_ns();

    /* Client -> peer: ChannelData (first two bits 01) on a bound channel. */
    struct tern_bind_val *v = NULL;
    int to_peer = 0;
    if (k.plen >= 4 && (void *)(p + 4) <= end && (p[0] & 0xc0) == 0x40) {
        struct tern_c2p_key ck = {};
        __builtin_memcpy(ck.client, sa, 4);
        __builtin_memcpy(ck.server, da, 4);
        if (alen == 16) {
            __builtin_memcpy(ck.client + 4, sa + 4, 12);
            __builtin_memcpy(ck.server + 4, da + 4, 12);
        }
        ck.client_port = udp->source;
        ck.server_port = udp->dest;
        ck.channel = (__u16)((p[0] << 8) | p[1]);
        ck.family = k.family == AF_INET ? 4 : 6;
        v = bpf_map_lookup_elem(&c2p, &ck);
        to_peer = v != NULL;
    }
    if (!v) {
        struct tern_p2c_key pk = {};
        __builtin_memcpy(pk.peer, sa, 4);
        __builtin_memcpy(pk.relay, da, 4);
        if (alen == 16) {
            __builtin_memcpy(pk.peer + 4, sa + 4, 12);
            __builtin_memcpy(pk.relay + 4, da + 4, 12);
        }
        pk.peer_port = udp->source;
        pk.relay_port = udp->dest;
        pk.family = k.family == AF_INET ? 4 : 6;
        v = bpf_map_lookup_elem(&p2c, &pk);
    }
    if (!v) return count(TERN_XDP_ST_pass_no_binding, XDP_PASS);
    if (now >= v->expires_ns) return count(TERN_XDP_ST_pass_expired, XDP_PASS);

    __u32 off = k.l4 + sizeof(*udp), inner = k.plen, new_plen;
    __u32 removed = 0, added = 0;
    __u16 chhdr[2];
    if (to_peer) {
        __u32 chlen = ((__u32)p[2] << 8) | p[3];
        if (chlen + 4 != k.plen) return count(TERN_XDP_ST_pass_length, XDP_PASS);
        removed = (__u32)((__u16 *)p)[0] + ((__u16 *)p)[1];
        off += 4;
        inner = chlen;
        new_plen = chlen;
        if (keep_up(p + 4, end, inner)) return count(TERN_XDP_ST_pass_class, XDP_PASS);
    } else {
        /* As large as user space would refuse to frame (drop_peer_too_big): it decides. */
        if (k.plen > 0xffff - 48) return count(TERN_XDP_ST_pass_length, XDP_PASS);
        if (keep_up(p, end, inner)) return count(TERN_XDP_ST_pass_class, XDP_PASS);
        chhdr[0] = bpf_htons(v->channel);
        chhdr[1] = bpf_htons((__u16)k.plen);
        added = (__u32)chhdr[0] + chhdr[1];
        new_plen = k.plen + 4;
    }
    __u32 ifindex = 0;
    __u8 smac[ETH_ALEN], dmac[ETH_ALEN];
    int st = route(ctx, &k, v, iplen + sizeof(*udp) + new_plen, &ifindex, smac, dmac, eth);
    if (st) return count(st, XDP_PASS);

    /* Everything is known: copy the headers, then the first write. */
    struct hdrs h;
    if (k.family == AF_INET) {
        if (data + sizeof(struct ethhdr) + 20 + sizeof(struct udphdr) > end)
            return count(TERN_XDP_ST_pass_other, XDP_PASS);
        __builtin_memcpy(&h.eth, data, sizeof(struct ethhdr));
        __builtin_memcpy(&h.ip.v4, data + sizeof(struct ethhdr), 20);
        __builtin_memcpy(&h.udp, data + sizeof(struct ethhdr) + 20, sizeof(struct udphdr));
    } else {
        if (data + sizeof(struct ethhdr) + 40 + sizeof(struct udphdr) > end)
            return count(TERN_XDP_ST_pass_other, XDP_PASS);
        __builtin_memcpy(&h.eth, data, sizeof(struct ethhdr));
        __builtin_memcpy(&h.ip.v6, data + sizeof(struct ethhdr), 40);
        __builtin_memcpy(&h.udp, data + sizeof(struct ethhdr) + 40, sizeof(struct udphdr));
    }
    /* The QoS state this datagram goes into: the counters of its direction, and for RTP its
     * stream's state, which must have been handed over (else user space sees it first). */
    __u8 head[TERN_CLS_COPY] = {};
    __u32 n = inner < TERN_CLS_COPY ? inner : TERN_CLS_COPY;
    if (n > 0 && n <= TERN_CLS_COPY && bpf_xdp_load_bytes(ctx, off, head, n))
        return count(TERN_XDP_ST_pass_other, XDP_PASS);
    int cls = tern_classify(head, inner);
    struct tern_qkey qk = {};
    qk.worker = v->worker;
    qk.slot = v->slot;
    qk.gen = v->gen;
    qk.leg = v->leg;
    struct tern_ctr *ctr = bpf_map_lookup_elem(&ctrs, &qk);
    if (!ctr) return count(TERN_XDP_ST_pass_no_qos, XDP_PASS);
    struct tern_rtp_val *rv = NULL;
    __u16 seq = 0;
    __u32 ts = 0;
    if (cls == TERN_CLS_RTP) {
        qk.ssrc = (__u32)head[8] << 24 | (__u32)head[9] << 16 | (__u32)head[10] << 8 | head[11];
        rv = bpf_map_lookup_elem(&rtp, &qk);
        if (!rv) return count(TERN_XDP_ST_pass_new_ssrc, XDP_PASS);
        seq = (__u16)(head[2] << 8 | head[3]);
        ts = (__u32)head[4] << 24 | (__u32)head[5] << 16 | (__u32)head[6] << 8 | head[7];
    }
    __builtin_memcpy(h.eth.h_source, smac, ETH_ALEN);
    __builtin_memcpy(h.eth.h_dest, dmac, ETH_ALEN);
    rewrite(&h, &k, v, new_plen, removed, added);
    /* From here on the datagram is forwarded or, if the head cannot move, passed up as it
     * came (then user space measures it; counted). */
    if (bpf_xdp_adjust_head(ctx, to_peer ? 4 : -4)) return count(TERN_XDP_ST_pass_adjust, XDP_PASS);
    data = (void *)(long)ctx->data;
    end = (void *)(long)ctx->data_end;
    if (k.family == AF_INET) {
        if (data + sizeof(struct ethhdr) + 20 + sizeof(struct udphdr) + (to_peer ? 0 : 4) > end)
            return count(TERN_XDP_ST_pass_adjust, XDP_DROP);
        __builtin_memcpy(data, &h.eth, sizeof(struct ethhdr));
        __builtin_memcpy(data + sizeof(struct ethhdr), &h.ip.v4, 20);
        __builtin_memcpy(data + sizeof(struct ethhdr) + 20, &h.udp, sizeof(struct udphdr));
        if (!to_peer) __builtin_memcpy(data + sizeof(struct ethhdr) + 28, chhdr, 4);
    } else {
        if (data + sizeof(struct ethhdr) + 40 + sizeof(struct udphdr) + (to_peer ? 0 : 4) > end)
            return count(TERN_XDP_ST_pass_adjust, XDP_DROP);
        __builtin_memcpy(data, &h.eth, sizeof(struct ethhdr));
        __builtin_memcpy(data + sizeof(struct ethhdr), &h.ip.v6, 40);
        __builtin_memcpy(data + sizeof(struct ethhdr) + 40, &h.udp, sizeof(struct udphdr));
        if (!to_peer) __builtin_memcpy(data + sizeof(struct ethhdr) + 48, chhdr, 4);
    }
    measure(ctr, rv, cls, inner, k.tos, now, seq, ts);
    count(to_peer ? TERN_XDP_ST_to_peer : TERN_XDP_ST_to_client, 0);
    if (ifindex == ctx->ingress_ifindex) return XDP_TX;
    return bpf_redirect(ifindex, 0);
}
