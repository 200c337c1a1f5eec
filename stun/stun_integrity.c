/* stun_integrity.c: MESSAGE-INTEGRITY (HMAC-SHA1), MESSAGE-INTEGRITY-SHA256 and FINGERPRINT. */
#include <pthread.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <zlib.h>

#include "stun.h"
#include "stun_internal.h"

/* The HMAC implementation is fetched once: fetching per message costs a lock and a lookup. */
static EVP_MAC *hmac_impl;
static pthread_once_t hmac_once = PTHREAD_ONCE_INIT;

static void hmac_fetch(void)
{
    hmac_impl = EVP_MAC_fetch(NULL, "HMAC", NULL);
}

/* HMAC over header (20 bytes, given separately so its length field can be adjusted) and
 * body bytes. out gets the full digest (20 or 32 bytes). */
static int hmac(const char *digest, const uint8_t *key, size_t keylen, const uint8_t *hdr,
                const uint8_t *body, size_t bodylen, uint8_t *out, size_t outlen)
{
    pthread_once(&hmac_once, hmac_fetch);
    if (!hmac_impl) return STUN_E_CRYPTO;
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(hmac_impl);
    if (!ctx) return STUN_E_CRYPTO;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)digest, 0),
        OSSL_PARAM_construct_end(),
    };
    size_t got = 0;
    int ok = EVP_MAC_init(ctx, key, keylen, params) && EVP_MAC_update(ctx, hdr, STUN_HEADER_LEN) &&
             EVP_MAC_update(ctx, body, bodylen) && EVP_MAC_final(ctx, out, &got, outlen);
    EVP_MAC_CTX_free(ctx);
    return ok && got == outlen ? 0 : STUN_E_CRYPTO;
}

/* Verify the integrity attribute at index idx: the MAC covers the message up to the
 * attribute, with the header length set as if the attribute ended the message. */
static int check(const struct stun_msg *m, int idx, const char *digest, size_t maclen,
                 const uint8_t *key, size_t keylen)
{
    if (idx < 0) return STUN_E_NO_INTEGRITY;
    const struct stun_attr *a = &m->attrs[idx];
    size_t off = (size_t)(a->val - m->buf) - 4; /* start of the attribute */
    uint8_t hdr[STUN_HEADER_LEN];
    memcpy(hdr, m->buf, STUN_HEADER_LEN);
    wr16(hdr + 2, (uint16_t)(off - STUN_HEADER_LEN + 4 + pad4(a->len)));
    uint8_t mac[STUN_HMAC_SHA256_LEN];
    int rc = hmac(digest, key, keylen, hdr, m->buf + STUN_HEADER_LEN, off - STUN_HEADER_LEN, mac,
                  maclen);
    if (rc) return rc;
    /* MESSAGE-INTEGRITY-SHA256 may be truncated to 16-32 bytes (RFC 8489 14.6). */
    rc = CRYPTO_memcmp(mac, a->val, a->len) == 0 ? 0 : STUN_E_BAD_INTEGRITY;
    OPENSSL_cleanse(mac, sizeof(mac));
    return rc;
}

int stun_check_integrity(const struct stun_msg *m, const uint8_t *key, size_t keylen)
{
    return check(m, m->integrity, "SHA1", STUN_HMAC_SHA1_LEN, key, keylen);
}

int stun_check_integrity_sha256(const struct stun_msg *m, const uint8_t *key, size_t keylen)
{
    return check(m, m->integrity_sha256, "SHA256", STUN_HMAC_SHA256_LEN, key, keylen);
}

static uint32_t fingerprint(const uint8_t *buf, size_t len)
{
    return (uint32_t)crc32(0L, buf, (uInt)len) ^ STUN_FINGERPRINT_XOR;
}

int stun_check_fingerprint(const struct stun_msg *m)
{
    if (m->fingerprint < 0) return 1;
    const struct stun_attr *a = &m->attrs[m->fingerprint];
    /* The decoder guarantees FINGERPRINT is last, so the header length already covers it. */
    size_t off = (size_t)(a->val - m->buf) - 4;
    return fingerprint(m->buf, off) == rd32(a->val) ? 0 : STUN_E_BAD_FINGERPRINT;
}

static void enc_mac(struct stun_enc *e, uint16_t type, const char *digest, size_t maclen,
                    const uint8_t *key, size_t keylen)
{
    if (e->err) return;
    size_t off = e->len;
    uint8_t zero[STUN_HMAC_SHA256_LEN] = {0};
    stun_enc_attr(e, type, zero, maclen); /* sets the header length to include it */
    if (e->err) return;
    uint8_t mac[STUN_HMAC_SHA256_LEN];
    int rc = hmac(digest, key, keylen, e->buf, e->buf + STUN_HEADER_LEN, off - STUN_HEADER_LEN, mac,
                  maclen);
    if (rc) {
        e->err = rc;
        return;
    }
    memcpy(e->buf + off + 4, mac, maclen);
    OPENSSL_cleanse(mac, sizeof(mac));
}

void stun_enc_integrity(struct stun_enc *e, const uint8_t *key, size_t keylen)
{
    enc_mac(e, STUN_ATTR_MESSAGE_INTEGRITY, "SHA1", STUN_HMAC_SHA1_LEN, key, keylen);
}

void stun_enc_integrity_sha256(struct stun_enc *e, const uint8_t *key, size_t keylen)
{
    enc_mac(e, STUN_ATTR_MESSAGE_INTEGRITY_SHA256, "SHA256", STUN_HMAC_SHA256_LEN, key, keylen);
}

void stun_enc_fingerprint(struct stun_enc *e)
{
    if (e->err) return;
    size_t off = e->len;
    stun_enc_u32(e, STUN_ATTR_FINGERPRINT, 0);
    if (e->err) return;
    wr32(e->buf + off + 4, fingerprint(e->buf, off));
}
