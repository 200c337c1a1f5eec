/* iptable.c: per-IP counts in an open-addressing table (see iptable.h). */
#include <stdbool.h>

#include "iptable.h"
#include "wire.h"

uint64_t ip_key(const union stun_addr *a)
{
    union stun_addr ip = *a;
    addr_set_port(&ip, 0);
    uint64_t k = addr_hash(FNV64_INIT, &ip);
    return k ? k : 1;
}

struct ip_slot *ip_find(struct ip_slot *t, size_t nslots, uint64_t key)
{
    size_t i = key & (nslots - 1);
    while (t[i].key && t[i].key != key)
        i = (i + 1) & (nslots - 1);
    return &t[i];
}

void ip_release(struct ip_slot *t, size_t nslots, uint64_t key)
{
    struct ip_slot *s = ip_find(t, nslots, key);
    if (!s->key || --s->n) return;
    /* Backward-shift deletion: pull later entries of the run into the hole they probed past. */
    size_t i = (size_t)(s - t), j = i;
    for (;;) {
        t[i] = (struct ip_slot){0};
        for (;;) {
            j = (j + 1) & (nslots - 1);
            if (!t[j].key) return;
            size_t home = t[j].key & (nslots - 1);
            bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
            if (!stays) break;
        }
        t[i] = t[j];
        i = j;
    }
}
