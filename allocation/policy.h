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
    /* The relay's own listening transport addresses (its specific IPs x listener ports):
     * data is never relayed into the relay itself, which would loop it through itself. */
    const union stun_addr *self;
    size_t nself;
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
    X(CONFIG_DENY, "denied by peers.deny")                                                         \
    X(PORT_ZERO, "port 0")                                                                         \
    X(SELF, "one of the relay's own listening addresses")                                          \
    X(FAMILY, "not an IPv4 or IPv6 address")

enum policy_verdict {
#define POLICY_X_ENUM(name, text) POLICY_##name,
    POLICY_VERDICTS(POLICY_X_ENUM)
#undef POLICY_X_ENUM
        POLICY_COUNT
};
extern const char *const policy_verdict_names[POLICY_COUNT];

/* The address a peer really is: IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d),
 * NAT64 (64:ff9b::/96) and 6to4 (2002:aabb:ccdd::/48) forms become the IPv4 address they
 * embed; everything else is copied. The port is kept. */
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

/* Does addr fall in cidr? Both in canonical form; families must match. */
bool policy_cidr_match(const struct policy_cidr *cidr, const union stun_addr *addr);

#endif
