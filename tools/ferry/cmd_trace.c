/*
 * cmd_trace.c - `ferry trace`: a TCP connection's set-up and teardown, seen
 * three ways on one clock: the socket calls of a real server and client (in
 * two processes, on loopback), the segments on the wire (libpcap), and the
 * kernel's state of each socket (TCP_INFO, sock_diag).
 *
 * The seed's account, whose step numbers label the rows:
 *   1 the server calls socket(), bind(), listen()   2 it blocks in accept()
 *   3 the client's connect() sends SYN and blocks   4 the server answers SYN+ACK
 *   5 connect() returns and the client sends ACK     6 the server's accept() returns
 *   7 one side's close() sends FIN                   8 the other side ACKs it
 *   9 that side later closes and sends its own FIN  10 the first side ACKs it,
 *                                                      and sits in TIME_WAIT
 *
 * States. The kernel is asked after every call (TCP_INFO on the sockets the
 * process holds; sock_diag for those it no longer holds), and a watcher in
 * the parent polls sock_diag all along; those states are marked with their
 * source. On loopback a segment is answered within microseconds, inside the
 * very system call that sent it, so some states (FIN_WAIT1, LAST_ACK,
 * SYN_RECV) live too briefly for any poll to see. For those, the states the
 * segments imply (RFC 793's state machine, applied to the capture) are
 * added, marked "segments". Nothing is invented: each such state is the
 * consequence of a segment that was captured.
 */
#include "cli.h"
#include "trace.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char trace_help[] =
    "usage: ferry trace [--scenario NAME] [--json] [--svg FILE] [--pcap FILE]\n"
    "       ferry trace --port N [-n COUNT] [--json] [--pcap FILE]\n"
    "\n"
    "Runs a real TCP server and client (two processes, on 127.0.0.1) and shows\n"
    "their socket calls, the segments on the wire and each socket's TCP state\n"
    "on one clock, as a two-lane sequence diagram (client | wire | server) with\n"
    "the step numbers of the classic account of set-up and teardown.\n"
    "\n"
    "  -s, --scenario NAME  normal (default), server-close, refused, abort,\n"
    "                       half-close, simultaneous-close, backlog\n"
    "      --json           print the events as JSON Lines instead (one object\n"
    "                       per event, sorted by t_ns)\n"
    "      --svg FILE       also draw the diagram as an SVG picture\n"
    "      --pcap FILE      also write the captured segments (for Wireshark)\n"
    "  -p, --port N         watch another program's connections on local port N\n"
    "                       instead, until interrupted or COUNT connections ended\n"
    "  -n, --count COUNT    with --port: stop after COUNT connections\n"
    "  -i, --iface IFACE    capture interface (default lo)\n"
    "  -h, --help\n"
    "\n"
    "Capturing needs CAP_NET_RAW (root); without it the trace shows calls and\n"
    "states only, and says so. States are marked by source: tcp_info (a socket\n"
    "the process holds), sock_diag (the kernel's table, as ss reads it), or\n"
    "segments (implied by a captured segment: states that last microseconds on\n"
    "loopback, such as FIN_WAIT1, are seen no other way).\n";

static int64_t now_rt(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* --- the event list ----------------------------------------------------------- */

static struct tev *evs;
static size_t nev, capev;

static uint64_t ev_seq;

static void ev_add(const struct tev *e)
{
    if (nev == capev) {
        size_t cap = capev ? capev * 2 : 256;
        struct tev *v = realloc(evs, cap * sizeof *evs);
        if (v == NULL)
            return; /* out of memory: the event is lost, the trace goes on */
        evs = v;
        capev = cap;
    }
    evs[nev] = *e;
    evs[nev++].seq_no = ev_seq++;
}

static void ev_add_cb(const struct tev *e, void *arg)
{
    (void)arg;
    ev_add(e);
}

static int ev_cmp(const void *a, const void *b)
{
    const struct tev *x = a, *y = b;
    if (x->t_ns != y->t_ns) /* qsort is not stable: ties keep the order of arrival */
        return (x->t_ns > y->t_ns) - (x->t_ns < y->t_ns);
    return (x->seq_no > y->seq_no) - (x->seq_no < y->seq_no);
}

/* --- the traced processes --------------------------------------------------------- */

/* In a child: its lane, the pipe its events go to, the sockets it tracks. */
static int g_lane, g_evfd;
struct tracked {
    int fd;
    uint16_t lport, rport;
    char last[16];
    int closed;
};
static struct tracked trk[8];
static int ntrk;

static void emit(struct tev *e)
{
    e->lane = g_lane;
    ssize_t n = write(g_evfd, e, sizeof *e); /* < PIPE_BUF: atomic */
    (void)n;
}

static void track(int fd)
{
    struct sockaddr_in a, b;
    socklen_t la = sizeof a, lb = sizeof b;
    if (ntrk == 8 || getsockname(fd, (struct sockaddr *)&a, &la) != 0)
        return;
    struct tracked *t = &trk[ntrk++];
    memset(t, 0, sizeof *t);
    t->fd = fd;
    t->lport = ntohs(a.sin_port);
    if (getpeername(fd, (struct sockaddr *)&b, &lb) == 0)
        t->rport = ntohs(b.sin_port);
}

/* After each call: the state of every socket this process knows about. */
static void states(void)
{
    for (int i = 0; i < ntrk; i++) {
        struct tracked *t = &trk[i];
        const char *st = NULL, *src = "tcp_info";
        if (!t->closed) {
            st = tcp_state_of_fd(t->fd);
            if (st && t->rport == 0) { /* a connect() done since: learn the ports */
                struct sockaddr_in b;
                socklen_t lb = sizeof b;
                if (getpeername(t->fd, (struct sockaddr *)&b, &lb) == 0)
                    t->rport = ntohs(b.sin_port);
                struct sockaddr_in a;
                socklen_t la = sizeof a;
                if (getsockname(t->fd, (struct sockaddr *)&a, &la) == 0)
                    t->lport = ntohs(a.sin_port);
            }
        } else if (t->lport && t->rport) {
            st = tcp_state_diag(t->lport, t->rport);
            src = "sock_diag";
        }
        if (st == NULL || strcmp(st, t->last) == 0)
            continue;
        snprintf(t->last, sizeof t->last, "%s", st);
        struct tev e;
        memset(&e, 0, sizeof e);
        e.t_ns = now_rt();
        e.type = TEV_STATE;
        e.fd = t->fd;
        e.lport = t->lport;
        e.rport = t->rport;
        snprintf(e.state, sizeof e.state, "%s", st);
        snprintf(e.source, sizeof e.source, "%s", src);
        emit(&e);
    }
}

static void call_enter(const char *name, int fd)
{
    struct tev e;
    memset(&e, 0, sizeof e);
    e.type = TEV_ENTER;
    e.fd = fd;
    snprintf(e.call, sizeof e.call, "%s", name);
    e.t_ns = now_rt();
    emit(&e);
}

static long call_return(const char *name, int fd, long ret, int err)
{
    struct tev e;
    memset(&e, 0, sizeof e);
    e.t_ns = now_rt();
    e.type = TEV_RETURN;
    e.fd = fd;
    e.ret = ret;
    e.err = ret < 0 ? err : 0;
    snprintf(e.call, sizeof e.call, "%s", name);
    emit(&e);
    if (strcmp(name, "close") == 0)
        for (int i = 0; i < ntrk; i++)
            if (trk[i].fd == fd)
                trk[i].closed = 1;
    states();
    errno = err;
    return ret;
}

/* Records a call at entry and at return, then the states after it. */
#define CALL(name, fd, expr)                                                                       \
    ({                                                                                             \
        call_enter(name, fd);                                                                      \
        long r_ = (long)(expr);                                                                    \
        call_return(name, fd, r_, errno);                                                          \
    })

/* The two processes meet at these: a byte on a pipe. */
static int sync_s2c[2], sync_c2s[2];
static pid_t g_server_pid; /* set before the client is forked */
static void say_to(int fd)
{
    char c = 'x';
    if (write(fd, &c, 1) != 1)
        _exit(9);
}
static void hear_from(int fd)
{
    char c;
    if (read(fd, &c, 1) != 1)
        _exit(9);
}

/* Simultaneous close: both processes spin on this word, then close. */
static volatile int *g_barrier;

static void barrier(int me)
{
    /* each on its own CPU, so that both spin at once and leave together */
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(me % 2, &set);
    sched_setaffinity(0, sizeof set, &set);
    __atomic_fetch_add(g_barrier, 1, __ATOMIC_SEQ_CST);
    while (__atomic_load_n(g_barrier, __ATOMIC_SEQ_CST) < 2) {
    }
}

static int g_port;
static const char *g_scen;

/* The passive closer acknowledges the FIN at once (Linux may otherwise
 * delay that ACK and send it with its own FIN), and "later calls close()"
 * (the seed's words): 100 ms later, so FIN_WAIT2 and CLOSE_WAIT last long
 * enough for the kernel's table to show them. A scripted pause of the
 * traced program, not a synchronisation: nothing waits for it. */
static void quickack(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
}

static void later(void)
{
    struct timespec ts = {0, 100000000};
    nanosleep(&ts, NULL);
    states();
}

static int listen_socket(int backlog)
{
    int fd = CALL("socket", -1, socket(AF_INET, SOCK_STREAM, 0));
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)g_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CALL("bind", fd, bind(fd, (struct sockaddr *)&a, sizeof a));
    track(fd);
    CALL("listen", fd, listen(fd, backlog));
    return fd;
}

