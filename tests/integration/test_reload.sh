#!/usr/bin/env bash
# test_reload.sh: live reload (SIGHUP, ternctl reload, POST /api/v1/reload). A call streams
# through ternd (coturn's turnutils_uclient, channels) while the configuration is reloaded
# several times and the node is drained and put back: the call ends with zero loss. Refused
# reloads (bad value, a key that cannot change live, a missing certificate) change nothing and
# say "file:line: key: problem". An applied reload takes effect at once: a new user, a new
# ops token, a renewed certificate (same path, new content) on new handshakes, a new relay
# port range for new allocations, an added listener, a removed one (TCP: closed; UDP: kept for
# the allocation made through it, new Allocates refused, closed when it ends), new drain
# alternates, and a peer policy that now refuses the peer (its permission is removed and
# counted, data stops). Secrets never reach the log.
. "$(dirname "$0")/lib.sh"
: "${TURNC:?TURNC must point at tern-turnc (set by CTest)}"
: "${TERNCTL:?TERNCTL must point at ternctl (set by CTest)}"
command -v turnutils_uclient >/dev/null || { fail "turnutils_uclient missing (Debian package coturn)"; finish; }
start_echo_peer 127.0.0.1 ::1

mkcert() { # CN: a self-signed certificate and key in $WORK/CN.{crt,key}
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj "/CN=$1" -keyout "$WORK/$1.key" -out "$WORK/$1.crt" 2>/dev/null
}
mkcert tern-reload-a && mkcert tern-reload-b || { fail "openssl req"; finish; }
cp "$WORK/tern-reload-a.crt" "$WORK/cert.pem"
cp "$WORK/tern-reload-a.key" "$WORK/key.pem"

# The configuration file, from these variables (each reload rewrites it).
REALM=reload.test
LISTEN_EXTRA="  - { transport: tcp, address: 127.0.0.1, port: 0 }"
PORTS="{ min: 50000, max: 50999 }"
LOOPBACK=true
USERS="{ name: alice, password: alice-pass }"
ALT=""
TOKEN=reload-token-one
write_cfg() {
    cat >"$WORK/tern.yaml" <<EOF
server: { realm: $REALM, workers: 2 }
listen:
  - { transport: udp, address: 127.0.0.1, port: 0 }
  - { transport: tls, address: 127.0.0.1, port: 0 }
$LISTEN_EXTRA
tls: { certificate: $WORK/cert.pem, private_key: $WORK/key.pem }
relay: { addresses: [127.0.0.1, "::1"], ports: $PORTS }
peers: { allow_loopback: $LOOPBACK }
auth: { users: [ $USERS ] }
drain: { alternate_servers: [ $ALT ] }
ops: { listen: "127.0.0.1:0", token: "$TOKEN" }
log: { level: info, format: json }
EOF
}
write_cfg
start_ternd "$WORK/tern.yaml"
U4=$(port_of udp 127.0.0.1)
T4=$(port_of tcp 127.0.0.1)
S4=$(port_of tls 127.0.0.1)
OPS=$(grep '"event":"ops_listening"' "$WORK/ternd.log" | sed -E 's/.*"port":([0-9]+).*/\1/')
API="http://127.0.0.1:$OPS"
log_count() { grep -c "\"event\":\"$1\"" "$WORK/ternd.log" || true; }
health_gen() { curl -s "$API/healthz" | python3 -c 'import json,sys; print(json.load(sys.stdin)["generation"])'; }
ctl() { "$TERNCTL" --url "$API" --token "$TOKEN" "$@"; }
subject() { # the CN a new TLS handshake on S4 shows
    openssl s_client -connect "127.0.0.1:$S4" -servername x </dev/null 2>/dev/null |
        openssl x509 -noout -subject 2>/dev/null | sed -E 's/.*CN ?= ?//'
}
tcp_open() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

[ "$(health_gen)" = 1 ] && pass "generation 1 at start (/healthz)" || fail "healthz generation at start"
[ "$(subject)" = tern-reload-a ] && pass "TLS serves certificate A" || fail "TLS subject: $(subject)"

