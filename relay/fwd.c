/* fwd.c: the forwarding path: every relayed datagram, both directions, in one file.
 *
 * The transports below only move bytes (udp.c: recvmmsg/sendmmsg, GSO; tcp.c: connections,
 * TLS, stream framing); the TURN server (allocation/server.c) decides; the QoS tap
 * (qos/qos.c) measures. This file is where they meet. docs/datapath.md tells the same story
 * with the reasons; read it first.
 *
 * Life of a datagram, client -> peer (UDP client):
 *   1. fwd_udp_readable: the listener is readable (epoll, worker.c). It first sends what waits
 *      for UDP clients (flush_clients), then receives a batch with udp_recv (udp.c): per
 *      datagram the source, the local address (PKTINFO) and the kernel receive time.
 *   2. client_msg: each datagram goes to srv_handle (server.c), which answers it (a STUN
 *      response, written into the batch's answer slot) or returns a forwarding decision
 *      (struct srv_fwd: allocation, relay socket, peer, payload) or counts a drop. Before a
 *      STUN message the train is flushed: a Refresh 0 may free what it holds.
 *   3. to_peer: the QoS tap measures the payload (leg "client": what the client sent, with
 *      its TOS byte), out_mark picks the TOS it leaves with (RFC 8656 14: ECN carried,
 *      DSCP per qos.dscp), and it joins the train, which holds consecutive datagrams to one
 *      peer through one relay socket with one TOS while the batch is handled.
 *   4. train_flush: the train goes out as one UDP GSO send (udp_send_run); sent_to_peer then
 *      counts each datagram that went and notes its residence time.
 *   5. batch_end: the train is flushed, the batch's residence times observed with one clock
 *      read, and the answers go out with one sendmmsg (udp_send_batch).
 *   Over TCP/TLS the same steps run from fwd_tcp_event, frame by frame, with no train: the
 *   data is sent to the peer at once.
 *
 * Life of a datagram, peer -> client:
 *   1. fwd_peer_readable: a relay socket is readable. udp_recv fills free slots of the peer
 *      batch, each with headroom in front of the payload.
 *   2. srv_peer_data (server.c) checks the permission and frames the payload in place, as
 *      ChannelData or a Data indication, writing only into the headroom and tailroom.
 *   3. The tap measures it (leg "peer"); for a UDP client it is queued in its slot (to whom,
 *      through which listener, when received, the TOS it leaves with); for a TCP/TLS client
 *      it is written to the connection at once (tcp_send_client; the TOS is not carried).
 *   4. flush_clients: the queue goes out, many relay sockets' worth, with one sendmmsg per
 *      listener and runs to one client as GSO sends (udp_send_clients).
 *
 * Flush points. The peer->client queue is flushed once per loop pass (fwd_flush, called by
 * the worker loop after the pass's events), and earlier only when the slots run out or before
 * a client batch is received (so peer data never waits behind a long client batch). The
 * client->peer train lives only within one client batch (flushed at batch_end, before any
 * STUN message, or when the next datagram cannot join it).
 *
 * Drops are counted where they happen: the server counts every refused message in its drop_
 * counters (server.h); this file counts truncated datagrams and datagrams from non-IP sources;
 * udp.c counts send failures and kernel receive-queue overflows.
 *
 * The kernel fast path (XDP) will plug in beside step 1 of both directions: datagrams of
 * bound channels that the BPF program forwards never reach fwd_udp_readable or
 * fwd_peer_readable; everything it does not handle arrives here unchanged. Its counters and
 * QoS maps are merged into the same views by the ops queries (query.c). */
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>

#include "addr.h"
#include "dtls.h"
#include "fwd.h"
#include "mobility.h"
#include "offload.h"
#include "tcp.h"
#include "tcprelay.h"
#include "timeline.h"
#include "udp.h"
#include "worker.h"

/* ---- the batches: a worker's receive and send memory, made once ---- */

