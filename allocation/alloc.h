/* alloc.h: TURN allocations (RFC 8656): the per-worker table keyed by client 5-tuple, expiry
 * heap, and each allocation's permissions and channels. Pure data structures: time is an
 * argument, sockets are opaque handles owned by the relay. */
#ifndef TERN_ALLOC_H
#define TERN_ALLOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "stun.h"

#define ALLOC_PERMISSION_MS   (300 * 1000) /* RFC 8656 9: permissions last 5 minutes */
#define ALLOC_CHANNEL_MS      (600 * 1000) /* RFC 8656 12: channel bindings last 10 minutes */
#define ALLOC_CHANNEL_HOLD_MS (300 * 1000) /* after expiry, number and peer stay reserved */
#define ALLOC_MAX_PERMISSIONS 128          /* per allocation; beyond: 508 */
#define ALLOC_MAX_CHANNELS    128          /* per allocation; beyond: 508 */
#define ALLOC_SCAN_MAX        8            /* up to this many, lookups scan; beyond, hash */

/* SRV_DTLS: TURN over DTLS (RFC 7350): datagrams like UDP (no stream framing, ICMP relayed),
 * but each source completed a handshake (never spoofed, like TCP). */
enum srv_transport { SRV_UDP, SRV_TCP, SRV_TLS, SRV_DTLS };
#define SRV_TRANSPORTS 4
/* Is it a byte stream (ChannelData padded to 4 bytes, RFC 8656 12.5)? */
static inline bool srv_stream(enum srv_transport t)
{
    return t == SRV_TCP || t == SRV_TLS;
}

/* The client side of a 5-tuple as the relay received it. */
struct srv_tuple {
    enum srv_transport transport;
    union stun_addr client; /* source of the message */
    union stun_addr local;  /* the server address it arrived on */
};

bool tuple_equal(const struct srv_tuple *a, const struct srv_tuple *b);

struct alloc_perm {
    union stun_addr ip; /* canonical peer address, port 0 */
    uint64_t expires_ms;
};

struct alloc_chan {
    uint16_t num;
    union stun_addr peer; /* canonical peer transport address */
    uint64_t expires_ms;  /* bound before this; reserved until + ALLOC_CHANNEL_HOLD_MS */
};

/* One relayed transport address (an allocation has one per address family). */
struct alloc_relay {
    union stun_addr addr;       /* where the relay socket is bound */
    union stun_addr advertised; /* XOR-RELAYED-ADDRESS (external_address when behind NAT) */
    unsigned pool;              /* which relay address (port pool) it came from */
    void *io;                   /* the relay's socket handle */
};

/* A token bucket: rate bytes per second, bursts of up to one second's worth. */
struct alloc_bucket {
    uint64_t rate; /* 0: unlimited */
    uint64_t tokens;
    uint64_t last_ms;
};

/* May n more bytes pass at now? Takes them if so. */
static inline bool alloc_bucket_take(struct alloc_bucket *b, size_t n, uint64_t now_ms)
{
    if (!b->rate) return true;
    if (now_ms > b->last_ms) {
        uint64_t add = (now_ms - b->last_ms) * b->rate / 1000;
        b->tokens = b->tokens + add > b->rate ? b->rate : b->tokens + add;
        b->last_ms = now_ms;
    }
    if (b->tokens < n) return false;
    b->tokens -= n;
    return true;
}

struct srv_tconn;
struct allocation;

/* RFC 8016 mobility: the secret part of a MOBILITY-TICKET (random, renewed on every Refresh
 * that carries one) and its link in the server's ticket index. */
#define ALLOC_TICKET_LEN 16
struct alloc_ticket {
    uint8_t id[ALLOC_TICKET_LEN];
    bool set;
    struct allocation *a;
    struct alloc_ticket *next;
};

