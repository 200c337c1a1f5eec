/* query.c: what the ops API reads from the workers, and the end-of-allocation quality record.
 *
 * The HTTP thread never touches a worker's allocations: it leaves a query in the worker's
 * mailbox and rings its eventfd; the worker answers between two epoll passes, in its own
 * thread, and signals back. Workers are asked one after another, so a query costs each worker
 * one short pause and the forwarding path takes no lock at all. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "addr.h"
#include "timeline.h"
#include "records.h"
#include "webhook.h"
#include "offload.h"
#include "tcprelay.h"
#include "worker.h"

#define QUERY_WAIT_S 3 /* a worker that has not picked a query up by then is skipped */

enum query_kind { Q_LIST, Q_DETAIL, Q_CLOSE, Q_METRICS, Q_TIMELINE };

/* What /metrics sums over the workers. */
struct metrics_acc {
    struct qos_metrics qm;
    struct srv_counters srv;
    struct relay_counters io;
    uint64_t active[4]; /* allocations by transport (udp, tcp, tls, dtls) */
    uint64_t flows;     /* allocations with a QoS meter */
    uint64_t poor[QOS_LEG_COUNT][QOS_REASON_COUNT]; /* allocations with an open episode */
    struct tcprelay_metrics tcp;                    /* RFC 6062 flows */
};

struct relay_query {
    enum query_kind kind;
    uint64_t id;
    json_t *out; /* Q_LIST: the array to append to; Q_DETAIL: the answer (NULL: none) */
    int rc;      /* Q_CLOSE: 0 when closed */
    struct metrics_acc *acc;
    bool taken, done;
};

static const char *const transport_names[] = {"udp", "tcp", "tls", "dtls"};

/* ---- worker side ---- */

static struct allocation *find_id(struct worker *w, uint64_t id)
{
    const struct alloc_table *t = &w->srv.allocs;
    for (size_t i = 0; i < t->count; i++)
        if (t->heap[i]->id == id) return t->heap[i];
    return NULL;
}

static json_t *addr_json(const union stun_addr *a)
{
    char buf[ADDR_STRLEN];
    return json_string(addr_str(a, buf));
}

static json_t *relayed_json(const struct allocation *a)
{
    json_t *arr = json_array();
    for (unsigned i = 0; arr && i < a->nrelay; i++)
        json_array_append_new(arr, addr_json(&a->relay[i].advertised));
    return arr;
}

static json_t *time_json(int64_t ns)
{
    char buf[32];
    qos_format_time(ns, buf);
    return json_string(buf);
}

static size_t live_perms(const struct allocation *a, uint64_t now_ms)
{
    size_t n = 0;
    for (size_t i = 0; i < a->nperms; i++)
        n += a->perms[i].expires_ms > now_ms;
    return n;
}

static size_t live_chans(const struct allocation *a, uint64_t now_ms)
{
    size_t n = 0;
    for (size_t i = 0; i < a->nchans; i++)
        n += a->chans[i].expires_ms > now_ms;
    return n;
}

/* The fields every view of an allocation has (list entry, detail, quality record). */
static json_t *common_json(const struct worker *w, const struct allocation *a)
{
    json_t *o = json_object();
    if (!o) return NULL;
    char id[24];
    snprintf(id, sizeof id, "%llu", (unsigned long long)a->id);
    json_object_set_new(o, "id", json_string(id));
    json_object_set_new(o, "user", json_stringn(a->username, a->ulen));
    json_object_set_new(o, "realm", json_string(w->cfg->realm));
    json_object_set_new(o, "transport", json_string(transport_names[a->tuple.transport]));
    json_object_set_new(o, "client", addr_json(&a->tuple.client));
    json_object_set_new(o, "relayed", relayed_json(a));
    json_object_set_new(o, "packets",
                        json_pack("{s:I,s:I}", "from_client", (json_int_t)a->pkts_to_peer,
                                  "from_peer", (json_int_t)a->pkts_to_client));
    json_object_set_new(o, "bytes",
                        json_pack("{s:I,s:I}", "from_client", (json_int_t)a->bytes_to_peer,
                                  "from_peer", (json_int_t)a->bytes_to_client));
    /* RFC 8016: whether it follows its client to a new address, how often it did, the last
     * time (the client's network changed: a reason for what the QoS shows around then). */
    json_object_set_new(o, "mobile", json_boolean(a->mobile));
    if (a->mobile) {
        json_object_set_new(o, "moves", json_integer((json_int_t)a->moves));
        int64_t moved = w->now_ns - (int64_t)(w->now_ms - a->moved_ms) * 1000000;
        json_object_set_new(o, "moved_at", a->moves ? time_json(moved) : json_null());
    }
    return o;
}

