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
# so.
. "$(dirname "$0")/lib.sh"
. "$TERN_SOURCE_DIR/tests/qos/qoslib.sh"
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
    local mode=$1 lifetime=${2:-600}
    RECORDS="$WORK/quality-$mode.jsonl"
    cat >"$WORK/tern-$mode.yaml" <<YAML
allocation: { default_lifetime: $lifetime }
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
start_offload_ternd auto
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
start_offload_ternd auto
fallback_check "no CAP_BPF" 'privileges|did not load|did not open'
stop_ternd
TERND="$WORK/ternd-ns"

# ---- the QoS ground truth, offload off then auto (native XDP on veth) ----
for mode in off auto; do
    start_offload_ternd "$mode"
    if [ "$mode" = auto ]; then
        if grep '"event":"offload"' "$WORK/ternd.log" | grep -q '"path":"xdp"'; then
            pass "$mode: ternd runs the native XDP path ($(grep -c '"event":"offload_attached"' "$WORK/ternd.log") interfaces)"
        else
            fail "$mode: no native XDP path; ternd said:"
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
    if [ "$mode" = auto ]; then
        if grep -q '"datapath": *"xdp"' "$WORK/legs-$mode.detail.json" &&
            grep -q '"datapath": *"xdp"' "$WORK/legs-$mode.entry.json"; then
            pass "$mode: the allocation detail and list entry say \"datapath\": \"xdp\""
        else
            fail "$mode: no \"datapath\": \"xdp\" in the allocation views"
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
    if [ "$mode" = auto ]; then
        in_ns "$P" turnutils_peer -p 7000 -L 10.210.2.2 -L fd00:210:2::2 >"$WORK/peer.log" 2>&1 &
        ECHO_PIDS+=($!)
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
                pass "IPv$fam: 500 ChannelData out, 500 back, none lost ($((after - before)) back through XDP)"
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
    fi
    stop_ternd
    cp "$WORK/ternd.log" "$WORK/ternd-$mode.log"
    if [ "$mode" = auto ]; then
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
start_offload_ternd auto 2
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
    pass "expiry: $tp forwarded to the peer, $tc echoes back through XDP, $got received; $ex after the expiry went up, none forwarded"
else
    fail "expiry: to_peer +$tp to_client +$tc received $got passed-after-expiry +$ex"
    sed 's/^/    /' "$WORK/expiry.out" >&2
fi
stop_ternd

# ---- a reload that makes the peer policy refuse the peer: the kernel stops forwarding to it ----
# The binding was checked at ChannelBind; a reload that drops the peer's network from
# peers.allow (10.210.2.2 is then private, refused) must stop the fast path at once, not at the
# channel's expiry: the worker re-checks every binding in the pass after it adopts the reload.
start_offload_ternd auto
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
sed -i 's|^peers: { allow: \[10.210.0.0/16, "fd00:210::/32"\] }|peers: { allow: ["fd00:210::/32"] }|' "$WORK/tern-auto.yaml"
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

# ---- every datagram arrived with a valid checksum ----
for n in "$C" "$P"; do
    e=$(csum_errors "$n")
    [ "$e" = 0 ] && pass "${n%-*}: no UDP checksum errors counted by the receiver" ||
        fail "${n%-*}: $e UDP checksum errors"
done
finish
