/* relay.h: the running relay: one worker thread per core, each with its own sockets and loop. */
#ifndef TERN_RELAY_H
#define TERN_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "config.h"
#include "server.h"

/* I/O counters (the control plane's are in struct srv_counters). X(name, help). */
#define RELAY_COUNTERS(X)                                                                          \
    X(udp_rx_datagrams, "UDP datagrams received on listeners")                                     \
    X(udp_rx_bytes, "UDP bytes received on listeners")                                             \
    X(udp_tx_datagrams, "UDP datagrams sent from listeners")                                       \
    X(udp_tx_bytes, "UDP bytes sent from listeners")                                               \
    X(udp_drop_truncated, "dropped: UDP datagram larger than the receive buffer")                  \
    X(udp_drop_addr, "dropped: UDP datagram from a non-IP source")                                 \
    X(udp_send_errors, "UDP sends that failed (datagram lost)")                                    \
    X(udp_gso_sends, "UDP GSO sends (several datagrams to one client in one send)")                \
    X(udp_gso_fallbacks, "UDP GSO sends the kernel refused (sent one by one; GSO then off)")       \
    X(peer_rx_datagrams, "datagrams received from peers on relay sockets")                         \
    X(peer_rx_bytes, "bytes received from peers on relay sockets")                                 \
    X(peer_tx_datagrams, "datagrams sent to peers from relay sockets")                             \
    X(peer_tx_bytes, "bytes sent to peers from relay sockets")                                     \
    X(peer_drop_truncated, "dropped: peer datagram larger than the receive buffer")                \
    X(peer_send_errors, "sends to peers that failed (datagram lost)")                              \
    X(peer_gso_sends, "UDP GSO sends to peers (a client's burst to one peer in one send)")         \
    X(peer_gso_fallbacks, "UDP GSO sends to peers the kernel refused (sent one by one; GSO off)")  \
    X(kernel_rx_overflow, "datagrams the kernel dropped: a socket receive buffer was full")        \
    X(peer_icmp, "ICMP errors read from relay sockets' error queues (IP_RECVERR)")                 \
    X(peer_icmp_ignored,                                                                           \
      "ICMP errors not relayed: a local error, or not unreachable/time exceeded/too big")          \
    X(tcp_accepted, "TCP connections accepted")                                                    \
    X(tcp_closed, "TCP connections closed")                                                        \
    X(tcp_rejected, "TCP connections refused at accept (all reasons: tcp_rejected_*)")             \
    X(tcp_rejected_conn_limit, "TCP connections refused: per-worker connection limit")             \
    X(tcp_rejected_per_ip, "TCP connections refused: per-IP connection limit")                     \
    X(tcp_rejected_nomem, "TCP connections refused: out of memory")                                \
    X(tcp_rejected_fd_limit, "TCP accepting paused: no file descriptor to spare (not in total)")   \
    X(relay_fd_refused, "relay sockets refused: file descriptor reserve reached (answered 508)")   \
    X(tls_handshake_timeout, "TLS connections closed: handshake not done in time")                 \
    X(tcp_first_message_timeout, "TCP connections closed: no complete STUN message in time")       \
    X(tcp_rx_oversize, "TCP connections closed: message too large before an allocation")           \
    X(tls_handshake_failed, "TLS connections closed: handshake failed")                            \
    X(tcp_bad_frame, "TCP connections closed: a frame that is neither STUN nor ChannelData")       \
    X(tcp_idle, "TCP connections closed: idle")                                                    \
    X(tcp_tx_overflow, "TCP connections closed: peer not reading its responses")                   \
    X(tcp_rx_bytes, "TCP bytes received")                                                          \
    X(tcp_tx_bytes, "TCP bytes sent")                                                              \
    X(proxy_accepted, "PROXY protocol headers accepted (v1 or v2; proxy_local included)")          \
    X(proxy_local, "PROXY headers without a client address (v2 LOCAL, v1 UNKNOWN): socket's kept") \
    X(proxy_bad_header, "connections closed: no valid PROXY header on a proxy_protocol listener")  \
    X(proxy_truncated, "connections closed by the client before its PROXY header was complete")    \
    X(proxy_timeout,                                                                               \
      "connections closed: PROXY header not complete within the first-message time")               \
    X(proxy_duplicate, "connections closed: the PROXY header's client already has an allocation")  \
    X(proxy_rejected_per_ip,                                                                       \
      "connections closed: per-IP limit for the client a PROXY header named")                      \
    X(demux_tls, "tcp+tls connections that began with a TLS record (0x16)")                        \
    X(demux_plain, "tcp+tls connections that began with STUN or ChannelData")                      \
    X(demux_bad_first_byte, "tcp+tls connections closed: first byte not TLS, STUN or ChannelData") \
    X(tls_alpn_stun_turn, "TLS handshakes that selected ALPN stun.turn (RFC 7443)")                \
    X(tls_alpn_refused, "TLS handshakes refused: ALPN offered without stun.turn (RFC 7301 alert)") \
    X(tcp_peer_accepted, "RFC 6062: peer connections to relayed TCP addresses accepted")           \
    X(tcp_peer_refused, "RFC 6062: peer connections refused (permission, policy, limit: srv)")     \
    X(tcp_peer_fd_refused, "RFC 6062: peer connections refused: file descriptor reserve reached")  \
    X(tcp_peer_connects, "RFC 6062: connections to peers started (Connect)")                       \
    X(tcp_peer_connect_failed, "RFC 6062: connections to peers that failed (answered 447)")        \
    X(tcp_splices, "RFC 6062: data connections bound to a peer connection")                        \
    X(tcp_splice_paused, "RFC 6062: reads paused because the other side was not taking data")      \
    X(tcp_peer_rx_bytes, "RFC 6062: bytes read from peer connections")                             \
    X(tcp_peer_tx_bytes, "RFC 6062: bytes written to peer connections")                            \
    X(tcp_handoff_out,                                                                             \
      "RFC 6062: data connections handed to the worker owning their CONNECTION-ID")                \
    X(tcp_handoff_in, "RFC 6062: data connections taken over from another worker")                 \
    X(tcp_handoff_failed,                                                                          \
      "RFC 6062: handed-over data connections closed: no room in the loop, or at stop")            \
    X(tcp_handoff_signal_failed,                                                                   \
      "RFC 6062: hand-overs whose wake-up write failed (picked up later)")                         \
    X(mobility_passed, "RFC 8016: Refreshes with another worker's MOBILITY-TICKET passed to it")   \
    X(mobility_pass_failed, "RFC 8016: such Refreshes dropped: no memory to pass them on")         \
    X(mobility_signal_failed, "RFC 8016: passes whose wake-up write failed (picked up later)")     \
    X(mobility_handled, "RFC 8016: Refreshes passed from another worker, answered here")           \
    X(mobility_adopted, "RFC 8016: allocations taken over from another worker (client moved)")     \
    X(mobility_adopt_failed,                                                                       \
      "RFC 8016: moved allocations ended: their new 5-tuple allocated meanwhile, or no memory")    \
    X(tcp_half_close_to_client, "RFC 6062: peer FINs passed on to the client (shutdown SHUT_WR)")  \
    X(tcp_half_close_to_peer, "RFC 6062: client FINs passed on to the peer (shutdown SHUT_WR)")    \
    X(tcp_control_dropped,                                                                         \
      "RFC 6062: Connect answers or ConnectionAttempts with no room to queue")                     \
    X(dtls_rx_datagrams, "DTLS datagrams received on dtls listeners")                              \
    X(dtls_rx_bytes, "DTLS bytes received on dtls listeners (records, encrypted)")                 \
    X(dtls_tx_datagrams, "DTLS datagrams sent from dtls listeners")                                \
    X(dtls_tx_bytes, "DTLS bytes sent from dtls listeners (records, encrypted)")                   \
    X(dtls_send_errors, "DTLS datagrams lost: a send failed or the session could not send")        \
    X(dtls_hello_verify, "DTLS HelloVerifyRequests sent (a stateless cookie asked for)")           \
    X(dtls_bad_cookie, "dropped: DTLS ClientHello whose cookie did not verify")                    \
    X(dtls_drop_no_session, "dropped: DTLS datagram from a source without a session, no hello")    \
    X(dtls_drop_bad_hello, "dropped: DTLS ClientHello that could not be parsed")                   \
    X(dtls_drop_retired, "dropped: DTLS ClientHello on a listener a reload removed")               \
    X(dtls_drop_undecryptable, "dropped: DTLS application record that did not decrypt")            \
    X(dtls_rejected_handshakes, "dropped: verified DTLS ClientHello, relay.dtls_max_handshakes")   \
    X(dtls_rejected_per_ip,                                                                        \
      "dropped: verified DTLS ClientHello, relay.dtls_max_per_ip from its IP")                     \
    X(dtls_rejected_sessions, "dropped: verified DTLS ClientHello, per-worker session limit")      \
    X(dtls_rejected_nomem, "dropped: verified DTLS ClientHello, out of memory")                    \
    X(dtls_sessions, "DTLS sessions made (a verified ClientHello)")                                \
    X(dtls_handshakes, "DTLS handshakes completed")                                                \
    X(dtls_handshake_failed, "DTLS sessions closed: handshake failed")                             \
    X(dtls_handshake_timeout, "DTLS sessions closed: handshake not done in time")                  \
    X(dtls_closed, "DTLS sessions closed (all reasons)")                                           \
    X(dtls_close_alert, "DTLS sessions closed: the client sent close_notify or an alert")          \
    X(dtls_session_error, "DTLS sessions closed: a fatal error after the handshake")               \
    X(dtls_idle, "DTLS sessions closed: idle without an allocation")                               \
    X(dtls_allocation_end, "DTLS sessions closed: their allocation ended")                         \
    X(offload_to_peer, "ChannelData forwarded to peers by the XDP fast path (in the totals too)")  \
    X(offload_to_client, "peer datagrams forwarded to clients by the XDP fast path")               \
    X(offload_bound, "channels handed to the XDP fast path")                                       \
    X(offload_unbound, "channels taken back from the XDP fast path")                               \
    X(offload_bind_failed, "channels the XDP fast path could not take (map full or error)")        \
    X(offload_streams_handed, "RTP streams handed to the XDP fast path (confirmed by the meter)")

