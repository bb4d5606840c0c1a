/* cmd_stat.c - `ferry stat`: every live ferry socket and its counters. */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char stat_help[] =
    "usage: ferry stat [PID | URL] [--json]\n"
    "       ferry stat [PID | URL] --watch[=SECONDS]\n"
    "\n"
    "List the live ferry sockets on this machine that you may see (your own\n"
    "processes; root sees all): the owner's pid and command, the socket type,\n"
    "its endpoints, its peers, and what it has moved. PID lists one process's\n"
    "sockets; URL the sockets that listen on or dial that endpoint.\n"
    "\n"
    "Each socket counts messages and bytes received and sent (whole messages,\n"
    "bytes of all parts), messages its pattern dropped (a full peer, or no\n"
    "route: an unknown routing id, a requester gone), connections dropped\n"
    "for bad input (errors), connections refused at a limit, and dial\n"
    "attempts after the first (reconnects); each\n"
    "peer the same, with its transport, its address (tcp) or pid (shm, ipc),\n"
    "the time of its last message and its queues (messages waiting for the\n"
    "peer, the most seen, messages waiting for the user; shm: ring fill).\n"
    "Counters are read from each process's /dev/shm/ferry-stat.PID while it\n"
    "runs; the files of dead processes are removed on the way. Processes run\n"
    "with FERRY_STATS=0 are not listed.\n"
    "\n"
    "  --json             one JSON object: {\"ferry_version\", \"schema\", \"sockets\": [...]}\n"
    "  --watch[=SECONDS]  list again every SECONDS (default 1; 0.1 to 3600) with rates:\n"
    "                     messages/s and bytes/s each way and drops/s, per socket and\n"
    "                     per peer; on a terminal the screen is redrawn in place, like\n"
    "                     top; until interrupted (exit 0)\n"
    "  -h, --help\n";

/* One socket's or one peer's counts at one look (--watch). */
struct sample {
    int pid;
    unsigned sock, peer; /* peer 0: the socket's totals */
    uint64_t in, bin, out, bout, drop;
};

struct stat_state {
    int json;
    double watch; /* seconds between two looks; 0: once */
    struct sample *now, *then;
    size_t nnow, nthen, cap;
    double dt;       /* seconds since the last look, 0 at the first */
    int pid;         /* 0: every process */
    const char *url; /* NULL: every socket */
    int count;
};

static const char *type_name(int t)
{
    static const char *const names[] = {"?",    "pair", "pub",    "sub",    "req",  "rep",
                                        "push", "pull", "dealer", "router", "xpub", "xsub"};
    return t >= 0 && t < (int)(sizeof names / sizeof names[0]) ? names[t] : "?";
}

/* 1 when one of the socket's endpoint lines ("listen URL", "dial URL")
 * names url. */
static int has_endpoint(const char *endpoints, const char *url)
{
    size_t ul = strlen(url);
    for (const char *line = endpoints; *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        const char *sp = memchr(line, ' ', len);
        if (sp && (size_t)(line + len - sp - 1) == ul && memcmp(sp + 1, url, ul) == 0)
            return 1;
        if (!end)
            break;
        line = end + 1;
    }
    return 0;
}

static void json_endpoints(const char *endpoints)
{
    printf("[");
    int n = 0;
    for (const char *line = endpoints; *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        char buf[320];
        snprintf(buf, sizeof buf, "%.*s", (int)len, line);
        char *sp = strchr(buf, ' ');
        if (sp) {
            *sp = '\0';
            printf("%s{\"how\": ", n++ ? ", " : "");
            cli_json_str(stdout, buf);
            printf(", \"url\": ");
            cli_json_str(stdout, sp + 1);
            printf("}");
        }
        if (!end)
            break;
        line = end + 1;
    }
    printf("]");
}

