/* policy.c: peer address policy: canonical forms and the built-in special-purpose deny list. */
#include <stdlib.h>
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
    static const uint8_t siit[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0};
    uint16_t port = in->v6.sin6_port;
    if (memcmp(b, mapped, 12) == 0 || memcmp(b, nat64, 12) == 0 || memcmp(b, siit, 12) == 0) {
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

/* Do the first prefix bits of n and a agree? */
static bool prefix_match(const uint8_t *n, const uint8_t *a, unsigned prefix)
{
    unsigned full = prefix / 8, rest = prefix % 8;
    if (memcmp(n, a, full) != 0) return false;
    if (rest == 0) return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (n[full] & mask) == (a[full] & mask);
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
    return prefix_match(n, a, cidr->prefix < bits ? cidr->prefix : bits);
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
    {{0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff}, 96, POLICY_SPECIAL},       /* ::ffff:0:0:0/96 (SIIT) */
    {{0, 0x64, 0xff, 0x9b, 0, 1}, 48, POLICY_SPECIAL}, /* 64:ff9b:1::/48 local-use NAT64 */
    {{0, 0x64, 0xff, 0x9b}, 96, POLICY_SPECIAL},       /* 64:ff9b::/96 left over */
    {{0}, 8, POLICY_RESERVED},          /* ::/8 reserved by the IETF: after the forms it holds */
    {{0x01, 0x00}, 64, POLICY_SPECIAL}, /* 100::/64 discard-only */
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
    for (size_t i = 0; i < sizeof(v6_special) / sizeof(v6_special[0]); i++)
        if (prefix_match(v6_special[i].net, a->v6.sin6_addr.s6_addr, v6_special[i].prefix))
            return v6_special[i].why;
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
        if (policy_self_has(p->self, c)) return POLICY_SELF; /* even when peers.allow has it */
    }
    if (any_match(p->allow, p->nallow, c)) return POLICY_OK;
    if (any_match(p->deny, p->ndeny, c)) return POLICY_CONFIG_DENY;
    enum policy_verdict v = builtin(c);
    if (v == POLICY_LOOPBACK && p->allow_loopback) return POLICY_OK;
    return v;
}

