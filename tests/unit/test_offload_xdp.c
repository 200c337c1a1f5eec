/* test_offload_xdp.c: the XDP program itself (relay/bpf/tern_xdp.bpf.c, the skeleton ternd
 * embeds), run by the kernel on crafted frames with BPF_PROG_TEST_RUN (repeat 1: a repeat
 * would run again on the frame already rewritten). In test mode the program sends back out of
 * the ingress interface with the MACs swapped instead of asking the FIB (a test run has no
 * routes). Checked: ChannelData in -> UDP to the peer out, and a peer datagram in ->
 * ChannelData to the client out, IPv4 and IPv6, with the IP and UDP checksums recomputed
 * from scratch; everything the program must not touch (no binding, STUN, RTCP, padded
 * ChannelData, an expired binding, IP options, fragments) comes back XDP_PASS byte for byte;
 * each forwarded datagram is counted in its binding direction's per-CPU counters; RTP of an
 * SSRC not handed over goes up; and a media sequence (loss, duplicates, reordering, an SSRC
 * change, a sequence wrap) half tapped in user space, half counted by the program in its
 * maps and merged back, gives the same numbers as the meter fed every datagram. Needs root
 * (CAP_BPF, CAP_NET_ADMIN), as the suite runs on these machines. One test alone: pass its name as
 * argv[1]. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef TERN_OFFLOAD

#include <arpa/inet.h>
#include <errno.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>

#include <jansson.h>

#include "offload_abi.h"
#include "qos.h"
#include "stun.h"
#include "tern_xdp.skel.h"

static struct tern_xdp *skel;
static int ncpu;

static int setup(void **state)
{
    (void)state;
    skel = tern_xdp__open();
    if (!skel) return -1;
    skel->rodata->test_mode = 1;
    if (tern_xdp__load(skel)) {
        fprintf(stderr, "cannot load the XDP program (root with CAP_BPF needed): %s\n",
                strerror(errno));
        return -1;
    }
    ncpu = libbpf_num_possible_cpus();
    return ncpu > 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    tern_xdp__destroy(skel);
    return 0;
}

/* ---- frames ---- */

struct ep {
    uint8_t ip[16];
    uint16_t port;
};

static const uint8_t mac_a[6] = {2, 0, 0, 0, 0, 0xa}, mac_b[6] = {2, 0, 0, 0, 0, 0xb};

static uint32_t sum16(const uint8_t *p, size_t n, uint32_t s)
{
    for (size_t i = 0; i < n; i += 2)
        s += (uint32_t)(p[i] << 8) | (i + 1 < n ? p[i + 1] : 0);
    return s;
}

static uint16_t fold(uint32_t s)
{
    while (s >> 16)
        s = (s & 0xffff) + (s >> 16);
    return (uint16_t)s;
}

/* A UDP checksum from scratch over a frame's IP and UDP headers and payload; 0xffff when the
 * datagram verifies (sum over everything including the check field). */
static uint16_t udp_verify(int v6, const uint8_t *l3)
{
    size_t alen = v6 ? 16 : 4, aoff = v6 ? 8 : 12, l4 = v6 ? 40 : 20;
    const uint8_t *udp = l3 + l4;
    size_t ulen = (size_t)(udp[4] << 8 | udp[5]);
    uint32_t s = sum16(l3 + aoff, 2 * alen, 0) + 17 + (uint32_t)ulen;
    s = sum16(udp, ulen, s);
    return fold(s);
}

