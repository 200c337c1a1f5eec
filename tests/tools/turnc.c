/* turnc.c: tern-turnc, the test suite's TURN client over UDP: Allocate (long-term
 * credentials), CreatePermission for each peer, Send indications (optionally with
 * DONT-FRAGMENT), then print every Data indication that arrives as one key=value line,
 * including the ICMP attribute (RFC 8656 11) the relay uses to report a peer's ICMP errors.
 * With -C it binds a channel per peer (0x4000 + its index) and sends ChannelData instead,
 * counting the ChannelData that comes back (the kernel fast path's tests). With -M it asks for
 * a MOBILITY-TICKET (RFC 8016) and moves to a new socket (a new source port, and with -B a new
 * address) every K rounds of sends, refreshing from there with the ticket, as a client whose
 * network changed does. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "addr.h"
#include "stun.h"

#define MAX_PEERS 8

static struct {
    union stun_addr server, peers[MAX_PEERS];
    int npeers;
    const char *user, *pass;
    int family; /* STUN_FAMILY_IPV4 or _IPV6 for REQUESTED-ADDRESS-FAMILY */
    int count, size, wait_ms, interval_ms;
    int tos;    /* IP_TOS / IPV6_TCLASS for the client's datagrams; -1: the default */
    int rtp_pt; /* -1: payload bytes; else RTP with this payload type */
    bool df;
    bool del;                /* Refresh with LIFETIME 0 before exiting */
    bool channels;           /* -C: ChannelBind and ChannelData instead of Send indications */
    bool follow;             /* -F: follow one 300 Try Alternate, as libwebrtc does */
    int move_every;          /* -M K: mobility, a new 5-tuple every K rounds (0: off) */
    union stun_addr bind_to; /* -B IP: the address moves bind to (port 0: a new one) */
} opt = {.user = "alice",
         .pass = "alice-pass",
         .count = 1,
         .size = 100,
         .wait_ms = 2000,
         .tos = -1,
         .rtp_pt = -1};

static int fd = -1;
static uint8_t ticket[256]; /* RFC 8016: the current MOBILITY-TICKET */
static size_t ticket_len;
static char realm[256];
static uint8_t nonce[256];
static size_t nonce_len;
static uint8_t key[16];

static void die(const char *what)
{
    fprintf(stderr, "tern-turnc: %s\n", what);
    exit(3);
}

static int parse_addr(const char *s, union stun_addr *a)
{
    char host[INET6_ADDRSTRLEN + 2];
    const char *colon = strrchr(s, ':');
    if (!colon || (size_t)(colon - s) >= sizeof(host)) return -1;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = 0;
    char *h = host;
    if (h[0] == '[') {
        h++;
        h[strlen(h) - 1] = 0;
    }
    unsigned port = (unsigned)atoi(colon + 1);
    memset(a, 0, sizeof(*a));
    if (inet_pton(AF_INET, h, &a->v4.sin_addr) == 1)
        a->v4.sin_family = AF_INET;
    else if (inet_pton(AF_INET6, h, &a->v6.sin6_addr) == 1)
        a->v6.sin6_family = AF_INET6;
    else
        return -1;
    addr_set_port(a, port);
    return 0;
}

static void new_tid(uint8_t tid[STUN_TID_LEN])
{
    if (getrandom(tid, STUN_TID_LEN, 0) != STUN_TID_LEN) die("getrandom");
}

/* Start a request, with the long-term credentials once a realm and nonce are known. */
static void begin(struct stun_enc *e, uint8_t *buf, size_t cap, uint16_t method, uint8_t *tid)
{
    new_tid(tid);
    stun_enc_init(e, buf, cap, stun_type(method, STUN_REQUEST), tid);
}

