/*
 * fy.h - internal helpers shared by every part of the library.
 *
 * Three naming levels: ferry_* is public (include/ferry.h) and the only thing
 * exported; fy_* is shared inside the library (declared here and in the
 * other src/ headers); file-static functions are named after their module.
 */
#ifndef FY_H
#define FY_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "ferry.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#define FY_CACHELINE 64
#define FY_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define FY_UNUSED(x) ((void)(x))

/* A hint to the CPU inside a busy-wait loop. */
static inline void fy_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

/* --- errors (src/core/error.c) ------------------------------------------ */

/* Records "what: description of err" as the thread's error detail and
 * returns err, so a failure path reads `return fy_err(rc, "open %s", p);`. */
int fy_err(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Same, from a failed system call: returns -errno. */
int fy_syserr(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Copies the NUL-terminated src into dst (cap bytes, always terminated),
 * writing every byte outside printable ASCII as \xNN and a backslash as two:
 * text that quotes a peer's bytes cannot then move the cursor, colour a
 * terminal, start a fake log line or fake an escape. Truncates at a whole
 * escape. */
void fy_escape(char *dst, size_t cap, const char *src);

/* Clears the thread's error detail (called on entry by public functions
 * that may fail, so ferry_errdetail() never describes an older call). */
void fy_err_clear(void);

/* --- time (src/platform/linux/clock.c) ----------------------------------- */

uint64_t fy_now_mono_ns(void);
uint64_t fy_now_real_ns(void);

/* Absolute CLOCK_MONOTONIC deadline for a timeout in ms (-1: UINT64_MAX). */
uint64_t fy_deadline_ns(int timeout_ms);

/* --- processes (src/platform/linux/proc.c) -------------------------------- */

/* The start time of pid in clock ticks since boot (/proc/PID/stat field
 * 22), or 0 when the process does not exist or is a zombie. */
uint64_t fy_proc_starttime(pid_t pid);

/* 1 if the process pid started at starttime still runs, else 0. A recycled
 * pid has another start time, so it does not count as alive. */
int fy_proc_alive(pid_t pid, uint64_t starttime);

/* --- futex (src/platform/linux/futex.c) ---------------------------------- */

/* Sleeps while *word == expected, until woken or the absolute monotonic
 * deadline passes (UINT64_MAX: no deadline). Returns 0 when woken or when
 * *word differed, FERRY_ETIMEDOUT, or FERRY_EINTR. Shared (not private)
 * futexes: the word may live in memory mapped by several processes. */
int fy_futex_wait(_Atomic uint32_t *word, uint32_t expected, uint64_t deadline_ns);

/* One word of a wait on several (fy_futex_waitv). */
struct fy_futex_word {
    const _Atomic uint32_t *word;
    uint32_t expected;
};
#define FY_FUTEX_WAITV_MAX 128 /* the kernel's limit */

/* Sleeps while every w[i].word == w[i].expected (1 <= n <=
 * FY_FUTEX_WAITV_MAX), until one is woken, differs, or the deadline
 * passes; returns as fy_futex_wait, and *woke is the index of the word a
 * FUTEX_WAKE woke (-1: none did). The words may be in read-only
 * mappings. Needs Linux 5.16: check fy_futex_waitv_works() first. */
int fy_futex_waitv(const struct fy_futex_word *w, int n, uint64_t deadline_ns, int *woke);
int fy_futex_waitv_works(void);

/* Wakes up to n waiters on word. */
void fy_futex_wake(_Atomic uint32_t *word, int n);

#endif /* FY_H */
