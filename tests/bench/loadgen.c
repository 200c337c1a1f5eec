/* loadgen.c: tern-loadgen, the TURN load generator of the benchmark (tests/bench/run).
 *
 * N clients, each its own UDP socket, authenticate with long-term credentials (Allocate, the
 * 401 round, Allocate again with MESSAGE-INTEGRITY), then ChannelBind (or CreatePermission for
 * Send indications) to echo peers that live in this process (a few UDP sockets that send every
 * datagram back to where it came from, i.e. to the relayed address). Then load: paced at a
 * fixed total rate (--rate, a comma list runs a ladder of rates on the same allocations) or a
 * closed-loop window per client (--window). Every payload carries the client number, a
 * sequence number and the send time; the echo gives the round-trip time.
 *
 * --direct talks to the echo peers without a relay (the baseline RTT); --fwd ADDR:PORT talks
 * to tern-fwd (its protocol: an 8-byte return-address tag at the start of each datagram, which
 * the payload layout reserves). --setup-only measures the allocation rate and holds the
 * allocations open (--hold) so the server's RSS can be read; --flood sends invalid datagrams
 * afterwards to check memory stays flat.
 *
 * With --server-pid, the server's CPU time (utime+stime from /proc/PID/stat) is read at the
 * start and the end of each measured window, and its RSS (VmRSS) before and after the set-up.
 * Output: one JSON object on stdout. Single-threaded: one busy-polling epoll loop. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "stun.h"
#include "benchutil.h"

/* Payload layout (at least PAYLOAD_MIN bytes): [0,8) tern-fwd return tag, [8,12) client number,
 * [12,16) sequence, [16,24) send time in ns (CLOCK_MONOTONIC), the rest filler. */
#define PAYLOAD_MIN  24
#define OFF_CLIENT   8
#define OFF_SEQ      12
#define OFF_TS       16
#define MAX_PEERS    64
#define MAX_SERVERS  16
#define MAX_STEPS    32
#define RX_BATCH     64
#define BUF_SIZE     2048
#define HIST_NS      100u     /* histogram bucket width */
#define HIST_BUCKETS 1000000u /* up to 100 ms; beyond goes into the last bucket */
#define CHANNEL      0x4000

enum mode { MODE_TURN, MODE_DIRECT, MODE_FWD };
enum state { ST_IDLE, ST_ALLOC1, ST_ALLOC2, ST_BIND, ST_READY, ST_FAILED };

struct client {
    int fd;
    uint8_t state;
    uint8_t tries;
    uint8_t peer;
    uint8_t nonce_len;
    uint32_t seq;
    uint32_t outstanding; /* closed loop: sent and not yet back */
    uint64_t deadline;    /* set-up: retransmit time; closed loop: stall check */
    uint8_t tid[STUN_TID_LEN];
    uint8_t nonce[128];
};

struct hist {
    uint32_t *b;
    uint64_t n, sum_ns, max_ns;
};

struct step {
    double rate; /* offered pps (0: closed loop) */
    double window_s, offered_actual;
    uint64_t sent, received, late, peer_rx, client_rx, send_fail;
    double server_cpu_s, core_busy_s;
    struct hist h;
};

static struct {
    enum mode mode;
    int nclients, npeers, size, concurrency, window, hold_s, client_addrs;
    double duration, warmup, drain, flood_s, stop_loss;
    bool setup_only, send_ind;
    const char *user, *pass;
    struct sockaddr_in servers[MAX_SERVERS];
    int nservers;
    struct in_addr peer_ip;
    uint16_t peer_port;
    int server_pid, server_cpu;
    int extra_pids[16]; /* kernel threads charged to the server (threaded NAPI of its NICs) */
    int nextra;
    const char *peer_netns; /* the echo peers' network namespace (ip netns) */
    struct in_addr client_ip;
    bool have_client_ip;
    double rates[MAX_STEPS];
    int nrates;
} opt = {
    .mode = MODE_TURN,
    .nclients = 100,
    .npeers = 4,
    .size = 160,
    .concurrency = 64,
    .duration = 3,
    .warmup = 1,
    .drain = 0.5,
    .stop_loss = 0.01,
    .user = "bench",
    .pass = "benchpw",
    .server_cpu = 0,
};

static struct client *cl;
static int peer_fd[MAX_PEERS];
static struct sockaddr_in peer_addr[MAX_PEERS];
static int ep;
static char realm[128];
static size_t realm_len;
static uint8_t key[16];
static bool have_key;
static uint64_t errors[700];
static volatile sig_atomic_t interrupted;

/* What the current measurement step counts (NULL outside a window). */
static struct step *cur;
static uint64_t win_start, win_end; /* the measured window: send times in it count */
static bool in_window;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

static void die(const char *what)
{
    fprintf(stderr, "tern-loadgen: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* ---- /proc readings of the server ---- */

/* CPU time of every thread of the server in ns resolution (schedstat's first field: time
 * spent on the CPU); /proc/PID/stat (clock ticks) when schedstat is not available. */
static double server_cpu_schedstat(void)
{
    char path[300];
    snprintf(path, sizeof path, "/proc/%d/task", opt.server_pid);
    DIR *d = opendir(path);
    if (!d) return -1;
    double total = 0;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "/proc/%d/task/%.32s/schedstat", opt.server_pid, de->d_name);
        FILE *f = fopen(path, "re");
        if (!f) continue;
        unsigned long long ns;
        if (fscanf(f, "%llu", &ns) == 1) {
            total += (double)ns / 1e9;
            n++;
        }
        fclose(f);
    }
    closedir(d);
    return n ? total : -1;
}