static int finish(struct stun_enc *e)
{
    if (realm[0]) {
        stun_enc_attr(e, STUN_ATTR_USERNAME, opt.user, strlen(opt.user));
        stun_enc_attr(e, STUN_ATTR_REALM, realm, strlen(realm));
        stun_enc_attr(e, STUN_ATTR_NONCE, nonce, nonce_len);
        stun_enc_integrity(e, key, sizeof(key));
    }
    stun_enc_fingerprint(e);
    return stun_enc_finish(e);
}

static void derive_key(void)
{
    char buf[1024];
    int n = snprintf(buf, sizeof(buf), "%s:%s:%s", opt.user, realm, opt.pass);
    unsigned len = 0;
    if (n <= 0 || !EVP_Digest(buf, (size_t)n, key, &len, EVP_md5(), NULL)) die("MD5");
}

/* Wait for the answer to tid (Data indications that arrive meanwhile are printed). Returns
 * the answer's length in buf, or -1 on timeout. */
static void print_indication(const struct stun_msg *m, int tos);
static bool chdata_in(const uint8_t *buf, ssize_t len);
static ssize_t recv_tos(uint8_t *buf, size_t cap, int *tos);
static int await(const uint8_t *tid, uint8_t *buf, size_t cap, struct stun_msg *m)
{
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 2000) <= 0) return -1;
        int tos;
        ssize_t k = recv_tos(buf, cap, &tos);
        if (k <= 0 || chdata_in(buf, k) || stun_decode(m, buf, (size_t)k)) continue;
        if (stun_class_of(m->type) == STUN_INDICATION) {
            print_indication(m, tos);
            continue;
        }
        if (memcmp(m->tid, tid, STUN_TID_LEN) == 0) return (int)k;
    }
}

/* Send a request built by build() and return its final answer, retrying once after a 401 or
 * 438 with the realm and nonce they carry. */
static int transact(uint16_t method, void (*build)(struct stun_enc *e, void *arg), void *arg,
                    uint8_t *buf, size_t cap, struct stun_msg *m)
{
    for (int attempt = 0; attempt < 3; attempt++) {
        uint8_t req[1500], tid[STUN_TID_LEN];
        struct stun_enc e;
        begin(&e, req, sizeof(req), method, tid);
        build(&e, arg);
        int n = finish(&e);
        if (n <= 0) die("encode");
        if (send(fd, req, (size_t)n, 0) != n) die("send");
        if (await(tid, buf, cap, m) < 0) die("no answer from the server");
        if (stun_class_of(m->type) != STUN_ERROR) return 0;
        int code = 0;
        const char *reason;
        size_t rlen;
        const struct stun_attr *ec = stun_find(m, STUN_ATTR_ERROR_CODE);
        if (ec) stun_get_error(ec, &code, &reason, &rlen);
        const struct stun_attr *ra = stun_find(m, STUN_ATTR_REALM),
                               *na = stun_find(m, STUN_ATTR_NONCE);
        if ((code == 401 || code == 438) && ra && na && ra->len < sizeof(realm) &&
            na->len <= sizeof(nonce)) {
            memcpy(realm, ra->val, ra->len);
            realm[ra->len] = 0;
            memcpy(nonce, na->val, na->len);
            nonce_len = na->len;
            derive_key();
            if (opt.follow)
                printf("challenge=%d\n", code); /* -F: the nonce was refused or missing */
            continue;
        }
        if (code == 401 || code == 438) return code;
        if (code == 300) {
            union stun_addr alt;
            char as[ADDR_STRLEN];
            const struct stun_attr *aa = stun_find(m, STUN_ATTR_ALTERNATE_SERVER),
                                   *ad = stun_find(m, STUN_ATTR_ALTERNATE_DOMAIN);
            if (!aa || stun_get_addr(aa, &alt) != 0) return code;
            printf("alternate=%s", addr_str(&alt, as));
            if (ad) printf(" domain=%.*s", (int)ad->len, (const char *)ad->val);
            printf("\n");
            /* -F: once, from the same socket (the same client address), with the REALM and
             * NONCE the 300 carries (libwebrtc's TurnPort does the same). */
            static bool followed;
            if (opt.follow && !followed && alt.sa.sa_family == opt.server.sa.sa_family) {
                followed = true;
                if (ra && na && ra->len < sizeof(realm) && na->len <= sizeof(nonce)) {
                    memcpy(realm, ra->val, ra->len);
                    realm[ra->len] = 0;
                    memcpy(nonce, na->val, na->len);
                    nonce_len = na->len;
                    derive_key();
                }
                opt.server = alt;
                if (connect(fd, &alt.sa, addr_len(&alt))) die("connect to the alternate");
                printf("followed=%s\n", as);
                fflush(stdout);
                attempt--; /* the alternate gets the full round of retries */
                continue;
            }
        }
        return code ? code : -1;
    }
    return -1;
}

