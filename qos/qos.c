/* qos.c: the QoS tap (see qos.h and docs/qos.md §3-§11): classification,
 * RTP loss/reorder/duplicate/jitter per SSRC, STUN RTT per leg, SRTCP index gaps and feedback,
 * inter-arrival statistics and the 5 s intervals. Pure: times are arguments. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "qos_internal.h"
#include "wire.h"

const char *const qos_class_names[QOS_CLASS_COUNT] = {"stun", "dtls", "rtp",
                                                      "rtcp", "quic", "other"};
const char *const qos_leg_names[QOS_LEG_COUNT] = {"client", "peer"};
const char *const qos_kind_names[QOS_KIND_COUNT] = {"audio", "video", "unknown"};
const uint32_t qos_clock_rates[QOS_NCLOCKS] = {8000, 16000, 24000, 32000, 44100, 48000, 90000};

#define NS_PER_S        1000000000LL
#define JITTER_MAX_D    450000 /* |D| at or above this is a clock step, not jitter */
#define INFER_MIN_NS    (2 * NS_PER_S)
#define INFER_MIN_PKTS  10
#define PATH_FRESH_NS   (30 * NS_PER_S)
#define STALL_MEAN_NS   (100 * 1000000LL)
#define HOLD_MIN        50
#define HOLD_MAX        1000
#define CLOCK_IDX_8000  0
#define CLOCK_IDX_90000 6

/* ---- classification (docs/qos.md §3) ---- */

enum qos_class qos_classify(const uint8_t *p, size_t len)
{
    if (!p || len == 0) return QOS_CLASS_OTHER;
    uint8_t b = p[0];
    if (b <= 3) {
        if (len < 20 || rd32(p + 4) != 0x2112A442u) return QOS_CLASS_OTHER;
        size_t mlen = rd16(p + 2);
        if (mlen % 4 != 0 || 20 + mlen != len) return QOS_CLASS_OTHER;
        return QOS_CLASS_STUN;
    }
    if (b >= 20 && b <= 63) return QOS_CLASS_DTLS;
    if (b >= 64 && b <= 127) return QOS_CLASS_QUIC;
    if (b >= 192) return QOS_CLASS_QUIC;
    if (b >= 128) {
        if (len < 2) return QOS_CLASS_OTHER;
        if (p[1] >= 192 && p[1] <= 223) return len >= 8 ? QOS_CLASS_RTCP : QOS_CLASS_OTHER;
        size_t hdr = 12 + 4 * (size_t)(b & 0x0f);
        if (len < hdr) return QOS_CLASS_OTHER;
        if (b & 0x10) {
            if (len < hdr + 4) return QOS_CLASS_OTHER;
            hdr += 4 + 4 * (size_t)rd16(p + hdr + 2);
            if (len < hdr) return QOS_CLASS_OTHER;
        }
        return QOS_CLASS_RTP;
    }
    return QOS_CLASS_OTHER;
}

/* ---- sketch (docs/qos.md §11.3) ---- */

static void sketch_add(struct qos_sketch *sk, double base, double v)
{
    if (!(v >= 0)) v = 0; /* NaN or negative */
    if (sk->n == 0 || v < sk->min) sk->min = v;
    if (sk->n == 0 || v > sk->max) sk->max = v;
    sk->n++;
    if (v < base) {
        sk->zero++;
        return;
    }
    double i = floor(log(v / base) / log(1.12));
    int k = i < 0 ? 0 : i >= QOS_SK_BUCKETS - 1 ? QOS_SK_BUCKETS - 1 : (int)i;
    sk->b[k]++;
}

double qos_sketch_quantile(const struct qos_sketch *sk, double base, double q)
{
    if (sk->n == 0) return NAN;
    uint64_t rank = (uint64_t)ceil(q * sk->n);
    if (rank < 1) rank = 1;
    uint64_t c = sk->zero;
    double v;
    if (c >= rank) {
        v = sk->min; /* below the first bucket: the smallest value is as good as any */
    } else {
        int k = 0;
        for (; k < QOS_SK_BUCKETS - 1; k++) {
            c += sk->b[k];
            if (c >= rank) break;
        }
        v = base * pow(1.12, k + 0.5);
    }
    if (v < sk->min) v = sk->min;
    if (v > sk->max) v = sk->max;
    return v;
}

/* ---- RTT (docs/qos.md §8.4) ---- */

static void rtt_sample(struct qos_rtt *r, int64_t ns, int64_t at)
{
    if (r->count == 0 || ns < r->min_ns) r->min_ns = ns;
    r->ewma_ns = r->count == 0 ? (double)ns : r->ewma_ns + ((double)ns - r->ewma_ns) / 8.0;
    r->last_ns = ns;
    r->last_at = at;
    r->sum_ns += (double)ns;
    r->count++;
    sketch_add(&r->sk, QOS_SK_BASE_RTT, (double)ns / 1e9);
}

static void hist_rtt(struct qos_hist_rtt *h, double v)
{
    int i = 0;
    while (i < QOS_RTT_BUCKETS && v > qos_rtt_bounds[i])
        i++;
    h->b[i]++;
    h->count++;
    h->sum += v;
}

static void hist_jitter(struct qos_hist_jitter *h, double v)
{
    int i = 0;
    while (i < QOS_JITTER_BUCKETS && v > qos_jitter_bounds[i])
        i++;
    h->b[i]++;
    h->count++;
    h->sum += v;
}

static void hist_loss(struct qos_hist_loss *h, double v)
{
    int i = 0;
    while (i < QOS_LOSS_BUCKETS && v > qos_loss_bounds[i])
        i++;
    h->b[i]++;
    h->count++;
    h->sum += v;
}

/* ---- flows (docs/qos.md §4.1) ---- */

static uint32_t flow_hash(const union stun_addr *a)
{
    uint64_t h = addr_hash(FNV64_INIT ^ (uint64_t)a->sa.sa_family, a);
    return (uint32_t)(h ^ h >> 32) | 1; /* never 0 */
}

static struct qos_flow *flow_get(struct qos_alloc *q, const union stun_addr *peer)
{
    if (!peer || (peer->sa.sa_family != AF_INET && peer->sa.sa_family != AF_INET6)) return NULL;
    for (unsigned i = 0; i < q->nflows; i++)
        if (addr_equal(&q->flows[i]->peer, peer)) return q->flows[i];
    if (q->nflows < QOS_MAX_FLOWS) {
        struct qos_flow *f = calloc(1, sizeof(*f));
        if (!f) return NULL;
        if (peer->sa.sa_family == AF_INET)
            f->peer.v4 = peer->v4;
        else
            f->peer.v6 = peer->v6;
        q->flows[q->nflows++] = f;
        return f;
    }
    /* Beyond the cap: remember who, so that "other_flows" counts peers, not packets. */
    uint32_t h = flow_hash(peer);
    if (!q->other_seen) q->other_seen = calloc(QOS_OTHER_SEEN, sizeof(uint32_t));
    if (q->other_seen) {
        for (unsigned i = 0; i < q->n_other_seen; i++)
            if (q->other_seen[i] == h) return NULL;
        if (q->n_other_seen < QOS_OTHER_SEEN) {
            q->other_seen[q->n_other_seen++] = h;
            q->other_flows++;
        }
    }
    return NULL;
}

