/*
 * proxy.c - ferry_proxy: moves messages between two sockets, both ways,
 * until told to stop (ferry.h states the contract).
 *
 * Built on the public API alone, as a user's broker would be: a poller,
 * ferry_msg_recv and ferry_msg_send. So it knows socket types only as a
 * user does (FERRY_OPT_TYPE), and the core stays free of them.
 *
 * Nothing it takes is lost to a full peer. A direction (a "flow", source to
 * destination) takes a whole message from its source only when it holds
 * none, and hands it over without waiting; when the destination has no
 * room, the message is held and the flow waits for FERRY_POLLOUT on the
 * destination instead of FERRY_POLLIN on its source. The source's own
 * high-water mark then pushes back on its senders, as with a direct
 * connection. POLLOUT means room for a small message: one that needs more
 * (a message larger than a ring's free room, streamed as the reader frees
 * it) is then sent with a wait of PROXY_SLICE_MS at a time, between which
 * the control socket is heard, so the proxy never spins on a promise of
 * room. A message received in place in an shm:// ring is copied once,
 * into the destination (ferry_msg_send keeps a multipart message's parts
 * in place until its last one goes).
 *
 * One way only (PULL to PUSH, without capture), the source is not polled
 * but read with blocking receives (run_one_way): over tcp:// and ipc://
 * such a receive reads the connection on this thread (park.c), where a
 * poller's wake-up would hand over every message the I/O thread decoded,
 * its bytes written on one CPU and read on the other. The source's
 * receive flushes the destination's batch before it waits
 * (ferry_flush_on_wait).
 */
#include "ferry.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Messages one flow moves per wake-up before the other flow and the
 * control socket get their turn. */
#define PROXY_BURST 256

struct side {
    ferry_socket *s;
    int can_recv, can_send;
    int events; /* registered in the poller now */
    uint64_t msgs_in, bytes_in, msgs_out, bytes_out;
};

struct flow {
    struct side *src, *dst;
    ferry_msg **parts; /* a whole message taken from src, not yet all in dst */
    size_t nparts, cap;
    size_t given;   /* parts already handed to dst with FERRY_MORE (its core keeps them) */
    uint64_t bytes; /* the message's */
    int stuck;      /* POLLOUT came, and still no room: the next try waits a while */
};

struct proxy {
    struct side front, back;
    struct flow flows[2];
    int nflows;
    ferry_socket *capture, *control;
    int control_replies; /* a REP control socket: every command gets an answer */
    int paused;
    uint64_t lost; /* messages dropped for good (a destination that failed) */
};

/* How long a try waits once POLLOUT has promised room the message did not
 * find (a message larger than a ring's free room is taken only as the
 * reader frees it: streamed, which needs a waiting send): long enough for
 * that, short enough that the control socket is heard. */
#define PROXY_SLICE_MS 200

/* A one-way proxy's longest blocking receive: how late the control socket
 * is heard while no message comes (between messages it is heard every
 * PROXY_BURST). */
#define PROXY_HEAR_MS 50

static int type_of(ferry_socket *s)
{
    int64_t t = -1;
    ferry_getopt_int(s, FERRY_OPT_TYPE, &t);
    return (int)t;
}

static void side_init(struct side *d, ferry_socket *s)
{
    int t = type_of(s);
    memset(d, 0, sizeof *d);
    d->s = s;
    d->can_recv = t != FERRY_PUB && t != FERRY_PUSH;
    d->can_send = t != FERRY_SUB && t != FERRY_PULL;
}

static void flow_drop(struct proxy *px, struct flow *f)
{
    for (size_t i = f->given; i < f->nparts; i++)
        ferry_msg_free(f->parts[i]);
    if (f->given > 0)
        ferry_send_discard(f->dst->s);
    f->nparts = f->given = 0;
    f->stuck = 0;
    px->lost++;
}

