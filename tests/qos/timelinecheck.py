#!/usr/bin/env python3
"""timelinecheck.py: the relay's per-allocation timeline against tern-mediagen's ground truth.

    timelinecheck.py GEN_LOG TIMELINE_JSON TERND_LOG [--loss-threshold 0.01] [--page PAGE_JSON]

For each interval of GET /api/v1/allocations/{id}/timeline (its own start and length), and
each leg, the truth is computed from the datagrams the generator logged as sent: per RTP
stream, expected = the highest sequence number sent before the interval's end minus the one
sent before its start (RFC 3550 A.3, as the relay's interval close does), received = those
sent inside it, lost = expected - received; the leg's rtp_expected / rtp_lost are the sums,
its loss_ratio the worst stream's. Exact, except that an interval with a datagram within
3 ms of one of its edges (the relay's edges are known to the millisecond) may be off by one.
Then: a leg is "poor" for loss in exactly the intervals whose true loss is above the
threshold; ternd logged one quality_degraded and one quality_recovered for that leg (and
nothing for the other), the degraded one dated from the first bad interval. With --page (what
the ops page showed, from tests/web/ops_page.cjs): each interval's loss percentages on the page
equal the truth (to the page's two decimals) and the page marks exactly the intervals whose
truth is above the threshold. Prints ok:/FAIL: lines; exit 1 on any FAIL.
"""
import argparse
import datetime
import json
import sys

# A datagram this close to an interval edge may be counted on either side: the relay assigns it
# by when it handled it, which on a loaded machine (CI, sanitizers) trails the send time.
GUARD_NS = 25_000_000
fails = 0


def ok(msg):
    print("ok: " + msg)


def fail(msg):
    global fails
    fails += 1
    print("FAIL: " + msg)


def ns_of(text):
    d = datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc)
    return int(d.timestamp()) * 1_000_000_000 + d.microsecond * 1000


def streams_of(gen_log):
    """{(leg, ssrc): [(t, ext_seq), ...]} in send order, duplicates left out."""
    out, last = {}, {}
    for line in open(gen_log):
        e = json.loads(line)
        if e.get("ev") != "tx" or e.get("class") != "rtp" or e.get("dup"):
            continue
        key = (e["dir"], e["ssrc"])
        seq = e["seq"]
        if key in last:  # unwrap: the sender only moves forward here
            prev = last[key]
            cyc = prev - (prev & 0xFFFF)
            ext = cyc + seq
            if ext < prev - 32768:
                ext += 65536
            elif ext > prev + 32768:
                ext -= 65536
        else:
            ext = seq
        last[key] = ext
        out.setdefault(key, []).append((e["t"], ext))
    return out


