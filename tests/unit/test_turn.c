/* test_turn.c: whole TURN exchanges (RFC 8656 over RFC 8489) replayed against the server core
 * with a fake clock and fake relay I/O: a small in-test client that learns REALM and NONCE from
 * its 401 and signs from then on (MD5, SHA-256 with PASSWORD-ALGORITHMS, USERHASH); every expiry;
 * every TURN error path; retransmissions; EVEN-PORT; dual allocations; DONT-FRAGMENT. The fake's
 * books (ports, quota, relay sockets) must balance after every test. One test alone: pass its
 * name (a glob) as argv[1]. */
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

#include "alloc.h"
#include "auth.h"
#include "nonce.h"
#include "policy.h"
#include "ports.h"
#include "rest.h"
#include "server.h"
#include "stun.h"
#include "users.h"
#include "wire.h"

#define REALM      "tern.test"
#define SOFTWARE   "tern-test/1"
#define T0         UINT64_C(1000000000000) /* the fake clock starts here (ms, second-aligned) */
#define SEC        UINT64_C(1000)
#define PORT_MIN   50000
#define PORT_MAX   50099
#define MAX_SOCKS  256
#define MAX_EVENTS 1024
#define MAX_BUSY   4
#define MAX_QUOTA  8
#define REQCAP     2048
#define OUTCAP     1500

/* Port pool states, as ports.h documents them. */
enum { PORT_FREE = 0, PORT_USED = 1, PORT_RESERVED = 2 };

/* ---- the fake relay: port pools, sockets, quotas, randomness, events ------------------------ */

struct fake_sock {
    uint64_t alloc_id;
    union stun_addr addr;
    unsigned pool;
    bool open;
};

struct fake_event {
    char what[16];
    uint64_t alloc_id;
    bool has_peer;
    union stun_addr peer;
    enum policy_verdict verdict;
};

struct quota_user {
    char name[STUN_MAX_USERNAME + 1];
    unsigned n;
};

struct fixture {
    /* Configuration: tests adjust it between setup and fx_start. */
    struct srv_options opt;
    struct peer_policy policy;
    union stun_addr relay_addrs[2];
    uint16_t port_min, port_max;
    uint32_t port_start;
    unsigned quota_user_max, quota_total_max; /* 0: unlimited */
    uint16_t busy[MAX_BUSY];                  /* relay_open answers -EADDRINUSE for these */
    int open_error;                           /* when set, every relay_open fails with it */
    /* The server, its clock and its credentials. */
    struct srv s;
    bool started;
    uint64_t now;
    struct auth_users users;
    struct auth_creds creds;
    struct auth_nonce_key nonce_key;
    /* The fake relay's books. */
    struct port_pool pools[2];
    unsigned npools;
    struct fake_sock socks[MAX_SOCKS];
    size_t nsocks, nopen;
    unsigned open_calls, close_calls;
    struct quota_user quota[MAX_QUOTA];
    size_t nquota;
    unsigned quota_total;
    uint64_t rng;
    struct fake_event events[MAX_EVENTS];
    size_t nevents;
};

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint16_t port_of(const union stun_addr *a)
{
    return ntohs(a->sa.sa_family == AF_INET6 ? a->v6.sin6_port : a->v4.sin_port);
}

static uint8_t port_state(const struct fixture *fx, unsigned pool, uint16_t port)
{
    assert_true(pool < fx->npools);
    const struct port_pool *p = &fx->pools[pool];
    assert_true(port >= p->min && port <= p->max);
    return p->state[port - p->min];
}

static size_t ports_in_state(const struct fixture *fx, uint8_t state)
{
    size_t n = 0;
    for (unsigned i = 0; i < fx->npools; i++)
        for (uint32_t k = 0; k < fx->pools[i].count; k++)
            n += fx->pools[i].state[k] == state;
    return n;
}

static void fake_random(void *ctx, void *buf, size_t len)
{
    struct fixture *fx = ctx;
    uint8_t *p = buf;
    while (len) {
        uint64_t v = mix64(fx->rng += 0x9e3779b97f4a7c15ull);
        size_t k = len < 8 ? len : 8;
        memcpy(p, &v, k);
        p += k;
        len -= k;
    }
}

static int fake_port_take(void *ctx, unsigned pool, bool even, bool reserve_next, uint64_t token,
                          uint64_t now_s, uint16_t *port)
{
    struct fixture *fx = ctx;
    assert_true(pool < fx->npools);
    assert_int_equal(now_s, fx->now / 1000); /* the server's idea of time is ours */
    return ports_take(&fx->pools[pool], even, reserve_next, token, now_s, port);
}

static int fake_port_claim(void *ctx, uint64_t token, uint64_t now_s, unsigned *pool,
                           uint16_t *port)
{
    struct fixture *fx = ctx;
    for (unsigned i = 0; i < fx->npools; i++) {
        if (ports_claim(&fx->pools[i], token, now_s, port) == 0) {
            *pool = i;
            return 0;
        }
    }
    return -1;
}

static void fake_port_release(void *ctx, unsigned pool, uint16_t port)
{
    struct fixture *fx = ctx;
    /* Releasing a port nobody holds would be a double release (or a release of the wrong one). */
    if (port_state(fx, pool, port) == PORT_FREE)
        fail_msg("port %u of pool %u released while free", port, pool);
    ports_release(&fx->pools[pool], port);
}

static int fake_relay_open(void *ctx, struct allocation *a, struct alloc_relay *r)
{
    struct fixture *fx = ctx;
    fx->open_calls++;
    /* The server binds where a pool said: that pool's address and a port the pool holds. */
    assert_true(r->pool < fx->npools);
    assert_true(addr_ip_equal(&r->addr, &fx->relay_addrs[r->pool]));
    uint16_t port = port_of(&r->addr);
    assert_int_equal(port_state(fx, r->pool, port), PORT_USED);
    if (fx->open_error) return fx->open_error;
    for (int i = 0; i < MAX_BUSY; i++)
        if (fx->busy[i] && fx->busy[i] == port) return -EADDRINUSE;
    assert_true(fx->nsocks < MAX_SOCKS);
    struct fake_sock *s = &fx->socks[fx->nsocks++];
    *s = (struct fake_sock){.alloc_id = a->id, .addr = r->addr, .pool = r->pool, .open = true};
    fx->nopen++;
    r->io = s;
    return 0;
}

static void fake_relay_close(void *ctx, struct allocation *a, struct alloc_relay *r)
{
    struct fixture *fx = ctx;
    struct fake_sock *s = r->io;
    fx->close_calls++;
    assert_true(s >= fx->socks && s < fx->socks + fx->nsocks);
    assert_true(s->open); /* no double close */
    assert_int_equal(s->alloc_id, a->id);
    assert_true(addr_equal(&s->addr, &r->addr));
    s->open = false;
    fx->nopen--;
}

static struct quota_user *quota_of(struct fixture *fx, const char *user, size_t ulen, bool make)
{
    for (size_t i = 0; i < fx->nquota; i++)
        if (strlen(fx->quota[i].name) == ulen && memcmp(fx->quota[i].name, user, ulen) == 0)
            return &fx->quota[i];
    if (!make) return NULL;
    assert_true(fx->nquota < MAX_QUOTA);
    assert_true(ulen <= STUN_MAX_USERNAME);
    struct quota_user *q = &fx->quota[fx->nquota++];
    memcpy(q->name, user, ulen);
    q->name[ulen] = '\0';
    q->n = 0;
    return q;
}

static int fake_quota_take(void *ctx, const char *user, size_t ulen, uint32_t user_max)
{
    (void)user_max; /* the fake keeps its own limits */
    struct fixture *fx = ctx;
    struct quota_user *q = quota_of(fx, user, ulen, true);
    if (fx->quota_user_max && q->n >= fx->quota_user_max) return -1;
    if (fx->quota_total_max && fx->quota_total >= fx->quota_total_max) return -1;
    q->n++;
    fx->quota_total++;
    return 0;
}

static void fake_quota_release(void *ctx, const char *user, size_t ulen)
{
    struct fixture *fx = ctx;
    struct quota_user *q = quota_of(fx, user, ulen, false);
    assert_non_null(q);
    assert_true(q->n > 0 && fx->quota_total > 0); /* never released more than taken */
    q->n--;
    fx->quota_total--;
}

static unsigned quota_count(struct fixture *fx, const char *user)
{
    struct quota_user *q = quota_of(fx, user, strlen(user), false);
    return q ? q->n : 0;
}

static void fake_event(void *ctx, const struct allocation *a, const char *what,
                       const union stun_addr *peer, enum policy_verdict verdict)
{
    struct fixture *fx = ctx;
    assert_non_null(a);
    assert_true(fx->nevents < MAX_EVENTS);
    struct fake_event *e = &fx->events[fx->nevents++];
    memset(e, 0, sizeof(*e));
    snprintf(e->what, sizeof(e->what), "%s", what);
    e->alloc_id = a->id;
    e->has_peer = peer != NULL;
    if (peer) e->peer = *peer;
    e->verdict = verdict;
}

static size_t count_events(const struct fixture *fx, const char *what)
{
    size_t n = 0;
    for (size_t i = 0; i < fx->nevents; i++)
        n += strcmp(fx->events[i].what, what) == 0;
    return n;
}

static const struct fake_event *last_event(const struct fixture *fx)
{
    assert_true(fx->nevents > 0);
    return &fx->events[fx->nevents - 1];
}

static const struct fake_sock *find_sock(const struct fixture *fx, const union stun_addr *a)
{
    for (size_t i = 0; i < fx->nsocks; i++)
        if (fx->socks[i].open && addr_equal(&fx->socks[i].addr, a)) return &fx->socks[i];
    return NULL;
}

/* ---- addresses -------------------------------------------------------------------------- */

static union stun_addr mkaddr(const char *ip, uint16_t port)
{
    union stun_addr a;
    memset(&a, 0, sizeof(a));
    if (strchr(ip, ':')) {
        a.v6.sin6_family = AF_INET6;
        a.v6.sin6_port = htons(port);
        if (inet_pton(AF_INET6, ip, &a.v6.sin6_addr) != 1) fail_msg("bad IPv6 literal %s", ip);
    } else {
        a.v4.sin_family = AF_INET;
        a.v4.sin_port = htons(port);
        if (inet_pton(AF_INET, ip, &a.v4.sin_addr) != 1) fail_msg("bad IPv4 literal %s", ip);
    }
    return a;
}

/* Printable form for failure messages (two rotating buffers: one message can show two). */
static const char *fmt_addr(const union stun_addr *a)
{
    static char bufs[2][INET6_ADDRSTRLEN + 16];
    static int which;
    char *b = bufs[which ^= 1];
    char ip[INET6_ADDRSTRLEN] = "?";
    if (a->sa.sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &a->v6.sin6_addr, ip, sizeof(ip));
        snprintf(b, sizeof(bufs[0]), "[%s]:%u", ip, port_of(a));
    } else if (a->sa.sa_family == AF_INET) {
        inet_ntop(AF_INET, &a->v4.sin_addr, ip, sizeof(ip));
        snprintf(b, sizeof(bufs[0]), "%s:%u", ip, port_of(a));
    } else {
        snprintf(b, sizeof(bufs[0]), "family %d", a->sa.sa_family);
    }
    return b;
}

