/* qos_timeline.c: per-allocation timelines (the last N closed intervals per leg), the
 * thresholds every closed interval is judged by, quality episodes and their events, and the
 * whole call's downsampled series for the quality record (qos.h, docs/qos.md §18). Pure:
 * interval times come from close_interval() in qos.c, which gets them from packets and ticks. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "qos_internal.h"

const char *const qos_reason_names[QOS_REASON_COUNT] = {"loss", "jitter", "rtt"};
const char *const qos_drop_names[QOS_DROP_COUNT] = {"permission", "bandwidth", "send", "overflow"};

static uint32_t sat32(uint64_t v)
{
    return v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

void qos_alloc_configure(struct qos_alloc *q, const struct qos_config *c)
{
    if (!q || !c) return;
    q->tl.cfg = *c;
    if (q->tl.cfg.timeline_intervals > QOS_TIMELINE_MAX)
        q->tl.cfg.timeline_intervals = QOS_TIMELINE_MAX;
    /* NaN or negative thresholds are off */
    if (!(q->tl.cfg.loss_ratio > 0)) q->tl.cfg.loss_ratio = 0;
    if (!(q->tl.cfg.jitter_s > 0)) q->tl.cfg.jitter_s = 0;
    if (!(q->tl.cfg.rtt_s > 0)) q->tl.cfg.rtt_s = 0;
}

void qos_drop(struct qos_alloc *q, enum qos_leg from, enum qos_drop why, uint32_t n)
{
    if (!q || q->finished || (unsigned)from >= QOS_LEG_COUNT || (unsigned)why >= QOS_DROP_COUNT)
        return;
    uint16_t *d = &q->tl.cur[from].drops[why];
    *d = n >= (uint32_t)(UINT16_MAX - *d) ? UINT16_MAX : (uint16_t)(*d + n);
}

void qos_client_moved(struct qos_alloc *q)
{
    struct qos_tl_leg *l = &q->tl.cur[QOS_LEG_CLIENT];
    if (l->moves < UINT8_MAX) l->moves++;
}

size_t qos_timeline_bytes(uint32_t n)
{
    if (n > QOS_TIMELINE_MAX) n = QOS_TIMELINE_MAX;
    return n ? sizeof(struct qos_ring) + n * sizeof(struct qos_tl_entry) : 0;
}

/* ---- events ---- */

static void ev_push(struct qos_timeline *tl, struct qos_metrics *m, const struct qos_event *ev)
{
    if (tl->ev_n == QOS_EVENT_QUEUE) {
        tl->ev_lost++;
        if (m) m->events_lost++;
        return;
    }
    tl->evq[(tl->ev_head + tl->ev_n) % QOS_EVENT_QUEUE] = *ev;
    tl->ev_n++;
}

bool qos_alloc_event(struct qos_alloc *q, struct qos_event *ev)
{
    if (!q || !ev || q->tl.ev_n == 0) return false;
    *ev = q->tl.evq[q->tl.ev_head];
    q->tl.ev_head = (uint8_t)((q->tl.ev_head + 1) % QOS_EVENT_QUEUE);
    q->tl.ev_n--;
    return true;
}

uint64_t qos_alloc_events_lost(const struct qos_alloc *q)
{
    return q ? q->tl.ev_lost : 0;
}

unsigned qos_alloc_poor(const struct qos_alloc *q, enum qos_leg leg)
{
    if (!q || (unsigned)leg >= QOS_LEG_COUNT || !q->tl.ep[leg].open) return 0;
    return q->tl.ep[leg].reasons;
}

/* ---- thresholds and episodes ---- */

static bool judged(const struct qos_tl_leg *l)
{
    return (l->flags & QOS_TL_HAVE_LOSS) || l->rtt_n > 0;
}

