/* turn_fixture.c: the test_turn_*.c fixture (turn_fixture.h): setup and teardown over the fake
 * relay, the in-test client's requests and the checks on every answer. */
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

#include "addr.h"
#include "turn_fixture.h"
#include "wire.h"

uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

union stun_addr mkaddr(const char *ip, uint16_t port)
{
    union stun_addr a;
    if (!addr_parse(ip, port, &a)) fail_msg("bad IP literal %s", ip);
    return a;
}

const char *fmt_addr(const union stun_addr *a)
{
    static char bufs[2][INET6_ADDRSTRLEN + 16];
    static int which;
    char *b = bufs[which ^= 1];
    char ip[INET6_ADDRSTRLEN] = "?";
    if (a->sa.sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &a->v6.sin6_addr, ip, sizeof(ip));
        snprintf(b, sizeof(bufs[0]), "[%s]:%u", ip, addr_port(a));
    } else if (a->sa.sa_family == AF_INET) {
        inet_ntop(AF_INET, &a->v4.sin_addr, ip, sizeof(ip));
        snprintf(b, sizeof(bufs[0]), "%s:%u", ip, addr_port(a));
    } else {
        snprintf(b, sizeof(bufs[0]), "family %d", a->sa.sa_family);
    }
    return b;
}

void assert_addr(const union stun_addr *got, const union stun_addr *want)
{
    if (!addr_equal(got, want)) fail_msg("address %s, want %s", fmt_addr(got), fmt_addr(want));
}

void fx_fail(const char *file, int line, const char *what)
{
    fail_msg("%s:%d: fake relay check failed: %s", file, line, what);
}

int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    if (!fx) return -1;
    const char *const names[] = {"alice", "bob"};
    const char *const passwords[] = {"alice-pw", "bob-pw"};
    if (auth_users_init(&fx->users, REALM, names, passwords, 2)) {
        free(fx);
        return -1;
    }
    fx->creds = auth_users_creds(&fx->users);
    memset(fx->nonce_key.secret, 0x5A, sizeof(fx->nonce_key.secret));
    /* Relay addresses are documentation space: only peers are policy-checked. */
    fx->relay_addrs[0] = mkaddr("192.0.2.10", 0);
    fx->relay_addrs[1] = mkaddr("2001:db8::10", 0);
    fx->port_min = PORT_MIN;
    fx->port_max = PORT_MAX;
    fx->opt = (struct srv_options){
        .software = SOFTWARE,
        .realm = REALM,
        .default_lifetime_s = 600,
        .max_lifetime_s = 3600,
        .nonce_lifetime_s = 3600,
        .strict_channels = true,
        .policy = &fx->policy,
        .creds = &fx->creds,
        .nonce_key = &fx->nonce_key,
        .relay_addrs = fx->relay_addrs,
        .nrelay_addrs = 2,
    };
    fake_io_init(&fx->io, T0, 0x7465726e2d746573ull);
    fx->io.fail = fx_fail;
    *state = fx;
    return 0;
}

int teardown(void **state)
{
    struct fixture *fx = *state;
    if (fx->started) srv_free(&fx->s);
    fake_io_free(&fx->io);
    auth_users_free(&fx->users);
    free(fx);
    return 0;
}

int fx_try_start(struct fixture *fx)
{
    if (!fx->io.npools)
        for (unsigned i = 0; i < fx->opt.nrelay_addrs; i++)
            assert_int_equal(fake_io_add_pool(&fx->io, &fx->relay_addrs[i], fx->port_min,
                                              fx->port_max, fx->port_start),
                             0);
    const struct srv_io io = fake_io_srv_io(&fx->io);
    int rc = srv_init(&fx->s, &fx->opt, &io, 0);
    fx->started = rc == 0;
    return rc;
}

void fx_start(struct fixture *fx)
{
    assert_int_equal(fx_try_start(fx), 0);
}

void check_books(struct fixture *fx)
{
    fake_io_check_books(&fx->io, &fx->s);
}

void fx_finish(struct fixture *fx)
{
    check_books(fx);
    size_t live = fx->s.allocs.count, closed = fake_io_count_events(&fx->io, "closed");
    srv_free(&fx->s);
    fx->started = false;
    assert_int_equal(fake_io_count_events(&fx->io, "closed"), closed + live);
    fake_io_check_released(&fx->io);
}

