/* tcp.h: the TCP and TLS transport. tcp.c accepts connections, runs TLS, reads bytes into a
 * connection's buffer and cuts them into STUN/ChannelData frames, and queues writes; fwd.c
 * (the connection's epoll handler, fwd_tcp_event) hands each frame to the TURN server. */
#ifndef TERN_TCP_H
#define TERN_TCP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "server.h"

struct worker;
struct listener;
struct ep_handler;
struct tcp_conn;
struct relay_shared;

/* A TCP/TLS listener is readable: accept what waits. New connections get the listener's
 * conn_fn as their epoll handler. */
void tcp_acceptable(struct worker *w, struct ep_handler *h, uint32_t events);
/* A connection's epoll event: note its activity, write what EPOLLOUT allows. Returns true when
 * there is something to read (then call tcp_read), false otherwise or if it closed. */
bool tcp_io(struct worker *w, struct tcp_conn *c, uint32_t events);
/* Read what arrived into the connection's buffer: 1 bytes were added, 0 nothing more now,
 * -1 the connection closed (and with it its allocation; c is gone). */
int tcp_read(struct worker *w, struct tcp_conn *c);
/* The next complete frame in the buffer: 1 (*msg, *len set; valid until tcp_frames_done),
 * 0 none yet, -1 a frame that is neither STUN nor ChannelData (the connection closed). */
int tcp_frame(struct worker *w, struct tcp_conn *c, const uint8_t **msg, size_t *len);
/* The frames handed out have been handled: drop them from the buffer. */
void tcp_frames_done(struct tcp_conn *c);
/* The 5-tuple of the connection (client, and the local address it connected to). */
const struct srv_tuple *tcp_tuple(const struct tcp_conn *c);
/* Queue bytes to a TCP/TLS client; false if the connection had to be closed (and with it
 * its allocation). */
bool tcp_send_client(struct worker *w, struct tcp_conn *c, const uint8_t *msg, size_t len);
/* RFC 6062 client data connections (tcprelay.c). tcp_set_tconn: the connection carries raw
 * bytes for tc from now on (closing it ends tc: srv_tconn_end). tcp_close: close it without
 * ending its tc (the caller does). tcp_pause_rx: stop (or resume) reading it. tcp_queue_later:
 * queue bytes to send when it is writable, never closing it now; false when there is no room.
 * tcp_rx_raw / tcp_rx_drop: the bytes read and not yet taken, and taking n of them. */
void tcp_set_tconn(struct tcp_conn *c, struct srv_tconn *tc);
struct srv_tconn *tcp_tconn(const struct tcp_conn *c);
void tcp_close(struct worker *w, struct tcp_conn *c);
size_t tcp_tx_queued(const struct tcp_conn *c);
int tcp_fd(const struct tcp_conn *c);
/* RFC 6062 half-close on plain data connections: tcp_rx_eof, the client sent FIN (tcp_read
 * then returns 0 and the connection is no longer read); tcp_shutdown_wr, send ours (false on
 * TLS connections, where the caller ends both sides instead, or if it failed). */
bool tcp_rx_eof(const struct tcp_conn *c);
bool tcp_shutdown_wr(struct worker *w, struct tcp_conn *c);
/* Both directions of c are done (FIN each way): out of epoll until it is closed (EPOLLHUP is
 * reported whatever the mask). */
void tcp_quiet(struct worker *w, struct tcp_conn *c);
void tcp_pause_rx(struct worker *w, struct tcp_conn *c, bool paused);
bool tcp_queue_later(struct worker *w, struct tcp_conn *c, const uint8_t *msg, size_t len);
size_t tcp_rx_raw(const struct tcp_conn *c, const uint8_t **p);
void tcp_rx_drop(struct tcp_conn *c, size_t n);
/* RFC 6062 with several workers. tcp_handoff: c (a connection of w without an allocation)
 * goes to worker `to`, which owns the CONNECTION-ID of the frame tcp_frame just handed out
 * (keep: its length; it goes back into the buffer). c leaves w's loop and lists at once and is
 * pushed on to's lock-free inbox; to's eventfd wakes it. tcp_handoff_event (to's handler of
 * that eventfd) puts each one into its own loop and lists and calls its handler with
 * EPOLLIN | TCP_EV_ADOPTED: frames are waiting in the buffer. tcp_handoff_close_all: at
 * stop, after every worker has joined. */
#define TCP_EV_ADOPTED (1u << 27) /* not an epoll bit */
void tcp_handoff(struct worker *w, struct tcp_conn *c, size_t keep, struct worker *to);
void tcp_handoff_event(struct worker *w, struct ep_handler *h, uint32_t events);
void tcp_handoff_close_all(struct worker *w);
/* Close connections idle past their timeout (once per loop pass). */
void tcp_expire(struct worker *w);
void tcp_close_all(struct worker *w);
/* The loop's epoll timeout, shortened to when a paused listener is due back. */
int tcp_timeout(struct worker *w, int timeout);
/* The file-descriptor budget (RLIMIT_NOFILE): fd_budget_init counts what is open when the
 * workers start; fd_take takes one for a socket about to be opened unless fewer than spare
 * would then be left; fd_give returns it when the socket closes. */
void fd_budget_init(struct relay_shared *sh);
bool fd_take(struct relay_shared *sh, long spare);
void fd_give(struct relay_shared *sh);
/* How many more may be opened before the limit. */
long fd_room(const struct relay_shared *sh);
/* What relay sockets leave free: listeners, the database, the ops API and accepts. */
long fd_spare_relay(const struct relay_shared *sh);
/* Is a connection accepted on l still open? */
bool tcp_uses_listener(const struct worker *w, const struct listener *l);
/* The TLS server context from tls.certificate and tls.private_key, with ALPN stun.turn
 * (RFC 7443; tcp.c alpn_select says what is refused and why); with dtls the DTLS 1.2 one of
 * dtls listeners (dtls_ctx_setup: cookies), no ALPN. NULL after logging why (and writing
 * "file:line: key: problem" to err when not NULL: a reload). */
struct ssl_ctx_st *tls_context(const struct tern_config *cfg, FILE *err, bool dtls);

#endif
