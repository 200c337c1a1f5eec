/* test_stun_codec.c: the STUN/TURN codec: attribute round trips, truncation, header and
 * length rules, RFC 8489 ordering rules, integrity, encoder bounds and ChannelData framing.
 * Inputs are decoded from guard-page buffers so an over-read faults. One test alone: pass its
 * name (a glob) as the first argument. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "stun.h"
#include "testutil.h"

static const uint8_t tid_a[STUN_TID_LEN] = {0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34,
                                            0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae};
static const char key_a[] = "VOkJxbRl1RmTxUk/WvJxBt";

/* The RFC 5769 vectors (and RFC 8489 B.1), as in tests/vectors/test_rfc5769.c. */
static const char *const rfc_vectors[] = {
    "000100582112a442b7e7a701bc34d686fa87dfae802200105354554e207465737420636c69656e74"
    "002400046e0001ff80290008932ff9b151263b36000600096576746a3a68367659202020"
    "000800149aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a280280004e57a3bcf",
    "0101003c2112a442b7e7a701bc34d686fa87dfae8022000b7465737420766563746f7220"
    "002000080001a147e112a643000800142b91f599fd9e90c38c7489f92af9ba53f06be7d7"
    "80280004c07d4c96",
    "010100482112a442b7e7a701bc34d686fa87dfae8022000b7465737420766563746f7220"
    "002000140002a1470113a9faa5d3f179bc25f4b5bed2b9d900080014a382954e4be67bf11784c97c"
    "8292c275bfe3ed4180280004c8fb0b4c",
    "000100602112a44278ad3433c6ad72c029da412e00060012e3839ee38388e383aae38383e382afe382b9"
    "00000015001c662f2f3439396b39353464364f4c33346f4c39465354767936347341"
    "0014000b6578616d706c652e6f72670000080014f67024656dd64a3e02b8e0712e85c9a28ca89666",
    "000100902112a44278ad3433c6ad72c029da412e001e00204a3cf38fef6992bda952c6780417da0f"
    "24819415569e60b205c46e41407f1704001500296f624d61744a6f73324141414366"
    "2f2f3439396b39353464364f4c33346f4c39465354767936347341000000"
    "0014000b6578616d706c652e6f726700001d000400020000001c0020b5c7bf005b6c52a21c51c5e8"
    "92f81924136296cb927c43149309278cc6518e65",
};

/* ---- helpers ---------------------------------------------------------------------------- */

/* A message decoded from a copy that ends at a guard page. */
struct gmsg {
    struct stun_msg m;
    uint8_t *g;
    size_t len;
};

static int gdecode(struct gmsg *gm, const uint8_t *buf, size_t len)
{
    gm->g = guard_place(buf, len);
    gm->len = len;
    return stun_decode(&gm->m, gm->g, len);
}

static void gfree(struct gmsg *gm)
{
    guard_free(gm->g, gm->len);
}

/* Decode once from a guard page and release it; for checks that need only the result. */
static int decode_rc(const uint8_t *buf, size_t len)
{
    struct gmsg gm;
    int rc = gdecode(&gm, buf, len);
    gfree(&gm);
    return rc;
}

static union stun_addr mk_v4(const char *ip, uint16_t port)
{
    union stun_addr a;
    memset(&a, 0, sizeof(a));
    a.v4.sin_family = AF_INET;
    a.v4.sin_port = htons(port);
    assert_int_equal(inet_pton(AF_INET, ip, &a.v4.sin_addr), 1);
    return a;
}

static union stun_addr mk_v6(const char *ip, uint16_t port)
{
    union stun_addr a;
    memset(&a, 0, sizeof(a));
    a.v6.sin6_family = AF_INET6;
    a.v6.sin6_port = htons(port);
    assert_int_equal(inet_pton(AF_INET6, ip, &a.v6.sin6_addr), 1);
    return a;
}

static void assert_addr_equal(const union stun_addr *got, const union stun_addr *want)
{
    assert_int_equal(got->sa.sa_family, want->sa.sa_family);
    if (want->sa.sa_family == AF_INET) {
        assert_int_equal(got->v4.sin_port, want->v4.sin_port);
        assert_memory_equal(&got->v4.sin_addr, &want->v4.sin_addr, 4);
    } else {
        assert_int_equal(got->v6.sin6_port, want->v6.sin6_port);
        assert_memory_equal(&got->v6.sin6_addr, &want->v6.sin6_addr, 16);
    }
}

static uint16_t rd16be(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t rd32be(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void wr16be(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static size_t pad4z(size_t n)
{
    return (n + 3) & ~(size_t)3;
}

static void enc_begin(struct stun_enc *e, uint8_t *buf, size_t cap)
{
    stun_enc_init(e, buf, cap, stun_type(STUN_BINDING, STUN_REQUEST), tid_a);
}

static int finish_ok(const struct stun_enc *e)
{
    int n = stun_enc_finish(e);
    if (n <= 0) fail_msg("encoder failed: %s", stun_errname(n));
    assert_int_equal(rd16be(e->buf + 2), n - STUN_HEADER_LEN);
    return n;
}

/* Finish e, decode from a guard page, check the message holds exactly one attribute of type
 * with padding bytes equal to e->pad, and return it. */
static const struct stun_attr *decode_single(struct gmsg *gm, const struct stun_enc *e,
                                             uint16_t type)
{
    int n = finish_ok(e);
    int rc = gdecode(gm, e->buf, (size_t)n);
    if (rc) fail_msg("decode of type 0x%04x failed: %s", type, stun_errname(rc));
    assert_int_equal(gm->m.nattrs, 1);
    assert_int_equal(gm->m.nunknown, 0);
    const struct stun_attr *a = stun_find(&gm->m, type);
    assert_non_null(a);
    assert_ptr_equal(a, &gm->m.attrs[0]);
    assert_ptr_equal(a->val, gm->g + STUN_HEADER_LEN + 4);
    assert_int_equal((size_t)n, STUN_HEADER_LEN + 4 + pad4z(a->len));
    for (size_t i = a->len; i < pad4z(a->len); i++)
        assert_int_equal(a->val[i], e->pad);
    assert_null(stun_find_next(&gm->m, a));
    return a;
}

/* Build a message holding one attribute with a raw value of len bytes (filled with fill). */
static int raw_single(uint8_t *buf, size_t cap, uint16_t type, size_t len, uint8_t fill)
{
    uint8_t *val = malloc(len ? len : 1);
    assert_non_null(val);
    memset(val, fill, len);
    struct stun_enc e;
    enc_begin(&e, buf, cap);
    stun_enc_attr(&e, type, val, len);
    free(val);
    return stun_enc_finish(&e);
}

/* ---- round trips ------------------------------------------------------------------------ */

static void test_roundtrip_addresses(void **state)
{
    (void)state;
    const union stun_addr addrs[] = {
        mk_v4("192.0.2.1", 32853),
        mk_v4("0.0.0.0", 0),
        mk_v4("255.255.255.255", 65535),
        mk_v6("2001:db8:1234:5678:11:2233:4455:6677", 32853),
        mk_v6("::", 1),
        mk_v6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535),
        mk_v6("::ffff:192.0.2.9", 3478),
    };
    const struct {
        uint16_t type;
        bool is_xor;
    } types[] = {
        {STUN_ATTR_MAPPED_ADDRESS, false},     {STUN_ATTR_ALTERNATE_SERVER, false},
        {STUN_ATTR_XOR_MAPPED_ADDRESS, true},  {STUN_ATTR_XOR_PEER_ADDRESS, true},
        {STUN_ATTR_XOR_RELAYED_ADDRESS, true}, {STUN_ATTR_RESPONSE_ORIGIN, false},
        {STUN_ATTR_OTHER_ADDRESS, false},
    };
    for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
        for (size_t i = 0; i < sizeof(addrs) / sizeof(addrs[0]); i++) {
            const union stun_addr *want = &addrs[i];
            bool v4 = want->sa.sa_family == AF_INET;
            uint8_t buf[128];
            struct stun_enc e;
            enc_begin(&e, buf, sizeof(buf));
            if (types[t].is_xor)
                stun_enc_xor_addr(&e, types[t].type, want);
            else
                stun_enc_addr(&e, types[t].type, want);
            struct gmsg gm;
            const struct stun_attr *a = decode_single(&gm, &e, types[t].type);
            assert_int_equal(a->len, v4 ? 8 : 20);
            assert_int_equal(a->val[0], 0);
            assert_int_equal(a->val[1], v4 ? STUN_FAMILY_IPV4 : STUN_FAMILY_IPV6);

            /* Wire form: X-Port is port ^ top of cookie, X-Address is ^ cookie (|| tid). */
            uint16_t port = ntohs(v4 ? want->v4.sin_port : want->v6.sin6_port);
            const uint8_t *ip =
                v4 ? (const uint8_t *)&want->v4.sin_addr : (const uint8_t *)&want->v6.sin6_addr;
            uint8_t mask[16] = {0x21, 0x12, 0xa4, 0x42};
            memcpy(mask + 4, tid_a, STUN_TID_LEN);
            assert_int_equal(rd16be(a->val + 2), types[t].is_xor ? port ^ 0x2112 : port);
            for (int k = 0; k < (v4 ? 4 : 16); k++)
                assert_int_equal(a->val[4 + k], types[t].is_xor ? ip[k] ^ mask[k] : ip[k]);

            union stun_addr got;
            memset(&got, 0xEE, sizeof(got));
            if (types[t].is_xor)
                assert_int_equal(stun_get_xor_addr(&gm.m, a, &got), 0);
            else
                assert_int_equal(stun_get_addr(a, &got), 0);
            assert_addr_equal(&got, want);
            gfree(&gm);
        }
    }
}

static void test_address_getter_errors(void **state)
{
    (void)state;
    uint8_t buf[128];
    struct gmsg gm;
    union stun_addr got;
    /* Family 0x03 in an 8-byte value: decodes (length is fine), getter says BAD_FAMILY. */
    uint8_t v[20] = {0, 3, 0x12, 0x34, 1, 2, 3, 4};
    struct stun_enc e;
    enc_begin(&e, buf, sizeof(buf));
    stun_enc_attr(&e, STUN_ATTR_XOR_PEER_ADDRESS, v, 8);
    const struct stun_attr *a = decode_single(&gm, &e, STUN_ATTR_XOR_PEER_ADDRESS);
    assert_int_equal(stun_get_xor_addr(&gm.m, a, &got), STUN_E_BAD_FAMILY);
    assert_int_equal(stun_get_addr(a, &got), STUN_E_BAD_FAMILY);
    gfree(&gm);
    /* IPv4 family with 20 bytes, IPv6 family with 8 bytes: BAD_VALUE. */
    v[1] = STUN_FAMILY_IPV4;
    enc_begin(&e, buf, sizeof(buf));
    stun_enc_attr(&e, STUN_ATTR_MAPPED_ADDRESS, v, 20);
    a = decode_single(&gm, &e, STUN_ATTR_MAPPED_ADDRESS);
    assert_int_equal(stun_get_addr(a, &got), STUN_E_BAD_VALUE);
    gfree(&gm);
    v[1] = STUN_FAMILY_IPV6;
    enc_begin(&e, buf, sizeof(buf));
    stun_enc_attr(&e, STUN_ATTR_XOR_MAPPED_ADDRESS, v, 8);
    a = decode_single(&gm, &e, STUN_ATTR_XOR_MAPPED_ADDRESS);
    assert_int_equal(stun_get_xor_addr(&gm.m, a, &got), STUN_E_BAD_VALUE);
    gfree(&gm);
    /* The encoder refuses a family it cannot carry. */
    union stun_addr un;
    memset(&un, 0, sizeof(un));
    un.sa.sa_family = AF_UNIX;
    enc_begin(&e, buf, sizeof(buf));
    stun_enc_addr(&e, STUN_ATTR_MAPPED_ADDRESS, &un);
    assert_int_equal(stun_enc_finish(&e), STUN_E_BAD_FAMILY);
    enc_begin(&e, buf, sizeof(buf));
    stun_enc_xor_addr(&e, STUN_ATTR_XOR_PEER_ADDRESS, &un);
    assert_int_equal(stun_enc_finish(&e), STUN_E_BAD_FAMILY);
}

/* Opaque byte-string attributes: every length from 0 to 9 plus the largest allowed, with
 * zero padding and with 0x20 padding. */
static void test_roundtrip_text(void **state)
{
    (void)state;
    const struct {
        uint16_t type;
        size_t min, max;
    } types[] = {
        {STUN_ATTR_USERNAME, 0, STUN_MAX_USERNAME}, {STUN_ATTR_REALM, 0, STUN_MAX_TEXT_BYTES},
        {STUN_ATTR_NONCE, 0, STUN_MAX_TEXT_BYTES},  {STUN_ATTR_SOFTWARE, 0, STUN_MAX_TEXT_BYTES},
        {STUN_ATTR_ALTERNATE_DOMAIN, 1, 255},       {STUN_ATTR_USERHASH, 32, 32},
    };
    uint8_t val[STUN_MAX_TEXT_BYTES];
    for (size_t i = 0; i < sizeof(val); i++)
        val[i] = (uint8_t)('a' + i % 26);
    uint8_t buf[1024];
    for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
        size_t lens[12], nlens = 0;
        for (size_t l = types[t].min; l < 10 && l <= types[t].max; l++)
            lens[nlens++] = l;
        lens[nlens++] = types[t].max;
        for (size_t i = 0; i < nlens; i++) {
            for (int pad = 0; pad < 2; pad++) {
                struct stun_enc e;
                enc_begin(&e, buf, sizeof(buf));
                e.pad = pad ? 0x20 : 0;
                stun_enc_attr(&e, types[t].type, val, lens[i]);
                struct gmsg gm;
                const struct stun_attr *a = decode_single(&gm, &e, types[t].type);
                assert_int_equal(a->len, lens[i]);
                assert_memory_equal(a->val, val, lens[i]);
                gfree(&gm);
            }
        }
    }
}

static void check_error_code(int code, const char *reason, const char *want_reason)
{
    uint8_t buf[1024];
    struct stun_enc e;
    stun_enc_init(&e, buf, sizeof(buf), stun_type(STUN_ALLOCATE, STUN_ERROR), tid_a);
    stun_enc_error(&e, code, reason);
    struct gmsg gm;
    const struct stun_attr *a = decode_single(&gm, &e, STUN_ATTR_ERROR_CODE);
    assert_int_equal(a->val[0], 0);
    assert_int_equal(a->val[1], 0);
    assert_int_equal(a->val[2], code / 100);
    assert_int_equal(a->val[3], code % 100);
    int got = 0;
    const char *r = NULL;
    size_t rlen = 0;
    assert_int_equal(stun_get_error(a, &got, &r, &rlen), 0);
    assert_int_equal(got, code);
    assert_int_equal(rlen, strlen(want_reason));
    assert_memory_equal(r, want_reason, rlen);
    gfree(&gm);
}

