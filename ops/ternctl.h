/* ternctl.h: what the parts of ternctl share: the global options, error and output helpers
 * (ternctl.c), the admin API client (ternctl_http.c), and each command group's entry point. */
#ifndef TERN_OPS_TERNCTL_H
#define TERN_OPS_TERNCTL_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "config.h"
#include "store.h"
#include "tern_version.h"

#define PASSWORD_MAX           1024 /* bytes; a longer line on stdin or the terminal is refused */
#define GENERATED_SECRET_BYTES 32
#define DEFAULT_OPS_URL        "http://127.0.0.1:9641" /* ops.listen's default */
#define TOKEN_MAX              4096                    /* bytes, as ternd's ops.token */

/* The global options, and the config when -c was given. */
struct ctl {
    const char *cfg_path;  /* -c */
    const char *db_opt;    /* --db */
    const char *realm_opt; /* --realm */
    struct tern_config cfg;
    bool have_cfg;
    const char *db;        /* --db, else the config's auth.database; NULL: none named */
    char db_shown[512];    /* db as messages show it: a URI without its password */
    const char *realm;     /* --realm, else the config's server.realm, else "tern" */
    bool realm_chosen;     /* --realm or -c: user list shows that realm only */
    const char *url;       /* --url, without a trailing '/': API mode (NULL: the database) */
    char *token;           /* the API's bearer token (NULL: none); wiped and freed by main */
    bool curl_ready;       /* curl_global_init done */
    const char *from_file; /* hidden --from-file: an API answer saved in a file (tests) */
};

/* What allocations and top share: where the API is and the token. */
struct ops_opts {
    char *url;              /* --url (global or the command's) */
    const char *token_file; /* --token-file */
    bool token_arg;         /* --token (c->token holds it) */
    char default_url[96];
};

/* The getopt_long entries of the API options, in the global options and allocations/top. */
/* clang-format off */
#define CTL_API_OPTIONS                         \
    {"url", required_argument, NULL, 'u'},      \
    {"token", required_argument, NULL, 't'},    \
    {"token-file", required_argument, NULL, 'T'}
/* clang-format on */

/* ---- ternctl.c: errors, options, prompts, output, the database ---- */

