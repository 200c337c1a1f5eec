/* store.h: the credential database (auth.database: a SQLite file, or a PostgreSQL URI that a
 * fleet of nodes shares): long-term users per realm (keys only, never passwords), per-user
 * limits, and TURN REST API secrets. This is I/O: ternd reads it from a background thread into
 * an in-memory cache, off the forwarding path; ternctl and the admin API write it. Its own
 * library target (tern_store), so tern_auth stays pure. The same calls and the same schema on
 * both backends (store_sqlite.c, store_pg.c). */
#ifndef TERN_STORE_H
#define TERN_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stun.h"

/* Each backend has its own schema version (migrations run at open): SQLite's is the file's
 * PRAGMA user_version; PostgreSQL's (tern_schema.version, PG_SCHEMA_VERSION in store_pg.c) also
 * counts the steps only it has (call_quality). */
#define STORE_SQLITE_SCHEMA_VERSION 1
#define STORE_ERR_LEN               256
#define STORE_MAX_SECRET            256 /* bytes */
#define STORE_MAX_NODE              255 /* bytes of a node id (cluster.node_id) */

struct store;

struct store_user {
    char realm[STUN_MAX_TEXT_BYTES + 1];
    char name[STUN_MAX_USERNAME + 1];
    uint8_t key_md5[16];    /* MD5(name:realm:SASLprep(password)) */
    uint8_t key_sha256[32]; /* SHA-256 of the same */
    uint8_t userhash[STUN_USERHASH_LEN];
    uint32_t max_allocations; /* 0: allocation.max_per_user from the config */
    uint64_t bandwidth_bps;   /* bytes per second per allocation; 0: unlimited */
    bool disabled;
    int64_t created; /* unix seconds */
};

struct store_secret {
    int64_t id;
    char secret[STORE_MAX_SECRET + 1];
    int64_t created;
};

enum store_mode {
    STORE_EXISTING, /* the file must exist (ternd): missing, unreadable, newer schema: error */
    STORE_CREATE,   /* create the file and schema when missing (ternctl, first use) */
};

/* Is db a PostgreSQL connection URI (postgresql:// or postgres://) rather than a file? */
bool store_is_uri(const char *db);
/* db as it may be shown in logs, messages and the API: a URI's password (user:PASSWORD@ and
 * any password= parameter) replaced by "***"; a path as it is. */
void store_display_name(const char *db, char *out, size_t size);

/* Open the database and bring its schema to the backend's version (for PostgreSQL the
 * migrations run under an advisory lock, so several nodes may start at once; mode does not
 * matter there: the database must exist, the schema is made). NULL on failure, with a
 * message naming the file (a URI without its password) in err ("tern.db: no such database file
 * (create it with: ternctl
 * --db tern.db user add ...)", "tern.db: schema version 3 is newer than this program's 1
 * (upgrade ternd)", ...). */
struct store *store_open(const char *db, enum store_mode mode, char err[STORE_ERR_LEN]);
/* The same with a PostgreSQL password kept out of the URI and the YAML: the first line of
 * password_file (auth.database_password_file), read at every connect so that a rotated
 * password is picked up; NULL: the URI's, libpq's PGPASSWORD / PGPASSFILE / passfile=, or none.
 * Ignored for SQLite. */
struct store *store_open_with(const char *db, const char *password_file, enum store_mode mode,
                              char err[STORE_ERR_LEN]);
void store_close(struct store *s);

/* Results: 0 ok, STORE_NOT_FOUND, STORE_EXISTS, STORE_INVALID (bad name/password/SASLprep; a
 * record the database refused), STORE_ERROR (database failure; err says what),
 * STORE_UNSUPPORTED (this backend cannot do it: call records on SQLite). */
enum store_result {
    STORE_OK = 0,
    STORE_NOT_FOUND = -1,
    STORE_EXISTS = -2,
    STORE_INVALID = -3,
    STORE_ERROR = -4,
    STORE_UNSUPPORTED = -5
};

