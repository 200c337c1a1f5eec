#!/usr/bin/env bash
# test_unauth_flood.sh: a flood of unauthenticated 20-byte Allocate requests (tern-unauthflood,
# as fast as one core sends them, from 127.0.0.2) while a valid relayed stream (tern-loadgen:
# 10 allocations from 127.0.0.1, ChannelData through an echo peer) runs through the same UDP
# listener of a one-worker ternd. With a limit of 10 per second per /32 in bursts of 20 (tighter
# than the default 100 and 200, so the counts are small) the flood gets at most burst + rate x duration answers, the relay
# counts the rest as drop_unauth_ratelimited, and the valid stream loses < 1 %. Then a flood
# from 200 sources is held to the global cap, and finally, for comparison only (no assertion),
# the same flood against ternd without the limit. Assertions are on counts; bounds on time
# (the flood's duration) get one second of slack for scheduling on a loaded machine.
. "$(dirname "$0")/lib.sh"
LOADGEN=$TERN_BUILD_DIR/tests/bench/tern-loadgen
FLOOD=$TERN_BUILD_DIR/tests/tern-unauthflood
for b in "$LOADGEN" "$FLOOD"; do [ -x "$b" ] || { fail "$b not built"; finish; }; done
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3

# ternd on CPU 0, the flood and the stream on CPU 1 ("one core" sends the flood), when there
# are two cores.
PIN_SERVER=() PIN_LOAD=()
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
    PIN_SERVER=(taskset -c 0) PIN_LOAD=(taskset -c 1)
fi

# The flood's rate: as fast as one core sends (0). A sanitizer build of ternd is several times
# slower per datagram, so a full-speed flood would overflow its queue whatever it does with
# the requests; there the flood is paced at 30k/s, and the assertions are the same.
FLOOD_RATE=0
grep -q '^TERN_SANITIZE:BOOL=ON' "$TERN_BUILD_DIR/CMakeCache.txt" 2>/dev/null && FLOOD_RATE=30000

# conf RATE BURST GLOBAL: a one-worker ternd with those limits.
conf() {
    cat >"$WORK/tern.yaml" <<YAML
server: { realm: tern, workers: 1 }
listen:
  - { transport: udp, address: 127.0.0.1, port: 0 }
relay: { addresses: [127.0.0.1], ports: { min: 50000, max: 59999 } }
peers: { allow_loopback: true }
auth: { users: [ { name: bench, password: benchpw } ], unauthenticated_rate: $1,
        unauthenticated_burst: $2, unauthenticated_global_rate: $3 }
log: { level: info, format: json }
YAML
}

start_pinned() {
    local saved=$TERND
    TERND_WRAP=$(mktemp "$WORK/ternd.XXXX")
    printf '#!/bin/sh\nexec %s %s "$@"\n' "${PIN_SERVER[*]}" "$saved" >"$TERND_WRAP"
    chmod +x "$TERND_WRAP"
    TERND=$TERND_WRAP start_ternd "$WORK/tern.yaml"
    TERND=$saved
    U4=$(port_of udp 127.0.0.1)
    OPS=$(grep '"event":"ops_listening"' "$WORK/ternd.log" | head -1 | sed -E 's/.*"port":([0-9]+).*/\1/')
}

json() { # FILE EXPR: a value from a JSON file (EXPR applied to the object j)
    "$PY" -c "import json,sys; j=json.load(open(sys.argv[1])); print($2)" "$1"
}

# stream_and_flood NAME FLOOD-ARGS...: the valid stream (5 s measured) with the flood over it.
stream_and_flood() {
    local name=$1; shift
    "${PIN_LOAD[@]}" "$LOADGEN" --server "127.0.0.1:$U4" --allocs 10 --rate 5000 --size 160 \
        --duration 5 --warmup 1 --drain 0.5 >"$WORK/$name.stream.json" 2>"$WORK/$name.stream.err" &
    local lg=$!
    sleep 0.5 # set-up takes milliseconds; the flood covers the whole measured window
    "${PIN_LOAD[@]}" "$FLOOD" --server "127.0.0.1:$U4" --duration 6 --rate "$FLOOD_RATE" "$@" >"$WORK/$name.flood.json"
    wait "$lg" || fail "$name: tern-loadgen exited non-zero: $(tail -3 "$WORK/$name.stream.err")"
}

