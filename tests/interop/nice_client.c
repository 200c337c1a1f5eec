/* nice_client.c: tern-nice-test, two libnice agents that complete ICE over TURN relays and exchange
 * data. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <gio/gio.h>
#include <glib.h>
#include <nice/agent.h>

#define HDR_LEN  12u /* magic (3) + direction (1) + sequence (4) + length (4) */
#define MIN_SIZE HDR_LEN
#define MAX_SIZE 60000u
#define DRAIN_MS 3000 /* how long to wait for stragglers after the last send */
#define CLOSE_MS 3000 /* how long to wait for the agents to release their allocations */

/* Command-line options. */
struct opts {
    const char *server;
    guint port;
    const char *user;
    const char *pass;
    gboolean tcp;
    guint count;
    guint size;
    guint interval_ms;
    guint burst;
    guint timeout_s;
    gboolean verbose;
};

/* One ICE agent and what it received. */
struct side {
    const char *name; /* "a" (controlling) or "b" (controlled) */
    guint8 dir;       /* direction byte in the messages this side sends */
    NiceAgent *agent;
    guint stream;
    gboolean gathered;
    NiceComponentState state;
    gboolean closed;
    gchar local_relay[NICE_ADDRESS_STRING_LEN + 8];  /* selected local candidate, "ip:port" */
    gchar remote_relay[NICE_ADDRESS_STRING_LEN + 8]; /* selected remote candidate, "ip:port" */
    NiceCandidateType sel_local_type;
    NiceCandidateType sel_remote_type;
    gboolean have_pair;
    guint sent;        /* messages this side sent */
    guint send_errors; /* nice_agent_send() refusals (retried) */
    guint received;    /* distinct intact messages received */
    guint corrupt;
    guint duplicate;
    guint reordered;
    gint64 max_seq; /* highest sequence number seen, -1 before any */
    guint8 *seen;   /* one byte per sequence number */
    guint8 *buf;    /* send buffer */
};

/* The whole run. */
struct run {
    struct opts o;
    struct side a, b;
    GMainLoop *loop;
    gchar server_ip[NICE_ADDRESS_STRING_LEN];
    gboolean exchanged; /* candidates and credentials handed over */
    gboolean sending;
    gboolean send_done;
    gboolean finished;
    gchar *failure; /* first fatal problem, or NULL */
    gint64 t_start, t_gathered, t_ready, t_sent, t_end;
    guint send_source, drain_source, timeout_source;
    guint closing; /* agents still closing */
};

static const char *cand_type_name(NiceCandidateType t)
{
    switch (t) {
    case NICE_CANDIDATE_TYPE_HOST:
        return "host";
    case NICE_CANDIDATE_TYPE_SERVER_REFLEXIVE:
        return "srflx";
    case NICE_CANDIDATE_TYPE_PEER_REFLEXIVE:
        return "prflx";
    case NICE_CANDIDATE_TYPE_RELAYED:
        return "relay";
    }
    return "?";
}

static double secs_since(gint64 from)
{
    return (double)(g_get_monotonic_time() - from) / 1e6;
}

/* "ip:port" of a NiceAddress ("[ip]:port" for IPv6). */
static void addr_str(const NiceAddress *a, gchar *out, size_t outlen)
{
    gchar ip[NICE_ADDRESS_STRING_LEN];
    nice_address_to_string(a, ip);
    if (strchr(ip, ':'))
        g_snprintf(out, outlen, "[%s]:%u", ip, nice_address_get_port(a));
    else
        g_snprintf(out, outlen, "%s:%u", ip, nice_address_get_port(a));
}

