/*
 * cmd_msg.c - `ferry recv`, and the options and socket set-up it shares
 * with `ferry send` (cmd_send.c), like nngcat: a socket of any type on any
 * transport, each message printed in a format of format.h.
 */
#include "msg.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char recv_help[] =
    "usage: ferry recv (--bind URL | --connect URL)... --type TYPE [options]\n"
    "\n"
    "Receive messages and print each on its own line. TYPE: pull, sub, rep,\n"
    "pair, dealer, router (its first part is the sender's routing id), xsub or\n"
    "xpub. Runs until -n COUNT messages arrived, or until SIGINT/SIGTERM (then\n"
    "exit 0). An xpub prints the subscriptions its subscribers make (\\x01PREFIX,\n"
    "and \\x00PREFIX when the last one cancels).\n"
    "\n"
    "  -b, --bind URL        listen at URL\n"
    "  -c, --connect URL     dial URL (may come before the listener exists)\n"
    "  -t, --type TYPE       pull | sub | rep | pair | dealer | router | xsub | xpub\n"
    "  -s, --subscribe PFX   sub, xsub: receive messages starting with PFX\n"
    "                        (repeatable; none: everything)\n"
    "  -n, --count COUNT     exit 0 after COUNT messages\n"
    "  -f, --format FORMAT   text (default) | quoted | json | hex | raw\n"
    "      --raw             the same as --format raw\n"
    "      --reply TEXT      rep: answer every request with TEXT (default: echo a\n"
    "                        one-part request; a multipart one gets an empty reply)\n"
    "      --timeout MS      exit 1 when no message arrives for MS\n"
    "  -h, --help\n"
    "\n"
    "Formats (one message per line, except raw):\n"
    "  text    for reading and piping text: bytes as they are (UTF-8, tabs and\n"
    "          backslashes untouched); only newline, CR, other control bytes, DEL,\n"
    "          C1 controls and invalid UTF-8 become \\xNN; parts joined by a tab.\n"
    "          Not reversible.\n"
    "  quoted  exact: each part in double quotes, C escapes (\\\\ \\\" \\n \\t \\xNN),\n"
    "          parts separated by a space\n"
    "  json    exact, for programs and jq: {\"parts\": [...]}, a part is a string\n"
    "          when it is valid UTF-8, else {\"base64\": \"...\"}\n"
    "  hex     exact: hex digits, parts separated by \" | \"\n"
    "  raw     the bytes exactly, nothing added\n"
    "`ferry send --format F -` reads quoted, json and hex back byte for byte.\n"
    "URLs: shm://NAME, ipc:///path (or ipc://@name), tcp://HOST:PORT (ZMTP 3.1:\n"
    "any ZeroMQ peer can be the other side). See ferry-recv(1).\n";

volatile sig_atomic_t msg_stop;

static void on_signal(int sig)
{
    (void)sig;
    msg_stop = 1;
}

void msg_install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;  /* no SA_RESTART: blocked calls return EINTR */
    sa.sa_flags = SA_RESETHAND; /* a second signal ends a process stuck in a wait */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

static int parse_type(const char *s)
{
    static const struct {
        const char *name;
        int type;
    } types[] = {{"pair", FERRY_PAIR}, {"pub", FERRY_PUB},       {"sub", FERRY_SUB},
                 {"req", FERRY_REQ},   {"rep", FERRY_REP},       {"push", FERRY_PUSH},
                 {"pull", FERRY_PULL}, {"dealer", FERRY_DEALER}, {"router", FERRY_ROUTER},
                 {"xpub", FERRY_XPUB}, {"xsub", FERRY_XSUB}};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (strcmp(s, types[i].name) == 0)
            return types[i].type;
    return 0;
}

