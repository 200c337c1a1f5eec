#!/usr/bin/env bash
# test_tcp_relay.sh: RFC 6062 TCP allocations end to end. coturn's turnutils_uclient -T (TCP
# relay mode: its clients Connect to each other's relayed addresses, so both Connect and
# ConnectionAttempt + ConnectionBind run) with zero loss; turnlib's client against a TCP echo
# peer (tests/tools/tcp_echo_peer.py; turnutils_peer has no TCP mode): Connect, ConnectionBind,
# 1 MB both ways; a Connect to a forbidden peer (peers.deny, a private address) refused with
# 403; a peer connecting to the relayed address without a permission refused, with one
# accepted and relayed. coturn's server is never started.
. "$(dirname "$0")/lib.sh"
command -v turnutils_uclient >/dev/null || { fail "turnutils_uclient missing (Debian package coturn)"; finish; }
HERE=$(cd "$(dirname "$0")" && pwd)

python3 "$HERE/../tools/tcp_echo_peer.py" 127.0.0.1 0 >"$WORK/peer.log" 2>&1 &
PEER_PID=$!
for _ in $(seq 50); do [ -s "$WORK/peer.log" ] && break; sleep 0.1; done
ECHO_PORT=$(head -1 "$WORK/peer.log")

# Six uclient clients, not more: control and data connections all count against the per-IP
# limit (64 per worker). Two workers: SO_REUSEPORT spreads data connections over both, so many
# reach a worker other than the one holding their CONNECTION-ID and are handed over to it
# (docs/tcp-relay.md); the counters below check that both kinds happened.
cat >"$WORK/tern.yaml" <<YAML
server: { realm: tern.test, workers: 2 }
listen:
  - { transport: tcp, address: 127.0.0.1, port: 0 }
relay: { addresses: [127.0.0.1], ports: { min: 50000, max: 59999 } }
peers: { allow_loopback: true, deny: [127.0.0.2/32] }
allocation: { max_per_user: 1000 }
auth: { users: [ { name: alice, password: wonderland } ] }
log: { level: info, format: json }
ops: { listen: "127.0.0.1:0", token: tcp-test-token }
YAML
start_ternd "$WORK/tern.yaml"
T4=$(port_of tcp 127.0.0.1)
OPS=$(grep '"event":"ops_listening"' "$WORK/ternd.log" | sed -E 's/.*"port":([0-9]+).*/\1/')
API="http://127.0.0.1:$OPS"

# uclient WHAT WANT SIZE ARGS...: zero loss as uclient counts it. With two workers the two ends
# of a uclient -T pair may sit on different workers, and on a loaded machine uclient then
# sometimes gives up on a few late messages (its own deadline) although every byte was
# delivered: the relay's own accounting decides then (the allocation_ended events of the run:
# every byte sent reached the other client, nothing left queued), and the check says which.
uclient() {
    local what=$1 want=$2 size=$3; shift 3
    local rc=0 sent recv lost t0=$SECONDS from
    from=$(wc -l <"$WORK/ternd.log")
    timeout 120 turnutils_uclient -T -z 5 -u alice -w wonderland -e 127.0.0.1 -r "$ECHO_PORT" -l "$size" "$@" >"$WORK/uc.log" 2>&1 || rc=$?
    sent=$(grep -oE 'tot_send_msgs=[0-9]+, tot_recv_msgs=[0-9]+$' "$WORK/uc.log" | tail -1 | sed -E 's/tot_send_msgs=([0-9]+),.*/\1/' || true)
    recv=$(grep -oE 'tot_recv_msgs=[0-9]+$' "$WORK/uc.log" | tail -1 | cut -d= -f2 || true)
    lost=$(grep -oE 'Total lost packets [0-9]+' "$WORK/uc.log" | tail -1 | awk '{print $4}' || true)
    sleep 0.5 # the allocations end as uclient closes
    local relayed
    relayed=$(tail -n +"$((from + 1))" "$WORK/ternd.log" | grep '"event":"allocation_ended"' |
        grep -oE '"bytes_to_client":[0-9]+' | cut -d: -f2 | awk '{s += $1} END {print s + 0}')
    if [ "$rc" -eq 0 ] && [ "$sent" = "$want" ] && [ "$recv" = "$want" ] && [ "$lost" = 0 ]; then
        pass "$what: sent=$sent received=$recv lost=$lost in $((SECONDS - t0)) s (relay delivered $relayed bytes)"
    elif [ "$rc" -eq 0 ] && [ "$sent" = "$want" ] && [ "$relayed" = "$((want * size))" ]; then
        pass "$what: sent=$sent, uclient counted $lost late in $((SECONDS - t0)) s; the relay delivered all $relayed bytes (uclient's deadline, not a loss)"
    else
        fail "$what: rc=$rc sent=$sent received=$recv lost=$lost relayed=$relayed bytes (wanted $want x $size, 0 lost)"
        grep -v Uninitialized "$WORK/uc.log" | tail -15 >&2
    fi
}
uclient "uclient -T, 6 clients x 300" 1800 120 -n 300 -m 6 -p "$T4" 127.0.0.1
uclient "uclient -T, 2 clients x 500 of 1000 bytes" 1000 1000 -n 500 -m 2 -p "$T4" 127.0.0.1

