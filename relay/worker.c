/* worker.c: the relay's workers: sockets bound per worker with SO_REUSEPORT, one epoll loop each. */
#include <errno.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "net.h"
#include "worker.h"

const char *const relay_counter_names[RELAY_C_COUNT] = {
#define X(name, help) #name,
    RELAY_COUNTERS(X)
#undef X
};

struct relay {
    const struct tern_config *cfg;
    SSL_CTX *tls; /* shared by the TLS listeners of all workers */
    struct worker *workers;
    unsigned nworkers;
};

static uint64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Open one listening socket. On failure logs address and reason and returns -1. */
static int open_listener(const struct cfg_listen *cl, union stun_addr *addr)
{
    int type = cl->transport == CFG_UDP ? SOCK_DGRAM : SOCK_STREAM;
    int fd = socket(addr->sa.sa_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    const char *step = "socket";
    int one = 1;
    if (fd < 0) goto fail;
    step = "SO_REUSEPORT";
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one))) goto fail;
    if (type == SOCK_STREAM) {
        step = "SO_REUSEADDR";
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one))) goto fail;
    }
    /* [::] must not also take IPv4: an IPv4 listener may sit on the same port. */
    step = "IPV6_V6ONLY";
    if (addr->sa.sa_family == AF_INET6 &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)))
        goto fail;
    step = "bind";
    if (bind(fd, &addr->sa, addr_len(addr))) goto fail;
    if (type == SOCK_STREAM) {
        step = "listen";
        if (listen(fd, 1024)) goto fail;
    }
    step = "getsockname";
    socklen_t sl = sizeof(*addr);
    if (getsockname(fd, &addr->sa, &sl)) goto fail;
    return fd;
fail:;
    int err = errno;
    tlog(CFG_LOG_ERROR, "listen_failed", LF_S("transport", cfg_transport_name(cl->transport)),
         LF_A("address", addr), LF_S("step", step), LF_S("error", strerror(err)));
    if (fd >= 0) close(fd);
    return -1;
}

static void on_stop(struct worker *w, struct ep_handler *h, uint32_t events)
{
    (void)w;
    (void)h;
    (void)events;
}

static int epoll_add(struct worker *w, struct ep_handler *h)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = h};
    return epoll_ctl(w->epfd, EPOLL_CTL_ADD, h->fd, &ev);
}

static void worker_free(struct worker *w)
{
    tcp_close_all(w);
    for (size_t i = 0; i < w->nlisteners; i++)
        if (w->listeners[i].h.fd >= 0) close(w->listeners[i].h.fd);
    if (w->stop.fd >= 0) close(w->stop.fd);
    if (w->epfd >= 0) close(w->epfd);
    free(w->listeners);
    free(w->batch);
}

