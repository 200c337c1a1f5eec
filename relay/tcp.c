/* tcp.c: the TCP and TLS transport: listeners, connections (accept, TLS, idle expiry in LRU
 * order), reading into a per-connection buffer, STUN/ChannelData stream framing (RFC 8656
 * 12.5) and queued writes. It moves bytes; fwd.c takes the frames (tcp.h).
 *
 * What may come before STUN on a connection (the "prelude", docs/datapath.md 9): on a
 * proxy_protocol listener a PROXY v1/v2 header (proxyproto.h), whose client address then
 * replaces the socket's peer before the per-IP limit is counted; on a tcp+tls listener the
 * first byte, which says TLS (0x16) or plain. Both are read without taking a byte beyond them
 * (MSG_PEEK, then exactly the header), so what follows stays in the socket for OpenSSL or the
 * framer, and both run inside the first-message deadline. ALPN: tls_context. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "addr.h"
#include "dtls.h"
#include "proxyproto.h"
#include "iptable.h"
#include "tcp.h"
#include "wire.h"
#include "worker.h"

#define TCP_MAX_CONNS  16384 /* per worker */
#define TCP_RX_INITIAL 2048
#define TCP_RX_MAX     (20 + 65535) /* the largest STUN frame; ChannelData is smaller */
#define TCP_TX_MAX     (256 * 1024) /* unsent answers beyond this: the client is not reading */
#define TCP_IDLE_MS    (300 * 1000) /* no allocation keeps a connection yet: idle ones go */
/* What a client gets before it proves itself (README "TCP and TLS limits"): */
#define TCP_FIRST_MS     (10 * 1000)    /* from accept: TLS handshake and a first STUN message */
#define TCP_RX_UNPROVEN  TCP_RX_INITIAL /* the largest message before an allocation exists */
#define TCP_PER_IP_MAX   64             /* connections from one IP address, per worker */
#define TCP_IP_SLOTS     (2 * TCP_MAX_CONNS) /* the per-IP table: a power of two, never full */
#define TCP_PAUSE_MS     250         /* out of file descriptors: accepting resumes after this */
#define TCP_LOG_EVERY_MS (60 * 1000) /* refusals by limit: one warning a minute at most */

/* A worker's TCP bookkeeping, made on its first accept. */
struct tcp_state {
    struct tcp_conn *new_head, *new_tail; /* not yet proven, oldest first: deadline order */
    uint64_t resume_ms;                   /* a listener is paused until then; 0: none */
    uint64_t paused_ms;                   /* the last pause */
    uint64_t per_ip_logged_ms, conn_limit_logged_ms;
    struct ip_slot ips[TCP_IP_SLOTS]; /* linear probing with backward-shift deletion */
};

/* What is still expected before STUN (tcp_conn.prelude). */
enum { PRE_NONE, PRE_PROXY, PRE_DEMUX };

