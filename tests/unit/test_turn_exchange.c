/* test_turn_exchange.c: the whole exchange (RFC 8656 over RFC 8489): 401 challenge, Allocate,
 * CreatePermission, ChannelBind, Send and Data indications, ChannelData both ways, Refresh and
 * delete, over UDP, TCP and TLS, IPv4 and IPv6, MD5, SHA-256 and USERHASH, with and without
 * FINGERPRINT. One test alone: pass its name (a glob) as argv[1]. */
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

static void full_exchange(struct fixture *fx, const struct variant *v)
{
    static const char *const peers4[] = {"8.8.8.8", "1.1.1.1", "9.9.9.9", "4.4.4.4"};
    static const char *const peers6[] = {"2606:4700::1111", "2001:4860:4860::8888", "2620:fe::fe",
                                         "2606:4700::1001"};
    const char *const *ips = v->ipv6 ? peers6 : peers4;
    const bool stream = v->transport != SRV_UDP;
    fx_start(fx);
    struct client c;
    cl_init(&c, fx, v->transport, v->ipv6 ? "2001:db8:1::77" : "192.0.2.77", 40000, "alice",
            "alice-pw");
    c.sha256 = v->sha256;
    c.userhash = v->userhash;
    c.fingerprint = v->fingerprint;
    struct req q;
    struct reply r;

    /* Allocate without credentials: 401 with REALM, NONCE, PASSWORD-ALGORITHMS, no integrity. */
    req_allocate(&c, &q);
    req_done(&c, &q);
    xchg(&c, &q, &r);
    EXPECT_ERR(&r, 401, false);
    assert_int_equal(fx->io.open_calls, 0);
    assert_int_equal(fx->io.quota_total, 0);
    assert_int_equal(fx->s.allocs.count, 0);
    cl_learn(&c, &r);

    /* Signed: success with the relayed address, LIFETIME and XOR-MAPPED-ADDRESS. */
    req_allocate(&c, &q);
    if (v->ipv6) stun_enc_u8_rffu(&q.e, STUN_ATTR_REQUESTED_ADDRESS_FAMILY, STUN_FAMILY_IPV6);
    send_signed(&c, &q, &r);
    EXPECT_OK(&r);
    assert_int_equal(reply_count(&r, STUN_ATTR_XOR_RELAYED_ADDRESS), 1);
    union stun_addr relayed = expect_relayed(fx, &r, 0, v->ipv6 ? 1 : 0);
    assert_int_equal(relayed.sa.sa_family, v->ipv6 ? AF_INET6 : AF_INET);
    assert_int_equal(reply_u32(&r, STUN_ATTR_LIFETIME), 600);
    union stun_addr mapped = reply_xaddr(&r, STUN_ATTR_XOR_MAPPED_ADDRESS, 0);
    assert_addr(&mapped, &c.t.client);
    assert_null(stun_find(&r.m, STUN_ATTR_RESERVATION_TOKEN));
    struct allocation *a = cl_alloc(&c);
    assert_non_null(a);
    assert_int_equal(a->nrelay, 1);
    assert_addr(&a->relay[0].addr, &relayed);
    assert_ptr_equal(a->client_io, &c);
    assert_string_equal(a->username, "alice");
    assert_int_equal(a->expires_ms, fx->io.now_ms + 600 * SEC);
    assert_int_equal(D(&r, allocate_success), 1);
    assert_int_equal(D(&r, allocations_created), 1);
    assert_int_equal(fake_io_quota_count(&fx->io, "alice"), 1);
    assert_string_equal(fake_io_last_event(&fx->io)->what, "allocated");
    check_books(fx);

    /* CreatePermission for three peers at once (the port part is ignored). */
    union stun_addr perm[3] = {mkaddr(ips[0], 1), mkaddr(ips[1], 2), mkaddr(ips[2], 3)};
    cl_permit(&c, perm, 3, &r);
    EXPECT_OK(&r);
    assert_int_equal(D(&r, permission_success), 1);
    assert_int_equal(a->nperms, 3);
    for (int i = 0; i < 3; i++)
        assert_true(alloc_permitted(a, &perm[i], fx->io.now_ms));

    /* ChannelBind 0x4000 to the first peer. */
    union stun_addr chpeer = mkaddr(ips[0], 5000);
    cl_bind(&c, 0x4000, &chpeer, &r);
    EXPECT_OK(&r);
    assert_int_equal(D(&r, channel_bind_success), 1);

    /* A Send indication is forwarded to its XOR-PEER-ADDRESS with its DATA. */
    static const char hello[] = "hello, peer";
    union stun_addr p1 = mkaddr(ips[1], 6000);
    send_ind(&c, &p1, hello, sizeof(hello) - 1, false, &r);
    expect_fwd(&r, a, 0, &p1, hello, sizeof(hello) - 1, false);
    assert_int_equal(D(&r, send_indication), 1);

    /* ChannelData on the bound channel goes to the channel's peer. */
    static const char seven[] = "abcdefg";
    send_chdata(&c, 0x4000, seven, 7, &r);
    expect_fwd(&r, a, 0, &chpeer, seven, 7, false);
    assert_int_equal(D(&r, channel_to_peer), 1);
    assert_int_equal(D(&r, rx_channeldata), 1);

    /* From the channel's peer: ChannelData, padded to 4 on a stream. */
    static const char ten[] = "0123456789";
    uint8_t out[OUTCAP];
    struct srv_counters before = fx->s.c;
    size_t n = peer_in(fx, a, 0, &chpeer, ten, 10, out, sizeof(out));
    expect_chdata(out, n, 0x4000, ten, 10, stream);
    assert_int_equal(
        fx->s.c.v[SRV_C_peer_to_client_channel] - before.v[SRV_C_peer_to_client_channel], 1);

    /* From a permitted peer without a channel: a Data indication. The channel's peer IP at
     * another port is such a peer too (channels bind transport addresses). */
    union stun_addr p1b = mkaddr(ips[1], 7000), p0b = mkaddr(ips[0], 5001);
    n = peer_in(fx, a, 0, &p1b, ten, 10, out, sizeof(out));
    expect_data_indication(out, n, &p1b, ten, 10);
    n = peer_in(fx, a, 0, &p0b, ten, 3, out, sizeof(out));
    expect_data_indication(out, n, &p0b, ten, 3);
    assert_int_equal(fx->s.c.v[SRV_C_peer_to_client_data] - before.v[SRV_C_peer_to_client_data], 2);

    /* From a peer without a permission: dropped. */
    union stun_addr stranger = mkaddr(ips[3], 5000);
    assert_int_equal(peer_in(fx, a, 0, &stranger, ten, 10, out, sizeof(out)), 0);
    assert_int_equal(
        fx->s.c.v[SRV_C_drop_peer_no_permission] - before.v[SRV_C_drop_peer_no_permission], 1);

    /* Refresh: 1200 is granted, above the maximum is clamped, below the default is raised,
     * none is the default (RFC 8656 8.2). */
    static const struct {
        long ask;
        uint32_t get;
    } lifetimes[] = {{1200, 1200}, {7200, 3600}, {60, 600}, {-1, 600}, {3600, 3600}, {601, 601}};
    for (size_t i = 0; i < sizeof(lifetimes) / sizeof(lifetimes[0]); i++) {
        fx->io.now_ms += 10 * SEC;
        cl_refresh(&c, lifetimes[i].ask, &r);
        EXPECT_OK(&r);
        assert_int_equal(reply_u32(&r, STUN_ATTR_LIFETIME), lifetimes[i].get);
        assert_int_equal(a->expires_ms, fx->io.now_ms + lifetimes[i].get * SEC);
        assert_int_equal(D(&r, refresh_success), 1);
    }

    /* Refresh LIFETIME 0 deletes: socket closed, port and quota given back. */
    unsigned closes = fx->io.close_calls;
    cl_refresh(&c, 0, &r);
    EXPECT_OK(&r);
    assert_int_equal(reply_u32(&r, STUN_ATTR_LIFETIME), 0);
    assert_int_equal(D(&r, delete_success), 1);
    assert_int_equal(D(&r, allocations_deleted), 1);
    assert_int_equal(D(&r, refresh_success), 0);
    assert_int_equal(fx->io.close_calls, closes + 1);
    assert_int_equal(fx->io.nopen, 0);
    assert_int_equal(fake_io_port_state(&fx->io, v->ipv6 ? 1 : 0, addr_port(&relayed)),
                     FAKE_PORT_FREE);
    assert_int_equal(fake_io_quota_count(&fx->io, "alice"), 0);
    assert_string_equal(fake_io_last_event(&fx->io)->what, "deleted");
    assert_null(cl_alloc(&c));

    /* Nothing left to refresh. */
    cl_refresh(&c, -1, &r);
    EXPECT_ERR(&r, 437, true);
    fx_finish(fx);
}