static uint8_t judge(const struct qos_config *c, const struct qos_tl_leg *l)
{
    uint8_t r = 0;
    if (c->loss_ratio > 0 && (l->flags & QOS_TL_HAVE_LOSS) && l->loss > c->loss_ratio)
        r |= 1u << QOS_REASON_LOSS;
    if (c->jitter_s > 0 && (l->flags & QOS_TL_HAVE_JIT) && l->jitter > c->jitter_s)
        r |= 1u << QOS_REASON_JITTER;
    if (c->rtt_s > 0 && l->rtt_n > 0 && l->rtt > c->rtt_s) r |= 1u << QOS_REASON_RTT;
    return r;
}

static double worse(double have, bool ok, double v)
{
    return ok && v > have ? v : have;
}

static void series_episode(struct qos_timeline *tl, struct qos_episode *ep, int leg)
{
    struct qos_series *s = tl->series;
    ep->ep_slot = -1;
    if (!s) return;
    s->ep_total++;
    if (s->nep == QOS_SERIES_EPISODES) return;
    ep->ep_slot = (int)s->nep++;
    s->ep[ep->ep_slot].leg = (uint8_t)leg;
    s->ep[ep->ep_slot].since = ep->since;
}

static void episode_end(struct qos_timeline *tl, struct qos_metrics *m, int leg, int64_t at,
                        bool ended)
{
    struct qos_episode *ep = &tl->ep[leg];
    struct qos_event ev = {
        .type = QOS_EV_RECOVERED,
        .leg = (enum qos_leg)leg,
        .reasons = ep->reasons,
        .since = ep->since,
        .at = at,
        .intervals = ep->intervals,
        .ended = ended,
        .loss_ratio = ep->loss >= 0 ? ep->loss : NAN,
        .jitter_s = ep->jit >= 0 ? ep->jit : NAN,
        .rtt_s = ep->rtt >= 0 ? ep->rtt : NAN,
    };
    ev_push(tl, m, &ev);
    if (tl->series && ep->ep_slot >= 0) {
        struct qos_series *s = tl->series;
        s->ep[ep->ep_slot].reasons = ep->reasons;
        s->ep[ep->ep_slot].intervals = ep->intervals;
        s->ep[ep->ep_slot].until = at;
        s->ep[ep->ep_slot].ended = ended;
    }
    memset(ep, 0, sizeof(*ep));
}

static void episode(struct qos_timeline *tl, struct qos_metrics *m, int leg,
                    const struct qos_tl_leg *l, int64_t start, int64_t end)
{
    struct qos_episode *ep = &tl->ep[leg];
    if (!judged(l)) return; /* nothing to judge by: the state stands */
    bool hl = l->flags & QOS_TL_HAVE_LOSS, hj = l->flags & QOS_TL_HAVE_JIT, hr = l->rtt_n > 0;
    if (l->poor) {
        if (!ep->open) {
            *ep = (struct qos_episode){.open = 1, .since = start, .loss = -1, .jit = -1, .rtt = -1};
            series_episode(tl, ep, leg);
            struct qos_event ev = {
                .type = QOS_EV_DEGRADED,
                .leg = (enum qos_leg)leg,
                .reasons = l->poor,
                .since = start,
                .at = end,
                .intervals = 1,
                .loss_ratio = hl ? l->loss : NAN,
                .jitter_s = hj ? l->jitter : NAN,
                .rtt_s = hr ? l->rtt : NAN,
            };
            ev_push(tl, m, &ev);
            for (int r = 0; m && r < QOS_REASON_COUNT; r++)
                if (l->poor >> r & 1) m->episodes[leg][r]++;
        }
        ep->reasons |= l->poor;
        ep->intervals++;
        ep->clean = 0;
        ep->last_end = end;
        ep->loss = worse(ep->loss, hl, l->loss);
        ep->jit = worse(ep->jit, hj, l->jitter);
        ep->rtt = worse(ep->rtt, hr, l->rtt);
        if (tl->series && ep->ep_slot >= 0) {
            tl->series->ep[ep->ep_slot].reasons = ep->reasons;
            tl->series->ep[ep->ep_slot].intervals = ep->intervals;
        }
    } else if (ep->open && ++ep->clean >= QOS_RECOVER_INTERVALS) {
        episode_end(tl, m, leg, end, false);
    }
}

