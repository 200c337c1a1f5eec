# lib.sh: shared helpers for integration tests: start ternd on free loopback ports, read the
# ports it bound from its JSON log, stop it and check it exited cleanly.
set -euo pipefail
: "${TERND:?TERND must point at the ternd binary (set by CTest)}"
: "${STUNC:?STUNC must point at tern-stunc (set by CTest)}"

WORK=$(mktemp -d /tmp/tern-it.XXXXXX)
TERND_PID=
PEER_PID=
FAILS=0
FAILED=() # the failed checks' descriptions, repeated by finish so a truncated log still shows them
CLEANUP_HOOKS=() # commands run at exit before the work directory goes (pglib.sh: the server)

cleanup() {
    local h
    for h in "${CLEANUP_HOOKS[@]}"; do "$h" || true; done
    if [ -n "$TERND_PID" ] && kill -0 "$TERND_PID" 2>/dev/null; then kill -KILL "$TERND_PID"; fi
    if [ -n "$PEER_PID" ]; then kill "$PEER_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    FAILS=$((FAILS + 1))
    FAILED+=("$*")
}
pass() { echo "ok: $*"; }

# check DESCRIPTION COMMAND...: run it, pass if it exits 0.
check() {
    local what=$1; shift
    if "$@" >"$WORK/out" 2>&1; then pass "$what"; else fail "$what"; sed 's/^/    /' "$WORK/out" >&2; fi
}

# expect_out DESCRIPTION REGEX COMMAND...: run it (exit 0) and require REGEX in its output.
expect_out() {
    local what=$1 re=$2; shift 2
    if "$@" >"$WORK/out" 2>&1 && grep -Eq -- "$re" "$WORK/out"; then pass "$what"; else
        fail "$what (wanted /$re/)"; sed 's/^/    /' "$WORK/out" >&2
    fi
}

# free_udp_port: a UDP port nobody holds on this host (ss from iproute2).
free_udp_port() {
    local p
    for p in $(shuf -i 20000-32000 -n 50); do
        ss -Hlun "sport = :$p" | grep -q . || { echo "$p"; return; }
    done
    return 1
}

# start_echo_peer [ADDRESS...]: coturn's echo peer (turnutils_peer; never coturn's server) on
# a free UDP port of the given loopback addresses (default 127.0.0.1). Sets PEER_PORT; the
# peer is stopped at exit.
start_echo_peer() {
    local args=() a
    for a in "${@:-127.0.0.1}"; do args+=(-L "$a"); done
    PEER_PORT=$(free_udp_port) || { echo "no free UDP port for the echo peer" >&2; exit 1; }
    turnutils_peer -p "$PEER_PORT" "${args[@]}" >"$WORK/peer.log" 2>&1 &
    PEER_PID=$!
    sleep 0.3
}

# start_ternd CONFIG: start ternd in the background and wait until it logs "started". A config
# without an ops section gets a kernel-chosen ops port: tests never take fixed ports.
start_ternd() {
    grep -q '^ops:' "$1" || echo 'ops: { listen: "127.0.0.1:0" }' >>"$1"
    "$TERND" -c "$1" 2>"$WORK/ternd.log" &
    TERND_PID=$!
    local started=
    for _ in $(seq 100); do
        # The ops API starts after the workers ("started"): tests read its port next, so wait
        # for ops_listening too (a slow sanitizer build logs it a moment later).
        if [ -z "$started" ] && grep -q '"event":"started"' "$WORK/ternd.log" 2>/dev/null; then started=1; fi
        [ -n "$started" ] && grep -q '"event":"ops_listening"' "$WORK/ternd.log" 2>/dev/null && return 0
        kill -0 "$TERND_PID" 2>/dev/null || break
        sleep 0.1
    done
    [ -n "$started" ] && kill -0 "$TERND_PID" 2>/dev/null && return 0 # no ops listener came up: the test says
    echo "ternd did not start; its log:" >&2
    cat "$WORK/ternd.log" >&2
    exit 1
}

# port_of TRANSPORT ADDRESS-PREFIX: the port ternd bound for that listener.
port_of() {
    grep '"event":"listening"' "$WORK/ternd.log" | grep "\"transport\":\"$1\"" |
        grep -F "\"address\":\"$2" | head -1 | sed -E 's/.*"port":([0-9]+).*/\1/'
}

# stop_ternd: SIGTERM, wait, require exit status 0 and the "stopped" event.
stop_ternd() {
    kill -TERM "$TERND_PID"
    local rc=0
    wait "$TERND_PID" || rc=$?
    TERND_PID=
    if [ "$rc" -ne 0 ]; then fail "ternd exited with status $rc"; tail -20 "$WORK/ternd.log" >&2; fi
    grep -q '"event":"stopped"' "$WORK/ternd.log" || fail "ternd did not log its stop"
}

# counter NAME: a counter's total from the "counters" event ternd logs when it stops.
counter() {
    grep '"event":"counters"' "$WORK/ternd.log" | grep -o "\"$1\":[0-9]*" | cut -d: -f2
}

# relays USER PASSWORD: one uclient run that allocates and relays 20 messages, zero loss
# (through ternd's UDP port U4, to the echo peer on PEER_PORT; used inside within).
relays() {
    local rc=0 sent recv lost
    timeout 20 turnutils_uclient -c -z 5 -n 20 -m 1 -l 100 -u "$1" -w "$2" -e 127.0.0.1 -r "$PEER_PORT" \
        -p "$U4" 127.0.0.1 >"$WORK/uc.log" 2>&1 || rc=$?
    sent=$(grep -oE 'tot_send_msgs=[0-9]+' "$WORK/uc.log" | tail -1 | cut -d= -f2 || true)
    recv=$(grep -oE 'tot_recv_msgs=[0-9]+' "$WORK/uc.log" | tail -1 | cut -d= -f2 || true)
    lost=$(grep -oE 'Total lost packets [0-9]+' "$WORK/uc.log" | tail -1 | awk '{print $4}' || true)
    [ "$rc" -eq 0 ] && [ "$sent" = 20 ] && [ "$recv" = 20 ] && [ "$lost" = 0 ]
}

# within SECONDS DESCRIPTION COMMAND...: an attempt started within SECONDS succeeds.
within() {
    local secs=$1 what=$2; shift 2
    local t0 start
    t0=$(date +%s%N)
    while :; do
        start=$((($(date +%s%N) - t0) / 1000000))
        [ "$start" -le $((secs * 1000)) ] || break
        if "$@"; then pass "$what (attempt started after $start ms)"; return 0; fi
        sleep 0.2
    done
    fail "$what: not within $secs s"; tail -5 "$WORK/uc.log" | sed 's/^/    /' >&2
}

finish() {
    if [ "$FAILS" -ne 0 ]; then
        echo "$FAILS check(s) failed:" >&2
        printf '    FAIL: %s\n' "${FAILED[@]}" >&2
        exit 1
    fi
    echo "all checks passed"
}
