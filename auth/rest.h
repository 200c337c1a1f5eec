/* rest.h: TURN REST API time-limited credentials: username "<expiry><sep><user id>", password
 * base64(HMAC-SHA1(secret, username)) (or HMAC-SHA256), the scheme coturn, eturnal, pion and
 * WebRTC backends share. No I/O, no clock: the caller compares the expiry with its time. */
#ifndef TERN_REST_H
#define TERN_REST_H

#include <stddef.h>
#include <stdint.h>

#define AUTH_REST_PASSWORD_MAX 48 /* base64 of a SHA-256 MAC is 44 characters */

enum auth_rest_mac { AUTH_REST_HMAC_SHA1, AUTH_REST_HMAC_SHA256 };

/* Parse a REST username: the expiry (unix seconds, decimal) before the first sep, a non-empty
 * user id after it. 0 and *expiry, or -1 when it is not a REST username. */
int auth_rest_parse(const uint8_t *name, size_t len, char sep, uint64_t *expiry);

/* The password a REST username has under secret: base64 (RFC 4648, padded) of the MAC.
 * Returns its length (28 for SHA-1, 44 for SHA-256), or 0 if the crypto library failed. */
size_t auth_rest_password(enum auth_rest_mac mac, const uint8_t *secret, size_t slen,
                          const uint8_t *name, size_t len, char out[AUTH_REST_PASSWORD_MAX]);

#endif