void cl_init(struct client *c, struct fixture *fx, enum srv_transport tr, const char *ip,
             uint16_t port, const char *user, const char *pass)
{
    memset(c, 0, sizeof(*c));
    c->fx = fx;
    c->t.transport = tr;
    c->t.client = mkaddr(ip, port);
    c->t.local = strchr(ip, ':') ? mkaddr("2001:db8::1", 3478) : mkaddr("192.0.2.1", 3478);
    c->user = user;
    c->pass = pass;
    c->alg = STUN_PASSWORD_ALG_SHA256;
    uint64_t h = fnv1a64(fnv1a64(FNV64_INIT, ip, strlen(ip)), user, strlen(user));
    c->seed = h ^ ((uint64_t)port << 40) ^ tr;
}

void cl_derive(struct client *c)
{
    uint16_t alg = c->sha256 ? STUN_PASSWORD_ALG_SHA256 : STUN_PASSWORD_ALG_MD5;
    int n = auth_longterm_key(alg, c->user, strlen(c->user), (const char *)c->realm, c->realmlen,
                              c->pass, strlen(c->pass), c->key);
    assert_int_equal(n, c->sha256 ? 32 : 16);
    c->keylen = (size_t)n;
    assert_int_equal(
        auth_userhash(c->user, strlen(c->user), (const char *)c->realm, c->realmlen, c->hash), 0);
}

void cl_learn(struct client *c, const struct reply *r)
{
    const struct stun_attr *realm = stun_find(&r->m, STUN_ATTR_REALM);
    const struct stun_attr *nonce = stun_find(&r->m, STUN_ATTR_NONCE);
    const struct stun_attr *algs = stun_find(&r->m, STUN_ATTR_PASSWORD_ALGORITHMS);
    assert_non_null(realm);
    assert_non_null(nonce);
    assert_true(realm->len <= sizeof(c->realm) && nonce->len <= sizeof(c->nonce));
    memcpy(c->realm, realm->val, realm->len);
    c->realmlen = realm->len;
    memcpy(c->nonce, nonce->val, nonce->len);
    c->noncelen = nonce->len;
    if (algs) {
        assert_true(algs->len <= sizeof(c->algs));
        memcpy(c->algs, algs->val, algs->len);
        c->algslen = algs->len;
    }
    cl_derive(c);
}

void req_begin(struct client *c, struct req *q, uint16_t method, enum stun_class cls)
{
    memset(q, 0, sizeof(*q));
    uint8_t tid[STUN_TID_LEN];
    uint64_t x = c->seed + (uint64_t)(++c->ntx) * 0x9e3779b97f4a7c15ull;
    uint64_t a = mix64(x), b = mix64(x ^ 0x5555555555555555ull);
    memcpy(tid, &a, 8);
    memcpy(tid + 8, &b, 4);
    stun_enc_init(&q->e, q->buf, sizeof(q->buf), stun_type(method, cls), tid);
}

void req_done(struct client *c, struct req *q)
{
    if (c->fingerprint) stun_enc_fingerprint(&q->e);
    q->fingerprint = c->fingerprint;
    int n = stun_enc_finish(&q->e);
    if (n <= 0) fail_msg("building the request failed: %s", stun_errname(n));
    q->len = (size_t)n;
}

void req_sign(struct client *c, struct req *q, unsigned omit)
{
    struct stun_enc *e = &q->e;
    if (!(omit & SIGN_NO_USER)) {
        if (c->userhash)
            stun_enc_attr(e, STUN_ATTR_USERHASH, c->hash, sizeof(c->hash));
        else
            stun_enc_attr(e, STUN_ATTR_USERNAME, c->user, strlen(c->user));
    }
    if (!(omit & SIGN_NO_REALM)) stun_enc_attr(e, STUN_ATTR_REALM, c->realm, c->realmlen);
    if (!(omit & SIGN_NO_NONCE)) stun_enc_attr(e, STUN_ATTR_NONCE, c->nonce, c->noncelen);
    if (c->sha256) {
        if (!(omit & SIGN_NO_ALGS))
            stun_enc_attr(e, STUN_ATTR_PASSWORD_ALGORITHMS, c->algs, c->algslen);
        if (!(omit & SIGN_NO_ALG)) stun_enc_password_algorithm(e, c->alg);
        stun_enc_integrity_sha256(e, c->key, c->keylen);
        q->mi256 = true;
    } else {
        stun_enc_integrity(e, c->key, c->keylen);
        q->mi = true;
    }
    req_done(c, q);
}

