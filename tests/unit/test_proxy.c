/* test_proxy.c - ferry_proxy: pull-push, xsub-xpub and router-dealer
 * through a proxy thread; nothing lost to a full destination; capture;
 * PAUSE, RESUME, STATISTICS and TERMINATE on PAIR and REP control
 * sockets; a side closed under it; one way from tcp:// to shm://. */
#include "../common.h"

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>

static ferry_socket *sock(int type)
{
    ferry_socket *s;
    assert_int_equal(ferry_socket_open(&s, type), 0);
    return s;
}

struct run {
    ferry_socket *front, *back, *capture, *control;
    pthread_t thr;
    int rc;
};

static void *proxy_thread(void *arg)
{
    struct run *r = arg;
    r->rc = ferry_proxy(r->front, r->back, r->capture, r->control);
    return NULL;
}

/* Starts a proxy between front and back with a PAIR control; *ctl is our
 * end of it. */
static void start(struct run *r, ferry_socket *front, ferry_socket *back, ferry_socket *capture,
                  ferry_socket **ctl, int control_type)
{
    char url[96];
    t_url(url, sizeof url, "proxyctl");
    *r = (struct run){.front = front, .back = back, .capture = capture};
    r->control = sock(control_type);
    assert_int_equal(ferry_listen(r->control, url), 0);
    *ctl = sock(control_type == FERRY_REP ? FERRY_REQ : FERRY_PAIR);
    assert_int_equal(ferry_dial(*ctl, url), 0);
    assert_int_equal(ferry_setopt_int(*ctl, FERRY_OPT_RCVTIMEO, 10000), 0);
    assert_int_equal(pthread_create(&r->thr, NULL, proxy_thread, r), 0);
}

static void stop(struct run *r, ferry_socket *ctl)
{
    assert_int_equal(ferry_send(ctl, "TERMINATE", 9, 0), 0);
    pthread_join(r->thr, NULL);
    assert_int_equal(r->rc, 0);
    ferry_close(ctl);
    ferry_close(r->control);
}

/* The nine counters of STATISTICS. */
static void stats(ferry_socket *ctl, uint64_t v[9])
{
    assert_int_equal(ferry_send(ctl, "STATISTICS", 10, 0), 0);
    for (int i = 0; i < 9; i++) {
        size_t n;
        int64_t more;
        assert_int_equal(ferry_recv(ctl, &v[i], sizeof v[i], &n, 0), 0);
        assert_int_equal(n, sizeof v[i]);
        assert_int_equal(ferry_getopt_int(ctl, FERRY_OPT_RCVMORE, &more), 0);
        assert_int_equal(more, i < 8);
    }
}

/* Sends n messages of one to three parts ("m<i>.<k>"); their bytes. */
static uint64_t send_numbered(ferry_socket *s, int n)
{
    uint64_t bytes = 0;
    for (int i = 0; i < n; i++) {
        int parts = 1 + i % 3;
        for (int k = 0; k < parts; k++) {
            char b[32];
            int len = snprintf(b, sizeof b, "m%d.%d", i, k);
            bytes += (uint64_t)len;
            assert_int_equal(ferry_send(s, b, (size_t)len, k < parts - 1 ? FERRY_MORE : 0), 0);
        }
    }
    return bytes;
}

/* Receives what send_numbered sent: every message whole, in order. */
static void recv_numbered(ferry_socket *s, int n)
{
    for (int i = 0; i < n; i++) {
        int parts = 1 + i % 3;
        for (int k = 0; k < parts; k++) {
            char b[32], want[32];
            size_t len;
            int64_t more;
            int wlen = snprintf(want, sizeof want, "m%d.%d", i, k);
            assert_int_equal(ferry_recv(s, b, sizeof b, &len, 0), 0);
            assert_int_equal(len, (size_t)wlen);
            assert_memory_equal(b, want, len);
            assert_int_equal(ferry_getopt_int(s, FERRY_OPT_RCVMORE, &more), 0);
            assert_int_equal(more, k < parts - 1);
        }
    }
}

/* PUSH -> [PULL proxy PUSH] -> PULL over shm://: 5,000 messages of one to
 * three parts arrive whole and in order; the counters add up; a capture
 * PULL gets a copy of each. */
