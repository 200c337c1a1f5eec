/* store_sqlite.c: the credential database on SQLite (a file: the embedded default): schema
 * migrations, users (keys only), secrets. The backend behind store.h for a path. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <sqlite3.h>

#include "auth.h"
#include "store_impl.h"

/* This backend's schema version (PRAGMA user_version): one migration step per version. */
#define SQLITE_SCHEMA_VERSION STORE_SQLITE_SCHEMA_VERSION

/* ternd reads while ternctl writes: wait this long for a lock rather than fail at once. */
#define BUSY_TIMEOUT_MS 5000
/* Names and realms quoted in messages are cut to this many bytes, so that the reason after
 * them still fits in STORE_ERR_LEN. */

struct sq_store {
    struct store base; /* first: a struct store * is a struct sq_store * */
    sqlite3 *db;
    char path[]; /* as given, for messages */
};

static struct sq_store *sq(struct store *base)
{
    return (struct sq_store *)(void *)base;
}

/* migrations[v] brings the schema from version v to v + 1, inside the open's transaction, and
 * ends by setting user_version itself (a constant: PRAGMA takes no bound parameters). To
 * change the schema: append a step and raise STORE_SQLITE_SCHEMA_VERSION. Never edit a shipped
 * step. */
static const char *const migrations[] = {
    /* 0 -> 1. The userhash index is not UNIQUE: SHA-256(name ":" realm) is the same for
     * ("a:b", "c") and ("a", "b:c"), and a lookup by hash must then see both. Secret ids are
     * AUTOINCREMENT so that an id an operator once saw is never given to another secret. */
    "CREATE TABLE users ("
    " realm TEXT NOT NULL,"
    " name TEXT NOT NULL,"
    " key_md5 BLOB(16) NOT NULL CHECK (length(key_md5) = 16),"
    " key_sha256 BLOB(32) NOT NULL CHECK (length(key_sha256) = 32),"
    " userhash BLOB(32) NOT NULL CHECK (length(userhash) = 32),"
    " max_allocations INTEGER NOT NULL DEFAULT 0"
    "  CHECK (max_allocations BETWEEN 0 AND 4294967295),"
    " bandwidth_bps INTEGER NOT NULL DEFAULT 0 CHECK (bandwidth_bps >= 0),"
    " disabled INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),"
    " created INTEGER NOT NULL,"
    " PRIMARY KEY (realm, name));"
    "CREATE INDEX users_userhash ON users (userhash);"
    "CREATE TABLE secrets ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " secret TEXT NOT NULL UNIQUE,"
    " created INTEGER NOT NULL);"
    "PRAGMA user_version = 1;",
};
_Static_assert(sizeof(migrations) / sizeof(migrations[0]) == SQLITE_SCHEMA_VERSION,
               "one migration step per schema version");

/* The columns every read uses, in this order; preparing them at open proves the tables are
 * ours whatever user_version says. */
#define USER_COLUMNS                                                                               \
    "realm, name, key_md5, key_sha256, userhash, max_allocations, bandwidth_bps, disabled, "       \
    "created"
#define SECRET_COLUMNS "id, secret, created"

/* err = "PATH: " + the formatted rest: every message names the file (err may be NULL). */
__attribute__((format(printf, 3, 4))) static void seterr(char *err, const char *path,
                                                         const char *fmt, ...)
{
    if (!err) return;
    int n = snprintf(err, STORE_ERR_LEN, "%s: ", path);
    if (n < 0 || n >= STORE_ERR_LEN) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err + n, STORE_ERR_LEN - (size_t)n, fmt, ap);
    va_end(ap);
}

/* Run a statement that returns one integer row (a PRAGMA, a count). SQLite result code. */
static int query_int(sqlite3 *db, const char *sql, int64_t *out)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK) return rc;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *out = sqlite3_column_int64(st, 0);
        rc = SQLITE_OK;
    } else if (rc == SQLITE_DONE) {
        rc = SQLITE_ERROR; /* no row where one is always expected */
    }
    sqlite3_finalize(st);
    return rc;
}

