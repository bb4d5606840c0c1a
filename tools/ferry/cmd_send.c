/*
 * cmd_send.c - `ferry send`: messages from arguments, files or stdin, in a
 * format of format.h, sent once, N times or until interrupted. Options and
 * the socket come from cmd_msg.c (msg.h).
 */
#include "msg.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char send_help[] =
    "usage: ferry send (--connect URL | --bind URL)... --type TYPE [options] MSG...\n"
    "       ferry send ... [--format F] -    (messages from stdin, until EOF)\n"
    "       ferry send ... --more PART...    (one multipart message)\n"
    "       ferry send ... --file PATH       (a file's bytes as one message)\n"
    "\n"
    "Send each MSG as one message. TYPE: push, pub, req, pair, dealer, router or\n"
    "xpub.\n"
    "With --type req each reply is printed on stdout in the --format. With --type\n"
    "router the first part of each message is the routing id of the peer it goes\n"
    "to (use --more, or a multipart format); a peer not connected is waited for up\n"
    "to --timeout, then the send fails naming it. Exits 0 once every message has\n"
    "been handed to a connected peer.\n"
    "\n"
    "  -c, --connect URL   dial URL (may come before the listener exists: the\n"
    "                      send waits until each URL dialed is connected)\n"
    "  -b, --bind URL      listen at URL, and wait for a peer before sending\n"
    "  -t, --type TYPE     push | pub | req | pair | dealer | router | xpub\n"
    "  -f, --format F      how MSG and stdin are read: text (default) | quoted |\n"
    "                      json | hex | raw (as `ferry recv --format` writes them)\n"
    "      --raw           the same as --format raw\n"
    "      --more          the MSG arguments (and files) are the parts of one message\n"
    "      --file PATH     send the bytes of PATH as one message (repeatable; sent\n"
    "                      before the MSG arguments)\n"
    "      --repeat N      send all the messages N times (0: until interrupted)\n"
    "      --interval MS   wait MS between two messages\n"
    "      --timeout MS    give up (exit 1) when any wait exceeds MS\n"
    "  -h, --help\n"
    "\n"
    "text: one line of stdin is one message, bytes as they are. quoted, json, hex:\n"
    "one line is one message, multipart included; `ferry recv --format json |\n"
    "ferry send --format json -` replays messages byte for byte. raw: all of stdin\n"
    "is one message. A malformed line stops the send with its line number (exit 2);\n"
    "the lines before it are sent.\n"
    "A pub or xpub waits for a subscriber (with --bind or --connect), then sends; a pub\n"
    "never blocks on a slow subscriber. URLs: shm://NAME, ipc:///path (or\n"
    "ipc://@name), tcp://HOST:PORT. See ferry-send(1).\n";

/* The longest line or file taken: larger than any message ferry carries
 * (FERRY_OPT_MAXMSGSIZE is 256 MiB), small enough to stay in memory. */
#define INPUT_MAX ((size_t)1 << 30)

struct sender {
    ferry_socket *s;
    const struct msg_opts *o;
    struct fmt_buf reply;
    long sent;
};

/* Waits ms, or less when a signal asks to stop. */
static void sleep_ms(long ms)
{
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    while (!msg_stop && nanosleep(&t, &t) != 0 && errno == EINTR)
        ;
}

static uint64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

/* Sends m's parts. A router's socket is ROUTER_MANDATORY: a message to a
 * peer that is not connected (FERRY_EHOSTUNREACH) is tried again as peers
 * come, up to --timeout, and then the failure names the id. */
