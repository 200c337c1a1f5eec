/* ternctl_allocs.c: ternctl allocations and top: the relay's live allocations and their QoS
 * from GET /api/v1/allocations, as a table, one allocation's detail, JSON or a live view. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "addr.h"
#include "ternctl.h"
#include "uris.h"

/* ---- allocations and top: the relay's live allocations and their QoS (GET /api/v1/allocations)
 * ---- */

#define TOP_DEFAULT_INTERVAL 2.0 /* seconds between frames */

/* A number member (integer or real) as a double; NAN when absent or null. */
static double jnum(const json_t *obj, const char *key)
{
    json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
    return json_is_number(v) ? json_number_value(v) : NAN;
}

/* obj.k1.k2... (NULL-terminated path) or NULL. */
static json_t *jpath(const json_t *obj, ...)
{
    va_list ap;
    va_start(ap, obj);
    const char *k;
    json_t *v = (json_t *)obj;
    while ((k = va_arg(ap, const char *)) != NULL)
        v = json_is_object(v) ? json_object_get(v, k) : NULL;
    va_end(ap);
    return v;
}

/* A string member for the terminal (control characters replaced), else def. */
static const char *jstr(const json_t *obj, const char *key, char *buf, size_t max, const char *def)
{
    json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
    if (json_is_string(v)) {
        ctl_clean_text(json_string_value(v), json_string_length(v), buf, max - 1);
        return buf;
    }
    if (json_is_integer(v)) {
        snprintf(buf, max, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return buf;
    }
    return def;
}

/* A ratio as percent ("0.25"), "-" for NAN. */
static const char *fmt_pct(double ratio, char out[32])
{
    if (isnan(ratio)) return "-";
    double p = ratio * 100.0;
    snprintf(out, 32, p != 0 && fabs(p) < 0.01 ? "%.3f" : "%.2f", p);
    return out;
}

/* Seconds as milliseconds ("12.3", "0.41"), "-" for NAN. */
static const char *fmt_ms(double s, char out[32])
{
    if (isnan(s)) return "-";
    double ms = s * 1e3;
    snprintf(out, 32, ms < 10 ? "%.2f" : ms < 1000 ? "%.1f" : "%.0f", ms);
    return out;
}

/* A count with a k/M/G suffix past 99999 ("123456" -> "123k"), "-" for NAN. */
static const char *fmt_count(double v, char out[32])
{
    if (isnan(v)) return "-";
    static const char sfx[] = " kMGTP";
    int i = 0;
    if (v < 100000) {
        snprintf(out, 32, "%.0f", v);
        return out;
    }
    while (v >= 1000 && i < 5) {
        v /= 1000;
        i++;
    }
    snprintf(out, 32, v < 10 ? "%.1f%c" : "%.0f%c", v, sfx[i]);
    return out;
}

/* A rate ("1.2M"), with one decimal below 10; "-" for NAN. */
static const char *fmt_rate(double v, char out[32])
{
    if (isnan(v)) return "-";
    static const char sfx[] = " kMGTP";
    int i = 0;
    while (v >= 1000 && i < 5) {
        v /= 1000;
        i++;
    }
    if (i == 0)
        snprintf(out, 32, v < 10 && v != 0 ? "%.1f" : "%.0f", v);
    else
        snprintf(out, 32, v < 10 ? "%.1f%c" : "%.0f%c", v, sfx[i]);
    return out;
}

/* Seconds as "42s", "3m07s", "2h05m", "3d04h"; "-" for NAN. */
static const char *fmt_age(double s, char out[32])
{
    if (isnan(s) || s < 0) return "-";
    uint64_t t = (uint64_t)s;
    if (t < 60)
        snprintf(out, 32, "%" PRIu64 "s", t);
    else if (t < 3600)
        snprintf(out, 32, "%" PRIu64 "m%02" PRIu64 "s", t / 60, t % 60);
    else if (t < 86400)
        snprintf(out, 32, "%" PRIu64 "h%02" PRIu64 "m", t / 3600, t / 60 % 60);
    else
        snprintf(out, 32, "%" PRIu64 "d%02" PRIu64 "h", t / 86400, t / 3600 % 24);
    return out;
}

/* One allocation of a listing, with what the table and the sorting need. */
struct arow {
    json_t *e; /* borrowed from the listing */
    char id[24];
    uint64_t idnum;
    double age, peers, pk_c, pk_p, by_c, by_p;
    double loss[2], jit[2], rtt[2], path; /* per ingress leg: client, peer; NAN: unknown */
    double q_loss, q_jit, q_rtt;          /* SUMMARY.quality */
    double pps, bps;                      /* rates (top); NAN until two samples */
};

static void arow_fill(struct arow *r, json_t *e)
{
    static const char *const legs[2] = {"client_leg", "peer_leg"};
    memset(r, 0, sizeof *r);
    r->e = e;
    jstr(e, "id", r->id, sizeof r->id, "?");
    r->idnum = strtoull(r->id, NULL, 10);
    r->age = jnum(e, "age_seconds");
    json_t *peers = json_object_get(e, "peers");
    r->peers = json_is_array(peers) ? (double)json_array_size(peers) : jnum(e, "peers");
    r->pk_c = jnum(json_object_get(e, "packets"), "from_client");
    r->pk_p = jnum(json_object_get(e, "packets"), "from_peer");
    r->by_c = jnum(json_object_get(e, "bytes"), "from_client");
    r->by_p = jnum(json_object_get(e, "bytes"), "from_peer");
    json_t *q = json_object_get(e, "qos");
    for (int l = 0; l < 2; l++) {
        json_t *leg = json_is_object(q) ? json_object_get(q, legs[l]) : NULL;
        r->loss[l] = jnum(jpath(leg, "rtp", NULL), "loss_ratio");
        r->jit[l] = jnum(jpath(leg, "rtp", NULL), "jitter_seconds");
        r->rtt[l] = jnum(jpath(leg, "rtt", NULL), "last_seconds");
    }
    r->path = jnum(q, "path_rtt_seconds");
    json_t *qual = jpath(q, "quality", NULL);
    r->q_loss = jnum(qual, "loss_ratio");
    r->q_jit = jnum(qual, "jitter_seconds");
    r->q_rtt = jnum(qual, "rtt_seconds");
    r->pps = r->bps = NAN;
}

enum sort_key { SORT_ID, SORT_LOSS, SORT_JITTER, SORT_RTT, SORT_AGE, SORT_BYTES, SORT_QUALITY };

/* Descending with NAN last: <0 when a comes first. */
static int cmp_desc(double a, double b)
{
    if (isnan(a) || isnan(b)) return isnan(a) - isnan(b);
    return a > b ? -1 : a < b ? 1 : 0;
}

static enum sort_key g_sort; /* for qsort */

static int arow_cmp(const void *pa, const void *pb)
{
    const struct arow *a = pa, *b = pb;
    int c = 0;
    switch (g_sort) {
    case SORT_ID:
        break;
    case SORT_LOSS:
        c = cmp_desc(a->q_loss, b->q_loss);
        break;
    case SORT_JITTER:
        c = cmp_desc(a->q_jit, b->q_jit);
        break;
    case SORT_RTT:
        c = cmp_desc(a->q_rtt, b->q_rtt);
        break;
    case SORT_AGE:
        c = cmp_desc(a->age, b->age);
        break;
    case SORT_BYTES:
        c = cmp_desc(a->by_c + a->by_p, b->by_c + b->by_p);
        break;
    case SORT_QUALITY:
        if (!(c = cmp_desc(a->q_loss, b->q_loss)) && !(c = cmp_desc(a->q_jit, b->q_jit)))
            c = cmp_desc(a->q_rtt, b->q_rtt);
        break;
    }
    if (c) return c;
    return a->idnum < b->idnum ? -1 : a->idnum > b->idnum;
}

/* The default API URL: -c's ops.listen (a wildcard address asks loopback), else
 * DEFAULT_OPS_URL. Into out. */
static void default_ops_url(const struct ctl *c, char *out, size_t max)
{
    if (!c->have_cfg || c->cfg.ops_listen.sa.sa_family == AF_UNSPEC) {
        snprintf(out, max, "%s", DEFAULT_OPS_URL);
        return;
    }
    union stun_addr a = c->cfg.ops_listen;
    if (a.sa.sa_family == AF_INET && a.v4.sin_addr.s_addr == htonl(INADDR_ANY))
        a.v4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    else if (a.sa.sa_family == AF_INET6 && IN6_IS_ADDR_UNSPECIFIED(&a.v6.sin6_addr))
        a.v6.sin6_addr = in6addr_loopback;
    char s[ADDR_STRLEN];
    snprintf(out, max, "http://%s", addr_str(&a, s));
}

/* The listing: 0 with *out the answer's object and its "allocations" array in *list, else 1. */
static int fetch_allocations(const struct ctl *c, json_t **out, json_t **list)
{
    static const char path[] = "/api/v1/allocations";
    json_t *j = NULL;
    *out = *list = NULL;
    if (c->from_file) {
        json_error_t jerr;
        if (!(j = json_load_file(c->from_file, 0, &jerr)))
            return ctl_failure("%s:%d: %s", c->from_file, jerr.line, jerr.text);
    } else if (ctl_api_call(c, "GET", path, NULL, &j))
        return 1;
    if (!(j = ctl_want_object(c, path, j))) return 1;
    json_t *a = json_object_get(j, "allocations");
    if (!json_is_array(a)) {
        json_decref(j);
        return ctl_failure("%s%s: the answer has no \"allocations\" array", c->url, path);
    }
    *out = j;
    *list = a;
    return 0;
}

/* The rows of a listing (calloc'd), sorted by key. NULL with *n 0 when empty or out of memory. */
static struct arow *rows_of(json_t *list, enum sort_key key, size_t *n)
{
    *n = json_array_size(list);
    struct arow *rows = *n ? calloc(*n, sizeof *rows) : NULL;
    if (!rows) {
        *n = 0;
        return NULL;
    }
    size_t i, k = 0;
    json_t *e;
    json_array_foreach(list, i, e)
    {
        if (json_is_object(e)) arow_fill(&rows[k++], e);
    }
    *n = k;
    g_sort = key;
    qsort(rows, k, sizeof *rows, arow_cmp);
    return rows;
}

/* A table printer: cells are added left to right, a row ends with tab_end(); columns are
 * sized when the table is printed. At most TAB_COLS columns. */
#define TAB_COLS 20
struct table {
    char **cells; /* rows * TAB_COLS */
    size_t rows, cap, ncols;
    size_t width[TAB_COLS];
    bool right[TAB_COLS]; /* right-aligned (numbers) */
    size_t col;
    bool oom;
};

static void tab_cell(struct table *t, const char *s)
{
    if (t->oom) return;
    if (t->col == 0 && t->rows == t->cap) {
        size_t ncap = t->cap ? t->cap * 2 : 32;
        char **nc = realloc(t->cells, ncap * TAB_COLS * sizeof *nc);
        if (!nc) {
            t->oom = true;
            return;
        }
        memset(nc + t->cap * TAB_COLS, 0, (ncap - t->cap) * TAB_COLS * sizeof *nc);
        t->cells = nc;
        t->cap = ncap;
    }
    if (t->col >= TAB_COLS) return;
    char *d = strdup(s ? s : "-");
    if (!d) {
        t->oom = true;
        return;
    }
    t->cells[t->rows * TAB_COLS + t->col] = d;
    size_t w = ctl_text_width(d);
    if (w > t->width[t->col]) t->width[t->col] = w;
    if (++t->col > t->ncols) t->ncols = t->col;
}

static void tab_end(struct table *t)
{
    if (t->oom) return;
    t->rows++;
    t->col = 0;
}

/* Print the table: lines cut at max_width columns (0: no limit), at most max_rows (0: all). */
static void tab_print(struct table *t, size_t max_width, size_t max_rows)
{
    for (size_t r = 0; r < t->rows && (!max_rows || r < max_rows); r++) {
        char line[4096];
        size_t n = 0;
        for (size_t k = 0; k < t->ncols && n < sizeof line - 1; k++) {
            const char *s = t->cells[r * TAB_COLS + k];
            if (!s) s = "";
            size_t w = ctl_text_width(s), pad = t->width[k] > w ? t->width[k] - w : 0;
            bool last = k + 1 == t->ncols;
            if (t->right[k])
                for (; pad && n < sizeof line - 1; pad--)
                    line[n++] = ' ';
            for (; *s && n < sizeof line - 1; s++)
                line[n++] = *s;
            if (!last)
                for (pad += 2; pad && n < sizeof line - 1; pad--)
                    line[n++] = ' ';
        }
        while (n && line[n - 1] == ' ')
            n--;
        line[n] = '\0';
        if (max_width) { /* cut at max_width code points */
            size_t cp = 0, i = 0;
            for (; line[i]; i++)
                if (((unsigned char)line[i] & 0xC0) != 0x80 && cp++ == max_width) break;
            line[i] = '\0';
        }
        puts(line);
    }
}

static void tab_free(struct table *t)
{
    for (size_t i = 0; i < t->cap * TAB_COLS; i++)
        free(t->cells[i]);
    free(t->cells);
    memset(t, 0, sizeof *t);
}

/* "a/b" of two formatted values. */
static const char *pair(const char *a, const char *b, char out[80])
{
    snprintf(out, 80, "%s/%s", a, b);
    return out;
}

/* The listing's table (top adds the rate columns). */
static void allocations_table(struct table *t, const struct arow *rows, size_t n, bool rates)
{
    static const char *const head[] = {"ID",          "USER",      "TR",         "CLIENT",
                                       "RELAYED",     "AGE",       "PEERS",      "PKTS C>/P>",
                                       "BYTES C>/P>", "LOSS% C/P", "JIT ms C/P", "RTT ms C/P/PATH"};
    static const char *const head_rates[] = {"PKT/S", "BIT/S"};
    size_t nh = sizeof head / sizeof head[0];
    for (size_t k = 0; k < nh; k++) {
        tab_cell(t, head[k]);
        if (rates && k == 5) /* after AGE */
            for (size_t h = 0; h < 2; h++)
                tab_cell(t, head_rates[h]);
    }
    tab_end(t);
    size_t ncol = nh + (rates ? 2 : 0);
    for (size_t k = 5; k < ncol; k++)
        t->right[k] = true; /* from AGE on: numbers, right-aligned */
    for (size_t i = 0; i < n; i++) {
        const struct arow *r = &rows[i];
        char b1[32], b2[32], b3[32], p[128], user[128], tr[8], cl[64], rel[256];
        tab_cell(t, r->id);
        tab_cell(t, jstr(r->e, "user", user, sizeof user, "-"));
        tab_cell(t, jstr(r->e, "transport", tr, sizeof tr, "-"));
        tab_cell(t, jstr(r->e, "client", cl, sizeof cl, "-"));
        json_t *ra = json_object_get(r->e, "relayed");
        size_t k, m = 0;
        json_t *v;
        rel[0] = '\0';
        json_array_foreach(ra, k, v)
        {
            char one[64];
            if (!json_is_string(v)) continue;
            ctl_clean_text(json_string_value(v), json_string_length(v), one, 60);
            m += (size_t)snprintf(rel + m, m < sizeof rel ? sizeof rel - m : 0, "%s%s",
                                  k ? "," : "", one);
            if (m >= sizeof rel) break;
        }
        tab_cell(t, rel[0] ? rel : jstr(r->e, "relayed", rel, sizeof rel, "-"));
        tab_cell(t, fmt_age(r->age, b1));
        if (rates) {
            tab_cell(t, fmt_rate(r->pps, b1));
            tab_cell(t, fmt_rate(r->bps, b2));
        }
        tab_cell(t, fmt_count(r->peers, b1));
        tab_cell(t, pair(fmt_count(r->pk_c, b1), fmt_count(r->pk_p, b2), p));
        tab_cell(t, pair(fmt_count(r->by_c, b1), fmt_count(r->by_p, b2), p));
        tab_cell(t, pair(fmt_pct(r->loss[0], b1), fmt_pct(r->loss[1], b2), p));
        tab_cell(t, pair(fmt_ms(r->jit[0], b1), fmt_ms(r->jit[1], b2), p));
        snprintf(p, sizeof p, "%s/%s/%s", fmt_ms(r->rtt[0], b1), fmt_ms(r->rtt[1], b2),
                 fmt_ms(r->path, b3));
        tab_cell(t, p);
        tab_end(t);
    }
}

/* ---- the detail of one allocation ---- */

static void print_rtt(const char *label, const json_t *rtt)
{
    char a[32], b[32], c2[32], d[32], e[32];
    if (!json_is_object(rtt)) {
        printf("  %s rtt: -\n", label);
        return;
    }
    printf("  %s rtt ms: last %s  min %s  ewma %s  p50 %s  p95 %s  (samples %.0f, unanswered %.0f, "
           "ambiguous %.0f)\n",
           label, fmt_ms(jnum(rtt, "last_seconds"), a), fmt_ms(jnum(rtt, "min_seconds"), b),
           fmt_ms(jnum(rtt, "ewma_seconds"), c2), fmt_ms(jnum(rtt, "p50_seconds"), d),
           fmt_ms(jnum(rtt, "p95_seconds"), e), jnum(rtt, "measurements"), jnum(rtt, "unanswered"),
           jnum(rtt, "ambiguous"));
}

static void print_direction(const char *name, const json_t *d)
{
    char a[32], b[32], c2[32], e[32];
    if (!json_is_object(d)) {
        printf("    %s: -\n", name);
        return;
    }
    printf("    %s: %s packets, %s bytes", name, fmt_count(jnum(d, "packets_total"), a),
           fmt_count(jnum(d, "bytes_total"), b));
    json_t *bc = json_object_get(d, "by_class");
    const char *k;
    json_t *v;
    bool first = true;
    json_object_foreach(bc, k, v)
    {
        if (!json_is_integer(v) || json_integer_value(v) == 0) continue;
        char key[24];
        ctl_clean_text(k, strlen(k), key, 20);
        printf("%s%s %" JSON_INTEGER_FORMAT, first ? " (" : ", ", key, json_integer_value(v));
        first = false;
    }
    if (!first) fputc(')', stdout);
    fputc('\n', stdout);
    json_t *iv = json_object_get(d, "interval"), *iat = json_object_get(d, "iat");
    printf("      last interval: %s pkt/s, %s bit/s;  inter-arrival: mean %s ms, jitter %s ms, max "
           "gap "
           "%s ms, stalls %.0f\n",
           fmt_rate(jnum(iv, "packets_per_second"), a), fmt_rate(jnum(iv, "bits_per_second"), b),
           fmt_ms(jnum(iat, "mean_seconds"), c2), fmt_ms(jnum(iat, "jitter_seconds"), e),
           fmt_ms(jnum(iat, "max_gap_seconds"), a), jnum(iat, "stalls_total"));
    json_t *sr = json_object_get(d, "srtcp");
    if (json_is_object(sr) && jnum(sr, "packets_total") > 0) {
        printf("      srtcp: %.0f packets, %.0f index gaps; feedback", jnum(sr, "packets_total"),
               jnum(sr, "index_gaps_total"));
        json_object_foreach(json_object_get(sr, "feedback_total"), k, v)
        {
            char key[24];
            ctl_clean_text(k, strlen(k), key, 20);
            if (json_is_integer(v)) printf(" %s %" JSON_INTEGER_FORMAT, key, json_integer_value(v));
        }
        fputc('\n', stdout);
    }
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(d, "rtp_streams"), i, s)
    {
        char kind[32], src[32], state[32];
        double ssrc = jnum(s, "ssrc"), cr = jnum(s, "clock_rate");
        printf("      rtp ssrc %08" PRIx32 " pt %.0f %s, clock %s%s (%s), %s\n",
               isnan(ssrc) ? 0 : (uint32_t)ssrc, jnum(s, "payload_type"),
               jstr(s, "kind", kind, sizeof kind, "?"), isnan(cr) ? "-" : fmt_count(cr, a),
               isnan(cr) ? "" : " Hz", jstr(s, "clock_rate_source", src, sizeof src, "?"),
               jstr(s, "state", state, sizeof state, "?"));
        printf("        received %.0f (unique %.0f, duplicated %.0f, out of order %.0f), expected "
               "%.0f, "
               "lost %.0f (net %.0f), interval loss %s%%\n",
               jnum(s, "packets_received"), jnum(s, "packets_received_unique"),
               jnum(s, "packets_duplicated"), jnum(s, "packets_out_of_order"),
               jnum(s, "packets_expected"), jnum(s, "packets_lost"), jnum(s, "packets_lost_net"),
               fmt_pct(jnum(s, "interval_fraction_lost"), a));
        json_t *lp = json_object_get(s, "loss_pattern");
        double mb = jnum(lp, "mean_burst_packets");
        snprintf(e, sizeof e, isnan(mb) ? "-" : "%.1f", mb);
        printf("        jitter %s ms (%s rtp units, interval max %s ms), seq restarts %.0f, loss "
               "bursts %.0f (mean %s packets)\n",
               fmt_ms(jnum(s, "jitter_seconds"), a),
               isnan(jnum(s, "jitter_rtp_units")) ? "-" : fmt_count(jnum(s, "jitter_rtp_units"), b),
               fmt_ms(jnum(s, "jitter_max_interval_seconds"), c2), jnum(s, "seq_restarts_total"),
               jnum(lp, "bursts_total"), e);
    }
}

