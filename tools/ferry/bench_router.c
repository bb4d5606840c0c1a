/*
 * bench_router.c - `ferry bench router`: a DEALER/ROUTER round trip against
 * REQ/REP on the same transport, interleaved (shm://, ipc://, tcp://), and
 * a ROUTER serving 16 DEALER processes at once, ferry against libzmq.
 */
#include "bench.h"

#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *g_rtr; /* the transport measured: "shm", "ipc" or "tcp" */

/* On ipc:// and tcp:// through a backend (ferry, libzmq); on shm:// ferry
 * itself, busy-polling as the shm:// REQ/REP figure does. */
static const struct backend *g_rbe;
static char g_rurl[128];
static int g_rspin; /* shm://: busy-poll this long (round trips), 0 for the fan-in */

static void *rt_open(int type)
{
    return strcmp(g_rtr, "shm") == 0 ? bench_open_ferry(type, g_rspin) : g_rbe->open(type);
}

/* Binds the serving side; its endpoint (port resolved) into ep. */
static int rt_listen(void *s, char *ep, size_t len)
{
    static unsigned seq;
    if (strcmp(g_rtr, "shm") == 0) {
        snprintf(ep, len, "shm://bench-rt-%d-%u", (int)getpid(), seq++);
        return ferry_listen(s, ep);
    }
    if (strcmp(g_rtr, "tcp") == 0)
        snprintf(g_rurl, sizeof g_rurl, "tcp://127.0.0.1:*");
    else
        snprintf(g_rurl, sizeof g_rurl, "ipc:///tmp/ferry-bench-rt-%d-%u.sock", (int)getpid(),
                 seq++);
    return g_rbe->listen(s, g_rurl, ep, len);
}

/* The serving side, a child: REP echoes; ROUTER echoes each message to
 * its sender, [id][body]. It serves bench_iters messages, then reports. */
static void rt_server(void *arg)
{
    int type = *(int *)arg;
    void *s = rt_open(type);
    char ep[256] = "";
    if (rt_listen(s, ep, sizeof ep) != 0)
        _exit(2);
    if (write(bench_pipe[1], ep, sizeof ep) != (ssize_t)sizeof ep)
        _exit(3);
    char id[256], *buf = malloc(65536);
    for (long i = 0; i < bench_iters; i++) {
        size_t idl = 0, n = 0;
        int more = 0;
        if (type == FERRY_REP) {
            if (g_rbe->recv_part(s, buf, 65536, &n, &more) != 0 ||
                g_rbe->send_part(s, buf, n, 0) != 0)
                _exit(4);
            continue;
        }
        if (g_rbe->recv_part(s, id, sizeof id, &idl, &more) != 0 || !more ||
            g_rbe->recv_part(s, buf, 65536, &n, &more) != 0 ||
            g_rbe->send_part(s, id, idl, 1) != 0 || g_rbe->send_part(s, buf, n, 0) != 0)
            _exit(4);
    }
    free(buf);
    g_rbe->close(s);
    if (strcmp(g_rtr, "ipc") == 0)
        unlink(g_rurl + 6);
}

/* Starts the server of `type` serving `total` messages; its endpoint. */
static pid_t rt_start(int type, long total, char *ep)
{
    static int t;
    t = type;
    if (pipe(bench_pipe) != 0)
        return -1;
    long keep = bench_iters;
    bench_iters = total;
    pid_t pid = bench_spawn(rt_server, &t);
    bench_iters = keep;
    close(bench_pipe[1]);
    bench_pipe[1] = -1;
    if (bench_full_read(bench_pipe[0], ep, 256) != 0) {
        bench_reap(pid);
        close(bench_pipe[0]);
        return -1;
    }
    close(bench_pipe[0]);
    return pid;
}

/* One latency run: a REQ (against a REP) or a DEALER (against a ROUTER). */
static void rt_roundtrip(struct hist *h, int client)
{
    char ep[256];
    pid_t pid = rt_start(client == FERRY_REQ ? FERRY_REP : FERRY_ROUTER, bench_iters, ep);
    if (pid < 0)
        return;
    void *s = rt_open(client);
    g_rbe->dial(s, ep);
    char buf[64];
    memset(buf, 7, sizeof buf);
    for (long i = 0; i < bench_iters; i++) {
        uint64_t t0 = bench_now_ns();
        size_t n;
        int more;
        if (g_rbe->send_part(s, buf, sizeof buf, 0) != 0 ||
            g_rbe->recv_part(s, buf, sizeof buf, &n, &more) != 0)
            break;
        if (i > bench_iters / 10)
            bench_hist_add(h, bench_now_ns() - t0);
    }
    g_rbe->close(s);
    bench_reap(pid);
}

