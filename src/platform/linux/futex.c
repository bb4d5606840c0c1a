/*
 * futex.c - the two futex operations ferry needs.
 *
 * The futexes are shared (no FUTEX_PRIVATE_FLAG) because the words live in
 * memory mapped by several processes. Waits use FUTEX_WAIT_BITSET with
 * FUTEX_BITSET_MATCH_ANY because, unlike FUTEX_WAIT, it takes an absolute
 * CLOCK_MONOTONIC deadline: a wait restarted after a spurious wake-up does
 * not stretch the caller's timeout. A wait on several words at once
 * (a subscriber on its own word and on its publishers' bells) uses
 * futex_waitv (Linux 5.16), whose deadline is absolute too.
 */
#include "../../core/fy.h"

#include <errno.h>
#include <stdatomic.h>
#include <linux/futex.h>
#include <linux/time_types.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* The deadline as the kernel takes it; 1 if it passed already. */
static int deadline_ts(uint64_t deadline_ns, struct timespec *ts, struct timespec **tsp)
{
    *tsp = NULL;
    if (deadline_ns == UINT64_MAX)
        return 0;
    if (fy_now_mono_ns() >= deadline_ns)
        return 1;
    ts->tv_sec = (time_t)(deadline_ns / 1000000000u);
    ts->tv_nsec = (long)(deadline_ns % 1000000000u);
    *tsp = ts;
    return 0;
}

static int wait_result(long rc)
{
    if (rc >= 0)
        return 0;
    switch (errno) {
    case EAGAIN: /* *word != expected: the caller re-checks */
        return 0;
    case ETIMEDOUT:
        return FERRY_ETIMEDOUT;
    case EINTR:
        return FERRY_EINTR;
    default:
        return -errno;
    }
}

int fy_futex_wait(_Atomic uint32_t *word, uint32_t expected, uint64_t deadline_ns)
{
    struct timespec ts, *tsp;
    if (deadline_ts(deadline_ns, &ts, &tsp))
        return FERRY_ETIMEDOUT;
    return wait_result(syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_BITSET, expected, tsp, NULL,
                               FUTEX_BITSET_MATCH_ANY));
}

int fy_futex_waitv(const struct fy_futex_word *w, int n, uint64_t deadline_ns, int *woke)
{
    struct futex_waitv v[FY_FUTEX_WAITV_MAX];
    *woke = -1;
    if (n < 1 || n > FY_FUTEX_WAITV_MAX)
        return FERRY_EINVAL;
    for (int i = 0; i < n; i++)
        v[i] = (struct futex_waitv){
            .val = w[i].expected, .uaddr = (uint64_t)(uintptr_t)w[i].word, .flags = FUTEX_32};
    struct timespec ts, *tsp;
    if (deadline_ts(deadline_ns, &ts, &tsp))
        return FERRY_ETIMEDOUT;
    /* the kernel's timespec: 64-bit fields whatever the C library's */
    struct __kernel_timespec kts, *ktsp = NULL;
    if (tsp != NULL) {
        kts = (struct __kernel_timespec){.tv_sec = ts.tv_sec, .tv_nsec = ts.tv_nsec};
        ktsp = &kts;
    }
    long rc = syscall(SYS_futex_waitv, v, (unsigned)n, 0u, ktsp, CLOCK_MONOTONIC);
    if (rc >= 0)
        *woke = (int)rc; /* the index of the word a FUTEX_WAKE woke */
    return wait_result(rc);
}

int fy_futex_waitv_works(void)
{
    /* 0: not probed; 1: works; 2: the kernel lacks it */
    static _Atomic int known;
    int k = atomic_load_explicit(&known, memory_order_relaxed);
    if (k == 0) {
        /* A real wait that must return at once: the word differs from
         * what it expects (EAGAIN). Anything else (ENOSYS on an old
         * kernel, EPERM from a seccomp filter) and no sleep uses it. */
        static _Atomic uint32_t probe = 1;
        struct futex_waitv v = {.val = 0, .uaddr = (uint64_t)(uintptr_t)&probe, .flags = FUTEX_32};
        long rc = syscall(SYS_futex_waitv, &v, 1u, 0u, NULL, CLOCK_MONOTONIC);
        k = rc < 0 && errno == EAGAIN ? 1 : 2;
        atomic_store_explicit(&known, k, memory_order_relaxed);
    }
    return k == 1;
}

void fy_futex_wake(_Atomic uint32_t *word, int n)
{
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE, n, NULL, NULL, 0);
}