static void test_pull_push(void **state)
{
    (void)state;
    char in[96], out[96], cap[96];
    t_url(in, sizeof in, "proxyin");
    t_url(out, sizeof out, "proxyout");
    t_url(cap, sizeof cap, "proxycap");
    ferry_socket *front = sock(FERRY_PULL), *back = sock(FERRY_PUSH), *capture = sock(FERRY_PUSH);
    ferry_socket *src = sock(FERRY_PUSH), *dst = sock(FERRY_PULL), *copies = sock(FERRY_PULL);
    /* everything is sent before anything is read: room for all of it in
     * every ring (HWMs are agreed when a connection is made: set first) */
    ferry_socket *all[] = {front, back, capture, src, dst, copies};
    for (int i = 0; i < 6; i++) {
        assert_int_equal(ferry_setopt_int(all[i], FERRY_OPT_SNDHWM, 0), 0);
        assert_int_equal(ferry_setopt_int(all[i], FERRY_OPT_RCVHWM, 0), 0);
    }
    assert_int_equal(ferry_listen(front, in), 0);
    assert_int_equal(ferry_listen(back, out), 0);
    assert_int_equal(ferry_listen(capture, cap), 0);
    assert_int_equal(ferry_dial(src, in), 0);
    assert_int_equal(ferry_dial(dst, out), 0);
    assert_int_equal(ferry_dial(copies, cap), 0);
    assert_int_equal(ferry_setopt_int(dst, FERRY_OPT_RCVTIMEO, 10000), 0);
    assert_int_equal(ferry_setopt_int(copies, FERRY_OPT_RCVTIMEO, 10000), 0);
    struct run r;
    ferry_socket *ctl;
    start(&r, front, back, capture, &ctl, FERRY_PAIR);
    enum { N = 5000 };
    uint64_t bytes = send_numbered(src, N);
    recv_numbered(dst, N);
    recv_numbered(copies, N);
    uint64_t v[9];
    stats(ctl, v);
    assert_int_equal(v[0], N);     /* frontend received */
    assert_int_equal(v[1], bytes); /* and its bytes */
    assert_int_equal(v[2], 0);     /* nothing sent out of the frontend */
    assert_int_equal(v[6], N);     /* backend sent */
    assert_int_equal(v[7], bytes);
    assert_int_equal(v[8], 0); /* none lost */
    stop(&r, ctl);
    ferry_close(src);
    ferry_close(dst);
    ferry_close(copies);
    ferry_close(front);
    ferry_close(back);
    ferry_close(capture);
}

/* A destination that does not read: the proxy stops taking, the source's
 * sender is pushed back (its sends time out), and when the reader comes
 * every message the sender got through arrives, exactly once. */
static void test_nothing_lost_when_full(void **state)
{
    (void)state;
    char in[96], out[96];
    t_url(in, sizeof in, "proxyfull");
    t_url(out, sizeof out, "proxyfull");
    ferry_socket *front = sock(FERRY_PULL), *back = sock(FERRY_PUSH);
    assert_int_equal(ferry_setopt_int(front, FERRY_OPT_RCVHWM, 10), 0);
    assert_int_equal(ferry_setopt_int(back, FERRY_OPT_SNDHWM, 10), 0);
    assert_int_equal(ferry_listen(front, in), 0);
    assert_int_equal(ferry_listen(back, out), 0);
    ferry_socket *src = sock(FERRY_PUSH), *dst = sock(FERRY_PULL);
    assert_int_equal(ferry_setopt_int(src, FERRY_OPT_SNDHWM, 10), 0);
    assert_int_equal(ferry_setopt_int(dst, FERRY_OPT_RCVHWM, 10), 0);
    assert_int_equal(ferry_setopt_int(src, FERRY_OPT_SNDTIMEO, 300), 0);
    assert_int_equal(ferry_dial(src, in), 0);
    assert_int_equal(ferry_dial(dst, out), 0);
    struct run r;
    ferry_socket *ctl;
    start(&r, front, back, NULL, &ctl, FERRY_PAIR);
    int sent = 0;
    while (sent < 100000 && ferry_send(src, &sent, sizeof sent, 0) == 0)
        sent++;
    assert_true(sent < 100000); /* pushed back: the chain holds a bounded amount */
    assert_int_equal(ferry_setopt_int(dst, FERRY_OPT_RCVTIMEO, 10000), 0);
    for (int i = 0; i < sent; i++) {
        int got;
        size_t n;
        assert_int_equal(ferry_recv(dst, &got, sizeof got, &n, 0), 0);
        assert_int_equal(got, i);
    }
    assert_int_equal(ferry_setopt_int(dst, FERRY_OPT_RCVTIMEO, 0), 0);
    int extra;
    size_t n;
    assert_int_equal(ferry_recv(dst, &extra, sizeof extra, &n, 0), FERRY_EAGAIN);
    uint64_t v[9];
    stats(ctl, v);
    assert_int_equal(v[0], (uint64_t)sent);
    assert_int_equal(v[6], (uint64_t)sent);
    assert_int_equal(v[8], 0);
    stop(&r, ctl);
    ferry_close(src);
    ferry_close(dst);
    ferry_close(front);
    ferry_close(back);
}

