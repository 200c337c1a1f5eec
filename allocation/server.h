/* server.h: the STUN/TURN server core (RFC 8489, RFC 8656): bytes, a 5-tuple and the time in;
 * a reply, a forwarding decision and counters out. Sockets, ports and quotas are reached
 * through struct srv_io, which the relay implements (and tests fake). No I/O, no clock. */
#ifndef TERN_SERVER_H
#define TERN_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "alloc.h"
#include "nonce.h"
#include "policy.h"
#include "ratelimit.h"
#include "rest.h"
#include "stun.h"
#include "users.h"

/* Every outcome, one counter each; every message that is not answered or forwarded lands in
 * exactly one drop_ counter. X(name, help). */
#define SRV_COUNTERS(X)                                                                            \
    X(rx_stun, "STUN messages handled")                                                            \
    X(rx_channeldata, "ChannelData messages from clients")                                         \
    X(binding_success, "Binding success responses")                                                \
    X(allocate_success, "Allocate success responses")                                              \
    X(refresh_success, "Refresh success responses (lifetime > 0)")                                 \
    X(delete_success, "Refresh success responses that deleted the allocation")                     \
    X(permission_success, "CreatePermission success responses")                                    \
    X(channel_bind_success, "ChannelBind success responses")                                       \
    X(retransmit_answered, "retransmitted requests answered from the transaction cache")           \
    X(binding_indication, "Binding indications received (keepalives, no answer)")                  \
    X(send_indication, "Send indications forwarded to a peer")                                     \
    X(channel_to_peer, "ChannelData forwarded to a peer")                                          \
    X(peer_to_client_channel, "peer datagrams sent to the client as ChannelData")                  \
    X(peer_to_client_data, "peer datagrams sent to the client as Data indications")                \
    X(allocations_created, "allocations created")                                                  \
    X(allocations_expired, "allocations that expired (no Refresh in time)")                        \
    X(allocations_deleted, "allocations deleted (Refresh lifetime 0 or connection closed)")        \
    X(allocations_revoked, "allocations closed because their credentials no longer hold")          \
    X(permissions_revoked, "permissions removed: a reload made the peer policy refuse the peer")   \
    X(channels_revoked, "channel bindings removed: a reload made the peer policy refuse the peer") \
    X(error_400, "400 Bad Request responses")                                                      \
    X(error_401, "401 Unauthenticated responses")                                                  \
    X(error_403, "403 Forbidden responses (peer denied by policy)")                                \
    X(error_420, "420 Unknown Attribute responses")                                                \
    X(error_437, "437 Allocation Mismatch responses")                                              \
    X(error_438, "438 Stale Nonce responses")                                                      \
    X(error_440, "440 Address Family not Supported responses")                                     \
    X(error_441, "441 Wrong Credentials responses")                                                \
    X(error_442, "442 Unsupported Transport Protocol responses")                                   \
    X(error_405, "405 Mobility Forbidden responses (RFC 8016: allocation.mobility is off, or "     \
                 "not UDP)")                                                                       \
    X(error_443, "443 Peer Address Family Mismatch responses")                                     \
    X(error_446, "446 Connection Already Exists responses (RFC 6062 Connect)")                     \
    X(error_447, "447 Connection Timeout or Failure responses (RFC 6062 Connect)")                 \
    X(error_486, "486 Allocation Quota Reached responses")                                         \
    X(error_508, "508 Insufficient Capacity responses")                                            \
    X(error_300, "300 Try Alternate responses (draining, ALTERNATE-SERVER given)")                 \
    X(drain_refused, "Allocate requests turned away because the relay is draining")                \
    X(steered, "Allocate requests sent to another node of the fleet (300, cluster.redirect)")      \
    X(drop_short, "dropped: shorter than a STUN or ChannelData header")                            \
    X(drop_not_stun, "dropped: neither STUN nor ChannelData")                                      \
    X(drop_bad_cookie, "dropped: wrong magic cookie")                                              \
    X(drop_bad_length, "dropped: length field inconsistent with the datagram")                     \
    X(drop_malformed, "dropped: malformed attributes in a message that is not a request")          \
    X(drop_amplification, "dropped: an error answer would be larger than the malformed request")   \
    X(drop_bad_fingerprint, "dropped: FINGERPRINT mismatch")                                       \
    X(drop_response, "dropped: a response or error sent to the server")                            \
    X(drop_indication, "dropped: an indication the server does not handle")                        \
    X(drop_no_allocation, "dropped: ChannelData or Send from a 5-tuple with no allocation")        \
    X(drop_channel_length, "dropped: ChannelData whose length field does not match the datagram")  \
    X(drop_no_channel, "dropped: ChannelData on an unbound channel")                               \
    X(drop_no_permission, "dropped: client data to a peer without a permission")                   \
    X(drop_send_incomplete, "dropped: Send indication without XOR-PEER-ADDRESS or DATA")           \
    X(drop_send_family, "dropped: Send indication to a family the allocation does not relay")      \
    X(drop_policy, "dropped: data to or from a peer the policy denies")                            \
    X(drop_self, "dropped: data to or from the relay itself (self-loop guard)")                    \
    X(denied_self, "403 Forbidden: a permission or channel peer that is the relay itself")         \
    X(drop_peer_no_permission, "dropped: peer datagram from an address without a permission")      \
    X(drop_peer_too_big, "dropped: peer datagram too large to frame for the client")               \
    X(drop_bandwidth, "dropped: over the user's per-allocation bandwidth limit")                   \
    X(icmp_to_client, "ICMP errors from peers relayed to the client (Data indication + ICMP)")     \
    X(icmp_stream_client,                                                                          \
      "ICMP errors from peers counted, not relayed: TCP/TLS client (RFC 8656 11)")                 \
    X(drop_icmp_no_permission, "dropped: ICMP error about a peer without a permission")            \
    X(drop_icmp_rate, "dropped: ICMP errors over the per-allocation rate")                         \
    X(drop_unauth_ratelimited,                                                                     \
      "dropped: answer to an unauthenticated request over its source's rate")                      \
    X(drop_unauth_global, "dropped: answer to an unauthenticated request over the worker's cap")   \
    X(drop_tcp_allocation, "dropped: Send or ChannelData on a TCP allocation (RFC 6062)")          \
    X(tcp_allocations, "TCP allocations created (RFC 6062; also in allocations_created)")          \
    X(connect_success, "Connect success responses: a peer connection made (RFC 6062)")             \
    X(connection_bind_success, "ConnectionBind success responses: data connections bound")         \
    X(connection_attempt, "ConnectionAttempt indications: a peer connected to a relayed address")  \
    X(tcp_connect_failed, "Connects answered 447: the peer refused or the connection failed")      \
    X(tcp_connect_timeout, "Connects answered 447: no connection within 30 s")                     \
    X(tcp_bind_timeout, "peer connections closed: no ConnectionBind within 30 s")                  \
    X(tcp_refused_no_permission, "peer TCP connections refused: no permission for the peer")       \
    X(tcp_refused_policy, "peer TCP connections refused: the peer policy denies the peer")         \
    X(tcp_refused_limit, "peer TCP connections refused: the allocation's connection limit")        \
    X(tcp_connections_ended, "TCP peer connections ended (either side closed, allocation ended)")  \
    X(mobile_allocations, "allocations made mobile: their Allocate asked for a MOBILITY-TICKET")   \
    X(mobility_moves, "allocations that followed their client to a new 5-tuple (RFC 8016)")        \
    X(tcp_connections_revoked, "TCP peer connections closed: a reload made the policy refuse "     \
                               "them")

