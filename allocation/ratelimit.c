/* ratelimit.c: per-source token buckets in a set-associative table with least-recently-seen
 * eviction, keyed by SipHash under a per-server secret, and the global cap. */
#include "ratelimit.h"

#include "tern_mem.h"
#include <string.h>

#include "policy.h"

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = ROTL(v1, 13);                                                                         \
        v1 ^= v0;                                                                                  \
        v0 = ROTL(v0, 32);                                                                         \
        v2 += v3;                                                                                  \
        v3 = ROTL(v3, 16);                                                                         \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = ROTL(v3, 21);                                                                         \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = ROTL(v1, 17);                                                                         \
        v1 ^= v2;                                                                                  \
        v2 = ROTL(v2, 32);                                                                         \
    } while (0)

uint64_t rl_siphash16(uint64_t k0, uint64_t k1, uint64_t m0, uint64_t m1)
{
    uint64_t v0 = k0 ^ 0x736f6d6570736575ull, v1 = k1 ^ 0x646f72616e646f6dull;
    uint64_t v2 = k0 ^ 0x6c7967656e657261ull, v3 = k1 ^ 0x7465646279746573ull;
    const uint64_t m[3] = {m0, m1, (uint64_t)16 << 56}; /* the last block: the length */
    for (int i = 0; i < 3; i++) {
        v3 ^= m[i];
        SIPROUND;
        SIPROUND;
        v0 ^= m[i];
    }
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

int rl_init(struct rl_table *t, size_t entries, uint32_t rate, uint32_t burst, uint32_t global_rate,
            const uint8_t seed[16])
{
    memset(t, 0, sizeof(*t));
    size_t nsets = 1;
    while (nsets * RL_WAYS < entries)
        nsets <<= 1;
    if (rate) { /* no per-source limit: no table */
        t->e = tern_calloc(nsets * RL_WAYS, sizeof(*t->e));
        if (!t->e) return -1;
        t->nsets = nsets;
    }
    t->k0 = le64(seed);
    t->k1 = le64(seed + 8);
    t->rate = rate;
    t->burst = burst ? burst : 1;
    t->global.rate = (uint64_t)global_rate * 1000;
    t->global.tokens = t->global.rate; /* starts full, like a new source */
    return 0;
}

void rl_free(struct rl_table *t)
{
    tern_free(t->e);
    t->e = NULL;
}

/* The source's prefix: IPv4 /32 or IPv6 /64, after canonicalisation (so ::ffff:a.b.c.d on a
 * dual-stack listener is the same client as a.b.c.d). */
static uint8_t prefix_of(const union stun_addr *src, uint64_t *prefix)
{
    union stun_addr c;
    policy_canonical(src, &c);
    if (c.sa.sa_family == AF_INET) {
        const uint8_t *b = (const uint8_t *)&c.v4.sin_addr;
        *prefix = (uint64_t)b[0] << 24 | (uint64_t)b[1] << 16 | (uint64_t)b[2] << 8 | b[3];
        return 4;
    }
    if (c.sa.sa_family == AF_INET6) {
        const uint8_t *b = c.v6.sin6_addr.s6_addr;
        uint64_t v = 0;
        for (int i = 0; i < 8; i++)
            v = v << 8 | b[i];
        *prefix = v;
        return 6;
    }
    return 0;
}

/* The entry of (family, prefix), created full when absent, evicting the set's least recently
 * seen source when the set is full. */
static struct rl_entry *entry_of(struct rl_table *t, uint8_t family, uint64_t prefix,
                                 uint64_t now_ms)
{
    uint64_t h = rl_siphash16(t->k0, t->k1, family, prefix);
    struct rl_entry *set = &t->e[(h & (t->nsets - 1)) * RL_WAYS];
    struct rl_entry *victim = &set[0];
    for (int i = 0; i < RL_WAYS; i++) {
        struct rl_entry *e = &set[i];
        if (e->family == family && e->prefix == prefix) return e;
        if (victim->family && (!e->family || e->last_ms < victim->last_ms)) victim = e;
    }
    if (victim->family) t->evictions++;
    *victim = (struct rl_entry){
        .prefix = prefix, .last_ms = now_ms, .milli = t->burst * 1000, .family = family};
    return victim;
}

static void refill(const struct rl_table *t, struct rl_entry *e, uint64_t now_ms)
{
    if (now_ms <= e->last_ms) return;
    uint64_t cap = (uint64_t)t->burst * 1000;
    uint64_t dt = now_ms - e->last_ms;
    uint64_t add = dt > cap ? cap : dt * t->rate; /* ms x tokens/s = milli-tokens; rate >= 1 */
    e->milli = (uint32_t)(e->milli + add > cap ? cap : e->milli + add);
    e->last_ms = now_ms;
}

enum rl_verdict rl_take(struct rl_table *t, const union stun_addr *src, bool per_source,
                        uint64_t now_ms)
{
    struct rl_entry *e = NULL;
    uint64_t prefix;
    uint8_t family = per_source && t->rate ? prefix_of(src, &prefix) : 0;
    if (family) {
        e = entry_of(t, family, prefix, now_ms);
        refill(t, e, now_ms);
        if (e->milli < 1000) return RL_SOURCE;
    }
    if (!alloc_bucket_take(&t->global, 1000, now_ms)) return RL_GLOBAL;
    if (e) e->milli -= 1000;
    return RL_PASS;
}
