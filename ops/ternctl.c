/* ternctl.c: the admin tool: users and REST secrets in the credential database, REST credentials. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "config.h"
#include "rest.h"
#include "store.h"

#ifndef TERN_VERSION
#define TERN_VERSION "0.1.0"
#endif

#define PASSWORD_MAX 1024 /* bytes; a longer line on stdin or the terminal is refused */
#define GENERATED_SECRET_BYTES 32

/* The global options, and the config when -c was given. */
struct ctl {
    const char *cfg_path; /* -c */
    const char *db_opt;   /* --db */
    const char *realm_opt; /* --realm */
    struct tern_config cfg;
    bool have_cfg;
    const char *db;    /* --db, else the config's auth.database; NULL: none named */
    const char *realm; /* --realm, else the config's server.realm, else "tern" */
    bool realm_chosen; /* --realm or -c: user list shows that realm only */
};

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: ternctl [GLOBAL OPTIONS] COMMAND [ARGS]\n"
            "\n"
            "Global options (before the command):\n"
            "  -c, --config FILE   take the database, realm, REST secrets, separator and\n"
            "                      listener URIs from ternd's configuration\n"
            "      --db FILE       the credential database (SQLite; default: the config's\n"
            "                      auth.database); user add and secret add create it\n"
            "      --realm REALM   realm of the users (default: the config's, else tern)\n"
            "  -V, --version       print the version and exit\n"
            "  -h, --help          this text\n"
            "\n"
            "Users (long-term credentials; only derived keys are stored):\n"
            "  user add NAME [--max-allocations N] [--bandwidth BYTES_PER_S] [--password-stdin]\n"
            "  user passwd NAME [--password-stdin]\n"
            "  user del NAME\n"
            "  user disable NAME\n"
            "  user enable NAME\n"
            "  user list [--json]   the realm's users (every realm without --realm or -c)\n"
            "      The password is asked twice on the terminal, or read from the first line\n"
            "      of standard input with --password-stdin; never from the command line.\n"
            "      --max-allocations 0 uses allocation.max_per_user; --bandwidth 0 is unlimited.\n"
            "\n"
            "TURN REST API secrets:\n"
            "  secret add [--secret-stdin | --generate]   --generate prints a new random\n"
            "                      secret once (32 bytes, base64)\n"
            "  secret list [--json] (secrets are shown by their first characters only)\n"
            "  secret del ID\n"
            "\n"
            "Credentials:\n"
            "  cred --user ID --ttl SECONDS [--json | --ice-servers] [--sha256]\n"
            "                      mint a REST credential (username \"<expiry><sep><ID>\") with the\n"
            "                      newest secret: the config's last auth.secrets entry, else the\n"
            "                      newest in the database; --ice-servers prints a WebRTC\n"
            "                      RTCConfiguration fragment with the config's listener URIs\n"
            "\n"
            "Exit status: 0 ok, 1 failure, 2 usage error.\n");
}

/* A usage error: one line naming it, then a hint. Returns 2. */
static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("ternctl: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\nTry 'ternctl --help'.\n", stderr);
    return 2;
}