static int send_parts(struct sender *x, const struct fmt_msg *m)
{
    uint64_t start = now_ms();
    for (;;) {
        int rc = 0;
        for (size_t i = 0; i < m->nparts && rc == 0; i++) {
            size_t n;
            const unsigned char *p = fmt_msg_part(m, i, &n);
            rc = ferry_send(x->s, p, n, i + 1 < m->nparts ? FERRY_MORE : 0);
        }
        uint64_t waited = now_ms() - start;
        if (rc != FERRY_EHOSTUNREACH || msg_stop ||
            (x->o->timeout >= 0 && waited >= (uint64_t)x->o->timeout))
            return rc;
        /* a bounded wait for a peer to come (never satisfied: it wakes on one) */
        ferry_wait_peers(x->s, 1 << 30, 100);
    }
}

/* Waits before the first send for a peer whose handshake is done at each
 * --connect URL, and for one at the --bind URLs: a message queued for a
 * dialer that never gets in (a refused CURVE key, a listener that never
 * comes; round robin gives such a pipe its share) would be dropped when
 * the socket closes, and the exit would say it was sent.
 * While it waits, each new reason a connection was dropped for is said
 * once; --timeout ends the wait (exit 1). */
static int wait_peer(struct sender *x)
{
    const char *what = x->o->type == FERRY_PUB || x->o->type == FERRY_XPUB ? "subscriber" : "peer";
    uint64_t start = now_ms();
    char said[300] = "", note[300];
    for (;;) {
        int slice = 200;
        if (x->o->timeout >= 0) {
            uint64_t waited = now_ms() - start, t = (uint64_t)x->o->timeout;
            uint64_t left = waited >= t ? 0 : t - waited;
            slice = left < (uint64_t)slice ? (int)left : slice;
        }
        int want = x->o->nconnect + (x->o->nbind > 0 ? 1 : 0);
        int r = ferry_wait_peers(x->s, want, slice); /* looked at once even with --timeout 0 */
        if (r == 0 || msg_stop)
            return CLI_OK;
        int timed_out = r == FERRY_ETIMEDOUT || r == FERRY_EAGAIN;
        if (!timed_out || (x->o->timeout >= 0 && now_ms() - start >= (uint64_t)x->o->timeout))
            return cli_fail_sock(x->s, timed_out ? FERRY_ETIMEDOUT : r, "send: waiting for a %s",
                                 what);
        const char *n = cli_drop_note(x->s, note, sizeof note);
        if (n[0] && strcmp(n, said) != 0) {
            fprintf(stderr, "ferry: send: still waiting for a %s%s\n", what, n);
            snprintf(said, sizeof said, "%s", n);
        }
    }
}

/* Sends m, part by part; for req, receives and prints the reply. */
static int send_msg(struct sender *x, const struct fmt_msg *m)
{
    if (x->sent > 0 && x->o->interval > 0)
        sleep_ms(x->o->interval);
    if (msg_stop)
        return CLI_OK;
    int rc = send_parts(x, m);
    if (rc == FERRY_EHOSTUNREACH) {
        struct fmt_buf id = {0};
        size_t n;
        const unsigned char *p = fmt_msg_part(m, 0, &n);
        int e = fmt_enc_part(FMT_QUOTED, 0, p, n, &id);
        fprintf(stderr, "ferry: send: no peer with routing id %.*s connected%s\n",
                e == 0 ? (int)id.len : 2, e == 0 ? (const char *)id.data : "\"\"",
                x->o->timeout >= 0 ? " within --timeout" : "");
        fmt_buf_free(&id);
        return CLI_FAIL;
    }
    if (rc != 0)
        return cli_fail_sock(x->s, rc, "send");
    x->sent++;
    if (x->o->type == FERRY_REQ) {
        rc = msg_recv_print(x->s, x->o->format, &x->reply, NULL);
        if (rc == MSG_ESTDOUT) {
            fprintf(stderr, "ferry: send: write to stdout: %s\n", strerror(errno));
            return CLI_FAIL;
        }
        if (rc != 0)
            return cli_fail_sock(x->s, rc, "send: reply");
    }
    return CLI_OK;
}

/* stdin, line by line, counting lines for error messages. */
struct line_in {
    unsigned char buf[1 << 16];
    size_t head, tail;
    int eof;
    unsigned long lineno;
};

