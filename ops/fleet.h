/* fleet.h: the fleet as the node registry shows it (docs/fleet.md): what the cluster thread
 * (cluster.c), the admin API and ternctl share. Reading the registry, telling live nodes from
 * dead ones, ranking the ones a client may be sent to, and this node's own row. */
#ifndef TERN_OPS_FLEET_H
#define TERN_OPS_FLEET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "config.h"
#include "store.h"
#include "stun.h"
#include "uris.h"

/* Where clients reach a node: one transport of one family. */
struct fleet_endpoint {
    int transport; /* 0 udp, 1 tcp, 2 tls (the index of srv.steer) */
    int family;    /* 4 or 6 */
    bool has_addr; /* addr is an address clients can be sent to (ALTERNATE-SERVER) */
    union stun_addr addr;
    char uri[OPS_URI_LEN];
    char domain[254]; /* the name its TLS certificate carries (cluster.domain); "" none */
};

struct fleet_node {
    struct store_node row; /* endpoints_json and users_json are NULL here */
    bool self;             /* the node reading the registry */
    bool alive;            /* heartbeat younger than cluster.dead_after */
    bool full;             /* at its allocation or CPU limit */
    double load;           /* the larger of its allocation and CPU shares of its limits */
    struct fleet_endpoint *ep;
    size_t nep;
};

struct fleet {
    struct fleet_node *v; /* ranked: fleet_offerable first, least loaded first */
    size_t n;
};

/* The transports of endpoints and steering targets, in the order of enum srv_transport
 * (allocation/alloc.h; ops/cluster.c asserts it). */
enum fleet_transport { FLEET_UDP, FLEET_TCP, FLEET_TLS, FLEET_DTLS, FLEET_TRANSPORTS };
#define FLEET_URI_NODES 3 /* credentials name the best three nodes of a fleet */
extern const char *const fleet_transport_names[FLEET_TRANSPORTS]; /* "udp", "tcp", "tls", "dtls" */

/* Read every row (the registry of s), self_id's marked, dead_after_s deciding which are alive,
 * and rank them. STORE_OK, or a store error with err saying why (out is then empty). */
int fleet_read(struct store *s, const char *self_id, uint32_t dead_after_s, struct fleet *out,
               char err[STORE_ERR_LEN]);
void fleet_free(struct fleet *f);
/* May a client be sent there: alive, not draining, not full. */
bool fleet_offerable(const struct fleet_node *n);
/* The URIs of the best max_nodes offerable nodes (in rank order, each node's in its order),
 * without duplicates; how many nodes gave URIs (0: none is offerable, u left empty). */
size_t fleet_uris(const struct fleet *f, size_t max_nodes, struct ops_uris *u);
/* The registry as GET /api/v1/nodes and ternctl nodes show it: {"nodes": [...], "dead_after":
 * N}, each node with its state ("alive", "draining", "full", "dead"). NULL: out of memory. */
json_t *fleet_json(const struct fleet *f, uint32_t dead_after_s);

/* This node's endpoints from the running configuration and the bound ports (bound[i]: the
 * address listener i of cfg is bound to), as the registry's JSON text (malloc'd; NULL: out of
 * memory or err says why). */
struct relay_bound {
    enum cfg_transport transport;
    union stun_addr addr;
};
char *fleet_endpoints_json(const struct tern_config *cfg, const struct relay_bound *bound, size_t n,
                           char err[OPS_ERR_LEN]);
/* The node id: cluster.node_id, else the host name. 0, or -1 (no host name). */
int fleet_node_id(const struct tern_config *cfg, char out[STORE_MAX_NODE + 1]);

#endif