int store_user_add(struct store *s, const char *realm, const char *name, const char *password,
                   uint32_t max_allocations, uint64_t bandwidth_bps, char err[STORE_ERR_LEN]);
int store_user_passwd(struct store *s, const char *realm, const char *name, const char *password,
                      char err[STORE_ERR_LEN]);
int store_user_del(struct store *s, const char *realm, const char *name, char err[STORE_ERR_LEN]);
int store_user_set_disabled(struct store *s, const char *realm, const char *name, bool disabled,
                            char err[STORE_ERR_LEN]);
int store_user_set_limits(struct store *s, const char *realm, const char *name,
                          uint32_t max_allocations, uint64_t bandwidth_bps,
                          char err[STORE_ERR_LEN]);
/* Call fn for each user of realm (every realm when realm is NULL), ordered by realm, name.
 * fn returning non-zero stops the walk. Returns STORE_OK or STORE_ERROR. */
int store_user_each(struct store *s, const char *realm,
                    int (*fn)(void *ctx, const struct store_user *u), void *ctx,
                    char err[STORE_ERR_LEN]);

int store_secret_add(struct store *s, const char *secret, int64_t *id, char err[STORE_ERR_LEN]);
int store_secret_del(struct store *s, int64_t id, char err[STORE_ERR_LEN]);
int store_secret_each(struct store *s, int (*fn)(void *ctx, const struct store_secret *sec),
                      void *ctx, char err[STORE_ERR_LEN]);

/* ---- call records (qos.record_database; PostgreSQL only) ---- */

/* One row of call_quality: the columns taken from an ended allocation's quality record (the
 * record file's JSON line), and the record itself. Worst of the two legs (client: what the
 * client sent, peer: what the peers sent): loss is the leg's whole-call RTP loss ratio, jitter
 * the p95 of its 5-s interval jitter (else its last RTP jitter), RTT the p95 of relay<->that
 * endpoint (else the last). NAN and "" leg when no leg measured it. */
struct store_call {
    int64_t id;
    char node[STORE_MAX_NODE + 1];
    char user[STUN_MAX_USERNAME + 1];
    char realm[STUN_MAX_TEXT_BYTES + 1];
    double started_at, ended_at; /* unix seconds */
    double duration;             /* seconds */
    char reason[32];
    double worst_loss; /* ratio */
    char worst_loss_leg[8];
    double worst_jitter; /* seconds */
    char worst_jitter_leg[8];
    double worst_rtt; /* seconds */
    char worst_rtt_leg[8];
    const char *record; /* the whole record as JSON text, valid during the callback */
};

enum store_calls_order {
    STORE_CALLS_BY_LOSS,   /* worst loss first */
    STORE_CALLS_BY_JITTER, /* worst jitter first */
    STORE_CALLS_BY_RTT,    /* worst RTT first */
    STORE_CALLS_BY_TIME,   /* most recently ended first */
};

/* Insert n quality records (JSON texts, as written to qos.record_file) ended on node_id, in one
 * transaction: all or none. STORE_OK; STORE_INVALID when the database refused a record (not
 * JSON, a bad time: retrying the same batch fails the same way); STORE_ERROR (unreachable,
 * ...); STORE_UNSUPPORTED on SQLite. */
int store_calls_insert(struct store *s, const char *const *records_json, size_t n,
                       const char *node_id, char err[STORE_ERR_LEN]);
/* Call fn for each call that ended at or after since_unix (of user when not NULL), in order,
 * at most limit (0: no limit); fn returning non-zero stops. STORE_OK, STORE_ERROR,
 * STORE_UNSUPPORTED. */
int store_calls_each(struct store *s, int64_t since_unix, const char *user,
                     enum store_calls_order order, size_t limit,
                     int (*fn)(void *ctx, const struct store_call *c), void *ctx,
                     char err[STORE_ERR_LEN]);