static void progress(struct run *r, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
static void progress(struct run *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    gchar *msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    printf("[%7.3f] %s\n", secs_since(r->t_start), msg);
    fflush(stdout);
    g_free(msg);
}

/* Record the first failure and stop the run. */
static void fail_run(struct run *r, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
static void fail_run(struct run *r, const char *fmt, ...)
{
    if (!r->failure) {
        va_list ap;
        va_start(ap, fmt);
        r->failure = g_strdup_vprintf(fmt, ap);
        va_end(ap);
        progress(r, "error: %s", r->failure);
    }
    r->finished = TRUE;
    g_main_loop_quit(r->loop);
}

static struct side *side_of(struct run *r, NiceAgent *agent)
{
    return agent == r->a.agent ? &r->a : &r->b;
}

/* Fill buf with message seq of the given direction: a header, then a pattern from both. */
static void fill_message(guint8 *buf, guint size, guint8 dir, guint32 seq)
{
    buf[0] = 'T';
    buf[1] = 'N';
    buf[2] = 'T';
    buf[3] = dir;
    buf[4] = (guint8)(seq >> 24);
    buf[5] = (guint8)(seq >> 16);
    buf[6] = (guint8)(seq >> 8);
    buf[7] = (guint8)seq;
    buf[8] = (guint8)(size >> 24);
    buf[9] = (guint8)(size >> 16);
    buf[10] = (guint8)(size >> 8);
    buf[11] = (guint8)size;
    for (guint i = HDR_LEN; i < size; i++)
        buf[i] = (guint8)(seq * 31u + i * 7u + dir);
}

/* Check a received message; returns its sequence number, or -1 if it is not intact. */
static gint64 check_message(const guint8 *buf, guint len, guint size, guint8 dir, guint count)
{
    if (len != size || len < HDR_LEN) return -1;
    if (buf[0] != 'T' || buf[1] != 'N' || buf[2] != 'T' || buf[3] != dir) return -1;
    guint32 seq = (guint32)buf[4] << 24 | (guint32)buf[5] << 16 | (guint32)buf[6] << 8 | buf[7];
    guint32 n = (guint32)buf[8] << 24 | (guint32)buf[9] << 16 | (guint32)buf[10] << 8 | buf[11];
    if (n != size || seq >= count) return -1;
    for (guint i = HDR_LEN; i < len; i++)
        if (buf[i] != (guint8)(seq * 31u + i * 7u + dir)) return -1;
    return seq;
}

static gboolean all_received(const struct run *r)
{
    return r->a.received == r->o.count && r->b.received == r->o.count;
}

static void finish_transfer(struct run *r)
{
    if (r->finished) return;
    r->finished = TRUE;
    r->t_end = g_get_monotonic_time();
    g_main_loop_quit(r->loop);
}

static void on_recv(NiceAgent *agent, guint stream_id, guint component_id, guint len, gchar *data,
                    gpointer user)
{
    struct run *r = user;
    struct side *s = side_of(r, agent);
    (void)stream_id;
    (void)component_id;
    guint8 peer_dir = s == &r->a ? r->b.dir : r->a.dir;
    gint64 seq = check_message((const guint8 *)data, len, r->o.size, peer_dir, r->o.count);
    if (seq < 0) {
        if (s->corrupt++ < 5) progress(r, "agent %s: corrupt message of %u bytes", s->name, len);
        return;
    }
    if (s->seen[seq]) {
        s->duplicate++;
        return;
    }
    s->seen[seq] = 1;
    s->received++;
    if (seq < s->max_seq) {
        if (s->reordered++ < 5)
            progress(r, "agent %s: message %" G_GINT64_FORMAT " arrived after %" G_GINT64_FORMAT,
                     s->name, seq, s->max_seq);
    } else {
        s->max_seq = seq;
    }
    if (s->received == r->o.count)
        progress(r, "agent %s: received all %u messages", s->name, r->o.count);
    if (r->send_done && all_received(r)) finish_transfer(r);
}

static gboolean on_drain_timeout(gpointer user)
{
    struct run *r = user;
    r->drain_source = 0;
    progress(r, "gave up waiting for missing messages after %d ms", DRAIN_MS);
    finish_transfer(r);
    return G_SOURCE_REMOVE;
}

/* Send up to one burst from each side; nice_agent_send refusals are retried on the next tick. */
static gboolean on_send_tick(gpointer user)
{
    struct run *r = user;
    struct side *sides[2] = {&r->a, &r->b};
    for (int k = 0; k < 2; k++) {
        struct side *s = sides[k];
        for (guint i = 0; i < r->o.burst && s->sent < r->o.count; i++) {
            fill_message(s->buf, r->o.size, s->dir, s->sent);
            gint n = nice_agent_send(s->agent, s->stream, 1, r->o.size, (const gchar *)s->buf);
            if (n != (gint)r->o.size) {
                s->send_errors++;
                break;
            }
            s->sent++;
        }
    }
    if (r->a.sent < r->o.count || r->b.sent < r->o.count) return G_SOURCE_CONTINUE;
    r->send_source = 0;
    r->send_done = TRUE;
    r->t_sent = g_get_monotonic_time();
    progress(r, "sent %u messages of %u bytes each way in %.3f s (send retries a=%u b=%u)",
             r->o.count, r->o.size, (double)(r->t_sent - r->t_ready) / 1e6, r->a.send_errors,
             r->b.send_errors);
    if (all_received(r))
        finish_transfer(r);
    else
        r->drain_source = g_timeout_add(DRAIN_MS, on_drain_timeout, r);
    return G_SOURCE_REMOVE;
}

/* Record and print a side's selected pair. */
static void note_selected_pair(struct run *r, struct side *s)
{
    NiceCandidate *l = NULL, *rc = NULL;
    if (!nice_agent_get_selected_pair(s->agent, s->stream, 1, &l, &rc) || !l || !rc) {
        s->have_pair = FALSE;
        return;
    }
    s->have_pair = TRUE;
    s->sel_local_type = l->type;
    s->sel_remote_type = rc->type;
    addr_str(&l->addr, s->local_relay, sizeof(s->local_relay));
    addr_str(&rc->addr, s->remote_relay, sizeof(s->remote_relay));
    progress(r, "agent %s: selected pair local %s %s <-> remote %s %s (TURN server %s:%u/%s)",
             s->name, cand_type_name(l->type), s->local_relay, cand_type_name(rc->type),
             s->remote_relay, r->server_ip, r->o.port, r->o.tcp ? "tcp" : "udp");
}

static void maybe_start_sending(struct run *r)
{
    if (r->sending || r->a.state != NICE_COMPONENT_STATE_READY ||
        r->b.state != NICE_COMPONENT_STATE_READY)
        return;
    r->sending = TRUE;
    r->t_ready = g_get_monotonic_time();
    progress(r, "ICE completed on both agents in %.3f s after gathering",
             (double)(r->t_ready - r->t_gathered) / 1e6);
    note_selected_pair(r, &r->a);
    note_selected_pair(r, &r->b);
    r->send_source = g_timeout_add(r->o.interval_ms, on_send_tick, r);
}

static void on_state_changed(NiceAgent *agent, guint stream_id, guint component_id, guint state,
                             gpointer user)
{
    struct run *r = user;
    struct side *s = side_of(r, agent);
    (void)stream_id;
    (void)component_id;
    if (r->finished) return; /* the verdict uses the states as they were when the run ended */
    s->state = (NiceComponentState)state;
    progress(r, "agent %s: ICE state %s", s->name, nice_component_state_to_string(s->state));
    if (s->state == NICE_COMPONENT_STATE_FAILED)
        fail_run(r, "ICE failed on agent %s", s->name);
    else if (s->state == NICE_COMPONENT_STATE_READY)
        maybe_start_sending(r);
}

static void on_selected_pair(NiceAgent *agent, guint stream_id, guint component_id,
                             NiceCandidate *l, NiceCandidate *rc, gpointer user)
{
    struct run *r = user;
    struct side *s = side_of(r, agent);
    gchar la[NICE_ADDRESS_STRING_LEN + 8], ra[NICE_ADDRESS_STRING_LEN + 8];
    (void)stream_id;
    (void)component_id;
    addr_str(&l->addr, la, sizeof(la));
    addr_str(&rc->addr, ra, sizeof(ra));
    if (r->finished) return;
    progress(r, "agent %s: new selected pair %s %s <-> %s %s", s->name, cand_type_name(l->type), la,
             cand_type_name(rc->type), ra);
    if (r->sending) note_selected_pair(r, s);
}

/* Hand side from's credentials and candidates to side to. */
static gboolean give_remote(struct run *r, struct side *from, struct side *to)
{
    gchar *ufrag = NULL, *pwd = NULL;
    if (!nice_agent_get_local_credentials(from->agent, from->stream, &ufrag, &pwd)) {
        fail_run(r, "agent %s: no local credentials", from->name);
        return FALSE;
    }
    gboolean ok = nice_agent_set_remote_credentials(to->agent, to->stream, ufrag, pwd);
    g_free(ufrag);
    g_free(pwd);
    if (!ok) {
        fail_run(r, "agent %s: set_remote_credentials failed", to->name);
        return FALSE;
    }
    GSList *cands = nice_agent_get_local_candidates(from->agent, from->stream, 1);
    GSList *relays = NULL;
    for (GSList *i = cands; i; i = i->next) {
        NiceCandidate *c = i->data;
        gchar a[NICE_ADDRESS_STRING_LEN + 8];
        addr_str(&c->addr, a, sizeof(a));
        progress(r, "agent %s: local candidate %s %s", from->name, cand_type_name(c->type), a);
        if (c->type == NICE_CANDIDATE_TYPE_RELAYED) relays = g_slist_append(relays, c);
    }
    int added = 0;
    if (relays) added = nice_agent_set_remote_candidates(to->agent, to->stream, 1, relays);
    guint nrelay = g_slist_length(relays);
    g_slist_free(relays);
    g_slist_free_full(cands, (GDestroyNotify)nice_candidate_free);
    if (nrelay == 0) {
        fail_run(r, "agent %s gathered no relay candidate: TURN allocation at %s:%u/%s failed",
                 from->name, r->server_ip, r->o.port, r->o.tcp ? "tcp" : "udp");
        return FALSE;
    }
    if (added < (int)nrelay) {
        fail_run(r, "agent %s accepted %d of %u remote candidates", to->name, added, nrelay);
        return FALSE;
    }
    return TRUE;
}

static void on_gathering_done(NiceAgent *agent, guint stream_id, gpointer user)
{
    struct run *r = user;
    struct side *s = side_of(r, agent);
    (void)stream_id;
    s->gathered = TRUE;
    progress(r, "agent %s: gathering done", s->name);
    if (!r->a.gathered || !r->b.gathered || r->exchanged) return;
    r->exchanged = TRUE;
    r->t_gathered = g_get_monotonic_time();
    progress(r, "both agents gathered in %.3f s; exchanging credentials and candidates",
             secs_since(r->t_start));
    if (!give_remote(r, &r->a, &r->b)) return;
    give_remote(r, &r->b, &r->a);
}

static gboolean on_timeout(gpointer user)
{
    struct run *r = user;
    r->timeout_source = 0;
    const char *phase = !r->exchanged ? "candidate gathering (TURN allocation)"
                        : !r->sending ? "ICE connectivity checks"
                                      : "data exchange";
    fail_run(r, "timeout after %u s during %s (ICE state a=%s b=%s, received a=%u b=%u of %u)",
             r->o.timeout_s, phase, nice_component_state_to_string(r->a.state),
             nice_component_state_to_string(r->b.state), r->a.received, r->b.received, r->o.count);
    return G_SOURCE_REMOVE;
}

static gboolean is_loopback(const char *ip)
{
    struct in_addr v4;
    struct in6_addr v6;
    if (inet_pton(AF_INET, ip, &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
    return inet_pton(AF_INET6, ip, &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6);
}

static void set_bool_prop(NiceAgent *agent, const char *name, gboolean v)
{
    if (g_object_class_find_property(G_OBJECT_GET_CLASS(agent), name))
        g_object_set(agent, name, v, NULL);
}

/* Create one agent with a single-component stream that gathers only a TURN relay candidate. */
static gboolean side_init(struct run *r, struct side *s, const char *name, guint8 dir,
                          gboolean controlling)
{
    s->name = name;
    s->dir = dir;
    s->state = NICE_COMPONENT_STATE_DISCONNECTED;
    s->max_seq = -1;
    s->seen = g_malloc0(r->o.count);
    s->buf = g_malloc0(r->o.size);
    s->agent = nice_agent_new_full(NULL, NICE_COMPATIBILITY_RFC5245, NICE_AGENT_OPTION_NONE);
    if (!s->agent) return FALSE;
    g_object_set(s->agent, "controlling-mode", controlling, "ice-udp", TRUE, "ice-tcp", FALSE,
                 NULL);
    set_bool_prop(s->agent, "upnp", FALSE); /* Debian builds libnice with UPnP: stay on loopback */
    set_bool_prop(s->agent, "force-relay", TRUE); /* only relayed candidates may be paired */

    /* libnice skips loopback when it enumerates interfaces; a loopback server needs it added. */
    if (is_loopback(r->server_ip)) {
        NiceAddress local;
        nice_address_init(&local);
        nice_address_set_from_string(&local, strchr(r->server_ip, ':') ? "::1" : "127.0.0.1");
        if (!nice_agent_add_local_address(s->agent, &local)) return FALSE;
    }

    g_signal_connect(s->agent, "candidate-gathering-done", G_CALLBACK(on_gathering_done), r);
    g_signal_connect(s->agent, "component-state-changed", G_CALLBACK(on_state_changed), r);
    g_signal_connect(s->agent, "new-selected-pair-full", G_CALLBACK(on_selected_pair), r);

    s->stream = nice_agent_add_stream(s->agent, 1);
    if (!s->stream) return FALSE;
    nice_agent_set_stream_name(s->agent, s->stream, "application");
    if (!nice_agent_set_relay_info(s->agent, s->stream, 1, r->server_ip, r->o.port, r->o.user,
                                   r->o.pass,
                                   r->o.tcp ? NICE_RELAY_TYPE_TURN_TCP : NICE_RELAY_TYPE_TURN_UDP))
        return FALSE;
    if (!nice_agent_attach_recv(s->agent, s->stream, 1, g_main_context_default(), on_recv, r))
        return FALSE;
    return TRUE;
}

static void on_closed(GObject *src, GAsyncResult *res, gpointer user)
{
    struct run *r = user;
    (void)res;
    struct side *s = side_of(r, NICE_AGENT(src));
    s->closed = TRUE;
    if (--r->closing == 0) g_main_loop_quit(r->loop);
}

static gboolean on_close_timeout(gpointer user)
{
    struct run *r = user;
    progress(r, "agents did not finish closing in %d ms", CLOSE_MS);
    g_main_loop_quit(r->loop);
    return G_SOURCE_REMOVE;
}

/* Close both agents (libnice releases the TURN allocations), waiting a bounded time. */
static void close_agents(struct run *r)
{
    if (r->send_source) g_source_remove(r->send_source);
    if (r->drain_source) g_source_remove(r->drain_source);
    if (r->timeout_source) g_source_remove(r->timeout_source);
    r->send_source = r->drain_source = r->timeout_source = 0;
    struct side *sides[2] = {&r->a, &r->b};
    for (int k = 0; k < 2; k++) {
        if (!sides[k]->agent) continue;
        r->closing++;
        nice_agent_close_async(sides[k]->agent, on_closed, r);
    }
    if (r->closing) {
        guint t = g_timeout_add(CLOSE_MS, on_close_timeout, r);
        g_main_loop_run(r->loop);
        if (r->closing == 0) g_source_remove(t);
    }
    for (int k = 0; k < 2; k++) {
        if (sides[k]->agent) g_object_unref(sides[k]->agent);
        sides[k]->agent = NULL;
        g_free(sides[k]->seen);
        g_free(sides[k]->buf);
    }
}

static void usage(FILE *out)
{
    fprintf(
        out,
        "Usage: tern-nice-test --server HOST --port PORT --user U --pass P [options]\n"
        "Two libnice agents (controlling and controlled) gather TURN relay candidates from\n"
        "the server, complete ICE over relay<->relay and exchange checked messages both ways.\n"
        "  --tcp             TURN over TCP (default: TURN over UDP)\n"
        "  --count N         messages each way (default 500)\n"
        "  --size BYTES      message size, %u..%u (default 200)\n"
        "  --interval MS     milliseconds between send ticks (default 2)\n"
        "  --burst N         messages each way per tick (default 1)\n"
        "  --timeout SECONDS give up after this long (default 30)\n"
        "  -v, --verbose     libnice debug output (to stderr)\n"
        "Exit status: 0 all messages arrived intact over a relay/relay pair, 1 failure, 2 usage.\n",
        MIN_SIZE, MAX_SIZE);
}

static gboolean parse_uint(const char *s, guint lo, guint hi, guint *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v < lo || v > hi) return FALSE;
    *out = (guint)v;
    return TRUE;
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
    static const struct option longopts[] = {
        {"server", required_argument, NULL, 's'},
        {"port", required_argument, NULL, 'p'},
        {"user", required_argument, NULL, 'u'},
        {"pass", required_argument, NULL, 'P'},
        {"tcp", no_argument, NULL, 't'},
        {"count", required_argument, NULL, 'n'},
        {"size", required_argument, NULL, 'S'},
        {"interval", required_argument, NULL, 'i'},
        {"burst", required_argument, NULL, 'b'},
        {"timeout", required_argument, NULL, 'T'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *o = (struct opts){.count = 500, .size = 200, .interval_ms = 2, .burst = 1, .timeout_s = 30};
    int c;
    while ((c = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
        gboolean ok = TRUE;
        switch (c) {
        case 's':
            o->server = optarg;
            break;
        case 'p':
            ok = parse_uint(optarg, 1, 65535, &o->port);
            break;
        case 'u':
            o->user = optarg;
            break;
        case 'P':
            o->pass = optarg;
            break;
        case 't':
            o->tcp = TRUE;
            break;
        case 'n':
            ok = parse_uint(optarg, 1, 10000000, &o->count);
            break;
        case 'S':
            ok = parse_uint(optarg, MIN_SIZE, MAX_SIZE, &o->size);
            break;
        case 'i':
            ok = parse_uint(optarg, 1, 1000, &o->interval_ms);
            break;
        case 'b':
            ok = parse_uint(optarg, 1, 1000, &o->burst);
            break;
        case 'T':
            ok = parse_uint(optarg, 1, 3600, &o->timeout_s);
            break;
        case 'v':
            o->verbose = TRUE;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -1;
        }
        if (!ok) {
            fprintf(stderr, "tern-nice-test: bad value '%s' for an option\n", optarg);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "tern-nice-test: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (!o->server || !o->port || !o->user || !o->pass) {
        fprintf(stderr, "tern-nice-test: --server, --port, --user and --pass are required\n");
        usage(stderr);
        return -1;
    }
    return 0;
}

/* libnice wants a numeric server address: resolve a name once. */
static gboolean resolve_server(const char *host, gchar *out, size_t outlen)
{
    struct addrinfo hints = {.ai_socktype = SOCK_DGRAM}, *res = NULL;
    int e = getaddrinfo(host, NULL, &hints, &res);
    if (e) {
        fprintf(stderr, "tern-nice-test: cannot resolve %s: %s\n", host, gai_strerror(e));
        return FALSE;
    }
    e = getnameinfo(res->ai_addr, res->ai_addrlen, out, (socklen_t)outlen, NULL, 0, NI_NUMERICHOST);
    freeaddrinfo(res);
    if (e) {
        fprintf(stderr, "tern-nice-test: cannot print address of %s: %s\n", host, gai_strerror(e));
        return FALSE;
    }
    return TRUE;
}

/* The end-of-run checks: ICE done, relay/relay on both sides and consistent, all data intact. */
static void verdict(struct run *r)
{
    if (r->failure) return;
    struct side *sides[2] = {&r->a, &r->b};
    for (int k = 0; k < 2; k++) {
        struct side *s = sides[k];
        if (s->state != NICE_COMPONENT_STATE_READY) {
            fail_run(r, "agent %s ended in ICE state %s, not ready", s->name,
                     nice_component_state_to_string(s->state));
            return;
        }
        if (!s->have_pair) {
            fail_run(r, "agent %s has no selected pair", s->name);
            return;
        }
        if (s->sel_local_type != NICE_CANDIDATE_TYPE_RELAYED ||
            s->sel_remote_type != NICE_CANDIDATE_TYPE_RELAYED) {
            fail_run(r, "agent %s selected %s/%s, not relay/relay", s->name,
                     cand_type_name(s->sel_local_type), cand_type_name(s->sel_remote_type));
            return;
        }
    }
    /* With one TURN server per agent, each local relayed candidate is an allocation on it; the
     * two agents must also agree on the pair (a's local relay is b's remote, and back). */
    if (strcmp(r->a.local_relay, r->b.remote_relay) ||
        strcmp(r->b.local_relay, r->a.remote_relay)) {
        fail_run(r, "agents disagree on the selected pair: a=%s<->%s b=%s<->%s", r->a.local_relay,
                 r->a.remote_relay, r->b.local_relay, r->b.remote_relay);
        return;
    }
    for (int k = 0; k < 2; k++) {
        struct side *s = sides[k];
        struct side *peer = sides[1 - k];
        if (peer->sent != r->o.count) {
            fail_run(r, "agent %s sent only %u of %u messages", peer->name, peer->sent, r->o.count);
            return;
        }
        if (s->received != r->o.count || s->corrupt || s->duplicate || s->reordered) {
            fail_run(
                r,
                "agent %s received %u of %u messages intact (corrupt=%u duplicate=%u reordered=%u)",
                s->name, s->received, r->o.count, s->corrupt, s->duplicate, s->reordered);
            return;
        }
    }
}

int main(int argc, char **argv)
{
    struct run r = {0};
    if (parse_opts(argc, argv, &r.o) < 0) return 2;
    if (!resolve_server(r.o.server, r.server_ip, sizeof(r.server_ip))) return 2;
    if (r.o.verbose) {
        g_setenv("G_MESSAGES_DEBUG", "all", TRUE);
        nice_debug_enable(TRUE);
    } else {
        nice_debug_disable(TRUE);
    }
    r.t_start = g_get_monotonic_time();
    r.loop = g_main_loop_new(NULL, FALSE);
    progress(&r, "TURN server %s:%u over %s, user %s; %u messages of %u bytes each way",
             r.server_ip, r.o.port, r.o.tcp ? "tcp" : "udp", r.o.user, r.o.count, r.o.size);

    if (!side_init(&r, &r.a, "a", 'a', TRUE) || !side_init(&r, &r.b, "b", 'b', FALSE)) {
        fprintf(stderr, "tern-nice-test: cannot set up the libnice agents\n");
        close_agents(&r);
        g_main_loop_unref(r.loop);
        return 1;
    }
    r.timeout_source = g_timeout_add_seconds(r.o.timeout_s, on_timeout, &r);
    if (!nice_agent_gather_candidates(r.a.agent, r.a.stream) ||
        !nice_agent_gather_candidates(r.b.agent, r.b.stream))
        fail_run(&r, "nice_agent_gather_candidates failed");
    else
        g_main_loop_run(r.loop);
    if (!r.t_end) r.t_end = g_get_monotonic_time();

    verdict(&r);
    guint lost =
        (r.b.sent - MIN(r.b.sent, r.a.received)) + (r.a.sent - MIN(r.a.sent, r.b.received));
    double transfer = r.t_ready ? (double)(r.t_end - r.t_ready) / 1e6 : 0.0;
    printf("result: %s sent=%u/%u received_a=%u received_b=%u lost=%u corrupt=%u duplicate=%u "
           "reordered=%u selected=%s/%s a=%s<->%s transport=%s total=%.3fs transfer=%.3fs\n",
           r.failure ? "FAIL" : "ok", r.a.sent, r.b.sent, r.a.received, r.b.received, lost,
           r.a.corrupt + r.b.corrupt, r.a.duplicate + r.b.duplicate, r.a.reordered + r.b.reordered,
           r.a.have_pair ? cand_type_name(r.a.sel_local_type) : "none",
           r.a.have_pair ? cand_type_name(r.a.sel_remote_type) : "none",
           r.a.have_pair ? r.a.local_relay : "-", r.a.have_pair ? r.a.remote_relay : "-",
           r.o.tcp ? "tcp" : "udp", secs_since(r.t_start), transfer);
    fflush(stdout);

    close_agents(&r);
    g_main_loop_unref(r.loop);
    if (r.failure) {
        fprintf(stderr, "tern-nice-test: FAILED: %s\n", r.failure);
        g_free(r.failure);
        return 1;
    }
    return 0;
}
