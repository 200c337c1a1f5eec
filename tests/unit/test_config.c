/* test_config.c: unit tests of the YAML configuration parser (relay/config.c).
 *
 * Run one test by name: `test_config cidr_parsing_and_masking` or CMOCKA_FILTER='ops_*' test_config
 * (cmocka's own env only knows CMOCKA_TEST_ABORT=1, which stops at the first failure, and
 * CMOCKA_MESSAGE_OUTPUT; the filter is passed to cmocka_set_test_filter below). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

#ifndef TERN_SOURCE_DIR
#error "the build defines TERN_SOURCE_DIR (the source root)"
#endif

/* Parse text as file "t.yaml"; *msgs gets everything written to err (caller frees). */
static int parse(struct tern_config *c, const char *text, char **msgs)
{
    size_t size;
    FILE *err = open_memstream(msgs, &size);
    int rc;

    assert_non_null(err);
    rc = cfg_parse(c, "t.yaml", text, strlen(text), err);
    fclose(err);
    return rc;
}

/* A failed parse leaves the struct all zero (nothing to leak, nothing half-set). */
static void assert_zeroed(const struct tern_config *c)
{
    struct tern_config zero;

    memset(&zero, 0, sizeof zero);
    assert_memory_equal(c, &zero, sizeof zero);
}

#define assert_prefix(s, prefix) assert_true(strncmp((s), (prefix), strlen(prefix)) == 0)

