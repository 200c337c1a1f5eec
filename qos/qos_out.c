/* qos_out.c: what comes out of the QoS tap: metric aggregation, Prometheus text and the
 * JSON views (summary and detail) documented in qos.h and docs/qos.md §14. */
#include <arpa/inet.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qos_internal.h"

const double qos_rtt_bounds[QOS_RTT_BUCKETS] = {.0005, .001, .0025, .005, .01, .025, .05, .075, .1,
                                                .15,   .2,   .3,    .4,   .6,  .8,   1.5, 3};
const double qos_jitter_bounds[QOS_JITTER_BUCKETS] = {.0005, .001, .002, .005, .01, .02,
                                                      .03,   .05,  .1,   .2,   .5};
const double qos_loss_bounds[QOS_LOSS_BUCKETS] = {0,   .001, .0025, .005, .01, .02,
                                                  .05, .1,   .2,    .5,   1};
const double qos_residence_bounds[QOS_RESIDENCE_BUCKETS] = {
    .000005, .00001, .000025, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .1};

static const char *const fb_names[QOS_FB_COUNT] = {"nack", "pli", "fir", "twcc", "remb", "other"};
static const char *const outcome_names[QOS_STUN_OUTCOME_COUNT] = {"answered", "unanswered",
                                                                  "ambiguous"};

/* ---- metrics ---- */

static void add_u64(uint64_t *d, const uint64_t *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        d[i] += s[i];
}

#define ADD_ARR(f) add_u64((uint64_t *)(dst->f), (const uint64_t *)(src->f), sizeof(src->f) / 8)
#define ADD_HIST(h)                                                                                \
    do {                                                                                           \
        add_u64((h)->b, (hs)->b, sizeof((h)->b) / 8);                                              \
        (h)->count += (hs)->count;                                                                 \
        (h)->sum += (hs)->sum;                                                                     \
    } while (0)

void qos_metrics_add(struct qos_metrics *dst, const struct qos_metrics *src)
{
    ADD_ARR(packets);
    ADD_ARR(bytes);
    ADD_ARR(rtp_expected);
    ADD_ARR(rtp_lost);
    ADD_ARR(rtp_duplicates);
    ADD_ARR(rtp_reordered);
    ADD_ARR(rtp_seq_restarts);
    ADD_ARR(rtp_streams_started);
    ADD_ARR(loss_bursts);
    ADD_ARR(srtcp_index_gaps);
    ADD_ARR(rtcp_feedback);
    ADD_ARR(stun_checks);
    ADD_ARR(stalls);
    ADD_ARR(icmp);
    ADD_ARR(ecn);
    ADD_ARR(dscp);
    ADD_ARR(episodes);
    dst->events_lost += src->events_lost;
    for (int l = 0; l < QOS_LEG_COUNT; l++) {
        const struct qos_hist_rtt *hs = &src->leg_rtt[l];
        ADD_HIST(&dst->leg_rtt[l]);
        for (int k = 0; k < QOS_KIND_COUNT; k++) {
            {
                const struct qos_hist_jitter *hs2 = &src->stream_jitter[l][k];
                struct qos_hist_jitter *h = &dst->stream_jitter[l][k];
                add_u64(h->b, hs2->b, QOS_JITTER_BUCKETS + 1);
                h->count += hs2->count;
                h->sum += hs2->sum;
            }
            {
                const struct qos_hist_loss *hs2 = &src->interval_loss[l][k];
                struct qos_hist_loss *h = &dst->interval_loss[l][k];
                add_u64(h->b, hs2->b, QOS_LOSS_BUCKETS + 1);
                h->count += hs2->count;
                h->sum += hs2->sum;
            }
        }
        {
            const struct qos_hist_residence *hs2 = &src->residence[l];
            struct qos_hist_residence *h = &dst->residence[l];
            add_u64(h->b, hs2->b, QOS_RESIDENCE_BUCKETS + 1);
            h->count += hs2->count;
            h->sum += hs2->sum;
        }
    }
    {
        const struct qos_hist_rtt *hs = &src->path_rtt;
        ADD_HIST(&dst->path_rtt);
    }
}

void qos_observe_residence(struct qos_metrics *m, enum qos_leg from, int64_t ns)
{
    if (!m || (unsigned)from >= QOS_LEG_COUNT) return;
    double v = ns < 0 ? 0 : (double)ns / 1e9;
    struct qos_hist_residence *h = &m->residence[from];
    int i = 0;
    while (i < QOS_RESIDENCE_BUCKETS && v > qos_residence_bounds[i])
        i++;
    h->b[i]++;
    h->count++;
    h->sum += v;
}

/* ---- Prometheus ---- */

struct pbuf {
    char **buf;
    size_t *len, *cap;
    int err;
};