enum relay_counter {
#define RELAY_X_ENUM(name, help) RELAY_C_##name,
    RELAY_COUNTERS(RELAY_X_ENUM)
#undef RELAY_X_ENUM
        RELAY_C_COUNT
};
struct relay_counters {
    uint64_t v[RELAY_C_COUNT];
};
extern const char *const relay_counter_names[RELAY_C_COUNT];
extern const char *const relay_counter_help[RELAY_C_COUNT];

struct relay;

/* Create the workers and bind every listener for each (SO_REUSEPORT). A listener on port 0
 * gets a kernel-chosen port that all workers then share. Logs each bound address. Returns
 * NULL after logging what failed (address + reason). Takes cfg's contents (cfg is left empty,
 * also on failure): read the running configuration with relay_config_get. */
struct relay *relay_open(struct tern_config *cfg);

/* ---- Live reload (reload.c) ---- */

struct relay_reload_result {
    uint64_t generation;
    const char *changed[CFG_DIFF_MAX]; /* the keys that changed (static strings) */
    size_t nchanged;
};
/* Re-read path and apply it live (SIGHUP, ternctl reload, POST /api/v1/reload; from any
 * thread, one at a time). Everything is parsed, validated and built first: on any problem
 * (written to err as "file:line: key: problem", including keys that cannot change while
 * ternd runs) nothing changes and -1 is returned. Otherwise every worker adopts the new
 * configuration between two loop passes, without dropping an allocation, before it returns
 * 0 with the new generation and what changed (logged as config_reloaded). path NULL: the
 * embedded default runs, which cannot be reloaded (-1). */
