/*
 * reqrep.c - REQ and REP.
 *
 * Both frame messages as ZeroMQ does (RFC 28), on every transport, so that
 * they work with ROUTERs, DEALERs and brokers in between: a REQ sends an
 * empty delimiter frame before the body and requires and strips it on the
 * reply; a REP keeps the envelope of the request it answers (every frame
 * up to and including the delimiter) and sends it back before the reply.
 * The transports carry frames verbatim.
 *
 * REQ alternates strictly: send one request (to the next peer, round-robin),
 * then receive its reply, only from the peer that got the request. If that
 * peer dies first, recv fails with FERRY_ECONNRESET and the REQ may send
 * again; with FERRY_OPT_REQ_RESEND the REQ keeps a copy of the request and
 * sends it to another peer instead, and recv goes on waiting.
 *
 * REP fair-queues requests over its peers and sends each reply to the peer
 * the request came from. A reply whose requester has gone is dropped (there
 * is nobody to deliver it to) and counted in FERRY_OPT_DROPPED.
 */
#include "protocols.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The most frames a request's envelope may have, delimiter included: each
 * hop of a chain of brokers adds one routing id, and real chains have a
 * handful. A peer that sends more is refused (the message dropped and
 * counted), so what a REP keeps between a request and its reply stays
 * small whatever a peer sends. */
#define REP_MAX_HOPS 256

struct req_state {
    size_t cursor;
    int waiting;         /* a request is out, its reply due */
    int target_id;       /* the peer that got it (see still_in), 0: none */
    unsigned char *copy; /* REQ_RESEND: the request, parts back to back */
    struct fy_part *parts;
    size_t nparts;
    struct fy_part *framed; /* the delimiter, then the user's parts */
    size_t framed_cap;
};

/* A REP's reply goes back with the envelope of the request it answers:
 * every frame up to and including the empty delimiter, copied out of the
 * request (at most REP_MAX_HOPS frames of at most MAXMSGSIZE in all). */
struct rep_state {
    size_t cursor;
    int replying;              /* a request was received, the reply is due */
    int source_id;             /* its peer (see still_in), 0: none */
    unsigned char *env;        /* the envelope's bytes, back to back: */
    unsigned char env_few[64]; /* here when they fit (a REQ's: none) */
    struct fy_part *parts;     /* the envelope's frames, then the reply's parts */
    size_t nenv, parts_cap;
};

/* Room for n parts in *v (a scratch array kept between messages). */
static int parts_room(struct fy_part **v, size_t *cap, size_t n)
{
    if (n <= *cap)
        return 0;
    struct fy_part *p = realloc(*v, n * sizeof *p);
    if (p == NULL)
        return FERRY_ENOMEM;
    *v = p;
    *cap = n;
    return 0;
}

/* The pipe a request went to (or came from), if it is still the socket's.
 * No reference is held on it between the request and its reply (two
 * atomic operations a side each round trip): it is found again by its id,
 * which no other pipe of the socket has while it lives (pipe_id_next,
 * socket.c; an id comes back only after 2^31 more connections). */
static struct fy_pipe *still_in(ferry_socket *s, int id)
{
    return id != 0 ? fy_pipe_by_id(s, id) : NULL;
}

static void req_forget(struct req_state *st)
{
    st->target_id = 0;
    st->waiting = 0;
    free(st->copy);
    free(st->parts);
    st->copy = NULL;
    st->parts = NULL;
    st->nparts = 0;
}

static int req_keep_copy(struct req_state *st, const struct fy_txmsg *m)
{
    st->copy = malloc(m->total ? m->total : 1);
    st->parts = malloc(m->nparts * sizeof *st->parts);
    if (st->copy == NULL || st->parts == NULL)
        return FERRY_ENOMEM;
    size_t off = 0;
    for (size_t i = 0; i < m->nparts; i++) {
        if (m->parts[i].len)
            memcpy(st->copy + off, m->parts[i].data, m->parts[i].len);
        st->parts[i].data = st->copy + off;
        st->parts[i].len = m->parts[i].len;
        off += m->parts[i].len;
    }
    st->nparts = m->nparts;
    return 0;
}

