#!/usr/bin/env bash
# test_offload.sh: the kernel fast path (relay.offload, docs/offload.md) on a veth topology in
# network namespaces (addresses only inside them):
#
#   [client ns] --veth-- [relay ns: ternd, forwarding on] --veth-- [peer ns]
#   10.210.1.2            10.210.1.1 (listener)  10.210.2.1 (relay)   10.210.2.2
#   fd00:210:1::2         fd00:210:1::1          fd00:210:2::1        fd00:210:2::2
#
# The senders' TX checksum offload is off (a veth would otherwise hand over partial checksums,
# which no real NIC does) and GRO is on at the far ends (a native XDP redirect into a veth
# needs it). The same QoS ground truth (tern-mediagen: scripted loss, bursts, duplicates,
# reordering, wraps, an SSRC change, restarts; client in the client namespace, its peer socket
# in the peer namespace) runs through ternd with relay.offload off, then auto (native XDP):
# both must match the offline reference exactly (counts) and within its tolerances (jitter), in
# the API detail, the list entry, the quality record and /metrics, and with offload the
# datagrams must have gone through the program (its counters, "datapath": "xdp"). Then
# ChannelData both ways over IPv4 and IPv6 (tern-turnc -C against an echo peer) with nothing
# lost; after the allocation is deleted nothing more is forwarded; and no receiver ever counted
# a UDP checksum error. First, the fallbacks: forwarding off, and no CAP_BPF: user space, said
# so. TERN_OFFLOAD_ON (default auto) is the mode under test and TERN_OFFLOAD_PATH (default xdp)
# the path ternd must report and the allocation views must name (test_offload_tc.sh: tc, tc).
. "$(dirname "$0")/lib.sh"
. "$TERN_SOURCE_DIR/tests/qos/qoslib.sh"
ON=${TERN_OFFLOAD_ON:-auto}
XPATH=${TERN_OFFLOAD_PATH:-xdp}
: "${TURNC:?TURNC must point at tern-turnc (set by CTest)}"

ID=$$
C=tern-off-c-$ID R=tern-off-r-$ID P=tern-off-p-$ID
ECHO_PIDS=()
netns_cleanup() {
    local p
    for p in "${ECHO_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for n in "$C" "$R" "$P"; do ip netns del "$n" 2>/dev/null || true; done
}
trap 'netns_cleanup; qos_cleanup' EXIT
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

command -v ethtool >/dev/null || { fail "ethtool missing (Debian package ethtool)"; finish; }

# ---- the three namespaces ----
for n in "$C" "$R" "$P"; do ip netns add "$n"; in_ns "$n" ip link set lo up; done
ip link add "oc$ID" netns "$C" type veth peer name "orc$ID" netns "$R"
ip link add "op$ID" netns "$P" type veth peer name "orp$ID" netns "$R"
in_ns "$C" ip addr add 10.210.1.2/24 dev "oc$ID"
in_ns "$C" ip addr add 10.210.1.3/24 dev "oc$ID" # where a mobile client moves (RFC 8016)
in_ns "$C" ip addr add fd00:210:1::2/64 dev "oc$ID" nodad
in_ns "$R" ip addr add 10.210.1.1/24 dev "orc$ID"
in_ns "$R" ip addr add fd00:210:1::1/64 dev "orc$ID" nodad
in_ns "$R" ip addr add 10.210.2.1/24 dev "orp$ID"
in_ns "$R" ip addr add fd00:210:2::1/64 dev "orp$ID" nodad
in_ns "$P" ip addr add 10.210.2.2/24 dev "op$ID"
in_ns "$P" ip addr add fd00:210:2::2/64 dev "op$ID" nodad
for nd in "$C:oc$ID" "$R:orc$ID" "$R:orp$ID" "$P:op$ID"; do
    in_ns "${nd%%:*}" ip link set "${nd#*:}" up
    # No partial checksums from the senders; GRO so that redirected frames are received.
    in_ns "${nd%%:*}" ethtool -K "${nd#*:}" tx off gro on >/dev/null 2>&1 || true
done
in_ns "$C" ip route add default via 10.210.1.1
in_ns "$C" ip -6 route add default via fd00:210:1::1
in_ns "$P" ip route add default via 10.210.2.1
in_ns "$P" ip -6 route add default via fd00:210:2::1
# bpf_fib_lookup answers only where forwarding is on (docs/offload.md, pitfalls).
in_ns "$R" sysctl -qw net.ipv4.conf.all.forwarding=1 net.ipv6.conf.all.forwarding=1

