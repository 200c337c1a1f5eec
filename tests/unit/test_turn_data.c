/* test_turn_data.c: Send and Data indications and ChannelData (RFC 8656 sections 10, 11 and
 * 12.5): DONT-FRAGMENT, client data that goes nowhere, the per-user bandwidth limit. One test
 * alone: pass its name (a glob) as argv[1]. */
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

static struct auth_creds bw_inner;

static int bw_lookup(void *ctx, const uint8_t *name, size_t len, bool uh, struct auth_user *out)
{
    int rc = bw_inner.lookup(ctx, name, len, uh, out);
    if (rc == 0) out->bandwidth_bps = 1000; /* as the credential store would say */
    return rc;
}

static void test_bandwidth_limit(void **state)
{
    struct fixture *fx = *state;
    bw_inner = fx->creds;
    fx->creds.lookup = bw_lookup;
    struct client c;
    struct allocation *a = one_allocation(fx, &c);
    union stun_addr peer = mkaddr("8.8.8.8", 5000);
    struct reply r;
    cl_bind(&c, 0x4000, &peer, &r);
    EXPECT_OK(&r);
    uint8_t data[600] = {0};
    send_chdata(&c, 0x4000, data, sizeof(data), &r);
    assert_non_null(r.fwd.a); /* the first second's 1000 bytes cover it */
    send_chdata(&c, 0x4000, data, sizeof(data), &r);
    assert_null(r.fwd.a);
    assert_int_equal(D(&r, drop_bandwidth), 1);
    fx->io.now_ms += 1000;
    send_chdata(&c, 0x4000, data, sizeof(data), &r);
    assert_non_null(r.fwd.a);
    /* The other direction has its own bucket. */
    uint8_t out[1024];
    assert_true(peer_in(fx, a, 0, &peer, data, sizeof(data), out, sizeof(out)) > 0);
    assert_int_equal(peer_in(fx, a, 0, &peer, data, sizeof(data), out, sizeof(out)), 0);
    assert_int_equal(fx->s.c.v[SRV_C_drop_bandwidth], 2);
    fx_finish(fx);
}

static void test_dont_fragment(void **state)
{
    struct fixture *fx = *state;
    fx_start(fx);
    struct client c, d;
    cl_init(&c, fx, SRV_UDP, "192.0.2.77", 40000, "alice", "alice-pw");
    cl_init(&d, fx, SRV_UDP, "192.0.2.77", 40001, "alice", "alice-pw");
    cl_login(&c);
    cl_login(&d);
    struct req q;
    struct reply r;
    req_allocate(&c, &q);
    stun_enc_attr(&q.e, STUN_ATTR_DONT_FRAGMENT, NULL, 0);
    send_signed(&c, &q, &r);
    EXPECT_OK(&r);
    struct allocation *a = cl_alloc(&c);
    assert_true(a->dont_fragment);
    struct allocation *b = cl_allocate(&d);
    assert_false(b->dont_fragment);

    union stun_addr pa = mkaddr("8.8.8.8", 5000);
    cl_bind(&c, 0x4000, &pa, &r);
    EXPECT_OK(&r);
    cl_bind(&d, 0x4000, &pa, &r);
    EXPECT_OK(&r);
    /* ChannelData has no attributes: the allocation's setting applies. */
    send_chdata(&c, 0x4000, "df", 2, &r);
    expect_fwd(&r, a, 0, &pa, "df", 2, true);
    send_chdata(&d, 0x4000, "df", 2, &r);
    expect_fwd(&r, b, 0, &pa, "df", 2, false);
    /* A Send indication says for itself. */
    send_ind(&d, &pa, "df", 2, true, &r);
    expect_fwd(&r, b, 0, &pa, "df", 2, true);
    send_ind(&d, &pa, "df", 2, false, &r);
    expect_fwd(&r, b, 0, &pa, "df", 2, false);
    fx_finish(fx);
}

static void test_client_data_drops(void **state)
{
    struct fixture *fx = *state;
    fx_start(fx);
    struct client c, none;
    cl_init(&c, fx, SRV_UDP, "192.0.2.77", 40000, "alice", "alice-pw");
    cl_init(&none, fx, SRV_UDP, "192.0.2.78", 40000, "alice", "alice-pw");
    cl_login(&c);
    cl_allocate(&c);
    union stun_addr pa = mkaddr("8.8.8.8", 5000);
    struct reply r;
    cl_permit(&c, &pa, 1, &r);
    EXPECT_OK(&r);

    send_ind(&none, &pa, "x", 1, false, &r);
    assert_int_equal(D(&r, drop_no_allocation), 1);
    send_chdata(&none, 0x4000, "x", 1, &r);
    assert_int_equal(D(&r, drop_no_allocation), 1);
    send_chdata(&c, 0x4000, "x", 1, &r);
    assert_int_equal(D(&r, drop_no_channel), 1);

    struct req q;
    req_begin(&c, &q, STUN_SEND, STUN_INDICATION); /* no DATA */
    stun_enc_xor_addr(&q.e, STUN_ATTR_XOR_PEER_ADDRESS, &pa);
    req_done(&c, &q);
    handle_raw(&c, q.buf, q.len, &r);
    assert_int_equal(D(&r, drop_send_incomplete), 1);
    req_begin(&c, &q, STUN_SEND, STUN_INDICATION); /* no XOR-PEER-ADDRESS */
    stun_enc_attr(&q.e, STUN_ATTR_DATA, "x", 1);
    req_done(&c, &q);
    handle_raw(&c, q.buf, q.len, &r);
    assert_int_equal(D(&r, drop_send_incomplete), 1);

    union stun_addr p6 = mkaddr("2606:4700::1111", 5000), other = mkaddr("1.1.1.1", 5000);
    union stun_addr port0 = mkaddr("8.8.8.8", 0);
    send_ind(&c, &p6, "x", 1, false, &r);
    assert_int_equal(D(&r, drop_send_family), 1);
    send_ind(&c, &other, "x", 1, false, &r);
    assert_int_equal(D(&r, drop_no_permission), 1);
    send_ind(&c, &port0, "x", 1, false, &r); /* permitted IP, but nothing is sent to port 0 */
    assert_int_equal(D(&r, drop_policy), 1);
    assert_null(r.fwd.a);
    fx_finish(fx);
}

int main(int argc, char **argv)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_bandwidth_limit),
        T(test_dont_fragment),
        T(test_client_data_drops),
    };
#undef T
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
