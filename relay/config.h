/* config.h: the relay's configuration, parsed once from YAML (libyaml) into an immutable struct. */
#ifndef TERN_CONFIG_H
#define TERN_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "stun.h" /* union stun_addr */

/* CFG_TCP_TLS: one TCP port for both; each connection's first byte tells TLS from plain.
 * CFG_DTLS: TURN over DTLS 1.2 (RFC 7350) on a UDP port (relay/dtls.c). */
enum cfg_transport { CFG_UDP, CFG_TCP, CFG_TLS, CFG_TCP_TLS, CFG_DTLS };
enum cfg_log_format { CFG_LOG_TEXT, CFG_LOG_JSON };
/* qos.dscp: what the relay does with the DSCP bits of a datagram it relays (ECN is always
 * carried over, RFC 8656 14). */
enum cfg_dscp { CFG_DSCP_PRESERVE, CFG_DSCP_ZERO, CFG_DSCP_BY_CLASS };
enum cfg_log_level { CFG_LOG_DEBUG, CFG_LOG_INFO, CFG_LOG_WARN, CFG_LOG_ERROR };
/* relay.offload: the kernel fast path (docs/offload.md). */
enum cfg_offload {
    CFG_OFFLOAD_OFF,
    CFG_OFFLOAD_AUTO,
    CFG_OFFLOAD_XDP,
    CFG_OFFLOAD_XDP_GENERIC,
    CFG_OFFLOAD_TC
};

struct cfg_listen {
    enum cfg_transport transport;
    union stun_addr addr; /* address and port (port 0: the kernel picks one) */
    bool proxy_protocol;  /* TCP kinds: each connection starts with a PROXY v1/v2 header */
};

/* Does a listener of this transport speak TLS (and need tls.certificate)? */
static inline bool cfg_transport_tls(enum cfg_transport t)
{
    return t == CFG_TLS || t == CFG_TCP_TLS;
}
/* Does a listener of this transport need tls.certificate and tls.private_key (TLS or DTLS)? */
static inline bool cfg_transport_cert(enum cfg_transport t)
{
    return cfg_transport_tls(t) || t == CFG_DTLS;
}
/* Is a listener of this transport a UDP socket (udp, dtls)? */
static inline bool cfg_transport_dgram(enum cfg_transport t)
{
    return t == CFG_UDP || t == CFG_DTLS;
}

struct cfg_cidr {
    union stun_addr addr; /* network address, host bits zero */
    uint8_t prefix;       /* 0-32 for IPv4, 0-128 for IPv6 */
};

struct cfg_user {
    char *name;
    char *password;
};

/* Where a key was given: its dotted path ("peers.deny", "listen[1]") and line. */
struct cfg_keyline {
    char key[48];
    unsigned line;
};

struct tern_config {
    char *name;                /* the file it came from (messages: "file:line: key: problem") */
    struct cfg_keyline *lines; /* every key given, with its line (cfg_key_line) */
    size_t nlines;

    /* server: */
    char *realm;      /* never NULL; default "tern" */
    char *software;   /* "" when the SOFTWARE attribute is omitted */
    char *user;       /* server.user: run as this user once the sockets are bound; NULL: stay */
    char *group;      /* server.group: ... and this group; NULL: the user's primary group */
    unsigned workers; /* 0 = auto (one per online CPU) */

    /* listen: */
    struct cfg_listen *listen;
    size_t nlisten;

    /* tls: (NULL when absent; required when a tls listener exists) */
    char *tls_certificate;
    char *tls_private_key;

    /* relay: */
    union stun_addr *relay_addresses; /* port 0 */
    size_t nrelay_addresses;
    union stun_addr relay_external; /* sa_family AF_UNSPEC when null */
    uint16_t port_min, port_max;
    enum cfg_offload offload;        /* off | auto | xdp | xdp-generic | tc */
    uint32_t dtls_max_handshakes;    /* per worker: DTLS sessions past the cookie, not yet up */
    uint32_t dtls_max_per_ip;        /* per worker: DTLS sessions from one client IP address */
    uint32_t dtls_handshake_timeout; /* seconds from the verified ClientHello to Finished */

    /* allocation: */
    uint32_t default_lifetime; /* seconds */
    uint32_t max_lifetime;
    uint32_t max_per_user;
    uint32_t max_total;
    uint32_t max_per_user_fleet; /* allocation.max_per_user_fleet: 0 unlimited */
    bool strict_channel_numbers;
    uint32_t max_tcp_connections; /* RFC 6062: peer connections per TCP allocation */
    bool mobility;                /* RFC 8016 MOBILITY-TICKET for UDP allocations */
    uint64_t bandwidth_limit;     /* bytes/s per allocation and direction; 0: unlimited */

    /* peers: */
    bool allow_loopback;
    bool allow_relay_to_relay; /* false: the relayed ports of the relay's own addresses too */
    struct cfg_cidr *peers_allow;
    size_t npeers_allow;
    struct cfg_cidr *peers_deny;
    size_t npeers_deny;
    /* drain: where new clients are sent while draining (300 ALTERNATE-SERVER, the first of
     * the client's family in turn), and how long a drain waits for allocations to end. */
    union stun_addr *drain_alternates;
    size_t ndrain_alternates;
    uint32_t drain_deadline; /* seconds */

