/* udp.c: the UDP listener path: recvmmsg a batch, hand each message to the TURN server,
 * sendmmsg the answers. Wildcard listeners learn and answer from each datagram's local
 * address (IP_PKTINFO), so multi-homed hosts answer from the address the client used. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "addr.h"
#include "worker.h"

#define UDP_BATCH   64        /* datagrams per recvmmsg */
#define UDP_RX_BUF  65536     /* any UDP datagram; pages of a slot become resident only when used */
#define UDP_TX_BUF  1280      /* control-plane answers are small; a larger one is not produced */
#define UDP_BUDGET  16        /* batches per wakeup, so one busy socket cannot starve the others */
#define UDP_SOCKBUF (4 << 20) /* listener socket buffers, bytes */

struct udp_batch {
    struct mmsghdr rx[UDP_BATCH], tx[UDP_BATCH];
    struct iovec riov[UDP_BATCH], tiov[UDP_BATCH];
    struct sockaddr_in6 src[UDP_BATCH]; /* large enough for IPv4 and IPv6 */
    struct srv_tuple tuple[UDP_BATCH];
    uint8_t rctl[UDP_BATCH][UDP_CTL_LEN], tctl[UDP_BATCH][UDP_CTL_LEN];
    uint8_t in[UDP_BATCH][UDP_RX_BUF];
    uint8_t out[UDP_BATCH][UDP_TX_BUF];
};

struct udp_batch *udp_batch_new(void)
{
    struct udp_batch *b = calloc(1, sizeof(*b));
    if (!b) return NULL;
    for (int i = 0; i < UDP_BATCH; i++) {
        b->riov[i] = (struct iovec){.iov_base = b->in[i], .iov_len = UDP_RX_BUF};
        b->rx[i].msg_hdr.msg_iov = &b->riov[i];
        b->rx[i].msg_hdr.msg_iovlen = 1;
    }
    return b;
}

int udp_listener_setup(int fd, int family)
{
    int one = 1;
    if (family == AF_INET) return setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one));
    return setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof(one));
}

void udp_listener_buffers(int fd)
{
    /* One listener socket per worker carries every client of that worker: give it room for
     * a scheduling hiccup at full rate (the default ~200 KiB holds a few hundred datagrams).
     * As root the FORCE variants pass net.core.rmem_max; otherwise the kernel caps it. */
    int size = UDP_SOCKBUF;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)))
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(size)))
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
}

/* The local address a datagram was sent to, from its IP_PKTINFO / IPV6_PKTINFO. */
static void local_of(const struct msghdr *mh, const struct listener *l, union stun_addr *local)
{
    *local = l->addr;
    if (!l->wildcard) return;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR((struct msghdr *)mh, c)) {
        if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
            struct in_pktinfo pi;
            memcpy(&pi, CMSG_DATA(c), sizeof(pi));
            local->v4.sin_addr = pi.ipi_addr;
        } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
            struct in6_pktinfo pi;
            memcpy(&pi, CMSG_DATA(c), sizeof(pi));
            local->v6.sin6_addr = pi.ipi6_addr;
        }
    }
}

void udp_prepare(struct msghdr *mh, const struct listener *l, const struct srv_tuple *t,
                 struct iovec *iov, uint8_t ctl[UDP_CTL_LEN])
{
    memset(mh, 0, sizeof(*mh));
    mh->msg_name = (void *)&t->client;
    mh->msg_namelen = addr_len(&t->client);
    mh->msg_iov = iov;
    mh->msg_iovlen = 1;
    if (!l->wildcard) return;
    memset(ctl, 0, UDP_CTL_LEN);
    mh->msg_control = ctl;
    struct cmsghdr *c = (struct cmsghdr *)ctl;
    if (t->local.sa.sa_family == AF_INET) {
        struct in_pktinfo pi = {.ipi_spec_dst = t->local.v4.sin_addr};
        c->cmsg_level = IPPROTO_IP;
        c->cmsg_type = IP_PKTINFO;
        c->cmsg_len = CMSG_LEN(sizeof(pi));
        memcpy(CMSG_DATA(c), &pi, sizeof(pi));
        mh->msg_controllen = CMSG_SPACE(sizeof(pi));
    } else {
        struct in6_pktinfo pi = {.ipi6_addr = t->local.v6.sin6_addr};
        c->cmsg_level = IPPROTO_IPV6;
        c->cmsg_type = IPV6_PKTINFO;
        c->cmsg_len = CMSG_LEN(sizeof(pi));
        memcpy(CMSG_DATA(c), &pi, sizeof(pi));
        mh->msg_controllen = CMSG_SPACE(sizeof(pi));
    }
}

