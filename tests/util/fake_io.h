/* fake_io.h: the one fake of the relay's side of the server core (struct srv_io, server.h) and
 * its clock, shared by the unit tests and the fuzzers of allocation/: port pools, relay sockets
 * as handles, quotas, deterministic randomness, recorded events and injected failures, with
 * books that must balance against the server's allocation table. */
#ifndef TERN_FAKE_IO_H
#define TERN_FAKE_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ports.h"
#include "server.h"

#define FAKE_IO_MAX_POOLS   3
#define FAKE_IO_MAX_SOCKS   1024 /* sockets ever opened by one fake (slots are not reused) */
#define FAKE_IO_MAX_EVENTS  1024 /* events recorded; later ones are only counted */
#define FAKE_IO_MAX_USERS   16   /* distinct usernames holding quota */
#define FAKE_IO_MAX_BUSY    4
#define FAKE_IO_MAX_FOREIGN 8

/* Port pool states, as ports.h documents them. */
enum { FAKE_PORT_FREE = 0, FAKE_PORT_USED = 1, FAKE_PORT_RESERVED = 2 };

/* A relay socket: the handle relay_open stores in alloc_relay.io. */
struct fake_sock {
    uint64_t alloc_id;
    union stun_addr addr;
    unsigned pool;
    bool open;
};

struct fake_event {
    char what[16];
    uint64_t alloc_id;
    bool has_peer;
    union stun_addr peer;
    enum policy_verdict verdict;
};

struct fake_quota_user {
    char name[STUN_MAX_USERNAME + 1];
    size_t len;
    unsigned n;
};

#define FAKE_IO_MAX_SENT  16 /* client_send messages kept (the last ones) */
#define FAKE_IO_MAX_TCONN 64 /* peer_connect calls kept (the last ones) */

struct fake_io {
    /* Settings, between fake_io_init and the server's first call. */
    bool refuse;       /* grant nothing: no port, socket or quota (a server that never allocates) */
    bool fixed_random; /* random bytes are all random_byte (else a splitmix64 stream from rng) */
    uint8_t random_byte;
    unsigned quota_user_max, quota_total_max; /* 0: unlimited */
    bool quota_user_max_wins; /* the server's user_max, when set, replaces quota_user_max */
    unsigned max_open;        /* sockets open at once; 0: unlimited */
    /* A name that may hold quota (only authenticated users get that far); NULL: any. */
    bool (*name_ok)(const char *user, size_t ulen);
    /* Where a broken invariant is reported (a cmocka failure, or abort); must not return.
     * NULL: print and abort. */
    void (*fail)(const char *file, int line, const char *what);

    /* Failure injection for relay_open, tried in this order. */
    int open_error;                  /* every relay_open fails with it */
    uint16_t busy[FAKE_IO_MAX_BUSY]; /* these ports answer -EADDRINUSE (another process) */
    unsigned eaddrinuse_left;        /* the next this many answer -EADDRINUSE */
    int error_next;                  /* the next one fails with it, once */

    /* The fake clock: the time every call to the server is made at (ms). */
    uint64_t now_ms;
    uint64_t rng;

    /* The books. */
    union stun_addr relay_addrs[FAKE_IO_MAX_POOLS];
    struct port_pool pools[FAKE_IO_MAX_POOLS];
    unsigned npools;
    uint16_t foreign[FAKE_IO_MAX_POOLS][FAKE_IO_MAX_FOREIGN]; /* held by no allocation */
    size_t nforeign[FAKE_IO_MAX_POOLS];
    struct fake_sock socks[FAKE_IO_MAX_SOCKS];
    size_t nsocks, nopen;
    unsigned open_calls, close_calls;
    struct fake_quota_user quota[FAKE_IO_MAX_USERS];
    size_t nquota;
    unsigned quota_total;
    struct fake_event events[FAKE_IO_MAX_EVENTS];
    size_t nevents, events_seen;

    /* RFC 6062: connections started (peer_connect), closed (tconn_close), and messages for
     * control connections (client_send). */
    bool no_tcp;       /* leave the RFC 6062 callbacks out (TCP allocations get 442) */
    int connect_error; /* peer_connect fails with it */
    struct srv_tconn *connects[FAKE_IO_MAX_TCONN];
    size_t nconnects;
    unsigned tconn_close_calls;
    uintptr_t next_handle;
    uint8_t sent[FAKE_IO_MAX_SENT][512];
    size_t sentlen[FAKE_IO_MAX_SENT];
    uint64_t sent_alloc[FAKE_IO_MAX_SENT];
    size_t nsent; /* ever sent; message i is at i % FAKE_IO_MAX_SENT */
};

#define FAKE_CHECK(io, cond)                                                                       \
    do {                                                                                           \
        if (!(cond)) fake_io_fail((io), __FILE__, __LINE__, #cond);                                \
    } while (0)

void fake_io_fail(const struct fake_io *io, const char *file, int line, const char *what);

/* Clear everything (settings too); the clock starts at now_ms, randomness from seed. */
void fake_io_init(struct fake_io *io, uint64_t now_ms, uint64_t seed);
/* A port pool for relay address addr (port ignored): pool index = call order. 0 / -1. */
int fake_io_add_pool(struct fake_io *io, const union stun_addr *addr, uint16_t min, uint16_t max,
                     uint32_t start);
/* The callbacks, with io as their context. */
struct srv_io fake_io_srv_io(struct fake_io *io);
/* The last message sent to a control connection (client_send), or NULL; *len set. */
const uint8_t *fake_io_last_sent(const struct fake_io *io, size_t *len);
/* A fresh non-NULL handle (a fake socket for peer_io). */
void *fake_io_handle(struct fake_io *io);
/* Release foreign ports and free the pools. */
void fake_io_free(struct fake_io *io);

static inline uint64_t fake_io_now_s(const struct fake_io *io)
{
    return io->now_ms / 1000;
}

uint8_t fake_io_port_state(const struct fake_io *io, unsigned pool, uint16_t port);
size_t fake_io_ports_in_state(const struct fake_io *io, uint8_t state);
/* A port of pool taken by someone else (no allocation, no socket). 0 / -1. */
int fake_io_take_foreign(struct fake_io *io, unsigned pool);
void fake_io_release_foreign(struct fake_io *io);

unsigned fake_io_quota_count(const struct fake_io *io, const char *user);
size_t fake_io_count_events(const struct fake_io *io, const char *what);
const struct fake_event *fake_io_last_event(const struct fake_io *io);
/* The open socket bound at a, or NULL. */
const struct fake_sock *fake_io_find_sock(const struct fake_io *io, const union stun_addr *a);
/* Index of the open socket with handle h, or -1. */
int fake_io_sock_index(const struct fake_io *io, const void *h);

/* The books against the server's table: one open socket and one port in use per relayed
 * address (plus the foreign ports), one quota unit per allocation, counted per user; every pool's
 * count of used ports is right. */
void fake_io_check_books(const struct fake_io *io, const struct srv *s);
/* After srv_free: every socket closed (exactly once), no quota held, no port in use but the
 * foreign ones. */
void fake_io_check_released(const struct fake_io *io);

#endif
