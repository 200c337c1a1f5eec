/* fwd.c: tern-fwd, the bare UDP forwarder of the benchmark: the floor of any user-space relay.
 *
 * Protocol (IPv4): every datagram starts with an 8-byte return-address tag. A datagram from a
 * client reaching the listening socket gets the client's address written into its tag
 * (4 bytes address, 2 bytes port, both network order, then 0xFFFF) and is sent, unchanged
 * otherwise, from a second socket to the one fixed peer (--peer). The peer echoes it; a
 * datagram reaching the second socket is sent from the listening socket to the address in its
 * tag. There is no table, no lookup and no check beyond the tag: per packet the work is one
 * receive, an 8-byte write or read and one send, in batches of recvmmsg/sendmmsg. With --gso,
 * runs of consecutive same-destination, same-size datagrams of a batch leave as one sendmsg
 * with UDP_SEGMENT.
 *
 * Usage: tern-fwd --listen ADDR:PORT --peer ADDR:PORT [--batch N] [--gso]
 * Prints {"event":"listening","port":P} once bound, and its counters as one JSON line on
 * SIGTERM/SIGINT. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "benchutil.h"

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif

#define MAX_BATCH 64
#define BUF_SIZE  2048
#define TAG_LEN   8
#define GSO_MAX   64    /* segments per GSO send (the kernel's UDP_MAX_SEGMENTS is >= 64) */
#define GSO_BYTES 65000 /* payload bytes per GSO send */

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static int udp_socket(const struct sockaddr_in *bind_to)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int sz = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof sz);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sz, sizeof sz);
    if (bind(fd, (const struct sockaddr *)bind_to, sizeof *bind_to) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

struct batch {
    struct mmsghdr rx[MAX_BATCH];
    struct iovec rxiov[MAX_BATCH];
    struct sockaddr_in from[MAX_BATCH];
    struct sockaddr_in to[MAX_BATCH];
    uint8_t buf[MAX_BATCH][BUF_SIZE];
    /* transmit side: one mmsghdr per datagram (plain) or per run (GSO) */
    struct mmsghdr tx[MAX_BATCH];
    struct iovec txiov[MAX_BATCH];
    union {
        char raw[CMSG_SPACE(sizeof(uint16_t))];
        struct cmsghdr align;
    } ctl[MAX_BATCH];
};

struct stats {
    uint64_t rx, tx, tx_fail, short_drop, gso_sends, syscalls_rx, syscalls_tx;
};

/* Send n prepared datagrams (buffers b->buf, lengths in rx[].msg_len, destinations b->to)
 * from fd; with gso, runs of same destination and size become one UDP_SEGMENT send. */
static void send_batch(int fd, struct batch *b, unsigned n, bool gso, struct stats *st)
{
    unsigned nt = 0;
    for (unsigned i = 0; i < n;) {
        unsigned j = i + 1;
        size_t len = b->rx[i].msg_len, total = len;
        if (gso) {
            while (j < n && j - i < GSO_MAX &&
                   b->to[j].sin_addr.s_addr == b->to[i].sin_addr.s_addr &&
                   b->to[j].sin_port == b->to[i].sin_port &&
                   total + b->rx[j].msg_len <= GSO_BYTES && b->rx[j].msg_len <= len) {
                total += b->rx[j].msg_len;
                if (b->rx[j++].msg_len < len) break; /* a shorter datagram ends the run */
            }
        }
        struct msghdr *h = &b->tx[nt].msg_hdr;
        memset(h, 0, sizeof *h);
        for (unsigned k = i; k < j; k++) {
            b->txiov[k].iov_base = b->buf[k];
            b->txiov[k].iov_len = b->rx[k].msg_len;
        }
        h->msg_iov = &b->txiov[i];
        h->msg_iovlen = j - i;
        h->msg_name = &b->to[i];
        h->msg_namelen = sizeof b->to[i];
        if (j - i > 1) {
            h->msg_control = b->ctl[nt].raw;
            h->msg_controllen = sizeof b->ctl[nt].raw;
            struct cmsghdr *c = CMSG_FIRSTHDR(h);
            c->cmsg_level = SOL_UDP;
            c->cmsg_type = UDP_SEGMENT;
            c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
            uint16_t seg = (uint16_t)len;
            memcpy(CMSG_DATA(c), &seg, sizeof seg);
            st->gso_sends++;
        }
        b->tx[nt].msg_len = j - i; /* remember the datagram count of this entry */
        nt++;
        i = j;
    }
    unsigned done = 0;
    while (done < nt) {
        /* msg_len is overwritten by the kernel: keep the counts aside */
        unsigned counts[MAX_BATCH];
        for (unsigned k = done; k < nt; k++)
            counts[k] = b->tx[k].msg_len;
        int k = sendmmsg(fd, &b->tx[done], nt - done, 0);
        st->syscalls_tx++;
        if (k < 0) {
            if (errno == EINTR) continue;
            for (unsigned m = done; m < nt; m++)
                st->tx_fail += counts[m];
            return;
        }
        for (int m = 0; m < k; m++)
            st->tx += counts[done + (unsigned)m];
        done += (unsigned)k;
        if (done < nt) { /* the first unsent one failed: count it, go on */
            st->tx_fail += counts[done];
            done++;
            for (unsigned m = done; m < nt; m++)
                b->tx[m].msg_len = counts[m];
        }
    }
}

/* Drain one socket: receive batches until it is empty, forward each. */
static void pump(int in, int out, bool from_client, const struct sockaddr_in *peer, struct batch *b,
                 unsigned batch, bool gso, struct stats *st)
{
    for (;;) {
        for (unsigned i = 0; i < batch; i++) {
            b->rxiov[i].iov_base = b->buf[i];
            b->rxiov[i].iov_len = BUF_SIZE;
            memset(&b->rx[i].msg_hdr, 0, sizeof b->rx[i].msg_hdr);
            b->rx[i].msg_hdr.msg_iov = &b->rxiov[i];
            b->rx[i].msg_hdr.msg_iovlen = 1;
            b->rx[i].msg_hdr.msg_name = &b->from[i];
            b->rx[i].msg_hdr.msg_namelen = sizeof b->from[i];
        }
        int n = recvmmsg(in, b->rx, batch, MSG_DONTWAIT, NULL);
        st->syscalls_rx++;
        if (n <= 0) return;
        st->rx += (unsigned)n;
        unsigned keep = 0;
        for (int i = 0; i < n; i++) {
            uint8_t *p = b->buf[i];
            if (b->rx[i].msg_len < TAG_LEN) {
                st->short_drop++;
                continue;
            }
            if (keep != (unsigned)i) {
                memcpy(b->buf[keep], p, b->rx[i].msg_len);
                b->rx[keep].msg_len = b->rx[i].msg_len;
                b->from[keep] = b->from[i];
                p = b->buf[keep];
            }
            if (from_client) {
                memcpy(p, &b->from[keep].sin_addr, 4);
                memcpy(p + 4, &b->from[keep].sin_port, 2);
                p[6] = p[7] = 0xFF;
                b->to[keep] = *peer;
            } else {
                memset(&b->to[keep], 0, sizeof b->to[keep]);
                b->to[keep].sin_family = AF_INET;
                memcpy(&b->to[keep].sin_addr, p, 4);
                memcpy(&b->to[keep].sin_port, p + 4, 2);
            }
            keep++;
        }
        if (keep) send_batch(out, b, keep, gso, st);
        if ((unsigned)n < batch) return;
    }
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"listen", required_argument, NULL, 'l'}, {"peer", required_argument, NULL, 'p'},
        {"batch", required_argument, NULL, 'b'},  {"gso", no_argument, NULL, 'g'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
    };
    struct sockaddr_in listen_at, peer, any = {.sin_family = AF_INET};
    bool have_listen = false, have_peer = false, gso = false;
    unsigned batch = 64;
    int opt;
    while ((opt = getopt_long(argc, argv, "l:p:b:gh", opts, NULL)) != -1) {
        switch (opt) {
        case 'l':
            have_listen = parse_hostport(optarg, &listen_at) == 0;
            break;
        case 'p':
            have_peer = parse_hostport(optarg, &peer) == 0;
            break;
        case 'b':
            batch = (unsigned)atoi(optarg);
            break;
        case 'g':
            gso = true;
            break;
        default:
            fprintf(opt == 'h' ? stdout : stderr,
                    "Usage: tern-fwd --listen ADDR:PORT --peer ADDR:PORT [--batch N] [--gso]\n");
            return opt == 'h' ? 0 : 2;
        }
    }
    if (!have_listen || !have_peer || batch < 1 || batch > MAX_BATCH) {
        fprintf(stderr, "tern-fwd: --listen and --peer (IPv4 ADDR:PORT) are required, batch 1-%d\n",
                MAX_BATCH);
        return 2;
    }
    any.sin_addr = listen_at.sin_addr;
    int a = udp_socket(&listen_at), b = udp_socket(&any);
    if (a < 0 || b < 0) {
        fprintf(stderr, "tern-fwd: bind: %s\n", strerror(errno));
        return 1;
    }
    struct sockaddr_in bound;
    socklen_t bl = sizeof bound;
    getsockname(a, (struct sockaddr *)&bound, &bl);
    printf("{\"event\":\"listening\",\"port\":%u,\"gso\":%s,\"batch\":%u}\n", ntohs(bound.sin_port),
           gso ? "true" : "false", batch);
    fflush(stdout);

    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = 0};
    epoll_ctl(ep, EPOLL_CTL_ADD, a, &ev);
    ev.data.u32 = 1;
    epoll_ctl(ep, EPOLL_CTL_ADD, b, &ev);

    struct batch *bt = calloc(1, sizeof *bt);
    struct stats st = {0};
    if (!bt) return 1;
    while (!stop) {
        struct epoll_event evs[2];
        int n = epoll_wait(ep, evs, 2, -1);
        for (int i = 0; i < n; i++) {
            if (evs[i].data.u32 == 0)
                pump(a, b, true, &peer, bt, batch, gso, &st);
            else
                pump(b, a, false, &peer, bt, batch, gso, &st);
        }
    }
    fprintf(stderr,
            "{\"event\":\"stopped\",\"rx\":%llu,\"tx\":%llu,\"tx_fail\":%llu,\"short_drop\":%llu,"
            "\"gso_sends\":%llu,\"recvmmsg\":%llu,\"sendmmsg\":%llu}\n",
            (unsigned long long)st.rx, (unsigned long long)st.tx, (unsigned long long)st.tx_fail,
            (unsigned long long)st.short_drop, (unsigned long long)st.gso_sends,
            (unsigned long long)st.syscalls_rx, (unsigned long long)st.syscalls_tx);
    free(bt);
    close(ep);
    close(a);
    close(b);
    return 0;
}
