/* records.c: the qos.record_database writer thread (records.h). */
#include "records.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

struct records {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    char **q; /* ring of cap records; only the writer takes from the head */
    uint32_t cap, head, n;
    bool stop;
    struct records_stats st; /* under lock */
    uint64_t logged_drops;   /* dropped as of the last records_dropped event */
    struct records_io io;
    char *db, *password_file;
    char node[STORE_MAX_NODE + 1];
    char shown[STORE_ERR_LEN / 2]; /* db without its password */
    struct store *store;           /* the writer's connection; NULL: not connected */
    int64_t down_since_ms;         /* when the database went away (logging) */
};

static int64_t mono_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* ---- the real store ---- */

static struct store *real_open(void *ctx, char err[STORE_ERR_LEN])
{
    struct records *r = ctx;
    return store_open_with(r->db, r->password_file, STORE_EXISTING, err);
}

static int real_insert(void *ctx, struct store *s, const char *const *recs, size_t n,
                       const char *node, char err[STORE_ERR_LEN])
{
    (void)ctx;
    return store_calls_insert(s, recs, n, node, err);
}

static void real_close(void *ctx, struct store *s)
{
    (void)ctx;
    store_close(s);
}

/* ---- the writer ---- */

/* Wait until the monotonic time until_ms, a signal, or stop. Called with the lock held. */
static void wait_until(struct records *r, int64_t until_ms)
{
    int64_t now = mono_ms();
    if (until_ms <= now) return;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    int64_t ms = until_ms - now;
    until.tv_sec += ms / 1000;
    until.tv_nsec += (ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&r->cond, &r->lock, &until);
}

/* Write k records (the head of the queue; the lock is not held): the number of them consumed
 * (written or refused), counted in *written and *failed; fewer than k when the database could
 * not be reached or failed (err says why: the rest stay queued). */
static size_t attempt(struct records *r, const char *const *batch, size_t k, uint64_t *written,
                      uint64_t *failed, char err[STORE_ERR_LEN], char bad[STORE_ERR_LEN])
{
    *written = *failed = 0;
    err[0] = bad[0] = '\0';
    if (!r->store && !(r->store = r->io.open(r->io.ctx, err))) return 0;
    int rc = r->io.insert(r->io.ctx, r->store, batch, k, r->node, err);
    if (rc == STORE_OK) {
        *written = k;
        return k;
    }
    size_t done = 0;
    if (rc == STORE_INVALID) {
        /* A record in the batch is bad: one at a time, so the others still get in. */
        for (; done < k; done++) {
            char e1[STORE_ERR_LEN] = "";
            rc = r->io.insert(r->io.ctx, r->store, batch + done, 1, r->node, e1);
            if (rc == STORE_OK)
                (*written)++;
            else if (rc == STORE_INVALID) {
                if (!*failed) memcpy(bad, e1, STORE_ERR_LEN);
                (*failed)++;
            } else {
                memcpy(err, e1, STORE_ERR_LEN);
                break;
            }
        }
        if (done == k) return k;
    }
    r->io.close(r->io.ctx, r->store); /* lost or failing: a fresh connection next time */
    r->store = NULL;
    return done;
}

/* Take the outcome of an attempt into the queue and the counters, and log what changed
 * (outside the lock: a worker queueing never waits for stderr). Called with the lock held;
 * returns with it held. */
static void settle(struct records *r, size_t k, size_t done, uint64_t written, uint64_t failed,
                   const char *err, const char *first_bad)
{
    for (size_t i = 0; i < done; i++) {
        free(r->q[r->head]);
        r->q[r->head] = NULL;
        r->head = (r->head + 1) % r->cap;
        r->n--;
    }
    r->st.written += written;
    r->st.failed += failed;
    bool was_up = r->st.up, up = done == k;
    r->st.up = up;
    uint64_t depth = r->n, dropped = r->st.dropped - r->logged_drops;
    r->logged_drops = r->st.dropped;
    int64_t now = mono_ms();
    if (was_up && !up) r->down_since_ms = now;
    int64_t down_ms = now - r->down_since_ms;
    pthread_mutex_unlock(&r->lock);
    if (was_up && !up)
        tlog(CFG_LOG_WARN, "records_database_unavailable", LF_S("database", r->shown),
             LF_S("error", err), LF_U("queued", depth));
    if (!was_up && up)
        tlog(CFG_LOG_INFO, "records_database_restored", LF_S("database", r->shown),
             LF_I("down_ms", down_ms), LF_U("queued", depth));
    if (failed)
        tlog(CFG_LOG_WARN, "records_refused", LF_S("database", r->shown), LF_U("failed", failed),
             LF_S("error", first_bad));
    if (dropped)
        tlog(CFG_LOG_WARN, "records_dropped", LF_U("dropped", dropped), LF_U("queue", r->cap));
    pthread_mutex_lock(&r->lock);
}

/* Copy the head's first k pointers (at most RECORDS_BATCH). Called with the lock held. */
static size_t take(struct records *r, const char **batch)
{
    size_t k = r->n < RECORDS_BATCH ? r->n : RECORDS_BATCH;
    for (size_t i = 0; i < k; i++)
        batch[i] = r->q[(r->head + i) % r->cap];
    return k;
}

