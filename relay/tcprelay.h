/* tcprelay.h: RFC 6062 TCP allocations, the relay's side (tcprelay.c): the listening relayed
 * address, connections to and from peers, and the splice of a bound client data connection. */
#ifndef TERN_TCPRELAY_H
#define TERN_TCPRELAY_H

#include <stddef.h>
#include <stdint.h>

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

#endif
