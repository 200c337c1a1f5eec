/* udp.c: the UDP transport (udp.h): socket options, recvmmsg with each datagram's metadata
 * (one walk of the ancillary data: local address, kernel timestamp, kernel drop count), and
 * sends: sendmmsg batches, runs to one client or peer as UDP GSO sends, and the fallback when
 * the kernel refuses GSO. Wildcard listeners answer from each datagram's local address
 * (IP_PKTINFO), so multi-homed hosts answer from the address the client used. */
#include <errno.h>
#include <time.h> /* before linux/errqueue.h, which uses struct timespec */
#include <linux/errqueue.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "addr.h"
#include "udp.h"
#include "worker.h"

#define UDP_SOCKBUF (4 << 20) /* listener socket buffers, bytes */

void udp_timestamps_on(int fd)
{
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof(one));
}

void udp_rx_options(const struct worker *w, int fd, int family)
{
    int one = 1;
    /* Kernel receive timestamps, so relay load never shows up as network jitter. */
    if (w->qos_on) setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_RXQ_OVFL, &one, sizeof(one));
    /* RFC 8656 14: the ECN (and, per qos.dscp, DSCP) bits go on with the datagram. */
    if (family == AF_INET)
        setsockopt(fd, IPPROTO_IP, IP_RECVTOS, &one, sizeof(one));
    else
        setsockopt(fd, IPPROTO_IPV6, IPV6_RECVTCLASS, &one, sizeof(one));
}

/* Append one control message to mh (whose control buffer is ctl, UDP_CTL_LEN bytes). */
static void add_cmsg(struct msghdr *mh, uint8_t ctl[UDP_CTL_LEN], int level, int type,
                     const void *val, size_t len)
{
    if (!mh->msg_controllen) memset(ctl, 0, UDP_CTL_LEN);
    struct cmsghdr *c = (struct cmsghdr *)(ctl + mh->msg_controllen);
    c->cmsg_level = level;
    c->cmsg_type = type;
    c->cmsg_len = CMSG_LEN(len);
    memcpy(CMSG_DATA(c), val, len);
    mh->msg_control = ctl;
    mh->msg_controllen += CMSG_SPACE(len);
}

/* The TOS / traffic class (an int for both families, as the kernel takes it) and the socket
 * priority of one send, each only when it is not the default 0. */
static void add_mark(struct msghdr *mh, uint8_t ctl[UDP_CTL_LEN], int family, struct udp_mark m)
{
    int v = m.tos;
    if (v && family == AF_INET)
        add_cmsg(mh, ctl, IPPROTO_IP, IP_TOS, &v, sizeof(v));
    else if (v)
        add_cmsg(mh, ctl, IPPROTO_IPV6, IPV6_TCLASS, &v, sizeof(v));
    if (m.prio) add_cmsg(mh, ctl, SOL_SOCKET, SO_PRIORITY, &m.prio, sizeof(m.prio));
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

/* One walk of a received message's ancillary data: the local address it was sent to
 * (IP_PKTINFO / IPV6_PKTINFO), the kernel receive time and the kernel's drop count. */
static void rx_meta(const struct msghdr *mh, struct udp_dgram *d, uint32_t *ovfl, bool *have_ovfl)
{
    for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR((struct msghdr *)mh, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
            struct timespec ts;
            memcpy(&ts, CMSG_DATA(c), sizeof(ts));
            d->rx_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
        } else if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_RXQ_OVFL) {
            memcpy(ovfl, CMSG_DATA(c), sizeof(*ovfl));
            *have_ovfl = true;
        } else if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_TOS) {
            d->tos = *CMSG_DATA(c); /* one byte for IP_RECVTOS */
        } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_TCLASS) {
            int v;
            memcpy(&v, CMSG_DATA(c), sizeof(v));
            d->tos = v & 0xff;
        } else if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
            struct in_pktinfo pi;
            memcpy(&pi, CMSG_DATA(c), sizeof(pi));
            d->local.v4.sin_addr = pi.ipi_addr;
        } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
            struct in6_pktinfo pi;
            memcpy(&pi, CMSG_DATA(c), sizeof(pi));
            d->local.v6.sin6_addr = pi.ipi6_addr;
        }
    }
}

