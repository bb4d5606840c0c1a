/* test_socket.c - messaging sockets over shm://, across processes: every
 * pattern, multipart, timeouts, HWM, zero-copy, the pollable fd, refusals. */
#include "../common.h"
#include "core/sock.h" /* test_pipe_ids_wrap sets the id counter */

#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sys/resource.h>

static ferry_socket *sock(int type)
{
    ferry_socket *s;
    assert_int_equal(ferry_socket_open(&s, type), 0);
    assert_int_equal(ferry_setopt_int(s, FERRY_OPT_RCVTIMEO, 10000), 0);
    assert_int_equal(ferry_setopt_int(s, FERRY_OPT_SNDTIMEO, 10000), 0);
    return s;
}

static ferry_socket *child_sock(int type, const char *u, int dial)
{
    t_die_with_parent();
    ferry_socket *s;
    CHILD_CHECK(ferry_socket_open(&s, type) == 0, 90);
    ferry_setopt_int(s, FERRY_OPT_RCVTIMEO, 10000);
    ferry_setopt_int(s, FERRY_OPT_SNDTIMEO, 10000);
    CHILD_CHECK((dial ? ferry_dial(s, u) : ferry_listen(s, u)) == 0, 91);
    return s;
}

static void test_bad_args(void **state)
{
    (void)state;
    ferry_socket *s;
    assert_int_equal(ferry_socket_open(&s, 99), FERRY_EINVAL);
    s = sock(FERRY_PAIR);
    assert_int_equal(ferry_listen(s, "nope"), FERRY_EBADURL);
    assert_int_equal(ferry_listen(s, "tcpx://a"), FERRY_EBADURL);
    assert_int_equal(ferry_listen(s, "shm://bad/name"), FERRY_EBADURL);
    assert_int_equal(ferry_listen(s, "shm://"), FERRY_EBADURL);
    assert_int_equal(ferry_dial(s, "shm://..x"), FERRY_EBADURL);
    assert_int_equal(ferry_dial(s, NULL), FERRY_EBADURL);
    assert_int_equal(ferry_setopt_int(s, FERRY_OPT_RING_SIZE, 100), FERRY_EINVAL);
    assert_int_equal(ferry_setopt_int(s, FERRY_OPT_SUBSCRIBE, 1), FERRY_ENOTSUP);
    assert_int_equal(ferry_setopt_int(s, 12345, 1), FERRY_ENOTSUP);
    int64_t v;
    assert_int_equal(ferry_getopt_int(s, FERRY_OPT_TYPE, &v), 0);
    assert_int_equal(v, FERRY_PAIR);
    ferry_close(s);
    s = sock(FERRY_PULL);
    assert_int_equal(ferry_send(s, "x", 1, 0), FERRY_ENOTSUP);
    ferry_close(s);
    s = sock(FERRY_PUSH);
    char b[4];
    size_t n;
    assert_int_equal(ferry_recv(s, b, 4, &n, 0), FERRY_ENOTSUP);
    assert_int_equal(ferry_close(NULL), 0);
    ferry_close(s);
}

static void test_listen_conflict(void **state)
{
    (void)state;
    char u[96];
    t_url(u, sizeof u, "busy");
    ferry_socket *a = sock(FERRY_PULL), *b = sock(FERRY_PULL);
    assert_int_equal(ferry_listen(a, u), 0);
    assert_int_equal(ferry_listen(b, u), FERRY_EADDRINUSE);
    ferry_close(a); /* the name is free at once: nothing left behind */
    assert_int_equal(ferry_listen(b, u), 0);
    ferry_close(b);
}

/* PAIR, both directions, sizes around the record and ring limits. */
static void test_pair_sizes(void **state)
{
    (void)state;
    static const size_t sizes[] = {0, 1, 7, 8, 255, 256, 4096, 65536, 300000, 3u << 20};
    char u[96];
    t_url(u, sizeof u, "pair");
    ferry_socket *s = sock(FERRY_PAIR);
    assert_int_equal(ferry_setopt_int(s, FERRY_OPT_RING_SIZE, 1 << 20), 0);
    assert_int_equal(ferry_listen(s, u), 0);
    pid_t pid = fork();
    if (pid == 0) { /* echo every message back */
        ferry_socket *c = child_sock(FERRY_PAIR, u, 1);
        unsigned char *buf = malloc(4u << 20);
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            size_t n;
            CHILD_CHECK(ferry_recv(c, buf, 4u << 20, &n, 0) == 0, 1);
            CHILD_CHECK(n == sizes[i], 2);
            CHILD_CHECK(ferry_send(c, buf, n, 0) == 0, 3);
        }
        ferry_close(c);
        _exit(0);
    }
    unsigned char *out = malloc(4u << 20), *in = malloc(4u << 20);
    for (size_t i = 0; i < 4u << 20; i++)
        out[i] = (unsigned char)(i * 131 + 7);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = 0;
        assert_int_equal(ferry_send(s, out, sizes[i], 0), 0);
        assert_int_equal(ferry_recv(s, in, 4u << 20, &n, 0), 0);
        assert_int_equal(n, sizes[i]);
        if (n > 0)
            assert_memory_equal(in, out, n);
    }
    assert_int_equal(t_wait(pid), 0);
    free(out);
    free(in);
    ferry_close(s);
}

/* A second PAIR peer is refused while the first is connected. */
static void test_pair_one_peer(void **state)
{
    (void)state;
    char u[96];
    t_url(u, sizeof u, "pair1");
    ferry_socket *s = sock(FERRY_PAIR), *a = sock(FERRY_PAIR), *b = sock(FERRY_PAIR);
    assert_int_equal(ferry_listen(s, u), 0);
    assert_int_equal(ferry_dial(a, u), 0);
    assert_int_equal(ferry_send(a, "first", 5, 0), 0);
    char buf[16];
    size_t n;
    assert_int_equal(ferry_recv(s, buf, sizeof buf, &n, 0), 0);
    assert_int_equal(ferry_dial(b, u), FERRY_EADDRINUSE);
    assert_non_null(strstr(ferry_errdetail(), "already has a peer"));
    ferry_close(a);
    ferry_close(b);
    ferry_close(s);
}

static void test_incompatible_type(void **state)
{
    (void)state;
    char u[96];
    t_url(u, sizeof u, "types");
    ferry_socket *s = sock(FERRY_REP), *c = sock(FERRY_PUSH);
    assert_int_equal(ferry_listen(s, u), 0);
    assert_int_equal(ferry_dial(c, u), FERRY_EPEERTYPE);
    assert_non_null(strstr(ferry_errdetail(), "push"));
    ferry_close(c);
    c = sock(FERRY_REQ);
    assert_int_equal(ferry_dial(c, u), 0);
    ferry_close(c);
    ferry_close(s);
}

/* REP serves several REQ processes and routes each reply to its asker. */
static void test_reqrep_routing(void **state)
{
    (void)state;
    enum { N = 3, ROUNDS = 2000 };
    char u[96];
    t_url(u, sizeof u, "rr");
    pid_t pids[N]; /* forked before this process has a socket (and its thread) */
    for (int k = 0; k < N; k++) {
        pids[k] = fork();
        if (pids[k] == 0) {
            ferry_socket *c = child_sock(FERRY_REQ, u, 1);
            for (int i = 0; i < ROUNDS; i++) {
                char req[32], rep[64];
                size_t n;
                int len = snprintf(req, sizeof req, "%d:%d", k, i);
                CHILD_CHECK(ferry_send(c, req, (size_t)len, 0) == 0, 1);
                CHILD_CHECK(ferry_send(c, req, 1, 0) == FERRY_ESTATE, 2);
                CHILD_CHECK(ferry_recv(c, rep, sizeof rep, &n, 0) == 0, 3);
                CHILD_CHECK(n == (size_t)len + 3 && memcmp(rep, "re:", 3) == 0 &&
                                memcmp(rep + 3, req, (size_t)len) == 0,
                            4);
            }
            ferry_close(c);
            _exit(0);
        }
    }
    ferry_socket *s = sock(FERRY_REP); /* the children dial until it listens */
    assert_int_equal(ferry_listen(s, u), 0);
    char buf[64], rep[80];
    size_t n;
    assert_int_equal(ferry_send(s, "x", 1, 0), FERRY_ESTATE);
    for (int i = 0; i < N * ROUNDS; i++) {
        assert_int_equal(ferry_recv(s, buf, sizeof buf, &n, 0), 0);
        memcpy(rep, "re:", 3);
        memcpy(rep + 3, buf, n);
        assert_int_equal(ferry_send(s, rep, n + 3, 0), 0);
    }
    for (int k = 0; k < N; k++)
        assert_int_equal(t_wait(pids[k]), 0);
    ferry_close(s);
}

/* A REP dies with the request: REQ's recv fails with ECONNRESET; with
 * REQ_RESEND the request goes to the other REP instead. */
