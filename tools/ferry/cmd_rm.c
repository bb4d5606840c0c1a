/* cmd_rm.c - `ferry rm`: remove ferry objects, like ipcrm. */
#include "cli.h"

#include <getopt.h>
#include <stdio.h>

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
    "header is refused. Exit 1 if any removal failed.\n";

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
    for (int i = optind; i < argc; i++)
        if (ferry_name_check(argv[i]) != 0)
            return cli_usage("rm", "invalid name '%s'", argv[i]);
    int failed = 0;
    if (stale) {
        int rc = ferry_objects_list(rm_stale_one, &failed);
        if (rc != 0)
            return cli_fail(rc, "rm --stale");
        return failed ? CLI_FAIL : CLI_OK;
    }
    for (int i = optind; i < argc; i++) {
        int rc = ferry_object_remove(argv[i]);
        if (rc != 0) {
            cli_fail(rc, "rm %s", argv[i]);
            failed = 1;
        }
    }
    return failed ? CLI_FAIL : CLI_OK;
}