/* 1: a line (without its '\n') in out; 0: end of input; else minus the
 * exit code, the error printed. */
static int read_line(struct line_in *r, struct fmt_buf *out)
{
    out->len = 0;
    for (;;) {
        if (r->head < r->tail) {
            unsigned char *at = r->buf + r->head;
            unsigned char *nl = memchr(at, '\n', r->tail - r->head);
            size_t n = nl ? (size_t)(nl - at) : r->tail - r->head;
            if (n > INPUT_MAX - out->len) {
                fprintf(stderr, "ferry: send: stdin line %lu: longer than %zu bytes\n",
                        r->lineno + 1, INPUT_MAX);
                return -CLI_USAGE;
            }
            if (fmt_buf_add(out, at, n) != 0) {
                fputs("ferry: send: out of memory\n", stderr);
                return -CLI_FAIL;
            }
            r->head += n + (nl != NULL);
            if (nl) {
                r->lineno++;
                return 1;
            }
        }
        if (r->eof) {
            r->lineno += out->len > 0;
            return out->len > 0; /* a last line without '\n' counts */
        }
        ssize_t k = read(STDIN_FILENO, r->buf, sizeof r->buf);
        if (k < 0 && errno == EINTR && !msg_stop)
            continue;
        if (k < 0 && errno == EINTR) /* SIGINT/SIGTERM: a normal end (exit 0) */
            k = 0;
        if (k < 0) {
            fprintf(stderr, "ferry: send: read stdin: %s\n", strerror(errno));
            return -CLI_FAIL;
        }
        r->eof = k == 0;
        r->head = 0;
        r->tail = (size_t)k;
    }
}

/* All of fd into out; 0, or the exit code with the error printed. */
static int read_all(int fd, const char *what, struct fmt_buf *out)
{
    for (;;) {
        if (out->len == INPUT_MAX) {
            fprintf(stderr, "ferry: send: %s: larger than %zu bytes\n", what, INPUT_MAX);
            return CLI_USAGE;
        }
        unsigned char b[1 << 16];
        size_t want = INPUT_MAX - out->len < sizeof b ? INPUT_MAX - out->len : sizeof b;
        ssize_t k = read(fd, b, want);
        if (k < 0 && errno == EINTR && !msg_stop)
            continue;
        if (k < 0 && errno == EINTR) /* SIGINT/SIGTERM: what came is the input */
            return CLI_OK;
        if (k < 0) {
            fprintf(stderr, "ferry: send: read %s: %s\n", what, strerror(errno));
            return CLI_FAIL;
        }
        if (k == 0)
            return CLI_OK;
        if (fmt_buf_add(out, b, (size_t)k) != 0) {
            fputs("ferry: send: out of memory\n", stderr);
            return CLI_FAIL;
        }
    }
}

/* Appends the messages decoded so far for a later --repeat pass. */
static int keep_msg(struct fmt_msg **v, size_t *n, const struct fmt_msg *m)
{
    if ((*n & (*n - 1)) == 0) { /* at 0, 1, 2, 4, ...: doubling, not one by one */
        struct fmt_msg *nv = realloc(*v, (*n ? *n * 2 : 1) * sizeof *nv);
        if (nv == NULL)
            return -1;
        *v = nv;
    }
    struct fmt_msg *nv = *v;
    memset(&nv[*n], 0, sizeof nv[*n]);
    for (size_t i = 0; i < m->nparts; i++) {
        size_t len;
        const unsigned char *p = fmt_msg_part(m, i, &len);
        if (fmt_msg_add_part(&nv[*n], p, len) != 0) {
            fmt_msg_free(&nv[*n]);
            return -1;
        }
    }
    (*n)++;
    return 0;
}

/* Reports a message that cannot be decoded: a usage error, unless memory
 * ran out. */
