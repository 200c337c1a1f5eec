/* test_policy.c: the peer policy: every special-purpose address, and its IPv4-mapped, SIIT,
 * IPv4-compatible, NAT64 and 6to4 forms, is denied by default; the rest of ::/8 too; the relay's
 * own addresses at its listener and relayed ports in every form; config allow/deny/loopback. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "addr.h"
#include "policy.h"

static union stun_addr parse(const char *ip, unsigned port)
{
    union stun_addr a;
    memset(&a, 0, sizeof(a));
    if (inet_pton(AF_INET, ip, &a.v4.sin_addr) == 1) {
        a.v4.sin_family = AF_INET;
        a.v4.sin_port = htons((uint16_t)port);
    } else if (inet_pton(AF_INET6, ip, &a.v6.sin6_addr) == 1) {
        a.v6.sin6_family = AF_INET6;
        a.v6.sin6_port = htons((uint16_t)port);
    } else {
        fail_msg("bad test address %s", ip);
    }
    return a;
}

/* Every address here must be refused with the default policy, in every form that embeds it. */
static const struct {
    const char *ip;
    enum policy_verdict why;
} denied[] = {
    {"0.0.0.0", POLICY_UNSPECIFIED},
    {"0.1.2.3", POLICY_UNSPECIFIED},
    {"10.0.0.1", POLICY_PRIVATE},
    {"10.255.255.255", POLICY_PRIVATE},
    {"100.64.0.1", POLICY_SHARED},
    {"100.127.255.254", POLICY_SHARED},
    {"127.0.0.1", POLICY_LOOPBACK},
    {"127.255.255.254", POLICY_LOOPBACK},
    {"169.254.0.1", POLICY_LINK_LOCAL},
    {"169.254.169.254", POLICY_LINK_LOCAL},
    {"172.16.0.1", POLICY_PRIVATE},
    {"172.31.255.254", POLICY_PRIVATE},
    {"192.0.0.8", POLICY_SPECIAL},
    {"192.0.2.1", POLICY_DOCUMENTATION},
    {"192.31.196.1", POLICY_SPECIAL},
    {"192.52.193.1", POLICY_SPECIAL},
    {"192.88.99.1", POLICY_SPECIAL},
    {"192.168.1.1", POLICY_PRIVATE},
    {"192.175.48.1", POLICY_SPECIAL},
    {"198.18.0.1", POLICY_DOCUMENTATION},
    {"198.19.255.254", POLICY_DOCUMENTATION},
    {"198.51.100.7", POLICY_DOCUMENTATION},
    {"203.0.113.9", POLICY_DOCUMENTATION},
    {"224.0.0.1", POLICY_MULTICAST},
    {"239.255.255.250", POLICY_MULTICAST},
    {"240.0.0.1", POLICY_SPECIAL},
    {"255.255.255.255", POLICY_BROADCAST},
};

static const char *const denied6[] = {
    "::",
    "::1",
    "fe80::1",
    "febf::1",
    "fc00::1",
    "fd12:3456::1",
    "ff02::1",
    "ff05::1:3",
    "2001:db8::1",
    "2001::1",
    "2001:2::1",
    "100::1",
    "64:ff9b:1::1",
    "fec0::1",
    "3fff::1",
    "5f00::1",
    /* ::/8 outside ::, ::1 and the IPv4-embedding forms (reserved by the IETF) */
    "::2:0:0:1",
    "::1:0:0:1",
    "::ffff:1:0:1",
    "::fffe:0:1",
    "1::1",
    "ff::1",
    "64:ff9c::1",
    "::1:0:0:0:1",
};

/* Forbidden encodings counted by the table tests (reported, so a change is visible). */
static unsigned forbidden_total, forbidden_refused;

static void count_refusal(enum policy_verdict v)
{
    forbidden_total++;
    forbidden_refused += v != POLICY_OK;
}

static void check(const struct peer_policy *p, const union stun_addr *a, const char *what,
                  bool want_ok)
{
    enum policy_verdict v = policy_check(p, a, false);
    if (!want_ok) count_refusal(v);
    if ((v == POLICY_OK) != want_ok)
        fail_msg("%s: got %s, wanted %s", what, policy_verdict_names[v],
                 want_ok ? "OK" : "a denial");
}

