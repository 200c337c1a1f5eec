/* test_turn_refresh.c: Refresh and the end of an allocation (RFC 8656 section 8): expiry with
 * the fake clock, refresh, delete, partial delete of one family, retransmitted Refresh, and
 * srv_delete/srv_free giving every port, socket and quota back. One test alone: pass its name (a
 * glob) as argv[1]. */
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

static void test_allocation_expires_at_lifetime(void **state)
{
    struct fixture *fx = *state;
    fx_start(fx);
    struct client c, d;
    cl_init(&c, fx, SRV_UDP, "192.0.2.77", 40000, "alice", "alice-pw");
    cl_init(&d, fx, SRV_UDP, "192.0.2.78", 40000, "bob", "bob-pw");
    cl_login(&c);
    cl_login(&d);
    struct allocation *a = cl_allocate(&c);
    struct req q;
    struct reply r;
    req_allocate(&d, &q);
    stun_enc_u32(&q.e, STUN_ATTR_LIFETIME, 1200);
    send_signed(&d, &q, &r);
    EXPECT_OK(&r);
    assert_int_equal(reply_u32(&r, STUN_ATTR_LIFETIME), 1200);
    uint16_t port = addr_port(&a->relay[0].addr);

    assert_int_equal(srv_expire(&fx->s, T0 + 600 * SEC - 1), 0);
    assert_non_null(cl_alloc(&c));
    assert_int_equal(fx->io.nopen, 2);
    assert_int_equal(srv_expire(&fx->s, T0 + 600 * SEC), 1);
    assert_null(cl_alloc(&c));
    assert_non_null(cl_alloc(&d));
    assert_int_equal(fx->s.c.v[SRV_C_allocations_expired], 1);
    assert_int_equal(fake_io_count_events(&fx->io, "expired"), 1);
    assert_int_equal(fake_io_port_state(&fx->io, 0, port), FAKE_PORT_FREE);
    assert_int_equal(fake_io_quota_count(&fx->io, "alice"), 0);
    check_books(fx);

    /* Gone for good: its client's Refresh finds nothing. */
    fx->io.now_ms = T0 + 600 * SEC;
    cl_refresh(&c, -1, &r);
    EXPECT_ERR(&r, 437, true);

    assert_int_equal(srv_expire(&fx->s, T0 + 1200 * SEC - 1), 0);
    assert_int_equal(srv_expire(&fx->s, T0 + 1200 * SEC), 1);
    assert_int_equal(fx->s.allocs.count, 0);
    assert_int_equal(fx->s.c.v[SRV_C_allocations_expired], 2);
    fx_finish(fx);
}

static void test_refreshed_allocation_lives_on(void **state)
{
    struct fixture *fx = *state;
    fx_start(fx);
    struct client c;
    cl_init(&c, fx, SRV_UDP, "192.0.2.77", 40000, "alice", "alice-pw");
    cl_login(&c);
    cl_allocate(&c);
    struct reply r;
    fx->io.now_ms = T0 + 500 * SEC;
    cl_refresh(&c, -1, &r);
    EXPECT_OK(&r);
    assert_int_equal(srv_expire(&fx->s, T0 + 600 * SEC), 0);
    assert_int_equal(srv_expire(&fx->s, T0 + 1100 * SEC - 1), 0);
    assert_non_null(cl_alloc(&c));
    assert_int_equal(srv_expire(&fx->s, T0 + 1100 * SEC), 1);
    assert_null(cl_alloc(&c));
    fx_finish(fx);
}

/* A dual allocation whose lifetime has ended, in the moment before the relay's next srv_expire
 * sweep (the worker handles a batch of messages first, then sweeps): a Refresh that deletes
 * one family must not answer with a LIFETIME computed from a negative remaining time. */