#define CLIENT_BATCH  UDP_RX_MAX /* datagrams per recvmmsg on a listener */
#define CLIENT_RX_BUF 65536      /* any UDP datagram; a slot's pages become resident when used */
#define CLIENT_TX_BUF 1280       /* control-plane answers are small; a larger one is not made */
#define CLIENT_BUDGET 16         /* batches per wakeup, so one busy socket cannot starve others */

#define PEER_BATCH       32    /* datagrams per recvmmsg on a relay socket */
#define PEER_SLOTS       128   /* receive buffers: what is framed for UDP clients waits in them */
#define PEER_DATA        65536 /* any UDP datagram */
#define PEER_BUDGET      8     /* batches per wakeup */
#define PEER_SLOT        (SRV_PEER_HEADROOM + PEER_DATA + SRV_PEER_TAILROOM + 1)
#define PEER_ICMP_BUDGET 64 /* queued errors taken per wakeup */

#define TRAIN_MAX_SEGMENTS  64
#define TRAIN_MAX_BYTES     65000
#define TRAIN_MAX_SEGSIZE   1472 /* larger segments could exceed the device MTU */
#define TRAIN_MAX_RESIDENCE CLIENT_BATCH

/* A UDP listener's batch: datagrams in, answers out. */
struct client_batch {
    struct udp_dgram d[CLIENT_BATCH];
    struct srv_tuple tuple[CLIENT_BATCH];
    struct mmsghdr tx[CLIENT_BATCH];
    struct iovec tiov[CLIENT_BATCH];
    uint8_t tctl[CLIENT_BATCH][UDP_CTL_LEN];
    uint8_t in[CLIENT_BATCH][CLIENT_RX_BUF];
    uint8_t out[CLIENT_BATCH][CLIENT_TX_BUF];
};

/* Client data bound for peers, held while a UDP batch is handled, so that consecutive
 * datagrams to one peer through one relay socket go out as one UDP GSO send. */
struct train {
    struct relay_sock *rs;
    struct allocation *a;
    union stun_addr peer;
    size_t seg, total;
    bool closed; /* a shorter datagram ended the run */
    int n;
    struct iovec iov[TRAIN_MAX_SEGMENTS];
    int64_t rx_ns[TRAIN_MAX_SEGMENTS];
    struct udp_mark mark; /* every datagram of a train leaves with the same TOS and priority */
    int nres;             /* datagrams sent during this batch whose residence is still to observe */
    int64_t res_rx[TRAIN_MAX_RESIDENCE];
};

/* Peer datagrams: received into slots with headroom, framed in place, and (for UDP clients)
 * queued in their slots until flush_clients. */
struct peer_batch {
    struct udp_dgram d[PEER_BATCH];
    int used;                        /* slots taken since the last flush */
    int nq;                          /* queued datagrams */
    struct iovec qiov[PEER_SLOTS];   /* framed message, inside its slot */
    struct srv_tuple qt[PEER_SLOTS]; /* to whom (a copy: the allocation may go first) */
    const struct listener *ql[PEER_SLOTS];
    int64_t qrx[PEER_SLOTS];           /* its kernel receive time */
    struct udp_mark qmark[PEER_SLOTS]; /* the TOS and priority it leaves with */
    struct mmsghdr tx[PEER_SLOTS];
    uint8_t tctl[PEER_SLOTS][UDP_CTL_LEN];
    uint8_t buf[PEER_SLOTS][PEER_SLOT];
};

struct fwd {
    struct udp_rxq rxq;
    bool train_on; /* a UDP client batch is being handled: forwards wait in the train */
    struct train train;
    struct client_batch cb;
    struct peer_batch pb;
};

struct fwd *fwd_new(void)
{
    return calloc(1, sizeof(struct fwd));
}

void fwd_free(struct fwd *f)
{
    free(f);
}

static int64_t realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- the QoS tap ---- */