static void test_special_ipv4_in_all_forms(void **state)
{
    (void)state;
    struct peer_policy p = {0};
    for (size_t i = 0; i < sizeof(denied) / sizeof(denied[0]); i++) {
        union stun_addr a = parse(denied[i].ip, 5000);
        enum policy_verdict v = policy_check(&p, &a, false);
        count_refusal(v);
        if (v != denied[i].why)
            fail_msg("%s: got %s, wanted %s", denied[i].ip, policy_verdict_names[v],
                     policy_verdict_names[denied[i].why]);
        /* The same IPv4 address hidden in IPv6 forms. */
        uint8_t b[4];
        memcpy(b, &a.v4.sin_addr, 4);
        char forms[5][64];
        snprintf(forms[0], 64, "::ffff:%s", denied[i].ip);
        snprintf(forms[1], 64, "64:ff9b::%s", denied[i].ip);
        snprintf(forms[2], 64, "2002:%02x%02x:%02x%02x::1", b[0], b[1], b[2], b[3]);
        snprintf(forms[3], 64, "::%s", denied[i].ip);
        snprintf(forms[4], 64, "::ffff:0:%s", denied[i].ip); /* SIIT */
        for (int f = 0; f < 5; f++) {
            union stun_addr m = parse(forms[f], 5000);
            check(&p, &m, forms[f], false);
            /* Each form canonicalises to the IPv4 address itself, and is judged as it is (but
             * ::0.0.0.0 and ::0.0.0.1 are :: and ::1). */
            if (f == 3 && ntohl(a.v4.sin_addr.s_addr) <= 1) continue;
            union stun_addr c;
            policy_canonical(&m, &c);
            if (c.sa.sa_family != AF_INET || c.v4.sin_addr.s_addr != a.v4.sin_addr.s_addr)
                fail_msg("%s: not canonicalised to %s", forms[f], denied[i].ip);
            assert_int_equal(policy_check(&p, &m, false), denied[i].why);
        }
    }
}

static void test_special_ipv6(void **state)
{
    (void)state;
    struct peer_policy p = {0};
    for (size_t i = 0; i < sizeof(denied6) / sizeof(denied6[0]); i++) {
        union stun_addr a = parse(denied6[i], 5000);
        check(&p, &a, denied6[i], false);
    }
    union stun_addr a = parse("::2:0:0:1", 5000);
    assert_int_equal(policy_check(&p, &a, false), POLICY_RESERVED);
    a = parse("64:ff9c::1", 5000);
    assert_int_equal(policy_check(&p, &a, false), POLICY_RESERVED);
}

/* peers.allow can open a part of ::/8 (and only what it lists). */
static void test_reserved_allowed_by_config(void **state)
{
    (void)state;
    struct policy_cidr allow[] = {{.addr = parse("::2:0:0:0", 0), .prefix = 96}};
    struct peer_policy p = {.allow = allow, .nallow = 1};
    union stun_addr a = parse("::2:0:0:1", 5000);
    check(&p, &a, "::2:0:0:1 listed in peers.allow", true);
    a = parse("::3:0:0:1", 5000);
    assert_int_equal(policy_check(&p, &a, false), POLICY_RESERVED);
}

static void test_public_allowed(void **state)
{
    (void)state;
    struct peer_policy p = {0};
    const char *ok[] = {"8.8.8.8",        "1.1.1.1",          "100.63.255.255",
                        "100.128.0.0",    "172.15.255.255",   "172.32.0.0",
                        "192.169.0.1",    "2606:4700::1111",  "2a00:1450::1",
                        "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:0808:0808::1"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        union stun_addr a = parse(ok[i], 5000);
        check(&p, &a, ok[i], true);
    }
}

