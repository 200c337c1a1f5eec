/* fuzz_turn.c: libFuzzer target: a structure-aware TURN session fuzzer. The input is a script
 * of operations on one server (fresh per input, fake relay I/O, a fake clock): correctly or
 * deliberately wrongly signed requests, Send indications, ChannelData, peer datagrams, time
 * passing, TCP connections closing. Unlike fuzz_server it gets past authentication, so
 * Allocate, Refresh, CreatePermission, ChannelBind and the data paths are all reached.
 *
 * The world: users "fuzz"/"pw" and "other"/"pw2" (two, so that 441 and the per-user quota are
 * reachable) in realm "tern.fuzz", REST secrets "retired-secret" and "fuzz-secret" (':'); relay
 * addresses 192.0.2.10 (ports 49152-49155) and 2001:db8::10 (49152-49153), optionally 192.0.2.11
 * (50000-50002); quotas 2 per user, 3 in all; peers: no loopback, allow 198.51.100.0/24,
 * deny 8.8.4.0/24, the relay's own listening addresses 192.0.2.1:3478, [2001:db8::1]:3478 and
 * 198.51.100.7:3478; clients UDP 192.0.2.77:40000, UDP [2001:db8::77]:40001, TCP 192.0.2.77:40002,
 * UDP 192.0.2.78:40003 (where a mobile allocation moves: RFC 8016 mobility is on).
 *
 * Input format (every read past the end gives 0, so any byte string is a valid script):
 *
 *   CFG                 bit0 strict_channels; bit1 no SOFTWARE; bit2 external address
 *                       203.0.113.5; bit3 wildcard relay addresses (0.0.0.0, ::); bit4 a second
 *                       IPv4 relay address (third pool); bits5-7 port pool start offset
 *   then operations until the input ends (at most MAX_OPS), each one opcode byte O:
 *
 *   O&7 = 0  REQUEST    M T S F N attr*N
 *     M  bits0-2 method: Allocate, Refresh, CreatePermission, ChannelBind, Binding,
 *                0x00A (Connect), Send-as-request, 0x00B + bits5-7 (ConnectionBind,
 *                ConnectionAttempt as a request, then unknown)
 *        bits3-4 client tuple: 0 UDP v4, 1 UDP v6, 2 TCP v4, 3 UDP v4 from another address
 *                (a mobile client that moved: RFC 8016, allocation.mobility is on)
 *        bits5-7 reply capacity: 0-4 1500, 5 548, 6 100, 7 40
 *     T  transaction ID: < 0x40 the tuple's previous one (a retransmission), < 0x50 one of
 *        the 16 most recent of any tuple, else a fresh one
 *     S  bits0-2 signing: 0 USERNAME + MESSAGE-INTEGRITY (MD5 key); 1 USERNAME +
 *        PASSWORD-ALGORITHMS/PASSWORD-ALGORITHM SHA-256 + MESSAGE-INTEGRITY-SHA256; 2 USERNAME +
 *        the algorithms with MD5 + MESSAGE-INTEGRITY; 3 USERNAME + MESSAGE-INTEGRITY-SHA256 (MD5
 *        key); 4 USERHASH + algorithms SHA-256 + MESSAGE-INTEGRITY-SHA256; 5 USERHASH +
 *        MESSAGE-INTEGRITY; 6 no credentials at all; 7 USERNAME/REALM/NONCE but no integrity
 *        bit3 user ("fuzz" or "other"); bit4 FINGERPRINT; bit5 MESSAGE-INTEGRITY-SHA256
 *        truncated to 16 + 4*((F>>4)&3) bytes; bit6 attributes after the integrity (ignored);
 *        bit7 both MESSAGE-INTEGRITY and MESSAGE-INTEGRITY-SHA256
 *     F  fault (F&15): 0-6 none; 7 none, but a TURN REST username "<expiry>:r<(F>>4)&3>"
 *        (secret "fuzz-secret", password HMAC-SHA1, or HMAC-SHA256 with S bit3) instead of
 *        the static user, valid until 2 h after the start, or (F bit7) expiring now; 8 corrupted
 * MAC; 9 stale nonce; 10 nonce of another client; 11 wrong password; 12 wrong realm; 13 unknown
 * user; 14 algorithm list bid down; 15 forged nonce. F bits4-5: see S bit5; F bit6: the FINGERPRINT
 * (S bit4) is wrong N  N&15 attributes, placed after the credentials and before the integrity; each
 * is A (A&15) and its parameters: 0 XOR-PEER-ADDRESS   PEER           1 CHANNEL-NUMBER  c16 2
 * LIFETIME  u32                     3 REQUESTED-TRANSPORT  proto 4 EVEN-PORT  byte 5
 * RESERVATION-TOKEN  b (odd: the last token the server gave out, else 8 raw bytes) 6
 * REQUESTED-ADDRESS-FAMILY  f       7 ADDITIONAL-ADDRESS-FAMILY  f 8 DONT-FRAGMENT 9 DATA  L
 * bytes[L] 10 known type k (table) L bytes[L]  11 raw type t16 L bytes[L] 12 XOR-PEER-ADDRESS raw
 * L bytes[L] 13 SOFTWARE  L bytes[L] 14 k+1 XOR-PEER-ADDRESSes (k < 200) counting up from PEER 15
 * MOBILITY-TICKET  b: b&3 0 empty (an Allocate asking for mobility), 1 the last ticket the server
 * gave, 2 that one with a character changed, 3 the one before it O&7 = 1  SEND       M PEER L
 * bytes[L]: a Send indication. M bits0-1 tuple; bit2 DONT-FRAGMENT; bit3 FINGERPRINT; bit4 no
 * XOR-PEER-ADDRESS; bit5 no DATA; bit6 an unknown comprehension-required attribute; bit7 a Data
 * indication instead O&7 = 2  CHANNELDATA  M C L bytes[L]: M bits0-1 tuple, bits2-4 framing: 0
 * exact, 1 padded to 4, 2 length field + 1, 3 length field - 4, 4 length field 0xFFFF, 5 only 2
 * bytes, 6 3 bytes of junk after, 7 4 bytes of junk after. C: channel 0x4000 + C%16 (C < 0xC0) or
 * 0x4000 + (C - 0xC0) * 256 O&7 = 3  PEER DATA  M PEER Lhi Llo K bytes[K]: a datagram of L bytes
 * (the K bytes repeated; zeros when K is 0) from PEER to the relay socket of that family of tuple
 *        M&3's allocation (skipped when there is none), in an exact-size buffer with
 *        SRV_PEER_HEADROOM before and SRV_PEER_TAILROOM after
 *   O&7 = 4  CLOCK      Ahi Alo: advance by A * {1, 50, 500, 1000}[(O>>3)&3] ms (at most 2 h);
 *        then srv_expire unless O&0x20 (a message handled before the expiry timer runs)
 *   O&7 = 5  CLOSE      the TCP client's connection closes: srv_delete its allocation
 *   O&7 = 6  FAULT      B: the next B&7 relay_open calls fail with EADDRINUSE; B&8 then one
 *        with EACCES; B&0x10 another process takes a port of pool (B>>5)%pools; B&0x80 those
 *        ports come back
 *   O&7 = 7  RAW        M [K] L bytes[L]: M bits0-1 tuple; with M bit2 the bytes are the body
 *        (zero-padded to 4) of a message with a valid header: method M>>3, class K&3, a fresh
 *        transaction ID; K bit2 appends a FINGERPRINT, K bit3 corrupts it
 *
 *   PEER = P port16 [4 or 16 raw bytes]: P&15 picks 8.8.8.8 (+P>>4), 198.51.100.7 (the
 *        allowed CIDR), 2607:f8b0::1 (+P>>4), ::ffff:8.8.8.8, 64:ff9b::8.8.8.8,
 *        2002:808:808::1, ::8.8.8.8, 127.0.0.1, 10.0.0.1, 2001:db8::1, ::1, 0.0.0.0, 8.8.4.4
 *        (peers.deny), fe80::1, raw IPv4, raw IPv6.
 *
 * Checked (abort() on violation): every reply fits outcap, decodes, answers the request's
 * transaction and method, has no unknown attributes and no wrong FINGERPRINT; a success to a
 * TURN method and every error that only comes after authentication carry a MESSAGE-INTEGRITY
 * (-SHA256) that verifies with the requester's key (a replayed answer: its first time); no
 * request that was not correctly signed gets a success unless it is a retransmission answered
 * with exactly the bytes last answered to that 5-tuple and transaction, or with the answer that
 * created the live allocation (Allocate retransmitted); 401/438 carry REALM
 * and a NONCE valid for that client now; Allocate, Refresh, CreatePermission and ChannelBind
 * successes match the allocation table; forwarded data comes from the input, goes to a
 * permitted peer that policy_check(..., true) allows, through a relay socket of the peer's
 * family of the sender's allocation; peer data is framed inside the buffer (headroom /
 * tailroom), decodes as ChannelData (exactly when a channel is bound) or a Data indication
 * with the same bytes and peer, and is dropped exactly when it has to be; after every step
 * the expiry heap, table, sockets, ports and quotas agree; after srv_free no socket is open,
 * no port is taken and no quota is held.
 *
 * -DFUZZ_TURN_KNOWN_BUGS relaxes the checks that known, not yet fixed, server bugs fail, so
 * that a long run can look for others; without it those bugs stop the run. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <zlib.h>

#include "addr.h"
#include "auth.h"
#include "fake_io.h"
#include "nonce.h"
#include "policy.h"
#include "ports.h"
#include "rest.h"
#include "server.h"
#include "stun.h"
#include "users.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_turn: %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);    \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define MAX_OPS     512
#define NTUPLES     4
#define NPOOLS_MAX  3
#define MAX_SOCKS   16
#define MAX_FOREIGN 8
#define MAX_SENT    512 /* (tuple, tid) answered with integrity: what the cache may replay */
#define SCRATCH     32768
#define REALM       "tern.fuzz"
#define NONCE_LIFE  600
#define MAX_LIFE    3600
#define QUOTA_USER  2
#define QUOTA_TOTAL 3
#define TXC_MAX     384              /* server.c: larger answers are not cached */
#define START_MS    1700000000000ull /* the fake clock's start (also the wall clock) */
#define MAX_NAMES   16 /* distinct usernames holding quota (static users and REST names) */
#define REST_SECRET "fuzz-secret"

