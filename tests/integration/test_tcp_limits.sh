#!/usr/bin/env bash
# test_tcp_limits.sh: what unauthenticated TCP/TLS clients can hold. A stalled TLS handshake
# and a silent TCP connection are closed at the 10-s first-message deadline; a huge-length
# STUN header plus 40 KB is closed at once without growing the buffer (ternd's RSS measured
# over 500 such connections); garbage (zeros, a bad magic cookie, HTTP) closes at once; the
# 65th connection from one IP is refused while other IPs are served; TURN over TCP still
# allocates and relays, messages larger than the unauthenticated cap included.
. "$(dirname "$0")/lib.sh"
N=500

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null || { fail "openssl req"; finish; }
cat >"$WORK/tern.yaml" <<YAML
server: { workers: 1 }
listen:
  - { transport: tcp, address: 127.0.0.1, port: 0 }
  - { transport: tls, address: 127.0.0.1, port: 0 }
tls: { certificate: $WORK/cert.pem, private_key: $WORK/key.pem }
auth: { users: [ { name: alice, password: secret } ] }
peers: { allow_loopback: true }
log: { format: json }
YAML
start_ternd "$WORK/tern.yaml"
T=$(port_of tcp 127.0.0.1); S=$(port_of tls 127.0.0.1)

python3 - "$TERND_PID" "$T" "$S" "$N" "$(dirname "$0")" <<'PY' || fail "the TCP limits session (see above)"
import os, socket, struct, sys, threading, time
pid, tcp, tls, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
sys.path.insert(0, sys.argv[5])
from turnlib import BINDING, COOKIE, Client, message, relays

bad = 0
def check(ok, what):
    global bad
    print(("ok: " if ok else "FAIL: ") + what, file=sys.stdout if ok else sys.stderr)
    bad += not ok

def rss_kb():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

def conn(src, port=None):
    s = socket.socket()
    s.bind((src, 0))
    s.settimeout(5)
    s.connect(("127.0.0.1", port or tcp))
    return s

def closed_within(s, secs):
    """True if the server closes s (EOF or reset) within secs, reading whatever it sends."""
    s.settimeout(secs)
    end = time.monotonic() + secs
    try:
        while time.monotonic() < end:
            if not s.recv(4096):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False
    return False

def binding_answered(s):
    s.send(message(BINDING, []))
    try:
        return len(s.recv(2048)) >= 20
    except OSError:
        return False

# Stalled: a TLS handshake never started, a TCP connection that sends nothing. Watched from
# threads while the rest runs; the deadline is 10 s, the bound 15 s (a loaded machine).
stalled = {}
def watch(name, s):
    t0 = time.monotonic()
    stalled[name] = time.monotonic() - t0 if closed_within(s, 25) else None
threads = [threading.Thread(target=watch, args=(k, conn("127.0.0.9", p))) for k, p in
           (("tls handshake", tls), ("silent tcp", tcp))]
for t in threads:
    t.start()

# Garbage closes at once.
for name, data in (("zeros", bytes(20)),
                   ("bad magic cookie", struct.pack("!HHI", 1, 0, 0x12345678) + bytes(12)),
                   ("HTTP", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")):
    s = conn("127.0.0.8")
    s.send(data)
    check(closed_within(s, 3), f"garbage ({name}) closed at once")
    s.close()

# Huge-length headers plus 40 KB from N connections (10 source IPs, under the per-IP limit).
time.sleep(0.5)
before = rss_kb()
hostile, gone = [], 0
hdr = struct.pack("!HHI", 0x0001, 65532, COOKIE) + os.urandom(12)
for i in range(n):
    s = conn(f"127.0.2.{1 + i % 10}")
    try:
        s.sendall(hdr + bytes(40 * 1024))
    except OSError:
        pass
    hostile.append(s)
time.sleep(1.5)
after = rss_kb()
for s in hostile:
    gone += closed_within(s, 0.05)
    s.close()
per = (after - before) / n
print(f"RSS {before} -> {after} KB over {n} hostile connections: {per:.1f} KB each; {gone} closed")
check(per < 8, f"a huge-length header does not grow the buffer ({per:.1f} KB per connection < 8)")
check(gone == n, f"every huge-length connection closed ({gone}/{n})")

# Per-IP limit: 64 connections from one IP are served, the 65th is refused; another IP is not.
held = [conn("127.0.3.1") for _ in range(64)]
check(all(binding_answered(s) for s in held), "64 connections from 127.0.3.1 served")
extra = conn("127.0.3.1")
check(closed_within(extra, 3), "the 65th connection from 127.0.3.1 is closed")
other = conn("127.0.3.2")
check(binding_answered(other), "127.0.3.2 is still served")
for s in held + [extra, other]:
    s.close()

# TURN over TCP: an allocation relays, larger messages than the unauthenticated cap too.
peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
peer.bind(("127.0.0.1", 0))
peer.settimeout(3)
c = Client("127.0.0.1", tcp, "alice", "secret", tcp=True)
code, _ = c.allocate()
check(code == 0 and c.permit(*peer.getsockname()) and relays(c, peer), "TURN/TCP allocation relays")
big = os.urandom(4000)
c.send(*peer.getsockname(), big)
got, src = peer.recvfrom(65536)
check(got == big, "a 4000-byte Send indication after the allocation is relayed")

for t in threads:
    t.join()
for k, v in stalled.items():
    print(f"{k}: closed after {v:.1f} s" if v is not None else f"{k}: not closed")
    check(v is not None and v < 15, f"stalled {k} closed within 15 s (deadline 10 s)")
sys.exit(1 if bad else 0)
PY

stop_ternd
for kv in tls_handshake_timeout=1 tcp_first_message_timeout=1 tcp_bad_frame=3 tcp_rx_oversize=$N \
    tcp_rejected_per_ip=1 tcp_rejected=1; do
    v=$(counter "${kv%=*}"); [ "$v" = "${kv#*=}" ] && pass "$kv" || fail "${kv%=*}=$v (want ${kv#*=})"
done
grep -q '"event":"tcp_per_ip_limit".*"client":"127.0.3.1' "$WORK/ternd.log" && pass "per-IP refusal logged" ||
    fail "per-IP refusal not logged"
finish
