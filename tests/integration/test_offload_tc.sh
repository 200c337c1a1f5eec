#!/usr/bin/env bash
# test_offload_tc.sh: test_offload.sh with relay.offload: tc (the program at the clsact ingress
# hook instead of XDP): the same QoS ground truth against offload off, ChannelData both ways
# over IPv4 and IPv6, nothing forwarded after deletion or expiry, a peer denied by a reload
# stops at once, valid checksums at the receivers; plus what is particular to TC: no filter
# left after a clean stop, a filter left by SIGKILL removed at the next start.
TERN_OFFLOAD_ON=tc TERN_OFFLOAD_PATH=tc exec bash "$(dirname "$0")/test_offload.sh"