static void assert_addr(const union stun_addr *got, const union stun_addr *want)
{
    if (!addr_equal(got, want)) fail_msg("address %s, want %s", fmt_addr(got), fmt_addr(want));
}

/* ---- fixture ---------------------------------------------------------------------------- */

static int setup(void **state)
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
    fx->rng = 0x7465726e2d746573ull;
    fx->now = T0;
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    if (fx->started) srv_free(&fx->s);
    for (unsigned i = 0; i < fx->npools; i++)
        ports_free(&fx->pools[i]);
    auth_users_free(&fx->users);
    free(fx);
    return 0;
}

static void fx_start(struct fixture *fx)
{
    fx->npools = (unsigned)fx->opt.nrelay_addrs;
    for (unsigned i = 0; i < fx->npools; i++)
        assert_int_equal(ports_init(&fx->pools[i], fx->port_min, fx->port_max, fx->port_start), 0);
    const struct srv_io io = {
        .ctx = fx,
        .port_take = fake_port_take,
        .port_claim = fake_port_claim,
        .port_release = fake_port_release,
        .relay_open = fake_relay_open,
        .relay_close = fake_relay_close,
        .quota_take = fake_quota_take,
        .quota_release = fake_quota_release,
        .random = fake_random,
        .event = fake_event,
    };
    assert_int_equal(srv_init(&fx->s, &fx->opt, &io, 0), 0);
    fx->started = true;
}

/* The fake's books against the server's table: one open socket and one port in use per relayed
 * address, one quota unit per allocation, counted per user. */
static void check_books(struct fixture *fx)
{
    const struct alloc_table *t = &fx->s.allocs;
    size_t relays = 0;
    for (size_t i = 0; i < t->count; i++) {
        const struct allocation *a = t->heap[i];
        for (unsigned k = 0; k < a->nrelay; k++) {
            const struct fake_sock *s = a->relay[k].io;
            assert_non_null(s);
            assert_true(s->open);
            assert_int_equal(s->alloc_id, a->id);
            assert_true(addr_equal(&s->addr, &a->relay[k].addr));
            assert_int_equal(port_state(fx, a->relay[k].pool, port_of(&a->relay[k].addr)),
                             PORT_USED);
        }
        relays += a->nrelay;
    }
    assert_int_equal(fx->nopen, relays);
    assert_int_equal(ports_in_state(fx, PORT_USED), relays);
    assert_int_equal(fx->quota_total, t->count);
    for (size_t q = 0; q < fx->nquota; q++) {
        unsigned n = 0;
        for (size_t i = 0; i < t->count; i++)
            n += strcmp(t->heap[i]->username, fx->quota[q].name) == 0;
        assert_int_equal(fx->quota[q].n, n);
    }
}

/* End of every test: srv_free must give everything back (sockets, ports, quota). */
static void fx_finish(struct fixture *fx)
{
    check_books(fx);
    size_t live = fx->s.allocs.count, closed = count_events(fx, "closed");
    srv_free(&fx->s);
    fx->started = false;
    assert_int_equal(count_events(fx, "closed"), closed + live);
    assert_int_equal(fx->nopen, 0);
    for (size_t i = 0; i < fx->nsocks; i++)
        assert_false(fx->socks[i].open);
    assert_int_equal(fx->close_calls, fx->nsocks);
    assert_int_equal(fx->quota_total, 0);
    for (size_t q = 0; q < fx->nquota; q++)
        assert_int_equal(fx->quota[q].n, 0);
    assert_int_equal(ports_in_state(fx, PORT_USED), 0);
}

/* ---- the in-test client ----------------------------------------------------------------- */

struct client {
    struct fixture *fx;
    struct srv_tuple t;
    const char *user, *pass;
    bool sha256;      /* PASSWORD-ALGORITHM + MESSAGE-INTEGRITY-SHA256 with the SHA-256 key */
    bool userhash;    /* USERHASH instead of USERNAME */
    bool fingerprint; /* FINGERPRINT on every message */
    uint16_t alg;     /* PASSWORD-ALGORITHM sent by SHA-256 clients */
    /* Learnt from the 401 (or 438). */
    uint8_t realm[STUN_MAX_TEXT_BYTES];
    size_t realmlen;
    uint8_t nonce[STUN_MAX_TEXT_BYTES];
    size_t noncelen;
    uint8_t algs[64];
    size_t algslen;
    uint8_t key[32];
    size_t keylen;
    uint8_t hash[STUN_USERHASH_LEN];
    /* Transaction IDs: a deterministic sequence per client. */
    uint64_t seed;
    uint32_t ntx;
};

/* One request (or indication) being built. */
struct req {
    uint8_t buf[REQCAP];
    struct stun_enc e;
    size_t len;
    bool fingerprint, mi, mi256;
};

/* An exchange: the request as the server saw it (forwarded data points into it), the answer,
 * its decoding and the counters around it. Holds views into itself: never copy one. */
struct reply {
    uint8_t in[REQCAP];
    size_t inlen;
    uint8_t buf[OUTCAP];
    size_t len;
    struct stun_msg m;
    struct srv_fwd fwd;
    struct srv_counters before, after;
    int code; /* 0 success, an ERROR-CODE, or -1 when nothing was answered */
    bool mi, mi256;
};

#define D(r, name) ((r)->after.v[SRV_C_##name] - (r)->before.v[SRV_C_##name])

static void cl_init(struct client *c, struct fixture *fx, enum srv_transport tr, const char *ip,
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

/* The long-term key (and USERHASH) for what the client currently believes the realm is. */
static void cl_derive(struct client *c)
{
    uint16_t alg = c->sha256 ? STUN_PASSWORD_ALG_SHA256 : STUN_PASSWORD_ALG_MD5;
    int n = auth_longterm_key(alg, c->user, strlen(c->user), (const char *)c->realm, c->realmlen,
                              c->pass, strlen(c->pass), c->key);
    assert_int_equal(n, c->sha256 ? 32 : 16);
    c->keylen = (size_t)n;
    assert_int_equal(
        auth_userhash(c->user, strlen(c->user), (const char *)c->realm, c->realmlen, c->hash), 0);
}

/* Take REALM, NONCE and PASSWORD-ALGORITHMS from a 401 or 438 (RFC 8489 9.2.3). */
static void cl_learn(struct client *c, const struct reply *r)
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

static void req_begin(struct client *c, struct req *q, uint16_t method, enum stun_class cls)
{
    memset(q, 0, sizeof(*q));
    uint8_t tid[STUN_TID_LEN];
    uint64_t x = c->seed + (uint64_t)(++c->ntx) * 0x9e3779b97f4a7c15ull;
    uint64_t a = mix64(x), b = mix64(x ^ 0x5555555555555555ull);
    memcpy(tid, &a, 8);
    memcpy(tid + 8, &b, 4);
    stun_enc_init(&q->e, q->buf, sizeof(q->buf), stun_type(method, cls), tid);
}

/* FINGERPRINT if the client uses it, then the final length. */
static void req_done(struct client *c, struct req *q)
{
    if (c->fingerprint) stun_enc_fingerprint(&q->e);
    q->fingerprint = c->fingerprint;
    int n = stun_enc_finish(&q->e);
    if (n <= 0) fail_msg("building the request failed: %s", stun_errname(n));
    q->len = (size_t)n;
}

/* What to leave out of a signed request (error-path tests). */
enum {
    SIGN_NO_USER = 1 << 0,
    SIGN_NO_REALM = 1 << 1,
    SIGN_NO_NONCE = 1 << 2,
    SIGN_NO_ALGS = 1 << 3, /* PASSWORD-ALGORITHMS (SHA-256 clients) */
    SIGN_NO_ALG = 1 << 4,  /* PASSWORD-ALGORITHM (SHA-256 clients) */
};

/* The long-term credential attributes (RFC 8489 9.2.3), the integrity attribute and FINGERPRINT. */
static void req_sign(struct client *c, struct req *q, unsigned omit)
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

/* Hand bytes to srv_handle on the client's 5-tuple at the fake time. */
static void handle_raw(struct client *c, const uint8_t *in, size_t len, struct reply *r)
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
    r->len =
        srv_handle(&fx->s, &c->t, c, r->in, r->inlen, fx->now, r->buf, sizeof(r->buf), &r->fwd);
    r->after = fx->s.c;
    r->code = -1;
    assert_true(r->len <= sizeof(r->buf));
}

/* Send a request and check what every answer must be: it decodes, matches the transaction and
 * method, carries FINGERPRINT iff the request did (RFC 8489 14.7), and SOFTWARE; an integrity
 * attribute, when present, is the request's kind and verifies with the client's key; every
 * success is integrity-protected. */
static void xchg(struct client *c, const struct req *q, struct reply *r)
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

static void send_signed(struct client *c, struct req *q, struct reply *r)
{
    req_sign(c, q, 0);
    xchg(c, q, r);
}

static void expect_ok_at(const struct reply *r, const char *file, int line)
{
    if (r->code == 0) return;
    if (r->code < 0) fail_msg("%s:%d: no answer, want success", file, line);
    fail_msg("%s:%d: error %d, want success", file, line, r->code);
}
#define EXPECT_OK(r) expect_ok_at((r), __FILE__, __LINE__)

static size_t counter_index(const char *name)
{
    for (size_t i = 0; i < SRV_C_COUNT; i++)
        if (strcmp(srv_counter_names[i], name) == 0) return i;
    fail_msg("no counter %s", name);
    return 0;
}

/* An error answer: its code, integrity exactly when authentication succeeded first, the
 * challenge (REALM, NONCE, PASSWORD-ALGORITHMS) exactly on unauthenticated 401/438, and exactly
 * its own error_ counter moved by one. */
static void expect_error_at(const struct reply *r, int code, bool integrity, const char *file,
                            int line)
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
#define EXPECT_ERR(r, code, integrity) expect_error_at((r), (code), (integrity), __FILE__, __LINE__)

/* ---- request builders and client operations --------------------------------------------- */

static void req_allocate(struct client *c, struct req *q)
{
    req_begin(c, q, STUN_ALLOCATE, STUN_REQUEST);
    stun_enc_u8_rffu(&q->e, STUN_ATTR_REQUESTED_TRANSPORT, STUN_TRANSPORT_UDP);
}

static void req_refresh(struct client *c, struct req *q, long lifetime)
{
    req_begin(c, q, STUN_REFRESH, STUN_REQUEST);
    if (lifetime >= 0) stun_enc_u32(&q->e, STUN_ATTR_LIFETIME, (uint32_t)lifetime);
}

static void req_permit(struct client *c, struct req *q, const union stun_addr *peers, size_t n)
{
    req_begin(c, q, STUN_CREATE_PERMISSION, STUN_REQUEST);
    for (size_t i = 0; i < n; i++)
        stun_enc_xor_addr(&q->e, STUN_ATTR_XOR_PEER_ADDRESS, &peers[i]);
}

static void req_bind(struct client *c, struct req *q, uint16_t ch, const union stun_addr *peer)
{
    req_begin(c, q, STUN_CHANNEL_BIND, STUN_REQUEST);
    stun_enc_channel(&q->e, ch);
    stun_enc_xor_addr(&q->e, STUN_ATTR_XOR_PEER_ADDRESS, peer);
}

/* The first leg of every exchange: an unauthenticated Allocate, its 401, the challenge learnt. */
static void cl_login(struct client *c)
{
    struct req q;
    struct reply r;
    req_allocate(c, &q);
    req_done(c, &q);
    xchg(c, &q, &r);
    EXPECT_ERR(&r, 401, false);
    cl_learn(c, &r);
}

