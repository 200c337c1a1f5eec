#!/usr/bin/env python3
"""report.py RUN_DIR OUT_DIR QUICK: turn the raw tern-loadgen results of tests/bench/run into
latest.json, latest.md, latency.dat/latency.gp (gnuplot) and the table of ratios on stdout."""
import json
import os
import platform
import subprocess
import sys
import time

run, out, quick = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
SERVERS = ["ternd", "ternd-noqos", "coturn", "pion", "fwd"]
CMP = ("ternd", "coturn", "pion", "fwd")  # the table's value columns; ratios are ternd/each


def load(name):
    path = os.path.join(run, name + ".json")
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        sys.stderr.write(f"warning: {name}: {e}\n")
        return None


def first_step(r):
    return r["steps"][0] if r and r.get("steps") else None


def ratio(a, b):
    return a / b if a is not None and b else None


def fmt(v, nd=2):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


raw = {n[:-5]: load(n[:-5]) for n in sorted(os.listdir(run)) if n.endswith(".json") and n != "perf_load.json"}

# ---- 1. ladder: latency against offered load; saturation ----
ladder = {}
for s in ["direct"] + SERVERS:
    r = raw.get("ladder_" + s)
    if not r:
        continue
    steps = r.get("steps", [])
    ok = [st for st in steps if st["loss_ratio"] <= 0.01 and st["offered_actual_pps"] >= 0.95 * st["offered_pps"]]
    sat = max((st["offered_pps"] for st in ok), default=None)
    ladder[s] = {"steps": steps, "saturation_pps": sat}


def step_at(s, rate):
    for st in ladder.get(s, {}).get("steps", []):
        if st["offered_pps"] == rate:
            return st
    return None


def nearest_step(s, rate):
    steps = [st for st in ladder.get(s, {}).get("steps", []) if st["offered_pps"] <= rate]
    return steps[-1] if steps else None


light_rate = min((st["offered_pps"] for st in ladder.get("ternd", {}).get("steps", [])), default=None)
latency = {}
for s in SERVERS:
    if s not in ladder:
        continue
    light = step_at(s, light_rate)
    dl = step_at("direct", light_rate)
    sat = ladder[s]["saturation_pps"]
    heavy = nearest_step(s, sat / 2) if sat else None
    dh = step_at("direct", heavy["offered_pps"]) if heavy else None
    e = {"saturation_pps": sat}
    for tag, st, d in (("light", light, dl), ("half_saturation", heavy, dh)):
        if not st:
            continue
        e[tag] = {
            "offered_pps": st["offered_pps"],
            "loss_ratio": st["loss_ratio"],
            "rtt_us": st["rtt_us"],
            "direct_rtt_us": d["rtt_us"] if d else None,
            "added_p50_us": st["rtt_us"]["p50"] - d["rtt_us"]["p50"] if d else None,
            "added_p99_us": st["rtt_us"]["p99"] - d["rtt_us"]["p99"] if d else None,
        }
    latency[s] = e

# ---- 2-4. CPU per relayed packet ----
def rounds_of(name):
    """The runs of one scenario and server: NAME, then NAME.r2, NAME.r3 ... (TERN_BENCH_ROUNDS)."""
    runs = [raw[name]] if raw.get(name) else []
    k = 2
    while name + f".r{k}" in raw:
        if raw[name + f".r{k}"]:
            runs.append(raw[name + f".r{k}"])
        k += 1
    return runs