static void print_detail(json_t *j)
{
    char b1[32], b2[32], b3[32], s1[128], s2[128], s3[64], s4[64];
    printf("allocation %s  user %s  realm %s  %s\n", jstr(j, "id", s1, sizeof s1, "?"),
           jstr(j, "user", s2, sizeof s2, "-"), jstr(j, "realm", s3, sizeof s3, "-"),
           jstr(j, "transport", s4, sizeof s4, "-"));
    printf("  client %s  relayed", jstr(j, "client", s1, sizeof s1, "-"));
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(j, "relayed"), i, v)
    {
        if (json_is_string(v)) {
            ctl_clean_text(json_string_value(v), json_string_length(v), s2, 100);
            printf(" %s", s2);
        }
    }
    printf("\n  created %s  age %s  expires in %s  worker %.0f  permissions %.0f  channels %.0f\n",
           jstr(j, "created_at", s1, sizeof s1, "-"), fmt_age(jnum(j, "age_seconds"), b1),
           fmt_age(jnum(j, "expires_in_seconds"), b2), jnum(j, "worker"), jnum(j, "permissions"),
           jnum(j, "channels"));
    if (json_is_true(json_object_get(j, "mobile"))) /* RFC 8016: follows its client */
        printf("  mobile: moved %.0f times, last %s\n", jnum(j, "moves"),
               jstr(j, "moved_at", s1, sizeof s1, "never"));
    json_t *pk = json_object_get(j, "packets"), *by = json_object_get(j, "bytes");
    printf("  packets from client %s, from peers %s;  bytes from client %s, from peers %s\n",
           fmt_count(jnum(pk, "from_client"), b1), fmt_count(jnum(pk, "from_peer"), b2),
           fmt_count(jnum(by, "from_client"), b3), fmt_count(jnum(by, "from_peer"), s4));
    json_t *q = json_object_get(j, "qos");
    if (json_is_null(q)) printf("  qos: off (qos.enabled is false)\n");
    double ivs = jnum(j, "interval_seconds");
    printf("  sampled at %s, intervals of %s s\n", jstr(j, "sampled_at", s1, sizeof s1, "-"),
           isnan(ivs) ? "-" : (snprintf(s2, sizeof s2, "%g", ivs), s2));
    print_rtt("client leg", jpath(j, "client_leg", "rtt", NULL));
    json_t *p;
    json_array_foreach(json_object_get(j, "peers"), i, p)
    {
        if (!json_is_object(p)) continue;
        json_t *ch = json_object_get(p, "channel");
        printf("  peer %s  channel %s  path rtt %s ms\n", jstr(p, "peer", s1, sizeof s1, "?"),
               json_is_integer(ch)
                   ? (snprintf(s2, sizeof s2, "0x%04" PRIx64, (uint64_t)json_integer_value(ch)), s2)
                   : "-",
               fmt_ms(jnum(p, "path_rtt_seconds"), b1));
        print_rtt("  peer leg", jpath(p, "peer_leg", "rtt", NULL));
        print_direction("from client", jpath(p, "directions", "from_client", NULL));
        print_direction("from peer", jpath(p, "directions", "from_peer", NULL));
    }
    double other = jnum(j, "other_flows");
    if (!isnan(other) && other > 0) printf("  other flows (not measured): %.0f\n", other);
}

