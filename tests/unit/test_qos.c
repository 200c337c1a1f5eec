/* test_qos.c: the QoS tap on synthetic traffic with synthetic times: classifier, RTP
 * probation/loss/duplicates/reorder/wrap/restart, libwebrtc jitter against a hand computation,
 * clock inference, STUN RTT (Karn, timeout), SRTCP index gaps, the SSRC cap, Prometheus text
 * and the JSON views. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "addr.h"
#include "qos.h"
#include "testutil.h"

#define MS     1000000LL
#define SEC    1000000000LL
#define T0     (1700000000LL * SEC) /* allocation start */
#define SSRC_A 0x11223344u
#define SSRC_B 0x55667788u

static uint64_t rng_state;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static union stun_addr peer_addr(const char *ip, unsigned port)
{
    union stun_addr a;
    assert_true(addr_parse(ip, port, &a));
    return a;
}

static size_t stun(uint8_t *b, uint16_t type, uint8_t txid_seed)
{
    memset(b, 0, 20);
    b[0] = (uint8_t)(type >> 8);
    b[1] = (uint8_t)type;
    b[4] = 0x21;
    b[5] = 0x12;
    b[6] = 0xA4;
    b[7] = 0x42;
    for (int i = 0; i < 12; i++)
        b[8 + i] = (uint8_t)(txid_seed * 7 + i);
    return 20;
}

struct rig {
    struct qos_alloc *q;
    struct qos_metrics m;
    union stun_addr peer;
};

static void rig_init(struct rig *r)
{
    memset(r, 0, sizeof(*r));
    r->q = qos_alloc_new(T0);
    assert_non_null(r->q);
    r->peer = peer_addr("192.0.2.44", 60001);
}

static void send_rtp(struct rig *r, enum qos_leg leg, uint8_t pt, uint16_t seq, uint32_t ts,
                     uint32_t ssrc, int64_t t)
{
    uint8_t b[256];
    size_t n = rtp_build(b, pt, seq, ts, ssrc, 100);
    assert_int_equal(qos_packet(r->q, &r->m, leg, &r->peer, b, n, t), QOS_CLASS_RTP);
}

/* The idx-th stream of the first peer's direction, from the detail view (a new reference to
 * the whole document is returned in *doc). */
static json_t *stream_at(struct rig *r, int64_t now, const char *dir, size_t idx, json_t **doc)
{
    *doc = qos_detail_json(r->q, now);
    assert_non_null(*doc);
    json_t *p = json_array_get(json_object_get(*doc, "peers"), 0);
    assert_non_null(p);
    json_t *s = json_array_get(
        json_object_get(json_object_get(json_object_get(p, "directions"), dir), "rtp_streams"),
        idx);
    return s;
}

static json_int_t ji(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    if (!json_is_integer(v)) fail_msg("%s is not an integer", k);
    return json_integer_value(v);
}

static double jr(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    if (!json_is_number(v)) fail_msg("%s is not a number", k);
    return json_number_value(v);
}

static bool jnull(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    if (!v) fail_msg("%s is missing", k);
    return json_is_null(v);
}

static uint64_t sum_kinds(const uint64_t a[QOS_KIND_COUNT])
{
    uint64_t s = 0;
    for (int k = 0; k < QOS_KIND_COUNT; k++)
        s += a[k];
    return s;
}

/* ---- classifier ---- */

static void test_classify_table(void **state)
{
    (void)state;
    uint8_t b[64];
    memset(b, 0, sizeof(b));
    assert_int_equal(qos_classify(b, 0), QOS_CLASS_OTHER);
    assert_int_equal(qos_classify(NULL, 10), QOS_CLASS_OTHER);

    size_t n = stun(b, 0x0001, 1);
    assert_int_equal(qos_classify(b, n), QOS_CLASS_STUN);
    assert_int_equal(qos_classify(b, n + 4), QOS_CLASS_OTHER); /* 20 + length != len */
    b[3] = 4;
    assert_int_equal(qos_classify(b, 24), QOS_CLASS_STUN);
    b[3] = 2;
    assert_int_equal(qos_classify(b, 22), QOS_CLASS_OTHER); /* length % 4 */
    b[3] = 0;
    b[7] = 0x43;
    assert_int_equal(qos_classify(b, 20), QOS_CLASS_OTHER); /* cookie */
    b[7] = 0x42;
    assert_int_equal(qos_classify(b, 19), QOS_CLASS_OTHER); /* short */
    b[0] = 4;
    assert_int_equal(qos_classify(b, 20), QOS_CLASS_OTHER); /* 4..19: ZRTP etc. */
    b[0] = 16;
    assert_int_equal(qos_classify(b, 20), QOS_CLASS_OTHER);

    for (int v = 20; v <= 63; v++) {
        b[0] = (uint8_t)v;
        assert_int_equal(qos_classify(b, 1), QOS_CLASS_DTLS);
    }
    for (int v = 64; v <= 127; v++) {
        b[0] = (uint8_t)v;
        assert_int_equal(qos_classify(b, 1), QOS_CLASS_QUIC);
    }
    for (int v = 192; v <= 255; v++) {
        b[0] = (uint8_t)v;
        assert_int_equal(qos_classify(b, 1), QOS_CLASS_QUIC);
    }

    n = rtp_build(b, 111, 1, 2, 3, 0);
    assert_int_equal(qos_classify(b, n), QOS_CLASS_RTP);
    assert_int_equal(qos_classify(b, 11), QOS_CLASS_OTHER);
    b[0] = 0x82; /* CC = 2: needs 20 bytes */
    assert_int_equal(qos_classify(b, 19), QOS_CLASS_OTHER);
    assert_int_equal(qos_classify(b, 20), QOS_CLASS_RTP);
    b[0] = 0x90; /* X: extension header at 12, length 2 words -> 24 bytes */
    b[12] = 0xBE;
    b[13] = 0xDE;
    b[14] = 0;
    b[15] = 2;
    assert_int_equal(qos_classify(b, 15), QOS_CLASS_OTHER);
    assert_int_equal(qos_classify(b, 23), QOS_CLASS_OTHER);
    assert_int_equal(qos_classify(b, 24), QOS_CLASS_RTP);
    b[0] = 0x40; /* version 1 first byte 64: QUIC range */
    assert_int_equal(qos_classify(b, 24), QOS_CLASS_QUIC);

    b[0] = 0x80;
    for (int pt = 192; pt <= 223; pt++) {
        b[1] = (uint8_t)pt;
        assert_int_equal(qos_classify(b, 8), QOS_CLASS_RTCP);
        assert_int_equal(qos_classify(b, 7), QOS_CLASS_OTHER);
    }
    b[1] = 224 & 0xff;
    assert_int_equal(qos_classify(b, 12), QOS_CLASS_RTP); /* marker + PT 96 */
    b[1] = 191;
    assert_int_equal(qos_classify(b, 12), QOS_CLASS_RTP);
    b[0] = 0xBF;
    b[1] = 200;
    assert_int_equal(qos_classify(b, 8), QOS_CLASS_RTCP);
}

static void test_random_payloads_no_rtp(void **state)
{
    (void)state;
    struct rig r;
    rig_init(&r);
    rng_state = 0x9E3779B97F4A7C15ull;
    uint8_t b[1200];
    uint64_t rtp_class = 0;
    int64_t t = T0;
    for (int i = 0; i < 100000; i++) {
        size_t n = 20 + (size_t)(rng() % (1200 - 20 + 1));
        for (size_t k = 0; k < n; k += 8) {
            uint64_t v = rng();
            memcpy(b + k, &v, n - k < 8 ? n - k : 8);
        }
        t += 1 + (int64_t)(rng() % (30 * MS));
        enum qos_leg leg = (rng() & 1) ? QOS_LEG_PEER : QOS_LEG_CLIENT;
        if (qos_packet(r.q, &r.m, leg, &r.peer, b, n, t) == QOS_CLASS_RTP) rtp_class++;
    }
    qos_alloc_tick(r.q, &r.m, t + SEC, true);
    assert_true(rtp_class > 10000); /* a quarter of first bytes look like RTP... */
    for (int l = 0; l < QOS_LEG_COUNT; l++)
        assert_int_equal(sum_kinds(r.m.rtp_streams_started[l]), 0); /* ...none passes probation */
    json_t *doc;
    for (int d = 0; d < 2; d++) {
        json_t *s = stream_at(&r, t, d ? "from_peer" : "from_client", 0, &doc);
        assert_null(s);
        json_decref(doc);
    }
    json_t *sum = qos_summary_json(r.q);
    assert_int_equal(ji(json_object_get(json_object_get(sum, "client_leg"), "rtp"), "streams"), 0);
    json_decref(sum);
    qos_alloc_free(r.q);
}

