/*
 * stats_read.c - reading counters: a socket's own (ferry_socket_stats) and
 * every process's files (ferry_stats_list, for `ferry stat`).
 *
 * A file is another process's memory: it is read with pread, never
 * mapped; its header is checked against the layout we write, every slot
 * index against the slot counts, every string is cut at its field's end
 * and cleaned of escapes, and a slot is taken only from a copy its
 * seqlock says was whole.
 */
#include "sock.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
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
    out->dropped_no_route = atomic_load_explicit(&ss->dropped_noroute, memory_order_relaxed);
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

/* A file is read with pread into our memory, never mapped: its owner may
 * truncate it under us, which would kill a reader of a mapping (SIGBUS). */
struct snap {
    unsigned char *buf; /* FY_STAT_SIZE bytes */
    int fd;
};

static const struct fy_stat_hdr *snap_hdr(const struct snap *sn)
{
    return (const struct fy_stat_hdr *)(const void *)sn->buf;
}

/* Re-reads the seq word of the slot at off: the copy of the slot in the
 * snapshot is whole when its seq was even and is unchanged now. */
static int slot_whole(const struct snap *sn, size_t off)
{
    uint32_t then, now;
    memcpy(&then, sn->buf + off, sizeof then);
    return (then & 1) == 0 && pread(sn->fd, &now, sizeof now, (off_t)off) == (ssize_t)sizeof now &&
           now == then;
}

/* Length of the well-formed UTF-8 character at s (at most n bytes), or 0:
 * no overlong forms, no surrogates, nothing above U+10FFFF, and no C1
 * control (U+0080-U+009F: a terminal may take U+009B as CSI). */
static size_t utf8_char(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    size_t len = c >= 0xc2 && c <= 0xdf   ? 2
                 : c >= 0xe0 && c <= 0xef ? 3
                 : c >= 0xf0 && c <= 0xf4 ? 4
                                          : 0;
    if (len == 0 || len > n)
        return 0;
    for (size_t k = 1; k < len; k++)
        if ((s[k] & 0xc0) != 0x80)
            return 0;
    unsigned c1 = s[1];
    if ((c == 0xc2 && c1 < 0xa0) || (c == 0xe0 && c1 < 0xa0) || (c == 0xed && c1 >= 0xa0) ||
        (c == 0xf0 && c1 < 0x90) || (c == 0xf4 && c1 >= 0x90))
        return 0;
    return len;
}

/* Text from another process: cut at the field's end; control bytes (but
 * newlines where keep_nl), DEL and what is not well-formed UTF-8 (above)
 * become '?', so neither JSON nor a terminal can be fed escapes. */
static void clean_text(char *dst, const char *src, size_t n, int keep_nl)
{
    const unsigned char *u = (const unsigned char *)src;
    size_t i = 0, o = 0;
    while (i < n && u[i] != '\0' && o + 1 < n) {
        size_t len = utf8_char(u + i, n - i);
        int ok = len > 0 && (u[i] >= 0x20 || (keep_nl && u[i] == '\n')) && u[i] != 0x7f;
        if (!ok) {
            dst[o++] = '?';
            i++;
            continue;
        }
        if (o + len >= n)
            break;
        memcpy(dst + o, u + i, len);
        o += len;
        i += len;
    }
    dst[o] = '\0';
}

static int header_ok(const struct fy_stat_hdr *h, int pid, const struct stat *st)
{
    return memcmp(h->magic, FY_STAT_MAGIC, 8) == 0 && h->version == FY_STAT_VERSION &&
           h->hdr_size == 4096 && h->sock_size == sizeof(struct fy_stat_sock) &&
           h->peer_size == sizeof(struct fy_stat_peer) && h->sock_slots == FY_STAT_SOCKS &&
           h->peer_slots == FY_STAT_PEERS && h->pid == pid && h->uid == st->st_uid &&
           h->start_time != 0;
}

/* One peer slot of the snapshot into the public form; 0 when it is not a
 * live, whole one. *sock: its socket slot's index. */
