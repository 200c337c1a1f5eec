#!/usr/bin/env bash
# test_dtls.sh: TURN over DTLS (RFC 7350) with coturn's client tools (turnutils_uclient -S
# without -t is its DTLS mode; turnutils_peer the echo peer; coturn's server is never
# started): channels and Send indications with zero loss; a ClientHello flood from thousands
# of source ports (never answering the cookie) leaves ternd's RSS flat and a concurrent UDP
# client unaffected; a flood that does answer the cookie is held to relay.dtls_max_handshakes
# and timed out; a dtls listener without the certificate is refused.
. "$(dirname "$0")/lib.sh"
command -v turnutils_uclient >/dev/null || { fail "turnutils_uclient missing (Debian package coturn)"; finish; }
FLOOD="$(dirname "$0")/dtls_flood.py"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null || { fail "openssl req"; finish; }
start_echo_peer 127.0.0.1

cat >"$WORK/tern.yaml" <<YAML
server: { realm: tern.test, workers: 2 }
listen:
  - { transport: udp, address: 127.0.0.1, port: 0 }
  - { transport: dtls, address: 127.0.0.1, port: 0 }
relay: { addresses: [127.0.0.1], ports: { min: 50000, max: 59999 }, dtls_max_handshakes: 16, dtls_handshake_timeout: 2 }
peers: { allow_loopback: true }
allocation: { max_per_user: 1000 }
auth: { users: [ { name: alice, password: wonderland } ] }
tls: { certificate: $WORK/cert.pem, private_key: $WORK/key.pem }
log: { level: info, format: json }
YAML
start_ternd "$WORK/tern.yaml"
U4=$(port_of udp 127.0.0.1); D4=$(port_of dtls 127.0.0.1)
[ -n "$D4" ] && pass "dtls listener bound (port $D4)" || fail "no dtls listening event"

# uclient DESCRIPTION LOG EXPECTED ARGS...: run it, require the totals and zero loss.
uclient() {
    local what=$1 log=$2 want=$3; shift 3
    local rc=0 sent recv lost
    timeout 120 turnutils_uclient -z 5 -u alice -w wonderland -r "$PEER_PORT" "$@" >"$log" 2>&1 || rc=$?
    sent=$(grep -oE 'tot_send_msgs=[0-9]+, tot_recv_msgs=[0-9]+$' "$log" | tail -1 | sed -E 's/tot_send_msgs=([0-9]+),.*/\1/' || true)
    recv=$(grep -oE 'tot_recv_msgs=[0-9]+$' "$log" | tail -1 | cut -d= -f2 || true)
    lost=$(grep -oE 'Total lost packets [0-9]+' "$log" | tail -1 | awk '{print $4}' || true)
    if [ "$rc" -eq 0 ] && [ "$sent" = "$want" ] && [ "$recv" = "$want" ] && [ "$lost" = 0 ]; then
        pass "$what: sent=$sent received=$recv lost=$lost"
    else
        fail "$what: rc=$rc sent=$sent received=$recv lost=$lost (wanted $want, 0 lost)"; tail -15 "$log" >&2
    fi
}

uclient "DTLS channels, 8 clients x 200" "$WORK/uc1.log" 1600 -S -n 200 -m 8 -l 160 -e 127.0.0.1 -p "$D4" 127.0.0.1
grep -q 'method=DTLSv1.2' "$WORK/uc1.log" && pass "uclient negotiated DTLS 1.2" || fail "uclient did not report DTLSv1.2"
uclient "DTLS Send/Data indications, 6 clients x 200" "$WORK/uc2.log" 1200 -S -s -n 200 -m 6 -l 160 -e 127.0.0.1 -p "$D4" 127.0.0.1

# ALPN (RFC 7443) as on TLS listeners: stun.turn when offered, the alert when only others are.
sclient() { echo | timeout 10 openssl s_client -dtls1_2 -connect "127.0.0.1:$D4" "$@" 2>&1 || true; }
sclient -alpn stun.turn,h2 >"$WORK/alpn1.txt"
grep -q '^ALPN protocol: stun.turn' "$WORK/alpn1.txt" && pass "DTLS ALPN: stun.turn chosen from stun.turn,h2" ||
    { fail "DTLS ALPN stun.turn not negotiated"; grep -iE 'alpn|error|alert' "$WORK/alpn1.txt" >&2; }