/* ---- the fixed world: users, keys, policy, addresses ---- */

static struct auth_users users;
static struct auth_creds creds;
static struct auth_nonce_key nonce_key;
static struct policy_cidr allow_cidr, deny_cidr;
static struct peer_policy policy;
static union stun_addr self_addrs[3]; /* the relay's own listening addresses */
static struct policy_self self_set;
static struct srv_tuple tuples[NTUPLES];
static union stun_addr external;
static const char *const user_names[2] = {"fuzz", "other"};
static const char *const rest_secrets[2] = {"retired-secret", REST_SECRET};
static const uint8_t wrong_key[32] = {
    0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55,
    0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55};
static int client_io_tag[NTUPLES]; /* distinct client_io handles */

static void set_addr(union stun_addr *a, const char *ip, uint16_t port)
{
    memset(a, 0, sizeof(*a));
    if (strchr(ip, ':')) {
        a->v6.sin6_family = AF_INET6;
        a->v6.sin6_port = htons(port);
        REQUIRE(inet_pton(AF_INET6, ip, &a->v6.sin6_addr) == 1);
    } else {
        a->v4.sin_family = AF_INET;
        a->v4.sin_port = htons(port);
        REQUIRE(inet_pton(AF_INET, ip, &a->v4.sin_addr) == 1);
    }
}

static void world_init(void)
{
    const char *const passwords[2] = {"pw", "pw2"};
    REQUIRE(auth_users_init(&users, REALM, user_names, passwords, 2) == 0);
    creds = auth_users_creds(&users);
    memset(nonce_key.secret, 0x42, sizeof(nonce_key.secret));
    set_addr(&allow_cidr.addr, "198.51.100.0", 0);
    allow_cidr.prefix = 24;
    set_addr(&deny_cidr.addr, "8.8.4.0", 0);
    deny_cidr.prefix = 24;
    set_addr(&self_addrs[0], "192.0.2.1", 3478);
    set_addr(&self_addrs[1], "2001:db8::1", 3478);
    set_addr(&self_addrs[2], "198.51.100.7", 3478); /* inside peers.allow: still never a peer */
    static const uint16_t self_ports[] = {3478};
    REQUIRE(policy_self_build(&self_set, self_addrs, 3, NULL, 0, self_ports, 1, 1, 0) == 0);
    policy = (struct peer_policy){.allow_loopback = false,
                                  .allow = &allow_cidr,
                                  .nallow = 1,
                                  .deny = &deny_cidr,
                                  .ndeny = 1,
                                  .self = &self_set};
    memset(tuples, 0, sizeof(tuples));
    tuples[0].transport = SRV_UDP;
    set_addr(&tuples[0].client, "192.0.2.77", 40000);
    set_addr(&tuples[0].local, "192.0.2.1", 3478);
    tuples[1].transport = SRV_UDP;
    set_addr(&tuples[1].client, "2001:db8::77", 40001);
    set_addr(&tuples[1].local, "2001:db8::1", 3478);
    tuples[2].transport = SRV_TCP;
    set_addr(&tuples[2].client, "192.0.2.77", 40002);
    set_addr(&tuples[2].local, "192.0.2.1", 3478);
    tuples[3].transport = SRV_UDP;
    set_addr(&tuples[3].client, "192.0.2.78", 40003);
    set_addr(&tuples[3].local, "192.0.2.1", 3478);
    set_addr(&external, "203.0.113.5", 0);
}

/* ---- the per-input state: fake relay I/O (tests/util/fake_io.h) and what was answered ---- */

struct world {
    struct srv s;
    bool srv_live;
    struct fake_io io; /* ports, sockets, quotas, injected failures, and the clock */
    uint64_t tid_counter;
    uint8_t last_tid[NTUPLES][STUN_TID_LEN];
    bool have_last_tid[NTUPLES];
    uint8_t recent_tid[16][STUN_TID_LEN];
    unsigned nrecent;
    uint64_t last_token;
    /* RFC 8016: the last two MOBILITY-TICKETs the server gave, and whether this request has one */
    uint8_t ticket[2][SRV_TICKET_TEXT];
    bool have_ticket[2];
    bool req_ticket;
    struct {
        unsigned tuple;
        uint8_t tid[STUN_TID_LEN];
        uint16_t len;
        uint32_t crc;
    } sent[MAX_SENT];
    size_t nsent;
    bool sent_overflow;
    struct {
        bool valid;
        uint64_t id;
        uint8_t tid[STUN_TID_LEN];
        uint16_t len;
        uint32_t crc;
    } alloc_answer[NTUPLES]; /* each tuple's Allocate success, replayed to retransmissions */
};

static struct world W;

/* FUZZ_TURN_TRACE=1 in the environment: one line per step on stderr (for writing seeds). */
static bool tracing;

static int reply_code(const uint8_t *out, size_t n)
{
    struct stun_msg r;
    if (!n || stun_decode(&r, out, n)) return 0;
    if (stun_class_of(r.type) == STUN_SUCCESS) return 200;
    const struct stun_attr *ec = stun_find(&r, STUN_ATTR_ERROR_CODE);
    int code = 0;
    const char *reason;
    size_t rlen;
    if (ec && stun_get_error(ec, &code, &reason, &rlen) == 0) return code;
    return -1;
}

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int user_index(const char *user, size_t ulen)
{
    for (int i = 0; i < 2; i++)
        if (strlen(user_names[i]) == ulen && memcmp(user_names[i], user, ulen) == 0) return i;
    return -1;
}

/* A name that may hold an allocation: a static user, or a REST username. */
static bool known_name(const char *user, size_t ulen)
{
    uint64_t expiry;
    return user_index(user, ulen) >= 0 ||
           auth_rest_parse((const uint8_t *)user, ulen, ':', &expiry) == 0;
}

/* ---- books: table, heap, sockets, ports, quotas agree ---- */

static int tuple_index(const struct srv_tuple *t)
{
    for (int i = 0; i < NTUPLES; i++)
        if (tuple_equal(t, &tuples[i])) return i;
    return -1;
}