# ---- ternd, curl and the generator in their namespaces ----
TERND_BIN=$TERND
cat >"$WORK/ternd-ns" <<EOF
#!/bin/sh
exec ip netns exec $R "$TERND" "\$@"
EOF
chmod +x "$WORK/ternd-ns"
TERND="$WORK/ternd-ns"
curl() { ip netns exec "$R" /usr/bin/curl "$@"; } # the ops API listens in the relay namespace

# gen_start NAME ARGS...: tern-mediagen in the client namespace, its peer in the peer one.
gen_start() {
    local name=$1; shift
    ip netns exec "$C" "$MEDIAGEN" --server "10.210.1.1:$U4" --user alice --password wonderland \
        --realm tern.test --peer-netns "$P" --peer-ip 10.210.2.2 \
        --log "$WORK/$name.jsonl" --hold 60 "$@" >"$WORK/$name.err" 2>&1 &
    GEN_PID[$name]=$!
}

start_offload_ternd() {
    local mode=$1 lifetime=${2:-600} mobility=${3:-false}
    RECORDS="$WORK/quality-$mode.jsonl"
    cat >"$WORK/tern-$mode.yaml" <<YAML
allocation: { default_lifetime: $lifetime, mobility: $mobility }
server: { realm: tern.test, workers: 2 }
listen:
  - { transport: udp, address: 10.210.1.1, port: 0 }
  - { transport: udp, address: "fd00:210:1::1", port: 0 }
relay:
  addresses: [10.210.2.1, "fd00:210:2::1"]
  ports: { min: 40000, max: 49999 }
  offload: $mode
peers: { allow: [10.210.0.0/16, "fd00:210::/32"] }
auth: { users: [ { name: alice, password: wonderland } ] }
qos: { enabled: true, record_file: "$RECORDS" }
ops: { listen: "127.0.0.1:0" }
log: { level: debug, format: json }
YAML
    start_ternd "$WORK/tern-$mode.yaml"
    cp "$WORK/ternd.log" "$WORK/ternd-$mode.start.log"
    U4=$(port_of udp 10.210.1.1)
    U6=$(port_of udp "[fd00:210:1::1]")
    local op
    op=$(grep '"event":"ops_listening"' "$WORK/ternd.log" | head -1 | sed -E 's/.*"port":([0-9]+).*/\1/')
    OPS_BASE="http://127.0.0.1:$op"
}

# xdp_stat RESULT: the program's counter from /metrics (0 when absent).
xdp_stat() {
    curl -s "$OPS_BASE/metrics" | grep -E "^tern_offload_xdp_datagrams_total\{result=\"$1\"\}" |
        awk '{print $2}' | grep . || echo 0
}

# csum_errors NS: UDP checksum errors the namespace's kernel counted (IPv4 + IPv6).
csum_errors() {
    local v4 v6
    v4=$(in_ns "$1" awk '/^Udp:/ { if (!h) { for (i = 1; i <= NF; i++) if ($i == "InCsumErrors") c = i; h = 1 } else print $c }' /proc/net/snmp)
    v6=$(in_ns "$1" awk '$1 == "Udp6InCsumErrors" { print $2 }' /proc/net/snmp6)
    echo $((${v4:-0} + ${v6:-0}))
}

# ---- the fallbacks: each says why ternd runs in user space ----
# fallback_check DESCRIPTION REASON-REGEX: the last start logged path=user with that reason.
fallback_check() {
    if grep '"event":"offload"' "$WORK/ternd.log" | grep '"path":"user"' | grep -Eq "$2"; then
        pass "$1: ternd says it runs in user space, and why"
    else
        fail "$1: no offload path=user line matching /$2/"
        grep '"event":"offload' "$WORK/ternd.log" | sed 's/^/    /' >&2
    fi
}
in_ns "$R" sysctl -qw net.ipv4.conf.all.forwarding=0 "net.ipv4.conf.orc$ID.forwarding=0" \
    "net.ipv4.conf.orp$ID.forwarding=0"