/* ---- the ring and the series ---- */

static void ring_push(struct qos_timeline *tl, const struct qos_tl_entry *e)
{
    if (!tl->ring) {
        uint32_t cap = tl->cfg.timeline_intervals;
        if (!cap) return;
        tl->ring = calloc(1, qos_timeline_bytes(cap));
        if (!tl->ring) return; /* out of memory: no timeline, everything else goes on */
        tl->ring->cap = cap;
    }
    struct qos_ring *r = tl->ring;
    r->e[r->head] = *e;
    r->head = (r->head + 1) % r->cap;
    if (r->n < r->cap) r->n++;
}

static void sp_empty(struct qos_sp_leg *p)
{
    memset(p, 0, sizeof(*p));
    p->loss = p->jitter = -1;
}

static void sp_merge(struct qos_sp_leg *d, const struct qos_sp_leg *s)
{
    d->bytes += s->bytes;
    if (s->loss > d->loss) d->loss = s->loss;
    if (s->jitter > d->jitter) d->jitter = s->jitter;
    d->rtt_sum += s->rtt_sum;
    d->rtt_iv = (uint16_t)(d->rtt_iv + s->rtt_iv);
    d->moves = (uint16_t)(d->moves + s->moves < UINT16_MAX ? d->moves + s->moves : UINT16_MAX);
}

static void series_add(struct qos_timeline *tl, const struct qos_tl_entry *e)
{
    if (!tl->series) {
        tl->series = calloc(1, sizeof(*tl->series));
        if (!tl->series) return;
        tl->series->span = 1;
        tl->series->first_seq = e->seq;
        for (int i = 0; i < QOS_SERIES_POINTS; i++)
            for (int l = 0; l < QOS_LEG_COUNT; l++)
                sp_empty(&tl->series->p[i][l]);
        for (int l = 0; l < QOS_LEG_COUNT; l++) /* an episode opened before the series existed */
            if (tl->ep[l].open && tl->ep[l].ep_slot < 0) series_episode(tl, &tl->ep[l], l);
    }
    struct qos_series *s = tl->series;
    if (e->seq < s->first_seq) return;
    uint32_t idx = (e->seq - s->first_seq) / s->span;
    while (idx >= QOS_SERIES_POINTS) { /* full: halve the resolution */
        for (int i = 0; i < QOS_SERIES_POINTS / 2; i++)
            for (int l = 0; l < QOS_LEG_COUNT; l++) {
                struct qos_sp_leg m = s->p[2 * i][l];
                sp_merge(&m, &s->p[2 * i + 1][l]);
                s->p[i][l] = m;
            }
        for (int i = QOS_SERIES_POINTS / 2; i < QOS_SERIES_POINTS; i++)
            for (int l = 0; l < QOS_LEG_COUNT; l++)
                sp_empty(&s->p[i][l]);
        s->span *= 2;
        s->n = (s->n + 1) / 2;
        idx = (e->seq - s->first_seq) / s->span;
    }
    if (idx + 1 > s->n) s->n = idx + 1;
    s->filled = e->seq - s->first_seq - idx * s->span + 1;
    for (int l = 0; l < QOS_LEG_COUNT; l++) {
        const struct qos_tl_leg *tl_l = &e->leg[l];
        struct qos_sp_leg v;
        sp_empty(&v);
        v.bytes = tl_l->bytes;
        v.moves = tl_l->moves;
        if (tl_l->flags & QOS_TL_HAVE_LOSS) v.loss = tl_l->loss;
        if (tl_l->flags & QOS_TL_HAVE_JIT) v.jitter = tl_l->jitter;
        if (tl_l->rtt_n) {
            v.rtt_sum = tl_l->rtt;
            v.rtt_iv = 1;
        }
        sp_merge(&s->p[idx][l], &v);
    }
}