struct tcp_conn {
    struct ep_handler h;
    struct tcp_conn *prev, *next;   /* LRU list */
    struct tcp_conn *nprev, *nnext; /* the list of unproven connections, while fresh */
    bool fresh;                     /* no complete STUN message yet: the deadline applies */
    bool authed;                    /* an allocation exists (or did): large messages allowed */
    uint64_t born_ms;
    uint64_t ipkey; /* the per-IP slot held; 0: none yet (a PROXY header is awaited) */
    struct listener *l;
    uint8_t prelude;        /* PRE_*: the PROXY header, then the first byte (tcp+tls) */
    union stun_addr peer;   /* the client: the socket's peer, or what the PROXY header said */
    union stun_addr via;    /* the socket's peer (the proxy on a proxy_protocol listener) */
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
    /* RFC 6062: a client data connection, bound (ConnectionBind) to this peer connection: raw
     * bytes both ways (tcprelay.c); rx_paused: the peer is not taking them fast enough. */
    struct srv_tconn *tconn;
    bool rx_paused;
    bool rx_eof; /* a plain data connection's client sent FIN (not read again) */
    bool quiet;  /* out of epoll: both directions done, waiting for the other side (tcprelay) */
    struct tcp_conn *handoff_next; /* in another worker's hand-off inbox (tcp_handoff) */
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

static void fresh_unlink(struct tcp_state *t, struct tcp_conn *c)
{
    if (!c->fresh) return;
    if (c->nprev)
        c->nprev->nnext = c->nnext;
    else
        t->new_head = c->nnext;
    if (c->nnext)
        c->nnext->nprev = c->nprev;
    else
        t->new_tail = c->nprev;
    c->nprev = c->nnext = NULL;
    c->fresh = false;
}

static void fresh_push(struct tcp_state *t, struct tcp_conn *c)
{
    c->nprev = t->new_tail;
    c->nnext = NULL;
    if (t->new_tail)
        t->new_tail->nnext = c;
    else
        t->new_head = c;
    t->new_tail = c;
    c->fresh = true;
}

static void conn_close(struct worker *w, struct tcp_conn *c, enum relay_counter why)
{
    if (c->h.fd < 0) return;
    if (c->tconn) { /* a data connection: its peer connection ends with it */
        struct srv_tconn *tc = c->tconn;
        c->tconn = NULL;
        tc->data_io = NULL;
        srv_tconn_end(&w->srv, tc);
    }
    if (why != RELAY_C_tcp_closed) w->io.v[why]++;
    w->io.v[RELAY_C_tcp_closed]++;
    tlog(CFG_LOG_DEBUG, "tcp_close", LF_A("client", &c->peer),
         LF_S("reason", relay_counter_names[why]));
    /* RFC 8656 3.1: an allocation over TCP/TLS lives as long as its connection. */
    struct allocation *a = alloc_find(&w->srv.allocs, &c->tuple);
    if (a && a->client_io == c) srv_delete(&w->srv, a, "closed");
    lru_unlink(w, c);
    fresh_unlink(w->tcp, c);
    if (c->ipkey) ip_release(w->tcp->ips, TCP_IP_SLOTS, c->ipkey);
    fd_give(w->shared);
    w->nconns--;
    SSL_free(c->ssl); /* no close_notify: the peer is gone or misbehaved */
    c->ssl = NULL;
    free(c->rx);
    free(c->tx);
    c->rx = c->tx = NULL;
    worker_bury(w, &c->h, c); /* closes the fd, which also removes it from epoll */
}

/* The epoll mask: reading unless paused (RFC 6062 backpressure) or at its end (a FIN on a
 * data connection), writing while queued. */
static void arm(struct worker *w, struct tcp_conn *c)
{
    if (c->quiet) return;
    struct epoll_event ev = {.events = (c->rx_paused || c->rx_eof ? 0 : EPOLLIN | EPOLLRDHUP) |
                                       (c->want_out ? EPOLLOUT : 0),
                             .data.ptr = &c->h};
    epoll_ctl(w->epfd, EPOLL_CTL_MOD, c->h.fd, &ev);
}

static void set_out(struct worker *w, struct tcp_conn *c, bool on)
{
    if (c->want_out == on) return;
    c->want_out = on;
    arm(w, c);
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
        if (k == 0 && c->tconn) { /* RFC 6062 half-close: the client's FIN (tcprelay.c) */
            c->rx_eof = true;
            arm(w, c); /* level-triggered: a FIN would wake the loop until it is out of the mask */
            return 0;
        }
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

/* stun_frame_length, and what this connection may send: STUN with the magic cookie (RFC 8489
 * 5; zeros and other garbage close at once), ChannelData only once an allocation exists, and
 * nothing larger than TCP_RX_UNPROVEN before then. The first complete STUN message lifts the
 * first-message deadline. > 0 the frame's length, 0 more bytes needed, -1 close for *why. */
static int frame_length(struct worker *w, struct tcp_conn *c, const uint8_t *p, size_t avail,
                        enum relay_counter *why)
{
    int flen = stun_frame_length(p, avail);
    *why = RELAY_C_tcp_bad_frame;
    if (flen <= 0) return flen < 0 ? -1 : 0;
    bool stun = (p[0] & 0xC0) == 0;
    if (stun && avail < 8) return 0;
    if (stun && rd32(p + 4) != STUN_MAGIC_COOKIE) return -1;
    if (!c->authed && alloc_find(&w->srv.allocs, &c->tuple)) c->authed = true;
    if (!c->authed) {
        if (!stun) return -1;
        if ((size_t)flen > TCP_RX_UNPROVEN) {
            *why = RELAY_C_tcp_rx_oversize;
            return -1;
        }
    }
    if (stun && (size_t)flen <= avail) fresh_unlink(w->tcp, c);
    return flen;
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

static int prelude(struct worker *w, struct tcp_conn *c);

int tcp_read(struct worker *w, struct tcp_conn *c)
{
    if (c->prelude != PRE_NONE) {
        int r = prelude(w, c);
        if (r <= 0) return r;
    }
    if (c->rxlen == c->rxcap) {
        /* A whole frame always fits (frame_length refuses larger): frames go first. */
        if (c->rxcap >= (c->authed ? TCP_RX_MAX : TCP_RX_UNPROVEN)) return 0;
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
    enum relay_counter why;
    int flen = frame_length(w, c, c->rx + c->rxoff, c->rxlen - c->rxoff, &why);
    if (flen < 0) {
        conn_close(w, c, why);
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

/* ---- the file-descriptor budget ---- */

void fd_budget_init(struct relay_shared *sh)
{
    struct rlimit rl;
    long max = 1024;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        max = rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > (rlim_t)(1L << 30) ? 1L << 30
                                                                               : (long)rl.rlim_cur;
    long open = 0;
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)))
            open += e->d_name[0] != '.';
        open--; /* the directory's own */
        closedir(d);
    }
    sh->fd_max = max;
    atomic_store(&sh->fds, open > 0 ? open : 3);
    tlog(CFG_LOG_INFO, "fd_budget", LF_U("limit", (uint64_t)max), LF_U("open", (uint64_t)open),
         LF_U("relay_reserve", (uint64_t)fd_spare_relay(sh)),
         LF_U("accept_reserve", (uint64_t)(16 + max / 128)));
}

bool fd_take(struct relay_shared *sh, long spare)
{
    long n = atomic_fetch_add(&sh->fds, 1) + 1;
    if (!sh->fd_max || n <= sh->fd_max - spare) return true; /* fd_max 0: not started */
    atomic_fetch_sub(&sh->fds, 1);
    return false;
}

void fd_give(struct relay_shared *sh)
{
    atomic_fetch_sub(&sh->fds, 1);
}

long fd_room(const struct relay_shared *sh)
{
    return sh->fd_max - atomic_load(&sh->fds);
}

long fd_spare_relay(const struct relay_shared *sh)
{
    return 32 + sh->fd_max / 32;
}

/* What accepts leave free: the database, the ops API, logs. Smaller than the relay reserve, so
 * allocations stop first and connections that have one still get their answers. */
static long fd_spare_accept(const struct relay_shared *sh)
{
    return 16 + sh->fd_max / 128;
}

/* ---- accepting ---- */

static struct tcp_state *tcp_state(struct worker *w)
{
    if (!w->tcp) w->tcp = calloc(1, sizeof(*w->tcp));
    return w->tcp;
}

/* Out of file descriptors (the budget or accept4's EMFILE/ENFILE): a level-triggered listener
 * would wake the loop at once, forever. Take it out of epoll for TCP_PAUSE_MS (nginx does the
 * same); waiting connections stay queued in the kernel until tcp_expire puts it back. */
static void accept_pause(struct worker *w, struct tcp_state *t, struct listener *l, int err)
{
    struct epoll_event ev = {.events = 0, .data.ptr = &l->h};
    epoll_ctl(w->epfd, EPOLL_CTL_MOD, l->h.fd, &ev);
    l->accept_paused = true;
    t->resume_ms = t->paused_ms = w->now_ms + TCP_PAUSE_MS;
    w->io.v[RELAY_C_tcp_rejected_fd_limit]++;
    if (!atomic_exchange(&w->shared->fd_short_accept, true))
        tlog(CFG_LOG_WARN, "tcp_fd_limit", LF_U("worker", w->id),
             LF_U("open_fds", (uint64_t)atomic_load(&w->shared->fds)),
             LF_U("limit", (uint64_t)w->shared->fd_max),
             LF_S("error", err ? strerror(err) : "reserve reached"),
             LF_U("pause_ms", TCP_PAUSE_MS));
}

/* Paused listeners back into epoll when due; the episode ends once there is room again. */
static void accept_resume(struct worker *w, struct tcp_state *t)
{
    if (t->resume_ms && w->now_ms >= t->resume_ms) {
        t->resume_ms = 0;
        for (size_t i = 0; i < w->nlisteners; i++) {
            struct listener *l = w->listeners[i];
            if (!l->accept_paused || l->h.fd < 0) continue;
            struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &l->h};
            epoll_ctl(w->epfd, EPOLL_CTL_MOD, l->h.fd, &ev);
            l->accept_paused = false;
        }
    }
    struct relay_shared *sh = w->shared;
    if (!t->resume_ms && w->now_ms > t->paused_ms + 1000 && atomic_load(&sh->fd_short_accept) &&
        fd_room(sh) > 2 * fd_spare_accept(sh) && atomic_exchange(&sh->fd_short_accept, false))
        tlog(CFG_LOG_WARN, "tcp_fd_limit_ended", LF_U("worker", w->id),
             LF_U("open_fds", (uint64_t)atomic_load(&sh->fds)),
             LF_U("limit", (uint64_t)sh->fd_max));
}

bool tcp_uses_listener(const struct worker *w, const struct listener *l)
{
    for (const struct tcp_conn *c = w->lru_head; c; c = c->next)
        if (c->l == l) return true;
    return false;
}

int tcp_timeout(struct worker *w, int timeout)
{
    if (!w->tcp || !w->tcp->resume_ms) return timeout;
    uint64_t due = w->tcp->resume_ms > w->now_ms ? w->tcp->resume_ms - w->now_ms : 0;
    return due < (uint64_t)timeout ? (int)due : timeout;
}

/* A connection refused right after accept: closed, counted by reason and in tcp_rejected. */
static void reject(struct worker *w, int fd, enum relay_counter why)
{
    close(fd);
    fd_give(w->shared);
    w->io.v[why]++;
    w->io.v[RELAY_C_tcp_rejected]++;
}

/* A warning for refusals by a limit: the first, then at most one per TCP_LOG_EVERY_MS. */
static void reject_log(struct worker *w, uint64_t *last_ms, const char *event,
                       const union stun_addr *client, unsigned limit)
{
    if (*last_ms && w->now_ms - *last_ms < TCP_LOG_EVERY_MS) return;
    *last_ms = w->now_ms ? w->now_ms : 1;
    tlog(CFG_LOG_WARN, event, LF_A("client", client), LF_U("limit", limit), LF_U("worker", w->id),
         LF_U("refused_total", w->io.v[RELAY_C_tcp_rejected]));
}

/* ---- the prelude: the PROXY header, the first byte ---- */

/* The connection speaks TLS from here: its SSL, in server mode, counting into this worker. */
static bool conn_tls(struct worker *w, struct tcp_conn *c)
{
    c->ssl = SSL_new(c->l->tls);
    if (!c->ssl || !SSL_set_fd(c->ssl, c->h.fd)) {
        SSL_free(c->ssl);
        c->ssl = NULL;
        ERR_clear_error();
        return false;
    }
    SSL_set_accept_state(c->ssl);
    SSL_set_app_data(c->ssl, &w->io); /* alpn_select counts here */
    return true;
}

/* recv without blocking, retried on EINTR. */
static ssize_t recv_nb(int fd, void *p, size_t len, int flags)
{
    ssize_t k;
    do
        k = recv(fd, p, len, flags | MSG_DONTWAIT);
    while (k < 0 && errno == EINTR);
    return k;
}

/* A complete header: its client address becomes the connection's (what the server, the nonce,
 * the logs, QoS and the ops API see), and only then is the per-IP limit counted, for that
 * address. v2 LOCAL and v1 UNKNOWN keep the socket's own. false: closed (c is gone). */
static bool proxy_apply(struct worker *w, struct tcp_conn *c, const struct proxy_result *pr)
{
    struct tcp_state *t = w->tcp;
    w->io.v[RELAY_C_proxy_accepted]++;
    if (pr->local) {
        w->io.v[RELAY_C_proxy_local]++;
    } else {
        c->peer = pr->src;
        c->tuple.client = pr->src;
    }
    tlog(CFG_LOG_DEBUG, "proxy_header", LF_A("client", &c->peer), LF_A("proxy", &c->via),
         LF_A("destination", pr->local ? &c->tuple.local : &pr->dst), LF_U("version", pr->version),
         LF_S("command", pr->local ? "local" : "proxy"));
    /* The 5-tuple keys the allocation table: a second connection naming a client that has an
     * allocation here would reach that allocation. */
    if (alloc_find(&w->srv.allocs, &c->tuple)) {
        tlog(CFG_LOG_WARN, "proxy_duplicate", LF_A("client", &c->peer), LF_A("proxy", &c->via));
        conn_close(w, c, RELAY_C_proxy_duplicate);
        return false;
    }
    uint64_t ipkey = ip_key(&c->peer);
    struct ip_slot *slot = ip_find(t->ips, TCP_IP_SLOTS, ipkey);
    if (slot->n >= TCP_PER_IP_MAX) {
        union stun_addr client = c->peer;
        conn_close(w, c, RELAY_C_proxy_rejected_per_ip);
        reject_log(w, &t->per_ip_logged_ms, "tcp_per_ip_limit", &client, TCP_PER_IP_MAX);
        return false;
    }
    slot->key = ipkey;
    slot->n++;
    c->ipkey = ipkey;
    c->prelude = c->l->demux ? PRE_DEMUX : PRE_NONE;
    return true;
}

/* Read the PROXY header: peek at what has come, decode it with what was kept, then take
 * exactly the header's bytes (all of them while it is incomplete, so level-triggered epoll
 * does not wake again for the same bytes). 1 done, 0 more needed, -1 closed. */
static int proxy_header(struct worker *w, struct tcp_conn *c)
{
    ssize_t k = recv_nb(c->h.fd, c->rx + c->rxlen, c->rxcap - c->rxlen, MSG_PEEK);
    if (k == 0 || (k < 0 && errno != EAGAIN)) {
        conn_close(w, c, k == 0 ? RELAY_C_proxy_truncated : RELAY_C_tcp_closed);
        return -1;
    }
    if (k < 0) return 0;
    size_t have = c->rxlen + (size_t)k;
    struct proxy_result pr;
    proxy_decode(c->rx, have, &pr);
    const char *bad = pr.status == PROXY_INVALID ? proxy_reason_name(pr.reason) : NULL;
    /* The header must fit the unproven buffer (TCP_RX_UNPROVEN; v1 is 107 bytes at most). */
    if (pr.status == PROXY_NEED_MORE && (pr.need > c->rxcap || have >= c->rxcap)) bad = "too_long";
    if (pr.status == PROXY_DONE && pr.consumed <= c->rxlen) bad = "inconsistent"; /* never */
    if (bad) {
        tlog(CFG_LOG_DEBUG, "proxy_bad_header", LF_A("client", &c->peer), LF_S("reason", bad));
        conn_close(w, c, RELAY_C_proxy_bad_header);
        return -1;
    }
    size_t take = pr.status == PROXY_DONE ? pr.consumed - c->rxlen : (size_t)k;
    if (recv_nb(c->h.fd, c->rx + c->rxlen, take, 0) != (ssize_t)take) { /* peeked: cannot */
        conn_close(w, c, RELAY_C_tcp_closed);
        return -1;
    }
    w->io.v[RELAY_C_tcp_rx_bytes] += take;
    c->rxlen += take;
    if (pr.status == PROXY_NEED_MORE) return 0;
    c->rxlen = 0; /* the header is done with; the buffer is the framer's */
    return proxy_apply(w, c, &pr) ? 1 : -1;
}

/* tcp+tls: the first byte, peeked. 0x16 is a TLS handshake record (a ClientHello): TLS from
 * here. 0x00 and 0x01 start every STUN message a connection can begin with (the type's top
 * byte: methods below 0x80, any class), 0x40-0x7F ChannelData: plain, and the framer then
 * applies its usual rules (the magic cookie, ChannelData only once allocated; so HTTP, whose
 * letters fall in 0x40-0x7F, ends as tcp_bad_frame). Anything else (another TLS record type,
 * an SSLv2-style hello, binary garbage) closes the connection. */
static int demux(struct worker *w, struct tcp_conn *c)
{
    uint8_t b;
    ssize_t k = recv_nb(c->h.fd, &b, 1, MSG_PEEK);
    if (k == 0 || (k < 0 && errno != EAGAIN)) {
        conn_close(w, c, RELAY_C_tcp_closed);
        return -1;
    }
    if (k < 0) return 0;
    if (b == 0x16) {
        if (!conn_tls(w, c)) {
            conn_close(w, c, RELAY_C_tcp_closed);
            return -1;
        }
        c->tuple.transport = SRV_TLS;
        w->io.v[RELAY_C_demux_tls]++;
    } else if (b <= 0x01 || (b & 0xC0) == 0x40) {
        w->io.v[RELAY_C_demux_plain]++;
    } else {
        tlog(CFG_LOG_DEBUG, "demux_bad_first_byte", LF_A("client", &c->peer), LF_U("byte", b));
        conn_close(w, c, RELAY_C_demux_bad_first_byte);
        return -1;
    }
    c->prelude = PRE_NONE;
    return 1;
}

static int prelude(struct worker *w, struct tcp_conn *c)
{
    if (c->prelude == PRE_PROXY) {
        int r = proxy_header(w, c);
        if (r <= 0) return r;
    }
    if (c->prelude == PRE_DEMUX) return demux(w, c);
    return 1;
}

void tcp_acceptable(struct worker *w, struct ep_handler *h, uint32_t events)
{
    (void)events;
    struct listener *l = (struct listener *)h;
    struct tcp_state *t = tcp_state(w);
    for (;;) {
        if (t && !fd_take(w->shared, fd_spare_accept(w->shared))) {
            accept_pause(w, t, l, 0);
            return;
        }
        struct sockaddr_in6 ss;
        socklen_t sl = sizeof(ss);
        int fd = accept4(h->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            int err = errno;
            if (t) fd_give(w->shared);
            if (t && (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM))
                accept_pause(w, t, l, err);
            if (err == ECONNABORTED || err == EINTR) continue;
            return; /* EAGAIN: the queue is empty */
        }
        if (!t) {
            close(fd);
            w->io.v[RELAY_C_tcp_rejected_nomem]++;
            w->io.v[RELAY_C_tcp_rejected]++;
            continue;
        }
        union stun_addr peer;
        addr_from_sockaddr(&peer, (struct sockaddr *)&ss, sl);
        if (w->nconns >= TCP_MAX_CONNS) {
            reject(w, fd, RELAY_C_tcp_rejected_conn_limit);
            reject_log(w, &t->conn_limit_logged_ms, "tcp_conn_limit", &peer, TCP_MAX_CONNS);
            continue;
        }
        /* Behind a proxy every connection comes from the proxy: the per-IP limit waits for the
         * client address in the PROXY header (proxy_apply). */
        uint64_t ipkey = l->proxy_protocol ? 0 : ip_key(&peer);
        struct ip_slot *slot = ipkey ? ip_find(t->ips, TCP_IP_SLOTS, ipkey) : NULL;
        if (slot && slot->n >= TCP_PER_IP_MAX) {
            reject(w, fd, RELAY_C_tcp_rejected_per_ip);
            reject_log(w, &t->per_ip_logged_ms, "tcp_per_ip_limit", &peer, TCP_PER_IP_MAX);
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
            reject(w, fd, RELAY_C_tcp_rejected_nomem);
            continue;
        }
        c->h = (struct ep_handler){.fd = fd, .fn = l->conn_fn};
        c->l = l;
        if (l->tls && !l->demux && !conn_tls(w, c)) {
            free(c);
            free(rx);
            reject(w, fd, RELAY_C_tcp_rejected_nomem);
            continue;
        }
        c->prelude = l->proxy_protocol ? PRE_PROXY : l->demux ? PRE_DEMUX : PRE_NONE;
        c->rx = rx;
        c->rxcap = TCP_RX_INITIAL;
        c->last_ms = c->born_ms = w->now_ms;
        c->peer = c->via = peer;
        c->tuple.transport = c->ssl ? SRV_TLS : SRV_TCP;
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
            reject(w, fd, RELAY_C_tcp_rejected_nomem);
            continue;
        }
        if (slot) {
            slot->key = ipkey;
            slot->n++;
            c->ipkey = ipkey;
        }
        fresh_push(t, c);
        lru_push(w, c);
        w->nconns++;
        w->io.v[RELAY_C_tcp_accepted]++;
        /* Behind a proxy the socket's peer is the proxy; the client comes with the header
         * (the proxy_header event). */
        tlog(CFG_LOG_DEBUG, "tcp_accept", LF_A(l->proxy_protocol ? "proxy" : "client", &c->peer),
             LF_U("worker", w->id));
    }
}

