/* config_diff.c: what a live reload would change. A running relay compares its configuration
 * with the new file's, key by key: most keys are applied live (relay/reload.c), a few cannot
 * change while ternd runs and make the reload refuse, and nothing is applied then. The list of
 * those keys and why is in configs/README.md ("Live reload"). */
#include <string.h>

#include "addr.h"
#include "config.h"

struct cmp {
    const struct tern_config *old, *new;
    struct cfg_diff *d;
    FILE *err;
};

static bool str_same(const char *a, const char *b)
{
    if (!a || !b) return a == b;
    size_t la = strlen(a), lb = strlen(b);
    if (la != lb) return false;
    /* Secrets pass through here too: compare without leaking where they differ. */
    unsigned char d = 0;
    for (size_t i = 0; i < la; i++)
        d |= (unsigned char)(a[i] ^ b[i]);
    return d == 0;
}

static bool addrs_same(const union stun_addr *a, size_t na, const union stun_addr *b, size_t nb)
{
    if (na != nb) return false;
    for (size_t i = 0; i < na; i++)
        if (!addr_equal(&a[i], &b[i])) return false;
    return true;
}

static bool cidrs_same(const struct cfg_cidr *a, size_t na, const struct cfg_cidr *b, size_t nb)
{
    if (na != nb) return false;
    for (size_t i = 0; i < na; i++)
        if (a[i].prefix != b[i].prefix || !addr_ip_equal(&a[i].addr, &b[i].addr)) return false;
    return true;
}

static bool users_same(const struct cfg_user *a, size_t na, const struct cfg_user *b, size_t nb)
{
    if (na != nb) return false;
    for (size_t i = 0; i < na; i++)
        if (!str_same(a[i].name, b[i].name) || !str_same(a[i].password, b[i].password))
            return false;
    return true;
}

static bool secrets_same(char *const *a, size_t na, char *const *b, size_t nb)
{
    if (na != nb) return false;
    for (size_t i = 0; i < na; i++)
        if (!str_same(a[i], b[i])) return false;
    return true;
}

bool cfg_listen_same(const struct cfg_listen *a, const struct cfg_listen *b)
{
    return a->transport == b->transport && addr_equal(&a->addr, &b->addr) &&
           a->proxy_protocol == b->proxy_protocol;
}

/* Every entry of a has its twin in b (order does not matter: a listener is its address). */
static bool listens_within(const struct cfg_listen *a, size_t na, const struct cfg_listen *b,
                           size_t nb)
{
    for (size_t i = 0; i < na; i++) {
        bool found = false;
        for (size_t j = 0; j < nb && !found; j++)
            found = cfg_listen_same(&a[i], &b[j]);
        if (!found) return false;
    }
    return true;
}

static void changed(struct cmp *c, const char *key)
{
    if (c->d->nchanged < CFG_DIFF_MAX) c->d->changed[c->d->nchanged++] = key;
}

/* A key that cannot change live differs: say where and why. */
static void refuse(struct cmp *c, const char *key, const char *why)
{
    unsigned line = cfg_key_line(c->new, key);
    if (!line) { /* absent from the new file: report at its section, or at the top */
        char section[48];
        snprintf(section, sizeof section, "%s", key);
        char *dot = strchr(section, '.');
        if (dot) *dot = '\0';
        line = cfg_key_line(c->new, section);
    }
    fprintf(c->err, "%s:%u: %s: cannot change while ternd runs (%s); restart to apply\n",
            c->new->name ? c->new->name : "(config)", line ? line : 1, key, why);
    c->d->refused++;
}

#define LIVE(key, same)                                                                            \
    do {                                                                                           \
        if (!(same)) changed(c, key);                                                              \
    } while (0)
#define FIXED(key, same, why)                                                                      \
    do {                                                                                           \
        if (!(same)) refuse(c, key, why);                                                          \
    } while (0)

