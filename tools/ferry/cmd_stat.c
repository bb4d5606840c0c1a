/* cmd_stat.c - `ferry stat`: every live ferry socket and its counters. */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char stat_help[] =
    "usage: ferry stat [PID | URL] [--json]\n"
    "\n"
    "List the live ferry sockets on this machine that you may see (your own\n"
    "processes; root sees all): the owner's pid and command, the socket type,\n"
    "its endpoints, its peers, and what it has moved. PID lists one process's\n"
    "sockets; URL the sockets that listen on or dial that endpoint.\n"
    "\n"
    "Each socket counts messages and bytes received and sent (whole messages,\n"
    "bytes of all parts), messages its pattern dropped (a full peer, an\n"
    "unknown route), connections dropped for bad input (errors), connections\n"
    "refused at a limit, and dial attempts after the first (reconnects); each\n"
    "peer the same, with its transport, its address (tcp) or pid (shm, ipc)\n"
    "and the time of its last message. Counters are read from each process's\n"
    "/dev/shm/ferry-stat.PID while it runs; the files of dead processes are\n"
    "removed on the way. Processes run with FERRY_STATS=0 are not listed.\n"
    "\n"
    "  --json    one JSON object: {\"ferry_version\", \"schema\", \"sockets\": [...]}\n"
    "  -h, --help\n";

struct stat_state {
    int json;
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
           "\"bytes_sent\": %llu, \"dropped\": %llu, \"errors\": %llu, \"refused\": %llu, "
           "\"reconnects\": %llu}",
           (unsigned long long)c->msgs_in, (unsigned long long)c->bytes_in,
           (unsigned long long)c->msgs_out, (unsigned long long)c->bytes_out,
           (unsigned long long)c->dropped, (unsigned long long)c->bad_input,
           (unsigned long long)c->refused, (unsigned long long)c->reconnects);
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
               "\"last_active\": %lld}",
               p->pid, p->uid, (unsigned long long)p->msgs_in, (unsigned long long)p->bytes_in,
               (unsigned long long)p->msgs_out, (unsigned long long)p->bytes_out,
               (unsigned long long)p->dropped, (long long)p->last_active);
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
    printf("    peer %-34s in %llu msg %llu B  out %llu msg %llu B  dropped %llu  last %s\n", who,
           (unsigned long long)p->msgs_in, (unsigned long long)p->bytes_in,
           (unsigned long long)p->msgs_out, (unsigned long long)p->bytes_out,
           (unsigned long long)p->dropped, ago);
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
    printf("    in %llu msg %llu B  out %llu msg %llu B  dropped %llu  errors %llu  refused %llu"
           "  reconnects %llu\n",
           (unsigned long long)c->msgs_in, (unsigned long long)c->bytes_in,
           (unsigned long long)c->msgs_out, (unsigned long long)c->bytes_out,
           (unsigned long long)c->dropped, (unsigned long long)c->bad_input,
           (unsigned long long)c->refused, (unsigned long long)c->reconnects);
    time_t now = time(NULL);
    for (size_t i = 0; i < s->npeers; i++)
        text_peer(&s->peers[i], now);
}

static int stat_one(const ferry_sock_info *s, void *arg)
{
    struct stat_state *st = arg;
    if (st->url && !has_endpoint(s->endpoints, st->url))
        return 0;
    if (st->json)
        json_socket(s, st->count == 0);
    else
        text_socket(s);
    st->count++;
    return 0;
}

int cmd_stat(int argc, char **argv)
{
    static const struct option opts[] = {
        {"json", no_argument, 0, 'j'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    struct stat_state st = {0};
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'j':
            st.json = 1;
            break;
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
    if (st.json)
        printf("{\"ferry_version\": \"%s\", \"schema\": 1, \"sockets\": [", ferry_version());
    int rc = ferry_stats_list(st.pid, stat_one, &st);
    if (st.json)
        printf("%s]}\n", st.count ? "\n" : "");
    if (rc != 0)
        return cli_fail(rc, "stat");
    return CLI_OK;
}
