/* test_store.c: unit tests of the SQLite credential database (auth/store.c), on files in a
 * fresh temporary directory per test.
 *
 * Run one test by name (a glob): `test_store secrets_*` or CMOCKA_FILTER='user_*' test_store. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "auth.h"
#include "store.h"

struct fx {
    char dir[64];
    char db[128]; /* dir/tern.db, not created */
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    strcpy(f->dir, "/tmp/tern-store-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->db, sizeof(f->db), "%s/tern.db", f->dir);
    *state = f;
    return 0;
}

/* Remove everything the test left (the database, -wal, -shm, other files, one level of
 * subdirectories), then the directory. */
static int teardown(void **state)
{
    struct fx *f = *state;
    DIR *d = opendir(f->dir);
    struct dirent *e;
    char p[512];

    assert_non_null(d);
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof(p), "%s/%s", f->dir, e->d_name);
        if (unlink(p)) rmdir(p);
    }
    closedir(d);
    assert_int_equal(rmdir(f->dir), 0);
    free(f);
    return 0;
}

static struct store *create(const struct fx *f)
{
    char err[STORE_ERR_LEN] = "";
    struct store *s = store_open(f->db, STORE_CREATE, err);
    if (!s) fail_msg("store_open: %s", err);
    assert_string_equal(err, "");
    return s;
}

/* The whole content of a file (caller frees); NULL when it does not exist. */
static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    assert_int_equal(fseek(fp, 0, SEEK_END), 0);
    long n = ftell(fp);
    assert_true(n >= 0);
    rewind(fp);
    uint8_t *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    *len = (size_t)n;
    return buf;
}

/* Whether needle occurs in the database file or its -wal. */
static int file_contains(const struct fx *f, const char *needle)
{
    char wal[160];
    const char *paths[] = {f->db, wal};
    int found = 0;

    snprintf(wal, sizeof(wal), "%s-wal", f->db);
    for (size_t i = 0; i < 2; i++) {
        size_t len = 0;
        uint8_t *buf = slurp(paths[i], &len);
        if (i == 0) assert_non_null(buf);
        if (buf && memmem(buf, len, needle, strlen(needle))) found = 1;
        free(buf);
    }
    return found;
}

static void write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(text, 1, strlen(text), fp), strlen(text));
    assert_int_equal(fclose(fp), 0);
}

/* Run SQL on the file through SQLite directly (making foreign or future files). */
static void raw_exec(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) fail_msg("%s: %s", sql, msg);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

static int64_t raw_int(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
    return v;
}

/* Users collected by store_user_each. */
struct users {
    struct store_user u[8];
    int n;
    int stop_after; /* 0: never stop */
};

static int collect(void *ctx, const struct store_user *u)
{
    struct users *l = ctx;
    assert_true(l->n < 8);
    l->u[l->n++] = *u;
    return l->stop_after && l->n == l->stop_after;
}

static struct users list(struct store *s, const char *realm)
{
    struct users l;
    char err[STORE_ERR_LEN] = "";
    memset(&l, 0, sizeof(l));
    assert_int_equal(store_user_each(s, realm, collect, &l, err), STORE_OK);
    assert_string_equal(err, "");
    return l;
}

struct secrets {
    struct store_secret v[8];
    int n;
};

static int collect_secret(void *ctx, const struct store_secret *sec)
{
    struct secrets *l = ctx;
    assert_true(l->n < 8);
    l->v[l->n++] = *sec;
    return 0;
}

static struct secrets list_secrets(struct store *s)
{
    struct secrets l;
    char err[STORE_ERR_LEN] = "";
    memset(&l, 0, sizeof(l));
    assert_int_equal(store_secret_each(s, collect_secret, &l, err), STORE_OK);
    return l;
}

static void assert_keys(const struct store_user *u, const char *password)
{
    uint8_t md5[16], sha256[32], hash[STUN_USERHASH_LEN];
    size_t nlen = strlen(u->name), rlen = strlen(u->realm), plen = strlen(password);

    assert_int_equal(auth_longterm_key(STUN_PASSWORD_ALG_MD5, u->name, nlen, u->realm, rlen,
                                       password, plen, md5),
                     16);
    assert_int_equal(auth_longterm_key(STUN_PASSWORD_ALG_SHA256, u->name, nlen, u->realm, rlen,
                                       password, plen, sha256),
                     32);
    assert_int_equal(auth_userhash(u->name, nlen, u->realm, rlen, hash), 0);
    assert_memory_equal(u->key_md5, md5, 16);
    assert_memory_equal(u->key_sha256, sha256, 32);
    assert_memory_equal(u->userhash, hash, STUN_USERHASH_LEN);
}

