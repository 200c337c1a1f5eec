/* test_proxyproto.c: unit tests of the PROXY protocol header decoder (relay/proxyproto.c):
 * v1 TCP4/TCP6/UNKNOWN, v2 PROXY/LOCAL over AF_INET/AF_INET6/AF_UNIX/AF_UNSPEC, TLVs skipped,
 * bad signatures, truncation, the 107-byte v1 bound, bad numbers, and headers split at every
 * byte. Every input is decoded from a guard page, so a read past its end faults.
 *
 * Run one test by name: `test_proxyproto v2_tlvs_skipped`. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxyproto.h"
#include "testutil.h"

static const uint8_t V2SIG[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                  0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

/* Decode p[0..len) placed against a guard page. */
static struct proxy_result decode(const void *p, size_t len)
{
    struct proxy_result r;
    uint8_t *g = guard_place(p, len);
    proxy_decode(g, len, &r);
    guard_free(g, len);
    return r;
}

/* A whole header followed by extra bytes: done, consuming exactly the header; each shorter
 * prefix (the header split across reads at any byte) asks for more. */
static struct proxy_result decode_whole(const uint8_t *p, size_t hlen, size_t extra)
{
    for (size_t k = 0; k < hlen; k++) {
        struct proxy_result r = decode(p, k);
        if (r.status != PROXY_NEED_MORE)
            fail_msg("prefix of %zu/%zu bytes: status %d", k, hlen, r.status);
    }
    struct proxy_result r = decode(p, hlen + extra);
    assert_int_equal(r.status, PROXY_DONE);
    assert_int_equal(r.consumed, hlen);
    return r;
}

static void assert_addr(const union stun_addr *a, const char *ip, unsigned port)
{
    char text[INET6_ADDRSTRLEN] = "";
    if (a->sa.sa_family == AF_INET) {
        inet_ntop(AF_INET, &a->v4.sin_addr, text, sizeof(text));
        assert_int_equal(ntohs(a->v4.sin_port), port);
    } else {
        assert_int_equal(a->sa.sa_family, AF_INET6);
        inet_ntop(AF_INET6, &a->v6.sin6_addr, text, sizeof(text));
        assert_int_equal(ntohs(a->v6.sin6_port), port);
    }
    assert_string_equal(text, ip);
}

static void assert_invalid(const void *p, size_t len, enum proxy_reason why)
{
    struct proxy_result r = decode(p, len);
    assert_int_equal(r.status, PROXY_INVALID);
    if (r.reason != why)
        fail_msg("reason %s, wanted %s", proxy_reason_name(r.reason), proxy_reason_name(why));
}

static void assert_invalid_str(const char *s, enum proxy_reason why)
{
    assert_invalid(s, strlen(s), why);
}

/* ---- v1 ---- */

static void v1_tcp4(void **state)
{
    (void)state;
    const char *h = "PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n";
    struct proxy_result r = decode_whole((const uint8_t *)h, strlen(h), 0);
    assert_int_equal(r.version, 1);
    assert_false(r.local);
    assert_addr(&r.src, "192.0.2.1", 56324);
    assert_addr(&r.dst, "198.51.100.7", 443);
    uint8_t more[128];
    memcpy(more, h, strlen(h));
    memcpy(more + strlen(h), "\x16\x03\x01\x00\x10", 5); /* a TLS record after it */
    r = decode(more, strlen(h) + 5);
    assert_int_equal(r.status, PROXY_DONE);
    assert_int_equal(r.consumed, strlen(h));
}

static void v1_tcp6(void **state)
{
    (void)state;
    const char *h = "PROXY TCP6 2001:db8::1 2001:db8:0:1::2 65535 0\r\n";
    struct proxy_result r = decode_whole((const uint8_t *)h, strlen(h), 0);
    assert_false(r.local);
    assert_addr(&r.src, "2001:db8::1", 65535);
    assert_addr(&r.dst, "2001:db8:0:1::2", 0);
}

static void v1_unknown(void **state)
{
    (void)state;
    const char *a = "PROXY UNKNOWN\r\n";
    struct proxy_result r = decode_whole((const uint8_t *)a, strlen(a), 0);
    assert_true(r.local);
    /* Anything after UNKNOWN up to CRLF is ignored (the spec). */
    const char *b = "PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n";
    r = decode_whole((const uint8_t *)b, strlen(b), 0);
    assert_true(r.local);
}

