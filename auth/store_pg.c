/* store_pg.c: the credential database on PostgreSQL (libpq), the store a fleet of nodes
 * shares: the same schema and calls as store_sqlite.c. Changes are announced by triggers
 * (LISTEN/NOTIFY on "tern_credentials") and counted in tern_changes, so readers wait on the
 * connection instead of polling and still have a cheap version to compare. Every message
 * names the database without its password (store_display_name). */
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "auth.h"
#include "store_impl.h"

#define CONNECT_TIMEOUT_S "3"
#define NOTIFY_CHANNEL    "tern_credentials"
#define MIGRATION_LOCK    "7236851" /* pg_advisory_xact_lock key: one migrating node at a time */
#define NONCE_LOCK        "7236852" /* pg_advisory_xact_lock key: one node rotates nonce keys */
/* This backend's schema version (tern_schema.version): one migration step per version. */
#define PG_SCHEMA_VERSION 3
#define CALLS_BATCH_MAX   4096 /* records per store_calls_insert */

struct pg_store {
    struct store base; /* first: a struct store * is a struct pg_store * */
    PGconn *conn;
    char *uri;
    char *password_file; /* read at every (re)connect, so a rotated password is picked up */
    bool listening;      /* LISTEN issued on this connection */
    char name[STORE_ERR_LEN / 2];
};

static struct pg_store *pg(struct store *base)
{
    return (struct pg_store *)(void *)base;
}

__attribute__((format(printf, 3, 4))) static void seterr(char *err, const char *name,
                                                         const char *fmt, ...)
{
    if (!err) return;
    int n = snprintf(err, STORE_ERR_LEN, "%s: ", name);
    if (n < 0 || n >= STORE_ERR_LEN) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err + n, STORE_ERR_LEN - (size_t)n, fmt, ap);
    va_end(ap);
}

/* libpq's message, on one line. */
static const char *pq_msg(const char *m, char out[160])
{
    size_t n = 0;
    for (; m && *m && n + 1 < 160; m++)
        out[n++] = *m == '\n' || *m == '\r' ? ' ' : *m;
    while (n && out[n - 1] == ' ')
        n--;
    out[n] = '\0';
    return n ? out : "unknown error";
}

static void quiet(void *arg, const char *msg)
{
    (void)arg;
    (void)msg; /* NOTICEs (CREATE ... IF NOT EXISTS) are not for ternd's stderr */
}

/* migrations[v] brings the schema from version v to v + 1 (step 0: the same tables as SQLite's,
 * in PostgreSQL's types; later steps are PostgreSQL's own). Never edit a shipped step: append
 * one and raise PG_SCHEMA_VERSION. */
static const char *const migrations[] = {
    /* 0 -> 1 */
    "CREATE TABLE users ("
    " realm text NOT NULL,"
    " name text NOT NULL,"
    " key_md5 bytea NOT NULL CHECK (length(key_md5) = 16),"
    " key_sha256 bytea NOT NULL CHECK (length(key_sha256) = 32),"
    " userhash bytea NOT NULL CHECK (length(userhash) = 32),"
    " max_allocations bigint NOT NULL DEFAULT 0"
    "  CHECK (max_allocations BETWEEN 0 AND 4294967295),"
    " bandwidth_bps bigint NOT NULL DEFAULT 0 CHECK (bandwidth_bps >= 0),"
    " disabled boolean NOT NULL DEFAULT false,"
    " created bigint NOT NULL,"
    " PRIMARY KEY (realm, name));"
    "CREATE INDEX users_userhash ON users (userhash);"
    /* Identity ids come from a sequence: an id once shown is never given to another secret. */
    "CREATE TABLE secrets ("
    " id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    " secret text NOT NULL UNIQUE,"
    " created bigint NOT NULL);"
    /* Every statement that changes users or secrets bumps the version and notifies. */
    "CREATE TABLE tern_changes (id integer PRIMARY KEY CHECK (id = 1), version bigint NOT NULL);"
    "INSERT INTO tern_changes VALUES (1, 0);"
    "CREATE FUNCTION tern_changed() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
    " UPDATE tern_changes SET version = version + 1 WHERE id = 1;"
    " PERFORM pg_notify('" NOTIFY_CHANNEL "', '');"
    " RETURN NULL; END $$;"
    "CREATE TRIGGER users_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON users"
    " FOR EACH STATEMENT EXECUTE FUNCTION tern_changed();"
    "CREATE TRIGGER secrets_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON secrets"
    " FOR EACH STATEMENT EXECUTE FUNCTION tern_changed();",
    /* 1 -> 2: call records (qos.record_database): one row per ended allocation of any node,
     * the columns "worst calls of the last hour" needs, and the whole record. No trigger: the
     * credential refresher does not care. */
    "CREATE TABLE call_quality ("
    " id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    " node text NOT NULL,"
    " user_name text,"
    " realm text,"
    " started_at timestamptz,"
    " ended_at timestamptz NOT NULL,"
    " duration double precision,"
    " reason text,"
    " worst_loss double precision,"
    " worst_loss_leg text CHECK (worst_loss_leg IN ('client', 'peer')),"
    " worst_jitter double precision,"
    " worst_jitter_leg text CHECK (worst_jitter_leg IN ('client', 'peer')),"
    " worst_rtt double precision,"
    " worst_rtt_leg text CHECK (worst_rtt_leg IN ('client', 'peer')),"
    " record jsonb NOT NULL);"
    "CREATE INDEX call_quality_ended ON call_quality (ended_at);"
    "CREATE INDEX call_quality_user ON call_quality (user_name, ended_at);"
    "CREATE INDEX call_quality_loss ON call_quality (worst_loss DESC NULLS LAST);"
    "CREATE INDEX call_quality_jitter ON call_quality (worst_jitter DESC NULLS LAST);"
    "CREATE INDEX call_quality_rtt ON call_quality (worst_rtt DESC NULLS LAST);",
    /* 2 -> 3: the node registry and the fleet's nonce keys (docs/fleet.md). From this version
     * on, tern_schema.compat is the oldest schema version a program may know and still run
     * on this one: a step that only adds (tables, columns with defaults) leaves it, so nodes
     * of the previous release keep running while the fleet is upgraded one node at a time. */
    "ALTER TABLE tern_schema ADD COLUMN compat integer NOT NULL DEFAULT 3;"
    "CREATE TABLE tern_nodes ("
    " node_id text PRIMARY KEY,"
    " version text NOT NULL,"
    " started_at timestamptz NOT NULL,"
    " heartbeat timestamptz NOT NULL,"
    " draining boolean NOT NULL,"
    " allocations bigint NOT NULL CHECK (allocations >= 0),"
    " max_allocations bigint NOT NULL CHECK (max_allocations >= 0),"
    " relayed_pps double precision NOT NULL,"
    " cpu double precision NOT NULL,"
    " max_cpu double precision NOT NULL,"
    " poor bigint NOT NULL CHECK (poor >= 0),"
    " endpoints jsonb NOT NULL CHECK (jsonb_typeof(endpoints) = 'array'),"
    " users jsonb NOT NULL CHECK (jsonb_typeof(users) = 'object'));"
    "CREATE TABLE tern_nonce_keys ("
    " id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    " secret bytea NOT NULL CHECK (length(secret) = 32),"
    " created timestamptz NOT NULL DEFAULT now());",
};
_Static_assert(sizeof(migrations) / sizeof(migrations[0]) == PG_SCHEMA_VERSION,
               "one migration step per schema version");

