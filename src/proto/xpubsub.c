/*
 * xpubsub.c - XPUB and XSUB: a PUB and a SUB that show subscriptions to the
 * application, so that a proxy, a last-value cache or a broker can forward
 * them or act on them (RFC 29, as libzmq 4.3 behaves).
 *
 * XPUB publishes as a PUB does (prefixes per subscriber, held to the same
 * caps, filtered on our side, never blocking) and hands subscriptions up as
 * messages: "\x01PREFIX" when a prefix gains its first subscriber, "\x00PREFIX"
 * when it loses its last (a subscriber that goes away cancels all of its
 * own); with FERRY_OPT_XPUB_VERBOSE every subscribe is passed, repeats
 * included. Other messages a subscriber sends reach the application too.
 * FERRY_OPT_XPUB_WELCOME_MSG goes to each new subscriber before anything
 * else, so a late joiner can learn the current state.
 *
 * What waits for the application is bounded (XPUB_QUEUE_MAX messages,
 * XPUB_QUEUE_BYTES). When it is full, a subscriber's further input stays in its pipe (the
 * transport's flow control holds it back), except subscriptions that come
 * as ZMTP 3.1 commands, which the I/O thread hands over as they arrive:
 * those notices are dropped and counted in FERRY_OPT_DROPPED (the prefix
 * itself still takes effect for filtering).
 *
 * XSUB subscribes with messages: a one-part "\x01PREFIX" subscribes and
 * "\x00PREFIX" unsubscribes (counted, as a SUB's options are), and any other
 * message goes to every publisher (one that is full misses it, counted).
 * It receives everything its publishers send: they filter.
 */
#include "pubsub_int.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define XPUB_QUEUE_MAX 10000
#define XPUB_QUEUE_BYTES (64u << 20) /* and their bytes, 128 more per part */
#define XPUB_PART_COST 128u

struct xpub_state {
    struct fy_prefixes *all; /* counted: how many subscribers hold each prefix */
    struct fy_rxmsg *q;      /* ring of messages waiting for recv */
    size_t qhead, qn, qcap;
    uint64_t qbytes;
    size_t cursor; /* the pipe taken in from first next time: fairness */
    int verbose;
    int has_welcome;
    unsigned char *welcome;
    size_t welcome_len;
};

static uint64_t msg_cost(const struct fy_rxmsg *m)
{
    uint64_t c = 0;
    for (size_t i = 0; i < m->nparts; i++)
        c += m->parts[i]->size + XPUB_PART_COST;
    return c;
}

/* 1 when the queue takes nothing more from the subscribers' pipes. */
static int q_full(const struct xpub_state *st)
{
    return st->qn >= XPUB_QUEUE_MAX || st->qbytes >= XPUB_QUEUE_BYTES;
}

/* Queues m (its parts pass to the queue). 0, or -1 when full (the count:
 * a message taken from a pipe may pass the byte budget once). */
static int q_push(struct xpub_state *st, struct fy_rxmsg *m)
{
    if (st->qn == XPUB_QUEUE_MAX)
        return -1;
    if (st->qn == st->qcap) {
        size_t cap = st->qcap ? st->qcap * 2 : 16;
        struct fy_rxmsg *v = malloc(cap * sizeof *v);
        if (v == NULL)
            return -1;
        for (size_t i = 0; i < st->qn; i++)
            fy_rxmsg_move(&v[i], &st->q[(st->qhead + i) % st->qcap]);
        free(st->q);
        st->q = v;
        st->qcap = cap;
        st->qhead = 0;
    }
    struct fy_rxmsg *slot = &st->q[(st->qhead + st->qn) % st->qcap];
    st->qbytes += msg_cost(m);
    fy_rxmsg_move(slot, m);
    st->qn++;
    return 0;
}

static void q_pop(struct xpub_state *st, struct fy_rxmsg *out)
{
    fy_rxmsg_move(out, &st->q[st->qhead]);
    st->qhead = (st->qhead + 1) % st->qcap;
    st->qn--;
    st->qbytes -= msg_cost(out);
}

/* A subscription notice for the application: flag, then the prefix. */
static void notify(ferry_socket *s, struct xpub_state *st, int sub, const void *data, size_t len)
{
    ferry_msg *f = fy_msg_heap(len + 1);
    struct fy_rxmsg m;
    fy_rxmsg_one(&m, f);
    if (f != NULL) {
        ((unsigned char *)f->data)[0] = (unsigned char)(sub != 0);
        if (len)
            memcpy((unsigned char *)f->data + 1, data, len);
    }
    if (f == NULL || q_push(st, &m) != 0) {
        if (f)
            ferry_msg_free(f);
        fy_sock_dropped(s, FY_DROP_FULL);
        fy_sock_note(s, 0,
                     "xpub: a subscription notice was dropped: the application's queue is full");
        return;
    }
    fy_sock_signal(s); /* a message for recv, and for the pollable fd */
}

