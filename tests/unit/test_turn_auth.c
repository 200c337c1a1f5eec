/* test_turn_auth.c: authentication (RFC 8489 section 9.2, long-term credentials): 401
 * challenges, 400 for incomplete or tampered credentials, 420 after authentication, 438 stale
 * and forged nonces, 441, TURN REST API credentials, and auth.strict_expiry (srv_revalidate).
 * One test alone: pass its name (a glob) as argv[1]. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "turn_fixture.h"
#include "wire.h"

static void test_nonce_expiry_438_then_retry(void **state)
{
    struct fixture *fx = *state;
    fx->opt.nonce_lifetime_s = 300;
    fx_start(fx);
    struct client c;
    cl_init(&c, fx, SRV_UDP, "192.0.2.77", 40000, "alice", "alice-pw");
    cl_login(&c);
    cl_allocate(&c);
    struct reply r;
    fx->io.now_ms = T0 + 300 * SEC - 1;
    cl_refresh(&c, -1, &r);
    EXPECT_OK(&r);

    fx->io.now_ms = T0 + 300 * SEC;
    uint8_t old[STUN_MAX_TEXT_BYTES];
    size_t oldlen = c.noncelen;
    memcpy(old, c.nonce, oldlen);
    cl_refresh(&c, -1, &r);
    EXPECT_ERR(&r, 438, false);
    const struct stun_attr *fresh = stun_find(&r.m, STUN_ATTR_NONCE);
    assert_false(fresh->len == oldlen && memcmp(fresh->val, old, oldlen) == 0);
    cl_learn(&c, &r);
    cl_refresh(&c, -1, &r);
    EXPECT_OK(&r);
    /* The fresh nonce lasts its own lifetime. */
    fx->io.now_ms = T0 + 600 * SEC - 1;
    cl_refresh(&c, -1, &r);
    EXPECT_OK(&r);
    fx->io.now_ms = T0 + 600 * SEC;
    cl_refresh(&c, -1, &r);
    EXPECT_ERR(&r, 438, false);
    fx_finish(fx);
}

/* MESSAGE-INTEGRITY without USERNAME/USERHASH, REALM or NONCE: 400, and nothing to protect
 * the answer with (RFC 8489 9.2.4). */
static void test_400_integrity_without_realm_or_nonce(void **state)
{
    struct fixture *fx = *state;
    fx_start(fx);
    struct client c;
    cl_init(&c, fx, SRV_UDP, "192.0.2.77", 40000, "alice", "alice-pw");
    cl_login(&c);
    static const unsigned omit[] = {SIGN_NO_REALM, SIGN_NO_NONCE, SIGN_NO_USER,
                                    SIGN_NO_REALM | SIGN_NO_NONCE};
    for (size_t i = 0; i < sizeof(omit) / sizeof(omit[0]); i++) {
        struct req q;
        struct reply r;
        req_allocate(&c, &q);
        req_sign(&c, &q, omit[i]);
        xchg(&c, &q, &r);
        EXPECT_ERR(&r, 400, false);
    }
    assert_int_equal(fx->s.allocs.count, 0);
    fx_finish(fx);
}

/* The PASSWORD-ALGORITHMS a SHA-256 client returns must be exactly the 401's (bid-down
 * protection, RFC 8489 9.2.4); PASSWORD-ALGORITHM must be one of them; each needs the other. */
