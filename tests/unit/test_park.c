/*
 * test_park.c - a blocking receive on a socket with one tcp:// or ipc://
 * connection reads that connection itself (park.c): the I/O thread is not
 * woken per message; and everything else that should wake such a
 * receiver does: a second connection, its peer dying, bad input, a PING
 * to answer, its timeout, a second receiver on the same socket.
 *
 * The peers here are raw sockets speaking ZMTP by hand (raw_zmtp.h) or
 * ferry sockets in a child process, so that nothing but the receiver
 * under test runs ferry's I/O thread in this process. Waiting is for
 * events: a message, an acknowledgement on a pipe, a thread seen asleep in
 * /proc.
 */
#include "../common.h"
#include "core/sock.h" /* test_loan_rcvtimeo_zero looks at the pipe's loan */
#include "raw_zmtp.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/un.h>

/* Context switches of this process's ferry I/O threads so far. */
static long io_thread_switches(void)
{
    long total = 0;
    DIR *d = opendir("/proc/self/task");
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[300], comm[32] = "";
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (f == NULL)
            continue;
        if (fgets(comm, sizeof comm, f) == NULL)
            comm[0] = '\0';
        fclose(f);
        if (strncmp(comm, "ferry-io", 8) != 0)
            continue;
        snprintf(path, sizeof path, "/proc/self/task/%s/status", e->d_name);
        f = fopen(path, "r");
        char line[256];
        long v;
        while (f && fgets(line, sizeof line, f))
            if (sscanf(line, "voluntary_ctxt_switches: %ld", &v) == 1 ||
                sscanf(line, "nonvoluntary_ctxt_switches: %ld", &v) == 1)
                total += v;
        if (f)
            fclose(f);
    }
    closedir(d);
    return total;
}

/* Waits until thread tid is asleep (state S in /proc): a receiver that
 * has gone back into its wait. */
static void wait_asleep(pid_t tid)
{
    char path[96];
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)tid);
    for (long i = 0; i < 50000000; i++) {
        char buf[256] = "";
        FILE *f = fopen(path, "r");
        assert_non_null(f);
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        const char *c = strrchr(buf, ')'); /* the name may hold spaces */
        if (c != NULL && c[1] == ' ' && c[2] == 'S')
            return;
        sched_yield();
    }
    fail_msg("thread %d never went to sleep", (int)tid);
}

/* One ZMTP message frame (short form). */
static size_t msg_frame(unsigned char *out, const char *body)
{
    size_t n = strlen(body);
    out[0] = 0x00;
    out[1] = (unsigned char)n;
    memcpy(out + 2, body, n);
    return 2 + n;
}

static void expect_msg(ferry_socket *s, const char *want)
{
    char buf[256];
    size_t len;
    int rc = ferry_recv(s, buf, sizeof buf, &len, 0);
    assert_int_equal(rc, 0);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(buf, want, len);
}

/* --- the I/O thread sleeps while a receiver reads its connection ---------- */

struct acker {
    ferry_socket *s;
    int n;
    int ack_fd;
    _Atomic pid_t tid;
};

static void *ack_loop(void *arg)
{
    struct acker *a = arg;
    atomic_store(&a->tid, gettid());
    for (int i = 0; i < a->n; i++) {
        char buf[64], want[64];
        size_t len;
        assert_int_equal(ferry_recv(a->s, buf, sizeof buf, &len, 0), 0);
        int wl = snprintf(want, sizeof want, "m%d", i);
        assert_int_equal(len, (size_t)wl);
        assert_memory_equal(buf, want, len);
        assert_int_equal(write(a->ack_fd, "k", 1), 1);
    }
    return NULL;
}

