/* tcprelay.c: RFC 6062 TCP allocations, the relay's side. The server core decides (server.c:
 * Connect, ConnectionBind, the peer policy on every connection); this file moves the bytes:
 *
 *   - the relayed TCP address: a listening socket bound at the allocation's relayed address
 *     (tcprelay_listen, from io_relay_open); a peer connecting there is accepted and handed to
 *     srv_peer_accept, which checks the permission, the policy and the limit (refused: closed
 *     at once) and sends the client a ConnectionAttempt;
 *   - Connect: a non-blocking connection to the peer from the relayed address (bound to it:
 *     SO_REUSEADDR and SO_REUSEPORT on both sockets, the port being the allocation's own from
 *     the pool), reported with srv_connect_result when it is made or fails;
 *   - the splice, once the client's data connection is bound (ConnectionBind): bytes read from
 *     one side are written to the other. Each direction holds at most TR_BUF bytes in user
 *     space: what the peer does not take waits in the peer side's buffer, and the data
 *     connection is not read while it is full; what the client does not take waits in the data
 *     connection's write queue, and the peer is not read while it holds TR_BUF. So a slow
 *     reader slows its writer (TCP's own flow control, end to end) and memory stays bounded.
 *     Either side closing (or failing) ends both (srv_tconn_end).
 * Peer sockets are not read while the connection waits for its ConnectionBind (no epoll
 * interest but errors): the 30-s deadline of the server closes it if none comes. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "addr.h"
#include "log.h"
#include "tcp.h"
#include "tcprelay.h"
#include "worker.h"

#define TR_BUF     (64 * 1024) /* bytes held per direction (see above) */
#define TR_BACKLOG 16          /* pending accepts per relayed address */

/* One direction of a bound flow, for the QoS view: a rate window (at least a second long,
 * moved on when bytes move and when it is read) and the time spent stalled, that is with a
 * full buffer towards a side that is not taking bytes (the other side is not read then). */
struct tr_dir {
    uint64_t win_ms, win_bytes;
    double rate_bps; /* over the last complete window */
    uint64_t stall_since_ms, stalled_ms;
    uint32_t stalls;
};

/* A peer connection: its socket, and the bytes read from the client waiting for it. */
struct tr_peer {
    struct ep_handler h;
    struct srv_tconn *tc;
    uint64_t bound_ms;
    struct tr_dir dir[TCPRELAY_DIRS];
    bool connecting; /* Connect: the non-blocking connect is under way */
    /* Half-close: the peer sent FIN (peer_eof) and it went on to the client once what was
     * queued for it was written (client_shut); the client sent FIN (tcp_rx_eof) and it went on
     * to the peer likewise (peer_shut). Both done: the flow ends. */
    bool peer_eof, client_shut, peer_shut;
    bool quiet;     /* out of epoll: FIN both ways on the peer socket (EPOLLHUP ignores the mask) */
    bool rd_paused; /* not read: the client's write queue is full */
    bool armed_out;
    uint32_t mask; /* the epoll interest now */
    uint8_t *buf;  /* TR_BUF, made when bound */
    size_t len;
};

static void peer_event(struct worker *w, struct ep_handler *h, uint32_t events);

static void dir_rate(struct tr_dir *d, uint64_t bytes, uint64_t now_ms)
{
    if (now_ms - d->win_ms < 1000) return;
    d->rate_bps = (double)(bytes - d->win_bytes) * 8000.0 / (double)(now_ms - d->win_ms);
    d->win_ms = now_ms;
    d->win_bytes = bytes;
}

static void stall_begin(struct tr_dir *d, uint64_t now_ms)
{
    if (d->stall_since_ms) return;
    d->stall_since_ms = now_ms ? now_ms : 1;
    d->stalls++;
}

static void stall_end(struct worker *w, struct tr_dir *d, int dir, uint64_t now_ms)
{
    if (!d->stall_since_ms) return;
    uint64_t ms = now_ms - d->stall_since_ms;
    d->stalled_ms += ms;
    w->tflow.stalled_ms[dir] += ms;
    d->stall_since_ms = 0;
}

static uint64_t stalled_ms(const struct tr_dir *d, uint64_t now_ms)
{
    return d->stalled_ms + (d->stall_since_ms ? now_ms - d->stall_since_ms : 0);
}