/* CPU time of the --extra-pids threads (schedstat). */
static double extra_cpu_s(void)
{
    double total = 0;
    for (int i = 0; i < opt.nextra; i++) {
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/schedstat", opt.extra_pids[i]);
        FILE *f = fopen(path, "re");
        unsigned long long ns;
        if (f && fscanf(f, "%llu", &ns) == 1) total += (double)ns / 1e9;
        if (f) fclose(f);
    }
    return total;
}

static double server_cpu_s(void)
{
    if (opt.server_pid <= 0) return 0;
    double ss = server_cpu_schedstat();
    if (ss >= 0) return ss + extra_cpu_s();
    char path[64], buf[2048];
    snprintf(path, sizeof path, "/proc/%d/stat", opt.server_pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = 0;
    /* fields after the command (which may hold spaces) start after the last ')' */
    char *p = strrchr(buf, ')');
    if (!p) return 0;
    unsigned long long ut = 0, st = 0;
    /* ") S ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime" */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return 0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* Busy time of the server's CPU (all tasks, from /proc/stat): what is not the server's is
 * interference from other work on that core (then the figures are not trustworthy). */
static double core_busy_s(void)
{
    if (opt.server_cpu < 0) return 0;
    FILE *f = fopen("/proc/stat", "re");
    if (!f) return 0;
    char line[512], want[16];
    snprintf(want, sizeof want, "cpu%d ", opt.server_cpu);
    double busy = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long long v[8] = {0};
        if (strncmp(line, want, strlen(want)) != 0) continue;
        if (sscanf(line + strlen(want), "%llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1],
                   &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]) == 8)
            busy = (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / (double)sysconf(_SC_CLK_TCK);
        break;
    }
    fclose(f);
    return busy;
}

static long server_rss_kb(void)
{
    if (opt.server_pid <= 0) return 0;
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", opt.server_pid);
    FILE *f = fopen(path, "re");
    if (!f) return 0;
    long kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1) break;
    fclose(f);
    return kb;
}

/* Open file descriptors of the server (entries of /proc/PID/fd), read with the RSS after the
 * set-up: every server here holds one UDP socket per allocation, so this shows that the
 * allocations were still held when the RSS was read. */
static long server_fds(void)
{
    if (opt.server_pid <= 0) return 0;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", opt.server_pid);
    DIR *d = opendir(path);
    if (!d) return 0;
    long n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

/* ---- histogram ---- */

static void hist_add(struct hist *h, uint64_t ns)
{
    uint64_t i = ns / HIST_NS;
    h->b[i < HIST_BUCKETS ? i : HIST_BUCKETS - 1]++;
    h->n++;
    h->sum_ns += ns;
    if (ns > h->max_ns) h->max_ns = ns;
}

static double hist_pct_us(const struct hist *h, double q)
{
    if (!h->n) return 0;
    uint64_t want = (uint64_t)ceil(q * (double)h->n), acc = 0;
    if (want < 1) want = 1;
    for (uint32_t i = 0; i < HIST_BUCKETS; i++) {
        acc += h->b[i];
        if (acc >= want) return ((double)i + 0.5) * HIST_NS / 1000.0;
    }
    return (double)h->max_ns / 1000.0;
}

/* ---- sockets ---- */

static void bufsize(int fd, int bytes)
{
    setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof bytes);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &bytes, sizeof bytes);
}

/* A UDP socket in network namespace ns (NULL: this one); a socket stays where it was made. */
static int udp_socket_in(const char *ns)
{
    if (!ns) return socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    char path[300];
    snprintf(path, sizeof path, "/run/netns/%s", ns);
    int self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC), other = open(path, O_RDONLY);
    if (self < 0 || other < 0 || setns(other, CLONE_NEWNET)) die("--peer-netns");
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (setns(self, CLONE_NEWNET)) die("setns back");
    close(self);
    close(other);
    return fd;
}

static int udp_bound_in(const char *ns, struct in_addr ip, uint16_t port)
{
    int fd = udp_socket_in(ns);
    if (fd < 0) die("socket");
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr = ip, .sin_port = htons(port)};
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0) die("bind");
    return fd;
}

static int udp_bound(struct in_addr ip, uint16_t port)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr = ip, .sin_port = htons(port)};
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0) die("bind");
    return fd;
}

static void watch(int fd, uint32_t tag)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = tag};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
}

#define PEER_TAG 0x80000000u

/* ---- TURN set-up ---- */

static void md5_key(void)
{
    char buf[1024];
    int n = snprintf(buf, sizeof buf, "%s:%.*s:%s", opt.user, (int)realm_len, realm, opt.pass);
    unsigned int len = 0;
    /* Users and passwords of the benchmark are ASCII, for which SASLprep is the identity. */
    EVP_Digest(buf, (size_t)n, key, &len, EVP_md5(), NULL);
    have_key = true;
}

