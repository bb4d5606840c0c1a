/* test_sem.c - named semaphores of both kinds, across processes. */
#include "../common.h"

#include <fcntl.h>
#include <sys/ipc.h>
#include <sys/sem.h>

static const int kinds[] = {0, FERRY_SEM_UNDO};

static void test_basic_ops(void **state)
{
    (void)state;
    for (size_t k = 0; k < 2; k++) {
        char n[64];
        ferry_sem *s;
        t_name(n, sizeof n, "basic");
        assert_int_equal(ferry_sem_open(&s, n, FERRY_CREATE | FERRY_EXCL | kinds[k], 0, 2), 0);
        assert_int_equal(ferry_sem_is_undo(s), kinds[k] ? 1 : 0);
        assert_int_equal(ferry_sem_value(s), 2);
        assert_int_equal(ferry_sem_trywait(s), 0);
        assert_int_equal(ferry_sem_wait(s), 0);
        assert_int_equal(ferry_sem_trywait(s), FERRY_EAGAIN);
        assert_int_equal(ferry_sem_timedwait(s, 0), FERRY_ETIMEDOUT);
        uint64_t t0 = t_now_ms();
        assert_int_equal(ferry_sem_timedwait(s, 30), FERRY_ETIMEDOUT);
        assert_true(t_now_ms() - t0 >= 29);
        assert_int_equal(ferry_sem_post(s), 0);
        assert_int_equal(ferry_sem_value(s), 1);
        assert_int_equal(ferry_sem_timedwait(s, 1000), 0);
        assert_int_equal(ferry_sem_value(s), 0);

        /* a second handle sees the same counter and the creator's kind */
        ferry_sem *s2;
        assert_int_equal(ferry_sem_open(&s2, n, 0, 0, 0), 0);
        assert_int_equal(ferry_sem_is_undo(s2), kinds[k] ? 1 : 0);
        assert_int_equal(ferry_sem_post(s2), 0);
        assert_int_equal(ferry_sem_value(s), 1);
        ferry_sem_close(s2);
        ferry_sem_close(s);
        assert_int_equal(ferry_sem_unlink(n), 0);
        assert_false(t_exists(n));
        assert_int_equal(ferry_sem_open(&s, n, 0, 0, 0), FERRY_ENOENT);
    }
}

static void test_limits(void **state)
{
    (void)state;
    for (size_t k = 0; k < 2; k++) {
        char n[64];
        ferry_sem *s;
        t_name(n, sizeof n, "limits");
        assert_int_equal(ferry_sem_open(&s, n, FERRY_CREATE | kinds[k], 0, FERRY_SEM_VALUE_MAX + 1),
                         FERRY_EINVAL);
        assert_int_equal(ferry_sem_open(&s, n, FERRY_CREATE | kinds[k], 0, FERRY_SEM_VALUE_MAX), 0);
        assert_int_equal(ferry_sem_post(s), FERRY_EOVERFLOW);
        assert_int_equal(ferry_sem_value(s), FERRY_SEM_VALUE_MAX);
        ferry_sem_close(s);
        assert_int_equal(ferry_sem_open(&s, n, FERRY_CREATE | FERRY_EXCL, 0, 0), FERRY_EEXIST);
        assert_int_equal(ferry_sem_open(&s, "bad/name", FERRY_CREATE, 0, 0), FERRY_EBADNAME);
        ferry_sem_unlink(n);
    }
}

/* N processes each add 1 to a plain (non-atomic) counter 100,000 times,
 * with the semaphore as the lock: any lost update shows in the total. */
static void count_under_sem(int kind)
{
    enum { N = 4, ITER = 100000 };
    char n[64], r[64];
    ferry_sem *s;
    ferry_shm *reg;
    t_name(n, sizeof n, "count");
    t_name(r, sizeof r, "countreg");
    assert_int_equal(ferry_sem_open(&s, n, FERRY_CREATE | FERRY_EXCL | kind, 0, 1), 0);
    assert_int_equal(ferry_shm_open(&reg, r, 64, FERRY_CREATE | FERRY_EXCL, NULL), 0);
    volatile uint64_t *counter = ferry_shm_addr(reg);
    pid_t pids[N];
    for (int i = 0; i < N; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            for (int j = 0; j < ITER; j++) {
                if (ferry_sem_wait(s) != 0)
                    _exit(90);
                *counter = *counter + 1;
                if (ferry_sem_post(s) != 0)
                    _exit(91);
            }
            _exit(0);
        }
    }
    for (int i = 0; i < N; i++)
        assert_int_equal(t_wait(pids[i]), 0);
    assert_int_equal(*counter, (uint64_t)N * ITER);
    assert_int_equal(ferry_sem_value(s), 1);
    ferry_sem_close(s);
    ferry_shm_close(reg);
    ferry_sem_unlink(n);
    ferry_shm_unlink(r);
}

