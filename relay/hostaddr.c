/* hostaddr.c: the relay's own addresses (self-loop guard): the host's interface addresses from
 * getifaddrs, refreshed on netlink address events, published as reference-counted snapshots. */
#include <errno.h>
#include <ifaddrs.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "addr.h"
#include "hostaddr.h"
#include "log.h"

/* Re-enumeration period when netlink events arrive (a backstop: an event lost to a full
 * socket buffer is reported as ENOBUFS and re-enumerated at once anyway), and when netlink
 * cannot be opened (then this is how changes are seen). */
#define HOSTADDR_BACKSTOP_MS 60000
#define HOSTADDR_POLL_MS     2000

/* A published address set. self comes first: a snapshot is handed out as its policy_self. */
struct hostaddr_snap {
    struct policy_self self;
    unsigned refs; /* under hostaddr.lock; the hostaddr's own reference counts while current */
};

struct hostaddr {
    pthread_mutex_t lock;
    pthread_mutex_t spec_lock; /* the spec below: a reload may replace it (hostaddr_respec) */
    struct hostaddr_snap *cur; /* under lock */
    _Atomic uint64_t gen;      /* written under lock, read without */
    union stun_addr *ips;      /* the spec, copied */
    size_t nips;
    uint16_t *ports;
    size_t nports;
    bool wildcard;
    uint16_t relay_min, relay_max;
    int nl;     /* netlink socket for address events; -1: none (periodic refresh) */
    int stopfd; /* eventfd: readable means stop */
    pthread_t thread;
    bool thread_on;
};

static void snap_unref(struct hostaddr_snap *s)
{
    if (s && --s->refs == 0) {
        policy_self_free(&s->self);
        free(s);
    }
}

static unsigned mask_bits(const struct sockaddr *m)
{
    const uint8_t *b;
    size_t n;
    if (m->sa_family == AF_INET) {
        b = (const uint8_t *)&((const struct sockaddr_in *)(const void *)m)->sin_addr;
        n = 4;
    } else {
        b = ((const struct sockaddr_in6 *)(const void *)m)->sin6_addr.s6_addr;
        n = 16;
    }
    unsigned bits = 0;
    for (size_t i = 0; i < n; i++)
        bits += (unsigned)__builtin_popcount(b[i]);
    return bits;
}

/* Append to a growing array; 0 or -1 (out of memory). */
static int push(void **arr, size_t *n, size_t *cap, size_t sz, const void *v)
{
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 16;
        void *p = realloc(*arr, c * sz);
        if (!p) return -1;
        *arr = p;
        *cap = c;
    }
    memcpy((uint8_t *)*arr + *n * sz, v, sz);
    (*n)++;
    return 0;
}

/* The relay's address set now: the spec's addresses, 0.0.0.0 and :: (a datagram to either is
 * delivered to the host itself), and with a wildcard every interface address of the host, the
 * whole prefix of a loopback interface's (127.0.0.0/8 answers on lo, not only 127.0.0.1). */
static int enumerate(const struct hostaddr *h, struct policy_self *out)
{
    union stun_addr *ips = NULL;
    struct policy_cidr *nets = NULL;
    size_t nips = 0, capips = 0, nnets = 0, capnets = 0;
    int rc = -1;
    struct ifaddrs *ifa = NULL;
    union stun_addr any4 = {.v4 = {.sin_family = AF_INET}};
    union stun_addr any6 = {.v6 = {.sin6_family = AF_INET6}};
    if (push((void **)&ips, &nips, &capips, sizeof(*ips), &any4) ||
        push((void **)&ips, &nips, &capips, sizeof(*ips), &any6))
        goto out;
    for (size_t i = 0; i < h->nips; i++)
        if (push((void **)&ips, &nips, &capips, sizeof(*ips), &h->ips[i])) goto out;
    if (h->wildcard) {
        if (getifaddrs(&ifa)) {
            tlog(CFG_LOG_ERROR, "host_addresses_failed", LF_S("step", "getifaddrs"),
                 LF_S("error", strerror(errno)));
            goto out;
        }
        for (struct ifaddrs *i = ifa; i; i = i->ifa_next) {
            if (!i->ifa_addr) continue;
            int fam = i->ifa_addr->sa_family;
            if (fam != AF_INET && fam != AF_INET6) continue;
            union stun_addr a;
            if (!addr_from_sockaddr(&a, i->ifa_addr,
                                    fam == AF_INET ? sizeof(struct sockaddr_in)
                                                   : sizeof(struct sockaddr_in6)))
                continue;
            if (push((void **)&ips, &nips, &capips, sizeof(*ips), &a)) goto out;
            unsigned bits =
                i->ifa_netmask && i->ifa_netmask->sa_family == fam ? mask_bits(i->ifa_netmask) : 0;
            if ((i->ifa_flags & IFF_LOOPBACK) && bits && bits < (fam == AF_INET ? 32u : 128u)) {
                struct policy_cidr c = {.addr = a, .prefix = (uint8_t)bits};
                if (push((void **)&nets, &nnets, &capnets, sizeof(*nets), &c)) goto out;
            }
        }
    }
    rc = policy_self_build(out, ips, nips, nets, nnets, h->ports, h->nports, h->relay_min,
                           h->relay_max);
out:
    if (ifa) freeifaddrs(ifa);
    free(ips);
    free(nets);
    return rc;
}

