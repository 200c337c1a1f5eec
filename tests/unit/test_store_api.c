/* test_store_api.c: the credential store interface (auth/store.h), the same cases against
 * whichever backend TERN_STORE_DB names: a SQLite file (the default: a fresh temporary file)
 * or a postgresql:// URI (tests/integration/test_store_pg.sh runs this binary against a
 * throw-away PostgreSQL cluster). Each case starts from an empty database. Backend-specific
 * behaviour (SQLite's file modes and WAL, say) is in test_store.c. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "store.h"

static char db[512];
static bool pg;

static int drop_user(void *ctx, const struct store_user *u)
{
    struct store *s = ctx;
    char err[STORE_ERR_LEN];
    assert_int_equal(store_user_del(s, u->realm, u->name, err), STORE_OK);
    return 0;
}

static int64_t ids[64];
static size_t nids;
static int collect_secret(void *ctx, const struct store_secret *sec)
{
    (void)ctx;
    if (nids < 64) ids[nids++] = sec->id;
    return 0;
}

/* A handle on an empty database. */
static struct store *fresh(void)
{
    char err[STORE_ERR_LEN] = "";
    struct store *s = store_open(db, STORE_CREATE, err);
    if (!s) fail_msg("store_open %s: %s", db, err);
    /* deleting while walking is fine: the walk reads one snapshot first */
    assert_int_equal(store_user_each(s, NULL, drop_user, s, err), STORE_OK);
    nids = 0;
    assert_int_equal(store_secret_each(s, collect_secret, NULL, err), STORE_OK);
    for (size_t i = 0; i < nids; i++)
        assert_int_equal(store_secret_del(s, ids[i], err), STORE_OK);
    return s;
}

struct found {
    struct store_user u[8];
    size_t n;
};

static int collect_user(void *ctx, const struct store_user *u)
{
    struct found *f = ctx;
    if (f->n < 8) f->u[f->n++] = *u;
    return 0;
}

static void users_roundtrip(void **state)
{
    (void)state;
    struct store *s = fresh();
    char err[STORE_ERR_LEN] = "";
    assert_int_equal(store_user_add(s, "r1", "bob", "pw-b", 3, 1000, err), STORE_OK);
    assert_int_equal(store_user_add(s, "r1", "alice", "pw-a", 0, 0, err), STORE_OK);
    assert_int_equal(store_user_add(s, "r2", "carol", "pw-c", 0, 0, err), STORE_OK);
    assert_int_equal(store_user_add(s, "r1", "alice", "other", 0, 0, err), STORE_EXISTS);
    assert_non_null(strstr(err, "cannot add user \"alice\" in realm \"r1\": it already exists"));
    assert_int_equal(store_user_add(s, "r1", "", "pw", 0, 0, err), STORE_INVALID);
    assert_int_equal(store_user_add(s, "r1", "dave", "", 0, 0, err), STORE_INVALID);

    struct found f = {.n = 0};
    assert_int_equal(store_user_each(s, "r1", collect_user, &f, err), STORE_OK);
    assert_int_equal(f.n, 2);
    assert_string_equal(f.u[0].name, "alice"); /* ordered by name */
    assert_string_equal(f.u[1].name, "bob");
    assert_int_equal(f.u[1].max_allocations, 3);
    assert_int_equal(f.u[1].bandwidth_bps, 1000);
    assert_false(f.u[1].disabled);
    uint8_t key[16];
    assert_int_equal(auth_longterm_key(STUN_PASSWORD_ALG_MD5, "bob", 3, "r1", 2, "pw-b", 4, key),
                     16);
    assert_memory_equal(f.u[1].key_md5, key, 16);
    uint8_t uh[STUN_USERHASH_LEN];
    assert_int_equal(auth_userhash("bob", 3, "r1", 2, uh), 0);
    assert_memory_equal(f.u[1].userhash, uh, sizeof uh);

    f.n = 0;
    assert_int_equal(store_user_each(s, NULL, collect_user, &f, err), STORE_OK);
    assert_int_equal(f.n, 3);
    assert_string_equal(f.u[2].realm, "r2"); /* ordered by realm, name */

    assert_int_equal(store_user_passwd(s, "r1", "bob", "new-pw", err), STORE_OK);
    assert_int_equal(store_user_set_disabled(s, "r1", "bob", true, err), STORE_OK);
    assert_int_equal(store_user_set_limits(s, "r1", "bob", 7, 99, err), STORE_OK);
    f.n = 0;
    assert_int_equal(store_user_each(s, "r1", collect_user, &f, err), STORE_OK);
    assert_true(f.u[1].disabled);
    assert_int_equal(f.u[1].max_allocations, 7);
    assert_int_equal(f.u[1].bandwidth_bps, 99);
    assert_int_equal(auth_longterm_key(STUN_PASSWORD_ALG_MD5, "bob", 3, "r1", 2, "new-pw", 6, key),
                     16);
    assert_memory_equal(f.u[1].key_md5, key, 16);

    assert_int_equal(store_user_del(s, "r1", "bob", err), STORE_OK);
    assert_int_equal(store_user_del(s, "r1", "bob", err), STORE_NOT_FOUND);
    assert_non_null(strstr(err, "no such user"));
    assert_int_equal(store_user_passwd(s, "r1", "nobody", "x", err), STORE_NOT_FOUND);
    assert_int_equal(store_user_set_disabled(s, "r9", "alice", true, err), STORE_NOT_FOUND);
    store_close(s);
}

