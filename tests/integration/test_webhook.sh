#!/usr/bin/env bash
# test_webhook.sh: qos.webhook against local HTTP listeners (tests/tools/webhook_sink.py).
#   1. a listener that answers 200: a call with a scripted loss episode on the client leg
#      POSTs quality_degraded, quality_recovered and the call's record, in that order;
#   2. one that answers 503 twice, then 200: the record arrives on the third attempt, counted
#      as one sent and two retried;
#   3. one that takes 2 s per answer, with qos.webhook_queue: 1: four calls end at once, the
#      queue overflows and the drops are counted, while the relay goes on relaying and
#      answering (the webhook never holds up a worker).
. "$(dirname "$0")/lib.sh"
. "$TERN_SOURCE_DIR/tests/qos/qoslib.sh"
SINK="$TERN_SOURCE_DIR/tests/tools/webhook_sink.py"
SINK_PID=

stop_sink() { if [ -n "$SINK_PID" ]; then kill "$SINK_PID" 2>/dev/null || true; wait "$SINK_PID" 2>/dev/null || true; SINK_PID=; fi; }
trap 'stop_sink; qos_cleanup' EXIT

# start_sink NAME ARGS...: the listener; sets HOOK (its URL) and HOOKLOG.
start_sink() {
    local name=$1; shift
    HOOKLOG="$WORK/$name.hook.jsonl"
    : >"$HOOKLOG"
    "$PY" "$SINK" "$WORK/$name.port" "$HOOKLOG" "$@" &
    SINK_PID=$!
    for _ in $(seq 50); do [ -s "$WORK/$name.port" ] && break; sleep 0.1; done
    HOOK="http://127.0.0.1:$(cat "$WORK/$name.port")/hook"
}

# start_hooked QUEUE: ternd as qos_start_ternd does, with qos.webhook HOOK.
start_hooked() {
    RECORDS="$WORK/quality.jsonl"
    cat >"$WORK/tern.yaml" <<YAML
server: { realm: tern.test, workers: 2 }
listen:
  - { transport: udp, address: 127.0.0.1, port: 0 }
relay: { addresses: [127.0.0.1], ports: { min: 40000, max: 49999 } }
peers: { allow_loopback: true }
auth: { users: [ { name: alice, password: wonderland } ] }
qos: { enabled: true, record_file: "$RECORDS", webhook: "$HOOK", webhook_queue: $1 }
ops: { listen: "127.0.0.1:0" }
log: { level: info, format: json }
YAML
    start_ternd "$WORK/tern.yaml"
    U4=$(port_of udp 127.0.0.1)
    OPS_BASE="http://127.0.0.1:$(grep '"event":"ops_listening"' "$WORK/ternd.log" | head -1 | sed -E 's/.*"port":([0-9]+).*/\1/')"
}

metric() { curl -s "$OPS_BASE/metrics" | sed -nE "s/^$1 ([0-9]+)$/\1/p"; }

# wait_for SECONDS COMMAND...: until it succeeds.
wait_for() {
    local secs=$1; shift
    for _ in $(seq $((secs * 10))); do "$@" && return 0; sleep 0.1; done
    return 1
}
hook_lines_at_least() { [ "$(grep -c . "$HOOKLOG")" -ge "$1" ]; }
metric_is() { [ "$(metric "$1")" = "$2" ]; }

# ---- 1: the episode's two events and the record, to a listener that answers 200 ----
start_sink ok
start_hooked 256
gen_start ep --seed 31 --duration 12 --stream client:audio,seq=100,drop=20,window=1:9 \
    --stream peer:audio,seq=200 --hold 60
gen_wait_holding ep && gen_release ep
if wait_for 10 hook_lines_at_least 3; then
    "$PY" - "$HOOKLOG" >"$WORK/check.out" 2>&1 <<'PY' && pass "listener got: $(cat "$WORK/check.out")" || { fail "webhook bodies"; cat "$WORK/check.out" >&2; }
import json, sys
posts = [json.loads(l) for l in open(sys.argv[1])]
types = [p["body"]["type"] for p in posts]
assert types == ["quality_degraded", "quality_recovered", "call_quality"], types
assert all(p["content_type"] == "application/json" and p["status"] == 200 for p in posts)
d, r, c = (p["body"] for p in posts)
assert d["leg"] == "client" and d["reasons"] == ["loss"] and d["loss_ratio"] > 0.05, d
assert d["user"] == "alice" and d["realm"] == "tern.test" and d["id"] == c["id"], (d, c)
assert r["since"] == d["since"] and r["intervals"] >= 1, r
assert c["series"]["episodes"][0]["since"] == d["since"], c["series"]
print(", ".join(types))
PY
else
    fail "listener got $(grep -c . "$HOOKLOG") POSTs, wanted 3"
