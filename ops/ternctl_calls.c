/* ternctl_calls.c: ternctl calls: the fleet's ended calls from the call_quality table
 * (qos.record_database; store_calls_each), the worst first: when, which node, who, how long,
 * why it ended, and the worst loss, jitter and RTT with the leg each was on. */
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "ternctl.h"
#include "uris.h"

#define CALLS_DEFAULT_SINCE 3600 /* seconds: the last hour */
#define CALLS_DEFAULT_LIMIT 20
#define CALLS_MAX_SINCE     (400LL * 86400)

/* "90", "90s", "15m", "1h", "2d": seconds into *out. 0, or -1 when it is not a duration. */
static int parse_duration(const char *s, int64_t *out)
{
    uint64_t v;
    char num[24];
    size_t n = strlen(s);
    int64_t unit = 1;
    if (n == 0 || n >= sizeof num) return -1;
    memcpy(num, s, n + 1);
    switch (num[n - 1]) {
    case 's':
        unit = 1;
        break;
    case 'm':
        unit = 60;
        break;
    case 'h':
        unit = 3600;
        break;
    case 'd':
        unit = 86400;
        break;
    default:
        if (num[n - 1] < '0' || num[n - 1] > '9') return -1;
        n++;
    }
    num[n - 1] = '\0';
    if (ctl_parse_u64(num, (uint64_t)(CALLS_MAX_SINCE / unit), &v) || v == 0) return -1;
    *out = (int64_t)v * unit;
    return 0;
}

struct call_row {
    struct store_call c; /* c.record: NULL (the text is in record) */
    char *record;
};

struct call_rows {
    struct call_row *v;
    size_t n, cap;
    bool oom;
};

static int collect_call(void *ctx, const struct store_call *c)
{
    struct call_rows *rows = ctx;
    struct call_row *v = ctl_room(rows->v, &rows->cap, rows->n, sizeof *v);
    if (!v) {
        rows->oom = true;
        return 1;
    }
    rows->v = v;
    v[rows->n].c = *c;
    v[rows->n].c.record = NULL;
    if (!(v[rows->n].record = strdup(c->record ? c->record : "null"))) {
        rows->oom = true;
        return 1;
    }
    rows->n++;
    return 0;
}

static void free_rows(struct call_rows *rows)
{
    for (size_t i = 0; i < rows->n; i++)
        free(rows->v[i].record);
    free(rows->v);
}

static json_t *num_or_null(double v)
{
    return isnan(v) ? json_null() : json_real(v);
}

static json_t *leg_or_null(const char *leg)
{
    return *leg ? json_string(leg) : json_null();
}

static void iso_time(double unix_s, char out[40])
{
    if (isnan(unix_s)) {
        snprintf(out, 40, "-");
        return;
    }
    time_t t = (time_t)floor(unix_s);
    struct tm tm;
    char base[24];
    if (!gmtime_r(&t, &tm) || !strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm)) {
        snprintf(out, 40, "%.3f", unix_s);
        return;
    }
    unsigned ms = (unsigned)((unix_s - floor(unix_s)) * 1000.0) % 1000;
    snprintf(out, 40, "%s.%03uZ", base, ms);
}

/* calls --json: one object per call, one per line, with the whole record. */
static int print_calls_json(const struct call_rows *rows)
{
    json_t *list = json_array();
    for (size_t i = 0; list && i < rows->n; i++) {
        const struct store_call *c = &rows->v[i].c;
        char started[40], ended[40];
        iso_time(c->started_at, started);
        iso_time(c->ended_at, ended);
        json_t *rec = json_loads(rows->v[i].record, 0, NULL);
        json_t *o = json_pack(
            "{s:I, s:o, s:o, s:o, s:s, s:s, s:o, s:o, s:{s:{s:o, s:o}, s:{s:o, s:o}, s:{s:o, "
            "s:o}}, "
            "s:o}",
            "id", (json_int_t)c->id, "node", ops_json_text(c->node), "user", ops_json_text(c->user),
            "realm", ops_json_text(c->realm), "started_at", started, "ended_at", ended,
            "duration_seconds", num_or_null(c->duration), "reason", ops_json_text(c->reason),
            "worst", "loss", "ratio", num_or_null(c->worst_loss), "leg",
            leg_or_null(c->worst_loss_leg), "jitter", "seconds", num_or_null(c->worst_jitter),
            "leg", leg_or_null(c->worst_jitter_leg), "rtt", "seconds", num_or_null(c->worst_rtt),
            "leg", leg_or_null(c->worst_rtt_leg), "record", rec ? rec : json_null());
        ctl_json_append(&list, o);
    }
    return ctl_print_json_rows(list);
}

/* "5.00 peer", "-" when not measured. */
static void worst_cell(double v, double scale, int decimals, const char *leg, char out[48])
{
    if (isnan(v)) {
        snprintf(out, 48, "-");
        return;
    }
    char num[24];
    snprintf(num, sizeof num, "%.*f", decimals, v * scale);
    snprintf(out, 48, "%s %s", num, *leg ? leg : "?");
}