def truth(streams, leg, start, end):
    """(expected, lost, worst ratio or None, ambiguous: how many datagrams lie within GUARD_NS
    of an edge) of leg in [start, end)."""
    exp = lost = 0
    worst, amb = None, 0
    for (l, _ssrc), pk in streams.items():
        if l != leg:
            continue
        before = [s for t, s in pk if t < start]
        upto = [s for t, s in pk if t < end]
        rcv = sum(1 for t, _ in pk if start <= t < end)
        amb += sum(1 for t, _ in pk if abs(t - start) < GUARD_NS or abs(t - end) < GUARD_NS)
        if not upto:
            continue
        e = max(upto) - (max(before) if before else pk[0][1] - 1)
        li = e - rcv
        if e > 0:
            exp += e
        if e > 0 and li > 0:
            lost += li
        if rcv > 0:
            r = li / e if e > 0 and li > 0 else 0.0
            worst = r if worst is None or r > worst else worst
    return exp, lost, worst, amb


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("gen_log")
    ap.add_argument("timeline")
    ap.add_argument("ternd_log")
    ap.add_argument("--loss-threshold", type=float, default=0.01)
    ap.add_argument("--page")
    ap.add_argument("--episode-open", action="store_true",
                    help="the episode is still going on: degraded logged, recovered not yet")
    a = ap.parse_args()
    doc = json.load(open(a.timeline))
    tl = doc["timeline"]
    alloc = int(doc["id"])
    streams = streams_of(a.gen_log)
    thr = a.loss_threshold
    bad_first = {}
    checked = 0
    for iv in tl["intervals"]:
        start = ns_of(iv["start"])
        end = start + int(round(iv["seconds"] * 1e9))
        for leg in ("client", "peer"):
            got = iv[leg + "_leg"]
            exp, lost, worst, amb = truth(streams, leg, start, end)
            if exp == 0 and got["rtp_expected"] == 0:
                continue
            tol = amb
            what = "interval %d %s leg" % (iv["seq"], leg)
            if abs(got["rtp_expected"] - exp) > tol or abs(got["rtp_lost"] - lost) > tol:
                fail("%s: expected/lost %d/%d, truth %d/%d" %
                     (what, got["rtp_expected"], got["rtp_lost"], exp, lost))
                continue
            gl = got["loss_ratio"]
            if worst is None:
                if gl is not None:
                    fail("%s: loss_ratio %s, truth: nothing received" % (what, gl))
                continue
            rtol = (amb / max(exp - amb, 1) if amb else 0) + 1e-6
            if gl is None or abs(gl - worst) > rtol:
                fail("%s: loss_ratio %s, truth %.6f" % (what, gl, worst))
                continue
            checked += 1
            poor = "loss" in got["poor"]
            if amb and abs(worst - thr) < rtol:
                continue  # too close to the threshold to say
            if poor != (worst > thr):
                fail("%s: poor %s with loss %.4f (threshold %g)" % (what, got["poor"], worst, thr))
            elif poor:
                bad_first.setdefault(leg, iv["start"])
    if checked:
        ok("%d interval/leg loss values equal the generator's truth" % checked)
    else:
        fail("no interval to check")
    if bad_first:
        ok("poor for loss exactly where the truth is above %g: from %s" % (thr, bad_first))
    evs = []
    for line in open(a.ternd_log):
        if '"event":"quality_' not in line:
            continue
        e = json.loads(line)
        if e.get("allocation") == alloc:
            evs.append(e)
    for leg in ("client", "peer"):
        deg = [e for e in evs if e["event"] == "quality_degraded" and e["leg"] == leg]
        rec = [e for e in evs if e["event"] == "quality_recovered" and e["leg"] == leg]
        if leg not in bad_first:
            if deg or rec:
                fail("%s leg: %d degraded / %d recovered events, and no bad interval" %
                     (leg, len(deg), len(rec)))
            else:
                ok("%s leg: no episode, no event" % leg)
            continue
        if a.episode_open:
            if len(deg) == 1 and not rec and "loss" in deg[0]["reasons"].split(",") and \
                    deg[0]["since"] == bad_first[leg]:
                ok("%s leg: one quality_degraded (%s since %s), still open" %
                   (leg, deg[0]["reasons"], deg[0]["since"]))
            else:
                fail("%s leg: %d degraded / %d recovered, wanted one open episode since %s" %
                     (leg, len(deg), len(rec), bad_first[leg]))
            continue
        if len(deg) != 1 or len(rec) != 1:
            fail("%s leg: %d quality_degraded and %d quality_recovered events, not one each" %
                 (leg, len(deg), len(rec)))
            continue
        d, r = deg[0], rec[0]
        if "loss" not in d["reasons"].split(",") or d["since"] != bad_first[leg]:
            fail("%s leg: degraded %s since %s, wanted loss since %s" %
                 (leg, d["reasons"], d["since"], bad_first[leg]))
        elif r["since"] != d["since"] or r["ended_with_call"] != "false":
            fail("%s leg: recovered %s" % (leg, r))
        else:
            ok("%s leg: one quality_degraded (%s since %s, loss %s) and one quality_recovered "
               "(after %s bad intervals)" % (leg, d["reasons"], d["since"], d["loss_ratio"],
                                              r["intervals"]))
    if a.page:
        check_page(a, tl, streams, thr)
    return 1 if fails else 0


def check_page(a, tl, streams, thr):
    """The page's numbers against the truth, interval by interval (edges from the API)."""
    by_seq = {iv["seq"]: iv for iv in tl["intervals"]}
    n = 0
    for pv in json.load(open(a.page))["intervals"]:
        iv = by_seq.get(pv["seq"])
        if not iv:
            continue
        start = ns_of(iv["start"])
        end = start + int(round(iv["seconds"] * 1e9))
        for leg in ("client", "peer"):
            exp, _lost, worst, amb = truth(streams, leg, start, end)
            shown = pv[leg + "_loss_pct"]
            want = "-" if worst is None else "%.2f" % (worst * 100)
            tol = (100.0 * amb / max(exp - amb, 1) if amb else 0) + 0.006
            if want == "-" or shown == "-":
                good = want == shown
            else:
                good = abs(float(shown) - float(want)) <= tol
            if not good:
                fail("page interval %d %s leg: shows %s %%, truth %s %%" % (pv["seq"], leg, shown, want))
                continue
            if worst is not None and not (amb and abs(worst - thr) < amb / max(exp - amb, 1)):
                if pv[leg + "_marked"] != (worst > thr):
                    fail("page interval %d %s leg: marked %s, truth %.4f" %
                         (pv["seq"], leg, pv[leg + "_marked"], worst))
                    continue
            n += 1
    if n:
        ok("page: %d interval/leg loss values and marks equal the generator's truth" % n)
    else:
        fail("page: nothing to compare")


if __name__ == "__main__":
    sys.exit(main())
