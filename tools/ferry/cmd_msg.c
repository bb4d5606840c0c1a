/*
 * cmd_msg.c - `ferry send` and `ferry recv`, like nngcat: a socket of any
 * type on any transport, messages from the command line or stdin, and
 * messages printed one per line (or raw).
 */
#include "cli.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char send_help[] =
    "usage: ferry send (--connect URL | --bind URL)... --type TYPE [options] MSG...\n"
    "       ferry send ... -          (one message per line of stdin, until EOF)\n"
    "\n"
    "Send each MSG as one message. TYPE: push, pub, req or pair. With --type req\n"
    "each reply is printed on stdout, one per line. Exits 0 once every message\n"
    "has been handed to a connected peer.\n"
    "\n"
    "  -c, --connect URL   dial URL (may come before the listener exists)\n"
    "  -b, --bind URL      listen at URL, and wait for a peer before sending\n"
    "  -t, --type TYPE     push | pub | req | pair\n"
    "      --timeout MS    give up (exit 1) when any wait exceeds MS\n"
    "      --raw           req: write replies as raw bytes, nothing added\n"
    "  -h, --help\n"
    "\n"
    "A pub waits for a subscriber that has subscribed to something (with\n"
    "--bind or --connect), then sends; a pub never blocks on a slow subscriber.\n"
    "URLs: shm://NAME, ipc:///path (or ipc://@name),\n"
    "tcp://HOST:PORT (ZMTP 3.1: any ZeroMQ peer can be the other side).\n";

static const char recv_help[] =
    "usage: ferry recv (--bind URL | --connect URL)... --type TYPE [options]\n"
    "\n"
    "Receive messages and print each on its own line. TYPE: pull, sub, rep or\n"
    "pair. Runs until -n COUNT messages arrived, or until SIGINT/SIGTERM (then\n"
    "exit 0).\n"
    "\n"
    "  -b, --bind URL        listen at URL\n"
    "  -c, --connect URL     dial URL (may come before the listener exists)\n"
    "  -t, --type TYPE       pull | sub | rep | pair\n"
    "  -s, --subscribe PFX   sub: receive messages starting with PFX (repeatable;\n"
    "                        none: everything)\n"
    "  -n, --count COUNT     exit 0 after COUNT messages\n"
    "      --reply TEXT      rep: answer every request with TEXT (default: echo)\n"
    "      --raw             print the message bytes exactly, nothing added\n"
    "      --timeout MS      exit 1 when no message arrives for MS\n"
    "  -h, --help\n"
    "\n"
    "Line format: the parts of a message are separated by one space; bytes\n"
    "that are not printable (and backslash) are written as \\xNN, so every\n"
    "message is exactly one line. URLs: shm://NAME, ipc:///path (or ipc://@name),\n"
    "tcp://HOST:PORT (ZMTP 3.1: any ZeroMQ peer can be the other side).\n";

struct msg_opts {
    const char *cmd;
    const char **bind, **connect;
    int nbind, nconnect;
    int type;
    const char **subs;
    int nsubs;
    long count;
    const char *reply;
    int raw;
    int timeout;
    char **msgs;
    int nmsgs;
};

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static int parse_type(const char *s)
{
    static const struct {
        const char *name;
        int type;
    } types[] = {{"pair", FERRY_PAIR}, {"pub", FERRY_PUB}, {"sub", FERRY_SUB},
                 {"req", FERRY_REQ},   {"rep", FERRY_REP}, {"push", FERRY_PUSH},
                 {"pull", FERRY_PULL}};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (strcmp(s, types[i].name) == 0)
            return types[i].type;
    return 0;
}

static int parse_long(const char *s, long min, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min)
        return -1;
    *out = v;
    return 0;
}

static int add(const char ***v, int *n, const char *s)
{
    const char **nv = realloc(*v, (size_t)(*n + 1) * sizeof *nv);
    if (nv == NULL)
        return -1;
    nv[(*n)++] = s;
    *v = nv;
    return 0;
}

/* Parses the options both commands share. Returns -1 on success, else
 * the exit code. */
