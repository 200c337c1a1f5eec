/* server.c: STUN Binding and the TURN methods (Allocate, Refresh, CreatePermission, ChannelBind,
 * Send/Data, ChannelData) with the long-term credential mechanism (RFC 8489 9.2). */
#include <errno.h>
#include <string.h>

#include <openssl/crypto.h>

#include "auth.h"
#include "server.h"
#include "tern_mem.h"
#include "wire.h"

const char *const srv_counter_names[SRV_C_COUNT] = {
#define X(name, help) #name,
    SRV_COUNTERS(X)
#undef X
};
const char *const srv_counter_help[SRV_C_COUNT] = {
#define X(name, help) help,
    SRV_COUNTERS(X)
#undef X
};

/* ---- transaction cache: retransmitted requests get the very same answer ---- */

#define TXC_SLOTS   1024
#define TXC_MAX     384         /* larger answers are not cached (none of ours are) */
#define TXC_LIFE_MS (40 * 1000) /* RFC 8489 6.2.1: a client retransmits for 39.5 s at most */

struct txc_entry {
    struct srv_tuple tuple;
    uint8_t tid[STUN_TID_LEN];
    uint64_t req_hash; /* a retransmission is the same request: same bytes, same hash */
    uint64_t expires_ms;
    uint16_t len;
    uint8_t bytes[TXC_MAX];
};
struct srv_txcache {
    struct txc_entry e[TXC_SLOTS];
};

/* Direct-mapped on the transaction ID (random per request): a collision only costs a
 * retransmission being processed again, which every handler tolerates. */
static struct txc_entry *txc_slot(struct srv *s, const uint8_t *tid)
{
    uint32_t h = (uint32_t)tid[0] | (uint32_t)tid[5] << 8 | (uint32_t)tid[11] << 16;
    return &s->txc->e[h % TXC_SLOTS];
}

/* FNV-1a of the whole request: a different request that reuses a transaction ID (a broken
 * or hostile client) must not be given another request's answer. */
static uint64_t req_hash(const uint8_t *p, size_t n)
{
    return fnv1a64(FNV64_INIT, p, n);
}

static const struct txc_entry *txc_find(struct srv *s, const struct srv_tuple *t,
                                        const uint8_t *tid, uint64_t hash, uint64_t now_ms)
{
    const struct txc_entry *e = txc_slot(s, tid);
    if (e->len && e->expires_ms > now_ms && e->req_hash == hash &&
        memcmp(e->tid, tid, STUN_TID_LEN) == 0 && tuple_equal(&e->tuple, t))
        return e;
    return NULL;
}

static void txc_store(struct srv *s, const struct srv_tuple *t, const uint8_t *tid, uint64_t hash,
                      const uint8_t *bytes, size_t len, uint64_t now_ms)
{
    if (len == 0 || len > TXC_MAX) return;
    struct txc_entry *e = txc_slot(s, tid);
    e->tuple = *t;
    e->req_hash = hash;
    memcpy(e->tid, tid, STUN_TID_LEN);
    e->expires_ms = now_ms + TXC_LIFE_MS;
    e->len = (uint16_t)len;
    memcpy(e->bytes, bytes, len);
}

