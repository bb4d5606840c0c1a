/*
 * test_stream.c - the tcp:// and ipc:// transports, ferry to ferry and
 * against raw sockets that play a broken or hostile peer: addresses
 * (free port, IPv6, host names, stale and live ipc paths), queueing before
 * the connection exists, bad input dropped while a good peer is served,
 * 1,000 idle connections, heartbeats, linger (nothing lost at close,
 * the closer ends in TIME_WAIT), and output bounded in bytes.
 *
 * Waiting is always for an event: a message, a closed socket seen by
 * poll(), a counter that ferry_wait_peers() wakes us to re-read.
 */
#include "../common.h"
#include "raw_zmtp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>

static void roundtrip(ferry_socket *a, ferry_socket *b)
{
    char buf[16];
    size_t len;
    assert_int_equal(ferry_send(a, "ping", 4, 0), 0);
    assert_int_equal(ferry_recv(b, buf, sizeof buf, &len, 0), 0);
    assert_int_equal(len, 4);
    assert_memory_equal(buf, "ping", 4);
    assert_int_equal(ferry_send(b, "pong", 4, 0), 0);
    assert_int_equal(ferry_recv(a, buf, sizeof buf, &len, 0), 0);
    assert_memory_equal(buf, "pong", 4);
}

/* --- addresses ---------------------------------------------------------------- */

static void test_tcp_free_port_and_names(void **state)
{
    (void)state;
    ferry_socket *l = open_sock(FERRY_PAIR), *d = open_sock(FERRY_PAIR);
    assert_int_equal(ferry_listen(l, "tcp://127.0.0.1:*"), 0);
    char ep[128], url[160];
    assert_int_equal(ferry_socket_addr(l, ep, sizeof ep), 0);
    assert_true(strncmp(ep, "tcp://127.0.0.1:", 16) == 0);
    int port = port_of(l);
    assert_true(port > 0 && port < 65536);
    /* a host name, resolved with getaddrinfo */
    snprintf(url, sizeof url, "tcp://localhost:%d", port);
    assert_int_equal(ferry_dial(d, url), 0);
    roundtrip(d, l);
    ferry_close(d);
    ferry_close(l);

    /* every interface, then IPv6 loopback if the machine has it */
    l = open_sock(FERRY_PAIR);
    d = open_sock(FERRY_PAIR);
    assert_int_equal(ferry_listen(l, "tcp://*:*"), 0);
    snprintf(url, sizeof url, "tcp://127.0.0.1:%d", port_of(l));
    assert_int_equal(ferry_dial(d, url), 0);
    roundtrip(d, l);
    ferry_close(d);
    ferry_close(l);
    l = open_sock(FERRY_PAIR);
    int rc = ferry_listen(l, "tcp://[::1]:*");
    if (rc == 0) {
        d = open_sock(FERRY_PAIR);
        assert_int_equal(ferry_socket_addr(l, ep, sizeof ep), 0);
        assert_true(strncmp(ep, "tcp://[::1]:", 12) == 0);
        assert_int_equal(ferry_dial(d, ep), 0);
        roundtrip(d, l);
        ferry_close(d);
    } else {
        fprintf(stderr, "note: no IPv6 loopback here (%s): [::1] not tested\n", ferry_strerror(rc));
    }
    ferry_close(l);

    /* malformed URLs are refused before any system call */
    l = open_sock(FERRY_PAIR);
    assert_int_equal(ferry_listen(l, "tcp://127.0.0.1"), FERRY_EBADURL);
    assert_int_equal(ferry_listen(l, "tcp://127.0.0.1:99999"), FERRY_EBADURL);
    assert_int_equal(ferry_dial(l, "tcp://127.0.0.1:*"), FERRY_EBADURL);
    assert_int_equal(ferry_dial(l, "tcp://[::1:5"), FERRY_EBADURL);
    assert_int_equal(ferry_dial(l, "tcp://no-such-host.invalid:5"), FERRY_EBADURL);
    char longpath[300];
    memset(longpath, 'a', sizeof longpath);
    memcpy(longpath, "ipc:///", 7);
    longpath[sizeof longpath - 1] = '\0';
    assert_int_equal(ferry_listen(l, longpath), FERRY_EBADURL);
    assert_int_equal(ferry_listen(l, "ipc://"), FERRY_EBADURL);
    ferry_close(l);
}

static void test_ipc_stale_live_and_foreign_paths(void **state)
{
    (void)state;
    char path[64], url[160];
    snprintf(path, sizeof path, "/tmp/ferry-test-%d.sock", (int)getpid());
    snprintf(url, sizeof url, "ipc://%s", path);
    unlink(path);
    /* a stale socket file: bound by someone who is gone */
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    close(fd);
    ferry_socket *l = open_sock(FERRY_PAIR), *l2 = open_sock(FERRY_PAIR),
                 *d = open_sock(FERRY_PAIR);
    assert_int_equal(ferry_listen(l, url), 0);                 /* replaced */
    assert_int_equal(ferry_listen(l2, url), FERRY_EADDRINUSE); /* a live one is not */
    assert_int_equal(ferry_dial(d, url), 0);
    roundtrip(d, l);
    ferry_close(d);
    ferry_close(l);
    struct stat st;
    assert_int_equal(stat(path, &st), -1); /* removed at close */
    /* not a socket: never touched */
    FILE *f = fopen(path, "w");
    fputs("precious", f);
    fclose(f);
    assert_int_equal(ferry_listen(l2, url), FERRY_EADDRINUSE);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 8);
    unlink(path);
    /* abstract names work too */
    char abs[64];
    snprintf(abs, sizeof abs, "ipc://@ferry-test-%d", (int)getpid());
    l = open_sock(FERRY_PAIR);
    d = open_sock(FERRY_PAIR);
    assert_int_equal(ferry_listen(l, abs), 0);
    assert_int_equal(ferry_dial(d, abs), 0);
    roundtrip(d, l);
    ferry_close(d);
    ferry_close(l);
    ferry_close(l2);
}

