/* test_server.c: srv_handle, the STUN/TURN request handler, for what needs no allocation:
 * Binding answers, 400/401/420 errors, and which counter every dropped message lands in.
 * Each message goes to a fresh server (fake relay I/O); inputs and outputs sit against guard
 * pages and every response must itself decode. One test alone: pass its name as argv[1]. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdbool.h>
#include <string.h>

#include "fake_io.h"
#include "addr.h"
#include "server.h"
#include "stun.h"
#include "testutil.h"
#include "users.h"

#define OUTCAP 1500

static const uint8_t tid_a[STUN_TID_LEN] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
/* SOFTWARE settings: none, empty (also none), and a value. */
static const char *const sw_none = NULL;
static const char *const sw_empty = "";
static const char *const sw_set = "tern/0.1 test";
static const char realm[] = "example.org";

/* ---- a server with fake relay I/O (no allocation can succeed, none is needed) ----------- */

struct fixture {
    struct srv s;
    struct auth_users users;
    struct auth_creds creds;
    struct auth_nonce_key nonce_key;
    struct peer_policy policy;
    union stun_addr relay_addrs[2];
    struct fake_io io; /* refuses every port, socket and quota */
};

static void fx_init(struct fixture *fx, const char *software)
{
    memset(fx, 0, sizeof(*fx));
    const char *const names[] = {"alice"}, *const passwords[] = {"s3cret"};
    assert_int_equal(auth_users_init(&fx->users, realm, names, passwords, 1), 0);
    fx->creds = auth_users_creds(&fx->users);
    memset(fx->nonce_key.secret, 0x42, sizeof(fx->nonce_key.secret));
    fx->relay_addrs[0].v4.sin_family = AF_INET;
    inet_pton(AF_INET, "192.0.2.100", &fx->relay_addrs[0].v4.sin_addr);
    fx->relay_addrs[1].v6.sin6_family = AF_INET6;
    inet_pton(AF_INET6, "2001:db8::100", &fx->relay_addrs[1].v6.sin6_addr);
    const struct srv_options opt = {
        .software = software,
        .realm = realm,
        .default_lifetime_s = 600,
        .max_lifetime_s = 3600,
        .nonce_lifetime_s = 600,
        .policy = &fx->policy,
        .creds = &fx->creds,
        .nonce_key = &fx->nonce_key,
        .relay_addrs = fx->relay_addrs,
        .nrelay_addrs = 2,
    };
    fake_io_init(&fx->io, 0, 0);
    fx->io.refuse = true;
    fx->io.fixed_random = true;
    fx->io.random_byte = 0xA5;
    const struct srv_io io = fake_io_srv_io(&fx->io);
    assert_int_equal(srv_init(&fx->s, &opt, &io, 0), 0);
}

static void fx_free(struct fixture *fx)
{
    srv_free(&fx->s);
    auth_users_free(&fx->users);
}

/* ---- helpers ---------------------------------------------------------------------------- */

static union stun_addr mk_addr(int family, const char *ip, uint16_t port)
{
    union stun_addr a;
    assert_true(addr_parse(ip, port, &a));
    assert_int_equal(a.sa.sa_family, family);
    return a;
}

static struct srv_tuple tuple4(enum srv_transport tr)
{
    struct srv_tuple t;
    memset(&t, 0, sizeof(t));
    t.transport = tr;
    t.client = mk_addr(AF_INET, "192.0.2.1", 32853);
    t.local = mk_addr(AF_INET, "198.51.100.1", 3478);
    return t;
}

static struct srv_tuple tuple6(enum srv_transport tr)
{
    struct srv_tuple t;
    memset(&t, 0, sizeof(t));
    t.transport = tr;
    t.client = mk_addr(AF_INET6, "2001:db8:1234:5678:11:2233:4455:6677", 50001);
    t.local = mk_addr(AF_INET6, "2001:db8::1", 3478);
    return t;
}

static void assert_addr_equal(const union stun_addr *got, const union stun_addr *want)
{
    assert_int_equal(got->sa.sa_family, want->sa.sa_family);
    if (want->sa.sa_family == AF_INET) {
        assert_int_equal(got->v4.sin_port, want->v4.sin_port);
        assert_memory_equal(&got->v4.sin_addr, &want->v4.sin_addr, 4);
    } else {
        assert_int_equal(got->v6.sin6_port, want->v6.sin6_port);
        assert_memory_equal(&got->v6.sin6_addr, &want->v6.sin6_addr, 16);
    }
}

/* A reply copied out of the guard-page output buffer, and decoded. */
struct reply {
    uint8_t buf[OUTCAP];
    size_t len;
    struct stun_msg m;
};

/* Run srv_handle of a fresh server on a guard-placed copy of in, writing into a guard-placed
 * buffer of outcap bytes; *c gets the server's counters. A reply must decode, carry the
 * request's transaction ID, and be a response; nothing is ever forwarded. */