static int count_lines(const char *s)
{
    int n = 0;

    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static void assert_ip(const union stun_addr *a, const char *ip, unsigned port)
{
    char buf[INET6_ADDRSTRLEN] = "";

    if (a->sa.sa_family == AF_INET) {
        inet_ntop(AF_INET, &a->v4.sin_addr, buf, sizeof buf);
        assert_int_equal(ntohs(a->v4.sin_port), port);
    } else {
        assert_int_equal(a->sa.sa_family, AF_INET6);
        inet_ntop(AF_INET6, &a->v6.sin6_addr, buf, sizeof buf);
        assert_int_equal(ntohs(a->v6.sin6_port), port);
    }
    assert_string_equal(buf, ip);
}

/* The documented defaults, whether they came from tern.yaml or from the key tables. */
static void assert_defaults(const struct tern_config *c)
{
    assert_string_equal(c->realm, "tern");
    assert_string_equal(c->software, "");
    assert_int_equal(c->workers, 0);
    assert_int_equal(c->nlisten, 2);
    assert_int_equal(c->listen[0].transport, CFG_UDP);
    assert_ip(&c->listen[0].addr, "0.0.0.0", 3478);
    assert_int_equal(c->listen[1].transport, CFG_TCP);
    assert_ip(&c->listen[1].addr, "0.0.0.0", 3478);
    assert_null(c->tls_certificate);
    assert_null(c->tls_private_key);
    assert_int_equal(c->nrelay_addresses, 1);
    assert_ip(&c->relay_addresses[0], "0.0.0.0", 0);
    assert_int_equal(c->relay_external.sa.sa_family, AF_UNSPEC);
    assert_int_equal(c->port_min, 49152);
    assert_int_equal(c->port_max, 65535);
    assert_int_equal(c->default_lifetime, 600);
    assert_int_equal(c->max_lifetime, 3600);
    assert_int_equal(c->max_per_user, 0); /* unlimited */
    assert_int_equal(c->max_total, 100000);
    assert_false(c->strict_channel_numbers);
    assert_false(c->allow_loopback);
    assert_true(c->allow_relay_to_relay);
    assert_int_equal(c->npeers_allow, 0);
    assert_int_equal(c->npeers_deny, 0);
    assert_null(c->database); /* no credential database unless configured */
    assert_int_equal(c->nusers, 0);
    assert_int_equal(c->nsecrets, 0);
    assert_int_equal(c->nonce_lifetime, 600);
    assert_ip(&c->ops_listen, "127.0.0.1", 9641);
    assert_null(c->ops_token);
    assert_true(c->qos_enabled);
    assert_null(c->qos_record_file);
    assert_int_equal(c->log_level, CFG_LOG_INFO);
    assert_int_equal(c->log_format, CFG_LOG_TEXT);
}

static void embedded_default(void **state)
{
    struct tern_config c;
    char *msgs;

    (void)state;
    assert_int_equal(parse(&c, cfg_default_yaml, &msgs), 0);
    assert_string_equal(msgs, "");
    assert_defaults(&c);
    cfg_free(&c);
    free(msgs);
}

/* An empty file means "all defaults": the tables and tern.yaml must agree. */
static void empty_document_is_default(void **state)
{
    static const char *const empties[] = {"", "# nothing\n", "~\n", "---\n"};
    struct tern_config c;
    char *msgs;

    (void)state;
    for (size_t i = 0; i < sizeof empties / sizeof empties[0]; i++) {
        assert_int_equal(parse(&c, empties[i], &msgs), 0);
        assert_string_equal(msgs, "");
        assert_defaults(&c);
        cfg_free(&c);
        free(msgs);
    }
}

static void null_sections_take_defaults(void **state)
{
    struct tern_config c;
    char *msgs;

    (void)state;
    assert_int_equal(
        parse(&c, "server:\ntls:\nrelay:\nallocation:\npeers:\nauth:\nqos:\nops:\nlog:\n", &msgs),
        0);
    assert_string_equal(msgs, "");
    assert_defaults(&c);
    cfg_free(&c);
    free(msgs);
}

static void load_tern_yaml(void **state)
{
    struct tern_config c;

    (void)state;
    assert_int_equal(cfg_load(&c, TERN_SOURCE_DIR "/configs/tern.yaml", stderr), 0);
    assert_defaults(&c);
    cfg_free(&c);
}

static void load_minimal_yaml(void **state)
{
    struct tern_config c;

    (void)state;
    assert_int_equal(cfg_load(&c, TERN_SOURCE_DIR "/configs/minimal.yaml", stderr), 0);
    assert_string_equal(c.realm, "example.org");
    assert_int_equal(c.nlisten, 1);
    assert_int_equal(c.listen[0].transport, CFG_UDP);
    assert_ip(&c.listen[0].addr, "127.0.0.1", 3478);
    assert_int_equal(c.nusers, 1);
    assert_string_equal(c.users[0].name, "alice");
    assert_true(strlen(c.users[0].password) > 0);
    cfg_free(&c);
}

static void full_config(void **state)
{
    static const char yaml[] =
        "server: { realm: example.org, software: \"tern 0.1\", workers: 4 }\n"
        "listen:\n"
        "  - { transport: udp, address: \"::\", port: 0 }\n"
        "  - { transport: tls, address: 192.0.2.1 }\n"
        "  - transport: tcp\n"
        "    address: 2001:db8::1\n"
        "    port: 443\n"
        "tls: { certificate: /etc/tern/cert.pem, private_key: /etc/tern/key.pem }\n"
        "relay:\n"
        "  addresses: [192.0.2.1, \"2001:db8::1\"]\n"
        "  external_address: 203.0.113.7\n"
        "  ports: { min: 1024, max: 1024 }\n"
        "allocation: { default_lifetime: 60, max_lifetime: 60, max_per_user: 1, max_total: 1,\n"
        "              strict_channel_numbers: true }\n"
        "peers: { allow_loopback: true, allow_relay_to_relay: false, allow: [10.1.0.0/16], deny: "
        "[\"2001:db8::/32\"] }\n"
        "auth:\n"
        "  database: /var/lib/tern/tern.db\n"
        "  users:\n"
        "    - { name: alice, password: s3cret }\n"
        "    - { name: bob, password: \"1234\" }\n"
        "  secrets: [north, 'south']\n"
        "  nonce_lifetime: 10\n"
        "ops: { listen: \"[::1]:0\", token: t0k3n }\n"
        "log: { level: debug, format: json }\n";
    struct tern_config c;
    char *msgs;

    (void)state;
    assert_int_equal(parse(&c, yaml, &msgs), 0);
    assert_string_equal(msgs, "");
    assert_string_equal(c.realm, "example.org");
    assert_string_equal(c.software, "tern 0.1");
    assert_int_equal(c.workers, 4);
    assert_int_equal(c.nlisten, 3);
    assert_ip(&c.listen[0].addr, "::", 0);
    assert_int_equal(c.listen[1].transport, CFG_TLS);
    assert_ip(&c.listen[1].addr, "192.0.2.1", 5349); /* tls without a port: 5349 */
    assert_int_equal(c.listen[2].transport, CFG_TCP);
    assert_ip(&c.listen[2].addr, "2001:db8::1", 443);
    assert_string_equal(c.tls_certificate, "/etc/tern/cert.pem");
    assert_string_equal(c.tls_private_key, "/etc/tern/key.pem");
    assert_int_equal(c.nrelay_addresses, 2);
    assert_ip(&c.relay_addresses[1], "2001:db8::1", 0);
    assert_ip(&c.relay_external, "203.0.113.7", 0);
    assert_int_equal(c.port_min, 1024);
    assert_int_equal(c.port_max, 1024);
    assert_int_equal(c.default_lifetime, 60);
    assert_int_equal(c.max_lifetime, 60);
    assert_int_equal(c.max_per_user, 1);
    assert_int_equal(c.max_total, 1);
    assert_true(c.strict_channel_numbers);
    assert_true(c.allow_loopback);
    assert_false(c.allow_relay_to_relay);
    assert_int_equal(c.npeers_allow, 1);
    assert_int_equal(c.peers_allow[0].prefix, 16);
    assert_int_equal(c.npeers_deny, 1);
    assert_int_equal(c.peers_deny[0].prefix, 32);
    assert_string_equal(c.database, "/var/lib/tern/tern.db");
    assert_int_equal(c.nusers, 2);
    assert_string_equal(c.users[1].name, "bob");
    assert_string_equal(c.users[1].password, "1234");
    assert_int_equal(c.nsecrets, 2);
    assert_string_equal(c.secrets[0], "north");
    assert_string_equal(c.secrets[1], "south");
    assert_int_equal(c.nonce_lifetime, 10);
    assert_ip(&c.ops_listen, "::1", 0);
    assert_string_equal(c.ops_token, "t0k3n");
    assert_int_equal(c.log_level, CFG_LOG_DEBUG);
    assert_int_equal(c.log_format, CFG_LOG_JSON);
    cfg_free(&c);
    free(msgs);
}

/* Each input has exactly one problem; the message must start "t.yaml:LINE: KEY: " and
 * mention the given text (the bad value or what is allowed). */
struct bad {
    const char *yaml;
    const char *prefix;
    const char *mentions;
};

static const struct bad bad_inputs[] = {
    {"relay:\n  ports:\n    min: 70000\n",
     "t.yaml:3: relay.ports.min: ", "70000 is out of range (1024-65535)"},
    {"relay: { ports: { min: 1023 } }\n", "t.yaml:1: relay.ports.min: ", "1023"},
    {"relay: { ports: { min: 60000, max: 50000 } }\n",
     "t.yaml:1: relay.ports.min: ", "greater than relay.ports.max"},
    {"relay: { ports: { max: 40000 } }\n", "t.yaml:1: relay.ports.min: ", "49152"},
    {"relay: { ports: 5 }\n", "t.yaml:1: relay.ports: ", "expected a mapping"},
    {"relay: { addresses: [] }\n", "t.yaml:1: relay.addresses: ", "at least one"},
    {"relay: { addresses: [1.2.3.4, 1.2.3.4] }\n",
     "t.yaml:1: relay.addresses[1]: ", "listed twice"},
    {"relay: { addresses: [localhost] }\n", "t.yaml:1: relay.addresses[0]: ", "\"localhost\""},
    {"relay: { addresses: 1.2.3.4 }\n", "t.yaml:1: relay.addresses: ", "expected a list"},
    {"relay:\n  external_address: 300.1.1.1\n", "t.yaml:2: relay.external_address: ", "300.1.1.1"},
    {"server: { workers: 0 }\n", "t.yaml:1: server.workers: ", "auto or 1-256"},
    {"server: { workers: 257 }\n", "t.yaml:1: server.workers: ", "257"},
    {"server: { workers: many }\n", "t.yaml:1: server.workers: ", "\"many\""},
    {"server: { workers: \"4\" }\n", "t.yaml:1: server.workers: ", "expected auto or 1-256"},
    {"server: { realm: \"\" }\n", "t.yaml:1: server.realm: ", "empty"},
    {"server: { realm: [a] }\n", "t.yaml:1: server.realm: ", "expected a string, got a list"},
    {"server:\n  realm:\n", "t.yaml:2: server.realm: ", "got null"},
    {"server: { software: ~ }\n", "t.yaml:1: server.software: ", "got null"},
    {"server: { realm: \"a\\0b\" }\n", "t.yaml:1: server.realm: ", "NUL"},
    {"server: 5\n", "t.yaml:1: server: ", "expected a mapping"},
    {"listen: []\n", "t.yaml:1: listen: ", "at least one listener"},
    {"listen:\n", "t.yaml:1: listen: ", "got null"},
    {"listen: { transport: udp }\n", "t.yaml:1: listen: ", "expected a list"},
    {"listen:\n  - { transport: udp, port: 1 }\n  - { transport: sctp, port: 2 }\n",
     "t.yaml:3: listen[1].transport: ", "one of udp, tcp, tls, tcp+tls, dtls, got \"sctp\""},
    {"listen:\n  - { transport: udp, port: 65536 }\n",
     "t.yaml:2: listen[0].port: ", "65536 is out of range (0-65535)"},
    {"listen:\n  - { transport: udp, port: -1 }\n", "t.yaml:2: listen[0].port: ", "-1"},
    {"listen:\n  - { transport: udp, port: 1.5 }\n", "t.yaml:2: listen[0].port: ", "1.5"},
    {"listen:\n  - { transport: udp, address: 1.2.3, port: 1 }\n",
     "t.yaml:2: listen[0].address: ", "\"1.2.3\""},
    {"listen:\n  - { transport: udp, adress: 1.2.3.4 }\n",
     "t.yaml:2: listen[0].adress: ", "unknown key"},
    {"listen:\n  - udp\n", "t.yaml:2: listen[0]: ", "expected a mapping"},
    {"listen:\n  - { transport: tcp, port: 5000 }\n  - { transport: tls, port: 5000 }\n"
     "tls: { certificate: c, private_key: k }\n",
     "t.yaml:3: listen[1]: ", "listed twice (also listen[0] at line 2)"},
    {"listen:\n  - { transport: tls }\ntls: { certificate: c.pem }\n",
     "t.yaml:2: tls.private_key: ", "listen[0]"},
    {"tls: { certificate: \"\" }\n", "t.yaml:1: tls.certificate: ", "empty"},
    {"allocation: { default_lifetime: 0 }\n",
     "t.yaml:1: allocation.default_lifetime: ", "0 is out of range (1-86400)"},
    {"allocation: { max_lifetime: 86401 }\n", "t.yaml:1: allocation.max_lifetime: ", "86401"},
    {"allocation:\n  max_lifetime: 300\n", "t.yaml:2: allocation.default_lifetime: ",
     "600 is greater than allocation.max_lifetime (300)"},
    {"allocation: { max_per_user: 0 }\n", "t.yaml:1: allocation.max_per_user: ", "0"},
    {"allocation: { max_total: 4294967296 }\n", "t.yaml:1: allocation.max_total: ", "4294967296"},
    {"allocation: { max_total: 99999999999999999999999 }\n",
     "t.yaml:1: allocation.max_total: ", "out of range"},
    {"allocation:\n  strict_channel_numbers: yes\n",
     "t.yaml:2: allocation.strict_channel_numbers: ", "true or false"},
    {"peers: { allow_loopback: 1 }\n", "t.yaml:1: peers.allow_loopback: ", "true or false"},
    {"peers: { allow: [10.0.0.0/33] }\n", "t.yaml:1: peers.allow[0]: ", "0-32"},
    {"peers: { deny: [\"fc00::/129\"] }\n", "t.yaml:1: peers.deny[0]: ", "0-128"},
    {"peers: { deny: [10.0.0.0/] }\n", "t.yaml:1: peers.deny[0]: ", "prefix"},
    {"peers: { deny: [10.0.0.0/-1] }\n", "t.yaml:1: peers.deny[0]: ", "prefix"},
    {"peers: { deny: [example.com/8] }\n", "t.yaml:1: peers.deny[0]: ", "example.com"},
    {"peers: { deny: 10.0.0.0/8 }\n", "t.yaml:1: peers.deny: ", "expected a list"},
    {"auth: { nonce_lifetime: 9 }\n", "t.yaml:1: auth.nonce_lifetime: ", "(10-86400)"},
    {"auth: { database: \"\" }\n", "t.yaml:1: auth.database: ", "empty"},
    {"auth:\n  users:\n    - { name: alice }\n", "t.yaml:3: auth.users[0].password: ", "missing"},
    {"auth:\n  users:\n    - { password: x }\n", "t.yaml:3: auth.users[0].name: ", "missing"},
    {"auth:\n  users:\n    - { name: \"\", password: x }\n",
     "t.yaml:3: auth.users[0].name: ", "empty"},
    {"auth:\n  users:\n    - { name: a, password: \"\" }\n",
     "t.yaml:3: auth.users[0].password: ", "empty"},
    {"auth:\n  users:\n    - { name: a, password: x, role: admin }\n",
     "t.yaml:3: auth.users[0].role: ", "unknown key"},
    {"auth:\n  users:\n    - { name: a, password: x }\n    - { name: a, password: y }\n",
     "t.yaml:4: auth.users[1]: ", "user \"a\" is listed twice"},
    {"auth:\n  users:\n    - alice\n", "t.yaml:3: auth.users[0]: ", "expected a mapping"},
    {"auth:\n  secrets: [a, \"\"]\n", "t.yaml:2: auth.secrets[1]: ", "empty"},
    {"auth:\n  secrets: [[a]]\n", "t.yaml:2: auth.secrets[0]: ", "got a list"},
    {"ops: { listen: 127.0.0.1 }\n", "t.yaml:1: ops.listen: ", "ADDRESS:PORT"},
    {"ops: { listen: \"::1:9641\" }\n", "t.yaml:1: ops.listen: ", "ADDRESS:PORT"},
    {"ops: { listen: \"[127.0.0.1]:9641\" }\n", "t.yaml:1: ops.listen: ", "bracketed"},
    {"ops: { listen: \"localhost:9641\" }\n", "t.yaml:1: ops.listen: ", "\"localhost\""},
    {"ops: { listen: \"127.0.0.1:65536\" }\n", "t.yaml:1: ops.listen: ", "65536"},
    {"ops: { listen: \"[::1]:\" }\n", "t.yaml:1: ops.listen: ", "ADDRESS:PORT"},
    {"ops: { listen: \"0.0.0.0:3478\" }\n", "t.yaml:1: ops.listen: ", "listen[1]"},
    {"ops: { token: \"\" }\n", "t.yaml:1: ops.token: ", "use null"},
    {"log: { level: verbose }\n", "t.yaml:1: log.level: ", "debug, info, warn, error"},
    {"log: { format: xml }\n", "t.yaml:1: log.format: ", "text, json"},
    {"log: { level: INFO }\n", "t.yaml:1: log.level: ", "\"INFO\""},
    {"- server\n", "t.yaml:1: (top level): ", "expected a mapping"},
    {"[a]: 1\n", "t.yaml:1: (top level): ", "keys must be plain"},
    {"server: {}\n---\nlog: {}\n", "t.yaml:3: (top level): ", "one YAML document"},
};

static void bad_input_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof bad_inputs / sizeof bad_inputs[0]; i++) {
        const struct bad *b = &bad_inputs[i];
        struct tern_config c;
        char *msgs;
        int rc = parse(&c, b->yaml, &msgs);

        if (rc != -1 || strncmp(msgs, b->prefix, strlen(b->prefix)) != 0 ||
            !strstr(msgs, b->mentions) || count_lines(msgs) != 1)
            fail_msg("input %zu:\n%s\nwant: %s...%s\ngot (rc %d):\n%s", i, b->yaml, b->prefix,
                     b->mentions, rc, msgs);
        assert_zeroed(&c);
        free(msgs);
    }
}

