/* uris.h: what ternctl and the admin API share: TURN URIs of the listeners, REST credentials. */
#ifndef TERN_OPS_URIS_H
#define TERN_OPS_URIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "rest.h"
#include "store.h"

#define OPS_MAX_URIS 64
#define OPS_HOST_LEN 1025 /* NI_MAXHOST */
#define OPS_URI_LEN  (OPS_HOST_LEN + 48)
#define OPS_ERR_LEN  256

struct ops_uris {
    char v[OPS_MAX_URIS][OPS_URI_LEN];
    size_t n;
};

/* The URIs clients reach the config's listeners by (RFC 7065), in config order, without
 * duplicates: "turn:HOST:PORT?transport=udp|tcp", "turns:HOST:PORT?transport=tcp" for tls.
 * HOST is relay.external_address when set, else the listener's address unless it is a
 * wildcard, else gethostname(); IPv6 in brackets. A listener on port 0 (kernel-chosen, unknown
 * to the config) is left out. Every URI is printable ASCII without quotes or backslashes, so it
 * is safe in JSON as is. 0, or -1 with a message in err (the host name is unknown or is not
 * a plain host name). */
int ops_listener_uris(const struct tern_config *cfg, struct ops_uris *u, char err[OPS_ERR_LEN]);

/* Results of the helpers below. */
enum ops_result { OPS_OK = 0, OPS_NO_SECRET = -1, OPS_TOO_LONG = -2, OPS_FAILED = -3 };

/* The newest secret in the database: latest created, then highest id. OPS_OK,
 * OPS_NO_SECRET (none stored) or OPS_FAILED (err says why). out is wiped unless OPS_OK. */
int ops_newest_db_secret(struct store *s, char out[STORE_MAX_SECRET + 1], char err[OPS_ERR_LEN]);

struct ops_credential {
    char username[STUN_MAX_USERNAME + 1];
    char password[AUTH_REST_PASSWORD_MAX + 1];
    uint64_t expiry; /* unix seconds */
};

/* Mint a TURN REST credential: username "<now+ttl><sep><user>", password
 * base64(HMAC(secret, username)). OPS_OK, OPS_TOO_LONG (the username would exceed
 * STUN_MAX_USERNAME bytes, or now+ttl overflows) or OPS_FAILED (the HMAC failed). */
int ops_mint_credential(const char *secret, char sep, const char *user, uint64_t ttl, int64_t now,
                        enum auth_rest_mac mac, struct ops_credential *out);

/* Length of the valid UTF-8 sequence at s (RFC 3629: no overlongs, no surrogates), 0 if it is
 * not one. */
size_t ops_utf8_seq(const unsigned char *s);
/* Write str as a JSON string literal: quotes, backslashes and control characters escaped,
 * bytes that are not UTF-8 written as U+FFFD, so the output always parses. */
void ops_json_fputs(FILE *f, const char *str);
/* Write the URIs as a JSON array of strings. */
void ops_uris_json(FILE *f, const struct ops_uris *u);

#endif
