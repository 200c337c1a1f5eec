/* peer.c: relay sockets (one per relayed address), the peer side of the data path, and the
 * I/O the TURN server asks for (ports, quotas, sockets, randomness, events). */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "addr.h"
#include "wire.h"
#include "worker.h"

#define PEER_BATCH  32    /* datagrams per recvmmsg */
#define PEER_SLOTS  128   /* receive buffers: what is framed for UDP clients waits in them */
#define PEER_DATA   65536 /* any UDP datagram; pages become resident only when used */
#define PEER_BUDGET 8     /* batches per wakeup */

/* Receive buffers keep headroom so a peer datagram becomes ChannelData or a Data indication
 * in place, without a copy. Datagrams for UDP clients are not sent at once: they queue (in
 * their receive buffers) until the loop pass ends or the buffers run out, and then go out
 * together, many relay sockets' worth in one sendmmsg per listener, runs to one client as
 * UDP GSO sends. */
struct peer_batch {
    struct mmsghdr rx[PEER_BATCH];
    struct iovec riov[PEER_BATCH];
    struct sockaddr_in6 src[PEER_BATCH];
    uint8_t rctl[PEER_BATCH][UDP_CTL_LEN];
    int used;                        /* buffers taken since the last flush */
    int nq;                          /* queued datagrams */
    struct iovec qiov[PEER_SLOTS];   /* framed message, inside its buffer */
    struct srv_tuple qt[PEER_SLOTS]; /* to whom (a copy: the allocation may go first) */
    const struct listener *ql[PEER_SLOTS];
    int64_t qrx[PEER_SLOTS]; /* its kernel receive time */
    struct mmsghdr tx[PEER_SLOTS];
    uint8_t tctl[PEER_SLOTS][UDP_CTL_LEN];
    uint8_t buf[PEER_SLOTS][SRV_PEER_HEADROOM + PEER_DATA + SRV_PEER_TAILROOM + 1];
};

struct peer_batch *peer_batch_new(void)
{
    return calloc(1, sizeof(struct peer_batch));
}

/* ---- receive options and the QoS tap ---- */

void sock_rx_options(const struct worker *w, int fd)
{
    int one = 1;
    /* Kernel receive timestamps, so relay load never shows up as network jitter. They cost a
     * clock read per packet in the kernel, so only with the tap on. */
    if (w->qos_on) setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_RXQ_OVFL, &one, sizeof(one));
}

void rx_ancillary(const struct msghdr *mh, int64_t *rx_ns, uint32_t *ovfl, bool *have_ovfl)
{
    *have_ovfl = false;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR((struct msghdr *)mh, c)) {
        if (c->cmsg_level != SOL_SOCKET) continue;
        if (c->cmsg_type == SCM_TIMESTAMPNS) {
            struct timespec ts;
            memcpy(&ts, CMSG_DATA(c), sizeof(ts));
            *rx_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
        } else if (c->cmsg_type == SO_RXQ_OVFL) {
            memcpy(ovfl, CMSG_DATA(c), sizeof(*ovfl));
            *have_ovfl = true;
        }
    }
}

static int64_t realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The tap: measure one forwarded payload of allocation a from leg. */
static inline void tap(struct worker *w, struct allocation *a, enum qos_leg leg,
                       const union stun_addr *peer, const uint8_t *p, size_t len, int64_t rx_ns)
{
    struct qos_alloc *q = a->qos ? a->qos : worker_qos(w, a);
    if (q) qos_packet(q, &w->qm, leg, peer, p, len, rx_ns);
}

/* ---- client -> peer ---- */

/* Client data bound for peers is held while a UDP receive batch is handled (w->train), so
 * that consecutive datagrams to one peer through one relay socket go out as one UDP GSO send:
 * a single flow's burst costs one send, not one per datagram. */
#define TRAIN_MAX_SEGMENTS  64
#define TRAIN_MAX_BYTES     65000
#define TRAIN_MAX_SEGSIZE   1472 /* larger segments could exceed the device MTU */
#define TRAIN_MAX_RESIDENCE 64   /* a UDP batch (UDP_BATCH) */