struct relay *relay_open(const struct tern_config *cfg)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned n = cfg->workers ? cfg->workers : (unsigned)(cpus > 0 ? cpus : 1);
    struct relay *r = calloc(1, sizeof(*r));
    if (!r) return NULL;
    r->cfg = cfg;
    r->workers = calloc(n, sizeof(*r->workers));
    if (!r->workers) {
        free(r);
        return NULL;
    }
    r->nworkers = n;
    for (size_t j = 0; j < cfg->nlisten && !r->tls; j++) {
        if (cfg->listen[j].transport != CFG_TLS) continue;
        r->tls = tls_context(cfg);
        if (!r->tls) {
            r->nworkers = 0;
            relay_close(r, NULL, NULL);
            return NULL;
        }
    }
    for (unsigned i = 0; i < n; i++) {
        struct worker *w = &r->workers[i];
        w->id = i;
        w->cfg = cfg;
        w->opt.software = cfg->software;
        w->epfd = epoll_create1(EPOLL_CLOEXEC);
        w->stop = (struct ep_handler){.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC), .fn = on_stop};
        w->listeners = calloc(cfg->nlisten, sizeof(*w->listeners));
        w->batch = udp_batch_new();
        if (w->epfd < 0 || w->stop.fd < 0 || !w->listeners || !w->batch ||
            epoll_add(w, &w->stop)) {
            tlog(CFG_LOG_ERROR, "worker_failed", LF_U("worker", i), LF_S("error", strerror(errno)));
            r->nworkers = i + 1;
            relay_close(r, NULL, NULL);
            return NULL;
        }
        for (size_t j = 0; j < cfg->nlisten; j++) w->listeners[j].h.fd = -1;
    }

    /* Listener by listener: the first worker's bind resolves port 0, the others reuse it. */
    for (size_t j = 0; j < cfg->nlisten; j++) {
        union stun_addr addr = cfg->listen[j].addr;
        for (unsigned i = 0; i < n; i++) {
            struct worker *w = &r->workers[i];
            struct listener *l = &w->listeners[j];
            int fd = open_listener(&cfg->listen[j], &addr);
            if (fd < 0) {
                relay_close(r, NULL, NULL);
                return NULL;
            }
            w->nlisteners = j + 1;
            l->transport = cfg->listen[j].transport;
            l->addr = addr;
            l->tls = l->transport == CFG_TLS ? r->tls : NULL;
            l->h = (struct ep_handler){
                .fd = fd, .fn = l->transport == CFG_UDP ? udp_readable : tcp_acceptable};
            if (epoll_add(w, &l->h)) {
                tlog(CFG_LOG_ERROR, "worker_failed", LF_U("worker", i), LF_S("error", strerror(errno)));
                relay_close(r, NULL, NULL);
                return NULL;
            }
        }
        tlog(CFG_LOG_INFO, "listening", LF_S("transport", cfg_transport_name(cfg->listen[j].transport)),
             LF_A("address", &addr), LF_U("port", addr_port(&addr)), LF_U("workers", n));
    }
    return r;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct epoll_event ev[64];
    for (;;) {
        int n = epoll_wait(w->epfd, ev, 64, 1000);
        w->now_ms = monotonic_ms();
        if (n < 0 && errno != EINTR) {
            tlog(CFG_LOG_ERROR, "epoll_failed", LF_U("worker", w->id), LF_S("error", strerror(errno)));
            break;
        }
        bool stop = false;
        for (int i = 0; i < n; i++) {
            struct ep_handler *h = ev[i].data.ptr;
            if (h == &w->stop) {
                stop = true;
                continue;
            }
            h->fn(w, h, ev[i].events);
        }
        if (stop) break;
        tcp_expire(w);
    }
    return NULL;
}

int relay_start(struct relay *r)
{
    for (unsigned i = 0; i < r->nworkers; i++) {
        struct worker *w = &r->workers[i];
        w->now_ms = monotonic_ms();
        int rc = pthread_create(&w->thread, NULL, worker_main, w);
        if (rc) {
            tlog(CFG_LOG_ERROR, "thread_failed", LF_U("worker", i), LF_S("error", strerror(rc)));
            return -1;
        }
        w->started = true;
    }
    tlog(CFG_LOG_INFO, "started", LF_U("workers", r->nworkers), LF_S("realm", r->cfg->realm));
    return 0;
}

void relay_close(struct relay *r, struct srv_counters *srv, struct relay_counters *io)
{
    if (!r) return;
    uint64_t one = 1;
    for (unsigned i = 0; i < r->nworkers; i++) {
        struct worker *w = &r->workers[i];
        if (w->started && write(w->stop.fd, &one, sizeof(one)) != sizeof(one))
            tlog(CFG_LOG_WARN, "stop_signal_failed", LF_U("worker", i));
    }
    if (srv) memset(srv, 0, sizeof(*srv));
    if (io) memset(io, 0, sizeof(*io));
    for (unsigned i = 0; i < r->nworkers; i++) {
        struct worker *w = &r->workers[i];
        if (w->started) pthread_join(w->thread, NULL);
        worker_free(w);
        for (int k = 0; srv && k < SRV_C_COUNT; k++) srv->v[k] += w->srv.v[k];
        for (int k = 0; io && k < RELAY_C_COUNT; k++) io->v[k] += w->io.v[k];
    }
    SSL_CTX_free(r->tls);
    free(r->workers);
    free(r);
}