/* A request goes out as ZeroMQ frames it, on every transport: an empty
 * delimiter, then the user's parts (RFC 28), so that a ROUTER, or a chain
 * of brokers, can put routing frames in front and a REP find the end of
 * them. */
static int req_send(ferry_socket *s, const struct fy_txmsg *m)
{
    struct req_state *st = s->proto_state;
    if (st->waiting)
        return fy_err(FERRY_ESTATE, "req send: the reply to the previous request is due");
    if (fy_sock_rx_pending(s))
        return fy_err(FERRY_ESTATE, "req send: a reply (or why there is none) waits: receive it");
    if (m->nparts >= FY_MAX_PARTS)
        return fy_err(FERRY_EMSGSIZE, "req send: %zu parts and the delimiter are over %d",
                      m->nparts, FY_MAX_PARTS);
    /* A REQ reads only its target's pipe: other dead pipes hold nothing it
     * wants (late replies are discarded, as in ZeroMQ), so let them go; and
     * what a live peer sent unasked is discarded before it can be taken
     * for the answer to this request (counted: a peer broke the rules). */
    for (size_t i = 0; i < s->npipes; i++) {
        struct fy_pipe *p = s->pipes[i];
        struct fy_rxmsg junk = {0};
        int maybe = fy_pipe_maybe(p);
        for (size_t spent = 0;
             maybe && spent < FY_DROP_TURN && !p->dead && fy_pipe_recv(p, &junk, 0) == 1;) {
            fy_rxmsg_drop(&junk, &spent);
            fy_stat_inc(&s->stat->bad_input);
        }
        if (p->dead)
            fy_sock_remove_pipe(s, s->pipes[i--]);
    }
    if (parts_room(&st->framed, &st->framed_cap, m->nparts + 1) != 0)
        return FERRY_ENOMEM;
    st->framed[0] = (struct fy_part){"", 0};
    memcpy(st->framed + 1, m->parts, m->nparts * sizeof *m->parts);
    struct fy_txmsg tx = {
        .parts = st->framed, .nparts = m->nparts + 1, .total = m->total, .whole = m->whole};
    struct fy_pipe *p = NULL;
    int rc = fy_rr_send(s, &tx, &st->cursor, &p);
    if (rc != 1)
        return rc;
    if (s->opt.req_resend && req_keep_copy(st, &tx) != 0) {
        req_forget(st); /* sent, but cannot resend: behave as without it */
    }
    st->waiting = 1;
    st->target_id = p->id;
    return 1;
}

/* A REQ sends only when no reply is due. */
static int req_send_ready(ferry_socket *s)
{
    struct req_state *st = s->proto_state;
    return !st->waiting && !fy_sock_rx_pending(s) && fy_any_writable(s);
}

/* 1 if a received message starts with an envelope whose last frame is the
 * empty delimiter and has a body after it; *n is the envelope's frames.
 * At most max frames are looked at. */
static int env_split(const struct fy_rxmsg *m, size_t max, size_t *n)
{
    size_t i = m->next;
    while (i < m->nparts && i - m->next < max && m->parts[i]->size != 0)
        i++;
    *n = i + 1 - m->next;
    return i < m->nparts && *n <= max && m->parts[i]->size == 0 && i + 1 < m->nparts;
}

/* Takes the reply from the target's pipe. libzmq's REQ drops a reply that
 * does not start with the empty delimiter and goes on waiting; so does
 * this one, and counts it as bad input (FERRY_OPT_ERRORS, the drop
 * reason), since only a broken or hostile peer sends it. 1 got, 0 none,
 * < 0 the pipe broke. */