static void check_books(void)
{
    const struct alloc_table *t = &W.s.allocs;
    REQUIRE(t->count <= NTUPLES);
    for (size_t i = 0; i < t->count; i++) {
        const struct allocation *a = t->heap[i];
        REQUIRE(a->heap_idx == i);
        if (i) REQUIRE(t->heap[(i - 1) / 2]->expires_ms <= a->expires_ms);
        REQUIRE(alloc_find(t, &a->tuple) == a);
        REQUIRE(tuple_index(&a->tuple) >= 0);
        REQUIRE(known_name(a->username, a->ulen));
        REQUIRE(a->nrelay >= 1 && a->nrelay <= 2);
        if (a->nrelay == 2) REQUIRE(a->relay[0].addr.sa.sa_family != a->relay[1].addr.sa.sa_family);
        for (unsigned k = 0; k < a->nrelay; k++) {
            const struct alloc_relay *r = &a->relay[k];
            REQUIRE(addr_port(&r->advertised) == addr_port(&r->addr));
            REQUIRE(r->advertised.sa.sa_family == r->addr.sa.sa_family);
        }
        REQUIRE(a->nperms <= ALLOC_MAX_PERMISSIONS && a->nchans <= ALLOC_MAX_CHANNELS);
    }
    /* Sockets, ports (none leaked, none double-booked) and quotas against the table. */
    fake_io_check_books(&W.io, &W.s);
    const uint64_t *c = W.s.c.v;
    REQUIRE(c[SRV_C_allocations_created] ==
            c[SRV_C_allocations_expired] + c[SRV_C_allocations_deleted] + t->count);
}

/* ---- input reader ---- */

struct rd {
    const uint8_t *p;
    size_t n;
};

static uint8_t u8(struct rd *r)
{
    if (!r->n) return 0;
    r->n--;
    return *r->p++;
}

static uint16_t u16(struct rd *r)
{
    uint16_t hi = u8(r);
    return (uint16_t)(hi << 8 | u8(r));
}

static uint32_t u32(struct rd *r)
{
    uint32_t hi = u16(r);
    return hi << 16 | u16(r);
}

/* Up to len bytes into out (missing ones are zero); returns len. */
static size_t bytes(struct rd *r, uint8_t *out, size_t len)
{
    size_t k = len < r->n ? len : r->n;
    memcpy(out, r->p, k);
    memset(out + k, 0, len - k);
    r->p += k;
    r->n -= k;
    return len;
}

static void read_peer(struct rd *r, union stun_addr *a)
{
    static const char *const table[14] = {
        "8.8.8.8",          "198.51.100.7",    "2607:f8b0::1", "::ffff:8.8.8.8",
        "64:ff9b::808:808", "2002:808:808::1", "::808:808",    "127.0.0.1",
        "10.0.0.1",         "2001:db8::1",     "::1",          "0.0.0.0",
        "8.8.4.4",          "fe80::1"};
    uint8_t p = u8(r);
    uint16_t port = u16(r);
    unsigned idx = p & 15;
    if (idx < 14) {
        set_addr(a, table[idx], port);
        if (idx == 0) a->v4.sin_addr.s_addr = htonl(ntohl(a->v4.sin_addr.s_addr) + (p >> 4));
        if (idx == 2) a->v6.sin6_addr.s6_addr[15] = (uint8_t)(1 + (p >> 4));
    } else if (idx == 14) {
        memset(a, 0, sizeof(*a));
        a->v4.sin_family = AF_INET;
        a->v4.sin_port = htons(port);
        bytes(r, (uint8_t *)&a->v4.sin_addr, 4);
    } else {
        memset(a, 0, sizeof(*a));
        a->v6.sin6_family = AF_INET6;
        a->v6.sin6_port = htons(port);
        bytes(r, a->v6.sin6_addr.s6_addr, 16);
    }
}

/* The i-th address counting up from a (for many permissions). */
static void peer_plus(const union stun_addr *a, unsigned i, union stun_addr *out)
{
    *out = *a;
    if (a->sa.sa_family == AF_INET) {
        out->v4.sin_addr.s_addr = htonl(ntohl(a->v4.sin_addr.s_addr) + i);
    } else {
        uint8_t *b = out->v6.sin6_addr.s6_addr;
        unsigned v = ((unsigned)b[14] << 8 | b[15]) + i;
        b[14] = (uint8_t)(v >> 8);
        b[15] = (uint8_t)v;
    }
}

/* ---- sending to the server and checking what comes back ---- */

struct expect {
    bool known;         /* built by this fuzzer (not RAW) */
    bool signed_ok;     /* credentials and integrity are right */
    const uint8_t *key; /* the key it was signed with */
    size_t keylen;
    const char *name; /* the username it was signed for */
    size_t namelen;
};

static bool sent_find(unsigned tuple, const uint8_t *tid, size_t *idx)
{
    for (size_t i = 0; i < W.nsent; i++)
        if (W.sent[i].tuple == tuple && memcmp(W.sent[i].tid, tid, STUN_TID_LEN) == 0) {
            *idx = i;
            return true;
        }
    return false;
}

static void sent_record(unsigned tuple, const uint8_t *tid, const uint8_t *reply, size_t n)
{
    size_t i;
    if (!sent_find(tuple, tid, &i)) {
        if (W.nsent == MAX_SENT) {
            W.sent_overflow = true;
            return;
        }
        i = W.nsent++;
        W.sent[i].tuple = tuple;
        memcpy(W.sent[i].tid, tid, STUN_TID_LEN);
    }
    W.sent[i].len = (uint16_t)n;
    W.sent[i].crc = (uint32_t)crc32(0L, reply, (uInt)n);
}

static bool verify_any(const struct stun_msg *r, bool sha)
{
    for (size_t u = 0; u < users.n; u++) {
        const struct auth_user *e = &users.v[u];
        if (sha ? stun_check_integrity_sha256(r, e->key_md5, 16) == 0 ||
                      stun_check_integrity_sha256(r, e->key_sha256, 32) == 0
                : stun_check_integrity(r, e->key_md5, 16) == 0 ||
                      stun_check_integrity(r, e->key_sha256, 32) == 0)
            return true;
    }
    return false;
}

static void canonical_of(const struct stun_msg *m, const struct stun_attr *a, union stun_addr *out)
{
    union stun_addr raw;
    REQUIRE(stun_get_xor_addr(m, a, &raw) == 0);
    policy_canonical(&raw, out);
}

/* Keep an answer's MOBILITY-TICKET (the previous one becomes the older). */
static void take_ticket(const struct stun_msg *r)
{
    const struct stun_attr *t = stun_find(r, STUN_ATTR_MOBILITY_TICKET);
    if (!t) return;
    REQUIRE(t->len == SRV_TICKET_TEXT);
    memcpy(W.ticket[1], W.ticket[0], SRV_TICKET_TEXT);
    W.have_ticket[1] = W.have_ticket[0];
    memcpy(W.ticket[0], t->val, SRV_TICKET_TEXT);
    W.have_ticket[0] = true;
}