static void peer_arm(struct worker *w, struct tr_peer *p)
{
    if (p->quiet) return;
    uint32_t m = 0;
    if (p->connecting) {
        m = EPOLLOUT;
    } else if (p->tc && p->tc->state == SRV_TCONN_BOUND) {
        if (!p->rd_paused && !p->peer_eof) m |= EPOLLIN | EPOLLRDHUP;
        if (p->len) m |= EPOLLOUT;
    }
    if (m == p->mask) return;
    struct epoll_event ev = {.events = m, .data.ptr = &p->h};
    epoll_ctl(w->epfd, EPOLL_CTL_MOD, p->h.fd, &ev);
    p->mask = m;
}

static void peer_free(struct worker *w, struct tr_peer *p)
{
    if (p->buf) { /* a bound flow ends: its stalls and retransmissions go into the totals */
        for (int d = 0; d < TCPRELAY_DIRS; d++)
            stall_end(w, &p->dir[d], d, w->now_ms);
        struct tcp_info ti;
        socklen_t tl = sizeof(ti);
        if (p->h.fd >= 0 && !getsockopt(p->h.fd, IPPROTO_TCP, TCP_INFO, &ti, &tl))
            w->tflow.retrans[TCPRELAY_LEG_PEER] += ti.tcpi_total_retrans;
        w->tflow.ended++;
    }
    free(p->buf);
    p->buf = NULL;
    if (p->h.fd >= 0) fd_give(w->shared);
    worker_bury(w, &p->h, p);
}

/* A peer socket in the worker's loop, interest mask m. NULL (fd closed) on failure. */
static struct tr_peer *peer_new(struct worker *w, int fd, uint32_t m)
{
    struct tr_peer *p = calloc(1, sizeof(*p));
    if (!p) return NULL;
    p->h = (struct ep_handler){.fd = fd, .fn = peer_event};
    p->mask = m;
    struct epoll_event ev = {.events = m, .data.ptr = &p->h};
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev)) {
        free(p);
        return NULL;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return p;
}

static void reuse(int fd)
{
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
}

static void tr_acceptable(struct worker *w, struct ep_handler *h, uint32_t events);

int tcprelay_listen(struct worker *w, struct allocation *a, struct alloc_relay *r)
{
    int family = r->addr.sa.sa_family;
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int one = 1;
    if (family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    reuse(fd);
    if (bind(fd, &r->addr.sa, addr_len(&r->addr)) || listen(fd, TR_BACKLOG)) {
        int err = errno;
        close(fd);
        return -err;
    }
    struct relay_sock *rs = calloc(1, sizeof(*rs));
    if (!rs) {
        close(fd);
        return -ENOMEM;
    }
    *rs = (struct relay_sock){.h = {.fd = fd, .fn = tr_acceptable}, .a = a, .family = family};
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &rs->h};
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev)) {
        int err = errno;
        close(fd);
        free(rs);
        return -err;
    }
    r->io = rs;
    return 0;
}

/* A peer connects to a relayed TCP address: the server decides. */
static void tr_acceptable(struct worker *w, struct ep_handler *h, uint32_t events)
{
    (void)events;
    struct relay_sock *rs = (struct relay_sock *)h;
    for (int k = 0; k < TR_BACKLOG && h->fd >= 0; k++) {
        if (!fd_take(w->shared, fd_spare_relay(w->shared))) {
            w->io.v[RELAY_C_tcp_peer_fd_refused]++;
            int fd = accept4(h->fd, NULL, NULL, SOCK_CLOEXEC); /* refuse it, do not leave it */
            if (fd >= 0) close(fd);
            if (fd < 0) return;
            continue;
        }
        struct sockaddr_in6 ss;
        socklen_t sl = sizeof(ss);
        int fd = accept4(h->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            fd_give(w->shared);
            return;
        }
        union stun_addr from;
        addr_from_sockaddr(&from, (struct sockaddr *)&ss, sl);
        struct tr_peer *p = peer_new(w, fd, 0);
        struct srv_tconn *tc = p ? srv_peer_accept(&w->srv, rs->a, &from, p, w->now_ms) : NULL;
        if (!tc) {
            w->io.v[RELAY_C_tcp_peer_refused]++;
            tlog(CFG_LOG_DEBUG, "tcp_peer_refused", LF_U("allocation", rs->a->id),
                 LF_A("peer", &from));
            if (p)
                peer_free(w, p);
            else {
                close(fd);
                fd_give(w->shared);
            }
            continue;
        }
        p->tc = tc;
        w->io.v[RELAY_C_tcp_peer_accepted]++;
        tlog(CFG_LOG_INFO, "tcp_peer_connected", LF_U("allocation", rs->a->id), LF_A("peer", &from),
             LF_U("connection_id", tc->id));
    }
}

