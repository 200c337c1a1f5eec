/* fake_io.c: the fake relay side of the server core (fake_io.h): every call checks what the
 * server promises (it binds where a pool said, closes before it releases, never releases twice)
 * and keeps books that tests and fuzzers balance against the allocation table. */
#include "fake_io.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"

void fake_io_fail(const struct fake_io *io, const char *file, int line, const char *what)
{
    if (io && io->fail) io->fail(file, line, what);
    fprintf(stderr, "fake_io: %s:%d: check failed: %s\n", file, line, what);
    abort();
}

void fake_io_init(struct fake_io *io, uint64_t now_ms, uint64_t seed)
{
    memset(io, 0, sizeof(*io));
    io->now_ms = now_ms;
    io->rng = seed;
}

int fake_io_add_pool(struct fake_io *io, const union stun_addr *addr, uint16_t min, uint16_t max,
                     uint32_t start)
{
    FAKE_CHECK(io, io->npools < FAKE_IO_MAX_POOLS);
    if (ports_init(&io->pools[io->npools], min, max, start)) return -1;
    io->relay_addrs[io->npools] = *addr;
    addr_set_port(&io->relay_addrs[io->npools], 0);
    io->npools++;
    return 0;
}

void fake_io_free(struct fake_io *io)
{
    fake_io_release_foreign(io);
    for (unsigned i = 0; i < io->npools; i++)
        ports_free(&io->pools[i]);
    io->npools = 0;
}

uint8_t fake_io_port_state(const struct fake_io *io, unsigned pool, uint16_t port)
{
    FAKE_CHECK(io, pool < io->npools);
    const struct port_pool *p = &io->pools[pool];
    FAKE_CHECK(io, port >= p->min && port <= p->max);
    return p->state[port - p->min];
}

size_t fake_io_ports_in_state(const struct fake_io *io, uint8_t state)
{
    size_t n = 0;
    for (unsigned i = 0; i < io->npools; i++)
        for (uint32_t k = 0; k < io->pools[i].count; k++)
            n += io->pools[i].state[k] == state;
    return n;
}

int fake_io_take_foreign(struct fake_io *io, unsigned pool)
{
    FAKE_CHECK(io, pool < io->npools);
    uint16_t port;
    if (io->nforeign[pool] >= FAKE_IO_MAX_FOREIGN ||
        ports_take(&io->pools[pool], false, false, 0, fake_io_now_s(io), &port))
        return -1;
    io->foreign[pool][io->nforeign[pool]++] = port;
    return 0;
}

void fake_io_release_foreign(struct fake_io *io)
{
    for (unsigned p = 0; p < io->npools; p++) {
        for (size_t i = 0; i < io->nforeign[p]; i++)
            ports_release(&io->pools[p], io->foreign[p][i]);
        io->nforeign[p] = 0;
    }
}

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void fake_random(void *ctx, void *buf, size_t len)
{
    struct fake_io *io = ctx;
    if (io->fixed_random) {
        memset(buf, io->random_byte, len);
        return;
    }
    uint8_t *p = buf;
    while (len) {
        uint64_t v = splitmix64(&io->rng);
        size_t k = len < 8 ? len : 8;
        memcpy(p, &v, k);
        p += k;
        len -= k;
    }
}

/* A port with an open socket on it: the server must close the socket before the release. */
static bool port_bound(const struct fake_io *io, unsigned pool, uint16_t port)
{
    for (size_t i = 0; i < io->nsocks; i++)
        if (io->socks[i].open && io->socks[i].pool == pool && addr_port(&io->socks[i].addr) == port)
            return true;
    return false;
}

static int fake_port_take(void *ctx, unsigned pool, bool even, bool reserve_next, uint64_t token,
                          uint64_t now_s, uint16_t *port)
{
    struct fake_io *io = ctx;
    if (io->refuse) return -1;
    FAKE_CHECK(io, pool < io->npools);
    FAKE_CHECK(io, now_s == fake_io_now_s(io)); /* the server's idea of time is ours */
    if (ports_take(&io->pools[pool], even, reserve_next, token, now_s, port)) return -1;
    FAKE_CHECK(io, fake_io_port_state(io, pool, *port) == FAKE_PORT_USED);
    if (even || reserve_next) FAKE_CHECK(io, (*port & 1) == 0);
    if (reserve_next)
        FAKE_CHECK(io, fake_io_port_state(io, pool, (uint16_t)(*port + 1)) == FAKE_PORT_RESERVED);
    return 0;
}