/* The state after a fresh (not cached) success must agree with the answer. */
static void check_success(unsigned ti, const struct stun_msg *q, const struct stun_msg *r,
                          const uint8_t *out, size_t n, const struct expect *ex)
{
    const struct srv_tuple *t = &tuples[ti];
    struct allocation *a = alloc_find(&W.s.allocs, t);
    uint16_t method = stun_method_of(q->type);
    const struct stun_attr *lt = stun_find(r, STUN_ATTR_LIFETIME);
    uint32_t life = 0;
    if (lt) REQUIRE(stun_get_u32(lt, &life) == 0);
    switch (method) {
    case STUN_ALLOCATE: {
        REQUIRE(a != NULL);
        if (ex->known)
            REQUIRE(a->ulen == ex->namelen && memcmp(a->username, ex->name, a->ulen) == 0);
        REQUIRE(lt && life <= MAX_LIFE);
        unsigned k = 0;
        for (unsigned i = 0; i < r->nattrs; i++) {
            if (r->attrs[i].type != STUN_ATTR_XOR_RELAYED_ADDRESS) continue;
            union stun_addr x;
            REQUIRE(k < a->nrelay && stun_get_xor_addr(r, &r->attrs[i], &x) == 0);
            REQUIRE(addr_equal(&x, &a->relay[k].advertised));
            k++;
        }
        REQUIRE(k == a->nrelay);
        const struct stun_attr *tok = stun_find(r, STUN_ATTR_RESERVATION_TOKEN);
        if (tok) REQUIRE(stun_get_u64(tok, &W.last_token) == 0);
        /* A ticket exactly when an empty one was asked for over UDP (mobility is on). */
        const struct stun_attr *qt = stun_find(q, STUN_ATTR_MOBILITY_TICKET);
        REQUIRE(a->mobile == (qt != NULL));
        REQUIRE((stun_find(r, STUN_ATTR_MOBILITY_TICKET) != NULL) == a->mobile);
        if (a->mobile) REQUIRE(t->transport == SRV_UDP && qt->len == 0);
        take_ticket(r);
        union stun_addr x;
        const struct stun_attr *xm = stun_find(r, STUN_ATTR_XOR_MAPPED_ADDRESS);
        REQUIRE(xm && stun_get_xor_addr(r, xm, &x) == 0 && addr_equal(&x, &t->client));
        W.alloc_answer[ti].valid = true;
        W.alloc_answer[ti].id = a->id;
        memcpy(W.alloc_answer[ti].tid, r->tid, STUN_TID_LEN);
        W.alloc_answer[ti].len = (uint16_t)n;
        W.alloc_answer[ti].crc = (uint32_t)crc32(0L, out, (uInt)n);
        break;
    }
    case STUN_REFRESH: {
        REQUIRE(lt != NULL);
        REQUIRE(life <= MAX_LIFE); /* LIFETIME is what the allocation has left */
        if (life == 0)
            REQUIRE(a == NULL);
        else
            REQUIRE(a != NULL && a->expires_ms > W.io.now_ms);
        /* RFC 8016: a Refresh with a ticket that keeps the allocation gets a new one. */
        const struct stun_attr *qt = stun_find(q, STUN_ATTR_MOBILITY_TICKET);
        const struct stun_attr *rt = stun_find(r, STUN_ATTR_MOBILITY_TICKET);
        REQUIRE((rt != NULL) == (qt != NULL && life > 0));
        if (rt) {
            REQUIRE(a->mobile && rt->len == SRV_TICKET_TEXT);
            REQUIRE(qt->len != rt->len || memcmp(qt->val, rt->val, rt->len) != 0);
            take_ticket(r);
        }
        break;
    }
    case STUN_CREATE_PERMISSION: {
        REQUIRE(a != NULL);
        const struct stun_attr *pa = stun_find(q, STUN_ATTR_XOR_PEER_ADDRESS);
        REQUIRE(pa != NULL);
        for (; pa; pa = stun_find_next(q, pa)) {
            union stun_addr peer;
            canonical_of(q, pa, &peer);
            REQUIRE(alloc_permitted(a, &peer, W.io.now_ms));
            REQUIRE(policy_check(&policy, &peer, false) == POLICY_OK);
        }
        break;
    }
    case STUN_CHANNEL_BIND: {
        REQUIRE(a != NULL);
        const struct stun_attr *pa = stun_find(q, STUN_ATTR_XOR_PEER_ADDRESS);
        const struct stun_attr *ca = stun_find(q, STUN_ATTR_CHANNEL_NUMBER);
        uint16_t num;
        REQUIRE(pa && ca && stun_get_channel(ca, &num) == 0);
        REQUIRE(num >= STUN_CHANNEL_MIN &&
                num <= (W.s.opt.strict_channels ? STUN_CHANNEL_MAX_STRICT : STUN_CHANNEL_MAX));
        union stun_addr peer;
        canonical_of(q, pa, &peer);
        const struct alloc_chan *c = alloc_channel(a, num, W.io.now_ms);
        REQUIRE(c && addr_equal(&c->peer, &peer));
        REQUIRE(alloc_channel_of(a, &peer, W.io.now_ms) == c);
        REQUIRE(alloc_permitted(a, &peer, W.io.now_ms));
        break;
    }
    default:
        break;
    }
}

static void check_reply(unsigned ti, const uint8_t *in, size_t inlen, const uint8_t *out, size_t n,
                        bool cached, const struct expect *ex)
{
    const struct srv_tuple *t = &tuples[ti];
    struct stun_msg r, q;
    REQUIRE(stun_decode(&r, out, n) == 0);
    REQUIRE(inlen >= STUN_HEADER_LEN && memcmp(r.tid, in + 8, STUN_TID_LEN) == 0);
    uint16_t in_type = (uint16_t)(in[0] << 8 | in[1]);
    REQUIRE(stun_class_of(in_type) == STUN_REQUEST);
    uint16_t method = stun_method_of(in_type);
    REQUIRE(stun_method_of(r.type) == method);
    REQUIRE(stun_check_fingerprint(&r) != STUN_E_BAD_FINGERPRINT);
    REQUIRE(r.nunknown == 0);
    REQUIRE(!(r.integrity >= 0 && r.integrity_sha256 >= 0));
    bool has_mi = r.integrity >= 0 || r.integrity_sha256 >= 0;
    bool sha = r.integrity_sha256 >= 0;
    bool decoded = stun_decode(&q, in, inlen) == 0;

    if (cached) {
        /* A replay: exactly the bytes last answered to this 5-tuple and transaction (the
         * transaction cache), or the answer that created the live allocation (an Allocate
         * retransmitted after the cache forgot it). */
        REQUIRE(has_mi);
        uint32_t crc = (uint32_t)crc32(0L, out, (uInt)n);
        size_t i;
        bool ok = sent_find(ti, r.tid, &i) && W.sent[i].len == n && W.sent[i].crc == crc;
        const struct allocation *a = alloc_find(&W.s.allocs, t);
        if (a && W.alloc_answer[ti].valid && W.alloc_answer[ti].id == a->id &&
            memcmp(W.alloc_answer[ti].tid, r.tid, STUN_TID_LEN) == 0 &&
            W.alloc_answer[ti].len == n && W.alloc_answer[ti].crc == crc)
            ok = true;
        REQUIRE(ok || W.sent_overflow);
    }
    if (has_mi) {
        REQUIRE(method != STUN_BINDING);
        if (!cached && ex->known && ex->key) {
            int rc = sha ? stun_check_integrity_sha256(&r, ex->key, ex->keylen)
                         : stun_check_integrity(&r, ex->key, ex->keylen);
            REQUIRE(rc == 0);
            REQUIRE(decoded && (q.integrity_sha256 >= 0) == sha);
        } else if (!cached) {
            /* A cached answer was checked when it was fresh (same bytes, see above). */
            REQUIRE(verify_any(&r, sha));
        }
        if (n <= TXC_MAX) sent_record(ti, r.tid, out, n); /* what the cache now holds */
    }

    if (stun_class_of(r.type) == STUN_SUCCESS) {
        if (method == STUN_BINDING) {
            union stun_addr a;
            const struct stun_attr *x = stun_find(&r, STUN_ATTR_XOR_MAPPED_ADDRESS);
            REQUIRE(x && stun_get_xor_addr(&r, x, &a) == 0 && addr_equal(&a, &t->client));
            return;
        }
        REQUIRE(has_mi); /* every TURN method needs authentication */
        if (!cached) {
            REQUIRE(!ex->known || ex->signed_ok); /* no success without the right signature */
            REQUIRE(decoded);
            check_success(ti, &q, &r, out, n, ex);
        }
        return;
    }
    REQUIRE(stun_class_of(r.type) == STUN_ERROR);
    int code = 0;
    const char *reason;
    size_t rlen;
    const struct stun_attr *ec = stun_find(&r, STUN_ATTR_ERROR_CODE);
    REQUIRE(ec && stun_get_error(ec, &code, &reason, &rlen) == 0);
    REQUIRE(code >= 300 && code <= 699);
    if (method != STUN_BINDING && code != 400 && code != 401 && code != 438)
        REQUIRE(has_mi); /* only given after authentication */
    if (code == 401 || code == 438) {
        REQUIRE(!has_mi);
        const struct stun_attr *realm = stun_find(&r, STUN_ATTR_REALM);
        const struct stun_attr *nonce = stun_find(&r, STUN_ATTR_NONCE);
        REQUIRE(realm && realm->len == strlen(REALM) && memcmp(realm->val, REALM, realm->len) == 0);
        REQUIRE(nonce && auth_nonce_check(&nonce_key, &t->client, nonce->val, nonce->len,
                                          W.io.now_ms / 1000, NULL) == AUTH_NONCE_OK);
        REQUIRE(stun_find(&r, STUN_ATTR_PASSWORD_ALGORITHMS) != NULL);
    }
    /* (A Refresh with a ticket gets 437 also when its 5-tuple has another allocation.) */
    if (code == 437 && method != STUN_ALLOCATE && !cached &&
        !(decoded && stun_find(&q, STUN_ATTR_MOBILITY_TICKET)))
        REQUIRE(alloc_find(&W.s.allocs, t) == NULL);
}

