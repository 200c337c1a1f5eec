/* nonce.c: stateless nonces: nothing is stored per client, so a flood of 401s costs no memory. */
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "nonce.h"

/* RFC 8489 9.2: the nonce cookie, then the 24-bit security feature set in base64. We set
 * "password algorithms" and "username anonymity", numbering bits from the most significant
 * (0xC00000 -> "wAAA"), the reading most deployed RFC 8489 servers use. */
static const char cookie[] = "obMatJos2wAAA";
#define COOKIE_LEN  13
#define MAC_LEN     16
#define EXPIRY_MASK 0x00FFFFFFFFFFFFFFull

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static void mac(const struct auth_nonce_key *k, const union stun_addr *client, const uint8_t exp[8],
                uint8_t out[MAC_LEN])
{
    /* expiry || family || port || address: a nonce from one client is useless to another. */
    uint8_t msg[8 + 1 + 2 + 16];
    size_t n = 0;
    memcpy(msg, exp, 8);
    n = 8;
    if (client->sa.sa_family == AF_INET6) {
        msg[n++] = 6;
        memcpy(msg + n, &client->v6.sin6_port, 2);
        memcpy(msg + n + 2, client->v6.sin6_addr.s6_addr, 16);
        n += 18;
    } else {
        msg[n++] = 4;
        memcpy(msg + n, &client->v4.sin_port, 2);
        memcpy(msg + n + 2, &client->v4.sin_addr.s_addr, 4);
        n += 6;
    }
    uint8_t full[32];
    unsigned int flen = 0;
    HMAC(EVP_sha256(), k->secret, sizeof(k->secret), msg, n, full, &flen);
    memcpy(out, full, MAC_LEN);
    OPENSSL_cleanse(full, sizeof(full));
}

/* 24 bytes -> 32 base64url characters (no padding: 24 is a multiple of 3). */
static void encode(const uint8_t in[24], char out[32])
{
    for (int i = 0, o = 0; i < 24; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = b64url[v >> 18 & 63];
        out[o++] = b64url[v >> 12 & 63];
        out[o++] = b64url[v >> 6 & 63];
        out[o++] = b64url[v & 63];
    }
}

static int decode(const uint8_t in[32], uint8_t out[24])
{
    for (int i = 0, o = 0; i < 32; i += 4) {
        uint32_t v = 0;
        for (int j = 0; j < 4; j++) {
            const char *p = memchr(b64url, in[i + j], 64);
            if (!p || !in[i + j]) return -1;
            v = v << 6 | (uint32_t)(p - b64url);
        }
        out[o++] = (uint8_t)(v >> 16);
        out[o++] = (uint8_t)(v >> 8);
        out[o++] = (uint8_t)v;
    }
    return 0;
}

void auth_nonce_make(const struct auth_nonce_key *k, const union stun_addr *client, uint64_t now_s,
                     uint32_t lifetime_s, unsigned flags, char out[AUTH_NONCE_LEN])
{
    /* 56 bits of expiry (seconds) are plenty; the top byte holds the flags. */
    uint64_t expiry = (now_s + lifetime_s) & EXPIRY_MASK;
    uint8_t raw[24];
    raw[0] = (uint8_t)flags;
    for (int i = 1; i < 8; i++)
        raw[i] = (uint8_t)(expiry >> (56 - 8 * i));
    mac(k, client, raw, raw + 8);
    memcpy(out, cookie, COOKIE_LEN);
    encode(raw, out + COOKIE_LEN);
}

enum auth_nonce_result auth_nonce_check(const struct auth_nonce_key *k,
                                        const union stun_addr *client, const uint8_t *nonce,
                                        size_t len, uint64_t now_s, unsigned *flags)
{
    uint8_t raw[24], want[MAC_LEN];
    if (len != AUTH_NONCE_LEN || memcmp(nonce, cookie, COOKIE_LEN) != 0) return AUTH_NONCE_INVALID;
    if (decode(nonce + COOKIE_LEN, raw)) return AUTH_NONCE_INVALID;
    mac(k, client, raw, want);
    if (CRYPTO_memcmp(want, raw + 8, MAC_LEN) != 0) return AUTH_NONCE_INVALID;
    uint64_t expiry = 0;
    for (int i = 1; i < 8; i++)
        expiry = expiry << 8 | raw[i];
    if (flags) *flags = raw[0];
    return now_s < expiry ? AUTH_NONCE_OK : AUTH_NONCE_STALE;
}
