/* mobility.c: RFC 8016 allocations that follow their client to a new 5-tuple, across workers
 * (mobility.h; docs/mobility.md). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "log.h"
#include "mobility.h"
#include "offload.h"
#include "udp.h"
#include "worker.h"

#define MOB_ANSWER_MAX 1280 /* as a UDP listener's answers (fwd.c CLIENT_TX_BUF) */

/* One Refresh on its way: to the owner (answered false), then back to the worker that got it
 * with the answer and, when the allocation moved, the allocation itself. */
struct mob_msg {
    struct mob_msg *next;
    bool answered;
    unsigned from;             /* the worker whose listener got it (and sends the answer) */
    struct listener *listener; /* that worker's: only it dereferences the pointer */
    struct srv_tuple tuple;
    struct allocation *a; /* moved, detached from the owner's server; NULL: it did not move */
    unsigned owner;
    size_t answer_len;
    uint8_t answer[MOB_ANSWER_MAX];
    size_t len;
    uint8_t req[]; /* the Refresh as received */
};

/* A lock-free stack (many workers push, its worker takes all at once: no ABA). */
static void push(struct worker *w, struct worker *to, struct mob_msg *m)
{
    struct mob_msg *head = atomic_load_explicit(&to->mob_head, memory_order_relaxed);
    do
        m->next = head;
    while (!atomic_compare_exchange_weak_explicit(&to->mob_head, &head, m, memory_order_release,
                                                  memory_order_relaxed));
    uint64_t one = 1;
    if (write(to->mob.fd, &one, sizeof(one)) != sizeof(one))
        w->io.v[RELAY_C_mobility_signal_failed]++;
}

static struct mob_msg *take_all(struct worker *w)
{
    struct mob_msg *m = atomic_exchange_explicit(&w->mob_head, NULL, memory_order_acquire),
                   *fifo = NULL;
    while (m) { /* in the order they came */
        struct mob_msg *next = m->next;
        m->next = fifo;
        fifo = m;
        m = next;
    }
    return fifo;
}

void mobility_pass(struct worker *w, unsigned owner, struct listener *l, const struct srv_tuple *t,
                   const uint8_t *msg, size_t len)
{
    struct mob_msg *m = malloc(sizeof(*m) + len);
    if (!m) {
        w->io.v[RELAY_C_mobility_pass_failed]++;
        return;
    }
    memset(m, 0, sizeof(*m));
    m->from = w->id;
    m->listener = l;
    m->tuple = *t;
    m->owner = owner;
    m->len = len;
    memcpy(m->req, msg, len);
    w->io.v[RELAY_C_mobility_passed]++;
    push(w, &w->relay->workers[owner], m);
}

void mobility_event(struct worker *w, struct ep_handler *h, uint32_t events)
{
    (void)w, (void)events;
    uint64_t n;
    if (read(h->fd, &n, sizeof(n)) < 0 && errno != EAGAIN) return;
    /* Handled by mobility_run once this pass's events are: a relay socket that moves must not
     * have an event of this pass still to come here. */
}

/* The kernel fast path's bindings are keyed by the client's address: the allocation's go (what
 * they measured merged into its meter first) and its live channels are offered again. */
static void rebind(struct worker *w, struct allocation *a)
{
    for (uint16_t i = 0; i < a->nchans; i++)
        if (a->chans[i].expires_ms > w->now_ms)
            offload_channel_bound(w, a, a->chans[i].num, &a->chans[i].peer);
}

void mobility_moved(struct worker *w, struct allocation *a, const struct srv_tuple *from,
                    unsigned from_worker)
{
    if (w->offload) {
        offload_forget(w, a, 0);
        rebind(w, a);
    }
    if (a->qos) qos_client_moved(a->qos);
    tlog(CFG_LOG_INFO, "allocation_moved", LF_U("allocation", a->id), LF_S("user", a->username),
         LF_A("from", &from->client), LF_A("client", &a->tuple.client),
         LF_U("from_worker", from_worker), LF_U("worker", w->id), LF_U("moves", a->moves));
}

