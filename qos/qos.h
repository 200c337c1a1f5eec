/* qos.h: per-flow quality measurement of relayed traffic (the "QoS tap"), designed in
 * docs/qos.md. Pure: the relay hands in each forwarded payload (TURN framing removed),
 * the leg it came from, the peer it belongs to and its kernel receive time; statistics come
 * out as JSON (jansson) and as Prometheus text. No I/O, no clock, no allocation per packet
 * (a flow's state is allocated when its first packet arrives, an RTP stream's when its SSRC
 * is first seen; both are bounded per allocation).
 *
 * Vocabulary
 *   leg        the ingress leg of a packet: QOS_LEG_CLIENT (it came from the TURN client) or
 *              QOS_LEG_PEER (from a peer). Loss and jitter belong to the leg packets came FROM;
 *              RTT of a leg is the round trip relay<->that endpoint.
 *   flow       one peer transport address of one allocation; it has two directions,
 *              "from_client" (ingress leg client) and "from_peer" (ingress leg peer).
 *   interval   QOS_INTERVAL_NS windows aligned to the allocation's start; interval values
 *              (loss fraction, jitter observations, histograms) are taken when a window ends,
 *              lazily, on the first packet or qos_alloc_tick() after it.
 *   time       CLOCK_REALTIME nanoseconds (what SO_TIMESTAMPNS gives), always an argument.
 */
#ifndef TERN_QOS_H
#define TERN_QOS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stun.h"

#define QOS_INTERVAL_NS     (5 * 1000000000LL) /* reporting interval */
#define QOS_MAX_FLOWS       16 /* peers measured per allocation; more are counted in "other_flows" */
#define QOS_MAX_STREAMS     8  /* RTP SSRCs per flow direction; least recently seen is replaced */
#define QOS_MAX_PENDING     16                  /* outstanding relayed STUN transactions per flow */
#define QOS_STUN_TIMEOUT_NS (10 * 1000000000LL) /* a relayed request unanswered this long */
#define QOS_PROBATION       4 /* consecutive sequence numbers that make an SSRC a stream */
#define QOS_STALL_NS        (250 * 1000000LL) /* a gap this long in a steady flow is a stall */

enum qos_leg { QOS_LEG_CLIENT = 0, QOS_LEG_PEER = 1, QOS_LEG_COUNT };

/* First-byte demultiplexing (RFC 7983 section 7, RFC 9443) plus RFC 5761 for RTCP. */
enum qos_class {
    QOS_CLASS_STUN,
    QOS_CLASS_DTLS,
    QOS_CLASS_RTP,
    QOS_CLASS_RTCP,
    QOS_CLASS_QUIC,
    QOS_CLASS_OTHER,
    QOS_CLASS_COUNT
};
extern const char *const qos_class_names[QOS_CLASS_COUNT]; /* "stun", "dtls", "rtp", ... */
extern const char *const qos_leg_names[QOS_LEG_COUNT];     /* "client", "peer" */

/* Media kind of an RTP stream, from its payload type and shape (docs/qos.md §5.6). */
enum qos_kind { QOS_KIND_AUDIO, QOS_KIND_VIDEO, QOS_KIND_UNKNOWN, QOS_KIND_COUNT };
extern const char *const qos_kind_names[QOS_KIND_COUNT]; /* "audio", "video", "unknown" */

/* Classify a payload by its first bytes (no state). Anything that fails the checks of
 * docs/qos.md §3 (STUN: cookie and length; RTP/RTCP: version 2, header length) is
 * QOS_CLASS_OTHER. */
enum qos_class qos_classify(const uint8_t *p, size_t len);

/* ---- Per-worker aggregates: everything /metrics exports about QoS ----
 * Plain counters and fixed-bucket histograms, written only by the worker that owns them;
 * the relay sums the workers' copies (qos_metrics_add) when it is scraped. No label carries
 * an allocation, user, address or SSRC: cardinality is fixed by the enums above. */

