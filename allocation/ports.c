/* ports.c: relay port pool. Lapsed reservations are reclaimed lazily when the cursor passes. */
#include <stdlib.h>
#include <string.h>

#include "ports.h"

enum { FREE = 0, USED = 1, RESERVED = 2 };

int ports_init(struct port_pool *p, uint16_t min, uint16_t max, uint32_t start)
{
    memset(p, 0, sizeof(*p));
    if (max < min) return -1;
    p->min = min;
    p->max = max;
    p->count = (uint32_t)max - min + 1;
    p->next = start % p->count;
    p->state = calloc(p->count, 1);
    p->token = calloc(p->count, sizeof(*p->token));
    p->until_s = calloc(p->count, sizeof(*p->until_s));
    if (!p->state || !p->token || !p->until_s) {
        ports_free(p);
        return -1;
    }
    return 0;
}

void ports_free(struct port_pool *p)
{
    free(p->state);
    free(p->token);
    free(p->until_s);
    memset(p, 0, sizeof(*p));
}

/* Is offset i usable now? A lapsed reservation is freed on the way. */
static bool is_free(struct port_pool *p, uint32_t i, uint64_t now_s)
{
    if (p->state[i] == RESERVED && p->until_s[i] <= now_s) {
        p->state[i] = FREE;
        p->used--;
    }
    return p->state[i] == FREE;
}

int ports_take(struct port_pool *p, bool even, bool reserve_next, uint64_t token, uint64_t now_s,
               uint16_t *port)
{
    if (!p->count) return -1;
    for (uint32_t k = 0; k < p->count; k++) {
        uint32_t i = (p->next + k) % p->count;
        uint32_t num = p->min + i;
        if ((even || reserve_next) && (num & 1)) continue;
        if (!is_free(p, i, now_s)) continue;
        if (reserve_next && (i + 1 >= p->count || !is_free(p, i + 1, now_s))) continue;
        p->state[i] = USED;
        p->used++;
        if (reserve_next) {
            p->state[i + 1] = RESERVED;
            p->token[i + 1] = token;
            p->until_s[i + 1] = now_s + PORTS_RESERVATION_S;
            p->used++;
        }
        p->next = (i + 1 + reserve_next) % p->count;
        *port = (uint16_t)num;
        return 0;
    }
    return -1;
}

int ports_claim(struct port_pool *p, uint64_t token, uint64_t now_s, uint16_t *port)
{
    /* Reservations are rare and short-lived; a scan of the reserved entries would need an
     * index to be faster, and this runs only for Allocate requests that carry a token. */
    for (uint32_t i = 0; i < p->count; i++) {
        if (p->state[i] != RESERVED || p->token[i] != token) continue;
        if (p->until_s[i] <= now_s) return -1;
        p->state[i] = USED;
        *port = (uint16_t)(p->min + i);
        return 0;
    }
    return -1;
}

void ports_release(struct port_pool *p, uint16_t port)
{
    if (port < p->min || port > p->max) return;
    uint32_t i = port - p->min;
    if (p->state[i] != FREE) {
        p->state[i] = FREE;
        p->used--;
    }
}