static void test_roundtrip_error_code(void **state)
{
    (void)state;
    static const int codes[] = {300, 400, 401, 403, 405, 420, 437, 438,
                                440, 441, 442, 443, 486, 500, 508};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        const char *def = stun_error_reason(codes[i]);
        assert_string_not_equal(def, "Unknown Error");
        check_error_code(codes[i], NULL, def);
        check_error_code(codes[i], "Custom", "Custom");
    }
    check_error_code(599, NULL, "Unknown Error");
    check_error_code(699, "", "");
    check_error_code(300, "x", "x");
    check_error_code(401, "Unauthorized \xc3\xa9t\xc3\xa9", "Unauthorized \xc3\xa9t\xc3\xa9");
    assert_string_equal(stun_error_reason(438), "Stale Nonce");
    assert_string_equal(stun_error_reason(420), "Unknown Attribute");

    /* The longest reason fits; a longer one is cut to 763 bytes, never a bad message. */
    char longr[STUN_MAX_TEXT_BYTES + 10];
    memset(longr, 'r', sizeof(longr) - 1);
    longr[sizeof(longr) - 1] = 0;
    char maxr[STUN_MAX_TEXT_BYTES + 1];
    memcpy(maxr, longr, STUN_MAX_TEXT_BYTES);
    maxr[STUN_MAX_TEXT_BYTES] = 0;
    check_error_code(500, maxr, maxr);
    check_error_code(500, longr, maxr);

    /* Codes outside 300-699: BAD_VALUE; the getter refuses classes 1, 2, 7 and numbers > 99. */
    uint8_t buf[128];
    struct stun_enc e;
    const int bad[] = {0, 100, 299, 700, 999, -400};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        enc_begin(&e, buf, sizeof(buf));
        stun_enc_error(&e, bad[i], NULL);
        assert_int_equal(stun_enc_finish(&e), STUN_E_BAD_VALUE);
    }
    const uint8_t raw[][4] = {{0, 0, 2, 99}, {0, 0, 7, 0}, {0, 0, 4, 100}, {0, 0, 0, 0}};
    for (size_t i = 0; i < sizeof(raw) / sizeof(raw[0]); i++) {
        enc_begin(&e, buf, sizeof(buf));
        stun_enc_attr(&e, STUN_ATTR_ERROR_CODE, raw[i], 4);
        struct gmsg gm;
        const struct stun_attr *a = decode_single(&gm, &e, STUN_ATTR_ERROR_CODE);
        int code;
        const char *r;
        size_t rlen;
        assert_int_equal(stun_get_error(a, &code, &r, &rlen), STUN_E_BAD_VALUE);
        gfree(&gm);
    }
    /* The reserved bits above the class are not part of it. */
    const uint8_t hi[4] = {0xff, 0xff, 0xfc, 42};
    enc_begin(&e, buf, sizeof(buf));
    stun_enc_attr(&e, STUN_ATTR_ERROR_CODE, hi, 4);
    struct gmsg gm;
    const struct stun_attr *a = decode_single(&gm, &e, STUN_ATTR_ERROR_CODE);
    int code;
    const char *r;
    size_t rlen;
    assert_int_equal(stun_get_error(a, &code, &r, &rlen), 0);
    assert_int_equal(code, 442);
    assert_int_equal(rlen, 0);
    gfree(&gm);
}

static void test_roundtrip_password_algorithms(void **state)
{
    (void)state;
    uint8_t buf[256];
    struct stun_enc e;
    struct gmsg gm;
    const uint16_t algs[] = {STUN_PASSWORD_ALG_SHA256, STUN_PASSWORD_ALG_MD5, 0x1234};
    for (size_t n = 1; n <= 3; n++) {
        enc_begin(&e, buf, sizeof(buf));
        stun_enc_password_algorithms(&e, algs, n);
        const struct stun_attr *a = decode_single(&gm, &e, STUN_ATTR_PASSWORD_ALGORITHMS);
        assert_int_equal(a->len, 4 * n);
        size_t off = 0, count = 0;
        uint16_t alg, plen;
        const uint8_t *params;
        int rc;
        while ((rc = stun_next_password_algorithm(a, &off, &alg, &params, &plen)) == 1) {
            assert_true(count < n);
            assert_int_equal(alg, algs[count]);
            assert_int_equal(plen, 0);
            count++;
        }
        assert_int_equal(rc, 0);
        assert_int_equal(count, n);
        gfree(&gm);
    }
    /* Entries with parameters, padded inside the value. */
    const uint8_t withp[] = {0x00, 0x03, 0x00, 0x03, 'a',  'b',  'c', 0x00, 0x00, 0x02,
                             0x00, 0x00, 0x00, 0x07, 0x00, 0x04, 1,   2,    3,    4};
    enc_begin(&e, buf, sizeof(buf));
    stun_enc_attr(&e, STUN_ATTR_PASSWORD_ALGORITHMS, withp, sizeof(withp));
    const struct stun_attr *a = decode_single(&gm, &e, STUN_ATTR_PASSWORD_ALGORITHMS);
    size_t off = 0;
    uint16_t alg, plen;
    const uint8_t *params;
    assert_int_equal(stun_next_password_algorithm(a, &off, &alg, &params, &plen), 1);
    assert_int_equal(alg, 3);
    assert_int_equal(plen, 3);
    assert_memory_equal(params, "abc", 3);
    assert_int_equal(stun_next_password_algorithm(a, &off, &alg, &params, &plen), 1);
    assert_int_equal(alg, 2);
    assert_int_equal(plen, 0);
    assert_int_equal(stun_next_password_algorithm(a, &off, &alg, &params, &plen), 1);
    assert_int_equal(alg, 7);
    assert_int_equal(plen, 4);
    assert_memory_equal(params, "\x01\x02\x03\x04", 4);
    assert_int_equal(stun_next_password_algorithm(a, &off, &alg, &params, &plen), 0);
    gfree(&gm);
    /* An entry whose parameter length runs past the value: BAD_VALUE, no over-read. */
    const uint8_t badp[] = {0x00, 0x01, 0x00, 0x00, 0x00, 0x02, 0x00, 0x09, 1, 2, 3, 4};
    enc_begin(&e, buf, sizeof(buf));
    stun_enc_attr(&e, STUN_ATTR_PASSWORD_ALGORITHMS, badp, sizeof(badp));
    a = decode_single(&gm, &e, STUN_ATTR_PASSWORD_ALGORITHMS);
    off = 0;
    assert_int_equal(stun_next_password_algorithm(a, &off, &alg, &params, &plen), 1);
    assert_int_equal(stun_next_password_algorithm(a, &off, &alg, &params, &plen), STUN_E_BAD_VALUE);
    gfree(&gm);

    /* PASSWORD-ALGORITHM: one entry. */
    const uint16_t one[] = {STUN_PASSWORD_ALG_MD5, STUN_PASSWORD_ALG_SHA256};
    for (size_t i = 0; i < 2; i++) {
        enc_begin(&e, buf, sizeof(buf));
        stun_enc_password_algorithm(&e, one[i]);
        a = decode_single(&gm, &e, STUN_ATTR_PASSWORD_ALGORITHM);
        assert_int_equal(a->len, 4);
        assert_int_equal(stun_get_password_algorithm(a, &alg, &params, &plen), 0);
        assert_int_equal(alg, one[i]);
        assert_int_equal(plen, 0);
        gfree(&gm);
    }
    const uint8_t pa_bad[] = {0x00, 0x02, 0x00, 0x05, 1, 2, 3, 4};
    enc_begin(&e, buf, sizeof(buf));
    stun_enc_attr(&e, STUN_ATTR_PASSWORD_ALGORITHM, pa_bad, sizeof(pa_bad));
    a = decode_single(&gm, &e, STUN_ATTR_PASSWORD_ALGORITHM);
    assert_int_equal(stun_get_password_algorithm(a, &alg, &params, &plen), STUN_E_BAD_VALUE);
    gfree(&gm);
}

static void test_roundtrip_unknown_attributes(void **state)
{
    (void)state;
    const uint16_t types[] = {0x0002, 0x0004, 0x7F00, 0x0005, 0x1234};
    uint8_t buf[128];
    for (size_t n = 0; n <= 5; n++) {
        struct stun_enc e;
        stun_enc_init(&e, buf, sizeof(buf), stun_type(STUN_BINDING, STUN_ERROR), tid_a);
        stun_enc_unknown(&e, types, n);
        struct gmsg gm;
        const struct stun_attr *a = decode_single(&gm, &e, STUN_ATTR_UNKNOWN_ATTRIBUTES);
        assert_int_equal(a->len, 2 * n);
        uint16_t got[8];
        size_t cnt = 99;
        assert_int_equal(stun_get_unknown(a, got, 8, &cnt), 0);
        assert_int_equal(cnt, n);
        for (size_t i = 0; i < n; i++)
            assert_int_equal(got[i], types[i]);
        /* A smaller output array: only max entries. */
        cnt = 99;
        assert_int_equal(stun_get_unknown(a, got, 2, &cnt), 0);
        assert_int_equal(cnt, n < 2 ? n : 2);
        gfree(&gm);
    }
}

static void test_roundtrip_numbers(void **state)
{
    (void)state;
    uint8_t buf[128];
    struct stun_enc e;
    struct gmsg gm;
    const struct stun_attr *a;

    const uint16_t chans[] = {0x4000, 0x4001, 0x4FFF, 0x5000, 0x7FFF};
    for (size_t i = 0; i < sizeof(chans) / sizeof(chans[0]); i++) {
        enc_begin(&e, buf, sizeof(buf));
        stun_enc_channel(&e, chans[i]);
        a = decode_single(&gm, &e, STUN_ATTR_CHANNEL_NUMBER);
        assert_int_equal(a->len, 4);
        assert_int_equal(rd16be(a->val + 2), 0); /* RFFU */
        uint16_t ch = 0;
        assert_int_equal(stun_get_channel(a, &ch), 0);
        assert_int_equal(ch, chans[i]);
        gfree(&gm);
    }
    const uint32_t lifetimes[] = {0, 1, 600, 3600, 0xFFFFFFFFu};
    for (size_t i = 0; i < sizeof(lifetimes) / sizeof(lifetimes[0]); i++) {
        enc_begin(&e, buf, sizeof(buf));
        stun_enc_u32(&e, STUN_ATTR_LIFETIME, lifetimes[i]);
        a = decode_single(&gm, &e, STUN_ATTR_LIFETIME);
        uint32_t v = 1;
        assert_int_equal(stun_get_u32(a, &v), 0);
        assert_int_equal(v, lifetimes[i]);
        assert_int_equal(rd32be(a->val), lifetimes[i]);
        gfree(&gm);
    }
    const uint8_t protos[] = {STUN_TRANSPORT_UDP, 6, 0, 255};
    for (size_t i = 0; i < sizeof(protos); i++) {
        enc_begin(&e, buf, sizeof(buf));
        stun_enc_u8_rffu(&e, STUN_ATTR_REQUESTED_TRANSPORT, protos[i]);
        a = decode_single(&gm, &e, STUN_ATTR_REQUESTED_TRANSPORT);
        assert_int_equal(a->val[0], protos[i]);
        assert_int_equal(a->val[1] | a->val[2] | a->val[3], 0);
        uint8_t p = 1;
        assert_int_equal(stun_get_transport(a, &p), 0);
        assert_int_equal(p, protos[i]);
        gfree(&gm);
    }
    const uint16_t famtypes[] = {STUN_ATTR_REQUESTED_ADDRESS_FAMILY,
                                 STUN_ATTR_ADDITIONAL_ADDRESS_FAMILY};
    const uint8_t fams[] = {STUN_FAMILY_IPV4, STUN_FAMILY_IPV6, 0x03};
    for (size_t t = 0; t < 2; t++) {
        for (size_t i = 0; i < sizeof(fams); i++) {
            enc_begin(&e, buf, sizeof(buf));
            stun_enc_u8_rffu(&e, famtypes[t], fams[i]);
            a = decode_single(&gm, &e, famtypes[t]);
            assert_int_equal(a->len, 4);
            assert_int_equal(a->val[1] | a->val[2] | a->val[3], 0);
            uint8_t f = 0;
            assert_int_equal(stun_get_family(a, &f), 0);
            assert_int_equal(f, fams[i]);
            gfree(&gm);
        }
    }
    for (int r = 0; r < 2; r++) {
        enc_begin(&e, buf, sizeof(buf));
        stun_enc_even_port(&e, r != 0);
        a = decode_single(&gm, &e, STUN_ATTR_EVEN_PORT);
        assert_int_equal(a->len, 1);
        assert_int_equal(a->val[0], r ? 0x80 : 0x00);
        bool got = r == 0;
        assert_int_equal(stun_get_even_port(a, &got), 0);
        assert_int_equal(got, r != 0);
        gfree(&gm);
    }
    /* EVEN-PORT: only the top bit is R; the other 7 bits are RFFU. */
    const uint8_t ep = 0x7F;
    enc_begin(&e, buf, sizeof(buf));
    stun_enc_attr(&e, STUN_ATTR_EVEN_PORT, &ep, 1);
    a = decode_single(&gm, &e, STUN_ATTR_EVEN_PORT);
    bool rbit = true;
    assert_int_equal(stun_get_even_port(a, &rbit), 0);
    assert_false(rbit);
    gfree(&gm);

    enc_begin(&e, buf, sizeof(buf));
    stun_enc_attr(&e, STUN_ATTR_DONT_FRAGMENT, NULL, 0);
    a = decode_single(&gm, &e, STUN_ATTR_DONT_FRAGMENT);
    assert_int_equal(a->len, 0);
    gfree(&gm);

    const uint64_t tokens[] = {0, 0x0102030405060708ull, 0xFFFFFFFFFFFFFFFFull};
    for (size_t i = 0; i < 3; i++) {
        enc_begin(&e, buf, sizeof(buf));
        stun_enc_u64(&e, STUN_ATTR_RESERVATION_TOKEN, tokens[i]);
        a = decode_single(&gm, &e, STUN_ATTR_RESERVATION_TOKEN);
        assert_int_equal(a->len, STUN_RESERVATION_TOKEN_LEN);
        uint64_t v = 1;
        assert_int_equal(stun_get_u64(a, &v), 0);
        assert_true(v == tokens[i]);
        gfree(&gm);
    }
    const uint8_t tok[8] = {0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3};
    enc_begin(&e, buf, sizeof(buf));
    stun_enc_attr(&e, STUN_ATTR_RESERVATION_TOKEN, tok, 8);
    a = decode_single(&gm, &e, STUN_ATTR_RESERVATION_TOKEN);
    assert_memory_equal(a->val, tok, 8);
    uint64_t tv = 0;
    assert_int_equal(stun_get_u64(a, &tv), 0);
    assert_true(tv == 0xdeadbeef00010203ull);
    gfree(&gm);

    /* ICE attributes ride along (PRIORITY, ICE-CONTROLLING, USE-CANDIDATE). */
    enc_begin(&e, buf, sizeof(buf));
    stun_enc_u32(&e, STUN_ATTR_PRIORITY, 0x6e0001ff);
    stun_enc_u64(&e, STUN_ATTR_ICE_CONTROLLING, 0x932ff9b151263b36ull);
    stun_enc_attr(&e, STUN_ATTR_USE_CANDIDATE, NULL, 0);
    int n = finish_ok(&e);
    assert_int_equal(gdecode(&gm, buf, (size_t)n), 0);
    assert_int_equal(gm.m.nattrs, 3);
    uint32_t prio;
    uint64_t tie;
    assert_int_equal(stun_get_u32(stun_find(&gm.m, STUN_ATTR_PRIORITY), &prio), 0);
    assert_int_equal(prio, 0x6e0001ff);
    assert_int_equal(stun_get_u64(stun_find(&gm.m, STUN_ATTR_ICE_CONTROLLING), &tie), 0);
    assert_true(tie == 0x932ff9b151263b36ull);
    assert_non_null(stun_find(&gm.m, STUN_ATTR_USE_CANDIDATE));
    /* Fixed-size getters refuse other sizes. */
    uint8_t u8;
    uint16_t u16;
    bool b;
    assert_int_equal(stun_get_u32(stun_find(&gm.m, STUN_ATTR_ICE_CONTROLLING), &prio),
                     STUN_E_BAD_VALUE);
    assert_int_equal(stun_get_u64(stun_find(&gm.m, STUN_ATTR_PRIORITY), &tie), STUN_E_BAD_VALUE);
    assert_int_equal(stun_get_channel(stun_find(&gm.m, STUN_ATTR_USE_CANDIDATE), &u16),
                     STUN_E_BAD_VALUE);
    assert_int_equal(stun_get_transport(stun_find(&gm.m, STUN_ATTR_USE_CANDIDATE), &u8),
                     STUN_E_BAD_VALUE);
    assert_int_equal(stun_get_family(stun_find(&gm.m, STUN_ATTR_ICE_CONTROLLING), &u8),
                     STUN_E_BAD_VALUE);
    assert_int_equal(stun_get_even_port(stun_find(&gm.m, STUN_ATTR_PRIORITY), &b),
                     STUN_E_BAD_VALUE);
    gfree(&gm);
}

