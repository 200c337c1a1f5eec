/* auth.h: credential primitives: long-term keys (RFC 8489 9.2.2) and USERHASH (14.4). No I/O. */
#ifndef TERN_AUTH_H
#define TERN_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "stun.h"

#define AUTH_KEY_MAX 32 /* SHA-256 */

/* The long-term key for a password algorithm (STUN_PASSWORD_ALG_MD5: 16 bytes,
 * STUN_PASSWORD_ALG_SHA256: 32 bytes): H(username ":" realm ":" password), with realm and
 * password prepared by SASLprep (RFC 4013, as the RFC 5769 vectors and deployed clients do).
 * Strings are pointer+length, not NUL-terminated. Returns the key length, or -1 if the
 * algorithm is unknown or a string is not valid UTF-8 / prohibited by SASLprep. key has room
 * for 16 (MD5) or 32 (SHA-256) bytes. */
int auth_longterm_key(uint16_t alg, const char *user, size_t ulen, const char *realm, size_t rlen,
                      const char *password, size_t plen, uint8_t *key);

/* USERHASH = SHA-256(username ":" realm) (RFC 8489 14.4). Returns 0 or -1. */
int auth_userhash(const char *user, size_t ulen, const char *realm, size_t rlen,
                  uint8_t hash[STUN_USERHASH_LEN]);

#endif