sclient -alpn h2 >"$WORK/alpn2.txt"
grep -qi 'no application protocol' "$WORK/alpn2.txt" && pass "DTLS ALPN: a client offering only h2 gets no_application_protocol" ||
    { fail "DTLS ALPN h2 only not refused"; grep -iE 'alpn|error|alert' "$WORK/alpn2.txt" >&2; }
sclient >"$WORK/alpn3.txt"
grep -q '^subject=CN = localhost' "$WORK/alpn3.txt" && grep -q 'No ALPN negotiated' "$WORK/alpn3.txt" &&
    pass "DTLS without ALPN still served (certificate CN=localhost)" || { fail "DTLS without ALPN"; tail -5 "$WORK/alpn3.txt" >&2; }

# A reload with a renewed certificate: new handshakes get it; a DTLS call running across the
# reload loses nothing.
timeout 120 turnutils_uclient -z 5 -u alice -w wonderland -r "$PEER_PORT" -S -n 400 -m 2 -l 160 \
    -e 127.0.0.1 -p "$D4" 127.0.0.1 >"$WORK/ucr.log" 2>&1 &
UCR=$!
sleep 1
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=renewed -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null || fail "openssl req (renewal)"
kill -HUP "$TERND_PID"
for _ in $(seq 50); do grep -q '"event":"config_reloaded"' "$WORK/ternd.log" && break; sleep 0.1; done
grep -q '"event":"config_reloaded"' "$WORK/ternd.log" && pass "SIGHUP: config_reloaded" || fail "no config_reloaded"
sleep 0.3 # the workers adopt the generation between loop passes
sclient >"$WORK/renewed.txt"
grep -q '^subject=CN = renewed' "$WORK/renewed.txt" && pass "after the reload a new DTLS handshake gets the renewed certificate" ||
    { fail "renewed certificate not served"; grep '^subject=' "$WORK/renewed.txt" >&2; }
rc=0; wait "$UCR" || rc=$?
sent=$(grep -oE 'tot_send_msgs=[0-9]+, tot_recv_msgs=[0-9]+$' "$WORK/ucr.log" | tail -1 || true)
lost=$(grep -oE 'Total lost packets [0-9]+' "$WORK/ucr.log" | tail -1 | awk '{print $4}' || true)
[ "$rc" -eq 0 ] && [ "$sent" = "tot_send_msgs=800, tot_recv_msgs=800" ] && [ "$lost" = 0 ] &&
    pass "a DTLS call across the reload: $sent lost=$lost" || { fail "DTLS call across the reload: rc=$rc $sent lost=$lost"; tail -5 "$WORK/ucr.log" >&2; }

rss() { awk '/^VmRSS:/ {print $2}' "/proc/$TERND_PID/status"; }
# Warm-up: the receive slots and the listening SSL's buffers become resident once.
python3 "$FLOOD" 127.0.0.1 "$D4" 4000 >/dev/null
rss0=$(rss)
# The measured flood, with a UDP client relaying through ternd meanwhile.
timeout 120 turnutils_uclient -z 5 -u alice -w wonderland -r "$PEER_PORT" -n 400 -m 4 -l 160 \
    -e 127.0.0.1 -p "$U4" 127.0.0.1 >"$WORK/ucu.log" 2>&1 &
UC=$!
t0=$(date +%s%N)
python3 "$FLOOD" 127.0.0.1 "$D4" 40000 >"$WORK/flood.out"
ms=$((($(date +%s%N) - t0) / 1000000))
rc=0; wait "$UC" || rc=$?
rss1=$(rss)
# (The flooder itself may miss a few answers on a busy host: 99% must come back.)
hv=$(sed -E 's/.*hello_verify=([0-9]+).*/\1/' "$WORK/flood.out")
grep -q '^sent=40000 .* server_hello=0$' "$WORK/flood.out" && [ "$hv" -ge 39600 ] &&
    pass "40000 ClientHellos from 40000 ports in $ms ms: $hv cookies came back, no ServerHello" ||
    fail "flood: $(cat "$WORK/flood.out")"
