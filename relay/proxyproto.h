/* proxyproto.h: the HAProxy PROXY protocol header, versions 1 (a text line) and 2 (binary), as
 * haproxy's doc/proxy-protocol.txt specifies it: what a TCP proxy in front of the relay sends
 * first on each connection to say whom it accepted the connection from.
 *
 * A pure decoder (library tern_proxyproto): bytes in, a result out. No I/O, no clock, no heap,
 * no state between calls: the caller keeps the bytes it has and calls again with more. It
 * never looks past the header, so the bytes after it (a TLS ClientHello, STUN) stay the
 * caller's. relay/tcp.c is its one user. */
#ifndef TERN_PROXYPROTO_H
#define TERN_PROXYPROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stun.h" /* union stun_addr */

#define PROXY_V1_MAX    107 /* the longest v1 line, "PROXY" to CRLF included (the spec's bound) */
#define PROXY_V2_FIXED  16  /* signature, version/command, family/protocol, length */
#define PROXY_V2_MAXLEN (PROXY_V2_FIXED + 65535)

enum proxy_status {
    PROXY_NEED_MORE, /* a valid prefix: call again with more bytes (need says how many, if known) */
    PROXY_DONE,      /* a whole header: consumed bytes, then the connection's own data */
    PROXY_INVALID,   /* not a valid header (reason): close the connection */
};

enum proxy_reason {
    PROXY_R_NONE,
    PROXY_R_SIGNATURE,   /* neither "PROXY " nor the v2 signature */
    PROXY_R_V1_TOO_LONG, /* no CRLF within PROXY_V1_MAX bytes */
    PROXY_R_V1_SYNTAX,   /* a byte that is not printable, CR without LF, wrong spacing */
    PROXY_R_V1_PROTOCOL, /* not TCP4, TCP6 or UNKNOWN */
    PROXY_R_V1_ADDRESS,  /* an address that is not one of the protocol's family */
    PROXY_R_V1_PORT,     /* not a decimal 0-65535 without leading zeros */
    PROXY_R_V2_VERSION,  /* version nibble not 2 */
    PROXY_R_V2_COMMAND,  /* command not LOCAL (0) or PROXY (1) */
    PROXY_R_V2_FAMILY,   /* address family above AF_UNIX (3) */
    PROXY_R_V2_PROTOCOL, /* PROXY of an IP family not over STREAM (TCP), or an unknown one */
    PROXY_R_V2_LENGTH,   /* the length is too short for the family's addresses */
    PROXY_R_COUNT
};

struct proxy_result {
    enum proxy_status status;
    enum proxy_reason reason; /* PROXY_INVALID: why */
    size_t consumed;          /* PROXY_DONE: the header's length, TLVs included */
    size_t need;              /* PROXY_NEED_MORE: the whole header's length once known (v2); 0 */
    unsigned version;         /* 1 or 2, as soon as the signature says (0 before) */
    /* PROXY_DONE: true for v2 LOCAL (health checks), v1 UNKNOWN and v2 PROXY of AF_UNSPEC or
     * AF_UNIX: there is no IP client address, use the connection's own. */
    bool local;
    union stun_addr src, dst; /* PROXY_DONE && !local: the client, and the address it reached */
};

/* Decode the header at the start of p[0..len). len may be anything from 0 up; the result is
 * the same whether the bytes came in one piece or many. */
void proxy_decode(const uint8_t *p, size_t len, struct proxy_result *r);
/* A short name of a reason for logs ("bad_signature", ...). */
const char *proxy_reason_name(enum proxy_reason r);

#endif
