/* stun.h: STUN (RFC 8489) and TURN (RFC 8656) wire codec. No I/O, no clock, no heap, no config. */
#ifndef TERN_STUN_H
#define TERN_STUN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>

#define STUN_MAGIC_COOKIE    0x2112A442u
#define STUN_FINGERPRINT_XOR 0x5354554Eu
#define STUN_HEADER_LEN      20
#define STUN_TID_LEN         12
#define STUN_MAX_ATTRS       64 /* more attributes than this in one message: 400 */
#define STUN_MAX_UNKNOWN     16 /* unknown comprehension-required types kept for 420 */
#define STUN_MAX_MSG         (65535 + STUN_HEADER_LEN)

/* Codec results: 0 (or a length) on success, a negative STUN_E_* on failure.
 * X(name, message) — one table gives the code, its name and its text. */
#define STUN_ERRORS(X)                                                                             \
    X(TRUNCATED, "shorter than the fixed header")                                                  \
    X(NOT_STUN, "first two bits are not 00")                                                       \
    X(BAD_COOKIE, "magic cookie is not 0x2112A442")                                                \
    X(BAD_LENGTH, "length field not a multiple of 4 or not the message size")                      \
    X(ATTR_TRUNCATED, "attribute runs past the end of the message")                                \
    X(ATTR_LENGTH, "attribute length invalid for its type")                                        \
    X(AFTER_FINGERPRINT, "attribute after FINGERPRINT")                                            \
    X(TOO_MANY_ATTRS, "more attributes than the decoder keeps")                                    \
    X(BAD_FINGERPRINT, "FINGERPRINT does not match")                                               \
    X(BAD_INTEGRITY, "MESSAGE-INTEGRITY does not match")                                           \
    X(NO_INTEGRITY, "no MESSAGE-INTEGRITY attribute of that kind")                                 \
    X(BAD_VALUE, "attribute value is malformed")                                                   \
    X(BAD_FAMILY, "unknown address family")                                                        \
    X(NO_SPACE, "output buffer too small")                                                         \
    X(NOT_CHANNELDATA, "not a ChannelData message")                                                \
    X(BAD_CHANNEL, "channel number outside 0x4000-0x7FFF")                                         \
    X(CRYPTO, "the crypto library failed")

enum stun_err {
    STUN_OK = 0,
#define STUN_X_ENUM(name, msg) STUN_E_##name,
    STUN_E_FIRST_ = -100,
    STUN_ERRORS(STUN_X_ENUM)
#undef STUN_X_ENUM
        STUN_E_LAST_
};
/* Text for a STUN_E_* code (negative) or "ok". Never NULL. */
const char *stun_strerror(int err);
/* Short name ("BAD_COOKIE") for a STUN_E_* code. Never NULL. */
const char *stun_errname(int err);

/* Message classes (RFC 8489 section 5) and methods (RFC 8489, RFC 8656). */
enum stun_class {
    STUN_REQUEST = 0,
    STUN_INDICATION = 1,
    STUN_SUCCESS = 2,
    STUN_ERROR = 3,
};
enum stun_method {
    STUN_BINDING = 0x001,
    STUN_ALLOCATE = 0x003,
    STUN_REFRESH = 0x004,
    STUN_SEND = 0x006,
    STUN_DATA = 0x007,
    STUN_CREATE_PERMISSION = 0x008,
    STUN_CHANNEL_BIND = 0x009,
    STUN_CONNECT = 0x00A,            /* RFC 6062 4.3 */
    STUN_CONNECTION_BIND = 0x00B,    /* RFC 6062 4.4 */
    STUN_CONNECTION_ATTEMPT = 0x00C, /* RFC 6062 4.5 (an indication) */
};

static inline uint16_t stun_type(uint16_t method, enum stun_class cls)
{
    return (uint16_t)(((method & 0x0F80) << 2) | ((method & 0x0070) << 1) | (method & 0x000F) |
                      ((cls & 2) << 7) | ((cls & 1) << 4));
}
static inline uint16_t stun_method_of(uint16_t type)
{
    return (uint16_t)(((type & 0x3E00) >> 2) | ((type & 0x00E0) >> 1) | (type & 0x000F));
}
static inline enum stun_class stun_class_of(uint16_t type)
{
    return (enum stun_class)(((type & 0x0100) >> 7) | ((type & 0x0010) >> 4));
}

