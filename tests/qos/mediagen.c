/* mediagen.c: tern-mediagen, the QoS ground-truth traffic generator. One process is both the
 * TURN client (long-term credentials, Allocate over UDP, CreatePermission and ChannelBind to
 * its own peer socket) and that peer. It sends real SRTP (libsrtp2, AES_CM_128_HMAC_SHA1_80,
 * a fixed test master key) both ways: client->peer as ChannelData (ingress leg "client" at the
 * relay) and peer->relayed address (ingress leg "peer"), with scripted impairments applied by
 * the generator itself from a seeded PRNG, plus ICE-style STUN Binding transactions whose
 * answers are delayed by a configured time (leg RTT ground truth).
 *
 * Everything actually put on the wire is logged as one JSON line (time = CLOCK_REALTIME taken
 * right before sendto), every scripted drop too; qosref.py computes the expected relay
 * statistics from that log. See usage() for the options and tests/qos/README.md. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <srtp2/srtp.h>

#include "addr.h"
#include "stun.h"

#define MAX_STREAMS  16
#define MAX_PAYLOAD  1400
#define CHANNEL      0x4000
#define SRTP_TAG_LEN 10
#define NS           1000000000LL
#define MS           1000000LL
#define CLEAN_START  8 /* first packets of a stream never impaired (they pass probation) */

enum dir { DIR_CLIENT = 0, DIR_PEER = 1 }; /* the sender side = the ingress leg at the relay */
static const char *const dir_names[] = {"client", "peer"};
enum profile { PROF_AUDIO, PROF_VIDEO, PROF_RANDOM };
static const char *const profile_names[] = {"audio", "video", "random"};
enum jitter_kind { JIT_NONE, JIT_UNIFORM, JIT_NORMAL };
enum first_byte { FIRST_OTHER, FIRST_ANY, FIRST_RTP };

/* One scripted stream (--stream DIR:PROFILE[,key=value...]). */
struct spec {
    enum dir dir;
    enum profile profile;
    uint32_t ssrc, seq0, ts0;
    int have_ssrc, have_seq, have_ts;
    double drop, burst_p, dup, swap, hold_p;
    int burst_len, hold_k;
    enum jitter_kind jitter;
    double jitter_ms;
    int keep_order;
    double ssrc_change_s, restart_s, start_s;
    double bad_from_s, bad_to_s; /* impairments only in [from, to) s; to 0: always */
    enum first_byte first;
};

/* One packet the stream would send (in nominal order), protected once. */
struct pkt {
    int64_t t_nom; /* ns after the start */
    uint8_t dir, pt, marker, profile, dropped;
    uint32_t ssrc, ts;
    uint16_t seq;
    uint16_t len;
    uint8_t *data;
};

/* One datagram to send: a packet (or a copy of it) at a time. */
struct send {
    int64_t t;
    int pkt;
    uint8_t dup;
};

enum ev_type { EV_MEDIA, EV_STUN_REQ, EV_STUN_RESP };
struct ev {
    int64_t t; /* ns, CLOCK_MONOTONIC */
    uint64_t order;
    int type;
    int idx;
};

/* A delayed Binding response: who answers (the side that received the request), to what. */
struct resp {
    enum dir from;
    uint8_t tid[STUN_TID_LEN];
};

static struct {
    struct spec specs[MAX_STREAMS];
    int nspecs;
    double duration;
    uint64_t seed;
    double peer_delay_ms, client_delay_ms, stun_interval_ms;
    double hold_s;
    int keep;
    const char *user, *password, *realm_arg, *server, *logpath;
    const char *peer_netns, *peer_ip; /* the peer socket's network namespace and address */
} opt = {
    .duration = 4, .seed = 1, .peer_delay_ms = -1, .client_delay_ms = -1, .stun_interval_ms = 1000};

static struct pkt *pkts;
static size_t npkts, cappkts;
static struct send *sends;
static size_t nsends, capsends;
static struct ev *heap;
static size_t nheap, capheap;
static uint64_t ev_order;
static struct resp *resps;
static size_t nresps, capresps;

static FILE *glog;
static int cfd = -1, pfd = -1; /* client socket (to ternd), peer socket */
static union stun_addr server_addr, relayed, peer_addr, client_addr;
static char realm[STUN_MAX_TEXT_BYTES + 1], nonce[STUN_MAX_TEXT_BYTES + 1];
static uint8_t key[16];
static int have_nonce;
static volatile sig_atomic_t got_release;

/* Counters for the summary. */
static uint64_t sent_pkts[2], sent_bytes[2], dropped[2], dups[2], recv_media[2], stun_req[2],
    stun_answered[2];

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("tern-mediagen: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void *grow(void *p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return p;
    size_t n = *cap ? *cap * 2 : 256;
    while (n < need)
        n *= 2;
    void *q = realloc(p, n * elem);
    if (!q) die("out of memory");
    *cap = n;
    return q;
}

/* ---- PRNG: splitmix64, seeded; every random choice of a run comes from it ---- */
static uint64_t rng_state;
static uint64_t rng_next(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static double rng_unit(void) /* [0, 1) */
{
    return (double)(rng_next() >> 11) / 9007199254740992.0;
}
static int rng_range(int lo, int hi) /* [lo, hi] */
{
    return lo + (int)(rng_next() % (uint64_t)(hi - lo + 1));
}
static double rng_normal(void)
{
    double u1 = rng_unit(), u2 = rng_unit();
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NS + ts.tv_nsec;
}
static int64_t real_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * NS + ts.tv_nsec;
}

static void tid_hex(const uint8_t *tid, char out[2 * STUN_TID_LEN + 1])
{
    for (int i = 0; i < STUN_TID_LEN; i++)
        sprintf(out + 2 * i, "%02x", tid[i]);
}

/* ---- Options ---- */

static double parse_num(const char *what, const char *s)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end) die("%s: not a number: '%s'", what, s);
    return v;
}

/* PCT:N pairs (burst=5:3, hold=2:4). */
static void parse_pair(const char *what, const char *s, double *pct, int *n)
{
    const char *colon = strchr(s, ':');
    if (!colon) die("%s: want PERCENT:COUNT, got '%s'", what, s);
    char tmp[64];
    snprintf(tmp, sizeof(tmp), "%.*s", (int)(colon - s), s);
    *pct = parse_num(what, tmp);
    *n = (int)parse_num(what, colon + 1);
    if (*n < 1 || *n > 1000) die("%s: count out of range", what);
}

