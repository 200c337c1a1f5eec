/* ternctl_users.c: ternctl user add|passwd|disable|enable|del|list, in the database or
 * through the admin API. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "ternctl.h"
#include "uris.h"

/* "/api/v1/users/NAME" (malloc'd), else NULL with the failure printed. */
static char *user_path(const char *name)
{
    char *esc = ctl_path_escape(name);
    size_t len = esc ? strlen(esc) + sizeof "/api/v1/users/" : 0;
    char *p = esc ? malloc(len) : NULL;
    if (p)
        snprintf(p, len, "/api/v1/users/%s", esc);
    else
        ctl_failure("out of memory");
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
    void *nv = ctl_room(rows->v, &rows->cap, rows->n, sizeof *rows->v);
    if (!nv) {
        rows->oom = true;
        return 1;
    }
    rows->v = nv;
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
    ctl_format_time(u->created, when);
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
    if (ctl_api_call(c, "GET", "/api/v1/users", NULL, &j)) return 1;
    if (!json_is_array(j)) {
        json_decref(j);
        return ctl_failure("%s/api/v1/users: the answer is not a JSON array", c->url);
    }
    size_t i;
    json_t *u;
    json_array_foreach(j, i, u)
    {
        json_t *name = json_object_get(u, "name"), *rlm = json_object_get(u, "realm");
        const char *rs = json_is_string(rlm) ? json_string_value(rlm) : "";
        if (!json_is_string(name) || (realm && strcmp(rs, realm) != 0)) continue;
        uint64_t max = ctl_json_u64(u, "max_allocations", 0);
        char when[32];
        ctl_json_time(u, "created", when);
        if (add_user_row(rows, rs, json_string_value(name),
                         max > UINT32_MAX ? UINT32_MAX : (uint32_t)max,
                         ctl_json_u64(u, "bandwidth_bps", 0),
                         json_is_true(json_object_get(u, "disabled")), when))
            break;
    }
    json_decref(j);
    if (rows->oom) {
        free_user_rows(rows);
        return ctl_failure("out of memory listing the users");
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
    int rc = !req    ? ctl_failure("out of memory")
             : !path ? 1
                     : ctl_api_call(c, "PUT", path, req, &ans);
    const char *r = rc ? NULL : api_realm(c, ans);
    snprintf(realm, realm_len, "%s", r ? r : "");
    json_decref(ans);
    json_decref(req);
    free(path);
    return rc;
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
            return ctl_failure("user %s already exists in realm %s", name, c->realm);
        if (have) return ctl_failure("user %s already exists", name);
    }
    json_t *req = json_object(), *ans = NULL;
    if (!req) return ctl_failure("out of memory");
    int rc = ctl_set_str(req, "name", name, "user name");
    if (rc == 0) rc = ctl_set_secret(req, "password", from_stdin, PASSWORD_MAX);
    if (rc == 0 && have_max) rc = ctl_set_int(req, "max_allocations", max_alloc);
    if (rc == 0 && have_bw) rc = ctl_set_int(req, "bandwidth_bps", bandwidth);
    if (rc == 0) rc = ctl_api_call(c, "POST", "/api/v1/users", req, &ans);
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
            if (ctl_parse_u64(optarg, UINT32_MAX, &max_alloc))
                return ctl_usage_error("user add: --max-allocations wants a number 0-%" PRIu32
                                       " (0: the config's allocation.max_per_user), not '%s'",
                                       UINT32_MAX, optarg);
            have_max = true;
            break;
        case 'b':
            if (ctl_parse_u64(optarg, UINT64_MAX, &bandwidth))
                return ctl_usage_error(
                    "user add: --bandwidth wants bytes per second (0: unlimited), "
                    "not '%s'",
                    optarg);
            have_bw = true;
            break;
        case 's':
            from_stdin = true;
            break;
        case 'p':
            return ctl_refuse_inline("user add", "password", "--password-stdin");
        default:
            return ctl_bad_option("user add", argv, opt);
        }
    }
    if (optind != argc - 1) return ctl_usage_error("user add: wants one user NAME");
    const char *name = argv[optind];
    char why[OPS_ERR_LEN];
    if (ops_name_refused(name, why)) return ctl_usage_error("user add: %s", why);
    if (c->url) {
        if (bandwidth > INT64_MAX)
            return ctl_usage_error("user add: --bandwidth is at most %" PRId64 " with --url",
                                   INT64_MAX);
        return api_user_add(c, name, from_stdin, have_max, max_alloc, have_bw, bandwidth);
    }

    struct store *s;
    int orc = ctl_open_db(c, STORE_CREATE, &s);
    if (orc) return orc;
    char msg[STORE_ERR_LEN + 1200];
    snprintf(msg, sizeof msg, "user %s already exists in realm %s", name, c->realm);
    if (!from_stdin) {
        int have = ctl_user_exists(s, c->realm, name);
        if (have) {
            store_close(s);
            return have < 0 ? 1 : ctl_failure("%s", msg);
        }
    }
    char pw[PASSWORD_MAX + 1];
    int rc = ctl_read_secret(from_stdin, "password", pw, PASSWORD_MAX);
    if (rc == 0) {
        char err[STORE_ERR_LEN] = "";
        int r = store_user_add(s, c->realm, name, pw, (uint32_t)max_alloc, bandwidth, err);
        if (r != STORE_OK) {
            char doing[1200];
            snprintf(doing, sizeof doing, "adding user %s to realm %s", name, c->realm);
            rc = ctl_store_failure(r, err, NULL, msg, doing);
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
        if (!have && c->realm_chosen) return ctl_failure("no user %s in realm %s", name, c->realm);
        if (!have) return ctl_failure("no user %s", name);
    }
    json_t *req = json_object();
    if (!req) return ctl_failure("out of memory");
    char realm[STUN_MAX_TEXT_BYTES + 1];
    int rc = ctl_set_secret(req, "password", from_stdin, PASSWORD_MAX);
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
            return ctl_refuse_inline("user passwd", "password", "--password-stdin");
        default:
            return ctl_bad_option("user passwd", argv, opt);
        }
    }
    if (optind != argc - 1) return ctl_usage_error("user passwd: wants one user NAME");
    const char *name = argv[optind];
    if (c->url) return api_user_passwd(c, name, from_stdin);

    struct store *s;
    int orc = ctl_open_db(c, STORE_EXISTING, &s);
    if (orc) return orc;
    char missing[1200];
    snprintf(missing, sizeof missing, "no user %s in realm %s", name, c->realm);
    if (!from_stdin) {
        int have = ctl_user_exists(s, c->realm, name);
        if (have <= 0) {
            store_close(s);
            return have < 0 ? 1 : ctl_failure("%s", missing);
        }
    }
    char pw[PASSWORD_MAX + 1];
    int rc = ctl_read_secret(from_stdin, "password", pw, PASSWORD_MAX);
    if (rc == 0) {
        char err[STORE_ERR_LEN] = "";
        int r = store_user_passwd(s, c->realm, name, pw, err);
        if (r != STORE_OK) {
            char doing[1200];
            snprintf(doing, sizeof doing, "changing the password of user %s in realm %s", name,
                     c->realm);
            rc = ctl_store_failure(r, err, missing, NULL, doing);
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
        return ctl_bad_option(cmds[what], argv, opt);
    if (optind != argc - 1) return ctl_usage_error("%s: wants one user NAME", cmds[what]);
    const char *name = argv[optind];
    if (c->url) {
        char realm[STUN_MAX_TEXT_BYTES + 1] = "";
        int rc;
        if (what == CHANGE_DEL) {
            char *path = user_path(name);
            json_t *ans = NULL;
            rc = path ? ctl_api_call(c, "DELETE", path, NULL, &ans) : 1;
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
    int orc = ctl_open_db(c, STORE_EXISTING, &s);
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
        return ctl_store_failure(r, err, missing, NULL, act);
    }
    print_user_done(done[what], name, "in", c->realm);
    return 0;
}

/* user list --json: one object per user, one per line. */
static int print_users_json(const struct user_rows *rows)
{
    json_t *list = json_array();
    for (size_t i = 0; list && i < rows->n; i++) {
        const struct user_row *u = &rows->v[i];
        json_t *o =
            json_pack("{s:o, s:o, s:I, s:I, s:b, s:o}", "realm", ops_json_text(u->realm), "name",
                      ops_json_text(u->name), "max_allocations", (json_int_t)u->max_allocations,
                      "bandwidth", (json_int_t)u->bandwidth_bps, "disabled", u->disabled, "created",
                      ops_json_text(u->created)); /* created: from the server with --url */
        ctl_json_append(&list, o);
    }
    return ctl_print_json_rows(list);
}

/* user list: a table; realm and name escaped for the terminal (ops_text_escape). */
static int print_users_table(const struct user_rows *rows)
{
    int rc = 0;
    static const char *const head[6] = {"REALM",           "NAME",     "MAX ALLOCATIONS",
                                        "BANDWIDTH (B/s)", "DISABLED", "CREATED"};
    size_t w[6];
    for (int k = 0; k < 6; k++)
        w[k] = strlen(head[k]);
    char(*cells)[6][32] = calloc(rows->n ? rows->n : 1, sizeof *cells);
    char *(*shown)[2] = calloc(rows->n ? rows->n : 1, sizeof *shown); /* realm, name escaped */
    for (size_t i = 0; cells && shown && i < rows->n; i++)
        if (!(shown[i][0] = ops_text_escaped(rows->v[i].realm)) ||
            !(shown[i][1] = ops_text_escaped(rows->v[i].name))) {
            free(cells);
            cells = NULL;
        }
    if (!cells || !shown) rc = ctl_failure("out of memory listing the users");
    for (size_t i = 0; cells && shown && i < rows->n; i++) {
        const struct user_row *u = &rows->v[i];
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
        size_t cw[6] = {ctl_text_width(shown[i][0]), ctl_text_width(shown[i][1]),
                        strlen(cells[i][2]),         strlen(cells[i][3]),
                        strlen(cells[i][4]),         strlen(cells[i][5])};
        for (int k = 0; k < 6; k++)
            if (cw[k] > w[k]) w[k] = cw[k];
    }
    if (cells && shown) {
        for (int k = 0; k < 6; k++)
            ctl_put_padded(head[k], w[k], k == 5);
        fputc('\n', stdout);
        for (size_t i = 0; i < rows->n; i++) {
            ctl_put_padded(shown[i][0], w[0], false);
            ctl_put_padded(shown[i][1], w[1], false);
            for (int k = 2; k < 6; k++)
                ctl_put_padded(cells[i][k], w[k], k == 5);
            fputc('\n', stdout);
        }
    }
    for (size_t i = 0; shown && i < rows->n; i++) {
        free(shown[i][0]);
        free(shown[i][1]);
    }
    free(shown);
    free(cells);
    return rc;
}

static int cmd_user_list(struct ctl *c, int argc, char **argv)
{
    bool json = false;
    int rc0 = ctl_list_options("user list", argc, argv, &json);
    if (rc0 >= 0) return rc0;

    struct user_rows rows = {0};
    int rc = 0;
    if (c->url) {
        if (api_users(c, c->realm_chosen ? c->realm : NULL, &rows)) return 1;
    } else {
        struct store *s;
        int orc = ctl_open_db(c, STORE_EXISTING, &s);
        if (orc) return orc;
        char err[STORE_ERR_LEN] = "";
        int r = store_user_each(s, c->realm_chosen ? c->realm : NULL, collect_user, &rows, err);
        store_close(s);
        if (r != STORE_OK) rc = ctl_store_failure(r, err, NULL, NULL, "listing the users");
    }
    if (rc == 0 && rows.oom) rc = ctl_failure("out of memory listing the users");
    if (rc == 0) rc = json ? print_users_json(&rows) : print_users_table(&rows);
    free_user_rows(&rows);
    return rc;
}

int ctl_cmd_user(struct ctl *c, int argc, char **argv)
{
    if (argc < 2) return ctl_usage_error("user: wants add, passwd, del, disable, enable or list");
    const char *sub = argv[1];
    argc--;
    argv++;
    if (strcmp(sub, "add") == 0) return cmd_user_add(c, argc, argv);
    if (strcmp(sub, "passwd") == 0) return cmd_user_passwd(c, argc, argv);
    if (strcmp(sub, "del") == 0) return cmd_user_change(c, argc, argv, CHANGE_DEL);
    if (strcmp(sub, "disable") == 0) return cmd_user_change(c, argc, argv, CHANGE_DISABLE);
    if (strcmp(sub, "enable") == 0) return cmd_user_change(c, argc, argv, CHANGE_ENABLE);
    if (strcmp(sub, "list") == 0) return cmd_user_list(c, argc, argv);
    return ctl_usage_error("unknown command 'user %s' (add, passwd, del, disable, enable, list)",
                           sub);
}
