/* test_turn_allocate.c: Allocate (RFC 8656 section 7): lifetimes, attribute checks (400, 437,
 * 440, 442), quotas (486), port and socket failures (508), retransmissions answered from the
 * transaction cache, EVEN-PORT and RESERVATION-TOKEN (7.2), dual allocations (RFC 8656 section 7
 * with ADDITIONAL-ADDRESS-FAMILY). One test alone: pass its name (a glob) as argv[1]. */
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

/* Allocate computes its lifetime as Refresh does, except that LIFETIME 0 cannot delete what
 * does not exist yet: it gets the default (RFC 8656 7.2). */
static void test_allocate_lifetime(void **state)
{
    struct fixture *fx = *state;
    fx_start(fx);
    static const struct {
        long ask;
        uint32_t get;
    } cases[] = {{0, 600},     {1, 600},     {599, 600},         {601, 601},
                 {3600, 3600}, {3601, 3600}, {0xFFFFFFFFl, 3600}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct client c;
        cl_init(&c, fx, SRV_UDP, "192.0.2.77", (uint16_t)(40000 + i), "alice", "alice-pw");
        cl_login(&c);
        struct req q;
        struct reply r;
        req_allocate(&c, &q);
        stun_enc_u32(&q.e, STUN_ATTR_LIFETIME, (uint32_t)cases[i].ask);
        send_signed(&c, &q, &r);
        EXPECT_OK(&r);
        assert_int_equal(reply_u32(&r, STUN_ATTR_LIFETIME), cases[i].get);
        assert_int_equal(cl_alloc(&c)->expires_ms, fx->io.now_ms + cases[i].get * SEC);
    }
    assert_int_equal(fx->s.allocs.count, sizeof(cases) / sizeof(cases[0]));
    fx_finish(fx);
}

static void test_400_allocate_without_requested_transport(void **state)
{
    struct fixture *fx = *state;
    fx_start(fx);
    struct client c;
    cl_init(&c, fx, SRV_UDP, "192.0.2.77", 40000, "alice", "alice-pw");
    cl_login(&c);
    struct req q;
    struct reply r;
    req_begin(&c, &q, STUN_ALLOCATE, STUN_REQUEST);
    stun_enc_u32(&q.e, STUN_ATTR_LIFETIME, 600);
    send_signed(&c, &q, &r);
    EXPECT_ERR(&r, 400, true);
    assert_int_equal(fx->io.open_calls, 0);
    assert_int_equal(fx->io.quota_total, 0);
    assert_int_equal(fx->s.allocs.count, 0);
    fx_finish(fx);
}

static void test_400_allocate_attribute_combinations(void **state)
{
    struct fixture *fx = *state;
    fx_start(fx);
    struct client c;
    cl_init(&c, fx, SRV_UDP, "192.0.2.77", 40000, "alice", "alice-pw");
    cl_login(&c);
    struct req q;
    struct reply r;
    /* RESERVATION-TOKEN with EVEN-PORT, REQUESTED- or ADDITIONAL-ADDRESS-FAMILY (RFC 8656 7.2
     * step 5), both address family attributes (step 6), ADDITIONAL-ADDRESS-FAMILY IPv4 (9). */
    for (int k = 0; k < 6; k++) {
        req_allocate(&c, &q);
        if (k < 3) stun_enc_u64(&q.e, STUN_ATTR_RESERVATION_TOKEN, 0x1234567890abcdefull);
        if (k == 0) stun_enc_even_port(&q.e, false);
        if (k == 1 || k == 3)
            stun_enc_u8_rffu(&q.e, STUN_ATTR_REQUESTED_ADDRESS_FAMILY, STUN_FAMILY_IPV4);
        if (k == 2 || k == 3)
            stun_enc_u8_rffu(&q.e, STUN_ATTR_ADDITIONAL_ADDRESS_FAMILY, STUN_FAMILY_IPV6);
        if (k == 4) stun_enc_u8_rffu(&q.e, STUN_ATTR_ADDITIONAL_ADDRESS_FAMILY, STUN_FAMILY_IPV4);
        if (k == 5) { /* RFC 8656 7.2 step 5: the token check comes first even when invalid */
            stun_enc_u64(&q.e, STUN_ATTR_RESERVATION_TOKEN, 0);
            stun_enc_u8_rffu(&q.e, STUN_ATTR_REQUESTED_ADDRESS_FAMILY, STUN_FAMILY_IPV6);
        }
        send_signed(&c, &q, &r);
        EXPECT_ERR(&r, 400, true);
    }
    assert_int_equal(fx->io.open_calls, 0);
    assert_int_equal(fx->io.quota_total, 0);
    assert_int_equal(fx->s.allocs.count, 0);
    fx_finish(fx);
}