static struct allocation *cl_alloc(const struct client *c)
{
    return alloc_find(&c->fx->s.allocs, &c->t);
}

/* A signed UDP Allocate that must succeed. */
static struct allocation *cl_allocate(struct client *c)
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

static void cl_permit(struct client *c, const union stun_addr *peers, size_t n, struct reply *r)
{
    struct req q;
    req_permit(c, &q, peers, n);
    send_signed(c, &q, r);
}

static void cl_permit1(struct client *c, const char *ip, struct reply *r)
{
    union stun_addr p = mkaddr(ip, 9);
    cl_permit(c, &p, 1, r);
}

static void cl_bind(struct client *c, uint16_t ch, const union stun_addr *peer, struct reply *r)
{
    struct req q;
    req_bind(c, &q, ch, peer);
    send_signed(c, &q, r);
}

static void cl_refresh(struct client *c, long lifetime, struct reply *r)
{
    struct req q;
    req_refresh(c, &q, lifetime);
    send_signed(c, &q, r);
}

static void send_ind(struct client *c, const union stun_addr *peer, const void *data, size_t len,
                     bool df, struct reply *r)
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

/* ChannelData from the client, padded to 4 over TCP/TLS (RFC 8656 12.5). */
static void send_chdata(struct client *c, uint16_t ch, const void *data, size_t len,
                        struct reply *r)
{
    uint8_t buf[REQCAP];
    int n =
        stun_chdata_encode(buf, sizeof(buf), ch, data, (uint16_t)len, c->t.transport != SRV_UDP);
    assert_true(n > 0);
    handle_raw(c, buf, (size_t)n, r);
    assert_int_equal(r->len, 0);
}

static void expect_fwd(const struct reply *r, const struct allocation *a, unsigned ri,
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

/* A datagram from `from` arriving on relay ri of a, in a heap buffer with exactly the promised
 * headroom and tailroom (ASan sees any write outside). The framed message is copied to out. */
static size_t peer_in(struct fixture *fx, struct allocation *a, unsigned ri,
                      const union stun_addr *from, const void *data, size_t len, uint8_t *out,
                      size_t cap)
{
    size_t total = SRV_PEER_HEADROOM + len + SRV_PEER_TAILROOM;
    uint8_t *buf = malloc(total);
    assert_non_null(buf);
    memset(buf, 0xEE, total);
    memcpy(buf + SRV_PEER_HEADROOM, data, len);
    uint8_t *msg = NULL;
    size_t n =
        srv_peer_data(&fx->s, a, &a->relay[ri], from, buf + SRV_PEER_HEADROOM, len, fx->now, &msg);
    bool inside = !n || (msg >= buf && msg + n <= buf + total);
    bool fits = n <= cap;
    if (n && inside && fits) memcpy(out, msg, n);
    free(buf); /* before any assertion, so that a failure leaks nothing */
    assert_true(inside);
    assert_true(fits);
    return n;
}

static void expect_chdata(const uint8_t *msg, size_t n, uint16_t ch, const void *data, size_t len,
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

static void expect_data_indication(const uint8_t *msg, size_t n, const union stun_addr *peer,
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

static uint32_t reply_u32(const struct reply *r, uint16_t type)
{
    const struct stun_attr *a = stun_find(&r->m, type);
    if (!a) fail_msg("answer lacks attribute 0x%04x", type);
    uint32_t v = 0;
    assert_int_equal(stun_get_u32(a, &v), 0);
    return v;
}

static unsigned reply_count(const struct reply *r, uint16_t type)
{
    unsigned n = 0;
    for (const struct stun_attr *a = stun_find(&r->m, type); a; a = stun_find_next(&r->m, a))
        n++;
    return n;
}

static union stun_addr reply_xaddr(const struct reply *r, uint16_t type, unsigned nth)
{
    const struct stun_attr *a = stun_find(&r->m, type);
    for (unsigned i = 0; a && i < nth; i++)
        a = stun_find_next(&r->m, a);
    if (!a) fail_msg("answer lacks attribute 0x%04x #%u", type, nth);
    union stun_addr out;
    assert_int_equal(stun_get_xor_addr(&r->m, a, &out), 0);
    return out;
}

/* A relayed address from an Allocate answer: the right relay IP, a port the pool handed out
 * and the fake holds an open socket on. */
static union stun_addr expect_relayed(struct fixture *fx, const struct reply *r, unsigned nth,
                                      unsigned pool)
{
    union stun_addr got = reply_xaddr(r, STUN_ATTR_XOR_RELAYED_ADDRESS, nth);
    assert_true(addr_ip_equal(&got, &fx->relay_addrs[pool]));
    uint16_t port = port_of(&got);
    assert_true(port >= fx->port_min && port <= fx->port_max);
    assert_int_equal(port_state(fx, pool, port), PORT_USED);
    assert_non_null(find_sock(fx, &got));
    return got;
}

/* ---- 1. the full exchange --------------------------------------------------------------- */

struct variant {
    enum srv_transport transport;
    bool ipv6, sha256, userhash, fingerprint;
};

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
    assert_int_equal(fx->open_calls, 0);
    assert_int_equal(fx->quota_total, 0);
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
    assert_int_equal(a->expires_ms, fx->now + 600 * SEC);
    assert_int_equal(D(&r, allocate_success), 1);
    assert_int_equal(D(&r, allocations_created), 1);
    assert_int_equal(quota_count(fx, "alice"), 1);
    assert_string_equal(last_event(fx)->what, "allocated");
    check_books(fx);

    /* CreatePermission for three peers at once (the port part is ignored). */
    union stun_addr perm[3] = {mkaddr(ips[0], 1), mkaddr(ips[1], 2), mkaddr(ips[2], 3)};
    cl_permit(&c, perm, 3, &r);
    EXPECT_OK(&r);
    assert_int_equal(D(&r, permission_success), 1);
    assert_int_equal(a->nperms, 3);
    for (int i = 0; i < 3; i++)
        assert_true(alloc_permitted(a, &perm[i], fx->now));

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
        fx->now += 10 * SEC;
        cl_refresh(&c, lifetimes[i].ask, &r);
        EXPECT_OK(&r);
        assert_int_equal(reply_u32(&r, STUN_ATTR_LIFETIME), lifetimes[i].get);
        assert_int_equal(a->expires_ms, fx->now + lifetimes[i].get * SEC);
        assert_int_equal(D(&r, refresh_success), 1);
    }

    /* Refresh LIFETIME 0 deletes: socket closed, port and quota given back. */
    unsigned closes = fx->close_calls;
    cl_refresh(&c, 0, &r);
    EXPECT_OK(&r);
    assert_int_equal(reply_u32(&r, STUN_ATTR_LIFETIME), 0);
    assert_int_equal(D(&r, delete_success), 1);
    assert_int_equal(D(&r, allocations_deleted), 1);
    assert_int_equal(D(&r, refresh_success), 0);
    assert_int_equal(fx->close_calls, closes + 1);
    assert_int_equal(fx->nopen, 0);
    assert_int_equal(port_state(fx, v->ipv6 ? 1 : 0, port_of(&relayed)), PORT_FREE);
    assert_int_equal(quota_count(fx, "alice"), 0);
    assert_string_equal(last_event(fx)->what, "deleted");
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

/* ---- 2. expiry with the fake clock ------------------------------------------------------ */

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
    uint16_t port = port_of(&a->relay[0].addr);

    assert_int_equal(srv_expire(&fx->s, T0 + 600 * SEC - 1), 0);
    assert_non_null(cl_alloc(&c));
    assert_int_equal(fx->nopen, 2);
    assert_int_equal(srv_expire(&fx->s, T0 + 600 * SEC), 1);
    assert_null(cl_alloc(&c));
    assert_non_null(cl_alloc(&d));
    assert_int_equal(fx->s.c.v[SRV_C_allocations_expired], 1);
    assert_int_equal(count_events(fx, "expired"), 1);
    assert_int_equal(port_state(fx, 0, port), PORT_FREE);
    assert_int_equal(quota_count(fx, "alice"), 0);
    check_books(fx);

    /* Gone for good: its client's Refresh finds nothing. */
    fx->now = T0 + 600 * SEC;
    cl_refresh(&c, -1, &r);
    EXPECT_ERR(&r, 437, true);

    assert_int_equal(srv_expire(&fx->s, T0 + 1200 * SEC - 1), 0);
    assert_int_equal(srv_expire(&fx->s, T0 + 1200 * SEC), 1);
    assert_int_equal(fx->s.allocs.count, 0);
    assert_int_equal(fx->s.c.v[SRV_C_allocations_expired], 2);
    fx_finish(fx);
}

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
        assert_int_equal(cl_alloc(&c)->expires_ms, fx->now + cases[i].get * SEC);
    }
    assert_int_equal(fx->s.allocs.count, sizeof(cases) / sizeof(cases[0]));
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
    fx->now = T0 + 500 * SEC;
    cl_refresh(&c, -1, &r);
    EXPECT_OK(&r);
    assert_int_equal(srv_expire(&fx->s, T0 + 600 * SEC), 0);
    assert_int_equal(srv_expire(&fx->s, T0 + 1100 * SEC - 1), 0);
    assert_non_null(cl_alloc(&c));
    assert_int_equal(srv_expire(&fx->s, T0 + 1100 * SEC), 1);
    assert_null(cl_alloc(&c));
    fx_finish(fx);
}

