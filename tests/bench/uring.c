/* uring.c: tern-uring-probe, the io_uring experiment of the performance issue, measured at the
 * mechanism level. A relay's client->peer direction sends each datagram from its allocation's
 * own relay socket, so sendmmsg cannot batch it across allocations: today that is one sendmsg
 * system call per datagram. io_uring could submit a whole receive batch's worth of sends, over
 * many sockets, in one system call. This measures what that saves on this machine:
 *
 *   sendto     one sendto per datagram, round-robin over N sockets (ternd today)
 *   uring      the same datagrams as IORING_OP_SENDMSG (MSG_DONTWAIT), B per io_uring_enter
 *   sendmmsg   B datagrams per sendmmsg from ONE socket (the bare forwarder's case, for scale)
 *
 * The sink socket is drained by recvmmsg between rounds (not timed). CPU time is the thread's
 * (CLOCK_THREAD_CPUTIME_ID), which on loopback includes the delivery to the sink.
 * Usage: tern-uring-probe [--sockets N] [--batch B] [--packets M] [--size BYTES] */
#include <errno.h>
#include <getopt.h>
#include <liburing.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int udp_socket(struct sockaddr_in *bound, int rcvbuf)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (rcvbuf) setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
    socklen_t l = sizeof a;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) || getsockname(fd, (struct sockaddr *)&a, &l)) {
        close(fd);
        return -1;
    }
    if (bound) *bound = a;
    return fd;
}

static void drain(int sink)
{
    static char buf[64][2048];
    struct mmsghdr m[64];
    struct iovec v[64];
    for (;;) {
        for (int i = 0; i < 64; i++) {
            v[i] = (struct iovec){buf[i], sizeof buf[i]};
            memset(&m[i], 0, sizeof m[i]);
            m[i].msg_hdr.msg_iov = &v[i];
            m[i].msg_hdr.msg_iovlen = 1;
        }
        if (recvmmsg(sink, m, 64, MSG_DONTWAIT, NULL) <= 0) return;
    }
}

int main(int argc, char **argv)
{
    int nsock = 100, batch = 32, packets = 400000, size = 164;
    static const struct option opts[] = {
        {"sockets", required_argument, NULL, 'n'}, {"batch", required_argument, NULL, 'b'},
        {"packets", required_argument, NULL, 'm'}, {"size", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0}};
    for (int o; (o = getopt_long(argc, argv, "n:b:m:s:h", opts, NULL)) != -1;) {
        switch (o) {
        case 'n':
            nsock = atoi(optarg);
            break;
        case 'b':
            batch = atoi(optarg);
            break;
        case 'm':
            packets = atoi(optarg);
            break;
        case 's':
            size = atoi(optarg);
            break;
        default:
            fprintf(
                stderr,
                "usage: tern-uring-probe [--sockets N] [--batch B] [--packets M] [--size BYTES]\n");
            return o == 'h' ? 0 : 2;
        }
    }
    if (nsock < 1 || batch < 1 || batch > 256 || packets < batch || size < 1 || size > 1400) {
        fprintf(stderr, "tern-uring-probe: bad arguments\n");
        return 2;
    }
    struct sockaddr_in dst;
    int sink = udp_socket(&dst, 64 << 20);
    int *fds = calloc((size_t)nsock, sizeof *fds);
    if (sink < 0 || !fds) {
        perror("tern-uring-probe: socket");
        return 1;
    }
    for (int i = 0; i < nsock; i++)
        if ((fds[i] = udp_socket(NULL, 0)) < 0) {
            perror("tern-uring-probe: socket");
            return 1;
        }
    char *data = calloc(1, (size_t)size);
    struct io_uring ring;
    int rc = io_uring_queue_init(256, &ring, 0);
    if (rc < 0) {
        fprintf(stderr, "tern-uring-probe: io_uring_queue_init: %s\n", strerror(-rc));
        return 1;
    }
    struct iovec iov = {data, (size_t)size};
    struct msghdr mh = {
        .msg_name = &dst, .msg_namelen = sizeof dst, .msg_iov = &iov, .msg_iovlen = 1};
    struct mmsghdr *mm = calloc((size_t)batch, sizeof *mm);
    for (int i = 0; i < batch; i++)
        mm[i].msg_hdr = mh;

    double res[3] = {0};
    long errors[3] = {0};
    for (int rep = 0; rep < 3; rep++) { /* interleaved repetitions; the best of three counts */
        for (int mode = 0; mode < 3; mode++) {
            double cpu = 0;
            int sent = 0, k = 0;
            while (sent < packets) {
                double t0 = thread_cpu_ns();
                if (mode == 0) {
                    for (int i = 0; i < batch; i++, k++)
                        if (sendto(fds[k % nsock], data, (size_t)size, MSG_DONTWAIT,
                                   (struct sockaddr *)&dst, sizeof dst) < 0)
                            errors[0]++;
                } else if (mode == 1) {
                    for (int i = 0; i < batch; i++, k++) {
                        struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
                        io_uring_prep_sendmsg(sqe, fds[k % nsock], &mh, MSG_DONTWAIT);
                    }
                    io_uring_submit(&ring);
                    struct io_uring_cqe *cqes[256];
                    unsigned n = io_uring_peek_batch_cqe(&ring, cqes, (unsigned)batch);
                    for (unsigned i = 0; i < n; i++)
                        errors[1] += cqes[i]->res < 0;
                    io_uring_cq_advance(&ring, n);
                } else {
                    int n = sendmmsg(fds[0], mm, (unsigned)batch, MSG_DONTWAIT);
                    if (n < batch) errors[2] += batch - (n < 0 ? 0 : n);
                }
                cpu += thread_cpu_ns() - t0;
                sent += batch;
                drain(sink);
            }
            double per = cpu / sent;
            if (!rep || per < res[mode]) res[mode] = per;
        }
    }
    printf(
        "{\"sockets\": %d, \"batch\": %d, \"packets\": %d, \"size\": %d,\n"
        " \"ns_per_packet\": {\"sendto\": %.0f, \"uring\": %.0f, \"sendmmsg_one_socket\": %.0f},\n"
        " \"errors\": {\"sendto\": %ld, \"uring\": %ld, \"sendmmsg\": %ld},\n"
        " \"uring_saves_ns_per_packet\": %.0f}\n",
        nsock, batch, packets, size, res[0], res[1], res[2], errors[0], errors[1], errors[2],
        res[0] - res[1]);
    io_uring_queue_exit(&ring);
    return 0;
}
