/* fuzz_qos.c: libFuzzer target: the QoS tap. The input is a sequence of datagrams, each
 * [control byte][time step u16][length u16][payload]: the control byte picks the leg, one of
 * 20 peers (more than QOS_MAX_FLOWS, IPv4 and IPv6), the time unit, and whether to tick.
 * Everything goes into one allocation, then the JSON views and the Prometheus text are
 * rendered, the allocation ends with a final tick, and they are rendered again. */
#include <arpa/inet.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qos.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void require(bool ok)
{
    if (!ok) abort();
}

static union stun_addr peer_of(unsigned i)
{
    union stun_addr a;
    memset(&a, 0, sizeof(a));
    if (i % 2) {
        a.v6.sin6_family = AF_INET6;
        a.v6.sin6_addr.s6_addr[0] = 0x20;
        a.v6.sin6_addr.s6_addr[1] = 0x01;
        a.v6.sin6_addr.s6_addr[15] = (uint8_t)i;
        a.v6.sin6_port = htons((uint16_t)(5000 + i));
    } else {
        a.v4.sin_family = AF_INET;
        a.v4.sin_addr.s_addr = htonl(0xC0000200u + i);
        a.v4.sin_port = htons((uint16_t)(5000 + i));
    }
    return a;
}

static void render(const struct qos_alloc *q, const struct qos_metrics *m, int64_t now, bool prom)
{
    json_t *s = qos_summary_json(q);
    json_t *d = qos_detail_json(q, now);
    require(s && d);
    char *a = json_dumps(s, JSON_COMPACT), *b = json_dumps(d, JSON_COMPACT);
    require(a && b);
    free(a);
    free(b);
    json_decref(s);
    json_decref(d);
    /* the timeline (a short ring, so that it wraps) and the whole-call series */
    json_t *tl = qos_timeline_json(q), *se = qos_series_json(q);
    require(tl && se);
    require(json_array_size(json_object_get(tl, "intervals")) <= 3);
    require(json_integer_value(json_object_get(se, "points")) <= QOS_SERIES_POINTS);
    json_decref(tl);
    json_decref(se);
    if (!prom) return; /* the text is the slow part: once per input */
    char *buf = NULL;
    size_t len = 0, cap = 0;
    require(qos_metrics_prometheus(m, &buf, &len, &cap) == 0);
    require(buf && strlen(buf) == len);
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const int64_t units[4] = {1000, 1000000, 20000000, 1000000000};
    int64_t t = 1700000000LL * 1000000000LL;
    struct qos_alloc *q = qos_alloc_new(t);
    struct qos_metrics m;
    memset(&m, 0, sizeof(m));
    require(q != NULL);
    struct qos_config cfg = {3, 0.01, 0.03, 0.3};
    qos_alloc_configure(q, &cfg);
    bool open[QOS_LEG_COUNT] = {false, false};
    uint64_t fed = 0;
    size_t off = 0;
    while (off + 5 <= size) {
        uint8_t ctl = data[off];
        unsigned dt = (unsigned)data[off + 1] << 8 | data[off + 2];
        size_t len = (size_t)data[off + 3] << 8 | data[off + 4];
        off += 5;
        if (len > size - off) len = size - off;
        t += (int64_t)dt * units[(ctl >> 5) & 3];
        if (ctl & 0x80) { /* a tick instead of a packet, sometimes stepping the clock back */
            qos_alloc_tick(q, &m, (ctl & 0x40) ? t - 1000000000LL : t, false);
            off += len;
            continue;
        }
        enum qos_leg leg = (ctl & 1) ? QOS_LEG_PEER : QOS_LEG_CLIENT;
        union stun_addr peer = peer_of((ctl >> 1) % 20);
        uint8_t *p = malloc(len ? len : 1); /* exact size: ASan sees any over-read */
        require(p != NULL);
        memcpy(p, data + off, len);
        enum qos_class c = qos_packet(q, &m, leg, &peer, p, len, t);
        require(c == qos_classify(p, len));
        free(p);
        fed++;
        off += len;
    }
    render(q, &m, t, false);
    qos_alloc_tick(q, &m, t + 1, true);
    render(q, &m, t + 1, true);
    /* episodes alternate per leg, degraded first, and none is left open after the end */
    struct qos_event ev;
    while (qos_alloc_event(q, &ev)) {
        require((unsigned)ev.leg < QOS_LEG_COUNT && ev.reasons != 0);
        require(open[ev.leg] == (ev.type == QOS_EV_RECOVERED));
        open[ev.leg] = ev.type == QOS_EV_DEGRADED;
    }
    if (qos_alloc_events_lost(q) == 0)
        for (int l = 0; l < QOS_LEG_COUNT; l++)
            require(!open[l] && qos_alloc_poor(q, (enum qos_leg)l) == 0);
    uint64_t counted = 0;
    for (int l = 0; l < QOS_LEG_COUNT; l++)
        for (int c = 0; c < QOS_CLASS_COUNT; c++)
            counted += m.packets[l][c];
    require(counted == fed);
    for (int l = 0; l < QOS_LEG_COUNT; l++) { /* a stream's kind may change: sum the kinds */
        uint64_t lost = 0, expected = 0;
        for (int k = 0; k < QOS_KIND_COUNT; k++) {
            lost += m.rtp_lost[l][k];
            expected += m.rtp_expected[l][k];
        }
        require(lost <= expected);
    }
    qos_alloc_free(q);
    return 0;
}