static bool ok(const PGresult *r)
{
    ExecStatusType t = PQresultStatus(r);
    return t == PGRES_COMMAND_OK || t == PGRES_TUPLES_OK;
}

/* The first line of the password file (auth.database_password_file). 0 / -1 (err set). */
static int read_password(struct pg_store *s, char *out, size_t size, char *err)
{
    FILE *f = fopen(s->password_file, "re");
    if (!f) {
        seterr(err, s->name, "cannot read the password file %s: %s", s->password_file,
               strerror(errno));
        return -1;
    }
    bool got = fgets(out, (int)size, f) != NULL;
    fclose(f);
    out[got ? strcspn(out, "\r\n") : 0] = '\0';
    if (!got || !*out) {
        seterr(err, s->name, "the password file %s is empty", s->password_file);
        return -1;
    }
    return 0;
}

static int connect_db(struct pg_store *s, char *err)
{
    const char *keys[5] = {"dbname", "connect_timeout", "application_name", NULL, NULL};
    const char *vals[5] = {s->uri, CONNECT_TIMEOUT_S, "ternd", NULL, NULL};
    char pw[1024];
    if (s->password_file) {
        if (read_password(s, pw, sizeof pw, err)) return -1;
        keys[3] = "password";
        vals[3] = pw;
    }
    if (s->conn) PQfinish(s->conn);
    s->listening = false;
    s->conn = PQconnectdbParams(keys, vals, 1);
    if (s->password_file) OPENSSL_cleanse(pw, sizeof pw);
    char m[160];
    if (!s->conn) {
        seterr(err, s->name, "cannot connect: out of memory");
        return -1;
    }
    if (PQstatus(s->conn) != CONNECTION_OK) {
        seterr(err, s->name, "cannot connect: %s", pq_msg(PQerrorMessage(s->conn), m));
        return -1;
    }
    PQsetNoticeProcessor(s->conn, quiet, NULL);
    return 0;
}

/* The connection, reconnected if it was lost. 0 / -1 (err set). */
static int ensure(struct pg_store *s, char *err)
{
    if (s->conn && PQstatus(s->conn) == CONNECTION_OK) return 0;
    return connect_db(s, err);
}

/* Run a statement with text parameters (bytea ones binary, lengths given); results binary. */
static PGresult *run(struct pg_store *s, const char *sql, int n, const char *const *vals,
                     const int *lens, const int *fmts, char *err, const char *what)
{
    if (ensure(s, err)) return NULL;
    PGresult *r = PQexecParams(s->conn, sql, n, NULL, vals, lens, fmts, 1);
    if (!r && PQstatus(s->conn) != CONNECTION_OK && !ensure(s, err)) /* lost: retry once */
        r = PQexecParams(s->conn, sql, n, NULL, vals, lens, fmts, 1);
    if (!r) {
        char m[160];
        seterr(err, s->name, "%s: %s", what, pq_msg(PQerrorMessage(s->conn), m));
    }
    return r;
}

/* The error for a failed result: STORE_EXISTS for a unique violation, else STORE_ERROR. */
static int failed(struct pg_store *s, PGresult *r, char *err, const char *what, const char *exists)
{
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    char m[160];
    if (state && strcmp(state, "23505") == 0 && exists) {
        seterr(err, s->name, "%s: %s", what, exists);
        PQclear(r);
        return STORE_EXISTS;
    }
    seterr(err, s->name, "%s: %s", what, pq_msg(PQresultErrorMessage(r), m));
    PQclear(r);
    return STORE_ERROR;
}

/* failed(), but data and constraint errors (SQLSTATE classes 22, 23) are the input's fault:
 * STORE_INVALID (retrying the same values fails the same way). */
static int failed_input(struct pg_store *s, PGresult *r, char *err, const char *what)
{
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    bool bad = state && (strncmp(state, "22", 2) == 0 || strncmp(state, "23", 2) == 0);
    int rc = failed(s, r, err, what, NULL);
    return bad ? STORE_INVALID : rc;
}

static int exec_simple(struct pg_store *s, const char *sql, char *err, const char *what)
{
    PGresult *r = PQexec(s->conn, sql);
    if (!r || !ok(r)) {
        char m[160];
        seterr(err, s->name, "%s: %s", what,
               pq_msg(r ? PQresultErrorMessage(r) : PQerrorMessage(s->conn), m));
        PQclear(r);
        return -1;
    }
    PQclear(r);
    return 0;
}

/* Bring the schema to PG_SCHEMA_VERSION in one transaction, one node at a time. */
static int migrate(struct pg_store *s, char *err)
{
    if (exec_simple(s, "BEGIN", err, "cannot start the schema migration")) return -1;
    if (exec_simple(s, "SELECT pg_advisory_xact_lock(" MIGRATION_LOCK ")", err,
                    "cannot lock the schema for migration") ||
        exec_simple(s, "CREATE TABLE IF NOT EXISTS tern_schema (version integer NOT NULL)", err,
                    "cannot create the schema version table"))
        goto rollback;
    PGresult *r = PQexec(s->conn, "SELECT version FROM tern_schema");
    if (!r || PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) > 1) {
        char m[160];
        seterr(err, s->name, "cannot read the schema version: %s",
               pq_msg(r ? PQresultErrorMessage(r) : PQerrorMessage(s->conn), m));
        PQclear(r);
        goto rollback;
    }
    long long v = PQntuples(r) ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : -1;
    PQclear(r);
    if (v < 0) {
        if (exec_simple(s, "INSERT INTO tern_schema VALUES (0)", err,
                        "cannot record the schema version"))
            goto rollback;
        v = 0;
    }
    if (v > PG_SCHEMA_VERSION) {
        /* A newer node migrated the fleet's schema: run on it if it says we still can. */
        long long compat = v;
        PGresult *c = v >= 3 ? PQexec(s->conn, "SELECT compat FROM tern_schema") : NULL;
        if (c && PQresultStatus(c) == PGRES_TUPLES_OK && PQntuples(c) == 1)
            compat = strtoll(PQgetvalue(c, 0, 0), NULL, 10);
        PQclear(c);
        if (compat > PG_SCHEMA_VERSION) {
            seterr(err, s->name,
                   "schema version %lld is newer than this program's %d and needs at least %lld "
                   "(upgrade ternd)",
                   v, PG_SCHEMA_VERSION, compat);
            goto rollback;
        }
        return exec_simple(s, "COMMIT", err, "cannot commit the schema check") ? -1 : 0;
    }
    for (long long from = v; from < PG_SCHEMA_VERSION; from++) {
        char what[96], set[64];
        snprintf(what, sizeof what, "cannot migrate the schema from version %lld to %lld", from,
                 from + 1);
        snprintf(set, sizeof set, "UPDATE tern_schema SET version = %lld", from + 1);
        if (exec_simple(s, migrations[from], err, what) || exec_simple(s, set, err, what))
            goto rollback;
    }
    if (exec_simple(s, "COMMIT", err, "cannot commit the schema migration")) goto rollback;
    return 0;
