/* test_turn_steer.c: the fleet's side of the server (docs/fleet.md): steering (srv.steer,
 * cluster.redirect) answers an authenticated Allocate with 300, ALTERNATE-SERVER (and
 * ALTERNATE-DOMAIN for TLS), REALM and a NONCE marked steered, and a client that comes back
 * with that nonce is served, never sent on again; the fleet's nonce keys (srv.fleet_keys) make
 * nonces any node accepts, the previous key stays accepted through a rotation, a key two
 * rotations old does not; the nonce flags sit under its MAC. One test alone: pass its name (a
 * glob) as argv[1]. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <string.h>

#include "addr.h"
#include "nonce.h"
#include "turn_fixture.h"

/* A 300 from steering: authenticated, the target, REALM and a steered NONCE. */
static void expect_steered(struct client *c, const struct reply *r, const union stun_addr *to,
                           const char *domain)
{
    assert_int_equal(r->code, 300);
    assert_true(r->mi || r->mi256);
    assert_int_equal(D(r, steered), 1);
    const struct stun_attr *a = stun_find(&r->m, STUN_ATTR_ALTERNATE_SERVER);
    union stun_addr got;
    assert_non_null(a);
    assert_int_equal(stun_get_addr(a, &got), 0);
    assert_addr(&got, to);
    const struct stun_attr *d = stun_find(&r->m, STUN_ATTR_ALTERNATE_DOMAIN);
    if (domain) {
        assert_non_null(d);
        assert_int_equal(d->len, strlen(domain));
        assert_memory_equal(d->val, domain, d->len);
    } else {
        assert_null(d);
    }
    const struct stun_attr *n = stun_find(&r->m, STUN_ATTR_NONCE);
    assert_non_null(stun_find(&r->m, STUN_ATTR_REALM));
    assert_non_null(n);
    unsigned flags = 0;
    const struct srv *s = &c->fx->s;
    const struct auth_nonce_key *k = s->nfleet_keys ? &s->fleet_keys[0] : &c->fx->nonce_key;
    uint64_t now = s->nfleet_keys ? s->unix_s : c->fx->io.now_ms / 1000;
    assert_int_equal(auth_nonce_check(k, &c->t.client, n->val, n->len, now, &flags), AUTH_NONCE_OK);
    assert_int_equal(flags, AUTH_NONCE_STEERED);
    /* The client carries it on, as libwebrtc does with a 300's NONCE. */
    memcpy(c->nonce, n->val, n->len);
    c->noncelen = n->len;
}

static void test_steer_once(void **state)
{
    struct fixture *fx = *state;
    fx_start(fx);
    struct srv_steer to = {.to = mkaddr("198.51.100.7", 3478)};
    fx->s.steer[0][SRV_UDP] = &to;
    struct client c;
    cl_init(&c, fx, SRV_UDP, "192.0.2.10", 40000, "alice", "alice-pw");
    cl_login(&c); /* the 401 challenge is not steered */
    struct req q;
    struct reply r;
    req_allocate(&c, &q);
    send_signed(&c, &q, &r);
    expect_steered(&c, &r, &to.to, NULL);
    assert_int_equal(fx->s.allocs.count, 0);
    /* Back with the 300's nonce (here the same node stands for the alternate, which steers
     * too): served, not sent on a second time. */
    req_allocate(&c, &q);
    send_signed(&c, &q, &r);
    EXPECT_OK(&r);
    assert_int_equal(D(&r, steered), 0);
    assert_int_equal(fx->s.allocs.count, 1);
    /* An IPv6 client, a TCP client: no target of theirs, served here. */
    struct client c6, ct;
    cl_init(&c6, fx, SRV_UDP, "2001:db8:5::10", 40000, "alice", "alice-pw");
    cl_login(&c6);
    req_allocate(&c6, &q);
    send_signed(&c6, &q, &r);
    EXPECT_OK(&r);
    cl_init(&ct, fx, SRV_TCP, "192.0.2.11", 40000, "alice", "alice-pw");
    cl_login(&ct);
    req_allocate(&ct, &q);
    send_signed(&ct, &q, &r);
    EXPECT_OK(&r);
    fx_finish(fx);
}

static void test_steer_tls_names_the_domain(void **state)
{
    struct fixture *fx = *state;
    fx_start(fx);
    struct srv_steer to = {.to = mkaddr("198.51.100.8", 443)};
    strcpy(to.domain, "turn-b.example.net");
    fx->s.steer[0][SRV_TLS] = &to;
    struct client c;
    cl_init(&c, fx, SRV_TLS, "192.0.2.12", 40000, "alice", "alice-pw");
    cl_login(&c);
    struct req q;
    struct reply r;
    req_allocate(&c, &q);
    send_signed(&c, &q, &r);
    expect_steered(&c, &r, &to.to, "turn-b.example.net");
    fx_finish(fx);
}

/* A DTLS client is steered to the target's DTLS listener, with its certificate's name. */
static void test_steer_dtls_names_the_domain(void **state)
{
    struct fixture *fx = *state;
    fx_start(fx);
    struct srv_steer to = {.to = mkaddr("198.51.100.10", 5349)};
    strcpy(to.domain, "turn-c.example.net");
    fx->s.steer[0][SRV_DTLS] = &to;
    struct client c;
    cl_init(&c, fx, SRV_DTLS, "192.0.2.14", 40000, "alice", "alice-pw");
    cl_login(&c);
    struct req q;
    struct reply r;
    req_allocate(&c, &q);
    send_signed(&c, &q, &r);
    expect_steered(&c, &r, &to.to, "turn-c.example.net");
    fx_finish(fx);
}

