/* probe.c: ternprobe, the active end-to-end check of a live relay: two libnice agents in one
 * process complete ICE over relayed candidates only, send each other real SRTP audio and video,
 * measure what arrives like a browser (RFC 3550 loss, libwebrtc jitter, RTCP SR/RR RTT), then
 * compare with what the relay's ops API reports for the same two allocations. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <curl/curl.h>
#include <gio/gio.h>
#include <glib.h>
#include <jansson.h>
#include <nice/agent.h>
#include <srtp2/srtp.h>

#include "tern_version.h"
#include "wire.h"

#define EXIT_OK      0
#define EXIT_QUALITY 1 /* below a threshold, or the endpoints and the relay disagree */
#define EXIT_USAGE   2
#define EXIT_REACH   3 /* relay or its API unreachable, allocation or ICE failed */

#define AUDIO_PT        111
#define AUDIO_CLOCK     48000
#define AUDIO_STEP      960 /* 20 ms */
#define AUDIO_PERIOD_US 20000
#define AUDIO_PAYLOAD   120
#define VIDEO_PT        96
#define VIDEO_CLOCK     90000
#define VIDEO_FPS       30
#define VIDEO_STEP      (VIDEO_CLOCK / VIDEO_FPS)
#define VIDEO_PAYLOAD   1100
#define RTCP_PERIOD_US  1000000
#define DRAIN_US        700000 /* after the last packet, before asking the relay */
#define MAX_PACKET      (1500 + SRTP_MAX_TRAILER_LEN + 64)
#define KEY_LEN         30 /* AES_CM_128 key (16) + salt (14) */
#define MAX_RTT_SAMPLES 256
#define WHY_LEN         1024 /* a failure reason */
#define SEQ_MOD         65536u
#define MAX_DROPOUT     3000u
#define MAX_MISORDER    100u

enum kind { AUDIO, VIDEO, NKIND };
static const char *const kind_name[NKIND] = {"audio", "video"};

struct opts {
    char server_ip[NI_MAXHOST];
    const char *server;
    guint port;
    const char *user;
    char *password; /* owned */
    char *secret;   /* owned */
    char rest_user[96];
    gboolean tcp;
    double duration;
    guint timeout_s;
    const char *api;
    char *token;
    double max_loss, max_jitter_ms, max_rtt_ms; /* NAN: no threshold */
    double tol_loss, tol_jitter_ms, tol_rtt_ms;
    gboolean json, verbose;
};

/* What one side sends of one kind. */
struct tx_stream {
    uint32_t ssrc;
    uint16_t seq;
    uint32_t ts0;
    uint64_t n;       /* audio packets or video frames scheduled so far */
    uint64_t packets; /* sent */
    uint64_t octets;  /* payload octets sent */
    uint64_t send_errors;
};

/* What one side received of one remote stream (RFC 3550 A.1/A.3, libwebrtc jitter). */
struct rx_stream {
    uint32_t ssrc;
    bool init;
    uint32_t clock;
    uint16_t max_seq;
    uint32_t cycles, base_seq;
    uint64_t received, reordered, duplicates;
    uint64_t expected_prior, received_prior; /* for the RR's fraction lost */
    int64_t first_us;
    uint32_t first_ts, last_ts;
    int64_t last_arrival; /* RTP units since the first packet */
    int32_t jitter_q4;
    uint32_t last_sr_mid; /* LSR: middle 32 bits of the last SR's NTP time (audio only) */
    int64_t last_sr_us;   /* when it arrived */
};

struct side {
    const char *name; /* "a" (controlling) or "b" */
    struct probe *p;
    struct side *other;
    NiceAgent *agent;
    guint stream;
    gboolean gathered;
    NiceComponentState state;
    gchar local_relay[NICE_ADDRESS_STRING_LEN + 8];
    gchar remote_relay[NICE_ADDRESS_STRING_LEN + 8];
    gboolean have_pair, relay_pair;
    uint8_t key[KEY_LEN];
    srtp_t tx, rx;
    struct tx_stream out[NKIND];
    struct rx_stream in[NKIND]; /* the other side's audio and video, by its SSRCs */
    uint64_t unprotect_errors, unknown, rtcp_received;
    double rtt[MAX_RTT_SAMPLES]; /* seconds, from RTCP RR LSR/DLSR */
    size_t nrtt;
    int64_t next_rtcp_us;
};

struct probe {
    struct opts o;
    struct side a, b;
    GMainLoop *loop;
    gboolean exchanged, sending, finished;
    int exit_code;
    gchar *failure;
    int64_t t_start, t_ready, t_media, t_stop;
    guint tick_source, timeout_source;
    guint closing;
};

/* ---- progress and failures ---- */

static int64_t t0_us;

static void progress(const char *fmt, ...) G_GNUC_PRINTF(1, 2);
static void progress(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "[%7.3f] ", (double)(g_get_monotonic_time() - t0_us) / 1e6);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* Record the first failure (with its exit code) and stop the run. */
static void fail_run(struct probe *p, int code, const char *fmt, ...) G_GNUC_PRINTF(3, 4);
static void fail_run(struct probe *p, int code, const char *fmt, ...)
{
    if (!p->failure) {
        va_list ap;
        va_start(ap, fmt);
        p->failure = g_strdup_vprintf(fmt, ap);
        va_end(ap);
        p->exit_code = code;
        progress("error: %s", p->failure);
    }
    p->finished = TRUE;
    g_main_loop_quit(p->loop);
}

static void addr_str(const NiceAddress *a, gchar *out, size_t outlen)
{
    gchar ip[NICE_ADDRESS_STRING_LEN];
    nice_address_to_string(a, ip);
    if (strchr(ip, ':'))
        g_snprintf(out, outlen, "[%s]:%u", ip, nice_address_get_port(a));
    else
        g_snprintf(out, outlen, "%s:%u", ip, nice_address_get_port(a));
}

/* ---- RTP and RTCP on the wire ---- */

/* NTP time of now (wall clock): 64 bits, and the middle 32 (RFC 3550 LSR units, 1/65536 s). */
static uint64_t ntp_now(int64_t real_us)
{
    uint64_t sec = (uint64_t)(real_us / 1000000) + 2208988800u;
    uint64_t frac = ((uint64_t)(real_us % 1000000) << 32) / 1000000;
    return sec << 32 | frac;
}

static uint32_t ntp_mid(uint64_t ntp)
{
    return (uint32_t)(ntp >> 16);
}

/* Protect and send one RTP packet of len bytes in buf (room for the SRTP trailer). */
static void send_rtp(struct side *s, struct tx_stream *t, uint8_t *buf, int len)
{
    if (srtp_protect(s->tx, buf, &len) != srtp_err_status_ok) {
        t->send_errors++;
        return;
    }
    gint n = nice_agent_send(s->agent, s->stream, 1, (guint)len, (const gchar *)buf);
    if (n != len) t->send_errors++;
}

static void rtp_header(uint8_t *b, bool marker, uint8_t pt, uint16_t seq, uint32_t ts,
                       uint32_t ssrc)
{
    b[0] = 0x80;
    b[1] = (uint8_t)((marker ? 0x80 : 0) | pt);
    wr16(b + 2, seq);
    wr32(b + 4, ts);
    wr32(b + 8, ssrc);
}

static void send_audio(struct side *s)
{
    struct tx_stream *t = &s->out[AUDIO];
    uint8_t buf[MAX_PACKET];
    uint32_t ts = t->ts0 + (uint32_t)(t->n * AUDIO_STEP);
    rtp_header(buf, t->n == 0, AUDIO_PT, t->seq, ts, t->ssrc);
    for (int i = 0; i < AUDIO_PAYLOAD; i++)
        buf[12 + i] = (uint8_t)g_random_int();
    t->seq++;
    t->packets++;
    t->octets += AUDIO_PAYLOAD;
    send_rtp(s, t, buf, 12 + AUDIO_PAYLOAD);
    t->n++;
}

/* One video frame: a key frame (12 packets) every 3 s, else 2-5 packets; one timestamp, the
 * marker on the last packet. */
