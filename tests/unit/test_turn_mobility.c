/* test_turn_mobility.c: RFC 8016 mobility in the server core. An Allocate with an empty
 * MOBILITY-TICKET gets a ticket when allocation.mobility is on (405 when off, or not over UDP;
 * 400 when not empty); a Refresh with the ticket from a new 5-tuple moves the allocation there
 * with its relayed address, permissions, channels and counters, signed with the nonce the old
 * address was given, and gets a new ticket (the one before stays good once: a lost answer);
 * every refusal (unknown ticket 437, malformed 400, another user 441, a 5-tuple with its own
 * allocation 437, mobility off 405) and the hand-over between workers (srv_mobility_owner,
 * srv_detach, srv_adopt, srv_discard). One test alone: pass its name (a glob) as argv[1]. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <string.h>

#include "addr.h"
#include "turn_fixture.h"

struct ticket {
    uint8_t v[64];
    size_t len;
};

/* The MOBILITY-TICKET of an answer (it must have one). */
static struct ticket reply_ticket(const struct reply *r)
{
    const struct stun_attr *a = stun_find(&r->m, STUN_ATTR_MOBILITY_TICKET);
    if (!a) fail_msg("no MOBILITY-TICKET in the answer");
    struct ticket t = {.len = a->len};
    assert_int_equal(a->len, SRV_TICKET_TEXT);
    memcpy(t.v, a->val, a->len);
    for (size_t i = 0; i < t.len; i++) /* printable: clients keep it as a string */
        assert_true((t.v[i] >= 'A' && t.v[i] <= 'Z') || (t.v[i] >= 'a' && t.v[i] <= 'z') ||
                    (t.v[i] >= '0' && t.v[i] <= '9') || t.v[i] == '-' || t.v[i] == '_');
    return t;
}

/* A signed Allocate asking for mobility; its ticket. */
static struct ticket mobile_allocate(struct client *c, struct reply *r)
{
    struct req q;
    req_allocate(c, &q);
    stun_enc_attr(&q.e, STUN_ATTR_MOBILITY_TICKET, NULL, 0);
    send_signed(c, &q, r);
    EXPECT_OK(r);
    assert_non_null(cl_alloc(c));
    assert_true(cl_alloc(c)->mobile);
    return reply_ticket(r);
}

/* A signed Refresh with ticket t. A nonce is accepted from the address it was given to, or
 * from that of the allocation the ticket names: any other gets 438 and a fresh one, with which
 * the client tries again (as clients do). */
static void mobile_refresh(struct client *c, const struct ticket *t, long lifetime, struct reply *r)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        struct req q;
        req_refresh(c, &q, lifetime);
        stun_enc_attr(&q.e, STUN_ATTR_MOBILITY_TICKET, t->v, t->len);
        send_signed(c, &q, r);
        if (r->code != 438) return;
        cl_learn(c, r);
    }
}

/* The client on a new 5-tuple (same credentials and nonce, another address and port). */
static void move_client(struct client *to, const struct client *from, const char *ip, uint16_t port)
{
    *to = *from;
    to->t.client = mkaddr(ip, port);
    to->seed ^= (uint64_t)port << 8;
}

static void test_off_by_default(void **state)
{
    struct fixture *fx = *state;
    fx_start(fx); /* allocation.mobility defaults to false */
    struct client c;
    cl_init(&c, fx, SRV_UDP, "192.0.2.77", 40000, "alice", "alice-pw");
    cl_login(&c);
    struct req q;
    struct reply r;
    req_allocate(&c, &q);
    stun_enc_attr(&q.e, STUN_ATTR_MOBILITY_TICKET, NULL, 0);
    send_signed(&c, &q, &r);
    EXPECT_ERR(&r, 405, true);
    assert_null(cl_alloc(&c));
    /* A plain allocation, and a Refresh with some ticket: 405 too, the allocation untouched. */
    cl_allocate(&c);
    struct ticket t = {.len = SRV_TICKET_TEXT};
    memset(t.v, 'A', t.len);
    mobile_refresh(&c, &t, -1, &r);
    EXPECT_ERR(&r, 405, true);
    assert_non_null(cl_alloc(&c));
    assert_false(cl_alloc(&c)->mobile);
    fx_finish(fx);
}

