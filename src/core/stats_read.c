/*
 * stats_read.c - reading counters: a socket's own (ferry_socket_stats) and
 * every process's files (ferry_stats_list, for `ferry stat`).
 *
 * A file is another process's memory: its header is checked against the
 * layout we write, every slot index against the slot counts, every string
 * is cut at its field's end, and text fields are taken only from a copy
 * the slot's seqlock says was whole.
 */
#include "sock.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static void io_add(ferry_stats *out, const struct fy_stat_io *io)
{
    out->msgs_in += atomic_load_explicit(&io->msgs_in, memory_order_relaxed);
    out->bytes_in += atomic_load_explicit(&io->bytes_in, memory_order_relaxed);
    out->msgs_out += atomic_load_explicit(&io->msgs_out, memory_order_relaxed);
    out->bytes_out += atomic_load_explicit(&io->bytes_out, memory_order_relaxed);
}

static void sock_counters(ferry_stats *out, const struct fy_stat_sock *ss)
{
    io_add(out, &ss->retired);
    out->dropped = atomic_load_explicit(&ss->dropped, memory_order_relaxed);
    out->bad_input = atomic_load_explicit(&ss->bad_input, memory_order_relaxed);
    out->refused = atomic_load_explicit(&ss->refused, memory_order_relaxed);
    out->reconnects = atomic_load_explicit(&ss->reconnects, memory_order_relaxed);
}

int ferry_socket_stats(ferry_socket *s, ferry_stats *out)
{
    if (s == NULL || out == NULL)
        return FERRY_EINVAL;
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&s->mtx);
    sock_counters(out, s->stat);
    for (size_t i = 0; i < s->npipes; i++) {
        io_add(out, &s->pipes[i]->stat->io);
        out->peers += !s->pipes[i]->pending && !s->pipes[i]->dead;
    }
    pthread_mutex_unlock(&s->mtx);
    return 0;
}

/* --- other processes' files ------------------------------------------------ */

/* Copies n bytes guarded by seq; 1 when the copy is whole. */
static int seq_copy(void *dst, const void *src, size_t n, const _Atomic uint32_t *seq)
{
    for (int tries = 0; tries < 100; tries++) {
        uint32_t a = atomic_load_explicit(seq, memory_order_acquire);
        if (a & 1)
            continue;
        memcpy(dst, src, n);
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(seq, memory_order_relaxed) == a)
            return 1;
    }
    return 0;
}

static void cut(char *s, size_t n) { s[n - 1] = '\0'; }

static int header_ok(const struct fy_stat_hdr *h, int pid)
{
    return memcmp(h->magic, FY_STAT_MAGIC, 8) == 0 && h->version == FY_STAT_VERSION &&
           h->hdr_size == 4096 && h->sock_size == sizeof(struct fy_stat_sock) &&
           h->peer_size == sizeof(struct fy_stat_peer) && h->sock_slots == FY_STAT_SOCKS &&
           h->peer_slots == FY_STAT_PEERS && h->pid == pid;
}

/* One peer slot into the public form; 0 when it is not a live, whole one
 * of socket slot idx. */
static int peer_read(const struct fy_stat_peer *sp, uint32_t idx, ferry_peer_info *out)
{
    struct fy_stat_peer copy;
    if (atomic_load_explicit(&sp->live, memory_order_acquire) != 1 ||
        !seq_copy(&copy, sp, offsetof(struct fy_stat_peer, io), &sp->seq) || copy.sock != idx)
        return 0;
    memset(out, 0, sizeof *out);
    memcpy(out->transport, copy.transport, sizeof out->transport);
    cut(out->transport, sizeof out->transport);
    memcpy(out->addr, copy.addr, sizeof out->addr);
    cut(out->addr, sizeof out->addr);
    out->pid = copy.pid;
    out->uid = copy.uid;
    out->msgs_in = atomic_load_explicit(&sp->io.msgs_in, memory_order_relaxed);
    out->bytes_in = atomic_load_explicit(&sp->io.bytes_in, memory_order_relaxed);
    out->msgs_out = atomic_load_explicit(&sp->io.msgs_out, memory_order_relaxed);
    out->bytes_out = atomic_load_explicit(&sp->io.bytes_out, memory_order_relaxed);
    out->dropped = atomic_load_explicit(&sp->dropped, memory_order_relaxed);
    out->last_active = (int64_t)atomic_load_explicit(&sp->last_active, memory_order_relaxed);
    return 1;
}