static void duration_cell(double s, char out[32])
{
    if (isnan(s) || s < 0) {
        snprintf(out, 32, "-");
        return;
    }
    uint64_t t = (uint64_t)s;
    if (t < 60)
        snprintf(out, 32, "%.1fs", s);
    else if (t < 3600)
        snprintf(out, 32, "%" PRIu64 "m%02" PRIu64 "s", t / 60, t % 60);
    else
        snprintf(out, 32, "%" PRIu64 "h%02" PRIu64 "m", t / 3600, t / 60 % 60);
}

/* calls: a table, text from the database escaped for the terminal. */
static int print_calls_table(const struct call_rows *rows)
{
    enum { NCOL = 8 };
    static const char *const head[NCOL] = {"ENDED",  "NODE",      "USER",       "DURATION",
                                           "REASON", "LOSS% LEG", "JIT ms LEG", "RTT ms LEG"};
    size_t w[NCOL];
    for (int k = 0; k < NCOL; k++)
        w[k] = strlen(head[k]);
    char(*cells)[NCOL][160] = calloc(rows->n ? rows->n : 1, sizeof *cells);
    if (!cells) return ctl_failure("out of memory listing the calls");
    for (size_t i = 0; i < rows->n; i++) {
        const struct store_call *c = &rows->v[i].c;
        char(*r)[160] = cells[i];
        iso_time(c->ended_at, r[0]);
        ctl_clean_text(c->node, strlen(c->node), r[1], 64);
        ctl_clean_text(c->user, strlen(c->user), r[2], 64);
        if (!r[2][0]) snprintf(r[2], 160, "-");
        duration_cell(c->duration, r[3]);
        ctl_clean_text(c->reason, strlen(c->reason), r[4], 31);
        worst_cell(c->worst_loss, 100.0, 2, c->worst_loss_leg, r[5]);
        worst_cell(c->worst_jitter, 1e3, 1, c->worst_jitter_leg, r[6]);
        worst_cell(c->worst_rtt, 1e3, 1, c->worst_rtt_leg, r[7]);
        for (int k = 0; k < NCOL; k++) {
            size_t cw = ctl_text_width(r[k]);
            if (cw > w[k]) w[k] = cw;
        }
    }
    for (int k = 0; k < NCOL; k++)
        ctl_put_padded(head[k], w[k], k == NCOL - 1);
    fputc('\n', stdout);
    for (size_t i = 0; i < rows->n; i++) {
        for (int k = 0; k < NCOL; k++)
            ctl_put_padded(cells[i][k], w[k], k == NCOL - 1);
        fputc('\n', stdout);
    }
    free(cells);
    return 0;
}

int ctl_cmd_calls(struct ctl *c, int argc, char **argv)
{
    static const struct option opts[] = {
        {"since", required_argument, NULL, 's'}, {"user", required_argument, NULL, 'u'},
        {"worst", required_argument, NULL, 'w'}, {"limit", required_argument, NULL, 'l'},
        {"json", no_argument, NULL, 'j'},        {NULL, 0, NULL, 0},
    };
    int64_t since = CALLS_DEFAULT_SINCE;
    uint64_t limit = CALLS_DEFAULT_LIMIT;
    const char *user = NULL;
    enum store_calls_order order = STORE_CALLS_BY_LOSS;
    bool json = false;
    int opt;
    optind = 0;
    while ((opt = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (opt) {
        case 's':
            if (parse_duration(optarg, &since))
                return ctl_usage_error("calls: --since wants a duration such as 90s, 15m, 1h or "
                                       "2d (up to 400d)");
            break;
        case 'u':
            user = optarg;
            if (!*user) return ctl_usage_error("calls: --user wants a user name");
            break;
        case 'w':
            if (strcmp(optarg, "loss") == 0)
                order = STORE_CALLS_BY_LOSS;
            else if (strcmp(optarg, "jitter") == 0)
                order = STORE_CALLS_BY_JITTER;
            else if (strcmp(optarg, "rtt") == 0)
                order = STORE_CALLS_BY_RTT;
            else
                return ctl_usage_error("calls: --worst wants loss, jitter or rtt");
            break;
        case 'l':
            if (ctl_parse_u64(optarg, 100000, &limit) || limit == 0)
                return ctl_usage_error("calls: --limit wants a number from 1 to 100000");
            break;
        case 'j':
            json = true;
            break;
        default:
            return ctl_bad_option("calls", argv, opt);
        }
    }
    if (optind != argc) return ctl_usage_error("calls: unexpected argument '%s'", argv[optind]);

    struct store *s;
    int orc = ctl_open_db(c, STORE_EXISTING, &s);
    if (orc) return orc;
    struct call_rows rows = {0};
    char err[STORE_ERR_LEN] = "";
    int rc = 0;
    int r = store_calls_each(s, (int64_t)time(NULL) - since, user, order, (size_t)limit,
                             collect_call, &rows, err);
    store_close(s);
    if (r != STORE_OK)
        rc = ctl_store_failure(r, err, NULL, NULL, "listing the calls");
    else if (rows.oom)
        rc = ctl_failure("out of memory listing the calls");
    else
        rc = json ? print_calls_json(&rows) : print_calls_table(&rows);
    free_rows(&rows);
    return rc;
}
