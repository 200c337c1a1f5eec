#!/usr/bin/env bash
# test_fd_limit.sh: file-descriptor exhaustion (ternd under prlimit --nofile=256): TCP clients
# beyond the budget wait in the kernel queue while the loop stays idle (no accept spin), the
# pause is counted and logged once; new allocations get 508 (counted, logged once) while the
# existing one keeps relaying; once the clients leave, the relay accepts and allocates again.
. "$(dirname "$0")/lib.sh"
LIMIT=256

cat >"$WORK/tern.yaml" <<YAML
server: { workers: 2 }
listen:
  - { transport: udp, address: 127.0.0.1, port: 0 }
  - { transport: tcp, address: 127.0.0.1, port: 0 }
auth: { users: [ { name: alice, password: secret } ] }
peers: { allow_loopback: true }
allocation: { max_per_user: 1000 }
log: { format: json }
YAML
printf '#!/bin/sh\nexec prlimit --nofile=%s:%s "%s" "$@"\n' "$LIMIT" "$LIMIT" "$TERND" >"$WORK/ternd-limited"
chmod +x "$WORK/ternd-limited"
REAL_TERND=$TERND
TERND=$WORK/ternd-limited start_ternd "$WORK/tern.yaml"
TERND=$REAL_TERND
U=$(port_of udp 127.0.0.1); T=$(port_of tcp 127.0.0.1)

python3 - "$TERND_PID" "$U" "$T" "$(dirname "$0")" <<'PY' || fail "the fd-limit session (see above)"
import os, socket, sys, time
pid, udp, tcp = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
sys.path.insert(0, sys.argv[4])
from turnlib import Client, relays

bad = 0
def check(ok, what):
    global bad
    print(("ok: " if ok else "FAIL: ") + what, file=sys.stdout if ok else sys.stderr)
    bad += not ok

def cpu_ticks():
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])  # utime + stime

def nfds():
    return len(os.listdir(f"/proc/{pid}/fd"))

peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
peer.bind(("127.0.0.1", 0))
peer.settimeout(3)
a = Client("127.0.0.1", udp, "alice", "secret")
code, _ = a.allocate()
check(code == 0 and a.permit(*peer.getsockname()) and relays(a, peer), "allocation A relays")

# More connections than the limit allows; several source IPs keep the per-IP limit out of it.
conns = []
for i in range(400):
    s = socket.socket()
    s.bind((f"127.0.1.{2 + i // 25}", 0))
    s.connect(("127.0.0.1", tcp))
    conns.append(s)
time.sleep(1.5)
print(f"ternd holds {nfds()} fds (limit 256)")
t0, c0 = time.monotonic(), cpu_ticks()
time.sleep(3)
pct = (cpu_ticks() - c0) / os.sysconf("SC_CLK_TCK") / (time.monotonic() - t0) * 100
print(f"cpu at the fd limit: {pct:.1f} %")
check(pct < 20, f"ternd's CPU stays low at the fd limit ({pct:.1f} % < 20 %)")

b = Client("127.0.0.1", udp, "alice", "secret")
code, _ = b.allocate()
check(code == 508, f"a new Allocate gets 508 (got {code})")
check(relays(a, peer), "allocation A still relays")

for s in conns:
    s.close()
time.sleep(3)  # queued connections drain (each ends at once); the pause ends
s = socket.socket()
s.settimeout(3)
s.connect(("127.0.0.1", tcp))
from turnlib import message, parse, BINDING
s.send(message(BINDING, []))
try:
    ok = len(s.recv(2048)) >= 20
except OSError:
    ok = False
check(ok, "a new TCP connection is served after the clients left")
s.close()
c = Client("127.0.0.1", udp, "alice", "secret")
code, _ = c.allocate()
check(code == 0, f"Allocate succeeds again (got {code})")
sys.exit(1 if bad else 0)
PY

stop_ternd
for ev in tcp_fd_limit relay_fd_limit tcp_fd_limit_ended relay_fd_limit_ended; do
    n=$(grep -c "\"event\":\"$ev\"" "$WORK/ternd.log" || true)
    [ "$n" = 1 ] && pass "$ev logged once" || fail "$ev logged $n times (want 1)"
done
grep '"event":"tcp_fd_limit"' "$WORK/ternd.log" | grep -q "\"limit\":$LIMIT" && pass "the log names the limit" ||
    fail "tcp_fd_limit does not name limit $LIMIT"
v=$(counter tcp_rejected_fd_limit); [ "${v:-0}" -ge 1 ] && pass "tcp_rejected_fd_limit=$v" || fail "tcp_rejected_fd_limit='$v'"
v=$(counter relay_fd_refused); [ "${v:-0}" = 1 ] && pass "relay_fd_refused=1" || fail "relay_fd_refused='$v' (want 1)"
v=$(counter error_508); [ "${v:-0}" = 1 ] && pass "error_508=1" || fail "error_508='$v' (want 1)"
finish
