/* test_turn_tcp.c: RFC 6062 TCP allocations through the server core over the fake relay:
 * Allocate with REQUESTED-TRANSPORT TCP (400 and 442 rules), Connect (403 with the table of
 * forbidden peers the UDP tests use, 446, 447 at once, on failure and after 30 s, 508 at the
 * connection limit), ConnectionBind (400, 441, success binding the data connection), peer
 * connections coming in (permission, the same policy, the limit, ConnectionAttempt), pending
 * connections expiring after 30 s, and the end of an allocation closing its connections. One
 * test alone: pass its name (a glob) as argv[1]. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "denied_peers.h"
#include "turn_fixture.h"
#include "wire.h"

static void req_tcp_allocate(struct client *c, struct req *q)
{
    req_begin(c, q, STUN_ALLOCATE, STUN_REQUEST);
    stun_enc_u8_rffu(&q->e, STUN_ATTR_REQUESTED_TRANSPORT, STUN_TRANSPORT_TCP);
}

/* A started fixture and a client over TCP with a TCP allocation (IPv6 relay: v6). */
static struct allocation *tcp_allocation(struct fixture *fx, struct client *c, bool v6)
{
    if (!fx->started) fx_start(fx);
    cl_init(c, fx, SRV_TCP, "192.0.2.77", v6 ? 40001 : 40000, "alice", "alice-pw");
    cl_login(c);
    struct req q;
    struct reply r;
    req_tcp_allocate(c, &q);
    if (v6) stun_enc_u8_rffu(&q.e, STUN_ATTR_REQUESTED_ADDRESS_FAMILY, STUN_FAMILY_IPV6);
    send_signed(c, &q, &r);
    EXPECT_OK(&r);
    struct allocation *a = cl_alloc(c);
    assert_non_null(a);
    assert_true(a->tcp);
    return a;
}

static void req_connect(struct client *c, struct req *q, const union stun_addr *peer)
{
    req_begin(c, q, STUN_CONNECT, STUN_REQUEST);
    if (peer) stun_enc_xor_addr(&q->e, STUN_ATTR_XOR_PEER_ADDRESS, peer);
}

static void cl_connect(struct client *c, const union stun_addr *peer, struct reply *r)
{
    struct req q;
    req_connect(c, &q, peer);
    send_signed(c, &q, r);
}

/* The last message to the control connection, decoded: the answer to the Connect with tid
 * (success: its CONNECTION-ID; else the error code), its integrity checked with c's key. */
static int sent_connect_answer(struct client *c, uint32_t *id)
{
    size_t len;
    const uint8_t *p = fake_io_last_sent(&c->fx->io, &len);
    assert_non_null(p);
    static uint8_t copy[512];
    memcpy(copy, p, len);
    struct stun_msg m;
    assert_int_equal(stun_decode(&m, copy, len), 0);
    assert_int_equal(stun_method_of(m.type), STUN_CONNECT);
    assert_true(m.integrity >= 0 || m.integrity_sha256 >= 0);
    int rc = m.integrity >= 0 ? stun_check_integrity(&m, c->key, c->keylen)
                              : stun_check_integrity_sha256(&m, c->key, c->keylen);
    assert_int_equal(rc, 0);
    if (stun_class_of(m.type) == STUN_SUCCESS) {
        const struct stun_attr *ia = stun_find(&m, STUN_ATTR_CONNECTION_ID);
        assert_non_null(ia);
        assert_int_equal(stun_get_u32(ia, id), 0);
        return 0;
    }
    assert_int_equal(stun_class_of(m.type), STUN_ERROR);
    const struct stun_attr *ec = stun_find(&m, STUN_ATTR_ERROR_CODE);
    assert_non_null(ec);
    int code;
    const char *reason;
    size_t rlen;
    assert_int_equal(stun_get_error(ec, &code, &reason, &rlen), 0);
    return code;
}

