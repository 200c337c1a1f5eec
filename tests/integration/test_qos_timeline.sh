#!/usr/bin/env bash
# test_qos_timeline.sh: a call goes bad on one leg and recovers. tern-mediagen sends real SRTP
# audio and video both ways for 32 s, with 10 % scripted loss on the client leg's audio from
# 10 s to 20 s only. Checked against the generator's truth (tests/qos/timelinecheck.py): the
# timeline's per-interval, per-leg RTP expected/lost and loss ratio; "poor" (leg client,
# reason loss) in exactly the intervals above the 1 % threshold; one quality_degraded and one
# quality_recovered event for the episode, none for the peer leg; the /metrics gauge 1 while
# it lasts and 0 after; `ternctl allocations ID --timeline` showing the same intervals; the
# quality record's series (its one episode) under 4 KB.
. "$(dirname "$0")/lib.sh"
. "$TERN_SOURCE_DIR/tests/qos/qoslib.sh"
TLCHECK="$TERN_SOURCE_DIR/tests/qos/timelinecheck.py"

gauge() { # gauge LEG REASON: tern_qos_poor_allocations now
    curl -s "$OPS_BASE/metrics" |
        sed -nE "s/^tern_qos_poor_allocations\{leg=\"$1\",reason=\"$2\"\} ([0-9]+)$/\1/p"
}
wait_event() { # wait_event NAME SECONDS
    for _ in $(seq $(($2 * 10))); do
        grep -q "\"event\":\"$1\"" "$WORK/ternd.log" && return 0
        sleep 0.1
    done
    return 1
}

qos_start_ternd
gen_start bad --seed 21 --duration 32 --peer-delay 20 \
    --stream client:audio,seq=1000,drop=10,window=10:20 --stream client:video,seq=2000 \
    --stream peer:audio,seq=3000 --stream peer:video,seq=4000

[ "$(gauge client loss)" = 0 ] && pass "gauge: no poor allocation before the loss" ||
    fail "gauge before the loss: $(gauge client loss)"
if wait_event quality_degraded 25; then
    pass "quality_degraded logged"
    g=$(gauge client loss)
    [ "$g" = 1 ] && pass "gauge tern_qos_poor_allocations{leg=client,reason=loss} 1 during the episode" ||
        fail "gauge during the episode: '$g', wanted 1"
    [ "$(gauge peer loss)" = 0 ] && pass "gauge: the peer leg is not poor" || fail "peer leg gauge $(gauge peer loss)"
else
    fail "no quality_degraded within 25 s"
fi
wait_event quality_recovered 25 && pass "quality_recovered logged" || fail "no quality_recovered within 25 s"
gen_wait_holding bad
g=$(gauge client loss)
[ "$g" = 0 ] && pass "gauge back to 0 after the episode" || fail "gauge after the episode: '$g'"