static void send_video_frame(struct side *s)
{
    struct tx_stream *t = &s->out[VIDEO];
    uint8_t buf[MAX_PACKET];
    uint32_t ts = t->ts0 + (uint32_t)(t->n * VIDEO_STEP);
    int packets = t->n % (3 * VIDEO_FPS) == 0 ? 12 : 2 + (int)g_random_int_range(0, 4);
    for (int k = 0; k < packets; k++) {
        int size = k + 1 == packets ? 200 + (int)g_random_int_range(0, VIDEO_PAYLOAD - 200)
                                    : VIDEO_PAYLOAD;
        rtp_header(buf, k + 1 == packets, VIDEO_PT, t->seq, ts, t->ssrc);
        for (int i = 0; i < size; i++)
            buf[12 + i] = (uint8_t)(i * 7 + k);
        t->seq++;
        t->packets++;
        t->octets += (uint64_t)size;
        send_rtp(s, t, buf, 12 + size);
    }
    t->n++;
}

/* A report block about a received stream (RFC 3550 6.4.1), at now. */
static void report_block(uint8_t *b, struct rx_stream *r, int64_t now_real_us)
{
    uint32_t ext_max = r->cycles + r->max_seq;
    uint64_t expected = r->init ? (uint64_t)ext_max - r->base_seq + 1 : 0;
    int64_t lost = (int64_t)expected - (int64_t)r->received;
    uint64_t exp_int = expected - r->expected_prior, rec_int = r->received - r->received_prior;
    r->expected_prior = expected;
    r->received_prior = r->received;
    int64_t lost_int = (int64_t)exp_int - (int64_t)rec_int;
    uint8_t fraction = exp_int && lost_int > 0 ? (uint8_t)((lost_int << 8) / (int64_t)exp_int) : 0;
    if (lost > 0x7FFFFF) lost = 0x7FFFFF;
    if (lost < -0x800000) lost = -0x800000;
    wr32(b, r->ssrc);
    wr32(b + 4, (uint32_t)fraction << 24 | ((uint32_t)lost & 0xFFFFFF));
    wr32(b + 8, ext_max);
    wr32(b + 12, (uint32_t)(r->jitter_q4 >> 4));
    uint32_t dlsr = 0;
    if (r->last_sr_us) dlsr = (uint32_t)((now_real_us - r->last_sr_us) * 65536 / 1000000);
    wr32(b + 16, r->last_sr_mid);
    wr32(b + 20, r->last_sr_mid ? dlsr : 0);
}

/* A compound SRTCP packet: SR from our audio SSRC with a report block per received stream. */
static void send_rtcp(struct side *s)
{
    uint8_t buf[MAX_PACKET];
    int64_t now = g_get_real_time();
    uint64_t ntp = ntp_now(now);
    struct tx_stream *t = &s->out[AUDIO];
    int rc = 0;
    uint8_t *b = buf + 8;
    wr32(b, (uint32_t)(ntp >> 32));
    wr32(b + 4, (uint32_t)ntp);
    uint64_t elapsed = (uint64_t)(g_get_monotonic_time() - s->p->t_media);
    wr32(b + 8, t->ts0 + (uint32_t)(elapsed * AUDIO_CLOCK / 1000000));
    wr32(b + 12, (uint32_t)t->packets);
    wr32(b + 16, (uint32_t)t->octets);
    b += 20;
    for (int k = 0; k < NKIND; k++) {
        if (!s->in[k].init) continue;
        report_block(b, &s->in[k], now);
        b += 24;
        rc++;
    }
    int len = (int)(b - buf);
    buf[0] = (uint8_t)(0x80 | rc);
    buf[1] = 200; /* SR */
    wr16(buf + 2, (uint16_t)(len / 4 - 1));
    wr32(buf + 4, t->ssrc);
    if (srtp_protect_rtcp(s->tx, buf, &len) != srtp_err_status_ok) return;
    nice_agent_send(s->agent, s->stream, 1, (guint)len, (const gchar *)buf);
}

/* ---- receiving ---- */

static void rx_rtp(struct side *s, struct rx_stream *r, const uint8_t *b, int64_t real_us)
{
    uint16_t seq = (uint16_t)(b[2] << 8 | b[3]);
    uint32_t ts = rd32(b + 4);
    bool in_order = true;
    if (!r->init) {
        r->init = true;
        r->base_seq = seq;
        r->max_seq = seq;
        r->first_us = real_us;
        r->first_ts = ts;
    } else {
        uint16_t udelta = (uint16_t)(seq - r->max_seq);
        if (udelta < MAX_DROPOUT) {
            if (seq < r->max_seq) r->cycles += SEQ_MOD;
            r->max_seq = seq;
        } else if (udelta <= SEQ_MOD - MAX_MISORDER) {
            progress("agent %s: %s sequence jump %u -> %u", s->name, "stream", r->max_seq, seq);
            in_order = false;
        } else {
            r->reordered++;
            in_order = false;
        }
    }
    r->received++;
    if (!in_order) return;
    /* libwebrtc's rule: in-order packets with a new timestamp update the Q4 jitter. */
    int64_t arrival = (real_us - r->first_us) * (int64_t)r->clock / 1000000;
    if (r->received > 1 && ts != r->last_ts) {
        int64_t d = (arrival - r->last_arrival) - (int32_t)(ts - r->last_ts);
        if (d < 0) d = -d;
        if (d < 450000) r->jitter_q4 += (int32_t)((((int32_t)d << 4) - r->jitter_q4 + 8) >> 4);
    }
    r->last_ts = ts;
    r->last_arrival = arrival;
}

static void rx_rtcp(struct side *s, const uint8_t *b, int len, int64_t real_us)
{
    s->rtcp_received++;
    uint32_t my_audio = s->out[AUDIO].ssrc;
    while (len >= 8) {
        int plen = ((b[2] << 8 | b[3]) + 1) * 4, rc = b[0] & 0x1F;
        if (plen > len) break;
        if (b[1] == 200 && plen >= 28) { /* SR */
            uint32_t ssrc = rd32(b + 4);
            uint64_t ntp = (uint64_t)rd32(b + 8) << 32 | rd32(b + 12);
            for (int k = 0; k < NKIND; k++)
                if (s->in[k].ssrc == ssrc) {
                    s->in[k].last_sr_mid = ntp_mid(ntp);
                    s->in[k].last_sr_us = real_us;
                }
            const uint8_t *rb = b + 28;
            for (int i = 0; i < rc && rb + 24 <= b + plen; i++, rb += 24) {
                uint32_t lsr = rd32(rb + 16), dlsr = rd32(rb + 20);
                if (rd32(rb) != my_audio || lsr == 0) continue;
                uint32_t a = ntp_mid(ntp_now(real_us));
                int32_t rtt = (int32_t)(a - lsr - dlsr);
                if (rtt >= 0 && s->nrtt < MAX_RTT_SAMPLES) s->rtt[s->nrtt++] = rtt / 65536.0;
            }
        }
        b += plen;
        len -= plen;
    }
}

static void on_recv(NiceAgent *agent, guint stream_id, guint component_id, guint len, gchar *data,
                    gpointer user)
{
    struct probe *p = user;
    struct side *s = agent == p->a.agent ? &p->a : &p->b;
    (void)stream_id;
    (void)component_id;
    int64_t now = g_get_real_time();
    uint8_t buf[MAX_PACKET];
    if (len < 12 || len > sizeof buf || ((uint8_t)data[0] >> 6) != 2) {
        s->unknown++;
        return;
    }
    memcpy(buf, data, len);
    int n = (int)len;
    if (buf[1] >= 200 && buf[1] <= 204) { /* RTCP (RFC 5761) */
        if (srtp_unprotect_rtcp(s->rx, buf, &n) != srtp_err_status_ok) {
            s->unprotect_errors++;
            return;
        }
        rx_rtcp(s, buf, n, now);
        return;
    }
    uint32_t ssrc = rd32(buf + 8);
    struct rx_stream *r = NULL;
    for (int k = 0; k < NKIND; k++)
        if (s->in[k].ssrc == ssrc) r = &s->in[k];
    if (!r) {
        s->unknown++;
        return;
    }
    srtp_err_status_t e = srtp_unprotect(s->rx, buf, &n);
    if (e == srtp_err_status_replay_fail || e == srtp_err_status_replay_old) {
        r->duplicates++;
        return;
    }
    if (e != srtp_err_status_ok) {
        s->unprotect_errors++;
        return;
    }
    rx_rtp(s, r, buf, now);
}