static void multiple_errors_in_one_run(void **state)
{
    static const char yaml[] = "server:\n"
                               "  workers: 0\n" /* 2 */
                               "relay:\n"
                               "  ports:\n"
                               "    min: 70000\n" /* 5 */
                               "    max: 1\n"     /* 6 */
                               "log:\n"
                               "  level: loud\n"   /* 8 */
                               "  colour: true\n"; /* 9 */
    struct tern_config c;
    char *msgs;

    (void)state;
    assert_int_equal(parse(&c, yaml, &msgs), -1);
    assert_int_equal(count_lines(msgs), 5);
    assert_non_null(strstr(msgs, "t.yaml:2: server.workers: "));
    assert_non_null(strstr(msgs, "t.yaml:5: relay.ports.min: 70000 is out of range (1024-65535)"));
    assert_non_null(strstr(msgs, "t.yaml:6: relay.ports.max: 1 is out of range (1024-65535)"));
    assert_non_null(strstr(msgs, "t.yaml:8: log.level: "));
    assert_non_null(strstr(msgs, "t.yaml:9: log.colour: unknown key"));
    assert_zeroed(&c);
    free(msgs);
}

static void unknown_key(void **state)
{
    struct tern_config c;
    char *msgs;

    (void)state;
    assert_int_equal(parse(&c, "server:\n  realm: a\n  relm: b\nmetrics: {}\n", &msgs), -1);
    assert_non_null(strstr(msgs, "t.yaml:3: server.relm: unknown key (expected one of: realm, "
                                 "software, workers, user, group)\n"));
    assert_non_null(strstr(msgs, "t.yaml:4: metrics: unknown key"));
    assert_int_equal(count_lines(msgs), 2);
    free(msgs);
}

static void duplicate_key(void **state)
{
    struct tern_config c;
    char *msgs;

    (void)state;
    assert_int_equal(parse(&c, "server:\n  realm: a\n  realm: b\nlog: {}\nlog: {}\n", &msgs), -1);
    assert_non_null(strstr(msgs, "t.yaml:3: server.realm: duplicate key (first at line 2)\n"));
    assert_non_null(strstr(msgs, "t.yaml:5: log: duplicate key (first at line 4)\n"));
    assert_int_equal(count_lines(msgs), 2);
    assert_zeroed(&c);
    free(msgs);
}

static void yaml_syntax_error(void **state)
{
    static const char *const broken[] = {"server:\n  realm: a\n bad: [\n", "server:\n\trealm: a\n",
                                         "server: {realm: a\n", "log: *undefined\n",
                                         "server: \"unterminated\n"};
    struct tern_config c;
    char *msgs;

    (void)state;
    for (size_t i = 0; i < sizeof broken / sizeof broken[0]; i++) {
        assert_int_equal(parse(&c, broken[i], &msgs), -1);
        assert_prefix(msgs, "t.yaml:");
        assert_non_null(strstr(msgs, ": syntax error: "));
        assert_zeroed(&c);
        free(msgs);
    }
    assert_int_equal(parse(&c, "server:\n  realm: a\n bad: [\n", &msgs), -1);
    assert_prefix(msgs, "t.yaml:3: syntax error: ");
    free(msgs);
    assert_int_equal(parse(&c, "server:\n\trealm: a\n", &msgs), -1);
    assert_prefix(msgs, "t.yaml:2: syntax error: ");
    free(msgs);
}

