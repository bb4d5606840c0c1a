/* test_shm_listener.c - a shm:// listener out of descriptors pauses instead
 * of spinning, and accepts again once descriptors are free. */
#include "../common.h"

#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "transport/shm/shm_int.h"
#include "unit/raw_shm.h"

static uint64_t cpu_ms(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000u +
           (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000u;
}

/* The listener's process: listen, then allow no more descriptors, say so,
 * wait for the peer to connect, measure its own CPU time for 500 ms, say
 * how much, allow descriptors again and serve. */
static void listener_child(const char *url, int to_parent, int from_parent)
{
    t_die_with_parent();
    ferry_socket *pull;
    CHILD_CHECK(ferry_socket_open(&pull, FERRY_PULL) == 0, 80);
    CHILD_CHECK(ferry_listen(pull, url) == 0, 81);
    struct rlimit old, none;
    CHILD_CHECK(getrlimit(RLIMIT_NOFILE, &old) == 0, 82);
    int lowest = dup(0); /* every fd from here on is refused */
    CHILD_CHECK(lowest >= 0, 83);
    close(lowest);
    none = old;
    none.rlim_cur = (rlim_t)lowest;
    CHILD_CHECK(setrlimit(RLIMIT_NOFILE, &none) == 0, 84);
    CHILD_CHECK(write(to_parent, "r", 1) == 1, 85);
    char c;
    CHILD_CHECK(read(from_parent, &c, 1) == 1, 86); /* the peer is in the backlog */
    uint64_t cpu0 = cpu_ms(), t0 = t_now_ms();
    /* a measurement window, not synchronisation: how busy are we meanwhile */
    struct timespec ts = {0, 500000000};
    nanosleep(&ts, NULL);
    uint64_t used = cpu_ms() - cpu0, wall = t_now_ms() - t0;
    CHILD_CHECK(setrlimit(RLIMIT_NOFILE, &old) == 0, 87);
    uint32_t report[2] = {(uint32_t)used, (uint32_t)wall};
    CHILD_CHECK(write(to_parent, report, sizeof report) == (ssize_t)sizeof report, 88);
    CHILD_CHECK(read(from_parent, &c, 1) == 1, 89); /* the peer got its WELCOME */
    ferry_close(pull);
    _exit(0);
}

static void test_emfile_pauses(void **state)
{
    (void)state;
    char n[64], u[96];
    t_name(n, sizeof n, "emfile");
    snprintf(u, sizeof u, "shm://%s", n);
    struct t_pipe up, down;
    t_pipe_open(&up);
    t_pipe_open(&down);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        listener_child(u, up.w, down.r);
    assert_int_equal(t_pipe_recv(&up), 'r');
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int len = snprintf(sa.sun_path + 1, sizeof sa.sun_path - 1, "ferry/shm/%s", n);
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa,
                             (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)len)),
                     0);
    t_pipe_send(&down, 'c');
    uint32_t report[2];
    assert_int_equal(read(up.r, report, sizeof report), (ssize_t)sizeof report);
    /* a spinning I/O thread would use about all of the window */
    printf("listener CPU: %u ms in %u ms\n", report[0], report[1]);
    assert_true(report[0] * 4 < report[1]);
    /* descriptors are back: the waiting peer is served within a pause */
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, 5000), 1);
    struct shm_ctl c;
    assert_int_equal(recv(fd, &c, sizeof c, 0), (ssize_t)sizeof c);
    assert_int_equal(c.op, SHM_OP_WELCOME);
    t_pipe_send(&down, 'd');
    assert_int_equal(t_wait(pid), 0);
    close(fd);
    t_pipe_close(&up);
    t_pipe_close(&down);
}

static int64_t opt_of(ferry_socket *s, int opt)
{
    int64_t v = -1;
    ferry_getopt_int(s, opt, &v);
    return v;
}

/* The listener's limits, as on tcp:// and ipc://: FERRY_OPT_BACKLOG
 * handshakes in progress, FERRY_OPT_MAX_CONNECTIONS accepted connections;
 * past them a dialer is refused, told why, counted, and retries. */
static void test_connection_limits(void **state)
{
    (void)state;
    char name[64], url[96];
    t_name(name, sizeof name, "limits");
    snprintf(url, sizeof url, "shm://%s", name);
    ferry_socket *pull;
    assert_int_equal(ferry_socket_open(&pull, FERRY_PULL), 0);
    assert_int_equal(ferry_setopt_int(pull, FERRY_OPT_MAX_CONNECTIONS, 2), 0);
    assert_int_equal(ferry_setopt_int(pull, FERRY_OPT_BACKLOG, 1), 0);
    ferry_setopt_int(pull, FERRY_OPT_RCVTIMEO, 10000);
    assert_int_equal(ferry_listen(pull, url), 0);

    /* a dialer that never says HELLO holds the one handshake slot */
    struct shm_ctl c;
    int h1 = raw_shm_connect(name), h2 = raw_shm_connect(name);
    assert_true(h1 >= 0 && h2 >= 0);
    assert_int_equal(raw_shm_read(h1, &c), (ssize_t)sizeof c);
    assert_int_equal(c.op, SHM_OP_WELCOME);
    assert_int_equal(raw_shm_read(h2, &c), (ssize_t)sizeof c);
    assert_int_equal(c.op, SHM_OP_REFUSE);
    assert_non_null(strstr(c.text, "FERRY_OPT_BACKLOG"));
    assert_int_equal(opt_of(pull, FERRY_OPT_REFUSED), 1);
    close(h1);
    close(h2);

    /* two connections in; a third refused until one of them leaves */
    ferry_socket *push[3];
    for (int i = 0; i < 3; i++) {
        assert_int_equal(ferry_socket_open(&push[i], FERRY_PUSH), 0);
        ferry_setopt_int(push[i], FERRY_OPT_RECONNECT_IVL, 20);
        ferry_setopt_int(push[i], FERRY_OPT_RECONNECT_IVL_MAX, 100);
    }
    assert_int_equal(ferry_dial(push[0], url), 0);
    assert_int_equal(ferry_dial(push[1], url), 0);
    assert_int_equal(ferry_wait_peers(pull, 2, 10000), 0);
    assert_int_equal(ferry_dial(push[2], url), 0); /* refused for now: it retries */
    assert_int_equal(ferry_wait_peers(push[2], 1, 300), FERRY_ETIMEDOUT);
    assert_true(opt_of(pull, FERRY_OPT_REFUSED) >= 2);
    char why[256];
    ferry_socket_drop_reason(pull, why, sizeof why);
    assert_non_null(strstr(why, "too many connections"));
    ferry_close(push[0]);
    assert_int_equal(ferry_wait_peers(push[2], 1, 10000), 0);
    assert_int_equal(ferry_send(push[2], "in", 2, 0), 0);
    char buf[8];
    size_t n;
    assert_int_equal(ferry_recv(pull, buf, sizeof buf, &n, 0), 0);
    assert_memory_equal(buf, "in", 2);
    ferry_close(push[1]);
    ferry_close(push[2]);
    ferry_close(pull);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_emfile_pauses),
        cmocka_unit_test(test_connection_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
