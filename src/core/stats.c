/*
 * stats.c - the owner's side of the counters file (stats.h): creating it
 * at the process's first socket, handing out slots, removing it at exit,
 * and sweeping the files of processes that died without removing theirs.
 *
 * Who owns a file is told by a lock, not by the pid in its name: the
 * owner holds a shared flock(2) on it for its life (the descriptor is
 * close-on-exec, so an exec'd program lets go too). A file nobody holds is
 * stale, whatever its name says: that holds across pid namespaces sharing
 * /dev/shm, where the name's pid means nothing to the sweeper. A file is
 * made unnamed (O_TMPFILE), locked, filled in, and only then linked to its
 * public name, so a sweeper never finds a public file not yet locked.
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
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Files a sweep looks at, at most: a directory flooded with names costs a
 * process's first socket a bounded time. */
#define SWEEP_MAX 256

static pthread_mutex_t stat_mtx = PTHREAD_MUTEX_INITIALIZER;
static struct fy_stat_hdr *page; /* this process's file, or NULL */
static pid_t page_pid;           /* the process that made it (a fork's child makes its own) */
static int page_fd = -1;         /* holds the shared lock */
static char page_path[64];
static int page_off;   /* FERRY_STATS=0, or the file could not be made */
static int page_users; /* sockets with a slot in it, until their memory goes */
static uint32_t next_sock_id;

/* fork(): the child must not inherit stat_mtx held by another thread. */
static void atfork_prepare(void) { pthread_mutex_lock(&stat_mtx); }
static void atfork_parent(void) { pthread_mutex_unlock(&stat_mtx); }
static void atfork_child(void) { pthread_mutex_unlock(&stat_mtx); }
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static void atfork_register(void) { pthread_atfork(atfork_prepare, atfork_parent, atfork_child); }

static int in_page(const void *p)
{
    return page != NULL && page_pid == getpid() && (const char *)p >= (const char *)page &&
           (const char *)p < (const char *)page + FY_STAT_SIZE;
}

static void remove_own_file(void)
{
    if (page != NULL && page_pid == getpid())
        unlink(page_path);
}

/* 1 when name is a public counters file name: the prefix, then a pid,
 * then nothing or "-N" (a second name when the first was taken). */
int fy_stat_name_pid(const char *name, int *pid)
{
    if (strncmp(name, FY_STAT_PREFIX, sizeof FY_STAT_PREFIX - 1) != 0)
        return 0;
    char *end;
    errno = 0;
    long v = strtol(name + sizeof FY_STAT_PREFIX - 1, &end, 10);
    if (errno || end == name + sizeof FY_STAT_PREFIX - 1 || v <= 0 || v > INT32_MAX)
        return 0;
    if (*end == '-' && end[1] >= '1' && end[1] <= '9' && end[2] == '\0')
        end += 2;
    if (*end != '\0')
        return 0;
    *pid = (int)v;
    return 1;
}

/* Removes path if nobody holds its lock and it is still the file we
 * opened (not one made under the same name since). */
