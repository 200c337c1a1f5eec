/* tcp.c: TCP listeners and connections: STUN/ChannelData stream framing (RFC 8656 12.5). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "net.h"
#include "worker.h"

#define TCP_MAX_CONNS  16384          /* per worker */
#define TCP_RX_INITIAL 2048
#define TCP_RX_MAX     (20 + 65535)   /* the largest STUN frame; ChannelData is smaller */
#define TCP_TX_MAX     (256 * 1024)   /* unsent answers beyond this: the client is not reading */
#define TCP_IDLE_MS    (300 * 1000)   /* no allocation keeps a connection yet: idle ones go */

struct tcp_conn {
    struct ep_handler h;
    struct tcp_conn *prev, *next; /* LRU list */
    struct listener *l;
    union stun_addr peer;
    uint64_t last_ms;
    bool want_out;
    uint8_t *rx;
    size_t rxlen, rxcap;
    uint8_t *tx;
    size_t txlen, txcap;
};

static void lru_unlink(struct worker *w, struct tcp_conn *c)
{
    if (c->prev) c->prev->next = c->next; else w->lru_head = c->next;
    if (c->next) c->next->prev = c->prev; else w->lru_tail = c->prev;
    c->prev = c->next = NULL;
}

static void lru_push(struct worker *w, struct tcp_conn *c)
{
    c->prev = w->lru_tail;
    c->next = NULL;
    if (w->lru_tail) w->lru_tail->next = c; else w->lru_head = c;
    w->lru_tail = c;
}

static void conn_close(struct worker *w, struct tcp_conn *c, enum relay_counter why)
{
    if (why != RELAY_C_tcp_closed) w->io.v[why]++;
    w->io.v[RELAY_C_tcp_closed]++;
    tlog(CFG_LOG_DEBUG, "tcp_close", LF_A("client", &c->peer), LF_S("reason", relay_counter_names[why]));
    lru_unlink(w, c);
    w->nconns--;
    close(c->h.fd); /* also removes it from epoll */
    free(c->rx);
    free(c->tx);
    free(c);
}

static void set_out(struct worker *w, struct tcp_conn *c, bool on)
{
    if (c->want_out == on) return;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | (on ? EPOLLOUT : 0), .data.ptr = &c->h};
    epoll_ctl(w->epfd, EPOLL_CTL_MOD, c->h.fd, &ev);
    c->want_out = on;
}

/* Write what is queued; returns false if the connection had to be closed. */
static bool flush(struct worker *w, struct tcp_conn *c)
{
    size_t off = 0;
    while (off < c->txlen) {
        ssize_t k = send(c->h.fd, c->tx + off, c->txlen - off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (k < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) break;
            conn_close(w, c, RELAY_C_tcp_closed);
            return false;
        }
        w->io.v[RELAY_C_tcp_tx_bytes] += (uint64_t)k;
        off += (size_t)k;
    }
    memmove(c->tx, c->tx + off, c->txlen - off);
    c->txlen -= off;
    set_out(w, c, c->txlen > 0);
    return true;
}

static bool queue(struct worker *w, struct tcp_conn *c, const uint8_t *data, size_t len)
{
    if (c->txlen + len > TCP_TX_MAX) {
        conn_close(w, c, RELAY_C_tcp_tx_overflow);
        return false;
    }
    if (c->txlen + len > c->txcap) {
        size_t cap = c->txcap ? c->txcap : 4096;
        while (cap < c->txlen + len) cap *= 2;
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

/* Handle every complete frame in rx; returns false if the connection was closed. */
static bool frames(struct worker *w, struct tcp_conn *c)
{
    struct srv_tuple tuple = {.transport = SRV_TCP, .client = c->peer, .local = c->l->addr};
    size_t off = 0;
    bool ok = true;
    while (ok) {
        int flen = stun_frame_length(c->rx + off, c->rxlen - off);
        if (flen < 0) {
            conn_close(w, c, RELAY_C_tcp_bad_frame);
            return false;
        }
        if (flen == 0 || (size_t)flen > c->rxlen - off) break;
        uint8_t out[1280];
        size_t n = srv_handle(&w->opt, &tuple, c->rx + off, (size_t)flen, w->now_ms, out,
                              sizeof(out), &w->srv);
        off += (size_t)flen;
        if (n) ok = queue(w, c, out, n);
    }
    if (!ok) return false;
    memmove(c->rx, c->rx + off, c->rxlen - off);
    c->rxlen -= off;
    return true;
}

static void conn_event(struct worker *w, struct ep_handler *h, uint32_t events)
{
    struct tcp_conn *c = (struct tcp_conn *)h;
    c->last_ms = w->now_ms;
    lru_unlink(w, c);
    lru_push(w, c);
    if (events & EPOLLOUT && !flush(w, c)) return;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        for (;;) {
            if (c->rxlen == c->rxcap) {
                if (c->rxcap >= TCP_RX_MAX) break; /* a whole frame always fits: parse first */
                size_t cap = c->rxcap * 2 > TCP_RX_MAX ? TCP_RX_MAX : c->rxcap * 2;
                uint8_t *p = realloc(c->rx, cap);
                if (!p) break;
                c->rx = p;
                c->rxcap = cap;
            }
            ssize_t k = recv(c->h.fd, c->rx + c->rxlen, c->rxcap - c->rxlen, MSG_DONTWAIT);
            if (k == 0 || (k < 0 && errno != EAGAIN && errno != EINTR)) {
                conn_close(w, c, RELAY_C_tcp_closed);
                return;
            }
            if (k < 0) {
                if (errno == EINTR) continue;
                break;
            }
            w->io.v[RELAY_C_tcp_rx_bytes] += (uint64_t)k;
            c->rxlen += (size_t)k;
            if (!frames(w, c)) return;
        }
    }
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
        struct tcp_conn *c = calloc(1, sizeof(*c));
        uint8_t *rx = malloc(TCP_RX_INITIAL);
        if (!c || !rx) {
            free(c);
            free(rx);
            close(fd);
            w->io.v[RELAY_C_tcp_rejected]++;
            continue;
        }
        c->h = (struct ep_handler){.fd = fd, .fn = conn_event};
        c->l = l;
        c->rx = rx;
        c->rxcap = TCP_RX_INITIAL;
        c->last_ms = w->now_ms;
        addr_from_sockaddr(&c->peer, (struct sockaddr *)&ss, sl);
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = &c->h};
        if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
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

void tcp_expire(struct worker *w)
{
    while (w->lru_head && w->now_ms - w->lru_head->last_ms > TCP_IDLE_MS)
        conn_close(w, w->lru_head, RELAY_C_tcp_idle);
}

void tcp_close_all(struct worker *w)
{
    while (w->lru_head) conn_close(w, w->lru_head, RELAY_C_tcp_closed);
}