/* Make sure path names a regular file we can read, creating it (0600: it holds keys) in
 * STORE_CREATE mode. Done with plain system calls before SQLite sees the file, because SQLite
 * says "unable to open database file" for every reason alike. */
static int check_file(const char *path, enum store_mode mode, char *err)
{
    if (mode == STORE_CREATE) {
        int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd >= 0) {
            /* The umask may have taken bits we want (the owner's write): set them exactly. */
            int rc = fchmod(fd, 0600);
            int e = errno;
            close(fd);
            if (rc) {
                seterr(err, path, "cannot create: %s", strerror(e));
                return -1;
            }
            return 0; /* an empty file: SQLite takes it as a new database */
        }
        if (errno != EEXIST) {
            seterr(err, path, "cannot create: %s", strerror(errno));
            return -1;
        }
    }
    /* O_NONBLOCK: a FIFO must not hang the open. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT && mode == STORE_EXISTING)
            seterr(err, path,
                   "no such database file (create it with: ternctl --db %s user add ...)", path);
        else
            seterr(err, path, "cannot open: %s", strerror(errno));
        return -1;
    }
    struct stat st;
    int rc = fstat(fd, &st);
    int e = errno;
    close(fd);
    if (rc) {
        seterr(err, path, "cannot open: %s", strerror(e));
        return -1;
    }
    if (S_ISDIR(st.st_mode)) {
        seterr(err, path, "cannot open: %s", strerror(EISDIR));
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        seterr(err, path, "cannot open: not a regular file");
        return -1;
    }
    return 0;
}

/* Read user_version and refuse what is not ours to touch: not SQLite, a newer schema, or
 * another program's tables under version 0. Called before and again inside the migration
 * transaction (another process may have migrated in between). */
static int check_version(struct sq_store *s, int64_t *version, char *err)
{
    int rc = query_int(s->db, "PRAGMA user_version", version);
    if ((rc & 0xFF) == SQLITE_NOTADB) {
        seterr(err, s->path, "not a Tern database: %s", sqlite3_errmsg(s->db));
        return -1;
    }
    if (rc != SQLITE_OK) {
        seterr(err, s->path, "cannot read the schema version: %s", sqlite3_errmsg(s->db));
        return -1;
    }
    if (*version > SQLITE_SCHEMA_VERSION) {
        seterr(err, s->path, "schema version %lld is newer than this program's %d (upgrade ternd)",
               (long long)*version, SQLITE_SCHEMA_VERSION);
        return -1;
    }
    if (*version < 0) {
        seterr(err, s->path, "not a Tern database: schema version %lld", (long long)*version);
        return -1;
    }
    if (*version == 0) {
        int64_t tables = 0;
        if (query_int(s->db, "SELECT count(*) FROM sqlite_master", &tables) != SQLITE_OK) {
            seterr(err, s->path, "cannot read the schema: %s", sqlite3_errmsg(s->db));
            return -1;
        }
        if (tables) {
            seterr(err, s->path, "not a Tern database: it has tables but schema version 0");
            return -1;
        }
    }
    return 0;
}