static int fake_port_claim(void *ctx, uint64_t token, uint64_t now_s, unsigned *pool,
                           uint16_t *port)
{
    struct fake_io *io = ctx;
    if (io->refuse) return -1;
    for (unsigned i = 0; i < io->npools; i++) {
        if (ports_claim(&io->pools[i], token, now_s, port) == 0) {
            *pool = i;
            FAKE_CHECK(io, fake_io_port_state(io, i, *port) == FAKE_PORT_USED);
            return 0;
        }
    }
    return -1;
}

static void fake_port_release(void *ctx, unsigned pool, uint16_t port)
{
    struct fake_io *io = ctx;
    FAKE_CHECK(io, !io->refuse);
    FAKE_CHECK(io, pool < io->npools);
    FAKE_CHECK(io, !port_bound(io, pool, port)); /* the socket is closed first */
    /* Releasing a port nobody holds would be a double release (or a release of the wrong one). */
    FAKE_CHECK(io, fake_io_port_state(io, pool, port) != FAKE_PORT_FREE);
    ports_release(&io->pools[pool], port);
}

static int fake_relay_open(void *ctx, struct allocation *a, struct alloc_relay *r)
{
    struct fake_io *io = ctx;
    if (io->refuse) return -1;
    io->open_calls++;
    FAKE_CHECK(io, a->nrelay < 2 && r == &a->relay[a->nrelay]);
    FAKE_CHECK(io, r->io == NULL);
    /* The server binds where a pool said: that pool's address and a port the pool holds. */
    FAKE_CHECK(io, r->pool < io->npools);
    FAKE_CHECK(io, addr_ip_equal(&r->addr, &io->relay_addrs[r->pool]));
    uint16_t port = addr_port(&r->addr);
    FAKE_CHECK(io, fake_io_port_state(io, r->pool, port) == FAKE_PORT_USED);
    FAKE_CHECK(io, !port_bound(io, r->pool, port));
    for (unsigned i = 0; i < a->nrelay; i++)
        FAKE_CHECK(io, a->relay[i].addr.sa.sa_family != r->addr.sa.sa_family);
    if (io->open_error) return io->open_error;
    for (int i = 0; i < FAKE_IO_MAX_BUSY; i++)
        if (io->busy[i] && io->busy[i] == port) return -EADDRINUSE;
    if (io->eaddrinuse_left) {
        io->eaddrinuse_left--;
        return -EADDRINUSE;
    }
    if (io->error_next) {
        int e = io->error_next;
        io->error_next = 0;
        return e;
    }
    FAKE_CHECK(io, io->nsocks < FAKE_IO_MAX_SOCKS);
    FAKE_CHECK(io, !io->max_open || io->nopen < io->max_open);
    struct fake_sock *s = &io->socks[io->nsocks++];
    *s = (struct fake_sock){.alloc_id = a->id, .addr = r->addr, .pool = r->pool, .open = true};
    io->nopen++;
    r->io = s;
    return 0;
}

static void fake_relay_close(void *ctx, struct allocation *a, struct alloc_relay *r)
{
    struct fake_io *io = ctx;
    FAKE_CHECK(io, !io->refuse);
    struct fake_sock *s = r->io;
    io->close_calls++;
    FAKE_CHECK(io, r >= a->relay && r < a->relay + 2);
    FAKE_CHECK(io, s >= io->socks && s < io->socks + io->nsocks);
    FAKE_CHECK(io, s->open); /* no double close */
    FAKE_CHECK(io, s->alloc_id == a->id);
    FAKE_CHECK(io, s->pool == r->pool && addr_equal(&s->addr, &r->addr));
    s->open = false;
    io->nopen--;
}

static struct fake_quota_user *quota_of(const struct fake_io *io, const char *user, size_t ulen)
{
    for (size_t i = 0; i < io->nquota; i++)
        if (io->quota[i].len == ulen && memcmp(io->quota[i].name, user, ulen) == 0)
            return (struct fake_quota_user *)&io->quota[i];
    return NULL;
}

