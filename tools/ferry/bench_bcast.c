/*
 * bench_bcast.c - `ferry bench bcast`: large messages from one PUB to 1, 4,
 * 8 and 16 SUB processes on shm://, written once into the broadcast pool
 * (FERRY_OPT_SHM_POOL) against copied into each subscriber's ring (the pool
 * off), the two interleaved.
 *
 * What is measured is the cost of delivering every message to every
 * subscriber, so nothing may be dropped: the publisher keeps at most
 * BCAST_WINDOW messages ahead of the slowest subscriber (each subscriber
 * counts what it has taken in a shared page). Its CPU time is taken inside
 * ferry_send only (the thread's clock around each call), so the waits for
 * the window are not charged to it. Each subscriber reads one byte per
 * 4 KiB page of each message, as a consumer that looks at the whole frame
 * would fault its pages in.
 */
#include "bench.h"

#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define BCAST_WINDOW 2
#define BCAST_MAX_SUBS 16

struct bcast_shared {
    struct {
        _Alignas(64) _Atomic long taken;
    } sub[BCAST_MAX_SUBS];
};

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void bcast_sub(const char *url, struct bcast_shared *sh, int idx, long total, int ready_fd)
{
    ferry_socket *s = NULL;
    if (ferry_socket_open(&s, FERRY_SUB) != 0)
        _exit(1);
    ferry_setopt(s, FERRY_OPT_SUBSCRIBE, "", 0);
    ferry_setopt_int(s, FERRY_OPT_SPIN, 0); /* sixteen of them share a CPU: they sleep */
    ferry_setopt_int(s, FERRY_OPT_RCVTIMEO, 30000);
    ferry_setopt_int(s, FERRY_OPT_RING_SIZE, 4 << 20);
    if (ferry_dial(s, url) != 0 || write(ready_fd, "r", 1) != 1)
        _exit(2);
    volatile unsigned char sink = 0;
    for (long got = 0; got < total;) {
        ferry_msg *m = NULL;
        if (ferry_msg_recv(s, &m, 0) != 0)
            _exit(3); /* a message was lost or the publisher died: no figure */
        const unsigned char *d = ferry_msg_data(m);
        for (size_t k = 0; k < ferry_msg_size(m); k += 4096)
            sink ^= d[k];
        ferry_msg_free(m);
        atomic_store_explicit(&sh->sub[idx].taken, ++got, memory_order_release);
    }
    (void)sink;
    ferry_close(s);
    _exit(0);
}

static long slowest(struct bcast_shared *sh, int nsubs)
{
    long m = atomic_load_explicit(&sh->sub[0].taken, memory_order_acquire);
    for (int i = 1; i < nsubs; i++) {
        long t = atomic_load_explicit(&sh->sub[i].taken, memory_order_acquire);
        m = t < m ? t : m;
    }
    return m;
}

/* Waits until the slowest subscriber has taken at least n (up to 60 s);
 * 0, or -1 when it never does. */
static int wait_taken(struct bcast_shared *sh, int nsubs, long n)
{
    uint64_t deadline = bench_now_ns() + 60000000000ull;
    while (slowest(sh, nsubs) < n) {
        if (bench_now_ns() > deadline)
            return -1;
        sched_yield();
    }
    return 0;
}

/* One run: iters messages of size bytes to nsubs subscribers, the pool
 * on or off. *cpu: the publisher's CPU in ferry_send per message; *rate:
 * messages per second each subscriber took. 0, or -1. */