/* ---- the media clock ---- */

static void stop_media(struct probe *p);

static gboolean on_tick(gpointer user)
{
    struct probe *p = user;
    int64_t now = g_get_monotonic_time();
    if (now >= p->t_stop) {
        p->tick_source = 0;
        stop_media(p);
        return G_SOURCE_REMOVE;
    }
    struct side *sides[2] = {&p->a, &p->b};
    for (int k = 0; k < 2; k++) {
        struct side *s = sides[k];
        while (p->t_media + (int64_t)s->out[AUDIO].n * AUDIO_PERIOD_US <= now)
            send_audio(s);
        while (p->t_media + (int64_t)(s->out[VIDEO].n * 1000000 / VIDEO_FPS) <= now)
            send_video_frame(s);
        if (now >= s->next_rtcp_us) {
            send_rtcp(s);
            s->next_rtcp_us = now + RTCP_PERIOD_US;
        }
    }
    return G_SOURCE_CONTINUE;
}

static gboolean on_drained(gpointer user)
{
    struct probe *p = user;
    p->finished = TRUE;
    g_main_loop_quit(p->loop);
    return G_SOURCE_REMOVE;
}

static void stop_media(struct probe *p)
{
    /* A last report each way so both ends have a fresh RTT, then let stragglers arrive. */
    send_rtcp(&p->a);
    send_rtcp(&p->b);
    progress("sent a->b audio %" PRIu64 " video %" PRIu64 " packets, b->a audio %" PRIu64
             " video %" PRIu64 "; draining",
             p->a.out[AUDIO].packets, p->a.out[VIDEO].packets, p->b.out[AUDIO].packets,
             p->b.out[VIDEO].packets);
    g_timeout_add(DRAIN_US / 1000, on_drained, p);
}

static bool srtp_session(srtp_t *out, const uint8_t key[KEY_LEN], bool outbound)
{
    srtp_policy_t pol;
    memset(&pol, 0, sizeof pol);
    srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&pol.rtp);
    srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&pol.rtcp);
    pol.ssrc.type = outbound ? ssrc_any_outbound : ssrc_any_inbound;
    pol.key = (unsigned char *)key;
    pol.window_size = 1024;
    pol.allow_repeat_tx = 0;
    return srtp_create(out, &pol) == srtp_err_status_ok;
}

static void start_media(struct probe *p)
{
    struct side *sides[2] = {&p->a, &p->b};
    for (int k = 0; k < 2; k++) {
        struct side *s = sides[k];
        if (!srtp_session(&s->tx, s->key, true) || !srtp_session(&s->rx, s->other->key, false)) {
            fail_run(p, EXIT_REACH, "cannot create the SRTP sessions");
            return;
        }
    }
    p->t_media = g_get_monotonic_time();
    p->t_stop = p->t_media + (int64_t)(p->o.duration * 1e6);
    p->a.next_rtcp_us = p->t_media + RTCP_PERIOD_US / 2;
    p->b.next_rtcp_us = p->t_media + RTCP_PERIOD_US;
    progress("sending SRTP (AES_CM_128_HMAC_SHA1_80) audio pt %d 48 kHz 20 ms and video pt %d "
             "90 kHz %d fps both ways for %.1f s",
             AUDIO_PT, VIDEO_PT, VIDEO_FPS, p->o.duration);
    p->tick_source = g_timeout_add_full(G_PRIORITY_HIGH, 1, on_tick, p, NULL);
}

/* ---- ICE ---- */

static void note_pair(struct side *s)
{
    NiceCandidate *l = NULL, *r = NULL;
    if (!nice_agent_get_selected_pair(s->agent, s->stream, 1, &l, &r) || !l || !r) return;
    s->have_pair = TRUE;
    s->relay_pair =
        l->type == NICE_CANDIDATE_TYPE_RELAYED && r->type == NICE_CANDIDATE_TYPE_RELAYED;
    addr_str(&l->addr, s->local_relay, sizeof s->local_relay);
    addr_str(&r->addr, s->remote_relay, sizeof s->remote_relay);
}

static void on_state_changed(NiceAgent *agent, guint stream_id, guint component_id, guint state,
                             gpointer user)
{
    struct probe *p = user;
    struct side *s = agent == p->a.agent ? &p->a : &p->b;
    (void)stream_id;
    (void)component_id;
    if (p->finished) return;
    s->state = (NiceComponentState)state;
    if (p->o.verbose)
        progress("agent %s: ICE %s", s->name, nice_component_state_to_string(s->state));
    if (s->state == NICE_COMPONENT_STATE_FAILED) {
        fail_run(p, EXIT_REACH, "ICE failed on agent %s", s->name);
        return;
    }
    if (p->sending || p->a.state != NICE_COMPONENT_STATE_READY ||
        p->b.state != NICE_COMPONENT_STATE_READY)
        return;
    p->sending = TRUE;
    p->t_ready = g_get_monotonic_time();
    note_pair(&p->a);
    note_pair(&p->b);
    progress("ICE completed in %.3f s: a %s <-> b %s", (double)(p->t_ready - p->t_start) / 1e6,
             p->a.local_relay, p->b.local_relay);
    if (!p->a.relay_pair || !p->b.relay_pair) {
        fail_run(p, EXIT_REACH, "the selected pair is not relay/relay");
        return;
    }
    if (p->timeout_source) g_source_remove(p->timeout_source);
    p->timeout_source = 0;
    start_media(p);
}

static gboolean give_remote(struct probe *p, struct side *from, struct side *to)
{
    gchar *ufrag = NULL, *pwd = NULL;
    if (!nice_agent_get_local_credentials(from->agent, from->stream, &ufrag, &pwd)) {
        fail_run(p, EXIT_REACH, "agent %s: no local ICE credentials", from->name);
        return FALSE;
    }
    nice_agent_set_remote_credentials(to->agent, to->stream, ufrag, pwd);
    g_free(ufrag);
    g_free(pwd);
    GSList *cands = nice_agent_get_local_candidates(from->agent, from->stream, 1), *relays = NULL;
    for (GSList *i = cands; i; i = i->next) {
        NiceCandidate *c = i->data;
        if (c->type == NICE_CANDIDATE_TYPE_RELAYED) relays = g_slist_append(relays, c);
    }
    guint n = g_slist_length(relays);
    int added = n ? nice_agent_set_remote_candidates(to->agent, to->stream, 1, relays) : 0;
    g_slist_free(relays);
    g_slist_free_full(cands, (GDestroyNotify)nice_candidate_free);
    if (n == 0) {
        fail_run(p, EXIT_REACH,
                 "agent %s got no relayed candidate: TURN allocation at %s:%u/%s failed (relay "
                 "unreachable or credentials refused)",
                 from->name, p->o.server_ip, p->o.port, p->o.tcp ? "tcp" : "udp");
        return FALSE;
    }
    if (added < (int)n) {
        fail_run(p, EXIT_REACH, "agent %s accepted %d of %u candidates", to->name, added, n);
        return FALSE;
    }
    return TRUE;
}

static void on_gathering_done(NiceAgent *agent, guint stream_id, gpointer user)
{
    struct probe *p = user;
    struct side *s = agent == p->a.agent ? &p->a : &p->b;
    (void)stream_id;
    s->gathered = TRUE;
    if (!p->a.gathered || !p->b.gathered || p->exchanged || p->finished) return;
    p->exchanged = TRUE;
    progress("both agents allocated on the relay; connectivity checks");
    if (give_remote(p, &p->a, &p->b)) give_remote(p, &p->b, &p->a);
}