/* ---- RTP (docs/qos.md §5-§7) ---- */

static int static_pt_clock(uint8_t pt)
{
    switch (pt) {
    case 0:
    case 3:
    case 4:
    case 8:
    case 9:
    case 13:
    case 18:
        return CLOCK_IDX_8000;
    case 26:
    case 31:
    case 32:
    case 34:
        return CLOCK_IDX_90000;
    default:
        return -1;
    }
}

enum qos_kind qos_stream_kind(const struct qos_stream *s)
{
    int st = static_pt_clock(s->pt);
    if (st >= 0) return st == CLOCK_IDX_8000 ? QOS_KIND_AUDIO : QOS_KIND_VIDEO;
    if (s->shared_ts) return QOS_KIND_VIDEO;
    if (s->clock_src != QOS_CLOCK_UNKNOWN) {
        uint32_t c = qos_clock_rates[s->clock_idx];
        if (c == 90000) return QOS_KIND_VIDEO;
        if (c >= 8000 && c <= 48000) return QOS_KIND_AUDIO;
    }
    return QOS_KIND_UNKNOWN;
}

static int64_t ext_max(const struct qos_stream *s)
{
    return (int64_t)s->cycles + s->max_seq;
}

static uint64_t seg_expected(const struct qos_stream *s)
{
    int64_t e = ext_max(s) - (int64_t)s->base_seq + 1;
    return e > 0 ? (uint64_t)e : 0;
}

static uint64_t seg_lost_net(const struct qos_stream *s)
{
    uint64_t e = seg_expected(s);
    return e > s->unique ? e - s->unique : 0;
}

uint64_t qos_stream_expected(const struct qos_stream *s)
{
    return s->acc_expected + seg_expected(s);
}

uint64_t qos_stream_lost_net(const struct qos_stream *s)
{
    return s->acc_lost_net + seg_lost_net(s);
}

bool qos_stream_jitter(const struct qos_stream *s, uint32_t *units, double *seconds)
{
    if (s->clock_src == QOS_CLOCK_UNKNOWN) return false;
    uint32_t u = s->j16[s->clock_idx] >> 4;
    if (units) *units = u;
    if (seconds) *seconds = (double)u / qos_clock_rates[s->clock_idx];
    return true;
}

static bool bit_get(const struct qos_stream *s, int64_t e)
{
    uint64_t i = (uint64_t)e % QOS_SEQ_WINDOW;
    return (s->bits[i / 64] >> (i % 64)) & 1;
}

static void bit_set(struct qos_stream *s, int64_t e)
{
    uint64_t i = (uint64_t)e % QOS_SEQ_WINDOW;
    s->bits[i / 64] |= (uint64_t)1 << (i % 64);
}

/* Clear the bits of extended sequence numbers (from, to]. */
static void bits_clear(struct qos_stream *s, int64_t from, int64_t to)
{
    if (to - from >= QOS_SEQ_WINDOW) {
        memset(s->bits, 0, sizeof(s->bits));
        return;
    }
    for (int64_t e = from + 1; e <= to;) {
        uint64_t i = (uint64_t)e % QOS_SEQ_WINDOW;
        if (i % 64 == 0 && to - e >= 63) {
            s->bits[i / 64] = 0;
            e += 64;
        } else {
            s->bits[i / 64] &= ~((uint64_t)1 << (i % 64));
            e++;
        }
    }
}

/* Set bits in [from, to] that are set: count of received positions. */
static uint64_t bits_count(const struct qos_stream *s, int64_t from, int64_t to)
{
    uint64_t n = 0;
    for (int64_t e = from; e <= to;) {
        uint64_t i = (uint64_t)e % QOS_SEQ_WINDOW, sh = i % 64;
        uint64_t take = 64 - sh;
        if ((uint64_t)(to - e + 1) < take) take = (uint64_t)(to - e + 1);
        uint64_t mask = take == 64 ? ~(uint64_t)0 : (((uint64_t)1 << take) - 1) << sh;
        n += (uint64_t)__builtin_popcountll(s->bits[i / 64] & mask);
        e += (int64_t)take;
    }
    return n;
}

/* One evaluated loss indicator (0 received, 1 lost) into the Gilbert counters, docs/qos.md §7. */
static void loss_eval(struct qos_stream *s, struct qos_metrics *m, enum qos_leg leg, int lost,
                      uint64_t n)
{
    if (n == 0) return;
    if (s->loss_prev <= 1) s->gil[s->loss_prev][lost]++;
    if (lost && s->loss_prev != 1) {
        s->bursts++;
        if (m) m->loss_bursts[leg]++;
    }
    s->gil[lost][lost] += n - 1;
    if (lost) s->lost_held += n;
    s->loss_prev = (uint8_t)lost;
}

/* The highest extended sequence number moves from old to nw: evaluate what the hold
 * distance lets go, then clear the window for the new positions. */
static void advance(struct qos_stream *s, struct qos_metrics *m, enum qos_leg leg, int64_t old,
                    int64_t nw)
{
    int64_t limit = nw - (int64_t)s->hold;
    int64_t upto = limit < old ? limit : old;
    while (s->next_eval <= upto) {
        int lost = !bit_get(s, s->next_eval);
        /* runs of the same state in one call */
        int64_t e = s->next_eval + 1;
        while (e <= upto && (bit_get(s, e) ? 0 : 1) == lost)
            e++;
        loss_eval(s, m, leg, lost, (uint64_t)(e - s->next_eval));
        s->next_eval = e;
    }
    if (limit > old && s->next_eval <= limit) {
        loss_eval(s, m, leg, 1, (uint64_t)(limit - s->next_eval + 1));
        s->next_eval = limit + 1;
    }
    bits_clear(s, old, nw);
}

/* Start a statistics segment at sequence number seq (A.1 init_seq). */
static void seg_init(struct qos_stream *s, uint16_t seq)
{
    s->base_seq = seq;
    s->max_seq = seq;
    s->cycles = 0;
    s->bad_seq = 65536 + 1;
    s->received = s->unique = s->duplicated = s->out_of_order = 0;
    s->expected_prior = s->received_prior = 0;
    memset(s->bits, 0, sizeof(s->bits));
    s->next_eval = seq;
    s->loss_prev = 2;
}

/* An in-order packet into the jitter estimator, one Q4 accumulator per candidate clock until
 * the clock is known, and clock inference (docs/qos.md §6). */
