/* dtls.c: the DTLS transport (dtls.h; docs/dtls.md).
 *
 * A dtls listener is a UDP socket like a udp one (fwd.c receives its batches). Each datagram
 * is looked up by its 5-tuple in the worker's session table (SO_REUSEPORT pins a 5-tuple to
 * one worker, so the table is the worker's own and lock-free):
 *
 *   - a known session: its bytes go to the session's SSL through the session's BIO;
 *   - an unknown source: only a ClientHello is looked at, by the worker's one listening SSL
 *     (DTLSv1_listen): without a valid cookie it is answered with a HelloVerifyRequest whose
 *     cookie is an HMAC of the source address and a 30-s time bucket under a per-worker random
 *     key, and nothing is kept; with a valid one (the source has shown it receives what is
 *     sent to it) a session is made, if fewer than relay.dtls_max_handshakes are in handshake
 *     on this worker, and the listening SSL becomes the session's.
 *
 * The BIO is this file's own (no socket per client, no copy into a memory BIO): a read hands
 * OpenSSL the datagram being handled, once; a write is one sendmsg of one datagram from the
 * listener socket to the client (IP_PKTINFO on wildcard listeners, the TOS of the datagram it
 * carries). Closing is always deferred to the end of the loop pass (dtls_expire): a session
 * closed while a UDP batch is handled would free an allocation the train still points at. */
#include <errno.h>
#include <openssl/err.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include "addr.h"
#include "dtls.h"
#include "iptable.h"
#include "log.h"
#include "wire.h"
#include "worker.h"

#define DTLS_MAX_SESSIONS 16384                   /* per worker */
#define DTLS_BUCKETS      (2 * DTLS_MAX_SESSIONS) /* the session table: a power of two */
#define DTLS_IDLE_MS      (300 * 1000)  /* no allocation, nothing received: the session goes */
#define DTLS_COOKIE_MS    30000         /* a cookie is good for this bucket and the next */
#define DTLS_COOKIE_LEN   32            /* HMAC-SHA256 */
#define DTLS_LINK_MTU     1400          /* handshake flights are fragmented to fit */
#define DTLS_TIMER_MS     100           /* retransmission timers are looked at this often */
#define DTLS_LOG_EVERY_MS (60 * 1000)   /* refusals by a limit: one warning a minute at most */
#define NOT_CLOSING       RELAY_C_COUNT /* dtls_sess.closing of a session that is not */
#define DTLS_IP_SLOTS     (2 * DTLS_MAX_SESSIONS) /* the per-IP table: a power of two, never full */

/* What the BIO of one SSL works with. */
struct dtls_io {
    struct worker *w;
    const struct listener *l;
    const struct srv_tuple *t; /* to whom writes go */
    const uint8_t *in;         /* the datagram a read returns (once); NULL: none */
    size_t inlen;
    struct udp_mark mark; /* how the next write leaves */
};

struct dtls_sess {
    struct dtls_sess *hnext;    /* the table's chain */
    TAILQ_ENTRY(dtls_sess) lru; /* every session, least recently active first */
    TAILQ_ENTRY(dtls_sess) hs;  /* in handshake (until up), oldest first: deadlines */
    struct dtls_sess *cnext;    /* closing, until the pass ends */
    SSL *ssl;
    struct dtls_io io;
    struct srv_tuple tuple;
    struct listener *l;
    uint64_t ipkey; /* its count in dtls_state.ips */
    uint64_t born_ms, last_ms;
    bool up;                    /* the handshake finished */
    bool expect_plain;          /* the datagram being read was an application-data record */
    bool broken;                /* an alert or error: nothing more is read or sent */
    enum relay_counter closing; /* why it closes at the end of the pass; NOT_CLOSING */
};