# ---- 1. the default limit, one flooding source ----
conf 10 20 5000
start_pinned
stream_and_flood limited
F=$WORK/limited.flood.json S=$WORK/limited.stream.json
sent=$(json "$F" 'j["sent"]') secs=$(json "$F" 'j["seconds"]') rate=$(json "$F" 'j["rate_pps"]')
ans=$(json "$F" 'j["answers"]') a401=$(json "$F" 'j["answers_401"]')
max=$(json "$F" 'int(20 + 10 * (j["seconds"] + 1))')
echo "note: flood from one core (--rate $FLOOD_RATE): $sent requests in $secs s ($rate per second), $ans answers"
[ "$a401" -le "$max" ] && [ "$a401" -ge 20 ] && [ "$ans" = "$a401" ] &&
    pass "flood answered $a401 times (401 each), within burst 20 + 10/s x (duration + 1 s) = $max" ||
    fail "flood answered $ans times ($a401 401s), wanted 20..$max"
m=$(curl -s "http://127.0.0.1:$OPS/metrics" | grep -E '^tern_server_drop_unauth_ratelimited_total ' | awk '{print $2}')
[ -n "$m" ] && [ "$m" -gt 0 ] && pass "/metrics: tern_server_drop_unauth_ratelimited_total $m" ||
    fail "/metrics: tern_server_drop_unauth_ratelimited_total '$m'"
vs=$(json "$S" 'j["steps"][0]["sent"]') vl=$(json "$S" 'j["steps"][0]["loss"]')
ready=$(json "$S" 'j["ready"]')
[ "$ready" = 10 ] && [ "$vs" -gt 10000 ] && [ $((vl * 100)) -lt "$vs" ] &&
    pass "valid stream under the flood: $vl of $vs lost (< 1 %), 10 allocations" ||
    fail "valid stream under the flood: ready=$ready, $vl of $vs lost (wanted < 1 %)"
sleep 2.5 # a quiet second (checked once a second) ends the episode in the log
grep -q '"event":"unauth_ratelimited".*"worker":0' "$WORK/ternd.log" &&
    [ "$(grep -c '"event":"unauth_ratelimited"' "$WORK/ternd.log")" = 1 ] &&
    grep -q '"event":"unauth_ratelimit_ended".*"dropped":[1-9]' "$WORK/ternd.log" &&
    pass "one unauth_ratelimited event for the episode, and its end" ||
    fail "unauth_ratelimited / unauth_ratelimit_ended events: $(grep -c unauth_ "$WORK/ternd.log")"
stop_ternd
drops=$(counter drop_unauth_ratelimited) rx=$(counter rx_stun) e401=$(counter error_401)
# Every flood request the kernel delivered is either answered or counted: at least half of
# them must have been delivered (generous: in practice all, when the limit holds).
[ "$drops" -ge $(((sent - ans) / 2)) ] && [ "$drops" -le $((sent - ans)) ] &&
    pass "ternd counted $drops drop_unauth_ratelimited (of $((sent - ans)) unanswered; rx_stun $rx)" ||
    fail "drop_unauth_ratelimited=$drops, wanted $(((sent - ans) / 2))..$((sent - ans))"
[ "$e401" -le $((a401 + 20)) ] && pass "error_401=$e401: the flood's answers and the stream's set-up" ||
    fail "error_401=$e401 > flood answers $a401 + 20"

# ---- 2. 200 sources (a spoofed-source flood, every /32 within its own burst): the cap ----
conf 10 20 100
start_pinned
"${PIN_LOAD[@]}" "$FLOOD" --server "127.0.0.1:$U4" --duration 3 --sources 200 --base 127.0.3.1 >"$WORK/spoof.json"
F=$WORK/spoof.json
ans=$(json "$F" 'j["answers"]') max=$(json "$F" 'int(100 + 100 * (j["seconds"] + 1))')
[ "$ans" -le "$max" ] && [ "$ans" -ge 100 ] &&
    pass "200-source flood answered $ans times, within the cap 100 + 100/s x (duration + 1 s) = $max" ||
    fail "200-source flood answered $ans times, wanted 100..$max"
stop_ternd
g=$(counter drop_unauth_global)
[ "$g" -gt 0 ] && pass "ternd counted $g drop_unauth_global" || fail "drop_unauth_global=$g"

# ---- 3. for comparison: no limit (what the relay did before), the same flood ----
conf 0 20 0
start_pinned
stream_and_flood unlimited
stop_ternd
F=$WORK/unlimited.flood.json S=$WORK/unlimited.stream.json
echo "note: without the limit: flood $(json "$F" 'j["sent"]') requests at $(json "$F" 'j["rate_pps"]')/s," \
    "$(json "$F" 'j["answers"]') answered; valid stream lost $(json "$S" 'j["steps"][0]["loss"]')" \
    "of $(json "$S" 'j["steps"][0]["sent"]') ($(json "$S" 'round(100 * j["steps"][0]["loss_ratio"], 2)') %)"
finish