static void test_refresh_after_lifetime_before_sweep(void **state)
{
    struct fixture *fx = *state;
    struct client c;
    struct allocation *a = dual_allocation(fx, &c);
    fx->io.now_ms = a->expires_ms + 5; /* 5 ms late */
    struct req q;
    struct reply r;
    req_refresh(&c, &q, 0);
    stun_enc_u8_rffu(&q.e, STUN_ATTR_REQUESTED_ADDRESS_FAMILY, STUN_FAMILY_IPV6);
    send_signed(&c, &q, &r);
    if (r.code == 0) {
        uint32_t life = reply_u32(&r, STUN_ATTR_LIFETIME);
        if (life > fx->opt.max_lifetime_s)
            fail_msg("LIFETIME %u answered for an allocation past its end", life);
    } else {
        EXPECT_ERR(&r, 437, true);
    }
    srv_expire(&fx->s, fx->io.now_ms);
    fx_finish(fx);
}

/* Regression (found by fuzz_turn): deleting the IPv6 half of a dual allocation used to keep
 * its channels, and ChannelData on one then indexed relay[-1] and crashed ternd. */
static void test_partial_delete_forgets_that_family(void **state)
{
    struct fixture *fx = *state;
    struct client c;
    struct allocation *a = dual_allocation(fx, &c);
    union stun_addr peer6 = mkaddr("2606:4700::1111", 5000), peer4 = mkaddr("8.8.8.8", 5000);
    struct reply r;
    cl_bind(&c, 0x4000, &peer6, &r);
    EXPECT_OK(&r);
    cl_bind(&c, 0x4001, &peer4, &r);
    EXPECT_OK(&r);
    struct req q;
    req_refresh(&c, &q, 0);
    stun_enc_u8_rffu(&q.e, STUN_ATTR_REQUESTED_ADDRESS_FAMILY, STUN_FAMILY_IPV6);
    send_signed(&c, &q, &r);
    EXPECT_OK(&r);
    assert_int_equal(a->nrelay, 1);
    send_chdata(&c, 0x4000, "x", 1, &r);
    assert_null(r.fwd.a); /* dropped, not forwarded through a relay that is gone */
    assert_int_equal(D(&r, drop_no_channel) + D(&r, drop_send_family), 1);
    send_chdata(&c, 0x4001, "y", 1, &r);
    expect_fwd(&r, a, 0, &peer4, "y", 1, false); /* the IPv4 half carries on */
    fx_finish(fx);
}

static void test_retransmit_refresh(void **state)
{
    struct fixture *fx = *state;
    struct client c;
    struct allocation *a = one_allocation(fx, &c);
    struct req q;
    struct reply r1, r2, r3;
    fx->io.now_ms = T0 + 100 * SEC;
    req_refresh(&c, &q, 1200);
    req_sign(&c, &q, 0);
    xchg(&c, &q, &r1);
    EXPECT_OK(&r1);
    fx->io.now_ms += 2 * SEC;
    xchg(&c, &q, &r2);
    EXPECT_OK(&r2);
    assert_int_equal(r1.len, r2.len);
    assert_memory_equal(r1.buf, r2.buf, r1.len);
    assert_int_equal(D(&r2, retransmit_answered), 1);
    assert_int_equal(D(&r2, refresh_success), 0);
    assert_int_equal(a->expires_ms, T0 + 1300 * SEC);
    fx->io.now_ms = T0 + 141 * SEC;
    xchg(&c, &q, &r3);
    EXPECT_OK(&r3);
    assert_int_equal(D(&r3, refresh_success), 1);
    assert_int_equal(a->expires_ms, fx->io.now_ms + 1200 * SEC);
    fx_finish(fx);
}