grow=$((rss1 - rss0))
if [ -n "${TERN_SANITIZED:-}" ]; then
    # ASan's quarantine holds every freed block resident (256 MB by default), so RSS measures
    # the sanitizer here; LeakSanitizer checks at exit that the flood left nothing behind.
    pass "sanitizer build: RSS $rss0 kB -> $rss1 kB under the cookie flood (bounded in the plain build)"
elif [ "$grow" -lt 1024 ]; then
    pass "RSS flat under the cookie flood: $rss0 kB -> $rss1 kB (+$grow kB)"
else
    fail "RSS grew $grow kB under the cookie flood ($rss0 -> $rss1 kB)"
fi
sent=$(grep -oE 'tot_send_msgs=[0-9]+, tot_recv_msgs=[0-9]+$' "$WORK/ucu.log" | tail -1 || true)
lost=$(grep -oE 'Total lost packets [0-9]+' "$WORK/ucu.log" | tail -1 | awk '{print $4}' || true)
[ "$rc" -eq 0 ] && [ "$sent" = "tot_send_msgs=1600, tot_recv_msgs=1600" ] && [ "$lost" = 0 ] &&
    pass "concurrent UDP client unaffected: $sent lost=$lost" || { fail "UDP client during the flood: rc=$rc $sent lost=$lost"; tail -5 "$WORK/ucu.log" >&2; }

# Verified sources that stop after the cookie: at most 16 handshakes per worker (2 workers).
python3 "$FLOOD" 127.0.0.1 "$D4" 300 --verified --batch 100 >"$WORK/flood2.out"
rss2=$(rss)
sh=$(sed -E 's/.*server_hello=([0-9]+).*/\1/' "$WORK/flood2.out")
[ "$sh" -le 32 ] && [ "$sh" -gt 0 ] && pass "300 verified half-open handshakes: $sh got a ServerHello (cap 2 x 16), RSS $rss2 kB" ||
    fail "verified flood: $(cat "$WORK/flood2.out") (wanted 1..32 ServerHellos)"
sleep 3.5 # past relay.dtls_handshake_timeout (2 s)
# relay.dtls_max_per_ip lowered to 3 by a reload (and the handshake cap raised): 40 verified
# sources from 127.0.0.3 get at most 3 sessions per worker, and 127.0.0.4 its own 3.
sed -i 's/dtls_max_handshakes: 16, dtls_handshake_timeout: 2 }/dtls_max_handshakes: 256, dtls_handshake_timeout: 2, dtls_max_per_ip: 3 }/' "$WORK/tern.yaml"
kill -HUP "$TERND_PID"
for _ in $(seq 50); do [ "$(grep -c '"event":"config_reloaded"' "$WORK/ternd.log")" -ge 2 ] && break; sleep 0.1; done
grep '"event":"config_reloaded"' "$WORK/ternd.log" | tail -1 | grep -q 'relay.dtls_max_per_ip' &&
    pass "reload: relay.dtls_max_per_ip applied live" || fail "no reload of relay.dtls_max_per_ip: $(grep config_reloaded "$WORK/ternd.log" | tail -1)"
sleep 0.3
python3 "$FLOOD" 127.0.0.1 "$D4" 40 --verified --source 127.0.0.3 >"$WORK/flood3.out"
python3 "$FLOOD" 127.0.0.1 "$D4" 40 --verified --source 127.0.0.4 >"$WORK/flood4.out"
sh3=$(sed -E 's/.*server_hello=([0-9]+).*/\1/' "$WORK/flood3.out"); sh4=$(sed -E 's/.*server_hello=([0-9]+).*/\1/' "$WORK/flood4.out")
[ "$sh3" -ge 3 ] && [ "$sh3" -le 6 ] && [ "$sh4" -ge 3 ] && [ "$sh4" -le 6 ] &&
    pass "dtls_max_per_ip 3: 40 verified sources of 127.0.0.3 got $sh3 sessions, 127.0.0.4 its own $sh4 (2 workers x 3)" ||
    fail "per-IP limit: 127.0.0.3 $(cat "$WORK/flood3.out"), 127.0.0.4 $(cat "$WORK/flood4.out") (wanted 3..6 ServerHellos each)"