def cpu(prefix, servers):
    res = {}
    for s in servers:
        steps = [st for st in (first_step(r) for r in rounds_of(prefix + s)) if st and st.get("us_per_pkt")]
        # the median round by CPU per packet stands for the server (its latency and loss with it)
        steps.sort(key=lambda st: st["us_per_pkt"])
        st = steps[(len(steps) - 1) // 2] if steps else None
        if st:
            res[s] = {k: st.get(k) for k in ("offered_pps", "offered_actual_pps", "relayed_pps", "loss_ratio",
                                          "us_per_pkt", "server_cpu_util", "sent", "received",
                                          "server_core_other_util")}
            res[s]["rtt_us"] = st["rtt_us"]
            res[s]["rounds"] = len(steps)
            res[s]["us_per_pkt_rounds"] = [x["us_per_pkt"] for x in steps]
    return res


fixed = cpu("fixed_", SERVERS)
flood = cpu("flood_", SERVERS + ["fwd-gso"])
media = cpu("media_", SERVERS)

# ---- 5-6. allocations ----
setup = {}
for s in ("ternd", "coturn", "pion"):
    r = raw.get("setup_" + s)
    if r:
        setup[s] = {k: r.get(k) for k in ("allocs", "ready", "failed", "setup_s", "setup_rate", "setup_us_per_alloc",
                                          "rss_before_kb", "rss_after_kb", "rss_per_alloc_kb", "server_fds_after", "errors")}
concurrent = {}
for s in ("ternd", "coturn", "pion"):
    r = raw.get("concurrent_" + s)
    if r:
        c = {k: r.get(k) for k in ("allocs", "ready", "failed", "setup_rate", "rss_before_kb", "rss_after_kb",
                                   "rss_per_alloc_kb", "server_fds_after", "flood_s", "rss_after_flood_kb",
                                   "errors")}
        if r.get("rss_after_flood_kb") and r.get("rss_after_kb"):
            c["flood_rss_growth_kb"] = r["rss_after_flood_kb"] - r["rss_after_kb"]
        concurrent[s] = c

# ---- 9. valid stream under an unauthenticated flood, limit off and on ----
unauth = {}
for mode in ("off", "on"):
    st, fl = first_step(raw.get("unauth_" + mode)), raw.get(f"unauth_{mode}_flood")
    if st:
        unauth[mode] = {"stream_sent": st["sent"], "stream_loss": st["loss"], "stream_loss_ratio": st["loss_ratio"],
                        "stream_pps": st["offered_actual_pps"], "server_cpu_util": st.get("server_cpu_util"),
                        "flood_sent": fl and fl.get("sent"), "flood_pps": fl and fl.get("rate_pps")}


def g(d, *path):
    for p in path:
        if d is None:
            return None
        d = d.get(p) if isinstance(d, dict) else None
    return d


# ---- ratios and targets ----
rows = []  # (metric, ternd, coturn, pion, fwd, ternd/coturn, ternd/pion, ternd/fwd, target, verdict)
HDR = ["metric", "ternd", "coturn", "pion", "fwd", "ternd/coturn", "ternd/pion", "ternd/fwd", "target", "verdict"]


def row(metric, vals, target=None, ok=None, nd=2):
    """vals: {server: value} for the CMP columns (missing: -)."""
    v = [vals.get(s) for s in CMP]
    rows.append([metric] + [fmt(x, nd) for x in v] + [fmt(ratio(v[0], x)) for x in v[1:]] +
                [target or "", "" if ok is None else ("PASS" if ok else "FAIL")])


def each(d, *path, servers=CMP):
    return {s: g(d, s, *path) for s in servers}


v = each(fixed, "us_per_pkt")
t, c, f = v["ternd"], v["coturn"], v["fwd"]
row(f"server us/relayed pkt @{g(fixed, 'ternd', 'offered_pps') or '-'} pps, 100 allocs", v,
    "<= 0.5x coturn, <= 1.1x fwd", (t is not None and c and f and t <= 0.5 * c and t <= 1.1 * f))
tq, tn = g(fixed, "ternd", "us_per_pkt"), g(fixed, "ternd-noqos", "us_per_pkt")
row("  ternd QoS on / off (us/pkt; coturn column: off)", {"ternd": tq, "coturn": tn}, "on <= 1.1x off",
    (tq is not None and tn and tq <= 1.1 * tn))
row("relayed pkts per server CPU-second", {s: x and 1e6 / x for s, x in v.items()}, nd=0)
v = each(fixed, "loss_ratio")
row(f"  loss ratio @{g(fixed, 'ternd', 'offered_pps') or '-'} pps", v, nd=5)
v = each(flood, "us_per_pkt")
fg = g(flood, "fwd-gso", "us_per_pkt")
row("single-flow flood us/pkt (fwd column: plain)", v)
t = v["ternd"]
row("single-flow flood us/pkt vs fwd --gso", {"ternd": t, "fwd": fg}, "<= 2x fwd-gso",
    (t is not None and fg and t <= 2 * fg))
row("single-flow flood relayed pps", each(flood, "relayed_pps"), nd=0)
v = each(media, "us_per_pkt")
t, c = v["ternd"], v["coturn"]
ml = g(media, "ternd", "loss_ratio")
row("media 1000x50pps x200B us/pkt", v, "<= 0.5x coturn, 0 loss", (t is not None and c and t <= 0.5 * c and ml == 0))
row("media loss ratio", each(media, "loss_ratio"), nd=5)
row("saturation (highest step, loss <= 1%)", each(ladder, "saturation_pps"), nd=0)
for tag, lab in (("light", "light"), ("half_saturation", "half saturation")):
    for p in ("p50", "p99", "p999"):
        v = each(latency, tag, "rtt_us", p)
        t, c = v["ternd"], v["coturn"]
        rate = g(latency, "ternd", tag, "offered_pps")
        target, ok = None, None
        if tag == "light" and p == "p50":
            target, ok = "<= coturn/1.5", (t is not None and c and t <= c / 1.5)
        row(f"RTT {p} us, {lab} (ternd @{rate} pps)", v, target, ok, nd=1)
    for p in ("p50", "p99"):
        v = each(latency, tag, f"added_{p}_us")
        t = v["ternd"]
        target, ok = None, None
        if tag == "half_saturation":
            lim = 15 if p == "p50" else 50
            target, ok = f"<= {lim} us", (t is not None and t <= lim)
        row(f"  added by relay {p} us, {lab}", v, target, ok, nd=1)
v = each(setup, "setup_rate")
t = v["ternd"]
row("allocs/s (Allocate+401+Allocate+ChannelBind)", v, ">= 5000/s", (t is not None and t >= 5000), nd=0)
row("server CPU us per allocation set-up", each(setup, "setup_us_per_alloc"), nd=1)
v = each(concurrent, "rss_per_alloc_kb")
t = v["ternd"]
row("RSS KB per allocation (concurrent run, allocations held)", v, "<= 4 KB", (t is not None and t <= 4))
v = each(concurrent, "ready")
t = v["ternd"]
n = g(concurrent, "ternd", "allocs")
row(f"concurrent allocations ready (of {n})", v, ">= 50000", (t is not None and t >= 50000), nd=0)
row("  server open fds when the RSS was read", each(concurrent, "server_fds_after"), nd=0)
v = each(concurrent, "flood_rss_growth_kb")
t = v["ternd"]
row("RSS growth KB under invalid flood", v, "flat", (t is not None and t <= 1024), nd=0)
for mode, lab in (("off", "no limit"), ("on", "auth.unauthenticated_* defaults")):
    fp = g(unauth, mode, "flood_pps")
    t = g(unauth, mode, "stream_loss_ratio")
    row(f"valid 20k pps stream loss ratio, unauth flood {fmt(fp, 0)}/s, {lab}", {"ternd": t},
        "< 0.01" if mode == "on" else None, (t is not None and t < 0.01) if mode == "on" else None, nd=4)

# Interference: busy time of the server's core that was not the server's (other processes).
noisy = []
for name, r in raw.items():
    for st in (r or {}).get("steps", []):
        o = st.get("server_core_other_util", 0)
        if o > 0.05:
            noisy.append(f"{name}@{st['offered_pps']:.0f}: {100 * o:.0f}% of CPU 0 was other work")

cpu_model = ""
try:
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
except OSError:
    pass


def version(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=5).stdout.strip().splitlines()[0]
    except Exception:
        return ""


result = {
    "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    "quick": quick,
    "machine": {"kernel": platform.release(), "cpu": cpu_model, "ncpu": os.cpu_count(),
                "coturn": version(["turnserver", "--version"]),
                "pion": "pion/turn " + version(["dpkg-query", "-W", "-f=${Version}", "golang-github-pion-turn.v2-dev"])
                + ", " + version(["go", "version"])},
    "method": {
        "server_cpu": "sum of /proc/PID/task/*/schedstat run time over the measured window (server pinned to CPU 0)",
        "us_per_pkt": "server CPU us / packets relayed in either direction in the window (counted at the echo peers and the clients)",
        "rtt": "client send -> relay -> in-process echo peer -> relay -> client, CLOCK_MONOTONIC, 100 ns buckets",
        "added_latency": "percentile through the server minus the same percentile of --direct at the same offered load",
        "saturation": "highest ladder step with loss <= 1% and the offered rate reached",
    },
    "ladder": ladder, "latency": latency, "fixed": fixed, "flood": flood, "media": media,
    "setup": setup, "concurrent": concurrent, "unauth_flood": unauth,
    "interference": noisy,
    "table": [dict(zip(HDR, r)) for r in rows],
    "raw": raw,
}
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "latest.json"), "w") as fh:
    json.dump(result, fh, indent=1)