static void invalid_utf8(void **state)
{
    struct tern_config c;
    char *msgs;

    (void)state;
    assert_int_equal(parse(&c, "log: {}\nserver: { realm: \"\xff\" }\n", &msgs), -1);
    assert_prefix(msgs, "t.yaml:2: syntax error: ");
    free(msgs);
}

static void missing_file_names_it(void **state)
{
    struct tern_config c;
    char *msgs;
    size_t size;
    FILE *err = open_memstream(&msgs, &size);

    (void)state;
    assert_int_equal(cfg_load(&c, "/nonexistent/dir/tern.yaml", err), -1);
    fclose(err);
    assert_prefix(msgs, "/nonexistent/dir/tern.yaml: ");
    assert_non_null(strstr(msgs, "No such file"));
    assert_zeroed(&c);
    free(msgs);
}

static void load_reports_file_name_and_line(void **state)
{
    char path[] = "/tmp/test_config_XXXXXX";
    int fd = mkstemp(path);
    static const char yaml[] = "server:\n  realm: a\nrelay: { ports: { min: 80 } }\n";
    struct tern_config c;
    char *msgs, want[128];
    size_t size;
    FILE *err;

    (void)state;
    assert_true(fd >= 0);
    assert_int_equal(write(fd, yaml, sizeof yaml - 1), (ssize_t)(sizeof yaml - 1));
    close(fd);
    err = open_memstream(&msgs, &size);
    assert_int_equal(cfg_load(&c, path, err), -1);
    fclose(err);
    unlink(path);
    snprintf(want, sizeof want, "%s:3: relay.ports.min: 80 is out of range (1024-65535)\n", path);
    assert_string_equal(msgs, want);
    free(msgs);
}

static void cidr_parsing_and_masking(void **state)
{
    static const char yaml[] = "peers:\n"
                               "  allow: [10.1.2.3/8, 192.0.2.77, \"fc00::1:2/7\", 0.0.0.0/0,\n"
                               "          \"2001:db8:ffff::/33\", 172.16.255.255/12]\n"
                               "  deny: [\"::1\", 198.51.100.255/31]\n";
    struct tern_config c;
    char *msgs;

    (void)state;
    assert_int_equal(parse(&c, yaml, &msgs), 0);
    assert_string_equal(msgs, "");
    assert_int_equal(c.npeers_allow, 6);
    assert_ip(&c.peers_allow[0].addr, "10.0.0.0", 0);
    assert_int_equal(c.peers_allow[0].prefix, 8);
    assert_ip(&c.peers_allow[1].addr, "192.0.2.77", 0); /* a bare address: /32 */
    assert_int_equal(c.peers_allow[1].prefix, 32);
    assert_ip(&c.peers_allow[2].addr, "fc00::", 0);
    assert_int_equal(c.peers_allow[2].prefix, 7);
    assert_ip(&c.peers_allow[3].addr, "0.0.0.0", 0);
    assert_int_equal(c.peers_allow[3].prefix, 0);
    assert_ip(&c.peers_allow[4].addr, "2001:db8:8000::", 0);
    assert_int_equal(c.peers_allow[4].prefix, 33);
    assert_ip(&c.peers_allow[5].addr, "172.16.0.0", 0);
    assert_int_equal(c.peers_allow[5].prefix, 12);
    assert_int_equal(c.npeers_deny, 2);
    assert_ip(&c.peers_deny[0].addr, "::1", 0);
    assert_int_equal(c.peers_deny[0].prefix, 128);
    assert_ip(&c.peers_deny[1].addr, "198.51.100.254", 0);
    assert_int_equal(c.peers_deny[1].prefix, 31);
    cfg_free(&c);
    free(msgs);
}

/* After masking, 10.1.2.3/8 and 10.0.0.0/8 are the same network. */
static void cidr_duplicates_after_masking(void **state)
{
    struct tern_config c;
    char *msgs;

    (void)state;
    assert_int_equal(parse(&c, "peers:\n  deny: [10.1.2.3/8, 10.0.0.0/8]\n", &msgs), -1);
    assert_string_equal(msgs, "t.yaml:2: peers.deny[1]: 10.0.0.0/8 is listed twice "
                              "(also peers.deny[0] at line 2)\n");
    free(msgs);
}

static void ops_listen_forms(void **state)
{
    struct tern_config c;
    char *msgs;

    (void)state;
    assert_int_equal(parse(&c, "ops: { listen: \"0.0.0.0:80\" }\n", &msgs), 0);
    assert_ip(&c.ops_listen, "0.0.0.0", 80);
    cfg_free(&c);
    free(msgs);

    assert_int_equal(parse(&c, "ops:\n  listen: 127.0.0.1:9641\n", &msgs), 0);
    assert_ip(&c.ops_listen, "127.0.0.1", 9641);
    cfg_free(&c);
    free(msgs);

    assert_int_equal(parse(&c, "ops: { listen: \"[::1]:9641\" }\n", &msgs), 0);
    assert_ip(&c.ops_listen, "::1", 9641);
    cfg_free(&c);
    free(msgs);

    assert_int_equal(parse(&c, "ops: { listen: \"[2001:db8::5]:65535\" }\n", &msgs), 0);
    assert_ip(&c.ops_listen, "2001:db8::5", 65535);
    cfg_free(&c);
    free(msgs);

    static const char *const nulls[] = {"ops: { listen: null }\n", "ops: { listen: ~ }\n",
                                        "ops:\n  listen:\n"};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(parse(&c, nulls[i], &msgs), 0);
        assert_string_equal(msgs, "");
        assert_int_equal(c.ops_listen.sa.sa_family, AF_UNSPEC);
        cfg_free(&c);
        free(msgs);
    }
}

static void nullable_keys(void **state)
{
    static const char yaml[] = "tls: { certificate: null, private_key: ~ }\n"
                               "relay:\n  external_address:\n"
                               "ops: { listen: null, token: null }\n"
                               "peers: { allow: null, deny: }\n"
                               "auth: { users: ~, secrets: [] }\n";
    struct tern_config c;
    char *msgs;

    (void)state;
    assert_int_equal(parse(&c, yaml, &msgs), 0);
    assert_string_equal(msgs, "");
    assert_null(c.tls_certificate);
    assert_null(c.tls_private_key);
    assert_int_equal(c.relay_external.sa.sa_family, AF_UNSPEC);
    assert_null(c.ops_token);
    assert_int_equal(c.npeers_allow + c.npeers_deny + c.nusers + c.nsecrets, 0);
    cfg_free(&c);
    free(msgs);
}

