/* server.c: request dispatch for the STUN server: Binding (RFC 8489), 400 and 420 answers. */
#include <string.h>

#include "server.h"

const char *const srv_counter_names[SRV_C_COUNT] = {
#define X(name, help) #name,
    SRV_COUNTERS(X)
#undef X
};
const char *const srv_counter_help[SRV_C_COUNT] = {
#define X(name, help) help,
    SRV_COUNTERS(X)
#undef X
};

/* Start a response of the given class to request m. */
static void begin(struct stun_enc *e, const struct stun_msg *m, enum stun_class cls, uint8_t *out,
                  size_t cap)
{
    stun_enc_init(e, out, cap, stun_type(stun_method_of(m->type), cls), m->tid);
}

/* SOFTWARE (when configured) and FINGERPRINT (when the request had one, RFC 8489 14.7)
 * close every response. */
static size_t finish(struct stun_enc *e, const struct srv_options *opt, bool fingerprint)
{
    if (opt->software && opt->software[0])
        stun_enc_attr(e, STUN_ATTR_SOFTWARE, opt->software, strlen(opt->software));
    if (fingerprint) stun_enc_fingerprint(e);
    int n = stun_enc_finish(e);
    return n > 0 ? (size_t)n : 0;
}

static size_t error_response(const struct srv_options *opt, const struct stun_msg *m, int code,
                             bool fingerprint, uint8_t *out, size_t cap)
{
    struct stun_enc e;
    begin(&e, m, STUN_ERROR, out, cap);
    stun_enc_error(&e, code, NULL);
    if (code == 420) stun_enc_unknown(&e, m->unknown, m->nunknown);
    return finish(&e, opt, fingerprint);
}

static size_t binding(const struct srv_options *opt, const struct srv_tuple *t,
                      const struct stun_msg *m, bool fingerprint, uint8_t *out, size_t cap)
{
    struct stun_enc e;
    begin(&e, m, STUN_SUCCESS, out, cap);
    stun_enc_xor_addr(&e, STUN_ATTR_XOR_MAPPED_ADDRESS, &t->client);
    return finish(&e, opt, fingerprint);
}

/* A message that failed to decode: 400 if it is a request whose header we could read and
 * the answer is no larger than what it carried (no amplification); otherwise a drop. */
static size_t malformed(const struct srv_options *opt, const struct stun_msg *m, int rc, size_t inlen,
                        uint8_t *out, size_t cap, struct srv_counters *c)
{
    switch (rc) {
    case STUN_E_TRUNCATED: c->v[SRV_C_drop_short]++; return 0;
    case STUN_E_NOT_STUN: c->v[SRV_C_drop_not_stun]++; return 0;
    case STUN_E_BAD_COOKIE: c->v[SRV_C_drop_bad_cookie]++; return 0;
    case STUN_E_BAD_LENGTH: c->v[SRV_C_drop_bad_length]++; return 0;
    default: break;
    }
    if (!m->tid) return 0;
    if (stun_class_of(m->type) != STUN_REQUEST) {
        c->v[SRV_C_drop_malformed]++;
        return 0;
    }
    size_t n = error_response(opt, m, 400, false, out, cap);
    if (n == 0 || n > inlen) {
        c->v[SRV_C_drop_amplification]++;
        return 0;
    }
    c->v[SRV_C_error_400]++;
    return n;
}

size_t srv_handle(const struct srv_options *opt, const struct srv_tuple *tuple, const uint8_t *in,
                  size_t inlen, uint64_t now_ms, uint8_t *out, size_t outcap,
                  struct srv_counters *c)
{
    (void)now_ms;
    if (inlen >= 1 && (in[0] & 0xC0) == 0x40) {
        c->v[SRV_C_drop_channeldata]++; /* no allocations yet on any 5-tuple */
        return 0;
    }
    struct stun_msg m;
    int rc = stun_decode(&m, in, inlen);
    if (rc) return malformed(opt, &m, rc, inlen, out, outcap, c);
    c->v[SRV_C_rx_stun]++;

    int fp = stun_check_fingerprint(&m);
    if (fp < 0) {
        c->v[SRV_C_drop_bad_fingerprint]++; /* RFC 8489 7.3: discard */
        return 0;
    }
    bool fingerprint = fp == 0;

    switch (stun_class_of(m.type)) {
    case STUN_SUCCESS:
    case STUN_ERROR: c->v[SRV_C_drop_response]++; return 0;
    case STUN_INDICATION:
        /* Unknown comprehension-required attributes in an indication: discard silently. */
        if (stun_method_of(m.type) == STUN_BINDING && m.nunknown == 0)
            c->v[SRV_C_binding_indication]++;
        else
            c->v[SRV_C_drop_indication]++;
        return 0;
    case STUN_REQUEST: break;
    }

    if (m.nunknown) {
        c->v[SRV_C_error_420]++;
        return error_response(opt, &m, 420, fingerprint, out, outcap);
    }
    switch (stun_method_of(m.type)) {
    case STUN_BINDING: {
        size_t n = binding(opt, tuple, &m, fingerprint, out, outcap);
        if (n) c->v[SRV_C_binding_success]++;
        return n;
    }
    default:
        /* A method this server does not implement. */
        c->v[SRV_C_error_400]++;
        return error_response(opt, &m, 400, fingerprint, out, outcap);
    }
}
