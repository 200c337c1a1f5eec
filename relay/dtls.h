/* dtls.h: the DTLS transport (TURN over DTLS 1.2, RFC 7350): dtls listeners are UDP sockets
 * (one per worker, SO_REUSEPORT); dtls.c keeps a per-worker table of sessions keyed by the
 * 5-tuple, answers unknown sources with a stateless cookie (DTLSv1_listen) before keeping
 * anything for them, caps and times out handshakes, and moves records through a BIO of its
 * own (no socket per client). fwd.c (fwd_dtls_readable) hands each decrypted record to the
 * TURN server exactly as it does a UDP datagram. docs/dtls.md tells the story. */
#ifndef TERN_DTLS_H
#define TERN_DTLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "server.h"
#include "udp.h"

struct worker;
struct listener;
struct dtls_sess;
struct ssl_ctx_st;

/* One datagram from dtls listener l: the session it belongs to, its bytes waiting to be read
 * with dtls_read; or NULL when it was handled here (a cookie asked for, a session started, a
 * drop counted). */
struct dtls_sess *dtls_input(struct worker *w, struct listener *l, const struct udp_dgram *d);
/* The next decrypted record of what dtls_input gave s (the handshake runs inside): > 0 its
 * length in buf, 0 nothing more, -1 the session is closing (it ends when the loop pass does). */
int dtls_read(struct worker *w, struct dtls_sess *s, uint8_t *buf, size_t cap);
/* The 5-tuple of the session (transport SRV_DTLS). */
const struct srv_tuple *dtls_tuple(const struct dtls_sess *s);
/* Encrypt msg into one record to the client, marked m (TOS, priority); false when the session
 * can send nothing more (counted). */
bool dtls_send_client(struct worker *w, struct dtls_sess *s, const uint8_t *msg, size_t len,
                      struct udp_mark m);
/* An allocation made through session s ended: the session closes at the end of the pass. */
void dtls_alloc_ended(struct worker *w, struct dtls_sess *s);
/* Once per loop pass: closes what is closing, handshakes past the timeout and idle sessions;
 * retransmits handshake flights whose timer ran out. */
void dtls_expire(struct worker *w);
/* Close every session (and its allocation) and free the worker's DTLS state. */
void dtls_close_all(struct worker *w);
/* Does a session of retired listener l still live? */
bool dtls_uses_listener(const struct worker *w, const struct listener *l);
/* Sessions and sessions in handshake on this worker. */
void dtls_counts(const struct worker *w, uint64_t *sessions, uint64_t *handshaking);
/* What a DTLS server context needs beyond the certificate (tls_context with dtls: DTLS 1.2,
 * the cookie callbacks, no MTU queries). 0 / -1. */
int dtls_ctx_setup(struct ssl_ctx_st *ctx);

#endif