/* How a flush waits: not at all, a slice, or the destination's SNDTIMEO. */
enum { FLUSH_NOW, FLUSH_SLICE, FLUSH_FINAL };

/* Hands the held message to dst: the parts before the last with
 * FERRY_MORE (kept by dst's core, which never waits for them), then the
 * last. 1 done (or lost for good, counted), 0 no room yet (held). */
static int flow_flush(struct proxy *px, struct flow *f, int how)
{
    ferry_socket *dst = f->dst->s;
    for (; f->given + 1 < f->nparts; f->given++) {
        if (ferry_msg_send(dst, f->parts[f->given], FERRY_MORE) != 0) {
            flow_drop(px, f); /* out of memory, or over its size: never */
            return 1;
        }
    }
    int64_t keep = -1;
    if (how == FLUSH_SLICE) {
        ferry_getopt_int(dst, FERRY_OPT_SNDTIMEO, &keep);
        ferry_setopt_int(dst, FERRY_OPT_SNDTIMEO, PROXY_SLICE_MS);
    }
    /* FLUSH_NOW sends belong to a burst: the reader is woken once, at its
     * end (on_ready's ferry_flush), not once per message */
    int rc = ferry_msg_send(dst, f->parts[f->nparts - 1],
                            how == FLUSH_NOW ? FERRY_DONTWAIT | FERRY_BATCH : 0);
    if (how == FLUSH_SLICE)
        ferry_setopt_int(dst, FERRY_OPT_SNDTIMEO, keep);
    if (rc == 0) {
        f->dst->msgs_out++;
        f->dst->bytes_out += f->bytes;
        f->nparts = f->given = 0;
        f->stuck = 0;
        return 1;
    }
    int later = rc == FERRY_EAGAIN || rc == FERRY_ETIMEDOUT || rc == FERRY_EINTR;
    if (later && how != FLUSH_FINAL)
        return 0;             /* the last part is still ours; the others wait in dst */
    f->given = f->nparts - 1; /* the last part is still ours: freed with the rest */
    flow_drop(px, f);
    return 1;
}

/* Copies one part to the capture socket, if any, waiting for room (a
 * capture that cannot keep up slows the proxy rather than losing a copy);
 * a copy it refuses is dropped whole. *ok: this message's copy so far. */
static void capture_part(struct proxy *px, const ferry_msg *m, int more, int *ok)
{
    if (px->capture == NULL || !*ok)
        return;
    if (ferry_send(px->capture, ferry_msg_data((ferry_msg *)m), ferry_msg_size(m),
                   more ? FERRY_MORE : FERRY_BATCH) != 0) {
        ferry_send_discard(px->capture);
        *ok = 0;
    }
}

static int flow_keep(struct flow *f, ferry_msg *m)
{
    if (f->nparts == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 8;
        ferry_msg **v = realloc(f->parts, cap * sizeof *v);
        if (v == NULL)
            return FERRY_ENOMEM;
        f->parts = v;
        f->cap = cap;
    }
    f->parts[f->nparts++] = m;
    return 0;
}

/* Takes one whole message from f's source and tries to hand it over.
 * wait: 0 takes only a message there now, 1 waits within the source's
 * FERRY_OPT_RCVTIMEO. 1 taken, 0 nothing waiting, < 0 the source is gone. */
static int flow_move(struct proxy *px, struct flow *f, int wait)
{
    int first = 1, copy_ok = 1, kept = 1;
    f->bytes = 0;
    for (;;) {
        ferry_msg *m;
        /* a message arrives whole: its later parts are there already */
        int rc = ferry_msg_recv(f->src->s, &m, first && !wait ? FERRY_DONTWAIT : 0);
        if (rc == FERRY_EAGAIN && first)
            return 0;
        if (rc == FERRY_ECLOSED)
            return rc;
        if (rc < 0) { /* e.g. a REQ's peer gone: nothing to move, go on */
            if (!first)
                flow_drop(px, f);
            return first ? 0 : 1;
        }
        first = 0;
        int more = ferry_msg_more(m);
        f->bytes += ferry_msg_size(m);
        capture_part(px, m, more, &copy_ok);
        if (!kept || flow_keep(f, m) != 0) {
            ferry_msg_free(m);
            kept = 0;
        }
        if (!more)
            break;
    }
    f->src->msgs_in++;
    f->src->bytes_in += f->bytes;
    if (!kept) {
        f->given = 0;
        flow_drop(px, f);
        return 1;
    }
    flow_flush(px, f, FLUSH_NOW);
    return 1;
}