/* Bring the schema to SQLITE_SCHEMA_VERSION: all steps in one transaction, or none. */
static int migrate(struct sq_store *s, char *err)
{
    int64_t v = 0;
    /* IMMEDIATE: take the write lock now, so that two processes opening a new file one after
     * the other both see the version the other left (a deferred one could not upgrade). */
    if (sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
        seterr(err, s->path, "cannot start the schema migration: %s", sqlite3_errmsg(s->db));
        return -1;
    }
    if (check_version(s, &v, err)) goto rollback;
    for (int64_t from = v; from < SQLITE_SCHEMA_VERSION; from++) {
        int64_t now = -1;
        if (sqlite3_exec(s->db, migrations[from], NULL, NULL, NULL) != SQLITE_OK ||
            query_int(s->db, "PRAGMA user_version", &now) != SQLITE_OK) {
            seterr(err, s->path, "cannot migrate the schema from version %lld to %lld: %s",
                   (long long)from, (long long)from + 1, sqlite3_errmsg(s->db));
            goto rollback;
        }
        if (now != from + 1) { /* a step that forgot its PRAGMA user_version */
            seterr(err, s->path,
                   "cannot migrate the schema from version %lld to %lld: "
                   "the step left version %lld",
                   (long long)from, (long long)from + 1, (long long)now);
            goto rollback;
        }
    }
    if (sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        seterr(err, s->path, "cannot commit the schema migration: %s", sqlite3_errmsg(s->db));
        goto rollback;
    }
    return 0;

rollback:
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
}

/* The tables hold the columns this program reads (a file that merely claims our version). */
static int check_tables(struct sq_store *s, char *err)
{
    static const char *const probes[] = {
        "SELECT " USER_COLUMNS " FROM users",
        "SELECT " SECRET_COLUMNS " FROM secrets",
    };
    for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
        sqlite3_stmt *st = NULL;
        int rc = sqlite3_prepare_v2(s->db, probes[i], -1, &st, NULL);
        sqlite3_finalize(st);
        if (rc != SQLITE_OK) {
            seterr(err, s->path, "not a Tern database: %s", sqlite3_errmsg(s->db));
            return -1;
        }
    }
    return 0;
}

static const struct store_ops sqlite_ops;

struct store *store_sqlite_open(const char *path, enum store_mode mode, char err[STORE_ERR_LEN])
{
    struct sq_store *s = NULL;
    char *dbname = NULL;
    int64_t version = 0;

    if (!path || !*path) {
        if (err) snprintf(err, STORE_ERR_LEN, "the database path is empty");
        return NULL;
    }
    if (check_file(path, mode, err)) return NULL;

    size_t plen = strlen(path);
    s = calloc(1, sizeof(*s) + plen + 1);
    /* This SQLite takes names starting with "file:" as URIs ("file:x.db?mode=ro"): a relative
     * path like that must reach it as a path, so it goes in as "./file:...". */
    dbname = malloc(plen + 3);
    if (!s || !dbname) {
        seterr(err, path, "cannot open: %s", strerror(ENOMEM));
        goto fail;
    }
    memcpy(s->path, path, plen + 1);
    snprintf(dbname, plen + 3, "%s%s", strncmp(path, "file:", 5) ? "" : "./", path);

    /* No SQLITE_OPEN_CREATE: check_file made the file when we were asked to. */
    int rc = sqlite3_open_v2(dbname, &s->db, SQLITE_OPEN_READWRITE, NULL);
    if (rc != SQLITE_OK) {
        seterr(err, path, "cannot open: %s", s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
        goto fail;
    }
    sqlite3_extended_result_codes(s->db, 1); /* tells a duplicate key from other constraints */
    sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS);

    /* Look before changing anything: WAL mode rewrites the header of whatever file this is. */
    if (check_version(s, &version, err)) goto fail;

    /* Deleted keys and secrets are overwritten with zeros, not left in free pages. */
    if (sqlite3_exec(s->db, "PRAGMA secure_delete = ON", NULL, NULL, NULL) != SQLITE_OK) {
        seterr(err, path, "cannot turn on secure_delete: %s", sqlite3_errmsg(s->db));
        goto fail;
    }
    /* WAL: ternd's reads never block ternctl's writes, nor the reverse. Persistent in the file,
     * so this only changes anything on the first open. The answer is not checked: a file we may
     * only read stays in its mode, and reading it still works. */
    if (sqlite3_exec(s->db, "PRAGMA journal_mode = WAL", NULL, NULL, NULL) != SQLITE_OK) {
        seterr(err, path, "cannot switch to WAL journal mode: %s", sqlite3_errmsg(s->db));
        goto fail;
    }
    if (version < SQLITE_SCHEMA_VERSION && migrate(s, err)) goto fail;
    if (check_tables(s, err)) goto fail;