/* --- queueing before the connection, and reconnecting ----------------------------- */

static void test_queue_before_connect(void **state)
{
    (void)state;
    /* find a free port, then dial it before anyone listens */
    ferry_socket *probe = open_sock(FERRY_PULL);
    assert_int_equal(ferry_listen(probe, "tcp://127.0.0.1:*"), 0);
    int port = port_of(probe);
    ferry_close(probe);
    char url[64];
    snprintf(url, sizeof url, "tcp://127.0.0.1:%d", port);
    ferry_socket *push = open_sock(FERRY_PUSH), *pull = open_sock(FERRY_PULL);
    ferry_setopt_int(push, FERRY_OPT_SNDHWM, 3);
    ferry_setopt_int(push, FERRY_OPT_RECONNECT_IVL, 20);
    ferry_setopt_int(push, FERRY_OPT_RECONNECT_IVL_MAX, 50);
    assert_int_equal(ferry_dial(push, url), 0);
    int64_t peers = -1;
    ferry_getopt_int(push, FERRY_OPT_PEERS, &peers);
    assert_int_equal(peers, 0); /* a queue, not a peer */
    for (int i = 0; i < 3; i++) /* queued up to the HWM, then no room */
        assert_int_equal(ferry_send(push, &i, sizeof i, FERRY_DONTWAIT), 0);
    int x = 3;
    assert_int_equal(ferry_send(push, &x, sizeof x, FERRY_DONTWAIT), FERRY_EAGAIN);
    assert_int_equal(ferry_listen(pull, url), 0);
    for (int i = 0; i < 3; i++) {
        int v = -1;
        size_t len;
        assert_int_equal(ferry_recv(pull, &v, sizeof v, &len, 0), 0);
        assert_int_equal(v, i);
    }
    assert_int_equal(ferry_wait_peers(push, 1, 5000), 0);
    /* the listener goes away and comes back: the dialer reconnects */
    ferry_close(pull);
    pull = open_sock(FERRY_PULL);
    assert_int_equal(ferry_listen(pull, url), 0);
    assert_int_equal(ferry_wait_peers(pull, 1, 5000), 0);
    x = 42;
    assert_int_equal(ferry_send(push, &x, sizeof x, 0), 0);
    int v = 0;
    size_t len;
    assert_int_equal(ferry_recv(pull, &v, sizeof v, &len, 0), 0);
    assert_int_equal(v, 42);
    ferry_close(push);
    ferry_close(pull);
}

/* --- bad input ------------------------------------------------------------------- */

static void test_bad_peers_dropped_good_one_served(void **state)
{
    (void)state;
    ferry_socket *pull = open_sock(FERRY_PULL), *push = open_sock(FERRY_PUSH);
    ferry_setopt_int(pull, FERRY_OPT_MAXMSGSIZE, 1024);
    ferry_setopt_int(pull, FERRY_OPT_HANDSHAKE_IVL, 1000);
    assert_int_equal(ferry_listen(pull, "tcp://127.0.0.1:*"), 0);
    int port = port_of(pull);
    char url[64];
    snprintf(url, sizeof url, "tcp://127.0.0.1:%d", port);
    assert_int_equal(ferry_dial(push, url), 0);
    /* the good peer is connected before the short handshake limit matters */
    assert_int_equal(ferry_wait_peers(push, 1, 10000), 0);
    int seq = 0, next = 0;
    char why[256];
    /* A good peer sends while each bad one is dealt with. */
#define PUMP()                                                                                     \
    do {                                                                                           \
        for (int k = 0; k < 50; k++, seq++)                                                        \
            assert_int_equal(ferry_send(push, &seq, sizeof seq, 0), 0);                            \
    } while (0)
    PUMP();
    /* 1. not ZMTP at all */
    int fd = raw_connect(port);
    raw_send(fd, "GET / HTTP/1.1\r\n\r\n", 18);
    assert_true(raw_closed(fd, 5000));
    close(fd);
    ferry_socket_drop_reason(pull, why, sizeof why);
    assert_non_null(strstr(why, "not ZMTP"));
    PUMP();
    /* 2. a mechanism we do not speak */
    fd = raw_connect(port);
    unsigned char g[64];
    memcpy(g, greeting, 64);
    memcpy(g + 12, "PLAIN", 5);
    raw_send(fd, g, 64);
    assert_true(raw_closed(fd, 5000));
    close(fd);
    ferry_socket_drop_reason(pull, why, sizeof why);
    assert_non_null(strstr(why, "mechanism"));
    PUMP();
    /* 3. a frame over MAXMSGSIZE after a good handshake */
    fd = raw_peer(port, "PUSH", "PULL");
    unsigned char big[9] = {0x02, 0, 0, 0, 0, 0, 0, 0x08, 0x00}; /* 2048 bytes */
    raw_send(fd, big, sizeof big);
    assert_true(raw_closed(fd, 5000));
    close(fd);
    ferry_socket_drop_reason(pull, why, sizeof why);
    assert_non_null(strstr(why, "maximum"));
    PUMP();
    /* 4. half a greeting, then silence: dropped after HANDSHAKE_IVL */
    fd = raw_connect(port);
    raw_send(fd, greeting, 20);
    assert_true(raw_closed(fd, 5000));
    close(fd);
    ferry_socket_drop_reason(pull, why, sizeof why);
    assert_non_null(strstr(why, "handshake timed out after 1000 ms"));
    /* 5. the wrong socket type: an ERROR command, then closed */
    fd = raw_connect(port);
    raw_send(fd, greeting, 64);
    unsigned char r[64];
    raw_send(fd, r, ready_frame(r, "PULL"));
    unsigned char in[256];
    size_t got = 0;
    for (;;) { /* read until EOF; the ERROR must be in what came */
        struct pollfd p = {.fd = fd, .events = POLLIN};
        assert_int_equal(poll(&p, 1, 5000), 1);
        ssize_t k = recv(fd, in + got, sizeof in - got, 0);
        if (k <= 0)
            break;
        got += (size_t)k;
    }
    close(fd);
    assert_non_null(memmem(in, got,
                           "\x05"
                           "ERROR",
                           6));
    PUMP();
    int64_t errors = 0;
    ferry_getopt_int(pull, FERRY_OPT_ERRORS, &errors);
    assert_int_equal(errors, 5);
    /* every message of the good peer, in order */
    for (; next < seq; next++) {
        int v = -1;
        size_t len;
        assert_int_equal(ferry_recv(pull, &v, sizeof v, &len, 0), 0);
        assert_int_equal(v, next);
    }
    ferry_close(push);
    ferry_close(pull);
}