static size_t handle_cap(const char *software, const struct srv_tuple *t, const uint8_t *in,
                         size_t inlen, size_t outcap, struct reply *r, struct srv_counters *c)
{
    static const uint8_t zeros[OUTCAP];
    static struct fixture fx;
    assert_true(outcap <= OUTCAP);
    fx_init(&fx, software);
    uint8_t *gin = guard_place(in, inlen);
    uint8_t *gout = guard_place(zeros, outcap);
    struct srv_fwd fwd;
    memset(&fwd, 0xEE, sizeof(fwd));
    r->len = srv_handle(&fx.s, t, NULL, gin, inlen, 12345000, gout, outcap, &fwd);
    assert_null(fwd.a);
    *c = fx.s.c;
    fx_free(&fx);
    assert_true(r->len <= outcap);
    memcpy(r->buf, gout, r->len);
    guard_free(gout, outcap);
    guard_free(gin, inlen);
    if (r->len) {
        int rc = stun_decode(&r->m, r->buf, r->len);
        if (rc) fail_msg("response does not decode: %s", stun_errname(rc));
        assert_true(inlen >= STUN_HEADER_LEN);
        assert_memory_equal(r->m.tid, in + 8, STUN_TID_LEN);
        enum stun_class cls = stun_class_of(r->m.type);
        assert_true(cls == STUN_SUCCESS || cls == STUN_ERROR);
        assert_int_equal(stun_method_of(r->m.type), stun_method_of((uint16_t)(in[0] << 8 | in[1])));
        assert_int_not_equal(stun_check_fingerprint(&r->m), STUN_E_BAD_FINGERPRINT);
        assert_int_equal(r->m.nunknown, 0);
    }
    return r->len;
}

static size_t handle(const char *software, const struct srv_tuple *t, const uint8_t *in,
                     size_t inlen, struct reply *r, struct srv_counters *c)
{
    return handle_cap(software, t, in, inlen, OUTCAP, r, c);
}

/* Every counter equals want (unnamed ones are zero). */
static void expect_counters(const struct srv_counters *got, const struct srv_counters *want)
{
    for (int i = 0; i < SRV_C_COUNT; i++) {
        if (got->v[i] != want->v[i])
            fail_msg("counter %s: got %llu, want %llu", srv_counter_names[i],
                     (unsigned long long)got->v[i], (unsigned long long)want->v[i]);
    }
}
#define EXPECT(c, ...) expect_counters((c), &(struct srv_counters){.v = {__VA_ARGS__}})

static void begin(struct stun_enc *e, uint8_t *buf, size_t cap, uint16_t method,
                  enum stun_class cls)
{
    stun_enc_init(e, buf, cap, stun_type(method, cls), tid_a);
}

static size_t done(const struct stun_enc *e)
{
    int n = stun_enc_finish(e);
    if (n <= 0) fail_msg("building the request failed: %s", stun_errname(n));
    return (size_t)n;
}

/* A Binding request with optional SOFTWARE and FINGERPRINT. */
static size_t binding_request(uint8_t *buf, size_t cap, bool software, bool fingerprint)
{
    struct stun_enc e;
    begin(&e, buf, cap, STUN_BINDING, STUN_REQUEST);
    if (software) stun_enc_attr(&e, STUN_ATTR_SOFTWARE, "client 1.0", 10);
    if (fingerprint) stun_enc_fingerprint(&e);
    return done(&e);
}

static void check_error(const struct reply *r, int want_code)
{
    assert_int_equal(stun_class_of(r->m.type), STUN_ERROR);
    const struct stun_attr *a = stun_find(&r->m, STUN_ATTR_ERROR_CODE);
    assert_non_null(a);
    int code;
    const char *reason;
    size_t rlen;
    assert_int_equal(stun_get_error(a, &code, &reason, &rlen), 0);
    assert_int_equal(code, want_code);
    const char *def = stun_error_reason(want_code);
    assert_int_equal(rlen, strlen(def));
    assert_memory_equal(reason, def, rlen);
}

/* ---- Binding ---------------------------------------------------------------------------- */

static void check_binding(const struct srv_tuple *t)
{
    uint8_t req[64];
    size_t n = binding_request(req, sizeof(req), false, false);
    struct reply r;
    struct srv_counters c;
    assert_true(handle(sw_none, t, req, n, &r, &c) > 0);
    EXPECT(&c, [SRV_C_rx_stun] = 1, [SRV_C_binding_success] = 1);
    assert_int_equal(r.m.type, stun_type(STUN_BINDING, STUN_SUCCESS));
    assert_memory_equal(r.m.tid, tid_a, STUN_TID_LEN);
    assert_int_equal(r.m.nattrs, 1);
    const struct stun_attr *a = stun_find(&r.m, STUN_ATTR_XOR_MAPPED_ADDRESS);
    assert_non_null(a);
    assert_int_equal(a->len, t->client.sa.sa_family == AF_INET ? 8 : 20);
    union stun_addr got;
    assert_int_equal(stun_get_xor_addr(&r.m, a, &got), 0);
    assert_addr_equal(&got, &t->client);
    assert_int_equal(r.m.fingerprint, -1);
    assert_null(stun_find(&r.m, STUN_ATTR_SOFTWARE));
}

static void test_binding_ipv4(void **state)
{
    (void)state;
    const enum srv_transport trs[] = {SRV_UDP, SRV_TCP, SRV_TLS};
    for (size_t i = 0; i < 3; i++) {
        struct srv_tuple t = tuple4(trs[i]);
        check_binding(&t);
    }
    struct srv_tuple t = tuple4(SRV_UDP);
    t.client = mk_addr(AF_INET, "255.255.255.255", 65535);
    check_binding(&t);
    t.client = mk_addr(AF_INET, "0.0.0.0", 1);
    check_binding(&t);
}

