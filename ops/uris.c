/* uris.c: listener TURN URIs and REST credential minting, shared by ternctl and the admin API. */
#include "uris.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

static bool is_wildcard(const union stun_addr *a)
{
    if (a->sa.sa_family == AF_INET) return a->v4.sin_addr.s_addr == htonl(INADDR_ANY);
    if (a->sa.sa_family == AF_INET6) return IN6_IS_ADDR_UNSPECIFIED(&a->v6.sin6_addr);
    return true;
}

static bool is_ip(const union stun_addr *a)
{
    return a->sa.sa_family == AF_INET || a->sa.sa_family == AF_INET6;
}

static uint16_t port_of(const union stun_addr *a)
{
    return ntohs(a->sa.sa_family == AF_INET6 ? a->v6.sin6_port : a->v4.sin_port);
}

/* The address as a URI host: IPv6 in brackets. */
static void uri_host(const union stun_addr *a, char *out, size_t len)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (a->sa.sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &a->v6.sin6_addr, ip, sizeof ip);
        snprintf(out, len, "[%s]", ip);
    } else {
        inet_ntop(AF_INET, &a->v4.sin_addr, ip, sizeof ip);
        snprintf(out, len, "%s", ip);
    }
}

/* A host name usable in a URI and in JSON as is: letters, digits, '-', '.', '_'. */
static bool plain_host_name(const char *h)
{
    if (!*h) return false;
    for (; *h; h++) {
        char c = *h;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.' || c == '_'))
            return false;
    }
    return true;
}

int ops_listener_uris(const struct tern_config *cfg, struct ops_uris *u, char err[OPS_ERR_LEN])
{
    char hostname[OPS_HOST_LEN] = "";
    u->n = 0;
    err[0] = '\0';
    for (size_t i = 0; i < cfg->nlisten; i++) {
        const struct cfg_listen *l = &cfg->listen[i];
        uint16_t port = port_of(&l->addr);
        if (port == 0) continue; /* kernel-chosen: no client can be told it from the config */
        char host[OPS_HOST_LEN];
        if (is_ip(&cfg->relay_external))
            uri_host(&cfg->relay_external, host, sizeof host);
        else if (!is_wildcard(&l->addr))
            uri_host(&l->addr, host, sizeof host);
        else {
            if (!hostname[0]) {
                if (gethostname(hostname, sizeof hostname - 1) != 0 || !hostname[0]) {
                    snprintf(err, OPS_ERR_LEN,
                             "listen[%zu] is a wildcard address and the host "
                             "name is unknown (%s); set relay.external_address",
                             i, strerror(errno));
                    return -1;
                }
                hostname[sizeof hostname - 1] = '\0';
                if (!plain_host_name(hostname)) {
                    snprintf(err, OPS_ERR_LEN,
                             "listen[%zu] is a wildcard address and the host "
                             "name is not a plain DNS name; set relay.external_address",
                             i);
                    return -1;
                }
            }
            snprintf(host, sizeof host, "%s", hostname);
        }
        /* tcp+tls serves both on one port: turn: and turns: (RFC 7065), plain first. */
        /* dtls: turns: over UDP (RFC 7350 4.2). */
        int first = l->transport == CFG_TLS || l->transport == CFG_DTLS ? 1 : 0,
            last = cfg_transport_cert(l->transport) ? 1 : 0;
        for (int tls = first; tls <= last; tls++) {
            char uri[OPS_URI_LEN];
            snprintf(uri, sizeof uri, "%s:%s:%u?transport=%s", tls ? "turns" : "turn", host,
                     (unsigned)port, cfg_transport_dgram(l->transport) ? "udp" : "tcp");
            bool dup = false;
            for (size_t k = 0; k < u->n && !dup; k++)
                dup = strcmp(u->v[k], uri) == 0;
            if (!dup && u->n < OPS_MAX_URIS) memcpy(u->v[u->n++], uri, sizeof uri);
        }
    }
    return 0;
}

struct newest {
    struct store_secret best;
    bool found;
};

static int newest_fn(void *ctx, const struct store_secret *sec)
{
    struct newest *n = ctx;
    if (!n->found || sec->created > n->best.created ||
        (sec->created == n->best.created && sec->id > n->best.id)) {
        n->best = *sec;
        n->found = true;
    }
    return 0;
}

int ops_newest_db_secret(struct store *s, char out[STORE_MAX_SECRET + 1], char err[OPS_ERR_LEN])
{
    struct newest n = {.found = false};
    char serr[STORE_ERR_LEN] = "";
    int rc = OPS_OK;
    err[0] = '\0';
    if (store_secret_each(s, newest_fn, &n, serr) != STORE_OK) {
        snprintf(err, OPS_ERR_LEN, "%s", serr[0] ? serr : "reading the secrets failed");
        rc = OPS_FAILED;
    } else if (!n.found)
        rc = OPS_NO_SECRET;
    else
        memcpy(out, n.best.secret, STORE_MAX_SECRET + 1);
    OPENSSL_cleanse(&n, sizeof n);
    if (rc != OPS_OK) OPENSSL_cleanse(out, STORE_MAX_SECRET + 1);
    return rc;
}

