/* users.c: the static user table: long-term keys and USERHASH derived once, looked up per request.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "auth.h"
#include "users.h"

int auth_users_init(struct auth_users *u, const char *realm, const char *const *names,
                    const char *const *passwords, size_t n)
{
    u->v = n ? calloc(n, sizeof(*u->v)) : NULL;
    u->n = 0;
    if (n && !u->v) return -1;
    size_t rlen = strlen(realm);
    for (size_t i = 0; i < n; i++) {
        struct auth_user *e = &u->v[i];
        size_t nlen = strlen(names[i]), plen = strlen(passwords[i]);
        if (nlen > STUN_MAX_USERNAME ||
            auth_longterm_key(STUN_PASSWORD_ALG_MD5, names[i], nlen, realm, rlen, passwords[i],
                              plen, e->key_md5) != 16 ||
            auth_longterm_key(STUN_PASSWORD_ALG_SHA256, names[i], nlen, realm, rlen, passwords[i],
                              plen, e->key_sha256) != 32 ||
            auth_userhash(names[i], nlen, realm, rlen, e->userhash)) {
            u->n = n;
            auth_users_free(u);
            return (int)i + 1;
        }
        memcpy(e->name, names[i], nlen + 1);
        e->namelen = nlen;
    }
    u->n = n;
    return 0;
}

void auth_users_free(struct auth_users *u)
{
    if (u->v) OPENSSL_cleanse(u->v, u->n * sizeof(*u->v));
    free(u->v);
    u->v = NULL;
    u->n = 0;
}

static int lookup(void *ctx, const uint8_t *name, size_t len, bool userhash, struct auth_user *out)
{
    const struct auth_users *u = ctx;
    for (size_t i = 0; i < u->n; i++) {
        const struct auth_user *e = &u->v[i];
        bool hit = userhash ? len == STUN_USERHASH_LEN && CRYPTO_memcmp(e->userhash, name, len) == 0
                            : len == e->namelen && memcmp(e->name, name, len) == 0;
        if (hit) {
            *out = *e;
            return 0;
        }
    }
    return -1;
}

struct auth_creds auth_users_creds(const struct auth_users *u)
{
    return (struct auth_creds){
        .lookup = lookup, .each_secret = NULL, .generation = NULL, .ctx = (void *)u};
}
