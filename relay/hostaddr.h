/* hostaddr.h: the relay's own addresses for the self-loop guard, kept current as the host's
 * interface addresses change, and published to the workers as immutable snapshots. */
#ifndef TERN_HOSTADDR_H
#define TERN_HOSTADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "policy.h"

struct hostaddr;

/* What the relay is: its specific addresses (listeners, relay addresses,
 * relay.external_address; wildcards and AF_UNSPEC are skipped), whether any listener or relay
 * address is a wildcard (then every address of the host is the relay too), its listener ports
 * and its relayed port range. Copied by hostaddr_open. */
struct hostaddr_spec {
    const union stun_addr *ips;
    size_t nips;
    bool wildcard;
    const uint16_t *ports;
    size_t nports;
    uint16_t relay_min, relay_max;
};

/* Enumerate the host's addresses (getifaddrs), publish the first snapshot and log it; with a
 * wildcard, a thread then follows netlink address events (RTMGRP_IPV4_IFADDR/IPV6_IFADDR) and
 * re-enumerates on each, with a periodic re-enumeration as a backstop for lost events. NULL
 * after logging why. */
struct hostaddr *hostaddr_open(const struct hostaddr_spec *spec);

/* A reload changed what the relay is: copy spec in, re-enumerate and publish if the set
 * changed. From one thread at a time. 0 or -1 (the old spec stays). */
int hostaddr_respec(struct hostaddr *h, const struct hostaddr_spec *spec);

/* The current snapshot's generation: it changes when the address set does. One atomic load,
 * no lock: a worker calls it every loop pass. */
uint64_t hostaddr_generation(const struct hostaddr *h);

/* Take a reference to the current snapshot (its generation in *gen) and drop old (NULL: none).
 * The snapshot stays valid and unchanged until its holder drops it. Takes a mutex: call it
 * between loop passes, never per packet. */
const struct policy_self *hostaddr_take(struct hostaddr *h, const struct policy_self *old,
                                        uint64_t *gen);

/* Drop a reference taken with hostaddr_take (NULL: none). */
void hostaddr_drop(struct hostaddr *h, const struct policy_self *s);

/* Stop following the host and free everything (NULL: nothing); every reference must have
 * been dropped. */
void hostaddr_close(struct hostaddr *h);

#endif