/* One structured line with the whole set (as much of it as a log line holds). */
static void log_set(const struct policy_self *s, const char *why, uint64_t gen)
{
    if (!log_enabled(CFG_LOG_INFO)) return;
    char list[1400];
    size_t len = 0;
    size_t total = s->nv4 + s->nv6 + s->nnets;
    for (size_t i = 0; i < total; i++) {
        union stun_addr a;
        memset(&a, 0, sizeof(a));
        unsigned prefix = 0;
        if (i < s->nv4) {
            a.v4.sin_family = AF_INET;
            a.v4.sin_addr.s_addr = htonl(s->v4[i]);
        } else if (i < s->nv4 + s->nv6) {
            a.v6.sin6_family = AF_INET6;
            memcpy(a.v6.sin6_addr.s6_addr, s->v6[i - s->nv4], 16);
        } else {
            a = s->nets[i - s->nv4 - s->nv6].addr;
            prefix = s->nets[i - s->nv4 - s->nv6].prefix;
        }
        char ip[ADDR_STRLEN], item[ADDR_STRLEN + 8];
        int n = prefix ? snprintf(item, sizeof(item), "%s%s/%u", len ? "," : "",
                                  addr_ip_str(&a, ip), prefix)
                       : snprintf(item, sizeof(item), "%s%s", len ? "," : "", addr_ip_str(&a, ip));
        if (n < 0 || len + (size_t)n + 4 >= sizeof(list)) {
            memcpy(list + len, ",...", 5);
            len += 4;
            break;
        }
        memcpy(list + len, item, (size_t)n + 1);
        len += (size_t)n;
    }
    list[len] = '\0';
    tlog(CFG_LOG_INFO, "self_addresses", LF_S("reason", why), LF_U("generation", gen),
         LF_U("count", total), LF_U("listener_ports", s->nports),
         LF_U("relay_port_min", s->relay_min), LF_U("relay_port_max", s->relay_max),
         LF_S("addresses", list));
}

/* Enumerate and publish if the set changed (logged once per change). 0 or -1. */
static int refresh(struct hostaddr *h, const char *why)
{
    struct hostaddr_snap *n = calloc(1, sizeof(*n));
    if (!n) return -1;
    pthread_mutex_lock(&h->spec_lock);
    int rc = enumerate(h, &n->self);
    pthread_mutex_unlock(&h->spec_lock);
    if (rc) {
        free(n);
        return -1;
    }
    n->refs = 1;
    pthread_mutex_lock(&h->lock);
    if (h->cur && policy_self_equal(&h->cur->self, &n->self)) {
        pthread_mutex_unlock(&h->lock);
        snap_unref(n);
        return 0;
    }
    struct hostaddr_snap *old = h->cur;
    h->cur = n;
    uint64_t gen = atomic_load_explicit(&h->gen, memory_order_relaxed) + 1;
    atomic_store_explicit(&h->gen, gen, memory_order_release);
    snap_unref(old); /* freed here unless a worker still holds it */
    pthread_mutex_unlock(&h->lock);
    log_set(&n->self, why, gen); /* n stays current (or held) while the thread logs: only this
                                    thread replaces it */
    return 0;
}

static void *watch(void *arg)
{
    struct hostaddr *h = arg;
    uint8_t buf[8192];
    for (;;) {
        struct pollfd p[2] = {{.fd = h->stopfd, .events = POLLIN}, {.fd = h->nl, .events = POLLIN}};
        int rc = poll(p, h->nl >= 0 ? 2 : 1, h->nl >= 0 ? HOSTADDR_BACKSTOP_MS : HOSTADDR_POLL_MS);
        if (rc < 0 && errno != EINTR) {
            tlog(CFG_LOG_ERROR, "host_addresses_failed", LF_S("step", "poll"),
                 LF_S("error", strerror(errno)));
            return NULL;
        }
        if (p[0].revents) return NULL;
        const char *why = "periodic";
        if (h->nl >= 0 && p[1].revents) {
            /* The content does not matter: any address event means enumerate again. */
            why = "netlink";
            for (int k = 0; k < 1024; k++) {
                ssize_t got = recv(h->nl, buf, sizeof(buf), MSG_DONTWAIT);
                if (got > 0 || (got < 0 && errno == EINTR)) continue;
                if (got < 0 && errno == ENOBUFS) {
                    why = "netlink_overflow";
                    continue;
                }
                break;
            }
        }
        refresh(h, why);
    }
}

