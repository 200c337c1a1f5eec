/* config.c: parse, default and validate the YAML configuration (libyaml document API). */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "addr.h"

/* A config this large is a mistake: many users belong in the database, not the file. */
#define MAX_FILE_SIZE    (16u << 20)
#define MAX_SECTION_KEYS 16  /* seen[] in parse_map; the largest table has 9 keys */
#define PATH_LEN         256 /* dotted key paths; longer (user-supplied) ones are truncated */
#define SHOW_BYTES       60  /* values echoed in messages are cut here */
#define NKEYS(t)         (sizeof t / sizeof t[0])

/* The state of one cfg_parse call (no globals: parses may run in parallel, e.g. on reload). */
struct parse {
    yaml_document_t *doc;
    const char *name;
    FILE *err;
    unsigned nerr;
    size_t line; /* where a problem about an absent key is reported: the enclosing mapping */
    struct cfg_keyline *lines; /* where each key given was found (cfg_key_line, reload) */
    size_t nlines, caplines;
};

/* Remember the line of key path (a failure to remember only loses a line number). */
static void keyline(struct parse *p, const char *path, size_t line)
{
    if (p->nlines == p->caplines) {
        size_t cap = p->caplines ? p->caplines * 2 : 64;
        struct cfg_keyline *n = realloc(p->lines, cap * sizeof(*n));
        if (!n) return;
        p->lines = n;
        p->caplines = cap;
    }
    struct cfg_keyline *k = &p->lines[p->nlines++];
    size_t n = strnlen(path, sizeof k->key - 1); /* longer paths are unknown keys' */
    memcpy(k->key, path, n);
    k->key[n] = '\0';
    k->line = (unsigned)line;
}

struct key;
/* Stores the value of node v (NULL: the key is absent, apply k->def) at base + k->off. */
typedef void setter(struct parse *p, const struct key *k, yaml_node_t *v, const char *path,
                    void *base);

enum {
    F_NULLABLE = 1 << 0, /* null/~/empty is valid: the field stays NULL / AF_UNSPEC / empty */
    F_REQUIRED = 1 << 1, /* no default: absence is an error */
    F_SECRET = 1 << 2,   /* never echo the value in a message (messages end up in logs) */
    F_CHARS = 1 << 3,    /* the length limits count UTF-8 characters, not bytes */
};

/* One row of a key table (nginx style): name, how to set it, where, limits, default. */
struct key {
    const char *name;
    setter *set;
    size_t off;         /* the field's offset from the base the setter writes into */
    size_t size;        /* integers: sizeof the field; lists: offset of the count field */
    long long min, max; /* integers: the range; strings: the length limits */
    const char *def;    /* the default as YAML scalar text; NULL: null (or required) */
    const void *arg;    /* sections: struct section; lists: struct list_spec;
                           enums: NULL-terminated words; integers: a word meaning 0 ("auto") */
    unsigned flags;
};

struct section {
    const struct key *keys;
    size_t nkeys;
    /* Rules across keys; clean says the section's own keys had no problems (so the fields
     * hold real values and comparing them cannot produce a spurious second message). */
    void (*check)(struct parse *p, yaml_node_t *map, const char *path, void *base, bool clean);
};

struct list_spec {
    size_t elem_size;
    struct key item;          /* parses one item; .off is set to the item's offset in the array */
    const char *noun;         /* "a list of ..." in type errors */
    const char *need;         /* non-NULL: an empty list is an error, and this says why */
    void *(*dflt)(size_t *n); /* the default for an absent key; NULL: the empty list */
    /* Duplicate items are errors when set (show describes an item for the message). */
    bool (*same)(const void *a, const void *b);
    void (*show)(const void *elem, char *buf, size_t size);
};

/* ---- messages ---- */

__attribute__((format(printf, 4, 5))) static void problem(struct parse *p, const yaml_node_t *v,
                                                          const char *path, const char *fmt, ...)
{
    va_list ap;

    fprintf(p->err, "%s:%zu: %s: ", p->name, v ? v->start_mark.line + 1 : p->line,
            *path ? path : "(top level)");
    va_start(ap, fmt);
    vfprintf(p->err, fmt, ap);
    va_end(ap);
    fputc('\n', p->err);
    p->nerr++;
}

/* Returned by value so several can appear in one printf call. */
struct shown {
    char s[SHOW_BYTES + 8];
};

/* A value as echoed in a message: cut short, control characters replaced. */
static struct shown show_text(const char *s, size_t len, bool quote)
{
    struct shown out;
    size_t o = 0;

    if (quote) out.s[o++] = '"';
    for (size_t i = 0; i < len && i < SHOW_BYTES; i++) {
        unsigned char ch = (unsigned char)s[i];
        out.s[o++] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
    }
    if (len > SHOW_BYTES) {
        memcpy(out.s + o, "...", 3);
        o += 3;
    }
    if (quote) out.s[o++] = '"';
    out.s[o] = '\0';
    return out;
}

/* ---- scalars ---- */

enum vtype { V_NULL, V_BOOL, V_INT, V_FLOAT, V_STR, V_LIST, V_MAP };

struct scalar {
    const char *s; /* NUL-terminated (libyaml terminates scalars; defaults are literals) */
    size_t len;
    enum vtype t;
};

static bool all_of(const char *s, size_t len, const char *set)
{
    if (len == 0) return false;
    for (size_t i = 0; i < len; i++)
        if (!s[i] || !strchr(set, s[i])) return false;
    return true;
}

static bool is_word(const char *s, size_t len, const char *const *words)
{
    for (; *words; words++)
        if (strlen(*words) == len && memcmp(s, *words, len) == 0) return true;
    return false;
}

/* The YAML 1.2 core schema type of a scalar: only plain scalars are anything but strings,
 * so quoting a value ("3478") always makes it a string. */
static enum vtype classify(const char *s, size_t len, bool plain)
{
    static const char *const nulls[] = {"~", "null", "Null", "NULL", NULL};
    static const char *const bools[] = {"true", "True", "TRUE", "false", "False", "FALSE", NULL};
    const char *d = s;
    size_t n = len;

    if (!plain) return V_STR;
    if (len == 0 || is_word(s, len, nulls)) return V_NULL;
    if (is_word(s, len, bools)) return V_BOOL;
    if (n > 2 && d[0] == '0' && d[1] == 'x' && all_of(d + 2, n - 2, "0123456789abcdefABCDEF"))
        return V_INT;
    if (n > 2 && d[0] == '0' && d[1] == 'o' && all_of(d + 2, n - 2, "01234567")) return V_INT;
    if (*d == '-' || *d == '+') {
        d++;
        n--;
    }
    if (all_of(d, n, "0123456789")) return V_INT;
    if (n > 0 && (all_of(d, 1, "0123456789.")) && all_of(d, n, "0123456789.eE+-")) {
        char *end;
        (void)strtod(s, &end);
        if (end == s + len) return V_FLOAT;
    }
    return V_STR;
}

static bool is_null(const yaml_node_t *v)
{
    return v->type == YAML_SCALAR_NODE &&
           classify((const char *)v->data.scalar.value, v->data.scalar.length,
                    v->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) == V_NULL;
}

/* The value to apply: the node's, or the table default when the key is absent. */
static struct scalar value_of(const struct key *k, const yaml_node_t *v)
{
    struct scalar sc = {"", 0, V_NULL};

    if (!v) {
        if (k->def) {
            sc.s = k->def;
            sc.len = strlen(k->def);
            sc.t = classify(sc.s, sc.len, sc.len != 0); /* "" in a table means the empty string */
        }
    } else if (v->type == YAML_SEQUENCE_NODE) {
        sc.t = V_LIST;
    } else if (v->type == YAML_MAPPING_NODE) {
        sc.t = V_MAP;
    } else {
        sc.s = (const char *)v->data.scalar.value;
        sc.len = v->data.scalar.length;
        sc.t = classify(sc.s, sc.len, v->data.scalar.style == YAML_PLAIN_SCALAR_STYLE);
    }
    return sc;
}

