/*
 * path_cg.c - one thread owning both ends of an shm:// connection, for
 * counting the instructions of the message path with callgrind, where no
 * cache line moves between CPUs and every run counts the same
 * (docs/benchmarks.md, "Instructions per message").
 *
 *   valgrind --tool=callgrind ./build/ferry_path_cg MODE 10000
 *   valgrind --tool=callgrind ./build/ferry_path_cg MODE 20000
 *
 * The difference of the two totals divided by 10,000 is one message's
 * cost without the set-up. MODE: pp (PUSH -> PULL, ferry_send and
 * ferry_recv), rr (a REQ/REP round trip), zc (PUSH -> PULL zero-copy:
 * ferry_msg_alloc/_send, ferry_msg_recv/_free), ps (PUB -> SUB), fan (PUB
 * -> 8 SUBs, each message received by all 8): 64-byte messages; fwd (PUSH
 * -> PULL, each message forwarded part by part with ferry_msg_recv and
 * ferry_msg_send to a PUSH -> PULL, as a proxy does: a 3-part message, a
 * 5-byte id, an empty delimiter and a 1,024-byte body). Run without
 * valgrind it takes the same loop's time.
 */
#include <ferry.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define FAN_MORE 7

static int one_zero_copy(ferry_socket *tx, ferry_socket *rx)
{
    ferry_msg *m, *r;
    if (ferry_msg_alloc(tx, &m, 64) != 0)
        return -1;
    memset(ferry_msg_data(m), 1, 64);
    if (ferry_msg_send(tx, m, 0) != 0) {
        ferry_msg_free(m);
        return -1;
    }
    if (ferry_msg_recv(rx, &r, 0) != 0)
        return -1;
    ferry_msg_free(r);
    return 0;
}

/* The fwd mode: FWD_BODY bytes in the body. */
#define FWD_BODY 1024

static int open_pair(ferry_socket **tx, ferry_socket **rx, const char *tag)
{
    char url[64];
    snprintf(url, sizeof url, "shm://path-cg-%s-%d", tag, (int)getpid());
    if (ferry_socket_open(rx, FERRY_PULL) != 0 || ferry_socket_open(tx, FERRY_PUSH) != 0 ||
        ferry_listen(*rx, url) != 0 || ferry_dial(*tx, url) != 0 ||
        ferry_wait_peers(*tx, 1, 5000) != 0) {
        fprintf(stderr, "ferry_path_cg: set-up: %s\n", ferry_errdetail());
        return -1;
    }
    return 0;
}

/* One message through the forwarder: sent in 3 parts, received in place,
 * forwarded part by part, received at the end. */
static int forward_one(ferry_socket *feed, ferry_socket *src, ferry_socket *dst, ferry_socket *sink)
{
    static char body[FWD_BODY], in[FWD_BODY];
    size_t len;
    if (ferry_send(feed, "id-01", 5, FERRY_MORE) || ferry_send(feed, "", 0, FERRY_MORE) ||
        ferry_send(feed, body, sizeof body, 0))
        return -1;
    for (int more = 1; more;) {
        ferry_msg *m;
        if (ferry_msg_recv(src, &m, 0) != 0)
            return -1;
        more = ferry_msg_more(m);
        if (ferry_msg_send(dst, m, more ? FERRY_MORE : 0) != 0)
            return -1;
    }
    for (int k = 0; k < 3; k++)
        if (ferry_recv(sink, in, sizeof in, &len, 0) != 0)
            return -1;
    return 0;
}

static int forward_loop(long n)
{
    ferry_socket *feed, *src, *dst, *sink;
    if (open_pair(&feed, &src, "in") != 0 || open_pair(&dst, &sink, "out") != 0)
        return 1;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long i = 0; i < n; i++)
        if (forward_one(feed, src, dst, sink) != 0) {
            fprintf(stderr, "ferry_path_cg: message %ld: %s\n", i, ferry_errdetail());
            return 1;
        }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ns = (double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec);
    printf("fwd: %ld messages, %.0f ns each\n", n, ns / (double)n);
    ferry_close(feed);
    ferry_close(src);
    ferry_close(dst);
    ferry_close(sink);
    return 0;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    long n = argc > 2 ? atol(argv[2]) : 0;
    int rr = !strcmp(mode, "rr"), zc = !strcmp(mode, "zc"), fan = !strcmp(mode, "fan");
    int ps = fan || !strcmp(mode, "ps"), fwd = !strcmp(mode, "fwd");
    if ((!rr && !zc && !ps && !fwd && strcmp(mode, "pp") != 0) || n < 1 || n > 100000000) {
        fprintf(stderr, "usage: ferry_path_cg pp|rr|zc|ps|fan|fwd MESSAGES (1-100000000)\n");
        return 2;
    }
    if (fwd)
        return forward_loop(n);
    char url[64];
    snprintf(url, sizeof url, "shm://path-cg-%d", (int)getpid());
    ferry_socket *rx, *tx; /* the receiving end listens, but a PUB does */
    if (ferry_socket_open(&rx, rr   ? FERRY_REP
                               : ps ? FERRY_SUB
                                    : FERRY_PULL) != 0 ||
        ferry_socket_open(&tx, rr   ? FERRY_REQ
                               : ps ? FERRY_PUB
                                    : FERRY_PUSH) != 0)
        return 1;
    if (ps)
        ferry_setopt(rx, FERRY_OPT_SUBSCRIBE, "", 0);
    ferry_socket *lis = ps ? tx : rx, *dia = ps ? rx : tx;
    ferry_socket *more[FAN_MORE]; /* fan: the other 7 subscribers */
    int nmore = fan ? FAN_MORE : 0;
    for (int i = 0; i < nmore; i++)
        if (ferry_socket_open(&more[i], FERRY_SUB) != 0 ||
            ferry_setopt(more[i], FERRY_OPT_SUBSCRIBE, "", 0) != 0)
            return 1;
    int ok = ferry_listen(lis, url) == 0 && ferry_dial(dia, url) == 0;
    for (int i = 0; i < nmore && ok; i++)
        ok = ferry_dial(more[i], url) == 0 && ferry_wait_peers(more[i], 1, 5000) == 0;
    if (!ok || ferry_wait_peers(tx, 1 + nmore, 5000) != 0 || ferry_wait_peers(rx, 1, 5000) != 0) {
        fprintf(stderr, "ferry_path_cg: set-up: %s\n", ferry_errdetail());
        return 1;
    }
    char out[64] = {0}, in[256];
    size_t len;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long i = 0; i < n; i++) {
        int rc =
            zc ? one_zero_copy(tx, rx)
               : ferry_send(tx, out, sizeof out, 0) || ferry_recv(rx, in, sizeof in, &len, 0) ||
                     (rr && (ferry_send(rx, in, len, 0) || ferry_recv(tx, in, sizeof in, &len, 0)));
        for (int k = 0; k < nmore && rc == 0; k++)
            rc = ferry_recv(more[k], in, sizeof in, &len, 0);
        if (rc != 0) {
            fprintf(stderr, "ferry_path_cg: message %ld: %s\n", i, ferry_errdetail());
            return 1;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ns = (double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec);
    printf("%s: %ld messages, %.0f ns each\n", mode, n, ns / (double)n);
    ferry_close(tx);
    ferry_close(rx);
    for (int i = 0; i < nmore; i++)
        ferry_close(more[i]);
    return 0;
}
