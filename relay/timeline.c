/* timeline.c: meters with the configured timeline and thresholds, the once-a-second sweep,
 * and quality_degraded / quality_recovered events (timeline.h, docs/qos.md §18). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "log.h"
#include "timeline.h"
#include "webhook.h"

#define SWEEP_MS 1000

void timeline_config(const struct tern_config *cfg, struct qos_config *out)
{
    *out = (struct qos_config){
        .timeline_intervals =
            (uint32_t)((uint64_t)cfg->qos_timeline_minutes * 60 * 1000000000 / QOS_INTERVAL_NS),
        .loss_ratio = cfg->qos_thr_loss,
        .jitter_s = (double)cfg->qos_thr_jitter_ms / 1e3,
        .rtt_s = (double)cfg->qos_thr_rtt_ms / 1e3,
    };
}

struct qos_alloc *timeline_meter(struct worker *w, struct allocation *a)
{
    struct qos_alloc *q = qos_alloc_new(worker_created_ns(w, a));
    if (!q) return NULL;
    struct qos_config c;
    timeline_config(w->cfg, &c);
    qos_alloc_configure(q, &c);
    return q;
}

static void reasons_text(unsigned bits, char out[32])
{
    out[0] = '\0';
    for (int r = 0; r < QOS_REASON_COUNT; r++)
        if (bits >> r & 1) {
            if (out[0]) strcat(out, ",");
            strcat(out, qos_reason_names[r]);
        }
}

/* "0.1234", "-" when unknown. */
static const char *fmt(double v, double scale, int decimals, char out[32])
{
    if (!isfinite(v)) return "-";
    snprintf(out, 32, "%.*f", decimals, v * scale);
    return out;
}

static json_t *numj(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

static void post_event(struct worker *w, const struct allocation *a, const struct qos_event *ev,
                       const char *name)
{
    if (!w->webhook) return;
    char id[24], since[32], at[32];
    snprintf(id, sizeof id, "%llu", (unsigned long long)a->id);
    qos_format_time(ev->since, since);
    qos_format_time(ev->at, at);
    json_t *reasons = json_array();
    for (int r = 0; reasons && r < QOS_REASON_COUNT; r++)
        if (ev->reasons >> r & 1) json_array_append_new(reasons, json_string(qos_reason_names[r]));
    json_t *o = json_pack("{s:s,s:s,s:s%,s:s,s:s,s:o,s:s,s:s,s:I,s:b,s:o,s:o,s:o}", "type", name,
                          "id", id, "user", a->username, a->ulen, "realm", w->cfg->realm, "leg",
                          qos_leg_names[ev->leg], "reasons", reasons ? reasons : json_array(),
                          "since", since, "at", at, "intervals", (json_int_t)ev->intervals,
                          "ended_with_call", ev->ended, "loss_ratio", numj(ev->loss_ratio),
                          "jitter_seconds", numj(ev->jitter_s), "rtt_seconds", numj(ev->rtt_s));
    if (!o) {
        webhook_post(w->webhook, NULL); /* counted as dropped */
        return;
    }
    webhook_post(w->webhook, json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(6)));
    json_decref(o);
}

void timeline_events(struct worker *w, const struct allocation *a)
{
    struct qos_alloc *q = a->qos;
    struct qos_event ev;
    while (q && qos_alloc_event(q, &ev)) {
        char reasons[32], since[32], loss[32], jit[32], rtt[32];
        reasons_text(ev.reasons, reasons);
        qos_format_time(ev.since, since);
        const char *name = ev.type == QOS_EV_DEGRADED ? "quality_degraded" : "quality_recovered";
        tlog(ev.type == QOS_EV_DEGRADED ? CFG_LOG_WARN : CFG_LOG_INFO, name,
             LF_U("allocation", a->id), LF_S("user", a->username), LF_U("worker", w->id),
             LF_S("leg", qos_leg_names[ev.leg]), LF_S("reasons", reasons), LF_S("since", since),
             LF_U("intervals", ev.intervals), LF_S("loss_ratio", fmt(ev.loss_ratio, 1, 4, loss)),
             LF_S("jitter_ms", fmt(ev.jitter_s, 1e3, 1, jit)),
             LF_S("rtt_ms", fmt(ev.rtt_s, 1e3, 1, rtt)),
             LF_S("ended_with_call", ev.ended ? "true" : "false"));
        post_event(w, a, &ev, name);
    }
}

/* The drops the server core counted against a since the last sweep, into its timeline. */
static void take_drops(struct allocation *a)
{
    for (int l = 0; l < QOS_LEG_COUNT; l++) {
        if (a->drops_perm[l])
            qos_drop(a->qos, (enum qos_leg)l, QOS_DROP_PERMISSION, a->drops_perm[l]);
        if (a->drops_bw[l]) qos_drop(a->qos, (enum qos_leg)l, QOS_DROP_BANDWIDTH, a->drops_bw[l]);
        a->drops_perm[l] = a->drops_bw[l] = 0;
    }
}

void timeline_sweep(struct worker *w)
{
    if (!w->qos_on || w->now_ms - w->tl_swept_ms < SWEEP_MS) return;
    w->tl_swept_ms = w->now_ms;
    bool reconf = w->tl_gen != w->gen->id; /* a reload (reload.c worker_adopt) */
    struct qos_config c;
    if (reconf) {
        timeline_config(w->cfg, &c);
        w->tl_gen = w->gen->id;
    }
    const struct alloc_table *t = &w->srv.allocs;
    uint64_t poor = 0;
    for (size_t i = 0; i < t->count; i++) {
        struct allocation *a = t->heap[i];
        if (!a->qos) continue;
        if (reconf) qos_alloc_configure(a->qos, &c);
        take_drops(a);
        qos_alloc_tick(a->qos, &w->qm, w->now_ns, false);
        timeline_events(w, a);
        for (int l = 0; l < QOS_LEG_COUNT; l++)
            if (qos_alloc_poor(a->qos, (enum qos_leg)l)) {
                poor++;
                break;
            }
    }
    atomic_store_explicit(&w->npoor, poor, memory_order_relaxed); /* the fleet's QoS summary */
}
