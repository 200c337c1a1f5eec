/* ternctl.c: the admin tool's entry: global options and dispatch, and the helpers every command
 * uses (errors, option checks, password prompts, table output, the database). The commands
 * live in ternctl_users.c, ternctl_secrets.c, ternctl_cred.c, ternctl_allocs.c. */
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
#include "ternctl.h"
#include "uris.h"

void ctl_usage(FILE *out)
{
    fprintf(
        out,
        "Usage: ternctl [GLOBAL OPTIONS] COMMAND [ARGS]\n"
        "\n"
        "Global options (before the command):\n"
        "  -c, --config FILE   take the database, realm, REST secrets, separator and\n"
        "                      listener URIs from ternd's configuration\n"
        "      --db FILE       the credential database (a SQLite file or a postgresql://\n"
        "                      URI; default: the config's auth.database); user add and\n"
        "                      secret add create a SQLite file\n"
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
        "The fleet (the node registry in the PostgreSQL database of -c FILE or --db URI, or\n"
        "  a node's GET /api/v1/nodes with --url):\n"
        "  nodes [--json]      every node: state (alive, draining, full, dead), heartbeat age,\n"
        "                      allocations and limit, load, CPU, relayed packets/s, poor\n"
        "                      allocations, endpoints; best first (where clients are sent)\n"
        "  nodes forget ID [--force]\n"
        "                      remove a node's row (a dead one; rows dead for\n"
        "                      cluster.forget_after go by themselves); a live one needs --force\n"
        "\n"
        "Ended calls across the fleet (qos.record_database: the call_quality table of the\n"
        "  PostgreSQL database named by -c FILE or --db URI):\n"
        "  calls [--since DURATION] [--user U] [--worst loss|jitter|rtt] [--limit N] [--json]\n"
        "                      the worst calls that ended in the last DURATION (90s, 15m, 1h,\n"
        "                      2d; default 1h), worst loss first unless --worst says jitter\n"
        "                      or rtt, at most N (default 20): when it ended, the node, the\n"
        "                      user, its duration and end reason, and the worst loss %%,\n"
        "                      jitter ms and RTT ms with the leg each was on (client: what\n"
        "                      the client sent, peer: what the peers sent; -: not measured);\n"
        "                      --json adds the whole quality record\n"
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
        "  allocations ID --timeline [--json]   its last minutes, one 5-s interval a row: per\n"
        "                      leg packets, rate, loss, jitter, RTT, CE marks, drops, and\n"
        "                      which thresholds it crossed (when the call went bad, and where)\n"
        "  top [--interval S] [--once] [--count N] [--url URL]\n"
        "  drain [--deadline S] | --cancel | --status [--json] [--url URL]\n"
        "                 take the node out of service gently (POST/DELETE/GET /api/v1/drain;\n"
        "                 the token is needed): new Allocates are redirected, calls go on\n"
        "  reload [--json] [--url URL]\n"
        "                 re-read ternd's configuration file and apply it live (POST\n"
        "                 /api/v1/reload, as SIGHUP; the token is needed): prints what\n"
        "                 changed, or every problem (exit 1; the running config stays)\n"
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

int ctl_usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("ternctl: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\nTry 'ternctl --help'.\n", stderr);
    return 2;
}

int ctl_failure(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("ternctl: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

int ctl_bad_option(const char *cmd, char **argv, int c)
{
    const char *arg = argv[optind - 1], *sep = cmd ? ": " : "";
    int len = (int)strcspn(arg, "=");
    if (!cmd) cmd = "";
    if (c == ':') return ctl_usage_error("%s%soption '%.*s' needs an argument", cmd, sep, len, arg);
    if (optopt && optopt != '?' && strncmp(arg, "--", 2) != 0)
        return ctl_usage_error("%s%sunknown option '-%c'", cmd, sep, optopt);
    return ctl_usage_error("%s%sunknown or ambiguous option '%.*s'", cmd, sep, len, arg);
}

int ctl_refuse_inline(const char *cmd, const char *what, const char *stdin_opt)
{
    return ctl_usage_error("%s: a %s is never taken from the command line (it would show in ps and "
                           "shell history); use %s or the prompt",
                           cmd, what, stdin_opt);
}

int ctl_parse_u64(const char *s, uint64_t max, uint64_t *out)
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

volatile sig_atomic_t ctl_got_signal;

void ctl_on_signal(int sig)
{
    ctl_got_signal = sig;
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
            if (errno == EINTR && !ctl_got_signal) continue;
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
    struct sigaction sa = {.sa_handler = ctl_on_signal}, saved[4];
    static const int sigs[4] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
    sigemptyset(&sa.sa_mask); /* no SA_RESTART: a signal interrupts the read */
    ctl_got_signal = 0;
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
    if (ctl_got_signal) {
        OPENSSL_cleanse(buf, max + 1);
        raise(ctl_got_signal); /* the terminal is restored; die of the signal as usual */
        return ctl_failure("interrupted");
    }
    if (rc == -2) return ctl_failure("%s longer than %zu bytes", what, max);
    if (rc < 0) return ctl_failure("reading the %s from the terminal: %s", what, strerror(errno));
    if (rc == 0) return ctl_failure("no %s entered (end of input)", what);
    if (*len == 0) return ctl_failure("empty %s", what);
    if (strlen(buf) != *len) return ctl_failure("the %s contains a NUL byte", what);
    return 0;
}

int ctl_read_secret(bool from_stdin, const char *what, char *buf, size_t max)
{
    if (from_stdin) {
        size_t len = 0;
        int r = read_line(STDIN_FILENO, buf, max, &len), rc = 0;
        if (r == -2)
            rc = ctl_failure("%s on standard input is longer than %zu bytes", what, max);
        else if (r < 0)
            rc = ctl_failure("reading the %s from standard input: %s", what, strerror(errno));
        else if (r == 0 || len == 0)
            rc = ctl_failure("no %s on standard input (empty first line)", what);
        else if (strlen(buf) != len)
            rc = ctl_failure("the %s on standard input contains a NUL byte", what);
        if (rc) OPENSSL_cleanse(buf, max + 1);
        return rc;
    }
    int fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (fd < 0)
        return ctl_failure("no terminal to ask for the %s (%s); use --%s-stdin", what,
                           strerror(errno), strcmp(what, "password") == 0 ? "password" : "secret");
    char *again = malloc(max + 1);
    if (!again) {
        close(fd);
        return ctl_failure("out of memory");
    }
    char prompt[64], prompt2[64];
    snprintf(prompt, sizeof prompt, "New %s: ", what);
    snprintf(prompt2, sizeof prompt2, "Repeat the %s: ", what);
    size_t len, len2;
    int rc = prompt_hidden(fd, prompt, buf, max, what, &len);
    if (rc == 0) rc = prompt_hidden(fd, prompt2, again, max, what, &len2);
    if (rc == 0 && strcmp(buf, again) != 0)
        rc = ctl_failure("the two %ss differ; nothing changed", what);
    OPENSSL_cleanse(again, max + 1);
    free(again);
    close(fd);
    if (rc) OPENSSL_cleanse(buf, max + 1);
    return rc;
}

/* ---- output helpers ---- */

size_t ctl_text_width(const char *s)
{
    size_t w = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80) w++;
    return w;
}

void ctl_put_padded(const char *s, size_t width, bool last)
{
    fputs(s, stdout);
    if (last) return;
    for (size_t w = ctl_text_width(s); w < width + 2; w++)
        fputc(' ', stdout);
}

int ctl_print_json_line(json_t *j)
{
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!text) return ctl_failure("out of memory");
    puts(text);
    OPENSSL_cleanse(text, strlen(text));
    free(text);
    return 0;
}

void *ctl_room(void *v, size_t *cap, size_t n, size_t size)
{
    if (n < *cap) return v;
    size_t ncap = *cap ? *cap * 2 : 16;
    void *nv = ncap > SIZE_MAX / size ? NULL : realloc(v, ncap * size);
    if (nv) *cap = ncap;
    return nv;
}

void ctl_json_append(json_t **list, json_t *o)
{
    if (!*list) {
        json_decref(o);
        return;
    }
    if (o && json_array_append_new(*list, o) == 0) return; /* it takes o even when it fails */
    json_decref(*list);
    *list = NULL;
}

int ctl_print_json_rows(json_t *rows)
{
    int rc = rows ? 0 : ctl_failure("out of memory");
    size_t i;
    json_t *row;
    fputc('[', stdout);
    json_array_foreach(rows, i, row)
    {
        char *text = json_dumps(row, JSON_COMPACT);
        if (!text) {
            rc = ctl_failure("out of memory");
            break;
        }
        printf("%s %s", i ? ",\n" : "\n", text);
        OPENSSL_cleanse(text, strlen(text));
        free(text);
    }
    fputs(json_array_size(rows) ? "\n]\n" : "]\n", stdout);
    json_decref(rows);
    return rc;
}

void ctl_format_time(int64_t t, char out[32])
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm) || !strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(out, 32, "%" PRId64, t);
}