/* ---- the relay's own transport addresses ---- */

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_u16(const void *a, const void *b)
{
    uint16_t x = *(const uint16_t *)a, y = *(const uint16_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_v6(const void *a, const void *b)
{
    return memcmp(a, b, 16);
}

/* Sort n elements of size sz and drop repeats; the new count. */
static size_t sort_unique(void *base, size_t n, size_t sz, int (*cmp)(const void *, const void *))
{
    if (n < 2) return n;
    qsort(base, n, sz, cmp);
    uint8_t *b = base;
    size_t k = 1;
    for (size_t i = 1; i < n; i++)
        if (cmp(b + (k - 1) * sz, b + i * sz) != 0) memmove(b + k++ * sz, b + i * sz, sz);
    return k;
}

static uint64_t rd64be(const uint8_t *b)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | b[i];
    return v;
}

static size_t slot4(uint32_t ip, unsigned bits)
{
    return (uint32_t)(ip * 0x9E3779B1u) >> (32 - bits);
}

static size_t slot6(uint64_t hi, uint64_t lo, unsigned bits)
{
    return (size_t)(((hi ^ (lo * 0xC2B2AE3D27D4EB4Fu)) * 0x9E3779B97F4A7C15u) >> (64 - bits));
}

/* Table bits for n keys: at most half full, at least 8 slots. */
static unsigned table_bits(size_t n)
{
    unsigned bits = 3;
    while (((size_t)1 << bits) < 2 * n)
        bits++;
    return bits;
}

/* The lookup form: hash tables over the sorted arrays, IPv4 prefixes as (network, mask). */
static int self_index(struct policy_self *s)
{
    s->bits4 = table_bits(s->nv4);
    s->bits6 = table_bits(s->nv6);
    s->h4 = calloc((size_t)1 << s->bits4, sizeof(*s->h4));
    s->h6 = calloc((size_t)1 << s->bits6, sizeof(*s->h6));
    s->n4 = calloc(s->nnets + 1, sizeof(*s->n4));
    if (!s->h4 || !s->h6 || !s->n4) return -1;
    size_t m4 = ((size_t)1 << s->bits4) - 1, m6 = ((size_t)1 << s->bits6) - 1;
    for (size_t i = 0; i < s->nv4; i++) {
        if (s->v4[i] == 0) {
            s->any4 = true;
            continue;
        }
        size_t k = slot4(s->v4[i], s->bits4);
        while (s->h4[k])
            k = (k + 1) & m4;
        s->h4[k] = s->v4[i];
    }
    for (size_t i = 0; i < s->nv6; i++) {
        uint64_t hi = rd64be(s->v6[i]), lo = rd64be(s->v6[i] + 8);
        if ((hi | lo) == 0) {
            s->any6 = true;
            continue;
        }
        size_t k = slot6(hi, lo, s->bits6);
        while (s->h6[k][0] | s->h6[k][1])
            k = (k + 1) & m6;
        s->h6[k][0] = hi;
        s->h6[k][1] = lo;
    }
    for (size_t i = 0; i < s->nnets; i++) {
        const struct policy_cidr *c = &s->nets[i];
        if (c->addr.sa.sa_family == AF_INET6) {
            s->nets6 = true;
            continue;
        }
        uint32_t mask = c->prefix ? 0xFFFFFFFFu << (32 - c->prefix) : 0;
        s->n4[s->nn4][0] = v4_host(&c->addr) & mask;
        s->n4[s->nn4++][1] = mask;
    }
    return 0;
}

int policy_self_build(struct policy_self *s, const union stun_addr *ips, size_t nips,
                      const struct policy_cidr *nets, size_t nnets, const uint16_t *ports,
                      size_t nports, uint16_t relay_min, uint16_t relay_max)
{
    memset(s, 0, sizeof(*s));
    s->relay_min = relay_min;
    s->relay_max = relay_max;
    s->v4 = malloc((nips + 1) * sizeof(*s->v4));
    s->v6 = malloc((nips + 1) * sizeof(*s->v6));
    s->nets = calloc(nnets + 1, sizeof(*s->nets));
    s->ports = malloc((nports + 1) * sizeof(*s->ports));
    if (!s->v4 || !s->v6 || !s->nets || !s->ports) {
        policy_self_free(s);
        return -1;
    }
    for (size_t i = 0; i < nips; i++) {
        union stun_addr c;
        policy_canonical(&ips[i], &c);
        if (c.sa.sa_family == AF_INET)
            s->v4[s->nv4++] = v4_host(&c);
        else if (c.sa.sa_family == AF_INET6)
            memcpy(s->v6[s->nv6++], c.v6.sin6_addr.s6_addr, 16);
    }
    s->nv4 = sort_unique(s->v4, s->nv4, sizeof(*s->v4), cmp_u32);
    s->nv6 = sort_unique(s->v6, s->nv6, sizeof(*s->v6), cmp_v6);
    /* Nets are rebuilt from their family, prefix and masked bits only, so that two sets can be
     * compared byte for byte. */
    for (size_t i = 0; i < nnets; i++) {
        const union stun_addr *a = &nets[i].addr;
        struct policy_cidr *n = &s->nets[s->nnets];
        const uint8_t *src;
        uint8_t *dst;
        unsigned bits;
        if (a->sa.sa_family == AF_INET) {
            n->addr.v4.sin_family = AF_INET;
            src = (const uint8_t *)&a->v4.sin_addr.s_addr;
            dst = (uint8_t *)&n->addr.v4.sin_addr.s_addr;
            bits = 32;
        } else if (a->sa.sa_family == AF_INET6) {
            n->addr.v6.sin6_family = AF_INET6;
            src = a->v6.sin6_addr.s6_addr;
            dst = n->addr.v6.sin6_addr.s6_addr;
            bits = 128;
        } else {
            continue;
        }
        n->prefix = nets[i].prefix < bits ? nets[i].prefix : (uint8_t)bits;
        for (unsigned b = 0; b < n->prefix; b++)
            dst[b / 8] |= src[b / 8] & (0x80 >> (b % 8));
        s->nnets++;
    }
    for (size_t i = 0; i < nports; i++)
        if (ports[i]) s->ports[s->nports++] = ports[i];
    s->nports = sort_unique(s->ports, s->nports, sizeof(*s->ports), cmp_u16);
    if (self_index(s)) {
        policy_self_free(s);
        return -1;
    }
    return 0;
}

void policy_self_free(struct policy_self *s)
{
    free(s->h4);
    free(s->h6);
    free(s->n4);
    free(s->v4);
    free(s->v6);
    free(s->nets);
    free(s->ports);
    memset(s, 0, sizeof(*s));
}

bool policy_self_equal(const struct policy_self *a, const struct policy_self *b)
{
    return a->nv4 == b->nv4 && a->nv6 == b->nv6 && a->nnets == b->nnets && a->nports == b->nports &&
           a->relay_min == b->relay_min && a->relay_max == b->relay_max &&
           memcmp(a->v4, b->v4, a->nv4 * sizeof(*a->v4)) == 0 &&
           memcmp(a->v6, b->v6, a->nv6 * sizeof(*a->v6)) == 0 &&
           memcmp(a->nets, b->nets, a->nnets * sizeof(*a->nets)) == 0 &&
           memcmp(a->ports, b->ports, a->nports * sizeof(*a->ports)) == 0;
}

static bool self_port(const struct policy_self *s, uint16_t port)
{
    if (port >= s->relay_min && port <= s->relay_max) return true;
    size_t lo = 0, hi = s->nports;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (s->ports[mid] == port) return true;
        if (s->ports[mid] < port)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

/* Is c's IP one of the relay's? */
static bool self_ip(const struct policy_self *s, const union stun_addr *c)
{
    if (c->sa.sa_family == AF_INET) {
        uint32_t ip = v4_host(c);
        if (ip == 0) return s->any4;
        size_t m = ((size_t)1 << s->bits4) - 1;
        for (size_t k = slot4(ip, s->bits4); s->h4[k]; k = (k + 1) & m)
            if (s->h4[k] == ip) return true;
        for (size_t i = 0; i < s->nn4; i++)
            if ((ip & s->n4[i][1]) == s->n4[i][0]) return true;
        return false;
    }
    if (c->sa.sa_family != AF_INET6) return false;
    const uint8_t *b = c->v6.sin6_addr.s6_addr;
    uint64_t hi = rd64be(b), lo = rd64be(b + 8);
    if ((hi | lo) == 0) return s->any6;
    size_t m = ((size_t)1 << s->bits6) - 1;
    for (size_t k = slot6(hi, lo, s->bits6); s->h6[k][0] | s->h6[k][1]; k = (k + 1) & m)
        if (s->h6[k][0] == hi && s->h6[k][1] == lo) return true;
    for (size_t i = 0; s->nets6 && i < s->nnets; i++)
        if (policy_cidr_match(&s->nets[i], c)) return true;
    return false;
}

bool policy_self_has(const struct policy_self *s, const union stun_addr *c)
{
    if (!s || !s->h4 || !self_ip(s, c)) return false; /* NULL or never built: empty */
    return self_port(s, ntohs(c->sa.sa_family == AF_INET ? c->v4.sin_port : c->v6.sin6_port));
}