static void jitter_update(struct qos_stream *s, uint32_t ts, int64_t rx)
{
    int64_t d = rx - s->first_rx;
    int64_t sec = d / NS_PER_S, rem = d % NS_PER_S;
    if (rem < 0) {
        rem += NS_PER_S;
        sec--;
    }
    bool all = s->clock_src == QOS_CLOCK_UNKNOWN;
    bool upd = s->have_prev && ts != s->prev_ts;
    if (s->have_prev && ts == s->prev_ts) s->shared_ts = 1;
    for (int c = 0; c < QOS_NCLOCKS; c++) {
        if (!all && c != s->clock_idx) continue;
        uint64_t rate = qos_clock_rates[c];
        uint32_t r = (uint32_t)((uint64_t)sec * rate + (uint64_t)rem * rate / NS_PER_S);
        uint32_t transit = r - ts;
        if (upd) {
            int32_t dd = (int32_t)(transit - s->prev_transit[c]);
            int64_t ad = dd < 0 ? -(int64_t)dd : dd;
            /* libwebrtc's Q4 update exactly (receive_statistics_impl.cc), so the value
             * matches what Chrome reports: J += ((|D| << 4) - J + 8) >> 4, the shift
             * rounding toward minus infinity. */
            if (ad < JITTER_MAX_D) {
                int64_t diff = (ad << 4) - (int64_t)s->j16[c] + 8;
                int64_t step = diff >= 0 ? diff / 16 : -((-diff + 15) / 16);
                s->j16[c] = (uint32_t)((int64_t)s->j16[c] + step);
            }
        }
        s->prev_transit[c] = transit;
    }
    if (s->have_prev)
        s->ts_ext += (int32_t)(ts - s->prev_ts);
    else
        s->ts_ext = s->first_ts_ext = 0;
    s->prev_ts = ts;
    s->have_prev = 1;

    int64_t span = rx - s->infer_rx;
    if (all && s->n_pkts >= INFER_MIN_PKTS && span >= INFER_MIN_NS) {
        double slope = (double)(s->ts_ext - s->first_ts_ext) * 1e9 / (double)span;
        /* The nearest candidate within 5 %: the windows of 44.1 and 48 kHz overlap
         * (45,600-46,305 Hz), and a 48 kHz stream whose first seconds arrive stretched (a
         * starved sender) must not be taken for 44.1 kHz by being tested first. */
        double best = 0.05;
        for (int c = 0; c < QOS_NCLOCKS; c++) {
            double rate = qos_clock_rates[c], err = fabs(slope - rate) / rate;
            if (err <= best) {
                best = err;
                s->clock_idx = (uint8_t)c;
                s->clock_src = QOS_CLOCK_INFERRED;
            }
        }
    }
}

static void stream_flush(struct qos_stream *s, struct qos_metrics *m, enum qos_leg leg, bool full);

/* A confirmed stream's packet: A.1 update_seq, duplicates, reorder, jitter (docs/qos.md §5.3). */
static void stream_packet(struct qos_stream *s, struct qos_metrics *m, enum qos_leg leg,
                          uint16_t seq, uint32_t ts, int64_t rx)
{
    uint16_t udelta = (uint16_t)(seq - s->max_seq);
    int64_t e;
    bool in_order = false;
    s->last_rx = rx;
    if (udelta < QOS_MAX_DROPOUT) {
        if (udelta > 0) {
            int64_t old = ext_max(s);
            if (seq < s->max_seq) s->cycles += 65536;
            s->max_seq = seq;
            advance(s, m, leg, old, ext_max(s));
            in_order = true;
        }
        e = ext_max(s);
    } else if (udelta <= 65536 - QOS_MAX_MISORD) {
        if (seq != s->bad_seq) {
            s->bad_seq = (uint32_t)((seq + 1) & 0xffff);
            return;
        }
        /* Two sequential packets after a large jump: the source restarted. Fold the old
         * segment into the totals first so that the counters stay monotonic. */
        s->acc_expected += seg_expected(s);
        s->acc_received += s->received;
        s->acc_unique += s->unique;
        s->acc_dup += s->duplicated;
        s->acc_ooo += s->out_of_order;
        s->acc_lost_net += seg_lost_net(s);
        s->acc_lost += (int64_t)seg_expected(s) - (int64_t)s->received;
        seg_init(s, seq);
        s->seq_restarts++;
        if (m) m->rtp_seq_restarts[leg]++;
        s->have_prev = 0; /* no previous transit across a restart */
        s->infer_rx = rx; /* the clock slope starts again too */
        s->n_pkts = 0;
        e = ext_max(s);
        in_order = true;
    } else {
        e = ext_max(s) - (int64_t)(65536 - udelta);
    }
    s->received++;
    s->n_pkts++;
    int64_t top = ext_max(s);
    if (e >= (int64_t)s->base_seq && e > top - QOS_SEQ_WINDOW) {
        if (bit_get(s, e)) {
            s->duplicated++;
        } else {
            bit_set(s, e);
            s->unique++;
            if (e < top) {
                s->out_of_order++;
                uint32_t dist = (uint32_t)(top - e);
                if (dist > s->max_reorder) {
                    s->max_reorder = dist;
                    uint32_t h = 3 * dist;
                    if (h < HOLD_MIN) h = HOLD_MIN;
                    if (h > HOLD_MAX) h = HOLD_MAX;
                    if (h > s->hold) s->hold = h;
                }
            }
        }
    }
    if (in_order) jitter_update(s, ts, rx);
}

/* A run of QOS_PROBATION packets confirmed the stream: count it retroactively, docs/qos.md §5.2. */
static void stream_confirm(struct qos_stream *s, enum qos_leg leg, struct qos_metrics *m)
{
    s->confirmed = 1;
    s->pt = s->pt & 0x7f;
    int st = static_pt_clock(s->pt);
    if (st >= 0) {
        s->clock_idx = (uint8_t)st;
        s->clock_src = QOS_CLOCK_STATIC;
    }
    s->first_rx = s->infer_rx = s->run_rx[0];
    s->hold = HOLD_MIN;
    seg_init(s, s->run_seq[0]);
    s->received = 1;
    s->unique = 1;
    s->n_pkts = 1;
    bit_set(s, s->base_seq);
    jitter_update(s, s->run_ts[0], s->run_rx[0]);
    for (int i = 1; i < QOS_PROBATION; i++)
        stream_packet(s, m, leg, s->run_seq[i], s->run_ts[i], s->run_rx[i]);
}

