/*
 * cmd_proxy.c - `ferry proxy`: ferry_proxy between two sockets, as a
 * program: a broker or a forwarder that bridges transports (a remote
 * tcp:// publisher fanned out to local shm:// subscribers).
 *
 * The proxy runs in a thread of its own; the main thread keeps every
 * signal to itself (sigtimedwait) and steers the proxy through a PAIR
 * control socket on an abstract ipc:// name only this process knows:
 * SIGINT/SIGTERM send TERMINATE (the proxy delivers what it holds, the
 * sockets close with linger, exit 0), SIGUSR1 and --stats send STATISTICS
 * and print the answer on stderr.
 */
#include "cli.h"
#include "curve_cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdatomic.h>
#include <sys/random.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char proxy_help[] =
    "usage: ferry proxy --type KIND (--frontend URL | --frontend-connect URL)...\n"
    "                   (--backend URL | --backend-connect URL)...\n"
    "                   [--capture URL] [--stats SECONDS] [--ring-size BYTES]\n"
    "                   [--lazy-rings]\n"
    "\n"
    "Move messages between a frontend and a backend socket, both ways where the\n"
    "types allow, until SIGINT or SIGTERM (then what the proxy holds is\n"
    "delivered, the sockets close with linger, and it exits 0). KIND:\n"
    "  xsub-xpub      a forwarder: publishers connect to (or are reached by) the\n"
    "                 frontend XSUB, subscribers to the backend XPUB; their\n"
    "                 subscriptions travel up to the publishers\n"
    "  router-dealer  a broker: REQ or DEALER clients on the frontend ROUTER, REP\n"
    "                 or DEALER workers on the backend DEALER\n"
    "  pull-push      a streamer: one way, frontend to backend\n"
    "Any transport on either side: a tcp:// publisher fanned out to local\n"
    "subscribers over shm:// reaches the machine once.\n"
    "\n"
    "  -t, --type KIND             xsub-xpub | router-dealer | pull-push\n"
    "  -f, --frontend URL          listen at URL (repeatable)\n"
    "      --frontend-connect URL  dial URL instead (repeatable)\n"
    "  -b, --backend URL           listen at URL (repeatable)\n"
    "      --backend-connect URL   dial URL instead (repeatable)\n"
    "      --capture URL           also publish every message, both ways, on a\n"
    "                              PUB listening at URL\n"
    "      --stats SECONDS         print the statistics on stderr this often\n"
    "      --ring-size BYTES       shm:// rings of this size each way (4 KiB to\n"
    "                              256 MiB; a K or M suffix is KiB or MiB): those\n"
    "                              the proxy dials, and the largest of a peer's\n"
    "                              it populates; default 1M\n"
    "      --lazy-rings            leave a new shm:// connection's rings to fault\n"
    "                              in as traffic reaches them (by default the\n"
    "                              proxy populates them when the peer connects,\n"
    "                              some ms per MiB of ring on a VM, so the stream\n"
    "                              never waits on a first-touch page fault)\n"
    "  -h, --help\n"
    "\n"
    "SIGUSR1 prints the statistics on stderr at once: messages and bytes each\n"
    "side received and sent, and messages lost (a destination that refused one\n"
    "for good). Nothing is lost to a full destination: the proxy stops taking\n"
    "from the other side until there is room. See ferry-proxy(1).\n"
    "\n"
    "The CURVE options below apply to each side (and the capture) that has a\n"
    "tcp:// or ipc:// endpoint; an shm:// side stays local and admits by uid.\n";

/* What a stop may take: delivering what is held, then each close. */
#define PROXY_STOP_MS 2000

struct endpoints {
    const char **url;
    int *dial;
    int n;
};

