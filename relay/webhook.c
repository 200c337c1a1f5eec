/* webhook.c: the qos.webhook sender thread (webhook.h). */
#include "webhook.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "log.h"

struct webhook {
    char *url;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    char **q; /* ring of queue_len bodies */
    uint32_t cap, head, n;
    bool stop;
    struct webhook_stats st; /* under lock */
    uint64_t logged_drops;   /* dropped as of the last webhook_dropped event */
    CURL *curl;
    struct curl_slist *hdr;
};

static size_t discard(char *p, size_t size, size_t n, void *ctx)
{
    (void)p;
    (void)ctx;
    return size * n;
}

/* Wait ms or until stopped; true when stopped. Called with the lock held. */
static bool nap(struct webhook *h, long ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    while (!h->stop)
        if (pthread_cond_timedwait(&h->cond, &h->lock, &until) == ETIMEDOUT) break;
    return h->stop;
}

/* One POST: 2xx sent, 5xx/429/transport error retry, else fail. */
enum outcome { OK, RETRY, FAIL };
static enum outcome post_once(struct webhook *h, const char *body, long *status, CURLcode *rc)
{
    curl_easy_setopt(h->curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h->curl, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    *status = 0;
    *rc = curl_easy_perform(h->curl);
    if (*rc != CURLE_OK) return RETRY;
    curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, status);
    if (*status >= 200 && *status < 300) return OK;
    if (*status >= 500 || *status == 429) return RETRY;
    return FAIL;
}

static void *run(void *arg)
{
    struct webhook *h = arg;
    pthread_mutex_lock(&h->lock);
    for (;;) {
        while (!h->stop && h->n == 0)
            pthread_cond_wait(&h->cond, &h->lock);
        if (h->stop) break;
        char *body = h->q[h->head];
        h->head = (h->head + 1) % h->cap;
        h->n--;
        enum outcome o = RETRY;
        long status = 0, delay = WEBHOOK_BACKOFF_MS;
        CURLcode rc = CURLE_OK;
        for (int attempt = 0; attempt <= WEBHOOK_RETRIES && o == RETRY; attempt++) {
            if (attempt) {
                h->st.retried++;
                if (nap(h, delay)) break;
                delay *= 2;
            }
            pthread_mutex_unlock(&h->lock);
            o = post_once(h, body, &status, &rc);
            pthread_mutex_lock(&h->lock);
        }
        if (o == OK)
            h->st.sent++;
        else
            h->st.failed++;
        uint64_t failed = h->st.failed, dropped = h->st.dropped - h->logged_drops;
        h->logged_drops = h->st.dropped;
        /* logs are written without the lock: a worker queueing never waits for stderr */
        pthread_mutex_unlock(&h->lock);
        if (o != OK)
            tlog(CFG_LOG_WARN, "webhook_failed", LF_S("url", h->url), LF_I("status", status),
                 LF_S("error", rc == CURLE_OK ? "" : curl_easy_strerror(rc)),
                 LF_U("failed", failed));
        if (dropped)
            tlog(CFG_LOG_WARN, "webhook_dropped", LF_S("url", h->url), LF_U("dropped", dropped),
                 LF_U("queue", h->cap));
        free(body);
        pthread_mutex_lock(&h->lock);
    }
    pthread_mutex_unlock(&h->lock);
    return NULL;
}

static void destroy(struct webhook *h)
{
    if (h->curl) curl_easy_cleanup(h->curl);
    curl_slist_free_all(h->hdr);
    free(h->q);
    free(h->url);
    free(h);
}

struct webhook *webhook_start(const char *url, uint32_t queue_len)
{
    if (!url || !queue_len) return NULL;
    struct webhook *h = calloc(1, sizeof(*h));
    if (!h) return NULL;
    const char *step = "memory";
    h->cap = queue_len;
    h->url = strdup(url);
    h->q = calloc(queue_len, sizeof(char *));
    if (!h->url || !h->q) goto fail;
    step = "libcurl";
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || !(h->curl = curl_easy_init()))
        goto fail;
    h->hdr = curl_slist_append(NULL, "Content-Type: application/json");
    if (!h->hdr) goto fail;
    curl_easy_setopt(h->curl, CURLOPT_URL, h->url);
    curl_easy_setopt(h->curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h->curl, CURLOPT_HTTPHEADER, h->hdr);
    curl_easy_setopt(h->curl, CURLOPT_USERAGENT, "ternd");
    curl_easy_setopt(h->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h->curl, CURLOPT_TIMEOUT_MS, (long)WEBHOOK_TIMEOUT_MS);
    curl_easy_setopt(h->curl, CURLOPT_CONNECTTIMEOUT_MS, (long)WEBHOOK_TIMEOUT_MS);
    curl_easy_setopt(h->curl, CURLOPT_WRITEFUNCTION, discard);
    step = "thread";
    if (pthread_mutex_init(&h->lock, NULL)) goto fail;
    if (pthread_cond_init(&h->cond, NULL)) {
        pthread_mutex_destroy(&h->lock);
        goto fail;
    }
    if (pthread_create(&h->thread, NULL, run, h)) {
        pthread_cond_destroy(&h->cond);
        pthread_mutex_destroy(&h->lock);
        goto fail;
    }
    tlog(CFG_LOG_INFO, "webhook_started", LF_S("url", h->url), LF_U("queue", queue_len));
    return h;
fail:
    tlog(CFG_LOG_ERROR, "startup_failed", LF_S("step", "qos.webhook"), LF_S("error", step));
    destroy(h);
    return NULL;
}

void webhook_post(struct webhook *h, char *body)
{
    if (!h) {
        free(body);
        return;
    }
    pthread_mutex_lock(&h->lock);
    if (!body || h->n == h->cap || h->stop) {
        h->st.dropped++;
        free(body);
    } else {
        h->q[(h->head + h->n) % h->cap] = body;
        h->n++;
        pthread_cond_signal(&h->cond);
    }
    pthread_mutex_unlock(&h->lock);
}

void webhook_stats(struct webhook *h, struct webhook_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (!h) return;
    pthread_mutex_lock(&h->lock);
    *out = h->st;
    out->queued = h->n;
    pthread_mutex_unlock(&h->lock);
}

void webhook_stop(struct webhook *h)
{
    if (!h) return;
    pthread_mutex_lock(&h->lock);
    h->stop = true;
    pthread_cond_broadcast(&h->cond);
    pthread_mutex_unlock(&h->lock);
    pthread_join(h->thread, NULL);
    for (; h->n; h->n--, h->head = (h->head + 1) % h->cap) {
        free(h->q[h->head]);
        h->st.dropped++;
    }
    tlog(CFG_LOG_INFO, "webhook_stopped", LF_S("url", h->url), LF_U("sent", h->st.sent),
         LF_U("retried", h->st.retried), LF_U("failed", h->st.failed),
         LF_U("dropped", h->st.dropped));
    pthread_cond_destroy(&h->cond);
    pthread_mutex_destroy(&h->lock);
    destroy(h);
}
