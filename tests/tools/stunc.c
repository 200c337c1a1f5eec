/* stunc.c: tern-stunc, the test suite's STUN client: sends Binding (or crafted) requests over
 * UDP or TCP and prints each answer as one line of key=value pairs. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "stun.h"

/* The stream the client speaks over: a plain socket, or TLS on it. */
static SSL *tls;

static ssize_t stream_send(int fd, const void *p, size_t n)
{
    if (tls) return SSL_write(tls, p, (int)n);
    return send(fd, p, n, MSG_NOSIGNAL);
}

static ssize_t stream_recv(int fd, void *p, size_t n)
{
    if (tls) return SSL_read(tls, p, (int)n);
    return recv(fd, p, n, 0);
}

/* TLS client handshake; the server certificate is checked against cafile when given. */
static int tls_start(int fd, const char *cafile, const char *host)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) return -1;
    if (cafile) {
        if (SSL_CTX_load_verify_locations(ctx, cafile, NULL) != 1) {
            fprintf(stderr, "tern-stunc: cannot load CA file %s\n", cafile);
            return -1;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    }
    tls = SSL_new(ctx);
    SSL_CTX_free(ctx); /* the SSL keeps its own reference */
    if (!tls) return -1;
    SSL_set_fd(tls, fd);
    if (cafile) SSL_set1_host(tls, host);
    if (SSL_connect(tls) != 1) {
        char why[256];
        ERR_error_string_n(ERR_get_error(), why, sizeof(why));
        fprintf(stderr, "tern-stunc: TLS handshake failed: %s\n", why);
        return -1;
    }
    return 0;
}

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: tern-stunc [options] HOST PORT\n"
            "  -t udp|tcp|tls  transport (default udp)\n"
            "  -C CAFILE    TLS: verify the server certificate against this CA file\n"
            "  -f           add FINGERPRINT to the request\n"
            "  -m METHOD    method number (default 1, Binding)\n"
            "  -i           send an indication instead of a request\n"
            "  -u TYPE      add an attribute of this type (hex, e.g. 0x7777) with 4 zero bytes\n"
            "  -x HEX       send these raw bytes instead of a built message\n"
            "  -n COUNT     send COUNT requests (TCP: pipelined on one connection)\n"
            "  -w MS        wait this long for each answer (default 2000)\n"
            "  -e           expect no answer: exit 0 only if none arrives\n");
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int parse_hex(const char *s, uint8_t *out, size_t cap)
{
    size_t n = 0;
    while (s[0] && s[1]) {
        int hi = hexval(s[0]), lo = hexval(s[1]);
        if (hi < 0 || lo < 0 || n == cap) return -1;
        out[n++] = (uint8_t)(hi << 4 | lo);
        s += 2;
    }
    return s[0] ? -1 : (int)n;
}

static const char *class_name(enum stun_class c)
{
    static const char *const n[] = {"request", "indication", "success", "error"};
    return n[c & 3];
}