enum srv_counter {
#define SRV_X_ENUM(name, help) SRV_C_##name,
    SRV_COUNTERS(SRV_X_ENUM)
#undef SRV_X_ENUM
        SRV_C_COUNT
};
struct srv_counters {
    uint64_t v[SRV_C_COUNT];
};
extern const char *const srv_counter_names[SRV_C_COUNT];
extern const char *const srv_counter_help[SRV_C_COUNT];

/* What the server needs from the configuration: borrowed, immutable while it runs. */
struct srv_options {
    const char *software; /* SOFTWARE value; NULL or "" omits it */
    const char *realm;
    uint32_t default_lifetime_s, max_lifetime_s, nonce_lifetime_s;
    bool strict_channels; /* channel numbers 0x4000-0x4FFF only (else up to 0x7FFF) */
    const struct peer_policy *policy;
    const struct auth_creds *creds;
    const struct auth_nonce_key *nonce_key;
    const union stun_addr *relay_addrs; /* index = port pool; port 0 */
    size_t nrelay_addrs;
    const union stun_addr *external; /* advertised instead of the relay IP; NULL: none */
    /* TURN REST API secrets (auth.secrets): every one is tried, so old and new work during a
     * rotation; usernames "<expiry><rest_separator><user id>". */
    const char *const *rest_secrets;
    size_t nrest_secrets;
    char rest_separator;
    uint64_t bandwidth_bps; /* default per-allocation limit (a user's own limit wins); 0: none */
    /* While draining: ALTERNATE-SERVER candidates, taken in turn per family; none: 508. */
    const union stun_addr *alternates;
    size_t nalternates;
    /* Answers over UDP to requests not (yet) authenticated (401, 438, and 400/420 before
     * MESSAGE-INTEGRITY is checked): per source IPv4 /32 or IPv6 /64, unauth_rate per second
     * with bursts of unauth_burst, and unauth_global_rate per second in all (this server);
     * the excess is dropped and counted. 0: that limit is off. */
    uint32_t unauth_rate, unauth_burst, unauth_global_rate;
    /* RFC 6062: connections (pending or bound) per TCP allocation; 0: SRV_TCP_MAX_CONNS. */
    uint32_t max_tcp_connections;
    /* RFC 8016 (allocation.mobility): an Allocate over UDP may ask for a MOBILITY-TICKET, and
     * a Refresh carrying it from a new 5-tuple moves the allocation there. false: 405. */
    bool mobility;
};

