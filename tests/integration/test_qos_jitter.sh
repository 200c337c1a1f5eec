#!/usr/bin/env bash
# test_qos_jitter.sh: send-time jitter applied by tern-mediagen (uniform +-5 ms on the client
# leg's audio; normal, order not kept, on the peer leg's audio; uniform +-3 ms on its video):
# the relay's libwebrtc-rule jitter per stream must match the reference computed from the send
# times, within max(2 %, 1 RTP unit) + 30 us (see tests/qos/README.md).
. "$(dirname "$0")/lib.sh"
. "$TERN_SOURCE_DIR/tests/qos/qoslib.sh"

qos_start_ternd
gen_start jitter --seed 21 --duration 6 \
    --stream client:audio,jitter=uniform:5 --stream client:video \
    --stream peer:audio,jitter=normal:2,order=free --stream peer:video,jitter=uniform:3
gen_wait_holding jitter && gen_inspect jitter
gen_release jitter
gen_record jitter
qos_metrics jitter
stop_ternd
finish
