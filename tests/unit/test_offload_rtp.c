/* test_offload_rtp.c: the per-SSRC arithmetic of the XDP program (relay/bpf/offload_rtp.h,
 * host-compiled: the very code the program runs) against the user-space meter (qos/) on the
 * same packet sequences. Meter A taps every packet; meter B taps them until the stream is
 * confirmed, hands the stream over (qos_rtp_export), lets offload_rtp.h count the rest as
 * the kernel would, and takes it back every few packets (qos_rtp_import, qos_counts_add), as
 * relay/offload.c does each tick. The streams' detail JSON (counts, sequence, jitter, clock,
 * loss pattern) and the RTP metrics must be identical. Sequences: loss, duplicates,
 * reordering, a sequence wrap, a timestamp wrap, an SSRC change, restarts, video frames,
 * dynamic payload types whose clock is inferred, random arrival jitter. One test alone: pass
 * its name as argv[1]. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "addr.h"
#include "offload_rtp.h"
#include "qos.h"
#include "testutil.h"

#define MS  1000000LL
#define SEC 1000000000LL
#define T0  (1700000000LL * SEC)
/* The kernel's clock is another one: only differences count. */
#define MONO_OFF (-1699990000LL * SEC)

_Static_assert(sizeof(struct tern_rtp) == sizeof(struct qos_rtp_state), "layouts differ");

static uint64_t rng_state;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* One handed-over stream of meter B. */
struct kstream {
    uint32_t ssrc;
    int used;
    struct tern_rtp st;
};

struct pair {
    struct qos_alloc *a, *b;
    struct qos_metrics ma, mb;
    union stun_addr peer;
    struct kstream ks[8];
    struct qos_counts cnt; /* what the "kernel" counted since the last merge */
    int every;             /* merge every this many kernel packets */
    int since;
    unsigned handed, in_kernel;
};

static void pair_init(struct pair *p, int every)
{
    memset(p, 0, sizeof(*p));
    p->a = qos_alloc_new(T0);
    p->b = qos_alloc_new(T0);
    assert_non_null(p->a);
    assert_non_null(p->b);
    assert_true(addr_parse("198.51.100.7", 5000, &p->peer));
    p->every = every;
    p->cnt.dscp_last = -1;
}

static void merge(struct pair *p, int64_t now)
{
    if (p->cnt.packets) qos_counts_add(p->b, &p->mb, QOS_LEG_CLIENT, &p->peer, &p->cnt, now);
    memset(&p->cnt, 0, sizeof(p->cnt));
    p->cnt.dscp_last = -1;
    for (int i = 0; i < 8; i++) {
        if (!p->ks[i].used) continue;
        struct qos_rtp_state st;
        memcpy(&st, &p->ks[i].st, sizeof(st));
        st.first_rx -= MONO_OFF;
        st.last_rx -= MONO_OFF;
        st.infer_rx -= MONO_OFF;
        if (!qos_rtp_import(p->b, &p->mb, QOS_LEG_CLIENT, &p->peer, p->ks[i].ssrc, &st, now))
            p->ks[i].used = 0;
    }
    qos_alloc_tick(p->b, &p->mb, now, false);
    p->since = 0;
}

static struct kstream *kfind(struct pair *p, uint32_t ssrc)
{
    for (int i = 0; i < 8; i++)
        if (p->ks[i].used && p->ks[i].ssrc == ssrc) return &p->ks[i];
    return NULL;
}

/* One datagram: A taps it; B's "kernel" counts it when its SSRC was handed over, else B taps
 * it and hands the stream over once confirmed (offload.c: offload_tapped). */
