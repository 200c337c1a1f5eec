/* test_offload_csum.c: the checksum arithmetic of the XDP fast path (relay/bpf/offload_csum.h,
 * the very header the program includes), compiled for the host: for random IPv4 and IPv6 UDP
 * datagrams with correct checksums, the incremental update the program makes (new addresses
 * and ports, a ChannelData header taken off or put in front, the lengths) must give exactly
 * the checksum computed from scratch over the rewritten datagram; 0 stays 0 (IPv4 without a
 * checksum) and a result of 0 goes out as 0xffff. One test alone: pass its name as argv[1]. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "offload_csum.h"

/* The reference: RFC 768 over the pseudo-header, the UDP header and the payload. */
static uint16_t udp_full(int v6, const uint8_t *src, const uint8_t *dst, const uint8_t *udp,
                         size_t ulen)
{
    uint64_t s = 0;
    size_t alen = v6 ? 16 : 4;
    for (size_t i = 0; i < alen; i += 2)
        s += (uint32_t)(src[i] << 8 | src[i + 1]) + (uint32_t)(dst[i] << 8 | dst[i + 1]);
    s += 17 + ulen;
    for (size_t i = 0; i < ulen; i += 2) {
        if (i == 6) continue; /* the check field itself */
        s += (uint32_t)(udp[i] << 8) | (i + 1 < ulen ? udp[i + 1] : 0);
    }
    while (s >> 16)
        s = (s & 0xffff) + (s >> 16);
    uint16_t r = (uint16_t)~s;
    return r ? r : 0xffff;
}

static uint32_t words(const void *p, size_t n)
{
    uint32_t s = 0;
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i += 2) {
        uint16_t w;
        memcpy(&w, b + i, 2);
        s = tcs_add(s, w);
    }
    return s;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)rng;
}

/* One datagram through one rewrite, as tern_xdp.bpf.c does it: to_peer takes the 4-byte
 * ChannelData header off the payload, else one is put in front. */
static void one(int v6, int to_peer, size_t plen, int zero_check)
{
    size_t alen = v6 ? 16 : 4;
    uint8_t src[16], dst[16], nsrc[16], ndst[16];
    for (size_t i = 0; i < 16; i++) {
        src[i] = (uint8_t)rnd();
        dst[i] = (uint8_t)rnd();
        nsrc[i] = (uint8_t)rnd();
        ndst[i] = (uint8_t)rnd();
    }
    uint8_t pkt[2048], out[2048];
    size_t ulen = 8 + plen;
    for (size_t i = 0; i < ulen; i++)
        pkt[i] = (uint8_t)rnd();
    uint16_t ul = htons((uint16_t)ulen);
    memcpy(pkt + 4, &ul, 2);
    uint16_t ck = htons(udp_full(v6, src, dst, pkt, ulen));
    if (zero_check) ck = 0;
    memcpy(pkt + 6, &ck, 2);

    /* The rewrite. */
    size_t nplen = to_peer ? plen - 4 : plen + 4;
    size_t nulen = 8 + nplen;
    uint16_t nsport = (uint16_t)rnd(), ndport = (uint16_t)rnd();
    uint16_t nul = htons((uint16_t)nulen);
    memcpy(out, &nsport, 2);
    memcpy(out + 2, &ndport, 2);
    memcpy(out + 4, &nul, 2);
    uint8_t hdr[4] = {0x40, 0x01, (uint8_t)(plen >> 8), (uint8_t)plen};
    if (to_peer)
        memcpy(out + 8, pkt + 12, plen - 4);
    else {
        memcpy(out + 8, hdr, 4);
        memcpy(out + 12, pkt + 8, plen);
    }
    uint32_t removed = words(src, alen) + 0;
    removed = tcs_add(removed, words(dst, alen));
    removed = tcs_add(removed, words(pkt, 6)); /* ports, length */
    removed = tcs_add(removed, words(pkt + 4, 2));
    uint32_t added = tcs_add(words(nsrc, alen), words(ndst, alen));
    added = tcs_add(added, words(out, 6));
    added = tcs_add(added, words(out + 4, 2));
    if (to_peer)
        removed = tcs_add(removed, words(pkt + 8, 4));
    else
        added = tcs_add(added, words(hdr, 4));
    uint16_t nck = tcs_udp_update(ck, removed, added);
    if (zero_check) {
        assert_int_equal(nck, 0);
        return;
    }
    uint16_t want = htons(udp_full(v6, nsrc, ndst, out, nulen));
    assert_int_equal(nck, want);
}

static void test_udp_update_random(void **state)
{
    (void)state;
    for (int i = 0; i < 20000; i++) {
        int v6 = i & 1, to_peer = (i >> 1) & 1;
        size_t plen = 4 + rnd() % 1400; /* odd and even */
        one(v6, to_peer, plen, 0);
    }
}

static void test_udp_zero_stays_zero(void **state)
{
    (void)state;
    one(0, 1, 100, 1);
    one(0, 0, 101, 1);
}

/* A datagram whose updated sum is 0 must carry 0xffff (RFC 768). */
static void test_udp_result_zero(void **state)
{
    (void)state;
    /* ~check + added - removed == 0xffff (negative zero) makes the folded complement 0. */
    assert_int_equal(tcs_udp_update(0xffff, 0, 0), 0xffff);
    /* A changed word that cancels the old sum entirely. */
    uint16_t check = 0x1234;
    uint32_t removed = 0, added = check; /* ~check + check = 0xffff */
    assert_int_equal(tcs_udp_update(check, removed, added), 0xffff);
}

static void test_ipv4_header(void **state)
{
    (void)state;
    /* RFC 1071 example header (from a capture): 4500 0073 0000 4000 4011 ---- c0a8 0001
     * c0a8 00c7 -> b861. */
    uint8_t h[20] = {0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11,
                     0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7};
    uint16_t c = tcs_ipv4_header(h);
    memcpy(h + 10, &c, 2);
    assert_int_equal(h[10], 0xb8);
    assert_int_equal(h[11], 0x61);
    /* Over the header with its checksum in, the sum folds to 0xffff. */
    assert_int_equal(tcs_fold(tcs_words(h, 10)), 0xffff);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_udp_update_random),
        cmocka_unit_test(test_udp_zero_stays_zero),
        cmocka_unit_test(test_udp_result_zero),
        cmocka_unit_test(test_ipv4_header),
    };
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