static int connect_to(int nonblock)
{
    int fd = CALL("socket", -1, socket(AF_INET, SOCK_STREAM | (nonblock ? SOCK_NONBLOCK : 0), 0));
    track(fd);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)g_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CALL("connect", fd, connect(fd, (struct sockaddr *)&a, sizeof a));
    return fd;
}

static void server_main(void)
{
    char buf[256];
    if (strcmp(g_scen, "backlog") == 0) {
        int l = listen_socket(1);
        say_to(sync_s2c[1]);
        hear_from(sync_c2s[0]); /* the client has tried its connections */
        int fds[4];
        for (int i = 0; i < 4; i++) {
            fds[i] = CALL("accept", l, accept(l, NULL, NULL));
            track(fds[i]);
        }
        hear_from(sync_c2s[0]);
        for (int i = 0; i < 4; i++)
            CALL("close", fds[i], close(fds[i]));
        CALL("close", l, close(l));
        return;
    }
    int l = listen_socket(16);
    say_to(sync_s2c[1]); /* the client then waits until we block in accept */
    int c = CALL("accept", l, accept(l, NULL, NULL));
    track(c);
    if (strcmp(g_scen, "abort") == 0) {
        /* wait until the request is in, then close without reading it */
        struct pollfd p = {.fd = c, .events = POLLIN};
        poll(&p, 1, 5000);
        CALL("close", c, close(c));
        CALL("close", l, close(l));
        return;
    }
    CALL("recv", c, recv(c, buf, sizeof buf, 0));
    if (strcmp(g_scen, "half-close") == 0)
        CALL("recv", c, recv(c, buf, sizeof buf, 0)); /* 0: the client's FIN */
    CALL("send", c, send(c, "response", 8, 0));
    if (strcmp(g_scen, "server-close") == 0 || strcmp(g_scen, "half-close") == 0) {
        CALL("close", c, close(c));
    } else if (strcmp(g_scen, "simultaneous-close") == 0) {
        hear_from(sync_c2s[0]); /* the client has the response */
        barrier(1);
        CALL("close", c, close(c));
    } else { /* normal: the client closes first */
        quickack(c);
        CALL("recv", c, recv(c, buf, sizeof buf, 0)); /* 0: end of file */
        later();
        CALL("close", c, close(c));
    }
    CALL("close", l, close(l));
    /* the kernel finishes the teardown after close(): look once more */
    hear_from(sync_c2s[0]);
    states();
}

/* Whether the server is blocked in accept(): /proc/PID/syscall names the
 * system call a blocked task is in ("running" otherwise); where that file
 * cannot be read (Yama lets only a tracer read a sibling's), wchan names
 * the kernel function it sleeps in (inet_csk_accept). 1 yes, 0 not yet,
 * -1 neither file tells. */
static int server_in_accept(void)
{
    char path[64], buf[128] = "";
    snprintf(path, sizeof path, "/proc/%d/syscall", (int)g_server_pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC), known = 0;
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
    if (fd >= 0)
        close(fd);
    if (n > 0) {
        buf[n] = 0;
        long nr = strtol(buf, NULL, 10);
        known = buf[0] >= '0' && buf[0] <= '9';
#ifdef SYS_accept
        if (known && nr == SYS_accept)
            return 1;
#endif
        if (known && nr == SYS_accept4)
            return 1;
        if (known || strncmp(buf, "running", 7) == 0)
            return 0;
    }
    snprintf(path, sizeof path, "/proc/%d/wchan", (int)g_server_pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
    if (fd >= 0)
        close(fd);
    if (n <= 0)
        return -1;
    buf[n] = 0;
    if (strstr(buf, "accept"))
        return 1;
    return strcmp(buf, "0") == 0 ? -1 : 0; /* "0": symbols hidden from us */
}

/* The classic account has the server blocked in accept() before the client
 * calls connect(). The pipe says the server is about to call it; the
 * kernel says when it is blocked there. Without either /proc file (a
 * hardened kernel), a bounded wait for the server to sleep at all is the
 * best effort: its only blocking call after the pipe is accept(). */
static void wait_server_in_accept(void)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)g_server_pid);
    for (long i = 0; i < 200000; i++) { /* about 10 s at most */
        int r = server_in_accept();
        if (r == 1)
            return;
        if (r < 0) {
            char st[512] = "";
            int fd = open(path, O_RDONLY | O_CLOEXEC);
            ssize_t n = fd >= 0 ? read(fd, st, sizeof st - 1) : -1;
            if (fd >= 0)
                close(fd);
            const char *p = n > 0 ? strrchr(st, ')') : NULL;
            if (p == NULL || (p[1] == ' ' && p[2] == 'S'))
                return;
        }
        struct timespec ts = {0, 50000}; /* a poll's pace, not a wait for an event */
        nanosleep(&ts, NULL);
    }
}

