/* ternctl.c: the admin tool: users and REST secrets in the credential database, REST credentials;
 * with --url the same commands through ternd's admin HTTP API (libcurl, jansson). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <malloc.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "config.h"
#include "addr.h"
#include "rest.h"
#include "store.h"
#include "uris.h"

#ifndef TERN_VERSION
#define TERN_VERSION "0.1.0"
#endif

#define PASSWORD_MAX           1024 /* bytes; a longer line on stdin or the terminal is refused */
#define GENERATED_SECRET_BYTES 32
#define DEFAULT_OPS_URL        "http://127.0.0.1:9641" /* ops.listen's default */

/* The global options, and the config when -c was given. */
struct ctl {
    const char *cfg_path;  /* -c */
    const char *db_opt;    /* --db */
    const char *realm_opt; /* --realm */
    struct tern_config cfg;
    bool have_cfg;
    const char *db;        /* --db, else the config's auth.database; NULL: none named */
    const char *realm;     /* --realm, else the config's server.realm, else "tern" */
    bool realm_chosen;     /* --realm or -c: user list shows that realm only */
    const char *url;       /* --url, without a trailing '/': API mode (NULL: the database) */
    char *token;           /* the API's bearer token (NULL: none); wiped and freed by main */
    bool curl_ready;       /* curl_global_init done */
    const char *from_file; /* hidden --from-file: an API answer saved in a file (tests) */
};

static void usage(FILE *out)
{
    fprintf(
        out,
        "Usage: ternctl [GLOBAL OPTIONS] COMMAND [ARGS]\n"
        "\n"
        "Global options (before the command):\n"
        "  -c, --config FILE   take the database, realm, REST secrets, separator and\n"
        "                      listener URIs from ternd's configuration\n"
        "      --db FILE       the credential database (SQLite; default: the config's\n"
        "                      auth.database); user add and secret add create it\n"
        "      --realm REALM   realm of the users (default: the config's, else tern)\n"
        "      --url URL       work through ternd's admin HTTP API (its ops.listen, e.g.\n"
        "                      http://127.0.0.1:9641) instead of on the database\n"
        "      --token-file FILE  the API's bearer token (ternd's ops.token): the first\n"
        "                      line of FILE; else the TERN_TOKEN environment variable,\n"
        "                      else the -c config's ops.token\n"
        "      --token TOKEN   the token on the command line: other users of the host can\n"
        "                      see it in ps while ternctl runs; prefer --token-file or\n"
        "                      TERN_TOKEN\n"
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
        "Live allocations and their quality (GET /api/v1/allocations on ternd's ops API;\n"
        "  the URL is --url, else -c's ops.listen, else " DEFAULT_OPS_URL "; the token, when\n"
        "  ternd has an ops.token, from --token-file, TERN_TOKEN or -c's ops.token):\n"
        "  allocations [--json] [--sort loss|jitter|rtt|age|bytes|id] [--url URL]\n"
        "                      one line per allocation: id, user, transport, client and\n"
        "                      relayed addresses, age, peers, packets and bytes from the\n"
        "                      client (C>) and from the peers (P>), and per ingress leg\n"
        "                      (C: from the client, P: from the peers) RTP loss %%, jitter\n"
        "                      ms, and RTT ms relay<->client / relay<->peer / path (-: not\n"
        "                      measured); --sort orders worst first (default: by id)\n"
        "  allocations ID [--json]   one allocation in detail: each peer flow, both\n"
        "                      directions, every RTP stream; --json prints the API's JSON\n"
        "  top [--interval S] [--once] [--count N] [--url URL]\n"
        "                      a live view like top(1): totals (allocations, packets/s and\n"
        "                      bits/s from successive samples, worst loss/jitter/RTT), then\n"
        "                      the allocations worst quality first (loss, then jitter, then\n"
        "                      RTT; unmeasured last); refreshes every S seconds (default 2),\n"
        "                      q or Ctrl-C quits, space refreshes. --once prints one frame\n"
        "                      (two samples S apart, for the rates) without escape codes;\n"
        "                      --count N stops after N frames\n"
        "\n"
        "API mode (--url): every command asks ternd, which applies it in its own realm\n"
        "  and database; the output is the same. --realm only filters user list there;\n"
        "  cred has no --sha256 (the server mints the credential and lists its URIs);\n"
        "  secret add --generate has the server generate the secret. An HTTP error is a\n"
        "  failure naming the URL, the status and the server's message.\n"
        "\n"
        "Exit status: 0 ok, 1 failure (ternd unreachable, HTTP error: the line names the URL\n"
        "and the status; 401: the token is missing or wrong), 2 usage error.\n");
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
    if (c == ':') return usage_error("%s%soption '%.*s' needs an argument", cmd, sep, len, arg);
    if (optopt && optopt != '?' && strncmp(arg, "--", 2) != 0)
        return usage_error("%s%sunknown option '-%c'", cmd, sep, optopt);
    return usage_error("%s%sunknown or ambiguous option '%.*s'", cmd, sep, len, arg);
}

/* Refuse a password or secret given on the command line (ps, shell history). Returns 2. */
static int refuse_inline(const char *cmd, const char *what, const char *stdin_opt)
{
    return usage_error("%s: a %s is never taken from the command line (it would show in ps and "
                       "shell history); use %s or the prompt",
                       cmd, what, stdin_opt);
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
    for (int i = 0; i < 4; i++)
        sigaction(sigs[i], &sa, &saved[i]);
    if (have_tc) {
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHOE | ECHOK | ECHONL);
        tcsetattr(fd, TCSAFLUSH, &quiet);
    }
    if (write(fd, prompt, strlen(prompt)) < 0) { /* best effort: the prompt is a courtesy */
    }
    int rc = read_line(fd, buf, max, len);
    if (have_tc) tcsetattr(fd, TCSAFLUSH, &old);
    if (write(fd, "\n", 1) < 0) { /* as above */
    }
    for (int i = 0; i < 4; i++)
        sigaction(sigs[i], &saved[i], NULL);
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
        if (r == -2)
            rc = failure("%s on standard input is longer than %zu bytes", what, max);
        else if (r < 0)
            rc = failure("reading the %s from standard input: %s", what, strerror(errno));
        else if (r == 0 || len == 0)
            rc = failure("no %s on standard input (empty first line)", what);
        else if (strlen(buf) != len)
            rc = failure("the %s on standard input contains a NUL byte", what);
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
    if (rc == 0 && strcmp(buf, again) != 0)
        rc = failure("the two %ss differ; nothing changed", what);
    OPENSSL_cleanse(again, max + 1);
    free(again);
    close(fd);
    if (rc) OPENSSL_cleanse(buf, max + 1);
    return rc;
}

/* ---- output helpers ---- */

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
    for (size_t w = text_width(s); w < width + 2; w++)
        fputc(' ', stdout);
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

/* ---- the admin HTTP API (--url) ---- */

#define TOKEN_MAX           4096        /* bytes, as ternd's ops.token */
#define API_MAX_RESPONSE    (16u << 20) /* bytes; a longer answer is refused */
#define API_CONNECT_TIMEOUT 10L         /* seconds */
#define API_TIMEOUT         60L         /* seconds, the whole request */

/* Request and response bodies carry passwords, secrets and the token: libcurl's and jansson's
 * memory is wiped when they free it (glibc knows each block's size). */
static void wipe_free(void *p)
{
    if (!p) return;
    OPENSSL_cleanse(p, malloc_usable_size(p));
    free(p);
}

static void *wipe_malloc(size_t n)
{
    return malloc(n);
}