void handle_raw(struct client *c, const uint8_t *in, size_t len, struct reply *r)
{
    struct fixture *fx = c->fx;
    memset(r, 0, sizeof(*r));
    assert_true(len <= sizeof(r->in));
    memcpy(r->in, in, len);
    r->inlen = len;
    memset(r->buf, 0xEE, sizeof(r->buf));
    memset(&r->fwd, 0xEE, sizeof(r->fwd));
    r->before = fx->s.c;
    /* client_io: the client itself, so that tests can see the allocation keeps it. */
    r->len = srv_handle(&fx->s, &c->t, c, r->in, r->inlen, fx->io.now_ms, r->buf, sizeof(r->buf),
                        &r->fwd);
    r->after = fx->s.c;
    r->code = -1;
    assert_true(r->len <= sizeof(r->buf));
}

void xchg(struct client *c, const struct req *q, struct reply *r)
{
    handle_raw(c, q->buf, q->len, r);
    assert_null(r->fwd.a);
    if (!r->len) return;
    int rc = stun_decode(&r->m, r->buf, r->len);
    if (rc) fail_msg("answer does not decode: %s", stun_errname(rc));
    assert_memory_equal(r->m.tid, q->buf + 8, STUN_TID_LEN);
    assert_int_equal(stun_method_of(r->m.type),
                     stun_method_of((uint16_t)(q->buf[0] << 8 | q->buf[1])));
    if (q->fingerprint)
        assert_int_equal(stun_check_fingerprint(&r->m), 0);
    else
        assert_true(r->m.fingerprint < 0);
    assert_int_equal(r->m.nunknown, 0);
    const struct stun_attr *sw = stun_find(&r->m, STUN_ATTR_SOFTWARE);
    assert_non_null(sw);
    assert_int_equal(sw->len, strlen(SOFTWARE));
    assert_memory_equal(sw->val, SOFTWARE, sw->len);
    r->mi = r->m.integrity >= 0;
    r->mi256 = r->m.integrity_sha256 >= 0;
    assert_false(r->mi && r->mi256);
    if (r->mi || r->mi256) {
        assert_true(r->mi == q->mi && r->mi256 == q->mi256);
        rc = r->mi ? stun_check_integrity(&r->m, c->key, c->keylen)
                   : stun_check_integrity_sha256(&r->m, c->key, c->keylen);
        if (rc) fail_msg("answer integrity does not verify: %s", stun_errname(rc));
    }
    enum stun_class cls = stun_class_of(r->m.type);
    if (cls == STUN_SUCCESS) {
        if (!r->mi && !r->mi256) fail_msg("success answer without MESSAGE-INTEGRITY");
        assert_null(stun_find(&r->m, STUN_ATTR_ERROR_CODE));
        r->code = 0;
        return;
    }
    assert_int_equal(cls, STUN_ERROR);
    const struct stun_attr *ec = stun_find(&r->m, STUN_ATTR_ERROR_CODE);
    assert_non_null(ec);
    const char *reason;
    size_t rlen;
    assert_int_equal(stun_get_error(ec, &r->code, &reason, &rlen), 0);
    assert_true(rlen > 0);
}

void send_signed(struct client *c, struct req *q, struct reply *r)
{
    req_sign(c, q, 0);
    xchg(c, q, r);
}

void expect_ok_at(const struct reply *r, const char *file, int line)
{
    if (r->code == 0) return;
    if (r->code < 0) fail_msg("%s:%d: no answer, want success", file, line);
    fail_msg("%s:%d: error %d, want success", file, line, r->code);
}

size_t counter_index(const char *name)
{
    for (size_t i = 0; i < SRV_C_COUNT; i++)
        if (strcmp(srv_counter_names[i], name) == 0) return i;
    fail_msg("no counter %s", name);
    return 0;
}

