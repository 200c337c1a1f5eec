/* fleet.c: reading and ranking the node registry; this node's endpoints. */
#include "fleet.h"

#include <arpa/inet.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "addr.h"

const char *const fleet_transport_names[FLEET_TRANSPORTS] = {"udp", "tcp", "tls", "dtls"};

static int transport_index(const char *name)
{
    for (int t = 0; t < FLEET_TRANSPORTS; t++)
        if (strcmp(name, fleet_transport_names[t]) == 0) return t;
    return -1;
}

/* One row's endpoints from its JSON text; entries that do not parse are left out (a newer
 * node may publish kinds this one does not know). */
static void parse_endpoints(struct fleet_node *n, const char *text)
{
    json_error_t e;
    json_t *arr = json_loads(text, 0, &e);
    size_t cap = json_is_array(arr) ? json_array_size(arr) : 0;
    n->ep = cap ? calloc(cap, sizeof(*n->ep)) : NULL;
    size_t i;
    json_t *it;
    json_array_foreach(arr, i, it)
    {
        if (!n->ep) break;
        const char *tr = json_string_value(json_object_get(it, "transport"));
        const char *uri = json_string_value(json_object_get(it, "uri"));
        const char *ip = json_string_value(json_object_get(it, "ip"));
        const char *dom = json_string_value(json_object_get(it, "domain"));
        json_int_t fam = json_integer_value(json_object_get(it, "family"));
        json_int_t port = json_integer_value(json_object_get(it, "port"));
        int t = tr ? transport_index(tr) : -1;
        if (t < 0 || (fam != 4 && fam != 6) || !uri || strlen(uri) >= OPS_URI_LEN) continue;
        struct fleet_endpoint *ep = &n->ep[n->nep];
        memset(ep, 0, sizeof(*ep));
        ep->transport = t;
        ep->family = (int)fam;
        snprintf(ep->uri, sizeof ep->uri, "%s", uri);
        if (dom && strlen(dom) < sizeof ep->domain)
            snprintf(ep->domain, sizeof ep->domain, "%s", dom);
        ep->has_addr = ip && port > 0 && port < 65536 &&
                       addr_parse(ip, (unsigned)port, &ep->addr) &&
                       (ep->addr.sa.sa_family == AF_INET6) == (fam == 6);
        n->nep++;
    }
    json_decref(arr);
}

struct read_ctx {
    struct fleet *f;
    size_t cap;
    const char *self;
    uint32_t dead_after;
    bool nomem;
};

static double share(double used, double limit)
{
    return limit > 0 ? used / limit : 0;
}

static int read_row(void *ctx, const struct store_node *row)
{
    struct read_ctx *c = ctx;
    if (c->f->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 8;
        struct fleet_node *v = realloc(c->f->v, cap * sizeof(*v));
        if (!v) {
            c->nomem = true;
            return 1;
        }
        c->f->v = v;
        c->cap = cap;
    }
    struct fleet_node *n = &c->f->v[c->f->n++];
    memset(n, 0, sizeof(*n));
    n->row = *row;
    n->row.endpoints_json = n->row.users_json = NULL;
    n->self = c->self && strcmp(row->node_id, c->self) == 0;
    n->alive = isfinite(row->age_s) && row->age_s < (double)c->dead_after;
    n->full = (row->max_allocations && row->allocations >= row->max_allocations) ||
              (row->max_cpu > 0 && row->cpu >= row->max_cpu);
    double a = share((double)row->allocations, (double)row->max_allocations);
    double p = share(row->cpu, row->max_cpu);
    n->load = a > p ? a : p;
    parse_endpoints(n, row->endpoints_json ? row->endpoints_json : "[]");
    return 0;
}

bool fleet_offerable(const struct fleet_node *n)
{
    return n->alive && !n->row.draining && !n->full;
}

static int rank_cmp(const void *pa, const void *pb)
{
    const struct fleet_node *a = pa, *b = pb;
    bool oa = fleet_offerable(a), ob = fleet_offerable(b);
    if (oa != ob) return oa ? -1 : 1;
    if (a->load != b->load) return a->load < b->load ? -1 : 1;
    if (a->row.allocations != b->row.allocations)
        return a->row.allocations < b->row.allocations ? -1 : 1;
    if (a->row.cpu != b->row.cpu) return a->row.cpu < b->row.cpu ? -1 : 1;
    return strcmp(a->row.node_id, b->row.node_id);
}