/* The statistics: for the frontend then the backend, messages received,
 * bytes received, messages sent, bytes sent (eight 8-byte parts in host
 * order, as libzmq's proxy answers), then a ninth: messages a destination
 * refused for good. */
static void send_stats(struct proxy *px)
{
    const uint64_t v[9] = {px->front.msgs_in,   px->front.bytes_in, px->front.msgs_out,
                           px->front.bytes_out, px->back.msgs_in,   px->back.bytes_in,
                           px->back.msgs_out,   px->back.bytes_out, px->lost};
    for (int i = 0; i < 9; i++)
        if (ferry_send(px->control, &v[i], sizeof v[i], i < 8 ? FERRY_MORE : FERRY_DONTWAIT) != 0) {
            ferry_send_discard(px->control); /* a controller that does not read */
            return;
        }
}

/* Takes one command from the control socket. 1 to stop, 0 to go on. */
static int control_command(struct proxy *px)
{
    char cmd[16] = "";
    size_t n = 0;
    int rc = ferry_recv(px->control, cmd, sizeof cmd - 1, &n, FERRY_DONTWAIT);
    if (rc != 0)
        return 0;
    int64_t more = 0;
    char rest[1];
    while (ferry_getopt_int(px->control, FERRY_OPT_RCVMORE, &more) == 0 && more)
        if (ferry_recv(px->control, rest, 0, NULL, 0) != 0) /* only the first part counts */
            break;
    if (n >= sizeof cmd || memchr(cmd, '\0', n) != NULL)
        n = 0; /* not a command word: UNKNOWN */
    cmd[n] = '\0';
    int stop = 0;
    const char *answer = cmd;
    if (strcmp(cmd, "PAUSE") == 0)
        px->paused = 1;
    else if (strcmp(cmd, "RESUME") == 0)
        px->paused = 0;
    else if (strcmp(cmd, "TERMINATE") == 0)
        stop = 1;
    else if (strcmp(cmd, "STATISTICS") == 0) {
        send_stats(px);
        return 0;
    } else
        answer = "UNKNOWN";
    if (px->control_replies && ferry_send(px->control, answer, strlen(answer), FERRY_DONTWAIT) != 0)
        ferry_send_discard(px->control); /* nobody reads them: not ours to wait for */
    return stop;
}

/* What each socket waits for now: its source role's POLLIN unless paused
 * or holding, its destination role's POLLOUT while holding. */
static void want(struct proxy *px, ferry_poller *p)
{
    struct side *sides[2] = {&px->front, &px->back};
    for (int k = 0; k < 2; k++) {
        int ev = 0;
        for (int i = 0; i < px->nflows; i++) {
            const struct flow *f = &px->flows[i];
            if (f->src == sides[k] && f->nparts == 0 && !px->paused)
                ev |= FERRY_POLLIN;
            if (f->dst == sides[k] && f->nparts > 0)
                ev |= FERRY_POLLOUT;
        }
        if (ev != sides[k]->events && ferry_poller_modify(p, sides[k]->s, ev, sides[k]) == 0)
            sides[k]->events = ev;
    }
}

