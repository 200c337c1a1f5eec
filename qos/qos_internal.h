/* qos_internal.h: the state behind struct qos_alloc, shared by qos.c (measurement) and
 * qos_out.c (metrics, Prometheus and JSON views). Not part of the API. */
#ifndef TERN_QOS_INTERNAL_H
#define TERN_QOS_INTERNAL_H

#include "qos.h"

#define QOS_NCLOCKS     7    /* candidate RTP clock rates, see qos_clock_rates */
#define QOS_SEQ_WINDOW  1024 /* duplicate bitmap, in extended sequence numbers */
#define QOS_MAX_DROPOUT 3000
#define QOS_MAX_MISORD  100
#define QOS_SK_BUCKETS  128 /* log sketch: ratio 1.12, so the bucket middle is within +-6 % */
#define QOS_SRTCP_SSRCS 4   /* SRTCP senders tracked per flow direction */
#define QOS_OTHER_SEEN  64  /* distinct unmeasured peers remembered for "other_flows" */

extern const uint32_t qos_clock_rates[QOS_NCLOCKS];

enum qos_clock_src { QOS_CLOCK_UNKNOWN, QOS_CLOCK_STATIC, QOS_CLOCK_INFERRED };

/* Log-bucket quantile sketch: values below base go into "zero", bucket i holds
 * [base * 1.12^i, base * 1.12^(i+1)). */
struct qos_sketch {
    uint32_t zero;
    uint32_t b[QOS_SK_BUCKETS];
    uint32_t n;
    double min, max;
};

/* RTT of one leg (per allocation, or per flow for the peer leg). */
struct qos_rtt {
    uint64_t count, unanswered, ambiguous;
    int64_t last_ns, min_ns, last_at; /* last_at: rx time of the last sample */
    double ewma_ns, sum_ns;
    struct qos_sketch sk;
};

struct qos_pending {
    uint8_t txid[12];
    uint8_t used;
    uint8_t leg;     /* the leg the request went toward: the response comes from it */
    uint8_t retrans; /* seen again (Karn): no sample */
    int64_t t_out;
};

/* Per-flow STUN state, allocated when a flow first carries a Binding/GOOG-PING. */
struct qos_stun {
    struct qos_pending pend[QOS_MAX_PENDING];
    struct qos_rtt peer;    /* peer-leg RTT of this flow */
    int64_t client_last_ns; /* last client-leg sample taken in this flow */
    int64_t client_last_at; /* 0: none */
};

struct qos_srtcp_src {
    uint32_t ssrc;
    uint8_t used;
    uint8_t hyp;      /* 0 undecided, 1 index at len-14 (HMAC-SHA1-80), 2 at len-4 (AEAD) */
    uint32_t last[2]; /* last index seen under each hypothesis */
    int64_t seen;
};

/* RTCP of one flow direction, allocated on its first RTCP packet. */
struct qos_rtcp {
    uint64_t packets, index_gaps;
    uint64_t fb[QOS_FB_COUNT];
    struct qos_srtcp_src src[QOS_SRTCP_SSRCS];
};