static void test_permission_expires_after_300s(void **state)
{
    struct fixture *fx = *state;
    fx_start(fx);
    struct client c;
    cl_init(&c, fx, SRV_UDP, "192.0.2.77", 40000, "alice", "alice-pw");
    cl_login(&c);
    struct allocation *a = cl_allocate(&c);
    union stun_addr p1 = mkaddr("8.8.8.8", 53), p2 = mkaddr("1.1.1.1", 53);
    union stun_addr both[2] = {p1, p2};
    struct reply r;
    uint8_t out[OUTCAP];
    cl_permit(&c, both, 2, &r);
    EXPECT_OK(&r);

    /* Refreshing 1.1.1.1 at 200 s moves its end to 500 s. */
    fx->now = T0 + 200 * SEC;
    cl_permit(&c, &p2, 1, &r);
    EXPECT_OK(&r);

    fx->now = T0 + 300 * SEC - 1;
    send_ind(&c, &p1, "x", 1, false, &r);
    expect_fwd(&r, a, 0, &p1, "x", 1, false);
    assert_true(peer_in(fx, a, 0, &p1, "y", 1, out, sizeof(out)) > 0);

    fx->now = T0 + 300 * SEC;
    send_ind(&c, &p1, "x", 1, false, &r);
    assert_null(r.fwd.a);
    assert_int_equal(D(&r, drop_no_permission), 1);
    uint64_t drops = fx->s.c.v[SRV_C_drop_peer_no_permission];
    assert_int_equal(peer_in(fx, a, 0, &p1, "y", 1, out, sizeof(out)), 0);
    assert_int_equal(fx->s.c.v[SRV_C_drop_peer_no_permission], drops + 1);
    /* The refreshed one lives on. */
    send_ind(&c, &p2, "x", 1, false, &r);
    expect_fwd(&r, a, 0, &p2, "x", 1, false);
    assert_true(peer_in(fx, a, 0, &p2, "y", 1, out, sizeof(out)) > 0);

    fx->now = T0 + 500 * SEC - 1;
    send_ind(&c, &p2, "x", 1, false, &r);
    expect_fwd(&r, a, 0, &p2, "x", 1, false);
    fx->now = T0 + 500 * SEC;
    send_ind(&c, &p2, "x", 1, false, &r);
    assert_null(r.fwd.a);
    assert_int_equal(D(&r, drop_no_permission), 1);
    assert_int_equal(peer_in(fx, a, 0, &p2, "y", 1, out, sizeof(out)), 0);

    /* An expired permission can be created again. */
    cl_permit(&c, &p1, 1, &r);
    EXPECT_OK(&r);
    send_ind(&c, &p1, "x", 1, false, &r);
    expect_fwd(&r, a, 0, &p1, "x", 1, false);
    fx_finish(fx);
}

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
    fx->now = T0 + 250 * SEC;
    cl_permit(&c, &pa, 1, &r);
    EXPECT_OK(&r);
    fx->now = T0 + 500 * SEC;
    cl_permit(&c, &pa, 1, &r);
    EXPECT_OK(&r);

    fx->now = T0 + 600 * SEC - 1;
    send_chdata(&c, 0x4001, "abc", 3, &r);
    expect_fwd(&r, a, 0, &pa, "abc", 3, false);
    size_t n = peer_in(fx, a, 0, &pa, "def", 3, out, sizeof(out));
    expect_chdata(out, n, 0x4001, "def", 3, false);

    fx->now = T0 + 600 * SEC;
    send_chdata(&c, 0x4001, "abc", 3, &r);
    assert_null(r.fwd.a);
    assert_int_equal(D(&r, drop_no_channel), 1);
    n = peer_in(fx, a, 0, &pa, "def", 3, out, sizeof(out));
    expect_data_indication(out, n, &pa, "def", 3);

    /* The hold: for 5 minutes neither the number nor the peer may be bound elsewhere. */
    static const uint64_t during[] = {600 * SEC, 750 * SEC, 900 * SEC - 1};
    for (size_t i = 0; i < sizeof(during) / sizeof(during[0]); i++) {
        fx->now = T0 + during[i];
        cl_bind(&c, 0x4001, &pb, &r);
        EXPECT_ERR(&r, 400, true);
        cl_bind(&c, 0x4002, &pa, &r);
        EXPECT_ERR(&r, 400, true);
    }
    fx->now = T0 + 900 * SEC;
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
    fx->now = T0 + 500 * SEC;
    cl_bind(&c, 0x4001, &pa, &r); /* same number, same peer: a refresh */
    EXPECT_OK(&r);
    assert_int_equal(a->nchans, 1);
    fx->now = T0 + 750 * SEC;
    cl_permit(&c, &pa, 1, &r);
    EXPECT_OK(&r);
    fx->now = T0 + 1000 * SEC; /* the first binding alone would have ended at 600 s */
    send_chdata(&c, 0x4001, "abc", 3, &r);
    expect_fwd(&r, a, 0, &pa, "abc", 3, false);
    fx->now = T0 + 1100 * SEC;
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
    fx->now = T0 + 299 * SEC;
    send_chdata(&c, 0x4000, "abc", 3, &r); /* data does not refresh the permission */
    expect_fwd(&r, a, 0, &pa, "abc", 3, false);
    fx->now = T0 + 300 * SEC;
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

static void test_nonce_expiry_438_then_retry(void **state)
{
    struct fixture *fx = *state;
    fx->opt.nonce_lifetime_s = 300;
    fx_start(fx);
    struct client c;
    cl_init(&c, fx, SRV_UDP, "192.0.2.77", 40000, "alice", "alice-pw");
    cl_login(&c);
    cl_allocate(&c);
    struct reply r;
    fx->now = T0 + 300 * SEC - 1;
    cl_refresh(&c, -1, &r);
    EXPECT_OK(&r);

    fx->now = T0 + 300 * SEC;
    uint8_t old[STUN_MAX_TEXT_BYTES];
    size_t oldlen = c.noncelen;
    memcpy(old, c.nonce, oldlen);
    cl_refresh(&c, -1, &r);
    EXPECT_ERR(&r, 438, false);
    const struct stun_attr *fresh = stun_find(&r.m, STUN_ATTR_NONCE);
    assert_false(fresh->len == oldlen && memcmp(fresh->val, old, oldlen) == 0);
    cl_learn(&c, &r);
    cl_refresh(&c, -1, &r);
    EXPECT_OK(&r);
    /* The fresh nonce lasts its own lifetime. */
    fx->now = T0 + 600 * SEC - 1;
    cl_refresh(&c, -1, &r);
    EXPECT_OK(&r);
    fx->now = T0 + 600 * SEC;
    cl_refresh(&c, -1, &r);
    EXPECT_ERR(&r, 438, false);
    fx_finish(fx);
}

/* ---- 3. error paths --------------------------------------------------------------------- */

/* A started fixture with one logged-in client holding a plain IPv4 allocation. */
static struct allocation *one_allocation(struct fixture *fx, struct client *c)
{
    fx_start(fx);
    cl_init(c, fx, SRV_UDP, "192.0.2.77", 40000, "alice", "alice-pw");
    cl_login(c);
    return cl_allocate(c);
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
    assert_int_equal(fx->open_calls, 0);
    assert_int_equal(fx->quota_total, 0);
    assert_int_equal(fx->s.allocs.count, 0);
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
    assert_int_equal(fx->open_calls, 0);
    assert_int_equal(fx->quota_total, 0);
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
    assert_int_equal(port_of(&cl_alloc(&c)->relay[0].addr) % 2, 0);

    req_allocate(&d, &q);
    stun_enc_even_port(&q.e, true);
    stun_enc_u8_rffu(&q.e, STUN_ATTR_ADDITIONAL_ADDRESS_FAMILY, STUN_FAMILY_IPV6);
    send_signed(&d, &q, &r);
    EXPECT_ERR(&r, 400, true);
    assert_null(cl_alloc(&d));
    fx_finish(fx);
}

static void test_400_create_permission_without_peer(void **state)
{
    struct fixture *fx = *state;
    struct client c;
    struct allocation *a = one_allocation(fx, &c);
    struct reply r;
    cl_permit(&c, NULL, 0, &r);
    EXPECT_ERR(&r, 400, true);
    assert_int_equal(a->nperms, 0);
    fx_finish(fx);
}

/* MESSAGE-INTEGRITY without USERNAME/USERHASH, REALM or NONCE: 400, and nothing to protect
 * the answer with (RFC 8489 9.2.4). */
static void test_400_integrity_without_realm_or_nonce(void **state)
{
    struct fixture *fx = *state;
    fx_start(fx);
    struct client c;
    cl_init(&c, fx, SRV_UDP, "192.0.2.77", 40000, "alice", "alice-pw");
    cl_login(&c);
    static const unsigned omit[] = {SIGN_NO_REALM, SIGN_NO_NONCE, SIGN_NO_USER,
                                    SIGN_NO_REALM | SIGN_NO_NONCE};
    for (size_t i = 0; i < sizeof(omit) / sizeof(omit[0]); i++) {
        struct req q;
        struct reply r;
        req_allocate(&c, &q);
        req_sign(&c, &q, omit[i]);
        xchg(&c, &q, &r);
        EXPECT_ERR(&r, 400, false);
    }
    assert_int_equal(fx->s.allocs.count, 0);
    fx_finish(fx);
}

/* The PASSWORD-ALGORITHMS a SHA-256 client returns must be exactly the 401's (bid-down
 * protection, RFC 8489 9.2.4); PASSWORD-ALGORITHM must be one of them; each needs the other. */
static void test_400_password_algorithms_tampered(void **state)
{
    struct fixture *fx = *state;
    fx_start(fx);
    struct client c;
    cl_init(&c, fx, SRV_UDP, "192.0.2.77", 40000, "alice", "alice-pw");
    c.sha256 = true;
    cl_login(&c);
    uint8_t offered[64];
    size_t offeredlen = c.algslen;
    memcpy(offered, c.algs, offeredlen);
    static const struct {
        uint8_t algs[16];
        size_t len;
    } tampered[] = {
        {{0, 1, 0, 0, 0, 2, 0, 0}, 8},              /* order swapped */
        {{0, 2, 0, 0}, 4},                          /* MD5 dropped */
        {{0, 1, 0, 0}, 4},                          /* SHA-256 dropped */
        {{0, 2, 0, 0, 0, 1, 0, 0, 0, 3, 0, 0}, 12}, /* one added */
        {{0, 2, 0, 4, 1, 2, 3, 4, 0, 1, 0, 0}, 12}, /* parameters added */
    };
    struct req q;
    struct reply r;
    for (size_t i = 0; i < sizeof(tampered) / sizeof(tampered[0]); i++) {
        memcpy(c.algs, tampered[i].algs, tampered[i].len);
        c.algslen = tampered[i].len;
        req_allocate(&c, &q);
        send_signed(&c, &q, &r);
        EXPECT_ERR(&r, 400, false);
    }
    memcpy(c.algs, offered, offeredlen);
    c.algslen = offeredlen;
    static const unsigned omit[] = {SIGN_NO_ALGS, SIGN_NO_ALG};
    for (size_t i = 0; i < 2; i++) {
        req_allocate(&c, &q);
        req_sign(&c, &q, omit[i]);
        xchg(&c, &q, &r);
        EXPECT_ERR(&r, 400, false);
    }
    c.alg = 0x0003; /* not offered */
    req_allocate(&c, &q);
    send_signed(&c, &q, &r);
    EXPECT_ERR(&r, 400, false);
    assert_int_equal(fx->s.allocs.count, 0);
    c.alg = STUN_PASSWORD_ALG_SHA256;
    cl_allocate(&c);
    fx_finish(fx);
}

static void test_401_without_credentials(void **state)
{
    struct fixture *fx = *state;
    struct client c;
    one_allocation(fx, &c);
    /* Every TURN request needs credentials, with or without an allocation. */
    struct client other;
    cl_init(&other, fx, SRV_UDP, "192.0.2.99", 40000, "alice", "alice-pw");
    struct client *who[] = {&c, &other};
    union stun_addr pa = mkaddr("8.8.8.8", 5000);
    for (int k = 0; k < 2; k++) {
        struct client *cl = who[k];
        struct req q;
        struct reply r;
        req_refresh(cl, &q, 600);
        req_done(cl, &q);
        xchg(cl, &q, &r);
        EXPECT_ERR(&r, 401, false);
        req_permit(cl, &q, &pa, 1);
        req_done(cl, &q);
        xchg(cl, &q, &r);
        EXPECT_ERR(&r, 401, false);
        req_bind(cl, &q, 0x4000, &pa);
        req_done(cl, &q);
        xchg(cl, &q, &r);
        EXPECT_ERR(&r, 401, false);
        req_allocate(cl, &q);
        req_done(cl, &q);
        xchg(cl, &q, &r);
        EXPECT_ERR(&r, 401, false);
    }
    assert_int_equal(cl_alloc(&c)->nperms, 0);
    assert_int_equal(fx->s.allocs.count, 1);
    fx_finish(fx);
}

/* A wrong password and an unknown user get the same answer, byte for byte: nothing tells an
 * attacker which user names exist. */
