/*
 * recv_wait_bench.c - what the way a receiver waits costs a round trip:
 * the reason ferry's ipc:// and tcp:// REQ/REP round trips sit above the
 * raw socket's (docs/benchmarks.md, "Where issue 15 ends").
 *
 * A ping-pong of 64-byte messages between two processes pinned to CPUs 0
 * and 1, over a Unix stream socket pair or TCP loopback (TCP_NODELAY).
 * Both sides wait for the peer's message one of five ways:
 *   read    a blocking read(2): the raw ping-pong, the baseline;
 *   ppoll   ppoll(2) on the socket and an eventfd, then a recv(2): what
 *           a parked ferry_recv does (src/core/park.c), since another
 *           thread must be able to end its wait without a signal;
 *   epoll   epoll_wait(2) on a set holding both, made once, then recv(2);
 *   peek    a blocking recv(2) of one byte with MSG_PEEK, then recv(2):
 *           the socket's own wait, as read's, leaving the bytes in place;
 *   uring   one io_uring_enter(2) that submits a recv and waits for it.
 * The ways are interleaved round by round (read, ppoll, epoll, peek, uring,
 * read, ...), each round a fresh pair of processes; every way's p50 is divided
 * by the read round's beside it, and the medians of those ratios are
 * printed with the p50s, and how often the timing side fell asleep per
 * round trip (its voluntary context switches): a wait in the socket's
 * own queue is also woken when the peer reads what we sent (room to
 * write), a poll for input is not.
 *
 * With "stream" the same five ways wait in a receiver that one writer
 * streams 64 KiB messages to (blocking writes): a receiver that finds
 * nothing waits, then reads; the figure is GB/s over the second half of
 * 2n messages (the first warms the connection), the ratio against the
 * blocking read's round beside it.
 * Usage: ferry_recv_wait_bench [unix|tcp] [n (10000)] [rounds (5)] [stream]
 */
#include <arpa/inet.h>
#include <linux/io_uring.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { WAY_READ, WAY_PPOLL, WAY_EPOLL, WAY_PEEK, WAY_URING, NWAYS };
static const char *const way_name[NWAYS] = {"read", "ppoll+recv", "epoll_wait+recv", "peek+recv",
                                            "io_uring recv"};

#define MSG 64
#define MAX_ROUNDS 15

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof set, &set);
}

static void die(const char *what)
{
    perror(what);
    exit(1);
}

/* --- io_uring without a library: one recv at a time ---------------------- */

struct uring {
    int fd;
    _Atomic unsigned *sq_tail, *cq_head, *cq_tail;
    unsigned *sq_mask, *sq_array, *cq_mask;
    struct io_uring_sqe *sqes;
    struct io_uring_cqe *cqes;
};

static void uring_init(struct uring *u)
{
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    u->fd = (int)syscall(SYS_io_uring_setup, 4, &p);
    if (u->fd < 0)
        die("io_uring_setup");
    size_t sq_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    size_t cq_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    int single = (p.features & IORING_FEAT_SINGLE_MMAP) != 0;
    if (single && cq_len > sq_len)
        sq_len = cq_len;
    char *sq = mmap(NULL, sq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, u->fd,
                    IORING_OFF_SQ_RING);
    char *cq = single ? sq
                      : mmap(NULL, cq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, u->fd,
                             IORING_OFF_CQ_RING);
    u->sqes = mmap(NULL, p.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_POPULATE, u->fd, IORING_OFF_SQES);
    if (sq == MAP_FAILED || cq == MAP_FAILED || u->sqes == MAP_FAILED)
        die("io_uring mmap");
    u->sq_tail = (_Atomic unsigned *)(void *)(sq + p.sq_off.tail);
    u->sq_mask = (unsigned *)(void *)(sq + p.sq_off.ring_mask);
    u->sq_array = (unsigned *)(void *)(sq + p.sq_off.array);
    u->cq_head = (_Atomic unsigned *)(void *)(cq + p.cq_off.head);
    u->cq_tail = (_Atomic unsigned *)(void *)(cq + p.cq_off.tail);
    u->cq_mask = (unsigned *)(void *)(cq + p.cq_off.ring_mask);
    u->cqes = (struct io_uring_cqe *)(void *)(cq + p.cq_off.cqes);
}

/* Submits one recv and waits for its completion in the same system call. */
static ssize_t uring_recv(struct uring *u, int fd, void *buf, size_t len)
{
    unsigned tail = atomic_load_explicit(u->sq_tail, memory_order_relaxed);
    unsigned idx = tail & *u->sq_mask;
    struct io_uring_sqe *sqe = &u->sqes[idx];
    memset(sqe, 0, sizeof *sqe);
    sqe->opcode = IORING_OP_RECV;
    sqe->fd = fd;
    sqe->addr = (uint64_t)(uintptr_t)buf;
    sqe->len = (uint32_t)len;
    u->sq_array[idx] = idx;
    atomic_store_explicit(u->sq_tail, tail + 1, memory_order_release);
    if (syscall(SYS_io_uring_enter, u->fd, 1, 1, IORING_ENTER_GETEVENTS, NULL, 0) < 0)
        die("io_uring_enter");
    unsigned head = atomic_load_explicit(u->cq_head, memory_order_relaxed);
    if (head == atomic_load_explicit(u->cq_tail, memory_order_acquire))
        die("io_uring: no completion");
    ssize_t res = u->cqes[head & *u->cq_mask].res;
    atomic_store_explicit(u->cq_head, head + 1, memory_order_release);
    return res;
}

