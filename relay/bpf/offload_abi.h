/* offload_abi.h: what the XDP program (tern_xdp.bpf.c) and its control plane (offload.c)
 * share: the binding maps' keys and values, the QoS record each forwarded datagram leaves in
 * its worker's ring buffer, and the statistics. Fixed-width types only, so that the same
 * header compiles for -target bpf and for the host; docs/offload.md explains the design. */
#ifndef TERN_OFFLOAD_ABI_H
#define TERN_OFFLOAD_ABI_H

#include <linux/types.h>

#define TERN_XDP_MAX_BINDINGS 65536 /* per direction, all workers together */
#define TERN_XDP_MAX_WORKERS  64
#define TERN_XDP_RING_BYTES   (1u << 22) /* each worker's ring: ~37,000 records */
#define TERN_XDP_REC_DATA     80 /* payload bytes copied: an RTP header with 15 CSRCs + ext. */
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
    __u32 worker;   /* whose ring the QoS record goes to */
    __u32 slot;     /* the binding in that worker's table */
    __u32 gen;      /* ... and its generation (a reused slot is not mistaken for it) */
    __u32 pad;
    __u64 expires_ns; /* CLOCK_MONOTONIC: from then on the datagram goes up unchanged */
};

/* One forwarded datagram, for the QoS tap and the counters of user space. */
struct tern_rec {
    __u64 ts_ns; /* bpf_ktime_get_ns() on arrival (CLOCK_MONOTONIC) */
    __u32 slot, gen;
    __u16 len; /* the relayed payload's length (ChannelData header excluded) */
    __u8 leg;
    __u8 tos;   /* TOS / traffic class as received */
    __u8 ncopy; /* bytes of data that hold the payload's beginning */
    __u8 pad[7];
    __u8 data[TERN_XDP_REC_DATA];
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
    X(pass_ring_full, "passed: the worker's QoS ring was full")                                    \
    X(pass_adjust, "passed: the headroom could not be adjusted")

enum tern_xdp_stat {
#define TERN_XDP_X_ENUM(name, help) TERN_XDP_ST_##name,
    TERN_XDP_STATS(TERN_XDP_X_ENUM)
#undef TERN_XDP_X_ENUM
        TERN_XDP_ST_COUNT
};

#endif