bool tcp_send_client(struct worker *w, struct tcp_conn *c, const uint8_t *msg, size_t len)
{
    return c->h.fd >= 0 && queue(w, c, msg, len);
}

/* ---- RFC 6062 with several workers: a data connection handed to the allocation's worker ---- */

void tcp_handoff(struct worker *w, struct tcp_conn *c, size_t keep, struct worker *to)
{
    /* The last frame handed out goes back into the buffer: the owner reads it again. */
    c->rxoff -= keep;
    tcp_frames_done(c);
    epoll_ctl(w->epfd, EPOLL_CTL_DEL, c->h.fd, NULL);
    lru_unlink(w, c);
    fresh_unlink(w->tcp, c);
    if (c->ipkey) ip_release(w->tcp->ips, TCP_IP_SLOTS, c->ipkey);
    w->nconns--;
    c->l = NULL; /* this worker's listener: the prelude is over, nothing reads it again */
    w->io.v[RELAY_C_tcp_handoff_out]++;
    tlog(CFG_LOG_DEBUG, "tcp_handoff", LF_A("client", &c->peer), LF_U("worker", w->id),
         LF_U("to", to->id));
    /* A lock-free stack (many workers push, the owner takes all at once: no ABA). */
    struct tcp_conn *head = atomic_load_explicit(&to->handoff_head, memory_order_relaxed);
    do
        c->handoff_next = head;
    while (!atomic_compare_exchange_weak_explicit(&to->handoff_head, &head, c, memory_order_release,
                                                  memory_order_relaxed));
    uint64_t one = 1;
    if (write(to->handoff.fd, &one, sizeof(one)) != sizeof(one))
        w->io.v[RELAY_C_tcp_handoff_signal_failed]++;
}