void cfg_diff(const struct tern_config *old, const struct tern_config *new, struct cfg_diff *d,
              FILE *err)
{
    struct cmp cc = {.old = old, .new = new, .d = d, .err = err ? err : stderr}, *c = &cc;
    const struct tern_config *o = old, *n = new;
    memset(d, 0, sizeof(*d));

    FIXED("server.realm", str_same(o->realm, n->realm),
          "every stored key and every client's credentials are derived with the realm");
    LIVE("server.software", str_same(o->software, n->software));
    FIXED("server.workers", o->workers == n->workers,
          "workers own their allocations and sockets for their whole life");
    FIXED("server.user", str_same(o->user, n->user), "privileges were dropped at start");
    FIXED("server.group", str_same(o->group, n->group), "privileges were dropped at start");

    if (!listens_within(o->listen, o->nlisten, n->listen, n->nlisten) ||
        !listens_within(n->listen, n->nlisten, o->listen, o->nlisten)) {
        changed(c, "listen");
        d->listeners = true;
    }
    LIVE("tls.certificate", str_same(o->tls_certificate, n->tls_certificate));
    LIVE("tls.private_key", str_same(o->tls_private_key, n->tls_private_key));

    bool addrs = addrs_same(o->relay_addresses, o->nrelay_addresses, n->relay_addresses,
                            n->nrelay_addresses);
    bool ports = o->port_min == n->port_min && o->port_max == n->port_max;
    LIVE("relay.addresses", addrs);
    LIVE("relay.ports", ports);
    d->pools = !addrs || !ports;
    FIXED("relay.offload", o->offload == n->offload,
          "the XDP program is attached at start, before privileges are dropped");
    LIVE("relay.dtls_max_handshakes", o->dtls_max_handshakes == n->dtls_max_handshakes);
    LIVE("relay.dtls_max_per_ip", o->dtls_max_per_ip == n->dtls_max_per_ip);
    LIVE("relay.dtls_handshake_timeout", o->dtls_handshake_timeout == n->dtls_handshake_timeout);
    LIVE("relay.external_address",
         o->relay_external.sa.sa_family == n->relay_external.sa.sa_family &&
             (o->relay_external.sa.sa_family == AF_UNSPEC ||
              addr_equal(&o->relay_external, &n->relay_external)));

    LIVE("allocation.default_lifetime", o->default_lifetime == n->default_lifetime);
    LIVE("allocation.max_lifetime", o->max_lifetime == n->max_lifetime);
    LIVE("allocation.max_per_user", o->max_per_user == n->max_per_user);
    LIVE("allocation.max_total", o->max_total == n->max_total);
    LIVE("allocation.max_per_user_fleet", o->max_per_user_fleet == n->max_per_user_fleet);
    LIVE("allocation.max_tcp_connections", o->max_tcp_connections == n->max_tcp_connections);
    LIVE("allocation.mobility", o->mobility == n->mobility);
    LIVE("allocation.strict_channel_numbers",
         o->strict_channel_numbers == n->strict_channel_numbers);
    LIVE("allocation.bandwidth_limit", o->bandwidth_limit == n->bandwidth_limit);

    LIVE("peers.allow_loopback", o->allow_loopback == n->allow_loopback);
    LIVE("peers.allow_relay_to_relay", o->allow_relay_to_relay == n->allow_relay_to_relay);
    LIVE("peers.allow",
         cidrs_same(o->peers_allow, o->npeers_allow, n->peers_allow, n->npeers_allow));
    LIVE("peers.deny", cidrs_same(o->peers_deny, o->npeers_deny, n->peers_deny, n->npeers_deny));

    LIVE("drain.alternate_servers", addrs_same(o->drain_alternates, o->ndrain_alternates,
                                               n->drain_alternates, n->ndrain_alternates));
    LIVE("drain.deadline", o->drain_deadline == n->drain_deadline);

    FIXED("auth.database", str_same(o->database, n->database),
          "the credential refresher and the admin API hold that database open");
    FIXED("auth.database_password_file",
          str_same(o->database_password_file, n->database_password_file),
          "the credential refresher reads it at each reconnect: rotate the password in the file");
    LIVE("auth.users", users_same(o->users, o->nusers, n->users, n->nusers));
    LIVE("auth.secrets", secrets_same(o->secrets, o->nsecrets, n->secrets, n->nsecrets));
    LIVE("auth.rest_separator", str_same(o->rest_separator, n->rest_separator));
    LIVE("auth.nonce_lifetime", o->nonce_lifetime == n->nonce_lifetime);
    LIVE("auth.strict_expiry", o->strict_expiry == n->strict_expiry);
    LIVE("auth.unauthenticated_rate", o->unauth_rate == n->unauth_rate);
    LIVE("auth.unauthenticated_burst", o->unauth_burst == n->unauth_burst);
    LIVE("auth.unauthenticated_global_rate", o->unauth_global_rate == n->unauth_global_rate);

    LIVE("qos.enabled", o->qos_enabled == n->qos_enabled);
    LIVE("qos.record_file", str_same(o->qos_record_file, n->qos_record_file));
    LIVE("qos.dscp", o->qos_dscp == n->qos_dscp);
    LIVE("qos.priority", o->qos_priority == n->qos_priority);
    FIXED("qos.record_database", o->qos_record_database == n->qos_record_database,
          "the call record writer thread and its database connection are set up once, at start");
    FIXED("qos.record_database_queue",
          o->qos_record_database_queue == n->qos_record_database_queue || !n->qos_record_database,
          "the call record queue is allocated once, at start");
    FIXED("cluster.node_id", str_same(o->cluster_node_id, n->cluster_node_id),
          "rows already written name the node: a new name would split its history");
    /* The fleet thread (ops/cluster.c) reads these at every heartbeat. */
    LIVE("cluster.heartbeat", o->cluster_heartbeat == n->cluster_heartbeat);
    LIVE("cluster.dead_after", o->cluster_dead_after == n->cluster_dead_after);
    LIVE("cluster.forget_after", o->cluster_forget_after == n->cluster_forget_after);
    LIVE("cluster.redirect", o->cluster_redirect == n->cluster_redirect);
    LIVE("cluster.max_allocations", o->cluster_max_allocations == n->cluster_max_allocations);
    LIVE("cluster.max_cpu", o->cluster_max_cpu == n->cluster_max_cpu);
    LIVE("cluster.domain", str_same(o->cluster_domain, n->cluster_domain));
    LIVE("cluster.shared_nonce", o->cluster_shared_nonce == n->cluster_shared_nonce);
    LIVE("cluster.nonce_rotation", o->cluster_nonce_rotation == n->cluster_nonce_rotation);
    LIVE("qos.priority_classes", o->qos_prio_audio == n->qos_prio_audio &&
                                     o->qos_prio_video == n->qos_prio_video &&
                                     o->qos_prio_other == n->qos_prio_other);

    LIVE("qos.timeline.minutes", o->qos_timeline_minutes == n->qos_timeline_minutes);
    LIVE("qos.thresholds", o->qos_thr_loss == n->qos_thr_loss &&
                               o->qos_thr_jitter_ms == n->qos_thr_jitter_ms &&
                               o->qos_thr_rtt_ms == n->qos_thr_rtt_ms);
    FIXED("qos.webhook", str_same(o->qos_webhook, n->qos_webhook),
          "its sender thread and queue are set up once, at start");
    FIXED("qos.webhook_queue", o->qos_webhook_queue == n->qos_webhook_queue,
          "its sender thread and queue are set up once, at start");

    FIXED(
        "ops.listen",
        o->ops_listen.sa.sa_family == n->ops_listen.sa.sa_family &&
            (o->ops_listen.sa.sa_family == AF_UNSPEC || addr_equal(&o->ops_listen, &n->ops_listen)),
        "the ops API that may be serving this very reload listens there");
    LIVE("ops.token", str_same(o->ops_token, n->ops_token));

    LIVE("log.level", o->log_level == n->log_level);
    LIVE("log.format", o->log_format == n->log_format);
}