/* a's QoS summary (its meter ticked to now first); null JSON when the tap is off. An
 * allocation that has relayed nothing yet gets an empty summary without being given a meter
 * (listing 50k idle allocations must not cost 50k meters). */
static json_t *summary_json(struct worker *w, const struct allocation *a)
{
    json_t *qos = NULL;
    if (!w->qos_on) return NULL;
    if (a->qos) {
        qos_alloc_tick(a->qos, &w->qm, w->now_ns, false);
        return qos_summary_json(a->qos);
    }
    struct qos_alloc *empty = qos_alloc_new(worker_created_ns(w, a));
    if (empty) qos = qos_summary_json(empty);
    qos_alloc_free(empty);
    return qos;
}

static json_t *entry_json(struct worker *w, struct allocation *a)
{
    json_t *o = common_json(w, a);
    if (!o) return NULL;
    json_object_set_new(o, "created_at", time_json(worker_created_ns(w, a)));
    json_object_set_new(o, "age_seconds", json_real((double)(w->now_ms - a->created_ms) / 1e3));
    json_object_set_new(
        o, "expires_in_seconds",
        json_real(a->expires_ms > w->now_ms ? (double)(a->expires_ms - w->now_ms) / 1e3 : 0));
    json_object_set_new(o, "worker", json_integer(w->id));
    /* Which path carries its bound channels: the XDP fast path or user space. */
    json_object_set_new(o, "datapath", json_string(offload_datapath(w, a, 0)));
    json_object_set_new(o, "permissions", json_integer((json_int_t)live_perms(a, w->now_ms)));
    json_object_set_new(o, "channels", json_integer((json_int_t)live_chans(a, w->now_ms)));
    json_t *qos = summary_json(w, a);
    json_t *peers = qos ? json_object_get(qos, "peers") : NULL;
    json_object_set_new(o, "peers", peers ? json_incref(peers) : json_integer(0));
    json_object_set_new(o, "qos", qos ? qos : json_null());
    return o;
}

