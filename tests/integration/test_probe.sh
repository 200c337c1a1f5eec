#!/usr/bin/env bash
# test_probe.sh: ternprobe, the active end-to-end check, against ternd on loopback: two libnice
# agents send SRTP audio and video through two allocations; the endpoints' loss, jitter and RTT
# agree with what GET /api/v1/allocations/{id} reports (exit 0), over UDP, TCP and with a REST
# secret; an impossible threshold exits 1 naming it; a closed port and a wrong password exit 3.
. "$(dirname "$0")/lib.sh"
: "${TERN_BUILD_DIR:?TERN_BUILD_DIR must point at the build tree (set by CTest)}"
PROBE="$TERN_BUILD_DIR/ops/ternprobe"
[ -x "$PROBE" ] || { fail "$PROBE not built: install libnice-dev and libsrtp2-dev and reconfigure"; finish; }

RELAY_MIN=$((20000 + (RANDOM % 110) * 100))
cat >"$WORK/tern.yaml" <<YAML
server: { realm: tern.test, workers: 2 }
listen:
  - { transport: udp, address: 127.0.0.1, port: 0 }
  - { transport: tcp, address: 127.0.0.1, port: 0 }
relay: { addresses: [127.0.0.1], ports: { min: $RELAY_MIN, max: $((RELAY_MIN + 199)) } }
peers: { allow_loopback: true }
allocation: { max_per_user: 1000 }
auth: { users: [ { name: alice, password: wonderland } ], secrets: [ probe-test-secret-42 ] }
qos: { enabled: true }
log: { level: info, format: json }
YAML
start_ternd "$WORK/tern.yaml"
for _ in $(seq 50); do grep -q '"event":"ops_listening"' "$WORK/ternd.log" && break; sleep 0.1; done
OPS=$(grep '"event":"ops_listening"' "$WORK/ternd.log" | tail -1 | sed -E 's/.*"port":([0-9]+).*/\1/')
U4=$(port_of udp 127.0.0.1); T4=$(port_of tcp 127.0.0.1)
[ -n "$OPS" ] && [ -n "$U4" ] && [ -n "$T4" ] || { fail "ports not logged"; finish; }
API="http://127.0.0.1:$OPS"

# probe NAME WANT_RC [ARGS...]: run ternprobe; require exit status WANT_RC; output in $WORK/NAME.*
probe() {
    local name=$1 want=$2; shift 2
    local rc=0
    timeout 120 "$PROBE" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" || rc=$?
    echo "  $name: exit $rc: $(tail -1 "$WORK/$name.err")"
    if [ "$rc" -eq "$want" ]; then return 0; fi
    fail "$name: ternprobe exited $rc, wanted $want"
    sed 's/^/    /' "$WORK/$name.out" "$WORK/$name.err" >&2
    return 1
}

# Clean loopback over UDP: the endpoints and the relay agree; print the side-by-side table.
if probe udp 0 --server "127.0.0.1:$U4" --user alice --password wonderland --duration 6 --api "$API" \
    --max-loss 0 --max-rtt-ms 200; then
    pass "ternprobe over TURN/UDP: endpoints and relay agree (exit 0)"
    sed 's/^/    /' "$WORK/udp.out"
fi
# The JSON report: every stream arrived whole, the relay saw each one at both legs.
if probe json 0 --server "127.0.0.1:$U4" --user alice --password wonderland --duration 4 --api "$API" --json &&
    python3 - "$WORK/json.out" <<'PY'; then
import json, sys
r = json.load(open(sys.argv[1]))
assert r["result"] == "ok", r
assert len(r["streams"]) == 4
for s in r["streams"]:
    e = s["endpoint"]
    assert e["received"] == e["sent"] > 0 and e["loss_ratio"] == 0, s
    for leg in ("relay_client_leg", "relay_peer_leg"):
        assert s[leg]["received"] == e["sent"] and s[leg]["lost_net"] == 0, (leg, s)
        assert s[leg]["jitter_seconds"] is not None, (leg, s)
for t in r["rtt"]:
    assert t["rtt_seconds"] is not None and t["relay_path_rtt_seconds"] is not None, t
PY
    pass "ternprobe --json: 4 streams, every packet counted by both endpoints and both relay legs"
else
    fail "ternprobe --json report"; sed 's/^/    /' "$WORK/json.out" >&2
fi
# Over TCP the relay->client egress (invisible to the relay's ingress measurements) adds delay
# variation on loopback (Nagle and delayed ACKs): wider tolerances, loss must still agree.
probe tcp 0 --server "127.0.0.1:$T4" --transport tcp --user alice --password wonderland --duration 4 \
    --api "$API" --tol-jitter-ms 50 --tol-rtt-ms 100 && pass "ternprobe over TURN/TCP agrees (exit 0)"
probe rest 0 --server "127.0.0.1:$U4" --secret probe-test-secret-42 --duration 3 &&
    pass "ternprobe with a TURN REST credential minted from the secret (exit 0)"

# Impossible thresholds: exit 1 with the reason.
if probe rtt 1 --server "127.0.0.1:$U4" --user alice --password wonderland --duration 3 --api "$API" \
    --max-rtt-ms 0.0001; then
    grep -q 'above --max-rtt-ms' "$WORK/rtt.err" && pass "--max-rtt-ms 0.0001: exit 1 naming the RTT" ||
        fail "--max-rtt-ms: no reason named"
fi
if probe loss 1 --server "127.0.0.1:$U4" --user alice --password wonderland --duration 3 --max-loss -1; then
    grep -q 'above --max-loss' "$WORK/loss.err" && pass "--max-loss -1: exit 1 naming the loss" ||
        fail "--max-loss: no reason named"
fi
# Unreachable relay (closed port), refused credentials: exit 3.
CLOSED=$(free_udp_port)
probe closed 3 --server "127.0.0.1:$CLOSED" --user alice --password wonderland --duration 3 --timeout 15 &&
    pass "closed port $CLOSED: exit 3"
probe badpw 3 --server "127.0.0.1:$U4" --user alice --password wrong --duration 3 --timeout 15 &&
    pass "wrong password: exit 3"
probe noapi 3 --server "127.0.0.1:$U4" --user alice --password wonderland --duration 3 \
    --api "http://127.0.0.1:$(free_udp_port)" && pass "unreachable --api: exit 3"
probe usage 2 --user alice && pass "no --server: exit 2"

stop_ternd
finish