/* --- 1,000 idle connections ------------------------------------------------------ */

static void test_thousand_idle_connections(void **state)
{
    (void)state;
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < 2200 && rl.rlim_max >= 2200) {
        rl.rlim_cur = 2200;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < 2200) {
        fprintf(stderr, "note: RLIMIT_NOFILE %lu < 2200: test skipped\n",
                (unsigned long)rl.rlim_cur);
        skip();
    }
    enum { N = 1000 };
    ferry_socket *pull = open_sock(FERRY_PULL);
    ferry_setopt_int(pull, FERRY_OPT_BACKLOG, 1024);
    assert_int_equal(ferry_listen(pull, "tcp://127.0.0.1:*"), 0);
    int port = port_of(pull);
    static int fds[N];
    /* warm up: one connection and message, so first-use allocations are
     * not charged to the thousand */
    fds[0] = raw_peer(port, "PUSH", "PULL");
    assert_int_equal(ferry_wait_peers(pull, 1, 5000), 0);
    long before = rss_kib();
    for (int i = 1; i < N; i++)
        fds[i] = raw_peer(port, "PUSH", "PULL");
    assert_int_equal(ferry_wait_peers(pull, N, 20000), 0);
    long after = rss_kib();
    long per = (after - before) * 1024 / (N - 1);
    fprintf(stderr, "note: %d idle connections: %ld bytes of RSS each\n", N, per);
#if T_SANITIZED
    (void)per; /* shadow memory makes RSS meaningless here */
#else
    assert_true(per < 8192); /* no per-connection buffers while idle */
#endif
    /* and it still serves: a message on the last one, then on the first */
    raw_send(fds[N - 1], "\x00\x05hello", 7);
    raw_send(fds[0],
             "\x00\x03"
             "bye",
             5);
    char buf[16];
    size_t len;
    assert_int_equal(ferry_recv(pull, buf, sizeof buf, &len, 0), 0);
    assert_int_equal(ferry_recv(pull, buf + 5, sizeof buf - 5, &len, 0), 0);
    assert_true(memcmp(buf, "hello", 5) == 0 || memcmp(buf, "bye", 3) == 0);
    for (int i = 0; i < N; i++)
        close(fds[i]);
    ferry_close(pull);
}

/* --- heartbeats ------------------------------------------------------------------- */

static void test_heartbeats(void **state)
{
    (void)state;
    ferry_socket *pair = open_sock(FERRY_PAIR);
    ferry_setopt_int(pair, FERRY_OPT_HEARTBEAT_IVL, 100);
    ferry_setopt_int(pair, FERRY_OPT_HEARTBEAT_TIMEOUT, 300);
    assert_int_equal(ferry_listen(pair, "tcp://127.0.0.1:*"), 0);
    int port = port_of(pair);
    /* 1. ferry answers our PING with a PONG echoing the context */
    int fd = raw_peer(port, "PAIR", "PAIR");
    raw_send(fd,
             "\x04\x09\x04PING\x00\x00"
             "ab",
             11);
    unsigned char f[64];
    for (;;) { /* skip ferry's own PINGs */
        raw_read(fd, f, 2, 5000);
        raw_read(fd, f + 2, f[1], 5000);
        if (memcmp(f + 2, "\x04PONG", 5) == 0)
            break;
        assert_memory_equal(f + 2, "\x04PING", 5);
    }
    assert_int_equal(f[1], 7);
    assert_memory_equal(f + 7, "ab", 2);
    /* 2. a peer that stops answering (a half-open connection looks the
     * same from here) is dropped after HEARTBEAT_TIMEOUT */
    assert_true(raw_closed(fd, 5000));
    close(fd);
    char why[256];
    ferry_socket_drop_reason(pair, why, sizeof why);
    assert_non_null(strstr(why, "heartbeat"));
    ferry_close(pair);

    /* 3. our TTL: a peer that asked for 300 ms and then went silent */
    pair = open_sock(FERRY_PAIR);
    assert_int_equal(ferry_listen(pair, "tcp://127.0.0.1:*"), 0);
    fd = raw_peer(port_of(pair), "PAIR", "PAIR");
    raw_send(fd, "\x04\x07\x04PING\x00\x03", 9); /* TTL 3 deciseconds */
    assert_true(raw_closed(fd, 5000));
    close(fd);
    ferry_socket_drop_reason(pair, why, sizeof why);
    assert_non_null(strstr(why, "TTL"));
    int64_t errors = -1;
    ferry_getopt_int(pair, FERRY_OPT_ERRORS, &errors);
    assert_int_equal(errors, 0); /* silence is not bad input */
    ferry_close(pair);
}