/* ---- RFC 6062 TCP allocations ---- */

#define SRV_TCP_TIMEOUT_MS (30 * 1000) /* a Connect's connection, and a ConnectionBind's wait */
#define SRV_TCP_MAX_CONNS  64          /* default allocation.max_tcp_connections */

enum srv_tconn_state {
    SRV_TCONN_CONNECTING, /* Connect: the relay is connecting to the peer */
    SRV_TCONN_PENDING,    /* peer connected: waiting (30 s) for the client's ConnectionBind */
    SRV_TCONN_BOUND,      /* a client data connection and the peer connection, spliced */
};

/* One peer connection of a TCP allocation, with its CONNECTION-ID. Owned by the server (made
 * by Connect or srv_peer_accept, freed when it ends); the relay keeps its sockets in peer_io
 * and data_io and its byte counts here. */
struct srv_tconn {
    uint32_t id; /* CONNECTION-ID: random, non-zero, unique in this server */
    enum srv_tconn_state state;
    bool outgoing; /* made by Connect (else a peer connected in: ConnectionAttempt) */
    struct allocation *a;
    union stun_addr peer;                    /* canonical, port set */
    uint64_t created_ms, deadline_ms;        /* deadline: CONNECTING and PENDING only */
    void *peer_io, *data_io;                 /* the relay's handles (data_io: once bound) */
    uint64_t bytes_to_peer, bytes_to_client; /* the relay counts what it splices */
    /* A Connect's answer is sent when the connection is made (or fails): its transaction and
     * how to sign it, wiped when the answer goes. */
    uint8_t tid[STUN_TID_LEN];
    uint8_t key[32];
    uint8_t keylen;
    bool sha256_mac, fingerprint;
    /* Links: the allocation's list, the id hash, the deadline queue. */
    struct srv_tconn *anext, *hnext, *qprev, *qnext;
    bool queued;
};
#define SRV_TCONN_BUCKETS  1024
#define SRV_TICKET_BUCKETS 1024

