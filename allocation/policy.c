/* policy.c: peer address policy: canonical forms and the built-in special-purpose deny list. */
#include <string.h>

#include "policy.h"

const char *const policy_verdict_names[POLICY_COUNT] = {
#define X(name, text) #name,
    POLICY_VERDICTS(X)
#undef X
};

static uint32_t v4_host(const union stun_addr *a)
{
    return ntohl(a->v4.sin_addr.s_addr);
}

static void make_v4(union stun_addr *out, const uint8_t *ip4, uint16_t port_net)
{
    memset(out, 0, sizeof(*out));
    out->v4.sin_family = AF_INET;
    out->v4.sin_port = port_net;
    memcpy(&out->v4.sin_addr.s_addr, ip4, 4);
}

void policy_canonical(const union stun_addr *in, union stun_addr *out)
{
    if (in->sa.sa_family != AF_INET6) {
        *out = *in;
        return;
    }
    const uint8_t *b = in->v6.sin6_addr.s6_addr;
    static const uint8_t zero[12] = {0};
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const uint8_t nat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
    uint16_t port = in->v6.sin6_port;
    if (memcmp(b, mapped, 12) == 0 || memcmp(b, nat64, 12) == 0) {
        make_v4(out, b + 12, port);
    } else if (memcmp(b, zero, 12) == 0 && (b[12] | b[13] | b[14] | (b[15] & 0xfe)) != 0) {
        /* IPv4-compatible ::a.b.c.d (RFC 4291 2.5.5.1, deprecated); :: and ::1 stay IPv6. */
        make_v4(out, b + 12, port);
    } else if (b[0] == 0x20 && b[1] == 0x02) {
        make_v4(out, b + 2, port); /* 6to4: 2002:AABB:CCDD::/48 embeds AA.BB.CC.DD */
    } else {
        *out = *in;
    }
}

bool policy_cidr_match(const struct policy_cidr *cidr, const union stun_addr *addr)
{
    if (cidr->addr.sa.sa_family != addr->sa.sa_family) return false;
    const uint8_t *n, *a;
    unsigned bits;
    if (addr->sa.sa_family == AF_INET) {
        n = (const uint8_t *)&cidr->addr.v4.sin_addr.s_addr;
        a = (const uint8_t *)&addr->v4.sin_addr.s_addr;
        bits = 32;
    } else {
        n = cidr->addr.v6.sin6_addr.s6_addr;
        a = addr->v6.sin6_addr.s6_addr;
        bits = 128;
    }
    unsigned prefix = cidr->prefix < bits ? cidr->prefix : bits;
    unsigned full = prefix / 8, rest = prefix % 8;
    if (memcmp(n, a, full) != 0) return false;
    if (rest == 0) return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (n[full] & mask) == (a[full] & mask);
}

/* IPv4 special-purpose ranges (IANA IPv4 Special-Purpose Address Registry, RFC 6890 and on). */
struct v4_range {
    uint32_t net;
    uint8_t prefix;
    enum policy_verdict why;
};
static const struct v4_range v4_special[] = {
    {0x00000000, 8, POLICY_UNSPECIFIED},    /* 0.0.0.0/8 "this network" */
    {0x0A000000, 8, POLICY_PRIVATE},        /* 10.0.0.0/8 */
    {0x64400000, 10, POLICY_SHARED},        /* 100.64.0.0/10 CGNAT */
    {0x7F000000, 8, POLICY_LOOPBACK},       /* 127.0.0.0/8 */
    {0xA9FE0000, 16, POLICY_LINK_LOCAL},    /* 169.254.0.0/16 */
    {0xAC100000, 12, POLICY_PRIVATE},       /* 172.16.0.0/12 */
    {0xC0000000, 24, POLICY_SPECIAL},       /* 192.0.0.0/24 IETF protocol assignments */
    {0xC0000200, 24, POLICY_DOCUMENTATION}, /* 192.0.2.0/24 TEST-NET-1 */
    {0xC01FC400, 24, POLICY_SPECIAL},       /* 192.31.196.0/24 AS112-v4 */
    {0xC034C100, 24, POLICY_SPECIAL},       /* 192.52.193.0/24 AMT */
    {0xC0586300, 24, POLICY_SPECIAL},       /* 192.88.99.0/24 deprecated 6to4 relay anycast */
    {0xC0A80000, 16, POLICY_PRIVATE},       /* 192.168.0.0/16 */
    {0xC0AF3000, 24, POLICY_SPECIAL},       /* 192.175.48.0/24 direct delegation AS112 */
    {0xC6120000, 15, POLICY_DOCUMENTATION}, /* 198.18.0.0/15 benchmarking */
    {0xC6336400, 24, POLICY_DOCUMENTATION}, /* 198.51.100.0/24 TEST-NET-2 */
    {0xCB007100, 24, POLICY_DOCUMENTATION}, /* 203.0.113.0/24 TEST-NET-3 */
    {0xE0000000, 4, POLICY_MULTICAST},      /* 224.0.0.0/4 */
    {0xFFFFFFFF, 32, POLICY_BROADCAST},     /* 255.255.255.255 (before 240/4: more specific) */
    {0xF0000000, 4, POLICY_SPECIAL},        /* 240.0.0.0/4 reserved */
};