static void test_roundtrip_data(void **state)
{
    (void)state;
    const size_t sizes[] = {0, 1, 2, 3, 4, 5, 1200, 65527, 65528};
    size_t cap = STUN_MAX_MSG;
    uint8_t *buf = malloc(cap);
    uint8_t *payload = malloc(65536);
    assert_non_null(buf);
    assert_non_null(payload);
    for (size_t i = 0; i < 65536; i++)
        payload[i] = (uint8_t)(i * 7 + 1);
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        struct stun_enc e;
        stun_enc_init(&e, buf, cap, stun_type(STUN_SEND, STUN_INDICATION), tid_a);
        stun_enc_attr(&e, STUN_ATTR_DATA, payload, sizes[i]);
        struct gmsg gm;
        const struct stun_attr *a = decode_single(&gm, &e, STUN_ATTR_DATA);
        assert_int_equal(a->len, sizes[i]);
        assert_memory_equal(a->val, payload, sizes[i]);
        gfree(&gm);
    }
    /* In place: the value already sits where the encoder will put it (framing a peer
     * datagram without a copy). Padding is written after it, the bytes are untouched. */
    struct stun_enc ip;
    stun_enc_init(&ip, buf, cap, stun_type(STUN_DATA, STUN_INDICATION), tid_a);
    union stun_addr peer;
    memset(&peer, 0, sizeof(peer));
    peer.v4.sin_family = AF_INET;
    peer.v4.sin_port = htons(9);
    stun_enc_xor_addr(&ip, STUN_ATTR_XOR_PEER_ADDRESS, &peer);
    uint8_t *at = buf + ip.len + 4;
    memcpy(at, "in place!", 9);
    memset(at + 9, 0xEE, 3);
    stun_enc_attr(&ip, STUN_ATTR_DATA, at, 9);
    int iplen = finish_ok(&ip);
    struct gmsg igm;
    assert_int_equal(gdecode(&igm, buf, (size_t)iplen), 0);
    const struct stun_attr *ia = stun_find(&igm.m, STUN_ATTR_DATA);
    assert_int_equal(ia->len, 9);
    assert_memory_equal(ia->val, "in place!\0\0\0", 12);
    gfree(&igm);

    /* A value that would push the body past 65535 bytes: NO_SPACE whatever the buffer. */
    const size_t too_big[] = {65529, 65532, 65535, 65536};
    for (size_t i = 0; i < sizeof(too_big) / sizeof(too_big[0]); i++) {
        struct stun_enc e;
        stun_enc_init(&e, buf, cap, stun_type(STUN_SEND, STUN_INDICATION), tid_a);
        stun_enc_attr(&e, STUN_ATTR_DATA, payload, too_big[i]);
        assert_int_equal(stun_enc_finish(&e), STUN_E_NO_SPACE);
        assert_int_equal(e.len, STUN_HEADER_LEN);
    }
    /* Two attributes that fit one by one but not together. */
    struct stun_enc e2;
    stun_enc_init(&e2, buf, cap, stun_type(STUN_SEND, STUN_INDICATION), tid_a);
    stun_enc_attr(&e2, STUN_ATTR_DATA, payload, 40000);
    assert_int_equal(e2.err, 0);
    stun_enc_attr(&e2, STUN_ATTR_DATA, payload, 30000);
    assert_int_equal(stun_enc_finish(&e2), STUN_E_NO_SPACE);
    free(payload);
    free(buf);
}

static void test_roundtrip_address_error_and_icmp(void **state)
{
    (void)state;
    uint8_t buf[1024];
    struct stun_enc e;
    struct gmsg gm;
    const struct {
        uint8_t family;
        int code;
        const char *reason, *want;
    } cases[] = {
        {STUN_FAMILY_IPV4, 440, NULL, "Address Family not Supported"},
        {STUN_FAMILY_IPV6, 508, NULL, "Insufficient Capacity"},
        {STUN_FAMILY_IPV6, 440, "no v6 here", "no v6 here"},
        {STUN_FAMILY_IPV4, 600, "", ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        stun_enc_init(&e, buf, sizeof(buf), stun_type(STUN_ALLOCATE, STUN_SUCCESS), tid_a);
        stun_enc_address_error(&e, cases[i].family, cases[i].code, cases[i].reason);
        const struct stun_attr *a = decode_single(&gm, &e, STUN_ATTR_ADDRESS_ERROR_CODE);
        assert_int_equal(a->val[0], cases[i].family);
        uint8_t fam = 0;
        int code = 0;
        const char *r;
        size_t rlen;
        assert_int_equal(stun_get_address_error(a, &fam, &code, &r, &rlen), 0);
        assert_int_equal(fam, cases[i].family);
        assert_int_equal(code, cases[i].code);
        assert_int_equal(rlen, strlen(cases[i].want));
        assert_memory_equal(r, cases[i].want, rlen);
        gfree(&gm);
    }
    stun_enc_init(&e, buf, sizeof(buf), stun_type(STUN_ALLOCATE, STUN_SUCCESS), tid_a);
    stun_enc_address_error(&e, STUN_FAMILY_IPV4, 250, NULL);
    assert_int_equal(stun_enc_finish(&e), STUN_E_BAD_VALUE);

    const struct {
        uint8_t type, code;
        uint32_t data;
    } icmps[] = {{3, 1, 0}, {3, 4, 1400}, {1, 4, 0xFFFFFFFFu}, {0, 0, 0}, {255, 255, 0x12345678}};
    for (size_t i = 0; i < sizeof(icmps) / sizeof(icmps[0]); i++) {
        stun_enc_init(&e, buf, sizeof(buf), stun_type(STUN_DATA, STUN_INDICATION), tid_a);
        stun_enc_icmp(&e, icmps[i].type, icmps[i].code, icmps[i].data);
        const struct stun_attr *a = decode_single(&gm, &e, STUN_ATTR_ICMP);
        assert_int_equal(a->len, 8);
        assert_int_equal(a->val[0] | a->val[1], 0);
        uint8_t t = 1, c = 1;
        uint32_t d = 1;
        assert_int_equal(stun_get_icmp(a, &t, &c, &d), 0);
        assert_int_equal(t, icmps[i].type);
        assert_int_equal(c, icmps[i].code);
        assert_int_equal(d, icmps[i].data);
        gfree(&gm);
    }
}

static void test_roundtrip_integrity_attrs(void **state)
{
    (void)state;
    uint8_t buf[256];
    struct stun_enc e;
    struct gmsg gm;
    const uint8_t *key = (const uint8_t *)key_a;
    size_t klen = strlen(key_a);

    enc_begin(&e, buf, sizeof(buf));
    stun_enc_integrity(&e, key, klen);
    const struct stun_attr *a = decode_single(&gm, &e, STUN_ATTR_MESSAGE_INTEGRITY);
    assert_int_equal(a->len, STUN_HMAC_SHA1_LEN);
    assert_int_equal(gm.m.integrity, 0);
    assert_int_equal(gm.m.integrity_sha256, -1);
    assert_int_equal(gm.m.fingerprint, -1);
    assert_int_equal(stun_check_integrity(&gm.m, key, klen), 0);
    assert_int_equal(stun_check_integrity_sha256(&gm.m, key, klen), STUN_E_NO_INTEGRITY);
    assert_int_equal(stun_check_fingerprint(&gm.m), 1);
    gfree(&gm);

    enc_begin(&e, buf, sizeof(buf));
    stun_enc_integrity_sha256(&e, key, klen);
    a = decode_single(&gm, &e, STUN_ATTR_MESSAGE_INTEGRITY_SHA256);
    assert_int_equal(a->len, STUN_HMAC_SHA256_LEN);
    assert_int_equal(gm.m.integrity_sha256, 0);
    assert_int_equal(stun_check_integrity_sha256(&gm.m, key, klen), 0);
    assert_int_equal(stun_check_integrity(&gm.m, key, klen), STUN_E_NO_INTEGRITY);
    gfree(&gm);

    enc_begin(&e, buf, sizeof(buf));
    stun_enc_fingerprint(&e);
    a = decode_single(&gm, &e, STUN_ATTR_FINGERPRINT);
    assert_int_equal(a->len, 4);
    assert_int_equal(gm.m.fingerprint, 0);
    assert_int_equal(stun_check_fingerprint(&gm.m), 0);
    /* CRC-32 of the 20-byte header (length 8) ^ 0x5354554E, computed independently. */
    uint8_t hdr[STUN_HEADER_LEN];
    memcpy(hdr, gm.g, STUN_HEADER_LEN);
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < sizeof(hdr); i++) {
        crc ^= hdr[i];
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1)));
    }
    assert_int_equal(rd32be(a->val), (crc ^ 0xFFFFFFFFu) ^ STUN_FINGERPRINT_XOR);
    gfree(&gm);
}

/* One message carrying every attribute the codec has an encoder or reader for. */
static void enc_everything(struct stun_enc *e)
{
    const union stun_addr mapped = mk_v4("192.0.2.1", 32853);
    const union stun_addr xmapped = mk_v6("2001:db8:1234:5678:11:2233:4455:6677", 32853);
    const union stun_addr peer4 = mk_v4("198.51.100.7", 49152);
    const union stun_addr peer6 = mk_v6("2001:db8::7", 1);
    const union stun_addr relayed = mk_v4("203.0.113.5", 50000);
    const union stun_addr alt = mk_v6("2001:db8::1", 3478);
    uint8_t uh[STUN_USERHASH_LEN];
    for (int i = 0; i < STUN_USERHASH_LEN; i++)
        uh[i] = (uint8_t)i;
    const uint16_t algs[] = {STUN_PASSWORD_ALG_SHA256, STUN_PASSWORD_ALG_MD5};
    const uint16_t unk[] = {0x0002, 0x0004, 0x7F00};

    stun_enc_addr(e, STUN_ATTR_MAPPED_ADDRESS, &mapped);
    stun_enc_xor_addr(e, STUN_ATTR_XOR_MAPPED_ADDRESS, &xmapped);
    stun_enc_xor_addr(e, STUN_ATTR_XOR_PEER_ADDRESS, &peer4);
    stun_enc_xor_addr(e, STUN_ATTR_XOR_PEER_ADDRESS, &peer6);
    stun_enc_xor_addr(e, STUN_ATTR_XOR_RELAYED_ADDRESS, &relayed);
    stun_enc_addr(e, STUN_ATTR_ALTERNATE_SERVER, &alt);
    stun_enc_attr(e, STUN_ATTR_USERNAME, "alice", 5);
    stun_enc_attr(e, STUN_ATTR_USERHASH, uh, sizeof(uh));
    stun_enc_error(e, 438, NULL);
    stun_enc_attr(e, STUN_ATTR_REALM, "example.org", 11);
    stun_enc_attr(e, STUN_ATTR_NONCE, "f//499k954d6OL34oL9FSTvy64sA", 28);
    stun_enc_password_algorithms(e, algs, 2);
    stun_enc_password_algorithm(e, STUN_PASSWORD_ALG_SHA256);
    stun_enc_unknown(e, unk, 3);
    stun_enc_attr(e, STUN_ATTR_SOFTWARE, "tern test", 9);
    stun_enc_attr(e, STUN_ATTR_ALTERNATE_DOMAIN, "turn.example.org", 16);
    stun_enc_channel(e, 0x4001);
    stun_enc_u32(e, STUN_ATTR_LIFETIME, 600);
    stun_enc_attr(e, STUN_ATTR_DATA, "\x01\x02\x03", 3);
    stun_enc_u8_rffu(e, STUN_ATTR_REQUESTED_ADDRESS_FAMILY, STUN_FAMILY_IPV6);
    stun_enc_even_port(e, true);
    stun_enc_u8_rffu(e, STUN_ATTR_REQUESTED_TRANSPORT, STUN_TRANSPORT_UDP);
    stun_enc_attr(e, STUN_ATTR_DONT_FRAGMENT, NULL, 0);
    stun_enc_u64(e, STUN_ATTR_RESERVATION_TOKEN, 0x0102030405060708ull);
    stun_enc_u8_rffu(e, STUN_ATTR_ADDITIONAL_ADDRESS_FAMILY, STUN_FAMILY_IPV6);
    stun_enc_address_error(e, STUN_FAMILY_IPV6, 440, NULL);
    stun_enc_icmp(e, 3, 1, 1500);
    stun_enc_integrity(e, (const uint8_t *)key_a, strlen(key_a));
    stun_enc_integrity_sha256(e, (const uint8_t *)key_a, strlen(key_a));
    stun_enc_fingerprint(e);
}
#define EVERYTHING_NATTRS 30