static void check_fwd(unsigned ti, const uint8_t *in, size_t inlen, const struct srv_fwd *f)
{
    struct allocation *a = alloc_find(&W.s.allocs, &tuples[ti]);
    REQUIRE(a != NULL && f->a == a);
#ifdef FUZZ_TURN_KNOWN_BUGS
    /* Known: ChannelData on a channel whose family a Refresh deleted goes out through
     * a->relay[-1] (server.c do_channel_data does not check relay_index). */
    if (!(f->relay >= a->relay && f->relay < a->relay + a->nrelay)) return;
#endif
    REQUIRE(a->nrelay >= 1 && f->relay >= a->relay && f->relay < a->relay + a->nrelay);
    REQUIRE(f->relay->addr.sa.sa_family == f->peer.sa.sa_family);
    REQUIRE(fake_io_sock_index(&W.io, f->relay->io) >= 0);
    REQUIRE(policy_check(&policy, &f->peer, true) == POLICY_OK);
    union stun_addr canon;
    policy_canonical(&f->peer, &canon);
    REQUIRE(addr_equal(&canon, &f->peer)); /* already canonical */
    REQUIRE(alloc_permitted(a, &f->peer, W.io.now_ms));
    REQUIRE(f->len <= inlen && f->data >= in && f->data + f->len <= in + inlen);
    if ((in[0] & 0xC0) == 0x40) { /* ChannelData (from CHANNELDATA or RAW) */
        const struct alloc_chan *c = alloc_channel(a, (uint16_t)(in[0] << 8 | in[1]), W.io.now_ms);
        REQUIRE(c && addr_equal(&c->peer, &f->peer));
        REQUIRE(f->data == in + STUN_CHDATA_HEADER_LEN);
        REQUIRE(f->len == (size_t)(in[2] << 8 | in[3]));
    } else {
        struct stun_msg m;
        REQUIRE(stun_decode(&m, in, inlen) == 0);
        REQUIRE(stun_class_of(m.type) == STUN_INDICATION && stun_method_of(m.type) == STUN_SEND);
        const struct stun_attr *da = stun_find(&m, STUN_ATTR_DATA);
        const struct stun_attr *pa = stun_find(&m, STUN_ATTR_XOR_PEER_ADDRESS);
        REQUIRE(da && pa && f->data == da->val && f->len == da->len);
        canonical_of(&m, pa, &canon);
        REQUIRE(addr_equal(&canon, &f->peer));
    }
}

/* Hand msg (copied into an exact-size buffer) to srv_handle from tuple ti and check. */
static void deliver(unsigned ti, const uint8_t *msg, size_t len, size_t outcap,
                    const struct expect *ex)
{
    uint8_t *in = malloc(len ? len : 1);
    uint8_t *out = malloc(outcap);
    REQUIRE(in && out);
    memcpy(in, msg, len);
    struct srv_counters before = W.s.c;
    struct srv_fwd fwd;
    memset(&fwd, 0xA5, sizeof(fwd));
    size_t n =
        srv_handle(&W.s, &tuples[ti], &client_io_tag[ti], in, len, W.io.now_ms, out, outcap, &fwd);
    REQUIRE(n <= outcap);
    uint64_t moved = 0;
    for (int i = 0; i < SRV_C_COUNT; i++) {
        REQUIRE(W.s.c.v[i] >= before.v[i]);
        moved += W.s.c.v[i] - before.v[i];
    }
    REQUIRE(moved >= 1); /* every message is counted somewhere */
    if (fwd.moved) {
        /* RFC 8016: a Refresh with a ticket moved an allocation here from another 5-tuple, with
         * what the fuzzer knows of it (the Allocate answer retransmissions get). */
        int from = tuple_index(&fwd.moved_from);
        REQUIRE(from >= 0 && (unsigned)from != ti && tuples[from].transport == SRV_UDP);
        REQUIRE(fwd.moved == alloc_find(&W.s.allocs, &tuples[ti]) && fwd.moved->mobile);
        REQUIRE(alloc_find(&W.s.allocs, &tuples[from]) == NULL);
        REQUIRE(fwd.moved->client_io == &client_io_tag[ti]);
        W.alloc_answer[ti] = W.alloc_answer[from];
        W.alloc_answer[from].valid = false;
    }
    bool cached = W.s.c.v[SRV_C_retransmit_answered] != before.v[SRV_C_retransmit_answered];
    if (tracing) {
        const char *what = "?";
        for (int i = 0; i < SRV_C_COUNT; i++)
            if (W.s.c.v[i] != before.v[i] && i != SRV_C_rx_stun && i != SRV_C_rx_channeldata)
                what = srv_counter_names[i];
        fprintf(stderr,
                "  t=%llu.%03u tuple %u in %02x%02x len %zu tid %02x%02x%02x..%02x -> reply %zu "
                "code %d%s fwd %s [%s]\n",
                (unsigned long long)(W.io.now_ms / 1000), (unsigned)(W.io.now_ms % 1000), ti,
                len ? in[0] : 0, len > 1 ? in[1] : 0, len, len >= 20 ? in[8] : 0,
                len >= 20 ? in[9] : 0, len >= 20 ? in[10] : 0, len >= 20 ? in[19] : 0, n,
                reply_code(out, n), cached ? " cached" : "", fwd.a ? "yes" : "no", what);
    }
    if (n) check_reply(ti, in, len, out, n, cached, ex);
    if (fwd.a) {
        REQUIRE(n == 0);
        check_fwd(ti, in, len, &fwd);
    }
    struct allocation *a = alloc_find(&W.s.allocs, &tuples[ti]);
    if (a && a->client_io) REQUIRE(a->client_io == &client_io_tag[ti]);
    free(in);
    free(out);
    check_books();
}

/* ---- building requests ---- */

static const uint16_t known_types[] = {
    STUN_ATTR_MAPPED_ADDRESS,
    STUN_ATTR_USERNAME,
    STUN_ATTR_ERROR_CODE,
    STUN_ATTR_UNKNOWN_ATTRIBUTES,
    STUN_ATTR_REALM,
    STUN_ATTR_NONCE,
    STUN_ATTR_XOR_RELAYED_ADDRESS,
    STUN_ATTR_PASSWORD_ALGORITHM,
    STUN_ATTR_PASSWORD_ALGORITHMS,
    STUN_ATTR_USERHASH,
    STUN_ATTR_XOR_MAPPED_ADDRESS,
    STUN_ATTR_PRIORITY,
    STUN_ATTR_USE_CANDIDATE,
    STUN_ATTR_ICE_CONTROLLED,
    STUN_ATTR_ICE_CONTROLLING,
    STUN_ATTR_ALTERNATE_SERVER,
    STUN_ATTR_ICMP,
    STUN_ATTR_CHANGE_REQUEST,
    STUN_ATTR_ADDRESS_ERROR_CODE,
    STUN_ATTR_ALTERNATE_DOMAIN,
    STUN_ATTR_RESPONSE_ORIGIN,
    STUN_ATTR_OTHER_ADDRESS,
    STUN_ATTR_MESSAGE_INTEGRITY,
    STUN_ATTR_MESSAGE_INTEGRITY_SHA256,
    STUN_ATTR_FINGERPRINT,
    STUN_ATTR_DATA,
    STUN_ATTR_EVEN_PORT,
    STUN_ATTR_LIFETIME,
    STUN_ATTR_CHANNEL_NUMBER,
    STUN_ATTR_SOFTWARE,
    STUN_ATTR_DONT_FRAGMENT,
    STUN_ATTR_RESERVATION_TOKEN,
    STUN_ATTR_CONNECTION_ID, /* RFC 6062 */
};

static void raw_attr(struct rd *r, struct stun_enc *e, uint16_t type)
{
    uint8_t v[256];
    size_t len = bytes(r, v, u8(r));
    stun_enc_attr(e, type, v, len);
}

