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
YAML
start_ternd "$WORK/tern.yaml"
T4=$(port_of tcp 127.0.0.1)

uclient() {
    local what=$1 want=$2; shift 2
    local rc=0 sent recv lost t0=$SECONDS
    timeout 120 turnutils_uclient -T -z 5 -u alice -w wonderland -e 127.0.0.1 -r "$ECHO_PORT" "$@" >"$WORK/uc.log" 2>&1 || rc=$?
    sent=$(grep -oE 'tot_send_msgs=[0-9]+, tot_recv_msgs=[0-9]+$' "$WORK/uc.log" | tail -1 | sed -E 's/tot_send_msgs=([0-9]+),.*/\1/' || true)
    recv=$(grep -oE 'tot_recv_msgs=[0-9]+$' "$WORK/uc.log" | tail -1 | cut -d= -f2 || true)
    lost=$(grep -oE 'Total lost packets [0-9]+' "$WORK/uc.log" | tail -1 | awk '{print $4}' || true)
    if [ "$rc" -eq 0 ] && [ "$sent" = "$want" ] && [ "$recv" = "$want" ] && [ "$lost" = 0 ]; then
        pass "$what: sent=$sent received=$recv lost=$lost in $((SECONDS - t0)) s"
    else
        fail "$what: rc=$rc sent=$sent received=$recv lost=$lost (wanted $want, 0 lost)"
        grep -v Uninitialized "$WORK/uc.log" | tail -15 >&2
    fi
}
uclient "uclient -T, 6 clients x 300" 1800 -n 300 -m 6 -l 120 -p "$T4" 127.0.0.1
uclient "uclient -T, 2 clients x 500 of 1000 bytes" 1000 -n 500 -m 2 -l 1000 -p "$T4" 127.0.0.1

CL="$HERE/tcp_relay_client.py"
expect_out "Connect to a TCP echo peer, 1 MB through" "ok echoed=1000000" timeout 30 python3 "$CL" "$T4" connect-echo "$ECHO_PORT" 1000000
expect_out "40 data connections at once, 20 kB each through" "ok conns=40" timeout 60 python3 "$CL" "$T4" many 40 20000
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
[ "$(counter tcp_control_dropped)" = 0 ] && pass "no control messages dropped" || fail "tcp_control_dropped=$(counter tcp_control_dropped)"
finish