static struct tcp_conn *handoff_take_all(struct worker *w)
{
    struct tcp_conn *c = atomic_exchange_explicit(&w->handoff_head, NULL, memory_order_acquire),
                    *fifo = NULL;
    while (c) { /* in the order they were handed over */
        struct tcp_conn *next = c->handoff_next;
        c->handoff_next = fifo;
        fifo = c;
        c = next;
    }
    return fifo;
}

/* Not yet in any worker's lists: close and free. */
static void handoff_drop(struct worker *w, struct tcp_conn *c)
{
    close(c->h.fd);
    fd_give(w->shared);
    SSL_free(c->ssl);
    free(c->rx);
    free(c->tx);
    free(c);
}

void tcp_handoff_event(struct worker *w, struct ep_handler *h, uint32_t events)
{
    (void)events;
    uint64_t n;
    if (read(h->fd, &n, sizeof(n)) < 0 && errno != EAGAIN) return;
    struct tcp_state *t = tcp_state(w);
    struct tcp_conn *c = handoff_take_all(w), *next;
    for (; c; c = next) {
        next = c->handoff_next;
        c->handoff_next = NULL;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | (c->want_out ? EPOLLOUT : 0),
                                 .data.ptr = &c->h};
        if (!t || epoll_ctl(w->epfd, EPOLL_CTL_ADD, c->h.fd, &ev)) {
            w->io.v[RELAY_C_tcp_handoff_failed]++;
            handoff_drop(w, c);
            continue;
        }
        /* Counted against this worker's per-IP count (it may go over by the hand-overs: the
         * connection exists already, refusing it here would not give anything back). */
        if (c->ipkey) {
            struct ip_slot *slot = ip_find(t->ips, TCP_IP_SLOTS, c->ipkey);
            slot->key = c->ipkey;
            slot->n++;
        }
        c->last_ms = w->now_ms;
        lru_push(w, c);
        w->nconns++;
        w->io.v[RELAY_C_tcp_handoff_in]++;
        /* The ConnectionBind waits in the buffer: the connection's handler takes it first. */
        c->h.fn(w, &c->h, EPOLLIN | TCP_EV_ADOPTED);
    }
}

