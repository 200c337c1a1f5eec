/* worker.h: one worker's state: its epoll loop, listeners, TCP connections and counters. */
#ifndef TERN_WORKER_H
#define TERN_WORKER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "relay.h"

struct worker;

/* Everything registered with epoll starts with this: the loop calls fn with the events. */
struct ep_handler {
    int fd;
    void (*fn)(struct worker *w, struct ep_handler *h, uint32_t events);
};

struct listener {
    struct ep_handler h;
    enum cfg_transport transport;
    union stun_addr addr; /* as bound (port resolved) */
    struct ssl_ctx_st *tls; /* CFG_TLS: the relay's SSL_CTX (shared, thread-safe); else NULL */
};

struct tcp_conn;
struct udp_batch;

struct worker {
    unsigned id;
    pthread_t thread;
    bool started;
    int epfd;
    struct ep_handler stop; /* an eventfd: readable means stop */
    const struct tern_config *cfg;
    struct srv_options opt;
    struct listener *listeners;
    size_t nlisteners;
    /* TCP connections in least-recently-active order: head is the next to idle out. */
    struct tcp_conn *lru_head, *lru_tail;
    size_t nconns;
    struct udp_batch *batch;
    uint64_t now_ms; /* CLOCK_MONOTONIC, cached once per loop pass */
    struct srv_counters srv;
    struct relay_counters io;
};

void udp_readable(struct worker *w, struct ep_handler *h, uint32_t events);
struct udp_batch *udp_batch_new(void);
void tcp_acceptable(struct worker *w, struct ep_handler *h, uint32_t events);
/* The TLS server context from tls.certificate and tls.private_key; NULL after logging why. */
struct ssl_ctx_st *tls_context(const struct tern_config *cfg);
void tcp_expire(struct worker *w);
void tcp_close_all(struct worker *w);

#endif
