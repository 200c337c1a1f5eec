#!/usr/bin/env bash
# test_tls.sh: STUN over TLS (RFC 8489 over TLS, port 5349 in production): a verified
# handshake and pipelined Binding requests; plaintext on the TLS port fails the handshake and
# is counted; an unreadable key stops ternd with a message naming the file.
. "$(dirname "$0")/lib.sh"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null || { fail "openssl req"; finish; }

cat >"$WORK/tern.yaml" <<YAML
listen:
  - { transport: tls, address: 127.0.0.1, port: 0 }
  - { transport: tls, address: "::1", port: 0 }
tls: { certificate: $WORK/cert.pem, private_key: $WORK/key.pem }
log: { format: json }
YAML
start_ternd "$WORK/tern.yaml"
P4=$(port_of tls 127.0.0.1); P6=$(port_of tls '[::1]')
expect_out "Binding over TLS/IPv4, certificate verified, 3 pipelined" 'xor_mapped=127\.0\.0\.1' \
    "$STUNC" -t tls -C "$WORK/cert.pem" -n 3 127.0.0.1 "$P4"
[ "$(grep -c '^class=success' "$WORK/out")" -eq 3 ] && pass "3 TLS answers" || fail "3 TLS answers"
expect_out "Binding over TLS/IPv6" 'xor_mapped=\[::1\]' "$STUNC" -t tls -C "$WORK/cert.pem" ::1 "$P6"
check "plaintext STUN on the TLS port gets nothing" "$STUNC" -t tcp -e -w 500 127.0.0.1 "$P4"
expect_out "still answering TLS" '^class=success' "$STUNC" -t tls 127.0.0.1 "$P4"
stop_ternd
v=$(counter tls_handshake_failed)
[ "$v" = 1 ] && pass "tls_handshake_failed=1" || fail "tls_handshake_failed should be 1 (got '$v')"

chmod 000 "$WORK/key.pem"
cat >"$WORK/bad.yaml" <<YAML
listen: [ { transport: tls, address: 127.0.0.1, port: 0 } ]
tls: { certificate: $WORK/cert.pem, private_key: $WORK/nokey.pem }
log: { format: json }
YAML
rc=0; "$TERND" -c "$WORK/bad.yaml" >"$WORK/out" 2>&1 || rc=$?
[ "$rc" -eq 1 ] && grep -q '"event":"tls_failed".*nokey.pem' "$WORK/out" && pass "missing key names the file" \
    || { fail "missing key names the file (rc=$rc)"; cat "$WORK/out" >&2; }
finish