static struct srv_tconn *last_connect(struct fixture *fx)
{
    assert_true(fx->io.nconnects > 0);
    return fx->io.connects[(fx->io.nconnects - 1) % FAKE_IO_MAX_TCONN];
}

/* Connect to peer, the relay's connection made: the CONNECTION-ID from the success. */
static uint32_t connect_ok(struct client *c, const union stun_addr *peer)
{
    struct fixture *fx = c->fx;
    struct reply r;
    size_t sent = fx->io.nsent;
    cl_connect(c, peer, &r);
    assert_int_equal(r.len, 0); /* answered once the connection is made */
    assert_int_equal(fx->io.nsent, sent);
    struct srv_tconn *tc = last_connect(fx);
    assert_int_equal(tc->state, SRV_TCONN_CONNECTING);
    srv_connect_result(&fx->s, tc, true, fx->io.now_ms);
    assert_int_equal(fx->io.nsent, sent + 1);
    uint32_t id = 0;
    assert_int_equal(sent_connect_answer(c, &id), 0);
    assert_int_equal(id, tc->id);
    assert_int_equal(tc->state, SRV_TCONN_PENDING);
    return id;
}

/* A data connection of c's user: a new TCP connection from the same IP, another port (its
 * nonce is its own: nonces are bound to the client's transport address). */
static void data_client(struct client *d, const struct client *c, uint16_t port)
{
    cl_init(d, c->fx, SRV_TCP, "192.0.2.77", port, c->user, c->pass);
    struct req q;
    struct reply r;
    req_begin(d, &q, STUN_CONNECTION_BIND, STUN_REQUEST);
    req_done(d, &q);
    xchg(d, &q, &r);
    EXPECT_ERR(&r, 401, false);
    cl_learn(d, &r);
}

static void cl_connection_bind(struct client *d, const uint32_t *id, struct reply *r)
{
    struct req q;
    req_begin(d, &q, STUN_CONNECTION_BIND, STUN_REQUEST);
    if (id) stun_enc_u32(&q.e, STUN_ATTR_CONNECTION_ID, *id);
    send_signed(d, &q, r);
}

static void test_allocate_tcp(void **state)
{
    struct fixture *fx = *state;
    struct client c;
    struct allocation *a = tcp_allocation(fx, &c, false);
    assert_int_equal(fx->s.c.v[SRV_C_tcp_allocations], 1);
    assert_int_equal(a->nrelay, 1);
    assert_int_equal(a->relay[0].addr.sa.sa_family, AF_INET);
    /* TLS control connections too; an IPv6 relayed address on request. */
    struct client t;
    cl_init(&t, fx, SRV_TLS, "192.0.2.78", 40000, "bob", "bob-pw");
    cl_login(&t);
    struct req q;
    struct reply r;
    req_tcp_allocate(&t, &q);
    stun_enc_u8_rffu(&q.e, STUN_ATTR_REQUESTED_ADDRESS_FAMILY, STUN_FAMILY_IPV6);
    send_signed(&t, &q, &r);
    EXPECT_OK(&r);
    assert_int_equal(cl_alloc(&t)->relay[0].addr.sa.sa_family, AF_INET6);
    fx_finish(fx);
}