static json_t *detail_json(struct worker *w, struct allocation *a)
{
    json_t *o = entry_json(w, a);
    if (!o) return NULL;
    json_t *d = w->qos_on && a->qos ? qos_detail_json(a->qos, w->now_ns) : NULL;
    if (!d) {
        /* The tap is off: the detail has the addresses and no measurements. */
        char sampled[32];
        qos_format_time(w->now_ns, sampled);
        d = json_pack("{s:s,s:f,s:{s:n},s:[],s:i}", "sampled_at", sampled, "interval_seconds",
                      (double)QOS_INTERVAL_NS / 1e9, "client_leg", "rtt", "peers", "other_flows",
                      0);
    }
    json_t *cl = json_object_get(d, "client_leg");
    if (cl) {
        json_object_set_new(cl, "transport", json_string(transport_names[a->tuple.transport]));
        json_object_set_new(cl, "remote", addr_json(&a->tuple.client));
        json_object_set_new(cl, "relayed", relayed_json(a));
    }
    /* Each peer flow: the channel bound to it, if any. */
    size_t i;
    json_t *pf;
    json_array_foreach(json_object_get(d, "peers"), i, pf)
    {
        const char *ps = json_string_value(json_object_get(pf, "peer"));
        json_t *ch = json_null();
        for (size_t k = 0; ps && k < a->nchans; k++) {
            char buf[ADDR_STRLEN];
            if (a->chans[k].expires_ms > w->now_ms &&
                strcmp(addr_str(&a->chans[k].peer, buf), ps) == 0) {
                json_decref(ch);
                ch = json_integer(a->chans[k].num);
                break;
            }
        }
        json_object_set_new(
            pf, "datapath",
            json_string(json_is_integer(ch)
                            ? offload_datapath(w, a, (uint16_t)json_integer_value(ch))
                            : "user"));
        json_object_set_new(pf, "channel", ch);
    }
    json_object_update(o, d);
    json_decref(d);
    /* RFC 6062: a TCP allocation's connections are its flows (bytes, rates, stalls, TCP_INFO
     * per leg); the datagram tap above sees none of their bytes. */
    if (a->tcp) json_object_set_new(o, "tcp_flows", tcprelay_flows_json(w, a));
    return o;
}

/* GET /api/v1/allocations/{id}/timeline: who, and the meter's timeline (an empty one when a
 * has relayed nothing yet; "timeline": null when the tap is off). */
static json_t *timeline_json(struct worker *w, struct allocation *a)
{
    json_t *o = common_json(w, a);
    if (!o) return NULL;
    json_object_set_new(o, "created_at", time_json(worker_created_ns(w, a)));
    char sampled[32];
    qos_format_time(w->now_ns, sampled);
    json_object_set_new(o, "sampled_at", json_string(sampled));
    json_t *tl = NULL;
    if (w->qos_on && a->qos) {
        qos_alloc_tick(a->qos, &w->qm, w->now_ns, false);
        timeline_events(w, a); /* what the tick closed is logged before it is shown */
        tl = qos_timeline_json(a->qos);
    } else if (w->qos_on) {
        struct qos_alloc *empty = timeline_meter(w, a);
        if (empty) tl = qos_timeline_json(empty);
        qos_alloc_free(empty);
    }
    if (w->qos_on && !tl) {
        json_decref(o);
        return NULL;
    }
    json_object_set_new(o, "timeline", tl ? tl : json_null());
    return o;
}

static void metrics_add(struct worker *w, struct metrics_acc *acc)
{
    qos_metrics_add(&acc->qm, &w->qm);
    for (int k = 0; k < SRV_C_COUNT; k++)
        acc->srv.v[k] += w->srv.c.v[k];
    for (int k = 0; k < RELAY_C_COUNT; k++)
        acc->io.v[k] += w->io.v[k];
    tcprelay_metrics(w, &acc->tcp);
    const struct alloc_table *t = &w->srv.allocs;
    for (size_t i = 0; i < t->count; i++) {
        acc->active[t->heap[i]->tuple.transport]++;
        acc->flows += t->heap[i]->qos != NULL;
        for (int l = 0; t->heap[i]->qos && l < QOS_LEG_COUNT; l++) {
            unsigned bits = qos_alloc_poor(t->heap[i]->qos, (enum qos_leg)l);
            for (int k = 0; k < QOS_REASON_COUNT; k++)
                acc->poor[l][k] += bits >> k & 1;
        }
    }
}

