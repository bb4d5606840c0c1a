/*
 * bench_flow.h - what the suites of cmd_bench.c, bench_shm.c, bench_net.c
 * and bench_proxy.c share beyond bench.h: the command line, the baselines
 * a latency row is measured against, the two flows that more than one
 * suite runs (PUB/SUB fan-out and PUSH/PULL, bench_shm.c), and the
 * settings those flows read.
 *
 * The settings are globals rather than arguments because the processes
 * that measure are forked: a peer reads them in its copy of the parent's
 * memory, as they were when it was forked. A suite sets the ones it needs
 * before each run.
 */
#ifndef FERRY_BENCH_FLOW_H
#define FERRY_BENCH_FLOW_H

#include "bench.h"

#include <stddef.h>

/* What the command line asked for (cmd_bench.c parses it). */
struct bench_args {
    int quick, reps;
    const char *json, *plot;
    size_t sizes[8];
    int nsizes;
    char **suites;
    int nsuites;
    long lat_iters, sleep_iters; /* round trips a latency repetition times */
};

/* --- cmd_bench.c ------------------------------------------------------------- */

/* The size in bytes of the messages the flow being measured sends. */
extern size_t g_size;

/* shm://: bench_open_ferry() populates the rings at connection set-up
 * (FERRY_OPT_RING_PREFAULT); set for the shm suite's "rings prefaulted" row. */
extern int g_prefault;

/* The kernel IPC a raw row, or a baseline's raw_once(), uses. */
enum { RAW_UNIX, RAW_PIPE, RAW_TCP, RAW_EVENTFD };

/* A baseline a latency row is measured against, rep by rep: its own run
 * (once), with its own iterations and raw kind (the globals once reads). */
struct baseline {
    const char *name; /* "limit", "pipe", "unix", "tcp" */
    void (*once)(struct hist *);
    long iters;
    int raw;
};

/* One repetition of the cache-line ping-pong between two processes (the
 * limit), and of the raw kernel IPC ping-pong: baselines' once(). */
void cl_once(struct hist *h);
void raw_once(struct hist *h);

/* bench_latency(), with the baseline b run before each repetition: r gets
 * its own medians and the medians of the pairs' ratios. */
void latency_vs(struct result *r, int reps, void (*once)(struct hist *), const struct baseline *b);

/* Messages in one lap of a stream row of that size: about 64 MiB (quick)
 * or 256 MiB of them, within fixed bounds. */
long stream_iters(int quick, size_t size);

/* Sets bench_iters so that one run of once() lasts about the run's time
 * budget, at most cap messages (a short pilot run gives the rate). */
void size_by_time(double (*once)(void), long cap);

/* --- bench_shm.c ---------------------------------------------------------------- */

/* The FERRY_OPT_SPIN of the shm:// REQ/REP and PUSH/PULL sockets: busy-poll
 * for that many microseconds; 0 sleeps, -1 is the default (adaptive). */
extern int g_spin_us;

/* pushpull_once(): the message is written and read in place (ferry_msg),
 * not copied in and out. */
extern int g_zero_copy;

/* pushpull_once(): through a ferry_proxy process (PULL->PUSH). */
extern int g_pp_proxy;

/* fanout(): the prefixes each subscriber holds, every message matching
 * one of them ("p00000"...); 0 subscribes to everything. */
extern int g_fan_prefixes;

/* fanout(): the PUB's SNDHWM, 1000; 0 for no message limit, and then the
 * subscribers have no RCVHWM either. */
extern int g_fan_hwm;

/* fanout(): the transport, "shm", "ipc" or "tcp" ("shm" unless a suite
 * changes it for a run). */
extern const char *g_fan_scheme;

/* fanout(): a tcp:// PUB, a ferry_proxy process (XSUB->XPUB), the
 * subscribers on shm://. */
extern int g_fan_proxy;

/* The publisher process's CPU per message in fanout()'s last repetition,
 * up to when every subscriber was done (its I/O thread's work included). */
extern double g_pub_cpu_ns;
extern double g_sub_cpu_ns;

/* shm:// PUSH/PULL, bench_iters messages of g_size bytes to a PULL process:
 * messages per second until it has them all, 0 on a failure. */
double pushpull_once(void);

/* PUB/SUB fan-out of 64-byte messages to nsubs SUB processes, reps times
 * with bench_iters messages: r gets the median rate per subscriber and the
 * fraction dropped. */
void fanout(struct result *r, int reps, int nsubs);

/* The shm suite: REQ/REP by way of waiting, PUB/SUB fan-out, a PUB's
 * prefix matching, PUSH/PULL copying and zero-copy by size. */
void shm_suite(const struct bench_args *a);

/* --- bench_net.c ---------------------------------------------------------------- */

/* The ipc, tcp or inproc suite (tr): ferry, libzmq and nng. */
void net_suite(const char *tr, int quick, int reps, long lat_iters, const size_t *sizes,
               int nsizes);
/* The curve suite: tcp:// with CURVE, ferry and libzmq. */
void curve_suite(int quick, int reps, long lat_iters);
/* Ends nng's server process, if a suite started it (once, at the end). */
void nn_server_stop(void);

/* --- bench_proxy.c -------------------------------------------------------------- */

/* A tcp:// stream fanned out through the proxy; the proxy's forwarding
 * cost on shm:// and, against zmq_proxy, on tcp://. */
void proxy_fanout_suite(int quick, int reps);
void proxy_forward_suite(int quick, int reps);

#endif /* FERRY_BENCH_FLOW_H */