void tcp_handoff_close_all(struct worker *w)
{
    struct tcp_conn *c = handoff_take_all(w), *next;
    for (; c; c = next) {
        next = c->handoff_next;
        w->io.v[RELAY_C_tcp_handoff_failed]++;
        handoff_drop(w, c);
    }
}

/* ---- RFC 6062 data connections (tcprelay.c) ---- */

void tcp_set_tconn(struct tcp_conn *c, struct srv_tconn *tc)
{
    c->tconn = tc;
    c->authed = true; /* the receive buffer may grow to its largest */
}

struct srv_tconn *tcp_tconn(const struct tcp_conn *c)
{
    return c->tconn;
}

void tcp_close(struct worker *w, struct tcp_conn *c)
{
    c->tconn = NULL; /* the caller is ending the peer connection itself */
    conn_close(w, c, RELAY_C_tcp_closed);
}

bool tcp_rx_eof(const struct tcp_conn *c)
{
    return c->rx_eof;
}

bool tcp_shutdown_wr(struct worker *w, struct tcp_conn *c)
{
    if (c->ssl || c->h.fd < 0 || shutdown(c->h.fd, SHUT_WR)) return false;
    arm(w, c);
    return true;
}

void tcp_quiet(struct worker *w, struct tcp_conn *c)
{
    if (c->quiet || c->h.fd < 0) return;
    epoll_ctl(w->epfd, EPOLL_CTL_DEL, c->h.fd, NULL);
    c->quiet = true;
}