static void add_auth(struct stun_enc *e, const struct client *c)
{
    stun_enc_attr(e, STUN_ATTR_USERNAME, opt.user, strlen(opt.user));
    stun_enc_attr(e, STUN_ATTR_REALM, realm, realm_len);
    stun_enc_attr(e, STUN_ATTR_NONCE, c->nonce, c->nonce_len);
    stun_enc_integrity(e, key, sizeof key);
}

static union stun_addr peer_of(const struct client *c)
{
    union stun_addr a;
    memset(&a, 0, sizeof a);
    a.v4 = peer_addr[c->peer];
    return a;
}

static void send_request(struct client *c, uint64_t now)
{
    uint8_t buf[1024];
    struct stun_enc e;
    uint16_t method = c->state == ST_BIND
                          ? (opt.send_ind ? STUN_CREATE_PERMISSION : STUN_CHANNEL_BIND)
                          : STUN_ALLOCATE;
    stun_enc_init(&e, buf, sizeof buf, stun_type(method, STUN_REQUEST), c->tid);
    if (method == STUN_ALLOCATE) {
        stun_enc_u8_rffu(&e, STUN_ATTR_REQUESTED_TRANSPORT, STUN_TRANSPORT_UDP);
    } else {
        union stun_addr p = peer_of(c);
        if (method == STUN_CHANNEL_BIND) stun_enc_channel(&e, CHANNEL);
        stun_enc_xor_addr(&e, STUN_ATTR_XOR_PEER_ADDRESS, &p);
    }
    if (c->state != ST_ALLOC1) add_auth(&e, c);
    int len = stun_enc_finish(&e);
    if (len < 0) {
        fprintf(stderr, "tern-loadgen: encode: %s\n", stun_strerror(len));
        exit(1);
    }
    send(c->fd, buf, (size_t)len, 0);
    /* RFC 8489 retransmission: RTO 500 ms doubling, but shortened for a loopback benchmark */
    c->deadline = now + (200000000ull << (c->tries < 4 ? c->tries : 4));
}

static void start_transaction(struct client *c, enum state st, uint64_t now)
{
    c->state = (uint8_t)st;
    c->tries = 0;
    if (getrandom(c->tid, sizeof c->tid, 0) != sizeof c->tid) die("getrandom");
    send_request(c, now);
}

static int ready, failed, in_setup;

static void setup_done(struct client *c, bool ok)
{
    c->state = ok ? ST_READY : ST_FAILED;
    in_setup--;
    if (ok)
        ready++;
    else
        failed++;
}

static void handle_response(struct client *c, const uint8_t *buf, size_t len, uint64_t now)
{
    struct stun_msg m;
    if (stun_decode(&m, buf, len) || memcmp(m.tid, c->tid, STUN_TID_LEN) != 0) return;
    enum stun_class cls = stun_class_of(m.type);
    if (cls == STUN_ERROR) {
        int code = 0;
        const char *reason;
        size_t rlen;
        const struct stun_attr *ec = stun_find(&m, STUN_ATTR_ERROR_CODE);
        if (ec) stun_get_error(ec, &code, &reason, &rlen);
        if ((code == 401 && c->state == ST_ALLOC1) || code == 438) {
            const struct stun_attr *r = stun_find(&m, STUN_ATTR_REALM);
            const struct stun_attr *n = stun_find(&m, STUN_ATTR_NONCE);
            if (!n || n->len > sizeof c->nonce || (!r && !have_key)) {
                setup_done(c, false);
                return;
            }
            if (r && !have_key) {
                realm_len = r->len < sizeof realm ? r->len : sizeof realm - 1;
                memcpy(realm, r->val, realm_len);
                md5_key();
            }
            memcpy(c->nonce, n->val, n->len);
            c->nonce_len = (uint8_t)n->len;
            start_transaction(c, c->state == ST_ALLOC1 ? ST_ALLOC2 : (enum state)c->state, now);
            return;
        }
        if (code >= 300 && code < 700) errors[code]++;
        setup_done(c, false);
        return;
    }
    if (cls != STUN_SUCCESS) return;
    if (c->state == ST_ALLOC2)
        start_transaction(c, ST_BIND, now);
    else if (c->state == ST_BIND)
        setup_done(c, true);
}

static void check_retransmits(uint64_t now, int upto)
{
    for (int i = 0; i < upto; i++) {
        struct client *c = &cl[i];
        if (c->state < ST_ALLOC1 || c->state > ST_BIND || now < c->deadline) continue;
        if (++c->tries > 6) {
            errors[0]++; /* timed out */
            setup_done(c, false);
            continue;
        }
        send_request(c, now);
    }
}

/* ---- data ---- */