static void test_req_peer_dies(void **state)
{
    (void)state;
    for (int resend = 0; resend < 2; resend++) {
        char u1[96], u2[96];
        t_url(u1, sizeof u1, "reqdie");
        t_url(u2, sizeof u2, "reqok");
        struct t_pipe got;
        t_pipe_open(&got);
        pid_t dier = fork();
        if (dier == 0) { /* receives one request, says so, never replies */
            ferry_socket *r = child_sock(FERRY_REP, u1, 0);
            char b[16];
            size_t n;
            t_pipe_send(&got, 'L');
            CHILD_CHECK(ferry_recv(r, b, sizeof b, &n, 0) == 0, 1);
            t_pipe_send(&got, 'r');
            for (;;)
                pause();
        }
        assert_int_equal(t_pipe_recv(&got), 'L');
        ferry_socket *c = sock(FERRY_REQ);
        assert_int_equal(ferry_setopt_int(c, FERRY_OPT_REQ_RESEND, resend), 0);
        assert_int_equal(ferry_dial(c, u1), 0);
        /* the dialer retries until the listener is up; send waits for it */
        assert_int_equal(ferry_send(c, "ping", 4, 0), 0);
        assert_int_equal(t_pipe_recv(&got), 'r');
        pid_t okpid = -1;
        if (resend) { /* a second REP in another process */
            okpid = fork();
            if (okpid == 0) {
                ferry_socket *ok = child_sock(FERRY_REP, u2, 0);
                char b[16];
                size_t n;
                t_pipe_send(&got, 'L');
                CHILD_CHECK(ferry_recv(ok, b, sizeof b, &n, 0) == 0, 1);
                CHILD_CHECK(n == 4 && memcmp(b, "ping", 4) == 0, 2);
                CHILD_CHECK(ferry_send(ok, "pong", 4, 0) == 0, 3);
                ferry_close(ok);
                _exit(0);
            }
            assert_int_equal(t_pipe_recv(&got), 'L');
            assert_int_equal(ferry_dial(c, u2), 0);
        }
        kill(dier, SIGKILL);
        assert_int_equal(t_wait(dier), 128 + SIGKILL);
        char b[16];
        size_t n;
        if (!resend) {
            assert_int_equal(ferry_recv(c, b, sizeof b, &n, 0), FERRY_ECONNRESET);
        } else {
            assert_int_equal(ferry_recv(c, b, sizeof b, &n, 0), 0);
            assert_int_equal(n, 4);
            assert_memory_equal(b, "pong", 4);
            assert_int_equal(t_wait(okpid), 0);
        }
        /* either way the REQ may send again */
        assert_int_equal(ferry_recv(c, b, sizeof b, &n, FERRY_DONTWAIT), FERRY_ESTATE);
        ferry_close(c);
        t_pipe_close(&got);
    }
}

/* Subscribes and waits until the publisher's "sync" messages arrive, so
 * that the subscription is known to be in place. */
static void sub_sync(ferry_socket *sub)
{
    char b[64];
    size_t n;
    CHILD_CHECK(ferry_setopt(sub, FERRY_OPT_SUBSCRIBE, "sync", 4) == 0, 80);
    for (;;) {
        CHILD_CHECK(ferry_recv(sub, b, sizeof b, &n, 0) == 0, 81);
        if (n >= 4 && memcmp(b, "sync", 4) == 0)
            break;
    }
    CHILD_CHECK(ferry_setopt(sub, FERRY_OPT_UNSUBSCRIBE, "sync", 4) == 0, 82);
}

/* The publisher sends "sync" until every subscriber has said (through the
 * pipe) that it got one. */
static void pub_sync(ferry_socket *pub, struct t_pipe *ready, int subscribers)
{
    int seen = 0;
    uint64_t give_up = t_now_ms() + 10000;
    while (seen < subscribers) {
        assert_true(t_now_ms() < give_up);
        assert_int_equal(ferry_send(pub, "sync", 4, 0), 0);
        struct pollfd pfd = {.fd = ready->r, .events = POLLIN};
        if (poll(&pfd, 1, 2) == 1 && t_pipe_recv(ready) == 's')
            seen++;
    }
}

static void test_pubsub_filter(void **state)
{
    (void)state;
    char u[96];
    t_url(u, sizeof u, "pubsub");
    struct t_pipe ready;
    t_pipe_open(&ready);
    const char *prefixes[2] = {"a", "b"};
    pid_t pids[2];
    for (int k = 0; k < 2; k++) {
        pids[k] = fork();
        if (pids[k] == 0) {
            ferry_socket *sub;
            CHILD_CHECK(ferry_socket_open(&sub, FERRY_SUB) == 0, 90);
            ferry_setopt_int(sub, FERRY_OPT_RCVTIMEO, 10000);
            ferry_setopt_int(sub, FERRY_OPT_RCVHWM, 0);
            CHILD_CHECK(ferry_dial(sub, u) == 0, 91);
            CHILD_CHECK(ferry_setopt(sub, FERRY_OPT_SUBSCRIBE, prefixes[k], 1) == 0, 1);
            sub_sync(sub);
            t_pipe_send(&ready, 's');
            int got = 0;
            for (;;) {
                char b[64];
                size_t n;
                CHILD_CHECK(ferry_recv(sub, b, sizeof b, &n, 0) == 0, 2);
                if (n == 4 && memcmp(b + 1, "end", 3) == 0)
                    break;
                if (memcmp(b, "sync", 4) == 0)
                    continue; /* sent before the unsubscribe took effect */
                CHILD_CHECK(b[0] == prefixes[k][0], 3);
                got++;
            }
            _exit(got == 1000 ? 0 : 4);
        }
    }
    ferry_socket *pub = sock(FERRY_PUB); /* after the forks */
    /* no HWM: this test checks filtering, so nothing may be dropped */
    assert_int_equal(ferry_setopt_int(pub, FERRY_OPT_SNDHWM, 0), 0);
    assert_int_equal(ferry_listen(pub, u), 0);
    pub_sync(pub, &ready, 2);
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(ferry_send(pub, "a-msg", 5, 0), 0);
        assert_int_equal(ferry_send(pub, "b-msg", 5, 0), 0);
        assert_int_equal(ferry_send(pub, "c-msg", 5, 0), 0); /* nobody */
    }
    assert_int_equal(ferry_send(pub, "aend", 4, 0), 0);
    assert_int_equal(ferry_send(pub, "bend", 4, 0), 0);
    for (int k = 0; k < 2; k++)
        assert_int_equal(t_wait(pids[k]), 0);
    int64_t dropped;
    assert_int_equal(ferry_getopt_int(pub, FERRY_OPT_DROPPED, &dropped), 0);
    assert_int_equal(dropped, 0);
    ferry_close(pub);
    t_pipe_close(&ready);
}

/* More subscriptions than the SUB-to-PUB ring holds: they queue and all
 * arrive as the PUB takes them in. */
static void test_many_subscriptions(void **state)
{
    (void)state;
    enum { NSUBS = 300 };
    char u[96];
    t_url(u, sizeof u, "manysubs");
    struct t_pipe done;
    t_pipe_open(&done);
    pid_t pid = fork(); /* before this process has a socket */
    if (pid == 0) {
        t_die_with_parent();
        ferry_socket *sub;
        CHILD_CHECK(ferry_socket_open(&sub, FERRY_SUB) == 0, 90);
        ferry_setopt_int(sub, FERRY_OPT_RING_SIZE, 4096);
        ferry_setopt_int(sub, FERRY_OPT_RCVTIMEO, 20000);
        char pfx[48];
        for (int i = 0; i < NSUBS; i++) {
            int n = snprintf(pfx, sizeof pfx, "prefix-%03d-%-28s", i, "x");
            CHILD_CHECK(ferry_setopt(sub, FERRY_OPT_SUBSCRIBE, pfx, (size_t)n) == 0, 1);
        }
        CHILD_CHECK(ferry_dial(sub, u) == 0, 2);
        char b[128];
        size_t n;
        CHILD_CHECK(ferry_recv(sub, b, sizeof b, &n, 0) == 0, 3);
        CHILD_CHECK(memcmp(b, "prefix-299-", 11) == 0, 4);
        t_pipe_send(&done, 'd');
        ferry_close(sub);
        _exit(0);
    }
    ferry_socket *pub = sock(FERRY_PUB);
    assert_int_equal(ferry_setopt_int(pub, FERRY_OPT_RING_SIZE, 4096), 0);
    assert_int_equal(ferry_listen(pub, u), 0);
    char msg[64];
    int n = snprintf(msg, sizeof msg, "prefix-299-%-28s!", "x");
    uint64_t give_up = t_now_ms() + 20000;
    for (;;) {
        assert_true(t_now_ms() < give_up);
        assert_int_equal(ferry_send(pub, msg, (size_t)n, 0), 0); /* takes in subscriptions */
        struct pollfd pfd = {.fd = done.r, .events = POLLIN};
        if (poll(&pfd, 1, 2) == 1)
            break;
    }
    assert_int_equal(t_pipe_recv(&done), 'd');
    assert_int_equal(t_wait(pid), 0);
    ferry_close(pub);
    t_pipe_close(&done);
}

/* The PUB filters on its side: a subscriber that never reads is not sent
 * the messages it did not subscribe to, so its queue never fills and
 * nothing is dropped; messages it did subscribe to are dropped past the
 * HWM and counted, and the PUB never blocks. */