static void test_400_password_algorithms_tampered(void **state)
{
    struct fixture *fx = *state;
    fx_start(fx);
    struct client c;
    cl_init(&c, fx, SRV_UDP, "192.0.2.77", 40000, "alice", "alice-pw");
    c.sha256 = true;
    cl_login(&c);
    uint8_t offered[64];
    size_t offeredlen = c.algslen;
    memcpy(offered, c.algs, offeredlen);
    static const struct {
        uint8_t algs[16];
        size_t len;
    } tampered[] = {
        {{0, 1, 0, 0, 0, 2, 0, 0}, 8},              /* order swapped */
        {{0, 2, 0, 0}, 4},                          /* MD5 dropped */
        {{0, 1, 0, 0}, 4},                          /* SHA-256 dropped */
        {{0, 2, 0, 0, 0, 1, 0, 0, 0, 3, 0, 0}, 12}, /* one added */
        {{0, 2, 0, 4, 1, 2, 3, 4, 0, 1, 0, 0}, 12}, /* parameters added */
    };
    struct req q;
    struct reply r;
    for (size_t i = 0; i < sizeof(tampered) / sizeof(tampered[0]); i++) {
        memcpy(c.algs, tampered[i].algs, tampered[i].len);
        c.algslen = tampered[i].len;
        req_allocate(&c, &q);
        send_signed(&c, &q, &r);
        EXPECT_ERR(&r, 400, false);
    }
    memcpy(c.algs, offered, offeredlen);
    c.algslen = offeredlen;
    static const unsigned omit[] = {SIGN_NO_ALGS, SIGN_NO_ALG};
    for (size_t i = 0; i < 2; i++) {
        req_allocate(&c, &q);
        req_sign(&c, &q, omit[i]);
        xchg(&c, &q, &r);
        EXPECT_ERR(&r, 400, false);
    }
    c.alg = 0x0003; /* not offered */
    req_allocate(&c, &q);
    send_signed(&c, &q, &r);
    EXPECT_ERR(&r, 400, false);
    assert_int_equal(fx->s.allocs.count, 0);
    c.alg = STUN_PASSWORD_ALG_SHA256;
    cl_allocate(&c);
    fx_finish(fx);
}

static void test_401_without_credentials(void **state)
{
    struct fixture *fx = *state;
    struct client c;
    one_allocation(fx, &c);
    /* Every TURN request needs credentials, with or without an allocation. */
    struct client other;
    cl_init(&other, fx, SRV_UDP, "192.0.2.99", 40000, "alice", "alice-pw");
    struct client *who[] = {&c, &other};
    union stun_addr pa = mkaddr("8.8.8.8", 5000);
    for (int k = 0; k < 2; k++) {
        struct client *cl = who[k];
        struct req q;
        struct reply r;
        req_refresh(cl, &q, 600);
        req_done(cl, &q);
        xchg(cl, &q, &r);
        EXPECT_ERR(&r, 401, false);
        req_permit(cl, &q, &pa, 1);
        req_done(cl, &q);
        xchg(cl, &q, &r);
        EXPECT_ERR(&r, 401, false);
        req_bind(cl, &q, 0x4000, &pa);
        req_done(cl, &q);
        xchg(cl, &q, &r);
        EXPECT_ERR(&r, 401, false);
        req_allocate(cl, &q);
        req_done(cl, &q);
        xchg(cl, &q, &r);
        EXPECT_ERR(&r, 401, false);
    }
    assert_int_equal(cl_alloc(&c)->nperms, 0);
    assert_int_equal(fx->s.allocs.count, 1);
    fx_finish(fx);
}

/* A wrong password and an unknown user get the same answer, byte for byte: nothing tells an
 * attacker which user names exist. */
static void test_401_wrong_password_and_unknown_user(void **state)
{
    struct fixture *fx = *state;
    fx_start(fx);
    struct client wrong, unknown, hashed;
    cl_init(&wrong, fx, SRV_UDP, "192.0.2.77", 40000, "alice", "not-the-password");
    cl_init(&unknown, fx, SRV_UDP, "192.0.2.77", 40000, "mallory", "alice-pw");
    cl_init(&hashed, fx, SRV_UDP, "192.0.2.77", 40000, "mallory", "alice-pw");
    hashed.userhash = true;
    wrong.seed = unknown.seed = 42; /* the same transaction IDs */
    cl_login(&wrong);
    cl_login(&unknown);
    cl_login(&hashed);
    struct req q;
    struct reply r1, r2, r3;
    req_allocate(&wrong, &q);
    send_signed(&wrong, &q, &r1);
    EXPECT_ERR(&r1, 401, false);
    req_allocate(&unknown, &q);
    send_signed(&unknown, &q, &r2);
    EXPECT_ERR(&r2, 401, false);
    assert_int_equal(r1.len, r2.len);
    assert_memory_equal(r1.buf, r2.buf, r1.len);
    req_allocate(&hashed, &q);
    send_signed(&hashed, &q, &r3);
    EXPECT_ERR(&r3, 401, false);
    assert_int_equal(fx->s.allocs.count, 0);
    assert_int_equal(fx->io.quota_total, 0);
    fx_finish(fx);
}

