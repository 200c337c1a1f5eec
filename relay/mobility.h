/* mobility.h: RFC 8016 mobility across workers (docs/mobility.md). A client that moved sends its
 * Refresh with MOBILITY-TICKET from a new 5-tuple; SO_REUSEPORT may give that 5-tuple to another
 * worker than the one holding the allocation, and it keeps giving it there. So the allocation
 * moves to the worker that receives the new 5-tuple: the datagram goes to the owner (named by
 * the ticket), the owner's server decides, and when it moved the allocation the owner lets go
 * of it (its relay sockets leave the owner's epoll, its kernel fast-path bindings go) and hands
 * it back with the answer; the receiving worker adopts it (relay sockets into its epoll,
 * bindings again) and sends the answer. Messages travel on a lock-free stack per worker with an
 * eventfd, and are handled between two loop passes, so no handler of the pass sees an
 * allocation half-moved. */
#ifndef TERN_MOBILITY_H
#define TERN_MOBILITY_H

#include <stddef.h>
#include <stdint.h>

#include "server.h"

struct worker;
struct listener;
struct ep_handler;

/* A Refresh (msg, len bytes from UDP client t on listener l) for another worker's allocation
 * (srv_mobility_owner said `owner`): copied and passed there. */
void mobility_pass(struct worker *w, unsigned owner, struct listener *l, const struct srv_tuple *t,
                   const uint8_t *msg, size_t len);
/* The eventfd handler: marks the inbox for mobility_run. */
void mobility_event(struct worker *w, struct ep_handler *h, uint32_t events);
/* Between two loop passes (after fwd_flush): handle what other workers sent. */
void mobility_run(struct worker *w);
/* srv_handle moved allocation a to a new 5-tuple of this worker (fwd.moved): the kernel fast
 * path's bindings follow the client, and the move is logged. */
void mobility_moved(struct worker *w, struct allocation *a, const struct srv_tuple *from,
                    unsigned from_worker);
/* At stop, after every worker's thread ended: allocations in flight to w are adopted (so
 * srv_free ends them as it ends the others), passed requests dropped. */
void mobility_close_all(struct worker *w);

#endif
