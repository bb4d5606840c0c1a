/* cmd_rm.c - `ferry rm`: remove ferry objects, like ipcrm. */
#include "cli.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

static const char rm_help[] =
    "usage: ferry rm NAME...\n"
    "       ferry rm --stale\n"
    "\n"
    "Remove ferry objects by name (the NAME column of 'ferry ls'). Processes\n"
    "that have an object open keep using it until they close it; the name is\n"
    "gone at once. A semaphore of the undo kind is removed from the kernel\n"
    "too, and its waiters fail with 'object was removed'.\n"
    "\n"
    "  --stale   remove every object whose creator is dead and that no\n"
    "            process maps (what 'ferry ls --stale' lists)\n"
    "  -h, --help\n"
    "\n"
    "Only ferry objects are removed: a file named ferry.* without a ferry\n"
    "header is refused. Exit 1 if any removal failed.\n"
    "\n"
    "shm:// endpoints (NAME given as shm://NAME) have no file: an endpoint\n"
    "exists exactly as long as a live socket listens on it, and vanishes when\n"
    "its owner closes it or dies. 'ferry rm shm://NAME' therefore refuses a\n"
    "live endpoint (naming its owner) and reports a dead one as already gone.\n";

static int rm_stale_one(const ferry_objinfo *o, void *arg)
{
    int *failed = arg;
    if (o->error != 0 || o->creator_alive || o->attached != 0)
        return 0;
    int rc = ferry_object_remove(o->name);
    if (rc != 0) {
        cli_fail(rc, "rm %s", o->name);
        *failed = 1;
    } else {
        fprintf(stderr, "ferry: removed stale %s\n", o->name);
    }
    return 0;
}

struct ep_find {
    const char *url;
    ferry_objinfo found;
    int hit;
};

static int ep_match(const ferry_objinfo *o, void *arg)
{
    struct ep_find *f = arg;
    if (o->kind == FERRY_KIND_ENDPOINT && strcmp(o->name, f->url) == 0) {
        f->found = *o;
        f->hit = 1;
    }
    return 0;
}

static int rm_endpoint(const char *url)
{
    struct ep_find f = {.url = url};
    int rc = ferry_objects_list(ep_match, &f);
    if (rc != 0)
        return cli_fail(rc, "rm %s", url);
    if (!f.hit) {
        fprintf(stderr,
                "ferry: rm %s: no such endpoint (an endpoint vanishes with its "
                "owner: nothing is left to remove)\n",
                url);
        return CLI_FAIL;
    }
    if (f.found.error != 0)
        fprintf(stderr, "ferry: rm %s: endpoint is live (%s); close its socket to remove it\n", url,
                ferry_strerror(f.found.error));
    else
        fprintf(stderr,
                "ferry: rm %s: endpoint is live, owned by pid %d with %d peer%s; close its "
                "socket (or stop that process) to remove it\n",
                url, f.found.creator_pid, f.found.peers, f.found.peers == 1 ? "" : "s");
    return CLI_FAIL;
}

int cmd_rm(int argc, char **argv)
{
    static const struct option opts[] = {
        {"stale", no_argument, 0, 's'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    int stale = 0, c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        switch (c) {
        case 's':
            stale = 1;
            break;
        case 'h':
            fputs(rm_help, stdout);
            return CLI_OK;
        default:
            return cli_usage("rm", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (stale && optind < argc)
        return cli_usage("rm", "--stale takes no names");
    if (!stale && optind >= argc)
        return cli_usage("rm", "no object named");
    for (int i = optind; i < argc; i++) {
        const char *n = argv[i];
        if (strncmp(n, "shm://", 6) == 0)
            n += 6;
        if (ferry_name_check(n) != 0)
            return cli_usage("rm", "invalid name '%s'", argv[i]);
    }
    int failed = 0;
    if (stale) {
        int rc = ferry_objects_list(rm_stale_one, &failed);
        if (rc != 0)
            return cli_fail(rc, "rm --stale");
        return failed ? CLI_FAIL : CLI_OK;
    }
    for (int i = optind; i < argc; i++) {
        if (strncmp(argv[i], "shm://", 6) == 0) {
            failed |= rm_endpoint(argv[i]);
            continue;
        }
        int rc = ferry_object_remove(argv[i]);
        if (rc != 0) {
            cli_fail(rc, "rm %s", argv[i]);
            failed = 1;
        }
    }
    return failed ? CLI_FAIL : CLI_OK;
}