static void packet(struct pair *p, const uint8_t *b, size_t len, int64_t rx)
{
    qos_packet_tos(p->a, &p->ma, QOS_LEG_CLIENT, &p->peer, b, len, rx, 0, NULL);
    uint8_t copy[TERN_CLS_COPY] = {0};
    memcpy(copy, b, len < sizeof(copy) ? len : sizeof(copy));
    int cls = tern_classify(copy, (uint32_t)len);
    assert_int_equal(cls, qos_classify(b, len));
    uint32_t ssrc = len >= 12 ? (uint32_t)b[8] << 24 | b[9] << 16 | b[10] << 8 | b[11] : 0;
    struct kstream *k = cls == TERN_CLS_RTP ? kfind(p, ssrc) : NULL;
    if (k) {
        /* A tick between two kernel packets: intervals that ended close with what was
         * counted before this one (every 1: the meter's own instants, so even the interval
         * values agree; else up to a tick late, and they are not compared). */
        if (p->every == 1 || p->since >= p->every) merge(p, rx);
        tern_rtp_packet(&k->st, (uint16_t)(b[2] << 8 | b[3]),
                        (uint32_t)b[4] << 24 | b[5] << 16 | b[6] << 8 | b[7], rx + MONO_OFF);
        p->cnt.packets++;
        p->cnt.bytes += len;
        p->cnt.cls_packets[cls]++;
        p->cnt.cls_bytes[cls] += len;
        p->cnt.ecn[0]++;
        p->cnt.dscp[0]++;
        p->cnt.dscp_last = 0;
        p->cnt.last_rx = rx;
        p->in_kernel++;
        p->since++;
        return;
    }
    merge(p, rx); /* the tap sees the kernel's earlier packets first */
    qos_packet_tos(p->b, &p->mb, QOS_LEG_CLIENT, &p->peer, b, len, rx, 0, NULL);
    struct qos_rtp_state st;
    if (cls == TERN_CLS_RTP && qos_rtp_export(p->b, QOS_LEG_CLIENT, &p->peer, ssrc, &st)) {
        for (int i = 0; i < 8; i++) {
            if (p->ks[i].used) continue;
            st.first_rx += MONO_OFF;
            st.last_rx += MONO_OFF;
            st.infer_rx += MONO_OFF;
            p->ks[i].used = 1;
            p->ks[i].ssrc = ssrc;
            memcpy(&p->ks[i].st, &st, sizeof(st));
            p->handed++;
            break;
        }
    }
}

/* Both meters' views must be equal: the RTP streams whole, the direction's counts. */
static void pair_check(struct pair *p, int64_t end)
{
    merge(p, end);
    qos_alloc_tick(p->a, &p->ma, end, true);
    qos_alloc_tick(p->b, &p->mb, end, true);
    json_t *ja = qos_detail_json(p->a, end), *jb = qos_detail_json(p->b, end);
    json_t *da = json_object_get(
        json_object_get(json_array_get(json_object_get(ja, "peers"), 0), "directions"),
        "from_client");
    json_t *db = json_object_get(
        json_object_get(json_array_get(json_object_get(jb, "peers"), 0), "directions"),
        "from_client");
    assert_non_null(da);
    assert_non_null(db);
    if (p->every > 1) { /* interval values: taken at the tick after the interval's end */
        json_t *sa = json_object_get(da, "rtp_streams"), *sb = json_object_get(db, "rtp_streams");
        for (size_t i = 0; i < json_array_size(sa); i++) {
            json_object_del(json_array_get(sa, i), "jitter_max_interval_seconds");
            json_object_del(json_array_get(sa, i), "interval_fraction_lost");
        }
        for (size_t i = 0; i < json_array_size(sb); i++) {
            json_object_del(json_array_get(sb, i), "jitter_max_interval_seconds");
            json_object_del(json_array_get(sb, i), "interval_fraction_lost");
        }
    }
    static const char *const keys[] = {"rtp_streams", "packets_total", "bytes_total",
                                       "by_class",    "ecn",           "dscp"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        json_t *x = json_object_get(da, keys[i]), *y = json_object_get(db, keys[i]);
        if (!json_equal(x, y)) {
            char *sx = json_dumps(x, JSON_INDENT(1) | JSON_SORT_KEYS);
            char *sy = json_dumps(y, JSON_INDENT(1) | JSON_SORT_KEYS);
            fprintf(stderr, "%s differs:\nuser space: %s\nhanded over: %s\n", keys[i], sx, sy);
            free(sx);
            free(sy);
            fail();
        }
    }
    json_t *sa = qos_summary_json(p->a), *sb = qos_summary_json(p->b);
    json_t *ra = json_object_get(json_object_get(sa, "client_leg"), "rtp");
    json_t *rb = json_object_get(json_object_get(sb, "client_leg"), "rtp");
    if (p->every > 1) {
        json_object_del(ra, "interval_loss_ratio");
        json_object_del(rb, "interval_loss_ratio");
    }
    assert_true(json_equal(ra, rb));
    /* The RTP metrics: same counts whichever path counted. */
    assert_memory_equal(p->ma.rtp_expected, p->mb.rtp_expected, sizeof(p->ma.rtp_expected));
    assert_memory_equal(p->ma.rtp_lost, p->mb.rtp_lost, sizeof(p->ma.rtp_lost));
    assert_memory_equal(p->ma.rtp_duplicates, p->mb.rtp_duplicates, sizeof(p->ma.rtp_duplicates));
    assert_memory_equal(p->ma.rtp_reordered, p->mb.rtp_reordered, sizeof(p->ma.rtp_reordered));
    assert_memory_equal(p->ma.rtp_seq_restarts, p->mb.rtp_seq_restarts,
                        sizeof(p->ma.rtp_seq_restarts));
    assert_memory_equal(p->ma.rtp_streams_started, p->mb.rtp_streams_started,
                        sizeof(p->ma.rtp_streams_started));
    assert_memory_equal(p->ma.packets, p->mb.packets, sizeof(p->ma.packets));
    assert_memory_equal(p->ma.bytes, p->mb.bytes, sizeof(p->ma.bytes));
    assert_true(p->handed > 0);
    assert_true(p->in_kernel > 0);
    json_decref(ja);
    json_decref(jb);
    json_decref(sa);
    json_decref(sb);
    qos_alloc_free(p->a);
    qos_alloc_free(p->b);
}

