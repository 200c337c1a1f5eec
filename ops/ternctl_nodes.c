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

int ctl_cmd_nodes(struct ctl *c, int argc, char **argv)
{
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