static void xpub_cmd(ferry_socket *s, struct fy_pipe *p, int cmd, const void *data, size_t len)
{
    struct xpub_state *st = s->proto_state;
    if (p->proto_data == NULL) /* it left (the I/O thread still decodes its input) */
        return;
    int rc = fy_ps_pipe_sub(s, p, cmd, data, len);
    if (rc < 0)
        return;
    if (cmd == 1) {
        int first = rc == 1 && fy_prefixes_add(&st->all, data, len, 1) == 1;
        if (first || st->verbose)
            notify(s, st, 1, data, len);
    } else if (rc == 1 && fy_prefixes_remove(st->all, data, len, 1) == 1) {
        notify(s, st, 0, data, len);
    }
}

/* A one-part message of 0x01 or 0x00 and a prefix: a subscription in the
 * ZMTP 3.0 form (or from an XSUB over shm://, which sends its own as data). */
static int is_subscription(const struct fy_rxmsg *m)
{
    if (m->nparts != 1)
        return 0;
    const ferry_msg *f = m->parts[0];
    const unsigned char *b = f->data;
    return f->size >= 1 && (b[0] == 0 || b[0] == 1);
}

/* Messages taken from one pipe per call, and from all of them: what a
 * subscriber sends is handled under the socket's mutex, so a peer that
 * keeps sending must not keep us there (the waiting loop comes back). */
#define XPUB_TAKE_PIPE 64
#define XPUB_TAKE_CALL 1024

/* Takes in what the subscribers sent, a share from each, starting after
 * the pipe that started last time: subscriptions take effect (and are
 * noticed), other messages wait for recv; a full queue leaves the rest in
 * the pipes. */
static void xpub_take(ferry_socket *s, struct xpub_state *st, int check)
{
    int budget = XPUB_TAKE_CALL;
    size_t n = s->npipes, start = n ? st->cursor % n : 0;
    for (size_t k = 0; k < n && k < s->npipes && !q_full(st) && budget > 0; k++) {
        size_t i = (start + k) % s->npipes;
        struct fy_pipe *p = s->pipes[i];
        int rc = 0, share = XPUB_TAKE_PIPE;
        struct fy_rxmsg m = {0};
        if (!check && !fy_pipe_maybe(p)) /* the usual case: a look of a load or two */
            continue;
        while (!q_full(st) && share-- > 0 && budget-- > 0 &&
               (rc = fy_pipe_recv(p, &m, check || p->dead)) == 1) {
            if (is_subscription(&m)) {
                const unsigned char *b = m.parts[0]->data;
                xpub_cmd(s, p, b[0], b + 1, m.parts[0]->size - 1);
                fy_rxmsg_clear(&m);
            } else if (q_push(st, &m) != 0) {
                fy_rxmsg_clear(&m); /* out of memory */
            }
            memset(&m, 0, sizeof m);
        }
        if (rc < 0) { /* garbage, or gone and drained */
            fy_sock_pipe_failed(s, p, rc);
            k--;
            n--;
        }
    }
    st->cursor = start + 1;
    if (budget <= 0)
        fy_sock_signal(s); /* more may be waiting: the waiting loop comes back */
}

static int xpub_send(ferry_socket *s, const struct fy_txmsg *m)
{
    xpub_take(s, s->proto_state, 0);
    fy_ps_publish(s, m);
    return 1;
}

static int xpub_recv(ferry_socket *s, struct fy_rxmsg *m, int check)
{
    struct xpub_state *st = s->proto_state;
    xpub_take(s, st, check);
    if (st->qn == 0)
        return 0;
    q_pop(st, m);
    return 1;
}

static int xpub_peer_ready(ferry_socket *s, struct fy_pipe *p)
{
    xpub_take(s, s->proto_state, 0);
    struct fy_ps_pipe *pp = p->proto_data;
    return pp != NULL && fy_prefixes_count(pp->subs) > 0;
}

/* The welcome message goes to a new subscriber before anything else. */
static int xpub_pipe_add(ferry_socket *s, struct fy_pipe *p)
{
    struct xpub_state *st = s->proto_state;
    if (!st->has_welcome)
        return 0;
    struct fy_part part = {st->welcome, st->welcome_len};
    struct fy_txmsg tm = {.parts = &part, .nparts = 1, .total = st->welcome_len, .whole = 1};
    if (fy_pipe_send(p, &tm) != 1)
        /* no room in a brand-new pipe: a ring smaller than the message */
        fy_sock_dropped(s, FY_DROP_FULL);
    return 0;
}

struct cancel_ctx {
    ferry_socket *s;
    struct xpub_state *st;
};

static int cancel_one(void *ctx, const void *prefix, size_t len)
{
    struct cancel_ctx *c = ctx;
    if (fy_prefixes_remove(c->st->all, prefix, len, 1) == 1)
        notify(c->s, c->st, 0, prefix, len);
    return 0;
}

/* A subscriber that goes away cancels what it held. */
static void xpub_pipe_rm(ferry_socket *s, struct fy_pipe *p)
{
    struct fy_ps_pipe *pp = p->proto_data;
    struct xpub_state *st = s->proto_state;
    struct cancel_ctx c = {s, st};
    if (pp != NULL && !s->closing)
        fy_prefixes_each(pp->subs, cancel_one, &c);
    while (s->closing && st->qn > 0) { /* messages read in place go back now, under mtx */
        struct fy_rxmsg m;
        q_pop(st, &m);
        fy_rxmsg_clear(&m);
    }
    fy_ps_pipe_rm(s, p);
}