static void test_allocate_tcp_400(void **state)
{
    struct fixture *fx = *state;
    fx_start(fx);
    struct client u;
    cl_init(&u, fx, SRV_UDP, "192.0.2.77", 40000, "alice", "alice-pw");
    cl_login(&u);
    struct req q;
    struct reply r;
    req_tcp_allocate(&u, &q);
    send_signed(&u, &q, &r);
    EXPECT_ERR(&r, 400, true); /* RFC 6062 5.1: not over UDP */
    struct client dt;          /* nor over DTLS (a datagram transport) */
    cl_init(&dt, fx, SRV_DTLS, "192.0.2.77", 40005, "alice", "alice-pw");
    cl_login(&dt);
    req_tcp_allocate(&dt, &q);
    send_signed(&dt, &q, &r);
    EXPECT_ERR(&r, 400, true);
    struct client c;
    cl_init(&c, fx, SRV_TCP, "192.0.2.77", 40000, "alice", "alice-pw");
    cl_login(&c);
    for (int k = 0; k < 4; k++) {
        req_tcp_allocate(&c, &q);
        if (k == 0) stun_enc_attr(&q.e, STUN_ATTR_DONT_FRAGMENT, NULL, 0);
        if (k == 1) stun_enc_even_port(&q.e, false);
        if (k == 2) stun_enc_u64(&q.e, STUN_ATTR_RESERVATION_TOKEN, 42);
        if (k == 3) stun_enc_u8_rffu(&q.e, STUN_ATTR_ADDITIONAL_ADDRESS_FAMILY, STUN_FAMILY_IPV6);
        send_signed(&c, &q, &r);
        EXPECT_ERR(&r, 400, true);
    }
    assert_int_equal(fx->s.allocs.count, 0);
    fx_finish(fx);
}

static void test_allocate_tcp_442_without_relay_support(void **state)
{
    struct fixture *fx = *state;
    fx->io.no_tcp = true;
    fx_start(fx);
    struct client c;
    cl_init(&c, fx, SRV_TCP, "192.0.2.77", 40000, "alice", "alice-pw");
    cl_login(&c);
    struct req q;
    struct reply r;
    req_tcp_allocate(&c, &q);
    send_signed(&c, &q, &r);
    EXPECT_ERR(&r, 442, true);
    fx_finish(fx);
}

static void test_connect_and_bind(void **state)
{
    struct fixture *fx = *state;
    struct client c;
    struct allocation *a = tcp_allocation(fx, &c, false);
    union stun_addr peer = mkaddr("8.8.8.8", 80);
    uint32_t id = connect_ok(&c, &peer);
    struct srv_tconn *tc = srv_tconn_find(&fx->s, id);
    assert_non_null(tc);
    assert_ptr_equal(tc->a, a);
    assert_addr(&tc->peer, &peer);
    assert_true(tc->outgoing);
    assert_int_equal(fx->s.c.v[SRV_C_connect_success], 1);

    struct client d;
    data_client(&d, &c, 40100);
    struct reply r;
    cl_connection_bind(&d, &id, &r);
    EXPECT_OK(&r);
    assert_ptr_equal(r.fwd.bound, tc);
    assert_int_equal(tc->state, SRV_TCONN_BOUND);
    assert_ptr_equal(tc->data_io, &d);
    assert_int_equal(D(&r, connection_bind_success), 1);
    /* Bound once: a second ConnectionBind for it is refused. */
    struct client d2;
    data_client(&d2, &c, 40101);
    cl_connection_bind(&d2, &id, &r);
    EXPECT_ERR(&r, 400, true);
    /* Either end closing ends it. */
    unsigned closes = fx->io.tconn_close_calls;
    srv_tconn_end(&fx->s, tc);
    assert_int_equal(fx->io.tconn_close_calls, closes + 1);
    assert_null(srv_tconn_find(&fx->s, id));
    assert_int_equal(a->ntconns, 0);
    fx_finish(fx);
}

static void test_connect_400_437(void **state)
{
    struct fixture *fx = *state;
    struct client c;
    tcp_allocation(fx, &c, false);
    struct reply r;
    cl_connect(&c, NULL, &r);
    EXPECT_ERR(&r, 400, true);
    /* On a UDP allocation: 400; with no allocation: 437. */
    struct client u;
    cl_init(&u, fx, SRV_UDP, "192.0.2.79", 40000, "alice", "alice-pw");
    cl_login(&u);
    union stun_addr peer = mkaddr("8.8.8.8", 80);
    cl_connect(&u, &peer, &r);
    EXPECT_ERR(&r, 437, true);
    cl_allocate(&u);
    cl_connect(&u, &peer, &r);
    EXPECT_ERR(&r, 400, true);
    fx_finish(fx);
}