static int build_everything(uint8_t *buf, size_t cap)
{
    struct stun_enc e;
    stun_enc_init(&e, buf, cap, stun_type(STUN_ALLOCATE, STUN_SUCCESS), tid_a);
    enc_everything(&e);
    return finish_ok(&e);
}

static void test_roundtrip_everything(void **state)
{
    (void)state;
    uint8_t buf[1024];
    int n = build_everything(buf, sizeof(buf));
    struct gmsg gm;
    assert_int_equal(gdecode(&gm, buf, (size_t)n), 0);
    const struct stun_msg *m = &gm.m;
    assert_int_equal(m->type, stun_type(STUN_ALLOCATE, STUN_SUCCESS));
    assert_int_equal(m->len, n - STUN_HEADER_LEN);
    assert_ptr_equal(m->tid, gm.g + 8);
    assert_memory_equal(m->tid, tid_a, STUN_TID_LEN);
    assert_int_equal(m->nattrs, EVERYTHING_NATTRS);
    assert_int_equal(m->nunknown, 0);
    assert_int_equal(m->integrity, EVERYTHING_NATTRS - 3);
    assert_int_equal(m->integrity_sha256, EVERYTHING_NATTRS - 2);
    assert_int_equal(m->fingerprint, EVERYTHING_NATTRS - 1);
    for (unsigned i = 0; i < m->nattrs; i++)
        assert_non_null(stun_attr_name(m->attrs[i].type));

    union stun_addr a, want;
    assert_int_equal(stun_get_addr(stun_find(m, STUN_ATTR_MAPPED_ADDRESS), &a), 0);
    want = mk_v4("192.0.2.1", 32853);
    assert_addr_equal(&a, &want);
    assert_int_equal(stun_get_xor_addr(m, stun_find(m, STUN_ATTR_XOR_MAPPED_ADDRESS), &a), 0);
    want = mk_v6("2001:db8:1234:5678:11:2233:4455:6677", 32853);
    assert_addr_equal(&a, &want);
    const struct stun_attr *p = stun_find(m, STUN_ATTR_XOR_PEER_ADDRESS);
    assert_int_equal(stun_get_xor_addr(m, p, &a), 0);
    want = mk_v4("198.51.100.7", 49152);
    assert_addr_equal(&a, &want);
    p = stun_find_next(m, p);
    assert_non_null(p);
    assert_int_equal(stun_get_xor_addr(m, p, &a), 0);
    want = mk_v6("2001:db8::7", 1);
    assert_addr_equal(&a, &want);
    assert_null(stun_find_next(m, p));
    assert_int_equal(stun_get_xor_addr(m, stun_find(m, STUN_ATTR_XOR_RELAYED_ADDRESS), &a), 0);
    want = mk_v4("203.0.113.5", 50000);
    assert_addr_equal(&a, &want);
    assert_int_equal(stun_get_addr(stun_find(m, STUN_ATTR_ALTERNATE_SERVER), &a), 0);
    want = mk_v6("2001:db8::1", 3478);
    assert_addr_equal(&a, &want);

    const struct stun_attr *t = stun_find(m, STUN_ATTR_USERNAME);
    assert_int_equal(t->len, 5);
    assert_memory_equal(t->val, "alice", 5);
    t = stun_find(m, STUN_ATTR_USERHASH);
    assert_int_equal(t->len, 32);
    for (int i = 0; i < 32; i++)
        assert_int_equal(t->val[i], i);
    int code;
    const char *r;
    size_t rlen;
    assert_int_equal(stun_get_error(stun_find(m, STUN_ATTR_ERROR_CODE), &code, &r, &rlen), 0);
    assert_int_equal(code, 438);
    assert_int_equal(rlen, strlen("Stale Nonce"));
    assert_memory_equal(r, "Stale Nonce", rlen);
    t = stun_find(m, STUN_ATTR_REALM);
    assert_int_equal(t->len, 11);
    assert_memory_equal(t->val, "example.org", 11);
    t = stun_find(m, STUN_ATTR_NONCE);
    assert_int_equal(t->len, 28);
    assert_memory_equal(t->val, "f//499k954d6OL34oL9FSTvy64sA", 28);
    size_t off = 0;
    uint16_t alg, plen;
    const uint8_t *params;
    t = stun_find(m, STUN_ATTR_PASSWORD_ALGORITHMS);
    assert_int_equal(stun_next_password_algorithm(t, &off, &alg, &params, &plen), 1);
    assert_int_equal(alg, STUN_PASSWORD_ALG_SHA256);
    assert_int_equal(stun_next_password_algorithm(t, &off, &alg, &params, &plen), 1);
    assert_int_equal(alg, STUN_PASSWORD_ALG_MD5);
    assert_int_equal(stun_next_password_algorithm(t, &off, &alg, &params, &plen), 0);
    assert_int_equal(stun_get_password_algorithm(stun_find(m, STUN_ATTR_PASSWORD_ALGORITHM), &alg,
                                                 &params, &plen),
                     0);
    assert_int_equal(alg, STUN_PASSWORD_ALG_SHA256);
    uint16_t unk[4];
    size_t nunk;
    assert_int_equal(stun_get_unknown(stun_find(m, STUN_ATTR_UNKNOWN_ATTRIBUTES), unk, 4, &nunk),
                     0);
    assert_int_equal(nunk, 3);
    assert_int_equal(unk[0], 0x0002);
    assert_int_equal(unk[1], 0x0004);
    assert_int_equal(unk[2], 0x7F00);
    t = stun_find(m, STUN_ATTR_SOFTWARE);
    assert_memory_equal(t->val, "tern test", 9);
    t = stun_find(m, STUN_ATTR_ALTERNATE_DOMAIN);
    assert_int_equal(t->len, 16);
    assert_memory_equal(t->val, "turn.example.org", 16);
    uint16_t ch;
    assert_int_equal(stun_get_channel(stun_find(m, STUN_ATTR_CHANNEL_NUMBER), &ch), 0);
    assert_int_equal(ch, 0x4001);
    uint32_t life;
    assert_int_equal(stun_get_u32(stun_find(m, STUN_ATTR_LIFETIME), &life), 0);
    assert_int_equal(life, 600);
    t = stun_find(m, STUN_ATTR_DATA);
    assert_int_equal(t->len, 3);
    assert_memory_equal(t->val, "\x01\x02\x03", 3);
    uint8_t fam, proto;
    assert_int_equal(stun_get_family(stun_find(m, STUN_ATTR_REQUESTED_ADDRESS_FAMILY), &fam), 0);
    assert_int_equal(fam, STUN_FAMILY_IPV6);
    bool rbit;
    assert_int_equal(stun_get_even_port(stun_find(m, STUN_ATTR_EVEN_PORT), &rbit), 0);
    assert_true(rbit);
    assert_int_equal(stun_get_transport(stun_find(m, STUN_ATTR_REQUESTED_TRANSPORT), &proto), 0);
    assert_int_equal(proto, STUN_TRANSPORT_UDP);
    assert_int_equal(stun_find(m, STUN_ATTR_DONT_FRAGMENT)->len, 0);
    uint64_t tok;
    assert_int_equal(stun_get_u64(stun_find(m, STUN_ATTR_RESERVATION_TOKEN), &tok), 0);
    assert_true(tok == 0x0102030405060708ull);
    assert_int_equal(stun_get_family(stun_find(m, STUN_ATTR_ADDITIONAL_ADDRESS_FAMILY), &fam), 0);
    assert_int_equal(fam, STUN_FAMILY_IPV6);
    assert_int_equal(
        stun_get_address_error(stun_find(m, STUN_ATTR_ADDRESS_ERROR_CODE), &fam, &code, &r, &rlen),
        0);
    assert_int_equal(fam, STUN_FAMILY_IPV6);
    assert_int_equal(code, 440);
    uint8_t it, ic;
    uint32_t idata;
    assert_int_equal(stun_get_icmp(stun_find(m, STUN_ATTR_ICMP), &it, &ic, &idata), 0);
    assert_int_equal(it, 3);
    assert_int_equal(ic, 1);
    assert_int_equal(idata, 1500);
    const uint8_t *key = (const uint8_t *)key_a;
    assert_int_equal(stun_check_integrity(m, key, strlen(key_a)), 0);
    assert_int_equal(stun_check_integrity_sha256(m, key, strlen(key_a)), 0);
    assert_int_equal(stun_check_fingerprint(m), 0);
    assert_true(stun_is_message(gm.g, gm.len));
    gfree(&gm);
}

/* ---- truncation ------------------------------------------------------------------------- */

/* Offsets where a TLV ends (20 included: an empty body), by walking the wire format. */
static bool on_boundary(const uint8_t *msg, size_t len, size_t at)
{
    size_t p = STUN_HEADER_LEN;
    while (p < at && p + 4 <= len)
        p += 4 + pad4z(rd16be(msg + p + 2));
    return p == at;
}

/* Every prefix of msg (length field as is) must fail, and every prefix with the length
 * field rewritten to match must decode iff it ends on an attribute boundary. */
static void check_prefixes(const uint8_t *msg, size_t len)
{
    uint8_t *tmp = malloc(len);
    assert_non_null(tmp);
    for (size_t l = 0; l < len; l++) {
        int rc = decode_rc(msg, l);
        if (rc == 0) fail_msg("prefix of %zu/%zu bytes decoded", l, len);
        /* Shorter than the header: TRUNCATED; else the length field disagrees. */
        assert_int_equal(rc, l < STUN_HEADER_LEN ? STUN_E_TRUNCATED : STUN_E_BAD_LENGTH);
        assert_false(stun_is_message(msg, l));
        if (l < STUN_HEADER_LEN) continue;
        memcpy(tmp, msg, l);
        wr16be(tmp + 2, (uint16_t)(l - STUN_HEADER_LEN));
        bool want_ok = (l - STUN_HEADER_LEN) % 4 == 0 && on_boundary(msg, len, l);
        rc = decode_rc(tmp, l);
        if ((rc == 0) != want_ok)
            fail_msg("prefix of %zu/%zu bytes, length patched: %s", l, len, stun_errname(rc));
        if (!want_ok && (l - STUN_HEADER_LEN) % 4 == 0) assert_int_equal(rc, STUN_E_ATTR_TRUNCATED);
    }
    free(tmp);
}

static void test_truncated_prefixes(void **state)
{
    (void)state;
    uint8_t buf[1024];
    int n = build_everything(buf, sizeof(buf));
    check_prefixes(buf, (size_t)n);
    for (size_t i = 0; i < sizeof(rfc_vectors) / sizeof(rfc_vectors[0]); i++) {
        int len = hex_parse(rfc_vectors[i], buf, sizeof(buf));
        assert_true(len > 0);
        assert_int_equal(decode_rc(buf, (size_t)len), 0);
        check_prefixes(buf, (size_t)len);
    }
    /* Small messages: Binding request with FINGERPRINT, a Send indication with odd DATA. */
    struct stun_enc e;
    enc_begin(&e, buf, sizeof(buf));
    stun_enc_fingerprint(&e);
    check_prefixes(buf, (size_t)finish_ok(&e));
    stun_enc_init(&e, buf, sizeof(buf), stun_type(STUN_SEND, STUN_INDICATION), tid_a);
    union stun_addr peer = mk_v6("2001:db8::9", 9);
    stun_enc_xor_addr(&e, STUN_ATTR_XOR_PEER_ADDRESS, &peer);
    stun_enc_attr(&e, STUN_ATTR_DATA, "hello", 5);
    check_prefixes(buf, (size_t)finish_ok(&e));
}

/* ---- header and attribute framing errors ------------------------------------------------ */