/* The QoS meter of a, made on first use (NULL when out of memory: nothing is measured). */
static struct qos_alloc *meter(struct worker *w, struct allocation *a)
{
    if (!a->qos) a->qos = timeline_meter(w, a);
    return a->qos;
}

/* What the tap found out about one payload: its class and, for RTP, its stream's kind. */
struct pkt_class {
    enum qos_class cls;
    enum qos_kind kind;
};

/* Measure one forwarded payload of allocation a from leg (tos: as received, -1 unknown). */
static inline struct pkt_class tap(struct worker *w, struct allocation *a, enum qos_leg leg,
                                   const union stun_addr *peer, const uint8_t *p, size_t len,
                                   int64_t rx_ns, int tos)
{
    struct pkt_class pc = {QOS_CLASS_OTHER, QOS_KIND_UNKNOWN};
    struct qos_alloc *q = meter(w, a);
    if (!q) return pc;
    if (w->offload) offload_tap_begin(w, a, leg, peer, p, len);
    pc.cls = qos_packet_tos(q, &w->qm, leg, peer, p, len, rx_ns, tos, &pc.kind);
    if (w->offload) offload_tap_end(w, a, leg, peer, p, len);
    return pc;
}

/* How a relayed datagram leaves. The TOS / traffic class (RFC 8656 14): ECN goes on as it
 * came; DSCP as qos.dscp says (by-class: EF for audio RTP, AF41 for video, CS0 for the
 * rest). in: as received, -1 when unknown (a TCP/TLS leg carries no per-datagram TOS). The
 * socket priority, with qos.priority: STUN and audio first, then video, then the rest (the
 * values of qos.priority_classes), so that a priority-aware egress qdisc serves audio first
 * when the uplink is saturated. */
#define DSCP_EF   46
#define DSCP_AF41 34
static struct udp_mark out_mark(const struct worker *w, int in, struct pkt_class pc)
{
    const struct tern_config *cfg = w->cfg;
    struct udp_mark m = {0, 0};
    uint8_t ecn = in >= 0 ? (uint8_t)(in & 3) : 0;
    switch (cfg->qos_dscp) {
    case CFG_DSCP_PRESERVE:
        m.tos = in >= 0 ? (uint8_t)in : 0;
        break;
    case CFG_DSCP_ZERO:
        m.tos = ecn;
        break;
    default:
        m.tos = (uint8_t)((pc.kind == QOS_KIND_AUDIO   ? DSCP_EF << 2
                           : pc.kind == QOS_KIND_VIDEO ? DSCP_AF41 << 2
                                                       : 0) |
                          ecn);
    }
    if (cfg->qos_priority)
        m.prio = pc.cls == QOS_CLASS_STUN || pc.kind == QOS_KIND_AUDIO ? cfg->qos_prio_audio
                 : pc.kind == QOS_KIND_VIDEO                           ? cfg->qos_prio_video
                                                                       : cfg->qos_prio_other;
    return m;
}

/* ---- client -> peer ---- */

/* Count the datagrams that went to a peer, and observe their residence times. */
static void sent_to_peer(struct worker *w, struct allocation *a, const struct iovec *iov,
                         const int64_t *rx_ns, const bool *sent, int n)
{
    struct train *t = &w->fwd->train;
    for (int i = 0; i < n; i++) {
        if (!sent[i]) {
            if (a->qos) qos_drop(a->qos, QOS_LEG_CLIENT, QOS_DROP_SEND, 1);
            continue;
        }
        a->pkts_to_peer++;
        a->bytes_to_peer += iov[i].iov_len;
        w->io.v[RELAY_C_peer_tx_datagrams]++;
        w->io.v[RELAY_C_peer_tx_bytes] += iov[i].iov_len;
        if (!w->qos_on) continue;
        /* Residence: during a UDP batch, one clock read at its end serves every datagram
         * (batch_end), an upper bound by at most the batch's own handling time. */
        if (w->fwd->train_on && t->nres < TRAIN_MAX_RESIDENCE)
            t->res_rx[t->nres++] = rx_ns[i];
        else
            qos_observe_residence(&w->qm, QOS_LEG_CLIENT, realtime_ns() - rx_ns[i]);
    }
}

