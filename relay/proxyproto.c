/* proxyproto.c: the PROXY protocol v1/v2 header decoder (proxyproto.h). Pure: no I/O, no
 * clock, no heap. Written from haproxy's doc/proxy-protocol.txt (sections 2.1 and 2.2). */
#include "proxyproto.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

static const uint8_t v1_sig[6] = {'P', 'R', 'O', 'X', 'Y', ' '};
static const uint8_t v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                   0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

/* v2 address block sizes by family (2.2: 12 for INET, 36 for INET6, 216 for UNIX). */
#define V2_INET_LEN  12
#define V2_INET6_LEN 36
#define V2_UNIX_LEN  216

static void invalid(struct proxy_result *r, enum proxy_reason why)
{
    r->status = PROXY_INVALID;
    r->reason = why;
}

static bool prefix_of(const uint8_t *p, size_t len, const uint8_t *sig, size_t siglen)
{
    return memcmp(p, sig, len < siglen ? len : siglen) == 0;
}

static uint16_t be16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

/* ---- version 1: "PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n" ---- */

/* A decimal port: 1-5 digits, no leading zero (but "0"), at most 65535. */
static bool v1_port(const uint8_t *s, size_t n, uint16_t *out)
{
    if (n == 0 || n > 5 || (n > 1 && s[0] == '0')) return false;
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > 65535) return false;
    *out = (uint16_t)v;
    return true;
}

static bool v1_addr(const uint8_t *s, size_t n, int family, uint16_t port, union stun_addr *a)
{
    char text[INET6_ADDRSTRLEN];
    if (n == 0 || n >= sizeof(text)) return false;
    memcpy(text, s, n);
    text[n] = '\0';
    memset(a, 0, sizeof(*a));
    if (family == AF_INET) {
        if (inet_pton(AF_INET, text, &a->v4.sin_addr) != 1) return false;
        a->v4.sin_family = AF_INET;
        a->v4.sin_port = htons(port);
    } else {
        if (inet_pton(AF_INET6, text, &a->v6.sin6_addr) != 1) return false;
        a->v6.sin6_family = AF_INET6;
        a->v6.sin6_port = htons(port);
    }
    return true;
}

static void decode_v1(const uint8_t *p, size_t len, struct proxy_result *r)
{
    r->version = 1;
    /* The line: printable ASCII up to CR LF, within PROXY_V1_MAX bytes. */
    size_t cr = 0, lim = len < PROXY_V1_MAX ? len : PROXY_V1_MAX;
    while (cr < lim && p[cr] != '\r') {
        if (p[cr] < 0x20 || p[cr] > 0x7E) return invalid(r, PROXY_R_V1_SYNTAX);
        cr++;
    }
    if (cr == lim) {
        if (len >= PROXY_V1_MAX) return invalid(r, PROXY_R_V1_TOO_LONG);
        r->status = PROXY_NEED_MORE;
        return;
    }
    if (cr + 1 >= PROXY_V1_MAX) return invalid(r, PROXY_R_V1_TOO_LONG); /* no room for the LF */
    if (cr + 1 == len) {
        r->status = PROXY_NEED_MORE;
        return;
    }
    if (p[cr + 1] != '\n') return invalid(r, PROXY_R_V1_SYNTAX);
    r->consumed = cr + 2;

    /* Fields separated by single spaces: PROXY, protocol, then for TCP4/TCP6 four more. */
    const uint8_t *f[7];
    size_t fl[7], nf = 0, start = 0;
    for (size_t i = 0; i <= cr; i++) {
        if (i < cr && p[i] != ' ') continue;
        if (nf == 2 && fl[1] == 7 && memcmp(f[1], "UNKNOWN", 7) == 0) break;
        if (i == start || nf == 7) return invalid(r, PROXY_R_V1_SYNTAX); /* "  ", a trailing one */
        f[nf] = p + start;
        fl[nf++] = i - start;
        start = i + 1;
    }
    if (nf < 2) return invalid(r, PROXY_R_V1_SYNTAX);
    /* UNKNOWN: whatever follows up to CRLF is ignored; the connection's addresses are used. */
    if (fl[1] == 7 && memcmp(f[1], "UNKNOWN", 7) == 0) {
        r->local = true;
        r->status = PROXY_DONE;
        return;
    }
    int family;
    if (fl[1] == 4 && memcmp(f[1], "TCP4", 4) == 0)
        family = AF_INET;
    else if (fl[1] == 4 && memcmp(f[1], "TCP6", 4) == 0)
        family = AF_INET6;
    else
        return invalid(r, PROXY_R_V1_PROTOCOL);
    if (nf != 6) return invalid(r, PROXY_R_V1_SYNTAX);
    uint16_t sport, dport;
    if (!v1_port(f[4], fl[4], &sport) || !v1_port(f[5], fl[5], &dport))
        return invalid(r, PROXY_R_V1_PORT);
    if (!v1_addr(f[2], fl[2], family, sport, &r->src) ||
        !v1_addr(f[3], fl[3], family, dport, &r->dst))
        return invalid(r, PROXY_R_V1_ADDRESS);
    r->status = PROXY_DONE;
}