/* The same forbidden peers as the UDP policy tests, in every form: 403 with a "denied" event,
 * and the relay is never asked to connect. */
static void expect_connect_denied(struct client *c, const char *ip, enum policy_verdict why)
{
    struct fixture *fx = c->fx;
    union stun_addr peer = mkaddr(ip, 3478);
    struct reply r;
    size_t events = fx->io.nevents, connects = fx->io.nconnects;
    cl_connect(c, &peer, &r);
    if (r.code != 403) fail_msg("Connect %s: answer %d, want 403", ip, r.code);
    EXPECT_ERR(&r, 403, true);
    assert_int_equal(fx->io.nconnects, connects);
    assert_int_equal(fx->io.nevents, events + 1);
    const struct fake_event *e = fake_io_last_event(&fx->io);
    assert_string_equal(e->what, "denied");
    assert_addr(&e->peer, &peer);
    if (e->verdict != why)
        fail_msg("Connect %s denied as %s, want %s", ip, policy_verdict_names[e->verdict],
                 policy_verdict_names[why]);
}

/* Does ip stay IPv6 once canonical? */
static bool canon_v6(const char *ip)
{
    union stun_addr a = mkaddr(ip, 1), c;
    policy_canonical(&a, &c);
    return c.sa.sa_family == AF_INET6;
}

static void test_connect_403_policy_table(void **state)
{
    struct fixture *fx = *state;
    struct client c4, c6;
    struct allocation *a4 = tcp_allocation(fx, &c4, false);
    struct allocation *a6 = tcp_allocation(fx, &c6, true);
    char forms[6][64];
    for (size_t i = 0; i < NDENIED4; i++) {
        size_t n = v4_forms(denied4[i].ip, forms);
        for (size_t k = 0; k < n; k++) /* a form that stays IPv6 (::) goes to the IPv6 one */
            expect_connect_denied(strchr(forms[k], ':') && canon_v6(forms[k]) ? &c6 : &c4, forms[k],
                                  denied4[i].why);
    }
    for (size_t i = 0; i < NDENIED6; i++)
        expect_connect_denied(&c6, denied6[i].ip, denied6[i].why);
    /* A connection names its port: port 0 is refused too. */
    union stun_addr zero = mkaddr("8.8.8.8", 0);
    struct reply r;
    cl_connect(&c4, &zero, &r);
    EXPECT_ERR(&r, 403, true);
    assert_int_equal(fake_io_last_event(&fx->io)->verdict, POLICY_PORT_ZERO);
    assert_int_equal(a4->ntconns + a6->ntconns, 0);
    fx_finish(fx);
}

