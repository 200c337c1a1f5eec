#!/usr/bin/env bash
# test_fleet.sh: three ternd nodes on one PostgreSQL database (pglib.sh) form a fleet
# (docs/fleet.md): each writes its registry row every heartbeat and sees the others
# (GET /api/v1/nodes, ternctl nodes); a node over cluster.max_allocations answers Allocate with
# 300 ALTERNATE-SERVER naming the least-loaded live node, and a client that follows it with the
# NONCE of the 300 (tern-turnc -F, as libwebrtc does) allocates there without a new 401: the
# nonce keys are the fleet's; allocation.max_per_user_fleet counts a user's allocations on every
# node; a killed node is shown dead and is neither offered in credentials nor steered to; a
# draining node is not steered to; a node that stops cleanly leaves the registry; a node
# refuses a schema whose compat it does not meet, and runs on a newer one whose compat it does.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pglib.sh"
: "${TURNC:?TURNC must point at tern-turnc (set by CTest)}"
: "${TERNCTL:?TERNCTL must point at ternctl (set by CTest)}"
pg_start
start_echo_peer 127.0.0.1
TOKEN=fleet-token

node_cfg() { # NAME MAX_ALLOCATIONS
    cat >"$WORK/$1.yaml" <<EOF
server: { realm: fleet.test, workers: 1 }
listen:
  - { transport: udp, address: 127.0.0.1, port: 0 }
relay: { addresses: [127.0.0.1] }
peers: { allow_loopback: true }
allocation: { max_per_user_fleet: 2 }
auth:
  database: "$PG_URI_NOPW"
  database_password_file: "$PG_DIR/pw"
  users: [ { name: alice, password: alice-pw }, { name: bob, password: bob-pw } ]
  secrets: [ fleet-rest-secret ]
cluster: { node_id: $1, heartbeat: 1, dead_after: 3, redirect: true, max_allocations: $2 }
ops: { listen: "127.0.0.1:0", token: "$TOKEN" }
log: { level: info, format: json }
EOF
}
declare -A PID UDP OPS
start_node() { # NAME MAX_ALLOCATIONS
    node_cfg "$1" "$2"
    "$TERND" -c "$WORK/$1.yaml" 2>"$WORK/$1.log" &
    PID[$1]=$!
    for _ in $(seq 100); do
        grep -q '"event":"started"' "$WORK/$1.log" 2>/dev/null && break
        kill -0 "${PID[$1]}" 2>/dev/null || break
        sleep 0.1
    done
    grep -q '"event":"started"' "$WORK/$1.log" || { fail "node $1 did not start"; cat "$WORK/$1.log" >&2; finish; }
    UDP[$1]=$(grep '"event":"listening"' "$WORK/$1.log" | grep '"transport":"udp"' | head -1 | sed -E 's/.*"port":([0-9]+).*/\1/')
    OPS[$1]=$(grep '"event":"ops_listening"' "$WORK/$1.log" | sed -E 's/.*"port":([0-9]+).*/\1/')
}
kill_nodes() { for n in "${!PID[@]}"; do kill -KILL "${PID[$n]}" 2>/dev/null || true; done; }
CLEANUP_HOOKS+=(kill_nodes)
api() { curl -s -H "Authorization: Bearer $TOKEN" "$@"; }
# nodes_on NODE: its GET /api/v1/nodes into $WORK/nodes.json
nodes_on() { api -o "$WORK/nodes.json" "http://127.0.0.1:${OPS[$1]}/api/v1/nodes"; }
# state_of NODE_ID (in $WORK/nodes.json)
state_of() { "$PY" -c 'import json,sys
d=json.load(open(sys.argv[1]))
print(next((n["state"] for n in d["nodes"] if n["node_id"]==sys.argv[2]), "absent"))' "$WORK/nodes.json" "$1"; }
PY=$(command -v python3)
# wait_state ON NODE_ID STATE SECONDS
wait_state() {
    local t
    for t in $(seq $(($4 * 10))); do
        nodes_on "$1"; [ "$(state_of "$2")" = "$3" ] && return 0; sleep 0.1
    done
    return 1
}
metric() { # NODE NAME: the value of a counter on NODE's /metrics
    curl -s "http://127.0.0.1:${OPS[$1]}/metrics" >"$WORK/m.txt"
    awk -v n="$2" '$1 == n { print $2 }' "$WORK/m.txt"
}

# a holds at most 1 allocation before it steers; b and c 10.
start_node a 1
start_node b 10
start_node c 10
grep -q '"event":"fleet_joined"' "$WORK/c.log" && pass "node c logged fleet_joined" || fail "no fleet_joined on c"

# ---- the registry: every node sees the three, alive, with its endpoints ----
if wait_state a c alive 5 && [ "$(state_of a)" = alive ] && [ "$(state_of b)" = alive ]; then
    pass "GET /api/v1/nodes on a: a, b, c alive"
else
    fail "registry on a: $(cat "$WORK/nodes.json")"
fi
"$PY" - "$WORK/nodes.json" "${UDP[b]}" <<'EOF' && pass "b's row: its UDP endpoint, the node's version, self flags" || fail "row contents: $(cat "$WORK/nodes.json")"
import json, sys
d = json.load(open(sys.argv[1]))
b = next(n for n in d["nodes"] if n["node_id"] == "b")
ep = b["endpoints"][0]
assert ep["transport"] == "udp" and ep["family"] == 4, ep
assert ep["address"] == "127.0.0.1:" + sys.argv[2], ep
assert ep["uri"] == "turn:127.0.0.1:%s?transport=udp" % sys.argv[2], ep
assert b["version"] and not b["self"] and b["heartbeat_age_seconds"] < 3
assert [n["self"] for n in d["nodes"] if n["node_id"] == "a"] == [True]
assert d["node_id"] == "a" and d["dead_after"] == 3
EOF
"$TERNCTL" -c "$WORK/b.yaml" nodes >"$WORK/ctl_nodes.txt" 2>&1 &&
    grep -qE '^a +alive' "$WORK/ctl_nodes.txt" && grep -qE '^c +alive' "$WORK/ctl_nodes.txt" &&
    pass "ternctl nodes (from the database) lists a, b and c alive" ||
    { fail "ternctl nodes"; cat "$WORK/ctl_nodes.txt" >&2; }
"$TERNCTL" --url "http://127.0.0.1:${OPS[c]}" --token "$TOKEN" nodes --json >"$WORK/ctl_nodes.json" 2>&1 &&
    grep -q '"node_id": *"b"' "$WORK/ctl_nodes.json" &&
    pass "ternctl --url ... nodes --json (from the API)" || { fail "ternctl nodes --json"; cat "$WORK/ctl_nodes.json" >&2; }

# ---- steering: a's second allocation goes to the least-loaded live node ----
"$TURNC" -s "127.0.0.1:${UDP[a]}" -p "127.0.0.1:$PEER_PORT" -u alice -P alice-pw -n 200 -i 50 -w 500 \
    >"$WORK/hold_a.out" 2>&1 &
HOLD_A=$!
sleep 2.5 # a's row says 1 allocation by now (1 s heartbeat)
"$TURNC" -F -s "127.0.0.1:${UDP[a]}" -p "127.0.0.1:$PEER_PORT" -u alice -P alice-pw -n 200 -i 50 -w 500 \
    >"$WORK/steered.out" 2>&1 &
HOLD_B=$!
for _ in $(seq 50); do grep -q '^allocated' "$WORK/steered.out" && break; sleep 0.1; done
if grep -q "^alternate=127.0.0.1:${UDP[b]}" "$WORK/steered.out" && grep -q "^followed=" "$WORK/steered.out" &&
    grep -q '^allocated' "$WORK/steered.out"; then
    pass "a, at its cluster.max_allocations, sent the next Allocate to b (300 ALTERNATE-SERVER), which allocated it"
else
    fail "steering: $(cat "$WORK/steered.out")"
fi
[ "$(grep -c '^challenge=' "$WORK/steered.out")" = 1 ] &&
    pass "the 300's nonce was taken on b: one 401 in all (on a), none after the redirect" ||
    fail "challenges: $(grep '^challenge=' "$WORK/steered.out" | tr '\n' ' ')"
[ "$(metric a tern_server_steered_total)" = 1 ] && pass "a: tern_server_steered_total 1" ||
    fail "a: steered_total=$(metric a tern_server_steered_total)"
grep -q '"event":"fleet_steering".*"targets":"udp4->b 127.0.0.1:'"${UDP[b]}" "$WORK/a.log" &&
    pass "a logged fleet_steering udp4->b" || fail "no fleet_steering udp4->b in a's log"

# ---- the fleet-wide quota: alice holds one on a and one on b (max_per_user_fleet 2) ----
sleep 2 # b's row carries alice's allocation
rc=0
"$TURNC" -s "127.0.0.1:${UDP[c]}" -p "127.0.0.1:$PEER_PORT" -u alice -P alice-pw -n 1 -w 200 -d \
    >"$WORK/quota.out" 2>&1 || rc=$?
[ "$rc" = 3 ] && grep -q 'allocate_failed code=486' "$WORK/quota.out" &&
    pass "alice's third allocation (on c) refused: 486, the fleet holds her 2" ||
    fail "fleet quota: rc=$rc $(cat "$WORK/quota.out")"
"$TURNC" -s "127.0.0.1:${UDP[c]}" -p "127.0.0.1:$PEER_PORT" -u bob -P bob-pw -n 1 -w 200 -d \
    >"$WORK/bob.out" 2>&1 && grep -q '^totals sent=1 data=1' "$WORK/bob.out" &&
    pass "bob allocates on c meanwhile (the quota is per user)" || fail "bob on c: $(cat "$WORK/bob.out")"

# ---- a dead node: never offered ----
kill -KILL "${PID[c]}"
if wait_state a c dead 6; then pass "c killed: shown dead on a within cluster.dead_after"; else fail "c not dead: $(cat "$WORK/nodes.json")"; fi
api -o "$WORK/cred.json" -X POST -d '{"user":"carol"}' "http://127.0.0.1:${OPS[b]}/api/v1/credentials"
"$PY" - "$WORK/cred.json" "${UDP[b]}" <<'EOF' && pass "credentials from b name b only (a is full, c dead)" || fail "credential uris: $(cat "$WORK/cred.json")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["uris"] == ["turn:127.0.0.1:%s?transport=udp" % sys.argv[2]], d["uris"]
EOF

# ---- a draining target is not steered to; with none left, a serves the Allocate itself ----
api -o /dev/null -X POST -d '{}' "http://127.0.0.1:${OPS[b]}/api/v1/drain"
wait_state a b draining 4 && pass "b draining: shown draining on a" || fail "b not draining on a"
sleep 1.2 # a's steering pass after it read the registry
"$TURNC" -F -s "127.0.0.1:${UDP[a]}" -p "127.0.0.1:$PEER_PORT" -u bob -P bob-pw -n 1 -w 200 -d \
    >"$WORK/nosteer.out" 2>&1
if ! grep -q '^alternate=' "$WORK/nosteer.out" && grep -q '^totals sent=1 data=1' "$WORK/nosteer.out"; then
    pass "no node to steer to (b draining, c dead): a allocates past its soft limit"
else
    fail "a with no target: $(cat "$WORK/nosteer.out")"
fi
grep -q '"event":"fleet_steering".*"targets":"none"' "$WORK/a.log" && pass "a logged fleet_steering none" ||
    fail "no fleet_steering none in a's log"
wait "$HOLD_A" "$HOLD_B" 2>/dev/null || true
grep -q '^totals sent=200 data=200' "$WORK/hold_a.out" && grep -q '^totals sent=200 data=200' "$WORK/steered.out" &&
    pass "both held calls (on a, and the one steered to b) relayed 200 of 200 throughout" ||
    fail "held calls: $(grep totals "$WORK/hold_a.out" "$WORK/steered.out")"

# ---- a clean stop leaves the registry ----
api -o /dev/null -X DELETE "http://127.0.0.1:${OPS[b]}/api/v1/drain"
kill -TERM "${PID[b]}"
wait "${PID[b]}" 2>/dev/null
grep -q '"event":"fleet_left"' "$WORK/b.log" && pass "b stopped: fleet_left logged" || fail "no fleet_left on b"
wait_state a b absent 3 && pass "b's row is gone from the registry" || fail "b still listed: $(cat "$WORK/nodes.json")"
grep -h -i "$PG_PASSWORD" "$WORK"/*.log && fail "the database password is in a log" || pass "no password in any node's log"

# ---- schema compat: a newer schema this program may run on, and one it may not ----
kill -TERM "${PID[a]}"
wait "${PID[a]}" 2>/dev/null
psql_tern() { PGPASSWORD=$PG_PASSWORD pg_as "$PG_BIN/psql" -h "$PG_DIR" -U tern -d tern -qAt -c "$1"; }
psql_tern "UPDATE tern_schema SET version = version + 1"
start_node a 1
pass "a starts on schema version 4 with compat 3 (what a newer release that only adds would leave)"
kill -TERM "${PID[a]}"
wait "${PID[a]}" 2>/dev/null
psql_tern "UPDATE tern_schema SET compat = 4"
if "$TERND" -c "$WORK/a.yaml" 2>"$WORK/a2.log"; then
    fail "a started on a schema that needs version 4"
else
    grep -q 'needs at least 4 (upgrade ternd)' "$WORK/a2.log" &&
        pass "a refuses a schema whose compat is 4: 'needs at least 4 (upgrade ternd)'" ||
        { fail "compat refusal message"; tail -3 "$WORK/a2.log" >&2; }
fi
finish
