#!/usr/bin/env bash
# test_fleet.sh: three ternd nodes on one PostgreSQL database (pglib.sh) form a fleet
# (docs/fleet.md): each writes its registry row every heartbeat and sees the others
# (GET /api/v1/nodes, ternctl nodes); a user added on one node's API and a REST secret rotated
# through the API authenticate on the others within about a second; a node over
# cluster.max_allocations answers Allocate with
# 300 ALTERNATE-SERVER naming the least-loaded live node, and a client that follows it with the
# NONCE of the 300 (tern-turnc -F, as libwebrtc does) allocates there without a new 401: the
# nonce keys are the fleet's; allocation.max_per_user_fleet counts a user's allocations on every
# node; a killed node is shown dead and is neither offered in credentials nor steered to; a
# draining node sends its new Allocates to another; the database stopped mid-call loses nothing
# (steering stops, calls and known users go on, the records of calls that ended meanwhile are
# written once it is back); a node that stops cleanly leaves the registry; a node
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
  users: [ { name: alice, password: alice-pw }, { name: bob, password: bob-pw },
           { name: dave, password: dave-pw } ]
cluster: { node_id: $1, heartbeat: 1, dead_after: 3, redirect: true, max_allocations: $2${3:+, $3} }
qos: { record_database: true }
ops: { listen: "127.0.0.1:0", token: "$TOKEN" }
log: { level: info, format: json }
EOF
}
declare -A PID UDP OPS
start_node() { # NAME MAX_ALLOCATIONS [MORE CLUSTER KEYS]
    node_cfg "$1" "$2" "${3:-}"
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
[ "$(metric a 'tern_fleet_nodes{state="alive"}')" = 3 ] && [ "$(metric a tern_fleet_registry_up)" = 1 ] &&
    [ "$(metric a tern_fleet_nonce_keys)" = 1 ] &&
    pass "a's /metrics: tern_fleet_nodes{alive} 3, registry up, one fleet nonce key" ||
    fail "fleet metrics: $(grep '^tern_fleet' "$WORK/m.txt" | tr '\n' ' ')"
"$TERNCTL" -c "$WORK/b.yaml" nodes >"$WORK/ctl_nodes.txt" 2>&1 &&
    grep -qE '^a +alive' "$WORK/ctl_nodes.txt" && grep -qE '^c +alive' "$WORK/ctl_nodes.txt" &&
    pass "ternctl nodes (from the database) lists a, b and c alive" ||
    { fail "ternctl nodes"; cat "$WORK/ctl_nodes.txt" >&2; }
"$TERNCTL" --url "http://127.0.0.1:${OPS[c]}" --token "$TOKEN" nodes --json >"$WORK/ctl_nodes.json" 2>&1 &&
    grep -q '"node_id": *"b"' "$WORK/ctl_nodes.json" &&
    pass "ternctl --url ... nodes --json (from the API)" || { fail "ternctl nodes --json"; cat "$WORK/ctl_nodes.json" >&2; }

now_ms() { date +%s%3N; }
# allocates NODE USER PASS: one allocation on NODE works (and is deleted)
allocates() {
    "$TURNC" -s "127.0.0.1:${UDP[$1]}" -p "127.0.0.1:$PEER_PORT" -u "$2" -P "$3" -n 1 -w 200 -d \
        >"$WORK/once.out" 2>&1 && grep -q '^totals sent=1 data=1' "$WORK/once.out"
}
# within_ms MS NODE USER PASS: NODE authenticates USER within MS; prints the time taken
within_ms() {
    local t0 limit=$1
    t0=$(now_ms)
    while [ $(($(now_ms) - t0)) -le "$limit" ]; do
        allocates "$2" "$3" "$4" && { echo $(($(now_ms) - t0)); return 0; }
        sleep 0.05
    done
    return 1
}

# ---- a user added on a's API authenticates on c; a REST secret rotated through the API ----
code=$(api -o "$WORK/add.json" -w '%{http_code}' -X POST -d '{"name":"carol","password":"carol-pw"}' \
    "http://127.0.0.1:${OPS[a]}/api/v1/users")
[ "$code" = 201 ] || fail "POST /api/v1/users on a: $code $(cat "$WORK/add.json")"
if ms=$(within_ms 3000 c carol carol-pw); then
    pass "carol, added on a's API, allocates on c after $ms ms"; echo "figure: propagation_user_ms=$ms"
else
    fail "carol not seen on c within 3 s: $(cat "$WORK/once.out")"
fi
api -o "$WORK/s1.json" -X POST -d '{"secret":"rest-secret-one"}' "http://127.0.0.1:${OPS[a]}/api/v1/secrets"
S1=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$WORK/s1.json")
sleep 1
api -o "$WORK/cred1.json" -X POST -d '{"user":"erin"}' "http://127.0.0.1:${OPS[b]}/api/v1/credentials"
cred() { "$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d[sys.argv[2]])' "$@"; }
U1=$(cred "$WORK/cred1.json" username) P1=$(cred "$WORK/cred1.json" password)
if ms=$(within_ms 3000 c "$U1" "$P1"); then
    pass "a REST secret added on a's API: a credential from b's API allocates on c ($ms ms)"
else
    fail "REST credential from b not accepted on c: $(cat "$WORK/once.out")"
fi
"$TERNCTL" -c "$WORK/b.yaml" cred --user frank --ttl 3600 --ice-servers >"$WORK/ice.json" 2>"$WORK/ice.err" &&
    "$PY" - "$WORK/ice.json" "${UDP[a]}" "${UDP[b]}" "${UDP[c]}" <<'EOF' &&
import json, sys
urls = json.load(open(sys.argv[1]))["iceServers"][0]["urls"]
want = {"turn:127.0.0.1:%s?transport=udp" % p for p in sys.argv[2:]}
assert set(urls) == want and len(urls) == 3, urls
EOF
    pass "ternctl cred --ice-servers names the three live nodes' URIs (from the registry)" ||
    fail "ternctl cred --ice-servers: $(cat "$WORK/ice.json" "$WORK/ice.err")"
api -o /dev/null -X POST -d '{"secret":"rest-secret-two"}' "http://127.0.0.1:${OPS[c]}/api/v1/secrets"
api -o /dev/null -X DELETE "http://127.0.0.1:${OPS[c]}/api/v1/secrets/$S1"
sleep 1.5
api -o "$WORK/cred2.json" -X POST -d '{"user":"erin"}' "http://127.0.0.1:${OPS[a]}/api/v1/credentials"
U2=$(cred "$WORK/cred2.json" username) P2=$(cred "$WORK/cred2.json" password)
if [ "$P2" != "$P1" ] && allocates b "$U2" "$P2"; then
    pass "secret rotated on c's API (new one added, old one deleted): a's new credential allocates on b"
else
    fail "rotated credential on b: $(cat "$WORK/once.out")"
fi
if ! allocates a "$U1" "$P1" && grep -qE 'allocate_failed code=(401|-1)' "$WORK/once.out"; then
    pass "a credential of the deleted secret is refused on a (401)"
else
    fail "old secret's credential on a: $(cat "$WORK/once.out")"
fi

# ---- steering: a's second allocation goes to the least-loaded live node ----
"$TURNC" -s "127.0.0.1:${UDP[a]}" -p "127.0.0.1:$PEER_PORT" -u alice -P alice-pw -n 700 -i 50 -w 500 \
    >"$WORK/hold_a.out" 2>&1 &
HOLD_A=$!
sleep 2.5 # a's row says 1 allocation by now (1 s heartbeat)
"$TURNC" -F -s "127.0.0.1:${UDP[a]}" -p "127.0.0.1:$PEER_PORT" -u alice -P alice-pw -n 700 -i 50 -w 500 \
    >"$WORK/steered.out" 2>&1 &
HOLD_B=$!
for _ in $(seq 50); do grep -q '^allocated' "$WORK/steered.out" && break; sleep 0.1; done
# b and c hold nothing: the least loaded is either (they tie, and earlier calls moved the rows)
T=
for n in b c; do grep -q "^followed=127.0.0.1:${UDP[$n]}$" "$WORK/steered.out" && T=$n; done
if [ -n "$T" ] && grep -q "^alternate=127.0.0.1:${UDP[$T]}$" "$WORK/steered.out" &&
    grep -q '^allocated' "$WORK/steered.out"; then
    pass "a, at its cluster.max_allocations, sent the next Allocate to $T (300 ALTERNATE-SERVER), which allocated it"
else
    fail "steering: $(grep -v '^data' "$WORK/steered.out" | tr '\n' ' ')"
fi
[ "$(grep -c '^challenge=' "$WORK/steered.out")" = 1 ] &&
    pass "the 300's nonce was taken on $T: one 401 in all (on a), none after the redirect" ||
    fail "challenges: $(grep '^challenge=' "$WORK/steered.out" | tr '\n' ' ')"
[ "$(metric a tern_server_steered_total)" = 1 ] && pass "a: tern_server_steered_total 1" ||
    fail "a: steered_total=$(metric a tern_server_steered_total)"
grep -q '"event":"fleet_steering".*"targets":"udp4->'"$T 127.0.0.1:${UDP[$T]}" "$WORK/a.log" &&
    pass "a logged fleet_steering udp4->$T" || fail "no fleet_steering udp4->$T in a's log"

# ---- the fleet-wide quota: alice holds one on a and one on T (max_per_user_fleet 2) ----
O=b; [ "$T" = b ] && O=c # the node that holds none of alice's
sleep 2 # T's row carries alice's allocation
rc=0
"$TURNC" -s "127.0.0.1:${UDP[$O]}" -p "127.0.0.1:$PEER_PORT" -u alice -P alice-pw -n 1 -w 200 -d \
    >"$WORK/quota.out" 2>&1 || rc=$?
[ "$rc" = 3 ] && grep -q 'allocate_failed code=486' "$WORK/quota.out" &&
    pass "alice's third allocation (on $O) refused: 486, the fleet holds her 2" ||
    fail "fleet quota: rc=$rc $(cat "$WORK/quota.out")"
"$TURNC" -s "127.0.0.1:${UDP[c]}" -p "127.0.0.1:$PEER_PORT" -u bob -P bob-pw -n 1 -w 200 -d \
    >"$WORK/bob.out" 2>&1 && grep -q '^totals sent=1 data=1' "$WORK/bob.out" &&
    pass "bob allocates on c meanwhile (the quota is per user)" || fail "bob on c: $(cat "$WORK/bob.out")"

# ---- the redirect rate: sequential Allocates to a (full), each sent on to b and served ----
t0=$(now_ms) ok_n=0
for i in $(seq 20); do
    "$TURNC" -F -s "127.0.0.1:${UDP[a]}" -p "127.0.0.1:$PEER_PORT" -u dave -P dave-pw -n 1 -w 200 -d \
        >"$WORK/rate.out" 2>&1 && grep -qE "^followed=127.0.0.1:(${UDP[b]}|${UDP[c]})$" "$WORK/rate.out" &&
        grep -q '^totals sent=1 data=1' "$WORK/rate.out" && ok_n=$((ok_n + 1))
done
ms=$(($(now_ms) - t0))
[ "$ok_n" = 20 ] && pass "20 of 20 Allocates to a were steered to b and relayed there ($ms ms in all)" ||
    fail "redirect rate: $ok_n of 20 ($(grep -v '^data' "$WORK/rate.out" | tr '\n' ' '))"
echo "figure: redirect_follow_ms_each=$((ms / 20))"

# ---- a draining node sends its new Allocates on: T drains (alice's call keeps it up), a is full, so to O ----
api -o /dev/null -X POST -d '{}' "http://127.0.0.1:${OPS[$T]}/api/v1/drain"
sleep 1.5 # b's steering pass: draining steers every new Allocate
"$TURNC" -F -s "127.0.0.1:${UDP[$T]}" -p "127.0.0.1:$PEER_PORT" -u dave -P dave-pw -n 1 -w 200 -d \
    >"$WORK/drained.out" 2>&1 || true
grep -q "^followed=127.0.0.1:${UDP[$O]}" "$WORK/drained.out" && grep -q '^totals sent=1 data=1' "$WORK/drained.out" &&
    pass "$T draining: its new Allocate got 300 naming $O (a is full) and was served on $O" ||
    fail "drained $T: $(grep -v '^data' "$WORK/drained.out" | tr '\n' ' ')"
api -o /dev/null -X DELETE "http://127.0.0.1:${OPS[$T]}/api/v1/drain"

# ---- the database stopped for 5 s mid-call ----
rows_before=$(pg_sql "SELECT count(*) FROM call_quality WHERE user_name = 'bob' AND node = '$T'")
pg_pause
t_out=$(now_ms)
for _ in $(seq 40); do grep -q '"event":"fleet_unavailable"' "$WORK/a.log" && break; sleep 0.1; done
grep -q '"event":"fleet_unavailable"' "$WORK/a.log" && pass "database stopped: a logged fleet_unavailable" ||
    fail "no fleet_unavailable on a"
allocates "$T" bob bob-pw && pass "database away: bob (known) allocates on $T, the call ends (its record waits)" ||
    fail "bob on b with the database away: $(cat "$WORK/once.out")"
sleep $((5 - ($(now_ms) - t_out) / 1000 > 0 ? 5 - ($(now_ms) - t_out) / 1000 : 0))
pg_resume
for _ in $(seq 60); do grep -q '"event":"fleet_restored"' "$WORK/a.log" && break; sleep 0.1; done
grep -q '"event":"fleet_restored"' "$WORK/a.log" && pass "database back: a logged fleet_restored" ||
    fail "no fleet_restored on a"
rows=$rows_before
for _ in $(seq 80); do
    rows=$(pg_sql "SELECT count(*) FROM call_quality WHERE user_name = 'bob' AND node = '$T'" 2>/dev/null || echo "$rows_before")
    [ "$rows" -gt "$rows_before" ] && break
    sleep 0.1
done
[ "$rows" -gt "$rows_before" ] && pass "the record of bob's call that ended during the outage is in call_quality now" ||
    fail "no record of the outage call (rows $rows_before -> $rows)"

# ---- a dead node (O): never offered ----
# Right after the outage a's reading can still show every node dead (no heartbeat got through):
# O must be seen alive again first, or 'dead' below would be that stale reading.
wait_state a "$O" alive 6 || fail "$O not alive again after the outage: $(cat "$WORK/nodes.json")"
kill -KILL "${PID[$O]}"
if wait_state a "$O" dead 6; then pass "$O killed: shown dead on a within cluster.dead_after"; else fail "$O not dead: $(cat "$WORK/nodes.json")"; fi
sleep 1.1 # a's metrics follow its next reading
[ "$(metric a 'tern_fleet_nodes{state="dead"}')" = 1 ] && pass "a's /metrics: tern_fleet_nodes{dead} 1" ||
    fail "dead gauge: $(grep '^tern_fleet_nodes' "$WORK/m.txt" | tr '\n' ' ')"
# T answers from its own reading of the registry: wait until it, too, sees O dead
wait_state "$T" "$O" dead 4 || fail "$T does not see $O dead: $(cat "$WORK/nodes.json")"
api -o "$WORK/cred.json" -X POST -d '{"user":"carol"}' "http://127.0.0.1:${OPS[$T]}/api/v1/credentials"
"$PY" - "$WORK/cred.json" "${UDP[$T]}" <<'EOF' && pass "credentials from $T name $T only (a is full, $O dead)" || fail "credential uris: $(cat "$WORK/cred.json")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["uris"] == ["turn:127.0.0.1:%s?transport=udp" % sys.argv[2]], d["uris"]
EOF

# ---- a draining target (T) is not steered to; with none left, a serves the Allocate itself ----
api -o /dev/null -X POST -d '{}' "http://127.0.0.1:${OPS[$T]}/api/v1/drain"
wait_state a "$T" draining 4 && pass "$T draining: shown draining on a" || fail "$T not draining on a"
sleep 1.2 # a's steering pass after it read the registry
"$TURNC" -F -s "127.0.0.1:${UDP[a]}" -p "127.0.0.1:$PEER_PORT" -u bob -P bob-pw -n 1 -w 200 -d \
    >"$WORK/nosteer.out" 2>&1 || true
if ! grep -q '^alternate=' "$WORK/nosteer.out" && grep -q '^totals sent=1 data=1' "$WORK/nosteer.out"; then
    pass "no node to steer to ($T draining, $O dead): a allocates past its soft limit"
else
    fail "a with no target: $(cat "$WORK/nosteer.out")"
fi
grep -q '"event":"fleet_steering".*"targets":"none"' "$WORK/a.log" && pass "a logged fleet_steering none" ||
    fail "no fleet_steering none in a's log"
wait "$HOLD_A" "$HOLD_B" 2>/dev/null || true
grep -q '^totals sent=700 data=700' "$WORK/hold_a.out" && grep -q '^totals sent=700 data=700' "$WORK/steered.out" &&
    pass "both held calls (on a, and the one steered to $T) relayed 700 of 700, through the database outage" ||
    fail "held calls: $(grep totals "$WORK/hold_a.out" "$WORK/steered.out")"

# ---- a clean stop leaves the registry ----
api -o /dev/null -X DELETE "http://127.0.0.1:${OPS[$T]}/api/v1/drain"
kill -TERM "${PID[$T]}"
wait "${PID[$T]}" 2>/dev/null
grep -q '"event":"fleet_left"' "$WORK/$T.log" && pass "$T stopped: fleet_left logged" || fail "no fleet_left on $T"
wait_state a "$T" absent 3 && pass "$T's row is gone from the registry" || fail "$T still listed: $(cat "$WORK/nodes.json")"
grep -h -i "$PG_PASSWORD" "$WORK"/*.log && fail "the database password is in a log" || pass "no password in any node's log"

# ---- forgetting rows: ternctl nodes forget (a dead node's; a live one only with --force) ----
rc=0; "$TERNCTL" -c "$WORK/a.yaml" nodes forget a >"$WORK/forget_a.txt" 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -q "node 'a' is alive" "$WORK/forget_a.txt" &&
    pass "ternctl nodes forget a live node: refused (exit 1, 'node 'a' is alive ... --force')" ||
    fail "forget a live node: exit $rc: $(cat "$WORK/forget_a.txt")"
rc=0; "$TERNCTL" -c "$WORK/a.yaml" nodes forget ghost >"$WORK/forget_g.txt" 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -q "no node 'ghost'" "$WORK/forget_g.txt" && pass "ternctl nodes forget an unknown id: exit 1" ||
    fail "forget unknown: exit $rc: $(cat "$WORK/forget_g.txt")"
if "$TERNCTL" -c "$WORK/a.yaml" nodes forget "$O" >"$WORK/forget_o.txt" 2>&1 &&
    grep -q "forgot node $O (dead" "$WORK/forget_o.txt" && wait_state a "$O" absent 2; then
    pass "ternctl nodes forget $O (dead): its row is gone"
else
    fail "forget $O: $(cat "$WORK/forget_o.txt")"
fi

# ---- schema compat: a newer schema this program may run on, and one it may not ----
kill -TERM "${PID[a]}"
wait "${PID[a]}" 2>/dev/null
pg_sql "UPDATE tern_schema SET version = version + 1"
# A node dead for an hour: a node with cluster.forget_after below that removes its row.
pg_sql "INSERT INTO tern_nodes VALUES ('ghost', '0.0', now() - interval '2 hours', now() - interval '1 hour', false, 0, 0, 0, 0, 0, 0, '[]', '{}')"
start_node a 1 "forget_after: 600"
pass "a starts on schema version 4 with compat 3 (what a newer release that only adds would leave)"
for _ in $(seq 30); do grep -q '"event":"fleet_pruned"' "$WORK/a.log" && break; sleep 0.1; done
if grep -q '"event":"fleet_pruned".*"nodes":1' "$WORK/a.log" && wait_state a ghost absent 2; then
    pass "cluster.forget_after 600: a removed the row of a node dead for an hour (fleet_pruned)"
else
    fail "no prune: $(grep fleet_prune "$WORK/a.log"; cat "$WORK/nodes.json")"
fi
kill -TERM "${PID[a]}"
wait "${PID[a]}" 2>/dev/null
pg_sql "UPDATE tern_schema SET compat = 4"
if "$TERND" -c "$WORK/a.yaml" 2>"$WORK/a2.log"; then
    fail "a started on a schema that needs version 4"
else
    grep -q 'needs at least 4 (upgrade ternd)' "$WORK/a2.log" &&
        pass "a refuses a schema whose compat is 4: 'needs at least 4 (upgrade ternd)'" ||
        { fail "compat refusal message"; tail -3 "$WORK/a2.log" >&2; }
fi
finish
