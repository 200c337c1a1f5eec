/* credcache.h: the credentials the workers authenticate against: static users from the
 * config plus, when auth.database is set, an in-memory copy of the database (a SQLite file or
 * PostgreSQL), refreshed by a background thread whenever it changes. Workers never wait on the
 * database, and a database that goes away stops nothing: the last copy keeps serving. */
#ifndef TERN_CREDCACHE_H
#define TERN_CREDCACHE_H

#include "config.h"
#include "users.h"

struct credcache;

/* Open the database (when configured: it must exist and have a schema this program knows),
 * load it, and start the refresher. NULL after logging what failed, naming the file. */
struct credcache *credcache_open(const struct tern_config *cfg, const struct auth_users *statics);
/* Stop the refresher and free everything. */
void credcache_close(struct credcache *c);
/* The database's state: -1 none configured, 1 reachable, 0 gone (the last snapshot serves);
 * *outages: how many times it went away. */
int credcache_database(const struct credcache *c, uint64_t *outages);
/* Serve these static users from now on (a live reload); the caller frees the old ones once
 * this returns (no lookup holds them then). Bumps the generation (auth.strict_expiry). */
void credcache_statics(struct credcache *c, const struct auth_users *statics);
/* The lookup interface over static users first, then the database copy. */
struct auth_creds credcache_creds(struct credcache *c);

#endif
