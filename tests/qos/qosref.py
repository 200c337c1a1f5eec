#!/usr/bin/env python3
"""qosref.py: the independent offline reference for Tern's QoS numbers.

Reads the ground-truth log of tern-mediagen (JSON lines: every datagram put on the wire with
its CLOCK_REALTIME send time, every scripted drop, the STUN transactions) and computes what a
relay in the middle must report, per ingress leg and per RTP stream, with the documented rules
(written from RFC 3550 and the rules of docs/qos.md §5, §6 and §8, not from the relay's C code):

  * streams per (ingress leg, SSRC); arrival order = send order (one sending socket per leg,
    loopback keeps the order);
  * probation: a stream is confirmed by 4 consecutive sequence numbers and then counted
    retroactively from the first packet of that run; packets before the run never count;
  * RFC 3550 A.1 after that: MAX_DROPOUT 3000, MAX_MISORDER 100, bad_seq restart (the packet
    after the jump is not counted, the next one in sequence re-initialises: a restart);
    counts accumulate across restarts (each segment's expected and received are added);
  * A.3 / 6.4.1: expected = extended max - base + 1, lost = expected - received (signed);
    duplicates from a bitmap of the last 1024 extended sequence numbers; lost_net = expected -
    unique; out_of_order = packets whose extended sequence is below the highest seen;
  * jitter, libwebrtc rule: only in-order packets (they advance the highest sequence number)
    whose RTP timestamp differs from the previous in-order packet's; D against the previous
    in-order packet (whatever its timestamp); arrival R = floor((t - t_first) * clock / 1e9)
    with t the send time; Q4 update J += ((|D| << 4) - J + 8) >> 4, |D| >= 450000 skipped;
    reported J >> 4. The relay uses kernel receive times; see README.md for the tolerance;
  * STUN RTT of leg L: requests answered by side L; sample = response sent - request received
    at side L (the answer delay the generator applied); the relay adds two loopback hops.

Usage: qosref.py LOG            print the expected values as JSON
       qosref.py --selftest     check the reference itself on hand-computed cases
"""
import json
import sys

MAX_DROPOUT = 3000
MAX_MISORDER = 100
SEQ_MOD = 1 << 16
PROBATION = 4
DUP_WINDOW = 1024
CLOCK = {111: 48000, 96: 90000, 0: 8000, 8: 8000, 9: 8000, 18: 8000, 26: 90000, 34: 90000}
LEGS = ("client", "peer")


def rtp_class_of(b0, b1):
    """RFC 7983 class of a random payload from its first byte, when it is certain. Random
    bytes starting 128-191 look like RTP/RTCP version 2, but whether the rest passes the
    relay's header checks (CC, X, padding, RFC 5761 PT ranges) is its own validation: those
    are ambiguous (rtp, rtcp or other) and only their sum is compared."""
    del b1
    if b0 <= 3 or 4 <= b0 <= 15:
        return "other"  # unassigned, or STUN without the magic cookie
    return None