__attribute__((format(printf, 2, 3))) static void pf(struct pbuf *b, const char *fmt, ...)
{
    if (b->err) return;
    for (;;) {
        size_t room = *b->cap - *b->len;
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(*b->buf ? *b->buf + *b->len : NULL, *b->buf ? room : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->err = -1;
            return;
        }
        if (*b->buf && (size_t)n < room) {
            *b->len += (size_t)n;
            return;
        }
        size_t ncap = *b->cap ? *b->cap : 4096;
        while (ncap - *b->len <= (size_t)n)
            ncap *= 2;
        char *nb = realloc(*b->buf, ncap);
        if (!nb) {
            b->err = -1;
            return;
        }
        *b->buf = nb;
        *b->cap = ncap;
    }
}

/* A bucket bound as a short decimal ("0.0005", "1.5", "3"). */
static void fmt_bound(double v, char out[32])
{
    snprintf(out, 32, "%.9f", v);
    char *e = out + strlen(out) - 1;
    while (e > out && *e == '0')
        *e-- = '\0';
    if (*e == '.') *e = '\0';
}

static void family(struct pbuf *b, const char *name, const char *type, const char *help)
{
    pf(b, "# HELP tern_qos_%s %s\n# TYPE tern_qos_%s %s\n", name, help, name, type);
}

/* One histogram series: labels is "" or 'leg="client",' style (with a trailing comma). */
static void hist_series(struct pbuf *b, const char *name, const char *labels, const uint64_t *bk,
                        const double *bounds, int nb, uint64_t count, double sum)
{
    uint64_t cum = 0;
    char le[32];
    for (int i = 0; i < nb; i++) {
        cum += bk[i];
        fmt_bound(bounds[i], le);
        pf(b, "tern_qos_%s_bucket{%sle=\"%s\"} %" PRIu64 "\n", name, labels, le, cum);
    }
    cum += bk[nb];
    pf(b, "tern_qos_%s_bucket{%sle=\"+Inf\"} %" PRIu64 "\n", name, labels, cum);
    size_t ll = strlen(labels);
    if (ll) { /* drop the trailing comma */
        pf(b, "tern_qos_%s_sum{%.*s} %.17g\n", name, (int)(ll - 1), labels, sum);
        pf(b, "tern_qos_%s_count{%.*s} %" PRIu64 "\n", name, (int)(ll - 1), labels, count);
    } else {
        pf(b, "tern_qos_%s_sum %.17g\n", name, sum);
        pf(b, "tern_qos_%s_count %" PRIu64 "\n", name, count);
    }
}