/* qos: the tap switch and the quality record file. */
static void qos_section(void **state)
{
    struct tern_config c;
    char *msgs;

    (void)state;
    assert_int_equal(
        parse(&c, "qos: { enabled: false, record_file: /var/log/tern/calls.jsonl }\n", &msgs), 0);
    assert_string_equal(msgs, "");
    assert_false(c.qos_enabled);
    assert_string_equal(c.qos_record_file, "/var/log/tern/calls.jsonl");
    cfg_free(&c);
    free(msgs);
    assert_int_equal(
        parse(&c, "qos:\n  enabled: maybe\n  record_file: \"\"\n  interval: 5\n", &msgs), -1);
    assert_non_null(strstr(msgs, "qos.enabled"));
    assert_non_null(strstr(msgs, "qos.record_file"));
    assert_non_null(strstr(msgs, "qos.interval: unknown key"));
    free(msgs);

    /* timelines, thresholds and the webhook */
    assert_int_equal(parse(&c, "qos: {}\n", &msgs), 0);
    assert_int_equal(c.qos_timeline_minutes, 10);
    assert_true(c.qos_thr_loss == 0.01);
    assert_int_equal(c.qos_thr_jitter_ms, 30);
    assert_int_equal(c.qos_thr_rtt_ms, 300);
    assert_null(c.qos_webhook);
    cfg_free(&c);
    free(msgs);
    assert_int_equal(parse(&c,
                           "qos:\n  timeline: { minutes: 0 }\n"
                           "  thresholds: { loss: 0.05, jitter_ms: 0, rtt_ms: 150 }\n"
                           "  webhook: http://127.0.0.1:8080/tern\n",
                           &msgs),
                     0);
    assert_string_equal(msgs, "");
    assert_int_equal(c.qos_timeline_minutes, 0);
    assert_true(c.qos_thr_loss == 0.05);
    assert_int_equal(c.qos_thr_jitter_ms, 0);
    assert_int_equal(c.qos_thr_rtt_ms, 150);
    assert_string_equal(c.qos_webhook, "http://127.0.0.1:8080/tern");
    cfg_free(&c);
    free(msgs);
    assert_int_equal(parse(&c, "qos: { thresholds: { loss: 1 } }\n", &msgs), 0);
    assert_true(c.qos_thr_loss == 1.0);
    cfg_free(&c);
    free(msgs);
    assert_int_equal(parse(&c,
                           "qos:\n  timeline: { minutes: 61, interval: 10 }\n"
                           "  thresholds: { loss: 2, jitter_ms: -1, rtt_ms: fast }\n"
                           "  webhook: ftp://x\n",
                           &msgs),
                     -1);
    assert_non_null(strstr(msgs, "qos.timeline.minutes: 61 is out of range (0-60)"));
    assert_non_null(strstr(msgs, "qos.timeline.interval: unknown key"));
    assert_non_null(strstr(msgs, "qos.thresholds.loss: 2 is out of range (0-1"));
    assert_non_null(strstr(msgs, "qos.thresholds.jitter_ms"));
    assert_non_null(strstr(msgs, "qos.thresholds.rtt_ms"));
    assert_non_null(strstr(msgs, "qos.webhook: expected an http:// or https:// URL"));
    free(msgs);
    assert_int_equal(
        parse(&c, "qos: { thresholds: { loss: \"1%\" }, webhook: \"http://a b\" }\n", &msgs), -1);
    assert_non_null(strstr(msgs, "qos.thresholds.loss: expected a number (0-1)"));
    assert_non_null(strstr(msgs, "qos.webhook: a URL has no spaces"));
    free(msgs);
}

/* qos.record_database, its queue and cluster.node_id. */
static void record_database_keys(void **state)
{
    struct tern_config c;
    char *msgs;
    (void)state;
    assert_int_equal(parse(&c, "qos: {}\n", &msgs), 0);
    assert_false(c.qos_record_database);
    assert_int_equal(c.qos_record_database_queue, 4096);
    assert_null(c.cluster_node_id);
    cfg_free(&c);
    free(msgs);
    assert_int_equal(parse(&c,
                           "auth: { database: \"postgresql://tern@/tern?host=/run/pg\" }\n"
                           "qos: { record_database: true, record_database_queue: 8 }\n"
                           "cluster: { node_id: relay-eu-1 }\n",
                           &msgs),
                     0);
    assert_string_equal(msgs, "");
    assert_true(c.qos_record_database);
    assert_int_equal(c.qos_record_database_queue, 8);
    assert_string_equal(c.cluster_node_id, "relay-eu-1");
    cfg_free(&c);
    free(msgs);
    /* a SQLite file, or no database at all: refused, saying why */
    assert_int_equal(
        parse(&c, "auth: { database: /var/lib/tern/tern.db }\nqos: { record_database: true }\n",
              &msgs),
        -1);
    assert_non_null(strstr(msgs, "qos.record_database: call records need a PostgreSQL "
                                 "auth.database (a postgresql:// URI), not a SQLite file"));
    free(msgs);
    assert_int_equal(parse(&c,
                           "qos: { record_database: true, record_database_queue: 0 }\n"
                           "cluster: { node_id: \"a\\tb\", region: x }\n",
                           &msgs),
                     -1);
    assert_non_null(strstr(msgs, "qos.record_database: call records need a PostgreSQL "
                                 "auth.database (a postgresql:// URI); there is none"));
    assert_non_null(strstr(msgs, "qos.record_database_queue: 0 is out of range"));
    assert_non_null(strstr(msgs, "cluster.region: unknown key"));
    free(msgs);
    assert_int_equal(parse(&c, "cluster: { node_id: \"a\\tb\" }\n", &msgs), -1);
    assert_non_null(strstr(msgs, "cluster.node_id: control characters"));
    free(msgs);
}

/* The fleet's keys (docs/fleet.md): defaults, a full set, and each refusal. */
static void fleet_keys(void **state)
{
    struct tern_config c;
    char *msgs;
    (void)state;
    assert_int_equal(parse(&c, "cluster: {}\n", &msgs), 0);
    assert_int_equal(c.cluster_heartbeat, 2);
    assert_int_equal(c.cluster_dead_after, 10);
    assert_false(c.cluster_redirect);
    assert_int_equal(c.cluster_max_allocations, 0);
    assert_true(c.cluster_max_cpu == 0);
    assert_null(c.cluster_domain);
    assert_true(c.cluster_shared_nonce);
    assert_int_equal(c.cluster_nonce_rotation, 3600);
    assert_int_equal(c.max_per_user_fleet, 0);
    cfg_free(&c);
    free(msgs);
    assert_int_equal(parse(&c,
                           "auth: { database: \"postgresql://tern@/tern?host=/run/pg\" }\n"
                           "allocation: { max_per_user_fleet: 20 }\n"
                           "cluster: { heartbeat: 1, dead_after: 3, redirect: true,\n"
                           "  max_allocations: 5000, max_cpu: 0.8, domain: turn-eu.example.net,\n"
                           "  shared_nonce: false, nonce_rotation: 900 }\n",
                           &msgs),
                     0);
    assert_string_equal(msgs, "");
    assert_int_equal(c.cluster_heartbeat, 1);
    assert_int_equal(c.cluster_dead_after, 3);
    assert_true(c.cluster_redirect);
    assert_int_equal(c.cluster_max_allocations, 5000);
    assert_true(c.cluster_max_cpu > 0.79 && c.cluster_max_cpu < 0.81);
    assert_string_equal(c.cluster_domain, "turn-eu.example.net");
    assert_false(c.cluster_shared_nonce);
    assert_int_equal(c.cluster_nonce_rotation, 900);
    assert_int_equal(c.max_per_user_fleet, 20);
    cfg_free(&c);
    free(msgs);
    /* No PostgreSQL: redirect and the fleet quota refused; the other checks. */
    assert_int_equal(parse(&c,
                           "auth: { database: /var/lib/tern/tern.db }\n"
                           "allocation: { max_per_user_fleet: 2 }\n"
                           "cluster: { redirect: true, heartbeat: 5, dead_after: 9,\n"
                           "  domain: \"bad name\", max_cpu: 1.5 }\n",
                           &msgs),
                     -1);
    assert_non_null(strstr(msgs, "cluster.redirect: the fleet's load comes from its registry, in "
                                 "a PostgreSQL auth.database (a postgresql:// URI), not a SQLite "
                                 "file"));
    assert_non_null(strstr(msgs, "allocation.max_per_user_fleet: the other nodes' counts come "
                                 "from the registry"));
    assert_non_null(strstr(msgs, "cluster.max_cpu: 1.5 is out of range"));
    free(msgs);
    assert_int_equal(
        parse(&c, "cluster: { heartbeat: 5, dead_after: 9, domain: \"bad name\" }\n", &msgs), -1);
    assert_non_null(strstr(msgs, "cluster.dead_after: 9 s is less than two heartbeats (10 s)"));
    assert_non_null(strstr(msgs, "cluster.domain: not a DNS name"));
    free(msgs);
    assert_int_equal(parse(&c,
                           "auth: { database: \"postgresql://tern@/tern\", nonce_lifetime: 1200 }\n"
                           "cluster: { nonce_rotation: 600 }\n",
                           &msgs),
                     -1);
    assert_non_null(strstr(msgs, "cluster.nonce_rotation: 600 s is shorter than "
                                 "auth.nonce_lifetime (1200 s)"));
    free(msgs);
}