static void test_connect_446_447(void **state)
{
    struct fixture *fx = *state;
    struct client c;
    struct allocation *a = tcp_allocation(fx, &c, false);
    union stun_addr peer = mkaddr("8.8.8.8", 80), other = mkaddr("8.8.4.4", 80);
    struct reply r;
    cl_connect(&c, &peer, &r);
    assert_int_equal(r.len, 0);
    /* Still connecting, and again once connected: 446 (the same peer in another form too). */
    cl_connect(&c, &peer, &r);
    EXPECT_ERR(&r, 446, true);
    srv_connect_result(&fx->s, last_connect(fx), true, fx->io.now_ms);
    union stun_addr mapped = mkaddr("::ffff:8.8.8.8", 80);
    cl_connect(&c, &mapped, &r);
    EXPECT_ERR(&r, 446, true);
    /* Another port of the same IP is another connection. */
    union stun_addr port81 = mkaddr("8.8.8.8", 81);
    cl_connect(&c, &port81, &r);
    assert_int_equal(r.len, 0);
    /* The connection fails: 447, and it is gone. */
    size_t n = a->ntconns;
    srv_connect_result(&fx->s, last_connect(fx), false, fx->io.now_ms);
    assert_int_equal(sent_connect_answer(&c, NULL), 447);
    assert_int_equal(a->ntconns, n - 1);
    assert_int_equal(fx->s.c.v[SRV_C_error_447], 1);
    assert_int_equal(fx->s.c.v[SRV_C_tcp_connect_failed], 1);
    /* The relay cannot even start it: 447 at once. */
    fx->io.connect_error = -ENETUNREACH;
    cl_connect(&c, &other, &r);
    EXPECT_ERR(&r, 447, true);
    fx->io.connect_error = 0;
    /* Not made within 30 s: 447 then. */
    cl_connect(&c, &other, &r);
    assert_int_equal(r.len, 0);
    fx->io.now_ms += SRV_TCP_TIMEOUT_MS - 1;
    srv_expire(&fx->s, fx->io.now_ms);
    assert_int_equal(fx->s.c.v[SRV_C_tcp_connect_timeout], 0);
    fx->io.now_ms += 1;
    size_t sent = fx->io.nsent;
    srv_expire(&fx->s, fx->io.now_ms);
    assert_int_equal(fx->s.c.v[SRV_C_tcp_connect_timeout], 1);
    assert_int_equal(fx->io.nsent, sent + 1);
    assert_int_equal(sent_connect_answer(&c, NULL), 447);
    fx_finish(fx);
}

static void test_pending_expires_after_30s(void **state)
{
    struct fixture *fx = *state;
    struct client c;
    struct allocation *a = tcp_allocation(fx, &c, false);
    union stun_addr peer = mkaddr("8.8.8.8", 80);
    uint32_t id = connect_ok(&c, &peer);
    fx->io.now_ms += SRV_TCP_TIMEOUT_MS - 1;
    srv_expire(&fx->s, fx->io.now_ms);
    assert_non_null(srv_tconn_find(&fx->s, id));
    fx->io.now_ms += 1;
    unsigned closes = fx->io.tconn_close_calls;
    srv_expire(&fx->s, fx->io.now_ms);
    assert_null(srv_tconn_find(&fx->s, id));
    assert_int_equal(fx->io.tconn_close_calls, closes + 1);
    assert_int_equal(fx->s.c.v[SRV_C_tcp_bind_timeout], 1);
    assert_int_equal(a->ntconns, 0);
    struct client d;
    data_client(&d, &c, 40100);
    struct reply r;
    cl_connection_bind(&d, &id, &r);
    EXPECT_ERR(&r, 400, true);
    /* The peer can be connected again. */
    connect_ok(&c, &peer);
    fx_finish(fx);
}

/* Clients (coturn's) sign ConnectionBind with their control connection's nonce: accepted for
 * the allocation's pending CONNECTION-ID only. */
static void test_connection_bind_with_control_nonce(void **state)
{
    struct fixture *fx = *state;
    struct client c;
    tcp_allocation(fx, &c, false);
    union stun_addr peer = mkaddr("8.8.8.8", 80);
    uint32_t id = connect_ok(&c, &peer), bad = id + 1;
    struct client d = c;
    d.t.client = mkaddr("192.0.2.77", 40100);
    struct reply r;
    cl_connection_bind(&d, &bad, &r);
    EXPECT_ERR(&r, 438, false); /* not a pending id of that client: the nonce is not its own */
    cl_connection_bind(&d, &id, &r);
    EXPECT_OK(&r);
    assert_non_null(r.fwd.bound);
    fx_finish(fx);
}