/* A ROUTER serving `clients` DEALER processes, each making bench_iters round
 * trips one at a time: aggregate requests per second, from the moment all
 * are connected until the last is done. Every process may run on every
 * CPU (each library's I/O threads included). */
static double rt_fanin_once(int clients)
{
    char ep[256];
    pid_t srv = rt_start(FERRY_ROUTER, bench_iters * clients, ep);
    if (srv < 0)
        return 0;
    int ready[2], go[2];
    if (pipe(ready) != 0 || pipe(go) != 0)
        return 0;
    pid_t pid[64];
    for (int c = 0; c < clients; c++) {
        fflush(stdout);
        pid[c] = fork();
        if (pid[c] == 0) {
            bench_unpin();
            void *s = rt_open(FERRY_DEALER);
            g_rbe->dial(s, ep);
            char b[64], one = 'r';
            memset(b, 7, sizeof b);
            size_t n;
            int more;
            /* one round trip first: connected */
            if (g_rbe->send_part(s, b, sizeof b, 0) != 0 ||
                g_rbe->recv_part(s, b, sizeof b, &n, &more) != 0 || write(ready[1], &one, 1) != 1 ||
                read(go[0], &one, 1) != 1)
                _exit(4);
            for (long i = 1; i < bench_iters; i++)
                if (g_rbe->send_part(s, b, sizeof b, 0) != 0 ||
                    g_rbe->recv_part(s, b, sizeof b, &n, &more) != 0)
                    _exit(4);
            g_rbe->close(s);
            _exit(0);
        }
    }
    char c;
    for (int k = 0; k < clients; k++)
        if (read(ready[0], &c, 1) != 1)
            break;
    uint64_t t0 = bench_now_ns();
    for (int k = 0; k < clients; k++)
        if (write(go[1], "g", 1) != 1)
            break;
    int ok = 1;
    for (int k = 0; k < clients; k++)
        ok &= bench_reap(pid[k]) == 0;
    double secs = (double)(bench_now_ns() - t0) / 1e9;
    ok &= bench_reap(srv) == 0;
    close(ready[0]);
    close(ready[1]);
    close(go[0]);
    close(go[1]);
    return ok && secs > 0 ? (double)clients * (double)(bench_iters - 1) / secs : 0;
}

void bench_router_suite(int quick, int reps)
{
    static const char *trs[] = {"shm", "ipc", "tcp"};
    static char labels[3][3][80];
    for (int t = 0; t < 3; t++) {
        g_rtr = trs[t];
        g_rbe = &bench_ferry;
        snprintf(labels[t][0], 80, "ferry %s: DEALER/ROUTER 64 B round trip", trs[t]);
        bench_progress(labels[t][0]);
        bench_iters = quick ? 5000 : 20000;
        g_rspin = 1000000;
        struct result *r = bench_add_result();
        *r = (struct result){.system = "ferry",
                             .transport = trs[t],
                             .pattern = "dealer_router",
                             .size = 64,
                             .wait = t == 0 ? "spin" : NULL,
                             .label = labels[t][0]};
        /* DEALER/ROUTER against REQ/REP, interleaved rep by rep */
        bench_versus(r, reps, rt_roundtrip, FERRY_REQ, FERRY_DEALER);
        /* the fan-in, ferry and libzmq interleaved rep by rep */
        int nb = t > 0 && bench_zmq_load() ? 2 : 1;
        double v[2][16];
        bench_iters = quick ? 1000 : 5000;
        g_rspin = 0; /* 17 processes on the machine's CPUs: nobody may spin */
        snprintf(labels[t][1], 80, "ferry %s: ROUTER, 16 DEALER processes", trs[t]);
        snprintf(labels[t][2], 80, "libzmq %s: ROUTER, 16 DEALER processes", trs[t]);
        bench_progress(labels[t][1]);
        for (int k = 0; k < reps; k++)
            for (int b = 0; b < nb; b++) {
                g_rbe = b == 0 ? &bench_ferry : &bench_zmq;
                v[b][k] = rt_fanin_once(16);
            }
        for (int b = 0; b < nb; b++) {
            r = bench_add_result();
            *r = (struct result){.system = b == 0 ? "ferry" : "libzmq",
                                 .transport = trs[t],
                                 .pattern = "router_fanin",
                                 .size = 64,
                                 .wait = t == 0 ? "sleep" : NULL,
                                 .clients = 16,
                                 .label = labels[t][1 + b]};
            r->value = bench_median(v[b], reps, &r->spread);
            r->reps = reps;
            r->metric = "msgs_per_s";
        }
    }
    g_rbe = NULL;
}
