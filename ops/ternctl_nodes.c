/* ternctl_nodes.c: ternctl nodes: the fleet's registry (docs/fleet.md), read from the database
 * (-c FILE / --db URI: fleet_read, ranked as the nodes rank it) or from a node's admin API
 * (--url: GET /api/v1/nodes), as a table or as JSON. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "fleet.h"
#include "ternctl.h"

#define NODES_DEFAULT_DEAD_AFTER 10 /* cluster.dead_after's default, without a config */

static double num(const json_t *o, const char *k)
{
    const json_t *v = json_object_get(o, k);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

static int print_table(const json_t *ans)
{
    const json_t *nodes = json_object_get(ans, "nodes");
    if (!json_is_array(nodes)) return ctl_failure("the answer has no \"nodes\" array");
    printf("%-20s %-9s %6s %7s %7s %6s %6s %9s %5s  %s\n", "NODE", "STATE", "AGE", "ALLOCS",
           "LIMIT", "LOAD", "CPU", "PPS", "POOR", "ENDPOINTS");
    size_t i;
    const json_t *n;
    json_array_foreach(nodes, i, n)
    {
        char id[64], state[16], eps[512] = "";
        const char *s = json_string_value(json_object_get(n, "node_id"));
        ctl_clean_text(s ? s : "?", s ? strlen(s) : 1, id, sizeof id);
        s = json_string_value(json_object_get(n, "state"));
        ctl_clean_text(s ? s : "?", s ? strlen(s) : 1, state, sizeof state);
        size_t k, el = 0;
        const json_t *ep;
        json_array_foreach(json_object_get(n, "endpoints"), k, ep)
        {
            const char *u = json_string_value(json_object_get(ep, "uri"));
            char clean[300];
            if (!u) continue;
            ctl_clean_text(u, strlen(u), clean, sizeof clean);
            int w = snprintf(eps + el, sizeof eps - el, "%s%s", el ? " " : "", clean);
            if (w > 0 && (size_t)w < sizeof eps - el) el += (size_t)w;
        }
        bool self = json_is_true(json_object_get(n, "self"));
        printf("%-20s %-9s %5.1fs %7llu %7llu %5.0f%% %5.0f%% %9.0f %5llu  %s%s\n", id, state,
               num(n, "heartbeat_age_seconds"),
               (unsigned long long)ctl_json_u64(n, "allocations", 0),
               (unsigned long long)ctl_json_u64(n, "max_allocations", 0), num(n, "load") * 100,
               num(n, "cpu") * 100, num(n, "relayed_pps"),
               (unsigned long long)ctl_json_u64(n, "poor_allocations", 0), eps,
               self ? "  (this node)" : "");
    }
    if (json_array_size(nodes) == 0) printf("(no node has written a row yet)\n");
    return 0;
}

/* ternctl nodes forget ID [--force]: remove a node's row. A live node would write it again at
 * its next heartbeat, so one is refused unless --force (say, a node being re-imaged). */
static int nodes_forget(struct ctl *c, int argc, char **argv)
{
    static const struct option opts[] = {{"force", no_argument, NULL, 'f'}, {NULL, 0, NULL, 0}};
    bool force = false;
    int opt;
    optind = 0;
    while ((opt = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        if (opt == 'f')
            force = true;
        else
            return ctl_bad_option("nodes forget", argv, opt);
    }
    if (optind + 1 != argc) return ctl_usage_error("nodes forget: give one node id");
    const char *id = argv[optind];
    if (c->url)
        return ctl_usage_error("nodes forget: needs the database (-c FILE or --db URI), not --url");
    struct store *s;
    int orc = ctl_open_db(c, STORE_EXISTING, &s);
    if (orc) return orc;
    char err[STORE_ERR_LEN] = "", clean[STORE_MAX_NODE * 4 + 1];
    ctl_clean_text(id, strlen(id), clean, sizeof clean);
    uint32_t dead = c->have_cfg ? c->cfg.cluster_dead_after : NODES_DEFAULT_DEAD_AFTER;
    struct fleet f;
    int r = fleet_read(s, NULL, dead, &f, err);
    if (r != STORE_OK) {
        store_close(s);
        return ctl_store_failure(r, err, NULL, NULL, "reading the registry");
    }
    const struct fleet_node *n = NULL;
    for (size_t i = 0; i < f.n && !n; i++)
        if (strcmp(f.v[i].row.node_id, id) == 0) n = &f.v[i];
    int rc = 0;
    if (!n) {
        rc = ctl_failure("no node '%s' in the registry", clean);
    } else if (n->alive && !force) {
        rc = ctl_failure("node '%s' is alive (heartbeat %.1f s ago): it would write its row "
                         "again at its next heartbeat; stop it first, or give --force",
                         clean, n->row.age_s);
    } else {
        double age = n->row.age_s;
        bool alive = n->alive;
        r = store_node_forget(s, id, err);
        if (r != STORE_OK)
            rc = ctl_store_failure(r, err, NULL, NULL, "removing the node's row");
        else
            printf("forgot node %s (%s, last heartbeat %.0f s ago)\n", clean,
                   alive ? "alive" : "dead", age);
    }
    fleet_free(&f);
    store_close(s);
    return rc;
}

int ctl_cmd_nodes(struct ctl *c, int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "forget") == 0) return nodes_forget(c, argc - 1, argv + 1);
    bool json = false;
    int lrc = ctl_list_options("nodes", argc, argv, &json);
    if (lrc >= 0) return lrc;
    json_t *ans = NULL;
    if (c->url) {
        if (ctl_api_call(c, "GET", "/api/v1/nodes", NULL, &ans)) return 1;
        if (!(ans = ctl_want_object(c, "/api/v1/nodes", ans))) return 1;
    } else {
        struct store *s;
        int orc = ctl_open_db(c, STORE_EXISTING, &s);
        if (orc) return orc;
        char self[STORE_MAX_NODE + 1] = "", err[STORE_ERR_LEN] = "";
        uint32_t dead = c->have_cfg ? c->cfg.cluster_dead_after : NODES_DEFAULT_DEAD_AFTER;
        if (c->have_cfg && fleet_node_id(&c->cfg, self)) self[0] = '\0';
        struct fleet f;
        int r = fleet_read(s, self[0] ? self : NULL, dead, &f, err);
        store_close(s);
        if (r != STORE_OK) return ctl_store_failure(r, err, NULL, NULL, "reading the registry");
        ans = fleet_json(&f, dead);
        fleet_free(&f);
        if (!ans) return ctl_failure("out of memory");
    }
    if (json) return ctl_print_json_line(ans); /* takes ans */
    int rc = print_table(ans);
    json_decref(ans);
    return rc;
}