/* What a node is, for "expected X, got Y". Secret values are described, never echoed. */
static struct shown describe(const struct key *k, const yaml_node_t *v)
{
    static const char *const names[] = {"null",     "a boolean", "an integer", "a number",
                                        "a string", "a list",    "a mapping"};
    struct scalar sc = value_of(k, v);
    struct shown out;

    if (sc.t == V_NULL || sc.t == V_LIST || sc.t == V_MAP || (k->flags & F_SECRET)) {
        snprintf(out.s, sizeof out.s, "%s", names[sc.t]);
        return out;
    }
    return show_text(sc.s, sc.len, sc.t == V_STR);
}

static void bad_type(struct parse *p, const struct key *k, const yaml_node_t *v, const char *path,
                     const char *want)
{
    problem(p, v, path, "expected %s, got %s", want, describe(k, v).s);
}

static bool parse_int(const char *s, long long *out)
{
    const char *d = s;
    bool neg = false;
    int base = 10;
    unsigned long long u;
    char *end;

    if (*d == '-' || *d == '+') neg = *d++ == '-';
    if (d[0] == '0' && (d[1] == 'x' || d[1] == 'o')) {
        base = d[1] == 'x' ? 16 : 8;
        d += 2;
    }
    errno = 0;
    u = strtoull(d, &end, base);
    if (errno || end == d || *end || u > (unsigned long long)LLONG_MAX) return false;
    *out = neg ? -(long long)u : (long long)u;
    return true;
}

static void store_uint(void *dst, size_t size, unsigned long long v)
{
    uint8_t u8 = (uint8_t)v;
    uint16_t u16 = (uint16_t)v;
    uint32_t u32 = (uint32_t)v;
    uint64_t u64 = v;

    switch (size) {
    case 1:
        memcpy(dst, &u8, 1);
        break;
    case 2:
        memcpy(dst, &u16, 2);
        break;
    case 4:
        memcpy(dst, &u32, 4);
        break;
    default:
        memcpy(dst, &u64, 8);
        break;
    }
}

static size_t utf8_chars(const char *s, size_t len)
{
    size_t n = 0;

    for (size_t i = 0; i < len; i++)
        n += ((unsigned char)s[i] & 0xc0) != 0x80;
    return n;
}

/* ---- addresses ---- */

static bool parse_ip(const char *s, union stun_addr *a)
{
    memset(a, 0, sizeof *a);
    if (inet_pton(AF_INET, s, &a->v4.sin_addr) == 1) {
        a->v4.sin_family = AF_INET;
        return true;
    }
    if (inet_pton(AF_INET6, s, &a->v6.sin6_addr) == 1) {
        a->v6.sin6_family = AF_INET6;
        return true;
    }
    memset(a, 0, sizeof *a);
    return false;
}

static void set_port(union stun_addr *a, uint16_t port)
{
    if (a->sa.sa_family == AF_INET6)
        a->v6.sin6_port = htons(port);
    else
        a->v4.sin_port = htons(port);
}

/* "192.0.2.1", or with the port "192.0.2.1:3478" / "[2001:db8::1]:3478". */
static void format_addr(const union stun_addr *a, bool with_port, char *buf, size_t size)
{
    char text[ADDR_STRLEN];
    snprintf(buf, size, "%s", with_port ? addr_str(a, text) : addr_ip_str(a, text));
}

/* Zero the host bits so that matching is a plain compare of the masked peer address. */
static void mask_host_bits(struct cfg_cidr *c)
{
    if (c->addr.sa.sa_family == AF_INET) {
        uint32_t mask = c->prefix ? ~(uint32_t)0 << (32 - c->prefix) : 0;
        c->addr.v4.sin_addr.s_addr = htonl(ntohl(c->addr.v4.sin_addr.s_addr) & mask);
    } else {
        uint8_t *b = c->addr.v6.sin6_addr.s6_addr;
        for (unsigned i = 0; i < 16; i++) {
            unsigned keep = c->prefix > i * 8 ? c->prefix - i * 8 : 0;
            b[i] &= keep >= 8 ? 0xff : (uint8_t)(0xff00 >> keep);
        }
    }
}

/* ---- setters ---- */

static void *field(void *base, const struct key *k)
{
    return (char *)base + k->off;
}

static void set_str(struct parse *p, const struct key *k, yaml_node_t *v, const char *path,
                    void *base)
{
    struct scalar sc = value_of(k, v);
    char *copy;
    size_t n;

    if (sc.t == V_NULL && (k->flags & F_NULLABLE)) return; /* stays NULL */
    if (sc.t == V_NULL || sc.t == V_LIST || sc.t == V_MAP) {
        bad_type(p, k, v, path, "a string");
        return;
    }
    /* A plain number or boolean is kept as the text it was written as: nothing is lost. */
    if (memchr(sc.s, '\0', sc.len)) {
        problem(p, v, path, "contains a NUL character");
        return;
    }
    if (sc.len == 0 && k->min > 0) {
        problem(p, v, path, "must not be empty%s",
                (k->flags & F_NULLABLE) ? " (use null for none)" : "");
        return;
    }
    n = (k->flags & F_CHARS) ? utf8_chars(sc.s, sc.len) : sc.len;
    if ((long long)n > k->max) {
        if (k->flags & F_SECRET)
            problem(p, v, path, "is too long (%zu bytes; at most %lld)", n, k->max);
        else
            problem(p, v, path, "%s is too long (%zu %s; at most %lld)",
                    show_text(sc.s, sc.len, true).s, n,
                    (k->flags & F_CHARS) ? "characters" : "bytes", k->max);
        return;
    }
    copy = strndup(sc.s, sc.len);
    if (!copy) {
        problem(p, v, path, "out of memory");
        return;
    }
    memcpy(field(base, k), &copy, sizeof copy);
}

static void set_uint(struct parse *p, const struct key *k, yaml_node_t *v, const char *path,
                     void *base)
{
    struct scalar sc = value_of(k, v);
    const char *word = k->arg; /* "auto": stored as 0 */
    long long n;
    char want[80];

    if (word && sc.t == V_STR && sc.len == strlen(word) && memcmp(sc.s, word, sc.len) == 0) {
        store_uint(field(base, k), k->size, 0);
        return;
    }
    snprintf(want, sizeof want, "%s%s%lld-%lld", word ? word : "", word ? " or " : "", k->min,
             k->max);
    if (sc.t != V_INT) {
        char phrase[96];
        snprintf(phrase, sizeof phrase, "%s (%s)", word ? word : "an integer", want);
        bad_type(p, k, v, path, word ? want : phrase);
        return;
    }
    if (!parse_int(sc.s, &n) || n < k->min || n > k->max) {
        problem(p, v, path, "%s is out of range (%s)", show_text(sc.s, sc.len, false).s, want);
        return;
    }
    store_uint(field(base, k), k->size, (unsigned long long)n);
}

static void set_bool(struct parse *p, const struct key *k, yaml_node_t *v, const char *path,
                     void *base)
{
    struct scalar sc = value_of(k, v);
    bool b;

    if (sc.t != V_BOOL) {
        bad_type(p, k, v, path, "true or false");
        return;
    }
    b = sc.s[0] == 't' || sc.s[0] == 'T';
    memcpy(field(base, k), &b, sizeof b);
}

static void set_enum(struct parse *p, const struct key *k, yaml_node_t *v, const char *path,
                     void *base)
{
    const char *const *words = k->arg;
    struct scalar sc = value_of(k, v);
    char want[96] = "one of ";

    for (size_t i = 0; words[i]; i++) {
        if (sc.t == V_STR && strlen(words[i]) == sc.len && memcmp(sc.s, words[i], sc.len) == 0) {
            store_uint(field(base, k), k->size, i);
            return;
        }
    }
    for (size_t i = 0; words[i]; i++) {
        strncat(want, words[i], sizeof want - strlen(want) - 1);
        if (words[i + 1]) strncat(want, ", ", sizeof want - strlen(want) - 1);
    }
    bad_type(p, k, v, path, want);
}