/* A failure: one line naming what failed. Returns 1. */
static int failure(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int failure(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("ternctl: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

/* getopt_long (with a leading ':' in the option string, opterr 0) returned '?' or ':' for the
 * options of cmd (NULL: the global ones). The option is named only up to any '=', so a
 * mistyped "--pass=..." does not echo its value. */
static int bad_option(const char *cmd, char **argv, int c)
{
    const char *arg = argv[optind - 1], *sep = cmd ? ": " : "";
    int len = (int)strcspn(arg, "=");
    if (!cmd) cmd = "";
    if (c == ':')
        return usage_error("%s%soption '%.*s' needs an argument", cmd, sep, len, arg);
    if (optopt && optopt != '?' && strncmp(arg, "--", 2) != 0)
        return usage_error("%s%sunknown option '-%c'", cmd, sep, optopt);
    return usage_error("%s%sunknown or ambiguous option '%.*s'", cmd, sep, len, arg);
}

/* Refuse a password or secret given on the command line (ps, shell history). Returns 2. */
static int refuse_inline(const char *cmd, const char *what, const char *stdin_opt)
{
    return usage_error("%s: a %s is never taken from the command line (it would show in ps and "
                       "shell history); use %s or the prompt", cmd, what, stdin_opt);
}

/* Decimal digits only, no sign or spaces, at most max. 0 or -1. */
static int parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    if (!*s) return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return -1;
        unsigned d = (unsigned)(*s - '0');
        if (v > (max - d) / 10) return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* ---- reading passwords and secrets ---- */

static volatile sig_atomic_t got_signal;

static void on_signal(int sig)
{
    got_signal = sig;
}

/* Read one line from fd, byte by byte (nothing past the newline is consumed), without the
 * newline (and a '\r' before it). 1 a line, 0 end of input before any byte, -1 error or
 * interrupted (errno EINTR), -2 longer than max bytes. */
static int read_line(int fd, char *buf, size_t max, size_t *len)
{
    size_t n = 0;
    bool any = false;
    for (;;) {
        char ch;
        ssize_t r = read(fd, &ch, 1);
        if (r < 0) {
            if (errno == EINTR && !got_signal) continue;
            return -1;
        }
        if (r == 0) break;
        any = true;
        if (ch == '\n') break;
        if (n == max) {
            OPENSSL_cleanse(&ch, 1);
            return -2;
        }
        buf[n++] = ch;
    }
    if (n > 0 && buf[n - 1] == '\r') n--;
    buf[n] = '\0';
    *len = n;
    return any ? 1 : 0;
}

/* Ask for a line on /dev/tty with echo off. 0 ok, 1 failure (message printed). */
static int prompt_hidden(int fd, const char *prompt, char *buf, size_t max, const char *what,
                         size_t *len)
{
    struct termios old, quiet;
    bool have_tc = tcgetattr(fd, &old) == 0;
    struct sigaction sa = {.sa_handler = on_signal}, saved[4];
    static const int sigs[4] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
    sigemptyset(&sa.sa_mask); /* no SA_RESTART: a signal interrupts the read */
    got_signal = 0;
    for (int i = 0; i < 4; i++) sigaction(sigs[i], &sa, &saved[i]);
    if (have_tc) {
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHOE | ECHOK | ECHONL);
        tcsetattr(fd, TCSAFLUSH, &quiet);
    }
    if (write(fd, prompt, strlen(prompt)) < 0) { /* best effort: the prompt is a courtesy */ }
    int rc = read_line(fd, buf, max, len);
    if (have_tc) tcsetattr(fd, TCSAFLUSH, &old);
    if (write(fd, "\n", 1) < 0) { /* as above */ }
    for (int i = 0; i < 4; i++) sigaction(sigs[i], &saved[i], NULL);
    if (got_signal) {
        OPENSSL_cleanse(buf, max + 1);
        raise(got_signal); /* the terminal is restored; die of the signal as usual */
        return failure("interrupted");
    }
    if (rc == -2) return failure("%s longer than %zu bytes", what, max);
    if (rc < 0) return failure("reading the %s from the terminal: %s", what, strerror(errno));
    if (rc == 0) return failure("no %s entered (end of input)", what);
    if (*len == 0) return failure("empty %s", what);
    if (strlen(buf) != *len) return failure("the %s contains a NUL byte", what);
    return 0;
}

/* A password or secret: from the first line of stdin, or asked twice on the terminal.
 * buf holds max + 1 bytes. 0 ok, 1 failure (message printed). */
static int read_secret(bool from_stdin, const char *what, char *buf, size_t max)
{
    if (from_stdin) {
        size_t len = 0;
        int r = read_line(STDIN_FILENO, buf, max, &len), rc = 0;
        if (r == -2) rc = failure("%s on standard input is longer than %zu bytes", what, max);
        else if (r < 0) rc = failure("reading the %s from standard input: %s", what, strerror(errno));
        else if (r == 0 || len == 0) rc = failure("no %s on standard input (empty first line)", what);
        else if (strlen(buf) != len) rc = failure("the %s on standard input contains a NUL byte", what);
        if (rc) OPENSSL_cleanse(buf, max + 1);
        return rc;
    }
    int fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (fd < 0)
        return failure("no terminal to ask for the %s (%s); use --%s-stdin", what, strerror(errno),
                       strcmp(what, "password") == 0 ? "password" : "secret");
    char *again = malloc(max + 1);
    if (!again) {
        close(fd);
        return failure("out of memory");
    }
    char prompt[64], prompt2[64];
    snprintf(prompt, sizeof prompt, "New %s: ", what);
    snprintf(prompt2, sizeof prompt2, "Repeat the %s: ", what);
    size_t len, len2;
    int rc = prompt_hidden(fd, prompt, buf, max, what, &len);
    if (rc == 0) rc = prompt_hidden(fd, prompt2, again, max, what, &len2);
    if (rc == 0 && strcmp(buf, again) != 0) rc = failure("the two %ss differ; nothing changed", what);
    OPENSSL_cleanse(again, max + 1);
    free(again);
    close(fd);
    if (rc) OPENSSL_cleanse(buf, max + 1);
    return rc;
}

/* ---- output helpers ---- */

/* Length of the valid UTF-8 sequence at s (RFC 3629), or 0 when it is not one. */
static size_t utf8_seq(const unsigned char *s)
{
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t n;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F; /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else
        return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xBF) return 0;
    return n;
}

/* A JSON string literal: quotes, backslashes and control characters escaped, bytes that are
 * not UTF-8 replaced by U+FFFD, so the output always parses. */
static void json_str(FILE *f, const char *str)
{
    const unsigned char *s = (const unsigned char *)str;
    fputc('"', f);
    while (*s) {
        unsigned c = *s;
        if (c == '"' || c == '\\') {
            fputc('\\', f);
            fputc((int)c, f);
        } else if (c == '\n') fputs("\\n", f);
        else if (c == '\r') fputs("\\r", f);
        else if (c == '\t') fputs("\\t", f);
        else if (c < 0x20 || c == 0x7F) fprintf(f, "\\u%04x", c);
        else if (c < 0x80) fputc((int)c, f);
        else {
            size_t n = utf8_seq(s);
            if (!n) {
                fputs("\\ufffd", f);
                s++;
                continue;
            }
            fwrite(s, 1, n, f);
            s += n;
            continue;
        }
        s++;
    }
    fputc('"', f);
}

/* Characters (code points) in a UTF-8 string, for column widths. */
static size_t text_width(const char *s)
{
    size_t w = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80) w++;
    return w;
}

static void put_padded(const char *s, size_t width, bool last)
{
    fputs(s, stdout);
    if (last) return;
    for (size_t w = text_width(s); w < width + 2; w++) fputc(' ', stdout);
}