static void client_main(void)
{
    char buf[256];
    if (strcmp(g_scen, "refused") == 0) {
        int fd = connect_to(0);
        CALL("close", fd, close(fd));
        return;
    }
    hear_from(sync_s2c[0]); /* the server listens */
    if (strcmp(g_scen, "backlog") == 0) {
        int fds[4];
        for (int i = 0; i < 4; i++)
            fds[i] = connect_to(1); /* EINPROGRESS */
        /* give the handshakes a moment: those the queue holds complete at once */
        struct pollfd p[4];
        for (int i = 0; i < 4; i++)
            p[i] = (struct pollfd){.fd = fds[i], .events = POLLOUT};
        CALL("poll", -1, poll(p, 4, 200));
        say_to(sync_c2s[1]); /* now the server accepts */
        for (int i = 0; i < 4; i++) {
            struct pollfd q = {.fd = fds[i], .events = POLLOUT};
            CALL("poll", fds[i], poll(&q, 1, 10000)); /* the dropped SYNs are retried */
        }
        say_to(sync_c2s[1]);
        for (int i = 0; i < 4; i++)
            CALL("close", fds[i], close(fds[i]));
        return;
    }
    wait_server_in_accept();
    int fd = connect_to(0);
    CALL("send", fd, send(fd, "request", 7, 0));
    if (strcmp(g_scen, "half-close") == 0)
        CALL("shutdown", fd, shutdown(fd, SHUT_WR));
    CALL("recv", fd, recv(fd, buf, sizeof buf, 0)); /* abort: ECONNRESET */
    if (strcmp(g_scen, "server-close") == 0 || strcmp(g_scen, "half-close") == 0) {
        quickack(fd);
        CALL("recv", fd, recv(fd, buf, sizeof buf, 0)); /* 0: the server's FIN */
        later();
    }
    if (strcmp(g_scen, "simultaneous-close") == 0) {
        say_to(sync_c2s[1]);
        barrier(0);
    }
    CALL("close", fd, close(fd));
    if (strcmp(g_scen, "abort") != 0 && strcmp(g_scen, "refused") != 0)
        say_to(sync_c2s[1]);
}

/* --- running a scenario ----------------------------------------------------------- */

/* The parent's watcher: state changes of every socket on the port. */
struct watch {
    uint16_t lport[64], rport[64];
    int state[64];
    int old[64]; /* there before the scenario: not ours */
    int n;
    int baseline;
    int64_t t;
};

static void watch_one(uint16_t lp, uint16_t rp, int st, void *arg)
{
    struct watch *w = arg;
    if (st == 10) /* LISTEN: the listener, reported by its owner */
        return;
    int i;
    for (i = 0; i < w->n; i++)
        if (w->lport[i] == lp && w->rport[i] == rp)
            break;
    if (i == w->n) {
        if (w->n == 64)
            return;
        w->n++;
        w->lport[i] = lp;
        w->rport[i] = rp;
        w->state[i] = -1;
        w->old[i] = w->baseline;
    }
    if (w->state[i] == st || w->old[i]) {
        w->state[i] = st;
        return;
    }
    w->state[i] = st;
    struct tev e;
    memset(&e, 0, sizeof e);
    e.t_ns = w->t;
    e.type = TEV_STATE;
    e.lane = lp == g_port ? LANE_SERVER : LANE_CLIENT;
    e.fd = -1;
    e.lport = lp;
    e.rport = rp;
    snprintf(e.state, sizeof e.state, "%s", tcp_state_name(st));
    snprintf(e.source, sizeof e.source, "sock_diag");
    ev_add(&e);
}

static void close_fds(int *fds, int n)
{
    for (int i = 0; i < n; i++)
        if (fds[i] >= 0) {
            close(fds[i]);
            fds[i] = -1;
        }
}

/* Runs the scenario's two processes and collects everything until both
 * have ended (30 s at most: a process that hangs is killed, and said so). */
static int run_scenario(struct capture *cap)
{
    int evp[2] = {-1, -1};
    if (pipe(sync_s2c) != 0 || pipe(sync_c2s) != 0 || pipe(evp) != 0)
        return -1;
    fcntl(evp[0], F_SETFL, O_NONBLOCK);
    *g_barrier = 0;
    struct watch w = {.n = 0, .baseline = 1};
    tcp_diag_each((uint16_t)g_port, watch_one, &w); /* what was there before */
    w.baseline = 0;
    fflush(stdout);
    pid_t srv = -1, cli = -1;
    if (strcmp(g_scen, "refused") != 0) {
        srv = fork();
        if (srv == 0) {
            /* keep only our ends: if the other process dies, a read ends */
            close(sync_s2c[0]);
            close(sync_c2s[1]);
            close(evp[0]);
            g_lane = LANE_SERVER;
            g_evfd = evp[1];
            server_main();
            _exit(0);
        }
    }
    g_server_pid = srv;
    if (srv >= 0 || strcmp(g_scen, "refused") == 0)
        cli = fork();
    if (cli == 0) {
        close(sync_s2c[1]);
        close(sync_c2s[0]);
        close(evp[0]);
        g_lane = LANE_CLIENT;
        g_evfd = evp[1];
        client_main();
        _exit(0);
    }
    int sync_fds[4] = {sync_s2c[0], sync_s2c[1], sync_c2s[0], sync_c2s[1]};
    close_fds(sync_fds, 4);
    close(evp[1]);
    int live = (srv > 0) + (cli > 0);
    if (cli < 0 || (srv < 0 && strcmp(g_scen, "refused") != 0)) {
        fprintf(stderr, "ferry trace: fork: %s\n", strerror(errno));
        if (srv > 0)
            kill(srv, SIGKILL);
    }
    int64_t end_at = 0, give_up = now_rt() + 30000000000LL;
    for (;;) {
        /* events from the two processes */
        struct tev e;
        while (read(evp[0], &e, sizeof e) == (ssize_t)sizeof e)
            ev_add(&e);
        if (cap)
            cap_poll(cap, 0, g_port, ev_add_cb, NULL);
        /* a dump of the kernel's table takes a while on a busy machine: a
         * state it shows existed no later than the dump's end */
        size_t before = nev;
        tcp_diag_each((uint16_t)g_port, watch_one, &w);
        int64_t seen = now_rt();
        for (size_t k = before; k < nev; k++)
            evs[k].t_ns = seen;
        int st;
        while (live > 0 && waitpid(-1, &st, WNOHANG) > 0)
            live--;
        if (live > 0 && seen >= give_up) {
            fprintf(stderr, "ferry trace: the scenario did not finish in 30 s; stopped\n");
            if (srv > 0)
                kill(srv, SIGKILL);
            if (cli > 0)
                kill(cli, SIGKILL);
            give_up = INT64_MAX;
        }
        if (live == 0 && end_at == 0)
            end_at = now_rt() + 100000000; /* the last segments, then a final look */
        if (end_at && now_rt() >= end_at)
            break;
        struct pollfd p = {.fd = evp[0], .events = POLLIN};
        poll(&p, 1, 1);
    }
    struct tev e;
    while (read(evp[0], &e, sizeof e) == (ssize_t)sizeof e)
        ev_add(&e);
    if (cap)
        cap_poll(cap, 0, g_port, ev_add_cb, NULL);
    close(evp[0]);
    return 0;
}

