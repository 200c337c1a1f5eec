/* tcprelay.h: RFC 6062 TCP allocations, the relay's side (tcprelay.c): the listening relayed
 * address, connections to and from peers, and the splice of a bound client data connection. */
#ifndef TERN_TCPRELAY_H
#define TERN_TCPRELAY_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "server.h"

struct worker;
struct tcp_conn;

/* Listen at r->addr for a's peers (io_relay_open for a TCP allocation). 0 or a negative errno. */
int tcprelay_listen(struct worker *w, struct allocation *a, struct alloc_relay *r);
/* The srv_io callbacks: peer_connect, tconn_close, client_send (server.h). */
int tcprelay_connect(struct worker *w, struct allocation *a, struct srv_tconn *tc);
void tcprelay_close(struct worker *w, struct srv_tconn *tc);
void tcprelay_client_send(struct worker *w, struct allocation *a, const uint8_t *msg, size_t len);
/* ConnectionBind succeeded on c (its answer queued): raw bytes from here on. */
void tcprelay_bind(struct worker *w, struct tcp_conn *c, struct srv_tconn *tc);
/* The epoll event of a bound data connection (fwd_tcp_event hands it over). */
void tcprelay_data_event(struct worker *w, struct tcp_conn *c, uint32_t events);

/* The QoS view of TCP flows: directions (to the peer: what the client sent; to the client)
 * and legs (the client's data connection, the peer connection). */
enum { TCPRELAY_TO_PEER, TCPRELAY_TO_CLIENT, TCPRELAY_DIRS };
enum { TCPRELAY_LEG_CLIENT, TCPRELAY_LEG_PEER, TCPRELAY_LEGS };
/* A worker's totals of ended flows (worker.h: w->tflow), so the /metrics counters never go
 * back when a flow ends. */
struct tcprelay_totals {
    uint64_t stalled_ms[TCPRELAY_DIRS];
    uint64_t retrans[TCPRELAY_LEGS];
    uint64_t ended;
};
/* What /metrics sums over the workers: flows bound and waiting (connecting or pending), stall
 * time (ended and live flows) and live stalls by direction, retransmissions (ended and live)
 * and the RTT (TCP_INFO) of the live flows by leg. */
struct tcprelay_metrics {
    uint64_t bound, waiting;
    uint64_t stalled_ms[TCPRELAY_DIRS], stalled_now[TCPRELAY_DIRS];
    uint64_t retrans[TCPRELAY_LEGS], rtt_n[TCPRELAY_LEGS];
    double rtt_sum[TCPRELAY_LEGS], rtt_max[TCPRELAY_LEGS];
};
/* The allocation's connections for its detail JSON: id, peer, state, and once bound both legs
 * (remote address, TCP_INFO RTT, retransmissions, cwnd) and both directions (bytes taken,
 * delivered and queued, rate, stalls). Reads TCP_INFO: call from the worker's thread. */
json_t *tcprelay_flows_json(struct worker *w, const struct allocation *a);
void tcprelay_metrics(struct worker *w, struct tcprelay_metrics *m);

#endif
