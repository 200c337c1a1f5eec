/* stun_encode.c: STUN message encoding into a caller buffer, with a back-patched length. */
#include <string.h>

#include "stun.h"
#include "stun_internal.h"

void stun_enc_init(struct stun_enc *e, uint8_t *buf, size_t cap, uint16_t type,
                   const uint8_t tid[STUN_TID_LEN])
{
    e->buf = buf;
    e->cap = cap;
    e->len = 0;
    e->err = 0;
    e->pad = 0;
    if (cap < STUN_HEADER_LEN) {
        e->err = STUN_E_NO_SPACE;
        return;
    }
    wr16(buf, type & 0x3FFF);
    wr16(buf + 2, 0);
    wr32(buf + 4, STUN_MAGIC_COOKIE);
    memcpy(buf + 8, tid, STUN_TID_LEN);
    e->len = STUN_HEADER_LEN;
}

/* Reserve a type-length header and len value bytes (padded with zeros); returns where the
 * value goes, or NULL after setting the sticky error. */
static uint8_t *reserve(struct stun_enc *e, uint16_t type, size_t len)
{
    if (e->err) return NULL;
    size_t total = 4 + pad4(len);
    if (len > 0xFFFF || e->len + total > e->cap || e->len + total - STUN_HEADER_LEN > 0xFFFF) {
        e->err = STUN_E_NO_SPACE;
        return NULL;
    }
    uint8_t *p = e->buf + e->len;
    wr16(p, type);
    wr16(p + 2, (uint16_t)len);
    memset(p + 4 + len, e->pad, pad4(len) - len);
    e->len += total;
    wr16(e->buf + 2, (uint16_t)(e->len - STUN_HEADER_LEN));
    return p + 4;
}

void stun_enc_attr(struct stun_enc *e, uint16_t type, const void *val, size_t len)
{
    uint8_t *p = reserve(e, type, len);
    if (p && len && p != val) memmove(p, val, len); /* p == val: framed in place, no copy */
}

void stun_enc_u32(struct stun_enc *e, uint16_t type, uint32_t v)
{
    uint8_t *p = reserve(e, type, 4);
    if (p) wr32(p, v);
}

void stun_enc_u64(struct stun_enc *e, uint16_t type, uint64_t v)
{
    uint8_t *p = reserve(e, type, 8);
    if (!p) return;
    wr32(p, (uint32_t)(v >> 32));
    wr32(p + 4, (uint32_t)v);
}

void stun_enc_u8_rffu(struct stun_enc *e, uint16_t type, uint8_t v)
{
    stun_enc_u32(e, type, (uint32_t)v << 24);
}

void stun_enc_channel(struct stun_enc *e, uint16_t ch)
{
    stun_enc_u32(e, STUN_ATTR_CHANNEL_NUMBER, (uint32_t)ch << 16);
}

void stun_enc_even_port(struct stun_enc *e, bool reserve_next)
{
    uint8_t v = reserve_next ? 0x80 : 0;
    stun_enc_attr(e, STUN_ATTR_EVEN_PORT, &v, 1);
}

static void enc_addr(struct stun_enc *e, uint16_t type, const union stun_addr *a, bool xor)
{
    if (e->err) return;
    if (a->sa.sa_family == AF_INET) {
        uint8_t *p = reserve(e, type, 8);
        if (!p) return;
        uint16_t port = ntohs(a->v4.sin_port);
        uint32_t ip = ntohl(a->v4.sin_addr.s_addr);
        if (xor) {
            port ^= STUN_MAGIC_COOKIE >> 16;
            ip ^= STUN_MAGIC_COOKIE;
        }
        p[0] = 0;
        p[1] = STUN_FAMILY_IPV4;
        wr16(p + 2, port);
        wr32(p + 4, ip);
    } else if (a->sa.sa_family == AF_INET6) {
        uint8_t *p = reserve(e, type, 20);
        if (!p) return;
        uint16_t port = ntohs(a->v6.sin6_port);
        p[0] = 0;
        p[1] = STUN_FAMILY_IPV6;
        memcpy(p + 4, a->v6.sin6_addr.s6_addr, 16);
        if (xor) {
            port ^= STUN_MAGIC_COOKIE >> 16;
            uint8_t mask[16];
            wr32(mask, STUN_MAGIC_COOKIE);
            memcpy(mask + 4, e->buf + 8, STUN_TID_LEN);
            for (int i = 0; i < 16; i++)
                p[4 + i] ^= mask[i];
        }
        wr16(p + 2, port);
    } else {
        e->err = STUN_E_BAD_FAMILY;
    }
}

void stun_enc_addr(struct stun_enc *e, uint16_t type, const union stun_addr *a)
{
    enc_addr(e, type, a, false);
}

void stun_enc_xor_addr(struct stun_enc *e, uint16_t type, const union stun_addr *a)
{
    enc_addr(e, type, a, true);
}

/* ERROR-CODE and ADDRESS-ERROR-CODE share a layout: 2 bytes, class, number, reason. */
static void enc_code(struct stun_enc *e, uint16_t type, uint8_t first, int code, const char *reason)
{
    if (code < 300 || code > 699) {
        if (!e->err) e->err = STUN_E_BAD_VALUE;
        return;
    }
    if (!reason) reason = stun_error_reason(code);
    size_t rlen = strnlen(reason, STUN_MAX_TEXT_BYTES);
    uint8_t *p = reserve(e, type, 4 + rlen);
    if (!p) return;
    p[0] = first;
    p[1] = 0;
    p[2] = (uint8_t)(code / 100);
    p[3] = (uint8_t)(code % 100);
    memcpy(p + 4, reason, rlen);
}

void stun_enc_error(struct stun_enc *e, int code, const char *reason)
{
    enc_code(e, STUN_ATTR_ERROR_CODE, 0, code, reason);
}

void stun_enc_address_error(struct stun_enc *e, uint8_t family, int code, const char *reason)
{
    enc_code(e, STUN_ATTR_ADDRESS_ERROR_CODE, family, code, reason);
}

void stun_enc_unknown(struct stun_enc *e, const uint16_t *types, size_t n)
{
    uint8_t *p = reserve(e, STUN_ATTR_UNKNOWN_ATTRIBUTES, 2 * n);
    if (!p) return;
    for (size_t i = 0; i < n; i++)
        wr16(p + 2 * i, types[i]);
}

void stun_enc_icmp(struct stun_enc *e, uint8_t type, uint8_t code, uint32_t data)
{
    uint8_t *p = reserve(e, STUN_ATTR_ICMP, 8);
    if (!p) return;
    p[0] = p[1] = 0;
    p[2] = type;
    p[3] = code;
    wr32(p + 4, data);
}

void stun_enc_password_algorithm(struct stun_enc *e, uint16_t alg)
{
    stun_enc_u32(e, STUN_ATTR_PASSWORD_ALGORITHM, (uint32_t)alg << 16);
}

void stun_enc_password_algorithms(struct stun_enc *e, const uint16_t *algs, size_t n)
{
    uint8_t *p = reserve(e, STUN_ATTR_PASSWORD_ALGORITHMS, 4 * n);
    if (!p) return;
    for (size_t i = 0; i < n; i++)
        wr32(p + 4 * i, (uint32_t)algs[i] << 16);
}

int stun_enc_finish(const struct stun_enc *e)
{
    return e->err ? e->err : (int)e->len;
}