CL="$HERE/tcp_relay_client.py"
expect_out "Connect to a TCP echo peer, 1 MB through" "ok echoed=1000000" timeout 30 python3 "$CL" "$T4" connect-echo "$ECHO_PORT" 1000000
expect_out "40 data connections at once, 20 kB each through" "ok conns=40" timeout 60 python3 "$CL" "$T4" many 40 20000
# The QoS view of a TCP flow: a live one (200 kB echoed, then 16 MB sent with nothing read back,
# so both directions stall) in the allocation's detail and in /metrics.
python3 "$CL" "$T4" hold "$ECHO_PORT" 30 >"$WORK/hold.out" 2>&1 &
HOLD=$!
for _ in $(seq 100); do grep -q ready "$WORK/hold.out" && break; sleep 0.1; done
H=(-H "Authorization: Bearer tcp-test-token")
curl -s "${H[@]}" "$API/api/v1/allocations" >"$WORK/list.json"
ID=$(python3 -c 'import json,sys; print(next(a["id"] for a in json.load(open(sys.argv[1]))["allocations"] if a["transport"] == "tcp"))' "$WORK/list.json" 2>/dev/null || true)
# The stall comes once the kernel buffers on the way back are full (a few MB on loopback):
# how long that takes depends on the machine's load, so wait for it (at most 20 s), and for
# half a second of it.
t0=$SECONDS
while [ $((SECONDS - t0)) -lt 20 ]; do
    curl -s "${H[@]}" "$API/api/v1/allocations/$ID" >"$WORK/detail.json"
    python3 -c 'import json,sys; f=[x for x in json.load(open(sys.argv[1]))["tcp_flows"] if x["state"] == "bound"]; sys.exit(not (f and f[0]["to_client"]["stalled_now"] and f[0]["to_client"]["stalled_seconds"] > 0.6))' "$WORK/detail.json" 2>/dev/null && break
    sleep 0.3
done
curl -s "${H[@]}" "$API/metrics" >"$WORK/metrics.txt"
kill "$HOLD" 2>/dev/null
wait $HOLD 2>/dev/null || true
if out=$(python3 - "$WORK/detail.json" <<'PY'
import json, sys
f = json.load(open(sys.argv[1]))["tcp_flows"]
b = [x for x in f if x["state"] == "bound"]
assert len(b) == 1, f
x = b[0]
tp, tc = x["to_peer"], x["to_client"]
assert tp["bytes"] >= 200000 and tc["bytes"] >= 200000, (tp, tc)
assert tp["bytes_delivered"] + tp["bytes_queued"] == tp["bytes"], tp
assert tc["bytes_delivered"] + tc["bytes_queued"] == tc["bytes"], tc
assert tc["stalled_now"] and tc["stalls"] >= 1 and tc["stalled_seconds"] > 0.5, tc
assert tc["bytes_queued"] >= 32768, tc
assert tp["average_bps"] > 0 and tp["rate_bps"] >= 0, tp
for leg in ("client_leg", "peer_leg"):
    ti = x[leg]["tcp_info"]
    assert 0 < ti["rtt_seconds"] < 0.5 and ti["retransmits"] >= 0 and ti["cwnd"] > 0, (leg, ti)
print(f'to_peer {tp["bytes"]} B ({tp["average_bps"]/1e6:.1f} Mbit/s avg), to_client {tc["bytes"]} B, '
      f'stalled {tc["stalled_seconds"]:.2f} s, queued {tc["bytes_queued"]}, '
      f'rtt client {x["client_leg"]["tcp_info"]["rtt_seconds"]*1e3:.3f} ms peer {x["peer_leg"]["tcp_info"]["rtt_seconds"]*1e3:.3f} ms, '
      f'retransmits {x["client_leg"]["tcp_info"]["retransmits"]}/{x["peer_leg"]["tcp_info"]["retransmits"]}')
PY
); then pass "allocation detail: a TCP flow: $out"; else fail "allocation detail tcp_flows: $out $(head -c 600 "$WORK/detail.json")"; fi
mval() { grep -F "$1" "$WORK/metrics.txt" | grep -v '^#' | awk '{print $2}' | head -1; }
if awk -v b="$(mval 'tern_tcp_flows{state="bound"}')" -v s="$(mval 'tern_tcp_flows_stalled{direction="to_client"}')" \
       -v r="$(mval 'tern_tcp_flow_rtt_seconds{leg="peer",stat="max"}')" -v st="$(mval 'tern_tcp_flow_stall_seconds_total{direction="to_client"}')" \
       'BEGIN { exit !(b >= 1 && s >= 1 && r > 0 && r < 0.5 && st > 0.5) }'; then
    pass "/metrics: TCP flows bound=$(mval 'tern_tcp_flows{state="bound"}') stalled=$(mval 'tern_tcp_flows_stalled{direction="to_client"}') stall_s=$(mval 'tern_tcp_flow_stall_seconds_total{direction="to_client"}') peer_rtt_max=$(mval 'tern_tcp_flow_rtt_seconds{leg="peer",stat="max"}')"
