/* records.h: qos.record_database: each ended allocation's quality record (the record file's JSON
 * line) into the fleet's call_quality table (store_calls_insert, PostgreSQL), from a writer
 * thread of its own with its own store connection. Workers only queue: a bounded ring under a
 * mutex held for a pointer move, once per ended allocation. The writer takes up to
 * RECORDS_BATCH records per transaction, at least once a second; while the database is away it
 * reconnects with backoff and the records wait (what finds the queue full is dropped and
 * counted); at stop it flushes what it can within RECORDS_STOP_MS. */
#ifndef TERN_RECORDS_H
#define TERN_RECORDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

#define RECORDS_BATCH       100  /* records per transaction at most */
#define RECORDS_LINGER_MS   1000 /* a record waits at most this long for others to join it */
#define RECORDS_BACKOFF_MS  250  /* the first reconnect delay; doubles up to the max */
#define RECORDS_BACKOFF_MAX 5000 /* ms */
#define RECORDS_STOP_MS     3000 /* the flush at stop: what is left after this is dropped */

struct records;

struct records_stats {
    uint64_t queued;  /* accepted into the queue */
    uint64_t written; /* committed to the database */
    uint64_t dropped; /* found the queue full, out of memory, or left at stop */
    uint64_t failed;  /* refused by the database (not a valid record): not retried */
    uint64_t depth;   /* waiting now */
    bool up;          /* the last attempt reached the database */
};

/* How the writer reaches the database; NULL in records_start: the real store (store_open_with
 * on db and password_file). Tests put a fake here. */
struct records_io {
    struct store *(*open)(void *ctx, char err[STORE_ERR_LEN]);
    int (*insert)(void *ctx, struct store *s, const char *const *recs, size_t n, const char *node,
                  char err[STORE_ERR_LEN]);
    void (*close)(void *ctx, struct store *s);
    void *ctx;
};

/* Start the writer for db (a postgresql:// URI; its password from password_file when not
 * NULL), naming node (NULL: the hostname) in every row, with a queue of queue_len records.
 * NULL when it cannot (logged). io NULL: the real store. */
struct records *records_start(const char *db, const char *password_file, const char *node,
                              uint32_t queue_len, const struct records_io *io);
/* Queue line (malloc'd JSON text; the writer frees it); never blocks beyond a short lock.
 * r NULL: line is freed. line NULL (a failed json_dumps or strdup): counted as dropped. */
void records_post(struct records *r, char *line);
void records_stats(struct records *r, struct records_stats *out);
/* Stop: flush what is queued within RECORDS_STOP_MS, count the rest as dropped, log the totals
 * (and leave them in *final when not NULL). NULL ok. */
void records_stop(struct records *r, struct records_stats *final);

#endif
