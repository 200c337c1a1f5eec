# qoslib.sh: helpers for tests/integration/test_qos_*.sh, sourced after lib.sh. Starts ternd
# with the QoS tap and a quality record file, runs tern-mediagen scenarios that hold their
# allocation open, and compares the relay's API detail, list entry, quality record and
# /metrics with qosref.py through qoscheck.py.
: "${TERN_BUILD_DIR:?TERN_BUILD_DIR must point at the build tree (set by CTest)}"
: "${TERN_SOURCE_DIR:?TERN_SOURCE_DIR must point at the source tree (set by CTest)}"
MEDIAGEN="$TERN_BUILD_DIR/tests/qos/tern-mediagen"
QOSCHECK="$TERN_SOURCE_DIR/tests/qos/qoscheck.py"
# Debian's python3 (python3-prometheus-client is installed for it), even when another python3
# (pyenv, venv) comes first in PATH.
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3
RECORDS=
OPS_BASE=
declare -A GEN_PID=()

[ -x "$MEDIAGEN" ] || { fail "tern-mediagen not built ($MEDIAGEN)"; finish; }
command -v curl >/dev/null || { fail "curl missing (Debian package curl)"; finish; }
"$PY" -c 'import prometheus_client' 2>/dev/null ||
    { fail "python3-prometheus-client missing for $PY"; finish; }

qos_cleanup() {
    local n
    for n in "${!GEN_PID[@]}"; do kill "${GEN_PID[$n]}" 2>/dev/null || true; done
    cleanup
}
trap qos_cleanup EXIT

# qos_start_ternd: ternd on loopback with qos enabled, a record file, loopback peers allowed
# and a static user; sets U4 (TURN UDP port), OPS_BASE and RECORDS.
qos_start_ternd() {
    RECORDS="$WORK/quality.jsonl"
    cat >"$WORK/tern.yaml" <<YAML
server: { realm: tern.test, workers: 2 }
listen:
  - { transport: udp, address: 127.0.0.1, port: 0 }
relay: { addresses: [127.0.0.1], ports: { min: 40000, max: 49999 } }
peers: { allow_loopback: true }
auth: { users: [ { name: alice, password: wonderland } ] }
qos: { enabled: true, record_file: "$RECORDS" }
ops: { listen: "127.0.0.1:0" }
log: { level: info, format: json }
YAML
    start_ternd "$WORK/tern.yaml"
    U4=$(port_of udp 127.0.0.1)
    local op
    op=$(grep '"event":"ops_listening"' "$WORK/ternd.log" | head -1 | sed -E 's/.*"port":([0-9]+).*/\1/')
    [ -n "$op" ] || { fail "ternd logged no ops_listening event"; finish; }
    OPS_BASE="http://127.0.0.1:$op"
    local code
    code=$(curl -s -o "$WORK/probe.json" -w '%{http_code}' "$OPS_BASE/api/v1/allocations" || echo 000)
    if [ "$code" != 200 ]; then
        fail "GET /api/v1/allocations answers $code, not 200: the ops API this test needs is missing"
        sed 's/^/    /' "$WORK/probe.json" >&2 2>/dev/null || true
        finish
    fi
}

# gen_start NAME MEDIAGEN-ARGS...: a generator run in the background that holds its
# allocation after the media (until gen_release).
gen_start() {
    local name=$1; shift
    "$MEDIAGEN" --server "127.0.0.1:$U4" --user alice --password wonderland --realm tern.test \
        --log "$WORK/$name.jsonl" --hold 60 "$@" >"$WORK/$name.err" 2>&1 &
    GEN_PID[$name]=$!
}

# gen_wait_holding NAME: wait until its media is over (it logged "holding").
gen_wait_holding() {
    local name=$1
    for _ in $(seq 300); do
        grep -q '"ev":"holding"' "$WORK/$name.jsonl" 2>/dev/null && return 0
        if ! kill -0 "${GEN_PID[$name]}" 2>/dev/null; then
            fail "$name: tern-mediagen ended before holding; its stderr:"
            sed 's/^/    /' "$WORK/$name.err" >&2
            return 1
        fi
        sleep 0.1
    done
    fail "$name: no 'holding' within 30 s"
    return 1
}