/* A scripted stream: n packets every step_ns, timestamps +tsstep, with impairments. */
struct script {
    uint8_t pt;
    uint16_t seq0;
    uint32_t ts0, ssrc, tsstep;
    int n;
    int64_t step_ns, jitter_ns; /* arrival jitter: uniform [0, jitter_ns) */
    int drop_pct, dup_pct, swap_pct;
    int restart_at, ssrc_change_at, frame; /* frame: packets sharing a timestamp */
};

static void run_script(const struct script *sc, int every)
{
    struct pair p;
    pair_init(&p, every);
    uint8_t b[200], held[200];
    size_t hl = 0;
    int64_t t = T0 + 10 * MS;
    uint16_t seq = sc->seq0;
    uint32_t ts = sc->ts0, ssrc = sc->ssrc;
    for (int i = 0; i < sc->n; i++) {
        if (i == sc->restart_at) seq = (uint16_t)(seq + 5000);
        if (i == sc->ssrc_change_at) ssrc ^= 0x5a5a5a5a;
        int frame = sc->frame ? sc->frame : 1;
        uint32_t pts = ts + (uint32_t)(i / frame) * sc->tsstep;
        size_t len = rtp_build(b, sc->pt, seq, pts, ssrc, 60 + (size_t)(rng() % 100));
        seq++;
        t += sc->step_ns;
        int64_t rx = t + (sc->jitter_ns ? (int64_t)(rng() % (uint64_t)sc->jitter_ns) : 0);
        int early = i < 8; /* the first packets pass probation cleanly, as tests/qos does */
        if (!early && (int)(rng() % 100) < sc->drop_pct) continue;
        if (!early && !hl && (int)(rng() % 100) < sc->swap_pct) { /* with the next one */
            memcpy(held, b, len);
            hl = len;
            continue;
        }
        packet(&p, b, len, rx);
        if (!early && (int)(rng() % 100) < sc->dup_pct) packet(&p, b, len, rx + 100000);
        if (hl) {
            packet(&p, held, hl, rx + 50000);
            hl = 0;
        }
    }
    pair_check(&p, t + 20 * SEC);
}

static void test_clean_audio(void **state)
{
    (void)state;
    rng_state = 1;
    struct script s = {.pt = 0,
                       .seq0 = 100,
                       .ts0 = 1000,
                       .ssrc = 0x11223344,
                       .tsstep = 160,
                       .n = 600,
                       .step_ns = 20 * MS,
                       .jitter_ns = 3 * MS};
    run_script(&s, 1);
    run_script(&s, 17);
}

static void test_loss_dup_reorder(void **state)
{
    (void)state;
    rng_state = 2;
    struct script s = {.pt = 111,
                       .seq0 = 7,
                       .ts0 = 5,
                       .ssrc = 0xabcdef01,
                       .tsstep = 960,
                       .n = 1500,
                       .step_ns = 20 * MS,
                       .jitter_ns = 2 * MS,
                       .drop_pct = 5,
                       .dup_pct = 3,
                       .swap_pct = 4};
    run_script(&s, 1);
    run_script(&s, 50);
}