static void *wipe_calloc(size_t n, size_t size)
{
    return calloc(n, size);
}

static void *wipe_realloc(void *p, size_t n)
{
    if (!p) return malloc(n);
    if (n == 0) {
        wipe_free(p);
        return NULL;
    }
    void *q = malloc(n);
    if (!q) return NULL;
    size_t old = malloc_usable_size(p);
    memcpy(q, p, old < n ? old : n);
    wipe_free(p);
    return q;
}

static char *wipe_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* A token: 1 to TOKEN_MAX printable ASCII characters (it goes into an HTTP header). Returns 0,
 * else 2 with the usage error printed naming where it came from. */
static int check_token(const char *tok, const char *from)
{
    size_t n = strlen(tok);
    if (n == 0) return usage_error("%s: the token is empty", from);
    if (n > TOKEN_MAX) return usage_error("%s: the token is longer than %d bytes", from, TOKEN_MAX);
    for (size_t i = 0; i < n; i++)
        if (tok[i] < 0x21 || tok[i] > 0x7E)
            return usage_error("%s: the token may hold only printable ASCII without spaces", from);
    return 0;
}

/* The first line of file, without the newline and trailing blanks, into *out (malloc'd).
 * 0, 1 (cannot read it) or 2 (not a token). */
static int read_token_file(const char *path, char **out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) return failure("--token-file %s: %s", path, strerror(errno));
    char *buf = malloc(TOKEN_MAX + 2);
    if (!buf) {
        close(fd);
        return failure("out of memory");
    }
    size_t n = 0;
    int rc = 0;
    while (n < TOKEN_MAX + 1) {
        ssize_t r = read(fd, buf + n, TOKEN_MAX + 1 - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            rc = failure("--token-file %s: %s", path, strerror(errno));
            break;
        }
        if (r == 0) break;
        n += (size_t)r;
        if (memchr(buf, '\n', n)) break;
    }
    close(fd);
    buf[n] = '\0';
    buf[strcspn(buf, "\n")] = '\0';
    n = strlen(buf);
    while (n > 0 && (buf[n - 1] == '\r' || buf[n - 1] == ' ' || buf[n - 1] == '\t'))
        buf[--n] = '\0';
    char from[PATH_MAX + 16];
    snprintf(from, sizeof from, "--token-file %s", path);
    if (rc == 0) rc = check_token(buf, from);
    if (rc) {
        OPENSSL_cleanse(buf, TOKEN_MAX + 2);
        free(buf);
        return rc;
    }
    *out = buf;
    return 0;
}

/* Text from the server, fit for one line of a terminal: control characters and the like
 * escaped (ops_text_escape), and at most max bytes. */
static void clean_text(const char *in, size_t in_len, char *out, size_t max)
{
    ops_text_escape(in, in_len, out, max + 1);
}

/* Percent-encoding of a URL path segment (RFC 3986 unreserved characters stay). */
static char *path_escape(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    char *out = malloc(strlen(s) * 3 + 1), *o = out;
    if (!out) return NULL;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '.' || *p == '_' || *p == '~')
            *o++ = (char)*p;
        else {
            *o++ = '%';
            *o++ = hex[*p >> 4];
            *o++ = hex[*p & 15];
        }
    }
    *o = '\0';
    return out;
}

struct body {
    char *p;
    size_t n, cap;
    bool too_big, oom;
};

static size_t on_body(char *data, size_t size, size_t nmemb, void *ctx)
{
    struct body *b = ctx;
    size_t len = size * nmemb;
    if (len > API_MAX_RESPONSE - b->n) {
        b->too_big = true;
        return 0;
    }
    if (b->n + len + 1 > b->cap) {
        size_t ncap = b->cap ? b->cap : 4096;
        while (ncap < b->n + len + 1)
            ncap *= 2;
        char *np = wipe_realloc(b->p, ncap);
        if (!np) {
            b->oom = true;
            return 0;
        }
        b->p = np;
        b->cap = ncap;
    }
    memcpy(b->p + b->n, data, len);
    b->n += len;
    b->p[b->n] = '\0';
    return len;
}

/* A failed request's line: "URL: STATUS: the server's error message". Returns 1. */
static int http_failure(const char *url, long status, const struct body *b, bool had_token)
{
    if (status == 401 && !had_token)
        return failure("%s: 401: the API wants a token and none was given: pass --token-file "
                       "FILE, TERN_TOKEN or -c with ternd's configuration (its ops.token)",
                       url);
    if (status == 401)
        return failure("%s: 401: the token was refused (wrong token? it must be ternd's ops.token)",
                       url);
    char msg[512];
    json_t *j = b->n ? json_loadb(b->p, b->n, 0, NULL) : NULL;
    json_t *e = json_is_object(j) ? json_object_get(j, "error") : NULL;
    if (json_is_string(e))
        clean_text(json_string_value(e), json_string_length(e), msg, 300);
    else if (b->n) {
        char text[256];
        clean_text(b->p, b->n, text, 200);
        snprintf(msg, sizeof msg, "HTTP error: %s%s", text, b->n > 200 ? "..." : "");
    } else
        snprintf(msg, sizeof msg, "HTTP error with no message");
    json_decref(j);
    return failure("%s: %ld: %s", url, status, msg);
}

/* One request to the admin API: METHOD on the --url plus path, with the JSON body req (NULL:
 * none). On a 2xx answer 0, with *out the parsed answer (NULL when it has no body; the caller
 * decrefs it); else 1, the failure printed: the URL and, for an HTTP error, its status and the
 * server's message. */
static int api_call(const struct ctl *c, const char *method, const char *path, json_t *req,
                    json_t **out)
{
    *out = NULL;
    size_t ulen = strlen(c->url) + strlen(path) + 1;
    char *url = malloc(ulen);
    char *auth = NULL, *payload = NULL;
    struct curl_slist *hdrs = NULL;
    struct body b = {0};
    int rc = 1;
    CURL *h = curl_easy_init();
    if (!url || !h) {
        failure("out of memory");
        goto out;
    }
    snprintf(url, ulen, "%s%s", c->url, path);
    char errbuf[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, API_CONNECT_TIMEOUT);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, API_TIMEOUT);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L); /* the token goes to the URL given, only */
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(h, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    curl_easy_setopt(h, CURLOPT_USERAGENT, "ternctl/" TERN_VERSION);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    hdrs = curl_slist_append(hdrs, "Accept: application/json");
    if (c->token) {
        size_t alen = strlen(c->token) + sizeof "Authorization: Bearer ";
        auth = malloc(alen);
        if (!auth) {
            failure("out of memory");
            goto out;
        }
        snprintf(auth, alen, "Authorization: Bearer %s", c->token);
        hdrs = curl_slist_append(hdrs, auth);
    }
    if (req) {
        payload = json_dumps(req, JSON_COMPACT);
        if (!payload) {
            failure("out of memory");
            goto out;
        }
        hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, payload); /* not copied: wiped below */
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(payload));
    }
    if (!hdrs) {
        failure("out of memory");
        goto out;
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    if (strcmp(method, "POST") != 0 || !req) curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    if (strcmp(method, "GET") == 0) curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);

    CURLcode res = curl_easy_perform(h);
    if (res != CURLE_OK) {
        if (b.too_big)
            failure("%s: the answer is longer than %u bytes", url, API_MAX_RESPONSE);
        else if (b.oom)
            failure("%s: out of memory reading the answer", url);
        else if (res == CURLE_COULDNT_CONNECT)
            failure("%s: cannot connect (%s): is ternd running with ops.listen there?", url,
                    errbuf[0] ? errbuf : curl_easy_strerror(res));
        else
            failure("%s: %s", url, errbuf[0] ? errbuf : curl_easy_strerror(res));
        goto out;
    }
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    if (status < 200 || status > 299) {
        http_failure(url, status, &b, c->token != NULL);
        goto out;
    }
    size_t skip = 0;
    while (skip < b.n && strchr(" \t\r\n", b.p[skip]))
        skip++;
    if (skip < b.n) {
        json_error_t jerr;
        *out = json_loadb(b.p, b.n, 0, &jerr);
        if (!*out) {
            failure("%s: %ld: the answer is not JSON (%s)", url, status, jerr.text);
            goto out;
        }
    }
    rc = 0;
