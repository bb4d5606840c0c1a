/*
 * test_loop.c - the shared event loop: a socket costs no thread and at
 * most 3 fds beyond its connections (docs/architecture.md names them),
 * FERRY_IO_THREADS, threads stopped with the last socket, and one
 * socket's stalled handshake does not stall the others on the loop.
 */
#include "common.h"
#include "unit/raw_shm.h"

#include <stdatomic.h>

#include <dirent.h>
#include <netdb.h>
#include <poll.h>
#include <sys/resource.h>

/* getaddrinfo is wrapped (-Wl,--wrap): "slow.invalid" answers 127.0.0.1
 * at once the first time (ferry_dial's own lookup), and later only once
 * the test writes a byte to slow_gate: a resolver that hangs for as long
 * as the test wants. */
int __real_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                       struct addrinfo **res);
int __wrap_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                       struct addrinfo **res);
static int slow_gate[2] = {-1, -1};
static _Atomic int slow_lookups, slow_waiting;

int __wrap_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                       struct addrinfo **res)
{
    if (node != NULL && strcmp(node, "slow.invalid") == 0) {
        if (atomic_fetch_add(&slow_lookups, 1) > 0) {
            atomic_store(&slow_waiting, 1);
            char c;
            ssize_t n = read(slow_gate[0], &c, 1);
            (void)n;
        }
        node = "127.0.0.1";
    }
    return __real_getaddrinfo(node, service, hints, res);
}

#define NSOCK 1000

static int count_dir(const char *path)
{
    DIR *d = opendir(path);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n - (strcmp(path, "/proc/self/fd") == 0); /* opendir's own fd */
}

static int threads(void) { return count_dir("/proc/self/task"); }
static int fds(void) { return count_dir("/proc/self/fd"); }

/* NSOCK listening sockets, a third each on shm://, ipc:// and tcp://, of
 * mixed types; then one of each transport carries a message. */
static void many_listeners(int want_threads)
{
    if (t_raise_nofile(4 * NSOCK + 64) != 0) {
        fprintf(stderr, "note: RLIMIT_NOFILE too low for %d sockets; skipped\n", NSOCK);
        skip();
    }
    static const int types[] = {FERRY_PULL, FERRY_SUB, FERRY_REP, FERRY_ROUTER, FERRY_XPUB};
    int threads0 = threads(), fds0 = fds();
    ferry_socket **s = calloc(NSOCK, sizeof *s);
    char(*url)[128] = calloc(NSOCK, sizeof *url);
    assert_non_null(s);
    assert_non_null(url);
    for (int i = 0; i < NSOCK; i++) {
        assert_int_equal(ferry_socket_open(&s[i], types[i % 5]), 0);
        char name[64];
        t_name(name, sizeof name, "loop");
        if (i % 3 == 0)
            snprintf(url[i], sizeof url[i], "shm://%s", name);
        else if (i % 3 == 1)
            snprintf(url[i], sizeof url[i], "ipc://@%s", name);
        else
            snprintf(url[i], sizeof url[i], "tcp://127.0.0.1:0");
        assert_int_equal(ferry_listen(s[i], url[i]), 0);
        if (i % 3 == 2) /* the port the kernel chose */
            ferry_socket_addr(s[i], url[i], sizeof url[i]);
    }
    int dt = threads() - threads0, dfd = fds() - fds0;
    fprintf(stderr, "note: %d listening sockets: +%d threads, +%d fds (%.2f per socket)\n", NSOCK,
            dt, dfd, (double)dfd / NSOCK);
    assert_true(dt <= want_threads);
    assert_true(dt >= 1);
    /* each socket: its wake block, its pollable fd, its listener; each I/O
     * thread: its epoll set and its poke; the process: its counters file */
    assert_true(dfd <= 3 * NSOCK + 2 * want_threads + 1);

    /* they work: a PUSH to a PULL on each transport (sockets 0, 1, 2 are
     * PULLs of shm://, ipc://, tcp://... 15 is a PULL on shm://) */
    int pulls[] = {0, 5, 10};
    for (int k = 0; k < 3; k++) {
        int i = pulls[k];
        assert_int_equal(types[i % 5], FERRY_PULL);
        ferry_socket *push;
        assert_int_equal(ferry_socket_open(&push, FERRY_PUSH), 0);
        assert_int_equal(ferry_dial(push, url[i]), 0);
        ferry_setopt_int(s[i], FERRY_OPT_RCVTIMEO, 10000);
        assert_int_equal(ferry_send(push, "over the loop", 13, 0), 0);
        char buf[32];
        size_t n = 0;
        assert_int_equal(ferry_recv(s[i], buf, sizeof buf, &n, 0), 0);
        assert_int_equal(n, 13);
        assert_memory_equal(buf, "over the loop", 13);
        ferry_close(push);
    }
    for (int i = 0; i < NSOCK; i++)
        ferry_close(s[i]);
    /* the last socket stopped the threads and gave every fd back */
    assert_int_equal(threads(), threads0);
    assert_int_equal(fds(), fds0);
    free(s);
    free(url);
}