/* ---- RTP ---- */

/* A 48 kHz stream whose first 2 s arrive 4 % stretched (a starved sender: slope ~46,150 Hz,
 * inside both the 44.1 and the 48 kHz windows) is inferred as the nearer, 48 kHz. */
static void test_clock_nearest_candidate(void **state)
{
    (void)state;
    struct rig r;
    rig_init(&r);
    json_t *doc, *s;
    int64_t t = T0 + 3 * MS;
    for (int i = 0; i <= 110; i++) /* 20 ms of audio every 20.8 ms */
        send_rtp(&r, QOS_LEG_CLIENT, 111, (uint16_t)(1000 + i), 5000u + 960u * (uint32_t)i, SSRC_A,
                 t + i * 20800000LL);
    s = stream_at(&r, t + 110 * 20800000LL, "from_client", 0, &doc);
    assert_int_equal(ji(s, "clock_rate"), 48000);
    assert_string_equal(json_string_value(json_object_get(s, "clock_rate_source")), "inferred");
    json_decref(doc);
    qos_alloc_free(r.q);
}

static void test_clean_audio(void **state)
{
    (void)state;
    struct rig r;
    rig_init(&r);
    json_t *doc, *s;
    int64_t t = T0 + 3 * MS;
    for (int i = 0; i < 500; i++) { /* 10 s of 20 ms Opus */
        int64_t ti = t + i * 20 * MS;
        send_rtp(&r, QOS_LEG_CLIENT, 111, (uint16_t)(1000 + i), 5000u + 960u * (uint32_t)i, SSRC_A,
                 ti);
        if (i == 99) { /* 1.98 s: not yet inferred */
            s = stream_at(&r, ti, "from_client", 0, &doc);
            assert_non_null(s);
            assert_true(jnull(s, "clock_rate"));
            assert_true(jnull(s, "jitter_seconds"));
            assert_string_equal(json_string_value(json_object_get(s, "clock_rate_source")),
                                "unknown");
            assert_string_equal(json_string_value(json_object_get(s, "kind")), "unknown");
            json_decref(doc);
        }
        if (i == 100) { /* 2.00 s after the first packet */
            s = stream_at(&r, ti, "from_client", 0, &doc);
            assert_int_equal(ji(s, "clock_rate"), 48000);
            assert_string_equal(json_string_value(json_object_get(s, "clock_rate_source")),
                                "inferred");
            json_decref(doc);
        }
    }
    int64_t end = t + 500 * 20 * MS;
    qos_alloc_tick(r.q, &r.m, end, false);
    s = stream_at(&r, end, "from_client", 0, &doc);
    assert_int_equal(ji(s, "ssrc"), SSRC_A);
    assert_int_equal(ji(s, "payload_type"), 111);
    assert_string_equal(json_string_value(json_object_get(s, "kind")), "audio");
    assert_int_equal(ji(s, "clock_rate"), 48000);
    assert_int_equal(ji(s, "packets_received"), 500);
    assert_int_equal(ji(s, "packets_expected"), 500);
    assert_int_equal(ji(s, "packets_lost"), 0);
    assert_int_equal(ji(s, "packets_lost_net"), 0);
    assert_int_equal(ji(s, "packets_duplicated"), 0);
    assert_int_equal(ji(s, "packets_out_of_order"), 0);
    assert_int_equal(ji(s, "extended_highest_seq"), 1499);
    assert_int_equal(ji(s, "jitter_rtp_units"), 0);
    assert_true(jr(s, "jitter_seconds") == 0.0);
    assert_true(jr(s, "interval_fraction_lost") == 0.0);
    assert_string_equal(json_string_value(json_object_get(s, "jitter_variant")), "libwebrtc");
    json_t *lp = json_object_get(s, "loss_pattern");
    assert_true(jr(lp, "gilbert_p") == 0.0);
    assert_true(jnull(lp, "gilbert_r"));
    assert_true(jnull(lp, "burst_ratio"));
    assert_int_equal(ji(lp, "bursts_total"), 0);
    json_decref(doc);
    qos_alloc_tick(r.q, &r.m, end + MS, true);
    assert_int_equal(r.m.rtp_expected[QOS_LEG_CLIENT][QOS_KIND_AUDIO], 500);
    assert_int_equal(r.m.rtp_lost[QOS_LEG_CLIENT][QOS_KIND_AUDIO], 0);
    assert_int_equal(r.m.rtp_streams_started[QOS_LEG_CLIENT][QOS_KIND_AUDIO], 1);
    assert_int_equal(r.m.packets[QOS_LEG_CLIENT][QOS_CLASS_RTP], 500);
    assert_int_equal(r.m.bytes[QOS_LEG_CLIENT][QOS_CLASS_RTP], 500 * 112);
    /* two full intervals with packets: two jitter and loss observations */
    assert_int_equal(r.m.stream_jitter[QOS_LEG_CLIENT][QOS_KIND_AUDIO].count, 2);
    assert_true(r.m.interval_loss[QOS_LEG_CLIENT][QOS_KIND_AUDIO].count >= 2);
    qos_alloc_free(r.q);
}

/* seq 0..199 at 20 ms; lose 10, 11, 50; duplicate 20 and 30; 101 before 100. */
static void test_loss_dup_reorder(void **state)
{
    (void)state;
    struct rig r;
    rig_init(&r);
    int64_t t = T0 + MS;
    for (int i = 0; i < 200; i++) {
        int seq = i;
        if (i == 10 || i == 11 || i == 50) continue;
        if (i == 100) seq = 101;
        if (i == 101) seq = 100;
        int64_t ti = t + i * 20 * MS;
        send_rtp(&r, QOS_LEG_PEER, 111, (uint16_t)seq, 960u * (uint32_t)seq, SSRC_A, ti);
        if (i == 20 || i == 30)
            send_rtp(&r, QOS_LEG_PEER, 111, (uint16_t)seq, 960u * (uint32_t)seq, SSRC_A, ti + MS);
    }
    int64_t end = t + 200 * 20 * MS;
    json_t *doc;
    json_t *s = stream_at(&r, end, "from_peer", 0, &doc);
    assert_non_null(s);
    assert_int_equal(ji(s, "packets_expected"), 200);
    assert_int_equal(ji(s, "packets_received"), 199);
    assert_int_equal(ji(s, "packets_received_unique"), 197);
    assert_int_equal(ji(s, "packets_duplicated"), 2);
    assert_int_equal(ji(s, "packets_lost"), 1);
    assert_int_equal(ji(s, "packets_lost_net"), 3);
    assert_int_equal(ji(s, "packets_out_of_order"), 1);
    /* loss pattern: hold 50, so 0..149 are evaluated: lost {10,11}, {50} */
    json_t *lp = json_object_get(s, "loss_pattern");
    assert_int_equal(ji(lp, "bursts_total"), 2);
    assert_true(fabs(jr(lp, "gilbert_p") - 2.0 / 146.0) < 1e-12);
    assert_true(fabs(jr(lp, "gilbert_r") - 2.0 / 3.0) < 1e-12);
    assert_true(fabs(jr(lp, "mean_burst_packets") - 1.5) < 1e-12);
    assert_true(fabs(jr(lp, "burst_ratio") - 1.0 / (2.0 / 146.0 + 2.0 / 3.0)) < 1e-12);
    json_decref(doc);
    assert_int_equal(r.m.loss_bursts[QOS_LEG_PEER], 2);

    qos_alloc_tick(r.q, &r.m, end, true);
    assert_int_equal(r.m.rtp_expected[QOS_LEG_PEER][QOS_KIND_AUDIO], 200);
    assert_int_equal(r.m.rtp_lost[QOS_LEG_PEER][QOS_KIND_AUDIO], 3);
    assert_int_equal(r.m.rtp_duplicates[QOS_LEG_PEER][QOS_KIND_AUDIO], 2);
    assert_int_equal(r.m.rtp_reordered[QOS_LEG_PEER][QOS_KIND_AUDIO], 1);
    assert_int_equal(sum_kinds(r.m.rtp_expected[QOS_LEG_CLIENT]), 0);

    json_t *sum = qos_summary_json(r.q);
    json_t *rtpj = json_object_get(json_object_get(sum, "peer_leg"), "rtp");
    assert_int_equal(ji(rtpj, "streams"), 1);
    assert_int_equal(ji(rtpj, "lost"), 1);
    assert_int_equal(ji(rtpj, "lost_net"), 3);
    assert_true(fabs(jr(rtpj, "loss_ratio") - 3.0 / 200.0) < 1e-12);
    assert_true(fabs(jr(json_object_get(sum, "quality"), "loss_ratio") - 0.015) < 1e-12);
    json_decref(sum);
    qos_alloc_free(r.q);
}