/* eth + IP + UDP + payload; returns the frame length. tos: the TOS / traffic class. */
static size_t frame(uint8_t *f, int v6, const struct ep *src, const struct ep *dst,
                    const uint8_t *pl, size_t plen, uint8_t tos)
{
    memset(f, 0, 128);
    memcpy(f, mac_b, 6);
    memcpy(f + 6, mac_a, 6);
    f[12] = v6 ? 0x86 : 0x08;
    f[13] = v6 ? 0xdd : 0x00;
    uint8_t *l3 = f + 14;
    size_t l4 = v6 ? 40 : 20, ulen = 8 + plen;
    if (v6) {
        l3[0] = (uint8_t)(0x60 | tos >> 4);
        l3[1] = (uint8_t)(tos << 4);
        l3[4] = (uint8_t)(ulen >> 8);
        l3[5] = (uint8_t)ulen;
        l3[6] = 17;
        l3[7] = 33;
        memcpy(l3 + 8, src->ip, 16);
        memcpy(l3 + 24, dst->ip, 16);
    } else {
        l3[0] = 0x45;
        l3[1] = tos;
        l3[2] = (uint8_t)((20 + ulen) >> 8);
        l3[3] = (uint8_t)(20 + ulen);
        l3[8] = 33;
        l3[9] = 17;
        memcpy(l3 + 12, src->ip, 4);
        memcpy(l3 + 16, dst->ip, 4);
        uint16_t c = (uint16_t)~fold(sum16(l3, 20, 0));
        l3[10] = (uint8_t)(c >> 8);
        l3[11] = (uint8_t)c;
    }
    uint8_t *udp = l3 + l4;
    udp[0] = (uint8_t)(src->port >> 8);
    udp[1] = (uint8_t)src->port;
    udp[2] = (uint8_t)(dst->port >> 8);
    udp[3] = (uint8_t)dst->port;
    udp[4] = (uint8_t)(ulen >> 8);
    udp[5] = (uint8_t)ulen;
    memcpy(udp + 8, pl, plen);
    uint16_t c = (uint16_t)~fold(sum16(l3 + (v6 ? 8 : 12), v6 ? 32 : 8, 17 + (uint32_t)ulen) +
                                 sum16(udp, ulen, 0));
    if (!c) c = 0xffff;
    udp[6] = (uint8_t)(c >> 8);
    udp[7] = (uint8_t)c;
    return 14 + l4 + ulen;
}

static int run(const uint8_t *in, size_t len, uint8_t *out, size_t *outlen)
{
    LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = in, .data_size_in = (uint32_t)len, .data_out = out,
                .data_size_out = 4096, .repeat = 1);
    int rc = bpf_prog_test_run_opts(bpf_program__fd(skel->progs.tern_xdp), &o);
    assert_int_equal(rc, 0);
    *outlen = o.data_size_out;
    return (int)o.retval;
}

static void ep_set(struct ep *e, int v6, const char *ip, uint16_t port)
{
    memset(e, 0, sizeof(*e));
    inet_pton(v6 ? AF_INET6 : AF_INET, ip, e->ip);
    e->port = port;
}

struct topo {
    int v6;
    struct ep client, server, relay, peer;
    uint16_t channel;
};

static void topo_init(struct topo *t, int v6)
{
    t->v6 = v6;
    t->channel = 0x4001;
    ep_set(&t->client, v6, v6 ? "fd00:1::2" : "10.0.1.2", 40000);
    ep_set(&t->server, v6, v6 ? "fd00:1::1" : "10.0.1.1", 3478);
    ep_set(&t->relay, v6, v6 ? "fd00:2::1" : "10.0.2.1", 50000);
    ep_set(&t->peer, v6, v6 ? "fd00:2::2" : "10.0.2.2", 6000);
}

static struct tern_qkey qk(uint32_t gen, int leg, uint32_t ssrc)
{
    struct tern_qkey k;
    memset(&k, 0, sizeof(k));
    k.slot = 7;
    k.gen = gen;
    k.leg = (uint8_t)leg;
    k.ssrc = ssrc;
    return k;
}