static void test_binding_ipv6(void **state)
{
    (void)state;
    const enum srv_transport trs[] = {SRV_UDP, SRV_TCP, SRV_TLS};
    for (size_t i = 0; i < 3; i++) {
        struct srv_tuple t = tuple6(trs[i]);
        check_binding(&t);
    }
    struct srv_tuple t = tuple6(SRV_UDP);
    t.client = mk_addr(AF_INET6, "::ffff:192.0.2.44", 4444);
    check_binding(&t);
    t.client = mk_addr(AF_INET6, "fe80::1", 1);
    check_binding(&t);
}

static void test_binding_fingerprint_iff_request(void **state)
{
    (void)state;
    struct srv_tuple t = tuple4(SRV_UDP);
    for (int fp = 0; fp < 2; fp++) {
        for (int sw = 0; sw < 2; sw++) {
            uint8_t req[64];
            size_t n = binding_request(req, sizeof(req), sw != 0, fp != 0);
            struct reply r;
            struct srv_counters c;
            assert_true(handle(sw_none, &t, req, n, &r, &c) > 0);
            EXPECT(&c, [SRV_C_rx_stun] = 1, [SRV_C_binding_success] = 1);
            if (fp) {
                assert_int_equal(r.m.fingerprint, r.m.nattrs - 1);
                assert_int_equal(stun_check_fingerprint(&r.m), 0);
            } else {
                assert_int_equal(r.m.fingerprint, -1);
                assert_int_equal(stun_check_fingerprint(&r.m), 1);
            }
        }
    }
}

static void test_binding_software_iff_configured(void **state)
{
    (void)state;
    struct srv_tuple t = tuple6(SRV_UDP);
    const char *const opts[] = {sw_none, sw_empty, sw_set};
    for (size_t i = 0; i < 3; i++) {
        for (int fp = 0; fp < 2; fp++) {
            uint8_t req[64];
            size_t n = binding_request(req, sizeof(req), false, fp != 0);
            struct reply r;
            struct srv_counters c;
            assert_true(handle(opts[i], &t, req, n, &r, &c) > 0);
            EXPECT(&c, [SRV_C_rx_stun] = 1, [SRV_C_binding_success] = 1);
            const struct stun_attr *sw = stun_find(&r.m, STUN_ATTR_SOFTWARE);
            if (opts[i] == sw_set) {
                assert_non_null(sw);
                assert_int_equal(sw->len, strlen(sw_set));
                assert_memory_equal(sw->val, sw_set, sw->len);
                /* SOFTWARE comes before FINGERPRINT, which is last. */
                if (fp) assert_true(sw < &r.m.attrs[r.m.fingerprint]);
            } else {
                assert_null(sw);
            }
            assert_int_equal(r.m.nattrs, 1 + (opts[i] == sw_set) + fp);
        }
    }
}

/* Attributes the server does not act on, and MESSAGE-INTEGRITY it cannot check, do not stop
 * a Binding answer. */
static void test_binding_extra_attributes(void **state)
{
    (void)state;
    struct srv_tuple t = tuple4(SRV_UDP);
    uint8_t req[256];
    struct stun_enc e;
    begin(&e, req, sizeof(req), STUN_BINDING, STUN_REQUEST);
    stun_enc_attr(&e, STUN_ATTR_USERNAME, "evtj:h6vY", 9);
    stun_enc_u32(&e, STUN_ATTR_PRIORITY, 0x6e0001ff);
    stun_enc_u64(&e, STUN_ATTR_ICE_CONTROLLED, 0x932ff9b151263b36ull);
    stun_enc_integrity(&e, (const uint8_t *)"pass", 4);
    stun_enc_attr(&e, 0x0002, "ignored after MI", 16); /* unknown, but after MI: ignored */
    stun_enc_fingerprint(&e);
    size_t n = done(&e);
    struct reply r;
    struct srv_counters c;
    assert_true(handle(sw_set, &t, req, n, &r, &c) > 0);
    EXPECT(&c, [SRV_C_rx_stun] = 1, [SRV_C_binding_success] = 1);
    assert_int_equal(r.m.type, stun_type(STUN_BINDING, STUN_SUCCESS));
    assert_int_equal(stun_check_fingerprint(&r.m), 0);
}

/* ---- 420 and 400 ------------------------------------------------------------------------ */

