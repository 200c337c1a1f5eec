#!/usr/bin/env bash
# test_mobility_edge.sh: RFC 8016 mobility under stress and at its corners, over two workers
# (SO_REUSEPORT spreads 5-tuples over both: moves within a worker and between workers; the
# helper learns a 5-tuple's worker from the ticket an Allocate gets there). The client is
# mobility_edge.py (turnlib's encoding), with real UDP on loopback (127.0.0.1, and 127.0.0.2/.3
# as other client addresses):
#   many       40 clients, channel or permission to an echo peer, 5 concurrent moves each:
#              relayed address unchanged, every allocation relays both ways, counters agree;
#              prints the move latency (Refresh sent -> success) p50/p99
#   retransmit the same Refresh twice from the new socket: identical answers, one move
#   back       A -> B -> A (same socket, and re-bound to A's port), back and forth
#   old        the old 5-tuple after a move: its ChannelData/Send reach nobody, Refresh 437
#   gone       a ticket after Refresh LIFETIME 0, and after expiry: 437
#   tickets    ticket rules: new ticket, previous accepted once, older 437, malformed 400,
#              441 for another user, 437 onto a 5-tuple with its own allocation
#   nonce      an old address's nonce is accepted with the ticket for the last 3 addresses
#   prev_cross, api, race: bugs this test found (KNOWN BUG lines; TERN_MOB_EDGE_STRICT=1 makes
#              them fail the test)
#   SIGTERM while clients move between workers, 4 times: ternd exits 0 and logs "stopped".
. "$(dirname "$0")/lib.sh"
HERE=$(cd "$(dirname "$0")" && pwd)
T0=$(date +%s)

config() {
    cat >"$WORK/mob.yaml" <<EOF
server: { realm: tern.test, workers: 2 }
listen:
  - { transport: udp, address: 127.0.0.1, port: 0 }
relay: { addresses: [127.0.0.1] }
peers: { allow_loopback: true }
allocation: { mobility: true, default_lifetime: 2, max_lifetime: 3600 }
auth:
  users: [ { name: alice, password: alice-pass }, { name: bob, password: bob-pass } ]
  unauthenticated_rate: 0
log: { level: info, format: json }
ops: { listen: "127.0.0.1:0", token: "edge-token-0123456789" }
EOF
}
config
start_ternd "$WORK/mob.yaml"
U4=$(port_of udp 127.0.0.1)
OPS=$(grep '"event":"ops_listening"' "$WORK/ternd.log" | tail -1 | sed -E 's/.*"port":([0-9]+).*/\1/')
[ -n "$U4" ] && [ -n "$OPS" ] || { fail "no UDP or ops port in ternd's log"; finish; }

# scenario NAME: run one of mobility_edge.py's scenarios, its ok/FAIL lines become ours.
KNOWN=()
scenario() {
    local rc=0 line
    MOB_EDGE_TOKEN=edge-token-0123456789 MOB_EDGE_OUT="$WORK/$1.json" timeout 50 python3 "$HERE/mobility_edge.py" "$1" "$U4" "$OPS" \
        >"$WORK/$1.out" 2>&1 || rc=$?
    while IFS= read -r line; do
        case "$line" in
            "ok: "*) pass "[$1] ${line#ok: }" ;;
            "FAIL: "*) fail "[$1] ${line#FAIL: }" ;;
            "KNOWN BUG: "*) echo "KNOWN BUG: [$1] ${line#KNOWN BUG: }"; KNOWN+=("[$1] ${line#KNOWN BUG: }") ;;
            "FIGURES: "* | "race: "* | "note: "*) echo "$line" ;;
        esac
    done <"$WORK/$1.out"
    if [ "$rc" -ne 0 ]; then
        grep -qE '^FAIL: ' "$WORK/$1.out" || fail "[$1] exited with $rc"
        grep -vE '^(ok|FAIL|KNOWN BUG|FIGURES): ' "$WORK/$1.out" | tail -15 | sed 's/^/    /' >&2 || true
    fi
}
metric() { curl -sf -H "Authorization: Bearer edge-token-0123456789" "http://127.0.0.1:$OPS/metrics" | grep -E "^$1 " | awk '{print $2}' || true; }
moved_events() { grep -c '"event":"allocation_moved"' "$WORK/ternd.log" || true; }
failed_events() { grep -c '"event":"allocation_move_failed"' "$WORK/ternd.log" || true; }