static void bind_maps(const struct topo *t, uint64_t expires_ns, uint32_t gen)
{
    struct tern_c2p_key ck;
    struct tern_p2c_key pk;
    struct tern_bind_val cv, pv;
    memset(&ck, 0, sizeof(ck));
    memset(&pk, 0, sizeof(pk));
    memset(&cv, 0, sizeof(cv));
    memset(&pv, 0, sizeof(pv));
    uint8_t fam = t->v6 ? 6 : 4;
    memcpy(ck.client, t->client.ip, 16);
    memcpy(ck.server, t->server.ip, 16);
    ck.client_port = htons(t->client.port);
    ck.server_port = htons(t->server.port);
    ck.channel = t->channel;
    ck.family = fam;
    memcpy(cv.src, t->relay.ip, 16);
    memcpy(cv.dst, t->peer.ip, 16);
    cv.src_port = htons(t->relay.port);
    cv.dst_port = htons(t->peer.port);
    cv.leg = 0;
    cv.slot = 7;
    cv.gen = gen;
    cv.expires_ns = expires_ns;
    memcpy(pk.peer, t->peer.ip, 16);
    memcpy(pk.relay, t->relay.ip, 16);
    pk.peer_port = htons(t->peer.port);
    pk.relay_port = htons(t->relay.port);
    pk.family = fam;
    memcpy(pv.src, t->server.ip, 16);
    memcpy(pv.dst, t->client.ip, 16);
    pv.src_port = htons(t->server.port);
    pv.dst_port = htons(t->client.port);
    pv.channel = t->channel;
    pv.leg = 1;
    pv.slot = 7;
    pv.gen = gen;
    pv.expires_ns = expires_ns;
    assert_int_equal(bpf_map_update_elem(bpf_map__fd(skel->maps.c2p), &ck, &cv, BPF_ANY), 0);
    assert_int_equal(bpf_map_update_elem(bpf_map__fd(skel->maps.p2c), &pk, &pv, BPF_ANY), 0);
    struct tern_ctr *z = calloc((size_t)ncpu, sizeof(*z));
    for (int leg = 0; leg < 2; leg++) {
        struct tern_qkey k = qk(gen, leg, 0);
        assert_int_equal(bpf_map_update_elem(bpf_map__fd(skel->maps.ctrs), &k, z, BPF_ANY), 0);
    }
    free(z);
}

/* The program's counters of one direction, summed over the CPUs. */
static struct tern_ctr ctr_sum(uint32_t gen, int leg)
{
    struct tern_ctr *v = calloc((size_t)ncpu, sizeof(*v)), s;
    memset(&s, 0, sizeof(s));
    struct tern_qkey k = qk(gen, leg, 0);
    assert_int_equal(bpf_map_lookup_elem(bpf_map__fd(skel->maps.ctrs), &k, v), 0);
    for (int c = 0; c < ncpu; c++) {
        s.packets += v[c].packets;
        s.bytes += v[c].bytes;
        for (int i = 0; i < TERN_CLS_COUNT; i++) {
            s.cls_packets[i] += v[c].cls_packets[i];
            s.cls_bytes[i] += v[c].cls_bytes[i];
        }
        for (int i = 0; i < 4; i++)
            s.ecn[i] += v[c].ecn[i];
        for (int i = 0; i < 64; i++)
            s.dscp[i] += v[c].dscp[i];
    }
    free(v);
    return s;
}

/* Hand a stream over as offload_tap_end does (st: the meter's export, times converted). */
static void hand_over(uint32_t gen, int leg, uint32_t ssrc, const struct tern_rtp *st)
{
    struct tern_rtp_val v;
    memset(&v, 0, sizeof(v));
    if (st) memcpy(&v.st, st, sizeof(*st));
    struct tern_qkey k = qk(gen, leg, ssrc);
    assert_int_equal(bpf_map_update_elem(bpf_map__fd(skel->maps.rtp), &k, &v, BPF_ANY), 0);
}

static int kstate(uint32_t gen, int leg, uint32_t ssrc, struct tern_rtp *st)
{
    struct tern_rtp_val v;
    struct tern_qkey k = qk(gen, leg, ssrc);
    if (bpf_map_lookup_elem_flags(bpf_map__fd(skel->maps.rtp), &k, &v, BPF_F_LOCK)) return -1;
    memcpy(st, &v.st, sizeof(*st));
    return 0;
}

static void unbind_maps(void)
{
    struct tern_c2p_key ck, nk;
    while (bpf_map_get_next_key(bpf_map__fd(skel->maps.c2p), NULL, &ck) == 0)
        bpf_map_delete_elem(bpf_map__fd(skel->maps.c2p), &ck);
    struct tern_p2c_key pk;
    while (bpf_map_get_next_key(bpf_map__fd(skel->maps.p2c), NULL, &pk) == 0)
        bpf_map_delete_elem(bpf_map__fd(skel->maps.p2c), &pk);
    (void)nk;
    struct tern_qkey q;
    while (bpf_map_get_next_key(bpf_map__fd(skel->maps.ctrs), NULL, &q) == 0)
        bpf_map_delete_elem(bpf_map__fd(skel->maps.ctrs), &q);
    while (bpf_map_get_next_key(bpf_map__fd(skel->maps.rtp), NULL, &q) == 0)
        bpf_map_delete_elem(bpf_map__fd(skel->maps.rtp), &q);
}

static uint64_t far_future(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000 + (uint64_t)ts.tv_nsec + 3600ull * 1000000000;
}

