/* alloc.c: the allocation table (hash on the 5-tuple, min-heap on expiry), permissions, channels.
 */
#include <string.h>

#include "alloc.h"
#include "tern_mem.h"
#include "wire.h"

bool tuple_equal(const struct srv_tuple *a, const struct srv_tuple *b)
{
    return a->transport == b->transport && addr_equal(&a->client, &b->client) &&
           addr_equal(&a->local, &b->local);
}

/* FNV-1a over the fields that make the tuple; the table is per worker, so a keyed hash buys
 * little (an attacker can only collide their own 5-tuples into one worker's chains). */
static size_t bucket(const struct alloc_table *t, const struct srv_tuple *tu)
{
    uint64_t h = FNV64_INIT ^ tu->transport;
    h = addr_hash(h, &tu->client);
    h = addr_hash(h, &tu->local);
    return (size_t)(h ^ h >> 29) & (t->nbuckets - 1);
}

int alloc_table_init(struct alloc_table *t, uint64_t id_base)
{
    memset(t, 0, sizeof(*t));
    t->nbuckets = 1024;
    t->buckets = tern_calloc(t->nbuckets, sizeof(*t->buckets));
    t->next_id = id_base;
    return t->buckets ? 0 : -1;
}

void alloc_table_free(struct alloc_table *t)
{
    tern_free(t->buckets);
    tern_free(t->heap);
    memset(t, 0, sizeof(*t));
}

struct allocation *alloc_new(struct alloc_table *t, const struct srv_tuple *tuple, uint64_t now_ms)
{
    struct allocation *a = tern_calloc(1, sizeof(*a));
    if (!a) return NULL;
    a->id = ++t->next_id;
    a->tuple = *tuple;
    a->created_ms = a->expires_ms = now_ms;
    a->heap_idx = SIZE_MAX;
    return a;
}

void alloc_destroy(struct allocation *a)
{
    if (!a) return;
    tern_free(a->alloc_resp);
    tern_free(a->perms);
    tern_free(a->chans);
    tern_free(a->index);
    tern_free(a);
}

/* ---- lookup indexes ----
 * Open addressing with linear probing; a slot holds entry index + 1 (0: empty). At most 128
 * entries in 256 slots. Entries are never removed one by one: any change rebuilds the index
 * (a control-plane cost, at most 3 x 128 insertions). Among entries with the same key, the
 * lower index sits earlier in the probe sequence, so lookups find what a scan in index order
 * would. */
#define INDEX_SLOTS 256

struct alloc_index {
    uint8_t perm[INDEX_SLOTS];      /* by peer IP */
    uint8_t chan_num[INDEX_SLOTS];  /* by channel number */
    uint8_t chan_peer[INDEX_SLOTS]; /* by peer transport address */
};

static unsigned hash_u32(uint32_t x)
{
    return (unsigned)((x * 0x9E3779B1u) >> 24); /* 8 bits */
}

static uint32_t ip_key(const union stun_addr *a)
{
    if (a->sa.sa_family == AF_INET) return a->v4.sin_addr.s_addr;
    uint32_t w[4];
    memcpy(w, &a->v6.sin6_addr, sizeof w);
    return w[0] ^ w[1] * 31 ^ w[2] * 961 ^ w[3] * 29791;
}

static unsigned index_addr_hash(const union stun_addr *a)
{
    uint16_t port = a->sa.sa_family == AF_INET ? a->v4.sin_port : a->v6.sin6_port;
    return hash_u32(ip_key(a) ^ (uint32_t)port * 0x85EBCA6Bu);
}

static void index_put(uint8_t *slots, unsigned h, unsigned entry)
{
    while (slots[h & (INDEX_SLOTS - 1)])
        h++;
    slots[h & (INDEX_SLOTS - 1)] = (uint8_t)(entry + 1);
}