int tcprelay_connect(struct worker *w, struct allocation *a, struct srv_tconn *tc)
{
    const struct alloc_relay *r = NULL;
    for (unsigned i = 0; i < a->nrelay; i++)
        if (a->relay[i].addr.sa.sa_family == tc->peer.sa.sa_family) r = &a->relay[i];
    if (!r) return -EAFNOSUPPORT;
    if (!fd_take(w->shared, fd_spare_relay(w->shared))) {
        w->io.v[RELAY_C_tcp_peer_fd_refused]++;
        return -EMFILE;
    }
    int family = r->addr.sa.sa_family;
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int err = 0;
    if (fd < 0) {
        err = errno;
        fd_give(w->shared);
        return -err;
    }
    int one = 1;
    if (family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    reuse(fd);
    /* From the relayed address (RFC 6062 5.2): the peer sees the address the client gave it. */
    if (bind(fd, &r->addr.sa, addr_len(&r->addr)) ||
        (connect(fd, &tc->peer.sa, addr_len(&tc->peer)) && errno != EINPROGRESS))
        err = errno;
    struct tr_peer *p = err ? NULL : peer_new(w, fd, EPOLLOUT);
    if (!p) {
        if (!err) err = ENOMEM;
        close(fd);
        fd_give(w->shared);
        w->io.v[RELAY_C_tcp_peer_connect_failed]++;
        tlog(CFG_LOG_INFO, "tcp_connect_failed", LF_U("allocation", a->id), LF_A("peer", &tc->peer),
             LF_S("error", strerror(err)));
        return -err;
    }
    p->tc = tc;
    p->connecting = true;
    tc->peer_io = p;
    w->io.v[RELAY_C_tcp_peer_connects]++;
    return 0;
}

void tcprelay_close(struct worker *w, struct srv_tconn *tc)
{
    struct tr_peer *p = tc->peer_io;
    struct tcp_conn *d = tc->data_io;
    tc->peer_io = tc->data_io = NULL;
    if (p) {
        p->tc = NULL;
        peer_free(w, p);
    }
    if (d) {
        struct tcp_info ti;
        socklen_t tl = sizeof(ti);
        if (!getsockopt(tcp_fd(d), IPPROTO_TCP, TCP_INFO, &ti, &tl))
            w->tflow.retrans[TCPRELAY_LEG_CLIENT] += ti.tcpi_total_retrans;
        tcp_close(w, d);
    }
    tlog(CFG_LOG_DEBUG, "tcp_connection_ended", LF_U("allocation", tc->a->id),
         LF_A("peer", &tc->peer), LF_U("connection_id", tc->id),
         LF_U("bytes_to_peer", tc->bytes_to_peer), LF_U("bytes_to_client", tc->bytes_to_client));
}

void tcprelay_client_send(struct worker *w, struct allocation *a, const uint8_t *msg, size_t len)
{
    struct tcp_conn *c = a->client_io;
    if (!c || !tcp_queue_later(w, c, msg, len)) w->io.v[RELAY_C_tcp_control_dropped]++;
}

/* Half-close (docs/tcp-relay.md): pass on each side's FIN once the bytes before it are
 * written, and end the flow when both have gone. false: ended (p is gone). */
static bool half_close(struct worker *w, struct tr_peer *p)
{
    struct srv_tconn *tc = p->tc;
    struct tcp_conn *c = tc->data_io;
    if (p->peer_eof && !p->client_shut && !tcp_tx_queued(c)) {
        if (!tcp_shutdown_wr(w, c)) { /* TLS (or a failure): both end, as before */
            srv_tconn_end(&w->srv, tc);
            return false;
        }
        p->client_shut = true;
        w->io.v[RELAY_C_tcp_half_close_to_client]++;
    }
    if (tcp_rx_eof(c) && !p->peer_shut && !p->len) {
        if (shutdown(p->h.fd, SHUT_WR)) {
            srv_tconn_end(&w->srv, tc);
            return false;
        }
        p->peer_shut = true;
        w->io.v[RELAY_C_tcp_half_close_to_peer]++;
    }
    if (p->client_shut && p->peer_shut) {
        srv_tconn_end(&w->srv, tc);
        return false;
    }
    /* A socket done both ways waits for the other side's bytes to drain, out of epoll. */
    if (p->peer_eof && p->peer_shut && !p->quiet) {
        epoll_ctl(w->epfd, EPOLL_CTL_DEL, p->h.fd, NULL);
        p->quiet = true;
    }
    if (tcp_rx_eof(c) && p->client_shut) tcp_quiet(w, c);
    return true;
}

/* Write what waits for the peer. false: the peer connection failed (ended, p is gone). */
static bool peer_flush(struct worker *w, struct tr_peer *p)
{
    size_t off = 0;
    while (off < p->len) {
        ssize_t k = send(p->h.fd, p->buf + off, p->len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 && errno == EAGAIN) break;
        if (k <= 0) {
            srv_tconn_end(&w->srv, p->tc);
            return false;
        }
        off += (size_t)k;
        w->io.v[RELAY_C_tcp_peer_tx_bytes] += (uint64_t)k;
    }
    memmove(p->buf, p->buf + off, p->len - off);
    p->len -= off;
    return true;
}

/* Client -> peer: take what the data connection read, as far as the peer's buffer has room.
 * false: ended. */
static bool client_to_peer(struct worker *w, struct tcp_conn *c, struct tr_peer *p)
{
    struct srv_tconn *tc = p->tc;
    for (;;) {
        const uint8_t *in;
        size_t n = tcp_rx_raw(c, &in);
        if (n) {
            size_t room = TR_BUF - p->len, take = n < room ? n : room;
            memcpy(p->buf + p->len, in, take);
            p->len += take;
            tc->bytes_to_peer += take;
            tc->a->bytes_to_peer += take;
            tcp_rx_drop(c, take);
            if (!peer_flush(w, p)) return false;
        }
        if (p->len >= TR_BUF) { /* the peer is slow: stop reading the client */
            if (!tcp_tconn(c)) return false;
            w->io.v[RELAY_C_tcp_splice_paused]++;
            stall_begin(&p->dir[TCPRELAY_TO_PEER], w->now_ms);
            tcp_pause_rx(w, c, true);
            break;
        }
        stall_end(w, &p->dir[TCPRELAY_TO_PEER], TCPRELAY_TO_PEER, w->now_ms);
        tcp_pause_rx(w, c, false);
        if (tcp_rx_eof(c)) break;
        int r = tcp_read(w, c);
        if (r < 0) return false; /* closed: the connection ended (tcp.c) */
        if (r == 0) break;
    }
    dir_rate(&p->dir[TCPRELAY_TO_PEER], tc->bytes_to_peer, w->now_ms);
    if (!half_close(w, p)) return false;
    peer_arm(w, p);
    return true;
}

/* Peer -> client: read while the client's queue has room. false: ended. */
static bool peer_to_client(struct worker *w, struct tr_peer *p)
{
    struct srv_tconn *tc = p->tc;
    struct tcp_conn *c = tc->data_io;
    uint8_t buf[16384];
    for (;;) {
        size_t queued = tcp_tx_queued(c);
        if (queued >= TR_BUF) {
            if (!p->rd_paused) w->io.v[RELAY_C_tcp_splice_paused]++;
            p->rd_paused = true;
            stall_begin(&p->dir[TCPRELAY_TO_CLIENT], w->now_ms);
            break;
        }
        p->rd_paused = false;
        stall_end(w, &p->dir[TCPRELAY_TO_CLIENT], TCPRELAY_TO_CLIENT, w->now_ms);
        size_t want = TR_BUF - queued < sizeof(buf) ? TR_BUF - queued : sizeof(buf);
        if (p->peer_eof) break;
        ssize_t k = recv(p->h.fd, buf, want, MSG_DONTWAIT);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 && errno == EAGAIN) break;
        if (k == 0) { /* the peer's FIN: the client gets it after what is queued for it */
            p->peer_eof = true;
            break;
        }
        if (k < 0) {
            srv_tconn_end(&w->srv, tc);
            return false;
        }
        w->io.v[RELAY_C_tcp_peer_rx_bytes] += (uint64_t)k;
        tc->bytes_to_client += (uint64_t)k;
        tc->a->bytes_to_client += (uint64_t)k;
        if (!tcp_send_client(w, c, buf, (size_t)k)) return false; /* closed: ended with it */
    }
    dir_rate(&p->dir[TCPRELAY_TO_CLIENT], tc->bytes_to_client, w->now_ms);
    if (!half_close(w, p)) return false;
    peer_arm(w, p);
    return true;
}