/* An RTP packet: version 2, PT 111, seq, timestamp, SSRC, then len - 12 bytes of body. */
static size_t rtp(uint8_t *p, uint16_t seq, uint32_t ts, uint32_t ssrc, size_t len)
{
    p[0] = 0x80;
    p[1] = 111;
    p[2] = (uint8_t)(seq >> 8);
    p[3] = (uint8_t)seq;
    for (int i = 0; i < 4; i++) {
        p[4 + i] = (uint8_t)(ts >> (24 - 8 * i));
        p[8 + i] = (uint8_t)(ssrc >> (24 - 8 * i));
    }
    for (size_t i = 12; i < len; i++)
        p[i] = (uint8_t)(i * 7);
    return len;
}

/* ---- the tests ---- */

static void check_ip(int v6, const uint8_t *l3, const struct ep *src, const struct ep *dst,
                     size_t ulen, uint8_t tos)
{
    if (v6) {
        assert_memory_equal(l3 + 8, src->ip, 16);
        assert_memory_equal(l3 + 24, dst->ip, 16);
        assert_int_equal(l3[4] << 8 | l3[5], ulen);
        assert_int_equal(l3[7], 64);
        assert_int_equal((uint8_t)((l3[0] << 4) | (l3[1] >> 4)), tos);
    } else {
        assert_memory_equal(l3 + 12, src->ip, 4);
        assert_memory_equal(l3 + 16, dst->ip, 4);
        assert_int_equal(l3[2] << 8 | l3[3], 20 + ulen);
        assert_int_equal(l3[8], 64);
        assert_int_equal(l3[6], 0x40); /* DF, no fragment offset */
        assert_int_equal(l3[7], 0);
        assert_int_equal(l3[1], tos);
        assert_int_equal(fold(sum16(l3, 20, 0)), 0xffff); /* header checksum valid */
    }
    const uint8_t *udp = l3 + (v6 ? 40 : 20);
    assert_int_equal(udp[0] << 8 | udp[1], src->port);
    assert_int_equal(udp[2] << 8 | udp[3], dst->port);
    assert_int_equal(udp[4] << 8 | udp[5], ulen);
    assert_int_equal(udp_verify(v6, l3), 0xffff); /* UDP checksum valid */
}

static void both_directions(int v6)
{
    struct topo t;
    topo_init(&t, v6);
    bind_maps(&t, far_future(), 3);
    hand_over(3, 0, 0xabcdef, NULL);
    hand_over(3, 1, 0xabcdef, NULL);
    uint64_t npk = 0, bytes = 0;
    for (size_t plen = 0; plen < 300; plen += 37) {
        uint8_t pl[400], in[512], out[4096];
        pl[0] = (uint8_t)(t.channel >> 8);
        pl[1] = (uint8_t)t.channel;
        size_t n = plen < 12 ? plen : rtp(pl + 4, (uint16_t)plen, 1000, 0xabcdef, plen);
        for (size_t i = 0; i < n && plen < 12; i++)
            pl[4 + i] = (uint8_t)(0x10 + i); /* neither STUN nor RTCP */
        pl[2] = (uint8_t)(plen >> 8);
        pl[3] = (uint8_t)plen;
        uint8_t tos = 0xb9; /* DSCP 46, ECN 01: preserved */
        size_t len = frame(in, v6, &t.client, &t.server, pl, plen + 4, tos), olen;
        assert_int_equal(run(in, len, out, &olen), XDP_TX);
        assert_int_equal(olen, len - 4);
        assert_memory_equal(out, mac_a, 6); /* test mode: back where it came from */
        check_ip(v6, out + 14, &t.relay, &t.peer, 8 + plen, tos);
        assert_memory_equal(out + 14 + (v6 ? 48 : 28), pl + 4, plen);
        npk++;
        bytes += plen;
        struct tern_ctr c = ctr_sum(3, 0);
        assert_int_equal(c.packets, npk);
        assert_int_equal(c.bytes, bytes);
        assert_int_equal(c.ecn[1], npk);
        assert_int_equal(c.dscp[46], npk);
        assert_int_equal(c.cls_packets[plen < 12 ? TERN_CLS_OTHER : TERN_CLS_RTP] > 0, 1);

        /* And back: the peer's datagram becomes ChannelData to the client. */
        len = frame(in, v6, &t.peer, &t.relay, pl + 4, plen, 2);
        assert_int_equal(run(in, len, out, &olen), XDP_TX);
        assert_int_equal(olen, len + 4);
        check_ip(v6, out + 14, &t.server, &t.client, 8 + 4 + plen, 2);
        const uint8_t *cd = out + 14 + (v6 ? 48 : 28);
        assert_int_equal(cd[0] << 8 | cd[1], t.channel);
        assert_int_equal(cd[2] << 8 | cd[3], plen);
        assert_memory_equal(cd + 4, pl + 4, plen);
        c = ctr_sum(3, 1);
        assert_int_equal(c.packets, npk);
        assert_int_equal(c.ecn[2], npk);
    }
    /* RTP of an SSRC not handed over goes up untouched. */
    uint8_t pl[100], in[256], out[4096];
    size_t plen = rtp(pl + 4, 1, 2, 0x5555, 40), len, olen;
    pl[0] = (uint8_t)(t.channel >> 8);
    pl[1] = (uint8_t)t.channel;
    pl[2] = 0;
    pl[3] = (uint8_t)plen;
    len = frame(in, v6, &t.client, &t.server, pl, plen + 4, 0);
    assert_int_equal(run(in, len, out, &olen), XDP_PASS);
    assert_int_equal(olen, len);
    assert_memory_equal(out, in, len);
    unbind_maps();
}