/* Both FINs left before either side had the other's: the second FIN does
 * not acknowledge the first (absolute numbers: call before relative()). */
static int fins_crossed(void)
{
    const struct tev *first = NULL;
    for (size_t i = 0; i < nev; i++) {
        const struct tev *e = &evs[i];
        if (e->type != TEV_SEGMENT || !strstr(e->flags, "FIN"))
            continue;
        if (first == NULL)
            first = e;
        else if (e->dir != first->dir)
            return e->ack != first->seq + first->len + 1;
    }
    return 0;
}

/* Drops what the kernel's table showed about other programs' connections
 * that happen to use the same port: ours are those whose client port our
 * client held or whose SYN we captured. */
static void keep_ours(void)
{
    uint16_t ports[32];
    int np = 0;
    for (size_t i = 0; i < nev; i++) {
        const struct tev *e = &evs[i];
        uint16_t p = 0;
        if (e->type == TEV_SEGMENT && e->dir == 0 && strstr(e->flags, "SYN"))
            p = e->sport;
        else if (e->type == TEV_STATE && e->lane == LANE_CLIENT &&
                 strcmp(e->source, "tcp_info") == 0)
            p = e->lport;
        if (p && np < 32)
            ports[np++] = p;
    }
    size_t k = 0;
    for (size_t i = 0; i < nev; i++) {
        const struct tev *e = &evs[i];
        int ours = 1;
        if (e->type == TEV_STATE && strcmp(e->source, "sock_diag") == 0) {
            uint16_t cport = e->lane == LANE_SERVER ? e->rport : e->lport;
            ours = 0;
            for (int j = 0; j < np; j++)
                ours |= ports[j] == cport;
        }
        if (ours)
            evs[k++] = *e;
    }
    nev = k;
}

/* --- what the segments imply ------------------------------------------------------ */

static int g_crossed; /* the two FINs crossed (simultaneous close) */

struct side {
    const char *st;
    uint32_t fin_seq; /* seq of our FIN + 1, once sent */
    int fin_sent;
};

static void infer_add(int lane, int64_t t, const char *st, uint16_t lp, uint16_t rp)
{
    struct tev e;
    memset(&e, 0, sizeof e);
    e.t_ns = t;
    e.type = TEV_STATE;
    e.lane = lane;
    e.fd = -1;
    e.lport = lp;
    e.rport = rp;
    snprintf(e.state, sizeof e.state, "%s", st);
    snprintf(e.source, sizeof e.source, "segments");
    ev_add(&e);
}

/* One connection (client port cport): walks its segments in order. */
static void infer_conn(uint16_t cport, int listening)
{
    /* no listener (refused): the server side has no socket, hence no state */
    struct side c = {"CLOSE", 0, 0}, s = {listening ? "LISTEN" : "NONE", 0, 0};
    size_t n0 = nev;
    for (size_t i = 0; i < n0; i++) {
        /* a copy: infer_add() may move the array */
        struct tev ecopy = evs[i], *e = &ecopy;
        if (e->type != TEV_SEGMENT)
            continue;
        int c2s = e->dport == g_port && e->sport == cport;
        int s2c = e->sport == g_port && e->dport == cport;
        if (!c2s && !s2c)
            continue;
        struct side *me = c2s ? &c : &s, *peer = c2s ? &s : &c;
        int me_lane = c2s ? LANE_CLIENT : LANE_SERVER, peer_lane = c2s ? LANE_SERVER : LANE_CLIENT;
        uint16_t mlp = c2s ? cport : (uint16_t)g_port, plp = c2s ? (uint16_t)g_port : cport;
        int syn = strstr(e->flags, "SYN") != NULL, fin = strstr(e->flags, "FIN") != NULL,
            rst = strstr(e->flags, "RST") != NULL, ack = strstr(e->flags, "ACK") != NULL;
        const char *old_me = me->st, *old_peer = peer->st;
        if (rst) {
            me->st = "CLOSE";
            peer->st = "CLOSE";
        } else if (syn && !ack) {
            me->st = "SYN_SENT"; /* the listener's SYN_RECV shows in its SYN|ACK: a
                                    SYN dropped by a full queue gets none */
        } else if (syn && ack) {
            me->st = "SYN_RECV";
            if (strcmp(peer->st, "SYN_SENT") == 0)
                peer->st = "ESTABLISHED";
        } else {
            if (ack && strcmp(peer->st, "SYN_RECV") == 0)
                peer->st = "ESTABLISHED";
            /* does this ACK our peer's FIN? */
            if (ack && peer->fin_sent && e->ack == peer->fin_seq) {
                if (strcmp(peer->st, "FIN_WAIT1") == 0)
                    peer->st = "FIN_WAIT2";
                else if (strcmp(peer->st, "CLOSING") == 0)
                    peer->st = "TIME_WAIT";
                else if (strcmp(peer->st, "LAST_ACK") == 0)
                    peer->st = "CLOSE";
            }
            if (fin) {
                me->fin_sent = 1;
                me->fin_seq = e->seq + e->len + 1;
                if (g_crossed && peer->fin_sent) {
                    /* the second of two crossing FINs: it left before the
                     * first arrived (its ack does not cover it); then the
                     * first arrived: both sides are CLOSING */
                    infer_add(me_lane, e->t_ns, "FIN_WAIT1", mlp, plp);
                    me->st = "CLOSING";
                    peer->st = "CLOSING";
                } else if (strcmp(me->st, "CLOSE_WAIT") == 0)
                    me->st = "LAST_ACK";
                else
                    me->st = "FIN_WAIT1";
                if (strcmp(peer->st, "ESTABLISHED") == 0 && !g_crossed)
                    peer->st = "CLOSE_WAIT"; /* crossing: the FIN is still in flight */
                else if (strcmp(peer->st, "FIN_WAIT2") == 0)
                    peer->st = "TIME_WAIT";
                else if (strcmp(peer->st, "FIN_WAIT1") == 0)
                    peer->st = "CLOSING";
                /* a FIN that also acknowledges the peer's FIN */
                if (ack && peer->fin_sent && e->ack == peer->fin_seq &&
                    strcmp(peer->st, "CLOSING") == 0)
                    peer->st = "TIME_WAIT";
            }
        }
        if (!listening && strcmp(old_peer, "NONE") == 0 && me_lane == LANE_CLIENT)
            peer->st = "NONE";
        if (!listening && strcmp(old_me, "NONE") == 0)
            me->st = "NONE";
        if (strcmp(me->st, old_me) != 0)
            infer_add(me_lane, e->t_ns, me->st, mlp, plp);
        if (strcmp(peer->st, old_peer) != 0)
            infer_add(peer_lane, e->t_ns, peer->st, plp, mlp);
    }
}