void qos_tl_close(struct qos_alloc *q, struct qos_metrics *m, int64_t start, int64_t len_ns,
                  const struct qos_iv_leg iv[QOS_LEG_COUNT])
{
    struct qos_timeline *tl = &q->tl;
    struct qos_tl_entry e;
    memset(&e, 0, sizeof(e));
    int64_t k = (start - q->start_ns) / QOS_INTERVAL_NS;
    e.seq = k < 0 ? 0 : sat32((uint64_t)k);
    e.len_ms = sat32(len_ns > 0 ? (uint64_t)(len_ns / 1000000) : 0);
    for (int leg = 0; leg < QOS_LEG_COUNT; leg++) {
        struct qos_tl_leg *l = &e.leg[leg];
        *l = tl->cur[leg];
        l->rtp_expected = sat32(iv[leg].expected);
        l->rtp_lost = sat32(iv[leg].lost);
        if (iv[leg].have_loss) {
            l->flags |= QOS_TL_HAVE_LOSS;
            l->loss = (float)iv[leg].loss;
        }
        if (iv[leg].have_jit) {
            l->flags |= QOS_TL_HAVE_JIT;
            l->jitter = (float)iv[leg].jit;
        }
        if (l->rtt_n) l->rtt = (float)(tl->rtt_sum[leg] / l->rtt_n);
        l->poor = judge(&tl->cfg, l);
    }
    /* the series first, so that an episode opened now gets its slot in it */
    series_add(tl, &e);
    for (int leg = 0; leg < QOS_LEG_COUNT; leg++)
        episode(tl, m, leg, &e.leg[leg], start, start + len_ns);
    ring_push(tl, &e);
    memset(tl->cur, 0, sizeof(tl->cur));
    memset(tl->rtt_sum, 0, sizeof(tl->rtt_sum));
}

void qos_tl_final(struct qos_alloc *q, struct qos_metrics *m, int64_t now_ns)
{
    for (int leg = 0; leg < QOS_LEG_COUNT; leg++)
        if (q->tl.ep[leg].open) episode_end(&q->tl, m, leg, now_ns, true);
}

/* ---- JSON ---- */

static int set(json_t *o, const char *k, json_t *v)
{
    if (!o || !v) {
        json_decref(v);
        return -1;
    }
    return json_object_set_new(o, k, v);
}

static json_t *timej(int64_t ns)
{
    char t[32];
    qos_format_time(ns, t);
    return json_string(t);
}

static json_t *numj(bool ok, double v)
{
    return ok && isfinite(v) ? json_real(v) : json_null();
}

static json_t *reasons_json(unsigned bits)
{
    json_t *a = json_array();
    for (int r = 0; a && r < QOS_REASON_COUNT; r++)
        if (bits >> r & 1 && json_array_append_new(a, json_string(qos_reason_names[r]))) {
            json_decref(a);
            return NULL;
        }
    return a;
}