#define QOS_RTT_BUCKETS       17 /* 0.5 ms .. 3 s (see qos_rtt_bounds) */
#define QOS_JITTER_BUCKETS    11 /* 0.5 ms .. 0.5 s */
#define QOS_LOSS_BUCKETS      11 /* 0 .. 1 */
#define QOS_RESIDENCE_BUCKETS 12 /* 5 us .. 100 ms */

struct qos_hist_rtt {
    uint64_t b[QOS_RTT_BUCKETS + 1]; /* non-cumulative counts; the last is +Inf */
    uint64_t count;
    double sum;
};
struct qos_hist_jitter {
    uint64_t b[QOS_JITTER_BUCKETS + 1];
    uint64_t count;
    double sum;
};
struct qos_hist_loss {
    uint64_t b[QOS_LOSS_BUCKETS + 1];
    uint64_t count;
    double sum;
};
struct qos_hist_residence {
    uint64_t b[QOS_RESIDENCE_BUCKETS + 1];
    uint64_t count;
    double sum;
};
extern const double qos_rtt_bounds[QOS_RTT_BUCKETS];
extern const double qos_jitter_bounds[QOS_JITTER_BUCKETS];
extern const double qos_loss_bounds[QOS_LOSS_BUCKETS];
extern const double qos_residence_bounds[QOS_RESIDENCE_BUCKETS];

enum qos_stun_outcome {
    QOS_STUN_ANSWERED,
    QOS_STUN_UNANSWERED,
    QOS_STUN_AMBIGUOUS,
    QOS_STUN_OUTCOME_COUNT
};
/* ICMP errors about datagrams sent to a peer (RFC 8656 11), as the relay saw them. */
enum qos_icmp_kind {
    QOS_ICMP_UNREACHABLE,    /* destination unreachable (not "fragmentation needed") */
    QOS_ICMP_TTL_EXCEEDED,   /* time exceeded */
    QOS_ICMP_PACKET_TOO_BIG, /* IPv4 fragmentation needed, IPv6 packet too big */
    QOS_ICMP_COUNT
};
extern const char *const qos_icmp_names[QOS_ICMP_COUNT];

/* ECN codepoints (RFC 3168), by their value: the low two bits of the TOS / traffic class. */
#define QOS_ECN_COUNT 4
extern const char *const qos_ecn_names[QOS_ECN_COUNT]; /* "not_ect", "ect1", "ect0", "ce" */
#define QOS_DSCP_COUNT 64

enum qos_feedback {
    QOS_FB_NACK,
    QOS_FB_PLI,
    QOS_FB_FIR,
    QOS_FB_TWCC,
    QOS_FB_REMB,
    QOS_FB_OTHER,
    QOS_FB_COUNT
};

/* Why a leg's interval is poor: the threshold it crossed (docs/qos.md §18). */
enum qos_reason { QOS_REASON_LOSS, QOS_REASON_JITTER, QOS_REASON_RTT, QOS_REASON_COUNT };
extern const char *const qos_reason_names[QOS_REASON_COUNT]; /* "loss", "jitter", "rtt" */

