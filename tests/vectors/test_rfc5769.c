/* test_rfc5769.c: the RFC 5769 test vectors (and RFC 8489 appendix B.1), decoded from
 * guard-page buffers, verified and re-encoded byte for byte. One test alone: pass its name
 * (a glob) as the first argument. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <string.h>

#include "auth.h"
#include "stun.h"
#include "testutil.h"

/* RFC 5769 section 2.1: Sample Request (short-term credential, ICE attributes). */
static const char sample_request[] = "000100582112a442b7e7a701bc34d686fa87dfae"
                                     "802200105354554e207465737420636c69656e74"
                                     "002400046e0001ff"
                                     "80290008932ff9b151263b36"
                                     "000600096576746a3a68367659202020"
                                     "000800149aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a2"
                                     "80280004e57a3bcf";
/* 2.2: Sample IPv4 Response. */
static const char sample_ipv4[] = "0101003c2112a442b7e7a701bc34d686fa87dfae"
                                  "8022000b7465737420766563746f7220"
                                  "002000080001a147e112a643"
                                  "000800142b91f599fd9e90c38c7489f92af9ba53f06be7d7"
                                  "80280004c07d4c96";
/* 2.3: Sample IPv6 Response. */
static const char sample_ipv6[] = "010100482112a442b7e7a701bc34d686fa87dfae"
                                  "8022000b7465737420766563746f7220"
                                  "002000140002a1470113a9faa5d3f179bc25f4b5bed2b9d9"
                                  "00080014a382954e4be67bf11784c97c8292c275bfe3ed41"
                                  "80280004c8fb0b4c";
/* 2.4: Sample Request with Long-Term Authentication. */
static const char sample_longterm[] = "000100602112a44278ad3433c6ad72c029da412e"
                                      "00060012e3839ee38388e383aae38383e382afe382b90000"
                                      "0015001c662f2f3439396b393534643"
                                      "64f4c33346f4c394653547679363473"
                                      "41"
                                      "0014000b6578616d706c652e6f726700"
                                      "00080014f67024656dd64a3e02b8e0712e85c9a28ca89666";
/* RFC 8489 appendix B.1: USERHASH, PASSWORD-ALGORITHM, MESSAGE-INTEGRITY-SHA256. */
static const char sample_sha256[] =
    "000100902112a44278ad3433c6ad72c029da412e"
    "001e00204a3cf38fef6992bda952c6780417da0f24819415569e60b205c46e41407f1704"
    "00150029"
    "6f624d61744a6f7332414141436"
    "62f2f3439396b393534643"
    "64f4c33346f4c394653547679363473"
    "41000000"
    "0014000b6578616d706c652e6f726700"
    "001d000400020000"
    "001c0020b5c7bf005b6c52a21c51c5e892f8192413"
    "6296cb927c43149309278cc6518e65";

static const char short_term_password[] = "VOkJxbRl1RmTxUk/WvJxBt";
static const char lt_user[] =
    "\xe3\x83\x9e\xe3\x83\x88\xe3\x83\xaa\xe3\x83\x83\xe3\x82\xaf\xe3\x82\xb9";
static const char lt_password[] = "The\xc2\xadM\xc2\xaatr\xe2\x85\xa8"; /* before SASLprep */
static const char lt_realm[] = "example.org";
static const char lt_nonce[] = "f//499k954d6OL34oL9FSTvy64sA";

struct vec {
    uint8_t bytes[256];
    int len;
    uint8_t *guarded; /* the same bytes ending at a PROT_NONE page */
};

static void load(struct vec *v, const char *hex)
{
    v->len = hex_parse(hex, v->bytes, sizeof(v->bytes));
    assert_true(v->len > 0);
    v->guarded = guard_place(v->bytes, (size_t)v->len);
}

static void unload(struct vec *v)
{
    guard_free(v->guarded, (size_t)v->len);
}

static void assert_attr_str(const struct stun_msg *m, uint16_t type, const char *want)
{
    const struct stun_attr *a = stun_find(m, type);
    assert_non_null(a);
    assert_int_equal(a->len, strlen(want));
    assert_memory_equal(a->val, want, a->len);
}

