/*
 * bench_proxy.c - `ferry bench proxy`: a tcp:// PUB fanned out through
 * ferry_proxy to 8 subscribers on shm://, against 8 subscribers on tcp://
 * directly (the rate per subscriber, the publisher's CPU); PUSH->proxy->PULL
 * on shm:// against PUSH->PULL; and the chain over tcp://, ferry's sockets
 * and ferry_proxy against libzmq's sockets and zmq_proxy. Each pair is
 * interleaved repetition by repetition, so the machine's drift falls on
 * both.
 *
 * The shm:// flows are bench_shm.c's (fanout, pushpull_once), sent through
 * its proxy process by g_fan_proxy and g_pp_proxy; the tcp:// chain is this
 * file's, one library end to end.
 */
#include "bench_flow.h"

#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

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
 * puller at arg (its endpoint); runs until killed, free to run on every
 * CPU. */
static void chain_proxy(void *arg)
{
    const char *puller = arg;
    bench_unpin();
    void *front = g_xbe->open(FERRY_PULL), *back = g_xbe->open(FERRY_PUSH);
    char ep[256] = "";
    if (g_xbe->listen(front, "tcp://127.0.0.1:0", ep, sizeof ep) != 0 ||
        g_xbe->dial(back, puller) != 0 || write(g_xpipe[1], ep, sizeof ep) != (ssize_t)sizeof ep)
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
        px = bench_spawn(chain_proxy, ep);
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
void proxy_fanout_suite(int quick, int reps)
{
    static char labels[3][80];
    struct result tmp;
    double via[16], direct[16], ratio[16], cv[16], cd[16], c1[16], dv[16], dd[16], flat[16], sp;
    double sv[16], sd[16]; /* the subscribers' CPU per message */
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
        sv[k] = g_sub_cpu_ns;
        g_fan_proxy = 0;
        g_fan_scheme = "tcp";
        fanout(&tmp, 1, 8);
        direct[k] = tmp.value;
        dd[k] = tmp.dropped;
        cd[k] = g_pub_cpu_ns;
        sd[k] = g_sub_cpu_ns;
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
    r->sub_cpu_ns = bench_median(sv, reps, &sp);
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
    r->sub_cpu_ns = bench_median(sd, reps, &sp);
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
void proxy_forward_suite(int quick, int reps)
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