static void infer_all(void)
{
    uint16_t ports[16];
    int np = 0;
    size_t n0 = nev;
    for (size_t i = 0; i < n0; i++) {
        if (evs[i].type != TEV_SEGMENT || evs[i].dport != g_port)
            continue;
        int seen = 0;
        for (int k = 0; k < np; k++)
            seen |= ports[k] == evs[i].sport;
        if (!seen && np < 16)
            ports[np++] = evs[i].sport;
    }
    int listening = 0;
    for (size_t i = 0; i < n0; i++)
        listening |= evs[i].type == TEV_ENTER && strcmp(evs[i].call, "listen") == 0;
    for (int k = 0; k < np; k++)
        infer_conn(ports[k], listening);
}

/* --- polled states in order ------------------------------------------------------------ */

/* How far along its life a socket is in state st: a connection only moves
 * forward. -1: not a state of that life (NONE). */
static int state_rank(const char *st, int seen_before)
{
    static const char *const ranks[][3] = {{"LISTEN"},
                                           {"SYN_SENT", "SYN_RECV"},
                                           {"ESTABLISHED"},
                                           {"FIN_WAIT1", "CLOSE_WAIT"},
                                           {"FIN_WAIT2", "CLOSING", "LAST_ACK"},
                                           {"TIME_WAIT"}};
    for (int r = 0; r < (int)(sizeof ranks / sizeof ranks[0]); r++)
        for (int j = 0; j < 3 && ranks[r][j]; j++)
            if (strcmp(st, ranks[r][j]) == 0)
                return r;
    /* CLOSE: before connect(), or at the end; a socket still held when its
     * connection enters TIME_WAIT reports CLOSE while the kernel's table
     * shows the TIME_WAIT that replaced it, so both count as the end */
    if (strcmp(st, "CLOSE") == 0)
        return seen_before ? 5 : 0;
    return -1;
}

/* A polled state is stamped when the poll ended, which may be after the
 * segment that already moved the connection on: such a stale observation
 * would show ESTABLISHED after CLOSE_WAIT. Keeps, per socket (lane and
 * ports), only the observations that do not go back; what the segments
 * imply follows RFC 793 and is kept. Call on the sorted events. */
static void states_in_order(void)
{
    struct sock_rank {
        int lane;
        uint16_t lp, rp;
        int rank; /* the furthest state shown so far */
    } socks[32];
    int ns = 0;
    size_t k = 0;
    for (size_t i = 0; i < nev; i++) {
        const struct tev *e = &evs[i];
        int keep = 1;
        if (e->type == TEV_STATE) {
            int j;
            for (j = 0; j < ns; j++)
                if (socks[j].lane == e->lane && socks[j].lp == e->lport && socks[j].rp == e->rport)
                    break;
            if (j == ns && ns < 32)
                socks[ns++] = (struct sock_rank){e->lane, e->lport, e->rport, -1};
            int r = state_rank(e->state, j < ns && socks[j].rank >= 0);
            if (j < ns && r >= 0) {
                keep = r >= socks[j].rank || strcmp(e->source, "segments") == 0;
                if (keep && r > socks[j].rank)
                    socks[j].rank = r;
            }
        }
        if (keep)
            evs[k++] = *e;
    }
    nev = k;
}

/* --- relative sequence numbers, step numbers ------------------------------------------ */

struct isn {
    uint16_t cport;
    uint32_t c, s;
    int have_c, have_s;
};

static void relative(void)
{
    struct isn isns[16];
    int n = 0;
    for (size_t i = 0; i < nev; i++) {
        struct tev *e = &evs[i];
        if (e->type != TEV_SEGMENT)
            continue;
        uint16_t cport = e->dir == 0 ? e->sport : e->dport;
        int k;
        for (k = 0; k < n; k++)
            if (isns[k].cport == cport)
                break;
        if (k == n) {
            if (n == 16)
                continue;
            memset(&isns[n], 0, sizeof isns[n]);
            isns[n++].cport = cport;
        }
        struct isn *x = &isns[k];
        int syn = strstr(e->flags, "SYN") != NULL;
        if (syn && e->dir == 0 && !x->have_c) {
            x->c = e->seq;
            x->have_c = 1;
        }
        if (syn && e->dir == 1 && !x->have_s) {
            x->s = e->seq;
            x->have_s = 1;
        }
        uint32_t my = e->dir == 0 ? x->c : x->s, their = e->dir == 0 ? x->s : x->c;
        int have_my = e->dir == 0 ? x->have_c : x->have_s;
        int have_their = e->dir == 0 ? x->have_s : x->have_c;
        if (have_my)
            e->seq -= my;
        if (e->ack && have_their)
            e->ack -= their;
    }
}

/* Labels rows with the seed's steps, for the first connection only: its
 * client fd (the first connect) and server fd (the first accept), its
 * segments, and each step once. Closes are steps 7 and 9 only when the
 * connection ends with FINs (an abort's RST is not the seed's teardown). */