static void test_sample_request(void **state)
{
    (void)state;
    struct vec v;
    load(&v, sample_request);
    assert_int_equal(v.len, 108);
    struct stun_msg m;
    assert_int_equal(stun_decode(&m, v.guarded, (size_t)v.len), 0);
    assert_int_equal(m.type, stun_type(STUN_BINDING, STUN_REQUEST));
    assert_int_equal(m.nunknown, 0);
    assert_attr_str(&m, STUN_ATTR_SOFTWARE, "STUN test client");
    assert_attr_str(&m, STUN_ATTR_USERNAME, "evtj:h6vY");
    uint32_t prio;
    assert_int_equal(stun_get_u32(stun_find(&m, STUN_ATTR_PRIORITY), &prio), 0);
    assert_int_equal(prio, 0x6e0001ff);
    uint64_t tie;
    assert_int_equal(stun_get_u64(stun_find(&m, STUN_ATTR_ICE_CONTROLLED), &tie), 0);
    assert_true(tie == 0x932ff9b151263b36ull);
    const uint8_t *key = (const uint8_t *)short_term_password;
    assert_int_equal(stun_check_integrity(&m, key, strlen(short_term_password)), 0);
    assert_int_equal(stun_check_integrity(&m, (const uint8_t *)"wrong", 5), STUN_E_BAD_INTEGRITY);
    assert_int_equal(stun_check_integrity_sha256(&m, key, 1), STUN_E_NO_INTEGRITY);
    assert_int_equal(stun_check_fingerprint(&m), 0);

    /* Re-encode from the decoded values: the same bytes (padding 0x20 as in the RFC). */
    uint8_t out[256];
    struct stun_enc e;
    stun_enc_init(&e, out, sizeof(out), m.type, m.tid);
    e.pad = 0x20;
    stun_enc_attr(&e, STUN_ATTR_SOFTWARE, "STUN test client", 16);
    stun_enc_u32(&e, STUN_ATTR_PRIORITY, prio);
    stun_enc_u64(&e, STUN_ATTR_ICE_CONTROLLED, tie);
    stun_enc_attr(&e, STUN_ATTR_USERNAME, "evtj:h6vY", 9);
    stun_enc_integrity(&e, key, strlen(short_term_password));
    stun_enc_fingerprint(&e);
    assert_int_equal(stun_enc_finish(&e), v.len);
    assert_memory_equal(out, v.bytes, (size_t)v.len);
    unload(&v);
}

static void check_response(const char *hex, int want_len, int family, const char *ip)
{
    struct vec v;
    load(&v, hex);
    assert_int_equal(v.len, want_len);
    struct stun_msg m;
    assert_int_equal(stun_decode(&m, v.guarded, (size_t)v.len), 0);
    assert_int_equal(m.type, stun_type(STUN_BINDING, STUN_SUCCESS));
    assert_attr_str(&m, STUN_ATTR_SOFTWARE, "test vector");
    union stun_addr a;
    assert_int_equal(stun_get_xor_addr(&m, stun_find(&m, STUN_ATTR_XOR_MAPPED_ADDRESS), &a), 0);
    assert_int_equal(a.sa.sa_family, family);
    char txt[INET6_ADDRSTRLEN];
    const void *raw =
        family == AF_INET ? (const void *)&a.v4.sin_addr : (const void *)&a.v6.sin6_addr;
    inet_ntop(family, raw, txt, sizeof(txt));
    assert_string_equal(txt, ip);
    assert_int_equal(ntohs(family == AF_INET ? a.v4.sin_port : a.v6.sin6_port), 32853);
    const uint8_t *key = (const uint8_t *)short_term_password;
    assert_int_equal(stun_check_integrity(&m, key, strlen(short_term_password)), 0);
    assert_int_equal(stun_check_fingerprint(&m), 0);

    uint8_t out[256];
    struct stun_enc e;
    stun_enc_init(&e, out, sizeof(out), m.type, m.tid);
    e.pad = 0x20;
    stun_enc_attr(&e, STUN_ATTR_SOFTWARE, "test vector", 11);
    stun_enc_xor_addr(&e, STUN_ATTR_XOR_MAPPED_ADDRESS, &a);
    stun_enc_integrity(&e, key, strlen(short_term_password));
    stun_enc_fingerprint(&e);
    assert_int_equal(stun_enc_finish(&e), v.len);
    assert_memory_equal(out, v.bytes, (size_t)v.len);
    unload(&v);
}