rollback:;
    PGresult *rb = PQexec(s->conn, "ROLLBACK");
    PQclear(rb);
    return -1;
}

static void pg_close(struct store *base)
{
    struct pg_store *s = pg(base);
    if (s->conn) PQfinish(s->conn);
    free(s->password_file);
    if (s->uri) {
        OPENSSL_cleanse(s->uri, strlen(s->uri)); /* it may carry the password */
        free(s->uri);
    }
    free(s);
}

/* ---- users ---- */

static int pg_user_add(struct store *base, const char *realm, const char *name,
                       const char *password, uint32_t max_allocations, uint64_t bandwidth_bps,
                       char err[STORE_ERR_LEN])
{
    struct pg_store *s = pg(base);
    static const char sql[] = "INSERT INTO users (realm, name, key_md5, key_sha256, userhash, "
                              "max_allocations, bandwidth_bps, disabled, created) "
                              "VALUES ($1, $2, $3, $4, $5, $6, $7, false, $8)";
    uint8_t md5[16], sha256[32], userhash[STUN_USERHASH_LEN];
    char what[STORE_ERR_LEN], why[64], maxa[24], bw[24], now[24];
    const char *bad;
    int ret = STORE_INVALID;
    store_user_what(what, sizeof(what), "add", realm, name);
    if ((bad = store_check_user(realm, name, why)) ||
        (bad = store_derive_keys(realm, name, password, md5, sha256))) {
        seterr(err, s->name, "%s: %s", what, bad);
        goto out;
    }
    if (bandwidth_bps > INT64_MAX) {
        seterr(err, s->name, "%s: bandwidth %llu bytes/s is more than %lld", what,
               (unsigned long long)bandwidth_bps, (long long)INT64_MAX);
        goto out;
    }
    if (auth_userhash(name, strlen(name), realm, strlen(realm), userhash)) {
        ret = STORE_ERROR;
        seterr(err, s->name, "%s: cannot compute the userhash", what);
        goto out;
    }
    snprintf(maxa, sizeof maxa, "%u", (unsigned)max_allocations);
    snprintf(bw, sizeof bw, "%llu", (unsigned long long)bandwidth_bps);
    snprintf(now, sizeof now, "%lld", (long long)time(NULL));
    const char *vals[8] = {
        realm, name, (const char *)md5, (const char *)sha256, (const char *)userhash, maxa,
        bw,    now};
    const int lens[8] = {0, 0, 16, 32, STUN_USERHASH_LEN, 0, 0, 0};
    const int fmts[8] = {0, 0, 1, 1, 1, 0, 0, 0};
    PGresult *r = run(s, sql, 8, vals, lens, fmts, err, what);
    if (!r)
        ret = STORE_ERROR;
    else if (!ok(r))
        ret = failed(s, r, err, what, "it already exists");
    else {
        PQclear(r);
        ret = STORE_OK;
    }
out:
    OPENSSL_cleanse(sha256, sizeof(sha256));
    OPENSSL_cleanse(md5, sizeof(md5));
    return ret;
}

/* An UPDATE or DELETE of one user: STORE_NOT_FOUND when no row matched. */
static int change_user(struct pg_store *s, const char *sql, int n, const char *const *vals,
                       const int *lens, const int *fmts, const char *what, char *err)
{
    PGresult *r = run(s, sql, n, vals, lens, fmts, err, what);
    if (!r) return STORE_ERROR;
    if (!ok(r)) return failed(s, r, err, what, NULL);
    bool none = strcmp(PQcmdTuples(r), "0") == 0;
    PQclear(r);
    if (none) {
        seterr(err, s->name, "%s: no such user", what);
        return STORE_NOT_FOUND;
    }
    return STORE_OK;
}

static int pg_user_passwd(struct store *base, const char *realm, const char *name,
                          const char *password, char err[STORE_ERR_LEN])
{
    struct pg_store *s = pg(base);
    uint8_t md5[16], sha256[32];
    char what[STORE_ERR_LEN], why[64];
    const char *bad;
    int ret = STORE_INVALID;
    store_user_what(what, sizeof(what), "change the password of", realm, name);
    if ((bad = store_check_user(realm, name, why)) ||
        (bad = store_derive_keys(realm, name, password, md5, sha256))) {
        seterr(err, s->name, "%s: %s", what, bad);
        goto out;
    }
    const char *vals[4] = {realm, name, (const char *)md5, (const char *)sha256};
    const int lens[4] = {0, 0, 16, 32}, fmts[4] = {0, 0, 1, 1};
    ret = change_user(s,
                      "UPDATE users SET key_md5 = $3, key_sha256 = $4 "
                      "WHERE realm = $1 AND name = $2",
                      4, vals, lens, fmts, what, err);
out:
    OPENSSL_cleanse(sha256, sizeof(sha256));
    OPENSSL_cleanse(md5, sizeof(md5));
    return ret;
}

static int pg_user_del(struct store *base, const char *realm, const char *name,
                       char err[STORE_ERR_LEN])
{
    struct pg_store *s = pg(base);
    char what[STORE_ERR_LEN], why[64];
    const char *bad;
    store_user_what(what, sizeof(what), "delete", realm, name);
    if ((bad = store_check_user(realm, name, why))) {
        seterr(err, s->name, "%s: %s", what, bad);
        return STORE_INVALID;
    }
    const char *vals[2] = {realm, name};
    return change_user(s, "DELETE FROM users WHERE realm = $1 AND name = $2", 2, vals, NULL, NULL,
                       what, err);
}

