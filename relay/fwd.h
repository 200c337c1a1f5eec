/* fwd.h: the forwarding path (fwd.c): the epoll handlers of the sockets that carry relayed
 * data, and the one flush point of each loop pass. */
#ifndef TERN_FWD_H
#define TERN_FWD_H

#include <stdint.h>

struct worker;
struct ep_handler;
struct fwd;

/* A worker's batches and queues (receive slots, the GSO train, the client queue); NULL when
 * out of memory. */
struct fwd *fwd_new(void);
void fwd_free(struct fwd *f);

/* Epoll handlers: a UDP listener, a TCP/TLS connection, a relay socket is readable. */
void fwd_udp_readable(struct worker *w, struct ep_handler *h, uint32_t events);
void fwd_tcp_event(struct worker *w, struct ep_handler *h, uint32_t events);
void fwd_peer_readable(struct worker *w, struct ep_handler *h, uint32_t events);
/* A dtls listener is readable (its datagrams are DTLS records: dtls.c decrypts them). */
void fwd_dtls_readable(struct worker *w, struct ep_handler *h, uint32_t events);

/* The end of a loop pass: send what waits for UDP clients. */
void fwd_flush(struct worker *w);

#endif
