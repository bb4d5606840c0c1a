/*
 * chain_probe.c - PUSH -> proxy -> PULL over tcp://, the layout of `ferry
 * bench proxy`'s tcp:// chain, with the proxy done two ways and its
 * threads' CPU reported (docs/benchmarks.md, "A one-way proxy reads its
 * source itself").
 *
 *   ./build/ferry_chain_probe proxy|loop [MESSAGES]
 *
 * The pusher runs on CPU 0, the puller on CPU 1, the proxy (a process of
 * its own) on either. "proxy" forwards with ferry_proxy; "loop" with a
 * plain loop of blocking ferry_msg_recv and ferry_msg_send. MESSAGES
 * (default 1,000,000) of 64 bytes; queues of 1,000 messages, as the bench.
 * Prints the rate, and the CPU time of each of the proxy's threads (its
 * caller's and its I/O thread) just before the proxy is stopped.
 */
#include <dirent.h>
#include <errno.h>
#include <ferry.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof set, &set); /* fails on a one-CPU machine: then anywhere */
}

static ferry_socket *open_or_die(int type)
{
    ferry_socket *s;
    if (ferry_socket_open(&s, type) != 0) {
        fprintf(stderr, "ferry_chain_probe: %s\n", ferry_errdetail());
        _exit(1);
    }
    ferry_setopt_int(s, FERRY_OPT_SPIN, 0);
    ferry_setopt_int(s, FERRY_OPT_SNDHWM, 1000);
    ferry_setopt_int(s, FERRY_OPT_RCVHWM, 1000);
    ferry_setopt_int(s, FERRY_OPT_RCVTIMEO, 30000);
    ferry_setopt_int(s, FERRY_OPT_SNDTIMEO, 30000);
    return s;
}

/* Each thread of pid: its name and its user+system CPU in ms. */
static void print_threads(pid_t pid)
{
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%d/task", (int)pid);
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    long tick = sysconf(_SC_CLK_TCK);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[384], buf[1024];
        snprintf(path, sizeof path, "%s/%s/stat", dir, e->d_name);
        FILE *f = fopen(path, "r");
        if (f == NULL)
            continue;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        /* pid (comm) state ... utime is field 14, stime 15 */
        char *open = strchr(buf, '('), *close = strrchr(buf, ')');
        unsigned long ut = 0, st = 0;
        if (open == NULL || close == NULL ||
            sscanf(close + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
            continue;
        printf("  proxy thread %.*s: %lu ms CPU\n", (int)(close - open - 1), open + 1,
               (ut + st) * 1000ul / (unsigned long)tick);
    }
    closedir(d);
}

int main(int argc, char **argv)
{
    int loop = argc > 1 && strcmp(argv[1], "loop") == 0;
    long n = 1000000;
    if (argc > 2) {
        char *end;
        errno = 0;
        n = strtol(argv[2], &end, 10);
        if (errno != 0 || end == argv[2] || *end != '\0')
            n = -1;
    }
    if (argc < 2 || argc > 3 || (!loop && strcmp(argv[1], "proxy") != 0) || n < 1000 ||
        n > 100000000) {
        fprintf(stderr, "usage: ferry_chain_probe proxy|loop [MESSAGES 1000-100000000]\n");
        return 2;
    }
    int done[2], ready[2];
    if (pipe(done) != 0 || pipe(ready) != 0)
        return 1;
    char out[64], in[64];
    fflush(stdout);
    pid_t puller = fork(); /* a socket lives in the process that opened it */
    if (puller < 0)
        return 1;
    if (puller == 0) { /* the pulling end, on CPU 1 */
        pin(1);
        ferry_socket *pull = open_or_die(FERRY_PULL);
        if (ferry_listen(pull, "tcp://127.0.0.1:0") != 0 ||
            ferry_socket_addr(pull, out, sizeof out) != 0 ||
            write(ready[1], out, sizeof out) != (ssize_t)sizeof out)
            _exit(2);
        char buf[256];
        size_t len;
        for (long i = 0; i < n; i++)
            if (ferry_recv(pull, buf, sizeof buf, &len, 0) != 0)
                _exit(3);
        _exit(write(done[1], "x", 1) == 1 ? 0 : 4);
    }
    if (read(ready[0], out, sizeof out) != (ssize_t)sizeof out) {
        kill(puller, SIGKILL);
        return 1;
    }
    pid_t px = fork();
    if (px < 0) {
        kill(puller, SIGKILL);
        return 1;
    }
    if (px == 0) {
        ferry_socket *front = open_or_die(FERRY_PULL), *back = open_or_die(FERRY_PUSH);
        if (ferry_listen(front, "tcp://127.0.0.1:0") != 0 ||
            ferry_socket_addr(front, in, sizeof in) != 0 || ferry_dial(back, out) != 0 ||
            write(ready[1], in, sizeof in) != (ssize_t)sizeof in)
            _exit(2);
        if (!loop)
            ferry_proxy(front, back, NULL, NULL); /* until killed */
        for (;;) {
            ferry_msg *m;
            if (ferry_msg_recv(front, &m, 0) == 0 && ferry_msg_send(back, m, 0) != 0)
                ferry_msg_free(m);
        }
    }
    pin(0);
    int ok = read(ready[0], in, sizeof in) == (ssize_t)sizeof in;
    ferry_socket *push = open_or_die(FERRY_PUSH);
    ok = ok && ferry_dial(push, in) == 0;
    char msg[64], c;
    memset(msg, 7, sizeof msg);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long i = 0; ok && i < n; i++)
        ok = ferry_send(push, msg, sizeof msg, 0) == 0;
    ok = ok && read(done[0], &c, 1) == 1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    if (ok)
        printf("%s: %ld messages, %.3f M msg/s\n", loop ? "loop" : "ferry_proxy", n,
               (double)n / secs / 1e6);
    else
        fprintf(stderr, "ferry_chain_probe: the chain broke\n");
    print_threads(px);
    kill(px, SIGKILL);
    kill(puller, SIGKILL);
    ferry_close(push);
    while (wait(NULL) > 0)
        ;
    return ok ? 0 : 1;
}