static void secrets_roundtrip(void **state)
{
    (void)state;
    struct store *s = fresh();
    char err[STORE_ERR_LEN] = "";
    int64_t a = 0, b = 0, c = 0;
    assert_int_equal(store_secret_add(s, "secret-one", &a, err), STORE_OK);
    assert_int_equal(store_secret_add(s, "secret-two", &b, err), STORE_OK);
    assert_true(b > a);
    assert_int_equal(store_secret_add(s, "secret-one", NULL, err), STORE_EXISTS);
    assert_null(strstr(err, "secret-one")); /* never echoed */
    assert_int_equal(store_secret_add(s, "", NULL, err), STORE_INVALID);
    nids = 0;
    assert_int_equal(store_secret_each(s, collect_secret, NULL, err), STORE_OK);
    assert_int_equal(nids, 2);
    assert_true(ids[0] == a && ids[1] == b);
    assert_int_equal(store_secret_del(s, b, err), STORE_OK);
    assert_int_equal(store_secret_del(s, b, err), STORE_NOT_FOUND);
    assert_int_equal(store_secret_add(s, "secret-three", &c, err), STORE_OK);
    assert_true(c > b); /* an id once shown is never given again */
    store_close(s);
}

/* Another connection's commit is seen: the version moves, a waiting reader is woken. */
static void changes_seen_across_connections(void **state)
{
    (void)state;
    struct store *reader = fresh();
    char err[STORE_ERR_LEN] = "";
    struct store *writer = store_open(db, STORE_EXISTING, err);
    assert_non_null(writer);
    int64_t v0 = store_data_version(reader);
    assert_true(v0 >= 0);
    int w = store_wait_change(reader, 10); /* PostgreSQL: LISTEN is set up by the first wait */
    assert_true(pg ? w == 0 || w == 1 : w == -2);
    if (pg)
        while (store_wait_change(reader, 50) == 1)
            ; /* notifications of fresh()'s own deletes */
    assert_int_equal(store_user_add(writer, "r1", "erin", "pw-e", 0, 0, err), STORE_OK);
    if (pg) assert_int_equal(store_wait_change(reader, 2000), 1);
    int64_t v1 = store_data_version(reader);
    assert_true(v1 >= 0 && v1 != v0);
    assert_int_equal(store_secret_add(writer, "another", NULL, err), STORE_OK);
    if (pg) assert_int_equal(store_wait_change(reader, 2000), 1);
    assert_true(store_data_version(reader) != v1);
    if (pg) assert_int_equal(store_wait_change(reader, 100), 0); /* nothing more */
    store_close(writer);
    store_close(reader);
}