struct qos_stream {
    uint32_t ssrc;
    uint8_t pt;
    uint8_t confirmed;
    uint8_t run_n; /* probation: packets in the current run */
    uint8_t clock_idx;
    uint8_t clock_src;
    uint8_t shared_ts; /* an in-order packet repeated the previous timestamp */
    uint8_t have_prev; /* jitter: a previous in-order packet exists */
    uint8_t have_frac, have_jmax, started_counted;
    uint8_t loss_prev; /* 0/1 last evaluated state, 2 none */
    uint16_t run_seq[QOS_PROBATION];
    uint32_t run_ts[QOS_PROBATION];
    int64_t run_rx[QOS_PROBATION];
    int64_t first_rx, last_rx;
    int64_t infer_rx; /* clock inference: arrival of the first packet of the segment */
    /* RFC 3550 A.1 (the current segment: a restart starts a new one) */
    uint16_t max_seq;
    uint32_t cycles, base_seq, bad_seq;
    uint64_t received, unique, duplicated, out_of_order;
    uint64_t expected_prior, received_prior;
    uint64_t bits[QOS_SEQ_WINDOW / 64];
    uint32_t seq_restarts;
    /* jitter (libwebrtc rule), one Q4 accumulator per candidate clock until it is known */
    uint32_t prev_ts;
    uint32_t prev_transit[QOS_NCLOCKS];
    uint32_t j16[QOS_NCLOCKS];
    int64_t ts_ext, first_ts_ext; /* unwrapped timestamp of the last in-order packet */
    uint64_t n_pkts;              /* packets since the first of the confirming run */
    /* interval */
    double frac, jmax;
    /* loss pattern (hold distance) */
    int64_t next_eval;
    uint32_t hold, max_reorder;
    uint64_t gil[2][2];
    uint64_t bursts, lost_held;
    /* previous segments (restarts), for the totals */
    uint64_t acc_expected, acc_received, acc_unique, acc_dup, acc_ooo, acc_lost_net;
    int64_t acc_lost;
    /* what went into the metrics already */
    uint64_t rep_expected, rep_lost, rep_dup, rep_ooo;
};

struct qos_dir {
    uint64_t packets, bytes;
    uint64_t by_class[QOS_CLASS_COUNT];
    /* inter-arrival */
    int64_t last_rx, prev_iat, max_gap;
    double iat_mean, iat_jit; /* ns */
    uint64_t n_iat, stalls;
    /* current and last closed interval */
    uint64_t iv_packets, iv_bytes, last_iv_packets, last_iv_bytes;
    int64_t last_iv_ns; /* length of the last closed interval; 0: none closed */
    struct qos_rtcp *rtcp;
    struct qos_stream *streams[QOS_MAX_STREAMS];
    uint64_t ecn[QOS_ECN_COUNT]; /* datagrams by ECN codepoint (when the TOS was known) */
    uint64_t dscp_seen;          /* bit d: DSCP d was seen */
    uint8_t dscp_last;           /* the latest DSCP (meaningful when dscp_seen != 0) */
};

struct qos_flow {
    union stun_addr peer;
    struct qos_stun *stun;
    uint64_t icmp[QOS_ICMP_COUNT];     /* ICMP errors about datagrams sent to this peer */
    uint32_t path_mtu;                 /* the smallest MTU a packet-too-big reported; 0: none */
    struct qos_dir dir[QOS_LEG_COUNT]; /* by ingress leg: [CLIENT] = from_client */
};

/* Per ingress leg, for the summary. */
struct qos_legsum {
    uint64_t packets, bytes;
    uint64_t ecn[QOS_ECN_COUNT];
    uint64_t dscp_seen; /* bit d: DSCP d was seen from this leg */
    /* RTP totals of streams that were evicted */
    uint64_t streams, expected, received, lost_net, dup, ooo;
    int64_t lost;
    /* interval sketches: worst stream loss ratio, max stream jitter, per interval */
    struct qos_sketch loss_sk, jit_sk;
    uint32_t iv_count, jit_count;
    double worst_loss, worst_jit;
    int64_t worst_at; /* 0: none */
};

/* ---- timelines (qos_timeline.c, docs/qos.md §18) ---- */

#define QOS_TL_HAVE_LOSS 1 /* the leg had RTP that received something in the interval */
#define QOS_TL_HAVE_JIT  2 /* ... and a jitter (clock known) */

/* One leg in one interval. Counts saturate at UINT32_MAX / UINT16_MAX. */
struct qos_tl_leg {
    uint32_t packets, bytes;
    uint32_t rtp_expected, rtp_lost; /* summed over the leg's streams (A.3, lost >= 0) */
    uint32_t ce, ect;                /* datagrams marked CE; ECN-capable (ECT(0), ECT(1), CE) */
    float loss, jitter, rtt;         /* worst stream fraction; worst stream jitter (s); mean RTT */
    uint16_t rtt_n;                  /* RTT samples */
    uint8_t flags;                   /* QOS_TL_HAVE_* */
    uint8_t poor;                    /* reasons this interval crossed (bit r) */
    uint8_t moves;                   /* client leg: the client moved to a new address (RFC 8016) */
    uint16_t drops[QOS_DROP_COUNT];
};