/* Send what the train holds. */
static void train_flush(struct worker *w)
{
    struct train *t = &w->fwd->train;
    if (!t->n) return;
    int n = t->n;
    t->n = 0;
    bool sent[TRAIN_MAX_SEGMENTS];
    udp_send_run(w, t->rs->h.fd, &t->peer, t->iov, n, t->seg, t->mark, sent);
    sent_to_peer(w, t->a, t->iov, t->rx_ns, sent, n);
}

/* Hand one client datagram's payload to the peer the server chose (tos_in: the TOS it came
 * with, -1 unknown). The tap measures it here, as it arrived: what the client sent. */
static void to_peer(struct worker *w, const struct srv_fwd *f, int64_t rx_ns, int tos_in)
{
    struct relay_sock *rs = f->relay->io;
    if (!rs || rs->h.fd < 0) return;
    if (f->dont_fragment && !rs->dont_fragment) {
        /* DONT-FRAGMENT on a Send indication: from now on this socket sets DF. */
        train_flush(w);
        int v4 = IP_PMTUDISC_DO, v6 = 1;
        if (rs->family == AF_INET)
            setsockopt(rs->h.fd, IPPROTO_IP, IP_MTU_DISCOVER, &v4, sizeof(v4));
        else
            setsockopt(rs->h.fd, IPPROTO_IPV6, IPV6_DONTFRAG, &v6, sizeof(v6));
        rs->dont_fragment = true;
    }
    struct pkt_class pc = {QOS_CLASS_OTHER, QOS_KIND_UNKNOWN};
    if (w->qos_on) pc = tap(w, f->a, QOS_LEG_CLIENT, &f->peer, f->data, f->len, rx_ns, tos_in);
    struct udp_mark mark = out_mark(w, tos_in, pc);
    struct iovec v = {.iov_base = (void *)f->data, .iov_len = f->len};
    if (!w->fwd->train_on) { /* TCP/TLS client data: at once */
        bool sent;
        udp_send_run(w, rs->h.fd, &f->peer, &v, 1, f->len, mark, &sent);
        sent_to_peer(w, f->a, &v, &rx_ns, &sent, 1);
        return;
    }
    struct train *t = &w->fwd->train;
    if (t->n && (t->rs != rs || t->closed || f->len > t->seg || t->n == TRAIN_MAX_SEGMENTS ||
                 t->total + f->len > TRAIN_MAX_BYTES || !udp_mark_equal(t->mark, mark) ||
                 !addr_equal(&t->peer, &f->peer)))
        train_flush(w);
    if (!t->n) {
        t->rs = rs;
        t->mark = mark;
        t->a = f->a;
        t->peer = f->peer;
        t->seg = f->len;
        t->total = 0;
        /* A segment size GSO cannot take (or GSO off) makes a train of one. */
        t->closed = w->gso_off || f->len > TRAIN_MAX_SEGSIZE || f->len == 0;
    } else if (f->len < t->seg) {
        t->closed = true;
    }
    t->iov[t->n] = v;
    t->rx_ns[t->n] = rx_ns;
    t->total += f->len;
    t->n++;
}

/* One message from a client: the server answers it (returns the answer's length in out, 0
 * for none), forwards its payload, or counts a drop. */
static size_t client_msg(struct worker *w, const struct srv_tuple *t, void *client_io,
                         const uint8_t *in, size_t len, int64_t rx_ns, int tos, uint8_t *out,
                         size_t outcap, struct srv_tconn **bound)
{
    struct srv_fwd f;
    /* A STUN message may delete an allocation (or a relay socket): what the train holds goes
     * first. ChannelData never deletes anything. */
    if (w->fwd->train_on && len && (in[0] & 0xC0) != 0x40) train_flush(w);
    size_t n = srv_handle(&w->srv, t, client_io, in, len, w->now_ms, out, outcap, &f);
    if (f.a) to_peer(w, &f, rx_ns, tos);
    if (f.moved) mobility_moved(w, f.moved, &f.moved_from, w->id); /* RFC 8016, this worker */
    if (bound) *bound = f.bound;
    return n;
}