/* PUB -> [XSUB proxy XPUB] -> three SUBs: subscriptions travel up through
 * the proxy, and each SUB gets exactly its topic, in order. */
static void test_xsub_xpub(void **state)
{
    (void)state;
    ferry_socket *pub = sock(FERRY_PUB), *front = sock(FERRY_XSUB), *back = sock(FERRY_XPUB);
    assert_int_equal(ferry_listen(pub, "tcp://127.0.0.1:0"), 0);
    char purl[128], burl[96];
    assert_int_equal(ferry_socket_addr(pub, purl, sizeof purl), 0);
    assert_int_equal(ferry_dial(front, purl), 0);
    t_url(burl, sizeof burl, "proxyxpub");
    assert_int_equal(ferry_listen(back, burl), 0);
    struct run r;
    ferry_socket *ctl;
    start(&r, front, back, NULL, &ctl, FERRY_PAIR);
    static const char *topics[] = {"alpha", "beta", "gamma"};
    ferry_socket *subs[3];
    for (int i = 0; i < 3; i++) {
        subs[i] = sock(FERRY_SUB);
        assert_int_equal(ferry_setopt(subs[i], FERRY_OPT_SUBSCRIBE, topics[i], 1), 0);
        assert_int_equal(ferry_setopt_int(subs[i], FERRY_OPT_RCVTIMEO, 10000), 0);
        assert_int_equal(ferry_dial(subs[i], burl), 0);
    }
    /* Each subscription reaches the PUB through the proxy some time after
     * the SUB made it: probe each topic until its SUB hears one. */
    int synced[3] = {0}, nsynced = 0;
    uint64_t probes_sent = 0;
    for (int round = 0; round < 2000 && nsynced < 3; round++) {
        for (int i = 0; i < 3; i++) {
            char b[32], got[32];
            size_t n;
            if (synced[i])
                continue;
            int len = snprintf(b, sizeof b, "%s probe", topics[i]);
            assert_int_equal(ferry_send(pub, b, (size_t)len, 0), 0);
            probes_sent++;
            assert_int_equal(ferry_setopt_int(subs[i], FERRY_OPT_RCVTIMEO, 5), 0);
            if (ferry_recv(subs[i], got, sizeof got, &n, 0) == 0) {
                synced[i] = 1;
                nsynced++;
            }
            assert_int_equal(ferry_setopt_int(subs[i], FERRY_OPT_RCVTIMEO, 10000), 0);
        }
    }
    assert_int_equal(nsynced, 3);
    uint64_t v[9];
    stats(ctl, v);
    assert_true(v[2] >= 3); /* the three subscriptions went up through the XSUB */
    uint64_t probes = v[0];
    for (int i = 0; i < 300; i++) {
        char b[32];
        int len = snprintf(b, sizeof b, "%s %d", topics[i % 3], i);
        assert_int_equal(ferry_send(pub, b, (size_t)len, 0), 0);
        assert_int_equal(ferry_send(pub, "zeta nobody", 11, 0), 0); /* filtered at the PUB */
    }
    for (int s = 0; s < 3; s++)
        for (int i = s; i < 300; i += 3) {
            char b[32], want[32];
            size_t n;
            int len = snprintf(want, sizeof want, "%s %d", topics[s], i);
            do /* late probes first */
                assert_int_equal(ferry_recv(subs[s], b, sizeof b, &n, 0), 0);
            while (n > 6 && memcmp(b + n - 6, " probe", 6) == 0);
            assert_int_equal(n, (size_t)len);
            assert_memory_equal(b, want, n);
        }
    stats(ctl, v);
    /* the PUB sent only what the subscriptions that came up through the
     * proxy asked for: no zeta reached it. Beside the 300, the proxy took
     * the probes it had when first asked and maybe some still on their way
     * then, never more than were sent. */
    assert_true(v[0] >= probes + 300);
    assert_true(v[0] <= probes_sent + 300);
    for (int s = 0; s < 3; s++) {
        char b[32];
        size_t n;
        assert_int_equal(ferry_setopt_int(subs[s], FERRY_OPT_RCVTIMEO, 0), 0);
        int rc;
        while ((rc = ferry_recv(subs[s], b, sizeof b, &n, 0)) == 0) /* late probes only */
            assert_true(n > 6 && memcmp(b + n - 6, " probe", 6) == 0);
        assert_int_equal(rc, FERRY_EAGAIN);
    }
    stop(&r, ctl);
    for (int i = 0; i < 3; i++)
        ferry_close(subs[i]);
    ferry_close(pub);
    ferry_close(front);
    ferry_close(back);
}

