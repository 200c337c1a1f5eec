#!/usr/bin/env bash
# test_ternctl_top.sh: ternctl allocations / allocations ID / top --once against ternd's ops API
# while ternprobe relays SRTP through two allocations: the table lists both with their relayed
# addresses and measured values, --json round-trips to the API's answer, top shows rates, and
# token errors and an unreachable URL are named.
. "$(dirname "$0")/lib.sh"
: "${TERN_BUILD_DIR:?TERN_BUILD_DIR must point at the build tree (set by CTest)}"
CTL="$TERN_BUILD_DIR/ops/ternctl"
PROBE="$TERN_BUILD_DIR/ops/ternprobe"
[ -x "$CTL" ] || { fail "ternctl not built ($CTL)"; finish; }
[ -x "$PROBE" ] || { fail "$PROBE not built: install libnice-dev and libsrtp2-dev"; finish; }
TOKEN='top-token-Quokka-7'

RELAY_MIN=$((20000 + (RANDOM % 110) * 100))
cat >"$WORK/tern.yaml" <<YAML
server: { realm: tern.test, workers: 2 }
listen:
  - { transport: udp, address: 127.0.0.1, port: 0 }
relay: { addresses: [127.0.0.1], ports: { min: $RELAY_MIN, max: $((RELAY_MIN + 199)) } }
peers: { allow_loopback: true }
allocation: { max_per_user: 1000 }
auth: { users: [ { name: alice, password: wonderland } ] }
qos: { enabled: true }
ops: { listen: "127.0.0.1:0", token: $TOKEN }
log: { level: info, format: json }
YAML
start_ternd "$WORK/tern.yaml"
for _ in $(seq 50); do grep -q '"event":"ops_listening"' "$WORK/ternd.log" && break; sleep 0.1; done
OPS=$(grep '"event":"ops_listening"' "$WORK/ternd.log" | tail -1 | sed -E 's/.*"port":([0-9]+).*/\1/')
U4=$(port_of udp 127.0.0.1)
URL="http://127.0.0.1:$OPS"

# Traffic: ternprobe for 12 s in the background (two allocations, SRTP both ways).
"$PROBE" --server "127.0.0.1:$U4" --user alice --password wonderland --duration 12 >"$WORK/probe.out" 2>"$WORK/probe.err" &
PROBE_PID=$!
for _ in $(seq 50); do grep -q 'sending SRTP' "$WORK/probe.err" && break; sleep 0.2; done
sleep 4 # past the relay's 2 s clock-rate inference: jitter is known

export TERN_TOKEN=$TOKEN
expect_out "allocations lists both allocations with the client, relayed address, QoS columns" \
    'LOSS% C/P' "$CTL" allocations --url "$URL"
n=$(grep -cE '^[0-9]+ +alice +udp +127\.0\.0\.1:[0-9]+ +127\.0\.0\.1:[0-9]+ ' "$WORK/out" || true)
[ "$n" = 2 ] && pass "two allocation rows" || { fail "wanted 2 allocation rows, got $n"; cat "$WORK/out" >&2; }
# Measured values, not dashes: loss 0.00/0.00 both legs, jitter and RTT numbers.
grep -E '^[0-9]+ +alice ' "$WORK/out" | grep -qE ' 0\.00/0\.00 +[0-9.]+/[0-9.]+ +[0-9.]+/[0-9.]+/[0-9.]+$' &&
    pass "rows carry loss 0.00%, jitter and RTT values" || { fail "no measured QoS in the rows"; cat "$WORK/out" >&2; }

# --json round-trips: the same allocations as curl gets from the API.
"$CTL" allocations --url "$URL" --json >"$WORK/ctl.json" && curl -s -H "Authorization: Bearer $TOKEN" \
    "$URL/api/v1/allocations" >"$WORK/api.json"