static void stream_retire(struct qos_alloc *q, struct qos_stream *s, struct qos_metrics *m,
                          enum qos_leg leg)
{
    if (!s->confirmed) return;
    stream_flush(s, m, leg, true);
    struct qos_legsum *l = &q->leg[leg];
    l->streams++;
    l->expected += qos_stream_expected(s);
    l->received += s->acc_received + s->received;
    l->lost += s->acc_lost + ((int64_t)seg_expected(s) - (int64_t)s->received);
    l->lost_net += qos_stream_lost_net(s);
    l->dup += s->acc_dup + s->duplicated;
    l->ooo += s->acc_ooo + s->out_of_order;
}

/* Returns the packet's stream (NULL when none could be kept). */
static struct qos_stream *rtp_packet(struct qos_alloc *q, struct qos_dir *d, struct qos_metrics *m,
                                     enum qos_leg leg, const uint8_t *p, int64_t rx)
{
    uint32_t ssrc = rd32(p + 8);
    uint16_t seq = rd16(p + 2);
    uint32_t ts = rd32(p + 4);
    uint8_t pt = p[1] & 0x7f;
    struct qos_stream *s = NULL;
    int slot = -1;
    for (int i = 0; i < QOS_MAX_STREAMS; i++) {
        if (d->streams[i] && d->streams[i]->ssrc == ssrc) {
            s = d->streams[i];
            break;
        }
        if (!d->streams[i] && slot < 0) slot = i;
    }
    if (!s) {
        if (slot < 0) {
            /* Replace the least recently seen, among SSRCs still in probation if there are
             * any: RTP-looking junk (random payloads, a quarter of which pass the first-byte
             * test) then never pushes out a confirmed stream. */
            slot = 0;
            for (int i = 1; i < QOS_MAX_STREAMS; i++) {
                const struct qos_stream *a = d->streams[i], *b = d->streams[slot];
                if (a->confirmed != b->confirmed ? !a->confirmed : a->last_rx < b->last_rx)
                    slot = i;
            }
            s = d->streams[slot];
            stream_retire(q, s, m, leg);
            memset(s, 0, sizeof(*s));
        } else {
            s = calloc(1, sizeof(*s));
            if (!s) return NULL;
            d->streams[slot] = s;
        }
        s->ssrc = ssrc;
    }
    if (s->confirmed) {
        stream_packet(s, m, leg, seq, ts, rx);
        return s;
    }
    s->last_rx = rx;
    uint8_t n = s->run_n;
    if (n > 0 && pt == s->pt && seq == (uint16_t)(s->run_seq[n - 1] + 1) &&
        (uint32_t)(ts - s->run_ts[n - 1]) < 0x80000000u) {
        s->run_seq[n] = seq;
        s->run_ts[n] = ts;
        s->run_rx[n] = rx;
        s->run_n = (uint8_t)(n + 1);
        if (s->run_n == QOS_PROBATION) stream_confirm(s, leg, m);
        return s;
    }
    s->pt = pt; /* a break restarts probation at this packet */
    s->run_seq[0] = seq;
    s->run_ts[0] = ts;
    s->run_rx[0] = rx;
    s->run_n = 1;
    return s;
}

/* Interval and final accounting of one stream into m. full: every sequence number counts
 * (final, eviction); otherwise the ones within the hold distance of the top wait. */
static void stream_flush(struct qos_stream *s, struct qos_metrics *m, enum qos_leg leg, bool full)
{
    if (!m || !s->confirmed) return;
    enum qos_kind k = qos_stream_kind(s);
    /* The kind of a dynamic payload type is known once the clock is inferred (2 s): the
     * counters wait for it (they are cumulative, nothing is lost by waiting) for up to two
     * intervals, so that a young stream is not labelled "unknown" for good. */
    if (!full && k == QOS_KIND_UNKNOWN && s->last_rx - s->first_rx < 2 * QOS_INTERVAL_NS) return;
    if (!s->started_counted) {
        m->rtp_streams_started[leg][k]++;
        s->started_counted = 1;
    }
    uint64_t ex = qos_stream_expected(s);
    if (ex > s->rep_expected) m->rtp_expected[leg][k] += ex - s->rep_expected;
    s->rep_expected = ex;
    uint64_t lost = qos_stream_lost_net(s);
    if (!full) {
        /* missing positions still inside the hold window are not lost yet */
        int64_t top = ext_max(s);
        int64_t from = top - (int64_t)s->hold + 1;
        if (from < (int64_t)s->base_seq) from = s->base_seq;
        if (from <= top) {
            uint64_t missing = (uint64_t)(top - from + 1) - bits_count(s, from, top);
            lost = lost > missing ? lost - missing : 0;
        }
    }
    if (lost > s->rep_lost) {
        m->rtp_lost[leg][k] += lost - s->rep_lost;
        s->rep_lost = lost;
    }
    uint64_t dup = s->acc_dup + s->duplicated, ooo = s->acc_ooo + s->out_of_order;
    if (dup > s->rep_dup) m->rtp_duplicates[leg][k] += dup - s->rep_dup;
    s->rep_dup = dup;
    if (ooo > s->rep_ooo) m->rtp_reordered[leg][k] += ooo - s->rep_ooo;
    s->rep_ooo = ooo;
}

/* ---- STUN (docs/qos.md §8) ---- */

static void pending_expire(struct qos_alloc *q, struct qos_flow *f, struct qos_metrics *m,
                           int64_t now)
{
    struct qos_stun *st = f->stun;
    if (!st) return;
    for (int i = 0; i < QOS_MAX_PENDING; i++) {
        struct qos_pending *e = &st->pend[i];
        if (!e->used || now - e->t_out < QOS_STUN_TIMEOUT_NS) continue;
        e->used = 0;
        if (e->leg == QOS_LEG_CLIENT) {
            q->client_rtt.unanswered++;
        } else {
            q->peer_rtt.unanswered++;
            st->peer.unanswered++;
        }
        if (m) m->stun_checks[e->leg][QOS_STUN_UNANSWERED]++;
    }
}