/* RFC 8656 7.2 step 8: EVEN-PORT with the R bit together with ADDITIONAL-ADDRESS-FAMILY is a
 * 400 (a reservation is for one address). Without the R bit the dual allocation is fine. */
static void test_400_even_port_reserve_with_additional_family(void **state)
{
    struct fixture *fx = *state;
    fx_start(fx);
    struct client c, d;
    cl_init(&c, fx, SRV_UDP, "192.0.2.77", 40000, "alice", "alice-pw");
    cl_init(&d, fx, SRV_UDP, "192.0.2.78", 40000, "alice", "alice-pw");
    cl_login(&c);
    cl_login(&d);
    struct req q;
    struct reply r;
    req_allocate(&c, &q);
    stun_enc_even_port(&q.e, false);
    stun_enc_u8_rffu(&q.e, STUN_ATTR_ADDITIONAL_ADDRESS_FAMILY, STUN_FAMILY_IPV6);
    send_signed(&c, &q, &r);
    EXPECT_OK(&r);
    assert_int_equal(reply_count(&r, STUN_ATTR_XOR_RELAYED_ADDRESS), 2);
    assert_int_equal(addr_port(&cl_alloc(&c)->relay[0].addr) % 2, 0);

    req_allocate(&d, &q);
    stun_enc_even_port(&q.e, true);
    stun_enc_u8_rffu(&q.e, STUN_ATTR_ADDITIONAL_ADDRESS_FAMILY, STUN_FAMILY_IPV6);
    send_signed(&d, &q, &r);
    EXPECT_ERR(&r, 400, true);
    assert_null(cl_alloc(&d));
    fx_finish(fx);
}

static void test_437_allocation_mismatch(void **state)
{
    struct fixture *fx = *state;
    fx_start(fx);
    struct client c;
    cl_init(&c, fx, SRV_UDP, "192.0.2.77", 40000, "alice", "alice-pw");
    cl_login(&c);
    union stun_addr pa = mkaddr("8.8.8.8", 5000);
    struct reply r;
    cl_refresh(&c, -1, &r);
    EXPECT_ERR(&r, 437, true);
    cl_refresh(&c, 0, &r);
    EXPECT_ERR(&r, 437, true);
    cl_permit(&c, &pa, 1, &r);
    EXPECT_ERR(&r, 437, true);
    cl_bind(&c, 0x4000, &pa, &r);
    EXPECT_ERR(&r, 437, true);
    cl_allocate(&c);
    /* A second Allocate (a new transaction) on the same 5-tuple. */
    struct req q;
    req_allocate(&c, &q);
    send_signed(&c, &q, &r);
    EXPECT_ERR(&r, 437, true);
    assert_int_equal(fx->s.c.v[SRV_C_allocations_created], 1);
    assert_int_equal(fx->io.open_calls, 1);
    assert_int_equal(fake_io_quota_count(&fx->io, "alice"), 1);
    /* The same client over TCP is another 5-tuple. */
    struct client t;
    cl_init(&t, fx, SRV_TCP, "192.0.2.77", 40000, "alice", "alice-pw");
    cl_login(&t);
    cl_allocate(&t);
    fx_finish(fx);
}

