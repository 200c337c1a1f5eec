/* log.c: structured event logging, text (key=value) or JSON lines, one write per event. */
#include <stdarg.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "addr.h"

/* Set once by log_setup before any thread starts; read-only afterwards. */
static enum cfg_log_level min_level = CFG_LOG_INFO;
static enum cfg_log_format fmt = CFG_LOG_TEXT;
static FILE *sink;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void log_setup(enum cfg_log_level level, enum cfg_log_format format, FILE *out)
{
    min_level = level;
    fmt = format;
    sink = out;
}

int log_enabled(enum cfg_log_level level)
{
    return level >= min_level;
}

struct line {
    char buf[8192]; /* the "counters" event at stop carries every counter: ~2.5 KiB and growing */
    size_t len;
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
    bool quote = fmt == CFG_LOG_JSON || !*s || strpbrk(s, " \"=\t\n\\") != NULL;
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

    struct line l = {.len = 0};
    if (fmt == CFG_LOG_JSON)
        put(&l, "{\"ts\":\"%s\",\"level\":\"%s\",\"event\":", when, level_names[level]);
    else
        put(&l, "%s %-5s ", when, level_names[level]);
    put_str(&l, event);
    for (size_t i = 0; i < n; i++) {
        if (fmt == CFG_LOG_JSON)
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
    if (fmt == CFG_LOG_JSON) put(&l, "}");
    l.buf[l.len++] = '\n';
    fwrite(l.buf, 1, l.len, out);
    fflush(out);
}
