/* fuzz_stun.c: libFuzzer target: stun_decode, every typed reader on every attribute, the
 * integrity and FINGERPRINT checks, and re-encodes (raw and typed) that must decode again. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "stun.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t fuzz_key[] = "fuzz-key-0123456789";
#define FUZZ_KEYLEN (sizeof(fuzz_key) - 1)

static uint8_t out_raw[STUN_MAX_MSG];
static uint8_t out_typed[STUN_MAX_MSG];

static void require(bool ok)
{
    if (!ok) abort();
}

/* Read every byte of a view so that the sanitizer checks it lies inside the input. */
static uint8_t touch(const uint8_t *p, size_t n)
{
    uint8_t x = 0;
    for (size_t i = 0; i < n; i++)
        x ^= p[i];
    return x;
}

static bool is_plain_addr(uint16_t t)
{
    return t == STUN_ATTR_MAPPED_ADDRESS || t == STUN_ATTR_ALTERNATE_SERVER ||
           t == STUN_ATTR_RESPONSE_ORIGIN || t == STUN_ATTR_OTHER_ADDRESS;
}

static bool is_xor_addr(uint16_t t)
{
    return t == STUN_ATTR_XOR_MAPPED_ADDRESS || t == STUN_ATTR_XOR_PEER_ADDRESS ||
           t == STUN_ATTR_XOR_RELAYED_ADDRESS;
}

/* Every reader on a, whatever its type; results checked for self-consistency only. */
static void exercise(const struct stun_msg *m, const struct stun_attr *a)
{
    static uint16_t types[32768];
    union stun_addr addr;
    uint32_t u32;
    uint64_t u64;
    int code;
    const char *reason;
    size_t rlen, n;
    uint16_t u16, alg, plen;
    uint8_t u8, fam, it, ic;
    const uint8_t *params;
    bool b;

    require(a->val >= m->buf + STUN_HEADER_LEN + 4);
    require(a->val + a->len <= m->buf + STUN_HEADER_LEN + m->len);
    (void)touch(a->val, a->len);
    (void)stun_attr_name(a->type);
    if (stun_get_addr(a, &addr) == 0)
        require((addr.sa.sa_family == AF_INET && a->len == 8) ||
                (addr.sa.sa_family == AF_INET6 && a->len == 20));
    if (stun_get_xor_addr(m, a, &addr) == 0)
        require(addr.sa.sa_family == AF_INET || addr.sa.sa_family == AF_INET6);
    if (stun_get_u32(a, &u32) == 0) require(a->len == 4);
    if (stun_get_u64(a, &u64) == 0) require(a->len == 8);
    if (stun_get_error(a, &code, &reason, &rlen) == 0) {
        require(code >= 300 && code <= 699);
        require((const uint8_t *)reason + rlen == a->val + a->len);
        (void)touch((const uint8_t *)reason, rlen);
    }
    if (stun_get_channel(a, &u16) == 0) require(a->len == 4);
    if (stun_get_transport(a, &u8) == 0) require(a->len == 4);
    if (stun_get_family(a, &fam) == 0) require(a->len == 4);
    if (stun_get_even_port(a, &b) == 0) require(a->len == 1);
    if (stun_get_unknown(a, types, sizeof(types) / sizeof(types[0]), &n) == 0)
        require(n == a->len / 2u);
    if (stun_get_unknown(a, types, 3, &n) == 0) require(n <= 3);
    if (stun_get_address_error(a, &fam, &code, &reason, &rlen) == 0) {
        require(code >= 300 && code <= 699);
        (void)touch((const uint8_t *)reason, rlen);
    }
    if (stun_get_icmp(a, &it, &ic, &u32) == 0) require(a->len == 8);
    if (stun_get_password_algorithm(a, &alg, &params, &plen) == 0) {
        require(params + plen <= a->val + a->len);
        (void)touch(params, plen);
    }
    size_t off = 0, count = 0;
    int rc;
    while ((rc = stun_next_password_algorithm(a, &off, &alg, &params, &plen)) == 1) {
        require(params >= a->val && params + plen <= a->val + a->len);
        require(off <= a->len);
        (void)touch(params, plen);
        require(++count <= a->len / 4u);
    }
    require(rc == 0 || rc == STUN_E_BAD_VALUE);
}

/* PASSWORD-ALGORITHMS the typed encoder can reproduce: every entry without parameters. */
static bool simple_algs(const struct stun_attr *a, uint16_t *algs, size_t *n)
{
    size_t off = 0;
    uint16_t alg, plen;
    const uint8_t *params;
    int rc;
    *n = 0;
    while ((rc = stun_next_password_algorithm(a, &off, &alg, &params, &plen)) == 1) {
        if (plen) return false;
        algs[(*n)++] = alg;
    }
    return rc == 0 && *n > 0;
}

