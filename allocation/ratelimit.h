/* ratelimit.h: token buckets per source prefix (IPv4 /32, IPv6 /64) in a fixed-size table,
 * plus one global bucket, for answers to unauthenticated requests. Pure: time is an argument,
 * memory is allocated once at init, nothing per call. */
#ifndef TERN_RATELIMIT_H
#define TERN_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "alloc.h"
#include "stun.h"

#define RL_WAYS 8 /* entries per set: a source competes for a slot only with 7 others */

/* One source prefix's bucket. family 0: a free slot. */
struct rl_entry {
    uint64_t prefix;  /* IPv4: the address; IPv6: the first 64 bits */
    uint64_t last_ms; /* last refill, which is also the last time the source was seen */
    uint32_t milli;   /* tokens x 1000, so that slow rates refill between close calls */
    uint8_t family;   /* 4, 6, or 0 */
};

struct rl_table {
    struct rl_entry *e;         /* nsets * RL_WAYS */
    size_t nsets;               /* power of two */
    uint64_t k0, k1;            /* SipHash key: an attacker cannot aim its sources at one set */
    uint32_t rate;              /* tokens per second per source; 0: no per-source limit */
    uint32_t burst;             /* bucket size per source (a new source starts full) */
    struct alloc_bucket global; /* milli-tokens: rate = global_rate * 1000; .rate 0: no cap */
    uint64_t evictions;         /* sources forgotten to make room for new ones */
};

/* A table of at least `entries` sources (rounded up to a power of two, min RL_WAYS); seed: 16
 * unpredictable bytes. rate/burst per source (rate 0: none, and no table), global_rate answers per
 * second in all, with a burst of one second's worth (0: none). 0, or -1 (out of memory). */
int rl_init(struct rl_table *t, size_t entries, uint32_t rate, uint32_t burst, uint32_t global_rate,
            const uint8_t seed[16]);
void rl_free(struct rl_table *t);

enum rl_verdict {
    RL_PASS,   /* answer (a token was taken from both buckets) */
    RL_SOURCE, /* the source's bucket is empty */
    RL_GLOBAL, /* the source had a token but the global cap is reached (its token is kept) */
};

/* May src be answered at now_ms? IPv4-mapped and other IPv4-embedding IPv6 forms count as
 * their IPv4 address (policy_canonical). per_source false skips the source's bucket (only the
 * global cap applies). */
enum rl_verdict rl_take(struct rl_table *t, const union stun_addr *src, bool per_source,
                        uint64_t now_ms);

/* SipHash-2-4 of a 16-byte message (m0, m1 little-endian words) under key (k0, k1). */
uint64_t rl_siphash16(uint64_t k0, uint64_t k1, uint64_t m0, uint64_t m1);

#endif