static gboolean on_timeout(gpointer user)
{
    struct probe *p = user;
    p->timeout_source = 0;
    fail_run(p, EXIT_REACH, "timeout after %u s during %s (ICE a=%s b=%s)", p->o.timeout_s,
             !p->exchanged ? "TURN allocation (candidate gathering)" : "ICE connectivity checks",
             nice_component_state_to_string(p->a.state),
             nice_component_state_to_string(p->b.state));
    return G_SOURCE_REMOVE;
}

static void set_prop_bool(NiceAgent *a, const char *name, gboolean v)
{
    if (g_object_class_find_property(G_OBJECT_GET_CLASS(a), name)) g_object_set(a, name, v, NULL);
}

static void set_prop_uint(NiceAgent *a, const char *name, guint v)
{
    if (g_object_class_find_property(G_OBJECT_GET_CLASS(a), name)) g_object_set(a, name, v, NULL);
}

static bool is_loopback(const char *ip)
{
    return strncmp(ip, "127.", 4) == 0 || strcmp(ip, "::1") == 0;
}

static gboolean side_init(struct probe *p, struct side *s, const char *name, gboolean controlling)
{
    s->name = name;
    s->p = p;
    s->state = NICE_COMPONENT_STATE_DISCONNECTED;
    for (int i = 0; i < KEY_LEN; i++)
        s->key[i] = (uint8_t)g_random_int();
    for (int k = 0; k < NKIND; k++) {
        s->out[k].ssrc = g_random_int();
        s->out[k].seq = (uint16_t)g_random_int();
        s->out[k].ts0 = g_random_int();
    }
    /* Periodic Binding requests both ways (consent freshness, RFC 7675, libnice >= 0.1.19; a
     * construct-only property), else connectivity-check keepalives: the relay's RTT source. */
    GObjectClass *klass = g_type_class_ref(NICE_TYPE_AGENT);
    gboolean consent = g_object_class_find_property(klass, "consent-freshness") != NULL;
    g_type_class_unref(klass);
    if (consent)
        s->agent = g_object_new(NICE_TYPE_AGENT, "compatibility", NICE_COMPATIBILITY_RFC5245,
                                "consent-freshness", TRUE, NULL);
    else
        s->agent = g_object_new(NICE_TYPE_AGENT, "compatibility", NICE_COMPATIBILITY_RFC5245, NULL);
    if (!s->agent) return FALSE;
    if (!consent) set_prop_bool(s->agent, "keepalive-conncheck", TRUE);
    g_object_set(s->agent, "controlling-mode", controlling, "ice-udp", TRUE, "ice-tcp", FALSE,
                 NULL);
    set_prop_bool(s->agent, "upnp", FALSE);
    set_prop_bool(s->agent, "force-relay", TRUE);
    set_prop_uint(s->agent, "stun-max-retransmissions", 4);
    if (is_loopback(p->o.server_ip)) {
        NiceAddress local;
        nice_address_init(&local);
        nice_address_set_from_string(&local, strchr(p->o.server_ip, ':') ? "::1" : "127.0.0.1");
        if (!nice_agent_add_local_address(s->agent, &local)) return FALSE;
    }
    g_signal_connect(s->agent, "candidate-gathering-done", G_CALLBACK(on_gathering_done), p);
    g_signal_connect(s->agent, "component-state-changed", G_CALLBACK(on_state_changed), p);
    s->stream = nice_agent_add_stream(s->agent, 1);
    if (!s->stream) return FALSE;
    const char *user = p->o.secret ? p->o.rest_user : p->o.user;
    if (!nice_agent_set_relay_info(s->agent, s->stream, 1, p->o.server_ip, p->o.port, user,
                                   p->o.password,
                                   p->o.tcp ? NICE_RELAY_TYPE_TURN_TCP : NICE_RELAY_TYPE_TURN_UDP))
        return FALSE;
    return nice_agent_attach_recv(s->agent, s->stream, 1, g_main_context_default(), on_recv, p);
}

static void on_closed(GObject *src, GAsyncResult *res, gpointer user)
{
    struct probe *p = user;
    (void)src;
    (void)res;
    if (--p->closing == 0) g_main_loop_quit(p->loop);
}

static gboolean on_close_timeout(gpointer user)
{
    g_main_loop_quit(((struct probe *)user)->loop);
    return G_SOURCE_REMOVE;
}

static void close_agents(struct probe *p)
{
    if (p->tick_source) g_source_remove(p->tick_source);
    if (p->timeout_source) g_source_remove(p->timeout_source);
    p->tick_source = p->timeout_source = 0;
    struct side *sides[2] = {&p->a, &p->b};
    for (int k = 0; k < 2; k++)
        if (sides[k]->agent) {
            p->closing++;
            nice_agent_close_async(sides[k]->agent, on_closed, p);
        }
    if (p->closing) {
        guint t = g_timeout_add(3000, on_close_timeout, p);
        g_main_loop_run(p->loop);
        if (p->closing == 0) g_source_remove(t);
    }
    for (int k = 0; k < 2; k++) {
        if (sides[k]->agent) g_object_unref(sides[k]->agent);
        sides[k]->agent = NULL;
        if (sides[k]->tx) srtp_dealloc(sides[k]->tx);
        if (sides[k]->rx) srtp_dealloc(sides[k]->rx);
        sides[k]->tx = sides[k]->rx = NULL;
    }
}

/* ---- the relay's view (ops API) ---- */

struct body {
    char *p;
    size_t n;
};

static size_t on_body(char *data, size_t size, size_t nmemb, void *ctx)
{
    struct body *b = ctx;
    size_t len = size * nmemb;
    if (b->n + len > (32u << 20)) return 0;
    char *np = realloc(b->p, b->n + len + 1);
    if (!np) return 0;
    b->p = np;
    memcpy(b->p + b->n, data, len);
    b->n += len;
    b->p[b->n] = '\0';
    return len;
}

/* GET api + path: the JSON answer, else NULL with *why set (*code: EXIT_REACH when the API
 * could not be reached, EXIT_QUALITY for an HTTP or JSON error). */
static json_t *api_get(const struct opts *o, const char *path, char why[WHY_LEN], int *code)
{
    char url[512], err[CURL_ERROR_SIZE] = "", auth[4200];
    snprintf(url, sizeof url, "%s%s", o->api, path);
    struct body b = {0};
    struct curl_slist *h = NULL;
    CURL *c = curl_easy_init();
    json_t *j = NULL;
    *code = EXIT_QUALITY;
    if (!c) {
        snprintf(why, WHY_LEN, "out of memory");
        return NULL;
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, err);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 5L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "ternprobe/" TERN_VERSION);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    h = curl_slist_append(h, "Accept: application/json");
    if (o->token) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", o->token);
        h = curl_slist_append(h, auth);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    CURLcode res = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (res != CURLE_OK) {
        *code = EXIT_REACH;
        snprintf(why, WHY_LEN, "relay API %s unreachable: %s", url,
                 err[0] ? err : curl_easy_strerror(res));
    } else if (status == 401) {
        *code = EXIT_REACH;
        snprintf(why, WHY_LEN, "relay API %s: 401: %s", url,
                 o->token ? "the token was refused" : "it wants a token (--token)");
    } else if (status != 200) {
        snprintf(why, WHY_LEN, "relay API %s: HTTP status %ld", url, status);
    } else {
        json_error_t je;
        j = json_loadb(b.p ? b.p : "", b.n, 0, &je);
        if (!json_is_object(j)) {
            json_decref(j);
            j = NULL;
            snprintf(why, WHY_LEN, "relay API %s: the answer is not a JSON object", url);
        }
    }
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    free(b.p);
    memset(auth, 0, sizeof auth);
    return j;
}

static double jnum(const json_t *obj, const char *key)
{
    json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
    return json_is_number(v) ? json_number_value(v) : NAN;
}

