/* test_shm_seal.c - the memfds a shm:// peer hands us: seals are read before
 * the size, and only tmpfs memfds are accepted. Linked with
 * -Wl,--wrap=fcntl so a peer's move can be made exactly between our two
 * reads. */
#include "../common.h"

#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "raw_shm.h"

int __real_fcntl(int fd, int cmd, ...);
int __wrap_fcntl(int fd, int cmd, ...);

/* The peer's move: when the listener reads the seals of the memfd with
 * inode target_ino, truncate it to nothing and seal it, then answer. */
static _Atomic int armed;
static ino_t target_ino;

int __wrap_fcntl(int fd, int cmd, ...)
{
    if (cmd == F_GET_SEALS || cmd == F_GETFL || cmd == F_GETFD) {
        struct stat st;
        if (cmd == F_GET_SEALS && atomic_load(&armed) && fstat(fd, &st) == 0 &&
            st.st_ino == target_ino && atomic_exchange(&armed, 0)) {
            if (ftruncate(fd, 0) != 0 || __real_fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) != 0)
                _exit(97);
        }
        return __real_fcntl(fd, cmd);
    }
    va_list ap;
    va_start(ap, cmd);
    unsigned long arg = va_arg(ap, unsigned long);
    va_end(ap);
    return __real_fcntl(fd, cmd, arg);
}

static int sealed_memfd(size_t size, int seals)
{
    int fd = memfd_create("t-seal", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    CHILD_CHECK(fd >= 0 && ftruncate(fd, (off_t)size) == 0, 82);
    CHILD_CHECK(seals == 0 || __real_fcntl(fd, F_ADD_SEALS, seals) == 0, 83);
    return fd;
}

/* A raw dialer whose connection memfd is valid and of the right size, but
 * unsealed; the wrapper shrinks and seals it between the listener's reads.
 * The listener must refuse it (FERRY_EPROTO) and must not fault. */
static void shrink_between_checks(void)
{
    char n[64], u[96];
    t_name(n, sizeof n, "seal");
    snprintf(u, sizeof u, "shm://%s", n);
    ferry_socket *pull;
    CHILD_CHECK(ferry_socket_open(&pull, FERRY_PULL) == 0, 84);
    CHILD_CHECK(ferry_listen(pull, u) == 0, 85);
    int fd = raw_shm_connect(n);
    CHILD_CHECK(fd >= 0, 81);
    struct shm_ctl c;
    CHILD_CHECK(raw_shm_read(fd, &c) > 0 && c.op == SHM_OP_WELCOME, 86);

    const uint64_t cap = 65536;
    size_t len = SHM_CONN_HDR + 2 * fy_ring_bytes(cap);
    int conn = sealed_memfd(len, 0);
    struct shm_conn_hdr *h = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, conn, 0);
    CHILD_CHECK(h != MAP_FAILED, 87);
    memcpy(h->magic, "FERRYCON", 8);
    h->version = 1;
    h->ring_cap = cap;
    munmap(h, len);
    struct stat st;
    CHILD_CHECK(fstat(conn, &st) == 0, 88);
    target_ino = st.st_ino;
    int wake = sealed_memfd(FY_WAKE_SIZE, F_SEAL_SHRINK | F_SEAL_GROW);
    int sv[2];
    CHILD_CHECK(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv) == 0, 89);

    struct shm_ctl hello;
    memset(&hello, 0, sizeof hello);
    memcpy(hello.magic, "FERRYCTL", 8);
    hello.version = SHM_CTL_VERSION;
    hello.op = SHM_OP_HELLO;
    hello.type = FERRY_PUSH;
    hello.ring_size = cap;
    int fds[3] = {conn, wake, sv[1]};
    atomic_store(&armed, 1);
    CHILD_CHECK(raw_shm_send(fd, &hello, fds, 3) == (ssize_t)sizeof hello, 90);
    CHILD_CHECK(raw_shm_read(fd, &c) > 0, 91);
    CHILD_CHECK(atomic_load(&armed) == 0, 92); /* the move was made */
    CHILD_CHECK(c.op == SHM_OP_REFUSE && c.err == FERRY_EPROTO, 93);
    close(fd);
    close(conn);
    close(wake);
    close(sv[0]);
    close(sv[1]);

    /* an honest peer is still served */
    ferry_socket *push;
    CHILD_CHECK(ferry_socket_open(&push, FERRY_PUSH) == 0, 94);
    CHILD_CHECK(ferry_dial(push, u) == 0, 95);
    CHILD_CHECK(ferry_send(push, "ok", 2, 0) == 0, 96);
    char b[8];
    size_t got;
    CHILD_CHECK(ferry_setopt_int(pull, FERRY_OPT_RCVTIMEO, 10000) == 0, 97);
    CHILD_CHECK(ferry_recv(pull, b, sizeof b, &got, 0) == 0 && got == 2, 98);
    ferry_close(push);
    ferry_close(pull);
}

/* 7. Truncated and sealed between our reads: refused, and no SIGBUS. Run
 * in a child (forked before any thread) so a fault shows as its status. */
static void test_shrink_between_checks(void **state)
{
    (void)state;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        t_die_with_parent();
        shrink_between_checks();
        _exit(0);
    }
    assert_int_equal(t_wait(pid), 0);
}

/* 7. What the memfd check accepts, called directly. */
static void test_memfd_kinds(void **state)
{
    (void)state;
    int fd = sealed_memfd(8192, F_SEAL_SHRINK);
    assert_int_equal(fy_shm_check_memfd(fd, 8192), 0);
    assert_int_equal(fy_shm_check_memfd(fd, 4096), FERRY_EPROTO); /* size must match */
    close(fd);
    fd = sealed_memfd(8192, 0); /* not sealed */
    assert_int_equal(fy_shm_check_memfd(fd, 8192), FERRY_EPROTO);
    close(fd);
    /* a tmpfs file that is not a memfd cannot be sealed */
    fd = open("/dev/shm", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 8192), 0);
    assert_int_equal(fy_shm_check_memfd(fd, 8192), FERRY_EPROTO);
    close(fd);
    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_int_equal(fy_shm_check_memfd(p[0], 0), FERRY_EPROTO);
    assert_int_equal(fy_shm_check_event_sock(p[0]), FERRY_EPROTO);
    close(p[0]);
    close(p[1]);
}

/* 7. A hugetlbfs memfd is sealable too, but its pages may be missing at
 * fault time: refused. Skipped where the kernel has no hugetlbfs. */
static void test_hugetlb_refused(void **state)
{
    (void)state;
    const size_t huge = 2u << 20;
    int fd = memfd_create("t-huge", MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_HUGETLB);
    if (fd < 0 || ftruncate(fd, (off_t)huge) != 0) {
        if (fd >= 0)
            close(fd);
        skip();
    }
    assert_int_equal(__real_fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK), 0);
    assert_int_equal(fy_shm_check_memfd(fd, huge), FERRY_EPROTO);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shrink_between_checks),
        cmocka_unit_test(test_memfd_kinds),
        cmocka_unit_test(test_hugetlb_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
