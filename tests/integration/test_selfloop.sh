#!/usr/bin/env bash
# test_selfloop.sh: the relay never relays into itself. Inside a network namespace of its own
# (a veth interface with 10.99.0.1 and fd99::1, both allowed as peers, and loopback allowed),
# ternd with wildcard listeners, then with specific ones, refuses ChannelBind (403) and drops
# Send/ChannelData to each of its addresses (127.x, the veth's, ::1, 0.0.0.0, ::) in every
# encoding (IPv4-mapped, SIIT, IPv4-compatible, NAT64, 6to4) at every listener port and at
# relayed ports (another allocation's, and the range's ends): a Binding request sent that way
# is never answered (binding_success stays 0) and no allocation hears another
# (peers.allow_relay_to_relay: false); an address added to an interface after start is covered
# within the refresh bound; a control peer is reached all along. With the default
# (allow_relay_to_relay: true) two allocations talk relay to relay while the listener ports
# stay refused. The TURN client is tests/integration/selfloop_client.py.
if [ "${1:-}" != inside ]; then
    # Outside: make the namespace, run this script inside it, remove the namespace.
    command -v ip >/dev/null || { echo "FAIL: ip (iproute2) missing" >&2; exit 1; }
    NS=tern-selfloop-$$
    if ! ip netns add "$NS" 2>/dev/null; then
        # The suite runs as root (scripts/test installs packages): a capability this machine
        # has is tested, never skipped.
        echo "FAIL: cannot create a network namespace (needs root and ip netns)" >&2
        exit 1
    fi
    trap 'ip netns del "$NS" 2>/dev/null' EXIT
    rc=0
    ip netns exec "$NS" bash "$0" inside || rc=$?
    exit "$rc"
fi
. "$(dirname "$0")/lib.sh"
CLIENT="$(dirname "$0")/selfloop_client.py"

ip link set lo up
# A veth pair with both ends in the namespace (the dummy module may be absent).
ip link add d0 type veth peer name d1
ip addr add 10.99.0.1/24 dev d0
ip addr add fd99::1/64 dev d0 nodad
ip link set d0 up
ip link set d1 up

# client DESCRIPTION ARGS...: run the TURN client into $WORK/cl.out; false (after failing) if
# it could not run or the control peer was not reached.
client() {
    local what=$1; shift
    if ! timeout 60 python3 "$CLIENT" "$@" >"$WORK/cl.out" 2>&1; then
        fail "$what: the client failed"; sed 's/^/    /' "$WORK/cl.out" >&2; return 1
    fi
    if grep -q '^control=' "$WORK/cl.out" && ! grep -Eq '^control=.* perm=200 bind=200 received=2$' "$WORK/cl.out"; then
        fail "$what: the control peer was not reached"; sed 's/^/    /' "$WORK/cl.out" >&2; return 1
    fi
}

# refused DESCRIPTION ARGS...: every target is refused (ChannelBind 403), nothing came back to
# either allocation.
refused() {
    local what=$1; shift
    client "$what" "$@" || return 0
    local n bad
    n=$(grep -c '^target=' "$WORK/cl.out" || true)
    bad=$(grep '^target=' "$WORK/cl.out" | grep -v ' bind=403$' || true)
    if [ -z "$bad" ] && grep -q '^a_data=0$' "$WORK/cl.out" && ! grep -Eq '^b_data=[1-9]' "$WORK/cl.out"; then
        pass "$what: $n targets refused, nothing answered"
    else
        fail "$what"; sed 's/^/    /' "$WORK/cl.out" >&2
    fi
}