/* ---- version 2: the 12-byte signature, then ver/cmd, fam/proto, length, addresses, TLVs ---- */

static void decode_v2(const uint8_t *p, size_t len, struct proxy_result *r)
{
    r->version = 2;
    if (len < PROXY_V2_FIXED) {
        r->status = PROXY_NEED_MORE;
        return;
    }
    unsigned ver = p[12] >> 4, cmd = p[12] & 0x0F, fam = p[13] >> 4, proto = p[13] & 0x0F;
    size_t alen = be16(p + 14);
    if (ver != 2) return invalid(r, PROXY_R_V2_VERSION);
    if (cmd > 1) return invalid(r, PROXY_R_V2_COMMAND);
    /* LOCAL (cmd 0): the proxy's own connection (a health check); the family, protocol and
     * address block are to be ignored whatever they say. */
    if (cmd == 1) {
        if (fam > 3) return invalid(r, PROXY_R_V2_FAMILY);
        if (proto > 2 || ((fam == 1 || fam == 2) && proto != 1))
            return invalid(r, PROXY_R_V2_PROTOCOL); /* a relay's TCP listener: TCP only */
        size_t want = fam == 1 ? V2_INET_LEN : fam == 2 ? V2_INET6_LEN : fam == 3 ? V2_UNIX_LEN : 0;
        if (alen < want) return invalid(r, PROXY_R_V2_LENGTH);
    }
    size_t total = PROXY_V2_FIXED + alen;
    if (len < total) {
        r->status = PROXY_NEED_MORE;
        r->need = total;
        return;
    }
    r->consumed = total; /* TLVs after the addresses are skipped: nothing here needs them */
    r->status = PROXY_DONE;
    const uint8_t *a = p + PROXY_V2_FIXED;
    if (cmd == 0 || fam == 0 || fam == 3) { /* no IP addresses: the connection's own are used */
        r->local = true;
        return;
    }
    memset(&r->src, 0, sizeof(r->src));
    memset(&r->dst, 0, sizeof(r->dst));
    if (fam == 1) {
        r->src.v4.sin_family = r->dst.v4.sin_family = AF_INET;
        memcpy(&r->src.v4.sin_addr, a, 4);
        memcpy(&r->dst.v4.sin_addr, a + 4, 4);
        memcpy(&r->src.v4.sin_port, a + 8, 2); /* both in network order already */
        memcpy(&r->dst.v4.sin_port, a + 10, 2);
    } else {
        r->src.v6.sin6_family = r->dst.v6.sin6_family = AF_INET6;
        memcpy(&r->src.v6.sin6_addr, a, 16);
        memcpy(&r->dst.v6.sin6_addr, a + 16, 16);
        memcpy(&r->src.v6.sin6_port, a + 32, 2);
        memcpy(&r->dst.v6.sin6_port, a + 34, 2);
    }
}

void proxy_decode(const uint8_t *p, size_t len, struct proxy_result *r)
{
    memset(r, 0, sizeof(*r));
    if (len == 0) {
        r->status = PROXY_NEED_MORE;
        return;
    }
    /* The first byte tells them apart ('P' or CR); a prefix of either signature is kept. */
    if (prefix_of(p, len, v1_sig, sizeof(v1_sig))) {
        if (len < sizeof(v1_sig)) {
            r->status = PROXY_NEED_MORE;
            r->version = 1;
            return;
        }
        decode_v1(p, len, r);
    } else if (prefix_of(p, len, v2_sig, sizeof(v2_sig))) {
        if (len < sizeof(v2_sig)) {
            r->status = PROXY_NEED_MORE;
            r->version = 2;
            return;
        }
        decode_v2(p, len, r);
    } else {
        invalid(r, PROXY_R_SIGNATURE);
    }
}

const char *proxy_reason_name(enum proxy_reason r)
{
    static const char *const names[PROXY_R_COUNT] = {
        [PROXY_R_NONE] = "none",
        [PROXY_R_SIGNATURE] = "bad_signature",
        [PROXY_R_V1_TOO_LONG] = "v1_too_long",
        [PROXY_R_V1_SYNTAX] = "v1_syntax",
        [PROXY_R_V1_PROTOCOL] = "v1_protocol",
        [PROXY_R_V1_ADDRESS] = "v1_address",
        [PROXY_R_V1_PORT] = "v1_port",
        [PROXY_R_V2_VERSION] = "v2_version",
        [PROXY_R_V2_COMMAND] = "v2_command",
        [PROXY_R_V2_FAMILY] = "v2_family",
        [PROXY_R_V2_PROTOCOL] = "v2_protocol",
        [PROXY_R_V2_LENGTH] = "v2_length",
    };
    return (unsigned)r < PROXY_R_COUNT ? names[r] : "?";
}
