/* cmd_ls.c - `ferry ls`: every ferry object on the machine, like ipcs. */
#include "cli.h"

#include <getopt.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static const char ls_help[] =
    "usage: ferry ls [--json] [--stale]\n"
    "\n"
    "List the ferry objects on this machine: regions and semaphores (files\n"
    "/dev/shm/ferry.*) with kind, name, size, mode, owner, creator pid, whether\n"
    "that creator still runs, how many processes map it and when it was made;\n"
    "then every live shm:// endpoint (kind 'endpoint', name 'shm://NAME') with\n"
    "the listener's pid, its ring size (SIZE), its connected peers and the\n"
    "bytes queued in their rings; then the tcp:// and ipc:// endpoints of live\n"
    "sockets (kind 'endpoint' for a listener, 'dial' for a connection it makes)\n"
    "with the owner's pid and its socket's peers (`ferry stat` has the rest).\n"
    "\n"
    "  --json    print one JSON object: {\"ferry_version\", \"schema\", \"objects\": [...]}\n"
    "  --stale   only objects whose creator is dead and that nobody maps\n"
    "  -h, --help\n"
    "\n"
    "Columns: ALIVE is yes/no for the creator (pid and start time must match,\n"
    "so a recycled pid is not taken for the creator); ATTACHED counts processes\n"
    "mapping the object that this user may inspect. Objects that cannot be\n"
    "read are listed with kind '?' and the reason. An endpoint has no file: it\n"
    "vanishes with its process, so an endpoint listed is always live.\n";

struct ls_state {
    int json;
    int stale_only;
    int count;
};

static const char *kind_name(ferry_kind k)
{
    switch (k) {
    case FERRY_KIND_REGION:
        return "region";
    case FERRY_KIND_SEM:
        return "sem";
    case FERRY_KIND_ENDPOINT:
        return "endpoint";
    default:
        return "?";
    }
}

static int is_stale(const ferry_objinfo *o)
{
    return o->error == 0 && !o->creator_alive && o->attached == 0;
}

static int ls_one(const ferry_objinfo *o, void *arg)
{
    struct ls_state *st = arg;
    if (st->stale_only && !is_stale(o))
        return 0;
    char created[32] = "-", owner[32];
    if (o->created_ns) {
        time_t t = (time_t)(o->created_ns / 1000000000u);
        struct tm tm;
        strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%S", localtime_r(&t, &tm));
    }
    struct passwd *pw = getpwuid(o->uid);
    snprintf(owner, sizeof owner, "%s", pw ? pw->pw_name : "");
    if (!pw)
        snprintf(owner, sizeof owner, "%u", o->uid);

    if (st->json) {
        printf("%s\n    {\"name\": ", st->count ? "," : "");
        cli_json_str(stdout, o->name);
        printf(", \"kind\": \"%s\", \"size\": %llu, \"mode\": \"%04o\", \"uid\": %u, "
               "\"creator_pid\": %d, \"creator_alive\": %s, \"attached\": %d, "
               "\"created_ns\": %llu, \"stale\": %s",
               o->error ? "unknown" : kind_name(o->kind), (unsigned long long)o->size, o->mode,
               o->uid, o->creator_pid, o->creator_alive ? "true" : "false", o->attached,
               (unsigned long long)o->created_ns, is_stale(o) ? "true" : "false");
        if (o->kind == FERRY_KIND_SEM)
            printf(", \"sem_value\": %d, \"sem_undo\": %s", o->sem_value,
                   o->sem_undo ? "true" : "false");
        if (o->kind == FERRY_KIND_ENDPOINT)
            printf(", \"peers\": %d, \"queued_bytes\": %llu, \"ring_size\": %llu", o->peers,
                   (unsigned long long)o->fill, (unsigned long long)o->ring_size);
        if (o->error) {
            printf(", \"error\": ");
            cli_json_str(stdout, ferry_strerror(o->error));
        }
        printf("}");
    } else {
        if (st->count == 0)
            printf("%-8s %-24s %10s %5s %-8s %7s %5s %8s %-19s %s\n", "KIND", "NAME", "SIZE",
                   "MODE", "OWNER", "PID", "ALIVE", "ATTACHED", "CREATED", "INFO");
        char info[96] = "";
        if (o->error)
            snprintf(info, sizeof info, "%s", ferry_strerror(o->error));
        else if (o->kind == FERRY_KIND_SEM)
            snprintf(info, sizeof info, "value=%d%s", o->sem_value, o->sem_undo ? " undo" : "");
        else if (o->kind == FERRY_KIND_ENDPOINT)
            snprintf(info, sizeof info, "peers=%d queued=%llu", o->peers,
                     (unsigned long long)o->fill);
        char size[24] = "-", pid[16] = "-", att[16] = "?";
        if (o->kind == FERRY_KIND_REGION)
            snprintf(size, sizeof size, "%llu", (unsigned long long)o->size);
        if (o->kind == FERRY_KIND_ENDPOINT && o->ring_size)
            snprintf(size, sizeof size, "%llu", (unsigned long long)o->ring_size);
        if (!o->error)
            snprintf(pid, sizeof pid, "%d", o->creator_pid);
        if (o->attached >= 0)
            snprintf(att, sizeof att, "%d", o->attached);
        char mode[8] = "-";
        if (o->kind != FERRY_KIND_ENDPOINT)
            snprintf(mode, sizeof mode, "%04o", o->mode);
        printf("%-8s %-24s %10s %5s %-8s %7s %5s %8s %-19s %s\n", kind_name(o->kind), o->name, size,
               mode, owner, pid, o->error ? "?" : (o->creator_alive ? "yes" : "no"), att, created,
               info);
    }
    st->count++;
    return 0;
}