/* ---- call records (PostgreSQL; SQLite says it cannot) ---- */

struct calls {
    struct store_call c[8];
    char rec[8][1024]; /* each record (its start) */
    size_t n;
};

static int collect_call(void *ctx, const struct store_call *c)
{
    struct calls *f = ctx;
    if (f->n < 8) {
        f->c[f->n] = *c;
        f->c[f->n].record = NULL;
        snprintf(f->rec[f->n], sizeof f->rec[0], "%s", c->record);
        f->n++;
    }
    return 0;
}

/* A quality record as worker_record writes it (the parts call_quality reads), ended ago_s
 * seconds before now; loss/jitter/rtt per leg (< 0: null). */
static char *record(const char *user, long ago_s, double lc, double lp, double jc, double jp,
                    double rc, double rp)
{
    static char buf[8][1024];
    static int k;
    char *out = buf[k++ % 8], started[32], ended[32], v[6][24];
    time_t t = time(NULL) - ago_s;
    struct tm tm;
    time_t t0 = t - 30;
    strftime(started, sizeof started, "%Y-%m-%dT%H:%M:%S.000Z", gmtime_r(&t0, &tm));
    strftime(ended, sizeof ended, "%Y-%m-%dT%H:%M:%S.250Z", gmtime_r(&t, &tm));
    double x[6] = {lc, lp, jc, jp, rc, rp};
    for (int i = 0; i < 6; i++)
        snprintf(v[i], sizeof v[i], x[i] < 0 ? "null" : "%g", x[i]);
    snprintf(out, 1024,
             "{\"type\":\"call_quality\",\"id\":\"1\",\"user\":\"%s\",\"realm\":\"r1\","
             "\"started_at\":\"%s\",\"ended_at\":\"%s\",\"duration_seconds\":30.25,"
             "\"reason\":\"deleted\",\"qos\":{"
             "\"client_leg\":{\"rtp\":{\"loss_ratio\":%s,\"jitter_seconds\":0.001},"
             "\"intervals\":{\"jitter_p95_seconds\":%s},\"rtt\":{\"p95_seconds\":%s}},"
             "\"peer_leg\":{\"rtp\":{\"loss_ratio\":%s,\"jitter_seconds\":null},"
             "\"intervals\":{\"jitter_p95_seconds\":%s},\"rtt\":{\"p95_seconds\":null,"
             "\"last_seconds\":%s}}}}",
             user, started, ended, v[0], v[2], v[4], v[1], v[3], v[5]);
    return out;
}