/* Acts on one ready socket. 1 to stop, 0 to go on, < 0 an error. */
static int on_ready(struct proxy *px, const ferry_poll_event *ev)
{
    if (ev->user == NULL) /* the control socket */
        return (ev->events & FERRY_POLLERR) ? 1 : control_command(px);
    if (ev->events & FERRY_POLLERR)
        return FERRY_ECLOSED;
    struct side *d = ev->user;
    for (int i = 0; i < px->nflows; i++) {
        struct flow *f = &px->flows[i];
        if (f->dst == d && f->nparts > 0 && (ev->events & FERRY_POLLOUT) &&
            flow_flush(px, f, f->stuck ? FLUSH_SLICE : FLUSH_NOW) == 0)
            f->stuck = 1; /* room for a small message, not for this one */
        if (f->src == d && (ev->events & FERRY_POLLIN))
            for (int k = 0; k < PROXY_BURST && f->nparts == 0 && !px->paused; k++) {
                int rc = flow_move(px, f, 0);
                if (rc < 0)
                    return rc;
                if (rc == 0)
                    break;
            }
        ferry_flush(f->dst->s); /* the burst is over: wake its reader */
    }
    if (px->capture != NULL)
        ferry_flush(px->capture);
    return 0;
}

/* Both ways, or with a capture: every socket in the poller. 1 after
 * TERMINATE, < 0 an error. */
static int run_polled(struct proxy *px, ferry_poller *p)
{
    int rc = 0;
    while (rc == 0) {
        want(px, p);
        ferry_poll_event ev[4];
        int n = ferry_poller_wait(p, ev, 4, -1);
        if (n == FERRY_EINTR)
            continue; /* signals are the caller's; TERMINATE stops us */
        if (n < 0)
            rc = n;
        for (int i = 0; i < n && rc == 0; i++)
            rc = on_ready(px, &ev[i]);
    }
    return rc;
}

/* The commands waiting on the control socket (only it is in the poller),
 * waiting up to timeout_ms for the first. 1 after TERMINATE, 0 to go on,
 * < 0 the poller failed. */
static int hear(struct proxy *px, ferry_poller *p, int timeout_ms)
{
    for (int k = 0; px->control != NULL && k < 16; k++) {
        ferry_poll_event ev;
        int n = ferry_poller_wait(p, &ev, 1, k == 0 ? timeout_ms : 0);
        if (n == 0 || n == FERRY_EINTR)
            return 0; /* none now (a signal's: the next turn hears it) */
        if (n < 0)
            return n;
        if (on_ready(px, &ev) != 0)
            return 1;
    }
    return 0;
}

/* A coarse clock (the kernel's tick, read without a system call or the
 * TSC): enough to hear commands every PROXY_HEAR_MS, and a few
 * nanoseconds a message where the precise one costs twenty-five. */
static uint64_t coarse_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &t);
    return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

/* One way, without capture: the source read with blocking receives of at
 * most PROXY_HEAR_MS when there is a control socket (see the top of the
 * file), each message sent on with FERRY_BATCH, the destination flushed
 * by the source's receive before it waits (ferry_flush_on_wait) and every
 * PROXY_BURST messages. Commands are heard every PROXY_BURST messages and
 * PROXY_HEAR_MS after they were last heard, whatever comes: a message
 * every 40 ms never lets a receive time out. A message the destination
 * has no room for is held and sent with waits of PROXY_SLICE_MS, between
 * which commands are heard. 1 after TERMINATE, < 0 an error. */
