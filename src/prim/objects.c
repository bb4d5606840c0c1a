/*
 * objects.c - finding the ferry objects on the machine, for `ferry ls` and
 * `ferry rm`.
 *
 * Objects are the files /dev/shm/ferry.*. "Attached" counts the processes
 * that map an object now, found by matching the object's device and inode
 * against every /proc/PID/maps (paths would not do: the creator maps the
 * object before it has a name). Processes we may not inspect are not
 * counted; the number is then a lower bound, as with ipcs' nattch.
 */
#include "region.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sem.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "../core/sock.h"

struct obj_ent {
    ferry_objinfo info;
    dev_t dev;
    ino_t ino;
    int last_pid;
};

static int obj_cmp(const void *a, const void *b)
{
    return strcmp(((const struct obj_ent *)a)->info.name, ((const struct obj_ent *)b)->info.name);
}

static void obj_fill(struct obj_ent *e, const char *name)
{
    struct fy_region_hdr hdr;
    struct stat st;
    ferry_objinfo *in = &e->info;
    memset(e, 0, sizeof *e);
    snprintf(in->name, sizeof in->name, "%s", name);
    in->attached = -1;
    in->sem_value = -1;
    in->error = fy_region_peek(name, &hdr, &st);
    in->mode = st.st_mode & 07777;
    in->uid = st.st_uid;
    e->dev = st.st_dev;
    e->ino = st.st_ino;
    if (in->error != 0)
        return;
    in->kind = hdr.kind == FERRY_KIND_REGION || hdr.kind == FERRY_KIND_SEM ? (ferry_kind)hdr.kind
                                                                           : FERRY_KIND_UNKNOWN;
    in->size = hdr.kind == FERRY_KIND_REGION ? hdr.size : 0;
    in->creator_pid = hdr.creator_pid;
    in->creator_alive = fy_proc_alive(hdr.creator_pid, hdr.creator_start);
    in->created_ns = hdr.created_ns;
    if (hdr.kind == FERRY_KIND_SEM)
        in->sem_value = fy_sem_peek_value(name, &in->sem_undo);
}

/* One pass over /proc/PID/maps for all objects at once. */
static void obj_count_attached(struct obj_ent *v, size_t n)
{
    DIR *d = opendir("/proc");
    if (d == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        if (v[i].info.error == 0)
            v[i].info.attached = 0;
    struct dirent *de;
    char path[64], line[512];
    while ((de = readdir(d)) != NULL) {
        char *end;
        long pid = strtol(de->d_name, &end, 10);
        if (*end != '\0' || pid <= 0)
            continue;
        snprintf(path, sizeof path, "/proc/%ld/maps", pid);
        FILE *f = fopen(path, "re");
        if (f == NULL)
            continue;
        while (fgets(line, sizeof line, f) != NULL) {
            unsigned maj, min;
            unsigned long long ino;
            /* addr perms offset dev inode path */
            if (sscanf(line, "%*s %*s %*s %x:%x %llu", &maj, &min, &ino) != 3 || ino == 0)
                continue;
            for (size_t i = 0; i < n; i++) {
                struct obj_ent *e = &v[i];
                if (e->info.attached < 0 || e->ino != (ino_t)ino || major(e->dev) != maj ||
                    minor(e->dev) != min || e->last_pid == pid)
                    continue;
                e->last_pid = (int)pid;
                e->info.attached++;
            }
        }
        fclose(f);
    }
    closedir(d);
}

int ferry_objects_list(int (*fn)(const ferry_objinfo *, void *), void *arg)
{
    fy_err_clear();
    if (fn == NULL)
        return FERRY_EINVAL;
    DIR *d = opendir(FY_SHM_DIR);
    if (d == NULL)
        return fy_syserr("open %s", FY_SHM_DIR);
    struct obj_ent *v = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *de;
    const size_t plen = strlen(FY_SHM_PREFIX);
    while ((de = readdir(d)) != NULL) {
        const char *name = de->d_name + plen;
        if (strncmp(de->d_name, FY_SHM_PREFIX, plen) != 0 || ferry_name_check(name) != 0)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            struct obj_ent *nv = realloc(v, cap * sizeof *v);
            if (nv == NULL) {
                rc = fy_err(FERRY_ENOMEM, "list %s", FY_SHM_DIR);
                break;
            }
            v = nv;
        }
        obj_fill(&v[n++], name);
    }
    closedir(d);
    if (rc == 0) {
        obj_count_attached(v, n);
        if (n > 1)
            qsort(v, n, sizeof *v, obj_cmp);
        for (size_t i = 0; i < n && rc == 0; i++)
            rc = fn(&v[i].info, arg);
    }
    free(v);
    if (rc == 0)
        rc = fy_tran_list(fn, arg); /* live endpoints: the transports know them */
    return rc;
}

int ferry_object_stat(const char *name, ferry_objinfo *info)
{
    fy_err_clear();
    if (info == NULL)
        return FERRY_EINVAL;
    int rc = ferry_name_check(name);
    if (rc != 0)
        return fy_err(rc, "'%.*s'", FERRY_NAME_MAX, name ? name : "(null)");
    struct obj_ent e;
    obj_fill(&e, name);
    if (e.info.error == FERRY_ENOENT)
        return e.info.error;
    obj_count_attached(&e, 1);
    *info = e.info;
    return 0;
}

int ferry_object_remove(const char *name)
{
    struct fy_region_hdr hdr;
    struct stat st;
    char path[256];
    fy_err_clear();
    int rc = fy_region_peek(name, &hdr, &st);
    if (rc == FERRY_EFOREIGN || rc == FERRY_EBADNAME || rc == FERRY_ENOENT)
        return rc;
    /* A damaged ferry object or one of a newer version is still ours. */
    if (rc == 0 && hdr.kind == FERRY_KIND_SEM) {
        rc = fy_sem_remove_kernel(name);
        if (rc != 0 && rc != FERRY_ECORRUPT)
            return rc;
    }
    fy_region_path(path, sizeof path, name);
    if (unlink(path) != 0)
        return fy_syserr("remove %s", path);
    return 0;
}