hdr = HDR
md = [f"# Tern benchmark ({result['when']}{', quick' if quick else ''})", "",
      f"{cpu_model}, {os.cpu_count()} CPUs, Linux {platform.release()}, {result['machine']['coturn']}, "
      f"{result['machine']['pion']}; server pinned to CPU 0, tern-loadgen to CPU 1, loopback. "
      "pion = tests/bench/pion (pion/turn, one SO_REUSEPORT listener per core: 1). "
      "fwd = tern-fwd (bare recvmmsg/sendmmsg).", "",
      "| " + " | ".join(hdr) + " |", "|" + "---|" * len(hdr)]
md += ["| " + " | ".join(r) + " |" for r in rows]
if noisy:
    md += ["", "**Warning: other work ran on the server's core during these runs; their figures are not "
           "trustworthy:** " + "; ".join(noisy)]
nr = max((v.get("rounds", 1) for d in (fixed, flood, media) for v in d.values()), default=1)
if nr > 1:
    md += ["", f"## CPU per relayed packet over {nr} interleaved rounds (us/pkt: median, min-max)", "",
           "| scenario | " + " | ".join(SERVERS) + " |", "|---|" + "---|" * len(SERVERS)]
    for lab, d in (("fixed 50k pps", fixed), ("single-flow flood", flood), ("media", media)):
        cells = []
        for s in SERVERS:
            r = d.get(s, {}).get("us_per_pkt_rounds") or []
            cells.append(f"{d[s]['us_per_pkt']:.2f} ({min(r):.2f}-{max(r):.2f})" if r else "-")
        md.append(f"| {lab} | " + " | ".join(cells) + " |")
