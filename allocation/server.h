/* server.h: the STUN/TURN request handler: bytes, a 5-tuple and the time in, a reply out. No I/O. */
#ifndef TERN_SERVER_H
#define TERN_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stun.h"

enum srv_transport { SRV_UDP, SRV_TCP, SRV_TLS };

/* The client side of a 5-tuple as the relay received it. */
struct srv_tuple {
    enum srv_transport transport;
    union stun_addr client; /* source of the message */
    union stun_addr local;  /* the listening address it arrived on */
};

/* What the handler needs from the configuration (a borrowed, immutable view). */
struct srv_options {
    const char *software; /* SOFTWARE attribute value; NULL or "" omits it */
};

/* Counters, one per outcome; every dropped message lands in exactly one drop_ counter.
 * X(name, help) gives the field, its metric name and its description. */
#define SRV_COUNTERS(X)                                                                            \
    X(rx_stun, "STUN messages handled")                                                            \
    X(binding_success, "Binding success responses sent")                                           \
    X(binding_indication, "Binding indications received (keepalives, no answer)")                 \
    X(error_400, "400 Bad Request responses sent")                                                 \
    X(error_420, "420 Unknown Attribute responses sent")                                           \
    X(drop_short, "dropped: shorter than a STUN header")                                           \
    X(drop_not_stun, "dropped: neither STUN nor ChannelData")                                      \
    X(drop_bad_cookie, "dropped: wrong magic cookie")                                              \
    X(drop_bad_length, "dropped: length field inconsistent with the datagram")                    \
    X(drop_malformed, "dropped: malformed attributes in a message that is not a request")         \
    X(drop_amplification, "dropped: an error answer would be larger than the malformed request")  \
    X(drop_bad_fingerprint, "dropped: FINGERPRINT mismatch")                                       \
    X(drop_response, "dropped: a response or error sent to the server")                            \
    X(drop_indication, "dropped: an indication the server does not handle")                        \
    X(drop_channeldata, "dropped: ChannelData with no allocation on this 5-tuple")

enum srv_counter {
#define SRV_X_ENUM(name, help) SRV_C_##name,
    SRV_COUNTERS(SRV_X_ENUM)
#undef SRV_X_ENUM
        SRV_C_COUNT
};
struct srv_counters {
    uint64_t v[SRV_C_COUNT];
};
extern const char *const srv_counter_names[SRV_C_COUNT];
extern const char *const srv_counter_help[SRV_C_COUNT];

/* Handle one message (a whole datagram, or one frame of a stream) from a client.
 * Writes the reply into out and returns its length; returns 0 when nothing is to be sent
 * (the reason is counted). now_ms is the caller's clock (unused by Binding, kept so every
 * handler has the same shape). */
size_t srv_handle(const struct srv_options *opt, const struct srv_tuple *tuple, const uint8_t *in,
                  size_t inlen, uint64_t now_ms, uint8_t *out, size_t outcap,
                  struct srv_counters *c);

#endif