start_offload_ternd "$ON"
fallback_check "forwarding off" 'forwarding is off'
stop_ternd
in_ns "$R" sysctl -qw net.ipv4.conf.all.forwarding=1 net.ipv6.conf.all.forwarding=1
in_ns "$R" sysctl -qw "net.ipv4.conf.orc$ID.forwarding=1" "net.ipv4.conf.orp$ID.forwarding=1"
# Root without CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN cannot load BPF.
cat >"$WORK/ternd-nocap" <<EOF
#!/bin/sh
exec ip netns exec $R setpriv --inh-caps=-bpf,-net_admin,-sys_admin \
    --bounding-set=-bpf,-net_admin,-sys_admin "$TERND_BIN" "\$@"
EOF
chmod +x "$WORK/ternd-nocap"
TERND="$WORK/ternd-nocap"
start_offload_ternd "$ON"
fallback_check "no CAP_BPF" 'privileges|did not load|did not open'
stop_ternd
TERND="$WORK/ternd-ns"

# ---- the QoS ground truth, offload off then auto (native XDP on veth) ----
for mode in off "$ON"; do
    start_offload_ternd "$mode"
    if [ "$mode" != off ]; then
        if grep '"event":"offload"' "$WORK/ternd.log" | grep -q "\"path\":\"$XPATH\""; then
            pass "$mode: ternd runs the $XPATH path ($(grep -c '"event":"offload_attached"' "$WORK/ternd.log") interfaces)"
        else
            fail "$mode: not the $XPATH path; ternd said:"
            grep '"event":"offload' "$WORK/ternd.log" | sed 's/^/    /' >&2
        fi
    fi
    gen_start "legs-$mode" --seed 12 --duration 6 \
        --stream client:audio,drop=3,burst=1:4,dup=3 --stream client:video,swap=2,hold=1:3 \
        --stream peer:audio,swap=4 --stream peer:video,drop=2,dup=2 --peer-delay 20
    gen_start "edges-$mode" --seed 13 --duration 6 \
        --stream client:audio,seq=65500,ts=4294960000,ssrc_change=3 \
        --stream peer:video,seq=65400,ts=4294967000,restart=3 \
        --stream peer:audio,seq=65530,restart=2
    for n in "legs-$mode" "edges-$mode"; do gen_wait_holding "$n" && gen_inspect "$n"; done
    if [ "$mode" != off ]; then
        dp=${XPATH%-generic}
        if grep -q "\"datapath\": *\"$dp\"" "$WORK/legs-$mode.detail.json" &&
            grep -q "\"datapath\": *\"$dp\"" "$WORK/legs-$mode.entry.json"; then
            pass "$mode: the allocation detail and list entry say \"datapath\": \"$dp\""
        else
            fail "$mode: no \"datapath\": \"$dp\" in the allocation views"
        fi
        tp=$(xdp_stat to_peer) tc=$(xdp_stat to_client)
        sent_c=$(grep -h '"ev":"tx"' "$WORK"/legs-$mode.jsonl "$WORK"/edges-$mode.jsonl | grep -c '"dir":"client"' || true)
        # Everything but the first datagrams (neighbour not yet resolved) and STUN went
        # through the program.
        if [ "$tp" -gt $((sent_c * 8 / 10)) ] && [ "$tc" -gt 100 ]; then
            pass "$mode: the program forwarded to_peer=$tp (of $sent_c client datagrams) to_client=$tc"
        else
            fail "$mode: the program forwarded to_peer=$tp (of $sent_c) to_client=$tc"
        fi
        rtt=$("$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["peers"][0]["peer_leg"]["rtt"]["measurements"])' "$WORK/legs-$mode.detail.json" 2>/dev/null || echo 0)
        [ "${rtt:-0}" -gt 0 ] && pass "$mode: ICE-style checks still give the peer-leg RTT ($rtt samples)" ||
            fail "$mode: no peer-leg RTT with offload on"
    fi
    for n in "legs-$mode" "edges-$mode"; do gen_release "$n"; done
    for n in "legs-$mode" "edges-$mode"; do gen_record "$n"; done
    qos_metrics "legs-$mode" "edges-$mode"

    # ---- ChannelData both ways, IPv4 and IPv6, against an echo peer ----
    if [ "$mode" != off ]; then
        in_ns "$P" turnutils_peer -p 7000 -L 10.210.2.2 -L fd00:210:2::2 >"$WORK/peer.log" 2>&1 &
        ECHO_PIDS+=($!)
        # Every checksum the receivers get, recomputed from the frames themselves (a receiving
        # skb marked CHECKSUM_UNNECESSARY would not be verified by the stack, so InCsumErrors
        # alone could miss a wrong one).
        rm -f "$WORK/tap.stop"
        in_ns "$P" "$PY" "$TERN_SOURCE_DIR/tests/integration/udp_csum_tap.py" "op$ID" "$WORK/tap.stop" >"$WORK/tap-p.out" 2>&1 &
        TAP_P=$!
        in_ns "$C" "$PY" "$TERN_SOURCE_DIR/tests/integration/udp_csum_tap.py" "oc$ID" "$WORK/tap.stop" >"$WORK/tap-c.out" 2>&1 &
        TAP_C=$!
        sleep 0.3
        for fam in 4 6; do
            if [ $fam = 4 ]; then srv="10.210.1.1:$U4" peer=10.210.2.2:7000 six=(); else
                srv="[fd00:210:1::1]:$U6" peer="[fd00:210:2::2]:7000" six=(-6); fi
            before=$(xdp_stat to_client)
            in_ns "$C" timeout 30 "$TURNC" -s "$srv" -u alice -P wonderland "${six[@]}" -C -R 111 -l 160 -n 500 -i 2 \
                -w 1000 -d -p "$peer" >"$WORK/echo$fam.out" 2>&1 || true
            after=$(xdp_stat to_client)
            if grep -q '^totals sent=500 data=0 icmp=0 chdata=500$' "$WORK/echo$fam.out" &&
                [ $((after - before)) -ge 450 ]; then
                pass "IPv$fam: 500 ChannelData out, 500 back, none lost ($((after - before)) back through the kernel)"
            else
                fail "IPv$fam: ChannelData echo (XDP to_client +$((after - before)))"
                sed 's/^/    /' "$WORK/echo$fam.out" >&2
            fi
            # The allocation is gone: what the peer sends to its old relayed address must not
            # be forwarded any more (the binding went with it).
            relayed=$(sed -n 's/^allocated relayed=//p' "$WORK/echo$fam.out")
            before=$(xdp_stat to_client)
            in_ns "$P" "$PY" - "$relayed" <<'PY'
import socket, sys
host, port = sys.argv[1].rsplit(":", 1)
host = host.strip("[]")
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM)
s.bind(("10.210.2.2" if fam == socket.AF_INET else "fd00:210:2::2", 7100))
for i in range(50):
    s.sendto(b"\x80\x6f" + bytes(30), (host, int(port)))