struct dtls_state {
    struct dtls_sess **table;
    TAILQ_HEAD(sess_list, dtls_sess) lru;
    struct sess_list hs;
    struct dtls_sess *closing;
    size_t nsess, nhs;
    BIO_METHOD *meth;
    SSL *listen;         /* the listening SSL: turns into the next session's */
    SSL_CTX *listen_ctx; /* ... made from this context */
    struct dtls_io lio;  /* its BIO's data, per datagram */
    struct srv_tuple ltuple;
    BIO_ADDR *lpeer;
    uint8_t key[32]; /* the cookie key, this worker's (its 5-tuples come only here) */
    uint64_t timers_ms, cap_logged_ms, limit_logged_ms, per_ip_logged_ms;
    struct ip_slot ips[DTLS_IP_SLOTS]; /* sessions per client IP (relay.dtls_max_per_ip) */
};

static uint64_t tuple_key(const struct srv_tuple *t)
{
    return addr_hash(addr_hash(FNV64_INIT, &t->client), &t->local);
}

static struct dtls_sess **slot(struct dtls_state *st, const struct srv_tuple *t)
{
    return &st->table[tuple_key(t) & (DTLS_BUCKETS - 1)];
}

static struct dtls_sess *find(struct dtls_state *st, const struct srv_tuple *t)
{
    for (struct dtls_sess *s = *slot(st, t); s; s = s->hnext)
        if (tuple_equal(&s->tuple, t)) return s;
    return NULL;
}

/* ---- lists ---- */

static void lru_touch(struct dtls_state *st, struct dtls_sess *s)
{
    TAILQ_REMOVE(&st->lru, s, lru);
    TAILQ_INSERT_TAIL(&st->lru, s, lru);
}

static void hs_unlink(struct dtls_state *st, struct dtls_sess *s)
{
    if (s->up) return;
    TAILQ_REMOVE(&st->hs, s, hs);
    st->nhs--;
}

/* ---- the BIO ---- */

static int bio_write(BIO *b, const char *data, int len)
{
    struct dtls_io *io = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (!io || !io->t || len <= 0) return len;
    struct worker *w = io->w;
    struct iovec iov = {.iov_base = (void *)data, .iov_len = (size_t)len};
    struct msghdr mh;
    union {
        uint8_t buf[UDP_CTL_LEN];
        struct cmsghdr align;
    } ctl;
    udp_prepare(&mh, io->l, io->t, &iov, io->mark, ctl.buf);
    ssize_t k;
    do
        k = sendmsg(io->l->h.fd, &mh, MSG_DONTWAIT);
    while (k < 0 && errno == EINTR);
    if (k < 0) {
        w->io.v[RELAY_C_dtls_send_errors]++; /* lost, as the network may lose it */
    } else {
        w->io.v[RELAY_C_dtls_tx_datagrams]++;
        w->io.v[RELAY_C_dtls_tx_bytes] += (uint64_t)len;
    }
    return len;
}

static int bio_read(BIO *b, char *buf, int cap)
{
    struct dtls_io *io = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (!io || !io->in) {
        BIO_set_retry_read(b);
        return -1;
    }
    size_t n = io->inlen < (size_t)cap ? io->inlen : (size_t)cap; /* one datagram per read */
    memcpy(buf, io->in, n);
    io->in = NULL;
    return (int)n;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b;
    (void)num;
    (void)ptr;
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;
    case BIO_CTRL_DGRAM_GET_MTU_OVERHEAD:
        return 0; /* DTLS_LINK_MTU is already what records may take */
    default:
        return 0; /* no peer address, MTU query, timers or pending bytes here */
    }
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

/* ---- cookies (RFC 6347 4.2.1): stateless, HMAC of the source and the time bucket ---- */