if python3 - "$WORK/ctl.json" "$WORK/api.json" <<'PY'; then
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
ids = lambda j: sorted(e["id"] for e in j["allocations"])
assert ids(a) == ids(b) and len(ids(a)) == 2, (ids(a), ids(b))
assert set(a["allocations"][0]) == set(b["allocations"][0])
PY
    pass "allocations --json is the API's answer (same ids and fields)"
else fail "allocations --json differs from the API"; fi
ID=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["allocations"][0]["id"])' "$WORK/ctl.json")
expect_out "allocations $ID: detail with peer flows and RTP streams" 'rtp ssrc [0-9a-f]{8} pt 111 audio' \
    "$CTL" allocations "$ID" --url "$URL"
grep -q 'rtp ssrc [0-9a-f]\{8\} pt 96 video' "$WORK/out" && pass "detail shows the video stream" || fail "no video stream in the detail"
"$CTL" allocations "$ID" --url "$URL" --json | python3 -c 'import json,sys; j=json.load(sys.stdin); assert j["id"]=="'"$ID"'" and j["peers"]' &&
    pass "allocations ID --json" || fail "allocations ID --json"

# top --once: one frame, no escape codes, totals with rates, both allocations sorted.
expect_out "top --once: header with totals and rates" \
    '^allocations 2 \(udp 2, tcp 0, tls 0\)  relayed [0-9.]+k? pkt/s  [0-9.]+[kM]? bit/s' \
    "$CTL" top --once --interval 1 --url "$URL"
if grep -q $'\033' "$WORK/out"; then fail "top --once printed escape codes"; else pass "top --once: no escape codes"; fi
rows=$(grep -cE '^[0-9]+ +alice +udp .* [0-9.]+ +[0-9.]+[kM]? +1 ' "$WORK/out" || true)
[ "$rows" = 2 ] && pass "top: two rows with pkt/s and bit/s" || { fail "top rows ($rows)"; cat "$WORK/out" >&2; }
expect_out "top --count 2 (not a terminal: no escape codes, two frames)" 'ternctl top' \
    "$CTL" top --count 2 --interval 0.5 --url "$URL"
[ "$(grep -c '^ternctl top' "$WORK/out")" = 2 ] && pass "two frames" || fail "top --count 2 frames"

# Errors: wrong token, no token, unreachable URL, bad --sort: clear and non-zero.
unset TERN_TOKEN
rc=0; "$CTL" allocations --url "$URL" --token wrong-token >"$WORK/out" 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -q '401: the token was refused' "$WORK/out" && pass "wrong token: exit 1, named" ||
    { fail "wrong token (exit $rc)"; cat "$WORK/out" >&2; }
rc=0; "$CTL" allocations --url "$URL" >"$WORK/out" 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -q '401: the API wants a token' "$WORK/out" && pass "no token: exit 1, named" ||
    { fail "no token (exit $rc)"; cat "$WORK/out" >&2; }
rc=0; "$CTL" allocations --url "http://127.0.0.1:$(free_udp_port)" >"$WORK/out" 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -q 'cannot connect' "$WORK/out" && pass "unreachable URL: exit 1 naming it" ||
    { fail "unreachable URL (exit $rc)"; cat "$WORK/out" >&2; }
rc=0; "$CTL" allocations --sort nope >"$WORK/out" 2>&1 || rc=$?
[ "$rc" = 2 ] && pass "bad --sort: usage error (2)" || fail "bad --sort exit $rc"
# -c: the URL and token come from ternd's configuration (with the port it got: ours says 0).
sed "s/127.0.0.1:0\"/127.0.0.1:$OPS\"/" "$WORK/tern.yaml" >"$WORK/ctl.yaml"
expect_out "-c FILE: URL and token from the config" 'alice +udp' "$CTL" -c "$WORK/ctl.yaml" allocations

wait "$PROBE_PID" && pass "ternprobe (the traffic) succeeded" || { fail "ternprobe failed"; tail -3 "$WORK/probe.err" >&2; }
stop_ternd
finish