# run_check DESCRIPTION qoscheck-ARGS...: run qoscheck.py; its lines go to the test output.
run_check() {
    local what=$1; shift
    local rc=0
    "$PY" "$QOSCHECK" "$@" >"$WORK/check.out" 2>&1 || rc=$?
    sed 's/^/    /' "$WORK/check.out"
    if [ "$rc" -eq 0 ]; then
        pass "$what: $(grep -c '^ok:' "$WORK/check.out") checks match the reference"
    else
        fail "$what: $(grep -c '^FAIL:' "$WORK/check.out") mismatches (see above)"
    fi
}

# gen_inspect NAME: find its allocation in GET /api/v1/allocations by the relayed address,
# then compare the list entry and GET /api/v1/allocations/{id} with the reference.
gen_inspect() {
    local name=$1 relayed id code
    relayed=$(grep '"ev":"alloc"' "$WORK/$name.jsonl" | sed -E 's/.*"relayed":"([^"]+)".*/\1/')
    code=$(curl -s -o "$WORK/$name.list.json" -w '%{http_code}' "$OPS_BASE/api/v1/allocations" || echo 000)
    [ "$code" = 200 ] || { fail "$name: GET /api/v1/allocations: $code"; return 1; }
    id=$("$PY" - "$WORK/$name.list.json" "$relayed" "$WORK/$name.entry.json" <<'PY'
import json, sys
lst = json.load(open(sys.argv[1]))
hits = [e for e in lst.get("allocations", []) if sys.argv[2] in (e.get("relayed") or [])]
if len(hits) == 1:
    json.dump(hits[0], open(sys.argv[3], "w"))
    print(hits[0]["id"])
PY
)
    [ -n "$id" ] || { fail "$name: relayed $relayed not (exactly once) in GET /api/v1/allocations"; return 1; }
    pass "$name: allocation $id found by its relayed address $relayed"
    code=$(curl -s -o "$WORK/$name.detail.json" -w '%{http_code}' "$OPS_BASE/api/v1/allocations/$id" || echo 000)
    [ "$code" = 200 ] || { fail "$name: GET /api/v1/allocations/$id: $code"; return 1; }
    run_check "$name: API detail" detail "$WORK/$name.jsonl" "$WORK/$name.detail.json"
    run_check "$name: API list entry" summary "$WORK/$name.jsonl" "$WORK/$name.entry.json"
}

# gen_release NAME: let it delete its allocation and exit; require exit status 0.
gen_release() {
    local name=$1 rc=0
    kill -USR1 "${GEN_PID[$name]}" 2>/dev/null || true
    wait "${GEN_PID[$name]}" || rc=$?
    unset "GEN_PID[$name]"
    if [ "$rc" -eq 0 ]; then pass "$name: generator: $(grep -c '"ev":"tx"' "$WORK/$name.jsonl") datagrams sent, allocation deleted"
    else fail "$name: tern-mediagen exited $rc"; sed 's/^/    /' "$WORK/$name.err" >&2; fi
}

# gen_record NAME: its call_quality line (waits up to 5 s for it) against the reference.
gen_record() {
    local name=$1 relayed
    relayed=$(grep '"ev":"alloc"' "$WORK/$name.jsonl" | sed -E 's/.*"relayed":"([^"]+)".*/\1/')
    for _ in $(seq 50); do
        grep -qF "\"$relayed\"" "$RECORDS" 2>/dev/null && break
        sleep 0.1
    done
    run_check "$name: quality record" record "$WORK/$name.jsonl" "$RECORDS"
}

# qos_metrics NAME...: /metrics (after those runs ended) against the sum of their references.
qos_metrics() {
    local logs=() n code
    for n in "$@"; do logs+=("$WORK/$n.jsonl"); done
    code=$(curl -s -o "$WORK/metrics.txt" -w '%{http_code}' "$OPS_BASE/metrics" || echo 000)
    [ "$code" = 200 ] || { fail "GET /metrics: $code"; return 1; }
    run_check "/metrics totals over $*" metrics "$WORK/metrics.txt" "${logs[@]}"
}