json_t *qos_poor_json(const struct qos_alloc *q)
{
    json_t *a = json_array();
    if (!a || !q) return a;
    for (int leg = 0; leg < QOS_LEG_COUNT; leg++) {
        const struct qos_episode *ep = &q->tl.ep[leg];
        if (!ep->open) continue;
        json_t *o = json_object();
        int e = 0;
        e |= set(o, "leg", json_string(qos_leg_names[leg]));
        e |= set(o, "reasons", reasons_json(ep->reasons));
        e |= set(o, "since", timej(ep->since));
        e |= set(o, "intervals", json_integer(ep->intervals));
        if (e || json_array_append_new(a, o)) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

/* v rounded to a step (0.0001 for ratios): shorter JSON, same meaning. */
static json_t *rounded(bool ok, double v, double step)
{
    return ok && isfinite(v) ? json_real(round(v / step) * step) : json_null();
}

static json_t *tl_leg_json(const struct qos_tl_leg *l, uint32_t len_ms, bool client)
{
    json_t *o = json_object(), *d = json_object();
    double secs = (double)len_ms / 1e3;
    int e = 0;
    e |= set(o, "packets", json_integer(l->packets));
    e |= set(o, "bytes", json_integer(l->bytes));
    e |= set(o, "packets_per_second", numj(secs > 0, (double)l->packets / secs));
    e |= set(o, "bits_per_second", numj(secs > 0, 8.0 * (double)l->bytes / secs));
    e |= set(o, "rtp_expected", json_integer(l->rtp_expected));
    e |= set(o, "rtp_lost", json_integer(l->rtp_lost));
    /* the values are kept as floats: shown to the precision they have (1e-6, 0.1 us) */
    e |= set(o, "loss_ratio", rounded(l->flags & QOS_TL_HAVE_LOSS, l->loss, 1e-6));
    e |= set(o, "jitter_seconds", rounded(l->flags & QOS_TL_HAVE_JIT, l->jitter, 1e-7));
    e |= set(o, "rtt_seconds", rounded(l->rtt_n > 0, l->rtt, 1e-7));
    e |= set(o, "rtt_samples", json_integer(l->rtt_n));
    e |= set(o, "ce", l->ect || l->ce ? json_integer(l->ce) : json_null());
    e |= set(o, "ect", json_integer(l->ect));
    for (int k = 0; k < QOS_DROP_COUNT; k++)
        e |= set(d, qos_drop_names[k], json_integer(l->drops[k]));
    e |= set(o, "drops", json_incref(d));
    e |= set(o, "poor", reasons_json(l->poor));
    if (client) e |= set(o, "moves", json_integer(l->moves)); /* RFC 8016: a new client path */
    json_decref(d);
    if (e) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *entry_json(const struct qos_alloc *q, const struct qos_tl_entry *en)
{
    json_t *o = json_object();
    int e = 0;
    e |= set(o, "seq", json_integer(en->seq));
    e |= set(o, "start", timej(q->start_ns + (int64_t)en->seq * QOS_INTERVAL_NS));
    e |= set(o, "seconds", json_real((double)en->len_ms / 1e3));
    for (int leg = 0; leg < QOS_LEG_COUNT; leg++)
        e |= set(o, leg == QOS_LEG_CLIENT ? "client_leg" : "peer_leg",
                 tl_leg_json(&en->leg[leg], en->len_ms, leg == QOS_LEG_CLIENT));
    if (e) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *thresholds_json(const struct qos_config *c)
{
    return json_pack("{s:o,s:o,s:o}", "loss_ratio", numj(c->loss_ratio > 0, c->loss_ratio),
                     "jitter_seconds", numj(c->jitter_s > 0, c->jitter_s), "rtt_seconds",
                     numj(c->rtt_s > 0, c->rtt_s));
}

json_t *qos_timeline_json(const struct qos_alloc *q)
{
    if (!q) return NULL;
    const struct qos_ring *r = q->tl.ring;
    json_t *o = json_object(), *ivs = json_array();
    int e = 0;
    e |= set(o, "interval_seconds", json_real((double)QOS_INTERVAL_NS / 1e9));
    /* the ring keeps the length it was made with (a reload changes new rings only) */
    e |= set(o, "capacity", json_integer(r ? r->cap : q->tl.cfg.timeline_intervals));
    e |= set(o, "started_at", timej(q->start_ns));
    e |= set(o, "thresholds", thresholds_json(&q->tl.cfg));
    e |= set(o, "poor", qos_poor_json(q));
    if (r && r->n) {
        uint32_t first = (r->head + r->cap - r->n) % r->cap;
        uint32_t last_seq = r->e[(r->head + r->cap - 1) % r->cap].seq;
        uint32_t lo = last_seq + 1 >= r->cap ? last_seq + 1 - r->cap : 0;
        uint32_t want = lo; /* the next seq to emit: gaps are filled with empty intervals */
        for (uint32_t i = 0; i < r->n && !e; i++) {
            const struct qos_tl_entry *en = &r->e[(first + i) % r->cap];
            if (en->seq < lo) continue;
            if (want < en->seq && i > 0) {
                for (; want < en->seq && !e; want++) {
                    struct qos_tl_entry gap;
                    memset(&gap, 0, sizeof(gap));
                    gap.seq = want;
                    gap.len_ms = (uint32_t)(QOS_INTERVAL_NS / 1000000);
                    json_t *g = entry_json(q, &gap);
                    if (!g || json_array_append_new(ivs, g)) e = -1;
                }
            }
            json_t *j = entry_json(q, en);
            if (!j || json_array_append_new(ivs, j)) e = -1;
            want = en->seq + 1;
        }
    }
    e |= set(o, "intervals", json_incref(ivs));
    json_decref(ivs);
    if (e) {
        json_decref(o);
        return NULL;
    }
    return o;
}

json_t *qos_series_json(const struct qos_alloc *q)
{
    if (!q) return NULL;
    const struct qos_series *s = q->tl.series;
    json_t *o = json_object();
    int e = 0;
    uint32_t span = s ? s->span : 1, n = s ? s->n : 0;
    e |= set(o, "point_seconds", json_real((double)span * (double)QOS_INTERVAL_NS / 1e9));
    e |= set(o, "started_at",
             timej(q->start_ns + (s ? (int64_t)s->first_seq * QOS_INTERVAL_NS : 0)));
    e |= set(o, "points", json_integer(n));
    for (int leg = 0; leg < QOS_LEG_COUNT; leg++) {
        json_t *lj = json_object(), *loss = json_array(), *jit = json_array(), *rtt = json_array(),
               *kbps = json_array(), *moves = json_array();
        unsigned nmoves = 0;
        for (uint32_t i = 0; s && i < n; i++) {
            const struct qos_sp_leg *p = &s->p[i][leg];
            nmoves += p->moves;
            e |= json_array_append_new(moves, json_integer(p->moves));
            uint32_t ivs = i + 1 == n ? s->filled : span;
            double secs = (double)ivs * (double)QOS_INTERVAL_NS / 1e9;
            e |= json_array_append_new(loss, rounded(p->loss >= 0, p->loss, 1e-4));
            e |= json_array_append_new(jit, rounded(p->jitter >= 0, p->jitter * 1e3, 0.1));
            e |= json_array_append_new(
                rtt, rounded(p->rtt_iv > 0, p->rtt_iv ? p->rtt_sum / p->rtt_iv * 1e3 : 0, 0.1));
            e |= json_array_append_new(
                kbps, json_integer(
                          (json_int_t)llround(secs > 0 ? 8.0 * (double)p->bytes / secs / 1e3 : 0)));
        }
        e |= set(lj, "loss_ratio", loss);
        e |= set(lj, "jitter_ms", jit);
        e |= set(lj, "rtt_ms", rtt);
        e |= set(lj, "kbps", kbps);
        /* RFC 8016: where the client moved to a new address (only for calls that moved) */
        if (nmoves)
            e |= set(lj, "moves", moves);
        else
            json_decref(moves);
        e |= set(o, leg == QOS_LEG_CLIENT ? "client_leg" : "peer_leg", lj);
    }
    json_t *eps = json_array();
    for (uint32_t i = 0; s && i < s->nep; i++) {
        json_t *ej = json_object();
        const struct qos_episode *open = &q->tl.ep[s->ep[i].leg];
        bool is_open = s->ep[i].until == 0 && open->open && open->ep_slot == (int)i;
        e |= set(ej, "leg", json_string(qos_leg_names[s->ep[i].leg]));
        e |= set(ej, "reasons", reasons_json(is_open ? open->reasons : s->ep[i].reasons));
        e |= set(ej, "since", timej(s->ep[i].since));
        e |= set(ej, "until", s->ep[i].until ? timej(s->ep[i].until) : json_null());
        e |= set(ej, "intervals",
                 json_integer(is_open ? open->intervals : (json_int_t)s->ep[i].intervals));
        e |= set(ej, "ended_with_call", json_boolean(s->ep[i].ended));
        if (!ej || json_array_append_new(eps, ej)) e = -1;
    }
    e |= set(o, "episodes", eps);
    e |= set(o, "episodes_total", json_integer(s ? s->ep_total : 0));
    if (e) {
        json_decref(o);
        return NULL;
    }
    return o;
}
