/* stun_decode.c: STUN message decoding into views, and the typed attribute readers. */
#include <string.h>

#include "stun.h"
#include "stun_internal.h"

bool stun_is_message(const uint8_t *buf, size_t len)
{
    if (len < STUN_HEADER_LEN || (buf[0] & 0xC0) != 0) return false;
    if (rd32(buf + 4) != STUN_MAGIC_COOKIE) return false;
    size_t body = rd16(buf + 2);
    return (body & 3) == 0 && STUN_HEADER_LEN + body == len;
}

/* Where we are relative to the integrity and fingerprint attributes (RFC 8489 14.5-14.7). */
enum tail_state { BODY, AFTER_MI, AFTER_MI256, AFTER_FINGERPRINT };

static int check_length(uint16_t type, uint16_t len)
{
    const struct stun_attr_spec *s = stun_attr_spec(type);
    if (!s) return 0; /* unknown types: any length */
    if (len < s->min || len > s->max || len % s->align) return STUN_E_ATTR_LENGTH;
    if (s->addr && len != 8 && len != 20) return STUN_E_ATTR_LENGTH;
    return 0;
}

int stun_decode(struct stun_msg *m, const uint8_t *buf, size_t len)
{
    m->buf = buf;
    m->type = 0;
    m->len = 0;
    m->tid = NULL;
    m->nattrs = 0;
    m->nunknown = 0;
    m->integrity = m->integrity_sha256 = m->fingerprint = -1;

    if (len < STUN_HEADER_LEN) return STUN_E_TRUNCATED;
    if ((buf[0] & 0xC0) != 0) return STUN_E_NOT_STUN;
    if (rd32(buf + 4) != STUN_MAGIC_COOKIE) return STUN_E_BAD_COOKIE;
    uint16_t body = rd16(buf + 2);
    if (body & 3) return STUN_E_BAD_LENGTH;
    /* The caller passes exactly one message: a datagram, or one frame of a stream. */
    if ((size_t)STUN_HEADER_LEN + body != len) return STUN_E_BAD_LENGTH;

    /* The header is sound: publish type and transaction ID so a broken request can
     * still get its 400. */
    m->type = rd16(buf);
    m->len = body;
    m->tid = buf + 8;

    const uint8_t *p = buf + STUN_HEADER_LEN;
    const uint8_t *end = buf + len;
    enum tail_state state = BODY;
    while (p < end) {
        if (end - p < 4) return STUN_E_ATTR_TRUNCATED;
        uint16_t type = rd16(p);
        uint16_t alen = rd16(p + 2);
        size_t room = (size_t)(end - p) - 4;
        if (pad4(alen) > room) return STUN_E_ATTR_TRUNCATED;
        const uint8_t *val = p + 4;
        p += 4 + pad4(alen);

        if (state == AFTER_FINGERPRINT) return STUN_E_AFTER_FINGERPRINT;
        bool keep;
        int16_t *slot = NULL;
        if (type == STUN_ATTR_FINGERPRINT) {
            keep = true;
            slot = &m->fingerprint;
            state = AFTER_FINGERPRINT;
        } else if (state == AFTER_MI256) {
            keep = false; /* only FINGERPRINT counts after MESSAGE-INTEGRITY-SHA256 */
        } else if (type == STUN_ATTR_MESSAGE_INTEGRITY_SHA256) {
            keep = true;
            slot = &m->integrity_sha256;
            state = AFTER_MI256;
        } else if (state == AFTER_MI) {
            keep = false; /* RFC 8489 14.5: ignore what follows MESSAGE-INTEGRITY */
        } else if (type == STUN_ATTR_MESSAGE_INTEGRITY) {
            keep = true;
            slot = &m->integrity;
            state = AFTER_MI;
        } else {
            keep = true;
        }
        if (!keep) continue;

        int rc = check_length(type, alen);
        if (rc) return rc;
        if (m->nattrs == STUN_MAX_ATTRS) return STUN_E_TOO_MANY_ATTRS;
        if (!stun_attr_spec(type) && stun_attr_required(type) && m->nunknown < STUN_MAX_UNKNOWN) {
            bool seen = false;
            for (unsigned i = 0; i < m->nunknown; i++)
                seen |= m->unknown[i] == type;
            if (!seen) m->unknown[m->nunknown++] = type;
        }
        if (slot) *slot = (int16_t)m->nattrs;
        m->attrs[m->nattrs++] = (struct stun_attr){.type = type, .len = alen, .val = val};
    }
    return 0;
}

const struct stun_attr *stun_find(const struct stun_msg *m, uint16_t type)
{
    for (unsigned i = 0; i < m->nattrs; i++)
        if (m->attrs[i].type == type) return &m->attrs[i];
    return NULL;
}

const struct stun_attr *stun_find_next(const struct stun_msg *m, const struct stun_attr *prev)
{
    const struct stun_attr *end = m->attrs + m->nattrs;
    for (const struct stun_attr *a = prev + 1; a < end; a++)
        if (a->type == prev->type) return a;
    return NULL;
}

