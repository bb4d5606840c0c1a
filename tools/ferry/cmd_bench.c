/*
 * cmd_bench.c - `ferry bench`: ferry's speed beside the machine's limits,
 * measured in the same run so that the machine's noise cancels out.
 *
 * Every latency figure comes from a log-linear histogram of every sample
 * (about 3% resolution), never from averages; every figure is the median
 * of several repetitions, reported with its spread ((max - min) / median).
 * The two processes of a measurement are pinned to two different CPUs when
 * the machine has two or more.
 *
 * The suites are listed in bench_help below. This file runs them and
 * holds what they share (timing, histograms, processes); the broadcast
 * pool's suite is in bench_bcast.c, the router's and the poller's in
 * bench_router.c and bench_poller.c, the peers' backends (libzmq, nng) in
 * bench_peers.c, and the table, JSON and SVG in bench_report.c.
 */
#include "bench.h"
#include "cli.h"

#include <getopt.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char bench_help[] =
    "usage: ferry bench [SUITE...] [--quick] [--json FILE] [--plot FILE.svg] [--size LIST]\n"
    "                   [--reps N]\n"
    "\n"
    "Measure ferry against the machine's limits, raw kernel IPC and its peers, in\n"
    "one run. SUITEs (default: all):\n"
    "  limit   cache-line ping-pong between two processes, memcpy bandwidth\n"
    "  raw     pipe, Unix socket, TCP loopback (NODELAY), eventfd-signalled shared\n"
    "          memory: ping-pong latency; pipe, Unix socket, TCP: streaming\n"
    "  shm     ferry shm://: REQ/REP busy-polling (rings lazy, and prefaulted),\n"
    "          sleeping, and as by default (adaptive spin), PUB/SUB fan-out to\n"
    "          1, 4, 16 subscribers, PUSH/PULL copying and zero-copy by size.\n"
    "          Other rows set FERRY_OPT_SPIN: busy-polling, or 0 (sleep)\n"
    "  bcast   ferry shm://: PUB/SUB 64 KiB and 1 MiB to 1, 4, 8, 16 subscribers,\n"
    "          every message delivered, with the broadcast pool against copies\n"
    "          into each ring (interleaved): the publisher's CPU per message\n"
    "  router  ferry DEALER/ROUTER round trip against REQ/REP (interleaved) on\n"
    "          shm, ipc, tcp; a ROUTER serving 16 DEALER processes, ferry and\n"
    "          libzmq interleaved\n"
    "  proxy   a tcp:// PUB through ferry_proxy to 8 SUBs on shm, against 8 SUBs\n"
    "          on tcp directly (per-subscriber rate, publisher CPU); PUSH->proxy->\n"
    "          PULL on shm against PUSH->PULL; the chain on tcp, ferry_proxy\n"
    "          against libzmq's zmq_proxy (interleaved)\n"
    "  poller  a REP waiting in a ferry_poller that also holds 1,000 idle\n"
    "          sockets, against the same poller holding the REP alone\n"
    "          (interleaved), on shm and tcp\n"
    "  ipc, tcp  ferry, libzmq and nng: REQ/REP round trip, PUSH/PULL by size\n"
    "  curve   tcp:// with CURVE, ferry and libzmq: REQ/REP round trip against\n"
    "          raw TCP, PUSH/PULL 64 B and 64 KiB (the two interleaved)\n"
    "  inproc  libzmq's in-process transport (for reference: ferry has shm://)\n"
    "libzmq (libzmq5) and nng (libnng1) are loaded with dlopen when installed\n"
    "(`make bench` installs them); ferry never links them. The table gives each\n"
    "ferry figure's ratio to the limit, to the raw socket of its transport and\n"
    "to the best peer on the same transport. Round trips on shm, ipc and tcp are\n"
    "measured pair by pair with their baseline (cache-line ping-pong, pipe, raw\n"
    "socket): the ratio is the median of the pairs' (p50 and p99); a busy-poll\n"
    "faster than the limit beside it is flagged as a measurement fault.\n"
    "\n"
    "  --quick        fewer samples, sizes 64 B and 64 KiB (under 20 s)\n"
    "  --json FILE    also write the results as JSON ('-' for stdout)\n"
    "  --plot FILE    also draw latency percentiles and throughput by size (SVG)\n"
    "  --size LIST    message sizes in bytes, comma-separated\n"
    "                 (default 64,1024,65536,1048576)\n"
    "  --reps N       repetitions per figure (default 5, quick 3)\n"
    "  -h, --help\n"
    "\n"
    "Latency is measured per round trip with CLOCK_MONOTONIC and kept in a\n"
    "histogram; one-way latency is the round trip / 2. Each figure is the\n"
    "median of the repetitions; 'spread' is (max - min) / median. Processes are\n"
    "pinned to CPUs 0 and 1 when there are two or more.\n";

/* --- timing and histograms ------------------------------------------------ */

uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static unsigned hist_index(uint64_t v)
{
    if (v < 64)
        return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v) - 5u; /* v >> e in [32, 64) */
    unsigned i = 64 + (e - 1) * HIST_SUB + (unsigned)((v >> e) - 32);
    return i < HIST_BUCKETS ? i : HIST_BUCKETS - 1;
}

static uint64_t hist_value(unsigned i)
{
    if (i < 64)
        return i;
    unsigned e = (i - 64) / HIST_SUB + 1, sub = (i - 64) % HIST_SUB + 32;
    return ((uint64_t)sub << e) + ((uint64_t)1 << e) / 2; /* bucket middle */
}

void bench_hist_add(struct hist *h, uint64_t v)
{
    h->b[hist_index(v)]++;
    h->n++;
    if (v > h->max)
        h->max = v;
}

double bench_hist_pct(const struct hist *h, double p)
{
    uint64_t want = (uint64_t)(p * (double)h->n), seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen > want)
            return (double)hist_value(i);
    }
    return (double)h->max;
}

/* --- results ------------------------------------------------------------------ */

struct result bench_results[BENCH_MAX_RESULTS];
int bench_nresults;

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of v[0..n) and spread (max - min) / median. */
double bench_median(double *v, int n, double *spread)
{
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    double m = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
    *spread = m > 0 ? (v[n - 1] - v[0]) / m : 0;
    return m;
}

struct result *bench_add_result(void)
{
    static struct result spare; /* past the table's end: measured, not reported */
    struct result *r =
        bench_nresults < BENCH_MAX_RESULTS ? &bench_results[bench_nresults++] : &spare;
    memset(r, 0, sizeof *r);
    return r;
}

/* --- processes ----------------------------------------------------------------- */

int bench_ncpus;

void bench_pin(int cpu)
{
    if (bench_ncpus < 2)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu % bench_ncpus, &set);
    sched_setaffinity(0, sizeof set, &set);
}

pid_t bench_spawn(void (*fn)(void *), void *arg)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        bench_pin(1);
        fn(arg);
        _exit(0);
    }
    return pid;
}

