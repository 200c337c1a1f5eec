#!/usr/bin/env bash
# test_aiortc.sh: the relay's QoS numbers against a real WebRTC stack's getStats. Two aiortc
# peers (tests/interop/aiortc_call.py) call each other through ternd with relay candidates
# only: A sends Opus and VP8 to B, B sends Opus to A, and A drops 3 % of its audio RTP before
# SRTP (real sequence gaps). The senders then pause; with nothing in flight, each receiver's
# inbound-rtp (packetsReceived, packetsLost, jitter) is compared with the same SSRC in the
# relay's API detail (the sender's allocation, from_client, and the receiver's, from_peer),
# and each end's ICE round-trip time with the relay's path RTT (client leg + peer leg).
. "$(dirname "$0")/lib.sh"
: "${TERN_SOURCE_DIR:?TERN_SOURCE_DIR must point at the source tree (set by CTest)}"
CALL="$TERN_SOURCE_DIR/tests/interop/aiortc_call.py"
# Debian's python3 (python3-aiortc is installed for it), even when another python3 comes first
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3
command -v curl >/dev/null || { fail "curl missing (Debian package curl)"; finish; }
if ! "$PY" -c 'import aiortc, aioice' 2>"$WORK/import.err"; then
    fail "aiortc missing for $PY (Debian package python3-aiortc): $(tail -1 "$WORK/import.err")"
    finish
fi
LOSS=${TERN_AIORTC_LOSS:-0.03}
DURATION=${TERN_AIORTC_SECONDS:-10}

RELAY_MIN=$((20000 + (RANDOM % 110) * 100))
cat >"$WORK/tern.yaml" <<YAML
server: { realm: tern.test, workers: 2 }
listen:
  - { transport: udp, address: 127.0.0.1, port: 0 }
relay: { addresses: [127.0.0.1], ports: { min: $RELAY_MIN, max: $((RELAY_MIN + 99)) } }
peers: { allow_loopback: true }
auth: { users: [ { name: alice, password: wonderland } ] }
qos: { enabled: true }
ops: { listen: "127.0.0.1:0" }
log: { level: info, format: json }
YAML
start_ternd "$WORK/tern.yaml"
U4=$(port_of udp 127.0.0.1)
OPS=$(grep '"event":"ops_listening"' "$WORK/ternd.log" | head -1 | sed -E 's/.*"port":([0-9]+).*/\1/')
[ -n "$U4" ] && [ -n "$OPS" ] || { fail "ports not logged"; finish; }
API="http://127.0.0.1:$OPS"

# The call: it prints its JSON once the stats are taken, then holds until SIGUSR1.
"$PY" "$CALL" --server "127.0.0.1:$U4" --user alice --password wonderland \
    --duration "$DURATION" --loss "$LOSS" --hold 30 --api "$API" >"$WORK/call.json" 2>"$WORK/call.err" &
CALL_PID=$!
trap 'kill "$CALL_PID" 2>/dev/null || true; cleanup' EXIT
for _ in $(seq 400); do
    [ -s "$WORK/call.json" ] && break
    kill -0 "$CALL_PID" 2>/dev/null || break
    sleep 0.1
done

# The relay's view right after getStats: the list, then the detail of every allocation.
ok_api=1
if [ -s "$WORK/call.json" ] && curl -sf -o "$WORK/list.json" "$API/api/v1/allocations"; then
    for id in $("$PY" -c 'import json,sys; [print(e["id"]) for e in json.load(open(sys.argv[1]))["allocations"]]' \
        "$WORK/list.json"); do
        curl -sf -o "$WORK/detail.$id.json" "$API/api/v1/allocations/$id" || ok_api=0
    done
else
    ok_api=0
fi
kill -USR1 "$CALL_PID" 2>/dev/null || true
CALL_RC=0
wait "$CALL_PID" || CALL_RC=$?
trap cleanup EXIT

if [ "$CALL_RC" -ne 0 ] || ! [ -s "$WORK/call.json" ]; then
    fail "aiortc call exited $CALL_RC: $(head -c 600 "$WORK/call.json" 2>/dev/null)"
    sed 's/^/    /' "$WORK/call.err" | tail -30 >&2
    finish
fi
pass "aiortc call connected over relay candidates only and ended cleanly"
[ "$ok_api" -eq 1 ] || { fail "GET $API/api/v1/allocations[/{id}] failed during the call"; finish; }

rc=0
"$PY" "$TERN_SOURCE_DIR/tests/interop/aiortc_compare.py" "$WORK/call.json" "$WORK/list.json" "$WORK"/detail.*.json \
    >"$WORK/cmp.out" 2>&1 || rc=$?
sed 's/^/    /' "$WORK/cmp.out"
if [ "$rc" -eq 0 ]; then
    pass "aiortc getStats and the relay agree: $(grep -c '^ok:' "$WORK/cmp.out") checks"
else
    fail "aiortc getStats vs the relay: $(grep -c '^FAIL:' "$WORK/cmp.out") mismatches (see above)"
fi
stop_ternd
finish