static void peer_event(struct worker *w, struct ep_handler *h, uint32_t events)
{
    struct tr_peer *p = (struct tr_peer *)h;
    struct srv_tconn *tc = p->tc;
    if (!tc) return;
    if (p->connecting) {
        int err = 0;
        socklen_t el = sizeof(err);
        if (getsockopt(h->fd, SOL_SOCKET, SO_ERROR, &err, &el)) err = errno;
        if (!err && !(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
        p->connecting = false;
        if (err || events & (EPOLLERR | EPOLLHUP)) {
            w->io.v[RELAY_C_tcp_peer_connect_failed]++;
            tlog(CFG_LOG_INFO, "tcp_connect_failed", LF_U("allocation", tc->a->id),
                 LF_A("peer", &tc->peer), LF_S("error", strerror(err ? err : ECONNREFUSED)));
            srv_connect_result(&w->srv, tc, false, w->now_ms); /* closes p */
            return;
        }
        peer_arm(w, p); /* nothing until bound */
        tlog(CFG_LOG_INFO, "tcp_peer_connected", LF_U("allocation", tc->a->id),
             LF_A("peer", &tc->peer), LF_U("connection_id", tc->id));
        srv_connect_result(&w->srv, tc, true, w->now_ms);
        return;
    }
    if (tc->state != SRV_TCONN_BOUND) {
        if (events & (EPOLLERR | EPOLLHUP)) srv_tconn_end(&w->srv, tc);
        return;
    }
    if (events & EPOLLERR) { /* a reset or a failure: both end */
        srv_tconn_end(&w->srv, tc);
        return;
    }
    if (events & EPOLLOUT) {
        if (!peer_flush(w, p)) return;
        struct tcp_conn *c = tc->data_io;
        if (p->len < TR_BUF) { /* room again: take what the client sent meanwhile */
            if (!client_to_peer(w, c, p)) return;
        }
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) peer_to_client(w, p);
}

void tcprelay_bind(struct worker *w, struct tcp_conn *c, struct srv_tconn *tc)
{
    struct tr_peer *p = tc->peer_io;
    p->buf = malloc(TR_BUF);
    if (!p->buf) {
        srv_tconn_end(&w->srv, tc);
        return;
    }
    tcp_set_tconn(c, tc);
    p->bound_ms = w->now_ms;
    for (int d = 0; d < TCPRELAY_DIRS; d++)
        p->dir[d].win_ms = w->now_ms;
    w->io.v[RELAY_C_tcp_splices]++;
    tlog(CFG_LOG_INFO, "tcp_connection_bound", LF_U("allocation", tc->a->id),
         LF_A("peer", &tc->peer), LF_U("connection_id", tc->id));
    /* What followed the ConnectionBind in the same read is already the client's data. */
    if (!client_to_peer(w, c, p)) return;
    peer_to_client(w, p);
}

void tcprelay_data_event(struct worker *w, struct tcp_conn *c, uint32_t events)
{
    struct srv_tconn *tc = tcp_tconn(c);
    if (events & EPOLLERR) { /* a reset or a failure: both end (after a FIN nothing reads it) */
        srv_tconn_end(&w->srv, tc);
        return;
    }
    if (!tcp_io(w, c, events)) {
        if (!tcp_tconn(c)) return; /* closed */
    }
    if (!tcp_tconn(c)) return;
    struct tr_peer *p = tc->peer_io;
    /* The client took some: read the peer again. */
    if (p->rd_paused && tcp_tx_queued(c) < TR_BUF && !peer_to_client(w, p)) return;
    if (!tcp_tconn(c)) return;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        client_to_peer(w, c, p);
        return;
    }
    if (!half_close(w, p)) return; /* written out: a FIN from the peer may go on now */
    peer_arm(w, p);
}

/* ---- the QoS view of TCP flows (query.c, in the worker's thread) ---- */

static const char *const state_names[] = {"connecting", "pending", "bound"};

static json_t *leg_json(int fd, const union stun_addr *remote)
{
    char buf[64];
    json_t *o = json_pack("{s:s}", "remote", addr_str(remote, buf));
    struct tcp_info ti;
    socklen_t tl = sizeof(ti);
    if (fd < 0 || getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &tl)) {
        json_object_set_new(o, "tcp_info", json_null());
        return o;
    }
    json_object_set_new(o, "tcp_info",
                        json_pack("{s:f,s:f,s:I,s:I,s:I,s:I,s:I}", "rtt_seconds", ti.tcpi_rtt / 1e6,
                                  "rttvar_seconds", ti.tcpi_rttvar / 1e6, "retransmits",
                                  (json_int_t)ti.tcpi_total_retrans, "retransmitting_now",
                                  (json_int_t)ti.tcpi_retransmits, "lost", (json_int_t)ti.tcpi_lost,
                                  "unacked", (json_int_t)ti.tcpi_unacked, "cwnd",
                                  (json_int_t)ti.tcpi_snd_cwnd));
    return o;
}