int bench_reap(pid_t pid)
{
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

void bench_progress(const char *what)
{
    if (isatty(2))
        fprintf(stderr, "\r  %-60s", what);
}

/* --- limit: cache-line ping-pong, memcpy ------------------------------------------ */

struct cl_shared {
    _Alignas(64) volatile uint64_t ping;
    _Alignas(64) volatile uint64_t pong;
};

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

long bench_iters;
static int g_raw;          /* raw: which kernel IPC (RAW_*) */
static size_t g_size = 64; /* message size */
static struct cl_shared *g_cl;

static void cl_child(void *arg)
{
    (void)arg;
    for (long i = 1; i <= bench_iters; i++) {
        while (__atomic_load_n(&g_cl->ping, __ATOMIC_ACQUIRE) != (uint64_t)i)
            cpu_relax();
        __atomic_store_n(&g_cl->pong, (uint64_t)i, __ATOMIC_RELEASE);
    }
}

static void cl_once(struct hist *h)
{
    g_cl = mmap(NULL, sizeof *g_cl, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    memset((void *)g_cl, 0, sizeof *g_cl);
    pid_t pid = bench_spawn(cl_child, NULL);
    for (long i = 1; i <= bench_iters; i++) {
        uint64_t t0 = bench_now_ns();
        __atomic_store_n(&g_cl->ping, (uint64_t)i, __ATOMIC_RELEASE);
        while (__atomic_load_n(&g_cl->pong, __ATOMIC_ACQUIRE) != (uint64_t)i)
            cpu_relax();
        if (i > bench_iters / 10)
            bench_hist_add(h, bench_now_ns() - t0);
    }
    bench_reap(pid);
    munmap((void *)g_cl, sizeof *g_cl);
}

void bench_set_round_trip(struct result *r, int reps, double *p50, double *p99, double *p999,
                          double *mx)
{
    double sp;
    r->p50 = bench_median(p50, reps, &r->spread);
    r->p99 = bench_median(p99, reps, &sp);
    r->p999 = bench_median(p999, reps, &sp);
    r->max = bench_median(mx, reps, &sp);
    r->reps = reps;
    r->metric = "latency_ns";
    r->latency = "round_trip";
}

/* Runs a latency measurement reps times and records the medians. */
void bench_latency(struct result *r, int reps, void (*once)(struct hist *))
{
    double p50[16], p99[16], p999[16], mx[16];
    for (int k = 0; k < reps; k++) {
        struct hist *h = calloc(1, sizeof *h);
        once(h);
        p50[k] = bench_hist_pct(h, 0.50);
        p99[k] = bench_hist_pct(h, 0.99);
        p999[k] = bench_hist_pct(h, 0.999);
        mx[k] = (double)h->max;
        free(h);
    }
    bench_set_round_trip(r, reps, p50, p99, p999, mx);
}

/* A baseline a latency row is measured against, rep by rep: its own run
 * (once), with its own iterations and raw kind (the globals once reads). */
struct baseline {
    const char *name; /* "limit", "pipe", "unix", "tcp" */
    void (*once)(struct hist *);
    long iters;
    int raw;
};

static void hist_run(void (*once)(struct hist *), double *p50, double *p99, double *p999,
                     double *mx)
{
    struct hist *h = calloc(1, sizeof *h);
    once(h);
    *p50 = bench_hist_pct(h, 0.50);
    *p99 = bench_hist_pct(h, 0.99);
    if (p999)
        *p999 = bench_hist_pct(h, 0.999);
    if (mx)
        *mx = (double)h->max;
    free(h);
}

/* bench_latency(), but with the baseline run before each repetition: this VM
 * moves between states that change both 2-4x, so a ratio means something
 * only between two runs of the same state. r gets its own medians and the
 * medians of the pairs' ratios (p50 to p50, p99 to p99), their spread. */
static void latency_vs(struct result *r, int reps, void (*once)(struct hist *),
                       const struct baseline *b)
{
    double p50[16], p99[16], p999[16], mx[16], b50[16], b99[16], q50[16], q99[16];
    for (int k = 0; k < reps; k++) {
        long iters = bench_iters;
        int raw = g_raw;
        size_t size = g_size;
        bench_iters = b->iters;
        g_raw = b->raw;
        g_size = 64;
        hist_run(b->once, &b50[k], &b99[k], NULL, NULL);
        bench_iters = iters;
        g_raw = raw;
        g_size = size;
        hist_run(once, &p50[k], &p99[k], &p999[k], &mx[k]);
        q50[k] = b50[k] > 0 ? p50[k] / b50[k] : 0;
        q99[k] = b99[k] > 0 ? p99[k] / b99[k] : 0;
    }
    double sp;
    bench_set_round_trip(r, reps, p50, p99, p999, mx);
    r->vs = b->name;
    r->vs_p50 = bench_median(b50, reps, &sp);
    r->vs_p99 = bench_median(b99, reps, &sp);
    r->vs_ratio = bench_median(q50, reps, &r->vs_spread);
    r->vs_ratio_p99 = bench_median(q99, reps, &sp);
}

void bench_versus(struct result *r, int reps, void (*run)(struct hist *, int), int base_arg,
                  int arg)
{
    double p50[16], p99[16], p999[16], mx[16], base[16], ratio[16], sp;
    for (int k = 0; k < reps; k++) {
        struct hist *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
        run(a, base_arg);
        run(b, arg);
        base[k] = bench_hist_pct(a, 0.50);
        p50[k] = bench_hist_pct(b, 0.50);
        p99[k] = bench_hist_pct(b, 0.99);
        p999[k] = bench_hist_pct(b, 0.999);
        mx[k] = (double)b->max;
        ratio[k] = base[k] > 0 ? p50[k] / base[k] : 0;
        free(a);
        free(b);
    }
    bench_set_round_trip(r, reps, p50, p99, p999, mx);
    r->base = bench_median(base, reps, &sp);
    r->ratio = bench_median(ratio, reps, &sp);
}

/* memcpy of blocks of `block` bytes, walking through a `span`-byte source
 * and destination (64 MiB: DRAM; 4 MiB: about what a ring keeps hot). */
static void memcpy_bw(struct result *r, int reps, int quick, size_t block, size_t span)
{
    char *a = malloc(span), *b = malloc(span);
    memset(a, 1, span);
    memset(b, 2, span);
    double v[16];
    uint64_t total = quick ? (256u << 20) : (1024u << 20);
    for (int k = 0; k < reps; k++) {
        uint64_t t0 = bench_now_ns(), done = 0;
        size_t off = 0;
        while (done < total) {
            memcpy(b + off, a + off, block);
            __asm__ volatile("" ::"r"(a), "r"(b) : "memory");
            off = off + block >= span ? 0 : off + block;
            done += block;
        }
        v[k] = (double)done / ((double)(bench_now_ns() - t0) / 1e9);
    }
    r->value = bench_median(v, reps, &r->spread);
    r->reps = reps;
    r->metric = "bytes_per_s";
    free(a);
    free(b);
}

/* --- raw: kernel IPC ping-pong -----------------------------------------------------
 *
 * Each raw transport gives the parent an fd pair (parent reads rd[0] and
 * writes wr[0]; the child reads rd[1] and writes wr[1]); the child echoes
 * g_size bytes. */

enum { RAW_UNIX, RAW_PIPE, RAW_TCP, RAW_EVENTFD };
static int g_rd[2], g_wr[2];
static volatile char *g_evshm; /* eventfd kind: the message lives here */

int bench_full_read(int fd, char *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, buf + got, len - got);
        if (n <= 0)
            return -1;
        got += (size_t)n;
    }
    return 0;
}

static void raw_child(void *arg)
{
    (void)arg;
    char buf[65536];
    for (long i = 0; i < bench_iters; i++) {
        if (g_raw == RAW_EVENTFD) {
            uint64_t v;
            if (read(g_rd[1], &v, sizeof v) != sizeof v)
                _exit(1);
            memcpy(buf, (const char *)g_evshm, g_size);   /* take the message */
            memcpy((char *)g_evshm + 65536, buf, g_size); /* answer in place */
            if (write(g_wr[1], &v, sizeof v) != sizeof v)
                _exit(1);
            continue;
        }
        if (bench_full_read(g_rd[1], buf, g_size) != 0 ||
            write(g_wr[1], buf, g_size) != (ssize_t)g_size)
            _exit(1);
    }
}

/* Sets up the fds for one measurement; returns 0 or -1. */
static int raw_setup(void)
{
    int a[2], b[2];
    switch (g_raw) {
    case RAW_UNIX:
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, a) != 0)
            return -1;
        g_rd[0] = g_wr[0] = a[0];
        g_rd[1] = g_wr[1] = a[1];
        return 0;
    case RAW_PIPE: /* parent writes p2c, reads c2p */
        if (pipe(a) != 0 || pipe(b) != 0)
            return -1;
        g_wr[0] = a[1];
        g_rd[1] = a[0];
        g_wr[1] = b[1];
        g_rd[0] = b[0];
        return 0;
    case RAW_EVENTFD: {
        int e1 = eventfd(0, EFD_CLOEXEC), e2 = eventfd(0, EFD_CLOEXEC);
        if (e1 < 0 || e2 < 0)
            return -1;
        g_wr[0] = g_rd[1] = e1;
        g_wr[1] = g_rd[0] = e2;
        g_evshm = mmap(NULL, 2 * 65536, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        return g_evshm == MAP_FAILED ? -1 : 0;
    }
    default: { /* TCP over loopback, TCP_NODELAY both ways */
        int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t sl = sizeof sa;
        if (l < 0 || bind(l, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(l, 1) != 0 ||
            getsockname(l, (struct sockaddr *)&sa, &sl) != 0)
            return -1;
        int c = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(c, (struct sockaddr *)&sa, sizeof sa) != 0)
            return -1;
        int srv = accept(l, NULL, NULL);
        close(l);
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        setsockopt(srv, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        g_rd[0] = g_wr[0] = c;
        g_rd[1] = g_wr[1] = srv;
        return 0;
    }
    }
}

static void raw_close(int side)
{
    close(g_rd[side]);
    if (g_wr[side] != g_rd[side])
        close(g_wr[side]);
}

static void raw_once(struct hist *h)
{
    if (raw_setup() != 0)
        return;
    pid_t pid = bench_spawn(raw_child, NULL);
    if (g_raw != RAW_EVENTFD) /* the child's ends: its death is our end of file */
        raw_close(1);
    char buf[65536];
    memset(buf, 7, sizeof buf);
    for (long i = 0; i < bench_iters; i++) {
        uint64_t t0 = bench_now_ns();
        if (g_raw == RAW_EVENTFD) {
            uint64_t v = 1;
            memcpy((char *)g_evshm, buf, g_size);
            if (write(g_wr[0], &v, sizeof v) != sizeof v || read(g_rd[0], &v, sizeof v) != sizeof v)
                break;
            memcpy(buf, (const char *)g_evshm + 65536, g_size);
        } else if (write(g_wr[0], buf, g_size) != (ssize_t)g_size ||
                   bench_full_read(g_rd[0], buf, g_size) != 0) {
            break;
        }
        if (i > bench_iters / 10)
            bench_hist_add(h, bench_now_ns() - t0);
    }
    raw_close(0);
    bench_reap(pid);
    if (g_raw == RAW_EVENTFD)
        raw_close(1);
    if (g_raw == RAW_EVENTFD)
        munmap((void *)g_evshm, 2 * 65536);
}

/* eventfd-signalled shared memory, streaming: a ring of slots in a shared
 * mapping; the producer copies a message into a slot and adds 1 to the data
 * eventfd; the consumer reads the eventfd (the count of new messages),
 * copies them out and adds their count to the ack eventfd, which the
 * producer reads when the ring is full. The simplest honest design, with
 * one system call per message on the producer's side. */
static char *g_ring;
static size_t g_slots;

static size_t ring_slots(void)
{
    size_t k = (4u << 20) / g_size;
    return k < 2 ? 2 : k > 4096 ? 4096 : k;
}

static void raw_stream_child(void *arg);

static void evring_child(void)
{
    char *buf = malloc(g_size);
    long got = 0;
    while (got < bench_iters) {
        uint64_t n;
        if (read(g_rd[1], &n, sizeof n) != sizeof n)
            _exit(1);
        for (uint64_t k = 0; k < n; k++, got++)
            memcpy(buf, g_ring + (size_t)(got % (long)g_slots) * g_size, g_size);
        if (write(g_wr[1], &n, sizeof n) != sizeof n)
            _exit(1);
    }
    free(buf);
}