static void test_401_wrong_password_and_unknown_user(void **state)
{
    struct fixture *fx = *state;
    fx_start(fx);
    struct client wrong, unknown, hashed;
    cl_init(&wrong, fx, SRV_UDP, "192.0.2.77", 40000, "alice", "not-the-password");
    cl_init(&unknown, fx, SRV_UDP, "192.0.2.77", 40000, "mallory", "alice-pw");
    cl_init(&hashed, fx, SRV_UDP, "192.0.2.77", 40000, "mallory", "alice-pw");
    hashed.userhash = true;
    wrong.seed = unknown.seed = 42; /* the same transaction IDs */
    cl_login(&wrong);
    cl_login(&unknown);
    cl_login(&hashed);
    struct req q;
    struct reply r1, r2, r3;
    req_allocate(&wrong, &q);
    send_signed(&wrong, &q, &r1);
    EXPECT_ERR(&r1, 401, false);
    req_allocate(&unknown, &q);
    send_signed(&unknown, &q, &r2);
    EXPECT_ERR(&r2, 401, false);
    assert_int_equal(r1.len, r2.len);
    assert_memory_equal(r1.buf, r2.buf, r1.len);
    req_allocate(&hashed, &q);
    send_signed(&hashed, &q, &r3);
    EXPECT_ERR(&r3, 401, false);
    assert_int_equal(fx->s.allocs.count, 0);
    assert_int_equal(fx->quota_total, 0);
    fx_finish(fx);
}

static void test_401_wrong_realm(void **state)
{
    struct fixture *fx = *state;
    fx_start(fx);
    struct client c;
    cl_init(&c, fx, SRV_UDP, "192.0.2.77", 40000, "alice", "alice-pw");
    cl_login(&c);
    static const char other[] = "other.test";
    memcpy(c.realm, other, sizeof(other) - 1);
    c.realmlen = sizeof(other) - 1;
    cl_derive(&c); /* a consistent key for that realm: only the realm is wrong */
    struct req q;
    struct reply r;
    req_allocate(&c, &q);
    send_signed(&c, &q, &r);
    EXPECT_ERR(&r, 401, false);
    cl_learn(&c, &r); /* the answer's REALM puts the client right */
    cl_allocate(&c);
    fx_finish(fx);
}

/* The built-in special-purpose deny list, through real CreatePermission and ChannelBind
 * requests, in every form that embeds an IPv4 address. */
struct denied {
    const char *ip;
    enum policy_verdict why;
};

static const struct denied denied4[] = {
    {"0.0.0.0", POLICY_UNSPECIFIED},
    {"0.1.2.3", POLICY_UNSPECIFIED},
    {"127.0.0.1", POLICY_LOOPBACK},
    {"127.255.255.254", POLICY_LOOPBACK},
    {"10.0.0.1", POLICY_PRIVATE},
    {"10.255.255.255", POLICY_PRIVATE},
    {"172.16.0.1", POLICY_PRIVATE},
    {"172.31.255.254", POLICY_PRIVATE},
    {"192.168.1.1", POLICY_PRIVATE},
    {"100.64.0.1", POLICY_SHARED},
    {"100.127.255.254", POLICY_SHARED},
    {"169.254.1.1", POLICY_LINK_LOCAL},
    {"224.0.0.1", POLICY_MULTICAST},
    {"239.255.255.250", POLICY_MULTICAST},
    {"255.255.255.255", POLICY_BROADCAST},
    {"240.0.0.1", POLICY_SPECIAL},
    {"192.0.0.1", POLICY_SPECIAL},
    {"198.18.0.1", POLICY_DOCUMENTATION},
    {"198.19.255.254", POLICY_DOCUMENTATION},
    {"192.0.2.1", POLICY_DOCUMENTATION},
};

static const struct denied denied6[] = {
    {"::", POLICY_UNSPECIFIED},
    {"::1", POLICY_LOOPBACK},
    {"fe80::1", POLICY_LINK_LOCAL},
    {"fc00::1", POLICY_PRIVATE},
    {"fd12:3456::1", POLICY_PRIVATE},
    {"ff02::1", POLICY_MULTICAST},
    {"2001:db8::1", POLICY_DOCUMENTATION},
};

/* The forms of an IPv4 address: itself, ::ffff:-mapped, NAT64 (64:ff9b::/96), 6to4
 * (2002:AABB:CCDD::), IPv4-compatible (::a.b.c.d) and SIIT (::ffff:0:a.b.c.d). */
static size_t v4_forms(const char *ip, char forms[6][64])
{
    uint8_t b[4];
    assert_int_equal(inet_pton(AF_INET, ip, b), 1);
    snprintf(forms[0], 64, "%s", ip);
    snprintf(forms[1], 64, "::ffff:%s", ip);
    snprintf(forms[2], 64, "64:ff9b::%s", ip);
    snprintf(forms[3], 64, "2002:%02x%02x:%02x%02x::", b[0], b[1], b[2], b[3]);
    snprintf(forms[4], 64, "::%s", ip);
    snprintf(forms[5], 64, "::ffff:0:%s", ip);
    return 6;
}

/* One CreatePermission and one ChannelBind for peer: both 403, with a "denied" event. */
static void expect_denied(struct client *c, const char *ip, enum policy_verdict why)
{
    struct fixture *fx = c->fx;
    union stun_addr peer = mkaddr(ip, 3478);
    struct reply r;
    size_t events = fx->nevents;
    cl_permit(c, &peer, 1, &r);
    if (r.code != 403) fail_msg("CreatePermission %s: answer %d, want 403", ip, r.code);
    EXPECT_ERR(&r, 403, true);
    assert_int_equal(fx->nevents, events + 1);
    const struct fake_event *e = last_event(fx);
    assert_string_equal(e->what, "denied");
    assert_true(e->has_peer);
    assert_addr(&e->peer, &peer);
    if (e->verdict != why)
        fail_msg("%s denied as %s, want %s", ip, policy_verdict_names[e->verdict],
                 policy_verdict_names[why]);
    cl_bind(c, 0x4000, &peer, &r);
    if (r.code != 403) fail_msg("ChannelBind %s: answer %d, want 403", ip, r.code);
    EXPECT_ERR(&r, 403, true);
    assert_int_equal(fx->nevents, events + 2);
    assert_string_equal(last_event(fx)->what, "denied");
    assert_int_equal(last_event(fx)->verdict, why);
}

/* A dual allocation, so that IPv6 forms are never refused for their family (443) first. */
static struct allocation *dual_allocation(struct fixture *fx, struct client *c)
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

static void test_403_policy_table(void **state)
{
    struct fixture *fx = *state;
    struct client c;
    struct allocation *a = dual_allocation(fx, &c);
    char forms[6][64];
    for (size_t i = 0; i < sizeof(denied4) / sizeof(denied4[0]); i++) {
        size_t n = v4_forms(denied4[i].ip, forms);
        for (size_t k = 0; k < n; k++)
            expect_denied(&c, forms[k], denied4[i].why);
    }
    for (size_t i = 0; i < sizeof(denied6) / sizeof(denied6[0]); i++)
        expect_denied(&c, denied6[i].ip, denied6[i].why);
    assert_int_equal(a->nperms, 0);
    assert_int_equal(a->nchans, 0);
    /* All or nothing: one denied peer among allowed ones installs none of them. */
    union stun_addr mixed[3] = {mkaddr("8.8.8.8", 1), mkaddr("10.0.0.1", 1), mkaddr("1.1.1.1", 1)};
    struct reply r;
    cl_permit(&c, mixed, 3, &r);
    EXPECT_ERR(&r, 403, true);
    assert_false(alloc_permitted(a, &mixed[0], fx->now));
    fx_finish(fx);
}

/* Just outside each denied range is an ordinary peer; embedded forms of public addresses are
 * that address. */
static void test_policy_neighbours_allowed(void **state)
{
    struct fixture *fx = *state;
    struct client c;
    struct allocation *a = dual_allocation(fx, &c);
    static const char *const ok[] = {
        "1.0.0.1",         "9.255.255.255",   "11.0.0.1",       "100.63.255.255",
        "100.128.0.1",     "126.255.255.255", "128.0.0.1",      "169.253.255.255",
        "169.255.0.1",     "172.15.255.255",  "172.32.0.1",     "192.0.1.1",
        "192.167.255.255", "192.169.0.1",     "198.17.255.255", "198.20.0.1",
        "223.255.255.255", "2606:4700::1111", "2001:db9::1",    "2001:4860:4860::8888",
    };
    struct reply r;
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        cl_permit1(&c, ok[i], &r);
        if (r.code != 0) fail_msg("CreatePermission %s: answer %d", ok[i], r.code);
    }
    /* ::ffff:8.8.8.8, 64:ff9b::8.8.8.8 and 2002:0808:0808:: all are 8.8.8.8. */
    static const char *const embedded[] = {"::ffff:8.8.8.8", "64:ff9b::8.8.8.8", "2002:808:808::"};
    union stun_addr canon = mkaddr("8.8.8.8", 0);
    for (size_t i = 0; i < 3; i++) {
        uint16_t ch = (uint16_t)(0x4000 + i);
        union stun_addr p = mkaddr(embedded[i], (uint16_t)(7000 + i));
        cl_bind(&c, ch, &p, &r);
        EXPECT_OK(&r);
        union stun_addr want = mkaddr("8.8.8.8", (uint16_t)(7000 + i));
        send_chdata(&c, ch, "z", 1, &r);
        expect_fwd(&r, a, 0, &want, "z", 1, false); /* sent as IPv4, from the IPv4 relay */
    }
    assert_true(alloc_permitted(a, &canon, fx->now));
    fx_finish(fx);
}

static void test_policy_allow_loopback(void **state)
{
    struct fixture *fx = *state;
    fx->policy.allow_loopback = true;
    struct client c;
    struct allocation *a = dual_allocation(fx, &c);
    struct reply r;
    static const char *const loop[] = {"127.0.0.1", "::ffff:127.0.0.1", "::1"};
    for (size_t i = 0; i < 3; i++) {
        cl_permit1(&c, loop[i], &r);
        EXPECT_OK(&r);
        union stun_addr p = mkaddr(loop[i], (uint16_t)(5000 + i));
        cl_bind(&c, (uint16_t)(0x4000 + i), &p, &r);
        EXPECT_OK(&r);
    }
    union stun_addr lo = mkaddr("127.0.0.1", 9);
    send_ind(&c, &lo, "ping", 4, false, &r);
    expect_fwd(&r, a, 0, &lo, "ping", 4, false);
    /* Loopback only: private space stays denied. */
    expect_denied(&c, "10.0.0.1", POLICY_PRIVATE);
    expect_denied(&c, "::ffff:192.168.0.1", POLICY_PRIVATE);
    fx_finish(fx);
}

/* The relay itself is never a peer: a channel to one of its addresses at a listener or relayed
 * port is refused (403, SELF, counted) and so is data to it, in any encoding; a permission
 * (no port) and other ports of the same host are not. */
