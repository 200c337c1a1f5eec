/* test_ratelimit.c: the limit on answers to unauthenticated requests: the bucket table
 * (allocation/ratelimit.c: burst, refill on a fake clock, /32 and /64 grouping, eviction,
 * the global cap, the keyed hash), the server hook (allocation/server.c: which answers are
 * limited, the drop counters, who is never limited) and the auth.unauthenticated_* keys.
 * The server fixture is a minimal copy of test_server.c's fake relay I/O, able to allocate.
 * One test alone: pass its name as argv[1]. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "config.h"
#include "ratelimit.h"
#include "server.h"
#include "stun.h"

#define T0 1000000 /* the fake clock's start, ms */

static const uint8_t seed_a[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
static const uint8_t seed_b[16] = {16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1};

static union stun_addr ip(const char *text, unsigned port)
{
    union stun_addr a;
    memset(&a, 0, sizeof(a));
    if (strchr(text, ':')) {
        a.v6.sin6_family = AF_INET6;
        a.v6.sin6_port = htons((uint16_t)port);
        assert_int_equal(inet_pton(AF_INET6, text, &a.v6.sin6_addr), 1);
    } else {
        a.v4.sin_family = AF_INET;
        a.v4.sin_port = htons((uint16_t)port);
        assert_int_equal(inet_pton(AF_INET, text, &a.v4.sin_addr), 1);
    }
    return a;
}

/* 198.51.100.0 + i (i < 2^16 spills into the next /24s: every one a distinct /32). */
static union stun_addr ip4_n(uint32_t i)
{
    union stun_addr a;
    memset(&a, 0, sizeof(a));
    a.v4.sin_family = AF_INET;
    a.v4.sin_addr.s_addr = htonl(0xC6336400u + i);
    return a;
}

/* How many of n takes at now pass. */
static unsigned passes(struct rl_table *t, const union stun_addr *src, unsigned n, uint64_t now)
{
    unsigned k = 0;
    for (unsigned i = 0; i < n; i++)
        k += rl_take(t, src, true, now) == RL_PASS;
    return k;
}

/* ---- the keyed hash ---- */

/* SipHash-2-4, key 00..0f, message 00..0f: the reference implementation's vectors[16]. */
static void siphash_reference_vector(void **state)
{
    (void)state;
    uint64_t k0 = 0x0706050403020100ull, k1 = 0x0f0e0d0c0b0a0908ull;
    assert_int_equal(rl_siphash16(k0, k1, k0, k1), 0x3f2acc7f57c29bdbull);
}

/* Another seed puts sources in other sets: which sources share a set is not predictable. */
static void seed_changes_the_sets(void **state)
{
    (void)state;
    struct rl_table a, b;
    assert_int_equal(rl_init(&a, 4096, 10, 20, 0, seed_a), 0);
    assert_int_equal(rl_init(&b, 4096, 10, 20, 0, seed_b), 0);
    assert_int_equal(a.nsets, 512);
    unsigned same = 0;
    for (uint64_t p = 0; p < 256; p++)
        same += (rl_siphash16(a.k0, a.k1, 4, p) & 511) == (rl_siphash16(b.k0, b.k1, 4, p) & 511);
    assert_true(same < 16); /* 0.5 expected by chance */
    rl_free(&a);
    rl_free(&b);
}

/* ---- buckets ---- */

static void burst_then_refill(void **state)
{
    (void)state;
    struct rl_table t;
    union stun_addr a = ip("192.0.2.1", 1000);
    assert_int_equal(rl_init(&t, 64, 10, 20, 0, seed_a), 0);
    assert_int_equal(passes(&t, &a, 100, T0), 20); /* a new source starts with its burst */
    assert_int_equal(rl_take(&t, &a, true, T0 + 99), RL_SOURCE); /* 0.99 tokens */
    assert_int_equal(rl_take(&t, &a, true, T0 + 100), RL_PASS);
    assert_int_equal(rl_take(&t, &a, true, T0 + 100), RL_SOURCE);
    /* Asked every millisecond for a second: exactly the rate, however small each step. */
    unsigned k = 0;
    for (uint64_t ms = 1; ms <= 1000; ms++)
        k += rl_take(&t, &a, true, T0 + 100 + ms) == RL_PASS;
    assert_int_equal(k, 10);
    /* Idle for an hour: full again, and no more than the burst. */
    assert_int_equal(passes(&t, &a, 100, T0 + 3600 * 1000), 20);
    /* Time going backwards (never from the relay, but harmless): no tokens from it. */
    assert_int_equal(rl_take(&t, &a, true, T0), RL_SOURCE);
    rl_free(&t);
}

/* The port never matters; IPv4 groups by /32, IPv6 by /64, an IPv4-mapped IPv6 source is
 * its IPv4 address. */
static void prefixes(void **state)
{
    (void)state;
    struct rl_table t;
    assert_int_equal(rl_init(&t, 4096, 1, 5, 0, seed_a), 0);
    union stun_addr v4 = ip("192.0.2.1", 1), v4port = ip("192.0.2.1", 2);
    union stun_addr v4next = ip("192.0.2.2", 1), mapped = ip("::ffff:192.0.2.1", 3);
    union stun_addr v6a = ip("2001:db8:1:2::1", 1), v6b = ip("2001:db8:1:2:ffff:ffff:ffff:ffff", 1);
    union stun_addr v6other = ip("2001:db8:1:3::1", 1);
    assert_int_equal(passes(&t, &v4, 3, T0), 3);
    assert_int_equal(passes(&t, &v4port, 3, T0), 2);
    assert_int_equal(passes(&t, &mapped, 3, T0), 0);
    assert_int_equal(passes(&t, &v4next, 9, T0), 5);
    assert_int_equal(passes(&t, &v6a, 3, T0), 3);
    assert_int_equal(passes(&t, &v6b, 9, T0), 2);
    assert_int_equal(passes(&t, &v6other, 9, T0), 5);
    rl_free(&t);
}

/* Memory is the table, whatever the number of sources; a full set forgets its least recently
 * seen source (which comes back with a full bucket), never one that keeps sending. */
static void eviction_bound(void **state)
{
    (void)state;
    struct rl_table t;
    assert_int_equal(rl_init(&t, 64, 1, 3, 0, seed_a), 0);
    assert_int_equal(t.nsets * RL_WAYS, 64);
    union stun_addr busy = ip("203.0.113.9", 1);
    assert_int_equal(passes(&t, &busy, 3, T0), 3); /* emptied */
    unsigned busy_passes = 0;
    for (uint32_t i = 0; i < 10000; i++) { /* one new source per millisecond for 10 s */
        union stun_addr s = ip4_n(i);
        assert_int_equal(rl_take(&t, &s, true, T0 + 1 + i), RL_PASS); /* new: full */
        /* busy asks every millisecond, so it is the most recent of its set: never evicted,
         * it only ever gets its refill (1 per second); evicted, it would start full again. */
        busy_passes += rl_take(&t, &busy, true, T0 + 1 + i) == RL_PASS;
    }
    assert_int_equal(busy_passes, 10);
    unsigned used = 0;
    bool first_kept = false;
    for (size_t i = 0; i < t.nsets * RL_WAYS; i++) {
        used += t.e[i].family != 0;
        first_kept |= t.e[i].family == 4 && t.e[i].prefix == 0xC6336400u;
    }
    assert_int_equal(t.evictions + used, 10000 + 1);
    assert_true(t.evictions >= 10000 + 1 - 64);
    assert_false(first_kept); /* the first newcomer, never seen again, was forgotten */
    rl_free(&t);
}

/* The cap over all sources: a flood where every packet has a new (spoofed) source. A source
 * refused by the cap keeps its own token. */
static void global_cap(void **state)
{
    (void)state;
    struct rl_table t;
    assert_int_equal(rl_init(&t, 4096, 1, 20, 50, seed_a), 0);
    unsigned pass = 0, global = 0;
    for (uint32_t i = 0; i < 200; i++) {
        union stun_addr s = ip4_n(i);
        enum rl_verdict v = rl_take(&t, &s, true, T0);
        pass += v == RL_PASS;
        global += v == RL_GLOBAL;
    }
    assert_int_equal(pass, 50); /* one second's worth at once */
    assert_int_equal(global, 150);
    /* 100 ms later: 5 more, in all. */
    pass = 0;
    for (uint32_t i = 200; i < 300; i++) {
        union stun_addr s = ip4_n(i);
        pass += rl_take(&t, &s, true, T0 + 100) == RL_PASS;
    }
    assert_int_equal(pass, 5);
    /* Source 199 was refused by the cap only: its 20 tokens are intact (debited, it would
     * have 19.5 now; the cap has refilled to 20). */
    union stun_addr s199 = ip4_n(199);
    assert_int_equal(passes(&t, &s199, 30, T0 + 500), 20);
    /* per_source false: only the cap applies. */
    union stun_addr s0 = ip4_n(0);
    unsigned k = 0;
    for (int i = 0; i < 100; i++)
        k += rl_take(&t, &s0, false, T0 + 5000) == RL_PASS;
    assert_int_equal(k, 50);
    rl_free(&t);
}

static void disabled(void **state)
{
    (void)state;
    struct rl_table t;
    assert_int_equal(rl_init(&t, 4096, 0, 20, 0, seed_a), 0);
    assert_null(t.e); /* no per-source limit: no table */
    union stun_addr a = ip("192.0.2.1", 1);
    assert_int_equal(passes(&t, &a, 100000, T0), 100000);
    rl_free(&t);
}

/* ---- the server hook: a fake relay (copied in brief from test_server.c) that allocates ---- */

static const char realm[] = "example.org";

static void fake_random(void *ctx, void *buf, size_t len)
{
    (void)ctx;
    memset(buf, 0xA5, len);
}
static int fake_port_take(void *ctx, unsigned pool, bool even, bool reserve_next, uint64_t token,
                          uint64_t now_s, uint16_t *port)
{
    static uint16_t next = 50000;
    (void)ctx, (void)pool, (void)even, (void)reserve_next, (void)token, (void)now_s;
    *port = next++;
    return 0;
}
static int fake_port_claim(void *ctx, uint64_t token, uint64_t now_s, unsigned *pool,
                           uint16_t *port)
{
    (void)ctx, (void)token, (void)now_s, (void)pool, (void)port;
    return -1;
}
static void fake_port_release(void *ctx, unsigned pool, uint16_t port)
{
    (void)ctx, (void)pool, (void)port;
}
static int fake_relay_open(void *ctx, struct allocation *a, struct alloc_relay *r)
{
    (void)ctx, (void)a;
    r->io = r; /* any non-NULL handle */
    return 0;
}
static void fake_relay_close(void *ctx, struct allocation *a, struct alloc_relay *r)
{
    (void)ctx, (void)a, (void)r;
}
static int fake_quota_take(void *ctx, const char *user, size_t ulen, uint32_t user_max)
{
    (void)ctx, (void)user, (void)ulen, (void)user_max;
    return 0;
}
static void fake_quota_release(void *ctx, const char *user, size_t ulen)
{
    (void)ctx, (void)user, (void)ulen;
}

struct fixture {
    struct srv s;
    struct auth_users users;
    struct auth_creds creds;
    struct auth_nonce_key nonce_key;
    struct peer_policy policy;
    union stun_addr relay_addr;
    uint32_t tid; /* a fresh transaction ID per request */
};

static void fx_init(struct fixture *fx, uint32_t rate, uint32_t burst, uint32_t global)
{
    memset(fx, 0, sizeof(*fx));
    const char *const names[] = {"alice"}, *const passwords[] = {"s3cret"};
    assert_int_equal(auth_users_init(&fx->users, realm, names, passwords, 1), 0);
    fx->creds = auth_users_creds(&fx->users);
    memset(fx->nonce_key.secret, 0x42, sizeof(fx->nonce_key.secret));
    fx->relay_addr = ip("192.0.2.100", 0);
    const struct srv_options opt = {
        .realm = realm,
        .default_lifetime_s = 600,
        .max_lifetime_s = 3600,
        .nonce_lifetime_s = 600,
        .policy = &fx->policy,
        .creds = &fx->creds,
        .nonce_key = &fx->nonce_key,
        .relay_addrs = &fx->relay_addr,
        .nrelay_addrs = 1,
        .unauth_rate = rate,
        .unauth_burst = burst,
        .unauth_global_rate = global,
    };
    const struct srv_io io = {
        .port_take = fake_port_take,
        .port_claim = fake_port_claim,
        .port_release = fake_port_release,
        .relay_open = fake_relay_open,
        .relay_close = fake_relay_close,
        .quota_take = fake_quota_take,
        .quota_release = fake_quota_release,
        .random = fake_random,
    };
    assert_int_equal(srv_init(&fx->s, &opt, &io, 0), 0);
}

static void fx_free(struct fixture *fx)
{
    srv_free(&fx->s);
    auth_users_free(&fx->users);
}

static struct srv_tuple tuple(enum srv_transport tr, const char *client, unsigned port)
{
    struct srv_tuple t;
    memset(&t, 0, sizeof(t));
    t.transport = tr;
    t.client = ip(client, port);
    t.local = ip(strchr(client, ':') ? "2001:db8::1" : "198.51.100.1", 3478);
    return t;
}

static void start(struct fixture *fx, struct stun_enc *e, uint8_t *buf, size_t cap, uint16_t method)
{
    uint8_t tid[STUN_TID_LEN] = {0};
    fx->tid++;
    memcpy(tid, &fx->tid, sizeof(fx->tid));
    stun_enc_init(e, buf, cap, stun_type(method, STUN_REQUEST), tid);
}

static size_t done(const struct stun_enc *e)
{
    int n = stun_enc_finish(e);
    if (n <= 0) fail_msg("building the request failed: %s", stun_errname(n));
    return (size_t)n;
}

/* The 20-byte flood request: Allocate without attributes. */
static size_t bare(struct fixture *fx, uint8_t *buf, size_t cap, uint16_t method)
{
    struct stun_enc e;
    start(fx, &e, buf, cap, method);
    return done(&e);
}

/* An authenticated request of alice's (nonce made for t's client at now). */
static size_t authed(struct fixture *fx, uint8_t *buf, size_t cap, uint16_t method,
                     const struct srv_tuple *t, uint64_t nonce_s)
{
    char nonce[AUTH_NONCE_LEN];
    uint8_t key[16];
    assert_int_equal(auth_longterm_key(STUN_PASSWORD_ALG_MD5, "alice", 5, realm, strlen(realm),
                                       "s3cret", 6, key),
                     16);
    auth_nonce_make(&fx->nonce_key, &t->client, nonce_s, 600, 0, nonce);
    struct stun_enc e;
    start(fx, &e, buf, cap, method);
    if (method == STUN_ALLOCATE)
        stun_enc_u32(&e, STUN_ATTR_REQUESTED_TRANSPORT, (uint32_t)STUN_TRANSPORT_UDP << 24);
    stun_enc_attr(&e, STUN_ATTR_USERNAME, "alice", 5);
    stun_enc_attr(&e, STUN_ATTR_REALM, realm, strlen(realm));
    stun_enc_attr(&e, STUN_ATTR_NONCE, nonce, AUTH_NONCE_LEN);
    stun_enc_integrity(&e, key, sizeof(key));
    return done(&e);
}

struct tally {
    unsigned sent, answered;
    int last_code; /* error code of the last answer; 0: a success */
    bool last_mi;  /* the last answer carried MESSAGE-INTEGRITY */
};

static void send_n(struct fixture *fx, const struct srv_tuple *t, const uint8_t *req, size_t len,
                   unsigned n, uint64_t now, struct tally *ty)
{
    uint8_t out[1500];
    for (unsigned i = 0; i < n; i++) {
        struct srv_fwd fwd;
        size_t k = srv_handle(&fx->s, t, NULL, req, len, now, out, sizeof(out), &fwd);
        ty->sent++;
        if (!k) continue;
        ty->answered++;
        struct stun_msg m;
        assert_int_equal(stun_decode(&m, out, k), 0);
        const struct stun_attr *ec = stun_find(&m, STUN_ATTR_ERROR_CODE);
        ty->last_code = ec ? (ec->val[2] & 7) * 100 + ec->val[3] : 0;
        ty->last_mi = m.integrity >= 0;
    }
}

/* Every message is answered or lands in exactly one drop_ counter. */
static void assert_outcomes_add_up(const struct fixture *fx, const struct tally *ty)
{
    uint64_t drops = 0;
    for (int i = 0; i < SRV_C_COUNT; i++)
        if (strncmp(srv_counter_names[i], "drop_", 5) == 0) drops += fx->s.c.v[i];
    assert_int_equal(ty->answered + drops, ty->sent);
}
#define C(fx, name) ((fx)->s.c.v[SRV_C_##name])

/* N unauthenticated requests from one source: exactly burst answers, then counted drops;
 * another source still gets its answers; the source's rate comes back with time. */
static void server_flood_one_source(void **state)
{
    (void)state;
    struct fixture fx;
    fx_init(&fx, 10, 20, 0);
    uint8_t req[64];
    size_t n = bare(&fx, req, sizeof(req), STUN_ALLOCATE);
    assert_int_equal(n, 20);
    struct srv_tuple a = tuple(SRV_UDP, "192.0.2.1", 5000), b = tuple(SRV_UDP, "192.0.2.2", 5000);
    struct tally ta = {0}, tb = {0};
    send_n(&fx, &a, req, n, 1000, T0, &ta);
    assert_int_equal(ta.answered, 20);
    assert_int_equal(ta.last_code, 401);
    assert_int_equal(C(&fx, error_401), 20);
    assert_int_equal(C(&fx, drop_unauth_ratelimited), 980);
    assert_int_equal(C(&fx, drop_unauth_global), 0);
    assert_int_equal(C(&fx, rx_stun), 1000);
    send_n(&fx, &b, req, n, 5, T0, &tb);
    assert_int_equal(tb.answered, 5);
    struct srv_tuple a2 = tuple(SRV_UDP, "192.0.2.1", 6000); /* same /32, other port */
    send_n(&fx, &a2, req, n, 5, T0, &ta);
    assert_int_equal(ta.answered, 20);
    send_n(&fx, &a, req, n, 100, T0 + 1000, &ta);
    assert_int_equal(ta.answered, 30);
    assert_outcomes_add_up(
        &fx, &(struct tally){.sent = ta.sent + tb.sent, .answered = ta.answered + tb.answered});
    fx_free(&fx);
}

/* Every answer sent before authentication counts: 400 (unknown method, missing attributes,
 * malformed), 420 (Binding with an unknown attribute), 438 (stale nonce), 401 (wrong MAC).
 * Binding successes never do. */
static void server_preauth_answers_limited(void **state)
{
    (void)state;
    struct fixture fx;
    fx_init(&fx, 1, 2, 0);
    struct srv_tuple t = tuple(SRV_UDP, "192.0.2.7", 5000);
    uint8_t req[256];
    struct stun_enc e;
    struct tally ty = {0};
    unsigned answered = 0;
    /* A Binding success is the STUN service: 1000 of them, all answered, no token taken. */
    size_t n = bare(&fx, req, sizeof(req), STUN_BINDING);
    send_n(&fx, &t, req, n, 1000, T0, &ty);
    assert_int_equal(ty.answered, 1000);
    assert_int_equal(C(&fx, binding_success), 1000);

    struct {
        int code;
        size_t len;
        uint8_t req[256];
    } kinds[6];
    /* 400: a method the server does not implement. */
    start(&fx, &e, kinds[0].req, 256, 0x00F);
    kinds[0].len = done(&e), kinds[0].code = 400;
    /* 420: Binding with an unknown comprehension-required attribute. */
    start(&fx, &e, kinds[1].req, 256, STUN_BINDING);
    stun_enc_attr(&e, 0x7F01, "x", 1);
    kinds[1].len = done(&e), kinds[1].code = 420;
    /* 438: alice's credentials with a nonce 20 minutes old. */
    kinds[2].len = authed(&fx, kinds[2].req, 256, STUN_REFRESH, &t, T0 / 1000 - 1200);
    kinds[2].code = 438;
    /* 401: a wrong MAC (one byte of the integrity flipped). */
    kinds[3].len = authed(&fx, kinds[3].req, 256, STUN_REFRESH, &t, T0 / 1000);
    kinds[3].req[kinds[3].len - 1] ^= 1;
    kinds[3].code = 401;
    /* 400: integrity without USERNAME, REALM or NONCE. */
    start(&fx, &e, kinds[4].req, 256, STUN_REFRESH);
    stun_enc_integrity(&e, (const uint8_t *)"k", 1);
    kinds[4].len = done(&e), kinds[4].code = 400;
    /* 400 to a malformed request (an attribute running past the end), as large as the answer. */
    start(&fx, &e, kinds[5].req, 256, STUN_REFRESH);
    stun_enc_attr(&e, STUN_ATTR_SOFTWARE, "0123456789abcdefghij", 20);
    kinds[5].len = done(&e), kinds[5].code = 400;
    kinds[5].req[STUN_HEADER_LEN + 3] = 200; /* SOFTWARE length past the end */
    for (int k = 0; k < 6; k++) {
        struct fixture f2;
        fx_init(&f2, 1, 2, 0);
        struct tally tk = {0};
        send_n(&f2, &t, kinds[k].req, kinds[k].len, 10, T0, &tk);
        if (tk.answered != 2 || tk.last_code != kinds[k].code)
            fail_msg("kind %d: %u answers (want 2), last code %d (want %d)", k, tk.answered,
                     tk.last_code, kinds[k].code);
        assert_int_equal(f2.s.c.v[SRV_C_drop_unauth_ratelimited], 8);
        assert_outcomes_add_up(&f2, &tk);
        answered += tk.answered;
        fx_free(&f2);
    }
    assert_int_equal(answered, 12);
    fx_free(&fx);
}

/* TCP and TLS sources cannot be spoofed and never retransmit: not limited. */
static void server_streams_not_limited(void **state)
{
    (void)state;
    struct fixture fx;
    fx_init(&fx, 1, 1, 1);
    uint8_t req[64];
    size_t n = bare(&fx, req, sizeof(req), STUN_ALLOCATE);
    struct srv_tuple t = tuple(SRV_TCP, "192.0.2.1", 5000), s = tuple(SRV_TLS, "192.0.2.1", 5001);
    struct tally ty = {0};
    send_n(&fx, &t, req, n, 100, T0, &ty);
    send_n(&fx, &s, req, n, 100, T0, &ty);
    assert_int_equal(ty.answered, 200);
    assert_int_equal(C(&fx, error_401), 200);
    fx_free(&fx);
}

/* A client whose requests authenticate is answered however hard its /32 (or its own 5-tuple)
 * is flooded; the 5-tuple of a live allocation is exempt from its source's bucket (its
 * stale-nonce 438s must get through) but not from the global cap. */
static void server_authenticated_never_limited(void **state)
{
    (void)state;
    struct fixture fx;
    fx_init(&fx, 10, 20, 100);
    uint8_t req[256], flood[64];
    size_t fn = bare(&fx, flood, sizeof(flood), STUN_ALLOCATE);
    struct srv_tuple client = tuple(SRV_UDP, "192.0.2.1", 5000);
    struct srv_tuple attacker = tuple(SRV_UDP, "192.0.2.1", 6666); /* same /32 */
    struct tally tc = {0}, tf = {0};
    size_t n = authed(&fx, req, sizeof(req), STUN_ALLOCATE, &client, T0 / 1000);
    send_n(&fx, &client, req, n, 1, T0, &tc);
    assert_int_equal(tc.last_code, 0);
    assert_int_equal(C(&fx, allocate_success), 1);
    send_n(&fx, &attacker, flood, fn, 1000, T0, &tf);
    assert_int_equal(tf.answered, 20);
    for (int i = 0; i < 200; i++) { /* Refresh and CreatePermission-less traffic: all answered */
        n = authed(&fx, req, sizeof(req), STUN_REFRESH, &client, T0 / 1000);
        send_n(&fx, &client, req, n, 1, T0 + 1, &tc);
    }
    assert_int_equal(tc.answered, 201);
    assert_true(tc.last_mi);
    assert_int_equal(C(&fx, refresh_success), 200);
    /* Its stale nonce: answered (438) although its /32's bucket is empty. */
    n = authed(&fx, req, sizeof(req), STUN_REFRESH, &client, T0 / 1000 - 1200);
    send_n(&fx, &client, req, n, 1, T0 + 2, &tc);
    assert_int_equal(tc.answered, 202);
    assert_int_equal(tc.last_code, 438);
    /* ... and another 5-tuple of that /32 still is not. */
    send_n(&fx, &attacker, flood, fn, 1, T0 + 2, &tf);
    assert_int_equal(tf.answered, 20);
    /* The global cap (100 per second; 21 used) still holds for the allocation's 5-tuple. */
    send_n(&fx, &client, flood, fn, 200, T0 + 3, &tc);
    assert_int_equal(tc.answered, 202 + 79);
    assert_int_equal(C(&fx, drop_unauth_global), 121);
    assert_outcomes_add_up(
        &fx, &(struct tally){.sent = tc.sent + tf.sent, .answered = tc.answered + tf.answered});
    fx_free(&fx);
}

/* Every request from a new (spoofed) source: the global cap bounds the answers. */
static void server_global_cap(void **state)
{
    (void)state;
    struct fixture fx;
    fx_init(&fx, 10, 20, 30);
    uint8_t req[64];
    size_t n = bare(&fx, req, sizeof(req), STUN_ALLOCATE);
    struct tally ty = {0};
    for (uint32_t i = 0; i < 1000; i++) {
        struct srv_tuple t = tuple(SRV_UDP, "192.0.2.1", 5000);
        t.client = ip4_n(i);
        send_n(&fx, &t, req, n, 1, T0 + i, &ty); /* one second */
    }
    /* 30 at once, then 30 per second: 30 + 999 ms x 0.03 = 59.97. */
    assert_int_equal(ty.answered, 59);
    assert_int_equal(C(&fx, drop_unauth_global), 1000 - 59);
    assert_int_equal(C(&fx, drop_unauth_ratelimited), 0);
    assert_outcomes_add_up(&fx, &ty);
    fx_free(&fx);
}

/* All limits off (0): the server answers everything, as before. */
static void server_limits_off(void **state)
{
    (void)state;
    struct fixture fx;
    fx_init(&fx, 0, 0, 0);
    uint8_t req[64];
    size_t n = bare(&fx, req, sizeof(req), STUN_ALLOCATE);
    struct srv_tuple t = tuple(SRV_UDP, "2001:db8::1", 5000);
    struct tally ty = {0};
    send_n(&fx, &t, req, n, 10000, T0, &ty);
    assert_int_equal(ty.answered, 10000);
    fx_free(&fx);
}

/* ---- configuration ---- */

static int parse(struct tern_config *c, const char *text)
{
    char *msgs = NULL;
    size_t mlen = 0;
    FILE *err = open_memstream(&msgs, &mlen);
    int rc = cfg_parse(c, "t.yaml", text, strlen(text), err);
    fclose(err);
    if (rc == 0 && mlen) fail_msg("unexpected messages: %s", msgs);
    free(msgs);
    return rc;
}

static void config_keys(void **state)
{
    (void)state;
    struct tern_config c;
    assert_int_equal(parse(&c, ""), 0); /* the table defaults */
    assert_int_equal(c.unauth_rate, 100);
    assert_int_equal(c.unauth_burst, 200);
    assert_int_equal(c.unauth_global_rate, 5000);
    cfg_free(&c);
    assert_int_equal(parse(&c, cfg_default_yaml), 0); /* tern.yaml says the same */
    assert_int_equal(c.unauth_rate, 100);
    assert_int_equal(c.unauth_burst, 200);
    assert_int_equal(c.unauth_global_rate, 5000);
    cfg_free(&c);
    assert_int_equal(parse(&c, "auth: { unauthenticated_rate: 0, unauthenticated_burst: 1,"
                               " unauthenticated_global_rate: 0 }\n"),
                     0);
    assert_int_equal(c.unauth_rate, 0);
    assert_int_equal(c.unauth_burst, 1);
    assert_int_equal(c.unauth_global_rate, 0);
    cfg_free(&c);
    assert_int_equal(parse(&c, "auth: { unauthenticated_burst: 0 }\n"), -1);
    assert_int_equal(parse(&c, "auth: { unauthenticated_rate: -1 }\n"), -1);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(siphash_reference_vector),
        cmocka_unit_test(seed_changes_the_sets),
        cmocka_unit_test(burst_then_refill),
        cmocka_unit_test(prefixes),
        cmocka_unit_test(eviction_bound),
        cmocka_unit_test(global_cap),
        cmocka_unit_test(disabled),
        cmocka_unit_test(server_flood_one_source),
        cmocka_unit_test(server_preauth_answers_limited),
        cmocka_unit_test(server_streams_not_limited),
        cmocka_unit_test(server_authenticated_never_limited),
        cmocka_unit_test(server_global_cap),
        cmocka_unit_test(server_limits_off),
        cmocka_unit_test(config_keys),
    };
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