void expect_error_at(const struct reply *r, int code, bool integrity, const char *file, int line)
{
    if (r->code != code) fail_msg("%s:%d: answer %d, want error %d", file, line, r->code, code);
    bool mi = r->mi || r->mi256;
    if (mi != integrity)
        fail_msg("%s:%d: error %d %s MESSAGE-INTEGRITY", file, line, code,
                 mi ? "carries" : "lacks");
    char name[32];
    snprintf(name, sizeof(name), "error_%d", code);
    size_t mine = counter_index(name);
    for (size_t i = 0; i < SRV_C_COUNT; i++) {
        if (strncmp(srv_counter_names[i], "error_", 6) != 0) continue;
        uint64_t d = r->after.v[i] - r->before.v[i];
        if (d != (i == mine))
            fail_msg("%s:%d: counter %s moved by %llu", file, line, srv_counter_names[i],
                     (unsigned long long)d);
    }
    const struct stun_attr *realm = stun_find(&r->m, STUN_ATTR_REALM);
    const struct stun_attr *nonce = stun_find(&r->m, STUN_ATTR_NONCE);
    const struct stun_attr *algs = stun_find(&r->m, STUN_ATTR_PASSWORD_ALGORITHMS);
    if ((code == 401 || code == 438) && !integrity) {
        static const uint8_t offered[] = {0, 2, 0, 0, 0, 1, 0, 0}; /* SHA-256, then MD5 */
        if (!realm || !nonce || !algs)
            fail_msg("%s:%d: %d without the challenge", file, line, code);
        assert_int_equal(realm->len, strlen(REALM));
        assert_memory_equal(realm->val, REALM, realm->len);
        assert_int_equal(nonce->len, AUTH_NONCE_LEN);
        assert_int_equal(algs->len, sizeof(offered));
        assert_memory_equal(algs->val, offered, sizeof(offered));
    } else if (realm || nonce || algs) {
        fail_msg("%s:%d: error %d carries a challenge", file, line, code);
    }
    assert_true((stun_find(&r->m, STUN_ATTR_UNKNOWN_ATTRIBUTES) != NULL) == (code == 420));
    assert_null(stun_find(&r->m, STUN_ATTR_XOR_RELAYED_ADDRESS));
    assert_null(stun_find(&r->m, STUN_ATTR_LIFETIME));
}

void req_allocate(struct client *c, struct req *q)
{
    req_begin(c, q, STUN_ALLOCATE, STUN_REQUEST);
    stun_enc_u8_rffu(&q->e, STUN_ATTR_REQUESTED_TRANSPORT, STUN_TRANSPORT_UDP);
}

void req_refresh(struct client *c, struct req *q, long lifetime)
{
    req_begin(c, q, STUN_REFRESH, STUN_REQUEST);
    if (lifetime >= 0) stun_enc_u32(&q->e, STUN_ATTR_LIFETIME, (uint32_t)lifetime);
}

void req_permit(struct client *c, struct req *q, const union stun_addr *peers, size_t n)
{
    req_begin(c, q, STUN_CREATE_PERMISSION, STUN_REQUEST);
    for (size_t i = 0; i < n; i++)
        stun_enc_xor_addr(&q->e, STUN_ATTR_XOR_PEER_ADDRESS, &peers[i]);
}

void req_bind(struct client *c, struct req *q, uint16_t ch, const union stun_addr *peer)
{
    req_begin(c, q, STUN_CHANNEL_BIND, STUN_REQUEST);
    stun_enc_channel(&q->e, ch);
    stun_enc_xor_addr(&q->e, STUN_ATTR_XOR_PEER_ADDRESS, peer);
}

void cl_login(struct client *c)
{
    struct req q;
    struct reply r;
    req_allocate(c, &q);
    req_done(c, &q);
    xchg(c, &q, &r);
    EXPECT_ERR(&r, 401, false);
    cl_learn(c, &r);
}

struct allocation *cl_alloc(const struct client *c)
{
    return alloc_find(&c->fx->s.allocs, &c->t);
}

struct allocation *cl_allocate(struct client *c)
{
    struct req q;
    struct reply r;
    req_allocate(c, &q);
    send_signed(c, &q, &r);
    EXPECT_OK(&r);
    struct allocation *a = cl_alloc(c);
    assert_non_null(a);
    return a;
}

void cl_permit(struct client *c, const union stun_addr *peers, size_t n, struct reply *r)
{
    struct req q;
    req_permit(c, &q, peers, n);
    send_signed(c, &q, r);
}