static int peer_read(const struct snap *sn, uint32_t k, ferry_peer_info *out, uint32_t *sock)
{
    size_t off = (size_t)((const unsigned char *)&fy_stat_peers(snap_hdr(sn))[k] - sn->buf);
    const struct fy_stat_peer *sp = (const struct fy_stat_peer *)(const void *)(sn->buf + off);
    if (atomic_load_explicit(&sp->live, memory_order_relaxed) != 1 || sp->sock >= FY_STAT_SOCKS ||
        !slot_whole(sn, off))
        return 0;
    memset(out, 0, sizeof *out);
    clean_text(out->transport, sp->transport, sizeof out->transport, 0);
    clean_text(out->addr, sp->addr, sizeof out->addr, 0);
    out->id = sp->id;
    out->pid = sp->pid;
    out->uid = sp->uid;
    out->msgs_in = atomic_load_explicit(&sp->io.msgs_in, memory_order_relaxed);
    out->bytes_in = atomic_load_explicit(&sp->io.bytes_in, memory_order_relaxed);
    out->msgs_out = atomic_load_explicit(&sp->io.msgs_out, memory_order_relaxed);
    out->bytes_out = atomic_load_explicit(&sp->io.bytes_out, memory_order_relaxed);
    out->dropped = atomic_load_explicit(&sp->dropped, memory_order_relaxed);
    out->last_active = (int64_t)atomic_load_explicit(&sp->last_active, memory_order_relaxed);
    out->queued_out = atomic_load_explicit(&sp->queued_out, memory_order_relaxed);
    out->queued_out_max = atomic_load_explicit(&sp->queued_out_max, memory_order_relaxed);
    out->queued_in = atomic_load_explicit(&sp->queued_in, memory_order_relaxed);
    out->ring_fill = atomic_load_explicit(&sp->ring_fill, memory_order_relaxed);
    out->ring_size = atomic_load_explicit(&sp->ring_size, memory_order_relaxed);
    *sock = sp->sock;
    return 1;
}

/* The live peers, grouped by socket slot: peers[first[i] .. first[i+1]). */
static void group_peers(const struct snap *sn, ferry_peer_info *peers, uint32_t *first)
{
    static const uint32_t none = UINT32_MAX;
    uint32_t *of = malloc(FY_STAT_PEERS * sizeof *of);
    ferry_peer_info *tmp = malloc(FY_STAT_PEERS * sizeof *tmp);
    memset(first, 0, (FY_STAT_SOCKS + 1) * sizeof *first);
    if (of == NULL || tmp == NULL) {
        free(of);
        free(tmp);
        return;
    }
    for (uint32_t k = 0; k < FY_STAT_PEERS; k++) {
        of[k] = none;
        if (peer_read(sn, k, &tmp[k], &of[k]))
            first[of[k] + 1]++;
    }
    for (uint32_t i = 0; i < FY_STAT_SOCKS; i++)
        first[i + 1] += first[i];
    uint32_t fill[FY_STAT_SOCKS];
    memcpy(fill, first, sizeof fill);
    for (uint32_t k = 0; k < FY_STAT_PEERS; k++)
        if (of[k] != none)
            peers[fill[of[k]]++] = tmp[k];
    free(of);
    free(tmp);
}