int relay_reload(struct relay *r, const char *path, FILE *err, struct relay_reload_result *res);
/* The configuration generation: 1 at start, +1 per successful reload. */
uint64_t relay_generation(struct relay *r);
/* Reloads so far, successful and refused. */
void relay_reload_counts(struct relay *r, uint64_t *ok, uint64_t *failed);
/* The running configuration, held until relay_config_put (a reload may replace it meanwhile:
 * what is held stays valid). From any thread. */
const struct tern_config *relay_config_get(struct relay *r);
void relay_config_put(struct relay *r, const struct tern_config *c);
/* Called with "RELOADING=1..." and "READY=1..." around each reload (sd_notify). */
void relay_set_notify(struct relay *r, void (*notify)(const char *state));
/* Start the worker threads. 0 or -1. */
int relay_start(struct relay *r);
/* Ask every worker to stop, wait for them, and free everything. Sums counters first. */
void relay_close(struct relay *r, struct srv_counters *srv, struct relay_counters *io);

/* Drain: new Allocates are turned away (300 with an alternate server of the client's family,
 * else 508) while existing allocations carry on; deadline_s from now the rest may be ended
 * (relay_drain_close). Called again, it restarts the deadline. From any thread; logged. */
void relay_drain(struct relay *r, uint32_t deadline_s);
/* Back in service (new allocations accepted again). */
void relay_drain_cancel(struct relay *r);
/* Is it draining, and until when (CLOCK_MONOTONIC ms, relay_now_ms)? */
bool relay_draining(struct relay *r, uint64_t *deadline_ms);
/* The deadline passed: every worker ends its allocations (reason "drained") next pass. */
void relay_drain_close(struct relay *r);
/* CLOCK_MONOTONIC in ms, the clock of the drain deadline. */
uint64_t relay_now_ms(void);

