/* ports.h: the relay port pool of one relay address: rotate through the range, reuse a port
 * only after its release, EVEN-PORT pairs and RESERVATION-TOKEN reservations. No I/O, no lock
 * (the relay serialises calls: setting up allocations is control plane, not forwarding). */
#ifndef TERN_PORTS_H
#define TERN_PORTS_H

#include <stdbool.h>
#include <stdint.h>

#define PORTS_RESERVATION_S 30 /* RFC 8656 7.2: a reserved port is held about 30 seconds */

struct port_pool {
    uint16_t min, max;
    uint32_t count;    /* max - min + 1 */
    uint32_t next;     /* rotating cursor, an offset into the range */
    uint32_t used;     /* ports taken or reserved */
    uint8_t *state;    /* per offset: 0 free, 1 in use, 2 reserved */
    uint64_t *token;   /* per offset, while reserved */
    uint64_t *until_s; /* per offset, while reserved: when the reservation lapses */
};

/* 0, or -1 when out of memory. start: where the cursor begins (random, so restarts do not
 * hand out the same ports in the same order). */
int ports_init(struct port_pool *p, uint16_t min, uint16_t max, uint32_t start);
void ports_free(struct port_pool *p);

/* Take a free port (even when even is set; with reserve_next also hold port+1 for token
 * until now_s + PORTS_RESERVATION_S). Returns 0 and *port, or -1 when nothing fits (508). */
int ports_take(struct port_pool *p, bool even, bool reserve_next, uint64_t token, uint64_t now_s,
               uint16_t *port);
/* Claim the port reserved under token. 0 and *port, or -1 (unknown or lapsed: 508). */
int ports_claim(struct port_pool *p, uint64_t token, uint64_t now_s, uint16_t *port);
/* Give a port back (taken, claimed or reserved). */
void ports_release(struct port_pool *p, uint16_t port);
/* Ports neither taken nor reserved. */
static inline uint32_t ports_available(const struct port_pool *p)
{
    return p->count - p->used;
}

#endif