static int frame(struct client *c, uint8_t *buf, uint64_t now)
{
    uint8_t *p = buf;
    int hdr = 0;
    if (opt.mode == MODE_TURN && !opt.send_ind) hdr = STUN_CHDATA_HEADER_LEN;
    if (opt.mode == MODE_TURN && opt.send_ind)
        hdr = 36; /* Send: header, XOR-PEER-ADDRESS, DATA hdr */
    p = buf + hdr;
    uint32_t id = (uint32_t)(c - cl), seq = c->seq++;
    memset(p, 0, OFF_CLIENT);
    memcpy(p + OFF_CLIENT, &id, 4);
    memcpy(p + OFF_SEQ, &seq, 4);
    memcpy(p + OFF_TS, &now, 8);
    if (opt.mode != MODE_TURN) return opt.size;
    if (!opt.send_ind) {
        stun_chdata_header(buf, CHANNEL, (uint16_t)opt.size);
        return hdr + opt.size;
    }
    /* Send indication, built around the payload in place */
    uint8_t tid[STUN_TID_LEN];
    memcpy(tid, &now, 8);
    memcpy(tid + 8, &id, 4);
    uint8_t tmp[BUF_SIZE];
    memcpy(tmp, p, (size_t)opt.size);
    struct stun_enc e;
    union stun_addr pa = peer_of(c);
    stun_enc_init(&e, buf, BUF_SIZE, stun_type(STUN_SEND, STUN_INDICATION), tid);
    stun_enc_xor_addr(&e, STUN_ATTR_XOR_PEER_ADDRESS, &pa);
    stun_enc_attr(&e, STUN_ATTR_DATA, tmp, (size_t)opt.size);
    return stun_enc_finish(&e);
}

static uint8_t filler[BUF_SIZE];

static bool send_data(struct client *c, uint64_t now)
{
    uint8_t buf[BUF_SIZE];
    memcpy(buf, filler, sizeof buf);
    int len = frame(c, buf, now);
    if (len <= 0) return false;
    if (send(c->fd, buf, (size_t)len, 0) != len) {
        if (cur) cur->send_fail++;
        return false;
    }
    c->outstanding++;
    if (cur && in_window) cur->sent++;
    return true;
}

/* An echoed payload came back to client c. */
static void got_echo(struct client *c, const uint8_t *p, size_t len, uint64_t now)
{
    if (len < PAYLOAD_MIN) return;
    uint64_t ts;
    uint32_t id;
    memcpy(&id, p + OFF_CLIENT, 4);
    memcpy(&ts, p + OFF_TS, 8);
    if (id != (uint32_t)(c - cl) || ts > now) return;
    if (c->outstanding) c->outstanding--;
    if (!cur) return;
    if (in_window) cur->client_rx++;
    if (ts >= win_start && ts < win_end) {
        cur->received++;
        hist_add(&cur->h, now - ts);
    }
}

static void client_readable(struct client *c, uint64_t now)
{
    uint8_t bufs[RX_BATCH][BUF_SIZE];
    struct mmsghdr msgs[RX_BATCH];
    struct iovec iov[RX_BATCH];
    for (;;) {
        for (int i = 0; i < RX_BATCH; i++) {
            iov[i] = (struct iovec){bufs[i], BUF_SIZE};
            msgs[i].msg_hdr = (struct msghdr){.msg_iov = &iov[i], .msg_iovlen = 1};
        }
        int n = recvmmsg(c->fd, msgs, RX_BATCH, MSG_DONTWAIT, NULL);
        if (n <= 0) return;
        for (int i = 0; i < n; i++) {
            const uint8_t *p = bufs[i];
            size_t len = msgs[i].msg_len;
            if (opt.mode != MODE_TURN) {
                got_echo(c, p, len, now);
                continue;
            }
            if (len >= 4 && p[0] >= 0x40 && p[0] <= 0x7F) {
                uint16_t ch, dlen;
                const uint8_t *data;
                if (stun_chdata_decode(p, len, false, &ch, &data, &dlen) > 0)
                    got_echo(c, data, dlen, now);
                continue;
            }
            if (c->state != ST_READY) {
                handle_response(c, p, len, now);
                continue;
            }
            struct stun_msg m;
            if (stun_decode(&m, p, len) == 0 && m.type == stun_type(STUN_DATA, STUN_INDICATION)) {
                const struct stun_attr *d = stun_find(&m, STUN_ATTR_DATA);
                if (d) got_echo(c, d->val, d->len, now);
            }
        }
        if (n < RX_BATCH) return;
    }
}

/* An echo peer: send every datagram back where it came from. */
static void peer_readable(int fd)
{
    static uint8_t bufs[RX_BATCH][BUF_SIZE];
    static struct sockaddr_in from[RX_BATCH];
    struct mmsghdr msgs[RX_BATCH];
    struct iovec iov[RX_BATCH];
    for (;;) {
        for (int i = 0; i < RX_BATCH; i++) {
            iov[i] = (struct iovec){bufs[i], BUF_SIZE};
            msgs[i].msg_hdr = (struct msghdr){.msg_iov = &iov[i],
                                              .msg_iovlen = 1,
                                              .msg_name = &from[i],
                                              .msg_namelen = sizeof from[i]};
        }
        int n = recvmmsg(fd, msgs, RX_BATCH, MSG_DONTWAIT, NULL);
        if (n <= 0) return;
        if (cur && in_window) cur->peer_rx += (unsigned)n;
        for (int i = 0; i < n; i++)
            iov[i].iov_len = msgs[i].msg_len;
        int done = 0;
        while (done < n) {
            int k = sendmmsg(fd, msgs + done, (unsigned)(n - done), 0);
            if (k < 0) {
                if (errno == EINTR) continue;
                break;
            }
            done += k;
            if (done < n) done++; /* skip the one that failed */
        }
        if (n < RX_BATCH) return;
    }
}