static int parse_long(const char *s, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static void add(const char ***v, int *n, const char *s)
{
    const char **nv = realloc(*v, (size_t)(*n + 1) * sizeof *nv);
    if (nv == NULL) {
        fputs("ferry: out of memory\n", stderr);
        exit(CLI_FAIL);
    }
    nv[(*n)++] = s;
    *v = nv;
}

enum { O_TIMEOUT = 1000, O_REPLY, O_RAW, O_FILE, O_MORE, O_INTERVAL, O_REPEAT };

/* One option; -1 to go on, else the exit code. */
static int apply_opt(int c, const char *arg, struct msg_opts *o)
{
    long v;
    switch (c) {
    case 'c':
        add(&o->connect, &o->nconnect, arg);
        return -1;
    case 'b':
        add(&o->bind, &o->nbind, arg);
        return -1;
    case 't':
        o->type = parse_type(arg);
        return o->type ? -1 : cli_usage(o->cmd, "unknown --type '%s'", arg);
    case 's':
        add(&o->subs, &o->nsubs, arg);
        return -1;
    case 'n':
        return parse_long(arg, 1, 1L << 62, &o->count) == 0
                   ? -1
                   : cli_usage(o->cmd, "bad --count '%s'", arg);
    case 'f':
        return fmt_parse_name(arg, &o->format) == 0
                   ? -1
                   : cli_usage(o->cmd, "unknown --format '%s' (text, quoted, json, hex, raw)", arg);
    case O_RAW:
        o->format = FMT_RAW;
        return -1;
    case O_TIMEOUT:
        if (parse_long(arg, 0, 1000000000, &v) != 0)
            return cli_usage(o->cmd, "bad --timeout '%s' (milliseconds)", arg);
        o->timeout = (int)v;
        return -1;
    case O_REPLY:
        o->reply = arg;
        return -1;
    case O_FILE:
        add(&o->files, &o->nfiles, arg);
        return -1;
    case O_MORE:
        o->more = 1;
        return -1;
    case O_INTERVAL:
        return parse_long(arg, 0, 1000000000, &o->interval) == 0
                   ? -1
                   : cli_usage(o->cmd, "bad --interval '%s' (milliseconds)", arg);
    case O_REPEAT:
        return parse_long(arg, 0, 1L << 62, &o->repeat) == 0
                   ? -1
                   : cli_usage(o->cmd, "bad --repeat '%s' (a count; 0: forever)", arg);
    }
    return cli_usage(o->cmd, "unknown option");
}

/* What holds whatever the options: a type that can do the command, an
 * endpoint, and options that go with the type. */
static int check_opts(struct msg_opts *o, const int *allowed_types)
{
    if (o->type == 0)
        return cli_usage(o->cmd, "--type is required");
    int ok = 0;
    for (const int *t = allowed_types; *t; t++)
        ok |= *t == o->type;
    if (!ok)
        return cli_usage(o->cmd, "this --type cannot %s (see --help)", o->cmd);
    if (o->nbind + o->nconnect == 0)
        return cli_usage(o->cmd, "give --bind URL or --connect URL");
    if (o->nsubs && o->type != FERRY_SUB && o->type != FERRY_XSUB)
        return cli_usage(o->cmd, "--subscribe needs --type sub or xsub");
    if (o->reply && o->type != FERRY_REP)
        return cli_usage(o->cmd, "--reply needs --type rep");
    return cli_curve_check(&o->curve, o->cmd);
}

int msg_parse(int argc, char **argv, struct msg_opts *o, const char *help, const int *allowed_types)
{
    static const struct option opts[] = {{"connect", required_argument, 0, 'c'},
                                         {"bind", required_argument, 0, 'b'},
                                         {"type", required_argument, 0, 't'},
                                         {"subscribe", required_argument, 0, 's'},
                                         {"count", required_argument, 0, 'n'},
                                         {"format", required_argument, 0, 'f'},
                                         {"timeout", required_argument, 0, O_TIMEOUT},
                                         {"reply", required_argument, 0, O_REPLY},
                                         {"raw", no_argument, 0, O_RAW},
                                         {"file", required_argument, 0, O_FILE},
                                         {"more", no_argument, 0, O_MORE},
                                         {"interval", required_argument, 0, O_INTERVAL},
                                         {"repeat", required_argument, 0, O_REPEAT},
                                         {"help", no_argument, 0, 'h'},
                                         CLI_CURVE_OPTIONS,
                                         {0, 0, 0, 0}};
    int c, rc;
    o->timeout = -1;
    o->repeat = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":c:b:t:s:n:f:h", opts, NULL)) != -1) {
        if (c == 'h') {
            fputs(help, stdout);
            fputs(cli_curve_help, stdout);
            return CLI_OK;
        }
        if (c == ':')
            return cli_usage(o->cmd, "option '%s' needs a value", argv[optind - 1]);
        if (c == '?')
            return cli_usage(o->cmd, "unknown option '%s'", argv[optind - 1]);
        if (cli_curve_opt(&o->curve, c, optarg))
            continue;
        if ((rc = apply_opt(c, optarg, o)) >= 0)
            return rc;
    }
    o->msgs = argv + optind;
    o->nmsgs = argc - optind;
    return check_opts(o, allowed_types);
}

