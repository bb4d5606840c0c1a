/*
 * stats.c - the owner's side of the counters file (stats.h): creating it
 * at the process's first socket, handing out slots, removing it at exit.
 */
#include "stats.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define SLOT_HEAP 3u /* live: a slot in process memory (no file slot was free) */

#define STAT_SIZE FY_STAT_SIZE

static pthread_mutex_t stat_mtx = PTHREAD_MUTEX_INITIALIZER;
static struct fy_stat_hdr *page; /* this process's file, or NULL */
static pid_t page_pid;           /* the process that made it (a fork's child makes its own) */
static int page_off;             /* FERRY_STATS=0, or the file could not be made */
static uint32_t next_sock_id;

static struct fy_stat_sock *sock_slots(struct fy_stat_hdr *h) { return fy_stat_socks(h); }
static struct fy_stat_peer *peer_slots(struct fy_stat_hdr *h) { return fy_stat_peers(h); }

static void stat_path(char *buf, size_t len, int pid)
{
    snprintf(buf, len, "/dev/shm/" FY_STAT_PREFIX "%d", pid);
}

static void remove_own_file(void)
{
    if (page != NULL && page_pid == getpid()) {
        char path[64];
        stat_path(path, sizeof path, (int)page_pid);
        unlink(path);
    }
}

/* Removes the files of processes that died without removing theirs (a
 * SIGKILL): the pid in the name is dead, or it is alive but started after
 * the file was written (a recycled pid). Files we may not remove stay. */
void fy_stat_sweep(void)
{
    DIR *d = opendir("/dev/shm");
    if (d == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, FY_STAT_PREFIX, sizeof FY_STAT_PREFIX - 1) != 0)
            continue;
        char *end;
        long pid = strtol(e->d_name + sizeof FY_STAT_PREFIX - 1, &end, 10);
        if (*end != '\0' || pid <= 0 || pid > INT32_MAX || pid == (long)getpid())
            continue;
        char path[300];
        snprintf(path, sizeof path, "/dev/shm/%s", e->d_name);
        uint64_t started = 0;
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        if (fd >= 0) {
            struct fy_stat_hdr h;
            if (pread(fd, &h, sizeof h, 0) == (ssize_t)sizeof h &&
                memcmp(h.magic, FY_STAT_MAGIC, 8) == 0)
                started = h.start_time;
            close(fd);
        }
        if (!fy_proc_alive((pid_t)pid, started))
            unlink(path);
    }
    closedir(d);
}

static void fill_header(struct fy_stat_hdr *h)
{
    memcpy(h->magic, FY_STAT_MAGIC, 8);
    h->version = FY_STAT_VERSION;
    h->hdr_size = 4096;
    h->sock_size = sizeof(struct fy_stat_sock);
    h->peer_size = sizeof(struct fy_stat_peer);
    h->sock_slots = FY_STAT_SOCKS;
    h->peer_slots = FY_STAT_PEERS;
    h->pid = (int32_t)getpid();
    h->uid = (uint32_t)getuid();
    h->start_time = fy_proc_starttime(getpid());
    int fd = open("/proc/self/comm", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = read(fd, h->command, sizeof h->command - 1);
        close(fd);
        if (n > 0)
            h->command[strcspn(h->command, "\n")] = '\0';
    }
}

