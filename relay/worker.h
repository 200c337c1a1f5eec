/* worker.h: one worker's state: its epoll loop, listeners, TCP connections, TURN server. */
#ifndef TERN_WORKER_H
#define TERN_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "credcache.h"
#include "ports.h"
#include "qos.h"
#include "relay.h"
#include "server.h"
#include "tcprelay.h"

struct worker;

/* Everything registered with epoll starts with this: the loop calls fn with the events.
 * fd -1 marks a handler closed earlier in the same loop pass (its memory lives until the pass
 * ends, in the worker's graveyard), so a stale event for it is skipped. */
struct ep_handler {
    int fd;
    void (*fn)(struct worker *w, struct ep_handler *h, uint32_t events);
};

struct listener {
    struct ep_handler h;
    struct cfg_listen conf; /* as configured (port 0 stays 0): what a reload compares */
    enum cfg_transport transport;
    union stun_addr addr;   /* as bound (port resolved) */
    bool wildcard;          /* bound to 0.0.0.0 or ::: learn the local address per datagram */
    uint32_t rxq_ovfl;      /* UDP: the kernel's drop count for this worker's socket, last seen */
    struct ssl_ctx_st *tls; /* CFG_TLS, CFG_TCP_TLS, CFG_DTLS: the generation's SSL_CTX (shared,
                               the DTLS one for CFG_DTLS); else NULL */
    bool demux;             /* CFG_TCP_TLS: the first byte of a connection says TLS or plain */
    bool proxy_protocol;    /* each connection starts with a PROXY header (tcp.c, proxyproto.h) */
    /* TCP/TLS: the epoll handler of each accepted connection (fwd_tcp_event) */
    void (*conn_fn)(struct worker *w, struct ep_handler *h, uint32_t events);
    bool accept_paused; /* TCP/TLS: out of epoll until fds free up (tcp.c) */
    /* Removed from the config by a reload (reload.c): a TCP/TLS listener stops accepting at
     * once (its connections carry on); a UDP one keeps its socket for the allocations made
     * through it, turns new Allocates away as a drain does, and closes when the last ends. */
    bool retired;
};

/* A relay socket: one relayed transport address of one allocation. */
struct relay_sock {
    struct ep_handler h;
    struct allocation *a;
    int family; /* finds its alloc_relay in a (slots may move when a dual allocation shrinks) */
    bool dont_fragment;
    uint32_t rxq_ovfl; /* the kernel's drop count for this socket, last seen (SO_RXQ_OVFL) */
};

/* State shared by all workers; the mutex guards ports and quotas (allocation set-up only,
 * never the forwarding path). */
struct relay_shared {
    pthread_mutex_t lock;
    /* One per relay address and port range: a reload that changes either adds pools (ids
     * never change, so allocations release their ports into the pool they came from); the
     * generation's srv_options.relay_addrs says which pools new allocations use. Under lock. */
    struct port_pool *pools;
    size_t npools, cappools;
    struct quota_entry *quota; /* open addressing on the username */
    size_t quota_cap, quota_used;
    uint64_t total;
    uint32_t max_per_user, max_total;
    uint32_t max_per_user_fleet; /* allocation.max_per_user_fleet (0: none), with the other
                                    nodes' counts in quota_entry.fleet */
    /* Drain (relay_drain): read by each worker once per loop pass; no lock. */
    atomic_bool draining;                    /* new allocations are turned away */
    atomic_bool drain_close;                 /* the deadline passed: end what is left ("drained") */
    atomic_uint_least64_t drain_deadline_ms; /* CLOCK_MONOTONIC */
    /* File descriptors open (tcp.c fd_take/fd_give) against RLIMIT_NOFILE; the flags mark an
     * episode of refusals (logged when it starts and ends). */
    atomic_long fds;
    long fd_max;
    atomic_bool fd_short_accept, fd_short_relay;
};

struct tcp_conn;
struct mob_msg;
struct dtls_state;
struct fwd;
struct relay_query;
struct hostaddr;
struct relay;

/* One configuration generation: everything a configuration file makes of the relay (reload.c).
 * The relay holds the current one; each worker holds the one it runs on until it adopts the
 * next between two loop passes; the ops thread holds one per request. Immutable once
 * published; freed with its last reference. */
