/*
 * mutex.c - the robust process-shared mutex.
 *
 * A thin layer over a POSIX robust, process-shared pthread mutex: glibc
 * registers the lock on the thread's robust list, and when the owner dies
 * the kernel walks that list, sets the owner-died bit and wakes one waiter.
 * No ferry-side polling or pid tracking is needed and none is done.
 *
 * What ferry adds: a magic word so memory that was never initialised (or
 * was scribbled over) is refused with FERRY_EINVAL instead of being treated
 * as a mutex, monotonic timeouts in milliseconds, and ferry error codes.
 */
#include "../core/fy.h"

#include <pthread.h>
#include <string.h>
#include <time.h>

#define MUTEX_MAGIC 0x4d585946u /* "FYXM" */

struct mutex_impl {
    pthread_mutex_t m;
    uint32_t magic;
};

_Static_assert(sizeof(struct mutex_impl) <= sizeof(ferry_mutex), "fits the opaque type");
_Static_assert(_Alignof(struct mutex_impl) <= _Alignof(ferry_mutex), "alignment");

static struct mutex_impl *mutex_get(ferry_mutex *m)
{
    struct mutex_impl *mi = (struct mutex_impl *)(void *)m;
    if (m == NULL || mi->magic != MUTEX_MAGIC)
        return NULL;
    return mi;
}

int ferry_mutex_init(ferry_mutex *m)
{
    if (m == NULL)
        return FERRY_EINVAL;
    memset(m, 0, sizeof *m);
    struct mutex_impl *mi = (struct mutex_impl *)(void *)m;
    pthread_mutexattr_t a;
    int rc = pthread_mutexattr_init(&a);
    if (rc == 0)
        rc = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    if (rc == 0)
        rc = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    if (rc == 0)
        rc = pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK);
    if (rc == 0)
        rc = pthread_mutex_init(&mi->m, &a);
    pthread_mutexattr_destroy(&a);
    if (rc != 0)
        return fy_err(-rc, "mutex init");
    mi->magic = MUTEX_MAGIC;
    return 0;
}

static int mutex_result(int rc)
{
    switch (rc) {
    case 0:
        return 0;
    case EOWNERDEAD:
        return FERRY_EOWNERDEAD;
    case ENOTRECOVERABLE:
        return FERRY_ENOTRECOVERABLE;
    case EBUSY:
        return FERRY_EAGAIN;
    case EDEADLK:
        return fy_err(FERRY_EINVAL, "mutex lock: already held by this thread");
    default:
        return -rc;
    }
}

int ferry_mutex_lock(ferry_mutex *m)
{
    struct mutex_impl *mi = mutex_get(m);
    if (mi == NULL)
        return FERRY_EINVAL;
    return mutex_result(pthread_mutex_lock(&mi->m));
}

int ferry_mutex_trylock(ferry_mutex *m)
{
    struct mutex_impl *mi = mutex_get(m);
    if (mi == NULL)
        return FERRY_EINVAL;
    return mutex_result(pthread_mutex_trylock(&mi->m));
}

int ferry_mutex_timedlock(ferry_mutex *m, int timeout_ms)
{
    struct mutex_impl *mi = mutex_get(m);
    if (mi == NULL)
        return FERRY_EINVAL;
    if (timeout_ms < 0)
        return ferry_mutex_lock(m);
    if (timeout_ms == 0) {
        int rc = ferry_mutex_trylock(m);
        return rc == FERRY_EAGAIN ? FERRY_ETIMEDOUT : rc;
    }
    uint64_t d = fy_deadline_ns(timeout_ms);
    struct timespec ts = {.tv_sec = (time_t)(d / 1000000000u), .tv_nsec = (long)(d % 1000000000u)};
    return mutex_result(pthread_mutex_clocklock(&mi->m, CLOCK_MONOTONIC, &ts));
}

int ferry_mutex_consistent(ferry_mutex *m)
{
    struct mutex_impl *mi = mutex_get(m);
    if (mi == NULL)
        return FERRY_EINVAL;
    int rc = pthread_mutex_consistent(&mi->m);
    return rc == 0 ? 0 : -rc;
}

int ferry_mutex_unlock(ferry_mutex *m)
{
    struct mutex_impl *mi = mutex_get(m);
    if (mi == NULL)
        return FERRY_EINVAL;
    int rc = pthread_mutex_unlock(&mi->m);
    return rc == 0 ? 0 : -rc;
}

int ferry_mutex_destroy(ferry_mutex *m)
{
    struct mutex_impl *mi = mutex_get(m);
    if (mi == NULL)
        return FERRY_EINVAL;
    int rc = pthread_mutex_destroy(&mi->m);
    if (rc != 0)
        return -rc;
    mi->magic = 0;
    return 0;
}
