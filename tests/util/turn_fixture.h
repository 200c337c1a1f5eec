/* turn_fixture.h: the fixture of the test_turn_*.c unit tests: a server core over the fake relay
 * (fake_io.h) and its clock, and a small in-test TURN client that learns REALM and NONCE from its
 * 401 and signs from then on (MD5, SHA-256 with PASSWORD-ALGORITHMS, USERHASH), with the checks
 * every answer must pass. The fake's books (ports, quota, relay sockets) must balance after every
 * test (fx_finish). */
#ifndef TERN_TURN_FIXTURE_H
#define TERN_TURN_FIXTURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "alloc.h"
#include "auth.h"
#include "fake_io.h"
#include "nonce.h"
#include "policy.h"
#include "ports.h"
#include "rest.h"
#include "server.h"
#include "stun.h"
#include "users.h"

#define REALM    "tern.test"
#define SOFTWARE "tern-test/1"
#define T0       UINT64_C(1000000000000) /* the fake clock starts here (ms, second-aligned) */
#define SEC      UINT64_C(1000)
#define PORT_MIN 50000
#define PORT_MAX 50099
#define REQCAP   2048
#define OUTCAP   1500

struct fixture {
    /* Configuration: tests adjust it (and io's settings) between setup and fx_start. */
    struct srv_options opt;
    struct peer_policy policy;
    union stun_addr relay_addrs[2];
    uint16_t port_min, port_max;
    uint32_t port_start;
    /* The server and its credentials. */
    struct srv s;
    bool started;
    struct auth_users users;
    struct auth_creds creds;
    struct auth_nonce_key nonce_key;
    /* The fake relay (tests/util/fake_io.h): ports, sockets, quotas, events, and the clock. */
    struct fake_io io;
};

uint64_t mix64(uint64_t z);
union stun_addr mkaddr(const char *ip, uint16_t port);

/* Printable form for failure messages (two rotating buffers: one message can show two). */
const char *fmt_addr(const union stun_addr *a);
void assert_addr(const union stun_addr *got, const union stun_addr *want);

/* A broken invariant in the fake relay fails the test (cmocka), not the process. */
void fx_fail(const char *file, int line, const char *what);
int setup(void **state);
int teardown(void **state);
/* Pools for the configured relay addresses (once), then srv_init: its result. */
int fx_try_start(struct fixture *fx);
/* fx_try_start, which must succeed. */
void fx_start(struct fixture *fx);

/* The fake's books against the server's table: one open socket and one port in use per relayed
 * address, one quota unit per allocation, counted per user. */
void check_books(struct fixture *fx);

/* End of every test: srv_free must give everything back (sockets, ports, quota). */
void fx_finish(struct fixture *fx);

struct client {
    struct fixture *fx;
    struct srv_tuple t;
    const char *user, *pass;
    bool sha256;      /* PASSWORD-ALGORITHM + MESSAGE-INTEGRITY-SHA256 with the SHA-256 key */
    bool userhash;    /* USERHASH instead of USERNAME */
    bool fingerprint; /* FINGERPRINT on every message */
    uint16_t alg;     /* PASSWORD-ALGORITHM sent by SHA-256 clients */
    /* Learnt from the 401 (or 438). */
    uint8_t realm[STUN_MAX_TEXT_BYTES];
    size_t realmlen;
    uint8_t nonce[STUN_MAX_TEXT_BYTES];
    size_t noncelen;
    uint8_t algs[64];
    size_t algslen;
    uint8_t key[32];
    size_t keylen;
    uint8_t hash[STUN_USERHASH_LEN];
    /* Transaction IDs: a deterministic sequence per client. */
    uint64_t seed;
    uint32_t ntx;
};

/* One request (or indication) being built. */
struct req {
    uint8_t buf[REQCAP];
    struct stun_enc e;
    size_t len;
    bool fingerprint, mi, mi256;
};

/* An exchange: the request as the server saw it (forwarded data points into it), the answer,
 * its decoding and the counters around it. Holds views into itself: never copy one. */
struct reply {
    uint8_t in[REQCAP];
    size_t inlen;
    uint8_t buf[OUTCAP];
    size_t len;
    struct stun_msg m;
    struct srv_fwd fwd;
    struct srv_counters before, after;
    int code; /* 0 success, an ERROR-CODE, or -1 when nothing was answered */
    bool mi, mi256;
};

#define D(r, name) ((r)->after.v[SRV_C_##name] - (r)->before.v[SRV_C_##name])

void cl_init(struct client *c, struct fixture *fx, enum srv_transport tr, const char *ip,
             uint16_t port, const char *user, const char *pass);

/* The long-term key (and USERHASH) for what the client currently believes the realm is. */
void cl_derive(struct client *c);

/* Take REALM, NONCE and PASSWORD-ALGORITHMS from a 401 or 438 (RFC 8489 9.2.3). */
void cl_learn(struct client *c, const struct reply *r);
void req_begin(struct client *c, struct req *q, uint16_t method, enum stun_class cls);

