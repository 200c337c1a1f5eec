/* policy.h: the one peer-address choke point: canonicalise, then allow or deny. No I/O. */
#ifndef TERN_POLICY_H
#define TERN_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stun.h"

struct policy_cidr {
    union stun_addr addr; /* network address; port ignored */
    uint8_t prefix;
};

/* Borrowed views of the configuration (peers.*). */
struct peer_policy {
    bool allow_loopback;
    const struct policy_cidr *allow; /* override every deny rule */
    size_t nallow;
    const struct policy_cidr *deny; /* added to the built-in special-purpose list */
    size_t ndeny;
    /* The relay's own transport addresses: data is never relayed into the relay itself,
     * which would loop it through itself. NULL: none. */
    const struct policy_self *self;
};

/* The relay's own transport addresses: every IP it can be reached on (canonical form; whole
 * prefixes for the loopback), each at every listener port and every relayed port. Built by
 * policy_self_build and immutable afterwards, so any number of threads may read one. A lookup
 * (every relayed datagram) is one probe of a small open-addressing hash table, then the port
 * rule for the rare hit. */
struct policy_self {
    uint32_t *v4; /* sorted, host byte order (comparisons, logs) */
    size_t nv4;
    uint8_t (*v6)[16]; /* sorted (memcmp) */
    size_t nv6;
    struct policy_cidr *nets; /* whole local prefixes (127.0.0.0/8 on a loopback interface) */
    size_t nnets;
    uint16_t *ports; /* listener ports, sorted, host byte order */
    size_t nports;
    uint16_t relay_min, relay_max; /* relayed ports (relay.ports); relay_min > relay_max: none */
    /* The lookup form of the above: hash tables of 1 << bits slots, 0 marking a free slot
     * (0.0.0.0 and :: are flags instead); IPv4 prefixes as (network, mask), host byte order. */
    uint32_t *h4;
    uint64_t (*h6)[2];
    unsigned bits4, bits6;
    bool any4, any6, nets6;
    uint32_t (*n4)[2];
    size_t nn4;
};

/* Why a peer was denied (or POLICY_OK). X(name, text). */
#define POLICY_VERDICTS(X)                                                                         \
    X(OK, "allowed")                                                                               \
    X(UNSPECIFIED, "unspecified address (0.0.0.0/8, ::)")                                          \
    X(LOOPBACK, "loopback")                                                                        \
    X(PRIVATE, "private or unique-local address")                                                  \
    X(LINK_LOCAL, "link-local address")                                                            \
    X(SHARED, "shared address space (CGNAT 100.64.0.0/10)")                                        \
    X(MULTICAST, "multicast")                                                                      \
    X(BROADCAST, "broadcast")                                                                      \
    X(SPECIAL, "IANA special-purpose address")                                                     \
    X(DOCUMENTATION, "documentation or benchmarking range")                                        \
    X(RESERVED, "IETF-reserved ::/8 outside ::, ::1 and the IPv4-embedding forms")                 \
    X(CONFIG_DENY, "denied by peers.deny")                                                         \
    X(PORT_ZERO, "port 0")                                                                         \
    X(SELF, "the relay itself (one of its addresses at a listener or relayed port)")               \
    X(FAMILY, "not an IPv4 or IPv6 address")

enum policy_verdict {
#define POLICY_X_ENUM(name, text) POLICY_##name,
    POLICY_VERDICTS(POLICY_X_ENUM)
#undef POLICY_X_ENUM
        POLICY_COUNT
};
extern const char *const policy_verdict_names[POLICY_COUNT];

/* The address a peer really is: IPv4-mapped (::ffff:a.b.c.d), SIIT IPv4-translated
 * (::ffff:0:a.b.c.d, RFC 2765 / RFC 6052 2.1), IPv4-compatible (::a.b.c.d except :: and ::1),
 * NAT64 (64:ff9b::/96) and 6to4 (2002:aabb:ccdd::/48) forms become the IPv4 address they
 * embed; everything else is copied. The port is kept. The rest of ::/8 stays IPv6 and is
 * denied (POLICY_RESERVED) unless peers.allow lists it. */
void policy_canonical(const union stun_addr *in, union stun_addr *out);

/* The decision for a peer (canonicalised inside). check_port: a datagram is about to be sent
 * to it, so port 0 and the relay's own listening addresses are refused too (permissions are
 * per IP and ignore the port). */
enum policy_verdict policy_check(const struct peer_policy *p, const union stun_addr *peer,
                                 bool check_port);

/* The same decision for a peer already in canonical form (from policy_canonical): the
 * per-packet paths canonicalise once and decide with this. */
enum policy_verdict policy_check_canonical(const struct peer_policy *p, const union stun_addr *c,
                                           bool check_port);

/* Build s from the relay's IPs (canonicalised here; ports ignored; duplicates dropped), whole
 * local prefixes, listener ports and the relayed port range (min > max: none). 0, or -1 when
 * out of memory (s is then empty). policy_self_free releases it. */
int policy_self_build(struct policy_self *s, const union stun_addr *ips, size_t nips,
                      const struct policy_cidr *nets, size_t nnets, const uint16_t *ports,
                      size_t nports, uint16_t relay_min, uint16_t relay_max);
void policy_self_free(struct policy_self *s);
/* Do a and b hold the same addresses and ports? */
bool policy_self_equal(const struct policy_self *a, const struct policy_self *b);
/* Is c (canonical, port set) one of the relay's own transport addresses? */
bool policy_self_has(const struct policy_self *s, const union stun_addr *c);

/* Does addr fall in cidr? Both in canonical form; families must match. */
bool policy_cidr_match(const struct policy_cidr *cidr, const union stun_addr *addr);

#endif