static void test_count_exact_futex(void **state)
{
    (void)state;
    count_under_sem(0);
}

static void test_count_exact_undo(void **state)
{
    (void)state;
    count_under_sem(FERRY_SEM_UNDO);
}

/* A holder is SIGKILLed while holding the only unit. With the undo kind the
 * kernel gives it back and a waiter proceeds (bounded: 5 s); with the
 * default kind it is lost, and the waiter times out. */
static void killed_holder(int kind)
{
    char n[64];
    ferry_sem *s;
    t_name(n, sizeof n, "killed");
    assert_int_equal(ferry_sem_open(&s, n, FERRY_CREATE | FERRY_EXCL | kind, 0, 1), 0);
    struct t_pipe held, waiting;
    t_pipe_open(&held);
    t_pipe_open(&waiting);
    pid_t holder = fork();
    if (holder == 0) {
        if (ferry_sem_wait(s) != 0)
            _exit(90);
        t_pipe_send(&held, 'h');
        for (;;)
            pause();
    }
    assert_int_equal(t_pipe_recv(&held), 'h');
    assert_int_equal(ferry_sem_value(s), 0);
    pid_t waiter = fork();
    if (waiter == 0) {
        t_pipe_send(&waiting, 'w');
        int rc = ferry_sem_timedwait(s, kind ? 5000 : 300);
        _exit(rc == 0 ? 0 : rc == FERRY_ETIMEDOUT ? 1 : 2);
    }
    assert_int_equal(t_pipe_recv(&waiting), 'w');
    kill(holder, SIGKILL);
    assert_int_equal(t_wait(holder), 128 + SIGKILL);
    assert_int_equal(t_wait(waiter), kind ? 0 : 1);
    t_pipe_close(&held);
    t_pipe_close(&waiting);
    ferry_sem_close(s);
    ferry_sem_unlink(n);
}

static void test_killed_holder_undo(void **state)
{
    (void)state;
    killed_holder(FERRY_SEM_UNDO);
}

static void test_killed_holder_futex_loses_unit(void **state)
{
    (void)state;
    killed_holder(0);
}

/* A waiter blocked in another process wakes on post. */
static void test_cross_process_wake(void **state)
{
    (void)state;
    for (size_t k = 0; k < 2; k++) {
        char n[64];
        ferry_sem *s, *ack;
        t_name(n, sizeof n, "wake");
        assert_int_equal(ferry_sem_open(&s, n, FERRY_CREATE | kinds[k], 0, 0), 0);
        char n2[64];
        t_name(n2, sizeof n2, "wakeack");
        assert_int_equal(ferry_sem_open(&ack, n2, FERRY_CREATE, 0, 0), 0);
        pid_t pid = fork();
        if (pid == 0) {
            for (int i = 0; i < 1000; i++) {
                if (ferry_sem_wait(s) != 0)
                    _exit(90);
                if (ferry_sem_post(ack) != 0)
                    _exit(91);
            }
            _exit(0);
        }
        for (int i = 0; i < 1000; i++) {
            assert_int_equal(ferry_sem_post(s), 0);
            assert_int_equal(ferry_sem_timedwait(ack, 5000), 0);
        }
        assert_int_equal(t_wait(pid), 0);
        ferry_sem_close(s);
        ferry_sem_close(ack);
        ferry_sem_unlink(n);
        ferry_sem_unlink(n2);
    }
}

/* Removing an undo semaphore wakes its waiters with FERRY_EIDRM. */
static void test_unlink_wakes_waiters(void **state)
{
    (void)state;
    char n[64];
    ferry_sem *s;
    t_name(n, sizeof n, "idrm");
    assert_int_equal(ferry_sem_open(&s, n, FERRY_CREATE | FERRY_SEM_UNDO, 0, 0), 0);
    struct t_pipe p;
    t_pipe_open(&p);
    pid_t pid = fork();
    if (pid == 0) {
        t_pipe_send(&p, 'w');
        int rc = ferry_sem_timedwait(s, 10000);
        _exit(rc == FERRY_EIDRM ? 0 : 1);
    }
    assert_int_equal(t_pipe_recv(&p), 'w');
    /* the waiter may not be asleep yet; either way it must see EIDRM */
    assert_int_equal(ferry_sem_unlink(n), 0);
    assert_int_equal(t_wait(pid), 0);
    assert_int_equal(ferry_sem_post(s), FERRY_EIDRM);
    ferry_sem_close(s);
    t_pipe_close(&p);
}

