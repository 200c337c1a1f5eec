/* offload_rtp.h: the per-SSRC RTP arithmetic of the XDP program (relay/bpf/tern_xdp.bpf.c),
 * header-only and integer-only so that the host unit test (tests/unit/test_offload_rtp.c)
 * runs exactly this code against the user-space meter (qos/qos.c) on the same sequences.
 *
 * It mirrors stream_packet() and jitter_update() of qos/qos.c for a *confirmed* stream
 * (docs/qos.md §5.3-§6): RFC 3550 A.1 with MAX_DROPOUT 3000 / MAX_MISORDER 100 and restarts
 * whose counts accumulate, the 1024-position duplicate bitmap, out-of-order counts and the
 * reorder distance behind the hold distance, libwebrtc's Q4 jitter (in-order packets, updated
 * when the timestamp changes, |D| >= 450000 skipped), one accumulator per candidate clock
 * until the clock is inferred, and the inference (nearest candidate within 5 %, from at least
 * 10 packets over at least 2 s). Probation, classification by payload type and kind, the loss
 * pattern (Gilbert model) and the intervals stay in user space: user space confirms a stream,
 * hands its state over (qos_rtp_export), and merges it back (qos_rtp_import), docs/offload.md
 * §4. Every loop has a constant bound (the verifier). Times are ns of one clock, any clock:
 * only differences are used. */
#ifndef TERN_OFFLOAD_RTP_H
#define TERN_OFFLOAD_RTP_H

#include <linux/types.h>

/* Inlined in the program: no function call may happen while the stream's lock is held. */
#define TERN_RTP_INLINE static inline __attribute__((always_inline))

#define TERN_RTP_NCLOCKS    7
#define TERN_RTP_WINDOW     1024 /* QOS_SEQ_WINDOW */
#define TERN_RTP_WORDS      (TERN_RTP_WINDOW / 64)
#define TERN_RTP_DROPOUT    3000
#define TERN_RTP_MISORD     100
#define TERN_RTP_JITTER_MAX 450000
#define TERN_RTP_HOLD_MIN   50
#define TERN_RTP_HOLD_MAX   1000
#define TERN_RTP_NS         1000000000ull
#define TERN_RTP_INFER_NS   (2 * TERN_RTP_NS)
#define TERN_RTP_INFER_PKTS 10
/* Clock sources, as enum qos_clock_src. */
#define TERN_RTP_CLOCK_UNKNOWN  0
#define TERN_RTP_CLOCK_INFERRED 2

/* The candidate clocks, as qos_clock_rates in qos/qos.c. */
TERN_RTP_INLINE __u32 tern_rtp_rate(int c)
{
    switch (c) {
    case 0:
        return 8000;
    case 1:
        return 16000;
    case 2:
        return 24000;
    case 3:
        return 32000;
    case 4:
        return 44100;
    case 5:
        return 48000;
    default:
        return 90000;
    }
}

/* One confirmed stream's state: the fields of struct qos_stream that the per-packet path
 * changes (qos/qos_internal.h), in the same units. The same layout as struct qos_rtp_state
 * (qos/qos.h), which relay/offload.c checks at compile time. */
struct tern_rtp {
    __u16 max_seq;
    __u8 clock_idx, clock_src, have_prev, shared_ts;
    __u8 pad[2];
    __u32 cycles, base_seq, bad_seq;
    __u32 hold, max_reorder, seq_restarts;
    __u32 prev_ts;
    __u32 prev_transit[TERN_RTP_NCLOCKS];
    __u32 j16[TERN_RTP_NCLOCKS];
    __u64 received, unique, duplicated, out_of_order, n_pkts;
    __u64 acc_expected, acc_received, acc_unique, acc_dup, acc_ooo, acc_lost_net;
    __s64 acc_lost;
    __s64 ts_ext, first_ts_ext;
    __s64 first_rx, last_rx, infer_rx;
    __u64 bits[TERN_RTP_WORDS];
};

TERN_RTP_INLINE __s64 tern_rtp_ext_max(const struct tern_rtp *s)
{
    return (__s64)s->cycles + s->max_seq;
}

TERN_RTP_INLINE __u64 tern_rtp_seg_expected(const struct tern_rtp *s)
{
    __s64 e = tern_rtp_ext_max(s) - (__s64)s->base_seq + 1;
    return e > 0 ? (__u64)e : 0;
}

/* Clear the bits of extended sequence numbers (from, to], word by word (at most 17 words). */
TERN_RTP_INLINE void tern_rtp_bits_clear(struct tern_rtp *s, __s64 from, __s64 to)
{
    if (to <= from) return;
    if (to - from >= TERN_RTP_WINDOW) {
        for (int i = 0; i < TERN_RTP_WORDS; i++)
            s->bits[i] = 0;
        return;
    }
    __u64 e = (__u64)(from + 1), last = (__u64)to;
    for (int k = 0; k < TERN_RTP_WORDS + 1; k++) {
        if (e > last) break;
        __u64 i = e % TERN_RTP_WINDOW, sh = i % 64, take = 64 - sh;
        if (last - e + 1 < take) take = last - e + 1;
        __u64 mask = take == 64 ? ~(__u64)0 : (((__u64)1 << take) - 1) << sh;
        s->bits[(i / 64) & (TERN_RTP_WORDS - 1)] &= ~mask;
        e += take;
    }
}