static void calls_roundtrip(void **state)
{
    (void)state;
    struct store *s = fresh();
    char err[STORE_ERR_LEN] = "", user[64], other[80];
    /* Runs share the PostgreSQL database: every query is about this run's users. */
    snprintf(user, sizeof user, "calls-%ld-%ld", (long)getpid(), (long)time(NULL));
    snprintf(other, sizeof other, "%s-other", user);
    const char *recs[4] = {
        record(user, 5, 0.01, 0.20, 0.004, 0.002, 0.030, 0.050), /* peer lossy */
        record(user, 10, 0.05, 0.0, 0.040, 0.001, 0.100, 0.010), /* client jittery */
        record(user, 2 * 3600, 0.90, 0.9, 0.5, 0.5, 1, 1),       /* too old for since */
        record(other, 3, -1, -1, -1, -1, -1, -1),                /* nothing measured */
    };
    int64_t since = (int64_t)time(NULL) - 3600;
    struct calls f = {.n = 0};
    if (!pg) {
        assert_int_equal(store_calls_insert(s, recs, 4, "node-a", err), STORE_UNSUPPORTED);
        assert_non_null(strstr(err, "call records need a PostgreSQL auth.database"));
        assert_int_equal(
            store_calls_each(s, since, NULL, STORE_CALLS_BY_LOSS, 10, collect_call, &f, err),
            STORE_UNSUPPORTED);
        store_close(s);
        return;
    }
    assert_int_equal(store_calls_insert(s, recs, 2, "node-a", err), STORE_OK);
    assert_int_equal(store_calls_insert(s, recs + 2, 2, "node-b", err), STORE_OK);
    /* A bad record fails its whole batch: nothing of it is written. */
    const char *bad[2] = {record(user, 1, 0.99, 0, 0, 0, 0, 0), "{\"not\": a record"};
    assert_int_equal(store_calls_insert(s, bad, 2, "node-a", err), STORE_INVALID);
    assert_non_null(strstr(err, "cannot insert 2 call records"));
    const char *noend[1] = {"{\"user\":\"x\"}"};
    assert_int_equal(store_calls_insert(s, noend, 1, "node-a", err), STORE_INVALID);

    assert_int_equal(
        store_calls_each(s, since, user, STORE_CALLS_BY_LOSS, 10, collect_call, &f, err), STORE_OK);
    assert_int_equal(f.n, 2); /* the two-hour-old one is before since; 0.99 never got in */
    assert_string_equal(f.c[0].node, "node-a");
    assert_string_equal(f.c[0].user, user);
    assert_string_equal(f.c[0].realm, "r1");
    assert_string_equal(f.c[0].reason, "deleted");
    assert_true(fabs(f.c[0].worst_loss - 0.20) < 1e-9);
    assert_string_equal(f.c[0].worst_loss_leg, "peer");
    assert_true(fabs(f.c[0].worst_jitter - 0.004) < 1e-9);
    assert_string_equal(f.c[0].worst_jitter_leg, "client");
    assert_true(fabs(f.c[0].worst_rtt - 0.050) < 1e-9); /* the peer's last, without a p95 */
    assert_string_equal(f.c[0].worst_rtt_leg, "peer");
    assert_true(fabs(f.c[0].duration - 30.25) < 1e-9);
    assert_true(fabs(f.c[0].ended_at - f.c[0].started_at - 30.25) < 1e-6);
    assert_true(f.c[0].ended_at > (double)since);
    assert_non_null(strstr(f.rec[0], "call_quality"));
    assert_true(fabs(f.c[1].worst_loss - 0.05) < 1e-9);
    assert_string_equal(f.c[1].worst_loss_leg, "client");
    assert_true(f.c[0].id != f.c[1].id);

    f.n = 0;
    assert_int_equal(
        store_calls_each(s, since, user, STORE_CALLS_BY_JITTER, 10, collect_call, &f, err),
        STORE_OK);
    assert_int_equal(f.n, 2);
    assert_true(fabs(f.c[0].worst_jitter - 0.040) < 1e-9); /* the jittery one first */
    f.n = 0;
    assert_int_equal(store_calls_each(s, since, user, STORE_CALLS_BY_RTT, 1, collect_call, &f, err),
                     STORE_OK);
    assert_int_equal(f.n, 1); /* the limit */
    assert_true(fabs(f.c[0].worst_rtt - 0.100) < 1e-9);
    assert_string_equal(f.c[0].worst_rtt_leg, "client");
    f.n = 0;
    assert_int_equal(
        store_calls_each(s, since - 7200, user, STORE_CALLS_BY_TIME, 0, collect_call, &f, err),
        STORE_OK);
    assert_int_equal(f.n, 3); /* most recent first, the old one last */
    assert_true(f.c[0].ended_at > f.c[1].ended_at && f.c[1].ended_at > f.c[2].ended_at);
    assert_string_equal(f.c[2].node, "node-b");
    f.n = 0;
    assert_int_equal(
        store_calls_each(s, since, other, STORE_CALLS_BY_LOSS, 10, collect_call, &f, err),
        STORE_OK);
    assert_int_equal(f.n, 1);
    assert_true(isnan(f.c[0].worst_loss) && isnan(f.c[0].worst_rtt));
    assert_string_equal(f.c[0].worst_loss_leg, "");
    /* no interval jitter: the client's RTP jitter stands in */
    assert_true(fabs(f.c[0].worst_jitter - 0.001) < 1e-9);
    assert_string_equal(f.c[0].worst_jitter_leg, "client");
    store_close(s);
}