/* Make, refresh or drop the index after perms or chans changed. */
static void index_rebuild(struct allocation *a)
{
    if (a->nperms <= ALLOC_SCAN_MAX && a->nchans <= ALLOC_SCAN_MAX) {
        tern_free(a->index);
        a->index = NULL;
        return;
    }
    if (!a->index && !(a->index = tern_malloc(sizeof(*a->index)))) return; /* scans still work */
    memset(a->index, 0, sizeof(*a->index));
    for (unsigned i = 0; i < a->nperms; i++)
        index_put(a->index->perm, hash_u32(ip_key(&a->perms[i].ip)), i);
    for (unsigned i = 0; i < a->nchans; i++) {
        index_put(a->index->chan_num, hash_u32(a->chans[i].num), i);
        index_put(a->index->chan_peer, index_addr_hash(&a->chans[i].peer), i);
    }
}

/* ---- expiry heap ---- */

static bool heap_less(struct allocation *x, struct allocation *y)
{
    return x->expires_ms < y->expires_ms;
}

static void heap_place(struct alloc_table *t, size_t i, struct allocation *a)
{
    t->heap[i] = a;
    a->heap_idx = i;
}

static void sift_up(struct alloc_table *t, size_t i)
{
    struct allocation *a = t->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!heap_less(a, t->heap[parent])) break;
        heap_place(t, i, t->heap[parent]);
        i = parent;
    }
    heap_place(t, i, a);
}

static void sift_down(struct alloc_table *t, size_t i)
{
    struct allocation *a = t->heap[i];
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        struct allocation *best = a;
        if (l < t->count && heap_less(t->heap[l], best)) m = l, best = t->heap[l];
        if (r < t->count && heap_less(t->heap[r], best)) m = r, best = t->heap[r];
        if (m == i) break;
        heap_place(t, i, best);
        i = m;
    }
    heap_place(t, i, a);
}

static int grow(struct alloc_table *t)
{
    /* Rehash at load 1 and grow the heap with the table. */
    if (t->count + 1 > t->heap_cap) {
        size_t cap = t->heap_cap ? t->heap_cap * 2 : 1024;
        struct allocation **h = tern_realloc(t->heap, cap * sizeof(*h));
        if (!h) return -1;
        t->heap = h;
        t->heap_cap = cap;
    }
    if (t->count + 1 > t->nbuckets) {
        size_t n = t->nbuckets * 2;
        struct allocation **b = tern_calloc(n, sizeof(*b));
        if (!b) return -1;
        struct allocation **old = t->buckets;
        size_t oldn = t->nbuckets;
        t->buckets = b;
        t->nbuckets = n;
        for (size_t i = 0; i < oldn; i++) {
            for (struct allocation *a = old[i], *next; a; a = next) {
                next = a->hnext;
                size_t k = bucket(t, &a->tuple);
                a->hnext = b[k];
                b[k] = a;
            }
        }
        tern_free(old);
    }
    return 0;
}

int alloc_insert(struct alloc_table *t, struct allocation *a)
{
    if (grow(t)) return -1;
    size_t k = bucket(t, &a->tuple);
    a->hnext = t->buckets[k];
    t->buckets[k] = a;
    heap_place(t, t->count, a);
    t->count++;
    sift_up(t, a->heap_idx);
    return 0;
}

void alloc_remove(struct alloc_table *t, struct allocation *a)
{
    struct allocation **pp = &t->buckets[bucket(t, &a->tuple)];
    while (*pp && *pp != a)
        pp = &(*pp)->hnext;
    if (!*pp) return;
    *pp = a->hnext;
    size_t i = a->heap_idx;
    t->count--;
    if (i != t->count) {
        struct allocation *moved = t->heap[t->count];
        heap_place(t, i, moved);
        sift_down(t, i);
        sift_up(t, moved->heap_idx);
    }
    a->heap_idx = SIZE_MAX;
    a->hnext = NULL;
}

void alloc_rekey(struct alloc_table *t, struct allocation *a, const struct srv_tuple *tuple)
{
    struct allocation **pp = &t->buckets[bucket(t, &a->tuple)];
    while (*pp && *pp != a)
        pp = &(*pp)->hnext;
    if (*pp) *pp = a->hnext;
    a->tuple = *tuple;
    size_t k = bucket(t, &a->tuple);
    a->hnext = t->buckets[k];
    t->buckets[k] = a;
}