/* --- linger: the four-way teardown done right -------------------------------------- */

/* Counts TIME_WAIT sockets whose remote port is `port` (/proc/net/tcp). */
static int time_wait_to(int port)
{
    FILE *f = fopen("/proc/net/tcp", "r");
    char line[512];
    int n = 0;
    while (f && fgets(line, sizeof line, f)) {
        unsigned lp, rp, st;
        if (sscanf(line, " %*d: %*8x:%x %*8x:%x %x", &lp, &rp, &st) == 3 && st == 0x06 &&
            (int)rp == port)
            n++;
    }
    if (f)
        fclose(f);
    return n;
}

struct drain {
    ferry_socket *s;
    int n, ok;
};

static void *drain_main(void *arg)
{
    struct drain *d = arg;
    static unsigned char buf[2048];
    for (int i = 0; i < d->n; i++) {
        size_t len;
        int v = -1;
        if (ferry_recv(d->s, buf, sizeof buf, &len, 0) != 0)
            return NULL;
        memcpy(&v, buf, sizeof v);
        if (v != i)
            return NULL;
    }
    d->ok = 1;
    return NULL;
}

static void test_linger_delivers_then_fin(void **state)
{
    (void)state;
    enum { N = 20000, SZ = 1024 };
    ferry_socket *pull = open_sock(FERRY_PULL), *push = open_sock(FERRY_PUSH);
    /* a slow receiver: most of the 20 MB is still in the pusher's queue
     * and the kernel buffers when the pusher closes */
    ferry_setopt_int(pull, FERRY_OPT_RCVHWM, 100);
    ferry_setopt_int(push, FERRY_OPT_SNDHWM, N);
    ferry_setopt_int(push, FERRY_OPT_SNDHWM_BYTES, 0); /* the whole 20 MB may queue */
    ferry_setopt_int(push, FERRY_OPT_LINGER, 30000);
    assert_int_equal(ferry_listen(pull, "tcp://127.0.0.1:*"), 0);
    int port = port_of(pull);
    char url[64];
    snprintf(url, sizeof url, "tcp://127.0.0.1:%d", port);
    assert_int_equal(ferry_dial(push, url), 0);
    static unsigned char buf[SZ];
    for (int i = 0; i < N; i++) {
        memcpy(buf, &i, sizeof i);
        assert_int_equal(ferry_send(push, buf, SZ, 0), 0);
    }
    int tw_before = time_wait_to(port);
    struct drain d = {pull, N, 0};
    pthread_t thr;
    assert_int_equal(pthread_create(&thr, NULL, drain_main, &d), 0);
    /* close at once: it flushes the queue, sends FIN, and returns when
     * the receiver has read up to that FIN and answered with its own */
    assert_int_equal(ferry_close(push), 0);
    pthread_join(thr, NULL);
    assert_true(d.ok); /* all 20,000, in order: nothing lost at close */
    /* the active closer (the pusher) holds TIME_WAIT, the receiver not */
    assert_true(time_wait_to(port) >= tw_before + 1);
    ferry_close(pull);
}

/* SNDHWM_BYTES: a connection's output is bounded in bytes as well as in
 * messages (without it, SNDHWM alone lets a reader that stalls make us
 * hold all 20 MB); a sender refused for room goes on once the reader
 * drains, nothing lost or reordered; an empty queue takes a message larger
 * than the limit. The third round bounds the queue at one byte with a PING
 * every millisecond, so PINGs count against the bytes while the sender
 * blocks and some wakes are owed with no message finishing (st_conn_flush's
 * tx_blocked). It runs that path; it cannot force the one interleaving
 * that lost such a wake before. */