static int parse(int argc, char **argv, struct msg_opts *o, const char *help,
                 const int *allowed_types)
{
    enum { O_TIMEOUT = 1000, O_REPLY, O_RAW };
    static const struct option opts[] = {{"connect", required_argument, 0, 'c'},
                                         {"bind", required_argument, 0, 'b'},
                                         {"type", required_argument, 0, 't'},
                                         {"subscribe", required_argument, 0, 's'},
                                         {"count", required_argument, 0, 'n'},
                                         {"timeout", required_argument, 0, O_TIMEOUT},
                                         {"reply", required_argument, 0, O_REPLY},
                                         {"raw", no_argument, 0, O_RAW},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int c;
    long v;
    o->timeout = -1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":c:b:t:s:n:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            add(&o->connect, &o->nconnect, optarg);
            break;
        case 'b':
            add(&o->bind, &o->nbind, optarg);
            break;
        case 't':
            o->type = parse_type(optarg);
            if (o->type == 0)
                return cli_usage(o->cmd, "unknown --type '%s'", optarg);
            break;
        case 's':
            add(&o->subs, &o->nsubs, optarg);
            break;
        case 'n':
            if (parse_long(optarg, 1, &o->count) != 0)
                return cli_usage(o->cmd, "bad --count '%s'", optarg);
            break;
        case O_TIMEOUT:
            if (parse_long(optarg, 0, &v) != 0 || v > 1000000000)
                return cli_usage(o->cmd, "bad --timeout '%s' (milliseconds)", optarg);
            o->timeout = (int)v;
            break;
        case O_REPLY:
            o->reply = optarg;
            break;
        case O_RAW:
            o->raw = 1;
            break;
        case 'h':
            fputs(help, stdout);
            return CLI_OK;
        case ':':
            return cli_usage(o->cmd, "option '%s' needs a value", argv[optind - 1]);
        default:
            return cli_usage(o->cmd, "unknown option '%s'", argv[optind - 1]);
        }
    }
    o->msgs = argv + optind;
    o->nmsgs = argc - optind;
    if (o->type == 0)
        return cli_usage(o->cmd, "--type is required");
    int ok = 0;
    for (const int *t = allowed_types; *t; t++)
        ok |= *t == o->type;
    if (!ok)
        return cli_usage(o->cmd, "this --type cannot %s (see --help)", o->cmd);
    if (o->nbind + o->nconnect == 0)
        return cli_usage(o->cmd, "give --bind URL or --connect URL");
    if (o->nsubs && o->type != FERRY_SUB)
        return cli_usage(o->cmd, "--subscribe needs --type sub");
    if (o->reply && o->type != FERRY_REP)
        return cli_usage(o->cmd, "--reply needs --type rep");
    return -1;
}

/* Opens the socket and its endpoints. Returns -1 on success, else the exit
 * code (a bad URL is a usage error). */
static int open_socket(struct msg_opts *o, ferry_socket **out)
{
    ferry_socket *s;
    int rc = ferry_socket_open(&s, o->type);
    if (rc != 0)
        return cli_fail(rc, "%s: socket", o->cmd);
    if (o->timeout >= 0) {
        ferry_setopt_int(s, FERRY_OPT_RCVTIMEO, o->timeout);
        ferry_setopt_int(s, FERRY_OPT_SNDTIMEO, o->timeout);
    }
    for (int i = 0; i < o->nsubs; i++)
        ferry_setopt(s, FERRY_OPT_SUBSCRIBE, o->subs[i], strlen(o->subs[i]));
    if (o->type == FERRY_SUB && o->nsubs == 0)
        ferry_setopt(s, FERRY_OPT_SUBSCRIBE, "", 0);
    for (int i = 0; i < o->nbind + o->nconnect; i++) {
        int dial = i >= o->nbind;
        const char *url = dial ? o->connect[i - o->nbind] : o->bind[i];
        rc = dial ? ferry_dial(s, url) : ferry_listen(s, url);
        if (rc != 0) {
            int code = rc == FERRY_EBADURL ? CLI_USAGE : CLI_FAIL;
            cli_fail(rc, "%s: %s %s", o->cmd, dial ? "connect" : "listen", url);
            ferry_close(s);
            return code;
        }
        char ep[160];
        if (!dial && (strstr(url, ":*") || strstr(url, ":0")) &&
            ferry_socket_addr(s, ep, sizeof ep) == 0) /* say which port it got */
            fprintf(stderr, "ferry %s: listening at %s\n", o->cmd, ep);
    }
    *out = s;
    return -1;
}

static void msg_opts_free(struct msg_opts *o)
{
    free(o->bind);
    free(o->connect);
    free(o->subs);
}

static void print_part(const unsigned char *d, size_t n, int raw)
{
    if (raw) {
        fwrite(d, 1, n, stdout);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (d[i] >= 0x20 && d[i] < 0x7f && d[i] != '\\')
            putchar(d[i]);
        else
            printf("\\x%02x", d[i]);
    }
}

/* Receives a whole message and prints it; returns 0 or an error. */
static int recv_print(ferry_socket *s, int raw, ferry_msg **first_out)
{
    int more = 1, first = 1;
    while (more) {
        ferry_msg *m;
        int rc = ferry_msg_recv(s, &m, 0);
        if (rc != 0)
            return rc;
        if (!first && !raw)
            putchar(' ');
        print_part(ferry_msg_data(m), ferry_msg_size(m), raw);
        more = ferry_msg_more(m);
        if (first && first_out && !more)
            *first_out = m; /* the caller echoes it */
        else
            ferry_msg_free(m);
        first = 0;
    }
    if (!raw)
        putchar('\n');
    fflush(stdout);
    return 0;
}

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: blocked calls return EINTR */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