static void test_wraps(void **state)
{
    (void)state;
    rng_state = 3;
    struct script s = {.pt = 96,
                       .seq0 = 65400,
                       .ts0 = 4294900000u,
                       .ssrc = 7,
                       .tsstep = 3000,
                       .n = 900,
                       .step_ns = 6 * MS,
                       .jitter_ns = 1 * MS,
                       .drop_pct = 2,
                       .swap_pct = 2,
                       .frame = 5};
    run_script(&s, 1);
    run_script(&s, 9);
}

static void test_restart(void **state)
{
    (void)state;
    rng_state = 4;
    struct script s = {.pt = 111,
                       .seq0 = 65530,
                       .ts0 = 0,
                       .ssrc = 99,
                       .tsstep = 960,
                       .n = 400,
                       .step_ns = 20 * MS,
                       .jitter_ns = 1 * MS,
                       .drop_pct = 1,
                       .restart_at = 150};
    run_script(&s, 1);
    /* Merged every 30 packets, everything but the loss pattern agrees: a restart between two
     * ticks ends the old segment's evaluation at the earlier tick (docs/offload.md §4). */
    s.drop_pct = 0;
    run_script(&s, 30);
}

static void test_ssrc_change(void **state)
{
    (void)state;
    rng_state = 5;
    struct script s = {.pt = 8,
                       .seq0 = 1,
                       .ts0 = 77,
                       .ssrc = 0x1234,
                       .tsstep = 160,
                       .n = 500,
                       .step_ns = 20 * MS,
                       .jitter_ns = 4 * MS,
                       .dup_pct = 2,
                       .ssrc_change_at = 230};
    run_script(&s, 1);
    run_script(&s, 11);
}

/* Dynamic payload types: the clock is inferred in the kernel after 2 s, for each rate. */
static void test_inferred_clocks(void **state)
{
    (void)state;
    static const uint32_t rates[] = {8000, 16000, 24000, 32000, 44100, 48000, 90000};
    for (size_t r = 0; r < 7; r++) {
        rng_state = 6 + r;
        struct script s = {.pt = 100,
                           .seq0 = (uint16_t)(r * 1000),
                           .ts0 = (uint32_t)r,
                           .ssrc = 0x900 + (uint32_t)r,
                           .tsstep = rates[r] / 50,
                           .n = 300,
                           .step_ns = 20 * MS,
                           .jitter_ns = 5 * MS,
                           .drop_pct = 1};
        run_script(&s, 1);
        run_script(&s, 25);
    }
}

/* The classifier against qos_classify on random first bytes (packet() checks each). */
static void test_classify(void **state)
{
    (void)state;
    rng_state = 77;
    for (int i = 0; i < 200000; i++) {
        uint8_t b[TERN_CLS_COPY];
        for (size_t k = 0; k < sizeof(b); k++)
            b[k] = (uint8_t)rng();
        if (i % 3 == 0) b[0] = (uint8_t)(0x80 | (b[0] & 0x1f));
        if (i % 5 == 0) {
            b[2] = 0;
            b[3] = (uint8_t)(4 * (rng() % 16));
        }
        uint32_t len = (uint32_t)(rng() % sizeof(b));
        if (i % 7 == 0) {
            b[0] = 0;
            b[4] = 0x21, b[5] = 0x12, b[6] = 0xa4, b[7] = 0x42;
            b[2] = 0;
            b[3] = (uint8_t)(len >= 20 ? len - 20 : 0);
        }
        if (i % 11 == 0 && (b[0] & 0x10) && len > 20) { /* an extension that fits */
            unsigned hdr = 12 + 4 * (b[0] & 15u);
            if (hdr + 3 < sizeof(b)) b[hdr + 2] = 0, b[hdr + 3] = 0;
        }
        assert_int_equal(tern_classify(b, len), qos_classify(b, len));
    }
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clean_audio), cmocka_unit_test(test_loss_dup_reorder),
        cmocka_unit_test(test_wraps),       cmocka_unit_test(test_restart),
        cmocka_unit_test(test_ssrc_change), cmocka_unit_test(test_inferred_clocks),
        cmocka_unit_test(test_classify),
    };
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
