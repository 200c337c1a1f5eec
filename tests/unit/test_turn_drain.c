/* test_turn_drain.c: a draining server (srv.draining, the relay's drain): authenticated new
 * Allocates get 300 Try Alternate with an ALTERNATE-SERVER of the client's family, taken in
 * turn (RFC 8489 10), or 508 without one; existing allocations keep refreshing and relaying;
 * retransmissions of an Allocate made before the drain still get their answer. One test alone:
 * pass its name (a glob) as argv[1]. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <string.h>

#include "addr.h"
#include "turn_fixture.h"

static union stun_addr alts[3];

static void drain_setup(struct fixture *fx)
{
    alts[0] = mkaddr("198.51.100.1", 3478);
    alts[1] = mkaddr("2001:db8::1", 3478);
    alts[2] = mkaddr("198.51.100.2", 3479);
    fx->opt.alternates = alts;
    fx->opt.nalternates = 3;
    fx_start(fx);
}

static union stun_addr reply_alternate(const struct reply *r)
{
    const struct stun_attr *a = stun_find(&r->m, STUN_ATTR_ALTERNATE_SERVER);
    union stun_addr got;
    memset(&got, 0, sizeof(got));
    assert_non_null(a);
    assert_int_equal(stun_get_addr(a, &got), 0);
    return got;
}

static void test_drain_redirects_new_allocations(void **state)
{
    struct fixture *fx = *state;
    drain_setup(fx);
    fx->s.draining = true;
    struct client c;
    cl_init(&c, fx, SRV_UDP, "192.0.2.10", 40000, "alice", "alice-pw");
    cl_login(&c); /* the 401 challenge is not affected by the drain */
    struct req q;
    struct reply r;
    req_allocate(&c, &q);
    send_signed(&c, &q, &r);
    EXPECT_ERR(&r, 300, true); /* authenticated like any answer to an authenticated request */
    assert_int_equal(D(&r, drain_refused), 1);
    union stun_addr alt = reply_alternate(&r);
    assert_addr(&alt, &alts[0]);
    assert_int_equal(fx->s.allocs.count, 0);
    /* The next IPv4 client gets the next IPv4 alternate; the IPv6 one is skipped. */
    struct client c2;
    cl_init(&c2, fx, SRV_UDP, "192.0.2.11", 40000, "alice", "alice-pw");
    cl_login(&c2);
    req_allocate(&c2, &q);
    send_signed(&c2, &q, &r);
    EXPECT_ERR(&r, 300, true);
    alt = reply_alternate(&r);
    assert_addr(&alt, &alts[2]);
    /* An IPv6 client gets the IPv6 alternate. */
    struct client c6;
    cl_init(&c6, fx, SRV_UDP, "2001:db8:5::10", 40000, "alice", "alice-pw");
    cl_login(&c6);
    req_allocate(&c6, &q);
    send_signed(&c6, &q, &r);
    EXPECT_ERR(&r, 300, true);
    alt = reply_alternate(&r);
    assert_addr(&alt, &alts[1]);
    fx_finish(fx);
}

static void test_drain_without_alternate_is_508(void **state)
{
    struct fixture *fx = *state;
    fx_start(fx); /* no alternates */
    fx->s.draining = true;
    struct client c;
    cl_init(&c, fx, SRV_UDP, "192.0.2.10", 40000, "alice", "alice-pw");
    cl_login(&c);
    struct req q;
    struct reply r;
    req_allocate(&c, &q);
    send_signed(&c, &q, &r);
    EXPECT_ERR(&r, 508, true);
    assert_null(stun_find(&r.m, STUN_ATTR_ALTERNATE_SERVER));
    assert_int_equal(D(&r, drain_refused), 1);
    fx_finish(fx);
}

static void test_drain_keeps_existing_allocations(void **state)
{
    struct fixture *fx = *state;
    drain_setup(fx);
    struct client c;
    cl_init(&c, fx, SRV_UDP, "192.0.2.10", 40000, "alice", "alice-pw");
    cl_login(&c);
    struct allocation *a = cl_allocate(&c);
    struct reply r;
    cl_permit1(&c, "8.8.4.77", &r);
    EXPECT_OK(&r);
    fx->s.draining = true;
    /* Refresh, CreatePermission and data keep working during the drain. */
    cl_refresh(&c, 600, &r);
    EXPECT_OK(&r);
    cl_permit1(&c, "8.8.4.78", &r);
    EXPECT_OK(&r);
    union stun_addr peer = mkaddr("8.8.4.77", 5000);
    send_ind(&c, &peer, "hello", 5, false, &r);
    expect_fwd(&r, a, 0, &peer, "hello", 5, false);
    uint8_t out[256];
    assert_true(peer_in(fx, a, 0, &peer, "back", 4, out, sizeof(out)) > 0);
    /* A second Allocate on the same 5-tuple is still a mismatch, not a redirect. */
    struct req q;
    req_allocate(&c, &q);
    send_signed(&c, &q, &r);
    EXPECT_ERR(&r, 437, true);
    /* Back in service: new clients are accepted again. */
    fx->s.draining = false;
    struct client c2;
    cl_init(&c2, fx, SRV_UDP, "192.0.2.11", 40000, "alice", "alice-pw");
    cl_login(&c2);
    cl_allocate(&c2);
    assert_int_equal(fx->s.allocs.count, 2);
    fx_finish(fx);
}

static void test_drain_close_all_says_drained(void **state)
{
    struct fixture *fx = *state;
    drain_setup(fx);
    for (int i = 0; i < 3; i++) {
        struct client c;
        cl_init(&c, fx, SRV_UDP, "192.0.2.10", (uint16_t)(40000 + i), "alice", "alice-pw");
        cl_login(&c);
        cl_allocate(&c);
    }
    fx->s.draining = true;
    assert_int_equal(srv_close_all(&fx->s, "drained"), 3);
    assert_int_equal(fx->s.allocs.count, 0);
    assert_int_equal(srv_close_all(&fx->s, "drained"), 0);
    fx_finish(fx);
}

int main(int argc, char **argv)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_drain_redirects_new_allocations),
        T(test_drain_without_alternate_is_508),
        T(test_drain_keeps_existing_allocations),
        T(test_drain_close_all_says_drained),
    };
#undef T
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