/* How fast batches go in (a figure, not a limit): 20 transactions of 100 records each, about
 * the size of a real one (the record file's lines are 2-4 KB with their series). */
static void calls_batch_rate(void **state)
{
    (void)state;
    if (!pg) skip();
    struct store *s = fresh();
    char err[STORE_ERR_LEN] = "", user[64], pad[2049];
    snprintf(user, sizeof user, "rate-%ld-%ld", (long)getpid(), (long)time(NULL));
    memset(pad, 'x', sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    static char big[100][4096];
    const char *recs[100];
    for (int i = 0; i < 100; i++) {
        const char *base = record(user, 1, 0.01 * i, 0, 0, 0, 0, 0);
        snprintf(big[i], sizeof big[i], "%.*s,\"series\":\"%s\"}", (int)strlen(base) - 1, base,
                 pad);
        recs[i] = big[i];
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int b = 0; b < 20; b++)
        assert_int_equal(store_calls_insert(s, recs, 100, "node-rate", err), STORE_OK);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("# figure: 2000 records of %zu bytes in batches of 100: %.3f s, %.0f records/s\n",
           strlen(recs[0]), secs, 2000 / secs);
    struct calls f = {.n = 0};
    assert_int_equal(store_calls_each(s, (int64_t)time(NULL) - 60, user, STORE_CALLS_BY_LOSS, 3,
                                      collect_call, &f, err),
                     STORE_OK);
    assert_int_equal(f.n, 3);
    assert_true(fabs(f.c[0].worst_loss - 0.99) < 1e-9);
    store_close(s);
}

static void display_names_hide_passwords(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        {"/var/lib/tern/tern.db", "/var/lib/tern/tern.db"},
        {"postgresql://tern:s3cret@db.example:5432/tern",
         "postgresql://tern:***@db.example:5432/tern"},
        {"postgres://tern@db/tern?sslmode=require", "postgres://tern@db/tern?sslmode=require"},
        {"postgresql://tern@/tern?host=/run/pg&password=s3cret&x=1",
         "postgresql://tern@/tern?host=/run/pg&password=***&x=1"},
        {"postgresql:///tern", "postgresql:///tern"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[256];
        store_display_name(cases[i][0], out, sizeof out);
        assert_string_equal(out, cases[i][1]);
    }
    assert_true(store_is_uri("postgresql://x"));
    assert_true(store_is_uri("postgres://x"));
    assert_false(store_is_uri("./postgresql:/x"));
}

static void errors_never_show_the_password(void **state)
{
    (void)state;
    char err[STORE_ERR_LEN] = "";
    /* Nothing listens there: the message names the database, not its password. */
    struct store *s =
        store_open("postgresql://tern:hunter2@/tern?host=/nonexistent-dir&connect_timeout=1",
                   STORE_EXISTING, err);
    assert_null(s);
    assert_null(strstr(err, "hunter2"));
    assert_non_null(strstr(err, "postgresql://tern:***@/tern"));
    assert_non_null(strstr(err, "cannot connect"));
}

struct rows {
    struct store_node v[8];
    char eps[8][256];
    size_t n;
};
static int collect_node(void *ctx, const struct store_node *n)
{
    struct rows *r = ctx;
    if (r->n < 8) {
        r->v[r->n] = *n;
        snprintf(r->eps[r->n], sizeof r->eps[0], "%s", n->endpoints_json ? n->endpoints_json : "");
        r->n++;
    }
    return 0;
}
static const struct store_node *row_of(const struct rows *r, const char *id)
{
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->v[i].node_id, id) == 0) return &r->v[i];
    return NULL;
}
static uint64_t user_count;
static int count_user(void *ctx, const char *user, uint64_t count)
{
    if (strcmp(user, ctx) == 0) user_count += count;
    return 0;
}