static void test_header_errors(void **state)
{
    (void)state;
    uint8_t base[64];
    struct stun_enc e;
    enc_begin(&e, base, sizeof(base));
    stun_enc_attr(&e, STUN_ATTR_SOFTWARE, "tern", 4);
    stun_enc_fingerprint(&e);
    size_t n = (size_t)finish_ok(&e);
    assert_int_equal(decode_rc(base, n), 0);
    assert_true(stun_is_message(base, n));

    uint8_t m[80];
    /* First two bits 01, 10, 11. */
    for (uint8_t bits = 1; bits < 4; bits++) {
        memcpy(m, base, n);
        m[0] = (uint8_t)(m[0] | bits << 6);
        assert_int_equal(decode_rc(m, n), STUN_E_NOT_STUN);
        assert_false(stun_is_message(m, n));
    }
    /* Any byte of the cookie wrong. */
    for (int i = 4; i < 8; i++) {
        memcpy(m, base, n);
        m[i] ^= 0x01;
        assert_int_equal(decode_rc(m, n), STUN_E_BAD_COOKIE);
        assert_false(stun_is_message(m, n));
    }
    /* Length not a multiple of 4 (whatever the datagram). */
    for (int d = 1; d < 4; d++) {
        memcpy(m, base, n);
        wr16be(m + 2, (uint16_t)(n - STUN_HEADER_LEN + (size_t)d));
        assert_int_equal(decode_rc(m, n), STUN_E_BAD_LENGTH);
        memset(m + n, 0, 4);
        assert_int_equal(decode_rc(m, n + (size_t)d), STUN_E_BAD_LENGTH);
        assert_false(stun_is_message(m, n + (size_t)d));
    }
    /* Length larger than the datagram. */
    memcpy(m, base, n);
    wr16be(m + 2, (uint16_t)(n - STUN_HEADER_LEN + 4));
    assert_int_equal(decode_rc(m, n), STUN_E_BAD_LENGTH);
    wr16be(m + 2, 0xFFFC);
    assert_int_equal(decode_rc(m, n), STUN_E_BAD_LENGTH);
    assert_false(stun_is_message(m, n));
    /* Length smaller than the datagram (trailing bytes). */
    memcpy(m, base, n);
    memset(m + n, 0, 8);
    for (size_t extra = 1; extra <= 8; extra++) {
        assert_int_equal(decode_rc(m, n + extra), STUN_E_BAD_LENGTH);
        assert_false(stun_is_message(m, n + extra));
    }
    wr16be(m + 2, (uint16_t)(n - STUN_HEADER_LEN - 8)); /* drops FINGERPRINT from the body */
    assert_int_equal(decode_rc(m, n), STUN_E_BAD_LENGTH);
    /* Shorter than a header. */
    for (size_t l = 0; l < STUN_HEADER_LEN; l++)
        assert_int_equal(decode_rc(base, l), STUN_E_TRUNCATED);
    /* A header alone is a whole message. */
    memcpy(m, base, STUN_HEADER_LEN);
    wr16be(m + 2, 0);
    struct gmsg gm;
    assert_int_equal(gdecode(&gm, m, STUN_HEADER_LEN), 0);
    assert_int_equal(gm.m.nattrs, 0);
    assert_int_equal(gm.m.len, 0);
    assert_int_equal(gm.m.integrity, -1);
    assert_int_equal(gm.m.fingerprint, -1);
    assert_int_equal(stun_check_fingerprint(&gm.m), 1);
    gfree(&gm);
}

static void test_attr_runs_past_end(void **state)
{
    (void)state;
    uint8_t m[64];
    memset(m, 0, sizeof(m));
    struct stun_enc e;
    enc_begin(&e, m, sizeof(m));
    size_t h = (size_t)finish_ok(&e);
    struct gmsg gm;
    /* Body of 8: one TLV header and 4 value bytes. */
    const struct {
        uint16_t len;
        int want;
    } cases[] = {{1, 0},
                 {4, 0},
                 {5, STUN_E_ATTR_TRUNCATED},
                 {8, STUN_E_ATTR_TRUNCATED},
                 {9, STUN_E_ATTR_TRUNCATED},
                 {0x8000, STUN_E_ATTR_TRUNCATED},
                 {0xFFFD, STUN_E_ATTR_TRUNCATED},
                 {0xFFFF, STUN_E_ATTR_TRUNCATED}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        wr16be(m + 2, 8);
        wr16be(m + h, STUN_ATTR_SOFTWARE);
        wr16be(m + h + 2, cases[i].len);
        int rc = gdecode(&gm, m, h + 8);
        assert_int_equal(rc, cases[i].want);
        if (rc) {
            /* The header was sound: type and transaction ID are still published. */
            assert_int_equal(gm.m.type, stun_type(STUN_BINDING, STUN_REQUEST));
            assert_ptr_equal(gm.m.tid, gm.g + 8);
        }
        gfree(&gm);
    }
    /* The second of two attributes runs past the end. */
    enc_begin(&e, m, sizeof(m));
    stun_enc_attr(&e, STUN_ATTR_USERNAME, "bob", 3);
    stun_enc_attr(&e, STUN_ATTR_REALM, "realm", 5);
    size_t n = (size_t)finish_ok(&e);
    wr16be(m + 2 + 0, (uint16_t)(n - STUN_HEADER_LEN));
    wr16be(m + STUN_HEADER_LEN + 8 + 2, 9);
    assert_int_equal(decode_rc(m, n), STUN_E_ATTR_TRUNCATED);
    wr16be(m + STUN_HEADER_LEN + 8 + 2, 8);
    assert_int_equal(decode_rc(m, n), 0);
}

/* Value length rules from RFC 8489 section 14, RFC 8656 section 18, RFC 8445 section 16. */
struct len_rule {
    uint16_t type;
    uint16_t min, max;
    uint8_t align;
    bool addr;
};
static const struct len_rule len_rules[] = {
    {STUN_ATTR_MAPPED_ADDRESS, 8, 20, 1, true},
    {STUN_ATTR_USERNAME, 0, 512, 1, false},
    {STUN_ATTR_MESSAGE_INTEGRITY, 20, 20, 1, false},
    {STUN_ATTR_ERROR_CODE, 4, 767, 1, false},
    {STUN_ATTR_UNKNOWN_ATTRIBUTES, 0, 65532, 2, false},
    {STUN_ATTR_CHANNEL_NUMBER, 4, 4, 1, false},
    {STUN_ATTR_LIFETIME, 4, 4, 1, false},
    {STUN_ATTR_XOR_PEER_ADDRESS, 8, 20, 1, true},
    {STUN_ATTR_DATA, 0, 65535, 1, false},
    {STUN_ATTR_REALM, 0, 763, 1, false},
    {STUN_ATTR_NONCE, 0, 763, 1, false},
    {STUN_ATTR_XOR_RELAYED_ADDRESS, 8, 20, 1, true},
    {STUN_ATTR_REQUESTED_ADDRESS_FAMILY, 4, 4, 1, false},
    {STUN_ATTR_EVEN_PORT, 1, 1, 1, false},
    {STUN_ATTR_REQUESTED_TRANSPORT, 4, 4, 1, false},
    {STUN_ATTR_DONT_FRAGMENT, 0, 0, 1, false},
    {STUN_ATTR_MESSAGE_INTEGRITY_SHA256, 16, 32, 4, false},
    {STUN_ATTR_PASSWORD_ALGORITHM, 4, 65532, 1, false},
    {STUN_ATTR_USERHASH, 32, 32, 1, false},
    {STUN_ATTR_XOR_MAPPED_ADDRESS, 8, 20, 1, true},
    {STUN_ATTR_RESERVATION_TOKEN, 8, 8, 1, false},
    {STUN_ATTR_PRIORITY, 4, 4, 1, false},
    {STUN_ATTR_USE_CANDIDATE, 0, 0, 1, false},
    {STUN_ATTR_ADDITIONAL_ADDRESS_FAMILY, 4, 4, 1, false},
    {STUN_ATTR_ADDRESS_ERROR_CODE, 4, 767, 1, false},
    {STUN_ATTR_PASSWORD_ALGORITHMS, 4, 65532, 1, false},
    {STUN_ATTR_ALTERNATE_DOMAIN, 1, 255, 1, false},
    {STUN_ATTR_ICMP, 8, 8, 1, false},
    {STUN_ATTR_SOFTWARE, 0, 763, 1, false},
    {STUN_ATTR_ALTERNATE_SERVER, 8, 20, 1, true},
    {STUN_ATTR_FINGERPRINT, 4, 4, 1, false},
    {STUN_ATTR_ICE_CONTROLLED, 8, 8, 1, false},
    {STUN_ATTR_ICE_CONTROLLING, 8, 8, 1, false},
    {STUN_ATTR_RESPONSE_ORIGIN, 8, 20, 1, true},
    {STUN_ATTR_OTHER_ADDRESS, 8, 20, 1, true},
};

static bool rule_allows(const struct len_rule *r, size_t len)
{
    if (len < r->min || len > r->max || len % r->align) return false;
    return !r->addr || len == 8 || len == 20;
}

static void test_attr_length_limits(void **state)
{
    (void)state;
    static uint8_t buf[2048];
    for (size_t i = 0; i < sizeof(len_rules) / sizeof(len_rules[0]); i++) {
        const struct len_rule *r = &len_rules[i];
        assert_non_null(stun_attr_name(r->type));
        size_t lens[64], n = 0;
        for (size_t l = 0; l <= 40; l++)
            lens[n++] = l;
        const size_t more[] = {255, 256, 511, 512, 513, 762, 763, 764, 766, 767, 768, 1000};
        for (size_t k = 0; k < sizeof(more) / sizeof(more[0]); k++)
            lens[n++] = more[k];
        for (size_t k = 0; k < n; k++) {
            int len = raw_single(buf, sizeof(buf), r->type, lens[k], 0);
            assert_true(len > 0);
            int rc = decode_rc(buf, (size_t)len);
            bool ok = rule_allows(r, lens[k]);
            if ((rc == 0) != ok)
                fail_msg("%s with %zu bytes: got %s, want %s", stun_attr_name(r->type), lens[k],
                         stun_errname(rc), ok ? "OK" : "ATTR_LENGTH");
            if (!ok) assert_int_equal(rc, STUN_E_ATTR_LENGTH);
        }
    }
    /* The cases named in the design notes, spelled out. */
    const struct {
        uint16_t type;
        size_t len;
        int want;
    } named[] = {
        {STUN_ATTR_USERNAME, 513, STUN_E_ATTR_LENGTH},
        {STUN_ATTR_USERNAME, 512, 0},
        {STUN_ATTR_MESSAGE_INTEGRITY, 19, STUN_E_ATTR_LENGTH},
        {STUN_ATTR_MESSAGE_INTEGRITY, 21, STUN_E_ATTR_LENGTH},
        {STUN_ATTR_FINGERPRINT, 8, STUN_E_ATTR_LENGTH},
        {STUN_ATTR_XOR_MAPPED_ADDRESS, 12, STUN_E_ATTR_LENGTH},
        {STUN_ATTR_XOR_PEER_ADDRESS, 12, STUN_E_ATTR_LENGTH},
        {STUN_ATTR_MAPPED_ADDRESS, 12, STUN_E_ATTR_LENGTH},
        {STUN_ATTR_MESSAGE_INTEGRITY_SHA256, 12, STUN_E_ATTR_LENGTH},
        {STUN_ATTR_MESSAGE_INTEGRITY_SHA256, 18, STUN_E_ATTR_LENGTH},
        {STUN_ATTR_MESSAGE_INTEGRITY_SHA256, 36, STUN_E_ATTR_LENGTH},
        {STUN_ATTR_MESSAGE_INTEGRITY_SHA256, 16, 0},
        {STUN_ATTR_MESSAGE_INTEGRITY_SHA256, 32, 0},
        {STUN_ATTR_REALM, 764, STUN_E_ATTR_LENGTH},
        {STUN_ATTR_NONCE, 764, STUN_E_ATTR_LENGTH},
        {STUN_ATTR_SOFTWARE, 764, STUN_E_ATTR_LENGTH},
        {STUN_ATTR_REALM, 763, 0},
    };
    for (size_t i = 0; i < sizeof(named) / sizeof(named[0]); i++) {
        int len = raw_single(buf, sizeof(buf), named[i].type, named[i].len, 'x');
        assert_int_equal(decode_rc(buf, (size_t)len), named[i].want);
    }
    /* Large values near the 65535-byte body limit. */
    size_t cap = STUN_MAX_MSG;
    uint8_t *big = malloc(cap);
    assert_non_null(big);
    const uint16_t big_types[] = {STUN_ATTR_DATA, STUN_ATTR_UNKNOWN_ATTRIBUTES,
                                  STUN_ATTR_PASSWORD_ALGORITHMS, 0x0002};
    for (size_t i = 0; i < sizeof(big_types) / sizeof(big_types[0]); i++) {
        int len = raw_single(big, cap, big_types[i], 65528, 0); /* the largest that fits */
        assert_int_equal(len, STUN_MAX_MSG - 3);
        assert_int_equal(decode_rc(big, (size_t)len), 0);
    }
    int len;
    free(big);
    /* Unknown types, required or optional, take any length. */
    const uint16_t unknown_types[] = {0x0002, 0x0003, 0x7FFF, 0x8005, 0xC000, 0xFFFF};
    for (size_t i = 0; i < sizeof(unknown_types) / sizeof(unknown_types[0]); i++) {
        assert_null(stun_attr_name(unknown_types[i]));
        for (size_t l = 0; l < 10; l++) {
            len = raw_single(buf, sizeof(buf), unknown_types[i], l, 0);
            assert_int_equal(decode_rc(buf, (size_t)len), 0);
        }
    }
}

/* ---- RFC 8489 ordering rules ------------------------------------------------------------- */