sleep 2.5 # they time out
# Back to 64: the uclient sessions of 127.0.0.1 above still hold their allocations.
sed -i 's/dtls_max_per_ip: 3 }/dtls_max_per_ip: 64 }/' "$WORK/tern.yaml"
kill -HUP "$TERND_PID"
for _ in $(seq 50); do [ "$(grep -c '"event":"config_reloaded"' "$WORK/ternd.log")" -ge 3 ] && break; sleep 0.1; done
sleep 0.3
uclient "DTLS still serving after the floods, 2 clients x 50" "$WORK/uc3.log" 100 -S -n 50 -m 2 -l 120 -e 127.0.0.1 -p "$D4" 127.0.0.1
stop_ternd

c() { counter "$1"; }
[ "$(c dtls_hello_verify)" -ge 44000 ] && pass "dtls_hello_verify=$(c dtls_hello_verify)" || fail "dtls_hello_verify=$(c dtls_hello_verify)"
[ "$(c dtls_rejected_handshakes)" -gt 0 ] && pass "dtls_rejected_handshakes=$(c dtls_rejected_handshakes)" || fail "dtls_rejected_handshakes=$(c dtls_rejected_handshakes)"
[ "$(c dtls_handshake_timeout)" = "$((sh + sh3 + sh4))" ] && pass "every half-open handshake timed out (dtls_handshake_timeout=$((sh + sh3 + sh4)))" ||
    fail "dtls_handshake_timeout=$(c dtls_handshake_timeout), wanted $((sh + sh3 + sh4))"
[ "$(c dtls_handshakes)" -ge 16 ] && pass "dtls_handshakes=$(c dtls_handshakes)" || fail "dtls_handshakes=$(c dtls_handshakes)"
[ "$(c dtls_drop_undecryptable)" = 0 ] && [ "$(c dtls_send_errors)" = 0 ] && pass "no undecryptable records, no send errors" ||
    fail "dtls_drop_undecryptable=$(c dtls_drop_undecryptable) dtls_send_errors=$(c dtls_send_errors)"
[ "$(c dtls_closed)" = "$(c dtls_sessions)" ] && pass "every session closed at stop ($(c dtls_closed))" ||
    fail "dtls_closed=$(c dtls_closed) dtls_sessions=$(c dtls_sessions)"
[ "$(c dtls_allocation_end)" -gt 0 ] && pass "sessions closed with their allocations ($(c dtls_allocation_end))" || fail "dtls_allocation_end=0"
grep -q '"event":"dtls_handshake_limit"' "$WORK/ternd.log" && pass "handshake limit logged" || fail "dtls_handshake_limit not logged"
[ "$(c dtls_rejected_per_ip)" -ge 60 ] && grep -q '"event":"dtls_per_ip_limit"' "$WORK/ternd.log" &&
    pass "dtls_rejected_per_ip=$(c dtls_rejected_per_ip), dtls_per_ip_limit logged" || fail "dtls_rejected_per_ip=$(c dtls_rejected_per_ip)"

cat >"$WORK/bad.yaml" <<YAML
listen: [ { transport: dtls, address: 127.0.0.1, port: 0 } ]
log: { format: json }
YAML
rc=0; "$TERND" -c "$WORK/bad.yaml" >"$WORK/out" 2>&1 || rc=$?
[ "$rc" -ne 0 ] && grep -q 'tls.certificate: missing; the dtls listener listen\[0\] needs it' "$WORK/out" &&
    pass "dtls without a certificate refused (rc=$rc)" || { fail "dtls without a certificate (rc=$rc)"; cat "$WORK/out" >&2; }
finish
