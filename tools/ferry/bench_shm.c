/*
 * bench_shm.c - `ferry bench shm`: ferry over shm://. REQ/REP by way of
 * waiting (busy-polling with lazy and with prefaulted rings, sleeping, the
 * adaptive default), each measured pair by pair against its baseline;
 * PUB/SUB fan-out to 1, 4 and 16 subscriber processes; a PUB's cost of
 * matching 10,000 prefixes; PUSH/PULL copying and zero-copy by size.
 *
 * Two of its flows serve other suites too (bench_flow.h): the ipc and tcp
 * suites run the fan-out on their own transport, and the proxy suite runs
 * the fan-out and PUSH/PULL with a ferry_proxy process in between
 * (proxy_child, below).
 */
#include "bench_flow.h"
#include "cli.h"

#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int g_spin_us;   /* the sockets' FERRY_OPT_SPIN */
int g_zero_copy; /* PUSH/PULL in place (ferry_msg), not copied */

/* A child's socket of type, listening at bench_url; says 'L' on
 * bench_pipe once it does. */
static ferry_socket *listen_ready(int type)
{
    ferry_socket *s = bench_open_ferry(type, g_spin_us);
    if (ferry_listen(s, bench_url) != 0)
        _exit(2);
    char one = 'L';
    if (write(bench_pipe[1], &one, 1) != 1)
        _exit(3);
    return s;
}

static void rep_child(void *arg)
{
    (void)arg;
    ferry_socket *s = listen_ready(FERRY_REP);
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
    ferry_socket *s = listen_ready(FERRY_PULL);
    char one = 'L';
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

int g_pp_proxy;            /* pushpull_once: through a ferry_proxy process */
static char g_px_in[256];  /* where the proxy's frontend listens */
static char g_px_out[256]; /* where its backend dials (or, fan-out, listens) */
static int g_px_peers;     /* fan-out: subscribers to wait for before starting */

/* The proxy process: PULL->PUSH (g_px_peers 0) or XSUB->XPUB. It runs
 * until killed; it says 'p' on bench_pipe once its backend has its peers.
 * The chain's is free to run on every CPU: it is a third party to the two
 * it joins. The fan-out's runs on the publisher's CPU, where the direct
 * arm's fan-out (the publisher's writes to its 8 connections) runs too:
 * the subscribers have the other CPUs to themselves in both arms. */
static void proxy_child(void *arg)
{
    (void)arg;
    int fan = g_px_peers > 0;
    if (fan)
        bench_pin(0);
    else
        bench_unpin();
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

double pushpull_once(void)
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
    long got;   /* messages received */
    long timed; /* the messages after the first up to the last stamp */
    uint64_t ns;
    uint64_t cpu_ns; /* the process's CPU from the first message to the end */
};

/* A subscriber reads the clock once every FAN_STAMP messages, not on each:
 * in this VM a clock read costs 20-30 ns, a fifth of what a receive does,
 * and it would be measured as the receive's. The rate covers the first
 * message to the last stamped one, exactly. */
#define FAN_STAMP 64

int g_fan_prefixes;       /* 0: subscribe to everything; else "p00000"... */
static double g_pub_rate; /* the publisher's own rate in the last fanout() */

int g_fan_hwm = 1000; /* the PUB's SNDHWM (0: nothing dropped, all delivered) */

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
    struct fan_report rep = {0, 0, 0, 0};
    uint64_t first = 0, last = 0, cpu0 = 0;
    int idle = 0;
    for (;;) {
        int rc = ferry_recv(s, buf, sizeof buf, &n, 0);
        if (rc == FERRY_ETIMEDOUT && (rep.got > 0 || ++idle >= 100))
            break; /* the stream ended, or never came (30 s) */
        if (rc != 0)
            continue;
        if (rep.got++ == 0) {
            first = last = bench_now_ns();
            cpu0 = bench_cpu_ns();
        } else if (rep.got % FAN_STAMP == 0) {
            last = bench_now_ns();
            rep.timed = rep.got - 1;
        }
    }
    rep.ns = last - first;
    rep.cpu_ns = rep.got > 0 ? bench_cpu_ns() - cpu0 : 0; /* a wake-up at the end, no more */
    if (write(res_fd, &rep, sizeof rep) != sizeof rep)
        _exit(3);
    ferry_close(s);
}

const char *g_fan_scheme = "shm";
int g_fan_proxy;     /* fanout: a tcp:// PUB, a proxy, the SUBs on shm:// */
double g_pub_cpu_ns; /* the publisher process's CPU per message, last fanout() */
double g_sub_cpu_ns; /* a subscriber's CPU per message received (median), last fanout() */

void fanout(struct result *r, int reps, int nsubs)
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
        double rates[16], cpus[16], total = 0;
        for (int i = 0; i < nsubs; i++) {
            struct fan_report rep = {0, 0, 1, 0};
            if (read(res[0], &rep, sizeof rep) != sizeof rep)
                rep.got = rep.timed = 0;
            rates[i] = rep.ns ? (double)rep.timed / ((double)rep.ns / 1e9) : 0;
            cpus[i] = rep.got > 1 ? (double)rep.cpu_ns / (double)(rep.got - 1) : 0;
            total += (double)rep.got;
        }
        /* the publisher's CPU until every subscriber is done: its I/O thread's
         * writes included */
        g_pub_cpu_ns = (double)(bench_cpu_ns() - c0) / (double)bench_iters;
        double sp;
        rate[k] = bench_median(rates, nsubs, &sp);
        g_sub_cpu_ns = bench_median(cpus, nsubs, &sp);
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

/* ferry over shm://: REQ/REP by way of waiting, PUB/SUB fan-out, a PUB's
 * prefix matching, PUSH/PULL copying and zero-copy by size. */
void shm_suite(const struct bench_args *a)
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