/* An IP address (no port) into a union stun_addr. */
static void set_ip(struct parse *p, const struct key *k, yaml_node_t *v, const char *path,
                   void *base)
{
    struct scalar sc = value_of(k, v);
    union stun_addr a;

    if (sc.t == V_NULL && (k->flags & F_NULLABLE)) {
        memset(field(base, k), 0, sizeof a); /* AF_UNSPEC */
        return;
    }
    if (sc.t == V_NULL || sc.t == V_LIST || sc.t == V_MAP) {
        bad_type(p, k, v, path, "an IPv4 or IPv6 address");
        return;
    }
    if (strlen(sc.s) != sc.len || !parse_ip(sc.s, &a)) {
        problem(p, v, path, "%s is not an IPv4 or IPv6 address", show_text(sc.s, sc.len, true).s);
        return;
    }
    memcpy(field(base, k), &a, sizeof a);
}

/* "192.0.2.1:9641" or "[2001:db8::1]:9641" into a union stun_addr. */
static void set_hostport(struct parse *p, const struct key *k, yaml_node_t *v, const char *path,
                         void *base)
{
    struct scalar sc = value_of(k, v);
    char host[INET6_ADDRSTRLEN + 1];
    const char *colon, *end;
    size_t hlen;
    union stun_addr a;
    long long port;

    if (sc.t == V_NULL && (k->flags & F_NULLABLE)) {
        memset(field(base, k), 0, sizeof a);
        return;
    }
    if (sc.t == V_NULL || sc.t == V_LIST || sc.t == V_MAP) {
        bad_type(p, k, v, path, "ADDRESS:PORT (e.g. 127.0.0.1:9641 or [::1]:9641)");
        return;
    }
    if (sc.s[0] == '[') {
        end = memchr(sc.s, ']', sc.len);
        colon = end && end + 1 < sc.s + sc.len && end[1] == ':' ? end + 1 : NULL;
        hlen = end ? (size_t)(end - sc.s - 1) : 0;
    } else {
        colon = memchr(sc.s, ':', sc.len);
        /* A second colon means a bare IPv6 address, which needs brackets to carry a port. */
        if (colon && memchr(colon + 1, ':', sc.len - (size_t)(colon + 1 - sc.s))) colon = NULL;
        hlen = colon ? (size_t)(colon - sc.s) : 0;
    }
    if (!colon || hlen == 0 || hlen >= sizeof host ||
        !all_of(colon + 1, sc.len - (size_t)(colon + 1 - sc.s), "0123456789")) {
        problem(p, v, path, "%s is not ADDRESS:PORT (e.g. 127.0.0.1:9641 or [::1]:9641)",
                show_text(sc.s, sc.len, true).s);
        return;
    }
    memcpy(host, sc.s + (sc.s[0] == '['), hlen);
    host[hlen] = '\0';
    if (!parse_ip(host, &a) || (sc.s[0] == '[') != (a.sa.sa_family == AF_INET6)) {
        problem(p, v, path, "%s is not an IPv4 address or a bracketed IPv6 address",
                show_text(host, hlen, true).s);
        return;
    }
    if (!parse_int(colon + 1, &port) || port > 65535) {
        problem(p, v, path, "port %s is out of range (0-65535)",
                show_text(colon + 1, strlen(colon + 1), false).s);
        return;
    }
    set_port(&a, (uint16_t)port);
    memcpy(field(base, k), &a, sizeof a);
}

/* "10.0.0.0/8", "fc00::/7", or a bare address (a full-length prefix). Host bits are masked
 * off rather than rejected: "10.1.2.3/8" plainly means 10.0.0.0/8. */
static void set_cidr(struct parse *p, const struct key *k, yaml_node_t *v, const char *path,
                     void *base)
{
    struct scalar sc = value_of(k, v);
    char ip[INET6_ADDRSTRLEN + 1];
    const char *slash;
    size_t iplen;
    struct cfg_cidr c;
    unsigned maxp;

    if (sc.t == V_NULL || sc.t == V_LIST || sc.t == V_MAP) {
        bad_type(p, k, v, path, "an address or CIDR (e.g. 10.0.0.0/8 or fc00::/7)");
        return;
    }
    slash = memchr(sc.s, '/', sc.len);
    iplen = slash ? (size_t)(slash - sc.s) : sc.len;
    memset(&c, 0, sizeof c);
    if (iplen >= sizeof ip || memchr(sc.s, '\0', sc.len)) iplen = 0;
    memcpy(ip, sc.s, iplen);
    ip[iplen] = '\0';
    if (iplen == 0 || !parse_ip(ip, &c.addr)) {
        problem(p, v, path, "%s is not an address or CIDR (e.g. 10.0.0.0/8 or fc00::/7)",
                show_text(sc.s, sc.len, true).s);
        return;
    }
    maxp = c.addr.sa.sa_family == AF_INET ? 32 : 128;
    c.prefix = (uint8_t)maxp;
    if (slash) {
        size_t plen = sc.len - iplen - 1;
        long long n;
        if (plen == 0 || plen > 3 || !all_of(slash + 1, plen, "0123456789") ||
            !parse_int(slash + 1, &n) || n > maxp) {
            problem(p, v, path, "%s: the prefix length must be 0-%u for %s",
                    show_text(sc.s, sc.len, true).s, maxp, maxp == 32 ? "IPv4" : "IPv6");
            return;
        }
        c.prefix = (uint8_t)n;
    }
    mask_host_bits(&c);
    memcpy(field(base, k), &c, sizeof c);
}

static void parse_map(struct parse *p, const struct section *sec, yaml_node_t *map,
                      const char *path, void *base);

/* A mapping parsed with the key table in k->arg; null is an empty mapping if F_NULLABLE. */
static void set_map(struct parse *p, const struct key *k, yaml_node_t *v, const char *path,
                    void *base)
{
    if (v && v->type != YAML_MAPPING_NODE && !(is_null(v) && (k->flags & F_NULLABLE))) {
        bad_type(p, k, v, path, "a mapping");
        return;
    }
    parse_map(p, k->arg, v, path, field(base, k));
}

static void join(char *buf, size_t size, const char *path, const char *name)
{
    if (snprintf(buf, size, "%s%s%s", path, *path ? "." : "", name) >= (int)size)
        memcpy(buf + size - 4, "...", 4); /* only user-supplied (unknown) keys get this long */
}

static void set_list(struct parse *p, const struct key *k, yaml_node_t *v, const char *path,
                     void *base)
{
    const struct list_spec *ls = k->arg;
    char *arr = NULL, ipath[PATH_LEN];
    bool *ok;
    size_t n = 0;

    if (!v) {
        if (ls->dflt && !(arr = ls->dflt(&n))) problem(p, v, path, "out of memory");
        memcpy(field(base, k), &arr, sizeof arr);
        memcpy((char *)base + k->size, &n, sizeof n);
        return;
    }
    if (is_null(v) && !ls->need) return; /* the empty list */
    if (v->type != YAML_SEQUENCE_NODE) {
        bad_type(p, k, v, path, ls->noun);
        return;
    }
    n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
    if (n == 0) {
        if (ls->need) problem(p, v, path, "is empty; %s", ls->need);
        return;
    }
    arr = calloc(n, ls->elem_size);
    ok = calloc(n, sizeof *ok);
    if (!arr || !ok) {
        free(arr);
        free(ok);
        problem(p, v, path, "out of memory");
        return;
    }
    /* Stored before the items are parsed so that cfg_free reaches whatever they allocate. */
    memcpy(field(base, k), &arr, sizeof arr);
    memcpy((char *)base + k->size, &n, sizeof n);
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = yaml_document_get_node(p->doc, v->data.sequence.items.start[i]);
        struct key ik = ls->item;
        unsigned nerr = p->nerr;

        snprintf(ipath, sizeof ipath, "%s[%zu]", path, i);
        ik.name = k->name;
        ik.off = i * ls->elem_size;
        ik.set(p, &ik, item, ipath, arr);
        ok[i] = p->nerr == nerr;
        for (size_t j = 0; ok[i] && ls->same && j < i; j++) {
            if (ok[j] && ls->same(arr + j * ls->elem_size, arr + i * ls->elem_size)) {
                char what[128];
                yaml_node_t *first =
                    yaml_document_get_node(p->doc, v->data.sequence.items.start[j]);
                ls->show(arr + i * ls->elem_size, what, sizeof what);
                problem(p, item, ipath, "%s is listed twice (also %s[%zu] at line %zu)", what, path,
                        j, first->start_mark.line + 1);
                ok[i] = false;
            }
        }
    }
    free(ok);
}