static void test_output_bounded_in_bytes(void **state)
{
    (void)state;
    enum { N = 20000, SZ = 1024, LIMIT = 256 << 10 };
    long wmem_max = 4l << 20;
    FILE *f = fopen("/proc/sys/net/core/wmem_max", "r");
    if (f != NULL) {
        assert_int_equal(fscanf(f, "%ld", &wmem_max), 1);
        fclose(f);
    }
    static unsigned char buf[1 << 20];
    for (int limited = 0; limited < 3; limited++) {
        ferry_socket *pull = open_sock(FERRY_PULL), *push = open_sock(FERRY_PUSH);
        ferry_setopt_int(pull, FERRY_OPT_RCVHWM, 10); /* stops reading early */
        ferry_setopt_int(push, FERRY_OPT_SNDHWM, N);
        int64_t v = -1;
        assert_int_equal(ferry_getopt_int(push, FERRY_OPT_SNDHWM_BYTES, &v), 0);
        assert_int_equal(v, 256 << 10); /* the default */
        assert_int_equal(ferry_setopt_int(push, FERRY_OPT_SNDHWM_BYTES, -1), FERRY_EINVAL);
        int64_t bound = limited == 0 ? 0 : limited == 1 ? LIMIT : 1;
        assert_int_equal(ferry_setopt_int(push, FERRY_OPT_SNDHWM_BYTES, bound), 0);
        /* a one-byte bound makes every send wait for the one before: a
         * thread switch per message, slow on a loaded machine, so fewer
         * (still more than the kernel's buffer takes at once) */
        int count = limited == 2 ? 2000 : N;
        if (limited == 2) { /* PINGs, but no silence held against the reader: a
                             * PULL that stops reading answers no PING, and a
                             * connection dropped as dead loses its queue */
            assert_int_equal(ferry_setopt_int(push, FERRY_OPT_HEARTBEAT_IVL, 1), 0);
            assert_int_equal(ferry_setopt_int(push, FERRY_OPT_HEARTBEAT_TIMEOUT, 600000), 0);
        }
        char url[64];
        snprintf(url, sizeof url, "ipc://@ferry-test-outbytes-%d-%d", (int)getpid(), limited);
        assert_int_equal(ferry_listen(pull, url), 0);
        assert_int_equal(ferry_dial(push, url), 0);
        int n = 0;
        for (; n < count; n++) {
            memcpy(buf, &n, sizeof n);
            if (ferry_send(push, buf, SZ, FERRY_DONTWAIT) != 0)
                break;
        }
        if (!limited) {
            assert_int_equal(n, N);
        } else {
            /* the limit, one message, the kernel's buffers (at most
             * wmem_max each way) and the reader's 10 */
            assert_true(n < count);
            assert_true((long)n * SZ <= bound + SZ + 2 * wmem_max + 10 * SZ);
        }
        struct drain d = {pull, count, 0};
        pthread_t thr;
        assert_int_equal(pthread_create(&thr, NULL, drain_main, &d), 0);
        for (int i = n; i < count; i++) { /* waits for room, then goes on */
            memcpy(buf, &i, sizeof i);
            assert_int_equal(ferry_send(push, buf, SZ, 0), 0);
        }
        pthread_join(thr, NULL);
        assert_true(d.ok); /* all, in order */
        /* the queue is empty: a message four times the limit is taken at once */
        for (size_t i = 0; i < sizeof buf; i++)
            buf[i] = (unsigned char)(i * 7);
        assert_int_equal(ferry_send(push, buf, sizeof buf, FERRY_DONTWAIT), 0);
        static unsigned char back[1 << 20];
        size_t len;
        assert_int_equal(ferry_recv(pull, back, sizeof back, &len, 0), 0);
        assert_int_equal(len, sizeof buf);
        assert_memory_equal(back, buf, sizeof buf);
        ferry_close(push);
        ferry_close(pull);
    }
}

/* --- SIGKILL at any moment -------------------------------------------------------- */

static int count_fds(void)
{
    int n = 0;
    char p[64];
    for (int fd = 0; fd < 4096; fd++) {
        snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
        n += access(p, F_OK) == 0;
    }
    return n;
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t l = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    getsockname(fd, (struct sockaddr *)&a, &l);
    close(fd);
    return ntohs(a.sin_port);
}

/* 40 pushers are SIGKILLed mid-stream (mid-frame, often) while a steady
 * pusher sends 20,000 numbered messages: the PULL gets the steady sequence
 * exactly, and after the killed peers are gone its fds are back to where
 * they were. The children are forked before this process opens a socket
 * (a socket has an I/O thread; forking beside it is not safe). */
static void test_killed_pushers(void **state)
{
    (void)state;
    /* Under TSan every instruction of 41 processes on 2 CPUs costs 10x or
     * more (115 s here for 40 victims): 10 victims there make the same
     * point (kills land mid-frame; the steady stream stays exact). */
    enum { VICTIMS = T_TSAN ? 10 : 40, STEADY = 20000 };
    char url[64];
    snprintf(url, sizeof url, "tcp://127.0.0.1:%d", free_port());
    int base = count_fds();
    if (getenv("FERRY_DEBUG"))
        fprintf(stderr, "killed_pushers: parent %d\n", (int)getpid());
    pid_t steady = fork();
    if (steady == 0) {
        t_die_with_parent();
        ferry_socket *s;
        CHILD_CHECK(ferry_socket_open(&s, FERRY_PUSH) == 0, 2);
        ferry_setopt_int(s, FERRY_OPT_LINGER, 30000);
        CHILD_CHECK(ferry_dial(s, url) == 0, 3);
        unsigned char m[100] = {'S'};
        for (int i = 0; i < STEADY; i++) {
            memcpy(m + 1, &i, sizeof i);
            CHILD_CHECK(ferry_send(s, m, sizeof m, 0) == 0, 4);
        }
        ferry_close(s);
        _exit(0);
    }
    pid_t victims[VICTIMS];
    for (int k = 0; k < VICTIMS; k++) {
        victims[k] = fork();
        if (victims[k] == 0) {
            t_die_with_parent();
            ferry_socket *s;
            CHILD_CHECK(ferry_socket_open(&s, FERRY_PUSH) == 0, 2);
            CHILD_CHECK(ferry_dial(s, url) == 0, 3);
            static unsigned char big[70000];
            big[0] = 'V';
            for (;;) /* large messages: a kill often lands mid-frame */
                ferry_send(s, big, 1000 + (size_t)(rand() % 60000), 0);
        }
    }
    ferry_socket *pull = open_sock(FERRY_PULL);
    /* 41 processes on 2 CPUs (10x slower under TSan) may take seconds to
     * finish a handshake; a stall counts as bad input, a death does not,
     * and this test is about deaths */
    ferry_setopt_int(pull, FERRY_OPT_HANDSHAKE_IVL, 120000);
    assert_int_equal(ferry_listen(pull, url), 0);
    static unsigned char buf[70000];
    int next = 0, got = 0;
    int killed = 0;
    while (next < STEADY) {
        size_t len;
        assert_int_equal(ferry_recv(pull, buf, sizeof buf, &len, 0), 0);
        if (buf[0] == 'S') {
            int v;
            memcpy(&v, buf + 1, sizeof v);
            assert_int_equal(v, next); /* exact: nothing lost, repeated or reordered */
            next++;
        }
        /* kill one victim every 300 messages received, at whatever point
         * of its stream it is */
        if (++got % 300 == 0 && killed < VICTIMS) {
            kill(victims[killed], SIGKILL);
            t_wait(victims[killed]);
            killed++;
        }
    }
    while (killed < VICTIMS) {
        kill(victims[killed], SIGKILL);
        t_wait(victims[killed++]);
    }
    assert_int_equal(t_wait(steady), 0);
    /* every victim's connection is seen closed and released: peers drop to
     * 0 (within a generous bound: sanitizers slow the I/O thread 10x) */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ferry_setopt_int(pull, FERRY_OPT_RCVTIMEO, 100);
    for (;;) {
        int64_t peers = -1;
        ferry_getopt_int(pull, FERRY_OPT_PEERS, &peers);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (peers == 0 || t1.tv_sec - t0.tv_sec > 60)
            break;
        size_t len; /* drain what the victims left queued, waking on each message */
        while (ferry_recv(pull, buf, sizeof buf, &len, 0) == 0) {
        }
    }
    int64_t peers = -1, errors = -1;
    ferry_getopt_int(pull, FERRY_OPT_PEERS, &peers);
    ferry_getopt_int(pull, FERRY_OPT_ERRORS, &errors);
    assert_int_equal(peers, 0);
    assert_int_equal(errors, 0); /* a death is not bad input */
    ferry_close(pull);
    assert_int_equal(count_fds(), base);
}