struct relay_gen {
    atomic_uint refs;
    uint64_t id; /* 1 for the configuration ternd started with, +1 per reload */
    struct tern_config cfg;
    struct auth_users users; /* auth.users, keys derived */
    struct policy_cidr *allow, *deny;
    struct peer_policy policy;   /* the template: each worker adds its own self snapshot */
    struct srv_options opt;      /* policy and creds point into the worker / the relay */
    union stun_addr *pool_addrs; /* opt.relay_addrs: by pool id; AF_UNSPEC: a pool retired */
    size_t npools;
    struct ssl_ctx_st *tls;  /* new TLS handshakes use this context; NULL: no TLS listener */
    struct ssl_ctx_st *dtls; /* new DTLS handshakes (DTLS 1.2, cookies); NULL: no dtls listener */
    int record_fd;           /* qos.record_file (O_APPEND, reopened by every reload); -1: none */
    /* Listener sockets opened for this generation: fds[j * nworkers + i] is worker i's socket
     * for cfg.listen[j], -1 where the worker keeps the one it has; addrs[j] as bound. */
    int *fds;
    size_t nfds_per; /* workers */
    union stun_addr *addrs;
};
struct webhook;
struct records;
struct offload;
struct offload_worker;

struct worker {
    unsigned id;
    pthread_t thread;
    bool started;
    int epfd;
    struct ep_handler stop; /* an eventfd: readable means stop */
    struct relay *relay;
    struct relay_gen *gen;          /* the generation this worker runs on (a reference) */
    const struct tern_config *cfg;  /* &gen->cfg */
    atomic_uint_least64_t gen_seen; /* gen->id, for the reloading thread */
    struct relay_shared *shared;
    struct srv srv;
    bool srv_ready;
    /* Each listener is its own allocation: UDP allocations and TCP connections point at
     * theirs. Retired ones stay until nothing does (reload.c listeners_reap). */
    struct listener **listeners;
    size_t nlisteners, caplisteners;
    uint64_t reaped_ms;
    /* TCP connections in least-recently-active order: head is the next to idle out. */
    struct tcp_conn *lru_head, *lru_tail;
    size_t nconns;
    struct tcp_state *tcp;   /* tcp.c: per-IP counts, the first-message deadline list, pauses */
    struct dtls_state *dtls; /* dtls.c: sessions, the listening SSL, the cookie key */
    struct fwd *fwd;         /* the forwarding path's batches and queues (fwd.c) */
    uint64_t now_ms;         /* CLOCK_MONOTONIC, cached once per loop pass */
    /* Written by the worker every loop pass, read by the main thread: the pass's now_ms (the
     * systemd watchdog is fed only while every worker's is fresh) and its allocations. */
    atomic_uint_least64_t beat_ms, nallocs, relayed, npoor;
    /* This worker's copies of the fleet's steering table and nonce keys (srv.steer and
     * srv.fleet_keys point in), taken when relay->fleet_gen moves. */
    struct relay_steer steer;
    bool steer_any;
    struct auth_nonce_key fleet_keys[RELAY_FLEET_KEYS];
    uint64_t fleet_gen;
    int64_t now_ns;        /* CLOCK_REALTIME ns, cached once per loop pass (the clock of kernel
                              receive timestamps; TCP data, which has none, is stamped with it) */
    bool gso_off;          /* the kernel refused a UDP GSO send: send one by one from now on */
    bool qos_on;           /* qos.enabled: the tap runs and sockets ask for receive timestamps */
    struct qos_metrics qm; /* this worker's QoS aggregates (read through the mailbox) */
    int record_fd;         /* qos.record_file, shared by all workers (O_APPEND); -1: none */
    /* The ops mailbox: the HTTP thread leaves a query under mbox_lock and signals the
     * eventfd; the worker answers it in its own thread, so nothing on the forwarding path
     * is ever locked or shared. */
    struct ep_handler mbox;
    pthread_mutex_t mbox_lock;
    pthread_cond_t mbox_cond;
    struct relay_query *query;
    bool mbox_ready;
    /* RFC 6062 data connections other workers accepted for this one's CONNECTION-IDs: a
     * lock-free stack they push on, taken whole by this worker when the eventfd wakes it
     * (tcp.c tcp_handoff). */
    struct ep_handler handoff;
    _Atomic(struct tcp_conn *) handoff_head;
    /* RFC 8016: Refreshes passed to this worker (the owner of their ticket) and, the other way,
     * answered ones with the allocations that moved here (mobility.c): a lock-free stack and
     * its eventfd, handled between loop passes. */
    struct ep_handler mob;
    _Atomic(struct mob_msg *) mob_head;
    /* timeline.c: qos.webhook (the relay's, shared; NULL: none), when the meters were last
     * swept, and the config they were configured with (live reload swaps w->cfg). */
    struct webhook *webhook;
    struct records *records; /* qos.record_database (the relay's, shared; NULL: none) */
    uint64_t tl_swept_ms;
    uint64_t tl_gen;         /* the configuration generation the meters were configured with */
    uint64_t cred_gen;       /* auth.strict_expiry: the credential generation last checked */
    uint64_t revalidated_ms; /* ... and when (REST usernames expire with time alone) */
    uint64_t unauth_checked_ms, unauth_drops, unauth_episode_drops; /* unauth_episode() */
    bool unauth_episode;
    struct relay_counters io;
    struct tcprelay_totals tflow; /* RFC 6062 flows that ended: stalls, retransmissions */
    /* The peer policy this worker's server decides with: the relay's, with this worker's
     * snapshot of the relay's own addresses, renewed between loop passes when it changes. */
    struct peer_policy policy;
    struct hostaddr *hostaddr;
    const struct policy_self *self;
    uint64_t self_gen;
    struct offload_worker *offload; /* offload.c: bindings and ring; NULL: user space only */
    void **graveyard;               /* closed handlers, freed when the loop pass ends */
    size_t ngraves, capgraves;
};