static void test_unknown_required_gets_420(void **state)
{
    (void)state;
    struct srv_tuple t = tuple4(SRV_UDP);
    for (int fp = 0; fp < 2; fp++) {
        uint8_t req[256];
        struct stun_enc e;
        begin(&e, req, sizeof(req), STUN_BINDING, STUN_REQUEST);
        stun_enc_u32(&e, 0x0002, 0);
        stun_enc_attr(&e, STUN_ATTR_SOFTWARE, "client", 6);
        stun_enc_u32(&e, 0x7FFF, 0);
        stun_enc_u32(&e, 0x0002, 1);                   /* listed once */
        stun_enc_u32(&e, STUN_ATTR_CHANGE_REQUEST, 0); /* RFC 5780: not implemented */
        stun_enc_u32(&e, 0x8005, 0);                   /* optional: not listed */
        if (fp) stun_enc_fingerprint(&e);
        size_t n = done(&e);
        struct reply r;
        struct srv_counters c;
        assert_true(handle(sw_set, &t, req, n, &r, &c) > 0);
        EXPECT(&c, [SRV_C_rx_stun] = 1, [SRV_C_error_420] = 1);
        assert_int_equal(r.m.type, stun_type(STUN_BINDING, STUN_ERROR));
        check_error(&r, 420);
        const struct stun_attr *ua = stun_find(&r.m, STUN_ATTR_UNKNOWN_ATTRIBUTES);
        assert_non_null(ua);
        uint16_t types[8];
        size_t nt;
        assert_int_equal(stun_get_unknown(ua, types, 8, &nt), 0);
        assert_int_equal(nt, 3);
        assert_int_equal(types[0], 0x0002);
        assert_int_equal(types[1], 0x7FFF);
        assert_int_equal(types[2], STUN_ATTR_CHANGE_REQUEST);
        assert_null(stun_find(&r.m, STUN_ATTR_XOR_MAPPED_ADDRESS));
        assert_non_null(stun_find(&r.m, STUN_ATTR_SOFTWARE));
        assert_int_equal(r.m.fingerprint >= 0, fp);
        if (fp) assert_int_equal(stun_check_fingerprint(&r.m), 0);
    }
    /* A single unknown attribute (odd count: the list is padded). */
    uint8_t req[64];
    struct stun_enc e;
    begin(&e, req, sizeof(req), STUN_BINDING, STUN_REQUEST);
    stun_enc_attr(&e, 0x0030, NULL, 0);
    size_t n = done(&e);
    struct reply r;
    struct srv_counters c;
    assert_true(handle(sw_none, &t, req, n, &r, &c) > 0);
    EXPECT(&c, [SRV_C_rx_stun] = 1, [SRV_C_error_420] = 1);
    assert_int_equal(r.m.type, stun_type(STUN_BINDING, STUN_ERROR));
    check_error(&r, 420);
    const struct stun_attr *ua = stun_find(&r.m, STUN_ATTR_UNKNOWN_ATTRIBUTES);
    assert_int_equal(ua->len, 2);
    assert_int_equal(ua->val[0] << 8 | ua->val[1], 0x0030);

    /* TURN methods authenticate first (RFC 8489 6.3): without credentials, 401, not 420. */
    begin(&e, req, sizeof(req), STUN_ALLOCATE, STUN_REQUEST);
    stun_enc_attr(&e, 0x0030, NULL, 0);
    n = done(&e);
    assert_true(handle(sw_none, &t, req, n, &r, &c) > 0);
    EXPECT(&c, [SRV_C_rx_stun] = 1, [SRV_C_error_401] = 1);
    check_error(&r, 401);
}

static void test_unknown_optional_ignored(void **state)
{
    (void)state;
    struct srv_tuple t = tuple6(SRV_UDP);
    uint8_t req[128];
    struct stun_enc e;
    begin(&e, req, sizeof(req), STUN_BINDING, STUN_REQUEST);
    stun_enc_u32(&e, 0x8005, 0);
    stun_enc_attr(&e, 0xC001, "xyz", 3);
    stun_enc_attr(&e, 0xFFFF, NULL, 0);
    stun_enc_addr(&e, STUN_ATTR_RESPONSE_ORIGIN, &t.local); /* known, optional */
    stun_enc_fingerprint(&e);
    size_t n = done(&e);
    struct reply r;
    struct srv_counters c;
    assert_true(handle(sw_none, &t, req, n, &r, &c) > 0);
    EXPECT(&c, [SRV_C_rx_stun] = 1, [SRV_C_binding_success] = 1);
    assert_int_equal(r.m.type, stun_type(STUN_BINDING, STUN_SUCCESS));
}

static void test_unsupported_method_gets_400(void **state)
{
    (void)state;
    struct srv_tuple t = tuple4(SRV_UDP);
    const uint16_t methods[] = {0x0FF, 0x002, 0xFFF, 0x000, STUN_SEND, STUN_DATA};
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        for (int fp = 0; fp < 2; fp++) {
            uint8_t req[128];
            struct stun_enc e;
            begin(&e, req, sizeof(req), methods[i], STUN_REQUEST);
            stun_enc_u32(&e, STUN_ATTR_LIFETIME, 600);
            if (fp) stun_enc_fingerprint(&e);
            size_t n = done(&e);
            struct reply r;
            struct srv_counters c;
            assert_true(handle(sw_set, &t, req, n, &r, &c) > 0);
            EXPECT(&c, [SRV_C_rx_stun] = 1, [SRV_C_error_400] = 1);
            assert_int_equal(r.m.type, stun_type(methods[i], STUN_ERROR));
            check_error(&r, 400);
            assert_int_equal(r.m.fingerprint >= 0, fp);
        }
    }
}

/* TURN requests without MESSAGE-INTEGRITY: 401 with what the client needs to authenticate. */
static void test_turn_methods_unauthenticated_401(void **state)
{
    (void)state;
    struct srv_tuple t = tuple6(SRV_UDP);
    const uint16_t methods[] = {STUN_ALLOCATE, STUN_REFRESH, STUN_CREATE_PERMISSION,
                                STUN_CHANNEL_BIND};
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        for (int fp = 0; fp < 2; fp++) {
            uint8_t req[128];
            struct stun_enc e;
            begin(&e, req, sizeof(req), methods[i], STUN_REQUEST);
            if (methods[i] == STUN_ALLOCATE)
                stun_enc_u8_rffu(&e, STUN_ATTR_REQUESTED_TRANSPORT, STUN_TRANSPORT_UDP);
            stun_enc_attr(&e, STUN_ATTR_USERNAME, "alice", 5);
            if (fp) stun_enc_fingerprint(&e);
            size_t n = done(&e);
            struct reply r;
            struct srv_counters c;
            assert_true(handle(sw_set, &t, req, n, &r, &c) > 0);
            EXPECT(&c, [SRV_C_rx_stun] = 1, [SRV_C_error_401] = 1);
            assert_int_equal(r.m.type, stun_type(methods[i], STUN_ERROR));
            check_error(&r, 401);
            const struct stun_attr *a = stun_find(&r.m, STUN_ATTR_REALM);
            assert_non_null(a);
            assert_int_equal(a->len, strlen(realm));
            assert_memory_equal(a->val, realm, a->len);
            a = stun_find(&r.m, STUN_ATTR_NONCE);
            assert_non_null(a);
            assert_true(a->len > 0);
            assert_non_null(stun_find(&r.m, STUN_ATTR_PASSWORD_ALGORITHMS));
            assert_int_equal(r.m.integrity, -1); /* nothing to key it with */
            assert_int_equal(r.m.fingerprint >= 0, fp);
        }
    }
}