/* The allocation whose "relayed" lists addr, from the listing; its detail (new reference). */
static json_t *relay_detail(const struct opts *o, json_t *list, const char *addr, char why[WHY_LEN],
                            int *code)
{
    size_t i, k;
    json_t *e, *r;
    json_array_foreach(json_object_get(list, "allocations"), i, e)
    {
        bool match = false;
        json_t *rel = json_object_get(e, "relayed");
        if (json_is_string(rel)) match = strcmp(json_string_value(rel), addr) == 0;
        json_array_foreach(rel, k, r)
        {
            if (json_is_string(r) && strcmp(json_string_value(r), addr) == 0) match = true;
        }
        if (!match) continue;
        json_t *id = json_object_get(e, "id");
        char path[96];
        if (json_is_string(id))
            snprintf(path, sizeof path, "/api/v1/allocations/%s", json_string_value(id));
        else if (json_is_integer(id))
            snprintf(path, sizeof path, "/api/v1/allocations/%" JSON_INTEGER_FORMAT,
                     json_integer_value(id));
        else
            break;
        return api_get(o, path, why, code);
    }
    *code = EXIT_QUALITY;
    snprintf(why, WHY_LEN, "the relay lists no allocation with relayed address %s", addr);
    return NULL;
}

/* In a detail, the direction dir ("from_client"/"from_peer") of the flow with peer, and the RTP
 * stream ssrc in it (NULL when absent). */
static json_t *relay_stream(const json_t *detail, const char *peer, const char *dir, uint32_t ssrc)
{
    size_t i, k;
    json_t *f, *s;
    json_array_foreach(json_object_get(detail, "peers"), i, f)
    {
        json_t *pa = json_object_get(f, "peer");
        if (!json_is_string(pa) || strcmp(json_string_value(pa), peer) != 0) continue;
        json_t *d = json_object_get(json_object_get(f, "directions"), dir);
        json_array_foreach(json_object_get(d, "rtp_streams"), k, s)
        {
            if (jnum(s, "ssrc") == (double)ssrc) return s;
        }
    }
    return NULL;
}

static json_t *relay_flow(const json_t *detail, const char *peer)
{
    size_t i;
    json_t *f;
    json_array_foreach(json_object_get(detail, "peers"), i, f)
    {
        json_t *pa = json_object_get(f, "peer");
        if (json_is_string(pa) && strcmp(json_string_value(pa), peer) == 0) return f;
    }
    return NULL;
}

/* ---- the verdict ---- */

static double median(const double *v, size_t n)
{
    if (!n) return NAN;
    double *c = g_memdup2(v, n * sizeof *v);
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && c[j - 1] > c[j]; j--) {
            double t = c[j];
            c[j] = c[j - 1];
            c[j - 1] = t;
        }
    double m = n % 2 ? c[n / 2] : (c[n / 2 - 1] + c[n / 2]) / 2;
    g_free(c);
    return m;
}

static double rx_loss_ratio(const struct rx_stream *r)
{
    if (!r->init) return NAN;
    double expected = (double)(r->cycles + r->max_seq) - r->base_seq + 1;
    return expected > 0 ? (expected - (double)r->received) / expected : NAN;
}

static double rx_jitter(const struct rx_stream *r)
{
    return r->init && r->received > 1 ? (double)(r->jitter_q4 >> 4) / r->clock : NAN;
}

static json_t *jreal(double v)
{
    return isnan(v) ? json_null() : json_real(v);
}

static const char *ms(double s, char out[24])
{
    if (isnan(s)) return "-";
    snprintf(out, 24, "%.3f", s * 1e3);
    return out;
}

static const char *pct(double r, char out[24])
{
    if (isnan(r)) return "-";
    snprintf(out, 24, "%.2f", r * 100);
    return out;
}

/* One reason the verdict fails (the first sets the exit line). */
static void reason(struct probe *p, int code, GString *why, const char *fmt, ...)
    G_GNUC_PRINTF(4, 5);
static void reason(struct probe *p, int code, GString *why, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    gchar *m = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    if (why->len) g_string_append(why, "; ");
    g_string_append(why, m);
    if (p->exit_code == EXIT_OK || code > p->exit_code) p->exit_code = code;
    g_free(m);
}

/* What the verdict weighs, computed first (compute_measures), then judged against the options
 * (judge), then rendered (render_text, render_json): plain numbers, NAN where unknown. */
struct leg_measure {
    bool present; /* the relay reports the stream at this leg */
    double received, lost_net, loss, jitter;
};

struct stream_measure {
    char name[64]; /* "a->b audio SSRC" */
    const struct side *tx, *rx;
    const struct tx_stream *t;
    const struct rx_stream *r;
    enum kind kind;
    double expected, loss, jitter; /* at the receiving endpoint */
    int nlegs;                     /* 2 when the relay was asked, else 0 */
    struct leg_measure leg[2];     /* client leg (sender's allocation), peer leg (receiver's) */
};

struct rtt_measure {
    const struct side *s;
    double endpoint;           /* median of its RTCP samples */
    double path, client, peer; /* the relay's path RTT and its legs' medians */
    bool relay_asked;
};

struct measures {
    struct stream_measure st[2 * NKIND];
    struct rtt_measure rtt[2];
    double worst_loss, worst_jit, worst_rtt;
};

static const char *const leg_label[2] = {"relay client-leg", "relay peer-leg"};

static void compute_measures(const struct probe *p, json_t *det_a, json_t *det_b,
                             struct measures *m)
{
    const struct side *sides[2] = {&p->a, &p->b};
    m->worst_loss = m->worst_jit = m->worst_rtt = NAN;
    for (int k = 0; k < 2; k++) {
        const struct side *tx = sides[k], *rx = sides[1 - k];
        for (int kind = 0; kind < NKIND; kind++) {
            struct stream_measure *sm = &m->st[k * NKIND + kind];
            const struct tx_stream *t = &tx->out[kind];
            const struct rx_stream *r = &rx->in[kind];
            *sm = (struct stream_measure){.tx = tx, .rx = rx, .t = t, .r = r, .kind = kind};
            snprintf(sm->name, sizeof sm->name, "%s->%s %s %08" PRIx32, tx->name, rx->name,
                     kind_name[kind], t->ssrc);
            sm->loss = rx_loss_ratio(r);
            sm->jitter = rx_jitter(r);
            if (isnan(sm->loss) || r->received == 0) sm->loss = 1.0; /* nothing arrived */
            sm->expected = r->init ? (double)(r->cycles + r->max_seq) - r->base_seq + 1 : 0;
            if (isnan(m->worst_loss) || sm->loss > m->worst_loss) m->worst_loss = sm->loss;
            if (!isnan(sm->jitter) && (isnan(m->worst_jit) || sm->jitter > m->worst_jit))
                m->worst_jit = sm->jitter;
            /* The relay saw this stream twice: arriving from the sender's client leg (on the
             * sender's allocation) and from the peer leg (on the receiver's allocation). */
            json_t *dets[2] = {k == 0 ? det_a : det_b, k == 0 ? det_b : det_a};
            const char *peers[2] = {tx->remote_relay, rx->remote_relay};
            const char *dirs[2] = {"from_client", "from_peer"};
            sm->nlegs = dets[0] ? 2 : 0;
            for (int h = 0; h < sm->nlegs; h++) {
                json_t *js = dets[h] ? relay_stream(dets[h], peers[h], dirs[h], t->ssrc) : NULL;
                struct leg_measure *l = &sm->leg[h];
                double rexp = jnum(js, "packets_expected");
                l->present = js != NULL;
                l->received = jnum(js, "packets_received");
                l->lost_net = jnum(js, "packets_lost_net");
                l->jitter = jnum(js, "jitter_seconds");
                l->loss = rexp > 0 ? l->lost_net / rexp : NAN;
            }
        }
    }
    /* RTT: each endpoint's RTCP estimate vs the relay's path RTT (client leg + peer leg) of that
     * endpoint's allocation toward the other's relayed address. */
    for (int k = 0; k < 2; k++) {
        const struct side *s = sides[k];
        struct rtt_measure *rm = &m->rtt[k];
        json_t *det = k == 0 ? det_a : det_b;
        json_t *flow = det ? relay_flow(det, s->remote_relay) : NULL;
        rm->s = s;
        rm->relay_asked = det != NULL;
        rm->endpoint = median(s->rtt, s->nrtt);
        if (!isnan(rm->endpoint) && (isnan(m->worst_rtt) || rm->endpoint > m->worst_rtt))
            m->worst_rtt = rm->endpoint;
        /* The relay's legs by their medians (p50): one late consent check does not decide, as
         * the endpoint's RTT is the median of its RTCP samples; path_rtt_seconds (the latest
         * samples' sum) when a median is missing. */
        rm->client =
            jnum(json_object_get(json_object_get(det, "client_leg"), "rtt"), "p50_seconds");
        rm->peer = jnum(json_object_get(json_object_get(flow, "peer_leg"), "rtt"), "p50_seconds");
        rm->path = !isnan(rm->client) && !isnan(rm->peer) ? rm->client + rm->peer
                                                          : jnum(flow, "path_rtt_seconds");
    }
}

