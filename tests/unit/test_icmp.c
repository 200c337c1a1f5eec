/* test_icmp.c: ICMP errors from peers (RFC 8656 11): srv_peer_icmp (permission, TCP/TLS
 * clients, the per-allocation rate, the Data indication it writes) and the QoS tap's per-flow
 * ICMP view (qos_icmp). One test alone: pass its name as argv[1]. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "addr.h"
#include "qos.h"
#include "server.h"
#include "stun.h"
#include "users.h"

/* ---- a server whose allocations are made by hand (no Allocate needed) ---- */

static void fake_random(void *ctx, void *buf, size_t len)
{
    (void)ctx;
    memset(buf, 0x5a, len);
}
static void fake_port_release(void *ctx, unsigned pool, uint16_t port)
{
    (void)ctx, (void)pool, (void)port;
}
static void fake_relay_close(void *ctx, struct allocation *a, struct alloc_relay *r)
{
    (void)ctx, (void)a, (void)r;
}
static void fake_quota_release(void *ctx, const char *user, size_t ulen)
{
    (void)ctx, (void)user, (void)ulen;
}
static void fake_event(void *ctx, const struct allocation *a, const char *what,
                       const union stun_addr *peer, enum policy_verdict verdict)
{
    (void)ctx, (void)a, (void)what, (void)peer, (void)verdict;
}

struct fixture {
    struct srv srv;
    struct peer_policy policy;
    struct auth_users users;
    struct auth_creds creds;
    struct auth_nonce_key nk;
    struct allocation *a;
};

static union stun_addr mkaddr(const char *ip, uint16_t port)
{
    union stun_addr a;
    assert_true(addr_parse(ip, port, &a));
    return a;
}

#define NOW 100000 /* ms */

/* A server with one allocation for a UDP (or TCP) client that lives until NOW + 600 s. */
static struct fixture *fixture_new(enum srv_transport tr)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    assert_int_equal(auth_users_init(&fx->users, "example.org", NULL, NULL, 0), 0);
    fx->creds = auth_users_creds(&fx->users);
    struct srv_options opt = {.realm = "example.org",
                              .default_lifetime_s = 600,
                              .max_lifetime_s = 3600,
                              .nonce_lifetime_s = 600,
                              .policy = &fx->policy,
                              .creds = &fx->creds,
                              .nonce_key = &fx->nk};
    struct srv_io io = {.random = fake_random,
                        .port_release = fake_port_release,
                        .relay_close = fake_relay_close,
                        .quota_release = fake_quota_release,
                        .event = fake_event};
    assert_int_equal(srv_init(&fx->srv, &opt, &io, 0), 0);
    struct srv_tuple t = {
        .transport = tr, .client = mkaddr("192.0.2.10", 40000), .local = mkaddr("192.0.2.1", 3478)};
    fx->a = alloc_new(&fx->srv.allocs, &t, NOW);
    assert_non_null(fx->a);
    assert_int_equal(alloc_insert(&fx->srv.allocs, fx->a), 0);
    alloc_set_expiry(&fx->srv.allocs, fx->a, NOW + 600 * 1000);
    return fx;
}

static void fixture_free(struct fixture *fx)
{
    srv_free(&fx->srv);
    auth_users_free(&fx->users);
    free(fx);
}

/* ---- srv_peer_icmp ---- */

static void test_relayed_with_permission(void **state)
{
    (void)state;
    struct fixture *fx = fixture_new(SRV_UDP);
    union stun_addr peer = mkaddr("198.51.100.7", 5000);
    assert_int_equal(alloc_permit(fx->a, &peer, NOW), 0);
    uint8_t out[128];
    size_t n = srv_peer_icmp(&fx->srv, fx->a, &peer, 3, 3, 0, NOW + 10, out, sizeof(out));
    assert_true(n > 0);
    struct stun_msg m;
    assert_int_equal(stun_decode(&m, out, n), 0);
    assert_int_equal(m.type, stun_type(STUN_DATA, STUN_INDICATION));
    union stun_addr got;
    const struct stun_attr *xa = stun_find(&m, STUN_ATTR_XOR_PEER_ADDRESS);
    assert_non_null(xa);
    assert_int_equal(stun_get_xor_addr(&m, xa, &got), 0);
    assert_true(addr_equal(&got, &peer));
    const struct stun_attr *ia = stun_find(&m, STUN_ATTR_ICMP);
    assert_non_null(ia);
    uint8_t type, code;
    uint32_t data;
    assert_int_equal(stun_get_icmp(ia, &type, &code, &data), 0);
    assert_int_equal(type, 3);
    assert_int_equal(code, 3);
    assert_int_equal(data, 0);
    /* With an ICMP attribute a Data indication carries no DATA (RFC 8656 18.13). */
    assert_null(stun_find(&m, STUN_ATTR_DATA));
    assert_int_equal(fx->srv.c.v[SRV_C_icmp_to_client], 1);
    fixture_free(fx);
}