static void existing_missing_names_file(void **state)
{
    struct fx *f = *state;
    char err[STORE_ERR_LEN] = "", want[512];

    assert_null(store_open(f->db, STORE_EXISTING, err));
    snprintf(want, sizeof(want),
             "%s: no such database file (create it with: ternctl --db %s user add ...)", f->db,
             f->db);
    assert_string_equal(err, want);
    assert_int_equal(access(f->db, F_OK), -1); /* and nothing was created */

    assert_null(store_open("", STORE_EXISTING, err));
    assert_string_equal(err, "the database path is empty");
}

static void create_then_existing(void **state)
{
    struct fx *f = *state;
    char err[STORE_ERR_LEN] = "";
    struct store *s = create(f);

    store_close(s);
    assert_int_equal(raw_int(f->db, "PRAGMA user_version"), STORE_SQLITE_SCHEMA_VERSION);
    s = store_open(f->db, STORE_EXISTING, err);
    assert_non_null(s);
    assert_int_equal(store_user_add(s, "tern", "alice", "pw", 0, 0, err), STORE_OK);
    store_close(s);
    /* CREATE on an existing file opens it as it is. */
    s = create(f);
    assert_int_equal(list(s, NULL).n, 1);
    store_close(s);

    struct stat st;
    assert_int_equal(stat(f->db, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
}

/* An empty file (touched by hand) is a new database: migrated, not refused. */
static void existing_empty_file_is_migrated(void **state)
{
    struct fx *f = *state;
    char err[STORE_ERR_LEN] = "";

    write_file(f->db, "");
    struct store *s = store_open(f->db, STORE_EXISTING, err);
    if (!s) fail_msg("%s", err);
    assert_int_equal(list(s, NULL).n, 0);
    store_close(s);
    assert_int_equal(raw_int(f->db, "PRAGMA user_version"), STORE_SQLITE_SCHEMA_VERSION);
}

static void file_modes_and_wal(void **state)
{
    struct fx *f = *state;
    char err[STORE_ERR_LEN] = "", wal[160];
    struct stat st;
    mode_t old = umask(0); /* the file must be 0600 whatever the umask */
    struct store *s = create(f);

    umask(old);
    assert_int_equal(store_user_add(s, "tern", "alice", "pw", 0, 0, err), STORE_OK);
    assert_int_equal(stat(f->db, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    /* The journal holds keys too: SQLite gives it the database's mode. */
    snprintf(wal, sizeof(wal), "%s-wal", f->db);
    assert_int_equal(stat(wal, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    store_close(s);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM pragma_journal_mode WHERE "
                                    "journal_mode = 'wal'"),
                     1);
}

static void user_add_and_list(void **state)
{
    struct fx *f = *state;
    char err[STORE_ERR_LEN] = "";
    struct store *s = create(f);
    time_t before = time(NULL);

    assert_int_equal(store_user_add(s, "tern", "bob", "s3cret", 3, 125000, err), STORE_OK);
    assert_int_equal(store_user_add(s, "tern", "alice", "pässword", 0, 0, err), STORE_OK);
    assert_string_equal(err, "");
    struct users l = list(s, "tern");
    assert_int_equal(l.n, 2);
    assert_string_equal(l.u[0].name, "alice"); /* ordered by name */
    assert_string_equal(l.u[0].realm, "tern");
    assert_keys(&l.u[0], "pässword");
    assert_int_equal(l.u[0].max_allocations, 0);
    assert_int_equal(l.u[0].bandwidth_bps, 0);
    assert_false(l.u[0].disabled);
    assert_true(l.u[0].created >= before && l.u[0].created <= time(NULL));
    assert_string_equal(l.u[1].name, "bob");
    assert_keys(&l.u[1], "s3cret");
    assert_int_equal(l.u[1].max_allocations, 3);
    assert_int_equal(l.u[1].bandwidth_bps, 125000);

    /* The widest values round-trip. */
    assert_int_equal(store_user_add(s, "tern", "max", "pw", UINT32_MAX, INT64_MAX, err), STORE_OK);
    l = list(s, "tern");
    assert_int_equal(l.n, 3);
    assert_int_equal(l.u[2].max_allocations, UINT32_MAX);
    assert_true(l.u[2].bandwidth_bps == (uint64_t)INT64_MAX);
    store_close(s);
}

/* The RFC 5769 user: the key is over SASLprep(password), as clients compute it. */
static void user_key_uses_saslprep(void **state)
{
    static const char user[] = "\xe3\x83\x9e\xe3\x83\x88\xe3\x83\xaa\xe3\x83\x83\xe3\x82\xaf"
                               "\xe3\x82\xb9";
    struct fx *f = *state;
    char err[STORE_ERR_LEN] = "";
    struct store *s = create(f);
    uint8_t prepped[16];

    assert_int_equal(
        store_user_add(s, "example.org", user, "The\xc2\xadM\xc2\xaatr\xe2\x85\xa8", 0, 0, err),
        STORE_OK);
    struct users l = list(s, "example.org");
    assert_int_equal(l.n, 1);
    assert_int_equal(auth_longterm_key(STUN_PASSWORD_ALG_MD5, user, strlen(user), "example.org", 11,
                                       "TheMatrIX", 9, prepped),
                     16);
    assert_memory_equal(l.u[0].key_md5, prepped, 16);
    store_close(s);
}

static void passwords_not_in_file(void **state)
{
    static const char pw1[] = "Correct-Horse-Battery-Staple-1";
    static const char pw2[] = "Tr0ub4dor&3-second-password";
    struct fx *f = *state;
    char err[STORE_ERR_LEN] = "";
    struct store *s = create(f);

    assert_int_equal(store_user_add(s, "tern", "alice", pw1, 0, 0, err), STORE_OK);
    assert_false(file_contains(f, pw1)); /* open: the -wal holds the commit */
    assert_int_equal(store_user_passwd(s, "tern", "alice", pw2, err), STORE_OK);
    store_close(s);
    assert_true(file_contains(f, "alice")); /* the search does see text in the file */
    assert_false(file_contains(f, pw1));
    assert_false(file_contains(f, pw2));
}

static void user_passwd(void **state)
{
    struct fx *f = *state;
    char err[STORE_ERR_LEN] = "";
    struct store *s = create(f);

    assert_int_equal(store_user_add(s, "tern", "alice", "old", 4, 1000, err), STORE_OK);
    struct users before = list(s, "tern");
    assert_int_equal(store_user_passwd(s, "tern", "alice", "new", err), STORE_OK);
    struct users after = list(s, "tern");
    assert_int_equal(after.n, 1);
    assert_keys(&after.u[0], "new");
    /* Everything but the keys stays. */
    assert_memory_equal(after.u[0].userhash, before.u[0].userhash, STUN_USERHASH_LEN);
    assert_int_equal(after.u[0].max_allocations, 4);
    assert_int_equal(after.u[0].bandwidth_bps, 1000);
    assert_int_equal(after.u[0].created, before.u[0].created);

    assert_int_equal(store_user_passwd(s, "tern", "nobody", "x", err), STORE_NOT_FOUND);
    char want[512];
    snprintf(want, sizeof(want),
             "%s: cannot change the password of user \"nobody\" in realm \"tern\": no such user",
             f->db);
    assert_string_equal(err, want);
    assert_int_equal(store_user_passwd(s, "tern", "alice", "", err), STORE_INVALID);
    store_close(s);
}

static void user_disable_limits_del(void **state)
{
    struct fx *f = *state;
    char err[STORE_ERR_LEN] = "";
    struct store *s = create(f);

    assert_int_equal(store_user_add(s, "tern", "alice", "pw", 0, 0, err), STORE_OK);
    assert_int_equal(store_user_set_disabled(s, "tern", "alice", true, err), STORE_OK);
    assert_true(list(s, "tern").u[0].disabled);
    assert_int_equal(store_user_set_disabled(s, "tern", "alice", false, err), STORE_OK);
    assert_false(list(s, "tern").u[0].disabled);

    assert_int_equal(store_user_set_limits(s, "tern", "alice", 7, 64000, err), STORE_OK);
    struct users l = list(s, "tern");
    assert_int_equal(l.u[0].max_allocations, 7);
    assert_int_equal(l.u[0].bandwidth_bps, 64000);
    assert_keys(&l.u[0], "pw");
    assert_int_equal(store_user_set_limits(s, "tern", "alice", 1, (uint64_t)INT64_MAX + 1, err),
                     STORE_INVALID);
    assert_non_null(strstr(err, "bandwidth"));
    assert_int_equal(list(s, "tern").u[0].max_allocations, 7); /* unchanged */

    assert_int_equal(store_user_del(s, "tern", "alice", err), STORE_OK);
    assert_int_equal(list(s, "tern").n, 0);
    assert_int_equal(store_user_del(s, "tern", "alice", err), STORE_NOT_FOUND);
    assert_int_equal(store_user_set_disabled(s, "tern", "alice", true, err), STORE_NOT_FOUND);
    assert_int_equal(store_user_set_limits(s, "tern", "alice", 1, 1, err), STORE_NOT_FOUND);
    /* Deleted, the name is free again. */
    assert_int_equal(store_user_add(s, "tern", "alice", "pw2", 0, 0, err), STORE_OK);
    store_close(s);
}

static void user_exists(void **state)
{
    struct fx *f = *state;
    char err[STORE_ERR_LEN] = "", want[512];
    struct store *s = create(f);

    assert_int_equal(store_user_add(s, "tern", "alice", "pw", 0, 0, err), STORE_OK);
    assert_int_equal(store_user_add(s, "tern", "alice", "other", 5, 5, err), STORE_EXISTS);
    snprintf(want, sizeof(want),
             "%s: cannot add user \"alice\" in realm \"tern\": it already exists", f->db);
    assert_string_equal(err, want);
    struct users l = list(s, "tern");
    assert_int_equal(l.n, 1);
    assert_keys(&l.u[0], "pw"); /* the first one stays */
    /* Names are exact bytes: another case is another user. */
    assert_int_equal(store_user_add(s, "tern", "Alice", "pw", 0, 0, err), STORE_OK);
    store_close(s);
}

static void user_invalid(void **state)
{
    static char long_name[STUN_MAX_USERNAME + 2], max_name[STUN_MAX_USERNAME + 1];
    static char long_realm[STUN_MAX_TEXT_BYTES + 2], max_realm[STUN_MAX_TEXT_BYTES + 1];
    struct fx *f = *state;
    char err[STORE_ERR_LEN] = "";
    struct store *s = create(f);

    memset(long_name, 'n', sizeof(long_name) - 1);
    memset(max_name, 'n', sizeof(max_name) - 1);
    memset(long_realm, 'r', sizeof(long_realm) - 1);
    memset(max_realm, 'r', sizeof(max_realm) - 1);
    const struct {
        const char *realm, *name, *password, *why;
    } bad[] = {
        {"tern", "", "pw", "the name is empty"},
        {"tern", NULL, "pw", "the name is empty"},
        {"tern", long_name, "pw", "the name is 513 bytes, more than 512"},
        {"", "alice", "pw", "the realm is empty"},
        {NULL, "alice", "pw", "the realm is empty"},
        {long_realm, "alice", "pw", "the realm is 764 bytes, more than 763"},
        {"tern", "alice", "", "the password is empty"},
        {"tern", "alice", NULL, "the password is empty"},
        /* ASCII control characters are prohibited output (RFC 4013 2.3, RFC 3454 C.2.1). */
        {"tern", "alice", "pw\x01", "SASLprep refused the password"},
        {"tern", "alice", "\xff\xfe", "SASLprep refused the password"},
        {"te\xffrn", "alice", "pw", "SASLprep refused the realm"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = 0;
        assert_int_equal(store_user_add(s, bad[i].realm, bad[i].name, bad[i].password, 0, 0, err),
                         STORE_INVALID);
        if (!strstr(err, bad[i].why)) fail_msg("case %zu: %s", i, err);
        assert_non_null(strstr(err, f->db));
        if (bad[i].password && *bad[i].password) /* never echoed */
            assert_null(strstr(err, bad[i].password));
    }
    /* The clipped name keeps the reason inside STORE_ERR_LEN. */
    assert_int_equal(store_user_add(s, long_realm, "alice", "pw", 0, 0, err), STORE_INVALID);
    assert_non_null(strstr(err, "..."));
    assert_int_equal(store_user_add(s, "tern", "alice", "pw", 0, (uint64_t)INT64_MAX + 1, err),
                     STORE_INVALID);
    assert_int_equal(store_user_del(s, "", "alice", err), STORE_INVALID);
    assert_int_equal(store_user_set_disabled(s, "tern", "", true, err), STORE_INVALID);
    assert_int_equal(store_user_set_limits(s, "tern", long_name, 1, 1, err), STORE_INVALID);
    assert_int_equal(list(s, NULL).n, 0);

    /* The limits themselves are fine. */
    assert_int_equal(store_user_add(s, max_realm, max_name, "pw", 0, 0, err), STORE_OK);
    struct users l = list(s, max_realm);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.u[0].name, max_name);
    assert_keys(&l.u[0], "pw");
    store_close(s);
}

static void realms_kept_apart(void **state)
{
    struct fx *f = *state;
    char err[STORE_ERR_LEN] = "";
    struct store *s = create(f);

    assert_int_equal(store_user_add(s, "a.example", "alice", "pw", 0, 0, err), STORE_OK);
    assert_int_equal(store_user_add(s, "b.example", "alice", "pw", 2, 0, err), STORE_OK);
    assert_int_equal(store_user_add(s, "b.example", "bob", "pw", 0, 0, err), STORE_OK);
    struct users a = list(s, "a.example"), b = list(s, "b.example");
    assert_int_equal(a.n, 1);
    assert_int_equal(b.n, 2);
    assert_string_equal(a.u[0].realm, "a.example");
    assert_string_equal(b.u[0].realm, "b.example");
    /* Same name and password, other realm: other keys. */
    assert_memory_not_equal(a.u[0].key_sha256, b.u[0].key_sha256, 32);
    assert_memory_not_equal(a.u[0].userhash, b.u[0].userhash, STUN_USERHASH_LEN);
    assert_int_equal(list(s, "c.example").n, 0);

    assert_int_equal(store_user_set_disabled(s, "a.example", "alice", true, err), STORE_OK);
    assert_false(list(s, "b.example").u[0].disabled);
    assert_int_equal(store_user_del(s, "a.example", "bob", err), STORE_NOT_FOUND);
    assert_int_equal(store_user_del(s, "b.example", "alice", err), STORE_OK);
    assert_int_equal(list(s, "a.example").n, 1);
    assert_int_equal(list(s, "b.example").n, 1);
    store_close(s);
}

static void each_all_realms_ordered(void **state)
{
    struct fx *f = *state;
    char err[STORE_ERR_LEN] = "";
    struct store *s = create(f);

    assert_int_equal(store_user_add(s, "zeta", "amy", "pw", 0, 0, err), STORE_OK);
    assert_int_equal(store_user_add(s, "alpha", "zed", "pw", 0, 0, err), STORE_OK);
    assert_int_equal(store_user_add(s, "alpha", "bea", "pw", 0, 0, err), STORE_OK);
    struct users l = list(s, NULL);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.u[0].realm, "alpha");
    assert_string_equal(l.u[0].name, "bea");
    assert_string_equal(l.u[1].realm, "alpha");
    assert_string_equal(l.u[1].name, "zed");
    assert_string_equal(l.u[2].realm, "zeta");
    assert_string_equal(l.u[2].name, "amy");

    /* fn returning non-zero stops the walk, and that is not an error. */
    memset(&l, 0, sizeof(l));
    l.stop_after = 2;
    assert_int_equal(store_user_each(s, NULL, collect, &l, err), STORE_OK);
    assert_int_equal(l.n, 2);
    store_close(s);
}

/* A row edited by hand into something the struct cannot hold is an error, not truncated. */
static void malformed_row_is_an_error(void **state)
{
    struct fx *f = *state;
    char err[STORE_ERR_LEN] = "";
    struct store *s = create(f);

    assert_int_equal(store_user_add(s, "tern", "alice", "pw", 0, 0, err), STORE_OK);
    store_close(s);
    raw_exec(f->db, "PRAGMA ignore_check_constraints = ON;"
                    "UPDATE users SET key_md5 = x'00' WHERE name = 'alice'");
    s = create(f);
    struct users l;
    memset(&l, 0, sizeof(l));
    assert_int_equal(store_user_each(s, "tern", collect, &l, err), STORE_ERROR);
    assert_int_equal(l.n, 0);
    assert_non_null(strstr(err, f->db));
    assert_non_null(strstr(err, "key_md5"));
    store_close(s);
}

static void secrets_add_list_del(void **state)
{
    struct fx *f = *state;
    char err[STORE_ERR_LEN] = "", want[512];
    char max[STORE_MAX_SECRET + 1], over[STORE_MAX_SECRET + 2];
    struct store *s = create(f);
    int64_t id1 = 0, id2 = 0, id3 = 0;
    time_t before = time(NULL);

    assert_int_equal(list_secrets(s).n, 0);
    assert_int_equal(store_secret_add(s, "first-secret", &id1, err), STORE_OK);
    assert_int_equal(store_secret_add(s, "second-secret", &id2, err), STORE_OK);
    assert_true(id1 > 0 && id2 > id1);
    struct secrets l = list_secrets(s);
    assert_int_equal(l.n, 2);
    assert_true(l.v[0].id == id1);
    assert_string_equal(l.v[0].secret, "first-secret");
    assert_true(l.v[0].created >= before && l.v[0].created <= time(NULL));
    assert_true(l.v[1].id == id2);
    assert_string_equal(l.v[1].secret, "second-secret");

    assert_int_equal(store_secret_add(s, "first-secret", &id3, err), STORE_EXISTS);
    snprintf(want, sizeof(want), "%s: cannot add the secret: it is already there", f->db);
    assert_string_equal(err, want);
    assert_int_equal(store_secret_add(s, "", &id3, err), STORE_INVALID);
    snprintf(want, sizeof(want), "%s: cannot add the secret: it is empty", f->db);
    assert_string_equal(err, want);
    assert_int_equal(store_secret_add(s, NULL, &id3, err), STORE_INVALID);
    memset(max, 'm', sizeof(max) - 1);
    max[sizeof(max) - 1] = 0;
    memset(over, 'o', sizeof(over) - 1);
    over[sizeof(over) - 1] = 0;
    assert_int_equal(store_secret_add(s, over, &id3, err), STORE_INVALID);
    snprintf(want, sizeof(want), "%s: cannot add the secret: it is 257 bytes, more than 256",
             f->db);
    assert_string_equal(err, want);
    assert_int_equal(store_secret_add(s, max, NULL, err), STORE_OK); /* id is optional */
    l = list_secrets(s);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.v[2].secret, max);

    assert_int_equal(store_secret_del(s, id2, err), STORE_OK);
    assert_int_equal(store_secret_del(s, id2, err), STORE_NOT_FOUND);
    snprintf(want, sizeof(want), "%s: cannot delete secret %lld: no such secret", f->db,
             (long long)id2);
    assert_string_equal(err, want);
    l = list_secrets(s);
    assert_int_equal(l.n, 2);
    assert_true(l.v[0].id == id1);
    assert_string_equal(l.v[1].secret, max);

    /* An id once given is never given again, even after the newest is deleted. */
    int64_t last = l.v[1].id;
    assert_int_equal(store_secret_del(s, last, err), STORE_OK);
    assert_int_equal(store_secret_add(s, "third-secret", &id3, err), STORE_OK);
    assert_true(id3 > last);
    store_close(s);
}

/* secure_delete: a deleted secret is overwritten in the file, not left in a free page. */
static void deleted_secret_leaves_no_trace(void **state)
{
    static const char secret[] = "this-secret-will-be-deleted-0123456789";
    struct fx *f = *state;
    char err[STORE_ERR_LEN] = "";
    struct store *s = create(f);
    int64_t id = 0;

    assert_int_equal(store_secret_add(s, secret, &id, err), STORE_OK);
    assert_int_equal(store_secret_add(s, "kept-secret", NULL, err), STORE_OK);
    store_close(s);
    assert_true(file_contains(f, secret));
    s = create(f);
    assert_int_equal(store_secret_del(s, id, err), STORE_OK);
    store_close(s);
    assert_true(file_contains(f, "kept-secret"));
    assert_false(file_contains(f, secret));
}

static void data_version_tracks_other_commits(void **state)
{
    struct fx *f = *state;
    char err[STORE_ERR_LEN] = "";
    struct store *reader = create(f);
    struct store *writer = create(f);

    int64_t v0 = store_data_version(reader);
    assert_true(v0 >= 0);
    assert_int_equal(list(reader, NULL).n, 0);
    assert_int_equal(list_secrets(reader).n, 0);
    assert_int_equal(store_data_version(reader), v0); /* reads change nothing */

    assert_int_equal(store_user_add(writer, "tern", "alice", "pw", 0, 0, err), STORE_OK);
    int64_t v1 = store_data_version(reader);
    assert_true(v1 != v0);
    assert_int_equal(list(reader, NULL).n, 1);
    assert_int_equal(store_data_version(reader), v1);

    /* A failed write commits nothing. */
    assert_int_equal(store_user_add(writer, "tern", "alice", "pw", 0, 0, err), STORE_EXISTS);
    assert_int_equal(store_data_version(reader), v1);
    assert_int_equal(store_secret_add(writer, "s", NULL, err), STORE_OK);
    assert_true(store_data_version(reader) != v1);

    /* PRAGMA data_version does not see the connection's own commits: a process that both
     * writes and polls must use two connections. */
    int64_t w = store_data_version(writer);
    assert_int_equal(store_user_del(writer, "tern", "alice", err), STORE_OK);
    assert_int_equal(store_data_version(writer), w);
    store_close(writer);
    store_close(reader);
}

/* WAL: a reader in the middle of a walk does not hold up a writer on another connection. */
struct walk {
    struct store *writer;
    int calls;
    int rc;
    time_t took;
};

static int write_during_walk(void *ctx, const struct store_user *u)
{
    struct walk *w = ctx;
    char err[STORE_ERR_LEN] = "", name[32];
    time_t t0 = time(NULL);

    snprintf(name, sizeof(name), "new-%.20s", u->name);
    w->rc = store_user_add(w->writer, "tern", name, "pw", 0, 0, err);
    w->took = time(NULL) - t0;
    w->calls++;
    return 0;
}

static void reader_does_not_block_writer(void **state)
{
    struct fx *f = *state;
    char err[STORE_ERR_LEN] = "";
    struct store *reader = create(f);
    struct walk w = {.writer = create(f), .rc = -99};

    assert_int_equal(store_user_add(w.writer, "tern", "alice", "pw", 0, 0, err), STORE_OK);
    assert_int_equal(store_user_each(reader, "tern", write_during_walk, &w, err), STORE_OK);
    assert_int_equal(w.calls, 1); /* the walk's snapshot does not see the new user */
    assert_int_equal(w.rc, STORE_OK);
    assert_true(w.took <= 1); /* not a busy wait that happened to succeed */
    assert_int_equal(list(reader, "tern").n, 2);
    store_close(w.writer);
    store_close(reader);
}

static void newer_schema_refused(void **state)
{
    struct fx *f = *state;
    char err[STORE_ERR_LEN] = "", want[512];

    store_close(create(f));
    raw_exec(f->db, "PRAGMA user_version = 99");
    assert_null(store_open(f->db, STORE_EXISTING, err));
    snprintf(want, sizeof(want),
             "%s: schema version 99 is newer than this program's 1 (upgrade ternd)", f->db);
    assert_string_equal(err, want);
    assert_null(store_open(f->db, STORE_CREATE, err));
    assert_string_equal(err, want);
    assert_int_equal(raw_int(f->db, "PRAGMA user_version"), 99); /* left alone */
}

static void not_a_database_refused(void **state)
{
    struct fx *f = *state;
    char err[STORE_ERR_LEN] = "", want[512];
    char text[2048];

    /* Long enough for SQLite to read a whole header; and a short one. */
    memset(text, 'x', sizeof(text) - 1);
    text[sizeof(text) - 1] = 0;
    for (int i = 0; i < 2; i++) {
        write_file(f->db, i ? "realm: tern\n" : text);
        assert_null(store_open(f->db, STORE_EXISTING, err));
        snprintf(want, sizeof(want), "%s: not a Tern database: file is not a database", f->db);
        assert_string_equal(err, want);
        assert_null(store_open(f->db, STORE_CREATE, err));
        assert_string_equal(err, want);
    }
    size_t len = 0;
    uint8_t *buf = slurp(f->db, &len);
    assert_int_equal(len, 12);
    assert_memory_equal(buf, "realm: tern\n", 12); /* untouched */
    free(buf);
}

/* Another program's SQLite file: refused, and left as it was (not switched to WAL). */
static void foreign_database_refused(void **state)
{
    struct fx *f = *state;
    char err[STORE_ERR_LEN] = "", want[512];

    raw_exec(f->db, "CREATE TABLE photos (id INTEGER PRIMARY KEY, path TEXT)");
    assert_null(store_open(f->db, STORE_EXISTING, err));
    snprintf(want, sizeof(want), "%s: not a Tern database: it has tables but schema version 0",
             f->db);
    assert_string_equal(err, want);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM sqlite_master"), 1);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM pragma_journal_mode WHERE "
                                    "journal_mode = 'wal'"),
                     0);

    /* One that claims our version without our tables. */
    raw_exec(f->db, "PRAGMA user_version = 1");
    assert_null(store_open(f->db, STORE_EXISTING, err));
    snprintf(want, sizeof(want), "%s: not a Tern database: no such table: users", f->db);
    assert_string_equal(err, want);
}