static int pg_user_set_disabled(struct store *base, const char *realm, const char *name,
                                bool disabled, char err[STORE_ERR_LEN])
{
    struct pg_store *s = pg(base);
    char what[STORE_ERR_LEN], why[64];
    const char *bad;
    store_user_what(what, sizeof(what), disabled ? "disable" : "enable", realm, name);
    if ((bad = store_check_user(realm, name, why))) {
        seterr(err, s->name, "%s: %s", what, bad);
        return STORE_INVALID;
    }
    const char *vals[3] = {realm, name, disabled ? "true" : "false"};
    return change_user(s, "UPDATE users SET disabled = $3 WHERE realm = $1 AND name = $2", 3, vals,
                       NULL, NULL, what, err);
}

static int pg_user_set_limits(struct store *base, const char *realm, const char *name,
                              uint32_t max_allocations, uint64_t bandwidth_bps,
                              char err[STORE_ERR_LEN])
{
    struct pg_store *s = pg(base);
    char what[STORE_ERR_LEN], why[64], maxa[24], bw[24];
    const char *bad;
    store_user_what(what, sizeof(what), "set the limits of", realm, name);
    if ((bad = store_check_user(realm, name, why))) {
        seterr(err, s->name, "%s: %s", what, bad);
        return STORE_INVALID;
    }
    if (bandwidth_bps > INT64_MAX) {
        seterr(err, s->name, "%s: bandwidth %llu bytes/s is more than %lld", what,
               (unsigned long long)bandwidth_bps, (long long)INT64_MAX);
        return STORE_INVALID;
    }
    snprintf(maxa, sizeof maxa, "%u", (unsigned)max_allocations);
    snprintf(bw, sizeof bw, "%llu", (unsigned long long)bandwidth_bps);
    const char *vals[4] = {realm, name, maxa, bw};
    return change_user(s,
                       "UPDATE users SET max_allocations = $3, bandwidth_bps = $4 "
                       "WHERE realm = $1 AND name = $2",
                       4, vals, NULL, NULL, what, err);
}

/* Binary result columns. */
static int col_text(const PGresult *r, int row, int col, char *out, size_t max)
{
    int n = PQgetlength(r, row, col);
    const char *v = PQgetvalue(r, row, col);
    if (PQgetisnull(r, row, col) || n <= 0 || (size_t)n > max || memchr(v, 0, (size_t)n)) return -1;
    memcpy(out, v, (size_t)n);
    out[n] = '\0';
    return 0;
}

static int col_blob(const PGresult *r, int row, int col, uint8_t *out, size_t len)
{
    if (PQgetisnull(r, row, col) || (size_t)PQgetlength(r, row, col) != len) return -1;
    memcpy(out, PQgetvalue(r, row, col), len);
    return 0;
}

static int col_i64(const PGresult *r, int row, int col, int64_t min, int64_t max, int64_t *out)
{
    if (PQgetisnull(r, row, col) || PQgetlength(r, row, col) != 8) return -1;
    const uint8_t *b = (const uint8_t *)PQgetvalue(r, row, col);
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | b[i];
    *out = (int64_t)v;
    return *out < min || *out > max ? -1 : 0;
}

static int col_bool(const PGresult *r, int row, int col, bool *out)
{
    if (PQgetisnull(r, row, col) || PQgetlength(r, row, col) != 1) return -1;
    *out = PQgetvalue(r, row, col)[0] != 0;
    return 0;
}

static const char *read_user(const PGresult *r, int row, struct store_user *u)
{
    int64_t maxalloc, bw, created;
    memset(u, 0, sizeof(*u));
    if (col_text(r, row, 0, u->realm, STUN_MAX_TEXT_BYTES)) return "realm";
    if (col_text(r, row, 1, u->name, STUN_MAX_USERNAME)) return "name";
    if (col_blob(r, row, 2, u->key_md5, sizeof(u->key_md5))) return "key_md5";
    if (col_blob(r, row, 3, u->key_sha256, sizeof(u->key_sha256))) return "key_sha256";
    if (col_blob(r, row, 4, u->userhash, sizeof(u->userhash))) return "userhash";
    if (col_i64(r, row, 5, 0, UINT32_MAX, &maxalloc)) return "max_allocations";
    if (col_i64(r, row, 6, 0, INT64_MAX, &bw)) return "bandwidth_bps";
    if (col_bool(r, row, 7, &u->disabled)) return "disabled";
    if (col_i64(r, row, 8, INT64_MIN, INT64_MAX, &created)) return "created";
    u->max_allocations = (uint32_t)maxalloc;
    u->bandwidth_bps = (uint64_t)bw;
    u->created = created;
    return NULL;
}

static int pg_user_each(struct store *base, const char *realm,
                        int (*fn)(void *ctx, const struct store_user *u), void *ctx,
                        char err[STORE_ERR_LEN])
{
    struct pg_store *s = pg(base);
    static const char cols[] = "SELECT realm, name, key_md5, key_sha256, userhash, "
                               "max_allocations, bandwidth_bps, disabled, created FROM users ";
    char sql[256], what[STORE_ERR_LEN], cr[STORE_CLIP_BYTES + 4];
    snprintf(sql, sizeof sql, "%s%s", cols,
             realm ? "WHERE realm = $1 ORDER BY name" : "ORDER BY realm, name");
    if (realm)
        snprintf(what, sizeof(what), "cannot list the users of realm \"%s\"",
                 store_clip(realm, cr));
    else
        snprintf(what, sizeof(what), "cannot list the users");
    const char *vals[1] = {realm};
    /* One statement: one snapshot of the table, whatever commits meanwhile. */
    PGresult *r = run(s, sql, realm ? 1 : 0, vals, NULL, NULL, err, what);
    if (!r) return STORE_ERROR;
    if (!ok(r)) return failed(s, r, err, what, NULL);
    struct store_user u;
    int ret = STORE_OK;
    for (int i = 0; i < PQntuples(r); i++) {
        const char *bad = read_user(r, i, &u);
        if (bad) {
            char cn[STORE_CLIP_BYTES + 4], nm[STUN_MAX_USERNAME + 1] = "";
            col_text(r, i, 1, nm, STUN_MAX_USERNAME);
            seterr(err, s->name, "%s: the row of user \"%s\" has a bad %s", what,
                   store_clip(nm, cn), bad);
            ret = STORE_ERROR;
            break;
        }
        if (fn(ctx, &u)) break;
    }
    OPENSSL_cleanse(&u, sizeof(u));
    /* The result holds every key: wipe it before libpq frees it. */
    for (int i = 0; i < PQntuples(r); i++)
        for (int c = 2; c <= 4; c++)
            OPENSSL_cleanse(PQgetvalue(r, i, c), (size_t)PQgetlength(r, i, c));
    PQclear(r);
    return ret;
}