static void test_pub_filters_and_drops(void **state)
{
    (void)state;
    char u[96];
    t_url(u, sizeof u, "pubhwm");
    ferry_socket *pub = sock(FERRY_PUB);
    assert_int_equal(ferry_setopt_int(pub, FERRY_OPT_SNDHWM, 10), 0);
    assert_int_equal(ferry_listen(pub, u), 0);
    struct t_pipe ready, go;
    t_pipe_open(&ready);
    t_pipe_open(&go);
    pid_t pid = fork();
    if (pid == 0) {
        ferry_socket *sub = child_sock(FERRY_SUB, u, 1);
        CHILD_CHECK(ferry_setopt(sub, FERRY_OPT_SUBSCRIBE, "yes", 3) == 0, 1);
        sub_sync(sub);
        t_pipe_send(&ready, 's');
        t_pipe_recv(&go); /* read only when told */
        char b[64];
        size_t n;
        int got = 0;
        while (ferry_recv(sub, b, sizeof b, &n, FERRY_DONTWAIT) == 0)
            if (memcmp(b, "yes", 3) == 0)
                got++;
        _exit(got == 10 ? 0 : 1);
    }
    pub_sync(pub, &ready, 1);
    int64_t base;
    ferry_getopt_int(pub, FERRY_OPT_DROPPED, &base); /* extra syncs */
    for (int i = 0; i < 100000; i++)
        assert_int_equal(ferry_send(pub, "no-thanks", 9, FERRY_DONTWAIT), 0);
    int64_t dropped;
    assert_int_equal(ferry_getopt_int(pub, FERRY_OPT_DROPPED, &dropped), 0);
    assert_int_equal(dropped, base); /* filtered at the publisher */
    /* the syncs already queued may count against the HWM: drain them
     * first by letting the child read everything at the end */
    for (int i = 0; i < 100; i++)
        assert_int_equal(ferry_send(pub, "yes", 3, 0), 0);
    assert_int_equal(ferry_getopt_int(pub, FERRY_OPT_DROPPED, &dropped), 0);
    assert_true(dropped - base >= 90);
    t_pipe_send(&go, 'g');
    int rc = t_wait(pid);
    /* exactly HWM messages were queued; some may be syncs */
    assert_true(rc == 0 || rc == 1);
    ferry_close(pub);
    t_pipe_close(&ready);
    t_pipe_close(&go);
}

/* PUSH load-balances over pullers; PULL fair-queues over pushers, and each
 * pusher's messages arrive in order, none lost or duplicated. */
static void test_pipeline(void **state)
{
    (void)state;
    enum { N = 3, COUNT = 20000 };
    char u[96];
    t_url(u, sizeof u, "pipe");
    pid_t pids[N]; /* forked first; they dial until the PULL listens */
    for (int k = 0; k < N; k++) {
        pids[k] = fork();
        if (pids[k] == 0) {
            ferry_socket *push = child_sock(FERRY_PUSH, u, 1);
            for (uint32_t i = 0; i < COUNT; i++) {
                uint32_t msg[2] = {(uint32_t)k, i};
                CHILD_CHECK(ferry_send(push, msg, sizeof msg, 0) == 0, 1);
            }
            ferry_close(push);
            _exit(0);
        }
    }
    ferry_socket *pull = sock(FERRY_PULL);
    assert_int_equal(ferry_listen(pull, u), 0);
    uint32_t next[N] = {0};
    for (int i = 0; i < N * COUNT; i++) {
        uint32_t msg[2];
        size_t n;
        assert_int_equal(ferry_recv(pull, msg, sizeof msg, &n, 0), 0);
        assert_int_equal(n, sizeof msg);
        assert_true(msg[0] < N);
        assert_int_equal(msg[1], next[msg[0]]);
        next[msg[0]]++;
    }
    for (int k = 0; k < N; k++)
        assert_int_equal(t_wait(pids[k]), 0);
    ferry_close(pull);

    /* one PUSH, two PULLs: round-robin */
    t_url(u, sizeof u, "lb");
    struct t_pipe res, up;
    t_pipe_open(&res);
    t_pipe_open(&up);
    for (int k = 0; k < 2; k++) {
        pids[k] = fork();
        if (pids[k] == 0) {
            ferry_socket *p = child_sock(FERRY_PULL, u, 1);
            t_pipe_send(&up, 'u');
            uint32_t v, last = 0, got = 0;
            size_t n;
            for (;;) {
                CHILD_CHECK(ferry_recv(p, &v, sizeof v, &n, 0) == 0, 1);
                if (v == UINT32_MAX)
                    break;
                CHILD_CHECK(got == 0 || v > last, 2);
                last = v;
                got++;
            }
            /* round-robin, skipping a full puller: each gets at least the HWM */
            char c = got >= 1000 ? 'y' : 'n';
            t_pipe_send(&res, c);
            _exit(0);
        }
    }
    ferry_socket *push = sock(FERRY_PUSH); /* after the forks */
    assert_int_equal(ferry_listen(push, u), 0);
    t_pipe_recv(&up);
    t_pipe_recv(&up);
    assert_int_equal(ferry_wait_peers(push, 2, 10000), 0); /* both pullers connected */
    for (uint32_t i = 0; i < 4000; i++)
        assert_int_equal(ferry_send(push, &i, sizeof i, 0), 0);
    /* PUSH skips a full puller, so the end markers may land anywhere:
     * send them until both pullers have reported */
    uint32_t end = UINT32_MAX;
    for (int reported = 0; reported < 2;) {
        assert_int_equal(ferry_send(push, &end, sizeof end, 0), 0);
        struct pollfd pfd = {.fd = res.r, .events = POLLIN};
        if (poll(&pfd, 1, 2) == 1) {
            assert_int_equal(t_pipe_recv(&res), 'y');
            reported++;
        }
    }
    for (int k = 0; k < 2; k++)
        assert_int_equal(t_wait(pids[k]), 0);
    ferry_close(push);
    t_pipe_close(&res);
    t_pipe_close(&up);
}

/* PUSH blocks at the HWM and never drops; timeouts and DONTWAIT. */
static void test_push_hwm_blocks(void **state)
{
    (void)state;
    char u[96];
    t_url(u, sizeof u, "hwm");
    ferry_socket *push = sock(FERRY_PUSH);
    assert_int_equal(ferry_setopt_int(push, FERRY_OPT_SNDHWM, 5), 0);
    assert_int_equal(ferry_setopt_int(push, FERRY_OPT_SNDTIMEO, 50), 0);
    /* no peer at all: EAGAIN / timeout */
    assert_int_equal(ferry_send(push, "x", 1, FERRY_DONTWAIT), FERRY_EAGAIN);
    assert_int_equal(ferry_send(push, "x", 1, 0), FERRY_ETIMEDOUT);
    assert_int_equal(ferry_listen(push, u), 0);
    struct t_pipe up, go;
    t_pipe_open(&up);
    t_pipe_open(&go);
    pid_t pid = fork();
    if (pid == 0) {
        ferry_socket *p = child_sock(FERRY_PULL, u, 1);
        t_pipe_send(&up, 'u');
        t_pipe_recv(&go);
        uint32_t v;
        size_t n;
        for (uint32_t i = 0; i < 6; i++) {
            CHILD_CHECK(ferry_recv(p, &v, sizeof v, &n, 0) == 0, 1);
            CHILD_CHECK(v == i, 2);
        }
        _exit(0);
    }
    t_pipe_recv(&up);
    assert_int_equal(ferry_wait_peers(push, 1, 10000), 0);
    for (uint32_t i = 0; i < 5; i++)
        assert_int_equal(ferry_send(push, &i, sizeof i, 0), 0);
    uint32_t five = 5;
    assert_int_equal(ferry_send(push, &five, sizeof five, FERRY_DONTWAIT), FERRY_EAGAIN);
    assert_int_equal(ferry_send(push, &five, sizeof five, 0), FERRY_ETIMEDOUT);
    t_pipe_send(&go, 'g');
    assert_int_equal(ferry_setopt_int(push, FERRY_OPT_SNDTIMEO, 10000), 0);
    assert_int_equal(ferry_send(push, &five, sizeof five, 0), 0); /* unblocks */
    assert_int_equal(t_wait(pid), 0);
    ferry_close(push);
    t_pipe_close(&up);
    t_pipe_close(&go);
}

static void test_recv_timeouts(void **state)
{
    (void)state;
    char u[96];
    t_url(u, sizeof u, "tmo");
    ferry_socket *pull = sock(FERRY_PULL);
    assert_int_equal(ferry_listen(pull, u), 0);
    char b[8];
    size_t n;
    assert_int_equal(ferry_recv(pull, b, sizeof b, &n, FERRY_DONTWAIT), FERRY_EAGAIN);
    assert_int_equal(ferry_setopt_int(pull, FERRY_OPT_RCVTIMEO, 30), 0);
    uint64_t t0 = t_now_ms();
    assert_int_equal(ferry_recv(pull, b, sizeof b, &n, 0), FERRY_ETIMEDOUT);
    assert_true(t_now_ms() - t0 >= 29);
    assert_int_equal(ferry_setopt_int(pull, FERRY_OPT_RCVTIMEO, 0), 0);
    assert_int_equal(ferry_recv(pull, b, sizeof b, &n, 0), FERRY_EAGAIN);
    ferry_close(pull);
}