void cl_permit1(struct client *c, const char *ip, struct reply *r)
{
    union stun_addr p = mkaddr(ip, 9);
    cl_permit(c, &p, 1, r);
}

void cl_bind(struct client *c, uint16_t ch, const union stun_addr *peer, struct reply *r)
{
    struct req q;
    req_bind(c, &q, ch, peer);
    send_signed(c, &q, r);
}

void cl_refresh(struct client *c, long lifetime, struct reply *r)
{
    struct req q;
    req_refresh(c, &q, lifetime);
    send_signed(c, &q, r);
}

void send_ind(struct client *c, const union stun_addr *peer, const void *data, size_t len, bool df,
              struct reply *r)
{
    struct req q;
    req_begin(c, &q, STUN_SEND, STUN_INDICATION);
    stun_enc_xor_addr(&q.e, STUN_ATTR_XOR_PEER_ADDRESS, peer);
    if (df) stun_enc_attr(&q.e, STUN_ATTR_DONT_FRAGMENT, NULL, 0);
    stun_enc_attr(&q.e, STUN_ATTR_DATA, data, len);
    req_done(c, &q);
    handle_raw(c, q.buf, q.len, r);
    assert_int_equal(r->len, 0); /* indications are never answered */
}

void send_chdata(struct client *c, uint16_t ch, const void *data, size_t len, struct reply *r)
{
    uint8_t buf[REQCAP];
    int n =
        stun_chdata_encode(buf, sizeof(buf), ch, data, (uint16_t)len, c->t.transport != SRV_UDP);
    assert_true(n > 0);
    handle_raw(c, buf, (size_t)n, r);
    assert_int_equal(r->len, 0);
}

void expect_fwd(const struct reply *r, const struct allocation *a, unsigned ri,
                const union stun_addr *peer, const void *data, size_t len, bool df)
{
    if (!r->fwd.a) fail_msg("nothing forwarded to %s", fmt_addr(peer));
    assert_ptr_equal(r->fwd.a, a);
    assert_ptr_equal(r->fwd.relay, &a->relay[ri]);
    assert_addr(&r->fwd.peer, peer);
    assert_int_equal(r->fwd.len, len);
    assert_memory_equal(r->fwd.data, data, len);
    assert_true(r->fwd.data >= r->in && r->fwd.data + r->fwd.len <= r->in + r->inlen);
    assert_int_equal(r->fwd.dont_fragment, df);
}

size_t peer_in(struct fixture *fx, struct allocation *a, unsigned ri, const union stun_addr *from,
               const void *data, size_t len, uint8_t *out, size_t cap)
{
    size_t total = SRV_PEER_HEADROOM + len + SRV_PEER_TAILROOM;
    uint8_t *buf = malloc(total);
    assert_non_null(buf);
    memset(buf, 0xEE, total);
    memcpy(buf + SRV_PEER_HEADROOM, data, len);
    uint8_t *msg = NULL;
    size_t n = srv_peer_data(&fx->s, a, &a->relay[ri], from, buf + SRV_PEER_HEADROOM, len,
                             fx->io.now_ms, &msg);
    bool inside = !n || (msg >= buf && msg + n <= buf + total);
    bool fits = n <= cap;
    if (n && inside && fits) memcpy(out, msg, n);
    free(buf); /* before any assertion, so that a failure leaks nothing */
    assert_true(inside);
    assert_true(fits);
    return n;
}

void expect_chdata(const uint8_t *msg, size_t n, uint16_t ch, const void *data, size_t len,
                   bool stream)
{
    size_t want = STUN_CHDATA_HEADER_LEN + (stream ? (len + 3) & ~(size_t)3 : len);
    assert_int_equal(n, want);
    assert_int_equal(msg[0] << 8 | msg[1], ch);
    assert_int_equal(msg[2] << 8 | msg[3], len);
    assert_memory_equal(msg + 4, data, len);
    for (size_t i = 4 + len; i < n; i++)
        assert_int_equal(msg[i], 0);
}