static int fake_quota_take(void *ctx, const char *user, size_t ulen, uint32_t user_max)
{
    struct fake_io *io = ctx;
    if (io->refuse) return -1;
    FAKE_CHECK(io, !io->name_ok || io->name_ok(user, ulen));
    struct fake_quota_user *q = quota_of(io, user, ulen);
    if (!q) {
        FAKE_CHECK(io, io->nquota < FAKE_IO_MAX_USERS && ulen <= STUN_MAX_USERNAME);
        q = &io->quota[io->nquota++];
        memcpy(q->name, user, ulen);
        q->name[ulen] = '\0';
        q->len = ulen;
        q->n = 0;
    }
    unsigned umax = io->quota_user_max_wins && user_max ? user_max : io->quota_user_max;
    if (umax && q->n >= umax) return -1;
    if (io->quota_total_max && io->quota_total >= io->quota_total_max) return -1;
    q->n++;
    io->quota_total++;
    return 0;
}

static void fake_quota_release(void *ctx, const char *user, size_t ulen)
{
    struct fake_io *io = ctx;
    FAKE_CHECK(io, !io->refuse);
    FAKE_CHECK(io, !io->name_ok || io->name_ok(user, ulen));
    struct fake_quota_user *q = quota_of(io, user, ulen);
    FAKE_CHECK(io, q != NULL);
    FAKE_CHECK(io, q->n > 0 && io->quota_total > 0); /* never released more than taken */
    q->n--;
    io->quota_total--;
}

static void fake_event(void *ctx, const struct allocation *a, const char *what,
                       const union stun_addr *peer, enum policy_verdict verdict)
{
    struct fake_io *io = ctx;
    FAKE_CHECK(io, a != NULL && what != NULL);
    if (strcmp(what, "denied") == 0) {
        FAKE_CHECK(io, peer != NULL && verdict != POLICY_OK && verdict < POLICY_COUNT);
    } else {
        FAKE_CHECK(io, strcmp(what, "allocated") == 0 || strcmp(what, "refreshed") == 0 ||
                           strcmp(what, "deleted") == 0 || strcmp(what, "expired") == 0 ||
                           strcmp(what, "closed") == 0 || strcmp(what, "revoked") == 0 ||
                           strcmp(what, "drained") == 0);
    }
    io->events_seen++;
    if (io->nevents >= FAKE_IO_MAX_EVENTS) return;
    struct fake_event *e = &io->events[io->nevents++];
    memset(e, 0, sizeof(*e));
    snprintf(e->what, sizeof(e->what), "%s", what);
    e->alloc_id = a->id;
    e->has_peer = peer != NULL;
    if (peer) e->peer = *peer;
    e->verdict = verdict;
}

void *fake_io_handle(struct fake_io *io)
{
    return (void *)(uintptr_t)(0x1000 + 16 * ++io->next_handle);
}

const uint8_t *fake_io_last_sent(const struct fake_io *io, size_t *len)
{
    if (!io->nsent) return NULL;
    size_t i = (io->nsent - 1) % FAKE_IO_MAX_SENT;
    *len = io->sentlen[i];
    return io->sent[i];
}

static int fake_peer_connect(void *ctx, struct allocation *a, struct srv_tconn *tc)
{
    struct fake_io *io = ctx;
    FAKE_CHECK(io, a->tcp && tc->a == a && tc->state == SRV_TCONN_CONNECTING);
    FAKE_CHECK(io, tc->peer_io == NULL && tc->id != 0);
    if (io->connect_error) return io->connect_error;
    tc->peer_io = fake_io_handle(io);
    io->connects[io->nconnects++ % FAKE_IO_MAX_TCONN] = tc;
    return 0;
}

static void fake_tconn_close(void *ctx, struct srv_tconn *tc)
{
    struct fake_io *io = ctx;
    FAKE_CHECK(io, tc->peer_io != NULL || tc->data_io != NULL);
    io->tconn_close_calls++;
    tc->peer_io = tc->data_io = NULL;
}

static void fake_client_send(void *ctx, struct allocation *a, const uint8_t *msg, size_t len)
{
    struct fake_io *io = ctx;
    FAKE_CHECK(io, a->tcp && len <= sizeof(io->sent[0]));
    size_t i = io->nsent++ % FAKE_IO_MAX_SENT;
    memcpy(io->sent[i], msg, len);
    io->sentlen[i] = len;
    io->sent_alloc[i] = a->id;
}