/* Interval loss per A.3: 10 % in the first 5 s window, none in the second. */
static void test_interval_loss(void **state)
{
    (void)state;
    struct rig r;
    rig_init(&r);
    for (int i = 0; i < 500; i++) {
        if (i < 250 && i % 10 == 5) continue;
        send_rtp(&r, QOS_LEG_CLIENT, 0, (uint16_t)i, 160u * (uint32_t)i, SSRC_A, T0 + i * 20 * MS);
    }
    json_t *doc;
    qos_alloc_tick(r.q, &r.m, T0 + 5 * SEC, false);
    json_t *s = stream_at(&r, T0 + 5 * SEC, "from_client", 0, &doc);
    assert_true(fabs(jr(s, "interval_fraction_lost") - 0.1) < 1e-12);
    json_decref(doc);
    qos_alloc_tick(r.q, &r.m, T0 + 10 * SEC, false);
    s = stream_at(&r, T0 + 10 * SEC, "from_client", 0, &doc);
    assert_true(jr(s, "interval_fraction_lost") == 0.0);
    json_decref(doc);
    const struct qos_hist_loss *h = &r.m.interval_loss[QOS_LEG_CLIENT][QOS_KIND_AUDIO];
    assert_int_equal(h->count, 2);
    assert_int_equal(h->b[0], 1); /* le 0 */
    assert_int_equal(h->b[7], 1); /* 0.05 < 0.1 <= 0.1 */
    json_t *sum = qos_summary_json(r.q);
    json_t *iv = json_object_get(json_object_get(sum, "client_leg"), "intervals");
    assert_int_equal(ji(iv, "count"), 2);
    assert_true(fabs(jr(iv, "loss_ratio_max") - 0.1) < 1e-12);
    assert_true(fabs(jr(iv, "loss_ratio_p95") - 0.1) / 0.1 < 0.06);
    assert_string_equal(json_string_value(json_object_get(iv, "worst_at")),
                        "2023-11-14T22:13:20.000Z");
    json_decref(sum);
    qos_alloc_free(r.q);
}

static void test_wraps(void **state)
{
    (void)state;
    struct rig r;
    rig_init(&r);
    uint32_t ts0 = 0xFFFFFFFFu - 960u * 20u;
    for (int i = 0; i < 200; i++)
        send_rtp(&r, QOS_LEG_CLIENT, 111, (uint16_t)(65500 + i), ts0 + 960u * (uint32_t)i, SSRC_A,
                 T0 + i * 20 * MS);
    json_t *doc;
    json_t *s = stream_at(&r, T0 + 4 * SEC, "from_client", 0, &doc);
    assert_int_equal(ji(s, "packets_expected"), 200);
    assert_int_equal(ji(s, "packets_received"), 200);
    assert_int_equal(ji(s, "packets_lost"), 0);
    assert_int_equal(ji(s, "packets_out_of_order"), 0);
    assert_int_equal(ji(s, "extended_highest_seq"), 65500 + 199);
    assert_int_equal(ji(s, "clock_rate"), 48000);
    assert_int_equal(ji(s, "jitter_rtp_units"), 0);
    json_decref(doc);
    qos_alloc_free(r.q);
}

static void test_ssrc_change(void **state)
{
    (void)state;
    struct rig r;
    rig_init(&r);
    for (int i = 0; i < 100; i++)
        send_rtp(&r, QOS_LEG_CLIENT, 8, (uint16_t)(7 + i), 160u * (uint32_t)i, SSRC_A,
                 T0 + i * 20 * MS);
    for (int i = 0; i < 100; i++)
        send_rtp(&r, QOS_LEG_CLIENT, 8, (uint16_t)(40000 + i), 99u + 160u * (uint32_t)i, SSRC_B,
                 T0 + (100 + i) * 20 * MS);
    json_t *doc;
    json_t *a = stream_at(&r, T0 + 4 * SEC, "from_client", 0, &doc);
    json_t *b = json_array_get(
        json_object_get(
            json_object_get(
                json_object_get(json_array_get(json_object_get(doc, "peers"), 0), "directions"),
                "from_client"),
            "rtp_streams"),
        1);
    assert_non_null(b);
    assert_int_equal(ji(a, "ssrc"), SSRC_A);
    assert_int_equal(ji(b, "ssrc"), SSRC_B);
    assert_int_equal(ji(a, "packets_received"), 100);
    assert_int_equal(ji(b, "packets_received"), 100);
    assert_int_equal(ji(b, "packets_expected"), 100);
    assert_int_equal(ji(a, "clock_rate"), 8000);
    assert_string_equal(json_string_value(json_object_get(a, "clock_rate_source")), "static_pt");
    assert_string_equal(json_string_value(json_object_get(a, "kind")), "audio");
    json_decref(doc);
    qos_alloc_tick(r.q, &r.m, T0 + 5 * SEC, true);
    assert_int_equal(r.m.rtp_streams_started[QOS_LEG_CLIENT][QOS_KIND_AUDIO], 2);
    assert_int_equal(r.m.rtp_expected[QOS_LEG_CLIENT][QOS_KIND_AUDIO], 200);
    qos_alloc_free(r.q);
}

/* A jump of 5000 then contiguous: the first jumped packet is not counted (A.1 bad_seq), the
 * second restarts the source. */
static void test_restart(void **state)
{
    (void)state;
    struct rig r;
    rig_init(&r);
    int i = 0;
    for (; i < 100; i++)
        send_rtp(&r, QOS_LEG_PEER, 0, (uint16_t)(1000 + i), 160u * (uint32_t)i, SSRC_A,
                 T0 + i * 20 * MS);
    for (int k = 0; k < 100; k++, i++)
        send_rtp(&r, QOS_LEG_PEER, 0, (uint16_t)(6100 + k), 160u * (uint32_t)i, SSRC_A,
                 T0 + i * 20 * MS);
    json_t *doc;
    json_t *s = stream_at(&r, T0 + 4 * SEC, "from_peer", 0, &doc);
    assert_int_equal(ji(s, "seq_restarts_total"), 1);
    /* counts accumulate across the restart: 100 + 99 (the jump packet never counts) */
    assert_int_equal(ji(s, "packets_received"), 199);
    assert_int_equal(ji(s, "packets_expected"), 199);
    assert_int_equal(ji(s, "packets_lost"), 0);
    assert_int_equal(ji(s, "extended_highest_seq"), 6199);
    json_decref(doc);
    assert_int_equal(r.m.rtp_seq_restarts[QOS_LEG_PEER], 1);
    qos_alloc_tick(r.q, &r.m, T0 + 5 * SEC, true);
    assert_int_equal(r.m.rtp_expected[QOS_LEG_PEER][QOS_KIND_AUDIO], 100 + 99);
    assert_int_equal(r.m.rtp_lost[QOS_LEG_PEER][QOS_KIND_AUDIO], 0);
    json_t *sum = qos_summary_json(r.q);
    json_t *rtpj = json_object_get(json_object_get(sum, "peer_leg"), "rtp");
    assert_int_equal(ji(rtpj, "expected"), 199);
    assert_int_equal(ji(rtpj, "received"), 199);
    json_decref(sum);
    qos_alloc_free(r.q);
}

/* The hand-computed cases of the offline reference (tests/qos/qosref.py --selftest). */
struct refcase {
    const char *name;
    int n;
    int seq[16];
    json_int_t want[6]; /* received, expected, lost, lost_net, duplicated, out_of_order */
    json_int_t restarts, ext_max;
};

