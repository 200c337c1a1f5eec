/* offload_abi.h: what the XDP program (tern_xdp.bpf.c) and its control plane (offload.c)
 * share: the binding maps' keys and values, the QoS counters and per-SSRC RTP state the
 * program keeps for the flows it forwards, and the statistics. Fixed-width types only, so that the
 * same header compiles for -target bpf and for the host; docs/offload.md explains the design. */
#ifndef TERN_OFFLOAD_ABI_H
#define TERN_OFFLOAD_ABI_H

#include <linux/bpf.h>
#include <linux/types.h>

#include "offload_rtp.h"

#define TERN_XDP_MAX_BINDINGS 65536 /* per direction, all workers together */
#define TERN_XDP_MAX_WORKERS  64
#define TERN_XDP_MAX_SSRCS    (2 * TERN_XDP_MAX_BINDINGS) /* RTP streams handed over */
#define TERN_XDP_TTL          64 /* what a fresh send from a socket would carry */

/* Addresses in network byte order; an IPv4 address in the first 4 bytes, the rest zero. Every
 * key is zeroed before it is filled (no padding bytes with garbage). */

/* Client -> peer: a ChannelData datagram from client to the server address it used. */
struct tern_c2p_key {
    __u8 client[16];
    __u8 server[16];
    __u16 client_port; /* network order */
    __u16 server_port; /* network order */
    __u16 channel;     /* host order */
    __u8 family;       /* 4 or 6 */
    __u8 pad;
};

/* Peer -> client: a datagram from peer to the relayed transport address. */
struct tern_p2c_key {
    __u8 peer[16];
    __u8 relay[16];
    __u16 peer_port;  /* network order */
    __u16 relay_port; /* network order */
    __u8 family;
    __u8 pad[3];
};

/* What a datagram that matches becomes: its new source and destination; for peer -> client
 * the channel number of the ChannelData header put in front. */
struct tern_bind_val {
    __u8 src[16];
    __u8 dst[16];
    __u16 src_port; /* network order */
    __u16 dst_port; /* network order */
    __u16 channel;  /* peer -> client: the ChannelData number; client -> peer: 0 */
    __u8 dscp_zero; /* qos.dscp: zero: clear the DSCP bits, keep ECN; else preserve */
    __u8 leg;       /* the QoS leg the datagram came from (0 client, 1 peer) */
    __u32 worker;   /* the worker that owns the allocation */
    __u32 slot;     /* the binding in that worker's table */
    __u32 gen;      /* ... and its generation (a reused slot is not mistaken for it) */
    __u32 pad;
    __u64 expires_ns; /* CLOCK_MONOTONIC: from then on the datagram goes up unchanged */
};

/* The QoS state of a binding's direction (ssrc 0: its counters) or of one RTP stream in it
 * (docs/offload.md §4). Zeroed before filling, as the binding keys. */
struct tern_qkey {
    __u32 worker, slot, gen; /* the binding, as in tern_bind_val */
    __u32 ssrc;              /* the counters: 0 */
    __u8 leg;                /* the ingress leg */
    __u8 pad[3];
};

/* Per CPU: every datagram the program forwarded for one binding's direction, as the tap
 * counts it (docs/qos.md §4.2: packets, bytes, classes, ECN and DSCP). */
struct tern_ctr {
    __u64 packets, bytes;
    __u64 cls_packets[TERN_CLS_COUNT], cls_bytes[TERN_CLS_COUNT];
    __u64 ecn[4];
    __u64 dscp[64];
    __u64 last_ns; /* the latest arrival on this CPU (bpf_ktime_get_ns, CLOCK_MONOTONIC) */
    __u32 dscp_last;
    __u32 pad;
};

/* One confirmed RTP stream, handed over by user space; one flow's packets may arrive on
 * several CPUs (generic XDP, RSS), so the update holds the lock in the value. */
struct tern_rtp_val {
    struct bpf_spin_lock lock;
    __u32 pad;
    struct tern_rtp st; /* times: CLOCK_MONOTONIC ns */
};

/* Every datagram the program sees ends in exactly one of these (per-CPU array). */
#define TERN_XDP_STATS(X)                                                                          \
    X(to_peer, "ChannelData forwarded client -> peer")                                             \
    X(to_client, "peer datagrams forwarded peer -> client as ChannelData")                         \
    X(pass_other, "passed: not IPv4/IPv6 UDP (or VLAN, truncated)")                                \
    X(pass_ip_options, "passed: IPv4 options, fragments or IPv6 extension headers")                \
    X(pass_no_binding, "passed: UDP with no binding")                                              \
    X(pass_expired, "passed: binding past its expiry")                                             \
    X(pass_length, "passed: ChannelData padded or length mismatch, or lengths inconsistent")       \
    X(pass_class, "passed: STUN or RTCP payload (user space measures RTT and RTCP)")               \
    X(pass_no_csum, "passed: IPv6 UDP without a checksum")                                         \
    X(pass_fib, "passed: no route or neighbour yet (bpf_fib_lookup)")                              \
    X(pass_mtu, "passed: would exceed the egress MTU")                                             \
    X(pass_new_ssrc, "passed: RTP of an SSRC not handed over yet (user space confirms it)")        \
    X(pass_no_qos, "passed: the binding's QoS counters are missing")                               \
    X(pass_adjust, "passed: the headroom could not be adjusted")

enum tern_xdp_stat {
#define TERN_XDP_X_ENUM(name, help) TERN_XDP_ST_##name,
    TERN_XDP_STATS(TERN_XDP_X_ENUM)
#undef TERN_XDP_X_ENUM
        TERN_XDP_ST_COUNT
};

#endif
