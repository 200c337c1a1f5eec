#!/usr/bin/env bash
# test_qos_load.sh: the relay's jitter comes from kernel receive timestamps, so a relay starved
# of CPU does not report its own scheduling delays as network jitter (docs/qos.md §13). While four
# busy loops per core compete with ternd at the same priority, a clean audio+video call (no
# impairment) must still give the same per-stream jitter as the reference computed from the
# generator's send times, within the tolerance of test_qos_jitter.sh. Were the tap fed with
# user-space times, every scheduling delay of the relay (milliseconds here) would add to it.
. "$(dirname "$0")/lib.sh"
. "$TERN_SOURCE_DIR/tests/qos/qoslib.sh"

qos_start_ternd
HOGS=()
for _ in $(seq $((4 * $(nproc)))); do
    bash -c 'while :; do :; done' &
    HOGS+=($!)
done
stop_hogs() { kill "${HOGS[@]}" 2>/dev/null || true; wait "${HOGS[@]}" 2>/dev/null || true; }
trap 'stop_hogs; qos_cleanup' EXIT
gen_start loaded --seed 5 --duration 5 --stream client:audio --stream client:video \
    --stream peer:audio --stream peer:video
gen_wait_holding loaded
stop_hogs
gen_inspect loaded
# How late ternd ran: its residence histogram (kernel receive -> send) under that load.
curl -s "$OPS_BASE/metrics" | grep -E '^tern_qos_relay_residence_seconds_(sum|count)' |
    sed 's/^/    /'
gen_release loaded
stop_ternd
finish