static void put_attr(struct rd *r, struct stun_enc *e)
{
    uint8_t a = u8(r);
    union stun_addr peer;
    switch (a & 15) {
    case 0:
        read_peer(r, &peer);
        stun_enc_xor_addr(e, STUN_ATTR_XOR_PEER_ADDRESS, &peer);
        break;
    case 1:
        stun_enc_channel(e, u16(r));
        break;
    case 2:
        stun_enc_u32(e, STUN_ATTR_LIFETIME, u32(r));
        break;
    case 3:
        stun_enc_u8_rffu(e, STUN_ATTR_REQUESTED_TRANSPORT, u8(r));
        break;
    case 4: {
        uint8_t v = u8(r);
        stun_enc_attr(e, STUN_ATTR_EVEN_PORT, &v, 1);
        break;
    }
    case 5: {
        uint8_t b = u8(r);
        if (b & 1) {
            stun_enc_u64(e, STUN_ATTR_RESERVATION_TOKEN, W.last_token);
        } else {
            uint8_t v[8];
            bytes(r, v, 8);
            stun_enc_attr(e, STUN_ATTR_RESERVATION_TOKEN, v, 8);
        }
        break;
    }
    case 6:
        stun_enc_u8_rffu(e, STUN_ATTR_REQUESTED_ADDRESS_FAMILY, u8(r));
        break;
    case 7:
        stun_enc_u8_rffu(e, STUN_ATTR_ADDITIONAL_ADDRESS_FAMILY, u8(r));
        break;
    case 8:
        stun_enc_attr(e, STUN_ATTR_DONT_FRAGMENT, NULL, 0);
        break;
    case 9:
        raw_attr(r, e, STUN_ATTR_DATA);
        break;
    case 10: {
        uint8_t k = u8(r);
        raw_attr(r, e, known_types[k % (sizeof(known_types) / sizeof(known_types[0]))]);
        break;
    }
    case 11:
        raw_attr(r, e, u16(r));
        break;
    case 12:
        raw_attr(r, e, STUN_ATTR_XOR_PEER_ADDRESS);
        break;
    case 13:
        raw_attr(r, e, STUN_ATTR_SOFTWARE);
        break;
    case 15: {
        uint8_t b = u8(r);
        unsigned which = (b & 3) == 3 ? 1 : 0;
        if ((b & 3) == 0 || !W.have_ticket[which]) {
            stun_enc_attr(e, STUN_ATTR_MOBILITY_TICKET, NULL, 0);
            break;
        }
        uint8_t v[SRV_TICKET_TEXT];
        memcpy(v, W.ticket[which], sizeof(v));
        if ((b & 3) == 2) v[2 + (b >> 2) % (SRV_TICKET_TEXT - 2)] ^= 0x01;
        stun_enc_attr(e, STUN_ATTR_MOBILITY_TICKET, v, sizeof(v));
        W.req_ticket = true;
        break;
    }
    case 14: {
        unsigned k = u8(r) % 200;
        read_peer(r, &peer);
        for (unsigned i = 0; i <= k; i++) {
            union stun_addr p;
            peer_plus(&peer, i, &p);
            stun_enc_xor_addr(e, STUN_ATTR_XOR_PEER_ADDRESS, &p);
        }
        break;
    }
    default:
        break;
    }
}

static void fresh_tid(uint8_t tid[STUN_TID_LEN], uint8_t salt)
{
    uint64_t v = splitmix(&W.tid_counter);
    memcpy(tid, &v, 8);
    tid[8] = salt;
    tid[9] = (uint8_t)(W.tid_counter >> 8);
    tid[10] = 0x7E;
    tid[11] = (uint8_t)W.tid_counter;
}

static void remember_tid(unsigned ti, const uint8_t tid[STUN_TID_LEN])
{
    memcpy(W.last_tid[ti], tid, STUN_TID_LEN);
    W.have_last_tid[ti] = true;
    memcpy(W.recent_tid[W.nrecent % 16], tid, STUN_TID_LEN);
    W.nrecent++;
}

static void choose_tid(unsigned ti, uint8_t t, uint8_t tid[STUN_TID_LEN])
{
    if (t < 0x40 && W.have_last_tid[ti])
        memcpy(tid, W.last_tid[ti], STUN_TID_LEN);
    else if (t >= 0x40 && t < 0x50 && W.nrecent > (unsigned)(t & 15))
        memcpy(tid, W.recent_tid[t & 15], STUN_TID_LEN);
    else
        fresh_tid(tid, t);
    remember_tid(ti, tid);
}

/* HMAC over the message so far (header length already covering the attribute), truncated. */
static void mac_sha256_truncated(struct stun_enc *e, const uint8_t *key, size_t keylen, size_t tlen)
{
    static const uint8_t zero[32];
    size_t off = e->len;
    stun_enc_attr(e, STUN_ATTR_MESSAGE_INTEGRITY_SHA256, zero, tlen);
    if (e->err) return;
    uint8_t mac[32];
    unsigned int mlen = 0;
    REQUIRE(HMAC(EVP_sha256(), key, (int)keylen, e->buf, off, mac, &mlen) != NULL && mlen == 32);
    memcpy(e->buf + off + 4, mac, tlen);
}

static void op_request(struct rd *r)
{
    static const uint16_t methods[5] = {STUN_ALLOCATE, STUN_REFRESH, STUN_CREATE_PERMISSION,
                                        STUN_CHANNEL_BIND, STUN_BINDING};
    static const size_t caps[8] = {1500, 1500, 1500, 1500, 1500, 548, 100, 40};
    uint8_t m = u8(r), t = u8(r), s = u8(r), f = u8(r), nattrs = u8(r) & 15;
    unsigned mi = m & 7;
    uint16_t method = mi < 5    ? methods[mi]
                      : mi == 5 ? 0x00A
                      : mi == 6 ? STUN_SEND
                                : (uint16_t)(0x00B + (m >> 5));
    unsigned ti = ((m >> 3) & 3) % NTUPLES;
    size_t outcap = caps[m >> 5];
    const struct srv_tuple *tu = &tuples[ti];
    uint8_t tid[STUN_TID_LEN];
    choose_tid(ti, t, tid);

    unsigned kind = s & 7, fault = f & 15;
    int user = (s >> 3) & 1;
    bool fp = s & 0x10, trunc = s & 0x20, trailing = s & 0x40, both = s & 0x80;
    const struct auth_user *au = &users.v[user];
    W.s.unix_s = W.io.now_ms / 1000; /* the wall clock, for REST usernames */
    bool userhash = kind == 4 || kind == 5;
    bool algs = kind == 1 || kind == 2 || kind == 4 || fault == 14;
    bool alg_sha = kind == 1 || kind == 4;
    bool mac_sha = kind == 1 || kind == 3 || kind == 4;
    bool creds_present = kind != 6;
    bool integrity = kind <= 5;

    /* The identity: a static user, or (fault 7) a TURN REST username "<expiry>:r<n>" whose
     * password is base64(HMAC(secret, username)), SHA-1 or SHA-256 by the user bit; F bit7
     * makes it expired. */
    static char rest_name[64];
    static struct auth_user rest_user;
    bool rest = fault == 7, rest_expired = rest && (f & 0x80);
    if (rest) {
        uint64_t expiry = rest_expired ? W.io.now_ms / 1000 : START_MS / 1000 + 7200;
        int n = snprintf(rest_name, sizeof(rest_name), "%llu:r%u", (unsigned long long)expiry,
                         (unsigned)((f >> 4) & 3));
        REQUIRE(n > 0 && (size_t)n < sizeof(rest_name));
        memset(&rest_user, 0, sizeof(rest_user));
        memcpy(rest_user.name, rest_name, (size_t)n + 1);
        rest_user.namelen = (size_t)n;
        char pw[AUTH_REST_PASSWORD_MAX];
        size_t plen = auth_rest_password(user ? AUTH_REST_HMAC_SHA256 : AUTH_REST_HMAC_SHA1,
                                         (const uint8_t *)REST_SECRET, strlen(REST_SECRET),
                                         (const uint8_t *)rest_name, (size_t)n, pw);
        REQUIRE(plen > 0);
        REQUIRE(auth_longterm_key(STUN_PASSWORD_ALG_MD5, rest_name, (size_t)n, REALM, strlen(REALM),
                                  pw, plen, rest_user.key_md5) == 16);
        REQUIRE(auth_longterm_key(STUN_PASSWORD_ALG_SHA256, rest_name, (size_t)n, REALM,
                                  strlen(REALM), pw, plen, rest_user.key_sha256) == 32);
        REQUIRE(auth_userhash(rest_name, (size_t)n, REALM, strlen(REALM), rest_user.userhash) == 0);
        au = &rest_user;
    }

    static uint8_t buf[SCRATCH];
    struct stun_enc e;
    stun_enc_init(&e, buf, sizeof(buf), stun_type(method, STUN_REQUEST), tid);

    /* Credentials first, so that stun_find sees these before any from the input. */
    if (creds_present) {
        if (fault == 13) {
            static const uint8_t nobody[32] = {0x11};
            if (userhash)
                stun_enc_attr(&e, STUN_ATTR_USERHASH, nobody, 32);
            else
                stun_enc_attr(&e, STUN_ATTR_USERNAME, "nobody", 6);
        } else if (userhash) {
            stun_enc_attr(&e, STUN_ATTR_USERHASH, au->userhash, STUN_USERHASH_LEN);
        } else {
            stun_enc_attr(&e, STUN_ATTR_USERNAME, au->name, au->namelen);
        }
        if (fault == 12)
            stun_enc_attr(&e, STUN_ATTR_REALM, "tern.fuzZ", 9);
        else
            stun_enc_attr(&e, STUN_ATTR_REALM, REALM, strlen(REALM));
        char nonce[AUTH_NONCE_LEN];
        uint64_t now_s = W.io.now_ms / 1000;
        if (fault == 9)
            auth_nonce_make(&nonce_key, &tu->client, now_s - NONCE_LIFE - 1, NONCE_LIFE, 0, nonce);
        else if (fault == 10)
            auth_nonce_make(&nonce_key, &tuples[(ti + 1) % NTUPLES].client, now_s, NONCE_LIFE, 0,
                            nonce);
        else
            auth_nonce_make(&nonce_key, &tu->client, now_s, NONCE_LIFE, 0, nonce);
        if (fault == 15) nonce[AUTH_NONCE_LEN - 1] = nonce[AUTH_NONCE_LEN - 1] == 'A' ? 'B' : 'A';
        stun_enc_attr(&e, STUN_ATTR_NONCE, nonce, AUTH_NONCE_LEN);
        if (algs) {
            uint16_t list[2] = {STUN_PASSWORD_ALG_SHA256, STUN_PASSWORD_ALG_MD5};
            if (fault == 14) { /* bid down: the list comes back altered */
                list[0] = STUN_PASSWORD_ALG_MD5;
                list[1] = STUN_PASSWORD_ALG_SHA256;
            }
            stun_enc_password_algorithms(&e, list, 2);
            stun_enc_password_algorithm(&e,
                                        alg_sha ? STUN_PASSWORD_ALG_SHA256 : STUN_PASSWORD_ALG_MD5);
        }
    }
    W.req_ticket = false;
    for (unsigned i = 0; i < nattrs; i++)
        put_attr(r, &e);

    const uint8_t *key = alg_sha ? au->key_sha256 : au->key_md5;
    size_t keylen = alg_sha ? 32 : 16;
    const uint8_t *sign_key = fault == 11 ? wrong_key : key;
    if (integrity) {
        size_t mac_at = e.len + 4;
        if (!mac_sha || both) stun_enc_integrity(&e, sign_key, keylen);
        if (mac_sha || both) {
            mac_at = e.len + 4;
            if (trunc)
                mac_sha256_truncated(&e, sign_key, keylen, 16 + 4 * ((f >> 4) & 3));
            else
                stun_enc_integrity_sha256(&e, sign_key, keylen);
        }
        if (fault == 8 && !e.err) buf[mac_at] ^= 0x01;
    }
    if (trailing) {
        stun_enc_attr(&e, STUN_ATTR_SOFTWARE, "after", 5);
        stun_enc_u32(&e, 0x0033, 0); /* unknown, comprehension-required, but ignored */
    }
    if (fp) stun_enc_fingerprint(&e);
    int len = stun_enc_finish(&e);
    if (len <= 0) return;
    if (fp && (f & 0x40)) buf[len - 1] ^= 0x01; /* a wrong FINGERPRINT: dropped */

    /* A REST login needs USERNAME (a USERHASH of a REST name is an unknown user). */
    bool ok = integrity && (fault < 8 || (fault == 10 && W.req_ticket)) && !(fp && (f & 0x40)) &&
              !rest_expired && !(rest && userhash);
    /* (Fault 10, the nonce of another client, is right with a ticket whose allocation that client
     * had: RFC 8016, a moving client signs with the nonce of its old address.) */
    struct expect ex = {.known = true,
                        .signed_ok = ok,
                        .key = ok ? key : NULL,
                        .keylen = keylen,
                        .name = au->name,
                        .namelen = au->namelen};
    deliver(ti, buf, (size_t)len, outcap, &ex);
}