/* Every reason the measures fail the options, in report order; sets p->exit_code. */
static void judge(struct probe *p, const struct measures *m, GString *why)
{
    const struct opts *o = &p->o;
    for (size_t i = 0; i < 2 * NKIND; i++) {
        const struct stream_measure *sm = &m->st[i];
        for (int h = 0; h < sm->nlegs; h++) {
            const struct leg_measure *l = &sm->leg[h];
            const char *leg = leg_label[h] + 6;
            if (!l->present) {
                reason(p, EXIT_QUALITY, why, "the relay reports no RTP stream %s at its %s",
                       sm->name, leg);
                continue;
            }
            if (!isnan(o->tol_loss) && fabs(l->loss - sm->loss) * 100 > o->tol_loss &&
                !(h == 0 && l->loss <= sm->loss)) /* loss may grow after the first hop */
                reason(p, EXIT_QUALITY, why,
                       "%s loss: endpoint %s %.2f%%, relay %s %.2f%% (tolerance %.2f points)",
                       sm->name, sm->rx->name, sm->loss * 100, leg, l->loss * 100, o->tol_loss);
            if (isnan(l->jitter))
                reason(p, EXIT_QUALITY, why, "%s: the relay reports no jitter at its %s", sm->name,
                       leg);
            else if (!isnan(sm->jitter) && fabs(l->jitter - sm->jitter) * 1e3 > o->tol_jitter_ms)
                reason(p, EXIT_QUALITY, why,
                       "%s jitter: endpoint %s %.3f ms, relay %s %.3f ms (tolerance %.3f ms)",
                       sm->name, sm->rx->name, sm->jitter * 1e3, leg, l->jitter * 1e3,
                       o->tol_jitter_ms);
        }
    }
    for (int k = 0; k < 2; k++) {
        const struct rtt_measure *rm = &m->rtt[k];
        if (isnan(rm->endpoint))
            reason(p, EXIT_QUALITY, why, "endpoint %s measured no RTT (no RTCP report)",
                   rm->s->name);
        if (!rm->relay_asked) continue;
        if (isnan(rm->path))
            reason(p, EXIT_QUALITY, why, "the relay reports no path RTT for %s's allocation",
                   rm->s->name);
        else if (!isnan(rm->endpoint) && fabs(rm->path - rm->endpoint) * 1e3 > o->tol_rtt_ms)
            reason(p, EXIT_QUALITY, why,
                   "RTT: endpoint %s %.3f ms, relay path %.3f ms (tolerance %.3f ms)", rm->s->name,
                   rm->endpoint * 1e3, rm->path * 1e3, o->tol_rtt_ms);
    }
    /* Thresholds on what the endpoints measured. */
    if (!isnan(o->max_loss) && !(m->worst_loss * 100 <= o->max_loss))
        reason(p, EXIT_QUALITY, why, "loss %.2f%% above --max-loss %.2f%%", m->worst_loss * 100,
               o->max_loss);
    if (!isnan(o->max_jitter_ms) && !(m->worst_jit * 1e3 <= o->max_jitter_ms))
        reason(p, EXIT_QUALITY, why, "jitter %.3f ms above --max-jitter-ms %.3f",
               m->worst_jit * 1e3, o->max_jitter_ms);
    if (!isnan(o->max_rtt_ms) && !(m->worst_rtt * 1e3 <= o->max_rtt_ms))
        reason(p, EXIT_QUALITY, why, "rtt %.3f ms above --max-rtt-ms %.4f", m->worst_rtt * 1e3,
               o->max_rtt_ms);
}

/* The human tables: streams as each endpoint and each relay leg saw them, then RTT. */
static void render_text(const struct measures *m)
{
    char b1[24], b2[24], b3[24], b4[24];
    printf("%-24s %-16s %9s %9s %8s %8s %10s\n", "stream", "observer", "sent", "received", "lost",
           "loss %", "jitter ms");
    for (size_t i = 0; i < 2 * NKIND; i++) {
        const struct stream_measure *sm = &m->st[i];
        printf("%-24s %-16s %9" PRIu64 " %9" PRIu64 " %8.0f %8s %10s\n", sm->name,
               sm->rx->name[0] == 'a' ? "endpoint a" : "endpoint b", sm->t->packets,
               sm->r->received, sm->expected - (double)sm->r->received, pct(sm->loss, b1),
               ms(sm->jitter, b2));
        for (int h = 0; h < sm->nlegs; h++)
            printf("%-24s %-16s %9s %9.0f %8.0f %8s %10s\n", "", leg_label[h], "",
                   sm->leg[h].received, sm->leg[h].lost_net, pct(sm->leg[h].loss, b1),
                   ms(sm->leg[h].jitter, b2));
    }
    printf("\n%-8s %12s %8s %14s %14s %14s\n", "rtt", "endpoint ms", "samples", "relay path ms",
           "client p50 ms", "peer p50 ms");
    for (int k = 0; k < 2; k++) {
        const struct rtt_measure *rm = &m->rtt[k];
        printf("%-8s %12s %8zu %14s %14s %14s\n", k == 0 ? "a<->b" : "b<->a", ms(rm->endpoint, b1),
               rm->s->nrtt, ms(rm->path, b2), ms(rm->client, b3), ms(rm->peer, b4));
    }
}

/* The report (JSON): the run, every stream at the endpoint and the relay's legs, RTT, worst. */
static json_t *render_json(const struct probe *p, const struct measures *m)
{
    const struct opts *o = &p->o;
    json_t *rep = json_object(), *streams = json_array(), *rtts = json_array();
    json_object_set_new(rep, "server", json_sprintf("%s:%u", o->server_ip, o->port));
    json_object_set_new(rep, "transport", json_string(o->tcp ? "tcp" : "udp"));
    json_object_set_new(rep, "duration_seconds", json_real(o->duration));
    json_object_set_new(rep, "relayed",
                        json_pack("{s:s,s:s}", "a", p->a.local_relay, "b", p->b.local_relay));
    for (size_t i = 0; i < 2 * NKIND; i++) {
        const struct stream_measure *sm = &m->st[i];
        json_t *js = json_pack("{s:s,s:s,s:I,s:s,s:{s:I,s:I,s:f,s:o,s:I,s:I,s:I}}", "from",
                               sm->tx->name, "to", sm->rx->name, "ssrc", (json_int_t)sm->t->ssrc,
                               "kind", kind_name[sm->kind], "endpoint", "sent",
                               (json_int_t)sm->t->packets, "received", (json_int_t)sm->r->received,
                               "loss_ratio", sm->loss, "jitter_seconds", jreal(sm->jitter),
                               "duplicates", (json_int_t)sm->r->duplicates, "reordered",
                               (json_int_t)sm->r->reordered, "expected", (json_int_t)sm->expected);
        for (int h = 0; h < sm->nlegs; h++) {
            const struct leg_measure *l = &sm->leg[h];
            json_object_set_new(js, h == 0 ? "relay_client_leg" : "relay_peer_leg",
                                l->present
                                    ? json_pack("{s:o,s:o,s:o,s:o}", "received", jreal(l->received),
                                                "lost_net", jreal(l->lost_net), "loss_ratio",
                                                jreal(l->loss), "jitter_seconds", jreal(l->jitter))
                                    : json_null());
        }
        json_array_append_new(streams, js);
    }
    json_object_set_new(rep, "streams", streams);
    for (int k = 0; k < 2; k++) {
        const struct rtt_measure *rm = &m->rtt[k];
        json_array_append_new(
            rtts, json_pack("{s:s,s:o,s:I,s:o,s:o,s:o}", "endpoint", rm->s->name, "rtt_seconds",
                            jreal(rm->endpoint), "samples", (json_int_t)rm->s->nrtt,
                            "relay_path_rtt_seconds", jreal(rm->path), "relay_client_leg_seconds",
                            jreal(rm->client), "relay_peer_leg_seconds", jreal(rm->peer)));
    }
    json_object_set_new(rep, "rtt", rtts);
    json_object_set_new(rep, "worst",
                        json_pack("{s:o,s:o,s:o}", "loss_ratio", jreal(m->worst_loss),
                                  "jitter_seconds", jreal(m->worst_jit), "rtt_seconds",
                                  jreal(m->worst_rtt)));
    return rep;
}