static void test_reference_cases(void **state)
{
    (void)state;
    static const struct refcase cases[] = {
        {"clean",
         10,
         {100, 101, 102, 103, 104, 105, 106, 107, 108, 109},
         {10, 10, 0, 0, 0, 0},
         0,
         109},
        {"probation", 5, {5, 7, 8, 9, 10}, {4, 4, 0, 0, 0, 0}, 0, 10},
        {"loss", 6, {0, 1, 2, 3, 5, 6}, {6, 7, 1, 1, 0, 0}, 0, 6},
        {"dup/reorder", 9, {0, 1, 2, 3, 4, 5, 5, 7, 6}, {9, 8, -1, 0, 1, 1}, 0, 7},
        {"wrap", 5, {65534, 65535, 0, 1, 2}, {5, 5, 0, 0, 0, 0}, 0, 65538},
        {"restart",
         13,
         {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 5010, 5011, 5012},
         {12, 12, 0, 0, 0, 0},
         1,
         5012},
        {"lone jump", 12, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 4000, 10}, {11, 11, 0, 0, 0, 0}, 0, 10},
    };
    static const char *const keys[] = {"packets_received",   "packets_expected",
                                       "packets_lost",       "packets_lost_net",
                                       "packets_duplicated", "packets_out_of_order"};
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        struct rig r;
        rig_init(&r);
        for (int i = 0; i < cases[c].n; i++)
            send_rtp(&r, QOS_LEG_CLIENT, 111, (uint16_t)cases[c].seq[i], 960u * (uint32_t)i, SSRC_A,
                     T0 + i * 20 * MS);
        json_t *doc;
        json_t *s = stream_at(&r, T0 + SEC, "from_client", 0, &doc);
        if (!s) fail_msg("%s: no stream", cases[c].name);
        for (int k = 0; k < 6; k++)
            if (ji(s, keys[k]) != cases[c].want[k])
                fail_msg("%s: %s = %lld, want %lld", cases[c].name, keys[k],
                         (long long)ji(s, keys[k]), (long long)cases[c].want[k]);
        assert_int_equal(ji(s, "seq_restarts_total"), cases[c].restarts);
        assert_int_equal(ji(s, "extended_highest_seq"), cases[c].ext_max);
        json_decref(doc);
        qos_alloc_free(r.q);
    }
}

/* The reference: RFC 3550 A.8 in Q4 with the libwebrtc feeding rule, written out here
 * independently of the library. arrivals in ns, timestamps in units, clock in Hz. */
static uint32_t hand_jitter(const int64_t *rx, const uint32_t *ts, int n, uint32_t clock)
{
    int64_t j16 = 0;
    for (int i = 1; i < n; i++) {
        if (ts[i] == ts[i - 1]) continue;
        int64_t ri = ((rx[i] - rx[0]) * (int64_t)clock) / SEC;
        int64_t rp = ((rx[i - 1] - rx[0]) * (int64_t)clock) / SEC;
        int64_t d = (ri - rp) - (int64_t)(int32_t)(ts[i] - ts[i - 1]);
        if (d < 0) d = -d;
        if (d >= 450000) continue;
        j16 += d - ((j16 + 8) >> 4);
    }
    return (uint32_t)(j16 >> 4);
}

static void test_jitter_hand(void **state)
{
    (void)state;
    enum { N = 300 };
    static int64_t rx[N];
    static uint32_t ts[N];
    /* PCMU (static 8 kHz) with +-1 ms alternating, and dynamic PT 111 (inferred 48 kHz) with
     * a pseudo-random 0..3 ms: the latter must be exact from the first packet even though
     * the clock becomes known only after 2 s. */
    for (int v = 0; v < 2; v++) {
        struct rig r;
        rig_init(&r);
        rng_state = 12345;
        uint32_t clock = v == 0 ? 8000 : 48000;
        for (int i = 0; i < N; i++) {
            int64_t pert = v == 0 ? ((i & 1) ? MS : -MS) : (int64_t)(rng() % (3 * MS));
            rx[i] = T0 + 10 * MS + i * 20 * MS + pert;
            ts[i] = 777u + (clock / 50) * (uint32_t)i;
            send_rtp(&r, QOS_LEG_CLIENT, v == 0 ? 0 : 111, (uint16_t)(i + 9), ts[i], SSRC_A, rx[i]);
        }
        uint32_t want = hand_jitter(rx, ts, N, clock);
        if (v == 0) assert_true(want >= 14 && want <= 16); /* |D| = 16 units, converged */
        json_t *doc;
        json_t *s = stream_at(&r, rx[N - 1], "from_client", 0, &doc);
        assert_int_equal(ji(s, "clock_rate"), clock);
        assert_int_equal(ji(s, "jitter_rtp_units"), want);
        assert_true(fabs(jr(s, "jitter_seconds") - (double)want / clock) < 1e-12);
        json_decref(doc);
        qos_alloc_free(r.q);
    }
}

/* Video: 5 packets per frame share a timestamp, paced 1 ms apart. Only the first packet of
 * a frame updates jitter (against the previous in-order packet, the last of the previous
 * frame, as libwebrtc does); feeding every packet would give a much larger value. */
static void test_video_frames(void **state)
{
    (void)state;
    enum { FRAMES = 150, PER = 5, N = FRAMES * PER };
    static int64_t rx[N];
    static uint32_t ts[N];
    struct rig r;
    rig_init(&r);
    int n = 0;
    for (int f = 0; f < FRAMES; f++)
        for (int k = 0; k < PER; k++, n++) {
            rx[n] = T0 + f * 33333333LL + k * MS + ((f % 3) ? 0 : 2 * MS);
            ts[n] = 90000u + 3000u * (uint32_t)f;
            send_rtp(&r, QOS_LEG_PEER, 96, (uint16_t)(100 + n), ts[n], SSRC_B, rx[n]);
        }
    uint32_t want = hand_jitter(rx, ts, N, 90000);
    /* every packet fed (strict RFC): */
    int64_t j16 = 0;
    for (int i = 1; i < N; i++) {
        int64_t d = ((rx[i] - rx[0]) * 90000 / SEC - (rx[i - 1] - rx[0]) * 90000 / SEC) -
                    (int64_t)(ts[i] - ts[i - 1]);
        j16 += llabs(d) - ((j16 + 8) >> 4);
    }
    json_t *doc;
    json_t *s = stream_at(&r, rx[N - 1], "from_peer", 0, &doc);
    assert_string_equal(json_string_value(json_object_get(s, "kind")), "video");
    assert_int_equal(ji(s, "clock_rate"), 90000);
    assert_int_equal(ji(s, "jitter_rtp_units"), want);
    assert_true((uint32_t)(j16 >> 4) != want);
    json_decref(doc);
    qos_alloc_free(r.q);
}

/* ---- STUN ---- */

