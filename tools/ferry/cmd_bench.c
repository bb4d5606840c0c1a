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
 * The suites are listed in bench_help below. This file parses the command
 * line, runs the suites asked for and holds what they share (timing,
 * histograms, processes, the baselines); it measures the limit and raw
 * suites itself. The shm:// suite is in bench_shm.c, the ipc, tcp, inproc
 * and curve suites in bench_net.c, the proxy's in bench_proxy.c, the
 * broadcast pool's in bench_bcast.c, the router's and the poller's in
 * bench_router.c and bench_poller.c, the peers' backends (libzmq, nng) in
 * bench_peers.c, and the table, JSON and SVG in bench_report.c.
 */
#include "bench_flow.h"
#include "cli.h"

#include <getopt.h>
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
    "          on tcp directly (per-subscriber rate, publisher and subscriber\n"
    "          CPU per message); PUSH->proxy->PULL on shm against PUSH->PULL;\n"
    "          the chain on tcp, ferry_proxy\n"
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

uint64_t bench_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
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

void bench_unpin(void)
{
    cpu_set_t all;
    CPU_ZERO(&all);
    for (int i = 0; i < bench_ncpus; i++)
        CPU_SET(i, &all);
    sched_setaffinity(0, sizeof all, &all);
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
static int g_raw;   /* raw: which kernel IPC (RAW_*) */
size_t g_size = 64; /* message size */
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

void cl_once(struct hist *h)
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
void latency_vs(struct result *r, int reps, void (*once)(struct hist *), const struct baseline *b)
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

void raw_once(struct hist *h)
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
long stream_iters(int quick, size_t size)
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

/* Sizes a throughput run by time, not by count: a short pilot gives the
 * rate, and each repetition then lasts about `budget` seconds (between
 * 200 messages and the cap), so a slow peer does not stretch the run. */
static long g_budget_ms = 500;
void size_by_time(double (*once)(void), long cap)
{
    long pilot = cap < 2000 ? cap : 2000;
    bench_iters = pilot;
    double rate = once();
    double want = rate * (double)g_budget_ms / 1000.0;
    bench_iters = want > (double)cap ? cap : want < 200 ? 200 : (long)want;
}

/* --- a measurement's ferry sockets, endpoint and report pipe -------------------------- */

char bench_url[128];
int bench_pipe[2];

/* shm://: the rings populated at connection set-up (FERRY_OPT_RING_PREFAULT) */
int g_prefault;

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

static int want(char **suites, int n, const char *s)
{
    if (n == 0)
        return 1;
    for (int i = 0; i < n; i++)
        if (strcmp(suites[i], s) == 0)
            return 1;
    return 0;
}

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
