/* rest.c: REST API usernames and passwords (parse, derive); the server tries every secret. */
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "rest.h"

int auth_rest_parse(const uint8_t *name, size_t len, char sep, uint64_t *expiry)
{
    uint64_t v = 0;
    size_t i = 0;
    for (; i < len && name[i] != (uint8_t)sep; i++) {
        if (name[i] < '0' || name[i] > '9' || i >= 19) return -1; /* 19 digits fit 64 bits */
        v = v * 10 + (uint64_t)(name[i] - '0');
    }
    if (i == 0 || i + 1 >= len) return -1; /* no expiry, no separator, or no user id */
    *expiry = v;
    return 0;
}

size_t auth_rest_password(enum auth_rest_mac mac, const uint8_t *secret, size_t slen,
                          const uint8_t *name, size_t len, char out[AUTH_REST_PASSWORD_MAX])
{
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    const EVP_MD *h = mac == AUTH_REST_HMAC_SHA256 ? EVP_sha256() : EVP_sha1();
    if (!HMAC(h, secret, (int)slen, name, len, md, &mdlen)) return 0;
    int n = EVP_EncodeBlock((unsigned char *)out, md, (int)mdlen);
    OPENSSL_cleanse(md, sizeof(md));
    return n > 0 && n < AUTH_REST_PASSWORD_MAX ? (size_t)n : 0;
}