/* ---- messages that get no answer -------------------------------------------------------- */

static void test_indications_unanswered(void **state)
{
    (void)state;
    struct srv_tuple t = tuple4(SRV_UDP);
    uint8_t req[128];
    struct stun_enc e;
    struct reply r;
    struct srv_counters c;

    /* Binding indication (a keepalive), with and without FINGERPRINT. */
    for (int fp = 0; fp < 2; fp++) {
        begin(&e, req, sizeof(req), STUN_BINDING, STUN_INDICATION);
        if (fp) stun_enc_fingerprint(&e);
        assert_int_equal(handle(sw_set, &t, req, done(&e), &r, &c), 0);
        EXPECT(&c, [SRV_C_rx_stun] = 1, [SRV_C_binding_indication] = 1);
    }
    /* Binding indication with an unknown comprehension-required attribute. */
    begin(&e, req, sizeof(req), STUN_BINDING, STUN_INDICATION);
    stun_enc_u32(&e, 0x0002, 0);
    assert_int_equal(handle(sw_set, &t, req, done(&e), &r, &c), 0);
    EXPECT(&c, [SRV_C_rx_stun] = 1, [SRV_C_drop_indication] = 1);
    /* A Send indication from a 5-tuple with no allocation. */
    union stun_addr peer = mk_addr(AF_INET, "203.0.113.9", 9999);
    begin(&e, req, sizeof(req), STUN_SEND, STUN_INDICATION);
    stun_enc_xor_addr(&e, STUN_ATTR_XOR_PEER_ADDRESS, &peer);
    stun_enc_attr(&e, STUN_ATTR_DATA, "payload", 7);
    assert_int_equal(handle(sw_set, &t, req, done(&e), &r, &c), 0);
    EXPECT(&c, [SRV_C_rx_stun] = 1, [SRV_C_drop_no_allocation] = 1);
    /* Data indications (server to client only), an unknown method's indication. */
    const uint16_t methods[] = {STUN_DATA, STUN_ALLOCATE, 0x0FF};
    for (size_t i = 0; i < 3; i++) {
        begin(&e, req, sizeof(req), methods[i], STUN_INDICATION);
        stun_enc_xor_addr(&e, STUN_ATTR_XOR_PEER_ADDRESS, &peer);
        stun_enc_attr(&e, STUN_ATTR_DATA, "payload", 7);
        assert_int_equal(handle(sw_set, &t, req, done(&e), &r, &c), 0);
        EXPECT(&c, [SRV_C_rx_stun] = 1, [SRV_C_drop_indication] = 1);
    }
}

static void test_responses_dropped(void **state)
{
    (void)state;
    struct srv_tuple t = tuple6(SRV_UDP);
    const uint16_t methods[] = {STUN_BINDING, STUN_ALLOCATE, 0x0FF};
    for (size_t i = 0; i < 3; i++) {
        for (int cls = STUN_SUCCESS; cls <= STUN_ERROR; cls++) {
            uint8_t req[128];
            struct stun_enc e;
            begin(&e, req, sizeof(req), methods[i], (enum stun_class)cls);
            if (cls == STUN_ERROR)
                stun_enc_error(&e, 400, NULL);
            else
                stun_enc_xor_addr(&e, STUN_ATTR_XOR_MAPPED_ADDRESS, &t.client);
            stun_enc_u32(&e, 0x0002, 0); /* unknown required: still just dropped */
            stun_enc_fingerprint(&e);
            struct reply r;
            struct srv_counters c;
            assert_int_equal(handle(sw_set, &t, req, done(&e), &r, &c), 0);
            EXPECT(&c, [SRV_C_rx_stun] = 1, [SRV_C_drop_response] = 1);
        }
    }
}

static void test_bad_fingerprint_dropped(void **state)
{
    (void)state;
    struct srv_tuple t = tuple4(SRV_UDP);
    uint8_t req[64];
    size_t n = binding_request(req, sizeof(req), true, true);
    struct reply r;
    struct srv_counters c;
    /* A flip in the CRC itself, in a value byte, in the transaction ID. */
    const size_t at[] = {n - 1, n - 4, STUN_HEADER_LEN + 4, 8, 19};
    for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
        uint8_t bad[64];
        memcpy(bad, req, n);
        bad[at[i]] ^= 0x20;
        assert_int_equal(handle(sw_set, &t, bad, n, &r, &c), 0);
        EXPECT(&c, [SRV_C_rx_stun] = 1, [SRV_C_drop_bad_fingerprint] = 1);
    }
    /* The FINGERPRINT check comes before the 420 and 400 answers. */
    uint8_t req2[64];
    struct stun_enc e;
    begin(&e, req2, sizeof(req2), STUN_ALLOCATE, STUN_REQUEST);
    stun_enc_u32(&e, 0x0002, 0);
    stun_enc_fingerprint(&e);
    n = done(&e);
    req2[n - 1] ^= 1;
    assert_int_equal(handle(sw_set, &t, req2, n, &r, &c), 0);
    EXPECT(&c, [SRV_C_rx_stun] = 1, [SRV_C_drop_bad_fingerprint] = 1);
}