/* The file, made at the first socket (stat_mtx held). NULL when off. */
static struct fy_stat_hdr *page_get(void)
{
    if (page != NULL && page_pid == getpid())
        return page;
    if (page != NULL) { /* a fork's child: the parent's file is not ours */
        page = NULL;
        page_off = 0;
        next_sock_id = 0;
    }
    const char *env = getenv("FERRY_STATS");
    if (page_off || (env != NULL && strcmp(env, "0") == 0)) {
        page_off = 1;
        return NULL;
    }
    page_off = 1; /* until it works */
    fy_stat_sweep();
    char path[64];
    stat_path(path, sizeof path, (int)getpid());
    unlink(path); /* a dead namesake's (swept above unless it was not readable) */
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return NULL;
    void *map = MAP_FAILED;
    if (ftruncate(fd, STAT_SIZE) == 0)
        map = mmap(NULL, STAT_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (map == MAP_FAILED) {
        unlink(path);
        return NULL;
    }
    fill_header(map);
    page = map;
    page_pid = getpid();
    page_off = 0;
    static int registered;
    if (!registered && atexit(remove_own_file) == 0)
        registered = 1;
    return page;
}

static void seq_begin(_Atomic uint32_t *seq)
{
    atomic_fetch_add_explicit(seq, 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
}

static void seq_end(_Atomic uint32_t *seq)
{
    atomic_fetch_add_explicit(seq, 1, memory_order_release);
}

struct fy_stat_sock *fy_stat_sock_open(int type)
{
    struct fy_stat_sock *ss = NULL;
    pthread_mutex_lock(&stat_mtx);
    struct fy_stat_hdr *h = page_get();
    uint32_t id = ++next_sock_id;
    for (uint32_t i = 0; h != NULL && i < FY_STAT_SOCKS && ss == NULL; i++)
        if (atomic_load_explicit(&sock_slots(h)[i].live, memory_order_relaxed) == 0)
            ss = &sock_slots(h)[i];
    if (h != NULL && ss == NULL)
        atomic_fetch_add_explicit(&h->unlisted_socks, 1, memory_order_relaxed);
    pthread_mutex_unlock(&stat_mtx);
    if (ss == NULL) { /* counted in memory only */
        ss = calloc(1, sizeof *ss);
        if (ss == NULL)
            return NULL;
        atomic_store_explicit(&ss->live, SLOT_HEAP, memory_order_relaxed);
    } else {
        atomic_store_explicit(&ss->live, 2, memory_order_relaxed); /* taken, not listed yet */
        seq_begin(&ss->seq);
        /* the counters start from zero for the new socket */
        memset((char *)ss + offsetof(struct fy_stat_sock, retired), 0,
               sizeof *ss - offsetof(struct fy_stat_sock, retired));
    }
    ss->id = id;
    ss->type = type;
    ss->endpoints[0] = '\0';
    if (atomic_load_explicit(&ss->live, memory_order_relaxed) != SLOT_HEAP) {
        atomic_store_explicit(&ss->live, 1, memory_order_relaxed);
        seq_end(&ss->seq);
    }
    return ss;
}

/* Frees a slot: process memory is freed; a file slot is given back when
 * the file is this process's (a fork's child leaves its parent's alone). */
static void slot_free(void *slot, _Atomic uint32_t *live)
{
    if (atomic_load_explicit(live, memory_order_relaxed) == SLOT_HEAP) {
        free(slot);
        return;
    }
    pthread_mutex_lock(&stat_mtx);
    if (page != NULL && page_pid == getpid() && (char *)slot >= (char *)page &&
        (char *)slot < (char *)page + STAT_SIZE)
        atomic_store_explicit(live, 0, memory_order_release);
    pthread_mutex_unlock(&stat_mtx);
}

void fy_stat_sock_close(struct fy_stat_sock *ss)
{
    if (ss != NULL && atomic_load_explicit(&ss->live, memory_order_relaxed) != SLOT_HEAP)
        slot_free(ss, &ss->live);
}

void fy_stat_sock_release(struct fy_stat_sock *ss)
{
    if (ss != NULL && atomic_load_explicit(&ss->live, memory_order_relaxed) == SLOT_HEAP)
        free(ss);
}

void fy_stat_sock_endpoint(struct fy_stat_sock *ss, const char *how, const char *url)
{
    if (ss == NULL)
        return;
    seq_begin(&ss->seq);
    size_t used = strnlen(ss->endpoints, sizeof ss->endpoints);
    if (used + strlen(how) + strlen(url) + 3 <= sizeof ss->endpoints)
        snprintf(ss->endpoints + used, sizeof ss->endpoints - used, "%s%s %s", used ? "\n" : "",
                 how, url);
    seq_end(&ss->seq);
}

struct fy_stat_peer *fy_stat_peer_open(struct fy_stat_sock *ss, const char *transport,
                                       const char *addr, int pid, unsigned uid)
{
    struct fy_stat_peer *sp = NULL;
    pthread_mutex_lock(&stat_mtx);
    if (ss != NULL && atomic_load_explicit(&ss->live, memory_order_relaxed) != SLOT_HEAP &&
        page != NULL && page_pid == getpid()) {
        struct fy_stat_peer *v = peer_slots(page);
        for (uint32_t i = 0; i < FY_STAT_PEERS && sp == NULL; i++)
            if (atomic_load_explicit(&v[i].live, memory_order_relaxed) == 0)
                sp = &v[i];
        if (sp == NULL)
            atomic_fetch_add_explicit(&page->unlisted_peers, 1, memory_order_relaxed);
        else
            atomic_store_explicit(&sp->live, 2, memory_order_relaxed); /* taken, not listed yet */
    }
    pthread_mutex_unlock(&stat_mtx);
    if (sp == NULL) {
        if ((sp = calloc(1, sizeof *sp)) != NULL)
            atomic_store_explicit(&sp->live, SLOT_HEAP, memory_order_relaxed);
        return sp;
    }
    seq_begin(&sp->seq);
    memset((char *)sp + offsetof(struct fy_stat_peer, io), 0,
           sizeof *sp - offsetof(struct fy_stat_peer, io));
    sp->sock = (uint32_t)(ss - sock_slots(page));
    seq_end(&sp->seq);
    fy_stat_peer_describe(sp, transport, addr, pid, uid);
    atomic_store_explicit(&sp->live, 1, memory_order_release);
    return sp;
}

void fy_stat_peer_describe(struct fy_stat_peer *sp, const char *transport, const char *addr,
                           int pid, unsigned uid)
{
    seq_begin(&sp->seq);
    sp->pid = pid;
    sp->uid = uid;
    snprintf(sp->transport, sizeof sp->transport, "%s", transport ? transport : "?");
    snprintf(sp->addr, sizeof sp->addr, "%s", addr ? addr : "");
    seq_end(&sp->seq);
}

void fy_stat_peer_close(struct fy_stat_sock *ss, struct fy_stat_peer *sp)
{
    if (sp == NULL)
        return;
    if (ss != NULL) {
        fy_stat_add(&ss->retired.msgs_in, atomic_load(&sp->io.msgs_in));
        fy_stat_add(&ss->retired.bytes_in, atomic_load(&sp->io.bytes_in));
        fy_stat_add(&ss->retired.msgs_out, atomic_load(&sp->io.msgs_out));
        fy_stat_add(&ss->retired.bytes_out, atomic_load(&sp->io.bytes_out));
        fy_stat_add(&ss->retired_dropped, atomic_load(&sp->dropped));
    }
    slot_free(sp, &sp->live);
}
