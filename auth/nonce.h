/* nonce.h: stateless NONCE values (RFC 8489 9.2): HMAC-SHA256 over expiry and client address. */
#ifndef TERN_NONCE_H
#define TERN_NONCE_H

#include <stddef.h>
#include <stdint.h>

#include "stun.h"

#define AUTH_NONCE_SECRET_LEN 32
/* "obMatJos2" + 4 feature characters + 32 characters of base64url(expiry(8) || mac(16)). */
#define AUTH_NONCE_LEN 45

/* The server's nonce secret: generated at start by the caller (this module reads no
 * randomness and no clock). */
struct auth_nonce_key {
    uint8_t secret[AUTH_NONCE_SECRET_LEN];
};

enum auth_nonce_result {
    AUTH_NONCE_OK = 0,
    AUTH_NONCE_STALE = -1,   /* well formed and ours, but expired: 438 */
    AUTH_NONCE_INVALID = -2, /* malformed, forged, or issued to another address: 438 too */
};

/* Flags a nonce carries under its MAC (the top byte of its expiry field). */
#define AUTH_NONCE_STEERED                                                                         \
    0x01u /* handed out with a 300 (cluster.redirect): its holder was                              \
             sent here by another node, and is not sent on again */

/* Write a nonce valid until now_s + lifetime_s for this client address (IP and port: a nonce
 * is bound to the 5-tuple's client side), carrying flags (AUTH_NONCE_*). out gets
 * AUTH_NONCE_LEN bytes, not terminated. */
void auth_nonce_make(const struct auth_nonce_key *k, const union stun_addr *client, uint64_t now_s,
                     uint32_t lifetime_s, unsigned flags, char out[AUTH_NONCE_LEN]);
/* Check a nonce against k; *flags (may be NULL) gets its flags when it is ours (OK or
 * STALE). */
enum auth_nonce_result auth_nonce_check(const struct auth_nonce_key *k,
                                        const union stun_addr *client, const uint8_t *nonce,
                                        size_t len, uint64_t now_s, unsigned *flags);

#endif