static void test_allocate_checks(void **state)
{
    struct fixture *fx = *state;
    fx->opt.mobility = true;
    fx_start(fx);
    struct client c;
    cl_init(&c, fx, SRV_UDP, "192.0.2.77", 40000, "alice", "alice-pw");
    cl_login(&c);
    struct req q;
    struct reply r;
    /* RFC 8016 3.1: the Allocate's ticket is empty. */
    req_allocate(&c, &q);
    stun_enc_attr(&q.e, STUN_ATTR_MOBILITY_TICKET, "x", 1);
    send_signed(&c, &q, &r);
    EXPECT_ERR(&r, 400, true);
    /* Over TCP, TLS and DTLS the allocation ends with its connection: no mobility. */
    const enum srv_transport tr[] = {SRV_TCP, SRV_TLS, SRV_DTLS};
    for (size_t i = 0; i < 3; i++) {
        struct client s;
        cl_init(&s, fx, tr[i], "192.0.2.78", (uint16_t)(41000 + i), "alice", "alice-pw");
        cl_login(&s);
        req_allocate(&s, &q);
        stun_enc_attr(&q.e, STUN_ATTR_MOBILITY_TICKET, NULL, 0);
        send_signed(&s, &q, &r);
        EXPECT_ERR(&r, 405, true);
    }
    assert_int_equal(fx->s.allocs.count, 0);
    /* Without the attribute: an allocation that is not mobile, and no ticket in its answer. */
    req_allocate(&c, &q);
    send_signed(&c, &q, &r);
    EXPECT_OK(&r);
    assert_null(stun_find(&r.m, STUN_ATTR_MOBILITY_TICKET));
    assert_false(cl_alloc(&c)->mobile);
    assert_int_equal(fx->s.c.v[SRV_C_mobile_allocations], 0);
    fx_finish(fx);
}

static void test_move_keeps_everything(void **state)
{
    struct fixture *fx = *state;
    fx->opt.mobility = true;
    fx_start(fx);
    struct client c, m;
    cl_init(&c, fx, SRV_UDP, "192.0.2.77", 40000, "alice", "alice-pw");
    cl_login(&c);
    struct reply r;
    struct ticket t1 = mobile_allocate(&c, &r);
    assert_int_equal(D(&r, mobile_allocations), 1);
    struct allocation *a = cl_alloc(&c);
    uint64_t id = a->id;
    union stun_addr relayed = a->relay[0].advertised;
    union stun_addr peer = mkaddr("8.8.8.8", 5000);
    cl_permit(&c, &peer, 1, &r);
    cl_bind(&c, 0x4001, &peer, &r);
    send_chdata(&c, 0x4001, "before", 6, &r);
    expect_fwd(&r, a, 0, &peer, "before", 6, false);

    /* Wi-Fi to cellular: another address, and the nonce the old one was given. */
    fx->io.now_ms = T0 + 100 * SEC;
    move_client(&m, &c, "203.0.113.9", 51000);
    mobile_refresh(&m, &t1, 600, &r);
    EXPECT_OK(&r);
    assert_int_equal(D(&r, mobility_moves), 1);
    assert_int_equal(reply_u32(&r, STUN_ATTR_LIFETIME), 600);
    struct ticket t2 = reply_ticket(&r);
    assert_memory_not_equal(t1.v, t2.v, t1.len); /* RFC 8016 3.4: a new ticket */
    assert_ptr_equal(r.fwd.moved, a);
    assert_addr(&r.fwd.moved_from.client, &c.t.client);
    assert_null(cl_alloc(&c));
    assert_ptr_equal(cl_alloc(&m), a);
    assert_int_equal(a->id, id);
    assert_ptr_equal(a->client_io, &m);
    assert_addr(&a->tuple.client, &m.t.client);
    assert_addr(&a->relay[0].advertised, &relayed);
    assert_int_equal(a->moves, 1);
    assert_int_equal(a->moved_ms, T0 + 100 * SEC);
    assert_int_equal(a->expires_ms, T0 + 700 * SEC);
    /* The channel and the permission came along; the counters go on. */
    send_chdata(&m, 0x4001, "after", 5, &r);
    expect_fwd(&r, a, 0, &peer, "after", 5, false);
    uint8_t out[256];
    size_t n = peer_in(fx, a, 0, &peer, "back", 4, out, sizeof(out));
    expect_chdata(out, n, 0x4001, "back", 4, false);
    /* The old 5-tuple has nothing any more. */
    send_chdata(&c, 0x4001, "stale", 5, &r);
    assert_null(r.fwd.a);
    assert_int_equal(D(&r, drop_no_allocation), 1);
    cl_refresh(&c, -1, &r);
    EXPECT_ERR(&r, 437, true);
    /* The expiry heap follows the Refresh (not the old lifetime). */
    assert_int_equal(srv_expire(&fx->s, T0 + 700 * SEC - 1), 0);
    assert_ptr_equal(cl_alloc(&m), a);
    check_books(fx);
    fx_finish(fx);
}

