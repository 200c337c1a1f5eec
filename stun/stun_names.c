/* stun_names.c: the attribute table (names and length rules), error texts and reason phrases. */
#include "stun.h"
#include "stun_internal.h"

#define TEXT STUN_MAX_TEXT_BYTES

const struct stun_attr_spec *stun_attr_spec(uint16_t type)
{
    /* Lengths from RFC 8489 section 14, RFC 8656 section 18, RFC 8445 section 16.1. */
    static const struct stun_attr_spec
        mapped = {"MAPPED-ADDRESS", 8, 20, 1, 1},
        username = {"USERNAME", 0, STUN_MAX_USERNAME, 1, 0},
        mi = {"MESSAGE-INTEGRITY", 20, 20, 1, 0}, error = {"ERROR-CODE", 4, 4 + TEXT, 1, 0},
        unknown = {"UNKNOWN-ATTRIBUTES", 0, 65532, 2, 0}, channel = {"CHANNEL-NUMBER", 4, 4, 1, 0},
        lifetime = {"LIFETIME", 4, 4, 1, 0}, peer = {"XOR-PEER-ADDRESS", 8, 20, 1, 1},
        data = {"DATA", 0, 65535, 1, 0}, realm = {"REALM", 0, TEXT, 1, 0},
        nonce = {"NONCE", 0, TEXT, 1, 0}, relayed = {"XOR-RELAYED-ADDRESS", 8, 20, 1, 1},
        req_family = {"REQUESTED-ADDRESS-FAMILY", 4, 4, 1, 0},
        even_port = {"EVEN-PORT", 1, 1, 1, 0}, req_transport = {"REQUESTED-TRANSPORT", 4, 4, 1, 0},
        dont_fragment = {"DONT-FRAGMENT", 0, 0, 1, 0},
        mi256 = {"MESSAGE-INTEGRITY-SHA256", 16, 32, 4, 0},
        pw_alg = {"PASSWORD-ALGORITHM", 4, 4 + 65528, 1, 0}, userhash = {"USERHASH", 32, 32, 1, 0},
        xor_mapped = {"XOR-MAPPED-ADDRESS", 8, 20, 1, 1}, token = {"RESERVATION-TOKEN", 8, 8, 1, 0},
        priority = {"PRIORITY", 4, 4, 1, 0}, use_cand = {"USE-CANDIDATE", 0, 0, 1, 0},
        conn_id = {"CONNECTION-ID", 4, 4, 1, 0},
        add_family = {"ADDITIONAL-ADDRESS-FAMILY", 4, 4, 1, 0},
        addr_error = {"ADDRESS-ERROR-CODE", 4, 4 + TEXT, 1, 0},
        pw_algs = {"PASSWORD-ALGORITHMS", 4, 65532, 1, 0},
        alt_domain = {"ALTERNATE-DOMAIN", 1, 255, 1, 0}, icmp = {"ICMP", 8, 8, 1, 0},
        software = {"SOFTWARE", 0, TEXT, 1, 0}, alt_server = {"ALTERNATE-SERVER", 8, 20, 1, 1},
        fingerprint = {"FINGERPRINT", 4, 4, 1, 0}, controlled = {"ICE-CONTROLLED", 8, 8, 1, 0},
        controlling = {"ICE-CONTROLLING", 8, 8, 1, 0}, origin = {"RESPONSE-ORIGIN", 8, 20, 1, 1},
        other = {"OTHER-ADDRESS", 8, 20, 1, 1}, mobility = {"MOBILITY-TICKET", 0, TEXT, 1, 0};

    switch (type) {
    case STUN_ATTR_MAPPED_ADDRESS:
        return &mapped;
    case STUN_ATTR_USERNAME:
        return &username;
    case STUN_ATTR_MESSAGE_INTEGRITY:
        return &mi;
    case STUN_ATTR_ERROR_CODE:
        return &error;
    case STUN_ATTR_UNKNOWN_ATTRIBUTES:
        return &unknown;
    case STUN_ATTR_CHANNEL_NUMBER:
        return &channel;
    case STUN_ATTR_LIFETIME:
        return &lifetime;
    case STUN_ATTR_XOR_PEER_ADDRESS:
        return &peer;
    case STUN_ATTR_DATA:
        return &data;
    case STUN_ATTR_REALM:
        return &realm;
    case STUN_ATTR_NONCE:
        return &nonce;
    case STUN_ATTR_XOR_RELAYED_ADDRESS:
        return &relayed;
    case STUN_ATTR_REQUESTED_ADDRESS_FAMILY:
        return &req_family;
    case STUN_ATTR_EVEN_PORT:
        return &even_port;
    case STUN_ATTR_REQUESTED_TRANSPORT:
        return &req_transport;
    case STUN_ATTR_DONT_FRAGMENT:
        return &dont_fragment;
    case STUN_ATTR_MESSAGE_INTEGRITY_SHA256:
        return &mi256;
    case STUN_ATTR_PASSWORD_ALGORITHM:
        return &pw_alg;
    case STUN_ATTR_USERHASH:
        return &userhash;
    case STUN_ATTR_XOR_MAPPED_ADDRESS:
        return &xor_mapped;
    case STUN_ATTR_RESERVATION_TOKEN:
        return &token;
    case STUN_ATTR_PRIORITY:
        return &priority;
    case STUN_ATTR_USE_CANDIDATE:
        return &use_cand;
    case STUN_ATTR_CONNECTION_ID:
        return &conn_id;
    case STUN_ATTR_ADDITIONAL_ADDRESS_FAMILY:
        return &add_family;
    case STUN_ATTR_ADDRESS_ERROR_CODE:
        return &addr_error;
    case STUN_ATTR_PASSWORD_ALGORITHMS:
        return &pw_algs;
    case STUN_ATTR_ALTERNATE_DOMAIN:
        return &alt_domain;
    case STUN_ATTR_ICMP:
        return &icmp;
    case STUN_ATTR_SOFTWARE:
        return &software;
    case STUN_ATTR_ALTERNATE_SERVER:
        return &alt_server;
    case STUN_ATTR_FINGERPRINT:
        return &fingerprint;
    case STUN_ATTR_ICE_CONTROLLED:
        return &controlled;
    case STUN_ATTR_ICE_CONTROLLING:
        return &controlling;
    case STUN_ATTR_RESPONSE_ORIGIN:
        return &origin;
    case STUN_ATTR_OTHER_ADDRESS:
        return &other;
    case STUN_ATTR_MOBILITY_TICKET:
        return &mobility;
    default:
        return NULL;
    }
}

