/*
 * bench_poller.c - `ferry bench poller`: a REP that waits in a ferry_poller
 * holding 1,000 idle sockets beside it, against the same poller holding
 * the REP alone, interleaved, on shm:// and tcp://: the wait's cost should
 * grow with the ready entries, not with the registered ones.
 */
#include "bench.h"

#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static int g_pidle; /* idle sockets in the server's poller beside its REP */

/* The serving side, a child: a REP in a poller with g_pidle idle PULL
 * sockets (never written to); each request is waited for in the poller,
 * then received and answered. */
static void poll_server(void *arg)
{
    (void)arg;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max; /* each idle socket holds 3 fds */
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    ferry_poller *p;
    if (ferry_poller_new(&p) != 0)
        _exit(2);
    ferry_socket **idle = calloc((size_t)g_pidle + 1, sizeof *idle);
    for (int i = 0; i < g_pidle; i++)
        if (ferry_socket_open(&idle[i], FERRY_PULL) != 0 ||
            ferry_poller_add(p, idle[i], FERRY_POLLIN, NULL) != 0)
            _exit(2);
    ferry_socket *s = bench_open_ferry(FERRY_REP, 0);
    char ep[256] = "";
    if (ferry_listen(s, bench_url) != 0 || ferry_socket_addr(s, ep, sizeof ep) != 0 ||
        ferry_poller_add(p, s, FERRY_POLLIN, NULL) != 0)
        _exit(2);
    if (write(bench_pipe[1], ep, sizeof ep) != (ssize_t)sizeof ep)
        _exit(3);
    char buf[256];
    size_t n;
    for (long i = 0; i < bench_iters; i++) {
        ferry_poll_event ev[4];
        if (ferry_poller_wait(p, ev, 4, 30000) != 1 || ev[0].socket != s ||
            ferry_recv(s, buf, sizeof buf, &n, FERRY_DONTWAIT) != 0 ||
            ferry_send(s, buf, n, 0) != 0)
            _exit(4);
    }
    ferry_poller_free(p);
    ferry_close(s);
    for (int i = 0; i < g_pidle; i++)
        ferry_close(idle[i]);
    free(idle);
}

/* One latency run against a poll_server with `idle` idle sockets. */
static void poll_roundtrip(struct hist *h, int idle)
{
    if (pipe(bench_pipe) != 0)
        return;
    g_pidle = idle;
    pid_t pid = bench_spawn(poll_server, NULL);
    close(bench_pipe[1]);
    char ep[256];
    int ok = bench_full_read(bench_pipe[0], ep, sizeof ep) == 0;
    close(bench_pipe[0]);
    if (!ok) {
        bench_reap(pid);
        return;
    }
    ferry_socket *s = bench_open_ferry(FERRY_REQ, 0);
    ferry_dial(s, ep);
    char buf[64];
    memset(buf, 7, sizeof buf);
    for (long i = 0; i < bench_iters; i++) {
        uint64_t t0 = bench_now_ns();
        size_t n;
        if (ferry_send(s, buf, sizeof buf, 0) != 0 || ferry_recv(s, buf, sizeof buf, &n, 0) != 0)
            break;
        if (i > bench_iters / 10)
            bench_hist_add(h, bench_now_ns() - t0);
    }
    ferry_close(s);
    bench_reap(pid);
}

/* The server's poller holding 1,000 idle sockets beside its REP against
 * holding the REP alone, interleaved rep by rep; r gets the former's
 * figures, the latter's p50 as base and the median ratio. */
void bench_poller_suite(int quick, int reps)
{
    static const char *trs[] = {"shm", "tcp"};
    static char labels[2][80];
    bench_iters = quick ? 3000 : 20000;
    for (int t = 0; t < 2; t++) {
        if (t == 0) {
            char name[64];
            snprintf(name, sizeof name, "ferry-bench-poll-%d", (int)getpid());
            snprintf(bench_url, sizeof bench_url, "shm://%s", name);
        } else {
            snprintf(bench_url, sizeof bench_url, "tcp://127.0.0.1:0");
        }
        snprintf(labels[t], sizeof labels[t], "ferry %s: REQ/REP, REP in a poller of 1,001",
                 trs[t]);
        bench_progress(labels[t]);
        struct result *r = bench_add_result();
        *r = (struct result){.system = "ferry",
                             .transport = trs[t],
                             .pattern = "poller_idle",
                             .size = 64,
                             .wait = t == 0 ? "sleep" : NULL, /* in the poller's epoll */
                             .label = labels[t]};
        bench_versus(r, reps, poll_roundtrip, 0, 1000);
    }
}