static void run_query(struct worker *w, struct relay_query *q)
{
    offload_drain(w); /* what the fast path forwarded until now is in the numbers */
    switch (q->kind) {
    case Q_LIST: {
        const struct alloc_table *t = &w->srv.allocs;
        for (size_t i = 0; i < t->count; i++) {
            json_t *e = entry_json(w, t->heap[i]);
            if (e) json_array_append_new(q->out, e);
        }
        break;
    }
    case Q_DETAIL: {
        struct allocation *a = find_id(w, q->id);
        q->out = a ? detail_json(w, a) : NULL;
        break;
    }
    case Q_CLOSE: {
        struct allocation *a = find_id(w, q->id);
        q->rc = -1;
        if (a) {
            srv_delete(&w->srv, a, "closed_by_admin");
            q->rc = 0;
        }
        break;
    }
    case Q_METRICS:
        metrics_add(w, q->acc);
        break;
    case Q_TIMELINE: {
        struct allocation *a = find_id(w, q->id);
        q->out = a ? timeline_json(w, a) : NULL;
        break;
    }
    }
}

void worker_mbox(struct worker *w, struct ep_handler *h, uint32_t events)
{
    (void)events;
    uint64_t v;
    if (read(h->fd, &v, sizeof v) < 0 && errno != EAGAIN) return;
    pthread_mutex_lock(&w->mbox_lock);
    struct relay_query *q = w->query;
    if (q) q->taken = true;
    pthread_mutex_unlock(&w->mbox_lock);
    if (!q) return;
    run_query(w, q);
    pthread_mutex_lock(&w->mbox_lock);
    q->done = true;
    w->query = NULL;
    pthread_cond_broadcast(&w->mbox_cond);
    pthread_mutex_unlock(&w->mbox_lock);
}

void worker_record(struct worker *w, const struct allocation *a, const char *why)
{
    if (a->qos) {
        qos_alloc_tick(a->qos, &w->qm, w->now_ns, true);
        timeline_events(w, a); /* an episode still open ends with the call */
    }
    if (w->record_fd < 0 && !w->webhook && !w->records) return;
    json_t *o = common_json(w, a);
    if (!o) {
        webhook_post(w->webhook, NULL); /* counted as dropped */
        records_post(w->records, NULL);
        return;
    }
    int64_t start = worker_created_ns(w, a);
    json_object_set_new(o, "type", json_string("call_quality"));
    json_object_set_new(o, "started_at", time_json(start));
    json_object_set_new(o, "ended_at", time_json(w->now_ns));
    json_object_set_new(o, "duration_seconds", json_real((double)(w->now_ns - start) / 1e9));
    json_object_set_new(o, "reason", json_string(why));
    json_t *qos = summary_json(w, a); /* (its final tick happened above) */
    json_object_set_new(o, "qos", qos ? qos : json_null());
    /* The whole call's series, downsampled (docs/qos.md §18.4): the call can be replayed. */
    if (w->qos_on) {
        json_t *series = a->qos ? qos_series_json(a->qos) : NULL;
        json_object_set_new(o, "series", series ? series : json_null());
    }
    char *line = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(9));
    json_decref(o);
    if (!line) {
        webhook_post(w->webhook, NULL);
        records_post(w->records, NULL);
        return;
    }
    if (w->webhook) webhook_post(w->webhook, strdup(line)); /* NULL (no memory): a drop */
    if (w->records) records_post(w->records, strdup(line)); /* the writer thread inserts it */
    if (w->record_fd < 0) {
        free(line);
        return;
    }
    size_t n = strlen(line);
    line[n] = '\n'; /* json_dumps leaves room only for the NUL: rewrite it, write n + 1 */
    /* One write per record on an O_APPEND file: lines from several workers never mix. */
    if (write(w->record_fd, line, n + 1) != (ssize_t)(n + 1))
        tlog(CFG_LOG_WARN, "record_write_failed", LF_U("allocation", a->id),
             LF_S("error", strerror(errno)));
    free(line);
}

/* ---- HTTP thread side ---- */