static int xpub_setopt(ferry_socket *s, int opt, const void *val, size_t len)
{
    if (opt != FERRY_OPT_XPUB_VERBOSE && opt != FERRY_OPT_XPUB_WELCOME_MSG)
        return FERRY_ENOTSUP;
    if (val == NULL && len > 0)
        return FERRY_EINVAL;
    struct xpub_state *st = s->proto_state;
    int rc = 0;
    pthread_mutex_lock(&s->mtx);
    if (opt == FERRY_OPT_XPUB_VERBOSE) {
        int64_t v = 0;
        if (len == sizeof(int64_t))
            memcpy(&v, val, sizeof v);
        else if (len == sizeof(int))
            v = *(const int *)val;
        else
            rc = FERRY_EINVAL;
        st->verbose = v != 0;
    } else if (len > s->opt.maxmsgsize) {
        rc = FERRY_EMSGSIZE;
    } else {
        unsigned char *w = malloc(len ? len : 1);
        if (w == NULL) {
            rc = FERRY_ENOMEM;
        } else {
            if (len)
                memcpy(w, val, len);
            free(st->welcome);
            st->welcome = w;
            st->welcome_len = len;
            st->has_welcome = val != NULL;
        }
    }
    pthread_mutex_unlock(&s->mtx);
    return rc;
}

static void xpub_fini(ferry_socket *s)
{
    struct xpub_state *st = s->proto_state;
    if (st == NULL)
        return;
    while (st->qn > 0) {
        struct fy_rxmsg m;
        q_pop(st, &m);
        fy_rxmsg_clear(&m);
    }
    free(st->q);
    fy_prefixes_free(st->all);
    free(st->welcome);
}

/* An XPUB's subscribers send subscriptions as commands (ZMTP 3.1, shm://)
 * or as 0x01/0x00 messages (ZMTP 3.0, an XSUB over shm://), and may send
 * other messages, which the application receives. */
static const struct fy_wire xpub_wire = {.name = "XPUB", .peers = {"SUB", "XSUB"}, .fanout = 1};

const struct fy_proto_ops fy_xpub_ops = {
    .wire = &xpub_wire,
    .type = FERRY_XPUB,
    .name = "xpub",
    .can_send = 1,
    .can_recv = 1,
    .state_size = sizeof(struct xpub_state),
    .pipe_size = sizeof(struct fy_ps_pipe),
    .send = xpub_send,
    .send_ready = fy_send_never_waits,
    .recv = xpub_recv,
    .setopt = xpub_setopt,
    .peer_ready = xpub_peer_ready,
    .pipe_add = xpub_pipe_add,
    .pipe_rm = xpub_pipe_rm,
    .cmd = xpub_cmd,
    .fini = xpub_fini,
};

/* --- XSUB ------------------------------------------------------------------ */

struct xsub_state {
    struct fy_ps_sub sub; /* first: the SUB helpers work on it */
};

static int xsub_send(ferry_socket *s, const struct fy_txmsg *m)
{
    if (m->nparts == 1 && m->parts[0].len >= 1) {
        const unsigned char *b = m->parts[0].data;
        if (b[0] == 1 || b[0] == 0) {
            int rc = fy_ps_sub_update(s, b[0], b + 1, m->parts[0].len - 1);
            return rc < 0 ? rc : 1;
        }
    }
    struct fy_txmsg whole = *m;
    whole.whole = 1;
    whole.fanout = s->npipes > 1;
    for (size_t i = 0; i < s->npipes; i++) { /* upstream, to every publisher */
        struct fy_pipe *p = s->pipes[i];
        if (p->dead)
            continue;
        int rc = fy_pipe_send(p, &whole);
        if (rc == 0)
            fy_sock_dropped(s, FY_DROP_FULL);
        else if (rc < 0) {
            fy_sock_pipe_failed(s, p, rc);
            i--;
        }
    }
    return 1;
}

static int xsub_recv(ferry_socket *s, struct fy_rxmsg *m, int check)
{
    struct xsub_state *st = s->proto_state;
    if (st->sub.npend)
        fy_ps_sub_flush(s, &st->sub);
    return fy_fq_recv(s, m, &st->sub.cursor, check);
}

static const struct fy_wire xsub_wire = {.name = "XSUB", .peers = {"PUB", "XPUB"}};

const struct fy_proto_ops fy_xsub_ops = {
    .wire = &xsub_wire,
    .type = FERRY_XSUB,
    .name = "xsub",
    .can_send = 1,
    .can_recv = 1,
    .state_size = sizeof(struct xsub_state),
    .send = xsub_send,
    .send_ready = fy_send_never_waits,
    .recv = xsub_recv,
    .pipe_add = fy_ps_sub_add,
    .fini = fy_ps_sub_fini,
};