struct fwd_train {
    struct relay_sock *rs;
    struct allocation *a;
    union stun_addr peer;
    size_t seg, total;
    bool closed; /* a shorter datagram ended the run */
    int n;
    struct iovec iov[TRAIN_MAX_SEGMENTS];
    int64_t rx_ns[TRAIN_MAX_SEGMENTS];
    int nres; /* datagrams sent during this UDP batch whose residence is still to observe */
    int64_t res_rx[TRAIN_MAX_RESIDENCE];
};

struct fwd_train *fwd_train_new(void)
{
    return calloc(1, sizeof(struct fwd_train));
}

/* Count, time and measure datagrams that went to a peer. */
static void sent_to_peer(struct worker *w, struct allocation *a, const union stun_addr *peer,
                         const struct iovec *iov, const int64_t *rx_ns, int n)
{
    for (int i = 0; i < n; i++) {
        a->pkts_to_peer++;
        a->bytes_to_peer += iov[i].iov_len;
        w->io.v[RELAY_C_peer_tx_datagrams]++;
        w->io.v[RELAY_C_peer_tx_bytes] += iov[i].iov_len;
        if (!w->qos_on) continue;
        tap(w, a, QOS_LEG_CLIENT, peer, iov[i].iov_base, iov[i].iov_len, rx_ns[i]);
        /* Residence: during a UDP batch, one clock read at its end serves every datagram
         * (peer_train_end), an upper bound by at most the batch's own handling time. */
        if (w->train_on && w->train->nres < TRAIN_MAX_RESIDENCE)
            w->train->res_rx[w->train->nres++] = rx_ns[i];
        else
            qos_observe_residence(&w->qm, QOS_LEG_CLIENT, realtime_ns() - rx_ns[i]);
    }
}

void peer_train_end(struct worker *w)
{
    peer_train_flush(w);
    struct fwd_train *t = w->train;
    if (t->nres) {
        int64_t now = realtime_ns();
        for (int i = 0; i < t->nres; i++)
            qos_observe_residence(&w->qm, QOS_LEG_CLIENT, now - t->res_rx[i]);
        t->nres = 0;
    }
    w->train_on = false;
}

void peer_train_flush(struct worker *w)
{
    struct fwd_train *t = w->train;
    if (!t || !t->n) return;
    int n = t->n;
    t->n = 0;
    int fd = t->rs->h.fd;
    if (fd < 0) {
        w->io.v[RELAY_C_peer_send_errors] += (uint64_t)n;
        return;
    }
    struct msghdr mh = {.msg_name = &t->peer,
                        .msg_namelen = addr_len(&t->peer),
                        .msg_iov = t->iov,
                        .msg_iovlen = (size_t)n};
    union {
        uint8_t buf[CMSG_SPACE(sizeof(uint16_t))];
        struct cmsghdr align;
    } ctl;
    if (n > 1) {
        uint16_t seg = (uint16_t)t->seg;
        memset(&ctl, 0, sizeof ctl);
        struct cmsghdr *c = (struct cmsghdr *)ctl.buf;
        c->cmsg_level = SOL_UDP;
        c->cmsg_type = UDP_SEGMENT;
        c->cmsg_len = CMSG_LEN(sizeof(seg));
        memcpy(CMSG_DATA(c), &seg, sizeof(seg));
        mh.msg_control = ctl.buf;
        mh.msg_controllen = sizeof ctl.buf;
    }
    if (sendmsg(fd, &mh, MSG_DONTWAIT) >= 0) {
        if (n > 1) w->io.v[RELAY_C_peer_gso_sends]++;
        sent_to_peer(w, t->a, &t->peer, t->iov, t->rx_ns, n);
        return;
    }
    if (n == 1 || !(errno == EINVAL || errno == EIO || errno == ENOPROTOOPT)) {
        w->io.v[RELAY_C_peer_send_errors] += (uint64_t)n; /* EAGAIN: the socket buffer is full */
        return;
    }
    /* The kernel refused GSO here: one by one, and no more GSO on this worker. */
    w->gso_off = true;
    w->io.v[RELAY_C_peer_gso_fallbacks]++;
    for (int i = 0; i < n; i++) {
        if (sendto(fd, t->iov[i].iov_base, t->iov[i].iov_len, MSG_DONTWAIT, &t->peer.sa,
                   addr_len(&t->peer)) < 0) {
            w->io.v[RELAY_C_peer_send_errors]++;
            continue;
        }
        sent_to_peer(w, t->a, &t->peer, &t->iov[i], &t->rx_ns[i], 1);
    }
}