static void poll_once(int timeout_ms)
{
    struct epoll_event evs[256];
    int n = epoll_wait(ep, evs, 256, timeout_ms);
    uint64_t now = now_ns();
    for (int i = 0; i < n; i++) {
        uint32_t tag = evs[i].data.u32;
        if (tag & PEER_TAG)
            peer_readable(peer_fd[tag & ~PEER_TAG]);
        else
            client_readable(&cl[tag], now);
    }
}

/* ---- phases ---- */

static double setup_s, setup_rate;
static long rss_before, rss_after, rss_flood, fds_before, fds_after;
static double setup_cpu_s;

static void run_setup(void)
{
    uint64_t t0 = now_ns(), last_scan = t0;
    double cpu0 = server_cpu_s();
    int next = 0;
    in_setup = 0;
    while ((next < opt.nclients || in_setup > 0) && !interrupted) {
        uint64_t now = now_ns();
        while (next < opt.nclients && in_setup < opt.concurrency) {
            in_setup++;
            start_transaction(&cl[next++], ST_ALLOC1, now);
        }
        poll_once(1);
        if (now - last_scan > 20000000ull) {
            check_retransmits(now, next);
            last_scan = now;
        }
    }
    setup_s = (double)(now_ns() - t0) / 1e9;
    setup_cpu_s = server_cpu_s() - cpu0;
    setup_rate = setup_s > 0 ? ready / setup_s : 0;
}

/* Invalid datagrams of several kinds from every client socket, as fast as possible. */
static void run_flood(void)
{
    uint8_t junk[4][200];
    size_t lens[4] = {200, 20, 164, 7};
    if (getrandom(junk[0], sizeof junk[0], 0) < 0) die("getrandom");
    junk[0][0] &= 0x3F;
    /* a STUN header with a bad cookie */
    memset(junk[1], 0, 20);
    junk[1][1] = 0x01;
    /* ChannelData on an unbound channel */
    stun_chdata_header(junk[2], 0x7F00, 160);
    memset(junk[2] + 4, 0xAB, 160);
    memcpy(junk[3], "garbage", 7);
    uint64_t end = now_ns() + (uint64_t)(opt.flood_s * 1e9);
    uint64_t i = 0;
    while (now_ns() < end && !interrupted) {
        for (int k = 0; k < 256; k++, i++) {
            struct client *c = &cl[i % (uint64_t)opt.nclients];
            send(c->fd, junk[i % 4], lens[i % 4], 0);
        }
        poll_once(0);
    }
    rss_flood = server_rss_kb();
    fprintf(stderr, "tern-loadgen: flood sent %" PRIu64 " invalid datagrams\n", i);
}

static void run_step(struct step *s)
{
    cur = s;
    in_window = false;
    uint64_t t0 = now_ns();
    win_start = t0 + (uint64_t)(opt.warmup * 1e9);
    win_end = win_start + (uint64_t)(opt.duration * 1e9);
    uint64_t stop_send = win_end, stop_all = win_end + (uint64_t)(opt.drain * 1e9);
    double cpu0 = 0, busy0 = 0;
    uint64_t sent_total = 0, next_client = 0, last_scan = t0, t_win0 = 0;
    uint64_t sent_at_win0 = 0;
    for (int i = 0; i < opt.nclients; i++)
        cl[i].outstanding = 0;
    if (!s->rate)
        for (int i = 0; i < opt.nclients; i++)
            for (int w = 0; w < opt.window; w++)
                if (cl[i].state == ST_READY) send_data(&cl[i], t0);
    for (;;) {
        uint64_t now = now_ns();
        if (!in_window && now >= win_start && now < win_end) {
            in_window = true;
            cpu0 = server_cpu_s();
            busy0 = core_busy_s();
            t_win0 = now_ns();
            sent_at_win0 = sent_total;
        } else if (in_window && now >= win_end) {
            in_window = false;
            s->server_cpu_s = server_cpu_s() - cpu0;
            s->core_busy_s = core_busy_s() - busy0;
            s->window_s = (double)(now - t_win0) / 1e9;
            if (s->rate) s->offered_actual = (double)(sent_total - sent_at_win0) / s->window_s;
        }
        if (now >= stop_all || interrupted) break;
        if (now < stop_send) {
            if (s->rate) {
                uint64_t due = (uint64_t)((double)(now - t0) * s->rate / 1e9);
                for (int k = 0; k < 64 && sent_total < due; k++) {
                    struct client *c = &cl[next_client++ % (uint64_t)opt.nclients];
                    if (c->state != ST_READY) continue;
                    send_data(c, now);
                    sent_total++;
                }
            } else if (now - last_scan > 50000000ull) {
                /* closed loop: a client whose window has been lost restarts it */
                for (int i = 0; i < opt.nclients; i++) {
                    struct client *c = &cl[i];
                    if (c->state != ST_READY) continue;
                    if (c->deadline && c->deadline < now) c->outstanding = 0;
                    while (c->outstanding < (uint32_t)opt.window && send_data(c, now)) {
                    }
                    c->deadline = now + 200000000ull;
                }
                last_scan = now;
            }
        }
        /* poll: clients answered send next in closed loop */
        struct epoll_event evs[256];
        int n = epoll_wait(ep, evs, 256, 0);
        now = now_ns();
        for (int i = 0; i < n; i++) {
            uint32_t tag = evs[i].data.u32;
            if (tag & PEER_TAG) {
                peer_readable(peer_fd[tag & ~PEER_TAG]);
                continue;
            }
            struct client *c = &cl[tag];
            client_readable(c, now);
            if (!s->rate && now < stop_send && c->state == ST_READY) {
                while (c->outstanding < (uint32_t)opt.window && send_data(c, now)) {
                }
                c->deadline = now + 200000000ull;
            }
        }
    }
    if (!s->rate && s->window_s > 0) s->offered_actual = (double)s->sent / s->window_s;
    cur = NULL;
}

