#!/usr/bin/env bash
# test_stun_server.sh: ternd answers STUN Binding over UDP and TCP, IPv4 and IPv6, to coturn's
# turnutils_stunclient and to the suite's own client; bad input is dropped and counted.
. "$(dirname "$0")/lib.sh"

cat >"$WORK/tern.yaml" <<YAML
server: { realm: it.example, software: "tern-it", workers: 2 }
listen:
  - { transport: udp, address: 127.0.0.1, port: 0 }
  - { transport: tcp, address: 127.0.0.1, port: 0 }
  - { transport: udp, address: "::1", port: 0 }
  - { transport: tcp, address: "::1", port: 0 }
log: { level: info, format: json }
YAML
start_ternd "$WORK/tern.yaml"
U4=$(port_of udp 127.0.0.1); T4=$(port_of tcp 127.0.0.1)
U6=$(port_of udp '[::1]'); T6=$(port_of tcp '[::1]')
echo "ports: udp4=$U4 tcp4=$T4 udp6=$U6 tcp6=$T6"
[ -n "$U4" ] && [ -n "$T4" ] && [ -n "$U6" ] && [ -n "$T6" ] || { fail "listener ports not logged"; finish; }

# A client we did not write: coturn's turnutils_stunclient.
if command -v turnutils_stunclient >/dev/null; then
    expect_out "turnutils_stunclient over IPv4" 'UDP reflexive addr: 127\.0\.0\.1:[0-9]+' \
        turnutils_stunclient -p "$U4" 127.0.0.1
    expect_out "turnutils_stunclient over IPv6" 'UDP reflexive addr: ::1:[0-9]+' \
        turnutils_stunclient -p "$U6" ::1
else
    fail "turnutils_stunclient not installed (Debian package coturn)"
fi

# The suite's own client.
expect_out "Binding over UDP/IPv4" '^class=success method=0x001 xor_mapped=127\.0\.0\.1:[0-9]+ software="tern-it" len=' \
    "$STUNC" 127.0.0.1 "$U4"
expect_out "Binding over UDP/IPv6" '^class=success method=0x001 xor_mapped=\[::1\]:[0-9]+' "$STUNC" ::1 "$U6"
expect_out "Binding over TCP/IPv4, 5 pipelined" 'xor_mapped=127\.0\.0\.1' "$STUNC" -t tcp -n 5 127.0.0.1 "$T4"
[ "$(grep -c '^class=success' "$WORK/out")" -eq 5 ] && pass "5 TCP answers" || fail "5 TCP answers"
expect_out "Binding over TCP/IPv6" 'xor_mapped=\[::1\]:' "$STUNC" -t tcp ::1 "$T6"
expect_out "FINGERPRINT echoed when the request has one" 'fingerprint=ok' "$STUNC" -f 127.0.0.1 "$U4"
expect_out "420 with UNKNOWN-ATTRIBUTES" 'code=420 .*unknown=0x7777,0x0003' \
    "$STUNC" -u 0x7777 -u 0x0003 127.0.0.1 "$U4"
expect_out "unknown comprehension-optional attribute ignored" '^class=success' "$STUNC" -u 0x8777 127.0.0.1 "$U4"
expect_out "unsupported method gets 400" 'class=error method=0x0ff code=400' "$STUNC" -m 0xff 127.0.0.1 "$U4"

# Bad input: silent drops, counted; the server keeps answering.
check "garbage datagram dropped" "$STUNC" -e -w 300 -x 0102030405 127.0.0.1 "$U4"
check "bad magic cookie dropped" "$STUNC" -e -w 300 -x 000100002112a443000000000000000000000000 127.0.0.1 "$U4"
check "length mismatch dropped" "$STUNC" -e -w 300 -x 000100042112a442000000000000000000000000 127.0.0.1 "$U4"
check "Binding indication not answered" "$STUNC" -e -w 300 -i 127.0.0.1 "$U4"
check "success response from a client dropped" "$STUNC" -e -w 300 -x 010100002112a442000000000000000000000001 127.0.0.1 "$U4"
check "ChannelData with no allocation dropped" "$STUNC" -e -w 300 -x 4000000461626364 127.0.0.1 "$U4"
check "bad FINGERPRINT dropped" "$STUNC" -e -w 300 -x 000100082112a44200000000000000000000000280280004deadbeef 127.0.0.1 "$U4"
check "TCP garbage closes the connection" "$STUNC" -e -w 300 -t tcp -x c0c0c0c0c0c0c0c0 127.0.0.1 "$T4"
expect_out "still answering after bad input" '^class=success' "$STUNC" 127.0.0.1 "$U4"

stop_ternd
for c in drop_short drop_bad_cookie drop_bad_length drop_response drop_no_allocation drop_bad_fingerprint \
         binding_indication error_420 error_400 tcp_bad_frame; do
    v=$(counter "$c")
    [ -n "$v" ] && [ "$v" -ge 1 ] && pass "counter $c=$v" || fail "counter $c should be >= 1 (got '$v')"
done
finish
