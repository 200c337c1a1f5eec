/* timeline.h: the relay's side of per-allocation timelines and quality episodes (docs/qos.md
 * §18): meters made with the config's timeline length and thresholds, a once-a-second sweep
 * that ticks every meter (so intervals close on time, even silent ones) and logs the episode
 * events, and the events of an allocation that ends. */
#ifndef TERN_TIMELINE_H
#define TERN_TIMELINE_H

#include "qos.h"
#include "worker.h"

/* The meter of a, new and configured from w's config (NULL when out of memory). */
struct qos_alloc *timeline_meter(struct worker *w, struct allocation *a);
/* The QoS part of cfg: timeline length and thresholds. */
void timeline_config(const struct tern_config *cfg, struct qos_config *out);
/* Once a second (it checks the time itself): tick every meter of w, hand it the drops the
 * server counted, log the episode events; a new config (live reload) re-configures the
 * thresholds of every meter. */
void timeline_sweep(struct worker *w);
/* Log (and post to the webhook) the queued episode events of a's meter. */
void timeline_events(struct worker *w, const struct allocation *a);

#endif
