/*
 * bench_net.c - `ferry bench ipc`, `tcp`, `inproc` and `curve`: ferry and
 * its peers (libzmq and nng, bench_peers.c) measured alike. The REQ/REP
 * round trip is measured pair by pair against the raw socket of its
 * transport, PUSH/PULL by message size, and ferry's PUB/SUB fan-out as on
 * shm:// (bench_shm.c); with CURVE on tcp://, ferry and libzmq interleaved.
 *
 * The listening side of a measurement is a child process (a thread for
 * inproc://; for nng, one server process forked before nng is first used)
 * that hands its endpoint to the parent on bench_pipe.
 */
#include "bench_flow.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

void nn_server_stop(void)
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
void curve_suite(int quick, int reps, long lat_iters)
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
void net_suite(const char *tr, int quick, int reps, long lat_iters, const size_t *sizes, int nsizes)
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
