#!/usr/bin/env bash
# test_tcp_tls_port.sh: transport tcp+tls, TLS and plain TCP on one port (the first byte
# tells), and ALPN stun.turn (RFC 7443) on TLS listeners. On one port: plain and TLS Bindings
# are both answered (pipelined too); coturn's turnutils_uclient relays with zero loss over TLS
# (-S) and plain TCP (-t); a first byte that is neither TLS, STUN nor ChannelData is closed and
# counted. ALPN: openssl s_client -alpn stun.turn shows it selected (tls and tcp+tls), a client
# without ALPN is served, a client offering only h2 gets the no_application_protocol alert
# (RFC 7301 3.2). With proxy_protocol the header comes first, then either. The ops API/ternctl
# publish both turn: and turns: URIs for a tcp+tls listener.
. "$(dirname "$0")/lib.sh"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1,DNS:localhost \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null || { fail "openssl req"; finish; }
cat >"$WORK/tern.yaml" <<YAML
server: { workers: 2 }
listen:
  - { transport: tcp+tls, address: 127.0.0.1, port: 0 }
  - { transport: tcp+tls, address: 127.0.0.2, port: 0, proxy_protocol: true }
  - { transport: tls, address: 127.0.0.3, port: 0 }
tls: { certificate: $WORK/cert.pem, private_key: $WORK/key.pem }
relay: { addresses: [127.0.0.1], ports: { min: 28000, max: 29999 } } # below the ephemeral range
auth: { users: [ { name: alice, password: wonderland } ] }
peers: { allow_loopback: true }
allocation: { max_per_user: 100 }
log: { format: json }
YAML
start_ternd "$WORK/tern.yaml"
P=$(port_of 'tcp+tls' 127.0.0.1); PP=$(port_of 'tcp+tls' 127.0.0.2); T=$(port_of tls 127.0.0.3)
[ -n "$P" ] && [ -n "$PP" ] && [ -n "$T" ] && pass "listening: tcp+tls $P, tcp+tls+proxy $PP, tls $T" || { fail "ports"; finish; }

expect_out "plain TCP Binding on the tcp+tls port" 'xor_mapped=127\.0\.0\.1' "$STUNC" -t tcp 127.0.0.1 "$P"
expect_out "TLS Binding on the same port, certificate verified, 3 pipelined" 'xor_mapped=127\.0\.0\.1' \
    "$STUNC" -t tls -C "$WORK/cert.pem" -n 3 127.0.0.1 "$P"
[ "$(grep -c '^class=success' "$WORK/out")" -eq 3 ] && pass "3 TLS answers" || fail "3 TLS answers"
expect_out "plain TCP, 3 pipelined" 'xor_mapped=127\.0\.0\.1' "$STUNC" -t tcp -n 3 127.0.0.1 "$P"

# ALPN with openssl s_client.
alpn() { timeout 10 openssl s_client -connect "127.0.0.1:$1" -servername localhost -alpn "$2" </dev/null 2>&1 || true; }
alpn "$P" stun.turn >"$WORK/alpn.txt"
grep -q '^ALPN protocol: stun.turn' "$WORK/alpn.txt" && pass "s_client -alpn stun.turn on tcp+tls: ALPN protocol: stun.turn" ||
    { fail "s_client -alpn stun.turn on tcp+tls"; grep -i alpn "$WORK/alpn.txt" >&2; }
timeout 10 openssl s_client -connect "127.0.0.3:$T" -servername localhost -alpn h2,stun.turn </dev/null >"$WORK/alpn.txt" 2>&1 || true
grep -q '^ALPN protocol: stun.turn' "$WORK/alpn.txt" && pass "s_client -alpn h2,stun.turn on tls: ALPN protocol: stun.turn" ||
    { fail "s_client -alpn h2,stun.turn on tls"; grep -i alpn "$WORK/alpn.txt" >&2; }
alpn "$P" h2 >"$WORK/alpn.txt"
grep -qi 'no application protocol' "$WORK/alpn.txt" && pass "s_client -alpn h2 only: no_application_protocol alert" ||
    { fail "s_client -alpn h2 only: wanted the no_application_protocol alert"; tail -5 "$WORK/alpn.txt" >&2; }