struct qos_metrics {
    uint64_t packets[QOS_LEG_COUNT][QOS_CLASS_COUNT]; /* ingress packets by class */
    uint64_t bytes[QOS_LEG_COUNT][QOS_CLASS_COUNT];
    /* RTP, accumulated when intervals close (and when a stream or allocation ends). */
    uint64_t rtp_expected[QOS_LEG_COUNT][QOS_KIND_COUNT];
    uint64_t rtp_lost[QOS_LEG_COUNT][QOS_KIND_COUNT]; /* net loss, never negative */
    uint64_t rtp_duplicates[QOS_LEG_COUNT][QOS_KIND_COUNT];
    uint64_t rtp_reordered[QOS_LEG_COUNT][QOS_KIND_COUNT];
    uint64_t rtp_seq_restarts[QOS_LEG_COUNT];
    uint64_t rtp_streams_started[QOS_LEG_COUNT][QOS_KIND_COUNT];
    uint64_t loss_bursts[QOS_LEG_COUNT];
    uint64_t srtcp_index_gaps[QOS_LEG_COUNT];
    uint64_t rtcp_feedback[QOS_LEG_COUNT][QOS_FB_COUNT];
    uint64_t stun_checks[QOS_LEG_COUNT][QOS_STUN_OUTCOME_COUNT]; /* leg: the one the RTT is of */
    uint64_t stalls[QOS_LEG_COUNT];
    uint64_t icmp[QOS_ICMP_COUNT];                /* ICMP errors about datagrams sent to peers */
    uint64_t ecn[QOS_LEG_COUNT][QOS_ECN_COUNT];   /* ingress datagrams by ECN codepoint */
    uint64_t dscp[QOS_LEG_COUNT][QOS_DSCP_COUNT]; /* ... and by DSCP */
    struct qos_hist_rtt leg_rtt[QOS_LEG_COUNT];   /* each STUN-matched RTT sample */
    struct qos_hist_rtt path_rtt;                 /* client leg + peer leg, per fresh pair */
    struct qos_hist_jitter stream_jitter[QOS_LEG_COUNT][QOS_KIND_COUNT]; /* per stream interval */
    struct qos_hist_loss interval_loss[QOS_LEG_COUNT][QOS_KIND_COUNT];   /* per stream interval */
    struct qos_hist_residence
        residence[QOS_LEG_COUNT]; /* kernel RX -> handed to send, by ingress leg */
    uint64_t episodes[QOS_LEG_COUNT]
                     [QOS_REASON_COUNT]; /* quality episodes started, by reason (qos_reason) */
    uint64_t events_lost;                /* episode events that found a meter's queue full */
};

/* dst += src (counters and histograms). */
void qos_metrics_add(struct qos_metrics *dst, const struct qos_metrics *src);
/* One observation of the relay's own residence time for a packet from leg. */
void qos_observe_residence(struct qos_metrics *m, enum qos_leg from, int64_t ns);
/* Prometheus text exposition (format 0.0.4) of m, every family with # HELP and # TYPE, names
 * prefixed "tern_qos_". Appends to a malloc'd string: buf, len and cap as for a growable buffer
 * (start with NULL/0/0). 0, or -1 when out of memory. */
int qos_metrics_prometheus(const struct qos_metrics *m, char **buf, size_t *len, size_t *cap);

/* ---- Per-allocation state ---- */

struct qos_alloc;

/* A new, empty meter for an allocation created at now_ns. NULL when out of memory. */
struct qos_alloc *qos_alloc_new(int64_t now_ns);
void qos_alloc_free(struct qos_alloc *q);

/* The tap: one forwarded datagram's payload (the application bytes; for ChannelData and
 * Send/Data indications the inner data). from: its ingress leg; peer: the peer transport
 * address of the flow (the source for QOS_LEG_PEER, the destination for QOS_LEG_CLIENT);
 * rx_ns: its kernel receive time. Observations that complete go into m. Returns the class.
 * O(1): at most QOS_MAX_FLOWS + QOS_MAX_STREAMS + QOS_MAX_PENDING comparisons. */
enum qos_class qos_packet(struct qos_alloc *q, struct qos_metrics *m, enum qos_leg from,
                          const union stun_addr *peer, const uint8_t *p, size_t len, int64_t rx_ns);
/* The same, with the datagram's TOS / traffic class byte (0-255; -1: unknown, as on a TCP
 * leg), counted per flow and direction by ECN codepoint and DSCP. *kind (kind may be NULL):
 * the media kind of the confirmed RTP stream the packet belongs to, else QOS_KIND_UNKNOWN
 * (what the relay marks DSCP by, with qos.dscp: by-class). */