static void op_send(struct rd *r)
{
    uint8_t m = u8(r);
    unsigned ti = (m & 3) % NTUPLES;
    union stun_addr peer;
    read_peer(r, &peer);
    uint8_t data[256];
    size_t dlen = bytes(r, data, u8(r));
    uint8_t tid[STUN_TID_LEN];
    fresh_tid(tid, m);
    static uint8_t buf[1024];
    struct stun_enc e;
    stun_enc_init(&e, buf, sizeof(buf),
                  stun_type(m & 0x80 ? STUN_DATA : STUN_SEND, STUN_INDICATION), tid);
    if (!(m & 0x10)) stun_enc_xor_addr(&e, STUN_ATTR_XOR_PEER_ADDRESS, &peer);
    if (!(m & 0x20)) stun_enc_attr(&e, STUN_ATTR_DATA, data, dlen);
    if (m & 0x04) stun_enc_attr(&e, STUN_ATTR_DONT_FRAGMENT, NULL, 0);
    if (m & 0x40) stun_enc_u32(&e, 0x0031, 0);
    if (m & 0x08) stun_enc_fingerprint(&e);
    int len = stun_enc_finish(&e);
    if (len <= 0) return;
    struct expect ex = {.known = true};
    deliver(ti, buf, (size_t)len, 1500, &ex);
}

static void op_channeldata(struct rd *r)
{
    uint8_t m = u8(r), c = u8(r);
    unsigned ti = (m & 3) % NTUPLES;
    uint16_t ch = c < 0xC0 ? (uint16_t)(0x4000 + c % 16) : (uint16_t)(0x4000 + (c - 0xC0) * 256);
    uint8_t buf[4 + 255 + 8];
    size_t dlen = bytes(r, buf + 4, u8(r));
    size_t total = 4 + dlen;
    uint16_t field = (uint16_t)dlen;
    switch ((m >> 2) & 7) {
    case 0:
        break;
    case 1:
        while (total % 4)
            buf[total++] = 0;
        break;
    case 2:
        field = (uint16_t)(dlen + 1);
        break;
    case 3:
        field = (uint16_t)(dlen >= 4 ? dlen - 4 : 0);
        break;
    case 4:
        field = 0xFFFF;
        break;
    case 5:
        total = 2;
        break;
    case 6:
        memset(buf + total, 0xEE, 3);
        total += 3;
        break;
    default:
        memset(buf + total, 0xEE, 4);
        total += 4;
        break;
    }
    buf[0] = (uint8_t)(ch >> 8);
    buf[1] = (uint8_t)ch;
    buf[2] = (uint8_t)(field >> 8);
    buf[3] = (uint8_t)field;
    struct expect ex = {.known = true};
    deliver(ti, buf, total, 1500, &ex);
}