static void ipv6_listen_address(void **state)
{
    static const char yaml[] = "listen:\n"
                               "  - transport: udp\n"
                               "    address: ::1\n" /* a bare IPv6 works in block style */
                               "    port: 3478\n"
                               "  - { transport: tcp, address: \"::\", port: 3478 }\n"
                               "  - { transport: udp, address: fe80::1, port: 0 }\n"
                               "  - { transport: udp, address: \"::ffff:192.0.2.1\" }\n";
    struct tern_config c;
    char *msgs;

    (void)state;
    assert_int_equal(parse(&c, yaml, &msgs), 0);
    assert_string_equal(msgs, "");
    assert_int_equal(c.nlisten, 4);
    assert_int_equal(c.listen[0].addr.sa.sa_family, AF_INET6);
    assert_ip(&c.listen[0].addr, "::1", 3478);
    assert_ip(&c.listen[1].addr, "::", 3478);
    assert_ip(&c.listen[2].addr, "fe80::1", 0);
    assert_ip(&c.listen[3].addr, "::ffff:192.0.2.1", 3478);
    cfg_free(&c);
    free(msgs);
}

/* Port 0 asks the kernel for a free port: two such listeners are not duplicates. */
static void listen_port_zero_not_duplicate(void **state)
{
    struct tern_config c;
    char *msgs;

    (void)state;
    assert_int_equal(parse(&c,
                           "listen: [{ transport: udp, port: 0 }, { transport: udp, port: 0 },"
                           " { transport: tcp, port: 3478 }, { transport: udp, port: 3478 }]\n",
                           &msgs),
                     0);
    assert_string_equal(msgs, "");
    assert_int_equal(c.nlisten, 4);
    assert_ip(&c.listen[0].addr, "0.0.0.0", 0);
    cfg_free(&c);
    free(msgs);
}

static void tls_requires_certificate_and_key(void **state)
{
    struct tern_config c;
    char *msgs;

    (void)state;
    assert_int_equal(parse(&c,
                           "listen:\n  - { transport: udp }\n  - { transport: tls }\n"
                           "  - { transport: tls, port: 443 }\n",
                           &msgs),
                     -1);
    assert_string_equal(
        msgs, "t.yaml:3: tls.certificate: missing; the tls listener listen[1] needs it\n"
              "t.yaml:3: tls.private_key: missing; the tls listener listen[1] needs it\n");
    free(msgs);

    /* A bad certificate value is reported once, as itself, not again as "missing". */
    assert_int_equal(parse(&c,
                           "listen: [{ transport: tls }]\ntls: { certificate: [x], "
                           "private_key: k.pem }\n",
                           &msgs),
                     -1);
    assert_string_equal(msgs, "t.yaml:2: tls.certificate: expected a string, got a list\n");
    free(msgs);
}

/* Passwords, secrets and tokens never appear in messages (they end up in logs). */
static void secrets_not_echoed(void **state)
{
    struct tern_config c;
    char *msgs;

    (void)state;
    assert_int_equal(parse(&c,
                           "auth:\n  users: [{ name: a, password: [hunter2] }]\n"
                           "  secrets: [{ hunter3: 1 }]\n"
                           "ops: { token: [hunter4] }\n",
                           &msgs),
                     -1);
    assert_int_equal(count_lines(msgs), 3);
    assert_null(strstr(msgs, "hunter"));
    free(msgs);
}

static void strings_keep_their_text(void **state)
{
    struct tern_config c;
    char *msgs;

    (void)state;
    /* Plain numbers and words given for string keys are kept as written. */
    assert_int_equal(parse(&c,
                           "server: { realm: 2024, software: 1.0 }\n"
                           "auth: { secrets: [0x10, true] }\n",
                           &msgs),
                     0);
    assert_string_equal(c.realm, "2024");
    assert_string_equal(c.software, "1.0");
    assert_string_equal(c.secrets[0], "0x10");
    assert_string_equal(c.secrets[1], "true");
    cfg_free(&c);
    free(msgs);
}

static void string_length_limits(void **state)
{
    char yaml[2048], name[600];
    struct tern_config c;
    char *msgs;

    (void)state;
    memset(name, 'u', 512);
    name[512] = '\0';
    snprintf(yaml, sizeof yaml, "auth: { users: [{ name: %s, password: p }] }\n", name);
    assert_int_equal(parse(&c, yaml, &msgs), 0);
    assert_int_equal(strlen(c.users[0].name), 512);
    cfg_free(&c);
    free(msgs);

    name[512] = 'u';
    name[513] = '\0';
    snprintf(yaml, sizeof yaml, "auth: { users: [{ name: %s, password: p }] }\n", name);
    assert_int_equal(parse(&c, yaml, &msgs), -1);
    assert_prefix(msgs, "t.yaml:1: auth.users[0].name: ");
    assert_non_null(strstr(msgs, "513 bytes; at most 512"));
    free(msgs);

    /* The realm limit counts characters: 127 two-byte characters are fine, 128 are not. */
    strcpy(yaml, "server: { realm: \"");
    for (int i = 0; i < 127; i++)
        strcat(yaml, "\xc3\xa9");
    strcat(yaml, "\" }\n");
    assert_int_equal(parse(&c, yaml, &msgs), 0);
    cfg_free(&c);
    free(msgs);
    strcpy(strstr(yaml, "\" }"), "\xc3\xa9\" }\n");
    assert_int_equal(parse(&c, yaml, &msgs), -1);
    assert_non_null(strstr(msgs, "server.realm: "));
    assert_non_null(strstr(msgs, "128 characters; at most 127"));
    free(msgs);
}

static void integer_forms(void **state)
{
    struct tern_config c;
    char *msgs;

    (void)state;
    assert_int_equal(parse(&c,
                           "server: { workers: \"auto\" }\n"
                           "allocation: { max_total: 0x10, max_per_user: +3 }\n",
                           &msgs),
                     0);
    assert_int_equal(c.workers, 0);
    assert_int_equal(c.max_total, 16);
    assert_int_equal(c.max_per_user, 3);
    cfg_free(&c);
    free(msgs);

    assert_int_equal(parse(&c, "server: { workers: 256 }\n", &msgs), 0);
    assert_int_equal(c.workers, 256);
    cfg_free(&c);
    free(msgs);
}

static void anchors_and_aliases(void **state)
{
    struct tern_config c;
    char *msgs;

    (void)state;
    assert_int_equal(parse(&c,
                           "listen:\n  - &l { transport: udp, address: 127.0.0.1, port: 1 }\n"
                           "  - *l\n",
                           &msgs),
                     -1);
    assert_non_null(strstr(msgs, "listen[1]: UDP 127.0.0.1:1 is listed twice"));
    free(msgs);
}

static void free_zeroed_is_safe(void **state)
{
    struct tern_config c;

    (void)state;
    memset(&c, 0, sizeof c);
    cfg_free(&c);
    cfg_free(&c);
    cfg_free(NULL);
    assert_zeroed(&c);
}

/* Cross-key rules added with the QoS-aware path and the privilege drop. */
static void qos_cross_rules(void **state)
{
    struct tern_config c;
    char *msgs;

    (void)state;
    assert_int_equal(parse(&c, "qos: { enabled: false, dscp: by-class }\n", &msgs), -1);
    assert_non_null(strstr(msgs, "qos.dscp: by-class needs qos.enabled: true"));
    free(msgs);
    assert_int_equal(parse(&c, "qos: { enabled: false, priority: true }\n", &msgs), -1);
    assert_non_null(strstr(msgs, "qos.priority: needs qos.enabled: true"));
    free(msgs);
    assert_int_equal(parse(&c,
                           "server: { user: nobody }\nqos: { priority: true, priority_classes: "
                           "{ audio: 65552 } }\n",
                           &msgs),
                     -1);
    assert_non_null(strstr(msgs, "priorities above 6 need CAP_NET_ADMIN"));
    free(msgs);
    assert_int_equal(parse(&c, "server: { user: nobody }\nqos: { priority: true }\n", &msgs), 0);
    assert_int_equal(c.qos_prio_audio, 6);
    assert_int_equal(c.qos_prio_video, 4);
    assert_int_equal(c.qos_prio_other, 2);
    cfg_free(&c);
    free(msgs);
}

