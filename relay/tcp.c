/* tcp.c: the TCP and TLS transport: listeners, connections (accept, TLS, idle expiry in LRU
 * order), reading into a per-connection buffer, STUN/ChannelData stream framing (RFC 8656
 * 12.5) and queued writes. It moves bytes; fwd.c takes the frames (tcp.h). */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "addr.h"
#include "tcp.h"
#include "worker.h"

#define TCP_MAX_CONNS  16384 /* per worker */
#define TCP_RX_INITIAL 2048
#define TCP_RX_MAX     (20 + 65535) /* the largest STUN frame; ChannelData is smaller */
#define TCP_TX_MAX     (256 * 1024) /* unsent answers beyond this: the client is not reading */
#define TCP_IDLE_MS    (300 * 1000) /* no allocation keeps a connection yet: idle ones go */

struct tcp_conn {
    struct ep_handler h;
    struct tcp_conn *prev, *next; /* LRU list */
    struct listener *l;
    union stun_addr peer;
    struct srv_tuple tuple; /* client and the local address it connected to */
    uint64_t last_ms;
    SSL *ssl;           /* TLS connections only */
    bool ssl_wants_out; /* the TLS engine must write before it can go on */
    bool ssl_up;        /* the handshake completed (an error later is not a handshake failure) */
    bool want_out;      /* EPOLLOUT is registered */
    uint8_t *rx;
    size_t rxlen, rxcap;
    size_t rxoff; /* frames before this offset have been handed out (tcp_frame) */
    uint8_t *tx;
    size_t txlen, txcap;
};

static void lru_unlink(struct worker *w, struct tcp_conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        w->lru_head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        w->lru_tail = c->prev;
    c->prev = c->next = NULL;
}

static void lru_push(struct worker *w, struct tcp_conn *c)
{
    c->prev = w->lru_tail;
    c->next = NULL;
    if (w->lru_tail)
        w->lru_tail->next = c;
    else
        w->lru_head = c;
    w->lru_tail = c;
}

static void conn_close(struct worker *w, struct tcp_conn *c, enum relay_counter why)
{
    if (c->h.fd < 0) return;
    if (why != RELAY_C_tcp_closed) w->io.v[why]++;
    w->io.v[RELAY_C_tcp_closed]++;
    tlog(CFG_LOG_DEBUG, "tcp_close", LF_A("client", &c->peer),
         LF_S("reason", relay_counter_names[why]));
    /* RFC 8656 3.1: an allocation over TCP/TLS lives as long as its connection. */
    struct allocation *a = alloc_find(&w->srv.allocs, &c->tuple);
    if (a) srv_delete(&w->srv, a, "closed");
    lru_unlink(w, c);
    w->nconns--;
    SSL_free(c->ssl); /* no close_notify: the peer is gone or misbehaved */
    c->ssl = NULL;
    free(c->rx);
    free(c->tx);
    c->rx = c->tx = NULL;
    worker_bury(w, &c->h, c); /* closes the fd, which also removes it from epoll */
}

static void set_out(struct worker *w, struct tcp_conn *c, bool on)
{
    if (c->want_out == on) return;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | (on ? EPOLLOUT : 0),
                             .data.ptr = &c->h};
    epoll_ctl(w->epfd, EPOLL_CTL_MOD, c->h.fd, &ev);
    c->want_out = on;
}