static void build_delete(struct stun_enc *e, void *arg)
{
    (void)arg;
    stun_enc_u32(e, STUN_ATTR_LIFETIME, 0);
    if (ticket_len) stun_enc_attr(e, STUN_ATTR_MOBILITY_TICKET, ticket, ticket_len);
}

static void build_move(struct stun_enc *e, void *arg)
{
    (void)arg;
    stun_enc_u32(e, STUN_ATTR_LIFETIME, 600);
    stun_enc_attr(e, STUN_ATTR_MOBILITY_TICKET, ticket, ticket_len);
}

/* Keep the answer's MOBILITY-TICKET; false when it has none. */
static bool take_ticket(const struct stun_msg *m)
{
    const struct stun_attr *t = stun_find(m, STUN_ATTR_MOBILITY_TICKET);
    if (!t || !t->len || t->len > sizeof(ticket)) return false;
    memcpy(ticket, t->val, t->len);
    ticket_len = t->len;
    return true;
}

static void open_socket(bool moving);

/* RFC 8016: a new socket (the old one is closed, as an interface that went away), and a
 * Refresh with the ticket from it. */
static void move(int n, uint8_t *buf, size_t cap, struct stun_msg *m)
{
    uint8_t old[256];
    size_t oldlen = ticket_len;
    memcpy(old, ticket, ticket_len);
    close(fd);
    open_socket(true);
    union stun_addr local;
    socklen_t sl = sizeof(local);
    char ls[ADDR_STRLEN];
    getsockname(fd, &local.sa, &sl);
    int rc = transact(STUN_REFRESH, build_move, NULL, buf, cap, m);
    bool renewed =
        rc == 0 && take_ticket(m) && (ticket_len != oldlen || memcmp(ticket, old, oldlen) != 0);
    printf("moved n=%d local=%s code=%d ticket_renewed=%s\n", n, addr_str(&local, ls), rc,
           renewed ? "yes" : "no");
    fflush(stdout);
}

static void build_allocate(struct stun_enc *e, void *arg)
{
    (void)arg;
    stun_enc_u8_rffu(e, STUN_ATTR_REQUESTED_TRANSPORT, 17);
    if (opt.move_every) stun_enc_attr(e, STUN_ATTR_MOBILITY_TICKET, NULL, 0);
    if (opt.family) stun_enc_u8_rffu(e, STUN_ATTR_REQUESTED_ADDRESS_FAMILY, (uint8_t)opt.family);
    if (opt.df) stun_enc_attr(e, STUN_ATTR_DONT_FRAGMENT, NULL, 0);
}

static void build_permission(struct stun_enc *e, void *arg)
{
    stun_enc_xor_addr(e, STUN_ATTR_XOR_PEER_ADDRESS, arg);
}

static unsigned n_data, n_icmp, n_chdata;

static void build_chbind(struct stun_enc *e, void *arg)
{
    const union stun_addr *peer = arg;
    stun_enc_channel(e, (uint16_t)(0x4000 + (peer - opt.peers)));
    stun_enc_xor_addr(e, STUN_ATTR_XOR_PEER_ADDRESS, peer);
}