struct allocation *alloc_find(const struct alloc_table *t, const struct srv_tuple *tuple)
{
    for (struct allocation *a = t->buckets[bucket(t, tuple)]; a; a = a->hnext)
        if (tuple_equal(&a->tuple, tuple)) return a;
    return NULL;
}

void alloc_set_expiry(struct alloc_table *t, struct allocation *a, uint64_t expires_ms)
{
    uint64_t old = a->expires_ms;
    a->expires_ms = expires_ms;
    if (a->heap_idx == SIZE_MAX) return;
    if (expires_ms < old)
        sift_up(t, a->heap_idx);
    else
        sift_down(t, a->heap_idx);
}

struct allocation *alloc_expired(const struct alloc_table *t, uint64_t now_ms)
{
    return t->count && t->heap[0]->expires_ms <= now_ms ? t->heap[0] : NULL;
}

uint64_t alloc_next_expiry(const struct alloc_table *t)
{
    return t->count ? t->heap[0]->expires_ms : UINT64_MAX;
}

/* ---- permissions ---- */

bool alloc_permitted(const struct allocation *a, const union stun_addr *peer, uint64_t now_ms)
{
    if (a->index) {
        for (unsigned h = hash_u32(ip_key(peer));; h++) {
            unsigned e = a->index->perm[h & (INDEX_SLOTS - 1)];
            if (!e) return false;
            const struct alloc_perm *p = &a->perms[e - 1];
            if (p->expires_ms > now_ms && addr_ip_equal(&p->ip, peer)) return true;
        }
    }
    for (unsigned i = 0; i < a->nperms; i++)
        if (a->perms[i].expires_ms > now_ms && addr_ip_equal(&a->perms[i].ip, peer)) return true;
    return false;
}

/* The slot for peer: its own, an expired one to reuse, or a new one; -1 if full. */
static int perm_slot(struct allocation *a, const union stun_addr *peer, uint64_t now_ms, bool make)
{
    int spare = -1;
    for (unsigned i = 0; i < a->nperms; i++) {
        if (addr_ip_equal(&a->perms[i].ip, peer)) return (int)i;
        if (spare < 0 && a->perms[i].expires_ms <= now_ms) spare = (int)i;
    }
    if (spare >= 0) return spare;
    if (a->nperms >= ALLOC_MAX_PERMISSIONS) return -1;
    if (!make) return a->nperms;
    if (a->nperms == a->capperms) {
        uint16_t cap = a->capperms ? (uint16_t)(a->capperms * 2) : 4;
        struct alloc_perm *p = tern_realloc(a->perms, cap * sizeof(*p));
        if (!p) return -1;
        a->perms = p;
        a->capperms = cap;
    }
    return a->nperms++;
}

bool alloc_can_permit(const struct allocation *a, const union stun_addr *peer, uint64_t now_ms)
{
    return perm_slot((struct allocation *)a, peer, now_ms, false) >= 0;
}

int alloc_permit(struct allocation *a, const union stun_addr *peer, uint64_t now_ms)
{
    int i = perm_slot(a, peer, now_ms, true);
    if (i < 0) return -1;
    memset(&a->perms[i].ip, 0, sizeof(a->perms[i].ip));
    a->perms[i].ip.sa.sa_family = peer->sa.sa_family;
    if (peer->sa.sa_family == AF_INET)
        a->perms[i].ip.v4.sin_addr = peer->v4.sin_addr;
    else
        a->perms[i].ip.v6.sin6_addr = peer->v6.sin6_addr;
    a->perms[i].expires_ms = now_ms + ALLOC_PERMISSION_MS;
    index_rebuild(a);
    return 0;
}

void alloc_forget_family(struct allocation *a, int family)
{
    unsigned k = 0;
    for (unsigned i = 0; i < a->nperms; i++)
        if (a->perms[i].ip.sa.sa_family != family) a->perms[k++] = a->perms[i];
    a->nperms = (uint16_t)k;
    k = 0;
    for (unsigned i = 0; i < a->nchans; i++)
        if (a->chans[i].peer.sa.sa_family != family) a->chans[k++] = a->chans[i];
    a->nchans = (uint16_t)k;
    index_rebuild(a);
}