/* Parts arrive together, in order, with RCVMORE; and a message whose
 * sender dies half-way never arrives in part. */
static void test_multipart(void **state)
{
    (void)state;
    char u[96];
    t_url(u, sizeof u, "multi");
    ferry_socket *pull = sock(FERRY_PULL);
    assert_int_equal(ferry_setopt_int(pull, FERRY_OPT_RING_SIZE, 65536), 0);
    assert_int_equal(ferry_listen(pull, u), 0);
    struct t_pipe p;
    t_pipe_open(&p);
    pid_t pid = fork();
    if (pid == 0) {
        ferry_socket *push;
        CHILD_CHECK(ferry_socket_open(&push, FERRY_PUSH) == 0, 90);
        ferry_setopt_int(push, FERRY_OPT_RING_SIZE, 65536);
        ferry_setopt_int(push, FERRY_OPT_SNDTIMEO, 10000);
        CHILD_CHECK(ferry_dial(push, u) == 0, 91);
        CHILD_CHECK(ferry_send(push, "a", 1, FERRY_MORE) == 0, 1);
        CHILD_CHECK(ferry_send(push, "", 0, FERRY_MORE) == 0, 2);
        CHILD_CHECK(ferry_send(push, "ccc", 3, 0) == 0, 3);
        /* then a large 3-part message that cannot fit the 64 KiB ring: the
         * sender streams it and is killed while blocked half-way */
        static char big[200000];
        CHILD_CHECK(ferry_send(push, big, sizeof big, FERRY_MORE) == 0, 4);
        CHILD_CHECK(ferry_send(push, big, sizeof big, FERRY_MORE) == 0, 5);
        t_pipe_send(&p, 'b');
        int rc = ferry_send(push, big, sizeof big, 0); /* blocks: nobody reads */
        fprintf(stderr, "child: final send returned %s: %s\n", ferry_err_name(rc),
                ferry_errdetail());
        _exit(6);
    }
    char b[16];
    size_t n;
    int64_t more;
    const char *want[] = {"a", "", "ccc"};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(ferry_recv(pull, b, sizeof b, &n, 0), 0);
        assert_int_equal(n, strlen(want[i]));
        assert_memory_equal(b, want[i], n);
        assert_int_equal(ferry_getopt_int(pull, FERRY_OPT_RCVMORE, &more), 0);
        assert_int_equal(more, i < 2);
    }
    assert_int_equal(t_pipe_recv(&p), 'b');
    kill(pid, SIGKILL);
    assert_int_equal(t_wait(pid), 128 + SIGKILL);
    /* nothing of the incomplete message is delivered */
    assert_int_equal(ferry_setopt_int(pull, FERRY_OPT_RCVTIMEO, 100), 0);
    assert_int_equal(ferry_recv(pull, b, sizeof b, &n, 0), FERRY_ETIMEDOUT);
    t_pipe_close(&p);
    ferry_close(pull);
}

/* The pollable fd: readable when a message is ready, quiet after EAGAIN.
 * The sender stays until the parent has looked: a peer that leaves writes
 * the fd too (a REQ in poll() must come back to learn of it), which would
 * be a wake-up with nothing to receive, allowed but not what this tests. */
static void test_socket_fd(void **state)
{
    (void)state;
    char u[96];
    t_url(u, sizeof u, "fd");
    ferry_socket *pull = sock(FERRY_PULL), *push = sock(FERRY_PUSH);
    assert_int_equal(ferry_listen(pull, u), 0);
    assert_int_equal(ferry_dial(push, u), 0);
    int fd;
    assert_int_equal(ferry_socket_fd(pull, &fd), 0);
    char b[8];
    size_t n;
    assert_int_equal(ferry_recv(pull, b, sizeof b, &n, FERRY_DONTWAIT), FERRY_EAGAIN);
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, 0), 0);
    struct t_pipe go;
    t_pipe_open(&go);
    pid_t pid = fork();
    if (pid == 0) {  /* a message from another process */
        close(go.w); /* a parent that fails before 'c' ends the read with EOF */
        ferry_socket *c = child_sock(FERRY_PUSH, u, 1);
        CHILD_CHECK(ferry_send(c, "hi", 2, 0) == 0, 1);
        CHILD_CHECK(t_pipe_recv(&go) == 'c', 2);
        ferry_close(c);
        _exit(0);
    }
    assert_int_equal(poll(&pfd, 1, 10000), 1);
    assert_int_equal(ferry_recv(pull, b, sizeof b, &n, FERRY_DONTWAIT), 0);
    assert_int_equal(n, 2);
    assert_int_equal(ferry_recv(pull, b, sizeof b, &n, FERRY_DONTWAIT), FERRY_EAGAIN);
    assert_int_equal(poll(&pfd, 1, 0), 0);
    t_pipe_send(&go, 'c');
    assert_int_equal(t_wait(pid), 0);
    t_pipe_close(&go);
    /* and from this process's own dialer */
    assert_int_equal(ferry_send(push, "yo", 2, 0), 0);
    assert_int_equal(poll(&pfd, 1, 10000), 1);
    assert_int_equal(ferry_recv(pull, b, sizeof b, &n, FERRY_DONTWAIT), 0);
    ferry_close(push);
    ferry_close(pull);
}

/* FERRY_BATCH: the reader's wake-up is given at the end of the batch, not
 * per message: by ferry_flush, by a send without the flag, by a send that
 * finds no room, by a call that waits. The reader's pollable fd shows each
 * wake-up (the writer writes it, in the writer's call). */
static int batch_fd(ferry_socket *s, struct pollfd *pfd)
{
    char b[8];
    size_t n;
    int fd = -1;
    assert_int_equal(ferry_socket_fd(s, &fd), 0);
    *pfd = (struct pollfd){.fd = fd, .events = POLLIN};
    int got = 0;
    while (ferry_recv(s, b, sizeof b, &n, FERRY_DONTWAIT) == 0)
        got++; /* drains, and arms the fd at the EAGAIN */
    return got;
}

struct batch_reader {
    ferry_socket *s;
    char got[8];
    int rc;
};

static void *batch_recv_thread(void *arg)
{
    struct batch_reader *r = arg;
    size_t n;
    r->rc = ferry_recv(r->s, r->got, sizeof r->got, &n, 0);
    return NULL;
}

static void test_batch(void **state)
{
    (void)state;
    char u[96];
    struct pollfd pfd;
    t_url(u, sizeof u, "batch");
    ferry_socket *pull = sock(FERRY_PULL), *push = sock(FERRY_PUSH);
    ferry_setopt_int(push, FERRY_OPT_SNDHWM, 4);
    assert_int_equal(ferry_listen(pull, u), 0);
    assert_int_equal(ferry_dial(push, u), 0);
    assert_int_equal(ferry_wait_peers(push, 1, 10000), 0);
    assert_int_equal(ferry_flush(NULL), FERRY_EINVAL);
    assert_int_equal(batch_fd(pull, &pfd), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(ferry_send(push, &i, sizeof i, FERRY_BATCH), 0);
    assert_int_equal(poll(&pfd, 1, 0), 0); /* three messages, nobody woken */
    assert_int_equal(ferry_flush(push), 0);
    assert_int_equal(poll(&pfd, 1, 10000), 1);
    for (int i = 0; i < 3; i++) {
        int v = -1;
        size_t n;
        assert_int_equal(ferry_recv(pull, &v, sizeof v, &n, FERRY_DONTWAIT), 0);
        assert_int_equal(v, i); /* in order, all there */
    }
    /* a send without the flag ends the batch */
    assert_int_equal(batch_fd(pull, &pfd), 0);
    assert_int_equal(ferry_send(push, "a", 1, FERRY_BATCH), 0);
    assert_int_equal(poll(&pfd, 1, 0), 0);
    assert_int_equal(ferry_send(push, "b", 1, 0), 0);
    assert_int_equal(poll(&pfd, 1, 10000), 1);
    assert_int_equal(batch_fd(pull, &pfd), 2);
    /* a send that finds no room (HWM 4) gives what is owed before it fails */
    for (int i = 0; i < 4; i++)
        assert_int_equal(ferry_send(push, "c", 1, FERRY_BATCH | FERRY_DONTWAIT), 0);
    assert_int_equal(poll(&pfd, 1, 0), 0);
    assert_int_equal(ferry_send(push, "d", 1, FERRY_BATCH | FERRY_DONTWAIT), FERRY_EAGAIN);
    assert_int_equal(poll(&pfd, 1, 10000), 1);
    assert_int_equal(batch_fd(pull, &pfd), 4);
    ferry_close(push);
    ferry_close(pull);

    /* a call that waits gives it too: a PAIR that sends a batched request
     * and blocks for the answer must not leave its peer asleep */
    t_url(u, sizeof u, "batch-pair");
    ferry_socket *a = sock(FERRY_PAIR), *b = sock(FERRY_PAIR);
    assert_int_equal(ferry_listen(b, u), 0);
    assert_int_equal(ferry_dial(a, u), 0);
    assert_int_equal(ferry_wait_peers(a, 1, 10000), 0);
    assert_int_equal(batch_fd(b, &pfd), 0);
    assert_int_equal(ferry_send(a, "q", 1, FERRY_BATCH), 0);
    assert_int_equal(poll(&pfd, 1, 0), 0);
    struct batch_reader r = {.s = a, .rc = -1};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, batch_recv_thread, &r), 0);
    assert_int_equal(poll(&pfd, 1, 10000), 1); /* the waiting recv woke b */
    char q[4];
    size_t n;
    assert_int_equal(ferry_recv(b, q, sizeof q, &n, FERRY_DONTWAIT), 0);
    assert_int_equal(ferry_send(b, "r", 1, 0), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.got[0], 'r');
    ferry_close(a);
    ferry_close(b);
}