out:
    if (h) curl_easy_cleanup(h);
    curl_slist_free_all(hdrs);
    if (auth) OPENSSL_cleanse(auth, strlen(auth));
    free(auth);
    wipe_free(payload);
    wipe_free(b.p);
    free(url);
    return rc;
}

/* The object answer of a request, else NULL with a failure printed (and decref'd). */
static json_t *want_object(const struct ctl *c, const char *path, json_t *j)
{
    if (json_is_object(j)) return j;
    json_decref(j);
    failure("%s%s: the answer is not a JSON object", c->url, path);
    return NULL;
}

/* A non-negative integer member, else def. */
static uint64_t json_u64(const json_t *obj, const char *key, uint64_t def)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0) return def;
    return (uint64_t)json_integer_value(v);
}

/* A member as a time for the listings: an ISO 8601 string as given, seconds formatted. */
static void json_time(const json_t *obj, const char *key, char out[32])
{
    json_t *v = json_object_get(obj, key);
    if (json_is_string(v))
        clean_text(json_string_value(v), json_string_length(v), out, 31);
    else if (json_is_integer(v))
        format_time((int64_t)json_integer_value(v), out);
    else
        snprintf(out, 32, "-");
}

/* "/api/v1/users/NAME" (malloc'd), else NULL with the failure printed. */
static char *user_path(const char *name)
{
    char *esc = path_escape(name);
    size_t len = esc ? strlen(esc) + sizeof "/api/v1/users/" : 0;
    char *p = esc ? malloc(len) : NULL;
    if (p)
        snprintf(p, len, "/api/v1/users/%s", esc);
    else
        failure("out of memory");
    free(esc);
    return p;
}

/* The realm the server answered with, else the one named with --realm or -c, else NULL. */
static const char *api_realm(const struct ctl *c, const json_t *answer)
{
    json_t *r = json_is_object(answer) ? json_object_get(answer, "realm") : NULL;
    if (json_is_string(r)) return json_string_value(r);
    return c->realm_chosen ? c->realm : NULL;
}

/* Print "VERB user NAME in realm REALM" or, the realm unknown, "VERB user NAME". */
static void print_user_done(const char *verb, const char *name, const char *prep, const char *realm)
{
    char *n = ops_text_escaped(name), *r = realm ? ops_text_escaped(realm) : NULL;
    if (realm)
        printf("%s user %s %s realm %s\n", verb, n ? n : "?", prep, r ? r : "?");
    else
        printf("%s user %s\n", verb, n ? n : "?");
    free(n);
    free(r);
}

struct user_row {
    char *realm, *name;
    uint32_t max_allocations;
    uint64_t bandwidth_bps;
    bool disabled;
    char created[32];
};

struct user_rows {
    struct user_row *v;
    size_t n, cap;
    bool oom;
};

/* Append a row. 0, or 1 (out of memory: rows->oom). */
static int add_user_row(struct user_rows *rows, const char *realm, const char *name,
                        uint32_t max_allocations, uint64_t bandwidth_bps, bool disabled,
                        const char *created)
{
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
    r->realm = strdup(realm);
    r->name = strdup(name);
    if (!r->realm || !r->name) {
        free(r->realm);
        free(r->name);
        rows->oom = true;
        return 1;
    }
    r->max_allocations = max_allocations;
    r->bandwidth_bps = bandwidth_bps;
    r->disabled = disabled;
    snprintf(r->created, sizeof r->created, "%s", created);
    rows->n++;
    return 0;
}

static int collect_user(void *ctx, const struct store_user *u)
{
    char when[32];
    format_time(u->created, when);
    return add_user_row(ctx, u->realm, u->name, u->max_allocations, u->bandwidth_bps, u->disabled,
                        when);
}

static void free_user_rows(struct user_rows *rows)
{
    for (size_t i = 0; i < rows->n; i++) {
        free(rows->v[i].realm);
        free(rows->v[i].name);
    }
    free(rows->v);
    rows->v = NULL;
    rows->n = rows->cap = 0;
}

/* The users from GET /api/v1/users (only realm's, unless NULL) into rows. 0 or 1 (printed). */
static int api_users(const struct ctl *c, const char *realm, struct user_rows *rows)
{
    json_t *j;
    if (api_call(c, "GET", "/api/v1/users", NULL, &j)) return 1;
    if (!json_is_array(j)) {
        json_decref(j);
        return failure("%s/api/v1/users: the answer is not a JSON array", c->url);
    }
    size_t i;
    json_t *u;
    json_array_foreach(j, i, u)
    {
        json_t *name = json_object_get(u, "name"), *rlm = json_object_get(u, "realm");
        const char *rs = json_is_string(rlm) ? json_string_value(rlm) : "";
        if (!json_is_string(name) || (realm && strcmp(rs, realm) != 0)) continue;
        uint64_t max = json_u64(u, "max_allocations", 0);
        char when[32];
        json_time(u, "created", when);
        if (add_user_row(rows, rs, json_string_value(name),
                         max > UINT32_MAX ? UINT32_MAX : (uint32_t)max,
                         json_u64(u, "bandwidth_bps", 0),
                         json_is_true(json_object_get(u, "disabled")), when))
            break;
    }
    json_decref(j);
    if (rows->oom) {
        free_user_rows(rows);
        return failure("out of memory listing the users");
    }
    return 0;
}

/* Whether the server has the user (asked before prompting). 1 yes, 0 no, -1 error (printed). */
static int api_user_exists(const struct ctl *c, const char *name)
{
    struct user_rows rows = {0};
    if (api_users(c, c->realm_chosen ? c->realm : NULL, &rows)) return -1;
    int found = 0;
    for (size_t i = 0; i < rows.n && !found; i++)
        found = strcmp(rows.v[i].name, name) == 0;
    free_user_rows(&rows);
    return found;
}

/* PUT /api/v1/users/NAME with the members of req (decref'd here): 0 or 1 (printed); the realm
 * the server names, if any, into realm. */
static int api_user_put(const struct ctl *c, const char *name, json_t *req, char *realm,
                        size_t realm_len)
{
    char *path = user_path(name);
    json_t *ans = NULL;
    int rc = !req ? failure("out of memory") : !path ? 1 : api_call(c, "PUT", path, req, &ans);
    const char *r = rc ? NULL : api_realm(c, ans);
    snprintf(realm, realm_len, "%s", r ? r : "");
    json_decref(ans);
    json_decref(req);
    free(path);
    return rc;
}

/* obj[key] = the string v. 0, or 1 with the failure printed (not UTF-8, out of memory). */
static int set_str(json_t *obj, const char *key, const char *v, const char *what)
{
    json_t *j = json_string(v);
    if (!j) return failure("the %s is not valid UTF-8 (the API speaks JSON)", what);
    if (json_object_set_new(obj, key, j)) return failure("out of memory");
    return 0;
}