/* floor(rx - first_rx) split into whole seconds and a non-negative remainder, as qos.c. */
TERN_RTP_INLINE void tern_rtp_split(__s64 d, __s64 *sec, __u64 *rem)
{
    __u64 ud = d < 0 ? (__u64)(-d) : (__u64)d;
    __s64 s = (__s64)(ud / TERN_RTP_NS);
    __s64 r = (__s64)(ud % TERN_RTP_NS);
    if (d < 0) {
        s = -s;
        r = -r;
    }
    if (r < 0) {
        r += (__s64)TERN_RTP_NS;
        s--;
    }
    *sec = s;
    *rem = (__u64)r;
}

/* An in-order packet into the jitter estimator and the clock inference (jitter_update()). */
TERN_RTP_INLINE void tern_rtp_jitter(struct tern_rtp *s, __u32 ts, __s64 rx)
{
    __s64 sec;
    __u64 rem;
    tern_rtp_split(rx - s->first_rx, &sec, &rem);
    int all = s->clock_src == TERN_RTP_CLOCK_UNKNOWN;
    int upd = s->have_prev && ts != s->prev_ts;
    if (s->have_prev && ts == s->prev_ts) s->shared_ts = 1;
#ifdef __clang__
#pragma unroll
#endif
    for (int c = 0; c < TERN_RTP_NCLOCKS; c++) {
        if (!all && c != s->clock_idx) continue;
        __u64 rate = tern_rtp_rate(c);
        __u32 r = (__u32)((__u64)sec * rate + rem * rate / TERN_RTP_NS);
        __u32 transit = r - ts;
        if (upd) {
            __s32 dd = (__s32)(transit - s->prev_transit[c]);
            __s64 ad = dd < 0 ? -(__s64)dd : dd;
            if (ad < TERN_RTP_JITTER_MAX) {
                /* J += ((|D| << 4) - J + 8) >> 4, rounding toward minus infinity */
                __s64 diff = (ad << 4) - (__s64)s->j16[c] + 8;
                __s64 step =
                    diff >= 0 ? (__s64)((__u64)diff >> 4) : -(__s64)(((__u64)(-diff) + 15) >> 4);
                s->j16[c] = (__u32)((__s64)s->j16[c] + step);
            }
        }
        s->prev_transit[c] = transit;
    }
    if (s->have_prev)
        s->ts_ext += (__s32)(ts - s->prev_ts);
    else
        s->ts_ext = s->first_ts_ext = 0;
    s->prev_ts = ts;
    s->have_prev = 1;

    __s64 span = rx - s->infer_rx;
    if (all && s->n_pkts >= TERN_RTP_INFER_PKTS && span >= (__s64)TERN_RTP_INFER_NS &&
        span < ((__s64)1 << 40)) {
        /* slope = T * 1e9 / span; candidate c fits when |slope - rate| / rate <= 5 %, i.e.
         * 20 |N| <= rate * span with N = T * 1e9 - rate * span; the nearest has the smallest
         * |N| / rate (span is common). The spans are bounded (2^40 ns, 18 minutes) so that no
         * product overflows; qos.c's doubles agree but within 2^-8 of an exact tie. */
        __s64 t = s->ts_ext - s->first_ts_ext;
        if (t > 0 && t < ((__s64)1 << 33)) {
            __u64 best = ~(__u64)0;
#ifdef __clang__
#pragma unroll
#endif
            for (int c = 0; c < TERN_RTP_NCLOCKS; c++) {
                __u64 rate = tern_rtp_rate(c);
                __s64 n = t * (__s64)TERN_RTP_NS - (__s64)(rate * (__u64)span);
                __u64 an = n < 0 ? (__u64)(-n) : (__u64)n;
                if (an * 20 > rate * (__u64)span) continue;
                __u64 err = (an << 8) / rate;
                if (err <= best) {
                    best = err;
                    s->clock_idx = (__u8)c;
                    s->clock_src = TERN_RTP_CLOCK_INFERRED;
                }
            }
        }
    }
}

/* One packet of a confirmed stream (stream_packet()): seq, ts and the arrival time rx.
 * Returns 0 when the packet was not counted (the first packet after a large jump). */