/* ---- one allocation's timeline (GET /api/v1/allocations/{id}/timeline) ---- */

/* "loss,jitter" from a JSON array of reason names, "" when empty. */
static const char *reasons_of(const json_t *a, char out[64])
{
    size_t i, n = 0;
    json_t *v;
    out[0] = '\0';
    json_array_foreach(a, i, v)
    {
        char one[16];
        if (!json_is_string(v)) continue;
        ctl_clean_text(json_string_value(v), json_string_length(v), one, sizeof one - 1);
        n += (size_t)snprintf(out + n, n < 64 ? 64 - n : 0, "%s%s", n ? "," : "", one);
        if (n >= 64) break;
    }
    return out;
}

/* The drops of one leg in one interval, summed over the reasons. */
static double drops_of(const json_t *leg)
{
    json_t *d = json_object_get(leg, "drops"), *v;
    const char *k;
    double n = 0;
    json_object_foreach(d, k, v) if (json_is_integer(v)) n += (double)json_integer_value(v);
    return n;
}

/* One row per interval: time, then per leg packets, kbit/s, loss %, jitter ms, RTT ms, CE,
 * drops, and what crossed a threshold ("!" before a value that did). */
static void print_timeline(json_t *j)
{
    char s1[32], s2[128], s3[16], s4[64], s5[40];
    json_t *tl = json_object_get(j, "timeline");
    printf("allocation %s  user %s  %s  client %s  created %s\n", jstr(j, "id", s1, sizeof s1, "?"),
           jstr(j, "user", s2, sizeof s2, "-"), jstr(j, "transport", s3, sizeof s3, "-"),
           jstr(j, "client", s4, sizeof s4, "-"), jstr(j, "created_at", s5, sizeof s5, "-"));
    if (!json_is_object(tl)) {
        printf("  qos: off (qos.enabled is false): no timeline\n");
        return;
    }
    json_t *thr = json_object_get(tl, "thresholds");
    char b1[32], b2[32], b3[32];
    printf(
        "  intervals of %g s, up to %.0f kept; thresholds: loss %s %%, jitter %s ms, RTT %s ms\n",
        jnum(tl, "interval_seconds"), jnum(tl, "capacity"), fmt_pct(jnum(thr, "loss_ratio"), b1),
        fmt_ms(jnum(thr, "jitter_seconds"), b2), fmt_ms(jnum(thr, "rtt_seconds"), b3));
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(tl, "poor"), i, p)
    {
        char r[64], since[40], leg[16];
        printf("  POOR now: %s leg (%s) since %s, %.0f bad interval(s)\n",
               jstr(p, "leg", leg, sizeof leg, "?"), reasons_of(json_object_get(p, "reasons"), r),
               jstr(p, "since", since, sizeof since, "-"), jnum(p, "intervals"));
    }
    json_t *ivs = json_object_get(tl, "intervals");
    if (!json_array_size(ivs)) {
        printf("  no interval closed yet\n");
        return;
    }
    struct table t = {0};
    static const char *const head[] = {
        "START",  "C PKTS",  "C BIT/S", "C LOSS%",  "C JIT ms", "C RTT ms", "C CE",    "C DROPS",
        "P PKTS", "P BIT/S", "P LOSS%", "P JIT ms", "P RTT ms", "P CE",     "P DROPS", "POOR"};
    size_t nh = sizeof head / sizeof head[0];
    for (size_t k = 0; k < nh; k++)
        tab_cell(&t, head[k]);
    tab_end(&t);
    for (size_t k = 1; k + 1 < nh; k++)
        t.right[k] = true;
    json_t *iv;
    json_array_foreach(ivs, i, iv)
    {
        char start[40], poor[160] = "";
        const char *st = jstr(iv, "start", start, sizeof start, "-");
        const char *tpos = strchr(st, 'T'); /* the time of day is enough in a table */
        tab_cell(&t, tpos ? tpos + 1 : st);
        for (int l = 0; l < 2; l++) {
            json_t *leg = json_object_get(iv, l ? "peer_leg" : "client_leg");
            char r[64], c[48];
            reasons_of(json_object_get(leg, "poor"), r);
            bool bl = strstr(r, "loss") != NULL, bj = strstr(r, "jitter") != NULL,
                 br = strstr(r, "rtt") != NULL;
            tab_cell(&t, fmt_count(jnum(leg, "packets"), b1));
            tab_cell(&t, fmt_rate(jnum(leg, "bits_per_second"), b1));
            snprintf(c, sizeof c, "%s%s", bl ? "!" : "", fmt_pct(jnum(leg, "loss_ratio"), b1));
            tab_cell(&t, c);
            snprintf(c, sizeof c, "%s%s", bj ? "!" : "", fmt_ms(jnum(leg, "jitter_seconds"), b1));
            tab_cell(&t, c);
            snprintf(c, sizeof c, "%s%s", br ? "!" : "", fmt_ms(jnum(leg, "rtt_seconds"), b1));
            tab_cell(&t, c);
            tab_cell(&t, fmt_count(jnum(leg, "ce"), b1));
            tab_cell(&t, fmt_count(drops_of(leg), b1));
            if (r[0])
                snprintf(poor + strlen(poor), sizeof poor - strlen(poor), "%s%s:%s",
                         poor[0] ? " " : "", l ? "peer" : "client", r);
        }
        tab_cell(&t, poor[0] ? poor : "");
        tab_end(&t);
    }
    if (t.oom)
        ctl_failure("out of memory");
    else
        tab_print(&t, 0, 0);
    tab_free(&t);
    puts("C: what came from the client, P: from the peers; LOSS%, JIT: the worst RTP stream's "
         "interval loss\nand jitter; RTT: mean of the interval's STUN checks; !: above the "
         "threshold; -: not measured.");
}