PY
            sleep 0.3
            after=$(xdp_stat to_client)
            [ "$after" = "$before" ] && pass "IPv$fam: nothing forwarded after the allocation was deleted" ||
                fail "IPv$fam: $((after - before)) datagrams forwarded after the deletion"
        done
        touch "$WORK/tap.stop"
        wait "$TAP_P" "$TAP_C" || true
        for t in p c; do
            r=$(cat "$WORK/tap-$t.out")
            okc=$(echo "$r" | sed -nE 's/^udp_csum ok=([0-9]+) bad=([0-9]+)$/\1/p')
            badc=$(echo "$r" | sed -nE 's/^udp_csum ok=([0-9]+) bad=([0-9]+)$/\2/p')
            [ "${okc:-0}" -ge 950 ] && [ "${badc:-1}" = 0 ] &&
                pass "$mode: the $([ $t = p ] && echo peer || echo client) got $okc UDP datagrams from the relay, every checksum right (recomputed from the frames)" ||
                fail "$mode: checksums at the $([ $t = p ] && echo peer || echo client): $r"
        done
    fi
    stop_ternd
    cp "$WORK/ternd.log" "$WORK/ternd-$mode.log"
    if [ "$mode" != off ]; then
        b=$(counter offload_bound) u=$(counter offload_unbound) st=$(counter offload_streams_handed)
        [ "${b:-0}" -ge 4 ] && [ "$b" = "$u" ] && [ "${st:-0}" -ge 7 ] &&
            pass "$mode: $b channels handed to the kernel, $u taken back, $st RTP streams counted in BPF maps" ||
            fail "$mode: offload_bound=$b offload_unbound=$u offload_streams_handed=$st"
        grep -q '"event":"offload_stats"' "$WORK/ternd.log" && pass "$mode: the program's counters logged at stop" ||
            fail "$mode: no offload_stats event"
    fi
done