static void test_canonical_forms(void **state)
{
    (void)state;
    union stun_addr in = parse("::ffff:127.0.0.1", 9), out;
    policy_canonical(&in, &out);
    assert_int_equal(out.sa.sa_family, AF_INET);
    assert_int_equal(ntohl(out.v4.sin_addr.s_addr), 0x7f000001);
    assert_int_equal(ntohs(out.v4.sin_port), 9);
    in = parse("2002:c0a8:0101::5", 9);
    policy_canonical(&in, &out);
    assert_int_equal(ntohl(out.v4.sin_addr.s_addr), 0xc0a80101);
    in = parse("::1", 9); /* loopback stays IPv6, not 0.0.0.1 */
    policy_canonical(&in, &out);
    assert_int_equal(out.sa.sa_family, AF_INET6);
    in = parse("::ffff:0:7f00:1", 9); /* SIIT IPv4-translated: the review's example */
    policy_canonical(&in, &out);
    assert_int_equal(out.sa.sa_family, AF_INET);
    assert_int_equal(ntohl(out.v4.sin_addr.s_addr), 0x7f000001);
    assert_int_equal(ntohs(out.v4.sin_port), 9);
    in = parse("::ffff:1:7f00:1", 9); /* not a form that embeds IPv4 */
    policy_canonical(&in, &out);
    assert_int_equal(out.sa.sa_family, AF_INET6);
}

static void test_config_rules(void **state)
{
    (void)state;
    struct policy_cidr allow[] = {{.addr = parse("10.1.0.0", 0), .prefix = 16}};
    struct policy_cidr deny[] = {{.addr = parse("8.8.0.0", 0), .prefix = 16},
                                 {.addr = parse("2606:4700::", 0), .prefix = 32}};
    struct peer_policy p = {.allow = allow, .nallow = 1, .deny = deny, .ndeny = 2};
    union stun_addr a = parse("10.1.2.3", 1);
    check(&p, &a, "allowed private", true);
    a = parse("::ffff:10.1.2.3", 1);
    check(&p, &a, "allowed private, mapped", true);
    a = parse("10.2.0.1", 1);
    check(&p, &a, "private outside allow", false);
    a = parse("8.8.8.8", 1);
    assert_int_equal(policy_check(&p, &a, false), POLICY_CONFIG_DENY);
    a = parse("64:ff9b::8.8.4.4", 1);
    assert_int_equal(policy_check(&p, &a, false), POLICY_CONFIG_DENY);
    a = parse("2606:4700::1111", 1);
    assert_int_equal(policy_check(&p, &a, false), POLICY_CONFIG_DENY);

    p = (struct peer_policy){.allow_loopback = true};
    a = parse("127.0.0.1", 1);
    check(&p, &a, "loopback allowed", true);
    a = parse("::ffff:127.0.0.1", 1);
    check(&p, &a, "mapped loopback allowed", true);
    a = parse("::1", 1);
    check(&p, &a, "::1 allowed", true);
    a = parse("0.0.0.0", 1);
    check(&p, &a, "0.0.0.0 still denied with loopback allowed", false);
    a = parse("10.0.0.1", 1);
    check(&p, &a, "private still denied with loopback allowed", false);
}

static void test_port_zero(void **state)
{
    (void)state;
    struct peer_policy p = {0};
    union stun_addr a = parse("8.8.8.8", 0);
    assert_int_equal(policy_check(&p, &a, false), POLICY_OK);
    assert_int_equal(policy_check(&p, &a, true), POLICY_PORT_ZERO);
}

static void test_self_never_a_peer(void **state)
{
    (void)state;
    union stun_addr ips[] = {parse("203.0.113.7", 0), parse("2001:db8::7", 0)};
    uint16_t ports[] = {3478};
    struct policy_self self;
    assert_int_equal(policy_self_build(&self, ips, 2, NULL, 0, ports, 1, 1, 0), 0);
    struct policy_cidr allow[] = {{.addr = parse("203.0.113.0", 0), .prefix = 24},
                                  {.addr = parse("2001:db8::", 0), .prefix = 32}};
    struct peer_policy p = {.allow = allow, .nallow = 2, .self = &self};
    union stun_addr a = parse("203.0.113.7", 3478);
    assert_int_equal(policy_check(&p, &a, false), POLICY_OK);  /* permissions ignore ports */
    assert_int_equal(policy_check(&p, &a, true), POLICY_SELF); /* even though allowed */
    a = parse("::ffff:203.0.113.7", 3478);
    assert_int_equal(policy_check(&p, &a, true), POLICY_SELF);
    a = parse("2001:db8::7", 3478);
    assert_int_equal(policy_check(&p, &a, true), POLICY_SELF);
    a = parse("203.0.113.7", 3479); /* another port of the same host, no relayed range */
    assert_int_equal(policy_check(&p, &a, true), POLICY_OK);
    policy_self_free(&self);
}

