#!/usr/bin/env bash
# test_priority.sh: prioritised egress (qos.priority). In network namespaces, the relay's
# uplink to the peer is shaped by HTB to 1 Mbit/s, less than the offered audio + video load;
# each relayed datagram's socket priority (SO_PRIORITY, per datagram) names an HTB class:
# audio 1:10 (served first, its rate guaranteed), video 1:20, the rest 1:30. With priority
# on, audio loses nothing and its jitter stays low while video takes the loss; with it off,
# everything falls into the default class and both lose. The receivers (tests/tools/
# rtp_sink.py) measure loss and RFC 3550 jitter themselves.
. "$(dirname "$0")/lib.sh"
: "${TURNC:?TURNC must point at tern-turnc (set by CTest)}"
SINK="$TERN_SOURCE_DIR/tests/tools/rtp_sink.py"

ID=$$
R=tern-prio-r-$ID P=tern-prio-p-$ID
trap 'ip netns del "$R" 2>/dev/null || true; ip netns del "$P" 2>/dev/null || true; cleanup' EXIT
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
ip netns add "$R"
ip netns add "$P"
in_ns "$R" ip link set lo up
in_ns "$P" ip link set lo up
ip link add "pr$ID" netns "$R" type veth peer name "pp$ID" netns "$P"
in_ns "$R" ip addr add 10.201.0.1/24 dev "pr$ID"
in_ns "$P" ip addr add 10.201.0.2/24 dev "pp$ID"
in_ns "$R" ip link set "pr$ID" up
in_ns "$P" ip link set "pp$ID" up
# The bottleneck: 1 Mbit/s out of the relay, short queues (50 packets) per class.
in_ns "$R" tc qdisc add dev "pr$ID" root handle 1: htb default 30
in_ns "$R" tc class add dev "pr$ID" parent 1: classid 1:1 htb rate 1mbit ceil 1mbit burst 4k
in_ns "$R" tc class add dev "pr$ID" parent 1:1 classid 1:10 htb rate 1mbit ceil 1mbit prio 0 burst 4k
in_ns "$R" tc class add dev "pr$ID" parent 1:1 classid 1:20 htb rate 100kbit ceil 1mbit prio 1 burst 4k
in_ns "$R" tc class add dev "pr$ID" parent 1:1 classid 1:30 htb rate 100kbit ceil 1mbit prio 2 burst 4k
for c in 10 20 30; do in_ns "$R" tc qdisc add dev "pr$ID" parent "1:$c" pfifo limit 50; done

cat >"$WORK/ternd-ns" <<EOS
#!/bin/sh
exec ip netns exec $R "$TERND" "\$@"
EOS
chmod +x "$WORK/ternd-ns"
TERND="$WORK/ternd-ns"

AUDIO_N=150 VIDEO_N=1500
# run NAME PRIORITY: audio (PCMU, 50/s, 172 B) and video (PT 34, ~450/s, 1000 B) at once.
run() {
    cat >"$WORK/prio.yaml" <<EOS
server: { realm: tern.test, workers: 1 }
listen:
  - { transport: udp, address: 127.0.0.1, port: 0 }
relay: { addresses: [10.201.0.1] }
peers: { allow: [10.201.0.0/16] }
auth: { users: [ { name: alice, password: alice-pass } ] }
qos: { priority: $2, priority_classes: { audio: 65552, video: 65568, other: 65584 } }
log: { level: info, format: json }
EOS
    start_ternd "$WORK/prio.yaml"
    U4=$(port_of udp 127.0.0.1)
    in_ns "$P" python3 "$SINK" 10.201.0.2 7000 8000 2 "$WORK/$1-audio.json" "$AUDIO_N" >"$WORK/sa.out" 2>&1 &
    local sa=$!
    in_ns "$P" python3 "$SINK" 10.201.0.2 7002 90000 2 "$WORK/$1-video.json" "$VIDEO_N" >"$WORK/sv.out" 2>&1 &
    local sv=$!
    sleep 0.5
    in_ns "$R" timeout 30 "$TURNC" -s "127.0.0.1:$U4" -R 34 -l 1000 -n "$VIDEO_N" -i 2 -w 100 \
        -p 10.201.0.2:7002 >"$WORK/$1-tv.out" 2>&1 &
    local tv=$!
    sleep 0.3
    in_ns "$R" timeout 30 "$TURNC" -s "127.0.0.1:$U4" -R 0 -l 172 -n "$AUDIO_N" -i 20 -w 100 \
        -p 10.201.0.2:7000 >"$WORK/$1-ta.out" 2>&1 || true
    wait "$tv" || true
    wait "$sa" "$sv" || true
    stop_ternd
    in_ns "$R" tc -s class show dev "pr$ID" >"$WORK/$1-tc.txt"
}
stat() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d[sys.argv[2]])' "$@"; }

run on true
a_loss=$(stat "$WORK/on-audio.json" lost) a_jit=$(stat "$WORK/on-audio.json" jitter_ms)
v_loss=$(stat "$WORK/on-video.json" lost)
echo "priority on:  audio lost $a_loss of $AUDIO_N, jitter $a_jit ms; video lost $v_loss of $VIDEO_N"
[ "$a_loss" = 0 ] && pass "priority on: audio loses nothing" || fail "priority on: audio lost $a_loss"
python3 -c "import sys; sys.exit(0 if float('$a_jit') < 30 else 1)" &&
    pass "priority on: audio jitter $a_jit ms < 30 ms" || fail "priority on: audio jitter $a_jit ms"
[ "$v_loss" -gt 0 ] && pass "priority on: video takes the loss ($v_loss)" || fail "priority on: video lost nothing (the bottleneck did not bite)"

run off false
a_loss=$(stat "$WORK/off-audio.json" lost) a_jit=$(stat "$WORK/off-audio.json" jitter_ms)
v_loss=$(stat "$WORK/off-video.json" lost)
echo "priority off: audio lost $a_loss of $AUDIO_N, jitter $a_jit ms; video lost $v_loss of $VIDEO_N"
[ "$a_loss" -gt 0 ] && [ "$v_loss" -gt 0 ] && pass "priority off: both lose (audio $a_loss, video $v_loss)" ||
    fail "priority off: audio lost $a_loss, video $v_loss (expected both > 0)"
finish