# ---- expiry mid-stream: forwarded until the allocation expires, not one datagram after ----
# Allocations live 2 s here; the client sends ChannelData for 4 s without refreshing. Every
# datagram the kernel forwarded to the peer must come back (the echo) and nothing may be
# forwarded after the expiry: the binding's expiry stops the program at that instant, before
# user space even notices.
start_offload_ternd "$ON" 2
in_ns "$P" turnutils_peer -p 7000 -L 10.210.2.2 >"$WORK/peer2.log" 2>&1 &
ECHO_PIDS+=($!)
sleep 0.3
tp0=$(xdp_stat to_peer) tc0=$(xdp_stat to_client) ex0=$(($(xdp_stat pass_expired) + $(xdp_stat pass_no_binding)))
in_ns "$C" timeout 30 "$TURNC" -s "10.210.1.1:$U4" -u alice -P wonderland -C -R 111 -l 160 \
    -n 400 -i 10 -w 1000 -p 10.210.2.2:7000 >"$WORK/expiry.out" 2>&1 || true
sleep 1.2
tp=$(($(xdp_stat to_peer) - tp0)) tc=$(($(xdp_stat to_client) - tc0))
ex=$(($(xdp_stat pass_expired) + $(xdp_stat pass_no_binding) - ex0))
got=$(sed -nE 's/^totals .* chdata=([0-9]+)$/\1/p' "$WORK/expiry.out")
if [ "${got:-0}" -ge 100 ] && [ "${got:-0}" -lt 400 ] && [ "$tc" -ge $((tp - 2)) ] &&
    [ "$tc" -le "$tp" ] && [ "$got" -ge "$tc" ] && [ "$ex" -ge 100 ]; then
    pass "expiry: $tp forwarded to the peer, $tc echoes back through the kernel, $got received; $ex after the expiry went up, none forwarded"
else
    fail "expiry: to_peer +$tp to_client +$tc received $got passed-after-expiry +$ex"
    sed 's/^/    /' "$WORK/expiry.out" >&2
fi
stop_ternd

# ---- a reload that makes the peer policy refuse the peer: the kernel stops forwarding to it ----
# The binding was checked at ChannelBind; a reload that drops the peer's network from
# peers.allow (10.210.2.2 is then private, refused) must stop the fast path at once, not at the
# channel's expiry: the worker re-checks every binding in the pass after it adopts the reload.
start_offload_ternd "$ON"
in_ns "$P" turnutils_peer -p 7001 -L 10.210.2.2 >"$WORK/peer3.log" 2>&1 &
ECHO_PIDS+=($!)
sleep 0.3
in_ns "$C" timeout 30 "$TURNC" -s "10.210.1.1:$U4" -u alice -P wonderland -C -R 111 -l 160 \
    -n 400 -i 10 -w 1000 -p 10.210.2.2:7001 >"$WORK/deny.out" 2>&1 &
DENY_PID=$!
sleep 1
pre=$(xdp_stat to_peer)
sleep 0.5
before=$(xdp_stat to_peer)
sed -i 's|^peers: { allow: \[10.210.0.0/16, "fd00:210::/32"\] }|peers: { allow: ["fd00:210::/32"] }|' "$WORK/tern-$ON.yaml"
kill -HUP "$TERND_PID"
for _ in $(seq 50); do grep -q '"event":"config_reloaded"' "$WORK/ternd.log" && break; sleep 0.05; done
sleep 0.2
at=$(xdp_stat to_peer)
sleep 1
after=$(xdp_stat to_peer)
wait "$DENY_PID" || true
got=$(sed -nE 's/^totals .* chdata=([0-9]+)$/\1/p' "$WORK/deny.out")
# The kernel forwarded in the half second before the reload; from the reload's adoption on,
# nothing (the window between sampling 'before' and the adoption can be shorter than a packet).
if grep -q '"event":"config_reloaded"' "$WORK/ternd.log" && [ "$before" -gt "$pre" ] &&
    [ "$after" = "$at" ] && [ "${got:-0}" -gt 50 ] && [ "${got:-0}" -lt 350 ]; then
    pass "reload refusing the peer: the kernel forwarded $((before - pre)) in the half second before, $((at - before)) more by the reload, none in the second after; $got of 400 echoed"
else
    fail "deny by reload: to_peer half_second_before=$pre before=$before at_reload=$at a_second_later=$after echoed=$got"
    grep -E '"event":"(config_reloaded|config_problem|permissions_revoked)"' "$WORK/ternd.log" | sed 's/^/    /' >&2
fi
grep -q '"event":"permissions_revoked"' "$WORK/ternd.log" && pass "permissions_revoked logged for the refused peer" ||
    fail "no permissions_revoked after the policy reload"
stop_ternd