static void test_stun_rtt(void **state)
{
    (void)state;
    struct rig r;
    rig_init(&r);
    uint8_t b[20];
    size_t n;
    int64_t t = T0 + SEC;
    /* client -> peer request, peer answers 30 ms later: peer leg 30 ms */
    n = stun(b, 0x0001, 1);
    assert_int_equal(qos_packet(r.q, &r.m, QOS_LEG_CLIENT, &r.peer, b, n, t), QOS_CLASS_STUN);
    n = stun(b, 0x0101, 1);
    qos_packet(r.q, &r.m, QOS_LEG_PEER, &r.peer, b, n, t + 30 * MS);
    /* a response from the wrong leg is ignored */
    n = stun(b, 0x0300, 2);
    qos_packet(r.q, &r.m, QOS_LEG_CLIENT, &r.peer, b, n, t + 31 * MS);
    /* GOOG-PING from the peer, client answers 40 ms later: client leg 40 ms, path 70 ms */
    n = stun(b, 0x0200, 3);
    qos_packet(r.q, &r.m, QOS_LEG_PEER, &r.peer, b, n, t + 100 * MS);
    n = stun(b, 0x0300, 3);
    qos_packet(r.q, &r.m, QOS_LEG_CLIENT, &r.peer, b, n, t + 140 * MS);
    /* Karn: retransmitted request, then an error response: ambiguous, no sample */
    n = stun(b, 0x0001, 4);
    qos_packet(r.q, &r.m, QOS_LEG_CLIENT, &r.peer, b, n, t + 200 * MS);
    qos_packet(r.q, &r.m, QOS_LEG_CLIENT, &r.peer, b, n, t + 700 * MS);
    n = stun(b, 0x0111, 4);
    qos_packet(r.q, &r.m, QOS_LEG_PEER, &r.peer, b, n, t + 710 * MS);
    /* never answered */
    n = stun(b, 0x0001, 5);
    qos_packet(r.q, &r.m, QOS_LEG_CLIENT, &r.peer, b, n, t + 800 * MS);
    /* not a check: an Allocate request is ignored */
    n = stun(b, 0x0003, 6);
    qos_packet(r.q, &r.m, QOS_LEG_CLIENT, &r.peer, b, n, t + 800 * MS);

    assert_int_equal(r.m.stun_checks[QOS_LEG_PEER][QOS_STUN_ANSWERED], 1);
    assert_int_equal(r.m.stun_checks[QOS_LEG_CLIENT][QOS_STUN_ANSWERED], 1);
    assert_int_equal(r.m.stun_checks[QOS_LEG_PEER][QOS_STUN_AMBIGUOUS], 1);
    assert_int_equal(r.m.stun_checks[QOS_LEG_PEER][QOS_STUN_UNANSWERED], 0);
    assert_int_equal(r.m.path_rtt.count, 1);
    assert_true(fabs(r.m.path_rtt.sum - 0.070) < 1e-9);
    assert_int_equal(r.m.leg_rtt[QOS_LEG_PEER].b[6], 1); /* 0.025 < 0.03 <= 0.05 */

    qos_alloc_tick(r.q, &r.m, t + 800 * MS + QOS_STUN_TIMEOUT_NS - 1, false);
    assert_int_equal(r.m.stun_checks[QOS_LEG_PEER][QOS_STUN_UNANSWERED], 0);
    qos_alloc_tick(r.q, &r.m, t + 800 * MS + QOS_STUN_TIMEOUT_NS, false);
    assert_int_equal(r.m.stun_checks[QOS_LEG_PEER][QOS_STUN_UNANSWERED], 1);

    json_t *sum = qos_summary_json(r.q);
    json_t *crtt = json_object_get(json_object_get(sum, "client_leg"), "rtt");
    json_t *prtt = json_object_get(json_object_get(sum, "peer_leg"), "rtt");
    assert_int_equal(ji(crtt, "measurements"), 1);
    assert_true(fabs(jr(crtt, "last_seconds") - 0.040) < 1e-9);
    assert_true(fabs(jr(crtt, "p50_seconds") - 0.040) / 0.040 < 0.06);
    assert_int_equal(ji(prtt, "measurements"), 1);
    assert_int_equal(ji(prtt, "ambiguous"), 1);
    assert_int_equal(ji(prtt, "unanswered"), 1);
    assert_true(fabs(jr(prtt, "min_seconds") - 0.030) < 1e-9);
    assert_true(fabs(jr(sum, "path_rtt_seconds") - 0.070) < 1e-9);
    assert_true(fabs(jr(json_object_get(sum, "quality"), "rtt_seconds") - 0.070) < 1e-9);
    json_decref(sum);

    json_t *d = qos_detail_json(r.q, t + 20 * SEC);
    json_t *p = json_array_get(json_object_get(d, "peers"), 0);
    assert_string_equal(json_string_value(json_object_get(p, "peer")), "192.0.2.44:60001");
    assert_int_equal(ji(json_object_get(json_object_get(p, "peer_leg"), "rtt"), "measurements"), 1);
    assert_true(fabs(jr(p, "path_rtt_seconds") - 0.070) < 1e-9);
    json_decref(d);
    qos_alloc_free(r.q);
}

/* Many samples: EWMA gain 1/8, and p50/p95 of the sketch within 6 %. Table overflow. */
static void test_stun_many(void **state)
{
    (void)state;
    struct rig r;
    rig_init(&r);
    uint8_t b[20];
    int64_t t = T0;
    double ewma = 0;
    for (int i = 0; i < 200; i++) {
        int64_t rtt = (10 + i) * MS; /* 10..209 ms */
        stun(b, 0x0001, (uint8_t)i);
        b[19] = (uint8_t)(i >> 8);
        qos_packet(r.q, &r.m, QOS_LEG_PEER, &r.peer, b, 20, t);
        stun(b, 0x0101, (uint8_t)i);
        b[19] = (uint8_t)(i >> 8);
        qos_packet(r.q, &r.m, QOS_LEG_CLIENT, &r.peer, b, 20, t + rtt);
        ewma = i == 0 ? (double)rtt : ewma + ((double)rtt - ewma) / 8;
        t += SEC;
    }
    json_t *sum = qos_summary_json(r.q);
    json_t *crtt = json_object_get(json_object_get(sum, "client_leg"), "rtt");
    assert_int_equal(ji(crtt, "measurements"), 200);
    assert_true(fabs(jr(crtt, "ewma_seconds") - ewma / 1e9) < 1e-9);
    assert_true(fabs(jr(crtt, "p50_seconds") - 0.109) / 0.109 < 0.06);
    assert_true(fabs(jr(crtt, "p95_seconds") - 0.199) / 0.199 < 0.06);
    assert_true(fabs(jr(crtt, "min_seconds") - 0.010) < 1e-9);
    json_decref(sum);
    /* 20 requests without answers within 1 s: the table holds 16, 4 are given up */
    for (int i = 0; i < 20; i++) {
        stun(b, 0x0001, (uint8_t)i);
        b[18] = 0xee;
        qos_packet(r.q, &r.m, QOS_LEG_CLIENT, &r.peer, b, 20, t + i * MS);
    }
    assert_int_equal(r.m.stun_checks[QOS_LEG_PEER][QOS_STUN_UNANSWERED], 4);
    qos_alloc_tick(r.q, &r.m, t + 11 * SEC, true);
    assert_int_equal(r.m.stun_checks[QOS_LEG_PEER][QOS_STUN_UNANSWERED], 20);
    qos_alloc_free(r.q);
}

/* A response later than the timeout is no sample, even before anything expired the entry. */
static void test_stun_late(void **state)
{
    (void)state;
    struct rig r;
    rig_init(&r);
    uint8_t b[20];
    stun(b, 0x0001, 9);
    qos_packet(r.q, &r.m, QOS_LEG_PEER, &r.peer, b, 20, T0);
    stun(b, 0x0101, 9);
    qos_packet(r.q, &r.m, QOS_LEG_CLIENT, &r.peer, b, 20, T0 + QOS_STUN_TIMEOUT_NS);
    assert_int_equal(r.m.stun_checks[QOS_LEG_CLIENT][QOS_STUN_UNANSWERED], 1);
    assert_int_equal(r.m.stun_checks[QOS_LEG_CLIENT][QOS_STUN_ANSWERED], 0);
    assert_int_equal(r.m.leg_rtt[QOS_LEG_CLIENT].count, 0);
    json_t *sum = qos_summary_json(r.q);
    json_t *crtt = json_object_get(json_object_get(sum, "client_leg"), "rtt");
    assert_int_equal(ji(crtt, "unanswered"), 1);
    assert_true(jnull(crtt, "last_seconds"));
    json_decref(sum);
    qos_alloc_free(r.q);
}

/* ---- RTCP ---- */

static size_t srtcp(uint8_t *b, uint8_t pt, uint8_t fmt, uint32_t ssrc, uint32_t index, bool aead)
{
    memset(b, 0, 64);
    b[0] = (uint8_t)(0x80 | fmt);
    b[1] = pt;
    b[3] = 1; /* 8 bytes: header + SSRC, then "ciphertext" */
    b[4] = (uint8_t)(ssrc >> 24);
    b[5] = (uint8_t)(ssrc >> 16);
    b[6] = (uint8_t)(ssrc >> 8);
    b[7] = (uint8_t)ssrc;
    size_t n = 8 + 24; /* encrypted part: zeros fail the version check of a second header */
    uint32_t ei = 0x80000000u | index;
    b[n] = (uint8_t)(ei >> 24);
    b[n + 1] = (uint8_t)(ei >> 16);
    b[n + 2] = (uint8_t)(ei >> 8);
    b[n + 3] = (uint8_t)ei;
    n += 4;
    if (!aead) {
        memset(b + n, 0x5a, 10); /* HMAC-SHA1-80 tag */
        n += 10;
    }
    return n;
}