/* obj[key] = v (at most INT64_MAX). 0, or 1 with the failure printed. */
static int set_int(json_t *obj, const char *key, uint64_t v)
{
    if (json_object_set_new(obj, key, json_integer((json_int_t)v))) return failure("out of memory");
    return 0;
}

/* ---- user commands ---- */

/* user add through the API: POST /api/v1/users. */
static int api_user_add(const struct ctl *c, const char *name, bool from_stdin, bool have_max,
                        uint64_t max_alloc, bool have_bw, uint64_t bandwidth)
{
    if (!from_stdin) {
        int have = api_user_exists(c, name);
        if (have < 0) return 1;
        if (have && c->realm_chosen)
            return failure("user %s already exists in realm %s", name, c->realm);
        if (have) return failure("user %s already exists", name);
    }
    json_t *req = json_object(), *ans = NULL;
    if (!req) return failure("out of memory");
    char pw[PASSWORD_MAX + 1];
    int rc = set_str(req, "name", name, "user name");
    if (rc == 0 && (rc = read_secret(from_stdin, "password", pw, PASSWORD_MAX)) == 0) {
        rc = set_str(req, "password", pw, "password");
        OPENSSL_cleanse(pw, sizeof pw);
    }
    if (rc == 0 && have_max) rc = set_int(req, "max_allocations", max_alloc);
    if (rc == 0 && have_bw) rc = set_int(req, "bandwidth_bps", bandwidth);
    if (rc == 0) rc = api_call(c, "POST", "/api/v1/users", req, &ans);
    if (rc == 0) print_user_done("added", name, "to", api_realm(c, ans));
    json_decref(ans);
    json_decref(req);
    return rc;
}

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
    bool from_stdin = false, have_max = false, have_bw = false;
    int opt;
    optind = 0;
    while ((opt = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (opt) {
        case 'm':
            if (parse_u64(optarg, UINT32_MAX, &max_alloc))
                return usage_error("user add: --max-allocations wants a number 0-%" PRIu32
                                   " (0: the config's allocation.max_per_user), not '%s'",
                                   UINT32_MAX, optarg);
            have_max = true;
            break;
        case 'b':
            if (parse_u64(optarg, UINT64_MAX, &bandwidth))
                return usage_error("user add: --bandwidth wants bytes per second (0: unlimited), "
                                   "not '%s'",
                                   optarg);
            have_bw = true;
            break;
        case 's':
            from_stdin = true;
            break;
        case 'p':
            return refuse_inline("user add", "password", "--password-stdin");
        default:
            return bad_option("user add", argv, opt);
        }
    }
    if (optind != argc - 1) return usage_error("user add: wants one user NAME");
    const char *name = argv[optind];
    char why[OPS_ERR_LEN];
    if (ops_name_refused(name, why)) return usage_error("user add: %s", why);
    if (c->url) {
        if (bandwidth > INT64_MAX)
            return usage_error("user add: --bandwidth is at most %" PRId64 " with --url",
                               INT64_MAX);
        return api_user_add(c, name, from_stdin, have_max, max_alloc, have_bw, bandwidth);
    }

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
            print_user_done("added", name, "to", c->realm);
    }
    OPENSSL_cleanse(pw, sizeof pw);
    store_close(s);
    return rc;
}

/* user passwd through the API: PUT /api/v1/users/NAME {"password"}. */
static int api_user_passwd(const struct ctl *c, const char *name, bool from_stdin)
{
    if (!from_stdin) {
        int have = api_user_exists(c, name);
        if (have < 0) return 1;
        if (!have && c->realm_chosen) return failure("no user %s in realm %s", name, c->realm);
        if (!have) return failure("no user %s", name);
    }
    json_t *req = json_object();
    if (!req) return failure("out of memory");
    char pw[PASSWORD_MAX + 1], realm[STUN_MAX_TEXT_BYTES + 1];
    int rc = read_secret(from_stdin, "password", pw, PASSWORD_MAX);
    if (rc == 0) rc = set_str(req, "password", pw, "password");
    OPENSSL_cleanse(pw, sizeof pw);
    if (rc) {
        json_decref(req);
        return rc;
    }
    rc = api_user_put(c, name, req, realm, sizeof realm);
    if (rc == 0) print_user_done("changed the password of", name, "in", realm[0] ? realm : NULL);
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
        case 's':
            from_stdin = true;
            break;
        case 'p':
            return refuse_inline("user passwd", "password", "--password-stdin");
        default:
            return bad_option("user passwd", argv, opt);
        }
    }
    if (optind != argc - 1) return usage_error("user passwd: wants one user NAME");
    const char *name = argv[optind];
    if (c->url) return api_user_passwd(c, name, from_stdin);

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
            print_user_done("changed the password of", name, "in", c->realm);
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
    if (c->url) {
        char realm[STUN_MAX_TEXT_BYTES + 1] = "";
        int rc;
        if (what == CHANGE_DEL) {
            char *path = user_path(name);
            json_t *ans = NULL;
            rc = path ? api_call(c, "DELETE", path, NULL, &ans) : 1;
            const char *r = rc ? NULL : api_realm(c, ans);
            snprintf(realm, sizeof realm, "%s", r ? r : "");
            json_decref(ans);
            free(path);
        } else
            rc = api_user_put(c, name, json_pack("{s:b}", "disabled", what == CHANGE_DISABLE),
                              realm, sizeof realm);
        if (rc == 0) print_user_done(done[what], name, "in", realm[0] ? realm : NULL);
        return rc;
    }

    struct store *s;
    int orc = open_db(c, STORE_EXISTING, &s);
    if (orc) return orc;
    char err[STORE_ERR_LEN] = "";
    int r = what == CHANGE_DEL
                ? store_user_del(s, c->realm, name, err)
                : store_user_set_disabled(s, c->realm, name, what == CHANGE_DISABLE, err);
    store_close(s);
    if (r != STORE_OK) {
        char missing[1200], act[1200];
        snprintf(missing, sizeof missing, "no user %s in realm %s", name, c->realm);
        snprintf(act, sizeof act, "%s user %s in realm %s", doing[what], name, c->realm);
        return store_failure(r, err, missing, NULL, act);
    }
    print_user_done(done[what], name, "in", c->realm);
    return 0;
}