/* ---- list items ---- */

struct listen_item {
    enum cfg_transport transport;
    union stun_addr addr;
    uint16_t port;
    bool proxy_protocol;
};

static const char *const transport_words[] = {"udp", "tcp", "tls", "tcp+tls", "dtls", NULL};

static const struct key listen_keys[] = {
    {.name = "transport",
     .set = set_enum,
     .off = offsetof(struct listen_item, transport),
     .size = sizeof(enum cfg_transport),
     .def = "udp",
     .arg = transport_words},
    {.name = "address", .set = set_ip, .off = offsetof(struct listen_item, addr), .def = "0.0.0.0"},
    /* 0: the kernel picks a free port (tests); 5349 is applied for tls and dtls, 443 for
     * tcp+tls when absent. */
    {.name = "port",
     .set = set_uint,
     .off = offsetof(struct listen_item, port),
     .size = sizeof(uint16_t),
     .min = 0,
     .max = 65535,
     .def = "3478"},
    {.name = "proxy_protocol",
     .set = set_bool,
     .off = offsetof(struct listen_item, proxy_protocol),
     .def = "false"},
};
static const struct section listen_section = {listen_keys, NKEYS(listen_keys), NULL};

static yaml_node_t *map_value(struct parse *p, yaml_node_t *map, const char *name)
{
    if (!map || map->type != YAML_MAPPING_NODE) return NULL;
    for (yaml_node_pair_t *pr = map->data.mapping.pairs.start; pr < map->data.mapping.pairs.top;
         pr++) {
        yaml_node_t *kn = yaml_document_get_node(p->doc, pr->key);
        if (kn->type == YAML_SCALAR_NODE && strcmp((const char *)kn->data.scalar.value, name) == 0)
            return yaml_document_get_node(p->doc, pr->value);
    }
    return NULL;
}

static void set_listen_item(struct parse *p, const struct key *k, yaml_node_t *v, const char *path,
                            void *base)
{
    struct listen_item t;
    struct cfg_listen *l = field(base, k);

    if (v->type != YAML_MAPPING_NODE) {
        bad_type(p, k, v, path, "a mapping with transport, address and port");
        return;
    }
    memset(&t, 0, sizeof t);
    parse_map(p, &listen_section, v, path, &t);
    if ((t.transport == CFG_TLS || t.transport == CFG_DTLS) && !map_value(p, v, "port"))
        t.port = 5349; /* RFC 8656: the TURN-over-TLS port; RFC 7350: DTLS too */
    if (t.transport == CFG_TCP_TLS && !map_value(p, v, "port"))
        t.port = 443; /* the point of one port for both: what firewalls let through */
    if (t.proxy_protocol && cfg_transport_dgram(t.transport)) {
        char ppath[PATH_LEN];
        join(ppath, sizeof ppath, path, "proxy_protocol");
        problem(p, map_value(p, v, "proxy_protocol"), ppath,
                "only for tcp, tls and tcp+tls listeners (a PROXY header starts a TCP stream)");
    }
    l->proxy_protocol = t.proxy_protocol;
    l->transport = t.transport;
    l->addr = t.addr;
    set_port(&l->addr, t.port);
}

static void *listen_default(size_t *n)
{
    struct cfg_listen *l = calloc(2, sizeof *l);

    if (!l) return NULL;
    for (size_t i = 0; i < 2; i++) {
        l[i].transport = i ? CFG_TCP : CFG_UDP;
        l[i].addr.v4.sin_family = AF_INET;
        l[i].addr.v4.sin_addr.s_addr = htonl(INADDR_ANY);
        l[i].addr.v4.sin_port = htons(3478);
    }
    *n = 2;
    return l;
}

/* Two listeners clash when they would bind the same socket: TLS runs over TCP. */
static bool listen_same(const void *a, const void *b)
{
    const struct cfg_listen *x = a, *y = b;

    return cfg_transport_dgram(x->transport) == cfg_transport_dgram(y->transport) &&
           addr_ip_equal(&x->addr, &y->addr) && addr_port(&x->addr) != 0 &&
           addr_port(&x->addr) == addr_port(&y->addr);
}

static void listen_show(const void *elem, char *buf, size_t size)
{
    const struct cfg_listen *l = elem;
    char a[INET6_ADDRSTRLEN + 8];

    format_addr(&l->addr, true, a, sizeof a);
    snprintf(buf, size, "%s %s", cfg_transport_dgram(l->transport) ? "UDP" : "TCP", a);
}

static void *addresses_default(size_t *n)
{
    union stun_addr *a = calloc(1, sizeof *a);

    if (!a) return NULL;
    a->v4.sin_family = AF_INET;
    a->v4.sin_addr.s_addr = htonl(INADDR_ANY);
    *n = 1;
    return a;
}

static bool ip_same(const void *a, const void *b)
{
    return addr_ip_equal(a, b);
}

static void ip_show(const void *elem, char *buf, size_t size)
{
    format_addr(elem, false, buf, size);
}

static bool cidr_same(const void *a, const void *b)
{
    const struct cfg_cidr *x = a, *y = b;

    return x->prefix == y->prefix && addr_ip_equal(&x->addr, &y->addr);
}

static void cidr_show(const void *elem, char *buf, size_t size)
{
    const struct cfg_cidr *c = elem;
    char a[INET6_ADDRSTRLEN];

    format_addr(&c->addr, false, a, sizeof a);
    snprintf(buf, size, "%s/%u", a, (unsigned)c->prefix);
}

static bool user_same(const void *a, const void *b)
{
    return strcmp(((const struct cfg_user *)a)->name, ((const struct cfg_user *)b)->name) == 0;
}

static void user_show(const void *elem, char *buf, size_t size)
{
    const char *name = ((const struct cfg_user *)elem)->name;

    snprintf(buf, size, "user %s", show_text(name, strlen(name), true).s);
}

static const struct key user_keys[] = {
    /* RFC 8489: USERNAME is at most 512 bytes (fewer than 513). */
    {.name = "name",
     .set = set_str,
     .off = offsetof(struct cfg_user, name),
     .min = 1,
     .max = 512,
     .flags = F_REQUIRED},
    {.name = "password",
     .set = set_str,
     .off = offsetof(struct cfg_user, password),
     .min = 1,
     .max = LLONG_MAX,
     .flags = F_REQUIRED | F_SECRET},
};
static const struct section user_section = {user_keys, NKEYS(user_keys), NULL};

static const struct list_spec listen_list = {
    .elem_size = sizeof(struct cfg_listen),
    .item = {.set = set_listen_item},
    .noun = "a list of listeners ({transport, address, port})",
    .need = "at least one listener is required",
    .dflt = listen_default,
    .same = listen_same,
    .show = listen_show,
};
static const struct list_spec address_list = {
    .elem_size = sizeof(union stun_addr),
    .item = {.set = set_ip},
    .noun = "a list of IP addresses",
    .need = "at least one relay address is required",
    .dflt = addresses_default,
    .same = ip_same,
    .show = ip_show,
};
static void hostport_show(const void *elem, char *buf, size_t size)
{
    format_addr(elem, true, buf, size);
}

static bool hostport_same(const void *a, const void *b)
{
    return addr_equal(a, b);
}

static const struct list_spec hostport_list = {
    .elem_size = sizeof(union stun_addr),
    .item = {.set = set_hostport},
    .noun = "a list of ADDRESS:PORT (e.g. 192.0.2.7:3478 or [2001:db8::7]:3478)",
    .same = hostport_same,
    .show = hostport_show,
};