static void test_full_exchange_md5_udp(void **state)
{
    full_exchange(*state, &(struct variant){.transport = SRV_UDP});
}

static void test_full_exchange_sha256_tcp_fingerprint(void **state)
{
    full_exchange(*state,
                  &(struct variant){.transport = SRV_TCP, .sha256 = true, .fingerprint = true});
}

static void test_full_exchange_userhash_md5_fingerprint(void **state)
{
    full_exchange(*state,
                  &(struct variant){.transport = SRV_UDP, .userhash = true, .fingerprint = true});
}

static void test_full_exchange_userhash_sha256_ipv6(void **state)
{
    full_exchange(
        *state,
        &(struct variant){.transport = SRV_UDP, .ipv6 = true, .sha256 = true, .userhash = true});
}

static void test_full_exchange_tls_ipv6_fingerprint(void **state)
{
    full_exchange(*state,
                  &(struct variant){.transport = SRV_TLS, .ipv6 = true, .fingerprint = true});
}

int main(int argc, char **argv)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_full_exchange_md5_udp),
        T(test_full_exchange_sha256_tcp_fingerprint),
        T(test_full_exchange_userhash_md5_fingerprint),
        T(test_full_exchange_userhash_sha256_ipv6),
        T(test_full_exchange_tls_ipv6_fingerprint),
    };
#undef T
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