static void test_401_wrong_realm(void **state)
{
    struct fixture *fx = *state;
    fx_start(fx);
    struct client c;
    cl_init(&c, fx, SRV_UDP, "192.0.2.77", 40000, "alice", "alice-pw");
    cl_login(&c);
    static const char other[] = "other.test";
    memcpy(c.realm, other, sizeof(other) - 1);
    c.realmlen = sizeof(other) - 1;
    cl_derive(&c); /* a consistent key for that realm: only the realm is wrong */
    struct req q;
    struct reply r;
    req_allocate(&c, &q);
    send_signed(&c, &q, &r);
    EXPECT_ERR(&r, 401, false);
    cl_learn(&c, &r); /* the answer's REALM puts the client right */
    cl_allocate(&c);
    fx_finish(fx);
}

/* Unknown comprehension-required attributes are refused after authentication, so the 420 is
 * integrity-protected and lists them (RFC 8489 6.3.1). */
static void test_420_unknown_attribute_authenticated(void **state)
{
    struct fixture *fx = *state;
    fx_start(fx);
    struct client c;
    cl_init(&c, fx, SRV_UDP, "192.0.2.77", 40000, "alice", "alice-pw");
    cl_login(&c);
    static const uint8_t four[4] = {0};
    struct req q;
    struct reply r;
    req_allocate(&c, &q);
    stun_enc_attr(&q.e, 0x0003, four, 4); /* CHANGE-REQUEST: not implemented */
    stun_enc_attr(&q.e, 0x7F01, four, 4);
    stun_enc_attr(&q.e, 0xC001, four, 4); /* comprehension-optional: ignored */
    send_signed(&c, &q, &r);
    EXPECT_ERR(&r, 420, true);
    uint16_t types[8];
    size_t n = 0;
    assert_int_equal(stun_get_unknown(stun_find(&r.m, STUN_ATTR_UNKNOWN_ATTRIBUTES), types, 8, &n),
                     0);
    assert_int_equal(n, 2);
    assert_int_equal(types[0], 0x0003);
    assert_int_equal(types[1], 0x7F01);
    assert_int_equal(fx->s.allocs.count, 0);
    assert_int_equal(fx->io.quota_total, 0);
    /* Without credentials the 401 comes first. */
    req_allocate(&c, &q);
    stun_enc_attr(&q.e, 0x7F01, four, 4);
    req_done(&c, &q);
    xchg(&c, &q, &r);
    EXPECT_ERR(&r, 401, false);
    fx_finish(fx);
}

static void test_438_stale_forged_and_foreign_nonce(void **state)
{
    struct fixture *fx = *state;
    fx->opt.nonce_lifetime_s = 300;
    fx_start(fx);
    struct client c, d;
    cl_init(&c, fx, SRV_UDP, "192.0.2.77", 40000, "alice", "alice-pw");
    cl_init(&d, fx, SRV_UDP, "192.0.2.77", 40001, "alice", "alice-pw");
    cl_login(&c);
    cl_allocate(&c);
    struct reply r;

    /* Forged: one character of the MAC part changed; then a truncated nonce. */
    uint8_t good[STUN_MAX_TEXT_BYTES];
    size_t goodlen = c.noncelen;
    memcpy(good, c.nonce, goodlen);
    c.nonce[30] = c.nonce[30] == 'A' ? 'B' : 'A';
    cl_refresh(&c, -1, &r);
    EXPECT_ERR(&r, 438, false);
    c.noncelen = goodlen - 1;
    memcpy(c.nonce, good, goodlen);
    cl_refresh(&c, -1, &r);
    EXPECT_ERR(&r, 438, false);
    c.noncelen = goodlen;
    cl_refresh(&c, -1, &r);
    EXPECT_OK(&r);

    /* Issued to another client address (same IP, other port). */
    memcpy(d.realm, c.realm, c.realmlen);
    d.realmlen = c.realmlen;
    memcpy(d.nonce, c.nonce, c.noncelen);
    d.noncelen = c.noncelen;
    cl_derive(&d);
    struct req q;
    req_allocate(&d, &q);
    send_signed(&d, &q, &r);
    EXPECT_ERR(&r, 438, false);
    assert_null(cl_alloc(&d));
    cl_learn(&d, &r); /* the 438 carries a nonce for d itself */
    cl_allocate(&d);

    /* Stale. */
    fx->io.now_ms = T0 + 300 * SEC;
    cl_refresh(&c, -1, &r);
    EXPECT_ERR(&r, 438, false);
    cl_learn(&c, &r);
    cl_refresh(&c, -1, &r);
    EXPECT_OK(&r);
    fx_finish(fx);
}