static void steps(void)
{
    int done[11] = {0};
    int cfd = -1, sfd = -1, fins = 0, any_fin = 0;
    uint16_t cport = 0;
    const struct tev *fin[2] = {NULL, NULL};
    for (size_t i = 0; i < nev; i++)
        any_fin |= evs[i].type == TEV_SEGMENT && strstr(evs[i].flags, "FIN") != NULL;
    for (size_t i = 0; i < nev; i++) {
        struct tev *e = &evs[i];
        int step = 0;
        if (e->type == TEV_ENTER && e->lane == LANE_SERVER &&
            (!strcmp(e->call, "socket") || !strcmp(e->call, "bind") || !strcmp(e->call, "listen")))
            e->step = 1; /* all three are step 1 */
        else if (e->type == TEV_ENTER && e->lane == LANE_SERVER && !strcmp(e->call, "accept"))
            step = 2;
        else if (e->type == TEV_ENTER && e->lane == LANE_CLIENT && !strcmp(e->call, "connect")) {
            step = 3;
            if (cfd < 0)
                cfd = e->fd;
        } else if (e->type == TEV_RETURN && e->lane == LANE_CLIENT && !strcmp(e->call, "connect") &&
                   e->fd == cfd && e->ret == 0)
            step = 5;
        else if (e->type == TEV_RETURN && e->lane == LANE_SERVER && !strcmp(e->call, "accept") &&
                 e->ret >= 0 && sfd < 0) {
            step = 6;
            sfd = (int)e->ret;
        } else if (e->type == TEV_ENTER && any_fin &&
                   (!strcmp(e->call, "close") || !strcmp(e->call, "shutdown")) &&
                   ((e->lane == LANE_CLIENT && e->fd == cfd) ||
                    (e->lane == LANE_SERVER && e->fd == sfd && sfd >= 0)))
            step = (done[7] & 1) ? 9 : 7;
        else if (e->type == TEV_SEGMENT) {
            int sy = strstr(e->flags, "SYN") != NULL, f = strstr(e->flags, "FIN") != NULL,
                a = strstr(e->flags, "ACK") != NULL;
            if (sy && !a && !cport) {
                cport = e->sport;
                step = 3;
            } else if (cport && e->sport != cport && e->dport != cport) {
                step = 0; /* another connection */
            } else if (sy && a) {
                step = 4;
            } else if (!sy && a && e->dir == 0 && done[4] && !(done[5] & 2) && e->len == 0) {
                step = 5;
            } else if (f && fins < 2) {
                fin[fins] = e;
                step = fins++ == 0 ? 7 : 9;
            } else if (a && e->len == 0 && fins == 1 && e->dir != fin[0]->dir &&
                       e->ack == fin[0]->seq + fin[0]->len + 1) {
                step = 8; /* acknowledges the first FIN */
            } else if (a && e->len == 0 && fins == 2 && e->dir == fin[0]->dir &&
                       e->ack == fin[1]->seq + fin[1]->len + 1) {
                step = 10; /* acknowledges the second */
            }
        }
        /* each step labels one call and one segment at most (3: connect
         * and its SYN; 5: connect's return and the ACK; 7, 9: a close and
         * its FIN) */
        int seg = e->type == TEV_SEGMENT;
        if (step && !(done[step] & (seg ? 2 : 1))) {
            e->step = step;
            done[step] |= seg ? 2 : 1;
        }
    }
}

/* --- output ----------------------------------------------------------------------- */

static const char *lane_name(int l)
{
    return l == LANE_CLIENT ? "client" : l == LANE_SERVER ? "server" : "wire";
}
static const char *type_name(int t)
{
    static const char *n[] = {"call_enter", "call_return", "segment", "state", "note"};
    return n[t];
}

static void json_event(FILE *f, const struct tev *e, int64_t t0)
{
    fprintf(f, "{\"t_ns\": %lld, \"lane\": \"%s\", \"type\": \"%s\"", (long long)(e->t_ns - t0),
            lane_name(e->lane), type_name(e->type));
    if (e->step)
        fprintf(f, ", \"step\": %d", e->step);
    if (e->type == TEV_ENTER || e->type == TEV_RETURN) {
        fprintf(f, ", \"call\": \"%s\"", e->call);
        if (e->fd >= 0)
            fprintf(f, ", \"fd\": %d", e->fd);
        if (e->type == TEV_RETURN) {
            fprintf(f, ", \"ret\": %ld, \"errno\": %d", e->ret, e->err);
            if (e->err) {
                fprintf(f, ", \"error\": ");
                cli_json_str(f, strerror(e->err));
            }
        }
    } else if (e->type == TEV_SEGMENT) {
        fprintf(f,
                ", \"dir\": \"%s\", \"flags\": \"%s\", \"seq\": %u, \"ack\": %u, \"len\": %u, "
                "\"win\": %u, \"sport\": %u, \"dport\": %u",
                e->dir ? "s2c" : "c2s", e->flags, e->seq, e->ack, e->len, e->win, e->sport,
                e->dport);
    } else if (e->type == TEV_STATE) {
        fprintf(f, ", \"state\": \"%s\", \"source\": \"%s\", \"lport\": %u, \"rport\": %u",
                e->state, e->source, e->lport, e->rport);
    } else {
        fprintf(f, ", \"note\": ");
        cli_json_str(f, e->note);
    }
    fprintf(f, ", \"ferry_version\": \"%s\", \"schema\": 1}\n", ferry_version());
}

static void describe(const struct tev *e, char *buf, size_t len)
{
    if (e->type == TEV_ENTER && e->fd >= 0)
        snprintf(buf, len, "%s(%d) ...", e->call, e->fd);
    else if (e->type == TEV_ENTER)
        snprintf(buf, len, "%s() ...", e->call);
    else if (e->type == TEV_RETURN && e->ret < 0)
        snprintf(buf, len, "... %s() = -1 %s", e->call,
                 e->err == ECONNREFUSED  ? "ECONNREFUSED"
                 : e->err == ECONNRESET  ? "ECONNRESET"
                 : e->err == EINPROGRESS ? "EINPROGRESS"
                                         : strerror(e->err));
    else if (e->type == TEV_RETURN)
        snprintf(buf, len, "... %s() = %ld", e->call, e->ret);
    else if (e->type == TEV_STATE)
        snprintf(buf, len, "%s[%s]", strcmp(e->source, "segments") == 0 ? "~" : "", e->state);
    else
        snprintf(buf, len, "%s", e->note);
}

