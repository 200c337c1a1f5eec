/* udp.c: the UDP listener path: recvmmsg a batch, answer each message, sendmmsg the answers. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "net.h"
#include "worker.h"

#define UDP_BATCH  64   /* datagrams per recvmmsg */
#define UDP_RX_BUF 2048 /* larger datagrams are truncated by the kernel: counted and dropped */
#define UDP_TX_BUF 1280 /* control-plane answers are small; a larger one is not produced */
#define UDP_BUDGET 16   /* batches per wakeup, so one busy socket cannot starve the others */

struct udp_batch {
    struct mmsghdr rx[UDP_BATCH], tx[UDP_BATCH];
    struct iovec riov[UDP_BATCH], tiov[UDP_BATCH];
    struct sockaddr_in6 src[UDP_BATCH]; /* large enough for IPv4 and IPv6 */
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
        b->tx[i].msg_hdr.msg_iov = &b->tiov[i];
        b->tx[i].msg_hdr.msg_iovlen = 1;
    }
    return b;
}

static void send_batch(struct worker *w, int fd, struct udp_batch *b, int n)
{
    int done = 0;
    while (done < n) {
        int k = sendmmsg(fd, b->tx + done, (unsigned)(n - done), MSG_DONTWAIT);
        if (k < 0) {
            if (errno == EINTR) continue;
            /* EAGAIN (socket buffer full) or a per-destination error: lose this one. */
            w->io.v[RELAY_C_udp_send_errors]++;
            done++;
            continue;
        }
        for (int i = done; i < done + k; i++) {
            w->io.v[RELAY_C_udp_tx_datagrams]++;
            w->io.v[RELAY_C_udp_tx_bytes] += b->tx[i].msg_len;
        }
        done += k;
    }
}

void udp_readable(struct worker *w, struct ep_handler *h, uint32_t events)
{
    (void)events;
    struct listener *l = (struct listener *)h;
    struct udp_batch *b = w->batch;
    struct srv_tuple tuple = {.transport = SRV_UDP, .local = l->addr};

    for (int round = 0; round < UDP_BUDGET; round++) {
        for (int i = 0; i < UDP_BATCH; i++) {
            b->rx[i].msg_hdr.msg_name = &b->src[i];
            b->rx[i].msg_hdr.msg_namelen = sizeof(b->src[i]);
            b->rx[i].msg_hdr.msg_flags = 0;
        }
        int n = recvmmsg(h->fd, b->rx, UDP_BATCH, MSG_DONTWAIT, NULL);
        if (n <= 0) return; /* EAGAIN: drained; other errors (ICMP-induced) are transient */
        int nout = 0;
        for (int i = 0; i < n; i++) {
            struct msghdr *mh = &b->rx[i].msg_hdr;
            size_t len = b->rx[i].msg_len;
            w->io.v[RELAY_C_udp_rx_datagrams]++;
            w->io.v[RELAY_C_udp_rx_bytes] += len;
            if (mh->msg_flags & MSG_TRUNC) {
                w->io.v[RELAY_C_udp_drop_truncated]++;
                continue;
            }
            if (!addr_from_sockaddr(&tuple.client, (struct sockaddr *)&b->src[i], mh->msg_namelen)) {
                w->io.v[RELAY_C_udp_drop_addr]++;
                continue;
            }
            size_t out = srv_handle(&w->opt, &tuple, b->in[i], len, w->now_ms, b->out[nout],
                                    UDP_TX_BUF, &w->srv);
            if (!out) continue;
            b->tiov[nout] = (struct iovec){.iov_base = b->out[nout], .iov_len = out};
            b->tx[nout].msg_hdr.msg_name = &b->src[i];
            b->tx[nout].msg_hdr.msg_namelen = mh->msg_namelen;
            nout++;
        }
        if (nout) send_batch(w, h->fd, b, nout);
        if (n < UDP_BATCH) return;
    }
}
