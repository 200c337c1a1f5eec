/* udp.h: the UDP transport, for listeners and relay sockets alike: socket options, receiving
 * a batch with each datagram's metadata, and sending (batched, and as UDP GSO runs). It moves
 * bytes and counts what the kernel did; what a datagram means is fwd.c's business. */
#ifndef TERN_UDP_H
#define TERN_UDP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "server.h"

struct worker;
struct listener;

#define UDP_CTL_LEN 128 /* ancillary room: PKTINFO + UDP_SEGMENT out; timestamp + drops in */
#define UDP_RX_MAX  64  /* datagrams per udp_recv call */

/* One received datagram, as udp_recv reports it. */
struct udp_dgram {
    uint8_t *data;
    size_t len;
    bool ok;               /* false: truncated or not from IPv4/IPv6 (see truncated) */
    bool truncated;        /* larger than the buffer (MSG_TRUNC) */
    union stun_addr from;  /* the sender */
    union stun_addr local; /* the address it was sent to (IP_PKTINFO), when asked for */
    int64_t rx_ns;         /* kernel receive time (SO_TIMESTAMPNS), else the loop's time */
    int tos; /* the IPv4 TOS / IPv6 traffic class byte (DSCP << 2 | ECN); -1: unknown */
};

/* recvmmsg's working memory (per worker; reused by every call). */
struct udp_rxq {
    struct mmsghdr mm[UDP_RX_MAX];
    struct iovec iov[UDP_RX_MAX];
    struct sockaddr_in6 src[UDP_RX_MAX]; /* large enough for IPv4 and IPv6 */
    uint8_t ctl[UDP_RX_MAX][UDP_CTL_LEN];
};

/* Kernel receive timestamps on fd from now on (qos.enabled turned on by a reload). */
void udp_timestamps_on(int fd);
/* Ask for kernel receive timestamps (only when the QoS tap is on: they cost a clock read per
 * packet in the kernel), kernel drop counts and each datagram's TOS / traffic class on fd (of
 * this address family). */
void udp_rx_options(const struct worker *w, int fd, int family);
/* Ask for each datagram's local address (wildcard listeners). 0 or -1. */
int udp_listener_setup(int fd, int family);
/* Large socket buffers for a UDP listener (best effort). */
void udp_listener_buffers(int fd);

/* Receive up to n (<= UDP_RX_MAX) datagrams from fd into buf0, buf0 + stride, ... (cap bytes
 * each) and describe them in d. *ovfl: the kernel's drop count for fd as last seen; growth is
 * counted in kernel_rx_overflow. local_default (NULL: none): reported as d->local unless a
 * PKTINFO says otherwise. Returns how many buffers were used (0: none waiting), good or not. */
int udp_recv(struct worker *w, int fd, struct udp_rxq *q, uint8_t *buf0, size_t stride, size_t cap,
             int n, const union stun_addr *local_default, uint32_t *ovfl, struct udp_dgram *d);

/* An error the kernel queued on a UDP socket (IP_RECVERR / IPV6_RECVERR): for a relay
 * socket, an ICMP error about a datagram it sent to a peer. */
struct udp_icmp {
    union stun_addr to; /* the destination of the datagram that caused it */
    bool icmp;          /* reported by an ICMP or ICMPv6 message (else a local error) */
    int family;         /* AF_INET: ICMPv4 numbering; AF_INET6: ICMPv6 */
    uint8_t type, code; /* as that family numbers them */
    uint32_t info;      /* the next-hop MTU of "fragmentation needed" / "packet too big" */
};
/* Queue ICMP errors about sent datagrams on fd's error queue (relay sockets). 0 or -1. */
int udp_recverr_on(int fd, int family);
/* Take the next error from fd's error queue: 1 (*e set), 0 none left. */
int udp_recv_error(int fd, struct udp_icmp *e);

/* How a datagram leaves: its TOS / traffic class byte and its socket priority (SO_PRIORITY,
 * which the egress qdisc classifies by). {0, 0}: the socket's defaults, no control message. */
struct udp_mark {
    uint8_t tos;
    uint32_t prio;
};
static inline bool udp_mark_equal(struct udp_mark a, struct udp_mark b)
{
    return a.tos == b.tos && a.prio == b.prio;
}

/* Fill mh to send iov to client t->client through listener l, from t->local when l is a
 * wildcard, marked with m (ctl: room for the ancillary data). */
void udp_prepare(struct msghdr *mh, const struct listener *l, const struct srv_tuple *t,
                 struct iovec *iov, struct udp_mark m, uint8_t ctl[UDP_CTL_LEN]);
/* sendmmsg n prepared messages on a listener's fd, counting what went and what was lost. */
void udp_send_batch(struct worker *w, int fd, struct mmsghdr *tx, int n);
/* Send n datagrams (iov[i] to client t[i] through listener l[i], marked mark[i]; mark NULL:
 * all {0, 0}): one sendmmsg per listener, runs of equal size and mark to one client coalesced
 * into UDP GSO sends; tx and ctl: room for n messages. Counts what went and what was lost. */
#define UDP_SEND_MAX 128 /* datagrams per udp_send_clients call (larger calls are split) */
void udp_send_clients(struct worker *w, const struct listener *const *l, const struct srv_tuple *t,
                      struct iovec *iov, const struct udp_mark *mark, int n, struct mmsghdr *tx,
                      uint8_t (*ctl)[UDP_CTL_LEN]);
/* Send a run of n datagrams to one peer from a relay socket, all marked m: one UDP GSO send of
 * segments of seg bytes (the last may be shorter) when n > 1, falling back to one by one (and no
 * more GSO on this worker) if the kernel refuses. sent[i] says which went. Counts the relay-socket
 * send counters (peer_gso_*, peer_send_errors); returns how many went. */
int udp_send_run(struct worker *w, int fd, const union stun_addr *to, struct iovec *iov, int n,
                 size_t seg, struct udp_mark m, bool *sent);

#endif
