/* ternctl_http.c: ternctl's client of the admin HTTP API (--url): libcurl and jansson with
 * wiped memory, the bearer token, one call with its errors, JSON member helpers. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/crypto.h>

#include "ternctl.h"
#include "uris.h"

/* ---- the admin HTTP API (--url) ---- */

#define API_MAX_RESPONSE    (16u << 20) /* bytes; a longer answer is refused */
#define API_CONNECT_TIMEOUT 10L         /* seconds */
#define API_TIMEOUT         60L         /* seconds, the whole request */

void ctl_wipe_free(void *p)
{
    if (!p) return;
    OPENSSL_cleanse(p, malloc_usable_size(p));
    free(p);
}

void *ctl_wipe_malloc(size_t n)
{
    return malloc(n);
}

void *ctl_wipe_calloc(size_t n, size_t size)
{
    return calloc(n, size);
}

void *ctl_wipe_realloc(void *p, size_t n)
{
    if (!p) return malloc(n);
    if (n == 0) {
        ctl_wipe_free(p);
        return NULL;
    }
    void *q = malloc(n);
    if (!q) return NULL;
    size_t old = malloc_usable_size(p);
    memcpy(q, p, old < n ? old : n);
    ctl_wipe_free(p);
    return q;
}

char *ctl_wipe_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

int ctl_check_token(const char *tok, const char *from)
{
    size_t n = strlen(tok);
    if (n == 0) return ctl_usage_error("%s: the token is empty", from);
    if (n > TOKEN_MAX)
        return ctl_usage_error("%s: the token is longer than %d bytes", from, TOKEN_MAX);
    for (size_t i = 0; i < n; i++)
        if (tok[i] < 0x21 || tok[i] > 0x7E)
            return ctl_usage_error("%s: the token may hold only printable ASCII without spaces",
                                   from);
    return 0;
}

int ctl_read_token_file(const char *path, char **out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) return ctl_failure("--token-file %s: %s", path, strerror(errno));
    char *buf = malloc(TOKEN_MAX + 2);
    if (!buf) {
        close(fd);
        return ctl_failure("out of memory");
    }
    size_t n = 0;
    int rc = 0;
    while (n < TOKEN_MAX + 1) {
        ssize_t r = read(fd, buf + n, TOKEN_MAX + 1 - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            rc = ctl_failure("--token-file %s: %s", path, strerror(errno));
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
    if (rc == 0) rc = ctl_check_token(buf, from);
    if (rc) {
        OPENSSL_cleanse(buf, TOKEN_MAX + 2);
        free(buf);
        return rc;
    }
    *out = buf;
    return 0;
}

void ctl_clean_text(const char *in, size_t in_len, char *out, size_t max)
{
    ops_text_escape(in, in_len, out, max + 1);
}

char *ctl_path_escape(const char *s)
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
        char *np = ctl_wipe_realloc(b->p, ncap);
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
        return ctl_failure("%s: 401: the API wants a token and none was given: pass --token-file "
                           "FILE, TERN_TOKEN or -c with ternd's configuration (its ops.token)",
                           url);
    if (status == 401)
        return ctl_failure(
            "%s: 401: the token was refused (wrong token? it must be ternd's ops.token)", url);
    char msg[512];
    json_t *j = b->n ? json_loadb(b->p, b->n, 0, NULL) : NULL;
    json_t *e = json_is_object(j) ? json_object_get(j, "error") : NULL;
    if (json_is_string(e))
        ctl_clean_text(json_string_value(e), json_string_length(e), msg, 300);
    else if (b->n) {
        char text[256];
        ctl_clean_text(b->p, b->n, text, 200);
        snprintf(msg, sizeof msg, "HTTP error: %s%s", text, b->n > 200 ? "..." : "");
    } else
        snprintf(msg, sizeof msg, "HTTP error with no message");
    int rc = ctl_failure("%s: %ld: %s", url, status, msg);
    /* A refused reload lists every problem ("file:line: key: problem"): one line each. */
    json_t *probs = json_is_object(j) ? json_object_get(j, "problems") : NULL;
    size_t i;
    json_t *p;
    json_array_foreach(probs, i, p)
    {
        if (!json_is_string(p)) continue;
        ctl_clean_text(json_string_value(p), json_string_length(p), msg, 400);
        fprintf(stderr, "  %s\n", msg);
    }
    json_decref(j);
    return rc;
}