/* Page faults while one ring's first lap goes by, both ends in this
 * process (so both ends' faults count). */
static long first_lap_faults(int prefault)
{
    char u[96];
    t_url(u, sizeof u, "prefault");
    ferry_socket *pull = sock(FERRY_PULL), *push = sock(FERRY_PUSH);
    ferry_setopt_int(push, FERRY_OPT_SNDHWM, 0);
    ferry_setopt_int(pull, FERRY_OPT_RCVHWM, 0);
    assert_int_equal(ferry_setopt_int(pull, FERRY_OPT_RING_PREFAULT, prefault), 0);
    assert_int_equal(ferry_setopt_int(push, FERRY_OPT_RING_PREFAULT, prefault), 0);
    assert_int_equal(ferry_listen(pull, u), 0);
    assert_int_equal(ferry_dial(push, u), 0);
    assert_int_equal(ferry_wait_peers(push, 1, 10000), 0);
    static char buf[1000];
    size_t n;
    for (int i = 0; i < 4; i++) { /* warm: our own buffers and code paths */
        assert_int_equal(ferry_send(push, buf, sizeof buf, 0), 0);
        assert_int_equal(ferry_recv(pull, buf, sizeof buf, &n, 0), 0);
    }
    struct rusage r0, r1;
    getrusage(RUSAGE_SELF, &r0);
    for (int i = 0; i < 1000; i++) { /* 1 MB: the 1 MiB ring's first lap */
        assert_int_equal(ferry_send(push, buf, sizeof buf, 0), 0);
        assert_int_equal(ferry_recv(pull, buf, sizeof buf, &n, 0), 0);
    }
    getrusage(RUSAGE_SELF, &r1);
    ferry_close(push);
    ferry_close(pull);
    return r1.ru_minflt - r0.ru_minflt;
}

/* FERRY_OPT_RING_PREFAULT: the rings are in place before the first message,
 * so a first lap takes no page fault; with it off each page faults as the
 * lap reaches it (a fault costs 20-50 us on a VM: a busy REQ/REP's p99). */
static void test_ring_prefault(void **state)
{
    (void)state;
    ferry_socket *s = sock(FERRY_PAIR);
    int64_t v = -1;
    assert_int_equal(ferry_getopt_int(s, FERRY_OPT_RING_PREFAULT, &v), 0);
    assert_int_equal(v, 0); /* off by default: it costs at connection set-up */
    assert_int_equal(ferry_setopt_int(s, FERRY_OPT_RING_PREFAULT, 2), FERRY_EINVAL);
    ferry_close(s);
    long on = first_lap_faults(1), off = first_lap_faults(0);
    fprintf(stderr, "note: page faults during a first lap: %ld prefaulted, %ld not\n", on, off);
    assert_true(on < 32);
    assert_true(off >= 256); /* a 1 MiB ring is 256 pages, each end faults its own */
}

/* The receiving side of writer_lap_faults: takes n messages. */
struct lap_reader {
    ferry_socket *s;
    int n, rc;
};

static void *lap_read(void *arg)
{
    struct lap_reader *r = arg;
    static char in[1000];
    size_t n;
    for (int i = 0; i < r->n && r->rc == 0; i++)
        r->rc = ferry_recv(r->s, in, sizeof in, &n, 0);
    return NULL;
}

/* A PUSH listening with FERRY_OPT_RING_PREFAULT and RING_SIZE own_ring, a
 * PULL dialing with a ring of dial_ring bytes (lazy itself): the page
 * faults the writing thread takes over the ring's first lap. */
static long writer_lap_faults(int own_ring, int dial_ring)
{
    char u[96];
    t_url(u, sizeof u, "popbudget");
    ferry_socket *push = sock(FERRY_PUSH), *pull = sock(FERRY_PULL);
    ferry_setopt_int(push, FERRY_OPT_SNDHWM, 0);
    ferry_setopt_int(pull, FERRY_OPT_RCVHWM, 0);
    assert_int_equal(ferry_setopt_int(push, FERRY_OPT_RING_PREFAULT, 1), 0);
    assert_int_equal(ferry_setopt_int(push, FERRY_OPT_RING_SIZE, own_ring), 0);
    assert_int_equal(ferry_setopt_int(pull, FERRY_OPT_RING_SIZE, dial_ring), 0);
    assert_int_equal(ferry_listen(push, u), 0);
    assert_int_equal(ferry_dial(pull, u), 0);
    assert_int_equal(ferry_wait_peers(push, 1, 10000), 0);
    static char buf[1000];
    int n = dial_ring / (int)sizeof buf;
    struct lap_reader r = {pull, n, 0};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, lap_read, &r), 0);
    struct rusage r0, r1;
    getrusage(RUSAGE_THREAD, &r0);
    for (int i = 0; i < n; i++)
        assert_int_equal(ferry_send(push, buf, sizeof buf, 0), 0);
    getrusage(RUSAGE_THREAD, &r1);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(r.rc, 0);
    ferry_close(pull);
    ferry_close(push);
    return r1.ru_minflt - r0.ru_minflt;
}

/* A listener populates a dialer's ring only if it is no larger than its
 * own FERRY_OPT_RING_SIZE (the dialer chooses the size; populating costs
 * the listener's I/O thread and memory, docs/security.md). */
static void test_ring_prefault_listener_bound(void **state)
{
    (void)state;
    long fits = writer_lap_faults(2 << 20, 2 << 20), over = writer_lap_faults(1 << 20, 2 << 20);
    fprintf(stderr,
            "note: writer's faults on a 2 MiB first lap: %ld populated, %ld over the bound\n", fits,
            over);
    assert_true(fits < 32);
    assert_true(over >= 256); /* 512 pages, each faulted as the lap reaches it */
}

/* Pipe ids stay positive and unique among a socket's pipes when the
 * counter wraps (REQ and REP find a request's pipe again by its id). */
static void test_pipe_ids_wrap(void **state)
{
    (void)state;
    char u[96];
    t_url(u, sizeof u, "idwrap");
    ferry_socket *pull = sock(FERRY_PULL), *push[3];
    assert_int_equal(ferry_listen(pull, u), 0);
    push[0] = sock(FERRY_PUSH);
    assert_int_equal(ferry_dial(push[0], u), 0);
    assert_int_equal(ferry_wait_peers(pull, 1, 10000), 0);
    pthread_mutex_lock(&pull->mtx);
    int first = pull->pipes[0]->id;
    pull->next_pipe_id = (unsigned)INT_MAX - 1u; /* the next is INT_MAX, then 1, 2... */
    if (first <= 2)
        pull->next_pipe_id = (unsigned)INT_MAX; /* the one after wraps onto `first` */
    pthread_mutex_unlock(&pull->mtx);
    for (int i = 1; i < 3; i++) {
        push[i] = sock(FERRY_PUSH);
        assert_int_equal(ferry_dial(push[i], u), 0);
        assert_int_equal(ferry_wait_peers(pull, i + 1, 10000), 0);
    }
    pthread_mutex_lock(&pull->mtx);
    assert_int_equal(pull->npipes, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_true(pull->pipes[i]->id > 0);
        for (size_t j = 0; j < i; j++)
            assert_int_not_equal(pull->pipes[i]->id, pull->pipes[j]->id);
    }
    pthread_mutex_unlock(&pull->mtx);
    for (int i = 0; i < 3; i++)
        ferry_close(push[i]);
    ferry_close(pull);
}

/* A REQ that waits for its reply in poll() hears of the peer's death. */
static void test_socket_fd_peer_death(void **state)
{
    (void)state;
    char u[96];
    t_url(u, sizeof u, "fddeath");
    struct t_pipe got;
    t_pipe_open(&got);
    pid_t pid = fork();
    if (pid == 0) {
        ferry_socket *r = child_sock(FERRY_REP, u, 0);
        char b[8];
        size_t n;
        t_pipe_send(&got, 'L');
        CHILD_CHECK(ferry_recv(r, b, sizeof b, &n, 0) == 0, 1);
        t_pipe_send(&got, 'r');
        for (;;)
            pause();
    }
    assert_int_equal(t_pipe_recv(&got), 'L');
    ferry_socket *req = sock(FERRY_REQ);
    assert_int_equal(ferry_dial(req, u), 0);
    assert_int_equal(ferry_send(req, "q", 1, 0), 0);
    assert_int_equal(t_pipe_recv(&got), 'r');
    int fd;
    char b[8];
    size_t n;
    assert_int_equal(ferry_socket_fd(req, &fd), 0);
    assert_int_equal(ferry_recv(req, b, sizeof b, &n, FERRY_DONTWAIT), FERRY_EAGAIN);
    kill(pid, SIGKILL);
    assert_int_equal(t_wait(pid), 128 + SIGKILL);
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, 10000), 1);
    assert_int_equal(ferry_recv(req, b, sizeof b, &n, FERRY_DONTWAIT), FERRY_ECONNRESET);
    ferry_close(req);
    t_pipe_close(&got);
}