/* ---- the commands ---- */

/* Set up API access for allocations/top: c->url (--url, else -c's ops.listen, else the
 * default), the token (--token, --token-file, TERN_TOKEN, else -c's ops.token; none is fine:
 * the allocations API is open when ternd has no ops.token), libcurl. 0, 1 or 2. */
static int ops_setup(struct ctl *c, struct ops_opts *o)
{
    if (c->db_opt || c->realm_opt)
        return ctl_usage_error("--db and --realm are not for this command");
    if (o->token_arg && o->token_file)
        return ctl_usage_error("--token and --token-file exclude each other");
    if (c->cfg_path && !c->have_cfg) {
        if (cfg_load(&c->cfg, c->cfg_path, stderr))
            return ctl_failure("%s: configuration is not valid", c->cfg_path);
        c->have_cfg = true;
    }
    if (o->url) {
        int rc = ctl_check_url(o->url, "--url");
        if (rc) return rc;
        c->url = o->url;
    } else {
        default_ops_url(c, o->default_url, sizeof o->default_url);
        c->url = o->default_url;
    }
    int rc = ctl_take_token(c, o->token_file);
    return rc ? rc : ctl_api_init(c);
}

/* The options allocations and top share; returns 0 when opt was one of them, else -1. */
static int ops_option(struct ctl *c, struct ops_opts *o, int opt)
{
    switch (opt) {
    case 'u':
        o->url = optarg;
        return 0;
    case 'T':
        o->token_file = optarg;
        return 0;
    case 't':
        if (o->token_arg || c->token) {
            ctl_usage_error("--token given twice");
            return 2;
        }
        o->token_arg = true;
        c->token = strdup(optarg);
        if (!c->token) return ctl_failure("out of memory");
        memset(optarg, 'x', strlen(optarg)); /* out of ps from now on */
        return 0;
    case 'F':
        c->from_file = optarg;
        return 0;
    }
    return -1;
}