/* (XOR-)MAPPED-ADDRESS layout: reserved, family, port, address (RFC 8489 14.1-14.2). */
static int get_addr(const struct stun_attr *a, const uint8_t *tid, union stun_addr *out)
{
    if (a->len < 4) return STUN_E_BAD_VALUE;
    uint8_t family = a->val[1];
    uint16_t port = rd16(a->val + 2);
    if (tid) port ^= STUN_MAGIC_COOKIE >> 16;
    memset(out, 0, sizeof(*out));
    if (family == STUN_FAMILY_IPV4) {
        if (a->len != 8) return STUN_E_BAD_VALUE;
        uint32_t ip = rd32(a->val + 4);
        if (tid) ip ^= STUN_MAGIC_COOKIE;
        out->v4.sin_family = AF_INET;
        out->v4.sin_port = htons(port);
        out->v4.sin_addr.s_addr = htonl(ip);
        return 0;
    }
    if (family == STUN_FAMILY_IPV6) {
        if (a->len != 20) return STUN_E_BAD_VALUE;
        uint8_t *ip = out->v6.sin6_addr.s6_addr;
        memcpy(ip, a->val + 4, 16);
        if (tid) {
            uint8_t mask[16];
            wr32(mask, STUN_MAGIC_COOKIE);
            memcpy(mask + 4, tid, STUN_TID_LEN);
            for (int i = 0; i < 16; i++)
                ip[i] ^= mask[i];
        }
        out->v6.sin6_family = AF_INET6;
        out->v6.sin6_port = htons(port);
        return 0;
    }
    return STUN_E_BAD_FAMILY;
}

int stun_get_addr(const struct stun_attr *a, union stun_addr *out)
{
    return get_addr(a, NULL, out);
}

int stun_get_xor_addr(const struct stun_msg *m, const struct stun_attr *a, union stun_addr *out)
{
    return get_addr(a, m->tid, out);
}

int stun_get_u32(const struct stun_attr *a, uint32_t *out)
{
    if (a->len != 4) return STUN_E_BAD_VALUE;
    *out = rd32(a->val);
    return 0;
}

int stun_get_u64(const struct stun_attr *a, uint64_t *out)
{
    if (a->len != 8) return STUN_E_BAD_VALUE;
    *out = (uint64_t)rd32(a->val) << 32 | rd32(a->val + 4);
    return 0;
}

int stun_get_error(const struct stun_attr *a, int *code, const char **reason, size_t *reason_len)
{
    if (a->len < 4) return STUN_E_BAD_VALUE;
    int cls = a->val[2] & 0x07, num = a->val[3];
    if (cls < 3 || cls > 6 || num > 99) return STUN_E_BAD_VALUE;
    *code = cls * 100 + num;
    *reason = (const char *)a->val + 4;
    *reason_len = a->len - 4u;
    return 0;
}

int stun_get_channel(const struct stun_attr *a, uint16_t *ch)
{
    if (a->len != 4) return STUN_E_BAD_VALUE;
    *ch = rd16(a->val);
    return 0;
}

int stun_get_transport(const struct stun_attr *a, uint8_t *proto)
{
    if (a->len != 4) return STUN_E_BAD_VALUE;
    *proto = a->val[0];
    return 0;
}

int stun_get_family(const struct stun_attr *a, uint8_t *family)
{
    if (a->len != 4) return STUN_E_BAD_VALUE;
    *family = a->val[0];
    return 0;
}

int stun_get_even_port(const struct stun_attr *a, bool *reserve)
{
    if (a->len != 1) return STUN_E_BAD_VALUE;
    *reserve = (a->val[0] & 0x80) != 0;
    return 0;
}

int stun_get_unknown(const struct stun_attr *a, uint16_t *types, size_t max, size_t *n)
{
    if (a->len % 2) return STUN_E_BAD_VALUE;
    size_t count = a->len / 2u;
    if (count > max) count = max;
    for (size_t i = 0; i < count; i++)
        types[i] = rd16(a->val + 2 * i);
    *n = count;
    return 0;
}

int stun_get_address_error(const struct stun_attr *a, uint8_t *family, int *code,
                           const char **reason, size_t *reason_len)
{
    if (a->len < 4) return STUN_E_BAD_VALUE;
    int cls = a->val[2] & 0x07, num = a->val[3];
    if (cls < 3 || cls > 6 || num > 99) return STUN_E_BAD_VALUE;
    *family = a->val[0];
    *code = cls * 100 + num;
    *reason = (const char *)a->val + 4;
    *reason_len = a->len - 4u;
    return 0;
}

int stun_get_icmp(const struct stun_attr *a, uint8_t *type, uint8_t *code, uint32_t *data)
{
    if (a->len != 8) return STUN_E_BAD_VALUE;
    *type = a->val[2];
    *code = a->val[3];
    *data = rd32(a->val + 4);
    return 0;
}

int stun_get_password_algorithm(const struct stun_attr *a, uint16_t *alg, const uint8_t **params,
                                uint16_t *plen)
{
    if (a->len < 4) return STUN_E_BAD_VALUE;
    uint16_t n = rd16(a->val + 2);
    if ((size_t)4 + n > a->len) return STUN_E_BAD_VALUE;
    *alg = rd16(a->val);
    *params = a->val + 4;
    *plen = n;
    return 0;
}

int stun_next_password_algorithm(const struct stun_attr *a, size_t *off, uint16_t *alg,
                                 const uint8_t **params, uint16_t *plen)
{
    if (*off >= a->len) return 0;
    size_t left = a->len - *off;
    if (left < 4) return STUN_E_BAD_VALUE;
    const uint8_t *p = a->val + *off;
    uint16_t n = rd16(p + 2);
    if (4 + pad4(n) > left) return STUN_E_BAD_VALUE;
    *alg = rd16(p);
    *params = p + 4;
    *plen = n;
    *off += 4 + pad4(n);
    return 1;
}