static void test_io_thread_sleeps(void **state)
{
    (void)state;
    enum { N = 400 };
    ferry_socket *pull = open_sock(FERRY_PULL);
    assert_int_equal(ferry_listen(pull, "tcp://127.0.0.1:*"), 0);
    int fd = raw_peer(port_of(pull), "PUSH", "PULL");
    int ack[2];
    assert_int_equal(pipe(ack), 0);
    struct acker a = {.s = pull, .n = N, .ack_fd = ack[1]};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, ack_loop, &a), 0);
    while (atomic_load(&a.tid) == 0)
        sched_yield();
    /* the first message makes the connection the socket's pipe for sure */
    long before = 0;
    for (int i = 0; i < N; i++) {
        unsigned char f[64];
        char body[32];
        snprintf(body, sizeof body, "m%d", i);
        wait_asleep(atomic_load(&a.tid));
        if (i == 1)
            before = io_thread_switches();
        raw_send(fd, f, msg_frame(f, body));
        char k;
        struct pollfd p = {.fd = ack[0], .events = POLLIN};
        assert_int_equal(poll(&p, 1, 10000), 1);
        assert_int_equal(read(ack[0], &k, 1), 1);
    }
    long woken = io_thread_switches() - before;
    assert_int_equal(pthread_join(th, NULL), 0);
    /* Handing each message over would wake the I/O thread at least once a
     * message (N - 1 here); a few are its own business (the connection's
     * timer, a receiver that had not parked yet). */
    fprintf(stderr, "I/O thread context switches over %d messages: %ld\n", N - 1, woken);
    assert_true(woken < (N - 1) / 4);
    close(fd);
    close(ack[0]);
    close(ack[1]);
    ferry_close(pull);
}

/* --- what else wakes a parked receiver ------------------------------------ */

struct waiter {
    ferry_socket *s;
    int rc;
    char buf[64];
    size_t len;
    _Atomic pid_t tid;
};

static void *wait_one(void *arg)
{
    struct waiter *w = arg;
    atomic_store(&w->tid, gettid());
    w->rc = ferry_recv(w->s, w->buf, sizeof w->buf, &w->len, 0);
    return NULL;
}

static void start_waiter(struct waiter *w, pthread_t *th, ferry_socket *s)
{
    memset(w, 0, sizeof *w);
    w->s = s;
    assert_int_equal(pthread_create(th, NULL, wait_one, w), 0);
    while (atomic_load(&w->tid) == 0)
        sched_yield();
    wait_asleep(atomic_load(&w->tid));
}

/* A PULL listening on tcp://, with a raw PUSH peer (*fd) whose first
 * message has been received: the connection is the socket's pipe. */
static ferry_socket *warm_pull(int *fd, int *port)
{
    ferry_socket *pull = open_sock(FERRY_PULL);
    assert_int_equal(ferry_listen(pull, "tcp://127.0.0.1:*"), 0);
    *port = port_of(pull);
    *fd = raw_peer(*port, "PUSH", "PULL");
    unsigned char f[64];
    raw_send(*fd, f, msg_frame(f, "warm-up"));
    expect_msg(pull, "warm-up");
    return pull;
}

/* A waiter that has returned must have received `want`. */
static void expect_got(const struct waiter *w, const char *want)
{
    assert_int_equal(w->rc, 0);
    assert_int_equal(w->len, strlen(want));
    assert_memory_equal(w->buf, want, w->len);
}

static void join_expect(pthread_t th, struct waiter *w, const char *want)
{
    assert_int_equal(pthread_join(th, NULL), 0);
    expect_got(w, want);
}

/* A second connection's message reaches a receiver parked on the first
 * (it polls only the first's fd). No watchdog masks a lost wake-up here:
 * the receive would time out. */