static void print_diagram(int64_t t0)
{
    printf("%10s %4s  %-28s %-34s %s\n", "t (us)", "step", "client", "wire", "server");
    char shown[2][2][16] = {{"", ""}, {"", ""}}; /* last state per lane, observed/implied */
    for (size_t i = 0; i < nev; i++) {
        const struct tev *e = &evs[i];
        if (e->type == TEV_STATE && e->lane != LANE_WIRE) {
            /* the same state seen again (by another source): one row is enough */
            char *last = shown[e->lane][strcmp(e->source, "segments") == 0];
            if (strcmp(last, e->state) == 0)
                continue;
            snprintf(last, 16, "%s", e->state);
        }
        char step[8] = "", left[64] = "", mid[64] = "", right[64] = "";
        if (e->step)
            snprintf(step, sizeof step, "%d", e->step);
        if (e->type == TEV_SEGMENT) {
            char lab[48];
            snprintf(lab, sizeof lab, "%s %u:%u%s%u", e->flags, e->seq, e->seq + e->len,
                     e->ack ? " ack " : "", e->ack);
            if (!e->ack)
                snprintf(lab, sizeof lab, "%s %u:%u", e->flags, e->seq, e->seq + e->len);
            if (e->dir == 0)
                snprintf(mid, sizeof mid, "%s -->", lab);
            else
                snprintf(mid, sizeof mid, "<-- %s", lab);
        } else {
            describe(e, e->lane == LANE_CLIENT ? left : right, 64);
        }
        printf("%10.1f %4s  %-28s %-34s %s\n", (double)(e->t_ns - t0) / 1000.0, step, left, mid,
               right);
    }
}

static void svg_text(FILE *f, double x, double y, const char *anchor, const char *color,
                     const char *s)
{
    fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"%s\" fill=\"%s\">", x, y, anchor, color);
    for (const char *p = s; *p; p++) {
        if (*p == '<')
            fputs("&lt;", f);
        else if (*p == '>')
            fputs("&gt;", f);
        else if (*p == '&')
            fputs("&amp;", f);
        else
            fputc(*p, f);
    }
    fputs("</text>\n", f);
}

static int write_svg(const char *path, int64_t t0, const char *title)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return -1;
    const double xc = 240, xs = 760, row = 18, top = 70;
    double h = top + row * (double)nev + 40;
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"1000\" height=\"%.0f\" "
            "font-family=\"monospace\" font-size=\"12\">\n"
            "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
            h);
    svg_text(f, 500, 20, "middle", "black", title);
    svg_text(f, xc, 45, "middle", "black", "client");
    svg_text(f, xs, 45, "middle", "black", "server");
    fprintf(f, "<line x1=\"%.0f\" y1=\"52\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"#888\"/>\n", xc, xc,
            h - 20);
    fprintf(f, "<line x1=\"%.0f\" y1=\"52\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"#888\"/>\n", xs, xs,
            h - 20);
    fprintf(f, "<defs><marker id=\"a\" markerWidth=\"8\" markerHeight=\"8\" refX=\"8\" refY=\"4\" "
               "orient=\"auto\"><path d=\"M0,0 L8,4 L0,8 z\" fill=\"#c33\"/></marker></defs>\n");
    for (size_t i = 0; i < nev; i++) {
        const struct tev *e = &evs[i];
        double y = top + row * (double)i;
        char t[32], d[96];
        snprintf(t, sizeof t, "%.1f us%s%.0d", (double)(e->t_ns - t0) / 1000.0,
                 e->step ? "  #" : "", e->step);
        svg_text(f, 10, y, "start", "#666", t);
        if (e->type == TEV_SEGMENT) {
            char lab[64];
            snprintf(lab, sizeof lab, "%s seq=%u ack=%u len=%u", e->flags, e->seq, e->ack, e->len);
            double x1 = e->dir == 0 ? xc : xs, x2 = e->dir == 0 ? xs : xc;
            fprintf(f,
                    "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"#c33\" "
                    "marker-end=\"url(#a)\"/>\n",
                    x1, y - 4, x2, y - 4);
            svg_text(f, (xc + xs) / 2, y - 7, "middle", strstr(e->flags, "RST") ? "#c00" : "#333",
                     lab);
            continue;
        }
        describe(e, d, sizeof d);
        const char *color = e->type == TEV_STATE ? "#26a" : "black";
        if (e->lane == LANE_CLIENT)
            svg_text(f, xc - 8, y, "end", color, d);
        else
            svg_text(f, xs + 8, y, "start", color, d);
    }
    fputs("</svg>\n", f);
    fclose(f);
    return 0;
}

/* --- --port: watch another program ---------------------------------------------------- */

static volatile sig_atomic_t g_stop;
static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

struct conn_seen {
    uint16_t a, b;
    uint32_t isn_a, isn_b;
    int have_a, have_b, fin_a, fin_b, done;
};
static struct conn_seen conns[256];
static int nconns, nfinished, g_json, g_capturing;
static int64_t g_t0;

static void port_segment(const struct tev *e0, void *arg)
{
    (void)arg;
    struct tev e = *e0;
    uint16_t lo = e.sport < e.dport ? e.sport : e.dport, hi = e.sport < e.dport ? e.dport : e.sport;
    int k, free_slot = -1;
    for (k = 0; k < nconns; k++) {
        if (conns[k].a == lo && conns[k].b == hi && !conns[k].done)
            break;
        if (conns[k].done && free_slot < 0)
            free_slot = k;
    }
    if (k == nconns) { /* a new connection: a fresh slot, or one that ended */
        if (nconns < 256)
            nconns++;
        else if (free_slot >= 0)
            k = free_slot;
        else
            return;
        memset(&conns[k], 0, sizeof conns[k]);
        conns[k].a = lo;
        conns[k].b = hi;
    }
    struct conn_seen *c = &conns[k];
    int from_a = e.sport == lo;
    if (strstr(e.flags, "SYN")) {
        if (from_a && !c->have_a)
            c->isn_a = e.seq, c->have_a = 1;
        if (!from_a && !c->have_b)
            c->isn_b = e.seq, c->have_b = 1;
    }
    uint32_t rs = e.seq, ra = e.ack;
    if (from_a ? c->have_a : c->have_b)
        rs -= from_a ? c->isn_a : c->isn_b;
    if (e.ack && (from_a ? c->have_b : c->have_a))
        ra -= from_a ? c->isn_b : c->isn_a;
    e.seq = rs;
    e.ack = ra;
    if (g_t0 == 0)
        g_t0 = e.t_ns;
    if (g_json) {
        json_event(stdout, &e, g_t0);
    } else {
        printf("%10.1f  %5u -> %-5u  %-12s seq %-8u ack %-8u len %u\n",
               (double)(e.t_ns - g_t0) / 1000.0, e.sport, e.dport, e.flags, e.seq, e.ack, e.len);
    }
    fflush(stdout);
    if (strstr(e.flags, "FIN"))
        *(from_a ? &c->fin_a : &c->fin_b) = 1;
    if (strstr(e.flags, "RST") || (c->fin_a && c->fin_b && !strstr(e.flags, "FIN"))) {
        if (!c->done) {
            c->done = 1;
            nfinished++;
        }
    }
}

struct port_watch {
    uint16_t l[256], r[256];
    int st[256];
    int n;
};

