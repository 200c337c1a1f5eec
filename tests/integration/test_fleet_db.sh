#!/usr/bin/env bash
# test_fleet_db.sh: two ternd nodes share one PostgreSQL credential store (a throw-away server
# this test starts, pglib.sh; the password in a file, auth.database_password_file). A user
# added through one node's admin API, or with ternctl, authenticates on the other within about
# a second (LISTEN/NOTIFY). The database stopped for 10 s mid-call: the call keeps zero loss,
# known users still allocate, /healthz and /metrics say the database is down, the node logs
# database_unavailable then database_restored, and changes flow again afterwards. A node
# started while the database is down refuses to start, saying why. No password in any log.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pglib.sh"
: "${TURNC:?TURNC must point at tern-turnc (set by CTest)}"
: "${TERNCTL:?TERNCTL must point at ternctl (set by CTest)}"
command -v turnutils_uclient >/dev/null || { fail "turnutils_uclient missing (Debian package coturn)"; finish; }
pg_start
start_echo_peer 127.0.0.1

node_cfg() { # NAME: a node's config file
    cat >"$WORK/$1.yaml" <<EOF
server: { realm: fleet.test, workers: 1 }
listen:
  - { transport: udp, address: 127.0.0.1, port: 0 }
relay: { addresses: [127.0.0.1] }
peers: { allow_loopback: true }
auth: { database: "$PG_URI_NOPW", database_password_file: "$PG_DIR/pw" }
ops: { listen: "127.0.0.1:0", token: "fleet-token" }
log: { level: info, format: json }
EOF
}
node_cfg a
node_cfg b

# Node A first (it migrates the schema), then B; one ternd per start_ternd: keep A's log.
start_ternd "$WORK/a.yaml"
A_PID=$TERND_PID
kill_a() { kill -KILL "$A_PID" 2>/dev/null || true; }
CLEANUP_HOOKS+=(kill_a)
mv "$WORK/ternd.log" "$WORK/a.log" # ternd keeps writing to it under its new name
for _ in $(seq 50); do grep -q '"event":"ops_listening"' "$WORK/a.log" && break; sleep 0.1; done
A_OPS=$(grep '"event":"ops_listening"' "$WORK/a.log" | sed -E 's/.*"port":([0-9]+).*/\1/')
start_ternd "$WORK/b.yaml"
B_U4=$(port_of udp 127.0.0.1)
for _ in $(seq 50); do grep -q '"event":"ops_listening"' "$WORK/ternd.log" && break; sleep 0.1; done
B_OPS=$(grep '"event":"ops_listening"' "$WORK/ternd.log" | sed -E 's/.*"port":([0-9]+).*/\1/')
B_API="http://127.0.0.1:$B_OPS"

now_ms() { date +%s%3N; }
# allocates_on_b USER PASS: one allocation on node B works (and is deleted)
allocates_on_b() {
    "$TURNC" -s "127.0.0.1:$B_U4" -p "127.0.0.1:$PEER_PORT" -u "$1" -P "$2" -n 1 -w 200 -d \
        >"$WORK/turnc.out" 2>&1 && grep -q '^totals sent=1 data=1' "$WORK/turnc.out"
}
# seen_within MS USER PASS: B authenticates USER within MS; prints the time taken
seen_within() {
    local t0=$1 limit=$2
    while [ $(($(now_ms) - t0)) -le "$limit" ]; do
        allocates_on_b "$3" "$4" && { echo $(($(now_ms) - t0)); return 0; }
        sleep 0.05
    done
    return 1
}

# ---- a user added on node A's admin API authenticates on node B ----
t0=$(now_ms)
code=$(curl -s -o "$WORK/add.json" -w '%{http_code}' -X POST -H "Authorization: Bearer fleet-token" \
    -d '{"name":"alice","password":"alice-pw"}' "http://127.0.0.1:$A_OPS/api/v1/users")
[ "$code" = 201 ] && pass "POST /api/v1/users on node A: 201" || fail "add on A: $code $(cat "$WORK/add.json")"
if ms=$(seen_within "$t0" 3000 alice alice-pw); then
    pass "alice, added on node A, allocates on node B after $ms ms"
    echo "figure: propagation_api_ms=$ms"
else
    fail "alice not seen on node B within 3 s"; cat "$WORK/turnc.out" >&2
fi
# ... and one added with ternctl (through the same database, its password from the file)
t0=$(now_ms)
echo "bob-pw" | "$TERNCTL" -c "$WORK/a.yaml" user add bob --password-stdin >"$WORK/ctl.out" 2>&1 &&
    pass "ternctl user add on the PostgreSQL store" || { fail "ternctl user add"; cat "$WORK/ctl.out" >&2; }
if ms=$(seen_within "$t0" 3000 bob bob-pw); then
    pass "bob, added with ternctl, allocates on node B after $ms ms"
    echo "figure: propagation_ternctl_ms=$ms"