/* The --help text. */
void ctl_usage(FILE *out);
/* A usage error: one line naming it, then a hint. Returns 2. */
int ctl_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A failure: one line naming what failed. Returns 1. */
int ctl_failure(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* getopt_long (with a leading ':' in the option string, opterr 0) returned '?' or ':' for the
 * options of cmd (NULL: the global ones). The option is named only up to any '=', so a
 * mistyped "--pass=..." does not echo its value. */
int ctl_bad_option(const char *cmd, char **argv, int c);
/* Refuse a password or secret given on the command line (ps, shell history). Returns 2. */
int ctl_refuse_inline(const char *cmd, const char *what, const char *stdin_opt);
/* Decimal digits only, no sign or spaces, at most max. 0 or -1. */
int ctl_parse_u64(const char *s, uint64_t max, uint64_t *out);
/* Signal handler for the prompt and top: records the signal in ctl_got_signal. */
extern volatile sig_atomic_t ctl_got_signal;
void ctl_on_signal(int sig);
/* A password or secret: from the first line of stdin, or asked twice on the terminal.
 * buf holds max + 1 bytes. 0 ok, 1 failure (message printed). */
int ctl_read_secret(bool from_stdin, const char *what, char *buf, size_t max);
/* Characters (code points) in a UTF-8 string, for column widths. */
size_t ctl_text_width(const char *s);
/* s, then spaces to width + 2 characters unless it is the last column. */
void ctl_put_padded(const char *s, size_t width, bool last);
/* Print j (taken; NULL: out of memory) as one line of compact JSON; its text is wiped. 0, or 1
 * with the failure printed. */
int ctl_print_json_line(json_t *j);
/* Room for element n in the growing array v of *cap elements of size bytes (doubling): the
 * array, perhaps moved; NULL when out of memory (v is kept, the caller still owns it). */
void *ctl_room(void *v, size_t *cap, size_t n, size_t size);
/* Append o (taken) to the array *list; when o is NULL or the append fails (out of memory),
 * the list is dropped: *list becomes NULL, which ctl_print_json_rows reports. */
void ctl_json_append(json_t **list, json_t *o);
/* Print an array of objects (taken; NULL: out of memory) one object per line:
 * "[\n {..},\n {..}\n]", "[]" when empty. 0, or 1 with the failure printed. */
int ctl_print_json_rows(json_t *rows);
/* Unix seconds as "YYYY-MM-DDTHH:MM:SSZ". */
void ctl_format_time(int64_t t, char out[32]);
/* Open the database into *s: 0, 1 (it failed) or 2 (none named). */
int ctl_open_db(const struct ctl *c, enum store_mode mode, struct store **s);
/* A store call failed: the facts the caller knows for "not found" and "exists", else the
 * store's own message. Returns 1. */
int ctl_store_failure(int rc, const char *err, const char *not_found, const char *exists,
                      const char *doing);
/* Whether realm has the user (asked before prompting, so a typo fails before the prompt).
 * 1 yes, 0 no, -1 error (message printed). */
int ctl_user_exists(struct store *s, const char *realm, const char *name);
/* The options of a "list" command: only --json. -1 when they parsed, else the exit status. */
int ctl_list_options(const char *cmd, int argc, char **argv, bool *json);

/* ---- ternctl_http.c: the admin HTTP API (--url) ---- */

/* Request and response bodies carry passwords, secrets and the token: libcurl's and jansson's
 * memory is wiped when they free it (glibc knows each block's size). */
void ctl_wipe_free(void *p);
void *ctl_wipe_malloc(size_t n);
void *ctl_wipe_calloc(size_t n, size_t size);
void *ctl_wipe_realloc(void *p, size_t n);
char *ctl_wipe_strdup(const char *s);
/* A token: 1 to TOKEN_MAX printable ASCII characters (it goes into an HTTP header). Returns 0,
 * else 2 with the usage error printed naming where it came from. */
int ctl_check_token(const char *tok, const char *from);
/* The first line of file, without the newline and trailing blanks, into *out (malloc'd).
 * 0, 1 (cannot read it) or 2 (not a token). */
int ctl_read_token_file(const char *path, char **out);
/* Text from the server, fit for one line of a terminal: control characters and the like
 * escaped (ops_text_escape), and at most max bytes. */
void ctl_clean_text(const char *in, size_t in_len, char *out, size_t max);
/* Percent-encoding of a URL path segment (RFC 3986 unreserved characters stay). */
char *ctl_path_escape(const char *s);
/* One request to the admin API: METHOD on the --url plus path, with the JSON body req (NULL:
 * none). On a 2xx answer 0, with *out the parsed answer (NULL when it has no body; the caller
 * decrefs it); else 1, the failure printed: the URL and, for an HTTP error, its status and the
 * server's message. */
int ctl_api_call(const struct ctl *c, const char *method, const char *path, json_t *req,
                 json_t **out);
/* The object answer of a request, else NULL with a failure printed (and decref'd). */
json_t *ctl_want_object(const struct ctl *c, const char *path, json_t *j);
/* A non-negative integer member, else def. */
uint64_t ctl_json_u64(const json_t *obj, const char *key, uint64_t def);
/* A member as a time for the listings: an ISO 8601 string as given, seconds formatted. */
void ctl_json_time(const json_t *obj, const char *key, char out[32]);
/* obj[key] = the string v. 0, or 1 with the failure printed (not UTF-8, out of memory). */
int ctl_set_str(json_t *obj, const char *key, const char *v, const char *what);
/* obj[key] = a password or secret read with ctl_read_secret (at most max bytes; key names it
 * in the prompt and errors); the buffer is wiped. 0, or 1 with the failure printed. */
int ctl_set_secret(json_t *obj, const char *key, bool from_stdin, size_t max);
/* obj[key] = v (at most INT64_MAX). 0, or 1 with the failure printed. */
int ctl_set_int(json_t *obj, const char *key, uint64_t v);
/* The bearer token into c->token, first of: --token (already there), --token-file,
 * TERN_TOKEN, the config's ops.token; none is fine. 0, 1 or 2 (failure or usage error
 * printed). */
int ctl_take_token(struct ctl *c, const char *token_file);
/* libcurl, its memory wiped when freed. 0, or 1 with the failure printed. */
int ctl_api_init(struct ctl *c);
/* Check an API URL and drop its trailing slashes (in place): 0, else 2 (usage error printed). */
int ctl_check_url(char *url, const char *what);

/* ---- the commands: argv[0] is the command's name; each returns the exit status ---- */

/* user add|passwd|disable|enable|del|list (ternctl_users.c). */
int ctl_cmd_user(struct ctl *c, int argc, char **argv);
/* secret add|list|del (ternctl_secrets.c). */
int ctl_cmd_secret(struct ctl *c, int argc, char **argv);
/* calls [--since D] [--user U] [--worst loss|jitter|rtt] [--limit N] [--json]
 * (ternctl_calls.c): the fleet's call records from the database. */
int ctl_cmd_calls(struct ctl *c, int argc, char **argv);
/* ternctl nodes [--json]: the fleet's registry (ternctl_nodes.c). */
int ctl_cmd_nodes(struct ctl *c, int argc, char **argv);
/* cred (ternctl_cred.c). */
int ctl_cmd_cred(struct ctl *c, int argc, char **argv);
/* allocations and top (ternctl_allocs.c): o holds the API options run() already parsed. */
int ctl_cmd_allocations(struct ctl *c, struct ops_opts *o, int argc, char **argv);
/* ternctl drain [--deadline S] | --cancel | --status (ternctl_allocs.c). */
int ctl_cmd_drain(struct ctl *c, struct ops_opts *o, int argc, char **argv);
/* ternctl reload (ternctl_allocs.c). */
int ctl_cmd_reload(struct ctl *c, struct ops_opts *o, int argc, char **argv);
int ctl_cmd_top(struct ctl *c, struct ops_opts *o, int argc, char **argv);

#endif
