/* auth_key.c: long-term credential keys and USERHASH, with SASLprep from libidn. */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stringprep.h>

#include "auth.h"

/* SASLprep a pointer+length string into a fresh NUL-terminated one (caller frees). */
static char *prep(const char *s, size_t len)
{
    char *in = malloc(len + 1);
    if (!in) return NULL;
    memcpy(in, s, len);
    in[len] = 0;
    char *out = NULL;
    /* Flags 0: unassigned code points allowed, as for queries (RFC 4013 section 2.5). */
    int rc = stringprep_profile(in, &out, "SASLprep", 0);
    OPENSSL_cleanse(in, len);
    free(in);
    if (rc != STRINGPREP_OK) {
        free(out);
        return NULL;
    }
    return out;
}

static int digest(const char *md, const void *a, size_t alen, const void *b, size_t blen,
                  const void *c, size_t clen, uint8_t *out)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned int n = 0;
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_get_digestbyname(md), NULL) &&
             EVP_DigestUpdate(ctx, a, alen) && EVP_DigestUpdate(ctx, ":", 1) &&
             EVP_DigestUpdate(ctx, b, blen) &&
             (!c || (EVP_DigestUpdate(ctx, ":", 1) && EVP_DigestUpdate(ctx, c, clen))) &&
             EVP_DigestFinal_ex(ctx, out, &n);
    EVP_MD_CTX_free(ctx);
    return ok ? (int)n : -1;
}

int auth_longterm_key(uint16_t alg, const char *user, size_t ulen, const char *realm, size_t rlen,
                      const char *password, size_t plen, uint8_t *key)
{
    const char *md = alg == STUN_PASSWORD_ALG_MD5      ? "MD5"
                     : alg == STUN_PASSWORD_ALG_SHA256 ? "SHA256"
                                                       : NULL;
    if (!md) return -1;
    char *r = prep(realm, rlen);
    char *p = prep(password, plen);
    int n = -1;
    if (r && p) n = digest(md, user, ulen, r, strlen(r), p, strlen(p), key);
    if (p) OPENSSL_cleanse(p, strlen(p));
    free(p);
    free(r);
    return n;
}

int auth_userhash(const char *user, size_t ulen, const char *realm, size_t rlen,
                  uint8_t hash[STUN_USERHASH_LEN])
{
    return digest("SHA256", user, ulen, realm, rlen, NULL, 0, hash) == STUN_USERHASH_LEN ? 0 : -1;
}