static void test_connection_bind_errors(void **state)
{
    struct fixture *fx = *state;
    struct client c;
    tcp_allocation(fx, &c, false);
    union stun_addr peer = mkaddr("8.8.8.8", 80);
    uint32_t id = connect_ok(&c, &peer), bad = id + 1;
    struct reply r;
    struct client d;
    data_client(&d, &c, 40100);
    cl_connection_bind(&d, NULL, &r);
    EXPECT_ERR(&r, 400, true);
    cl_connection_bind(&d, &bad, &r);
    EXPECT_ERR(&r, 400, true);
    /* On the control connection itself, or over UDP: 400. */
    cl_connection_bind(&c, &id, &r);
    EXPECT_ERR(&r, 400, true);
    struct client u;
    cl_init(&u, fx, SRV_UDP, "192.0.2.77", 40102, "alice", "alice-pw");
    cl_login(&u);
    cl_connection_bind(&u, &id, &r);
    EXPECT_ERR(&r, 400, true);
    struct client dt;
    cl_init(&dt, fx, SRV_DTLS, "192.0.2.77", 40104, "alice", "alice-pw");
    cl_login(&dt);
    cl_connection_bind(&dt, &id, &r);
    EXPECT_ERR(&r, 400, true);
    /* Another user's credentials: 441. */
    struct client b;
    cl_init(&b, fx, SRV_TCP, "192.0.2.77", 40103, "bob", "bob-pw");
    cl_login(&b);
    cl_connection_bind(&b, &id, &r);
    EXPECT_ERR(&r, 441, true);
    /* Still pending after all that: the right one binds. */
    cl_connection_bind(&d, &id, &r);
    EXPECT_OK(&r);
    fx_finish(fx);
}

/* A peer connects in: ConnectionAttempt with its address and a CONNECTION-ID. */
static uint32_t expect_attempt(struct fixture *fx, const union stun_addr *from)
{
    size_t len;
    const uint8_t *p = fake_io_last_sent(&fx->io, &len);
    assert_non_null(p);
    static uint8_t copy[512];
    memcpy(copy, p, len);
    struct stun_msg m;
    assert_int_equal(stun_decode(&m, copy, len), 0);
    assert_int_equal(m.type, stun_type(STUN_CONNECTION_ATTEMPT, STUN_INDICATION));
    union stun_addr got;
    const struct stun_attr *pa = stun_find(&m, STUN_ATTR_XOR_PEER_ADDRESS);
    assert_non_null(pa);
    assert_int_equal(stun_get_xor_addr(&m, pa, &got), 0);
    assert_addr(&got, from);
    uint32_t id;
    const struct stun_attr *ia = stun_find(&m, STUN_ATTR_CONNECTION_ID);
    assert_non_null(ia);
    assert_int_equal(stun_get_u32(ia, &id), 0);
    return id;
}

static void test_peer_connection_in(void **state)
{
    struct fixture *fx = *state;
    struct client c;
    struct allocation *a = tcp_allocation(fx, &c, false);
    union stun_addr from = mkaddr("8.8.8.8", 5555);
    void *h = fake_io_handle(&fx->io);
    /* No permission: refused, and the client hears nothing. */
    size_t sent = fx->io.nsent;
    assert_null(srv_peer_accept(&fx->s, a, &from, h, fx->io.now_ms));
    assert_int_equal(fx->s.c.v[SRV_C_tcp_refused_no_permission], 1);
    assert_int_equal(fx->io.nsent, sent);
    struct reply r;
    cl_permit1(&c, "8.8.8.8", &r);
    EXPECT_OK(&r);
    struct srv_tconn *tc = srv_peer_accept(&fx->s, a, &from, h, fx->io.now_ms);
    assert_non_null(tc);
    assert_false(tc->outgoing);
    assert_int_equal(tc->state, SRV_TCONN_PENDING);
    assert_int_equal(fx->io.nsent, sent + 1);
    uint32_t id = expect_attempt(fx, &from);
    assert_int_equal(id, tc->id);
    assert_int_equal(fx->s.c.v[SRV_C_connection_attempt], 1);
    struct client d;
    data_client(&d, &c, 40100);
    cl_connection_bind(&d, &id, &r);
    EXPECT_OK(&r);
    assert_ptr_equal(r.fwd.bound, tc);
    /* The allocation ends: its connections are closed with it. */
    unsigned closes = fx->io.tconn_close_calls;
    cl_refresh(&c, 0, &r);
    EXPECT_OK(&r);
    assert_int_equal(fx->io.tconn_close_calls, closes + 1);
    assert_int_equal(fx->s.ntconns, 0);
    fx_finish(fx);
}