/* Attribute types. */
enum stun_attr_type {
    STUN_ATTR_MAPPED_ADDRESS = 0x0001,
    STUN_ATTR_CHANGE_REQUEST = 0x0003, /* RFC 5780; we do not implement it: 420 */
    STUN_ATTR_USERNAME = 0x0006,
    STUN_ATTR_MESSAGE_INTEGRITY = 0x0008,
    STUN_ATTR_ERROR_CODE = 0x0009,
    STUN_ATTR_UNKNOWN_ATTRIBUTES = 0x000A,
    STUN_ATTR_CHANNEL_NUMBER = 0x000C,
    STUN_ATTR_LIFETIME = 0x000D,
    STUN_ATTR_XOR_PEER_ADDRESS = 0x0012,
    STUN_ATTR_DATA = 0x0013,
    STUN_ATTR_REALM = 0x0014,
    STUN_ATTR_NONCE = 0x0015,
    STUN_ATTR_XOR_RELAYED_ADDRESS = 0x0016,
    STUN_ATTR_REQUESTED_ADDRESS_FAMILY = 0x0017,
    STUN_ATTR_EVEN_PORT = 0x0018,
    STUN_ATTR_REQUESTED_TRANSPORT = 0x0019,
    STUN_ATTR_DONT_FRAGMENT = 0x001A,
    STUN_ATTR_MESSAGE_INTEGRITY_SHA256 = 0x001C,
    STUN_ATTR_PASSWORD_ALGORITHM = 0x001D,
    STUN_ATTR_USERHASH = 0x001E,
    STUN_ATTR_XOR_MAPPED_ADDRESS = 0x0020,
    STUN_ATTR_RESERVATION_TOKEN = 0x0022,
    STUN_ATTR_PRIORITY = 0x0024,      /* ICE, RFC 8445 */
    STUN_ATTR_USE_CANDIDATE = 0x0025, /* ICE */
    STUN_ATTR_CONNECTION_ID = 0x002A, /* RFC 6062 6.2.1 */
    STUN_ATTR_ADDITIONAL_ADDRESS_FAMILY = 0x8000,
    STUN_ATTR_ADDRESS_ERROR_CODE = 0x8001,
    STUN_ATTR_PASSWORD_ALGORITHMS = 0x8002,
    STUN_ATTR_ALTERNATE_DOMAIN = 0x8003,
    STUN_ATTR_ICMP = 0x8004,
    STUN_ATTR_SOFTWARE = 0x8022,
    STUN_ATTR_ALTERNATE_SERVER = 0x8023,
    STUN_ATTR_FINGERPRINT = 0x8028,
    STUN_ATTR_ICE_CONTROLLED = 0x8029,
    STUN_ATTR_ICE_CONTROLLING = 0x802A,
    STUN_ATTR_RESPONSE_ORIGIN = 0x802B, /* RFC 5780, comprehension-optional */
    STUN_ATTR_OTHER_ADDRESS = 0x802C,   /* RFC 5780, comprehension-optional */
    STUN_ATTR_MOBILITY_TICKET = 0x8030, /* RFC 8016, comprehension-optional */
};

/* Values carried by attributes. */
#define STUN_FAMILY_IPV4           0x01
#define STUN_FAMILY_IPV6           0x02
#define STUN_TRANSPORT_UDP         17
#define STUN_TRANSPORT_TCP         6 /* RFC 6062 */
#define STUN_PASSWORD_ALG_MD5      0x0001
#define STUN_PASSWORD_ALG_SHA256   0x0002
#define STUN_MAX_USERNAME          512 /* bytes; RFC 8489 14.3: < 513 */
#define STUN_MAX_REALM_CHARS       127 /* RFC 8489 14.9: < 128 characters, < 763 bytes */
#define STUN_MAX_TEXT_BYTES        763 /* REALM, NONCE, SOFTWARE, reason phrases */
#define STUN_USERHASH_LEN          32
#define STUN_HMAC_SHA1_LEN         20
#define STUN_HMAC_SHA256_LEN       32
#define STUN_RESERVATION_TOKEN_LEN 8

/* A transport address: IPv4 or IPv6, network byte order inside, as the sockets API has it. */
union stun_addr {
    struct sockaddr sa;
    struct sockaddr_in v4;
    struct sockaddr_in6 v6;
};

/* A decoded attribute: a view into the message buffer (borrowed). */
struct stun_attr {
    uint16_t type;
    uint16_t len;       /* value length, without padding */
    const uint8_t *val; /* points into stun_msg.buf */
};

/* A decoded message. Views into the caller's buffer, valid while that buffer is. */
struct stun_msg {
    const uint8_t *buf; /* the whole message, STUN_HEADER_LEN + len bytes */
    uint16_t type;      /* method and class bits */
    uint16_t len;       /* body length from the header */
    const uint8_t *tid; /* 12 bytes, into buf */
    uint16_t
        nattrs; /* attributes kept (those after MESSAGE-INTEGRITY are ignored, RFC 8489 14.5) */
    uint16_t
        nunknown; /* unknown comprehension-required types (for 420), at most STUN_MAX_UNKNOWN */
    int16_t integrity;        /* index in attrs of MESSAGE-INTEGRITY, -1 if absent */
    int16_t integrity_sha256; /* index of MESSAGE-INTEGRITY-SHA256, -1 if absent */
    int16_t fingerprint;      /* index of FINGERPRINT, -1 if absent */
    uint16_t unknown[STUN_MAX_UNKNOWN];
    struct stun_attr attrs[STUN_MAX_ATTRS];
};