void alloc_forget_peers(struct allocation *a,
                        bool (*keep)(void *ctx, const union stun_addr *peer, bool with_port),
                        void *ctx, size_t *perms, size_t *chans)
{
    unsigned k = 0, np = a->nperms, nc = a->nchans;
    for (unsigned i = 0; i < a->nperms; i++)
        if (keep(ctx, &a->perms[i].ip, false)) a->perms[k++] = a->perms[i];
    a->nperms = (uint16_t)k;
    k = 0;
    for (unsigned i = 0; i < a->nchans; i++)
        if (keep(ctx, &a->chans[i].peer, true)) a->chans[k++] = a->chans[i];
    a->nchans = (uint16_t)k;
    *perms += np - a->nperms;
    *chans += nc - a->nchans;
    if (np != a->nperms || nc != a->nchans) index_rebuild(a);
}

/* ---- channels ---- */

const struct alloc_chan *alloc_channel(const struct allocation *a, uint16_t num, uint64_t now_ms)
{
    if (a->index) {
        for (unsigned h = hash_u32(num);; h++) {
            unsigned e = a->index->chan_num[h & (INDEX_SLOTS - 1)];
            if (!e) return NULL;
            const struct alloc_chan *c = &a->chans[e - 1];
            if (c->num == num) return c->expires_ms > now_ms ? c : NULL;
        }
    }
    for (unsigned i = 0; i < a->nchans; i++)
        if (a->chans[i].num == num) return a->chans[i].expires_ms > now_ms ? &a->chans[i] : NULL;
    return NULL;
}

const struct alloc_chan *alloc_channel_of(const struct allocation *a, const union stun_addr *peer,
                                          uint64_t now_ms)
{
    if (a->index) {
        for (unsigned h = index_addr_hash(peer);; h++) {
            unsigned e = a->index->chan_peer[h & (INDEX_SLOTS - 1)];
            if (!e) return NULL;
            const struct alloc_chan *c = &a->chans[e - 1];
            if (c->expires_ms > now_ms && addr_equal(&c->peer, peer)) return c;
        }
    }
    for (unsigned i = 0; i < a->nchans; i++)
        if (a->chans[i].expires_ms > now_ms && addr_equal(&a->chans[i].peer, peer))
            return &a->chans[i];
    return NULL;
}

enum alloc_bind_result alloc_bind(struct allocation *a, uint16_t num, const union stun_addr *peer,
                                  uint64_t now_ms)
{
    int mine = -1, spare = -1;
    for (unsigned i = 0; i < a->nchans; i++) {
        struct alloc_chan *c = &a->chans[i];
        bool held = c->expires_ms + ALLOC_CHANNEL_HOLD_MS > now_ms; /* bound, or in its hold */
        bool same_num = c->num == num, same_peer = addr_equal(&c->peer, peer);
        if (same_num && same_peer) {
            mine = (int)i;
            continue;
        }
        if (held && (same_num || same_peer)) return ALLOC_BIND_CONFLICT;
        if (!held && spare < 0) spare = (int)i;
    }
    if (mine < 0) {
        if (spare >= 0) {
            mine = spare;
        } else {
            if (a->nchans >= ALLOC_MAX_CHANNELS) return ALLOC_BIND_FULL;
            if (a->nchans == a->capchans) {
                uint16_t cap = a->capchans ? (uint16_t)(a->capchans * 2) : 4;
                struct alloc_chan *p = tern_realloc(a->chans, cap * sizeof(*p));
                if (!p) return ALLOC_BIND_FULL;
                a->chans = p;
                a->capchans = cap;
            }
            mine = a->nchans++;
        }
        a->chans[mine].num = num;
        a->chans[mine].peer = *peer;
        index_rebuild(a);
    }
    a->chans[mine].expires_ms = now_ms + ALLOC_CHANNEL_MS;
    return ALLOC_BIND_OK;
}