/* The options of a "list" command: only --json. -1 when they parsed, else the exit status. */
static int list_options(const char *cmd, int argc, char **argv, bool *json)
{
    static const struct option opts[] = {{"json", no_argument, NULL, 'j'}, {NULL, 0, NULL, 0}};
    int opt;
    optind = 0;
    while ((opt = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        if (opt == 'j')
            *json = true;
        else
            return bad_option(cmd, argv, opt);
    }
    if (optind != argc) return usage_error("%s: unexpected argument '%s'", cmd, argv[optind]);
    return -1;
}

static int cmd_user_list(struct ctl *c, int argc, char **argv)
{
    bool json = false;
    int rc0 = list_options("user list", argc, argv, &json);
    if (rc0 >= 0) return rc0;

    struct user_rows rows = {0};
    int rc = 0;
    if (c->url) {
        if (api_users(c, c->realm_chosen ? c->realm : NULL, &rows)) return 1;
    } else {
        struct store *s;
        int orc = open_db(c, STORE_EXISTING, &s);
        if (orc) return orc;
        char err[STORE_ERR_LEN] = "";
        int r = store_user_each(s, c->realm_chosen ? c->realm : NULL, collect_user, &rows, err);
        store_close(s);
        if (r != STORE_OK) rc = store_failure(r, err, NULL, NULL, "listing the users");
    }
    if (rc == 0 && rows.oom) rc = failure("out of memory listing the users");
    if (rc) {
        /* nothing to print */
    } else if (json) {
        fputc('[', stdout);
        for (size_t i = 0; i < rows.n; i++) {
            const struct user_row *u = &rows.v[i];
            fputs(i ? ",\n {\"realm\":" : "\n {\"realm\":", stdout);
            ops_json_fputs(stdout, u->realm);
            fputs(",\"name\":", stdout);
            ops_json_fputs(stdout, u->name);
            printf(",\"max_allocations\":%" PRIu32 ",\"bandwidth\":%" PRIu64
                   ",\"disabled\":%s,\"created\":",
                   u->max_allocations, u->bandwidth_bps, u->disabled ? "true" : "false");
            ops_json_fputs(stdout, u->created); /* from the server, with --url */
            fputs("}", stdout);
        }
        fputs(rows.n ? "\n]\n" : "]\n", stdout);
    } else {
        static const char *const head[6] = {"REALM",           "NAME",     "MAX ALLOCATIONS",
                                            "BANDWIDTH (B/s)", "DISABLED", "CREATED"};
        size_t w[6];
        for (int k = 0; k < 6; k++)
            w[k] = strlen(head[k]);
        char(*cells)[6][32] = calloc(rows.n ? rows.n : 1, sizeof *cells);
        char *(*shown)[2] = calloc(rows.n ? rows.n : 1, sizeof *shown); /* realm, name escaped */
        for (size_t i = 0; cells && shown && i < rows.n; i++)
            if (!(shown[i][0] = ops_text_escaped(rows.v[i].realm)) ||
                !(shown[i][1] = ops_text_escaped(rows.v[i].name))) {
                free(cells);
                cells = NULL;
            }
        if (!cells || !shown) rc = failure("out of memory listing the users");
        for (size_t i = 0; cells && shown && i < rows.n; i++) {
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
            snprintf(cells[i][5], 32, "%s", u->created);
            size_t cw[6] = {text_width(shown[i][0]), text_width(shown[i][1]), strlen(cells[i][2]),
                            strlen(cells[i][3]),     strlen(cells[i][4]),     strlen(cells[i][5])};
            for (int k = 0; k < 6; k++)
                if (cw[k] > w[k]) w[k] = cw[k];
        }
        if (cells && shown) {
            for (int k = 0; k < 6; k++)
                put_padded(head[k], w[k], k == 5);
            fputc('\n', stdout);
            for (size_t i = 0; i < rows.n; i++) {
                put_padded(shown[i][0], w[0], false);
                put_padded(shown[i][1], w[1], false);
                for (int k = 2; k < 6; k++)
                    put_padded(cells[i][k], w[k], k == 5);
                fputc('\n', stdout);
            }
        }
        for (size_t i = 0; shown && i < rows.n; i++) {
            free(shown[i][0]);
            free(shown[i][1]);
        }
        free(shown);
        free(cells);
    }
    free_user_rows(&rows);
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

/* secret add through the API: POST /api/v1/secrets {"secret"}, or {} to have it generate one. */
static int api_secret_add(const struct ctl *c, bool from_stdin, bool generate)
{
    json_t *req = json_object(), *ans = NULL;
    if (!req) return failure("out of memory");
    int rc = 0;
    if (!generate) {
        char secret[STORE_MAX_SECRET + 1];
        rc = read_secret(from_stdin, "secret", secret, STORE_MAX_SECRET);
        if (rc == 0) rc = set_str(req, "secret", secret, "secret");
        OPENSSL_cleanse(secret, sizeof secret);
    }
    if (rc == 0) rc = api_call(c, "POST", "/api/v1/secrets", req, &ans);
    json_decref(req);
    if (rc) return rc;
    if (!(ans = want_object(c, "/api/v1/secrets", ans))) return 1;
    json_t *id = json_object_get(ans, "id"), *sec = json_object_get(ans, "secret");
    if (!json_is_integer(id))
        rc = failure("%s/api/v1/secrets: the answer has no secret id", c->url);
    else if (generate && !json_is_string(sec))
        rc = failure("%s/api/v1/secrets: the answer lacks the generated secret", c->url);
    else if (generate) {
        printf("%s\n", json_string_value(sec));
        fprintf(stderr, "ternctl: added secret %" PRId64 " (shown only now)\n",
                (int64_t)json_integer_value(id));
    } else
        printf("added secret %" PRId64 "\n", (int64_t)json_integer_value(id));
    json_decref(ans);
    return rc;
}

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
        case 's':
            from_stdin = true;
            break;
        case 'g':
            generate = true;
            break;
        case 'p':
            return refuse_inline("secret add", "secret", "--secret-stdin, --generate");
        default:
            return bad_option("secret add", argv, opt);
        }
    }
    if (optind != argc) return usage_error("secret add: unexpected argument '%s'", argv[optind]);
    if (from_stdin && generate)
        return usage_error("secret add: --secret-stdin and --generate exclude each other");

    char secret[STORE_MAX_SECRET + 1];
    int rc = 0;
    if (c->url) return api_secret_add(c, from_stdin, generate);
    if (generate) {
        uint8_t raw[GENERATED_SECRET_BYTES];
        if (RAND_bytes(raw, sizeof raw) != 1)
            return failure("generating a secret: RAND_bytes failed");
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
        int64_t id;
        char created[32];
        char shown[4 * 4 + sizeof "…"]; /* up to 4 UTF-8 characters and the ellipsis */
    } * v;
    size_t n, cap;
    bool oom;
};

/* Append a row showing the first show characters of text. 0, or 1 (rows->oom). */
static int add_secret_row(struct secret_rows *rows, int64_t id, const char *created,
                          const char *text, size_t show)
{
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
    size_t len = 0;
    for (size_t k = 0; k < show && text[len]; k++) {
        len++;
        while (((unsigned char)text[len] & 0xC0) == 0x80)
            len++;
    }
    rows->v[rows->n].id = id;
    snprintf(rows->v[rows->n].created, sizeof rows->v[rows->n].created, "%s", created);
    snprintf(rows->v[rows->n].shown, sizeof rows->v[rows->n].shown, "%.*s…", (int)len, text);
    rows->n++;
    return 0;
}

static int collect_secret(void *ctx, const struct store_secret *sec)
{
    /* The first 4 characters, fewer for a short secret so at most half of it shows. */
    size_t chars = text_width(sec->secret), show = chars / 2 < 4 ? chars / 2 : 4;
    char when[32];
    format_time(sec->created, when);
    return add_secret_row(ctx, sec->id, when, sec->secret, show);
}

/* The secrets from GET /api/v1/secrets into rows, by their prefix (at most 4 characters of
 * it, as from the database). 0 or 1 (printed). */
static int api_secrets(const struct ctl *c, struct secret_rows *rows)
{
    json_t *j;
    if (api_call(c, "GET", "/api/v1/secrets", NULL, &j)) return 1;
    if (!json_is_array(j)) {
        json_decref(j);
        return failure("%s/api/v1/secrets: the answer is not a JSON array", c->url);
    }
    size_t i;
    json_t *sec;
    json_array_foreach(j, i, sec)
    {
        json_t *id = json_object_get(sec, "id"), *pre = json_object_get(sec, "prefix");
        if (!json_is_integer(id)) continue;
        char prefix[64] = "", when[32];
        if (json_is_string(pre))
            clean_text(json_string_value(pre), json_string_length(pre), prefix, 48);
        size_t n = strlen(prefix);
        if (n >= strlen("…") && strcmp(prefix + n - strlen("…"), "…") == 0)
            prefix[n - strlen("…")] = '\0';
        json_time(sec, "created", when);
        if (add_secret_row(rows, (int64_t)json_integer_value(id), when, prefix, 4)) break;
    }
    json_decref(j);
    if (rows->oom) return failure("out of memory listing the secrets");
    return 0;
}