/* The node registry and the fleet's nonce keys (docs/fleet.md): PostgreSQL only. */
static void registry_roundtrip(void **state)
{
    (void)state;
    struct store *s = fresh();
    char err[STORE_ERR_LEN] = "", a[64], b[64], user[64];
    snprintf(a, sizeof a, "reg-a-%ld", (long)getpid());
    snprintf(b, sizeof b, "reg-b-%ld", (long)getpid());
    snprintf(user, sizeof user, "reg-user-%ld", (long)getpid());
    struct store_node n = {.started_at = (int64_t)time(NULL),
                           .allocations = 3,
                           .max_allocations = 10,
                           .relayed_pps = 1234.5,
                           .cpu = 0.25,
                           .max_cpu = 0.8,
                           .poor = 1};
    snprintf(n.node_id, sizeof n.node_id, "%s", a);
    snprintf(n.version, sizeof n.version, "9.9.9");
    char users[128];
    snprintf(users, sizeof users, "{\"%s\": 2}", user);
    n.endpoints_json = "[{\"transport\":\"udp\",\"family\":4,\"uri\":\"turn:192.0.2.1:3478\"}]";
    n.users_json = users;
    struct rows r = {.n = 0};
    uint8_t keys[2][STORE_NONCE_KEY_LEN];
    size_t nk = 9;
    if (!pg) {
        assert_int_equal(store_node_beat(s, &n, err), STORE_UNSUPPORTED);
        assert_non_null(strstr(err, "needs a PostgreSQL database"));
        assert_int_equal(store_nodes_each(s, collect_node, &r, err), STORE_UNSUPPORTED);
        assert_int_equal(store_node_forget(s, a, err), STORE_UNSUPPORTED);
        uint64_t removed = 9;
        assert_int_equal(store_nodes_prune(s, 60, &removed, err), STORE_UNSUPPORTED);
        assert_int_equal(removed, 0);
        assert_int_equal(store_fleet_users(s, a, 10, count_user, user, err), STORE_UNSUPPORTED);
        assert_int_equal(store_nonce_keys(s, 3600, keys, 2, &nk, err), STORE_UNSUPPORTED);
        assert_int_equal(nk, 0);
        store_close(s);
        return;
    }
    assert_int_equal(store_node_beat(s, &n, err), STORE_OK);
    snprintf(n.node_id, sizeof n.node_id, "%s", b);
    n.draining = true;
    n.allocations = 7;
    snprintf(users, sizeof users, "{\"%s\": 5}", user);
    assert_int_equal(store_node_beat(s, &n, err), STORE_OK);
    assert_int_equal(store_node_beat(s, &n, err), STORE_OK); /* an upsert: still one row */
    assert_int_equal(store_nodes_each(s, collect_node, &r, err), STORE_OK);
    const struct store_node *ra = row_of(&r, a), *rb = row_of(&r, b);
    assert_non_null(ra);
    assert_non_null(rb);
    assert_int_equal(ra->allocations, 3);
    assert_int_equal(ra->max_allocations, 10);
    assert_false(ra->draining);
    assert_true(rb->draining);
    assert_int_equal(rb->allocations, 7);
    assert_true(fabs(ra->relayed_pps - 1234.5) < 1e-6 && fabs(ra->cpu - 0.25) < 1e-9);
    assert_true(ra->age_s >= 0 && ra->age_s < 5);
    assert_string_equal(ra->version, "9.9.9");
    assert_non_null(strstr(r.eps[0], "turn:192.0.2.1:3478"));
    /* b sees a's count of the user, a sees b's; a dead_after of 0 s sees nobody alive. */
    user_count = 0;
    assert_int_equal(store_fleet_users(s, b, 10, count_user, user, err), STORE_OK);
    assert_int_equal(user_count, 2);
    user_count = 0;
    assert_int_equal(store_fleet_users(s, a, 10, count_user, user, err), STORE_OK);
    assert_int_equal(user_count, 5);
    user_count = 0;
    assert_int_equal(store_fleet_users(s, a, 0, count_user, user, err), STORE_OK);
    assert_int_equal(user_count, 0);
    /* A row the database refuses: endpoints not an array. */
    n.endpoints_json = "{\"not\": \"an array\"}";
    assert_int_equal(store_node_beat(s, &n, err), STORE_INVALID);
    assert_non_null(strstr(err, "cannot write this node's registry row"));
    assert_int_equal(store_node_forget(s, a, err), STORE_OK);
    uint64_t removed = 9;
    assert_int_equal(store_nodes_prune(s, 3600, &removed, err), STORE_OK); /* b is 0 s old */
    r.n = 0;
    assert_int_equal(store_nodes_each(s, collect_node, &r, err), STORE_OK);
    assert_null(row_of(&r, a));
    assert_non_null(row_of(&r, b));
    /* Nonce keys: made once, the same on the next call, a new newest after a rotation, and
     * never more than two. */
    uint8_t k1[2][STORE_NONCE_KEY_LEN], k2[2][STORE_NONCE_KEY_LEN];
    size_t n1, n2;
    assert_int_equal(store_nonce_keys(s, 3600, k1, 2, &n1, err), STORE_OK);
    assert_true(n1 >= 1);
    assert_int_equal(store_nonce_keys(s, 3600, k2, 2, &n2, err), STORE_OK);
    assert_int_equal(n2, n1);
    assert_memory_equal(k1[0], k2[0], STORE_NONCE_KEY_LEN);
    sleep(2);
    assert_int_equal(store_nonce_keys(s, 1, k2, 2, &n2, err), STORE_OK);
    assert_int_equal(n2, 2);
    assert_memory_not_equal(k1[0], k2[0], STORE_NONCE_KEY_LEN);
    assert_memory_equal(k1[0], k2[1], STORE_NONCE_KEY_LEN); /* the previous one stays */
    /* b's heartbeat is now over a second old: a prune of rows older than 1 s removes it. */
    assert_int_equal(store_nodes_prune(s, 1, &removed, err), STORE_OK);
    assert_true(removed >= 1);
    r.n = 0;
    assert_int_equal(store_nodes_each(s, collect_node, &r, err), STORE_OK);
    assert_null(row_of(&r, b));
    store_close(s);
}