static void stun_packet(struct qos_alloc *q, struct qos_flow *f, struct qos_metrics *m,
                        enum qos_leg from, const uint8_t *p, int64_t rx)
{
    uint16_t type = rd16(p);
    bool req = type == 0x0001 || type == 0x0200;
    bool resp = type == 0x0101 || type == 0x0111 || type == 0x0300 || type == 0x0310;
    if (!req && !resp) return;
    if (!f->stun) {
        f->stun = calloc(1, sizeof(*f->stun));
        if (!f->stun) return;
    }
    struct qos_stun *st = f->stun;
    const uint8_t *txid = p + 8;
    if (req) {
        pending_expire(q, f, m, rx);
        int freei = -1, oldest = 0;
        for (int i = 0; i < QOS_MAX_PENDING; i++) {
            struct qos_pending *e = &st->pend[i];
            if (e->used && memcmp(e->txid, txid, 12) == 0) {
                e->retrans = 1; /* Karn: this transaction gives no sample */
                return;
            }
            if (!e->used && freei < 0) freei = i;
            if (e->used && e->t_out < st->pend[oldest].t_out) oldest = i;
        }
        if (freei < 0) { /* full: the oldest is given up */
            struct qos_pending *o = &st->pend[oldest];
            if (o->leg == QOS_LEG_CLIENT) {
                q->client_rtt.unanswered++;
            } else {
                q->peer_rtt.unanswered++;
                st->peer.unanswered++;
            }
            if (m) m->stun_checks[o->leg][QOS_STUN_UNANSWERED]++;
            freei = oldest;
        }
        struct qos_pending *e = &st->pend[freei];
        memcpy(e->txid, txid, 12);
        e->used = 1;
        e->retrans = 0;
        e->leg = (uint8_t)(from == QOS_LEG_CLIENT ? QOS_LEG_PEER : QOS_LEG_CLIENT);
        e->t_out = rx;
        return;
    }
    for (int i = 0; i < QOS_MAX_PENDING; i++) {
        struct qos_pending *e = &st->pend[i];
        if (!e->used || e->leg != from || memcmp(e->txid, txid, 12) != 0) continue;
        e->used = 0;
        if (rx - e->t_out >= QOS_STUN_TIMEOUT_NS) { /* expired already, whenever we look */
            if (from == QOS_LEG_CLIENT) {
                q->client_rtt.unanswered++;
            } else {
                q->peer_rtt.unanswered++;
                st->peer.unanswered++;
            }
            if (m) m->stun_checks[from][QOS_STUN_UNANSWERED]++;
            return;
        }
        if (e->retrans) {
            if (from == QOS_LEG_CLIENT) {
                q->client_rtt.ambiguous++;
            } else {
                q->peer_rtt.ambiguous++;
                st->peer.ambiguous++;
            }
            if (m) m->stun_checks[from][QOS_STUN_AMBIGUOUS]++;
            return;
        }
        int64_t rtt = rx - e->t_out;
        if (rtt < 0) rtt = 0; /* a clock step */
        int64_t other_ns, other_at;
        if (q->tl.cur[from].rtt_n < UINT16_MAX) {
            q->tl.cur[from].rtt_n++;
            q->tl.rtt_sum[from] += (double)rtt / 1e9;
        }
        if (from == QOS_LEG_CLIENT) {
            rtt_sample(&q->client_rtt, rtt, rx);
            st->client_last_ns = rtt;
            st->client_last_at = rx;
            other_ns = st->peer.last_ns;
            other_at = st->peer.count ? st->peer.last_at : 0;
        } else {
            rtt_sample(&q->peer_rtt, rtt, rx);
            rtt_sample(&st->peer, rtt, rx);
            other_ns = st->client_last_ns;
            other_at = st->client_last_at;
        }
        if (m) {
            m->stun_checks[from][QOS_STUN_ANSWERED]++;
            hist_rtt(&m->leg_rtt[from], (double)rtt / 1e9);
            if (other_at != 0 && rx - other_at < PATH_FRESH_NS)
                hist_rtt(&m->path_rtt, (double)(rtt + other_ns) / 1e9);
        }
        return;
    }
}

/* ---- RTCP / SRTCP (docs/qos.md §9) ---- */

static void rtcp_feedback(struct qos_rtcp *r, struct qos_metrics *m, enum qos_leg leg,
                          const uint8_t *h)
{
    uint8_t pt = h[1], fmt = h[0] & 0x1f;
    enum qos_feedback fb;
    if (pt == 205)
        fb = fmt == 1 ? QOS_FB_NACK : fmt == 15 ? QOS_FB_TWCC : QOS_FB_OTHER;
    else if (pt == 206)
        fb = fmt == 1 ? QOS_FB_PLI : fmt == 4 ? QOS_FB_FIR : fmt == 15 ? QOS_FB_REMB : QOS_FB_OTHER;
    else
        return;
    r->fb[fb]++;
    if (m) m->rtcp_feedback[leg][fb]++;
}

static void rtcp_packet(struct qos_dir *d, struct qos_metrics *m, enum qos_leg leg,
                        const uint8_t *p, size_t len, int64_t rx)
{
    if (!d->rtcp) {
        d->rtcp = calloc(1, sizeof(*d->rtcp));
        if (!d->rtcp) return;
    }
    struct qos_rtcp *r = d->rtcp;
    r->packets++;
    /* Plain RTCP when the compound lengths land exactly on the end. */
    size_t off = 0;
    while (off + 4 <= len && (p[off] >> 6) == 2)
        off += 4 * ((size_t)rd16(p + off + 2) + 1);
    if (off == len) {
        for (off = 0; off < len; off += 4 * ((size_t)rd16(p + off + 2) + 1))
            rtcp_feedback(r, m, leg, p + off);
        return;
    }
    /* SRTCP: only the first header is readable. */
    rtcp_feedback(r, m, leg, p);
    uint32_t cand[2];
    bool ok[2];
    ok[0] = len >= 8 + 14;
    ok[1] = len >= 8 + 4;
    cand[0] = ok[0] ? rd32(p + len - 14) & 0x7fffffffu : 0;
    cand[1] = ok[1] ? rd32(p + len - 4) & 0x7fffffffu : 0;
    uint32_t ssrc = rd32(p + 4);
    struct qos_srtcp_src *src = NULL;
    int oldest = 0;
    for (int i = 0; i < QOS_SRTCP_SSRCS; i++) {
        struct qos_srtcp_src *c = &r->src[i];
        if (c->used && c->ssrc == ssrc) {
            src = c;
            break;
        }
        if (!c->used || (r->src[oldest].used && c->seen < r->src[oldest].seen)) oldest = i;
    }
    if (!src) {
        src = &r->src[oldest];
        memset(src, 0, sizeof(*src));
        src->used = 1;
        src->ssrc = ssrc;
        src->last[0] = cand[0];
        src->last[1] = cand[1];
        src->seen = rx;
        return;
    }
    src->seen = rx;
    if (src->hyp == 0) {
        if (ok[0] && cand[0] == ((src->last[0] + 1) & 0x7fffffffu))
            src->hyp = 1;
        else if (ok[1] && cand[1] == ((src->last[1] + 1) & 0x7fffffffu))
            src->hyp = 2;
        src->last[0] = cand[0];
        src->last[1] = cand[1];
        return;
    }
    int h = src->hyp - 1;
    if (!ok[h]) return;
    uint32_t fwd = (cand[h] - src->last[h]) & 0x7fffffffu;
    if (fwd == 0 || fwd >= 0x40000000u) return; /* duplicate or late: no gap, keep the top */
    if (fwd > 1 && fwd <= 65536) {
        r->index_gaps += fwd - 1;
        if (m) m->srtcp_index_gaps[leg] += fwd - 1;
    }
    src->last[h] = cand[h];
}