/* ---- output ---- */

static void print_step(const struct step *s, bool comma)
{
    double loss = s->sent ? (double)(s->sent - (s->received < s->sent ? s->received : s->sent)) : 0;
    double relayed = (double)(s->peer_rx + s->client_rx);
    double us_pp = relayed > 0 && opt.server_pid > 0 ? s->server_cpu_s * 1e6 / relayed : 0;
    printf(
        "    {\"offered_pps\": %.0f, \"offered_actual_pps\": %.0f, \"window_s\": %.3f, "
        "\"sent\": %" PRIu64 ", \"received\": %" PRIu64 ", \"loss\": %.0f, \"loss_ratio\": %.6f, "
        "\"echo_pps\": %.0f, \"relayed_pps\": %.0f, \"send_fail\": %" PRIu64 ", "
        "\"peer_rx\": %" PRIu64 ", \"client_rx\": %" PRIu64 ",\n"
        "     \"rtt_us\": {\"p50\": %.1f, \"p90\": %.1f, \"p99\": %.1f, \"p999\": %.1f, "
        "\"max\": %.1f, \"mean\": %.1f},\n"
        "     \"server_cpu_s\": %.4f, \"server_cpu_util\": %.4f, \"us_per_pkt\": %.3f, "
        "\"server_core_other_util\": %.4f}%s\n",
        s->rate, s->offered_actual, s->window_s, s->sent, s->received, loss,
        s->sent ? loss / (double)s->sent : 0, s->window_s ? (double)s->client_rx / s->window_s : 0,
        s->window_s ? relayed / s->window_s : 0, s->send_fail, s->peer_rx, s->client_rx,
        hist_pct_us(&s->h, 0.50), hist_pct_us(&s->h, 0.90), hist_pct_us(&s->h, 0.99),
        hist_pct_us(&s->h, 0.999), (double)s->h.max_ns / 1000.0,
        s->h.n ? (double)s->h.sum_ns / (double)s->h.n / 1000.0 : 0, s->server_cpu_s,
        s->window_s ? s->server_cpu_s / s->window_s : 0, us_pp,
        s->window_s && opt.server_pid > 0 ? (s->core_busy_s - s->server_cpu_s) / s->window_s : 0,
        comma ? "," : "");
}

static const char *mode_name(void)
{
    return opt.mode == MODE_DIRECT ? "direct"
           : opt.mode == MODE_FWD  ? "fwd"
           : opt.send_ind          ? "turn-send"
                                   : "turn";
}