/* ---- secrets ---- */

static int pg_secret_add(struct store *base, const char *secret, int64_t *id,
                         char err[STORE_ERR_LEN])
{
    struct pg_store *s = pg(base);
    static const char what[] = "cannot add the secret"; /* never echoed: it is a secret */
    size_t len = secret ? strlen(secret) : 0;
    char now[24];
    if (!len) {
        seterr(err, s->name, "%s: it is empty", what);
        return STORE_INVALID;
    }
    if (len > STORE_MAX_SECRET) {
        seterr(err, s->name, "%s: it is %zu bytes, more than %d", what, len, STORE_MAX_SECRET);
        return STORE_INVALID;
    }
    snprintf(now, sizeof now, "%lld", (long long)time(NULL));
    const char *vals[2] = {secret, now};
    PGresult *r = run(s, "INSERT INTO secrets (secret, created) VALUES ($1, $2) RETURNING id", 2,
                      vals, NULL, NULL, err, what);
    if (!r) return STORE_ERROR;
    if (!ok(r)) return failed(s, r, err, what, "it is already there");
    int64_t newid = 0;
    int rc = PQntuples(r) == 1 ? col_i64(r, 0, 0, INT64_MIN, INT64_MAX, &newid) : -1;
    PQclear(r);
    if (rc) {
        seterr(err, s->name, "%s: the database returned no id", what);
        return STORE_ERROR;
    }
    if (id) *id = newid;
    return STORE_OK;
}

static int pg_secret_del(struct store *base, int64_t id, char err[STORE_ERR_LEN])
{
    struct pg_store *s = pg(base);
    char what[64], ids[24];
    snprintf(what, sizeof(what), "cannot delete secret %lld", (long long)id);
    snprintf(ids, sizeof ids, "%lld", (long long)id);
    const char *vals[1] = {ids};
    PGresult *r = run(s, "DELETE FROM secrets WHERE id = $1", 1, vals, NULL, NULL, err, what);
    if (!r) return STORE_ERROR;
    if (!ok(r)) return failed(s, r, err, what, NULL);
    bool none = strcmp(PQcmdTuples(r), "0") == 0;
    PQclear(r);
    if (none) {
        seterr(err, s->name, "%s: no such secret", what);
        return STORE_NOT_FOUND;
    }
    return STORE_OK;
}

static int pg_secret_each(struct store *base, int (*fn)(void *ctx, const struct store_secret *sec),
                          void *ctx, char err[STORE_ERR_LEN])
{
    struct pg_store *s = pg(base);
    static const char what[] = "cannot list the secrets";
    PGresult *r = run(s, "SELECT id, secret, created FROM secrets ORDER BY id", 0, NULL, NULL, NULL,
                      err, what);
    if (!r) return STORE_ERROR;
    if (!ok(r)) return failed(s, r, err, what, NULL);
    struct store_secret sec;
    int ret = STORE_OK;
    for (int i = 0; i < PQntuples(r); i++) {
        memset(&sec, 0, sizeof(sec));
        if (col_i64(r, i, 0, INT64_MIN, INT64_MAX, &sec.id) ||
            col_text(r, i, 1, sec.secret, STORE_MAX_SECRET) ||
            col_i64(r, i, 2, INT64_MIN, INT64_MAX, &sec.created)) {
            seterr(err, s->name, "%s: a row is malformed", what);
            ret = STORE_ERROR;
            break;
        }
        if (fn(ctx, &sec)) break;
    }
    OPENSSL_cleanse(&sec, sizeof(sec));
    for (int i = 0; i < PQntuples(r); i++)
        OPENSSL_cleanse(PQgetvalue(r, i, 1), (size_t)PQgetlength(r, i, 1));
    PQclear(r);
    return ret;
}

/* ---- call records ---- */

/* The columns of a record r (jsonb): per leg (c: client, p: peer) loss, jitter and RTT (NULL:
 * unmeasured), then the worst of the two and which leg it was (the client's on a tie). */
static const char calls_insert_head[] =
    "INSERT INTO call_quality (node, user_name, realm, started_at, ended_at, duration, reason,"
    " worst_loss, worst_loss_leg, worst_jitter, worst_jitter_leg, worst_rtt, worst_rtt_leg,"
    " record)"
    " SELECT $1, r ->> 'user', r ->> 'realm', (r ->> 'started_at')::timestamptz,"
    " (r ->> 'ended_at')::timestamptz, (r ->> 'duration_seconds')::float8, r ->> 'reason',"
    " GREATEST(lc, lp), CASE WHEN lc IS NULL AND lp IS NULL THEN NULL"
    "  WHEN lp IS NULL OR lc >= lp THEN 'client' ELSE 'peer' END,"
    " GREATEST(jc, jp), CASE WHEN jc IS NULL AND jp IS NULL THEN NULL"
    "  WHEN jp IS NULL OR jc >= jp THEN 'client' ELSE 'peer' END,"
    " GREATEST(rc, rp), CASE WHEN rc IS NULL AND rp IS NULL THEN NULL"
    "  WHEN rp IS NULL OR rc >= rp THEN 'client' ELSE 'peer' END,"
    " r FROM (SELECT r,"
    "  (r #>> '{qos,client_leg,rtp,loss_ratio}')::float8 AS lc,"
    "  (r #>> '{qos,peer_leg,rtp,loss_ratio}')::float8 AS lp,"
    "  coalesce((r #>> '{qos,client_leg,intervals,jitter_p95_seconds}')::float8,"
    "   (r #>> '{qos,client_leg,rtp,jitter_seconds}')::float8) AS jc,"
    "  coalesce((r #>> '{qos,peer_leg,intervals,jitter_p95_seconds}')::float8,"
    "   (r #>> '{qos,peer_leg,rtp,jitter_seconds}')::float8) AS jp,"
    "  coalesce((r #>> '{qos,client_leg,rtt,p95_seconds}')::float8,"
    "   (r #>> '{qos,client_leg,rtt,last_seconds}')::float8) AS rc,"
    "  coalesce((r #>> '{qos,peer_leg,rtt,p95_seconds}')::float8,"
    "   (r #>> '{qos,peer_leg,rtt,last_seconds}')::float8) AS rp"
    "  FROM (VALUES ";