else
    fail "bob not seen on node B within 3 s"
fi
curl -s -H "Authorization: Bearer fleet-token" "$B_API/api/v1/users" | grep -q '"bob"' &&
    pass "node B's admin API lists bob" || fail "GET /api/v1/users on B"

# ---- the database goes away for 10 s during a call ----
timeout 60 turnutils_uclient -z 20 -n 900 -m 1 -l 120 -u alice -w alice-pw -e 127.0.0.1 \
    -r "$PEER_PORT" -p "$B_U4" 127.0.0.1 >"$WORK/call.log" 2>&1 &
CALL=$!
sleep 1.5
pg_pause
t_down=$(now_ms)
for _ in $(seq 40); do grep -q '"event":"database_unavailable"' "$WORK/ternd.log" && break; sleep 0.25; done
grep -q '"event":"database_unavailable"' "$WORK/ternd.log" && pass "database_unavailable logged" ||
    fail "no database_unavailable"
h=$(curl -s "$B_API/healthz")
echo "$h" | grep -q '"status": *"ok"' && echo "$h" | grep -q '"database": *"down"' &&
    pass "/healthz 200 with database down: $h" || fail "/healthz while the database is down: $h"
curl -s "$B_API/metrics" >"$WORK/m.txt"; grep -q '^tern_database_up 0$' "$WORK/m.txt" && pass "tern_database_up 0" || fail "tern_database_up not 0"
allocates_on_b bob bob-pw && pass "a known user (bob) still allocates with the database down" ||
    { fail "bob refused while the database is down"; cat "$WORK/turnc.out" >&2; }
rc=0; echo "x" | "$TERNCTL" -c "$WORK/a.yaml" user add carol --password-stdin >"$WORK/ctl.out" 2>&1 || rc=$?
[ "$rc" != 0 ] && grep -q 'cannot connect' "$WORK/ctl.out" && ! grep -q "$PG_PASSWORD" "$WORK/ctl.out" &&
    pass "ternctl with the database down: exit $rc, $(head -c 120 "$WORK/ctl.out")" ||
    { fail "ternctl while down: rc=$rc"; cat "$WORK/ctl.out" >&2; }
# a node that starts now refuses to, saying why
rc=0; timeout 20 "$TERND" -c "$WORK/a.yaml" 2>"$WORK/c.log" || rc=$?
[ "$rc" = 1 ] && grep -q '"event":"database_failed"' "$WORK/c.log" && grep -q 'cannot connect' "$WORK/c.log" &&
    pass "a node started while the database is down exits 1 with database_failed" ||
    { fail "start while down: rc=$rc"; tail -3 "$WORK/c.log" >&2; }
while [ $(($(now_ms) - t_down)) -lt 10000 ]; do sleep 0.2; done
pg_resume
t_up=$(now_ms)
for _ in $(seq 60); do grep -q '"event":"database_restored"' "$WORK/ternd.log" && break; sleep 0.2; done
if grep -q '"event":"database_restored"' "$WORK/ternd.log"; then
    pass "database_restored logged $(($(now_ms) - t_up)) ms after the database came back"
else
    fail "no database_restored"
fi
curl -s "$B_API/metrics" >"$WORK/m.txt"; grep -q '^tern_database_up 1$' "$WORK/m.txt" && pass "tern_database_up 1 again" || fail "tern_database_up not 1"
t0=$(now_ms)
echo "carol-pw" | "$TERNCTL" -c "$WORK/a.yaml" user add carol --password-stdin >/dev/null 2>&1 || fail "add carol after"
if ms=$(seen_within "$t0" 3000 carol carol-pw); then pass "after the outage, a new user reaches node B in $ms ms"
else fail "carol not seen after the outage"; fi
rc=0; wait "$CALL" || rc=$?
sent=$(grep -oE 'tot_send_msgs=[0-9]+' "$WORK/call.log" | tail -1 | cut -d= -f2 || true)
recv=$(grep -oE 'tot_recv_msgs=[0-9]+' "$WORK/call.log" | tail -1 | cut -d= -f2 || true)
lost=$(grep -oE 'Total lost packets [0-9]+' "$WORK/call.log" | tail -1 | awk '{print $4}' || true)
[ "$rc" = 0 ] && [ -n "$sent" ] && [ "$sent" -ge 900 ] && [ "$recv" = "$sent" ] && [ "$lost" = 0 ] &&
    pass "the call across a 10 s database outage: $sent sent, $recv received, 0 lost" ||
    { fail "call: rc=$rc sent=$sent recv=$recv lost=$lost"; tail -3 "$WORK/call.log" >&2; }

# ---- no password anywhere ----
if grep -q -- "$PG_PASSWORD" "$WORK/a.log" "$WORK/ternd.log" "$WORK/c.log"; then fail "the password is in a log"
else pass "the database password is in no log"; fi
stop_ternd
kill -TERM "$A_PID"; wait "$A_PID" || fail "node A exit status"
finish