/* A ChannelData frame from the relay (first two bits 01): counted, not printed. */
static bool chdata_in(const uint8_t *buf, ssize_t len)
{
    if (len < 4 || (buf[0] & 0xc0) != 0x40) return false;
    if ((size_t)len >= 4 + (size_t)(buf[2] << 8 | buf[3])) n_chdata++;
    return true;
}

/* recv with the datagram's TOS / traffic class (-1 when the kernel gave none). */
static ssize_t recv_tos(uint8_t *buf, size_t cap, int *tos)
{
    union {
        uint8_t b[128];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = {.iov_base = buf, .iov_len = cap};
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b, .msg_controllen = sizeof(ctl.b)};
    ssize_t k = recvmsg(fd, &mh, 0);
    *tos = -1;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); k > 0 && c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_TOS) *tos = *CMSG_DATA(c);
        if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_TCLASS) {
            int v;
            memcpy(&v, CMSG_DATA(c), sizeof(v));
            *tos = v & 0xff;
        }
    }
    return k;
}

static void print_indication(const struct stun_msg *m, int tos)
{
    if (stun_method_of(m->type) != STUN_DATA) return;
    union stun_addr peer;
    char ps[ADDR_STRLEN];
    const struct stun_attr *xa = stun_find(m, STUN_ATTR_XOR_PEER_ADDRESS);
    if (!xa || stun_get_xor_addr(m, xa, &peer)) {
        printf("bad_indication\n");
        return;
    }
    const struct stun_attr *ia = stun_find(m, STUN_ATTR_ICMP), *da = stun_find(m, STUN_ATTR_DATA);
    if (ia) {
        uint8_t type, code;
        uint32_t data;
        if (stun_get_icmp(ia, &type, &code, &data)) {
            printf("bad_icmp peer=%s\n", addr_str(&peer, ps));
            return;
        }
        n_icmp++;
        printf("icmp peer=%s type=%u code=%u data=%u data_attr=%s\n", addr_str(&peer, ps), type,
               code, data, da ? "yes" : "no");
    } else if (da) {
        n_data++;
        printf("data peer=%s len=%u tos=0x%02x\n", addr_str(&peer, ps), da->len, tos & 0xff);
    }
    fflush(stdout);
}

static void usage(FILE *out)
{
    fprintf(out, "Usage: tern-turnc -s HOST:PORT -p PEER:PORT [-p ...] [options]\n"
                 "  -u USER -P PASS  long-term credentials (default alice / alice-pass)\n"
                 "  -6               ask for an IPv6 relayed address (REQUESTED-ADDRESS-FAMILY)\n"
                 "  -n COUNT         Send indications per peer (default 1)\n"
                 "  -l BYTES         payload size (default 100)\n"
                 "  -i MS            between sends (default 0)\n"
                 "  -D               DONT-FRAGMENT on the Allocate and every Send indication\n"
                 "  -T TOS           send with this IP TOS / IPv6 traffic class (e.g. 0xb9)\n"
                 "  -R PT            send RTP packets of payload type PT (sequence, timestamp)\n"
                 "  -w MS            listen this long after the last send (default 2000)\n"
                 "  -d               delete the allocation (Refresh, LIFETIME 0) before exiting\n"
                 "  -C               bind a channel per peer and send ChannelData instead\n"
                 "  -F               follow one 300 Try Alternate (same socket, its NONCE)\n"
                 "  -M K             RFC 8016: ask for a MOBILITY-TICKET; every K rounds move to\n"
                 "                   a new socket and Refresh with the ticket from there\n"
                 "  -B IP            the local address moves bind to (default: any)\n"
                 "Prints allocated/permission lines, then one line per Data indication\n"
                 "(icmp ... or data ...), then totals. Exit 0, or 3 if the server failed.\n");
}