/* Print one answer; returns 0 if it decoded and matched the transaction. */
static int print_answer(const uint8_t *buf, size_t len, const uint8_t *tid)
{
    struct stun_msg m;
    int rc = stun_decode(&m, buf, len);
    if (rc) {
        printf("undecodable=%s len=%zu\n", stun_errname(rc), len);
        return 1;
    }
    printf("class=%s method=0x%03x", class_name(stun_class_of(m.type)), stun_method_of(m.type));
    if (tid && memcmp(m.tid, tid, STUN_TID_LEN) != 0) printf(" tid=mismatch");
    for (unsigned i = 0; i < m.nattrs; i++) {
        const struct stun_attr *a = &m.attrs[i];
        union stun_addr addr;
        char ip[INET6_ADDRSTRLEN];
        switch (a->type) {
        case STUN_ATTR_XOR_MAPPED_ADDRESS:
        case STUN_ATTR_MAPPED_ADDRESS:
            if ((a->type == STUN_ATTR_XOR_MAPPED_ADDRESS ? stun_get_xor_addr(&m, a, &addr)
                                                         : stun_get_addr(a, &addr)) == 0) {
                if (addr.sa.sa_family == AF_INET) {
                    inet_ntop(AF_INET, &addr.v4.sin_addr, ip, sizeof(ip));
                    printf(" %s=%s:%u",
                           a->type == STUN_ATTR_MAPPED_ADDRESS ? "mapped" : "xor_mapped", ip,
                           ntohs(addr.v4.sin_port));
                } else {
                    inet_ntop(AF_INET6, &addr.v6.sin6_addr, ip, sizeof(ip));
                    printf(" %s=[%s]:%u",
                           a->type == STUN_ATTR_MAPPED_ADDRESS ? "mapped" : "xor_mapped", ip,
                           ntohs(addr.v6.sin6_port));
                }
            }
            break;
        case STUN_ATTR_ERROR_CODE: {
            int code;
            const char *reason;
            size_t rlen;
            if (stun_get_error(a, &code, &reason, &rlen) == 0)
                printf(" code=%d reason=\"%.*s\"", code, (int)rlen, reason);
            break;
        }
        case STUN_ATTR_UNKNOWN_ATTRIBUTES: {
            uint16_t t[16];
            size_t n = 0;
            stun_get_unknown(a, t, 16, &n);
            printf(" unknown=");
            for (size_t k = 0; k < n; k++)
                printf("%s0x%04x", k ? "," : "", t[k]);
            break;
        }
        case STUN_ATTR_SOFTWARE:
            printf(" software=\"%.*s\"", a->len, (const char *)a->val);
            break;
        case STUN_ATTR_FINGERPRINT:
            printf(" fingerprint=%s", stun_check_fingerprint(&m) == 0 ? "ok" : "bad");
            break;
        default:
            printf(" attr_0x%04x=%u", a->type, a->len);
            break;
        }
    }
    printf(" len=%zu\n", len);
    return tid && memcmp(m.tid, tid, STUN_TID_LEN) != 0;
}

