#!/usr/bin/env bash
# test_service.sh: ternd as a service. The sd_notify protocol against a socket this test
# listens on (READY=1 only once the listeners answer, WATCHDOG=1 at half of WATCHDOG_USEC,
# STATUS= with the allocation count, STOPPING=1 at SIGTERM; a path and an abstract name; no
# WATCHDOG=1 while one worker thread is held stopped, tests/tools/stall_thread.py);
# server.user / server.group (running as nobody with no capabilities, still relaying; an
# unknown user refused at start); packaging/ternd.service passes systemd-analyze verify,
# with the man pages its Documentation= names taken from man/.
. "$(dirname "$0")/lib.sh"
: "${TURNC:?TURNC must point at tern-turnc (set by CTest)}"

# notify_listen PATH: collect every datagram on an AF_UNIX socket into $WORK/notify.log.
notify_listen() {
    python3 - "$1" "$WORK/notify.log" <<'PY' &
import socket, sys
path, log = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\0" + path[1:] if path.startswith("@") else path)
with open(log, "a", buffering=1) as out:
    out.write("bound\n")
    while True:
        msg = s.recv(4096).decode()
        out.write(msg.replace("\n", " | ") + "\n")
PY
    NOTIFY_PID=$!
    for _ in $(seq 50); do grep -q bound "$WORK/notify.log" 2>/dev/null && return; sleep 0.1; done
}
wait_for() { # REGEX SECONDS: until the notify log has a matching line
    for _ in $(seq $(($2 * 10))); do grep -Eq "$1" "$WORK/notify.log" && return 0; sleep 0.1; done
    return 1
}

cat >"$WORK/svc.yaml" <<'EOF2'
server: { realm: tern.test, workers: 2 }
listen:
  - { transport: udp, address: 127.0.0.1, port: 0 }
relay: { addresses: [127.0.0.1] }
peers: { allow_loopback: true }
auth: { users: [ { name: alice, password: alice-pass } ] }
log: { level: info, format: json }
EOF2

# ---- sd_notify on a path, with the watchdog ----
: >"$WORK/notify.log"
notify_listen "$WORK/notify.sock"
NOTIFY_SOCKET="$WORK/notify.sock" WATCHDOG_USEC=1000000 start_ternd "$WORK/svc.yaml"
U4=$(port_of udp 127.0.0.1)
if wait_for '^READY=1 \| STATUS=relaying: 2 workers' 5; then
    pass "READY=1 with a STATUS line once started"
    expect_out "the relay answers right after READY" "class=success" "$STUNC" 127.0.0.1 "$U4"
else
    fail "no READY=1"; cat "$WORK/notify.log" >&2
fi
sleep 2.2
n=$(grep -c '^WATCHDOG=1' "$WORK/notify.log" || true)
[ "$n" -ge 3 ] && [ "$n" -le 6 ] && pass "WATCHDOG=1 every 0.5 s for WATCHDOG_USEC=1 s ($n in ~2.2 s)" ||
    fail "WATCHDOG=1 count $n in 2.2 s"
"$TURNC" -s "127.0.0.1:$U4" -p "127.0.0.1:9" -n 1 -w 1200 >"$WORK/turnc.out" 2>&1 || true
grep -q '^allocated' "$WORK/turnc.out" || fail "allocation for the status count"
wait_for 'STATUS=relaying: 1 allocations' 3 && pass "STATUS= counts the live allocation" ||
    fail "STATUS never showed 1 allocation"
# A reload is framed by RELOADING=1 and READY=1 (systemd's Type=notify-reload protocol).
kill -HUP "$TERND_PID"
if wait_for '^RELOADING=1' 3 && wait_for 'READY=1 \| STATUS=relaying \(configuration generation 2\)' 3; then
    pass "SIGHUP: RELOADING=1, then READY=1 with the new generation"
else
    fail "no RELOADING=1 / READY=1 around the reload"; cat "$WORK/notify.log" >&2
fi
# A stuck worker: one worker thread held in a ptrace-stop (the others run on) makes ternd stop
# feeding the watchdog, so systemd would restart it; released, the pings come back.
"$TERN_SOURCE_DIR/tests/tools/stall_thread.py" "$TERND_PID" tern-worker-1 6 >"$WORK/stall.out" 2>&1 &
STALL=$!
sleep 3.8 # the stall begins; the watchdog keeps going until the worker is 3 s late
: >"$WORK/notify.log"
sleep 2
n_stuck=$(grep -c '^WATCHDOG=1' "$WORK/notify.log" || true)
wait "$STALL" || fail "stall_thread: $(cat "$WORK/stall.out")"
sleep 1.2
n_back=$(grep -c '^WATCHDOG=1' "$WORK/notify.log" || true)
if grep -q '^stalled tid=' "$WORK/stall.out" && [ "$n_stuck" -le 1 ] && [ "$n_back" -gt "$n_stuck" ] &&
    grep -q '"event":"worker_stuck"' "$WORK/ternd.log"; then
    pass "worker tern-worker-1 stalled 6 s: worker_stuck logged, $n_stuck WATCHDOG=1 from 3.8 to 5.8 s into it, pings resumed after ($n_back)"