struct allocation {
    uint64_t id;
    struct srv_tuple tuple;
    void *client_io; /* the relay's handle for the client side (TCP/TLS connection or NULL) */
    char username[STUN_MAX_USERNAME + 1];
    size_t ulen;
    struct alloc_relay relay[2];
    unsigned nrelay;
    bool dont_fragment;
    uint8_t alloc_tid[STUN_TID_LEN]; /* the Allocate that made it: retransmits get success */
    uint64_t alloc_req_hash;         /* (a retransmission is that very request) */
    uint8_t *alloc_resp;             /* ...byte for byte this answer */
    uint16_t alloc_resp_len;
    uint64_t created_ms, expires_ms;
    struct alloc_perm *perms;
    uint16_t nperms, capperms;
    struct alloc_chan *chans;
    uint16_t nchans, capchans;
    /* Hash indexes over perms and chans, made once either holds more than ALLOC_SCAN_MAX
     * entries (a short array is scanned): every per-packet lookup is O(1). */
    struct alloc_index *index;
    /* The user's bandwidth limit, applied to each direction separately. */
    struct alloc_bucket bw_to_peer, bw_to_client;
    /* ICMP errors relayed to the client: tokens (SRV_ICMP_BURST at most) and their refill. */
    uint32_t icmp_tokens;
    uint64_t icmp_ms;
    /* Traffic: "to_peer" came from the client and went to peers, "to_client" the reverse. */
    uint64_t pkts_to_peer, bytes_to_peer, pkts_to_client, bytes_to_client;
    /* RFC 6062: REQUESTED-TRANSPORT TCP (the relay socket listens; peers are connections). */
    bool tcp;
    struct srv_tconn *tconns; /* its peer connections (server.c owns them) */
    uint32_t ntconns;
    void *qos; /* the relay's QoS meter (opaque here; made and freed by the relay) */
    /* Datagrams of this allocation the server dropped, [0] from the client, [1] from peers,
     * for the relay's QoS timeline, which takes (and zeroes) them once a second. */
    uint32_t drops_perm[2], drops_bw[2];
    /* RFC 8016: the Allocate asked for mobility (UDP only). tickets[0] is the current ticket,
     * [1] the one before it (still accepted: the answer that carried its successor may have
     * been lost). moves: how often the allocation followed its client to a new 5-tuple. */
    bool mobile;
    struct alloc_ticket tickets[2];
    uint32_t moves;
    uint64_t moved_ms;
    /* The client's last addresses before the current one, newest first: a moving client
     * signs with the nonce one of them was given (it gets no new one while its Refreshes
     * succeed), so those nonces stay good for Refreshes with its ticket. */
#define ALLOC_PAST_CLIENTS 3
    union stun_addr past_clients[ALLOC_PAST_CLIENTS];
    uint8_t npast;
    /* Table links. */
    struct allocation *hnext;
    size_t heap_idx;
};

struct alloc_table {
    struct allocation **buckets;
    size_t nbuckets; /* power of two */
    size_t count;
    struct allocation **heap; /* min-heap on expires_ms */
    size_t heap_cap;
    uint64_t next_id;
};

/* id_base: ids are id_base + 1, + 2, ... (workers use disjoint bases). 0 or -1 (memory). */
int alloc_table_init(struct alloc_table *t, uint64_t id_base);
/* Frees the table only: the caller removes (and closes) every allocation first. */
void alloc_table_free(struct alloc_table *t);

/* A zeroed allocation with an id, for tuple; NULL when out of memory. Not yet in the table. */
struct allocation *alloc_new(struct alloc_table *t, const struct srv_tuple *tuple, uint64_t now_ms);
void alloc_destroy(struct allocation *a);
int alloc_insert(struct alloc_table *t, struct allocation *a);
void alloc_remove(struct alloc_table *t, struct allocation *a);
struct allocation *alloc_find(const struct alloc_table *t, const struct srv_tuple *tuple);
/* a (in t) now belongs to tuple (RFC 8016: its client moved); its expiry stays. */
void alloc_rekey(struct alloc_table *t, struct allocation *a, const struct srv_tuple *tuple);
void alloc_set_expiry(struct alloc_table *t, struct allocation *a, uint64_t expires_ms);
/* The allocation that expires first, if it has expired by now; NULL otherwise. */
struct allocation *alloc_expired(const struct alloc_table *t, uint64_t now_ms);
/* When the next allocation expires (UINT64_MAX if none). */
uint64_t alloc_next_expiry(const struct alloc_table *t);

/* Is there a live permission for peer's IP? peer must be canonical. */
bool alloc_permitted(const struct allocation *a, const union stun_addr *peer, uint64_t now_ms);
/* Install or refresh a permission. 0, or -1 when the allocation has too many (508). */
int alloc_permit(struct allocation *a, const union stun_addr *peer, uint64_t now_ms);
/* Would alloc_permit succeed (room for a new one or already present)? */
bool alloc_can_permit(const struct allocation *a, const union stun_addr *peer, uint64_t now_ms);

/* Drop every permission and channel whose peer is of family (its relay is going away). */
void alloc_forget_family(struct allocation *a, int family);
/* Drop every permission whose IP, and every channel whose peer, keep() refuses (a reload
 * changed the peer policy). Adds how many went to *perms and *chans. */
void alloc_forget_peers(struct allocation *a,
                        bool (*keep)(void *ctx, const union stun_addr *peer, bool with_port),
                        void *ctx, size_t *perms, size_t *chans);

/* The peer bound to channel num, or NULL when unbound or expired. */
const struct alloc_chan *alloc_channel(const struct allocation *a, uint16_t num, uint64_t now_ms);
/* The live channel bound to peer (address and port), or NULL. */
const struct alloc_chan *alloc_channel_of(const struct allocation *a, const union stun_addr *peer,
                                          uint64_t now_ms);
enum alloc_bind_result { ALLOC_BIND_OK = 0, ALLOC_BIND_CONFLICT = -1, ALLOC_BIND_FULL = -2 };
/* Bind or refresh num <-> peer following RFC 8656 11.2: a number bound (or held after expiry)
 * to another peer, or a peer bound (or held) to another number, is a conflict (400). */
enum alloc_bind_result alloc_bind(struct allocation *a, uint16_t num, const union stun_addr *peer,
                                  uint64_t now_ms);

#endif