/* Runs of datagrams to one client: consecutive ones of the same size (the last of a run may be
 * shorter) go out as one UDP GSO send; the kernel cuts them apart again. */
#define GSO_MAX_SEGMENTS 64    /* UDP_MAX_SEGMENTS */
#define GSO_MAX_BYTES    65000 /* one GSO send is one IP datagram's worth before segmentation */
#define GSO_MAX_SEGSIZE  1472  /* larger segments could exceed a device MTU (EINVAL) */

static void add_segment_cmsg(struct msghdr *mh, uint8_t ctl[UDP_CTL_LEN], uint16_t seg)
{
    /* After the IP_PKTINFO message udp_prepare may have put first. */
    struct cmsghdr *c = (struct cmsghdr *)(ctl + mh->msg_controllen);
    if (!mh->msg_controllen) memset(ctl, 0, UDP_CTL_LEN);
    c->cmsg_level = SOL_UDP;
    c->cmsg_type = UDP_SEGMENT;
    c->cmsg_len = CMSG_LEN(sizeof(seg));
    memcpy(CMSG_DATA(c), &seg, sizeof(seg));
    mh->msg_control = ctl;
    mh->msg_controllen += CMSG_SPACE(sizeof(seg));
}

/* Send messages [from, to) of tx (all through one listener) and count them. */
static void send_msgs(struct worker *w, const struct listener *l, const struct srv_tuple *const *tt,
                      struct mmsghdr *tx, uint8_t (*ctl)[UDP_CTL_LEN], const int *segs, int from,
                      int to)
{
    int done = from;
    while (done < to) {
        int k = sendmmsg(l->h.fd, tx + done, (unsigned)(to - done), MSG_DONTWAIT);
        if (k < 0) {
            if (errno == EINTR) continue;
            if (segs[done] > 1 && (errno == EINVAL || errno == EIO || errno == ENOPROTOOPT)) {
                /* This path or kernel refuses GSO: send that run datagram by datagram, and
                 * stop trying GSO on this worker. */
                w->gso_off = true;
                w->io.v[RELAY_C_udp_gso_fallbacks]++;
                struct iovec *v = tx[done].msg_hdr.msg_iov;
                for (int s = 0; s < segs[done]; s++) {
                    struct msghdr m1;
                    udp_prepare(&m1, l, tt[done], &v[s], ctl[done]);
                    if (sendmsg(l->h.fd, &m1, MSG_DONTWAIT) < 0) {
                        w->io.v[RELAY_C_udp_send_errors]++;
                        continue;
                    }
                    w->io.v[RELAY_C_udp_tx_datagrams]++;
                    w->io.v[RELAY_C_udp_tx_bytes] += v[s].iov_len;
                }
                done++;
                continue;
            }
            /* EAGAIN (socket buffer full) or a per-destination error: lose this message. */
            w->io.v[RELAY_C_udp_send_errors] += (uint64_t)segs[done];
            done++;
            continue;
        }
        for (int i = done; i < done + k; i++) {
            w->io.v[RELAY_C_udp_tx_datagrams] += (uint64_t)segs[i];
            w->io.v[RELAY_C_udp_tx_bytes] += tx[i].msg_len;
            if (segs[i] > 1) w->io.v[RELAY_C_udp_gso_sends]++;
        }
        done += k;
    }
}

void udp_send_clients(struct worker *w, const struct listener *const *l, const struct srv_tuple *t,
                      struct iovec *iov, int n, struct mmsghdr *tx, uint8_t (*ctl)[UDP_CTL_LEN])
{
    if (n > UDP_SEND_MAX) {
        udp_send_clients(w, l, t, iov, UDP_SEND_MAX, tx, ctl);
        udp_send_clients(w, l + UDP_SEND_MAX, t + UDP_SEND_MAX, iov + UDP_SEND_MAX,
                         n - UDP_SEND_MAX, tx, ctl);
        return;
    }
    int nmsg = 0, first = 0;
    int segs[UDP_SEND_MAX];
    const struct srv_tuple *tt[UDP_SEND_MAX];
    for (int i = 0; i < n;) {
        size_t seg = iov[i].iov_len, total = seg;
        int k = 1;
        if (!w->gso_off && seg <= GSO_MAX_SEGSIZE) {
            while (i + k < n && k < GSO_MAX_SEGMENTS && l[i + k] == l[i] &&
                   tuple_equal(&t[i + k], &t[i]) && total + iov[i + k].iov_len <= GSO_MAX_BYTES &&
                   iov[i + k].iov_len <= seg) {
                total += iov[i + k].iov_len;
                k++;
                if (iov[i + k - 1].iov_len < seg) break; /* a shorter one ends the run */
            }
        }
        /* Messages go out listener by listener (nearly always one). */
        if (nmsg > first && l[i] != l[i - 1]) {
            send_msgs(w, l[i - 1], tt, tx, ctl, segs, first, nmsg);
            first = nmsg;
        }
        struct msghdr *mh = &tx[nmsg].msg_hdr;
        udp_prepare(mh, l[i], &t[i], &iov[i], ctl[nmsg]);
        mh->msg_iovlen = (size_t)k;
        if (k > 1) add_segment_cmsg(mh, ctl[nmsg], (uint16_t)seg);
        tt[nmsg] = &t[i];
        segs[nmsg++] = k;
        i += k;
    }
    if (nmsg > first) send_msgs(w, l[n - 1], tt, tx, ctl, segs, first, nmsg);
}