static void format_time(int64_t t, char out[32])
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm) || !strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(out, 32, "%" PRId64, t);
}

/* ---- the database ---- */

/* Open the database into *s: 0, 1 (it failed) or 2 (none named). */
static int open_db(const struct ctl *c, enum store_mode mode, struct store **s)
{
    *s = NULL;
    if (!c->db && c->have_cfg)
        return usage_error("%s has no auth.database; name the database with --db FILE",
                           c->cfg_path);
    if (!c->db) return usage_error("no database: name it with --db FILE (or -c FILE)");
    char err[STORE_ERR_LEN] = "";
    *s = store_open(c->db, mode, err);
    if (!*s) return failure("%s", err[0] ? err : "cannot open the database");
    return 0;
}

/* A store call failed: the facts the caller knows for "not found" and "exists", else the
 * store's own message. Returns 1. */
static int store_failure(int rc, const char *err, const char *not_found, const char *exists,
                         const char *doing)
{
    if (rc == STORE_NOT_FOUND && not_found) return failure("%s", not_found);
    if (rc == STORE_EXISTS && exists) return failure("%s", exists);
    if (err[0]) return failure("%s", err); /* the store names the file and the operation */
    return failure("%s failed (store error %d)", doing, rc);
}

struct find_user {
    const char *name;
    bool found;
};

static int find_user_fn(void *ctx, const struct store_user *u)
{
    struct find_user *f = ctx;
    if (strcmp(u->name, f->name) == 0) f->found = true;
    return f->found;
}

/* Whether realm has the user (asked before prompting, so a typo fails before the prompt).
 * 1 yes, 0 no, -1 error (message printed). */
static int user_exists(struct store *s, const char *realm, const char *name)
{
    char err[STORE_ERR_LEN] = "";
    struct find_user f = {.name = name};
    int rc = store_user_each(s, realm, find_user_fn, &f, err);
    if (rc != STORE_OK) {
        store_failure(rc, err, NULL, NULL, "reading the users");
        return -1;
    }
    return f.found;
}

/* ---- user commands ---- */