/* Is this (probably) a STUN message? Checks the first two bits, the cookie and the length. */
bool stun_is_message(const uint8_t *buf, size_t len);

/* Decode a whole message. len must be exactly STUN_HEADER_LEN + the header's length
 * (for a datagram: the datagram size; for a stream: the frame from stun_frame_length).
 * Checks every attribute length against the message end and the per-type limits,
 * records unknown comprehension-required types, ignores attributes after
 * MESSAGE-INTEGRITY (-SHA256) except MESSAGE-INTEGRITY-SHA256 and FINGERPRINT, and
 * refuses anything after FINGERPRINT. Does not verify FINGERPRINT or integrity.
 * On failure *m is left unspecified except that, when the 20-byte header was valid,
 * m->type and m->tid are set so that a request can still be answered with 400. */
int stun_decode(struct stun_msg *m, const uint8_t *buf, size_t len);

/* First attribute of a type, or NULL. Duplicates after the first are ignored unless asked. */
const struct stun_attr *stun_find(const struct stun_msg *m, uint16_t type);
/* Next attribute of the same type after prev (for several XOR-PEER-ADDRESS), or NULL. */
const struct stun_attr *stun_find_next(const struct stun_msg *m, const struct stun_attr *prev);

/* Comprehension-required attribute types are 0x0000-0x7FFF. */
static inline bool stun_attr_required(uint16_t type)
{
    return type < 0x8000;
}
/* Name of a known attribute type ("XOR-MAPPED-ADDRESS") or NULL. */
const char *stun_attr_name(uint16_t type);
/* Default reason phrase for an error code (RFC 8489, RFC 8656), or "Unknown Error". */
const char *stun_error_reason(int code);

/* Typed attribute readers. Each returns 0 or a negative STUN_E_*. */
int stun_get_addr(const struct stun_attr *a, union stun_addr *out);
int stun_get_xor_addr(const struct stun_msg *m, const struct stun_attr *a, union stun_addr *out);
int stun_get_u32(const struct stun_attr *a, uint32_t *out);
int stun_get_u64(const struct stun_attr *a, uint64_t *out);
/* ERROR-CODE: code 300-699; reason is a view (not NUL-terminated). */
int stun_get_error(const struct stun_attr *a, int *code, const char **reason, size_t *reason_len);
/* CHANNEL-NUMBER: the 16-bit number (range is the caller's decision). */
int stun_get_channel(const struct stun_attr *a, uint16_t *ch);
/* REQUESTED-TRANSPORT: the IP protocol number. */
int stun_get_transport(const struct stun_attr *a, uint8_t *proto);
/* REQUESTED-ADDRESS-FAMILY / ADDITIONAL-ADDRESS-FAMILY: STUN_FAMILY_IPV4 or _IPV6
 * (other values are returned too; the caller answers 440). */
int stun_get_family(const struct stun_attr *a, uint8_t *family);
/* EVEN-PORT: the R bit. */
int stun_get_even_port(const struct stun_attr *a, bool *reserve);
/* UNKNOWN-ATTRIBUTES: up to max types; *n gets the count stored. */
int stun_get_unknown(const struct stun_attr *a, uint16_t *types, size_t max, size_t *n);
/* ADDRESS-ERROR-CODE: family, code and reason view. */
int stun_get_address_error(const struct stun_attr *a, uint8_t *family, int *code,
                           const char **reason, size_t *reason_len);
/* ICMP: type, code and error data. */
int stun_get_icmp(const struct stun_attr *a, uint8_t *type, uint8_t *code, uint32_t *data);
/* PASSWORD-ALGORITHM: algorithm number and parameter view. */
int stun_get_password_algorithm(const struct stun_attr *a, uint16_t *alg, const uint8_t **params,
                                uint16_t *plen);
/* PASSWORD-ALGORITHMS: iterate with *off starting at 0; returns 1 while an entry is
 * produced, 0 at the end, negative on malformed input. */
int stun_next_password_algorithm(const struct stun_attr *a, size_t *off, uint16_t *alg,
                                 const uint8_t **params, uint16_t *plen);

