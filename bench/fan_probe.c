/*
 * fan_probe.c - a tcp:// PUB's stream to SUB processes, through a proxy
 * onto shm:// or straight over tcp://, with what each subscriber's receive
 * costs: the layout of `ferry bench proxy`'s fan-out, cut down so that one
 * arm can be run alone under perf (docs/benchmarks.md, "Where issue 13
 * ends").
 *
 *   ./build/ferry_fan_probe proxy|direct [SUBSCRIBERS] [MESSAGES] [RING] [RATE]
 *
 * The publisher and, for "proxy", a process running ferry_proxy (XSUB on
 * tcp://, XPUB on shm://, rings populated) run on CPU 0; the subscribers
 * (default 8) all on CPU 1, sleeping when idle (FERRY_OPT_SPIN 0), with
 * shm:// rings of RING bytes (default 4 MiB). The publisher sends MESSAGES
 * (default 400,000) 64-byte messages as fast as it can, or at RATE
 * messages a second (64 at a time, sleeping in between, so that it leaves
 * its CPU to the proxy as a remote publisher would); past its tcp:// byte
 * limit it drops, as `ferry bench` does. Each subscriber reports its rate
 * (first message to its last clock read, one every 64 messages) and its
 * process's CPU per message received, from the first message on; the
 * publisher and the proxy, their processes' CPU from the first message
 * published to the last subscriber's end: the publisher's per message
 * published, the proxy's per message forwarded (a subscriber's mean
 * count: a message the publisher dropped never reached it).
 */
#include <errno.h>
#include <ferry.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct report {
    long got, timed;
    double secs, cpu_ns;
};

static void pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof set, &set); /* fails on a one-CPU machine: then anywhere */
}

static double clock_s(clockid_t c)
{
    struct timespec t;
    clock_gettime(c, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static ferry_socket *open_or_die(int type)
{
    ferry_socket *s;
    if (ferry_socket_open(&s, type) != 0) {
        fprintf(stderr, "ferry_fan_probe: %s\n", ferry_errdetail());
        _exit(1);
    }
    ferry_setopt_int(s, FERRY_OPT_SPIN, 0);
    ferry_setopt_int(s, FERRY_OPT_SNDHWM, 0);
    ferry_setopt_int(s, FERRY_OPT_RCVHWM, 0);
    return s;
}

static void subscriber(const char *url, long ring, int out)
{
    ferry_socket *s = open_or_die(FERRY_SUB);
    ferry_setopt(s, FERRY_OPT_SUBSCRIBE, "", 0);
    ferry_setopt_int(s, FERRY_OPT_RCVTIMEO, 300);
    ferry_setopt_int(s, FERRY_OPT_RING_SIZE, ring);
    for (int i = 0; ferry_dial(s, url) != 0; i++)
        if (i == 3000) /* 3 s: the listener never came */
            _exit(2);
        else
            usleep(1000);
    char buf[128];
    size_t n;
    struct report r = {0, 0, 0, 0};
    double first = 0, last = 0, cpu0 = 0;
    for (int idle = 0;;) {
        int rc = ferry_recv(s, buf, sizeof buf, &n, 0);
        if (rc == FERRY_ETIMEDOUT && (r.got > 0 || ++idle >= 100))
            break;
        if (rc != 0 && rc != FERRY_ETIMEDOUT && rc != FERRY_EINTR)
            _exit(4); /* broken: its report is missing, and main says so */
        if (rc != 0)
            continue;
        if (r.got++ == 0) {
            first = last = clock_s(CLOCK_MONOTONIC);
            cpu0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
        } else if (r.got % 64 == 0) {
            last = clock_s(CLOCK_MONOTONIC);
            r.timed = r.got - 1;
        }
    }
    r.secs = last - first;
    if (r.got > 1)
        r.cpu_ns = (clock_s(CLOCK_PROCESS_CPUTIME_ID) - cpu0) * 1e9 / (double)(r.got - 1);
    if (write(out, &r, sizeof r) != (ssize_t)sizeof r)
        _exit(3);
    ferry_close(s);
}

static void proxy(const char *in, const char *out, int nsubs, long ring)
{
    ferry_socket *front = open_or_die(FERRY_XSUB), *back = open_or_die(FERRY_XPUB);
    ferry_setopt_int(back, FERRY_OPT_RING_PREFAULT, 1);
    ferry_setopt_int(back, FERRY_OPT_RING_SIZE, ring); /* a ring is the smaller side's */
    if (ferry_dial(front, in) != 0 || ferry_listen(back, out) != 0 ||
        ferry_wait_peers(back, nsubs, 30000) != 0)
        _exit(2);
    ferry_proxy(front, back, NULL, NULL); /* until killed */
}

/* argv[i] as a whole decimal number in [lo, hi], or dflt when absent; -1
 * when it is not one. */
static long arg(int argc, char **argv, int i, long dflt, long lo, long hi)
{
    if (i >= argc)
        return dflt;
    char *end;
    errno = 0;
    long v = strtol(argv[i], &end, 10);
    return errno == 0 && end != argv[i] && *end == '\0' && v >= lo && v <= hi ? v : -1;
}

/* The CPU time of process pid so far (all its threads, those that ended
 * too), in ns; -1 when it cannot be read. */
static double process_cpu_ns(pid_t pid)
{
    clockid_t c;
    struct timespec t;
    if (clock_getcpuclockid(pid, &c) != 0 || clock_gettime(c, &t) != 0)
        return -1;
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

/* Sends msgs 64-byte messages, at rate a second (64 at a time, sleeping
 * until each group is due) or, rate 0, as fast as it can. */
static void publish(ferry_socket *pub, long msgs, long rate)
{
    char msg[64];
    memset(msg, 'm', sizeof msg);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long i = 0; i < msgs; i++) {
        if (rate > 0 && i % 64 == 0) {
            long long due = (long long)t0.tv_nsec + (long long)((double)i * 1e9 / (double)rate);
            struct timespec t = {t0.tv_sec + (time_t)(due / 1000000000), (long)(due % 1000000000)};
            while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL) == EINTR)
                ;
        }
        ferry_send(pub, msg, sizeof msg, 0);
    }
}