static void cookie_of(const struct dtls_state *st, const union stun_addr *a, uint64_t bucket,
                      uint8_t out[DTLS_COOKIE_LEN])
{
    uint8_t msg[8 + 2 + 16];
    size_t n = 0;
    wr32(msg, (uint32_t)(bucket >> 32));
    wr32(msg + 4, (uint32_t)bucket);
    n = 8;
    wr16(msg + n, addr_port(a));
    n += 2;
    if (a->sa.sa_family == AF_INET) {
        memcpy(msg + n, &a->v4.sin_addr, 4);
        n += 4;
    } else {
        memcpy(msg + n, &a->v6.sin6_addr, 16);
        n += 16;
    }
    unsigned olen = DTLS_COOKIE_LEN;
    if (!HMAC(EVP_sha256(), st->key, sizeof(st->key), msg, n, out, &olen))
        memset(out, 0, DTLS_COOKIE_LEN);
}

static struct dtls_io *io_of(SSL *ssl)
{
    BIO *b = SSL_get_rbio(ssl);
    return b ? BIO_get_data(b) : NULL;
}

static int cookie_generate(SSL *ssl, unsigned char *cookie, unsigned int *len)
{
    struct dtls_io *io = io_of(ssl);
    if (!io || !io->t) return 0;
    struct worker *w = io->w;
    cookie_of(w->dtls, &io->t->client, w->now_ms / DTLS_COOKIE_MS, cookie);
    *len = DTLS_COOKIE_LEN;
    w->io.v[RELAY_C_dtls_hello_verify]++;
    return 1;
}

static int cookie_verify(SSL *ssl, const unsigned char *cookie, unsigned int len)
{
    struct dtls_io *io = io_of(ssl);
    if (!io || !io->t) return 0;
    struct worker *w = io->w;
    uint64_t bucket = w->now_ms / DTLS_COOKIE_MS;
    for (uint64_t b = bucket; len == DTLS_COOKIE_LEN && b + 1 >= bucket && b != UINT64_MAX; b--) {
        uint8_t want[DTLS_COOKIE_LEN];
        cookie_of(w->dtls, &io->t->client, b, want);
        if (CRYPTO_memcmp(want, cookie, DTLS_COOKIE_LEN) == 0) return 1;
        if (!b) break;
    }
    w->io.v[RELAY_C_dtls_bad_cookie]++;
    tlog(CFG_LOG_DEBUG, "dtls_bad_cookie", LF_A("client", &io->t->client));
    return 0;
}

int dtls_ctx_setup(struct ssl_ctx_st *ctx)
{
    if (!SSL_CTX_set_min_proto_version(ctx, DTLS1_2_VERSION)) return -1;
    /* Handshake flights are cut to DTLS_LINK_MTU: the BIO has no path MTU to offer. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_QUERY_MTU | SSL_OP_COOKIE_EXCHANGE);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_cookie_generate_cb(ctx, cookie_generate);
    SSL_CTX_set_cookie_verify_cb(ctx, cookie_verify);
    return 0;
}

/* ---- the worker's state ---- */

static struct dtls_state *state(struct worker *w)
{
    if (w->dtls) return w->dtls;
    struct dtls_state *st = calloc(1, sizeof(*st));
    if (!st) return NULL;
    TAILQ_INIT(&st->lru);
    TAILQ_INIT(&st->hs);
    st->table = calloc(DTLS_BUCKETS, sizeof(*st->table));
    st->meth = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "tern-dtls");
    st->lpeer = BIO_ADDR_new();
    if (!st->table || !st->meth || !st->lpeer || RAND_bytes(st->key, sizeof(st->key)) != 1 ||
        !BIO_meth_set_write(st->meth, bio_write) || !BIO_meth_set_read(st->meth, bio_read) ||
        !BIO_meth_set_ctrl(st->meth, bio_ctrl) || !BIO_meth_set_create(st->meth, bio_create)) {
        free(st->table);
        BIO_meth_free(st->meth);
        BIO_ADDR_free(st->lpeer);
        free(st);
        ERR_clear_error();
        return NULL;
    }
    w->dtls = st;
    return st;
}