/* The semid in shared memory is untrusted: scribbled, it is refused. */
static void test_scribbled_semid(void **state)
{
    (void)state;
    char n[64], p[300];
    ferry_sem *s;
    t_name(n, sizeof n, "scribble");
    assert_int_equal(ferry_sem_open(&s, n, FERRY_CREATE | FERRY_SEM_UNDO, 0, 1), 0);
    ferry_sem_close(s);
    t_path(p, sizeof p, n);
    int fd = open(p, O_RDWR);
    int32_t saved, bogus = 0x7fff0000;
    assert_int_equal(pread(fd, &saved, 4, 128 + 8), 4);
    assert_int_equal(pwrite(fd, &bogus, 4, 128 + 8), 4);
    assert_int_equal(ferry_sem_open(&s, n, 0, 0, 0), FERRY_ECORRUPT);
    assert_int_equal(pwrite(fd, &saved, 4, 128 + 8), 4);
    close(fd);
    assert_int_equal(ferry_sem_open(&s, n, 0, 0, 0), 0);
    ferry_sem_close(s);
    assert_int_equal(ferry_object_remove(n), 0);
}

/* A semaphore planted by another local user is refused unless named. */
static void test_foreign_owner_refused(void **state)
{
    (void)state;
    if (geteuid() != 0)
        skip();
    for (size_t k = 0; k < 2; k++) {
        char n[64], p[300];
        ferry_sem *s;
        t_name(n, sizeof n, "owner");
        t_path(p, sizeof p, n);
        assert_int_equal(ferry_sem_open(&s, n, FERRY_CREATE | kinds[k], 0666, 1), 0);
        ferry_sem_close(s);
        assert_int_equal(chown(p, 65534, 65534), 0);
        assert_int_equal(ferry_sem_open(&s, n, 0, 0, 0), FERRY_EOWNER);
        assert_int_equal(ferry_sem_open(&s, n, FERRY_CREATE | kinds[k], 0666, 1), FERRY_EOWNER);
        if (kinds[k]) {
            /* the object now says 65534, its set is root's: that does not match */
            assert_int_equal(ferry_sem_open_ex(&s, n, 0, 0, 0, 65534), FERRY_ECORRUPT);
        } else {
            assert_int_equal(ferry_sem_open_ex(&s, n, 0, 0, 0, 65534), 0);
            assert_int_equal(ferry_sem_value(s), 1);
            ferry_sem_close(s);
        }
        assert_int_equal(chown(p, 0, 0), 0);
        assert_int_equal(ferry_sem_unlink(n), 0);
    }
}

/* Creates a one-element private System V set as uid 65534; its id. */
static int foreign_semset(void)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    if (pid == 0) {
        if (setgid(65534) != 0 || setuid(65534) != 0)
            _exit(90);
        int id = semget(IPC_PRIVATE, 1, IPC_CREAT | 0600);
        CHILD_CHECK(id >= 0, 91);
        CHILD_CHECK(write(fds[1], &id, sizeof id) == (ssize_t)sizeof id, 92);
        _exit(0);
    }
    int id = -1;
    assert_int_equal(read(fds[0], &id, sizeof id), (ssize_t)sizeof id);
    assert_int_equal(t_wait(pid), 0);
    close(fds[0]);
    close(fds[1]);
    return id;
}

/* An undo semaphore's id scribbled to point at another user's set: open is
 * FERRY_ECORRUPT, and neither ferry_sem_unlink nor ferry_object_remove
 * removes that set. */
static void test_planted_semid_survives(void **state)
{
    (void)state;
    if (geteuid() != 0)
        skip();
    int victim = foreign_semset();
    for (int how = 0; how < 2; how++) {
        char n[64], p[300];
        ferry_sem *s;
        t_name(n, sizeof n, "planted");
        assert_int_equal(ferry_sem_open(&s, n, FERRY_CREATE | FERRY_SEM_UNDO, 0, 1), 0);
        ferry_sem_close(s);
        t_path(p, sizeof p, n);
        int fd = open(p, O_RDWR);
        int32_t own;
        assert_int_equal(pread(fd, &own, 4, 128 + 8), 4);
        assert_int_equal(pwrite(fd, &victim, 4, 128 + 8), 4);
        close(fd);
        assert_int_equal(ferry_sem_open(&s, n, 0, 0, 0), FERRY_ECORRUPT);
        assert_int_equal(how ? ferry_object_remove(n) : ferry_sem_unlink(n), 0);
        assert_false(t_exists(n));
        struct semid_ds ds;
        assert_int_equal(semctl(victim, 0, IPC_STAT, &ds), 0); /* still there */
        assert_int_equal(semctl(own, 0, IPC_RMID), 0);
    }
    assert_int_equal(semctl(victim, 0, IPC_RMID), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic_ops),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_count_exact_futex),
        cmocka_unit_test(test_count_exact_undo),
        cmocka_unit_test(test_killed_holder_undo),
        cmocka_unit_test(test_killed_holder_futex_loses_unit),
        cmocka_unit_test(test_cross_process_wake),
        cmocka_unit_test(test_unlink_wakes_waiters),
        cmocka_unit_test(test_scribbled_semid),
        cmocka_unit_test(test_foreign_owner_refused),
        cmocka_unit_test(test_planted_semid_survives),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