int tcp_fd(const struct tcp_conn *c)
{
    return c->h.fd;
}

size_t tcp_tx_queued(const struct tcp_conn *c)
{
    return c->txlen;
}

void tcp_pause_rx(struct worker *w, struct tcp_conn *c, bool paused)
{
    if (c->rx_paused == paused || c->h.fd < 0) return;
    c->rx_paused = paused;
    arm(w, c);
}

bool tcp_queue_later(struct worker *w, struct tcp_conn *c, const uint8_t *msg, size_t len)
{
    if (c->h.fd < 0 || c->txlen + len > TCP_TX_MAX) return false;
    if (c->txlen + len > c->txcap) {
        size_t cap = c->txcap ? c->txcap : 4096;
        while (cap < c->txlen + len)
            cap *= 2;
        uint8_t *p = realloc(c->tx, cap);
        if (!p) return false;
        c->tx = p;
        c->txcap = cap;
    }
    memcpy(c->tx + c->txlen, msg, len);
    c->txlen += len;
    set_out(w, c, true);
    return true;
}

size_t tcp_rx_raw(const struct tcp_conn *c, const uint8_t **p)
{
    *p = c->rx + c->rxoff;
    return c->rxlen - c->rxoff;
}

void tcp_rx_drop(struct tcp_conn *c, size_t n)
{
    c->rxoff += n;
    tcp_frames_done(c);
}

