/* log.c: structured event logging, text (key=value) or JSON lines, one write per event. */
#include <stdarg.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "addr.h"

/* The sink is set once by log_setup before any thread starts; level and format may change on
 * a live reload (log_set) while workers log, hence atomics (relaxed: a line or two in the old
 * format during the change is fine). */
static _Atomic int min_level = CFG_LOG_INFO;
static _Atomic int fmt = CFG_LOG_TEXT;
static FILE *sink;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void log_setup(enum cfg_log_level level, enum cfg_log_format format, FILE *out)
{
    sink = out;
    log_change(level, format);
}

void log_change(enum cfg_log_level level, enum cfg_log_format format)
{
    atomic_store_explicit(&min_level, (int)level, memory_order_relaxed);
    atomic_store_explicit(&fmt, (int)format, memory_order_relaxed);
}

int log_enabled(enum cfg_log_level level)
{
    return (int)level >= atomic_load_explicit(&min_level, memory_order_relaxed);
}

struct line {
    char buf[8192]; /* the shutdown "counters" event, every counter in one line, is the longest */
    size_t len;
    bool json; /* the format, read once per line */
};

static void put(struct line *l, const char *fmtstr, ...) __attribute__((format(printf, 2, 3)));
static void put(struct line *l, const char *fmtstr, ...)
{
    if (l->len >= sizeof(l->buf)) return;
    va_list ap;
    va_start(ap, fmtstr);
    int n = vsnprintf(l->buf + l->len, sizeof(l->buf) - l->len, fmtstr, ap);
    va_end(ap);
    if (n > 0) l->len += (size_t)n;
    if (l->len > sizeof(l->buf) - 1) l->len = sizeof(l->buf) - 1;
}

/* A string value: JSON-escaped, or in text quoted when it has spaces, quotes or '='. */
static void put_str(struct line *l, const char *s)
{
    bool quote = l->json || !*s || strpbrk(s, " \"=\t\n\\") != NULL;
    if (quote) put(l, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            put(l, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f)
            put(l, "\\u%04x", *p);
        else
            put(l, "%c", *p);
    }
    if (quote) put(l, "\"");
}

void log_emit(enum cfg_log_level level, const char *event, const struct log_field *f, size_t n)
{
    if (!log_enabled(level)) return;
    FILE *out = sink ? sink : stderr;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[40];
    size_t w = strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + w, sizeof(when) - w, ".%03ldZ", ts.tv_nsec / 1000000);

    struct line l = {.len = 0,
                     .json = atomic_load_explicit(&fmt, memory_order_relaxed) == CFG_LOG_JSON};
    if (l.json)
        put(&l, "{\"ts\":\"%s\",\"level\":\"%s\",\"event\":", when, level_names[level]);
    else
        put(&l, "%s %-5s ", when, level_names[level]);
    put_str(&l, event);
    for (size_t i = 0; i < n; i++) {
        if (l.json)
            put(&l, ",\"%s\":", f[i].key);
        else
            put(&l, " %s=", f[i].key);
        char abuf[ADDR_STRLEN];
        switch (f[i].type) {
        case LOG_F_STR:
            put_str(&l, f[i].v.s ? f[i].v.s : "");
            break;
        case LOG_F_INT:
            put(&l, "%lld", (long long)f[i].v.i);
            break;
        case LOG_F_UINT:
            put(&l, "%llu", (unsigned long long)f[i].v.u);
            break;
        case LOG_F_ADDR:
            put_str(&l, addr_str(f[i].v.a, abuf));
            break;
        }
    }
    if (l.json) put(&l, "}");
    l.buf[l.len++] = '\n';
    fwrite(l.buf, 1, l.len, out);
    fflush(out);
}
