#!/usr/bin/env bash
# test_call_records.sh: call records across a fleet (qos.record_database). Two ternd nodes with
# distinct cluster.node_id share one PostgreSQL (a throw-away server, pglib.sh; the password in
# a file). A call through each (tern-mediagen: real SRTP; node A's with 10 % scripted loss on
# the client leg's audio) ends, and its record is a row of call_quality within a couple of
# seconds; `ternctl calls --worst loss` lists the lossy call first with its node and leg. Then
# PostgreSQL stops while calls end: their records wait in the queue (node A), or overflow a
# 3-record queue and are counted as dropped (node B); when it returns every queued record is
# written, and each node logged records_database_unavailable and _restored once. No password in
# any log or output.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pglib.sh"
: "${TURNC:?TURNC must point at tern-turnc (set by CTest)}"
: "${TERNCTL:?TERNCTL must point at ternctl (set by CTest)}"
: "${TERN_BUILD_DIR:?TERN_BUILD_DIR must point at the build tree (set by CTest)}"
MEDIAGEN="$TERN_BUILD_DIR/tests/qos/tern-mediagen"
[ -x "$MEDIAGEN" ] || { fail "tern-mediagen not built ($MEDIAGEN)"; finish; }
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3
pg_start
start_echo_peer 127.0.0.1

node_cfg() { # NAME QUEUE
    cat >"$WORK/$1.yaml" <<EOF
server: { realm: tern.test, workers: 1 }
listen:
  - { transport: udp, address: 127.0.0.1, port: 0 }
relay: { addresses: [127.0.0.1] }
peers: { allow_loopback: true }
auth:
  database: "$PG_URI_NOPW"
  database_password_file: "$PG_DIR/pw"
  users: [ { name: alice, password: wonderland }, { name: bob, password: builder } ]
qos: { enabled: true, record_database: true, record_database_queue: $2 }
cluster: { node_id: node-$1 }
ops: { listen: "127.0.0.1:0" }
log: { level: info, format: json }
EOF
}
node_cfg a 4096
node_cfg b 3

# start_node NAME: ternd on NAME.yaml, its log in NAME.log; sets NAME_PID, NAME_U4, NAME_OPS.
start_node() {
    start_ternd "$WORK/$1.yaml"
    mv "$WORK/ternd.log" "$WORK/$1.log" # ternd keeps writing to it under its new name
    for _ in $(seq 50); do grep -q '"event":"ops_listening"' "$WORK/$1.log" && break; sleep 0.1; done
    eval "${1}_PID=$TERND_PID"
    eval "${1}_U4=$(grep '"event":"listening"' "$WORK/$1.log" | grep '"transport":"udp"' | head -1 | sed -E 's/.*"port":([0-9]+).*/\1/')"
    eval "${1}_OPS=http://127.0.0.1:$(grep '"event":"ops_listening"' "$WORK/$1.log" | sed -E 's/.*"port":([0-9]+).*/\1/')"
    TERND_PID=
}
kill_nodes() { kill -KILL "${a_PID:-}" "${b_PID:-}" 2>/dev/null || true; }
CLEANUP_HOOKS+=(kill_nodes)
start_node a # first: it migrates the schema
start_node b
grep -q '"event":"records_started".*"node":"node-a"' "$WORK/a.log" && pass "node A: records_started node-a" ||
    fail "node A: no records_started"

rows() { pg_sql "SELECT count(*) FROM call_quality"; }
metric() { # metric NODE NAME
    local base
    eval "base=\$${1}_OPS"
    curl -s "$base/metrics" | sed -nE "s/^$2 ([0-9]+)$/\1/p"
}
now_ms() { date +%s%3N; }
# wait_rows N SECONDS: until call_quality has N rows; prints the milliseconds it took
wait_rows() {
    local t0 n
    t0=$(now_ms)
    while [ $(($(now_ms) - t0)) -le $(($2 * 1000)) ]; do
        n=$(rows)
        [ "$n" -ge "$1" ] && { echo $(($(now_ms) - t0)); return 0; }
        sleep 0.05
    done
    return 1
}
[ "$(rows)" = 0 ] && pass "call_quality exists and is empty" || fail "call_quality: $(rows) rows"