static int cmd_user_add(struct ctl *c, int argc, char **argv)
{
    static const struct option opts[] = {
        {"max-allocations", required_argument, NULL, 'm'},
        {"bandwidth", required_argument, NULL, 'b'},
        {"password-stdin", no_argument, NULL, 's'},
        {"password", required_argument, NULL, 'p'},
        {NULL, 0, NULL, 0},
    };
    uint64_t max_alloc = 0, bandwidth = 0;
    bool from_stdin = false;
    int opt;
    optind = 0;
    while ((opt = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (opt) {
        case 'm':
            if (parse_u64(optarg, UINT32_MAX, &max_alloc))
                return usage_error("user add: --max-allocations wants a number 0-%" PRIu32
                                   " (0: the config's allocation.max_per_user), not '%s'",
                                   UINT32_MAX, optarg);
            break;
        case 'b':
            if (parse_u64(optarg, UINT64_MAX, &bandwidth))
                return usage_error("user add: --bandwidth wants bytes per second (0: unlimited), "
                                   "not '%s'", optarg);
            break;
        case 's': from_stdin = true; break;
        case 'p': return refuse_inline("user add", "password", "--password-stdin");
        default: return bad_option("user add", argv, opt);
        }
    }
    if (optind != argc - 1) return usage_error("user add: wants one user NAME");
    const char *name = argv[optind];

    struct store *s;
    int orc = open_db(c, STORE_CREATE, &s);
    if (orc) return orc;
    char msg[STORE_ERR_LEN + 1200];
    snprintf(msg, sizeof msg, "user %s already exists in realm %s", name, c->realm);
    if (!from_stdin) {
        int have = user_exists(s, c->realm, name);
        if (have) {
            store_close(s);
            return have < 0 ? 1 : failure("%s", msg);
        }
    }
    char pw[PASSWORD_MAX + 1];
    int rc = read_secret(from_stdin, "password", pw, PASSWORD_MAX);
    if (rc == 0) {
        char err[STORE_ERR_LEN] = "";
        int r = store_user_add(s, c->realm, name, pw, (uint32_t)max_alloc, bandwidth, err);
        if (r != STORE_OK) {
            char doing[1200];
            snprintf(doing, sizeof doing, "adding user %s to realm %s", name, c->realm);
            rc = store_failure(r, err, NULL, msg, doing);
        } else
            printf("added user %s to realm %s\n", name, c->realm);
    }
    OPENSSL_cleanse(pw, sizeof pw);
    store_close(s);
    return rc;
}

static int cmd_user_passwd(struct ctl *c, int argc, char **argv)
{
    static const struct option opts[] = {
        {"password-stdin", no_argument, NULL, 's'},
        {"password", required_argument, NULL, 'p'},
        {NULL, 0, NULL, 0},
    };
    bool from_stdin = false;
    int opt;
    optind = 0;
    while ((opt = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (opt) {
        case 's': from_stdin = true; break;
        case 'p': return refuse_inline("user passwd", "password", "--password-stdin");
        default: return bad_option("user passwd", argv, opt);
        }
    }
    if (optind != argc - 1) return usage_error("user passwd: wants one user NAME");
    const char *name = argv[optind];

    struct store *s;
    int orc = open_db(c, STORE_EXISTING, &s);
    if (orc) return orc;
    char missing[1200];
    snprintf(missing, sizeof missing, "no user %s in realm %s", name, c->realm);
    if (!from_stdin) {
        int have = user_exists(s, c->realm, name);
        if (have <= 0) {
            store_close(s);
            return have < 0 ? 1 : failure("%s", missing);
        }
    }
    char pw[PASSWORD_MAX + 1];
    int rc = read_secret(from_stdin, "password", pw, PASSWORD_MAX);
    if (rc == 0) {
        char err[STORE_ERR_LEN] = "";
        int r = store_user_passwd(s, c->realm, name, pw, err);
        if (r != STORE_OK) {
            char doing[1200];
            snprintf(doing, sizeof doing, "changing the password of user %s in realm %s", name,
                     c->realm);
            rc = store_failure(r, err, missing, NULL, doing);
        } else
            printf("changed the password of user %s in realm %s\n", name, c->realm);
    }
    OPENSSL_cleanse(pw, sizeof pw);
    store_close(s);
    return rc;
}

enum user_change { CHANGE_DEL, CHANGE_DISABLE, CHANGE_ENABLE };

/* user del|disable|enable NAME */
static int cmd_user_change(struct ctl *c, int argc, char **argv, enum user_change what)
{
    static const struct option opts[] = {{NULL, 0, NULL, 0}};
    static const char *const cmds[] = {"user del", "user disable", "user enable"};
    static const char *const done[] = {"deleted", "disabled", "enabled"};
    static const char *const doing[] = {"deleting", "disabling", "enabling"};
    int opt;
    optind = 0;
    if ((opt = getopt_long(argc, argv, ":", opts, NULL)) != -1)
        return bad_option(cmds[what], argv, opt);
    if (optind != argc - 1) return usage_error("%s: wants one user NAME", cmds[what]);
    const char *name = argv[optind];

    struct store *s;
    int orc = open_db(c, STORE_EXISTING, &s);
    if (orc) return orc;
    char err[STORE_ERR_LEN] = "";
    int r = what == CHANGE_DEL ? store_user_del(s, c->realm, name, err)
                               : store_user_set_disabled(s, c->realm, name, what == CHANGE_DISABLE,
                                                         err);
    store_close(s);
    if (r != STORE_OK) {
        char missing[1200], act[1200];
        snprintf(missing, sizeof missing, "no user %s in realm %s", name, c->realm);
        snprintf(act, sizeof act, "%s user %s in realm %s", doing[what], name, c->realm);
        return store_failure(r, err, missing, NULL, act);
    }
    printf("%s user %s in realm %s\n", done[what], name, c->realm);
    return 0;
}

struct user_row {
    char *realm, *name;
    uint32_t max_allocations;
    uint64_t bandwidth_bps;
    bool disabled;
    int64_t created;
};

struct user_rows {
    struct user_row *v;
    size_t n, cap;
    bool oom;
};

static int collect_user(void *ctx, const struct store_user *u)
{
    struct user_rows *rows = ctx;
    if (rows->n == rows->cap) {
        size_t ncap = rows->cap ? rows->cap * 2 : 64;
        struct user_row *nv = realloc(rows->v, ncap * sizeof *nv);
        if (!nv) {
            rows->oom = true;
            return 1;
        }
        rows->v = nv;
        rows->cap = ncap;
    }
    struct user_row *r = &rows->v[rows->n];
    r->realm = strdup(u->realm);
    r->name = strdup(u->name);
    if (!r->realm || !r->name) {
        free(r->realm);
        free(r->name);
        rows->oom = true;
        return 1;
    }
    r->max_allocations = u->max_allocations;
    r->bandwidth_bps = u->bandwidth_bps;
    r->disabled = u->disabled;
    r->created = u->created;
    rows->n++;
    return 0;
}

static int cmd_user_list(struct ctl *c, int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, NULL, 'j'}, {NULL, 0, NULL, 0}};
    bool json = false;
    int opt;
    optind = 0;
    while ((opt = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        if (opt == 'j') json = true;
        else return bad_option("user list", argv, opt);
    }
    if (optind != argc) return usage_error("user list: unexpected argument '%s'", argv[optind]);

    struct store *s;
    int orc = open_db(c, STORE_EXISTING, &s);
    if (orc) return orc;
    struct user_rows rows = {0};
    char err[STORE_ERR_LEN] = "";
    int r = store_user_each(s, c->realm_chosen ? c->realm : NULL, collect_user, &rows, err);
    store_close(s);
    int rc = 0;
    if (r != STORE_OK) rc = store_failure(r, err, NULL, NULL, "listing the users");
    else if (rows.oom) rc = failure("out of memory listing the users");
    else if (json) {
        fputc('[', stdout);
        for (size_t i = 0; i < rows.n; i++) {
            const struct user_row *u = &rows.v[i];
            char when[32];
            format_time(u->created, when);
            fputs(i ? ",\n {\"realm\":" : "\n {\"realm\":", stdout);
            json_str(stdout, u->realm);
            fputs(",\"name\":", stdout);
            json_str(stdout, u->name);
            printf(",\"max_allocations\":%" PRIu32 ",\"bandwidth\":%" PRIu64
                   ",\"disabled\":%s,\"created\":\"%s\"}",
                   u->max_allocations, u->bandwidth_bps, u->disabled ? "true" : "false", when);
        }
        fputs(rows.n ? "\n]\n" : "]\n", stdout);
    } else {
        static const char *const head[6] = {"REALM", "NAME", "MAX ALLOCATIONS",
                                            "BANDWIDTH (B/s)", "DISABLED", "CREATED"};
        size_t w[6];
        for (int k = 0; k < 6; k++) w[k] = strlen(head[k]);
        char (*cells)[6][32] = calloc(rows.n ? rows.n : 1, sizeof *cells);
        if (!cells) rc = failure("out of memory listing the users");
        for (size_t i = 0; cells && i < rows.n; i++) {
            const struct user_row *u = &rows.v[i];
            if (u->max_allocations)
                snprintf(cells[i][2], 32, "%" PRIu32, u->max_allocations);
            else
                snprintf(cells[i][2], 32, "default");
            if (u->bandwidth_bps)
                snprintf(cells[i][3], 32, "%" PRIu64, u->bandwidth_bps);
            else
                snprintf(cells[i][3], 32, "unlimited");
            snprintf(cells[i][4], 32, "%s", u->disabled ? "yes" : "no");
            format_time(u->created, cells[i][5]);
            size_t cw[6] = {text_width(u->realm), text_width(u->name), strlen(cells[i][2]),
                            strlen(cells[i][3]), strlen(cells[i][4]), strlen(cells[i][5])};
            for (int k = 0; k < 6; k++)
                if (cw[k] > w[k]) w[k] = cw[k];
        }
        if (cells) {
            for (int k = 0; k < 6; k++) put_padded(head[k], w[k], k == 5);
            fputc('\n', stdout);
            for (size_t i = 0; i < rows.n; i++) {
                put_padded(rows.v[i].realm, w[0], false);
                put_padded(rows.v[i].name, w[1], false);
                for (int k = 2; k < 6; k++) put_padded(cells[i][k], w[k], k == 5);
                fputc('\n', stdout);
            }
            free(cells);
        }
    }
    for (size_t i = 0; i < rows.n; i++) {
        free(rows.v[i].realm);
        free(rows.v[i].name);
    }
    free(rows.v);
    return rc;
}

static int cmd_user(struct ctl *c, int argc, char **argv)
{
    if (argc < 2) return usage_error("user: wants add, passwd, del, disable, enable or list");
    const char *sub = argv[1];
    argc--;
    argv++;
    if (strcmp(sub, "add") == 0) return cmd_user_add(c, argc, argv);
    if (strcmp(sub, "passwd") == 0) return cmd_user_passwd(c, argc, argv);
    if (strcmp(sub, "del") == 0) return cmd_user_change(c, argc, argv, CHANGE_DEL);
    if (strcmp(sub, "disable") == 0) return cmd_user_change(c, argc, argv, CHANGE_DISABLE);
    if (strcmp(sub, "enable") == 0) return cmd_user_change(c, argc, argv, CHANGE_ENABLE);
    if (strcmp(sub, "list") == 0) return cmd_user_list(c, argc, argv);
    return usage_error("unknown command 'user %s' (add, passwd, del, disable, enable, list)", sub);
}

/* ---- secret commands ---- */

static int cmd_secret_add(struct ctl *c, int argc, char **argv)
{
    static const struct option opts[] = {
        {"secret-stdin", no_argument, NULL, 's'},
        {"generate", no_argument, NULL, 'g'},
        {"secret", required_argument, NULL, 'p'},
        {NULL, 0, NULL, 0},
    };
    bool from_stdin = false, generate = false;
    int opt;
    optind = 0;
    while ((opt = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (opt) {
        case 's': from_stdin = true; break;
        case 'g': generate = true; break;
        case 'p': return refuse_inline("secret add", "secret", "--secret-stdin, --generate");
        default: return bad_option("secret add", argv, opt);
        }
    }
    if (optind != argc) return usage_error("secret add: unexpected argument '%s'", argv[optind]);
    if (from_stdin && generate)
        return usage_error("secret add: --secret-stdin and --generate exclude each other");

    char secret[STORE_MAX_SECRET + 1];
    int rc = 0;
    if (generate) {
        uint8_t raw[GENERATED_SECRET_BYTES];
        if (RAND_bytes(raw, sizeof raw) != 1) return failure("generating a secret: RAND_bytes failed");
        EVP_EncodeBlock((unsigned char *)secret, raw, (int)sizeof raw);
        OPENSSL_cleanse(raw, sizeof raw);
    } else if ((rc = read_secret(from_stdin, "secret", secret, STORE_MAX_SECRET)) != 0)
        return rc;

    struct store *s;
    rc = open_db(c, STORE_CREATE, &s);
    if (s) {
        char err[STORE_ERR_LEN] = "";
        int64_t id = 0;
        int r = store_secret_add(s, secret, &id, err);
        store_close(s);
        if (r != STORE_OK) {
            char doing[PATH_MAX + 64];
            snprintf(doing, sizeof doing, "adding a secret to %s", c->db);
            rc = store_failure(r, err, NULL, NULL, doing);
        } else if (generate) {
            /* stdout is the secret alone, so S=$(ternctl secret add --generate) works. */
            printf("%s\n", secret);
            fprintf(stderr, "ternctl: added secret %" PRId64 " (shown only now)\n", id);
        } else
            printf("added secret %" PRId64 "\n", id);
    }
    OPENSSL_cleanse(secret, sizeof secret);
    return rc;
}

struct secret_rows {
    struct {
        int64_t id, created;
        char shown[4 * 4 + sizeof "…"]; /* up to 4 UTF-8 characters and the ellipsis */
    } * v;
    size_t n, cap;
    bool oom;
};

static int collect_secret(void *ctx, const struct store_secret *sec)
{
    struct secret_rows *rows = ctx;
    if (rows->n == rows->cap) {
        size_t ncap = rows->cap ? rows->cap * 2 : 16;
        void *nv = realloc(rows->v, ncap * sizeof *rows->v);
        if (!nv) {
            rows->oom = true;
            return 1;
        }
        rows->v = nv;
        rows->cap = ncap;
    }
    /* The first 4 characters, fewer for a short secret so at most half of it shows. */
    size_t chars = text_width(sec->secret), show = chars / 2 < 4 ? chars / 2 : 4, len = 0;
    for (size_t k = 0; k < show; k++) {
        len++;
        while (((unsigned char)sec->secret[len] & 0xC0) == 0x80) len++;
    }
    rows->v[rows->n].id = sec->id;
    rows->v[rows->n].created = sec->created;
    snprintf(rows->v[rows->n].shown, sizeof rows->v[rows->n].shown, "%.*s…", (int)len,
             sec->secret);
    rows->n++;
    return 0;
}

static int cmd_secret_list(struct ctl *c, int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, NULL, 'j'}, {NULL, 0, NULL, 0}};
    bool json = false;
    int opt;
    optind = 0;
    while ((opt = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        if (opt == 'j') json = true;
        else return bad_option("secret list", argv, opt);
    }
    if (optind != argc) return usage_error("secret list: unexpected argument '%s'", argv[optind]);

    struct store *s;
    int orc = open_db(c, STORE_EXISTING, &s);
    if (orc) return orc;
    struct secret_rows rows = {0};
    char err[STORE_ERR_LEN] = "";
    int r = store_secret_each(s, collect_secret, &rows, err);
    store_close(s);
    int rc = 0;
    if (r != STORE_OK) rc = store_failure(r, err, NULL, NULL, "listing the secrets");
    else if (rows.oom) rc = failure("out of memory listing the secrets");
    else if (json) {
        fputc('[', stdout);
        for (size_t i = 0; i < rows.n; i++) {
            char when[32];
            format_time(rows.v[i].created, when);
            printf("%s {\"id\":%" PRId64 ",\"created\":\"%s\",\"secret\":", i ? ",\n" : "\n",
                   rows.v[i].id, when);
            json_str(stdout, rows.v[i].shown);
            fputc('}', stdout);
        }
        fputs(rows.n ? "\n]\n" : "]\n", stdout);
    } else {
        int idw = 2;
        for (size_t i = 0; i < rows.n; i++) {
            int w = snprintf(NULL, 0, "%" PRId64, rows.v[i].id);
            if (w > idw) idw = w;
        }
        printf("%-*s  %-20s  %s\n", idw, "ID", "CREATED", "SECRET");
        for (size_t i = 0; i < rows.n; i++) {
            char when[32];
            format_time(rows.v[i].created, when);
            printf("%*" PRId64 "  %-20s  %s\n", idw, rows.v[i].id, when, rows.v[i].shown);
        }
    }
    free(rows.v);
    return rc;
}

static int cmd_secret_del(struct ctl *c, int argc, char **argv)
{
    static const struct option opts[] = {{NULL, 0, NULL, 0}};
    int opt;
    optind = 0;
    if ((opt = getopt_long(argc, argv, ":", opts, NULL)) != -1)
        return bad_option("secret del", argv, opt);
    if (optind != argc - 1) return usage_error("secret del: wants one secret ID (see secret list)");
    uint64_t id;
    if (parse_u64(argv[optind], INT64_MAX, &id) || id == 0)
        return usage_error("secret del: the ID is a positive number (see secret list), not '%s'",
                           argv[optind]);

    struct store *s;
    int orc = open_db(c, STORE_EXISTING, &s);
    if (orc) return orc;
    char err[STORE_ERR_LEN] = "";
    int r = store_secret_del(s, (int64_t)id, err);
    store_close(s);
    if (r != STORE_OK) {
        char missing[PATH_MAX + 64], doing[PATH_MAX + 64];
        snprintf(missing, sizeof missing, "no secret %" PRIu64 " in %s", id, c->db);
        snprintf(doing, sizeof doing, "deleting secret %" PRIu64 " from %s", id, c->db);
        return store_failure(r, err, missing, NULL, doing);
    }
    printf("deleted secret %" PRIu64 "\n", id);
    return 0;
}

static int cmd_secret(struct ctl *c, int argc, char **argv)
{
    if (argc < 2) return usage_error("secret: wants add, list or del");
    const char *sub = argv[1];
    argc--;
    argv++;
    if (strcmp(sub, "add") == 0) return cmd_secret_add(c, argc, argv);
    if (strcmp(sub, "list") == 0) return cmd_secret_list(c, argc, argv);
    if (strcmp(sub, "del") == 0) return cmd_secret_del(c, argc, argv);
    return usage_error("unknown command 'secret %s' (add, list, del)", sub);
}

/* ---- cred ---- */

struct newest {
    struct store_secret best;
    bool found;
};

static int newest_secret(void *ctx, const struct store_secret *sec)
{
    struct newest *n = ctx;
    if (!n->found || sec->created > n->best.created ||
        (sec->created == n->best.created && sec->id > n->best.id)) {
        n->best = *sec;
        n->found = true;
    }
    return 0;
}

#define MAX_URIS 64
#define HOST_LEN 1025 /* NI_MAXHOST */
#define URI_LEN  (HOST_LEN + 48)

struct uris {
    char v[MAX_URIS][URI_LEN];
    size_t n;
};

static bool is_wildcard(const union stun_addr *a)
{
    if (a->sa.sa_family == AF_INET) return a->v4.sin_addr.s_addr == htonl(INADDR_ANY);
    if (a->sa.sa_family == AF_INET6) return IN6_IS_ADDR_UNSPECIFIED(&a->v6.sin6_addr);
    return true;
}

/* The address as a URI host: IPv6 in brackets. */
static void uri_host(const union stun_addr *a, char *out, size_t len)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (a->sa.sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &a->v6.sin6_addr, ip, sizeof ip);
        snprintf(out, len, "[%s]", ip);
    } else {
        inet_ntop(AF_INET, &a->v4.sin_addr, ip, sizeof ip);
        snprintf(out, len, "%s", ip);
    }
}

