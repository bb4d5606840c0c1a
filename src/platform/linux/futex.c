/*
 * futex.c - the two futex operations ferry needs.
 *
 * The futexes are shared (no FUTEX_PRIVATE_FLAG) because the words live in
 * memory mapped by several processes. Waits use FUTEX_WAIT_BITSET with
 * FUTEX_BITSET_MATCH_ANY because, unlike FUTEX_WAIT, it takes an absolute
 * CLOCK_MONOTONIC deadline: a wait restarted after a spurious wake-up does
 * not stretch the caller's timeout.
 */
#include "../../core/fy.h"

#include <errno.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int fy_futex_wait(_Atomic uint32_t *word, uint32_t expected, uint64_t deadline_ns)
{
    struct timespec ts, *tsp = NULL;
    if (deadline_ns != UINT64_MAX) {
        if (fy_now_mono_ns() >= deadline_ns)
            return FERRY_ETIMEDOUT;
        ts.tv_sec = (time_t)(deadline_ns / 1000000000u);
        ts.tv_nsec = (long)(deadline_ns % 1000000000u);
        tsp = &ts;
    }
    long rc = syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_BITSET, expected, tsp, NULL,
                      FUTEX_BITSET_MATCH_ANY);
    if (rc == 0)
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

void fy_futex_wake(_Atomic uint32_t *word, int n)
{
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE, n, NULL, NULL, 0);
}
