#!/usr/bin/env bash
# test_icmp.sh: ICMP errors from peers reach UDP clients (RFC 8656 11), from real
# kernel-generated ICMP in network namespaces (addresses only inside them):
#
#   [relay ns: ternd + client on lo] --veth-- [router ns] --veth, MTU 1280-- [peer ns]
#   10.200.1.1, 2001:db8:1::1            forwards; 10.200.3.0/24 and 2001:db8:3::/64 are
#                                        "unreachable" routes there
#
# port unreachable (nothing listens on the peer's port), host unreachable (the router's
# unreachable route), packet too big (DONT-FRAGMENT datagrams over the 1280-byte link), for
# IPv4 and IPv6. The client (tern-turnc) decodes each Data indication's ICMP attribute; the
# relay's counters, /metrics and the allocation's QoS detail must agree.
. "$(dirname "$0")/lib.sh"
: "${TURNC:?TURNC must point at tern-turnc (set by CTest)}"

ID=$$
R=tern-icmp-r-$ID X=tern-icmp-x-$ID P=tern-icmp-p-$ID
netns_cleanup() {
    for n in "$R" "$X" "$P"; do ip netns del "$n" 2>/dev/null || true; done
}
trap 'netns_cleanup; cleanup' EXIT
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# ---- the three namespaces ----
for n in "$R" "$X" "$P"; do ip netns add "$n"; in_ns "$n" ip link set lo up; done
ip link add "ir$ID" netns "$R" type veth peer name "ixa$ID" netns "$X"
ip link add "ixb$ID" netns "$X" type veth peer name "ip$ID" netns "$P"
in_ns "$R" ip addr add 10.200.1.1/24 dev "ir$ID"
in_ns "$R" ip addr add 2001:db8:1::1/64 dev "ir$ID" nodad
in_ns "$R" ip link set "ir$ID" up
in_ns "$R" ip route add 10.200.0.0/16 via 10.200.1.2
in_ns "$R" ip -6 route add 2001:db8::/32 via 2001:db8:1::2
in_ns "$X" ip addr add 10.200.1.2/24 dev "ixa$ID"
in_ns "$X" ip addr add 2001:db8:1::2/64 dev "ixa$ID" nodad
in_ns "$X" ip addr add 10.200.2.1/24 dev "ixb$ID"
in_ns "$X" ip addr add 2001:db8:2::1/64 dev "ixb$ID" nodad
in_ns "$X" ip link set "ixa$ID" up
in_ns "$X" ip link set "ixb$ID" mtu 1280 up
in_ns "$X" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 \
    net.ipv4.icmp_ratelimit=0 net.ipv6.icmp.ratelimit=0
in_ns "$X" ip route add unreachable 10.200.3.0/24
in_ns "$X" ip -6 route add unreachable 2001:db8:3::/64
in_ns "$P" ip addr add 10.200.2.2/24 dev "ip$ID"
in_ns "$P" ip addr add 2001:db8:2::2/64 dev "ip$ID" nodad
in_ns "$P" ip link set "ip$ID" mtu 1280 up
in_ns "$P" ip route add default via 10.200.2.1
in_ns "$P" ip -6 route add default via 2001:db8:2::1
in_ns "$P" sysctl -qw net.ipv4.icmp_ratelimit=0 net.ipv6.icmp.ratelimit=0

# ---- ternd inside the relay namespace ----
cat >"$WORK/ternd-ns" <<EOF
#!/bin/sh
exec ip netns exec $R "$TERND" "\$@"
EOF
chmod +x "$WORK/ternd-ns"
TERND="$WORK/ternd-ns"
cat >"$WORK/icmp.yaml" <<'EOF'
server: { realm: tern.test, workers: 1 }
listen:
  - { transport: udp, address: 127.0.0.1, port: 0 }
relay: { addresses: [10.200.1.1, "2001:db8:1::1"] }
peers: { allow: [10.200.0.0/16, "2001:db8::/32"] }
auth: { users: [ { name: alice, password: alice-pass } ] }
log: { level: info, format: json }
EOF
start_ternd "$WORK/icmp.yaml"
U4=$(port_of udp 127.0.0.1)
OPS=$(grep '"event":"ops_listening"' "$WORK/ternd.log" | sed -E 's/.*"port":([0-9]+).*/\1/')

# turnc NAME ARGS...: one client run in the relay namespace; output in $WORK/NAME.out.
turnc() {
    local name=$1; shift
    in_ns "$R" timeout 20 "$TURNC" -s "127.0.0.1:$U4" "$@" >"$WORK/$name.out" 2>&1 || true
}
# expect_icmp NAME REGEX DESCRIPTION: the run printed a matching icmp line and no DATA with it.
expect_icmp() {
    if grep -Eq "^icmp $2 data_attr=no$" "$WORK/$1.out"; then pass "$3"; else
        fail "$3 (wanted /^icmp $2/)"; sed 's/^/    /' "$WORK/$1.out" >&2
    fi
}

