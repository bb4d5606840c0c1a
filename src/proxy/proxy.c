/*
 * proxy.c - ferry_proxy: moves messages between two sockets, both ways,
 * until told to stop (ferry.h states the contract).
 *
 * Built on the public API alone, as a user's broker would be: a poller,
 * ferry_msg_recv and ferry_msg_send. So it knows socket types only as a
 * user does (FERRY_OPT_TYPE), and the core stays free of them.
 *
 * Nothing it takes is lost to a full peer. A direction (a "flow", source to
 * destination) takes a message from its source only when it holds none:
 * every part but the last is handed to the destination at once (the core
 * keeps the parts of a message until its last one), and the last part is
 * sent without waiting; when the destination has no room, that last part
 * is held and the flow waits for FERRY_POLLOUT on the destination instead
 * of FERRY_POLLIN on its source. The source's own high-water mark then
 * pushes back on its senders, as with a direct connection. A message
 * received in place in an shm:// ring is copied once, into the
 * destination, and its ring room is given back then.
 */
#include "ferry.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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
    ferry_msg *held; /* the last part of a message dst had no room for */
    uint64_t held_bytes;
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

/* Copies a part to the capture socket, if any (waiting for it: a capture
 * that cannot keep up slows the proxy down rather than losing a copy). */
static void capture_part(struct proxy *px, const ferry_msg *m, int more)
{
    if (px->capture != NULL)
        ferry_send(px->capture, ferry_msg_data((ferry_msg *)m), ferry_msg_size(m),
                   more ? FERRY_MORE : 0);
}

/* Sends the held last part. 1 sent (or lost for good, counted), 0 no room
 * yet (still held). */
static int flow_flush(struct proxy *px, struct flow *f, int flags)
{
    int rc = ferry_msg_send(f->dst->s, f->held, flags);
    if (rc == FERRY_EAGAIN || rc == FERRY_ETIMEDOUT || rc == FERRY_EINTR) {
        if (!(flags & FERRY_DONTWAIT) && rc != FERRY_EINTR) {
            ferry_msg_free(f->held); /* the final flush ran out of time */
            f->held = NULL;
            px->lost++;
            return 1;
        }
        return 0;
    }
    if (rc < 0) {
        ferry_msg_free(f->held);
        px->lost++;
    } else {
        f->dst->msgs_out++;
        f->dst->bytes_out += f->held_bytes;
    }
    f->held = NULL;
    return 1;
}

/* Moves one whole message along f. 1 moved (or held for room), 0 nothing
 * waiting, < 0 the source failed. */
static int flow_move(struct proxy *px, struct flow *f)
{
    uint64_t bytes = 0;
    int first = 1, failed = 0;
    for (;;) {
        ferry_msg *m;
        int rc = ferry_msg_recv(f->src->s, &m, first ? FERRY_DONTWAIT : 0);
        if (rc == FERRY_EAGAIN && first)
            return 0;
        if (rc < 0)
            return rc;
        first = 0;
        int more = ferry_msg_more(m);
        bytes += ferry_msg_size(m);
        capture_part(px, m, more);
        if (failed) { /* the destination refused a part: drop the rest */
            ferry_msg_free(m);
        } else if (more) {
            rc = ferry_msg_send(f->dst->s, m, FERRY_MORE); /* kept by the core: no wait */
            if (rc < 0) {
                ferry_msg_free(m);
                failed = 1;
            }
        } else {
            f->held = m;
            f->held_bytes = bytes;
        }
        if (!more)
            break;
    }
    f->src->msgs_in++;
    f->src->bytes_in += bytes;
    if (failed) {
        px->lost++;
        return 1;
    }
    flow_flush(px, f, FERRY_DONTWAIT);
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
        ferry_send(px->control, &v[i], sizeof v[i], i < 8 ? FERRY_MORE : 0);
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
        ferry_recv(px->control, rest, 0, NULL, 0); /* only the first part counts */
    if (n >= sizeof cmd)
        n = sizeof cmd - 1;
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
    if (px->control_replies)
        ferry_send(px->control, answer, strlen(answer), 0);
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
            if (f->src == sides[k] && !f->held && !px->paused)
                ev |= FERRY_POLLIN;
            if (f->dst == sides[k] && f->held)
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
        if (f->dst == d && f->held && (ev->events & FERRY_POLLOUT))
            flow_flush(px, f, FERRY_DONTWAIT);
        if (f->src == d && (ev->events & FERRY_POLLIN))
            for (int k = 0; k < PROXY_BURST && !f->held && !px->paused; k++) {
                int rc = flow_move(px, f);
                if (rc < 0)
                    return rc;
                if (rc == 0)
                    break;
            }
    }
    return 0;
}

int ferry_proxy(ferry_socket *frontend, ferry_socket *backend, ferry_socket *capture,
                ferry_socket *control)
{
    if (frontend == NULL || backend == NULL || frontend == backend)
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
    if ((rc = ferry_poller_add(p, frontend, 0, &px.front)) != 0 ||
        (rc = ferry_poller_add(p, backend, 0, &px.back)) != 0 ||
        (control != NULL && (rc = ferry_poller_add(p, control, FERRY_POLLIN, NULL)) != 0)) {
        ferry_poller_free(p);
        return rc;
    }
    for (rc = 0; rc == 0;) {
        want(&px, p);
        ferry_poll_event ev[4];
        int n = ferry_poller_wait(p, ev, 4, -1);
        if (n == FERRY_EINTR)
            continue; /* signals are the caller's; TERMINATE stops us */
        if (n < 0)
            rc = n;
        for (int i = 0; i < n && rc == 0; i++)
            rc = on_ready(&px, &ev[i]);
    }
    /* what was taken is delivered, within the destination's SNDTIMEO */
    for (int i = 0; i < px.nflows; i++)
        while (px.flows[i].held && flow_flush(&px, &px.flows[i], 0) == 0) {
        } /* (0: interrupted by a signal; the send is tried again) */
    ferry_poller_free(p);
    return rc == 1 ? 0 : rc;
}