static int pg_calls_insert(struct store *base, const char *const *records_json, size_t n,
                           const char *node_id, char err[STORE_ERR_LEN])
{
    struct pg_store *s = pg(base);
    char what[64];
    snprintf(what, sizeof what, "cannot insert %zu call record%s", n, n == 1 ? "" : "s");
    if (!n) return STORE_OK;
    if (n > CALLS_BATCH_MAX || !node_id || !*node_id || strlen(node_id) > STORE_MAX_NODE) {
        seterr(err, s->name, "%s: %s", what,
               n > CALLS_BATCH_MAX ? "too many at once" : "the node id is empty or too long");
        return STORE_INVALID;
    }
    /* One statement, so one transaction: "($2::jsonb), ($3::jsonb), ..." */
    size_t cap = sizeof calls_insert_head + n * 20 + 64, len;
    char *sql = malloc(cap);
    const char **vals = calloc(n + 1, sizeof *vals);
    if (!sql || !vals) {
        free(sql);
        free(vals);
        seterr(err, s->name, "%s: out of memory", what);
        return STORE_ERROR;
    }
    len = (size_t)snprintf(sql, cap, "%s", calls_insert_head);
    vals[0] = node_id;
    for (size_t i = 0; i < n; i++) {
        len += (size_t)snprintf(sql + len, cap - len, "%s($%zu::jsonb)", i ? ", " : "", i + 2);
        vals[i + 1] = records_json[i] ? records_json[i] : "null";
    }
    snprintf(sql + len, cap - len, ") AS v(r)) AS m");
    PGresult *r = run(s, sql, (int)n + 1, vals, NULL, NULL, err, what);
    free(sql);
    free(vals);
    if (!r) return STORE_ERROR;
    if (ok(r)) {
        PQclear(r);
        return STORE_OK;
    }
    return failed_input(s, r, err, what);
}

static int col_f64(const PGresult *r, int row, int col, double *out)
{
    *out = NAN;
    if (PQgetisnull(r, row, col)) return 0;
    if (PQgetlength(r, row, col) != 8) return -1;
    const uint8_t *b = (const uint8_t *)PQgetvalue(r, row, col);
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | b[i];
    memcpy(out, &v, sizeof v);
    return 0;
}

/* A text column that may be empty (NULL: ""), cut to max bytes. */
static void col_str(const PGresult *r, int row, int col, char *out, size_t max)
{
    size_t n = PQgetisnull(r, row, col) ? 0 : (size_t)PQgetlength(r, row, col);
    if (n > max) n = max;
    memcpy(out, PQgetvalue(r, row, col), n);
    out[n] = '\0';
    if (memchr(out, 0, n)) out[0] = '\0';
}

static int pg_calls_each(struct store *base, int64_t since_unix, const char *user,
                         enum store_calls_order order, size_t limit,
                         int (*fn)(void *ctx, const struct store_call *c), void *ctx,
                         char err[STORE_ERR_LEN])
{
    struct pg_store *s = pg(base);
    static const char *const by[] = {
        [STORE_CALLS_BY_LOSS] = "worst_loss DESC NULLS LAST, ended_at DESC",
        [STORE_CALLS_BY_JITTER] = "worst_jitter DESC NULLS LAST, ended_at DESC",
        [STORE_CALLS_BY_RTT] = "worst_rtt DESC NULLS LAST, ended_at DESC",
        [STORE_CALLS_BY_TIME] = "ended_at DESC",
    };
    static const char what[] = "cannot list the call records";
    if ((unsigned)order > STORE_CALLS_BY_TIME) {
        seterr(err, s->name, "%s: unknown order", what);
        return STORE_INVALID;
    }
    char sql[1024], since[24], lim[24];
    snprintf(since, sizeof since, "%lld", (long long)since_unix);
    snprintf(lim, sizeof lim, "%zu", limit);
    snprintf(sql, sizeof sql,
             "SELECT id, node, user_name, realm, extract(epoch FROM started_at)::float8,"
             " extract(epoch FROM ended_at)::float8, duration, reason, worst_loss,"
             " worst_loss_leg, worst_jitter, worst_jitter_leg, worst_rtt, worst_rtt_leg,"
             " record::text FROM call_quality WHERE ended_at >= to_timestamp($1)%s"
             " ORDER BY %s LIMIT $2::bigint",
             user ? " AND user_name = $3" : "", by[order]);
    const char *vals[3] = {since, limit ? lim : NULL, user}; /* LIMIT NULL: all */
    int nparams = user ? 3 : 2;
    PGresult *r = run(s, sql, nparams, vals, NULL, NULL, err, what);
    if (!r) return STORE_ERROR;
    if (!ok(r)) return failed(s, r, err, what, NULL);
    int ret = STORE_OK;
    for (int i = 0; i < PQntuples(r); i++) {
        struct store_call c;
        memset(&c, 0, sizeof c);
        if (col_i64(r, i, 0, INT64_MIN, INT64_MAX, &c.id) || col_f64(r, i, 4, &c.started_at) ||
            col_f64(r, i, 5, &c.ended_at) || col_f64(r, i, 6, &c.duration) ||
            col_f64(r, i, 8, &c.worst_loss) || col_f64(r, i, 10, &c.worst_jitter) ||
            col_f64(r, i, 12, &c.worst_rtt) || PQgetisnull(r, i, 14)) {
            seterr(err, s->name, "%s: a row is malformed", what);
            ret = STORE_ERROR;
            break;
        }
        col_str(r, i, 1, c.node, STORE_MAX_NODE);
        col_str(r, i, 2, c.user, STUN_MAX_USERNAME);
        col_str(r, i, 3, c.realm, STUN_MAX_TEXT_BYTES);
        col_str(r, i, 7, c.reason, sizeof c.reason - 1);
        col_str(r, i, 9, c.worst_loss_leg, sizeof c.worst_loss_leg - 1);
        col_str(r, i, 11, c.worst_jitter_leg, sizeof c.worst_jitter_leg - 1);
        col_str(r, i, 13, c.worst_rtt_leg, sizeof c.worst_rtt_leg - 1);
        c.record = PQgetvalue(r, i, 14); /* text in binary format: the bytes, NUL-terminated */
        if (fn(ctx, &c)) break;
    }
    PQclear(r);
    return ret;
}

/* ---- change tracking ---- */

static int64_t pg_data_version(struct store *base)
{
    struct pg_store *s = pg(base);
    PGresult *r = run(s, "SELECT version FROM tern_changes WHERE id = 1", 0, NULL, NULL, NULL, NULL,
                      "version");
    int64_t v = -1;
    if (r && PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
        col_i64(r, 0, 0, 0, INT64_MAX, &v))
        v = -1;
    PQclear(r);
    return v;
}

