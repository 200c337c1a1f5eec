#!/usr/bin/env bash
# test_qos_rtt.sh: ICE-style STUN Binding checks relayed both ways (the peer answers the
# client's after 30 ms, the client the peer's after 10 ms): the relay's per-leg RTT must be the
# answer delay of that leg (+ two loopback hops); alongside, random non-RTP payloads on both
# legs (first byte 4-15 from the client: class other; 128-191 from the peer: looks like RTP
# v2) must never become an RTP stream.
. "$(dirname "$0")/lib.sh"
. "$TERN_SOURCE_DIR/tests/qos/qoslib.sh"

qos_start_ternd
gen_start rtt --seed 31 --duration 5 --peer-delay 30 --client-delay 10 --stun-interval 500 \
    --stream client:random,first=other --stream peer:random,first=rtp
gen_wait_holding rtt && gen_inspect rtt
gen_release rtt
gen_record rtt
qos_metrics rtt
stop_ternd
finish
