#!/usr/bin/env bash
# test_strict_expiry.sh: with auth.strict_expiry, deleting a database user while their call
# runs closes its allocations within about a second (a coturn turnutils_uclient session).
. "$(dirname "$0")/lib.sh"
TERNCTL="$TERN_BUILD_DIR/ops/ternctl"
DB="$WORK/tern.db"
echo "s3cret-pw" | "$TERNCTL" --db "$DB" --realm strict.test user add carol --password-stdin >/dev/null \
    || { fail "ternctl user add"; finish; }

start_echo_peer

cat >"$WORK/tern.yaml" <<YAML
server: { realm: strict.test, workers: 2 }
listen: [ { transport: udp, address: 127.0.0.1, port: 0 } ]
relay: { addresses: [127.0.0.1], ports: { min: 50000, max: 59999 } }
peers: { allow_loopback: true }
auth: { database: $DB, strict_expiry: true }
log: { level: info, format: json }
YAML
start_ternd "$WORK/tern.yaml"
U4=$(port_of udp 127.0.0.1)

# A call of about 10 s (500 messages, one every 20 ms); the user is deleted 3 s in.
timeout 60 turnutils_uclient -u carol -w s3cret-pw -e 127.0.0.1 -r "$PEER_PORT" -p "$U4" -n 500 -z 20 127.0.0.1 \
    >"$WORK/uc.log" 2>&1 &
UC=$!
sleep 3
t0=$(date +%s%N)
"$TERNCTL" --db "$DB" --realm strict.test user del carol >/dev/null || fail "ternctl user del"
for _ in $(seq 50); do
    grep -q '"event":"allocation_ended".*"reason":"revoked"' "$WORK/ternd.log" && break
    sleep 0.1
done
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
if grep -q '"event":"allocation_ended".*"reason":"revoked".*"user":"carol"' "$WORK/ternd.log"; then
    pass "deleted user's allocation closed ${ms} ms after ternctl user del"
else
    fail "deleted user's allocation not closed within 5 s"
fi
wait "$UC" || true
recv=$(grep -oE 'tot_recv_msgs=[0-9]+$' "$WORK/uc.log" | tail -1 | cut -d= -f2 || true)
[ -n "$recv" ] && [ "$recv" -lt 500 ] && pass "the call stopped being relayed (received $recv of 500)" \
    || fail "the call went on after the user was deleted (received '$recv')"
stop_ternd
v=$(counter allocations_revoked); [ "${v:-0}" -ge 1 ] && pass "allocations_revoked=$v" || fail "allocations_revoked=$v"
finish
