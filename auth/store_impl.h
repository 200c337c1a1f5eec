/* store_impl.h: what a credential database backend provides (store.c dispatches to it): SQLite
 * for a file (store_sqlite.c), PostgreSQL for a postgresql:// URI (store_pg.c). Private to
 * tern_store. */
#ifndef TERN_STORE_IMPL_H
#define TERN_STORE_IMPL_H

#include "store.h"

struct store_ops {
    void (*close)(struct store *s);
    int (*user_add)(struct store *s, const char *realm, const char *name, const char *password,
                    uint32_t max_allocations, uint64_t bandwidth_bps, char err[STORE_ERR_LEN]);
    int (*user_passwd)(struct store *s, const char *realm, const char *name, const char *password,
                       char err[STORE_ERR_LEN]);
    int (*user_del)(struct store *s, const char *realm, const char *name, char err[STORE_ERR_LEN]);
    int (*user_set_disabled)(struct store *s, const char *realm, const char *name, bool disabled,
                             char err[STORE_ERR_LEN]);
    int (*user_set_limits)(struct store *s, const char *realm, const char *name,
                           uint32_t max_allocations, uint64_t bandwidth_bps,
                           char err[STORE_ERR_LEN]);
    int (*user_each)(struct store *s, const char *realm,
                     int (*fn)(void *ctx, const struct store_user *u), void *ctx,
                     char err[STORE_ERR_LEN]);
    int (*secret_add)(struct store *s, const char *secret, int64_t *id, char err[STORE_ERR_LEN]);
    int (*secret_del)(struct store *s, int64_t id, char err[STORE_ERR_LEN]);
    int (*secret_each)(struct store *s, int (*fn)(void *ctx, const struct store_secret *sec),
                       void *ctx, char err[STORE_ERR_LEN]);
    int64_t (*data_version)(struct store *s);
    int (*calls_insert)(struct store *s, const char *const *records_json, size_t n,
                        const char *node_id, char err[STORE_ERR_LEN]);
    int (*calls_each)(struct store *s, int64_t since_unix, const char *user,
                      enum store_calls_order order, size_t limit,
                      int (*fn)(void *ctx, const struct store_call *c), void *ctx,
                      char err[STORE_ERR_LEN]);
    /* Optional (NULL: STORE_UNSUPPORTED): the node registry. */
    int (*node_beat)(struct store *s, const struct store_node *n, char err[STORE_ERR_LEN]);
    int (*node_forget)(struct store *s, const char *node_id, char err[STORE_ERR_LEN]);
    int (*nodes_prune)(struct store *s, uint32_t older_than_s, uint64_t *removed,
                       char err[STORE_ERR_LEN]);
    int (*nodes_each)(struct store *s, int (*fn)(void *ctx, const struct store_node *n), void *ctx,
                      char err[STORE_ERR_LEN]);
    int (*fleet_users)(struct store *s, const char *node_id, uint32_t dead_after_s,
                       int (*fn)(void *ctx, const char *user, uint64_t count), void *ctx,
                       char err[STORE_ERR_LEN]);
    int (*nonce_keys)(struct store *s, uint32_t rotation_s, uint8_t (*keys)[STORE_NONCE_KEY_LEN],
                      size_t max, size_t *n, char err[STORE_ERR_LEN]);
    /* Optional: block up to timeout_ms for a change notification (1), a timeout (0) or a lost
     * connection (-1). NULL: the caller polls data_version. */
    int (*wait_change)(struct store *s, int timeout_ms);
};

/* Every backend's handle starts with this. */
struct store {
    const struct store_ops *ops;
};

/* Shared by the backends (store.c). Names and realms quoted in messages are cut to
 * STORE_CLIP_BYTES bytes so the reason after them still fits in STORE_ERR_LEN. */
#define STORE_CLIP_BYTES 48
/* s, or its first STORE_CLIP_BYTES bytes (not splitting a UTF-8 sequence) and "...". */
const char *store_clip(const char *s, char out[STORE_CLIP_BYTES + 4]);
/* "cannot VERB user "NAME" in realm "REALM"", the start of every user operation's message. */
void store_user_what(char *buf, size_t size, const char *verb, const char *realm, const char *name);
/* Why realm and name cannot name a user, or NULL when they can. */
const char *store_check_user(const char *realm, const char *name, char why[64]);
/* Both long-term keys for a password, or why not (NULL when derived). */
const char *store_derive_keys(const char *realm, const char *name, const char *password,
                              uint8_t md5[16], uint8_t sha256[32]);

struct store *store_sqlite_open(const char *path, enum store_mode mode, char err[STORE_ERR_LEN]);
struct store *store_pg_open(const char *uri, const char *password_file, char err[STORE_ERR_LEN]);

#endif