/* tcp:// and ipc:// endpoints, from the live sockets' counters files
 * (shm:// ones are listed above, from their listeners' addresses): one
 * entry per "listen URL" or "dial URL" line of a socket. */
static int ls_socket(const ferry_sock_info *s, void *arg)
{
    struct ls_state *st = arg;
    for (const char *line = s->endpoints; *line;) {
        const char *end = strchr(line, '\n');
        char buf[320];
        snprintf(buf, sizeof buf, "%.*s", end ? (int)(end - line) : (int)strlen(line), line);
        char *url = strchr(buf, ' ');
        if (url != NULL) /* as the owner wrote it: listen or dial, then a tcp:// or ipc:// URL */
            *url++ = '\0';
        int listen = strcmp(buf, "listen") == 0;
        if (url != NULL && (listen || strcmp(buf, "dial") == 0) &&
            (strncmp(url, "tcp://", 6) == 0 || strncmp(url, "ipc://", 6) == 0)) {
            const char *kind = listen ? "endpoint" : "dial";
            if (st->json) {
                printf("%s\n    {\"name\": ", st->count ? "," : "");
                cli_json_str(stdout, url);
                printf(", \"kind\": \"%s\", \"uid\": %u, \"creator_pid\": %d, "
                       "\"creator_alive\": true, \"stale\": false, \"peers\": %u}",
                       kind, s->uid, s->pid, s->stats.peers);
            } else {
                if (st->count == 0)
                    printf("%-8s %-24s %10s %5s %-8s %7s %5s %8s %-19s %s\n", "KIND", "NAME",
                           "SIZE", "MODE", "OWNER", "PID", "ALIVE", "ATTACHED", "CREATED", "INFO");
                struct passwd *pw = getpwuid(s->uid);
                char owner[32];
                if (pw)
                    snprintf(owner, sizeof owner, "%s", pw->pw_name);
                else
                    snprintf(owner, sizeof owner, "%u", s->uid);
                printf("%-8s %-24s %10s %5s %-8s %7d %5s %8s %-19s peers=%u\n", kind, url, "-", "-",
                       owner, s->pid, "yes", "-", "-", s->stats.peers);
            }
            st->count++;
        }
        if (!end)
            break;
        line = end + 1;
    }
    return 0;
}

int cmd_ls(int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, 0, 'j'},
                                         {"stale", no_argument, 0, 's'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    struct ls_state st = {0};
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        switch (c) {
        case 'j':
            st.json = 1;
            break;
        case 's':
            st.stale_only = 1;
            break;
        case 'h':
            fputs(ls_help, stdout);
            return CLI_OK;
        default:
            return cli_usage("ls", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return cli_usage("ls", "unexpected argument '%s'", argv[optind]);
    if (st.json)
        printf("{\"ferry_version\": \"%s\", \"schema\": 1, \"objects\": [", ferry_version());
    int rc = ferry_objects_list(ls_one, &st);
    if (rc == 0 && !st.stale_only) /* a socket listed is a live one */
        rc = ferry_stats_list(0, ls_socket, &st);
    if (st.json)
        printf("%s]}\n", st.count ? "\n" : "");
    if (rc != 0)
        return cli_fail(rc, "ls");
    return CLI_OK;
}