/* The URIs clients reach the config's listeners by (RFC 7065), without duplicates. */
static int listener_uris(const struct tern_config *cfg, struct uris *u)
{
    char hostname[HOST_LEN] = "";
    u->n = 0;
    for (size_t i = 0; i < cfg->nlisten; i++) {
        const struct cfg_listen *l = &cfg->listen[i];
        char host[HOST_LEN];
        if (cfg->relay_external.sa.sa_family == AF_INET ||
            cfg->relay_external.sa.sa_family == AF_INET6)
            uri_host(&cfg->relay_external, host, sizeof host);
        else if (!is_wildcard(&l->addr))
            uri_host(&l->addr, host, sizeof host);
        else {
            if (!hostname[0]) {
                if (gethostname(hostname, sizeof hostname - 1) != 0 || !hostname[0])
                    return failure("listen[%zu] is a wildcard address and the host name is "
                                   "unknown (%s); set relay.external_address", i, strerror(errno));
                hostname[sizeof hostname - 1] = '\0';
            }
            snprintf(host, sizeof host, "%s", hostname);
        }
        uint16_t port = ntohs(l->addr.sa.sa_family == AF_INET6 ? l->addr.v6.sin6_port
                                                               : l->addr.v4.sin_port);
        char uri[URI_LEN];
        snprintf(uri, sizeof uri, "%s:%s:%u?transport=%s", l->transport == CFG_TLS ? "turns" : "turn",
                 host, port, l->transport == CFG_UDP ? "udp" : "tcp");
        bool dup = false;
        for (size_t k = 0; k < u->n && !dup; k++) dup = strcmp(u->v[k], uri) == 0;
        if (!dup && u->n < MAX_URIS) memcpy(u->v[u->n++], uri, sizeof uri);
    }
    return 0;
}

