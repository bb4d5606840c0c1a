/*
 * reqrep.c - REQ and REP.
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

#include <stdlib.h>
#include <string.h>

struct req_state {
    size_t cursor;
    int waiting;            /* a request is out, its reply due */
    struct fy_pipe *target; /* the peer that got it (a reference) */
    unsigned char *copy;    /* REQ_RESEND: the request, parts back to back */
    struct fy_part *parts;
    size_t nparts;
};

struct rep_state {
    size_t cursor;
    int replying;           /* a request was received, the reply is due */
    struct fy_pipe *source; /* its peer (a reference) */
};

static void req_forget(struct req_state *st)
{
    if (st->target)
        fy_pipe_unref(st->target);
    st->target = NULL;
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

static int req_send(ferry_socket *s, const struct fy_txmsg *m)
{
    struct req_state *st = s->proto_state;
    if (st->waiting)
        return fy_err(FERRY_ESTATE, "req send: the reply to the previous request is due");
    /* A REQ reads only its target's pipe: other dead pipes hold nothing it
     * wants (late replies are discarded, as in ZeroMQ), so let them go. */
    for (size_t i = 0; i < s->npipes; i++)
        if (s->pipes[i]->dead)
            fy_sock_remove_pipe(s, s->pipes[i--]);
    struct fy_pipe *p = NULL;
    int rc;
    if (m->claim) {
        rc = fy_send_claim(s, m);
        p = m->claim->pipe;
    } else {
        rc = fy_rr_send(s, m, &st->cursor, &p);
    }
    if (rc != 1)
        return rc;
    if (s->opt.req_resend && !m->claim && req_keep_copy(st, m) != 0) {
        req_forget(st); /* sent, but cannot resend: behave as without it */
    }
    st->waiting = 1;
    st->target = p;
    fy_pipe_ref(p);
    return 1;
}

static int req_recv(ferry_socket *s, struct fy_rxmsg *m, int check)
{
    struct req_state *st = s->proto_state;
    if (!st->waiting)
        return fy_err(FERRY_ESTATE, "req recv: no request was sent");
    struct fy_pipe *p = st->target;
    int in = fy_pipe_in(s, p);
    int rc = in ? p->ops->recv(p, m, check || p->dead) : FERRY_ECONNRESET;
    if (rc == 1) {
        m->from = p;
        req_forget(st);
        return 1;
    }
    if (rc == 0)
        return 0;
    /* The peer died (or broke) before replying. */
    if (in)
        fy_sock_remove_pipe(s, p);
    if (st->copy != NULL) {
        struct fy_txmsg again = {.parts = st->parts, .nparts = st->nparts};
        for (size_t i = 0; i < st->nparts; i++)
            again.total += st->parts[i].len;
        struct fy_pipe *np = NULL;
        if (fy_rr_send(s, &again, &st->cursor, &np) == 1) {
            fy_pipe_unref(st->target);
            st->target = np;
            fy_pipe_ref(np);
            return 0; /* now wait for the new peer's reply */
        }
        if (s->npipes > 0)
            return 0; /* peers exist but are full: retry when woken */
    }
    req_forget(st);
    return fy_err(FERRY_ECONNRESET, "req recv: the peer died before replying");
}

static struct fy_pipe *req_next(ferry_socket *s, size_t size)
{
    struct req_state *st = s->proto_state;
    return st->waiting ? NULL : fy_rr_peek(s, st->cursor, size);
}

static void req_fini(ferry_socket *s)
{
    if (s->proto_state)
        req_forget(s->proto_state);
}

static int rep_send(ferry_socket *s, const struct fy_txmsg *m)
{
    struct rep_state *st = s->proto_state;
    if (!st->replying)
        return fy_err(FERRY_ESTATE, "rep send: no request to reply to");
    struct fy_pipe *p = st->source;
    int rc = 1;
    if (!fy_pipe_live(s, p)) {
        s->dropped++; /* the requester is gone: nobody to deliver to */
    } else {
        rc = m->claim ? fy_send_claim(s, m) : p->ops->send(p, m);
        if (rc < 0) {
            fy_sock_remove_pipe(s, p);
            s->dropped++;
            rc = 1;
        }
    }
    if (rc == 1) {
        fy_pipe_unref(st->source);
        st->source = NULL;
        st->replying = 0;
    }
    return rc;
}

static int rep_recv(ferry_socket *s, struct fy_rxmsg *m, int check)
{
    struct rep_state *st = s->proto_state;
    if (st->replying)
        return fy_err(FERRY_ESTATE, "rep recv: the reply to the previous request is due");
    int rc = fy_fq_recv(s, m, &st->cursor, check);
    if (rc == 1) {
        st->replying = 1;
        st->source = m->from;
        fy_pipe_ref(m->from);
    }
    return rc;
}

static struct fy_pipe *rep_next(ferry_socket *s, size_t size)
{
    struct rep_state *st = s->proto_state;
    if (!st->replying || !fy_pipe_live(s, st->source) ||
        !st->source->ops->writable(st->source, size))
        return NULL;
    return st->source;
}

static void rep_fini(ferry_socket *s)
{
    struct rep_state *st = s->proto_state;
    if (st && st->source)
        fy_pipe_unref(st->source);
}

/* REQ and REP on the ZMTP wire (RFC 28): the envelope is framed by the
 * transport as these say. */
static const struct fy_wire req_wire = {
    .name = "REQ", .peers = {"REP", "ROUTER"}, .identity = 1, .env = FY_ENV_DELIM};

const struct fy_proto_ops fy_req_ops = {
    .wire = &req_wire,
    .type = FERRY_REQ,
    .name = "req",
    .peer = FERRY_REP,
    .can_send = 1,
    .can_recv = 1,
    .state_size = sizeof(struct req_state),
    .send = req_send,
    .recv = req_recv,
    .next_pipe = req_next,
    .fini = req_fini,
};

static const struct fy_wire rep_wire = {
    .name = "REP", .peers = {"REQ", "DEALER"}, .env = FY_ENV_ROUTED};

const struct fy_proto_ops fy_rep_ops = {
    .wire = &rep_wire,
    .type = FERRY_REP,
    .name = "rep",
    .peer = FERRY_REQ,
    .can_send = 1,
    .can_recv = 1,
    .state_size = sizeof(struct rep_state),
    .send = rep_send,
    .recv = rep_recv,
    .next_pipe = rep_next,
    .fini = rep_fini,
};