/* The relay's own addresses as a wildcard relay sees them: the host's addresses (the loopback
 * as its whole prefix, 0.0.0.0 and :: which reach the host too), relay.external_address. */
static const char *const self_ips[] = {"127.0.0.1",    "192.0.2.10", "203.0.113.7",
                                       "198.51.100.1", "0.0.0.0",    "::1",
                                       "2001:db8::7",  "fe80::1",    "::"};
/* IPv4 addresses that are the relay without being listed: the rest of 127.0.0.0/8. */
static const char *const self_net_ips[] = {"127.0.0.2", "127.1.2.3", "127.255.255.254"};
static const unsigned self_ports[] = {3478, 5349, 49152, 50000, 65535}; /* listeners, relayed */
static const unsigned other_ports[] = {3479, 5000, 49151};

static void build_self(struct policy_self *self)
{
    union stun_addr ips[sizeof(self_ips) / sizeof(self_ips[0])];
    for (size_t i = 0; i < sizeof(self_ips) / sizeof(self_ips[0]); i++)
        ips[i] = parse(self_ips[i], 0);
    struct policy_cidr nets[] = {{.addr = parse("127.0.0.0", 0), .prefix = 8}};
    uint16_t ports[] = {5349, 3478, 3478}; /* unsorted, repeated: the build sorts them out */
    assert_int_equal(
        policy_self_build(self, ips, sizeof(ips) / sizeof(ips[0]), nets, 1, ports, 3, 49152, 65535),
        0);
}

/* Every encoding of one address (IPv4: itself and its five IPv6 forms). */
static size_t encodings(const char *ip, char out[6][64])
{
    union stun_addr a = parse(ip, 0);
    snprintf(out[0], 64, "%s", ip);
    if (a.sa.sa_family != AF_INET) return 1;
    uint8_t b[4];
    memcpy(b, &a.v4.sin_addr, 4);
    snprintf(out[1], 64, "::ffff:%s", ip);
    snprintf(out[2], 64, "::ffff:0:%s", ip);
    snprintf(out[3], 64, "64:ff9b::%s", ip);
    snprintf(out[4], 64, "2002:%02x%02x:%02x%02x::1", b[0], b[1], b[2], b[3]);
    /* IPv4-compatible ::a.b.c.d: 0.0.0.0 and 0.0.0.1 are :: and ::1 instead (listed too) */
    if (ntohl(a.v4.sin_addr.s_addr) <= 1) return 5;
    snprintf(out[5], 64, "::%s", ip);
    return 6;
}

static void self_table(const struct peer_policy *p, const char *ip, bool want_self)
{
    char forms[6][64];
    size_t n = encodings(ip, forms);
    for (size_t f = 0; f < n; f++)
        for (size_t k = 0; k < sizeof(self_ports) / sizeof(self_ports[0]); k++) {
            union stun_addr a = parse(forms[f], self_ports[k]);
            enum policy_verdict v = policy_check(p, &a, true);
            if (want_self) count_refusal(v);
            if ((v == POLICY_SELF) != want_self)
                fail_msg("[%s]:%u: got %s, wanted %s", forms[f], self_ports[k],
                         policy_verdict_names[v], want_self ? "SELF" : "not SELF");
            /* A permission names no port: the relay's host may still be a peer elsewhere. */
            assert_int_equal(policy_check(p, &a, false), POLICY_OK);
        }
}