static void json_uris(const struct uris *u)
{
    fputc('[', stdout);
    for (size_t i = 0; i < u->n; i++) {
        if (i) fputc(',', stdout);
        json_str(stdout, u->v[i]);
    }
    fputc(']', stdout);
}

static int cmd_cred(struct ctl *c, int argc, char **argv)
{
    static const struct option opts[] = {
        {"user", required_argument, NULL, 'u'},
        {"ttl", required_argument, NULL, 't'},
        {"json", no_argument, NULL, 'j'},
        {"ice-servers", no_argument, NULL, 'i'},
        {"sha256", no_argument, NULL, 's'},
        {NULL, 0, NULL, 0},
    };
    const char *user = NULL, *ttl_arg = NULL;
    bool json = false, ice = false, sha256 = false;
    int opt;
    optind = 0;
    while ((opt = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (opt) {
        case 'u': user = optarg; break;
        case 't': ttl_arg = optarg; break;
        case 'j': json = true; break;
        case 'i': ice = true; break;
        case 's': sha256 = true; break;
        default: return bad_option("cred", argv, opt);
        }
    }
    if (optind != argc) return usage_error("cred: unexpected argument '%s'", argv[optind]);
    if (!user || !*user) return usage_error("cred: --user ID is required");
    if (!ttl_arg) return usage_error("cred: --ttl SECONDS is required");
    if (json && ice) return usage_error("cred: --json and --ice-servers exclude each other");
    time_t now = time(NULL);
    uint64_t ttl;
    if (parse_u64(ttl_arg, (uint64_t)INT64_MAX - (uint64_t)now, &ttl) || ttl == 0)
        return usage_error("cred: --ttl wants a positive number of seconds, not '%s'", ttl_arg);

    const char *sep = c->have_cfg ? c->cfg.rest_separator : ":";
    char username[STUN_MAX_USERNAME + 1];
    int ulen = snprintf(username, sizeof username, "%" PRIu64 "%s%s", (uint64_t)now + ttl, sep,
                        user);
    if (ulen < 0 || (size_t)ulen >= sizeof username)
        return usage_error("cred: the username would be longer than %d bytes", STUN_MAX_USERNAME);

    /* The newest secret: the config's last one (the file lists old then new while rotating),
     * else the database's newest. */
    char secret[STORE_MAX_SECRET + 1];
    if (c->have_cfg && c->cfg.nsecrets > 0) {
        const char *last = c->cfg.secrets[c->cfg.nsecrets - 1];
        if (strlen(last) > STORE_MAX_SECRET)
            return failure("%s: auth.secrets: the last secret is longer than %d bytes",
                           c->cfg_path, STORE_MAX_SECRET);
        snprintf(secret, sizeof secret, "%s", last);
    } else {
        if (!c->db && c->have_cfg)
            return failure("no REST secret: %s has neither auth.secrets nor auth.database",
                           c->cfg_path);
        if (!c->db)
            return usage_error("cred: no REST secret: name the database with --db FILE or a "
                               "config with auth.secrets with -c FILE");
        if (access(c->db, F_OK) != 0)
            return failure("no REST secret: %s%s%s does not exist (add one with "
                           "'ternctl secret add')", c->have_cfg ? c->cfg_path : "",
                           c->have_cfg ? " has no auth.secrets and " : "", c->db);
        struct store *s;
        int orc = open_db(c, STORE_EXISTING, &s);
        if (orc) return orc;
        struct newest n = {.found = false};
        char err[STORE_ERR_LEN] = "";
        int r = store_secret_each(s, newest_secret, &n, err);
        store_close(s);
        if (r != STORE_OK) {
            OPENSSL_cleanse(&n, sizeof n);
            return store_failure(r, err, NULL, NULL, "reading the secrets");
        }
        if (!n.found)
            return failure("no REST secret: %s has none%s (add one with 'ternctl secret add')",
                           c->db, c->have_cfg ? " and the config's auth.secrets is empty" : "");
        memcpy(secret, n.best.secret, sizeof secret);
        OPENSSL_cleanse(&n, sizeof n);
    }

    char password[AUTH_REST_PASSWORD_MAX];
    size_t plen = auth_rest_password(sha256 ? AUTH_REST_HMAC_SHA256 : AUTH_REST_HMAC_SHA1,
                                     (const uint8_t *)secret, strlen(secret),
                                     (const uint8_t *)username, (size_t)ulen, password);
    OPENSSL_cleanse(secret, sizeof secret);
    if (plen == 0) return failure("computing the REST password: the HMAC failed");
    password[plen] = '\0';

    if (!json && !ice) {
        printf("username: %s\npassword: %s\n", username, password);
        return 0;
    }
    struct uris *u = calloc(1, sizeof *u);
    if (!u) return failure("out of memory");
    if (c->have_cfg && listener_uris(&c->cfg, u)) {
        free(u);
        return 1;
    }
    if (ice && !c->have_cfg)
        fprintf(stderr, "ternctl: warning: no -c config, so the urls list is empty\n");
    if (json) {
        fputs("{\"username\":", stdout);
        json_str(stdout, username);
        fputs(",\"password\":", stdout);
        json_str(stdout, password);
        printf(",\"ttl\":%" PRIu64 ",\"uris\":", ttl);
        json_uris(u);
        fputs("}\n", stdout);
    } else {
        fputs("{\"iceServers\":[{\"urls\":", stdout);
        json_uris(u);
        fputs(",\"username\":", stdout);
        json_str(stdout, username);
        fputs(",\"credential\":", stdout);
        json_str(stdout, password);
        fputs("}]}\n", stdout);
    }
    free(u);
    return 0;
}

/* ---- main ---- */

static int run(struct ctl *c, int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"db", required_argument, NULL, 'd'},
        {"realm", required_argument, NULL, 'r'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int opt;
    opterr = 0;
    /* '+': stop at the command, whose own options come after it. */
    while ((opt = getopt_long(argc, argv, "+:c:Vh", opts, NULL)) != -1) {
        switch (opt) {
        case 'c': c->cfg_path = optarg; break;
        case 'd': c->db_opt = optarg; break;
        case 'r': c->realm_opt = optarg; break;
        case 'V': printf("ternctl %s\n", TERN_VERSION); return 0;
        case 'h': usage(stdout); return 0;
        default: return bad_option(NULL, argv, opt);
        }
    }
    if (optind >= argc) return usage_error("no command given (user, secret or cred)");
    const char *cmd = argv[optind];
    if (strcmp(cmd, "user") != 0 && strcmp(cmd, "secret") != 0 && strcmp(cmd, "cred") != 0)
        return usage_error("unknown command '%s' (user, secret or cred)", cmd);
    if (c->db_opt && !*c->db_opt) return usage_error("--db wants a file name");
    if (c->realm_opt && !*c->realm_opt) return usage_error("--realm wants a realm");

    if (c->cfg_path) {
        if (cfg_load(&c->cfg, c->cfg_path, stderr))
            return failure("%s: configuration is not valid", c->cfg_path);
        c->have_cfg = true;
    }
    c->db = c->db_opt ? c->db_opt : c->have_cfg ? c->cfg.database : NULL; /* NULL: none */
    c->realm = c->realm_opt ? c->realm_opt : c->have_cfg ? c->cfg.realm : "tern";
    c->realm_chosen = c->realm_opt || c->have_cfg;

    argc -= optind;
    argv += optind;
    if (strcmp(cmd, "user") == 0) return cmd_user(c, argc, argv);
    if (strcmp(cmd, "secret") == 0) return cmd_secret(c, argc, argv);
    return cmd_cred(c, argc, argv);
}

int main(int argc, char **argv)
{
    /* The database holds keys and secrets: whatever this creates is the owner's alone. */
    umask(077);
    struct ctl c = {0};
    int rc = run(&c, argc, argv);
    if (c.have_cfg) cfg_free(&c.cfg);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "ternctl: writing the output: %s\n", strerror(errno));
        if (rc == 0) rc = 1;
    }
    return rc;
}