static double evring_once(void)
{
    int e1 = eventfd(0, EFD_CLOEXEC), e2 = eventfd(0, EFD_CLOEXEC);
    g_slots = ring_slots();
    g_ring =
        mmap(NULL, g_slots * g_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (e1 < 0 || e2 < 0 || g_ring == MAP_FAILED)
        return 0;
    g_wr[0] = g_rd[1] = e1; /* data: producer -> consumer */
    g_wr[1] = g_rd[0] = e2; /* acks: consumer -> producer */
    pid_t pid = bench_spawn(raw_stream_child, NULL);
    char *buf = malloc(g_size);
    memset(buf, 7, g_size);
    long acked = 0;
    uint64_t t0 = bench_now_ns(), one = 1;
    for (long i = 0; i < bench_iters; i++) {
        while (i - acked >= (long)g_slots) { /* full: wait for the consumer */
            uint64_t n;
            if (read(g_rd[0], &n, sizeof n) != sizeof n)
                break;
            acked += (long)n;
        }
        memcpy(g_ring + (size_t)(i % (long)g_slots) * g_size, buf, g_size);
        if (write(g_wr[0], &one, sizeof one) != sizeof one)
            break;
    }
    while (acked < bench_iters) { /* the consumer has them all */
        uint64_t n;
        if (read(g_rd[0], &n, sizeof n) != sizeof n)
            break;
        acked += (long)n;
    }
    double secs = (double)(bench_now_ns() - t0) / 1e9;
    bench_reap(pid);
    close(e1);
    close(e2);
    munmap(g_ring, g_slots * g_size);
    free(buf);
    return (double)bench_iters / secs;
}

/* Streaming: the parent writes bench_iters messages of g_size bytes, the child
 * reads them all (each message read whole) and answers one byte. */
static void raw_stream_child(void *arg)
{
    (void)arg;
    if (g_raw == RAW_EVENTFD) {
        evring_child();
        return;
    }
    char *buf = malloc(g_size);
    for (int lap = 0; lap < 2; lap++) { /* a lap to warm up, then the timed one */
        for (long i = 0; i < bench_iters; i++)
            if (bench_full_read(g_rd[1], buf, g_size) != 0)
                _exit(1);
        if (write(g_wr[1], lap ? "k" : "w", 1) != 1)
            _exit(1);
    }
    free(buf);
}

/* One lap of a raw stream: bench_iters writes of g_size bytes. */
static void raw_write_lap(const char *buf)
{
    for (long i = 0; i < bench_iters; i++) {
        size_t off = 0;
        while (off < g_size) {
            ssize_t n = write(g_wr[0], buf + off, g_size - off);
            if (n <= 0)
                return;
            off += (size_t)n;
        }
    }
}

/* Messages in one lap of a stream row: 64 MiB (quick) or 256 MiB of them,
 * within 200 and 300,000 (2,000,000). */
static long stream_iters(int quick, size_t size)
{
    uint64_t total = quick ? (64u << 20) : (256u << 20);
    long n = (long)(total / size), most = quick ? 300000 : 2000000;
    return n > most ? most : n < 200 ? 200 : n;
}

static double raw_stream_once(void)
{
    if (g_raw == RAW_EVENTFD)
        return evring_once();
    if (raw_setup() != 0)
        return 0;
    pid_t pid = bench_spawn(raw_stream_child, NULL);
    raw_close(1); /* the child's ends: its death is our end of file */
    char *buf = malloc(g_size);
    memset(buf, 7, g_size);
    /* Streams are timed from a warm start, as a long-lived one runs: the
     * first lap (untimed) pays each side's first touches of its buffers,
     * which on this VM cost ferry's 64 KiB stream half its rate over its
     * first 64 MiB (docs/benchmarks.md). Every stream row does the same. */
    raw_write_lap(buf);
    char c;
    if (read(g_rd[0], &c, 1) != 1 || c != 'w') {
        raw_close(0);
        bench_reap(pid);
        free(buf);
        return 0;
    }
    uint64_t t0 = bench_now_ns();
    raw_write_lap(buf);
    if (read(g_rd[0], &c, 1) != 1)
        c = 0;
    double secs = (double)(bench_now_ns() - t0) / 1e9;
    raw_close(0);
    bench_reap(pid);
    free(buf);
    return c == 'k' && secs > 0 ? (double)bench_iters / secs : 0;
}

/* --- shm: ferry REQ/REP and PUSH/PULL -------------------------------------------------- */

char bench_url[128];
static int g_spin_us;
int bench_pipe[2];
static int g_zero_copy;

/* shm://: the rings populated at connection set-up (FERRY_OPT_RING_PREFAULT) */
static int g_prefault;

ferry_socket *bench_open_ferry(int type, int spin)
{
    ferry_socket *s;
    if (ferry_socket_open(&s, type) != 0) {
        fprintf(stderr, "ferry: bench: %s\n", ferry_errdetail());
        _exit(1);
    }
    ferry_setopt_int(s, FERRY_OPT_SPIN, spin);
    ferry_setopt_int(s, FERRY_OPT_RCVTIMEO, 30000);
    ferry_setopt_int(s, FERRY_OPT_SNDTIMEO, 30000);
    ferry_setopt_int(s, FERRY_OPT_SNDHWM, 0);
    ferry_setopt_int(s, FERRY_OPT_RCVHWM, 0);
    ferry_setopt_int(s, FERRY_OPT_RING_SIZE, 4 << 20);
    ferry_setopt_int(s, FERRY_OPT_RING_PREFAULT, g_prefault);
    return s;
}

static void rep_child(void *arg)
{
    (void)arg;
    ferry_socket *s = bench_open_ferry(FERRY_REP, g_spin_us);
    if (ferry_listen(s, bench_url) != 0)
        _exit(2);
    char one = 'L';
    if (write(bench_pipe[1], &one, 1) != 1)
        _exit(3);
    char buf[65536];
    size_t n;
    for (long i = 0; i < bench_iters; i++) {
        if (ferry_recv(s, buf, sizeof buf, &n, 0) != 0 || ferry_send(s, buf, n, 0) != 0)
            _exit(4);
    }
    ferry_close(s);
}

static void reqrep_once(struct hist *h)
{
    static unsigned seq;
    snprintf(bench_url, sizeof bench_url, "shm://bench-rr-%d-%u", (int)getpid(), seq++);
    if (pipe(bench_pipe) != 0)
        return;
    pid_t pid = bench_spawn(rep_child, NULL);
    close(bench_pipe[1]); /* only the child writes: its death is our end of file */
    bench_pipe[1] = -1;
    char c;
    if (read(bench_pipe[0], &c, 1) != 1) {
        bench_reap(pid);
        close(bench_pipe[0]);
        return;
    }
    ferry_socket *s = bench_open_ferry(FERRY_REQ, g_spin_us);
    ferry_dial(s, bench_url);
    char buf[65536];
    memset(buf, 7, g_size);
    size_t n;
    for (long i = 0; i < bench_iters; i++) {
        uint64_t t0 = bench_now_ns();
        if (ferry_send(s, buf, g_size, 0) != 0 || ferry_recv(s, buf, sizeof buf, &n, 0) != 0)
            break;
        if (i > bench_iters / 10)
            bench_hist_add(h, bench_now_ns() - t0);
    }
    ferry_close(s);
    bench_reap(pid);
    close(bench_pipe[0]);
    close(bench_pipe[1]);
}

static void pull_child(void *arg)
{
    (void)arg;
    ferry_socket *s = bench_open_ferry(FERRY_PULL, g_spin_us);
    if (ferry_listen(s, bench_url) != 0)
        _exit(2);
    char one = 'L';
    if (write(bench_pipe[1], &one, 1) != 1)
        _exit(3);
    volatile unsigned char sink = 0;
    unsigned char *buf = malloc(g_size ? g_size : 1);
    for (long i = 0; i < bench_iters; i++) {
        if (!g_zero_copy) { /* copying: the message is copied out */
            size_t n;
            if (ferry_recv(s, buf, g_size, &n, 0) != 0)
                _exit(4);
            continue;
        }
        ferry_msg *m;
        if (ferry_msg_recv(s, &m, 0) != 0)
            _exit(4);
        sink ^= *(unsigned char *)ferry_msg_data(m); /* read in place */
        ferry_msg_free(m);
    }
    free(buf);
    (void)sink;
    if (write(bench_pipe[1], &one, 1) != 1)
        _exit(5);
    ferry_close(s);
}

/* --- a proxy in between -------------------------------------------------- */

static int g_pp_proxy;     /* pushpull_once: through a ferry_proxy process */
static char g_px_in[256];  /* where the proxy's frontend listens */
static char g_px_out[256]; /* where its backend dials (or, fan-out, listens) */
static int g_px_peers;     /* fan-out: subscribers to wait for before starting */

/* The proxy process: PULL->PUSH (g_px_peers 0) or XSUB->XPUB. It runs
 * until killed; it says 'p' on bench_pipe once its backend has its peers.
 * Free to run on every CPU: it is a third party to the two it joins. */
static void proxy_child(void *arg)
{
    (void)arg;
    cpu_set_t all;
    CPU_ZERO(&all);
    for (int i = 0; i < bench_ncpus; i++)
        CPU_SET(i, &all);
    sched_setaffinity(0, sizeof all, &all);
    int fan = g_px_peers > 0;
    ferry_socket *front = bench_open_ferry(fan ? FERRY_XSUB : FERRY_PULL, 0);
    ferry_socket *back = bench_open_ferry(fan ? FERRY_XPUB : FERRY_PUSH, 0);
    /* The fan-out's proxy populates its rings at set-up, as `ferry proxy`
     * does by default (cmd_proxy.c): its baseline, tcp:// directly, takes
     * no page faults either. The chain's is lazy, as the direct shm://
     * pair it is measured against. */
    ferry_setopt_int(back, FERRY_OPT_RING_PREFAULT, fan);
    if (fan ? (ferry_dial(front, g_px_in) != 0 || ferry_listen(back, g_px_out) != 0 ||
               ferry_wait_peers(back, g_px_peers, 30000) != 0)
            : (ferry_listen(front, g_px_in) != 0 || ferry_dial(back, g_px_out) != 0 ||
               ferry_wait_peers(back, 1, 30000) != 0))
        _exit(2);
    if (write(bench_pipe[1], "p", 1) != 1)
        _exit(3);
    close(bench_pipe[1]); /* the parent's EOF is the other child's death */
    ferry_proxy(front, back, NULL, NULL);
    _exit(4);
}

static double pushpull_once(void)
{
    static unsigned seq;
    snprintf(bench_url, sizeof bench_url, "shm://bench-pp-%d-%u", (int)getpid(), seq++);
    if (pipe(bench_pipe) != 0)
        return 0;
    pid_t px = -1;
    pid_t pid = bench_spawn(pull_child, NULL);
    char c;
    if (read(bench_pipe[0], &c, 1) != 1) {
        close(bench_pipe[1]);
        bench_reap(pid);
        close(bench_pipe[0]);
        return 0;
    }
    /* pusher -> g_px_in: proxy -> bench_url: puller. The proxy starts once the
     * puller listens and says so once connected to it: the clock must not
     * run while its dialer waits to retry. */
    if (g_pp_proxy) {
        snprintf(g_px_in, sizeof g_px_in, "%s-in", bench_url);
        snprintf(g_px_out, sizeof g_px_out, "%s", bench_url);
        g_px_peers = 0;
        px = bench_spawn(proxy_child, NULL);
        if (read(bench_pipe[0], &c, 1) != 1) {
            kill(pid, SIGKILL);
            bench_reap(pid);
            bench_reap(px);
            close(bench_pipe[0]);
            close(bench_pipe[1]);
            return 0;
        }
    }
    close(bench_pipe[1]); /* only the children write: the puller's death is our end of file */
    bench_pipe[1] = -1;
    ferry_socket *s = bench_open_ferry(FERRY_PUSH, g_spin_us);
    ferry_dial(s, g_pp_proxy ? g_px_in : bench_url);
    ferry_wait_peers(s, 1, 30000);
    unsigned char *buf = malloc(g_size);
    memset(buf, 7, g_size);
    uint64_t t0 = bench_now_ns();
    long sent = 0;
    for (long i = 0; i < bench_iters; i++, sent++) {
        if (g_zero_copy) {
            ferry_msg *m;
            if (ferry_msg_alloc(s, &m, g_size) != 0)
                break;
            /* a producer that writes its data in place: here only a header */
            memcpy(ferry_msg_data(m), &i, g_size < sizeof i ? g_size : sizeof i);
            if (ferry_msg_send(s, m, 0) != 0)
                break;
        } else if (ferry_send(s, buf, g_size, 0) != 0) {
            break;
        }
    }
    int all = read(bench_pipe[0], &c, 1) == 1; /* the puller has them all */
    double secs = (double)(bench_now_ns() - t0) / 1e9;
    ferry_close(s);
    bench_reap(pid);
    if (px > 0) {
        kill(px, SIGKILL); /* a proxy runs until stopped; ferry survives a kill */
        bench_reap(px);
    }
    free(buf);
    close(bench_pipe[0]);
    return all && sent == bench_iters && secs > 0 ? (double)bench_iters / secs : 0;
}

/* shm:// PUSH/PULL at one size, copying and zero-copy (written and read in
 * place), repetition by repetition: the zero-copy row's ratio is the
 * median of the pairs'. The receiver busy-polls. */
static void shm_pushpull_size(int quick, int reps, size_t size, int i)
{
    static char labels[2][8][80];
    struct result *r[2];
    double v[2][16], ratio[16], sp;
    g_size = size;
    g_spin_us = 1000000;
    uint64_t total = quick ? (256u << 20) : (1024u << 20);
    bench_iters = (long)(total / size);
    if (bench_iters > (quick ? 500000 : 10000000))
        bench_iters = quick ? 500000 : 10000000;
    if (bench_iters < 2000)
        bench_iters = 2000;
    for (int zc = 0; zc < 2; zc++) {
        snprintf(labels[zc][i], sizeof labels[zc][i], "ferry shm: PUSH/PULL %zu B%s", size,
                 zc ? ", zero-copy" : "");
        r[zc] = bench_add_result();
        *r[zc] = (struct result){.system = "ferry",
                                 .transport = "shm",
                                 .pattern = zc ? "pushpull_zerocopy" : "pushpull",
                                 .size = size,
                                 .wait = "spin",
                                 .metric = "msgs_per_s",
                                 .reps = reps,
                                 .label = labels[zc][i]};
    }
    bench_progress(labels[0][i]);
    for (int k = 0; k < reps; k++) {
        for (int zc = 0; zc < 2; zc++) {
            g_zero_copy = zc;
            v[zc][k] = pushpull_once();
        }
        ratio[k] = v[0][k] > 0 ? v[1][k] / v[0][k] : 0;
    }
    g_zero_copy = 0;
    for (int zc = 0; zc < 2; zc++)
        r[zc]->value = bench_median(v[zc], reps, &r[zc]->spread);
    r[1]->base = r[0]->value;
    r[1]->ratio = bench_median(ratio, reps, &sp);
}

/* PUB/SUB fan-out: one PUB sends bench_iters 64-byte messages as fast as it
 * can (it never blocks) to n SUBs in other processes; each SUB reports how
 * many it got and over how long. Rate is per subscriber; drops are what
 * the PUB skipped for a full subscriber (SNDHWM 1000). */
struct fan_report {
    long got;
    uint64_t ns;
};

static int g_fan_prefixes; /* 0: subscribe to everything; else "p00000"... */
static double g_pub_rate;  /* the publisher's own rate in the last fanout() */

static int g_fan_hwm = 1000; /* the PUB's SNDHWM (0: nothing dropped, all delivered) */

static void fanout_sub(int ready_fd, int res_fd)
{
    ferry_socket *s;
    if (ferry_socket_open(&s, FERRY_SUB) != 0)
        _exit(1);
    if (g_fan_prefixes == 0)
        ferry_setopt(s, FERRY_OPT_SUBSCRIBE, "", 0);
    for (int i = 0; i < g_fan_prefixes; i++) {
        char p[16];
        int n = snprintf(p, sizeof p, "p%05d", i);
        ferry_setopt(s, FERRY_OPT_SUBSCRIBE, p, (size_t)n);
    }
    ferry_setopt_int(s, FERRY_OPT_RCVTIMEO, 300);
    ferry_setopt_int(s, FERRY_OPT_SPIN, 0); /* as the other rows: sleeping, not spinning */
    ferry_setopt_int(s, FERRY_OPT_RING_SIZE, 4 << 20);
    if (g_fan_hwm == 0)
        ferry_setopt_int(s, FERRY_OPT_RCVHWM, 0); /* nothing dropped on the way */
    ferry_dial(s, bench_url);
    if (write(ready_fd, "r", 1) != 1)
        _exit(2);
    char buf[128];
    size_t n;
    struct fan_report rep = {0, 0};
    uint64_t first = 0, last = 0;
    int idle = 0;
    for (;;) {
        int rc = ferry_recv(s, buf, sizeof buf, &n, 0);
        if (rc == FERRY_ETIMEDOUT && (rep.got > 0 || ++idle >= 100))
            break; /* the stream ended, or never came (30 s) */
        if (rc != 0)
            continue;
        last = bench_now_ns();
        if (rep.got++ == 0)
            first = last;
    }
    rep.ns = last - first;
    if (write(res_fd, &rep, sizeof rep) != sizeof rep)
        _exit(3);
    ferry_close(s);
}

static const char *g_fan_scheme = "shm";
static int g_fan_proxy;     /* fanout: a tcp:// PUB, a proxy, the SUBs on shm:// */
static double g_pub_cpu_ns; /* the publisher process's CPU per message, last fanout() */

uint64_t bench_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void fanout(struct result *r, int reps, int nsubs)
{
    double rate[16], drop[16];
    r->metric = "msgs_per_s"; /* set before anything can fail */
    r->subscribers = nsubs;
    for (int k = 0; k < reps; k++) {
        rate[k] = drop[k] = 0;
        static unsigned seq;
        char pub_url[128];
        if (g_fan_proxy)
            snprintf(bench_url, sizeof bench_url, "shm://bench-pxf-%d-%u", (int)getpid(), seq++);
        else if (strcmp(g_fan_scheme, "tcp") == 0)
            snprintf(bench_url, sizeof bench_url, "tcp://127.0.0.1:%d", cli_free_port());
        else if (strcmp(g_fan_scheme, "ipc") == 0)
            snprintf(bench_url, sizeof bench_url, "ipc:///tmp/ferry-bench-ps-%d-%u.sock",
                     (int)getpid(), seq++);
        else
            snprintf(bench_url, sizeof bench_url, "shm://bench-ps-%d-%u", (int)getpid(), seq++);
        int ready[2], res[2];
        if (pipe(ready) != 0)
            break;
        if (pipe(res) != 0) {
            close(ready[0]);
            close(ready[1]);
            break;
        }
        pid_t pids[16];
        fflush(stdout);
        for (int i = 0; i < nsubs; i++) { /* forked before the PUB exists */
            if ((pids[i] = fork()) == 0) {
                bench_pin(1 + i % (bench_ncpus > 1 ? bench_ncpus - 1 : 1));
                fanout_sub(ready[1], res[1]);
                _exit(0);
            }
        }
        close(ready[1]); /* only the subscribers write: their deaths end our reads */
        close(res[1]);
        char c;
        int ok = 1;
        for (int i = 0; i < nsubs; i++)
            ok &= read(ready[0], &c, 1) == 1;
        snprintf(pub_url, sizeof pub_url, "%s", bench_url);
        pid_t px = -1;
        if (g_fan_proxy && ok) { /* the subscribers wait at the proxy's XPUB */
            snprintf(pub_url, sizeof pub_url, "tcp://127.0.0.1:%d", cli_free_port());
            snprintf(g_px_in, sizeof g_px_in, "%s", pub_url);
            snprintf(g_px_out, sizeof g_px_out, "%s", bench_url);
            g_px_peers = nsubs;
            ok = pipe(bench_pipe) == 0;
            if (ok) {
                px = bench_spawn(proxy_child, NULL);
                close(bench_pipe[1]);
                ok = read(bench_pipe[0], &c, 1) == 1;
                close(bench_pipe[0]);
            }
        }
        ferry_socket *pub = bench_open_ferry(FERRY_PUB, 0);
        ferry_setopt_int(pub, FERRY_OPT_SNDHWM, g_fan_hwm);
        ferry_setopt_int(pub, FERRY_OPT_SUB_MAX, g_fan_prefixes + 1);
        ok = ok && ferry_listen(pub, pub_url) == 0 &&
             ferry_wait_peers(pub, g_fan_proxy ? 1 : nsubs, 30000) == 0;
        if (!ok) { /* the subscribers give up on their own (fanout_sub) */
            fprintf(stderr, "ferry: bench: PUB/SUB over %s: the subscribers never all joined\n",
                    g_fan_scheme);
            ferry_close(pub);
            for (int i = 0; i < nsubs; i++)
                bench_reap(pids[i]);
            if (px > 0) {
                kill(px, SIGKILL);
                bench_reap(px);
            }
            close(ready[0]);
            close(res[0]);
            continue;
        }
        char msg[64];
        memset(msg, 'm', sizeof msg);
        uint64_t t0 = bench_now_ns(), c0 = bench_cpu_ns();
        for (long i = 0; i < bench_iters; i++) {
            if (g_fan_prefixes > 0) { /* every message matches one of the prefixes */
                char topic[16];
                snprintf(topic, sizeof topic, "p%05ld", i % g_fan_prefixes);
                memcpy(msg, topic, 6);
            }
            ferry_send(pub, msg, sizeof msg, 0);
        }
        g_pub_rate = (double)bench_iters / ((double)(bench_now_ns() - t0) / 1e9);
        double rates[16], total = 0;
        for (int i = 0; i < nsubs; i++) {
            struct fan_report rep = {0, 1};
            if (read(res[0], &rep, sizeof rep) != sizeof rep)
                rep.got = 0;
            rates[i] = rep.ns ? (double)rep.got / ((double)rep.ns / 1e9) : 0;
            total += (double)rep.got;
        }
        /* the publisher's CPU until every subscriber is done: its I/O thread's
         * writes included */
        g_pub_cpu_ns = (double)(bench_cpu_ns() - c0) / (double)bench_iters;
        double sp;
        rate[k] = bench_median(rates, nsubs, &sp);
        drop[k] = 1.0 - total / ((double)bench_iters * nsubs);
        ferry_close(pub);
        for (int i = 0; i < nsubs; i++)
            bench_reap(pids[i]);
        if (px > 0) {
            kill(px, SIGKILL);
            bench_reap(px);
        }
        close(ready[0]);
        close(res[0]);
    }
    double sp;
    r->value = bench_median(rate, reps, &r->spread);
    r->dropped = bench_median(drop, reps, &sp);
    r->reps = reps;
}

/* A PUB's cost of matching: one subscriber holding 10,000 prefixes against
 * the same with one, the publisher's own rate, interleaved (one, many, one,
 * many...) so that drift of the machine falls on both; the ratio is the
 * median of the pairs' ratios. */
static void prefix_cost(struct result *r, int reps, int many)
{
    double one[16], lots[16], ratio[16], sp;
    for (int k = 0; k < reps; k++) {
        struct result tmp;
        g_fan_prefixes = 1;
        fanout(&tmp, 1, 1);
        one[k] = g_pub_rate;
        g_fan_prefixes = many;
        fanout(&tmp, 1, 1);
        lots[k] = g_pub_rate;
        ratio[k] = one[k] > 0 ? lots[k] / one[k] : 0;
    }
    g_fan_prefixes = 0;
    r->metric = "msgs_per_s";
    r->value = bench_median(lots, reps, &r->spread);
    r->base = bench_median(one, reps, &sp);
    r->ratio = bench_median(ratio, reps, &sp);
    r->reps = reps;
}

/* --- tcp/ipc: ferry and its peers (bench_peers.c) ------------------------------------ */

static const struct backend *g_be; /* bench_ferry, bench_zmq or bench_nng */
static const char *g_tr;           /* "tcp", "ipc" or "inproc" */
static char g_ep[256];

/* The listening side (a child): binds, hands its endpoint to the parent
 * through the pipe, then echoes (REP) or drains (PULL). */
static void net_child(void *arg)
{
    int type = *(int *)arg;
    void *s = g_be->open(type);
    char url[128], ep[256] = "";
    static unsigned seq;
    if (strcmp(g_tr, "tcp") == 0)
        snprintf(url, sizeof url, "tcp://127.0.0.1:*");
    else if (strcmp(g_tr, "inproc") == 0)
        snprintf(url, sizeof url, "inproc://bench-%u", seq++);
    else
        snprintf(url, sizeof url, "ipc:///tmp/ferry-bench-%d-%u.sock", (int)getpid(), seq++);
    if (g_be->listen(s, url, ep, sizeof ep) != 0)
        _exit(2);
    if (write(bench_pipe[1], ep, sizeof ep) != (ssize_t)sizeof ep)
        _exit(3);
    char *buf = malloc(65536);
    /* a stream's receiver: a warm-up lap, then the timed one (raw_stream_once) */
    for (int lap = type == FERRY_PULL ? 0 : 1; lap < 2; lap++) {
        for (long i = 0; i < bench_iters; i++) {
            if (g_be->recv(s, buf, 65536) != 0)
                _exit(4);
            if (type == FERRY_REP && g_be->send(s, buf, g_size) != 0)
                _exit(4);
        }
        if (type == FERRY_PULL && write(bench_pipe[1], lap ? "D" : "W", 1) != 1)
            _exit(5);
    }
    free(buf);
    g_be->close(s);
    if (strcmp(g_tr, "ipc") == 0)
        unlink(url + 6);
}

/* inproc: the listening side is a thread of this process, not a child */
static pthread_t g_thr;
static void *net_thread(void *arg)
{
    bench_pin(1);
    net_child(arg);
    bench_pin(0);
    return NULL;
}

/* nng refuses to run in a child forked after the parent used it ("not
 * fork-reentrant safe"), so its listening side is one process forked
 * before this process first touches nng, serving one job after another. */
struct nn_job {
    int type;
    long iters;
    size_t size;
    char tr[8];
};
static int nn_cmd[2] = {-1, -1}, nn_out[2] = {-1, -1};
static pid_t nn_server;

static void net_child(void *arg);

static void nn_server_main(void *arg)
{
    (void)arg;
    close(nn_cmd[1]);
    close(nn_out[0]);
    struct nn_job j;
    static char tr[8];
    while (bench_full_read(nn_cmd[0], (char *)&j, sizeof j) == 0) {
        memcpy(tr, j.tr, sizeof tr);
        g_tr = tr;
        bench_iters = j.iters;
        g_size = j.size;
        g_be = &bench_nng;
        bench_pipe[1] = nn_out[1];
        net_child(&j.type);
    }
}

static void nn_server_start(void)
{
    if (nn_server > 0 || pipe(nn_cmd) != 0 || pipe(nn_out) != 0)
        return;
    nn_server = bench_spawn(nn_server_main, NULL);
    close(nn_cmd[0]);
    close(nn_out[1]);
}

static void nn_server_stop(void)
{
    if (nn_server <= 0)
        return;
    close(nn_cmd[1]);
    close(nn_out[0]);
    bench_reap(nn_server);
    nn_server = 0;
}

static void net_reap(pid_t pid)
{
    if (pid == -2) /* the nng server: nothing to reap per job */
        return;
    if (pid > 0) {
        bench_reap(pid);
        return;
    }
    pthread_join(g_thr, NULL);
    if (bench_zmq_inproc)
        bench_zmq_term();
}

static void *net_connect(int child_type, pid_t *pid)
{
    static int ct;
    ct = child_type;
    if (pipe(bench_pipe) != 0)
        return NULL;
    if (g_be == &bench_nng) {
        close(bench_pipe[0]);
        close(bench_pipe[1]);
        bench_pipe[0] = dup(nn_out[0]);
        bench_pipe[1] = -1;
        *pid = -2;
        struct nn_job j = {.type = ct, .iters = bench_iters, .size = g_size};
        snprintf(j.tr, sizeof j.tr, "%s", g_tr);
        if (write(nn_cmd[1], &j, sizeof j) != (ssize_t)sizeof j)
            return NULL;
    } else if (strcmp(g_tr, "inproc") == 0) {
        *pid = -1;
        if (pthread_create(&g_thr, NULL, net_thread, &ct) != 0)
            return NULL;
    } else {
        *pid = bench_spawn(net_child, &ct);
        /* only the child writes: if it dies, our reads see end of file */
        close(bench_pipe[1]);
        bench_pipe[1] = -1;
    }
    if (bench_full_read(bench_pipe[0], g_ep, sizeof g_ep) != 0) {
        fprintf(stderr, "ferry: bench: %s %s: the listening side failed\n", g_be->name, g_tr);
        net_reap(*pid);
        return NULL;
    }
    void *s = g_be->open(child_type == FERRY_REP ? FERRY_REQ : FERRY_PUSH);
    if (g_be->dial(s, g_ep) != 0)
        return NULL;
    return s;
}

static void net_reqrep_once(struct hist *h)
{
    pid_t pid;
    void *s = net_connect(FERRY_REP, &pid);
    if (s == NULL)
        return;
    char buf[65536];
    memset(buf, 7, g_size);
    for (long i = 0; i < bench_iters; i++) {
        uint64_t t0 = bench_now_ns();
        if (g_be->send(s, buf, g_size) != 0 || g_be->recv(s, buf, sizeof buf) != 0)
            break;
        if (i > bench_iters / 10)
            bench_hist_add(h, bench_now_ns() - t0);
    }
    g_be->close(s);
    net_reap(pid);
    close(bench_pipe[0]);
    close(bench_pipe[1]);
}

static double net_pushpull_once(void)
{
    pid_t pid;
    void *s = net_connect(FERRY_PULL, &pid);
    if (s == NULL)
        return 0;
    unsigned char *buf = malloc(g_size);
    memset(buf, 7, g_size);
    uint64_t t0 = 0;
    char c = 0;
    for (int lap = 0; lap < 2; lap++) { /* untimed warm-up, then timed (raw_stream_once) */
        if (lap == 1)
            t0 = bench_now_ns();
        for (long i = 0; i < bench_iters; i++)
            if (g_be->send(s, buf, g_size) != 0)
                break;
        if (read(bench_pipe[0], &c, 1) != 1) /* the puller has them all */
            c = 0;
    }
    double secs = (double)(bench_now_ns() - t0) / 1e9;
    g_be->close(s);
    net_reap(pid);
    free(buf);
    close(bench_pipe[0]);
    close(bench_pipe[1]);
    return (double)bench_iters / secs;
}

/* Sizes a throughput run by time, not by count: a short pilot gives the
 * rate, and each repetition then lasts about `budget` seconds (between
 * 200 messages and the cap), so a slow peer does not stretch the run. */
static long g_budget_ms = 500;
static void size_by_time(double (*once)(void), long cap)
{
    long pilot = cap < 2000 ? cap : 2000;
    bench_iters = pilot;
    double rate = once();
    double want = rate * (double)g_budget_ms / 1000.0;
    bench_iters = want > (double)cap ? cap : want < 200 ? 200 : (long)want;
}

static void net_throughput(struct result *r, int reps)
{
    double v[16];
    size_by_time(net_pushpull_once, bench_iters);
    for (int k = 0; k < reps; k++)
        v[k] = net_pushpull_once();
    r->value = bench_median(v, reps, &r->spread);
    r->reps = reps;
    r->metric = "msgs_per_s";
}

/* The curve suite's two libraries, in the order their rows are printed. */
static const struct backend *const bes[2] = {&bench_ferry, &bench_zmq};
static const char *const sys[2] = {"ferry", "libzmq"};

/* One PUSH/PULL size, ferry and libzmq repetition by repetition, so a
 * change of the VM's state between them moves both alike. */
static void curve_throughput(int quick, int reps, int nb, size_t size, char (*labels)[3][80], int i)
{
    struct result *r[2];
    long iters[2];
    double v[2][16];
    g_size = size;
    for (int b = 0; b < nb; b++) {
        snprintf(labels[b][1 + i], 80, "%s tcp CURVE: PUSH/PULL %zu B", sys[b], size);
        bench_progress(labels[b][1 + i]);
        g_be = bes[b];
        bench_iters = (long)((quick ? (64u << 20) : (256u << 20)) / size);
        if (bench_iters > (quick ? 300000 : 2000000))
            bench_iters = quick ? 300000 : 2000000;
        size_by_time(net_pushpull_once, bench_iters);
        iters[b] = bench_iters;
        r[b] = bench_add_result();
        *r[b] = (struct result){.system = sys[b],
                                .transport = "curve",
                                .pattern = "pushpull",
                                .size = size,
                                .label = labels[b][1 + i]};
    }
    for (int k = 0; k < reps; k++)
        for (int b = 0; b < nb; b++) {
            g_be = bes[b];
            bench_iters = iters[b];
            v[b][k] = net_pushpull_once();
        }
    for (int b = 0; b < nb; b++) {
        r[b]->value = bench_median(v[b], reps, &r[b]->spread);
        r[b]->reps = reps;
        r[b]->metric = "msgs_per_s";
    }
}

/* CURVE on tcp://, ferry and libzmq: the REQ/REP round trip against the
 * raw TCP ping-pong (interleaved), PUSH/PULL 64 B and 64 KiB. Their
 * transport reads "curve", so each ferry row is set against libzmq's, and
 * against ferry's plain tcp rows of the same run in docs/benchmarks.md. */
static void curve_suite(int quick, int reps, long lat_iters)
{
    static char labels[2][3][80];
    static const size_t sizes[] = {64, 65536};
    bench_curve_on(1); /* the keys, made before any peer process is forked */
    g_tr = "tcp";
    int nb = bench_zmq_load() ? 2 : 1;
    for (int b = 0; b < nb; b++) {
        g_be = bes[b];
        snprintf(labels[b][0], 80, "%s tcp CURVE: REQ/REP 64 B round trip", sys[b]);
        bench_progress(labels[b][0]);
        bench_iters = lat_iters / 10;
        g_size = 64;
        struct result *r = bench_add_result();
        *r = (struct result){.system = sys[b],
                             .transport = "curve",
                             .pattern = "reqrep",
                             .size = 64,
                             .label = labels[b][0]};
        const struct baseline base = {"tcp", raw_once, lat_iters / 10, RAW_TCP};
        latency_vs(r, reps, net_reqrep_once, &base);
    }
    for (int i = 0; i < 2; i++)
        curve_throughput(quick, reps, nb, sizes[i], labels, i);
    bench_curve_on(0);
}

/* One transport: ferry and the peers that speak it (libzmq, nng; loaded
 * when installed), REQ/REP round trip and PUSH/PULL by message size. */
static void net_suite(const char *tr, int quick, int reps, long lat_iters, const size_t *sizes,
                      int nsizes)
{
    static char labels[3][3][10][80];
    static const char *sysname[3] = {"ferry", "libzmq", "nng"};
    int t = strcmp(tr, "tcp") == 0 ? 0 : strcmp(tr, "ipc") == 0 ? 1 : 2;
    for (int b = 0; b < 3; b++) {
        if (b == 0 && t == 2)
            continue; /* ferry has no inproc:// (shm:// is its in-host transport) */
        if (b == 1 && !bench_zmq_load())
            continue;
        if (b == 2 && (t == 2 || !bench_nng_load()))
            continue;
        if (b == 2)
            nn_server_start();
        g_be = b == 0 ? &bench_ferry : b == 1 ? &bench_zmq : &bench_nng;
        g_tr = tr;
        bench_zmq_inproc = t == 2;
        snprintf(labels[t][b][0], 80, "%s %s: REQ/REP 64 B round trip", sysname[b], tr);
        bench_progress(labels[t][b][0]);
        bench_iters = lat_iters / 10;
        g_size = 64;
        struct result *r = bench_add_result();
        *r = (struct result){.system = sysname[b],
                             .transport = tr,
                             .pattern = "reqrep",
                             .size = 64,
                             .label = labels[t][b][0]};
        if (t < 2) { /* against the raw socket of the transport, pair by pair */
            const struct baseline base = {t == 0 ? "tcp" : "unix", raw_once, lat_iters / 10,
                                          t == 0 ? RAW_TCP : RAW_UNIX};
            latency_vs(r, reps, net_reqrep_once, &base);
        } else {
            bench_latency(r, reps, net_reqrep_once);
        }
        for (int i = 0; i < nsizes && i < 8; i++) {
            g_size = sizes[i];
            bench_iters = stream_iters(quick, sizes[i]);
            snprintf(labels[t][b][1 + i], 80, "%s %s: PUSH/PULL %zu B", sysname[b], tr, sizes[i]);
            bench_progress(labels[t][b][1 + i]);
            r = bench_add_result();
            *r = (struct result){.system = sysname[b],
                                 .transport = tr,
                                 .pattern = "pushpull",
                                 .size = sizes[i],
                                 .label = labels[t][b][1 + i]};
            net_throughput(r, reps);
        }
        if (b == 0) { /* PUB/SUB fan-out, as on shm:// */
            static const int fans[] = {1, 4, 16};
            static char flabels[2][3][80];
            for (int i = 0; i < 3; i++) {
                snprintf(flabels[t][i], 80, "ferry %s: PUB/SUB 64 B to %d subscriber%s", tr,
                         fans[i], fans[i] > 1 ? "s" : "");
                bench_progress(flabels[t][i]);
                g_fan_scheme = tr;
                bench_iters = quick ? 20000 : 200000;
                r = bench_add_result();
                *r = (struct result){.system = "ferry",
                                     .transport = tr,
                                     .pattern = "pubsub",
                                     .size = 64,
                                     .label = flabels[t][i]};
                fanout(r, quick ? 1 : reps > 3 ? 3 : reps, fans[i]);
                g_fan_scheme = "shm";
            }
        }
    }
    bench_zmq_inproc = 0;
}

/* --- the proxy: fan-out of a network stream, and forwarding cost ------------------- */

static const struct backend *g_xbe; /* the chain's library: every socket and the proxy */
static int g_xpipe[2];

/* The chain's PULL: listens, says where, takes bench_iters messages, says so. */
static void chain_pull(void *arg)
{
    (void)arg;
    void *s = g_xbe->open(FERRY_PULL);
    char ep[256] = "";
    if (g_xbe->listen(s, "tcp://127.0.0.1:0", ep, sizeof ep) != 0 ||
        write(g_xpipe[1], ep, sizeof ep) != (ssize_t)sizeof ep)
        _exit(2);
    char buf[256];
    for (long i = 0; i < bench_iters; i++)
        if (g_xbe->recv(s, buf, sizeof buf) != 0)
            _exit(3);
    if (write(g_xpipe[1], ep, 1) != 1)
        _exit(4);
    g_xbe->close(s);
}

/* The chain's proxy: PULL listening (it says where), PUSH dialling the
 * puller at g_px_out; runs until killed, free to run on every CPU. */
static void chain_proxy(void *arg)
{
    (void)arg;
    cpu_set_t all;
    CPU_ZERO(&all);
    for (int i = 0; i < bench_ncpus; i++)
        CPU_SET(i, &all);
    sched_setaffinity(0, sizeof all, &all);
    void *front = g_xbe->open(FERRY_PULL), *back = g_xbe->open(FERRY_PUSH);
    char ep[256] = "";
    if (g_xbe->listen(front, "tcp://127.0.0.1:0", ep, sizeof ep) != 0 ||
        g_xbe->dial(back, g_px_out) != 0 || write(g_xpipe[1], ep, sizeof ep) != (ssize_t)sizeof ep)
        _exit(2);
    g_xbe->proxy(front, back);
    _exit(0);
}

/* PUSH -> proxy -> PULL over tcp://, every socket and the proxy of one
 * library: messages per second until the puller has them all. */
static double chain_once(const struct backend *be)
{
    g_xbe = be;
    if (pipe(g_xpipe) != 0)
        return 0;
    char ep[256], pep[256];
    pid_t puller = bench_spawn(chain_pull, NULL), px = -1;
    double rate = 0;
    if (bench_full_read(g_xpipe[0], ep, sizeof ep) == 0) {
        snprintf(g_px_out, sizeof g_px_out, "%s", ep);
        px = bench_spawn(chain_proxy, NULL);
        if (bench_full_read(g_xpipe[0], pep, sizeof pep) == 0) {
            void *s = be->open(FERRY_PUSH);
            be->dial(s, pep);
            char msg[64];
            memset(msg, 7, sizeof msg);
            uint64_t t0 = bench_now_ns();
            long sent = 0;
            while (sent < bench_iters && be->send(s, msg, sizeof msg) == 0)
                sent++;
            char c;
            int all = read(g_xpipe[0], &c, 1) == 1;
            double secs = (double)(bench_now_ns() - t0) / 1e9;
            rate = all && sent == bench_iters && secs > 0 ? (double)bench_iters / secs : 0;
            be->close(s);
        }
    }
    close(g_xpipe[0]);
    close(g_xpipe[1]);
    if (px > 0) {
        kill(px, SIGKILL);
        bench_reap(px);
    }
    kill(puller, SIGKILL); /* done, or stuck: either way it ends here */
    bench_reap(puller);
    return rate;
}

/* A tcp:// stream fanned out to 8 local subscribers through the proxy,
 * against 8 subscribers on tcp:// directly; and the publisher's cost with
 * 8 local subscribers against 1. */
static void proxy_fanout_suite(int quick, int reps)
{
    static char labels[3][80];
    struct result tmp;
    double via[16], direct[16], ratio[16], cv[16], cd[16], c1[16], dv[16], dd[16], flat[16], sp;
    snprintf(labels[0], 80, "ferry tcp->proxy->shm: PUB/SUB 64 B to 8");
    snprintf(labels[1], 80, "ferry tcp: PUB/SUB 64 B to 8 subscribers");
    snprintf(labels[2], 80, "ferry proxy: publisher CPU, 8 local subs vs 1");
    bench_progress(labels[0]);
    bench_iters = quick ? 100000 : 400000;
    g_fan_prefixes = 0;
    /* No message limit; the publisher's byte limit on tcp:// (SNDHWM_BYTES)
     * stays, as a user's would: what it drops is in the drop column. */
    g_fan_hwm = 0;
    for (int k = 0; k < reps; k++) { /* interleaved: through the proxy, direct, one subscriber */
        g_fan_proxy = 1;
        fanout(&tmp, 1, 8);
        via[k] = tmp.value;
        dv[k] = tmp.dropped;
        cv[k] = g_pub_cpu_ns;
        g_fan_proxy = 0;
        g_fan_scheme = "tcp";
        fanout(&tmp, 1, 8);
        direct[k] = tmp.value;
        dd[k] = tmp.dropped;
        cd[k] = g_pub_cpu_ns;
        g_fan_proxy = 1;
        fanout(&tmp, 1, 1);
        c1[k] = g_pub_cpu_ns;
        g_fan_proxy = 0;
        g_fan_scheme = "shm";
        ratio[k] = direct[k] > 0 ? via[k] / direct[k] : 0;
        flat[k] = c1[k] > 0 ? cv[k] / c1[k] : 0;
    }
    g_fan_hwm = 1000;
    struct result *r = bench_add_result();
    *r = (struct result){.system = "ferry",
                         .transport = "tcp",
                         .pattern = "proxy_fanout",
                         .size = 64,
                         .wait = NULL,
                         .subscribers = 8,
                         .label = labels[0],
                         .metric = "msgs_per_s",
                         .reps = reps};
    r->value = bench_median(via, reps, &r->spread);
    r->dropped = bench_median(dv, reps, &sp);
    r->cpu_ns = bench_median(cv, reps, &sp);
    r->base = bench_median(direct, reps, &sp);
    r->ratio = bench_median(ratio, reps, &sp);
    r = bench_add_result();
    *r = (struct result){.system = "ferry",
                         .transport = "tcp",
                         .pattern = "pubsub_direct",
                         .size = 64,
                         .subscribers = 8,
                         .label = labels[1],
                         .metric = "msgs_per_s",
                         .reps = reps};
    r->value = bench_median(direct, reps, &r->spread);
    r->dropped = bench_median(dd, reps, &sp);
    r->cpu_ns = bench_median(cd, reps, &sp);
    r = bench_add_result();
    *r = (struct result){.system = "ferry",
                         .transport = "tcp",
                         .pattern = "proxy_pub_cpu",
                         .size = 64,
                         .subscribers = 8,
                         .label = labels[2],
                         .metric = "cpu_ns_per_msg",
                         .reps = reps};
    r->value = bench_median(cv, reps, &r->spread);
    r->base = bench_median(c1, reps, &sp);
    r->ratio = bench_median(flat, reps, &sp);
}

/* The proxy's forwarding cost: PUSH -> proxy -> PULL on shm://, against
 * PUSH -> PULL, interleaved (nobody spins: three processes on the
 * machine's CPUs); then the chain over tcp://, ferry against libzmq. */
static void proxy_forward_suite(int quick, int reps)
{
    static char label[80];
    double a[16], b[16], ratio[16], sp;
    struct result *r;
    snprintf(label, 80, "ferry shm: PUSH->proxy->PULL 64 B");
    bench_progress(label);
    g_size = 64;
    g_zero_copy = 0;
    g_spin_us = 0;
    bench_iters = quick ? 200000 : 1000000;
    for (int k = 0; k < reps; k++) {
        g_pp_proxy = 1;
        a[k] = pushpull_once();
        g_pp_proxy = 0;
        b[k] = pushpull_once();
        ratio[k] = b[k] > 0 ? a[k] / b[k] : 0;
    }
    r = bench_add_result();
    *r = (struct result){.system = "ferry",
                         .transport = "shm",
                         .pattern = "proxy_pushpull",
                         .size = 64,
                         .wait = "sleep",
                         .label = label,
                         .metric = "msgs_per_s",
                         .reps = reps};
    r->value = bench_median(a, reps, &r->spread);
    r->base = bench_median(b, reps, &sp);
    r->ratio = bench_median(ratio, reps, &sp);

    /* the same chain over tcp://: ferry's sockets and ferry_proxy against
     * libzmq's sockets and zmq_proxy, interleaved */
    if (!bench_zmq_load())
        return;
    static char zl[2][80];
    snprintf(zl[0], 80, "ferry tcp: PUSH->proxy->PULL 64 B");
    snprintf(zl[1], 80, "libzmq tcp: PUSH->zmq_proxy->PULL 64 B");
    bench_progress(zl[0]);
    bench_iters = quick ? 100000 : 500000;
    for (int k = 0; k < reps; k++) {
        a[k] = chain_once(&bench_ferry);
        b[k] = chain_once(&bench_zmq);
        ratio[k] = b[k] > 0 ? a[k] / b[k] : 0;
    }
    for (int z = 0; z < 2; z++) {
        r = bench_add_result();
        *r = (struct result){.system = z ? "libzmq" : "ferry",
                             .transport = "tcp",
                             .pattern = "proxy_chain",
                             .size = 64,
                             .label = zl[z],
                             .metric = "msgs_per_s",
                             .reps = reps};
        r->value = bench_median(z ? b : a, reps, &r->spread);
        if (z == 0) {
            r->base = bench_median(b, reps, &sp);
            r->ratio = bench_median(ratio, reps, &sp);
        }
    }
}

static int want(char **suites, int n, const char *s)
{
    if (n == 0)
        return 1;
    for (int i = 0; i < n; i++)
        if (strcmp(suites[i], s) == 0)
            return 1;
    return 0;
}

/* What the command line asked for. */
struct bench_args {
    int quick, reps;
    const char *json, *plot;
    size_t sizes[8];
    int nsizes;
    char **suites;
    int nsuites;
    long lat_iters, sleep_iters; /* round trips a latency repetition times */
};

/* The cache-line ping-pong and memcpy bandwidth: what the machine allows. */
static void limit_suite(const struct bench_args *a)
{
    int quick = a->quick, reps = a->reps, nsizes = a->nsizes;
    const size_t *sizes = a->sizes;
    long lat_iters = a->lat_iters;
    bench_progress("limit: cache-line ping-pong");
    bench_iters = lat_iters * 5;
    struct result *r = bench_add_result();
    *r = (struct result){.system = "limit",
                         .transport = "shm",
                         .pattern = "pingpong",
                         .size = 8,
                         .label = "limit: cache-line ping-pong (2 processes)"};
    bench_latency(r, reps, cl_once);
    bench_progress("limit: memcpy");
    r = bench_add_result();
    *r = (struct result){.system = "limit",
                         .transport = "memory",
                         .pattern = "memcpy",
                         .size = 64u << 20,
                         .label = "limit: memcpy 64 MiB blocks (DRAM)"};
    memcpy_bw(r, reps, quick, 64u << 20, 64u << 20);
    static char mlabels[8][80];
    for (int i = 0; i < nsizes; i++) {
        snprintf(mlabels[i], sizeof mlabels[i], "limit: memcpy %zu B blocks, 4 MiB span", sizes[i]);
        bench_progress(mlabels[i]);
        r = bench_add_result();
        *r = (struct result){.system = "limit",
                             .transport = "memory",
                             .pattern = "memcpy",
                             .size = sizes[i],
                             .label = mlabels[i]};
        memcpy_bw(r, reps, quick, sizes[i], sizes[i] > (4u << 20) ? sizes[i] : 4u << 20);
    }
}

/* Kernel IPC: ping-pong latency and streaming, the baselines of the
 * transports. */
static void raw_suite(const struct bench_args *a)
{
    int quick = a->quick, reps = a->reps, nsizes = a->nsizes;
    const size_t *sizes = a->sizes;
    long lat_iters = a->lat_iters;
    static const struct {
        int kind;
        const char *transport, *label;
    } raws[] = {
        /* transports named by URL scheme (CONVENTIONS.md): a Unix socket is
         * what ipc:// uses, eventfd-signalled shared memory is shm */
        {RAW_UNIX, "ipc", "raw: unix stream socket ping-pong 64 B"},
        {RAW_PIPE, "pipe", "raw: pipe ping-pong 64 B"},
        {RAW_TCP, "tcp", "raw: tcp loopback ping-pong 64 B (NODELAY)"},
        {RAW_EVENTFD, "shm", "raw: eventfd-signalled shm ping-pong 64 B"},
    };
    for (size_t k = 0; k < sizeof raws / sizeof raws[0]; k++) {
        bench_progress(raws[k].label);
        bench_iters = lat_iters / 10;
        g_size = 64;
        g_raw = raws[k].kind;
        struct result *r = bench_add_result();
        *r = (struct result){.system = "raw",
                             .transport = raws[k].transport,
                             .pattern =
                                 raws[k].kind == RAW_EVENTFD ? "pingpong_eventfd" : "pingpong",
                             .size = 64,
                             .label = raws[k].label};
        bench_latency(r, reps, raw_once);
    }
    static const struct {
        int kind;
        const char *transport, *name;
    } streams[] = {{RAW_UNIX, "ipc", "unix stream socket"},
                   {RAW_PIPE, "pipe", "pipe"},
                   {RAW_TCP, "tcp", "tcp loopback"},
                   {RAW_EVENTFD, "shm", "eventfd-signalled shm"}};
    static char slabels[4][8][80];
    for (size_t k = 0; k < 4; k++) {
        for (int i = 0; i < nsizes; i++) {
            snprintf(slabels[k][i], 80, "raw: %s streaming %zu B", streams[k].name, sizes[i]);
            bench_progress(slabels[k][i]);
            g_raw = streams[k].kind;
            g_size = sizes[i];
            bench_iters = stream_iters(quick, sizes[i]);
            struct result *r = bench_add_result();
            *r = (struct result){.system = "raw",
                                 .transport = streams[k].transport,
                                 .pattern = "stream",
                                 .size = sizes[i],
                                 .label = slabels[k][i]};
            double v[16];
            size_by_time(raw_stream_once, bench_iters);
            for (int q = 0; q < reps; q++)
                v[q] = raw_stream_once();
            r->value = bench_median(v, reps, &r->spread);
            r->reps = reps;
            r->metric = "msgs_per_s";
        }
    }
}

/* ferry over shm://: REQ/REP by way of waiting, PUB/SUB fan-out, a PUB's
 * prefix matching, PUSH/PULL copying and zero-copy by size. */
static void shm_suite(const struct bench_args *a)
{
    int quick = a->quick, reps = a->reps, nsizes = a->nsizes;
    const size_t *sizes = a->sizes;
    long lat_iters = a->lat_iters, sleep_iters = a->sleep_iters;
    static const struct {
        int spin, prefault;
        const char *wait, *label;
    } waits[] = {{1000000, 0, "spin", "ferry shm: REQ/REP 64 B, busy-polling"},
                 {1000000, 1, "spin", "ferry shm: REQ/REP 64 B, busy, rings prefaulted"},
                 {0, 0, "sleep", "ferry shm: REQ/REP 64 B, sleeping receiver"},
                 {-1, 0, "adaptive", "ferry shm: REQ/REP 64 B, default (adaptive)"}};
    for (int w = 0; w < 4; w++) {
        bench_progress(waits[w].label);
        g_spin_us = waits[w].spin;
        g_prefault = waits[w].prefault;
        bench_iters = waits[w].spin > 0 ? lat_iters : sleep_iters;
        g_size = 64;
        struct result *r = bench_add_result();
        *r = (struct result){.system = "ferry",
                             .transport = "shm",
                             .pattern = "reqrep",
                             .size = 64,
                             .wait = waits[w].wait,
                             .prefault = waits[w].prefault,
                             .label = waits[w].label};
        /* busy-polling against the cache-line ping-pong, sleeping
         * (and the default, which sleeps unless a short spin finds
         * the answer) against a pipe's (a wake-up each way), pair by
         * pair */
        const struct baseline b = waits[w].spin > 0
                                      ? (struct baseline){"limit", cl_once, lat_iters, 0}
                                      : (struct baseline){"pipe", raw_once, sleep_iters, RAW_PIPE};
        latency_vs(r, reps, reqrep_once, &b);
        g_prefault = 0;
    }
    static const int fans[] = {1, 4, 16};
    static char flabels[3][80];
    for (int i = 0; i < 3; i++) {
        snprintf(flabels[i], sizeof flabels[i], "ferry shm: PUB/SUB 64 B to %d subscriber%s",
                 fans[i], fans[i] > 1 ? "s" : "");
        bench_progress(flabels[i]);
        bench_iters = quick ? 50000 : 300000;
        struct result *r = bench_add_result();
        *r = (struct result){.system = "ferry",
                             .transport = "shm",
                             .pattern = "pubsub",
                             .size = 64,
                             .wait = "sleep",
                             .label = flabels[i]};
        fanout(r, reps > 3 ? 3 : reps, fans[i]);
    }
    bench_progress("ferry shm: PUB matching 10,000 prefixes against 1");
    bench_iters = quick ? 100000 : 500000;
    struct result *pr = bench_add_result();
    *pr = (struct result){.system = "ferry",
                          .transport = "shm",
                          .pattern = "pub_prefixes",
                          .size = 64,
                          .wait = "sleep",
                          .label = "ferry shm: PUB, 1 sub with 10,000 prefixes"};
    prefix_cost(pr, reps > 3 ? 3 : reps, 10000);
    for (int i = 0; i < nsizes; i++)
        shm_pushpull_size(quick, reps, sizes[i], i);
}

/* The command line into *a: -1 to go on, else the exit code. */
static int parse_args(int argc, char **argv, struct bench_args *a)
{
    enum { O_QUICK = 1000, O_JSON, O_SIZE, O_REPS, O_PLOT };
    static const struct option opts[] = {{"quick", no_argument, 0, O_QUICK},
                                         {"json", required_argument, 0, O_JSON},
                                         {"size", required_argument, 0, O_SIZE},
                                         {"reps", required_argument, 0, O_REPS},
                                         {"plot", required_argument, 0, O_PLOT},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int quick = 0, reps = 0, c;
    const char *json = NULL, *plot = NULL;
    size_t sizes[8] = {64, 1024, 65536, 1048576};
    int nsizes = 4, sizes_given = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case O_QUICK:
            quick = 1;
            break;
        case O_JSON:
            json = optarg;
            break;
        case O_PLOT:
            plot = optarg;
            break;
        case O_REPS:
            reps = atoi(optarg);
            if (reps < 1 || reps > 15)
                return cli_usage("bench", "--reps takes 1 to 15");
            break;
        case O_SIZE: {
            nsizes = 0;
            char *dup = strdup(optarg), *save = NULL;
            for (char *t = strtok_r(dup, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                char *end;
                unsigned long v = strtoul(t, &end, 10);
                if (*end || v == 0 || v > (16u << 20) || nsizes == 8) {
                    free(dup);
                    return cli_usage("bench", "bad --size '%s' (1..16777216, up to 8)", optarg);
                }
                sizes[nsizes++] = v;
            }
            sizes_given = 1;
            free(dup);
            if (nsizes == 0)
                return cli_usage("bench", "empty --size");
            break;
        }
        case 'h':
            fputs(bench_help, stdout);
            return CLI_OK;
        case ':':
            return cli_usage("bench", "option '%s' needs a value", argv[optind - 1]);
        default:
            return cli_usage("bench", "unknown option '%s'", argv[optind - 1]);
        }
    }
    for (int i = optind; i < argc; i++)
        if (strcmp(argv[i], "limit") && strcmp(argv[i], "raw") && strcmp(argv[i], "shm") &&
            strcmp(argv[i], "tcp") && strcmp(argv[i], "ipc") && strcmp(argv[i], "inproc") &&
            strcmp(argv[i], "router") && strcmp(argv[i], "poller") && strcmp(argv[i], "proxy") &&
            strcmp(argv[i], "curve") && strcmp(argv[i], "bcast"))
            return cli_usage(
                "bench",
                "unknown suite '%s' (limit, raw, shm, bcast, router, poller, proxy, ipc, tcp, "
                "curve, inproc)",
                argv[i]);
    char **suites = argv + optind;
    int nsuites = argc - optind;
    if (reps == 0)
        reps = quick ? 3 : 5;
    if (quick && !sizes_given) { /* --quick: the two ends of the size range */
        sizes[0] = 64;
        sizes[1] = 65536;
        nsizes = 2;
    }
    *a = (struct bench_args){.quick = quick,
                             .reps = reps,
                             .json = json,
                             .plot = plot,
                             .nsizes = nsizes,
                             .suites = suites,
                             .nsuites = nsuites,
                             .lat_iters = quick ? 20000 : 100000,
                             .sleep_iters = quick ? 5000 : 20000};
    memcpy(a->sizes, sizes, sizeof a->sizes);
    return -1;
}

/* The table on stdout (stderr with --json -), then the plot and the JSON. */
static int report(const struct bench_args *a)
{
    const char *json = a->json, *plot = a->plot;
    int reps = a->reps;
    if (isatty(2))
        fprintf(stderr, "\r%70s\r", "");
    /* with --json -, stdout carries the JSON alone and the table goes to stderr */
    FILE *table = json && strcmp(json, "-") == 0 ? stderr : stdout;
    fflush(stdout);
    int saved = dup(1);
    if (table == stderr)
        dup2(2, 1);
    printf("ferry %s bench: %d CPUs%s, median of %d repetitions\n", ferry_version(), bench_ncpus,
           bench_ncpus >= 2 ? ", processes pinned to CPUs 0 and 1" : "", reps);
    bench_print_table();
    fflush(stdout);
    if (table == stderr && saved >= 0)
        dup2(saved, 1);
    if (saved >= 0)
        close(saved);
    if (plot && bench_write_plot(plot) != 0) {
        fprintf(stderr, "ferry: bench: cannot write %s: %s\n", plot, strerror(errno));
        return CLI_FAIL;
    }
    if (json) {
        FILE *f = strcmp(json, "-") == 0 ? stdout : fopen(json, "w");
        if (f == NULL) {
            fprintf(stderr, "ferry: bench: cannot write %s: %s\n", json, strerror(errno));
            return CLI_FAIL;
        }
        bench_write_json(f);
        if (f != stdout)
            fclose(f);
    }
    return CLI_OK;
}

int cmd_bench(int argc, char **argv)
{
    struct bench_args a = {0};
    int rc = parse_args(argc, argv, &a);
    if (rc >= 0)
        return rc;
    char **suites = a.suites;
    int nsuites = a.nsuites, quick = a.quick, reps = a.reps;
    g_budget_ms = quick ? 100 : 400;
    bench_ncpus = (int)sysconf(_SC_NPROCESSORS_ONLN);
    bench_pin(0);
    signal(SIGPIPE, SIG_IGN); /* a peer process that dies is a failed figure, not our end */
    if (want(suites, nsuites, "limit"))
        limit_suite(&a);
    if (want(suites, nsuites, "raw"))
        raw_suite(&a);
    if (want(suites, nsuites, "shm"))
        shm_suite(&a);
    if (want(suites, nsuites, "bcast"))
        bench_bcast_suite(quick, reps);
    if (want(suites, nsuites, "router"))
        bench_router_suite(quick, reps);
    if (want(suites, nsuites, "poller"))
        bench_poller_suite(quick, reps);
    if (want(suites, nsuites, "proxy")) {
        proxy_fanout_suite(quick, reps);
        proxy_forward_suite(quick, reps);
    }
    if (want(suites, nsuites, "ipc"))
        net_suite("ipc", quick, reps, a.lat_iters, a.sizes, a.nsizes);
    if (want(suites, nsuites, "tcp"))
        net_suite("tcp", quick, reps, a.lat_iters, a.sizes, a.nsizes);
    if (want(suites, nsuites, "curve"))
        curve_suite(quick, reps, a.lat_iters);
    if (want(suites, nsuites, "inproc"))
        net_suite("inproc", quick, reps, a.lat_iters, a.sizes, a.nsizes);
    nn_server_stop();
    return report(&a);
}