/* The sockets of one file's snapshot. */
static int list_snap(const struct snap *sn, ferry_peer_info *peers,
                     int (*fn)(const ferry_sock_info *, void *), void *arg)
{
    const struct fy_stat_hdr *h = snap_hdr(sn);
    uint32_t first[FY_STAT_SOCKS + 1];
    group_peers(sn, peers, first);
    for (uint32_t i = 0; i < FY_STAT_SOCKS; i++) {
        size_t off = (size_t)((const unsigned char *)&fy_stat_socks(h)[i] - sn->buf);
        const struct fy_stat_sock *ss = (const struct fy_stat_sock *)(const void *)(sn->buf + off);
        if (atomic_load_explicit(&ss->live, memory_order_relaxed) != 1 || !slot_whole(sn, off))
            continue;
        ferry_sock_info info;
        memset(&info, 0, sizeof info);
        info.pid = h->pid;
        info.uid = h->uid;
        clean_text(info.command, h->command, sizeof info.command, 0);
        info.id = ss->id;
        info.type = ss->type;
        clean_text(info.endpoints, ss->endpoints, sizeof info.endpoints, 1);
        sock_counters(&info.stats, ss);
        info.peers = &peers[first[i]];
        info.npeers = first[i + 1] - first[i];
        for (size_t k = 0; k < info.npeers; k++) {
            info.stats.msgs_in += info.peers[k].msgs_in;
            info.stats.bytes_in += info.peers[k].bytes_in;
            info.stats.msgs_out += info.peers[k].msgs_out;
            info.stats.bytes_out += info.peers[k].bytes_out;
        }
        info.stats.peers = (uint32_t)info.npeers;
        int rc = fn(&info, arg);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Reads the file called name (of process pid) into sn; 0 when it is not
 * a regular file with one link and mode 0600, of the layout's size, owned
 * by the owner of the process it names, held by a live owner (its lock),
 * with a header that matches. The descriptor stays open for slot_whole. */
static int snap_read(const char *name, int pid, struct snap *sn)
{
    char path[300], proc[32];
    snprintf(path, sizeof path, "/dev/shm/%s", name);
    snprintf(proc, sizeof proc, "/proc/%d", pid);
    sn->fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (sn->fd < 0)
        return 0;
    struct stat st, ps;
    int ok = fstat(sn->fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_nlink == 1 &&
             (st.st_mode & 07777) == 0600 && (uint64_t)st.st_size == FY_STAT_SIZE &&
             stat(proc, &ps) == 0 && ps.st_uid == st.st_uid;
    if (ok && flock(sn->fd, LOCK_EX | LOCK_NB) == 0) { /* nobody holds it: stale */
        flock(sn->fd, LOCK_UN);
        ok = 0;
    }
    ok = ok && pread(sn->fd, sn->buf, FY_STAT_SIZE, 0) == (ssize_t)FY_STAT_SIZE &&
         header_ok(snap_hdr(sn), pid, &st) &&
         fy_proc_alive(snap_hdr(sn)->pid, snap_hdr(sn)->start_time);
    if (!ok) {
        close(sn->fd);
        sn->fd = -1;
    }
    return ok;
}

struct named {
    int pid;
    char name[64];
};

static int cmp_named(const void *a, const void *b)
{
    const struct named *x = a, *y = b;
    if (x->pid != y->pid)
        return (x->pid > y->pid) - (x->pid < y->pid);
    return strcmp(x->name, y->name);
}

/* The counters files' names, sorted by pid; *n of them. */
static struct named *file_names(size_t *n)
{
    size_t cap = 64;
    struct named *v = malloc(cap * sizeof *v);
    *n = 0;
    DIR *d = opendir("/dev/shm");
    if (v == NULL || d == NULL) {
        if (d)
            closedir(d);
        return v;
    }
    struct dirent *e;
    int pid;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (!fy_stat_name_pid(e->d_name, &pid) || len >= sizeof v->name)
            continue;
        if (*n == cap) {
            struct named *w = realloc(v, 2 * cap * sizeof *v);
            if (w == NULL)
                break;
            v = w;
            cap *= 2;
        }
        v[*n].pid = pid;
        memcpy(v[*n].name, e->d_name, len + 1);
        (*n)++;
    }
    closedir(d);
    qsort(v, *n, sizeof *v, cmp_named);
    return v;
}

int ferry_stats_list(int pid, int (*fn)(const ferry_sock_info *info, void *arg), void *arg)
{
    fy_err_clear();
    if (fn == NULL || pid < 0)
        return FERRY_EINVAL;
    fy_stat_sweep();
    size_t n = 0;
    struct named *names = file_names(&n);
    ferry_peer_info *peers = malloc(FY_STAT_PEERS * sizeof *peers);
    struct snap sn = {.buf = malloc(FY_STAT_SIZE), .fd = -1};
    int rc = 0;
    if (names == NULL || peers == NULL || sn.buf == NULL)
        rc = FERRY_ENOMEM;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (pid != 0 && names[i].pid != pid)
            continue;
        if (!snap_read(names[i].name, names[i].pid, &sn))
            continue;
        rc = list_snap(&sn, peers, fn, arg);
        close(sn.fd);
        sn.fd = -1;
    }
    free(sn.buf);
    free(peers);
    free(names);
    return rc;
}