static void test_441_wrong_credentials(void **state)
{
    struct fixture *fx = *state;
    struct client c, b;
    struct allocation *a = one_allocation(fx, &c);
    /* bob, with valid credentials, on alice's 5-tuple. */
    cl_init(&b, fx, SRV_UDP, "192.0.2.77", 40000, "bob", "bob-pw");
    cl_login(&b);
    union stun_addr pa = mkaddr("8.8.8.8", 5000);
    struct reply r;
    uint64_t expires = a->expires_ms;
    fx->io.now_ms += 10 * SEC;
    cl_refresh(&b, -1, &r);
    EXPECT_ERR(&r, 441, true);
    cl_refresh(&b, 0, &r);
    EXPECT_ERR(&r, 441, true);
    cl_permit(&b, &pa, 1, &r);
    EXPECT_ERR(&r, 441, true);
    cl_bind(&b, 0x4000, &pa, &r);
    EXPECT_ERR(&r, 441, true);
    /* alice's allocation is untouched. */
    assert_ptr_equal(cl_alloc(&c), a);
    assert_int_equal(a->expires_ms, expires);
    assert_int_equal(a->nperms, 0);
    assert_int_equal(fake_io_quota_count(&fx->io, "bob"), 0);
    fx_finish(fx);
}

static const char *const rest_secrets[] = {"old-secret", "new-secret"};

/* Allocate with a REST username for expiry and a password from secret; returns the code. */
static int rest_allocate(struct fixture *fx, const char *ip, const char *name, const char *secret,
                         enum auth_rest_mac mac, bool sha256)
{
    char pw[AUTH_REST_PASSWORD_MAX + 1];
    size_t n = auth_rest_password(mac, (const uint8_t *)secret, strlen(secret),
                                  (const uint8_t *)name, strlen(name), pw);
    assert_true(n > 0);
    pw[n] = 0;
    struct client c;
    cl_init(&c, fx, SRV_UDP, ip, 40000, name, pw);
    c.sha256 = sha256;
    cl_login(&c);
    struct req q;
    struct reply r;
    req_allocate(&c, &q);
    req_sign(&c, &q, 0);
    xchg(&c, &q, &r);
    return r.code;
}