static void test_tickets_rotate(void **state)
{
    struct fixture *fx = *state;
    fx->opt.mobility = true;
    fx_start(fx);
    struct client c, m, k;
    cl_init(&c, fx, SRV_UDP, "192.0.2.77", 40000, "alice", "alice-pw");
    cl_login(&c);
    struct reply r;
    struct ticket t1 = mobile_allocate(&c, &r);
    /* A plain Refresh (no ticket) gets no ticket and changes nothing. */
    cl_refresh(&c, -1, &r);
    EXPECT_OK(&r);
    assert_null(stun_find(&r.m, STUN_ATTR_MOBILITY_TICKET));
    /* From the same 5-tuple with the ticket: a refresh, a new ticket, no move. */
    mobile_refresh(&c, &t1, -1, &r);
    EXPECT_OK(&r);
    assert_null(r.fwd.moved);
    assert_int_equal(D(&r, mobility_moves), 0);
    struct ticket t2 = reply_ticket(&r);
    /* Its answer lost, the client moves with t1 (the previous ticket): still good. */
    move_client(&m, &c, "203.0.113.9", 51000);
    mobile_refresh(&m, &t1, -1, &r);
    EXPECT_OK(&r);
    assert_non_null(r.fwd.moved);
    struct ticket t3 = reply_ticket(&r);
    /* Two renewals on, t1 and t2 are gone; t3 moves it on. */
    move_client(&k, &c, "198.51.100.77", 52000);
    mobile_refresh(&k, &t1, -1, &r);
    EXPECT_ERR(&r, 437, true);
    mobile_refresh(&k, &t2, -1, &r);
    assert_int_equal(r.code, 0); /* t2 was the previous of t3: accepted */
    struct ticket t4 = reply_ticket(&r);
    move_client(&m, &c, "203.0.113.10", 53000);
    mobile_refresh(&m, &t3, -1, &r); /* t3: now the previous one */
    EXPECT_OK(&r);
    assert_memory_not_equal(reply_ticket(&r).v, t4.v, t4.len);
    mobile_refresh(&k, &t3, -1, &r); /* two renewals old by now */
    EXPECT_ERR(&r, 437, true);
    assert_int_equal(cl_alloc(&m)->moves, 3);
    assert_null(cl_alloc(&k));
    fx_finish(fx);
}