static void add(struct endpoints *e, const char *url, int dial)
{
    const char **u = realloc(e->url, (size_t)(e->n + 1) * sizeof *u);
    int *d = realloc(e->dial, (size_t)(e->n + 1) * sizeof *d);
    if (u == NULL || d == NULL) {
        fputs("ferry: out of memory\n", stderr);
        exit(CLI_FAIL);
    }
    u[e->n] = url;
    d[e->n] = dial;
    e->n++;
    e->url = u;
    e->dial = d;
}

/* 1 if a side reaches beyond the host (where CURVE applies). */
static int networked(const struct endpoints *e)
{
    for (int i = 0; i < e->n; i++)
        if (strncmp(e->url[i], "tcp://", 6) == 0 || strncmp(e->url[i], "ipc://", 6) == 0)
            return 1;
    return 0;
}

/* The command line, parsed (parse_args). */
struct args {
    struct endpoints fe, be;
    struct cli_curve curve;
    const char *capture;
    int ft, bt;
    int lazy;     /* --lazy-rings */
    int64_t ring; /* --ring-size, 0: the default */
    long stats_s;
};

/* One side's socket, with the command line's options, listening and
 * dialing where it says. 0, or the exit code. */
static int open_side(const char *what, int type, const struct endpoints *e, const struct args *a,
                     ferry_socket **out)
{
    ferry_socket *s;
    int rc = ferry_socket_open(&s, type);
    if (rc != 0)
        return cli_fail(rc, "proxy: %s socket", what);
    if (networked(e) && (rc = cli_curve_apply(&a->curve, s, "proxy")) >= 0) {
        ferry_close(s);
        return rc;
    }
    /* bounds the delivery of what the proxy holds when it is stopped (its
     * own sends never wait otherwise), and the close's linger */
    ferry_setopt_int(s, FERRY_OPT_SNDTIMEO, PROXY_STOP_MS);
    ferry_setopt_int(s, FERRY_OPT_LINGER, PROXY_STOP_MS);
    /* A proxy is long-lived and streams: its rings' pages are paid for
     * once at set-up, not as faults in the middle of the traffic. */
    ferry_setopt_int(s, FERRY_OPT_RING_PREFAULT, !a->lazy);
    if (a->ring > 0)
        ferry_setopt_int(s, FERRY_OPT_RING_SIZE, a->ring); /* checked by parse_args */
    for (int i = 0; i < e->n; i++) {
        rc = e->dial[i] ? ferry_dial(s, e->url[i]) : ferry_listen(s, e->url[i]);
        if (rc != 0) {
            int code = rc == FERRY_EBADURL ? CLI_USAGE : CLI_FAIL;
            cli_fail(rc, "proxy: %s: %s %s", what, e->dial[i] ? "connect" : "listen", e->url[i]);
            ferry_close(s);
            return code;
        }
        char ep[160];
        if (!e->dial[i] && (strstr(e->url[i], ":*") || strstr(e->url[i], ":0")) &&
            ferry_socket_addr(s, ep, sizeof ep) == 0)
            fprintf(stderr, "ferry proxy: %s listening at %s\n", what, ep);
    }
    *out = s;
    return 0;
}

struct run {
    ferry_socket *front, *back, *capture, *control;
    int rc;
    atomic_int ended;
};

static void *proxy_main(void *arg)
{
    struct run *r = arg;
    r->rc = ferry_proxy(r->front, r->back, r->capture, r->control);
    atomic_store(&r->ended, 1);
    kill(getpid(), SIGUSR2); /* the main thread waits in sigtimedwait */
    return NULL;
}

/* Asks for the statistics and prints them on stderr. */
static void print_stats(ferry_socket *ctl)
{
    uint64_t v[9] = {0};
    if (ferry_send(ctl, "STATISTICS", 10, 0) != 0)
        return;
    for (int i = 0; i < 9; i++) {
        size_t n;
        if (ferry_recv(ctl, &v[i], sizeof v[i], &n, 0) != 0)
            return;
    }
    fprintf(stderr,
            "ferry proxy: frontend received %" PRIu64 " messages (%" PRIu64 " B), sent %" PRIu64
            " (%" PRIu64 " B); backend received %" PRIu64 " (%" PRIu64 " B), sent %" PRIu64
            " (%" PRIu64 " B); lost %" PRIu64 "\n",
            v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8]);
}