int qos_metrics_prometheus(const struct qos_metrics *m, char **buf, size_t *len, size_t *cap)
{
    struct pbuf b = {buf, len, cap, 0};
    char lb[96];

    family(&b, "packets_total", "counter", "Relayed packets by ingress leg and payload class.");
    for (int l = 0; l < QOS_LEG_COUNT; l++)
        for (int c = 0; c < QOS_CLASS_COUNT; c++)
            pf(&b, "tern_qos_packets_total{leg=\"%s\",class=\"%s\"} %" PRIu64 "\n",
               qos_leg_names[l], qos_class_names[c], m->packets[l][c]);
    family(&b, "bytes_total", "counter", "Relayed payload bytes by ingress leg and payload class.");
    for (int l = 0; l < QOS_LEG_COUNT; l++)
        for (int c = 0; c < QOS_CLASS_COUNT; c++)
            pf(&b, "tern_qos_bytes_total{leg=\"%s\",class=\"%s\"} %" PRIu64 "\n", qos_leg_names[l],
               qos_class_names[c], m->bytes[l][c]);

    static const struct {
        const char *name, *help;
        size_t off;
    } kinds[] = {
        {"rtp_expected_packets_total", "RTP packets expected (RFC 3550 A.3), per closed interval.",
         offsetof(struct qos_metrics, rtp_expected)},
        {"rtp_lost_packets_total", "RTP packets lost on the ingress leg (net of late arrivals).",
         offsetof(struct qos_metrics, rtp_lost)},
        {"rtp_duplicate_packets_total", "Duplicated RTP packets.",
         offsetof(struct qos_metrics, rtp_duplicates)},
        {"rtp_reordered_packets_total", "RTP packets that arrived out of order.",
         offsetof(struct qos_metrics, rtp_reordered)},
        {"rtp_streams_started_total", "RTP streams (SSRCs) that passed probation.",
         offsetof(struct qos_metrics, rtp_streams_started)},
    };
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        const uint64_t(*a)[QOS_KIND_COUNT] =
            (const uint64_t(*)[QOS_KIND_COUNT])((const char *)m + kinds[i].off);
        family(&b, kinds[i].name, "counter", kinds[i].help);
        for (int l = 0; l < QOS_LEG_COUNT; l++)
            for (int k = 0; k < QOS_KIND_COUNT; k++)
                pf(&b, "tern_qos_%s{leg=\"%s\",kind=\"%s\"} %" PRIu64 "\n", kinds[i].name,
                   qos_leg_names[l], qos_kind_names[k], a[l][k]);
    }
    static const struct {
        const char *name, *help;
        size_t off;
    } legs[] = {
        {"rtp_seq_restarts_total", "RTP sequence restarts (RFC 3550 A.1 re-synchronisations).",
         offsetof(struct qos_metrics, rtp_seq_restarts)},
        {"loss_bursts_total", "Bursts (runs) of lost RTP packets.",
         offsetof(struct qos_metrics, loss_bursts)},
        {"srtcp_index_gaps_total", "Missing SRTCP indices (RTCP loss on the ingress leg).",
         offsetof(struct qos_metrics, srtcp_index_gaps)},
        {"stalls_total", "Gaps over 250 ms in a steady flow.",
         offsetof(struct qos_metrics, stalls)},
    };
    for (size_t i = 0; i < sizeof(legs) / sizeof(legs[0]); i++) {
        const uint64_t *a = (const uint64_t *)((const char *)m + legs[i].off);
        family(&b, legs[i].name, "counter", legs[i].help);
        for (int l = 0; l < QOS_LEG_COUNT; l++)
            pf(&b, "tern_qos_%s{leg=\"%s\"} %" PRIu64 "\n", legs[i].name, qos_leg_names[l], a[l]);
    }
    family(&b, "rtcp_feedback_total", "counter", "Readable RTCP feedback messages by type.");
    for (int l = 0; l < QOS_LEG_COUNT; l++)
        for (int f = 0; f < QOS_FB_COUNT; f++)
            pf(&b, "tern_qos_rtcp_feedback_total{leg=\"%s\",fb_type=\"%s\"} %" PRIu64 "\n",
               qos_leg_names[l], fb_names[f], m->rtcp_feedback[l][f]);
    family(&b, "stun_checks_total", "counter",
           "Relayed STUN Binding/GOOG-PING transactions by the leg they measure and outcome.");
    for (int l = 0; l < QOS_LEG_COUNT; l++)
        for (int o = 0; o < QOS_STUN_OUTCOME_COUNT; o++)
            pf(&b, "tern_qos_stun_checks_total{leg=\"%s\",outcome=\"%s\"} %" PRIu64 "\n",
               qos_leg_names[l], outcome_names[o], m->stun_checks[l][o]);

    family(&b, "ecn_packets_total", "counter",
           "Relayed datagrams by ingress leg and ECN codepoint (RFC 3168; ce: congestion seen).");
    for (int l = 0; l < QOS_LEG_COUNT; l++)
        for (int k = 0; k < QOS_ECN_COUNT; k++)
            pf(&b, "tern_qos_ecn_packets_total{leg=\"%s\",codepoint=\"%s\"} %" PRIu64 "\n",
               qos_leg_names[l], qos_ecn_names[k], m->ecn[l][k]);
    family(&b, "dscp_packets_total", "counter",
           "Relayed datagrams by ingress leg and DSCP (only the values seen are listed).");
    for (int l = 0; l < QOS_LEG_COUNT; l++)
        for (int k = 0; k < QOS_DSCP_COUNT; k++)
            if (m->dscp[l][k])
                pf(&b, "tern_qos_dscp_packets_total{leg=\"%s\",dscp=\"%d\"} %" PRIu64 "\n",
                   qos_leg_names[l], k, m->dscp[l][k]);
    family(&b, "icmp_total", "counter",
           "ICMP errors about datagrams the relay sent to peers, by kind (RFC 8656 11).");
    for (int k = 0; k < QOS_ICMP_COUNT; k++)
        pf(&b, "tern_qos_icmp_total{kind=\"%s\"} %" PRIu64 "\n", qos_icmp_names[k], m->icmp[k]);

    family(&b, "episodes_total", "counter",
           "Quality episodes started (an interval of a leg above a qos.thresholds value), by leg "
           "and the reasons of their first interval.");
    for (int l = 0; l < QOS_LEG_COUNT; l++)
        for (int k = 0; k < QOS_REASON_COUNT; k++)
            pf(&b, "tern_qos_episodes_total{leg=\"%s\",reason=\"%s\"} %" PRIu64 "\n",
               qos_leg_names[l], qos_reason_names[k], m->episodes[l][k]);
    family(&b, "episode_events_lost_total", "counter",
           "Episode events not logged because a meter's event queue was full.");
    pf(&b, "tern_qos_episode_events_lost_total %" PRIu64 "\n", m->events_lost);
    family(&b, "leg_rtt_seconds", "histogram", "Round-trip time relay<->endpoint per STUN sample.");
    for (int l = 0; l < QOS_LEG_COUNT; l++) {
        snprintf(lb, sizeof(lb), "leg=\"%s\",", qos_leg_names[l]);
        hist_series(&b, "leg_rtt_seconds", lb, m->leg_rtt[l].b, qos_rtt_bounds, QOS_RTT_BUCKETS,
                    m->leg_rtt[l].count, m->leg_rtt[l].sum);
    }
    family(&b, "path_rtt_seconds", "histogram", "Client leg plus peer leg RTT, per fresh pair.");
    hist_series(&b, "path_rtt_seconds", "", m->path_rtt.b, qos_rtt_bounds, QOS_RTT_BUCKETS,
                m->path_rtt.count, m->path_rtt.sum);
    family(&b, "stream_jitter_seconds", "histogram",
           "RTP interarrival jitter (libwebrtc rule), one observation per stream and interval.");
    for (int l = 0; l < QOS_LEG_COUNT; l++)
        for (int k = 0; k < QOS_KIND_COUNT; k++) {
            const struct qos_hist_jitter *h = &m->stream_jitter[l][k];
            snprintf(lb, sizeof(lb), "leg=\"%s\",kind=\"%s\",", qos_leg_names[l],
                     qos_kind_names[k]);
            hist_series(&b, "stream_jitter_seconds", lb, h->b, qos_jitter_bounds,
                        QOS_JITTER_BUCKETS, h->count, h->sum);
        }
    family(&b, "stream_interval_loss_ratio", "histogram",
           "RTP loss fraction per stream and interval (RFC 3550 A.3).");
    for (int l = 0; l < QOS_LEG_COUNT; l++)
        for (int k = 0; k < QOS_KIND_COUNT; k++) {
            const struct qos_hist_loss *h = &m->interval_loss[l][k];
            snprintf(lb, sizeof(lb), "leg=\"%s\",kind=\"%s\",", qos_leg_names[l],
                     qos_kind_names[k]);
            hist_series(&b, "stream_interval_loss_ratio", lb, h->b, qos_loss_bounds,
                        QOS_LOSS_BUCKETS, h->count, h->sum);
        }
    family(&b, "relay_residence_seconds", "histogram",
           "Kernel receive to hand-off for sending, per ingress leg.");
    for (int l = 0; l < QOS_LEG_COUNT; l++) {
        snprintf(lb, sizeof(lb), "leg=\"%s\",", qos_leg_names[l]);
        hist_series(&b, "relay_residence_seconds", lb, m->residence[l].b, qos_residence_bounds,
                    QOS_RESIDENCE_BUCKETS, m->residence[l].count, m->residence[l].sum);
    }
    return b.err;
}