/* The relay's side: shared resources and sockets. Every call is made from the worker that
 * owns this server; calls into shared state (ports, quotas) are serialised by the relay. */
struct srv_io {
    void *ctx;
    /* A free port from pool (EVEN-PORT: even; R bit: also reserve port+1 under token). 0 / -1. */
    int (*port_take)(void *ctx, unsigned pool, bool even, bool reserve_next, uint64_t token,
                     uint64_t now_s, uint16_t *port);
    /* The port reserved under token, in whichever pool holds it. 0 / -1. */
    int (*port_claim)(void *ctx, uint64_t token, uint64_t now_s, unsigned *pool, uint16_t *port);
    void (*port_release)(void *ctx, unsigned pool, uint16_t port);
    /* Bind a relay socket at r->addr (port set) and keep its handle in r->io. 0, or a negative
     * errno (-EADDRINUSE: another process has the port; the server tries another). */
    int (*relay_open)(void *ctx, struct allocation *a, struct alloc_relay *r);
    void (*relay_close)(void *ctx, struct allocation *a, struct alloc_relay *r);
    /* Count an allocation against the user's quota (user_max, or the configured default when
     * 0) and the total. 0, or -1 (486). */
    int (*quota_take)(void *ctx, const char *user, size_t ulen, uint32_t user_max);
    void (*quota_release)(void *ctx, const char *user, size_t ulen);
    /* Unpredictable bytes (reservation tokens, seeds). */
    void (*random)(void *ctx, void *buf, size_t len);
    /* Notable events for the log: "allocated", "refreshed", "deleted", "expired", "closed",
     * "denied" (peer: the address, verdict: the reason). peer may be NULL. */
    void (*event)(void *ctx, const struct allocation *a, const char *what,
                  const union stun_addr *peer, enum policy_verdict verdict);
    /* Optional (NULL: none): a ChannelBind bound or refreshed num <-> peer (canonical, allowed
     * by the policy), its permission installed. The relay may hand the channel to a faster
     * path; it re-checks the binding itself afterwards (expiry, permission, policy). */
    void (*channel_bound)(void *ctx, struct allocation *a, uint16_t num,
                          const union stun_addr *peer);
    /* RFC 6062 (all three NULL: REQUESTED-TRANSPORT TCP gets 442). relay_open sees a->tcp and
     * listens on the relayed address instead (a peer connecting: srv_peer_accept). */
    /* Start a non-blocking connection from a's relayed address to tc->peer (canonical, allowed
     * by the policy); keep its handle in tc->peer_io and report with srv_connect_result. 0, or
     * a negative errno (the Connect is answered 447 at once). */
    int (*peer_connect)(void *ctx, struct allocation *a, struct srv_tconn *tc);
    /* Close tc's sockets (peer_io, data_io): the server frees tc right after. Never calls back
     * into the server. */
    void (*tconn_close)(void *ctx, struct srv_tconn *tc);
    /* A message for a's control connection that answers nothing the client just sent (a
     * Connect's late answer, a ConnectionAttempt). */
    void (*client_send)(void *ctx, struct allocation *a, const uint8_t *msg, size_t len);
};

struct srv_txcache;

/* Sources the unauthenticated-answer limit remembers per server (least recently seen go). */
#define SRV_UNAUTH_SOURCES 4096

/* Where a steered Allocate is sent: ALTERNATE-SERVER, and ALTERNATE-DOMAIN when domain is
 * set (TLS: the name the client checks the alternate's certificate against, RFC 8489 14.16). */