int udp_recv(struct worker *w, int fd, struct udp_rxq *q, uint8_t *buf0, size_t stride, size_t cap,
             int n, const union stun_addr *local_default, uint32_t *ovfl, struct udp_dgram *d)
{
    if (n > UDP_RX_MAX) n = UDP_RX_MAX;
    for (int i = 0; i < n; i++) {
        q->iov[i] = (struct iovec){.iov_base = buf0 + (size_t)i * stride, .iov_len = cap};
        q->mm[i].msg_hdr = (struct msghdr){.msg_name = &q->src[i],
                                           .msg_namelen = sizeof(q->src[i]),
                                           .msg_iov = &q->iov[i],
                                           .msg_iovlen = 1,
                                           .msg_control = q->ctl[i],
                                           .msg_controllen = UDP_CTL_LEN};
    }
    int got = recvmmsg(fd, q->mm, (unsigned)n, MSG_DONTWAIT, NULL);
    if (got <= 0) return 0; /* EAGAIN: drained; other errors (ICMP-induced) are transient */
    for (int i = 0; i < got; i++) {
        const struct msghdr *mh = &q->mm[i].msg_hdr;
        struct udp_dgram *g = &d[i];
        g->data = q->iov[i].iov_base;
        g->len = q->mm[i].msg_len;
        g->truncated = (mh->msg_flags & MSG_TRUNC) != 0;
        g->rx_ns = w->now_ns;
        g->tos = -1;
        if (local_default)
            g->local = *local_default;
        else
            memset(&g->local, 0, sizeof(g->local));
        uint32_t seen = 0;
        bool have_ovfl = false;
        rx_meta(mh, g, &seen, &have_ovfl);
        if (have_ovfl && seen != *ovfl) {
            w->io.v[RELAY_C_kernel_rx_overflow] += (uint32_t)(seen - *ovfl);
            *ovfl = seen;
        }
        g->ok = !g->truncated &&
                addr_from_sockaddr(&g->from, (struct sockaddr *)&q->src[i], mh->msg_namelen);
    }
    return got;
}

void udp_prepare(struct msghdr *mh, const struct listener *l, const struct srv_tuple *t,
                 struct iovec *iov, struct udp_mark m, uint8_t ctl[UDP_CTL_LEN])
{
    memset(mh, 0, sizeof(*mh));
    mh->msg_name = (void *)&t->client;
    mh->msg_namelen = addr_len(&t->client);
    mh->msg_iov = iov;
    mh->msg_iovlen = 1;
    if (l->wildcard) {
        if (t->local.sa.sa_family == AF_INET) {
            struct in_pktinfo pi = {.ipi_spec_dst = t->local.v4.sin_addr};
            add_cmsg(mh, ctl, IPPROTO_IP, IP_PKTINFO, &pi, sizeof(pi));
        } else {
            struct in6_pktinfo pi = {.ipi6_addr = t->local.v6.sin6_addr};
            add_cmsg(mh, ctl, IPPROTO_IPV6, IPV6_PKTINFO, &pi, sizeof(pi));
        }
    }
    add_mark(mh, ctl, t->client.sa.sa_family, m);
}

/* Runs of datagrams to one client: consecutive ones of the same size (the last of a run may be
 * shorter) go out as one UDP GSO send; the kernel cuts them apart again. */
#define GSO_MAX_SEGMENTS 64    /* UDP_MAX_SEGMENTS */
#define GSO_MAX_BYTES    65000 /* one GSO send is one IP datagram's worth before segmentation */
#define GSO_MAX_SEGSIZE  1472  /* larger segments could exceed a device MTU (EINVAL) */

static void add_segment_cmsg(struct msghdr *mh, uint8_t ctl[UDP_CTL_LEN], uint16_t seg)
{
    /* After the IP_PKTINFO and TOS messages udp_prepare may have put first. */
    add_cmsg(mh, ctl, SOL_UDP, UDP_SEGMENT, &seg, sizeof(seg));
}

