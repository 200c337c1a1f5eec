/* test_qos_timeline.c: per-allocation timelines, thresholds, episodes and the whole-call
 * series (qos/qos_timeline.c) on scripted packet sequences with explicit times: per-interval
 * loss against the script, one degraded/recovered pair per episode, the ring's bound, the
 * series' bound on a long call. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "qos.h"

#define MS   1000000LL
#define SEC  1000000000LL
#define T0   (1700000000LL * SEC)
#define SSRC 0x0badcafeu

struct rig {
    struct qos_alloc *q;
    struct qos_metrics m;
    union stun_addr peer;
    uint16_t seq[QOS_LEG_COUNT];
    uint32_t ts[QOS_LEG_COUNT];
    uint8_t tos;
};

static void rig_init(struct rig *r, uint32_t intervals)
{
    memset(r, 0, sizeof(*r));
    r->q = qos_alloc_new(T0);
    assert_non_null(r->q);
    struct qos_config c = {intervals, 0.01, 0.030, 0.300};
    qos_alloc_configure(r->q, &c);
    assert_true(addr_parse("192.0.2.7", 40000, &r->peer));
    r->seq[0] = 100;
    r->seq[1] = 60000;
}

/* One 20-ms PCMU packet (PT 0, 8 kHz) from leg at t; lost: the sequence number is used up but
 * the packet never reaches the tap. */
static void audio(struct rig *r, enum qos_leg leg, int64_t t, bool lost)
{
    uint8_t b[12 + 160];
    uint16_t seq = r->seq[leg]++;
    uint32_t ts = r->ts[leg];
    r->ts[leg] += 160;
    if (lost) return;
    b[0] = 0x80;
    b[1] = 0;
    b[2] = (uint8_t)(seq >> 8);
    b[3] = (uint8_t)seq;
    for (int i = 0; i < 4; i++)
        b[4 + i] = (uint8_t)(ts >> (24 - 8 * i));
    uint32_t ssrc = SSRC + (uint32_t)leg;
    for (int i = 0; i < 4; i++)
        b[8 + i] = (uint8_t)(ssrc >> (24 - 8 * i));
    memset(b + 12, 0xff, 160);
    assert_int_equal(qos_packet_tos(r->q, &r->m, leg, &r->peer, b, sizeof b, t, r->tos, NULL),
                     QOS_CLASS_RTP);
}

/* Both legs for [from, to) seconds; the client leg loses the packets lost(t) says. */
static void call(struct rig *r, int from, int to, bool (*lost)(int64_t))
{
    for (int64_t t = T0 + from * SEC; t < T0 + to * SEC; t += 20 * MS) {
        audio(r, QOS_LEG_CLIENT, t, lost && lost(t - T0));
        audio(r, QOS_LEG_PEER, t + 3 * MS, false);
    }
}

/* One packet in ten, never the first or last of an interval, in [from, to) */
static bool tenth(int64_t rel, int64_t from, int64_t to)
{
    return rel >= from && rel < to && (rel - from) / (20 * MS) % 10 == 5;
}

static bool bad_15_25(int64_t rel)
{
    return tenth(rel, 15 * SEC, 25 * SEC);
}

static json_t *leg_of(json_t *iv, const char *leg)
{
    json_t *l = json_object_get(iv, leg);
    assert_non_null(l);
    return l;
}

static int events(struct rig *r, struct qos_event *out, int max)
{
    int n = 0;
    struct qos_event ev;
    while (qos_alloc_event(r->q, &ev)) {
        assert_true(n < max);
        out[n++] = ev;
    }
    return n;
}

/* 10 % loss on the client leg from 15 s to 25 s of a 50-s call: the timeline's intervals 3
 * and 4 show it exactly, the peer leg none; one degraded event when interval 3 closes, one
 * recovered after two clean intervals (5 and 6); "poor" while the episode is open. */
