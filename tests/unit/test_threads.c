/* test_threads.c - the primitives between threads of one process, so that
 * TSan (make test-tsan) can check their memory ordering: a lost
 * happens-before edge in the futex semaphore would show as a data race on
 * the plain counter. */
#include "../common.h"

#include <pthread.h>

enum { THREADS = 4, ITER = 100000 };

struct ctx {
    ferry_sem *sem;
    ferry_mutex *mutex;
    uint64_t counter; /* plain, guarded by sem or mutex */
};

static void *sem_thread(void *arg)
{
    struct ctx *c = arg;
    for (int i = 0; i < ITER; i++) {
        if (ferry_sem_wait(c->sem) != 0)
            return (void *)1;
        c->counter++;
        ferry_sem_post(c->sem);
    }
    return NULL;
}

static void *mutex_thread(void *arg)
{
    struct ctx *c = arg;
    for (int i = 0; i < ITER; i++) {
        if (ferry_mutex_lock(c->mutex) != 0)
            return (void *)1;
        c->counter++;
        ferry_mutex_unlock(c->mutex);
    }
    return NULL;
}

static void run(void *(*fn)(void *), struct ctx *c)
{
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, fn, c), 0);
    for (int i = 0; i < THREADS; i++) {
        void *r;
        pthread_join(t[i], &r);
        assert_null(r);
    }
    assert_int_equal(c->counter, (uint64_t)THREADS * ITER);
}

static void test_sem_threads(void **state)
{
    (void)state;
    char n[64];
    struct ctx c = {0};
    t_name(n, sizeof n, "thr");
    assert_int_equal(ferry_sem_open(&c.sem, n, FERRY_CREATE | FERRY_EXCL, 0, 1), 0);
    run(sem_thread, &c);
    ferry_sem_close(c.sem);
    ferry_sem_unlink(n);
}

static void test_mutex_threads(void **state)
{
    (void)state;
    ferry_mutex m;
    struct ctx c = {.mutex = &m};
    assert_int_equal(ferry_mutex_init(&m), 0);
    run(mutex_thread, &c);
    assert_int_equal(ferry_mutex_destroy(&m), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sem_threads),
        cmocka_unit_test(test_mutex_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