int msg_open_socket(struct msg_opts *o, ferry_socket **out)
{
    ferry_socket *s;
    int rc = ferry_socket_open(&s, o->type);
    if (rc != 0)
        return cli_fail(rc, "%s: socket", o->cmd);
    if ((rc = cli_curve_apply(&o->curve, s, o->cmd)) >= 0) {
        ferry_close(s);
        return rc;
    }
    if (o->type == FERRY_ROUTER) /* a message for a peer not there: an error (cmd_send.c waits) */
        ferry_setopt_int(s, FERRY_OPT_ROUTER_MANDATORY, 1);
    if (o->timeout >= 0) {
        ferry_setopt_int(s, FERRY_OPT_RCVTIMEO, o->timeout);
        ferry_setopt_int(s, FERRY_OPT_SNDTIMEO, o->timeout);
    }
    for (int i = 0; i < o->nsubs && o->type == FERRY_SUB; i++)
        ferry_setopt(s, FERRY_OPT_SUBSCRIBE, o->subs[i], strlen(o->subs[i]));
    if (o->type == FERRY_SUB && o->nsubs == 0)
        ferry_setopt(s, FERRY_OPT_SUBSCRIBE, "", 0);
    for (int i = 0; i < o->nsubs || (o->type == FERRY_XSUB && i == 0); i++) {
        if (o->type != FERRY_XSUB)
            break;
        /* an xsub subscribes with a message: \x01 and the prefix (none: all) */
        const char *pfx = o->nsubs ? o->subs[i] : "";
        size_t n = strlen(pfx);
        char *m = malloc(n + 1);
        if (m == NULL)
            break;
        m[0] = 1;
        memcpy(m + 1, pfx, n);
        ferry_send(s, m, n + 1, 0);
        free(m);
    }
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

void msg_opts_free(struct msg_opts *o)
{
    free(o->bind);
    free(o->connect);
    free(o->subs);
    free(o->files);
}

/* The next part of a message whose first part arrived: it is there
 * already (messages arrive whole), so a timeout slice or a signal must
 * not split the message. */
static int recv_rest(ferry_socket *s, ferry_msg **m)
{
    int rc;
    while ((rc = ferry_msg_recv(s, m, 0)) == FERRY_ETIMEDOUT || rc == FERRY_EAGAIN ||
           rc == FERRY_EINTR)
        ;
    return rc;
}

int msg_recv_print(ferry_socket *s, enum fmt_kind k, struct fmt_buf *out, ferry_msg **first_out)
{
    size_t i = 0;
    int more = 1;
    out->len = 0;
    while (more) {
        ferry_msg *m;
        int rc = i == 0 ? ferry_msg_recv(s, &m, 0) : recv_rest(s, &m);
        if (rc != 0)
            return rc;
        more = ferry_msg_more(m);
        rc = fmt_enc_part(k, i, ferry_msg_data(m), ferry_msg_size(m), out);
        if (i == 0 && first_out && !more)
            *first_out = m; /* the caller echoes it */
        else
            ferry_msg_free(m);
        if (rc != 0)
            return FERRY_ENOMEM;
        i++;
    }
    if (fmt_enc_end(k, i, out) != 0)
        return FERRY_ENOMEM;
    if (fwrite(out->data, 1, out->len, stdout) != out->len || fflush(stdout) != 0)
        return MSG_ESTDOUT;
    return 0;
}

/* A rep's answer: --reply, else the request itself when it had one part. */
static int recv_reply(ferry_socket *s, const struct msg_opts *o, ferry_msg *req)
{
    int r;
    if (o->reply)
        r = ferry_send(s, o->reply, strlen(o->reply), 0);
    else if (req)
        r = ferry_send(s, ferry_msg_data(req), ferry_msg_size(req), 0);
    else
        r = ferry_send(s, "", 0, 0); /* a multipart request: empty reply */
    ferry_msg_free(req);
    return r;
}

static int recv_loop(ferry_socket *s, const struct msg_opts *o)
{
    /* Sleep in short slices so SIGINT/SIGTERM are seen promptly: a futex
     * wait is restarted by the kernel after a signal handler returns. */
    int slice = o->timeout >= 0 && o->timeout < 200 ? o->timeout : 200;
    ferry_setopt_int(s, FERRY_OPT_RCVTIMEO, slice);
    struct fmt_buf out = {0};
    long got = 0;
    int waited = 0, rc = CLI_OK;
    while (!msg_stop && (o->count == 0 || got < o->count)) {
        ferry_msg *req = NULL;
        int r = msg_recv_print(s, o->format, &out, o->type == FERRY_REP && !o->reply ? &req : NULL);
        if (r == FERRY_ETIMEDOUT || r == FERRY_EAGAIN || r == FERRY_EINTR) {
            waited += slice;
            if (o->timeout >= 0 && waited >= o->timeout) {
                char note[300];
                fprintf(stderr, "ferry: recv: no message within %d ms%s\n", o->timeout,
                        cli_drop_note(s, note, sizeof note));
                rc = CLI_FAIL;
                break;
            }
            continue;
        }
        if (r == MSG_ESTDOUT) {
            ferry_msg_free(req);
            if (errno != EPIPE) { /* EPIPE: the reader went away (`| head`), done */
                fprintf(stderr, "ferry: recv: write to stdout: %s\n", strerror(errno));
                rc = CLI_FAIL;
            }
            break;
        }
        if (r != 0) {
            rc = cli_fail_sock(s, r, "recv");
            break;
        }
        waited = 0;
        got++;
        if (o->type == FERRY_REP && (r = recv_reply(s, o, req)) != 0) {
            rc = cli_fail(r, "recv: reply");
            break;
        }
    }
    fmt_buf_free(&out);
    return rc;
}

int cmd_recv(int argc, char **argv)
{
    static const int types[] = {FERRY_PULL,   FERRY_SUB,  FERRY_REP,  FERRY_PAIR, FERRY_DEALER,
                                FERRY_ROUTER, FERRY_XSUB, FERRY_XPUB, 0};
    struct msg_opts o = {.cmd = "recv"};
    int rc = msg_parse(argc, argv, &o, recv_help, types);
    if (rc >= 0)
        goto out;
    if (o.nmsgs > 0) {
        rc = cli_usage("recv", "unexpected argument '%s'", o.msgs[0]);
        goto out;
    }
    if (o.nfiles || o.more || o.interval || o.repeat != 1) {
        rc = cli_usage("recv", "--file, --more, --interval and --repeat are send options");
        goto out;
    }
    ferry_socket *s;
    if ((rc = msg_open_socket(&o, &s)) >= 0)
        goto out;
    msg_install_signals();
    rc = recv_loop(s, &o);
    ferry_close(s);
out:
    msg_opts_free(&o);
    return rc;
}
