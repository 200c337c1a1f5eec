/* test_turn_channel.c: ChannelBind (RFC 8656 section 12): channel expiry after 600 s and the
 * hold-down, rebind, data without a permission, 400 for missing attributes, number ranges and a
 * channel bound to another peer. One test alone: pass its name (a glob) as argv[1]. */
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

static void test_channel_expires_after_600s_and_is_held(void **state)
{
    struct fixture *fx = *state;
    fx_start(fx);
    struct client c;
    cl_init(&c, fx, SRV_UDP, "192.0.2.77", 40000, "alice", "alice-pw");
    cl_login(&c);
    struct req q;
    struct reply r;
    req_allocate(&c, &q);
    stun_enc_u32(&q.e, STUN_ATTR_LIFETIME, 3600);
    send_signed(&c, &q, &r);
    EXPECT_OK(&r);
    struct allocation *a = cl_alloc(&c);
    union stun_addr pa = mkaddr("8.8.8.8", 5000), pb = mkaddr("1.1.1.1", 5000);
    uint8_t out[OUTCAP];

    cl_bind(&c, 0x4001, &pa, &r);
    EXPECT_OK(&r);
    /* Keep the permission alive on its own, so that only the channel's expiry shows. */
    fx->io.now_ms = T0 + 250 * SEC;
    cl_permit(&c, &pa, 1, &r);
    EXPECT_OK(&r);
    fx->io.now_ms = T0 + 500 * SEC;
    cl_permit(&c, &pa, 1, &r);
    EXPECT_OK(&r);

    fx->io.now_ms = T0 + 600 * SEC - 1;
    send_chdata(&c, 0x4001, "abc", 3, &r);
    expect_fwd(&r, a, 0, &pa, "abc", 3, false);
    size_t n = peer_in(fx, a, 0, &pa, "def", 3, out, sizeof(out));
    expect_chdata(out, n, 0x4001, "def", 3, false);

    fx->io.now_ms = T0 + 600 * SEC;
    send_chdata(&c, 0x4001, "abc", 3, &r);
    assert_null(r.fwd.a);
    assert_int_equal(D(&r, drop_no_channel), 1);
    n = peer_in(fx, a, 0, &pa, "def", 3, out, sizeof(out));
    expect_data_indication(out, n, &pa, "def", 3);

    /* The hold: for 5 minutes neither the number nor the peer may be bound elsewhere. */
    static const uint64_t during[] = {600 * SEC, 750 * SEC, 900 * SEC - 1};
    for (size_t i = 0; i < sizeof(during) / sizeof(during[0]); i++) {
        fx->io.now_ms = T0 + during[i];
        cl_bind(&c, 0x4001, &pb, &r);
        EXPECT_ERR(&r, 400, true);
        cl_bind(&c, 0x4002, &pa, &r);
        EXPECT_ERR(&r, 400, true);
    }
    fx->io.now_ms = T0 + 900 * SEC;
    cl_bind(&c, 0x4001, &pb, &r);
    EXPECT_OK(&r);
    cl_bind(&c, 0x4002, &pa, &r);
    EXPECT_OK(&r);
    send_chdata(&c, 0x4001, "abc", 3, &r);
    expect_fwd(&r, a, 0, &pb, "abc", 3, false);
    send_chdata(&c, 0x4002, "abc", 3, &r);
    expect_fwd(&r, a, 0, &pa, "abc", 3, false);
    fx_finish(fx);
}

static void test_channel_rebind_refreshes(void **state)
{
    struct fixture *fx = *state;
    fx_start(fx);
    struct client c;
    cl_init(&c, fx, SRV_UDP, "192.0.2.77", 40000, "alice", "alice-pw");
    cl_login(&c);
    struct req q;
    struct reply r;
    req_allocate(&c, &q);
    stun_enc_u32(&q.e, STUN_ATTR_LIFETIME, 3600);
    send_signed(&c, &q, &r);
    EXPECT_OK(&r);
    struct allocation *a = cl_alloc(&c);
    union stun_addr pa = mkaddr("8.8.8.8", 5000);

    cl_bind(&c, 0x4001, &pa, &r);
    EXPECT_OK(&r);
    fx->io.now_ms = T0 + 500 * SEC;
    cl_bind(&c, 0x4001, &pa, &r); /* same number, same peer: a refresh */
    EXPECT_OK(&r);
    assert_int_equal(a->nchans, 1);
    fx->io.now_ms = T0 + 750 * SEC;
    cl_permit(&c, &pa, 1, &r);
    EXPECT_OK(&r);
    fx->io.now_ms = T0 + 1000 * SEC; /* the first binding alone would have ended at 600 s */
    send_chdata(&c, 0x4001, "abc", 3, &r);
    expect_fwd(&r, a, 0, &pa, "abc", 3, false);
    fx->io.now_ms = T0 + 1100 * SEC;
    send_chdata(&c, 0x4001, "abc", 3, &r);
    assert_null(r.fwd.a);
    assert_int_equal(D(&r, drop_no_channel), 1);
    fx_finish(fx);
}

/* A channel outlives the permission ChannelBind installed: its data is then dropped both ways
 * until a rebind refreshes both (RFC 8656 12: the permission is not refreshed by data). */
