/* clock.c - the two clocks ferry uses: monotonic for timeouts, realtime for
 * creation stamps that people read. */
#include "../../core/fy.h"

#include <time.h>

static uint64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t fy_now_mono_ns(void) { return clock_ns(CLOCK_MONOTONIC); }

uint64_t fy_now_real_ns(void) { return clock_ns(CLOCK_REALTIME); }

uint64_t fy_deadline_ns(int timeout_ms)
{
    if (timeout_ms < 0)
        return UINT64_MAX;
    return fy_now_mono_ns() + (uint64_t)timeout_ms * 1000000u;
}
