/* cluster.h: this node's part in the fleet (docs/fleet.md): a thread that writes the node's
 * registry row every cluster.heartbeat, reads the others', and hands the relay what follows
 * from them: where to steer new Allocates (cluster.redirect), the fleet's nonce keys
 * (cluster.shared_nonce) and the other nodes' allocations per user
 * (allocation.max_per_user_fleet). All of it off the forwarding path, on its own database
 * connection; the database going away changes nothing that runs (the last keys stay, steering
 * stops once the registry is older than cluster.dead_after). */
#ifndef TERN_OPS_CLUSTER_H
#define TERN_OPS_CLUSTER_H

#include <jansson.h>

#include "relay.h"
#include "uris.h"

struct cluster;

/* Start it when auth.database is PostgreSQL (else NULL, and nothing to do: *failed false). A
 * start that fails (no thread, no node id) logs why, sets *failed and returns NULL. */
struct cluster *cluster_start(struct relay *r, const char *version, bool *failed);
/* Stop the thread and remove this node's row (a node that stops cleanly is not shown dead).
 * NULL ok. */
void cluster_stop(struct cluster *c);
/* The registry as of the last heartbeat (GET /api/v1/nodes): fleet_json plus "read_age_seconds"
 * (how old that reading is; absent when the registry was never read). NULL: out of memory. */
json_t *cluster_nodes(struct cluster *c);
/* The URIs of the best offerable nodes as of the last heartbeat (POST /api/v1/credentials); 0
 * when the registry was never read or no node is offerable (then the caller gives its own). */
size_t cluster_uris(struct cluster *c, size_t max_nodes, struct ops_uris *u);

/* The fleet's gauges and counters for /metrics (Prometheus text, malloc'd; NULL: out of
 * memory): nodes by state as of the last reading, whether the registry is reachable, how old
 * the reading is, the nonce keys in use, failed heartbeats. */
char *cluster_metrics(struct cluster *c);

#endif