static void test_440_address_family_not_supported(void **state)
{
    struct fixture *fx = *state;
    fx->opt.nrelay_addrs = 1; /* IPv4 relay only */
    fx_start(fx);
    struct client c;
    cl_init(&c, fx, SRV_UDP, "192.0.2.77", 40000, "alice", "alice-pw");
    cl_login(&c);
    struct req q;
    struct reply r;
    req_allocate(&c, &q);
    stun_enc_u8_rffu(&q.e, STUN_ATTR_REQUESTED_ADDRESS_FAMILY, 0x03);
    send_signed(&c, &q, &r);
    EXPECT_ERR(&r, 440, true);
    req_allocate(&c, &q);
    stun_enc_u8_rffu(&q.e, STUN_ATTR_REQUESTED_ADDRESS_FAMILY, STUN_FAMILY_IPV6);
    send_signed(&c, &q, &r);
    EXPECT_ERR(&r, 440, true);
    assert_int_equal(fx->io.quota_total, 0);
    assert_int_equal(fx->io.open_calls, 0);
    cl_allocate(&c);
    req_refresh(&c, &q, -1);
    stun_enc_u8_rffu(&q.e, STUN_ATTR_REQUESTED_ADDRESS_FAMILY, 0x03);
    send_signed(&c, &q, &r);
    EXPECT_ERR(&r, 440, true);
    fx_finish(fx);
}

/* 441 is for non-Allocate requests (RFC 8656 5); an Allocate on a 5-tuple in use is 437
 * whoever sends it (7.2 step 2), so that the client picks another 5-tuple rather than
 * concluding that its credentials are bad. */
static void test_437_allocate_by_other_user_on_used_tuple(void **state)
{
    struct fixture *fx = *state;
    struct client c, b;
    one_allocation(fx, &c);
    cl_init(&b, fx, SRV_UDP, "192.0.2.77", 40000, "bob", "bob-pw");
    cl_login(&b);
    struct req q;
    struct reply r;
    req_allocate(&b, &q);
    send_signed(&b, &q, &r);
    EXPECT_ERR(&r, 437, true);
    assert_int_equal(fx->s.allocs.count, 1);
    assert_int_equal(fake_io_quota_count(&fx->io, "bob"), 0);
    fx_finish(fx);
}

static void test_442_unsupported_transport(void **state)
{
    struct fixture *fx = *state;
    fx_start(fx);
    struct client c;
    cl_init(&c, fx, SRV_UDP, "192.0.2.77", 40000, "alice", "alice-pw");
    cl_login(&c);
    static const uint8_t protos[] = {1, 132, 0, 255};
    for (size_t i = 0; i < sizeof(protos); i++) {
        struct req q;
        struct reply r;
        req_begin(&c, &q, STUN_ALLOCATE, STUN_REQUEST);
        stun_enc_u8_rffu(&q.e, STUN_ATTR_REQUESTED_TRANSPORT, protos[i]);
        send_signed(&c, &q, &r);
        EXPECT_ERR(&r, 442, true);
    }
    /* TCP (RFC 6062) over a UDP control connection: 400 (test_turn_tcp.c has the rest). */
    struct req q;
    struct reply r;
    req_begin(&c, &q, STUN_ALLOCATE, STUN_REQUEST);
    stun_enc_u8_rffu(&q.e, STUN_ATTR_REQUESTED_TRANSPORT, STUN_TRANSPORT_TCP);
    send_signed(&c, &q, &r);
    EXPECT_ERR(&r, 400, true);
    assert_int_equal(fx->s.allocs.count, 0);
    fx_finish(fx);
}

static void test_486_user_quota(void **state)
{
    struct fixture *fx = *state;
    fx->io.quota_user_max = 1;
    fx_start(fx);
    struct client a1, a2, b;
    cl_init(&a1, fx, SRV_UDP, "192.0.2.77", 40000, "alice", "alice-pw");
    cl_init(&a2, fx, SRV_UDP, "192.0.2.77", 40001, "alice", "alice-pw");
    cl_init(&b, fx, SRV_UDP, "192.0.2.77", 40002, "bob", "bob-pw");
    cl_login(&a1);
    cl_login(&a2);
    cl_login(&b);
    cl_allocate(&a1);
    struct req q;
    struct reply r;
    req_allocate(&a2, &q);
    send_signed(&a2, &q, &r);
    EXPECT_ERR(&r, 486, true);
    assert_int_equal(fx->io.open_calls, 1);
    cl_allocate(&b);
    /* Once alice's first allocation is gone, the second may be made. */
    cl_refresh(&a1, 0, &r);
    EXPECT_OK(&r);
    cl_allocate(&a2);
    fx_finish(fx);
}