static void test_attrs_after_integrity_ignored(void **state)
{
    (void)state;
    const uint8_t *key = (const uint8_t *)key_a;
    size_t klen = strlen(key_a);
    uint8_t buf[1024];
    struct stun_enc e;
    struct gmsg gm;
    uint8_t bad[600];
    memset(bad, 'u', sizeof(bad));

    /* MI, then USERNAME, REALM, an unknown required type and a too-long USERNAME: ignored. */
    enc_begin(&e, buf, sizeof(buf));
    stun_enc_attr(&e, STUN_ATTR_SOFTWARE, "sw", 2);
    stun_enc_integrity(&e, key, klen);
    stun_enc_attr(&e, STUN_ATTR_USERNAME, "late", 4);
    stun_enc_attr(&e, STUN_ATTR_REALM, "late", 4);
    stun_enc_attr(&e, 0x0002, "x", 1);
    stun_enc_attr(&e, STUN_ATTR_USERNAME, bad, 513);
    stun_enc_attr(&e, STUN_ATTR_MESSAGE_INTEGRITY, bad, 3);
    int n = finish_ok(&e);
    assert_int_equal(gdecode(&gm, buf, (size_t)n), 0);
    assert_int_equal(gm.m.nattrs, 2);
    assert_int_equal(gm.m.nunknown, 0);
    assert_int_equal(gm.m.integrity, 1);
    assert_null(stun_find(&gm.m, STUN_ATTR_USERNAME));
    assert_null(stun_find(&gm.m, STUN_ATTR_REALM));
    /* The MAC covers the message up to MI with the length adjusted to end there. */
    assert_int_equal(stun_check_integrity(&gm.m, key, klen), 0);
    gfree(&gm);

    /* MI, junk, MI-SHA256, junk, FINGERPRINT: MI, MI-SHA256 and FINGERPRINT are kept. */
    enc_begin(&e, buf, sizeof(buf));
    stun_enc_attr(&e, STUN_ATTR_USERNAME, "early", 5);
    stun_enc_integrity(&e, key, klen);
    stun_enc_attr(&e, STUN_ATTR_SOFTWARE, "ignored", 7);
    stun_enc_integrity_sha256(&e, key, klen);
    stun_enc_attr(&e, STUN_ATTR_NONCE, "ignored", 7);
    stun_enc_attr(&e, STUN_ATTR_MESSAGE_INTEGRITY, bad, 20);
    stun_enc_fingerprint(&e);
    n = finish_ok(&e);
    assert_int_equal(gdecode(&gm, buf, (size_t)n), 0);
    assert_int_equal(gm.m.nattrs, 4);
    assert_int_equal(gm.m.attrs[0].type, STUN_ATTR_USERNAME);
    assert_int_equal(gm.m.integrity, 1);
    assert_int_equal(gm.m.integrity_sha256, 2);
    assert_int_equal(gm.m.fingerprint, 3);
    assert_null(stun_find(&gm.m, STUN_ATTR_SOFTWARE));
    assert_null(stun_find(&gm.m, STUN_ATTR_NONCE));
    assert_int_equal(stun_check_integrity(&gm.m, key, klen), 0);
    assert_int_equal(stun_check_integrity_sha256(&gm.m, key, klen), 0);
    assert_int_equal(stun_check_fingerprint(&gm.m), 0);
    gfree(&gm);

    /* MI-SHA256 first: a later MI is ignored too, only FINGERPRINT counts. */
    enc_begin(&e, buf, sizeof(buf));
    stun_enc_integrity_sha256(&e, key, klen);
    stun_enc_integrity(&e, key, klen);
    stun_enc_attr(&e, STUN_ATTR_MESSAGE_INTEGRITY_SHA256, bad, 32);
    stun_enc_attr(&e, STUN_ATTR_ALTERNATE_DOMAIN, bad, 0); /* bad length, ignored */
    stun_enc_fingerprint(&e);
    n = finish_ok(&e);
    assert_int_equal(gdecode(&gm, buf, (size_t)n), 0);
    assert_int_equal(gm.m.nattrs, 2);
    assert_int_equal(gm.m.integrity_sha256, 0);
    assert_int_equal(gm.m.integrity, -1);
    assert_int_equal(gm.m.fingerprint, 1);
    assert_int_equal(stun_check_integrity_sha256(&gm.m, key, klen), 0);
    assert_int_equal(stun_check_integrity(&gm.m, key, klen), STUN_E_NO_INTEGRITY);
    assert_int_equal(stun_check_fingerprint(&gm.m), 0);
    gfree(&gm);

    /* A second MI: the first one is the one that counts. */
    enc_begin(&e, buf, sizeof(buf));
    stun_enc_integrity(&e, key, klen);
    stun_enc_attr(&e, STUN_ATTR_MESSAGE_INTEGRITY, bad, 20);
    n = finish_ok(&e);
    assert_int_equal(gdecode(&gm, buf, (size_t)n), 0);
    assert_int_equal(gm.m.nattrs, 1);
    assert_int_equal(stun_check_integrity(&gm.m, key, klen), 0);
    gfree(&gm);

    /* A kept FINGERPRINT after MI must still have a valid length. */
    enc_begin(&e, buf, sizeof(buf));
    stun_enc_integrity(&e, key, klen);
    stun_enc_attr(&e, STUN_ATTR_FINGERPRINT, bad, 8);
    n = finish_ok(&e);
    assert_int_equal(decode_rc(buf, (size_t)n), STUN_E_ATTR_LENGTH);
    enc_begin(&e, buf, sizeof(buf));
    stun_enc_integrity(&e, key, klen);
    stun_enc_attr(&e, STUN_ATTR_MESSAGE_INTEGRITY_SHA256, bad, 18);
    n = finish_ok(&e);
    assert_int_equal(decode_rc(buf, (size_t)n), STUN_E_ATTR_LENGTH);
}

static void test_after_fingerprint_is_error(void **state)
{
    (void)state;
    const uint16_t after[] = {STUN_ATTR_SOFTWARE,
                              STUN_ATTR_FINGERPRINT,
                              STUN_ATTR_MESSAGE_INTEGRITY,
                              STUN_ATTR_MESSAGE_INTEGRITY_SHA256,
                              0x0002,
                              0x8005};
    const size_t lens[] = {4, 4, 20, 32, 4, 4};
    uint8_t v[32] = {0};
    uint8_t buf[256];
    for (size_t i = 0; i < sizeof(after) / sizeof(after[0]); i++) {
        struct stun_enc e;
        enc_begin(&e, buf, sizeof(buf));
        stun_enc_attr(&e, STUN_ATTR_USERNAME, "u", 1);
        stun_enc_fingerprint(&e);
        stun_enc_attr(&e, after[i], v, lens[i]);
        int n = finish_ok(&e);
        assert_int_equal(decode_rc(buf, (size_t)n), STUN_E_AFTER_FINGERPRINT);
    }
    /* Even after MI (where other attributes are merely ignored). */
    struct stun_enc e;
    enc_begin(&e, buf, sizeof(buf));
    stun_enc_integrity(&e, (const uint8_t *)key_a, strlen(key_a));
    stun_enc_fingerprint(&e);
    stun_enc_attr(&e, STUN_ATTR_SOFTWARE, "x", 1);
    assert_int_equal(decode_rc(buf, (size_t)finish_ok(&e)), STUN_E_AFTER_FINGERPRINT);
}

static void test_duplicates_find_next(void **state)
{
    (void)state;
    const union stun_addr peers[] = {mk_v4("198.51.100.1", 1000), mk_v6("2001:db8::2", 2000),
                                     mk_v4("198.51.100.3", 3000), mk_v4("198.51.100.4", 4000)};
    uint8_t buf[512];
    struct stun_enc e;
    stun_enc_init(&e, buf, sizeof(buf), stun_type(STUN_CREATE_PERMISSION, STUN_REQUEST), tid_a);
    stun_enc_attr(&e, STUN_ATTR_USERNAME, "first", 5);
    for (size_t i = 0; i < 4; i++) {
        stun_enc_xor_addr(&e, STUN_ATTR_XOR_PEER_ADDRESS, &peers[i]);
        if (i == 1) stun_enc_attr(&e, STUN_ATTR_USERNAME, "second", 6);
    }
    stun_enc_attr(&e, STUN_ATTR_REALM, "r", 1);
    int n = finish_ok(&e);
    struct gmsg gm;
    assert_int_equal(gdecode(&gm, buf, (size_t)n), 0);
    assert_int_equal(gm.m.nattrs, 7);
    const struct stun_attr *u = stun_find(&gm.m, STUN_ATTR_USERNAME);
    assert_memory_equal(u->val, "first", 5);
    const struct stun_attr *u2 = stun_find_next(&gm.m, u);
    assert_non_null(u2);
    assert_memory_equal(u2->val, "second", 6);
    assert_null(stun_find_next(&gm.m, u2));
    size_t count = 0;
    for (const struct stun_attr *a = stun_find(&gm.m, STUN_ATTR_XOR_PEER_ADDRESS); a;
         a = stun_find_next(&gm.m, a)) {
        assert_true(count < 4);
        union stun_addr got;
        assert_int_equal(stun_get_xor_addr(&gm.m, a, &got), 0);
        assert_addr_equal(&got, &peers[count]);
        count++;
    }
    assert_int_equal(count, 4);
    const struct stun_attr *realm = stun_find(&gm.m, STUN_ATTR_REALM);
    assert_ptr_equal(realm, &gm.m.attrs[gm.m.nattrs - 1]);
    assert_null(stun_find_next(&gm.m, realm));
    assert_null(stun_find(&gm.m, STUN_ATTR_NONCE));
    gfree(&gm);
}

static void test_unknown_comprehension_required(void **state)
{
    (void)state;
    uint8_t buf[2048];
    struct stun_enc e;
    struct gmsg gm;
    enc_begin(&e, buf, sizeof(buf));
    const uint16_t seq[] = {
        0x0002, 0x8005,       STUN_ATTR_CHANGE_REQUEST, 0x0002, 0xC001, 0x7FFF, 0xFFFF, 0x0002,
        0x0004, 0x8000 + 0x7F};
    for (size_t i = 0; i < sizeof(seq) / sizeof(seq[0]); i++)
        stun_enc_u32(&e, seq[i], (uint32_t)i);
    stun_enc_attr(&e, STUN_ATTR_USERNAME, "u", 1);
    int n = finish_ok(&e);
    assert_int_equal(gdecode(&gm, buf, (size_t)n), 0);
    assert_int_equal(gm.m.nattrs, 11); /* unknown attributes are still listed */
    assert_int_equal(gm.m.nunknown, 4);
    assert_int_equal(gm.m.unknown[0], 0x0002);
    assert_int_equal(gm.m.unknown[1], STUN_ATTR_CHANGE_REQUEST);
    assert_int_equal(gm.m.unknown[2], 0x7FFF);
    assert_int_equal(gm.m.unknown[3], 0x0004);
    const struct stun_attr *a = stun_find(&gm.m, 0x0002);
    assert_non_null(a);
    uint32_t v;
    assert_int_equal(stun_get_u32(a, &v), 0);
    assert_int_equal(v, 0);
    gfree(&gm);

    /* Comprehension-optional unknowns only: nothing collected. */
    enc_begin(&e, buf, sizeof(buf));
    for (uint16_t t = 0x8005; t < 0x8015; t++)
        stun_enc_u32(&e, t, 0);
    stun_enc_u32(&e, 0xFFFE, 0);
    n = finish_ok(&e);
    assert_int_equal(gdecode(&gm, buf, (size_t)n), 0);
    assert_int_equal(gm.m.nunknown, 0);
    gfree(&gm);

    /* More distinct unknown types than STUN_MAX_UNKNOWN: the first 16, each once. */
    enc_begin(&e, buf, sizeof(buf));
    for (uint16_t t = 0x0100; t < 0x0100 + 2 * STUN_MAX_UNKNOWN; t++) {
        stun_enc_u32(&e, t, 0);
        stun_enc_u32(&e, 0x0100, 0); /* a repeat every time */
    }
    n = finish_ok(&e);
    assert_int_equal(gdecode(&gm, buf, (size_t)n), 0);
    assert_int_equal(gm.m.nattrs, 4 * STUN_MAX_UNKNOWN);
    assert_int_equal(gm.m.nunknown, STUN_MAX_UNKNOWN);
    for (int i = 0; i < STUN_MAX_UNKNOWN; i++)
        assert_int_equal(gm.m.unknown[i], 0x0100 + i);
    gfree(&gm);
}

static void test_too_many_attrs(void **state)
{
    (void)state;
    uint8_t buf[2048];
    struct stun_enc e;
    struct gmsg gm;
    for (int count = STUN_MAX_ATTRS - 1; count <= STUN_MAX_ATTRS + 2; count++) {
        enc_begin(&e, buf, sizeof(buf));
        for (int i = 0; i < count; i++)
            stun_enc_u32(&e, STUN_ATTR_SOFTWARE, (uint32_t)i);
        int n = finish_ok(&e);
        int rc = gdecode(&gm, buf, (size_t)n);
        if (count <= STUN_MAX_ATTRS) {
            assert_int_equal(rc, 0);
            assert_int_equal(gm.m.nattrs, count);
        } else {
            assert_int_equal(rc, STUN_E_TOO_MANY_ATTRS);
            assert_int_equal(gm.m.type, stun_type(STUN_BINDING, STUN_REQUEST));
            assert_non_null(gm.m.tid);
        }
        gfree(&gm);
    }
    /* 63 attributes, MI, then 20 ignored ones: fine. 64 and then MI: too many. */
    enc_begin(&e, buf, sizeof(buf));
    for (int i = 0; i < STUN_MAX_ATTRS - 1; i++)
        stun_enc_u32(&e, STUN_ATTR_SOFTWARE, 0);
    stun_enc_integrity(&e, (const uint8_t *)key_a, strlen(key_a));
    for (int i = 0; i < 20; i++)
        stun_enc_u32(&e, STUN_ATTR_SOFTWARE, 0);
    int n = finish_ok(&e);
    assert_int_equal(gdecode(&gm, buf, (size_t)n), 0);
    assert_int_equal(gm.m.nattrs, STUN_MAX_ATTRS);
    assert_int_equal(gm.m.integrity, STUN_MAX_ATTRS - 1);
    assert_int_equal(stun_check_integrity(&gm.m, (const uint8_t *)key_a, strlen(key_a)), 0);
    gfree(&gm);
    enc_begin(&e, buf, sizeof(buf));
    for (int i = 0; i < STUN_MAX_ATTRS; i++)
        stun_enc_u32(&e, STUN_ATTR_SOFTWARE, 0);
    stun_enc_fingerprint(&e);
    assert_int_equal(decode_rc(buf, (size_t)finish_ok(&e)), STUN_E_TOO_MANY_ATTRS);
}

/* ---- integrity -------------------------------------------------------------------------- */

/* Flip two bits of every byte in [0, upto), one at a time; each flipped message must either
 * fail to decode or fail check() (NULL: the FINGERPRINT check). Returns how many flips
 * decoded and then failed with want_err. */
static size_t flip_all(const uint8_t *msg, size_t len, size_t upto,
                       int (*check)(const struct stun_msg *, const uint8_t *, size_t), int want_err)
{
    uint8_t *tmp = malloc(len);
    assert_non_null(tmp);
    size_t decoded = 0;
    for (size_t i = 0; i < upto; i++) {
        for (int bit = 0; bit < 8; bit += 7) {
            memcpy(tmp, msg, len);
            tmp[i] ^= (uint8_t)(1u << bit);
            struct gmsg gm;
            if (gdecode(&gm, tmp, len) == 0) {
                int rc = check ? check(&gm.m, (const uint8_t *)key_a, strlen(key_a))
                               : stun_check_fingerprint(&gm.m);
                /* A flip in the attribute type can turn MI or FINGERPRINT into another
                 * attribute (then it is absent); anything else must be a mismatch. */
                if (rc == 0) fail_msg("flip of byte %zu bit %d went unnoticed", i, bit);
                if (rc == want_err) decoded++;
            }
            gfree(&gm);
        }
    }
    free(tmp);
    return decoded;
}