static void port_state(uint16_t lp, uint16_t rp, int st, void *arg)
{
    struct port_watch *w = arg;
    int i;
    for (i = 0; i < w->n; i++)
        if (w->l[i] == lp && w->r[i] == rp)
            break;
    if (i == w->n) {
        if (w->n == 256)
            return;
        w->n++;
        w->l[i] = lp;
        w->r[i] = rp;
        w->st[i] = -1;
    }
    if (w->st[i] == st)
        return;
    w->st[i] = st;
    if (!g_capturing && st == 6) /* TIME_WAIT: without a capture, a connection ended */
        nfinished++;
    struct tev e;
    memset(&e, 0, sizeof e);
    e.t_ns = now_rt();
    if (g_t0 == 0)
        g_t0 = e.t_ns;
    e.type = TEV_STATE;
    e.lane = LANE_SERVER;
    e.lport = lp;
    e.rport = rp;
    snprintf(e.state, sizeof e.state, "%s", tcp_state_name(st));
    snprintf(e.source, sizeof e.source, "sock_diag");
    if (g_json)
        json_event(stdout, &e, g_t0);
    else
        printf("%10.1f  %5u -> %-5u  state %s\n", (double)(e.t_ns - g_t0) / 1000.0, lp, rp,
               e.state);
    fflush(stdout);
}

static int watch_port(int port, int count, const char *iface, const char *pcap_file)
{
    char why[256] = "";
    struct capture *cap = cap_open(iface, port, pcap_file, why, sizeof why);
    if (cap == NULL)
        fprintf(stderr, "ferry trace: %s; showing socket states only\n", why);
    g_capturing = cap != NULL;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    fprintf(stderr, "ferry trace: watching port %d%s\n", port,
            count > 0 ? "" : " (Ctrl-C to stop)");
    struct port_watch w = {.n = 0};
    while (!g_stop && (count <= 0 || nfinished < count)) {
        if (cap)
            cap_poll(cap, 20, port, port_segment, NULL);
        else {
            struct timespec ts = {0, 20000000};
            nanosleep(&ts, NULL); /* the poll interval of the state watcher */
        }
        tcp_diag_each((uint16_t)port, port_state, &w);
    }
    cap_close(cap);
    return CLI_OK;
}

/* --- the command ---------------------------------------------------------------------- */

static const char *const scenarios[] = {"normal",     "server-close",       "refused", "abort",
                                        "half-close", "simultaneous-close", "backlog"};

int cmd_trace(int argc, char **argv)
{
    enum { O_JSON = 1000, O_SVG, O_PCAP };
    static const struct option opts[] = {{"scenario", required_argument, 0, 's'},
                                         {"json", no_argument, 0, O_JSON},
                                         {"svg", required_argument, 0, O_SVG},
                                         {"pcap", required_argument, 0, O_PCAP},
                                         {"port", required_argument, 0, 'p'},
                                         {"count", required_argument, 0, 'n'},
                                         {"iface", required_argument, 0, 'i'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *scen = "normal", *svg = NULL, *pcap_file = NULL, *iface = "lo";
    int json = 0, port = 0, count = 0, c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":s:p:n:i:h", opts, NULL)) != -1) {
        switch (c) {
        case 's':
            scen = optarg;
            break;
        case O_JSON:
            json = 1;
            break;
        case O_SVG:
            svg = optarg;
            break;
        case O_PCAP:
            pcap_file = optarg;
            break;
        case 'p': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || v < 1 || v > 65535)
                return cli_usage("trace", "bad --port '%s' (1-65535)", optarg);
            port = (int)v;
            break;
        }
        case 'n': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || v < 1 || v > 1000000)
                return cli_usage("trace", "bad --count '%s'", optarg);
            count = (int)v;
            break;
        }
        case 'i':
            if (strlen(optarg) == 0 || strlen(optarg) > 15)
                return cli_usage("trace", "bad --iface '%s'", optarg);
            iface = optarg;
            break;
        case 'h':
            fputs(trace_help, stdout);
            return CLI_OK;
        case ':':
            return cli_usage("trace", "option '%s' needs a value", argv[optind - 1]);
        default:
            return cli_usage("trace", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return cli_usage("trace", "unexpected argument '%s'", argv[optind]);
    if (port) {
        g_json = json;
        return watch_port(port, count, iface, pcap_file);
    }
    int known = 0;
    for (size_t i = 0; i < sizeof scenarios / sizeof scenarios[0]; i++)
        known |= strcmp(scenarios[i], scen) == 0;
    if (!known)
        return cli_usage("trace",
                         "unknown scenario '%s' (normal, server-close, refused, abort, "
                         "half-close, simultaneous-close, backlog)",
                         scen);
    g_scen = scen;
    g_barrier = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (g_barrier == MAP_FAILED)
        return cli_fail(-errno, "trace: mmap");
    int attempts = strcmp(scen, "simultaneous-close") == 0 ? 20 : 1;

    int crossed = 0;
    for (int a = 0; a < attempts; a++) {
        nev = 0;
        g_port = cli_free_port();
        if (g_port < 0)
            return cli_fail(-errno, "trace: no free port");
        char why[256] = "";
        struct capture *cap = cap_open(iface, g_port, pcap_file, why, sizeof why);
        if (cap == NULL && a == 0)
            fprintf(stderr, "ferry trace: %s; showing calls and states only\n", why);
        run_scenario(cap);
        cap_close(cap);
        if (attempts > 1 && (crossed = fins_crossed()) != 0)
            break;
    }
    keep_ours();
    g_crossed = fins_crossed();
    relative();
    infer_all();
    qsort(evs, nev, sizeof *evs, ev_cmp);
    states_in_order();
    steps();
    int64_t t0 = nev ? evs[0].t_ns : 0;
    if (strcmp(scen, "simultaneous-close") == 0) {
        struct tev e;
        memset(&e, 0, sizeof e);
        e.t_ns = nev ? evs[nev - 1].t_ns : 0;
        e.type = TEV_NOTE;
        e.lane = LANE_WIRE;
        snprintf(e.note, sizeof e.note,
                 crossed ? "the two FINs crossed on the wire"
                         : "the FINs did not cross this time (one "
                           "was acknowledged before the other left)");
        ev_add(&e);
    }
    if (json) {
        for (size_t i = 0; i < nev; i++)
            json_event(stdout, &evs[i], t0);
    } else {
        printf("ferry trace: scenario %s, 127.0.0.1 port %d (~[STATE]: implied by a segment)\n",
               scen, g_port);
        print_diagram(t0);
    }
    if (svg) {
        char title[96];
        snprintf(title, sizeof title, "ferry trace --scenario %s", scen);
        if (write_svg(svg, t0, title) != 0)
            return cli_fail(-errno, "trace: write %s", svg);
    }
    free(evs);
    evs = NULL;
    return CLI_OK;
}