turnc port4 -p 10.200.2.2:9 -n 3 -i 100 -w 1000
expect_icmp port4 'peer=10\.200\.2\.2:9 type=3 code=3 data=0' \
    "IPv4 port unreachable from the peer's kernel reaches the client as ICMP 3/3"
turnc host4 -p 10.200.3.5:9 -n 2 -i 100 -w 1000
expect_icmp host4 'peer=10\.200\.3\.5:9 type=3 code=1 data=0' \
    "IPv4 host unreachable from the router reaches the client as ICMP 3/1"
turnc ptb4 -D -l 1400 -p 10.200.2.2:9 -n 2 -i 100 -w 1000
expect_icmp ptb4 'peer=10\.200\.2\.2:9 type=3 code=4 data=1280' \
    "IPv4 fragmentation needed (DONT-FRAGMENT over the 1280-byte link) carries the MTU 1280"
turnc port6 -6 -p '[2001:db8:2::2]:9' -n 3 -i 100 -w 1000
expect_icmp port6 'peer=\[2001:db8:2::2\]:9 type=1 code=4 data=0' \
    "IPv6 port unreachable reaches the client as ICMPv6 1/4"
turnc host6 -6 -p '[2001:db8:3::5]:9' -n 2 -i 100 -w 1000
expect_icmp host6 'peer=\[2001:db8:3::5\]:9 type=1 code=0 data=0' \
    "IPv6 no route (the router's unreachable route) reaches the client as ICMPv6 1/0"
turnc ptb6 -6 -D -l 1400 -p '[2001:db8:2::2]:9' -n 2 -i 100 -w 1000
expect_icmp ptb6 'peer=\[2001:db8:2::2\]:9 type=2 code=0 data=1280' \
    "IPv6 packet too big carries the MTU 1280"

# A peer that answers: data comes back as DATA, never as ICMP (the echo peer in its namespace).
ip netns exec "$P" turnutils_peer -p 7000 -L 10.200.2.2 >"$WORK/peer.log" 2>&1 &
PEER_PID=$!
sleep 0.3
turnc echo4 -p 10.200.2.2:7000 -n 3 -i 50 -w 500
if grep -q '^totals sent=3 data=3 icmp=0$' "$WORK/echo4.out"; then pass "a live peer's answers arrive as data, no ICMP"; else
    fail "live peer"; sed 's/^/    /' "$WORK/echo4.out" >&2
fi

# ---- what the relay counted and shows ----
shown=$(cat "$WORK"/{port4,host4,ptb4,port6,host6,ptb6}.out | grep -c '^icmp ' || true)
in_ns "$R" curl -s "http://127.0.0.1:$OPS/metrics" >"$WORK/metrics"
unreach=$(grep -E '^tern_qos_icmp_total\{kind="unreachable"\}' "$WORK/metrics" | awk '{print $2}' || true)
ptb=$(grep -E '^tern_qos_icmp_total\{kind="packet_too_big"\}' "$WORK/metrics" | awk '{print $2}' || true)
[ "${unreach:-0}" -ge 4 ] && [ "${ptb:-0}" -ge 2 ] &&
    pass "/metrics: tern_qos_icmp_total unreachable=$unreach packet_too_big=$ptb" ||
    fail "/metrics icmp totals: unreachable=$unreach packet_too_big=$ptb"
in_ns "$R" curl -s "http://127.0.0.1:$OPS/api/v1/allocations" >"$WORK/list.json"
if python3 - "$WORK/list.json" <<'EOF'; then pass "the allocation list shows each call's icmp summary with the path MTU"; else fail "icmp in the allocation list"; fi
import json, sys
allocs = json.load(open(sys.argv[1]))["allocations"]
mtus = [a["qos"]["icmp"]["path_mtu"] for a in allocs if a.get("qos") and a["qos"].get("icmp")]
unreach = sum(a["qos"]["icmp"]["unreachable"] for a in allocs if a.get("qos") and a["qos"].get("icmp"))
assert mtus.count(1280) == 2, mtus
assert unreach >= 4, unreach
EOF
stop_ternd
relayed=$(counter icmp_to_client)
read_=$(counter peer_icmp)
if [ "$relayed" = "$shown" ] && [ "$read_" -ge "$relayed" ]; then
    pass "counters: icmp_to_client=$relayed equals the $shown ICMP lines the client printed (peer_icmp=$read_)"
else
    fail "counters: icmp_to_client=$relayed, client lines $shown, peer_icmp=$read_"
fi
finish