/* FINGERPRINT if the client uses it, then the final length. */
void req_done(struct client *c, struct req *q);

/* What to leave out of a signed request (error-path tests). */
enum {
    SIGN_NO_USER = 1 << 0,
    SIGN_NO_REALM = 1 << 1,
    SIGN_NO_NONCE = 1 << 2,
    SIGN_NO_ALGS = 1 << 3, /* PASSWORD-ALGORITHMS (SHA-256 clients) */
    SIGN_NO_ALG = 1 << 4,  /* PASSWORD-ALGORITHM (SHA-256 clients) */
};

/* The long-term credential attributes (RFC 8489 9.2.3), the integrity attribute and FINGERPRINT. */
void req_sign(struct client *c, struct req *q, unsigned omit);

/* Hand bytes to srv_handle on the client's 5-tuple at the fake time. */
void handle_raw(struct client *c, const uint8_t *in, size_t len, struct reply *r);

/* Send a request and check what every answer must be: it decodes, matches the transaction and
 * method, carries FINGERPRINT iff the request did (RFC 8489 14.7), and SOFTWARE; an integrity
 * attribute, when present, is the request's kind and verifies with the client's key; every
 * success is integrity-protected. */
void xchg(struct client *c, const struct req *q, struct reply *r);
void send_signed(struct client *c, struct req *q, struct reply *r);
void expect_ok_at(const struct reply *r, const char *file, int line);
#define EXPECT_OK(r) expect_ok_at((r), __FILE__, __LINE__)

size_t counter_index(const char *name);

/* An error answer: its code, integrity exactly when authentication succeeded first, the
 * challenge (REALM, NONCE, PASSWORD-ALGORITHMS) exactly on unauthenticated 401/438, and exactly
 * its own error_ counter moved by one. */
void expect_error_at(const struct reply *r, int code, bool integrity, const char *file, int line);
#define EXPECT_ERR(r, code, integrity) expect_error_at((r), (code), (integrity), __FILE__, __LINE__)

void req_allocate(struct client *c, struct req *q);
void req_refresh(struct client *c, struct req *q, long lifetime);
void req_permit(struct client *c, struct req *q, const union stun_addr *peers, size_t n);
void req_bind(struct client *c, struct req *q, uint16_t ch, const union stun_addr *peer);

/* The first leg of every exchange: an unauthenticated Allocate, its 401, the challenge learnt. */
void cl_login(struct client *c);
struct allocation *cl_alloc(const struct client *c);

/* A signed UDP Allocate that must succeed. */
struct allocation *cl_allocate(struct client *c);
void cl_permit(struct client *c, const union stun_addr *peers, size_t n, struct reply *r);
void cl_permit1(struct client *c, const char *ip, struct reply *r);
void cl_bind(struct client *c, uint16_t ch, const union stun_addr *peer, struct reply *r);
void cl_refresh(struct client *c, long lifetime, struct reply *r);
void send_ind(struct client *c, const union stun_addr *peer, const void *data, size_t len, bool df,
              struct reply *r);

/* ChannelData from the client, padded to 4 over TCP/TLS (RFC 8656 12.5). */
void send_chdata(struct client *c, uint16_t ch, const void *data, size_t len, struct reply *r);
void expect_fwd(const struct reply *r, const struct allocation *a, unsigned ri,
                const union stun_addr *peer, const void *data, size_t len, bool df);

/* A datagram from `from` arriving on relay ri of a, in a heap buffer with exactly the promised
 * headroom and tailroom (ASan sees any write outside). The framed message is copied to out. */
size_t peer_in(struct fixture *fx, struct allocation *a, unsigned ri, const union stun_addr *from,
               const void *data, size_t len, uint8_t *out, size_t cap);
void expect_chdata(const uint8_t *msg, size_t n, uint16_t ch, const void *data, size_t len,
                   bool stream);
void expect_data_indication(const uint8_t *msg, size_t n, const union stun_addr *peer,
                            const void *data, size_t len);
uint32_t reply_u32(const struct reply *r, uint16_t type);
unsigned reply_count(const struct reply *r, uint16_t type);
union stun_addr reply_xaddr(const struct reply *r, uint16_t type, unsigned nth);

/* A relayed address from an Allocate answer: the right relay IP, a port the pool handed out
 * and the fake holds an open socket on. */
union stun_addr expect_relayed(struct fixture *fx, const struct reply *r, unsigned nth,
                               unsigned pool);

struct variant {
    enum srv_transport transport;
    bool ipv6, sha256, userhash, fingerprint;
};

/* A started fixture with one logged-in client holding a plain IPv4 allocation. */
struct allocation *one_allocation(struct fixture *fx, struct client *c);

/* A dual allocation, so that IPv6 forms are never refused for their family (443) first. */
struct allocation *dual_allocation(struct fixture *fx, struct client *c);

/* Allocate with EVEN-PORT R=1 and return the reservation token and the even port. */
uint64_t reserve_pair(struct client *c, uint16_t *port);

#endif
