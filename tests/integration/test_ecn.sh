#!/usr/bin/env bash
# test_ecn.sh: ECN and DSCP carried through the relay both ways (RFC 8656 14) and counted per
# flow, for each qos.dscp mode (preserve, zero, by-class) and for IPv6 traffic classes. The
# client (tern-turnc) sends with a TOS of its own and reads the TOS of what comes back; the
# peer (tests/tools/tos_peer.py) reads the TOS of what reaches it and echoes with another; a
# tcpdump capture on lo shows the bytes on the wire.
. "$(dirname "$0")/lib.sh"
: "${TURNC:?TURNC must point at tern-turnc (set by CTest)}"
TOSPEER="$TERN_SOURCE_DIR/tests/tools/tos_peer.py"
command -v tcpdump >/dev/null || { echo "FAIL: tcpdump is not installed (Debian: tcpdump)" >&2; exit 1; }

PEER_PORT=$(free_udp_port)
PEER6_PORT=$(free_udp_port)
# The peer echoes with AF41 + CE (0x8b): congestion seen on the peer's side.
python3 "$TOSPEER" 127.0.0.1 "$PEER_PORT" 0x8b "$WORK/peer.log" >"$WORK/peer.out" 2>&1 &
PEER_PID=$!
python3 "$TOSPEER" ::1 "$PEER6_PORT" 0x8b "$WORK/peer6.log" >"$WORK/peer6.out" 2>&1 &
PEER6_PID=$!
trap 'kill $PEER6_PID 2>/dev/null || true; cleanup' EXIT
for _ in $(seq 50); do grep -q ready "$WORK/peer.out" "$WORK/peer6.out" 2>/dev/null &&
    [ "$(cat "$WORK/peer.out" "$WORK/peer6.out" | grep -c ready)" = 2 ] && break; sleep 0.1; done

# run_mode MODE: start ternd with qos.dscp MODE on loopback.
run_mode() {
    cat >"$WORK/ecn.yaml" <<EOF
server: { realm: tern.test, workers: 1 }
listen:
  - { transport: udp, address: 127.0.0.1, port: 0 }
relay: { addresses: [127.0.0.1, "::1"] }
peers: { allow_loopback: true }
auth: { users: [ { name: alice, password: alice-pass } ] }
qos: { dscp: $1 }
log: { level: info, format: json }
EOF
    : >"$WORK/peer.log"
    : >"$WORK/peer6.log"
    start_ternd "$WORK/ecn.yaml"
    U4=$(port_of udp 127.0.0.1)
    OPS=$(grep '"event":"ops_listening"' "$WORK/ternd.log" | tail -1 | sed -E 's/.*"port":([0-9]+).*/\1/')
}
turnc() {
    local name=$1; shift
    timeout 20 "$TURNC" -s "127.0.0.1:$U4" -w 500 "$@" >"$WORK/$name.out" 2>&1 || true
}
# tos_lines FILE: the distinct TOS values seen, in order of first appearance, one per line.
tos_of() { grep -oE 'tos=0x[0-9a-f]{2}' "$1" | cut -d= -f2 | awk '!seen[$0]++'; }
check_tos() { # DESCRIPTION FILE WANT(space-separated distinct values) COUNT_EXPECTED
    local got n
    got=$(tos_of "$2" | tr '\n' ' ' | sed 's/ $//')
    n=$(grep -c 'tos=' "$2" || true)
    if [ "$got" = "$3" ] && [ "$n" = "$4" ]; then pass "$1 ($n datagrams, tos $got)"; else
        fail "$1: wanted tos '$3' x$4, got '$got' x$n"; sed 's/^/    /' "$2" >&2
    fi
}

# ---- preserve (the default): DSCP and ECN both ways, and what tcpdump saw ----
run_mode preserve
tcpdump -i lo -nn -v -l "udp and (port $PEER_PORT or port $U4)" >"$WORK/cap.txt" 2>"$WORK/cap.err" &
CAP=$!
for _ in $(seq 50); do grep -q "listening on" "$WORK/cap.err" 2>/dev/null && break; sleep 0.1; done
turnc pres4 -T 0xb9 -n 5 -i 20 -p "127.0.0.1:$PEER_PORT"
sleep 0.3
kill -INT $CAP 2>/dev/null; wait $CAP 2>/dev/null || true
# tcpdump -v prints a packet on two lines: "IP (tos 0x.., ...)" then "src > dst: UDP, ...".
# Pair them: what left the relay towards the peer, and towards the client (from its listener).
paste -d' ' - - <"$WORK/cap.txt" >"$WORK/cap2.txt" || true
to_peer=$(grep -E "> 127\.0\.0\.1\.$PEER_PORT: " "$WORK/cap2.txt" | grep -c 'tos 0xb9' || true)
to_client=$(grep -E "127\.0\.0\.1\.$U4 > " "$WORK/cap2.txt" | grep -c 'tos 0x8b' || true)
if [ "$to_peer" = 5 ] && [ "$to_client" = 5 ]; then
    pass "tcpdump on lo: relay->peer 5 datagrams with tos 0xb9, relay->client 5 with tos 0x8b"