struct qos_tl_entry {
    uint32_t seq;    /* interval number since the meter's start */
    uint32_t len_ms; /* its length (5000 but for the final, partial one) */
    struct qos_tl_leg leg[QOS_LEG_COUNT];
};

struct qos_ring {
    uint32_t cap, n, head; /* head: the slot the next entry goes to */
    struct qos_tl_entry e[];
};

/* One point of the whole-call series: one or more consecutive intervals merged. */
struct qos_sp_leg {
    uint64_t bytes;
    float loss, jitter; /* worst over the point; < 0: none */
    float rtt_sum;      /* sum of interval means, over rtt_iv intervals */
    uint16_t rtt_iv;
    uint16_t moves; /* client leg: RFC 8016 moves of the client in the point's intervals */
};
struct qos_series {
    uint32_t span;   /* intervals per point (a power of two) */
    uint32_t n;      /* points in use; the last may be partly filled */
    uint32_t filled; /* intervals in the last point */
    uint32_t first_seq;
    struct qos_sp_leg p[QOS_SERIES_POINTS][QOS_LEG_COUNT];
    struct {
        uint8_t leg, reasons, ended;
        uint32_t intervals;
        int64_t since, until; /* until 0: open */
    } ep[QOS_SERIES_EPISODES];
    uint32_t nep, ep_total;
};

/* An episode of one leg. */
struct qos_episode {
    uint8_t open, reasons, clean;
    uint32_t intervals;
    int64_t since, last_end;
    double loss, jit, rtt; /* worst of the episode; < 0: none */
    int ep_slot;           /* its slot in the series' episode list, -1: none */
};

struct qos_timeline {
    struct qos_config cfg;
    struct qos_tl_leg cur[QOS_LEG_COUNT]; /* the interval being filled */
    double rtt_sum[QOS_LEG_COUNT];
    struct qos_ring *ring;     /* NULL until the first closed interval (or cfg: none) */
    struct qos_series *series; /* likewise */
    struct qos_episode ep[QOS_LEG_COUNT];
    struct qos_event evq[QOS_EVENT_QUEUE];
    uint8_t ev_head, ev_n;
    uint64_t ev_lost;
};

/* Per-leg values of the interval close_interval() computed, for the timeline. */
struct qos_iv_leg {
    bool have_loss, have_jit;
    double loss, jit;
    uint64_t expected, lost;
};
void qos_tl_close(struct qos_alloc *q, struct qos_metrics *m, int64_t start, int64_t len_ns,
                  const struct qos_iv_leg iv[QOS_LEG_COUNT]);
void qos_tl_final(struct qos_alloc *q, struct qos_metrics *m, int64_t now_ns);

struct qos_alloc {
    int64_t start_ns, iv_start;
    bool finished;
    struct qos_flow *flows[QOS_MAX_FLOWS];
    unsigned nflows;
    uint64_t other_packets, other_bytes, other_flows;
    uint32_t *other_seen; /* hashes of unmeasured peers (lazy) */
    unsigned n_other_seen;
    struct qos_rtt client_rtt, peer_rtt;
    struct qos_legsum leg[QOS_LEG_COUNT];
    struct qos_timeline tl;
};

/* qos.c helpers used by qos_out.c */
uint64_t qos_stream_expected(const struct qos_stream *s);
uint64_t qos_stream_lost_net(const struct qos_stream *s);
enum qos_kind qos_stream_kind(const struct qos_stream *s);
bool qos_stream_jitter(const struct qos_stream *s, uint32_t *units, double *seconds);
double qos_sketch_quantile(const struct qos_sketch *sk, double base, double q);

#define QOS_SK_BASE_RTT  10e-6 /* seconds */
#define QOS_SK_BASE_LOSS 1e-5
#define QOS_SK_BASE_JIT  1e-6

#endif
