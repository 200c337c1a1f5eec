/* unauthflood.c: tern-unauthflood, a flood of unauthenticated 20-byte Allocate requests (no
 * attributes) from one or several loopback source addresses, as fast as one core sends them
 * (sendmmsg batches) or paced; counts the answers that come back and prints one JSON line. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH       64
#define MAX_SOURCES 1024
#define REQ_LEN     20

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(void)
{
    fprintf(stderr, "Usage: tern-unauthflood --server IP:PORT [--duration S] [--rate PPS]\n"
                    "                        [--base IP] [--sources N] [--no-read]\n"
                    "  --server IP:PORT  the TURN UDP listener (IPv4)\n"
                    "  --duration S      seconds of flood (2)\n"
                    "  --rate PPS        paced rate; 0: as fast as one core sends (0)\n"
                    "  --base IP         first source address (127.0.0.2)\n"
                    "  --sources N       source addresses base, base+1, ... (1)\n"
                    "  --no-read         never read the answers (a tiny receive buffer drops\n"
                    "                    them), so that they cost the sender nothing: the same\n"
                    "                    rate with and without a limit; answers are then -1\n"
                    "Prints {\"sent\", \"seconds\", \"rate_pps\", \"answers\", \"answers_401\"}:\n"
                    "answers counted until 0.5 s after the last request.\n");
}

struct counts {
    uint64_t answers, a401;
};

/* Drain what came back on fd: Allocate error responses with ERROR-CODE 401 are a401. */
static int noread_all;

static void drain(int fd, struct counts *c)
{
    if (noread_all) return;
    static uint8_t buf[BATCH][1500];
    struct mmsghdr mm[BATCH];
    struct iovec iov[BATCH];
    for (;;) {
        for (int i = 0; i < BATCH; i++) {
            iov[i] = (struct iovec){buf[i], sizeof buf[i]};
            mm[i] = (struct mmsghdr){.msg_hdr = {.msg_iov = &iov[i], .msg_iovlen = 1}};
        }
        int n = recvmmsg(fd, mm, BATCH, MSG_DONTWAIT, NULL);
        if (n <= 0) return;
        for (int i = 0; i < n; i++) {
            const uint8_t *p = buf[i];
            size_t len = mm[i].msg_len;
            c->answers++;
            if (len < 20 || p[0] != 0x01 || p[1] != 0x13) continue; /* Allocate error */
            for (size_t off = 20; off + 4 <= len;) {
                unsigned type = (unsigned)(p[off] << 8 | p[off + 1]);
                size_t alen = (size_t)(p[off + 2] << 8 | p[off + 3]);
                if (off + 4 + alen > len) break;
                if (type == 0x0009 && alen >= 4 && p[off + 6] == 4 && p[off + 7] == 1) c->a401++;
                off += 4 + ((alen + 3) & ~(size_t)3);
            }
        }
    }
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"server", required_argument, NULL, 's'},  {"duration", required_argument, NULL, 'd'},
        {"rate", required_argument, NULL, 'r'},    {"base", required_argument, NULL, 'b'},
        {"sources", required_argument, NULL, 'n'}, {"no-read", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0}};
    struct sockaddr_in srv = {.sin_family = AF_INET};
    double duration = 2, rate = 0;
    const char *base = "127.0.0.2";
    int nsrc = 1, o, noread = 0;
    char host[64];
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 's': {
            const char *colon = strrchr(optarg, ':');
            if (!colon || (size_t)(colon - optarg) >= sizeof host) return usage(), 2;
            memcpy(host, optarg, (size_t)(colon - optarg));
            host[colon - optarg] = 0;
            if (inet_pton(AF_INET, host, &srv.sin_addr) != 1) return usage(), 2;
            srv.sin_port = htons((uint16_t)atoi(colon + 1));
            break;
        }
        case 'd':
            duration = atof(optarg);
            break;
        case 'r':
            rate = atof(optarg);
            break;
        case 'b':
            base = optarg;
            break;
        case 'n':
            nsrc = atoi(optarg);
            break;
        case 'q':
            noread = 1;
            break;
        default:
            usage();
            return o == 'h' ? 0 : 2;
        }
    }
    noread_all = noread;
    if (!srv.sin_port || nsrc < 1 || nsrc > MAX_SOURCES || duration <= 0) return usage(), 2;

    static int fds[MAX_SOURCES];
    struct in_addr b;
    if (inet_pton(AF_INET, base, &b) != 1) return usage(), 2;
    for (int i = 0; i < nsrc; i++) {
        struct sockaddr_in src = {.sin_family = AF_INET,
                                  .sin_addr.s_addr = htonl(ntohl(b.s_addr) + (uint32_t)i)};
        int rcv = noread ? 1 : 4 << 20; /* the kernel rounds 1 up to its minimum */
        fds[i] = socket(AF_INET, SOCK_DGRAM, 0);
        if (fds[i] < 0 || setsockopt(fds[i], SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv) ||
            bind(fds[i], (struct sockaddr *)&src, sizeof src) ||
            connect(fds[i], (struct sockaddr *)&srv, sizeof srv)) {
            perror("tern-unauthflood: socket");
            return 1;
        }
    }

    /* Each request: Allocate, length 0, the magic cookie, a fresh transaction ID. */
    static uint8_t req[BATCH][REQ_LEN];
    struct mmsghdr mm[BATCH];
    struct iovec iov[BATCH];
    for (int i = 0; i < BATCH; i++) {
        static const uint8_t hdr[8] = {0x00, 0x03, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42};
        memcpy(req[i], hdr, 8);
        iov[i] = (struct iovec){req[i], REQ_LEN};
        mm[i] = (struct mmsghdr){.msg_hdr = {.msg_iov = &iov[i], .msg_iovlen = 1}};
    }
    struct counts c = {0};
    uint64_t sent = 0, seq = (uint64_t)getpid() << 40, errors = 0;
    double t0 = now_s(), t = t0;
    int cur = 0;
    while ((t = now_s()) - t0 < duration) {
        int n = BATCH;
        if (rate > 0) {
            double due = (t - t0) * rate - (double)sent;
            if (due < 1) {
                drain(fds[cur], &c);
                continue;
            }
            if (due < n) n = (int)due;
        }
        for (int i = 0; i < n; i++) {
            seq++;
            memcpy(req[i] + 8, &seq, 8);
            memcpy(req[i] + 16, &cur, 4);
        }
        int k = sendmmsg(fds[cur], mm, (unsigned)n, 0);
        if (k > 0)
            sent += (uint64_t)k;
        else if (errno != EAGAIN && errno != ENOBUFS && errno != ECONNREFUSED)
            errors++;
        drain(fds[cur], &c);
        cur = (cur + 1) % nsrc;
    }
    double secs = t - t0;
    for (double end = now_s() + 0.5; now_s() < end;) {
        for (int i = 0; i < nsrc; i++)
            drain(fds[i], &c);
        usleep(1000);
    }
    printf("{\"sent\": %llu, \"seconds\": %.3f, \"rate_pps\": %.0f, \"answers\": %lld, "
           "\"answers_401\": %lld, \"send_errors\": %llu, \"sources\": %d}\n",
           (unsigned long long)sent, secs, (double)sent / secs,
           noread ? -1LL : (long long)c.answers, noread ? -1LL : (long long)c.a401,
           (unsigned long long)errors, nsrc);
    return 0;
}