static void test_486_total_quota(void **state)
{
    struct fixture *fx = *state;
    fx->io.quota_total_max = 2;
    fx_start(fx);
    struct client a1, b1, a2, b2;
    cl_init(&a1, fx, SRV_UDP, "192.0.2.77", 40000, "alice", "alice-pw");
    cl_init(&b1, fx, SRV_UDP, "192.0.2.77", 40001, "bob", "bob-pw");
    cl_init(&a2, fx, SRV_UDP, "192.0.2.77", 40002, "alice", "alice-pw");
    cl_init(&b2, fx, SRV_UDP, "192.0.2.77", 40003, "bob", "bob-pw");
    cl_login(&a1);
    cl_login(&b1);
    cl_login(&a2);
    cl_login(&b2);
    cl_allocate(&a1);
    cl_allocate(&b1);
    struct req q;
    struct reply r;
    req_allocate(&a2, &q);
    send_signed(&a2, &q, &r);
    EXPECT_ERR(&r, 486, true);
    req_allocate(&b2, &q);
    send_signed(&b2, &q, &r);
    EXPECT_ERR(&r, 486, true);
    assert_int_equal(fx->io.quota_total, 2);
    fx_finish(fx);
}

static void test_508_port_pool_exhausted(void **state)
{
    struct fixture *fx = *state;
    fx->port_max = PORT_MIN + 1; /* two ports per relay address */
    fx_start(fx);
    struct client c[3];
    for (int i = 0; i < 3; i++) {
        cl_init(&c[i], fx, SRV_UDP, "192.0.2.77", (uint16_t)(40000 + i), "alice", "alice-pw");
        cl_login(&c[i]);
    }
    cl_allocate(&c[0]);
    cl_allocate(&c[1]);
    struct req q;
    struct reply r;
    req_allocate(&c[2], &q);
    send_signed(&c[2], &q, &r);
    EXPECT_ERR(&r, 508, true);
    assert_int_equal(fx->io.quota_total, 2); /* the failed one gave its quota back */
    check_books(fx);
    cl_refresh(&c[0], 0, &r);
    EXPECT_OK(&r);
    cl_allocate(&c[2]);
    fx_finish(fx);
}

static void test_508_relay_open_error(void **state)
{
    struct fixture *fx = *state;
    fx->io.open_error = -EACCES;
    fx_start(fx);
    struct client c;
    cl_init(&c, fx, SRV_UDP, "192.0.2.77", 40000, "alice", "alice-pw");
    cl_login(&c);
    struct req q;
    struct reply r;
    req_allocate(&c, &q);
    send_signed(&c, &q, &r);
    EXPECT_ERR(&r, 508, true);
    assert_int_equal(fx->io.open_calls, 1); /* only -EADDRINUSE is worth another port */
    assert_int_equal(fx->io.quota_total, 0);
    assert_int_equal(fake_io_ports_in_state(&fx->io, FAKE_PORT_USED), 0);
    assert_null(cl_alloc(&c));
    fx->io.open_error = 0;
    cl_allocate(&c);
    fx_finish(fx);
}

static void test_508_invalid_reservation_token(void **state)
{
    struct fixture *fx = *state;
    fx_start(fx);
    struct client c;
    cl_init(&c, fx, SRV_UDP, "192.0.2.77", 40000, "alice", "alice-pw");
    cl_login(&c);
    struct req q;
    struct reply r;
    req_allocate(&c, &q);
    stun_enc_u64(&q.e, STUN_ATTR_RESERVATION_TOKEN, 0xdeadbeefcafef00dull);
    send_signed(&c, &q, &r);
    EXPECT_ERR(&r, 508, true);
    assert_int_equal(fx->io.open_calls, 0);
    assert_int_equal(fx->io.quota_total, 0);
    fx_finish(fx);
}

static void test_retransmit_allocate(void **state)
{
    struct fixture *fx = *state;
    fx_start(fx);
    struct client c;
    cl_init(&c, fx, SRV_UDP, "192.0.2.77", 40000, "alice", "alice-pw");
    cl_login(&c);
    struct req q;
    struct reply r1, r2;
    req_allocate(&c, &q);
    req_sign(&c, &q, 0);
    xchg(&c, &q, &r1);
    EXPECT_OK(&r1);
    fx->io.now_ms += 500;
    xchg(&c, &q, &r2);
    EXPECT_OK(&r2);
    assert_int_equal(r1.len, r2.len);
    assert_memory_equal(r1.buf, r2.buf, r1.len);
    assert_int_equal(fx->s.c.v[SRV_C_allocations_created], 1);
    assert_int_equal(fx->s.c.v[SRV_C_allocate_success], 1);
    assert_int_equal(fx->s.c.v[SRV_C_retransmit_answered], 1);
    assert_int_equal(fx->io.open_calls, 1);
    assert_int_equal(fake_io_quota_count(&fx->io, "alice"), 1);
    fx_finish(fx);
}