static void test_refusals(void **state)
{
    struct fixture *fx = *state;
    fx->opt.mobility = true;
    fx_start(fx);
    struct client c, b, m;
    cl_init(&c, fx, SRV_UDP, "192.0.2.77", 40000, "alice", "alice-pw");
    cl_init(&b, fx, SRV_UDP, "192.0.2.88", 40000, "bob", "bob-pw");
    cl_login(&c);
    cl_login(&b);
    struct reply r;
    struct ticket t = mobile_allocate(&c, &r);
    struct allocation *a = cl_alloc(&c);
    /* Another user with alice's ticket: 441, nothing moves. */
    mobile_refresh(&b, &t, -1, &r);
    EXPECT_ERR(&r, 441, true);
    assert_ptr_equal(cl_alloc(&c), a);
    /* Malformed tickets: 400. */
    struct ticket bad = t;
    bad.len = SRV_TICKET_TEXT - 4;
    move_client(&m, &c, "203.0.113.9", 51000);
    mobile_refresh(&m, &bad, -1, &r);
    EXPECT_ERR(&r, 400, true);
    bad = t;
    bad.v[5] = '*';
    mobile_refresh(&m, &bad, -1, &r);
    EXPECT_ERR(&r, 400, true);
    bad = t;
    bad.v[0] = 'Z'; /* the version byte */
    mobile_refresh(&m, &bad, -1, &r);
    EXPECT_ERR(&r, 400, true);
    /* Well formed, but no allocation of ours: 437. */
    bad = t;
    bad.v[10] = bad.v[10] == 'A' ? 'B' : 'A';
    mobile_refresh(&m, &bad, -1, &r);
    EXPECT_ERR(&r, 437, true);
    /* Another 5-tuple of alice's with an allocation of its own: the ticket cannot land there. */
    struct client c2;
    cl_init(&c2, fx, SRV_UDP, "192.0.2.99", 40000, "alice", "alice-pw");
    cl_login(&c2);
    struct allocation *a2 = cl_allocate(&c2);
    mobile_refresh(&c2, &t, -1, &r);
    EXPECT_ERR(&r, 437, true);
    assert_ptr_equal(cl_alloc(&c2), a2);
    assert_ptr_equal(cl_alloc(&c), a);
    /* Bob's 5-tuple has an allocation: alice's request there fails as any would. */
    cl_allocate(&b);
    struct client bm;
    move_client(&bm, &b, "192.0.2.88", 40000);
    bm.user = "alice";
    bm.pass = "alice-pw";
    cl_derive(&bm);
    mobile_refresh(&bm, &t, -1, &r);
    EXPECT_ERR(&r, 441, true); /* alice on bob's 5-tuple: its allocation's credentials first */
    /* Over TCP with a UDP allocation's ticket: 400. */
    struct client tc;
    cl_init(&tc, fx, SRV_TCP, "192.0.2.77", 40000, "alice", "alice-pw");
    cl_login(&tc);
    mobile_refresh(&tc, &t, -1, &r);
    EXPECT_ERR(&r, 400, true);
    /* Mobility turned off by a reload: 405, and the allocation stays where it is. */
    struct srv_options o = fx->s.opt;
    o.mobility = false;
    struct srv_reconf rc;
    assert_int_equal(srv_reconfigure(&fx->s, &o, fx->io.now_ms, &rc), 0);
    mobile_refresh(&m, &t, -1, &r);
    EXPECT_ERR(&r, 405, true);
    assert_ptr_equal(cl_alloc(&c), a);
    /* An expired allocation's ticket: 437 (and it is gone). */
    o.mobility = true;
    assert_int_equal(srv_reconfigure(&fx->s, &o, fx->io.now_ms, &rc), 0);
    fx->io.now_ms = T0 + 600 * SEC;
    mobile_refresh(&m, &t, -1, &r);
    EXPECT_ERR(&r, 437, true);
    assert_null(cl_alloc(&c));
    assert_null(cl_alloc(&m));
    fx_finish(fx);
}

