/* test_mutex.c - the robust process-shared mutex. */
#include "../common.h"

struct guarded {
    ferry_mutex lock;
    uint64_t a, b; /* invariant: a == b outside the lock */
    uint64_t counter;
};

static int init_guarded(void *addr, size_t size, void *arg)
{
    (void)size, (void)arg;
    struct guarded *g = addr;
    return ferry_mutex_init(&g->lock);
}

static struct guarded *make(ferry_shm **reg, char *n, size_t len)
{
    t_name(n, len, "mutex");
    ferry_shm_opts o = {.init = init_guarded};
    assert_int_equal(ferry_shm_open(reg, n, sizeof(struct guarded), FERRY_CREATE | FERRY_EXCL, &o),
                     0);
    return ferry_shm_addr(*reg);
}

static void test_uninitialised(void **state)
{
    (void)state;
    ferry_mutex m;
    memset(&m, 0, sizeof m);
    assert_int_equal(ferry_mutex_lock(&m), FERRY_EINVAL);
    assert_int_equal(ferry_mutex_unlock(&m), FERRY_EINVAL);
    assert_int_equal(ferry_mutex_lock(NULL), FERRY_EINVAL);
    assert_int_equal(ferry_mutex_init(&m), 0);
    assert_int_equal(ferry_mutex_lock(&m), 0);
    assert_int_equal(ferry_mutex_lock(&m), FERRY_EINVAL); /* not recursive */
    assert_int_equal(ferry_mutex_unlock(&m), 0);
#if !T_TSAN /* TSan reports the deliberate misuse itself */
    assert_int_equal(ferry_mutex_unlock(&m), FERRY_EPERM);
#endif
    assert_int_equal(ferry_mutex_destroy(&m), 0);
    assert_int_equal(ferry_mutex_lock(&m), FERRY_EINVAL);
}

static void test_contended_from_other_process(void **state)
{
    (void)state;
    char n[64];
    ferry_shm *reg;
    struct guarded *g = make(&reg, n, sizeof n);
    assert_int_equal(ferry_mutex_lock(&g->lock), 0);
    pid_t pid = fork();
    if (pid == 0) {
        if (ferry_mutex_trylock(&g->lock) != FERRY_EAGAIN)
            _exit(1);
        uint64_t t0 = t_now_ms();
        if (ferry_mutex_timedlock(&g->lock, 30) != FERRY_ETIMEDOUT || t_now_ms() - t0 < 29)
            _exit(2);
        if (ferry_mutex_unlock(&g->lock) != FERRY_EPERM)
            _exit(3);
        _exit(0);
    }
    assert_int_equal(t_wait(pid), 0);
    assert_int_equal(ferry_mutex_unlock(&g->lock), 0);
    ferry_shm_close(reg);
    ferry_shm_unlink(n);
}

static void test_count_exact(void **state)
{
    (void)state;
    enum { N = 4, ITER = 100000 };
    char n[64];
    ferry_shm *reg;
    struct guarded *g = make(&reg, n, sizeof n);
    pid_t pids[N];
    for (int i = 0; i < N; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            for (int j = 0; j < ITER; j++) {
                if (ferry_mutex_lock(&g->lock) != 0)
                    _exit(90);
                g->counter++;
                if (ferry_mutex_unlock(&g->lock) != 0)
                    _exit(91);
            }
            _exit(0);
        }
    }
    for (int i = 0; i < N; i++)
        assert_int_equal(t_wait(pids[i]), 0);
    assert_int_equal(g->counter, (uint64_t)N * ITER);
    ferry_shm_close(reg);
    ferry_shm_unlink(n);
}

/* The owner dies half-way through an update. */
static pid_t die_holding(struct guarded *g)
{
    struct t_pipe p;
    t_pipe_open(&p);
    pid_t pid = fork();
    if (pid == 0) {
        if (ferry_mutex_lock(&g->lock) != 0)
            _exit(90);
        g->a++; /* b is not updated yet */
        t_pipe_send(&p, 'h');
        for (;;)
            pause();
    }
    assert_int_equal(t_pipe_recv(&p), 'h');
    t_pipe_close(&p);
    return pid;
}

static void test_owner_died(void **state)
{
    (void)state;
    char n[64];
    ferry_shm *reg;
    struct guarded *g = make(&reg, n, sizeof n);
    pid_t holder = die_holding(g);

    /* a waiter already blocked when the owner dies is woken by the kernel */
    struct t_pipe p;
    t_pipe_open(&p);
    pid_t waiter = fork();
    if (waiter == 0) {
        t_pipe_send(&p, 'w');
        int rc = ferry_mutex_timedlock(&g->lock, 5000);
        if (rc != FERRY_EOWNERDEAD)
            _exit(1);
        if (g->a == g->b + 1) /* the repair */
            g->b = g->a;
        if (ferry_mutex_consistent(&g->lock) != 0 || ferry_mutex_unlock(&g->lock) != 0)
            _exit(2);
        _exit(0);
    }
    assert_int_equal(t_pipe_recv(&p), 'w');
    kill(holder, SIGKILL);
    assert_int_equal(t_wait(holder), 128 + SIGKILL);
    assert_int_equal(t_wait(waiter), 0);
    /* repaired and usable */
    assert_int_equal(ferry_mutex_lock(&g->lock), 0);
    assert_int_equal(g->a, 1);
    assert_int_equal(g->b, 1);
    assert_int_equal(ferry_mutex_unlock(&g->lock), 0);
    t_pipe_close(&p);
    ferry_shm_close(reg);
    ferry_shm_unlink(n);
}

static void test_owner_died_not_repaired(void **state)
{
    (void)state;
    char n[64];
    ferry_shm *reg;
    struct guarded *g = make(&reg, n, sizeof n);
    pid_t holder = die_holding(g);
    kill(holder, SIGKILL);
    assert_int_equal(t_wait(holder), 128 + SIGKILL);
    assert_int_equal(ferry_mutex_lock(&g->lock), FERRY_EOWNERDEAD);
    assert_int_equal(ferry_mutex_unlock(&g->lock), 0); /* without consistent() */
    assert_int_equal(ferry_mutex_lock(&g->lock), FERRY_ENOTRECOVERABLE);
    assert_int_equal(ferry_mutex_trylock(&g->lock), FERRY_ENOTRECOVERABLE);
    ferry_shm_close(reg);
    ferry_shm_unlink(n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uninitialised),
        cmocka_unit_test(test_contended_from_other_process),
        cmocka_unit_test(test_count_exact),
        cmocka_unit_test(test_owner_died),
        cmocka_unit_test(test_owner_died_not_repaired),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