static int bcast_once(size_t size, int nsubs, int pool, long iters, double *cpu, double *rate)
{
    static unsigned seq;
    char url[128];
    snprintf(url, sizeof url, "shm://bench-bc-%d-%u", (int)getpid(), seq++);
    struct bcast_shared *sh =
        mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED)
        return -1;
    int ready[2];
    if (pipe(ready) != 0) {
        munmap(sh, sizeof *sh);
        return -1;
    }
    pid_t pids[BCAST_MAX_SUBS];
    fflush(stdout);
    for (int i = 0; i < nsubs; i++) { /* forked before the PUB exists */
        if ((pids[i] = fork()) == 0) {
            close(ready[0]);
            bench_pin(1 + i % (bench_ncpus > 1 ? bench_ncpus - 1 : 1));
            bcast_sub(url, sh, i, (long)((16u << 20) / size) + BCAST_WINDOW + 1 + iters, ready[1]);
        }
    }
    close(ready[1]);
    char c;
    int ok = 1;
    for (int i = 0; i < nsubs; i++)
        ok &= read(ready[0], &c, 1) == 1;
    close(ready[0]);
    ferry_socket *pub = bench_open_ferry(FERRY_PUB, 0);
    ferry_setopt_int(pub, FERRY_OPT_SHM_POOL, pool ? 16 << 20 : 0);
    ferry_setopt_int(pub, FERRY_OPT_RING_SIZE, 4 << 20);
    ferry_setopt_int(pub, FERRY_OPT_SNDHWM, 1000);
    ok = ok && ferry_listen(pub, url) == 0 && ferry_wait_peers(pub, nsubs, 30000) == 0;
    unsigned char *buf = malloc(size);
    uint64_t spent = 0, t0 = 0;
    if (buf != NULL)
        memset(buf, 'b', size);
    /* The first lap of the pool and of each ring faults their pages in (a
     * fresh memfd's pages exist once touched): not counted. */
    long warm = (long)((16u << 20) / size) + BCAST_WINDOW + 1;
    for (long i = 0; ok && buf != NULL && i < warm + iters; i++) {
        if (wait_taken(sh, nsubs, i - BCAST_WINDOW + 1) != 0) {
            ok = 0;
            break;
        }
        if (i == warm)
            t0 = bench_now_ns();
        uint64_t c0 = thread_cpu_ns();
        ok = ferry_send(pub, buf, size, 0) == 0;
        if (i >= warm)
            spent += thread_cpu_ns() - c0;
    }
    ok = ok && buf != NULL && wait_taken(sh, nsubs, warm + iters) == 0;
    uint64_t wall = bench_now_ns() - t0;
    int64_t dropped = 0;
    ferry_getopt_int(pub, FERRY_OPT_DROPPED, &dropped);
    ferry_close(pub);
    for (int i = 0; i < nsubs; i++) {
        if (!ok)
            kill(pids[i], SIGKILL);
        bench_reap(pids[i]);
    }
    free(buf);
    munmap(sh, sizeof *sh);
    if (!ok) {
        fprintf(stderr,
                "ferry: bench: PUB/SUB %zu B to %d over shm://: not every message was "
                "delivered (%lld dropped)\n",
                size, nsubs, (long long)dropped);
        return -1;
    }
    *cpu = (double)spent / (double)iters;
    *rate = (double)iters / ((double)wall / 1e9);
    return 0;
}

static void add_row(const char *label, size_t size, int nsubs, int pool, int reps, double *rate,
                    double *cpu, double *ratio, double base_cpu)
{
    struct result *r = bench_add_result();
    double sp;
    *r = (struct result){.system = "ferry",
                         .transport = "shm",
                         .pattern = pool ? "pubsub_pool" : "pubsub_copy",
                         .size = size,
                         .wait = "sleep",
                         .subscribers = nsubs,
                         .label = label,
                         .metric = "msgs_per_s",
                         .reps = reps};
    r->value = bench_median(rate, reps, &r->spread);
    r->cpu_ns = bench_median(cpu, reps, &sp);
    if (pool) {
        r->base = base_cpu;
        r->ratio = bench_median(ratio, reps, &sp);
    }
}

void bench_bcast_suite(int quick, int reps)
{
    static const size_t sizes[] = {64 << 10, 1 << 20};
    static const int fans[] = {1, 4, 8, 16};
    static char labels[2][4][2][80];
    if (reps > 5)
        reps = 5;
    for (int z = 0; z < 2; z++) {
        for (int f = 0; f < 4; f++) {
            double rc[16], cc[16], rp[16], cp[16], ratio[16], sp;
            const char *sz = sizes[z] == 1 << 20 ? "1 MiB" : "64 KiB";
            snprintf(labels[z][f][0], 80, "ferry shm: PUB/SUB %s to %d, copies", sz, fans[f]);
            snprintf(labels[z][f][1], 80, "ferry shm: PUB/SUB %s to %d, pool", sz, fans[f]);
            bench_progress(labels[z][f][1]);
            long iters = sizes[z] == 1 << 20 ? (quick ? 20 : 300) : (quick ? 100 : 3000);
            int n = 0;
            for (int k = 0; k < reps; k++) { /* interleaved: copies, pool, copies, ... */
                if (bcast_once(sizes[z], fans[f], 0, iters, &cc[n], &rc[n]) != 0 ||
                    bcast_once(sizes[z], fans[f], 1, iters, &cp[n], &rp[n]) != 0)
                    continue;
                ratio[n] = cc[n] > 0 ? cp[n] / cc[n] : 0;
                n++;
            }
            if (n == 0)
                continue;
            double copy_cpu[16];
            memcpy(copy_cpu, cc, sizeof cc);
            double base = bench_median(copy_cpu, n, &sp);
            add_row(labels[z][f][0], sizes[z], fans[f], 0, n, rc, cc, NULL, 0);
            add_row(labels[z][f][1], sizes[z], fans[f], 1, n, rp, cp, ratio, base);
        }
    }
}