static void test_srtcp(void **state)
{
    (void)state;
    struct rig r;
    rig_init(&r);
    uint8_t b[64];
    static const uint32_t idx[] = {1, 2, 3, 5, 6, 9, 9, 8, 10};
    for (size_t i = 0; i < sizeof(idx) / sizeof(idx[0]); i++) {
        size_t n = srtcp(b, 201, 1, SSRC_A, idx[i], false);
        assert_int_equal(
            qos_packet(r.q, &r.m, QOS_LEG_CLIENT, &r.peer, b, n, T0 + (int64_t)i * SEC),
            QOS_CLASS_RTCP);
        n = srtcp(b, 205, 1, SSRC_B, 100 + idx[i], true); /* AEAD layout, NACK */
        qos_packet(r.q, &r.m, QOS_LEG_PEER, &r.peer, b, n, T0 + (int64_t)i * SEC);
    }
    assert_int_equal(r.m.srtcp_index_gaps[QOS_LEG_CLIENT], 3);
    assert_int_equal(r.m.srtcp_index_gaps[QOS_LEG_PEER], 3);
    assert_int_equal(r.m.rtcp_feedback[QOS_LEG_PEER][QOS_FB_NACK], 9);
    assert_int_equal(r.m.rtcp_feedback[QOS_LEG_CLIENT][QOS_FB_NACK], 0);
    /* plain reduced-size PLI (lengths land on the end), then plain RR + FIR compound */
    memset(b, 0, sizeof(b));
    b[0] = 0x81;
    b[1] = 206;
    b[3] = 2;
    assert_int_equal(qos_packet(r.q, &r.m, QOS_LEG_CLIENT, &r.peer, b, 12, T0 + 10 * SEC),
                     QOS_CLASS_RTCP);
    b[0] = 0x80;
    b[1] = 201;
    b[3] = 1;
    b[8] = 0x84;
    b[9] = 206;
    b[11] = 4;
    qos_packet(r.q, &r.m, QOS_LEG_CLIENT, &r.peer, b, 28, T0 + 10 * SEC);
    assert_int_equal(r.m.rtcp_feedback[QOS_LEG_CLIENT][QOS_FB_PLI], 1);
    assert_int_equal(r.m.rtcp_feedback[QOS_LEG_CLIENT][QOS_FB_FIR], 1);
    assert_int_equal(r.m.srtcp_index_gaps[QOS_LEG_CLIENT], 3);
    json_t *d = qos_detail_json(r.q, T0 + 10 * SEC);
    json_t *fc = json_object_get(
        json_object_get(
            json_object_get(json_array_get(json_object_get(d, "peers"), 0), "directions"),
            "from_client"),
        "srtcp");
    assert_int_equal(ji(fc, "packets_total"), 11);
    assert_int_equal(ji(fc, "index_gaps_total"), 3);
    assert_int_equal(ji(json_object_get(fc, "feedback_total"), "pli"), 1);
    json_decref(d);
    qos_alloc_free(r.q);
}

/* A dynamic-PT stream that starts 4 s into the allocation: its kind is unknown at the first
 * interval end (5 s), so its counters wait and all land under "audio". */
static void test_kind_deferred(void **state)
{
    (void)state;
    struct rig r;
    rig_init(&r);
    for (int i = 0; i < 300; i++)
        send_rtp(&r, QOS_LEG_CLIENT, 111, (uint16_t)(50 + i), 960u * (uint32_t)i, SSRC_A,
                 T0 + 4 * SEC + i * 20 * MS);
    assert_int_equal(sum_kinds(r.m.rtp_streams_started[QOS_LEG_CLIENT]), 0);
    qos_alloc_tick(r.q, &r.m, T0 + 10 * SEC, false); /* kind known now */
    assert_int_equal(r.m.rtp_streams_started[QOS_LEG_CLIENT][QOS_KIND_AUDIO], 1);
    qos_alloc_tick(r.q, &r.m, T0 + 10 * SEC, true);
    assert_int_equal(r.m.rtp_expected[QOS_LEG_CLIENT][QOS_KIND_AUDIO], 300);
    assert_int_equal(r.m.rtp_expected[QOS_LEG_CLIENT][QOS_KIND_UNKNOWN], 0);
    assert_int_equal(r.m.rtp_streams_started[QOS_LEG_CLIENT][QOS_KIND_UNKNOWN], 0);
    qos_alloc_free(r.q);
}

/* ---- bounds ---- */

static void test_stream_cap(void **state)
{
    (void)state;
    struct rig r;
    rig_init(&r);
    int64_t t = T0;
    for (uint32_t s = 0; s < 1000; s++)
        for (int i = 0; i < 5; i++) {
            send_rtp(&r, QOS_LEG_PEER, 96, (uint16_t)(s * 7 + (uint32_t)i), s * 1000, 1000 + s, t);
            t += MS;
        }
    json_t *doc;
    assert_non_null(stream_at(&r, t, "from_peer", 7, &doc));
    assert_null(json_array_get(
        json_object_get(
            json_object_get(
                json_object_get(json_array_get(json_object_get(doc, "peers"), 0), "directions"),
                "from_peer"),
            "rtp_streams"),
        QOS_MAX_STREAMS));
    json_decref(doc);
    /* flows: 40 peers, 16 measured, 24 others */
    uint8_t b[1] = {0x17};
    for (int p = 0; p < 40; p++) {
        union stun_addr a = peer_addr("2001:db8::7", 1000 + (unsigned)p);
        qos_packet(r.q, &r.m, QOS_LEG_CLIENT, &a, b, 1, t);
        qos_packet(r.q, &r.m, QOS_LEG_CLIENT, &a, b, 1, t);
    }
    qos_alloc_tick(r.q, &r.m, t, true);
    assert_int_equal(sum_kinds(r.m.rtp_streams_started[QOS_LEG_PEER]), 1000);
    json_t *sum = qos_summary_json(r.q);
    assert_int_equal(ji(json_object_get(json_object_get(sum, "peer_leg"), "rtp"), "streams"), 1000);
    assert_int_equal(ji(sum, "peers"), QOS_MAX_FLOWS);
    assert_int_equal(ji(sum, "other_flows"), 40 - (QOS_MAX_FLOWS - 1));
    json_decref(sum);
    json_t *d = qos_detail_json(r.q, t);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(json_object_get(d, "peers"), 1), "peer")),
        "[2001:db8::7]:1000");
    json_decref(d);
    qos_alloc_free(r.q);
}

/* Junk with ever new SSRCs (20 between two packets of a real stream, and 7 other confirmed
 * streams that are silent most of the time) never evicts a confirmed stream: probation slots
 * go first. */
static void test_junk_keeps_streams(void **state)
{
    (void)state;
    struct rig r;
    rig_init(&r);
    int64_t t = T0;
    for (int i = 0; i < 400; i++) {
        for (uint32_t s = 0; s < QOS_MAX_STREAMS - 1; s++) /* 7 streams, sent in bursts */
            if (i % 50 < 4)
                send_rtp(&r, QOS_LEG_CLIENT, 96, (uint16_t)(i / 50 * 4 + i % 50), i, 500 + s, t);
        send_rtp(&r, QOS_LEG_CLIENT, 0, (uint16_t)i, 160u * (uint32_t)i, SSRC_A, t);
        for (int k = 0; i >= 8 && k < 20; k++) /* junk once the streams are confirmed */
            send_rtp(&r, QOS_LEG_CLIENT, 0, (uint16_t)rng(), (uint32_t)rng(), (uint32_t)rng(),
                     t + k * MS / 2);
        t += 20 * MS;
    }
    json_t *d = qos_detail_json(r.q, t);
    json_t *arr = json_object_get(
        json_object_get(
            json_object_get(json_array_get(json_object_get(d, "peers"), 0), "directions"),
            "from_client"),
        "rtp_streams");
    bool found = false;
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *s = json_array_get(arr, i);
        if (ji(s, "ssrc") != SSRC_A) continue;
        found = true;
        assert_int_equal(ji(s, "packets_received"), 400);
        assert_int_equal(ji(s, "packets_expected"), 400);
    }
    assert_true(found);
    json_decref(d);
    qos_alloc_free(r.q);
}

/* ---- views ---- */

static const char *const rtt_keys[] = {"last_seconds", "min_seconds", "ewma_seconds",
                                       "p50_seconds",  "p95_seconds", "measurements",
                                       "unanswered",   "ambiguous"};

static void check_rtt_empty(json_t *rtt)
{
    assert_non_null(rtt);
    for (size_t i = 0; i < 5; i++)
        assert_true(jnull(rtt, rtt_keys[i]));
    for (size_t i = 5; i < 8; i++)
        assert_int_equal(ji(rtt, rtt_keys[i]), 0);
}

