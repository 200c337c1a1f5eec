#!/usr/bin/env bash
# test_drain.sh: graceful drain. A call streams through ternd while it is told to drain
# (SIGUSR1): the call keeps relaying with zero loss, new Allocates get 300 with an
# ALTERNATE-SERVER of the client's family (508 without one), SIGUSR2 returns to service, and
# ternd exits 0 when the last allocation ends, or at the drain deadline after ending the rest
# (recorded with reason "drained"). The same through the ops API and ternctl: /healthz says
# 503 draining while it drains.
. "$(dirname "$0")/lib.sh"
: "${TURNC:?TURNC must point at tern-turnc (set by CTest)}"
start_echo_peer 127.0.0.1

# wait_exit SECONDS: ternd exits by itself within SECONDS; sets RC.
wait_exit() {
    RC=
    for _ in $(seq $(($1 * 10))); do
        if ! kill -0 "$TERND_PID" 2>/dev/null; then
            RC=0
            wait "$TERND_PID" || RC=$?
            TERND_PID=
            return 0
        fi
        sleep 0.1
    done
    return 1
}
log_has() { grep -q "\"event\":\"$1\"" "$WORK/ternd.log"; }

cat >"$WORK/drain.yaml" <<EOF
server: { realm: tern.test, workers: 1 }
listen:
  - { transport: udp, address: 127.0.0.1, port: 0 }
  - { transport: udp, address: "::1", port: 0 }
relay: { addresses: [127.0.0.1] }
peers: { allow_loopback: true }
auth: { users: [ { name: alice, password: alice-pass } ] }
drain: { alternate_servers: [127.0.0.2:3478, "[::1]:3479", 127.0.0.3:3478] }
log: { level: info, format: json }
EOF
start_ternd "$WORK/drain.yaml"
U4=$(port_of udp 127.0.0.1)
U6=$(port_of udp "[::1]")

# A call: 150 datagrams to the echo peer over 3 s, then its allocation is deleted.
"$TURNC" -s "127.0.0.1:$U4" -p "127.0.0.1:$PEER_PORT" -n 150 -i 20 -w 500 -d >"$WORK/call.out" 2>&1 &
CALL=$!
sleep 0.8
kill -USR1 "$TERND_PID"
sleep 0.3
log_has drain_started && pass "SIGUSR1: drain_started logged" || fail "no drain_started"
"$TURNC" -s "127.0.0.1:$U4" -p "127.0.0.1:$PEER_PORT" -n 1 -w 100 >"$WORK/new4.out" 2>&1 || true
"$TURNC" -s "127.0.0.1:$U4" -p "127.0.0.1:$PEER_PORT" -n 1 -w 100 >"$WORK/new4b.out" 2>&1 || true
"$TURNC" -s "[::1]:$U6" -p "127.0.0.1:$PEER_PORT" -n 1 -w 100 >"$WORK/new6.out" 2>&1 || true
grep -q '^alternate=127.0.0.2:3478$' "$WORK/new4.out" && grep -q 'allocate_failed code=300' "$WORK/new4.out" &&
    pass "draining: a new Allocate over IPv4 gets 300 with ALTERNATE-SERVER 127.0.0.2:3478" ||
    { fail "IPv4 redirect"; cat "$WORK/new4.out" >&2; }
grep -q '^alternate=127.0.0.3:3478$' "$WORK/new4b.out" &&
    pass "the next one gets the next IPv4 alternate (127.0.0.3:3478)" ||
    { fail "alternates not taken in turn"; cat "$WORK/new4b.out" >&2; }
grep -q '^alternate=\[::1\]:3479$' "$WORK/new6.out" &&
    pass "over IPv6 the alternate is the IPv6 one ([::1]:3479)" ||
    { fail "IPv6 redirect"; cat "$WORK/new6.out" >&2; }
kill -0 "$TERND_PID" && pass "ternd keeps running while the call lasts" || fail "ternd exited early"
wait "$CALL" || true
if grep -q '^totals sent=150 data=150 icmp=0$' "$WORK/call.out" && grep -q '^deleted code=0$' "$WORK/call.out"; then
    pass "the call ran through the drain with zero loss (150 of 150 echoed) and was deleted"
else
    fail "the call across the drain"; cat "$WORK/call.out" >&2
fi
if wait_exit 5 && [ "$RC" = 0 ]; then
    pass "ternd exits 0 once the last allocation has ended"
    log_has drain_finished && grep -q '"reason":"no allocations left"' "$WORK/ternd.log" &&
        pass "drain_finished: no allocations left" || fail "no drain_finished event"
else
    fail "ternd did not exit after the drain (rc ${RC:-running})"
fi
[ "$(counter drain_refused)" = 3 ] && [ "$(counter error_300)" = 3 ] &&
    pass "counters: drain_refused 3, error_300 3" ||
    fail "counters: drain_refused $(counter drain_refused), error_300 $(counter error_300)"

# ---- cancel, then the deadline ----
cat >"$WORK/dl.yaml" <<EOF
server: { realm: tern.test, workers: 2 }
listen:
  - { transport: udp, address: 127.0.0.1, port: 0 }