static void test_malformed_header_dropped(void **state)
{
    (void)state;
    struct srv_tuple t = tuple4(SRV_UDP);
    uint8_t req[64];
    size_t n = binding_request(req, sizeof(req), true, true);
    uint8_t bad[80];
    struct reply r;
    struct srv_counters c;

    /* Shorter than a header. */
    for (size_t l = 0; l < STUN_HEADER_LEN; l++) {
        assert_int_equal(handle(sw_set, &t, req, l, &r, &c), 0);
        EXPECT(&c, [SRV_C_drop_short] = 1);
    }
    /* First bits 10 and 11. */
    for (int bits = 2; bits < 4; bits++) {
        memcpy(bad, req, n);
        bad[0] = (uint8_t)(bad[0] | bits << 6);
        assert_int_equal(handle(sw_set, &t, bad, n, &r, &c), 0);
        EXPECT(&c, [SRV_C_drop_not_stun] = 1);
    }
    /* Magic cookie. */
    memcpy(bad, req, n);
    bad[7] ^= 0x01;
    assert_int_equal(handle(sw_set, &t, bad, n, &r, &c), 0);
    EXPECT(&c, [SRV_C_drop_bad_cookie] = 1);
    /* Length: not a multiple of 4, larger than the datagram, smaller than the datagram. */
    const int deltas[] = {1, 2, 3, 4, 8, -4, -8};
    for (size_t i = 0; i < sizeof(deltas) / sizeof(deltas[0]); i++) {
        memcpy(bad, req, n);
        uint16_t len = (uint16_t)((int)(n - STUN_HEADER_LEN) + deltas[i]);
        bad[2] = (uint8_t)(len >> 8);
        bad[3] = (uint8_t)len;
        assert_int_equal(handle(sw_set, &t, bad, n, &r, &c), 0);
        EXPECT(&c, [SRV_C_drop_bad_length] = 1);
    }
    /* Trailing bytes after a whole message. */
    memcpy(bad, req, n);
    memset(bad + n, 0, 4);
    assert_int_equal(handle(sw_set, &t, bad, n + 4, &r, &c), 0);
    EXPECT(&c, [SRV_C_drop_bad_length] = 1);
}

static void test_channeldata_dropped(void **state)
{
    (void)state;
    uint8_t cd[64];
    struct reply r;
    struct srv_counters c;
    /* Well-formed ChannelData, but no allocation on the 5-tuple. */
    const struct {
        uint16_t ch;
        uint16_t dlen;
        size_t len;
        enum srv_transport tr;
    } cases[] = {{0x4000, 4, 8, SRV_UDP},  {0x7FFF, 0, 4, SRV_UDP},   {0x4001, 5, 9, SRV_UDP},
                 {0x4001, 5, 12, SRV_UDP}, {0x4FFF, 40, 44, SRV_TCP}, {0x4001, 5, 12, SRV_TLS}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct srv_tuple t = tuple6(cases[i].tr);
        memset(cd, 0x55, sizeof(cd));
        stun_chdata_header(cd, cases[i].ch, cases[i].dlen);
        assert_int_equal(handle(sw_set, &t, cd, cases[i].len, &r, &c), 0);
        EXPECT(&c, [SRV_C_rx_channeldata] = 1, [SRV_C_drop_no_allocation] = 1);
    }
    struct srv_tuple t = tuple4(SRV_UDP);
    /* Shorter than the 4-byte header. */
    for (size_t len = 1; len < 4; len++) {
        stun_chdata_header(cd, 0x4000, 0);
        assert_int_equal(handle(sw_set, &t, cd, len, &r, &c), 0);
        EXPECT(&c, [SRV_C_rx_channeldata] = 1, [SRV_C_drop_short] = 1);
    }
    /* Length field larger than the datagram; over TCP, a frame missing its padding. */
    stun_chdata_header(cd, 0x4000, 40);
    assert_int_equal(handle(sw_set, &t, cd, 20, &r, &c), 0);
    EXPECT(&c, [SRV_C_rx_channeldata] = 1, [SRV_C_drop_channel_length] = 1);
    struct srv_tuple tt = tuple4(SRV_TCP);
    stun_chdata_header(cd, 0x4000, 5);
    assert_int_equal(handle(sw_set, &tt, cd, 9, &r, &c), 0);
    EXPECT(&c, [SRV_C_rx_channeldata] = 1, [SRV_C_drop_channel_length] = 1);
}

/* A ChannelData datagram with 4 or more bytes after its (padded) data is not ChannelData
 * (RFC 8656 12.5): dropped as a length error, not as "shorter than a header". */