static void test_rest_credentials(void **state)
{
    struct fixture *fx = *state;
    fx->opt.rest_secrets = rest_secrets;
    fx->opt.nrest_secrets = 2;
    fx->opt.rest_separator = ':';
    fx_start(fx);
    fx->s.unix_s = 1700000000;
    /* Both secrets of a rotation work, with either MAC variant and either integrity. */
    assert_int_equal(rest_allocate(fx, "192.0.2.81", "1700000600:alice", "old-secret",
                                   AUTH_REST_HMAC_SHA1, false),
                     0);
    assert_int_equal(rest_allocate(fx, "192.0.2.82", "1700000600:alice", "new-secret",
                                   AUTH_REST_HMAC_SHA1, true),
                     0);
    assert_int_equal(rest_allocate(fx, "192.0.2.83", "1700000600:bob", "new-secret",
                                   AUTH_REST_HMAC_SHA256, false),
                     0);
    /* Expired (expiry == now counts as expired), unknown secret, malformed names: 401. */
    assert_int_equal(rest_allocate(fx, "192.0.2.84", "1700000000:alice", "new-secret",
                                   AUTH_REST_HMAC_SHA1, false),
                     401);
    assert_int_equal(rest_allocate(fx, "192.0.2.85", "1699999999:alice", "old-secret",
                                   AUTH_REST_HMAC_SHA1, false),
                     401);
    assert_int_equal(rest_allocate(fx, "192.0.2.86", "1700000600:alice", "retired-secret",
                                   AUTH_REST_HMAC_SHA1, false),
                     401);
    const char *bad[] = {"alice",
                         ":alice",
                         "1700000600:",
                         "17000x0600:alice",
                         "99999999999999999999:alice",
                         "1700000600-alice"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(
            rest_allocate(fx, "192.0.2.87", bad[i], "new-secret", AUTH_REST_HMAC_SHA1, false), 401);
    /* The wall clock moves on: the same credential stops working for new allocations. */
    fx->s.unix_s = 1700000600;
    assert_int_equal(rest_allocate(fx, "192.0.2.88", "1700000600:carol", "new-secret",
                                   AUTH_REST_HMAC_SHA1, false),
                     401);
    assert_int_equal(fx->s.allocs.count, 3);
    fx_finish(fx);
}

static void test_rest_primitives(void **state)
{
    (void)state;
    /* Vectors from Python's hmac/base64, an independent implementation. */
    char pw[AUTH_REST_PASSWORD_MAX + 1];
    size_t n = auth_rest_password(AUTH_REST_HMAC_SHA1, (const uint8_t *)"north", 5,
                                  (const uint8_t *)"1700000000:alice", 16, pw);
    pw[n] = 0;
    assert_string_equal(pw, "Cd/49soE35ICqcJF/bCTn8Z4OyE=");
    n = auth_rest_password(AUTH_REST_HMAC_SHA256, (const uint8_t *)"s3cr3t-rotate", 13,
                           (const uint8_t *)"4102444800:bob@example", 22, pw);
    pw[n] = 0;
    assert_string_equal(pw, "WQ0cLlPkB6bvRo6R0qH51xVJPpoY+tHzM6NlJC9HNsw=");
    uint64_t e = 0;
    assert_int_equal(auth_rest_parse((const uint8_t *)"4102444800:bob", 14, ':', &e), 0);
    assert_true(e == 4102444800ull);
    assert_int_equal(auth_rest_parse((const uint8_t *)"4102444800#bob", 14, '#', &e), 0);
    assert_int_equal(auth_rest_parse((const uint8_t *)"4102444800:bob", 14, '#', &e), -1);
    assert_int_equal(auth_rest_parse((const uint8_t *)"12:", 3, ':', &e), -1);
}

static struct auth_creds gone_inner;

static bool alice_gone;

static int gone_lookup(void *ctx, const uint8_t *name, size_t len, bool uh, struct auth_user *out)
{
    if (alice_gone && !uh && len == 5 && memcmp(name, "alice", 5) == 0) return -1; /* deleted */
    return gone_inner.lookup(ctx, name, len, uh, out);
}

static void test_revalidate_closes_revoked(void **state)
{
    struct fixture *fx = *state;
    fx->opt.rest_secrets = rest_secrets;
    fx->opt.nrest_secrets = 2;
    fx->opt.rest_separator = ':';
    gone_inner = fx->creds;
    fx->creds.lookup = gone_lookup;
    alice_gone = false;
    struct client c;
    one_allocation(fx, &c);
    fx->s.unix_s = 1700000000;
    assert_int_equal(
        rest_allocate(fx, "192.0.2.91", "1700000600:u1", "new-secret", AUTH_REST_HMAC_SHA1, false),
        0);
    assert_int_equal(fx->s.allocs.count, 2);
    assert_int_equal(srv_revalidate(&fx->s), 0); /* nothing changed */
    alice_gone = true;                           /* the admin deletes alice */
    assert_int_equal(srv_revalidate(&fx->s), 1);
    assert_int_equal(fx->s.allocs.count, 1);
    fx->s.unix_s = 1700000600; /* the REST username expires */
    assert_int_equal(srv_revalidate(&fx->s), 1);
    assert_int_equal(fx->s.allocs.count, 0);
    assert_int_equal(fx->s.c.v[SRV_C_allocations_revoked], 2);
    alice_gone = false;
    fx_finish(fx);
}

int main(int argc, char **argv)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_nonce_expiry_438_then_retry),
        T(test_400_integrity_without_realm_or_nonce),
        T(test_400_password_algorithms_tampered),
        T(test_401_without_credentials),
        T(test_401_wrong_password_and_unknown_user),
        T(test_401_wrong_realm),
        T(test_420_unknown_attribute_authenticated),
        T(test_438_stale_forged_and_foreign_nonce),
        T(test_441_wrong_credentials),
        T(test_rest_credentials),
        T(test_rest_primitives),
        T(test_revalidate_closes_revoked),
    };
#undef T
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
