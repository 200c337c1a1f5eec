/* iptable.h: counts per client IP address (the port ignored) in a fixed open-addressing table
 * of the caller's, for the per-IP limits of the TCP and DTLS transports. No allocation, no
 * lock: each worker owns its tables. */
#ifndef TERN_IPTABLE_H
#define TERN_IPTABLE_H

#include <stddef.h>
#include <stdint.h>

#include "addr.h"

/* One address's count (key: a hash of the address without its port; 0: an empty slot). */
struct ip_slot {
    uint64_t key;
    uint32_t n;
};

/* The key of a's address (never 0). */
uint64_t ip_key(const union stun_addr *a);
/* The slot holding key in t (nslots, a power of two, never full: at least twice the most
 * entries it can hold), or the empty slot where it would go (set its key, then count). */
struct ip_slot *ip_find(struct ip_slot *t, size_t nslots, uint64_t key);
/* One fewer for key; the slot empties at zero (linear probing with backward-shift deletion,
 * so lookups never need tombstones). */
void ip_release(struct ip_slot *t, size_t nslots, uint64_t key);

#endif