# The call that must survive everything below: 2 clients x 1000 messages, 20 ms apart (~20 s).
timeout 90 turnutils_uclient -z 20 -n 1000 -m 2 -l 120 -u alice -w alice-pass -e 127.0.0.1 \
    -r "$PEER_PORT" -p "$U4" 127.0.0.1 >"$WORK/call.log" 2>&1 &
CALL=$!
sleep 1

# ---- refused reloads: nothing changes ----
PORTS="{ min: 70000, max: 50999 }"
write_cfg
kill -HUP "$TERND_PID"
sleep 0.5
if grep '"event":"config_problem"' "$WORK/ternd.log" | grep -q 'tern.yaml:[0-9]*: relay.ports.min: 70000 is out of range'; then
    pass "SIGHUP with a bad value: config_problem file:line: key: problem"
else
    fail "bad value not reported"; grep config_ "$WORK/ternd.log" | tail -3 >&2
fi
[ "$(log_count config_reload_failed)" = 1 ] && pass "config_reload_failed logged" || fail "no config_reload_failed"
PORTS="{ min: 50000, max: 50999 }"
REALM=other.realm
write_cfg
rc=0; ctl reload >"$WORK/ctl.out" 2>"$WORK/ctl.err" || rc=$?
if [ "$rc" = 1 ] && grep -Eq 'tern.yaml:1: server.realm: cannot change while ternd runs .*restart to apply' "$WORK/ctl.err"; then
    pass "ternctl reload with server.realm changed: exit 1, the key named with its line"
else
    fail "realm change: rc=$rc"; cat "$WORK/ctl.out" "$WORK/ctl.err" >&2
fi
REALM=reload.test
write_cfg
sed -i "s|$WORK/key.pem|$WORK/missing-key.pem|" "$WORK/tern.yaml"
code=$(curl -s -o "$WORK/r.json" -w '%{http_code}' -X POST -H "Authorization: Bearer $TOKEN" "$API/api/v1/reload")
if [ "$code" = 422 ] && python3 - "$WORK/r.json" <<'PY'; then
import json, sys
d = json.load(open(sys.argv[1]))
assert d["generation"] == 1, d
assert any("tls.private_key" in p and "missing-key.pem" in p for p in d["problems"]), d
PY
    pass "POST /api/v1/reload with a missing key file: 422 with the problem, generation 1"
else
    fail "missing key: $code $(cat "$WORK/r.json")"
fi
[ "$(curl -s -o /dev/null -w '%{http_code}' -X POST "$API/api/v1/reload")" = 401 ] &&
    pass "POST /api/v1/reload without the token: 401" || fail "reload without the token accepted"
[ "$(health_gen)" = 1 ] && pass "still generation 1 after three refused reloads" || fail "generation moved"
[ "$(subject)" = tern-reload-a ] && pass "still certificate A" || fail "certificate changed"

# ---- an applied reload ----
cp "$WORK/tern-reload-b.crt" "$WORK/cert.pem"
cp "$WORK/tern-reload-b.key" "$WORK/key.pem"
USERS="{ name: alice, password: alice-pass }, { name: bob, password: bob-pass }"
PORTS="{ min: 51000, max: 51099 }"
ALT="127.0.0.2:3478"
LISTEN_EXTRA='  - { transport: udp, address: "::1", port: 0 }'
OLD_TOKEN=$TOKEN
write_cfg
sed -i 's/token: "reload-token-one"/token: "reload-token-two"/' "$WORK/tern.yaml"
if ctl reload >"$WORK/ctl.out" 2>"$WORK/ctl.err"; then
    pass "ternctl reload: $(cat "$WORK/ctl.out")"
else
    fail "ternctl reload failed"; cat "$WORK/ctl.out" "$WORK/ctl.err" >&2
fi
TOKEN=reload-token-two
for k in listen relay.ports drain.alternate_servers auth.users ops.token; do
    grep -q "$k" "$WORK/ctl.out" || fail "ternctl reload output does not list $k"