/* Send messages [from, to) of tx (all through one listener) and count them. */
static void send_msgs(struct worker *w, const struct listener *l, const struct srv_tuple *const *tt,
                      const struct udp_mark *markm, struct mmsghdr *tx, uint8_t (*ctl)[UDP_CTL_LEN],
                      const int *segs, int from, int to)
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
                    udp_prepare(&m1, l, tt[done], &v[s], markm[done], ctl[done]);
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
                      struct iovec *iov, const struct udp_mark *mark, int n, struct mmsghdr *tx,
                      uint8_t (*ctl)[UDP_CTL_LEN])
{
    if (n > UDP_SEND_MAX) {
        udp_send_clients(w, l, t, iov, mark, UDP_SEND_MAX, tx, ctl);
        udp_send_clients(w, l + UDP_SEND_MAX, t + UDP_SEND_MAX, iov + UDP_SEND_MAX,
                         mark ? mark + UDP_SEND_MAX : NULL, n - UDP_SEND_MAX, tx, ctl);
        return;
    }
    int nmsg = 0, first = 0;
    int segs[UDP_SEND_MAX];
    struct udp_mark markm[UDP_SEND_MAX];
    static const struct udp_mark none;
    const struct srv_tuple *tt[UDP_SEND_MAX];
    for (int i = 0; i < n;) {
        size_t seg = iov[i].iov_len, total = seg;
        struct udp_mark mi = mark ? mark[i] : none;
        int k = 1;
        if (!w->gso_off && seg <= GSO_MAX_SEGSIZE) {
            while (i + k < n && k < GSO_MAX_SEGMENTS && l[i + k] == l[i] &&
                   udp_mark_equal(mark ? mark[i + k] : none, mi) && tuple_equal(&t[i + k], &t[i]) &&
                   total + iov[i + k].iov_len <= GSO_MAX_BYTES && iov[i + k].iov_len <= seg) {
                total += iov[i + k].iov_len;
                k++;
                if (iov[i + k - 1].iov_len < seg) break; /* a shorter one ends the run */
            }
        }
        /* Messages go out listener by listener (nearly always one). */
        if (nmsg > first && l[i] != l[i - 1]) {
            send_msgs(w, l[i - 1], tt, markm, tx, ctl, segs, first, nmsg);
            first = nmsg;
        }
        struct msghdr *mh = &tx[nmsg].msg_hdr;
        udp_prepare(mh, l[i], &t[i], &iov[i], mi, ctl[nmsg]);
        mh->msg_iovlen = (size_t)k;
        if (k > 1) add_segment_cmsg(mh, ctl[nmsg], (uint16_t)seg);
        tt[nmsg] = &t[i];
        markm[nmsg] = mi;
        segs[nmsg++] = k;
        i += k;
    }
    if (nmsg > first) send_msgs(w, l[n - 1], tt, markm, tx, ctl, segs, first, nmsg);
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

int udp_send_run(struct worker *w, int fd, const union stun_addr *to, struct iovec *iov, int n,
                 size_t seg, struct udp_mark m, bool *sent)
{
    memset(sent, 0, (size_t)n * sizeof(*sent));
    if (fd < 0) {
        w->io.v[RELAY_C_peer_send_errors] += (uint64_t)n;
        return 0;
    }
    struct msghdr mh = {.msg_name = (void *)to,
                        .msg_namelen = addr_len(to),
                        .msg_iov = iov,
                        .msg_iovlen = (size_t)n};
    union {
        uint8_t buf[UDP_CTL_LEN];
        struct cmsghdr align;
    } ctl;
    add_mark(&mh, ctl.buf, to->sa.sa_family, m);
    if (n > 1) add_segment_cmsg(&mh, ctl.buf, (uint16_t)seg);
    if (sendmsg(fd, &mh, MSG_DONTWAIT) >= 0) {
        if (n > 1) w->io.v[RELAY_C_peer_gso_sends]++;
        memset(sent, 1, (size_t)n * sizeof(*sent));
        return n;
    }
    if (n == 1 || !(errno == EINVAL || errno == EIO || errno == ENOPROTOOPT)) {
        w->io.v[RELAY_C_peer_send_errors] += (uint64_t)n; /* EAGAIN: the socket buffer is full */
        return 0;
    }
    /* The kernel refused GSO here: one by one, and no more GSO on this worker. */
    w->gso_off = true;
    w->io.v[RELAY_C_peer_gso_fallbacks]++;
    int went = 0;
    for (int i = 0; i < n; i++) {
        struct msghdr m1 = {.msg_name = (void *)to,
                            .msg_namelen = addr_len(to),
                            .msg_iov = &iov[i],
                            .msg_iovlen = 1};
        add_mark(&m1, ctl.buf, to->sa.sa_family, m);
        if (sendmsg(fd, &m1, MSG_DONTWAIT) < 0) {
            w->io.v[RELAY_C_peer_send_errors]++;
            continue;
        }
        sent[i] = true;
        went++;
    }
    return went;
}

int udp_recverr_on(int fd, int family)
{
    int one = 1;
    if (family == AF_INET) return setsockopt(fd, IPPROTO_IP, IP_RECVERR, &one, sizeof(one));
    return setsockopt(fd, IPPROTO_IPV6, IPV6_RECVERR, &one, sizeof(one));
}

int udp_recv_error(int fd, struct udp_icmp *e)
{
    uint8_t data[64]; /* the start of the offending datagram: not needed, only drained */
    struct sockaddr_in6 to;
    union {
        uint8_t buf[256];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = {.iov_base = data, .iov_len = sizeof(data)};
    struct msghdr mh = {.msg_name = &to,
                        .msg_namelen = sizeof(to),
                        .msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = ctl.buf,
                        .msg_controllen = sizeof(ctl.buf)};
    ssize_t k;
    do
        k = recvmsg(fd, &mh, MSG_ERRQUEUE | MSG_DONTWAIT);
    while (k < 0 && errno == EINTR);
    if (k < 0) return 0; /* EAGAIN: the queue is empty */
    memset(e, 0, sizeof(*e));
    addr_from_sockaddr(&e->to, (struct sockaddr *)&to, mh.msg_namelen);
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        bool v4 = c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_RECVERR;
        bool v6 = c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_RECVERR;
        if (!v4 && !v6) continue;
        struct sock_extended_err ee;
        if (c->cmsg_len < CMSG_LEN(sizeof(ee))) continue;
        memcpy(&ee, CMSG_DATA(c), sizeof(ee));
        e->icmp = ee.ee_origin == SO_EE_ORIGIN_ICMP || ee.ee_origin == SO_EE_ORIGIN_ICMP6;
        e->family = ee.ee_origin == SO_EE_ORIGIN_ICMP6 ? AF_INET6 : AF_INET;
        e->type = ee.ee_type;
        e->code = ee.ee_code;
        e->info = ee.ee_info;
    }
    return 1;
}