static void print_head(void)
{
    int ok = opt.mode == MODE_TURN ? ready : opt.nclients;
    printf(
        "{\"mode\": \"%s\", \"allocs\": %d, \"ready\": %d, \"failed\": %d, \"size\": %d, "
        "\"window\": %d,\n \"setup_s\": %.4f, \"setup_rate\": %.1f, \"setup_server_cpu_s\": %.4f, "
        "\"setup_us_per_alloc\": %.2f,\n \"rss_before_kb\": %ld, \"rss_after_kb\": %ld, "
        "\"rss_per_alloc_kb\": %.3f, \"server_fds_before\": %ld, \"server_fds_after\": %ld",
        mode_name(), opt.nclients, ok, failed, opt.size, opt.window, setup_s, setup_rate,
        setup_cpu_s, ready ? setup_cpu_s * 1e6 / ready : 0, rss_before, rss_after,
        ready && rss_before ? (double)(rss_after - rss_before) / ready : 0, fds_before, fds_after);
    printf(",\n \"errors\": {");
    bool first = true;
    for (int i = 0; i < 700; i++)
        if (errors[i]) {
            if (i)
                printf("%s\"%d\": %" PRIu64, first ? "" : ", ", i, errors[i]);
            else
                printf("%s\"timeout\": %" PRIu64, first ? "" : ", ", errors[i]);
            first = false;
        }
    printf("}");
}

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: tern-loadgen [options]\n"
            "  --server ADDR:PORT   TURN server (repeat: clients spread over them)\n"
            "  --direct             no relay: send to the echo peers (baseline RTT)\n"
            "  --fwd ADDR:PORT      tern-fwd (8-byte return tag protocol) instead of TURN\n"
            "  --user U --pass P    long-term credentials (bench / benchpw)\n"
            "  --allocs N           clients, one allocation each (100)\n"
            "  --client-addrs K     bind clients on 127.0.1.1 .. 127.0.1.K (0: 127.0.0.1)\n"
            "  --peers N            echo peer sockets (4); --peer-ip IP (127.0.0.1)\n"
            "  --peer-port P        first echo peer's port (for tern-fwd --peer)\n"
            "  --send-ind           Send/Data indications (CreatePermission) instead of channels\n"
            "  --rate PPS[,PPS..]   open loop, paced total rate; a list runs a ladder\n"
            "  --window W           closed loop: W messages in flight per client\n"
            "  --stop-loss R        ladder: stop after a step losing more than R (0.01)\n"
            "  --size BYTES         payload size (160, >= %d)\n"
            "  --duration S --warmup S --drain S   measured window (3), before (1), after (0.5)\n"
            "  --concurrency C      set-up transactions in flight (64)\n"
            "  --setup-only         only allocate; report the rate\n"
            "  --hold S             keep allocations open S seconds after the report\n"
            "  --flood S            after set-up, send invalid datagrams for S seconds\n"
            "  --server-pid PID     read the server's CPU time and RSS from /proc\n"
            "  --server-cpu N       the core the server is pinned to (0): its busy time from\n"
            "                       /proc/stat shows interference from other work\n"
            "  --extra-pids P,P..   threads charged to the server too (its NICs' NAPI threads)\n"
            "  --peer-netns NAME    make the echo peers in network namespace NAME\n"
            "  --client-ip IP       bind every client to IP\n",
            PAYLOAD_MIN);
}