static void parse_stream(const char *arg)
{
    if (opt.nspecs == MAX_STREAMS) die("too many --stream options (max %d)", MAX_STREAMS);
    struct spec *s = &opt.specs[opt.nspecs++];
    memset(s, 0, sizeof(*s));
    s->ssrc_change_s = s->restart_s = -1;
    s->keep_order = 1;
    char buf[512];
    snprintf(buf, sizeof(buf), "%s", arg);
    char *save = NULL, *tok = strtok_r(buf, ",", &save);
    char *colon = tok ? strchr(tok, ':') : NULL;
    if (!colon) die("--stream %s: want DIR:PROFILE[,key=value...]", arg);
    *colon = 0;
    if (!strcmp(tok, "client"))
        s->dir = DIR_CLIENT;
    else if (!strcmp(tok, "peer"))
        s->dir = DIR_PEER;
    else
        die("--stream %s: direction must be client or peer", arg);
    const char *prof = colon + 1;
    if (!strcmp(prof, "audio"))
        s->profile = PROF_AUDIO;
    else if (!strcmp(prof, "video"))
        s->profile = PROF_VIDEO;
    else if (!strcmp(prof, "random"))
        s->profile = PROF_RANDOM;
    else
        die("--stream %s: profile must be audio, video or random", arg);
    while ((tok = strtok_r(NULL, ",", &save))) {
        char *eq = strchr(tok, '=');
        if (!eq) die("--stream %s: '%s' is not key=value", arg, tok);
        *eq = 0;
        const char *k = tok, *v = eq + 1;
        if (!strcmp(k, "ssrc"))
            s->ssrc = (uint32_t)strtoul(v, NULL, 0), s->have_ssrc = 1;
        else if (!strcmp(k, "seq"))
            s->seq0 = (uint32_t)strtoul(v, NULL, 0) & 0xFFFF, s->have_seq = 1;
        else if (!strcmp(k, "ts"))
            s->ts0 = (uint32_t)strtoul(v, NULL, 0), s->have_ts = 1;
        else if (!strcmp(k, "drop"))
            s->drop = parse_num(k, v) / 100;
        else if (!strcmp(k, "burst"))
            parse_pair(k, v, &s->burst_p, &s->burst_len), s->burst_p /= 100;
        else if (!strcmp(k, "dup"))
            s->dup = parse_num(k, v) / 100;
        else if (!strcmp(k, "swap"))
            s->swap = parse_num(k, v) / 100;
        else if (!strcmp(k, "hold"))
            parse_pair(k, v, &s->hold_p, &s->hold_k), s->hold_p /= 100;
        else if (!strcmp(k, "jitter")) {
            if (!strncmp(v, "uniform:", 8))
                s->jitter = JIT_UNIFORM, s->jitter_ms = parse_num(k, v + 8);
            else if (!strncmp(v, "normal:", 7))
                s->jitter = JIT_NORMAL, s->jitter_ms = parse_num(k, v + 7);
            else
                die("jitter: want uniform:MS or normal:MS");
        } else if (!strcmp(k, "order")) {
            if (!strcmp(v, "keep"))
                s->keep_order = 1;
            else if (!strcmp(v, "free"))
                s->keep_order = 0;
            else
                die("order: keep or free");
        } else if (!strcmp(k, "ssrc_change"))
            s->ssrc_change_s = parse_num(k, v);
        else if (!strcmp(k, "restart"))
            s->restart_s = parse_num(k, v);
        else if (!strcmp(k, "start"))
            s->start_s = parse_num(k, v);
        else if (!strcmp(k, "window")) {
            char *colon2 = strchr(v, ':');
            if (!colon2) die("window=FROM:TO (seconds)");
            *colon2 = 0;
            s->bad_from_s = parse_num(k, v);
            s->bad_to_s = parse_num(k, colon2 + 1);
            if (!(s->bad_to_s > s->bad_from_s) || s->bad_from_s < 0)
                die("window=FROM:TO wants 0 <= FROM < TO");
        } else if (!strcmp(k, "first")) {
            if (!strcmp(v, "other"))
                s->first = FIRST_OTHER;
            else if (!strcmp(v, "any"))
                s->first = FIRST_ANY;
            else if (!strcmp(v, "rtp"))
                s->first = FIRST_RTP;
            else
                die("first: other, any or rtp");
        } else
            die("--stream %s: unknown key '%s'", arg, k);
    }
}

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: tern-mediagen --server IP:PORT --user U --password P --log FILE [options]\n"
            "  --realm R             require this realm in the 401 (default: take the server's)\n"
            "  --duration S          seconds of media (default 4)\n"
            "  --seed N              PRNG seed (default 1)\n"
            "  --stream DIR:PROFILE[,key=value...]   (repeatable)\n"
            "       DIR client (client->peer over the channel, ingress leg client) or peer\n"
            "       PROFILE audio (PT 111, 48 kHz, 20 ms, 80-160 B), video (PT 96, 90 kHz,\n"
            "         30 fps, 3-7 packets per frame over ~5 ms, marker on the last),\n"
            "         random (64 Hz, 60-200 random bytes, never RTP)\n"
            "       ssrc=N seq=N ts=N     start values (default random)\n"
            "       drop=PCT              random drops\n"
            "       burst=PCT:LEN         a burst of LEN drops starts with probability PCT\n"
            "       dup=PCT               send a copy 0.1 ms later\n"
            "       swap=PCT              swap with the next packet\n"
            "       hold=PCT:K            hold back: send after the K-th following packet\n"
            "       jitter=uniform:A      delay each send by U[0, 2A] ms (i.e. +-A)\n"
            "       jitter=normal:S       delay by 3S + S*N(0,1) ms, clamped to [0, 6S]\n"
            "       order=keep|free       keep (default) or not the send order under jitter\n"
            "       ssrc_change=S restart=S   new SSRC (and seq/ts) / seq jump of 5000 at S s\n"
            "       start=S               start S s after the others\n"
            "       window=FROM:TO        drops, bursts and jitter only for packets due in [FROM, "
            "TO) s\n"
            "       first=other|any|rtp   random profile: first byte 4-15 (class other),\n"
            "                             anything, or 128-191 (looks like RTP v2)\n"
            "  --peer-delay MS       client sends Binding requests to the peer every\n"
            "                        --stun-interval; the peer answers after MS (peer-leg RTT)\n"
            "  --client-delay MS     peer sends Binding requests; the client answers after MS\n"
            "  --stun-interval MS    default 1000\n"
            "  --hold S              after the media, log \"holding\" and keep the allocation\n"
            "                        until SIGUSR1 or S seconds, then delete it\n"
            "  --keep                never delete the allocation (let it expire)\n"
            "  --peer-ip IP          the peer socket's IPv4 address (default 127.0.0.1)\n"
            "  --peer-netns NAME     make the peer socket in network namespace NAME\n"
            "                        (ip netns): client and peer on two sides of the relay\n");
}

