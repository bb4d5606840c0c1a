/*
 * demo.c - `make demo`: several processes share a region and update it
 * under a semaphore and under the robust mutex; one of them is SIGKILLed in
 * the middle of an update, and the others recover and finish the job.
 *
 * Every step is synchronised by a pipe ("I hold it now"), never by sleeping.
 */
#include <ferry.h>

#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

enum { WORKERS = 3, ITER = 100000, VICTIM_DONE = 12345 };

struct shared {
    ferry_mutex lock;
    uint64_t sem_counter; /* guarded by the semaphore */
    uint64_t mutex_a;     /* guarded by the mutex; invariant a == b */
    uint64_t mutex_b;
    uint64_t repairs; /* how many times someone found a dead owner */
};

static int quiet;

__attribute__((format(printf, 1, 2))) static void say(const char *fmt, ...)
{
    if (quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fflush(stdout);
}

/* Starts the next numbered section: the numbers follow the order the
 * sections run in, so none is skipped or repeated. */
static void section(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void section(const char *fmt, ...)
{
    static int number;
    if (quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    printf("\n%d. ", ++number);
    vprintf(fmt, ap);
    va_end(ap);
    fflush(stdout);
}

static int die(const char *what)
{
    fprintf(stderr, "demo: %s: %s\n", what, ferry_errdetail());
    return 1;
}

static int init_shared(void *mem, size_t size, void *arg)
{
    (void)size, (void)arg;
    return ferry_mutex_init(&((struct shared *)mem)->lock);
}

static int lock_repairing(struct shared *sh)
{
    int rc = ferry_mutex_lock(&sh->lock);
    if (rc == FERRY_EOWNERDEAD) {
        /* The previous owner died between a++ and b++: finish its update. */
        say("  [pid %d] lock came with 'previous owner died': a=%llu b=%llu, repairing\n",
            (int)getpid(), (unsigned long long)sh->mutex_a, (unsigned long long)sh->mutex_b);
        sh->mutex_b = sh->mutex_a;
        sh->repairs++;
        rc = ferry_mutex_consistent(&sh->lock);
    }
    return rc;
}

static pid_t spawn(void (*fn)(struct shared *, ferry_sem *, int), struct shared *sh, ferry_sem *sem,
                   int ready_fd)
{
    pid_t pid = fork();
    if (pid == 0) {
        fn(sh, sem, ready_fd);
        _exit(0);
    }
    return pid;
}

static void sem_worker(struct shared *sh, ferry_sem *sem, int fd)
{
    (void)fd;
    for (int i = 0; i < ITER; i++) {
        if (ferry_sem_wait(sem) != 0)
            _exit(1);
        sh->sem_counter++;
        ferry_sem_post(sem);
    }
}

static void sem_victim(struct shared *sh, ferry_sem *sem, int fd)
{
    for (int i = 0; i < VICTIM_DONE; i++) {
        ferry_sem_wait(sem);
        sh->sem_counter++;
        ferry_sem_post(sem);
    }
    ferry_sem_wait(sem); /* takes the unit ... */
    if (write(fd, "h", 1) != 1)
        _exit(1);
    for (;;)
        pause(); /* ... and is killed holding it */
}

static void mutex_worker(struct shared *sh, ferry_sem *sem, int fd)
{
    (void)sem, (void)fd;
    for (int i = 0; i < ITER; i++) {
        if (lock_repairing(sh) != 0)
            _exit(1);
        sh->mutex_a++;
        sh->mutex_b++;
        ferry_mutex_unlock(&sh->lock);
    }
}

static void mutex_victim(struct shared *sh, ferry_sem *sem, int fd)
{
    (void)sem;
    for (int i = 0; i < VICTIM_DONE; i++) {
        lock_repairing(sh);
        sh->mutex_a++;
        sh->mutex_b++;
        ferry_mutex_unlock(&sh->lock);
    }
    lock_repairing(sh);
    sh->mutex_a++; /* half an update: b not yet */
    if (write(fd, "h", 1) != 1)
        _exit(1);
    for (;;)
        pause();
}

static int reap(pid_t pid)
{
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int list_one(const ferry_objinfo *o, void *arg)
{
    const char *prefix = arg;
    if (strncmp(o->name, prefix, strlen(prefix)) == 0)
        say("  %-6s %-28s creator %d (%s), %d attached\n",
            o->kind == FERRY_KIND_SEM ? "sem" : "region", o->name, o->creator_pid,
            o->creator_alive ? "alive" : "dead", o->attached);
    return 0;
}

/* Runs one phase: WORKERS workers plus a victim that is killed holding the
 * lock. Returns the number of workers that failed. */
static int phase(void (*worker)(struct shared *, ferry_sem *, int),
                 void (*victim)(struct shared *, ferry_sem *, int), struct shared *sh,
                 ferry_sem *sem)
{
    int fds[2];
    if (pipe(fds) != 0)
        return 1;
    pid_t v = spawn(victim, sh, sem, fds[1]);
    pid_t w[WORKERS];
    char c;
    if (read(fds[0], &c, 1) != 1)
        return 1;
    say("  victim %d holds the lock; starting %d workers and killing the victim\n", (int)v,
        WORKERS);
    for (int i = 0; i < WORKERS; i++)
        w[i] = spawn(worker, sh, sem, -1);
    kill(v, SIGKILL);
    int failed = 0;
    say("  victim %d: %s\n", (int)v, reap(v) == 128 + SIGKILL ? "killed by SIGKILL" : "?");
    for (int i = 0; i < WORKERS; i++)
        failed += reap(w[i]) != 0;
    close(fds[0]);
    close(fds[1]);
    return failed;
}

/* --- messaging over shm:// ------------------------------------------------ */

static ferry_socket *open_sock(int type)
{
    ferry_socket *s;
    if (ferry_socket_open(&s, type) != 0) {
        die("socket");
        _exit(1);
    }
    ferry_setopt_int(s, FERRY_OPT_RCVTIMEO, 10000);
    ferry_setopt_int(s, FERRY_OPT_SNDTIMEO, 10000);
    return s;
}

/* A REQ client: asks `n` questions, checks each answer is its own. */
static void req_client(const char *url, int id, int n, int ready_fd)
{
    ferry_socket *s = open_sock(FERRY_REQ);
    if (ferry_dial(s, url) != 0)
        _exit(1);
    for (int i = 0; i < n; i++) {
        char q[32], a[64];
        size_t len;
        int ql = snprintf(q, sizeof q, "client %d question %d", id, i);
        if (ferry_send(s, q, (size_t)ql, 0) != 0 || ferry_recv(s, a, sizeof a, &len, 0) != 0)
            _exit(2);
        if (len != (size_t)ql + 7 || memcmp(a + 7, q, (size_t)ql) != 0)
            _exit(3); /* not the answer to this client's question */
        if (ready_fd >= 0 && i == 0 && write(ready_fd, "q", 1) != 1)
            _exit(4);
    }
    ferry_close(s);
    _exit(0);
}

/* The client of the REQ/REP over tcp:// section: pyzmq (Debian's python3-zmq, libzmq inside),
 * a different implementation of the same wire protocol. */
static const char pyzmq_client[] = "import sys\n"
                                   "try:\n"
                                   "    import zmq\n"
                                   "except ImportError:\n"
                                   "    sys.exit(3)\n"
                                   "s = zmq.Context().socket(zmq.REQ)\n"
                                   "s.RCVTIMEO = 5000\n"
                                   "s.connect(sys.argv[1])\n"
                                   "for i in range(5):\n"
                                   "    s.send_multipart([b'pyzmq', b'%d * 7' % i])\n"
                                   "    r = s.recv()\n"
                                   "    print('  pyzmq REQ got: ' + r.decode(), flush=True)\n"
                                   "    if r != b'%d' % (i * 7):\n"
                                   "        sys.exit(1)\n";

static int zmq_demo(void)
{
    section("REQ/REP over tcp://: a ferry REP serves a pyzmq REQ client (libzmq\n"
            "   underneath): ferry speaks ZMTP 3.1, ZeroMQ's wire protocol.\n");
    ferry_socket *rep = open_sock(FERRY_REP);
    char url[128];
    if (ferry_listen(rep, "tcp://127.0.0.1:*") != 0 || ferry_socket_addr(rep, url, sizeof url))
        return die("listen on tcp://127.0.0.1:*");
    say("  ferry REP listening at %s\n", url);
    pid_t py = fork();
    if (py == 0) { /* exec at once: nothing runs between fork and exec */
        execl("/usr/bin/python3", "python3", "-c", pyzmq_client, url, (char *)NULL);
        _exit(3);
    }
    int served = 0;
    for (;;) {
        char part[2][32];
        size_t len[2];
        int64_t more = 0;
        if (ferry_recv(rep, part[0], sizeof part[0] - 1, &len[0], 0) != 0)
            break;
        ferry_getopt_int(rep, FERRY_OPT_RCVMORE, &more);
        if (!more || ferry_recv(rep, part[1], sizeof part[1] - 1, &len[1], 0) != 0)
            break;
        part[1][len[1] < sizeof part[1] - 1 ? len[1] : sizeof part[1] - 1] = '\0';
        int x = 0, y = 0;
        sscanf(part[1], "%d * %d", &x, &y);
        char ans[16];
        int n = snprintf(ans, sizeof ans, "%d", x * y);
        if (ferry_send(rep, ans, (size_t)n, 0) != 0)
            break;
        if (++served == 5)
            break;
    }
    int rc = reap(py);
    ferry_close(rep);
    if (rc == 3) {
        say("  (skipped: /usr/bin/python3 with python3-zmq is not installed)\n");
        return 0;
    }
    say("  served %d requests from pyzmq: %s\n", served, rc == 0 && served == 5 ? "ok" : "FAILED");
    return rc == 0 && served == 5 ? 0 : 1;
}

/* The publisher of the proxy section: pyzmq on tcp://. An XPUB, so that it
 * starts once the eight subscriptions have come up through the proxy (it
 * filters as a PUB does); it prints its endpoint first. */
static const char pyzmq_pub[] = "import sys\n"
                                "try:\n"
                                "    import zmq\n"
                                "except ImportError:\n"
                                "    sys.exit(3)\n"
                                "p = zmq.Context().socket(zmq.XPUB)\n"
                                "p.RCVTIMEO = 10000\n"
                                "p.bind('tcp://127.0.0.1:*')\n"
                                "print(p.LAST_ENDPOINT.decode(), flush=True)\n"
                                "want = {b'\\x01' + t for t in sys.argv[1].encode().split()}\n"
                                "while want:\n"
                                "    want.discard(p.recv())\n"
                                "for i in range(50):\n"
                                "    for t in sys.argv[1].encode().split() + [b'omega']:\n"
                                "        p.send(t + b' %d' % i)\n"
                                "p.close(linger=5000)\n";

static const char *const fan_topics[] = {"alpha",   "beta", "gamma", "delta",
                                         "epsilon", "zeta", "eta",   "theta"};
#define FAN_SUBS ((int)(sizeof fan_topics / sizeof fan_topics[0]))

/* A local subscriber of the proxy section: its topic's 50 messages, in
 * order, over shm://. */
static void fan_sub(const char *url, int t)
{
    ferry_socket *s = open_sock(FERRY_SUB);
    ferry_setopt(s, FERRY_OPT_SUBSCRIBE, fan_topics[t], strlen(fan_topics[t]));
    if (ferry_dial(s, url) != 0)
        _exit(1);
    for (int i = 0; i < 50; i++) {
        char m[32], want[32];
        size_t n;
        int wl = snprintf(want, sizeof want, "%s %d", fan_topics[t], i);
        if (ferry_recv(s, m, sizeof m, &n, 0) != 0 || n != (size_t)wl || memcmp(m, want, n) != 0)
            _exit(2);
    }
    say("  SUB %-7s (pid %d, shm://): 50 messages, in order\n", fan_topics[t], (int)getpid());
    ferry_close(s);
    _exit(0);
}

struct proxy_run {
    ferry_socket *front, *back, *ctl;
    int rc;
};

static void *proxy_thread(void *arg)
{
    struct proxy_run *r = arg;
    r->rc = ferry_proxy(r->front, r->back, NULL, r->ctl);
    return NULL;
}

static int proxy_demo(void)
{
    section("A proxy bridges the network to shared memory: a pyzmq publisher on tcp://,\n"
            "   ferry_proxy (XSUB on tcp://, XPUB on shm://), eight local SUB processes.\n"
            "   Their subscriptions travel up to the publisher, which sends only those.\n");
    int out[2];
    if (pipe(out) != 0)
        return die("pipe");
    char topics[128] = "";
    for (int t = 0; t < FAN_SUBS; t++)
        snprintf(topics + strlen(topics), sizeof topics - strlen(topics), "%s%s", t ? " " : "",
                 fan_topics[t]);
    pid_t py = fork();
    if (py == 0) {
        dup2(out[1], 1);
        execl("/usr/bin/python3", "python3", "-c", pyzmq_pub, topics, (char *)NULL);
        _exit(3);
    }
    close(out[1]);
    char ep[128] = "";
    ssize_t got = read(out[0], ep, sizeof ep - 1);
    close(out[0]);
    if (got <= 0) {
        say("  (skipped: /usr/bin/python3 with python3-zmq is not installed)\n");
        reap(py);
        return 0;
    }
    ep[strcspn(ep, "\n")] = '\0';
    say("  pyzmq publisher at %s\n", ep);
    char fan[64], ctlurl[64];
    snprintf(fan, sizeof fan, "shm://demo.%d.fan", (int)getpid());
    snprintf(ctlurl, sizeof ctlurl, "shm://demo.%d.ctl", (int)getpid());
    pid_t subs[FAN_SUBS]; /* forked before this process has threads; they dial ahead of the proxy */
    for (int t = 0; t < FAN_SUBS; t++)
        if ((subs[t] = fork()) == 0)
            fan_sub(fan, t);
    struct proxy_run r = {.front = open_sock(FERRY_XSUB),
                          .back = open_sock(FERRY_XPUB),
                          .ctl = open_sock(FERRY_PAIR)};
    ferry_socket *ctl = open_sock(FERRY_PAIR);
    if (ferry_dial(r.front, ep) != 0 || ferry_listen(r.back, fan) != 0 ||
        ferry_listen(r.ctl, ctlurl) != 0 || ferry_dial(ctl, ctlurl) != 0)
        return die("proxy sockets");
    pthread_t thr;
    if (pthread_create(&thr, NULL, proxy_thread, &r) != 0)
        return die("proxy thread");
    say("  ferry_proxy: %s -> %s\n", ep, fan);
    int bad = 0;
    for (int t = 0; t < FAN_SUBS; t++)
        bad += reap(subs[t]) != 0;
    bad += reap(py) != 0;
    uint64_t v[9] = {0};
    ferry_send(ctl, "STATISTICS", 10, 0);
    for (int i = 0; i < 9; i++) {
        size_t n;
        ferry_recv(ctl, &v[i], sizeof v[i], &n, 0);
    }
    ferry_send(ctl, "TERMINATE", 9, 0);
    pthread_join(thr, NULL);
    say("  the proxy took %llu messages from the network, once each, for %d subscribers\n"
        "  (the 50 'omega' nobody subscribed to never left the publisher): %s\n",
        (unsigned long long)v[0], FAN_SUBS, !bad && v[0] == 50u * FAN_SUBS ? "ok" : "FAILED");
    ferry_close(ctl);
    ferry_close(r.ctl);
    ferry_close(r.front);
    ferry_close(r.back);
    return bad || v[0] != 50u * FAN_SUBS || r.rc != 0;
}

static int messaging_demo(void)
{
    char url[64];
    int bad = 0;
    snprintf(url, sizeof url, "shm://demo.%d.rep", (int)getpid());
    section("REQ/REP over %s: one REP serves three REQ processes through\n"
            "   shared-memory rings; a fourth REQ is SIGKILLed mid-conversation.\n",
            url);
    int fds[2];
    if (pipe(fds) != 0)
        return 1;
    pid_t clients[4];
    for (int k = 0; k < 3; k++)
        if ((clients[k] = fork()) == 0)
            req_client(url, k, 1000, -1);
    if ((clients[3] = fork()) == 0)
        req_client(url, 3, 1000000, fds[1]);
    /* The clients were forked first: a process should fork before it starts
     * threads (a socket has an I/O thread), and they dial before anyone
     * listens: ferry_dial keeps trying until the REP is there. */
    ferry_socket *rep = open_sock(FERRY_REP);
    if (ferry_listen(rep, url) != 0)
        return die("listen");
    int served = 0, killed = 0, finished = 0, ok = 0;
    char q[64], a[80];
    size_t len;
    ferry_setopt_int(rep, FERRY_OPT_RCVTIMEO, 20); /* to look around now and then */
    while (finished < 3 || !killed) {              /* client 3 is killed once it talks */
        if (!killed) {
            char c;
            struct timeval tv = {0, 0};
            fd_set rf;
            FD_ZERO(&rf);
            FD_SET(fds[0], &rf);
            if (select(fds[0] + 1, &rf, NULL, NULL, &tv) == 1 && read(fds[0], &c, 1) == 1) {
                kill(clients[3], SIGKILL);
                killed = 1;
                say("  killed REQ client %d (SIGKILL) while it was talking to us\n",
                    (int)clients[3]);
            }
        }
        for (int k = 0; k < 3; k++) {
            int st;
            if (clients[k] > 0 && waitpid(clients[k], &st, WNOHANG) == clients[k]) {
                finished++;
                ok += WIFEXITED(st) && WEXITSTATUS(st) == 0;
                clients[k] = -1;
            }
        }
        int rc = ferry_recv(rep, q, sizeof q, &len, 0);
        if (rc == FERRY_ETIMEDOUT)
            continue;
        if (rc != 0)
            break;
        memcpy(a, "answer ", 7);
        memcpy(a + 7, q, len);
        if (ferry_send(rep, a, len + 7, 0) != 0)
            break;
        served++;
    }
    reap(clients[3]);
    int64_t dropped;
    ferry_getopt_int(rep, FERRY_OPT_DROPPED, &dropped);
    say("  served %d requests; %d of the 3 clients got their own 1000 answers\n", served, ok);
    say("  (replies with nobody left to take them: %lld)\n", (long long)dropped);
    bad += ok != 3 || !killed;
    ferry_close(rep);
    close(fds[0]);
    close(fds[1]);

    snprintf(url, sizeof url, "shm://demo.%d.pub", (int)getpid());
    section("PUB/SUB over %s: two subscribers with different prefixes; the\n"
            "   publisher filters, so each ring carries only what its reader wants.\n",
            url);
    const char *prefixes[2] = {"temp.", "load."};
    pid_t subs[2];
    for (int k = 0; k < 2; k++) {
        if ((subs[k] = fork()) == 0) {
            ferry_socket *s = open_sock(FERRY_SUB);
            ferry_setopt_int(s, FERRY_OPT_RCVHWM, 0);
            /* one prefix: the publisher counts a subscriber once its first
             * subscription is in, so with two the second could be late */
            ferry_setopt(s, FERRY_OPT_SUBSCRIBE, prefixes[k], strlen(prefixes[k]));
            if (ferry_dial(s, url) != 0)
                _exit(1);
            char m[64];
            size_t n;
            int got = 0, other = 0;
            while (ferry_recv(s, m, sizeof m, &n, 0) == 0) {
                if (n == 8 && memcmp(m + 5, "end", 3) == 0) /* "temp.end", "load.end" */
                    break;
                if (memcmp(m, prefixes[k], 5) == 0)
                    got++;
                else
                    other++;
            }
            say("  subscriber %d (%s*): %d messages, %d of other topics\n", (int)getpid(),
                prefixes[k], got, other);
            _exit(got == 1000 && other == 0 ? 0 : 1);
        }
    }
    ferry_socket *pub = open_sock(FERRY_PUB); /* after the forks, as above */
    ferry_setopt_int(pub, FERRY_OPT_SNDHWM, 0);
    if (ferry_listen(pub, url) != 0)
        return die("listen");
    /* the publisher waits until both subscribers have subscribed */
    if (ferry_wait_peers(pub, 2, 10000) != 0)
        return die("wait for subscribers");
    for (int i = 0; i < 1000; i++) {
        char m[32];
        int n = snprintf(m, sizeof m, "temp.room%d %d", i % 4, 20 + i % 5);
        ferry_send(pub, m, (size_t)n, 0);
        n = snprintf(m, sizeof m, "load.cpu%d %d", i % 2, i % 100);
        ferry_send(pub, m, (size_t)n, 0);
        n = snprintf(m, sizeof m, "misc.%d", i);
        ferry_send(pub, m, (size_t)n, 0); /* nobody subscribed: filtered out */
    }
    ferry_send(pub, "temp.end", 8, 0);
    ferry_send(pub, "load.end", 8, 0);
    for (int k = 0; k < 2; k++)
        bad += reap(subs[k]) != 0;
    ferry_close(pub);
    bad += zmq_demo();
    return bad + proxy_demo();
}

/* The last section: `ferry trace` (the CLI beside this program) shows the
 * socket calls, segments and states of one real TCP connection. */
static int trace_demo(void)
{
    section("Under the sockets: one TCP connection's set-up and teardown, as\n"
            "   `ferry trace` shows them (calls, segments and states on one clock).\n\n");
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 16);
    if (n <= 0)
        return 0;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    strcpy(slash + 1, "ferry");
    if (access(exe, X_OK) != 0) {
        say("  (skipped: %s not built)\n", exe);
        return 0;
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        if (quiet) { /* the test run checks it works, not what it prints */
            int fd = open("/dev/null", O_WRONLY);
            dup2(fd, 1);
        }
        execl(exe, "ferry", "trace", "--scenario", "normal", (char *)NULL);
        _exit(127);
    }
    return reap(pid) != 0;
}

int main(int argc, char **argv)
{
    quiet = argc > 1 && strcmp(argv[1], "--quiet") == 0;
    char rname[64], sname[64];
    snprintf(rname, sizeof rname, "demo.%d.state", (int)getpid());
    snprintf(sname, sizeof sname, "demo.%d.lock", (int)getpid());

    ferry_shm *shm;
    ferry_sem *sem;
    ferry_shm_opts o = {.init = init_shared};
    if (ferry_shm_open(&shm, rname, sizeof(struct shared), FERRY_CREATE | FERRY_EXCL, &o) < 0)
        return die("create region");
    if (ferry_sem_open(&sem, sname, FERRY_CREATE | FERRY_EXCL | FERRY_SEM_UNDO, 0, 1) < 0)
        return die("create semaphore");
    struct shared *sh = ferry_shm_addr(shm);
    say("ferry %s demo: processes sharing one region\n\n", ferry_version());
    char prefix[32];
    snprintf(prefix, sizeof prefix, "demo.%d.", (int)getpid());
    ferry_objects_list(list_one, prefix);

    int bad = 0;
    section("%d workers add 1 to a counter %d times each under the semaphore (undo kind).\n",
            WORKERS, ITER);
    bad += phase(sem_worker, sem_victim, sh, sem);
    uint64_t want = (uint64_t)WORKERS * ITER + VICTIM_DONE;
    say("  the kernel gave the dead victim's unit back; semaphore value now %d\n",
        ferry_sem_value(sem));
    say("  counter = %llu, expected %d x %d + %d by the victim = %llu: %s\n",
        (unsigned long long)sh->sem_counter, WORKERS, ITER, VICTIM_DONE, (unsigned long long)want,
        sh->sem_counter == want ? "exact" : "WRONG");
    bad += sh->sem_counter != want;

    section("The same under the robust mutex; the victim dies between a++ and b++.\n");
    bad += phase(mutex_worker, mutex_victim, sh, sem);
    want = (uint64_t)WORKERS * ITER + VICTIM_DONE + 1;
    say("  a = %llu, b = %llu, repairs = %llu (expected a = b = %llu, 1 repair): %s\n",
        (unsigned long long)sh->mutex_a, (unsigned long long)sh->mutex_b,
        (unsigned long long)sh->repairs, (unsigned long long)want,
        sh->mutex_a == want && sh->mutex_b == want && sh->repairs == 1 ? "consistent" : "WRONG");
    bad += !(sh->mutex_a == want && sh->mutex_b == want && sh->repairs == 1);

    bad += messaging_demo();

    section("Clean up: the objects as `ferry ls` shows them, then removed.\n");
    ferry_objects_list(list_one, prefix);
    ferry_sem_close(sem);
    ferry_shm_close(shm);
    ferry_object_remove(sname);
    ferry_object_remove(rname);
    bad += trace_demo();
    say("\n%s\n", bad ? "demo FAILED" : "demo finished: the survivors recovered every time.");
    return bad ? 1 : 0;
}
