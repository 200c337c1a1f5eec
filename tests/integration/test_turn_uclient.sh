#!/usr/bin/env bash
# test_turn_uclient.sh: interop with coturn's client tools (turnutils_uclient, and
# turnutils_peer as the echo peer; coturn's server is never started): channel mode and
# Send-indication mode over UDP, TCP and IPv6 with 12 clients and hundreds of messages each and
# zero loss; a wrong password fails; a loopback peer fails unless the config allows loopback.
. "$(dirname "$0")/lib.sh"
command -v turnutils_uclient >/dev/null || { fail "turnutils_uclient missing (Debian package coturn)"; finish; }


start_echo_peer 127.0.0.1 ::1

cat >"$WORK/tern.yaml" <<YAML
server: { realm: tern.test, workers: 2 }
listen:
  - { transport: udp, address: 127.0.0.1, port: 0 }
  - { transport: tcp, address: 127.0.0.1, port: 0 }
  - { transport: udp, address: "::1", port: 0 }
relay: { addresses: [127.0.0.1, "::1"], ports: { min: 50000, max: 59999 } }
peers: { allow_loopback: true }
# no allocation.max_per_user: unlimited by default, and the clients below are all alice
auth: { users: [ { name: alice, password: wonderland } ], secrets: [ old-secret, new-secret ] }
log: { level: info, format: json }
YAML
start_ternd "$WORK/tern.yaml"
U4=$(port_of udp 127.0.0.1); T4=$(port_of tcp 127.0.0.1); U6=$(port_of udp '[::1]')

# uclient DESCRIPTION EXPECTED-MESSAGES ARGS...: run it, require the totals and zero loss.
# A run that ends without printing totals never got going (seen once in ~14 suite runs under
# load, cause not captured); it is retried once, and its log is shown so the cause is visible.
# A run with totals is never retried: loss always fails.
uclient() {
    local what=$1 want=$2; shift 2
    local t0=$SECONDS rc sent recv lost attempt
    for attempt in 1 2; do
        rc=0
        timeout 120 turnutils_uclient -z 5 -u alice -w wonderland -r "$PEER_PORT" "$@" >"$WORK/uc.log" 2>&1 || rc=$?
        # (|| true: a run that printed no totals must be reported below, not end the script)
        sent=$(grep -oE 'tot_send_msgs=[0-9]+, tot_recv_msgs=[0-9]+$' "$WORK/uc.log" | tail -1 | sed -E 's/tot_send_msgs=([0-9]+),.*/\1/' || true)
        recv=$(grep -oE 'tot_recv_msgs=[0-9]+$' "$WORK/uc.log" | tail -1 | cut -d= -f2 || true)
        lost=$(grep -oE 'Total lost packets [0-9]+' "$WORK/uc.log" | tail -1 | awk '{print $4}' || true)
        [ -n "$recv" ] || [ "$attempt" = 2 ] && break
        echo "note: $what: uclient ended without totals (rc=$rc); retrying once. Its log:" >&2
        tail -15 "$WORK/uc.log" | sed 's/^/    /' >&2
    done
    if [ "$rc" -eq 0 ] && [ "$sent" = "$want" ] && [ "$recv" = "$want" ] && [ "$lost" = 0 ]; then
        pass "$what: sent=$sent received=$recv lost=$lost in $((SECONDS - t0)) s"
    else
        fail "$what: rc=$rc sent=$sent received=$recv lost=$lost (wanted $want, 0 lost)"
        tail -15 "$WORK/uc.log" >&2
    fi
}