static void test_packet_too_big_carries_mtu_v6(void **state)
{
    (void)state;
    struct fixture *fx = fixture_new(SRV_UDP);
    union stun_addr peer = mkaddr("2001:db8::7", 5000);
    assert_int_equal(alloc_permit(fx->a, &peer, NOW), 0);
    uint8_t out[128];
    size_t n = srv_peer_icmp(&fx->srv, fx->a, &peer, 2, 0, 1280, NOW, out, sizeof(out));
    assert_true(n > 0);
    struct stun_msg m;
    assert_int_equal(stun_decode(&m, out, n), 0);
    uint8_t type, code;
    uint32_t data;
    assert_int_equal(stun_get_icmp(stun_find(&m, STUN_ATTR_ICMP), &type, &code, &data), 0);
    assert_int_equal(type, 2);
    assert_int_equal(data, 1280);
    union stun_addr got;
    assert_int_equal(stun_get_xor_addr(&m, stun_find(&m, STUN_ATTR_XOR_PEER_ADDRESS), &got), 0);
    assert_true(addr_equal(&got, &peer));
    fixture_free(fx);
}

static void test_no_permission_dropped(void **state)
{
    (void)state;
    struct fixture *fx = fixture_new(SRV_UDP);
    union stun_addr peer = mkaddr("198.51.100.7", 5000), other = mkaddr("198.51.100.8", 5000);
    assert_int_equal(alloc_permit(fx->a, &other, NOW), 0);
    uint8_t out[128];
    assert_int_equal(srv_peer_icmp(&fx->srv, fx->a, &peer, 3, 1, 0, NOW, out, sizeof(out)), 0);
    assert_int_equal(fx->srv.c.v[SRV_C_drop_icmp_no_permission], 1);
    /* An expired permission (5 minutes, RFC 8656 9) no longer lets ICMP through either. */
    assert_int_equal(
        srv_peer_icmp(&fx->srv, fx->a, &other, 3, 1, 0, NOW + 301 * 1000, out, sizeof(out)), 0);
    assert_int_equal(fx->srv.c.v[SRV_C_drop_icmp_no_permission], 2);
    assert_int_equal(fx->srv.c.v[SRV_C_icmp_to_client], 0);
    fixture_free(fx);
}

static void test_stream_client_counted_not_relayed(void **state)
{
    (void)state;
    struct fixture *fx = fixture_new(SRV_TCP);
    union stun_addr peer = mkaddr("198.51.100.7", 5000);
    assert_int_equal(alloc_permit(fx->a, &peer, NOW), 0);
    uint8_t out[128];
    assert_int_equal(srv_peer_icmp(&fx->srv, fx->a, &peer, 3, 3, 0, NOW, out, sizeof(out)), 0);
    assert_int_equal(fx->srv.c.v[SRV_C_icmp_stream_client], 1);
    assert_int_equal(fx->srv.c.v[SRV_C_icmp_to_client], 0);
    fixture_free(fx);
}

static void test_rate_limited_per_allocation(void **state)
{
    (void)state;
    struct fixture *fx = fixture_new(SRV_UDP);
    union stun_addr peer = mkaddr("198.51.100.7", 5000);
    assert_int_equal(alloc_permit(fx->a, &peer, NOW), 0);
    uint8_t out[128];
    unsigned sent = 0;
    for (int i = 0; i < 100; i++)
        sent += srv_peer_icmp(&fx->srv, fx->a, &peer, 3, 3, 0, NOW, out, sizeof(out)) > 0;
    assert_int_equal(sent, SRV_ICMP_BURST);
    assert_int_equal(fx->srv.c.v[SRV_C_drop_icmp_rate], 100 - SRV_ICMP_BURST);
    /* One second later: SRV_ICMP_PER_S more, and no more than that. */
    sent = 0;
    for (int i = 0; i < 100; i++)
        sent += srv_peer_icmp(&fx->srv, fx->a, &peer, 3, 3, 0, NOW + 1000, out, sizeof(out)) > 0;
    assert_int_equal(sent, SRV_ICMP_PER_S);
    /* Long idle: the budget refills to the burst, not beyond. */
    sent = 0;
    for (int i = 0; i < 100; i++)
        sent += srv_peer_icmp(&fx->srv, fx->a, &peer, 3, 3, 0, NOW + 60000, out, sizeof(out)) > 0;
    assert_int_equal(sent, SRV_ICMP_BURST);
    fixture_free(fx);
}