static void test_integrity_flips(void **state)
{
    (void)state;
    const uint8_t *key = (const uint8_t *)key_a;
    size_t klen = strlen(key_a);
    uint8_t buf[512];
    struct stun_enc e;
    stun_enc_init(&e, buf, sizeof(buf), stun_type(STUN_ALLOCATE, STUN_REQUEST), tid_a);
    stun_enc_u8_rffu(&e, STUN_ATTR_REQUESTED_TRANSPORT, STUN_TRANSPORT_UDP);
    stun_enc_attr(&e, STUN_ATTR_USERNAME, "alice", 5);
    stun_enc_attr(&e, STUN_ATTR_REALM, "example.org", 11);
    stun_enc_attr(&e, STUN_ATTR_NONCE, "nonce-123", 9);
    size_t mi_off = e.len;
    stun_enc_integrity(&e, key, klen);
    size_t mi_end = e.len;
    stun_enc_attr(&e, STUN_ATTR_SOFTWARE, "after", 5); /* ignored, not covered */
    size_t n = (size_t)finish_ok(&e);

    struct gmsg gm;
    assert_int_equal(gdecode(&gm, buf, n), 0);
    assert_int_equal(stun_check_integrity(&gm.m, key, klen), 0);
    assert_int_equal(stun_check_integrity(&gm.m, key, klen - 1), STUN_E_BAD_INTEGRITY);
    assert_int_equal(stun_check_integrity(&gm.m, (const uint8_t *)"VOkJxbRl1RmTxUk/WvJxBu", klen),
                     STUN_E_BAD_INTEGRITY);
    assert_int_equal(stun_check_integrity(&gm.m, (const uint8_t *)"", 0), STUN_E_BAD_INTEGRITY);
    gfree(&gm);

    /* Every byte of header, body, padding and the MAC itself is covered. Body value bytes
     * (never the framing) always still decode, so most flips reach the MAC check. */
    size_t decoded = flip_all(buf, n, mi_end, stun_check_integrity, STUN_E_BAD_INTEGRITY);
    assert_true(decoded >= 2 * (12 + (mi_end - mi_off - 4)));
    /* Bytes after MI are not covered. */
    uint8_t tmp[512];
    for (size_t i = mi_end + 4; i < n; i++) {
        memcpy(tmp, buf, n);
        tmp[i] ^= 0xFF;
        assert_int_equal(gdecode(&gm, tmp, n), 0);
        assert_int_equal(stun_check_integrity(&gm.m, key, klen), 0);
        gfree(&gm);
    }

    /* The same with MESSAGE-INTEGRITY-SHA256 and FINGERPRINT. */
    stun_enc_init(&e, buf, sizeof(buf), stun_type(STUN_REFRESH, STUN_REQUEST), tid_a);
    stun_enc_u32(&e, STUN_ATTR_LIFETIME, 0);
    stun_enc_attr(&e, STUN_ATTR_USERNAME, "bob", 3);
    stun_enc_integrity_sha256(&e, key, klen);
    mi_end = e.len;
    stun_enc_fingerprint(&e);
    n = (size_t)finish_ok(&e);
    assert_int_equal(gdecode(&gm, buf, n), 0);
    assert_int_equal(stun_check_integrity_sha256(&gm.m, key, klen), 0);
    assert_int_equal(stun_check_integrity_sha256(&gm.m, (const uint8_t *)"x", 1),
                     STUN_E_BAD_INTEGRITY);
    assert_int_equal(stun_check_fingerprint(&gm.m), 0);
    gfree(&gm);
    flip_all(buf, n, mi_end, stun_check_integrity_sha256, STUN_E_BAD_INTEGRITY);
    /* FINGERPRINT catches a flip anywhere, including in itself. */
    decoded = flip_all(buf, n, n, NULL, STUN_E_BAD_FINGERPRINT);
    assert_true(decoded > 0);

    /* An empty key is a key. */
    enc_begin(&e, buf, sizeof(buf));
    stun_enc_integrity(&e, (const uint8_t *)"", 0);
    n = (size_t)finish_ok(&e);
    assert_int_equal(gdecode(&gm, buf, n), 0);
    assert_int_equal(stun_check_integrity(&gm.m, (const uint8_t *)"", 0), 0);
    assert_int_equal(stun_check_integrity(&gm.m, key, klen), STUN_E_BAD_INTEGRITY);
    gfree(&gm);
}

/* MESSAGE-INTEGRITY-SHA256 truncated to 16-28 bytes, built by hand (RFC 8489 14.6). */
static void test_integrity_sha256_truncated(void **state)
{
    (void)state;
    const uint8_t *key = (const uint8_t *)key_a;
    size_t klen = strlen(key_a);
    for (size_t maclen = 16; maclen <= 32; maclen += 4) {
        for (int with_fp = 0; with_fp < 2; with_fp++) {
            uint8_t buf[256];
            struct stun_enc e;
            enc_begin(&e, buf, sizeof(buf));
            stun_enc_attr(&e, STUN_ATTR_USERNAME, "carol", 5);
            size_t off = e.len;
            uint8_t zero[32] = {0};
            stun_enc_attr(&e, STUN_ATTR_MESSAGE_INTEGRITY_SHA256, zero, maclen);
            /* The header length now ends at this attribute, as the MAC wants. */
            uint8_t mac[EVP_MAX_MD_SIZE];
            unsigned int mlen = 0;
            assert_non_null(HMAC(EVP_sha256(), key, (int)klen, buf, off, mac, &mlen));
            assert_int_equal(mlen, 32);
            memcpy(buf + off + 4, mac, maclen);
            if (with_fp) stun_enc_fingerprint(&e);
            size_t n = (size_t)finish_ok(&e);
            struct gmsg gm;
            assert_int_equal(gdecode(&gm, buf, n), 0);
            assert_int_equal(gm.m.attrs[gm.m.integrity_sha256].len, maclen);
            assert_int_equal(stun_check_integrity_sha256(&gm.m, key, klen), 0);
            assert_int_equal(stun_check_integrity_sha256(&gm.m, key, klen - 1),
                             STUN_E_BAD_INTEGRITY);
            gfree(&gm);
            flip_all(buf, n, off + 4 + maclen, stun_check_integrity_sha256, STUN_E_BAD_INTEGRITY);
            if (maclen == 32) {
                /* The encoder writes the same full-length MAC. */
                uint8_t ref[256];
                enc_begin(&e, ref, sizeof(ref));
                stun_enc_attr(&e, STUN_ATTR_USERNAME, "carol", 5);
                stun_enc_integrity_sha256(&e, key, klen);
                if (with_fp) stun_enc_fingerprint(&e);
                assert_int_equal(finish_ok(&e), n);
                assert_memory_equal(ref, buf, n);
            }
        }
    }
}

static void test_integrity_absent(void **state)
{
    (void)state;
    uint8_t buf[64];
    struct stun_enc e;
    enc_begin(&e, buf, sizeof(buf));
    stun_enc_attr(&e, STUN_ATTR_SOFTWARE, "x", 1);
    struct gmsg gm;
    assert_int_equal(gdecode(&gm, buf, (size_t)finish_ok(&e)), 0);
    assert_int_equal(stun_check_integrity(&gm.m, (const uint8_t *)key_a, 3), STUN_E_NO_INTEGRITY);
    assert_int_equal(stun_check_integrity_sha256(&gm.m, (const uint8_t *)key_a, 3),
                     STUN_E_NO_INTEGRITY);
    assert_int_equal(stun_check_fingerprint(&gm.m), 1);
    gfree(&gm);
}

/* ---- encoder ---------------------------------------------------------------------------- */

static void test_encoder_no_space_every_size(void **state)
{
    (void)state;
    uint8_t ref[1024];
    size_t need = (size_t)build_everything(ref, sizeof(ref));
    uint8_t *zeros = calloc(1, need);
    assert_non_null(zeros);
    for (size_t cap = 0; cap <= need; cap++) {
        uint8_t *out = guard_place(zeros, cap);
        struct stun_enc e;
        stun_enc_init(&e, out, cap, stun_type(STUN_ALLOCATE, STUN_SUCCESS), tid_a);
        enc_everything(&e);
        int rc = stun_enc_finish(&e);
        assert_true(e.len <= cap);
        if (cap < need) {
            if (rc != STUN_E_NO_SPACE) fail_msg("cap %zu: got %s", cap, stun_errname(rc));
            /* What was written is a consistent message of the attributes that fit. */
            if (cap >= STUN_HEADER_LEN) {
                assert_int_equal(rd16be(out + 2), e.len - STUN_HEADER_LEN);
                assert_int_equal(decode_rc(out, e.len), 0);
                assert_memory_equal(out, ref, 2);
                assert_memory_equal(out + 4, ref + 4, e.len - 4);
            }
        } else {
            assert_int_equal(rc, (int)need);
            assert_memory_equal(out, ref, need);
        }
        guard_free(out, cap);
    }
    free(zeros);
}

static void test_encoder_sticky_error(void **state)
{
    (void)state;
    uint8_t buf[64];
    struct stun_enc e;
    /* NO_SPACE from a large attribute; a small one that would fit is not written after it. */
    memset(buf, 0xAA, sizeof(buf));
    enc_begin(&e, buf, 32);
    stun_enc_attr(&e, STUN_ATTR_SOFTWARE, "twelve bytes", 12);
    assert_int_equal(e.err, STUN_E_NO_SPACE);
    stun_enc_u32(&e, STUN_ATTR_LIFETIME, 1);
    stun_enc_attr(&e, STUN_ATTR_DONT_FRAGMENT, NULL, 0);
    stun_enc_fingerprint(&e);
    stun_enc_integrity(&e, (const uint8_t *)"k", 1);
    assert_int_equal(e.len, STUN_HEADER_LEN);
    assert_int_equal(rd16be(buf + 2), 0);
    assert_int_equal(buf[STUN_HEADER_LEN], 0xAA);
    assert_int_equal(stun_enc_finish(&e), STUN_E_NO_SPACE);

    /* BAD_VALUE first: later NO_SPACE does not replace it; nothing more is written. */
    enc_begin(&e, buf, 28);
    stun_enc_error(&e, 200, NULL);
    stun_enc_attr(&e, STUN_ATTR_SOFTWARE, "too long for the rest", 21);
    stun_enc_u32(&e, STUN_ATTR_LIFETIME, 1);
    assert_int_equal(stun_enc_finish(&e), STUN_E_BAD_VALUE);
    assert_int_equal(e.len, STUN_HEADER_LEN);

    /* BAD_FAMILY is sticky too, and a later bad error code does not replace it. */
    union stun_addr un;
    memset(&un, 0, sizeof(un));
    un.sa.sa_family = AF_UNSPEC;
    enc_begin(&e, buf, sizeof(buf));
    stun_enc_xor_addr(&e, STUN_ATTR_XOR_MAPPED_ADDRESS, &un);
    stun_enc_error(&e, 1000, NULL);
    stun_enc_u32(&e, STUN_ATTR_LIFETIME, 1);
    assert_int_equal(stun_enc_finish(&e), STUN_E_BAD_FAMILY);
    assert_int_equal(e.len, STUN_HEADER_LEN);

    /* A buffer too small for the header. */
    for (size_t cap = 0; cap < STUN_HEADER_LEN; cap++) {
        uint8_t *g = guard_place(buf, cap);
        enc_begin(&e, g, cap);
        stun_enc_u32(&e, STUN_ATTR_LIFETIME, 1);
        assert_int_equal(stun_enc_finish(&e), STUN_E_NO_SPACE);
        assert_int_equal(e.len, 0);
        guard_free(g, cap);
    }
    /* Exactly the header. */
    uint8_t *g = guard_place(buf, STUN_HEADER_LEN);
    stun_enc_init(&e, g, STUN_HEADER_LEN, 0xFFFF, tid_a);
    assert_int_equal(stun_enc_finish(&e), STUN_HEADER_LEN);
    assert_int_equal(rd16be(g), 0x3FFF); /* the top two bits are always 00 */
    assert_int_equal(rd32be(g + 4), STUN_MAGIC_COOKIE);
    assert_memory_equal(g + 8, tid_a, STUN_TID_LEN);
    guard_free(g, STUN_HEADER_LEN);
}

/* ---- ChannelData ------------------------------------------------------------------------ */

static int chdata_guarded(const uint8_t *buf, size_t len, bool stream, uint16_t *ch,
                          const uint8_t **data, uint16_t *dlen, size_t *data_off)
{
    uint8_t *g = guard_place(buf, len);
    int rc = stun_chdata_decode(g, len, stream, ch, data, dlen);
    if (rc > 0) *data_off = (size_t)(*data - g);
    guard_free(g, len);
    return rc;
}

static void test_chdata_datagram(void **state)
{
    (void)state;
    uint8_t buf[64];
    memset(buf, 0, sizeof(buf));
    stun_chdata_header(buf, 0x4000, 5);
    assert_int_equal(buf[0], 0x40);
    assert_int_equal(buf[1], 0x00);
    assert_int_equal(buf[2], 0x00);
    assert_int_equal(buf[3], 0x05);
    memcpy(buf + 4, "hello", 5);
    uint16_t ch = 0, dlen = 0;
    const uint8_t *d = NULL;
    size_t off = 0;
    /* Unpadded and padded with 1-3 bytes: accepted; 4 or more extra: rejected. */
    for (size_t extra = 0; extra <= 8; extra++) {
        int rc = chdata_guarded(buf, 9 + extra, false, &ch, &d, &dlen, &off);
        if (extra <= 3) {
            assert_int_equal(rc, 9 + extra);
            assert_int_equal(ch, 0x4000);
            assert_int_equal(dlen, 5);
            assert_int_equal(off, 4);
        } else {
            assert_int_equal(rc, STUN_E_BAD_LENGTH);
        }
    }
    /* Length larger than the datagram. */
    for (size_t l = 4; l < 9; l++)
        assert_int_equal(chdata_guarded(buf, l, false, &ch, &d, &dlen, &off), STUN_E_TRUNCATED);
    for (size_t l = 0; l < 4; l++) {
        assert_int_equal(chdata_guarded(buf, l, false, &ch, &d, &dlen, &off), STUN_E_TRUNCATED);
        assert_int_equal(chdata_guarded(buf, l, true, &ch, &d, &dlen, &off), STUN_E_TRUNCATED);
    }
    /* Empty data, and the top channel. */
    stun_chdata_header(buf, 0x7FFF, 0);
    assert_int_equal(chdata_guarded(buf, 4, false, &ch, &d, &dlen, &off), 4);
    assert_int_equal(ch, 0x7FFF);
    assert_int_equal(dlen, 0);
    assert_int_equal(chdata_guarded(buf, 4, true, &ch, &d, &dlen, &off), 4);
    /* First bits not 01: not ChannelData (channel numbers outside 0x4000-0x7FFF). */
    const uint16_t bad[] = {0x0000, 0x0001, 0x3FFF, 0x8000, 0xBFFF, 0xC000, 0xFFFF};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        stun_chdata_header(buf, bad[i], 4);
        assert_int_equal(chdata_guarded(buf, 8, false, &ch, &d, &dlen, &off),
                         STUN_E_NOT_CHANNELDATA);
        assert_int_equal(chdata_guarded(buf, 8, true, &ch, &d, &dlen, &off),
                         STUN_E_NOT_CHANNELDATA);
    }
}

