/* test_policy.c: the peer policy: every special-purpose address, and its IPv4-mapped,
 * IPv4-compatible, NAT64 and 6to4 forms, is denied by default; config allow/deny/loopback. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

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
    "::",           "::1",       "fe80::1",     "febf::1", "fc00::1",   "fd12:3456::1",
    "ff02::1",      "ff05::1:3", "2001:db8::1", "2001::1", "2001:2::1", "100::1",
    "64:ff9b:1::1", "fec0::1",   "3fff::1",     "5f00::1",
};

static void check(const struct peer_policy *p, const union stun_addr *a, const char *what,
                  bool want_ok)
{
    enum policy_verdict v = policy_check(p, a, false);
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
        if (v != denied[i].why)
            fail_msg("%s: got %s, wanted %s", denied[i].ip, policy_verdict_names[v],
                     policy_verdict_names[denied[i].why]);
        /* The same IPv4 address hidden in IPv6 forms. */
        uint8_t b[4];
        memcpy(b, &a.v4.sin_addr, 4);
        char forms[4][64];
        snprintf(forms[0], 64, "::ffff:%s", denied[i].ip);
        snprintf(forms[1], 64, "64:ff9b::%s", denied[i].ip);
        snprintf(forms[2], 64, "2002:%02x%02x:%02x%02x::1", b[0], b[1], b[2], b[3]);
        snprintf(forms[3], 64, "::%s", denied[i].ip);
        for (int f = 0; f < 4; f++) {
            union stun_addr m = parse(forms[f], 5000);
            check(&p, &m, forms[f], false);
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
    union stun_addr self[] = {parse("203.0.113.7", 3478), parse("2001:db8::7", 3478)};
    struct policy_cidr allow[] = {{.addr = parse("203.0.113.0", 0), .prefix = 24},
                                  {.addr = parse("2001:db8::", 0), .prefix = 32}};
    struct peer_policy p = {.allow = allow, .nallow = 2, .self = self, .nself = 2};
    union stun_addr a = parse("203.0.113.7", 3478);
    assert_int_equal(policy_check(&p, &a, false), POLICY_OK);  /* permissions ignore ports */
    assert_int_equal(policy_check(&p, &a, true), POLICY_SELF); /* even though allowed */
    a = parse("::ffff:203.0.113.7", 3478);
    assert_int_equal(policy_check(&p, &a, true), POLICY_SELF);
    a = parse("2001:db8::7", 3478);
    assert_int_equal(policy_check(&p, &a, true), POLICY_SELF);
    a = parse("203.0.113.7", 3479); /* another port of the same host: a relayed address */
    assert_int_equal(policy_check(&p, &a, true), POLICY_OK);
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
    };
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
