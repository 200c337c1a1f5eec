/* webhook.h: qos.webhook: JSON POSTs (episode events, quality records) from a thread of their
 * own, so that a slow or dead receiver never holds up a worker. A bounded queue (what finds
 * it full is dropped and counted), one request at a time, retries with backoff on connection
 * errors and 5xx/429 answers; counters of what was sent, retried, failed and dropped. */
#ifndef TERN_WEBHOOK_H
#define TERN_WEBHOOK_H

#include <stddef.h>
#include <stdint.h>

#define WEBHOOK_RETRIES    4    /* after the first attempt: 0.5, 1, 2, 4 s apart */
#define WEBHOOK_BACKOFF_MS 500  /* the first retry's delay; each next one doubles it */
#define WEBHOOK_TIMEOUT_MS 5000 /* a whole request (connect included) */

struct webhook;

struct webhook_stats {
    uint64_t sent;    /* answered 2xx */
    uint64_t retried; /* attempts after a first one */
    uint64_t failed;  /* given up: retries exhausted, or a 4xx other than 429 */
    uint64_t dropped; /* found the queue full (or out of memory, or stopped with them queued) */
    uint64_t queued;  /* waiting now */
};

/* Start the thread for url with a queue of queue_len messages; NULL when it cannot (logged).
 * Call before the workers start (it initialises libcurl). */
struct webhook *webhook_start(const char *url, uint32_t queue_len);
/* Queue body (malloc'd; the webhook frees it) for a POST; never blocks beyond a short lock.
 * h NULL: body is freed. body NULL (a failed json_dumps): counted as dropped. */
void webhook_post(struct webhook *h, char *body);
void webhook_stats(struct webhook *h, struct webhook_stats *out);
/* Stop: the request in flight is abandoned within its timeout; what is queued is dropped
 * (counted). NULL ok. */
void webhook_stop(struct webhook *h);

#endif