class Stream:
    """One SSRC on one ingress leg."""

    def __init__(self, ssrc, pt, kind):
        self.ssrc, self.pt, self.kind = ssrc, pt, kind
        self.clock = CLOCK.get(pt)
        self.run = []  # probation: (seq, ts, t) of the current consecutive run
        self.confirmed = False
        self.first_t = None
        # banked totals of finished segments (before restarts)
        self.bank_expected = self.bank_received = self.bank_dups = 0
        self.restarts = 0
        self.out_of_order = 0
        self.jitter_q4 = 0
        self.jitter_updates = 0
        self.last_ts = None  # previous in-order packet: timestamp and arrival (RTP units)
        self.last_r = None
        self.seen = set()

    # -- A.1 state of the current segment
    def _init_segment(self, seq):
        self.base = seq
        self.ext_max = seq  # extended: base's cycle is 0
        self.bad_seq = SEQ_MOD + 1
        self.received = 0
        self.dups = 0
        self.seen = set()

    def _r(self, t):
        return ((t - self.first_t) * self.clock // 1_000_000_000) & 0xFFFFFFFF

    def _jitter(self, ts, t):
        """An in-order packet (it advanced the highest sequence number)."""
        if self.clock is None:
            return
        r = self._r(t)
        if self.last_ts is not None and ts != self.last_ts:
            d = ((r - self.last_r) - (ts - self.last_ts)) & 0xFFFFFFFF
            if d >= 1 << 31:
                d -= 1 << 32
            d = abs(d)
            if d < 450000:
                self.jitter_q4 += ((d << 4) - self.jitter_q4 + 8) >> 4
                self.jitter_updates += 1
        self.last_ts, self.last_r = ts, r

    def _ext_of(self, seq):
        """Extended sequence number of seq near ext_max."""
        max16 = self.ext_max & 0xFFFF
        udelta = (seq - max16) % SEQ_MOD
        if udelta < SEQ_MOD // 2:
            return self.ext_max + udelta
        return self.ext_max - (SEQ_MOD - udelta)

    def _count(self, ext):
        self.received += 1
        if ext in self.seen:
            self.dups += 1
        else:
            self.seen.add(ext)
            if len(self.seen) > 4 * DUP_WINDOW:
                lo = self.ext_max - DUP_WINDOW
                self.seen = {e for e in self.seen if e > lo}

    def packet(self, seq, ts, t):
        if self.first_t is None:
            self.first_t = t
        if not self.confirmed:
            if self.run and seq == (self.run[-1][0] + 1) % SEQ_MOD:
                self.run.append((seq, ts, t))
            else:
                self.run = [(seq, ts, t)]
            if len(self.run) < PROBATION:
                return
            self.confirmed = True
            self._init_segment(self.run[0][0])
            for i, (s, pts, pt_) in enumerate(self.run):
                self.ext_max = self.base + i
                self._count(self.ext_max)
                self._jitter(pts, pt_)
            self.run = []
            return
        max16 = self.ext_max & 0xFFFF
        udelta = (seq - max16) % SEQ_MOD
        if udelta < MAX_DROPOUT:
            ext = self.ext_max + udelta
            if udelta > 0:
                self.ext_max = ext
                self._count(ext)
                self._jitter(ts, t)
            else:
                self._count(ext)  # a copy of the highest: not in order, not below it
            return
        if udelta <= SEQ_MOD - MAX_MISORDER:
            if seq == self.bad_seq:
                # restart: bank the finished segment, start again at seq
                self.bank_expected += self.ext_max - self.base + 1
                self.bank_received += self.received
                self.bank_dups += self.dups
                self.restarts += 1
                self._init_segment(seq)
                self._count(seq)
                self._jitter(ts, t)
            else:
                self.bad_seq = (seq + 1) % SEQ_MOD
            return
        ext = self._ext_of(seq)
        self.out_of_order += 1
        self._count(ext)

    def result(self):
        if not self.confirmed:
            return None
        expected = self.bank_expected + self.ext_max - self.base + 1
        received = self.bank_received + self.received
        dups = self.bank_dups + self.dups
        unique = received - dups
        j = self.jitter_q4 >> 4
        return {
            "ssrc": self.ssrc, "payload_type": self.pt, "kind": self.kind,
            "clock_rate": self.clock,
            "packets_received": received, "packets_received_unique": unique,
            "packets_duplicated": dups, "packets_out_of_order": self.out_of_order,
            "packets_expected": expected, "packets_lost": expected - received,
            "packets_lost_net": expected - unique,
            "extended_highest_seq": self.ext_max, "seq_restarts_total": self.restarts,
            "jitter_rtp_units": j, "jitter_q4": self.jitter_q4,
            "jitter_seconds": (self.jitter_q4 / 16.0 / self.clock) if self.clock else None,
            "jitter_updates": self.jitter_updates,
        }


def median(v):
    v = sorted(v)
    if not v:
        return None
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def compute(lines):
    out = {"alloc": None, "legs": {}}
    streams = {leg: {} for leg in LEGS}
    legs = {leg: {"packets": 0, "bytes": 0, "by_class": {}, "unclassified_raw": 0,
                  "scripted_drops": 0} for leg in LEGS}
    req_rx = {}  # tid -> (side that received the request, time)
    rtt = {leg: [] for leg in LEGS}
    requests = {leg: 0 for leg in LEGS}
    for ln in lines:
        ln = ln.strip()
        if not ln:
            continue
        e = json.loads(ln)
        ev = e["ev"]
        if ev == "alloc":
            out["alloc"] = e
        elif ev == "drop":
            legs[e["dir"]]["scripted_drops"] += 1
        elif ev == "tx":
            leg = legs[e["dir"]]
            leg["packets"] += 1
            leg["bytes"] += e["size"]
            cls = e["class"]
            if cls == "raw":
                cls = rtp_class_of(e["b0"], e.get("b1", 0))
                if cls is None:
                    leg["unclassified_raw"] += 1
                    cls = "ambiguous"
            leg["by_class"][cls] = leg["by_class"].get(cls, 0) + 1
            if cls == "stun" and e.get("stun") == "req":
                requests[e["leg"]] += 1
            if e["class"] == "stun" and e.get("stun") == "resp":
                side, t_rx = req_rx.pop(e["tid"], (None, None))
                if side is not None:
                    rtt[e["leg"]].append((e["t"] - t_rx) / 1e9)
            if e["class"] == "rtp":
                key = e["ssrc"]
                s = streams[e["dir"]].get(key)
                if s is None:
                    s = streams[e["dir"]][key] = Stream(e["ssrc"], e["pt"], e["kind"])
                s.packet(e["seq"], e["ts"], e["t"])
        elif ev == "rx" and e.get("stun") == "req":
            req_rx[e["tid"]] = (e["at"], e["t"])
    for name in LEGS:
        res = [r for r in (s.result() for s in streams[name].values()) if r]
        leg = legs[name]
        leg["rtp_streams"] = res
        tot = {"streams": len(res)}
        for k_out, k_in in (("expected", "packets_expected"), ("received", "packets_received"),
                            ("lost", "packets_lost"), ("lost_net", "packets_lost_net"),
                            ("duplicates", "packets_duplicated"),
                            ("reordered", "packets_out_of_order"),
                            ("restarts", "seq_restarts_total")):
            tot[k_out] = sum(r[k_in] for r in res)
        tot["loss_ratio"] = (tot["lost_net"] / tot["expected"]) if tot["expected"] else None
        leg["rtp"] = tot
        samples = rtt[name]
        leg["rtt"] = {"requests": requests[name], "measurements": len(samples),
                      "median_seconds": median(samples),
                      "min_seconds": min(samples) if samples else None,
                      "max_seconds": max(samples) if samples else None,
                      "last_seconds": samples[-1] if samples else None}
        out["legs"][name] = leg
    return out


# ---- self test: hand-computed cases ----

def _feed(pkts, pt=111, kind="audio"):
    s = Stream(1, pt, kind)
    for p in pkts:
        s.packet(*p)
    return s.result()


def selftest():
    ms = 1_000_000
    fails = []

    def check(name, got, want):
        if got != want:
            fails.append(f"{name}: got {got}, want {want}")

    # 1. clean: 10 packets, 20 ms apart, ts step 960: nothing lost, jitter 0.
    r = _feed([(100 + i, 960 * i, i * 20 * ms) for i in range(10)])
    check("clean received", r["packets_received"], 10)
    check("clean expected", r["packets_expected"], 10)
    check("clean jitter", r["jitter_rtp_units"], 0)
    # 2. probation: 5, then 7, 8, 9, 10 -> first packet never counts; base 7.
    r = _feed([(5, 0, 0), (7, 1920, 40 * ms), (8, 2880, 60 * ms), (9, 3840, 80 * ms),
               (10, 4800, 100 * ms)])
    check("probation received", r["packets_received"], 4)
    check("probation expected", r["packets_expected"], 4)
    # 3. loss: 0..3, then 5, 6 (4 missing): expected 7, received 6, lost 1.
    r = _feed([(s, 960 * s, s * 20 * ms) for s in (0, 1, 2, 3, 5, 6)])
    check("loss lost", (r["packets_expected"], r["packets_lost"], r["packets_lost_net"]), (7, 1, 1))
    # 4. duplicate of 5 and reorder (7 before 6): received 9 for 8 expected, lost -1, net 0.
    seqs = [0, 1, 2, 3, 4, 5, 5, 7, 6]
    r = _feed([(s, 960 * s, i * 20 * ms) for i, s in enumerate(seqs)])
    check("dup/reorder", (r["packets_received"], r["packets_expected"], r["packets_lost"],
                          r["packets_lost_net"], r["packets_duplicated"],
                          r["packets_out_of_order"]), (9, 8, -1, 0, 1, 1))
    # 5. wrap: 65534, 65535, 0, 1, 2 -> extended highest 65538 from base 65534.
    r = _feed([(s % SEQ_MOD, 960 * i, i * 20 * ms) for i, s in enumerate(range(65534, 65539))])
    check("wrap", (r["packets_expected"], r["extended_highest_seq"]), (5, 65538))
    # 6. restart: 0..9, jump to 5010 (not counted), 5011 == bad_seq (restart), 5012.
    pk = [(s, 960 * s, s * 20 * ms) for s in range(10)]
    pk += [(5010, 960 * 10, 200 * ms), (5011, 960 * 11, 220 * ms), (5012, 960 * 12, 240 * ms)]
    r = _feed(pk)
    check("restart", (r["seq_restarts_total"], r["packets_expected"], r["packets_received"]),
          (1, 12, 12))
    # 7. jitter by hand: 48 kHz, packets 20 ms apart except the 5th arrives 1 ms late
    #    (48 units). D: 0,0,0,48,-48(abs 48),0 ... Q4: J=0 -> +((48<<4)-0+8)>>4 = 48 (q4) ->
    #    then ((768-48+8)>>4)=45 -> 93 -> 0-updates: J += (0 - J + 8) >> 4.
    times = [i * 20 * ms for i in range(8)]
    times[4] += 1 * ms
    r = _feed([(i, 960 * i, times[i]) for i in range(8)])
    j = 0
    for d in (0, 0, 0, 48, 48, 0, 0):
        j += ((d << 4) - j + 8) >> 4
    check("jitter q4", r["jitter_q4"], j)
    # 8. video: frame packets share ts; only the first of a frame updates, against the last
    #    in-order packet of the previous frame (libwebrtc): 3 packets 2.5 ms apart, 30 fps.
    pk = []
    seq = 0
    for f in range(4):
        for k in range(3):
            pk.append((seq, 3000 * f, (f * 100 // 3) * ms + k * 5 * ms // 2))
            seq += 1
    r = _feed(pk, pt=96, kind="video")
    jj = 0
    r_prev = None
    for f in range(1, 4):
        # arrival of the first packet of frame f vs the last of frame f-1, in 90 kHz units
        t_first = (f * 100 // 3) * ms
        t_last_prev = ((f - 1) * 100 // 3) * ms + 5 * ms
        d = abs((t_first * 90000 // 10**9 - t_last_prev * 90000 // 10**9) - 3000)
        jj += ((d << 4) - jj + 8) >> 4
    check("video jitter q4", r["jitter_q4"], jj)
    del r_prev
    # 9. late beyond MAX_MISORDER and big jumps never counted until confirmed by a follower.
    pk = [(s, 960 * s, s * 20 * ms) for s in range(10)] + [(4000, 0, 300 * ms), (10, 9600, 320 * ms)]
    r = _feed(pk)
    check("lone jump ignored", (r["packets_received"], r["packets_expected"]), (11, 11))
    if fails:
        for f in fails:
            print("FAIL:", f)
        return 1
    print("qosref selftest: all cases pass")
    return 0


def main(argv):
    if len(argv) == 2 and argv[1] == "--selftest":
        return selftest()
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        res = compute(f)
    json.dump(res, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