/* After the transaction cache forgot it (40 s), the retransmission still gets the original
 * answer byte for byte: the allocation keeps the answer of the transaction that made it. */
static void test_retransmit_allocate_after_cache_expiry(void **state)
{
    struct fixture *fx = *state;
    fx_start(fx);
    struct client c;
    cl_init(&c, fx, SRV_UDP, "192.0.2.77", 40000, "alice", "alice-pw");
    c.fingerprint = true;
    cl_login(&c);
    struct req q;
    struct reply r1, r2;
    req_allocate(&c, &q);
    req_sign(&c, &q, 0);
    xchg(&c, &q, &r1);
    EXPECT_OK(&r1);
    union stun_addr relayed = reply_xaddr(&r1, STUN_ATTR_XOR_RELAYED_ADDRESS, 0);
    fx->io.now_ms += 41 * SEC;
    xchg(&c, &q, &r2);
    EXPECT_OK(&r2);
    union stun_addr again = reply_xaddr(&r2, STUN_ATTR_XOR_RELAYED_ADDRESS, 0);
    assert_addr(&again, &relayed);
    assert_int_equal(r2.len, r1.len);
    assert_memory_equal(r2.buf, r1.buf, r1.len);
    assert_int_equal(reply_u32(&r2, STUN_ATTR_LIFETIME), 600);
    assert_int_equal(D(&r2, retransmit_answered), 1);
    assert_int_equal(D(&r2, allocations_created), 0);
    assert_int_equal(fx->s.c.v[SRV_C_allocations_created], 1);
    assert_int_equal(fx->io.open_calls, 1);
    assert_int_equal(fx->s.allocs.count, 1);
    fx_finish(fx);
}

/* A different request that reuses a transaction ID is a new request, not a retransmission:
 * it must get its own answer, never the cached answer of another method. */
static void test_reused_tid_gets_its_own_answer(void **state)
{
    struct fixture *fx = *state;
    fx_start(fx);
    struct client c;
    cl_init(&c, fx, SRV_UDP, "192.0.2.78", 40000, "alice", "alice-pw");
    cl_login(&c);
    struct req qa, qr;
    struct reply r1, r2;
    req_allocate(&c, &qa);
    req_sign(&c, &qa, 0);
    xchg(&c, &qa, &r1);
    EXPECT_OK(&r1);
    req_refresh(&c, &qr, 700);
    memcpy(qr.buf + 8, qa.buf + 8, STUN_TID_LEN); /* the Allocate's transaction ID */
    req_sign(&c, &qr, 0);
    xchg(&c, &qr, &r2);
    EXPECT_OK(&r2);
    assert_int_equal(stun_method_of(r2.m.type), STUN_REFRESH);
    assert_int_equal(reply_u32(&r2, STUN_ATTR_LIFETIME), 700);
    assert_int_equal(D(&r2, retransmit_answered), 0);
    fx_finish(fx);
}

static void test_even_port(void **state)
{
    struct fixture *fx = *state;
    fx->port_start = 1; /* the pool's cursor starts at an odd port */
    fx_start(fx);
    struct client c, d;
    cl_init(&c, fx, SRV_UDP, "192.0.2.77", 40000, "alice", "alice-pw");
    cl_init(&d, fx, SRV_UDP, "192.0.2.77", 40001, "alice", "alice-pw");
    cl_login(&c);
    cl_login(&d);
    struct req q;
    struct reply r;
    req_allocate(&c, &q);
    send_signed(&c, &q, &r);
    EXPECT_OK(&r);
    assert_int_equal(addr_port(&cl_alloc(&c)->relay[0].addr), PORT_MIN + 1);
    req_allocate(&d, &q);
    stun_enc_even_port(&q.e, false);
    send_signed(&d, &q, &r);
    EXPECT_OK(&r);
    union stun_addr relayed = expect_relayed(fx, &r, 0, 0);
    assert_int_equal(addr_port(&relayed), PORT_MIN + 2);
    assert_null(stun_find(&r.m, STUN_ATTR_RESERVATION_TOKEN));
    assert_int_equal(fake_io_ports_in_state(&fx->io, FAKE_PORT_RESERVED), 0);
    fx_finish(fx);
}