static int connect_to(const char *host, const char *port, int socktype)
{
    struct addrinfo hints = {.ai_socktype = socktype, .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    int rc = getaddrinfo(host, port, &hints, &ai);
    if (rc) {
        fprintf(stderr, "tern-stunc: %s:%s: %s\n", host, port, gai_strerror(rc));
        return -1;
    }
    int fd = socket(ai->ai_family, ai->ai_socktype, 0);
    if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        fprintf(stderr, "tern-stunc: connect %s:%s: %s\n", host, port, strerror(errno));
        if (fd >= 0) close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    return fd;
}

/* Read one whole frame from a stream socket within ms; returns its length, 0 on timeout or
 * close, -1 on error. */
static int read_frame(int fd, uint8_t *buf, size_t cap, int ms)
{
    size_t have = 0;
    for (;;) {
        int need = stun_frame_length(buf, have);
        if (need < 0) return -1;
        if (need > 0 && have >= (size_t)need) return need;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        size_t want = need > 0 ? (size_t)need - have : 4 - (have < 4 ? have : 0);
        if (need == 0 && have >= 4) want = 1;
        if (have + want > cap) return -1;
        if (!(tls && SSL_pending(tls)) && poll(&p, 1, ms) <= 0) return 0;
        ssize_t k = stream_recv(fd, buf + have, want);
        if (k <= 0) return k == 0 ? 0 : -1;
        have += (size_t)k;
    }
}

int main(int argc, char **argv)
{
    const char *transport = "udp", *raw = NULL, *cafile = NULL;
    int fingerprint = 0, indication = 0, expect_none = 0, count = 1, wait_ms = 2000, opt;
    unsigned method = STUN_BINDING;
    uint16_t extra[8];
    size_t nextra = 0;
    while ((opt = getopt(argc, argv, "t:C:fm:iu:x:n:w:eh")) != -1) {
        switch (opt) {
        case 't':
            transport = optarg;
            break;
        case 'C':
            cafile = optarg;
            break;
        case 'f':
            fingerprint = 1;
            break;
        case 'm':
            method = (unsigned)strtoul(optarg, NULL, 0);
            break;
        case 'i':
            indication = 1;
            break;
        case 'u':
            if (nextra < 8) extra[nextra++] = (uint16_t)strtoul(optarg, NULL, 0);
            break;
        case 'x':
            raw = optarg;
            break;
        case 'n':
            count = atoi(optarg);
            break;
        case 'w':
            wait_ms = atoi(optarg);
            break;
        case 'e':
            expect_none = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (argc - optind != 2 || count < 1 ||
        (strcmp(transport, "udp") && strcmp(transport, "tcp") && strcmp(transport, "tls"))) {
        usage(stderr);
        return 2;
    }
    bool tcp = strcmp(transport, "udp") != 0;
    int fd = connect_to(argv[optind], argv[optind + 1], tcp ? SOCK_STREAM : SOCK_DGRAM);
    if (fd < 0) return 1;
    if (strcmp(transport, "tls") == 0 && tls_start(fd, cafile, argv[optind])) return 1;

    uint8_t req[2048], tids[64][STUN_TID_LEN];
    int answered = 0, bad = 0;
    if (count > 64) count = 64;
    for (int i = 0; i < count; i++) {
        int len;
        if (raw) {
            len = parse_hex(raw, req, sizeof(req));
            if (len < 0) {
                fprintf(stderr, "tern-stunc: -x: not hex\n");
                return 2;
            }
            memset(tids[i], 0, STUN_TID_LEN);
            if (len >= STUN_HEADER_LEN) memcpy(tids[i], req + 8, STUN_TID_LEN);
        } else {
            if (getrandom(tids[i], STUN_TID_LEN, 0) != STUN_TID_LEN) return 1;
            struct stun_enc e;
            stun_enc_init(&e, req, sizeof(req),
                          stun_type((uint16_t)method, indication ? STUN_INDICATION : STUN_REQUEST),
                          tids[i]);
            static const uint8_t zero[4];
            for (size_t k = 0; k < nextra; k++)
                stun_enc_attr(&e, extra[k], zero, 4);
            if (fingerprint) stun_enc_fingerprint(&e);
            len = stun_enc_finish(&e);
            if (len < 0) return 1;
        }
        /* UDP: send and wait, retransmitting twice; TCP: pipeline all, read after. */
        if (tcp) {
            if (stream_send(fd, req, (size_t)len) != len) {
                fprintf(stderr, "tern-stunc: send: %s\n", strerror(errno));
                return 1;
            }
            continue;
        }
        int got = 0;
        for (int attempt = 0; attempt < 3 && !got; attempt++) {
            if (send(fd, req, (size_t)len, 0) != len) {
                fprintf(stderr, "tern-stunc: send: %s\n", strerror(errno));
                return 1;
            }
            struct pollfd p = {.fd = fd, .events = POLLIN};
            if (poll(&p, 1, wait_ms / 3 + 1) <= 0) continue;
            uint8_t ans[2048];
            ssize_t k = recv(fd, ans, sizeof(ans), 0);
            if (k < 0) {
                fprintf(stderr, "tern-stunc: recv: %s\n", strerror(errno));
                break;
            }
            got = 1;
            bad |= print_answer(ans, (size_t)k, raw ? NULL : tids[i]);
        }
        answered += got;
    }
    if (tcp) {
        for (int i = 0; i < count; i++) {
            uint8_t ans[70000];
            int k = read_frame(fd, ans, sizeof(ans), wait_ms);
            if (k <= 0) break;
            answered++;
            bad |= print_answer(ans, (size_t)k, raw ? NULL : tids[i]);
        }
    }
    SSL_free(tls);
    close(fd);
    if (expect_none) {
        if (answered) fprintf(stderr, "tern-stunc: expected no answer, got %d\n", answered);
        return answered ? 1 : 0;
    }
    if (answered < count) {
        fprintf(stderr, "tern-stunc: %d of %d requests unanswered\n", count - answered, count);
        return 1;
    }
    return bad;
}