/* ---- the node registry (docs/fleet.md; PostgreSQL only: STORE_UNSUPPORTED on SQLite) ---- */

/* One node's row, upserted at every heartbeat (store_node_beat) and read by every node
 * (store_nodes_each). */
struct store_node {
    char node_id[STORE_MAX_NODE + 1];
    char version[32];   /* ternd's version */
    int64_t started_at; /* unix seconds */
    double age_s;       /* since its last heartbeat, by the database's clock (read only) */
    bool draining;
    uint64_t allocations, max_allocations; /* max 0: no limit (cluster.max_allocations) */
    double relayed_pps; /* datagrams and messages relayed per second, both ways */
    double cpu;         /* share of the host's CPUs ternd used over the last heartbeat */
    double max_cpu;     /* cluster.max_cpu (0: no limit) */
    uint64_t poor;      /* allocations with an open quality episode (qos.thresholds) */
    /* JSON texts: where clients reach it, [{"transport": "udp"|"tcp"|"tls", "family": 4|6,
     * "address": "IP:PORT" (absent when unknown), "uri": "...", "domain": "..."}], and its
     * allocations per user, {"name": N} (written only; NULL when read). */
    const char *endpoints_json;
    const char *users_json;
};

/* Insert or replace this node's row, its heartbeat the database's now(). STORE_OK,
 * STORE_ERROR, STORE_INVALID (a field the database refused). */
int store_node_beat(struct store *s, const struct store_node *n, char err[STORE_ERR_LEN]);
/* Remove a node's row (it stops cleanly: not shown dead). STORE_OK or STORE_ERROR. */
int store_node_forget(struct store *s, const char *node_id, char err[STORE_ERR_LEN]);
/* Remove every row whose heartbeat is more than older_than_s seconds old by the database's
 * clock (nodes dead that long: cluster.forget_after); *removed gets how many. STORE_OK or
 * STORE_ERROR. */
int store_nodes_prune(struct store *s, uint32_t older_than_s, uint64_t *removed,
                      char err[STORE_ERR_LEN]);
/* Call fn for every row, by node id; fn returning non-zero stops. */
int store_nodes_each(struct store *s, int (*fn)(void *ctx, const struct store_node *n), void *ctx,
                     char err[STORE_ERR_LEN]);
/* Sum per user of the allocations on the nodes other than node_id whose heartbeat is younger
 * than dead_after_s; fn(ctx, user, count) for each user with a count > 0. */
int store_fleet_users(struct store *s, const char *node_id, uint32_t dead_after_s,
                      int (*fn)(void *ctx, const char *user, uint64_t count), void *ctx,
                      char err[STORE_ERR_LEN]);

/* The fleet's shared nonce keys, newest first, at most max (up to 2 are kept): when the newest
 * is older than rotation_s (or there is none), one node adds a fresh random key and drops the
 * oldest, so every node makes nonces with the same key and accepts the previous one. */
#define STORE_NONCE_KEY_LEN 32
int store_nonce_keys(struct store *s, uint32_t rotation_s, uint8_t (*keys)[STORE_NONCE_KEY_LEN],
                     size_t max, size_t *n, char err[STORE_ERR_LEN]);

/* A number that changes whenever another connection committed a change to the file
 * (PRAGMA data_version; PostgreSQL: a counter that triggers bump with every change to users or
 * secrets), so a reader can poll cheaply and reload only after a change. Its own commits do
 * not move it on SQLite: poll on a connection that does not write. -1 if it cannot be read
 * (PostgreSQL: the connection is lost; the next call tries to reconnect). */
int64_t store_data_version(struct store *s);
/* Wait up to timeout_ms for a change made through any connection (PostgreSQL LISTEN/NOTIFY):
 * 1 notified, 0 timed out, -1 the connection is lost, -2 this backend cannot wait (SQLite:
 * poll store_data_version instead). */
int store_wait_change(struct store *s, int timeout_ms);

#endif