/* ---- the database ---- */

int ctl_open_db(const struct ctl *c, enum store_mode mode, struct store **s)
{
    *s = NULL;
    if (!c->db && c->have_cfg)
        return ctl_usage_error("%s has no auth.database; name the database with --db FILE",
                               c->cfg_path);
    if (!c->db) return ctl_usage_error("no database: name it with --db FILE (or -c FILE)");
    char err[STORE_ERR_LEN] = "";
    *s = store_open_with(c->db, c->have_cfg ? c->cfg.database_password_file : NULL, mode, err);
    if (!*s) return ctl_failure("%s", err[0] ? err : "cannot open the database");
    return 0;
}

int ctl_store_failure(int rc, const char *err, const char *not_found, const char *exists,
                      const char *doing)
{
    if (rc == STORE_NOT_FOUND && not_found) return ctl_failure("%s", not_found);
    if (rc == STORE_EXISTS && exists) return ctl_failure("%s", exists);
    if (err[0]) return ctl_failure("%s", err); /* the store names the file and the operation */
    return ctl_failure("%s failed (store error %d)", doing, rc);
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

int ctl_user_exists(struct store *s, const char *realm, const char *name)
{
    char err[STORE_ERR_LEN] = "";
    struct find_user f = {.name = name};
    int rc = store_user_each(s, realm, find_user_fn, &f, err);
    if (rc != STORE_OK) {
        ctl_store_failure(rc, err, NULL, NULL, "reading the users");
        return -1;
    }
    return f.found;
}

int ctl_list_options(const char *cmd, int argc, char **argv, bool *json)
{
    static const struct option opts[] = {{"json", no_argument, NULL, 'j'}, {NULL, 0, NULL, 0}};
    int opt;
    optind = 0;
    while ((opt = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        if (opt == 'j')
            *json = true;
        else
            return ctl_bad_option(cmd, argv, opt);
    }
    if (optind != argc) return ctl_usage_error("%s: unexpected argument '%s'", cmd, argv[optind]);
    return -1;
}

/* ---- main ---- */

static int run(struct ctl *c, int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"db", required_argument, NULL, 'd'},
        {"realm", required_argument, NULL, 'r'},
        CTL_API_OPTIONS,
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
            if (token_arg) return ctl_usage_error("--token given twice");
            token_arg = true;
            c->token = strdup(optarg);
            if (!c->token) return ctl_failure("out of memory");
            /* Out of ps from now on (it shows while ternctl starts): --help says so. */
            memset(optarg, 'x', strlen(optarg));
            break;
        case 'V':
            printf("ternctl %s\n", TERN_VERSION);
            return 0;
        case 'h':
            ctl_usage(stdout);
            return 0;
        default:
            return ctl_bad_option(NULL, argv, opt);
        }
    }
    if (optind >= argc)
        return ctl_usage_error("no command given (user, secret, cred, calls, nodes, allocations, "
                               "top, drain or reload)");
    const char *cmd = argv[optind];
    if (strcmp(cmd, "allocations") == 0 || strcmp(cmd, "top") == 0 || strcmp(cmd, "drain") == 0 ||
        strcmp(cmd, "reload") == 0) {
        struct ops_opts o = {.url = url, .token_file = token_file, .token_arg = token_arg};
        if (strcmp(cmd, "top") == 0) return ctl_cmd_top(c, &o, argc - optind, argv + optind);
        if (strcmp(cmd, "drain") == 0) return ctl_cmd_drain(c, &o, argc - optind, argv + optind);
        if (strcmp(cmd, "reload") == 0) return ctl_cmd_reload(c, &o, argc - optind, argv + optind);
        return ctl_cmd_allocations(c, &o, argc - optind, argv + optind);
    }
    if (strcmp(cmd, "user") != 0 && strcmp(cmd, "secret") != 0 && strcmp(cmd, "cred") != 0 &&
        strcmp(cmd, "calls") != 0 && strcmp(cmd, "nodes") != 0)
        return ctl_usage_error("unknown command '%s' (user, secret, cred, calls, nodes, "
                               "allocations, top, drain or reload)",
                               cmd);
    if (url && strcmp(cmd, "calls") == 0)
        return ctl_usage_error("calls reads the database, not the API: name it with -c FILE or "
                               "--db URI instead of --url");
    if (c->db_opt && !*c->db_opt) return ctl_usage_error("--db wants a file name");
    if (c->realm_opt && !*c->realm_opt) return ctl_usage_error("--realm wants a realm");
    if (url) {
        int urc = ctl_check_url(url, "--url");
        if (urc) return urc;
        if (c->db_opt) return ctl_usage_error("--db and --url exclude each other");
        if (c->realm_opt && !(strcmp(cmd, "user") == 0 && optind + 1 < argc &&
                              strcmp(argv[optind + 1], "list") == 0))
            return ctl_usage_error("--realm with --url is for user list only: the server adds, "
                                   "changes and deletes users in its own realm");
        c->url = url;
    } else if (token_arg || token_file)
        return ctl_usage_error("--token and --token-file are for --url");
    if (token_arg && token_file)
        return ctl_usage_error("--token and --token-file exclude each other");
    if (c->cfg_path) {
        if (cfg_load(&c->cfg, c->cfg_path, stderr))
            return ctl_failure("%s: configuration is not valid", c->cfg_path);
        c->have_cfg = true;
    }
    c->db = c->db_opt ? c->db_opt : c->have_cfg ? c->cfg.database : NULL; /* NULL: none */
    store_display_name(c->db, c->db_shown, sizeof c->db_shown);
    c->realm = c->realm_opt ? c->realm_opt : c->have_cfg ? c->cfg.realm : "tern";
    c->realm_chosen = c->realm_opt || c->have_cfg;
    if (c->url) {
        int trc = ctl_take_token(c, token_file);
        if (trc == 0) trc = ctl_api_init(c);
        if (trc) return trc;
    }

    argc -= optind;
    argv += optind;
    if (strcmp(cmd, "user") == 0) return ctl_cmd_user(c, argc, argv);
    if (strcmp(cmd, "secret") == 0) return ctl_cmd_secret(c, argc, argv);
    if (strcmp(cmd, "calls") == 0) return ctl_cmd_calls(c, argc, argv);
    if (strcmp(cmd, "nodes") == 0) return ctl_cmd_nodes(c, argc, argv);
    return ctl_cmd_cred(c, argc, argv);
}

int main(int argc, char **argv)
{
    /* The database holds keys and secrets: whatever this creates is the owner's alone. */
    umask(077);
    /* Before any other call into jansson: its buffers hold passwords, secrets, the token. */
    json_set_alloc_funcs(ctl_wipe_malloc, ctl_wipe_free);
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