done
ev=$(grep '"event":"config_reloaded"' "$WORK/ternd.log" | tail -1)
echo "$ev" | grep -q '"generation":2' && pass "config_reloaded logged with generation 2" || fail "config_reloaded: $ev"
if grep -Eq 'alice-pass|bob-pass|reload-token-two' "$WORK/ternd.log"; then fail "a secret reached the log"; else
    pass "no password or token in the log"; fi
[ "$(health_gen)" = 2 ] && pass "/healthz generation 2" || fail "healthz generation after reload"
curl -s "$API/metrics" >"$WORK/metrics"
grep -q '^tern_config_generation 2$' "$WORK/metrics" && grep -q '^tern_config_reloads_total{result="refused"} 3$' "$WORK/metrics" &&
    grep -q '^tern_config_reloads_total{result="applied"} 1$' "$WORK/metrics" &&
    pass "/metrics: generation 2, 1 applied, 3 refused" || { fail "metrics"; grep tern_config "$WORK/metrics" >&2; }
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $OLD_TOKEN" "$API/api/v1/drain")" = 401 ] &&
    [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "$API/api/v1/drain")" = 200 ] &&
    pass "ops.token: the old one refused, the new one works" || fail "token not swapped"
[ "$(subject)" = tern-reload-b ] && pass "new TLS handshakes get certificate B (same path, new content)" ||
    fail "TLS subject after reload: $(subject)"
"$TURNC" -s "127.0.0.1:$U4" -p "127.0.0.1:$PEER_PORT" -u bob -P bob-pass -n 3 -w 500 -d >"$WORK/bob.out" 2>&1 || true
relayed=$(sed -nE 's/^allocated relayed=127.0.0.1:([0-9]+)$/\1/p' "$WORK/bob.out")
if grep -q '^totals sent=3 data=3' "$WORK/bob.out" && [ -n "$relayed" ] && [ "$relayed" -ge 51000 ] && [ "$relayed" -le 51099 ]; then
    pass "the new user bob relays, on a port of the new range ($relayed)"
else
    fail "bob after reload"; cat "$WORK/bob.out" >&2
fi
U6=$(grep '"event":"listening"' "$WORK/ternd.log" | grep '"generation":2' | grep -F '"address":"[::1]' |
    sed -E 's/.*"port":([0-9]+).*/\1/' | head -1)
[ -n "$U6" ] && expect_out "the added listener [::1]:$U6 answers" "class=success" "$STUNC" ::1 "$U6" ||
    fail "no listening event for the added listener"
tcp_open "$T4" && fail "the removed TCP listener still accepts" || pass "the removed TCP listener is closed"
[ "$(log_count listener_retired)" = 2 ] && pass "listener_retired on each of the 2 workers" ||
    fail "listener_retired count $(log_count listener_retired)"

# ---- drain with the reloaded alternates, then back in service ----
kill -USR1 "$TERND_PID"
sleep 0.3
"$TURNC" -s "127.0.0.1:$U4" -p "127.0.0.1:$PEER_PORT" -n 1 -w 100 >"$WORK/new.out" 2>&1 || true
grep -q '^alternate=127.0.0.2:3478$' "$WORK/new.out" && pass "draining: 300 with the reloaded alternate" ||
    { fail "drain redirect"; cat "$WORK/new.out" >&2; }
kill -USR2 "$TERND_PID"
sleep 0.3

# ---- the call went through all of it ----
rc=0; wait "$CALL" || rc=$?
sent=$(grep -oE 'tot_send_msgs=[0-9]+' "$WORK/call.log" | tail -1 | cut -d= -f2)
recv=$(grep -oE 'tot_recv_msgs=[0-9]+' "$WORK/call.log" | tail -1 | cut -d= -f2)
lost=$(grep -oE 'Total lost packets [0-9]+' "$WORK/call.log" | tail -1 | awk '{print $4}')
if [ "$rc" = 0 ] && [ "$sent" = 2000 ] && [ "$recv" = 2000 ] && [ "$lost" = 0 ]; then
    pass "the call across 4 reloads and a drain: 2000 sent, 2000 received, 0 lost"