static void transport_names(void **state)
{
    (void)state;
    assert_string_equal(cfg_transport_name(CFG_UDP), "udp");
    assert_string_equal(cfg_transport_name(CFG_TCP), "tcp");
    assert_string_equal(cfg_transport_name(CFG_TLS), "tls");
    assert_string_equal(cfg_transport_name(CFG_TCP_TLS), "tcp+tls");
    assert_false(cfg_transport_tls(CFG_TCP));
    assert_true(cfg_transport_tls(CFG_TLS));
    assert_true(cfg_transport_tls(CFG_TCP_TLS));
    assert_string_equal(cfg_transport_name(CFG_DTLS), "dtls");
    assert_false(cfg_transport_tls(CFG_DTLS)); /* not a TLS stream ... */
    assert_true(cfg_transport_cert(CFG_DTLS)); /* ... but it needs the certificate */
    assert_true(cfg_transport_dgram(CFG_DTLS));
    assert_false(cfg_transport_dgram(CFG_TLS));
}

/* transport: dtls (RFC 7350): off unless listed, port 5349 by default, needs the TLS
 * certificate and key, no PROXY header, and clashes with a UDP listener on its port. */
static void dtls_listener(void **state)
{
    struct tern_config c;
    char *msgs;

    (void)state;
    assert_int_equal(parse(&c,
                           "listen:\n  - { transport: dtls, address: 127.0.0.1 }\n"
                           "  - { transport: tls, address: 127.0.0.1 }\n"
                           "relay: { dtls_max_handshakes: 32, dtls_handshake_timeout: 5 }\n"
                           "tls: { certificate: c.pem, private_key: k.pem }\n",
                           &msgs),
                     0);
    assert_string_equal(msgs, "");
    assert_int_equal(c.listen[0].transport, CFG_DTLS);
    assert_ip(&c.listen[0].addr, "127.0.0.1", 5349); /* a UDP port: no clash with tls */
    assert_int_equal(c.dtls_max_handshakes, 32);
    assert_int_equal(c.dtls_handshake_timeout, 5);
    cfg_free(&c);
    free(msgs);

    assert_int_equal(parse(&c, "listen: [ { transport: udp } ]\n", &msgs), 0);
    assert_int_equal(c.dtls_max_handshakes, 256);
    assert_int_equal(c.dtls_handshake_timeout, 10);
    cfg_free(&c);
    free(msgs);

    assert_int_equal(parse(&c,
                           "listen:\n  - { transport: dtls, port: 0, proxy_protocol: true }\n"
                           "  - { transport: dtls, port: 3478 }\n"
                           "  - { transport: udp, port: 3478 }\n",
                           &msgs),
                     -1);
    assert_non_null(strstr(msgs, "listen[0].proxy_protocol: only for tcp, tls and tcp+tls"));
    assert_non_null(strstr(msgs, "listen[2]: UDP 0.0.0.0:3478 is listed twice"));
    assert_non_null(
        strstr(msgs, "tls.certificate: missing; the dtls listener listen[0] needs it\n"));
    assert_non_null(
        strstr(msgs, "tls.private_key: missing; the dtls listener listen[0] needs it\n"));
    free(msgs);
}

/* tcp+tls (TLS and plain on one port) and proxy_protocol, per listener. */
static void tcp_tls_and_proxy_protocol(void **state)
{
    struct tern_config c;
    char *msgs;

    (void)state;
    assert_int_equal(parse(&c,
                           "listen:\n"
                           "  - { transport: tcp+tls, address: 127.0.0.1 }\n"
                           "  - { transport: tcp, port: 3479, proxy_protocol: true }\n"
                           "  - { transport: tls, proxy_protocol: true }\n"
                           "  - { transport: tcp+tls, port: 0, proxy_protocol: true }\n"
                           "  - { transport: udp }\n"
                           "tls: { certificate: c.pem, private_key: k.pem }\n",
                           &msgs),
                     0);
    assert_string_equal(msgs, "");
    assert_int_equal(c.listen[0].transport, CFG_TCP_TLS);
    assert_ip(&c.listen[0].addr, "127.0.0.1", 443); /* tcp+tls without a port: 443 */
    assert_false(c.listen[0].proxy_protocol);
    assert_true(c.listen[1].proxy_protocol);
    assert_int_equal(c.listen[2].transport, CFG_TLS);
    assert_true(c.listen[2].proxy_protocol);
    assert_true(c.listen[3].proxy_protocol);
    assert_false(c.listen[4].proxy_protocol);
    cfg_free(&c);
    free(msgs);

    /* tcp+tls needs the certificate like tls; proxy_protocol is for TCP kinds only. */
    assert_int_equal(parse(&c,
                           "listen:\n  - { transport: tcp+tls, port: 0 }\n"
                           "  - { transport: udp, proxy_protocol: true }\n"
                           "  - { transport: tcp, port: 1, proxy_protocol: yes }\n",
                           &msgs),
                     -1);
    assert_string_equal(
        msgs, "t.yaml:3: listen[1].proxy_protocol: only for tcp, tls and tcp+tls listeners (a "
              "PROXY header starts a TCP stream)\n"
              "t.yaml:4: listen[2].proxy_protocol: expected true or false, got \"yes\"\n"
              "t.yaml:2: tls.certificate: missing; the tcp+tls listener listen[0] needs it\n"
              "t.yaml:2: tls.private_key: missing; the tcp+tls listener listen[0] needs it\n");
    free(msgs);

    /* tcp+tls and tcp on one address and port clash: both are TCP sockets. */
    assert_int_equal(parse(&c,
                           "listen:\n  - { transport: tcp+tls, port: 3478 }\n"
                           "  - { transport: tcp, port: 3478 }\n"
                           "tls: { certificate: c.pem, private_key: k.pem }\n",
                           &msgs),
                     -1);
    assert_non_null(strstr(msgs, "listen[1]: TCP 0.0.0.0:3478 is listed twice"));
    free(msgs);
}

/* ---- live reload: cfg_key_line and cfg_diff (relay/config_diff.c) ---- */

static void key_lines_recorded(void **state)
{
    struct tern_config c;
    char *msgs;

    (void)state;
    assert_int_equal(parse(&c,
                           "server:\n  realm: r\n\nlisten:\n  - { transport: udp, address: "
                           "127.0.0.1, port: 0 }\npeers:\n  deny: [10.0.0.0/8]\n",
                           &msgs),
                     0);
    assert_string_equal(c.name, "t.yaml");
    assert_int_equal(cfg_key_line(&c, "server"), 1);
    assert_int_equal(cfg_key_line(&c, "server.realm"), 2);
    assert_int_equal(cfg_key_line(&c, "listen"), 4);
    assert_int_equal(cfg_key_line(&c, "listen[0].transport"), 5);
    assert_int_equal(cfg_key_line(&c, "peers.deny"), 7);
    assert_int_equal(cfg_key_line(&c, "peers.allow"), 0); /* defaulted: not given */
    assert_int_equal(cfg_key_line(&c, "nope"), 0);
    cfg_free(&c);
    free(msgs);
}

/* diff old -> new text: *out gets the refusal messages; returns the diff. */
static struct cfg_diff diff_of(const char *old_text, const char *new_text, char **out)
{
    struct tern_config a, b;
    char *m1, *m2;
    size_t size;

    assert_int_equal(parse(&a, old_text, &m1), 0);
    assert_int_equal(parse(&b, new_text, &m2), 0);
    FILE *err = open_memstream(out, &size);
    assert_non_null(err);
    struct cfg_diff d;
    cfg_diff(&a, &b, &d, err);
    fclose(err);
    cfg_free(&a);
    cfg_free(&b);
    free(m1);
    free(m2);
    return d;
}

static bool diff_has(const struct cfg_diff *d, const char *key)
{
    for (size_t i = 0; i < d->nchanged; i++)
        if (strcmp(d->changed[i], key) == 0) return true;
    return false;
}