static const struct list_spec cidr_list = {
    .elem_size = sizeof(struct cfg_cidr),
    .item = {.set = set_cidr},
    .noun = "a list of CIDRs",
    .same = cidr_same,
    .show = cidr_show,
};
static const struct list_spec user_list = {
    .elem_size = sizeof(struct cfg_user),
    .item = {.set = set_map, .arg = &user_section},
    .noun = "a list of users ({name, password})",
    .same = user_same,
    .show = user_show,
};
static const struct list_spec secret_list = {
    .elem_size = sizeof(char *),
    .item = {.set = set_str, .min = 1, .max = LLONG_MAX, .flags = F_SECRET},
    .noun = "a list of strings",
};

/* ---- key tables ---- */

#define CFG(f)      offsetof(struct tern_config, f)
#define CFG_SIZE(f) sizeof(((struct tern_config *)0)->f)
#define STR(n, f, lo, hi, d, fl)                                                                   \
    {                                                                                              \
        .name = n, .set = set_str, .off = CFG(f), .min = lo, .max = hi, .def = d, .flags = fl      \
    }
#define UINT(n, f, lo, hi, d)                                                                      \
    {                                                                                              \
        .name = n, .set = set_uint, .off = CFG(f), .size = CFG_SIZE(f), .min = lo, .max = hi,      \
        .def = d                                                                                   \
    }
#define BOOL(n, f, d)                                                                              \
    {                                                                                              \
        .name = n, .set = set_bool, .off = CFG(f), .def = d                                        \
    }
#define ENUM(n, f, d, words)                                                                       \
    {                                                                                              \
        .name = n, .set = set_enum, .off = CFG(f), .size = CFG_SIZE(f), .def = d, .arg = words     \
    }
#define LIST(n, f, count, spec)                                                                    \
    {                                                                                              \
        .name = n, .set = set_list, .off = CFG(f), .size = CFG(count), .arg = &spec                \
    }
#define SECTION(n, sec)                                                                            \
    {                                                                                              \
        .name = n, .set = set_map, .arg = &sec, .flags = F_NULLABLE                                \
    }

/* RFC 8489: REALM and SOFTWARE are fewer than 128 characters. */
static const struct key server_keys[] = {
    STR("realm", realm, 1, 127, "tern", F_CHARS),
    STR("software", software, 0, 127, "", F_CHARS),
    {.name = "workers",
     .set = set_uint,
     .off = CFG(workers),
     .size = CFG_SIZE(workers),
     .min = 1,
     .max = 256,
     .def = "auto",
     .arg = "auto"},
    STR("user", user, 1, 64, NULL, F_NULLABLE | F_CHARS),
    STR("group", group, 1, 64, NULL, F_NULLABLE | F_CHARS),
};

static const struct key tls_keys[] = {
    STR("certificate", tls_certificate, 1, PATH_MAX, NULL, F_NULLABLE),
    STR("private_key", tls_private_key, 1, PATH_MAX, NULL, F_NULLABLE),
};

static void ports_check(struct parse *p, yaml_node_t *map, const char *path, void *base, bool clean)
{
    const struct tern_config *c = base;
    yaml_node_t *at = map_value(p, map, "min");
    char kpath[PATH_LEN];

    if (!clean || c->port_min <= c->port_max) return;
    join(kpath, sizeof kpath, path, "min");
    problem(p, at ? at : map_value(p, map, "max"), kpath, "%u is greater than %s.max (%u)",
            (unsigned)c->port_min, path, (unsigned)c->port_max);
}

/* The relay range: below 1024 are privileged ports of other services. */
static const struct key ports_keys[] = {
    UINT("min", port_min, 1024, 65535, "49152"),
    UINT("max", port_max, 1024, 65535, "65535"),
};
static const struct section ports_section = {ports_keys, NKEYS(ports_keys), ports_check};

static const char *const offload_words[] = {"off", "auto", "xdp", "xdp-generic", "tc", NULL};
static const struct key relay_keys[] = {
    LIST("addresses", relay_addresses, nrelay_addresses, address_list),
    {.name = "external_address", .set = set_ip, .off = CFG(relay_external), .flags = F_NULLABLE},
    SECTION("ports", ports_section),
    ENUM("offload", offload, "off", offload_words),
    UINT("dtls_max_handshakes", dtls_max_handshakes, 1, 65536, "256"),
    UINT("dtls_max_per_ip", dtls_max_per_ip, 1, 16384, "64"),
    UINT("dtls_handshake_timeout", dtls_handshake_timeout, 1, 60, "10"),
};

static void allocation_check(struct parse *p, yaml_node_t *map, const char *path, void *base,
                             bool clean)
{
    const struct tern_config *c = base;
    yaml_node_t *at = map_value(p, map, "default_lifetime");
    char kpath[PATH_LEN];

    if (!clean || c->default_lifetime <= c->max_lifetime) return;
    join(kpath, sizeof kpath, path, "default_lifetime");
    problem(p, at ? at : map_value(p, map, "max_lifetime"), kpath,
            "%u is greater than %s.max_lifetime (%u)", (unsigned)c->default_lifetime, path,
            (unsigned)c->max_lifetime);
}

static const struct key allocation_keys[] = {
    UINT("default_lifetime", default_lifetime, 1, 86400, "600"),
    UINT("max_lifetime", max_lifetime, 1, 86400, "3600"),
    /* "unlimited" (stored as 0) by default: many deployments give every client one static
     * username, and a WebRTC client holds several allocations; max_total still protects. */
    {.name = "max_per_user",
     .set = set_uint,
     .off = CFG(max_per_user),
     .size = CFG_SIZE(max_per_user),
     .min = 1,
     .max = UINT32_MAX,
     .def = "unlimited",
     .arg = "unlimited"},
    UINT("max_total", max_total, 1, UINT32_MAX, "100000"),
    /* Across the fleet (docs/fleet.md): this node's count plus the other nodes' as of their
     * last heartbeats. */
    {.name = "max_per_user_fleet",
     .set = set_uint,
     .off = CFG(max_per_user_fleet),
     .size = CFG_SIZE(max_per_user_fleet),
     .min = 1,
     .max = UINT32_MAX,
     .def = "unlimited",
     .arg = "unlimited"},
    BOOL("strict_channel_numbers", strict_channel_numbers, "false"),
    /* RFC 6062: peer connections (pending or bound) per TCP allocation. */
    UINT("max_tcp_connections", max_tcp_connections, 1, 65535, "64"),
    /* RFC 8016: UDP allocations that survive their client's address change. */
    BOOL("mobility", mobility, "false"),
    UINT("bandwidth_limit", bandwidth_limit, 0, INT64_MAX, "0"),
};
static const struct section allocation_section = {allocation_keys, NKEYS(allocation_keys),
                                                  allocation_check};

static const struct key peers_keys[] = {
    BOOL("allow_loopback", allow_loopback, "false"),
    BOOL("allow_relay_to_relay", allow_relay_to_relay, "true"),
    LIST("allow", peers_allow, npeers_allow, cidr_list),
    LIST("deny", peers_deny, npeers_deny, cidr_list),
};

static const struct key auth_keys[] = {
    STR("database", database, 1, PATH_MAX, NULL, F_NULLABLE | F_SECRET),
    STR("database_password_file", database_password_file, 1, PATH_MAX, NULL, F_NULLABLE),
    LIST("users", users, nusers, user_list),
    LIST("secrets", secrets, nsecrets, secret_list),
    STR("rest_separator", rest_separator, 1, 1, ":", 0),
    UINT("nonce_lifetime", nonce_lifetime, 10, 86400, "600"),
    BOOL("strict_expiry", strict_expiry, "false"),
    /* 100 a second in bursts of 200 per /32: a CGNAT address with hundreds of users joining
     * a meeting at once must not wait for its 401s; a one-source flood is still cut to a
     * trickle, and the global cap bounds spoofed sources. */
    UINT("unauthenticated_rate", unauth_rate, 0, 1000000, "100"),
    UINT("unauthenticated_burst", unauth_burst, 1, 1000000, "200"),
    UINT("unauthenticated_global_rate", unauth_global_rate, 0, 10000000, "5000"),
};

static const struct key ops_keys[] = {
    {.name = "listen",
     .set = set_hostport,
     .off = CFG(ops_listen),
     .def = "127.0.0.1:9641",
     .flags = F_NULLABLE},
    STR("token", ops_token, 1, 4096, NULL, F_NULLABLE | F_SECRET),
};