/* Compute, judge (sets p->exit_code, reasons into why), print the tables unless --json;
 * returns the report (JSON). */
static json_t *verdict(struct probe *p, json_t *det_a, json_t *det_b, GString *why)
{
    struct measures m;
    compute_measures(p, det_a, det_b, &m);
    judge(p, &m, why);
    if (!p->o.json) render_text(&m);
    return render_json(p, &m);
}

/* ---- options ---- */

static void usage(FILE *out)
{
    fprintf(
        out,
        "Usage: ternprobe --server HOST:PORT (--user U --password P | --secret S) [options]\n"
        "The active end-to-end check of a TURN relay: two ICE agents (libnice) in this process\n"
        "allocate on the relay, complete ICE over relayed candidates only (consent freshness\n"
        "on: periodic Binding requests both ways), then each sends the other real SRTP\n"
        "(AES_CM_128_HMAC_SHA1_80) audio (pt 111, 48 kHz, 20 ms) and video (pt 96, 90 kHz,\n"
        "30 fps, 2-12 packets a frame). Each receiver measures like a browser: RFC 3550 loss,\n"
        "libwebrtc jitter, and RTT from RTCP sender/receiver reports (LSR/DLSR, every 1 s).\n"
        "With --api, the relay's own view of the two allocations (matched by relayed address)\n"
        "is printed beside it and must agree within the tolerances.\n"
        "\n"
        "  --server HOST:PORT     the relay's TURN listener\n"
        "  --transport udp|tcp    TURN transport (default udp)\n"
        "  --user U --password P  long-term credentials (or TERN_PROBE_PASSWORD)\n"
        "  --secret S             mint a TURN REST credential instead: username\n"
        "                         \"<now+3600>:probe\" (or TERN_PROBE_SECRET)\n"
        "  --duration S           seconds of media (default 10, at least 3: the relay infers\n"
        "                         dynamic clock rates after 2 s)\n"
        "  --timeout S            give up on allocation and ICE after S seconds (default 20)\n"
        "  --api URL              the relay's ops API (e.g. http://127.0.0.1:9641)\n"
        "  --token T              its bearer token (or TERN_TOKEN)\n"
        "  --max-loss PCT         fail when an endpoint saw more loss (percent)\n"
        "  --max-jitter-ms MS     fail when an endpoint saw more jitter\n"
        "  --max-rtt-ms MS        fail when an endpoint's RTT (median) is larger\n"
        "  --tol-loss PCT         agreement: loss difference in percentage points (default 1)\n"
        "  --tol-jitter-ms MS     agreement: jitter difference (default 3)\n"
        "  --tol-rtt-ms MS        agreement: RTT difference, endpoint vs relay path (default 5)\n"
        "  --json                 the report as JSON on stdout\n"
        "  -v, --verbose          ICE states; libnice debug with G_MESSAGES_DEBUG=all\n"
        "Progress goes to stderr; the last stderr line names the reason of a failure.\n"
        "Exit status: 0 ok; 1 quality below a threshold or the endpoints and the relay\n"
        "disagree; 2 usage; 3 relay unreachable, allocation refused, ICE failed, or the\n"
        "relay's API unreachable.\n");
}