enum qos_class qos_packet_tos(struct qos_alloc *q, struct qos_metrics *m, enum qos_leg from,
                              const union stun_addr *peer, const uint8_t *p, size_t len,
                              int64_t rx_ns, int tos, enum qos_kind *kind);

/* An ICMP error of kind k about a datagram sent to peer (its flow); mtu: the next-hop MTU it
 * reported (packet too big), else 0. Counted in m and, when the peer has a flow, in the
 * flow's "icmp" view (with the smallest path MTU reported). */
void qos_icmp(struct qos_alloc *q, struct qos_metrics *m, const union stun_addr *peer,
              enum qos_icmp_kind k, uint32_t mtu);

/* Let time pass without packets: close intervals that ended by now_ns, count relayed STUN
 * requests older than QOS_STUN_TIMEOUT_NS as unanswered. Call before reading a snapshot and
 * when the allocation ends (then with final = true: the partial interval is closed too and
 * every stream's remaining counts go into m). */
void qos_alloc_tick(struct qos_alloc *q, struct qos_metrics *m, int64_t now_ns, bool final);

/* ---- Timelines, thresholds and episodes (docs/qos.md §18) ----
 * Each meter keeps the last N closed intervals per ingress leg in a ring (allocated with the
 * first closed interval, freed with the meter; N from qos_alloc_configure, 0: no ring), and
 * judges each closed interval of each leg against the thresholds: a leg whose interval crosses
 * one (loss, jitter or RTT above it) opens an episode ("poor"); the episode ends after
 * QOS_RECOVER_INTERVALS consecutive judged intervals under every threshold, or when the
 * meter's final tick runs. Each start and each end is queued once as an event
 * (qos_alloc_event), so the relay logs one degraded/recovered pair per episode. The whole
 * call's series is also kept, downsampled into at most QOS_SERIES_POINTS points (the span of
 * a point doubles when they are full), for the quality record. */

#define QOS_RECOVER_INTERVALS 2   /* clean intervals in a row that end an episode */
#define QOS_SERIES_POINTS     32  /* points of the whole-call series (quality record) */
#define QOS_TIMELINE_MAX      720 /* intervals a ring may hold: 60 minutes */
#define QOS_EVENT_QUEUE       8   /* episode events waiting for the relay, per meter */

/* Datagrams of an allocation the relay did not deliver, by reason, counted in its timeline
 * against the leg they came from. */
enum qos_drop {
    QOS_DROP_PERMISSION, /* no permission / channel for the peer */
    QOS_DROP_BANDWIDTH,  /* over the allocation's bandwidth limit */
    QOS_DROP_SEND,       /* the kernel refused the send */
    QOS_DROP_OVERFLOW,   /* the relay socket's receive queue overflowed (SO_RXQ_OVFL) */
    QOS_DROP_COUNT
};
extern const char *const qos_drop_names[QOS_DROP_COUNT];

/* The defaults (configs/README.md, docs/qos.md §18.2): 10 minutes of history; a leg is poor
 * above 1 % loss, 30 ms jitter or 300 ms RTT in an interval. */
#define QOS_DEFAULT_TIMELINE_INTERVALS 120
#define QOS_DEFAULT_LOSS_RATIO         0.01
#define QOS_DEFAULT_JITTER_S           0.030
#define QOS_DEFAULT_RTT_S              0.300

/* What a meter is judged by (qos_alloc_new starts with the defaults). A threshold of 0 is off. */
struct qos_config {
    uint32_t timeline_intervals; /* ring length in intervals, 0..QOS_TIMELINE_MAX */
    double loss_ratio;           /* per-interval RTP loss fraction of the worst stream */
    double jitter_s;             /* per-interval RTP jitter of the worst stream */
    double rtt_s;                /* per-interval mean RTT of the leg */
};