# ---- mobility (RFC 8016): the kernel's bindings follow a client that moves ----
# The fast path's bindings are keyed by the client's address: when the client refreshes from a
# new one with its ticket, its allocation's bindings go and come back for the new address (on
# whichever worker adopts it). tern-turnc moves three times (new port and, from the client
# namespace's second address, a new IP); the channel must keep going through the kernel.
start_offload_ternd "$ON" 600 true
in_ns "$P" turnutils_peer -p 7003 -L 10.210.2.2 >"$WORK/peer5.log" 2>&1 &
ECHO_PIDS+=($!)
sleep 0.3
tp0=$(xdp_stat to_peer) tc0=$(xdp_stat to_client)
in_ns "$C" timeout 30 "$TURNC" -s "10.210.1.1:$U4" -u alice -P wonderland -C -R 111 -l 160 \
    -n 400 -i 5 -M 100 -B 10.210.1.3 -w 500 -p 10.210.2.2:7003 >"$WORK/mobile.out" 2>&1 || true
tp=$(($(xdp_stat to_peer) - tp0)) tc=$(($(xdp_stat to_client) - tc0))
got=$(sed -nE 's/^totals .* chdata=([0-9]+)$/\1/p' "$WORK/mobile.out")
moves=$(grep -c '^moved .*local=10.210.1.3:.* code=0' "$WORK/mobile.out" || true)
curl -s "$OPS_BASE/api/v1/allocations" >"$WORK/mobile.json"
view=$(python3 -c '
import json, sys
d = json.load(open(sys.argv[1])); a = (d["allocations"] if isinstance(d, dict) else d)[0]
print(a["moves"], a["client"]["address"] if isinstance(a["client"], dict) else a["client"], a["datapath"])' "$WORK/mobile.json" 2>&1 || true)
# After each move the first datagrams go up to user space (the binding comes back with the
# Refresh's answer, before them, but the kernel counts what it forwarded): most of the 400 must
# still have gone through the kernel, both ways.
if [ "$moves" = 3 ] && [ "${got:-0}" -ge 396 ] && [ "$tp" -ge 300 ] && [ "$tc" -ge 300 ] &&
    [[ "$view" == "3 10.210.1.3"*" $XPATH" ]]; then
    pass "mobility: 3 moves (to 10.210.1.3), $got of 400 echoed, the kernel forwarded $tp to the peer and $tc back; the allocation: $view"
else
    fail "mobility over the fast path: moves=$moves echoed=$got to_peer=+$tp to_client=+$tc view='$view'"
    sed 's/^/    /' "$WORK/mobile.out" | grep -v '^    data' >&2
fi
stop_ternd

# ---- wildcard listeners: auto on every interface; what is not ours passes unchanged ----
# With a wildcard listener auto attaches to every interface that is up (loopback aside): on a
# host that is its real NIC, carrying everything else the host does. Here both veths of the
# relay namespace play that part while the namespace also routes between client and peer:
# a TCP transfer over IPv6 (bytes compared; neighbour discovery on the way), UDP to another
# socket of the relay namespace (every datagram echoed unchanged) work while the program sits
# in front of them, and a TURN channel is still offloaded.
if [ "$ON" = auto ]; then
    sed -e 's|address: 10.210.1.1, port: 0|address: 0.0.0.0, port: 0|' \
        -e 's|address: "fd00:210:1::1", port: 0|address: "::", port: 0|' \
        -e 's|^peers: .*|peers: { allow: [10.210.0.0/16, "fd00:210::/32"] }|' "$WORK/tern-auto.yaml" >"$WORK/tern-wild.yaml"
    start_ternd "$WORK/tern-wild.yaml"
    op=$(grep '"event":"ops_listening"' "$WORK/ternd.log" | head -1 | sed -E 's/.*"port":([0-9]+).*/\1/')
    OPS_BASE="http://127.0.0.1:$op"
    UW=$(port_of udp 0.0.0.0)
    wl=$(grep '"event":"offload"' "$WORK/ternd.log" | head -1 || true)
    echo "$wl" | grep -q '"path":"xdp"' && echo "$wl" | grep -q "orc$ID" && echo "$wl" | grep -q "orp$ID" &&
        pass "wildcard listener: auto attached to every interface of the namespace ($(echo "$wl" | sed -E 's/.*"interfaces":"([^"]*)".*/\1/'))" ||
        fail "wildcard listener: ternd said $wl"
    p0=$(($(xdp_stat pass_other) + $(xdp_stat pass_no_binding)))
    head -c 4000000 /dev/urandom >"$WORK/blob"
    in_ns "$P" "$PY" -c '
import hashlib, socket, sys
s = socket.socket(socket.AF_INET6); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("fd00:210:2::2", 7400)); s.listen(1); s.settimeout(20)
c, _ = s.accept(); h = hashlib.sha256()
while True:
    b = c.recv(65536)
    if not b: break
    h.update(b)
print(h.hexdigest())' >"$WORK/tcp.sum" 2>&1 &
    TCP_PID=$!
    sleep 0.3
    in_ns "$C" "$PY" -c '
import socket, sys
s = socket.create_connection(("fd00:210:2::2", 7400), timeout=20)
s.sendall(open(sys.argv[1], "rb").read()); s.close()' "$WORK/blob" 2>"$WORK/tcp.err" || true
    wait "$TCP_PID" || true
    [ "$(cat "$WORK/tcp.sum")" = "$(sha256sum "$WORK/blob" | cut -d" " -f1)" ] &&
        pass "wildcard: 4 MB over TCP/IPv6 through the relay namespace, byte for byte" ||
        fail "wildcard: TCP transfer differs: $(cat "$WORK/tcp.sum" "$WORK/tcp.err" | tail -2)"
    in_ns "$R" "$PY" -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("10.210.2.1", 7500)); s.settimeout(5)
try:
    while True:
        d, a = s.recvfrom(2048); s.sendto(d, a)
except socket.timeout:
    pass' &
    UDP_PID=$!
    sleep 0.3
    got=$(in_ns "$C" "$PY" -c '
import os, socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2); n = 0
for i in range(500):
    d = bytes([0x40, 0x00]) + os.urandom(98) if i % 2 else os.urandom(100)  # half look like ChannelData
    s.sendto(d, ("10.210.2.1", 7500))
    try:
        n += s.recvfrom(2048)[0] == d
    except socket.timeout:
        pass
print(n)')
    kill "$UDP_PID" 2>/dev/null || true
    p1=$(($(xdp_stat pass_other) + $(xdp_stat pass_no_binding)))
    [ "$got" = 500 ] && pass "wildcard: 500 UDP datagrams (half shaped like ChannelData) to another socket, all echoed unchanged" ||
        fail "wildcard: $got of 500 UDP datagrams echoed unchanged"
    [ $((p1 - p0)) -ge 1000 ] && pass "wildcard: the program saw that traffic and passed it ($((p1 - p0)) passed)" ||
        fail "wildcard: the program passed only $((p1 - p0)) datagrams"
    before=$(xdp_stat to_client)
    in_ns "$C" timeout 30 "$TURNC" -s "10.210.1.1:$UW" -u alice -P wonderland -C -R 111 -l 160 -n 200 -i 2 \
        -w 1000 -d -p 10.210.2.2:7000 >"$WORK/wild.out" 2>&1 || true
    after=$(xdp_stat to_client)
    grep -q '^totals sent=200 data=0 icmp=0 chdata=200$' "$WORK/wild.out" && [ $((after - before)) -ge 180 ] &&
        pass "wildcard: a TURN channel through the wildcard listener is offloaded ($((after - before)) of 200 back through the kernel)" ||
        { fail "wildcard: TURN echo (to_client +$((after - before))): $(tail -2 "$WORK/wild.out")"
          grep -E '"event":"(offload_not_bound|offload_bound|allocation_created)"' "$WORK/ternd.log" | tail -4 | sed 's/^/    /' >&2
          curl -s "$OPS_BASE/metrics" | grep tern_offload_xdp | sed 's/^/    /' >&2; }
    stop_ternd
fi

# ---- TC: nothing left after a clean stop; after a crash, the next start removes the filter ----
# tc filters are no bpf_links in libbpf 1.1: a ternd killed with SIGKILL leaves its filter (and
# the program it holds) on the interfaces; the next start recognises it by handle, priority and
# program name and removes it before it attaches (docs/offload.md §1).
tc_filters() { in_ns "$R" tc filter show dev "$1" ingress 2>/dev/null | grep -c 'tern_tc' || true; }
if [ "$ON" = tc ]; then
    left=0
    for d in "orc$ID" "orp$ID"; do
        left=$((left + $(tc_filters "$d")))
        in_ns "$R" tc qdisc show dev "$d" | grep -q clsact && left=$((left + 1))
    done
    [ "$left" = 0 ] && pass "tc: after a clean stop no filter and no clsact qdisc of ternd's are left" ||
        fail "tc: $left filters or qdiscs left after a clean stop"
    start_offload_ternd "$ON"
    kill -KILL "$TERND_PID"; wait "$TERND_PID" 2>/dev/null || true; TERND_PID=
    stale=$(($(tc_filters "orc$ID") + $(tc_filters "orp$ID")))
    start_offload_ternd "$ON"
    removed=$(grep -c '"event":"offload_tc_stale_removed".*"result":"removed"' "$WORK/ternd.log" || true)
    now=$(($(tc_filters "orc$ID") + $(tc_filters "orp$ID")))
    stop_ternd
    after=$(($(tc_filters "orc$ID") + $(tc_filters "orp$ID")))
    if [ "$stale" = 2 ] && [ "$removed" = 2 ] && [ "$now" = 2 ] && [ "$after" = 0 ]; then
        pass "tc: SIGKILL left $stale filters; the next start removed them ($removed) and attached its own; none after its stop"
    else
        fail "tc: stale filters after SIGKILL=$stale removed=$removed attached=$now after stop=$after"
    fi
fi

# ---- auto falls back to TC where XDP cannot attach ----
# Another XDP program on the client-side interface (attached by netlink: native and generic
# XDP are then refused there): auto takes TC on it, native XDP on the other; the path is the
# weakest, tc, and the log says why. ChannelData to the peer goes through TC; the peer's answers
# arrive on the natively attached side, whose redirect into the TC-attached interface might not
# be possible (pass_egress, docs/offload.md §2): they go up and user space sends them.
if [ "$ON" = tc ]; then
    cat >"$WORK/pass.c" <<'C'
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
SEC("xdp") int other_pass(struct xdp_md *c) { return XDP_PASS; }
char LICENSE[] SEC("license") = "GPL";
C
    arch_inc=/usr/include/$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
    if clang -O2 -target bpf -idirafter "$arch_inc" -c "$WORK/pass.c" -o "$WORK/pass.o" 2>"$WORK/pass.err" &&
        in_ns "$R" ip link set dev "orc$ID" xdpdrv obj "$WORK/pass.o" sec xdp 2>>"$WORK/pass.err"; then
        start_offload_ternd auto
        line=$(grep '"event":"offload"' "$WORK/ternd.log" | head -1 || true)
        modes=$(grep '"event":"offload_attached"' "$WORK/ternd.log" | sed -E 's/.*"interface":"([^"]+)","mode":"([^"]+)".*/\1=\2/' | sort | tr '\n' ' ')
        before=$(xdp_stat to_peer) eg0=$(xdp_stat pass_egress)
        in_ns "$C" timeout 30 "$TURNC" -s "10.210.1.1:$U4" -u alice -P wonderland -C -R 111 -l 160 -n 200 -i 2 \
            -w 1000 -d -p 10.210.2.2:7000 >"$WORK/fallback.out" 2>&1 || true
        after=$(xdp_stat to_peer) eg=$(($(xdp_stat pass_egress) - eg0))
        if echo "$line" | grep -q '"path":"tc"' && echo "$line" | grep -q 'native and generic XDP refused' &&
            [ "$modes" = "orc$ID=tc orp$ID=native " ] &&
            grep -q '^totals sent=200 data=0 icmp=0 chdata=200$' "$WORK/fallback.out" &&
            [ $((after - before)) -ge 180 ] && [ "$eg" -ge 180 ]; then
            pass "auto beside another XDP program: $modes-> path tc, said why; 200 echoed, $((after - before)) to the peer through TC, $eg answers up to user space (native XDP may not redirect into a TC-attached interface: pass_egress)"
        else
            fail "auto beside another XDP program: modes='$modes' to_peer +$((after - before)) pass_egress +$eg; ternd said: $line"
            sed 's/^/    /' "$WORK/fallback.out" >&2
        fi
        stop_ternd
        in_ns "$R" ip link set dev "orc$ID" xdpdrv off
    else
        fail "could not attach a foreign XDP program for the fallback check: $(tail -2 "$WORK/pass.err")"
    fi
fi

# ---- every datagram arrived with a valid checksum ----
for n in "$C" "$P"; do
    e=$(csum_errors "$n")
    [ "$e" = 0 ] && pass "${n%-*}: no UDP checksum errors counted by the receiver" ||
        fail "${n%-*}: $e UDP checksum errors"
done
finish