/* query.c: the worker's side of the ops mailbox, and the end-of-allocation quality record. */
void worker_mbox(struct worker *w, struct ep_handler *h, uint32_t events);
void worker_record(struct worker *w, const struct allocation *a, const char *why);

/* The whole relay (worker.c builds it). */
struct relay {
    /* The current generation: read under gen_lock (relay_config_get) by other threads;
     * replaced only by relay_reload, which reload_lock serialises. */
    struct relay_gen *gen;
    pthread_mutex_t gen_lock, reload_lock;
    atomic_uint_least64_t generation; /* gen->id, without the lock */
    atomic_uint_least64_t reloads_ok, reloads_failed;
    /* The fleet's steering table and nonce keys (relay_set_steer, relay_set_nonce_keys):
     * copied in under fleet_lock, fleet_gen bumped; each worker copies them out between loop
     * passes. */
    pthread_mutex_t fleet_lock;
    struct relay_steer steer;
    struct auth_nonce_key fleet_keys[RELAY_FLEET_KEYS];
    size_t nfleet_keys;
    atomic_uint_least64_t fleet_gen;
    void (*notify)(const char *state); /* sd_notify while reloading (daemon/); NULL: none */
    struct relay_shared shared;
    struct credcache *cache;
    struct auth_creds creds;
    struct auth_nonce_key nonce_key;
    struct hostaddr *hostaddr; /* the relay's own addresses (policy: never a peer) */
    struct worker *workers;
    unsigned nworkers;
    pthread_mutex_t query_lock; /* one ops query at a time */
    /* qos.webhook: the sender thread (webhook.h); NULL: none */
    struct webhook *webhook;
    /* qos.record_database: the call record writer (records.h); NULL: none */
    struct records *records;
    struct offload *offload; /* the XDP fast path (offload.c); NULL: not running */
};

/* reload.c */
/* Build a generation from cfg (moved in: cfg is left empty), for relay r whose workers exist;
 * prev: the running one (NULL at start). Opens its listener sockets where prev has none, the
 * TLS context and the record file. NULL after writing each problem to err as
 * "file:line: key: problem". */
struct relay_gen *relay_gen_new(struct relay *r, struct tern_config *cfg,
                                const struct relay_gen *prev, FILE *err);
void relay_gen_put(struct relay_gen *g);
/* The worker's side of a reload: adopt the relay's current generation if it is newer than its
 * own (between loop passes). */
void worker_adopt(struct worker *w);
/* Retired listeners nothing uses any more are closed and freed (once a second). */
void listeners_reap(struct worker *w);
/* Open one listener socket (SO_REUSEPORT; *addr's port 0 is resolved). -1 after logging, and
 * writing the problem to err when not NULL. */
int listener_open(const struct cfg_listen *cl, union stun_addr *addr, FILE *err, const char *name,
                  unsigned line);
/* Put a listener socket into worker w's loop. 0 / -1. */
int listener_add(struct worker *w, const struct cfg_listen *cl, int fd, const union stun_addr *addr,
                 const struct relay_gen *g);
/* Self-loop guard spec from a generation (worker.c) and its refresh on reload. */
int self_addresses(struct relay *r, const struct relay_gen *g);

/* Close h's fd now and free p when the current loop pass ends. */
void worker_bury(struct worker *w, struct ep_handler *h, void *p);

/* When a was created, on the wall clock (allocations keep monotonic times). */
static inline int64_t worker_created_ns(const struct worker *w, const struct allocation *a)
{
    return w->now_ns - (int64_t)(w->now_ms - a->created_ms) * 1000000;
}

/* srvio.c: the TURN server's I/O callbacks (ports, quotas, relay sockets, randomness,
 * events); a worker copies the table and sets ctx to itself. */
extern const struct srv_io srvio_template;

#endif
