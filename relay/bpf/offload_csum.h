/* offload_csum.h: the Internet checksum arithmetic of the XDP program (RFC 1071, RFC 1624),
 * header-only so that the host unit tests run exactly this code. Words are 16-bit values
 * as they lie in memory: the one's complement sum does not depend on byte order as long as
 * every word is taken the same way. */
#ifndef TERN_OFFLOAD_CSUM_H
#define TERN_OFFLOAD_CSUM_H

#include <linux/types.h>

/* One's complement addition of 32-bit partial sums (end-around carry). */
static inline __u32 tcs_add(__u32 a, __u32 b)
{
    a += b;
    return a + (a < b);
}

static inline __u32 tcs_sub(__u32 a, __u32 b)
{
    return tcs_add(a, ~b);
}

/* Fold a 32-bit partial sum to 16 bits (not complemented). */
static inline __u16 tcs_fold(__u32 s)
{
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    return (__u16)s;
}

/* The sum of n16 16-bit words at p (n16 a constant in the program: unrolled). */
static inline __u32 tcs_words(const void *p, int n16)
{
    const __u16 *w = (const __u16 *)p;
    __u32 s = 0;
#ifdef __clang__
#pragma unroll
#endif
    for (int i = 0; i < n16; i++)
        s += w[i];
    return s; /* at most 20 words: no overflow */
}

/* The IPv4 header checksum of a 20-byte header whose check field is zero. */
static inline __u16 tcs_ipv4_header(const void *iph)
{
    return (__u16)~tcs_fold(tcs_words(iph, 10));
}

/* RFC 1624 eqn. 3 over many words: the UDP checksum after the words summing to `removed`
 * were taken out of the checksummed data and those summing to `added` put in. check as in
 * the header; 0 (IPv4: no checksum) stays 0; a result of 0 is sent as 0xffff (RFC 768). */
static inline __u16 tcs_udp_update(__u16 check, __u32 removed, __u32 added)
{
    if (!check) return 0;
    __u32 s = (__u16)~check;
    s = tcs_sub(s, tcs_fold(removed));
    s = tcs_add(s, tcs_fold(added));
    __u16 r = (__u16)~tcs_fold(s);
    return r ? r : 0xffff;
}

#endif