/* The owner's part: decide, and let go of a moved allocation. */
static void owner_handle(struct worker *w, struct mob_msg *m)
{
    struct srv_fwd f;
    w->srv.mob_dest = (int)m->from; /* a new ticket names the worker the client is on now */
    m->answer_len = srv_handle(&w->srv, &m->tuple, m->listener, m->req, m->len, w->now_ms,
                               m->answer, sizeof(m->answer), &f);
    w->srv.mob_dest = -1;
    m->answered = true;
    w->io.v[RELAY_C_mobility_handled]++;
    struct allocation *a = f.moved;
    if (!a) return;
    m->tuple = f.moved_from; /* for the log line at the other end */
    offload_forget(w, a, 0);
    for (unsigned i = 0; i < a->nrelay; i++) {
        struct relay_sock *rs = a->relay[i].io;
        if (rs && rs->h.fd >= 0) epoll_ctl(w->epfd, EPOLL_CTL_DEL, rs->h.fd, NULL);
    }
    srv_detach(&w->srv, a);
    m->a = a;
}

static bool has_listener(const struct worker *w, const struct listener *l)
{
    for (size_t i = 0; i < w->nlisteners; i++)
        if (w->listeners[i] == l) return true;
    return false;
}

/* The receiving worker's part: take the allocation in, send the answer. */
static void adopt(struct worker *w, struct mob_msg *m)
{
    struct allocation *a = m->a;
    bool ok = a && has_listener(w, m->listener) &&
              srv_adopt(&w->srv, a, m->req, m->len, m->answer, m->answer_len, w->now_ms) == 0;
    if (a && ok) {
        for (unsigned i = 0; i < a->nrelay && ok; i++) {
            struct relay_sock *rs = a->relay[i].io;
            struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &rs->h};
            if (rs && rs->h.fd >= 0 && epoll_ctl(w->epfd, EPOLL_CTL_ADD, rs->h.fd, &ev)) ok = false;
        }
        if (!ok) srv_detach(&w->srv, a);
    }
    if (a && !ok) {
        /* Its 5-tuple allocated afresh meanwhile, the listener retired, or no memory: it ends
         * (its owner let it go already), and the client gets no answer (a retransmission finds
         * what this 5-tuple has now). */
        w->io.v[RELAY_C_mobility_adopt_failed]++;
        tlog(CFG_LOG_WARN, "allocation_move_failed", LF_U("allocation", a->id),
             LF_A("client", &a->tuple.client), LF_U("worker", w->id));
        for (unsigned i = 0; i < a->nrelay; i++) { /* not in this worker's epoll */
            struct relay_sock *rs = a->relay[i].io;
            if (rs && rs->h.fd >= 0) epoll_ctl(w->epfd, EPOLL_CTL_DEL, rs->h.fd, NULL);
        }
        srv_discard(&w->srv, a, "move failed");
        return;
    }
    if (a) {
        w->io.v[RELAY_C_mobility_adopted]++;
        mobility_moved(w, a, &m->tuple, m->owner);
    }
    if (!m->answer_len || !has_listener(w, m->listener)) return;
    struct listener *l = m->listener;
    const struct srv_tuple *t = a ? &a->tuple : &m->tuple; /* the new 5-tuple, either way */
    struct iovec iov = {.iov_base = m->answer, .iov_len = m->answer_len};
    struct mmsghdr tx;
    uint8_t ctl[UDP_CTL_LEN];
    memset(&tx, 0, sizeof(tx));
    udp_prepare(&tx.msg_hdr, l, t, &iov, (struct udp_mark){0, 0}, ctl);
    udp_send_batch(w, l->h.fd, &tx, 1);
}

void mobility_run(struct worker *w)
{
    if (!atomic_load_explicit(&w->mob_head, memory_order_relaxed)) return;
    struct mob_msg *m = take_all(w), *next;
    for (; m; m = next) {
        next = m->next;
        if (m->answered) {
            adopt(w, m);
            free(m);
            continue;
        }
        owner_handle(w, m);
        push(w, &w->relay->workers[m->from], m); /* from: a worker index of this relay */
    }
}

void mobility_close_all(struct worker *w)
{
    struct mob_msg *m = take_all(w), *next;
    for (; m; m = next) {
        next = m->next;
        if (m->answered && m->a) {
            /* In this server's table (srv_free ends it with the rest), no answer sent. */
            if (srv_adopt(&w->srv, m->a, NULL, 0, NULL, 0, w->now_ms))
                srv_discard(&w->srv, m->a, "closed");
        }
        free(m);
    }
}
