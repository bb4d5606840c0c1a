/*
 * bench.h - what the parts of `ferry bench` share: the interface behind
 * which ferry, libzmq and nng are measured the same way (bench_peers.c).
 *
 * A backend is used by one thread at a time. open() never fails (a
 * failure ends the measuring process); the others return 0 on success.
 */
#ifndef FERRY_BENCH_H
#define FERRY_BENCH_H

#include "ferry.h"

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>
#include <sys/types.h>

struct backend {
    const char *name;
    void *(*open)(int type); /* FERRY_REQ, _REP, _PUSH, _PULL, _DEALER, _ROUTER */
    int (*listen)(void *s, const char *url, char *ep, size_t len); /* ep: port resolved */
    int (*dial)(void *s, const char *url);
    int (*send)(void *s, const void *b, size_t n);
    int (*recv)(void *s, void *b, size_t cap);
    void (*close)(void *s);
    /* multipart, for DEALER and ROUTER (NULL: the peer has no ROUTER) */
    int (*send_part)(void *s, const void *b, size_t n, int more);
    int (*recv_part)(void *s, void *b, size_t cap, size_t *n, int *more);
    /* moves messages front -> back until the process ends (NULL: none) */
    int (*proxy)(void *front, void *back);
};

extern const struct backend bench_ferry, bench_zmq, bench_nng;

/* Loads libzmq.so.5 / libnng.so.1; 1 if usable. */
int bench_zmq_load(void);
int bench_nng_load(void);

/* inproc://: both libzmq sockets share one context, ended by
 * bench_zmq_term() once both are closed. */
extern int bench_zmq_inproc;
void bench_zmq_term(void);

/* 1: ferry's and libzmq's listeners are CURVE servers (admitting any
 * client key) and their dialers CURVE clients: the tcp suite's "curve"
 * rows. bench_curve_on(1) makes the keys, which the peer processes forked
 * after it share. */
extern int bench_curve;
void bench_curve_on(int on);

/* A ferry socket set up for measuring (cmd_bench.c): timeouts, no HWM,
 * busy-polling for spin microseconds. Exits the process on failure. */
ferry_socket *bench_open_ferry(int type, int spin);

/* One row of the results table and the JSON (cmd_bench.c prints them). */
struct result {
    const char *system, *transport, *pattern, *metric, *latency, *wait, *label;
    size_t size;
    double value, p50, p99, p999, max, spread;
    double dropped; /* PUB/SUB: fraction of deliveries dropped */
    double base;    /* prefix_cost: the baseline's rate (one prefix) */
    double ratio;   /* prefix_cost: bench_median of the interleaved pairs' ratios */
    /* latency rows measured in pairs with a baseline (latency_vs): its name,
     * its p50 and p99 (medians), and the medians of the pairs' ratios */
    const char *vs;
    int prefault; /* shm://: FERRY_OPT_RING_PREFAULT set */
    double vs_p50, vs_p99, vs_ratio, vs_ratio_p99, vs_spread;
    int reps, subscribers;
    int clients;       /* router_fanin: DEALER processes served at once */
    double cpu_ns;     /* proxy_fanout, pubsub_tcp8: the publisher's CPU per message */
    double sub_cpu_ns; /* proxy_fanout, pubsub_direct: a subscriber's CPU per message
                          received (its I/O thread included), the median */
};

/* The results of the run, in the order measured (cmd_bench.c). */
#define BENCH_MAX_RESULTS 512
extern struct result bench_results[BENCH_MAX_RESULTS];
extern int bench_nresults;

/* The table on stdout, the JSON of --json, the SVG of --plot (0 or -1
 * with errno) (bench_report.c). */
void bench_print_table(void);
void bench_write_json(FILE *f);
int bench_write_plot(const char *path);

/* The run's shared helpers (cmd_bench.c). */
extern int bench_ncpus;
struct result *bench_add_result(void);
/* The median of n values; *spread: (max - min) / median. Sorts v. */
double bench_median(double *v, int n, double *spread);
void bench_pin(int cpu);               /* to that CPU, when there are several */
void bench_unpin(void);                /* free to run on every CPU again */
int bench_reap(pid_t pid);             /* waits for pid; its exit code */
void bench_progress(const char *what); /* on a terminal's stderr */
uint64_t bench_now_ns(void);           /* CLOCK_MONOTONIC */
uint64_t bench_cpu_ns(void);           /* the process's CPU time */

/* Latency samples: a log-linear histogram (about 3 % resolution). */
#define HIST_SUB 32
#define HIST_BUCKETS (64 + 40 * HIST_SUB)
struct hist {
    uint64_t n, max;
    uint64_t b[HIST_BUCKETS];
};
void bench_hist_add(struct hist *h, uint64_t v);
double bench_hist_pct(const struct hist *h, double p); /* p in [0, 1] */

/* Runs once() reps times, each into a fresh histogram, and records the
 * medians of their percentiles in r. */
void bench_latency(struct result *r, int reps, void (*once)(struct hist *));
/* r is a round trip: the medians of its repetitions' p50, p99, p99.9 and
 * max (each array reps long; sorted in place). */
void bench_set_round_trip(struct result *r, int reps, double *p50, double *p99, double *p999,
                          double *mx);
/* run(h, base_arg) then run(h, arg), rep by rep (interleaved, so the
 * machine's drift falls on both): r gets the second's round trips, the
 * first's p50 as its base, and the median of the pairs' p50 ratios. */
void bench_versus(struct result *r, int reps, void (*run)(struct hist *, int), int base_arg,
                  int arg);

/* What a measurement's processes share: the message count, the endpoint,
 * and a pipe on which the children report (set before bench_spawn). */
extern long bench_iters;
extern char bench_url[128];
extern int bench_pipe[2];
pid_t bench_spawn(void (*fn)(void *), void *arg);   /* a child on CPU 1 running fn */
int bench_full_read(int fd, char *buf, size_t len); /* 0, or -1 (end or error) */

/* The shm:// broadcast pool: PUB/SUB of large messages with the pool and
 * with copies, interleaved (bench_bcast.c). */
void bench_bcast_suite(int quick, int reps);

/* DEALER/ROUTER against REQ/REP, a ROUTER's fan-in (bench_router.c); a
 * poller over 1,000 idle sockets (bench_poller.c). */
void bench_router_suite(int quick, int reps);
void bench_poller_suite(int quick, int reps);

#endif /* FERRY_BENCH_H */