static int parse_sort(const char *s, enum sort_key *k)
{
    static const struct {
        const char *name;
        enum sort_key key;
    } keys[] = {{"id", SORT_ID},          {"loss", SORT_LOSS}, {"jitter", SORT_JITTER},
                {"rtt", SORT_RTT},        {"age", SORT_AGE},   {"bytes", SORT_BYTES},
                {"quality", SORT_QUALITY}};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (strcmp(s, keys[i].name) == 0) {
            *k = keys[i].key;
            return 0;
        }
    return -1;
}

/* Print a JSON answer as the API gave it (indented). */
static int print_json(json_t *j)
{
    if (json_dumpf(j, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER) != 0)
        return ctl_failure("writing JSON");
    fputc('\n', stdout);
    return 0;
}

int ctl_cmd_allocations(struct ctl *c, struct ops_opts *o, int argc, char **argv)
{
    static const struct option opts[] = {
        CTL_API_OPTIONS,
        {"json", no_argument, NULL, 'j'},
        {"sort", required_argument, NULL, 's'},
        {"from-file", required_argument, NULL, 'F'},
        {"timeline", no_argument, NULL, 'L'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    bool json = false, timeline = false;
    enum sort_key key = SORT_ID;
    int opt;
    optind = 0;
    while ((opt = getopt_long(argc, argv, ":jh", opts, NULL)) != -1) {
        int r = ops_option(c, o, opt);
        if (r > 0) return r;
        if (r == 0) continue;
        switch (opt) {
        case 'j':
            json = true;
            break;
        case 'L':
            timeline = true;
            break;
        case 's':
            if (parse_sort(optarg, &key))
                return ctl_usage_error(
                    "allocations: --sort wants loss, jitter, rtt, age, bytes or id, "
                    "not '%s'",
                    optarg);
            break;
        case 'h':
            ctl_usage(stdout);
            return 0;
        default:
            return ctl_bad_option("allocations", argv, opt);
        }
    }
    if (argc - optind > 1) return ctl_usage_error("allocations: at most one allocation ID");
    const char *id = optind < argc ? argv[optind] : NULL;
    if (timeline && !id) return ctl_usage_error("allocations: --timeline needs an allocation ID");
    uint64_t idv;
    if (id && ctl_parse_u64(id, UINT64_MAX, &idv))
        return ctl_usage_error(
            "allocations: the ID is a number (see ternctl allocations), not '%s'", id);
    int rc = ops_setup(c, o);
    if (rc) return rc;

    json_t *j = NULL;
    if (id) {
        char path[80];
        snprintf(path, sizeof path, "/api/v1/allocations/%" PRIu64 "%s", idv,
                 timeline ? "/timeline" : "");
        if (c->from_file) {
            json_error_t jerr;
            if (!(j = json_load_file(c->from_file, 0, &jerr)))
                return ctl_failure("%s:%d: %s", c->from_file, jerr.line, jerr.text);
        } else if (ctl_api_call(c, "GET", path, NULL, &j))
            return 1;
        if (!(j = ctl_want_object(c, path, j))) return 1;
        rc = json ? print_json(j) : timeline ? (print_timeline(j), 0) : (print_detail(j), 0);
        json_decref(j);
        return rc;
    }
    json_t *list;
    if (fetch_allocations(c, &j, &list)) return 1;
    if (json) {
        rc = print_json(j);
        json_decref(j);
        return rc;
    }
    size_t n;
    struct arow *rows = rows_of(list, key, &n);
    if (!rows && json_array_size(list)) {
        json_decref(j);
        return ctl_failure("out of memory");
    }
    char at[40];
    printf("%zu allocation%s at %s (sampled %s)\n", n, n == 1 ? "" : "s",
           c->from_file ? c->from_file : c->url, jstr(j, "sampled_at", at, sizeof at, "-"));
    if (n) {
        struct table t = {0};
        allocations_table(&t, rows, n, false);
        if (t.oom)
            rc = ctl_failure("out of memory");
        else
            tab_print(&t, 0, 0);
        tab_free(&t);
        puts("LOSS%, JIT: RTP loss and jitter of the packets coming from the client (C) and from "
             "the peers (P);\nRTT: relay<->client, relay<->peer (last STUN check) and their sum; "
             "-: not measured.");
    }
    free(rows);
    json_decref(j);
    return rc;
}

/* ---- top ---- */

/* RFC 3339 UTC ("2026-11-22T10:00:00.123Z") as seconds; NAN when it does not parse. */
static double parse_rfc3339(const json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_string(v)) return NAN;
    struct tm tm = {0};
    const char *s = json_string_value(v), *end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!end) return NAN;
    double frac = 0, scale = 0.1;
    if (*end == '.')
        for (end++; *end >= '0' && *end <= '9'; end++, scale /= 10)
            frac += (*end - '0') * scale;
    if (*end != 'Z') return NAN;
    return (double)timegm(&tm) + frac;
}

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