/* Even with a permission in place (installed directly, as a stale one would be), the policy
 * is checked again on accept: the forbidden table, every form. */
static void expect_accept_denied(struct fixture *fx, struct allocation *a, const char *ip,
                                 enum policy_verdict why)
{
    union stun_addr from = mkaddr(ip, 5555), canon;
    policy_canonical(&from, &canon);
    assert_int_equal(alloc_permit(a, &canon, fx->io.now_ms), 0);
    uint64_t refused = fx->s.c.v[SRV_C_tcp_refused_policy];
    size_t sent = fx->io.nsent;
    if (srv_peer_accept(&fx->s, a, &from, fake_io_handle(&fx->io), fx->io.now_ms))
        fail_msg("a connection from %s was accepted", ip);
    assert_int_equal(fx->s.c.v[SRV_C_tcp_refused_policy], refused + 1);
    assert_int_equal(fx->io.nsent, sent);
    const struct fake_event *e = fake_io_last_event(&fx->io);
    assert_string_equal(e->what, "denied");
    if (e->verdict != why)
        fail_msg("%s refused as %s, want %s", ip, policy_verdict_names[e->verdict],
                 policy_verdict_names[why]);
}

static void test_peer_connection_policy_table(void **state)
{
    struct fixture *fx = *state;
    struct client c4, c6;
    struct allocation *a4 = tcp_allocation(fx, &c4, false);
    struct allocation *a6 = tcp_allocation(fx, &c6, true);
    char forms[6][64];
    for (size_t i = 0; i < NDENIED4; i++) {
        size_t n = v4_forms(denied4[i].ip, forms);
        for (size_t k = 0; k < n; k++)
            expect_accept_denied(fx, canon_v6(forms[k]) ? a6 : a4, forms[k], denied4[i].why);
    }
    for (size_t i = 0; i < NDENIED6; i++)
        expect_accept_denied(fx, a6, denied6[i].ip, denied6[i].why);
    assert_int_equal(fx->s.ntconns, 0);
    fx_finish(fx);
}

static void test_connection_limit(void **state)
{
    struct fixture *fx = *state;
    fx->opt.max_tcp_connections = 2;
    struct client c;
    struct allocation *a = tcp_allocation(fx, &c, false);
    union stun_addr p1 = mkaddr("8.8.8.8", 1), p2 = mkaddr("8.8.8.8", 2), p3 = mkaddr("8.8.8.8", 3);
    connect_ok(&c, &p1);
    connect_ok(&c, &p2);
    struct reply r;
    cl_connect(&c, &p3, &r);
    EXPECT_ERR(&r, 508, true);
    cl_permit1(&c, "8.8.8.8", &r);
    assert_null(srv_peer_accept(&fx->s, a, &p3, fake_io_handle(&fx->io), fx->io.now_ms));
    assert_int_equal(fx->s.c.v[SRV_C_tcp_refused_limit], 1);
    /* One ends: room again. */
    srv_tconn_end(&fx->s, a->tconns);
    connect_ok(&c, &p3);
    fx_finish(fx);
}

static void test_tcp_allocation_no_udp_data(void **state)
{
    struct fixture *fx = *state;
    struct client c;
    tcp_allocation(fx, &c, false);
    union stun_addr peer = mkaddr("8.8.8.8", 80);
    struct reply r;
    cl_permit1(&c, "8.8.8.8", &r);
    EXPECT_OK(&r);
    send_ind(&c, &peer, "x", 1, false, &r);
    assert_null(r.fwd.a);
    assert_int_equal(D(&r, drop_tcp_allocation), 1);
    cl_bind(&c, 0x4000, &peer, &r);
    EXPECT_ERR(&r, 400, true);
    fx_finish(fx);
}