int ops_mint_credential(const char *secret, char sep, const char *user, uint64_t ttl, int64_t now,
                        enum auth_rest_mac mac, struct ops_credential *out)
{
    memset(out, 0, sizeof *out);
    if (now < 0 || ttl > (uint64_t)INT64_MAX - (uint64_t)now) return OPS_TOO_LONG;
    out->expiry = (uint64_t)now + ttl;
    int ulen =
        snprintf(out->username, sizeof out->username, "%" PRIu64 "%c%s", out->expiry, sep, user);
    if (ulen < 0 || (size_t)ulen >= sizeof out->username) {
        memset(out, 0, sizeof *out);
        return OPS_TOO_LONG;
    }
    size_t plen = auth_rest_password(mac, (const uint8_t *)secret, strlen(secret),
                                     (const uint8_t *)out->username, (size_t)ulen, out->password);
    if (plen == 0) {
        OPENSSL_cleanse(out, sizeof *out);
        return OPS_FAILED;
    }
    out->password[plen] = '\0';
    return OPS_OK;
}

size_t ops_utf8_seq(const unsigned char *s)
{
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t n;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F; /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else
        return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xBF) return 0;
    return n;
}

json_t *ops_json_text(const char *s)
{
    json_t *j = json_string(s);
    if (j) return j;
    size_t n = strlen(s), o = 0;
    char *buf = malloc(3 * n + 1);
    if (!buf) return NULL;
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t k = ops_utf8_seq(u + i);
        if (k == 0) {
            memcpy(buf + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        } else {
            memcpy(buf + o, u + i, k);
            o += k;
            i += k;
        }
    }
    buf[o] = '\0';
    j = json_string(buf);
    OPENSSL_cleanse(buf, o);
    free(buf);
    return j;
}

/* The code point of a valid UTF-8 sequence of n bytes. */
static unsigned utf8_cp(const unsigned char *s, size_t n)
{
    if (n == 1) return s[0];
    unsigned cp = s[0] & (0xFFu >> (n + 1));
    for (size_t i = 1; i < n; i++)
        cp = cp << 6 | (s[i] & 0x3Fu);
    return cp;
}

/* C1 controls and the bidirectional marks, overrides and isolates: invisible, and able to
 * reorder what a terminal shows. */
static bool invisible_cp(unsigned cp)
{
    return (cp >= 0x80 && cp <= 0x9F) || cp == 0x200E || cp == 0x200F ||
           (cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069);
}

int ops_name_refused(const char *name, char why[OPS_ERR_LEN])
{
    const unsigned char *s = (const unsigned char *)name;
    for (size_t i = 0; s[i];) {
        size_t n = ops_utf8_seq(s + i);
        unsigned cp = n ? utf8_cp(s + i, n) : 0x100;
        if (cp < 0x20 || cp == 0x7F || (n == 2 && cp <= 0x9F)) {
            snprintf(why, OPS_ERR_LEN,
                     "the name holds a control character (U+%04X at byte %zu); names may not "
                     "contain control characters",
                     cp, i);
            return 1;
        }
        i += n ? n : 1;
    }
    return 0;
}

size_t ops_text_escape(const char *in, size_t len, char *out, size_t cap)
{
    const unsigned char *s = (const unsigned char *)in;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        char esc[8];
        size_t n = ops_utf8_seq(s + i);
        if (n == 0 || i + n > len) {
            n = 1;
            snprintf(esc, sizeof esc, "\\x%02X", s[i]);
        } else if (s[i] == '\\')
            snprintf(esc, sizeof esc, "\\\\");
        else if (s[i] == '\n')
            snprintf(esc, sizeof esc, "\\n");
        else if (s[i] == '\r')
            snprintf(esc, sizeof esc, "\\r");
        else if (s[i] == '\t')
            snprintf(esc, sizeof esc, "\\t");
        else if (s[i] < 0x20 || s[i] == 0x7F)
            snprintf(esc, sizeof esc, "\\x%02X", s[i]);
        else if (invisible_cp(utf8_cp(s + i, n)))
            snprintf(esc, sizeof esc, "\\u%04X", utf8_cp(s + i, n));
        else
            esc[0] = '\0';
        size_t k = esc[0] ? strlen(esc) : n;
        if (o + k >= cap) break;
        memcpy(out + o, esc[0] ? esc : (const char *)s + i, k);
        o += k;
        i += n;
    }
    if (cap) out[o] = '\0';
    return o;
}

char *ops_text_escaped(const char *s)
{
    size_t len = strlen(s), cap = 6 * len + 1;
    char *out = malloc(cap);
    if (out) ops_text_escape(s, len, out, cap);
    return out;
}
