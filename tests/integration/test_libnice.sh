#!/usr/bin/env bash
# test_libnice.sh: two libnice ICE agents (tern-nice-test) complete ICE over ternd relay candidates,
# with TURN over UDP and over TCP, and exchange data both ways through the relay.
. "$(dirname "$0")/lib.sh"
: "${TERN_BUILD_DIR:?TERN_BUILD_DIR must point at the build tree (set by CTest)}"

NICE_TEST="$TERN_BUILD_DIR/tests/interop/tern-nice-test"
if [ ! -x "$NICE_TEST" ]; then
    fail "$NICE_TEST not built: install libnice-dev (Debian) and reconfigure"
    finish
fi

# A relay port range below the kernel's ephemeral range, varied per run; ternd retries taken ports.
RELAY_MIN=$((20000 + (RANDOM % 110) * 100))
RELAY_MAX=$((RELAY_MIN + 199))
cat >"$WORK/tern.yaml" <<YAML
server: { realm: tern.test, workers: 2 }
listen:
  - { transport: udp, address: 127.0.0.1, port: 0 }
  - { transport: tcp, address: 127.0.0.1, port: 0 }
relay: { addresses: [127.0.0.1], ports: { min: $RELAY_MIN, max: $RELAY_MAX } }
peers: { allow_loopback: true }
allocation: { max_per_user: 1000 }
auth: { users: [ { name: alice, password: wonderland } ] }
log: { level: info, format: json }
YAML
start_ternd "$WORK/tern.yaml"
U4=$(port_of udp 127.0.0.1); T4=$(port_of tcp 127.0.0.1)
echo "ports: udp=$U4 tcp=$T4 relay=$RELAY_MIN-$RELAY_MAX"
[ -n "$U4" ] && [ -n "$T4" ] || { fail "listener ports not logged"; finish; }

# nice_run NAME PORT [OPTIONS...]: run tern-nice-test against ternd, require success, and check
# that both relayed addresses of the selected pair are allocations ternd reported.
nice_run() {
    local name=$1 port=$2; shift 2
    local out="$WORK/nice-$name.out" rc=0
    "$NICE_TEST" --server 127.0.0.1 --port "$port" --user alice --pass wonderland "$@" >"$out" 2>&1 || rc=$?
    local result
    result=$(grep '^result:' "$out" || true)
    echo "  $name: ${result:-no result line}"
    if [ "$rc" -eq 0 ] && grep -Eq '^result: ok .*lost=0 .*selected=relay/relay ' "$out"; then
        pass "libnice ICE over TURN/$name: all messages relayed both ways"
    else
        fail "libnice ICE over TURN/$name (exit status $rc)"
        sed 's/^/    /' "$out" >&2
        return 0
    fi
    local a b
    a=$(sed -nE 's/^result: .* a=([0-9.:]+)<->([0-9.:]+) .*/\1/p' "$out")
    b=$(sed -nE 's/^result: .* a=([0-9.:]+)<->([0-9.:]+) .*/\2/p' "$out")
    if grep '"event":"allocation_created"' "$WORK/ternd.log" | grep -qF "\"relayed\":\"$a\"" &&
        grep '"event":"allocation_created"' "$WORK/ternd.log" | grep -qF "\"relayed\":\"$b\""; then
        pass "TURN/$name selected pair $a<->$b is two ternd allocations"
    else
        fail "TURN/$name selected pair $a<->$b not among ternd's allocations"
        grep '"event":"allocation_created"' "$WORK/ternd.log" >&2 || true
    fi
}

nice_run udp "$U4"
nice_run tcp "$T4" --tcp
# Datagrams far above one MTU (8000 bytes: IP fragments on loopback) are relayed whole.
nice_run udp-8000 "$U4" --size 8000 --count 100

stop_ternd
v=$(counter allocations_created || true)
[ -n "$v" ] && [ "$v" -ge 6 ] && pass "allocations_created=$v (two agents, three runs)" ||
    fail "allocations_created should be >= 6 (got '$v')"
c=$(counter channel_to_peer || true); s=$(counter send_indication || true)
[ "${c:-0}" -gt 0 ] || [ "${s:-0}" -gt 0 ] && pass "client to peer: channel_to_peer=$c send_indication=$s" ||
    fail "nothing relayed client to peer (channel_to_peer='$c' send_indication='$s')"
c=$(counter peer_to_client_channel || true); d=$(counter peer_to_client_data || true)
[ "${c:-0}" -gt 0 ] || [ "${d:-0}" -gt 0 ] && pass "peer to client: peer_to_client_channel=$c peer_to_client_data=$d" ||
    fail "nothing relayed peer to client (peer_to_client_channel='$c' peer_to_client_data='$d')"
v=$(counter tcp_accepted || true)
[ -n "$v" ] && [ "$v" -ge 2 ] && pass "tcp_accepted=$v (TURN over TCP)" || fail "tcp_accepted should be >= 2 (got '$v')"
echo "  allocations: created=$(counter allocations_created || true) deleted=$(counter allocations_deleted || true)"
finish