static void test_second_connection_wakes(void **state)
{
    (void)state;
    int a, port;
    ferry_socket *pull = warm_pull(&a, &port);
    /* no timeout: a lost wake-up must not be rescued by the look a timed-out
     * wait takes before it gives up (joined with a deadline below) */
    ferry_setopt_int(pull, FERRY_OPT_RCVTIMEO, -1);
    unsigned char f[64];
    struct waiter w;
    pthread_t th;
    start_waiter(&w, &th, pull);
    int b = raw_peer(port, "PUSH", "PULL");
    raw_send(b, f, msg_frame(f, "from b"));
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 20;
    if (pthread_timedjoin_np(th, NULL, &until) != 0)
        fail_msg("a receiver parked on one connection missed a message on another");
    expect_got(&w, "from b");
    close(a);
    close(b);
    ferry_close(pull);
}

/* Bad input read on the receiver's thread: the connection is dropped (by
 * the I/O thread) and counted, the good message before it in the same
 * write is delivered, and the same wait goes on to serve another peer. */
static void test_bad_input_while_parked(void **state)
{
    (void)state;
    int bad, port;
    ferry_socket *pull = warm_pull(&bad, &port);
    unsigned char f[64];
    struct waiter w;
    pthread_t th;
    start_waiter(&w, &th, pull);
    /* a good message, then a command frame with MORE set */
    size_t n = msg_frame(f, "last good");
    memcpy(f + n, "\x05\x01x", 3);
    raw_send(bad, f, n + 3);
    join_expect(th, &w, "last good");
    assert_true(raw_closed(bad, 5000));
    int64_t errors = 0;
    for (int i = 0; i < 1000 && errors == 0; i++) {
        assert_int_equal(ferry_getopt_int(pull, FERRY_OPT_ERRORS, &errors), 0);
        if (errors == 0)
            sched_yield();
    }
    assert_int_equal(errors, 1);
    start_waiter(&w, &th, pull);
    int good = raw_peer(port, "PUSH", "PULL");
    raw_send(good, f, msg_frame(f, "still served"));
    join_expect(th, &w, "still served");
    close(bad);
    close(good);
    ferry_close(pull);
}

/* A PING that arrives while the receiver is parked is answered by it. */
static void test_ping_answered_while_parked(void **state)
{
    (void)state;
    int fd, port;
    ferry_socket *pull = warm_pull(&fd, &port);
    unsigned char f[64];
    struct waiter w;
    pthread_t th;
    start_waiter(&w, &th, pull);
    /* PING, TTL 0, context "ctx" */
    static const unsigned char ping[] = {0x04, 10, 4, 'P', 'I', 'N', 'G', 0, 0, 'c', 't', 'x'};
    raw_send(fd, ping, sizeof ping);
    unsigned char pong[10];
    raw_read(fd, pong, sizeof pong, 5000);
    assert_memory_equal(pong, "\x04\x08\x04PONGctx", 10);
    raw_send(fd, f, msg_frame(f, "after"));
    join_expect(th, &w, "after");
    close(fd);
    ferry_close(pull);
}

/* A raw REP in a child process (no threads: TSan cannot follow a child
 * that starts them): handshake, read until the request has come, say so
 * on `got`, and wait to be killed. */
static void raw_rep_child(const char *ep, int ipc, int got)
{
    int fd;
    if (ipc) {
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        size_t pl = strlen(ep + 6);
        if (pl >= sizeof a.sun_path)
            _exit(1);
        memcpy(a.sun_path, ep + 6, pl + 1);
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
            _exit(1);
    } else {
        struct sockaddr_in a = {.sin_family = AF_INET};
        a.sin_port = htons((uint16_t)atoi(strrchr(ep, ':') + 1));
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
            _exit(1);
    }
    unsigned char b[512];
    size_t n = ready_frame(b, "REP");
    if (send(fd, greeting, sizeof greeting, 0) != (ssize_t)sizeof greeting ||
        send(fd, b, n, 0) != (ssize_t)n)
        _exit(1);
    size_t have = 0;
    while (memmem(b, have, "req", 3) == NULL) { /* greeting, READY, then the request */
        if (have == sizeof b)
            _exit(1);
        ssize_t r = recv(fd, b + have, sizeof b - have, 0);
        if (r <= 0)
            _exit(1);
        have += (size_t)r;
    }
    if (write(got, "g", 1) != 1)
        _exit(1);
    for (;;)
        pause(); /* killed here, the request unanswered */
}