    free(dbname);
    s->base.ops = &sqlite_ops;
    return &s->base;

fail:
    free(dbname);
    if (s) sqlite3_close(s->db);
    free(s);
    return NULL;
}

static void sq_close(struct store *base)
{
    struct sq_store *s = sq(base);
    if (!s) return;
    sqlite3_close(s->db); /* every statement is finalized by the call that made it */
    free(s);
}

/* The message and result for a failed SQLite call: names the file, the operation, SQLite's
 * reason. Read sqlite3_errmsg before anything else runs on the connection. */
static int db_error(struct sq_store *s, char *err, const char *what)
{
    seterr(err, s->path, "%s: %s", what, sqlite3_errmsg(s->db));
    return STORE_ERROR;
}

/* Bind realm and name as parameters first and second. */
static int bind_user(sqlite3_stmt *st, int first, const char *realm, const char *name)
{
    int rc = sqlite3_bind_text(st, first, realm, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK) rc = sqlite3_bind_text(st, first + 1, name, -1, SQLITE_STATIC);
    return rc;
}

static int sq_user_add(struct store *base, const char *realm, const char *name,
                       const char *password, uint32_t max_allocations, uint64_t bandwidth_bps,
                       char err[STORE_ERR_LEN])
{
    struct sq_store *s = sq(base);
    static const char sql[] = "INSERT INTO users (" USER_COLUMNS ") "
                              "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, ?8)";
    uint8_t md5[16], sha256[32], userhash[STUN_USERHASH_LEN];
    char what[STORE_ERR_LEN], why[64];
    sqlite3_stmt *st = NULL;
    const char *bad;
    int ret = STORE_INVALID;

    store_user_what(what, sizeof(what), "add", realm, name);
    if ((bad = store_check_user(realm, name, why)) ||
        (bad = store_derive_keys(realm, name, password, md5, sha256))) {
        seterr(err, s->path, "%s: %s", what, bad);
        goto out;
    }
    if (bandwidth_bps > INT64_MAX) { /* SQLite integers are signed 64-bit */
        seterr(err, s->path, "%s: bandwidth %llu bytes/s is more than %lld", what,
               (unsigned long long)bandwidth_bps, (long long)INT64_MAX);
        goto out;
    }
    if (auth_userhash(name, strlen(name), realm, strlen(realm), userhash)) {
        ret = STORE_ERROR;
        seterr(err, s->path, "%s: cannot compute the userhash", what);
        goto out;
    }
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) rc = bind_user(st, 1, realm, name);
    if (rc == SQLITE_OK) rc = sqlite3_bind_blob(st, 3, md5, sizeof(md5), SQLITE_STATIC);
    if (rc == SQLITE_OK) rc = sqlite3_bind_blob(st, 4, sha256, sizeof(sha256), SQLITE_STATIC);
    if (rc == SQLITE_OK) rc = sqlite3_bind_blob(st, 5, userhash, sizeof(userhash), SQLITE_STATIC);
    if (rc == SQLITE_OK) rc = sqlite3_bind_int64(st, 6, max_allocations);
    if (rc == SQLITE_OK) rc = sqlite3_bind_int64(st, 7, (sqlite3_int64)bandwidth_bps);
    if (rc == SQLITE_OK) rc = sqlite3_bind_int64(st, 8, (sqlite3_int64)time(NULL));
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        ret = STORE_OK;
    } else if (rc == SQLITE_CONSTRAINT_PRIMARYKEY) {
        ret = STORE_EXISTS;
        seterr(err, s->path, "%s: it already exists", what);
    } else {
        ret = db_error(s, err, what);
    }

