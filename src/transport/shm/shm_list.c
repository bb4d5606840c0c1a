/*
 * shm_list.c - the live shm:// endpoints of the machine, for `ferry ls`
 * (ferry_objects_list asks every transport through its `list` op): the
 * listening sockets "@ferry/shm/NAME" in /proc/net/unix, each asked for
 * its peers (fy_shm_stat).
 */
#include "shm_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Fills in for the live endpoint NAME by asking its listener. */
static void endpoint_fill(ferry_objinfo *in, const char *name)
{
    struct shm_ctl *c = malloc(sizeof *c);
    memset(in, 0, sizeof *in);
    snprintf(in->name, sizeof in->name, "shm://%s", name);
    in->kind = FERRY_KIND_ENDPOINT;
    in->attached = -1;
    in->sem_value = -1;
    if (c == NULL) {
        in->error = FERRY_ENOMEM;
        return;
    }
    in->error = fy_shm_stat(name, c);
    if (in->error == 0) {
        in->creator_pid = c->pid;
        in->creator_alive = 1; /* it answered */
        in->uid = c->uid;
        in->mode = 0;
        in->peers = (int)c->npeers;
        in->attached = (int)c->npeers + 1;
        in->ring_size = c->ring_size; /* the listener's RING_SIZE */
        for (uint32_t i = 0; i < c->npeers; i++) {
            in->fill += c->peers[i].rx_fill + c->peers[i].tx_fill;
            if (i == 0)
                in->ring_size = c->peers[i].ring_cap;
        }
    }
    free(c);
}

static int ep_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Live shm:// listeners: "@ferry/shm/NAME" listening sockets in
 * /proc/net/unix (Flags has __SO_ACCEPTCON, 0x10000). */
int fy_shm_list(int (*fn)(const ferry_objinfo *, void *), void *arg)
{
    FILE *f = fopen("/proc/net/unix", "re");
    if (f == NULL)
        return 0;
    char line[512], **names = NULL;
    size_t n = 0;
    const char *pre = "@ferry/shm/";
    while (fgets(line, sizeof line, f) != NULL) {
        unsigned long flags;
        char path[300];
        if (sscanf(line, "%*s %*s %*s %lx %*s %*s %*s %299s", &flags, path) != 2)
            continue;
        if (!(flags & 0x10000) || strncmp(path, pre, strlen(pre)) != 0)
            continue;
        const char *name = path + strlen(pre);
        if (ferry_name_check(name) != 0)
            continue;
        char **v = realloc(names, (n + 1) * sizeof *v);
        if (v == NULL)
            break;
        names = v;
        if ((names[n] = strdup(name)) != NULL)
            n++;
    }
    fclose(f);
    if (n > 1)
        qsort(names, n, sizeof *names, ep_cmp);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        if (rc == 0) {
            ferry_objinfo in;
            endpoint_fill(&in, names[i]);
            rc = fn(&in, arg);
        }
        free(names[i]);
    }
    free(names);
    return rc;
}