/* ---- JSON ---- */

void qos_format_time(int64_t ns, char out[32])
{
    int64_t sec = ns / 1000000000LL, rem = ns % 1000000000LL;
    if (rem < 0) {
        rem += 1000000000LL;
        sec--;
    }
    time_t t = (time_t)sec;
    struct tm tm;
    if (!gmtime_r(&t, &tm)) {
        snprintf(out, 32, "1970-01-01T00:00:00.000Z");
        return;
    }
    char tmp[96]; /* wide enough for any int fields, so no truncation warning */
    snprintf(tmp, sizeof(tmp), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(rem / 1000000));
    size_t n = strnlen(tmp, 31);
    memcpy(out, tmp, n);
    out[n] = '\0';
}

/* Objects are built with json_object_set_new; a failed allocation somewhere makes the final
 * check (json_t built) fail: every helper tolerates NULL. */
static json_t *num(bool ok, double v)
{
    return ok && isfinite(v) ? json_real(v) : json_null();
}

static json_t *u64j(uint64_t v)
{
    return json_integer((json_int_t)v);
}

static json_t *timej(int64_t ns)
{
    char t[32];
    if (ns == 0) return json_null();
    qos_format_time(ns, t);
    return json_string(t);
}

static int set(json_t *o, const char *k, json_t *v)
{
    if (!o || !v) {
        json_decref(v);
        return -1;
    }
    return json_object_set_new(o, k, v);
}