static void test_loss_episode(void **state)
{
    (void)state;
    struct rig r;
    rig_init(&r, 120);
    struct qos_event ev[8];
    call(&r, 0, 20, bad_15_25);
    qos_alloc_tick(r.q, &r.m, T0 + 20 * SEC, false); /* closes interval 3 (15-20 s) */
    assert_int_equal(events(&r, ev, 8), 1);
    assert_int_equal(ev[0].type, QOS_EV_DEGRADED);
    assert_int_equal(ev[0].leg, QOS_LEG_CLIENT);
    assert_int_equal(ev[0].reasons, 1u << QOS_REASON_LOSS);
    assert_true(ev[0].since == T0 + 15 * SEC);
    assert_true(ev[0].at == T0 + 20 * SEC);
    assert_true(fabs(ev[0].loss_ratio - 0.1) < 1e-6);
    assert_int_equal(qos_alloc_poor(r.q, QOS_LEG_CLIENT), 1u << QOS_REASON_LOSS);
    assert_int_equal(qos_alloc_poor(r.q, QOS_LEG_PEER), 0);
    json_t *s = qos_summary_json(r.q);
    json_t *poor = json_object_get(s, "poor");
    assert_int_equal(json_array_size(poor), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(poor, 0), "leg")),
                        "client");
    assert_string_equal(
        json_string_value(json_array_get(json_object_get(json_array_get(poor, 0), "reasons"), 0)),
        "loss");
    json_decref(s);

    call(&r, 20, 50, bad_15_25);
    qos_alloc_tick(r.q, &r.m, T0 + 50 * SEC, false);
    assert_int_equal(events(&r, ev, 8), 1); /* interval 4 (still bad) gave none */
    assert_int_equal(ev[0].type, QOS_EV_RECOVERED);
    assert_int_equal(ev[0].leg, QOS_LEG_CLIENT);
    assert_true(ev[0].since == T0 + 15 * SEC);
    assert_true(ev[0].at == T0 + 35 * SEC); /* the end of the second clean interval */
    assert_int_equal(ev[0].intervals, 2);
    assert_false(ev[0].ended);
    assert_int_equal(qos_alloc_poor(r.q, QOS_LEG_CLIENT), 0);

    json_t *tl = qos_timeline_json(r.q);
    assert_non_null(tl);
    json_t *ivs = json_object_get(tl, "intervals");
    assert_int_equal(json_array_size(ivs), 10);
    for (size_t i = 0; i < 10; i++) {
        json_t *iv = json_array_get(ivs, i), *c = leg_of(iv, "client_leg"),
               *p = leg_of(iv, "peer_leg");
        assert_int_equal(json_integer_value(json_object_get(iv, "seq")), (json_int_t)i);
        assert_int_equal(json_integer_value(json_object_get(c, "rtp_expected")), 250);
        bool bad = i == 3 || i == 4;
        assert_int_equal(json_integer_value(json_object_get(c, "rtp_lost")), bad ? 25 : 0);
        assert_true(fabs(json_real_value(json_object_get(c, "loss_ratio")) - (bad ? 0.1 : 0)) <
                    1e-6);
        assert_int_equal(json_array_size(json_object_get(c, "poor")), bad ? 1 : 0);
        assert_int_equal(json_integer_value(json_object_get(c, "packets")), bad ? 225 : 250);
        assert_int_equal(json_integer_value(json_object_get(p, "rtp_lost")), 0);
        assert_int_equal(json_integer_value(json_object_get(p, "packets")), 250);
        /* 250 x 172 bytes in 5 s */
        assert_true(fabs(json_real_value(json_object_get(p, "bits_per_second")) - 68800.0) < 1e-6);
        assert_true(json_is_null(json_object_get(p, "rtt_seconds")));
        assert_true(json_is_null(json_object_get(p, "ce"))); /* no ECN-capable datagram */
    }
    json_decref(tl);
    qos_alloc_tick(r.q, &r.m, T0 + 51 * SEC, true);
    assert_int_equal(events(&r, ev, 8), 0);
    qos_alloc_free(r.q);
}

