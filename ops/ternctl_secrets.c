/* ternctl_secrets.c: ternctl secret add|list|del: the REST secrets, in the database or
 * through the admin API. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "ternctl.h"
#include "uris.h"

/* ---- secret commands ---- */

/* secret add through the API: POST /api/v1/secrets {"secret"}, or {} to have it generate one. */
static int api_secret_add(const struct ctl *c, bool from_stdin, bool generate)
{
    json_t *req = json_object(), *ans = NULL;
    if (!req) return ctl_failure("out of memory");
    int rc = generate ? 0 : ctl_set_secret(req, "secret", from_stdin, STORE_MAX_SECRET);
    if (rc == 0) rc = ctl_api_call(c, "POST", "/api/v1/secrets", req, &ans);
    json_decref(req);
    if (rc) return rc;
    if (!(ans = ctl_want_object(c, "/api/v1/secrets", ans))) return 1;
    json_t *id = json_object_get(ans, "id"), *sec = json_object_get(ans, "secret");
    if (!json_is_integer(id))
        rc = ctl_failure("%s/api/v1/secrets: the answer has no secret id", c->url);
    else if (generate && !json_is_string(sec))
        rc = ctl_failure("%s/api/v1/secrets: the answer lacks the generated secret", c->url);
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
            return ctl_refuse_inline("secret add", "secret", "--secret-stdin, --generate");
        default:
            return ctl_bad_option("secret add", argv, opt);
        }
    }
    if (optind != argc)
        return ctl_usage_error("secret add: unexpected argument '%s'", argv[optind]);
    if (from_stdin && generate)
        return ctl_usage_error("secret add: --secret-stdin and --generate exclude each other");

    char secret[STORE_MAX_SECRET + 1];
    int rc = 0;
    if (c->url) return api_secret_add(c, from_stdin, generate);
    if (generate) {
        uint8_t raw[GENERATED_SECRET_BYTES];
        if (RAND_bytes(raw, sizeof raw) != 1)
            return ctl_failure("generating a secret: RAND_bytes failed");
        EVP_EncodeBlock((unsigned char *)secret, raw, (int)sizeof raw);
        OPENSSL_cleanse(raw, sizeof raw);
    } else if ((rc = ctl_read_secret(from_stdin, "secret", secret, STORE_MAX_SECRET)) != 0)
        return rc;

    struct store *s;
    rc = ctl_open_db(c, STORE_CREATE, &s);
    if (s) {
        char err[STORE_ERR_LEN] = "";
        int64_t id = 0;
        int r = store_secret_add(s, secret, &id, err);
        store_close(s);
        if (r != STORE_OK) {
            char doing[PATH_MAX + 64];
            snprintf(doing, sizeof doing, "adding a secret to %s", c->db_shown);
            rc = ctl_store_failure(r, err, NULL, NULL, doing);
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
    void *nv = ctl_room(rows->v, &rows->cap, rows->n, sizeof *rows->v);
    if (!nv) {
        rows->oom = true;
        return 1;
    }
    rows->v = nv;
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
    size_t chars = ctl_text_width(sec->secret), show = chars / 2 < 4 ? chars / 2 : 4;
    char when[32];
    ctl_format_time(sec->created, when);
    return add_secret_row(ctx, sec->id, when, sec->secret, show);
}

/* The secrets from GET /api/v1/secrets into rows, by their prefix (at most 4 characters of
 * it, as from the database). 0 or 1 (printed). */
static int api_secrets(const struct ctl *c, struct secret_rows *rows)
{
    json_t *j;
    if (ctl_api_call(c, "GET", "/api/v1/secrets", NULL, &j)) return 1;
    if (!json_is_array(j)) {
        json_decref(j);
        return ctl_failure("%s/api/v1/secrets: the answer is not a JSON array", c->url);
    }
    size_t i;
    json_t *sec;
    json_array_foreach(j, i, sec)
    {
        json_t *id = json_object_get(sec, "id"), *pre = json_object_get(sec, "prefix");
        if (!json_is_integer(id)) continue;
        char prefix[64] = "", when[32];
        if (json_is_string(pre))
            ctl_clean_text(json_string_value(pre), json_string_length(pre), prefix, 48);
        size_t n = strlen(prefix);
        if (n >= strlen("…") && strcmp(prefix + n - strlen("…"), "…") == 0)
            prefix[n - strlen("…")] = '\0';
        ctl_json_time(sec, "created", when);
        if (add_secret_row(rows, (int64_t)json_integer_value(id), when, prefix, 4)) break;
    }
    json_decref(j);
    if (rows->oom) return ctl_failure("out of memory listing the secrets");
    return 0;
}

/* secret list --json: one object per secret, one per line. */
static int print_secrets_json(const struct secret_rows *rows)
{
    json_t *list = json_array();
    for (size_t i = 0; list && i < rows->n; i++) {
        json_t *o =
            json_pack("{s:I, s:o, s:o}", "id", (json_int_t)rows->v[i].id, "created",
                      ops_json_text(rows->v[i].created), "secret", ops_json_text(rows->v[i].shown));
        ctl_json_append(&list, o);
    }
    return ctl_print_json_rows(list);
}

/* secret list: a table of id, created and the shown prefix (escaped for the terminal). */
static void print_secrets_table(const struct secret_rows *rows)
{
    int idw = 2;
    for (size_t i = 0; i < rows->n; i++) {
        int w = snprintf(NULL, 0, "%" PRId64, rows->v[i].id);
        if (w > idw) idw = w;
    }
    printf("%-*s  %-20s  %s\n", idw, "ID", "CREATED", "SECRET");
    for (size_t i = 0; i < rows->n; i++) {
        char *shown = ops_text_escaped(rows->v[i].shown);
        printf("%*" PRId64 "  %-20s  %s\n", idw, rows->v[i].id, rows->v[i].created,
               shown ? shown : "?");
        free(shown);
    }
}

static int cmd_secret_list(struct ctl *c, int argc, char **argv)
{
    bool json = false;
    int rc0 = ctl_list_options("secret list", argc, argv, &json);
    if (rc0 >= 0) return rc0;

    struct secret_rows rows = {0};
    int rc = 0;
    if (c->url)
        rc = api_secrets(c, &rows);
    else {
        struct store *s;
        int orc = ctl_open_db(c, STORE_EXISTING, &s);
        if (orc) return orc;
        char err[STORE_ERR_LEN] = "";
        int r = store_secret_each(s, collect_secret, &rows, err);
        store_close(s);
        if (r != STORE_OK)
            rc = ctl_store_failure(r, err, NULL, NULL, "listing the secrets");
        else if (rows.oom)
            rc = ctl_failure("out of memory listing the secrets");
    }
    if (rc == 0 && json)
        rc = print_secrets_json(&rows);
    else if (rc == 0)
        print_secrets_table(&rows);
    free(rows.v);
    return rc;
}

static int cmd_secret_del(struct ctl *c, int argc, char **argv)
{
    static const struct option opts[] = {{NULL, 0, NULL, 0}};
    int opt;
    optind = 0;
    if ((opt = getopt_long(argc, argv, ":", opts, NULL)) != -1)
        return ctl_bad_option("secret del", argv, opt);
    if (optind != argc - 1)
        return ctl_usage_error("secret del: wants one secret ID (see secret list)");
    uint64_t id;
    if (ctl_parse_u64(argv[optind], INT64_MAX, &id) || id == 0)
        return ctl_usage_error(
            "secret del: the ID is a positive number (see secret list), not '%s'", argv[optind]);
    if (c->url) {
        char path[64];
        json_t *ans = NULL;
        snprintf(path, sizeof path, "/api/v1/secrets/%" PRIu64, id);
        int rc = ctl_api_call(c, "DELETE", path, NULL, &ans);
        json_decref(ans);
        if (rc == 0) printf("deleted secret %" PRIu64 "\n", id);
        return rc;
    }

    struct store *s;
    int orc = ctl_open_db(c, STORE_EXISTING, &s);
    if (orc) return orc;
    char err[STORE_ERR_LEN] = "";
    int r = store_secret_del(s, (int64_t)id, err);
    store_close(s);
    if (r != STORE_OK) {
        char missing[PATH_MAX + 64], doing[PATH_MAX + 64];
        snprintf(missing, sizeof missing, "no secret %" PRIu64 " in %s", id, c->db_shown);
        snprintf(doing, sizeof doing, "deleting secret %" PRIu64 " from %s", id, c->db_shown);
        return ctl_store_failure(r, err, missing, NULL, doing);
    }
    printf("deleted secret %" PRIu64 "\n", id);
    return 0;
}

int ctl_cmd_secret(struct ctl *c, int argc, char **argv)
{
    if (argc < 2) return ctl_usage_error("secret: wants add, list or del");
    const char *sub = argv[1];
    argc--;
    argv++;
    if (strcmp(sub, "add") == 0) return cmd_secret_add(c, argc, argv);
    if (strcmp(sub, "list") == 0) return cmd_secret_list(c, argc, argv);
    if (strcmp(sub, "del") == 0) return cmd_secret_del(c, argc, argv);
    return ctl_usage_error("unknown command 'secret %s' (add, list, del)", sub);
}