static void test_forward_ipv4(void **state)
{
    (void)state;
    both_directions(0);
}

static void test_forward_ipv6(void **state)
{
    (void)state;
    both_directions(1);
}

/* The frame comes back XDP_PASS, byte for byte, and is counted in no binding's counters. */
static void expect_pass(const uint8_t *in, size_t len)
{
    uint8_t out[4096];
    size_t olen;
    struct tern_qkey k;
    int had = bpf_map_get_next_key(bpf_map__fd(skel->maps.ctrs), NULL, &k) == 0;
    struct tern_ctr c0 = had ? ctr_sum(k.gen, k.leg) : (struct tern_ctr){0};
    assert_int_equal(run(in, len, out, &olen), XDP_PASS);
    assert_int_equal(olen, len);
    assert_memory_equal(out, in, len);
    if (had) assert_int_equal(ctr_sum(k.gen, k.leg).packets, c0.packets);
}

static void passes(int v6)
{
    struct topo t;
    topo_init(&t, v6);
    uint8_t pl[256], in[512];
    pl[0] = 0x40;
    pl[1] = 0x01;
    pl[2] = 0;
    pl[3] = 100;
    rtp(pl + 4, 1, 1, 1, 100);
    /* No binding at all. */
    expect_pass(in, frame(in, v6, &t.client, &t.server, pl, 104, 0));
    bind_maps(&t, far_future(), 1);
    /* Another channel number, another client port, another peer port. */
    pl[1] = 0x02;
    expect_pass(in, frame(in, v6, &t.client, &t.server, pl, 104, 0));
    pl[1] = 0x01;
    struct ep other = t.client;
    other.port++;
    expect_pass(in, frame(in, v6, &other, &t.server, pl, 104, 0));
    other = t.peer;
    other.port++;
    expect_pass(in, frame(in, v6, &other, &t.relay, pl + 4, 100, 0));
    /* Padded ChannelData (UDP may carry padding: user space decides), and a short one. */
    pl[3] = 97;
    expect_pass(in, frame(in, v6, &t.client, &t.server, pl, 104, 0));
    pl[3] = 101;
    expect_pass(in, frame(in, v6, &t.client, &t.server, pl, 104, 0));
    pl[3] = 100;
    /* STUN inside ChannelData, and from the peer (ICE checks: RTT and consent). */
    uint8_t stun[20] = {0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42};
    memcpy(pl + 4, stun, 20);
    pl[3] = 20;
    expect_pass(in, frame(in, v6, &t.client, &t.server, pl, 24, 0));
    expect_pass(in, frame(in, v6, &t.peer, &t.relay, stun, 20, 0));
    /* RTCP (RFC 5761: PT 200 sender report). */
    uint8_t rtcp[28] = {0x80, 200, 0, 6};
    memcpy(pl + 4, rtcp, 28);
    pl[3] = 28;
    expect_pass(in, frame(in, v6, &t.client, &t.server, pl, 32, 0));
    expect_pass(in, frame(in, v6, &t.peer, &t.relay, rtcp, 28, 0));
    /* An expired binding. */
    bind_maps(&t, 1, 1);
    rtp(pl + 4, 1, 1, 1, 100);
    pl[3] = 100;
    expect_pass(in, frame(in, v6, &t.client, &t.server, pl, 104, 0));
    expect_pass(in, frame(in, v6, &t.peer, &t.relay, pl + 4, 100, 0));
    bind_maps(&t, far_future(), 1);
    if (!v6) {
        /* IP options, and a fragment. */
        size_t len = frame(in, v6, &t.client, &t.server, pl, 104, 0);
        in[14] = 0x46;
        expect_pass(in, len);
        len = frame(in, v6, &t.client, &t.server, pl, 104, 0);
        in[14 + 6] = 0x20; /* more fragments */
        expect_pass(in, len);
    } else {
        /* IPv6 UDP without a checksum is not valid: user space decides. */
        size_t len = frame(in, v6, &t.client, &t.server, pl, 104, 0);
        in[14 + 40 + 6] = in[14 + 40 + 7] = 0;
        expect_pass(in, len);
    }
    unbind_maps();
}