void udp_send_batch(struct worker *w, int fd, struct mmsghdr *tx, int n)
{
    int done = 0;
    while (done < n) {
        int k = sendmmsg(fd, tx + done, (unsigned)(n - done), MSG_DONTWAIT);
        if (k < 0) {
            if (errno == EINTR) continue;
            /* EAGAIN (socket buffer full) or a per-destination error: lose this one. */
            w->io.v[RELAY_C_udp_send_errors]++;
            done++;
            continue;
        }
        for (int i = done; i < done + k; i++) {
            w->io.v[RELAY_C_udp_tx_datagrams]++;
            w->io.v[RELAY_C_udp_tx_bytes] += tx[i].msg_len;
        }
        done += k;
    }
}

void udp_readable(struct worker *w, struct ep_handler *h, uint32_t events)
{
    (void)events;
    struct listener *l = (struct listener *)h;
    struct udp_batch *b = w->batch;
    /* Peer datagrams queued for clients go first: a client batch may take a while. */
    peer_flush_clients(w);

    for (int round = 0; round < UDP_BUDGET; round++) {
        for (int i = 0; i < UDP_BATCH; i++) {
            struct msghdr *mh = &b->rx[i].msg_hdr;
            mh->msg_name = &b->src[i];
            mh->msg_namelen = sizeof(b->src[i]);
            mh->msg_control = b->rctl[i];
            mh->msg_controllen = UDP_CTL_LEN;
            mh->msg_flags = 0;
        }
        int n = recvmmsg(h->fd, b->rx, UDP_BATCH, MSG_DONTWAIT, NULL);
        if (n <= 0) return; /* EAGAIN: drained; other errors (ICMP-induced) are transient */
        int nout = 0;
        w->train_on = true; /* forwards wait in the train until this batch is handled */
        for (int i = 0; i < n; i++) {
            struct msghdr *mh = &b->rx[i].msg_hdr;
            size_t len = b->rx[i].msg_len;
            w->io.v[RELAY_C_udp_rx_datagrams]++;
            w->io.v[RELAY_C_udp_rx_bytes] += len;
            if (mh->msg_flags & MSG_TRUNC) {
                w->io.v[RELAY_C_udp_drop_truncated]++;
                continue;
            }
            int64_t rx_ns = w->now_ns;
            uint32_t ovfl;
            bool have_ovfl;
            rx_ancillary(mh, &rx_ns, &ovfl, &have_ovfl);
            if (have_ovfl && ovfl != l->rxq_ovfl) {
                w->io.v[RELAY_C_kernel_rx_overflow] += (uint32_t)(ovfl - l->rxq_ovfl);
                l->rxq_ovfl = ovfl;
            }
            struct srv_tuple *t = &b->tuple[nout];
            t->transport = SRV_UDP;
            if (!addr_from_sockaddr(&t->client, (struct sockaddr *)&b->src[i], mh->msg_namelen)) {
                w->io.v[RELAY_C_udp_drop_addr]++;
                continue;
            }
            local_of(mh, l, &t->local);
            size_t out = client_message(w, t, l, b->in[i], len, rx_ns, b->out[nout], UDP_TX_BUF);
            if (!out) continue;
            b->tiov[nout] = (struct iovec){.iov_base = b->out[nout], .iov_len = out};
            udp_prepare(&b->tx[nout].msg_hdr, l, t, &b->tiov[nout], b->tctl[nout]);
            nout++;
        }
        peer_train_end(w); /* before the buffers are reused */
        if (nout) udp_send_batch(w, h->fd, b->tx, nout);
        if (n < UDP_BATCH) return;
    }
}