/* ---- Traffic plan ---- */

static const uint8_t master_key[30] = {0xe1, 0xf9, 0x7a, 0x0d, 0x3e, 0x01, 0x8b, 0xe0, 0xd6, 0x4f,
                                       0xa3, 0x2c, 0x06, 0xde, 0x41, 0x39, 0x0e, 0xc6, 0x75, 0xad,
                                       0x49, 0x8a, 0xfe, 0xeb, 0xb6, 0x96, 0x0b, 0x3a, 0xab, 0xe6};
static srtp_t srtp_sess[2];

static void srtp_setup(void)
{
    if (srtp_init() != srtp_err_status_ok) die("srtp_init failed");
    for (int d = 0; d < 2; d++) {
        srtp_policy_t pol;
        memset(&pol, 0, sizeof(pol));
        srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&pol.rtp);
        srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&pol.rtcp);
        pol.ssrc.type = ssrc_any_outbound;
        pol.key = (unsigned char *)master_key;
        pol.window_size = 1024;
        pol.allow_repeat_tx = 1;
        if (srtp_create(&srtp_sess[d], &pol) != srtp_err_status_ok) die("srtp_create failed");
    }
}

static struct pkt *new_pkt(void)
{
    pkts = grow(pkts, &cappkts, npkts + 1, sizeof(*pkts));
    struct pkt *p = &pkts[npkts++];
    memset(p, 0, sizeof(*p));
    return p;
}

/* Build and protect one RTP packet. */
static void make_rtp(struct pkt *p, int payload_len)
{
    uint8_t buf[MAX_PAYLOAD + SRTP_MAX_TRAILER_LEN];
    buf[0] = 0x80;
    buf[1] = (uint8_t)((p->marker ? 0x80 : 0) | p->pt);
    buf[2] = (uint8_t)(p->seq >> 8);
    buf[3] = (uint8_t)p->seq;
    for (int i = 0; i < 4; i++)
        buf[4 + i] = (uint8_t)(p->ts >> (24 - 8 * i));
    for (int i = 0; i < 4; i++)
        buf[8 + i] = (uint8_t)(p->ssrc >> (24 - 8 * i));
    for (int i = 0; i < payload_len; i++)
        buf[12 + i] = (uint8_t)rng_next();
    int len = 12 + payload_len;
    srtp_err_status_t st = srtp_protect(srtp_sess[p->dir], buf, &len);
    if (st != srtp_err_status_ok) die("srtp_protect failed (%d)", (int)st);
    p->len = (uint16_t)len;
    p->data = malloc((size_t)len);
    if (!p->data) die("out of memory");
    memcpy(p->data, buf, (size_t)len);
}

static void make_random(struct pkt *p, enum first_byte first)
{
    p->len = (uint16_t)rng_range(60, 200);
    p->data = malloc(p->len);
    if (!p->data) die("out of memory");
    for (int i = 0; i < p->len; i++)
        p->data[i] = (uint8_t)rng_next();
    if (first == FIRST_OTHER)
        p->data[0] = (uint8_t)rng_range(4, 15);
    else if (first == FIRST_RTP)
        p->data[0] = (uint8_t)rng_range(128, 191);
}

/* The nominal packets of one stream, in order; returns the index of its first packet. */
static size_t plan_stream(const struct spec *s)
{
    size_t first = npkts;
    uint32_t ssrc = s->have_ssrc ? s->ssrc : (uint32_t)rng_next();
    uint16_t seq = (uint16_t)(s->have_seq ? s->seq0 : rng_next());
    uint32_t ts = s->have_ts ? s->ts0 : (uint32_t)rng_next();
    int64_t start = (int64_t)(s->start_s * NS), end = (int64_t)(opt.duration * NS);
    int changed = 0, restarted = 0;
    if (s->profile == PROF_RANDOM) {
        for (int64_t t = start; t < end; t += NS / 64) {
            struct pkt *p = new_pkt();
            p->t_nom = t;
            p->dir = (uint8_t)s->dir;
            p->profile = PROF_RANDOM;
            make_random(p, s->first);
        }
        return first;
    }
    int audio = s->profile == PROF_AUDIO;
    int64_t step = audio ? 20 * MS : NS / 30;
    uint32_t ts_step = audio ? 960 : 3000;
    for (int64_t t = start, n = 0; t < end; t += step, n++) {
        if (s->ssrc_change_s >= 0 && !changed && t >= (int64_t)(s->ssrc_change_s * NS)) {
            changed = 1;
            ssrc = (uint32_t)rng_next();
            seq = (uint16_t)rng_next();
            ts = (uint32_t)rng_next();
        }
        if (s->restart_s >= 0 && !restarted && t >= (int64_t)(s->restart_s * NS)) {
            restarted = 1;
            seq = (uint16_t)(seq + 5000);
        }
        int k = audio ? 1 : rng_range(3, 7);
        for (int i = 0; i < k; i++) {
            struct pkt *p = new_pkt();
            p->t_nom = t + (k > 1 ? (int64_t)i * 5 * MS / (k - 1) : 0);
            p->dir = (uint8_t)s->dir;
            p->profile = (uint8_t)s->profile;
            p->pt = audio ? 111 : 96;
            p->marker = audio ? (n == 0) : (i == k - 1);
            p->ssrc = ssrc;
            p->seq = seq++;
            p->ts = ts;
            make_rtp(p, audio ? rng_range(80, 160)
                              : (i == k - 1 ? rng_range(200, 1000) : rng_range(900, 1150)));
        }
        ts += ts_step;
    }
    return first;
}

