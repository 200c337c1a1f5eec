#!/usr/bin/env bash
# test_offload_aiortc.sh: a WebRTC call (tests/interop/aiortc_call.py) over the kernel fast
# path (relay.offload, docs/offload.md) on the veth topology of test_offload.sh:
#
#   [client ns: aiortc A] --veth-- [relay ns: ternd, relay.offload] --veth-- [peer ns: aiortc B]
#   10.211.1.2                      10.211.1.1 (listener)  10.211.2.1 (relay)  10.211.2.2
#
# A is relay-only (its one allocation on ternd); B runs in the peer namespace on host
# candidates (aiortc_call.py --b-netns), so A's channel to B is a binding the XDP program
# forwards both ways (a relay-to-relay pair on one relay would be relayed hairpin, from one
# local address to another: user space). A sends Opus and VP8, B sends Opus, A drops 3 % of its
# audio before SRTP. The call must connect on that pair, the program must have carried the
# media (its to_peer / to_client counters, "datapath": "xdp" in A's allocation), the relay's
# per-SSRC numbers must match both receivers' getStats exactly (packets, loss; jitter and RTT
# within the loopback test's tolerances, aiortc_compare.py), and no receiver may count a UDP
# checksum error. TERN_OFFLOAD_MODE=off runs the same call in user space, =tc over the TC path.
. "$(dirname "$0")/lib.sh"
: "${TERN_SOURCE_DIR:?TERN_SOURCE_DIR must point at the source tree (set by CTest)}"
CALL="$TERN_SOURCE_DIR/tests/interop/aiortc_call.py"
CMP="$TERN_SOURCE_DIR/tests/interop/aiortc_compare.py"
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3
MODE=${TERN_OFFLOAD_MODE:-auto}
LOSS=${TERN_AIORTC_LOSS:-0.03}
DURATION=${TERN_AIORTC_SECONDS:-10}
command -v ethtool >/dev/null || { fail "ethtool missing (Debian package ethtool)"; finish; }
if ! "$PY" -c 'import aiortc, aioice' 2>"$WORK/import.err"; then
    fail "aiortc missing for $PY (Debian package python3-aiortc): $(tail -1 "$WORK/import.err")"
    finish
fi

ID=$$
C=tern-oa-c-$ID R=tern-oa-r-$ID P=tern-oa-p-$ID
CALL_PID=
netns_cleanup() {
    [ -n "$CALL_PID" ] && kill "$CALL_PID" 2>/dev/null || true
    if [ -n "$TERND_PID" ] && kill -0 "$TERND_PID" 2>/dev/null; then kill -KILL "$TERND_PID"; fi
    for n in "$C" "$R" "$P"; do ip netns del "$n" 2>/dev/null || true; done
}
trap 'netns_cleanup; cleanup' EXIT
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

for n in "$C" "$R" "$P"; do ip netns add "$n"; in_ns "$n" ip link set lo up; done
ip link add "ac$ID" netns "$C" type veth peer name "arc$ID" netns "$R"
ip link add "ap$ID" netns "$P" type veth peer name "arp$ID" netns "$R"
in_ns "$C" ip addr add 10.211.1.2/24 dev "ac$ID"
in_ns "$R" ip addr add 10.211.1.1/24 dev "arc$ID"
in_ns "$R" ip addr add 10.211.2.1/24 dev "arp$ID"
in_ns "$P" ip addr add 10.211.2.2/24 dev "ap$ID"
for nd in "$C:ac$ID" "$R:arc$ID" "$R:arp$ID" "$P:ap$ID"; do
    in_ns "${nd%%:*}" ip link set "${nd#*:}" up
    # no partial checksums from the senders; GRO so that redirected frames are received
    in_ns "${nd%%:*}" ethtool -K "${nd#*:}" tx off gro on >/dev/null 2>&1 || true
done
# No routes between client and peer namespaces: A and B can reach each other only through the
# relay (else ICE would pick A's host candidate and the call would bypass it).
in_ns "$R" sysctl -qw net.ipv4.conf.all.forwarding=1

cat >"$WORK/ternd-ns" <<SH
#!/bin/sh
exec ip netns exec $R "$TERND" "\$@"
SH
chmod +x "$WORK/ternd-ns"
TERND="$WORK/ternd-ns"
curl() { ip netns exec "$R" /usr/bin/curl "$@"; }

cat >"$WORK/tern.yaml" <<YAML
server: { realm: tern.test, workers: 2 }
listen:
  - { transport: udp, address: 10.211.1.1, port: 0 }
relay:
  addresses: [10.211.2.1]
  ports: { min: 40000, max: 40999 }
  offload: $MODE
