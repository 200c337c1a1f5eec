#!/usr/bin/env bash
# test_ops_api.sh: the ops side of the relay while real clients (coturn's turnutils_uclient)
# relay through it: GET /api/v1/allocations and /{id} (token rules, fields, per-peer flows with
# their channel), GET /metrics (parsed by the Prometheus client library's own parser; every
# family has HELP/TYPE; no label carries an allocation, user or address), DELETE of an
# allocation by an admin, and the quality record each ended allocation leaves in
# qos.record_file (one JSON line, reason, totals equal to what the API counted).
. "$(dirname "$0")/lib.sh"
command -v turnutils_uclient >/dev/null || { fail "turnutils_uclient missing (Debian package coturn)"; finish; }
# Debian's python3, which has python3-prometheus-client, even when another python3 comes first.
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3
"$PY" -c 'import prometheus_client' 2>/dev/null || { fail "python3-prometheus-client missing for $PY"; finish; }

start_echo_peer 127.0.0.1
TOKEN=ops-test-token
cat >"$WORK/tern.yaml" <<YAML
server: { realm: ops.test, workers: 2 }
listen: [ { transport: udp, address: 127.0.0.1, port: 0 } ]
relay: { addresses: [127.0.0.1], ports: { min: 40000, max: 44999 } }
peers: { allow_loopback: true }
allocation: { max_per_user: 100 }
auth: { users: [ { name: alice, password: wonderland } ] }
qos: { enabled: true, record_file: "$WORK/records.jsonl" }
ops: { listen: "127.0.0.1:0", token: $TOKEN }
log: { level: info, format: json }
YAML
start_ternd "$WORK/tern.yaml"
U4=$(port_of udp 127.0.0.1)
OPS=$(grep '"event":"ops_listening"' "$WORK/ternd.log" | sed -E 's/.*"port":([0-9]+).*/\1/')
API="http://127.0.0.1:$OPS"

# get PATH [TOKEN]: body to $WORK/body, prints the HTTP status.
get() {
    local auth=()
    [ -n "${2:-}" ] && auth=(-H "Authorization: Bearer $2")
    curl -s -o "$WORK/body" -w '%{http_code}' "${auth[@]}" "$API$1"
}
# jq-like: py EXPR (the parsed body is j).
py() { "$PY" -c "import json,sys; j=json.load(open('$WORK/body')); print($1)"; }

# Two clients (uclient makes two allocations for each), 300 messages each, one every 20 ms: about 6 s of live allocations.
timeout 40 turnutils_uclient -c -z 20 -n 300 -m 2 -l 120 -u alice -w wonderland -e 127.0.0.1 -r "$PEER_PORT" \
    -p "$U4" 127.0.0.1 >"$WORK/uc.log" 2>&1 &
UC=$!
# Wait until both allocations relay both ways (uclient allocates first, then sends).
for _ in $(seq 100); do
    [ "$(get /api/v1/allocations $TOKEN)" = 200 ] &&
        [ "$(py "sum(1 for a in j['allocations'] if a['packets']['from_peer'] > 10)")" -ge 2 ] && break
    sleep 0.1
done

[ "$(get /api/v1/allocations)" = 401 ] && pass "allocations without the token: 401" || fail "allocations without the token: not 401"
[ "$(get /api/v1/allocations wrong)" = 401 ] && pass "allocations with a wrong token: 401" || fail "wrong token accepted"
NALLOC=$(grep -c '"event":"allocation_created"' "$WORK/ternd.log")
if [ "$(get /api/v1/allocations $TOKEN)" = 200 ] && [ "$(py "j['count']")" = "$NALLOC" ] && [ "$NALLOC" -ge 2 ]; then
    pass "GET /api/v1/allocations lists the $NALLOC live allocations"
else
    fail "allocation list: $(head -c 400 "$WORK/body")"
fi
cp "$WORK/body" "$WORK/list.json"
check "list entries carry ids, user, realm, addresses, counts and a QoS summary" "$PY" - "$WORK/list.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
busy = [a for a in j["allocations"] if a["packets"]["from_peer"] > 0]
assert len(busy) >= 2, j  # uclient also makes allocations it never sends on
for a in j["allocations"]:
    assert a["id"].isdigit(), a["id"]
    assert a["user"] == "alice" and a["realm"] == "ops.test" and a["transport"] == "udp", a
for a in busy:
    assert a["user"] == "alice" and a["realm"] == "ops.test" and a["transport"] == "udp", a
    assert a["client"].startswith("127.0.0.1:") and a["relayed"][0].startswith("127.0.0.1:4"), a
    assert a["channels"] >= 1 and a["permissions"] == 1 and a["peers"] >= 1, a
    assert a["packets"]["from_client"] > 0 and a["packets"]["from_peer"] > 0, a
    q = a["qos"]
    assert q["client_leg"]["packets"] > 0 and q["peer_leg"]["packets"] > 0, q
    # uclient's payload is not RTP: no streams, loss unknown (null, never 0)
    assert q["client_leg"]["rtp"]["streams"] == 0 and q["client_leg"]["rtp"]["loss_ratio"] is None, q
    assert q["client_leg"]["rtt"]["measurements"] == 0 and q["client_leg"]["rtt"]["last_seconds"] is None, q