/* Apply c to q (a copy is kept). The ring length takes effect when the ring is first made;
 * thresholds from the next closed interval on. */
void qos_alloc_configure(struct qos_alloc *q, const struct qos_config *c);

/* The client of this allocation moved to a new address (RFC 8016 mobility): marked in the
 * interval being filled, so the timeline shows where the client leg changed path. */
void qos_client_moved(struct qos_alloc *q);

/* n datagrams from leg from of this allocation were not delivered, for reason why: counted
 * in the interval being filled (the one of the latest packet or tick). */
void qos_drop(struct qos_alloc *q, enum qos_leg from, enum qos_drop why, uint32_t n);

enum qos_event_type { QOS_EV_DEGRADED, QOS_EV_RECOVERED };
struct qos_event {
    enum qos_event_type type;
    enum qos_leg leg;
    unsigned reasons;   /* bit r: reason r; degraded: the first bad interval's; recovered:
                           every reason of the episode */
    int64_t since;      /* start of the episode's first bad interval */
    int64_t at;         /* degraded: end of that interval; recovered: end of the last judged */
    uint32_t intervals; /* recovered: bad intervals in the episode */
    bool ended;         /* recovered: because the call ended, not because it got better */
    /* degraded: that interval's values; recovered: the worst of the episode; NAN unknown */
    double loss_ratio, jitter_s, rtt_s;
};
/* Take the oldest queued event into *ev; false when none. Events that found the queue full
 * are counted (qos_alloc_events_lost). */
bool qos_alloc_event(struct qos_alloc *q, struct qos_event *ev);
uint64_t qos_alloc_events_lost(const struct qos_alloc *q);
/* The reasons (bit r) of leg's open episode; 0 when the leg is not poor. */
unsigned qos_alloc_poor(const struct qos_alloc *q, enum qos_leg leg);

/* Bytes a ring of n intervals costs (what qos_alloc_configure's timeline_intervals buys). */
size_t qos_timeline_bytes(uint32_t n);

/* GET /api/v1/allocations/{id}/timeline, minus what the relay adds:
 * { "interval_seconds": 5, "capacity": N, "started_at": time,
 *   "thresholds": { "loss_ratio", "jitter_seconds", "rtt_seconds" } (null: off),
 *   "poor": [POOR...],
 *   "intervals": [ { "seq": k (interval number since the meter's start), "start": time,
 *       "seconds": length, "client_leg": TL, "peer_leg": TL } ... ] (oldest first, dense:
 *       intervals the relay skipped while nothing arrived are there with zero packets) }
 * TL = { "packets", "bytes", "packets_per_second", "bits_per_second", "rtp_expected",
 *   "rtp_lost", "loss_ratio" | null (worst stream), "jitter_seconds" | null (worst stream),
 *   "rtt_seconds" | null (mean of the interval's samples), "rtt_samples", "ce" | null (null
 *   when no ECN-capable datagram came), "ect", "drops": { "permission", "bandwidth", "send",
 *   "overflow" }, "poor": ["loss", ...] (the thresholds this interval crossed) }
 * POOR = { "leg": "client" | "peer", "reasons": [...], "since": time, "intervals": N } */
json_t *qos_timeline_json(const struct qos_alloc *q);
/* The summary's additions (also in qos_summary_json): "poor": [POOR...] */
json_t *qos_poor_json(const struct qos_alloc *q);
/* The whole call's series for the quality record (bounded: QOS_SERIES_POINTS points):
 * { "point_seconds": span of a point, "started_at": time, "points": N,
 *   "client_leg": { "loss_ratio": [...], "jitter_ms": [...], "rtt_ms": [...], "kbps": [...] },
 *   "peer_leg": {...}, "episodes": [ { "leg", "reasons", "since", "until", "intervals" } ] }
 * (at most QOS_SERIES_EPISODES episodes, the first ones; "episodes_total" counts all);
 * values are the worst (loss, jitter), mean (RTT) and mean rate over the point's intervals,
 * null where the point has none. Rounded so that a record stays under 4 KB. */