static void test_self_loop_refused(void **state)
{
    struct fixture *fx = *state;
    union stun_addr ips[] = {mkaddr("127.0.0.1", 0), mkaddr("::1", 0)};
    struct policy_cidr nets[] = {{.addr = mkaddr("127.0.0.0", 0), .prefix = 8}};
    uint16_t ports[] = {3478};
    struct policy_self self;
    assert_int_equal(policy_self_build(&self, ips, 2, nets, 1, ports, 1, 50000, 50999), 0);
    fx->policy.allow_loopback = true;
    fx->policy.self = &self;
    struct client c;
    struct allocation *a = dual_allocation(fx, &c);
    struct reply r;
    cl_permit1(&c, "127.0.0.1", &r);
    EXPECT_OK(&r);
    cl_permit1(&c, "::1", &r);
    EXPECT_OK(&r);
    cl_permit1(&c, "127.0.0.5", &r);
    EXPECT_OK(&r);
    static const char *const self_peers[] = {"127.0.0.1", "::ffff:0:127.0.0.1", "127.0.0.5",
                                             "::ffff:127.0.0.1", "::1"};
    static const uint16_t self_ports[] = {3478, 50000, 50999};
    uint16_t ch = 0x4000;
    for (size_t i = 0; i < 5; i++)
        for (size_t k = 0; k < 3; k++) {
            union stun_addr p = mkaddr(self_peers[i], self_ports[k]);
            cl_bind(&c, ch++, &p, &r);
            if (r.code != 403)
                fail_msg("ChannelBind %s:%u: %d", self_peers[i], self_ports[k], r.code);
            assert_int_equal(D(&r, denied_self), 1);
            assert_string_equal(last_event(fx)->what, "denied");
            assert_int_equal(last_event(fx)->verdict, POLICY_SELF);
            send_ind(&c, &p, "x", 1, false, &r);
            assert_null(r.fwd.a);
            assert_int_equal(D(&r, drop_self), 1);
            assert_int_equal(D(&r, drop_policy), 0);
        }
    union stun_addr other = mkaddr("127.0.0.1", 3479);
    send_ind(&c, &other, "x", 1, false, &r);
    expect_fwd(&r, a, 0, &other, "x", 1, false);
    assert_int_equal(a->nchans, 0);
    fx_finish(fx);
    policy_self_free(&self);
}

/* Unknown comprehension-required attributes are refused after authentication, so the 420 is
 * integrity-protected and lists them (RFC 8489 6.3.1). */
static void test_420_unknown_attribute_authenticated(void **state)
{
    struct fixture *fx = *state;
    fx_start(fx);
    struct client c;
    cl_init(&c, fx, SRV_UDP, "192.0.2.77", 40000, "alice", "alice-pw");
    cl_login(&c);
    static const uint8_t four[4] = {0};
    struct req q;
    struct reply r;
    req_allocate(&c, &q);
    stun_enc_attr(&q.e, 0x0003, four, 4); /* CHANGE-REQUEST: not implemented */
    stun_enc_attr(&q.e, 0x7F01, four, 4);
    stun_enc_attr(&q.e, 0xC001, four, 4); /* comprehension-optional: ignored */
    send_signed(&c, &q, &r);
    EXPECT_ERR(&r, 420, true);
    uint16_t types[8];
    size_t n = 0;
    assert_int_equal(stun_get_unknown(stun_find(&r.m, STUN_ATTR_UNKNOWN_ATTRIBUTES), types, 8, &n),
                     0);
    assert_int_equal(n, 2);
    assert_int_equal(types[0], 0x0003);
    assert_int_equal(types[1], 0x7F01);
    assert_int_equal(fx->s.allocs.count, 0);
    assert_int_equal(fx->quota_total, 0);
    /* Without credentials the 401 comes first. */
    req_allocate(&c, &q);
    stun_enc_attr(&q.e, 0x7F01, four, 4);
    req_done(&c, &q);
    xchg(&c, &q, &r);
    EXPECT_ERR(&r, 401, false);
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
    assert_int_equal(fx->open_calls, 1);
    assert_int_equal(quota_count(fx, "alice"), 1);
    /* The same client over TCP is another 5-tuple. */
    struct client t;
    cl_init(&t, fx, SRV_TCP, "192.0.2.77", 40000, "alice", "alice-pw");
    cl_login(&t);
    cl_allocate(&t);
    fx_finish(fx);
}

static void test_438_stale_forged_and_foreign_nonce(void **state)
{
    struct fixture *fx = *state;
    fx->opt.nonce_lifetime_s = 300;
    fx_start(fx);
    struct client c, d;
    cl_init(&c, fx, SRV_UDP, "192.0.2.77", 40000, "alice", "alice-pw");
    cl_init(&d, fx, SRV_UDP, "192.0.2.77", 40001, "alice", "alice-pw");
    cl_login(&c);
    cl_allocate(&c);
    struct reply r;

    /* Forged: one character of the MAC part changed; then a truncated nonce. */
    uint8_t good[STUN_MAX_TEXT_BYTES];
    size_t goodlen = c.noncelen;
    memcpy(good, c.nonce, goodlen);
    c.nonce[30] = c.nonce[30] == 'A' ? 'B' : 'A';
    cl_refresh(&c, -1, &r);
    EXPECT_ERR(&r, 438, false);
    c.noncelen = goodlen - 1;
    memcpy(c.nonce, good, goodlen);
    cl_refresh(&c, -1, &r);
    EXPECT_ERR(&r, 438, false);
    c.noncelen = goodlen;
    cl_refresh(&c, -1, &r);
    EXPECT_OK(&r);

    /* Issued to another client address (same IP, other port). */
    memcpy(d.realm, c.realm, c.realmlen);
    d.realmlen = c.realmlen;
    memcpy(d.nonce, c.nonce, c.noncelen);
    d.noncelen = c.noncelen;
    cl_derive(&d);
    struct req q;
    req_allocate(&d, &q);
    send_signed(&d, &q, &r);
    EXPECT_ERR(&r, 438, false);
    assert_null(cl_alloc(&d));
    cl_learn(&d, &r); /* the 438 carries a nonce for d itself */
    cl_allocate(&d);

    /* Stale. */
    fx->now = T0 + 300 * SEC;
    cl_refresh(&c, -1, &r);
    EXPECT_ERR(&r, 438, false);
    cl_learn(&c, &r);
    cl_refresh(&c, -1, &r);
    EXPECT_OK(&r);
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
    assert_int_equal(fx->quota_total, 0);
    assert_int_equal(fx->open_calls, 0);
    cl_allocate(&c);
    req_refresh(&c, &q, -1);
    stun_enc_u8_rffu(&q.e, STUN_ATTR_REQUESTED_ADDRESS_FAMILY, 0x03);
    send_signed(&c, &q, &r);
    EXPECT_ERR(&r, 440, true);
    fx_finish(fx);
}