/* --- one side of the ping-pong -------------------------------------------- */

struct side {
    int way, fd, kick, ep;
    struct uring u;
};

static void side_init(struct side *s, int way, int fd)
{
    s->way = way;
    s->fd = fd;
    s->kick = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC); /* never written: as ferry's, idle */
    if (way == WAY_EPOLL) {
        s->ep = epoll_create1(EPOLL_CLOEXEC);
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
        epoll_ctl(s->ep, EPOLL_CTL_ADD, fd, &ev);
        ev.data.fd = s->kick;
        epoll_ctl(s->ep, EPOLL_CTL_ADD, s->kick, &ev);
    }
    if (way == WAY_URING)
        uring_init(&s->u);
}

static ssize_t wait_once(struct side *s, unsigned char *buf, size_t len)
{
    switch (s->way) {
    case WAY_READ:
        return read(s->fd, buf, len);
    case WAY_PPOLL: {
        struct pollfd fds[2] = {{.fd = s->fd, .events = POLLIN}, {.fd = s->kick, .events = POLLIN}};
        if (ppoll(fds, 2, NULL, NULL) < 0)
            return -1;
        return recv(s->fd, buf, len, MSG_DONTWAIT);
    }
    case WAY_EPOLL: {
        struct epoll_event ev[2];
        if (epoll_wait(s->ep, ev, 2, -1) < 0)
            return -1;
        return recv(s->fd, buf, len, MSG_DONTWAIT);
    }
    case WAY_PEEK: {
        unsigned char c;
        if (recv(s->fd, &c, 1, MSG_PEEK) < 0)
            return -1;
        return recv(s->fd, buf, len, MSG_DONTWAIT);
    }
    default:
        return uring_recv(&s->u, s->fd, buf, len);
    }
}

static void take(struct side *s, unsigned char *buf)
{
    for (size_t got = 0; got < MSG;) {
        ssize_t n = wait_once(s, buf + got, MSG - got);
        if (n == 0)
            exit(0); /* the peer is done */
        if (n > 0)
            got += (size_t)n;
    }
}

static void give(int fd, const unsigned char *buf)
{
    if (write(fd, buf, MSG) != MSG)
        die("write");
}

/* --- a round -------------------------------------------------------------- */

