/* test_records.c: the qos.record_database writer (relay/records.c) over a fake store: the
 * queue is bounded and what finds it full is counted as dropped; records wait while the
 * database is away and are written when it returns; batches hold at most RECORDS_BATCH; a
 * record the database refuses is counted as failed and does not hold up the others; the stop
 * flushes what it can and counts the rest. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "records.h"

/* The fake database: up or down; what it committed. */
static struct {
    pthread_mutex_t lock;
    bool up;
    size_t rows, batches, max_batch, opens;
    char node[64];
} db = {.lock = PTHREAD_MUTEX_INITIALIZER};
static int dummy;

static struct store *fake_open(void *ctx, char err[STORE_ERR_LEN])
{
    (void)ctx;
    pthread_mutex_lock(&db.lock);
    bool up = db.up;
    db.opens++;
    pthread_mutex_unlock(&db.lock);
    if (!up) snprintf(err, STORE_ERR_LEN, "fake: cannot connect");
    return up ? (struct store *)(void *)&dummy : NULL;
}

static int fake_insert(void *ctx, struct store *s, const char *const *recs, size_t n,
                       const char *node, char err[STORE_ERR_LEN])
{
    (void)ctx;
    (void)s;
    pthread_mutex_lock(&db.lock);
    int rc = STORE_OK;
    if (!db.up) {
        snprintf(err, STORE_ERR_LEN, "fake: connection lost");
        rc = STORE_ERROR;
    }
    for (size_t i = 0; rc == STORE_OK && i < n; i++)
        if (strstr(recs[i], "bad")) {
            snprintf(err, STORE_ERR_LEN, "fake: not a record");
            rc = STORE_INVALID;
        }
    if (rc == STORE_OK) {
        db.rows += n;
        db.batches++;
        if (n > db.max_batch) db.max_batch = n;
        snprintf(db.node, sizeof db.node, "%s", node);
    }
    pthread_mutex_unlock(&db.lock);
    return rc;
}

static void fake_close(void *ctx, struct store *s)
{
    (void)ctx;
    (void)s;
}

static const struct records_io fake = {fake_open, fake_insert, fake_close, NULL};

static void set_up(bool up)
{
    pthread_mutex_lock(&db.lock);
    db.up = up;
    pthread_mutex_unlock(&db.lock);
}

static void reset(bool up)
{
    pthread_mutex_lock(&db.lock);
    db.up = up;
    db.rows = db.batches = db.max_batch = db.opens = 0;
    db.node[0] = '\0';
    pthread_mutex_unlock(&db.lock);
}

static size_t rows(void)
{
    pthread_mutex_lock(&db.lock);
    size_t n = db.rows;
    pthread_mutex_unlock(&db.lock);
    return n;
}

static void post(struct records *r, const char *text)
{
    records_post(r, strdup(text));
}

/* Wait up to ms for the stats to say written >= n. */
static bool written_within(struct records *r, uint64_t n, int ms, struct records_stats *st)
{
    for (int t = 0; t <= ms; t += 10) {
        records_stats(r, st);
        if (st->written >= n) return true;
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return false;
}

static void bounded_while_down_then_written(void **state)
{
    (void)state;
    reset(false);
    struct records *r = records_start(NULL, NULL, "node-x", 4, &fake);
    assert_non_null(r);
    for (int i = 0; i < 10; i++)
        post(r, "{\"type\":\"call_quality\"}");
    records_post(r, NULL); /* a failed json_dumps upstream: a drop */
    struct records_stats st;
    records_stats(r, &st);
    assert_int_equal(st.queued, 4);
    assert_int_equal(st.dropped, 7);
    assert_int_equal(st.depth, 4);
    assert_false(written_within(r, 1, 1500, &st)); /* the database is down: they wait */
    assert_false(st.up);
    assert_int_equal(st.depth, 4);
    set_up(true);
    assert_true(written_within(r, 4, 8000, &st)); /* the next reconnect (backoff <= 5 s) */
    assert_true(st.up);
    assert_int_equal(st.depth, 0);
    assert_int_equal(st.dropped, 7);
    assert_int_equal(rows(), 4);
    assert_string_equal(db.node, "node-x");
    records_stop(r, &st);
    assert_int_equal(st.written, 4);
}

static void batches_and_linger(void **state)
{
    (void)state;
    reset(true);
    struct records *r = records_start(NULL, NULL, "n", 1000, &fake);
    assert_non_null(r);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    post(r, "{}");
    struct records_stats st;
    assert_true(written_within(r, 1, 3000, &st)); /* alone: written after the linger */
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    assert_true(s >= RECORDS_LINGER_MS / 1000.0 * 0.9 && s < RECORDS_LINGER_MS / 1000.0 + 1.0);
    for (int i = 0; i < 350; i++)
        post(r, "{}");
    assert_true(written_within(r, 351, 5000, &st));
    assert_true(db.max_batch <= RECORDS_BATCH);
    assert_true(db.batches >= 5); /* 1 + at least ceil(350 / 100) */
    records_stop(r, &st);
    assert_int_equal(st.dropped, 0);
    assert_int_equal(st.failed, 0);
}

static void refused_record_does_not_block(void **state)
{
    (void)state;
    reset(true);
    struct records *r = records_start(NULL, NULL, "n", 100, &fake);
    assert_non_null(r);
    post(r, "{\"a\":1}");
    post(r, "{\"bad\":1}");
    post(r, "{\"c\":1}");
    struct records_stats st;
    assert_true(written_within(r, 2, 3000, &st));
    assert_int_equal(st.failed, 1);
    assert_int_equal(st.depth, 0);
    assert_true(st.up);
    records_stop(r, &st);
    assert_int_equal(rows(), 2);
}

static void stop_flushes_then_drops(void **state)
{
    (void)state;
    /* up: the stop writes what is queued at once (no linger) */
    reset(true);
    struct records *r = records_start(NULL, NULL, "n", 100, &fake);
    assert_non_null(r);
    for (int i = 0; i < 5; i++)
        post(r, "{}");
    struct records_stats st;
    records_stop(r, &st);
    assert_int_equal(st.written, 5);
    assert_int_equal(st.dropped, 0);
    /* down: after RECORDS_STOP_MS the rest is counted as dropped */
    reset(false);
    r = records_start(NULL, NULL, "n", 100, &fake);
    assert_non_null(r);
    for (int i = 0; i < 3; i++)
        post(r, "{}");
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    records_stop(r, &st);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    assert_int_equal(st.written, 0);
    assert_int_equal(st.dropped, 3);
    assert_true(s < RECORDS_STOP_MS / 1000.0 + 1.0);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bounded_while_down_then_written),
        cmocka_unit_test(batches_and_linger),
        cmocka_unit_test(refused_record_does_not_block),
        cmocka_unit_test(stop_flushes_then_drops),
    };
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