TERN_RTP_INLINE int tern_rtp_packet(struct tern_rtp *s, __u16 seq, __u32 ts, __s64 rx)
{
    __u16 udelta = (__u16)(seq - s->max_seq);
    __s64 e;
    int in_order = 0;
    s->last_rx = rx;
    if (udelta < TERN_RTP_DROPOUT) {
        if (udelta > 0) {
            __s64 old = tern_rtp_ext_max(s);
            if (seq < s->max_seq) s->cycles += 65536;
            s->max_seq = seq;
            tern_rtp_bits_clear(s, old, tern_rtp_ext_max(s));
            in_order = 1;
        }
        e = tern_rtp_ext_max(s);
    } else if (udelta <= 65536 - TERN_RTP_MISORD) {
        if (seq != s->bad_seq) {
            s->bad_seq = (__u32)((seq + 1) & 0xffff);
            return 0;
        }
        /* The source restarted: fold the old segment into the totals (seg_init()). */
        __u64 ex = tern_rtp_seg_expected(s);
        s->acc_expected += ex;
        s->acc_received += s->received;
        s->acc_unique += s->unique;
        s->acc_dup += s->duplicated;
        s->acc_ooo += s->out_of_order;
        s->acc_lost_net += ex > s->unique ? ex - s->unique : 0;
        s->acc_lost += (__s64)ex - (__s64)s->received;
        s->base_seq = seq;
        s->max_seq = seq;
        s->cycles = 0;
        s->bad_seq = 65536 + 1;
        s->received = s->unique = s->duplicated = s->out_of_order = 0;
        for (int i = 0; i < TERN_RTP_WORDS; i++)
            s->bits[i] = 0;
        s->seq_restarts++;
        s->have_prev = 0;
        s->infer_rx = rx;
        s->n_pkts = 0;
        e = tern_rtp_ext_max(s);
        in_order = 1;
    } else {
        e = tern_rtp_ext_max(s) - (__s64)(65536 - udelta);
    }
    s->received++;
    s->n_pkts++;
    __s64 top = tern_rtp_ext_max(s);
    if (e >= (__s64)s->base_seq && e > top - TERN_RTP_WINDOW) {
        __u64 i = (__u64)e % TERN_RTP_WINDOW;
        __u64 *w = &s->bits[(i / 64) & (TERN_RTP_WORDS - 1)];
        __u64 bit = (__u64)1 << (i % 64);
        if (*w & bit) {
            s->duplicated++;
        } else {
            *w |= bit;
            s->unique++;
            if (e < top) {
                s->out_of_order++;
                __u32 dist = (__u32)(top - e);
                if (dist > s->max_reorder) {
                    s->max_reorder = dist;
                    __u32 h = 3 * dist;
                    if (h < TERN_RTP_HOLD_MIN) h = TERN_RTP_HOLD_MIN;
                    if (h > TERN_RTP_HOLD_MAX) h = TERN_RTP_HOLD_MAX;
                    if (h > s->hold) s->hold = h;
                }
            }
        }
    }
    if (in_order) tern_rtp_jitter(s, ts, rx);
    return 1;
}

/* The payload classes of qos_classify() (qos/qos.c, docs/qos.md §3), in enum qos_class
 * order, from the first n bytes copied of a payload of len bytes (n >= min(len, 80)). */
#define TERN_CLS_STUN  0
#define TERN_CLS_DTLS  1
#define TERN_CLS_RTP   2
#define TERN_CLS_RTCP  3
#define TERN_CLS_QUIC  4
#define TERN_CLS_OTHER 5
#define TERN_CLS_COUNT 6
#define TERN_CLS_COPY  80

TERN_RTP_INLINE int tern_classify(const __u8 *p, __u32 len)
{
    if (len == 0) return TERN_CLS_OTHER;
    __u8 b = p[0];
    if (b <= 3) {
        if (len < 20 || p[4] != 0x21 || p[5] != 0x12 || p[6] != 0xa4 || p[7] != 0x42)
            return TERN_CLS_OTHER;
        __u32 mlen = ((__u32)p[2] << 8) | p[3];
        if (mlen % 4 != 0 || 20 + mlen != len) return TERN_CLS_OTHER;
        return TERN_CLS_STUN;
    }
    if (b >= 20 && b <= 63) return TERN_CLS_DTLS;
    if (b >= 64 && b <= 127) return TERN_CLS_QUIC;
    if (b >= 192) return TERN_CLS_QUIC;
    if (b >= 128) {
        if (len < 2) return TERN_CLS_OTHER;
        if (p[1] >= 192 && p[1] <= 223) return len >= 8 ? TERN_CLS_RTCP : TERN_CLS_OTHER;
        __u32 hdr = 12 + 4 * (__u32)(b & 0x0f); /* at most 72 */
        if (len < hdr) return TERN_CLS_OTHER;
        if (b & 0x10) {
            if (len < hdr + 4) return TERN_CLS_OTHER;
            /* hdr + 3 <= 75 < TERN_CLS_COPY */
            hdr += 4 + 4 * (((__u32)p[hdr + 2] << 8) | p[hdr + 3]);
            if (len < hdr) return TERN_CLS_OTHER;
        }
        return TERN_CLS_RTP;
    }
    return TERN_CLS_OTHER;
}

#endif