relay: { addresses: [127.0.0.1] }
peers: { allow_loopback: true }
auth: { users: [ { name: alice, password: alice-pass } ] }
drain: { deadline: 2 }
qos: { record_file: "$WORK/records.jsonl" }
log: { level: info, format: json }
EOF
start_ternd "$WORK/dl.yaml"
U4=$(port_of udp 127.0.0.1)
# An allocation that is never deleted: only the deadline can end it.
"$TURNC" -s "127.0.0.1:$U4" -p "127.0.0.1:$PEER_PORT" -n 3 -i 20 -w 300 >"$WORK/held.out" 2>&1 || true
grep -q '^allocated' "$WORK/held.out" || { fail "no held allocation"; cat "$WORK/held.out" >&2; }
kill -USR1 "$TERND_PID"
sleep 0.3
"$TURNC" -s "127.0.0.1:$U4" -p "127.0.0.1:$PEER_PORT" -n 1 -w 100 >"$WORK/n1.out" 2>&1 || true
grep -q 'allocate_failed code=508' "$WORK/n1.out" &&
    pass "draining without alternates: 508 (Draining)" || { fail "no 508"; cat "$WORK/n1.out" >&2; }
kill -USR2 "$TERND_PID"
sleep 0.3
log_has drain_cancelled && pass "SIGUSR2: drain_cancelled" || fail "no drain_cancelled"
"$TURNC" -s "127.0.0.1:$U4" -p "127.0.0.1:$PEER_PORT" -n 1 -w 100 >"$WORK/back.out" 2>&1 || true
grep -q '^allocated' "$WORK/back.out" && pass "back in service: Allocate succeeds" ||
    { fail "no allocation after cancel"; cat "$WORK/back.out" >&2; }
# That allocation is kept (never deleted): the deadline must end it.
kill -USR1 "$TERND_PID"
t0=$(date +%s%N)
if wait_exit 8 && [ "$RC" = 0 ]; then
    ms=$((($(date +%s%N) - t0) / 1000000))
    pass "at the 2 s deadline the held allocation is ended and ternd exits 0 (after $ms ms)"
else
    fail "no exit at the deadline (rc ${RC:-running})"
fi
grep -q '"event":"drain_deadline"' "$WORK/ternd.log" && grep -q '"reason":"deadline"' "$WORK/ternd.log" &&
    pass "drain_deadline and drain_finished (deadline) logged" || fail "deadline events"
grep -q '"reason":"drained"' "$WORK/records.jsonl" &&
    pass "the quality record of the ended call says reason drained" ||
    { fail "no drained record"; cat "$WORK/records.jsonl" >&2; }

# ---- through the ops API and ternctl ----
cat >"$WORK/api.yaml" <<EOF
server: { realm: tern.test, workers: 2 }
listen:
  - { transport: udp, address: 127.0.0.1, port: 0 }
relay: { addresses: [127.0.0.1] }
peers: { allow_loopback: true }
auth: { users: [ { name: alice, password: alice-pass } ] }
ops: { listen: "127.0.0.1:0", token: "drain-test-token" }
log: { level: info, format: json }
EOF
start_ternd "$WORK/api.yaml"
U4=$(port_of udp 127.0.0.1)
OPS=$(grep '"event":"ops_listening"' "$WORK/ternd.log" | sed -E 's/.*"port":([0-9]+).*/\1/')
API="http://127.0.0.1:$OPS"
"$TURNC" -s "127.0.0.1:$U4" -p "127.0.0.1:$PEER_PORT" -n 1 -w 100 >"$WORK/held2.out" 2>&1 || true
health() { curl -s -o "$WORK/health.json" -w '%{http_code}' "$API/healthz"; }
[ "$(health)" = 200 ] && pass "/healthz 200 in service" || fail "/healthz not 200"
[ "$(curl -s -o /dev/null -w '%{http_code}' -X POST "$API/api/v1/drain")" = 401 ] &&
    pass "POST /api/v1/drain without the token: 401" || fail "drain without the token accepted"
code=$(curl -s -o "$WORK/bad.json" -w '%{http_code}' -X POST -H "Authorization: Bearer drain-test-token" \
    -d '{"dedline": 5}' "$API/api/v1/drain")
[ "$code" = 400 ] && grep -q 'unknown field' "$WORK/bad.json" && pass "a misspelt field: 400 naming it" ||
    fail "drain with an unknown field: $code $(cat "$WORK/bad.json")"
expect_out "ternctl drain --deadline 30 starts a drain" '^draining: 1 allocation left, deadline in (29|30) s$' \
    "$TERNCTL" --url "$API" --token drain-test-token drain --deadline 30
code=$(health)
if [ "$code" = 503 ] && python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if d=={"status":"draining","allocations":1,"generation":1} else 1)' "$WORK/health.json"; then
    pass "/healthz 503 {status: draining, allocations: 1}"
else
    fail "/healthz while draining: $code $(cat "$WORK/health.json")"
fi
"$TURNC" -s "127.0.0.1:$U4" -p "127.0.0.1:$PEER_PORT" -n 1 -w 100 >"$WORK/n2.out" 2>&1 || true
grep -q 'allocate_failed code=508' "$WORK/n2.out" && pass "API drain: a new Allocate gets 508" ||
    fail "API drain: no 508"
expect_out "ternctl drain --status" '^draining: 1 allocation left' \
    "$TERNCTL" --url "$API" --token drain-test-token drain --status
expect_out "ternctl drain --cancel returns to service" '^in service: 1 allocation$' \
    "$TERNCTL" --url "$API" --token drain-test-token drain --cancel
[ "$(health)" = 200 ] && pass "/healthz 200 again" || fail "/healthz after cancel"
curl -s -o /dev/null -X POST -H "Authorization: Bearer drain-test-token" -d '{"deadline": 1}' "$API/api/v1/drain"
if wait_exit 6 && [ "$RC" = 0 ]; then pass "POST /api/v1/drain {deadline: 1}: the held call is ended, ternd exits 0"; else
    fail "no exit after an API drain (rc ${RC:-running})"
fi
finish