void expect_data_indication(const uint8_t *msg, size_t n, const union stun_addr *peer,
                            const void *data, size_t len)
{
    struct stun_msg m;
    int rc = stun_decode(&m, msg, n);
    if (rc) fail_msg("Data indication does not decode: %s", stun_errname(rc));
    assert_int_equal(m.type, stun_type(STUN_DATA, STUN_INDICATION));
    size_t addrlen = peer->sa.sa_family == AF_INET ? 8 : 20;
    assert_int_equal(n, STUN_HEADER_LEN + 4 + addrlen + 4 + ((len + 3) & ~(size_t)3));
    assert_int_equal(m.nattrs, 2);
    const struct stun_attr *pa = stun_find(&m, STUN_ATTR_XOR_PEER_ADDRESS);
    const struct stun_attr *da = stun_find(&m, STUN_ATTR_DATA);
    assert_non_null(pa);
    assert_non_null(da);
    union stun_addr got;
    assert_int_equal(stun_get_xor_addr(&m, pa, &got), 0);
    assert_addr(&got, peer);
    assert_int_equal(da->len, len);
    assert_memory_equal(da->val, data, len);
}

uint32_t reply_u32(const struct reply *r, uint16_t type)
{
    const struct stun_attr *a = stun_find(&r->m, type);
    if (!a) fail_msg("answer lacks attribute 0x%04x", type);
    uint32_t v = 0;
    assert_int_equal(stun_get_u32(a, &v), 0);
    return v;
}

unsigned reply_count(const struct reply *r, uint16_t type)
{
    unsigned n = 0;
    for (const struct stun_attr *a = stun_find(&r->m, type); a; a = stun_find_next(&r->m, a))
        n++;
    return n;
}

union stun_addr reply_xaddr(const struct reply *r, uint16_t type, unsigned nth)
{
    const struct stun_attr *a = stun_find(&r->m, type);
    for (unsigned i = 0; a && i < nth; i++)
        a = stun_find_next(&r->m, a);
    if (!a) fail_msg("answer lacks attribute 0x%04x #%u", type, nth);
    union stun_addr out;
    assert_int_equal(stun_get_xor_addr(&r->m, a, &out), 0);
    return out;
}

union stun_addr expect_relayed(struct fixture *fx, const struct reply *r, unsigned nth,
                               unsigned pool)
{
    union stun_addr got = reply_xaddr(r, STUN_ATTR_XOR_RELAYED_ADDRESS, nth);
    assert_true(addr_ip_equal(&got, &fx->relay_addrs[pool]));
    uint16_t port = addr_port(&got);
    assert_true(port >= fx->port_min && port <= fx->port_max);
    assert_int_equal(fake_io_port_state(&fx->io, pool, port), FAKE_PORT_USED);
    assert_non_null(fake_io_find_sock(&fx->io, &got));
    return got;
}

struct allocation *one_allocation(struct fixture *fx, struct client *c)
{
    fx_start(fx);
    cl_init(c, fx, SRV_UDP, "192.0.2.77", 40000, "alice", "alice-pw");
    cl_login(c);
    return cl_allocate(c);
}

struct allocation *dual_allocation(struct fixture *fx, struct client *c)
{
    fx_start(fx);
    cl_init(c, fx, SRV_UDP, "192.0.2.77", 40000, "alice", "alice-pw");
    cl_login(c);
    struct req q;
    struct reply r;
    req_allocate(c, &q);
    stun_enc_u8_rffu(&q.e, STUN_ATTR_ADDITIONAL_ADDRESS_FAMILY, STUN_FAMILY_IPV6);
    send_signed(c, &q, &r);
    EXPECT_OK(&r);
    struct allocation *a = cl_alloc(c);
    assert_int_equal(a->nrelay, 2);
    return a;
}

uint64_t reserve_pair(struct client *c, uint16_t *port)
{
    struct req q;
    struct reply r;
    req_allocate(c, &q);
    stun_enc_even_port(&q.e, true);
    send_signed(c, &q, &r);
    EXPECT_OK(&r);
    union stun_addr relayed = expect_relayed(c->fx, &r, 0, 0);
    *port = addr_port(&relayed);
    assert_int_equal(*port % 2, 0);
    const struct stun_attr *tok = stun_find(&r.m, STUN_ATTR_RESERVATION_TOKEN);
    assert_non_null(tok);
    uint64_t token = 0;
    assert_int_equal(stun_get_u64(tok, &token), 0);
    assert_int_equal(fake_io_port_state(&c->fx->io, 0, (uint16_t)(*port + 1)), FAKE_PORT_RESERVED);
    return token;
}