static void diff_same_is_empty(void **state)
{
    char *out;
    (void)state;
    struct cfg_diff d = diff_of(cfg_default_yaml, cfg_default_yaml, &out);
    assert_int_equal(d.nchanged, 0);
    assert_int_equal(d.refused, 0);
    assert_false(d.listeners);
    assert_false(d.pools);
    assert_string_equal(out, "");
    free(out);
    /* the same listeners in another order are the same listeners */
    d = diff_of("listen:\n  - { transport: udp, address: 127.0.0.1, port: 0 }\n"
                "  - { transport: tcp, address: 127.0.0.1, port: 0 }\n",
                "listen:\n  - { transport: tcp, address: 127.0.0.1, port: 0 }\n"
                "  - { transport: udp, address: 127.0.0.1, port: 0 }\n",
                &out);
    assert_int_equal(d.nchanged, 0);
    assert_false(d.listeners);
    free(out);
}

static void diff_live_keys(void **state)
{
    char *out;
    (void)state;
    struct cfg_diff d =
        diff_of("auth: { users: [ { name: a, password: p1 } ], secrets: [s1] }\n"
                "peers: { deny: [10.0.0.0/8] }\nrelay: { ports: { min: 50000, max: 50999 } }\n"
                "ops: { token: t1 }\nlog: { level: info }\n",
                "auth: { users: [ { name: a, password: p2 } ], secrets: [s2] }\n"
                "peers: { deny: [10.0.0.0/16] }\nrelay: { ports: { min: 50000, max: 51999 } }\n"
                "ops: { token: t2 }\nlog: { level: debug }\n"
                "listen:\n  - { transport: udp, address: 127.0.0.1, port: 0 }\n",
                &out);
    assert_int_equal(d.refused, 0);
    assert_string_equal(out, "");
    assert_true(diff_has(&d, "auth.users")); /* a password alone changed */
    assert_true(diff_has(&d, "auth.secrets"));
    assert_true(diff_has(&d, "peers.deny"));
    assert_true(diff_has(&d, "relay.ports"));
    assert_true(diff_has(&d, "ops.token"));
    assert_true(diff_has(&d, "log.level"));
    assert_true(diff_has(&d, "listen"));
    assert_false(diff_has(&d, "peers.allow"));
    assert_true(d.listeners);
    assert_true(d.pools);
    free(out);
}

static void diff_refuses_record_database(void **state)
{
    char *out;
    (void)state;
    static const char pg[] = "auth: { database: \"postgresql://tern@/tern?host=/run/pg\" }\n";
    char a[256], b[256];
    snprintf(a, sizeof a, "%sqos: { record_database: true }\ncluster: { node_id: n1 }\n", pg);
    snprintf(b, sizeof b, "%sqos: { record_database: true, record_database_queue: 9 }\n", pg);
    struct cfg_diff d = diff_of(a, b, &out);
    assert_int_equal(d.refused, 2);
    assert_non_null(strstr(out, "qos.record_database_queue: cannot change while ternd runs"));
    assert_non_null(strstr(out, "cluster.node_id: cannot change while ternd runs"));
    free(out);
    d = diff_of(pg, a, &out);
    assert_true(d.refused >= 1);
    assert_non_null(strstr(out, "qos.record_database: cannot change while ternd runs (the call "
                                "record writer"));
    free(out);
    d = diff_of(a, a, &out);
    assert_int_equal(d.refused, 0);
    assert_int_equal(d.nchanged, 0);
    free(out);
}

static void diff_refuses_fixed_keys(void **state)
{
    char *out;
    (void)state;
    struct cfg_diff d = diff_of("server: { realm: a, workers: 2 }\nauth: { database: /x.db }\n",
                                "server:\n  realm: b\n  workers: 3\n"
                                "  user: nobody\nauth: {}\nops:\n  listen: 127.0.0.1:9999\n",
                                &out);
    assert_int_equal(d.refused, 5);
    assert_non_null(strstr(out, "t.yaml:2: server.realm: cannot change while ternd runs ("));
    assert_non_null(strstr(out, "t.yaml:3: server.workers: cannot change while ternd runs"));
    assert_non_null(strstr(out, "t.yaml:4: server.user: cannot change"));
    /* absent from the new file: reported at its section's line */
    assert_non_null(strstr(out, "t.yaml:5: auth.database: cannot change"));
    assert_non_null(strstr(out, "t.yaml:7: ops.listen: cannot change"));
    assert_non_null(strstr(out, "restart to apply\n"));
    assert_int_equal(count_lines(out), 5);
    free(out);
}

static void diff_qos_keys(void **state)
{
    char *out;
    (void)state;
    struct cfg_diff d = diff_of("qos: { thresholds: { loss: 0.01 }, timeline: { minutes: 10 } }\n",
                                "qos: { thresholds: { loss: 0.05 }, timeline: { minutes: 2 },\n"
                                "       webhook: \"http://127.0.0.1:9/x\" }\n",
                                &out);
    assert_true(diff_has(&d, "qos.thresholds"));
    assert_true(diff_has(&d, "qos.timeline.minutes"));
    assert_int_equal(d.refused, 1);
    assert_non_null(strstr(out, "qos.webhook: cannot change while ternd runs"));
    free(out);
}

static void diff_never_prints_secrets(void **state)
{
    char *out;
    (void)state;
    struct cfg_diff d = diff_of(
        "server: { realm: a }\nauth: { users: [ { name: u, password: hunter2 } ] }\n",
        "server: { realm: b }\nauth: { users: [ { name: u, password: hunter3 } ] }\n", &out);
    assert_int_equal(d.refused, 1);
    assert_null(strstr(out, "hunter"));
    free(out);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(embedded_default),
        cmocka_unit_test(key_lines_recorded),
        cmocka_unit_test(diff_same_is_empty),
        cmocka_unit_test(diff_live_keys),
        cmocka_unit_test(diff_refuses_fixed_keys),
        cmocka_unit_test(diff_refuses_record_database),
        cmocka_unit_test(diff_never_prints_secrets),
        cmocka_unit_test(diff_qos_keys),
        cmocka_unit_test(empty_document_is_default),
        cmocka_unit_test(null_sections_take_defaults),
        cmocka_unit_test(load_tern_yaml),
        cmocka_unit_test(load_minimal_yaml),
        cmocka_unit_test(full_config),
        cmocka_unit_test(bad_input_table),
        cmocka_unit_test(multiple_errors_in_one_run),
        cmocka_unit_test(unknown_key),
        cmocka_unit_test(duplicate_key),
        cmocka_unit_test(yaml_syntax_error),
        cmocka_unit_test(invalid_utf8),
        cmocka_unit_test(missing_file_names_it),
        cmocka_unit_test(load_reports_file_name_and_line),
        cmocka_unit_test(cidr_parsing_and_masking),
        cmocka_unit_test(cidr_duplicates_after_masking),
        cmocka_unit_test(ops_listen_forms),
        cmocka_unit_test(nullable_keys),
        cmocka_unit_test(qos_section),
        cmocka_unit_test(ipv6_listen_address),
        cmocka_unit_test(listen_port_zero_not_duplicate),
        cmocka_unit_test(tls_requires_certificate_and_key),
        cmocka_unit_test(secrets_not_echoed),
        cmocka_unit_test(strings_keep_their_text),
        cmocka_unit_test(string_length_limits),
        cmocka_unit_test(integer_forms),
        cmocka_unit_test(anchors_and_aliases),
        cmocka_unit_test(free_zeroed_is_safe),
        cmocka_unit_test(transport_names),
        cmocka_unit_test(tcp_tls_and_proxy_protocol),
        cmocka_unit_test(dtls_listener),
        cmocka_unit_test(qos_cross_rules),
        cmocka_unit_test(record_database_keys),
        cmocka_unit_test(fleet_keys),
    };
    const char *filter = argc > 1 ? argv[1] : getenv("CMOCKA_FILTER");

    if (filter) cmocka_set_test_filter(filter);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