static int parse_rates(const char *s)
{
    opt.nrates = 0;
    while (*s && opt.nrates < MAX_STEPS) {
        char *end;
        double r = strtod(s, &end);
        if (end == s || r <= 0) return -1;
        opt.rates[opt.nrates++] = r;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return opt.nrates ? 0 : -1;
}

int main(int argc, char **argv)
{
    static const struct option lo[] = {
        {"server", required_argument, NULL, 's'},
        {"direct", no_argument, NULL, 'D'},
        {"fwd", required_argument, NULL, 'F'},
        {"user", required_argument, NULL, 'u'},
        {"pass", required_argument, NULL, 'p'},
        {"allocs", required_argument, NULL, 'n'},
        {"client-addrs", required_argument, NULL, 'A'},
        {"peers", required_argument, NULL, 'P'},
        {"peer-ip", required_argument, NULL, 'I'},
        {"peer-port", required_argument, NULL, 'Q'},
        {"send-ind", no_argument, NULL, 'S'},
        {"rate", required_argument, NULL, 'r'},
        {"window", required_argument, NULL, 'w'},
        {"stop-loss", required_argument, NULL, 'L'},
        {"size", required_argument, NULL, 'z'},
        {"duration", required_argument, NULL, 'd'},
        {"warmup", required_argument, NULL, 'W'},
        {"drain", required_argument, NULL, 'R'},
        {"concurrency", required_argument, NULL, 'c'},
        {"setup-only", no_argument, NULL, 'O'},
        {"hold", required_argument, NULL, 'H'},
        {"flood", required_argument, NULL, 'f'},
        {"server-pid", required_argument, NULL, 'x'},
        {"server-cpu", required_argument, NULL, 'X'},
        {"extra-pids", required_argument, NULL, 'E'},
        {"peer-netns", required_argument, NULL, 'N'},
        {"client-ip", required_argument, NULL, 'C'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    inet_pton(AF_INET, "127.0.0.1", &opt.peer_ip);
    int o;
    while ((o = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (o) {
        case 's':
            if (opt.nservers == MAX_SERVERS ||
                parse_hostport(optarg, &opt.servers[opt.nservers++])) {
                fprintf(stderr, "tern-loadgen: bad --server %s\n", optarg);
                return 2;
            }
            break;
        case 'D':
            opt.mode = MODE_DIRECT;
            break;
        case 'F':
            opt.mode = MODE_FWD;
            if (parse_hostport(optarg, &opt.servers[0])) return 2;
            opt.nservers = 1;
            break;
        case 'u':
            opt.user = optarg;
            break;
        case 'p':
            opt.pass = optarg;
            break;
        case 'n':
            opt.nclients = atoi(optarg);
            break;
        case 'A':
            opt.client_addrs = atoi(optarg);
            break;
        case 'P':
            opt.npeers = atoi(optarg);
            break;
        case 'I':
            if (inet_pton(AF_INET, optarg, &opt.peer_ip) != 1) return 2;
            break;
        case 'E':
            for (char *s = optarg; *s && opt.nextra < 16;) {
                opt.extra_pids[opt.nextra++] = atoi(s);
                char *c = strchr(s, ',');
                if (!c) break;
                s = c + 1;
            }
            break;
        case 'N':
            opt.peer_netns = optarg;
            break;
        case 'C':
            if (inet_pton(AF_INET, optarg, &opt.client_ip) != 1) return 2;
            opt.have_client_ip = true;
            break;
        case 'Q':
            opt.peer_port = (uint16_t)atoi(optarg);
            break;
        case 'S':
            opt.send_ind = true;
            break;
        case 'r':
            if (parse_rates(optarg)) {
                fprintf(stderr, "tern-loadgen: bad --rate %s\n", optarg);
                return 2;
            }
            break;
        case 'w':
            opt.window = atoi(optarg);
            break;
        case 'L':
            opt.stop_loss = atof(optarg);
            break;
        case 'z':
            opt.size = atoi(optarg);
            break;
        case 'd':
            opt.duration = atof(optarg);
            break;
        case 'W':
            opt.warmup = atof(optarg);
            break;
        case 'R':
            opt.drain = atof(optarg);
            break;
        case 'c':
            opt.concurrency = atoi(optarg);
            break;
        case 'O':
            opt.setup_only = true;
            break;
        case 'H':
            opt.hold_s = atoi(optarg);
            break;
        case 'f':
            opt.flood_s = atof(optarg);
            break;
        case 'x':
            opt.server_pid = atoi(optarg);
            break;
        case 'X':
            opt.server_cpu = atoi(optarg);
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (opt.nclients < 1 || opt.npeers < 1 || opt.npeers > MAX_PEERS || opt.size < PAYLOAD_MIN ||
        opt.size > 1400 || opt.concurrency < 1 || opt.client_addrs < 0 || opt.client_addrs > 250 ||
        (opt.mode != MODE_DIRECT && opt.nservers == 0) ||
        (!opt.setup_only && !opt.nrates && opt.window < 1) || (opt.nrates && opt.window)) {
        fprintf(stderr, "tern-loadgen: need --server (or --direct/--fwd), and one of --rate, "
                        "--window, --setup-only\n");
        usage(stderr);
        return 2;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)opt.nclients + 100) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    for (size_t i = 0; i < sizeof filler; i++)
        filler[i] = (uint8_t)(i * 7 + 1);

    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1");
    for (int i = 0; i < opt.npeers; i++) {
        peer_fd[i] = udp_bound_in(opt.peer_netns, opt.peer_ip, i == 0 ? opt.peer_port : 0);
        bufsize(peer_fd[i], 8 << 20);
        socklen_t l = sizeof peer_addr[i];
        getsockname(peer_fd[i], (struct sockaddr *)&peer_addr[i], &l);
        watch(peer_fd[i], PEER_TAG | (uint32_t)i);
    }
    cl = calloc((size_t)opt.nclients, sizeof *cl);
    if (!cl) die("calloc");
    bool data = !opt.setup_only;
    for (int i = 0; i < opt.nclients; i++) {
        struct client *c = &cl[i];
        struct in_addr ip;
        if (opt.have_client_ip)
            ip = opt.client_ip;
        else if (opt.client_addrs)
            ip.s_addr = htonl(0x7F000100u | (uint32_t)(i % opt.client_addrs + 1));
        else
            inet_pton(AF_INET, "127.0.0.1", &ip);
        c->fd = udp_bound(ip, 0);
        if (data) bufsize(c->fd, 1 << 20);
        c->peer = (uint8_t)(i % opt.npeers);
        const struct sockaddr_in *to =
            opt.mode == MODE_DIRECT ? &peer_addr[c->peer] : &opt.servers[i % opt.nservers];
        if (connect(c->fd, (const struct sockaddr *)to, sizeof *to) < 0) die("connect");
        watch(c->fd, (uint32_t)i);
        if (opt.mode != MODE_TURN) c->state = ST_READY;
    }

    rss_before = server_rss_kb();
    fds_before = server_fds();
    if (opt.mode == MODE_TURN) run_setup();
    rss_after = server_rss_kb(); /* every allocation still held (the clients' sockets are open) */
    fds_after = server_fds();
    if (interrupted) return 1;

    print_head();
    if (opt.setup_only) {
        if (opt.flood_s > 0) {
            run_flood();
            printf(",\n \"flood_s\": %.1f, \"rss_after_flood_kb\": %ld", opt.flood_s, rss_flood);
        }
        printf("}\n");
        fflush(stdout);
        for (int i = 0; i < opt.hold_s * 10 && !interrupted; i++)
            poll_once(100);
        return ready == opt.nclients ? 0 : 1;
    }

    printf(",\n \"steps\": [\n");
    int nsteps = opt.nrates ? opt.nrates : 1;
    for (int k = 0; k < nsteps && !interrupted; k++) {
        struct step s = {.rate = opt.nrates ? opt.rates[k] : 0};
        s.h.b = calloc(HIST_BUCKETS, sizeof *s.h.b);
        if (!s.h.b) die("calloc");
        run_step(&s);
        double loss = s.sent ? 1.0 - (double)s.received / (double)s.sent : 1;
        bool last =
            k == nsteps - 1 || loss > opt.stop_loss || (s.rate && s.offered_actual < 0.9 * s.rate);
        print_step(&s, !last);
        fflush(stdout);
        free(s.h.b);
        if (last) break;
        /* let queues empty between steps */
        uint64_t quiet = now_ns() + 300000000ull;
        while (now_ns() < quiet)
            poll_once(10);
    }
    printf(" ]}\n");
    return 0;
}
