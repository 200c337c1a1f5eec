#!/usr/bin/env bash
# test_qos_media.sh: real SRTP (tern-mediagen, libsrtp2) through ternd in both directions; the
# relay's per-leg QoS numbers (API detail and list entry, quality record, /metrics) must equal
# the offline reference (tests/qos/qosref.py) computed from the generator's ground-truth log.
# Three runs at once, 6 s of media each:
#   clean  audio + video on both legs: no loss, no duplicates, nothing out of order
#   legs   loss, bursts and duplicates on the client leg's audio, swaps and hold-backs on its
#          video; other swaps, drops and duplicates on the peer leg: each leg reports its own
#   edges  sequence and timestamp wrap, an SSRC change, restarts (sequence jump of 5000)
. "$(dirname "$0")/lib.sh"
. "$TERN_SOURCE_DIR/tests/qos/qoslib.sh"

qos_start_ternd
gen_start clean --seed 11 --duration 6 \
    --stream client:audio --stream client:video --stream peer:audio --stream peer:video
gen_start legs --seed 12 --duration 6 \
    --stream client:audio,drop=3,burst=1:4,dup=3 --stream client:video,swap=2,hold=1:3 \
    --stream peer:audio,swap=4 --stream peer:video,drop=2,dup=2
gen_start edges --seed 13 --duration 6 \
    --stream client:audio,seq=65500,ts=4294960000,ssrc_change=3 \
    --stream peer:video,seq=65400,ts=4294967000,restart=3 \
    --stream peer:audio,seq=65530,restart=2
for n in clean legs edges; do gen_wait_holding $n && gen_inspect $n; done
for n in clean legs edges; do gen_release $n; done
for n in clean legs edges; do gen_record $n; done
qos_metrics clean legs edges
stop_ternd
finish