/* A reader that holds in-place messages while the writer hits its HWM,
 * frees them and then only polls its fd: the writer must be woken and the
 * fd must fire (no message lost, no hang). */
static void test_hold_then_poll(void **state)
{
    (void)state;
    enum { COUNT = 600, HWM = 50 };
    char u[96];
    t_url(u, sizeof u, "hold");
    ferry_socket *pull = sock(FERRY_PULL);
    assert_int_equal(ferry_listen(pull, u), 0);
    pid_t pid = fork();
    if (pid == 0) {
        ferry_socket *p;
        t_die_with_parent();
        CHILD_CHECK(ferry_socket_open(&p, FERRY_PUSH) == 0, 90);
        ferry_setopt_int(p, FERRY_OPT_SNDHWM, HWM);
        ferry_setopt_int(p, FERRY_OPT_SNDTIMEO, 20000);
        CHILD_CHECK(ferry_dial(p, u) == 0, 91);
        for (uint32_t i = 0; i < COUNT; i++)
            CHILD_CHECK(ferry_send(p, &i, sizeof i, 0) == 0, 1);
        ferry_close(p);
        _exit(0);
    }
    int fd;
    assert_int_equal(ferry_socket_fd(pull, &fd), 0);
    uint32_t next = 0;
    while (next < COUNT) {
        ferry_msg *held[COUNT];
        int n = 0, rc;
        while ((rc = ferry_msg_recv(pull, &held[n], FERRY_DONTWAIT)) == 0) {
            assert_int_equal(*(uint32_t *)ferry_msg_data(held[n]), next);
            next++;
            n++;
        }
        assert_int_equal(rc, FERRY_EAGAIN);
        for (int i = 0; i < n; i++)
            ferry_msg_free(held[i]);
        if (next == COUNT)
            break;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        assert_int_equal(poll(&pfd, 1, 10000), 1); /* no hang */
    }
    assert_int_equal(t_wait(pid), 0);
    ferry_close(pull);
}

/* Zero-copy both ways: allocate in the ring, receive in place, hold many
 * in-place messages and free them out of order. */
static void test_zero_copy(void **state)
{
    (void)state;
    char u[96];
    t_url(u, sizeof u, "zc");
    ferry_socket *a = sock(FERRY_PAIR), *b = sock(FERRY_PAIR);
    ferry_msg *m;
    assert_int_equal(ferry_msg_alloc(a, &m, 100), 0); /* no peer: heap */
    ferry_msg_free(m);
    assert_int_equal(ferry_setopt_int(a, FERRY_OPT_RING_SIZE, 65536), 0);
    assert_int_equal(ferry_listen(b, u), 0);
    assert_int_equal(ferry_dial(a, u), 0);
    enum { HOLD = 20, ROUNDS = 200 };
    for (int r = 0; r < ROUNDS; r++) {
        ferry_msg *held[HOLD];
        for (int i = 0; i < HOLD; i++) {
            assert_int_equal(ferry_msg_alloc(a, &m, 1000), 0);
            assert_int_equal(ferry_msg_size(m), 1000);
            memset(ferry_msg_data(m), 'a' + i, 1000);
            assert_int_equal(ferry_msg_resize(m, 500 + (size_t)i), 0);
            assert_int_equal(ferry_send(a, "x", 1, 0), FERRY_ESTATE); /* alloc pending */
            assert_int_equal(ferry_msg_send(a, m, 0), 0);
        }
        for (int i = 0; i < HOLD; i++) {
            assert_int_equal(ferry_msg_recv(b, &held[i], 0), 0);
            assert_int_equal(ferry_msg_size(held[i]), 500 + (size_t)i);
            assert_int_equal(((char *)ferry_msg_data(held[i]))[499], 'a' + i);
            assert_int_equal(ferry_msg_more(held[i]), 0);
        }
        for (int i = HOLD - 1; i >= 0; i -= 2) /* free out of order */
            ferry_msg_free(held[i]);
        for (int i = 0; i < HOLD; i += 2)
            ferry_msg_free(held[i]);
    }
    /* an unsent allocation can be dropped; the socket goes on */
    assert_int_equal(ferry_msg_alloc(a, &m, 10), 0);
    ferry_msg_free(m);
    assert_int_equal(ferry_send(a, "ok", 2, 0), 0);
    assert_int_equal(ferry_msg_recv(b, &m, 0), 0);
    assert_memory_equal(ferry_msg_data(m), "ok", 2);
    ferry_close(a); /* an in-place message outlives its socket's peer */
    assert_memory_equal(ferry_msg_data(m), "ok", 2);
    ferry_msg_free(m);
    ferry_close(b);
}

/* A part larger than the ring after parts the reader takes in place (a
 * DEALER's routing id before a REP's request, as a broker sends it): the
 * earlier parts must not hold the ring's room the large one streams
 * through, or the writer waits for room forever. */
static void test_streamed_after_inplace(void **state)
{
    (void)state;
    char u[96];
    t_url(u, sizeof u, "streamed");
    ferry_socket *d = sock(FERRY_DEALER), *rep = sock(FERRY_REP);
    assert_int_equal(ferry_setopt_int(d, FERRY_OPT_RING_SIZE, 65536), 0);
    assert_int_equal(ferry_setopt_int(rep, FERRY_OPT_RING_SIZE, 65536), 0);
    assert_int_equal(ferry_listen(d, u), 0);
    assert_int_equal(ferry_dial(rep, u), 0);
    assert_int_equal(ferry_wait_peers(d, 1, 10000), 0);
    size_t big = 200000;
    unsigned char *msg = malloc(big);
    struct t_recv_job r = {.s = rep, .got = malloc(big), .cap = big, .rc = -1};
    assert_non_null(msg);
    assert_non_null(r.got);
    for (size_t i = 0; i < big; i++)
        msg[i] = (unsigned char)(i * 13);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, t_recv_thread, &r), 0);
    assert_int_equal(ferry_send(d, "client-7", 8, FERRY_MORE), 0);
    assert_int_equal(ferry_send(d, "", 0, FERRY_MORE), 0);
    assert_int_equal(ferry_send(d, msg, big, 0), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.n, big);
    assert_memory_equal(r.got, msg, big);
    /* the reply goes back with the envelope the REP kept */
    assert_int_equal(ferry_send(rep, "ok", 2, 0), 0);
    char b[16];
    size_t n;
    assert_int_equal(ferry_recv(d, b, sizeof b, &n, 0), 0);
    assert_int_equal(n, 8);
    assert_memory_equal(b, "client-7", 8);
    free(msg);
    free(r.got);
    ferry_close(d);
    ferry_close(rep);
}

/* The forwarder's test message: an id, an empty delimiter, a body. */
static void feed_message(ferry_socket *feed, const char *body, size_t len)
{
    assert_int_equal(ferry_send(feed, "id", 2, FERRY_MORE), 0);
    assert_int_equal(ferry_send(feed, "", 0, FERRY_MORE), 0);
    assert_int_equal(ferry_send(feed, body, len, 0), 0);
}

/* Receives one whole message of n parts from s, in place where the
 * transport can. */
static void recv_parts(ferry_socket *s, ferry_msg **m, int n)
{
    for (int k = 0; k < n; k++) {
        assert_int_equal(ferry_msg_recv(s, &m[k], 0), 0);
        assert_int_equal(ferry_msg_more(m[k]), k < n - 1);
    }
}

/* A forwarder's multipart message: parts received (in place on shm://,
 * in memory of their own on ipc://) and sent on with ferry_msg_send and
 * FERRY_MORE become the sending socket's, kept as they are until the
 * message goes (one copy, into the pipe), is discarded or the socket
 * closes. A last part that cannot go stays the caller's, and the message
 * goes whole when it is sent again. Under ASan: nothing freed twice or
 * left. */