/* Steering wins over the drain's alternates: the fleet knows where there is room. */
static void test_steer_wins_over_drain(void **state)
{
    struct fixture *fx = *state;
    union stun_addr alt = mkaddr("198.51.100.1", 3478);
    fx->opt.alternates = &alt;
    fx->opt.nalternates = 1;
    fx_start(fx);
    fx->s.draining = true;
    struct srv_steer to = {.to = mkaddr("198.51.100.9", 3478)};
    fx->s.steer[0][SRV_UDP] = &to;
    struct client c;
    cl_init(&c, fx, SRV_UDP, "192.0.2.13", 40000, "alice", "alice-pw");
    cl_login(&c);
    struct req q;
    struct reply r;
    req_allocate(&c, &q);
    send_signed(&c, &q, &r);
    expect_steered(&c, &r, &to.to, NULL);
    fx_finish(fx);
}

static void test_fleet_keys_rotate(void **state)
{
    struct fixture *fx = *state;
    fx_start(fx);
    struct auth_nonce_key k[3];
    memset(k[0].secret, 0x11, sizeof k[0].secret);
    memset(k[1].secret, 0x22, sizeof k[1].secret);
    memset(k[2].secret, 0x33, sizeof k[2].secret);
    fx->s.unix_s = 1800000000;
    fx->s.fleet_keys = &k[0];
    fx->s.nfleet_keys = 1;
    struct client c;
    cl_init(&c, fx, SRV_UDP, "192.0.2.14", 40000, "alice", "alice-pw");
    cl_login(&c); /* a nonce of key 0x11, wall clock */
    unsigned flags;
    assert_int_equal(
        auth_nonce_check(&k[0], &c.t.client, c.nonce, c.noncelen, fx->s.unix_s, &flags),
        AUTH_NONCE_OK);
    assert_int_equal(flags, 0);
    struct req q;
    struct reply r;
    req_refresh(&c, &q, 600); /* no allocation: 437, but authenticated (the nonce passed) */
    send_signed(&c, &q, &r);
    EXPECT_ERR(&r, 437, true);
    /* Rotation: 0x22 new, 0x11 previous: the old nonce still passes. */
    struct auth_nonce_key rot1[2] = {k[1], k[0]};
    fx->s.fleet_keys = rot1;
    fx->s.nfleet_keys = 2;
    req_refresh(&c, &q, 600);
    send_signed(&c, &q, &r);
    EXPECT_ERR(&r, 437, true);
    /* A nonce another node made with the newest key, from the same client address. */
    char other[AUTH_NONCE_LEN];
    auth_nonce_make(&k[1], &c.t.client, fx->s.unix_s, 600, 0, other);
    memcpy(c.nonce, other, AUTH_NONCE_LEN);
    c.noncelen = AUTH_NONCE_LEN;
    req_refresh(&c, &q, 600);
    send_signed(&c, &q, &r);
    EXPECT_ERR(&r, 437, true);
    /* Two rotations on, 0x11 is gone: a nonce of it is refused (438) and a new one given. */
    auth_nonce_make(&k[0], &c.t.client, fx->s.unix_s, 600, 0, other);
    memcpy(c.nonce, other, AUTH_NONCE_LEN);
    struct auth_nonce_key rot2[2] = {k[2], k[1]};
    fx->s.fleet_keys = rot2;
    req_refresh(&c, &q, 600);
    send_signed(&c, &q, &r);
    EXPECT_ERR(&r, 438, false);
    cl_learn(&c, &r);
    assert_int_equal(auth_nonce_check(&k[2], &c.t.client, c.nonce, c.noncelen, fx->s.unix_s, NULL),
                     AUTH_NONCE_OK);
    /* A nonce this process made before the fleet's keys were known still passes. */
    auth_nonce_make(&fx->nonce_key, &c.t.client, fx->io.now_ms / 1000, 600, 0, other);
    memcpy(c.nonce, other, AUTH_NONCE_LEN);
    req_refresh(&c, &q, 600);
    send_signed(&c, &q, &r);
    EXPECT_ERR(&r, 437, true);
    fx_finish(fx);
}

static void test_nonce_flags_under_the_mac(void **state)
{
    (void)state;
    struct auth_nonce_key k;
    memset(k.secret, 0x44, sizeof k.secret);
    union stun_addr a = mkaddr("192.0.2.15", 40000);
    char n[AUTH_NONCE_LEN];
    unsigned flags = 0;
    auth_nonce_make(&k, &a, 1000, 600, AUTH_NONCE_STEERED, n);
    assert_int_equal(auth_nonce_check(&k, &a, (const uint8_t *)n, sizeof n, 1599, &flags),
                     AUTH_NONCE_OK);
    assert_int_equal(flags, AUTH_NONCE_STEERED);
    assert_int_equal(auth_nonce_check(&k, &a, (const uint8_t *)n, sizeof n, 1600, &flags),
                     AUTH_NONCE_STALE);
    /* The flags live in the first base64 characters after the cookie: change them and the MAC
     * no longer matches. */
    char forged[AUTH_NONCE_LEN];
    auth_nonce_make(&k, &a, 1000, 600, 0, forged);
    assert_memory_not_equal(forged, n, sizeof n);
    memcpy(forged + 13, n + 13, 2); /* the steered flag's bits onto an unflagged nonce */
    assert_int_equal(auth_nonce_check(&k, &a, (const uint8_t *)forged, sizeof forged, 1001, NULL),
                     AUTH_NONCE_INVALID);
}

int main(int argc, char **argv)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_steer_once),
        T(test_steer_tls_names_the_domain),
        T(test_steer_dtls_names_the_domain),
        T(test_steer_wins_over_drain),
        T(test_fleet_keys_rotate),
        T(test_nonce_flags_under_the_mac),
    };
#undef T
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