/* A REQ parked for its reply learns at once that its REP's process was
 * killed (SIGKILL), over ipc:// and tcp://. */
static void req_peer_killed(int ipc)
{
    char url[160], path[96];
    snprintf(path, sizeof path, "/tmp/ferry-park-%d.sock", (int)getpid());
    snprintf(url, sizeof url, ipc ? "ipc://%s" : "tcp://127.0.0.1:*", path);
    ferry_socket *req = open_sock(FERRY_REQ);
    assert_int_equal(ferry_listen(req, url), 0);
    char ep[160];
    assert_int_equal(ferry_socket_addr(req, ep, sizeof ep), 0);
    int got[2];
    assert_int_equal(pipe(got), 0);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0)
        raw_rep_child(ep, ipc, got[1]);
    assert_int_equal(ferry_send(req, "req", 3, 0), 0);
    char g;
    assert_int_equal(read(got[0], &g, 1), 1);
    /* the REQ waits (parked); the REP dies under it */
    struct waiter w;
    pthread_t th;
    start_waiter(&w, &th, req);
    kill(child, SIGKILL);
    assert_int_equal(waitpid(child, NULL, 0), child);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(w.rc, FERRY_ECONNRESET);
    close(got[0]);
    close(got[1]);
    ferry_close(req);
    unlink(path);
}

static void test_peer_killed_while_parked(void **state)
{
    (void)state;
    req_peer_killed(1);
    req_peer_killed(0);
}

/* The timeout of a parked receive, and a second receiver on the same
 * socket (one parks, the other sleeps on the wake word): each gets one of
 * two messages. */
static void test_timeout_and_two_receivers(void **state)
{
    (void)state;
    int fd, port;
    ferry_socket *pull = warm_pull(&fd, &port);
    unsigned char f[64];
    ferry_setopt_int(pull, FERRY_OPT_RCVTIMEO, 30);
    char buf[16];
    size_t len;
    assert_int_equal(ferry_recv(pull, buf, sizeof buf, &len, 0), FERRY_ETIMEDOUT);
    ferry_setopt_int(pull, FERRY_OPT_RCVTIMEO, 10000);
    struct waiter w1, w2;
    pthread_t t1, t2;
    start_waiter(&w1, &t1, pull);
    start_waiter(&w2, &t2, pull);
    size_t n = msg_frame(f, "one");
    n += msg_frame(f + n, "two");
    raw_send(fd, f, n); /* both in one read */
    assert_int_equal(pthread_join(t1, NULL), 0);
    assert_int_equal(pthread_join(t2, NULL), 0);
    assert_int_equal(w1.rc, 0);
    assert_int_equal(w2.rc, 0);
    assert_int_equal(w1.len, 3);
    assert_int_equal(w2.len, 3);
    assert_true((memcmp(w1.buf, "one", 3) == 0 && memcmp(w2.buf, "two", 3) == 0) ||
                (memcmp(w1.buf, "two", 3) == 0 && memcmp(w2.buf, "one", 3) == 0));
    close(fd);
    ferry_close(pull);
}

/* A receiver thread parks on pull and gets a message from the raw peer
 * fd: the connection's input is now lent to it (park.c, "The loan"). */
static void lend_input(ferry_socket *pull, int fd)
{
    unsigned char f[64];
    struct waiter w;
    pthread_t th;
    start_waiter(&w, &th, pull);
    raw_send(fd, f, msg_frame(f, "lent"));
    join_expect(th, &w, "lent");
}

/* A receiver that read for itself keeps the input from the I/O thread
 * for its next park (park.c, "The loan"). When it does not come back,
 * the input returns to the I/O thread: a PING sent while nobody receives
 * is answered, and the message after it is there for the next receive. */
