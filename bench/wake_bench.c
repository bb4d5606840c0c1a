/*
 * wake_bench.c - what waking sleeping processes costs the waker: the
 * reason a publisher rings one bell for its sleeping subscribers instead
 * of waking each (docs/architecture.md, "Bells").
 *
 * One process on CPU 0 wakes N processes asleep in FUTEX_WAIT on CPU 1,
 * waits until every one has run, lets them fall asleep again, and repeats.
 * Timed is the waker's own CPU (its thread's clock) around the wake-ups
 * alone, three ways in one run: one sleeper; N sleepers each on its own
 * word, one FUTEX_WAKE each; N sleepers on one word, one FUTEX_WAKE for
 * all. Figures are medians of 5 repetitions.
 * Usage: ferry_wake_bench [sleepers (8)] [rounds (20000)]
 */
#include <linux/futex.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_SLEEPERS 64

/* Shared by the waker and its sleepers: one word a sleeper (each on a
 * cache line of its own), the word they share, and the count of wake-ups
 * the sleepers have seen. */
struct shared {
    struct {
        _Alignas(64) _Atomic uint32_t word;
    } own[MAX_SLEEPERS];
    _Alignas(64) _Atomic uint32_t common;
    _Alignas(64) _Atomic uint64_t seen;
    _Atomic int stop;
};

static void pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof set, &set);
}

static void futex_wait(_Atomic uint32_t *w, uint32_t v)
{
    syscall(SYS_futex, (uint32_t *)w, FUTEX_WAIT, v, NULL, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *w, int n)
{
    syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE, n, NULL, NULL, 0);
}

static double thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* seen: the word's value before the waker's first wake-up (read before
 * the fork: the child may start after it) */
static void sleeper(struct shared *sh, _Atomic uint32_t *w, uint32_t seen)
{
    pin(1);
    while (!atomic_load(&sh->stop)) {
        uint32_t v = atomic_load(w);
        if (v == seen) {
            futex_wait(w, v);
            continue;
        }
        seen = v;
        atomic_fetch_add(&sh->seen, 1);
    }
    _exit(0);
}

/* The waker's CPU per round, in ns: n sleepers, on one word (common) or
 * each on its own. */
static double run(struct shared *sh, int n, int common, long rounds)
{
    atomic_store(&sh->stop, 0);
    atomic_store(&sh->seen, 0);
    pid_t kids[MAX_SLEEPERS];
    for (int i = 0; i < n; i++) {
        _Atomic uint32_t *w = common ? &sh->common : &sh->own[i].word;
        uint32_t v = atomic_load(w);
        if ((kids[i] = fork()) == 0)
            sleeper(sh, w, v);
    }
    double cpu = 0;
    for (long r = 0; r < rounds; r++) {
        while (atomic_load(&sh->seen) < (uint64_t)n * (uint64_t)r)
            ;                             /* every sleeper has run since the last round */
        struct timespec nap = {0, 20000}; /* and is back asleep, most likely */
        nanosleep(&nap, NULL);
        double t0 = thread_cpu_ns();
        if (common) {
            atomic_fetch_add(&sh->common, 1);
            futex_wake(&sh->common, n);
        } else {
            for (int i = 0; i < n; i++) {
                atomic_fetch_add(&sh->own[i].word, 1);
                futex_wake(&sh->own[i].word, 1);
            }
        }
        cpu += thread_cpu_ns() - t0;
    }
    atomic_store(&sh->stop, 1);
    atomic_fetch_add(&sh->common, 1);
    futex_wake(&sh->common, n);
    for (int i = 0; i < n; i++) {
        atomic_fetch_add(&sh->own[i].word, 1);
        futex_wake(&sh->own[i].word, 1);
        waitpid(kids[i], NULL, 0);
    }
    return cpu / (double)rounds;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 8;
    long rounds = argc > 2 ? atol(argv[2]) : 20000;
    if (n < 1 || n > MAX_SLEEPERS || rounds < 1) {
        fprintf(stderr, "usage: ferry_wake_bench [sleepers 1..%d] [rounds]\n", MAX_SLEEPERS);
        return 2;
    }
    struct shared *sh =
        mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    pin(0);
    double one[5], each[5], all[5];
    for (int k = 0; k < 5; k++) { /* interleaved: the VM's state drifts */
        one[k] = run(sh, 1, 0, rounds);
        each[k] = run(sh, n, 0, rounds);
        all[k] = run(sh, n, 1, rounds);
    }
    qsort(one, 5, sizeof one[0], cmp);
    qsort(each, 5, sizeof each[0], cmp);
    qsort(all, 5, sizeof all[0], cmp);
    printf("waker CPU per round (median of 5, %ld rounds each):\n", rounds);
    printf("  1 sleeper, one FUTEX_WAKE          %8.0f ns\n", one[2]);
    printf("  %d sleepers, one FUTEX_WAKE each    %8.0f ns\n", n, each[2]);
    printf("  %d sleepers on one word, one wake   %8.0f ns\n", n, all[2]);
    return 0;
}
