#!/usr/bin/env bash
# test_reload_live.sh: keys a reload applies live, each observed at runtime after a SIGHUP (the
# change detection alone is unit-tested in test_config): allocation.max_per_user lowered (the
# next Allocate of that user gets 486, the one held keeps relaying); allocation.bandwidth_limit
# set under a relaying allocation (most of its data dropped, drop_bandwidth); auth.strict_expiry
# turned on (a database user deleted mid-call then loses the allocation; before, not);
# auth.secrets rotated (a REST credential under the added secret works, one under the removed
# secret is refused); log.level
# raised to debug (debug events appear); log.format json -> text -> json (the lines change
# form); qos.dscp preserve -> zero (a peer sees the client's DSCP, then only its ECN bits);
# qos.enabled true -> false -> true (the allocation views lose their QoS, then have it again);
# qos.record_file moved (the record of a call that ends after the reload is written to the new
# file). Every config_reloaded event names the keys that changed and no secret.
. "$(dirname "$0")/lib.sh"
: "${TURNC:?TURNC must point at tern-turnc (set by CTest)}"
TERNCTL="$TERN_BUILD_DIR/ops/ternctl"
DB="$WORK/tern.db"
for u in carol dave; do
    echo "$u-pw" | "$TERNCTL" --db "$DB" --realm live.test user add "$u" --password-stdin >/dev/null ||
        { fail "ternctl user add $u"; finish; }
done
command -v turnutils_uclient >/dev/null || { fail "turnutils_uclient missing (Debian package coturn)"; finish; }
start_echo_peer 127.0.0.1

MAXU=unlimited
BW=0
STRICT=false
SECRETS='[ secret-one ]'
LEVEL=info
LOGFMT=json
DSCP=preserve
QOSON=true
RECORDS=$WORK/records-1.jsonl
write_cfg() {
    cat >"$WORK/tern.yaml" <<YAML
server: { realm: live.test, workers: 2 }
listen:
  - { transport: udp, address: 127.0.0.1, port: 0 }
  - { transport: tcp, address: 127.0.0.1, port: 0 }
relay: { addresses: [127.0.0.1], ports: { min: 52000, max: 52999 } }
peers: { allow_loopback: true }
allocation: { max_per_user: $MAXU, bandwidth_limit: $BW }
auth: { users: [ { name: alice, password: alice-pass } ], secrets: $SECRETS, database: $DB, strict_expiry: $STRICT }
qos: { enabled: $QOSON, dscp: $DSCP, record_file: "$RECORDS" }
ops: { listen: "127.0.0.1:0" }
log: { level: $LEVEL, format: $LOGFMT }
YAML
}
write_cfg
start_ternd "$WORK/tern.yaml"
U4=$(port_of udp 127.0.0.1)
T4=$(port_of tcp 127.0.0.1)
reloads=0
# reload KEY...: SIGHUP, wait for the next config_reloaded, require it to name every KEY
reload() {
    reloads=$((reloads + 1))
    kill -HUP "$TERND_PID"
    local n
    for _ in $(seq 50); do
        n=$(grep -c '"event":"config_reloaded"' "$WORK/ternd.log" || true)
        [ "$n" -ge "$reloads" ] && break
        sleep 0.1
    done
    local ev k
    ev=$(grep '"event":"config_reloaded"' "$WORK/ternd.log" | tail -1 || true)
    for k in "$@"; do
        echo "$ev" | grep -q "$k" || { fail "config_reloaded does not name $k: $ev"; return 1; }
    done
    sleep 0.3 # the workers adopt the generation between loop passes
    pass "reload $reloads: config_reloaded names $*"
}

# ---- allocation.max_per_user: unlimited -> 1 -> unlimited ----
"$TURNC" -s "127.0.0.1:$U4" -p "127.0.0.1:$PEER_PORT" -u alice -P alice-pass -n 80 -i 50 -w 500 -d \
    >"$WORK/held.out" 2>&1 &