static void json_counters(const ferry_stats *c)
{
    printf("{\"messages_received\": %llu, \"bytes_received\": %llu, \"messages_sent\": %llu, "
           "\"bytes_sent\": %llu, \"dropped\": %llu, \"dropped_no_route\": %llu, "
           "\"errors\": %llu, \"refused\": %llu, \"reconnects\": %llu}",
           (unsigned long long)c->msgs_in, (unsigned long long)c->bytes_in,
           (unsigned long long)c->msgs_out, (unsigned long long)c->bytes_out,
           (unsigned long long)c->dropped, (unsigned long long)c->dropped_no_route,
           (unsigned long long)c->bad_input, (unsigned long long)c->refused,
           (unsigned long long)c->reconnects);
}

static void json_socket(const ferry_sock_info *s, int first)
{
    printf("%s\n    {\"pid\": %d, \"uid\": %u, \"command\": ", first ? "" : ",", s->pid, s->uid);
    cli_json_str(stdout, s->command);
    printf(", \"socket\": %u, \"type\": \"%s\", \"endpoints\": ", s->id, type_name(s->type));
    json_endpoints(s->endpoints);
    printf(", \"counters\": ");
    json_counters(&s->stats);
    printf(", \"peers\": [");
    for (size_t i = 0; i < s->npeers; i++) {
        const ferry_peer_info *p = &s->peers[i];
        printf("%s{\"transport\": ", i ? ", " : "");
        cli_json_str(stdout, p->transport);
        printf(", \"address\": ");
        cli_json_str(stdout, p->addr);
        printf(", \"pid\": %d, \"uid\": %u, \"messages_received\": %llu, \"bytes_received\": "
               "%llu, \"messages_sent\": %llu, \"bytes_sent\": %llu, \"dropped\": %llu, "
               "\"last_active\": %lld, \"queued_out\": %llu, \"queued_out_max\": %llu, "
               "\"queued_in\": %llu, \"ring_fill\": %llu, \"ring_size\": %llu}",
               p->pid, p->uid, (unsigned long long)p->msgs_in, (unsigned long long)p->bytes_in,
               (unsigned long long)p->msgs_out, (unsigned long long)p->bytes_out,
               (unsigned long long)p->dropped, (long long)p->last_active,
               (unsigned long long)p->queued_out, (unsigned long long)p->queued_out_max,
               (unsigned long long)p->queued_in, (unsigned long long)p->ring_fill,
               (unsigned long long)p->ring_size);
    }
    printf("]}");
}

static void text_peer(const ferry_peer_info *p, time_t now)
{
    char who[128], ago[32] = "never";
    if (p->addr[0])
        snprintf(who, sizeof who, "%s %s", p->transport, p->addr);
    else
        snprintf(who, sizeof who, "%s pid %d", p->transport, p->pid);
    if (p->last_active > 0)
        snprintf(ago, sizeof ago, "%llds ago",
                 (long long)(now > p->last_active ? now - p->last_active : 0));
    char ring[64] = "";
    if (p->ring_size)
        snprintf(ring, sizeof ring, "  ring %llu/%llu B", (unsigned long long)p->ring_fill,
                 (unsigned long long)p->ring_size);
    printf("    peer %-34s in %llu msg %llu B  out %llu msg %llu B  dropped %llu  last %s\n"
           "         queued out %llu (max %llu) in %llu%s\n",
           who, (unsigned long long)p->msgs_in, (unsigned long long)p->bytes_in,
           (unsigned long long)p->msgs_out, (unsigned long long)p->bytes_out,
           (unsigned long long)p->dropped, ago, (unsigned long long)p->queued_out,
           (unsigned long long)p->queued_out_max, (unsigned long long)p->queued_in, ring);
}

static void text_socket(const ferry_sock_info *s)
{
    const ferry_stats *c = &s->stats;
    printf("%d %s: socket %u %s, %u peer%s\n", s->pid, s->command, s->id, type_name(s->type),
           c->peers, c->peers == 1 ? "" : "s");
    for (const char *line = s->endpoints; *line;) {
        const char *end = strchr(line, '\n');
        int len = end ? (int)(end - line) : (int)strlen(line);
        printf("    %.*s\n", len, line);
        if (!end)
            break;
        line = end + 1;
    }
    printf("    in %llu msg %llu B  out %llu msg %llu B  dropped %llu (no route %llu)  errors %llu"
           "  refused %llu  reconnects %llu\n",
           (unsigned long long)c->msgs_in, (unsigned long long)c->bytes_in,
           (unsigned long long)c->msgs_out, (unsigned long long)c->bytes_out,
           (unsigned long long)c->dropped, (unsigned long long)c->dropped_no_route,
           (unsigned long long)c->bad_input, (unsigned long long)c->refused,
           (unsigned long long)c->reconnects);
    time_t now = time(NULL);
    for (size_t i = 0; i < s->npeers; i++)
        text_peer(&s->peers[i], now);
}