else
    fail "call: rc=$rc sent=$sent recv=$recv lost=$lost"; tail -5 "$WORK/call.log" >&2
fi

# ---- a UDP listener removed under a live allocation ----
"$TURNC" -s "[::1]:$U6" -6 -p "[::1]:$PEER_PORT" -n 60 -i 50 -w 500 -d >"$WORK/v6.out" 2>&1 &
V6=$!
sleep 0.8
LISTEN_EXTRA=""
write_cfg
sed -i 's/token: "reload-token-one"/token: "reload-token-two"/' "$WORK/tern.yaml"
ctl reload >"$WORK/ctl.out" 2>&1 && pass "reload removing [::1]:$U6: $(cat "$WORK/ctl.out")" || fail "reload 3"
"$TURNC" -s "[::1]:$U6" -6 -p "[::1]:$PEER_PORT" -n 1 -w 100 >"$WORK/v6new.out" 2>&1 || true
grep -q 'allocate_failed code=508' "$WORK/v6new.out" &&
    pass "a new Allocate on the removed UDP listener: 508 (no IPv6 alternate)" ||
    { fail "new Allocate on a retired listener"; cat "$WORK/v6new.out" >&2; }
wait "$V6" || true
grep -q '^totals sent=60 data=60' "$WORK/v6.out" && pass "the allocation made through it relayed all 60 to the end" ||
    { fail "call through the retired listener"; tail -3 "$WORK/v6.out" >&2; }
# 2 workers x (the TCP listener removed before, this UDP one): 4 listener_closed events.
for _ in $(seq 30); do [ "$(log_count listener_closed)" -ge 4 ] && break; sleep 0.1; done
[ "$(log_count listener_closed)" = 4 ] && pass "listener_closed once its last allocation ended" ||
    fail "retired listener not closed ($(log_count listener_closed) listener_closed events)"
"$STUNC" -e -w 300 ::1 "$U6" >/dev/null 2>&1 && pass "[::1]:$U6 no longer answers" || fail "[::1]:$U6 still answers"

# ---- the peer policy changes under a live permission ----
"$TURNC" -s "127.0.0.1:$U4" -p "127.0.0.1:$PEER_PORT" -n 80 -i 50 -w 500 >"$WORK/pol.out" 2>&1 &
POL=$!
sleep 1
LOOPBACK=false
write_cfg
sed -i 's/token: "reload-token-one"/token: "reload-token-two"/' "$WORK/tern.yaml"
kill -HUP "$TERND_PID"
wait "$POL" || true
data=$(sed -nE 's/^totals sent=80 data=([0-9]+).*/\1/p' "$WORK/pol.out")
[ -n "$data" ] && [ "$data" -gt 5 ] && [ "$data" -lt 70 ] &&
    pass "data stopped when the reload refused the peer ($data of 80 came back)" ||
    { fail "policy reload: data=$data"; tail -3 "$WORK/pol.out" >&2; }
grep '"event":"permissions_revoked"' "$WORK/ternd.log" | grep -q '"permissions":1' &&
    pass "permissions_revoked logged" || fail "no permissions_revoked event"
curl -s "$API/metrics" >"$WORK/m.txt"; grep -q '^tern_server_permissions_revoked_total 1$' "$WORK/m.txt" &&
    pass "tern_server_permissions_revoked_total 1" || fail "permissions_revoked counter"
"$TURNC" -s "127.0.0.1:$U4" -p "127.0.0.1:$PEER_PORT" -n 1 -w 100 >"$WORK/pol2.out" 2>&1 || true
grep -q 'permission peer=127.0.0.1.* code=403' "$WORK/pol2.out" && pass "a new permission to it: 403" ||
    { fail "new permission after the policy reload"; cat "$WORK/pol2.out" >&2; }

stop_ternd
[ "$(counter allocate_success)" -ge 4 ] || fail "allocate_success $(counter allocate_success)"
finish