/* Copy an ERROR-CODE reason into a C string (the encoder takes one; it stops at a NUL). */
static const char *cstr(const char *reason, size_t rlen, char *buf)
{
    memcpy(buf, reason, rlen);
    buf[rlen] = 0;
    return buf;
}

/* Encode a with the typed encoder for its type when its reader accepts it, else raw. */
static void encode_typed(struct stun_enc *e, const struct stun_msg *m, const struct stun_attr *a)
{
    static uint16_t list[32768];
    char text[STUN_MAX_TEXT_BYTES + 1];
    union stun_addr addr;
    uint32_t u32;
    uint64_t u64;
    int code;
    const char *reason;
    size_t rlen, n;
    uint16_t u16, alg, plen;
    uint8_t u8, it, ic;
    const uint8_t *params;
    bool b;
    uint16_t t = a->type;

    if (t == STUN_ATTR_MESSAGE_INTEGRITY)
        stun_enc_integrity(e, fuzz_key, FUZZ_KEYLEN);
    else if (t == STUN_ATTR_MESSAGE_INTEGRITY_SHA256)
        stun_enc_integrity_sha256(e, fuzz_key, FUZZ_KEYLEN);
    else if (t == STUN_ATTR_FINGERPRINT)
        stun_enc_fingerprint(e);
    else if (is_plain_addr(t) && stun_get_addr(a, &addr) == 0)
        stun_enc_addr(e, t, &addr);
    else if (is_xor_addr(t) && stun_get_xor_addr(m, a, &addr) == 0)
        stun_enc_xor_addr(e, t, &addr);
    else if (t == STUN_ATTR_ERROR_CODE && stun_get_error(a, &code, &reason, &rlen) == 0)
        stun_enc_error(e, code, cstr(reason, rlen, text));
    else if (t == STUN_ATTR_ADDRESS_ERROR_CODE &&
             stun_get_address_error(a, &u8, &code, &reason, &rlen) == 0)
        stun_enc_address_error(e, u8, code, cstr(reason, rlen, text));
    else if (t == STUN_ATTR_UNKNOWN_ATTRIBUTES && stun_get_unknown(a, list, 32768, &n) == 0)
        stun_enc_unknown(e, list, n);
    else if (t == STUN_ATTR_CHANNEL_NUMBER && stun_get_channel(a, &u16) == 0)
        stun_enc_channel(e, u16);
    else if ((t == STUN_ATTR_LIFETIME || t == STUN_ATTR_PRIORITY || t == STUN_ATTR_CONNECTION_ID) &&
             stun_get_u32(a, &u32) == 0)
        stun_enc_u32(e, t, u32);
    else if ((t == STUN_ATTR_RESERVATION_TOKEN || t == STUN_ATTR_ICE_CONTROLLED ||
              t == STUN_ATTR_ICE_CONTROLLING) &&
             stun_get_u64(a, &u64) == 0)
        stun_enc_u64(e, t, u64);
    else if (t == STUN_ATTR_REQUESTED_TRANSPORT && stun_get_transport(a, &u8) == 0)
        stun_enc_u8_rffu(e, t, u8);
    else if ((t == STUN_ATTR_REQUESTED_ADDRESS_FAMILY ||
              t == STUN_ATTR_ADDITIONAL_ADDRESS_FAMILY) &&
             stun_get_family(a, &u8) == 0)
        stun_enc_u8_rffu(e, t, u8);
    else if (t == STUN_ATTR_EVEN_PORT && stun_get_even_port(a, &b) == 0)
        stun_enc_even_port(e, b);
    else if (t == STUN_ATTR_ICMP && stun_get_icmp(a, &it, &ic, &u32) == 0)
        stun_enc_icmp(e, it, ic, u32);
    else if (t == STUN_ATTR_PASSWORD_ALGORITHM &&
             stun_get_password_algorithm(a, &alg, &params, &plen) == 0 && plen == 0)
        stun_enc_password_algorithm(e, alg);
    else if (t == STUN_ATTR_PASSWORD_ALGORITHMS && simple_algs(a, list, &n))
        stun_enc_password_algorithms(e, list, n);
    else
        stun_enc_attr(e, t, a->val, a->len);
}