/* --- --watch: rates between two looks -------------------------------- */

static void human(char *buf, size_t len, double v, const char *unit)
{
    static const char *const k[] = {"", "k", "M", "G", "T"};
    int i = 0;
    while (v >= 1000 && i < 4) {
        v /= 1000;
        i++;
    }
    snprintf(buf, len, i ? "%.1f%s%s" : "%.0f%s%s", v, k[i], unit);
}

static int cmp_sample(const void *a, const void *b)
{
    const struct sample *x = a, *y = b;
    if (x->pid != y->pid)
        return x->pid < y->pid ? -1 : 1;
    if (x->sock != y->sock)
        return x->sock < y->sock ? -1 : 1;
    return x->peer < y->peer ? -1 : x->peer > y->peer;
}

/* The last look is kept sorted: one binary search a line. */
static const struct sample *find_sample(const struct stat_state *st, const struct sample *x)
{
    return st->nthen ? bsearch(x, st->then, st->nthen, sizeof *x, cmp_sample) : NULL;
}

/* Records x and prints its rates since the last look (blank at the first,
 * and for what was not there then). */
static void rate_line(struct stat_state *st, const struct sample *x, const char *lead)
{
    if (st->nnow == st->cap) {
        size_t cap = st->cap ? 2 * st->cap : 64;
        struct sample *v = realloc(st->now, cap * sizeof *v);
        if (v == NULL)
            return;
        st->now = v;
        st->cap = cap;
    }
    st->now[st->nnow++] = *x;
    const struct sample *p = find_sample(st, x);
    char r[5][16];
    if (p == NULL || st->dt <= 0) {
        for (int i = 0; i < 5; i++)
            snprintf(r[i], sizeof r[i], "-");
    } else {
        uint64_t d[5] = {x->in - p->in, x->bin - p->bin, x->out - p->out, x->bout - p->bout,
                         x->drop - p->drop};
        for (int i = 0; i < 5; i++) /* a counter that went back: a new socket in that place */
            human(r[i], sizeof r[i], d[i] > (uint64_t)INT64_MAX ? 0 : (double)d[i] / st->dt,
                  i == 1 || i == 3 ? "B" : "");
    }
    printf("%-44.44s %9s %9s %9s %9s %8s\n", lead, r[0], r[1], r[2], r[3], r[4]);
}

static void watch_socket(struct stat_state *st, const ferry_sock_info *s)
{
    const ferry_stats *c = &s->stats;
    char lead[128];
    const char *nl = strchr(s->endpoints, '\n');
    snprintf(lead, sizeof lead, "%d %s #%u %s %.*s", s->pid, s->command, s->id, type_name(s->type),
             nl ? (int)(nl - s->endpoints) : (int)strlen(s->endpoints), s->endpoints);
    struct sample x = {s->pid,      s->id,        0,         c->msgs_in, c->bytes_in,
                       c->msgs_out, c->bytes_out, c->dropped};
    rate_line(st, &x, lead);
    for (size_t i = 0; i < s->npeers; i++) {
        const ferry_peer_info *p = &s->peers[i];
        if (p->addr[0])
            snprintf(lead, sizeof lead, "  %s %s", p->transport, p->addr);
        else
            snprintf(lead, sizeof lead, "  %s pid %d", p->transport, p->pid);
        x = (struct sample){s->pid,      s->id,       p->id,        p->msgs_in,
                            p->bytes_in, p->msgs_out, p->bytes_out, p->dropped};
        rate_line(st, &x, lead);
    }
}

static int stat_one(const ferry_sock_info *s, void *arg);