static void test_json_fields(void **state)
{
    (void)state;
    struct rig r;
    rig_init(&r);
    uint8_t b[4] = {22, 0xfe, 0xfd, 0};
    qos_packet(r.q, &r.m, QOS_LEG_CLIENT, &r.peer, b, 4, T0 + MS);

    json_t *sum = qos_summary_json(r.q);
    assert_non_null(sum);
    static const char *const legs[] = {"client_leg", "peer_leg"};
    for (int l = 0; l < 2; l++) {
        json_t *lg = json_object_get(sum, legs[l]);
        assert_non_null(lg);
        assert_int_equal(ji(lg, "packets"), l == 0 ? 1 : 0);
        assert_int_equal(ji(lg, "bytes"), l == 0 ? 4 : 0);
        check_rtt_empty(json_object_get(lg, "rtt"));
        json_t *rt = json_object_get(lg, "rtp");
        static const char *const rk[] = {"streams",  "expected",   "received", "lost",
                                         "lost_net", "duplicates", "reordered"};
        for (size_t i = 0; i < sizeof(rk) / sizeof(rk[0]); i++)
            assert_int_equal(ji(rt, rk[i]), 0);
        assert_true(jnull(rt, "loss_ratio"));
        assert_true(jnull(rt, "jitter_seconds"));
        assert_true(jnull(rt, "interval_loss_ratio"));
        json_t *iv = json_object_get(lg, "intervals");
        assert_int_equal(ji(iv, "count"), 0);
        static const char *const ik[] = {
            "loss_ratio_p50",     "loss_ratio_p95",     "loss_ratio_max", "jitter_p50_seconds",
            "jitter_p95_seconds", "jitter_max_seconds", "worst_at"};
        for (size_t i = 0; i < sizeof(ik) / sizeof(ik[0]); i++)
            assert_true(jnull(iv, ik[i]));
    }
    assert_true(jnull(sum, "path_rtt_seconds"));
    assert_int_equal(ji(sum, "peers"), 1);
    json_t *qual = json_object_get(sum, "quality");
    assert_true(jnull(qual, "loss_ratio"));
    assert_true(jnull(qual, "jitter_seconds"));
    assert_true(jnull(qual, "rtt_seconds"));
    json_decref(sum);

    json_t *d = qos_detail_json(r.q, T0 + 2 * MS);
    assert_string_equal(json_string_value(json_object_get(d, "sampled_at")),
                        "2023-11-14T22:13:20.002Z");
    assert_true(jr(d, "interval_seconds") == 5.0);
    check_rtt_empty(json_object_get(json_object_get(d, "client_leg"), "rtt"));
    assert_int_equal(ji(d, "other_flows"), 0);
    json_t *p = json_array_get(json_object_get(d, "peers"), 0);
    check_rtt_empty(json_object_get(json_object_get(p, "peer_leg"), "rtt"));
    assert_true(jnull(p, "path_rtt_seconds"));
    static const char *const dirs[] = {"from_client", "from_peer"};
    for (int k = 0; k < 2; k++) {
        json_t *dj = json_object_get(json_object_get(p, "directions"), dirs[k]);
        assert_non_null(dj);
        assert_int_equal(ji(dj, "packets_total"), k == 0 ? 1 : 0);
        assert_int_equal(ji(dj, "bytes_total"), k == 0 ? 4 : 0);
        for (int c = 0; c < QOS_CLASS_COUNT; c++)
            assert_int_equal(ji(json_object_get(dj, "by_class"), qos_class_names[c]),
                             (k == 0 && c == QOS_CLASS_DTLS) ? 1 : 0);
        json_t *iat = json_object_get(dj, "iat");
        assert_true(jnull(iat, "mean_seconds"));
        assert_true(jnull(iat, "jitter_seconds"));
        assert_true(jnull(iat, "max_gap_seconds"));
        assert_int_equal(ji(iat, "stalls_total"), 0);
        json_t *iv = json_object_get(dj, "interval");
        assert_true(jnull(iv, "packets"));
        assert_true(jnull(iv, "bits_per_second"));
        json_t *sr = json_object_get(dj, "srtcp");
        assert_int_equal(ji(sr, "packets_total"), 0);
        assert_int_equal(ji(sr, "index_gaps_total"), 0);
        static const char *const fbk[] = {"nack", "pli", "fir", "twcc", "remb", "other"};
        for (int f = 0; f < 6; f++)
            assert_int_equal(ji(json_object_get(sr, "feedback_total"), fbk[f]), 0);
        assert_int_equal(json_array_size(json_object_get(dj, "rtp_streams")), 0);
    }
    json_decref(d);

    /* a stream: every documented key present */
    for (int i = 0; i < 10; i++)
        send_rtp(&r, QOS_LEG_CLIENT, 111, (uint16_t)i, 960u * (uint32_t)i, SSRC_A,
                 T0 + 10 * MS + i * 20 * MS);
    json_t *doc;
    json_t *s = stream_at(&r, T0 + SEC, "from_client", 0, &doc);
    static const char *const sk[] = {"ssrc",
                                     "payload_type",
                                     "kind",
                                     "clock_rate",
                                     "clock_rate_source",
                                     "state",
                                     "packets_received",
                                     "packets_received_unique",
                                     "packets_duplicated",
                                     "packets_out_of_order",
                                     "packets_expected",
                                     "packets_lost",
                                     "packets_lost_net",
                                     "extended_highest_seq",
                                     "seq_restarts_total",
                                     "interval_fraction_lost",
                                     "jitter_seconds",
                                     "jitter_rtp_units",
                                     "jitter_variant",
                                     "jitter_max_interval_seconds",
                                     "loss_pattern",
                                     "first_packet_at",
                                     "last_packet_at"};
    for (size_t i = 0; i < sizeof(sk) / sizeof(sk[0]); i++)
        if (!json_object_get(s, sk[i])) fail_msg("stream key %s missing", sk[i]);
    assert_true(jnull(s, "interval_fraction_lost"));
    assert_true(jnull(s, "jitter_rtp_units"));
    assert_string_equal(json_string_value(json_object_get(s, "state")), "active");
    static const char *const lk[] = {"gilbert_p", "gilbert_r", "burst_ratio", "mean_burst_packets",
                                     "bursts_total"};
    for (size_t i = 0; i < 5; i++)
        if (!json_object_get(json_object_get(s, "loss_pattern"), lk[i]))
            fail_msg("loss_pattern key %s missing", lk[i]);
    json_t *iat = json_object_get(
        json_object_get(
            json_object_get(json_array_get(json_object_get(doc, "peers"), 0), "directions"),
            "from_client"),
        "iat");
    assert_true(fabs(jr(iat, "max_gap_seconds") - 0.020) < 1e-9); /* rtp every 20 ms */
    json_decref(doc);
    s = stream_at(&r, T0 + 60 * SEC, "from_client", 0, &doc);
    assert_string_equal(json_string_value(json_object_get(s, "state")), "stale");
    json_decref(doc);
    qos_alloc_free(r.q);
}

static void test_iat_stall(void **state)
{
    (void)state;
    struct rig r;
    rig_init(&r);
    uint8_t b[40];
    memset(b, 0x05, sizeof(b)); /* opaque game traffic */
    int64_t t = T0;
    for (int i = 0; i < 200; i++) {
        t += (i == 100) ? 400 * MS : (i & 1) ? 15 * MS : 17 * MS;
        assert_int_equal(qos_packet(r.q, &r.m, QOS_LEG_PEER, &r.peer, b, 40, t), QOS_CLASS_OTHER);
    }
    assert_int_equal(r.m.stalls[QOS_LEG_PEER], 1);
    qos_alloc_tick(r.q, &r.m, T0 + 5 * SEC, false);
    json_t *d = qos_detail_json(r.q, T0 + 5 * SEC);
    json_t *dj = json_object_get(
        json_object_get(json_array_get(json_object_get(d, "peers"), 0), "directions"), "from_peer");
    json_t *iat = json_object_get(dj, "iat");
    assert_true(fabs(jr(iat, "max_gap_seconds") - 0.4) < 1e-9);
    assert_int_equal(ji(iat, "stalls_total"), 1);
    double m = jr(iat, "mean_seconds"), j = jr(iat, "jitter_seconds");
    assert_true(m > 0.015 && m < 0.017);
    assert_true(j > 0.0015 && j < 0.0025);
    json_t *iv = json_object_get(dj, "interval");
    /* all 200 packets fall in the first interval (3.6 s) */
    assert_int_equal(ji(iv, "packets"), 200);
    assert_true(fabs(jr(iv, "packets_per_second") - (double)ji(iv, "packets") / 5.0) < 1e-9);
    assert_true(fabs(jr(iv, "bits_per_second") - (double)ji(iv, "packets") * 320 / 5.0) < 1e-9);
    json_decref(d);
    qos_alloc_free(r.q);
}