static void add_send(int pkt, int64_t t, int dup)
{
    sends = grow(sends, &capsends, nsends + 1, sizeof(*sends));
    sends[nsends++] = (struct send){.t = t, .pkt = pkt, .dup = (uint8_t)dup};
}

static void log_drop(const struct pkt *p)
{
    if (p->profile == PROF_RANDOM) {
        fprintf(glog, "{\"ev\":\"drop\",\"dir\":\"%s\",\"class\":\"raw\",\"t_nom\":%lld}\n",
                dir_names[p->dir], (long long)p->t_nom);
        return;
    }
    fprintf(glog,
            "{\"ev\":\"drop\",\"dir\":\"%s\",\"kind\":\"%s\",\"ssrc\":%u,\"seq\":%u,\"ts\":%u,"
            "\"pt\":%u,\"m\":%u,\"size\":%u,\"t_nom\":%lld}\n",
            dir_names[p->dir], profile_names[p->profile], p->ssrc, p->seq, p->ts, p->pt, p->marker,
            p->len, (long long)p->t_nom);
}

/* Impairments of one stream: drops, jitter, swaps, hold-backs, duplicates -> sends. */
static void impair_stream(const struct spec *s, size_t first, size_t last)
{
    size_t base = nsends;
    int burst_left = 0;
    int64_t prev = INT64_MIN;
    for (size_t i = first; i < last; i++) {
        struct pkt *p = &pkts[i];
        int drop = 0, clean = i - first < CLEAN_START; /* the first packets confirm the stream */
        if (s->bad_to_s > 0 &&
            (p->t_nom < (int64_t)(s->bad_from_s * NS) || p->t_nom >= (int64_t)(s->bad_to_s * NS)))
            clean = 1;
        if (!clean && burst_left > 0)
            drop = 1, burst_left--;
        else if (!clean && s->burst_p > 0 && rng_unit() < s->burst_p)
            drop = 1, burst_left = s->burst_len - 1;
        else if (!clean && s->drop > 0 && rng_unit() < s->drop)
            drop = 1;
        if (drop) {
            p->dropped = 1;
            dropped[p->dir]++;
            log_drop(p);
            continue;
        }
        int64_t d = 0;
        if (!clean && s->jitter == JIT_UNIFORM)
            d = (int64_t)(rng_unit() * 2 * s->jitter_ms * MS);
        else if (!clean && s->jitter == JIT_NORMAL) {
            double v = 3 * s->jitter_ms + s->jitter_ms * rng_normal();
            if (v < 0) v = 0;
            if (v > 6 * s->jitter_ms) v = 6 * s->jitter_ms;
            d = (int64_t)(v * MS);
        }
        int64_t t = p->t_nom + d;
        if (s->keep_order && t < prev) t = prev;
        prev = t;
        add_send((int)i, t, 0);
    }
    size_t n = nsends - base;
    for (size_t i = CLEAN_START; i + 1 < n; i++) {
        if (s->swap > 0 && rng_unit() < s->swap) {
            int64_t t = sends[base + i].t;
            sends[base + i].t = sends[base + i + 1].t + 1000; /* 1 us after the next one */
            sends[base + i + 1].t = t;
            i++;
        } else if (s->hold_p > 0 && i + (size_t)s->hold_k < n && rng_unit() < s->hold_p) {
            sends[base + i].t = sends[base + i + s->hold_k].t + 1000;
        }
    }
    if (s->dup > 0) {
        for (size_t i = CLEAN_START; i < n; i++) {
            if (rng_unit() < s->dup) {
                add_send(sends[base + i].pkt, sends[base + i].t + 100000, 1);
                dups[s->dir]++;
            }
        }
    }
}

/* ---- Event heap (time, then insertion order: a stable schedule) ---- */

static int ev_less(const struct ev *a, const struct ev *b)
{
    return a->t < b->t || (a->t == b->t && a->order < b->order);
}

static void ev_push(int64_t t, int type, int idx)
{
    heap = grow(heap, &capheap, nheap + 1, sizeof(*heap));
    size_t i = nheap++;
    heap[i] = (struct ev){.t = t, .order = ev_order++, .type = type, .idx = idx};
    while (i > 0 && ev_less(&heap[i], &heap[(i - 1) / 2])) {
        struct ev tmp = heap[i];
        heap[i] = heap[(i - 1) / 2];
        heap[(i - 1) / 2] = tmp;
        i = (i - 1) / 2;
    }
}

static struct ev ev_pop(void)
{
    struct ev top = heap[0];
    heap[0] = heap[--nheap];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < nheap && ev_less(&heap[l], &heap[m])) m = l;
        if (r < nheap && ev_less(&heap[r], &heap[m])) m = r;
        if (m == i) break;
        struct ev tmp = heap[i];
        heap[i] = heap[m];
        heap[m] = tmp;
        i = m;
    }
    return top;
}

/* ---- Wire ---- */

/* Send a payload from one side: the client wraps it in ChannelData to ternd, the peer sends
 * it raw to the relayed address. Returns the CLOCK_REALTIME taken right before sendto. */
static int64_t wire_send(enum dir from, const uint8_t *data, size_t len)
{
    uint8_t buf[MAX_PAYLOAD + 64];
    int64_t t;
    ssize_t k;
    if (from == DIR_CLIENT) {
        int n = stun_chdata_encode(buf, sizeof(buf), CHANNEL, data, (uint16_t)len, false);
        if (n < 0) die("ChannelData encode: %s", stun_strerror(n));
        t = real_ns();
        k = send(cfd, buf, (size_t)n, 0);
    } else {
        t = real_ns();
        k = sendto(pfd, data, len, 0, &relayed.sa, addr_len(&relayed));
    }
    if (k < 0) die("send (%s side): %s", dir_names[from], strerror(errno));
    sent_pkts[from]++;
    sent_bytes[from] += len;
    return t;
}