static void test_even_port_reservation_token(void **state)
{
    struct fixture *fx = *state;
    fx->port_start = 1;
    fx_start(fx);
    struct client c, b, e;
    cl_init(&c, fx, SRV_UDP, "192.0.2.77", 40000, "alice", "alice-pw");
    cl_init(&b, fx, SRV_TCP, "192.0.2.88", 41000, "bob", "bob-pw"); /* any other 5-tuple */
    cl_init(&e, fx, SRV_UDP, "192.0.2.99", 42000, "bob", "bob-pw");
    cl_login(&c);
    cl_login(&b);
    cl_login(&e);
    uint16_t port;
    uint64_t token = reserve_pair(&c, &port);
    assert_int_equal(port, PORT_MIN + 2);
    /* An ordinary allocation meanwhile skips the reserved port. */
    cl_allocate(&e);
    assert_int_not_equal(addr_port(&cl_alloc(&e)->relay[0].addr), port + 1);

    fx->io.now_ms = T0 + 30 * SEC - 1; /* still held */
    struct req q;
    struct reply r;
    req_allocate(&b, &q);
    stun_enc_u64(&q.e, STUN_ATTR_RESERVATION_TOKEN, token);
    send_signed(&b, &q, &r);
    EXPECT_OK(&r);
    union stun_addr relayed = expect_relayed(fx, &r, 0, 0);
    assert_int_equal(addr_port(&relayed), port + 1);
    assert_null(stun_find(&r.m, STUN_ATTR_RESERVATION_TOKEN));
    assert_int_equal(fake_io_ports_in_state(&fx->io, FAKE_PORT_RESERVED), 0);

    /* A token is good once. */
    struct client f;
    cl_init(&f, fx, SRV_UDP, "192.0.2.99", 42001, "alice", "alice-pw");
    cl_login(&f);
    req_allocate(&f, &q);
    stun_enc_u64(&q.e, STUN_ATTR_RESERVATION_TOKEN, token);
    send_signed(&f, &q, &r);
    EXPECT_ERR(&r, 508, true);
    fx_finish(fx);
}

static void test_reservation_token_lapses_after_30s(void **state)
{
    struct fixture *fx = *state;
    fx_start(fx);
    struct client c, b;
    cl_init(&c, fx, SRV_UDP, "192.0.2.77", 40000, "alice", "alice-pw");
    cl_init(&b, fx, SRV_UDP, "192.0.2.88", 41000, "bob", "bob-pw");
    cl_login(&c);
    cl_login(&b);
    uint16_t port;
    uint64_t token = reserve_pair(&c, &port);
    fx->io.now_ms = T0 + 30 * SEC;
    struct req q;
    struct reply r;
    req_allocate(&b, &q);
    stun_enc_u64(&q.e, STUN_ATTR_RESERVATION_TOKEN, token);
    send_signed(&b, &q, &r);
    EXPECT_ERR(&r, 508, true);
    assert_int_equal(fake_io_quota_count(&fx->io, "bob"), 0);
    assert_int_equal(fx->io.open_calls, 1);
    fx_finish(fx);
}

