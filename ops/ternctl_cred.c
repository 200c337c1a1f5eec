/* ternctl_cred.c: ternctl cred: a TURN REST credential minted here or by the admin API,
 * printed as text, JSON or an RTCPeerConnection iceServers entry. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <time.h>
#include <unistd.h>

#include "ternctl.h"
#include "fleet.h"
#include "uris.h"

/* Print a credential: "username: U\npassword: P", or with json
 * {"username","password","ttl","uris"}, or with ice {"iceServers":[{"urls","username",
 * "credential"}]} (what RTCPeerConnection takes). uris: a JSON array of strings, taken (NULL:
 * out of memory). 0, or 1 with the failure printed. */
static int print_credential(const char *username, const char *password, uint64_t ttl, json_t *uris,
                            bool json, bool ice)
{
    if (!json && !ice) {
        json_decref(uris);
        char *shown = ops_text_escaped(username);
        printf("username: %s\npassword: %s\n", shown ? shown : "?", password);
        free(shown);
        return 0;
    }
    json_t *out = json ? json_pack("{s:o, s:s, s:I, s:o}", "username", ops_json_text(username),
                                   "password", password, "ttl", (json_int_t)ttl, "uris", uris)
                       : json_pack("{s:[{s:o, s:o, s:s}]}", "iceServers", "urls", uris, "username",
                                   ops_json_text(username), "credential", password);
    return ctl_print_json_line(out);
}

/* cred through the API: POST /api/v1/credentials {"user","ttl"}; the server's URIs. */
/* The URIs of the fleet's best nodes (ops/fleet.c), when its registry has an offerable one. */
static bool fleet_best_uris(const struct ctl *c, struct ops_uris *u)
{
    char err[STORE_ERR_LEN] = "", self[STORE_MAX_NODE + 1] = "";
    struct store *s = store_open_with(c->db, c->have_cfg ? c->cfg.database_password_file : NULL,
                                      STORE_EXISTING, err);
    if (!s) return false;
    struct fleet f;
    if (c->have_cfg && fleet_node_id(&c->cfg, self)) self[0] = '\0';
    int rc =
        fleet_read(s, self[0] ? self : NULL, c->have_cfg ? c->cfg.cluster_dead_after : 10, &f, err);
    store_close(s);
    if (rc != STORE_OK) return false;
    size_t n = fleet_uris(&f, FLEET_URI_NODES, u);
    fleet_free(&f);
    return n > 0;
}

static int api_cred(const struct ctl *c, const char *user, uint64_t ttl, bool json, bool ice)
{
    static const char path[] = "/api/v1/credentials";
    json_t *req = json_object(), *ans = NULL;
    if (!req) return ctl_failure("out of memory");
    int rc = ctl_set_str(req, "user", user, "user ID");
    if (rc == 0) rc = ctl_set_int(req, "ttl", ttl);
    if (rc == 0) rc = ctl_api_call(c, "POST", path, req, &ans);
    json_decref(req);
    if (rc) return rc;
    if (!(ans = ctl_want_object(c, path, ans))) return 1;
    json_t *un = json_object_get(ans, "username"), *pw = json_object_get(ans, "password");
    json_t *uris = json_object_get(ans, "uris");
    if (!json_is_string(un) || !json_is_string(pw)) {
        json_decref(ans);
        return ctl_failure("%s%s: the answer lacks the username or the password", c->url, path);
    }
    json_t *strings = json_array();
    size_t i;
    json_t *u;
    json_array_foreach(uris, i, u)
    {
        if (json_is_string(u) && strings) json_array_append(strings, u);
    }
    rc = print_credential(json_string_value(un), json_string_value(pw),
                          ctl_json_u64(ans, "ttl", ttl), strings, json, ice);
    json_decref(ans);
    return rc;
}

