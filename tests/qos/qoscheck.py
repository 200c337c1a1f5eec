#!/usr/bin/env python3
"""qoscheck.py: compare what ternd reports (ops API, /metrics, quality record) with qosref.py's
ground truth for tern-mediagen logs. Prints one "ok:" or "FAIL:" line per check; exits 1 when
any check failed (and when a source is missing: never a vacuous pass).

  qoscheck.py detail  LOG DETAIL.json    GET /api/v1/allocations/{id} of that run
  qoscheck.py summary LOG ENTRY.json     its entry in GET /api/v1/allocations
  qoscheck.py record  LOG RECORDS.jsonl  its call_quality line in qos.record_file
  qoscheck.py metrics METRICS.txt LOG... /metrics after every listed run ended (the sums)

Tolerances (README.md explains them): counts exact; jitter within max(2 %, 1 RTP unit) plus
30 us of timestamp slack (the reference uses send times, the relay kernel receive times; on
loopback the two differ by 4-45 us, consecutive differences by 6.5 us on average); leg RTT
within [-0.3 ms, +3 ms] of the generator's answer delay (the relay adds two loopback hops
and its own scheduling); p50 RTT from the relay's sketch within 6 % more."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qosref  # noqa: E402

FAILS = []
JITTER_SLACK_S = 30e-6
# A relay-side RTT sample is the answer delay plus the relay's own residence time of the request
# (docs/qos.md §8.2) plus the veth hops. TERN_RTT_SLACK_MS widens the upper bound where the
# relay's loop is slow by construction: the sanitizer build, run beside the fuzzers.
RTT_LO, RTT_HI = -0.3e-3, float(os.environ.get("TERN_RTT_SLACK_MS", "3")) * 1e-3
DIRS = {"client": "from_client", "peer": "from_peer"}
RTP_CLASSES = ("stun", "dtls", "rtp", "rtcp", "quic", "other")


def ok(msg):
    print("ok:", msg)


def fail(msg):
    print("FAIL:", msg)
    FAILS.append(msg)


def eq(what, got, want):
    if got == want:
        ok(f"{what} = {want}")
    else:
        fail(f"{what}: relay {got}, reference {want}")


def load_ref(path):
    with open(path) as f:
        return qosref.compute(f)


def jitter_tol(ref_units, clock):
    return max(0.02 * ref_units, 1.0) + JITTER_SLACK_S * clock


def check_jitter(what, got_units, got_seconds, ref):
    if ref["clock_rate"] is None:
        return
    want = ref["jitter_q4"] / 16.0
    if got_units is None:
        fail(f"{what}: jitter_rtp_units is null (reference {want:.1f}, clock known)")
        return
    tol = jitter_tol(want, ref["clock_rate"])
    if abs(got_units - want) <= tol:
        ok(f"{what}: jitter {got_units} units, reference {want:.2f} (tolerance {tol:.2f})")
    else:
        fail(f"{what}: jitter {got_units} units, reference {want:.2f} (tolerance {tol:.2f})")
    if got_seconds is not None:
        s_want = got_units / ref["clock_rate"]
        if abs(got_seconds - s_want) > 1.5 / ref["clock_rate"]:
            fail(f"{what}: jitter_seconds {got_seconds} is not jitter_rtp_units/clock {s_want}")


def check_classes(what, got, ref):
    """Packets by class; random payloads that look like RTP v2 may land in rtp, rtcp or other
    (the relay's header validation decides), so with those only the sum is exact."""
    amb = ref["unclassified_raw"]
    want = ref["by_class"]
    for c in RTP_CLASSES:
        if amb and c in ("rtp", "rtcp", "other"):
            continue
        eq(f"{what} {c}", got.get(c) or 0, want.get(c, 0))
    if amb:
        g = sum(got.get(c) or 0 for c in ("rtp", "rtcp", "other"))
        w = sum(want.get(c, 0) for c in ("rtp", "rtcp", "other", "ambiguous"))
        eq(f"{what} rtp+rtcp+other ({amb} random V=2 payloads among them)", g, w)


def check_rtt_block(what, rtt, ref_rtt, sketch=False):
    n = ref_rtt["measurements"]
    if rtt is None:
        fail(f"{what}: no rtt object")
        return
    eq(f"{what} rtt measurements", rtt.get("measurements"), n)
    if not n:
        return
    for key, ref_key in (("min_seconds", "min_seconds"), ("last_seconds", "last_seconds")):
        got = rtt.get(key)
        want = ref_rtt[ref_key]
        if got is None:
            fail(f"{what} rtt {key} is null, reference {want:.6f}")
        elif want + RTT_LO <= got <= want + RTT_HI:
            ok(f"{what} rtt {key} {got:.6f} s, answer delay {want:.6f} s")
        else:
            fail(f"{what} rtt {key} {got:.6f} s, answer delay {want:.6f} s "
                 f"(allowed [{RTT_LO*1e3:+.1f}, {RTT_HI*1e3:+.1f}] ms)")
    if sketch and "p50_seconds" in rtt:
        got, want = rtt["p50_seconds"], ref_rtt["median_seconds"]
        lo, hi = (want + RTT_LO) * 0.94, (want + RTT_HI) * 1.06
        if got is not None and lo <= got <= hi:
            ok(f"{what} rtt p50 {got:.6f} s, median answer delay {want:.6f} s")
        else:
            fail(f"{what} rtt p50 {got} s, median answer delay {want:.6f} s (allowed [{lo:.6f}, {hi:.6f}])")


def check_detail(log, path):
    ref = load_ref(log)
    with open(path) as f:
        d = json.load(f)
    alloc = ref["alloc"]
    flows = [p for p in d.get("peers", []) if p.get("peer") == alloc["peer"]]
    if len(flows) != 1:
        fail(f"detail: want one flow for peer {alloc['peer']}, got {[p.get('peer') for p in d.get('peers', [])]}")
        return
    flow = flows[0]
    eq("detail channel", flow.get("channel"), alloc["channel"])
    for leg, dname in DIRS.items():
        r = ref["legs"][leg]
        dd = flow.get("directions", {}).get(dname)
        if dd is None:
            fail(f"detail: no direction {dname}")
            continue
        eq(f"{dname} packets_total", dd.get("packets_total"), r["packets"])
        eq(f"{dname} bytes_total", dd.get("bytes_total"), r["bytes"])
        check_classes(dname, dd.get("by_class", {}), r)
        got_streams = {s["ssrc"]: s for s in dd.get("rtp_streams", [])}
        want_streams = {s["ssrc"]: s for s in r["rtp_streams"]}
        extra = sorted(set(got_streams) - set(want_streams))
        if extra:
            fail(f"{dname}: relay reports streams the reference never confirmed: {extra}")
        else:
            ok(f"{dname}: no RTP stream beyond the reference's {len(want_streams)}")
        for ssrc, w in want_streams.items():
            g = got_streams.get(ssrc)
            tag = f"{dname} ssrc {ssrc} ({w['kind']})"
            if g is None:
                fail(f"{tag}: missing from the relay's rtp_streams")
                continue
            for k in ("packets_received", "packets_received_unique", "packets_duplicated",
                      "packets_out_of_order", "packets_expected", "packets_lost",
                      "packets_lost_net", "seq_restarts_total", "extended_highest_seq",
                      "payload_type"):
                eq(f"{tag} {k}", g.get(k), w[k])
            eq(f"{tag} kind", g.get("kind"), w["kind"])
            eq(f"{tag} clock_rate", g.get("clock_rate"), w["clock_rate"])
            check_jitter(tag, g.get("jitter_rtp_units"), g.get("jitter_seconds"), w)
    check_rtt_block("client leg", (d.get("client_leg") or {}).get("rtt"), ref["legs"]["client"]["rtt"])
    check_rtt_block("peer leg", (flow.get("peer_leg") or {}).get("rtt"), ref["legs"]["peer"]["rtt"])


def check_summary_obj(tag, q, ref):
    if q is None:
        fail(f"{tag}: qos summary is null (is qos.enabled on?)")
        return
    for leg in ("client", "peer"):
        r = ref["legs"][leg]
        s = q.get(f"{leg}_leg")
        if s is None:
            fail(f"{tag}: no {leg}_leg")
            continue
        eq(f"{tag} {leg}_leg packets", s.get("packets"), r["packets"])
        eq(f"{tag} {leg}_leg bytes", s.get("bytes"), r["bytes"])
        rtp = s.get("rtp") or {}
        for k in ("expected", "received", "lost", "lost_net", "duplicates", "reordered"):
            eq(f"{tag} {leg}_leg rtp.{k}", rtp.get(k), r["rtp"][k])
        # streams: the confirmed SSRCs (a changed SSRC's old stream included)
        eq(f"{tag} {leg}_leg rtp.streams", rtp.get("streams"), r["rtp"]["streams"])
        if r["rtp"]["expected"]:
            want = r["rtp"]["lost_net"] / r["rtp"]["expected"]
            got = rtp.get("loss_ratio")
            if got is not None and abs(got - want) < 1e-9 + 1e-6 * want:
                ok(f"{tag} {leg}_leg loss_ratio {got:.6f}")
            else:
                fail(f"{tag} {leg}_leg loss_ratio {got}, reference {want:.6f}")
        streams = [w for w in r["rtp_streams"] if w["clock_rate"]]
        if streams:
            # jitter_seconds: the max over active streams; the reference's max is the target
            w = max(streams, key=lambda x: x["jitter_q4"] / 16.0 / x["clock_rate"])
            got = rtp.get("jitter_seconds")
            want = w["jitter_q4"] / 16.0 / w["clock_rate"]
            tol = jitter_tol(w["jitter_q4"] / 16.0, w["clock_rate"]) / w["clock_rate"]
            if got is not None and abs(got - want) <= tol:
                ok(f"{tag} {leg}_leg rtp.jitter_seconds {got:.6f}, reference max {want:.6f}")
            else:
                fail(f"{tag} {leg}_leg rtp.jitter_seconds {got}, reference max {want:.6f} (tol {tol:.6f})")
        check_rtt_block(f"{tag} {leg}_leg", s.get("rtt"), r["rtt"], sketch=True)


def check_summary(log, path):
    ref = load_ref(log)
    with open(path) as f:
        e = json.load(f)
    alloc = ref["alloc"]
    eq("entry user", e.get("user"), alloc["user"])
    eq("entry client", e.get("client"), alloc["client"])
    eq("entry transport", e.get("transport"), "udp")
    check_summary_obj("entry qos", e.get("qos"), ref)


def check_record(log, path):
    ref = load_ref(log)
    alloc = ref["alloc"]
    recs = []
    with open(path) as f:
        for ln in f:
            if ln.strip():
                rec = json.loads(ln)
                rel = rec.get("relayed")
                rel = rel if isinstance(rel, list) else [rel]
                if rec.get("type") == "call_quality" and alloc["relayed"] in rel and \
                        rec.get("client") == alloc["client"]:
                    recs.append(rec)
    if len(recs) != 1:
        fail(f"record: want exactly one call_quality line for {alloc['relayed']}, found {len(recs)}")
        return
    rec = recs[0]
    eq("record reason", rec.get("reason"), "deleted")
    eq("record user", rec.get("user"), alloc["user"])
    eq("record realm", rec.get("realm"), alloc["realm"])
    for k in ("id", "started_at", "ended_at", "duration_seconds", "packets", "bytes"):
        if k not in rec:
            fail(f"record: no {k}")
    check_summary_obj("record qos", rec.get("qos"), ref)


def check_metrics(path, logs):
    from prometheus_client.parser import text_string_to_metric_families
    with open(path) as f:
        text = f.read()
    fams = {}
    for fam in text_string_to_metric_families(text):
        fams[fam.name] = fam

    def total(name, **labels):
        fam = fams.get(name)
        if fam is None:
            return None
        v = 0
        for s in fam.samples:
            if s.name not in (name, name + "_total"):
                continue
            if all(s.labels.get(k) == want for k, want in labels.items()):
                v += s.value
        return v

    def count_of(name, **labels):
        fam = fams.get(name)
        if fam is None:
            return None
        return sum(s.value for s in fam.samples if s.name == name + "_count" and
                   all(s.labels.get(k) == w for k, w in labels.items()))

    # prometheus_client strips _total from counter family names
    required = ["tern_qos_packets", "tern_qos_bytes", "tern_qos_rtp_expected_packets",
                "tern_qos_rtp_lost_packets", "tern_qos_rtp_duplicate_packets",
                "tern_qos_rtp_reordered_packets", "tern_qos_rtp_seq_restarts",
                "tern_qos_rtp_streams_started", "tern_qos_stun_checks", "tern_qos_leg_rtt_seconds",
                "tern_qos_path_rtt_seconds", "tern_qos_stream_jitter_seconds",
                "tern_qos_stream_interval_loss_ratio", "tern_qos_relay_residence_seconds",
                "tern_allocations_active", "tern_forward_drops"]
    missing = [n for n in required if n not in fams]
    if missing:
        fail(f"/metrics: families missing: {missing}")
    else:
        ok(f"/metrics: all {len(required)} required families present")
    refs = [load_ref(p) for p in logs]
    for leg in ("client", "peer"):
        for kind in ("audio", "video"):
            streams = [s for r in refs for s in r["legs"][leg]["rtp_streams"] if s["kind"] == kind]
            lab = dict(leg=leg, kind=kind)
            eq(f"metrics rtp_expected{{{leg},{kind}}}", total("tern_qos_rtp_expected_packets", **lab),
               sum(s["packets_expected"] for s in streams))
            eq(f"metrics rtp_lost{{{leg},{kind}}}", total("tern_qos_rtp_lost_packets", **lab),
               sum(s["packets_lost_net"] for s in streams))
            eq(f"metrics rtp_duplicate{{{leg},{kind}}}", total("tern_qos_rtp_duplicate_packets", **lab),
               sum(s["packets_duplicated"] for s in streams))
            eq(f"metrics rtp_reordered{{{leg},{kind}}}", total("tern_qos_rtp_reordered_packets", **lab),
               sum(s["packets_out_of_order"] for s in streams))
            eq(f"metrics rtp_streams_started{{{leg},{kind}}}",
               total("tern_qos_rtp_streams_started", **lab), len(streams))
        eq(f"metrics rtp_seq_restarts{{{leg}}}", total("tern_qos_rtp_seq_restarts", leg=leg),
           sum(s["seq_restarts_total"] for r in refs for s in r["legs"][leg]["rtp_streams"]))
        got = {c: total("tern_qos_packets", leg=leg, **{"class": c}) for c in RTP_CLASSES}
        want = {"packets": 0, "by_class": {}, "unclassified_raw": 0}
        for r in refs:
            for c, v in r["legs"][leg]["by_class"].items():
                want["by_class"][c] = want["by_class"].get(c, 0) + v
            want["unclassified_raw"] += r["legs"][leg]["unclassified_raw"]
        check_classes(f"metrics packets{{{leg}}}", got, want)
        n = sum(r["legs"][leg]["rtt"]["measurements"] for r in refs)
        eq(f"metrics stun_checks{{{leg},answered}}", total("tern_qos_stun_checks", leg=leg,
                                                          outcome="answered"), n)
        eq(f"metrics leg_rtt_seconds_count{{{leg}}}", count_of("tern_qos_leg_rtt_seconds", leg=leg), n)


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    mode = argv[1]
    try:
        if mode == "detail" and len(argv) == 4:
            check_detail(argv[2], argv[3])
        elif mode == "summary" and len(argv) == 4:
            check_summary(argv[2], argv[3])
        elif mode == "record" and len(argv) == 4:
            check_record(argv[2], argv[3])
        elif mode == "metrics" and len(argv) >= 4:
            check_metrics(argv[2], argv[3:])
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        fail(f"{mode}: cannot check: {type(e).__name__}: {e}")
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