/* --- subscriptions in both ZMTP forms ---------------------------------------------- */

/* A ZMTP 3.0 peer (greeting minor 0) subscribes with a data frame 0x01 +
 * prefix; a 3.1 peer with a SUBSCRIBE command; ferry's PUB filters on both.
 * And ferry's SUB speaks to each in its own form. */
static void test_subscription_forms(void **state)
{
    (void)state;
    for (int minor = 0; minor <= 1; minor++) {
        ferry_socket *pub = open_sock(FERRY_PUB);
        assert_int_equal(ferry_listen(pub, "tcp://127.0.0.1:*"), 0);
        int fd = raw_connect(port_of(pub));
        unsigned char g[64];
        memcpy(g, greeting, 64);
        g[11] = (unsigned char)minor;
        raw_send(fd, g, 64);
        unsigned char b[64];
        raw_send(fd, b, ready_frame(b, "SUB"));
        if (minor == 0)
            raw_send(fd,
                     "\x00\x03\x01"
                     "ab",
                     5);
        else
            raw_send(fd, "\x04\x0c\x09SUBSCRIBEab", 14);
        assert_int_equal(ferry_wait_peers(pub, 1, 5000), 0); /* subscribed */
        assert_int_equal(ferry_send(pub, "zz-not-for-you", 14, 0), 0);
        assert_int_equal(ferry_send(pub, "abX", 3, 0), 0);
        unsigned char in[128];
        raw_read(fd, in, 64, 5000); /* greeting */
        raw_read(fd, in, 2, 5000);  /* READY */
        raw_read(fd, in + 2, in[1], 5000);
        raw_read(fd, in, 5, 5000); /* the one message it asked for */
        assert_memory_equal(in,
                            "\x00\x03"
                            "abX",
                            5);
        close(fd);
        ferry_close(pub);

        /* ferry's SUB towards a raw PUB of each version */
        int l = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t al = sizeof a;
        assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof a), 0);
        assert_int_equal(listen(l, 1), 0);
        getsockname(l, (struct sockaddr *)&a, &al);
        ferry_socket *sub = open_sock(FERRY_SUB);
        ferry_setopt(sub, FERRY_OPT_SUBSCRIBE, "xy", 2);
        char url[64];
        snprintf(url, sizeof url, "tcp://127.0.0.1:%d", ntohs(a.sin_port));
        assert_int_equal(ferry_dial(sub, url), 0);
        int c = accept(l, NULL, NULL);
        raw_send(c, g, 64);
        raw_send(c, b, ready_frame(b, "PUB"));
        raw_read(c, in, 64, 5000);
        raw_read(c, in, 2, 5000);
        raw_read(c, in + 2, in[1], 5000);
        if (minor == 0) {
            raw_read(c, in, 5, 5000);
            assert_memory_equal(in,
                                "\x00\x03\x01"
                                "xy",
                                5);
        } else {
            raw_read(c, in, 14, 5000);
            assert_memory_equal(in, "\x04\x0c\x09SUBSCRIBExy", 14);
        }
        raw_send(c,
                 "\x00\x03"
                 "xyz",
                 5);
        char m[8];
        size_t len;
        assert_int_equal(ferry_recv(sub, m, sizeof m, &len, 0), 0);
        assert_int_equal(len, 3);
        assert_memory_equal(m, "xyz", 3);
        close(c);
        close(l);
        ferry_close(sub);
    }
}

/* A message of many parts (more than the sender keeps on its stack), and
 * a large one sent straight from the caller's buffer: both arrive whole. */