    /* auth: */
    char *database; /* NULL: no credential database (static users and secrets only); a path
                       (SQLite) or a postgresql:// URI (a fleet's shared store) */
    char *database_password_file; /* PostgreSQL: its password, kept out of the YAML; NULL */
    struct cfg_user *users;
    size_t nusers;
    char **secrets; /* TURN REST API shared secrets: all valid at once (rotation) */
    size_t nsecrets;
    char *rest_separator; /* one character between expiry and user id; default ":" */
    uint32_t nonce_lifetime;
    bool strict_expiry; /* close allocations whose user is deleted, disabled or expired */
    /* Answers to unauthenticated requests over UDP per source /32 or /64 (rate per second,
     * burst) and per worker (global per second); 0: off. */
    uint32_t unauth_rate, unauth_burst, unauth_global_rate;

    /* qos: */
    bool qos_enabled;       /* the QoS tap on the forwarding path */
    char *qos_record_file;  /* one JSON line per ended allocation; NULL: none */
    enum cfg_dscp qos_dscp; /* preserve | zero | by-class (EF audio, AF41 video, CS0 else) */
    bool qos_priority;      /* per-datagram SO_PRIORITY by class */
    uint32_t qos_prio_audio, qos_prio_video, qos_prio_other; /* qos.priority_classes */
    uint32_t qos_timeline_minutes; /* qos.timeline.minutes: history kept per allocation */
    double qos_thr_loss;           /* qos.thresholds.loss (a ratio; 0: off) */
    uint32_t qos_thr_jitter_ms;    /* qos.thresholds.jitter_ms (0: off) */
    uint32_t qos_thr_rtt_ms;       /* qos.thresholds.rtt_ms (0: off) */
    char *qos_webhook;             /* qos.webhook: http(s) URL for episodes and records; NULL */
    uint32_t qos_webhook_queue;    /* qos.webhook_queue: messages waiting at most */
    bool qos_record_database;      /* each ended call's record into auth.database (PostgreSQL) */
    uint32_t qos_record_database_queue; /* qos.record_database_queue: records waiting at most */

    /* cluster: */
    char *cluster_node_id; /* this node's name in the fleet's call records; NULL: the hostname */
    /* The node registry (docs/fleet.md), on with a PostgreSQL auth.database: */
    uint32_t cluster_heartbeat;    /* cluster.heartbeat: seconds between two rows */
    uint32_t cluster_dead_after;   /* cluster.dead_after: a row this old is a dead node's */
    uint32_t cluster_forget_after; /* cluster.forget_after: a row this old is removed (0: never) */
    bool cluster_redirect;         /* cluster.redirect: 300 to the least-loaded node when over */
    uint32_t cluster_max_allocations; /* cluster.max_allocations: this node's limit (0: none) */
    double cluster_max_cpu;           /* cluster.max_cpu: share of the CPUs (0: none) */
    char *cluster_domain;      /* cluster.domain: the name in this node's TLS certificate; NULL */
    bool cluster_shared_nonce; /* cluster.shared_nonce: the fleet's nonce keys */
    uint32_t cluster_nonce_rotation; /* cluster.nonce_rotation: seconds a key is the newest */

    /* ops: */
    union stun_addr ops_listen; /* AF_UNSPEC when null (ops HTTP disabled) */
    char *ops_token;            /* NULL when null */

    /* log: */
    enum cfg_log_level log_level;
    enum cfg_log_format log_format;
};

/* The embedded default configuration (the text of configs/tern.yaml). */
extern const char cfg_default_yaml[];

/* Parse YAML text into *out. name is used in error messages ("file:line: key: problem").
 * On failure returns -1, writes one message per problem to err (it keeps going to report
 * every problem it can) and leaves *out empty; on success returns 0. */
int cfg_parse(struct tern_config *out, const char *name, const char *text, size_t len, FILE *err);
/* Read and parse a file. A missing or unreadable file is an error naming it. */
int cfg_load(struct tern_config *out, const char *path, FILE *err);
/* Free everything cfg_parse allocated. Wipes secrets and passwords. */
void cfg_free(struct tern_config *c);

const char *cfg_transport_name(enum cfg_transport t);

/* The line where key (a dotted path as in messages) was given; 0 when it was not. */
unsigned cfg_key_line(const struct tern_config *c, const char *key);

/* ---- live reload (config_diff.c) ---- */

#define CFG_DIFF_MAX 96
/* What differs between a running configuration and a new one. */
struct cfg_diff {
    const char *changed[CFG_DIFF_MAX]; /* keys applied live, in file order of the sections */
    size_t nchanged;
    unsigned refused; /* keys that cannot change while ternd runs (messages written to err) */
    bool listeners;   /* listen: entries added or removed */
    bool pools;       /* relay.addresses or relay.ports: new port pools for new allocations */
};
/* Compare old (running) and new. Each key that cannot change live is written to err as
 * "file:line: key: cannot change while ternd runs (...); restart to apply" and counted in
 * d->refused; the rest that differ are listed in d->changed. Secrets and passwords are
 * compared but never written. */
void cfg_diff(const struct tern_config *old, const struct tern_config *new, struct cfg_diff *d,
              FILE *err);
/* Are two listener entries the same socket (transport, address and port as configured)? */
bool cfg_listen_same(const struct cfg_listen *a, const struct cfg_listen *b);

#endif