HELD=$!
sleep 0.8
"$TURNC" -s "127.0.0.1:$U4" -p "127.0.0.1:$PEER_PORT" -u alice -P alice-pass -n 1 -w 300 -d >"$WORK/second0.out" 2>&1 || true
grep -q '^totals sent=1 data=1' "$WORK/second0.out" && pass "unlimited: a second concurrent allocation of alice relays" ||
    fail "second allocation before the reload: $(cat "$WORK/second0.out")"
MAXU=1
write_cfg
reload allocation.max_per_user
"$TURNC" -s "127.0.0.1:$U4" -p "127.0.0.1:$PEER_PORT" -u alice -P alice-pass -n 1 -w 300 >"$WORK/second1.out" 2>&1 || true
grep -q 'allocate_failed code=486' "$WORK/second1.out" && pass "max_per_user 1 after the reload: a second Allocate of alice gets 486" ||
    fail "after max_per_user 1: $(cat "$WORK/second1.out")"
wait "$HELD" || true
grep -q '^totals sent=80 data=80' "$WORK/held.out" && pass "the allocation held across the reload relayed 80 of 80" ||
    fail "held allocation: $(grep totals "$WORK/held.out" || cat "$WORK/held.out")"
MAXU=unlimited
write_cfg
reload allocation.max_per_user

# ---- allocation.bandwidth_limit: 0 -> 4000 B/s, applied to an allocation already relaying ----
"$TURNC" -s "127.0.0.1:$U4" -p "127.0.0.1:$PEER_PORT" -u alice -P alice-pass -n 100 -i 20 -l 1000 -w 500 -d \
    >"$WORK/bw.out" 2>&1 &
BWC=$!
sleep 0.6
BW=4000
write_cfg
reload allocation.bandwidth_limit
wait "$BWC" || true
bw_data=$(sed -nE 's/^totals sent=100 data=([0-9]+).*/\1/p' "$WORK/bw.out")
[ -n "$bw_data" ] && [ "$bw_data" -ge 15 ] && [ "$bw_data" -le 70 ] &&
    pass "bandwidth_limit 4000 B/s on a live 50 kB/s allocation: $bw_data of 100 came back (the rest dropped)" ||
    fail "bandwidth limit: data=$bw_data ($(grep totals "$WORK/bw.out" || true))"
BW=0
write_cfg
reload allocation.bandwidth_limit

# ---- auth.secrets rotated: [one] -> [one, two] -> [two] ----
rest_ok() { # SECRET: a uclient call with a REST credential minted under it relays, zero loss
    local rc=0
    timeout 60 turnutils_uclient -z 5 -W "$1" -u alice -n 20 -m 1 -l 100 -e 127.0.0.1 -r "$PEER_PORT" \
        -p "$U4" 127.0.0.1 >"$WORK/rest.log" 2>&1 || rc=$?
    [ "$rc" = 0 ] && grep -Eq 'tot_send_msgs=([1-9][0-9]*), tot_recv_msgs=\1$' "$WORK/rest.log" &&
        grep -q 'Total lost packets 0 ' "$WORK/rest.log"
}
rest_ok secret-one && pass "a REST credential under secret-one works" || fail "secret-one at start: $(tail -3 "$WORK/rest.log")"
rest_ok secret-two && fail "secret-two accepted before it was configured" || pass "secret-two refused before the reload"
SECRETS='[ secret-one, secret-two ]'
write_cfg
reload auth.secrets
rest_ok secret-two && pass "after adding it: a REST credential under secret-two works" || fail "secret-two after the reload: $(tail -3 "$WORK/rest.log")"
SECRETS='[ secret-two ]'
write_cfg
reload auth.secrets
rest_ok secret-one && fail "secret-one still accepted after its removal" || pass "after removing it: secret-one refused"
rest_ok secret-two && pass "secret-two still works" || fail "secret-two after removing secret-one"