/* An SSL of ctx in server mode with a BIO of ours reading and writing for io. */
static SSL *ssl_new(struct dtls_state *st, SSL_CTX *ctx, struct dtls_io *io)
{
    SSL *ssl = SSL_new(ctx);
    BIO *b = BIO_new(st->meth);
    if (!ssl || !b) {
        SSL_free(ssl);
        BIO_free(b);
        ERR_clear_error();
        return NULL;
    }
    BIO_set_data(b, io);
    SSL_set_bio(ssl, b, b); /* one reference, taken by ssl */
    SSL_set_accept_state(ssl);
    DTLS_set_link_mtu(ssl, DTLS_LINK_MTU);
    return ssl;
}

/* The listening SSL, made from the listener's context (renewed when a reload renewed it). */
static SSL *listen_ssl(struct dtls_state *st, SSL_CTX *ctx)
{
    if (st->listen && st->listen_ctx != ctx) {
        SSL_free(st->listen);
        st->listen = NULL;
    }
    if (!st->listen) {
        st->listen = ssl_new(st, ctx, &st->lio);
        st->listen_ctx = ctx;
    }
    return st->listen;
}

/* A warning for refusals by a limit: the first, then at most one per DTLS_LOG_EVERY_MS. */
static void limit_log(struct worker *w, uint64_t *last_ms, const char *event,
                      const union stun_addr *client, uint64_t limit, enum relay_counter c)
{
    if (*last_ms && w->now_ms - *last_ms < DTLS_LOG_EVERY_MS) return;
    *last_ms = w->now_ms ? w->now_ms : 1;
    tlog(CFG_LOG_WARN, event, LF_A("client", client), LF_U("limit", limit), LF_U("worker", w->id),
         LF_U("refused_total", w->io.v[c]));
}

/* Mark s to close when the pass ends (the first reason wins). */
static void doom(struct worker *w, struct dtls_sess *s, enum relay_counter why)
{
    if (s->closing != NOT_CLOSING) return;
    s->closing = why;
    s->cnext = w->dtls->closing;
    w->dtls->closing = s;
}