static void test_forward_multipart(void **state)
{
    (void)state;
    static const char *const schemes[] = {"shm", "ipc"};
    for (int sc = 0; sc < 2; sc++) {
        char in[96], out[96];
        t_url_for(in, sizeof in, schemes[sc], "fwd-in");
        t_url(out, sizeof out, "fwd-out");
        ferry_socket *feed = sock(FERRY_PUSH), *src = sock(FERRY_PULL);
        ferry_socket *dst = sock(FERRY_PUSH), *sink = sock(FERRY_PULL);
        assert_int_equal(ferry_setopt_int(feed, FERRY_OPT_RING_SIZE, 16384), 0);
        assert_int_equal(ferry_setopt_int(src, FERRY_OPT_RING_SIZE, 16384), 0);
        assert_int_equal(ferry_listen(src, in), 0);
        assert_int_equal(ferry_dial(feed, in), 0);
        assert_int_equal(ferry_listen(dst, out), 0);
        static char body[3000];
        for (size_t i = 0; i < sizeof body; i++)
            body[i] = (char)('A' + i % 23);
        ferry_msg *m[3];
        /* 1: no peer yet, the last part waits with the caller; meanwhile
         * more than a ring's worth goes through the source (what is held
         * keeps its room: nothing of it is written over) */
        feed_message(feed, body, sizeof body);
        recv_parts(src, m, 3);
        assert_int_equal(ferry_msg_send(dst, m[0], FERRY_MORE), 0);
        assert_int_equal(ferry_msg_send(dst, m[1], FERRY_MORE), 0);
        assert_int_equal(ferry_msg_send(dst, m[2], FERRY_DONTWAIT), FERRY_EAGAIN);
        static char chunk[1024], back[1024];
        size_t n;
        for (int i = 0; i < 40; i++) {
            memset(chunk, 'a' + i % 26, sizeof chunk);
            if (ferry_send(feed, chunk, sizeof chunk, FERRY_DONTWAIT) != 0)
                break; /* full: the held parts keep their room */
            assert_int_equal(ferry_recv(src, back, sizeof back, &n, 0), 0);
            assert_memory_equal(back, chunk, sizeof chunk);
        }
        assert_int_equal(ferry_msg_size(m[2]), sizeof body); /* still ours, intact */
        assert_memory_equal(ferry_msg_data(m[2]), body, sizeof body);
        assert_int_equal(ferry_dial(sink, out), 0);
        assert_int_equal(ferry_wait_peers(dst, 1, 10000), 0);
        assert_int_equal(ferry_msg_send(dst, m[2], 0), 0);
        char got[sizeof body];
        int64_t more;
        assert_int_equal(ferry_recv(sink, got, sizeof got, &n, 0), 0);
        assert_int_equal(n, 2);
        assert_memory_equal(got, "id", 2);
        assert_int_equal(ferry_recv(sink, got, sizeof got, &n, 0), 0);
        assert_int_equal(n, 0);
        assert_int_equal(ferry_recv(sink, got, sizeof got, &n, 0), 0);
        assert_int_equal(n, sizeof body);
        assert_memory_equal(got, body, sizeof body);
        assert_int_equal(ferry_getopt_int(sink, FERRY_OPT_RCVMORE, &more), 0);
        assert_int_equal(more, 0);
        /* 2: discarded after two parts: they are freed, nothing arrives */
        feed_message(feed, body, sizeof body);
        recv_parts(src, m, 3);
        assert_int_equal(ferry_msg_send(dst, m[0], FERRY_MORE), 0);
        assert_int_equal(ferry_msg_send(dst, m[1], FERRY_MORE), 0);
        ferry_send_discard(dst);
        ferry_msg_free(m[2]);
        assert_int_equal(ferry_setopt_int(sink, FERRY_OPT_RCVTIMEO, 100), 0);
        assert_int_equal(ferry_recv(sink, got, sizeof got, &n, 0), FERRY_ETIMEDOUT);
        /* 3: the socket closes with two parts held: they are freed */
        feed_message(feed, body, sizeof body);
        recv_parts(src, m, 3);
        assert_int_equal(ferry_msg_send(dst, m[0], FERRY_MORE), 0);
        assert_int_equal(ferry_msg_send(dst, m[1], FERRY_MORE), 0);
        ferry_close(dst);
        ferry_msg_free(m[2]);
        ferry_close(sink);
        ferry_close(src);
        ferry_close(feed);
    }
}

/* Multipart messages small enough for one ring record travel packed in
 * one: their parts arrive in place, sharing the record, which goes back
 * to the ring only when the last of them is freed. Held across rounds
 * that lap the ring many times and freed in a scrambled order, every
 * part keeps its bytes, and the room comes back (or the sender's timeout
 * fails the test); past the in-place limit the parts are copied. */
static void test_zero_copy_multipart(void **state)
{
    (void)state;
    char u[96];
    t_url(u, sizeof u, "zcm");
    ferry_socket *a = sock(FERRY_PAIR), *b = sock(FERRY_PAIR);
    assert_int_equal(ferry_setopt_int(a, FERRY_OPT_RING_SIZE, 65536), 0);
    assert_int_equal(ferry_setopt_int(a, FERRY_OPT_SNDTIMEO, 5000), 0);
    assert_int_equal(ferry_setopt_int(b, FERRY_OPT_RCVTIMEO, 5000), 0);
    assert_int_equal(ferry_listen(b, u), 0);
    assert_int_equal(ferry_dial(a, u), 0);
    enum { HOLD = 70, PARTS = 3, ROUNDS = 40 };
    static char body[400];
    for (int r = 0; r < ROUNDS; r++) {
        for (int i = 0; i < HOLD; i++) {
            char tail[16];
            int tl = snprintf(tail, sizeof tail, "tail-%d", i);
            memset(body, 'a' + i % 26, sizeof body);
            assert_int_equal(ferry_send(a, "", 0, FERRY_MORE), 0);
            assert_int_equal(ferry_send(a, body, 300 + (size_t)i, FERRY_MORE), 0);
            assert_int_equal(ferry_send(a, tail, (size_t)tl, 0), 0);
        }
        ferry_msg *held[HOLD * PARTS];
        for (int i = 0; i < HOLD; i++) {
            for (int k = 0; k < PARTS; k++) {
                ferry_msg **m = &held[i * PARTS + k];
                assert_int_equal(ferry_msg_recv(b, m, 0), 0);
                assert_int_equal(ferry_msg_more(*m), k < PARTS - 1);
            }
        }
        /* free every third part first, then the rest backwards */
        for (int j = 0; j < HOLD * PARTS; j += 3)
            ferry_msg_free(held[j]);
        for (int j = HOLD * PARTS - 1; j >= 0; j--) {
            if (j % 3 == 0)
                continue;
            int i = j / PARTS, k = j % PARTS;
            char want[16];
            int wl = snprintf(want, sizeof want, "tail-%d", i);
            if (k == 1) {
                assert_int_equal(ferry_msg_size(held[j]), 300 + (size_t)i);
                const char *d = ferry_msg_data(held[j]);
                assert_int_equal(d[0], 'a' + i % 26);
                assert_int_equal(d[299 + i], 'a' + i % 26);
            } else {
                assert_int_equal(ferry_msg_size(held[j]), (size_t)wl);
                assert_memory_equal(ferry_msg_data(held[j]), want, (size_t)wl);
            }
            ferry_msg_free(held[j]);
        }
    }
    /* more parts than one record packs, and a part larger than a record:
     * each part its own record (or several), delivered as before */
    static char big[40000];
    memset(big, 'z', sizeof big);
    for (int parts = 64; parts <= 65; parts++) {
        for (int k = 0; k < parts; k++)
            assert_int_equal(ferry_send(a, &k, sizeof k, k < parts - 1 ? FERRY_MORE : 0), 0);
        for (int k = 0; k < parts; k++) {
            int got;
            size_t n;
            assert_int_equal(ferry_recv(b, &got, sizeof got, &n, 0), 0);
            assert_int_equal(n, sizeof got);
            assert_int_equal(got, k);
        }
    }
    assert_int_equal(ferry_send(a, "head", 4, FERRY_MORE), 0);
    assert_int_equal(ferry_send(a, big, sizeof big, 0), 0);
    ferry_msg *h, *t;
    assert_int_equal(ferry_msg_recv(b, &h, 0), 0);
    assert_int_equal(ferry_msg_recv(b, &t, 0), 0);
    assert_memory_equal(ferry_msg_data(h), "head", 4);
    assert_int_equal(ferry_msg_size(t), sizeof big);
    assert_memory_equal(ferry_msg_data(t), big, sizeof big);
    ferry_msg_free(h);
    ferry_msg_free(t);
    /* a packed part outlives its sender's socket */
    assert_int_equal(ferry_send(a, "", 0, FERRY_MORE), 0);
    assert_int_equal(ferry_send(a, "kept", 4, 0), 0);
    assert_int_equal(ferry_msg_recv(b, &h, 0), 0);
    assert_int_equal(ferry_msg_recv(b, &t, 0), 0);
    ferry_close(a);
    assert_int_equal(ferry_msg_size(h), 0);
    assert_memory_equal(ferry_msg_data(t), "kept", 4);
    ferry_msg_free(t);
    ferry_msg_free(h);
    ferry_close(b);
}

/* A zero-copy allocation sent otherwise than alone on its own socket: on
 * another socket (its own socket's ring is then free again), as the first
 * part of a multipart message, and refused (the message is still the
 * caller's, its bytes intact, and the socket sends on). */