int main(int argc, char **argv)
{
    const char *env = getenv("TERN_STORE_DB");
    char tmpl[] = "/tmp/tern-store-api-XXXXXX";
    if (env && *env) {
        snprintf(db, sizeof db, "%s", env);
    } else {
        if (!mkdtemp(tmpl)) return 1;
        snprintf(db, sizeof db, "%s/tern.db", tmpl);
    }
    pg = store_is_uri(db);
    char shown[512];
    store_display_name(db, shown, sizeof shown);
    printf("# backend: %s (%s)\n", pg ? "PostgreSQL" : "SQLite", shown);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(users_roundtrip),
        cmocka_unit_test(secrets_roundtrip),
        cmocka_unit_test(changes_seen_across_connections),
        cmocka_unit_test(calls_roundtrip),
        cmocka_unit_test(registry_roundtrip),
        cmocka_unit_test(calls_batch_rate),
        cmocka_unit_test(display_names_hide_passwords),
        cmocka_unit_test(errors_never_show_the_password),
    };
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    int rc =
        cmocka_run_group_tests_name(pg ? "store_api_pg" : "store_api_sqlite", tests, NULL, NULL);
    if (!env || !*env) {
        unlink(db);
        char side[600];
        snprintf(side, sizeof side, "%s-wal", db);
        unlink(side);
        snprintf(side, sizeof side, "%s-shm", db);
        unlink(side);
        rmdir(tmpl);
    }
    return rc;
}