md += ["", "## Latency against offered load (RTT us, p50 / p99 / p99.9, loss)", "",
       "| offered pps | " + " | ".join(ladder.keys()) + " |", "|---|" + "---|" * len(ladder)]
rates = sorted({st["offered_pps"] for v in ladder.values() for st in v["steps"]})
for rt in rates:
    cells = []
    for s in ladder:
        st = step_at(s, rt)
        cells.append(f"{st['rtt_us']['p50']:.0f} / {st['rtt_us']['p99']:.0f} / {st['rtt_us']['p999']:.0f}, "
                     f"{100 * st['loss_ratio']:.2f}%" if st else "-")
    md.append(f"| {rt:.0f} | " + " | ".join(cells) + " |")
with open(os.path.join(out, "latest.md"), "w") as fh:
    fh.write("\n".join(md) + "\n")

# gnuplot: RTT p50 and p99 against offered load, one line per server.
with open(os.path.join(out, "latency.dat"), "w") as fh:
    for s, v in ladder.items():
        fh.write(f'# "{s}"\n')
        for st in v["steps"]:
            if st["received"]:
                fh.write(f"{st['offered_actual_pps']:.0f} {st['rtt_us']['p50']:.2f} {st['rtt_us']['p99']:.2f} "
                         f"{st['loss_ratio']:.6f}\n")
        fh.write("\n\n")
plots = []
for i, s in enumerate(ladder):
    plots.append(f"'latency.dat' index {i} using 1:2 with linespoints lw 2 lc {i + 1} pt 7 title '{s} p50'")
    plots.append(f"'latency.dat' index {i} using 1:3 with linespoints lw 1 lc {i + 1} dt 2 pt 6 title '{s} p99'")
with open(os.path.join(out, "latency.gp"), "w") as fh:
    fh.write(f"""set terminal pngcairo size 1100,700 noenhanced
set output '{os.path.join(out, "latency.png")}'
cd '{out}'
set title 'RTT through the relay against offered load (100 allocations, 160 B ChannelData; server on 1 core)'
set xlabel 'offered load (packets/s, each relayed twice)'
set ylabel 'RTT (us)'
set logscale y
set grid
set key left top
plot {', '.join(plots)}
""")

w = [max(len(str(r[i])) for r in rows + [hdr]) for i in range(len(hdr))]
print("  ".join(h.ljust(w[i]) for i, h in enumerate(hdr)))
for r in rows:
    print("  ".join(str(x).ljust(w[i]) for i, x in enumerate(r)))
if noisy:
    print("WARNING: other work ran on the server's core (figures not trustworthy):")
    for n_ in noisy:
        print("  " + n_)
if nr > 1:
    print(f"CPU per relayed packet over {nr} interleaved rounds (us/pkt, median and range):")
    for lab, d in (("fixed", fixed), ("flood", flood), ("media", media)):
        print(f"  {lab:6}" + "".join(
            f"  {s} {d[s]['us_per_pkt']:.2f} ({min(d[s]['us_per_pkt_rounds']):.2f}-{max(d[s]['us_per_pkt_rounds']):.2f})"
            for s in SERVERS if d.get(s, {}).get("us_per_pkt_rounds")))
print(f"wrote {out}/latest.json, {out}/latest.md")