static void test_sample_ipv4_response(void **state)
{
    (void)state;
    check_response(sample_ipv4, 80, AF_INET, "192.0.2.1");
}

static void test_sample_ipv6_response(void **state)
{
    (void)state;
    check_response(sample_ipv6, 92, AF_INET6, "2001:db8:1234:5678:11:2233:4455:6677");
}

static void test_sample_longterm_request(void **state)
{
    (void)state;
    struct vec v;
    load(&v, sample_longterm);
    assert_int_equal(v.len, 116);
    struct stun_msg m;
    assert_int_equal(stun_decode(&m, v.guarded, (size_t)v.len), 0);
    assert_attr_str(&m, STUN_ATTR_USERNAME, lt_user);
    assert_attr_str(&m, STUN_ATTR_NONCE, lt_nonce);
    assert_attr_str(&m, STUN_ATTR_REALM, lt_realm);
    assert_int_equal(stun_check_fingerprint(&m), 1); /* absent */

    /* The key comes from the password before SASLprep: the preparation must turn
     * "The<U+00AD>M<U+00AA>tr<U+2168>" into "TheMatrIX". */
    uint8_t key[AUTH_KEY_MAX];
    int klen = auth_longterm_key(STUN_PASSWORD_ALG_MD5, lt_user, strlen(lt_user), lt_realm,
                                 strlen(lt_realm), lt_password, strlen(lt_password), key);
    assert_int_equal(klen, 16);
    assert_int_equal(stun_check_integrity(&m, key, (size_t)klen), 0);
    uint8_t key2[AUTH_KEY_MAX];
    assert_int_equal(auth_longterm_key(STUN_PASSWORD_ALG_MD5, lt_user, strlen(lt_user), lt_realm,
                                       strlen(lt_realm), "TheMatrIX", 9, key2),
                     16);
    assert_memory_equal(key, key2, 16);

    uint8_t out[256];
    struct stun_enc e;
    stun_enc_init(&e, out, sizeof(out), m.type, m.tid);
    stun_enc_attr(&e, STUN_ATTR_USERNAME, lt_user, strlen(lt_user));
    stun_enc_attr(&e, STUN_ATTR_NONCE, lt_nonce, strlen(lt_nonce));
    stun_enc_attr(&e, STUN_ATTR_REALM, lt_realm, strlen(lt_realm));
    stun_enc_integrity(&e, key, (size_t)klen);
    assert_int_equal(stun_enc_finish(&e), v.len);
    assert_memory_equal(out, v.bytes, (size_t)v.len);
    unload(&v);
}

static void test_rfc8489_sha256_request(void **state)
{
    (void)state;
    struct vec v;
    load(&v, sample_sha256);
    assert_int_equal(v.len, 164);
    struct stun_msg m;
    assert_int_equal(stun_decode(&m, v.guarded, (size_t)v.len), 0);
    const struct stun_attr *uh = stun_find(&m, STUN_ATTR_USERHASH);
    assert_non_null(uh);
    uint8_t hash[STUN_USERHASH_LEN];
    assert_int_equal(auth_userhash(lt_user, strlen(lt_user), lt_realm, strlen(lt_realm), hash), 0);
    assert_memory_equal(uh->val, hash, sizeof(hash));
    uint16_t alg;
    const uint8_t *params;
    uint16_t plen;
    assert_int_equal(stun_get_password_algorithm(stun_find(&m, STUN_ATTR_PASSWORD_ALGORITHM), &alg,
                                                 &params, &plen),
                     0);
    assert_int_equal(alg, STUN_PASSWORD_ALG_SHA256);
    uint8_t key[AUTH_KEY_MAX];
    int klen = auth_longterm_key(STUN_PASSWORD_ALG_SHA256, lt_user, strlen(lt_user), lt_realm,
                                 strlen(lt_realm), lt_password, strlen(lt_password), key);
    assert_int_equal(klen, 32);
    assert_int_equal(stun_check_integrity_sha256(&m, key, (size_t)klen), 0);
    unload(&v);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sample_request),
        cmocka_unit_test(test_sample_ipv4_response),
        cmocka_unit_test(test_sample_ipv6_response),
        cmocka_unit_test(test_sample_longterm_request),
        cmocka_unit_test(test_rfc8489_sha256_request),
    };
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