int fleet_read(struct store *s, const char *self_id, uint32_t dead_after_s, struct fleet *out,
               char err[STORE_ERR_LEN])
{
    memset(out, 0, sizeof(*out));
    struct read_ctx c = {.f = out, .self = self_id, .dead_after = dead_after_s};
    int rc = store_nodes_each(s, read_row, &c, err);
    if (rc == STORE_OK && c.nomem) {
        snprintf(err, STORE_ERR_LEN, "out of memory reading the node registry");
        rc = STORE_ERROR;
    }
    if (rc != STORE_OK) {
        fleet_free(out);
        return rc;
    }
    if (out->n) qsort(out->v, out->n, sizeof(*out->v), rank_cmp);
    return STORE_OK;
}

void fleet_free(struct fleet *f)
{
    for (size_t i = 0; i < f->n; i++)
        free(f->v[i].ep);
    free(f->v);
    memset(f, 0, sizeof(*f));
}

size_t fleet_uris(const struct fleet *f, size_t max_nodes, struct ops_uris *u)
{
    size_t nodes = 0;
    u->n = 0;
    for (size_t i = 0; i < f->n && nodes < max_nodes; i++) {
        const struct fleet_node *n = &f->v[i];
        if (!fleet_offerable(n) || !n->nep) continue;
        nodes++;
        for (size_t k = 0; k < n->nep && u->n < OPS_MAX_URIS; k++) {
            bool dup = false;
            for (size_t j = 0; j < u->n && !dup; j++)
                dup = strcmp(u->v[j], n->ep[k].uri) == 0;
            if (!dup) snprintf(u->v[u->n++], OPS_URI_LEN, "%s", n->ep[k].uri);
        }
    }
    return nodes;
}

static const char *state_of(const struct fleet_node *n)
{
    if (!n->alive) return "dead";
    if (n->row.draining) return "draining";
    if (n->full) return "full";
    return "alive";
}

json_t *fleet_json(const struct fleet *f, uint32_t dead_after_s)
{
    json_t *nodes = json_array();
    for (size_t i = 0; nodes && i < f->n; i++) {
        const struct fleet_node *n = &f->v[i];
        json_t *eps = json_array();
        for (size_t k = 0; eps && k < n->nep; k++) {
            const struct fleet_endpoint *ep = &n->ep[k];
            char a[ADDR_STRLEN];
            json_t *o =
                json_pack("{s:s, s:i, s:s}", "transport", fleet_transport_names[ep->transport],
                          "family", ep->family, "uri", ep->uri);
            if (o && ep->has_addr)
                json_object_set_new(o, "address", json_string(addr_str(&ep->addr, a)));
            if (o && ep->domain[0]) json_object_set_new(o, "domain", json_string(ep->domain));
            json_array_append_new(eps, o);
        }
        double calls = (double)n->row.allocations;
        json_t *o = json_pack(
            "{s:s, s:b, s:s, s:f, s:s, s:I, s:I, s:I, s:f, s:f, s:f, s:I, s:f, s:f, s:o}",
            "node_id", n->row.node_id, "self", n->self, "state", state_of(n),
            "heartbeat_age_seconds", isfinite(n->row.age_s) ? n->row.age_s : -1.0, "version",
            n->row.version, "started_at", (json_int_t)n->row.started_at, "allocations",
            (json_int_t)n->row.allocations, "max_allocations", (json_int_t)n->row.max_allocations,
            "relayed_pps", n->row.relayed_pps, "cpu", n->row.cpu, "max_cpu", n->row.max_cpu,
            "poor_allocations", (json_int_t)n->row.poor, "poor_share",
            calls > 0 ? (double)n->row.poor / calls : 0.0, "load", n->load, "endpoints",
            eps ? eps : json_array());
        if (!o) {
            json_decref(nodes);
            return NULL;
        }
        json_array_append_new(nodes, o);
    }
    if (!nodes) return NULL;
    return json_pack("{s:o, s:I}", "nodes", nodes, "dead_after", (json_int_t)dead_after_s);
}