static void make_pair(int tcp, int sv[2])
{
    if (!tcp) {
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
            die("socketpair");
        return;
    }
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) != 0 || listen(l, 1) != 0 ||
        getsockname(l, (struct sockaddr *)&a, &alen) != 0)
        die("listen");
    sv[0] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (sv[0] < 0 || connect(sv[0], (struct sockaddr *)&a, sizeof a) != 0)
        die("connect");
    sv[1] = accept(l, NULL, NULL);
    if (sv[1] < 0)
        die("accept");
    close(l);
    int one = 1;
    setsockopt(sv[0], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(sv[1], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static long sleeps(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_nvcsw;
}

static double g_sleeps; /* the last round's, per round trip or per message */

/* One round of n round trips waited for `way`: the p50 in ns. */
static double round_p50(int tcp, int way, long n)
{
    int sv[2];
    make_pair(tcp, sv);
    unsigned char buf[MSG];
    memset(buf, 7, sizeof buf);
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0) { /* the echo */
        close(sv[0]);
        pin(1);
        struct side s;
        side_init(&s, way, sv[1]);
        for (;;) {
            take(&s, buf);
            give(sv[1], buf);
        }
    }
    close(sv[1]);
    pin(0);
    struct side s;
    side_init(&s, way, sv[0]);
    uint64_t *lat = malloc((size_t)n * sizeof *lat);
    if (lat == NULL)
        die("malloc");
    long z0 = sleeps();
    for (long i = 0; i < n; i++) {
        uint64_t t0 = now_ns();
        give(sv[0], buf);
        take(&s, buf);
        lat[i] = now_ns() - t0;
    }
    g_sleeps = (double)(sleeps() - z0) / (double)n;
    close(sv[0]); /* the echo reads its end of file and exits */
    waitpid(pid, NULL, 0);
    if (s.way == WAY_EPOLL)
        close(s.ep);
    if (s.way == WAY_URING)
        close(s.u.fd);
    close(s.kick);
    qsort(lat, (size_t)n, sizeof *lat, cmp_u64);
    double p50 = (double)lat[n / 2];
    free(lat);
    return p50;
}

#define BIG (64u << 10)

/* One round of a stream of 2n messages of BIG bytes: GB/s over the second n. */
static double stream_round(int tcp, int way, long n)
{
    int sv[2];
    make_pair(tcp, sv);
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    unsigned char *buf = malloc(BIG);
    if (buf == NULL)
        die("malloc");
    memset(buf, 7, BIG);
    if (pid == 0) { /* the writer */
        close(sv[0]);
        pin(1);
        for (long i = 0; i < 2 * n; i++)
            for (size_t off = 0; off < BIG;) {
                ssize_t k = write(sv[1], buf + off, BIG - off);
                if (k <= 0)
                    die("write");
                off += (size_t)k;
            }
        exit(0);
    }
    close(sv[1]);
    pin(0);
    struct side s;
    side_init(&s, way, sv[0]);
    uint64_t half = (uint64_t)n * BIG, all = 2 * half, got = 0, t0 = 0;
    long z0 = 0;
    while (got < all) {
        /* data first, as a receiver that only waits when nothing is there */
        ssize_t k = way == WAY_READ ? read(sv[0], buf, BIG) : recv(sv[0], buf, BIG, MSG_DONTWAIT);
        if (k < 0 && way != WAY_READ)
            k = wait_once(&s, buf, BIG);
        if (k == 0)
            die("stream: early end of file");
        if (k < 0)
            continue; /* woken, nothing yet (or EINTR) */
        if (got < half && got + (uint64_t)k >= half) {
            t0 = now_ns();
            z0 = sleeps();
        }
        got += (uint64_t)k;
    }
    double secs = (double)(now_ns() - t0) / 1e9;
    g_sleeps = (double)(sleeps() - z0) / (double)n;
    waitpid(pid, NULL, 0);
    close(sv[0]);
    if (s.way == WAY_EPOLL)
        close(s.ep);
    if (s.way == WAY_URING)
        close(s.u.fd);
    close(s.kick);
    free(buf);
    return (double)half / secs / 1e9;
}

/* io_uring may be off (kernel.io_uring_disabled, a seccomp filter): its
 * row is then left out. */
static int uring_works(void)
{
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    int fd = (int)syscall(SYS_io_uring_setup, 4, &p);
    if (fd < 0)
        return 0;
    close(fd);
    return 1;
}

int main(int argc, char **argv)
{
    int tcp = argc > 1 && strcmp(argv[1], "tcp") == 0;
    int bad = argc > 1 && !tcp && strcmp(argv[1], "unix") != 0;
    long n = argc > 2 ? atol(argv[2]) : 10000;
    int rounds = argc > 3 ? atoi(argv[3]) : 5;
    int stream = argc > 4 && strcmp(argv[4], "stream") == 0;
    bad |= argc > 4 && !stream;
    if (bad || n < 100 || n > 10000000 || rounds < 1 || rounds > MAX_ROUNDS) {
        fprintf(stderr,
                "usage: ferry_recv_wait_bench [unix|tcp] [n 100-10000000] [rounds 1-%d] [stream]\n",
                MAX_ROUNDS);
        return 2;
    }
    int nways = uring_works() ? NWAYS : WAY_URING;
    double fig[NWAYS][MAX_ROUNDS], ratio[NWAYS][MAX_ROUNDS], slept[NWAYS][MAX_ROUNDS];
    for (int r = 0; r < rounds; r++)
        for (int w = 0; w < nways; w++) {
            fig[w][r] = stream ? stream_round(tcp, w, n) : round_p50(tcp, w, n);
            ratio[w][r] = fig[w][r] / fig[WAY_READ][r];
            slept[w][r] = g_sleeps;
        }
    if (stream)
        printf("%s stream, 64 KiB messages, %ld timed a round, median of %d rounds\n",
               tcp ? "TCP loopback" : "Unix socket", n, rounds);
    else
        printf("%s ping-pong, 64 B, %ld round trips a round, median of %d rounds\n",
               tcp ? "TCP loopback" : "Unix socket", n, rounds);
    printf("%-18s %10s %10s %10s\n", "receiver waits in", stream ? "GB/s" : "p50 (us)", "vs read",
           stream ? "sleeps/msg" : "sleeps/rt");
    for (int w = 0; w < nways; w++) {
        qsort(fig[w], (size_t)rounds, sizeof fig[w][0], cmp_dbl);
        qsort(ratio[w], (size_t)rounds, sizeof ratio[w][0], cmp_dbl);
        qsort(slept[w], (size_t)rounds, sizeof slept[w][0], cmp_dbl);
        printf(stream ? "%-18s %10.2f %9.2fx %10.2f\n" : "%-18s %10.1f %9.2fx %10.2f\n",
               way_name[w], fig[w][rounds / 2] / (stream ? 1 : 1e3), ratio[w][rounds / 2],
               slept[w][rounds / 2]);
    }
    if (nways < NWAYS)
        printf("(io_uring is not available here: no row)\n");
    return 0;
}