static void test_reload_revokes_connections(void **state)
{
    struct fixture *fx = *state;
    struct client c;
    struct allocation *a = tcp_allocation(fx, &c, false);
    union stun_addr peer = mkaddr("8.8.8.8", 80);
    connect_ok(&c, &peer);
    struct policy_cidr deny = {.addr = mkaddr("8.8.8.0", 0), .prefix = 24};
    struct peer_policy p = fx->policy;
    p.deny = &deny;
    p.ndeny = 1;
    struct srv_options o = fx->opt;
    o.policy = &p;
    struct srv_reconf rc;
    assert_int_equal(srv_reconfigure(&fx->s, &o, fx->io.now_ms, &rc), 0);
    assert_int_equal(a->ntconns, 0);
    assert_int_equal(fx->s.c.v[SRV_C_tcp_connections_revoked], 1);
    fx_finish(fx);
}

/* Several workers: a CONNECTION-ID carries its server's worker index in its top byte, and a
 * ConnectionBind for another worker's id on a connection without an allocation names that
 * worker (the relay hands the connection over); everything else is handled where it is. */
static void test_connection_id_owner(void **state)
{
    struct fixture *fx = *state;
    struct client c;
    tcp_allocation(fx, &c, false);
    fx->s.worker = 3;
    union stun_addr peer = mkaddr("8.8.8.8", 80);
    uint32_t id = connect_ok(&c, &peer);
    assert_int_equal(id >> 24, 3);
    struct client d;
    data_client(&d, &c, 40100);
    const uint32_t ids[] = {0x01000001u, 0x03000001u, 0x07000001u, 0x00ABCDEFu};
    const int want4[] = {1, -1, -1, 0}; /* 4 workers; 3 is this one; 7 does not exist */
    for (size_t k = 0; k < 4; k++) {
        struct req q;
        req_begin(&d, &q, STUN_CONNECTION_BIND, STUN_REQUEST);
        stun_enc_u32(&q.e, STUN_ATTR_CONNECTION_ID, ids[k]);
        req_sign(&d, &q, 0);
        assert_int_equal(srv_connection_bind_owner(&fx->s, &d.t, q.buf, q.len, 4), want4[k]);
        assert_int_equal(srv_connection_bind_owner(&fx->s, &d.t, q.buf, q.len, 1), -1);
        /* Truncated, or on the control connection (it has an allocation): not handed over. */
        assert_int_equal(srv_connection_bind_owner(&fx->s, &d.t, q.buf, q.len - 1, 4), -1);
        assert_int_equal(srv_connection_bind_owner(&fx->s, &c.t, q.buf, q.len, 4), -1);
    }
    /* Another method naming another worker's id: handled here. */
    struct req q;
    req_begin(&d, &q, STUN_REFRESH, STUN_REQUEST);
    stun_enc_u32(&q.e, STUN_ATTR_CONNECTION_ID, ids[0]);
    req_sign(&d, &q, 0);
    assert_int_equal(srv_connection_bind_owner(&fx->s, &d.t, q.buf, q.len, 4), -1);
    fx_finish(fx);
}

int main(int argc, char **argv)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_allocate_tcp),
        T(test_allocate_tcp_400),
        T(test_connection_id_owner),
        T(test_allocate_tcp_442_without_relay_support),
        T(test_connect_and_bind),
        T(test_connect_400_437),
        T(test_connect_403_policy_table),
        T(test_connect_446_447),
        T(test_pending_expires_after_30s),
        T(test_connection_bind_with_control_nonce),
        T(test_connection_bind_errors),
        T(test_peer_connection_in),
        T(test_peer_connection_policy_table),
        T(test_connection_limit),
        T(test_tcp_allocation_no_udp_data),
        T(test_reload_revokes_connections),
    };
#undef T
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