/* Ask worker w and wait for its answer. false when it did not pick the query up in time. */
static bool ask(struct worker *w, struct relay_query *q)
{
    q->taken = q->done = false;
    pthread_mutex_lock(&w->mbox_lock);
    w->query = q;
    pthread_mutex_unlock(&w->mbox_lock);
    uint64_t one = 1;
    if (write(w->mbox.fd, &one, sizeof one) != sizeof one) {
        pthread_mutex_lock(&w->mbox_lock);
        w->query = NULL;
        pthread_mutex_unlock(&w->mbox_lock);
        return false;
    }
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += QUERY_WAIT_S;
    pthread_mutex_lock(&w->mbox_lock);
    while (!q->done) {
        if (!q->taken &&
            pthread_cond_timedwait(&w->mbox_cond, &w->mbox_lock, &until) == ETIMEDOUT &&
            !q->taken) {
            w->query = NULL; /* never picked up: withdraw it */
            break;
        }
        if (q->taken && !q->done) pthread_cond_wait(&w->mbox_cond, &w->mbox_lock);
    }
    bool ok = q->done;
    pthread_mutex_unlock(&w->mbox_lock);
    if (!ok) tlog(CFG_LOG_WARN, "worker_unresponsive", LF_U("worker", w->id));
    return ok;
}

/* The worker that made allocation id (ids carry worker number + 1 in their top 16 bits). */
static struct worker *owner(struct relay *r, uint64_t id)
{
    uint64_t k = id >> 48;
    return k >= 1 && k <= r->nworkers ? &r->workers[k - 1] : NULL;
}

/* Ask about allocation id: the worker that made it first, then (RFC 8016: a mobile allocation
 * follows its client to another worker) the others until one has it. false: no such id. */
static bool ask_id(struct relay *r, uint64_t id, struct relay_query *q)
{
    struct worker *first = owner(r, id);
    if (!first) return false;
    const struct relay_query blank = *q;
    pthread_mutex_lock(&r->query_lock);
    ask(first, q);
    for (unsigned i = 0; i < r->nworkers && !q->out && q->rc < 0; i++) {
        if (&r->workers[i] == first) continue;
        *q = blank;
        ask(&r->workers[i], q);
    }
    pthread_mutex_unlock(&r->query_lock);
    return true;
}

json_t *relay_allocations(struct relay *r)
{
    json_t *arr = json_array();
    if (!arr) return NULL;
    pthread_mutex_lock(&r->query_lock);
    for (unsigned i = 0; i < r->nworkers; i++) {
        struct relay_query q = {.kind = Q_LIST, .out = arr};
        ask(&r->workers[i], &q);
    }
    pthread_mutex_unlock(&r->query_lock);
    return arr;
}

json_t *relay_allocation(struct relay *r, uint64_t id)
{
    struct relay_query q = {.kind = Q_DETAIL, .id = id, .rc = -1};
    return ask_id(r, id, &q) ? q.out : NULL;
}

json_t *relay_allocation_timeline(struct relay *r, uint64_t id)
{
    struct relay_query q = {.kind = Q_TIMELINE, .id = id, .rc = -1};
    return ask_id(r, id, &q) ? q.out : NULL;
}

int relay_close_allocation(struct relay *r, uint64_t id)
{
    struct relay_query q = {.kind = Q_CLOSE, .id = id, .rc = -1};
    return ask_id(r, id, &q) ? q.rc : -1;
}

/* ---- /metrics ---- */

struct text {
    char *buf;
    size_t len, cap;
    bool oom;
};

static void put(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct text *t, const char *fmt, ...)
{
    if (t->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->buf ? t->buf + t->len : NULL, t->buf ? t->cap - t->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->oom = true;
            return;
        }
        if (t->buf && t->len + (size_t)n < t->cap) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = t->cap ? t->cap * 2 : 16384;
        while (cap < t->len + (size_t)n + 1)
            cap *= 2;
        char *nb = realloc(t->buf, cap);
        if (!nb) {
            t->oom = true;
            return;
        }
        t->buf = nb;
        t->cap = cap;
    }
}