void peer_forward(struct worker *w, const struct srv_fwd *f, int64_t rx_ns)
{
    struct relay_sock *rs = f->relay->io;
    if (!rs || rs->h.fd < 0) return;
    if (f->dont_fragment && !rs->dont_fragment) {
        /* DONT-FRAGMENT on a Send indication: from now on this socket sets DF. */
        peer_train_flush(w);
        int v4 = IP_PMTUDISC_DO, v6 = 1;
        if (rs->family == AF_INET)
            setsockopt(rs->h.fd, IPPROTO_IP, IP_MTU_DISCOVER, &v4, sizeof(v4));
        else
            setsockopt(rs->h.fd, IPPROTO_IPV6, IPV6_DONTFRAG, &v6, sizeof(v6));
        rs->dont_fragment = true;
    }
    struct fwd_train *t = w->train_on ? w->train : NULL;
    if (!t) {
        if (sendto(rs->h.fd, f->data, f->len, MSG_DONTWAIT, &f->peer.sa, addr_len(&f->peer)) < 0) {
            w->io.v[RELAY_C_peer_send_errors]++;
            return;
        }
        struct iovec v = {.iov_base = (void *)f->data, .iov_len = f->len};
        sent_to_peer(w, f->a, &f->peer, &v, &rx_ns, 1);
        return;
    }
    if (t->n && (t->rs != rs || t->closed || f->len > t->seg || t->n == TRAIN_MAX_SEGMENTS ||
                 t->total + f->len > TRAIN_MAX_BYTES || !addr_equal(&t->peer, &f->peer)))
        peer_train_flush(w);
    if (!t->n) {
        t->rs = rs;
        t->a = f->a;
        t->peer = f->peer;
        t->seg = f->len;
        t->total = 0;
        /* A segment size GSO cannot take (or GSO off) makes a train of one. */
        t->closed = w->gso_off || f->len > TRAIN_MAX_SEGSIZE || f->len == 0;
    } else if (f->len < t->seg) {
        t->closed = true;
    }
    t->iov[t->n] = (struct iovec){.iov_base = (void *)f->data, .iov_len = f->len};
    t->rx_ns[t->n] = rx_ns;
    t->total += f->len;
    t->n++;
}

size_t client_message(struct worker *w, const struct srv_tuple *t, void *client_io,
                      const uint8_t *in, size_t len, int64_t rx_ns, uint8_t *out, size_t outcap)
{
    struct srv_fwd f;
    /* A STUN message may delete an allocation (or a relay socket): what the train holds goes
     * first. ChannelData never deletes anything. */
    if (w->train_on && len && (in[0] & 0xC0) != 0x40) peer_train_flush(w);
    size_t n = srv_handle(&w->srv, t, client_io, in, len, w->now_ms, out, outcap, &f);
    if (f.a) peer_forward(w, &f, rx_ns);
    return n;
}

/* ---- peer -> client ---- */

static struct alloc_relay *relay_of(struct allocation *a, int family)
{
    for (unsigned i = 0; i < a->nrelay; i++)
        if (a->relay[i].addr.sa.sa_family == family) return &a->relay[i];
    return NULL;
}