struct srv_steer {
    union stun_addr to;
    char domain[256];
};

/* One worker's server: its allocations, counters and transaction cache. */
struct srv {
    struct srv_options opt;
    struct srv_io io;
    struct alloc_table allocs;
    struct srv_counters c;
    struct srv_txcache *txc;
    struct rl_table unauth; /* the limits on unauthenticated answers */
    uint64_t rng;           /* splitmix64 state for Data indication transaction IDs */
    uint64_t unix_s;  /* the caller's wall clock (unix seconds), set before each batch of calls:
                         REST usernames expire in wall-clock time, unlike everything else here */
    unsigned pool_rr; /* rotates allocations over relay addresses of one family */
    bool draining;    /* new allocations are turned away (set by the caller between calls) */
    unsigned alt_rr;  /* rotates the alternates offered while draining */
    /* RFC 6062 with several workers: this server's index (0-255, set by the caller after
     * srv_init), the top byte of every CONNECTION-ID it makes, so whichever worker accepts a
     * data connection knows whose the id is (srv_connection_bind_owner). */
    uint8_t worker;
    /* Fleet steering (cluster.redirect), set by the caller between calls: a new Allocate from
     * a client of this family (0 IPv4, 1 IPv6) over this transport (udp, tcp, tls, dtls) gets 300
     * Try Alternate to steer[family][transport] when not NULL (this node is draining or over
     * its load limit, and that node is the least loaded healthy one), unless its nonce says it
     * was steered here already (AUTH_NONCE_STEERED): a client is sent on at most once. It wins
     * over drain alternates. */
    const struct srv_steer *steer[2][SRV_TRANSPORTS];
    /* The fleet's shared nonce keys (cluster.shared_nonce), set by the caller between calls:
     * when n > 0, nonces are made with keys[0] and the wall clock (unix_s), so any node of the
     * fleet accepts them, and every key is accepted (the previous one during a rotation);
     * nonces of opt.nonce_key (made before the fleet's keys were known) stay accepted. */
    const struct auth_nonce_key *fleet_keys;
    size_t nfleet_keys;
    /* RFC 6062 peer connections: by CONNECTION-ID, and those with a deadline (CONNECTING,
     * PENDING) in deadline order (every deadline is SRV_TCP_TIMEOUT_MS after it was set, so
     * appending keeps the queue sorted). */
    struct srv_tconn *tc_hash[SRV_TCONN_BUCKETS];
    size_t ntconns;
    struct srv_tconn *tq_head, *tq_tail;
    /* RFC 8016: mobile allocations by ticket (both of each: current and previous). */
    struct alloc_ticket *tk_hash[SRV_TICKET_BUCKETS];
    /* Set by the caller around srv_handle of a Refresh another worker passed on
     * (srv_mobility_owner): that worker's index, named in the new ticket, since the allocation
     * moves to it. -1: this server's own (s->worker). */
    int mob_dest;
};

int srv_init(struct srv *s, const struct srv_options *opt, const struct srv_io *io,
             uint64_t id_base);
/* Delete every allocation (closing relay sockets, releasing ports and quotas) and free. */
void srv_free(struct srv *s);
/* End every allocation now, with why as the reason its event (and quality record) gives
 * ("drained" at a drain's deadline). Returns how many ended. */
size_t srv_close_all(struct srv *s, const char *why);

/* Data to send to a peer, decided by srv_handle. */
struct srv_fwd {
    struct allocation *a; /* NULL: nothing to forward */
    struct alloc_relay *relay;
    union stun_addr peer;
    const uint8_t *data; /* points into the input */
    size_t len;
    bool dont_fragment;
    /* ConnectionBind succeeded (RFC 6062 5.4): once the answer is sent, the client connection
     * the message came on carries raw bytes to and from bound's peer connection. */
    struct srv_tconn *bound;
    /* RFC 8016: a Refresh with the MOBILITY-TICKET of allocation `moved` came from a new
     * 5-tuple (the one srv_handle was given, client_io its handle): the allocation is keyed by
     * it now; moved_from is the one it had. The relay re-points what it keeps per client. */
    struct allocation *moved;
    struct srv_tuple moved_from;
};