static void test_move_then_delete_and_retransmit(void **state)
{
    struct fixture *fx = *state;
    fx->opt.mobility = true;
    fx_start(fx);
    struct client c, m;
    cl_init(&c, fx, SRV_UDP, "192.0.2.77", 40000, "alice", "alice-pw");
    cl_login(&c);
    struct reply r, again;
    struct ticket t = mobile_allocate(&c, &r);
    move_client(&m, &c, "2001:db8:7::9", 51000); /* IPv4 to IPv6: the client's side only */
    m.t.local = mkaddr("2001:db8::1", 3478);
    struct req q;
    req_refresh(&m, &q, -1);
    stun_enc_attr(&q.e, STUN_ATTR_MOBILITY_TICKET, t.v, t.len);
    send_signed(&m, &q, &r);
    EXPECT_OK(&r);
    assert_non_null(cl_alloc(&m));
    /* A retransmission (coturn's client sends its moving Refresh twice): the same answer. */
    xchg(&m, &q, &again);
    assert_int_equal(again.len, r.len);
    assert_memory_equal(again.buf, r.buf, r.len);
    assert_int_equal(D(&again, retransmit_answered), 1);
    assert_int_equal(cl_alloc(&m)->moves, 1);
    /* Deleting from yet another address with the ticket: deleted there, not moved first. */
    struct ticket t2 = reply_ticket(&r);
    struct client k;
    move_client(&k, &c, "198.51.100.5", 52000);
    mobile_refresh(&k, &t2, 0, &r);
    EXPECT_OK(&r);
    assert_null(r.fwd.moved);
    assert_int_equal(D(&r, delete_success), 1);
    assert_int_equal(fx->s.allocs.count, 0);
    fx_finish(fx);
}

/* The client keeps signing with the nonce its first address was given (a moving client gets
 * no new one while its Refreshes succeed): good for the ticket's Refreshes while that address
 * is the allocation's or one of the ALLOC_PAST_CLIENTS before it; older, a 438 gives the client
 * a nonce for where it is. */
static void test_nonce_follows_the_client(void **state)
{
    struct fixture *fx = *state;
    fx->opt.mobility = true;
    fx_start(fx);
    struct client c, m;
    cl_init(&c, fx, SRV_UDP, "192.0.2.77", 40000, "alice", "alice-pw");
    cl_login(&c);
    struct reply r;
    struct ticket t = mobile_allocate(&c, &r);
    for (int i = 0; i <= ALLOC_PAST_CLIENTS + 1; i++) {
        move_client(&m, &c, "203.0.113.9", (uint16_t)(51000 + i));
        struct req q;
        req_refresh(&m, &q, -1);
        stun_enc_attr(&q.e, STUN_ATTR_MOBILITY_TICKET, t.v, t.len);
        send_signed(&m, &q, &r);
        if (i <= ALLOC_PAST_CLIENTS) {
            EXPECT_OK(&r);
            t = reply_ticket(&r);
            continue;
        }
        EXPECT_ERR(&r, 438, false); /* the first address is too many moves back */
        cl_learn(&m, &r);
        mobile_refresh(&m, &t, -1, &r);
        EXPECT_OK(&r);
    }
    assert_int_equal(cl_alloc(&m)->moves, ALLOC_PAST_CLIENTS + 2);
    fx_finish(fx);
}

/* Several workers: the ticket names its worker; a Refresh with another worker's ticket is passed
 * there; the owner moves the allocation out (srv_detach) and the first worker adopts it. One
 * server plays both parts: its worker number is changed in between. */
