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
    bool accept_paused;     /* TCP/TLS: out of epoll until fds free up (tcp.c) */
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
    /* File descriptors open (tcp.c fd_take/fd_give) against RLIMIT_NOFILE; the flags mark an
     * episode of refusals (logged when it starts and ends). */
    atomic_long fds;
    long fd_max;
    atomic_bool fd_short_accept, fd_short_relay;
};

struct tcp_conn;
struct udp_batch;
struct peer_batch;
struct relay_query;
struct fwd_train;

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
    struct udp_batch *batch;
    struct peer_batch *pbatch;
    uint64_t now_ms;         /* CLOCK_MONOTONIC, cached once per loop pass */
    int64_t now_ns;          /* CLOCK_REALTIME ns, cached once per loop pass (the clock of kernel
                                receive timestamps; TCP data, which has none, is stamped with it) */
    struct fwd_train *train; /* client data for peers, held during a UDP batch (peer.c) */
    bool train_on;           /* ... while udp_readable runs; TCP data is sent at once */
    bool gso_off;            /* the kernel refused a UDP GSO send: send one by one from now on */
    bool qos_on;             /* qos.enabled: the tap runs and sockets ask for receive timestamps */
    struct qos_metrics qm;   /* this worker's QoS aggregates (read through the mailbox) */
    int record_fd;           /* qos.record_file, shared by all workers (O_APPEND); -1: none */
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
    struct relay_counters io;
    void **graveyard; /* closed handlers, freed when the loop pass ends */
    size_t ngraves, capgraves;
};

/* query.c: the worker's side of the ops mailbox, and the end-of-allocation quality record. */
void worker_mbox(struct worker *w, struct ep_handler *h, uint32_t events);
void worker_record(struct worker *w, const struct allocation *a, const char *why);
/* The QoS meter of a, made on first use. NULL when out of memory (then nothing is measured). */
struct qos_alloc *worker_qos(struct worker *w, struct allocation *a);

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
    union stun_addr *self; /* the relay's own listening addresses (policy: never a peer) */
    struct peer_policy policy;
    struct srv_options opt;
    struct worker *workers;
    unsigned nworkers;
    int record_fd;              /* qos.record_file; -1: none */
    pthread_mutex_t query_lock; /* one ops query at a time */
};

/* Close h's fd now and free p when the current loop pass ends. */
void worker_bury(struct worker *w, struct ep_handler *h, void *p);

/* udp.c */
#define UDP_CTL_LEN 128 /* ancillary data room: PKTINFO + UDP_SEGMENT out; timestamp + drops in */
void udp_readable(struct worker *w, struct ep_handler *h, uint32_t events);
struct udp_batch *udp_batch_new(void);
/* sendmmsg n prepared messages on fd, counting what went and what was lost. */
void udp_send_batch(struct worker *w, int fd, struct mmsghdr *tx, int n);
/* Large socket buffers for a UDP listener (best effort). */
void udp_listener_buffers(int fd);
/* Ask for the local address of each datagram (wildcard listeners). 0 or -1. */
int udp_listener_setup(int fd, int family);
/* Send n datagrams (iov[i] to client t[i] through listener l[i]): one sendmmsg per listener,
 * runs of equal size to one client coalesced into UDP GSO sends; tx and ctl: room for n
 * messages. Counts what went and what was lost. */
#define UDP_SEND_MAX 128 /* datagrams per udp_send_clients call (larger calls are split) */
void udp_send_clients(struct worker *w, const struct listener *const *l, const struct srv_tuple *t,
                      struct iovec *iov, int n, struct mmsghdr *tx, uint8_t (*ctl)[UDP_CTL_LEN]);
/* Fill mh to send iov to client t->client through listener l, from t->local when l is a
 * wildcard (ctl: room for the ancillary data). */
void udp_prepare(struct msghdr *mh, const struct listener *l, const struct srv_tuple *t,
                 struct iovec *iov, uint8_t ctl[UDP_CTL_LEN]);

/* tcp.c */
void tcp_acceptable(struct worker *w, struct ep_handler *h, uint32_t events);
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
/* Queue bytes to a TCP/TLS client; false if the connection had to be closed (and with it
 * its allocation). */
bool tcp_send_client(struct worker *w, struct tcp_conn *c, const uint8_t *msg, size_t len);
/* The TLS server context from tls.certificate and tls.private_key; NULL after logging why. */
struct ssl_ctx_st *tls_context(const struct tern_config *cfg);

/* srvio.c: the TURN server's I/O callbacks (ports, quotas, relay sockets, randomness,
 * events); a worker copies the table and sets ctx to itself. */
extern const struct srv_io srvio_template;

/* peer.c: the peer side of the data path. */
/* A relay socket is readable: receive its peers' datagrams and frame them for the client. */
void peer_readable(struct worker *w, struct ep_handler *h, uint32_t events);
struct peer_batch *peer_batch_new(void);
/* Send the datagrams queued for UDP clients (at the end of every loop pass). */
void peer_flush_clients(struct worker *w);
struct fwd_train *fwd_train_new(void);
/* Send what the train holds (before a STUN message is handled). */
void peer_train_flush(struct worker *w);
/* The end of a UDP batch: flush, observe the batch's residence times, stop holding. */
void peer_train_end(struct worker *w);
/* Send data a client gave us to a peer through the allocation's relay socket; rx_ns: when
 * it was received (CLOCK_REALTIME ns), for the QoS tap. */
void peer_forward(struct worker *w, const struct srv_fwd *f, int64_t rx_ns);
/* Hand a client message to the TURN server and forward what it says to forward; returns the
 * length of the answer written to out (0: none). */
size_t client_message(struct worker *w, const struct srv_tuple *t, void *client_io,
                      const uint8_t *in, size_t len, int64_t rx_ns, uint8_t *out, size_t outcap);
/* Ask for kernel receive timestamps (when the tap is on) and kernel drop counts on fd. */
void sock_rx_options(const struct worker *w, int fd);
/* The receive time and kernel drop count in a received message's ancillary data. */
void rx_ancillary(const struct msghdr *mh, int64_t *rx_ns, uint32_t *ovfl, bool *have_ovfl);

#endif