int fleet_node_id(const struct tern_config *cfg, char out[STORE_MAX_NODE + 1])
{
    if (cfg->cluster_node_id) {
        snprintf(out, STORE_MAX_NODE + 1, "%s", cfg->cluster_node_id);
        return 0;
    }
    memset(out, 0, STORE_MAX_NODE + 1);
    return gethostname(out, STORE_MAX_NODE) || !out[0] ? -1 : 0;
}

/* The address clients reach listener l at, when one is known: relay.external_address of the
 * same family, else the listener's own unless it is a wildcard. */
static bool reach_addr(const struct tern_config *cfg, const struct cfg_listen *l,
                       const union stun_addr *bound, union stun_addr *out)
{
    if (l->proxy_protocol) return false; /* clients come through a proxy: its address, not ours */
    if (cfg->relay_external.sa.sa_family == bound->sa.sa_family)
        *out = cfg->relay_external;
    else if (!addr_is_wildcard(bound))
        *out = *bound;
    else
        return false;
    addr_set_port(out, addr_port(bound));
    return true;
}

char *fleet_endpoints_json(const struct tern_config *cfg, const struct relay_bound *bound, size_t n,
                           char err[OPS_ERR_LEN])
{
    char hostname[OPS_HOST_LEN] = "";
    json_t *arr = json_array();
    err[0] = '\0';
    for (size_t i = 0; arr && i < n && i < cfg->nlisten; i++) {
        const struct cfg_listen *l = &cfg->listen[i];
        const union stun_addr *b = &bound[i].addr;
        if (b->sa.sa_family != AF_INET && b->sa.sa_family != AF_INET6) continue;
        union stun_addr reach;
        bool has = reach_addr(cfg, l, b, &reach);
        char host[OPS_HOST_LEN], ip[ADDR_STRLEN];
        if (cfg->cluster_domain) {
            snprintf(host, sizeof host, "%s", cfg->cluster_domain);
        } else if (has) {
            addr_ip_str(&reach, ip);
            snprintf(host, sizeof host, reach.sa.sa_family == AF_INET6 ? "[%s]" : "%s", ip);
        } else {
            if (!hostname[0] && (gethostname(hostname, sizeof hostname - 1) || !hostname[0])) {
                snprintf(err, OPS_ERR_LEN,
                         "listen[%zu] is a wildcard address and the host name is unknown: set "
                         "relay.external_address or cluster.domain",
                         i);
                json_decref(arr);
                return NULL;
            }
            snprintf(host, sizeof host, "%s", hostname);
        }
        /* udp: turn: over UDP; dtls: turns: over UDP (RFC 7350 4.2); tcp+tls gives two. */
        int first = l->transport == CFG_TLS || l->transport == CFG_DTLS ? 1 : 0,
            last = cfg_transport_tls(l->transport) || l->transport == CFG_DTLS ? 1 : 0;
        if (l->transport == CFG_UDP) first = last = 0;
        for (int tls = first; tls <= last; tls++) {
            int t = l->transport == CFG_UDP    ? FLEET_UDP
                    : l->transport == CFG_DTLS ? FLEET_DTLS
                    : tls                      ? FLEET_TLS
                                               : FLEET_TCP;
            char uri[OPS_URI_LEN];
            snprintf(uri, sizeof uri, "%s:%s:%u?transport=%s", tls ? "turns" : "turn", host,
                     addr_port(b), t == FLEET_UDP || t == FLEET_DTLS ? "udp" : "tcp");
            json_t *o = json_pack("{s:s, s:i, s:s}", "transport", fleet_transport_names[t],
                                  "family", b->sa.sa_family == AF_INET6 ? 6 : 4, "uri", uri);
            if (o && has) {
                json_object_set_new(o, "ip", json_string(addr_ip_str(&reach, ip)));
                json_object_set_new(o, "port", json_integer(addr_port(&reach)));
            }
            if (o && tls && cfg->cluster_domain)
                json_object_set_new(o, "domain", json_string(cfg->cluster_domain));
            json_array_append_new(arr, o);
        }
    }
    char *text = arr ? json_dumps(arr, JSON_COMPACT) : NULL;
    json_decref(arr);
    if (!text && !err[0]) snprintf(err, OPS_ERR_LEN, "out of memory");
    return text;
}