else
    fail "stuck worker: $(cat "$WORK/stall.out") watchdog pings stalled=$n_stuck after=$n_back, worker_stuck $(grep -c worker_stuck "$WORK/ternd.log" || true)"
fi
stop_ternd
wait_for '^STOPPING=1' 3 && pass "STOPPING=1 at SIGTERM" || fail "no STOPPING=1"
kill "$NOTIFY_PID" 2>/dev/null || true

# ---- an abstract socket name, no watchdog ----
: >"$WORK/notify.log"
notify_listen "@tern-notify-$$"
NOTIFY_SOCKET="@tern-notify-$$" start_ternd "$WORK/svc.yaml"
wait_for '^READY=1' 5 && pass "READY=1 on an abstract socket (@name)" || fail "abstract socket: no READY"
sleep 0.5
grep -q '^WATCHDOG=1' "$WORK/notify.log" && fail "WATCHDOG sent without WATCHDOG_USEC" ||
    pass "no WATCHDOG=1 without WATCHDOG_USEC"
stop_ternd
kill "$NOTIFY_PID" 2>/dev/null || true

# ---- server.user / server.group ----
if [ "$(id -u)" = 0 ]; then
    sed 's/^server: { realm: tern.test, workers: 2 }/server: { realm: tern.test, workers: 2, user: nobody, group: nogroup }/' \
        "$WORK/svc.yaml" >"$WORK/user.yaml"
    start_ternd "$WORK/user.yaml"
    U4=$(port_of udp 127.0.0.1)
    # "started" comes before the ops API is up and privileges are dropped: wait for the drop.
    for _ in $(seq 50); do grep -q '"event":"privileges_dropped"' "$WORK/ternd.log" && break; sleep 0.1; done
    st=/proc/$TERND_PID/status
    uid=$(awk '/^Uid:/ {print $2 $3 $4 $5}' "$st") gid=$(awk '/^Gid:/ {print $2 $3 $4 $5}' "$st")
    capeff=$(awk '/^CapEff:/ {print $2}' "$st") capprm=$(awk '/^CapPrm:/ {print $2}' "$st")
    nnp=$(awk '/^NoNewPrivs:/ {print $2}' "$st")
    groups=$(awk '/^Groups:/ {print $2}' "$st")
    if [ "$uid" = 65534655346553465534 ] && [ "$gid" = 65534655346553465534 ] &&
        [ "$capeff" = 0000000000000000 ] && [ "$capprm" = 0000000000000000 ] && [ "$nnp" = 1 ] &&
        [ "$groups" = 65534 ]; then
        pass "runs as nobody:nogroup (all of real/effective/saved/fs ids), no capabilities, no_new_privs"
    else
        fail "after the drop: uid $uid gid $gid groups $groups CapEff $capeff CapPrm $capprm NoNewPrivs $nnp"
    fi
    grep -q '"event":"privileges_dropped"' "$WORK/ternd.log" && pass "privileges_dropped logged" ||
        fail "no privileges_dropped event"
    "$TURNC" -s "127.0.0.1:$U4" -p "127.0.0.1:9" -n 1 -w 300 >"$WORK/turnc.out" 2>&1 || true
    grep -q '^allocated' "$WORK/turnc.out" && pass "allocations still open relay sockets after the drop" ||
        { fail "no allocation after the drop"; cat "$WORK/turnc.out" >&2; }
    stop_ternd
    sed 's/^server: { realm: tern.test, workers: 2 }/server: { realm: tern.test, user: no-such-user-tern }/' \
        "$WORK/svc.yaml" >"$WORK/nouser.yaml"
    rc=0
    timeout 10 "$TERND" -c "$WORK/nouser.yaml" 2>"$WORK/nouser.log" || rc=$?
    [ "$rc" = 1 ] && grep -q '"event":"privilege_drop_failed".*"step":"user"' "$WORK/nouser.log" &&
        pass "an unknown server.user: exit 1 with privilege_drop_failed" ||
        { fail "unknown user: rc $rc"; tail -3 "$WORK/nouser.log" >&2; }
else
    fail "not root: server.user cannot be tested here"
fi

# ---- the unit file ----
sed "s#/usr/sbin/ternd#$TERND#g" "$TERN_SOURCE_DIR/packaging/ternd.service" >"$WORK/ternd.service"
# verify runs man(1) on every man: page of Documentation=: give it the source tree's pages, laid
# out as the package installs them.
for page in "$TERN_SOURCE_DIR"/man/*.[1-8]; do
    mkdir -p "$WORK/man/man${page##*.}"
    cp "$page" "$WORK/man/man${page##*.}/"
done
if MANPATH="$WORK/man" systemd-analyze verify "$WORK/ternd.service" >"$WORK/verify.out" 2>&1; then
    pass "packaging/ternd.service passes systemd-analyze verify"
else
    fail "systemd-analyze verify"; sed 's/^/    /' "$WORK/verify.out" >&2
fi
finish
