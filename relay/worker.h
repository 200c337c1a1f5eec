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
    enum cfg_transport transport;
    union stun_addr addr;   /* as bound (port resolved) */
    bool wildcard;          /* bound to 0.0.0.0 or ::: learn the local address per datagram */
    uint32_t rxq_ovfl;      /* UDP: the kernel's drop count for this worker's socket, last seen */
    struct ssl_ctx_st *tls; /* CFG_TLS: the relay's SSL_CTX (shared, thread-safe); else NULL */
    /* TCP/TLS: the epoll handler of each accepted connection (fwd_tcp_event) */
    void (*conn_fn)(struct worker *w, struct ep_handler *h, uint32_t events);
    bool accept_paused; /* TCP/TLS: out of epoll until fds free up (tcp.c) */
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
    struct port_pool *pools; /* one per relay address */
    size_t npools;
    struct quota_entry *quota; /* open addressing on the username */
    size_t quota_cap, quota_used;
    uint64_t total;
    uint32_t max_per_user, max_total;
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
struct fwd;
struct relay_query;
struct hostaddr;
struct offload;
struct offload_worker;

struct worker {
    unsigned id;
    pthread_t thread;
    bool started;
    int epfd;
    struct ep_handler stop; /* an eventfd: readable means stop */
    const struct tern_config *cfg;
    struct relay_shared *shared;
    struct srv srv;
    bool srv_ready;
    struct listener *listeners;
    size_t nlisteners;
    /* TCP connections in least-recently-active order: head is the next to idle out. */
    struct tcp_conn *lru_head, *lru_tail;
    size_t nconns;
    struct tcp_state *tcp; /* tcp.c: per-IP counts, the first-message deadline list, pauses */
    struct fwd *fwd;       /* the forwarding path's batches and queues (fwd.c) */
    uint64_t now_ms;       /* CLOCK_MONOTONIC, cached once per loop pass */
    /* Written by the worker every loop pass, read by the main thread: the pass's now_ms (the
     * systemd watchdog is fed only while every worker's is fresh) and its allocations. */
    atomic_uint_least64_t beat_ms, nallocs;
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
    uint64_t cred_gen;       /* auth.strict_expiry: the credential generation last checked */
    uint64_t revalidated_ms; /* ... and when (REST usernames expire with time alone) */
    uint64_t unauth_checked_ms, unauth_drops, unauth_episode_drops; /* unauth_episode() */
    bool unauth_episode;
    struct relay_counters io;
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
    const struct tern_config *cfg;
    struct ssl_ctx_st *tls; /* shared by the TLS listeners of all workers */
    struct relay_shared shared;
    struct auth_users users;
    struct credcache *cache;
    struct auth_creds creds;
    struct auth_nonce_key nonce_key;
    struct policy_cidr *allow, *deny;
    struct hostaddr *hostaddr; /* the relay's own addresses (policy: never a peer) */
    struct peer_policy policy; /* the workers' template (each has its own copy) */
    struct srv_options opt;
    struct worker *workers;
    unsigned nworkers;
    int record_fd;              /* qos.record_file; -1: none */
    pthread_mutex_t query_lock; /* one ops query at a time */
    struct offload *offload;    /* the XDP fast path (offload.c); NULL: not running */
};

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