static int cmd_secret_list(struct ctl *c, int argc, char **argv)
{
    bool json = false;
    int rc0 = list_options("secret list", argc, argv, &json);
    if (rc0 >= 0) return rc0;

    struct secret_rows rows = {0};
    int rc = 0;
    if (c->url)
        rc = api_secrets(c, &rows);
    else {
        struct store *s;
        int orc = open_db(c, STORE_EXISTING, &s);
        if (orc) return orc;
        char err[STORE_ERR_LEN] = "";
        int r = store_secret_each(s, collect_secret, &rows, err);
        store_close(s);
        if (r != STORE_OK)
            rc = store_failure(r, err, NULL, NULL, "listing the secrets");
        else if (rows.oom)
            rc = failure("out of memory listing the secrets");
    }
    if (rc) {
        /* nothing to print */
    } else if (json) {
        fputc('[', stdout);
        for (size_t i = 0; i < rows.n; i++) {
            printf("%s {\"id\":%" PRId64 ",\"created\":", i ? ",\n" : "\n", rows.v[i].id);
            ops_json_fputs(stdout, rows.v[i].created); /* from the server, with --url */
            fputs(",\"secret\":", stdout);
            ops_json_fputs(stdout, rows.v[i].shown);
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
            char *shown = ops_text_escaped(rows.v[i].shown);
            printf("%*" PRId64 "  %-20s  %s\n", idw, rows.v[i].id, rows.v[i].created,
                   shown ? shown : "?");
            free(shown);
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
    if (c->url) {
        char path[64];
        json_t *ans = NULL;
        snprintf(path, sizeof path, "/api/v1/secrets/%" PRIu64, id);
        int rc = api_call(c, "DELETE", path, NULL, &ans);
        json_decref(ans);
        if (rc == 0) printf("deleted secret %" PRIu64 "\n", id);
        return rc;
    }

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

/* cred through the API: POST /api/v1/credentials {"user","ttl"}; the server's URIs. */
static int api_cred(const struct ctl *c, const char *user, uint64_t ttl, bool json, bool ice)
{
    static const char path[] = "/api/v1/credentials";
    json_t *req = json_object(), *ans = NULL;
    if (!req) return failure("out of memory");
    int rc = set_str(req, "user", user, "user ID");
    if (rc == 0) rc = set_int(req, "ttl", ttl);
    if (rc == 0) rc = api_call(c, "POST", path, req, &ans);
    json_decref(req);
    if (rc) return rc;
    if (!(ans = want_object(c, path, ans))) return 1;
    json_t *un = json_object_get(ans, "username"), *pw = json_object_get(ans, "password");
    json_t *uris = json_object_get(ans, "uris");
    if (!json_is_string(un) || !json_is_string(pw)) {
        json_decref(ans);
        return failure("%s%s: the answer lacks the username or the password", c->url, path);
    }
    const char *username = json_string_value(un), *password = json_string_value(pw);
    if (!json && !ice) {
        printf("username: %s\npassword: %s\n", username, password);
        json_decref(ans);
        return 0;
    }
    if (json) {
        fputs("{\"username\":", stdout);
        ops_json_fputs(stdout, username);
        fputs(",\"password\":", stdout);
        ops_json_fputs(stdout, password);
        printf(",\"ttl\":%" PRIu64 ",\"uris\":", json_u64(ans, "ttl", ttl));
    } else
        fputs("{\"iceServers\":[{\"urls\":", stdout);
    fputc('[', stdout);
    size_t i, n = 0;
    json_t *u;
    json_array_foreach(uris, i, u)
    {
        if (!json_is_string(u)) continue;
        if (n++) fputc(',', stdout);
        ops_json_fputs(stdout, json_string_value(u));
    }
    fputc(']', stdout);
    if (json)
        fputs("}\n", stdout);
    else {
        fputs(",\"username\":", stdout);
        ops_json_fputs(stdout, username);
        fputs(",\"credential\":", stdout);
        ops_json_fputs(stdout, password);
        fputs("}]}\n", stdout);
    }
    json_decref(ans);
    return 0;
}

static int cmd_cred(struct ctl *c, int argc, char **argv)
{
    static const struct option opts[] = {
        {"user", required_argument, NULL, 'u'}, {"ttl", required_argument, NULL, 't'},
        {"json", no_argument, NULL, 'j'},       {"ice-servers", no_argument, NULL, 'i'},
        {"sha256", no_argument, NULL, 's'},     {NULL, 0, NULL, 0},
    };
    const char *user = NULL, *ttl_arg = NULL;
    bool json = false, ice = false, sha256 = false;
    int opt;
    optind = 0;
    while ((opt = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (opt) {
        case 'u':
            user = optarg;
            break;
        case 't':
            ttl_arg = optarg;
            break;
        case 'j':
            json = true;
            break;
        case 'i':
            ice = true;
            break;
        case 's':
            sha256 = true;
            break;
        default:
            return bad_option("cred", argv, opt);
        }
    }
    if (optind != argc) return usage_error("cred: unexpected argument '%s'", argv[optind]);
    if (!user || !*user) return usage_error("cred: --user ID is required");
    char why[OPS_ERR_LEN];
    if (ops_name_refused(user, why)) return usage_error("cred: --user: %s", why);
    if (!ttl_arg) return usage_error("cred: --ttl SECONDS is required");
    if (json && ice) return usage_error("cred: --json and --ice-servers exclude each other");
    time_t now = time(NULL);
    uint64_t ttl;
    if (parse_u64(ttl_arg, (uint64_t)INT64_MAX - (uint64_t)now, &ttl) || ttl == 0)
        return usage_error("cred: --ttl wants a positive number of seconds, not '%s'", ttl_arg);
    if (c->url && sha256)
        return usage_error("cred: --sha256 is not available with --url (the server mints the "
                           "credential)");
    if (c->url) return api_cred(c, user, ttl, json, ice);

    const char *sep = c->have_cfg ? c->cfg.rest_separator : ":";

    /* The newest secret: the config's last one (the file lists old then new while rotating),
     * else the database's newest. */
    char secret[STORE_MAX_SECRET + 1];
    if (c->have_cfg && c->cfg.nsecrets > 0) {
        const char *last = c->cfg.secrets[c->cfg.nsecrets - 1];
        if (strlen(last) > STORE_MAX_SECRET)
            return failure("%s: auth.secrets: the last secret is longer than %d bytes", c->cfg_path,
                           STORE_MAX_SECRET);
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
                           "'ternctl secret add')",
                           c->have_cfg ? c->cfg_path : "",
                           c->have_cfg ? " has no auth.secrets and " : "", c->db);
        struct store *s;
        int orc = open_db(c, STORE_EXISTING, &s);
        if (orc) return orc;
        char err[OPS_ERR_LEN] = "";
        int r = ops_newest_db_secret(s, secret, err);
        store_close(s);
        if (r == OPS_FAILED) return failure("%s", err);
        if (r == OPS_NO_SECRET)
            return failure("no REST secret: %s has none%s (add one with 'ternctl secret add')",
                           c->db, c->have_cfg ? " and the config's auth.secrets is empty" : "");
    }

    struct ops_credential cred;
    int mrc = ops_mint_credential(secret, sep[0], user, ttl, (int64_t)now,
                                  sha256 ? AUTH_REST_HMAC_SHA256 : AUTH_REST_HMAC_SHA1, &cred);
    OPENSSL_cleanse(secret, sizeof secret);
    if (mrc == OPS_TOO_LONG)
        return usage_error("cred: the username would be longer than %d bytes", STUN_MAX_USERNAME);
    if (mrc != OPS_OK) return failure("computing the REST password: the HMAC failed");
    const char *username = cred.username, *password = cred.password;

    if (!json && !ice) {
        printf("username: %s\npassword: %s\n", username, password);
        OPENSSL_cleanse(&cred, sizeof cred);
        return 0;
    }
    struct ops_uris *u = calloc(1, sizeof *u);
    if (!u) {
        OPENSSL_cleanse(&cred, sizeof cred);
        return failure("out of memory");
    }
    char uerr[OPS_ERR_LEN] = "";
    if (c->have_cfg && ops_listener_uris(&c->cfg, u, uerr)) {
        free(u);
        OPENSSL_cleanse(&cred, sizeof cred);
        return failure("%s", uerr);
    }
    if (ice && !c->have_cfg)
        fprintf(stderr, "ternctl: warning: no -c config, so the urls list is empty\n");
    if (json) {
        fputs("{\"username\":", stdout);
        ops_json_fputs(stdout, username);
        fputs(",\"password\":", stdout);
        ops_json_fputs(stdout, password);
        printf(",\"ttl\":%" PRIu64 ",\"uris\":", ttl);
        ops_uris_json(stdout, u);
        fputs("}\n", stdout);
    } else {
        fputs("{\"iceServers\":[{\"urls\":", stdout);
        ops_uris_json(stdout, u);
        fputs(",\"username\":", stdout);
        ops_json_fputs(stdout, username);
        fputs(",\"credential\":", stdout);
        ops_json_fputs(stdout, password);
        fputs("}]}\n", stdout);
    }
    free(u);
    OPENSSL_cleanse(&cred, sizeof cred);
    return 0;
}

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
        clean_text(json_string_value(v), json_string_length(v), buf, max - 1);
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
            return failure("%s:%d: %s", c->from_file, jerr.line, jerr.text);
    } else if (api_call(c, "GET", path, NULL, &j))
        return 1;
    if (!(j = want_object(c, path, j))) return 1;
    json_t *a = json_object_get(j, "allocations");
    if (!json_is_array(a)) {
        json_decref(j);
        return failure("%s%s: the answer has no \"allocations\" array", c->url, path);
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
    size_t w = text_width(d);
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
            size_t w = text_width(s), pad = t->width[k] > w ? t->width[k] - w : 0;
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
            clean_text(json_string_value(v), json_string_length(v), one, 60);
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
        clean_text(k, strlen(k), key, 20);
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
            clean_text(k, strlen(k), key, 20);
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
            clean_text(json_string_value(v), json_string_length(v), s2, 100);
            printf(" %s", s2);
        }
    }
    printf("\n  created %s  age %s  expires in %s  worker %.0f  permissions %.0f  channels %.0f\n",
           jstr(j, "created_at", s1, sizeof s1, "-"), fmt_age(jnum(j, "age_seconds"), b1),
           fmt_age(jnum(j, "expires_in_seconds"), b2), jnum(j, "worker"), jnum(j, "permissions"),
           jnum(j, "channels"));
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

/* ---- the commands ---- */

/* Check an API URL and drop its trailing slashes (in place): 0, else 2 (usage error printed). */
static int check_url(char *url, const char *what)
{
    bool https = strncasecmp(url, "https://", 8) == 0;
    if (!https && strncasecmp(url, "http://", 7) != 0)
        return usage_error("%s wants an http:// or https:// URL, not '%s'", what, url);
    size_t n = strlen(url);
    while (n > 0 && url[n - 1] == '/')
        url[--n] = '\0';
    if (n <= (https ? 8u : 7u)) return usage_error("%s names no host", what);
    return 0;
}

/* What allocations and top share: where the API is and the token. */
struct ops_opts {
    char *url;              /* --url (global or the command's) */
    const char *token_file; /* --token-file */
    bool token_arg;         /* --token (c->token holds it) */
    char default_url[96];
};

/* Set up API access for allocations/top: c->url (--url, else -c's ops.listen, else the
 * default), the token (--token, --token-file, TERN_TOKEN, else -c's ops.token; none is fine:
 * the allocations API is open when ternd has no ops.token), libcurl. 0, 1 or 2. */
static int ops_setup(struct ctl *c, struct ops_opts *o)
{
    if (c->db_opt || c->realm_opt) return usage_error("--db and --realm are not for this command");
    if (o->token_arg && o->token_file)
        return usage_error("--token and --token-file exclude each other");
    if (c->cfg_path && !c->have_cfg) {
        if (cfg_load(&c->cfg, c->cfg_path, stderr))
            return failure("%s: configuration is not valid", c->cfg_path);
        c->have_cfg = true;
    }
    if (o->url) {
        int rc = check_url(o->url, "--url");
        if (rc) return rc;
        c->url = o->url;
    } else {
        default_ops_url(c, o->default_url, sizeof o->default_url);
        c->url = o->default_url;
    }
    if (c->token) {
        int trc = check_token(c->token, "--token");
        if (trc) return trc;
    } else if (o->token_file) {
        int trc = read_token_file(o->token_file, &c->token);
        if (trc) return trc;
    } else if (getenv("TERN_TOKEN") && *getenv("TERN_TOKEN")) {
        int trc = check_token(getenv("TERN_TOKEN"), "TERN_TOKEN");
        if (trc) return trc;
        if (!(c->token = strdup(getenv("TERN_TOKEN")))) return failure("out of memory");
    } else if (c->have_cfg && c->cfg.ops_token) {
        int trc = check_token(c->cfg.ops_token, c->cfg_path);
        if (trc) return trc;
        if (!(c->token = strdup(c->cfg.ops_token))) return failure("out of memory");
    }
    json_set_alloc_funcs(wipe_malloc, wipe_free);
    if (curl_global_init_mem(CURL_GLOBAL_DEFAULT, wipe_malloc, wipe_free, wipe_realloc, wipe_strdup,
                             wipe_calloc) != CURLE_OK)
        return failure("cannot initialize libcurl");
    c->curl_ready = true;
    return 0;
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
            usage_error("--token given twice");
            return 2;
        }
        o->token_arg = true;
        c->token = strdup(optarg);
        if (!c->token) return failure("out of memory");
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
        return failure("writing JSON");
    fputc('\n', stdout);
    return 0;
}