static void test_zero_copy_elsewhere(void **state)
{
    (void)state;
    char u[96], v[96];
    t_url(u, sizeof u, "zce");
    t_url(v, sizeof v, "zce2");
    ferry_socket *a = sock(FERRY_PAIR), *b = sock(FERRY_PAIR);
    ferry_socket *c = sock(FERRY_PAIR), *d = sock(FERRY_PAIR);
    assert_int_equal(ferry_setopt_int(b, FERRY_OPT_MAXMSGSIZE, 1000), 0);
    assert_int_equal(ferry_listen(b, u), 0);
    assert_int_equal(ferry_dial(a, u), 0);
    assert_int_equal(ferry_listen(d, v), 0);
    assert_int_equal(ferry_dial(c, v), 0);
    assert_int_equal(ferry_wait_peers(a, 1, 5000), 0);
    assert_int_equal(ferry_wait_peers(c, 1, 5000), 0);
    assert_int_equal(ferry_setopt_int(a, FERRY_OPT_SNDTIMEO, 5000), 0);
    assert_int_equal(ferry_setopt_int(b, FERRY_OPT_RCVTIMEO, 5000), 0);
    assert_int_equal(ferry_setopt_int(d, FERRY_OPT_RCVTIMEO, 5000), 0);
    char buf[2000];
    size_t n;
    for (int round = 0; round < 3; round++) {
        ferry_msg *m;
        assert_int_equal(ferry_msg_alloc(a, &m, 5), 0);
        memcpy(ferry_msg_data(m), "there", 5);
        assert_int_equal(ferry_msg_send(c, m, 0), 0); /* a's claim ends here */
        assert_int_equal(ferry_recv(d, buf, sizeof buf, &n, 0), 0);
        assert_int_equal(n, 5);
        assert_memory_equal(buf, "there", 5);
        assert_int_equal(ferry_send(a, "free", 4, 0), 0); /* a's ring is not held */
        assert_int_equal(ferry_recv(b, buf, sizeof buf, &n, 0), 0);
        assert_memory_equal(buf, "free", 4);
    }
    ferry_msg *m;
    assert_int_equal(ferry_msg_alloc(a, &m, 4), 0);
    memcpy(ferry_msg_data(m), "part", 4);
    assert_int_equal(ferry_msg_send(a, m, FERRY_MORE), 0);
    assert_int_equal(ferry_send(a, "end", 3, 0), 0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(ferry_recv(b, buf, sizeof buf, &n, 0), 0);
        assert_int_equal(n, i ? 3 : 4);
        assert_memory_equal(buf, i ? "end" : "part", n);
    }
    /* refused (over a's own MAXMSGSIZE, lowered after the allocation) */
    assert_int_equal(ferry_msg_alloc(a, &m, 200), 0);
    memset(ferry_msg_data(m), 'z', 200);
    assert_int_equal(ferry_setopt_int(a, FERRY_OPT_MAXMSGSIZE, 100), 0);
    assert_int_equal(ferry_msg_send(a, m, FERRY_MORE), FERRY_EMSGSIZE);
    assert_int_equal(ferry_setopt_int(a, FERRY_OPT_MAXMSGSIZE, 1000), 0);
    assert_int_equal(ferry_msg_size(m), 200);
    const char *z = ferry_msg_data(m);
    assert_int_equal(z[0], 'z');
    assert_int_equal(z[199], 'z');
    assert_int_equal(ferry_msg_send(c, m, 0), 0); /* still the caller's to send */
    assert_int_equal(ferry_recv(d, buf, sizeof buf, &n, 0), 0);
    assert_int_equal(n, 200);
    assert_int_equal(ferry_send(a, "after", 5, 0), 0);
    assert_int_equal(ferry_recv(b, buf, sizeof buf, &n, 0), 0);
    assert_memory_equal(buf, "after", 5);
    /* an allocation outlives its socket's close */
    assert_int_equal(ferry_msg_alloc(a, &m, 3), 0);
    memcpy(ferry_msg_data(m), "old", 3);
    ferry_close(a);
    assert_int_equal(ferry_msg_send(c, m, 0), 0);
    assert_int_equal(ferry_recv(d, buf, sizeof buf, &n, 0), 0);
    assert_memory_equal(buf, "old", 3);
    ferry_close(b);
    ferry_close(c);
    ferry_close(d);
}

/* MAXMSGSIZE: the sender learns the receiver's limit at connect. */
static void test_max_msg_size(void **state)
{
    (void)state;
    char u[96];
    t_url(u, sizeof u, "max");
    ferry_socket *pull = sock(FERRY_PULL), *push = sock(FERRY_PUSH);
    assert_int_equal(ferry_setopt_int(pull, FERRY_OPT_MAXMSGSIZE, 1000), 0);
    assert_int_equal(ferry_listen(pull, u), 0);
    assert_int_equal(ferry_dial(push, u), 0);
    static char big[2000];
    assert_int_equal(ferry_send(push, big, sizeof big, 0), FERRY_EMSGSIZE);
    assert_int_equal(ferry_send(push, big, 1000, 0), 0);
    size_t n;
    assert_int_equal(ferry_recv(pull, big, sizeof big, &n, 0), 0);
    assert_int_equal(n, 1000);
    assert_int_equal(ferry_setopt_int(push, FERRY_OPT_MAXMSGSIZE, 10), 0);
    assert_int_equal(ferry_send(push, big, 11, 0), FERRY_EMSGSIZE);
    ferry_close(push);
    ferry_close(pull);
}

/* Dial first, listen later; and reconnect after the listener restarts. */
static void test_dial_before_listen(void **state)
{
    (void)state;
    char u[96];
    t_url(u, sizeof u, "late");
    ferry_socket *push = sock(FERRY_PUSH);
    assert_int_equal(ferry_setopt_int(push, FERRY_OPT_RECONNECT_IVL, 5), 0);
    assert_int_equal(ferry_setopt_int(push, FERRY_OPT_RECONNECT_IVL_MAX, 20), 0);
    assert_int_equal(ferry_dial(push, u), 0);
    for (int round = 0; round < 2; round++) {
        ferry_socket *pull = sock(FERRY_PULL);
        assert_int_equal(ferry_listen(pull, u), 0);
        assert_int_equal(ferry_send(push, "x", 1, 0), 0); /* waits for the connection */
        char b[4];
        size_t n;
        assert_int_equal(ferry_recv(pull, b, sizeof b, &n, 0), 0);
        ferry_close(pull);
    }
    ferry_close(push);
}

/* A peer of another uid is refused unless the listener allows it. */
static void test_other_uid(void **state)
{
    (void)state;
    if (geteuid() != 0)
        skip();
    char u[96];
    t_url(u, sizeof u, "uid");
    ferry_socket *pull = sock(FERRY_PULL);
    assert_int_equal(ferry_listen(pull, u), 0);
    for (int allow = 0; allow < 2; allow++) {
        if (allow)
            assert_int_equal(ferry_setopt_int(pull, FERRY_OPT_PEER_UID, 65534), 0);
        pid_t pid = fork();
        if (pid == 0) {
            if (setgid(65534) != 0 || setuid(65534) != 0)
                _exit(90);
            ferry_socket *c;
            CHILD_CHECK(ferry_socket_open(&c, FERRY_PUSH) == 0, 91);
            int rc = ferry_dial(c, u);
            if (!allow) {
                CHILD_CHECK(rc == FERRY_EACCES, 1);
                CHILD_CHECK(strstr(ferry_errdetail(), "uid 65534") != NULL, 2);
                _exit(0);
            }
            CHILD_CHECK(rc == 0, 3);
            CHILD_CHECK(ferry_send(c, "nobody", 6, 0) == 0, 4);
            ferry_close(c);
            _exit(0);
        }
        assert_int_equal(t_wait(pid), 0);
    }
    char b[8];
    size_t n;
    assert_int_equal(ferry_recv(pull, b, sizeof b, &n, 0), 0);
    assert_memory_equal(b, "nobody", 6);
    ferry_close(pull);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_listen_conflict),
        cmocka_unit_test(test_pair_sizes),
        cmocka_unit_test(test_pair_one_peer),
        cmocka_unit_test(test_incompatible_type),
        cmocka_unit_test(test_reqrep_routing),
        cmocka_unit_test(test_req_peer_dies),
        cmocka_unit_test(test_pubsub_filter),
        cmocka_unit_test(test_pub_filters_and_drops),
        cmocka_unit_test(test_many_subscriptions),
        cmocka_unit_test(test_pipeline),
        cmocka_unit_test(test_push_hwm_blocks),
        cmocka_unit_test(test_recv_timeouts),
        cmocka_unit_test(test_multipart),
        cmocka_unit_test(test_socket_fd),
        cmocka_unit_test(test_socket_fd_peer_death),
        cmocka_unit_test(test_hold_then_poll),
        cmocka_unit_test(test_zero_copy),
        cmocka_unit_test(test_batch),
        cmocka_unit_test(test_ring_prefault),
        cmocka_unit_test(test_ring_prefault_listener_bound),
        cmocka_unit_test(test_pipe_ids_wrap),
        cmocka_unit_test(test_zero_copy_multipart),
        cmocka_unit_test(test_forward_multipart),
        cmocka_unit_test(test_streamed_after_inplace),
        cmocka_unit_test(test_zero_copy_elsewhere),
        cmocka_unit_test(test_max_msg_size),
        cmocka_unit_test(test_dial_before_listen),
        cmocka_unit_test(test_other_uid),
    };
    if (getenv("TEST_FILTER"))
        cmocka_set_test_filter(getenv("TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