static int pg_wait_change(struct store *base, int timeout_ms)
{
    struct pg_store *s = pg(base);
    if (ensure(s, NULL)) return -1;
    if (!s->listening) {
        if (exec_simple(s, "LISTEN " NOTIFY_CHANNEL, NULL, "listen")) return -1;
        s->listening = true;
    }
    int got = 0;
    PGnotify *n;
    while ((n = PQnotifies(s->conn))) { /* arrived with an earlier result */
        PQfreemem(n);
        got = 1;
    }
    if (got) return 1;
    struct pollfd p = {.fd = PQsocket(s->conn), .events = POLLIN};
    if (p.fd < 0) return -1;
    int rc = poll(&p, 1, timeout_ms);
    if (rc < 0) return errno == EINTR ? 0 : -1;
    if (rc == 0) return 0;
    if (!PQconsumeInput(s->conn) || PQstatus(s->conn) != CONNECTION_OK) return -1;
    while ((n = PQnotifies(s->conn))) {
        PQfreemem(n);
        got = 1;
    }
    return got;
}

/* ---- the node registry ---- */

static int pg_node_beat(struct store *base, const struct store_node *n, char err[STORE_ERR_LEN])
{
    struct pg_store *s = pg(base);
    static const char what[] = "cannot write this node's registry row";
    char started[24], allocs[24], maxa[24], pps[40], cpu[40], maxcpu[40], poor[24];
    snprintf(started, sizeof started, "%lld", (long long)n->started_at);
    snprintf(allocs, sizeof allocs, "%llu", (unsigned long long)n->allocations);
    snprintf(maxa, sizeof maxa, "%llu", (unsigned long long)n->max_allocations);
    snprintf(pps, sizeof pps, "%.3f", isfinite(n->relayed_pps) ? n->relayed_pps : 0.0);
    snprintf(cpu, sizeof cpu, "%.4f", isfinite(n->cpu) ? n->cpu : 0.0);
    snprintf(maxcpu, sizeof maxcpu, "%.4f", n->max_cpu);
    snprintf(poor, sizeof poor, "%llu", (unsigned long long)n->poor);
    const char *vals[12] = {n->node_id,
                            n->version,
                            started,
                            n->draining ? "t" : "f",
                            allocs,
                            maxa,
                            pps,
                            cpu,
                            maxcpu,
                            poor,
                            n->endpoints_json ? n->endpoints_json : "[]",
                            n->users_json ? n->users_json : "{}"};
    PGresult *r = run(s,
                      "INSERT INTO tern_nodes (node_id, version, started_at, heartbeat, draining,"
                      " allocations, max_allocations, relayed_pps, cpu, max_cpu, poor, endpoints,"
                      " users) VALUES ($1, $2, to_timestamp($3::bigint), now(), $4::boolean,"
                      " $5::bigint, $6::bigint, $7::float8, $8::float8, $9::float8, $10::bigint,"
                      " $11::jsonb, $12::jsonb)"
                      " ON CONFLICT (node_id) DO UPDATE SET version = EXCLUDED.version,"
                      " started_at = EXCLUDED.started_at, heartbeat = EXCLUDED.heartbeat,"
                      " draining = EXCLUDED.draining, allocations = EXCLUDED.allocations,"
                      " max_allocations = EXCLUDED.max_allocations,"
                      " relayed_pps = EXCLUDED.relayed_pps, cpu = EXCLUDED.cpu,"
                      " max_cpu = EXCLUDED.max_cpu, poor = EXCLUDED.poor,"
                      " endpoints = EXCLUDED.endpoints, users = EXCLUDED.users",
                      12, vals, NULL, NULL, err, what);
    if (!r) return STORE_ERROR;
    if (ok(r)) {
        PQclear(r);
        return STORE_OK;
    }
    return failed_input(s, r, err, what);
}

static int pg_node_forget(struct store *base, const char *node_id, char err[STORE_ERR_LEN])
{
    struct pg_store *s = pg(base);
    static const char what[] = "cannot remove this node's registry row";
    const char *vals[1] = {node_id};
    PGresult *r =
        run(s, "DELETE FROM tern_nodes WHERE node_id = $1", 1, vals, NULL, NULL, err, what);
    if (!r) return STORE_ERROR;
    if (!ok(r)) return failed(s, r, err, what, NULL);
    PQclear(r);
    return STORE_OK;
}