/* The end of a UDP client batch: flush the train, observe the residence times, stop holding. */
static void batch_end(struct worker *w)
{
    struct train *t = &w->fwd->train;
    train_flush(w);
    if (t->nres) {
        int64_t now = realtime_ns();
        for (int i = 0; i < t->nres; i++)
            qos_observe_residence(&w->qm, QOS_LEG_CLIENT, now - t->res_rx[i]);
        t->nres = 0;
    }
    w->fwd->train_on = false;
}

static void flush_clients(struct worker *w);

static void udp_readable(struct worker *w, struct ep_handler *h);

void fwd_udp_readable(struct worker *w, struct ep_handler *h, uint32_t events)
{
    (void)events;
    struct listener *l = (struct listener *)h;
    if (!l->retired) {
        udp_readable(w, h);
        return;
    }
    /* A listener a reload removed serves the allocations made through it until they end, and
     * turns new Allocates away as a draining relay does (300 to an alternate, else 508). */
    bool draining = w->srv.draining;
    w->srv.draining = true;
    udp_readable(w, h);
    w->srv.draining = draining;
}

static void udp_readable(struct worker *w, struct ep_handler *h)
{
    struct listener *l = (struct listener *)h;
    struct client_batch *b = &w->fwd->cb;
    /* Peer datagrams queued for clients go first: a client batch may take a while. */
    flush_clients(w);
    for (int round = 0; round < CLIENT_BUDGET; round++) {
        int n = udp_recv(w, h->fd, &w->fwd->rxq, b->in[0], CLIENT_RX_BUF, CLIENT_RX_BUF,
                         CLIENT_BATCH, &l->addr, &l->rxq_ovfl, b->d);
        if (!n) return;
        int nout = 0;
        w->fwd->train_on = true;
        for (int i = 0; i < n; i++) {
            const struct udp_dgram *d = &b->d[i];
            w->io.v[RELAY_C_udp_rx_datagrams]++;
            w->io.v[RELAY_C_udp_rx_bytes] += d->len;
            if (!d->ok) {
                w->io.v[d->truncated ? RELAY_C_udp_drop_truncated : RELAY_C_udp_drop_addr]++;
                continue;
            }
            struct srv_tuple *t = &b->tuple[nout];
            *t = (struct srv_tuple){.transport = SRV_UDP, .client = d->from, .local = d->local};
            /* RFC 8016: a client that moved to this worker, its allocation on another. */
            int owner = w->relay->nworkers > 1 && w->srv.opt.mobility &&
                                d->len >= STUN_HEADER_LEN && d->data[0] == 0 &&
                                d->data[1] == STUN_REFRESH /* a Refresh request: cheap first */
                            ? srv_mobility_owner(&w->srv, t, d->data, d->len, w->relay->nworkers)
                            : -1;
            if (owner >= 0) {
                mobility_pass(w, (unsigned)owner, l, t, d->data, d->len);
                continue;
            }
            size_t out = client_msg(w, t, l, d->data, d->len, d->rx_ns, d->tos, b->out[nout],
                                    CLIENT_TX_BUF, NULL);
            if (!out) continue;
            b->tiov[nout] = (struct iovec){.iov_base = b->out[nout], .iov_len = out};
            udp_prepare(&b->tx[nout].msg_hdr, l, t, &b->tiov[nout], (struct udp_mark){0, 0},
                        b->tctl[nout]);
            nout++;
        }
        batch_end(w); /* before the buffers are reused */
        if (nout) udp_send_batch(w, h->fd, b->tx, nout);
        if (n < CLIENT_BATCH) return;
    }
}