static void test_between_workers(void **state)
{
    struct fixture *fx = *state;
    fx->opt.mobility = true;
    fx_start(fx);
    fx->s.worker = 2;
    struct client c, m;
    cl_init(&c, fx, SRV_UDP, "192.0.2.77", 40000, "alice", "alice-pw");
    cl_login(&c);
    struct reply r;
    struct ticket t = mobile_allocate(&c, &r);
    struct allocation *a = cl_alloc(&c);
    move_client(&m, &c, "203.0.113.9", 51000);
    struct req q;
    req_refresh(&m, &q, -1);
    stun_enc_attr(&q.e, STUN_ATTR_MOBILITY_TICKET, t.v, t.len);
    req_sign(&m, &q, 0);
    /* Worker 2's own ticket, or a 5-tuple it knows: handled here. */
    assert_int_equal(srv_mobility_owner(&fx->s, &m.t, q.buf, q.len, 4), -1);
    /* Seen from worker 0 (the ticket is not in its index): worker 2's. */
    fx->s.worker = 0;
    srv_detach(&fx->s, a);
    assert_int_equal(srv_mobility_owner(&fx->s, &m.t, q.buf, q.len, 4), 2);
    assert_int_equal(srv_mobility_owner(&fx->s, &m.t, q.buf, q.len, 2), -1); /* no worker 2 */
    assert_int_equal(srv_mobility_owner(&fx->s, &m.t, q.buf, q.len, 1), -1); /* one worker */
    assert_int_equal(srv_mobility_owner(&fx->s, &m.t, q.buf, 10, 4), -1);
    struct client tcp = m;
    tcp.t.transport = SRV_TCP;
    assert_int_equal(srv_mobility_owner(&fx->s, &tcp.t, q.buf, q.len, 4), -1);
    /* Back in worker 2's table, which answers for worker 0 (mob_dest): the new ticket names 0. */
    fx->s.worker = 2;
    assert_int_equal(srv_adopt(&fx->s, a, NULL, 0, NULL, 0, fx->io.now_ms), 0);
    fx->s.mob_dest = 0;
    xchg(&m, &q, &r);
    fx->s.mob_dest = -1;
    EXPECT_OK(&r);
    assert_ptr_equal(r.fwd.moved, a);
    struct ticket t2 = reply_ticket(&r);
    /* Version 1, then the worker byte: base64url "AQ" and a third character whose top four
     * bits are the worker's low four (A-D: worker 0, I-L: worker 2). */
    assert_memory_equal(t2.v, "AQ", 2);
    assert_true(t2.v[2] >= 'A' && t2.v[2] <= 'D');
    assert_memory_equal(t.v, "AQ", 2);
    assert_true(t.v[2] >= 'I' && t.v[2] <= 'L');
    srv_detach(&fx->s, a);
    assert_null(cl_alloc(&m));
    /* Worker 0 takes it in, with the answer for retransmissions. */
    fx->s.worker = 0;
    assert_int_equal(srv_adopt(&fx->s, a, q.buf, q.len, r.buf, r.len, fx->io.now_ms), 0);
    assert_ptr_equal(cl_alloc(&m), a);
    struct reply again;
    xchg(&m, &q, &again);
    assert_int_equal(again.len, r.len);
    assert_memory_equal(again.buf, r.buf, r.len);
    assert_int_equal(D(&again, retransmit_answered), 1);
    /* An adoption onto a 5-tuple that has an allocation fails; discard gives all back. */
    srv_detach(&fx->s, a);
    cl_login(&m); /* m allocates afresh meanwhile (with a nonce of its own) */
    struct allocation *b = cl_allocate(&m);
    assert_int_equal(srv_adopt(&fx->s, a, NULL, 0, NULL, 0, fx->io.now_ms), -1);
    srv_discard(&fx->s, a, "deleted");
    assert_ptr_equal(cl_alloc(&m), b);
    check_books(fx);
    fx_finish(fx);
}

int main(int argc, char **argv)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_off_by_default),
        T(test_allocate_checks),
        T(test_move_keeps_everything),
        T(test_tickets_rotate),
        T(test_refusals),
        T(test_move_then_delete_and_retransmit),
        T(test_nonce_follows_the_client),
        T(test_between_workers),
    };
#undef T
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