int cmd_recv(int argc, char **argv)
{
    static const int types[] = {FERRY_PULL, FERRY_SUB, FERRY_REP, FERRY_PAIR, 0};
    struct msg_opts o = {.cmd = "recv"};
    int rc = parse(argc, argv, &o, recv_help, types);
    if (rc >= 0)
        goto out;
    if (o.nmsgs > 0) {
        rc = cli_usage("recv", "unexpected argument '%s'", o.msgs[0]);
        goto out;
    }
    ferry_socket *s;
    if ((rc = open_socket(&o, &s)) >= 0)
        goto out;
    install_signals();
    /* Sleep in short slices so SIGINT/SIGTERM are seen promptly: a futex
     * wait is restarted by the kernel after a signal handler returns. */
    int slice = o.timeout >= 0 && o.timeout < 200 ? o.timeout : 200;
    ferry_setopt_int(s, FERRY_OPT_RCVTIMEO, slice);
    long got = 0;
    int waited = 0;
    rc = CLI_OK;
    while (!stop_requested && (o.count == 0 || got < o.count)) {
        ferry_msg *req = NULL;
        int r = recv_print(s, o.raw, o.type == FERRY_REP && !o.reply ? &req : NULL);
        if (r == FERRY_ETIMEDOUT || r == FERRY_EAGAIN || r == FERRY_EINTR) {
            waited += slice;
            if (o.timeout >= 0 && waited >= o.timeout) {
                fprintf(stderr, "ferry: recv: no message within %d ms\n", o.timeout);
                rc = CLI_FAIL;
                break;
            }
            continue;
        }
        if (r != 0) {
            rc = cli_fail(r, "recv");
            break;
        }
        waited = 0;
        got++;
        if (o.type == FERRY_REP) {
            if (o.reply)
                r = ferry_send(s, o.reply, strlen(o.reply), 0);
            else if (req)
                r = ferry_send(s, ferry_msg_data(req), ferry_msg_size(req), 0);
            else
                r = ferry_send(s, "", 0, 0); /* a multipart request: empty reply */
            ferry_msg_free(req);
            if (r != 0) {
                rc = cli_fail(r, "recv: reply");
                break;
            }
        }
    }
    ferry_close(s);
out:
    msg_opts_free(&o);
    return rc;
}

/* Sends one message; for req, receives and prints the reply. */
static int send_one(ferry_socket *s, struct msg_opts *o, const char *msg, size_t len)
{
    int rc = ferry_send(s, msg, len, 0);
    if (rc != 0)
        return cli_fail(rc, "send");
    if (o->type == FERRY_REQ) {
        rc = recv_print(s, o->raw, NULL);
        if (rc != 0)
            return cli_fail(rc, "send: reply");
    }
    return CLI_OK;
}

int cmd_send(int argc, char **argv)
{
    static const int types[] = {FERRY_PUSH, FERRY_PUB, FERRY_REQ, FERRY_PAIR, 0};
    struct msg_opts o = {.cmd = "send"};
    int rc = parse(argc, argv, &o, send_help, types);
    if (rc >= 0)
        goto out;
    if (o.nmsgs == 0) {
        rc = cli_usage("send", "no message given (use - to read lines from stdin)");
        goto out;
    }
    if (o.count || o.nsubs) {
        rc = cli_usage("send", "-n and --subscribe are recv options");
        goto out;
    }
    ferry_socket *s;
    if ((rc = open_socket(&o, &s)) >= 0)
        goto out;
    signal(SIGPIPE, SIG_IGN);
    rc = CLI_OK;
    if (o.nbind > 0 || o.type == FERRY_PUB) {
        int r = ferry_wait_peers(s, 1, o.timeout);
        if (r != 0) {
            rc = cli_fail(r, "send: waiting for a %s", o.type == FERRY_PUB ? "subscriber" : "peer");
            goto done;
        }
    }
    for (int i = 0; i < o.nmsgs && rc == CLI_OK; i++) {
        if (strcmp(o.msgs[i], "-") != 0) {
            rc = send_one(s, &o, o.msgs[i], strlen(o.msgs[i]));
            continue;
        }
        char *line = NULL;
        size_t cap = 0;
        ssize_t n;
        while (rc == CLI_OK && (n = getline(&line, &cap, stdin)) >= 0) {
            if (n > 0 && line[n - 1] == '\n')
                n--;
            rc = send_one(s, &o, line, (size_t)n);
        }
        free(line);
    }
done:
    ferry_close(s);
out:
    msg_opts_free(&o);
    return rc;
}