static void send_media(const struct send *sd)
{
    const struct pkt *p = &pkts[sd->pkt];
    int64_t t = wire_send((enum dir)p->dir, p->data, p->len);
    if (p->profile == PROF_RANDOM) {
        fprintf(glog,
                "{\"ev\":\"tx\",\"dir\":\"%s\",\"class\":\"raw\",\"b0\":%u,\"b1\":%u,\"size\":%u,"
                "\"t\":%lld}\n",
                dir_names[p->dir], p->data[0], p->data[1], p->len, (long long)t);
        return;
    }
    fprintf(
        glog,
        "{\"ev\":\"tx\",\"dir\":\"%s\",\"class\":\"rtp\",\"kind\":\"%s\",\"ssrc\":%u,\"seq\":%u,"
        "\"ts\":%u,\"pt\":%u,\"m\":%u,\"size\":%u,\"dup\":%u,\"t\":%lld}\n",
        dir_names[p->dir], profile_names[p->profile], p->ssrc, p->seq, p->ts, p->pt, p->marker,
        p->len, sd->dup, (long long)t);
}

/* An ICE-style Binding request (USERNAME, PRIORITY, ICE-CONTROLLING, FINGERPRINT). */
static void send_stun_request(enum dir from)
{
    uint8_t tid[STUN_TID_LEN], buf[256];
    for (int i = 0; i < STUN_TID_LEN; i++)
        tid[i] = (uint8_t)rng_next();
    struct stun_enc e;
    stun_enc_init(&e, buf, sizeof(buf), stun_type(STUN_BINDING, STUN_REQUEST), tid);
    stun_enc_attr(&e, STUN_ATTR_USERNAME, from == DIR_CLIENT ? "remote:local" : "local:remote", 12);
    stun_enc_u32(&e, STUN_ATTR_PRIORITY, 0x6e7f1eff);
    stun_enc_u64(&e, STUN_ATTR_ICE_CONTROLLING, rng_next());
    stun_enc_fingerprint(&e);
    int n = stun_enc_finish(&e);
    if (n < 0) die("encode Binding request: %s", stun_strerror(n));
    int64_t t = wire_send(from, buf, (size_t)n);
    char hex[2 * STUN_TID_LEN + 1];
    tid_hex(tid, hex);
    /* the request goes from `from` to the other side: the RTT it measures is the other leg's */
    fprintf(glog,
            "{\"ev\":\"tx\",\"dir\":\"%s\",\"class\":\"stun\",\"stun\":\"req\",\"leg\":\"%s\","
            "\"tid\":\"%s\",\"size\":%d,\"t\":%lld}\n",
            dir_names[from], dir_names[!from], hex, n, (long long)t);
    stun_req[!from]++;
}

static void send_stun_response(const struct resp *r)
{
    uint8_t buf[256];
    struct stun_enc e;
    stun_enc_init(&e, buf, sizeof(buf), stun_type(STUN_BINDING, STUN_SUCCESS), r->tid);
    /* the address the request came from, as ICE does (approximately: the other side's) */
    stun_enc_xor_addr(&e, STUN_ATTR_XOR_MAPPED_ADDRESS,
                      r->from == DIR_PEER ? &relayed : &peer_addr);
    stun_enc_fingerprint(&e);
    int n = stun_enc_finish(&e);
    if (n < 0) die("encode Binding response: %s", stun_strerror(n));
    int64_t t = wire_send(r->from, buf, (size_t)n);
    char hex[2 * STUN_TID_LEN + 1];
    tid_hex(r->tid, hex);
    fprintf(glog,
            "{\"ev\":\"tx\",\"dir\":\"%s\",\"class\":\"stun\",\"stun\":\"resp\",\"leg\":\"%s\","
            "\"tid\":\"%s\",\"size\":%d,\"t\":%lld}\n",
            dir_names[r->from], dir_names[r->from], hex, n, (long long)t);
}

/* A payload arrived at side `at` (it was sent by the other side, through the relay). */
static void on_payload(enum dir at, const uint8_t *p, size_t len, int64_t t)
{
    if (len >= STUN_HEADER_LEN && stun_is_message(p, len)) {
        struct stun_msg m;
        if (stun_decode(&m, p, len) != 0 || stun_method_of(m.type) != STUN_BINDING) return;
        char hex[2 * STUN_TID_LEN + 1];
        tid_hex(m.tid, hex);
        if (stun_class_of(m.type) == STUN_REQUEST) {
            double delay = at == DIR_PEER ? opt.peer_delay_ms : opt.client_delay_ms;
            if (delay < 0) return;
            fprintf(glog,
                    "{\"ev\":\"rx\",\"at\":\"%s\",\"stun\":\"req\",\"tid\":\"%s\",\"t\":%lld}\n",
                    dir_names[at], hex, (long long)t);
            resps = grow(resps, &capresps, nresps + 1, sizeof(*resps));
            resps[nresps].from = at;
            memcpy(resps[nresps].tid, m.tid, STUN_TID_LEN);
            ev_push(mono_ns() + (int64_t)(delay * MS), EV_STUN_RESP, (int)nresps);
            nresps++;
        } else if (stun_class_of(m.type) == STUN_SUCCESS) {
            fprintf(glog,
                    "{\"ev\":\"rx\",\"at\":\"%s\",\"stun\":\"resp\",\"tid\":\"%s\",\"t\":%lld}\n",
                    dir_names[at], hex, (long long)t);
            stun_answered[!at]++;
        }
        return;
    }
    recv_media[!at]++;
}

/* recv with the kernel's receive time (SO_TIMESTAMPNS) in *t, so that the ground truth of an
 * answer delay starts when the request reached this host, as the relay's own measurement of
 * the leg does, and not when this process got round to reading it (under load, ms later). */
static ssize_t recv_stamped(int fd, uint8_t *buf, size_t cap, int64_t *t)
{
    union {
        uint8_t b[64];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = {.iov_base = buf, .iov_len = cap};
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b, .msg_controllen = sizeof(ctl.b)};
    ssize_t k = recvmsg(fd, &mh, MSG_DONTWAIT);
    *t = real_ns();
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); k > 0 && c; c = CMSG_NXTHDR(&mh, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
            struct timespec ts;
            memcpy(&ts, CMSG_DATA(c), sizeof(ts));
            *t = (int64_t)ts.tv_sec * NS + ts.tv_nsec;
        }
    return k;
}