static void test_chdata_stream(void **state)
{
    (void)state;
    uint8_t buf[64];
    memset(buf, 0, sizeof(buf));
    uint16_t ch, dlen;
    const uint8_t *d;
    size_t off;
    for (uint16_t n = 0; n <= 9; n++) {
        stun_chdata_header(buf, 0x4321, n);
        size_t frame = 4 + pad4z(n);
        /* Exactly one frame, one frame and more bytes after it, and too few bytes. */
        assert_int_equal(chdata_guarded(buf, frame, true, &ch, &d, &dlen, &off), frame);
        assert_int_equal(ch, 0x4321);
        assert_int_equal(dlen, n);
        assert_int_equal(off, 4);
        assert_int_equal(chdata_guarded(buf, frame + 7, true, &ch, &d, &dlen, &off), frame);
        for (size_t l = 4; l < frame; l++)
            assert_int_equal(chdata_guarded(buf, l, true, &ch, &d, &dlen, &off), STUN_E_TRUNCATED);
    }
    /* A stream of three frames consumed one by one. */
    uint8_t s[64];
    size_t len = 0;
    const uint16_t sizes[] = {3, 0, 8};
    for (size_t i = 0; i < 3; i++) {
        int rc = stun_chdata_encode(s + len, sizeof(s) - len, (uint16_t)(0x4000 + i), buf, sizes[i],
                                    true);
        assert_true(rc > 0);
        len += (size_t)rc;
    }
    assert_int_equal(len, 8 + 4 + 12);
    size_t pos = 0;
    for (size_t i = 0; i < 3; i++) {
        int fl = stun_frame_length(s + pos, len - pos);
        assert_int_equal(fl, 4 + pad4z(sizes[i]));
        int rc = chdata_guarded(s + pos, len - pos, true, &ch, &d, &dlen, &off);
        assert_int_equal(rc, fl);
        assert_int_equal(ch, 0x4000 + i);
        assert_int_equal(dlen, sizes[i]);
        pos += (size_t)rc;
    }
    assert_int_equal(pos, len);
}

static void test_chdata_encode(void **state)
{
    (void)state;
    uint8_t payload[16];
    for (int i = 0; i < 16; i++)
        payload[i] = (uint8_t)(0xB0 + i);
    for (uint16_t n = 0; n <= 9; n++) {
        for (int stream = 0; stream < 2; stream++) {
            size_t total = 4 + (stream ? pad4z(n) : n);
            /* Every too-small buffer, guard-placed: NO_SPACE and no write past it. */
            for (size_t cap = 0; cap < total; cap++) {
                uint8_t junk[16] = {0};
                uint8_t *g = guard_place(junk, cap);
                assert_int_equal(stun_chdata_encode(g, cap, 0x4001, payload, n, stream != 0),
                                 STUN_E_NO_SPACE);
                guard_free(g, cap);
            }
            uint8_t fill[16];
            memset(fill, 0xEE, sizeof(fill));
            uint8_t *g = guard_place(fill, total);
            assert_int_equal(stun_chdata_encode(g, total, 0x4001, payload, n, stream != 0), total);
            assert_int_equal(rd16be(g), 0x4001);
            assert_int_equal(rd16be(g + 2), n);
            assert_memory_equal(g + 4, payload, n);
            for (size_t k = 4 + n; k < total; k++)
                assert_int_equal(g[k], 0); /* stream pad */
            uint16_t ch, dlen;
            const uint8_t *d;
            assert_int_equal(stun_chdata_decode(g, total, stream != 0, &ch, &d, &dlen), total);
            assert_int_equal(ch, 0x4001);
            assert_int_equal(dlen, n);
            assert_ptr_equal(d, g + 4);
            assert_int_equal(stun_frame_length(g, total), 4 + pad4z(n));
            guard_free(g, total);
        }
    }
    /* In place: the data already sits at buf + 4. */
    uint8_t buf[32];
    memset(buf, 0xEE, sizeof(buf));
    memcpy(buf + 4, "in place", 8);
    assert_int_equal(stun_chdata_encode(buf, sizeof(buf), 0x7FFF, buf + 4, 8, true), 12);
    assert_memory_equal(buf, "\x7f\xff\x00\x08in place", 12);
    memset(buf, 0xEE, sizeof(buf));
    memcpy(buf + 4, "odd", 3);
    assert_int_equal(stun_chdata_encode(buf, sizeof(buf), 0x4000, buf + 4, 3, true), 8);
    assert_memory_equal(buf, "\x40\x00\x00\x03odd\x00", 8);
    memset(buf, 0xEE, sizeof(buf));
    memcpy(buf + 4, "odd", 3);
    assert_int_equal(stun_chdata_encode(buf, sizeof(buf), 0x4000, buf + 4, 3, false), 7);
    assert_memory_equal(buf, "\x40\x00\x00\x03odd\xee", 8);
    /* Overlapping source a little further on. */
    memcpy(buf, "..abcdef", 8);
    assert_int_equal(stun_chdata_encode(buf, sizeof(buf), 0x4000, buf + 2, 6, false), 10);
    assert_memory_equal(buf + 4, "abcdef", 6);
    /* Channel numbers outside 0x4000-0x7FFF. */
    const uint16_t bad[] = {0x0000, 0x3FFF, 0x8000, 0xFFFF};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(stun_chdata_encode(buf, sizeof(buf), bad[i], payload, 4, false),
                         STUN_E_BAD_CHANNEL);
        assert_int_equal(stun_chdata_encode(buf, sizeof(buf), bad[i], payload, 4, true),
                         STUN_E_BAD_CHANNEL);
    }
}

static void test_frame_length(void **state)
{
    (void)state;
    uint8_t buf[64];
    struct stun_enc e;
    enc_begin(&e, buf, sizeof(buf));
    stun_enc_attr(&e, STUN_ATTR_SOFTWARE, "abc", 3);
    int n = finish_ok(&e);
    for (size_t avail = 0; avail < 4; avail++) {
        uint8_t *g = guard_place(buf, avail);
        assert_int_equal(stun_frame_length(g, avail), 0);
        guard_free(g, avail);
    }
    /* Four bytes are enough to tell, for STUN and for ChannelData. */
    uint8_t *g = guard_place(buf, 4);
    assert_int_equal(stun_frame_length(g, 4), n);
    guard_free(g, 4);
    assert_int_equal(stun_frame_length(buf, (size_t)n), n);
    assert_int_equal(stun_frame_length(buf, sizeof(buf)), n);
    uint8_t cd[4];
    const struct {
        uint16_t dlen;
        int want;
    } cds[] = {{0, 4}, {1, 8}, {4, 8}, {5, 12}, {0xFFFF, 4 + 0x10000}};
    for (size_t i = 0; i < sizeof(cds) / sizeof(cds[0]); i++) {
        stun_chdata_header(cd, 0x4ABC, cds[i].dlen);
        g = guard_place(cd, 4);
        assert_int_equal(stun_frame_length(g, 4), cds[i].want);
        guard_free(g, 4);
    }
    /* STUN with a length not a multiple of 4, and first bits 10 or 11: not a frame. */
    wr16be(buf + 2, 5);
    assert_true(stun_frame_length(buf, sizeof(buf)) < 0);
    wr16be(buf + 2, 0);
    assert_int_equal(stun_frame_length(buf, sizeof(buf)), STUN_HEADER_LEN);
    const uint8_t garbage[][4] = {
        {0x80, 0, 0, 0}, {0xC0, 0, 0, 4}, {0xFF, 0xFF, 0xFF, 0xFF}, {0xBF, 0x12, 0x00, 0x08}};
    for (size_t i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++) {
        g = guard_place(garbage[i], 4);
        assert_int_equal(stun_frame_length(g, 4), STUN_E_NOT_STUN);
        guard_free(g, 4);
    }
}

/* ---- types, names, error texts ---------------------------------------------------------- */

static void test_type_roundtrip(void **state)
{
    (void)state;
    for (uint16_t method = 0; method <= 0xFFF; method++) {
        for (int cls = 0; cls < 4; cls++) {
            uint16_t t = stun_type(method, (enum stun_class)cls);
            assert_int_equal(t & 0xC000, 0);
            assert_int_equal(stun_method_of(t), method);
            assert_int_equal(stun_class_of(t), cls);
        }
    }
    for (uint16_t t = 0; t <= 0x3FFF; t++)
        assert_int_equal(stun_type(stun_method_of(t), stun_class_of(t)), t);
    /* Well-known values (RFC 8489 section 6, RFC 8656 section 17). */
    assert_int_equal(stun_type(STUN_BINDING, STUN_REQUEST), 0x0001);
    assert_int_equal(stun_type(STUN_BINDING, STUN_INDICATION), 0x0011);
    assert_int_equal(stun_type(STUN_BINDING, STUN_SUCCESS), 0x0101);
    assert_int_equal(stun_type(STUN_BINDING, STUN_ERROR), 0x0111);
    assert_int_equal(stun_type(STUN_ALLOCATE, STUN_REQUEST), 0x0003);
    assert_int_equal(stun_type(STUN_ALLOCATE, STUN_SUCCESS), 0x0103);
    assert_int_equal(stun_type(STUN_ALLOCATE, STUN_ERROR), 0x0113);
    assert_int_equal(stun_type(STUN_REFRESH, STUN_REQUEST), 0x0004);
    assert_int_equal(stun_type(STUN_SEND, STUN_INDICATION), 0x0016);
    assert_int_equal(stun_type(STUN_DATA, STUN_INDICATION), 0x0017);
    assert_int_equal(stun_type(STUN_CREATE_PERMISSION, STUN_REQUEST), 0x0008);
    assert_int_equal(stun_type(STUN_CHANNEL_BIND, STUN_REQUEST), 0x0009);
    assert_int_equal(stun_type(STUN_CHANNEL_BIND, STUN_ERROR), 0x0119);
    assert_int_equal(stun_type(0xFFF, STUN_ERROR), 0x3FFF);
    assert_int_equal(stun_type(0x080, STUN_REQUEST), 0x0200);
}

static void test_error_names(void **state)
{
    (void)state;
    const int first = STUN_E_FIRST_ + 1, last = STUN_E_LAST_ - 1;
    assert_int_equal(first, STUN_E_TRUNCATED);
    assert_int_equal(last, STUN_E_CRYPTO);
    assert_true(last < 0);
    for (int err = first; err <= last; err++) {
        const char *text = stun_strerror(err), *name = stun_errname(err);
        assert_non_null(text);
        assert_non_null(name);
        assert_true(strlen(text) > 0);
        assert_true(strlen(name) > 0);
        assert_string_not_equal(text, "unknown codec error");
        assert_string_not_equal(name, "UNKNOWN");
        for (int other = first; other < err; other++) {
            assert_string_not_equal(stun_strerror(other), text);
            assert_string_not_equal(stun_errname(other), name);
        }
    }
    assert_string_equal(stun_errname(STUN_E_BAD_COOKIE), "BAD_COOKIE");
    assert_string_equal(stun_errname(STUN_E_NO_SPACE), "NO_SPACE");
    assert_string_equal(stun_strerror(STUN_E_BAD_COOKIE), "magic cookie is not 0x2112A442");
    assert_string_equal(stun_strerror(STUN_OK), "ok");
    assert_string_equal(stun_errname(STUN_OK), "OK");
    const int outside[] = {1, -1, 100, STUN_E_FIRST_, STUN_E_LAST_, -1000, 1000};
    for (size_t i = 0; i < sizeof(outside) / sizeof(outside[0]); i++) {
        assert_string_equal(stun_strerror(outside[i]), "unknown codec error");
        assert_string_equal(stun_errname(outside[i]), "UNKNOWN");
    }
    assert_string_equal(stun_attr_name(STUN_ATTR_XOR_MAPPED_ADDRESS), "XOR-MAPPED-ADDRESS");
    assert_string_equal(stun_attr_name(STUN_ATTR_MESSAGE_INTEGRITY_SHA256),
                        "MESSAGE-INTEGRITY-SHA256");
    assert_string_equal(stun_attr_name(STUN_ATTR_FINGERPRINT), "FINGERPRINT");
    assert_null(stun_attr_name(0x0000));
    assert_null(stun_attr_name(STUN_ATTR_CHANGE_REQUEST));
    assert_string_equal(stun_error_reason(999), "Unknown Error");
    assert_string_equal(stun_error_reason(0), "Unknown Error");
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_addresses),
        cmocka_unit_test(test_address_getter_errors),
        cmocka_unit_test(test_roundtrip_text),
        cmocka_unit_test(test_roundtrip_error_code),
        cmocka_unit_test(test_roundtrip_password_algorithms),
        cmocka_unit_test(test_roundtrip_unknown_attributes),
        cmocka_unit_test(test_roundtrip_numbers),
        cmocka_unit_test(test_roundtrip_data),
        cmocka_unit_test(test_roundtrip_address_error_and_icmp),
        cmocka_unit_test(test_roundtrip_integrity_attrs),
        cmocka_unit_test(test_roundtrip_everything),
        cmocka_unit_test(test_truncated_prefixes),
        cmocka_unit_test(test_header_errors),
        cmocka_unit_test(test_attr_runs_past_end),
        cmocka_unit_test(test_attr_length_limits),
        cmocka_unit_test(test_attrs_after_integrity_ignored),
        cmocka_unit_test(test_after_fingerprint_is_error),
        cmocka_unit_test(test_duplicates_find_next),
        cmocka_unit_test(test_unknown_comprehension_required),
        cmocka_unit_test(test_too_many_attrs),
        cmocka_unit_test(test_integrity_flips),
        cmocka_unit_test(test_integrity_sha256_truncated),
        cmocka_unit_test(test_integrity_absent),
        cmocka_unit_test(test_encoder_no_space_every_size),
        cmocka_unit_test(test_encoder_sticky_error),
        cmocka_unit_test(test_chdata_datagram),
        cmocka_unit_test(test_chdata_stream),
        cmocka_unit_test(test_chdata_encode),
        cmocka_unit_test(test_frame_length),
        cmocka_unit_test(test_type_roundtrip),
        cmocka_unit_test(test_error_names),
    };
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