static int bad_input(const struct msg_opts *o, const char *where, unsigned long n,
                     const struct fmt_err *err)
{
    fprintf(stderr, "ferry: send: %s %lu: bad %s: %s\n", where, n, fmt_name(o->format), err->msg);
    return strcmp(err->msg, "out of memory") == 0 ? CLI_FAIL : CLI_USAGE;
}

/* Sends the messages of stdin as they are read, and keeps them in *kept
 * when they are to be sent again. */
static int send_stdin(struct sender *x, struct fmt_msg **kept, size_t *nkept, int keep)
{
    struct fmt_msg m = {0};
    struct fmt_buf line = {0};
    struct fmt_err err;
    struct line_in *r = calloc(1, sizeof *r);
    int rc = r ? CLI_OK : CLI_FAIL;
    if (x->o->format == FMT_RAW && rc == CLI_OK) { /* no framing: all of it, once */
        rc = read_all(STDIN_FILENO, "stdin", &line);
        if (rc == CLI_OK && fmt_decode(FMT_RAW, line.data, line.len, &m, &err) != 0)
            rc = bad_input(x->o, "stdin byte", 0, &err);
        if (rc == CLI_OK)
            rc = send_msg(x, &m);
        if (rc == CLI_OK && keep && keep_msg(kept, nkept, &m) != 0)
            rc = CLI_FAIL;
    }
    while (x->o->format != FMT_RAW && rc == CLI_OK && !msg_stop) {
        int got = read_line(r, &line);
        if (got <= 0) {
            rc = -got;
            break;
        }
        if (fmt_decode(x->o->format, line.data, line.len, &m, &err) != 0)
            rc = bad_input(x->o, "stdin line", r->lineno, &err);
        else if ((rc = send_msg(x, &m)) == CLI_OK && keep && keep_msg(kept, nkept, &m) != 0)
            rc = CLI_FAIL;
    }
    if (rc == CLI_FAIL && r == NULL)
        fputs("ferry: send: out of memory\n", stderr);
    free(r);
    fmt_buf_free(&line);
    fmt_msg_free(&m);
    return rc;
}

/* What to send, in order: the --file messages, then the arguments ("-":
 * stdin at that place). With --more, all of them are one message. */
struct item {
    struct fmt_msg m;
    int is_stdin;
};

static struct item *new_item(struct item **v, size_t *n, int more)
{
    if (more && *n == 1)
        return &(*v)[0];
    struct item *nv = realloc(*v, (*n + 1) * sizeof *nv);
    if (nv == NULL)
        return NULL;
    *v = nv;
    memset(&nv[*n], 0, sizeof nv[*n]);
    return &nv[(*n)++];
}

static int add_file(const char *path, struct fmt_msg *m)
{
    struct fmt_buf b = {0};
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "ferry: send: --file %s: %s\n", path, strerror(errno));
        return CLI_FAIL;
    }
    int rc = read_all(fd, path, &b);
    close(fd);
    if (rc == CLI_OK && fmt_msg_add_part(m, b.data, b.len) != 0) {
        fputs("ferry: send: out of memory\n", stderr);
        rc = CLI_FAIL;
    }
    fmt_buf_free(&b);
    return rc;
}

/* Appends the parts an argument decodes to. */
static int add_arg(const struct msg_opts *o, int i, struct fmt_msg *m)
{
    struct fmt_msg d = {0};
    struct fmt_err err;
    const char *a = o->msgs[i];
    int rc = CLI_OK;
    if (fmt_decode(o->format, (const unsigned char *)a, strlen(a), &d, &err) != 0)
        rc = bad_input(o, "argument", (unsigned long)i + 1, &err);
    for (size_t j = 0; rc == CLI_OK && j < d.nparts; j++) {
        size_t n;
        const unsigned char *p = fmt_msg_part(&d, j, &n);
        if (fmt_msg_add_part(m, p, n) != 0) {
            fputs("ferry: send: out of memory\n", stderr);
            rc = CLI_FAIL;
        }
    }
    fmt_msg_free(&d);
    return rc;
}