static void drain(void)
{
    uint8_t buf[2048];
    for (;;) {
        int64_t t;
        ssize_t k = recv_stamped(cfd, buf, sizeof(buf), &t);
        if (k <= 0) break;
        uint16_t ch, dlen;
        const uint8_t *data;
        if (stun_chdata_decode(buf, (size_t)k, false, &ch, &data, &dlen) > 0 && ch == CHANNEL)
            on_payload(DIR_CLIENT, data, dlen, t);
    }
    for (;;) {
        int64_t t;
        ssize_t k = recv_stamped(pfd, buf, sizeof(buf), &t);
        if (k <= 0) break;
        on_payload(DIR_PEER, buf, (size_t)k, t);
    }
}

/* ---- TURN client ---- */

typedef void (*add_attrs_fn)(struct stun_enc *e, const void *arg);

/* One authenticated TURN transaction on the client socket; retries on 401/438 with the
 * server's realm and nonce and on timeouts. Returns the response class and keeps it in
 * rbuf/m. Media that arrives meanwhile is ignored. */
static int turn_txn(uint16_t method, add_attrs_fn add, const void *arg, uint8_t *rbuf, size_t rcap,
                    struct stun_msg *m)
{
    for (int round = 0; round < 4; round++) {
        uint8_t tid[STUN_TID_LEN], req[1024];
        for (int i = 0; i < STUN_TID_LEN; i++)
            tid[i] = (uint8_t)rng_next();
        struct stun_enc e;
        stun_enc_init(&e, req, sizeof(req), stun_type(method, STUN_REQUEST), tid);
        if (add) add(&e, arg);
        if (have_nonce) {
            stun_enc_attr(&e, STUN_ATTR_USERNAME, opt.user, strlen(opt.user));
            stun_enc_attr(&e, STUN_ATTR_REALM, realm, strlen(realm));
            stun_enc_attr(&e, STUN_ATTR_NONCE, nonce, strlen(nonce));
            stun_enc_integrity(&e, key, sizeof(key));
        }
        stun_enc_fingerprint(&e);
        int n = stun_enc_finish(&e);
        if (n < 0) die("encode request: %s", stun_strerror(n));
        int got = 0;
        for (int attempt = 0; attempt < 5 && !got; attempt++) {
            if (send(cfd, req, (size_t)n, 0) != n) die("send to ternd: %s", strerror(errno));
            int64_t deadline = mono_ns() + 500 * MS;
            while (!got) {
                int64_t left = deadline - mono_ns();
                if (left <= 0) break;
                struct pollfd p = {.fd = cfd, .events = POLLIN};
                if (poll(&p, 1, (int)(left / MS) + 1) <= 0) continue;
                ssize_t k = recv(cfd, rbuf, rcap, 0);
                if (k < 0) die("recv from ternd: %s", strerror(errno));
                if (!stun_is_message(rbuf, (size_t)k)) continue;
                if (stun_decode(m, rbuf, (size_t)k) != 0 || memcmp(m->tid, tid, STUN_TID_LEN))
                    continue;
                got = 1;
            }
        }
        if (!got) die("no answer from ternd at %s", opt.server);
        int cls = stun_class_of(m->type);
        if (cls != STUN_ERROR) return cls;
        const struct stun_attr *ea = stun_find(m, STUN_ATTR_ERROR_CODE);
        int code = 0;
        const char *reason = "";
        size_t rlen = 0;
        if (ea) stun_get_error(ea, &code, &reason, &rlen);
        if (code == 401 || code == 438) {
            const struct stun_attr *ra = stun_find(m, STUN_ATTR_REALM);
            const struct stun_attr *na = stun_find(m, STUN_ATTR_NONCE);
            if (!ra || !na) die("%d without REALM/NONCE", code);
            if (code == 401 && have_nonce && round > 0) die("401: wrong user or password");
            snprintf(realm, sizeof(realm), "%.*s", ra->len, (const char *)ra->val);
            snprintf(nonce, sizeof(nonce), "%.*s", na->len, (const char *)na->val);
            if (opt.realm_arg && strcmp(opt.realm_arg, realm))
                die("server realm '%s' is not --realm '%s'", realm, opt.realm_arg);
            char in[1024];
            int ilen = snprintf(in, sizeof(in), "%s:%s:%s", opt.user, realm, opt.password);
            unsigned klen = 0;
            if (!EVP_Digest(in, (size_t)ilen, key, &klen, EVP_md5(), NULL)) die("MD5 failed");
            have_nonce = 1;
            continue;
        }
        die("method 0x%03x: error %d %.*s", method, code, (int)rlen, reason);
    }
    die("method 0x%03x: too many authentication rounds", method);
}

static void add_allocate(struct stun_enc *e, const void *arg)
{
    (void)arg;
    stun_enc_u8_rffu(e, STUN_ATTR_REQUESTED_TRANSPORT, STUN_TRANSPORT_UDP);
    stun_enc_u32(e, STUN_ATTR_LIFETIME, 600);
}
static void add_peer(struct stun_enc *e, const void *arg)
{
    (void)arg;
    stun_enc_xor_addr(e, STUN_ATTR_XOR_PEER_ADDRESS, &peer_addr);
}
static void add_chbind(struct stun_enc *e, const void *arg)
{
    (void)arg;
    stun_enc_channel(e, CHANNEL);
    stun_enc_xor_addr(e, STUN_ATTR_XOR_PEER_ADDRESS, &peer_addr);
}
static void add_delete(struct stun_enc *e, const void *arg)
{
    (void)arg;
    stun_enc_u32(e, STUN_ATTR_LIFETIME, 0);
}

static void parse_hostport(const char *s, union stun_addr *a)
{
    char host[128];
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s) die("--server: want IP:PORT, got '%s'", s);
    snprintf(host, sizeof(host), "%.*s", (int)(colon - s), s);
    memset(a, 0, sizeof(*a));
    if (inet_pton(AF_INET, host, &a->v4.sin_addr) != 1)
        die("--server: IPv4 address wanted: '%s'", host);
    a->v4.sin_family = AF_INET;
    a->v4.sin_port = htons((uint16_t)atoi(colon + 1));
}