static void test_thousand_sockets_one_thread(void **state)
{
    (void)state;
    unsetenv("FERRY_IO_THREADS");
    many_listeners(1);
}

static void test_io_threads_option(void **state)
{
    (void)state;
    setenv("FERRY_IO_THREADS", "2", 1);
    many_listeners(2);
    unsetenv("FERRY_IO_THREADS");
}

/* A new tcp:// connection made and n REQ/REP round trips over it: the I/O
 * thread serves them (they time out after 5 s if it is stuck). */
static void tcp_round_trips(int n)
{
    ferry_socket *rep, *req;
    assert_int_equal(ferry_socket_open(&rep, FERRY_REP), 0);
    assert_int_equal(ferry_socket_open(&req, FERRY_REQ), 0);
    ferry_setopt_int(rep, FERRY_OPT_RCVTIMEO, 5000);
    ferry_setopt_int(req, FERRY_OPT_RCVTIMEO, 5000);
    assert_int_equal(ferry_listen(rep, "tcp://127.0.0.1:0"), 0);
    char ep[128];
    ferry_socket_addr(rep, ep, sizeof ep);
    assert_int_equal(ferry_dial(req, ep), 0);
    for (int i = 0; i < n; i++) {
        char buf[16];
        size_t len;
        assert_int_equal(ferry_send(req, "ping", 4, 0), 0);
        assert_int_equal(ferry_recv(rep, buf, sizeof buf, &len, 0), 0);
        assert_int_equal(ferry_send(rep, "pong", 4, 0), 0);
        assert_int_equal(ferry_recv(req, buf, sizeof buf, &len, 0), 0);
        assert_memory_equal(buf, "pong", 4);
    }
    ferry_close(req);
    ferry_close(rep);
}

/* A socket's redial meets a listener that accepts and never answers: the
 * handshake waits on the loop, and the loop serves the other sockets
 * meanwhile (a connection made, messages both ways). */
static void test_stalled_handshake_stalls_nobody(void **state)
{
    (void)state;
    char name[64], url[96];
    t_name(name, sizeof name, "stall");
    snprintf(url, sizeof url, "shm://%s", name);
    ferry_socket *a;
    assert_int_equal(ferry_socket_open(&a, FERRY_PUSH), 0);
    ferry_setopt_int(a, FERRY_OPT_HANDSHAKE_IVL, 60000);
    ferry_setopt_int(a, FERRY_OPT_RECONNECT_IVL, 10);
    assert_int_equal(ferry_dial(a, url), 0); /* nobody listens: redials */
    int fake = raw_shm_listen(name);
    assert_true(fake >= 0);
    struct pollfd pfd = {.fd = fake, .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, 10000), 1);
    int conn = accept4(fake, NULL, NULL, SOCK_CLOEXEC);
    assert_true(conn >= 0); /* a's redial is in, waiting for a WELCOME */

    tcp_round_trips(10); /* meanwhile, on the same I/O thread */
    /* closing a socket whose handshake is in progress does not wait for it */
    ferry_close(a);
    close(conn);
    close(fake);
}

/* A tcp:// dialer's host name is looked up again before each redial; a
 * resolver that hangs holds that dialer only, not the I/O thread. */