/* Verification. The key is the short-term password, or the long-term key
 * (MD5 or SHA-256 of "user:realm:password" as RFC 8489 9.2.2 says). MACs are compared in
 * constant time. Returns 0, STUN_E_NO_INTEGRITY, STUN_E_BAD_INTEGRITY or STUN_E_CRYPTO. */
int stun_check_integrity(const struct stun_msg *m, const uint8_t *key, size_t keylen);
int stun_check_integrity_sha256(const struct stun_msg *m, const uint8_t *key, size_t keylen);
/* 0 if FINGERPRINT is present and right, STUN_E_BAD_FINGERPRINT if wrong, 1 if absent. */
int stun_check_fingerprint(const struct stun_msg *m);

/* Encoder: writes into a caller buffer, back-patching the header length after every
 * attribute. Errors are sticky: the first one is kept in e->err and returned by finish. */
struct stun_enc {
    uint8_t *buf;
    size_t cap;
    size_t len;
    int err;
    uint8_t pad; /* padding byte value: 0 by default; receivers ignore it (RFC 8489 14), and
                  * the RFC 5769 vectors use 0x20, so tests can reproduce them byte for byte */
};
void stun_enc_init(struct stun_enc *e, uint8_t *buf, size_t cap, uint16_t type,
                   const uint8_t tid[STUN_TID_LEN]);
void stun_enc_attr(struct stun_enc *e, uint16_t type, const void *val, size_t len);
void stun_enc_u32(struct stun_enc *e, uint16_t type, uint32_t v);
void stun_enc_u64(struct stun_enc *e, uint16_t type, uint64_t v);
/* One byte followed by three zero bytes: REQUESTED-TRANSPORT, REQUESTED-/ADDITIONAL-ADDRESS-FAMILY.
 */
void stun_enc_u8_rffu(struct stun_enc *e, uint16_t type, uint8_t v);
void stun_enc_channel(struct stun_enc *e, uint16_t ch);
void stun_enc_even_port(struct stun_enc *e, bool reserve);
void stun_enc_addr(struct stun_enc *e, uint16_t type, const union stun_addr *a);
void stun_enc_xor_addr(struct stun_enc *e, uint16_t type, const union stun_addr *a);
/* reason NULL: the default phrase for code. */
void stun_enc_error(struct stun_enc *e, int code, const char *reason);
void stun_enc_unknown(struct stun_enc *e, const uint16_t *types, size_t n);
void stun_enc_address_error(struct stun_enc *e, uint8_t family, int code, const char *reason);
void stun_enc_icmp(struct stun_enc *e, uint8_t type, uint8_t code, uint32_t data);
void stun_enc_password_algorithm(struct stun_enc *e, uint16_t alg);
void stun_enc_password_algorithms(struct stun_enc *e, const uint16_t *algs, size_t n);
void stun_enc_integrity(struct stun_enc *e, const uint8_t *key, size_t keylen);
void stun_enc_integrity_sha256(struct stun_enc *e, const uint8_t *key, size_t keylen);
void stun_enc_fingerprint(struct stun_enc *e);
/* The encoded length (> 0) or the first error (< 0). */
int stun_enc_finish(const struct stun_enc *e);

/* ChannelData (RFC 8656 section 12). */
#define STUN_CHANNEL_MIN        0x4000
#define STUN_CHANNEL_MAX        0x7FFF /* RFC 5766 range; RFC 8656 narrows to 0x4FFF */
#define STUN_CHANNEL_MAX_STRICT 0x4FFF
#define STUN_CHDATA_HEADER_LEN  4

/* Decode one ChannelData message from buf. Over a datagram (stream=false) the length
 * field may be followed by up to 3 padding bytes or none (RFC 8656 12.5); over a stream
 * the frame is padded to a multiple of 4. Returns the bytes the frame occupies (> 0) or a
 * negative STUN_E_*. The channel number is checked against 0x4000-0x7FFF. */
int stun_chdata_decode(const uint8_t *buf, size_t len, bool stream, uint16_t *ch,
                       const uint8_t **data, uint16_t *dlen);
/* Write the 4-byte header for a ChannelData message. */
void stun_chdata_header(uint8_t hdr[STUN_CHDATA_HEADER_LEN], uint16_t ch, uint16_t dlen);
/* Encode header, data and (stream only) zero padding into buf. Returns the total length
 * or a negative STUN_E_*. data may sit at buf + 4 already (no copy then). */
int stun_chdata_encode(uint8_t *buf, size_t cap, uint16_t ch, const uint8_t *data, uint16_t dlen,
                       bool stream);

/* For stream transports: the length of the frame at the start of buf (STUN message or
 * padded ChannelData). Returns the frame length (> 0), 0 when fewer than 4 bytes are
 * available to tell, or STUN_E_NOT_STUN for anything else. */
int stun_frame_length(const uint8_t *buf, size_t avail);

#endif