/* One write of plain or TLS bytes: > 0 written, 0 would block, -1 the connection failed. */
static ssize_t write_some(struct tcp_conn *c, const uint8_t *p, size_t len)
{
    if (!c->ssl) {
        ssize_t k;
        do
            k = send(c->h.fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        while (k < 0 && errno == EINTR);
        if (k < 0) return errno == EAGAIN ? 0 : -1;
        return k;
    }
    int k = SSL_write(c->ssl, p, len > INT32_MAX ? INT32_MAX : (int)len);
    if (k > 0) return k;
    switch (SSL_get_error(c->ssl, k)) {
    case SSL_ERROR_WANT_WRITE:
        c->ssl_wants_out = true;
        return 0;
    case SSL_ERROR_WANT_READ:
        return 0; /* renegotiation-like: resumes when data arrives */
    default:
        ERR_clear_error();
        return -1;
    }
}

/* Write what is queued; returns false if the connection had to be closed. */
static bool flush(struct worker *w, struct tcp_conn *c)
{
    size_t off = 0;
    c->ssl_wants_out = false;
    while (off < c->txlen) {
        ssize_t k = write_some(c, c->tx + off, c->txlen - off);
        if (k < 0) {
            conn_close(w, c, RELAY_C_tcp_closed);
            return false;
        }
        if (k == 0) break;
        w->io.v[RELAY_C_tcp_tx_bytes] += (uint64_t)k;
        off += (size_t)k;
    }
    memmove(c->tx, c->tx + off, c->txlen - off);
    c->txlen -= off;
    set_out(w, c, c->txlen > 0 || c->ssl_wants_out);
    return true;
}

/* One read of plain or TLS bytes: > 0 read, 0 would block, -1 closed or failed. The TLS
 * handshake runs inside SSL_read. */
static ssize_t read_some(struct worker *w, struct tcp_conn *c, uint8_t *p, size_t len)
{
    if (!c->ssl) {
        ssize_t k;
        do
            k = recv(c->h.fd, p, len, MSG_DONTWAIT);
        while (k < 0 && errno == EINTR);
        if (k == 0) return -1;
        if (k < 0) return errno == EAGAIN ? 0 : -1;
        return k;
    }
    int k = SSL_read(c->ssl, p, len > INT32_MAX ? INT32_MAX : (int)len);
    if (k > 0 || SSL_is_init_finished(c->ssl)) c->ssl_up = true;
    if (k > 0) return k;
    switch (SSL_get_error(c->ssl, k)) {
    case SSL_ERROR_WANT_READ:
        return 0;
    case SSL_ERROR_WANT_WRITE:
        c->ssl_wants_out = true;
        set_out(w, c, true);
        return 0;
    default:
        if (!c->ssl_up) {
            w->io.v[RELAY_C_tls_handshake_failed]++;
            tlog(CFG_LOG_DEBUG, "tls_handshake_failed", LF_A("client", &c->peer),
                 LF_S("error", ERR_reason_error_string(ERR_peek_error())));
        }
        ERR_clear_error();
        return -1;
    }
}

static bool queue(struct worker *w, struct tcp_conn *c, const uint8_t *data, size_t len)
{
    if (c->txlen + len > TCP_TX_MAX) {
        conn_close(w, c, RELAY_C_tcp_tx_overflow);
        return false;
    }
    if (c->txlen + len > c->txcap) {
        size_t cap = c->txcap ? c->txcap : 4096;
        while (cap < c->txlen + len)
            cap *= 2;
        uint8_t *p = realloc(c->tx, cap);
        if (!p) {
            conn_close(w, c, RELAY_C_tcp_tx_overflow);
            return false;
        }
        c->tx = p;
        c->txcap = cap;
    }
    memcpy(c->tx + c->txlen, data, len);
    c->txlen += len;
    return flush(w, c);
}

bool tcp_io(struct worker *w, struct tcp_conn *c, uint32_t events)
{
    c->last_ms = w->now_ms;
    lru_unlink(w, c);
    lru_push(w, c);
    if (events & EPOLLOUT && !flush(w, c)) return false;
    /* TLS: a write the engine wanted may have been what a pending read waited for. */
    return events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR) || (c->ssl && events & EPOLLOUT);
}

int tcp_read(struct worker *w, struct tcp_conn *c)
{
    if (c->rxlen == c->rxcap) {
        if (c->rxcap >= TCP_RX_MAX) return 0; /* a whole frame always fits: frames go first */
        size_t cap = c->rxcap * 2 > TCP_RX_MAX ? TCP_RX_MAX : c->rxcap * 2;
        uint8_t *p = realloc(c->rx, cap);
        if (!p) return 0;
        c->rx = p;
        c->rxcap = cap;
    }
    ssize_t k = read_some(w, c, c->rx + c->rxlen, c->rxcap - c->rxlen);
    if (k < 0) {
        conn_close(w, c, RELAY_C_tcp_closed);
        return -1;
    }
    if (k == 0) return 0;
    w->io.v[RELAY_C_tcp_rx_bytes] += (uint64_t)k;
    c->rxlen += (size_t)k;
    return 1;
}

int tcp_frame(struct worker *w, struct tcp_conn *c, const uint8_t **msg, size_t *len)
{
    int flen = stun_frame_length(c->rx + c->rxoff, c->rxlen - c->rxoff);
    if (flen < 0) {
        conn_close(w, c, RELAY_C_tcp_bad_frame);
        return -1;
    }
    if (flen == 0 || (size_t)flen > c->rxlen - c->rxoff) return 0;
    *msg = c->rx + c->rxoff;
    *len = (size_t)flen;
    c->rxoff += (size_t)flen;
    return 1;
}

void tcp_frames_done(struct tcp_conn *c)
{
    memmove(c->rx, c->rx + c->rxoff, c->rxlen - c->rxoff);
    c->rxlen -= c->rxoff;
    c->rxoff = 0;
}

const struct srv_tuple *tcp_tuple(const struct tcp_conn *c)
{
    return &c->tuple;
}

