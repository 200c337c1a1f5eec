#!/usr/bin/env bash
# test_mobility.sh: RFC 8016 mobility end to end, over two workers (SO_REUSEPORT gives a new
# 5-tuple to either, so moves happen within a worker and between workers). The suite's client
# (tern-turnc -M) relays RTP through a channel to coturn's echo peer and moves to a new socket
# every 25 packets, half of the time from another address (127.0.0.2: an IP change, not only a
# port): every move keeps the relayed address, the channel and the call (no packet lost), the
# ops API shows one allocation with its moves, the quality record counts the whole call's
# packets on one meter. coturn's own client (turnutils_uclient -M) moves its allocations too,
# with zero loss. allocation.mobility off (a live reload): 405, and moves refused.
. "$(dirname "$0")/lib.sh"
: "${TURNC:?TURNC must point at tern-turnc (set by CTest)}"
TERNCTL="$TERN_BUILD_DIR/ops/ternctl"
command -v turnutils_uclient >/dev/null || { echo "FAIL: coturn's client tools are missing (Debian: coturn)" >&2; exit 1; }
start_echo_peer 127.0.0.1

config() { # MOBILITY
    cat >"$WORK/mob.yaml" <<EOF
server: { realm: tern.test, workers: 2 }
listen:
  - { transport: udp, address: 127.0.0.1, port: 0 }
relay: { addresses: [127.0.0.1] }
peers: { allow_loopback: true }
allocation: { mobility: $1 }
auth: { users: [ { name: alice, password: alice-pass }, { name: bob, password: bob-pass } ] }
qos: { record_file: "$WORK/records.jsonl" }
log: { level: info, format: json }
ops: { listen: "127.0.0.1:0" }
EOF
}
config true
start_ternd "$WORK/mob.yaml"
U4=$(port_of udp 127.0.0.1)
OPS=$(grep '"event":"ops_listening"' "$WORK/ternd.log" | tail -1 | sed -E 's/.*"port":([0-9]+).*/\1/')
api() { curl -sf "http://127.0.0.1:$OPS$1"; }

# ---- a call that moves 11 times (300 RTP packets, 10 ms apart, a move every 25) ----
timeout 60 "$TURNC" -s "127.0.0.1:$U4" -p "127.0.0.1:$PEER_PORT" -C -R 96 -l 160 -n 300 -i 10 \
    -M 25 -w 500 -d >"$WORK/call.out" 2>&1 &
CALL=$!
sleep 1.5
api /api/v1/allocations >"$WORK/mid.json" || fail "the ops API did not answer during the call"
MID=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print((d["allocations"] if isinstance(d, dict) else d)[0]["id"])' "$WORK/mid.json" 2>/dev/null || true)
"$TERNCTL" --url "http://127.0.0.1:$OPS" allocations "$MID" >"$WORK/ctl.out" 2>&1 || true
wait "$CALL" || fail "tern-turnc exited with $?"
moves=$(grep -c '^moved ' "$WORK/call.out" || true)
good=$(grep -c '^moved .* code=0 ticket_renewed=yes' "$WORK/call.out" || true)
sent=$(grep -oE 'totals sent=[0-9]+' "$WORK/call.out" | cut -d= -f2 || true)
back=$(grep -oE 'chdata=[0-9]+' "$WORK/call.out" | cut -d= -f2 || true)
if grep -q 'allocated .* ticket=yes' "$WORK/call.out" && [ "$moves" = 11 ] && [ "$good" = 11 ]; then
    pass "the Allocate got a ticket, 11 moves each answered with a new one"
else
    fail "moves: $good of $moves good (wanted 11)"; sed 's/^/    /' "$WORK/call.out" >&2