# ---- auth.strict_expiry: false -> true: deleting a user then ends its live allocation ----
strict_call() { # USER: a 4-s call in the background, its output in $WORK/USER.out
    "$TURNC" -s "127.0.0.1:$U4" -p "127.0.0.1:$PEER_PORT" -u "$1" -P "$1-pw" -n 80 -i 50 -w 500 \
        >"$WORK/$1.out" 2>&1 &
}
strict_call carol
C1=$!
sleep 0.8
"$TERNCTL" --db "$DB" --realm live.test user del carol >/dev/null || fail "ternctl user del carol"
wait "$C1" || true
grep -q '^totals sent=80 data=80' "$WORK/carol.out" &&
    pass "strict_expiry false: carol deleted mid-call, her allocation relays to its end (80 of 80)" ||
    fail "strict_expiry false: $(grep totals "$WORK/carol.out" || true)"
STRICT=true
write_cfg
reload auth.strict_expiry
strict_call dave
C2=$!
sleep 0.8
"$TERNCTL" --db "$DB" --realm live.test user del dave >/dev/null || fail "ternctl user del dave"
wait "$C2" || true
d=$(sed -nE 's/^totals sent=80 data=([0-9]+).*/\1/p' "$WORK/dave.out")
grep -q '"event":"allocation_ended".*"reason":"revoked".*"user":"dave"' "$WORK/ternd.log" && [ -n "$d" ] && [ "$d" -lt 70 ] &&
    pass "strict_expiry true after the reload: dave deleted mid-call, his allocation revoked ($d of 80 came back)" ||
    fail "strict_expiry true: data=$d, revoked: $(grep -c '"reason":"revoked"' "$WORK/ternd.log" || true)"

# ---- log.level: info -> debug ----
# A TCP connection opened and closed logs tcp_close at debug level.
tcp_blip() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$T4" 2>/dev/null || true; sleep 0.3; }
tcp_blip
before=$(grep -c '"level":"debug"' "$WORK/ternd.log" || true)
LEVEL=debug
write_cfg
reload log.level
tcp_blip
after=$(grep -c '"level":"debug"' "$WORK/ternd.log" || true)
[ "$before" = 0 ] && [ "$after" -gt 0 ] && pass "log.level debug: $after debug events after the reload, none before" ||
    fail "debug events before=$before after=$after"
grep -q '"level":"debug","event":"tcp_close"' "$WORK/ternd.log" && pass "tcp_close logged at debug level" || fail "no tcp_close debug event"

# ---- log.format: json -> text -> json ----
# The reload's own event is written in the new format (a text line: time, level, event,
# key=value), and so is everything after it; back to json, JSON lines again.
LOGFMT=text
write_cfg
kill -HUP "$TERND_PID"
for _ in $(seq 50); do grep -Eq '^[0-9T:.-]+Z +(info|warn) +config_reloaded ' "$WORK/ternd.log" && break; sleep 0.1; done
tcp_blip
if grep -Eq '^[0-9T:.-]+Z +(info|warn) +config_reloaded .*log.format' "$WORK/ternd.log" &&
    grep -Eq '^[0-9T:.-]+Z +debug +tcp_close ' "$WORK/ternd.log"; then
    pass "log.format text: the reload's event and a later tcp_close are text lines"
else
    fail "log.format text: no text lines after the reload"; tail -3 "$WORK/ternd.log" | sed 's/^/    /' >&2
fi
LOGFMT=json
write_cfg
reload log.format
tcp_blip
tail -1 "$WORK/ternd.log" | grep -q '^{"ts":' && pass "log.format json again: JSON lines" ||
    fail "log.format json again: $(tail -1 "$WORK/ternd.log")"

# ---- qos.dscp: preserve -> zero ----
# The client sends with EF + ECT(1) (0xb9): with preserve the peer sees 0xb9, with zero only
# the ECN bits (0x01), from the first datagram after the reload.
TOSPEER_PORT=$(free_udp_port)
python3 "$TERN_SOURCE_DIR/tests/tools/tos_peer.py" 127.0.0.1 "$TOSPEER_PORT" 0 "$WORK/tos.log" \
    >"$WORK/tospeer.out" 2>&1 &