out:
    sqlite3_finalize(st);
    OPENSSL_cleanse(sha256, sizeof(sha256));
    OPENSSL_cleanse(md5, sizeof(md5));
    return ret;
}

/* Run an UPDATE or DELETE of one user, already bound but for realm and name (?1, ?2):
 * STORE_NOT_FOUND when no row matched. */
static int change_user(struct sq_store *s, sqlite3_stmt *st, int rc, const char *realm,
                       const char *name, const char *what, char *err)
{
    if (rc == SQLITE_OK) rc = bind_user(st, 1, realm, name);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    if (rc != SQLITE_DONE) return db_error(s, err, what);
    if (sqlite3_changes(s->db) == 0) {
        seterr(err, s->path, "%s: no such user", what);
        return STORE_NOT_FOUND;
    }
    return STORE_OK;
}

static int sq_user_passwd(struct store *base, const char *realm, const char *name,
                          const char *password, char err[STORE_ERR_LEN])
{
    struct sq_store *s = sq(base);
    static const char sql[] = "UPDATE users SET key_md5 = ?3, key_sha256 = ?4 "
                              "WHERE realm = ?1 AND name = ?2";
    uint8_t md5[16], sha256[32];
    char what[STORE_ERR_LEN], why[64];
    sqlite3_stmt *st = NULL;
    const char *bad;
    int ret = STORE_INVALID;

    store_user_what(what, sizeof(what), "change the password of", realm, name);
    if ((bad = store_check_user(realm, name, why)) ||
        (bad = store_derive_keys(realm, name, password, md5, sha256))) {
        seterr(err, s->path, "%s: %s", what, bad);
        goto out;
    }
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_bind_blob(st, 3, md5, sizeof(md5), SQLITE_STATIC);
    if (rc == SQLITE_OK) rc = sqlite3_bind_blob(st, 4, sha256, sizeof(sha256), SQLITE_STATIC);
    ret = change_user(s, st, rc, realm, name, what, err);

out:
    sqlite3_finalize(st);
    OPENSSL_cleanse(sha256, sizeof(sha256));
    OPENSSL_cleanse(md5, sizeof(md5));
    return ret;
}

static int sq_user_del(struct store *base, const char *realm, const char *name,
                       char err[STORE_ERR_LEN])
{
    struct sq_store *s = sq(base);
    static const char sql[] = "DELETE FROM users WHERE realm = ?1 AND name = ?2";
    char what[STORE_ERR_LEN], why[64];
    sqlite3_stmt *st = NULL;
    const char *bad;
    int ret = STORE_INVALID;

    store_user_what(what, sizeof(what), "delete", realm, name);
    if ((bad = store_check_user(realm, name, why))) {
        seterr(err, s->path, "%s: %s", what, bad);
        goto out;
    }
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    ret = change_user(s, st, rc, realm, name, what, err);

out:
    sqlite3_finalize(st);
    return ret;
}

static int sq_user_set_disabled(struct store *base, const char *realm, const char *name,
                                bool disabled, char err[STORE_ERR_LEN])
{
    struct sq_store *s = sq(base);
    static const char sql[] = "UPDATE users SET disabled = ?3 WHERE realm = ?1 AND name = ?2";
    char what[STORE_ERR_LEN], why[64];
    sqlite3_stmt *st = NULL;
    const char *bad;
    int ret = STORE_INVALID;

    store_user_what(what, sizeof(what), disabled ? "disable" : "enable", realm, name);
    if ((bad = store_check_user(realm, name, why))) {
        seterr(err, s->path, "%s: %s", what, bad);
        goto out;
    }
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_bind_int(st, 3, disabled);
    ret = change_user(s, st, rc, realm, name, what, err);

out:
    sqlite3_finalize(st);
    return ret;
}