void tcp_acceptable(struct worker *w, struct ep_handler *h, uint32_t events)
{
    (void)events;
    struct listener *l = (struct listener *)h;
    for (;;) {
        struct sockaddr_in6 ss;
        socklen_t sl = sizeof(ss);
        int fd = accept4(h->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return; /* EAGAIN, or a transient error such as EMFILE: retried on next event */
        if (w->nconns >= TCP_MAX_CONNS) {
            w->io.v[RELAY_C_tcp_rejected]++;
            close(fd);
            continue;
        }
        /* Relayed media must not wait for Nagle's algorithm (up to a delayed ACK, ~40 ms). */
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct tcp_conn *c = calloc(1, sizeof(*c));
        uint8_t *rx = malloc(TCP_RX_INITIAL);
        if (!c || !rx) {
            free(c);
            free(rx);
            close(fd);
            w->io.v[RELAY_C_tcp_rejected]++;
            continue;
        }
        if (l->tls) {
            c->ssl = SSL_new(l->tls);
            if (!c->ssl || !SSL_set_fd(c->ssl, fd)) {
                SSL_free(c->ssl);
                free(c);
                free(rx);
                close(fd);
                w->io.v[RELAY_C_tcp_rejected]++;
                continue;
            }
            SSL_set_accept_state(c->ssl);
        }
        c->h = (struct ep_handler){.fd = fd, .fn = l->conn_fn};
        c->l = l;
        c->rx = rx;
        c->rxcap = TCP_RX_INITIAL;
        c->last_ms = w->now_ms;
        addr_from_sockaddr(&c->peer, (struct sockaddr *)&ss, sl);
        c->tuple.transport = l->tls ? SRV_TLS : SRV_TCP;
        c->tuple.client = c->peer;
        struct sockaddr_in6 ls;
        socklen_t lsl = sizeof(ls);
        if (getsockname(fd, (struct sockaddr *)&ls, &lsl) ||
            !addr_from_sockaddr(&c->tuple.local, (struct sockaddr *)&ls, lsl))
            c->tuple.local = l->addr;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = &c->h};
        if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
            SSL_free(c->ssl);
            free(c->rx);
            free(c);
            close(fd);
            w->io.v[RELAY_C_tcp_rejected]++;
            continue;
        }
        lru_push(w, c);
        w->nconns++;
        w->io.v[RELAY_C_tcp_accepted]++;
        tlog(CFG_LOG_DEBUG, "tcp_accept", LF_A("client", &c->peer), LF_U("worker", w->id));
    }
}

bool tcp_send_client(struct worker *w, struct tcp_conn *c, const uint8_t *msg, size_t len)
{
    return c->h.fd >= 0 && queue(w, c, msg, len);
}

void tcp_expire(struct worker *w)
{
    /* A connection with an allocation is not idle while the allocation lives: the client
     * refreshes it, and the allocation's own expiry closes it. */
    struct tcp_conn *c;
    while ((c = w->lru_head) && w->now_ms - c->last_ms > TCP_IDLE_MS) {
        if (alloc_find(&w->srv.allocs, &c->tuple)) {
            c->last_ms = w->now_ms; /* look again one idle period later */
            lru_unlink(w, c);
            lru_push(w, c);
        } else {
            conn_close(w, c, RELAY_C_tcp_idle);
        }
    }
}

void tcp_close_all(struct worker *w)
{
    while (w->lru_head)
        conn_close(w, w->lru_head, RELAY_C_tcp_closed);
}

struct ssl_ctx_st *tls_context(const struct tern_config *cfg)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    const char *step = "SSL_CTX_new", *file = "-";
    if (!ctx) goto fail;
    step = "minimum version TLS 1.2";
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION)) goto fail;
    /* Queued answers move when the buffer grows; partial writes keep the loop non-blocking. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    step = "tls.certificate";
    file = cfg->tls_certificate;
    if (SSL_CTX_use_certificate_chain_file(ctx, file) != 1) goto fail;
    step = "tls.private_key";
    file = cfg->tls_private_key;
    if (SSL_CTX_use_PrivateKey_file(ctx, file, SSL_FILETYPE_PEM) != 1) goto fail;
    step = "tls.private_key does not match tls.certificate";
    if (SSL_CTX_check_private_key(ctx) != 1) goto fail;
    return ctx;
fail:;
    char why[256];
    ERR_error_string_n(ERR_get_error(), why, sizeof(why));
    ERR_clear_error();
    tlog(CFG_LOG_ERROR, "tls_failed", LF_S("step", step), LF_S("file", file), LF_S("error", why));
    SSL_CTX_free(ctx);
    return NULL;
}