static void *run(void *arg)
{
    struct records *r = arg;
    const char *batch[RECORDS_BATCH];
    char err[STORE_ERR_LEN], bad[STORE_ERR_LEN];
    long backoff = RECORDS_BACKOFF_MS;
    int64_t deadline = 0; /* when the oldest waiting record is to be written (0: none) */
    pthread_mutex_lock(&r->lock);
    while (!r->stop) {
        if (r->n == 0) {
            deadline = 0;
            pthread_cond_wait(&r->cond, &r->lock);
            continue;
        }
        if (!deadline) deadline = mono_ms() + RECORDS_LINGER_MS;
        if (r->n < RECORDS_BATCH && mono_ms() < deadline) {
            wait_until(r, deadline);
            continue;
        }
        size_t k = take(r, batch);
        pthread_mutex_unlock(&r->lock);
        uint64_t written, failed;
        size_t done = attempt(r, batch, k, &written, &failed, err, bad);
        pthread_mutex_lock(&r->lock);
        settle(r, k, done, written, failed, err, bad);
        if (done == k) {
            backoff = RECORDS_BACKOFF_MS;
            deadline = 0;
            continue;
        }
        /* The database is away: the records wait in the queue; try again after a while. */
        int64_t retry_at = mono_ms() + backoff;
        while (!r->stop && mono_ms() < retry_at) /* (a queued record's signal cuts it short) */
            wait_until(r, retry_at);
        deadline = mono_ms(); /* then at once */
        backoff = backoff * 2 > RECORDS_BACKOFF_MAX ? RECORDS_BACKOFF_MAX : backoff * 2;
    }
    /* Stopping: flush what is queued within RECORDS_STOP_MS. */
    int64_t until = mono_ms() + RECORDS_STOP_MS;
    while (r->n && mono_ms() < until) {
        size_t k = take(r, batch);
        pthread_mutex_unlock(&r->lock);
        uint64_t written, failed;
        size_t done = attempt(r, batch, k, &written, &failed, err, bad);
        pthread_mutex_lock(&r->lock);
        settle(r, k, done, written, failed, err, bad);
        if (done < k) {
            pthread_mutex_unlock(&r->lock);
            int64_t left = until - mono_ms();
            long ms = left < RECORDS_BACKOFF_MS ? (long)(left > 0 ? left : 0) : RECORDS_BACKOFF_MS;
            struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
            nanosleep(&ts, NULL);
            pthread_mutex_lock(&r->lock);
        }
    }
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

static void destroy(struct records *r)
{
    if (r->store) r->io.close(r->io.ctx, r->store);
    for (; r->q && r->n; r->n--, r->head = (r->head + 1) % r->cap)
        free(r->q[r->head]);
    free(r->q);
    free(r->db);
    free(r->password_file);
    free(r);
}

struct records *records_start(const char *db, const char *password_file, const char *node,
                              uint32_t queue_len, const struct records_io *io)
{
    if (!queue_len) return NULL;
    struct records *r = calloc(1, sizeof(*r));
    if (!r) return NULL;
    const char *step = "memory";
    r->cap = queue_len;
    r->st.up = true;
    r->q = calloc(queue_len, sizeof(char *));
    if (!r->q || (db && !(r->db = strdup(db))) ||
        (password_file && !(r->password_file = strdup(password_file))))
        goto fail;
    if (io)
        r->io = *io;
    else
        r->io = (struct records_io){real_open, real_insert, real_close, r};
    store_display_name(db, r->shown, sizeof r->shown);
    step = "cluster.node_id";
    if (node) {
        if (strlen(node) > STORE_MAX_NODE) goto fail;
        memcpy(r->node, node, strlen(node) + 1);
    } else if (gethostname(r->node, sizeof r->node - 1) || !r->node[0]) {
        goto fail;
    }
    step = "thread";
    if (pthread_mutex_init(&r->lock, NULL)) goto fail;
    if (pthread_cond_init(&r->cond, NULL)) {
        pthread_mutex_destroy(&r->lock);
        goto fail;
    }
    if (pthread_create(&r->thread, NULL, run, r)) {
        pthread_cond_destroy(&r->cond);
        pthread_mutex_destroy(&r->lock);
        goto fail;
    }
    tlog(CFG_LOG_INFO, "records_started", LF_S("database", r->shown), LF_S("node", r->node),
         LF_U("queue", queue_len), LF_U("batch", RECORDS_BATCH));
    return r;
fail:
    tlog(CFG_LOG_ERROR, "startup_failed", LF_S("step", "qos.record_database"), LF_S("error", step));
    destroy(r);
    return NULL;
}

void records_post(struct records *r, char *line)
{
    if (!r) {
        free(line);
        return;
    }
    pthread_mutex_lock(&r->lock);
    if (!line || r->n == r->cap) {
        r->st.dropped++;
        free(line);
    } else {
        r->q[(r->head + r->n) % r->cap] = line;
        r->n++;
        r->st.queued++;
        /* Wake the writer when a batch is full, or for the first record (it starts the linger). */
        if (r->n == 1 || r->n == RECORDS_BATCH) pthread_cond_signal(&r->cond);
    }
    pthread_mutex_unlock(&r->lock);
}

void records_stats(struct records *r, struct records_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (!r) return;
    pthread_mutex_lock(&r->lock);
    *out = r->st;
    out->depth = r->n;
    pthread_mutex_unlock(&r->lock);
}

void records_stop(struct records *r, struct records_stats *final)
{
    if (final) memset(final, 0, sizeof(*final));
    if (!r) return;
    pthread_mutex_lock(&r->lock);
    r->stop = true;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
    pthread_join(r->thread, NULL);
    r->st.dropped += r->n; /* what the flush could not write */
    tlog(CFG_LOG_INFO, "records_stopped", LF_S("database", r->shown), LF_U("queued", r->st.queued),
         LF_U("written", r->st.written), LF_U("failed", r->st.failed),
         LF_U("dropped", r->st.dropped));
    if (final) *final = r->st;
    pthread_cond_destroy(&r->cond);
    pthread_mutex_destroy(&r->lock);
    destroy(r);
}