else
    fail "/metrics TCP flows: $(grep tern_tcp_flow "$WORK/metrics.txt" | grep -v '^#' | tr '\n' ' ')"
fi
grep -q 'tern_tcp_flow_retransmits_total{leg="client"}' "$WORK/metrics.txt" && pass "/metrics: retransmissions per leg" || fail "no tern_tcp_flow_retransmits_total"

expect_out "half-close both ways (a FIN goes on, the other direction carries on)" \
    "ok client-fin echoed=300000 eof peer-fin got=100000 eof back=200000 eof" timeout 30 python3 "$CL" "$T4" halfclose "$ECHO_PORT"
expect_out "Connect to a peer in peers.deny refused" "code=403" timeout 10 python3 "$CL" "$T4" connect-denied 127.0.0.2 "$ECHO_PORT"
expect_out "Connect to a private address refused" "code=403" timeout 10 python3 "$CL" "$T4" connect-denied 10.0.0.1 80
expect_out "Connect to the relay's own listener refused" "code=403" timeout 10 python3 "$CL" "$T4" connect-denied 127.0.0.1 "$T4"
expect_out "peer without permission refused; with one bound and relayed" "refused-without ok-with" timeout 20 python3 "$CL" "$T4" incoming

stop_ternd
for c in tcp_allocations connect_success connection_bind_success connection_attempt error_403 \
         tcp_refused_no_permission tcp_splices tcp_peer_accepted tcp_peer_connects; do
    v=$(counter "$c")
    [ -n "$v" ] && [ "$v" -gt 0 ] && pass "counter $c=$v" || fail "counter $c should be > 0 (got '$v')"
done
# Two workers: some data connections were accepted by the other worker and handed over.
hout=$(counter tcp_handoff_out) hin=$(counter tcp_handoff_in)
[ -n "$hout" ] && [ "$hout" -gt 0 ] && [ "$hout" = "$hin" ] && pass "data connections handed to the owning worker: out=$hout in=$hin" ||
    fail "hand-overs: out='$hout' in='$hin' (wanted > 0 and equal)"
[ "$(counter tcp_handoff_failed)" = 0 ] && pass "no hand-over failed" || fail "tcp_handoff_failed=$(counter tcp_handoff_failed)"
binds=$(counter connection_bind_success)
[ "$(counter connection_bind_success)" -ge 40 ] && pass "connection_bind_success=$binds" || fail "connection_bind_success=$binds"
for c in tcp_half_close_to_client tcp_half_close_to_peer; do
    v=$(counter "$c")
    [ -n "$v" ] && [ "$v" -ge 2 ] && pass "counter $c=$v" || fail "counter $c should be >= 2 (got '$v')"
done
[ "$(counter tcp_control_dropped)" = 0 ] && pass "no control messages dropped" || fail "tcp_control_dropped=$(counter tcp_control_dropped)"
finish