python3 - "$P" "$PP" "$T" "$(dirname "$0")" <<'PY' || fail "the tcp+tls session (see above)"
import socket, ssl, struct, sys
P, PP, T = (int(a) for a in sys.argv[1:4])
sys.path.insert(0, sys.argv[4])
from turnlib import BINDING, COOKIE, message, parse

bad = 0
def check(ok, what):
    global bad
    print(("ok: " if ok else "FAIL: ") + what, file=sys.stdout if ok else sys.stderr)
    bad += not ok

def xor_mapped(buf):
    _, txid, attrs = parse(buf)
    v = attrs[0x0020]
    port = struct.unpack("!H", v[2:4])[0] ^ (COOKIE >> 16)
    ip = bytes(a ^ b for a, b in zip(v[4:8], struct.pack("!I", COOKIE)))
    return socket.inet_ntoa(ip), port

def recv_msg(s):
    buf = b""
    while len(buf) < 20 or len(buf) < 20 + struct.unpack("!H", buf[2:4])[0]:
        b = s.recv(4096)
        if not b:
            raise ConnectionError("closed")
        buf += b
    return buf

def raw(host="127.0.0.1", port=P):
    s = socket.socket()
    s.settimeout(5)
    s.connect((host, port))
    return s

def tls_binding(alpn, host="127.0.0.1", port=P, pre=b""):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn is not None:
        ctx.set_alpn_protocols(alpn)
    s = raw(host, port)
    me = s.getsockname()  # (wrap_socket takes the socket over)
    if pre:
        s.send(pre)
    try:
        t = ctx.wrap_socket(s, server_hostname="localhost")
        t.send(message(BINDING, []))
        return xor_mapped(recv_msg(t)), t.selected_alpn_protocol(), me
    except (OSError, ConnectionError) as e:
        return None, repr(e), me

def closed_within(s, secs):
    s.settimeout(secs)
    try:
        while True:
            if not s.recv(4096):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False

got, proto, me = tls_binding(["stun.turn", "h2"])
check(got == me and proto == "stun.turn", f"Python TLS offering stun.turn and h2: {got}, ALPN {proto}")
got, proto, me = tls_binding(None)
check(got == me and proto is None, f"Python TLS without ALPN is served: {got}, ALPN {proto}")
got, proto, me = tls_binding(["h2", "http/1.1"])
check(got is None and "NO APPLICATION PROTOCOL" in proto.upper().replace("_", " "), f"Python TLS offering h2 and http/1.1 only: {proto}")
got, proto, me = tls_binding(["stun.turn"], "127.0.0.3", T)
check(got == me and proto == "stun.turn", f"a tls listener selects stun.turn too: ALPN {proto}")