static int netlink_open(void)
{
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_ROUTE);
    if (fd < 0) return -1;
    struct sockaddr_nl sa = {.nl_family = AF_NETLINK,
                             .nl_groups = RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR};
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa))) {
        int err = errno;
        close(fd);
        errno = err;
        return -1;
    }
    return fd;
}

/* Copy spec in (under spec_lock, or before any thread runs). 0, or -1 (nothing changed). */
static int spec_set(struct hostaddr *h, const struct hostaddr_spec *spec)
{
    union stun_addr *ips = calloc(spec->nips + 1, sizeof(*ips));
    uint16_t *ports = calloc(spec->nports + 1, sizeof(*ports));
    if (!ips || !ports) {
        free(ips);
        free(ports);
        return -1;
    }
    size_t nips = 0;
    for (size_t i = 0; i < spec->nips; i++) {
        const union stun_addr *a = &spec->ips[i];
        if ((a->sa.sa_family == AF_INET || a->sa.sa_family == AF_INET6) && !addr_is_wildcard(a))
            ips[nips++] = *a;
    }
    memcpy(ports, spec->ports, spec->nports * sizeof(*ports));
    free(h->ips);
    free(h->ports);
    h->ips = ips;
    h->nips = nips;
    h->ports = ports;
    h->nports = spec->nports;
    h->wildcard = spec->wildcard;
    h->relay_min = spec->relay_min;
    h->relay_max = spec->relay_max;
    return 0;
}

static int watch_start(struct hostaddr *h)
{
    h->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (h->stopfd < 0 || pthread_create(&h->thread, NULL, watch, h)) return -1;
    h->thread_on = true;
    return 0;
}

struct hostaddr *hostaddr_open(const struct hostaddr_spec *spec)
{
    struct hostaddr *h = calloc(1, sizeof(*h));
    if (!h) return NULL;
    pthread_mutex_init(&h->lock, NULL);
    pthread_mutex_init(&h->spec_lock, NULL);
    h->nl = h->stopfd = -1;
    if (spec_set(h, spec)) goto fail;
    if (h->wildcard) {
        /* Subscribe before enumerating: a change in between is then seen as an event. */
        h->nl = netlink_open();
        if (h->nl < 0)
            tlog(CFG_LOG_WARN, "host_addresses_netlink_failed", LF_S("error", strerror(errno)),
                 LF_U("refresh_ms", HOSTADDR_POLL_MS));
    }
    if (refresh(h, "start") || !h->cur) goto fail;
    if (h->wildcard && watch_start(h)) goto fail;
    return h;
fail:
    tlog(CFG_LOG_ERROR, "startup_failed", LF_S("step", "self addresses"),
         LF_S("error", strerror(errno)));
    hostaddr_close(h);
    return NULL;
}

int hostaddr_respec(struct hostaddr *h, const struct hostaddr_spec *spec)
{
    pthread_mutex_lock(&h->spec_lock);
    int rc = spec_set(h, spec);
    bool watch_now = h->wildcard && !h->thread_on;
    pthread_mutex_unlock(&h->spec_lock);
    if (rc) return -1;
    /* A wildcard appeared: follow the host from now on (the thread is kept if it goes). */
    if (watch_now) {
        if (h->nl < 0) h->nl = netlink_open();
        if (watch_start(h))
            tlog(CFG_LOG_WARN, "host_addresses_watch_failed", LF_S("error", strerror(errno)));
    }
    return refresh(h, "reload");
}

uint64_t hostaddr_generation(const struct hostaddr *h)
{
    return atomic_load_explicit(&h->gen, memory_order_acquire);
}

const struct policy_self *hostaddr_take(struct hostaddr *h, const struct policy_self *old,
                                        uint64_t *gen)
{
    pthread_mutex_lock(&h->lock);
    struct hostaddr_snap *s = h->cur;
    s->refs++;
    *gen = atomic_load_explicit(&h->gen, memory_order_relaxed);
    snap_unref((struct hostaddr_snap *)(void *)old);
    pthread_mutex_unlock(&h->lock);
    return &s->self;
}

void hostaddr_drop(struct hostaddr *h, const struct policy_self *s)
{
    if (!s) return;
    pthread_mutex_lock(&h->lock);
    snap_unref((struct hostaddr_snap *)(void *)s);
    pthread_mutex_unlock(&h->lock);
}

void hostaddr_close(struct hostaddr *h)
{
    if (!h) return;
    if (h->thread_on) {
        uint64_t one = 1;
        if (write(h->stopfd, &one, sizeof(one)) != sizeof(one))
            tlog(CFG_LOG_WARN, "stop_signal_failed", LF_S("thread", "host addresses"));
        pthread_join(h->thread, NULL);
    }
    if (h->stopfd >= 0) close(h->stopfd);
    if (h->nl >= 0) close(h->nl);
    snap_unref(h->cur);
    pthread_mutex_destroy(&h->lock);
    pthread_mutex_destroy(&h->spec_lock);
    free(h->ips);
    free(h->ports);
    free(h);
}