fi
if [ "$sent" = 300 ] && [ "$back" = 300 ]; then pass "the call lost nothing across 11 moves (300 sent, 300 echoed back)"
else fail "sent $sent, echoed back $back (wanted 300/300)"; fi
python3 - "$WORK/mid.json" <<'PY' && pass "mid-call the API shows one mobile allocation with its moves" || fail "mid-call allocation view"
import json, sys
d = json.load(open(sys.argv[1]))
al = d["allocations"] if isinstance(d, dict) else d
assert len(al) == 1, al
a = al[0]
assert a["mobile"] is True and a["moves"] >= 1 and a["moved_at"], a
PY

grep -Eq '^  mobile: moved [1-9][0-9]* times, last 20' "$WORK/ctl.out" &&
    pass "ternctl allocations ID: $(grep mobile: "$WORK/ctl.out" | sed 's/^ *//')" ||
    { fail "ternctl allocations ID shows no move"; sed 's/^/    /' "$WORK/ctl.out" >&2; }

# Moves inside one worker and between the two (which, the kernel's hash decides: over 11
# moves both are all but certain; the counters say which happened).
moved_log=$(grep -c '"event":"allocation_moved"' "$WORK/ternd.log" || true)
cross=$(grep '"event":"allocation_moved"' "$WORK/ternd.log" | python3 -c '
import json, sys
print(sum(1 for l in sys.stdin if json.loads(l)["from_worker"] != json.loads(l)["worker"]))')
api /metrics >"$WORK/metrics.txt"
mm=$(grep -E '^tern_server_mobility_moves_total ' "$WORK/metrics.txt" | awk '{print $2}')
adopted=$(grep -E '^tern_relay_mobility_adopted_total ' "$WORK/metrics.txt" | awk '{print $2}')
if [ "$moved_log" = 11 ] && [ "$mm" = 11 ] && [ "$adopted" = "$cross" ]; then
    pass "11 allocation_moved events ($cross between workers, $((11 - cross)) within one), /metrics agrees"
else
    fail "moved events $moved_log, metrics moves $mm, adopted $adopted, between workers $cross"
fi

# The record: one call, every packet on one meter, its moves.
for _ in $(seq 50); do [ -s "$WORK/records.jsonl" ] && break; sleep 0.1; done
python3 - "$WORK/records.jsonl" <<'PY' && pass "the quality record: one meter for the whole call (one RTP stream per leg, 300/300, 0 lost), its series marks the 11 moves" || fail "the call's record"
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
assert len(recs) == 1, len(recs)
r = recs[0]
assert r["mobile"] is True and r["moves"] == 11, (r.get("mobile"), r.get("moves"))
assert r["packets"]["from_client"] == 300 and r["packets"]["from_peer"] == 300, r["packets"]
# The call's series marks where the client moved (11 moves in its points).
assert sum(r["series"]["client_leg"]["moves"]) == 11, r["series"]["client_leg"]
# One RTP stream per leg across every move: all 300 expected and received, nothing lost.
for leg in ("client_leg", "peer_leg"):
    rtp = r["qos"][leg]["rtp"]
    assert (rtp["streams"], rtp["expected"], rtp["received"], rtp["lost"]) == (1, 300, 300, 0), rtp
PY

# ---- an IP change: moves from 127.0.0.2 ----
timeout 30 "$TURNC" -s "127.0.0.1:$U4" -p "127.0.0.1:$PEER_PORT" -C -n 60 -i 5 -M 20 -B 127.0.0.2 \
    -w 300 -d >"$WORK/ip.out" 2>&1 || true
if [ "$(grep -c '^moved .*local=127.0.0.2:.* code=0' "$WORK/ip.out" || true)" = 2 ] &&
    grep -q 'chdata=60' "$WORK/ip.out" && grep -q 'deleted code=0' "$WORK/ip.out"; then
    pass "from another address (127.0.0.1 -> 127.0.0.2): 2 moves, 60/60 back, deleted from there"
else
    fail "IP change"; sed 's/^/    /' "$WORK/ip.out" >&2
fi

# ---- coturn's client: -M, its allocations move to new sockets mid-run ----
before=$(api /metrics | grep -E '^tern_server_mobility_moves_total ' | awk '{print $2}')
timeout 30 turnutils_uclient -M -n 50 -m 2 -l 120 -u alice -w alice-pass -e 127.0.0.1 \
    -r "$PEER_PORT" -p "$U4" 127.0.0.1 >"$WORK/uc.log" 2>&1 || true
after=$(api /metrics | grep -E '^tern_server_mobility_moves_total ' | awk '{print $2}')
lost=$(grep -oE 'Total lost packets [0-9]+' "$WORK/uc.log" | tail -1 | awk '{print $4}' || true)
recv=$(grep -oE 'tot_recv_msgs=[0-9]+' "$WORK/uc.log" | tail -1 | cut -d= -f2 || true)
if [ "$lost" = 0 ] && [ "$recv" = 100 ] && [ $((after - before)) -ge 2 ]; then
    pass "turnutils_uclient -M: $((after - before)) allocations moved, 100/100 messages, zero loss"
else
    fail "turnutils_uclient -M: moved $((after - before)), received $recv, lost $lost"
    tail -5 "$WORK/uc.log" | sed 's/^/    /' >&2
fi

# ---- another user cannot take the allocation over with its ticket ----
python3 - "$U4" <<'PY' >"$WORK/steal.out" 2>&1 && pass "bob with alice's ticket: 441, alice's allocation stays" || { fail "ticket theft"; sed 's/^/    /' "$WORK/steal.out" >&2; }
import os, sys
sys.path.insert(0, os.environ["TERN_SOURCE_DIR"] + "/tests/integration")
from turnlib import A_TRANSPORT, ALLOCATE, Client, error_code
REFRESH, A_TICKET = 0x0004, 0x8030
port = int(sys.argv[1])
a = Client("127.0.0.1", port, "alice", "alice-pass", realm="tern.test")
t, at = a.request(ALLOCATE, [(A_TRANSPORT, bytes([17, 0, 0, 0])), (A_TICKET, b"")])
assert t & 0x0110 == 0x0100 and len(at.get(A_TICKET, b"")) == 24, (hex(t), at)
ticket = at[A_TICKET]
b = Client("127.0.0.1", port, "bob", "bob-pass", realm="tern.test")
t, at = b.request(REFRESH, [(A_TICKET, ticket)])
assert error_code(at) == 441, error_code(at)
t, at = a.request(REFRESH, [(A_TICKET, ticket)])
assert t & 0x0110 == 0x0100 and at[A_TICKET] != ticket, (hex(t), error_code(at))
t, at = a.request(REFRESH, [(0x000D, bytes(4))])  # LIFETIME 0: deleted
assert t & 0x0110 == 0x0100, error_code(at)
PY

# ---- allocation.mobility turned off by a live reload: 405 ----
config false
kill -HUP "$TERND_PID"
for _ in $(seq 50); do grep -q '"event":"config_reloaded"' "$WORK/ternd.log" && break; sleep 0.1; done
if grep '"event":"config_reloaded"' "$WORK/ternd.log" | grep -q 'allocation.mobility'; then
    pass "allocation.mobility is applied live (config_reloaded names it)"
else fail "the reload did not apply allocation.mobility"; grep reload "$WORK/ternd.log" | tail -3 >&2; fi
sleep 0.2 # the workers take the new configuration between two loop passes
timeout 20 "$TURNC" -s "127.0.0.1:$U4" -p "127.0.0.1:$PEER_PORT" -C -n 5 -M 2 -w 200 >"$WORK/off.out" 2>&1 || true
if grep -q 'allocate_failed code=405' "$WORK/off.out"; then pass "mobility off (reload): the Allocate asking for a ticket gets 405"
else fail "mobility off"; sed 's/^/    /' "$WORK/off.out" >&2; fi

stop_ternd
finish