static int run_one_way(struct proxy *px, ferry_poller *p)
{
    struct flow *f = &px->flows[0];
    ferry_socket *src = f->src->s, *dst = f->dst->s;
    int64_t rcvtimeo = -1;
    ferry_getopt_int(src, FERRY_OPT_RCVTIMEO, &rcvtimeo);
    /* without a control socket nothing is to be heard between messages */
    ferry_setopt_int(src, FERRY_OPT_RCVTIMEO, px->control != NULL ? PROXY_HEAR_MS : -1);
    ferry_flush_on_wait(src, dst);
    int rc = 0;
    uint64_t heard = coarse_ms();
    for (unsigned n = 1; rc == 0; n++) {
        if (px->paused) { /* only commands, until RESUME; held messages go */
            if (f->nparts > 0)
                flow_flush(px, f, FLUSH_SLICE);
            ferry_flush(dst);
            rc = hear(px, p, f->nparts > 0 ? 0 : PROXY_SLICE_MS);
            continue;
        }
        if (n % PROXY_BURST == 0 || coarse_ms() - heard >= PROXY_HEAR_MS) {
            ferry_flush(dst);
            rc = hear(px, p, 0);
            heard = coarse_ms();
            continue; /* a PAUSE heard now moves nothing more */
        }
        if (f->nparts > 0) { /* no room for it: a wait of a slice, then commands */
            if (flow_flush(px, f, FLUSH_SLICE) == 0)
                heard = 0;
            continue;
        }
        int moved = flow_move(px, f, 1);
        if (moved < 0)
            rc = moved;
        else if (moved == 0) /* PROXY_HEAR_MS without a message */
            heard = 0;
    }
    ferry_flush_on_wait(src, NULL);
    ferry_setopt_int(src, FERRY_OPT_RCVTIMEO, rcvtimeo);
    return rc;
}

int ferry_proxy(ferry_socket *frontend, ferry_socket *backend, ferry_socket *capture,
                ferry_socket *control)
{
    if (frontend == NULL || backend == NULL || frontend == backend ||
        (capture != NULL && (capture == frontend || capture == backend || capture == control)) ||
        (control != NULL && (control == frontend || control == backend)))
        return FERRY_EINVAL;
    struct proxy px = {.capture = capture, .control = control};
    side_init(&px.front, frontend);
    side_init(&px.back, backend);
    if (px.front.can_recv && px.back.can_send)
        px.flows[px.nflows++] = (struct flow){.src = &px.front, .dst = &px.back};
    if (px.back.can_recv && px.front.can_send)
        px.flows[px.nflows++] = (struct flow){.src = &px.back, .dst = &px.front};
    if (px.nflows == 0)
        return FERRY_EINVAL; /* nothing can move: two senders, or two receivers */
    px.control_replies = control != NULL && type_of(control) == FERRY_REP;
    ferry_poller *p;
    int rc = ferry_poller_new(&p);
    if (rc != 0)
        return rc;
    /* a one-way proxy's sockets stay out of the poller: a socket a poller
     * holds is not lent to a receiver that reads for itself (park.c) */
    /* its sources' receives fail only when the socket does (a REQ's or a
     * REP's would fail at once, out of turn, and be retried without end) */
    int st = type_of(px.flows[0].src->s);
    int one_way = px.nflows == 1 && capture == NULL &&
                  (st == FERRY_PULL || st == FERRY_SUB || st == FERRY_XSUB);
    if ((!one_way && ((rc = ferry_poller_add(p, frontend, 0, &px.front)) != 0 ||
                      (rc = ferry_poller_add(p, backend, 0, &px.back)) != 0)) ||
        (control != NULL && (rc = ferry_poller_add(p, control, FERRY_POLLIN, NULL)) != 0)) {
        ferry_poller_free(p);
        return rc;
    }
    rc = one_way ? run_one_way(&px, p) : run_polled(&px, p);
    /* what a burst wrote is announced, whatever ended the loop */
    ferry_flush(frontend);
    ferry_flush(backend);
    if (capture != NULL)
        ferry_flush(capture);
    /* what was taken is delivered, within the destination's SNDTIMEO */
    for (int i = 0; i < px.nflows; i++) {
        if (px.flows[i].nparts > 0)
            flow_flush(&px, &px.flows[i], FLUSH_FINAL);
        free(px.flows[i].parts);
    }
    ferry_poller_free(p);
    return rc == 1 ? 0 : rc;
}