static void op_peer(struct rd *r)
{
    uint8_t m = u8(r);
    unsigned ti = (m & 3) % NTUPLES;
    union stun_addr from;
    read_peer(r, &from);
    size_t len = u16(r);
    uint8_t pattern[255];
    size_t plen = bytes(r, pattern, u8(r));
    struct allocation *a = alloc_find(&W.s.allocs, &tuples[ti]);
    /* Only what a relay socket can receive: a source of the socket's own family. */
    struct alloc_relay *rel = NULL;
    if (a)
        for (unsigned i = 0; i < a->nrelay; i++)
            if (a->relay[i].addr.sa.sa_family == from.sa.sa_family) rel = &a->relay[i];
    if (!rel) return;
    size_t total = SRV_PEER_HEADROOM + len + SRV_PEER_TAILROOM;
    uint8_t *buf = malloc(total);
    uint8_t *orig = malloc(len ? len : 1);
    REQUIRE(buf && orig);
    memset(buf, 0xCC, SRV_PEER_HEADROOM);
    for (size_t i = 0; i < len; i++)
        buf[SRV_PEER_HEADROOM + i] = plen ? pattern[i % plen] : 0;
    memset(buf + SRV_PEER_HEADROOM + len, 0xCC, SRV_PEER_TAILROOM);
    memcpy(orig, buf + SRV_PEER_HEADROOM, len);

    union stun_addr peer;
    policy_canonical(&from, &peer);
    bool permitted = alloc_permitted(a, &peer, W.io.now_ms);
    bool allowed = policy_check(&policy, &peer, true) == POLICY_OK;
    const struct alloc_chan *chan = alloc_channel_of(a, &peer, W.io.now_ms);
    uint16_t chnum = chan ? chan->num : 0;
    bool stream = a->tuple.transport != SRV_UDP;
    bool alive = a->expires_ms > W.io.now_ms; /* lifetime not over (the sweep may lag) */

    struct srv_counters before = W.s.c;
    uint8_t *msg = NULL;
    size_t n = srv_peer_data(&W.s, a, rel, &from, buf + SRV_PEER_HEADROOM, len, W.io.now_ms, &msg);
    uint64_t moved = 0;
    for (int i = 0; i < SRV_C_COUNT; i++)
        moved += W.s.c.v[i] - before.v[i];
    REQUIRE(moved == 1);
    if (tracing)
        fprintf(stderr, "  t=%llu tuple %u peer data %zu bytes -> %zu%s\n",
                (unsigned long long)(W.io.now_ms / 1000), ti, len, n, chan ? " (channel)" : "");
    REQUIRE((n > 0) == (alive && permitted && allowed && len <= 0xFFFF - 48));
    if (n) {
        REQUIRE(msg >= buf && msg + n <= buf + total);
        if (chan) {
            uint16_t ch, dlen;
            const uint8_t *d;
            REQUIRE(stun_chdata_decode(msg, n, stream, &ch, &d, &dlen) == (int)n);
            REQUIRE(ch == chnum && dlen == len && memcmp(d, orig, len) == 0);
            REQUIRE(n == 4 + (stream ? (len + 3) / 4 * 4 : len));
            for (size_t i = len; i < n - 4; i++)
                REQUIRE(d[i] == 0);
            REQUIRE(W.s.c.v[SRV_C_peer_to_client_channel] ==
                    before.v[SRV_C_peer_to_client_channel] + 1);
        } else {
            struct stun_msg d;
            REQUIRE(stun_decode(&d, msg, n) == 0);
            REQUIRE(d.type == stun_type(STUN_DATA, STUN_INDICATION));
            REQUIRE(d.nunknown == 0 && d.integrity < 0 && d.fingerprint < 0);
            const struct stun_attr *pa = stun_find(&d, STUN_ATTR_XOR_PEER_ADDRESS);
            const struct stun_attr *da = stun_find(&d, STUN_ATTR_DATA);
            union stun_addr x;
            REQUIRE(pa && stun_get_xor_addr(&d, pa, &x) == 0 && addr_equal(&x, &peer));
            REQUIRE(da && da->len == len && memcmp(da->val, orig, len) == 0);
            REQUIRE(W.s.c.v[SRV_C_peer_to_client_data] == before.v[SRV_C_peer_to_client_data] + 1);
        }
    }
    free(buf);
    free(orig);
    check_books();
}

static void op_clock(struct rd *r, uint8_t o)
{
    static const uint64_t unit[4] = {1, 50, 500, 1000};
    uint64_t step = (uint64_t)u16(r) * unit[(o >> 3) & 3];
    if (step > 2 * 3600 * 1000) step = 2 * 3600 * 1000;
    W.io.now_ms += step;
    if (o & 0x20) return; /* the expiry timer has not run yet */
    size_t before = W.s.allocs.count;
    size_t n = srv_expire(&W.s, W.io.now_ms);
    if (tracing)
        fprintf(stderr, "  t=%llu expired %zu\n", (unsigned long long)(W.io.now_ms / 1000), n);
    REQUIRE(n == before - W.s.allocs.count);
    REQUIRE(alloc_expired(&W.s.allocs, W.io.now_ms) == NULL);
    for (size_t i = 0; i < W.s.allocs.count; i++)
        REQUIRE(W.s.allocs.heap[i]->expires_ms > W.io.now_ms);
    check_books();
}

static void op_close(void)
{
    struct allocation *a = alloc_find(&W.s.allocs, &tuples[2]);
    if (!a) return;
    srv_delete(&W.s, a, "closed");
    REQUIRE(alloc_find(&W.s.allocs, &tuples[2]) == NULL);
    check_books();
}

static void op_fault(struct rd *r)
{
    uint8_t b = u8(r);
    W.io.eaddrinuse_left = b & 7;
    W.io.error_next = b & 8 ? -EACCES : 0;
    if (b & 0x10) (void)fake_io_take_foreign(&W.io, (unsigned)((b >> 5) % W.io.npools));
    if (b & 0x80) fake_io_release_foreign(&W.io);
    check_books();
}

static void op_raw(struct rd *r)
{
    uint8_t m = u8(r), k = m & 4 ? u8(r) : 0;
    unsigned ti = (m & 3) % NTUPLES;
    uint8_t buf[STUN_HEADER_LEN + 256 + 3 + 8];
    size_t len;
    if (m & 4) {
        uint8_t tid[STUN_TID_LEN];
        fresh_tid(tid, m);
        struct stun_enc e;
        stun_enc_init(&e, buf, sizeof(buf), stun_type((uint16_t)(m >> 3), (enum stun_class)(k & 3)),
                      tid);
        len = STUN_HEADER_LEN + bytes(r, buf + STUN_HEADER_LEN, u8(r));
        while (len % 4)
            buf[len++] = 0;
        buf[2] = (uint8_t)((len - STUN_HEADER_LEN) >> 8);
        buf[3] = (uint8_t)(len - STUN_HEADER_LEN);
        if (k & 4) { /* FINGERPRINT over whatever the body is */
            e.len = len;
            stun_enc_fingerprint(&e);
            if (k & 8) buf[len + 7] ^= 0x01;
            len += 8;
        }
    } else {
        len = bytes(r, buf, u8(r));
    }
    struct expect ex = {.known = false};
    deliver(ti, buf, len, 1500, &ex);
}

static void world_start(uint8_t cfg)
{
    memset(&W, 0, sizeof(W));
    fake_io_init(&W.io, START_MS, 0x1234567890abcdefull);
    W.io.quota_user_max = QUOTA_USER;
    W.io.quota_total_max = QUOTA_TOTAL;
    W.io.quota_user_max_wins = true;
    W.io.max_open = MAX_SOCKS;
    W.io.name_ok = known_name;
    W.tid_counter = 0x5eed;
    bool wildcard = cfg & 8;
    union stun_addr relay_addrs[NPOOLS_MAX];
    set_addr(&relay_addrs[0], wildcard ? "0.0.0.0" : "192.0.2.10", 0);
    set_addr(&relay_addrs[1], wildcard ? "::" : "2001:db8::10", 0);
    set_addr(&relay_addrs[2], "192.0.2.11", 0);
    static const uint16_t pmin[NPOOLS_MAX] = {49152, 49152, 50000},
                          pmax[NPOOLS_MAX] = {49155, 49153, 50002};
    for (size_t i = 0; i < (cfg & 0x10 ? 3u : 2u); i++)
        REQUIRE(fake_io_add_pool(&W.io, &relay_addrs[i], pmin[i], pmax[i], cfg >> 5) == 0);
    static struct srv_options opt;
    opt = (struct srv_options){
        .software = cfg & 2 ? NULL : "tern fuzz",
        .realm = REALM,
        .default_lifetime_s = 600,
        .max_lifetime_s = MAX_LIFE,
        .nonce_lifetime_s = NONCE_LIFE,
        .strict_channels = cfg & 1,
        .policy = &policy,
        .creds = &creds,
        .nonce_key = &nonce_key,
        .relay_addrs = W.io.relay_addrs,
        .nrelay_addrs = W.io.npools,
        .external = cfg & 4 ? &external : NULL,
        .rest_secrets = rest_secrets,
        .nrest_secrets = 2,
        .rest_separator = ':',
        .mobility = true,
    };
    const struct srv_io io = fake_io_srv_io(&W.io);
    REQUIRE(srv_init(&W.s, &opt, &io, 1000) == 0);
}

static void world_end(void)
{
    srv_free(&W.s);
    fake_io_check_released(&W.io); /* reserved ports may stay */
    fake_io_free(&W.io);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool init;
    if (!init) {
        world_init();
        tracing = getenv("FUZZ_TURN_TRACE") != NULL;
        init = true;
    }
    struct rd r = {data, size};
    world_start(u8(&r));
    for (unsigned ops = 0; r.n && ops < MAX_OPS; ops++) {
        uint8_t o = u8(&r);
        switch (o & 7) {
        case 0:
            op_request(&r);
            break;
        case 1:
            op_send(&r);
            break;
        case 2:
            op_channeldata(&r);
            break;
        case 3:
            op_peer(&r);
            break;
        case 4:
            op_clock(&r, o);
            break;
        case 5:
            op_close();
            break;
        case 6:
            op_fault(&r);
            break;
        default:
            op_raw(&r);
            break;
        }
    }
    world_end();
    return 0;
}
