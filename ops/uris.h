/* uris.h: what ternctl and the admin API share: TURN URIs of the listeners, REST credentials. */
#ifndef TERN_OPS_URIS_H
#define TERN_OPS_URIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

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
/* A JSON string of s; bytes that are not UTF-8 become U+FFFD (jansson refuses them). NULL: out
 * of memory. */
json_t *ops_json_text(const char *s);

/* Whether a user name given to create a user (or a REST credential) is refused: it holds a
 * control character (C0, DEL, C1) that would spoof lines on a terminal. SASLprep forbids them,
 * but names do not go through it (auth/store.c prepares only realm and password). 1 and a
 * message naming the first such byte in why, else 0. */
int ops_name_refused(const char *name, char why[OPS_ERR_LEN]);

/* Text for a terminal: backslash, control characters (C0, DEL, C1), bidirectional overrides
 * and bytes that are not UTF-8 become C-style escapes (\\, \n, \r, \t, \xNN, \uNNNN);
 * printable UTF-8 stays. At most cap - 1 bytes of in[0..len) are written (an escape is never
 * cut); returns the bytes written. */
size_t ops_text_escape(const char *in, size_t len, char *out, size_t cap);
/* The same into a fresh string (caller frees); NULL: out of memory. */
char *ops_text_escaped(const char *s);

#endif