/* An episode still open when the call ends is closed by the final tick, marked ended. */
static void test_episode_ends_with_call(void **state)
{
    (void)state;
    struct rig r;
    rig_init(&r, 120);
    struct qos_event ev[8];
    call(&r, 0, 22, bad_15_25);
    qos_alloc_tick(r.q, &r.m, T0 + 22 * SEC, true);
    assert_int_equal(events(&r, ev, 8), 2);
    assert_int_equal(ev[0].type, QOS_EV_DEGRADED);
    assert_int_equal(ev[1].type, QOS_EV_RECOVERED);
    assert_true(ev[1].ended);
    assert_true(ev[1].at == T0 + 22 * SEC);
    assert_int_equal(ev[1].intervals, 2); /* 15-20 and the partial 20-22 */
    json_t *se = qos_series_json(r.q);
    json_t *eps = json_object_get(se, "episodes");
    assert_int_equal(json_array_size(eps), 1);
    assert_true(json_is_true(json_object_get(json_array_get(eps, 0), "ended_with_call")));
    json_decref(se);
    qos_alloc_free(r.q);
}

/* RTT and jitter thresholds, on the leg they belong to; 0 turns a threshold off. */
static void test_rtt_and_jitter(void **state)
{
    (void)state;
    struct rig r;
    rig_init(&r, 120);
    uint8_t b[20];
    memset(b, 0, sizeof b);
    b[4] = 0x21;
    b[5] = 0x12;
    b[6] = 0xA4;
    b[7] = 0x42;
    /* Binding requests from the client at 1, 2, 3 s, the peer answers 400 ms later; jitter on
     * the peer leg: every other arrival is 50 ms late */
    for (int k = 0; k < 250; k++) {
        int64_t t = T0 + k * 20 * MS;
        if (k % 50 == 0 && k >= 50 && k <= 150) {
            b[0] = 0x00;
            b[1] = 0x01;
            b[8] = (uint8_t)k;
            qos_packet(r.q, &r.m, QOS_LEG_CLIENT, &r.peer, b, 20, t);
        }
        if (k % 50 == 20 && k >= 70 && k <= 170) {
            b[0] = 0x01;
            b[1] = 0x01;
            b[8] = (uint8_t)(k - 20);
            qos_packet(r.q, &r.m, QOS_LEG_PEER, &r.peer, b, 20, t);
        }
        audio(&r, QOS_LEG_CLIENT, t, false);
        audio(&r, QOS_LEG_PEER, t + (k % 2 ? 50 : 0) * MS, false);
    }
    qos_alloc_tick(r.q, &r.m, T0 + 5 * SEC + 100 * MS, false);
    struct qos_event ev[8];
    assert_int_equal(events(&r, ev, 8), 1);
    assert_int_equal(ev[0].leg, QOS_LEG_PEER);
    assert_int_equal(ev[0].reasons, 1u << QOS_REASON_RTT | 1u << QOS_REASON_JITTER);
    assert_true(fabs(ev[0].rtt_s - 0.4) < 1e-6);
    assert_true(ev[0].jitter_s > 0.030);
    json_t *tl = qos_timeline_json(r.q);
    json_t *p = leg_of(json_array_get(json_object_get(tl, "intervals"), 0), "peer_leg");
    assert_int_equal(json_integer_value(json_object_get(p, "rtt_samples")), 3);
    assert_true(fabs(json_real_value(json_object_get(p, "rtt_seconds")) - 0.4) < 1e-6);
    json_decref(tl);
    qos_alloc_free(r.q);

    /* the same with both thresholds off: nothing */
    rig_init(&r, 120);
    struct qos_config c = {120, 0.01, 0, 0};
    qos_alloc_configure(r.q, &c);
    for (int k = 0; k < 250; k++)
        audio(&r, QOS_LEG_PEER, T0 + k * 20 * MS + (k % 2 ? 50 : 0) * MS, false);
    qos_alloc_tick(r.q, &r.m, T0 + 5 * SEC + 100 * MS, false);
    assert_int_equal(events(&r, ev, 8), 0);
    qos_alloc_free(r.q);
}