struct prev_sample {
    uint64_t id;
    double pk, by;
};

static int prev_cmp(const void *a, const void *b)
{
    uint64_t x = ((const struct prev_sample *)a)->id, y = ((const struct prev_sample *)b)->id;
    return x < y ? -1 : x > y;
}

static struct termios saved_tio;
static bool tio_saved;

static void restore_terminal(void)
{
    if (tio_saved) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tio);
        tio_saved = false;
        fputs("\033[?25h", stdout); /* the cursor back */
        fflush(stdout);
    }
}

/* Wait up to secs for a key: 1 quit (q, Q, Ctrl-C, a signal), 0 time to refresh. */
static int top_wait(double secs, bool keys)
{
    double until = mono_now() + secs;
    for (;;) {
        if (ctl_got_signal) return 1;
        double left = until - mono_now();
        if (left <= 0) return 0;
        struct pollfd pfd = {.fd = STDIN_FILENO, .events = POLLIN};
        int r = poll(keys ? &pfd : NULL, keys ? 1 : 0, (int)(left * 1000) + 1);
        if (r < 0 && errno != EINTR) return 1;
        if (r > 0) {
            char ch;
            ssize_t n = read(STDIN_FILENO, &ch, 1);
            if (n <= 0)
                keys = false; /* end of input: keep refreshing */
            else if (ch == 'q' || ch == 'Q' || ch == 3)
                return 1;
            else if (ch == ' ')
                return 0; /* refresh now */
        }
    }
}