static int parse_kind(const char *s, int *front, int *back)
{
    if (strcmp(s, "xsub-xpub") == 0)
        *front = FERRY_XSUB, *back = FERRY_XPUB;
    else if (strcmp(s, "router-dealer") == 0)
        *front = FERRY_ROUTER, *back = FERRY_DEALER;
    else if (strcmp(s, "pull-push") == 0)
        *front = FERRY_PULL, *back = FERRY_PUSH;
    else
        return -1;
    return 0;
}

/* The control pair: the proxy's end listens on a name only we know. */
static int open_control(struct run *r, ferry_socket **ctl)
{
    /* a name nobody can guess and take first (abstract names have no
     * permissions; the peer-uid check keeps other users from connecting) */
    uint64_t nonce = 0;
    if (getrandom(&nonce, sizeof nonce, 0) != (ssize_t)sizeof nonce)
        nonce = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    char url[96];
    snprintf(url, sizeof url, "ipc://@ferry-proxy-%d-%016llx", (int)getpid(),
             (unsigned long long)nonce);
    int rc = ferry_socket_open(&r->control, FERRY_PAIR);
    if (rc == 0)
        rc = ferry_listen(r->control, url);
    if (rc == 0)
        rc = ferry_socket_open(ctl, FERRY_PAIR);
    if (rc == 0)
        rc = ferry_dial(*ctl, url);
    if (rc == 0)
        rc = ferry_setopt_int(*ctl, FERRY_OPT_RCVTIMEO, 10000);
    return rc == 0 ? 0 : cli_fail(rc, "proxy: control socket");
}

/* Waits for signals; steers the proxy. Returns when it ended. */
static void steer(struct run *r, ferry_socket *ctl, const sigset_t *set, long stats_s)
{
    for (;;) {
        struct timespec ts = {.tv_sec = stats_s > 0 ? stats_s : 3600};
        int sig = sigtimedwait(set, NULL, &ts);
        if (sig == SIGINT || sig == SIGTERM) {
            ferry_send(ctl, "TERMINATE", 9, 0);
            return;
        }
        if (atomic_load(&r->ended)) /* by itself (an error); a stray SIGUSR2 is not it */
            return;
        if (sig == SIGUSR1 || (sig < 0 && errno == EAGAIN && stats_s > 0))
            print_stats(ctl);
    }
}

static void endpoints_free(struct endpoints *e)
{
    free(e->url);
    free(e->dial);
}

/* A ring size: digits, then K (KiB) or M (MiB) or nothing, 4 KiB to
 * 256 MiB. 0, or -1. */
static int parse_bytes(const char *arg, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(arg, &end, 10);
    if (errno || end == arg || v <= 0)
        return -1;
    if (*end == 'K' || *end == 'k')
        v = v > (256LL << 10) ? -1 : v << 10, end++;
    else if (*end == 'M' || *end == 'm')
        v = v > 256 ? -1 : v << 20, end++;
    if (*end != '\0' || v < 4096 || v > (256LL << 20))
        return -1;
    *out = v;
    return 0;
}