void peer_flush_clients(struct worker *w)
{
    struct peer_batch *b = w->pbatch;
    if (b->nq) {
        if (w->qos_on) {
            int64_t now = realtime_ns();
            for (int k = 0; k < b->nq; k++)
                qos_observe_residence(&w->qm, QOS_LEG_PEER, now - b->qrx[k]);
        }
        udp_send_clients(w, b->ql, b->qt, b->qiov, b->nq, b->tx, b->tctl);
    }
    b->nq = 0;
    b->used = 0;
}

void peer_readable(struct worker *w, struct ep_handler *h, uint32_t events)
{
    (void)events;
    struct relay_sock *rs = (struct relay_sock *)h;
    struct peer_batch *b = w->pbatch;
    for (int round = 0; round < PEER_BUDGET; round++) {
        if (PEER_SLOTS - b->used < PEER_BATCH) peer_flush_clients(w);
        int base = b->used;
        for (int i = 0; i < PEER_BATCH; i++) {
            b->riov[i] = (struct iovec){.iov_base = b->buf[base + i] + SRV_PEER_HEADROOM,
                                        .iov_len = PEER_DATA};
            struct msghdr *mh = &b->rx[i].msg_hdr;
            memset(mh, 0, sizeof(*mh));
            mh->msg_name = &b->src[i];
            mh->msg_namelen = sizeof(b->src[i]);
            mh->msg_iov = &b->riov[i];
            mh->msg_iovlen = 1;
            mh->msg_control = b->rctl[i];
            mh->msg_controllen = UDP_CTL_LEN;
        }
        int n = recvmmsg(h->fd, b->rx, PEER_BATCH, MSG_DONTWAIT, NULL);
        if (n <= 0) return;
        b->used += n;
        struct allocation *a = rs->a;
        struct alloc_relay *rel = relay_of(a, rs->family);
        const struct listener *l = a->tuple.transport == SRV_UDP ? a->client_io : NULL;
        for (int i = 0; i < n; i++) {
            size_t len = b->rx[i].msg_len;
            w->io.v[RELAY_C_peer_rx_datagrams]++;
            w->io.v[RELAY_C_peer_rx_bytes] += len;
            if (b->rx[i].msg_hdr.msg_flags & MSG_TRUNC) {
                w->io.v[RELAY_C_peer_drop_truncated]++;
                continue;
            }
            int64_t rx_ns = w->now_ns;
            uint32_t ovfl;
            bool have_ovfl;
            rx_ancillary(&b->rx[i].msg_hdr, &rx_ns, &ovfl, &have_ovfl);
            if (have_ovfl && ovfl != rs->rxq_ovfl) {
                w->io.v[RELAY_C_kernel_rx_overflow] += (uint32_t)(ovfl - rs->rxq_ovfl);
                rs->rxq_ovfl = ovfl;
            }
            union stun_addr from;
            if (!addr_from_sockaddr(&from, (struct sockaddr *)&b->src[i],
                                    b->rx[i].msg_hdr.msg_namelen))
                continue;
            uint8_t *data = b->buf[base + i] + SRV_PEER_HEADROOM, *msg;
            size_t out = srv_peer_data(&w->srv, a, rel, &from, data, len, w->now_ms, &msg);
            if (!out) continue;
            a->pkts_to_client++;
            a->bytes_to_client += len;
            /* Framing wrote only around the payload, so it is intact for the tap. */
            if (w->qos_on) tap(w, a, QOS_LEG_PEER, &from, data, len, rx_ns);
            if (l) {
                int q = b->nq++;
                b->qiov[q] = (struct iovec){.iov_base = msg, .iov_len = out};
                b->qt[q] = a->tuple;
                b->ql[q] = l;
                b->qrx[q] = rx_ns;
            } else if (a->client_io) {
                if (w->qos_on) qos_observe_residence(&w->qm, QOS_LEG_PEER, realtime_ns() - rx_ns);
                if (!tcp_send_client(w, a->client_io, msg, out))
                    return; /* the connection closed, and with it this allocation and socket */
            }
        }
        if (n < PEER_BATCH) return;
    }
}