static void v1_longest_line(void **state)
{
    (void)state;
    /* The spec's worst case is exactly 107 bytes (UNKNOWN with two full IPv6 addresses); it
     * is accepted, as is the longest TCP6 line (104). */
    const char *u = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    assert_int_equal(strlen(u), PROXY_V1_MAX);
    assert_true(decode_whole((const uint8_t *)u, strlen(u), 0).local);
    const char *h = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    struct proxy_result r = decode_whole((const uint8_t *)h, strlen(h), 0);
    assert_addr(&r.src, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
}

static void v1_oversize(void **state)
{
    (void)state;
    /* 107 bytes without a CRLF: refused, without waiting for more. */
    char line[200];
    memset(line, 'x', sizeof(line));
    memcpy(line, "PROXY UNKNOWN ", 14);
    assert_int_equal(decode(line, 106).status, PROXY_NEED_MORE);
    assert_invalid(line, 107, PROXY_R_V1_TOO_LONG);
    assert_invalid(line, sizeof(line), PROXY_R_V1_TOO_LONG);
    /* CR as the 107th byte leaves no room for the LF. */
    line[106] = '\r';
    assert_invalid(line, 107, PROXY_R_V1_TOO_LONG);
    assert_invalid(line, 108, PROXY_R_V1_TOO_LONG);
    /* ... as the 106th it does. */
    line[105] = '\r';
    line[106] = '\n';
    assert_int_equal(decode(line, 107).status, PROXY_DONE);
}

static void v1_bad_numbers(void **state)
{
    (void)state;
    assert_invalid_str("PROXY TCP4 1.2.3.4 5.6.7.8 65536 1\r\n", PROXY_R_V1_PORT);
    assert_invalid_str("PROXY TCP4 1.2.3.4 5.6.7.8 1 999999\r\n", PROXY_R_V1_PORT);
    assert_invalid_str("PROXY TCP4 1.2.3.4 5.6.7.8 01 1\r\n", PROXY_R_V1_PORT);
    assert_invalid_str("PROXY TCP4 1.2.3.4 5.6.7.8 -1 1\r\n", PROXY_R_V1_PORT);
    assert_invalid_str("PROXY TCP4 1.2.3.4 5.6.7.8 1a 1\r\n", PROXY_R_V1_PORT);
    assert_invalid_str("PROXY TCP4 1.2.3.256 5.6.7.8 1 1\r\n", PROXY_R_V1_ADDRESS);
    assert_invalid_str("PROXY TCP4 1.2.3 5.6.7.8 1 1\r\n", PROXY_R_V1_ADDRESS);
    assert_invalid_str("PROXY TCP4 ::1 5.6.7.8 1 1\r\n", PROXY_R_V1_ADDRESS); /* family */
    assert_invalid_str("PROXY TCP6 1.2.3.4 ::1 1 1\r\n", PROXY_R_V1_ADDRESS); /* family */
    assert_invalid_str("PROXY TCP6 ::1 2001:db8::g 1 1\r\n", PROXY_R_V1_ADDRESS);
}

static void v1_bad_syntax(void **state)
{
    (void)state;
    assert_invalid_str("PROXY TCP4 1.2.3.4 5.6.7.8 1 1\n", PROXY_R_V1_SYNTAX);    /* LF alone */
    assert_invalid_str("PROXY TCP4 1.2.3.4 5.6.7.8 1 1\rX", PROXY_R_V1_SYNTAX);   /* CR alone */
    assert_invalid_str("PROXY TCP4  1.2.3.4 5.6.7.8 1 1\r\n", PROXY_R_V1_SYNTAX); /* two spaces */
    assert_invalid_str("PROXY TCP4 1.2.3.4 5.6.7.8 1 1 \r\n", PROXY_R_V1_SYNTAX); /* trailing */
    assert_invalid_str("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", PROXY_R_V1_SYNTAX); /* a field short */
    assert_invalid_str("PROXY TCP4 1.2.3.4 5.6.7.8 1 1 1\r\n", PROXY_R_V1_SYNTAX); /* one more */
    assert_invalid_str("PROXY \r\n", PROXY_R_V1_SYNTAX);
    assert_invalid_str("PROXY TCP4\r\n", PROXY_R_V1_SYNTAX);
    assert_invalid_str("PROXY UDP4 1.2.3.4 5.6.7.8 1 1\r\n", PROXY_R_V1_PROTOCOL);
    assert_invalid_str("PROXY tcp4 1.2.3.4 5.6.7.8 1 1\r\n", PROXY_R_V1_PROTOCOL);
    /* Binary in the line is refused at once, before any CRLF. */
    assert_invalid("PROXY TCP4 \x01", 12, PROXY_R_V1_SYNTAX);
    assert_invalid("PROXY TCP4 \xff", 12, PROXY_R_V1_SYNTAX);
}

/* ---- v2 ---- */

/* A v2 header: signature, ver/cmd, fam/proto, length, then body. */
static size_t v2(uint8_t *out, uint8_t vercmd, uint8_t famproto, const uint8_t *body, size_t blen)
{
    memcpy(out, V2SIG, 12);
    out[12] = vercmd;
    out[13] = famproto;
    out[14] = (uint8_t)(blen >> 8);
    out[15] = (uint8_t)blen;
    if (blen) memcpy(out + 16, body, blen);
    return 16 + blen;
}

static void v2_proxy_inet(void **state)
{
    (void)state;
    uint8_t body[12] = {192, 0, 2, 1, 198, 51, 100, 7, 0xDC, 0x04, 0x01, 0xBB}, h[64];
    size_t n = v2(h, 0x21, 0x11, body, sizeof(body));
    memcpy(h + n, "\x00\x01\x00\x00", 4); /* STUN after it: kept */
    struct proxy_result r = decode_whole(h, n, 4);
    assert_int_equal(r.version, 2);
    assert_false(r.local);
    assert_addr(&r.src, "192.0.2.1", 56324);
    assert_addr(&r.dst, "198.51.100.7", 443);
}

static void v2_proxy_inet6(void **state)
{
    (void)state;
    uint8_t body[36] = {0}, h[64];
    inet_pton(AF_INET6, "2001:db8::1", body);
    inet_pton(AF_INET6, "2001:db8::2", body + 16);
    body[32] = 0x12, body[33] = 0x34, body[34] = 0x0D, body[35] = 0x96;
    size_t n = v2(h, 0x21, 0x21, body, sizeof(body));
    struct proxy_result r = decode_whole(h, n, 0);
    assert_false(r.local);
    assert_addr(&r.src, "2001:db8::1", 0x1234);
    assert_addr(&r.dst, "2001:db8::2", 3478);
}

static void v2_local(void **state)
{
    (void)state;
    uint8_t h[64], body[12] = {1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2};
    /* LOCAL with no address block (haproxy's health checks), and with one: both local. */
    size_t n = v2(h, 0x20, 0x00, NULL, 0);
    assert_true(decode_whole(h, n, 0).local);
    n = v2(h, 0x20, 0x11, body, sizeof(body));
    assert_true(decode_whole(h, n, 0).local);
    /* LOCAL ignores the family and protocol, even unknown ones, and a short block. */
    n = v2(h, 0x20, 0xFF, body, 3);
    assert_true(decode_whole(h, n, 0).local);
}

static void v2_unspec_and_unix(void **state)
{
    (void)state;
    uint8_t h[300], body[216];
    memset(body, 'u', sizeof(body));
    /* PROXY over AF_UNSPEC: no addresses; use the connection's. */
    size_t n = v2(h, 0x21, 0x00, NULL, 0);
    assert_true(decode_whole(h, n, 0).local);
    /* PROXY from a unix socket: not an IP address either. */
    n = v2(h, 0x21, 0x31, body, sizeof(body));
    assert_true(decode_whole(h, n, 0).local);
    n = v2(h, 0x21, 0x31, body, 215);
    assert_invalid(h, n, PROXY_R_V2_LENGTH);
}

static void v2_tlvs_skipped(void **state)
{
    (void)state;
    /* Addresses, then TLVs: ALPN "h2", AUTHORITY, a NOOP, CRC32C (not checked). */
    uint8_t body[64] = {127, 0, 0, 5, 127, 0, 0, 1, 0x30, 0x39, 0x0D, 0x96}, h[128];
    size_t b = 12;
    static const uint8_t tlvs[] = {0x01, 0x00, 0x02, 'h',  '2',  0x02, 0x00, 0x03, 'a', '.', 'b',
                                   0x04, 0x00, 0x01, 0x00, 0x03, 0x00, 0x04, 1,    2,   3,   4};
    memcpy(body + b, tlvs, sizeof(tlvs));
    b += sizeof(tlvs);
    size_t n = v2(h, 0x21, 0x11, body, b);
    h[n] = 0x16; /* TLS after it */
    struct proxy_result r = decode_whole(h, n, 1);
    assert_int_equal(r.consumed, 16 + 12 + sizeof(tlvs));
    assert_addr(&r.src, "127.0.0.5", 12345);
}

static void v2_need_reports_length(void **state)
{
    (void)state;
    uint8_t h[64], body[12] = {0};
    v2(h, 0x21, 0x11, body, sizeof(body));
    struct proxy_result r = decode(h, 16);
    assert_int_equal(r.status, PROXY_NEED_MORE);
    assert_int_equal(r.need, 28);
    /* A huge length is reported as soon as the fixed part is there (the caller's limit). */
    h[14] = 0xFF, h[15] = 0xFF;
    r = decode(h, 16);
    assert_int_equal(r.status, PROXY_NEED_MORE);
    assert_int_equal(r.need, PROXY_V2_MAXLEN);
}

static void v2_bad_fields(void **state)
{
    (void)state;
    uint8_t h[64], body[36] = {0};
    size_t n = v2(h, 0x11, 0x11, body, 12); /* version 1 in a v2 header */
    assert_invalid(h, n, PROXY_R_V2_VERSION);
    n = v2(h, 0x31, 0x11, body, 12);
    assert_invalid(h, n, PROXY_R_V2_VERSION);
    n = v2(h, 0x22, 0x11, body, 12); /* command 2 */
    assert_invalid(h, n, PROXY_R_V2_COMMAND);
    n = v2(h, 0x21, 0x41, body, 12); /* family 4 */
    assert_invalid(h, n, PROXY_R_V2_FAMILY);
    n = v2(h, 0x21, 0x12, body, 12); /* UDP over IPv4 to a TCP listener */
    assert_invalid(h, n, PROXY_R_V2_PROTOCOL);
    n = v2(h, 0x21, 0x10, body, 12);
    assert_invalid(h, n, PROXY_R_V2_PROTOCOL);
    n = v2(h, 0x21, 0x13, body, 12);
    assert_invalid(h, n, PROXY_R_V2_PROTOCOL);
    n = v2(h, 0x21, 0x11, body, 11); /* too short for two IPv4 addresses and ports */
    assert_invalid(h, n, PROXY_R_V2_LENGTH);
    n = v2(h, 0x21, 0x21, body, 35);
    assert_invalid(h, n, PROXY_R_V2_LENGTH);
    /* Refused from the fixed 16 bytes alone: no need to wait for the body. */
    v2(h, 0x21, 0x21, body, 12);
    assert_invalid(h, 16, PROXY_R_V2_LENGTH);
}

/* ---- neither ---- */

static void bad_signature(void **state)
{
    (void)state;
    /* Refused at the first byte that cannot start either signature. */
    assert_invalid("\x00\x01\x00\x00", 4, PROXY_R_SIGNATURE); /* STUN */
    assert_invalid("\x16\x03\x01", 3, PROXY_R_SIGNATURE);     /* TLS */
    assert_invalid("G", 1, PROXY_R_SIGNATURE);                /* HTTP */
    assert_invalid("PROXX", 5, PROXY_R_SIGNATURE);
    assert_invalid("PROXY\t", 6, PROXY_R_SIGNATURE);
    assert_invalid("\r\n\r\n\0\r\nQUIX", 12, PROXY_R_SIGNATURE);
    assert_invalid("\r\n\r\n\x01", 5, PROXY_R_SIGNATURE);
    /* Prefixes of a signature wait. */
    assert_int_equal(decode("", 0).status, PROXY_NEED_MORE);
    assert_int_equal(decode("PRO", 3).status, PROXY_NEED_MORE);
    assert_int_equal(decode(V2SIG, 7).status, PROXY_NEED_MORE);
    assert_int_equal(decode(V2SIG, 12).status, PROXY_NEED_MORE);
    assert_int_equal(decode("PROXY TCP4 1.2.3.4", 18).status, PROXY_NEED_MORE);
}

static void reason_names(void **state)
{
    (void)state;
    for (int i = 0; i < PROXY_R_COUNT; i++)
        assert_non_null(proxy_reason_name((enum proxy_reason)i));
    assert_string_equal(proxy_reason_name(PROXY_R_SIGNATURE), "bad_signature");
    assert_string_equal(proxy_reason_name(PROXY_R_COUNT), "?");
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(v1_tcp4),
        cmocka_unit_test(v1_tcp6),
        cmocka_unit_test(v1_unknown),
        cmocka_unit_test(v1_longest_line),
        cmocka_unit_test(v1_oversize),
        cmocka_unit_test(v1_bad_numbers),
        cmocka_unit_test(v1_bad_syntax),
        cmocka_unit_test(v2_proxy_inet),
        cmocka_unit_test(v2_proxy_inet6),
        cmocka_unit_test(v2_local),
        cmocka_unit_test(v2_unspec_and_unix),
        cmocka_unit_test(v2_tlvs_skipped),
        cmocka_unit_test(v2_need_reports_length),
        cmocka_unit_test(v2_bad_fields),
        cmocka_unit_test(bad_signature),
        cmocka_unit_test(reason_names),
    };
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