else
    fail "tcpdump capture: relay->peer 0xb9 x$to_peer, relay->client 0x8b x$to_client"
    sed 's/^/    /' "$WORK/cap2.txt" >&2
fi
check_tos "preserve: client EF+ECT(1) (0xb9) reaches the peer unchanged" "$WORK/peer.log" "0xb9" 5
check_tos "preserve: the peer's AF41+CE (0x8b) reaches the client unchanged" "$WORK/pres4.out" "0x8b" 5
turnc pres6 -6 -T 0xb9 -n 4 -i 20 -p "[::1]:$PEER6_PORT"
check_tos "preserve, IPv6 relay: traffic class 0xb9 reaches the peer" "$WORK/peer6.log" "0xb9" 4
check_tos "preserve, IPv6 relay: 0x8b reaches the client (an IPv4 client: as its TOS)" "$WORK/pres6.out" "0x8b" 4
# The counters: per flow and direction in the allocation's detail, per leg in /metrics.
curl -s "http://127.0.0.1:$OPS/api/v1/allocations" >"$WORK/list.json"
if python3 - "$WORK/list.json" "$OPS" "$PEER_PORT" <<'EOF'; then pass "detail: from_client ect1=5 dscp [46], from_peer ce=5 dscp [34]; summary legs agree"; else fail "ECN/DSCP counters in the allocation detail"; fi
import json, sys, urllib.request
allocs = json.load(open(sys.argv[1]))["allocations"]
ok = False
for a in allocs:
    d = json.load(urllib.request.urlopen("http://127.0.0.1:%s/api/v1/allocations/%s" % (sys.argv[2], a["id"])))
    for p in d["peers"]:
        if p["peer"] != "127.0.0.1:" + sys.argv[3]:
            continue
        fc, fp = p["directions"]["from_client"], p["directions"]["from_peer"]
        assert fc["ecn"] == {"not_ect": 0, "ect1": 5, "ect0": 0, "ce": 0}, fc["ecn"]
        assert fc["dscp"] == {"last": 46, "seen": [46]}, fc["dscp"]
        assert fp["ecn"]["ce"] == 5 and fp["dscp"]["seen"] == [34], (fp["ecn"], fp["dscp"])
        assert a["qos"]["client_leg"]["ecn"]["ect1"] == 5, a["qos"]["client_leg"]
        assert a["qos"]["peer_leg"]["ecn"]["ce"] == 5, a["qos"]["peer_leg"]
        assert a["qos"]["client_leg"]["dscp_seen"] == [46], a["qos"]["client_leg"]
        assert a["qos"]["peer_leg"]["dscp_seen"] == [34], a["qos"]["peer_leg"]
        ok = True
assert ok, "no allocation with the IPv4 peer"
EOF
curl -s "http://127.0.0.1:$OPS/metrics" >"$WORK/metrics"
if grep -q '^tern_qos_ecn_packets_total{leg="client",codepoint="ect1"} 9$' "$WORK/metrics" &&
    grep -q '^tern_qos_ecn_packets_total{leg="peer",codepoint="ce"} 9$' "$WORK/metrics" &&
    grep -q '^tern_qos_dscp_packets_total{leg="client",dscp="46"} 9$' "$WORK/metrics"; then
    pass "/metrics: ect1 9 from clients, ce 9 from peers, dscp 46 9 (IPv4 and IPv6 runs)"
else
    fail "/metrics ECN/DSCP"; grep -E 'ecn|dscp' "$WORK/metrics" | grep -v '^#' | sed 's/^/    /' >&2
fi
stop_ternd

# ---- zero: DSCP cleared, ECN kept ----
run_mode zero
turnc zero4 -T 0xb9 -n 3 -i 20 -p "127.0.0.1:$PEER_PORT"
check_tos "zero: only ECT(1) reaches the peer (0x01)" "$WORK/peer.log" "0x01" 3
check_tos "zero: only CE reaches the client (0x03)" "$WORK/zero4.out" "0x03" 3
stop_ternd

# ---- by-class: EF for audio RTP, AF41 for video, CS0 for the rest; ECN kept ----
run_mode by-class
turnc audio -R 0 -l 172 -T 0x02 -n 8 -i 20 -p "127.0.0.1:$PEER_PORT"
# RTP becomes a stream after 4 packets (probation): the first 3 go out as CS0.
check_tos "by-class: audio RTP (PT 0) leaves as EF once a stream (0x02 x3, then 0xba)" "$WORK/peer.log" "0x02 0xba" 8
: >"$WORK/peer.log"
turnc video -R 34 -l 1000 -T 0x02 -n 8 -i 20 -p "127.0.0.1:$PEER_PORT"
check_tos "by-class: video RTP (PT 34) leaves as AF41 once a stream (0x02 x3, then 0x8a)" "$WORK/peer.log" "0x02 0x8a" 8
: >"$WORK/peer.log"
turnc other -T 0xb9 -n 3 -i 20 -p "127.0.0.1:$PEER_PORT"
check_tos "by-class: non-RTP leaves as CS0 with its ECN (0x01)" "$WORK/peer.log" "0x01" 3
stop_ternd
finish
