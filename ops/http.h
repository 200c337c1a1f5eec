/* http.h: the admin/ops HTTP API ternd serves on ops.listen (libmicrohttpd, JSON via jansson). */
#ifndef TERN_OPS_HTTP_H
#define TERN_OPS_HTTP_H

#include "config.h"
#include "relay.h"

struct ops_http;
struct cluster;

/* Bind ops.listen of the relay's running configuration and serve it from one internal thread: GET
 * /healthz, GET /metrics, GET /api/v1/allocations[/{id}] (open without ops.token, else behind it),
 * and the admin endpoints under /api/v1/ (credentials, users, secrets, DELETE allocations) behind
 * ops.token, and GET /api/v1/nodes (the fleet's registry, from cluster: NULL when this node
 * is not in a fleet). relay: where allocations and metrics are read (borrowed; it outlives the
 * server). Logs "ops_listening" (address, port: the bound one when the config says 0), or
 * "ops_listen_failed" naming the address and returns NULL. Call it after the signals are
 * blocked, so the server thread inherits the mask. path: the configuration file, which
 * POST /api/v1/reload re-reads (relay_reload; NULL: the embedded default runs). The server
 * follows reloads: each request sees the configuration running when it arrived (ops.token
 * included); ops.listen itself cannot change live.
 * Slow clients cannot starve it: a request (header and body) not complete 5 s after its
 * connection opened (or its previous request ended) is closed, one address holds at most 16
 * connections, and above 240 of 256 each new connection evicts the oldest unfinished one, so
 * /healthz still answers; what was shed is logged as "ops_http_shed" (at most every 10 s). */
struct ops_http *ops_http_start(struct relay *relay, struct cluster *cluster, const char *path);
/* Close the listener and every connection, wait for the threads, free everything: at once,
 * whatever half-sent requests are open. NULL ok. */
void ops_http_stop(struct ops_http *h);

#endif