PY
ID=$("$PY" -c "import json; print([a for a in json.load(open('$WORK/list.json'))['allocations'] if a['packets']['from_peer'] > 0][0]['id'])")
if [ "$(get "/api/v1/allocations/$ID" $TOKEN)" = 200 ]; then pass "GET /api/v1/allocations/$ID"; else fail "detail: $(head -c 300 "$WORK/body")"; fi
check "detail: client leg addresses, one peer flow with its channel, per-direction classes" "$PY" - "$WORK/body" "$PEER_PORT" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); peer_port = sys.argv[2]
assert d["client_leg"]["transport"] == "udp" and d["client_leg"]["remote"] == d["client"], d["client_leg"]
assert len(d["peers"]) >= 1, d["peers"]
p = d["peers"][0]
assert p["peer"].startswith("127.0.0.1:"), p["peer"]
assert 0x4000 <= p["channel"] <= 0x7FFF, p["channel"]
fc, fp = p["directions"]["from_client"], p["directions"]["from_peer"]
assert fc["packets_total"] > 0 and fc["by_class"]["other"] + fc["by_class"]["quic"] + fc["by_class"]["dtls"] + fc["by_class"]["rtp"] + fc["by_class"]["rtcp"] + fc["by_class"]["stun"] == fc["packets_total"], fc
assert fp["packets_total"] > 0 and fc["rtp_streams"] == [] , fp
assert fc["iat"]["mean_seconds"] is not None and 0.005 < fc["iat"]["mean_seconds"] < 0.2, fc["iat"]
PY
[ "$(get /api/v1/allocations/12345 $TOKEN)" = 404 ] && pass "unknown allocation: 404" || fail "unknown allocation: not 404"
[ "$(get /api/v1/allocations/abc $TOKEN)" = 400 ] && pass "malformed allocation id: 400" || fail "malformed id: not 400"

# /metrics: open, parsed by prometheus_client's parser, bounded labels.
code=$(curl -s -o "$WORK/metrics" -w '%{http_code}' "$API/metrics")
[ "$code" = 200 ] && pass "GET /metrics without a token: 200" || fail "/metrics: $code"
check "/metrics parses and has the families ops rely on, with bounded labels" "$PY" - "$WORK/metrics" "$NALLOC" <<'PY'
import sys
from prometheus_client.parser import text_string_to_metric_families
text = open(sys.argv[1]).read()
fams = {f.name: f for f in text_string_to_metric_families(text)}
need = ["tern_allocations_active", "tern_forward_drops", "tern_server_allocate_success",
        "tern_relay_peer_tx_datagrams", "tern_qos_packets", "tern_qos_bytes",
        "tern_qos_leg_rtt_seconds", "tern_qos_stream_jitter_seconds",
        "tern_qos_stream_interval_loss_ratio", "tern_qos_relay_residence_seconds",
        "tern_qos_stun_checks", "tern_qos_rtp_lost_packets"]
missing = [n for n in need if n not in fams]
assert not missing, missing
# codepoint: 4 ECN values; dscp: at most 64 values (only those seen are listed)
# state, direction, stat: the RFC 6062 flow families (2 values each)
allowed = {"transport", "reason", "leg", "class", "kind", "outcome", "fb_type", "le", "codepoint", "dscp", "result",
           "state", "direction", "stat"}
for f in fams.values():
    for s in f.samples:
        assert set(s.labels) <= allowed, (s.name, s.labels)
act = {s.labels["transport"]: s.value for s in fams["tern_allocations_active"].samples}
assert act["udp"] == int(sys.argv[2]), act
pk = {(s.labels["leg"], s.labels["class"]): s.value for s in fams["tern_qos_packets"].samples if s.name.endswith("_total")}
assert pk[("client", "other")] > 0 and pk[("peer", "other")] > 0, pk
res = [s for s in fams["tern_qos_relay_residence_seconds"].samples if s.name.endswith("_count")]
assert all(s.value > 0 for s in res), res
for line in text.splitlines():
    if line.startswith("# TYPE"):
        name, typ = line.split()[2:4]
        if typ == "counter": assert name.endswith("_total"), name
PY

# An admin closes an allocation: 204, then it is gone, and its record says so.
code=$(curl -s -o /dev/null -w '%{http_code}' -X DELETE "$API/api/v1/allocations/$ID")
[ "$code" = 401 ] && pass "DELETE without the token: 401" || fail "DELETE without the token: $code"
code=$(curl -s -o /dev/null -w '%{http_code}' -X DELETE -H "Authorization: Bearer $TOKEN" "$API/api/v1/allocations/$ID")
[ "$code" = 204 ] && pass "DELETE /api/v1/allocations/$ID: 204" || fail "DELETE: $code"
[ "$(get "/api/v1/allocations/$ID" $TOKEN)" = 404 ] && pass "the closed allocation is gone" || fail "closed allocation still listed"

wait "$UC" || true # one of its sessions lost its allocation: uclient may complain
stop_ternd         # the allocations still open end now (reason "closed")
check "quality records: one line per ended allocation, reasons, totals and QoS" "$PY" - "$WORK/records.jsonl" "$ID" "$NALLOC" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
assert len(recs) == int(sys.argv[3]), recs
by = {r["id"]: r for r in recs}
assert by[sys.argv[2]]["reason"] == "closed_by_admin", by[sys.argv[2]]["reason"]
others = [r for r in recs if r["id"] != sys.argv[2]]
other = others[0]
assert all(r["reason"] in ("deleted", "closed") for r in others), [r["reason"] for r in others]
assert any(r["reason"] == "deleted" and r["packets"]["from_peer"] > 0 for r in others), others
other = [r for r in others if r["reason"] == "deleted" and r["packets"]["from_peer"] > 0][0]
for r in recs:
    assert r["type"] == "call_quality" and r["user"] == "alice" and r["realm"] == "ops.test", r
    assert r["duration_seconds"] > 1 and r["started_at"] < r["ended_at"], r
    assert r["packets"]["from_client"] == r["qos"]["client_leg"]["packets"], r
    assert r["packets"]["from_peer"] == r["qos"]["peer_leg"]["packets"], r
print("record of the completed call:", json.dumps({k: other[k] for k in ("reason", "duration_seconds", "packets")}))
PY
finish