static json_t *dir_json(struct tr_dir *d, uint64_t bytes, uint64_t queued, uint64_t age_ms,
                        uint64_t now_ms)
{
    dir_rate(d, bytes, now_ms);
    return json_pack("{s:I,s:I,s:I,s:f,s:f,s:f,s:i,s:b}", "bytes", (json_int_t)bytes,
                     "bytes_delivered", (json_int_t)(bytes - queued), "bytes_queued",
                     (json_int_t)queued, "rate_bps", d->rate_bps, "average_bps",
                     age_ms ? (double)bytes * 8000.0 / (double)age_ms : 0.0, "stalled_seconds",
                     (double)stalled_ms(d, now_ms) / 1e3, "stalls", (int)d->stalls, "stalled_now",
                     d->stall_since_ms != 0);
}

json_t *tcprelay_flows_json(struct worker *w, const struct allocation *a)
{
    json_t *arr = json_array();
    char buf[64];
    for (struct srv_tconn *tc = a->tconns; tc; tc = tc->anext) {
        struct tr_peer *p = tc->peer_io;
        struct tcp_conn *c = tc->data_io;
        json_t *o = json_pack("{s:I,s:s,s:s,s:s,s:f}", "connection_id", (json_int_t)tc->id, "peer",
                              addr_str(&tc->peer, buf), "state", state_names[tc->state], "made_by",
                              tc->outgoing ? "connect" : "peer", "age_seconds",
                              (double)(w->now_ms - tc->created_ms) / 1e3);
        if (tc->state == SRV_TCONN_BOUND && p && c) {
            uint64_t age = w->now_ms - p->bound_ms;
            json_object_set_new(o, "bound_seconds", json_real((double)age / 1e3));
            json_object_set_new(o, "client_leg", leg_json(tcp_fd(c), &tcp_tuple(c)->client));
            json_object_set_new(o, "peer_leg", leg_json(p->h.fd, &tc->peer));
            json_object_set_new(
                o, "to_peer",
                dir_json(&p->dir[TCPRELAY_TO_PEER], tc->bytes_to_peer, p->len, age, w->now_ms));
            json_object_set_new(o, "to_client",
                                dir_json(&p->dir[TCPRELAY_TO_CLIENT], tc->bytes_to_client,
                                         tcp_tx_queued(c), age, w->now_ms));
        }
        json_array_append_new(arr, o);
    }
    return arr;
}