int ctl_api_call(const struct ctl *c, const char *method, const char *path, json_t *req,
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
        ctl_failure("out of memory");
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
            ctl_failure("out of memory");
            goto out;
        }
        snprintf(auth, alen, "Authorization: Bearer %s", c->token);
        hdrs = curl_slist_append(hdrs, auth);
    }
    if (req) {
        payload = json_dumps(req, JSON_COMPACT);
        if (!payload) {
            ctl_failure("out of memory");
            goto out;
        }
        hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, payload); /* not copied: wiped below */
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(payload));
    }
    if (!hdrs) {
        ctl_failure("out of memory");
        goto out;
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    if (strcmp(method, "POST") != 0 || !req) curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    if (strcmp(method, "GET") == 0) curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);

    CURLcode res = curl_easy_perform(h);
    if (res != CURLE_OK) {
        if (b.too_big)
            ctl_failure("%s: the answer is longer than %u bytes", url, API_MAX_RESPONSE);
        else if (b.oom)
            ctl_failure("%s: out of memory reading the answer", url);
        else if (res == CURLE_COULDNT_CONNECT)
            ctl_failure("%s: cannot connect (%s): is ternd running with ops.listen there?", url,
                        errbuf[0] ? errbuf : curl_easy_strerror(res));
        else
            ctl_failure("%s: %s", url, errbuf[0] ? errbuf : curl_easy_strerror(res));
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
            ctl_failure("%s: %ld: the answer is not JSON (%s)", url, status, jerr.text);
            goto out;
        }
    }
    rc = 0;
out:
    if (h) curl_easy_cleanup(h);
    curl_slist_free_all(hdrs);
    if (auth) OPENSSL_cleanse(auth, strlen(auth));
    free(auth);
    ctl_wipe_free(payload);
    ctl_wipe_free(b.p);
    free(url);
    return rc;
}

json_t *ctl_want_object(const struct ctl *c, const char *path, json_t *j)
{
    if (json_is_object(j)) return j;
    json_decref(j);
    ctl_failure("%s%s: the answer is not a JSON object", c->url, path);
    return NULL;
}

/* A non-negative integer member, else def. */
uint64_t ctl_json_u64(const json_t *obj, const char *key, uint64_t def)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0) return def;
    return (uint64_t)json_integer_value(v);
}

void ctl_json_time(const json_t *obj, const char *key, char out[32])
{
    json_t *v = json_object_get(obj, key);
    if (json_is_string(v))
        ctl_clean_text(json_string_value(v), json_string_length(v), out, 31);
    else if (json_is_integer(v))
        ctl_format_time((int64_t)json_integer_value(v), out);
    else
        snprintf(out, 32, "-");
}

int ctl_set_str(json_t *obj, const char *key, const char *v, const char *what)
{
    json_t *j = json_string(v);
    if (!j) return ctl_failure("the %s is not valid UTF-8 (the API speaks JSON)", what);
    if (json_object_set_new(obj, key, j)) return ctl_failure("out of memory");
    return 0;
}

int ctl_set_secret(json_t *obj, const char *key, bool from_stdin, size_t max)
{
    char *buf = malloc(max + 1);
    if (!buf) return ctl_failure("out of memory");
    int rc = ctl_read_secret(from_stdin, key, buf, max);
    if (rc == 0) rc = ctl_set_str(obj, key, buf, key);
    OPENSSL_cleanse(buf, max + 1);
    free(buf);
    return rc;
}

int ctl_set_int(json_t *obj, const char *key, uint64_t v)
{
    if (json_object_set_new(obj, key, json_integer((json_int_t)v)))
        return ctl_failure("out of memory");
    return 0;
}

int ctl_check_url(char *url, const char *what)
{
    bool https = strncasecmp(url, "https://", 8) == 0;
    if (!https && strncasecmp(url, "http://", 7) != 0)
        return ctl_usage_error("%s wants an http:// or https:// URL, not '%s'", what, url);
    size_t n = strlen(url);
    while (n > 0 && url[n - 1] == '/')
        url[--n] = '\0';
    if (n <= (https ? 8u : 7u)) return ctl_usage_error("%s names no host", what);
    return 0;
}

int ctl_take_token(struct ctl *c, const char *token_file)
{
    if (c->token) return ctl_check_token(c->token, "--token");
    if (token_file) return ctl_read_token_file(token_file, &c->token);
    const char *env = getenv("TERN_TOKEN");
    if (env && *env) { /* empty: unset */
        int rc = ctl_check_token(env, "TERN_TOKEN");
        if (rc) return rc;
        if (!(c->token = strdup(env))) return ctl_failure("out of memory");
    } else if (c->have_cfg && c->cfg.ops_token) {
        int rc = ctl_check_token(c->cfg.ops_token, c->cfg_path);
        if (rc) return rc;
        if (!(c->token = strdup(c->cfg.ops_token))) return ctl_failure("out of memory");
    }
    return 0;
}

int ctl_api_init(struct ctl *c)
{
    if (curl_global_init_mem(CURL_GLOBAL_DEFAULT, ctl_wipe_malloc, ctl_wipe_free, ctl_wipe_realloc,
                             ctl_wipe_strdup, ctl_wipe_calloc) != CURLE_OK)
        return ctl_failure("cannot initialize libcurl");
    c->curl_ready = true;
    return 0;
}