/* IPv6 special-purpose ranges (IANA IPv6 Special-Purpose Address Registry). Forms that embed
 * IPv4 are canonicalised before this table is consulted. */
struct v6_range {
    uint8_t net[16];
    uint8_t prefix;
    enum policy_verdict why;
};
static const struct v6_range v6_special[] = {
    {{0}, 128, POLICY_UNSPECIFIED},                                           /* :: */
    {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 128, POLICY_LOOPBACK}, /* ::1 */
    {{0}, 96, POLICY_SPECIAL}, /* ::/96 left over (compatible) */
    {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff}, 96, POLICY_SPECIAL}, /* ::ffff:0:0/96 */
    {{0, 0x64, 0xff, 0x9b, 0, 1}, 48, POLICY_SPECIAL},    /* 64:ff9b:1::/48 local-use NAT64 */
    {{0, 0x64, 0xff, 0x9b}, 96, POLICY_SPECIAL},          /* 64:ff9b::/96 left over */
    {{0x01, 0x00}, 64, POLICY_SPECIAL},                   /* 100::/64 discard-only */
    {{0x20, 0x01, 0x00, 0x00}, 23, POLICY_SPECIAL},       /* 2001::/23 IETF (Teredo, ORCHID...) */
    {{0x20, 0x01, 0x0d, 0xb8}, 32, POLICY_DOCUMENTATION}, /* 2001:db8::/32 */
    {{0x20, 0x02}, 16, POLICY_SPECIAL},                   /* 2002::/16 6to4 left over */
    {{0x3f, 0xff, 0x00}, 20, POLICY_DOCUMENTATION},       /* 3fff::/20 documentation */
    {{0x5f, 0x00}, 16, POLICY_SPECIAL},                   /* 5f00::/16 SRv6 SIDs */
    {{0xfc}, 7, POLICY_PRIVATE},                          /* fc00::/7 unique-local */
    {{0xfe, 0x80}, 10, POLICY_LINK_LOCAL},                /* fe80::/10 */
    {{0xfe, 0xc0}, 10, POLICY_SPECIAL},                   /* fec0::/10 deprecated site-local */
    {{0xff}, 8, POLICY_MULTICAST},                        /* ff00::/8 */
};

static bool any_match(const struct policy_cidr *list, size_t n, const union stun_addr *a)
{
    for (size_t i = 0; i < n; i++)
        if (policy_cidr_match(&list[i], a)) return true;
    return false;
}

static enum policy_verdict builtin(const union stun_addr *a)
{
    if (a->sa.sa_family == AF_INET) {
        uint32_t ip = v4_host(a);
        for (size_t i = 0; i < sizeof(v4_special) / sizeof(v4_special[0]); i++) {
            const struct v4_range *r = &v4_special[i];
            uint32_t mask = r->prefix ? 0xFFFFFFFFu << (32 - r->prefix) : 0;
            if ((ip & mask) == r->net) return r->why;
        }
        return POLICY_OK;
    }
    for (size_t i = 0; i < sizeof(v6_special) / sizeof(v6_special[0]); i++) {
        struct policy_cidr c = {.prefix = v6_special[i].prefix};
        c.addr.v6.sin6_family = AF_INET6;
        memcpy(c.addr.v6.sin6_addr.s6_addr, v6_special[i].net, 16);
        if (policy_cidr_match(&c, a)) return v6_special[i].why;
    }
    return POLICY_OK;
}

enum policy_verdict policy_check(const struct peer_policy *p, const union stun_addr *peer,
                                 bool check_port)
{
    union stun_addr c;
    policy_canonical(peer, &c);
    return policy_check_canonical(p, &c, check_port);
}

enum policy_verdict policy_check_canonical(const struct peer_policy *p, const union stun_addr *c,
                                           bool check_port)
{
    if (c->sa.sa_family != AF_INET && c->sa.sa_family != AF_INET6) return POLICY_FAMILY;
    if (check_port) {
        uint16_t port = c->sa.sa_family == AF_INET ? c->v4.sin_port : c->v6.sin6_port;
        if (port == 0) return POLICY_PORT_ZERO;
        for (size_t i = 0; i < p->nself; i++) {
            const union stun_addr *m = &p->self[i];
            if (m->sa.sa_family != c->sa.sa_family) continue;
            bool same =
                c->sa.sa_family == AF_INET
                    ? m->v4.sin_addr.s_addr == c->v4.sin_addr.s_addr && m->v4.sin_port == port
                    : memcmp(&m->v6.sin6_addr, &c->v6.sin6_addr, 16) == 0 &&
                          m->v6.sin6_port == port;
            if (same) return POLICY_SELF; /* even when peers.allow covers the address */
        }
    }
    if (any_match(p->allow, p->nallow, c)) return POLICY_OK;
    if (any_match(p->deny, p->ndeny, c)) return POLICY_CONFIG_DENY;
    enum policy_verdict v = builtin(c);
    if (v == POLICY_LOOPBACK && p->allow_loopback) return POLICY_OK;
    return v;
}