static void test_441_wrong_credentials(void **state)
{
    struct fixture *fx = *state;
    struct client c, b;
    struct allocation *a = one_allocation(fx, &c);
    /* bob, with valid credentials, on alice's 5-tuple. */
    cl_init(&b, fx, SRV_UDP, "192.0.2.77", 40000, "bob", "bob-pw");
    cl_login(&b);
    union stun_addr pa = mkaddr("8.8.8.8", 5000);
    struct reply r;
    uint64_t expires = a->expires_ms;
    fx->now += 10 * SEC;
    cl_refresh(&b, -1, &r);
    EXPECT_ERR(&r, 441, true);
    cl_refresh(&b, 0, &r);
    EXPECT_ERR(&r, 441, true);
    cl_permit(&b, &pa, 1, &r);
    EXPECT_ERR(&r, 441, true);
    cl_bind(&b, 0x4000, &pa, &r);
    EXPECT_ERR(&r, 441, true);
    /* alice's allocation is untouched. */
    assert_ptr_equal(cl_alloc(&c), a);
    assert_int_equal(a->expires_ms, expires);
    assert_int_equal(a->nperms, 0);
    assert_int_equal(quota_count(fx, "bob"), 0);
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
    assert_int_equal(quota_count(fx, "bob"), 0);
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
    fx->now = a->expires_ms + 5; /* 5 ms late */
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
    srv_expire(&fx->s, fx->now);
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

static void test_442_unsupported_transport(void **state)
{
    struct fixture *fx = *state;
    fx_start(fx);
    struct client c;
    cl_init(&c, fx, SRV_UDP, "192.0.2.77", 40000, "alice", "alice-pw");
    cl_login(&c);
    static const uint8_t protos[] = {6, 1, 132};
    for (size_t i = 0; i < sizeof(protos); i++) {
        struct req q;
        struct reply r;
        req_begin(&c, &q, STUN_ALLOCATE, STUN_REQUEST);
        stun_enc_u8_rffu(&q.e, STUN_ATTR_REQUESTED_TRANSPORT, protos[i]);
        send_signed(&c, &q, &r);
        EXPECT_ERR(&r, 442, true);
    }
    assert_int_equal(fx->s.allocs.count, 0);
    fx_finish(fx);
}

static void test_443_peer_family_mismatch(void **state)
{
    struct fixture *fx = *state;
    struct client c, d;
    struct allocation *a = one_allocation(fx, &c);
    union stun_addr p6 = mkaddr("2606:4700::1111", 5000), p4 = mkaddr("8.8.8.8", 5000);
    struct reply r;
    cl_permit(&c, &p6, 1, &r);
    EXPECT_ERR(&r, 443, true);
    cl_bind(&c, 0x4000, &p6, &r);
    EXPECT_ERR(&r, 443, true);
    struct req q;
    req_refresh(&c, &q, -1);
    stun_enc_u8_rffu(&q.e, STUN_ATTR_REQUESTED_ADDRESS_FAMILY, STUN_FAMILY_IPV6);
    send_signed(&c, &q, &r);
    EXPECT_ERR(&r, 443, true);
    assert_int_equal(a->nperms, 0);
    /* And the other way round on an IPv6 allocation. */
    cl_init(&d, fx, SRV_UDP, "192.0.2.78", 40000, "alice", "alice-pw");
    cl_login(&d);
    req_allocate(&d, &q);
    stun_enc_u8_rffu(&q.e, STUN_ATTR_REQUESTED_ADDRESS_FAMILY, STUN_FAMILY_IPV6);
    send_signed(&d, &q, &r);
    EXPECT_OK(&r);
    cl_permit(&d, &p4, 1, &r);
    EXPECT_ERR(&r, 443, true);
    req_refresh(&d, &q, -1);
    stun_enc_u8_rffu(&q.e, STUN_ATTR_REQUESTED_ADDRESS_FAMILY, STUN_FAMILY_IPV4);
    send_signed(&d, &q, &r);
    EXPECT_ERR(&r, 443, true);
    fx_finish(fx);
}

static void test_486_user_quota(void **state)
{
    struct fixture *fx = *state;
    fx->quota_user_max = 1;
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
    assert_int_equal(fx->open_calls, 1);
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
    fx->quota_total_max = 2;
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
    assert_int_equal(fx->quota_total, 2);
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
    assert_int_equal(fx->quota_total, 2); /* the failed one gave its quota back */
    check_books(fx);
    cl_refresh(&c[0], 0, &r);
    EXPECT_OK(&r);
    cl_allocate(&c[2]);
    fx_finish(fx);
}

static void test_508_relay_open_error(void **state)
{
    struct fixture *fx = *state;
    fx->open_error = -EACCES;
    fx_start(fx);
    struct client c;
    cl_init(&c, fx, SRV_UDP, "192.0.2.77", 40000, "alice", "alice-pw");
    cl_login(&c);
    struct req q;
    struct reply r;
    req_allocate(&c, &q);
    send_signed(&c, &q, &r);
    EXPECT_ERR(&r, 508, true);
    assert_int_equal(fx->open_calls, 1); /* only -EADDRINUSE is worth another port */
    assert_int_equal(fx->quota_total, 0);
    assert_int_equal(ports_in_state(fx, PORT_USED), 0);
    assert_null(cl_alloc(&c));
    fx->open_error = 0;
    cl_allocate(&c);
    fx_finish(fx);
}

static union stun_addr nth_public(unsigned i)
{
    char ip[32];
    snprintf(ip, sizeof(ip), "8.8.%u.%u", i / 200, i % 200 + 1);
    return mkaddr(ip, 9);
}

/* Install count permissions (peers nth_public(0), (1), ...), at most 50 per request. */
static void fill_permissions(struct client *c, unsigned count)
{
    union stun_addr peers[50];
    for (unsigned done = 0; done < count;) {
        unsigned n = count - done < 50 ? count - done : 50;
        for (unsigned i = 0; i < n; i++)
            peers[i] = nth_public(done + i);
        struct reply r;
        cl_permit(c, peers, n, &r);
        EXPECT_OK(&r);
        done += n;
    }
}

static void test_508_too_many_permissions(void **state)
{
    struct fixture *fx = *state;
    struct client c;
    struct allocation *a = one_allocation(fx, &c);
    fill_permissions(&c, ALLOC_MAX_PERMISSIONS);
    assert_int_equal(a->nperms, ALLOC_MAX_PERMISSIONS);
    struct reply r;
    union stun_addr extra = nth_public(ALLOC_MAX_PERMISSIONS);
    cl_permit(&c, &extra, 1, &r);
    EXPECT_ERR(&r, 508, true);
    union stun_addr two[2] = {nth_public(0), nth_public(ALLOC_MAX_PERMISSIONS + 1)};
    cl_permit(&c, two, 2, &r); /* all or nothing: the existing one is not refreshed either */
    EXPECT_ERR(&r, 508, true);
    cl_bind(&c, 0x4000, &extra, &r); /* a channel needs a permission too */
    EXPECT_ERR(&r, 508, true);
    assert_int_equal(a->nchans, 0);
    /* Refreshing existing ones is fine when full. */
    cl_permit(&c, two, 1, &r);
    EXPECT_OK(&r);
    cl_bind(&c, 0x4000, &two[0], &r);
    EXPECT_OK(&r);
    /* Expired permissions make room. */
    fx->now += 300 * SEC;
    cl_permit(&c, &extra, 1, &r);
    EXPECT_OK(&r);
    fx_finish(fx);
}

/* One permission short of the limit, a request naming one new peer twice (or in two forms)
 * installs one permission: it fits. */
static void test_permission_limit_counts_duplicates_once(void **state)
{
    struct fixture *fx = *state;
    struct client c;
    struct allocation *a = one_allocation(fx, &c);
    fill_permissions(&c, ALLOC_MAX_PERMISSIONS - 1);
    union stun_addr twice[2] = {mkaddr("1.1.1.1", 1), mkaddr("::ffff:1.1.1.1", 2)};
    struct reply r;
    cl_permit(&c, twice, 2, &r);
    EXPECT_OK(&r);
    assert_int_equal(a->nperms, ALLOC_MAX_PERMISSIONS);
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
    assert_int_equal(fx->open_calls, 0);
    assert_int_equal(fx->quota_total, 0);
    fx_finish(fx);
}

/* ---- 4. retransmissions ----------------------------------------------------------------- */

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
    fx->now += 500;
    xchg(&c, &q, &r2);
    EXPECT_OK(&r2);
    assert_int_equal(r1.len, r2.len);
    assert_memory_equal(r1.buf, r2.buf, r1.len);
    assert_int_equal(fx->s.c.v[SRV_C_allocations_created], 1);
    assert_int_equal(fx->s.c.v[SRV_C_allocate_success], 1);
    assert_int_equal(fx->s.c.v[SRV_C_retransmit_answered], 1);
    assert_int_equal(fx->open_calls, 1);
    assert_int_equal(quota_count(fx, "alice"), 1);
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
    fx->now += 41 * SEC;
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
    assert_int_equal(fx->open_calls, 1);
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

/* ---- TURN REST API credentials (auth.secrets) ---- */

static const char *const rest_secrets[] = {"old-secret", "new-secret"};

/* Allocate with a REST username for expiry and a password from secret; returns the code. */
static int rest_allocate(struct fixture *fx, const char *ip, const char *name, const char *secret,
                         enum auth_rest_mac mac, bool sha256)
{
    char pw[AUTH_REST_PASSWORD_MAX + 1];
    size_t n = auth_rest_password(mac, (const uint8_t *)secret, strlen(secret),
                                  (const uint8_t *)name, strlen(name), pw);
    assert_true(n > 0);
    pw[n] = 0;
    struct client c;
    cl_init(&c, fx, SRV_UDP, ip, 40000, name, pw);
    c.sha256 = sha256;
    cl_login(&c);
    struct req q;
    struct reply r;
    req_allocate(&c, &q);
    req_sign(&c, &q, 0);
    xchg(&c, &q, &r);
    return r.code;
}

static void test_rest_credentials(void **state)
{
    struct fixture *fx = *state;
    fx->opt.rest_secrets = rest_secrets;
    fx->opt.nrest_secrets = 2;
    fx->opt.rest_separator = ':';
    fx_start(fx);
    fx->s.unix_s = 1700000000;
    /* Both secrets of a rotation work, with either MAC variant and either integrity. */
    assert_int_equal(rest_allocate(fx, "192.0.2.81", "1700000600:alice", "old-secret",
                                   AUTH_REST_HMAC_SHA1, false),
                     0);
    assert_int_equal(rest_allocate(fx, "192.0.2.82", "1700000600:alice", "new-secret",
                                   AUTH_REST_HMAC_SHA1, true),
                     0);
    assert_int_equal(rest_allocate(fx, "192.0.2.83", "1700000600:bob", "new-secret",
                                   AUTH_REST_HMAC_SHA256, false),
                     0);
    /* Expired (expiry == now counts as expired), unknown secret, malformed names: 401. */
    assert_int_equal(rest_allocate(fx, "192.0.2.84", "1700000000:alice", "new-secret",
                                   AUTH_REST_HMAC_SHA1, false),
                     401);
    assert_int_equal(rest_allocate(fx, "192.0.2.85", "1699999999:alice", "old-secret",
                                   AUTH_REST_HMAC_SHA1, false),
                     401);
    assert_int_equal(rest_allocate(fx, "192.0.2.86", "1700000600:alice", "retired-secret",
                                   AUTH_REST_HMAC_SHA1, false),
                     401);
    const char *bad[] = {"alice",
                         ":alice",
                         "1700000600:",
                         "17000x0600:alice",
                         "99999999999999999999:alice",
                         "1700000600-alice"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(
            rest_allocate(fx, "192.0.2.87", bad[i], "new-secret", AUTH_REST_HMAC_SHA1, false), 401);
    /* The wall clock moves on: the same credential stops working for new allocations. */
    fx->s.unix_s = 1700000600;
    assert_int_equal(rest_allocate(fx, "192.0.2.88", "1700000600:carol", "new-secret",
                                   AUTH_REST_HMAC_SHA1, false),
                     401);
    assert_int_equal(fx->s.allocs.count, 3);
    fx_finish(fx);
}

static void test_rest_primitives(void **state)
{
    (void)state;
    /* Vectors from Python's hmac/base64, an independent implementation. */
    char pw[AUTH_REST_PASSWORD_MAX + 1];
    size_t n = auth_rest_password(AUTH_REST_HMAC_SHA1, (const uint8_t *)"north", 5,
                                  (const uint8_t *)"1700000000:alice", 16, pw);
    pw[n] = 0;
    assert_string_equal(pw, "Cd/49soE35ICqcJF/bCTn8Z4OyE=");
    n = auth_rest_password(AUTH_REST_HMAC_SHA256, (const uint8_t *)"s3cr3t-rotate", 13,
                           (const uint8_t *)"4102444800:bob@example", 22, pw);
    pw[n] = 0;
    assert_string_equal(pw, "WQ0cLlPkB6bvRo6R0qH51xVJPpoY+tHzM6NlJC9HNsw=");
    uint64_t e = 0;
    assert_int_equal(auth_rest_parse((const uint8_t *)"4102444800:bob", 14, ':', &e), 0);
    assert_true(e == 4102444800ull);
    assert_int_equal(auth_rest_parse((const uint8_t *)"4102444800#bob", 14, '#', &e), 0);
    assert_int_equal(auth_rest_parse((const uint8_t *)"4102444800:bob", 14, '#', &e), -1);
    assert_int_equal(auth_rest_parse((const uint8_t *)"12:", 3, ':', &e), -1);
}

/* ---- per-user bandwidth limit (token bucket per direction) ---- */

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
    fx->now += 1000;
    send_chdata(&c, 0x4000, data, sizeof(data), &r);
    assert_non_null(r.fwd.a);
    /* The other direction has its own bucket. */
    uint8_t out[1024];
    assert_true(peer_in(fx, a, 0, &peer, data, sizeof(data), out, sizeof(out)) > 0);
    assert_int_equal(peer_in(fx, a, 0, &peer, data, sizeof(data), out, sizeof(out)), 0);
    assert_int_equal(fx->s.c.v[SRV_C_drop_bandwidth], 2);
    fx_finish(fx);
}

/* ---- auth.strict_expiry: srv_revalidate ---- */

static struct auth_creds gone_inner;
static bool alice_gone;

static int gone_lookup(void *ctx, const uint8_t *name, size_t len, bool uh, struct auth_user *out)
{
    if (alice_gone && !uh && len == 5 && memcmp(name, "alice", 5) == 0) return -1; /* deleted */
    return gone_inner.lookup(ctx, name, len, uh, out);
}

static void test_revalidate_closes_revoked(void **state)
{
    struct fixture *fx = *state;
    fx->opt.rest_secrets = rest_secrets;
    fx->opt.nrest_secrets = 2;
    fx->opt.rest_separator = ':';
    gone_inner = fx->creds;
    fx->creds.lookup = gone_lookup;
    alice_gone = false;
    struct client c;
    one_allocation(fx, &c);
    fx->s.unix_s = 1700000000;
    assert_int_equal(
        rest_allocate(fx, "192.0.2.91", "1700000600:u1", "new-secret", AUTH_REST_HMAC_SHA1, false),
        0);
    assert_int_equal(fx->s.allocs.count, 2);
    assert_int_equal(srv_revalidate(&fx->s), 0); /* nothing changed */
    alice_gone = true;                           /* the admin deletes alice */
    assert_int_equal(srv_revalidate(&fx->s), 1);
    assert_int_equal(fx->s.allocs.count, 1);
    fx->s.unix_s = 1700000600; /* the REST username expires */
    assert_int_equal(srv_revalidate(&fx->s), 1);
    assert_int_equal(fx->s.allocs.count, 0);
    assert_int_equal(fx->s.c.v[SRV_C_allocations_revoked], 2);
    alice_gone = false;
    fx_finish(fx);
}

static void test_retransmit_create_permission(void **state)
{
    struct fixture *fx = *state;
    struct client c;
    struct allocation *a = one_allocation(fx, &c);
    union stun_addr pa = mkaddr("8.8.8.8", 5000);
    struct req q;
    struct reply r1, r2, r3;
    req_permit(&c, &q, &pa, 1);
    req_sign(&c, &q, 0);
    xchg(&c, &q, &r1);
    EXPECT_OK(&r1);
    fx->now += 1 * SEC;
    xchg(&c, &q, &r2);
    EXPECT_OK(&r2);
    assert_int_equal(r1.len, r2.len);
    assert_memory_equal(r1.buf, r2.buf, r1.len);
    assert_int_equal(D(&r2, retransmit_answered), 1);
    assert_int_equal(D(&r2, permission_success), 0);
    assert_int_equal(a->perms[0].expires_ms, T0 + 300 * SEC); /* not refreshed by the copy */
    fx->now = T0 + 41 * SEC;
    xchg(&c, &q, &r3);
    EXPECT_OK(&r3);
    assert_int_equal(D(&r3, retransmit_answered), 0);
    assert_int_equal(D(&r3, permission_success), 1);
    assert_int_equal(a->nperms, 1);
    assert_int_equal(a->perms[0].expires_ms, fx->now + 300 * SEC);
    fx_finish(fx);
}

static void test_retransmit_refresh(void **state)
{
    struct fixture *fx = *state;
    struct client c;
    struct allocation *a = one_allocation(fx, &c);
    struct req q;
    struct reply r1, r2, r3;
    fx->now = T0 + 100 * SEC;
    req_refresh(&c, &q, 1200);
    req_sign(&c, &q, 0);
    xchg(&c, &q, &r1);
    EXPECT_OK(&r1);
    fx->now += 2 * SEC;
    xchg(&c, &q, &r2);
    EXPECT_OK(&r2);
    assert_int_equal(r1.len, r2.len);
    assert_memory_equal(r1.buf, r2.buf, r1.len);
    assert_int_equal(D(&r2, retransmit_answered), 1);
    assert_int_equal(D(&r2, refresh_success), 0);
    assert_int_equal(a->expires_ms, T0 + 1300 * SEC);
    fx->now = T0 + 141 * SEC;
    xchg(&c, &q, &r3);
    EXPECT_OK(&r3);
    assert_int_equal(D(&r3, refresh_success), 1);
    assert_int_equal(a->expires_ms, fx->now + 1200 * SEC);
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
    fx->now += 1 * SEC;
    xchg(&c, &q, &r2);
    EXPECT_OK(&r2);
    assert_int_equal(r1.len, r2.len);
    assert_memory_equal(r1.buf, r2.buf, r1.len);
    assert_int_equal(fx->s.c.v[SRV_C_allocations_deleted], 1);
    fx_finish(fx);
}

/* ---- 5. EVEN-PORT and RESERVATION-TOKEN ------------------------------------------------- */

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
    assert_int_equal(port_of(&cl_alloc(&c)->relay[0].addr), PORT_MIN + 1);
    req_allocate(&d, &q);
    stun_enc_even_port(&q.e, false);
    send_signed(&d, &q, &r);
    EXPECT_OK(&r);
    union stun_addr relayed = expect_relayed(fx, &r, 0, 0);
    assert_int_equal(port_of(&relayed), PORT_MIN + 2);
    assert_null(stun_find(&r.m, STUN_ATTR_RESERVATION_TOKEN));
    assert_int_equal(ports_in_state(fx, PORT_RESERVED), 0);
    fx_finish(fx);
}

