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

#endif /* FERRY_BENCH_H */