/* A source without a session sent d: a ClientHello goes through the cookie exchange. */
static struct dtls_sess *hello(struct worker *w, struct dtls_state *st, struct listener *l,
                               const struct srv_tuple *t, const struct udp_dgram *d)
{
    /* A handshake record (22) holding a ClientHello (1) as its first message. */
    if (d->len < 13 + 12 || d->data[0] != 22 || d->data[13] != 1) {
        w->io.v[RELAY_C_dtls_drop_no_session]++;
        return NULL;
    }
    if (!l->tls) { /* retired by a reload: its sessions carry on, no new ones */
        w->io.v[RELAY_C_dtls_drop_retired]++;
        return NULL;
    }
    SSL *ls = listen_ssl(st, l->tls);
    if (!ls) {
        w->io.v[RELAY_C_dtls_rejected_nomem]++;
        return NULL;
    }
    st->ltuple = *t;
    st->lio = (struct dtls_io){.w = w, .l = l, .t = &st->ltuple, .in = d->data, .inlen = d->len};
    uint64_t seen = w->io.v[RELAY_C_dtls_hello_verify] + w->io.v[RELAY_C_dtls_bad_cookie];
    int r = DTLSv1_listen(ls, st->lpeer);
    st->lio.in = NULL;
    if (r <= 0) {
        /* 0: a HelloVerifyRequest went out, or a bad cookie was counted; or OpenSSL dropped
         * it as malformed, which this counts. Nothing is kept either way. */
        if (r < 0 || w->io.v[RELAY_C_dtls_hello_verify] + w->io.v[RELAY_C_dtls_bad_cookie] == seen)
            w->io.v[RELAY_C_dtls_drop_bad_hello]++;
        ERR_clear_error();
        if (r < 0) { /* the listening SSL may be in any state: a new one next time */
            SSL_free(st->listen);
            st->listen = NULL;
        }
        return NULL;
    }
    /* A verified source. From here it costs memory: the limits apply. */
    enum relay_counter refuse = NOT_CLOSING;
    uint64_t ipkey = ip_key(&t->client);
    struct ip_slot *ips = ip_find(st->ips, DTLS_IP_SLOTS, ipkey);
    if (ips->n >= w->cfg->dtls_max_per_ip) {
        refuse = RELAY_C_dtls_rejected_per_ip;
        limit_log(w, &st->per_ip_logged_ms, "dtls_per_ip_limit", &t->client,
                  w->cfg->dtls_max_per_ip, refuse);
    } else if (st->nhs >= w->cfg->dtls_max_handshakes) {
        refuse = RELAY_C_dtls_rejected_handshakes;
        limit_log(w, &st->cap_logged_ms, "dtls_handshake_limit", &t->client,
                  w->cfg->dtls_max_handshakes, refuse);
    } else if (st->nsess >= DTLS_MAX_SESSIONS) {
        refuse = RELAY_C_dtls_rejected_sessions;
        limit_log(w, &st->limit_logged_ms, "dtls_session_limit", &t->client, DTLS_MAX_SESSIONS,
                  refuse);
    }
    struct dtls_sess *s = refuse == NOT_CLOSING ? calloc(1, sizeof(*s)) : NULL;
    if (!s) {
        w->io.v[refuse == NOT_CLOSING ? RELAY_C_dtls_rejected_nomem : refuse]++;
        SSL_free(st->listen); /* it holds the ClientHello: nothing of it is kept */
        st->listen = NULL;
        return NULL;
    }
    st->listen = NULL;            /* the listening SSL is this session's now */
    SSL_set_app_data(ls, &w->io); /* alpn_select (relay/tcp.c) counts here */
    s->ssl = ls;
    s->l = l;
    ips->key = s->ipkey = ipkey;
    ips->n++;
    s->tuple = *t;
    s->io = (struct dtls_io){.w = w, .l = l, .t = &s->tuple};
    BIO_set_data(SSL_get_rbio(ls), &s->io);
    s->born_ms = s->last_ms = w->now_ms;
    s->closing = NOT_CLOSING;
    struct dtls_sess **sl = slot(st, t);
    s->hnext = *sl;
    *sl = s;
    TAILQ_INSERT_TAIL(&st->lru, s, lru);
    TAILQ_INSERT_TAIL(&st->hs, s, hs);
    st->nhs++;
    st->nsess++;
    w->io.v[RELAY_C_dtls_sessions]++;
    tlog(CFG_LOG_DEBUG, "dtls_session", LF_A("client", &t->client), LF_U("worker", w->id));
    /* The buffered ClientHello: the server's flight goes out now. */
    int k = SSL_do_handshake(ls);
    if (k <= 0) {
        int e = SSL_get_error(ls, k);
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
            tlog(CFG_LOG_DEBUG, "dtls_handshake_failed", LF_A("client", &t->client),
                 LF_S("error", ERR_reason_error_string(ERR_peek_error())));
            s->broken = true;
            doom(w, s, RELAY_C_dtls_handshake_failed);
        }
        ERR_clear_error();
    }
    return NULL;
}

struct dtls_sess *dtls_input(struct worker *w, struct listener *l, const struct udp_dgram *d)
{
    struct dtls_state *st = state(w);
    if (!st) {
        w->io.v[RELAY_C_dtls_rejected_nomem]++;
        return NULL;
    }
    struct srv_tuple t = {.transport = SRV_DTLS, .client = d->from, .local = d->local};
    struct dtls_sess *s = find(st, &t);
    if (!s) return hello(w, st, l, &t, d);
    if (s->closing != NOT_CLOSING) return NULL; /* ends with this pass */
    s->last_ms = w->now_ms;
    lru_touch(st, s);
    s->io.in = d->data;
    s->io.inlen = d->len;
    s->expect_plain = s->up && d->len && d->data[0] == 23; /* application_data */
    return s;
}