/* SO_PRIORITY values by class. The defaults are TC_PRIO_INTERACTIVE (6: band 0 of a prio
 * qdisc's default priomap), TC_PRIO_INTERACTIVE_BULK (4: band 1) and TC_PRIO_BULK (2: band 2);
 * an HTB class major:minor is major * 65536 + minor. */
static const struct key prio_keys[] = {
    UINT("audio", qos_prio_audio, 0, 4294967295LL, "6"),
    UINT("video", qos_prio_video, 0, 4294967295LL, "4"),
    UINT("other", qos_prio_other, 0, 4294967295LL, "2"),
};
static const struct section prio_section = {prio_keys, NKEYS(prio_keys), NULL};

/* A ratio from k->min to k->max (given as hundredths: 0-100 is 0.0-1.0) into a double. */
static void set_ratio(struct parse *p, const struct key *k, yaml_node_t *v, const char *path,
                      void *base)
{
    struct scalar sc = value_of(k, v);
    double lo = (double)k->min / 100, hi = (double)k->max / 100, d;
    char *end;

    if (sc.t != V_INT && sc.t != V_FLOAT) {
        char want[64];
        snprintf(want, sizeof want, "a number (%g-%g)", lo, hi);
        bad_type(p, k, v, path, want);
        return;
    }
    d = strtod(sc.s, &end);
    if (end != sc.s + sc.len || !(d >= lo && d <= hi)) {
        problem(p, v, path, "%s is out of range (%g-%g; 0.01 is 1 %%)",
                show_text(sc.s, sc.len, false).s, lo, hi);
        return;
    }
    memcpy(field(base, k), &d, sizeof d);
}

/* An http:// or https:// URL, printable ASCII only. */
static void set_url(struct parse *p, const struct key *k, yaml_node_t *v, const char *path,
                    void *base)
{
    struct scalar sc = value_of(k, v);
    if (sc.t == V_STR && sc.len > 0 && sc.len <= 2048 &&
        (strncmp(sc.s, "http://", 7) == 0 || strncmp(sc.s, "https://", 8) == 0)) {
        for (size_t i = 0; i < sc.len; i++)
            if ((unsigned char)sc.s[i] <= 0x20 || (unsigned char)sc.s[i] >= 0x7f) {
                problem(p, v, path, "a URL has no spaces or control characters");
                return;
            }
    } else if (sc.t != V_NULL) {
        problem(p, v, path, "expected an http:// or https:// URL (up to 2048 characters)");
        return;
    }
    set_str(p, k, v, path, base);
}

static const struct key timeline_keys[] = {
    UINT("minutes", qos_timeline_minutes, 0, 60, "10"),
};
/* VoIP defaults (docs/qos.md §18.2): 1 % loss, 30 ms jitter, 300 ms round trip (G.114). */
static const struct key thresholds_keys[] = {
    {.name = "loss",
     .set = set_ratio,
     .off = CFG(qos_thr_loss),
     .min = 0,
     .max = 100,
     .def = "0.01"},
    UINT("jitter_ms", qos_thr_jitter_ms, 0, 10000, "30"),
    UINT("rtt_ms", qos_thr_rtt_ms, 0, 60000, "300"),
};
static const struct section timeline_section = {timeline_keys, NKEYS(timeline_keys), NULL};
static const struct section thresholds_section = {thresholds_keys, NKEYS(thresholds_keys), NULL};

static const char *const dscp_words[] = {"preserve", "zero", "by-class", NULL};
static const struct key drain_keys[] = {
    LIST("alternate_servers", drain_alternates, ndrain_alternates, hostport_list),
    UINT("deadline", drain_deadline, 1, 7 * 86400, "3600"),
};

static const struct key qos_keys[] = {
    BOOL("enabled", qos_enabled, "true"),
    STR("record_file", qos_record_file, 1, PATH_MAX, NULL, F_NULLABLE),
    ENUM("dscp", qos_dscp, "preserve", dscp_words),
    BOOL("priority", qos_priority, "false"),
    SECTION("priority_classes", prio_section),
    SECTION("timeline", timeline_section),
    SECTION("thresholds", thresholds_section),
    {.name = "webhook",
     .set = set_url,
     .off = CFG(qos_webhook),
     .min = 1,
     .max = 2048,
     .flags = F_NULLABLE},
    UINT("webhook_queue", qos_webhook_queue, 1, 65536, "256"),
    BOOL("record_database", qos_record_database, "false"),
    UINT("record_database_queue", qos_record_database_queue, 1, 1048576, "4096"),
};

/* cluster.domain goes into URIs and ALTERNATE-DOMAIN: a DNS name (letters, digits, '-', '.'). */
static bool dns_name(const char *d)
{
    if (!*d || *d == '.' || *d == '-') return false;
    for (; *d; d++)
        if (!((*d >= 'a' && *d <= 'z') || (*d >= 'A' && *d <= 'Z') || (*d >= '0' && *d <= '9') ||
              *d == '-' || *d == '.'))
            return false;
    return true;
}

/* A node id goes into logs, the database and terminals: printable, no spaces at the ends. */
static void cluster_check(struct parse *p, yaml_node_t *map, const char *path, void *base,
                          bool clean)
{
    const struct tern_config *c = base;
    const char *id = c->cluster_node_id;
    char kpath[PATH_LEN];
    if (!clean) return;
    if (c->cluster_domain && !dns_name(c->cluster_domain)) {
        join(kpath, sizeof kpath, path, "domain");
        problem(p, map_value(p, map, "domain"), kpath,
                "not a DNS name (letters, digits, '-' and '.')");
    }
    if (c->cluster_dead_after < 2 * c->cluster_heartbeat) {
        join(kpath, sizeof kpath, path, "dead_after");
        problem(p, map_value(p, map, "dead_after"), kpath,
                "%u s is less than two heartbeats (%u s): a live node would be shown dead",
                (unsigned)c->cluster_dead_after, 2 * (unsigned)c->cluster_heartbeat);
    }
    if (c->cluster_forget_after && c->cluster_forget_after <= c->cluster_dead_after) {
        join(kpath, sizeof kpath, path, "forget_after");
        problem(p, map_value(p, map, "forget_after"), kpath,
                "%u s is not more than dead_after (%u s): a node would vanish before it is shown "
                "dead (0: never forget)",
                (unsigned)c->cluster_forget_after, (unsigned)c->cluster_dead_after);
    }
    if (!id) return;
    size_t n = strlen(id);
    bool bad = id[0] == ' ' || id[n - 1] == ' ';
    for (size_t i = 0; i < n && !bad; i++)
        bad = (unsigned char)id[i] < 0x20 || id[i] == 0x7f;
    join(kpath, sizeof kpath, path, "node_id");
    if (bad)
        problem(p, map_value(p, map, "node_id"), kpath,
                "control characters or spaces at the ends are not allowed");
}

static const struct key cluster_keys[] = {
    STR("node_id", cluster_node_id, 1, 255, NULL, F_NULLABLE),
    UINT("heartbeat", cluster_heartbeat, 1, 60, "2"),
    UINT("dead_after", cluster_dead_after, 2, 3600, "10"),
    UINT("forget_after", cluster_forget_after, 0, 31536000, "86400"),
    BOOL("redirect", cluster_redirect, "false"),
    UINT("max_allocations", cluster_max_allocations, 0, UINT32_MAX, "0"),
    {.name = "max_cpu",
     .set = set_ratio,
     .off = CFG(cluster_max_cpu),
     .min = 0,
     .max = 100,
     .def = "0"},
    STR("domain", cluster_domain, 1, 253, NULL, F_NULLABLE),
    BOOL("shared_nonce", cluster_shared_nonce, "true"),
    UINT("nonce_rotation", cluster_nonce_rotation, 60, 604800, "3600"),
};
static const struct section cluster_section = {cluster_keys, NKEYS(cluster_keys), cluster_check};