static void test_channeldata_trailing_bytes_counter(void **state)
{
    (void)state;
    struct srv_tuple t = tuple4(SRV_UDP);
    uint8_t cd[64];
    memset(cd, 0, sizeof(cd));
    stun_chdata_header(cd, 0x4000, 4);
    struct reply r;
    struct srv_counters c;
    assert_int_equal(handle(sw_set, &t, cd, 8 + 4, &r, &c), 0);
    assert_int_equal(c.v[SRV_C_rx_channeldata], 1);
    if (c.v[SRV_C_drop_short])
        fail_msg("12-byte ChannelData datagram with length 4 counted as drop_short "
                 "(\"%s\")",
                 srv_counter_help[SRV_C_drop_short]);
    assert_int_equal(c.v[SRV_C_drop_bad_length] + c.v[SRV_C_drop_channel_length], 1);
}

/* A request that does not decode gets 400 only if the answer is no larger than it. */
static void test_malformed_request_400_or_amplification(void **state)
{
    (void)state;
    struct srv_tuple t = tuple4(SRV_UDP);
    uint8_t req[2048];
    struct stun_enc e;
    struct reply r;
    struct srv_counters c;
    uint8_t junk[600];
    memset(junk, 'u', sizeof(junk));

    /* Large: a 513-byte USERNAME, and a FINGERPRINT (the 400 has none: the request
     * could not be read that far). */
    begin(&e, req, sizeof(req), STUN_BINDING, STUN_REQUEST);
    stun_enc_attr(&e, STUN_ATTR_USERNAME, junk, 513);
    stun_enc_fingerprint(&e);
    size_t n = done(&e);
    assert_true(handle(sw_set, &t, req, n, &r, &c) > 0);
    EXPECT(&c, [SRV_C_error_400] = 1);
    assert_int_equal(r.m.type, stun_type(STUN_BINDING, STUN_ERROR));
    check_error(&r, 400);
    assert_int_equal(r.m.fingerprint, -1);
    assert_true(r.len <= n);

    /* The answer without SOFTWARE is 40 bytes: header, ERROR-CODE 400 "Bad Request". */
    const struct {
        const char *opt;
        size_t value_len; /* of a 12-byte-or-more address attribute: always bad */
        bool answered;
    } sizes[] = {
        {sw_none, 12, false}, /* 36 bytes */
        {sw_none, 16, true},  /* 40 bytes: as large as the answer */
        {sw_none, 24, true},
        {sw_set, 16, false}, /* answer grows by SOFTWARE (4 + 16) to 60 bytes */
        {sw_set, 32, false}, /* 56 bytes */
        {sw_set, 36, true},  /* 60 bytes */
    };
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        begin(&e, req, sizeof(req), STUN_ALLOCATE, STUN_REQUEST);
        stun_enc_attr(&e, STUN_ATTR_XOR_PEER_ADDRESS, junk, sizes[i].value_len);
        n = done(&e);
        size_t got = handle(sizes[i].opt, &t, req, n, &r, &c);
        if (sizes[i].answered) {
            assert_true(got > 0);
            assert_true(got <= n);
            EXPECT(&c, [SRV_C_error_400] = 1);
            check_error(&r, 400);
            assert_int_equal(r.m.type, stun_type(STUN_ALLOCATE, STUN_ERROR));
        } else {
            assert_int_equal(got, 0);
            EXPECT(&c, [SRV_C_drop_amplification] = 1);
        }
    }

    /* Other decode failures in a large request: attribute past the end, after FINGERPRINT,
     * too many attributes. */
    begin(&e, req, sizeof(req), STUN_BINDING, STUN_REQUEST);
    stun_enc_attr(&e, STUN_ATTR_SOFTWARE, junk, 100);
    n = done(&e);
    req[STUN_HEADER_LEN + 3] = 104; /* SOFTWARE length runs 4 bytes past the end */
    assert_true(handle(sw_none, &t, req, n, &r, &c) > 0);
    EXPECT(&c, [SRV_C_error_400] = 1);

    begin(&e, req, sizeof(req), STUN_BINDING, STUN_REQUEST);
    stun_enc_attr(&e, STUN_ATTR_SOFTWARE, junk, 40);
    stun_enc_fingerprint(&e);
    stun_enc_attr(&e, STUN_ATTR_SOFTWARE, junk, 4);
    n = done(&e);
    assert_true(handle(sw_none, &t, req, n, &r, &c) > 0);
    EXPECT(&c, [SRV_C_error_400] = 1);

    begin(&e, req, sizeof(req), STUN_BINDING, STUN_REQUEST);
    for (int i = 0; i <= STUN_MAX_ATTRS; i++)
        stun_enc_u32(&e, STUN_ATTR_PRIORITY, (uint32_t)i);
    n = done(&e);
    assert_true(handle(sw_set, &t, req, n, &r, &c) > 0);
    EXPECT(&c, [SRV_C_error_400] = 1);
}

static void test_malformed_non_request_dropped(void **state)
{
    (void)state;
    struct srv_tuple t = tuple4(SRV_UDP);
    uint8_t req[256];
    uint8_t junk[200];
    memset(junk, 0, sizeof(junk));
    const struct {
        uint16_t method;
        enum stun_class cls;
    } kinds[] = {{STUN_SEND, STUN_INDICATION},
                 {STUN_BINDING, STUN_INDICATION},
                 {STUN_BINDING, STUN_SUCCESS},
                 {STUN_ALLOCATE, STUN_ERROR}};
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        struct stun_enc e;
        begin(&e, req, sizeof(req), kinds[i].method, kinds[i].cls);
        stun_enc_attr(&e, STUN_ATTR_XOR_PEER_ADDRESS, junk, 12);
        stun_enc_attr(&e, STUN_ATTR_DATA, junk, sizeof(junk));
        struct reply r;
        struct srv_counters c;
        assert_int_equal(handle(sw_set, &t, req, done(&e), &r, &c), 0);
        EXPECT(&c, [SRV_C_drop_malformed] = 1);
    }
}