static void top_frame(const struct ctl *c, json_t *j, struct arow *rows, size_t n, double interval,
                      bool ansi)
{
    size_t cols = 0, lines = 0;
    struct winsize ws;
    if (ansi && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0) {
        cols = ws.ws_col;
        lines = ws.ws_row;
    }
    double pps = NAN, bps = NAN, wl = NAN, wj = NAN, wr = NAN;
    size_t by_tr[3] = {0};
    const char *wl_id = "", *wj_id = "", *wr_id = "";
    for (size_t i = 0; i < n; i++) {
        const struct arow *r = &rows[i];
        if (!isnan(r->pps)) pps = (isnan(pps) ? 0 : pps) + r->pps;
        if (!isnan(r->bps)) bps = (isnan(bps) ? 0 : bps) + r->bps;
        if (!isnan(r->q_loss) && (isnan(wl) || r->q_loss > wl)) wl = r->q_loss, wl_id = r->id;
        if (!isnan(r->q_jit) && (isnan(wj) || r->q_jit > wj)) wj = r->q_jit, wj_id = r->id;
        if (!isnan(r->q_rtt) && (isnan(wr) || r->q_rtt > wr)) wr = r->q_rtt, wr_id = r->id;
        json_t *tr = json_object_get(r->e, "transport");
        const char *t = json_is_string(tr) ? json_string_value(tr) : "";
        by_tr[strcmp(t, "udp") == 0 ? 0 : strcmp(t, "tcp") == 0 ? 1 : 2]++;
    }
    char b1[32], b2[32], b3[32], b4[32], b5[32], at[40];
    if (ansi) fputs("\033[H\033[2J", stdout);
    printf("ternctl top  %s  sampled %s  every %.1f s%s\n", c->from_file ? c->from_file : c->url,
           jstr(j, "sampled_at", at, sizeof at, "-"), interval, ansi ? "  (q quits)" : "");
    printf("allocations %zu (udp %zu, tcp %zu, tls %zu)  relayed %s pkt/s  %s bit/s  worst: loss "
           "%s%%%s%s"
           "  jitter %s ms%s%s  rtt %s ms%s%s\n",
           n, by_tr[0], by_tr[1], by_tr[2], fmt_rate(pps, b1), fmt_rate(bps, b2), fmt_pct(wl, b3),
           *wl_id ? " #" : "", wl_id, fmt_ms(wj, b4), *wj_id ? " #" : "", wj_id, fmt_ms(wr, b5),
           *wr_id ? " #" : "", wr_id);
    fputc('\n', stdout);
    if (n) {
        struct table t = {0};
        allocations_table(&t, rows, n, true);
        tab_print(&t, cols, lines > 4 ? lines - 4 : 0);
        tab_free(&t);
        if (lines > 4 && n + 1 > lines - 4) printf("... %zu more", n + 1 - (lines - 4));
    }
    fflush(stdout);
}