struct client {
    char url[96];
    int id, answered;
};

static void *client(void *arg)
{
    struct client *c = arg;
    ferry_socket *req;
    if (ferry_socket_open(&req, FERRY_REQ) != 0 || ferry_dial(req, c->url) != 0)
        return NULL;
    ferry_setopt_int(req, FERRY_OPT_RCVTIMEO, 10000);
    for (int i = 0; i < 200; i++) {
        char b[32], got[64];
        int len = snprintf(b, sizeof b, "c%d r%d", c->id, i);
        size_t n;
        if (ferry_send(req, b, (size_t)len, 0) != 0 || ferry_recv(req, got, sizeof got, &n, 0) != 0)
            break;
        if (n == (size_t)len + 5 && memcmp(got, "done ", 5) == 0 && memcmp(got + 5, b, n - 5) == 0)
            c->answered++;
    }
    ferry_close(req);
    return NULL;
}

static atomic_int workers_run;

/* Answers until told to stop (its socket is closed by the test only after
 * it returned: a socket is not closed under another thread's call). */
static void *worker(void *arg)
{
    ferry_socket *rep = arg;
    while (atomic_load(&workers_run)) {
        char b[64], out[80];
        size_t n;
        int rc = ferry_recv(rep, b, sizeof b, &n, 0);
        if (rc == FERRY_ETIMEDOUT)
            continue;
        if (rc != 0)
            return NULL;
        memcpy(out, "done ", 5);
        memcpy(out + 5, b, n);
        if (ferry_send(rep, out, n + 5, 0) != 0)
            return NULL;
    }
    return NULL;
}

/* REQ clients -> [ROUTER proxy DEALER] -> REP workers: every request is
 * answered once, to the client that asked; a REP control socket gets an
 * answer to each command. */