int ctl_cmd_cred(struct ctl *c, int argc, char **argv)
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
            return ctl_bad_option("cred", argv, opt);
        }
    }
    if (optind != argc) return ctl_usage_error("cred: unexpected argument '%s'", argv[optind]);
    if (!user || !*user) return ctl_usage_error("cred: --user ID is required");
    char why[OPS_ERR_LEN];
    if (ops_name_refused(user, why)) return ctl_usage_error("cred: --user: %s", why);
    if (!ttl_arg) return ctl_usage_error("cred: --ttl SECONDS is required");
    if (json && ice) return ctl_usage_error("cred: --json and --ice-servers exclude each other");
    time_t now = time(NULL);
    uint64_t ttl;
    if (ctl_parse_u64(ttl_arg, (uint64_t)INT64_MAX - (uint64_t)now, &ttl) || ttl == 0)
        return ctl_usage_error("cred: --ttl wants a positive number of seconds, not '%s'", ttl_arg);
    if (c->url && sha256)
        return ctl_usage_error("cred: --sha256 is not available with --url (the server mints the "
                               "credential)");
    if (c->url) return api_cred(c, user, ttl, json, ice);

    const char *sep = c->have_cfg ? c->cfg.rest_separator : ":";

    /* The newest secret: the config's last one (the file lists old then new while rotating),
     * else the database's newest. */
    char secret[STORE_MAX_SECRET + 1];
    if (c->have_cfg && c->cfg.nsecrets > 0) {
        const char *last = c->cfg.secrets[c->cfg.nsecrets - 1];
        if (strlen(last) > STORE_MAX_SECRET)
            return ctl_failure("%s: auth.secrets: the last secret is longer than %d bytes",
                               c->cfg_path, STORE_MAX_SECRET);
        snprintf(secret, sizeof secret, "%s", last);
    } else {
        if (!c->db && c->have_cfg)
            return ctl_failure("no REST secret: %s has neither auth.secrets nor auth.database",
                               c->cfg_path);
        if (!c->db)
            return ctl_usage_error("cred: no REST secret: name the database with --db FILE or a "
                                   "config with auth.secrets with -c FILE");
        if (!store_is_uri(c->db) && access(c->db, F_OK) != 0)
            return ctl_failure("no REST secret: %s%s%s does not exist (add one with "
                               "'ternctl secret add')",
                               c->have_cfg ? c->cfg_path : "",
                               c->have_cfg ? " has no auth.secrets and " : "", c->db_shown);
        struct store *s;
        int orc = ctl_open_db(c, STORE_EXISTING, &s);
        if (orc) return orc;
        char err[OPS_ERR_LEN] = "";
        int r = ops_newest_db_secret(s, secret, err);
        store_close(s);
        if (r == OPS_FAILED) return ctl_failure("%s", err);
        if (r == OPS_NO_SECRET)
            return ctl_failure("no REST secret: %s has none%s (add one with 'ternctl secret add')",
                               c->db_shown,
                               c->have_cfg ? " and the config's auth.secrets is empty" : "");
    }

    struct ops_credential cred;
    int mrc = ops_mint_credential(secret, sep[0], user, ttl, (int64_t)now,
                                  sha256 ? AUTH_REST_HMAC_SHA256 : AUTH_REST_HMAC_SHA1, &cred);
    OPENSSL_cleanse(secret, sizeof secret);
    if (mrc == OPS_TOO_LONG)
        return ctl_usage_error("cred: the username would be longer than %d bytes",
                               STUN_MAX_USERNAME);
    if (mrc != OPS_OK) return ctl_failure("computing the REST password: the HMAC failed");
    json_t *uris = json_array();
    if (json || ice) {
        struct ops_uris *u = calloc(1, sizeof *u);
        char uerr[OPS_ERR_LEN] = "";
        /* In a fleet (a PostgreSQL database), the best nodes from its registry, as the admin
         * API gives them; else the config's own listeners. */
        bool fleet = u && c->db && store_is_uri(c->db) && fleet_best_uris(c, u);
        if (!u || (!fleet && c->have_cfg && ops_listener_uris(&c->cfg, u, uerr))) {
            free(u);
            json_decref(uris);
            OPENSSL_cleanse(&cred, sizeof cred);
            return ctl_failure("%s", uerr[0] ? uerr : "out of memory");
        }
        for (size_t i = 0; uris && i < u->n; i++)
            json_array_append_new(uris, json_string(u->v[i]));
        free(u);
        if (ice && !c->have_cfg)
            fprintf(stderr, "ternctl: warning: no -c config, so the urls list is empty\n");
    }
    int rc = print_credential(cred.username, cred.password, ttl, uris, json, ice);
    OPENSSL_cleanse(&cred, sizeof cred);
    return rc;
}
