/* store.c: the credential database interface (store.h) over its backends: a postgresql:// (or
 * postgres://) URI opens PostgreSQL (libpq, store_pg.c), anything else is a SQLite file
 * (store_sqlite.c). Callers never know which one they hold. */
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include "auth.h"

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

static int unsupported(char err[STORE_ERR_LEN])
{
    if (err)
        snprintf(err, STORE_ERR_LEN,
                 "the node registry needs a PostgreSQL database (a postgresql:// URI)");
    return STORE_UNSUPPORTED;
}

int store_node_beat(struct store *s, const struct store_node *n, char err[STORE_ERR_LEN])
{
    return s->ops->node_beat ? s->ops->node_beat(s, n, err) : unsupported(err);
}

int store_node_forget(struct store *s, const char *node_id, char err[STORE_ERR_LEN])
{
    return s->ops->node_forget ? s->ops->node_forget(s, node_id, err) : unsupported(err);
}

int store_nodes_each(struct store *s, int (*fn)(void *ctx, const struct store_node *n), void *ctx,
                     char err[STORE_ERR_LEN])
{
    return s->ops->nodes_each ? s->ops->nodes_each(s, fn, ctx, err) : unsupported(err);
}

int store_nodes_prune(struct store *s, uint32_t older_than_s, uint64_t *removed,
                      char err[STORE_ERR_LEN])
{
    *removed = 0;
    return s->ops->nodes_prune ? s->ops->nodes_prune(s, older_than_s, removed, err)
                               : unsupported(err);
}

int store_fleet_users(struct store *s, const char *node_id, uint32_t dead_after_s,
                      int (*fn)(void *ctx, const char *user, uint64_t count), void *ctx,
                      char err[STORE_ERR_LEN])
{
    return s->ops->fleet_users ? s->ops->fleet_users(s, node_id, dead_after_s, fn, ctx, err)
                               : unsupported(err);
}

int store_nonce_keys(struct store *s, uint32_t rotation_s, uint8_t (*keys)[STORE_NONCE_KEY_LEN],
                     size_t max, size_t *n, char err[STORE_ERR_LEN])
{
    *n = 0;
    return s->ops->nonce_keys ? s->ops->nonce_keys(s, rotation_s, keys, max, n, err)
                              : unsupported(err);
}

int64_t store_data_version(struct store *s)
{
    return s->ops->data_version(s);
}

int store_wait_change(struct store *s, int timeout_ms)
{
    return s->ops->wait_change ? s->ops->wait_change(s, timeout_ms) : -2;
}

/* ---- checks and messages both backends share ---- */

/* s, or its first STORE_CLIP_BYTES bytes (not splitting a UTF-8 sequence) and "...". */
const char *store_clip(const char *s, char out[STORE_CLIP_BYTES + 4])
{
    if (!s) return "";
    size_t n = strlen(s);
    if (n <= STORE_CLIP_BYTES) return s;
    n = STORE_CLIP_BYTES;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    memcpy(out, s, n);
    memcpy(out + n, "...", 4);
    return out;
}

/* "cannot VERB user "NAME" in realm "REALM"", the start of every user operation's message. */
void store_user_what(char *buf, size_t size, const char *verb, const char *realm, const char *name)
{
    char cn[STORE_CLIP_BYTES + 4], cr[STORE_CLIP_BYTES + 4];
    snprintf(buf, size, "cannot %s user \"%s\" in realm \"%s\"", verb, store_clip(name, cn),
             store_clip(realm, cr));
}

/* Why realm and name cannot name a user, or NULL when they can. */
const char *store_check_user(const char *realm, const char *name, char why[64])
{
    size_t rlen = realm ? strlen(realm) : 0, nlen = name ? strlen(name) : 0;
    if (!nlen) return "the name is empty";
    if (nlen > STUN_MAX_USERNAME) {
        snprintf(why, 64, "the name is %zu bytes, more than %d", nlen, STUN_MAX_USERNAME);
        return why;
    }
    if (!rlen) return "the realm is empty";
    if (rlen > STUN_MAX_TEXT_BYTES) {
        snprintf(why, 64, "the realm is %zu bytes, more than %d", rlen, STUN_MAX_TEXT_BYTES);
        return why;
    }
    return NULL;
}

/* Both long-term keys for a password, or why not (NULL when derived). */
const char *store_derive_keys(const char *realm, const char *name, const char *password,
                              uint8_t md5[16], uint8_t sha256[32])
{
    size_t rlen = strlen(realm), nlen = strlen(name), plen = password ? strlen(password) : 0;
    if (!plen) return "the password is empty";
    if (auth_longterm_key(STUN_PASSWORD_ALG_MD5, name, nlen, realm, rlen, password, plen, md5) ==
            16 &&
        auth_longterm_key(STUN_PASSWORD_ALG_SHA256, name, nlen, realm, rlen, password, plen,
                          sha256) == 32)
        return NULL;
    /* Only realm and password go through SASLprep: try the realm with a harmless password to
     * say which one was refused. */
    uint8_t probe[16];
    int realm_ok =
        auth_longterm_key(STUN_PASSWORD_ALG_MD5, name, nlen, realm, rlen, "x", 1, probe) == 16;
    OPENSSL_cleanse(probe, sizeof(probe));
    return realm_ok ? "SASLprep refused the password (invalid UTF-8 or a prohibited character)"
                    : "SASLprep refused the realm (invalid UTF-8 or a prohibited character)";
}