/* The ring holds the last N intervals and no more; silence shows as empty intervals (dense);
 * no timeline at all with N = 0. ECN CE marks and drops are counted per interval. */
static void test_ring_bound(void **state)
{
    (void)state;
    struct rig r;
    rig_init(&r, 12); /* one minute */
    r.tos = 2;        /* ECT(0) */
    call(&r, 0, 300, NULL);
    r.tos = 3; /* CE */
    call(&r, 300, 305, NULL);
    qos_drop(r.q, QOS_LEG_CLIENT, QOS_DROP_BANDWIDTH, 7);
    qos_drop(r.q, QOS_LEG_PEER, QOS_DROP_COUNT, 1); /* not a reason: ignored */
    /* 20 s of silence, then 5 s more */
    call(&r, 325, 330, NULL);
    qos_alloc_tick(r.q, &r.m, T0 + 330 * SEC, false);
    json_t *tl = qos_timeline_json(r.q);
    json_t *ivs = json_object_get(tl, "intervals");
    assert_int_equal(json_integer_value(json_object_get(tl, "capacity")), 12);
    assert_int_equal(json_array_size(ivs), 12);
    json_t *last = json_array_get(ivs, 11);
    assert_int_equal(json_integer_value(json_object_get(last, "seq")), 65);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(ivs, 0), "seq")), 54);
    json_t *ce_iv = json_array_get(ivs, 6); /* seq 60: 300-305 s */
    assert_int_equal(json_integer_value(json_object_get(ce_iv, "seq")), 60);
    json_t *c = leg_of(ce_iv, "client_leg");
    assert_int_equal(json_integer_value(json_object_get(c, "ce")), 250);
    assert_int_equal(json_integer_value(json_object_get(c, "ect")), 250);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(c, "drops"), "bandwidth")),
                     7);
    for (int i = 7; i <= 10; i++) { /* 305-325 s: nothing came */
        json_t *g = leg_of(json_array_get(ivs, (size_t)i), "peer_leg");
        assert_int_equal(json_integer_value(json_object_get(g, "packets")), 0);
        assert_true(json_is_null(json_object_get(g, "loss_ratio")));
    }
    assert_int_equal(json_integer_value(json_object_get(leg_of(last, "peer_leg"), "packets")), 250);
    json_decref(tl);
    qos_alloc_free(r.q);

    rig_init(&r, 0);
    call(&r, 0, 20, NULL);
    tl = qos_timeline_json(r.q);
    assert_int_equal(json_array_size(json_object_get(tl, "intervals")), 0);
    json_decref(tl);
    qos_alloc_free(r.q);
    /* the cost of a minute of history */
    size_t per_min = qos_timeline_bytes(12);
    print_message("timeline: %zu bytes per minute of history (%zu per interval), 10 min %zu\n",
                  per_min, (qos_timeline_bytes(12) - qos_timeline_bytes(1)) / 11,
                  qos_timeline_bytes(120));
    assert_true(qos_timeline_bytes(120) < 16 * 1024);
    assert_int_equal(qos_timeline_bytes(0), 0);
}

static bool bad_every_hour(int64_t rel)
{
    /* 10 minutes bad in each hour, from 5:00 to 15:00 */
    return tenth(rel % (3600 * SEC), 300 * SEC, 900 * SEC);
}

/* A 3-hour call with an episode every hour: the series stays at QOS_SERIES_POINTS points,
 * its points cover the whole call, and summary + series (the quality record's QoS part) stay
 * under 4 KB. */