/* Which relay-caused drops each reason label sums (every one is also its own counter). */
/* RFC 6062 flows: the TCP side of the QoS view (docs/tcp-relay.md). */
static void tcp_flows_text(struct text *t, const struct tcprelay_metrics *m)
{
    static const char *const dirs[] = {"to_peer", "to_client"}, *const legs[] = {"client", "peer"};
    put(t,
        "# HELP tern_tcp_flows RFC 6062 peer connections now: bound to a data connection, or "
        "waiting (connecting or awaiting ConnectionBind).\n# TYPE tern_tcp_flows gauge\n"
        "tern_tcp_flows{state=\"bound\"} %llu\ntern_tcp_flows{state=\"waiting\"} %llu\n",
        (unsigned long long)m->bound, (unsigned long long)m->waiting);
    put(t, "# HELP tern_tcp_flow_stall_seconds_total Time RFC 6062 flows spent stalled (a full "
           "buffer towards a side not taking bytes), by direction.\n"
           "# TYPE tern_tcp_flow_stall_seconds_total counter\n");
    for (int d = 0; d < TCPRELAY_DIRS; d++)
        put(t, "tern_tcp_flow_stall_seconds_total{direction=\"%s\"} %.3f\n", dirs[d],
            (double)m->stalled_ms[d] / 1e3);
    put(t, "# HELP tern_tcp_flows_stalled RFC 6062 flows stalled now, by direction.\n"
           "# TYPE tern_tcp_flows_stalled gauge\n");
    for (int d = 0; d < TCPRELAY_DIRS; d++)
        put(t, "tern_tcp_flows_stalled{direction=\"%s\"} %llu\n", dirs[d],
            (unsigned long long)m->stalled_now[d]);
    put(t, "# HELP tern_tcp_flow_retransmits_total TCP retransmissions (TCP_INFO) on RFC 6062 "
           "flows, by leg.\n# TYPE tern_tcp_flow_retransmits_total counter\n");
    for (int l = 0; l < TCPRELAY_LEGS; l++)
        put(t, "tern_tcp_flow_retransmits_total{leg=\"%s\"} %llu\n", legs[l],
            (unsigned long long)m->retrans[l]);
    put(t, "# HELP tern_tcp_flow_rtt_seconds Smoothed RTT (TCP_INFO) of bound RFC 6062 flows, "
           "by leg: mean and max over the flows now.\n# TYPE tern_tcp_flow_rtt_seconds gauge\n");
    for (int l = 0; l < TCPRELAY_LEGS; l++)
        put(t,
            "tern_tcp_flow_rtt_seconds{leg=\"%s\",stat=\"mean\"} %.6f\n"
            "tern_tcp_flow_rtt_seconds{leg=\"%s\",stat=\"max\"} %.6f\n",
            legs[l], m->rtt_n[l] ? m->rtt_sum[l] / (double)m->rtt_n[l] : 0.0, legs[l],
            m->rtt_max[l]);
}

static void drops(struct text *t, const struct metrics_acc *a)
{
    const struct {
        const char *reason;
        uint64_t v;
    } d[] = {
        {"no_permission", a->srv.v[SRV_C_drop_no_permission] + a->srv.v[SRV_C_drop_no_channel]},
        {"peer_no_permission", a->srv.v[SRV_C_drop_peer_no_permission]},
        {"policy", a->srv.v[SRV_C_drop_policy] + a->srv.v[SRV_C_drop_self]},
        {"bandwidth", a->srv.v[SRV_C_drop_bandwidth]},
        {"send_error", a->io.v[RELAY_C_udp_send_errors] + a->io.v[RELAY_C_peer_send_errors]},
        {"truncated", a->io.v[RELAY_C_udp_drop_truncated] + a->io.v[RELAY_C_peer_drop_truncated] +
                          a->srv.v[SRV_C_drop_peer_too_big]},
        {"kernel_overflow", a->io.v[RELAY_C_kernel_rx_overflow]},
    };
    put(t,
        "# HELP tern_forward_drops_total Relayed datagrams the relay did not deliver, by reason.\n"
        "# TYPE tern_forward_drops_total counter\n");
    for (size_t i = 0; i < sizeof d / sizeof d[0]; i++)
        put(t, "tern_forward_drops_total{reason=\"%s\"} %llu\n", d[i].reason,
            (unsigned long long)d[i].v);
}

