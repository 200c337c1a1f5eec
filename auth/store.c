/* store.c: the credential database interface (store.h) over its backends: a postgresql:// (or
 * postgres://) URI opens PostgreSQL (libpq, store_pg.c), anything else is a SQLite file
 * (store_sqlite.c). Callers never know which one they hold. */
#include <stdio.h>
#include <string.h>

#include "store_impl.h"

bool store_is_uri(const char *db)
{
    return db && (strncmp(db, "postgresql://", 13) == 0 || strncmp(db, "postgres://", 11) == 0);
}

void store_display_name(const char *db, char *out, size_t size)
{
    if (!size) return;
    if (!db) {
        snprintf(out, size, "(none)");
        return;
    }
    if (!store_is_uri(db)) {
        snprintf(out, size, "%s", db);
        return;
    }
    /* scheme://[user[:password]@]host...: the password goes, and so does any password=
     * parameter; everything else helps an operator see which database is meant. */
    const char *auth = strstr(db, "://") + 3;
    const char *at = strchr(auth, '@'), *slash = strchr(auth, '/');
    size_t o = 0;
    const char *p = db;
    const char *colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
    if (at && slash && slash < at) colon = NULL; /* an '@' in the path, not userinfo */
    while (*p && o + 1 < size) {
        if (colon && p == colon) {
            o += (size_t)snprintf(out + o, size - o, ":***");
            p = at;
            continue;
        }
        if (strncmp(p, "password=", 9) == 0 && p > db && (p[-1] == '?' || p[-1] == '&')) {
            o += (size_t)snprintf(out + o, size - o, "password=***");
            p += 9;
            while (*p && *p != '&')
                p++;
            continue;
        }
        out[o++] = *p++;
    }
    if (o >= size) o = size - 1;
    out[o] = '\0';
}

struct store *store_open_with(const char *db, const char *password_file, enum store_mode mode,
                              char err[STORE_ERR_LEN])
{
    if (store_is_uri(db)) return store_pg_open(db, password_file, err);
    return store_sqlite_open(db, mode, err);
}

struct store *store_open(const char *db, enum store_mode mode, char err[STORE_ERR_LEN])
{
    return store_open_with(db, NULL, mode, err);
}

void store_close(struct store *s)
{
    if (s) s->ops->close(s);
}

int store_user_add(struct store *s, const char *realm, const char *name, const char *password,
                   uint32_t max_allocations, uint64_t bandwidth_bps, char err[STORE_ERR_LEN])
{
    return s->ops->user_add(s, realm, name, password, max_allocations, bandwidth_bps, err);
}

int store_user_passwd(struct store *s, const char *realm, const char *name, const char *password,
                      char err[STORE_ERR_LEN])
{
    return s->ops->user_passwd(s, realm, name, password, err);
}

int store_user_del(struct store *s, const char *realm, const char *name, char err[STORE_ERR_LEN])
{
    return s->ops->user_del(s, realm, name, err);
}

int store_user_set_disabled(struct store *s, const char *realm, const char *name, bool disabled,
                            char err[STORE_ERR_LEN])
{
    return s->ops->user_set_disabled(s, realm, name, disabled, err);
}

int store_user_set_limits(struct store *s, const char *realm, const char *name,
                          uint32_t max_allocations, uint64_t bandwidth_bps, char err[STORE_ERR_LEN])
{
    return s->ops->user_set_limits(s, realm, name, max_allocations, bandwidth_bps, err);
}

int store_user_each(struct store *s, const char *realm,
                    int (*fn)(void *ctx, const struct store_user *u), void *ctx,
                    char err[STORE_ERR_LEN])
{
    return s->ops->user_each(s, realm, fn, ctx, err);
}

int store_secret_add(struct store *s, const char *secret, int64_t *id, char err[STORE_ERR_LEN])
{
    return s->ops->secret_add(s, secret, id, err);
}

int store_secret_del(struct store *s, int64_t id, char err[STORE_ERR_LEN])
{
    return s->ops->secret_del(s, id, err);
}

int store_secret_each(struct store *s, int (*fn)(void *ctx, const struct store_secret *sec),
                      void *ctx, char err[STORE_ERR_LEN])
{
    return s->ops->secret_each(s, fn, ctx, err);
}

int store_calls_insert(struct store *s, const char *const *records_json, size_t n,
                       const char *node_id, char err[STORE_ERR_LEN])
{
    return s->ops->calls_insert(s, records_json, n, node_id, err);
}

int store_calls_each(struct store *s, int64_t since_unix, const char *user,
                     enum store_calls_order order, size_t limit,
                     int (*fn)(void *ctx, const struct store_call *c), void *ctx,
                     char err[STORE_ERR_LEN])
{
    return s->ops->calls_each(s, since_unix, user, order, limit, fn, ctx, err);
}

int64_t store_data_version(struct store *s)
{
    return s->ops->data_version(s);
}

int store_wait_change(struct store *s, int timeout_ms)
{
    return s->ops->wait_change ? s->ops->wait_change(s, timeout_ms) : -2;
}