/* A dtls listener: the same batches as a UDP listener; each datagram goes to its session
 * (dtls_input: or to the cookie exchange), and each record decrypted from it through the same
 * client_msg as a UDP datagram, with the datagram's kernel time and TOS (so the QoS tap and
 * the marks see what they see over UDP), joining the same train. A record is decrypted into
 * the datagram's own slot, past the ones before it (OpenSSL has copied the ciphertext out by
 * then), so what the train holds stays intact until batch_end. Answers are encrypted and sent
 * at once through the session. */
static void dtls_readable(struct worker *w, struct listener *l)
{
    struct client_batch *b = &w->fwd->cb;
    flush_clients(w);
    for (int round = 0; round < CLIENT_BUDGET; round++) {
        int n = udp_recv(w, l->h.fd, &w->fwd->rxq, b->in[0], CLIENT_RX_BUF, CLIENT_RX_BUF,
                         CLIENT_BATCH, &l->addr, &l->rxq_ovfl, b->d);
        if (!n) return;
        w->fwd->train_on = true;
        for (int i = 0; i < n; i++) {
            const struct udp_dgram *d = &b->d[i];
            w->io.v[RELAY_C_dtls_rx_datagrams]++;
            w->io.v[RELAY_C_dtls_rx_bytes] += d->len;
            if (!d->ok) {
                w->io.v[d->truncated ? RELAY_C_udp_drop_truncated : RELAY_C_udp_drop_addr]++;
                continue;
            }
            struct dtls_sess *s = dtls_input(w, l, d);
            size_t off = 0;
            int k;
            while (s && off < CLIENT_RX_BUF &&
                   (k = dtls_read(w, s, b->in[i] + off, CLIENT_RX_BUF - off)) > 0) {
                size_t out = client_msg(w, dtls_tuple(s), s, b->in[i] + off, (size_t)k, d->rx_ns,
                                        d->tos, b->out[0], CLIENT_TX_BUF, NULL);
                off += (size_t)k;
                if (out) dtls_send_client(w, s, b->out[0], out, (struct udp_mark){0, 0});
            }
        }
        batch_end(w); /* before the buffers are reused */
        if (n < CLIENT_BATCH) return;
    }
}

void fwd_dtls_readable(struct worker *w, struct ep_handler *h, uint32_t events)
{
    (void)events;
    struct listener *l = (struct listener *)h;
    /* Retired: its sessions go on, new Allocates on them are turned away (as over UDP). */
    bool draining = w->srv.draining;
    if (l->retired) w->srv.draining = true;
    dtls_readable(w, l);
    w->srv.draining = draining;
}

/* The complete frames in c's buffer. false: stop (c closed, bound as a data connection, or
 * handed to another worker). */
static bool tcp_frames(struct worker *w, struct tcp_conn *c)
{
    const uint8_t *msg;
    size_t len;
    int r;
    while ((r = tcp_frame(w, c, &msg, &len)) > 0) {
        /* RFC 6062 with several workers: a ConnectionBind for another worker's CONNECTION-ID
         * goes there with its connection (the owner answers it, credentials and all). */
        int owner = srv_connection_bind_owner(&w->srv, tcp_tuple(c), msg, len, w->relay->nworkers);
        if (owner >= 0) {
            tcp_handoff(w, c, len, &w->relay->workers[owner]);
            return false;
        }
        uint8_t out[CLIENT_TX_BUF];
        struct srv_tconn *bound = NULL;
        size_t n =
            client_msg(w, tcp_tuple(c), c, msg, len, w->now_ns, -1, out, sizeof(out), &bound);
        if (n && !tcp_send_client(w, c, out, n)) { /* closed: c is gone */
            if (bound) {
                bound->data_io = NULL;
                srv_tconn_end(&w->srv, bound);
            }
            return false;
        }
        if (bound) { /* ConnectionBind: what follows is the client's raw data */
            tcp_frames_done(c);
            tcprelay_bind(w, c, bound);
            return false;
        }
    }
    if (r < 0) return false;
    tcp_frames_done(c);
    return true;
}