static int req_take(ferry_socket *s, struct fy_pipe *p, struct fy_rxmsg *m, int check)
{
    for (size_t spent = 0; spent < FY_DROP_TURN;) {
        int rc = fy_pipe_recv(p, m, check || p->dead);
        if (rc != 1)
            return rc;
        size_t n;
        if (env_split(m, 1, &n)) {
            m->from = p;
            fy_rxmsg_strip(m, 1);
            return 1;
        }
        fy_rxmsg_drop(m, &spent);
        fy_sock_note(s, 1, "req: a reply without the empty delimiter frame was dropped");
    }
    fy_sock_signal(s); /* more may wait: come back after the others had the lock */
    return 0;
}

static int req_recv(ferry_socket *s, struct fy_rxmsg *m, int check)
{
    struct req_state *st = s->proto_state;
    if (!st->waiting)
        return fy_err(FERRY_ESTATE, "req recv: no request was sent");
    struct fy_pipe *p = still_in(s, st->target_id);
    int in = p != NULL;
    int rc = in ? req_take(s, p, m, check) : FERRY_ECONNRESET;
    if (rc == 1) {
        req_forget(st);
        return 1;
    }
    if (rc == 0)
        return 0;
    /* The peer died (or broke) before replying. */
    if (in)
        fy_sock_pipe_failed(s, p, rc);
    if (st->copy != NULL) {
        struct fy_txmsg again = {.parts = st->parts, .nparts = st->nparts};
        for (size_t i = 0; i < st->nparts; i++)
            again.total += st->parts[i].len;
        struct fy_pipe *np = NULL;
        if (fy_rr_send(s, &again, &st->cursor, &np) == 1) {
            st->target_id = np->id;
            return 0; /* now wait for the new peer's reply */
        }
        if (s->npipes > 0)
            return 0; /* peers exist but are full: retry when woken */
    }
    req_forget(st);
    return fy_err(FERRY_ECONNRESET, "req recv: the peer died before replying");
}

static void req_fini(ferry_socket *s)
{
    struct req_state *st = s->proto_state;
    if (st) {
        req_forget(st);
        free(st->framed);
    }
}

static void rep_forget(struct rep_state *st)
{
    st->source_id = 0;
    st->replying = 0;
    if (st->env != st->env_few)
        free(st->env);
    st->env = NULL;
    st->nenv = 0;
}

/* A REP sends only the reply that is due; one to a requester that is gone
 * is dropped at once. */
static int rep_send_ready(ferry_socket *s)
{
    struct rep_state *st = s->proto_state;
    if (!st->replying || fy_sock_rx_pending(s))
        return 0;
    struct fy_pipe *p = still_in(s, st->source_id);
    return p == NULL || p->dead || p->ops->writable(p, 0);
}

static int rep_send(ferry_socket *s, const struct fy_txmsg *m)
{
    struct rep_state *st = s->proto_state;
    if (!st->replying)
        return fy_err(FERRY_ESTATE, "rep send: no request to reply to");
    if (fy_sock_rx_pending(s))
        return fy_err(FERRY_ESTATE, "rep send: the request is not all received yet");
    if (st->nenv + m->nparts > FY_MAX_PARTS)
        return fy_err(FERRY_EMSGSIZE,
                      "rep send: the envelope's %zu frames and %zu parts are over %d", st->nenv,
                      m->nparts, FY_MAX_PARTS);
    if (parts_room(&st->parts, &st->parts_cap, st->nenv + m->nparts) != 0)
        return FERRY_ENOMEM;
    memcpy(st->parts + st->nenv, m->parts, m->nparts * sizeof *m->parts);
    struct fy_txmsg tx = {
        .parts = st->parts, .nparts = st->nenv + m->nparts, .total = m->total, .whole = m->whole};
    for (size_t i = 0; i < st->nenv; i++)
        tx.total += st->parts[i].len;
    struct fy_pipe *p = still_in(s, st->source_id);
    int rc = 1;
    if (p == NULL || p->dead) {
        fy_sock_dropped(s, FY_DROP_NOROUTE); /* the requester is gone: nobody to deliver to */
    } else {
        rc = fy_pipe_send(p, &tx);
        if (rc < 0) {
            fy_sock_pipe_failed(s, p, rc);
            fy_sock_dropped(s, FY_DROP_NOROUTE);
            rc = 1;
        }
    }
    if (rc == 1)
        rep_forget(st);
    return rc;
}

