/* test_hostaddr.c: the relay's own address set as the workers see it (relay/hostaddr.c): with
 * a wildcard every address of this host (the whole loopback prefix, 0.0.0.0, ::) at listener
 * and relayed ports; with specific addresses only those; snapshots shared by reference. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>

#include "addr.h"
#include "hostaddr.h"

static union stun_addr parse(const char *ip, unsigned port)
{
    union stun_addr a;
    assert_true(addr_parse(ip, port, &a));
    return a;
}

static bool is_self(const struct policy_self *s, const char *ip, unsigned port)
{
    union stun_addr a = parse(ip, port), c;
    policy_canonical(&a, &c);
    return policy_self_has(s, &c);
}

static void test_wildcard_covers_the_host(void **state)
{
    (void)state;
    uint16_t ports[] = {3478, 3479};
    union stun_addr ips[] = {parse("0.0.0.0", 0), parse("203.0.113.9", 0)}; /* + external */
    struct hostaddr_spec spec = {.ips = ips,
                                 .nips = 2,
                                 .wildcard = true,
                                 .ports = ports,
                                 .nports = 2,
                                 .relay_min = 50000,
                                 .relay_max = 50010};
    struct hostaddr *h = hostaddr_open(&spec);
    assert_non_null(h);
    uint64_t gen = 0, gen2 = 0;
    const struct policy_self *s = hostaddr_take(h, NULL, &gen);
    assert_non_null(s);
    assert_int_not_equal(gen, 0);
    assert_true(is_self(s, "127.0.0.1", 3478));
    assert_true(is_self(s, "127.9.8.7", 3479)); /* the whole loopback prefix */
    assert_true(is_self(s, "::ffff:0:127.0.0.1", 50000));
    assert_true(is_self(s, "64:ff9b::127.0.0.1", 50010));
    assert_true(is_self(s, "0.0.0.0", 3478));
    assert_true(is_self(s, "::", 3478));
    assert_true(is_self(s, "203.0.113.9", 3478)); /* relay.external_address */
    assert_false(is_self(s, "127.0.0.1", 49999));
    assert_false(is_self(s, "127.0.0.1", 50011));
    assert_false(is_self(s, "8.8.8.8", 3478));
    /* Taking again without a change: the same snapshot, the same generation. */
    const struct policy_self *s2 = hostaddr_take(h, NULL, &gen2);
    assert_ptr_equal(s, s2);
    assert_int_equal(gen, gen2);
    assert_int_equal(hostaddr_generation(h), gen);
    s2 = hostaddr_take(h, s2, &gen2); /* renewing drops the old reference */
    assert_ptr_equal(s, s2);
    hostaddr_drop(h, s2);
    hostaddr_drop(h, s);
    hostaddr_close(h);
}

static void test_specific_only(void **state)
{
    (void)state;
    uint16_t ports[] = {3478};
    union stun_addr ips[] = {parse("192.0.2.1", 3478), parse("2001:db8::1", 0)};
    struct hostaddr_spec spec = {
        .ips = ips, .nips = 2, .ports = ports, .nports = 1, .relay_min = 1, .relay_max = 0};
    struct hostaddr *h = hostaddr_open(&spec);
    assert_non_null(h);
    uint64_t gen;
    const struct policy_self *s = hostaddr_take(h, NULL, &gen);
    assert_true(is_self(s, "192.0.2.1", 3478));
    assert_true(is_self(s, "::ffff:192.0.2.1", 3478));
    assert_true(is_self(s, "2001:db8::1", 3478));
    assert_true(is_self(s, "0.0.0.0", 3478));     /* delivered to the host whatever it binds */
    assert_false(is_self(s, "127.0.0.1", 3478));  /* nothing of the relay listens there */
    assert_false(is_self(s, "192.0.2.1", 50000)); /* no relayed range */
    hostaddr_drop(h, s);
    hostaddr_close(h);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wildcard_covers_the_host),
        cmocka_unit_test(test_specific_only),
    };
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