/* ---- inter-arrival (docs/qos.md §10) ---- */

static void iat_packet(struct qos_dir *d, struct qos_metrics *m, enum qos_leg leg, int64_t rx)
{
    if (d->packets > 1) {
        int64_t iat = rx - d->last_rx;
        if (iat < 0) iat = 0;
        if (iat > QOS_STALL_NS && d->n_iat > 0 && d->iat_mean < (double)STALL_MEAN_NS) {
            d->stalls++;
            if (m) m->stalls[leg]++;
        }
        if (iat > d->max_gap) d->max_gap = iat;
        if (d->n_iat == 0) {
            d->iat_mean = (double)iat;
        } else {
            d->iat_mean += ((double)iat - d->iat_mean) / 16.0;
            double dv = fabs((double)iat - (double)d->prev_iat);
            d->iat_jit = d->n_iat == 1 ? dv : d->iat_jit + (dv - d->iat_jit) / 16.0;
        }
        d->prev_iat = iat;
        d->n_iat++;
    }
    d->last_rx = rx;
}

/* ---- intervals (docs/qos.md §11) ---- */

static void close_interval(struct qos_alloc *q, struct qos_metrics *m, int64_t start,
                           int64_t len_ns)
{
    bool have_loss[QOS_LEG_COUNT] = {false, false}, have_jit[QOS_LEG_COUNT] = {false, false};
    double worst_loss[QOS_LEG_COUNT] = {0, 0}, max_jit[QOS_LEG_COUNT] = {0, 0};
    uint64_t iv_exp[QOS_LEG_COUNT] = {0, 0}, iv_lost[QOS_LEG_COUNT] = {0, 0};
    for (unsigned fi = 0; fi < q->nflows; fi++) {
        struct qos_flow *f = q->flows[fi];
        for (int leg = 0; leg < QOS_LEG_COUNT; leg++) {
            struct qos_dir *d = &f->dir[leg];
            d->last_iv_packets = d->iv_packets;
            d->last_iv_bytes = d->iv_bytes;
            d->last_iv_ns = len_ns;
            d->iv_packets = d->iv_bytes = 0;
            for (int i = 0; i < QOS_MAX_STREAMS; i++) {
                struct qos_stream *s = d->streams[i];
                if (!s || !s->confirmed) continue;
                uint64_t ex = seg_expected(s);
                int64_t ei = (int64_t)(ex - s->expected_prior);
                int64_t ri = (int64_t)(s->received - s->received_prior);
                int64_t li = ei - ri;
                s->frac = (ei <= 0 || li <= 0) ? 0.0 : (double)li / (double)ei;
                s->have_frac = 1;
                s->expected_prior = ex;
                s->received_prior = s->received;
                if (ei > 0) iv_exp[leg] += (uint64_t)ei;
                if (ei > 0 && li > 0) iv_lost[leg] += (uint64_t)li;
                enum qos_kind k = qos_stream_kind(s);
                if (ri > 0) {
                    if (m) hist_loss(&m->interval_loss[leg][k], s->frac);
                    if (!have_loss[leg] || s->frac > worst_loss[leg]) worst_loss[leg] = s->frac;
                    have_loss[leg] = true;
                    double js;
                    if (qos_stream_jitter(s, NULL, &js)) {
                        if (m) hist_jitter(&m->stream_jitter[leg][k], js);
                        if (!s->have_jmax || js > s->jmax) s->jmax = js;
                        s->have_jmax = 1;
                        if (!have_jit[leg] || js > max_jit[leg]) max_jit[leg] = js;
                        have_jit[leg] = true;
                    }
                }
                stream_flush(s, m, (enum qos_leg)leg, false);
            }
        }
    }
    for (int leg = 0; leg < QOS_LEG_COUNT; leg++) {
        struct qos_legsum *l = &q->leg[leg];
        if (!have_loss[leg]) continue;
        sketch_add(&l->loss_sk, QOS_SK_BASE_LOSS, worst_loss[leg]);
        l->iv_count++;
        if (have_jit[leg]) {
            sketch_add(&l->jit_sk, QOS_SK_BASE_JIT, max_jit[leg]);
            l->jit_count++;
        }
        double jv = have_jit[leg] ? max_jit[leg] : 0;
        if (l->worst_at == 0 || worst_loss[leg] > l->worst_loss ||
            (worst_loss[leg] == l->worst_loss && jv > l->worst_jit)) {
            l->worst_loss = worst_loss[leg];
            l->worst_jit = jv;
            l->worst_at = start;
        }
    }
    struct qos_iv_leg iv[QOS_LEG_COUNT];
    for (int leg = 0; leg < QOS_LEG_COUNT; leg++)
        iv[leg] = (struct qos_iv_leg){have_loss[leg],  have_loss[leg] && have_jit[leg],
                                      worst_loss[leg], max_jit[leg],
                                      iv_exp[leg],     iv_lost[leg]};
    qos_tl_close(q, m, start, len_ns, iv);
}

/* Close every interval that ended by now. After a long silence the intervals past the
 * first two are all empty and identical, so they are skipped arithmetically. */
static void intervals_upto(struct qos_alloc *q, struct qos_metrics *m, int64_t now)
{
    int closed = 0;
    while (now >= q->iv_start + QOS_INTERVAL_NS) {
        if (closed == 2) {
            int64_t n = (now - q->iv_start) / QOS_INTERVAL_NS;
            q->iv_start += n * QOS_INTERVAL_NS;
            break;
        }
        close_interval(q, m, q->iv_start, QOS_INTERVAL_NS);
        q->iv_start += QOS_INTERVAL_NS;
        closed++;
    }
}

/* ---- API ---- */

struct qos_alloc *qos_alloc_new(int64_t now_ns)
{
    struct qos_alloc *q = calloc(1, sizeof(*q));
    if (!q) return NULL;
    q->start_ns = q->iv_start = now_ns;
    q->tl.cfg = (struct qos_config){QOS_DEFAULT_TIMELINE_INTERVALS, QOS_DEFAULT_LOSS_RATIO,
                                    QOS_DEFAULT_JITTER_S, QOS_DEFAULT_RTT_S};
    return q;
}

void qos_alloc_free(struct qos_alloc *q)
{
    if (!q) return;
    for (unsigned i = 0; i < q->nflows; i++) {
        struct qos_flow *f = q->flows[i];
        for (int leg = 0; leg < QOS_LEG_COUNT; leg++) {
            for (int s = 0; s < QOS_MAX_STREAMS; s++)
                free(f->dir[leg].streams[s]);
            free(f->dir[leg].rtcp);
        }
        free(f->stun);
        free(f);
    }
    free(q->other_seen);
    free(q->tl.ring);
    free(q->tl.series);
    free(q);
}

const char *const qos_icmp_names[QOS_ICMP_COUNT] = {"unreachable", "ttl_exceeded",
                                                    "packet_too_big"};