/* Keeps the envelope (n frames, delimiter included) of the request in m
 * for the reply, and strips it from m. */
static int rep_keep_env(struct rep_state *st, struct fy_rxmsg *m, size_t n)
{
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++)
        bytes += m->parts[m->next + i]->size;
    if (parts_room(&st->parts, &st->parts_cap, n + 1) != 0)
        return FERRY_ENOMEM;
    st->env = bytes <= sizeof st->env_few ? st->env_few : malloc(bytes);
    if (st->env == NULL)
        return FERRY_ENOMEM;
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        const ferry_msg *f = m->parts[m->next + i];
        if (f->size)
            memcpy(st->env + off, f->data, f->size);
        st->parts[i] = (struct fy_part){st->env + off, f->size};
        off += f->size;
    }
    st->nenv = n;
    fy_rxmsg_strip(m, n);
    return 0;
}

/* Receives the next request whose envelope is whole: frames up to an empty
 * delimiter, and a body after it. One without (a peer that is not a REQ
 * or a DEALER framing as one) is dropped, as libzmq's REP does, and
 * counted as bad input; so is one whose envelope is over REP_MAX_HOPS
 * frames. */
static int rep_recv(ferry_socket *s, struct fy_rxmsg *m, int check)
{
    struct rep_state *st = s->proto_state;
    if (st->replying)
        return fy_err(FERRY_ESTATE, "rep recv: the reply to the previous request is due");
    for (size_t spent = 0; spent < FY_DROP_TURN;) {
        int rc = fy_fq_recv(s, m, &st->cursor, check);
        if (rc != 1)
            return rc;
        size_t n;
        if (env_split(m, REP_MAX_HOPS, &n)) {
            if (rep_keep_env(st, m, n) != 0) {
                fy_rxmsg_clear(m);
                return fy_err(FERRY_ENOMEM, "rep recv: the request's envelope");
            }
            st->replying = 1;
            st->source_id = m->from->id;
            return 1;
        }
        char why[120];
        if (n > REP_MAX_HOPS)
            snprintf(why, sizeof why,
                     "rep: a request with an envelope over %d frames from peer %d was dropped",
                     REP_MAX_HOPS, m->from->id);
        else
            snprintf(why, sizeof why,
                     "rep: a request without an envelope (no empty delimiter before a body) "
                     "from peer %d was dropped",
                     m->from->id);
        fy_rxmsg_drop(m, &spent);
        fy_sock_note(s, 1, why);
    }
    fy_sock_signal(s); /* more may wait: come back after the others had the lock */
    return 0;
}

static void rep_fini(ferry_socket *s)
{
    struct rep_state *st = s->proto_state;
    if (st) {
        rep_forget(st);
        free(st->parts);
    }
}

/* REQ and REP on the ZMTP wire (RFC 28). */
static const struct fy_wire req_wire = {.name = "REQ", .peers = {"REP", "ROUTER"}, .identity = 1};

const struct fy_proto_ops fy_req_ops = {
    .wire = &req_wire,
    .type = FERRY_REQ,
    .name = "req",
    .can_send = 1,
    .can_recv = 1,
    .state_size = sizeof(struct req_state),
    .send = req_send,
    .send_ready = req_send_ready,
    .recv = req_recv,
    .fini = req_fini,
};

static const struct fy_wire rep_wire = {.name = "REP", .peers = {"REQ", "DEALER"}};

const struct fy_proto_ops fy_rep_ops = {
    .wire = &rep_wire,
    .type = FERRY_REP,
    .name = "rep",
    .can_send = 1,
    .can_recv = 1,
    .state_size = sizeof(struct rep_state),
    .send = rep_send,
    .send_ready = rep_send_ready,
    .recv = rep_recv,
    .fini = rep_fini,
};