/* The client's socket, connected to the server (moving: bound to -B's address if given). */
static void open_socket(bool moving)
{
    fd = socket(opt.server.sa.sa_family, SOCK_DGRAM, 0);
    if (fd < 0) die("socket");
    if (moving && opt.bind_to.sa.sa_family && bind(fd, &opt.bind_to.sa, addr_len(&opt.bind_to)))
        die("bind -B");
    if (connect(fd, &opt.server.sa, addr_len(&opt.server))) die("connect");
    int one = 1;
    bool v4 = opt.server.sa.sa_family == AF_INET;
    setsockopt(fd, v4 ? IPPROTO_IP : IPPROTO_IPV6, v4 ? IP_RECVTOS : IPV6_RECVTCLASS, &one,
               sizeof(one));
    if (opt.tos >= 0 && setsockopt(fd, v4 ? IPPROTO_IP : IPPROTO_IPV6, v4 ? IP_TOS : IPV6_TCLASS,
                                   &opt.tos, sizeof(opt.tos)))
        die("IP_TOS");
}

int main(int argc, char **argv)
{
    int c;
    while ((c = getopt(argc, argv, "s:p:u:P:6n:l:i:DT:R:w:dCFM:B:h")) != -1) {
        switch (c) {
        case 's':
            if (parse_addr(optarg, &opt.server)) die("bad -s");
            break;
        case 'p':
            if (opt.npeers == MAX_PEERS || parse_addr(optarg, &opt.peers[opt.npeers++]))
                die("bad -p");
            break;
        case 'u':
            opt.user = optarg;
            break;
        case 'P':
            opt.pass = optarg;
            break;
        case '6':
            opt.family = STUN_FAMILY_IPV6;
            break;
        case 'n':
            opt.count = atoi(optarg);
            break;
        case 'l':
            opt.size = atoi(optarg);
            break;
        case 'i':
            opt.interval_ms = atoi(optarg);
            break;
        case 'D':
            opt.df = true;
            break;
        case 'T':
            opt.tos = (int)strtol(optarg, NULL, 0);
            break;
        case 'R':
            opt.rtp_pt = atoi(optarg);
            break;
        case 'd':
            opt.del = true;
            break;
        case 'C':
            opt.channels = true;
            break;
        case 'F':
            opt.follow = true;
            break;
        case 'w':
            opt.wait_ms = atoi(optarg);
            break;
        case 'M':
            opt.move_every = atoi(optarg);
            if (opt.move_every <= 0) die("bad -M");
            break;
        case 'B': {
            char tmp[INET6_ADDRSTRLEN + 8];
            snprintf(tmp, sizeof(tmp), strchr(optarg, ':') ? "[%s]:0" : "%s:0", optarg);
            if (parse_addr(tmp, &opt.bind_to)) die("bad -B");
            break;
        }
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!opt.server.sa.sa_family || !opt.npeers || opt.size < 0 || opt.size > 1400) {
        usage(stderr);
        return 2;
    }
    open_socket(false);

    uint8_t buf[2048];
    struct stun_msg m;
    char as[ADDR_STRLEN];
    int rc = transact(STUN_ALLOCATE, build_allocate, NULL, buf, sizeof(buf), &m);
    if (rc) {
        printf("allocate_failed code=%d\n", rc);
        return 3;
    }
    union stun_addr relayed;
    const struct stun_attr *ra = stun_find(&m, STUN_ATTR_XOR_RELAYED_ADDRESS);
    if (!ra || stun_get_xor_addr(&m, ra, &relayed)) die("no XOR-RELAYED-ADDRESS");
    if (opt.move_every)
        printf("allocated relayed=%s ticket=%s\n", addr_str(&relayed, as),
               take_ticket(&m) ? "yes" : "no");
    else
        printf("allocated relayed=%s\n", addr_str(&relayed, as));
    for (int i = 0; i < opt.npeers; i++) {
        rc =
            transact(STUN_CREATE_PERMISSION, build_permission, &opt.peers[i], buf, sizeof(buf), &m);
        printf("permission peer=%s code=%d\n", addr_str(&opt.peers[i], as), rc);
        if (rc) return 3;
        if (!opt.channels) continue;
        rc = transact(STUN_CHANNEL_BIND, build_chbind, &opt.peers[i], buf, sizeof(buf), &m);
        printf("channel peer=%s channel=0x%04x code=%d\n", addr_str(&opt.peers[i], as), 0x4000 + i,
               rc);
        if (rc) return 3;
    }
    fflush(stdout);

    uint8_t payload[1400];
    memset(payload, 'x', sizeof(payload));
    unsigned sent = 0;
    int moves = 0;
    for (int k = 0; k < opt.count; k++) {
        if (opt.move_every && ticket_len && k > 0 && k % opt.move_every == 0)
            move(++moves, buf, sizeof(buf), &m);
        for (int i = 0; i < opt.npeers; i++) {
            uint8_t ind[1600], tid[STUN_TID_LEN];
            struct stun_enc e;
            if (opt.rtp_pt >= 0 && opt.size >= 12) { /* RTP v2: PT, seq k, ts 160 k, SSRC */
                payload[0] = 0x80;
                payload[1] = (uint8_t)(opt.rtp_pt & 0x7f);
                payload[2] = (uint8_t)(k >> 8);
                payload[3] = (uint8_t)k;
                uint32_t ts = (uint32_t)k * 160, ssrc = 0x1234567u + (uint32_t)i;
                for (int b = 0; b < 4; b++) {
                    payload[4 + b] = (uint8_t)(ts >> (24 - 8 * b));
                    payload[8 + b] = (uint8_t)(ssrc >> (24 - 8 * b));
                }
            }
            if (opt.channels) {
                stun_chdata_header(ind, (uint16_t)(0x4000 + i), (uint16_t)opt.size);
                memcpy(ind + 4, payload, (size_t)opt.size);
                if (send(fd, ind, 4 + (size_t)opt.size, 0) == 4 + opt.size) sent++;
                continue;
            }
            new_tid(tid);
            stun_enc_init(&e, ind, sizeof(ind), stun_type(STUN_SEND, STUN_INDICATION), tid);
            stun_enc_xor_addr(&e, STUN_ATTR_XOR_PEER_ADDRESS, &opt.peers[i]);
            if (opt.df) stun_enc_attr(&e, STUN_ATTR_DONT_FRAGMENT, NULL, 0);
            stun_enc_attr(&e, STUN_ATTR_DATA, payload, (size_t)opt.size);
            int n = stun_enc_finish(&e);
            if (n <= 0) die("encode Send");
            if (send(fd, ind, (size_t)n, 0) == n) sent++;
        }
        /* Read what arrived meanwhile, pausing between sends when asked. */
        struct pollfd p = {.fd = fd, .events = POLLIN};
        while (poll(&p, 1, opt.interval_ms) > 0) {
            int tos;
            ssize_t got = recv_tos(buf, sizeof(buf), &tos);
            if (got > 0 && !chdata_in(buf, got) && stun_decode(&m, buf, (size_t)got) == 0 &&
                stun_class_of(m.type) == STUN_INDICATION)
                print_indication(&m, tos);
        }
    }
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        long left =
            opt.wait_ms - ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000);
        if (left <= 0) break;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, (int)left) <= 0) break;
        int tos;
        ssize_t got = recv_tos(buf, sizeof(buf), &tos);
        if (got > 0 && !chdata_in(buf, got) && stun_decode(&m, buf, (size_t)got) == 0 &&
            stun_class_of(m.type) == STUN_INDICATION)
            print_indication(&m, tos);
    }
    if (opt.channels)
        printf("totals sent=%u data=%u icmp=%u chdata=%u\n", sent, n_data, n_icmp, n_chdata);
    else
        printf("totals sent=%u data=%u icmp=%u\n", sent, n_data, n_icmp);
    if (opt.del) {
        rc = transact(STUN_REFRESH, build_delete, NULL, buf, sizeof(buf), &m);
        printf("deleted code=%d\n", rc);
    }
    return 0;
}