/* Allocate with EVEN-PORT R=1 and return the reservation token and the even port. */
static uint64_t reserve_pair(struct client *c, uint16_t *port)
{
    struct req q;
    struct reply r;
    req_allocate(c, &q);
    stun_enc_even_port(&q.e, true);
    send_signed(c, &q, &r);
    EXPECT_OK(&r);
    union stun_addr relayed = expect_relayed(c->fx, &r, 0, 0);
    *port = port_of(&relayed);
    assert_int_equal(*port % 2, 0);
    const struct stun_attr *tok = stun_find(&r.m, STUN_ATTR_RESERVATION_TOKEN);
    assert_non_null(tok);
    uint64_t token = 0;
    assert_int_equal(stun_get_u64(tok, &token), 0);
    assert_int_equal(port_state(c->fx, 0, (uint16_t)(*port + 1)), PORT_RESERVED);
    return token;
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
    assert_int_not_equal(port_of(&cl_alloc(&e)->relay[0].addr), port + 1);

    fx->now = T0 + 30 * SEC - 1; /* still held */
    struct req q;
    struct reply r;
    req_allocate(&b, &q);
    stun_enc_u64(&q.e, STUN_ATTR_RESERVATION_TOKEN, token);
    send_signed(&b, &q, &r);
    EXPECT_OK(&r);
    union stun_addr relayed = expect_relayed(fx, &r, 0, 0);
    assert_int_equal(port_of(&relayed), port + 1);
    assert_null(stun_find(&r.m, STUN_ATTR_RESERVATION_TOKEN));
    assert_int_equal(ports_in_state(fx, PORT_RESERVED), 0);

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
    fx->now = T0 + 30 * SEC;
    struct req q;
    struct reply r;
    req_allocate(&b, &q);
    stun_enc_u64(&q.e, STUN_ATTR_RESERVATION_TOKEN, token);
    send_signed(&b, &q, &r);
    EXPECT_ERR(&r, 508, true);
    assert_int_equal(quota_count(fx, "bob"), 0);
    assert_int_equal(fx->open_calls, 1);
    fx_finish(fx);
}

static void test_relay_open_eaddrinuse_retries(void **state)
{
    struct fixture *fx = *state;
    fx->busy[0] = PORT_MIN;     /* another process holds the first port */
    fx->busy[1] = PORT_MIN + 2; /* and the first even one after it */
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
    assert_int_equal(port_of(&relayed), PORT_MIN + 1);
    assert_int_equal(fx->open_calls, 2);
    assert_int_equal(port_state(fx, 0, PORT_MIN), PORT_FREE);
    /* With a reservation: the refused pair is given back whole, the next pair is used. */
    uint16_t port;
    reserve_pair(&d, &port);
    assert_int_equal(port, PORT_MIN + 4);
    assert_int_equal(fx->open_calls, 4);
    assert_int_equal(port_state(fx, 0, PORT_MIN + 2), PORT_FREE);
    assert_int_equal(port_state(fx, 0, PORT_MIN + 3), PORT_FREE);
    assert_int_equal(ports_in_state(fx, PORT_RESERVED), 1);
    fx_finish(fx);
}

/* ---- 6. dual allocations ---------------------------------------------------------------- */

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
    assert_int_equal(fx->nopen, 2);
    assert_int_equal(quota_count(fx, "alice"), 1); /* one allocation, one quota unit */

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
    assert_null(find_sock(fx, &r6));
    assert_int_equal(port_state(fx, 1, port_of(&r6)), PORT_FREE);
    assert_int_equal(quota_count(fx, "alice"), 1);
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
    assert_int_equal(fx->nopen, 1);
    fx_finish(fx);
}

/* ---- 7. DONT-FRAGMENT ------------------------------------------------------------------- */

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

/* ---- indications and ChannelData that go nowhere ---------------------------------------- */

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

/* ---- 8. srv_delete and srv_free give everything back ------------------------------------ */

static void test_srv_delete_releases_everything(void **state)
{
    struct fixture *fx = *state;
    struct client c;
    struct allocation *a = dual_allocation(fx, &c);
    union stun_addr pa = mkaddr("8.8.8.8", 5000);
    struct reply r;
    cl_bind(&c, 0x4000, &pa, &r);
    EXPECT_OK(&r);
    uint16_t p4 = port_of(&a->relay[0].addr), p6 = port_of(&a->relay[1].addr);
    struct srv_counters before = fx->s.c;
    srv_delete(&fx->s, a, "closed");
    assert_int_equal(fx->s.c.v[SRV_C_allocations_deleted] - before.v[SRV_C_allocations_deleted], 1);
    assert_string_equal(last_event(fx)->what, "closed");
    assert_null(cl_alloc(&c));
    assert_int_equal(fx->nopen, 0);
    assert_int_equal(port_state(fx, 0, p4), PORT_FREE);
    assert_int_equal(port_state(fx, 1, p6), PORT_FREE);
    assert_int_equal(fx->quota_total, 0);
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
    assert_int_equal(fx->nopen, 5);
    assert_int_equal(quota_count(fx, "alice"), 2);
    assert_int_equal(quota_count(fx, "bob"), 2);
    fx_finish(fx); /* srv_free: every socket closed, every port and quota unit back */
    assert_int_equal(count_events(fx, "closed"), 4);
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
        T(test_allocation_expires_at_lifetime),
        T(test_allocate_lifetime),
        T(test_refreshed_allocation_lives_on),
        T(test_permission_expires_after_300s),
        T(test_channel_expires_after_600s_and_is_held),
        T(test_channel_rebind_refreshes),
        T(test_channel_without_permission_drops),
        T(test_nonce_expiry_438_then_retry),
        T(test_400_allocate_without_requested_transport),
        T(test_400_channel_bind_missing_attributes),
        T(test_400_channel_number_range_strict),
        T(test_channel_number_range_relaxed),
        T(test_400_channel_bound_to_another_peer),
        T(test_400_allocate_attribute_combinations),
        T(test_400_even_port_reserve_with_additional_family),
        T(test_400_create_permission_without_peer),
        T(test_400_integrity_without_realm_or_nonce),
        T(test_400_password_algorithms_tampered),
        T(test_401_without_credentials),
        T(test_401_wrong_password_and_unknown_user),
        T(test_401_wrong_realm),
        T(test_403_policy_table),
        T(test_policy_neighbours_allowed),
        T(test_policy_allow_loopback),
        T(test_self_loop_refused),
        T(test_420_unknown_attribute_authenticated),
        T(test_437_allocation_mismatch),
        T(test_438_stale_forged_and_foreign_nonce),
        T(test_440_address_family_not_supported),
        T(test_441_wrong_credentials),
        T(test_437_allocate_by_other_user_on_used_tuple),
        T(test_refresh_after_lifetime_before_sweep),
        T(test_442_unsupported_transport),
        T(test_443_peer_family_mismatch),
        T(test_486_user_quota),
        T(test_486_total_quota),
        T(test_508_port_pool_exhausted),
        T(test_508_relay_open_error),
        T(test_508_too_many_permissions),
        T(test_permission_limit_counts_duplicates_once),
        T(test_508_invalid_reservation_token),
        T(test_retransmit_allocate),
        T(test_retransmit_allocate_after_cache_expiry),
        T(test_reused_tid_gets_its_own_answer),
        T(test_rest_credentials),
        T(test_rest_primitives),
        T(test_bandwidth_limit),
        T(test_partial_delete_forgets_that_family),
        T(test_revalidate_closes_revoked),
        T(test_retransmit_create_permission),
        T(test_retransmit_refresh),
        T(test_retransmit_refresh_delete),
        T(test_even_port),
        T(test_even_port_reservation_token),
        T(test_reservation_token_lapses_after_30s),
        T(test_relay_open_eaddrinuse_retries),
        T(test_dual_allocation),
        T(test_dual_allocation_ipv4_only),
        T(test_requested_family_ipv6),
        T(test_dont_fragment),
        T(test_client_data_drops),
        T(test_srv_delete_releases_everything),
        T(test_srv_free_releases_everything),
    };
#undef T
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