void qos_icmp(struct qos_alloc *q, struct qos_metrics *m, const union stun_addr *peer,
              enum qos_icmp_kind k, uint32_t mtu)
{
    if (k >= QOS_ICMP_COUNT) return;
    m->icmp[k]++;
    if (!q || q->finished) return;
    struct qos_flow *f = flow_get(q, peer);
    if (!f) return;
    f->icmp[k]++;
    if (k == QOS_ICMP_PACKET_TOO_BIG && mtu && (!f->path_mtu || mtu < f->path_mtu))
        f->path_mtu = mtu;
}

const char *const qos_ecn_names[QOS_ECN_COUNT] = {"not_ect", "ect1", "ect0", "ce"};

enum qos_class qos_packet(struct qos_alloc *q, struct qos_metrics *m, enum qos_leg from,
                          const union stun_addr *peer, const uint8_t *p, size_t len, int64_t rx_ns)
{
    return qos_packet_tos(q, m, from, peer, p, len, rx_ns, -1, NULL);
}

enum qos_class qos_packet_tos(struct qos_alloc *q, struct qos_metrics *m, enum qos_leg from,
                              const union stun_addr *peer, const uint8_t *p, size_t len,
                              int64_t rx_ns, int tos, enum qos_kind *kind)
{
    enum qos_class c = qos_classify(p, len);
    if (kind) *kind = QOS_KIND_UNKNOWN;
    if ((unsigned)from >= QOS_LEG_COUNT) return c;
    if (m) {
        m->packets[from][c]++;
        m->bytes[from][c] += len;
        if (tos >= 0) {
            m->ecn[from][tos & 3]++;
            m->dscp[from][(tos >> 2) & 63]++;
        }
    }
    if (!q) return c;
    q->leg[from].packets++;
    q->leg[from].bytes += len;
    if (tos >= 0) {
        q->leg[from].ecn[tos & 3]++;
        q->leg[from].dscp_seen |= 1ull << ((tos >> 2) & 63);
    }
    if (q->finished) return c;
    intervals_upto(q, m, rx_ns);
    struct qos_tl_leg *tl = &q->tl.cur[from];
    if (tl->packets < UINT32_MAX) tl->packets++;
    tl->bytes = len > UINT32_MAX - tl->bytes ? UINT32_MAX : tl->bytes + (uint32_t)len;
    if (tos >= 0 && (tos & 3) != 0) {
        if (tl->ect < UINT32_MAX) tl->ect++;
        if ((tos & 3) == 3 && tl->ce < UINT32_MAX) tl->ce++;
    }
    struct qos_flow *f = flow_get(q, peer);
    if (!f) {
        q->other_packets++;
        q->other_bytes += len;
        return c;
    }
    struct qos_dir *d = &f->dir[from];
    d->packets++;
    d->bytes += len;
    d->by_class[c]++;
    d->iv_packets++;
    d->iv_bytes += len;
    if (tos >= 0) {
        d->ecn[tos & 3]++;
        d->dscp_last = (uint8_t)((tos >> 2) & 63);
        d->dscp_seen |= 1ull << d->dscp_last;
    }
    iat_packet(d, m, from, rx_ns);
    switch (c) {
    case QOS_CLASS_STUN:
        stun_packet(q, f, m, from, p, rx_ns);
        break;
    case QOS_CLASS_RTP: {
        const struct qos_stream *s = rtp_packet(q, d, m, from, p, rx_ns);
        if (kind && s && s->confirmed) *kind = qos_stream_kind(s);
        break;
    }
    case QOS_CLASS_RTCP:
        rtcp_packet(d, m, from, p, len, rx_ns);
        break;
    default:
        break;
    }
    return c;
}

void qos_alloc_tick(struct qos_alloc *q, struct qos_metrics *m, int64_t now_ns, bool final)
{
    if (!q || q->finished) return;
    intervals_upto(q, m, now_ns);
    for (unsigned i = 0; i < q->nflows; i++)
        pending_expire(q, q->flows[i], m, now_ns);
    if (!final) return;
    if (now_ns > q->iv_start) close_interval(q, m, q->iv_start, now_ns - q->iv_start);
    qos_tl_final(q, m, now_ns);
    for (unsigned i = 0; i < q->nflows; i++)
        for (int leg = 0; leg < QOS_LEG_COUNT; leg++)
            for (int s = 0; s < QOS_MAX_STREAMS; s++)
                if (q->flows[i]->dir[leg].streams[s])
                    stream_flush(q->flows[i]->dir[leg].streams[s], m, (enum qos_leg)leg, true);
    q->finished = true;
}

/* ---- handover to and from the kernel fast path (qos.h, docs/offload.md §4) ---- */

static struct qos_flow *flow_find(const struct qos_alloc *q, const union stun_addr *peer)
{
    for (unsigned i = 0; i < q->nflows; i++)
        if (addr_equal(&q->flows[i]->peer, peer)) return q->flows[i];
    return NULL;
}

static struct qos_stream *stream_find(const struct qos_alloc *q, enum qos_leg from,
                                      const union stun_addr *peer, uint32_t ssrc)
{
    if (!q || (unsigned)from >= QOS_LEG_COUNT || !peer) return NULL;
    struct qos_flow *f = flow_find(q, peer);
    if (!f) return NULL;
    for (int i = 0; i < QOS_MAX_STREAMS; i++) {
        struct qos_stream *s = f->dir[from].streams[i];
        if (s && s->ssrc == ssrc && s->confirmed) return s;
    }
    return NULL;
}

_Static_assert(QOS_RTP_NCLOCKS == QOS_NCLOCKS, "qos_rtp_state clocks");
_Static_assert(QOS_RTP_WORDS * 64 == QOS_SEQ_WINDOW, "qos_rtp_state window");

bool qos_rtp_export(const struct qos_alloc *q, enum qos_leg from, const union stun_addr *peer,
                    uint32_t ssrc, struct qos_rtp_state *o)
{
    const struct qos_stream *s = stream_find(q, from, peer, ssrc);
    if (!s) return false;
    memset(o, 0, sizeof(*o));
    o->max_seq = s->max_seq;
    o->clock_idx = s->clock_idx;
    o->clock_src = s->clock_src;
    o->have_prev = s->have_prev;
    o->shared_ts = s->shared_ts;
    o->cycles = s->cycles;
    o->base_seq = s->base_seq;
    o->bad_seq = s->bad_seq;
    o->hold = s->hold;
    o->max_reorder = s->max_reorder;
    o->seq_restarts = s->seq_restarts;
    o->prev_ts = s->prev_ts;
    memcpy(o->prev_transit, s->prev_transit, sizeof(o->prev_transit));
    memcpy(o->j16, s->j16, sizeof(o->j16));
    o->received = s->received;
    o->unique = s->unique;
    o->duplicated = s->duplicated;
    o->out_of_order = s->out_of_order;
    o->n_pkts = s->n_pkts;
    o->acc_expected = s->acc_expected;
    o->acc_received = s->acc_received;
    o->acc_unique = s->acc_unique;
    o->acc_dup = s->acc_dup;
    o->acc_ooo = s->acc_ooo;
    o->acc_lost_net = s->acc_lost_net;
    o->acc_lost = s->acc_lost;
    o->ts_ext = s->ts_ext;
    o->first_ts_ext = s->first_ts_ext;
    o->first_rx = s->first_rx;
    o->last_rx = s->last_rx;
    o->infer_rx = s->infer_rx;
    memcpy(o->bits, s->bits, sizeof(o->bits));
    return true;
}