static void test_relay_open_eaddrinuse_retries(void **state)
{
    struct fixture *fx = *state;
    fx->io.busy[0] = PORT_MIN;     /* another process holds the first port */
    fx->io.busy[1] = PORT_MIN + 2; /* and the first even one after it */
    fx_start(fx);
    struct client c, d;
    cl_init(&c, fx, SRV_UDP, "192.0.2.77", 40000, "alice", "alice-pw");
    cl_init(&d, fx, SRV_UDP, "192.0.2.77", 40001, "alice", "alice-pw");
    cl_login(&c);
    cl_login(&d);
    struct req q;
    struct reply r;
    req_allocate(&c, &q);
    send_signed(&c, &q, &r);
    EXPECT_OK(&r);
    union stun_addr relayed = expect_relayed(fx, &r, 0, 0);
    assert_int_equal(addr_port(&relayed), PORT_MIN + 1);
    assert_int_equal(fx->io.open_calls, 2);
    assert_int_equal(fake_io_port_state(&fx->io, 0, PORT_MIN), FAKE_PORT_FREE);
    /* With a reservation: the refused pair is given back whole, the next pair is used. */
    uint16_t port;
    reserve_pair(&d, &port);
    assert_int_equal(port, PORT_MIN + 4);
    assert_int_equal(fx->io.open_calls, 4);
    assert_int_equal(fake_io_port_state(&fx->io, 0, PORT_MIN + 2), FAKE_PORT_FREE);
    assert_int_equal(fake_io_port_state(&fx->io, 0, PORT_MIN + 3), FAKE_PORT_FREE);
    assert_int_equal(fake_io_ports_in_state(&fx->io, FAKE_PORT_RESERVED), 1);
    fx_finish(fx);
}

static void test_dual_allocation(void **state)
{
    struct fixture *fx = *state;
    fx_start(fx);
    struct client c;
    cl_init(&c, fx, SRV_UDP, "192.0.2.77", 40000, "alice", "alice-pw");
    cl_login(&c);
    struct req q;
    struct reply r;
    req_allocate(&c, &q);
    stun_enc_u8_rffu(&q.e, STUN_ATTR_ADDITIONAL_ADDRESS_FAMILY, STUN_FAMILY_IPV6);
    send_signed(&c, &q, &r);
    EXPECT_OK(&r);
    assert_int_equal(reply_count(&r, STUN_ATTR_XOR_RELAYED_ADDRESS), 2);
    union stun_addr r4 = expect_relayed(fx, &r, 0, 0), r6 = expect_relayed(fx, &r, 1, 1);
    assert_int_equal(r4.sa.sa_family, AF_INET);
    assert_int_equal(r6.sa.sa_family, AF_INET6);
    assert_null(stun_find(&r.m, STUN_ATTR_ADDRESS_ERROR_CODE));
    struct allocation *a = cl_alloc(&c);
    assert_int_equal(a->nrelay, 2);
    assert_int_equal(fx->io.nopen, 2);
    assert_int_equal(fake_io_quota_count(&fx->io, "alice"), 1); /* one allocation, one quota unit */

    union stun_addr p4 = mkaddr("8.8.8.8", 5000), p6 = mkaddr("2606:4700::1111", 5000);
    union stun_addr both[2] = {p4, p6};
    cl_permit(&c, both, 2, &r);
    EXPECT_OK(&r);
    send_ind(&c, &p6, "six", 3, false, &r);
    expect_fwd(&r, a, 1, &p6, "six", 3, false);
    send_ind(&c, &p4, "four", 4, false, &r);
    expect_fwd(&r, a, 0, &p4, "four", 4, false);
    /* An IPv6 Data indication needs the whole headroom (20 + 24 + 4). */
    uint8_t out[OUTCAP];
    size_t n = peer_in(fx, a, 1, &p6, "hello", 5, out, sizeof(out));
    assert_int_equal(n, SRV_PEER_HEADROOM + 8);
    expect_data_indication(out, n, &p6, "hello", 5);

    /* Refresh LIFETIME 0 with REQUESTED-ADDRESS-FAMILY IPv6 drops the IPv6 half only. */
    req_refresh(&c, &q, 0);
    stun_enc_u8_rffu(&q.e, STUN_ATTR_REQUESTED_ADDRESS_FAMILY, STUN_FAMILY_IPV6);
    send_signed(&c, &q, &r);
    EXPECT_OK(&r);
    assert_ptr_equal(cl_alloc(&c), a);
    assert_int_equal(a->nrelay, 1);
    assert_int_equal(a->relay[0].addr.sa.sa_family, AF_INET);
    assert_null(fake_io_find_sock(&fx->io, &r6));
    assert_int_equal(fake_io_port_state(&fx->io, 1, addr_port(&r6)), FAKE_PORT_FREE);
    assert_int_equal(fake_io_quota_count(&fx->io, "alice"), 1);
    check_books(fx);
    send_ind(&c, &p6, "six", 3, false, &r);
    assert_null(r.fwd.a);
    assert_int_equal(D(&r, drop_send_family), 1);
    send_ind(&c, &p4, "four", 4, false, &r);
    expect_fwd(&r, a, 0, &p4, "four", 4, false);
    /* The IPv4 half refreshes as usual. */
    req_refresh(&c, &q, 1200);
    stun_enc_u8_rffu(&q.e, STUN_ATTR_REQUESTED_ADDRESS_FAMILY, STUN_FAMILY_IPV4);
    send_signed(&c, &q, &r);
    EXPECT_OK(&r);
    assert_int_equal(reply_u32(&r, STUN_ATTR_LIFETIME), 1200);
    fx_finish(fx);
}