uclient "UDP channels, 12 clients x 300" 3600 -n 300 -m 12 -l 160 -e 127.0.0.1 -p "$U4" 127.0.0.1
uclient "UDP Send/Data indications, 12 clients x 300" 3600 -s -n 300 -m 12 -l 160 -e 127.0.0.1 -p "$U4" 127.0.0.1
uclient "TCP channels, 10 clients x 200" 2000 -t -n 200 -m 10 -l 120 -e 127.0.0.1 -p "$T4" 127.0.0.1
uclient "IPv6 relay and peer, channels, 10 clients x 200" 2000 -x -n 200 -m 10 -l 120 -e ::1 -p "$U6" ::1
uclient "DONT-FRAGMENT requested, 4 clients x 100" 400 -g -n 100 -m 4 -e 127.0.0.1 -p "$U4" 127.0.0.1

# TURN REST API credentials (uclient -W makes "<expiry>:<user>" and its HMAC password): both
# secrets of a rotation work, a retired one does not.
for secret in old-secret new-secret; do
    uclient "REST credential under $secret, 4 clients x 100" 400 -W "$secret" -n 100 -m 4 -e 127.0.0.1 -p "$U4" 127.0.0.1
done
rc=0; timeout 60 turnutils_uclient -W retired-secret -u alice -e 127.0.0.1 -r "$PEER_PORT" -p "$U4" -n 5 127.0.0.1 >"$WORK/uc.log" 2>&1 || rc=$?
[ "$rc" -ne 0 ] && grep -q "Cannot complete Allocation" "$WORK/uc.log" && pass "REST credential under a retired secret refused" \
    || { fail "REST credential under a retired secret refused (rc=$rc)"; tail -5 "$WORK/uc.log" >&2; }
grep -q '"event":"allocation_created".*"user":"[0-9]*:alice"' "$WORK/ternd.log" && pass "REST allocations logged with their username" \
    || fail "REST allocations logged with their username"

rc=0; timeout 60 turnutils_uclient -u alice -w not-the-password -e 127.0.0.1 -r "$PEER_PORT" -p "$U4" -n 5 127.0.0.1 >"$WORK/uc.log" 2>&1 || rc=$?
[ "$rc" -ne 0 ] && grep -q "Cannot complete Allocation" "$WORK/uc.log" && pass "wrong password refused (rc=$rc)" \
    || { fail "wrong password refused (rc=$rc)"; tail -5 "$WORK/uc.log" >&2; }
stop_ternd
for c in allocate_success channel_bind_success permission_success send_indication channel_to_peer \
         peer_to_client_channel peer_to_client_data error_401; do
    v=$(counter "$c")
    [ -n "$v" ] && [ "$v" -gt 0 ] && pass "counter $c=$v" || fail "counter $c should be > 0 (got '$v')"
done
[ "$(counter drop_policy)" = 0 ] && pass "no policy drops with loopback allowed" || fail "drop_policy=$(counter drop_policy)"

# The same peer with the default policy: loopback is refused (403), nothing reaches it.
sed -i 's/allow_loopback: true/allow_loopback: false/' "$WORK/tern.yaml"
start_ternd "$WORK/tern.yaml"
U4=$(port_of udp 127.0.0.1)
before=$(grep -c . "$WORK/peer.log" || true)
rc=0; timeout 60 turnutils_uclient -u alice -w wonderland -e 127.0.0.1 -r "$PEER_PORT" -p "$U4" -n 20 127.0.0.1 >"$WORK/uc.log" 2>&1 || rc=$?
grep -q "error 403" "$WORK/uc.log" && pass "loopback peer refused with 403 (uclient rc=$rc)" \
    || { fail "loopback peer refused with 403"; tail -8 "$WORK/uc.log" >&2; }
stop_ternd
v=$(counter error_403); [ "${v:-0}" -gt 0 ] && pass "counter error_403=$v" || fail "error_403 should be > 0"
v=$(counter peer_tx_datagrams); [ "$v" = 0 ] && pass "nothing sent to the denied peer" || fail "peer_tx_datagrams=$v, wanted 0"
grep -q '"event":"peer_denied".*127.0.0.1' "$WORK/ternd.log" && pass "denial logged with the peer" || fail "denial logged"
finish