#define QOS_SERIES_EPISODES 8
json_t *qos_series_json(const struct qos_alloc *q);

/* ---- JSON views (new references; NULL when out of memory). Unknown values are JSON null,
 * never 0; every estimate carries its sample count. Times: RFC 3339 UTC with milliseconds.
 *
 * qos_summary_json: the per-allocation summary used by GET /api/v1/allocations and in the
 * end-of-call record. Per ingress leg ("client_leg", "peer_leg"; the peer leg aggregates all
 * peers):
 *   { "packets": N, "bytes": N,
 *     "rtt": { "last_seconds", "min_seconds", "ewma_seconds", "p50_seconds", "p95_seconds",
 *              "sum_seconds", "measurements": N, "unanswered": N, "ambiguous": N }, (null fields
 *              until a sample exists; p50/p95 from a log-bucket sketch, +-6 %)
 *     "rtp": { "streams": N, "expected": N, "received": N, "lost": N (signed, RFC 3550),
 *              "lost_net": N, "loss_ratio": lost_net/expected | null, "duplicates": N,
 *              "reordered": N, "jitter_seconds": max over active streams | null,
 *              "interval_loss_ratio": worst stream's last closed interval | null },
 *     "intervals": { "count": N, "loss_ratio_p50", "loss_ratio_p95", "loss_ratio_max",
 *                    "jitter_p50_seconds", "jitter_p95_seconds", "jitter_max_seconds",
 *                    "worst_at": time | null } }
 * plus "path_rtt_seconds" (latest client-leg + latest peer-leg sample, or null),
 * "peers": N, "other_flows": N, and "quality": { "loss_ratio": worst of the legs' loss_ratio |
 * null, "jitter_seconds": worst | null, "rtt_seconds": path or worst leg rtt | null } for sorting.
 *
 * qos_detail_json: docs/qos.md §14.4 for one allocation, minus what the relay adds (ids,
 * user, addresses): { "sampled_at", "interval_seconds", "client_leg": { "rtt": {...} },
 * "peers": [ { "peer": "ip:port", "peer_leg": { "rtt": {...} }, "path_rtt_seconds",
 *   "directions": { "from_client": DIR, "from_peer": DIR } } ], "other_flows": N,
 *   "other_flow_packets": N }
 * DIR = { "packets_total", "bytes_total", "by_class": { "stun": N, ... },
 *   "iat": { "mean_seconds", "jitter_seconds", "max_gap_seconds", "stalls_total" } (mean and
 *          gap null until two packets, jitter until three), "interval": { "packets", "bytes",
 * "packets_per_second", "bits_per_second" } (last closed interval), "srtcp": { "packets_total",
 * "index_gaps_total", "feedback_total": { "nack": N, ... } }, "rtp_streams": [ { "ssrc",
 * "payload_type", "kind", "clock_rate" | null, "clock_rate_source": "static_pt" | "inferred" |
 * "unknown", "state": "active" | "stale", "packets_received", "packets_received_unique",
 * "packets_duplicated", "packets_out_of_order", "packets_expected", "packets_lost",
 * "packets_lost_net", "extended_highest_seq", "seq_restarts_total", "interval_fraction_lost" |
 * null, "jitter_seconds" | null, "jitter_rtp_units" | null, "jitter_variant": "libwebrtc",
 *     "jitter_max_interval_seconds" | null,
 *     "loss_pattern": { "gilbert_p", "gilbert_r", "burst_ratio", "mean_burst_packets",
 *                       "bursts_total" }, "first_packet_at", "last_packet_at" } ] }
 * ECN and DSCP (RFC 8656 14): each detail DIR carries "ecn": { "not_ect": N, "ect1": N,
 *   "ect0": N, "ce": N } and "dscp": { "last": N | null, "seen": [N, ...] }; each summary leg
 *   "ecn" with the same four counts over all its peers and "dscp_seen": [N, ...].
 * ICMP (RFC 8656 11): each detail peer, and the summary over all peers, carry
 *   "icmp": { "unreachable": N, "ttl_exceeded": N, "packet_too_big": N,
 *             "path_mtu": smallest MTU reported | null }.
 */