void fwd_tcp_event(struct worker *w, struct ep_handler *h, uint32_t events)
{
    struct tcp_conn *c = (struct tcp_conn *)h;
    if (tcp_tconn(c)) { /* an RFC 6062 data connection: raw bytes (tcprelay.c) */
        tcprelay_data_event(w, c, events);
        return;
    }
    if (!tcp_io(w, c, events)) return;
    /* Handed over by another worker (tcp_handoff_event): its frames are in the buffer. */
    if (events & TCP_EV_ADOPTED && !tcp_frames(w, c)) return;
    while (tcp_read(w, c) > 0)
        if (!tcp_frames(w, c)) return;
}

/* ---- peer -> client ---- */

static struct alloc_relay *relay_of(struct allocation *a, int family)
{
    for (unsigned i = 0; i < a->nrelay; i++)
        if (a->relay[i].addr.sa.sa_family == family) return &a->relay[i];
    return NULL;
}

/* Send the datagrams queued for UDP clients. */
static void flush_clients(struct worker *w)
{
    struct peer_batch *b = &w->fwd->pb;
    if (b->nq) {
        if (w->qos_on) {
            int64_t now = realtime_ns();
            for (int k = 0; k < b->nq; k++)
                qos_observe_residence(&w->qm, QOS_LEG_PEER, now - b->qrx[k]);
        }
        udp_send_clients(w, b->ql, b->qt, b->qiov, b->qmark, b->nq, b->tx, b->tctl);
    }
    b->nq = 0;
    b->used = 0;
}

void fwd_flush(struct worker *w)
{
    flush_clients(w);
}

/* The kind of an ICMP error the relay relays and measures (RFC 8656 11); false: another. */
static bool icmp_kind(const struct udp_icmp *e, enum qos_icmp_kind *k)
{
    if (!e->icmp) return false; /* a local error: the sender already saw it */
    if (e->family == AF_INET) {
        if (e->type == 3) /* destination unreachable; code 4: fragmentation needed */
            *k = e->code == 4 ? QOS_ICMP_PACKET_TOO_BIG : QOS_ICMP_UNREACHABLE;
        else if (e->type == 11)
            *k = QOS_ICMP_TTL_EXCEEDED;
        else
            return false;
        return true;
    }
    switch (e->type) { /* ICMPv6 */
    case 1:
        *k = QOS_ICMP_UNREACHABLE;
        return true;
    case 2:
        *k = QOS_ICMP_PACKET_TOO_BIG;
        return true;
    case 3:
        *k = QOS_ICMP_TTL_EXCEEDED;
        return true;
    default:
        return false;
    }
}

/* ICMP errors about datagrams a relay socket sent (its error queue, EPOLLERR): measured per
 * flow, and relayed to a UDP client as a Data indication with an ICMP attribute when the
 * server allows it (permission, per-allocation rate; TCP/TLS clients are only counted). */
static void peer_errors(struct worker *w, struct relay_sock *rs)
{
    struct allocation *a = rs->a;
    for (int k = 0; k < PEER_ICMP_BUDGET; k++) {
        struct udp_icmp e;
        if (!udp_recv_error(rs->h.fd, &e)) return;
        w->io.v[RELAY_C_peer_icmp]++;
        enum qos_icmp_kind kind;
        if (!icmp_kind(&e, &kind)) {
            w->io.v[RELAY_C_peer_icmp_ignored]++;
            continue;
        }
        uint32_t mtu = kind == QOS_ICMP_PACKET_TOO_BIG ? e.info : 0;
        if (w->qos_on) qos_icmp(meter(w, a), &w->qm, &e.to, kind, mtu);
        uint8_t out[STUN_HEADER_LEN + 24 + 12 + 8];
        size_t n =
            srv_peer_icmp(&w->srv, a, &e.to, e.type, e.code, mtu, w->now_ms, out, sizeof(out));
        if (!n || !a->client_io) continue;
        if (a->tuple.transport == SRV_DTLS) {
            dtls_send_client(w, a->client_io, out, n, (struct udp_mark){0, 0});
            continue;
        }
        const struct listener *l = a->client_io;
        struct iovec v = {.iov_base = out, .iov_len = n};
        struct mmsghdr tx;
        uint8_t ctl[1][UDP_CTL_LEN];
        udp_send_clients(w, &l, &a->tuple, &v, NULL, 1, &tx, ctl);
    }
}