const char *stun_attr_name(uint16_t type)
{
    const struct stun_attr_spec *s = stun_attr_spec(type);
    return s ? s->name : NULL;
}

const char *stun_strerror(int err)
{
    switch (err) {
    case STUN_OK:
        return "ok";
#define X(name, msg)                                                                               \
    case STUN_E_##name:                                                                            \
        return msg;
        STUN_ERRORS(X)
#undef X
    default:
        return "unknown codec error";
    }
}

const char *stun_errname(int err)
{
    switch (err) {
    case STUN_OK:
        return "OK";
#define X(name, msg)                                                                               \
    case STUN_E_##name:                                                                            \
        return #name;
        STUN_ERRORS(X)
#undef X
    default:
        return "UNKNOWN";
    }
}

const char *stun_error_reason(int code)
{
    switch (code) {
    case 300:
        return "Try Alternate";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthenticated";
    case 403:
        return "Forbidden";
    case 405:
        return "Mobility Forbidden";
    case 420:
        return "Unknown Attribute";
    case 437:
        return "Allocation Mismatch";
    case 438:
        return "Stale Nonce";
    case 440:
        return "Address Family not Supported";
    case 441:
        return "Wrong Credentials";
    case 442:
        return "Unsupported Transport Protocol";
    case 443:
        return "Peer Address Family Mismatch";
    case 446:
        return "Connection Already Exists";
    case 447:
        return "Connection Timeout or Failure";
    case 486:
        return "Allocation Quota Reached";
    case 500:
        return "Server Error";
    case 508:
        return "Insufficient Capacity";
    default:
        return "Unknown Error";
    }
}