/* Handle one message from a client: a whole datagram, or one frame of a TCP/TLS stream.
 * client_io is the relay's handle for the client side, kept by a new allocation. Returns
 * the reply length written to out (0: nothing to answer); fills *fwd when data is to go to
 * a peer. */
size_t srv_handle(struct srv *s, const struct srv_tuple *t, void *client_io, const uint8_t *in,
                  size_t inlen, uint64_t now_ms, uint8_t *out, size_t outcap, struct srv_fwd *fwd);

/* Headroom a peer datagram needs before it in the buffer so that it can be framed for the
 * client in place: a Data indication header (20 + 24 + 4) at most. */
#define SRV_PEER_HEADROOM 48
#define SRV_PEER_TAILROOM 3 /* padding to a multiple of 4 */

/* A datagram from peer `from` arrived on relay socket r of allocation a. data has
 * SRV_PEER_HEADROOM bytes before it and SRV_PEER_TAILROOM after it that may be written.
 * Returns the length of the framed message (ChannelData or Data indication) starting at
 * *msg, inside the same buffer, or 0 when the datagram is dropped (counted). */
size_t srv_peer_data(struct srv *s, struct allocation *a, struct alloc_relay *r,
                     const union stun_addr *from, uint8_t *data, size_t len, uint64_t now_ms,
                     uint8_t **msg);

/* RFC 8656 11: an ICMP error about a datagram the relay sent to peer `to` (its type and code
 * as the peer's family numbers them; info: the next-hop MTU for "fragmentation needed" /
 * "packet too big", else 0). For a UDP client with a permission for that peer, within the
 * allocation's ICMP rate (SRV_ICMP_BURST, then SRV_ICMP_PER_S a second), writes a Data
 * indication with XOR-PEER-ADDRESS and ICMP into out and returns its length. TCP/TLS clients
 * get nothing (counted: the RFC relays ICMP only over UDP); 0 otherwise (counted). */
#define SRV_ICMP_BURST 10
#define SRV_ICMP_PER_S 10
size_t srv_peer_icmp(struct srv *s, struct allocation *a, const union stun_addr *to, uint8_t type,
                     uint8_t code, uint32_t info, uint64_t now_ms, uint8_t *out, size_t outcap);

/* Close every allocation whose credentials no longer hold: its user unknown to the lookup
 * (deleted or disabled) and not a REST username still before its expiry. For
 * auth.strict_expiry; scans the whole table, so call it when credentials change (and now and
 * then for REST expiry), not per packet. Returns how many were closed. */
size_t srv_revalidate(struct srv *s);

/* A live reload: from now on decide with opt (the limits on unauthenticated answers are
 * rebuilt when they changed, which restarts their buckets). Existing allocations follow it:
 * permissions and channels to peers opt->policy now refuses are removed (counted in
 * permissions_revoked / channels_revoked, and returned), and the bandwidth limit of each is
 * set again (the user's own, else opt's default; a changed one starts with a full bucket). 0, or -1
 * (out of memory: the old unauthenticated limits stay, the rest applies). */
struct srv_reconf {
    size_t permissions, channels; /* removed */
    size_t limits;                /* allocations whose bandwidth limit changed */
};
int srv_reconfigure(struct srv *s, const struct srv_options *opt, uint64_t now_ms,
                    struct srv_reconf *out);

/* RFC 6062: the relay's connection to tc->peer (Connect) was made (ok) or failed. The client
 * gets the Connect's answer (success with CONNECTION-ID, or 447) through io.client_send; a
 * failed tc is closed and freed. */