struct srv_io fake_io_srv_io(struct fake_io *io)
{
    return (struct srv_io){
        .peer_connect = io->no_tcp ? NULL : fake_peer_connect,
        .tconn_close = io->no_tcp ? NULL : fake_tconn_close,
        .client_send = io->no_tcp ? NULL : fake_client_send,
        .ctx = io,
        .port_take = fake_port_take,
        .port_claim = fake_port_claim,
        .port_release = fake_port_release,
        .relay_open = fake_relay_open,
        .relay_close = fake_relay_close,
        .quota_take = fake_quota_take,
        .quota_release = fake_quota_release,
        .random = fake_random,
        .event = fake_event,
    };
}

unsigned fake_io_quota_count(const struct fake_io *io, const char *user)
{
    const struct fake_quota_user *q = quota_of(io, user, strlen(user));
    return q ? q->n : 0;
}

size_t fake_io_count_events(const struct fake_io *io, const char *what)
{
    size_t n = 0;
    for (size_t i = 0; i < io->nevents; i++)
        n += strcmp(io->events[i].what, what) == 0;
    return n;
}

const struct fake_event *fake_io_last_event(const struct fake_io *io)
{
    FAKE_CHECK(io, io->nevents > 0);
    return &io->events[io->nevents - 1];
}

const struct fake_sock *fake_io_find_sock(const struct fake_io *io, const union stun_addr *a)
{
    for (size_t i = 0; i < io->nsocks; i++)
        if (io->socks[i].open && addr_equal(&io->socks[i].addr, a)) return &io->socks[i];
    return NULL;
}

int fake_io_sock_index(const struct fake_io *io, const void *h)
{
    const struct fake_sock *s = h;
    if (s < io->socks || s >= io->socks + io->nsocks || !s->open) return -1;
    return (int)(s - io->socks);
}

void fake_io_check_books(const struct fake_io *io, const struct srv *s)
{
    const struct alloc_table *t = &s->allocs;
    size_t relays = 0, in_pool[FAKE_IO_MAX_POOLS] = {0};
    for (size_t i = 0; i < t->count; i++) {
        const struct allocation *a = t->heap[i];
        for (unsigned k = 0; k < a->nrelay; k++) {
            const struct alloc_relay *r = &a->relay[k];
            int si = fake_io_sock_index(io, r->io);
            FAKE_CHECK(io, si >= 0);
            const struct fake_sock *fs = &io->socks[si];
            FAKE_CHECK(io, fs->alloc_id == a->id);
            FAKE_CHECK(io, fs->pool == r->pool && addr_equal(&fs->addr, &r->addr));
            FAKE_CHECK(io, fake_io_port_state(io, r->pool, addr_port(&r->addr)) == FAKE_PORT_USED);
            in_pool[r->pool]++;
        }
        relays += a->nrelay;
    }
    FAKE_CHECK(io, io->nopen == relays);
    FAKE_CHECK(io, io->quota_total == t->count);
    for (size_t q = 0; q < io->nquota; q++) {
        unsigned n = 0;
        for (size_t i = 0; i < t->count; i++)
            n += t->heap[i]->ulen == io->quota[q].len &&
                 memcmp(t->heap[i]->username, io->quota[q].name, io->quota[q].len) == 0;
        FAKE_CHECK(io, io->quota[q].n == n);
    }
    for (unsigned p = 0; p < io->npools; p++) {
        const struct port_pool *pp = &io->pools[p];
        size_t used = 0, reserved = 0;
        for (uint32_t i = 0; i < pp->count; i++) {
            FAKE_CHECK(io, pp->state[i] <= FAKE_PORT_RESERVED);
            used += pp->state[i] == FAKE_PORT_USED;
            reserved += pp->state[i] == FAKE_PORT_RESERVED;
        }
        FAKE_CHECK(io, pp->used == used + reserved);
        FAKE_CHECK(io, used == in_pool[p] + io->nforeign[p]); /* none leaked, none double-booked */
    }
}

void fake_io_check_released(const struct fake_io *io)
{
    FAKE_CHECK(io, io->nopen == 0);
    for (size_t i = 0; i < io->nsocks; i++)
        FAKE_CHECK(io, !io->socks[i].open);
    FAKE_CHECK(io, io->close_calls == io->nsocks);
    FAKE_CHECK(io, io->quota_total == 0);
    for (size_t q = 0; q < io->nquota; q++)
        FAKE_CHECK(io, io->quota[q].n == 0);
    size_t foreign = 0;
    for (unsigned p = 0; p < io->npools; p++)
        foreign += io->nforeign[p];
    FAKE_CHECK(io, fake_io_ports_in_state(io, FAKE_PORT_USED) == foreign);
}