# targets PORT...: every self address, in every encoding, at each port ("@B": allocation B's).
v4_forms() { # IP: the IPv4 address and the IPv6 forms that embed it
    local ip=$1 hex
    hex=$(printf '%02x%02x:%02x%02x' ${ip//./ })
    echo "$ip ::ffff:$ip ::ffff:0:$ip ::$ip 64:ff9b::$ip 2002:$hex::1"
}
targets4() {
    local p ip
    for p in "$@"; do
        for ip in $(v4_forms 127.0.0.1) $(v4_forms 127.0.0.2) $(v4_forms 10.99.0.1) 0.0.0.0; do
            echo "[$ip]:$p"
        done
    done
}

# ---- wildcard listeners and relay addresses (the default configuration's shape) ----
cat >"$WORK/wild.yaml" <<YAML
server: { realm: tern.test, workers: 2 }
listen:
  - { transport: udp, address: 0.0.0.0, port: 0 }
  - { transport: udp, address: "::", port: 0 }
  - { transport: tcp, address: 0.0.0.0, port: 0 }
relay: { addresses: [0.0.0.0, "::"], ports: { min: 50000, max: 50999 } }
peers: { allow_loopback: true, allow_relay_to_relay: false, allow: [10.99.0.0/24, "fd99::/64"] }
allocation: { max_per_user: 100 }
auth: { users: [ { name: alice, password: wonderland } ] }
log: { level: info, format: json }
YAML
start_ternd "$WORK/wild.yaml"
U4=$(port_of udp 0.0.0.0); U6=$(port_of udp '[::]'); T4=$(port_of tcp 0.0.0.0)
grep '"event":"self_addresses"' "$WORK/ternd.log" | grep -q '"reason":"start".*10\.99\.0\.1.*fd99::1' &&
    pass "the host's addresses logged at start" || fail "self_addresses at start lists the veth's addresses"

# shellcheck disable=SC2046
refused "wildcard, IPv4 over UDP: listener ports, relayed ports, every encoding" \
    --server 127.0.0.1 --port "$U4" --control 127.0.0.1 --peer-alloc --b-permit 127.0.0.1,10.99.0.1 \
    $(targets4 "$U4" "$U6" "$T4" @B 50000 50999)
refused "wildcard, IPv4 over TCP" --tcp --server 127.0.0.1 --port "$T4" --control 127.0.0.1 \
    --peer-alloc --b-permit 127.0.0.1 "127.0.0.1:$U4" "[::ffff:0:10.99.0.1]:$T4" "10.99.0.1:@B" "127.0.0.1:@B"
refused "wildcard, IPv6 over UDP: ::1, the veth's, :: at listener and relayed ports" \
    --server ::1 --port "$U6" --family 6 --control ::1 --peer-alloc --b-permit ::1,fd99::1 \
    "[::1]:$U4" "[::1]:$U6" "[::1]:$T4" "[::1]:@B" "[::1]:50000" "[fd99::1]:$U6" "[fd99::1]:@B" "[fd99::1]:50999" "[::]:$U6"
# Not the relay: another port of its own addresses is another service (allowed).
client "wildcard, other ports allowed" --server 127.0.0.1 --port "$U4" "127.0.0.1:49999" "[10.99.0.1]:51000" &&
    { [ "$(grep -c ' bind=200$' "$WORK/cl.out")" = 2 ] && pass "other ports of the relay's addresses are allowed" ||
        { fail "other ports allowed"; sed 's/^/    /' "$WORK/cl.out" >&2; }; }

# An address added after start is the relay too, within the refresh bound (netlink: at once;
# 10 s is generous for a loaded machine, the periodic fallback is 2 s).
client "before it is added" --server 127.0.0.1 --port "$U4" "10.99.0.7:$U4" &&
    { grep -q ' bind=200$' "$WORK/cl.out" && pass "10.99.0.7 is not the relay before it is added" ||
        { fail "10.99.0.7 before it is added"; sed 's/^/    /' "$WORK/cl.out" >&2; }; }
ip addr add 10.99.0.7/24 dev d0
ip addr add fd99::7/64 dev d0 nodad
new_refused() {
    timeout 30 python3 "$CLIENT" --server 127.0.0.1 --port "$U4" "10.99.0.7:$U4" "[::ffff:0:10.99.0.7]:50999" \
        "[64:ff9b::10.99.0.7]:50000" >"$WORK/uc.log" 2>&1 &&
        [ "$(grep -c ' bind=403$' "$WORK/uc.log")" = 3 ] &&
        timeout 30 python3 "$CLIENT" --server ::1 --port "$U6" --family 6 "[fd99::7]:$U6" >>"$WORK/uc.log" 2>&1 &&
        [ "$(grep -c ' bind=403$' "$WORK/uc.log")" = 4 ]
}
within 10 "addresses added after start are refused" new_refused
grep '"event":"self_addresses"' "$WORK/ternd.log" | grep -q '"reason":"netlink".*10\.99\.0\.7.*fd99::7' &&
    pass "the change logged" || fail "self_addresses after the change lists 10.99.0.7 and fd99::7"
stop_ternd
[ "$(counter binding_success)" = 0 ] && pass "no Binding request reached the relay's listeners through it" ||
    fail "binding_success=$(counter binding_success): the relay answered itself"
v=$(counter denied_self || true); w=$(counter drop_self || true)
[ -n "$v" ] && [ "$v" -gt 100 ] && [ -n "$w" ] && [ "$w" -gt 100 ] && pass "refusals counted: denied_self=$v drop_self=$w" ||
    fail "refusals counted: denied_self=$v drop_self=$w"
grep -q '"event":"peer_denied".*"reason":"SELF"' "$WORK/ternd.log" && pass "refusals logged (peer_denied SELF)" ||
    fail "no peer_denied SELF line"
cp "$WORK/ternd.log" "$WORK/wild.log"

# ---- specific listeners and relay addresses ----
cat >"$WORK/specific.yaml" <<YAML
server: { realm: tern.test, workers: 2 }
listen:
  - { transport: udp, address: 10.99.0.1, port: 0 }
  - { transport: udp, address: "fd99::1", port: 0 }
  - { transport: tcp, address: 10.99.0.1, port: 0 }
relay: { addresses: [10.99.0.1, "fd99::1"], ports: { min: 50000, max: 50999 } }
peers: { allow_loopback: true, allow_relay_to_relay: false, allow: [10.99.0.0/24, "fd99::/64"] }
allocation: { max_per_user: 100 }
auth: { users: [ { name: alice, password: wonderland } ] }
log: { level: info, format: json }
YAML
start_ternd "$WORK/specific.yaml"
S4=$(port_of udp 10.99.0.1); S6=$(port_of udp '[fd99::1]'); ST4=$(port_of tcp 10.99.0.1)
targets_s() {
    local p ip
    for p in "$@"; do for ip in $(v4_forms 10.99.0.1) 0.0.0.0; do echo "[$ip]:$p"; done; done
}
# shellcheck disable=SC2046
refused "specific, IPv4 over UDP: listener ports, relayed ports, every encoding" \
    --server 10.99.0.1 --port "$S4" --control 127.0.0.1 --peer-alloc --b-permit 10.99.0.1 \
    $(targets_s "$S4" "$S6" "$ST4" @B 50000 50999)
refused "specific, IPv6 over UDP" --server fd99::1 --port "$S6" --family 6 --control ::1 \
    --peer-alloc --b-permit fd99::1 "[fd99::1]:$S6" "[fd99::1]:$S4" "[fd99::1]:@B" "[fd99::1]:50999" "[::]:$S6"
# The loopback is not the relay here (nothing of it listens there): allowed.
client "specific, loopback allowed" --server 10.99.0.1 --port "$S4" "127.0.0.1:$S4" "[::ffff:127.0.0.1]:50000" &&
    { [ "$(grep -c ' bind=200$' "$WORK/cl.out")" = 2 ] && pass "specific: the loopback at the same ports is allowed" ||
        { fail "specific: loopback allowed"; sed 's/^/    /' "$WORK/cl.out" >&2; }; }
stop_ternd
[ "$(counter binding_success)" = 0 ] && pass "specific: no Binding request reached the relay through it" ||
    fail "specific: binding_success=$(counter binding_success)"

# ---- the default: relay to relay allowed, the listeners still refused ----
sed 's/allow_relay_to_relay: false, //' "$WORK/wild.yaml" >"$WORK/default.yaml"
start_ternd "$WORK/default.yaml"
U4=$(port_of udp 0.0.0.0); U6=$(port_of udp '[::]'); T4=$(port_of tcp 0.0.0.0)
refused "relay to relay allowed: the listener ports still refused" --server 127.0.0.1 --port "$U4" \
    --control 127.0.0.1 "[::ffff:0:127.0.0.1]:$U4" "10.99.0.1:$U6" "127.0.0.3:$T4"
client "relay to relay" --server 127.0.0.1 --port "$U4" --peer-alloc --b-permit 127.0.0.1,10.99.0.1 \
    "127.0.0.1:@B" "[::ffff:10.99.0.1]:@B" &&
    { [ "$(grep -c ' bind=200$' "$WORK/cl.out")" = 2 ] && grep -Eq '^b_data=[1-9]' "$WORK/cl.out" &&
        pass "relay to relay (another allocation's relayed address) works by default" ||
        { fail "relay to relay by default"; sed 's/^/    /' "$WORK/cl.out" >&2; }; }
stop_ternd
[ "$(counter binding_success)" = 0 ] && pass "default: no Binding request reached the relay through it" ||
    fail "default: binding_success=$(counter binding_success)"
finish
