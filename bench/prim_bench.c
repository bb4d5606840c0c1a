/*
 * prim_bench.c - what the semaphore's undo option costs, measured against
 * the default kind in the same run: uncontended wait+post pairs in one
 * process, and a two-process ping-pong (each side posts the other's
 * semaphore and waits on its own), which includes the sleep and wake-up.
 * Figures are medians of 5 repetitions. Usage: ferry_prim_bench [iterations]
 */
#include <ferry.h>

#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median5(double v[5])
{
    qsort(v, 5, sizeof v[0], cmp);
    return v[2];
}

static double uncontended(int kind, long n)
{
    char name[64];
    ferry_sem *s;
    snprintf(name, sizeof name, "bench.sem.%d", (int)getpid());
    if (ferry_sem_open(&s, name, FERRY_CREATE | FERRY_EXCL | kind, 0, 1) != 0) {
        fprintf(stderr, "prim_bench: %s\n", ferry_errdetail());
        exit(1);
    }
    double t0 = now_ns();
    for (long i = 0; i < n; i++) {
        ferry_sem_wait(s);
        ferry_sem_post(s);
    }
    double dt = (now_ns() - t0) / (double)n;
    ferry_sem_close(s);
    ferry_sem_unlink(name);
    return dt;
}

static double pingpong(int kind, long n)
{
    char a[64], b[64];
    ferry_sem *sa, *sb;
    snprintf(a, sizeof a, "bench.ping.%d", (int)getpid());
    snprintf(b, sizeof b, "bench.pong.%d", (int)getpid());
    if (ferry_sem_open(&sa, a, FERRY_CREATE | FERRY_EXCL | kind, 0, 0) != 0 ||
        ferry_sem_open(&sb, b, FERRY_CREATE | FERRY_EXCL | kind, 0, 0) != 0) {
        fprintf(stderr, "prim_bench: %s\n", ferry_errdetail());
        exit(1);
    }
    pid_t pid = fork();
    if (pid == 0) {
        for (long i = 0; i < n; i++) {
            ferry_sem_wait(sa);
            ferry_sem_post(sb);
        }
        _exit(0);
    }
    double t0 = now_ns();
    for (long i = 0; i < n; i++) {
        ferry_sem_post(sa);
        ferry_sem_wait(sb);
    }
    double dt = (now_ns() - t0) / (double)n;
    waitpid(pid, NULL, 0);
    ferry_sem_close(sa);
    ferry_sem_close(sb);
    ferry_sem_unlink(a);
    ferry_sem_unlink(b);
    return dt;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 200000;
    double r[2][2];
    for (int k = 0; k < 2; k++) {
        int kind = k ? FERRY_SEM_UNDO : 0;
        double u[5], p[5];
        for (int i = 0; i < 5; i++) {
            u[i] = uncontended(kind, n);
            p[i] = pingpong(kind, n / 10);
        }
        r[k][0] = median5(u);
        r[k][1] = median5(p);
    }
    printf("%-36s %12s %12s %8s\n", "semaphore, median of 5", "default", "undo", "ratio");
    printf("%-36s %10.1f ns %10.1f ns %7.1fx\n", "uncontended wait+post (1 process)", r[0][0],
           r[1][0], r[1][0] / r[0][0]);
    printf("%-36s %10.1f ns %10.1f ns %7.1fx\n", "ping-pong round trip (2 processes)", r[0][1],
           r[1][1], r[1][1] / r[0][1]);
    return 0;
}
