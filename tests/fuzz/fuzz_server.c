/* fuzz_server.c: libFuzzer target: srv_handle (fake relay I/O, one user) on the input from an
 * IPv4 and an IPv6 client; every reply must decode, fit outcap, answer the same transaction,
 * not amplify garbage, and every message must be counted. */
#include <arpa/inet.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "fake_io.h"
#include "server.h"
#include "stun.h"
#include "users.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void require(bool ok)
{
    if (!ok) abort();
}

/* ---- fake relay I/O (tests/util/fake_io.h): no port, socket or quota is ever granted ---- */

static struct srv server;
static struct auth_users users;
static struct auth_creds creds;
static struct auth_nonce_key nonce_key;
static struct peer_policy policy;
static union stun_addr relay_addrs[2];
static struct fake_io fio;

static void server_init(void)
{
    const char *const names[] = {"alice"}, *const passwords[] = {"s3cret"};
    require(auth_users_init(&users, "example.org", names, passwords, 1) == 0);
    creds = auth_users_creds(&users);
    memset(nonce_key.secret, 0x42, sizeof(nonce_key.secret));
    relay_addrs[0].v4.sin_family = AF_INET;
    inet_pton(AF_INET, "192.0.2.100", &relay_addrs[0].v4.sin_addr);
    relay_addrs[1].v6.sin6_family = AF_INET6;
    inet_pton(AF_INET6, "2001:db8::100", &relay_addrs[1].v6.sin6_addr);
    const struct srv_options opt = {
        .software = "tern fuzz",
        .realm = "example.org",
        .default_lifetime_s = 600,
        .max_lifetime_s = 3600,
        .nonce_lifetime_s = 600,
        .policy = &policy,
        .creds = &creds,
        .nonce_key = &nonce_key,
        .relay_addrs = relay_addrs,
        .nrelay_addrs = 2,
        .mobility = true, /* RFC 8016: MOBILITY-TICKET values are decoded */
    };
    fake_io_init(&fio, 0, 0);
    fio.refuse = true;
    fio.fixed_random = true;
    fio.random_byte = 0x3C;
    const struct srv_io io = fake_io_srv_io(&fio);
    require(srv_init(&server, &opt, &io, 0) == 0);
}

static struct srv_tuple make_tuple(int family)
{
    struct srv_tuple t;
    memset(&t, 0, sizeof(t));
    t.transport = family == AF_INET ? SRV_UDP : SRV_TCP;
    if (family == AF_INET) {
        t.client.v4.sin_family = AF_INET;
        t.client.v4.sin_port = htons(40000);
        inet_pton(AF_INET, "192.0.2.77", &t.client.v4.sin_addr);
        t.local.v4.sin_family = AF_INET;
        t.local.v4.sin_port = htons(3478);
        inet_pton(AF_INET, "198.51.100.1", &t.local.v4.sin_addr);
    } else {
        t.client.v6.sin6_family = AF_INET6;
        t.client.v6.sin6_port = htons(40001);
        inet_pton(AF_INET6, "2001:db8::77", &t.client.v6.sin6_addr);
        t.local.v6.sin6_family = AF_INET6;
        t.local.v6.sin6_port = htons(3478);
        inet_pton(AF_INET6, "2001:db8::1", &t.local.v6.sin6_addr);
    }
    return t;
}

static void run(const struct srv_tuple *t, const uint8_t *in, size_t inlen, size_t outcap,
                bool decoded)
{
    uint8_t *out = malloc(outcap);
    if (!out) return;
    struct srv_counters before = server.c;
    struct srv_fwd fwd;
    size_t n = srv_handle(&server, t, NULL, in, inlen, 1000000, out, outcap, &fwd);
    require(n <= outcap);
    require(fwd.a == NULL); /* no allocation can exist: nothing to forward */
    uint64_t moved = 0;
    for (int i = 0; i < SRV_C_COUNT; i++)
        moved += server.c.v[i] - before.v[i];
    require(moved >= 1); /* every message is counted somewhere */
    if (n) {
        struct stun_msg r;
        require(stun_decode(&r, out, n) == 0);
        require(inlen >= STUN_HEADER_LEN && memcmp(r.tid, in + 8, STUN_TID_LEN) == 0);
        uint16_t in_type = (uint16_t)(in[0] << 8 | in[1]);
        require(stun_class_of(in_type) == STUN_REQUEST);
        require(stun_method_of(r.type) == stun_method_of(in_type));
        require(stun_check_fingerprint(&r) != STUN_E_BAD_FINGERPRINT);
        require(r.nunknown == 0);
        if (!decoded) require(n <= inlen); /* no amplification on garbage */
        if (stun_class_of(r.type) == STUN_SUCCESS) {
            union stun_addr a;
            const struct stun_attr *x = stun_find(&r, STUN_ATTR_XOR_MAPPED_ADDRESS);
            require(x && stun_get_xor_addr(&r, x, &a) == 0 && addr_equal(&a, &t->client));
        } else {
            require(stun_class_of(r.type) == STUN_ERROR);
            int code = 0;
            const char *reason;
            size_t rlen;
            const struct stun_attr *ec = stun_find(&r, STUN_ATTR_ERROR_CODE);
            require(ec && stun_get_error(ec, &code, &reason, &rlen) == 0);
            require(code >= 300 && code <= 699);
        }
    }
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct srv_tuple t4, t6;
    static bool init;
    if (!init) {
        server_init();
        t4 = make_tuple(AF_INET);
        t6 = make_tuple(AF_INET6);
        init = true;
    }
    uint8_t *buf = malloc(size);
    if (!buf) return 0;
    memcpy(buf, data, size);
    struct stun_msg m;
    bool decoded = stun_decode(&m, buf, size) == 0;
    run(&t4, buf, size, 1280, decoded);
    run(&t6, buf, size, 1500, decoded);
    run(&t6, buf, size, 48, decoded); /* tight: most answers do not fit */
    /* RFC 6062 with several workers: whose CONNECTION-ID a ConnectionBind names. Never this
     * server's own index nor one past the workers; never over UDP (nothing is handed over). */
    server.worker = (uint8_t)(size & 3);
    int owner = srv_connection_bind_owner(&server, &t6, buf, size, 4);
    require(owner == -1 || (owner >= 0 && owner < 4 && owner != server.worker));
    if (owner >= 0) require(decoded && stun_method_of(m.type) == STUN_CONNECTION_BIND);
    require(srv_connection_bind_owner(&server, &t4, buf, size, 4) == -1);
    require(srv_connection_bind_owner(&server, &t6, buf, size, 1) == -1);
    /* RFC 8016 with several workers: whose MOBILITY-TICKET a Refresh carries. Over UDP only,
     * never this server's own index nor one past the workers. */
    owner = srv_mobility_owner(&server, &t4, buf, size, 4);
    require(owner == -1 || (owner >= 0 && owner < 4 && owner != server.worker));
    if (owner >= 0)
        require(decoded && m.type == stun_type(STUN_REFRESH, STUN_REQUEST) &&
                stun_find(&m, STUN_ATTR_MOBILITY_TICKET));
    require(srv_mobility_owner(&server, &t6, buf, size, 4) == -1); /* TCP */
    require(srv_mobility_owner(&server, &t4, buf, size, 1) == -1);
    server.worker = 0;
    free(buf);
    return 0;
}