/* ---- set-up ---- */

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* ---- RFC 8016 mobility tickets ----
 * A MOBILITY-TICKET is 24 characters of base64url for 18 bytes: a version byte, the worker
 * whose server holds the allocation (so that any worker can pass a Refresh on to it) and 16
 * random bytes, renewed by every Refresh that carries the ticket (so one value never links
 * two of the client's addresses beyond one move). The random part is the secret: the server
 * looks it up in its index; nothing else about the allocation is in the ticket. Short and
 * printable, because clients treat it as a string (coturn's keeps at most 32 bytes). */

#define TICKET_VERSION 1
#define TICKET_RAW     (2 + ALLOC_TICKET_LEN)

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static void ticket_encode(uint8_t worker, const uint8_t id[ALLOC_TICKET_LEN],
                          char out[SRV_TICKET_TEXT])
{
    uint8_t raw[TICKET_RAW] = {TICKET_VERSION, worker};
    memcpy(raw + 2, id, ALLOC_TICKET_LEN);
    for (size_t i = 0, o = 0; i < TICKET_RAW; i += 3) {
        uint32_t v = (uint32_t)raw[i] << 16 | (uint32_t)raw[i + 1] << 8 | raw[i + 2];
        for (int k = 3; k >= 0; k--)
            out[o++] = b64url[(v >> (6 * k)) & 63];
    }
}

static int b64url_value(uint8_t c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return -1;
}

/* A ticket of ours (by its form: the index decides whether it is live). */
static bool ticket_decode(const struct stun_attr *t, uint8_t *worker, uint8_t id[ALLOC_TICKET_LEN])
{
    if (!t || t->len != SRV_TICKET_TEXT) return false;
    uint8_t raw[TICKET_RAW];
    for (size_t i = 0, o = 0; i < SRV_TICKET_TEXT; i += 4) {
        uint32_t v = 0;
        for (size_t k = 0; k < 4; k++) {
            int c = b64url_value(t->val[i + k]);
            if (c < 0) return false;
            v = v << 6 | (uint32_t)c;
        }
        raw[o++] = (uint8_t)(v >> 16);
        raw[o++] = (uint8_t)(v >> 8);
        raw[o++] = (uint8_t)v;
    }
    if (raw[0] != TICKET_VERSION) return false;
    *worker = raw[1];
    memcpy(id, raw + 2, ALLOC_TICKET_LEN);
    return true;
}

static struct alloc_ticket **tk_bucket(struct alloc_ticket *const *hash, const uint8_t *id)
{
    uint32_t h;
    memcpy(&h, id, sizeof(h)); /* random bytes: any four are a good hash */
    return (struct alloc_ticket **)&hash[h % SRV_TICKET_BUCKETS];
}

static void tk_link(struct srv *s, struct alloc_ticket *k)
{
    struct alloc_ticket **pp = tk_bucket(s->tk_hash, k->id);
    k->next = *pp;
    *pp = k;
}

static void tk_unlink(struct srv *s, struct alloc_ticket *k)
{
    if (!k->set) return;
    for (struct alloc_ticket **pp = tk_bucket(s->tk_hash, k->id); *pp; pp = &(*pp)->next)
        if (*pp == k) {
            *pp = k->next;
            break;
        }
    k->next = NULL;
}

static struct allocation *tk_find(const struct srv *s, const uint8_t *id)
{
    for (const struct alloc_ticket *k = *tk_bucket(s->tk_hash, id); k; k = k->next)
        if (CRYPTO_memcmp(k->id, id, ALLOC_TICKET_LEN) == 0) return k->a;
    return NULL;
}

static void tickets_index(struct srv *s, struct allocation *a)
{
    for (int i = 0; i < 2; i++)
        if (a->tickets[i].set) tk_link(s, &a->tickets[i]);
}

static void tickets_unindex(struct srv *s, struct allocation *a)
{
    for (int i = 0; i < 2; i++)
        tk_unlink(s, &a->tickets[i]);
}

/* A new current ticket; the current one becomes the previous one, the previous one goes. */
static void ticket_renew(struct srv *s, struct allocation *a)
{
    tickets_unindex(s, a);
    if (a->tickets[0].set) {
        memcpy(a->tickets[1].id, a->tickets[0].id, ALLOC_TICKET_LEN);
        a->tickets[1].set = true;
        a->tickets[1].a = a;
    }
    s->io.random(s->io.ctx, a->tickets[0].id, ALLOC_TICKET_LEN);
    a->tickets[0].set = true;
    a->tickets[0].a = a;
    tickets_index(s, a);
}

void srv_ticket_text(const struct srv *s, const struct allocation *a, char out[SRV_TICKET_TEXT])
{
    ticket_encode(s->mob_dest >= 0 ? (uint8_t)s->mob_dest : s->worker, a->tickets[0].id, out);
}

int srv_init(struct srv *s, const struct srv_options *opt, const struct srv_io *io,
             uint64_t id_base)
{
    memset(s, 0, sizeof(*s));
    s->mob_dest = -1;
    s->opt = *opt;
    s->io = *io;
    s->txc = tern_calloc(1, sizeof(*s->txc));
    if (!s->txc || alloc_table_init(&s->allocs, id_base)) {
        tern_free(s->txc);
        return -1;
    }
    s->io.random(s->io.ctx, &s->rng, sizeof(s->rng));
    uint8_t seed[16] = {0}; /* drawn only when there is a table to key */
    if (opt->unauth_rate) s->io.random(s->io.ctx, seed, sizeof(seed));
    if (rl_init(&s->unauth, SRV_UNAUTH_SOURCES, opt->unauth_rate, opt->unauth_burst,
                opt->unauth_global_rate, seed)) {
        alloc_table_free(&s->allocs);
        free(s->txc);
        return -1;
    }
    return 0;
}

static void release(struct srv *s, struct allocation *a, unsigned i)
{
    struct alloc_relay *r = &a->relay[i];
    if (r->io) s->io.relay_close(s->io.ctx, a, r);
    r->io = NULL;
    s->io.port_release(s->io.ctx, r->pool,
                       (uint16_t)ntohs(r->addr.sa.sa_family == AF_INET6 ? r->addr.v6.sin6_port
                                                                        : r->addr.v4.sin_port));
}

static void tconn_free(struct srv *s, struct srv_tconn *tc);

/* Tear an allocation down: peer connections, relay sockets, ports, quota, table entry, memory. */
static void destroy(struct srv *s, struct allocation *a, const char *why, enum srv_counter c)
{
    if (s->io.event) s->io.event(s->io.ctx, a, why, NULL, POLICY_OK);
    while (a->tconns)
        tconn_free(s, a->tconns);
    for (unsigned i = 0; i < a->nrelay; i++)
        release(s, a, i);
    s->io.quota_release(s->io.ctx, a->username, a->ulen);
    tickets_unindex(s, a);
    alloc_remove(&s->allocs, a);
    alloc_destroy(a);
    s->c.v[c]++;
}

/* The live allocation on a 5-tuple. One whose lifetime ended but that the periodic sweep has
 * not reached yet is expired here and then, so no request can revive it. */
static struct allocation *live(struct srv *s, const struct srv_tuple *t, uint64_t now_ms)
{
    struct allocation *a = alloc_find(&s->allocs, t);
    if (a && a->expires_ms <= now_ms) {
        destroy(s, a, "expired", SRV_C_allocations_expired);
        a = NULL;
    }
    return a;
}

void srv_free(struct srv *s)
{
    struct allocation *a;
    while ((a = alloc_expired(&s->allocs, UINT64_MAX)) != NULL)
        destroy(s, a, "closed", SRV_C_allocations_deleted);
    alloc_table_free(&s->allocs);
    rl_free(&s->unauth);
    tern_free(s->txc);
    s->txc = NULL;
}

size_t srv_close_all(struct srv *s, const char *why)
{
    size_t n = 0;
    struct allocation *a;
    while ((a = alloc_expired(&s->allocs, UINT64_MAX)) != NULL) {
        destroy(s, a, why, SRV_C_allocations_deleted);
        n++;
    }
    return n;
}

static void tconn_expire(struct srv *s, uint64_t now_ms);

size_t srv_expire(struct srv *s, uint64_t now_ms)
{
    size_t n = 0;
    struct allocation *a;
    tconn_expire(s, now_ms);
    while ((a = alloc_expired(&s->allocs, now_ms)) != NULL) {
        destroy(s, a, "expired", SRV_C_allocations_expired);
        n++;
    }
    return n;
}

size_t srv_revalidate(struct srv *s)
{
    const struct auth_creds *cr = s->opt.creds;
    size_t n = 0;
    for (size_t b = 0; b < s->allocs.nbuckets; b++) {
        struct allocation *a = s->allocs.buckets[b];
        while (a) {
            struct allocation *next = a->hnext;
            struct auth_user u;
            uint64_t expiry;
            bool ok = cr->lookup(cr->ctx, (const uint8_t *)a->username, a->ulen, false, &u) == 0;
            OPENSSL_cleanse(&u, sizeof(u));
            if (!ok && (s->opt.nrest_secrets || cr->each_secret))
                ok = auth_rest_parse((const uint8_t *)a->username, a->ulen, s->opt.rest_separator,
                                     &expiry) == 0 &&
                     expiry > s->unix_s;
            if (!ok) {
                destroy(s, a, "revoked", SRV_C_allocations_revoked);
                n++;
            }
            a = next;
        }
    }
    return n;
}

static bool policy_keeps(void *ctx, const union stun_addr *peer, bool with_port)
{
    const struct srv *s = ctx;
    return policy_check_canonical(s->opt.policy, peer, with_port) == POLICY_OK;
}

int srv_reconfigure(struct srv *s, const struct srv_options *opt, uint64_t now_ms,
                    struct srv_reconf *out)
{
    int rc = 0;
    memset(out, 0, sizeof(*out));
    if (opt->unauth_rate != s->opt.unauth_rate || opt->unauth_burst != s->opt.unauth_burst ||
        opt->unauth_global_rate != s->opt.unauth_global_rate) {
        struct rl_table t;
        uint8_t seed[16] = {0};
        if (opt->unauth_rate) s->io.random(s->io.ctx, seed, sizeof(seed));
        if (rl_init(&t, SRV_UNAUTH_SOURCES, opt->unauth_rate, opt->unauth_burst,
                    opt->unauth_global_rate, seed) == 0) {
            rl_free(&s->unauth);
            s->unauth = t;
        } else {
            rc = -1;
        }
    }
    struct srv_options keep = s->opt;
    s->opt = *opt;
    if (rc) { /* the table is the old one: so are its limits */
        s->opt.unauth_rate = keep.unauth_rate;
        s->opt.unauth_burst = keep.unauth_burst;
        s->opt.unauth_global_rate = keep.unauth_global_rate;
    }
    const struct auth_creds *cr = s->opt.creds;
    for (size_t i = 0; i < s->allocs.count; i++) {
        struct allocation *a = s->allocs.heap[i];
        alloc_forget_peers(a, policy_keeps, s, &out->permissions, &out->channels);
        for (struct srv_tconn *tc = a->tconns, *next; tc; tc = next) {
            next = tc->anext;
            if (policy_keeps(s, &tc->peer, true)) continue;
            s->c.v[SRV_C_tcp_connections_revoked]++;
            tconn_free(s, tc);
        }
        struct auth_user u;
        uint64_t bw = s->opt.bandwidth_bps;
        if (cr && cr->lookup(cr->ctx, (const uint8_t *)a->username, a->ulen, false, &u) == 0 &&
            u.bandwidth_bps)
            bw = u.bandwidth_bps;
        OPENSSL_cleanse(&u, sizeof(u));
        if (a->bw_to_peer.rate != bw) { /* a full bucket at the new rate, as a new allocation */
            out->limits++;
            a->bw_to_peer = a->bw_to_client =
                (struct alloc_bucket){.rate = bw, .tokens = bw, .last_ms = now_ms};
        }
    }
    s->c.v[SRV_C_permissions_revoked] += out->permissions;
    s->c.v[SRV_C_channels_revoked] += out->channels;
    return rc;
}

void srv_delete(struct srv *s, struct allocation *a, const char *why)
{
    destroy(s, a, why, SRV_C_allocations_deleted);
}

/* ---- replies ---- */

/* One request being answered. */
struct req {
    struct srv *s;
    const struct srv_tuple *t;
    const struct stun_msg *m;
    uint64_t now_ms;
    bool fingerprint; /* the request had one: so does the answer */
    /* After authentication: */
    bool authed;
    bool sha256_mac; /* answer with MESSAGE-INTEGRITY-SHA256 (the request used it) */
    struct auth_user user;
    const uint8_t *key;
    size_t keylen;
    unsigned nonce_flags; /* of the request's nonce (AUTH_NONCE_*), once checked */
    uint8_t *out;
    size_t cap;
    void *client_io;     /* the relay's handle of the connection it came on */
    struct srv_fwd *fwd; /* ConnectionBind says so in fwd->bound */
};

static void begin(struct req *r, struct stun_enc *e, enum stun_class cls)
{
    stun_enc_init(e, r->out, r->cap, stun_type(stun_method_of(r->m->type), cls), r->m->tid);
}

/* SOFTWARE, integrity (answers to authenticated requests), FINGERPRINT (RFC 8489 14.7). */
static size_t finish(struct req *r, struct stun_enc *e)
{
    const char *sw = r->s->opt.software;
    if (sw && sw[0]) stun_enc_attr(e, STUN_ATTR_SOFTWARE, sw, strlen(sw));
    if (r->authed) {
        if (r->sha256_mac)
            stun_enc_integrity_sha256(e, r->key, r->keylen);
        else
            stun_enc_integrity(e, r->key, r->keylen);
    }
    if (r->fingerprint) stun_enc_fingerprint(e);
    int n = stun_enc_finish(e);
    return n > 0 ? (size_t)n : 0;
}

static enum srv_counter error_counter(int code)
{
    switch (code) {
    case 300:
        return SRV_C_error_300;
    case 401:
        return SRV_C_error_401;
    case 403:
        return SRV_C_error_403;
    case 405:
        return SRV_C_error_405;
    case 420:
        return SRV_C_error_420;
    case 437:
        return SRV_C_error_437;
    case 438:
        return SRV_C_error_438;
    case 440:
        return SRV_C_error_440;
    case 441:
        return SRV_C_error_441;
    case 442:
        return SRV_C_error_442;
    case 443:
        return SRV_C_error_443;
    case 446:
        return SRV_C_error_446;
    case 447:
        return SRV_C_error_447;
    case 486:
        return SRV_C_error_486;
    case 508:
        return SRV_C_error_508;
    default:
        return SRV_C_error_400;
    }
}

static const uint16_t password_algorithms[] = {STUN_PASSWORD_ALG_SHA256, STUN_PASSWORD_ALG_MD5};
#define NALGS (sizeof(password_algorithms) / sizeof(password_algorithms[0]))

/* A fresh nonce for the request's client: with the fleet's key and the wall clock when the
 * fleet shares one (any node accepts it), else with this process's key and its clock. */
static void make_nonce(struct req *r, unsigned flags, char out[AUTH_NONCE_LEN])
{
    const struct srv *s = r->s;
    if (s->nfleet_keys)
        auth_nonce_make(&s->fleet_keys[0], &r->t->client, s->unix_s, s->opt.nonce_lifetime_s, flags,
                        out);
    else
        auth_nonce_make(s->opt.nonce_key, &r->t->client, r->now_ms / 1000, s->opt.nonce_lifetime_s,
                        flags, out);
}

/* Is this nonce ours or the fleet's for client (OK), ours but expired (STALE), or neither? */
static enum auth_nonce_result check_nonce_for(struct req *r, const union stun_addr *client,
                                              const struct stun_attr *nonce)
{
    const struct srv *s = r->s;
    enum auth_nonce_result res = AUTH_NONCE_INVALID;
    for (size_t k = 0; k < s->nfleet_keys && res == AUTH_NONCE_INVALID; k++)
        res = auth_nonce_check(&s->fleet_keys[k], client, nonce->val, nonce->len, s->unix_s,
                               &r->nonce_flags);
    if (res == AUTH_NONCE_INVALID)
        res = auth_nonce_check(s->opt.nonce_key, client, nonce->val, nonce->len, r->now_ms / 1000,
                               &r->nonce_flags);
    return res;
}

static enum auth_nonce_result check_nonce(struct req *r, const struct stun_attr *nonce)
{
    enum auth_nonce_result res = check_nonce_for(r, &r->t->client, nonce);
    /* RFC 6062 5.4: a ConnectionBind comes on a new connection, and clients (coturn's among
     * them) sign it with the nonce their control connection was given: the nonce of the
     * allocation whose pending CONNECTION-ID it names is accepted too (the MAC still has to
     * verify with the user's key, and the user must be the allocation's). */
    if (res == AUTH_NONCE_INVALID && stun_method_of(r->m->type) == STUN_CONNECTION_BIND) {
        const struct stun_attr *ia = stun_find(r->m, STUN_ATTR_CONNECTION_ID);
        uint32_t id;
        const struct srv_tconn *tc = ia && !stun_get_u32(ia, &id) ? srv_tconn_find(r->s, id) : NULL;
        if (tc && tc->state == SRV_TCONN_PENDING)
            res = check_nonce_for(r, &tc->a->tuple.client, nonce);
    }
    /* RFC 8016: a client that moved signs its Refresh with the nonce its old address was
     * given: the nonce of the allocation its ticket names is accepted too (the MAC and the
     * user are checked as for any request, the user against the allocation's). */
    if (res == AUTH_NONCE_INVALID && r->s->opt.mobility &&
        stun_method_of(r->m->type) == STUN_REFRESH) {
        uint8_t worker, id[ALLOC_TICKET_LEN];
        const struct allocation *a =
            ticket_decode(stun_find(r->m, STUN_ATTR_MOBILITY_TICKET), &worker, id)
                ? tk_find(r->s, id)
                : NULL;
        if (a) res = check_nonce_for(r, &a->tuple.client, nonce);
        for (unsigned i = 0; a && res == AUTH_NONCE_INVALID && i < a->npast; i++)
            res = check_nonce_for(r, &a->past_clients[i], nonce);
    }
    return res;
}

/* REALM, a fresh NONCE and PASSWORD-ALGORITHMS: what a client needs to (re)authenticate. */
static void challenge(struct req *r, struct stun_enc *e)
{
    const struct srv_options *o = &r->s->opt;
    char nonce[AUTH_NONCE_LEN];
    make_nonce(r, 0, nonce);
    stun_enc_attr(e, STUN_ATTR_REALM, o->realm, strlen(o->realm));
    stun_enc_attr(e, STUN_ATTR_NONCE, nonce, AUTH_NONCE_LEN);
    stun_enc_password_algorithms(e, password_algorithms, NALGS);
}

static size_t build_error(struct req *r, int code)
{
    struct stun_enc e;
    begin(r, &e, STUN_ERROR);
    stun_enc_error(&e, code, NULL);
    if (code == 420) stun_enc_unknown(&e, r->m->unknown, r->m->nunknown);
    if ((code == 401 || code == 438) && !r->authed) challenge(r, &e);
    return finish(r, &e);
}

/* RFC 6062: TCP relaying and its data connections need a TCP or TLS connection (not UDP, not
 * DTLS: a datagram transport). */
static bool stream_transport(const struct srv_tuple *t)
{
    return t->transport == SRV_TCP || t->transport == SRV_TLS;
}

/* Answers to unauthenticated requests over UDP are limited per source prefix and per server
 * (ratelimit.h): a 20-byte request without attributes gets a 124-byte 401, to any source an
 * attacker writes into it, and a flood of them fills the listener's queue. TCP and TLS
 * sources completed a handshake (no spoofing, so no reflection) and a client there never
 * retransmits a request whose answer was dropped: never limited. Binding successes are not
 * limited either: the STUN service, at most ~2x the request. True: answer; false: counted. */
static bool unauth_allowed(struct req *r)
{
    struct srv *s = r->s;
    if (r->authed || r->t->transport != SRV_UDP || (!s->unauth.rate && !s->unauth.global.rate))
        return true;
    /* A 5-tuple with a live allocation proved its credentials: its stale-nonce 438 must get
     * through while others flood its (CGNAT) /32, so only the global cap applies to it. */
    bool per_source = alloc_find(&s->allocs, r->t) == NULL;
    switch (rl_take(&s->unauth, &r->t->client, per_source, r->now_ms)) {
    case RL_PASS:
        return true;
    case RL_SOURCE:
        s->c.v[SRV_C_drop_unauth_ratelimited]++;
        return false;
    case RL_GLOBAL:
        s->c.v[SRV_C_drop_unauth_global]++;
        return false;
    }
    return true;
}

static size_t error(struct req *r, int code)
{
    if (!unauth_allowed(r)) return 0; /* before build_error: a 401's nonce costs an HMAC */
    size_t n = build_error(r, code);
    if (n) r->s->c.v[error_counter(code)]++; /* counted when an answer exists to be sent */
    return n;
}

/* Finish a success answer and count it once it exists. */
static size_t success(struct req *r, struct stun_enc *e, enum srv_counter c)
{
    size_t n = finish(r, e);
    if (n) r->s->c.v[c]++;
    return n;
}

/* ---- long-term credentials (RFC 8489 9.2.4) ---- */

/* Check the request's integrity with the key of alg; true if it verifies. */
static bool mac_ok(const struct stun_msg *m, const uint8_t *key, size_t keylen)
{
    int rc = m->integrity_sha256 >= 0 ? stun_check_integrity_sha256(m, key, keylen)
                                      : stun_check_integrity(m, key, keylen);
    return rc == 0;
}

/* One REST login attempt in progress: the username and the integrity to match. */
struct rest_try {
    struct req *r;
    const struct stun_attr *user;
    uint16_t alg;
};

/* Does secret (HMAC-SHA1 or HMAC-SHA256 variant) give the password that signed the request?
 * Fills the user's keys when it does. */
static int rest_secret(void *arg, const char *secret)
{
    struct rest_try *t = arg;
    struct auth_user *u = &t->r->user;
    const char *realm = t->r->s->opt.realm;
    size_t rlen = strlen(realm);
    for (int mac = AUTH_REST_HMAC_SHA1; mac <= AUTH_REST_HMAC_SHA256; mac++) {
        char pw[AUTH_REST_PASSWORD_MAX];
        size_t plen = auth_rest_password((enum auth_rest_mac)mac, (const uint8_t *)secret,
                                         strlen(secret), t->user->val, t->user->len, pw);
        bool ok = plen &&
                  auth_longterm_key(STUN_PASSWORD_ALG_MD5, u->name, u->namelen, realm, rlen, pw,
                                    plen, u->key_md5) == 16 &&
                  auth_longterm_key(STUN_PASSWORD_ALG_SHA256, u->name, u->namelen, realm, rlen, pw,
                                    plen, u->key_sha256) == 32;
        OPENSSL_cleanse(pw, sizeof(pw));
        bool sha = t->alg == STUN_PASSWORD_ALG_SHA256;
        if (ok && mac_ok(t->r->m, sha ? u->key_sha256 : u->key_md5, sha ? 32 : 16)) return 1;
    }
    return 0;
}

/* A TURN REST API username: not expired, and signed with a password that one of the secrets
 * (configured ones, then the credential store's) gives. Fills r->user on success. */
static bool rest_login(struct req *r, const struct stun_attr *user, uint16_t alg)
{
    const struct srv_options *o = &r->s->opt;
    const struct auth_creds *cr = o->creds;
    uint64_t expiry;
    if ((!o->nrest_secrets && !cr->each_secret) || user->len > STUN_MAX_USERNAME ||
        auth_rest_parse(user->val, user->len, o->rest_separator, &expiry) || expiry <= r->s->unix_s)
        return false;
    struct auth_user *u = &r->user;
    memset(u, 0, sizeof(*u));
    memcpy(u->name, user->val, user->len);
    u->namelen = user->len;
    struct rest_try t = {.r = r, .user = user, .alg = alg};
    int found = 0;
    for (size_t i = 0; i < o->nrest_secrets && !found; i++)
        found = rest_secret(&t, o->rest_secrets[i]);
    if (!found && cr->each_secret) found = cr->each_secret(cr->ctx, rest_secret, &t);
    if (!found) OPENSSL_cleanse(u, sizeof(*u));
    return found;
}

/* 0 when the request is authenticated (r->user, key set); otherwise the error code. */
static int authenticate(struct req *r)
{
    const struct stun_msg *m = r->m;
    struct srv *s = r->s;
    if (m->integrity < 0 && m->integrity_sha256 < 0) return 401;
    const struct stun_attr *user = stun_find(m, STUN_ATTR_USERNAME);
    const struct stun_attr *hash = stun_find(m, STUN_ATTR_USERHASH);
    const struct stun_attr *realm = stun_find(m, STUN_ATTR_REALM);
    const struct stun_attr *nonce = stun_find(m, STUN_ATTR_NONCE);
    if ((!user && !hash) || !realm || !nonce) return 400;

    /* The algorithm negotiation must come back exactly as offered (bid-down protection). */
    const struct stun_attr *algs = stun_find(m, STUN_ATTR_PASSWORD_ALGORITHMS);
    const struct stun_attr *alg = stun_find(m, STUN_ATTR_PASSWORD_ALGORITHM);
    uint16_t chosen = STUN_PASSWORD_ALG_MD5;
    if (algs || alg) {
        if (!algs || !alg) return 400;
        size_t off = 0, n = 0;
        uint16_t a;
        const uint8_t *params;
        uint16_t plen;
        int rc;
        while ((rc = stun_next_password_algorithm(algs, &off, &a, &params, &plen)) == 1) {
            if (n >= NALGS || a != password_algorithms[n] || plen) return 400;
            n++;
        }
        if (rc < 0 || n != NALGS) return 400;
        if (stun_get_password_algorithm(alg, &chosen, &params, &plen) || plen) return 400;
        if (chosen != STUN_PASSWORD_ALG_MD5 && chosen != STUN_PASSWORD_ALG_SHA256) return 400;
    }

    if (realm->len != strlen(s->opt.realm) || memcmp(realm->val, s->opt.realm, realm->len) != 0)
        return 401;
    if (check_nonce(r, nonce) != AUTH_NONCE_OK) return 438;
    int rc = user ? s->opt.creds->lookup(s->opt.creds->ctx, user->val, user->len, false, &r->user)
                  : s->opt.creds->lookup(s->opt.creds->ctx, hash->val, hash->len, true, &r->user);
    r->key = chosen == STUN_PASSWORD_ALG_SHA256 ? r->user.key_sha256 : r->user.key_md5;
    r->keylen = chosen == STUN_PASSWORD_ALG_SHA256 ? 32 : 16;
    r->sha256_mac = m->integrity_sha256 >= 0;
    /* Unknown user, wrong password, expired or forged REST username: the same 401, so the
     * answer never says whether a user exists. */
    if (rc == 0 ? !mac_ok(m, r->key, r->keylen) : !(user && rest_login(r, user, chosen)))
        return 401;
    r->authed = true;
    return 0;
}

/* ---- Allocate (RFC 8656 7.2) ---- */

static uint32_t desired_lifetime(const struct srv_options *o, const struct stun_msg *m, bool *zero)
{
    const struct stun_attr *la = stun_find(m, STUN_ATTR_LIFETIME);
    uint32_t want;
    *zero = false;
    if (!la || stun_get_u32(la, &want)) return o->default_lifetime_s;
    if (want == 0) {
        *zero = true;
        return 0;
    }
    if (want > o->max_lifetime_s) want = o->max_lifetime_s;
    return want > o->default_lifetime_s ? want : o->default_lifetime_s;
}

static int family_of(uint8_t stun_family)
{
    return stun_family == STUN_FAMILY_IPV4   ? AF_INET
           : stun_family == STUN_FAMILY_IPV6 ? AF_INET6
                                             : 0;
}

static bool unspecified(const union stun_addr *a)
{
    static const uint8_t zero[16];
    return a->sa.sa_family == AF_INET ? a->v4.sin_addr.s_addr == 0
                                      : memcmp(&a->v6.sin6_addr, zero, 16) == 0;
}

/* What to put in XOR-RELAYED-ADDRESS for a socket bound at addr: external_address if set, the
 * bound address if specific, else the server address the client reached (same family). */
static void advertise(const struct srv *s, const struct srv_tuple *t, struct alloc_relay *r)
{
    r->advertised = r->addr;
    const union stun_addr *ip = NULL;
    if (s->opt.external && s->opt.external->sa.sa_family == r->addr.sa.sa_family)
        ip = s->opt.external;
    else if (unspecified(&r->addr) && t->local.sa.sa_family == r->addr.sa.sa_family &&
             !unspecified(&t->local))
        ip = &t->local;
    if (!ip) return;
    if (ip->sa.sa_family == AF_INET)
        r->advertised.v4.sin_addr = ip->v4.sin_addr;
    else
        r->advertised.v6.sin6_addr = ip->v6.sin6_addr;
}

static void set_port(union stun_addr *a, uint16_t port)
{
    if (a->sa.sa_family == AF_INET)
        a->v4.sin_port = htons(port);
    else
        a->v6.sin6_port = htons(port);
}

/* Open a relay socket of family for a; returns 0, 440 (no relay address of that family) or
 * 508 (no port). token: claim that reservation instead; reserve: hold port+1 for *new_token. */
static int open_relay(struct req *r, struct allocation *a, int family, bool even, bool reserve,
                      const uint64_t *token, uint64_t *new_token)
{
    struct srv *s = r->s;
    uint64_t now_s = r->now_ms / 1000;
    struct alloc_relay *rel = &a->relay[a->nrelay];
    memset(rel, 0, sizeof(*rel));
    if (token) {
        unsigned pool;
        uint16_t port;
        if (s->io.port_claim(s->io.ctx, *token, now_s, &pool, &port)) return 508;
        rel->pool = pool;
        rel->addr = s->opt.relay_addrs[pool];
        set_port(&rel->addr, port);
        if (s->io.relay_open(s->io.ctx, a, rel)) {
            s->io.port_release(s->io.ctx, pool, port);
            return 508;
        }
        advertise(s, r->t, rel);
        a->nrelay++;
        return 0;
    }
    bool any = false;
    size_t n = s->opt.nrelay_addrs;
    for (size_t k = 0; k < n; k++) {
        unsigned pool = (unsigned)((s->pool_rr + k) % n);
        if (s->opt.relay_addrs[pool].sa.sa_family != family) continue;
        any = true;
        /* A port another process holds is skipped; a few tries, then the next address. */
        for (int attempt = 0; attempt < 8; attempt++) {
            uint16_t port;
            if (reserve) s->io.random(s->io.ctx, new_token, sizeof(*new_token));
            if (s->io.port_take(s->io.ctx, pool, even, reserve, reserve ? *new_token : 0, now_s,
                                &port))
                break;
            rel->pool = pool;
            rel->addr = s->opt.relay_addrs[pool];
            set_port(&rel->addr, port);
            int rc = s->io.relay_open(s->io.ctx, a, rel);
            if (rc == 0) {
                s->pool_rr = pool + 1;
                advertise(s, r->t, rel);
                a->nrelay++;
                return 0;
            }
            s->io.port_release(s->io.ctx, pool, port);
            if (reserve) s->io.port_release(s->io.ctx, pool, (uint16_t)(port + 1));
            if (rc != -EADDRINUSE) break;
        }
    }
    return any ? 508 : 440;
}

/* A draining relay turns new allocations away while existing ones carry on: 300 Try Alternate
 * with an alternate server of the family the client reached us over (RFC 8489 10 and 14.15;
 * the alternates are taken in turn), or, with none for that family, 508 saying why. The answer is
 * authenticated like any other: the client has proven who it is, so it can trust the redirect. */
static size_t drain_answer(struct req *r, int family)
{
    struct srv *s = r->s;
    const union stun_addr *alt = NULL;
    for (size_t k = 0; k < s->opt.nalternates && !alt; k++) {
        const union stun_addr *c = &s->opt.alternates[(s->alt_rr + k) % s->opt.nalternates];
        if (c->sa.sa_family == family) {
            alt = c;
            s->alt_rr += (unsigned)k + 1;
        }
    }
    struct stun_enc e;
    begin(r, &e, STUN_ERROR);
    if (alt) {
        stun_enc_error(&e, 300, NULL);
        stun_enc_addr(&e, STUN_ATTR_ALTERNATE_SERVER, alt);
    } else {
        stun_enc_error(&e, 508, "Draining: this relay accepts no new allocations");
    }
    size_t n = finish(r, &e);
    if (n) {
        s->c.v[alt ? SRV_C_error_300 : SRV_C_error_508]++;
        s->c.v[SRV_C_drain_refused]++;
    }
    return n;
}

/* Fleet steering: 300 Try Alternate to the node the caller chose (authenticated, like the
 * drain's answer), with a nonce marked steered that the fleet's nodes accept: a client that
 * carries it on (libwebrtc takes REALM and NONCE from a 300) is not sent on again. */
static size_t steer_answer(struct req *r, const struct srv_steer *to)
{
    struct stun_enc e;
    char nonce[AUTH_NONCE_LEN];
    begin(r, &e, STUN_ERROR);
    stun_enc_error(&e, 300, NULL);
    stun_enc_addr(&e, STUN_ATTR_ALTERNATE_SERVER, &to->to);
    if (to->domain[0])
        stun_enc_attr(&e, STUN_ATTR_ALTERNATE_DOMAIN, to->domain, strlen(to->domain));
    make_nonce(r, AUTH_NONCE_STEERED, nonce);
    stun_enc_attr(&e, STUN_ATTR_REALM, r->s->opt.realm, strlen(r->s->opt.realm));
    stun_enc_attr(&e, STUN_ATTR_NONCE, nonce, AUTH_NONCE_LEN);
    size_t n = finish(r, &e);
    if (n) {
        r->s->c.v[SRV_C_error_300]++;
        r->s->c.v[SRV_C_steered]++;
    }
    return n;
}

static size_t do_allocate(struct req *r)
{
    struct srv *s = r->s;
    const struct stun_msg *m = r->m;
    struct allocation *a = live(s, r->t, r->now_ms);
    if (a) {
        /* A retransmission the cache no longer holds gets the original answer again, never a
         * second allocation; a new Allocate on a 5-tuple that has one is a mismatch, whoever
         * sends it (RFC 8656 7.2 step 2). */
        if (memcmp(a->alloc_tid, m->tid, STUN_TID_LEN) == 0 &&
            a->alloc_req_hash == req_hash(m->buf, STUN_HEADER_LEN + m->len) && a->alloc_resp &&
            a->alloc_resp_len <= r->cap) {
            memcpy(r->out, a->alloc_resp, a->alloc_resp_len);
            s->c.v[SRV_C_retransmit_answered]++;
            return a->alloc_resp_len;
        }
        return error(r, 437);
    }
    const struct stun_attr *rt = stun_find(m, STUN_ATTR_REQUESTED_TRANSPORT);
    uint8_t proto;
    if (!rt || stun_get_transport(rt, &proto)) return error(r, 400);
    if (proto != STUN_TRANSPORT_UDP && proto != STUN_TRANSPORT_TCP) return error(r, 442);
    bool tcp = proto == STUN_TRANSPORT_TCP;
    if (tcp) {
        /* RFC 6062 5.1: TCP relaying over a TCP/TLS control connection only, with neither
         * DONT-FRAGMENT, EVEN-PORT nor RESERVATION-TOKEN (and one address family: dual TCP
         * allocations are not specified). */
        if (!stream_transport(r->t)) return error(r, 400);
        if (stun_find(m, STUN_ATTR_DONT_FRAGMENT) || stun_find(m, STUN_ATTR_EVEN_PORT) ||
            stun_find(m, STUN_ATTR_RESERVATION_TOKEN) ||
            stun_find(m, STUN_ATTR_ADDITIONAL_ADDRESS_FAMILY))
            return error(r, 400);
        if (!s->io.peer_connect || !s->io.tconn_close || !s->io.client_send) return error(r, 442);
    }

    const struct stun_attr *tok = stun_find(m, STUN_ATTR_RESERVATION_TOKEN);
    const struct stun_attr *ev = stun_find(m, STUN_ATTR_EVEN_PORT);
    const struct stun_attr *rfam = stun_find(m, STUN_ATTR_REQUESTED_ADDRESS_FAMILY);
    const struct stun_attr *afam = stun_find(m, STUN_ATTR_ADDITIONAL_ADDRESS_FAMILY);
    if (tok && (ev || rfam || afam)) return error(r, 400);
    if (rfam && afam) return error(r, 400);
    bool even = false, reserve = false;
    if (ev && stun_get_even_port(ev, &reserve)) return error(r, 400);
    even = ev != NULL;
    if (reserve && afam) return error(r, 400); /* RFC 8656 7.2: no reservation for dual */
    uint64_t token = 0;
    if (tok && stun_get_u64(tok, &token)) return error(r, 400);

    int fam[2] = {AF_INET, 0};
    if (afam) {
        uint8_t f;
        if (stun_get_family(afam, &f) || f != STUN_FAMILY_IPV6) return error(r, 400);
        fam[1] = AF_INET6;
    } else if (rfam) {
        uint8_t f;
        if (stun_get_family(rfam, &f)) return error(r, 400);
        fam[0] = family_of(f);
        if (!fam[0]) return error(r, 440);
    }
    /* RFC 8016 3.1: an empty MOBILITY-TICKET asks for mobility; over UDP only (an allocation
     * over TCP, TLS or DTLS ends with its connection, so there is nothing to move). */
    const struct stun_attr *mt = stun_find(m, STUN_ATTR_MOBILITY_TICKET);
    if (mt && mt->len) return error(r, 400);
    if (mt && (!s->opt.mobility || r->t->transport != SRV_UDP)) return error(r, 405);
    const struct srv_steer *to = s->steer[r->t->client.sa.sa_family == AF_INET6][r->t->transport];
    if (to && !(r->nonce_flags & AUTH_NONCE_STEERED)) return steer_answer(r, to);
    if (s->draining) return drain_answer(r, r->t->client.sa.sa_family);

    if (s->io.quota_take(s->io.ctx, r->user.name, r->user.namelen, r->user.max_allocations))
        return error(r, 486);
    a = alloc_new(&s->allocs, r->t, r->now_ms);
    if (!a) {
        s->io.quota_release(s->io.ctx, r->user.name, r->user.namelen);
        return error(r, 508);
    }
    memcpy(a->username, r->user.name, r->user.namelen + 1);
    a->ulen = r->user.namelen;
    memcpy(a->alloc_tid, m->tid, STUN_TID_LEN);
    a->alloc_req_hash = req_hash(m->buf, STUN_HEADER_LEN + m->len);
    a->dont_fragment = stun_find(m, STUN_ATTR_DONT_FRAGMENT) != NULL;
    a->tcp = tcp;
    uint64_t bw = r->user.bandwidth_bps ? r->user.bandwidth_bps : s->opt.bandwidth_bps;
    a->bw_to_peer = a->bw_to_client =
        (struct alloc_bucket){.rate = bw, .tokens = bw, .last_ms = r->now_ms};

    uint64_t new_token = 0;
    int rc = open_relay(r, a, fam[0], even, reserve, tok ? &token : NULL, &new_token);
    int rc6 = 0;
    if (rc == 0 && fam[1]) rc6 = open_relay(r, a, fam[1], false, false, NULL, NULL);
    if (rc || alloc_insert(&s->allocs, a)) {
        for (unsigned i = 0; i < a->nrelay; i++)
            release(s, a, i);
        s->io.quota_release(s->io.ctx, a->username, a->ulen);
        alloc_destroy(a);
        return error(r, rc ? rc : 508);
    }
    bool zero;
    uint32_t life = desired_lifetime(&s->opt, m, &zero);
    if (zero) life = s->opt.default_lifetime_s; /* LIFETIME 0 on Allocate: the default */
    alloc_set_expiry(&s->allocs, a, r->now_ms + (uint64_t)life * 1000);
    a->client_io = NULL;
    if (mt) {
        a->mobile = true;
        ticket_renew(s, a);
        s->c.v[SRV_C_mobile_allocations]++;
    }
    s->c.v[SRV_C_allocations_created]++;
    s->c.v[SRV_C_tcp_allocations] += tcp;
    if (s->io.event) s->io.event(s->io.ctx, a, "allocated", NULL, POLICY_OK);

    struct stun_enc e;
    begin(r, &e, STUN_SUCCESS);
    for (unsigned i = 0; i < a->nrelay; i++)
        stun_enc_xor_addr(&e, STUN_ATTR_XOR_RELAYED_ADDRESS, &a->relay[i].advertised);
    if (rc6) stun_enc_address_error(&e, STUN_FAMILY_IPV6, rc6, NULL);
    stun_enc_u32(&e, STUN_ATTR_LIFETIME, life);
    if (reserve) stun_enc_u64(&e, STUN_ATTR_RESERVATION_TOKEN, new_token);
    stun_enc_xor_addr(&e, STUN_ATTR_XOR_MAPPED_ADDRESS, &r->t->client);
    if (a->mobile) {
        char ticket[SRV_TICKET_TEXT];
        srv_ticket_text(s, a, ticket);
        stun_enc_attr(&e, STUN_ATTR_MOBILITY_TICKET, ticket, sizeof(ticket));
    }
    size_t n = success(r, &e, SRV_C_allocate_success);
    /* Kept for retransmissions that outlive the transaction cache (small: ~100 bytes). */
    a->alloc_resp = n ? tern_malloc(n) : NULL;
    if (a->alloc_resp) {
        memcpy(a->alloc_resp, r->out, n);
        a->alloc_resp_len = (uint16_t)n;
    }
    return n;
}

/* ---- Refresh (RFC 8656 7.3) ---- */

static int relay_index(const struct allocation *a, int family)
{
    for (unsigned i = 0; i < a->nrelay; i++)
        if (a->relay[i].addr.sa.sa_family == family) return (int)i;
    return -1;
}

/* RFC 8016 3.4: the client of a mobile allocation is on a new 5-tuple (r's): the allocation is
 * keyed by it from now on, with everything it has (relayed addresses, permissions, channels,
 * counters, meter). The relay learns of it through fwd->moved. */
static void move_to(struct req *r, struct allocation *a)
{
    struct srv *s = r->s;
    r->fwd->moved = a;
    r->fwd->moved_from = a->tuple;
    memmove(&a->past_clients[1], &a->past_clients[0],
            (ALLOC_PAST_CLIENTS - 1) * sizeof(a->past_clients[0]));
    a->past_clients[0] = a->tuple.client;
    if (a->npast < ALLOC_PAST_CLIENTS) a->npast++;
    alloc_rekey(&s->allocs, a, r->t);
    a->client_io = r->client_io;
    a->moves++;
    a->moved_ms = r->now_ms;
    s->c.v[SRV_C_mobility_moves]++;
}

/* mt: the request's MOBILITY-TICKET (NULL: none); move: a is another 5-tuple's (mobile, and mt
 * names it) and follows its client here if the Refresh succeeds. */
static size_t do_refresh(struct req *r, struct allocation *a, const struct stun_attr *mt, bool move)
{
    struct srv *s = r->s;
    const struct stun_attr *rfam = stun_find(r->m, STUN_ATTR_REQUESTED_ADDRESS_FAMILY);
    int only = -1; /* with REQUESTED-ADDRESS-FAMILY: the one relay of a dual allocation */
    if (rfam) {
        uint8_t f;
        if (stun_get_family(rfam, &f)) return error(r, 400);
        int fam = family_of(f);
        if (!fam) return error(r, 440);
        only = relay_index(a, fam);
        if (only < 0) return error(r, 443);
    }
    bool zero;
    uint32_t life = desired_lifetime(&s->opt, r->m, &zero);
    struct stun_enc e;
    if (zero && only >= 0 && a->nrelay == 2) {
        /* Delete one family of a dual allocation; the other lives on, and what pointed at
         * peers of the deleted family goes with it. */
        int fam = a->relay[only].addr.sa.sa_family;
        alloc_forget_family(a, fam);
        release(s, a, (unsigned)only);
        if (only == 0) a->relay[0] = a->relay[1];
        a->nrelay = 1;
        life = a->expires_ms > r->now_ms ? (uint32_t)((a->expires_ms - r->now_ms) / 1000) : 0;
        zero = false;
    } else if (zero) {
        begin(r, &e, STUN_SUCCESS);
        stun_enc_u32(&e, STUN_ATTR_LIFETIME, 0);
        size_t n = success(r, &e, SRV_C_delete_success);
        destroy(s, a, "deleted", SRV_C_allocations_deleted);
        return n;
    } else {
        alloc_set_expiry(&s->allocs, a, r->now_ms + (uint64_t)life * 1000);
    }
    if (move) move_to(r, a);
    begin(r, &e, STUN_SUCCESS);
    stun_enc_u32(&e, STUN_ATTR_LIFETIME, life);
    if (mt && a->mobile) { /* RFC 8016 3.4: a new ticket with every Refresh that carried one */
        ticket_renew(s, a);
        char ticket[SRV_TICKET_TEXT];
        srv_ticket_text(s, a, ticket);
        stun_enc_attr(&e, STUN_ATTR_MOBILITY_TICKET, ticket, sizeof(ticket));
    }
    return success(r, &e, SRV_C_refresh_success);
}

/* RFC 8016 3.4: a Refresh with a MOBILITY-TICKET, from the allocation's own 5-tuple (here, the
 * one it has, may be NULL) or from a new one. */
static size_t do_mobile_refresh(struct req *r, struct allocation *here, const struct stun_attr *mt)
{
    struct srv *s = r->s;
    if (!s->opt.mobility) return error(r, 405);
    uint8_t worker, id[ALLOC_TICKET_LEN];
    if (!ticket_decode(mt, &worker, id)) return error(r, 400);
    struct allocation *a = tk_find(s, id);
    if (a && a->expires_ms <= r->now_ms) {
        destroy(s, a, "expired", SRV_C_allocations_expired);
        a = NULL;
    }
    if (!a) return error(r, 437);
    /* RFC 8016 3.4: the credentials that made the allocation, and nobody else's. */
    if (a->ulen != r->user.namelen || memcmp(a->username, r->user.name, a->ulen) != 0)
        return error(r, 441);
    if (here && here != a) return error(r, 437); /* this 5-tuple has an allocation of its own */
    if (r->t->transport != a->tuple.transport) return error(r, 400);
    return do_refresh(r, a, mt, here == NULL);
}

/* ---- CreatePermission (RFC 8656 9) and ChannelBind (RFC 8656 11) ---- */

/* Common peer checks: decoded, canonical, a family the allocation relays, allowed by policy.
 * Returns 0 or the error code. */
static int check_peer(struct req *r, struct allocation *a, const struct stun_attr *pa,
                      union stun_addr *peer, bool with_port)
{
    union stun_addr raw;
    if (stun_get_xor_addr(r->m, pa, &raw)) return 400;
    policy_canonical(&raw, peer);
    if (relay_index(a, peer->sa.sa_family) < 0) return 443;
    enum policy_verdict v = policy_check_canonical(r->s->opt.policy, peer, with_port);
    if (v != POLICY_OK) {
        r->s->c.v[SRV_C_denied_self] += v == POLICY_SELF;
        if (r->s->io.event) r->s->io.event(r->s->io.ctx, a, "denied", &raw, v);
        return 403;
    }
    return 0;
}

/* The policy for a datagram to or from peer (canonical): false after counting the drop (the
 * relay itself under its own reason). */
static bool policy_pass(struct srv *s, const union stun_addr *peer)
{
    enum policy_verdict v = policy_check_canonical(s->opt.policy, peer, true);
    if (v == POLICY_OK) return true;
    s->c.v[v == POLICY_SELF ? SRV_C_drop_self : SRV_C_drop_policy]++;
    return false;
}

static size_t do_create_permission(struct req *r, struct allocation *a)
{
    union stun_addr peers[ALLOC_MAX_PERMISSIONS];
    size_t n = 0, fresh = 0;
    const struct stun_attr *pa = stun_find(r->m, STUN_ATTR_XOR_PEER_ADDRESS);
    if (!pa) return error(r, 400);
    /* Check every address before installing any: all or nothing. */
    for (; pa; pa = stun_find_next(r->m, pa)) {
        if (n == ALLOC_MAX_PERMISSIONS) return error(r, 508);
        int rc = check_peer(r, a, pa, &peers[n], false); /* permissions ignore ports */
        if (rc) return error(r, rc);
        bool seen = alloc_permitted(a, &peers[n], r->now_ms);
        for (size_t k = 0; k < n && !seen; k++)
            seen = addr_ip_equal(&peers[k], &peers[n]);
        if (!seen) fresh++; /* a peer named twice (or in two forms) needs one permission */
        n++;
    }
    unsigned live = 0;
    for (unsigned i = 0; i < a->nperms; i++)
        live += a->perms[i].expires_ms > r->now_ms;
    if (live + fresh > ALLOC_MAX_PERMISSIONS) return error(r, 508);
    for (size_t i = 0; i < n; i++)
        if (alloc_permit(a, &peers[i], r->now_ms)) return error(r, 508);
    struct stun_enc e;
    begin(r, &e, STUN_SUCCESS);
    return success(r, &e, SRV_C_permission_success);
}

static size_t do_channel_bind(struct req *r, struct allocation *a)
{
    const struct stun_attr *ca = stun_find(r->m, STUN_ATTR_CHANNEL_NUMBER);
    const struct stun_attr *pa = stun_find(r->m, STUN_ATTR_XOR_PEER_ADDRESS);
    uint16_t num;
    if (a->tcp || !ca || !pa || stun_get_channel(ca, &num)) return error(r, 400);
    uint16_t max = r->s->opt.strict_channels ? STUN_CHANNEL_MAX_STRICT : STUN_CHANNEL_MAX;
    if (num < STUN_CHANNEL_MIN || num > max) return error(r, 400);
    union stun_addr peer;
    int rc = check_peer(r, a, pa, &peer, true); /* a channel names the port: check it too */
    if (rc) return error(r, rc);
    if (!alloc_can_permit(a, &peer, r->now_ms)) return error(r, 508);
    switch (alloc_bind(a, num, &peer, r->now_ms)) {
    case ALLOC_BIND_OK:
        break;
    case ALLOC_BIND_CONFLICT:
        return error(r, 400);
    case ALLOC_BIND_FULL:
        return error(r, 508);
    }
    /* Room was checked above, but growing the table can still fail: then the success would
     * promise a permission that is not there. The channel stays bound; a retry refreshes it. */
    if (alloc_permit(a, &peer, r->now_ms)) return error(r, 508);
    if (r->s->io.channel_bound) r->s->io.channel_bound(r->s->io.ctx, a, num, &peer);
    struct stun_enc e;
    begin(r, &e, STUN_SUCCESS);
    return success(r, &e, SRV_C_channel_bind_success);
}

/* ---- RFC 6062: TCP allocations (Connect, ConnectionBind, ConnectionAttempt) ---- */

static uint32_t tcp_limit(const struct srv *s)
{
    return s->opt.max_tcp_connections ? s->opt.max_tcp_connections : SRV_TCP_MAX_CONNS;
}

struct srv_tconn *srv_tconn_find(const struct srv *s, uint32_t id)
{
    struct srv_tconn *tc = s->tc_hash[id % SRV_TCONN_BUCKETS];
    while (tc && tc->id != id)
        tc = tc->hnext;
    return tc;
}

int srv_connection_bind_owner(const struct srv *s, const struct srv_tuple *t, const uint8_t *msg,
                              size_t len, unsigned nworkers)
{
    if (nworkers < 2 || !stream_transport(t) || len < STUN_HEADER_LEN) return -1;
    if (rd16(msg) != stun_type(STUN_CONNECTION_BIND, STUN_REQUEST)) return -1; /* cheap first */
    struct stun_msg m;
    if (stun_decode(&m, msg, len)) return -1;
    const struct stun_attr *ia = stun_find(&m, STUN_ATTR_CONNECTION_ID);
    uint32_t id;
    if (!ia || stun_get_u32(ia, &id)) return -1;
    unsigned owner = id >> 24;
    if (owner == s->worker || owner >= nworkers) return -1;
    if (alloc_find(&s->allocs, t)) return -1; /* a control connection: 400 here */
    return (int)owner;
}

static void tq_unlink(struct srv *s, struct srv_tconn *tc)
{
    if (!tc->queued) return;
    if (tc->qprev)
        tc->qprev->qnext = tc->qnext;
    else
        s->tq_head = tc->qnext;
    if (tc->qnext)
        tc->qnext->qprev = tc->qprev;
    else
        s->tq_tail = tc->qprev;
    tc->qprev = tc->qnext = NULL;
    tc->queued = false;
}

/* (Re)start tc's 30-s deadline: at the tail, which keeps the queue in deadline order. */
static void tq_push(struct srv *s, struct srv_tconn *tc, uint64_t now_ms)
{
    tq_unlink(s, tc);
    tc->deadline_ms = now_ms + SRV_TCP_TIMEOUT_MS;
    tc->qprev = s->tq_tail;
    if (s->tq_tail)
        s->tq_tail->qnext = tc;
    else
        s->tq_head = tc;
    s->tq_tail = tc;
    tc->queued = true;
}

/* A new connection of a to peer (canonical), with a fresh unpredictable CONNECTION-ID; NULL
 * when out of memory. In the allocation's list and the id hash, not yet queued. */
static struct srv_tconn *tconn_new(struct srv *s, struct allocation *a, const union stun_addr *peer,
                                   uint64_t now_ms)
{
    struct srv_tconn *tc = tern_calloc(1, sizeof(*tc));
    if (!tc) return NULL;
    uint32_t id, tag = (uint32_t)s->worker << 24;
    s->io.random(s->io.ctx, &id, sizeof(id));
    id = tag | (id & 0xFFFFFFu);
    while (id == 0 || srv_tconn_find(s, id)) /* rare: the next free one, same worker */
        id = tag | ((id + 1) & 0xFFFFFFu);
    tc->id = id;
    tc->a = a;
    tc->peer = *peer;
    tc->created_ms = now_ms;
    tc->anext = a->tconns;
    a->tconns = tc;
    a->ntconns++;
    struct srv_tconn **b = &s->tc_hash[id % SRV_TCONN_BUCKETS];
    tc->hnext = *b;
    *b = tc;
    s->ntconns++;
    return tc;
}

/* Close tc's sockets and forget it. */
static void tconn_free(struct srv *s, struct srv_tconn *tc)
{
    struct allocation *a = tc->a;
    if (tc->peer_io || tc->data_io) s->io.tconn_close(s->io.ctx, tc);
    tq_unlink(s, tc);
    for (struct srv_tconn **p = &a->tconns; *p; p = &(*p)->anext)
        if (*p == tc) {
            *p = tc->anext;
            break;
        }
    a->ntconns--;
    for (struct srv_tconn **p = &s->tc_hash[tc->id % SRV_TCONN_BUCKETS]; *p; p = &(*p)->hnext)
        if (*p == tc) {
            *p = tc->hnext;
            break;
        }
    s->ntconns--;
    s->c.v[SRV_C_tcp_connections_ended]++;
    OPENSSL_cleanse(tc->key, sizeof(tc->key));
    tern_free(tc);
}

/* The late answer to tc's Connect (code 0: success with CONNECTION-ID), signed as the request
 * was, to the allocation's control connection. */
static void connect_answer(struct srv *s, struct srv_tconn *tc, int code)
{
    uint8_t buf[256];
    struct stun_enc e;
    stun_enc_init(&e, buf, sizeof(buf), stun_type(STUN_CONNECT, code ? STUN_ERROR : STUN_SUCCESS),
                  tc->tid);
    if (code)
        stun_enc_error(&e, code, NULL);
    else
        stun_enc_u32(&e, STUN_ATTR_CONNECTION_ID, tc->id);
    const char *sw = s->opt.software;
    if (sw && sw[0]) stun_enc_attr(&e, STUN_ATTR_SOFTWARE, sw, strlen(sw));
    if (tc->sha256_mac)
        stun_enc_integrity_sha256(&e, tc->key, tc->keylen);
    else
        stun_enc_integrity(&e, tc->key, tc->keylen);
    if (tc->fingerprint) stun_enc_fingerprint(&e);
    int n = stun_enc_finish(&e);
    OPENSSL_cleanse(tc->key, sizeof(tc->key));
    tc->keylen = 0;
    if (n <= 0) return;
    s->c.v[code ? error_counter(code) : SRV_C_connect_success]++;
    s->io.client_send(s->io.ctx, tc->a, buf, (size_t)n);
}

/* RFC 6062 5.2. The answer comes later (srv_connect_result, or 447 at the deadline). */
static size_t do_connect(struct req *r, struct allocation *a)
{
    struct srv *s = r->s;
    if (!a->tcp) return error(r, 400); /* Connect is for TCP allocations */
    const struct stun_attr *pa = stun_find(r->m, STUN_ATTR_XOR_PEER_ADDRESS);
    if (!pa) return error(r, 400);
    union stun_addr peer;
    int rc = check_peer(r, a, pa, &peer, true); /* the same policy, with the port */
    if (rc) return error(r, rc);
    for (const struct srv_tconn *tc = a->tconns; tc; tc = tc->anext)
        if (addr_equal(&tc->peer, &peer)) return error(r, 446);
    if (a->ntconns >= tcp_limit(s)) return error(r, 508);
    struct srv_tconn *tc = tconn_new(s, a, &peer, r->now_ms);
    if (!tc) return error(r, 508);
    tc->outgoing = true;
    tc->state = SRV_TCONN_CONNECTING;
    memcpy(tc->tid, r->m->tid, STUN_TID_LEN);
    memcpy(tc->key, r->key, r->keylen);
    tc->keylen = (uint8_t)r->keylen;
    tc->sha256_mac = r->sha256_mac;
    tc->fingerprint = r->fingerprint;
    tq_push(s, tc, r->now_ms);
    if (s->io.peer_connect(s->io.ctx, a, tc)) {
        tc->peer_io = NULL;
        s->c.v[SRV_C_tcp_connect_failed]++;
        tconn_free(s, tc);
        return error(r, 447);
    }
    return 0;
}

void srv_connect_result(struct srv *s, struct srv_tconn *tc, bool ok, uint64_t now_ms)
{
    if (tc->state != SRV_TCONN_CONNECTING) return;
    if (!ok) {
        s->c.v[SRV_C_tcp_connect_failed]++;
        connect_answer(s, tc, 447);
        tconn_free(s, tc);
        return;
    }
    tc->state = SRV_TCONN_PENDING; /* the client now has 30 s to bind it */
    tq_push(s, tc, now_ms);
    connect_answer(s, tc, 0);
}

/* RFC 6062 5.4: on a new TCP/TLS connection (no allocation of its own), with the allocation's
 * credentials, for a pending CONNECTION-ID. */
static size_t do_connection_bind(struct req *r)
{
    struct srv *s = r->s;
    if (!stream_transport(r->t) || live(s, r->t, r->now_ms)) return error(r, 400);
    const struct stun_attr *ia = stun_find(r->m, STUN_ATTR_CONNECTION_ID);
    uint32_t id;
    if (!ia || stun_get_u32(ia, &id)) return error(r, 400);
    struct srv_tconn *tc = srv_tconn_find(s, id);
    if (!tc || tc->state != SRV_TCONN_PENDING || tc->a->expires_ms <= r->now_ms)
        return error(r, 400);
    const struct allocation *a = tc->a;
    if (a->ulen != r->user.namelen || memcmp(a->username, r->user.name, a->ulen) != 0)
        return error(r, 441);
    struct stun_enc e;
    begin(r, &e, STUN_SUCCESS);
    size_t n = success(r, &e, SRV_C_connection_bind_success);
    if (!n) return 0;
    tc->state = SRV_TCONN_BOUND;
    tc->data_io = r->client_io;
    tq_unlink(s, tc);
    r->fwd->bound = tc;
    return n;
}

struct srv_tconn *srv_peer_accept(struct srv *s, struct allocation *a, const union stun_addr *from,
                                  void *peer_io, uint64_t now_ms)
{
    union stun_addr peer;
    policy_canonical(from, &peer);
    if (!a->tcp || a->expires_ms <= now_ms) {
        s->c.v[SRV_C_drop_no_allocation]++;
        return NULL;
    }
    if (!alloc_permitted(a, &peer, now_ms)) {
        s->c.v[SRV_C_tcp_refused_no_permission]++;
        a->drops_perm[1]++;
        return NULL;
    }
    enum policy_verdict v = policy_check_canonical(s->opt.policy, &peer, true);
    if (v != POLICY_OK) {
        s->c.v[SRV_C_tcp_refused_policy]++;
        if (s->io.event) s->io.event(s->io.ctx, a, "denied", from, v);
        return NULL;
    }
    if (a->ntconns >= tcp_limit(s)) {
        s->c.v[SRV_C_tcp_refused_limit]++;
        return NULL;
    }
    struct srv_tconn *tc = tconn_new(s, a, &peer, now_ms);
    if (!tc) {
        s->c.v[SRV_C_tcp_refused_limit]++;
        return NULL;
    }
    tc->state = SRV_TCONN_PENDING;
    tc->peer_io = peer_io;
    tq_push(s, tc, now_ms);
    uint8_t buf[128], tid[STUN_TID_LEN];
    uint64_t r1 = splitmix(&s->rng), r2 = splitmix(&s->rng);
    memcpy(tid, &r1, 8);
    memcpy(tid + 8, &r2, 4);
    struct stun_enc e;
    stun_enc_init(&e, buf, sizeof(buf), stun_type(STUN_CONNECTION_ATTEMPT, STUN_INDICATION), tid);
    stun_enc_xor_addr(&e, STUN_ATTR_XOR_PEER_ADDRESS, from);
    stun_enc_u32(&e, STUN_ATTR_CONNECTION_ID, tc->id);
    int n = stun_enc_finish(&e);
    if (n > 0) {
        s->c.v[SRV_C_connection_attempt]++;
        s->io.client_send(s->io.ctx, a, buf, (size_t)n);
    }
    return tc;
}

void srv_tconn_end(struct srv *s, struct srv_tconn *tc)
{
    if (tc->state == SRV_TCONN_CONNECTING) {
        srv_connect_result(s, tc, false, 0);
        return;
    }
    tconn_free(s, tc);
}

static void tconn_expire(struct srv *s, uint64_t now_ms)
{
    struct srv_tconn *tc;
    while ((tc = s->tq_head) && tc->deadline_ms <= now_ms) {
        if (tc->state == SRV_TCONN_CONNECTING) {
            s->c.v[SRV_C_tcp_connect_timeout]++;
            connect_answer(s, tc, 447);
        } else {
            s->c.v[SRV_C_tcp_bind_timeout]++;
        }
        tconn_free(s, tc);
    }
}

/* ---- indications and ChannelData: data towards peers ---- */

static void do_send(struct srv *s, const struct srv_tuple *t, const struct stun_msg *m,
                    uint64_t now_ms, struct srv_fwd *fwd)
{
    struct allocation *a = live(s, t, now_ms);
    if (!a) {
        s->c.v[SRV_C_drop_no_allocation]++;
        return;
    }
    const struct stun_attr *pa = stun_find(m, STUN_ATTR_XOR_PEER_ADDRESS);
    const struct stun_attr *da = stun_find(m, STUN_ATTR_DATA);
    union stun_addr raw, peer;
    if (a->tcp) { /* RFC 6062: a TCP allocation's data goes over data connections only */
        s->c.v[SRV_C_drop_tcp_allocation]++;
        return;
    }
    if (!pa || !da || stun_get_xor_addr(m, pa, &raw)) {
        s->c.v[SRV_C_drop_send_incomplete]++;
        return;
    }
    policy_canonical(&raw, &peer);
    int ri = relay_index(a, peer.sa.sa_family);
    if (ri < 0) {
        s->c.v[SRV_C_drop_send_family]++;
        return;
    }
    if (!alloc_permitted(a, &peer, now_ms)) {
        s->c.v[SRV_C_drop_no_permission]++;
        a->drops_perm[0]++;
        return;
    }
    if (!policy_pass(s, &peer)) return;
    if (!alloc_bucket_take(&a->bw_to_peer, da->len, now_ms)) {
        s->c.v[SRV_C_drop_bandwidth]++;
        a->drops_bw[0]++;
        return;
    }
    s->c.v[SRV_C_send_indication]++;
    *fwd = (struct srv_fwd){.a = a,
                            .relay = &a->relay[ri],
                            .peer = peer,
                            .data = da->val,
                            .len = da->len,
                            .dont_fragment = stun_find(m, STUN_ATTR_DONT_FRAGMENT) != NULL};
}

static void do_channel_data(struct srv *s, const struct srv_tuple *t, const uint8_t *in, size_t len,
                            uint64_t now_ms, struct srv_fwd *fwd)
{
    uint16_t ch, dlen;
    const uint8_t *data;
    s->c.v[SRV_C_rx_channeldata]++;
    int rc = stun_chdata_decode(in, len, srv_stream(t->transport), &ch, &data, &dlen);
    if (rc < 0) {
        s->c.v[len < STUN_CHDATA_HEADER_LEN ? SRV_C_drop_short : SRV_C_drop_channel_length]++;
        return;
    }
    struct allocation *a = live(s, t, now_ms);
    if (!a) {
        s->c.v[SRV_C_drop_no_allocation]++;
        return;
    }
    if (a->tcp) {
        s->c.v[SRV_C_drop_tcp_allocation]++;
        return;
    }
    const struct alloc_chan *c = alloc_channel(a, ch, now_ms);
    if (!c) {
        s->c.v[SRV_C_drop_no_channel]++;
        a->drops_perm[0]++;
        return;
    }
    if (!alloc_permitted(a, &c->peer, now_ms)) {
        s->c.v[SRV_C_drop_no_permission]++;
        a->drops_perm[0]++;
        return;
    }
    if (!policy_pass(s, &c->peer)) return;
    if (!alloc_bucket_take(&a->bw_to_peer, dlen, now_ms)) {
        s->c.v[SRV_C_drop_bandwidth]++;
        a->drops_bw[0]++;
        return;
    }
    int ri = relay_index(a, c->peer.sa.sa_family);
    if (ri < 0) {
        s->c.v[SRV_C_drop_send_family]++; /* that family's relay was deleted (dual allocation) */
        return;
    }
    s->c.v[SRV_C_channel_to_peer]++;
    *fwd = (struct srv_fwd){.a = a,
                            .relay = &a->relay[ri],
                            .peer = c->peer,
                            .data = data,
                            .len = dlen,
                            .dont_fragment = a->dont_fragment};
}

/* ---- entry points ---- */

/* A message that failed to decode: 400 if it is a request whose header we could read and the
 * answer is no larger than what it carried (no amplification); otherwise a counted drop. */
static size_t malformed(struct req *r, int rc, size_t inlen)
{
    struct srv_counters *c = &r->s->c;
    switch (rc) {
    case STUN_E_TRUNCATED:
        c->v[SRV_C_drop_short]++;
        return 0;
    case STUN_E_NOT_STUN:
        c->v[SRV_C_drop_not_stun]++;
        return 0;
    case STUN_E_BAD_COOKIE:
        c->v[SRV_C_drop_bad_cookie]++;
        return 0;
    case STUN_E_BAD_LENGTH:
        c->v[SRV_C_drop_bad_length]++;
        return 0;
    default:
        break;
    }
    if (!r->m->tid || stun_class_of(r->m->type) != STUN_REQUEST) {
        c->v[SRV_C_drop_malformed]++;
        return 0;
    }
    size_t n = build_error(r, 400);
    if (n == 0 || n > inlen) {
        c->v[SRV_C_drop_amplification]++;
        return 0;
    }
    if (!unauth_allowed(r)) return 0;
    c->v[SRV_C_error_400]++;
    return n;
}

static size_t request(struct req *r)
{
    struct srv *s = r->s;
    const struct stun_msg *m = r->m;
    uint16_t method = stun_method_of(m->type);
    if (method == STUN_BINDING) {
        if (m->nunknown) return error(r, 420);
        struct stun_enc e;
        begin(r, &e, STUN_SUCCESS);
        stun_enc_xor_addr(&e, STUN_ATTR_XOR_MAPPED_ADDRESS, &r->t->client);
        return success(r, &e, SRV_C_binding_success);
    }
    if (method != STUN_ALLOCATE && method != STUN_REFRESH && method != STUN_CREATE_PERMISSION &&
        method != STUN_CHANNEL_BIND && method != STUN_CONNECT && method != STUN_CONNECTION_BIND)
        return error(r, 400);

    int code = authenticate(r);
    if (code) return error(r, code);
    /* Unknown comprehension-required attributes are checked after authentication
     * (RFC 8489 6.3), so the 420 is integrity-protected. */
    if (m->nunknown) return error(r, 420);

    if (method == STUN_ALLOCATE) return do_allocate(r);
    if (method == STUN_CONNECTION_BIND) return do_connection_bind(r);
    struct allocation *a = live(s, r->t, r->now_ms);
    /* RFC 8656 5: other requests on an allocation's 5-tuple must use its credentials. */
    if (a && (a->ulen != r->user.namelen || memcmp(a->username, r->user.name, a->ulen) != 0))
        return error(r, 441);
    const struct stun_attr *mt =
        method == STUN_REFRESH ? stun_find(m, STUN_ATTR_MOBILITY_TICKET) : NULL;
    switch (method) {
    case STUN_REFRESH:
        if (mt) return do_mobile_refresh(r, a, mt);
        return a ? do_refresh(r, a, NULL, false) : error(r, 437);
    case STUN_CREATE_PERMISSION:
        return a ? do_create_permission(r, a) : error(r, 437);
    case STUN_CONNECT:
        return a ? do_connect(r, a) : error(r, 437);
    default:
        return a ? do_channel_bind(r, a) : error(r, 437);
    }
}

size_t srv_handle(struct srv *s, const struct srv_tuple *t, void *client_io, const uint8_t *in,
                  size_t inlen, uint64_t now_ms, uint8_t *out, size_t outcap, struct srv_fwd *fwd)
{
    fwd->a = NULL;
    fwd->bound = NULL;
    fwd->moved = NULL;
    if (inlen >= 1 && (in[0] & 0xC0) == 0x40) {
        do_channel_data(s, t, in, inlen, now_ms, fwd);
        return 0;
    }
    struct stun_msg m;
    struct req r = {.s = s,
                    .t = t,
                    .m = &m,
                    .now_ms = now_ms,
                    .out = out,
                    .cap = outcap,
                    .client_io = client_io,
                    .fwd = fwd};
    int rc = stun_decode(&m, in, inlen);
    if (rc) return malformed(&r, rc, inlen);
    s->c.v[SRV_C_rx_stun]++;

    int fp = stun_check_fingerprint(&m);
    if (fp < 0) {
        s->c.v[SRV_C_drop_bad_fingerprint]++; /* RFC 8489 7.3: discard */
        return 0;
    }
    r.fingerprint = fp == 0;

    switch (stun_class_of(m.type)) {
    case STUN_SUCCESS:
    case STUN_ERROR:
        s->c.v[SRV_C_drop_response]++;
        return 0;
    case STUN_INDICATION:
        /* Indications get no answer, ever: unknown attributes mean a silent discard. */
        if (m.nunknown)
            s->c.v[SRV_C_drop_indication]++;
        else if (stun_method_of(m.type) == STUN_BINDING)
            s->c.v[SRV_C_binding_indication]++;
        else if (stun_method_of(m.type) == STUN_SEND)
            do_send(s, t, &m, now_ms, fwd);
        else
            s->c.v[SRV_C_drop_indication]++;
        return 0;
    case STUN_REQUEST:
        break;
    }

    uint64_t hash = req_hash(in, inlen);
    const struct txc_entry *hit = txc_find(s, t, m.tid, hash, now_ms);
    if (hit && hit->len <= outcap) {
        memcpy(out, hit->bytes, hit->len);
        s->c.v[SRV_C_retransmit_answered]++;
        return hit->len;
    }
    size_t n = request(&r);
    OPENSSL_cleanse(&r.user, sizeof(r.user));
    struct allocation *a = r.authed ? alloc_find(&s->allocs, t) : NULL;
    if (a && !a->client_io) a->client_io = client_io;
    if (r.authed) txc_store(s, t, m.tid, hash, out, n, now_ms);
    return n;
}

/* ---- RFC 8016 with several workers ---- */

int srv_mobility_owner(const struct srv *s, const struct srv_tuple *t, const uint8_t *msg,
                       size_t len, unsigned nworkers)
{
    if (nworkers < 2 || !s->opt.mobility || t->transport != SRV_UDP || len < STUN_HEADER_LEN)
        return -1;
    if (rd16(msg) != stun_type(STUN_REFRESH, STUN_REQUEST)) return -1; /* cheap first */
    struct stun_msg m;
    if (stun_decode(&m, msg, len)) return -1;
    uint8_t worker, id[ALLOC_TICKET_LEN];
    if (!ticket_decode(stun_find(&m, STUN_ATTR_MOBILITY_TICKET), &worker, id)) return -1;
    if (worker == s->worker || worker >= nworkers) return -1;
    if (tk_find(s, id) || alloc_find(&s->allocs, t)) return -1;
    return (int)worker;
}

void srv_detach(struct srv *s, struct allocation *a)
{
    tickets_unindex(s, a);
    alloc_remove(&s->allocs, a);
}

int srv_adopt(struct srv *s, struct allocation *a, const uint8_t *req, size_t reqlen,
              const uint8_t *answer, size_t anslen, uint64_t now_ms)
{
    if (alloc_find(&s->allocs, &a->tuple) || alloc_insert(&s->allocs, a)) return -1;
    tickets_index(s, a);
    if (reqlen >= STUN_HEADER_LEN)
        txc_store(s, &a->tuple, req + 8, req_hash(req, reqlen), answer, anslen, now_ms);
    return 0;
}

void srv_discard(struct srv *s, struct allocation *a, const char *why)
{
    destroy(s, a, why, SRV_C_allocations_deleted);
}

size_t srv_peer_data(struct srv *s, struct allocation *a, struct alloc_relay *rel,
                     const union stun_addr *from, uint8_t *data, size_t len, uint64_t now_ms,
                     uint8_t **msg)
{
    union stun_addr peer;
    policy_canonical(from, &peer);
    if (a->expires_ms <= now_ms) {
        s->c.v[SRV_C_drop_no_allocation]++; /* ended; the sweep closes it this loop pass */
        return 0;
    }
    if (!alloc_permitted(a, &peer, now_ms)) {
        s->c.v[SRV_C_drop_peer_no_permission]++;
        a->drops_perm[1]++;
        return 0;
    }
    if (!policy_pass(s, &peer)) return 0;
    if (!alloc_bucket_take(&a->bw_to_client, len, now_ms)) {
        s->c.v[SRV_C_drop_bandwidth]++;
        a->drops_bw[1]++;
        return 0;
    }
    (void)rel;
    bool stream = srv_stream(a->tuple.transport);
    size_t padded = stream ? (len + 3) & ~(size_t)3 : len;
    if (len > 0xFFFF - 48) {
        s->c.v[SRV_C_drop_peer_too_big]++;
        return 0;
    }
    const struct alloc_chan *c = alloc_channel_of(a, &peer, now_ms);
    if (c) {
        uint8_t *p = data - STUN_CHDATA_HEADER_LEN;
        stun_chdata_header(p, c->num, (uint16_t)len);
        memset(data + len, 0, padded - len);
        s->c.v[SRV_C_peer_to_client_channel]++;
        *msg = p;
        return STUN_CHDATA_HEADER_LEN + padded;
    }
    /* Data indication: header, XOR-PEER-ADDRESS, DATA header, all written just before data. */
    size_t hdr = STUN_HEADER_LEN + 4 + (peer.sa.sa_family == AF_INET ? 8 : 20) + 4;
    uint8_t *p = data - hdr;
    uint8_t tid[STUN_TID_LEN];
    uint64_t r1 = splitmix(&s->rng), r2 = splitmix(&s->rng);
    memcpy(tid, &r1, 8);
    memcpy(tid + 8, &r2, 4);
    struct stun_enc e;
    stun_enc_init(&e, p, hdr + ((len + 3) & ~(size_t)3), stun_type(STUN_DATA, STUN_INDICATION),
                  tid);
    stun_enc_xor_addr(&e, STUN_ATTR_XOR_PEER_ADDRESS, &peer);
    stun_enc_attr(&e, STUN_ATTR_DATA, data, len); /* in place: data is where the value goes */
    int n = stun_enc_finish(&e);
    if (n <= 0) {
        s->c.v[SRV_C_drop_peer_too_big]++;
        return 0;
    }
    s->c.v[SRV_C_peer_to_client_data]++;
    *msg = p;
    return (size_t)n;
}

/* The per-allocation ICMP budget: SRV_ICMP_BURST, refilled at SRV_ICMP_PER_S. A new
 * allocation starts full (icmp_ms 0 means never used). */
static bool icmp_take(struct allocation *a, uint64_t now_ms)
{
    if (!a->icmp_ms) {
        a->icmp_tokens = SRV_ICMP_BURST;
        a->icmp_ms = now_ms ? now_ms : 1;
    } else if (now_ms > a->icmp_ms) {
        uint64_t add = (now_ms - a->icmp_ms) * SRV_ICMP_PER_S / 1000;
        if (add) {
            a->icmp_tokens = a->icmp_tokens + add > SRV_ICMP_BURST ? SRV_ICMP_BURST
                                                                   : a->icmp_tokens + (uint32_t)add;
            a->icmp_ms += add * 1000 / SRV_ICMP_PER_S;
        }
    }
    if (!a->icmp_tokens) return false;
    a->icmp_tokens--;
    return true;
}

size_t srv_peer_icmp(struct srv *s, struct allocation *a, const union stun_addr *to, uint8_t type,
                     uint8_t code, uint32_t info, uint64_t now_ms, uint8_t *out, size_t outcap)
{
    union stun_addr peer;
    policy_canonical(to, &peer);
    if (a->expires_ms <= now_ms) {
        s->c.v[SRV_C_drop_no_allocation]++;
        return 0;
    }
    if (!alloc_permitted(a, &peer, now_ms)) {
        s->c.v[SRV_C_drop_icmp_no_permission]++;
        return 0;
    }
    if (srv_stream(a->tuple.transport)) {
        s->c.v[SRV_C_icmp_stream_client]++;
        return 0;
    }
    if (!icmp_take(a, now_ms)) {
        s->c.v[SRV_C_drop_icmp_rate]++;
        return 0;
    }
    uint8_t tid[STUN_TID_LEN];
    uint64_t r1 = splitmix(&s->rng), r2 = splitmix(&s->rng);
    memcpy(tid, &r1, 8);
    memcpy(tid + 8, &r2, 4);
    struct stun_enc e;
    stun_enc_init(&e, out, outcap, stun_type(STUN_DATA, STUN_INDICATION), tid);
    /* The address the relay sent to, as the client named it (the canonical form is only for
     * the permission check). */
    stun_enc_xor_addr(&e, STUN_ATTR_XOR_PEER_ADDRESS, to);
    stun_enc_icmp(&e, type, code, info);
    int n = stun_enc_finish(&e);
    if (n <= 0) return 0; /* outcap too small: a caller bug, never the wire's */
    s->c.v[SRV_C_icmp_to_client]++;
    return (size_t)n;
}