static int build_items(const struct msg_opts *o, struct item **v, size_t *n)
{
    int rc = CLI_OK;
    for (int i = 0; rc == CLI_OK && i < o->nfiles + o->nmsgs; i++) {
        struct item *it = new_item(v, n, o->more);
        if (it == NULL) {
            fputs("ferry: send: out of memory\n", stderr);
            return CLI_FAIL;
        }
        if (i < o->nfiles)
            rc = add_file(o->files[i], &it->m);
        else if (strcmp(o->msgs[i - o->nfiles], "-") == 0)
            it->is_stdin = 1;
        else
            rc = add_arg(o, i - o->nfiles, &it->m);
    }
    return rc;
}

static void free_items(struct item *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        fmt_msg_free(&v[i].m);
    free(v);
}

/* Every pass sends the items in order; stdin is read on the first pass
 * and what it gave is sent again on the others. */
static int send_all(struct sender *x, const struct item *items, size_t nitems)
{
    struct fmt_msg *kept = NULL;
    size_t nkept = 0;
    int rc = CLI_OK;
    long repeat = x->o->repeat;
    for (long pass = 0; rc == CLI_OK && !msg_stop && (repeat == 0 || pass < repeat); pass++) {
        for (size_t i = 0; rc == CLI_OK && !msg_stop && i < nitems; i++) {
            if (!items[i].is_stdin)
                rc = send_msg(x, &items[i].m);
            else if (pass == 0)
                rc = send_stdin(x, &kept, &nkept, repeat != 1);
            for (size_t j = 0; pass > 0 && items[i].is_stdin && rc == CLI_OK && j < nkept; j++)
                rc = send_msg(x, &kept[j]);
        }
        if (x->sent == 0)
            break; /* nothing to send again (an empty stdin) */
    }
    for (size_t j = 0; j < nkept; j++)
        fmt_msg_free(&kept[j]);
    free(kept);
    return rc;
}

/* The combinations of send's options that mean nothing. */
static int send_check(const struct msg_opts *o)
{
    int stdins = 0;
    for (int i = 0; i < o->nmsgs; i++)
        stdins += strcmp(o->msgs[i], "-") == 0;
    if (o->nmsgs + o->nfiles == 0)
        return cli_usage("send", "no message given (use - to read stdin, or --file PATH)");
    if (o->count || o->nsubs || o->reply)
        return cli_usage("send", "-n, --subscribe and --reply are recv options");
    if (stdins > 1)
        return cli_usage("send", "'-' (stdin) may be given once");
    if (stdins && o->more)
        return cli_usage("send", "--more takes its parts from arguments and files, not '-'");
    return -1;
}

int cmd_send(int argc, char **argv)
{
    static const int types[] = {FERRY_PUSH,   FERRY_PUB,    FERRY_REQ,  FERRY_PAIR,
                                FERRY_DEALER, FERRY_ROUTER, FERRY_XPUB, 0};
    struct msg_opts o = {.cmd = "send"};
    struct item *items = NULL;
    size_t nitems = 0;
    int rc = msg_parse(argc, argv, &o, send_help, types);
    if (rc >= 0 || (rc = send_check(&o)) >= 0 || (rc = build_items(&o, &items, &nitems)) != 0)
        goto out;
    struct sender x = {.o = &o};
    if ((rc = msg_open_socket(&o, &x.s)) >= 0)
        goto out;
    if (o.repeat == 0 || o.interval > 0)
        msg_install_signals(); /* a long run ends on SIGINT/SIGTERM with exit 0 */
    signal(SIGPIPE, SIG_IGN);
    rc = CLI_OK;
    rc = wait_peer(&x);
    if (rc == CLI_OK && !msg_stop)
        rc = send_all(&x, items, nitems);
    ferry_close(x.s);
    fmt_buf_free(&x.reply);
out:
    free_items(items, nitems);
    msg_opts_free(&o);
    return rc;
}