static void test_series_long_call(void **state)
{
    (void)state;
    struct rig r;
    rig_init(&r, 120);
    call(&r, 0, 3 * 3600, bad_every_hour);
    qos_alloc_tick(r.q, &r.m, T0 + 3 * 3600 * SEC, true);
    struct qos_event ev[16];
    int n = events(&r, ev, 16);
    assert_int_equal(n, 6); /* three episodes, each one degraded and one recovered */
    for (int i = 0; i < n; i++)
        assert_int_equal(ev[i].type, i % 2 ? QOS_EV_RECOVERED : QOS_EV_DEGRADED);
    json_t *se = qos_series_json(r.q);
    assert_non_null(se);
    json_int_t pts = json_integer_value(json_object_get(se, "points"));
    double span = json_real_value(json_object_get(se, "point_seconds"));
    assert_true(pts <= QOS_SERIES_POINTS && pts > QOS_SERIES_POINTS / 2);
    assert_true(span * (double)pts >= 3 * 3600 && span * (double)(pts - 1) < 3 * 3600);
    json_t *loss = json_object_get(json_object_get(se, "client_leg"), "loss_ratio");
    assert_int_equal(json_array_size(loss), (size_t)pts);
    /* the point holding 1:10:00 shows 10 % (the worst of its intervals), 0:25:00 none */
    assert_true(fabs(json_real_value(json_array_get(loss, (size_t)(4200 / span))) - 0.1) < 1e-9);
    assert_true(fabs(json_real_value(json_array_get(loss, (size_t)(1500 / span)))) < 1e-9);
    assert_int_equal(json_array_size(json_object_get(se, "episodes")), 3);
    json_t *sum = qos_summary_json(r.q);
    char *a = json_dumps(se, JSON_COMPACT | JSON_REAL_PRECISION(9));
    char *b = json_dumps(sum, JSON_COMPACT | JSON_REAL_PRECISION(9));
    print_message("3-hour call: series %zu bytes, summary %zu bytes\n", strlen(a), strlen(b));
    assert_true(strlen(a) + strlen(b) < 3500); /* the relay's own fields fit in the rest */
    free(a);
    free(b);
    json_decref(sum);
    json_decref(se);
    qos_alloc_free(r.q);
}

/* A series that never closed an interval, a NULL meter, a full event queue. */
static void test_edges(void **state)
{
    (void)state;
    assert_null(qos_timeline_json(NULL));
    assert_false(qos_alloc_event(NULL, NULL));
    assert_int_equal(qos_alloc_poor(NULL, QOS_LEG_CLIENT), 0);
    qos_drop(NULL, QOS_LEG_CLIENT, QOS_DROP_SEND, 1);
    struct rig r;
    rig_init(&r, 5000); /* clamped */
    json_t *se = qos_series_json(r.q);
    assert_int_equal(json_integer_value(json_object_get(se, "points")), 0);
    json_decref(se);
    json_t *tl = qos_timeline_json(r.q);
    assert_int_equal(json_integer_value(json_object_get(tl, "capacity")), QOS_TIMELINE_MAX);
    json_decref(tl);
    /* flapping: alternate bad and silent... each bad interval after two clean ones is a new
     * episode; nobody takes the events, so the queue fills and the rest are counted */
    struct qos_config c = {12, 0.01, 0, 0};
    qos_alloc_configure(r.q, &c);
    int64_t t = T0;
    for (int ep = 0; ep < 10; ep++) {
        for (int k = 0; k < 750; k++, t += 20 * MS) /* 5 s bad then 10 s clean */
            audio(&r, QOS_LEG_CLIENT, t, k < 250 && k % 5 == 4);
    }
    qos_alloc_tick(r.q, &r.m, t, false);
    assert_int_equal(qos_alloc_events_lost(r.q), 20 - QOS_EVENT_QUEUE);
    qos_alloc_free(r.q);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loss_episode),     cmocka_unit_test(test_episode_ends_with_call),
        cmocka_unit_test(test_rtt_and_jitter),   cmocka_unit_test(test_ring_bound),
        cmocka_unit_test(test_series_long_call), cmocka_unit_test(test_edges),
    };
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