static int watch(struct stat_state *st)
{
    sigset_t stops;
    sigemptyset(&stops);
    sigaddset(&stops, SIGINT);
    sigaddset(&stops, SIGTERM);
    sigprocmask(SIG_BLOCK, &stops, NULL);
    int tty = isatty(1), stop_watch = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (!stop_watch) {
        char when[32];
        time_t now = time(NULL);
        struct tm tm;
        strftime(when, sizeof when, "%H:%M:%S", localtime_r(&now, &tm));
        printf("%sferry stat, every %gs, %s\n%-44s %9s %9s %9s %9s %8s\n",
               tty ? "\033[H\033[2J" : "", st->watch, when,
               "PID COMMAND #SOCKET TYPE ENDPOINT / PEER", "in msg/s", "in B/s", "out msg/s",
               "out B/s", "drop/s");
        st->nnow = 0;
        int rc = ferry_stats_list(st->pid, stat_one, st);
        if (rc != 0)
            return cli_fail(rc, "stat");
        if (!tty)
            printf("\n");
        fflush(stdout);
        struct sample *t = st->nnow ? realloc(st->then, st->nnow * sizeof *t) : st->then;
        if (t != NULL) { /* this look becomes the last one */
            memcpy(t, st->now, st->nnow * sizeof *t);
            qsort(t, st->nnow, sizeof *t, cmp_sample);
            st->then = t;
            st->nthen = st->nnow;
        } else { /* no memory: the next look shows no rates rather than wrong ones */
            st->nthen = 0;
        }
        st->nnow = 0;
        /* the signals are blocked (above) and taken here: none is missed
         * between the check and the sleep */
        struct timespec d = {(time_t)st->watch, (long)((st->watch - floor(st->watch)) * 1e9)};
        if (sigtimedwait(&stops, NULL, &d) > 0)
            stop_watch = 1;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        st->dt = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
        t0 = t1;
    }
    return CLI_OK;
}

static int stat_one(const ferry_sock_info *s, void *arg)
{
    struct stat_state *st = arg;
    if (st->url && !has_endpoint(s->endpoints, st->url))
        return 0;
    if (st->watch > 0)
        watch_socket(st, s);
    else if (st->json)
        json_socket(s, st->count == 0);
    else
        text_socket(s);
    st->count++;
    return 0;
}

int cmd_stat(int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, 0, 'j'},
                                         {"watch", optional_argument, 0, 'w'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    struct stat_state st = {0};
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'j':
            st.json = 1;
            break;
        case 'w': {
            char *end = NULL;
            st.watch = optarg ? strtod(optarg, &end) : 1.0;
            if (optarg && (*end || end == optarg || !(st.watch >= 0.1 && st.watch <= 3600)))
                return cli_usage(
                    "stat", "--watch: '%s' is not a number of seconds from 0.1 to 3600", optarg);
            break;
        }
        case 'h':
            fputs(stat_help, stdout);
            return CLI_OK;
        default:
            return cli_usage("stat", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) {
        const char *what = argv[optind++];
        char *end;
        errno = 0;
        long pid = strtol(what, &end, 10);
        if (strstr(what, "://") != NULL)
            st.url = what;
        else if (errno || end == what || *end || pid <= 0 || pid > 0x7fffffff)
            return cli_usage("stat", "'%s' is neither a pid nor a URL", what);
        else
            st.pid = (int)pid;
    }
    if (optind < argc)
        return cli_usage("stat", "unexpected argument '%s'", argv[optind]);
    if (st.json && st.watch > 0)
        return cli_usage("stat", "--watch and --json do not go together (run --json repeatedly)");
    if (st.watch > 0) {
        int rc = watch(&st);
        free(st.now);
        free(st.then);
        return rc;
    }
    if (st.json)
        printf("{\"ferry_version\": \"%s\", \"schema\": 1, \"sockets\": [", ferry_version());
    int rc = ferry_stats_list(st.pid, stat_one, &st);
    if (st.json)
        printf("%s]}\n", st.count ? "\n" : "");
    if (rc != 0)
        return cli_fail(rc, "stat");
    return CLI_OK;
}