void tcprelay_metrics(struct worker *w, struct tcprelay_metrics *m)
{
    for (int d = 0; d < TCPRELAY_DIRS; d++)
        m->stalled_ms[d] += w->tflow.stalled_ms[d];
    for (int l = 0; l < TCPRELAY_LEGS; l++)
        m->retrans[l] += w->tflow.retrans[l];
    const struct alloc_table *t = &w->srv.allocs;
    for (size_t i = 0; i < t->count; i++) {
        for (struct srv_tconn *tc = t->heap[i]->tconns; tc; tc = tc->anext) {
            struct tr_peer *p = tc->peer_io;
            struct tcp_conn *c = tc->data_io;
            if (tc->state != SRV_TCONN_BOUND || !p || !c) {
                m->waiting++;
                continue;
            }
            m->bound++;
            for (int d = 0; d < TCPRELAY_DIRS; d++) {
                m->stalled_ms[d] += stalled_ms(&p->dir[d], w->now_ms) - p->dir[d].stalled_ms;
                m->stalled_now[d] += p->dir[d].stall_since_ms != 0;
            }
            int fds[TCPRELAY_LEGS] = {tcp_fd(c), p->h.fd};
            for (int l = 0; l < TCPRELAY_LEGS; l++) {
                struct tcp_info ti;
                socklen_t tl = sizeof(ti);
                if (fds[l] < 0 || getsockopt(fds[l], IPPROTO_TCP, TCP_INFO, &ti, &tl)) continue;
                m->retrans[l] += ti.tcpi_total_retrans;
                double rtt = ti.tcpi_rtt / 1e6;
                m->rtt_sum[l] += rtt;
                m->rtt_n[l]++;
                if (rtt > m->rtt_max[l]) m->rtt_max[l] = rtt;
            }
        }
    }
}
