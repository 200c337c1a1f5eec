/* offload.h: the control plane of the kernel fast path (docs/offload.md). relay.offload
 * says whether ternd loads its XDP program (relay/bpf/tern_xdp.bpf.c) on the interfaces of
 * its relay and listener addresses; this module loads and attaches it (falling back native
 * XDP -> generic XDP -> user space, with a log line saying which path runs and why), installs
 * a binding when a ChannelBind of a UDP client succeeds, re-checks every binding (expiry,
 * permission, the peer policy, after a reload at once) and removes it when it no longer
 * holds, hands confirmed RTP streams to the program and merges what it measured (counters
 * and per-SSRC state) back into the same QoS meter and counters as the user-space path. Built
 * without libbpf, every call is a no-op and ternd runs the user-space path unchanged. */
#ifndef TERN_OFFLOAD_H
#define TERN_OFFLOAD_H

#include <stdbool.h>
#include <stdint.h>

#include "qos.h"
#include "stun.h"

struct relay;
struct worker;
struct allocation;

/* After the workers and listeners exist, before they start: load and attach per
 * relay.offload. Never fails the relay: on any problem it logs and stays in user space. */
void offload_open(struct relay *r);
/* After the workers stopped and freed their allocations: detach, unload, log the program's
 * counters ("offload_stats"). */
void offload_close(struct relay *r);
/* A worker's share, freed after its server (whose allocations unbind on the way). */
void offload_worker_free(struct worker *w);

/* Once per loop pass (worker thread): re-check every binding when the configuration or the
 * peer policy changed, and once a second anyway, then merge what the program measured. */
void offload_pass(struct worker *w);

/* Merge what the program measured so far into the meters and counters (before a query reads
 * the numbers). */
void offload_drain(struct worker *w);

/* The srv_io hook: a ChannelBind of allocation a bound (or refreshed) num <-> peer. */
void offload_channel_bound(void *ctx, struct allocation *a, uint16_t num,
                           const union stun_addr *peer);
/* Around the tap of a datagram of a (leg, peer; p, len its payload) in user space: a stream
 * the program counts is taken back before (a datagram of it came up), and a stream the meter
 * has confirmed is handed to the program after (docs/offload.md §4). */
void offload_tap_begin(struct worker *w, struct allocation *a, enum qos_leg leg,
                       const union stun_addr *peer, const uint8_t *p, size_t len);
void offload_tap_end(struct worker *w, struct allocation *a, enum qos_leg leg,
                     const union stun_addr *peer, const uint8_t *p, size_t len);

/* Allocation a ends (family 0), or its relay of that family closes: those bindings go (the
 * records still in the ring are counted first). */
void offload_forget(struct worker *w, const struct allocation *a, int family);

/* "xdp" when a channel of a (num: that one; 0: any) is forwarded by the kernel, else "user". */
const char *offload_datapath(const struct worker *w, const struct allocation *a, uint16_t num);

/* The program's counters summed over CPUs (TERN_XDP_STATS order); false when not running.
 * Any thread may call it while the relay runs. */
#define OFFLOAD_MAX_STATS 32
bool offload_stats(const struct relay *r, uint64_t *out, unsigned n);
/* Their names, and how many (0 when built without the fast path). */
unsigned offload_stat_names(const char *const **names);

#endif