static void test_router_dealer(void **state)
{
    (void)state;
    char fu[96], bu[96];
    t_url(fu, sizeof fu, "proxyrouter");
    ferry_socket *front = sock(FERRY_ROUTER), *back = sock(FERRY_DEALER);
    assert_int_equal(ferry_listen(front, fu), 0);
    assert_int_equal(ferry_listen(back, "tcp://127.0.0.1:0"), 0);
    assert_int_equal(ferry_socket_addr(back, bu, sizeof bu), 0);
    ferry_socket *workers[3];
    pthread_t wt[3], ct[4];
    atomic_store(&workers_run, 1);
    for (int i = 0; i < 3; i++) {
        workers[i] = sock(FERRY_REP);
        assert_int_equal(ferry_setopt_int(workers[i], FERRY_OPT_RCVTIMEO, 50), 0);
        assert_int_equal(ferry_dial(workers[i], bu), 0);
        assert_int_equal(pthread_create(&wt[i], NULL, worker, workers[i]), 0);
    }
    assert_int_equal(ferry_wait_peers(back, 3, 10000), 0);
    struct run r;
    ferry_socket *ctl;
    start(&r, front, back, NULL, &ctl, FERRY_REP);
    char ans[16];
    size_t n;
    assert_int_equal(ferry_send(ctl, "PAUSE", 5, 0), 0);
    assert_int_equal(ferry_recv(ctl, ans, sizeof ans, &n, 0), 0);
    assert_memory_equal(ans, "PAUSE", 5);
    assert_int_equal(ferry_send(ctl, "RESUME", 6, 0), 0);
    assert_int_equal(ferry_recv(ctl, ans, sizeof ans, &n, 0), 0);
    assert_memory_equal(ans, "RESUME", 6);
    assert_int_equal(ferry_send(ctl, "NONSENSE", 8, 0), 0);
    assert_int_equal(ferry_recv(ctl, ans, sizeof ans, &n, 0), 0);
    assert_memory_equal(ans, "UNKNOWN", 7);
    /* garbage on the control socket: a word with a NUL and junk after it,
     * one far too long, a command in two parts (the first counts) */
    assert_int_equal(ferry_send(ctl, "STATISTICS\0junk", 15, 0), 0);
    assert_int_equal(ferry_recv(ctl, ans, sizeof ans, &n, 0), 0);
    assert_memory_equal(ans, "UNKNOWN", 7);
    char longcmd[300];
    memset(longcmd, 'P', sizeof longcmd);
    assert_int_equal(ferry_send(ctl, longcmd, sizeof longcmd, 0), 0);
    assert_int_equal(ferry_recv(ctl, ans, sizeof ans, &n, 0), 0);
    assert_memory_equal(ans, "UNKNOWN", 7);
    assert_int_equal(ferry_send(ctl, "RESUME", 6, FERRY_MORE), 0);
    assert_int_equal(ferry_send(ctl, "and more", 8, 0), 0);
    assert_int_equal(ferry_recv(ctl, ans, sizeof ans, &n, 0), 0);
    assert_int_equal(n, 6);
    assert_memory_equal(ans, "RESUME", 6);
    struct client c[4];
    for (int i = 0; i < 4; i++) {
        c[i] = (struct client){.id = i};
        snprintf(c[i].url, sizeof c[i].url, "%s", fu);
        assert_int_equal(pthread_create(&ct[i], NULL, client, &c[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(ct[i], NULL);
        assert_int_equal(c[i].answered, 200);
    }
    uint64_t v[9];
    stats(ctl, v);
    assert_int_equal(v[0], 800); /* requests in at the ROUTER */
    assert_int_equal(v[2], 800); /* replies out of it */
    assert_int_equal(v[8], 0);
    assert_int_equal(ferry_send(ctl, "TERMINATE", 9, 0), 0);
    assert_int_equal(ferry_recv(ctl, ans, sizeof ans, &n, 0), 0);
    pthread_join(r.thr, NULL);
    assert_int_equal(r.rc, 0);
    ferry_close(ctl);
    ferry_close(r.control);
    atomic_store(&workers_run, 0);
    for (int i = 0; i < 3; i++) {
        pthread_join(wt[i], NULL);
        ferry_close(workers[i]);
    }
    ferry_close(front);
    ferry_close(back);
}

/* PAUSE holds messages back (the proxy answered the STATISTICS sent after
 * it, so it had taken PAUSE), RESUME lets them through. */
static void test_pause_resume(void **state)
{
    (void)state;
    char in[96], out[96];
    t_url(in, sizeof in, "proxyp");
    t_url(out, sizeof out, "proxyp");
    ferry_socket *front = sock(FERRY_PULL), *back = sock(FERRY_PUSH);
    assert_int_equal(ferry_listen(front, in), 0);
    assert_int_equal(ferry_listen(back, out), 0);
    ferry_socket *src = sock(FERRY_PUSH), *dst = sock(FERRY_PULL);
    assert_int_equal(ferry_dial(src, in), 0);
    assert_int_equal(ferry_dial(dst, out), 0);
    struct run r;
    ferry_socket *ctl;
    start(&r, front, back, NULL, &ctl, FERRY_PAIR);
    assert_int_equal(ferry_send(ctl, "PAUSE", 5, 0), 0);
    uint64_t v[9];
    stats(ctl, v);
    assert_int_equal(ferry_send(src, "held", 4, 0), 0);
    assert_int_equal(ferry_setopt_int(dst, FERRY_OPT_RCVTIMEO, 200), 0);
    char b[8];
    size_t n;
    assert_int_equal(ferry_recv(dst, b, sizeof b, &n, 0), FERRY_ETIMEDOUT);
    assert_int_equal(ferry_send(ctl, "RESUME", 6, 0), 0);
    assert_int_equal(ferry_setopt_int(dst, FERRY_OPT_RCVTIMEO, 10000), 0);
    assert_int_equal(ferry_recv(dst, b, sizeof b, &n, 0), 0);
    assert_memory_equal(b, "held", 4);
    stop(&r, ctl);
    ferry_close(src);
    ferry_close(dst);
    ferry_close(front);
    ferry_close(back);
}

static uint64_t thread_cpu_ms(pthread_t t)
{
    clockid_t c;
    struct timespec ts;
    if (pthread_getcpuclockid(t, &c) != 0 || clock_gettime(c, &ts) != 0)
        return 0;
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* A request held because no worker is there yet (a multipart message: a
 * ROUTER's id, the delimiter, the body) costs the proxy no CPU while it
 * waits, and goes out when a worker comes; a message larger than a ring
 * goes through (streamed as the reader frees room). */
static void test_held_without_spinning(void **state)
{
    (void)state;
    char fu[96], bu[96];
    t_url(fu, sizeof fu, "proxyheld");
    t_url(bu, sizeof bu, "proxyheld");
    ferry_socket *front = sock(FERRY_ROUTER), *back = sock(FERRY_DEALER);
    assert_int_equal(ferry_listen(front, fu), 0);
    assert_int_equal(ferry_listen(back, bu), 0);
    struct run r;
    ferry_socket *ctl;
    start(&r, front, back, NULL, &ctl, FERRY_PAIR);
    ferry_socket *req = sock(FERRY_REQ);
    assert_int_equal(ferry_setopt_int(req, FERRY_OPT_RCVTIMEO, 10000), 0);
    assert_int_equal(ferry_dial(req, fu), 0);
    assert_int_equal(ferry_send(req, "q", 1, 0), 0);
    uint64_t v[9];
    for (int k = 0; k < 1000; k++) { /* until the proxy took it (and holds it) */
        stats(ctl, v);
        if (v[0] == 1)
            break;
    }
    assert_int_equal(v[0], 1);
    uint64_t cpu0 = thread_cpu_ms(r.thr), t0 = t_now_ms();
    ferry_socket *rep = sock(FERRY_REP);
    assert_int_equal(ferry_setopt_int(rep, FERRY_OPT_RCVTIMEO, 10000), 0);
    /* the proxy holds the request while nobody can take it: a window of
     * 300 ms to see what that costs it (a measurement, not a hand-off) */
    while (t_now_ms() - t0 < 300)
        poll(NULL, 0, (int)(300 - (t_now_ms() - t0)));
    stats(ctl, v);
    assert_int_equal(v[6], 0);
    assert_true(thread_cpu_ms(r.thr) - cpu0 < 150); /* it waited, it did not spin */
    assert_int_equal(ferry_dial(rep, bu), 0);
    char b[8];
    size_t n;
    assert_int_equal(ferry_recv(rep, b, sizeof b, &n, 0), 0);
    assert_int_equal(ferry_send(rep, "a", 1, 0), 0);
    assert_int_equal(ferry_recv(req, b, sizeof b, &n, 0), 0);
    assert_memory_equal(b, "a", 1);
    stop(&r, ctl);
    ferry_close(req);
    ferry_close(rep);
    ferry_close(front);
    ferry_close(back);

    /* PUSH -> [PULL proxy PUSH] -> PULL, 1 MiB rings, a 3 MiB message */
    char in[96], out[96];
    t_url(in, sizeof in, "proxybig");
    t_url(out, sizeof out, "proxybig");
    ferry_socket *f2 = sock(FERRY_PULL), *b2 = sock(FERRY_PUSH);
    ferry_socket *src = sock(FERRY_PUSH), *dst = sock(FERRY_PULL);
    assert_int_equal(ferry_listen(f2, in), 0);
    assert_int_equal(ferry_listen(b2, out), 0);
    assert_int_equal(ferry_dial(src, in), 0);
    assert_int_equal(ferry_dial(dst, out), 0);
    start(&r, f2, b2, NULL, &ctl, FERRY_PAIR);
    size_t big = 3u << 20;
    unsigned char *msg = malloc(big), *got = malloc(big);
    assert_non_null(msg);
    assert_non_null(got);
    for (size_t i = 0; i < big; i++)
        msg[i] = (unsigned char)(i * 7);
    assert_int_equal(ferry_send(src, msg, big, 0), 0);
    assert_int_equal(ferry_setopt_int(dst, FERRY_OPT_RCVTIMEO, 20000), 0);
    int brc = ferry_recv(dst, got, big, &n, 0);
    if (brc != 0) {
        stats(ctl, v);
        fprintf(stderr, "big: %d (%s) stats in %llu out %llu lost %llu\n", brc, ferry_errdetail(),
                (unsigned long long)v[0], (unsigned long long)v[6], (unsigned long long)v[8]);
    }
    assert_int_equal(brc, 0);
    assert_int_equal(n, big);
    assert_memory_equal(got, msg, big);
    stop(&r, ctl);
    free(msg);
    free(got);
    ferry_close(src);
    ferry_close(dst);
    ferry_close(f2);
    ferry_close(b2);
}

/* A broker's request larger than the rings on both sides (REQ -> [ROUTER
 * proxy DEALER] -> REP over shm://, 1 MiB rings, 3 MiB): it streams in and
 * out, its envelope before it, and the reply comes back. */
static void test_router_dealer_large(void **state)
{
    (void)state;
    char fu[96], bu[96];
    t_url(fu, sizeof fu, "proxylarge");
    t_url(bu, sizeof bu, "proxylarge");
    ferry_socket *front = sock(FERRY_ROUTER), *back = sock(FERRY_DEALER);
    ferry_socket *req = sock(FERRY_REQ), *rep = sock(FERRY_REP);
    ferry_socket *all[] = {front, back, req, rep};
    for (int i = 0; i < 4; i++)
        assert_int_equal(ferry_setopt_int(all[i], FERRY_OPT_RING_SIZE, 1 << 20), 0);
    assert_int_equal(ferry_setopt_int(back, FERRY_OPT_SNDTIMEO, 10000), 0);
    assert_int_equal(ferry_listen(front, fu), 0);
    assert_int_equal(ferry_listen(back, bu), 0);
    struct run r;
    ferry_socket *ctl;
    start(&r, front, back, NULL, &ctl, FERRY_PAIR);
    assert_int_equal(ferry_dial(rep, bu), 0);
    assert_int_equal(ferry_dial(req, fu), 0);
    size_t big = 3u << 20;
    unsigned char *msg = malloc(big);
    struct t_recv_job j = {.s = rep, .got = malloc(big), .cap = big, .reply = 1, .rc = -1};
    assert_non_null(msg);
    assert_non_null(j.got);
    for (size_t i = 0; i < big; i++)
        msg[i] = (unsigned char)(i * 11);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, t_recv_thread, &j), 0);
    assert_int_equal(ferry_send(req, msg, big, 0), 0);
    size_t answer = 0, n;
    assert_int_equal(ferry_recv(req, &answer, sizeof answer, &n, 0), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(j.rc, 0);
    assert_int_equal(j.n, big);
    assert_memory_equal(j.got, msg, big);
    assert_int_equal(answer, big);
    stop(&r, ctl);
    free(msg);
    free(j.got);
    for (int i = 0; i < 4; i++)
        ferry_close(all[i]);
}

/* One way from tcp:// to shm:// (the proxy reads its source with blocking
 * receives, on its own thread): a lone message wakes a reader waiting in a
 * poller on the destination (the source's wait flushes the batch; without
 * that the reader is not woken at all); 3,000
 * messages of one to three parts arrive whole and in order; commands are
 * heard while no message comes; the source's receive timeout is the
 * caller's again afterwards. */
static void test_one_way_tcp(void **state)
{
    (void)state;
    char in[96], out[96];
    t_url(out, sizeof out, "proxy1way");
    ferry_socket *front = sock(FERRY_PULL), *back = sock(FERRY_PUSH);
    assert_int_equal(ferry_listen(front, "tcp://127.0.0.1:*"), 0);
    assert_int_equal(ferry_socket_addr(front, in, sizeof in), 0);
    assert_int_equal(ferry_listen(back, out), 0);
    ferry_socket *src = sock(FERRY_PUSH), *dst = sock(FERRY_PULL);
    assert_int_equal(ferry_setopt_int(dst, FERRY_OPT_SPIN, 0), 0); /* asleep when idle */
    assert_int_equal(ferry_dial(src, in), 0);
    assert_int_equal(ferry_dial(dst, out), 0);
    struct run r;
    ferry_socket *ctl;
    start(&r, front, back, NULL, &ctl, FERRY_PAIR);
    char b[32];
    size_t n;
    assert_int_equal(ferry_setopt_int(dst, FERRY_OPT_RCVTIMEO, 10000), 0);
    assert_int_equal(ferry_send(src, "first", 5, 0), 0); /* the connections are up */
    assert_int_equal(ferry_recv(dst, b, sizeof b, &n, 0), 0);
    /* A reader waiting in a poller is woken by nothing but the flush: 5 s
     * without one is a failure, not a slow pass. */
    ferry_poller *pl;
    assert_int_equal(ferry_poller_new(&pl), 0);
    assert_int_equal(ferry_poller_add(pl, dst, FERRY_POLLIN, NULL), 0);
    for (int i = 0; i < 20; i++) {
        assert_int_equal(ferry_send(src, "one", 3, 0), 0);
        ferry_poll_event ev;
        assert_int_equal(ferry_poller_wait(pl, &ev, 1, 5000), 1);
        assert_int_equal(ferry_recv(dst, b, sizeof b, &n, FERRY_DONTWAIT), 0);
        assert_int_equal(n, 3);
    }
    ferry_poller_free(pl);
    enum { N = 3000 };
    send_numbered(src, N);
    recv_numbered(dst, N);
    uint64_t v[9];
    assert_int_equal(ferry_send(ctl, "PAUSE", 5, 0), 0);
    stats(ctl, v); /* answered: PAUSE was heard before it */
    assert_int_equal(v[0], N + 21);
    assert_int_equal(v[6], N + 21);
    assert_int_equal(v[8], 0);
    assert_int_equal(ferry_send(src, "held", 4, 0), 0);
    assert_int_equal(ferry_setopt_int(dst, FERRY_OPT_RCVTIMEO, 200), 0);
    assert_int_equal(ferry_recv(dst, b, sizeof b, &n, 0), FERRY_ETIMEDOUT);
    assert_int_equal(ferry_send(ctl, "RESUME", 6, 0), 0);
    assert_int_equal(ferry_setopt_int(dst, FERRY_OPT_RCVTIMEO, 10000), 0);
    assert_int_equal(ferry_recv(dst, b, sizeof b, &n, 0), 0);
    assert_memory_equal(b, "held", 4);
    /* idle, it waits for its source and hears commands: a window of 300 ms
     * to see what that costs it (a measurement, not a hand-off) */
    uint64_t cpu0 = thread_cpu_ms(r.thr), t0 = t_now_ms();
    while (t_now_ms() - t0 < 300)
        poll(NULL, 0, (int)(300 - (t_now_ms() - t0)));
    assert_true(thread_cpu_ms(r.thr) - cpu0 < 150);
    stop(&r, ctl);
    int64_t t = 0;
    assert_int_equal(ferry_getopt_int(front, FERRY_OPT_RCVTIMEO, &t), 0);
    assert_int_equal(t, -1);
    ferry_close(src);
    ferry_close(dst);
    ferry_close(front);
    ferry_close(back);
}

/* Pairs that cannot be proxied, sockets given twice, and a forwarder's
 * link to itself. */
static void test_invalid(void **state)
{
    (void)state;
    ferry_socket *b = sock(FERRY_PUSH), *c = sock(FERRY_PUSH), *d = sock(FERRY_PULL);
    assert_int_equal(ferry_proxy(b, c, NULL, NULL), FERRY_EINVAL);
    assert_int_equal(ferry_proxy(b, b, NULL, NULL), FERRY_EINVAL);
    assert_int_equal(ferry_proxy(NULL, b, NULL, NULL), FERRY_EINVAL);
    assert_int_equal(ferry_proxy(d, b, b, NULL), FERRY_EINVAL);
    assert_int_equal(ferry_proxy(d, b, NULL, d), FERRY_EINVAL);
    assert_int_equal(ferry_flush_on_wait(NULL, b), FERRY_EINVAL);
    assert_int_equal(ferry_flush_on_wait(d, d), FERRY_EINVAL);
    assert_int_equal(ferry_flush_on_wait(d, b), 0);
    assert_int_equal(ferry_flush_on_wait(d, NULL), 0);
    ferry_close(b);
    ferry_close(c);
    ferry_close(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pull_push),           cmocka_unit_test(test_nothing_lost_when_full),
        cmocka_unit_test(test_xsub_xpub),           cmocka_unit_test(test_router_dealer),
        cmocka_unit_test(test_pause_resume),        cmocka_unit_test(test_held_without_spinning),
        cmocka_unit_test(test_one_way_tcp),         cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_router_dealer_large),
    };
    if (getenv("TEST_FILTER"))
        cmocka_set_test_filter(getenv("TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