static int sq_user_set_limits(struct store *base, const char *realm, const char *name,
                              uint32_t max_allocations, uint64_t bandwidth_bps,
                              char err[STORE_ERR_LEN])
{
    struct sq_store *s = sq(base);
    static const char sql[] = "UPDATE users SET max_allocations = ?3, bandwidth_bps = ?4 "
                              "WHERE realm = ?1 AND name = ?2";
    char what[STORE_ERR_LEN], why[64];
    sqlite3_stmt *st = NULL;
    const char *bad;
    int ret = STORE_INVALID;

    store_user_what(what, sizeof(what), "set the limits of", realm, name);
    if ((bad = store_check_user(realm, name, why))) {
        seterr(err, s->path, "%s: %s", what, bad);
        goto out;
    }
    if (bandwidth_bps > INT64_MAX) { /* SQLite integers are signed 64-bit */
        seterr(err, s->path, "%s: bandwidth %llu bytes/s is more than %lld", what,
               (unsigned long long)bandwidth_bps, (long long)INT64_MAX);
        goto out;
    }
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_bind_int64(st, 3, max_allocations);
    if (rc == SQLITE_OK) rc = sqlite3_bind_int64(st, 4, (sqlite3_int64)bandwidth_bps);
    ret = change_user(s, st, rc, realm, name, what, err);

out:
    sqlite3_finalize(st);
    return ret;
}

/* Copy a TEXT column into out (room for max bytes and the NUL); -1 if it is not text of 1..max
 * bytes without a NUL inside (the file was edited by hand, or damaged). */
static int column_text(sqlite3_stmt *st, int col, char *out, size_t max)
{
    if (sqlite3_column_type(st, col) != SQLITE_TEXT) return -1;
    const unsigned char *t = sqlite3_column_text(st, col);
    size_t n = (size_t)sqlite3_column_bytes(st, col);
    if (!t || n == 0 || n > max || memchr(t, 0, n)) return -1;
    memcpy(out, t, n);
    out[n] = 0;
    return 0;
}

static int column_blob(sqlite3_stmt *st, int col, uint8_t *out, size_t len)
{
    if (sqlite3_column_type(st, col) != SQLITE_BLOB) return -1;
    const void *b = sqlite3_column_blob(st, col);
    if (!b || (size_t)sqlite3_column_bytes(st, col) != len) return -1;
    memcpy(out, b, len);
    return 0;
}

static int column_int(sqlite3_stmt *st, int col, int64_t min, int64_t max, int64_t *out)
{
    if (sqlite3_column_type(st, col) != SQLITE_INTEGER) return -1;
    *out = sqlite3_column_int64(st, col);
    return *out < min || *out > max ? -1 : 0;
}

/* One row of USER_COLUMNS into u; the name of the first bad column, or NULL. */
static const char *read_user(sqlite3_stmt *st, struct store_user *u)
{
    int64_t maxalloc, bw, disabled, created;
    memset(u, 0, sizeof(*u));
    if (column_text(st, 0, u->realm, STUN_MAX_TEXT_BYTES)) return "realm";
    if (column_text(st, 1, u->name, STUN_MAX_USERNAME)) return "name";
    if (column_blob(st, 2, u->key_md5, sizeof(u->key_md5))) return "key_md5";
    if (column_blob(st, 3, u->key_sha256, sizeof(u->key_sha256))) return "key_sha256";
    if (column_blob(st, 4, u->userhash, sizeof(u->userhash))) return "userhash";
    if (column_int(st, 5, 0, UINT32_MAX, &maxalloc)) return "max_allocations";
    if (column_int(st, 6, 0, INT64_MAX, &bw)) return "bandwidth_bps";
    if (column_int(st, 7, 0, 1, &disabled)) return "disabled";
    if (column_int(st, 8, INT64_MIN, INT64_MAX, &created)) return "created";
    u->max_allocations = (uint32_t)maxalloc;
    u->bandwidth_bps = (uint64_t)bw;
    u->disabled = disabled;
    u->created = created;
    return NULL;
}