static void test_self_loop_every_form(void **state)
{
    (void)state;
    struct policy_self self;
    build_self(&self);
    /* Everything else allowed (loopback, and peers.allow for all): only SELF refuses. */
    struct policy_cidr allow[] = {{.addr = parse("0.0.0.0", 0), .prefix = 0},
                                  {.addr = parse("::", 0), .prefix = 0}};
    struct peer_policy p = {.allow_loopback = true, .allow = allow, .nallow = 2, .self = &self};
    for (size_t i = 0; i < sizeof(self_ips) / sizeof(self_ips[0]); i++)
        self_table(&p, self_ips[i], true);
    for (size_t i = 0; i < sizeof(self_net_ips) / sizeof(self_net_ips[0]); i++)
        self_table(&p, self_net_ips[i], true);
    /* Other ports of the relay's own addresses are other services: allowed. */
    for (size_t i = 0; i < sizeof(self_ips) / sizeof(self_ips[0]); i++)
        for (size_t k = 0; k < sizeof(other_ports) / sizeof(other_ports[0]); k++) {
            union stun_addr a = parse(self_ips[i], other_ports[k]);
            if (policy_check(&p, &a, true) != POLICY_OK)
                fail_msg("%s:%u refused", self_ips[i], other_ports[k]);
        }
    /* Neighbours of the relay's addresses are not the relay. */
    const char *others[] = {"192.0.2.11", "203.0.113.6", "128.0.0.1", "2001:db8::8", "::2"};
    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
        union stun_addr a = parse(others[i], 3478);
        if (policy_check(&p, &a, true) != POLICY_OK) fail_msg("%s:3478 refused", others[i]);
    }
    policy_self_free(&self);
}

/* Many addresses (a host with hundreds): the sorted lookup finds each, and only those. */
static void test_self_many(void **state)
{
    (void)state;
    union stun_addr ips[600];
    for (unsigned i = 0; i < 300; i++) {
        char v4[32], v6[64];
        snprintf(v4, sizeof(v4), "198.51.%u.%u", (i * 7) % 256, (i * 13) % 256 | 1);
        snprintf(v6, sizeof(v6), "2001:db8:%x::%x", i * 31, i + 1);
        ips[2 * i] = parse(v4, 0);
        ips[2 * i + 1] = parse(v6, 0);
    }
    uint16_t ports[] = {3478};
    struct policy_self self, same;
    assert_int_equal(policy_self_build(&self, ips, 600, NULL, 0, ports, 1, 1, 0), 0);
    assert_int_equal(policy_self_build(&same, ips, 600, NULL, 0, ports, 1, 1, 0), 0);
    assert_true(policy_self_equal(&self, &same));
    for (unsigned i = 0; i < 600; i++) {
        union stun_addr a = ips[i];
        addr_set_port(&a, 3478);
        assert_true(policy_self_has(&self, &a));
        addr_set_port(&a, 3477);
        assert_false(policy_self_has(&self, &a));
    }
    union stun_addr a = parse("198.51.0.0", 3478); /* odd last octets only */
    assert_false(policy_self_has(&self, &a));
    a = parse("2001:db8:1::1", 3478);
    assert_false(policy_self_has(&self, &a));
    policy_self_free(&same);
    assert_int_equal(policy_self_build(&same, ips, 599, NULL, 0, ports, 1, 1, 0), 0);
    assert_false(policy_self_equal(&self, &same)); /* one address fewer: a change */
    policy_self_free(&same);
    policy_self_free(&self);

    /* An IPv6 prefix (an AnyIP-style local route on a loopback interface). */
    struct policy_cidr nets[] = {{.addr = parse("fd00:1::", 0), .prefix = 32}};
    assert_int_equal(policy_self_build(&self, NULL, 0, nets, 1, ports, 1, 1, 0), 0);
    a = parse("fd00:1:2::3", 3478);
    assert_true(policy_self_has(&self, &a));
    a = parse("fd00:2::3", 3478);
    assert_false(policy_self_has(&self, &a));
    a = parse("::", 3478); /* not listed here */
    assert_false(policy_self_has(&self, &a));
    policy_self_free(&self);
    struct policy_self none = {0}; /* never built: empty */
    assert_false(policy_self_has(&none, &a));
}

/* The count of forbidden encodings refused, over every table above (run last). */
static void test_forbidden_count(void **state)
{
    (void)state;
    print_message("forbidden encodings refused: %u of %u\n", forbidden_refused, forbidden_total);
    assert_int_equal(forbidden_refused, forbidden_total);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_special_ipv4_in_all_forms),
        cmocka_unit_test(test_special_ipv6),
        cmocka_unit_test(test_public_allowed),
        cmocka_unit_test(test_canonical_forms),
        cmocka_unit_test(test_config_rules),
        cmocka_unit_test(test_port_zero),
        cmocka_unit_test(test_self_never_a_peer),
        cmocka_unit_test(test_self_loop_every_form),
        cmocka_unit_test(test_self_many),
        cmocka_unit_test(test_reserved_allowed_by_config),
        cmocka_unit_test(test_forbidden_count),
    };
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