char *relay_metrics(struct relay *r, size_t *len)
{
    struct metrics_acc *acc = calloc(1, sizeof *acc);
    if (!acc) return NULL;
    pthread_mutex_lock(&r->query_lock);
    for (unsigned i = 0; i < r->nworkers; i++) {
        struct relay_query q = {.kind = Q_METRICS, .acc = acc};
        ask(&r->workers[i], &q);
    }
    pthread_mutex_unlock(&r->query_lock);

    struct text t = {0};
    put(&t, "# HELP tern_allocations_active Allocations alive now, by client transport.\n"
            "# TYPE tern_allocations_active gauge\n");
    for (int k = 0; k < 4; k++)
        put(&t, "tern_allocations_active{transport=\"%s\"} %llu\n", transport_names[k],
            (unsigned long long)acc->active[k]);
    put(&t,
        "# HELP tern_workers Worker threads (one event loop each).\n# TYPE tern_workers gauge\n"
        "tern_workers %u\n",
        r->nworkers);
    uint64_t ok, failed, outages;
    int dbs = relay_database(r, &outages);
    if (dbs >= 0)
        put(&t,
            "# HELP tern_database_up Whether the credential database answered its last check "
            "(0: authentication goes on from the last copy loaded).\n"
            "# TYPE tern_database_up gauge\ntern_database_up %d\n"
            "# HELP tern_database_outages_total Times the credential database went away.\n"
            "# TYPE tern_database_outages_total counter\ntern_database_outages_total %llu\n",
            dbs, (unsigned long long)outages);
    relay_reload_counts(r, &ok, &failed);
    put(&t,
        "# HELP tern_config_generation The configuration generation (1 at start, +1 per "
        "reload).\n# TYPE tern_config_generation gauge\ntern_config_generation %llu\n"
        "# HELP tern_config_reloads_total Configuration reloads, applied or refused.\n"
        "# TYPE tern_config_reloads_total counter\n"
        "tern_config_reloads_total{result=\"applied\"} %llu\n"
        "tern_config_reloads_total{result=\"refused\"} %llu\n",
        (unsigned long long)relay_generation(r), (unsigned long long)ok,
        (unsigned long long)failed);
    for (int k = 0; k < SRV_C_COUNT; k++)
        put(&t,
            "# HELP tern_server_%s_total %s.\n# TYPE tern_server_%s_total counter\n"
            "tern_server_%s_total %llu\n",
            srv_counter_names[k], srv_counter_help[k], srv_counter_names[k], srv_counter_names[k],
            (unsigned long long)acc->srv.v[k]);
    for (int k = 0; k < RELAY_C_COUNT; k++)
        put(&t,
            "# HELP tern_relay_%s_total %s.\n# TYPE tern_relay_%s_total counter\n"
            "tern_relay_%s_total %llu\n",
            relay_counter_names[k], relay_counter_help[k], relay_counter_names[k],
            relay_counter_names[k], (unsigned long long)acc->io.v[k]);
    drops(&t, acc);
    tcp_flows_text(&t, &acc->tcp);
    const struct tern_config *qcfg = relay_config_get(r);
    bool qos_on = qcfg->qos_enabled;
    relay_config_put(r, qcfg);
    if (qos_on) {
        put(&t, "# HELP tern_qos_poor_allocations Allocations with an open quality episode (an "
                "interval above qos.thresholds), by leg and reason.\n"
                "# TYPE tern_qos_poor_allocations gauge\n");
        for (int l = 0; l < QOS_LEG_COUNT; l++)
            for (int k = 0; k < QOS_REASON_COUNT; k++)
                put(&t, "tern_qos_poor_allocations{leg=\"%s\",reason=\"%s\"} %llu\n",
                    qos_leg_names[l], qos_reason_names[k], (unsigned long long)acc->poor[l][k]);
    }
    if (r->webhook) {
        struct webhook_stats ws;
        webhook_stats(r->webhook, &ws);
        const struct {
            const char *name, *help;
            uint64_t v;
        } wh[] = {
            {"sent", "qos.webhook POSTs answered 2xx", ws.sent},
            {"retried", "qos.webhook attempts after a first one (backoff)", ws.retried},
            {"failed", "qos.webhook messages given up after their retries", ws.failed},
            {"dropped", "qos.webhook messages dropped: the queue was full", ws.dropped},
        };
        for (size_t i = 0; i < sizeof wh / sizeof wh[0]; i++)
            put(&t,
                "# HELP tern_webhook_%s_total %s.\n# TYPE tern_webhook_%s_total counter\n"
                "tern_webhook_%s_total %llu\n",
                wh[i].name, wh[i].help, wh[i].name, wh[i].name, (unsigned long long)wh[i].v);
        put(&t,
            "# HELP tern_webhook_queued Messages waiting for the webhook.\n"
            "# TYPE tern_webhook_queued gauge\ntern_webhook_queued %llu\n",
            (unsigned long long)ws.queued);
    }
    if (r->records) {
        struct records_stats rs;
        records_stats(r->records, &rs);
        const struct {
            const char *name, *help;
            uint64_t v;
        } rc[] = {
            {"queued", "Call records queued for qos.record_database", rs.queued},
            {"written", "Call records committed to the database", rs.written},
            {"dropped", "Call records dropped: the queue was full (database away), or left at stop",
             rs.dropped},
            {"failed", "Call records the database refused (not retried)", rs.failed},
        };
        for (size_t i = 0; i < sizeof rc / sizeof rc[0]; i++)
            put(&t,
                "# HELP tern_records_%s_total %s.\n# TYPE tern_records_%s_total counter\n"
                "tern_records_%s_total %llu\n",
                rc[i].name, rc[i].help, rc[i].name, rc[i].name, (unsigned long long)rc[i].v);
        put(&t,
            "# HELP tern_records_queue_depth Call records waiting for the database.\n"
            "# TYPE tern_records_queue_depth gauge\ntern_records_queue_depth %llu\n"
            "# HELP tern_records_database_up Whether the record writer's last attempt reached "
            "the database.\n# TYPE tern_records_database_up gauge\ntern_records_database_up %d\n",
            (unsigned long long)rs.depth, rs.up ? 1 : 0);
    }
    /* The kernel fast path's own count of every datagram it saw, by what became of it. */
    uint64_t xs[OFFLOAD_MAX_STATS];
    const char *const *xn;
    unsigned nx = offload_stat_names(&xn);
    if (nx && offload_stats(r, xs, nx)) {
        put(&t, "# HELP tern_offload_xdp_datagrams_total Datagrams the XDP program saw, by result "
                "(to_peer, to_client: forwarded; pass_*: handed to user space unchanged).\n"
                "# TYPE tern_offload_xdp_datagrams_total counter\n");
        for (unsigned k = 0; k < nx; k++)
            put(&t, "tern_offload_xdp_datagrams_total{result=\"%s\"} %llu\n", xn[k],
                (unsigned long long)xs[k]);
    }
    bool oom = t.oom;
    const struct tern_config *cfg = relay_config_get(r);
    if (!oom && cfg->qos_enabled && qos_metrics_prometheus(&acc->qm, &t.buf, &t.len, &t.cap))
        oom = true;
    relay_config_put(r, cfg);
    free(acc);
    if (oom) {
        free(t.buf);
        return NULL;
    }
    *len = t.len;
    return t.buf;
}