static int pg_nodes_prune(struct store *base, uint32_t older_than_s, uint64_t *removed,
                          char err[STORE_ERR_LEN])
{
    struct pg_store *s = pg(base);
    static const char what[] = "cannot remove the rows of long-dead nodes";
    char secs[16];
    snprintf(secs, sizeof secs, "%u", (unsigned)older_than_s);
    const char *vals[1] = {secs};
    PGresult *r =
        run(s, "DELETE FROM tern_nodes WHERE heartbeat < now() - make_interval(secs => $1)", 1,
            vals, NULL, NULL, err, what);
    if (!r) return STORE_ERROR;
    if (!ok(r)) return failed(s, r, err, what, NULL);
    *removed = strtoull(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    return STORE_OK;
}

static int pg_nodes_each(struct store *base, int (*fn)(void *ctx, const struct store_node *n),
                         void *ctx, char err[STORE_ERR_LEN])
{
    struct pg_store *s = pg(base);
    static const char what[] = "cannot read the node registry";
    PGresult *r = run(s,
                      "SELECT node_id, version, extract(epoch FROM started_at)::bigint,"
                      " extract(epoch FROM now() - heartbeat)::float8, draining, allocations,"
                      " max_allocations, relayed_pps, cpu, max_cpu, poor, endpoints::text"
                      " FROM tern_nodes ORDER BY node_id",
                      0, NULL, NULL, NULL, err, what);
    if (!r) return STORE_ERROR;
    if (!ok(r)) return failed(s, r, err, what, NULL);
    int ret = STORE_OK;
    for (int i = 0; i < PQntuples(r); i++) {
        struct store_node n;
        int64_t allocs, maxa, poor;
        memset(&n, 0, sizeof n);
        if (col_text(r, i, 0, n.node_id, STORE_MAX_NODE) ||
            col_i64(r, i, 2, INT64_MIN, INT64_MAX, &n.started_at) || col_f64(r, i, 3, &n.age_s) ||
            col_bool(r, i, 4, &n.draining) || col_i64(r, i, 5, 0, INT64_MAX, &allocs) ||
            col_i64(r, i, 6, 0, INT64_MAX, &maxa) || col_f64(r, i, 7, &n.relayed_pps) ||
            col_f64(r, i, 8, &n.cpu) || col_f64(r, i, 9, &n.max_cpu) ||
            col_i64(r, i, 10, 0, INT64_MAX, &poor) || PQgetisnull(r, i, 11)) {
            seterr(err, s->name, "%s: a row is malformed", what);
            ret = STORE_ERROR;
            break;
        }
        col_str(r, i, 1, n.version, sizeof n.version - 1);
        n.allocations = (uint64_t)allocs;
        n.max_allocations = (uint64_t)maxa;
        n.poor = (uint64_t)poor;
        n.endpoints_json = PQgetvalue(r, i, 11); /* libpq terminates every value */
        if (fn(ctx, &n)) break;
    }
    PQclear(r);
    return ret;
}

static int pg_fleet_users(struct store *base, const char *node_id, uint32_t dead_after_s,
                          int (*fn)(void *ctx, const char *user, uint64_t count), void *ctx,
                          char err[STORE_ERR_LEN])
{
    struct pg_store *s = pg(base);
    static const char what[] = "cannot read the fleet's allocations per user";
    char dead[16];
    snprintf(dead, sizeof dead, "%u", (unsigned)dead_after_s);
    const char *vals[2] = {node_id, dead};
    PGresult *r = run(s,
                      "SELECT u.key, sum(u.value::bigint)::bigint FROM tern_nodes n,"
                      " jsonb_each_text(n.users) u WHERE n.node_id <> $1"
                      " AND n.heartbeat > now() - make_interval(secs => $2::float8)"
                      " GROUP BY u.key HAVING sum(u.value::bigint) > 0",
                      2, vals, NULL, NULL, err, what);
    if (!r) return STORE_ERROR;
    if (!ok(r)) return failed(s, r, err, what, NULL);
    int ret = STORE_OK;
    for (int i = 0; i < PQntuples(r); i++) {
        char user[STUN_MAX_USERNAME + 1];
        int64_t count;
        if (col_text(r, i, 0, user, STUN_MAX_USERNAME) || col_i64(r, i, 1, 1, INT64_MAX, &count))
            continue; /* a name no client can log in with: not ours to count */
        if (fn(ctx, user, (uint64_t)count)) break;
    }
    PQclear(r);
    return ret;
}

static int pg_nonce_keys(struct store *base, uint32_t rotation_s,
                         uint8_t (*keys)[STORE_NONCE_KEY_LEN], size_t max, size_t *n,
                         char err[STORE_ERR_LEN])
{
    struct pg_store *s = pg(base);
    static const char what[] = "cannot read the fleet's nonce keys";
    uint8_t fresh[STORE_NONCE_KEY_LEN];
    char hex[2 * STORE_NONCE_KEY_LEN + 1], rot[16];
    if (RAND_bytes(fresh, sizeof fresh) != 1) {
        seterr(err, s->name, "%s: no randomness for a new key", what);
        return STORE_ERROR;
    }
    for (size_t i = 0; i < sizeof fresh; i++)
        snprintf(hex + 2 * i, 3, "%02x", fresh[i]);
    OPENSSL_cleanse(fresh, sizeof fresh);
    snprintf(rot, sizeof rot, "%u", (unsigned)rotation_s);
    const char *vals[2] = {hex, rot};
    int ret = STORE_ERROR;
    PGresult *r = NULL;
    if (exec_simple(s, "BEGIN", err, what)) goto wipe;
    if (exec_simple(s, "SELECT pg_advisory_xact_lock(" NONCE_LOCK ")", err, what)) goto rollback;
    /* A new key when the newest is due, then only the two newest stay. */
    r = run(s,
            "INSERT INTO tern_nonce_keys (secret) SELECT decode($1, 'hex') WHERE NOT EXISTS"
            " (SELECT 1 FROM tern_nonce_keys WHERE created > now() - make_interval(secs =>"
            " $2::float8))",
            2, vals, NULL, NULL, err, what);
    if (!r || !ok(r)) goto fail;
    PQclear(r);
    r = run(s,
            "DELETE FROM tern_nonce_keys WHERE id NOT IN (SELECT id FROM tern_nonce_keys ORDER"
            " BY id DESC LIMIT 2)",
            0, NULL, NULL, NULL, err, what);
    if (!r || !ok(r)) goto fail;
    PQclear(r);
    r = run(s, "SELECT secret FROM tern_nonce_keys ORDER BY id DESC LIMIT 2", 0, NULL, NULL, NULL,
            err, what);
    if (!r || !ok(r)) goto fail;
    for (int i = 0; i < PQntuples(r) && *n < max; i++)
        if (!col_blob(r, i, 0, keys[*n], STORE_NONCE_KEY_LEN)) (*n)++;
    for (int i = 0; i < PQntuples(r); i++)
        OPENSSL_cleanse(PQgetvalue(r, i, 0), (size_t)PQgetlength(r, i, 0));
    PQclear(r);
    r = NULL;
    if (exec_simple(s, "COMMIT", err, what)) goto rollback;
    ret = STORE_OK;
    goto wipe;
fail:
    if (r) {
        ret = failed(s, r, err, what, NULL);
        r = NULL;
    }
rollback:;
    PGresult *rb = PQexec(s->conn, "ROLLBACK");
    PQclear(rb);
    if (ret == STORE_OK) ret = STORE_ERROR;
wipe:
    OPENSSL_cleanse(hex, sizeof hex);
    if (ret != STORE_OK) {
        OPENSSL_cleanse(keys, max * STORE_NONCE_KEY_LEN);
        *n = 0;
    }
    return ret;
}

static const struct store_ops pg_ops = {
    .close = pg_close,
    .user_add = pg_user_add,
    .user_passwd = pg_user_passwd,
    .user_del = pg_user_del,
    .user_set_disabled = pg_user_set_disabled,
    .user_set_limits = pg_user_set_limits,
    .user_each = pg_user_each,
    .secret_add = pg_secret_add,
    .secret_del = pg_secret_del,
    .secret_each = pg_secret_each,
    .data_version = pg_data_version,
    .wait_change = pg_wait_change,
    .calls_insert = pg_calls_insert,
    .calls_each = pg_calls_each,
    .node_beat = pg_node_beat,
    .node_forget = pg_node_forget,
    .nodes_prune = pg_nodes_prune,
    .nodes_each = pg_nodes_each,
    .fleet_users = pg_fleet_users,
    .nonce_keys = pg_nonce_keys,
};

struct store *store_pg_open(const char *uri, const char *password_file, char err[STORE_ERR_LEN])
{
    struct pg_store *s = calloc(1, sizeof(*s));
    char shown[STORE_ERR_LEN / 2];
    store_display_name(uri, shown, sizeof shown);
    if (!s || !(s->uri = strdup(uri)) ||
        (password_file && !(s->password_file = strdup(password_file)))) {
        if (err) snprintf(err, STORE_ERR_LEN, "%s: out of memory", shown);
        if (s) pg_close(&s->base);
        return NULL;
    }
    s->base.ops = &pg_ops;
    memcpy(s->name, shown, sizeof shown);
    if (connect_db(s, err) || migrate(s, err)) {
        pg_close(&s->base);
        return NULL;
    }
    return &s->base;
}