static void unopenable_paths(void **state)
{
    struct fx *f = *state;
    char err[STORE_ERR_LEN] = "", want[512], path[160];

    snprintf(path, sizeof(path), "%s/sub", f->dir);
    assert_int_equal(mkdir(path, 0700), 0);
    for (int mode = STORE_EXISTING; mode <= STORE_CREATE; mode++) {
        assert_null(store_open(path, (enum store_mode)mode, err));
        snprintf(want, sizeof(want), "%s: cannot open: Is a directory", path);
        assert_string_equal(err, want);
    }
    /* CREATE in a directory that does not exist. */
    snprintf(path, sizeof(path), "%s/missing/tern.db", f->dir);
    assert_null(store_open(path, STORE_CREATE, err));
    snprintf(want, sizeof(want), "%s: cannot create: No such file or directory", path);
    assert_string_equal(err, want);
    /* A FIFO must not hang the open. */
    snprintf(path, sizeof(path), "%s/fifo", f->dir);
    assert_int_equal(mkfifo(path, 0600), 0);
    assert_null(store_open(path, STORE_EXISTING, err));
    snprintf(want, sizeof(want), "%s: cannot open: not a regular file", path);
    assert_string_equal(err, want);
}

/* SQLite would read "file:..." as a URI; the store takes it as the file it names. */
static void uri_like_path_is_a_path(void **state)
{
    struct fx *f = *state;
    char err[STORE_ERR_LEN] = "";
    int cwd = open(".", O_RDONLY | O_DIRECTORY);

    assert_true(cwd >= 0);
    assert_int_equal(chdir(f->dir), 0);
    struct store *s = store_open("file:x.db?mode=ro", STORE_CREATE, err);
    assert_int_equal(fchdir(cwd), 0);
    close(cwd);
    if (!s) fail_msg("%s", err);
    assert_int_equal(store_user_add(s, "tern", "alice", "pw", 0, 0, err), STORE_OK);
    store_close(s);

    char path[160];
    snprintf(path, sizeof(path), "%s/file:x.db?mode=ro", f->dir);
    assert_int_equal(access(path, F_OK), 0);
}

int main(int argc, char **argv)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(existing_missing_names_file),
        T(create_then_existing),
        T(existing_empty_file_is_migrated),
        T(file_modes_and_wal),
        T(user_add_and_list),
        T(user_key_uses_saslprep),
        T(passwords_not_in_file),
        T(user_passwd),
        T(user_disable_limits_del),
        T(user_exists),
        T(user_invalid),
        T(realms_kept_apart),
        T(each_all_realms_ordered),
        T(malformed_row_is_an_error),
        T(secrets_add_list_del),
        T(deleted_secret_leaves_no_trace),
        T(data_version_tracks_other_commits),
        T(reader_does_not_block_writer),
        T(newer_schema_refused),
        T(not_a_database_refused),
        T(foreign_database_refused),
        T(unopenable_paths),
        T(uri_like_path_is_a_path),
    };
#undef T
    const char *filter = argc > 1 ? argv[1] : getenv("CMOCKA_FILTER");

    if (filter) cmocka_set_test_filter(filter);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