static void sweep_one(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return;
    struct stat a, b;
    if (fstat(fd, &a) == 0 && S_ISREG(a.st_mode) && flock(fd, LOCK_EX | LOCK_NB) == 0 &&
        lstat(path, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino)
        unlink(path);
    close(fd); /* drops the lock */
}

void fy_stat_sweep(void)
{
    DIR *d = opendir("/dev/shm");
    if (d == NULL)
        return;
    struct dirent *e;
    int seen = 0, pid;
    while (seen < SWEEP_MAX && (e = readdir(d)) != NULL) {
        if (!fy_stat_name_pid(e->d_name, &pid) || pid == (int)getpid())
            continue;
        seen++;
        char path[300];
        snprintf(path, sizeof path, "/dev/shm/%s", e->d_name);
        sweep_one(path);
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
    h->uid = (uint32_t)geteuid();
    h->start_time = fy_proc_starttime(getpid());
    int fd = open("/proc/self/comm", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = read(fd, h->command, sizeof h->command - 1);
        close(fd);
        if (n > 0)
            h->command[strcspn(h->command, "\n")] = '\0';
    }
}

/* Makes the file unnamed (O_TMPFILE), locks and fills it, then gives it
 * the first free public name (another user may squat the plain one): a
 * sweeper never meets it unheld, and a maker that dies half-way leaves
 * nothing behind. The mapping, or NULL. */
static struct fy_stat_hdr *page_create(void)
{
    int fd = open("/dev/shm", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0)
        return NULL;
    void *map = MAP_FAILED;
    if (flock(fd, LOCK_SH) == 0 && fchmod(fd, 0600) == 0 && ftruncate(fd, FY_STAT_SIZE) == 0)
        map = mmap(NULL, FY_STAT_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map != MAP_FAILED) {
        fill_header(map);
        char self[64];
        snprintf(self, sizeof self, "/proc/self/fd/%d", fd);
        int linked = 0;
        for (int k = 0; k < 10 && !linked; k++) {
            if (k == 0)
                snprintf(page_path, sizeof page_path, "/dev/shm/" FY_STAT_PREFIX "%d",
                         (int)getpid());
            else
                snprintf(page_path, sizeof page_path, "/dev/shm/" FY_STAT_PREFIX "%d-%d",
                         (int)getpid(), k);
            linked = linkat(AT_FDCWD, self, AT_FDCWD, page_path, AT_SYMLINK_FOLLOW) == 0;
            if (!linked && errno == EEXIST) { /* a dead namesake's: swept if nobody holds it */
                sweep_one(page_path);
                linked = linkat(AT_FDCWD, self, AT_FDCWD, page_path, AT_SYMLINK_FOLLOW) == 0;
            }
        }
        if (!linked) {
            munmap(map, FY_STAT_SIZE);
            map = MAP_FAILED;
        }
    }
    if (map == MAP_FAILED) {
        close(fd);
        return NULL;
    }
    page_fd = fd;
    return map;
}

/* The file, made at the first socket. NULL when off. */
static struct fy_stat_hdr *page_get(void)
{
    pthread_once(&atfork_once, atfork_register);
    pthread_mutex_lock(&stat_mtx);
    if (page != NULL && page_pid != getpid()) {
        /* a fork's child: the parent's file and lock are not ours (the
         * inherited descriptor shares the parent's lock: drop ours) */
        if (page_fd >= 0)
            close(page_fd);
        page = NULL;
        page_fd = -1;
        page_off = 0;
        page_users = 0;
        next_sock_id = 0;
    }
    const char *env = getenv("FERRY_STATS");
    int make = page == NULL && !page_off && !(env != NULL && strcmp(env, "0") == 0);
    page_off = page == NULL; /* until it works */
    pthread_mutex_unlock(&stat_mtx);
    if (!make)
        return page;
    fy_stat_sweep(); /* without the lock: it opens files others made */
    struct fy_stat_hdr *h = page_create();
    pthread_mutex_lock(&stat_mtx);
    if (h != NULL && page == NULL) {
        page = h;
        page_pid = getpid();
        page_off = 0;
        static int registered;
        if (!registered && atexit(remove_own_file) == 0)
            registered = 1;
    } else if (h != NULL) { /* another thread made one meanwhile */
        munmap(h, FY_STAT_SIZE);
    }
    h = page;
    pthread_mutex_unlock(&stat_mtx);
    return h;
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
    struct fy_stat_hdr *h = page_get();
    pthread_mutex_lock(&stat_mtx);
    if (h != page || !in_page(h))
        h = NULL; /* gone with the last socket meanwhile: count in memory */
    uint32_t id = ++next_sock_id;
    for (uint32_t i = 0; h != NULL && i < FY_STAT_SOCKS && ss == NULL; i++)
        if (atomic_load_explicit(&fy_stat_socks(h)[i].live, memory_order_relaxed) == 0) {
            ss = &fy_stat_socks(h)[i];
            atomic_store_explicit(&ss->live, 2, memory_order_relaxed); /* taken, not listed */
        }
    if (h != NULL && ss == NULL)
        atomic_fetch_add_explicit(&h->unlisted_socks, 1, memory_order_relaxed);
    if (ss != NULL)
        page_users++;
    pthread_mutex_unlock(&stat_mtx);
    if (ss == NULL) /* counted in memory only */
        ss = calloc(1, sizeof *ss);
    else
        seq_begin(&ss->seq);
    if (ss == NULL)
        return NULL;
    if (in_page(ss)) /* the counters start from zero for the new socket */
        memset((char *)ss + offsetof(struct fy_stat_sock, retired), 0,
               sizeof *ss - offsetof(struct fy_stat_sock, retired));
    ss->id = id;
    ss->type = type;
    ss->endpoints[0] = '\0';
    if (in_page(ss)) {
        atomic_store_explicit(&ss->live, 1, memory_order_relaxed);
        seq_end(&ss->seq);
    }
    return ss;
}

/* Gives a slot back: a file slot of this process's file is freed; process
 * memory is freed; a slot of a parent's file (a fork's child) is left. */
static void slot_free(void *slot, _Atomic uint32_t *live, int heap)
{
    if (heap) {
        free(slot);
        return;
    }
    pthread_mutex_lock(&stat_mtx);
    if (in_page(slot))
        atomic_store_explicit(live, 0, memory_order_release);
    pthread_mutex_unlock(&stat_mtx);
}

void fy_stat_sock_close(struct fy_stat_sock *ss, int heap)
{
    if (ss != NULL && !heap)
        slot_free(ss, &ss->live, 0);
}

/* The last socket with a slot is gone: the file goes too (a process
 * without sockets is not listed and holds no descriptor for it); the next
 * socket makes a new one. */
void fy_stat_sock_release(struct fy_stat_sock *ss, int heap)
{
    if (ss == NULL)
        return;
    if (heap) {
        free(ss);
        return;
    }
    pthread_mutex_lock(&stat_mtx);
    if (in_page(ss) && --page_users == 0) {
        unlink(page_path);
        munmap(page, FY_STAT_SIZE);
        close(page_fd);
        page = NULL;
        page_fd = -1;
        page_off = 0;
    }
    pthread_mutex_unlock(&stat_mtx);
}

int fy_stat_is_heap(const void *slot)
{
    pthread_mutex_lock(&stat_mtx);
    int heap = !in_page(slot);
    pthread_mutex_unlock(&stat_mtx);
    return heap;
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
    if (ss != NULL && in_page(ss)) {
        struct fy_stat_peer *v = fy_stat_peers(page);
        for (uint32_t i = 0; i < FY_STAT_PEERS && sp == NULL; i++)
            if (atomic_load_explicit(&v[i].live, memory_order_relaxed) == 0) {
                sp = &v[i];
                atomic_store_explicit(&sp->live, 2, memory_order_relaxed); /* taken, not listed */
            }
        if (sp == NULL)
            atomic_fetch_add_explicit(&page->unlisted_peers, 1, memory_order_relaxed);
    }
    uint32_t idx = sp != NULL ? (uint32_t)(ss - fy_stat_socks(page)) : 0;
    pthread_mutex_unlock(&stat_mtx);
    if (sp == NULL)
        return calloc(1, sizeof *sp);
    seq_begin(&sp->seq);
    memset((char *)sp + offsetof(struct fy_stat_peer, io), 0,
           sizeof *sp - offsetof(struct fy_stat_peer, io));
    sp->sock = idx;
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

void fy_stat_peer_id(struct fy_stat_peer *sp, uint32_t id)
{
    seq_begin(&sp->seq);
    sp->id = id;
    seq_end(&sp->seq);
}

void fy_stat_peer_close(struct fy_stat_sock *ss, struct fy_stat_peer *sp, int heap)
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
    slot_free(sp, &sp->live, heap);
}