static void test_channel_without_permission_drops(void **state)
{
    struct fixture *fx = *state;
    fx_start(fx);
    struct client c;
    cl_init(&c, fx, SRV_UDP, "192.0.2.77", 40000, "alice", "alice-pw");
    cl_login(&c);
    struct allocation *a = cl_allocate(&c);
    union stun_addr pa = mkaddr("8.8.8.8", 5000);
    struct reply r;
    uint8_t out[OUTCAP];
    cl_bind(&c, 0x4000, &pa, &r);
    EXPECT_OK(&r);
    fx->io.now_ms = T0 + 299 * SEC;
    send_chdata(&c, 0x4000, "abc", 3, &r); /* data does not refresh the permission */
    expect_fwd(&r, a, 0, &pa, "abc", 3, false);
    fx->io.now_ms = T0 + 300 * SEC;
    send_chdata(&c, 0x4000, "abc", 3, &r);
    assert_null(r.fwd.a);
    assert_int_equal(D(&r, drop_no_permission), 1);
    assert_int_equal(peer_in(fx, a, 0, &pa, "def", 3, out, sizeof(out)), 0);
    cl_bind(&c, 0x4000, &pa, &r);
    EXPECT_OK(&r);
    send_chdata(&c, 0x4000, "abc", 3, &r);
    expect_fwd(&r, a, 0, &pa, "abc", 3, false);
    size_t n = peer_in(fx, a, 0, &pa, "def", 3, out, sizeof(out));
    expect_chdata(out, n, 0x4000, "def", 3, false);
    fx_finish(fx);
}

static void test_400_channel_bind_missing_attributes(void **state)
{
    struct fixture *fx = *state;
    struct client c;
    struct allocation *a = one_allocation(fx, &c);
    union stun_addr pa = mkaddr("8.8.8.8", 5000);
    struct req q;
    struct reply r;
    req_begin(&c, &q, STUN_CHANNEL_BIND, STUN_REQUEST);
    stun_enc_xor_addr(&q.e, STUN_ATTR_XOR_PEER_ADDRESS, &pa);
    send_signed(&c, &q, &r);
    EXPECT_ERR(&r, 400, true);
    req_begin(&c, &q, STUN_CHANNEL_BIND, STUN_REQUEST);
    stun_enc_channel(&q.e, 0x4000);
    send_signed(&c, &q, &r);
    EXPECT_ERR(&r, 400, true);
    req_begin(&c, &q, STUN_CHANNEL_BIND, STUN_REQUEST);
    send_signed(&c, &q, &r);
    EXPECT_ERR(&r, 400, true);
    /* Nothing was half-done. */
    assert_int_equal(a->nchans, 0);
    assert_int_equal(a->nperms, 0);
    fx_finish(fx);
}

static void test_400_channel_number_range_strict(void **state)
{
    struct fixture *fx = *state;
    struct client c;
    struct allocation *a = one_allocation(fx, &c);
    static const uint16_t bad[] = {0x0000, 0x3FFF, 0x5000, 0x7FFF, 0x8000, 0xFFFF};
    union stun_addr pa = mkaddr("8.8.8.8", 5000), pb = mkaddr("8.8.4.4", 5000);
    struct reply r;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cl_bind(&c, bad[i], &pa, &r);
        EXPECT_ERR(&r, 400, true);
    }
    assert_int_equal(a->nchans, 0);
    cl_bind(&c, 0x4000, &pa, &r);
    EXPECT_OK(&r);
    cl_bind(&c, 0x4FFF, &pb, &r);
    EXPECT_OK(&r);
    fx_finish(fx);
}

static void test_channel_number_range_relaxed(void **state)
{
    struct fixture *fx = *state;
    fx->opt.strict_channels = false;
    struct client c;
    struct allocation *a = one_allocation(fx, &c);
    union stun_addr pa = mkaddr("8.8.8.8", 5000), pb = mkaddr("8.8.4.4", 5000);
    struct reply r;
    cl_bind(&c, 0x3FFF, &pa, &r);
    EXPECT_ERR(&r, 400, true);
    cl_bind(&c, 0x8000, &pa, &r);
    EXPECT_ERR(&r, 400, true);
    cl_bind(&c, 0x5000, &pa, &r);
    EXPECT_OK(&r);
    cl_bind(&c, 0x7FFF, &pb, &r);
    EXPECT_OK(&r);
    send_chdata(&c, 0x7FFF, "abc", 3, &r);
    expect_fwd(&r, a, 0, &pb, "abc", 3, false);
    fx_finish(fx);
}

static void test_400_channel_bound_to_another_peer(void **state)
{
    struct fixture *fx = *state;
    struct client c;
    struct allocation *a = one_allocation(fx, &c);
    union stun_addr pa = mkaddr("8.8.8.8", 5000), pb = mkaddr("1.1.1.1", 5000);
    union stun_addr pa2 = mkaddr("8.8.8.8", 5001);
    struct reply r;
    cl_bind(&c, 0x4000, &pa, &r);
    EXPECT_OK(&r);
    cl_bind(&c, 0x4000, &pb, &r); /* the number is taken */
    EXPECT_ERR(&r, 400, true);
    cl_bind(&c, 0x4001, &pa, &r); /* the peer is taken */
    EXPECT_ERR(&r, 400, true);
    cl_bind(&c, 0x4000, &pa, &r); /* same pair: fine */
    EXPECT_OK(&r);
    cl_bind(&c, 0x4001, &pa2, &r); /* same IP, other port: another transport address */
    EXPECT_OK(&r);
    assert_int_equal(a->nchans, 2);
    fx_finish(fx);
}

int main(int argc, char **argv)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_channel_expires_after_600s_and_is_held), T(test_channel_rebind_refreshes),
        T(test_channel_without_permission_drops),       T(test_400_channel_bind_missing_attributes),
        T(test_400_channel_number_range_strict),        T(test_channel_number_range_relaxed),
        T(test_400_channel_bound_to_another_peer),
    };
#undef T
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