static int cmd_allocations(struct ctl *c, struct ops_opts *o, int argc, char **argv)
{
    static const struct option opts[] = {
        {"url", required_argument, NULL, 'u'},
        {"token", required_argument, NULL, 't'},
        {"token-file", required_argument, NULL, 'T'},
        {"json", no_argument, NULL, 'j'},
        {"sort", required_argument, NULL, 's'},
        {"from-file", required_argument, NULL, 'F'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    bool json = false;
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
        case 's':
            if (parse_sort(optarg, &key))
                return usage_error("allocations: --sort wants loss, jitter, rtt, age, bytes or id, "
                                   "not '%s'",
                                   optarg);
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            return bad_option("allocations", argv, opt);
        }
    }
    if (argc - optind > 1) return usage_error("allocations: at most one allocation ID");
    const char *id = optind < argc ? argv[optind] : NULL;
    uint64_t idv;
    if (id && parse_u64(id, UINT64_MAX, &idv))
        return usage_error("allocations: the ID is a number (see ternctl allocations), not '%s'",
                           id);
    int rc = ops_setup(c, o);
    if (rc) return rc;

    json_t *j = NULL;
    if (id) {
        char path[64];
        snprintf(path, sizeof path, "/api/v1/allocations/%" PRIu64, idv);
        if (c->from_file) {
            json_error_t jerr;
            if (!(j = json_load_file(c->from_file, 0, &jerr)))
                return failure("%s:%d: %s", c->from_file, jerr.line, jerr.text);
        } else if (api_call(c, "GET", path, NULL, &j))
            return 1;
        if (!(j = want_object(c, path, j))) return 1;
        rc = json ? print_json(j) : (print_detail(j), 0);
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
        return failure("out of memory");
    }
    char at[40];
    printf("%zu allocation%s at %s (sampled %s)\n", n, n == 1 ? "" : "s",
           c->from_file ? c->from_file : c->url, jstr(j, "sampled_at", at, sizeof at, "-"));
    if (n) {
        struct table t = {0};
        allocations_table(&t, rows, n, false);
        if (t.oom)
            rc = failure("out of memory");
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
        if (got_signal) return 1;
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

static int cmd_top(struct ctl *c, struct ops_opts *o, int argc, char **argv)
{
    static const struct option opts[] = {
        {"url", required_argument, NULL, 'u'},
        {"token", required_argument, NULL, 't'},
        {"token-file", required_argument, NULL, 'T'},
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
                return usage_error("top: --interval wants seconds from 0.1 to 3600, not '%s'",
                                   optarg);
            break;
        }
        case '1':
            once = true;
            break;
        case 'n':
            if (parse_u64(optarg, UINT32_MAX, &count) || count == 0)
                return usage_error("top: --count wants a positive number of frames, not '%s'",
                                   optarg);
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            return bad_option("top", argv, opt);
        }
    }
    if (optind != argc) return usage_error("top: unexpected argument '%s'", argv[optind]);
    if (once) count = 1;
    int rc = ops_setup(c, o);
    if (rc) return rc;

    bool ansi = !once && isatty(STDOUT_FILENO);
    bool keys = !once && isatty(STDIN_FILENO);
    struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART: poll returns */
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
            rc = failure("out of memory");
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

/* ---- main ---- */

static int run(struct ctl *c, int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"db", required_argument, NULL, 'd'},
        {"realm", required_argument, NULL, 'r'},
        {"url", required_argument, NULL, 'u'},
        {"token", required_argument, NULL, 't'},
        {"token-file", required_argument, NULL, 'T'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    char *url = NULL;
    const char *token_file = NULL;
    bool token_arg = false;
    int opt;
    opterr = 0;
    /* '+': stop at the command, whose own options come after it. */
    while ((opt = getopt_long(argc, argv, "+:c:Vh", opts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            c->cfg_path = optarg;
            break;
        case 'd':
            c->db_opt = optarg;
            break;
        case 'r':
            c->realm_opt = optarg;
            break;
        case 'u':
            url = optarg;
            break;
        case 'T':
            token_file = optarg;
            break;
        case 't':
            if (token_arg) return usage_error("--token given twice");
            token_arg = true;
            c->token = strdup(optarg);
            if (!c->token) return failure("out of memory");
            /* Out of ps from now on (it shows while ternctl starts): --help says so. */
            memset(optarg, 'x', strlen(optarg));
            break;
        case 'V':
            printf("ternctl %s\n", TERN_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            return bad_option(NULL, argv, opt);
        }
    }
    if (optind >= argc)
        return usage_error("no command given (user, secret, cred, allocations or top)");
    const char *cmd = argv[optind];
    if (strcmp(cmd, "allocations") == 0 || strcmp(cmd, "top") == 0) {
        struct ops_opts o = {.url = url, .token_file = token_file, .token_arg = token_arg};
        if (strcmp(cmd, "top") == 0) return cmd_top(c, &o, argc - optind, argv + optind);
        return cmd_allocations(c, &o, argc - optind, argv + optind);
    }
    if (strcmp(cmd, "user") != 0 && strcmp(cmd, "secret") != 0 && strcmp(cmd, "cred") != 0)
        return usage_error("unknown command '%s' (user, secret, cred, allocations or top)", cmd);
    if (c->db_opt && !*c->db_opt) return usage_error("--db wants a file name");
    if (c->realm_opt && !*c->realm_opt) return usage_error("--realm wants a realm");
    if (url) {
        bool https = strncasecmp(url, "https://", 8) == 0;
        if (!https && strncasecmp(url, "http://", 7) != 0)
            return usage_error("--url wants an http:// or https:// URL, not '%s'", url);
        size_t n = strlen(url);
        while (n > 0 && url[n - 1] == '/')
            url[--n] = '\0';
        if (n <= (https ? 8u : 7u)) return usage_error("--url names no host");
        if (c->db_opt) return usage_error("--db and --url exclude each other");
        if (c->realm_opt && !(strcmp(cmd, "user") == 0 && optind + 1 < argc &&
                              strcmp(argv[optind + 1], "list") == 0))
            return usage_error("--realm with --url is for user list only: the server adds, "
                               "changes and deletes users in its own realm");
        c->url = url;
    } else if (token_arg || token_file)
        return usage_error("--token and --token-file are for --url");
    if (token_arg && token_file) return usage_error("--token and --token-file exclude each other");
    if (c->token) {
        int trc = check_token(c->token, "--token");
        if (trc) return trc;
    } else if (token_file) {
        int trc = read_token_file(token_file, &c->token);
        if (trc) return trc;
    } else if (c->url && getenv("TERN_TOKEN") && *getenv("TERN_TOKEN")) { /* empty: unset */
        int trc = check_token(getenv("TERN_TOKEN"), "TERN_TOKEN");
        if (trc) return trc;
        if (!(c->token = strdup(getenv("TERN_TOKEN")))) return failure("out of memory");
    }

    if (c->cfg_path) {
        if (cfg_load(&c->cfg, c->cfg_path, stderr))
            return failure("%s: configuration is not valid", c->cfg_path);
        c->have_cfg = true;
    }
    c->db = c->db_opt ? c->db_opt : c->have_cfg ? c->cfg.database : NULL; /* NULL: none */
    c->realm = c->realm_opt ? c->realm_opt : c->have_cfg ? c->cfg.realm : "tern";
    c->realm_chosen = c->realm_opt || c->have_cfg;
    if (c->url) {
        if (!c->token && c->have_cfg && c->cfg.ops_token) {
            int trc = check_token(c->cfg.ops_token, c->cfg_path);
            if (trc) return trc;
            if (!(c->token = strdup(c->cfg.ops_token))) return failure("out of memory");
        }
        /* Before any other call into either library. */
        json_set_alloc_funcs(wipe_malloc, wipe_free);
        if (curl_global_init_mem(CURL_GLOBAL_DEFAULT, wipe_malloc, wipe_free, wipe_realloc,
                                 wipe_strdup, wipe_calloc) != CURLE_OK)
            return failure("cannot initialize libcurl");
        c->curl_ready = true;
    }

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
    if (c.curl_ready) curl_global_cleanup();
    if (c.token) {
        OPENSSL_cleanse(c.token, strlen(c.token));
        free(c.token);
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "ternctl: writing the output: %s\n", strerror(errno));
        if (rc == 0) rc = 1;
    }
    return rc;
}