/* The credential database: -1 none configured, 1 reachable, 0 gone (authentication goes on
 * from the last copy loaded); *outages: how many times it went away. */
int relay_database(struct relay *r, uint64_t *outages);

/* ---- Fleet (ops/cluster.c) ---- */

/* Where new Allocates are steered (cluster.redirect): to[family][transport] (family 0 IPv4,
 * 1 IPv6; transport udp, tcp, tls, dtls) where set, while the node drains (the workers see that
 * themselves), always (over its CPU limit), or once it holds `above` allocations (0: never).
 * Nothing set: none is (the default). */
struct relay_steer {
    struct srv_steer to[2][SRV_TRANSPORTS];
    bool set[2][SRV_TRANSPORTS];
    bool always;
    uint64_t above;
};
/* Publish a steering table; every worker takes it up within a loop pass. From any thread. */
void relay_set_steer(struct relay *r, const struct relay_steer *st);
/* The fleet's nonce keys (newest first, at most RELAY_FLEET_KEYS; n 0: this process's own
 * key only, the default): every worker makes nonces with keys[0] and accepts all of them
 * from its next loop pass. From any thread. */
#define RELAY_FLEET_KEYS 3
void relay_set_nonce_keys(struct relay *r, const struct auth_nonce_key *keys, size_t n);
/* Allocations per user on the other live nodes of the fleet (allocation.max_per_user_fleet):
 * replaces what the last call gave. users[i] NUL-terminated. From any thread. */
void relay_set_fleet_users(struct relay *r, const char *const *users, const uint32_t *counts,
                           size_t n);
/* This node's allocations per user (count > 0): fn called for each, under the quota lock (it
 * must not call back into the relay). */
void relay_user_allocations(struct relay *r, void (*fn)(void *ctx, const char *user, uint32_t n),
                            void *ctx);
/* Allocations with an open quality episode on either leg, as of each worker's last sweep. */
uint64_t relay_poor(struct relay *r);
/* The running listeners as bound (the kernel's port for port 0): up to max into out, and how
 * many there are. */
struct relay_listener_info {
    enum cfg_transport transport;
    union stun_addr addr;
};
size_t relay_listeners(struct relay *r, struct relay_listener_info *out, size_t max);
/* Datagrams and messages relayed so far, both directions, all workers (as of their last loop
 * pass). */
uint64_t relay_relayed(struct relay *r);

/* How many workers run. */
unsigned relay_workers(const struct relay *r);
/* Has every worker finished a loop pass within max_age_ms? (The systemd watchdog.) */
bool relay_alive(struct relay *r, uint64_t max_age_ms);
/* Allocations, summed over the workers as of their last loop pass (no query). */
uint64_t relay_active(struct relay *r);

/* ---- Ops queries, from the HTTP thread. Each is answered by the workers in their own
 * threads (a mailbox per worker), one worker after another; they wait at most a few seconds
 * for a worker that does not answer. ---- */

/* Every allocation: a JSON array of summaries (README "Ops API"); NULL when out of memory. */
json_t *relay_allocations(struct relay *r);
/* One allocation in detail, or NULL when there is none with this id. */
json_t *relay_allocation(struct relay *r, uint64_t id);
/* One allocation's timeline (docs/qos.md §18.3), or NULL when there is none with this id. */
json_t *relay_allocation_timeline(struct relay *r, uint64_t id);
/* Close one allocation (as if its client deleted it). 0, or -1 when there is none. */
int relay_close_allocation(struct relay *r, uint64_t id);
/* Prometheus text exposition of every counter, gauge and histogram; malloc'd, NULL when out
 * of memory. */
char *relay_metrics(struct relay *r, size_t *len);

#endif