/* The sockets of one mapped file. */
static int list_file(const struct fy_stat_hdr *h, ferry_peer_info *peers,
                     int (*fn)(const ferry_sock_info *, void *), void *arg)
{
    const struct fy_stat_sock *socks = fy_stat_socks(h);
    const struct fy_stat_peer *pv = fy_stat_peers(h);
    for (uint32_t i = 0; i < FY_STAT_SOCKS; i++) {
        const struct fy_stat_sock *ss = &socks[i];
        struct fy_stat_sock copy;
        if (atomic_load_explicit(&ss->live, memory_order_acquire) != 1 ||
            !seq_copy(&copy, ss, offsetof(struct fy_stat_sock, retired), &ss->seq))
            continue;
        ferry_sock_info info;
        memset(&info, 0, sizeof info);
        info.pid = h->pid;
        info.uid = h->uid;
        memcpy(info.command, h->command, sizeof info.command);
        cut(info.command, sizeof info.command);
        info.id = copy.id;
        info.type = copy.type;
        memcpy(info.endpoints, copy.endpoints, sizeof info.endpoints);
        cut(info.endpoints, sizeof info.endpoints);
        sock_counters(&info.stats, ss);
        for (uint32_t k = 0; k < FY_STAT_PEERS; k++) {
            if (!peer_read(&pv[k], i, &peers[info.npeers]))
                continue;
            const ferry_peer_info *p = &peers[info.npeers++];
            info.stats.msgs_in += p->msgs_in;
            info.stats.bytes_in += p->bytes_in;
            info.stats.msgs_out += p->msgs_out;
            info.stats.bytes_out += p->bytes_out;
        }
        info.stats.peers = (uint32_t)info.npeers;
        info.peers = peers;
        int rc = fn(&info, arg);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Maps the file of process pid read-only; NULL when it is not there, not
 * ours to read, not a regular file of the layout's size, or not well
 * formed. */
static const struct fy_stat_hdr *map_file(int pid)
{
    char path[64];
    snprintf(path, sizeof path, "/dev/shm/" FY_STAT_PREFIX "%d", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return NULL;
    struct stat st;
    void *map = MAP_FAILED;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size == FY_STAT_SIZE)
        map = mmap(NULL, FY_STAT_SIZE, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (map == MAP_FAILED)
        return NULL;
    if (!header_ok(map, pid)) {
        munmap(map, FY_STAT_SIZE);
        return NULL;
    }
    return map;
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* The pids that have a file, sorted; *n of them. NULL on no memory. */
static int *file_pids(size_t *n)
{
    size_t cap = 64;
    int *v = malloc(cap * sizeof *v);
    *n = 0;
    DIR *d = opendir("/dev/shm");
    if (v == NULL || d == NULL) {
        if (d)
            closedir(d);
        return v;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, FY_STAT_PREFIX, sizeof FY_STAT_PREFIX - 1) != 0)
            continue;
        char *end;
        long pid = strtol(e->d_name + sizeof FY_STAT_PREFIX - 1, &end, 10);
        if (*end != '\0' || pid <= 0 || pid > INT32_MAX)
            continue;
        if (*n == cap) {
            int *w = realloc(v, 2 * cap * sizeof *v);
            if (w == NULL)
                break;
            v = w;
            cap *= 2;
        }
        v[(*n)++] = (int)pid;
    }
    closedir(d);
    qsort(v, *n, sizeof *v, cmp_int);
    return v;
}

int ferry_stats_list(int pid, int (*fn)(const ferry_sock_info *info, void *arg), void *arg)
{
    fy_err_clear();
    if (fn == NULL || pid < 0)
        return FERRY_EINVAL;
    fy_stat_sweep();
    size_t n = 0;
    int *pids = file_pids(&n);
    ferry_peer_info *peers = malloc(FY_STAT_PEERS * sizeof *peers);
    int rc = 0;
    if (pids == NULL || peers == NULL)
        rc = FERRY_ENOMEM;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (pid != 0 && pids[i] != pid)
            continue;
        const struct fy_stat_hdr *h = map_file(pids[i]);
        if (h == NULL)
            continue;
        if (fy_proc_alive(h->pid, h->start_time))
            rc = list_file(h, peers, fn, arg);
        munmap((void *)(uintptr_t)h, FY_STAT_SIZE);
    }
    free(peers);
    free(pids);
    return rc;
}