/* The command line into *a. -1 to go on, else the exit code. */
static int parse_args(int argc, char **argv, struct args *a)
{
    enum { O_FCONNECT = 1000, O_BCONNECT, O_CAPTURE, O_STATS, O_LAZY, O_RING };
    static const struct option opts[] = {{"type", required_argument, 0, 't'},
                                         {"frontend", required_argument, 0, 'f'},
                                         {"frontend-connect", required_argument, 0, O_FCONNECT},
                                         {"backend", required_argument, 0, 'b'},
                                         {"backend-connect", required_argument, 0, O_BCONNECT},
                                         {"capture", required_argument, 0, O_CAPTURE},
                                         {"stats", required_argument, 0, O_STATS},
                                         {"lazy-rings", no_argument, 0, O_LAZY},
                                         {"ring-size", required_argument, 0, O_RING},
                                         {"help", no_argument, 0, 'h'},
                                         CLI_CURVE_OPTIONS,
                                         {0, 0, 0, 0}};
    const char *kind = NULL;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":t:f:b:h", opts, NULL)) != -1) {
        char *end;
        if (cli_curve_opt(&a->curve, c, optarg))
            continue;
        switch (c) {
        case 't':
            kind = optarg;
            break;
        case 'f':
        case O_FCONNECT:
            add(&a->fe, optarg, c == O_FCONNECT);
            break;
        case 'b':
        case O_BCONNECT:
            add(&a->be, optarg, c == O_BCONNECT);
            break;
        case O_CAPTURE:
            a->capture = optarg;
            break;
        case O_STATS:
            errno = 0;
            a->stats_s = strtol(optarg, &end, 10);
            if (errno || end == optarg || *end || a->stats_s < 1 || a->stats_s > 86400)
                return cli_usage("proxy", "--stats: a number of seconds, 1 to 86400");
            break;
        case O_LAZY:
            a->lazy = 1;
            break;
        case O_RING:
            if (parse_bytes(optarg, &a->ring) != 0)
                return cli_usage("proxy", "--ring-size: bytes from 4096 to 268435456 (or 4K to "
                                          "256M)");
            break;
        case 'h':
            fputs(proxy_help, stdout);
            fputs(cli_curve_help, stdout);
            return CLI_OK;
        case ':':
            return cli_usage("proxy", "option '%s' needs a value", argv[optind - 1]);
        default:
            return cli_usage("proxy", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return cli_usage("proxy", "unexpected argument '%s'", argv[optind]);
    if (kind == NULL || parse_kind(kind, &a->ft, &a->bt) != 0)
        return cli_usage("proxy", "--type: xsub-xpub, router-dealer or pull-push");
    if (a->fe.n == 0 || a->be.n == 0)
        return cli_usage("proxy", "a frontend and a backend endpoint are needed");
    return cli_curve_check(&a->curve, "proxy");
}

/* Opens the sockets, runs the proxy in a thread, steers it; exit code. */
static int run_proxy(const struct args *a)
{
    /* every signal to the main thread: the proxy thread inherits the mask */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct run r = {0};
    ferry_socket *ctl = NULL;
    int rc = open_side("frontend", a->ft, &a->fe, a, &r.front);
    if (rc == 0)
        rc = open_side("backend", a->bt, &a->be, a, &r.back);
    if (rc == 0 && a->capture != NULL) {
        struct endpoints ce = {0};
        add(&ce, a->capture, 0);
        rc = open_side("capture", FERRY_PUB, &ce, a, &r.capture);
        endpoints_free(&ce);
    }
    if (rc == 0)
        rc = open_control(&r, &ctl);
    pthread_t thr;
    if (rc == 0 && pthread_create(&thr, NULL, proxy_main, &r) != 0)
        rc = cli_fail(FERRY_ENOMEM, "proxy: thread");
    if (rc == 0) {
        steer(&r, ctl, &set, a->stats_s);
        pthread_join(thr, NULL);
        if (r.rc != 0)
            rc = cli_fail(r.rc, "proxy");
    }
    ferry_close(ctl);
    ferry_close(r.control);
    ferry_close(r.capture);
    ferry_close(r.front);
    ferry_close(r.back);
    return rc;
}

int cmd_proxy(int argc, char **argv)
{
    struct args a = {0};
    int rc = parse_args(argc, argv, &a);
    if (rc < 0)
        rc = run_proxy(&a);
    endpoints_free(&a.fe); /* on every way out, usage errors included */
    endpoints_free(&a.be);
    return rc;
}