/* The typed re-encoding of a (in m) carries what a's readers saw (b in m2). */
static void compare_typed(const struct stun_msg *m, const struct stun_attr *a,
                          const struct stun_msg *m2, const struct stun_attr *b)
{
    static uint16_t l1[32768], l2[32768];
    union stun_addr x, y;
    int c1, c2;
    const char *r1, *r2;
    size_t n1, n2;
    uint8_t f1, f2;
    uint16_t t = a->type;

    require(a->type == b->type);
    if (t == STUN_ATTR_MESSAGE_INTEGRITY || t == STUN_ATTR_MESSAGE_INTEGRITY_SHA256 ||
        t == STUN_ATTR_FINGERPRINT)
        return; /* recomputed, checked by the caller */
    if (is_plain_addr(t) && stun_get_addr(a, &x) == 0) {
        require(stun_get_addr(b, &y) == 0 && addr_equal(&x, &y));
        return;
    }
    if (is_xor_addr(t) && stun_get_xor_addr(m, a, &x) == 0) {
        require(stun_get_xor_addr(m2, b, &y) == 0 && addr_equal(&x, &y));
        return;
    }
    if (t == STUN_ATTR_ERROR_CODE && stun_get_error(a, &c1, &r1, &n1) == 0) {
        require(stun_get_error(b, &c2, &r2, &n2) == 0 && c1 == c2);
        require(n2 == strnlen(r1, n1) && memcmp(r1, r2, n2) == 0);
        return;
    }
    if (t == STUN_ATTR_ADDRESS_ERROR_CODE && stun_get_address_error(a, &f1, &c1, &r1, &n1) == 0) {
        require(stun_get_address_error(b, &f2, &c2, &r2, &n2) == 0 && c1 == c2 && f1 == f2);
        require(n2 == strnlen(r1, n1) && memcmp(r1, r2, n2) == 0);
        return;
    }
    if (t == STUN_ATTR_UNKNOWN_ATTRIBUTES && stun_get_unknown(a, l1, 32768, &n1) == 0) {
        require(stun_get_unknown(b, l2, 32768, &n2) == 0 && n1 == n2);
        require(memcmp(l1, l2, n1 * sizeof(l1[0])) == 0);
        return;
    }
    if (t == STUN_ATTR_CHANNEL_NUMBER || t == STUN_ATTR_REQUESTED_TRANSPORT ||
        t == STUN_ATTR_REQUESTED_ADDRESS_FAMILY || t == STUN_ATTR_ADDITIONAL_ADDRESS_FAMILY) {
        /* The typed encoders zero the RFFU bytes: compare the meaningful ones. */
        size_t keep = t == STUN_ATTR_CHANNEL_NUMBER ? 2 : 1;
        require(a->len == 4 && b->len == 4 && memcmp(a->val, b->val, keep) == 0);
        return;
    }
    uint16_t alg1, alg2, plen1, plen2;
    const uint8_t *p1, *p2;
    if (t == STUN_ATTR_PASSWORD_ALGORITHM &&
        stun_get_password_algorithm(a, &alg1, &p1, &plen1) == 0 && plen1 == 0) {
        require(stun_get_password_algorithm(b, &alg2, &p2, &plen2) == 0);
        require(alg1 == alg2 && plen2 == 0 && b->len == 4);
        return;
    }
    if (t == STUN_ATTR_EVEN_PORT && a->len == 1) {
        require(b->len == 1 && (a->val[0] & 0x80) == b->val[0]);
        return;
    }
    if (t == STUN_ATTR_ICMP && a->len == 8) {
        require(b->len == 8 && memcmp(a->val + 2, b->val + 2, 6) == 0);
        return;
    }
    if (t == STUN_ATTR_PASSWORD_ALGORITHMS && simple_algs(a, l1, &n1)) {
        require(simple_algs(b, l2, &n2) && n1 == n2 && memcmp(l1, l2, n1 * sizeof(l1[0])) == 0);
        return;
    }
    /* Raw (and u32/u64, which are the raw bytes). */
    require(a->len == b->len && memcmp(a->val, b->val, a->len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *buf = malloc(size);
    if (!buf) return 0;
    memcpy(buf, data, size);

    struct stun_msg m;
    int rc = stun_decode(&m, buf, size);
    bool header_ok = rc == 0 || (rc != STUN_E_TRUNCATED && rc != STUN_E_NOT_STUN &&
                                 rc != STUN_E_BAD_COOKIE && rc != STUN_E_BAD_LENGTH);
    require(stun_is_message(buf, size) == header_ok);
    require(rc <= 0 && (rc == 0 || strcmp(stun_errname(rc), "UNKNOWN") != 0));
    if (header_ok) {
        require(m.tid == buf + 8);
        require(m.type == (uint16_t)(buf[0] << 8 | buf[1]));
    } else {
        require(m.tid == NULL);
    }
    if (rc != 0) {
        free(buf);
        return 0;
    }

    require(m.nattrs <= STUN_MAX_ATTRS && m.nunknown <= STUN_MAX_UNKNOWN);
    for (unsigned i = 0; i < m.nattrs; i++) {
        const struct stun_attr *a = &m.attrs[i];
        exercise(&m, a);
        require(stun_find(&m, a->type) <= a);
        const struct stun_attr *nx = stun_find_next(&m, a);
        require(!nx || (nx > a && nx->type == a->type));
    }
    for (unsigned i = 0; i < m.nunknown; i++) {
        require(stun_attr_required(m.unknown[i]) && !stun_attr_name(m.unknown[i]));
        require(stun_find(&m, m.unknown[i]) != NULL);
    }
    require(m.fingerprint < 0 || m.fingerprint == m.nattrs - 1);
    int fp = stun_check_fingerprint(&m);
    require(fp == 1 ? m.fingerprint < 0 : (fp == 0 || fp == STUN_E_BAD_FINGERPRINT));
    rc = stun_check_integrity(&m, fuzz_key, FUZZ_KEYLEN);
    require(m.integrity < 0 ? rc == STUN_E_NO_INTEGRITY : (rc == 0 || rc == STUN_E_BAD_INTEGRITY));
    rc = stun_check_integrity_sha256(&m, fuzz_key, FUZZ_KEYLEN);
    require(m.integrity_sha256 < 0 ? rc == STUN_E_NO_INTEGRITY
                                   : (rc == 0 || rc == STUN_E_BAD_INTEGRITY));

    /* Raw re-encode of the kept attributes: same attributes, in the same order. */
    struct stun_enc e;
    stun_enc_init(&e, out_raw, sizeof(out_raw), m.type, m.tid);
    for (unsigned i = 0; i < m.nattrs; i++)
        stun_enc_attr(&e, m.attrs[i].type, m.attrs[i].val, m.attrs[i].len);
    int n = stun_enc_finish(&e);
    require(n >= STUN_HEADER_LEN && (size_t)n <= size);
    struct stun_msg m2;
    require(stun_decode(&m2, out_raw, (size_t)n) == 0);
    require(m2.type == m.type && memcmp(m2.tid, m.tid, STUN_TID_LEN) == 0);
    require(m2.nattrs == m.nattrs && m2.nunknown == m.nunknown);
    require(m2.integrity == m.integrity && m2.integrity_sha256 == m.integrity_sha256 &&
            m2.fingerprint == m.fingerprint);
    require(memcmp(m2.unknown, m.unknown, m.nunknown * sizeof(m.unknown[0])) == 0);
    for (unsigned i = 0; i < m.nattrs; i++) {
        require(m2.attrs[i].type == m.attrs[i].type && m2.attrs[i].len == m.attrs[i].len);
        require(memcmp(m2.attrs[i].val, m.attrs[i].val, m.attrs[i].len) == 0);
    }

    /* Typed re-encode, with MI, MI-SHA256 and FINGERPRINT recomputed: they must verify. */
    stun_enc_init(&e, out_typed, sizeof(out_typed), m.type, m.tid);
    for (unsigned i = 0; i < m.nattrs; i++)
        encode_typed(&e, &m, &m.attrs[i]);
    n = stun_enc_finish(&e);
    if (n < 0) {
        /* Only possible if the recomputed MI-SHA256 (32 bytes) replaced a truncated one and
         * pushed the body past 65535 bytes. */
        require(n == STUN_E_NO_SPACE && m.integrity_sha256 >= 0);
    } else {
        struct stun_msg m3;
        rc = stun_decode(&m3, out_typed, (size_t)n);
        require(rc == 0);
        require(m3.nattrs == m.nattrs && m3.nunknown == m.nunknown);
        require(m3.integrity == m.integrity && m3.integrity_sha256 == m.integrity_sha256 &&
                m3.fingerprint == m.fingerprint);
        for (unsigned i = 0; i < m.nattrs; i++)
            compare_typed(&m, &m.attrs[i], &m3, &m3.attrs[i]);
        require(m3.integrity < 0 || stun_check_integrity(&m3, fuzz_key, FUZZ_KEYLEN) == 0);
        require(m3.integrity_sha256 < 0 ||
                stun_check_integrity_sha256(&m3, fuzz_key, FUZZ_KEYLEN) == 0);
        require(stun_check_fingerprint(&m3) == (m3.fingerprint < 0 ? 1 : 0));
    }
    free(buf);
    return 0;
}