static void test_dual_allocation_ipv4_only(void **state)
{
    struct fixture *fx = *state;
    fx->opt.nrelay_addrs = 1;
    fx_start(fx);
    struct client c;
    cl_init(&c, fx, SRV_UDP, "192.0.2.77", 40000, "alice", "alice-pw");
    cl_login(&c);
    struct req q;
    struct reply r;
    req_allocate(&c, &q);
    stun_enc_u8_rffu(&q.e, STUN_ATTR_ADDITIONAL_ADDRESS_FAMILY, STUN_FAMILY_IPV6);
    send_signed(&c, &q, &r);
    EXPECT_OK(&r);
    assert_int_equal(reply_count(&r, STUN_ATTR_XOR_RELAYED_ADDRESS), 1);
    expect_relayed(fx, &r, 0, 0);
    const struct stun_attr *ae = stun_find(&r.m, STUN_ATTR_ADDRESS_ERROR_CODE);
    assert_non_null(ae);
    uint8_t family = 0;
    int code = 0;
    const char *reason;
    size_t rlen;
    assert_int_equal(stun_get_address_error(ae, &family, &code, &reason, &rlen), 0);
    assert_int_equal(family, STUN_FAMILY_IPV6);
    assert_int_equal(code, 440);
    assert_int_equal(cl_alloc(&c)->nrelay, 1);
    assert_int_equal(D(&r, error_440), 0); /* a success, not an error */
    fx_finish(fx);
}

static void test_requested_family_ipv6(void **state)
{
    struct fixture *fx = *state;
    fx_start(fx);
    struct client c;
    cl_init(&c, fx, SRV_UDP, "192.0.2.77", 40000, "alice", "alice-pw");
    cl_login(&c);
    struct req q;
    struct reply r;
    req_allocate(&c, &q);
    stun_enc_u8_rffu(&q.e, STUN_ATTR_REQUESTED_ADDRESS_FAMILY, STUN_FAMILY_IPV6);
    send_signed(&c, &q, &r);
    EXPECT_OK(&r);
    assert_int_equal(reply_count(&r, STUN_ATTR_XOR_RELAYED_ADDRESS), 1);
    union stun_addr relayed = expect_relayed(fx, &r, 0, 1);
    assert_int_equal(relayed.sa.sa_family, AF_INET6);
    /* XOR-MAPPED-ADDRESS stays the (IPv4) client. */
    union stun_addr mapped = reply_xaddr(&r, STUN_ATTR_XOR_MAPPED_ADDRESS, 0);
    assert_addr(&mapped, &c.t.client);
    assert_int_equal(fx->io.nopen, 1);
    fx_finish(fx);
}

int main(int argc, char **argv)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_allocate_lifetime),
        T(test_400_allocate_without_requested_transport),
        T(test_400_allocate_attribute_combinations),
        T(test_400_even_port_reserve_with_additional_family),
        T(test_437_allocation_mismatch),
        T(test_440_address_family_not_supported),
        T(test_437_allocate_by_other_user_on_used_tuple),
        T(test_442_unsupported_transport),
        T(test_486_user_quota),
        T(test_486_total_quota),
        T(test_508_port_pool_exhausted),
        T(test_508_relay_open_error),
        T(test_508_invalid_reservation_token),
        T(test_retransmit_allocate),
        T(test_retransmit_allocate_after_cache_expiry),
        T(test_reused_tid_gets_its_own_answer),
        T(test_even_port),
        T(test_even_port_reservation_token),
        T(test_reservation_token_lapses_after_30s),
        T(test_relay_open_eaddrinuse_retries),
        T(test_dual_allocation),
        T(test_dual_allocation_ipv4_only),
        T(test_requested_family_ipv6),
    };
#undef T
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