/* ---- output buffer bounds --------------------------------------------------------------- */

/* Requests whose answers are a Binding success, a 420 and a 400 (two kinds). */
static size_t answered_request(int kind, uint8_t *buf, size_t cap)
{
    struct stun_enc e;
    uint8_t junk[100] = {0};
    switch (kind) {
    case 0:
        return binding_request(buf, cap, true, true);
    case 1:
        begin(&e, buf, cap, STUN_BINDING, STUN_REQUEST);
        stun_enc_u32(&e, 0x0002, 0);
        stun_enc_u32(&e, 0x0004, 0);
        stun_enc_fingerprint(&e);
        return done(&e);
    case 2:
        begin(&e, buf, cap, 0x0FF, STUN_REQUEST);
        stun_enc_u32(&e, STUN_ATTR_LIFETIME, 0);
        return done(&e);
    default:
        begin(&e, buf, cap, STUN_BINDING, STUN_REQUEST);
        stun_enc_attr(&e, STUN_ATTR_XOR_MAPPED_ADDRESS, junk, 100);
        return done(&e);
    }
}

/* With every output size below what the answer needs, srv_handle writes nothing past the
 * buffer and sends nothing. */
static void test_small_outcap_no_overrun(void **state)
{
    (void)state;
    struct srv_tuple t = tuple6(SRV_UDP);
    for (int kind = 0; kind < 4; kind++) {
        uint8_t req[256];
        size_t n = answered_request(kind, req, sizeof(req));
        struct reply r;
        struct srv_counters c;
        size_t need = handle(sw_set, &t, req, n, &r, &c);
        assert_true(need > 0);
        for (size_t cap = 0; cap < need; cap++) {
            memset(&c, 0, sizeof(c));
            assert_int_equal(handle_cap(sw_set, &t, req, n, cap, &r, &c), 0);
        }
        memset(&c, 0, sizeof(c));
        assert_int_equal(handle_cap(sw_set, &t, req, n, need, &r, &c), need);
    }
}

/* Counters of answers ("success responses", "400 Bad Request responses") must not move when
 * the answer did not fit and nothing was sent. */
static void test_small_outcap_counts_no_answer(void **state)
{
    (void)state;
    static const char *const kinds[] = {"Binding", "420 (unknown attribute)",
                                        "400 (unsupported method)", "400 (malformed)"};
    struct srv_tuple t = tuple4(SRV_UDP);
    int wrong = 0;
    for (int kind = 0; kind < 4; kind++) {
        uint8_t req[256];
        size_t n = answered_request(kind, req, sizeof(req));
        struct reply r;
        struct srv_counters c;
        memset(&c, 0, sizeof(c));
        assert_int_equal(handle_cap(sw_set, &t, req, n, STUN_HEADER_LEN, &r, &c), 0);
        if (c.v[SRV_C_binding_success] || c.v[SRV_C_error_400] || c.v[SRV_C_error_420]) {
            print_error("%s answer not sent (outcap 20), yet counted: binding_success=%llu "
                        "error_400=%llu error_420=%llu\n",
                        kinds[kind], (unsigned long long)c.v[SRV_C_binding_success],
                        (unsigned long long)c.v[SRV_C_error_400],
                        (unsigned long long)c.v[SRV_C_error_420]);
            wrong++;
        }
    }
    assert_int_equal(wrong, 0);
}

static void test_counter_names(void **state)
{
    (void)state;
    for (int i = 0; i < SRV_C_COUNT; i++) {
        assert_non_null(srv_counter_names[i]);
        assert_non_null(srv_counter_help[i]);
        assert_true(strlen(srv_counter_help[i]) > 0);
        for (int j = 0; j < i; j++)
            assert_string_not_equal(srv_counter_names[i], srv_counter_names[j]);
    }
    assert_string_equal(srv_counter_names[SRV_C_drop_amplification], "drop_amplification");
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_binding_ipv4),
        cmocka_unit_test(test_binding_ipv6),
        cmocka_unit_test(test_binding_fingerprint_iff_request),
        cmocka_unit_test(test_binding_software_iff_configured),
        cmocka_unit_test(test_binding_extra_attributes),
        cmocka_unit_test(test_unknown_required_gets_420),
        cmocka_unit_test(test_unknown_optional_ignored),
        cmocka_unit_test(test_unsupported_method_gets_400),
        cmocka_unit_test(test_turn_methods_unauthenticated_401),
        cmocka_unit_test(test_indications_unanswered),
        cmocka_unit_test(test_responses_dropped),
        cmocka_unit_test(test_bad_fingerprint_dropped),
        cmocka_unit_test(test_malformed_header_dropped),
        cmocka_unit_test(test_channeldata_dropped),
        cmocka_unit_test(test_channeldata_trailing_bytes_counter),
        cmocka_unit_test(test_malformed_request_400_or_amplification),
        cmocka_unit_test(test_malformed_non_request_dropped),
        cmocka_unit_test(test_small_outcap_no_overrun),
        cmocka_unit_test(test_small_outcap_counts_no_answer),
        cmocka_unit_test(test_counter_names),
    };
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