static const char *const level_words[] = {"debug", "info", "warn", "error", NULL};
static const char *const format_words[] = {"text", "json", NULL};
static const struct key log_keys[] = {
    ENUM("level", log_level, "info", level_words),
    ENUM("format", log_format, "text", format_words),
};

#define SECTION_OF(keys)                                                                           \
    {                                                                                              \
        keys, NKEYS(keys), NULL                                                                    \
    }
static const struct section server_section = SECTION_OF(server_keys);
static const struct section tls_section = SECTION_OF(tls_keys);
static const struct section relay_section = SECTION_OF(relay_keys);
static const struct section peers_section = SECTION_OF(peers_keys);
static const struct section auth_section = SECTION_OF(auth_keys);
static const struct section qos_section = SECTION_OF(qos_keys);
static const struct section drain_section = SECTION_OF(drain_keys);
static const struct section ops_section = SECTION_OF(ops_keys);
static const struct section log_section = SECTION_OF(log_keys);

/* Rules that span sections. They run whatever else failed, so each looks at what the YAML
 * says rather than trusting a field that may have been left empty by an earlier problem. */
static void root_check(struct parse *p, yaml_node_t *root, const char *path, void *base, bool clean)
{
    static const char *const tls_need[] = {"certificate", "private_key"};
    const struct tern_config *c = base;
    yaml_node_t *listen = map_value(p, root, "listen");
    yaml_node_t *tls = map_value(p, root, "tls");
    yaml_node_t *ops_listen = map_value(p, map_value(p, root, "ops"), "listen");
    char lpath[PATH_LEN];

    (void)path;
    (void)clean;
    for (size_t i = 0; i < c->nlisten; i++) {
        yaml_node_t *item = NULL;

        if (!cfg_transport_cert(c->listen[i].transport)) continue;
        if (listen && listen->type == YAML_SEQUENCE_NODE)
            item = yaml_document_get_node(p->doc, listen->data.sequence.items.start[i]);
        for (size_t j = 0; j < 2; j++) {
            const char *have = j ? c->tls_private_key : c->tls_certificate;
            yaml_node_t *given = map_value(p, tls, tls_need[j]);

            join(lpath, sizeof lpath, "tls", tls_need[j]);
            if (!have && (!given || is_null(given)))
                problem(p, item, lpath, "missing; the %s listener listen[%zu] needs it",
                        cfg_transport_name(c->listen[i].transport), i);
        }
        break; /* once is enough, however many tls listeners there are */
    }
    if (c->qos_priority && c->user &&
        (c->qos_prio_audio > 6 || c->qos_prio_video > 6 || c->qos_prio_other > 6))
        problem(p, map_value(p, map_value(p, root, "qos"), "priority_classes"),
                "qos.priority_classes",
                "priorities above 6 need CAP_NET_ADMIN, which server.user drops: use 0-6 (a "
                "prio qdisc's bands) or run without server.user");
    if (c->qos_priority && !c->qos_enabled)
        problem(p, map_value(p, map_value(p, root, "qos"), "priority"), "qos.priority",
                "needs qos.enabled: true (the classes come from the QoS tap)");
    if (c->qos_dscp == CFG_DSCP_BY_CLASS && !c->qos_enabled)
        problem(p, map_value(p, map_value(p, root, "qos"), "dscp"), "qos.dscp",
                "by-class needs qos.enabled: true (the classes come from the QoS tap)");
    bool pg = c->database && (strncmp(c->database, "postgresql://", 13) == 0 ||
                              strncmp(c->database, "postgres://", 11) == 0);
    if (c->qos_record_database && !pg)
        problem(p, map_value(p, map_value(p, root, "qos"), "record_database"),
                "qos.record_database",
                "call records need a PostgreSQL auth.database (a postgresql:// URI)%s",
                c->database ? ", not a SQLite file" : "; there is none");
    if (c->cluster_redirect && !pg)
        problem(p, map_value(p, map_value(p, root, "cluster"), "redirect"), "cluster.redirect",
                "the fleet's load comes from its registry, in a PostgreSQL auth.database (a "
                "postgresql:// URI)%s",
                c->database ? ", not a SQLite file" : "; there is none");
    if (c->max_per_user_fleet && !pg)
        problem(p, map_value(p, map_value(p, root, "allocation"), "max_per_user_fleet"),
                "allocation.max_per_user_fleet",
                "the other nodes' counts come from the registry, in a PostgreSQL auth.database "
                "(a postgresql:// URI)%s",
                c->database ? ", not a SQLite file" : "; there is none");
    if (pg && c->cluster_shared_nonce && c->cluster_nonce_rotation < c->nonce_lifetime)
        problem(p, map_value(p, map_value(p, root, "cluster"), "nonce_rotation"),
                "cluster.nonce_rotation",
                "%u s is shorter than auth.nonce_lifetime (%u s): a nonce would outlive the keys "
                "that accept it",
                (unsigned)c->cluster_nonce_rotation, (unsigned)c->nonce_lifetime);
    if (c->ops_listen.sa.sa_family != AF_UNSPEC && addr_port(&c->ops_listen) != 0) {
        for (size_t i = 0; i < c->nlisten; i++) {
            if (!cfg_transport_dgram(c->listen[i].transport) &&
                addr_ip_equal(&c->listen[i].addr, &c->ops_listen) &&
                addr_port(&c->listen[i].addr) == addr_port(&c->ops_listen)) {
                char a[INET6_ADDRSTRLEN + 8];
                format_addr(&c->ops_listen, true, a, sizeof a);
                problem(p, ops_listen, "ops.listen", "%s is already used by listen[%zu]", a, i);
                break;
            }
        }
    }
}

static const struct key root_keys[] = {
    SECTION("server", server_section),
    LIST("listen", listen, nlisten, listen_list),
    SECTION("tls", tls_section),
    SECTION("relay", relay_section),
    SECTION("allocation", allocation_section),
    SECTION("peers", peers_section),
    SECTION("auth", auth_section),
    SECTION("qos", qos_section),
    SECTION("drain", drain_section),
    SECTION("cluster", cluster_section),
    SECTION("ops", ops_section),
    SECTION("log", log_section),
};
static const struct section root_section = {root_keys, NKEYS(root_keys), root_check};

/* ---- the walk ---- */

static void unknown_key(struct parse *p, const struct section *sec, const yaml_node_t *kn,
                        const char *path)
{
    char allowed[256] = "";

    for (size_t i = 0; i < sec->nkeys; i++) {
        strncat(allowed, sec->keys[i].name, sizeof allowed - strlen(allowed) - 1);
        if (i + 1 < sec->nkeys) strncat(allowed, ", ", sizeof allowed - strlen(allowed) - 1);
    }
    problem(p, kn, path, "unknown key (expected one of: %s)", allowed);
}

/* Apply one mapping to base through a key table: every key known and given once, every
 * absent key defaulted. map may be NULL or a null scalar: every key takes its default. */
static void parse_map(struct parse *p, const struct section *sec, yaml_node_t *map,
                      const char *path, void *base)
{
    const yaml_node_t *seen[MAX_SECTION_KEYS] = {0};
    size_t saved_line = p->line;
    unsigned nerr = p->nerr;
    char child[PATH_LEN];

    if (map) p->line = map->start_mark.line + 1;
    if (map && map->type == YAML_MAPPING_NODE) {
        for (yaml_node_pair_t *pr = map->data.mapping.pairs.start; pr < map->data.mapping.pairs.top;
             pr++) {
            yaml_node_t *kn = yaml_document_get_node(p->doc, pr->key);
            yaml_node_t *vn = yaml_document_get_node(p->doc, pr->value);
            const struct key *k = NULL;
            const char *name;
            size_t len;

            if (kn->type != YAML_SCALAR_NODE) {
                problem(p, kn, path, "keys must be plain words, got %s",
                        kn->type == YAML_MAPPING_NODE ? "a mapping" : "a list");
                continue;
            }
            name = (const char *)kn->data.scalar.value;
            len = kn->data.scalar.length;
            join(child, sizeof child, path, show_text(name, len, false).s);
            for (size_t i = 0; i < sec->nkeys && !k; i++)
                if (strlen(sec->keys[i].name) == len && memcmp(sec->keys[i].name, name, len) == 0)
                    k = &sec->keys[i];
            if (!k) {
                unknown_key(p, sec, kn, child);
                continue;
            }
            if (seen[k - sec->keys]) {
                problem(p, kn, child, "duplicate key (first at line %zu)",
                        seen[k - sec->keys]->start_mark.line + 1);
                continue;
            }
            seen[k - sec->keys] = kn;
            keyline(p, child, kn->start_mark.line + 1);
            k->set(p, k, vn, child, base);
        }
    }
    for (size_t i = 0; i < sec->nkeys; i++) {
        if (seen[i]) continue;
        join(child, sizeof child, path, sec->keys[i].name);
        if (sec->keys[i].flags & F_REQUIRED)
            problem(p, NULL, child, "missing (required)");
        else
            sec->keys[i].set(p, &sec->keys[i], NULL, child, base);
    }
    if (sec->check) sec->check(p, map, path, base, p->nerr == nerr);
    p->line = saved_line;
}