static pid_t kids[65];
static int nkids;

static int give_up(const char *why)
{
    fprintf(stderr, "ferry_fan_probe: %s\n", why);
    for (int i = 0; i < nkids; i++)
        kill(kids[i], SIGKILL);
    while (wait(NULL) > 0)
        ;
    return 1;
}

int main(int argc, char **argv)
{
    int direct = argc > 1 && strcmp(argv[1], "direct") == 0;
    long nsubs = arg(argc, argv, 2, 8, 1, 64);
    long msgs = arg(argc, argv, 3, 400000, 1000, 100000000);
    long ring = arg(argc, argv, 4, 4 << 20, 4096, 256 << 20);
    long rate = arg(argc, argv, 5, 0, 0, 100000000);
    if (argc < 2 || argc > 6 || (!direct && strcmp(argv[1], "proxy") != 0) || nsubs < 0 ||
        msgs < 0 || ring < 0 || rate < 0) {
        fprintf(stderr, "usage: ferry_fan_probe proxy|direct [SUBSCRIBERS 1-64] "
                        "[MESSAGES 1000-100000000] [RING 4096-268435456] "
                        "[RATE 0-100000000, 0: as fast as it can]\n");
        return 2;
    }
    char tcp[64], shm[64];
    snprintf(shm, sizeof shm, "shm://fan-probe-%d", (int)getpid());
    ferry_socket *pub = open_or_die(FERRY_PUB);
    if (ferry_listen(pub, "tcp://127.0.0.1:0") != 0 || ferry_socket_addr(pub, tcp, sizeof tcp))
        return 1;
    int res[2];
    if (pipe(res) != 0)
        return 1;
    fflush(stdout);
    for (int i = 0; i < nsubs; i++) {
        pid_t pid = fork();
        if (pid < 0)
            return give_up("fork failed");
        if (pid == 0) {
            close(res[0]);
            pin(1);
            subscriber(direct ? tcp : shm, ring, res[1]);
            _exit(0);
        }
        kids[nkids++] = pid;
    }
    close(res[1]);
    pid_t px = -1;
    if (!direct && (px = fork()) == 0) {
        close(res[0]);
        pin(0);
        proxy(tcp, shm, (int)nsubs, ring);
        _exit(0);
    }
    if (!direct && px < 0)
        return give_up("fork failed");
    if (px > 0)
        kids[nkids++] = px;
    pin(0);
    /* Every connection is up. A subscription may still be on its way, and
     * the first messages then go to fewer subscribers: each one's rate is
     * timed from its own first message, so that is counted only as drops. */
    if (ferry_wait_peers(pub, direct ? (int)nsubs : 1, 30000) != 0)
        return give_up("the subscribers never joined");
    double pub0 = process_cpu_ns(getpid()), px0 = px > 0 ? process_cpu_ns(px) : -1;
    publish(pub, msgs, rate);
    struct report r;
    double sum = 0, cpu = 0;
    long got = 0;
    int n = 0;
    while (read(res[0], &r, sizeof r) == (ssize_t)sizeof r) {
        double one = r.secs > 0 ? (double)r.timed / r.secs / 1e6 : 0;
        printf("subscriber %d: %ld messages, %.3f M msg/s, %.1f ns CPU a message\n", n, r.got, one,
               r.cpu_ns);
        sum += one;
        cpu += r.cpu_ns;
        got += r.got;
        n++;
    }
    /* every subscriber is done: neither has anything more to do */
    double pub1 = process_cpu_ns(getpid()), px1 = px > 0 ? process_cpu_ns(px) : -1;
    if (pub0 >= 0 && pub1 >= 0)
        printf("publisher: %.1f ns CPU a message published\n", (pub1 - pub0) / (double)msgs);
    if (px0 >= 0 && px1 >= 0 && got > 0) /* a subscriber's mean: the rest was dropped */
        printf("proxy: %.1f ns CPU a message forwarded\n", (px1 - px0) * n / (double)got);
    if (n > 0)
        printf("%s, %d subscribers: mean %.3f M msg/s, %.1f ns CPU a message, %.1f %% dropped\n",
               direct ? "direct" : "proxy", n, sum / n, cpu / n,
               100.0 * (1.0 - (double)got / ((double)msgs * nsubs)));
    ferry_close(pub);
    if (px > 0)
        kill(px, SIGKILL);
    while (wait(NULL) > 0)
        ;
    return n == nsubs ? 0 : 1;
}