static void test_many_parts_and_large(void **state)
{
    (void)state;
    ferry_socket *a = open_sock(FERRY_PAIR), *b = open_sock(FERRY_PAIR);
    char url[64];
    snprintf(url, sizeof url, "ipc://@ferry-test-parts-%d", (int)getpid());
    assert_int_equal(ferry_listen(a, url), 0);
    assert_int_equal(ferry_dial(b, url), 0);
    enum { PARTS = 100 };
    for (int i = 0; i < PARTS; i++)
        assert_int_equal(ferry_send(b, &i, sizeof i, i + 1 < PARTS ? FERRY_MORE : 0), 0);
    for (int i = 0; i < PARTS; i++) {
        int v = -1;
        size_t len;
        int64_t more = 0;
        assert_int_equal(ferry_recv(a, &v, sizeof v, &len, 0), 0);
        ferry_getopt_int(a, FERRY_OPT_RCVMORE, &more);
        assert_int_equal(v, i);
        assert_int_equal(more, i + 1 < PARTS);
    }
    static unsigned char big[3 << 20], back[3 << 20];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (unsigned char)(i * 31);
    assert_int_equal(ferry_send(b, big, sizeof big, 0), 0);
    size_t len;
    assert_int_equal(ferry_recv(a, back, sizeof back, &len, 0), 0);
    assert_int_equal(len, sizeof big);
    assert_memory_equal(back, big, sizeof big);
    /* Large messages of mixed sizes, received by copy: their buffers are
     * reused for the next frames that fit (fy_msg_heap_in), and nothing of
     * an earlier message may show through in a later one. */
    static const size_t sizes[] = {40 << 10, 1 << 20,  100 << 10, 33 << 10, 2 << 20,    600 << 10,
                                   1 << 20,  64 << 10, 3 << 20,   32 << 10, 1000 << 10, 70 << 10};
    for (int round = 0; round < 3; round++) {
        for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
            for (size_t i = 0; i < sizes[k]; i++)
                big[i] = (unsigned char)(i * 13 + k * 7 + (size_t)round);
            assert_int_equal(ferry_send(b, big, sizes[k], 0), 0);
            assert_int_equal(ferry_recv(a, back, sizeof back, &len, 0), 0);
            assert_int_equal(len, sizes[k]);
            for (size_t i = 0; i < sizes[k]; i++)
                if (back[i] != (unsigned char)(i * 13 + k * 7 + (size_t)round))
                    fail_msg("message %zu of round %d differs at %zu", k, round, i);
        }
    }
    ferry_close(b);
    ferry_close(a);
}

/* --- a streaming sender's last messages ---------------------------------------- */

struct tail_reader {
    ferry_socket *s;
    int n, done_fd, got;
};

static void *tail_read(void *arg)
{
    struct tail_reader *r = arg;
    for (; r->got < r->n; r->got++) {
        uint32_t v;
        size_t len;
        if (ferry_recv(r->s, &v, sizeof v, &len, 0) != 0 || len != sizeof v ||
            v != (uint32_t)r->got)
            break;
    }
    if (write(r->done_fd, "d", 1) != 1)
        r->got = -1;
    return NULL;
}

/* A sender that streams writes its output in batches from its own thread
 * and holds back what does not fill one (stream_int.h). When it stops
 * without waiting on the socket, flushing or closing, the transport's timer
 * must still write the rest: here the sender, once done, only waits on a
 * pipe for the reader to have everything. With SNDHWM 10, a batch is at
 * most 5 messages, and every message gets through. */
static void stream_tail(const char *url, int hwm)
{
    enum { N = 50000 };
    ferry_socket *pull = open_sock(FERRY_PULL), *push = open_sock(FERRY_PUSH);
    ferry_setopt_int(push, FERRY_OPT_SNDHWM, hwm); /* what is held stays under half of it */
    assert_int_equal(ferry_listen(pull, url), 0);
    char ep[160];
    assert_int_equal(ferry_socket_addr(pull, ep, sizeof ep), 0);
    assert_int_equal(ferry_dial(push, ep), 0);
    int done[2];
    assert_int_equal(pipe(done), 0);
    struct tail_reader r = {.s = pull, .n = N, .done_fd = done[1]};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, tail_read, &r), 0);
    for (uint32_t i = 0; i < N; i++)
        assert_int_equal(ferry_send(push, &i, sizeof i, 0), 0);
    struct pollfd pd = {.fd = done[0], .events = POLLIN};
    assert_int_equal(poll(&pd, 1, 20000), 1);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(r.got, N);
    close(done[0]);
    close(done[1]);
    ferry_close(push);
    ferry_close(pull);
}

/* A PUB's fan-out: each message goes to every subscriber's queue and out
 * in batches (stream_pipe.c, st_burst). Three subscribers each get every
 * message in order, the last ones too, while the publisher only waits on a
 * pipe. 1-byte probes, sent until every subscriber has seen one, make sure
 * the subscriptions are in place before the counted messages. */
struct fan_reader {
    ferry_socket *s;
    int n, done_fd, got;
    _Atomic int *ready;
};

static void *fan_read(void *arg)
{
    struct fan_reader *r = arg;
    int seen = 0;
    while (r->got < r->n) {
        uint32_t v;
        size_t len;
        if (ferry_recv(r->s, &v, sizeof v, &len, 0) != 0)
            break;
        if (len == 1) { /* a probe */
            if (!seen)
                atomic_fetch_add(r->ready, 1);
            seen = 1;
            continue;
        }
        if (len != sizeof v || v != (uint32_t)r->got)
            break;
        r->got++;
    }
    if (write(r->done_fd, "d", 1) != 1)
        r->got = -1;
    return NULL;
}