static void test_slow_resolver_stalls_nobody(void **state)
{
    (void)state;
    assert_int_equal(pipe(slow_gate), 0);
    /* a port nobody listens on yet: a listener made and closed */
    ferry_socket *probe;
    assert_int_equal(ferry_socket_open(&probe, FERRY_PULL), 0);
    assert_int_equal(ferry_listen(probe, "tcp://127.0.0.1:0"), 0);
    char ep[128], url[160];
    ferry_socket_addr(probe, ep, sizeof ep);
    const char *port = strrchr(ep, ':') + 1;
    snprintf(url, sizeof url, "tcp://slow.invalid:%s", port);
    ferry_close(probe);

    ferry_socket *a;
    assert_int_equal(ferry_socket_open(&a, FERRY_PUSH), 0);
    ferry_setopt_int(a, FERRY_OPT_RECONNECT_IVL, 10);
    assert_int_equal(ferry_dial(a, url), 0); /* refused: a redial, with a lookup, follows */
    for (int i = 0; i < 1000 && !atomic_load(&slow_waiting); i++)
        usleep(10000); /* polling for the redial's lookup to start */
    assert_true(atomic_load(&slow_waiting));

    tcp_round_trips(1); /* the lookup hangs; the I/O thread serves others */
    char buf[16];
    size_t n;

    /* the lookup answers: the dialer reaches a listener on that port */
    ferry_socket *pull;
    assert_int_equal(ferry_socket_open(&pull, FERRY_PULL), 0);
    assert_int_equal(ferry_listen(pull, ep), 0);
    ferry_setopt_int(pull, FERRY_OPT_RCVTIMEO, 10000);
    ssize_t w = write(slow_gate[1], "gggggggggg", 10); /* this lookup and a few more */
    assert_int_equal(w, 10);
    assert_int_equal(ferry_send(a, "resolved", 8, 0), 0);
    assert_int_equal(ferry_recv(pull, buf, sizeof buf, &n, 0), 0);
    assert_memory_equal(buf, "resolved", 8);
    ferry_close(a);
    ferry_close(pull);
    close(slow_gate[1]); /* lookups still to come answer at once (EOF) */
}

/* In a forked child, closing the sockets it inherited leaves the parent's
 * connections alone. */
static void test_child_closing_inherited_socket(void **state)
{
    (void)state;
    char url[96];
    t_url(url, sizeof url, "inherit");
    ferry_socket *pull, *push;
    assert_int_equal(ferry_socket_open(&pull, FERRY_PULL), 0);
    assert_int_equal(ferry_socket_open(&push, FERRY_PUSH), 0);
    ferry_setopt_int(pull, FERRY_OPT_RCVTIMEO, 5000);
    assert_int_equal(ferry_listen(pull, url), 0);
    assert_int_equal(ferry_dial(push, url), 0);
    char buf[16];
    size_t n;
    assert_int_equal(ferry_send(push, "one", 3, 0), 0);
    assert_int_equal(ferry_recv(pull, buf, sizeof buf, &n, 0), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        ferry_close(push);
        ferry_close(pull);
        _exit(0);
    }
    assert_int_equal(t_wait(pid), 0);
    assert_int_equal(ferry_send(push, "two", 3, 0), 0);
    assert_int_equal(ferry_recv(pull, buf, sizeof buf, &n, 0), 0);
    assert_memory_equal(buf, "two", 3);
    ferry_close(push);
    ferry_close(pull);
}

/* A child forked while the parent's I/O thread runs gets threads of its
 * own for its own sockets. */
static void test_fork_child_gets_its_own_loop(void **state)
{
    (void)state;
    ferry_socket *pull;
    assert_int_equal(ferry_socket_open(&pull, FERRY_PULL), 0);
    assert_int_equal(ferry_listen(pull, "tcp://127.0.0.1:0"), 0);
    char ep[128];
    ferry_socket_addr(pull, ep, sizeof ep);
    ferry_setopt_int(pull, FERRY_OPT_RCVTIMEO, 10000);
    /* a message first: the I/O thread has started and sits idle in its
     * sleep when we fork (a thread forked in the middle of its own start
     * can leave a sanitizer's allocator locked in the child) */
    ferry_socket *warm;
    assert_int_equal(ferry_socket_open(&warm, FERRY_PUSH), 0);
    assert_int_equal(ferry_dial(warm, ep), 0);
    assert_int_equal(ferry_send(warm, "warm", 4, 0), 0);
    char buf[32];
    size_t n = 0;
    assert_int_equal(ferry_recv(pull, buf, sizeof buf, &n, 0), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        t_die_with_parent();
        ferry_socket *push;
        CHILD_CHECK(ferry_socket_open(&push, FERRY_PUSH) == 0, 1);
        CHILD_CHECK(ferry_dial(push, ep) == 0, 2);
        CHILD_CHECK(ferry_send(push, "from the child", 14, 0) == 0, 3);
        ferry_close(push);
        _exit(0);
    }
    assert_int_equal(ferry_recv(pull, buf, sizeof buf, &n, 0), 0);
    assert_memory_equal(buf, "from the child", 14);
    assert_int_equal(t_wait(pid), 0);
    ferry_close(warm);
    ferry_close(pull);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_thousand_sockets_one_thread),
        cmocka_unit_test(test_io_threads_option),
        cmocka_unit_test(test_stalled_handshake_stalls_nobody),
        cmocka_unit_test(test_slow_resolver_stalls_nobody),
        cmocka_unit_test(test_child_closing_inherited_socket),
        cmocka_unit_test(test_fork_child_gets_its_own_loop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