bool qos_rtp_import(struct qos_alloc *q, struct qos_metrics *m, enum qos_leg from,
                    const union stun_addr *peer, uint32_t ssrc, const struct qos_rtp_state *st,
                    int64_t now_ns)
{
    if (q && q->finished) return true;
    struct qos_stream *s = stream_find(q, from, peer, ssrc);
    if (!s) return false;
    (void)now_ns;
    if (st->seq_restarts != s->seq_restarts) {
        if (m) m->rtp_seq_restarts[from] += st->seq_restarts - s->seq_restarts;
        /* seg_init() of the new segment: a fresh loss evaluation and interval base */
        s->next_eval = st->base_seq;
        s->loss_prev = 2;
        s->expected_prior = s->received_prior = 0;
    }
    s->max_seq = st->max_seq;
    s->clock_idx = st->clock_idx;
    s->clock_src = st->clock_src;
    s->have_prev = st->have_prev;
    s->shared_ts = st->shared_ts;
    s->cycles = st->cycles;
    s->base_seq = st->base_seq;
    s->bad_seq = st->bad_seq;
    s->hold = st->hold;
    s->max_reorder = st->max_reorder;
    s->seq_restarts = st->seq_restarts;
    s->prev_ts = st->prev_ts;
    memcpy(s->prev_transit, st->prev_transit, sizeof(s->prev_transit));
    memcpy(s->j16, st->j16, sizeof(s->j16));
    s->received = st->received;
    s->unique = st->unique;
    s->duplicated = st->duplicated;
    s->out_of_order = st->out_of_order;
    s->n_pkts = st->n_pkts;
    s->acc_expected = st->acc_expected;
    s->acc_received = st->acc_received;
    s->acc_unique = st->acc_unique;
    s->acc_dup = st->acc_dup;
    s->acc_ooo = st->acc_ooo;
    s->acc_lost_net = st->acc_lost_net;
    s->acc_lost = st->acc_lost;
    s->ts_ext = st->ts_ext;
    s->first_ts_ext = st->first_ts_ext;
    if (st->last_rx > s->last_rx) s->last_rx = st->last_rx;
    s->infer_rx = st->infer_rx;
    memcpy(s->bits, st->bits, sizeof(s->bits));
    /* The loss pattern (docs/qos.md §7): the positions the top left a hold distance behind,
     * read from the window as it is now; older ones than the window are no longer known. */
    int64_t top = ext_max(s), limit = top - (int64_t)s->hold;
    int64_t oldest = top - QOS_SEQ_WINDOW + 1;
    if (s->next_eval <= limit && s->next_eval < oldest) s->next_eval = oldest;
    while (s->next_eval <= limit) {
        int lost = !bit_get(s, s->next_eval);
        int64_t e = s->next_eval + 1;
        while (e <= limit && (bit_get(s, e) ? 0 : 1) == lost)
            e++;
        loss_eval(s, m, from, lost, (uint64_t)(e - s->next_eval));
        s->next_eval = e;
    }
    return true;
}

void qos_counts_add(struct qos_alloc *q, struct qos_metrics *m, enum qos_leg from,
                    const union stun_addr *peer, const struct qos_counts *c, int64_t now_ns)
{
    if ((unsigned)from >= QOS_LEG_COUNT || !c->packets) return;
    uint64_t ect = c->ecn[1] + c->ecn[2] + c->ecn[3], ce = c->ecn[3], dscp_seen = 0;
    for (int k = 0; k < QOS_DSCP_COUNT; k++)
        if (c->dscp[k]) dscp_seen |= 1ull << k;
    if (m) {
        for (int k = 0; k < QOS_CLASS_COUNT; k++) {
            m->packets[from][k] += c->cls_packets[k];
            m->bytes[from][k] += c->cls_bytes[k];
        }
        for (int k = 0; k < QOS_ECN_COUNT; k++)
            m->ecn[from][k] += c->ecn[k];
        for (int k = 0; k < QOS_DSCP_COUNT; k++)
            m->dscp[from][k] += c->dscp[k];
    }
    if (!q) return;
    struct qos_legsum *l = &q->leg[from];
    l->packets += c->packets;
    l->bytes += c->bytes;
    for (int k = 0; k < QOS_ECN_COUNT; k++)
        l->ecn[k] += c->ecn[k];
    l->dscp_seen |= dscp_seen;
    if (q->finished) return;
    (void)now_ns;
    struct qos_tl_leg *tl = &q->tl.cur[from];
    tl->packets =
        c->packets > UINT32_MAX - tl->packets ? UINT32_MAX : tl->packets + (uint32_t)c->packets;
    tl->bytes = c->bytes > UINT32_MAX - tl->bytes ? UINT32_MAX : tl->bytes + (uint32_t)c->bytes;
    tl->ect = ect > UINT32_MAX - tl->ect ? UINT32_MAX : tl->ect + (uint32_t)ect;
    tl->ce = ce > UINT32_MAX - tl->ce ? UINT32_MAX : tl->ce + (uint32_t)ce;
    struct qos_flow *f = flow_get(q, peer);
    if (!f) {
        q->other_packets += c->packets;
        q->other_bytes += c->bytes;
        return;
    }
    struct qos_dir *d = &f->dir[from];
    d->packets += c->packets;
    d->bytes += c->bytes;
    for (int k = 0; k < QOS_CLASS_COUNT; k++)
        d->by_class[k] += c->cls_packets[k];
    d->iv_packets += c->packets;
    d->iv_bytes += c->bytes;
    for (int k = 0; k < QOS_ECN_COUNT; k++)
        d->ecn[k] += c->ecn[k];
    d->dscp_seen |= dscp_seen;
    if (c->dscp_last >= 0) d->dscp_last = (uint8_t)(c->dscp_last & 63);
    /* The inter-arrival statistics stay those of the datagrams the tap saw; the next one
     * is timed from the latest kernel arrival, not across them (docs/offload.md §4). */
    if (c->last_rx > d->last_rx) d->last_rx = c->last_rx;
}