static void test_expired_allocation(void **state)
{
    (void)state;
    struct fixture *fx = fixture_new(SRV_UDP);
    union stun_addr peer = mkaddr("198.51.100.7", 5000);
    assert_int_equal(alloc_permit(fx->a, &peer, NOW), 0);
    uint8_t out[128];
    assert_int_equal(
        srv_peer_icmp(&fx->srv, fx->a, &peer, 3, 3, 0, NOW + 601 * 1000, out, sizeof(out)), 0);
    assert_int_equal(fx->srv.c.v[SRV_C_drop_no_allocation], 1);
    fixture_free(fx);
}

/* ---- the QoS view ---- */

static void test_qos_icmp_view(void **state)
{
    (void)state;
    struct qos_metrics m;
    memset(&m, 0, sizeof(m));
    struct qos_alloc *q = qos_alloc_new(1000000000);
    assert_non_null(q);
    union stun_addr p1 = mkaddr("198.51.100.7", 5000), p2 = mkaddr("198.51.100.8", 6000);
    uint8_t payload[40] = {0};
    qos_packet(q, &m, QOS_LEG_CLIENT, &p1, payload, sizeof(payload), 1000000000);
    qos_packet(q, &m, QOS_LEG_CLIENT, &p2, payload, sizeof(payload), 1000000000);
    qos_icmp(q, &m, &p1, QOS_ICMP_UNREACHABLE, 0);
    qos_icmp(q, &m, &p1, QOS_ICMP_UNREACHABLE, 0);
    qos_icmp(q, &m, &p2, QOS_ICMP_PACKET_TOO_BIG, 1400);
    qos_icmp(q, &m, &p2, QOS_ICMP_PACKET_TOO_BIG, 1280);
    qos_icmp(q, &m, &p2, QOS_ICMP_PACKET_TOO_BIG, 1350); /* the smallest is kept */
    qos_icmp(q, &m, &p2, QOS_ICMP_TTL_EXCEEDED, 0);
    assert_int_equal(m.icmp[QOS_ICMP_UNREACHABLE], 2);
    assert_int_equal(m.icmp[QOS_ICMP_PACKET_TOO_BIG], 3);
    assert_int_equal(m.icmp[QOS_ICMP_TTL_EXCEEDED], 1);

    json_t *d = qos_detail_json(q, 2000000000);
    assert_non_null(d);
    json_t *peers = json_object_get(d, "peers");
    assert_int_equal(json_array_size(peers), 2);
    for (size_t i = 0; i < 2; i++) {
        json_t *p = json_array_get(peers, i), *ic = json_object_get(p, "icmp");
        const char *who = json_string_value(json_object_get(p, "peer"));
        assert_non_null(ic);
        if (strcmp(who, "198.51.100.7:5000") == 0) {
            assert_int_equal(json_integer_value(json_object_get(ic, "unreachable")), 2);
            assert_true(json_is_null(json_object_get(ic, "path_mtu")));
        } else {
            assert_string_equal(who, "198.51.100.8:6000");
            assert_int_equal(json_integer_value(json_object_get(ic, "packet_too_big")), 3);
            assert_int_equal(json_integer_value(json_object_get(ic, "ttl_exceeded")), 1);
            assert_int_equal(json_integer_value(json_object_get(ic, "path_mtu")), 1280);
        }
    }
    json_decref(d);
    json_t *s = qos_summary_json(q), *ic = json_object_get(s, "icmp");
    assert_int_equal(json_integer_value(json_object_get(ic, "unreachable")), 2);
    assert_int_equal(json_integer_value(json_object_get(ic, "packet_too_big")), 3);
    assert_int_equal(json_integer_value(json_object_get(ic, "path_mtu")), 1280);
    json_decref(s);

    char *buf = NULL;
    size_t len = 0, cap = 0;
    assert_int_equal(qos_metrics_prometheus(&m, &buf, &len, &cap), 0);
    assert_non_null(strstr(buf, "tern_qos_icmp_total{kind=\"unreachable\"} 2\n"));
    assert_non_null(strstr(buf, "tern_qos_icmp_total{kind=\"packet_too_big\"} 3\n"));
    assert_non_null(strstr(buf, "tern_qos_icmp_total{kind=\"ttl_exceeded\"} 1\n"));
    free(buf);
    qos_alloc_free(q);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_relayed_with_permission),
        cmocka_unit_test(test_packet_too_big_carries_mtu_v6),
        cmocka_unit_test(test_no_permission_dropped),
        cmocka_unit_test(test_stream_client_counted_not_relayed),
        cmocka_unit_test(test_rate_limited_per_allocation),
        cmocka_unit_test(test_expired_allocation),
        cmocka_unit_test(test_qos_icmp_view),
    };
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