static json_t *rtt_json(const struct qos_rtt *r)
{
    json_t *o = json_object();
    bool h = r->count > 0;
    int e = 0;
    e |= set(o, "last_seconds", num(h, (double)r->last_ns / 1e9));
    e |= set(o, "min_seconds", num(h, (double)r->min_ns / 1e9));
    e |= set(o, "ewma_seconds", num(h, r->ewma_ns / 1e9));
    e |= set(o, "p50_seconds", num(h, qos_sketch_quantile(&r->sk, QOS_SK_BASE_RTT, 0.5)));
    e |= set(o, "p95_seconds", num(h, qos_sketch_quantile(&r->sk, QOS_SK_BASE_RTT, 0.95)));
    e |= set(o, "sum_seconds", json_real(r->sum_ns / 1e9));
    e |= set(o, "measurements", u64j(r->count));
    e |= set(o, "unanswered", u64j(r->unanswered));
    e |= set(o, "ambiguous", u64j(r->ambiguous));
    if (e) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static int64_t alloc_now(const struct qos_alloc *q)
{
    int64_t now = q->iv_start;
    for (unsigned i = 0; i < q->nflows; i++)
        for (int l = 0; l < QOS_LEG_COUNT; l++)
            if (q->flows[i]->dir[l].packets && q->flows[i]->dir[l].last_rx > now)
                now = q->flows[i]->dir[l].last_rx;
    return now;
}

static bool stream_active(const struct qos_stream *s, int64_t now)
{
    return now - s->last_rx <= QOS_INTERVAL_NS;
}

struct legrtp {
    uint64_t streams, expected, received, lost_net, dup, ooo;
    int64_t lost;
    bool have_jit, have_iv;
    double jit, iv;
};

static void leg_rtp(const struct qos_alloc *q, int leg, int64_t now, struct legrtp *r)
{
    const struct qos_legsum *l = &q->leg[leg];
    memset(r, 0, sizeof(*r));
    r->streams = l->streams;
    r->expected = l->expected;
    r->received = l->received;
    r->lost = l->lost;
    r->lost_net = l->lost_net;
    r->dup = l->dup;
    r->ooo = l->ooo;
    for (unsigned i = 0; i < q->nflows; i++) {
        const struct qos_dir *d = &q->flows[i]->dir[leg];
        for (int k = 0; k < QOS_MAX_STREAMS; k++) {
            const struct qos_stream *s = d->streams[k];
            if (!s || !s->confirmed) continue;
            r->streams++;
            r->expected += qos_stream_expected(s);
            r->received += s->acc_received + s->received;
            r->lost += s->acc_lost +
                       ((int64_t)(qos_stream_expected(s) - s->acc_expected) - (int64_t)s->received);
            r->lost_net += qos_stream_lost_net(s);
            r->dup += s->acc_dup + s->duplicated;
            r->ooo += s->acc_ooo + s->out_of_order;
            double js;
            if (stream_active(s, now) && qos_stream_jitter(s, NULL, &js) &&
                (!r->have_jit || js > r->jit)) {
                r->jit = js;
                r->have_jit = true;
            }
            if (s->have_frac && (!r->have_iv || s->frac > r->iv)) {
                r->iv = s->frac;
                r->have_iv = true;
            }
        }
    }
}

/* {"not_ect": N, "ect1": N, "ect0": N, "ce": N} */
static json_t *ecn_json(const uint64_t *n)
{
    json_t *o = json_object();
    int e = 0;
    for (int k = 0; k < QOS_ECN_COUNT; k++)
        e |= set(o, qos_ecn_names[k], u64j(n[k]));
    if (e) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* [d, ...]: the DSCP values whose bit is set, ascending. */
static json_t *dscp_seen_json(uint64_t seen)
{
    json_t *a = json_array();
    for (int k = 0; a && k < QOS_DSCP_COUNT; k++)
        if (seen >> k & 1 && json_array_append_new(a, json_integer(k))) {
            json_decref(a);
            return NULL;
        }
    return a;
}

static json_t *leg_summary(const struct qos_alloc *q, int leg, int64_t now,
                           const struct qos_rtt *rtt, struct legrtp *r)
{
    const struct qos_legsum *l = &q->leg[leg];
    leg_rtp(q, leg, now, r);
    json_t *o = json_object(), *rtp = json_object(), *iv = json_object();
    int e = 0;
    e |= set(o, "packets", u64j(l->packets));
    e |= set(o, "bytes", u64j(l->bytes));
    e |= set(o, "rtt", rtt_json(rtt));
    e |= set(o, "ecn", ecn_json(l->ecn));
    e |= set(o, "dscp_seen", dscp_seen_json(l->dscp_seen));
    e |= set(rtp, "streams", u64j(r->streams));
    e |= set(rtp, "expected", u64j(r->expected));
    e |= set(rtp, "received", u64j(r->received));
    e |= set(rtp, "lost", json_integer(r->lost));
    e |= set(rtp, "lost_net", u64j(r->lost_net));
    e |= set(rtp, "loss_ratio", num(r->expected > 0, (double)r->lost_net / (double)r->expected));
    e |= set(rtp, "duplicates", u64j(r->dup));
    e |= set(rtp, "reordered", u64j(r->ooo));
    e |= set(rtp, "jitter_seconds", num(r->have_jit, r->jit));
    e |= set(rtp, "interval_loss_ratio", num(r->have_iv, r->iv));
    e |= set(o, "rtp", json_incref(rtp));
    bool hl = l->iv_count > 0, hj = l->jit_count > 0;
    e |= set(iv, "count", u64j(l->iv_count));
    e |=
        set(iv, "loss_ratio_p50", num(hl, qos_sketch_quantile(&l->loss_sk, QOS_SK_BASE_LOSS, 0.5)));
    e |= set(iv, "loss_ratio_p95",
             num(hl, qos_sketch_quantile(&l->loss_sk, QOS_SK_BASE_LOSS, 0.95)));
    e |= set(iv, "loss_ratio_max", num(hl, l->loss_sk.max));
    e |= set(iv, "jitter_p50_seconds",
             num(hj, qos_sketch_quantile(&l->jit_sk, QOS_SK_BASE_JIT, 0.5)));
    e |= set(iv, "jitter_p95_seconds",
             num(hj, qos_sketch_quantile(&l->jit_sk, QOS_SK_BASE_JIT, 0.95)));
    e |= set(iv, "jitter_max_seconds", num(hj, l->jit_sk.max));
    e |= set(iv, "worst_at", timej(l->worst_at));
    e |= set(o, "intervals", json_incref(iv));
    json_decref(rtp);
    json_decref(iv);
    if (e) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* {"unreachable": N, "ttl_exceeded": N, "packet_too_big": N, "path_mtu": N | null} */
static json_t *icmp_json(const uint64_t *n, uint32_t path_mtu)
{
    json_t *o = json_object();
    int e = 0;
    for (int k = 0; k < QOS_ICMP_COUNT; k++)
        e |= set(o, qos_icmp_names[k], u64j(n[k]));
    e |= set(o, "path_mtu", path_mtu ? u64j(path_mtu) : json_null());
    if (e) {
        json_decref(o);
        return NULL;
    }
    return o;
}

json_t *qos_summary_json(const struct qos_alloc *q)
{
    if (!q) return NULL;
    int64_t now = alloc_now(q);
    struct legrtp r[QOS_LEG_COUNT];
    json_t *o = json_object();
    int e = 0;
    e |= set(o, "client_leg", leg_summary(q, QOS_LEG_CLIENT, now, &q->client_rtt, &r[0]));
    e |= set(o, "peer_leg", leg_summary(q, QOS_LEG_PEER, now, &q->peer_rtt, &r[1]));
    bool hp = q->client_rtt.count > 0 && q->peer_rtt.count > 0;
    double path = (double)(q->client_rtt.last_ns + q->peer_rtt.last_ns) / 1e9;
    e |= set(o, "path_rtt_seconds", num(hp, path));
    e |= set(o, "peers", u64j(q->nflows));
    e |= set(o, "other_flows", u64j(q->other_flows));
    uint64_t icmp[QOS_ICMP_COUNT] = {0};
    uint32_t mtu = 0;
    for (unsigned i = 0; i < q->nflows; i++) {
        for (int k = 0; k < QOS_ICMP_COUNT; k++)
            icmp[k] += q->flows[i]->icmp[k];
        if (q->flows[i]->path_mtu && (!mtu || q->flows[i]->path_mtu < mtu))
            mtu = q->flows[i]->path_mtu;
    }
    e |= set(o, "icmp", icmp_json(icmp, mtu));

    bool hl = false, hj = false, hr = hp;
    double loss = 0, jit = 0, rtt = hp ? path : 0;
    for (int l = 0; l < QOS_LEG_COUNT; l++) {
        if (r[l].expected > 0) {
            double v = (double)r[l].lost_net / (double)r[l].expected;
            if (!hl || v > loss) loss = v;
            hl = true;
        }
        if (r[l].have_jit && (!hj || r[l].jit > jit)) {
            jit = r[l].jit;
            hj = true;
        }
    }
    if (!hp) {
        const struct qos_rtt *legs[2] = {&q->client_rtt, &q->peer_rtt};
        for (int l = 0; l < 2; l++)
            if (legs[l]->count && (!hr || (double)legs[l]->last_ns / 1e9 > rtt)) {
                rtt = (double)legs[l]->last_ns / 1e9;
                hr = true;
            }
    }
    json_t *qual = json_object();
    e |= set(qual, "loss_ratio", num(hl, loss));
    e |= set(qual, "jitter_seconds", num(hj, jit));
    e |= set(qual, "rtt_seconds", num(hr, rtt));
    e |= set(o, "quality", qual);
    e |= set(o, "poor", qos_poor_json(q));
    if (e) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *addr_json(const union stun_addr *a)
{
    char ip[INET6_ADDRSTRLEN], out[INET6_ADDRSTRLEN + 10];
    if (a->sa.sa_family == AF_INET) {
        inet_ntop(AF_INET, &a->v4.sin_addr, ip, sizeof(ip));
        snprintf(out, sizeof(out), "%s:%u", ip, (unsigned)ntohs(a->v4.sin_port));
    } else {
        inet_ntop(AF_INET6, &a->v6.sin6_addr, ip, sizeof(ip));
        snprintf(out, sizeof(out), "[%s]:%u", ip, (unsigned)ntohs(a->v6.sin6_port));
    }
    return json_string(out);
}

static json_t *ratio(uint64_t a, uint64_t b)
{
    return b ? json_real((double)a / (double)b) : json_null();
}

static json_t *stream_json(const struct qos_stream *s, int64_t now)
{
    json_t *o = json_object(), *lp = json_object();
    int e = 0;
    uint32_t units = 0;
    double js = 0;
    bool hj = qos_stream_jitter(s, &units, &js);
    /* Counts accumulate across restarts (each segment's expected and received are added, as
     * a receiver's packetsReceived does); extended_highest_seq is the current segment's. */
    uint64_t exp = qos_stream_expected(s), rcv = s->acc_received + s->received;
    static const char *const src_names[] = {"unknown", "static_pt", "inferred"};
    e |= set(o, "ssrc", u64j(s->ssrc));
    e |= set(o, "payload_type", json_integer(s->pt));
    e |= set(o, "kind", json_string(qos_kind_names[qos_stream_kind(s)]));
    e |= set(o, "clock_rate",
             s->clock_src != QOS_CLOCK_UNKNOWN ? json_integer(qos_clock_rates[s->clock_idx])
                                               : json_null());
    e |= set(o, "clock_rate_source", json_string(src_names[s->clock_src]));
    e |= set(o, "state", json_string(stream_active(s, now) ? "active" : "stale"));
    e |= set(o, "packets_received", u64j(rcv));
    e |= set(o, "packets_received_unique", u64j(s->acc_unique + s->unique));
    e |= set(o, "packets_duplicated", u64j(s->acc_dup + s->duplicated));
    e |= set(o, "packets_out_of_order", u64j(s->acc_ooo + s->out_of_order));
    e |= set(o, "packets_expected", u64j(exp));
    e |= set(o, "packets_lost", json_integer((json_int_t)exp - (json_int_t)rcv));
    e |= set(o, "packets_lost_net", u64j(qos_stream_lost_net(s)));
    e |= set(o, "extended_highest_seq", u64j((uint32_t)(s->cycles + s->max_seq)));
    e |= set(o, "seq_restarts_total", u64j(s->seq_restarts));
    e |= set(o, "interval_fraction_lost", num(s->have_frac, s->frac));
    e |= set(o, "jitter_seconds", num(hj, js));
    e |= set(o, "jitter_rtp_units", hj ? u64j(units) : json_null());
    e |= set(o, "jitter_variant", json_string("libwebrtc"));
    e |= set(o, "jitter_max_interval_seconds", num(s->have_jmax, s->jmax));
    uint64_t n00 = s->gil[0][0], n01 = s->gil[0][1], n10 = s->gil[1][0], n11 = s->gil[1][1];
    bool hp = n00 + n01 > 0, hr = n10 + n11 > 0;
    double p = hp ? (double)n01 / (double)(n00 + n01) : 0;
    double r = hr ? (double)n10 / (double)(n10 + n11) : 0;
    e |= set(lp, "gilbert_p", ratio(n01, n00 + n01));
    e |= set(lp, "gilbert_r", ratio(n10, n10 + n11));
    e |= set(lp, "burst_ratio", num(hp && hr && p + r > 0, 1.0 / (p + r)));
    e |= set(lp, "mean_burst_packets", num(hr && r > 0, 1.0 / r));
    e |= set(lp, "bursts_total", u64j(s->bursts));
    e |= set(o, "loss_pattern", json_incref(lp));
    e |= set(o, "first_packet_at", timej(s->first_rx));
    e |= set(o, "last_packet_at", timej(s->last_rx));
    json_decref(lp);
    if (e) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *dir_json(const struct qos_dir *d, int64_t now)
{
    json_t *o = json_object(), *bc = json_object(), *iat = json_object(), *iv = json_object(),
           *sr = json_object(), *fb = json_object(), *streams = json_array();
    int e = 0;
    e |= set(o, "packets_total", u64j(d->packets));
    e |= set(o, "bytes_total", u64j(d->bytes));
    for (int c = 0; c < QOS_CLASS_COUNT; c++)
        e |= set(bc, qos_class_names[c], u64j(d->by_class[c]));
    e |= set(o, "by_class", json_incref(bc));
    e |= set(o, "ecn", ecn_json(d->ecn));
    json_t *ds = json_object();
    e |= set(ds, "last", d->dscp_seen ? json_integer(d->dscp_last) : json_null());
    e |= set(ds, "seen", dscp_seen_json(d->dscp_seen));
    e |= set(o, "dscp", ds);
    e |= set(iat, "mean_seconds", num(d->n_iat > 0, d->iat_mean / 1e9));
    e |= set(iat, "jitter_seconds", num(d->n_iat > 1, d->iat_jit / 1e9));
    e |= set(iat, "max_gap_seconds", num(d->n_iat > 0, (double)d->max_gap / 1e9));
    e |= set(iat, "stalls_total", u64j(d->stalls));
    e |= set(o, "iat", json_incref(iat));
    bool hiv = d->last_iv_ns > 0;
    double secs = (double)d->last_iv_ns / 1e9;
    e |= set(iv, "packets", hiv ? u64j(d->last_iv_packets) : json_null());
    e |= set(iv, "bytes", hiv ? u64j(d->last_iv_bytes) : json_null());
    e |= set(iv, "packets_per_second", num(hiv, (double)d->last_iv_packets / secs));
    e |= set(iv, "bits_per_second", num(hiv, 8.0 * (double)d->last_iv_bytes / secs));
    e |= set(o, "interval", json_incref(iv));
    const struct qos_rtcp *r = d->rtcp;
    e |= set(sr, "packets_total", u64j(r ? r->packets : 0));
    e |= set(sr, "index_gaps_total", u64j(r ? r->index_gaps : 0));
    for (int f = 0; f < QOS_FB_COUNT; f++)
        e |= set(fb, fb_names[f], u64j(r ? r->fb[f] : 0));
    e |= set(sr, "feedback_total", json_incref(fb));
    e |= set(o, "srtcp", json_incref(sr));
    for (int k = 0; k < QOS_MAX_STREAMS; k++) {
        const struct qos_stream *s = d->streams[k];
        if (!s || !s->confirmed) continue;
        json_t *sj = stream_json(s, now);
        if (!sj || json_array_append_new(streams, sj) != 0) e = -1;
    }
    e |= set(o, "rtp_streams", json_incref(streams));
    json_decref(bc);
    json_decref(iat);
    json_decref(iv);
    json_decref(sr);
    json_decref(fb);
    json_decref(streams);
    if (e) {
        json_decref(o);
        return NULL;
    }
    return o;
}

json_t *qos_detail_json(const struct qos_alloc *q, int64_t now_ns)
{
    if (!q) return NULL;
    json_t *o = json_object(), *cl = json_object(), *peers = json_array();
    int e = 0;
    e |= set(o, "sampled_at", timej(now_ns));
    e |= set(o, "interval_seconds", json_real((double)QOS_INTERVAL_NS / 1e9));
    e |= set(cl, "rtt", rtt_json(&q->client_rtt));
    e |= set(o, "client_leg", json_incref(cl));
    static const struct qos_rtt no_rtt;
    for (unsigned i = 0; i < q->nflows; i++) {
        const struct qos_flow *f = q->flows[i];
        json_t *p = json_object(), *pl = json_object(), *dirs = json_object();
        const struct qos_rtt *pr = f->stun ? &f->stun->peer : &no_rtt;
        e |= set(p, "peer", addr_json(&f->peer));
        e |= set(pl, "rtt", rtt_json(pr));
        e |= set(p, "peer_leg", json_incref(pl));
        /* the client leg sample of this flow, else the allocation's */
        bool hc = f->stun && f->stun->client_last_at;
        int64_t cns = hc ? f->stun->client_last_ns : q->client_rtt.last_ns;
        hc = hc || q->client_rtt.count > 0;
        e |=
            set(p, "path_rtt_seconds", num(hc && pr->count > 0, (double)(cns + pr->last_ns) / 1e9));
        e |= set(dirs, "from_client", dir_json(&f->dir[QOS_LEG_CLIENT], now_ns));
        e |= set(dirs, "from_peer", dir_json(&f->dir[QOS_LEG_PEER], now_ns));
        e |= set(p, "directions", json_incref(dirs));
        e |= set(p, "icmp", icmp_json(f->icmp, f->path_mtu));
        if (!p || json_array_append(peers, p) != 0) e = -1;
        json_decref(pl);
        json_decref(dirs);
        json_decref(p);
    }
    e |= set(o, "peers", json_incref(peers));
    e |= set(o, "other_flows", u64j(q->other_flows));
    e |= set(o, "other_flow_packets", u64j(q->other_packets));
    json_decref(cl);
    json_decref(peers);
    if (e) {
        json_decref(o);
        return NULL;
    }
    return o;
}
