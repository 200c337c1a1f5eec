/* denied_peers.h: the table of forbidden peers every path to a peer is tested with: the
 * built-in special-purpose deny list, IPv4 and IPv6, and the forms that embed an IPv4 address
 * (test_turn_permission.c: CreatePermission and ChannelBind; test_turn_tcp.c: Connect and
 * incoming peer connections). Include after cmocka.h. */
#ifndef TERN_DENIED_PEERS_H
#define TERN_DENIED_PEERS_H

#include <arpa/inet.h>
#include <stdio.h>

#include "policy.h"

struct denied {
    const char *ip;
    enum policy_verdict why;
};

static const struct denied denied4[] = {
    {"0.0.0.0", POLICY_UNSPECIFIED},
    {"0.1.2.3", POLICY_UNSPECIFIED},
    {"127.0.0.1", POLICY_LOOPBACK},
    {"127.255.255.254", POLICY_LOOPBACK},
    {"10.0.0.1", POLICY_PRIVATE},
    {"10.255.255.255", POLICY_PRIVATE},
    {"172.16.0.1", POLICY_PRIVATE},
    {"172.31.255.254", POLICY_PRIVATE},
    {"192.168.1.1", POLICY_PRIVATE},
    {"100.64.0.1", POLICY_SHARED},
    {"100.127.255.254", POLICY_SHARED},
    {"169.254.1.1", POLICY_LINK_LOCAL},
    {"224.0.0.1", POLICY_MULTICAST},
    {"239.255.255.250", POLICY_MULTICAST},
    {"255.255.255.255", POLICY_BROADCAST},
    {"240.0.0.1", POLICY_SPECIAL},
    {"192.0.0.1", POLICY_SPECIAL},
    {"198.18.0.1", POLICY_DOCUMENTATION},
    {"198.19.255.254", POLICY_DOCUMENTATION},
    {"192.0.2.1", POLICY_DOCUMENTATION},
};

static const struct denied denied6[] = {
    {"::", POLICY_UNSPECIFIED},
    {"::1", POLICY_LOOPBACK},
    {"fe80::1", POLICY_LINK_LOCAL},
    {"fc00::1", POLICY_PRIVATE},
    {"fd12:3456::1", POLICY_PRIVATE},
    {"ff02::1", POLICY_MULTICAST},
    {"2001:db8::1", POLICY_DOCUMENTATION},
};

/* The forms of an IPv4 address: itself, ::ffff:-mapped, NAT64 (64:ff9b::/96), 6to4
 * (2002:AABB:CCDD::), IPv4-compatible (::a.b.c.d) and SIIT (::ffff:0:a.b.c.d). */
static inline size_t v4_forms(const char *ip, char forms[6][64])
{
    uint8_t b[4];
    assert_int_equal(inet_pton(AF_INET, ip, b), 1);
    snprintf(forms[0], 64, "%s", ip);
    snprintf(forms[1], 64, "::ffff:%s", ip);
    snprintf(forms[2], 64, "64:ff9b::%s", ip);
    snprintf(forms[3], 64, "2002:%02x%02x:%02x%02x::", b[0], b[1], b[2], b[3]);
    snprintf(forms[4], 64, "::%s", ip);
    snprintf(forms[5], 64, "::ffff:0:%s", ip);
    return 6;
}

#define NDENIED4 (sizeof(denied4) / sizeof(denied4[0]))
#define NDENIED6 (sizeof(denied6) / sizeof(denied6[0]))

#endif