# First bytes that are neither a TLS handshake, STUN (0x00, 0x01) nor ChannelData close at
# once; HTTP is plain (its letters are 0x40-0x7F) and then refused by the framer.
for name, data in (("0x80 (an SSLv2-style hello)", b"\x80\x2e\x01\x03\x01"), ("0xff", b"\xff" * 20),
                   ("0x17 (TLS application data)", b"\x17\x03\x03\x00\x10" + bytes(16)),
                   ("0x02", b"\x02\x00\x00\x00\x21\x12\xa4\x42" + bytes(12)),
                   ("HTTP", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")):
    s = raw()
    s.send(data)
    check(closed_within(s, 3), f"first byte {name}: closed")
    s.close()

# proxy_protocol on a tcp+tls listener: the header first, then TLS or plain.
SIG = b"\r\n\r\n\x00\r\nQUIT\n"
hdr = SIG + b"\x21\x11\x00\x0c" + socket.inet_aton("198.51.100.9") + socket.inet_aton("127.0.0.2") + struct.pack("!HH", 7777, PP)
got, proto, _ = tls_binding(["stun.turn"], "127.0.0.2", PP, hdr)
check(got == ("198.51.100.9", 7777) and proto == "stun.turn", f"tcp+tls with a v2 header then TLS: {got}, ALPN {proto}")
s = raw("127.0.0.2", PP)
s.send(b"PROXY TCP4 198.51.100.10 127.0.0.2 8888 1\r\n" + message(BINDING, []))
got = xor_mapped(recv_msg(s))
check(got == ("198.51.100.10", 8888), f"tcp+tls with a v1 header then plain STUN in the same send: {got}")
s.close()
s = raw("127.0.0.2", PP)
s.send(b"\x16\x03\x01\x00\x05")  # TLS without the header
check(closed_within(s, 3), "tcp+tls+proxy_protocol: TLS without a header is closed")
sys.exit(1 if bad else 0)
PY

# coturn's client over TLS (-S) and plain TCP (-t) against the same port.
if command -v turnutils_uclient >/dev/null; then
    start_echo_peer
    for mode in "-t -S" "-t"; do
        rc=0
        # shellcheck disable=SC2086
        timeout 90 turnutils_uclient $mode -z 5 -n 100 -m 4 -l 120 -u alice -w wonderland -e 127.0.0.1 \
            -r "$PEER_PORT" -p "$P" 127.0.0.1 >"$WORK/uc.log" 2>&1 || rc=$?
        sent=$(grep -oE 'tot_send_msgs=[0-9]+' "$WORK/uc.log" | tail -1 | cut -d= -f2 || true)
        recv=$(grep -oE 'tot_recv_msgs=[0-9]+$' "$WORK/uc.log" | tail -1 | cut -d= -f2 || true)
        lost=$(grep -oE 'Total lost packets [0-9]+' "$WORK/uc.log" | tail -1 | awk '{print $4}' || true)
        [ "$rc" -eq 0 ] && [ "$sent" = 400 ] && [ "$recv" = 400 ] && [ "$lost" = 0 ] &&
            pass "turnutils_uclient $mode on the tcp+tls port: sent=$sent received=$recv lost=$lost" ||
            { fail "turnutils_uclient $mode on the tcp+tls port (rc=$rc sent=$sent recv=$recv lost=$lost)"; tail -8 "$WORK/uc.log" >&2; }
    done
else
    fail "turnutils_uclient missing (Debian package coturn)"
fi
stop_ternd
for c in demux_tls demux_plain tls_alpn_stun_turn; do
    v=$(counter "$c"); [ "${v:-0}" -gt 0 ] && pass "$c=$v" || fail "$c=$v (want > 0)"
done
for kv in demux_bad_first_byte=4 tls_alpn_refused=2 proxy_bad_header=1; do
    v=$(counter "${kv%=*}"); [ "$v" = "${kv#*=}" ] && pass "$kv" || fail "${kv%=*}=$v (want ${kv#*=})"
done
v=$(counter tcp_bad_frame); [ "$v" = 1 ] && pass "HTTP on the tcp+tls port: tcp_bad_frame=1" || fail "tcp_bad_frame=$v (want 1)"
if [ "$FAILS" -ne 0 ]; then
    echo "ternd's warnings and errors:" >&2
    grep -E '"level":"(warn|error)"' "$WORK/ternd.log" | tail -20 | sed 's/^/    /' >&2
fi

# The URIs published for a tcp+tls listener: both turn: and turns: (ternctl reads the config).
cat >"$WORK/uris.yaml" <<YAML
listen:
  - { transport: udp, address: 127.0.0.1, port: 3478 }
  - { transport: tcp+tls, address: 127.0.0.1, port: 443 }
tls: { certificate: $WORK/cert.pem, private_key: $WORK/key.pem }
relay: { external_address: 203.0.113.7 }
auth: { secrets: [s3cret] }
YAML
expect_out "a tcp+tls listener advertises turn: and turns: on its port" \
    '"uris":\["turn:203\.0\.113\.7:3478\?transport=udp","turn:203\.0\.113\.7:443\?transport=tcp","turns:203\.0\.113\.7:443\?transport=tcp"\]' \
    "$TERNCTL" -c "$WORK/uris.yaml" cred --user x --ttl 60 --json
finish