/* The peer's socket, in --peer-netns when given (a socket stays in the namespace it was made
 * in: the process goes back to its own at once). */
static int peer_socket(void)
{
    if (!opt.peer_netns) return socket(AF_INET, SOCK_DGRAM, 0);
    char path[512];
    snprintf(path, sizeof(path), "/run/netns/%s", opt.peer_netns);
    int self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    int other = open(path, O_RDONLY | O_CLOEXEC);
    if (self < 0 || other < 0) die("--peer-netns %s: %s", opt.peer_netns, strerror(errno));
    if (setns(other, CLONE_NEWNET)) die("setns %s: %s", opt.peer_netns, strerror(errno));
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (setns(self, CLONE_NEWNET)) die("setns back: %s", strerror(errno));
    close(self);
    close(other);
    return fd;
}

static void setup_turn(void)
{
    uint8_t rbuf[2048];
    struct stun_msg m;
    cfd = socket(AF_INET, SOCK_DGRAM, 0);
    pfd = peer_socket();
    if (cfd < 0 || pfd < 0) die("socket: %s", strerror(errno));
    int big = 4 << 20;
    setsockopt(cfd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
    setsockopt(pfd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
    int one = 1; /* kernel receive times for the ground truth (recv_stamped) */
    setsockopt(cfd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof(one));
    setsockopt(pfd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof(one));
    union stun_addr lo = {.v4 = {.sin_family = AF_INET}};
    lo.v4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (opt.peer_ip && inet_pton(AF_INET, opt.peer_ip, &lo.v4.sin_addr) != 1)
        die("--peer-ip: IPv4 address wanted: '%s'", opt.peer_ip);
    if (bind(pfd, &lo.sa, sizeof(lo.v4)) < 0) die("bind peer: %s", strerror(errno));
    socklen_t sl = sizeof(peer_addr);
    getsockname(pfd, &peer_addr.sa, &sl);
    if (connect(cfd, &server_addr.sa, addr_len(&server_addr)) < 0)
        die("connect: %s", strerror(errno));
    sl = sizeof(client_addr);
    getsockname(cfd, &client_addr.sa, &sl);

    if (turn_txn(STUN_ALLOCATE, add_allocate, NULL, rbuf, sizeof(rbuf), &m) != STUN_SUCCESS)
        die("Allocate failed");
    const struct stun_attr *ra = stun_find(&m, STUN_ATTR_XOR_RELAYED_ADDRESS);
    if (!ra || stun_get_xor_addr(&m, ra, &relayed) != 0) die("Allocate: no XOR-RELAYED-ADDRESS");
    if (turn_txn(STUN_CREATE_PERMISSION, add_peer, NULL, rbuf, sizeof(rbuf), &m) != STUN_SUCCESS)
        die("CreatePermission failed");
    if (turn_txn(STUN_CHANNEL_BIND, add_chbind, NULL, rbuf, sizeof(rbuf), &m) != STUN_SUCCESS)
        die("ChannelBind failed");
    char a[ADDR_STRLEN], b[ADDR_STRLEN], c[ADDR_STRLEN];
    fprintf(glog,
            "{\"ev\":\"alloc\",\"relayed\":\"%s\",\"client\":\"%s\",\"peer\":\"%s\",\"channel\":%d,"
            "\"realm\":\"%s\",\"user\":\"%s\",\"t\":%lld}\n",
            addr_str(&relayed, a), addr_str(&client_addr, b), addr_str(&peer_addr, c), CHANNEL,
            realm, opt.user, (long long)real_ns());
    fflush(glog);
    fprintf(stderr, "tern-mediagen: allocated relayed=%s client=%s peer=%s channel=0x%04x\n", a, b,
            c, CHANNEL);
}

static void on_release(int sig)
{
    (void)sig;
    got_release = 1;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {{"server", required_argument, 0, 's'},
                                             {"user", required_argument, 0, 'u'},
                                             {"password", required_argument, 0, 'p'},
                                             {"realm", required_argument, 0, 'r'},
                                             {"duration", required_argument, 0, 'd'},
                                             {"seed", required_argument, 0, 'S'},
                                             {"stream", required_argument, 0, 'x'},
                                             {"peer-delay", required_argument, 0, 'P'},
                                             {"client-delay", required_argument, 0, 'C'},
                                             {"stun-interval", required_argument, 0, 'I'},
                                             {"hold", required_argument, 0, 'H'},
                                             {"keep", no_argument, 0, 'k'},
                                             {"peer-netns", required_argument, 0, 'N'},
                                             {"peer-ip", required_argument, 0, 'A'},
                                             {"log", required_argument, 0, 'l'},
                                             {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (o) {
        case 's':
            opt.server = optarg;
            break;
        case 'u':
            opt.user = optarg;
            break;
        case 'p':
            opt.password = optarg;
            break;
        case 'r':
            opt.realm_arg = optarg;
            break;
        case 'd':
            opt.duration = parse_num("--duration", optarg);
            break;
        case 'S':
            opt.seed = strtoull(optarg, NULL, 0);
            break;
        case 'x':
            parse_stream(optarg);
            break;
        case 'P':
            opt.peer_delay_ms = parse_num("--peer-delay", optarg);
            break;
        case 'C':
            opt.client_delay_ms = parse_num("--client-delay", optarg);
            break;
        case 'I':
            opt.stun_interval_ms = parse_num("--stun-interval", optarg);
            break;
        case 'H':
            opt.hold_s = parse_num("--hold", optarg);
            break;
        case 'k':
            opt.keep = 1;
            break;
        case 'N':
            opt.peer_netns = optarg;
            break;
        case 'A':
            opt.peer_ip = optarg;
            break;
        case 'l':
            opt.logpath = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!opt.server || !opt.user || !opt.password || !opt.logpath || optind != argc) {
        usage(stderr);
        return 2;
    }
    if (opt.duration <= 0 || opt.duration > 600) die("--duration must be in (0, 600]");
    if (opt.stun_interval_ms < 10) die("--stun-interval must be >= 10 ms");
    parse_hostport(opt.server, &server_addr);
    glog = fopen(opt.logpath, "w");
    if (!glog) die("%s: %s", opt.logpath, strerror(errno));
    static char logbuf[1 << 20];
    setvbuf(glog, logbuf, _IOFBF, sizeof(logbuf));
    rng_state = opt.seed;
    signal(SIGUSR1, on_release);
    signal(SIGPIPE, SIG_IGN);
    srtp_setup();

    setup_turn();
    fprintf(glog,
            "{\"ev\":\"start\",\"seed\":%llu,\"duration\":%g,\"peer_delay_ms\":%g,"
            "\"client_delay_ms\":%g,\"streams\":%d}\n",
            (unsigned long long)opt.seed, opt.duration, opt.peer_delay_ms, opt.client_delay_ms,
            opt.nspecs);

    /* The plan: every stream's packets, impaired, then one schedule with the STUN checks. */
    for (int i = 0; i < opt.nspecs; i++) {
        size_t first = plan_stream(&opt.specs[i]);
        impair_stream(&opt.specs[i], first, npkts);
    }
    int64_t t0 = mono_ns() + 20 * MS;
    for (size_t i = 0; i < nsends; i++)
        ev_push(t0 + sends[i].t, EV_MEDIA, (int)i);
    int64_t stun_step = (int64_t)(opt.stun_interval_ms * MS);
    for (int64_t t = 0; t < (int64_t)(opt.duration * NS); t += stun_step) {
        if (opt.peer_delay_ms >= 0) ev_push(t0 + t + stun_step / 2, EV_STUN_REQ, DIR_CLIENT);
        if (opt.client_delay_ms >= 0) ev_push(t0 + t + stun_step / 4, EV_STUN_REQ, DIR_PEER);
    }
    fprintf(stderr, "tern-mediagen: %zu packets planned in %d streams, %zu datagrams to send\n",
            npkts, opt.nspecs, nsends);

    /* Run: send each event at its time; answer and count what arrives meanwhile. Runs until
     * the schedule is empty and 300 ms (plus the answer delays) have passed. */
    double maxdelay = fmax(opt.peer_delay_ms, opt.client_delay_ms);
    int64_t linger = 300 * MS + (maxdelay > 0 ? (int64_t)(maxdelay * MS) : 0), quiet_until = 0;
    for (;;) {
        int64_t now = mono_ns();
        while (nheap && heap[0].t <= now) {
            struct ev e = ev_pop();
            if (e.type == EV_MEDIA)
                send_media(&sends[e.idx]);
            else if (e.type == EV_STUN_REQ)
                send_stun_request((enum dir)e.idx);
            else
                send_stun_response(&resps[e.idx]);
            now = mono_ns();
        }
        if (!nheap && !quiet_until) quiet_until = now + linger;
        if (quiet_until && now >= quiet_until && !nheap) break;
        int64_t next = nheap ? heap[0].t : quiet_until;
        int64_t wait = next - now;
        if (wait < 0) wait = 0;
        struct timespec ts = {.tv_sec = wait / NS, .tv_nsec = wait % NS};
        struct pollfd pf[2] = {{.fd = cfd, .events = POLLIN}, {.fd = pfd, .events = POLLIN}};
        if (ppoll(pf, 2, &ts, NULL) > 0) drain();
    }
    drain();

    /* Summary: what was sent, dropped by script, duplicated, delivered through the relay. */
    int rc = 0;
    for (int d = 0; d < 2; d++) {
        fprintf(glog,
                "{\"ev\":\"summary\",\"dir\":\"%s\",\"sent_packets\":%llu,\"sent_bytes\":%llu,"
                "\"scripted_drops\":%llu,\"duplicates\":%llu,\"media_delivered\":%llu,"
                "\"stun_requests\":%llu,\"stun_answered\":%llu}\n",
                dir_names[d], (unsigned long long)sent_pkts[d], (unsigned long long)sent_bytes[d],
                (unsigned long long)dropped[d], (unsigned long long)dups[d],
                (unsigned long long)recv_media[d], (unsigned long long)stun_req[!d],
                (unsigned long long)stun_answered[!d]);
        fprintf(stderr,
                "tern-mediagen: from %s: sent %llu datagrams (%llu B), %llu scripted drops, %llu "
                "duplicates, %llu media delivered to the %s\n",
                dir_names[d], (unsigned long long)sent_pkts[d], (unsigned long long)sent_bytes[d],
                (unsigned long long)dropped[d], (unsigned long long)dups[d],
                (unsigned long long)recv_media[d], dir_names[!d]);
    }
    for (int leg = 0; leg < 2; leg++) {
        if (!stun_req[leg]) continue;
        fprintf(stderr, "tern-mediagen: %s-leg checks: %llu requests, %llu answered\n",
                dir_names[leg], (unsigned long long)stun_req[leg],
                (unsigned long long)stun_answered[leg]);
        if (stun_answered[leg] < stun_req[leg]) rc = 1;
    }

    if (opt.hold_s > 0) {
        fprintf(glog, "{\"ev\":\"holding\",\"t\":%lld}\n", (long long)real_ns());
        fflush(glog);
        fprintf(stderr, "tern-mediagen: holding the allocation (SIGUSR1 releases it)\n");
        int64_t until = mono_ns() + (int64_t)(opt.hold_s * NS);
        while (!got_release && mono_ns() < until) {
            struct pollfd pf[2] = {{.fd = cfd, .events = POLLIN}, {.fd = pfd, .events = POLLIN}};
            if (poll(pf, 2, 20) > 0) drain();
        }
    }
    if (!opt.keep) {
        uint8_t rbuf[2048];
        struct stun_msg m;
        if (turn_txn(STUN_REFRESH, add_delete, NULL, rbuf, sizeof(rbuf), &m) != STUN_SUCCESS)
            die("Refresh (delete) failed");
        fprintf(glog, "{\"ev\":\"deleted\",\"t\":%lld}\n", (long long)real_ns());
        fprintf(stderr, "tern-mediagen: allocation deleted\n");
    }
    fclose(glog);
    for (size_t i = 0; i < npkts; i++)
        free(pkts[i].data);
    free(pkts);
    free(sends);
    free(heap);
    free(resps);
    srtp_dealloc(srtp_sess[0]);
    srtp_dealloc(srtp_sess[1]);
    if (rc) fprintf(stderr, "tern-mediagen: some STUN checks were not answered\n");
    return rc;
}