static bool parse_double(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) return false;
    *out = v;
    return true;
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
    enum {
        O_TRANSPORT = 256,
        O_PASSWORD,
        O_SECRET,
        O_DURATION,
        O_API,
        O_TOKEN,
        O_MAXLOSS,
        O_MAXJIT,
        O_MAXRTT,
        O_TOLLOSS,
        O_TOLJIT,
        O_TOLRTT,
        O_JSON,
        O_TIMEOUT
    };
    static const struct option lo[] = {
        {"server", required_argument, NULL, 's'},
        {"user", required_argument, NULL, 'u'},
        {"transport", required_argument, NULL, O_TRANSPORT},
        {"password", required_argument, NULL, O_PASSWORD},
        {"secret", required_argument, NULL, O_SECRET},
        {"duration", required_argument, NULL, O_DURATION},
        {"api", required_argument, NULL, O_API},
        {"token", required_argument, NULL, O_TOKEN},
        {"max-loss", required_argument, NULL, O_MAXLOSS},
        {"max-jitter-ms", required_argument, NULL, O_MAXJIT},
        {"max-rtt-ms", required_argument, NULL, O_MAXRTT},
        {"tol-loss", required_argument, NULL, O_TOLLOSS},
        {"tol-jitter-ms", required_argument, NULL, O_TOLJIT},
        {"tol-rtt-ms", required_argument, NULL, O_TOLRTT},
        {"timeout", required_argument, NULL, O_TIMEOUT},
        {"json", no_argument, NULL, O_JSON},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    *o = (struct opts){.duration = 10,
                       .timeout_s = 20,
                       .max_loss = NAN,
                       .max_jitter_ms = NAN,
                       .max_rtt_ms = NAN,
                       .tol_loss = 1,
                       .tol_jitter_ms = 3,
                       .tol_rtt_ms = 5};
    int c;
    double tmo;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":s:u:vhV", lo, NULL)) != -1) {
        bool ok = true;
        switch (c) {
        case 's':
            o->server = optarg;
            break;
        case 'u':
            o->user = optarg;
            break;
        case O_TRANSPORT:
            ok = strcmp(optarg, "udp") == 0 || strcmp(optarg, "tcp") == 0;
            o->tcp = strcmp(optarg, "tcp") == 0;
            break;
        case O_PASSWORD:
            g_free(o->password);
            o->password = g_strdup(optarg);
            memset(optarg, 'x', strlen(optarg)); /* out of ps from now on */
            break;
        case O_SECRET:
            g_free(o->secret);
            o->secret = g_strdup(optarg);
            memset(optarg, 'x', strlen(optarg));
            break;
        case O_DURATION:
            ok = parse_double(optarg, 3, 86400, &o->duration);
            break;
        case O_TIMEOUT:
            ok = parse_double(optarg, 1, 3600, &tmo);
            o->timeout_s = (guint)tmo;
            break;
        case O_API:
            o->api = optarg;
            break;
        case O_TOKEN:
            g_free(o->token);
            o->token = g_strdup(optarg);
            memset(optarg, 'x', strlen(optarg));
            break;
        case O_MAXLOSS:
            ok = parse_double(optarg, -100, 100, &o->max_loss);
            break;
        case O_MAXJIT:
            ok = parse_double(optarg, 0, 1e6, &o->max_jitter_ms);
            break;
        case O_MAXRTT:
            ok = parse_double(optarg, 0, 1e6, &o->max_rtt_ms);
            break;
        case O_TOLLOSS:
            ok = parse_double(optarg, 0, 100, &o->tol_loss);
            break;
        case O_TOLJIT:
            ok = parse_double(optarg, 0, 1e6, &o->tol_jitter_ms);
            break;
        case O_TOLRTT:
            ok = parse_double(optarg, 0, 1e6, &o->tol_rtt_ms);
            break;
        case O_JSON:
            o->json = TRUE;
            break;
        case 'v':
            o->verbose = TRUE;
            break;
        case 'h':
            usage(stdout);
            exit(EXIT_OK);
        case 'V':
            printf("ternprobe %s\n", TERN_VERSION);
            exit(EXIT_OK);
        case ':':
            fprintf(stderr, "ternprobe: option '%s' needs a value\n", argv[optind - 1]);
            return -1;
        default:
            fprintf(stderr, "ternprobe: unknown option '%s'\n", argv[optind - 1]);
            return -1;
        }
        if (!ok) {
            fprintf(stderr, "ternprobe: bad value for %s\n", argv[optind - 1]);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "ternprobe: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (!o->password && getenv("TERN_PROBE_PASSWORD"))
        o->password = g_strdup(getenv("TERN_PROBE_PASSWORD"));
    if (!o->secret && getenv("TERN_PROBE_SECRET"))
        o->secret = g_strdup(getenv("TERN_PROBE_SECRET"));
    if (!o->token && getenv("TERN_TOKEN") && *getenv("TERN_TOKEN"))
        o->token = g_strdup(getenv("TERN_TOKEN"));
    if (!o->server) {
        fprintf(stderr, "ternprobe: --server HOST:PORT is required\n");
        return -1;
    }
    if (o->secret && (o->user || o->password)) {
        fprintf(stderr, "ternprobe: --secret excludes --user/--password\n");
        return -1;
    }
    if (!o->secret && (!o->user || !o->password)) {
        fprintf(stderr, "ternprobe: --user and --password (or --secret) are required\n");
        return -1;
    }
    if (o->api && strncmp(o->api, "http://", 7) != 0 && strncmp(o->api, "https://", 8) != 0) {
        fprintf(stderr, "ternprobe: --api wants an http:// or https:// URL\n");
        return -1;
    }
    /* HOST:PORT, [v6]:PORT */
    const char *colon = strrchr(o->server, ':');
    char host[NI_MAXHOST];
    guint port = 0;
    char *end;
    if (!colon || colon == o->server || (size_t)(colon - o->server) >= sizeof host) {
        fprintf(stderr, "ternprobe: --server wants HOST:PORT, not '%s'\n", o->server);
        return -1;
    }
    memcpy(host, o->server, (size_t)(colon - o->server));
    host[colon - o->server] = '\0';
    unsigned long pv = strtoul(colon + 1, &end, 10);
    if (*end || pv == 0 || pv > 65535) {
        fprintf(stderr, "ternprobe: --server port must be 1-65535\n");
        return -1;
    }
    port = (guint)pv;
    if (host[0] == '[' && host[strlen(host) - 1] == ']') {
        memmove(host, host + 1, strlen(host));
        host[strlen(host) - 1] = '\0';
    }
    struct addrinfo hints = {.ai_socktype = SOCK_DGRAM}, *res = NULL;
    int e = getaddrinfo(host, NULL, &hints, &res);
    if (e) {
        fprintf(stderr, "ternprobe: cannot resolve %s: %s\n", host, gai_strerror(e));
        return -1;
    }
    e = getnameinfo(res->ai_addr, res->ai_addrlen, o->server_ip, sizeof o->server_ip, NULL, 0,
                    NI_NUMERICHOST);
    freeaddrinfo(res);
    if (e) return -1;
    o->port = port;
    if (o->secret) { /* TURN REST API: "<expiry>:probe", base64(HMAC-SHA1(secret, username)) */
        snprintf(o->rest_user, sizeof o->rest_user, "%" G_GINT64_FORMAT ":probe",
                 g_get_real_time() / 1000000 + 3600);
        gsize dlen = 20;
        guint8 digest[20];
        GHmac *h = g_hmac_new(G_CHECKSUM_SHA1, (const guchar *)o->secret, strlen(o->secret));
        g_hmac_update(h, (const guchar *)o->rest_user, -1);
        g_hmac_get_digest(h, digest, &dlen);
        g_hmac_unref(h);
        o->password = g_base64_encode(digest, dlen);
    }
    return 0;
}

static void free_secret(char *s)
{
    if (s) {
        memset(s, 0, strlen(s));
        g_free(s);
    }
}

int main(int argc, char **argv)
{
    struct probe p = {0};
    t0_us = g_get_monotonic_time();
    if (parse_opts(argc, argv, &p.o) < 0) {
        fprintf(stderr, "Try 'ternprobe --help'.\n");
        return EXIT_USAGE;
    }
    if (p.o.verbose)
        nice_debug_enable(TRUE);
    else
        nice_debug_disable(TRUE);
    if (srtp_init() != srtp_err_status_ok || curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "ternprobe: cannot initialize libsrtp or libcurl\n");
        return EXIT_REACH;
    }
    p.a.other = &p.b;
    p.b.other = &p.a;
    for (int k = 0; k < NKIND; k++)
        p.a.in[k].clock = p.b.in[k].clock = k == AUDIO ? AUDIO_CLOCK : VIDEO_CLOCK;
    p.t_start = g_get_monotonic_time();
    p.loop = g_main_loop_new(NULL, FALSE);
    progress("relay %s:%u over %s, user %s", p.o.server_ip, p.o.port, p.o.tcp ? "tcp" : "udp",
             p.o.secret ? p.o.rest_user : p.o.user);
    if (!side_init(&p, &p.a, "a", TRUE) || !side_init(&p, &p.b, "b", FALSE)) {
        fail_run(&p, EXIT_REACH, "cannot set up the libnice agents");
    } else {
        for (int k = 0; k < NKIND; k++) { /* each side knows the other's SSRCs (in-process "SDP") */
            p.a.in[k].ssrc = p.b.out[k].ssrc;
            p.b.in[k].ssrc = p.a.out[k].ssrc;
        }
        p.timeout_source = g_timeout_add_seconds(p.o.timeout_s, on_timeout, &p);
        if (!nice_agent_gather_candidates(p.a.agent, p.a.stream) ||
            !nice_agent_gather_candidates(p.b.agent, p.b.stream))
            fail_run(&p, EXIT_REACH, "cannot start gathering candidates");
        else
            g_main_loop_run(p.loop);
    }

    json_t *rep = NULL;
    GString *why = g_string_new(NULL);
    if (!p.failure) {
        json_t *det_a = NULL, *det_b = NULL;
        bool api_ok = true;
        if (p.o.api) { /* before closing: the allocations must still exist */
            char w[WHY_LEN];
            int code;
            json_t *list = api_get(&p.o, "/api/v1/allocations", w, &code);
            if (list) det_a = relay_detail(&p.o, list, p.a.local_relay, w, &code);
            if (det_a) det_b = relay_detail(&p.o, list, p.b.local_relay, w, &code);
            json_decref(list);
            if (!det_a || !det_b) {
                reason(&p, code, why, "%s", w);
                api_ok = false;
            }
        }
        if (api_ok) {
            rep = verdict(&p, det_a, det_b, why);
            if (p.o.json) {
                json_object_set_new(rep, "result", json_string(p.exit_code ? "fail" : "ok"));
                json_object_set_new(rep, "reason", why->len ? json_string(why->str) : json_null());
                json_dumpf(rep, stdout, JSON_INDENT(2));
                fputc('\n', stdout);
            }
        }
        json_decref(det_a);
        json_decref(det_b);
    }
    close_agents(&p);
    g_main_loop_unref(p.loop);
    json_decref(rep);
    int rc = p.exit_code;
    if (p.failure) {
        fprintf(stderr, "ternprobe: FAIL: %s\n", p.failure);
        g_free(p.failure);
    } else if (rc) {
        fprintf(stderr, "ternprobe: FAIL: %s\n", why->str);
    } else {
        fprintf(stderr, "ternprobe: ok%s\n", p.o.api ? ": endpoints and relay agree" : "");
    }
    g_string_free(why, TRUE);
    free_secret(p.o.password);
    free_secret(p.o.secret);
    free_secret(p.o.token);
    curl_global_cleanup();
    srtp_shutdown();
    return rc;
}