static void pub_tail(void)
{
    enum { N = 30000, SUBS = 3 };
    ferry_socket *pub = open_sock(FERRY_PUB);
    ferry_setopt_int(pub, FERRY_OPT_SNDHWM, 0); /* queue, never drop */
    assert_int_equal(ferry_listen(pub, "tcp://127.0.0.1:*"), 0);
    char ep[160];
    assert_int_equal(ferry_socket_addr(pub, ep, sizeof ep), 0);
    int done[2];
    assert_int_equal(pipe(done), 0);
    _Atomic int ready = 0;
    struct fan_reader r[SUBS];
    pthread_t th[SUBS];
    for (int i = 0; i < SUBS; i++) {
        ferry_socket *sub = open_sock(FERRY_SUB);
        ferry_setopt_int(sub, FERRY_OPT_RCVHWM, 0);
        assert_int_equal(ferry_setopt(sub, FERRY_OPT_SUBSCRIBE, "", 0), 0);
        assert_int_equal(ferry_dial(sub, ep), 0);
        r[i] = (struct fan_reader){.s = sub, .n = N, .done_fd = done[1], .ready = &ready};
        assert_int_equal(pthread_create(&th[i], NULL, fan_read, &r[i]), 0);
    }
    while (atomic_load(&ready) < SUBS) {
        assert_int_equal(ferry_send(pub, "p", 1, 0), 0);
        poll(NULL, 0, 1);
    }
    for (uint32_t i = 0; i < N; i++)
        assert_int_equal(ferry_send(pub, &i, sizeof i, 0), 0);
    for (int i = 0; i < SUBS; i++) {
        struct pollfd pd = {.fd = done[0], .events = POLLIN};
        assert_int_equal(poll(&pd, 1, 20000), 1);
        char c;
        assert_int_equal(read(done[0], &c, 1), 1);
    }
    for (int i = 0; i < SUBS; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(r[i].got, N);
        ferry_close(r[i].s);
    }
    close(done[0]);
    close(done[1]);
    ferry_close(pub);
}

/* A raw subscriber that reads everything and answers nothing: a PING
 * goes unanswered, so the heartbeat drops it, in the middle of a stream
 * whose output the PUB is holding back for a batch. */
static void *drain_all(void *arg)
{
    int fd = *(int *)arg;
    char buf[65536];
    while (read(fd, buf, sizeof buf) > 0)
        ;
    return NULL;
}

/* Subscribers dropped by the heartbeat while the PUB holds output for
 * them: the pipe leaves the list of those holding before it is freed
 * (under ASan, a pipe freed while listed is a use after free at the
 * timer's next look), and the PUB goes on serving. */
static void test_held_pipe_dropped(void **state)
{
    (void)state;
    for (int round = 0; round < 3; round++) {
        ferry_socket *pub = open_sock(FERRY_PUB);
        ferry_setopt_int(pub, FERRY_OPT_SNDHWM, 0);
        ferry_setopt_int(pub, FERRY_OPT_HEARTBEAT_IVL, 20);
        ferry_setopt_int(pub, FERRY_OPT_HEARTBEAT_TIMEOUT, 100);
        assert_int_equal(ferry_listen(pub, "tcp://127.0.0.1:*"), 0);
        int port = port_of(pub), fd[2];
        pthread_t th[2];
        for (int i = 0; i < 2; i++) {
            fd[i] = raw_peer(port, "SUB", "PUB");
            raw_send(fd[i], "\x04\x0a\x09SUBSCRIBE", 12);
            assert_int_equal(pthread_create(&th[i], NULL, drain_all, &fd[i]), 0);
        }
        assert_int_equal(ferry_wait_peers(pub, 2, 5000), 0);
        uint64_t end = t_now_ms() + 10000;
        char why[256] = "";
        uint32_t n = 0;
        for (; t_now_ms() < end; n++) { /* until both are dropped */
            assert_int_equal(ferry_send(pub, &n, sizeof n, 0), 0);
            int64_t peers = -1;
            if ((n & 1023) == 0 && ferry_getopt_int(pub, FERRY_OPT_PEERS, &peers) == 0 &&
                peers == 0)
                break;
        }
        ferry_socket_drop_reason(pub, why, sizeof why);
        assert_non_null(strstr(why, "heartbeat"));
        for (int i = 0; i < 2; i++) {
            assert_int_equal(pthread_join(th[i], NULL), 0);
            close(fd[i]);
        }
        /* and it still serves a subscriber that answers */
        ferry_socket *sub = open_sock(FERRY_SUB);
        ferry_setopt(sub, FERRY_OPT_SUBSCRIBE, "", 0);
        ferry_setopt_int(sub, FERRY_OPT_RCVTIMEO, 100);
        char ep[64];
        snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", port);
        assert_int_equal(ferry_dial(sub, ep), 0);
        uint32_t v = 0;
        size_t len = 0;
        int got = 0;
        for (int k = 0; k < 100 && !got; k++) {
            assert_int_equal(ferry_send(pub, &n, sizeof n, 0), 0);
            got = ferry_recv(sub, &v, sizeof v, &len, 0) == 0;
        }
        assert_true(got);
        ferry_close(sub);
        ferry_close(pub);
    }
}

static void test_stream_tail_written(void **state)
{
    (void)state;
    char url[64];
    snprintf(url, sizeof url, "ipc://@ferry-test-tail-%d", (int)getpid());
    stream_tail(url, 1000);
    stream_tail("tcp://127.0.0.1:*", 1000);
    stream_tail("tcp://127.0.0.1:*", 10);
    pub_tail();
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tcp_free_port_and_names),
        cmocka_unit_test(test_ipc_stale_live_and_foreign_paths),
        cmocka_unit_test(test_queue_before_connect),
        cmocka_unit_test(test_bad_peers_dropped_good_one_served),
        cmocka_unit_test(test_thousand_idle_connections),
        cmocka_unit_test(test_heartbeats),
        cmocka_unit_test(test_linger_delivers_then_fin),
        cmocka_unit_test(test_output_bounded_in_bytes),
        cmocka_unit_test(test_killed_pushers),
        cmocka_unit_test(test_subscription_forms),
        cmocka_unit_test(test_many_parts_and_large),
        cmocka_unit_test(test_stream_tail_written),
        cmocka_unit_test(test_held_pipe_dropped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