# ---- 1. many at once ----
ev0=$(moved_events)
scenario many
ev1=$(moved_events)
if [ $((ev1 - ev0)) -eq 200 ]; then pass "200 allocation_moved events logged for the 200 moves"
else fail "allocation_moved events: $((ev1 - ev0)) (wanted 200)"; fi
if [ -s "$WORK/many.json" ]; then
    cross=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["cross"])' "$WORK/many.json")
    logged_cross=$(grep '"event":"allocation_moved"' "$WORK/ternd.log" | tail -n +$((ev0 + 1)) | python3 -c '
import json, sys
print(sum(1 for l in sys.stdin if json.loads(l)["from_worker"] != json.loads(l)["worker"]))')
    if [ "$cross" = "$logged_cross" ]; then pass "the log's moves between workers ($logged_cross) are the ones the clients saw"
    else fail "moves between workers: clients saw $cross, the log has $logged_cross"; fi
fi
[ "$(failed_events)" = 0 ] && pass "no allocation_move_failed" || fail "allocation_move_failed logged: $(failed_events)"

# ---- 2.-5. and the ticket and nonce rules ----
for s in retransmit back old gone tickets nonce; do scenario "$s"; done
[ "$(failed_events)" = 0 ] && pass "still no allocation_move_failed" || fail "allocation_move_failed logged: $(failed_events)"
e405=$(metric tern_server_error_405_total)
[ "${e405:-0}" = 0 ] && pass "no 405 with mobility on" || fail "405 answered $e405 times with mobility on"

# ---- 7. what looked suspicious in relay/mobility.c, server.c, query.c ----
for s in prev_cross api race; do scenario "$s"; done

# Every allocation of the scenarios ended (deleted or expired): none leaked by the moves.
left=
for _ in $(seq 60); do
    left=$(curl -sf -H "Authorization: Bearer edge-token-0123456789" "http://127.0.0.1:$OPS/api/v1/allocations" | python3 -c '
import json, sys
d = json.load(sys.stdin)
print(len(d["allocations"] if isinstance(d, dict) else d))' || true)
    [ "$left" = 0 ] && break
    sleep 0.1
done
[ "$left" = 0 ] && pass "no allocation left over after the scenarios" || fail "allocations left: $left"
stop_ternd
mm=$(counter mobility_moves || true)
[ -n "$mm" ] && pass "the stop's counters: $mm moves in all" || true

# ---- 6. SIGTERM while moves are in flight between workers (several times) ----
for i in 1 2 3 4; do
    [ $(($(date +%s) - T0)) -lt 45 ] || { echo "note: time budget reached, $((i - 1)) SIGTERM rounds"; break; }
    config
    start_ternd "$WORK/mob.yaml"
    U4=$(port_of udp 127.0.0.1)
    timeout 20 python3 "$HERE/mobility_edge.py" storm "$U4" >"$WORK/storm.out" 2>&1 &
    STORM=$!
    for _ in $(seq 50); do grep -q storm-ready "$WORK/storm.out" && break; sleep 0.05; done
    sleep 0.6
    passed_now=$(grep -c '"event":"allocation_moved"' "$WORK/ternd.log" || true)
    f0=$FAILS
    stop_ternd
    kill "$STORM" 2>/dev/null || true
    wait "$STORM" 2>/dev/null || true
    if [ "$FAILS" -eq "$f0" ]; then pass "SIGTERM round $i during moves ($passed_now moves so far): exit 0, stopped logged"; fi
done

if [ ${#KNOWN[@]} -gt 0 ]; then
    echo "${#KNOWN[@]} KNOWN BUG check(s) (not failing; TERN_MOB_EDGE_STRICT=1 makes them fail):"
    printf '    KNOWN BUG: %s\n' "${KNOWN[@]}"
fi
echo "took $(($(date +%s) - T0)) s"
finish
