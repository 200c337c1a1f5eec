/* log.h: leveled, structured logs: one line per event, as text or as JSON. */
#ifndef TERN_LOG_H
#define TERN_LOG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"

enum log_ftype { LOG_F_STR, LOG_F_INT, LOG_F_UINT, LOG_F_ADDR };

/* One key=value field of an event. Strings are borrowed for the call. */
struct log_field {
    const char *key;
    enum log_ftype type;
    union {
        const char *s;
        int64_t i;
        uint64_t u;
        const union stun_addr *a;
    } v;
};

#define LF_S(k, x) ((struct log_field){.key = (k), .type = LOG_F_STR, .v.s = (x)})
#define LF_I(k, x) ((struct log_field){.key = (k), .type = LOG_F_INT, .v.i = (int64_t)(x)})
#define LF_U(k, x) ((struct log_field){.key = (k), .type = LOG_F_UINT, .v.u = (uint64_t)(x)})
#define LF_A(k, x) ((struct log_field){.key = (k), .type = LOG_F_ADDR, .v.a = (x)})

/* Set where and how events are written. Called once at start, before threads exist. */
void log_setup(enum cfg_log_level level, enum cfg_log_format format, FILE *out);
/* Change level and format while threads log (live reload). */
void log_change(enum cfg_log_level level, enum cfg_log_format format);
int log_enabled(enum cfg_log_level level);
void log_emit(enum cfg_log_level level, const char *event, const struct log_field *f, size_t n);

/* tlog(CFG_LOG_INFO, "listening", LF_S("transport", "udp"), LF_A("address", &a));
 * At least one field; use tlog0 for none. Fields are not evaluated below the level. */
#define tlog(level, event, ...)                                                                    \
    do {                                                                                           \
        if (log_enabled(level)) {                                                                  \
            const struct log_field tlog_f_[] = {__VA_ARGS__};                                      \
            log_emit(level, event, tlog_f_, sizeof(tlog_f_) / sizeof(tlog_f_[0]));                 \
        }                                                                                          \
    } while (0)
#define tlog0(level, event) log_emit(level, event, NULL, 0)

#endif