json_t *qos_summary_json(const struct qos_alloc *q);
json_t *qos_detail_json(const struct qos_alloc *q, int64_t now_ns);

/* ---- Handing a stream to another counter and taking it back (docs/offload.md §4) ----
 * The kernel fast path counts the confirmed RTP streams of the flows it forwards with the
 * same integer arithmetic (relay/bpf/offload_rtp.h); these calls move the per-packet state of
 * one stream out of the meter and back in, and add the per-direction counts the kernel kept,
 * so that every view shows one set of numbers. The layout is that of struct tern_rtp. Times
 * (first_rx, last_rx, infer_rx) are in the meter's clock: the caller converts. */
#define QOS_RTP_NCLOCKS 7
#define QOS_RTP_WORDS   16
struct qos_rtp_state {
    uint16_t max_seq;
    uint8_t clock_idx, clock_src, have_prev, shared_ts;
    uint8_t pad[2];
    uint32_t cycles, base_seq, bad_seq;
    uint32_t hold, max_reorder, seq_restarts;
    uint32_t prev_ts;
    uint32_t prev_transit[QOS_RTP_NCLOCKS];
    uint32_t j16[QOS_RTP_NCLOCKS];
    uint64_t received, unique, duplicated, out_of_order, n_pkts;
    uint64_t acc_expected, acc_received, acc_unique, acc_dup, acc_ooo, acc_lost_net;
    int64_t acc_lost;
    int64_t ts_ext, first_ts_ext;
    int64_t first_rx, last_rx, infer_rx;
    uint64_t bits[QOS_RTP_WORDS];
};

/* The state of the confirmed stream ssrc of peer's flow, direction from; false when there is
 * none (not seen, or still in probation). */
bool qos_rtp_export(const struct qos_alloc *q, enum qos_leg from, const union stun_addr *peer,
                    uint32_t ssrc, struct qos_rtp_state *out);
/* Take st back into that stream: its counts, jitter and clock become st's; the positions the
 * top moved past go through the loss-pattern evaluation (those still in st's window); restarts
 * are counted in m. false when the stream is gone from the meter (evicted): the caller stops
 * counting it. Neither call closes intervals: the caller ticks the meter (qos_alloc_tick) once
 * everything is merged, so an interval that ended meanwhile closes with what arrived until the
 * merge. now_ns: the meter's time. */
bool qos_rtp_import(struct qos_alloc *q, struct qos_metrics *m, enum qos_leg from,
                    const union stun_addr *peer, uint32_t ssrc, const struct qos_rtp_state *st,
                    int64_t now_ns);

/* Datagrams of one flow direction counted elsewhere (the kernel), added as if tapped. */
struct qos_counts {
    uint64_t packets, bytes;
    uint64_t cls_packets[QOS_CLASS_COUNT], cls_bytes[QOS_CLASS_COUNT];
    uint64_t ecn[QOS_ECN_COUNT];
    uint64_t dscp[QOS_DSCP_COUNT];
    int dscp_last;   /* the latest DSCP among them, -1: none */
    int64_t last_rx; /* the latest arrival among them (the meter's clock), 0: none */
};
void qos_counts_add(struct qos_alloc *q, struct qos_metrics *m, enum qos_leg from,
                    const union stun_addr *peer, const struct qos_counts *c, int64_t now_ns);

/* RFC 3339 UTC with milliseconds ("2026-11-22T10:00:00.123Z") into out[32]. */
void qos_format_time(int64_t ns, char out[32]);

#endif