void tcp_expire(struct worker *w)
{
    struct tcp_state *t = w->tcp;
    if (!t) return;
    accept_resume(w, t);
    /* Unproven connections in accept order, so in deadline order: a stalled TLS handshake or
     * a client that never sends a whole STUN message holds its buffers TCP_FIRST_MS at most. */
    struct tcp_conn *f;
    while ((f = t->new_head) && w->now_ms - f->born_ms > TCP_FIRST_MS)
        conn_close(w, f,
                   f->prelude == PRE_PROXY ? RELAY_C_proxy_timeout
                   : f->ssl && !f->ssl_up  ? RELAY_C_tls_handshake_timeout
                                           : RELAY_C_tcp_first_message_timeout);
    /* A connection with an allocation is not idle while the allocation lives: the client
     * refreshes it, and the allocation's own expiry closes it. */
    struct tcp_conn *c;
    while ((c = w->lru_head) && w->now_ms - c->last_ms > TCP_IDLE_MS) {
        if (c->tconn || alloc_find(&w->srv.allocs, &c->tuple)) {
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
    free(w->tcp);
    w->tcp = NULL;
}

/* ALPN (RFC 7301) on TLS, tcp+tls and dtls listeners: "stun.turn" (RFC 7443) when the client offers
 * it. A client that offers no ALPN never gets here and is served as before (most TURN clients
 * send none). A client that offers only other protocols (h2, http/1.1: a browser or scanner
 * on port 443) gets the fatal no_application_protocol alert RFC 7301 3.2 prescribes ("SHALL")
 * rather than a TURN server it did not ask for; that it would fail anyway one request later
 * makes leniency buy nothing. Counted as tls_alpn_refused (and tls_handshake_failed). */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    static const char want[] = "stun.turn";
    struct relay_counters *io = SSL_get_app_data(ssl);
    (void)arg;
    for (unsigned i = 0; i < inlen; i += 1u + in[i]) {
        if (in[i] == sizeof(want) - 1 && i + 1u + in[i] <= inlen &&
            memcmp(in + i + 1, want, sizeof(want) - 1) == 0) {
            *out = in + i + 1;
            *outlen = in[i];
            if (io) io->v[RELAY_C_tls_alpn_stun_turn]++;
            return SSL_TLSEXT_ERR_OK;
        }
    }
    if (io) io->v[RELAY_C_tls_alpn_refused]++;
    return SSL_TLSEXT_ERR_ALERT_FATAL; /* OpenSSL sends no_application_protocol */
}

struct ssl_ctx_st *tls_context(const struct tern_config *cfg, FILE *err, bool dtls)
{
    SSL_CTX *ctx = SSL_CTX_new(dtls ? DTLS_server_method() : TLS_server_method());
    const char *step = "SSL_CTX_new", *file = "-";
    if (!ctx) goto fail;
    if (dtls) {
        step = "DTLS 1.2 and cookies";
        if (dtls_ctx_setup(ctx)) goto fail;
    } else {
        step = "minimum version TLS 1.2";
        if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION)) goto fail;
        /* Queued answers move when the buffer grows; partial writes keep the loop
         * non-blocking. */
        SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                  SSL_MODE_RELEASE_BUFFERS);
    }
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL); /* TLS and DTLS alike (RFC 7443) */
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
    if (err) {
        const char *key =
            strncmp(step, "tls.", 4) == 0 && !strchr(step, ' ') ? step : "tls.private_key";
        unsigned line = cfg_key_line(cfg, key);
        fprintf(err, "%s:%u: %s: %s: %s (%s)\n", cfg->name ? cfg->name : "(config)",
                line ? line : 1, key, file ? file : "-", why, step);
    }
    SSL_CTX_free(ctx);
    return NULL;
}