void srv_connect_result(struct srv *s, struct srv_tconn *tc, bool ok, uint64_t now_ms);
/* RFC 6062 5.3: peer `from` connected to a's relayed TCP address. Checked like every peer
 * (canonicalised, a permission for its IP, the peer policy with the port, the allocation's
 * connection limit): refused, NULL (counted; the relay closes the socket). Else a PENDING
 * connection holding peer_io, and a ConnectionAttempt to the client. */
struct srv_tconn *srv_peer_accept(struct srv *s, struct allocation *a, const union stun_addr *from,
                                  void *peer_io, uint64_t now_ms);
/* Either end of tc closed or failed (the relay noticed): both are closed (io.tconn_close) and
 * tc freed. A CONNECTING tc is answered 447 first. */
void srv_tconn_end(struct srv *s, struct srv_tconn *tc);
/* The peer connection with this CONNECTION-ID, or NULL. */
struct srv_tconn *srv_tconn_find(const struct srv *s, uint32_t id);
/* RFC 6062 with several workers: msg (len bytes, one frame from a TCP/TLS connection t) is a
 * ConnectionBind request naming a CONNECTION-ID made by another worker's server than s (its
 * top byte), on a connection without an allocation: that worker's index, to which the relay
 * hands the connection (the owner decides everything, credentials included). -1: anything
 * else (s handles it, whatever it is; an id of a worker that does not exist gets its 400
 * here). Decodes msg; no state changes. */
int srv_connection_bind_owner(const struct srv *s, const struct srv_tuple *t, const uint8_t *msg,
                              size_t len, unsigned nworkers);

/* ---- RFC 8016 mobility with several workers ----
 * A client that moved sends its Refresh from a new 5-tuple, which SO_REUSEPORT may hand to
 * another worker than the one holding its allocation. The ticket names that worker (its top
 * byte, as CONNECTION-IDs do): srv_mobility_owner says whose it is, the relay passes the
 * datagram there, that worker's srv_handle (with mob_dest set to the first worker) checks and
 * answers it and, when it moved the allocation, takes it out of its table (srv_detach); the
 * first worker then takes it in (srv_adopt) and sends the answer. */

/* msg (len bytes from UDP client t) is a Refresh request with a well-formed MOBILITY-TICKET
 * naming another worker than s's, on a 5-tuple with no allocation here and a ticket unknown
 * here: that worker's index. -1: anything else (s handles it). Decodes msg; no state changes. */
int srv_mobility_owner(const struct srv *s, const struct srv_tuple *t, const uint8_t *msg,
                       size_t len, unsigned nworkers);
/* Take a out of s's table and ticket index, leaving everything it holds (relay sockets,
 * ports, quota, meter) to whoever adopts it. */
void srv_detach(struct srv *s, struct allocation *a);
/* Put a detached allocation into s (its table and tickets) and remember the answer to the
 * Refresh that moved it (req, its request) for retransmissions. 0, or -1: its 5-tuple already
 * has another allocation here, or no memory (the caller then srv_discard()s it). */
int srv_adopt(struct srv *s, struct allocation *a, const uint8_t *req, size_t reqlen,
              const uint8_t *answer, size_t anslen, uint64_t now_ms);
/* End a detached allocation that could not be adopted (as srv_delete does). */
void srv_discard(struct srv *s, struct allocation *a, const char *why);
/* The MOBILITY-TICKET value s would give a now (SRV_TICKET_TEXT characters, base64url). */
#define SRV_TICKET_TEXT 24
void srv_ticket_text(const struct srv *s, const struct allocation *a, char out[SRV_TICKET_TEXT]);

/* Delete allocations whose lifetime ended by now, and end RFC 6062 connections past their
 * deadline (a Connect not made in 30 s: 447; no ConnectionBind in 30 s: closed); returns how
 * many allocations. */
size_t srv_expire(struct srv *s, uint64_t now_ms);
/* Delete one allocation (its TCP/TLS connection closed). */
void srv_delete(struct srv *s, struct allocation *a, const char *why);

#endif