static void handshake_done(struct worker *w, struct dtls_sess *s)
{
    hs_unlink(w->dtls, s);
    s->up = true;
    w->io.v[RELAY_C_dtls_handshakes]++;
    tlog(CFG_LOG_DEBUG, "dtls_handshake", LF_A("client", &s->tuple.client),
         LF_S("version", SSL_get_version(s->ssl)),
         LF_S("cipher", SSL_CIPHER_get_name(SSL_get_current_cipher(s->ssl))),
         LF_U("ms", w->now_ms - s->born_ms));
}

int dtls_read(struct worker *w, struct dtls_sess *s, uint8_t *buf, size_t cap)
{
    if (s->closing != NOT_CLOSING) {
        s->io.in = NULL;
        return -1;
    }
    int k = SSL_read(s->ssl, buf, cap > INT32_MAX ? INT32_MAX : (int)cap);
    if (!s->up && SSL_is_init_finished(s->ssl)) handshake_done(w, s);
    if (k > 0) {
        s->expect_plain = false;
        return k;
    }
    int e = SSL_get_error(s->ssl, k);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        /* An application-data record that gave nothing: OpenSSL dropped it (RFC 6347 4.1.2.7:
         * a bad MAC, a replay, an old epoch), silently; it is counted here. */
        if (s->expect_plain) w->io.v[RELAY_C_dtls_drop_undecryptable]++;
        s->expect_plain = false;
        s->io.in = NULL;
        ERR_clear_error();
        return 0;
    }
    enum relay_counter why = e == SSL_ERROR_ZERO_RETURN ? RELAY_C_dtls_close_alert
                             : !s->up                   ? RELAY_C_dtls_handshake_failed
                                                        : RELAY_C_dtls_session_error;
    if (why == RELAY_C_dtls_session_error && (SSL_get_shutdown(s->ssl) & SSL_RECEIVED_SHUTDOWN))
        why = RELAY_C_dtls_close_alert; /* a fatal alert from the client */
    tlog(CFG_LOG_DEBUG,
         why == RELAY_C_dtls_handshake_failed ? "dtls_handshake_failed" : "dtls_error",
         LF_A("client", &s->tuple.client),
         LF_S("error", e == SSL_ERROR_ZERO_RETURN ? "close_notify"
                                                  : ERR_reason_error_string(ERR_peek_error())));
    ERR_clear_error();
    s->io.in = NULL;
    s->broken = true;
    doom(w, s, why);
    return -1;
}

const struct srv_tuple *dtls_tuple(const struct dtls_sess *s)
{
    return &s->tuple;
}

bool dtls_send_client(struct worker *w, struct dtls_sess *s, const uint8_t *msg, size_t len,
                      struct udp_mark m)
{
    if (s->broken || !s->up) {
        w->io.v[RELAY_C_dtls_send_errors]++;
        return false;
    }
    s->io.mark = m;
    int k = SSL_write(s->ssl, msg, len > INT32_MAX ? INT32_MAX : (int)len);
    s->io.mark = (struct udp_mark){0, 0};
    if (k > 0) return true;
    w->io.v[RELAY_C_dtls_send_errors]++;
    ERR_clear_error();
    return false;
}

void dtls_alloc_ended(struct worker *w, struct dtls_sess *s)
{
    if (w->dtls && s) doom(w, s, RELAY_C_dtls_allocation_end);
}

/* Close s now (only between handlers: dtls_expire, dtls_close_all): its allocation ends with
 * it, a close_notify goes out unless it broke, and it is freed. */