static void test_loan_returned(void **state)
{
    (void)state;
    int fd, port;
    ferry_socket *pull = warm_pull(&fd, &port);
    unsigned char f[64];
    lend_input(pull, fd);
    static const unsigned char ping[] = {0x04, 10, 4, 'P', 'I', 'N', 'G', 0, 0, 'c', 't', 'x'};
    raw_send(fd, ping, sizeof ping);
    unsigned char pong[10];
    raw_read(fd, pong, sizeof pong, 5000);
    assert_memory_equal(pong, "\x04\x08\x04PONGctx", 10);
    raw_send(fd, f, msg_frame(f, "after"));
    expect_msg(pull, "after");
    close(fd);
    ferry_close(pull);
}

/* A receive with RCVTIMEO 0 that finds nothing takes a lent input back
 * at once, as a DONTWAIT one does (else it would stay unread until the
 * loan's timer ends it): the next message is read by the I/O thread and
 * waits in the socket. */
static void test_loan_rcvtimeo_zero(void **state)
{
    (void)state;
    int fd, port;
    ferry_socket *pull = warm_pull(&fd, &port);
    unsigned char f[64];
    lend_input(pull, fd);
    assert_int_equal(ferry_setopt_int(pull, FERRY_OPT_RCVTIMEO, 0), 0);
    char buf[16];
    size_t len;
    assert_int_equal(ferry_recv(pull, buf, sizeof buf, &len, 0), FERRY_EAGAIN);
    pthread_mutex_lock(&pull->mtx);
    assert_int_equal(pull->npipes, 1);
    int lent = pull->pipes[0]->lent;
    pthread_mutex_unlock(&pull->mtx);
    assert_int_equal(lent, 0);
    assert_int_equal(ferry_setopt_int(pull, FERRY_OPT_RCVTIMEO, 10000), 0);
    raw_send(fd, f, msg_frame(f, "after"));
    assert_int_equal(ferry_recv(pull, buf, sizeof buf, &len, 0), 0);
    assert_int_equal(len, 5);
    assert_memory_equal(buf, "after", 5);
    close(fd);
    ferry_close(pull);
}

/* A poller that waits on a socket whose input is on loan takes it back:
 * the message sent after the loan makes the socket readable. */
static void test_loan_and_poller(void **state)
{
    (void)state;
    int fd, port;
    ferry_socket *pull = warm_pull(&fd, &port);
    unsigned char f[64];
    lend_input(pull, fd);
    ferry_poller *pl;
    assert_int_equal(ferry_poller_new(&pl), 0);
    assert_int_equal(ferry_poller_add(pl, pull, FERRY_POLLIN, pull), 0);
    ferry_poll_event ev;
    assert_int_equal(ferry_poller_wait(pl, &ev, 1, 0), 0); /* nothing yet */
    raw_send(fd, f, msg_frame(f, "polled"));
    assert_int_equal(ferry_poller_wait(pl, &ev, 1, 10000), 1);
    assert_ptr_equal(ev.user, pull);
    char buf[16];
    size_t len;
    assert_int_equal(ferry_recv(pull, buf, sizeof buf, &len, FERRY_DONTWAIT), 0);
    assert_int_equal(len, 6);
    assert_memory_equal(buf, "polled", 6);
    ferry_poller_free(pl);
    close(fd);
    ferry_close(pull);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_io_thread_sleeps),
        cmocka_unit_test(test_second_connection_wakes),
        cmocka_unit_test(test_bad_input_while_parked),
        cmocka_unit_test(test_ping_answered_while_parked),
        cmocka_unit_test(test_peer_killed_while_parked),
        cmocka_unit_test(test_timeout_and_two_receivers),
        cmocka_unit_test(test_loan_returned),
        cmocka_unit_test(test_loan_rcvtimeo_zero),
        cmocka_unit_test(test_loan_and_poller),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