int ctl_cmd_top(struct ctl *c, struct ops_opts *o, int argc, char **argv)
{
    static const struct option opts[] = {
        CTL_API_OPTIONS,
        {"interval", required_argument, NULL, 'i'},
        {"once", no_argument, NULL, '1'},
        {"count", required_argument, NULL, 'n'},
        {"from-file", required_argument, NULL, 'F'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    double interval = TOP_DEFAULT_INTERVAL;
    bool once = false;
    uint64_t count = 0;
    int opt;
    optind = 0;
    while ((opt = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        int r = ops_option(c, o, opt);
        if (r > 0) return r;
        if (r == 0) continue;
        switch (opt) {
        case 'i': {
            char *end;
            errno = 0;
            interval = strtod(optarg, &end);
            if (errno || end == optarg || *end || !(interval >= 0.1 && interval <= 3600))
                return ctl_usage_error("top: --interval wants seconds from 0.1 to 3600, not '%s'",
                                       optarg);
            break;
        }
        case '1':
            once = true;
            break;
        case 'n':
            if (ctl_parse_u64(optarg, UINT32_MAX, &count) || count == 0)
                return ctl_usage_error("top: --count wants a positive number of frames, not '%s'",
                                       optarg);
            break;
        case 'h':
            ctl_usage(stdout);
            return 0;
        default:
            return ctl_bad_option("top", argv, opt);
        }
    }
    if (optind != argc) return ctl_usage_error("top: unexpected argument '%s'", argv[optind]);
    if (once) count = 1;
    int rc = ops_setup(c, o);
    if (rc) return rc;

    bool ansi = !once && isatty(STDOUT_FILENO);
    bool keys = !once && isatty(STDIN_FILENO);
    struct sigaction sa = {.sa_handler = ctl_on_signal}; /* no SA_RESTART: poll returns */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    if (keys && tcgetattr(STDIN_FILENO, &saved_tio) == 0) {
        struct termios raw = saved_tio;
        raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO); /* ISIG stays: Ctrl-C is a signal */
        raw.c_cc[VMIN] = 1;
        raw.c_cc[VTIME] = 0;
        if (tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0) {
            tio_saved = true;
            if (ansi) fputs("\033[?25l", stdout); /* hide the cursor */
        }
    }

    struct prev_sample *prev = NULL;
    size_t nprev = 0;
    double prev_t = NAN;
    uint64_t frames = 0;
    bool have_prev = false;
    rc = 0;
    for (;;) {
        json_t *j, *list;
        if (fetch_allocations(c, &j, &list)) {
            rc = 1;
            break;
        }
        double t = parse_rfc3339(j, "sampled_at");
        if (isnan(t)) t = mono_now();
        size_t n;
        struct arow *rows = rows_of(list, SORT_QUALITY, &n);
        if (!rows && json_array_size(list)) {
            json_decref(j);
            rc = ctl_failure("out of memory");
            break;
        }
        double dt = have_prev ? t - prev_t : 0;
        for (size_t i = 0; i < n && dt > 0; i++) {
            struct prev_sample key = {.id = rows[i].idnum};
            struct prev_sample *p = bsearch(&key, prev, nprev, sizeof *prev, prev_cmp);
            if (!p) continue;
            double pk = rows[i].pk_c + rows[i].pk_p, by = rows[i].by_c + rows[i].by_p;
            if (!isnan(pk) && pk >= p->pk) rows[i].pps = (pk - p->pk) / dt;
            if (!isnan(by) && by >= p->by) rows[i].bps = (by - p->by) * 8 / dt;
        }
        /* Rates need two samples: --once waits one interval before its frame. */
        bool show = !once || have_prev;
        if (show) top_frame(c, j, rows, n, interval, ansi);
        struct prev_sample *np = n ? calloc(n, sizeof *np) : NULL;
        for (size_t i = 0; np && i < n; i++)
            np[i] = (struct prev_sample){rows[i].idnum, rows[i].pk_c + rows[i].pk_p,
                                         rows[i].by_c + rows[i].by_p};
        free(prev);
        prev = np;
        nprev = np ? n : 0;
        if (prev) qsort(prev, nprev, sizeof *prev, prev_cmp);
        prev_t = t;
        have_prev = true;
        free(rows);
        json_decref(j);
        if (show && count && ++frames >= count) break;
        if (top_wait(interval, keys)) break;
    }
    free(prev);
    restore_terminal();
    if (ansi && rc == 0) fputc('\n', stdout);
    return rc;
}

/* ternctl drain [--deadline S] | --cancel | --status: the node's drain through the API (POST,
 * DELETE or GET /api/v1/drain). Prints the state the server answers. */
int ctl_cmd_drain(struct ctl *c, struct ops_opts *o, int argc, char **argv)
{
    static const struct option opts[] = {
        CTL_API_OPTIONS,
        {"deadline", required_argument, NULL, 'D'},
        {"cancel", no_argument, NULL, 'C'},
        {"status", no_argument, NULL, 'S'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    bool cancel = false, status = false, json = false;
    uint64_t deadline = 0;
    int opt;
    optind = 0;
    while ((opt = getopt_long(argc, argv, ":jh", opts, NULL)) != -1) {
        int r = ops_option(c, o, opt);
        if (r > 0) return r;
        if (r == 0) continue;
        switch (opt) {
        case 'D':
            if (ctl_parse_u64(optarg, 7 * 86400, &deadline) || deadline == 0)
                return ctl_usage_error("drain: --deadline wants seconds, 1-604800, not '%s'",
                                       optarg);
            break;
        case 'C':
            cancel = true;
            break;
        case 'S':
            status = true;
            break;
        case 'j':
            json = true;
            break;
        case 'h':
            ctl_usage(stdout);
            return 0;
        default:
            return ctl_bad_option("drain", argv, opt);
        }
    }
    if (optind < argc) return ctl_usage_error("drain: unexpected argument '%s'", argv[optind]);
    if ((cancel || status) && deadline)
        return ctl_usage_error("drain: --deadline is for starting a drain");
    if (cancel && status) return ctl_usage_error("drain: --cancel and --status exclude each other");
    int rc = ops_setup(c, o);
    if (rc) return rc;
    json_t *req = NULL;
    if (!cancel && !status) {
        req = json_object();
        if (!req || (deadline && ctl_set_int(req, "deadline", deadline))) {
            json_decref(req);
            return ctl_failure("out of memory");
        }
    }
    json_t *j = NULL;
    const char *method = cancel ? "DELETE" : status ? "GET" : "POST";
    rc = ctl_api_call(c, method, "/api/v1/drain", req, &j);
    json_decref(req);
    if (rc) return 1;
    if (!(j = ctl_want_object(c, "/api/v1/drain", j))) return 1;
    if (json) {
        rc = print_json(j);
    } else {
        bool on = json_is_true(json_object_get(j, "draining"));
        uint64_t n = ctl_json_u64(j, "allocations", 0);
        if (on)
            printf("draining: %" PRIu64 " allocation%s left, deadline in %" PRIu64 " s\n", n,
                   n == 1 ? "" : "s", ctl_json_u64(j, "deadline_seconds", 0));
        else
            printf("in service: %" PRIu64 " allocation%s\n", n, n == 1 ? "" : "s");
    }
    json_decref(j);
    return rc;
}

/* ternctl reload: POST /api/v1/reload, as SIGHUP does. Prints the new generation and what
 * changed; a refused reload prints every problem and exits 1 (the running config stays). */
int ctl_cmd_reload(struct ctl *c, struct ops_opts *o, int argc, char **argv)
{
    static const struct option opts[] = {
        CTL_API_OPTIONS,
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    bool json = false;
    int opt;
    optind = 0;
    while ((opt = getopt_long(argc, argv, ":jh", opts, NULL)) != -1) {
        int r = ops_option(c, o, opt);
        if (r > 0) return r;
        if (r == 0) continue;
        switch (opt) {
        case 'j':
            json = true;
            break;
        case 'h':
            ctl_usage(stdout);
            return 0;
        default:
            return ctl_bad_option("reload", argv, opt);
        }
    }
    if (optind < argc) return ctl_usage_error("reload: unexpected argument '%s'", argv[optind]);
    int rc = ops_setup(c, o);
    if (rc) return rc;
    json_t *j = NULL;
    if (ctl_api_call(c, "POST", "/api/v1/reload", NULL, &j)) return 1;
    if (!(j = ctl_want_object(c, "/api/v1/reload", j))) return 1;
    if (json) {
        rc = print_json(j);
    } else {
        json_t *ch = json_object_get(j, "changed");
        printf("reloaded: configuration generation %" PRIu64 ", ",
               ctl_json_u64(j, "generation", 0));
        if (!json_array_size(ch)) printf("nothing changed");
        size_t i;
        json_t *k;
        json_array_foreach(ch, i, k)
        {
            char key[64];
            if (!json_is_string(k)) continue;
            ctl_clean_text(json_string_value(k), json_string_length(k), key, 60);
            printf("%s%s", i ? ", " : "changed: ", key);
        }
        printf("\n");
    }
    json_decref(j);
    return rc;
}