static void test_pass_ipv4(void **state)
{
    (void)state;
    passes(0);
}

static void test_pass_ipv6(void **state)
{
    (void)state;
    passes(1);
}

/* A media sequence through the program as ternd runs it: the first packets of each SSRC go
 * up and are tapped in user space (meter B) until the stream is confirmed and handed over;
 * the program counts the rest in its maps, merged back at the end. Meter A taps every
 * datagram at the arrival times the program saw. Both give the same streams and counts. */
static void test_qos_same_numbers(void **state)
{
    (void)state;
    struct topo t;
    topo_init(&t, 0);
    bind_maps(&t, far_future(), 9);
    struct qos_alloc *qa = qos_alloc_new(1000000000), *qb = qos_alloc_new(1000000000);
    struct qos_metrics ma, mb;
    memset(&ma, 0, sizeof(ma));
    memset(&mb, 0, sizeof(mb));
    union stun_addr peer;
    memset(&peer, 0, sizeof(peer));
    peer.v4.sin_family = AF_INET;
    memcpy(&peer.v4.sin_addr, t.peer.ip, 4);
    peer.v4.sin_port = htons(t.peer.port);
    uint16_t seq = 65500; /* wraps */
    uint32_t ts = 0, ssrc = 0x1111, handed[2] = {0, 0};
    int nhanded = 0, up = 0, fast = 0;
    uint32_t lcg = 1;
    for (int i = 0; i < 400; i++) {
        lcg = lcg * 1103515245 + 12345;
        unsigned r = (lcg >> 16) % 100;
        if (i == 250) ssrc = 0x2222, seq = 100; /* a new SSRC */
        uint16_t s = seq;
        if (r < 5) {
            seq++;
            ts += 960;
            continue; /* lost */
        }
        if (r < 8) s = (uint16_t)(seq - 2); /* late: reordered or duplicate */
        uint8_t pl[256], in[512], out[4096];
        size_t plen = rtp(pl + 4, s, ts, ssrc, 60 + (i % 50));
        pl[0] = 0x40;
        pl[1] = 0x01;
        pl[2] = (uint8_t)(plen >> 8);
        pl[3] = (uint8_t)plen;
        size_t len = frame(in, 0, &t.client, &t.server, pl, plen + 4, 0), olen;
        int verdict = run(in, len, out, &olen);
        if (verdict == XDP_PASS) { /* user space taps it, and hands the stream over */
            up++;
            struct timespec now;
            clock_gettime(CLOCK_MONOTONIC, &now);
            int64_t rx = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
            qos_packet_tos(qa, &ma, QOS_LEG_CLIENT, &peer, pl + 4, plen, rx, 0, NULL);
            qos_packet_tos(qb, &mb, QOS_LEG_CLIENT, &peer, pl + 4, plen, rx, 0, NULL);
            struct qos_rtp_state st;
            if (qos_rtp_export(qb, QOS_LEG_CLIENT, &peer, ssrc, &st)) {
                struct tern_rtp k;
                memcpy(&k, &st, sizeof(k));
                hand_over(9, 0, ssrc, &k);
                handed[nhanded++] = ssrc;
            }
        } else {
            assert_int_equal(verdict, XDP_TX);
            fast++;
            struct tern_rtp k;
            assert_int_equal(kstate(9, 0, ssrc, &k), 0);
            qos_packet_tos(qa, &ma, QOS_LEG_CLIENT, &peer, pl + 4, plen, k.last_rx, 0, NULL);
        }
        if (r >= 8) {
            seq++;
            ts += 960;
        }
        usleep(200);
    }
    assert_int_equal(nhanded, 2);
    assert_true(up >= 8 && fast > 300);
    struct tern_ctr c = ctr_sum(9, 0);
    struct qos_counts d;
    memset(&d, 0, sizeof(d));
    d.packets = c.packets;
    d.bytes = c.bytes;
    memcpy(d.cls_packets, c.cls_packets, sizeof(d.cls_packets));
    memcpy(d.cls_bytes, c.cls_bytes, sizeof(d.cls_bytes));
    d.dscp_last = -1;
    int64_t end = 0;
    qos_counts_add(qb, &mb, QOS_LEG_CLIENT, &peer, &d, end);
    for (int i = 0; i < nhanded; i++) {
        struct tern_rtp k;
        assert_int_equal(kstate(9, 0, handed[i], &k), 0);
        struct qos_rtp_state st;
        memcpy(&st, &k, sizeof(st));
        assert_true(qos_rtp_import(qb, &mb, QOS_LEG_CLIENT, &peer, handed[i], &st, end));
        if (k.last_rx > end) end = k.last_rx;
    }
    qos_alloc_tick(qa, &ma, end + 10000000000LL, true);
    qos_alloc_tick(qb, &mb, end + 10000000000LL, true);
    json_t *ja = qos_detail_json(qa, end), *jb = qos_detail_json(qb, end);
    json_t *da = json_object_get(
        json_object_get(json_array_get(json_object_get(ja, "peers"), 0), "directions"),
        "from_client");
    json_t *db = json_object_get(
        json_object_get(json_array_get(json_object_get(jb, "peers"), 0), "directions"),
        "from_client");
    static const char *const keys[] = {"rtp_streams", "packets_total", "bytes_total", "by_class"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        char *sa = json_dumps(json_object_get(da, keys[i]), JSON_SORT_KEYS | JSON_ENCODE_ANY);
        char *sb = json_dumps(json_object_get(db, keys[i]), JSON_SORT_KEYS | JSON_ENCODE_ANY);
        assert_non_null(sa);
        assert_non_null(sb);
        assert_string_equal(sa, sb);
        if (i == 0) assert_non_null(strstr(sa, "\"ssrc\": 8738")); /* both streams */
        free(sa);
        free(sb);
    }
    assert_memory_equal(ma.rtp_expected, mb.rtp_expected, sizeof(ma.rtp_expected));
    assert_memory_equal(ma.rtp_lost, mb.rtp_lost, sizeof(ma.rtp_lost));
    assert_memory_equal(ma.rtp_duplicates, mb.rtp_duplicates, sizeof(ma.rtp_duplicates));
    assert_memory_equal(ma.rtp_reordered, mb.rtp_reordered, sizeof(ma.rtp_reordered));
    assert_memory_equal(ma.packets, mb.packets, sizeof(ma.packets));
    json_decref(ja);
    json_decref(jb);
    qos_alloc_free(qa);
    qos_alloc_free(qb);
    unbind_maps();
}

/* Every datagram the program saw is in exactly one counter. */
static void test_stats_account(void **state)
{
    (void)state;
    uint64_t *v = calloc((size_t)ncpu, sizeof(*v)), total = 0;
    for (unsigned k = 0; k < TERN_XDP_ST_COUNT; k++) {
        assert_int_equal(bpf_map_lookup_elem(bpf_map__fd(skel->maps.stats), &k, v), 0);
        for (int c = 0; c < ncpu; c++)
            total += v[c];
    }
    free(v);
    assert_true(total > 0);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward_ipv4),     cmocka_unit_test(test_forward_ipv6),
        cmocka_unit_test(test_pass_ipv4),        cmocka_unit_test(test_pass_ipv6),
        cmocka_unit_test(test_qos_same_numbers), cmocka_unit_test(test_stats_account),
    };
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, setup, teardown);
}

#else

static void test_not_built(void **state)
{
    (void)state;
    skip(); /* built without libbpf, clang or bpftool: ternd has no fast path to test */
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_not_built)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}

#endif