static void syntax_error(struct parse *p, const yaml_parser_t *y, const char *text, size_t len)
{
    size_t line = 1;

    if (y->error == YAML_MEMORY_ERROR) {
        fprintf(p->err, "%s: out of memory\n", p->name);
    } else if (y->error == YAML_READER_ERROR) {
        /* Reader errors (bad encoding) carry a byte offset, not a mark. */
        for (size_t i = 0; i < y->problem_offset && i < len; i++)
            line += text[i] == '\n';
        fprintf(p->err, "%s:%zu: syntax error: %s (byte 0x%02x at offset %zu)\n", p->name, line,
                y->problem ? y->problem : "unreadable input", (unsigned)y->problem_value & 0xff,
                y->problem_offset);
    } else {
        fprintf(p->err, "%s:%zu: syntax error: %s at column %zu", p->name, y->problem_mark.line + 1,
                y->problem ? y->problem : "invalid YAML", y->problem_mark.column + 1);
        if (y->context)
            fprintf(p->err, " (%s that started at line %zu)", y->context, y->context_mark.line + 1);
        fputc('\n', p->err);
    }
    p->nerr++;
}

/* The document holds copies of every password and secret: wipe before libyaml frees it. */
static void wipe_document(yaml_document_t *doc)
{
    for (yaml_node_t *n = doc->nodes.start; n && n < doc->nodes.top; n++)
        if (n->type == YAML_SCALAR_NODE)
            explicit_bzero(n->data.scalar.value, n->data.scalar.length);
    yaml_document_delete(doc);
}

static void wipe_parser(yaml_parser_t *y)
{
    if (y->buffer.start) explicit_bzero(y->buffer.start, (size_t)(y->buffer.end - y->buffer.start));
    if (y->raw_buffer.start)
        explicit_bzero(y->raw_buffer.start, (size_t)(y->raw_buffer.end - y->raw_buffer.start));
    yaml_parser_delete(y);
}

int cfg_parse(struct tern_config *out, const char *name, const char *text, size_t len, FILE *err)
{
    struct parse p = {.name = name ? name : "(config)", .err = err ? err : stderr, .line = 1};
    yaml_parser_t y;
    yaml_document_t doc, extra;

    memset(out, 0, sizeof *out);
    if (!text) { /* libyaml asserts on a NULL input */
        text = "";
        len = 0;
    }
    if (!yaml_parser_initialize(&y)) {
        fprintf(p.err, "%s: out of memory\n", p.name);
        return -1;
    }
    yaml_parser_set_input_string(&y, (const unsigned char *)text, len);
    if (!yaml_parser_load(&y, &doc)) { /* on failure libyaml has freed doc */
        syntax_error(&p, &y, text, len);
        wipe_parser(&y);
        return -1;
    }
    /* A second document would be silently ignored: say so instead. */
    if (!yaml_parser_load(&y, &extra)) {
        syntax_error(&p, &y, text, len);
    } else {
        yaml_node_t *second = yaml_document_get_root_node(&extra);
        if (second) problem(&p, second, "", "only one YAML document is allowed");
        wipe_document(&extra);
    }
    wipe_parser(&y);

    p.doc = &doc;
    {
        yaml_node_t *root = yaml_document_get_root_node(&doc);
        /* An empty file is valid: every key takes its default. */
        if (root && root->type != YAML_MAPPING_NODE && !is_null(root))
            problem(&p, root, "", "expected a mapping of sections (server, listen, ...), got %s",
                    root->type == YAML_SEQUENCE_NODE ? "a list" : "a scalar");
        else
            parse_map(&p, &root_section, root, "", out);
    }
    wipe_document(&doc);
    out->lines = p.lines;
    out->nlines = p.nlines;
    if (p.nerr) {
        cfg_free(out);
        return -1;
    }
    out->name = strdup(p.name);
    if (!out->name) {
        fprintf(p.err, "%s: out of memory\n", p.name);
        cfg_free(out);
        return -1;
    }
    return 0;
}

unsigned cfg_key_line(const struct tern_config *c, const char *key)
{
    for (size_t i = 0; c && i < c->nlines; i++)
        if (strcmp(c->lines[i].key, key) == 0) return c->lines[i].line;
    return 0;
}

int cfg_load(struct tern_config *out, const char *path, FILE *err)
{
    FILE *f;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int rc;

    memset(out, 0, sizeof *out);
    if (!err) err = stderr;
    f = fopen(path, "rb");
    if (!f) {
        fprintf(err, "%s: cannot open: %s\n", path, strerror(errno));
        return -1;
    }
    for (;;) {
        size_t got;
        if (len == cap) {
            /* Grown by copy, not realloc, so the old buffer can be wiped (it may hold secrets). */
            size_t ncap = cap ? cap * 2 : 16384;
            char *nbuf = malloc(ncap);
            if (!nbuf) {
                fprintf(err, "%s: out of memory\n", path);
                rc = -1;
                goto out;
            }
            if (buf) {
                memcpy(nbuf, buf, len);
                explicit_bzero(buf, len);
                free(buf);
            }
            buf = nbuf;
            cap = ncap;
        }
        got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (len > MAX_FILE_SIZE) {
            fprintf(err, "%s: larger than %u MiB; is it the right file?\n", path,
                    MAX_FILE_SIZE >> 20);
            rc = -1;
            goto out;
        }
        if (got == 0) {
            if (ferror(f)) {
                fprintf(err, "%s: cannot read: %s\n", path, strerror(errno));
                rc = -1;
                goto out;
            }
            break;
        }
    }
    rc = cfg_parse(out, path, buf ? buf : "", len, err);
out:
    if (buf) {
        explicit_bzero(buf, cap);
        free(buf);
    }
    fclose(f);
    return rc;
}

static void wipe_free(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

void cfg_free(struct tern_config *c)
{
    if (!c) return;
    free(c->realm);
    free(c->software);
    free(c->listen);
    free(c->rest_separator);
    free(c->tls_certificate);
    free(c->tls_private_key);
    free(c->relay_addresses);
    free(c->drain_alternates);
    free(c->peers_allow);
    free(c->peers_deny);
    wipe_free(c->database); /* a URI may carry a password */
    free(c->database_password_file);
    for (size_t i = 0; c->users && i < c->nusers; i++) {
        free(c->users[i].name);
        wipe_free(c->users[i].password);
    }
    free(c->users);
    for (size_t i = 0; c->secrets && i < c->nsecrets; i++)
        wipe_free(c->secrets[i]);
    free(c->secrets);
    wipe_free(c->ops_token);
    free(c->user);
    free(c->group);
    free(c->qos_record_file);
    free(c->cluster_node_id);
    free(c->cluster_domain);
    free(c->lines);
    free(c->name);
    free(c->qos_webhook);
    memset(c, 0, sizeof *c);
}

const char *cfg_transport_name(enum cfg_transport t)
{
    switch (t) {
    case CFG_UDP:
        return "udp";
    case CFG_TCP:
        return "tcp";
    case CFG_TLS:
        return "tls";
    case CFG_TCP_TLS:
        return "tcp+tls";
    case CFG_DTLS:
        return "dtls";
    }
    return "?";
}