peers: { allow: [10.211.0.0/16] }
auth: { users: [ { name: alice, password: wonderland } ] }
qos: { enabled: true }
ops: { listen: "127.0.0.1:0" }
log: { level: info, format: json }
YAML
start_ternd "$WORK/tern.yaml"
U4=$(port_of udp 10.211.1.1)
OPS=$(grep '"event":"ops_listening"' "$WORK/ternd.log" | head -1 | sed -E 's/.*"port":([0-9]+).*/\1/')
[ -n "$U4" ] && [ -n "$OPS" ] || { fail "ports not logged"; finish; }
API="http://127.0.0.1:$OPS"
{ grep '"event":"offload"' "$WORK/ternd.log" || true; } | sed 's/^/  /'
if [ "$MODE" != off ]; then
    if grep '"event":"offload"' "$WORK/ternd.log" | grep -Eq '"path":"(xdp|tc)'; then
        pass "relay.offload: $MODE: ternd runs a kernel path"
    else
        fail "relay.offload: $MODE: no kernel path"
    fi
fi

# xdp_stat RESULT: the program's counter from /metrics (0 when absent).
xdp_stat() {
    curl -s "$API/metrics" | grep -E "^tern_offload_xdp_datagrams_total\{result=\"$1\"\}" |
        awk '{print $2}' | grep . || echo 0
}
csum_errors() {
    in_ns "$1" awk '/^Udp:/ { if (!h) { for (i = 1; i <= NF; i++) if ($i == "InCsumErrors") c = i; h = 1 } else print $c }' /proc/net/snmp
}

# The call, in the client namespace (ip netns exec execs: $! is the call itself; the ops API is reached in the relay namespace: the live
# snapshot is left out, the detail is fetched here right after getStats, as test_aiortc.sh does).
ip netns exec "$C" "$PY" "$CALL" --server "10.211.1.1:$U4" --user alice --password wonderland \
    --b-netns "$P" --duration "$DURATION" --loss "$LOSS" --hold 30 \
    >"$WORK/call.json" 2>"$WORK/call.err" &
CALL_PID=$!
for _ in $(seq 400); do
    [ -s "$WORK/call.json" ] && break
    kill -0 "$CALL_PID" 2>/dev/null || break
    sleep 0.1
done
ok_api=1
if [ -s "$WORK/call.json" ] && curl -sf -o "$WORK/list.json" "$API/api/v1/allocations"; then
    for id in $("$PY" -c 'import json,sys; [print(e["id"]) for e in json.load(open(sys.argv[1]))["allocations"]]' \
        "$WORK/list.json"); do
        curl -sf -o "$WORK/detail.$id.json" "$API/api/v1/allocations/$id" || ok_api=0
    done
else
    ok_api=0
fi
tp=$(xdp_stat to_peer) tc=$(xdp_stat to_client)
kill -USR1 "$CALL_PID" 2>/dev/null || true
CALL_RC=0
wait "$CALL_PID" || CALL_RC=$?
CALL_PID=
if [ "$CALL_RC" -ne 0 ] || ! [ -s "$WORK/call.json" ]; then
    fail "aiortc call exited $CALL_RC: $(head -c 600 "$WORK/call.json" 2>/dev/null)"
    sed 's/^/    /' "$WORK/call.err" | tail -30 >&2
    finish
fi
pass "aiortc call connected (A relay-only in the client namespace, B on host candidates in the peer namespace) and ended cleanly"
[ "$ok_api" -eq 1 ] || { fail "GET $API/api/v1/allocations[/{id}] failed during the call"; finish; }

# The media went through the program: every RTP datagram but those of each stream's probation
# (user space confirms a stream before it hands it over), and the DTLS handshake.
rtp=$("$PY" -c 'import json,sys; c=json.load(open(sys.argv[1])); print(sum(s["packetsReceived"] for p in c["peers"].values() for s in p["inbound_rtp"]))' "$WORK/call.json")
if [ "$MODE" != off ]; then
    if grep -Eq '"datapath": *"(xdp|tc)"' "$WORK"/detail.*.json; then
        pass "A's allocation says $(grep -Eho '"datapath": *"(xdp|tc)"' "$WORK"/detail.*.json | head -1)"
    else
        fail "no \"datapath\": \"xdp\" or \"tc\" in the allocation detail"
    fi
    if [ "$((tp + tc))" -ge $((rtp * 9 / 10)) ] && [ "$tp" -gt 0 ] && [ "$tc" -gt 0 ]; then
        pass "the kernel carried the call: to_peer=$tp to_client=$tc of $rtp RTP packets received"
    else
        fail "the kernel carried to_peer=$tp to_client=$tc of $rtp RTP packets received"
    fi
fi

rc=0
"$PY" "$CMP" "$WORK/call.json" "$WORK/list.json" "$WORK"/detail.*.json >"$WORK/cmp.out" 2>&1 || rc=$?
sed 's/^/    /' "$WORK/cmp.out"
if [ "$rc" -eq 0 ]; then
    pass "aiortc getStats and the relay agree ($MODE): $(grep -c '^ok:' "$WORK/cmp.out") checks"
else
    fail "aiortc getStats vs the relay ($MODE): $(grep -c '^FAIL:' "$WORK/cmp.out") mismatches (see above)"
fi
stop_ternd
for n in "$C" "$P"; do
    e=$(csum_errors "$n")
    [ "${e:-0}" = 0 ] && pass "${n%-*}: no UDP checksum errors counted by the receiver" ||
        fail "${n%-*}: $e UDP checksum errors"
done
finish