static int sq_user_each(struct store *base, const char *realm,
                        int (*fn)(void *ctx, const struct store_user *u), void *ctx,
                        char err[STORE_ERR_LEN])
{
    struct sq_store *s = sq(base);
    /* Two constant statements rather than "?1 IS NULL OR realm = ?1", which would keep the
     * primary key from serving the one-realm case. */
    static const char all[] = "SELECT " USER_COLUMNS " FROM users ORDER BY realm, name";
    static const char one[] = "SELECT " USER_COLUMNS " FROM users WHERE realm = ?1 ORDER BY name";
    struct store_user u;
    char what[STORE_ERR_LEN], cr[STORE_CLIP_BYTES + 4];
    sqlite3_stmt *st = NULL;
    int ret = STORE_ERROR;

    if (realm)
        snprintf(what, sizeof(what), "cannot list the users of realm \"%s\"",
                 store_clip(realm, cr));
    else
        snprintf(what, sizeof(what), "cannot list the users");
    int rc = sqlite3_prepare_v2(s->db, realm ? one : all, -1, &st, NULL);
    if (rc == SQLITE_OK && realm) rc = sqlite3_bind_text(st, 1, realm, -1, SQLITE_STATIC);
    if (rc != SQLITE_OK) {
        ret = db_error(s, err, what);
        goto out;
    }
    /* One statement: the walk sees one snapshot of the file, whatever commits meanwhile. */
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *bad = read_user(st, &u);
        if (bad) {
            char cn[STORE_CLIP_BYTES + 4];
            const unsigned char *name = sqlite3_column_text(st, 1);
            seterr(err, s->path, "%s: the row of user \"%s\" has a bad %s", what,
                   store_clip(name ? (const char *)name : "", cn), bad);
            goto out;
        }
        if (fn(ctx, &u)) break;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        ret = db_error(s, err, what);
        goto out;
    }
    ret = STORE_OK;

out:
    sqlite3_finalize(st);
    OPENSSL_cleanse(&u, sizeof(u));
    return ret;
}

static int sq_secret_add(struct store *base, const char *secret, int64_t *id,
                         char err[STORE_ERR_LEN])
{
    struct sq_store *s = sq(base);
    /* RETURNING rather than sqlite3_last_insert_rowid: right even if another thread inserts
     * through this connection meanwhile. */
    static const char sql[] = "INSERT INTO secrets (secret, created) VALUES (?1, ?2) RETURNING id";
    static const char what[] = "cannot add the secret"; /* never echoed: it is a secret */
    size_t len = secret ? strlen(secret) : 0;
    sqlite3_stmt *st = NULL;
    int ret = STORE_INVALID;

    if (!len) {
        seterr(err, s->path, "%s: it is empty", what);
        goto out;
    }
    if (len > STORE_MAX_SECRET) {
        seterr(err, s->path, "%s: it is %zu bytes, more than %d", what, len, STORE_MAX_SECRET);
        goto out;
    }
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_bind_text(st, 1, secret, (int)len, SQLITE_STATIC);
    if (rc == SQLITE_OK) rc = sqlite3_bind_int64(st, 2, (sqlite3_int64)time(NULL));
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        int64_t newid = sqlite3_column_int64(st, 0);
        rc = sqlite3_step(st); /* the insert completes at DONE */
        if (rc == SQLITE_DONE && id) *id = newid;
    }
    if (rc == SQLITE_DONE) {
        ret = STORE_OK;
    } else if (rc == SQLITE_CONSTRAINT_UNIQUE) {
        ret = STORE_EXISTS;
        seterr(err, s->path, "%s: it is already there", what);
    } else {
        ret = db_error(s, err, what);
    }

out:
    sqlite3_finalize(st);
    return ret;
}