/* A retransmitted deleting Refresh gets the same success, not a 437. */
static void test_retransmit_refresh_delete(void **state)
{
    struct fixture *fx = *state;
    struct client c;
    one_allocation(fx, &c);
    struct req q;
    struct reply r1, r2;
    req_refresh(&c, &q, 0);
    req_sign(&c, &q, 0);
    xchg(&c, &q, &r1);
    EXPECT_OK(&r1);
    assert_null(cl_alloc(&c));
    fx->io.now_ms += 1 * SEC;
    xchg(&c, &q, &r2);
    EXPECT_OK(&r2);
    assert_int_equal(r1.len, r2.len);
    assert_memory_equal(r1.buf, r2.buf, r1.len);
    assert_int_equal(fx->s.c.v[SRV_C_allocations_deleted], 1);
    fx_finish(fx);
}

static void test_srv_delete_releases_everything(void **state)
{
    struct fixture *fx = *state;
    struct client c;
    struct allocation *a = dual_allocation(fx, &c);
    union stun_addr pa = mkaddr("8.8.8.8", 5000);
    struct reply r;
    cl_bind(&c, 0x4000, &pa, &r);
    EXPECT_OK(&r);
    uint16_t p4 = addr_port(&a->relay[0].addr), p6 = addr_port(&a->relay[1].addr);
    struct srv_counters before = fx->s.c;
    srv_delete(&fx->s, a, "closed");
    assert_int_equal(fx->s.c.v[SRV_C_allocations_deleted] - before.v[SRV_C_allocations_deleted], 1);
    assert_string_equal(fake_io_last_event(&fx->io)->what, "closed");
    assert_null(cl_alloc(&c));
    assert_int_equal(fx->io.nopen, 0);
    assert_int_equal(fake_io_port_state(&fx->io, 0, p4), FAKE_PORT_FREE);
    assert_int_equal(fake_io_port_state(&fx->io, 1, p6), FAKE_PORT_FREE);
    assert_int_equal(fx->io.quota_total, 0);
    check_books(fx);
    send_chdata(&c, 0x4000, "x", 1, &r);
    assert_int_equal(D(&r, drop_no_allocation), 1);
    fx_finish(fx);
}

static void test_srv_free_releases_everything(void **state)
{
    struct fixture *fx = *state;
    fx_start(fx);
    struct client c[4];
    static const char *const users[] = {"alice", "alice", "bob", "bob"};
    static const char *const pws[] = {"alice-pw", "alice-pw", "bob-pw", "bob-pw"};
    for (int i = 0; i < 4; i++) {
        cl_init(&c[i], fx, i == 3 ? SRV_TLS : SRV_UDP, "192.0.2.77", (uint16_t)(40000 + i),
                users[i], pws[i]);
        cl_login(&c[i]);
    }
    cl_allocate(&c[0]);
    uint16_t port;
    reserve_pair(&c[1], &port);
    struct req q;
    struct reply r;
    req_allocate(&c[2], &q);
    stun_enc_u8_rffu(&q.e, STUN_ATTR_ADDITIONAL_ADDRESS_FAMILY, STUN_FAMILY_IPV6);
    send_signed(&c[2], &q, &r);
    EXPECT_OK(&r);
    cl_allocate(&c[3]);
    union stun_addr pa = mkaddr("8.8.8.8", 5000);
    for (int i = 0; i < 4; i++) {
        cl_bind(&c[i], 0x4000, &pa, &r);
        EXPECT_OK(&r);
    }
    assert_int_equal(fx->io.nopen, 5);
    assert_int_equal(fake_io_quota_count(&fx->io, "alice"), 2);
    assert_int_equal(fake_io_quota_count(&fx->io, "bob"), 2);
    fx_finish(fx); /* srv_free: every socket closed, every port and quota unit back */
    assert_int_equal(fake_io_count_events(&fx->io, "closed"), 4);
}

int main(int argc, char **argv)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_allocation_expires_at_lifetime),
        T(test_refreshed_allocation_lives_on),
        T(test_refresh_after_lifetime_before_sweep),
        T(test_partial_delete_forgets_that_family),
        T(test_retransmit_refresh),
        T(test_retransmit_refresh_delete),
        T(test_srv_delete_releases_everything),
        T(test_srv_free_releases_everything),
    };
#undef T
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