void fwd_peer_readable(struct worker *w, struct ep_handler *h, uint32_t events)
{
    struct relay_sock *rs = (struct relay_sock *)h;
    struct peer_batch *b = &w->fwd->pb;
    if (events & EPOLLERR) peer_errors(w, rs);
    for (int round = 0; round < PEER_BUDGET; round++) {
        if (PEER_SLOTS - b->used < PEER_BATCH) flush_clients(w);
        uint32_t ovfl = rs->rxq_ovfl;
        int n = udp_recv(w, h->fd, &w->fwd->rxq, b->buf[b->used] + SRV_PEER_HEADROOM, PEER_SLOT,
                         PEER_DATA, PEER_BATCH, NULL, &rs->rxq_ovfl, b->d);
        struct allocation *a = rs->a;
        if (rs->rxq_ovfl != ovfl && a->qos) /* the kernel dropped datagrams for this socket */
            qos_drop(a->qos, QOS_LEG_PEER, QOS_DROP_OVERFLOW, rs->rxq_ovfl - ovfl);
        if (!n) return;
        b->used += n;
        struct alloc_relay *rel = relay_of(a, rs->family);
        const struct listener *l = a->tuple.transport == SRV_UDP ? a->client_io : NULL;
        for (int i = 0; i < n; i++) {
            const struct udp_dgram *d = &b->d[i];
            w->io.v[RELAY_C_peer_rx_datagrams]++;
            w->io.v[RELAY_C_peer_rx_bytes] += d->len;
            if (!d->ok) {
                if (d->truncated) w->io.v[RELAY_C_peer_drop_truncated]++;
                continue;
            }
            uint8_t *msg;
            size_t out = srv_peer_data(&w->srv, a, rel, &d->from, d->data, d->len, w->now_ms, &msg);
            if (!out) continue;
            a->pkts_to_client++;
            a->bytes_to_client += d->len;
            /* Framing wrote only around the payload, so it is intact for the tap. */
            struct pkt_class pc = {QOS_CLASS_OTHER, QOS_KIND_UNKNOWN};
            if (w->qos_on)
                pc = tap(w, a, QOS_LEG_PEER, &d->from, d->data, d->len, d->rx_ns, d->tos);
            if (l) {
                int q = b->nq++;
                b->qiov[q] = (struct iovec){.iov_base = msg, .iov_len = out};
                b->qt[q] = a->tuple;
                b->ql[q] = l;
                b->qrx[q] = d->rx_ns;
                b->qmark[q] = out_mark(w, d->tos, pc);
            } else if (a->client_io && a->tuple.transport == SRV_DTLS) {
                /* Encrypted and sent at once (a record per datagram, its TOS kept). */
                if (w->qos_on)
                    qos_observe_residence(&w->qm, QOS_LEG_PEER, realtime_ns() - d->rx_ns);
                dtls_send_client(w, a->client_io, msg, out, out_mark(w, d->tos, pc));
            } else if (a->client_io) {
                if (w->qos_on)
                    qos_observe_residence(&w->qm, QOS_LEG_PEER, realtime_ns() - d->rx_ns);
                if (!tcp_send_client(w, a->client_io, msg, out))
                    return; /* the connection closed, and with it this allocation and socket */
            }
        }
        if (n < PEER_BATCH) return;
    }
}