relayed=$(grep '"ev":"alloc"' "$WORK/bad.jsonl" | sed -E 's/.*"relayed":"([^"]+)".*/\1/')
id=$(curl -s "$OPS_BASE/api/v1/allocations" | "$PY" -c '
import json, sys
for e in json.load(sys.stdin)["allocations"]:
    if sys.argv[1] in e["relayed"]: print(e["id"])' "$relayed")
[ -n "$id" ] || { fail "allocation of $relayed not listed"; finish; }
code=$(curl -s -o "$WORK/timeline.json" -w '%{http_code}' "$OPS_BASE/api/v1/allocations/$id/timeline")
[ "$code" = 200 ] && pass "GET /api/v1/allocations/$id/timeline: 200" || fail "timeline: $code"
rc=0
"$PY" "$TLCHECK" "$WORK/bad.jsonl" "$WORK/timeline.json" "$WORK/ternd.log" >"$WORK/tl.out" 2>&1 || rc=$?
sed 's/^/    /' "$WORK/tl.out"
[ "$rc" = 0 ] && pass "timeline: $(grep -c '^ok:' "$WORK/tl.out") checks against the truth" ||
    fail "timeline: $(grep -c '^FAIL:' "$WORK/tl.out") mismatches (see above)"

# The API's other answers: unknown id 404, bad id 400; the summary has "poor": [].
code=$(curl -s -o /dev/null -w '%{http_code}' "$OPS_BASE/api/v1/allocations/99/timeline")
[ "$code" = 404 ] && pass "unknown allocation: 404" || fail "unknown allocation: $code"
code=$(curl -s -o /dev/null -w '%{http_code}' "$OPS_BASE/api/v1/allocations/12x/timeline")
[ "$code" = 400 ] && pass "bad id: 400" || fail "bad id: $code"
expect_out "summary carries \"poor\": [] after the episode" '"poor":\[\]' \
    curl -s "$OPS_BASE/api/v1/allocations/$id"

# ternctl prints the same series: as many rows as intervals, "!" on the bad ones' client loss.
"$TERNCTL" allocations "$id" --timeline --url "$OPS_BASE" >"$WORK/ctl.out" 2>&1 || fail "ternctl --timeline failed"
n_api=$("$PY" -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["timeline"]["intervals"]))' "$WORK/timeline.json")
bad_api=$("$PY" -c '
import json, sys
print(sum("loss" in i["client_leg"]["poor"] for i in json.load(open(sys.argv[1]))["timeline"]["intervals"]))' "$WORK/timeline.json")
n_ctl=$(grep -cE '^[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z ' "$WORK/ctl.out" || true)
bad_ctl=$(grep -cE 'client:loss' "$WORK/ctl.out" || true)
if [ "$n_ctl" = "$n_api" ] && [ "$bad_ctl" = "$bad_api" ] && [ "$bad_api" -ge 2 ]; then
    pass "ternctl --timeline: $n_ctl rows, $bad_ctl poor for loss, as the API says"
else
    fail "ternctl --timeline: $n_ctl rows / $bad_ctl poor, API $n_api / $bad_api"
    sed 's/^/    /' "$WORK/ctl.out" >&2
fi
# ... and the same values, row by row: packets and loss % of both legs.
"$PY" - "$WORK/timeline.json" "$WORK/ctl.out" >"$WORK/ctlcmp.out" 2>&1 <<'EOF' &&
import json, re, sys
ivs = json.load(open(sys.argv[1]))["timeline"]["intervals"]
rows = [l.split() for l in open(sys.argv[2]) if re.match(r"^\d{2}:\d{2}:\d{2}\.\d{3}Z ", l)]
assert len(rows) == len(ivs), (len(rows), len(ivs))
def num(cell):
    return None if cell == "-" else float(cell.lstrip("!"))
n = 0
for iv, r in zip(ivs, rows):
    for leg, base in (("client_leg", 1), ("peer_leg", 8)):
        api = iv[leg]
        assert num(r[base]) == api["packets"], (iv["start"], leg, r[base], api["packets"])
        lr = api.get("loss_ratio")
        got = num(r[base + 2])
        if lr is None:
            assert got is None, (iv["start"], leg, r[base + 2])
        else:
            assert abs(got - lr * 100) <= 0.006, (iv["start"], leg, r[base + 2], lr)
        n += 1
print(f"{len(rows)} rows: packets and loss % of both legs equal to the API's ({n} leg-intervals)")
EOF
    pass "ternctl --timeline values: $(cat "$WORK/ctlcmp.out")" || { fail "ternctl --timeline values"; cat "$WORK/ctlcmp.out" >&2; }
sed -n '1,12p' "$WORK/ctl.out" | sed 's/^/    /'

gen_release bad
for _ in $(seq 50); do grep -qF "\"$relayed\"" "$RECORDS" 2>/dev/null && break; sleep 0.1; done
"$PY" - "$RECORDS" "$relayed" >"$WORK/rec.out" 2>&1 <<'PY' && pass "record: $(cat "$WORK/rec.out")" || { fail "record"; cat "$WORK/rec.out" >&2; }
import json, sys
line = [l for l in open(sys.argv[1]) if sys.argv[2] in l][0]
r = json.loads(line)
s = r["series"]
assert len(line) <= 4096, len(line)
assert s["points"] >= 7 and s["point_seconds"] == 5.0, s
eps = s["episodes"]
assert len(eps) == 1 and eps[0]["leg"] == "client" and eps[0]["reasons"] == ["loss"], eps
assert max(v for v in s["client_leg"]["loss_ratio"] if v is not None) > 0.05, s["client_leg"]
assert all(v in (None, 0) for v in s["peer_leg"]["loss_ratio"]), s["peer_leg"]
print("%d bytes, %d points, episode %s..%s" % (len(line), s["points"], eps[0]["since"], eps[0]["until"]))
PY
stop_ternd
finish