TOSPEER=$!
CLEANUP_HOOKS+=(stop_tospeer)
stop_tospeer() { kill "$TOSPEER" 2>/dev/null || true; }
for _ in $(seq 50); do grep -q ready "$WORK/tospeer.out" 2>/dev/null && break; sleep 0.1; done
tos_call() {
    : >"$WORK/tos.log"
    timeout 20 "$TURNC" -s "127.0.0.1:$U4" -p "127.0.0.1:$TOSPEER_PORT" -u alice -P alice-pass \
        -T 0xb9 -n 5 -i 20 -w 300 -d >"$WORK/tos.out" 2>&1 || true
    sed -nE 's/^rx tos=(0x[0-9a-f]+).*/\1/p' "$WORK/tos.log" | sort -u | tr '\n' ' '
}
t1=$(tos_call)
DSCP=zero
write_cfg
reload qos.dscp
t2=$(tos_call)
[ "$t1" = "0xb9 " ] && [ "$t2" = "0x01 " ] &&
    pass "qos.dscp preserve -> zero: the peer saw tos ${t1}before the reload, ${t2}after" ||
    fail "qos.dscp: before '$t1', after '$t2' (wanted 0xb9, then 0x01)"

# ---- qos.enabled: true -> false -> true ----
OPS=$(grep '"event":"ops_listening"' "$WORK/ternd.log" | tail -1 | sed -E 's/.*"port":([0-9]+).*/\1/')
qos_of_call() { # the QoS summary of a relaying allocation, as the list shows it ("null" when off)
    timeout 20 "$TURNC" -s "127.0.0.1:$U4" -p "127.0.0.1:$PEER_PORT" -u alice -P alice-pass \
        -n 30 -i 30 -w 300 -d >"$WORK/qosq.out" 2>&1 &
    local pid=$!
    sleep 0.6
    curl -sf "http://127.0.0.1:$OPS/api/v1/allocations" | python3 -c '
import json, sys
d = json.load(sys.stdin); al = d["allocations"] if isinstance(d, dict) else d
q = [a["qos"] for a in al if a["user"] == "alice"]
print("none" if not q else "null" if q[0] is None else "packets=%d" % q[0]["client_leg"]["packets"])'
    wait "$pid" || true
}
q1=$(qos_of_call)
QOSON=false
write_cfg
reload qos.enabled
q2=$(qos_of_call)
QOSON=true
write_cfg
reload qos.enabled
q3=$(qos_of_call)
[[ "$q1" == packets=* ]] && [ "$q2" = null ] && [[ "$q3" == packets=* ]] && [ "$q3" != packets=0 ] &&
    pass "qos.enabled true -> false -> true: the call's QoS $q1, then $q2, then $q3" ||
    fail "qos.enabled: '$q1', '$q2', '$q3' (wanted packets, null, packets)"

# ---- qos.record_file: records-1 -> records-2 ----
"$TURNC" -s "127.0.0.1:$U4" -p "127.0.0.1:$PEER_PORT" -u alice -P alice-pass -n 60 -i 50 -w 500 -d \
    >"$WORK/rec.out" 2>&1 &
REC=$!
sleep 0.8
n1=$(wc -l <"$RECORDS" 2>/dev/null || echo 0)
RECORDS=$WORK/records-2.jsonl
write_cfg
reload qos.record_file
wait "$REC" || true
for _ in $(seq 30); do [ -s "$RECORDS" ] && break; sleep 0.1; done
n1b=$(wc -l <"$WORK/records-1.jsonl" 2>/dev/null || echo 0)
n2=$(wc -l <"$RECORDS" 2>/dev/null || echo 0)
[ "$n2" -ge 1 ] && [ "$n1b" = "$n1" ] &&
    pass "qos.record_file moved: the call ending after the reload is in records-2 ($n2), records-1 unchanged ($n1)" ||
    fail "records: records-1 $n1 -> $n1b, records-2 $n2"

grep -Eq 'alice-pass|secret-one|secret-two' "$WORK/ternd.log" && fail "a password or secret reached the log" ||
    pass "no password or secret in the log"
stop_ternd
[ "$(counter drop_bandwidth)" -gt 0 ] && pass "drop_bandwidth=$(counter drop_bandwidth)" || fail "drop_bandwidth=$(counter drop_bandwidth)"
finish