static int sq_secret_del(struct store *base, int64_t id, char err[STORE_ERR_LEN])
{
    struct sq_store *s = sq(base);
    static const char sql[] = "DELETE FROM secrets WHERE id = ?1";
    char what[64];
    sqlite3_stmt *st = NULL;
    int ret = STORE_ERROR;

    snprintf(what, sizeof(what), "cannot delete secret %lld", (long long)id);
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_bind_int64(st, 1, id);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    if (rc != SQLITE_DONE) {
        ret = db_error(s, err, what);
    } else if (sqlite3_changes(s->db) == 0) {
        ret = STORE_NOT_FOUND;
        seterr(err, s->path, "%s: no such secret", what);
    } else {
        ret = STORE_OK;
    }
    sqlite3_finalize(st);
    return ret;
}

static int sq_secret_each(struct store *base, int (*fn)(void *ctx, const struct store_secret *sec),
                          void *ctx, char err[STORE_ERR_LEN])
{
    struct sq_store *s = sq(base);
    static const char sql[] = "SELECT " SECRET_COLUMNS " FROM secrets ORDER BY id";
    static const char what[] = "cannot list the secrets";
    struct store_secret sec;
    sqlite3_stmt *st = NULL;
    int ret = STORE_ERROR;
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);

    memset(&sec, 0, sizeof(sec));
    if (rc != SQLITE_OK) {
        ret = db_error(s, err, what);
        goto out;
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        memset(&sec, 0, sizeof(sec));
        if (column_int(st, 0, INT64_MIN, INT64_MAX, &sec.id) ||
            column_text(st, 1, sec.secret, STORE_MAX_SECRET) ||
            column_int(st, 2, INT64_MIN, INT64_MAX, &sec.created)) {
            seterr(err, s->path, "%s: the row of secret %lld is malformed", what,
                   (long long)sqlite3_column_int64(st, 0));
            goto out;
        }
        if (fn(ctx, &sec)) break;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        ret = db_error(s, err, what);
        goto out;
    }
    ret = STORE_OK;

out:
    sqlite3_finalize(st);
    OPENSSL_cleanse(&sec, sizeof(sec));
    return ret;
}

/* PRAGMA data_version moves when another connection commits (not this one's own commits);
 * -1 when it cannot be read, which a poller takes as "changed" and then learns why on reload. */
static int64_t sq_data_version(struct store *base)
{
    struct sq_store *s = sq(base);
    int64_t v = -1;
    if (query_int(s->db, "PRAGMA data_version", &v) != SQLITE_OK) return -1;
    return v;
}

/* Call records (qos.record_database) live in PostgreSQL only: a fleet's rows, with jsonb. */
static int no_calls(struct sq_store *s, char *err)
{
    seterr(err, s->path,
           "call records need a PostgreSQL auth.database (a postgresql:// URI), not a SQLite "
           "file");
    return STORE_UNSUPPORTED;
}

static int sq_calls_insert(struct store *base, const char *const *records_json, size_t n,
                           const char *node_id, char err[STORE_ERR_LEN])
{
    (void)records_json;
    (void)n;
    (void)node_id;
    return no_calls(sq(base), err);
}

static int sq_calls_each(struct store *base, int64_t since_unix, const char *user,
                         enum store_calls_order order, size_t limit,
                         int (*fn)(void *ctx, const struct store_call *c), void *ctx,
                         char err[STORE_ERR_LEN])
{
    (void)since_unix;
    (void)user;
    (void)order;
    (void)limit;
    (void)fn;
    (void)ctx;
    return no_calls(sq(base), err);
}

static const struct store_ops sqlite_ops = {
    .close = sq_close,
    .user_add = sq_user_add,
    .user_passwd = sq_user_passwd,
    .user_del = sq_user_del,
    .user_set_disabled = sq_user_set_disabled,
    .user_set_limits = sq_user_set_limits,
    .user_each = sq_user_each,
    .secret_add = sq_secret_add,
    .secret_del = sq_secret_del,
    .secret_each = sq_secret_each,
    .data_version = sq_data_version,
    .calls_insert = sq_calls_insert,
    .calls_each = sq_calls_each,
};