static void sess_close(struct worker *w, struct dtls_sess *s, enum relay_counter why)
{
    struct dtls_state *st = w->dtls;
    if (why != RELAY_C_dtls_closed) w->io.v[why]++;
    w->io.v[RELAY_C_dtls_closed]++;
    tlog(CFG_LOG_DEBUG, "dtls_close", LF_A("client", &s->tuple.client),
         LF_S("reason", relay_counter_names[why]));
    for (struct dtls_sess **p = slot(st, &s->tuple); *p; p = &(*p)->hnext)
        if (*p == s) {
            *p = s->hnext;
            break;
        }
    TAILQ_REMOVE(&st->lru, s, lru);
    hs_unlink(st, s);
    ip_release(st->ips, DTLS_IP_SLOTS, s->ipkey);
    st->nsess--;
    s->closing = why; /* dtls_alloc_ended from the allocation's end: already closing */
    struct allocation *a = alloc_find(&w->srv.allocs, &s->tuple);
    if (a && a->client_io == s) srv_delete(&w->srv, a, "closed");
    if (s->up && !s->broken) SSL_shutdown(s->ssl); /* close_notify, once; no wait for theirs */
    SSL_free(s->ssl);
    free(s);
}

/* Close the sessions doomed during the pass (dtls_sess.closing says why). */
static void close_doomed(struct worker *w, struct dtls_state *st)
{
    while (st->closing) {
        struct dtls_sess *s = st->closing;
        st->closing = s->cnext;
        sess_close(w, s, s->closing);
    }
}

void dtls_expire(struct worker *w)
{
    struct dtls_state *st = w->dtls;
    if (!st) return;
    /* Closing first: a session in the list may also be due below. */
    close_doomed(w, st);
    uint64_t limit = (uint64_t)w->cfg->dtls_handshake_timeout * 1000;
    struct dtls_sess *s;
    while ((s = TAILQ_FIRST(&st->hs)) && w->now_ms - s->born_ms > limit) {
        tlog(CFG_LOG_DEBUG, "dtls_handshake_timeout", LF_A("client", &s->tuple.client));
        sess_close(w, s, RELAY_C_dtls_handshake_timeout);
    }
    if (w->now_ms - st->timers_ms >= DTLS_TIMER_MS) {
        st->timers_ms = w->now_ms;
        /* A flight the client did not answer is sent again (OpenSSL's timer, 1 s doubling). */
        TAILQ_FOREACH (s, &st->hs, hs)
            if (DTLSv1_handle_timeout(s->ssl) < 0) ERR_clear_error();
    }
    while ((s = TAILQ_FIRST(&st->lru)) && w->now_ms - s->last_ms > DTLS_IDLE_MS) {
        if (alloc_find(&w->srv.allocs, &s->tuple)) { /* the allocation's expiry decides */
            s->last_ms = w->now_ms;
            lru_touch(st, s);
        } else {
            sess_close(w, s, RELAY_C_dtls_idle);
        }
    }
    close_doomed(w, st); /* what the closes above ended (allocations of other sessions: no) */
}

void dtls_close_all(struct worker *w)
{
    struct dtls_state *st = w->dtls;
    if (!st) return;
    close_doomed(w, st);
    struct dtls_sess *s;
    while ((s = TAILQ_FIRST(&st->lru))) {
        s->closing = RELAY_C_dtls_closed;
        sess_close(w, s, RELAY_C_dtls_closed);
    }
    SSL_free(st->listen);
    BIO_meth_free(st->meth);
    BIO_ADDR_free(st->lpeer);
    free(st->table);
    free(st);
    w->dtls = NULL;
}

bool dtls_uses_listener(const struct worker *w, const struct listener *l)
{
    if (!w->dtls) return false;
    const struct dtls_sess *s;
    TAILQ_FOREACH (s, &w->dtls->lru, lru)
        if (s->l == l) return true;
    return false;
}

void dtls_counts(const struct worker *w, uint64_t *sessions, uint64_t *handshaking)
{
    *sessions = w->dtls ? w->dtls->nsess : 0;
    *handshaking = w->dtls ? w->dtls->nhs : 0;
}