/* ---- Prometheus ---- */

static void test_prometheus(void **state)
{
    (void)state;
    struct rig r;
    rig_init(&r);
    for (int i = 0; i < 400; i++)
        send_rtp(&r, QOS_LEG_CLIENT, 111, (uint16_t)i, 960u * (uint32_t)i, SSRC_A,
                 T0 + i * 20 * MS + (i % 7) * MS);
    qos_observe_residence(&r.m, QOS_LEG_CLIENT, 12000);
    qos_observe_residence(&r.m, QOS_LEG_PEER, 200 * MS);
    qos_alloc_tick(r.q, &r.m, T0 + 9 * SEC, true);
    struct qos_metrics tot;
    memset(&tot, 0, sizeof(tot));
    qos_metrics_add(&tot, &r.m);
    qos_metrics_add(&tot, &r.m);
    assert_int_equal(tot.packets[QOS_LEG_CLIENT][QOS_CLASS_RTP], 800);
    assert_int_equal(tot.residence[QOS_LEG_PEER].b[QOS_RESIDENCE_BUCKETS - 1], 0);
    assert_int_equal(tot.residence[QOS_LEG_PEER].b[QOS_RESIDENCE_BUCKETS], 2);
    assert_int_equal(tot.stream_jitter[QOS_LEG_CLIENT][QOS_KIND_AUDIO].count,
                     2 * r.m.stream_jitter[QOS_LEG_CLIENT][QOS_KIND_AUDIO].count);

    char *buf = NULL;
    size_t len = 0, cap = 0;
    assert_int_equal(qos_metrics_prometheus(&tot, &buf, &len, &cap), 0);
    assert_non_null(buf);
    assert_int_equal(strlen(buf), len);
    assert_non_null(strstr(buf, "tern_qos_packets_total{leg=\"client\",class=\"rtp\"} 800\n"));
    assert_non_null(
        strstr(buf, "tern_qos_relay_residence_seconds_bucket{leg=\"client\",le=\"0.000025\"} 2\n"));
    assert_non_null(strstr(buf, "tern_qos_path_rtt_seconds_bucket{le=\"+Inf\"} 0\n"));
    assert_non_null(
        strstr(buf, "tern_qos_rtp_expected_packets_total{leg=\"client\",kind=\"audio\"} 800\n"));
    static const char *const fams[] = {"packets_total",
                                       "bytes_total",
                                       "rtp_expected_packets_total",
                                       "rtp_lost_packets_total",
                                       "rtp_duplicate_packets_total",
                                       "rtp_reordered_packets_total",
                                       "rtp_seq_restarts_total",
                                       "rtp_streams_started_total",
                                       "loss_bursts_total",
                                       "srtcp_index_gaps_total",
                                       "rtcp_feedback_total",
                                       "stun_checks_total",
                                       "stalls_total",
                                       "leg_rtt_seconds",
                                       "path_rtt_seconds",
                                       "stream_jitter_seconds",
                                       "stream_interval_loss_ratio",
                                       "relay_residence_seconds",
                                       "episodes_total",
                                       "episode_events_lost_total"};
    char want[128];
    for (size_t i = 0; i < sizeof(fams) / sizeof(fams[0]); i++) {
        snprintf(want, sizeof(want), "# TYPE tern_qos_%s ", fams[i]);
        if (!strstr(buf, want)) fail_msg("family %s missing", fams[i]);
        snprintf(want, sizeof(want), "# HELP tern_qos_%s ", fams[i]);
        if (!strstr(buf, want)) fail_msg("help of %s missing", fams[i]);
    }
    /* appending keeps what is there */
    size_t first = len;
    assert_int_equal(qos_metrics_prometheus(&tot, &buf, &len, &cap), 0);
    assert_int_equal(len, 2 * first);
    buf[first] = '\0';
    len = first;

    /* The real parser, when it exists (python3-prometheus-client). */
    if (access("/usr/bin/python3", X_OK) == 0 &&
        system("/usr/bin/python3 -c 'import prometheus_client' 2>/dev/null") == 0) {
        char path[] = "/tmp/test_qos_promXXXXXX";
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, buf, len), (ssize_t)len);
        close(fd);
        char cmd[1024];
        snprintf(cmd, sizeof(cmd),
                 "/usr/bin/python3 -c '\n"
                 "import sys\n"
                 "from prometheus_client.parser import text_string_to_metric_families as p\n"
                 "fams = {f.name: f for f in p(open(sys.argv[1]).read())}\n"
                 "assert len(fams) == 23, sorted(fams)\n"
                 "h = fams[\"tern_qos_stream_jitter_seconds\"]\n"
                 "assert h.type == \"histogram\"\n"
                 "c = [s for s in h.samples if s.name.endswith(\"_count\") and "
                 "s.labels == {\"leg\": \"client\", \"kind\": \"audio\"}]\n"
                 "assert c[0].value == %" PRIu64 ", c\n"
                 "assert fams[\"tern_qos_packets\"].type == \"counter\"\n"
                 "' %s",
                 tot.stream_jitter[QOS_LEG_CLIENT][QOS_KIND_AUDIO].count, path);
        int rc = system(cmd);
        unlink(path);
        assert_int_equal(rc, 0);
    }
    free(buf);
    qos_alloc_free(r.q);
}

static void test_format_time(void **state)
{
    (void)state;
    char t[32];
    qos_format_time(0, t);
    assert_string_equal(t, "1970-01-01T00:00:00.000Z");
    qos_format_time(1795860000123456789LL, t);
    assert_string_equal(t, "2026-11-28T10:00:00.123Z");
    qos_format_time(-1, t);
    assert_string_equal(t, "1969-12-31T23:59:59.999Z");
}

/* ---- micro-benchmark (printed, not asserted) ---- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_bench(void **state)
{
    (void)state;
    struct rig r;
    rig_init(&r);
    enum { N = 400000 };
    uint8_t b[200];
    double t0 = now_s();
    for (int i = 0; i < N; i++) {
        rtp_build(b, 111, (uint16_t)i, 960u * (uint32_t)i, SSRC_A, 100);
        qos_packet(r.q, &r.m, QOS_LEG_CLIENT, &r.peer, b, 112, T0 + (int64_t)i * 20 * MS);
    }
    double audio = (now_s() - t0) / N * 1e9;
    rng_state = 99;
    static uint8_t pay[64][160];
    for (int k = 0; k < 64; k++)
        for (int j = 0; j < 160; j++)
            pay[k][j] = (uint8_t)rng();
    t0 = now_s();
    for (int i = 0; i < N; i++)
        qos_packet(r.q, &r.m, QOS_LEG_PEER, &r.peer, pay[i & 63], 160,
                   T0 + (int64_t)i * 20 * MS + 5 * MS);
    double rnd = (now_s() - t0) / N * 1e9;
    fprintf(stderr,
            "qos_packet: %.1f ns per audio RTP packet, %.1f ns per 160-byte random payload\n",
            audio, rnd);
    qos_alloc_free(r.q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classify_table),
        cmocka_unit_test(test_random_payloads_no_rtp),
        cmocka_unit_test(test_clean_audio),
        cmocka_unit_test(test_clock_nearest_candidate),
        cmocka_unit_test(test_loss_dup_reorder),
        cmocka_unit_test(test_interval_loss),
        cmocka_unit_test(test_wraps),
        cmocka_unit_test(test_ssrc_change),
        cmocka_unit_test(test_restart),
        cmocka_unit_test(test_reference_cases),
        cmocka_unit_test(test_jitter_hand),
        cmocka_unit_test(test_video_frames),
        cmocka_unit_test(test_stun_rtt),
        cmocka_unit_test(test_stun_many),
        cmocka_unit_test(test_stun_late),
        cmocka_unit_test(test_srtcp),
        cmocka_unit_test(test_kind_deferred),
        cmocka_unit_test(test_stream_cap),
        cmocka_unit_test(test_junk_keeps_streams),
        cmocka_unit_test(test_json_fields),
        cmocka_unit_test(test_iat_stall),
        cmocka_unit_test(test_prometheus),
        cmocka_unit_test(test_format_time),
        cmocka_unit_test(test_bench),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