# ---- a call through each node; A's client leg loses 10 % of its audio ----
gen() { # NAME SERVER_PORT USER PASS STREAMS...
    local name=$1 port=$2 user=$3 pass=$4; shift 4
    "$MEDIAGEN" --server "127.0.0.1:$port" --user "$user" --password "$pass" --realm tern.test \
        --log "$WORK/$name.jsonl" --duration 4 --peer-delay 10 "$@" >"$WORK/$name.err" 2>&1
}
gen lossy "$a_U4" alice wonderland --seed 7 --stream client:audio,seq=100,drop=10 \
    --stream peer:audio,seq=200 &
G1=$!
gen clean "$b_U4" bob builder --seed 8 --stream client:audio,seq=300 --stream peer:audio,seq=400 &
G2=$!
rc1=0; wait "$G1" || rc1=$?
t_end=$(now_ms)
rc2=0; wait "$G2" || rc2=$?
[ "$rc1" = 0 ] && [ "$rc2" = 0 ] && pass "two calls (node A lossy, node B clean) ended" ||
    { fail "mediagen: $rc1 $rc2"; cat "$WORK/lossy.err" "$WORK/clean.err" >&2; }
if ms=$(wait_rows 2 5); then
    pass "both records are rows of call_quality $ms ms after the calls ended"
    echo "figure: record_to_row_ms=$ms"
else
    fail "call_quality has $(rows) rows 5 s after the calls ended"
fi
[ "$(pg_sql "SELECT node || ' ' || user_name || ' ' || worst_loss_leg FROM call_quality WHERE worst_loss > 0.03")" = "node-a alice client" ] &&
    pass "the lossy call's row: node-a, alice, worst loss on the client leg" ||
    fail "rows: $(pg_sql "SELECT node, user_name, worst_loss, worst_loss_leg FROM call_quality")"
[ "$(pg_sql "SELECT record->>'type' FROM call_quality WHERE node = 'node-b'")" = call_quality ] &&
    pass "the whole record is kept as jsonb" || fail "record column"

# ---- ternctl calls ----
"$TERNCTL" -c "$WORK/a.yaml" calls --worst loss >"$WORK/calls.out" 2>&1 || fail "ternctl calls failed"
sed 's/^/    /' "$WORK/calls.out"
head -1 "$WORK/calls.out" | grep -q '^ENDED  *NODE  *USER  *DURATION  *REASON  *LOSS% LEG  *JIT ms LEG  *RTT ms LEG$' &&
    pass "ternctl calls: the header" || fail "ternctl calls header"
line2=$(sed -n 2p "$WORK/calls.out")
echo "$line2" | grep -qE ' node-a +alice +[0-9.]+s +deleted +([5-9]|1[0-9])\.[0-9]{2} client ' &&
    pass "ternctl calls --worst loss: the lossy call first, node-a, its client leg" ||
    fail "first row: $line2"
[ "$(wc -l <"$WORK/calls.out")" = 3 ] && pass "two calls listed" || fail "$(wc -l <"$WORK/calls.out") lines"
"$TERNCTL" --db "$PG_URI" calls --json --worst rtt --limit 1 >"$WORK/calls.json" 2>&1 || fail "calls --json"
"$PY" - "$WORK/calls.json" <<'PY' && pass "ternctl --db URI calls --json --limit 1: one row with the record" || fail "calls --json: $(head -c 300 "$WORK/calls.json")"
import json, sys
rows = json.load(open(sys.argv[1]))
assert len(rows) == 1, rows
r = rows[0]
assert r["node"] in ("node-a", "node-b") and r["record"]["type"] == "call_quality", r
assert r["worst"]["rtt"]["leg"] in ("client", "peer") and r["worst"]["rtt"]["seconds"] > 0, r["worst"]
PY
"$TERNCTL" -c "$WORK/a.yaml" calls --user nobody >"$WORK/none.out" 2>&1 && [ "$(wc -l <"$WORK/none.out")" = 1 ] &&
    pass "ternctl calls --user nobody: the header only" || fail "--user nobody: $(cat "$WORK/none.out")"
rc=0; "$TERNCTL" -c "$WORK/a.yaml" calls --since 5y >"$WORK/bad.out" 2>&1 || rc=$?
[ "$rc" = 2 ] && pass "ternctl calls --since 5y: usage error" || fail "--since 5y: rc=$rc"