fi
[ "$(metric tern_webhook_sent_total)" = 3 ] && pass "tern_webhook_sent_total 3" || fail "sent_total $(metric tern_webhook_sent_total)"
[ "$(metric tern_webhook_dropped_total)" = 0 ] && pass "nothing dropped" || fail "dropped $(metric tern_webhook_dropped_total)"
stop_ternd
stop_sink

# ---- 2: 503 twice, then 200: retried with backoff ----
start_sink flaky --fail-first 2 --status 503
start_hooked 256
gen_start clean1 --seed 32 --duration 1 --stream client:audio --stream peer:audio --hold 60
gen_wait_holding clean1 && gen_release clean1
t0=$(date +%s%N)
if wait_for 15 metric_is tern_webhook_sent_total 1; then
    ms=$((($(date +%s%N) - t0) / 1000000))
    pass "the record was delivered after the failures (${ms} ms after the call ended)"
else
    fail "not delivered: sent $(metric tern_webhook_sent_total)"
fi
[ "$(metric tern_webhook_retried_total)" = 2 ] && pass "tern_webhook_retried_total 2" || fail "retried $(metric tern_webhook_retried_total)"
[ "$(metric tern_webhook_failed_total)" = 0 ] && pass "none failed" || fail "failed $(metric tern_webhook_failed_total)"
"$PY" - "$HOOKLOG" >"$WORK/check.out" 2>&1 <<'PY' && pass "listener: $(cat "$WORK/check.out")" || { fail "retried bodies"; cat "$WORK/check.out" >&2; }
import json, sys
posts = [json.loads(l) for l in open(sys.argv[1])]
assert [p["status"] for p in posts] == [503, 503, 200], posts
assert posts[0]["body"] == posts[1]["body"] == posts[2]["body"]
assert posts[2]["body"]["type"] == "call_quality"
# Backoff (relay/webhook.h): 0.5 s before the first retry, doubling: 1 s before the second.
gaps = [posts[1]["t"] - posts[0]["t"], posts[2]["t"] - posts[1]["t"]]
assert 0.45 <= gaps[0] <= 0.9 and 0.95 <= gaps[1] <= 1.6 and gaps[1] > 1.5 * gaps[0], gaps
print("503, 503, 200 for the same record, retried after %.2f s then %.2f s (backoff doubling)" % tuple(gaps))
PY
stop_ternd
stop_sink

# ---- 3: a slow listener and a queue of one: drops counted, relaying unaffected ----
start_sink slow --delay 2
start_hooked 1
for n in 1 2 3 4; do
    gen_start "c$n" --seed $((40 + n)) --duration 1 --stream client:audio --stream peer:audio --hold 60
done
for n in 1 2 3 4; do gen_wait_holding "c$n"; done
for n in 1 2 3 4; do kill -USR1 "${GEN_PID[c$n]}" 2>/dev/null || true; done
for n in 1 2 3 4; do gen_release "c$n"; done # each must exit 0: its allocation was deleted
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$OPS_BASE/healthz")
[ "$code" = 200 ] && pass "/healthz answers while the webhook is busy" || fail "/healthz: $code"
gen_start after --seed 50 --duration 1 --stream client:audio --stream peer:audio --hold 60
gen_wait_holding after && pass "a new call relays while the webhook is busy"
both() { [ $(($(metric tern_webhook_sent_total) + $(metric tern_webhook_dropped_total))) -ge 4 ]; }
if wait_for 15 both; then
    d=$(metric tern_webhook_dropped_total) s=$(metric tern_webhook_sent_total)
    [ "$d" -ge 1 ] && pass "queue of one: $s sent, $d dropped (tern_webhook_dropped_total)" ||
        fail "nothing dropped ($s sent)"
else
    fail "sent + dropped never reached 4: $(metric tern_webhook_sent_total) + $(metric tern_webhook_dropped_total)"
fi
grep -q '"event":"webhook_dropped"' "$WORK/ternd.log" && pass "webhook_dropped logged" || fail "no webhook_dropped event"
gen_release after
stop_ternd
grep -q '"event":"webhook_stopped"' "$WORK/ternd.log" && pass "webhook_stopped logged with its counts" || fail "no webhook_stopped"
stop_sink
finish