# ---- PostgreSQL away while calls end ----
[ "$(metric a tern_records_written_total)" = 1 ] && [ "$(metric b tern_records_written_total)" = 1 ] &&
    pass "each node wrote its record (tern_records_written_total 1)" || fail "written before the outage"
pg_pause
turn_call() { # PORT USER PASS: one short TURN call
    "$TURNC" -s "127.0.0.1:$1" -p "127.0.0.1:$PEER_PORT" -u "$2" -P "$3" -n 1 -w 100 -d \
        >"$WORK/turnc.out" 2>&1 && grep -q '^totals sent=1 data=1' "$WORK/turnc.out"
}
ok=0
for _ in 1 2 3; do turn_call "$a_U4" alice wonderland && ok=$((ok + 1)); done
for _ in 1 2 3 4 5 6; do turn_call "$b_U4" bob builder && ok=$((ok + 1)); done
[ "$ok" = 9 ] && pass "9 calls end with the database down (3 on A, 6 on B)" || fail "$ok of 9 calls worked"
for _ in $(seq 50); do
    grep -q '"event":"records_database_unavailable"' "$WORK/a.log" &&
        grep -q '"event":"records_database_unavailable"' "$WORK/b.log" && break
    sleep 0.1
done
grep -q '"event":"records_database_unavailable"' "$WORK/a.log" && pass "node A: records_database_unavailable" ||
    fail "node A: no records_database_unavailable"
[ "$(metric a tern_records_queue_depth)" = 3 ] && [ "$(metric a tern_records_database_up)" = 0 ] &&
    pass "node A: 3 records queued, tern_records_database_up 0" ||
    fail "node A: depth $(metric a tern_records_queue_depth), up $(metric a tern_records_database_up)"
[ "$(metric b tern_records_queue_depth)" = 3 ] && [ "$(metric b tern_records_dropped_total)" = 3 ] &&
    pass "node B (queue of 3): 3 queued, 3 dropped (tern_records_dropped_total 3)" ||
    fail "node B: depth $(metric b tern_records_queue_depth), dropped $(metric b tern_records_dropped_total)"
sleep 2
pg_resume
t_up=$(now_ms)
if ms=$(wait_rows 8 15); then
    pass "after the database returned, the 6 queued records were written within $ms ms (8 rows)"
    echo "figure: outage_flush_ms=$ms"
else
    fail "$(rows) rows, not 8, after the database returned"
fi
sleep 0.3
[ "$(rows)" = 8 ] && pass "exactly 8 rows: nothing written twice" || fail "$(rows) rows"
[ "$(metric a tern_records_written_total)" = 4 ] && [ "$(metric a tern_records_dropped_total)" = 0 ] &&
    [ "$(metric a tern_records_queue_depth)" = 0 ] && [ "$(metric a tern_records_database_up)" = 1 ] &&
    pass "node A: written 4, dropped 0, queue empty, database up" || fail "node A counters after the outage"
[ "$(metric b tern_records_written_total)" = 4 ] && [ "$(metric b tern_records_queued_total)" = 4 ] &&
    pass "node B: queued 4, written 4 (and 3 dropped)" || fail "node B counters after the outage"
for n in a b; do
    u=$(grep -c '"event":"records_database_unavailable"' "$WORK/$n.log")
    r=$(grep -c '"event":"records_database_restored"' "$WORK/$n.log")
    [ "$u" = 1 ] && [ "$r" = 1 ] && pass "node $n: one records_database_unavailable, one _restored" ||
        fail "node $n: $u unavailable, $r restored events"
done
[ "$(pg_sql "SELECT count(*) FROM call_quality WHERE node = 'node-a'")" = 4 ] && pass "node-a has 4 rows" ||
    fail "node-a rows"

# ---- stop; no password anywhere ----
for n in a b; do
    eval "pid=\$${n}_PID"
    kill -TERM "$pid"
    rc=0; wait "$pid" || rc=$?
    [ "$rc" = 0 ] && grep -q '"event":"records_stopped"' "$WORK/$n.log" && pass "node $n stopped (records_stopped)" ||
        fail "node $n: exit $rc"
done
a_PID= b_PID=
if grep -q -- "$PG_PASSWORD" "$WORK/a.log" "$WORK/b.log" "$WORK/calls.out" "$WORK/calls.json" "$WORK/none.out"; then
    fail "the password is in a log or output"
else
    pass "the database password is in no log"
fi
finish
