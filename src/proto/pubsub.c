/*
 * pubsub.c - PUB and SUB.
 *
 * Subscriptions travel from SUB to PUB as control commands, and the PUB
 * filters: a message is written only to the subscribers one of whose
 * prefixes matches its first part. A subscriber whose queue is full gets
 * nothing: the message is dropped for it and counted, and the PUB goes on
 * (it never blocks). Subscribing the same prefix twice needs two
 * unsubscribes, as in ZeroMQ. The SUB filters again on receipt, which costs
 * little and keeps it correct with publishers that do not filter.
 *
 * Prefixes live in a radix tree (core/prefix.h), so matching costs the
 * same with 10,000 prefixes as with one. A subscriber chooses them, so a
 * PUB holds at most FERRY_OPT_SUB_MAX prefixes of FERRY_OPT_SUB_MAX_BYTES
 * in all per subscriber, on every transport; past that a subscription is
 * ignored and counted in FERRY_OPT_ERRORS. Per subscriber the prefixes are
 * a set (libzmq's SUB sends every subscribe but one cancel, and libzmq's
 * PUB keeps a set too); a SUB counts its own, so a prefix subscribed twice
 * needs two unsubscribes, as in ZeroMQ.
 */
#include "pubsub_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void pend_drop(struct fy_ps_sub *st, size_t i)
{
    fy_pipe_unref(st->pend[i].p);
    free(st->pend[i].data);
    memmove(&st->pend[i], &st->pend[i + 1], (st->npend - i - 1) * sizeof *st->pend);
    st->npend--;
}

void fy_ps_sub_flush(ferry_socket *s, struct fy_ps_sub *st)
{
    for (size_t i = 0; i < st->npend;) {
        struct fy_ps_pending *e = &st->pend[i];
        int blocked = 0;
        for (size_t j = 0; j < i; j++) /* an earlier one for this pipe waits */
            blocked |= st->pend[j].p == e->p;
        if (blocked) {
            i++;
            continue;
        }
        int rc = fy_pipe_live(s, e->p) ? e->p->ops->send_cmd(e->p, e->cmd, e->data, e->len)
                                       : FERRY_ECONNRESET;
        if (rc == 0)
            i++;
        else
            pend_drop(st, i); /* sent, or the pipe is gone */
    }
}

/* Sends a command, or queues it behind earlier ones (the ring to the PUB
 * may be full when the PUB has not sent for a while). mtx held. */
static int sub_send(ferry_socket *s, struct fy_ps_sub *st, struct fy_pipe *p, int cmd,
                    const void *data, size_t len)
{
    int queued = 0;
    for (size_t j = 0; j < st->npend; j++)
        queued |= st->pend[j].p == p;
    int rc = queued ? 0 : p->ops->send_cmd(p, cmd, data, len);
    if (rc != 0)
        return rc < 0 ? rc : 0;
    struct fy_ps_pending *v = realloc(st->pend, (st->npend + 1) * sizeof *v);
    unsigned char *copy = malloc(len ? len : 1);
    if (v == NULL || copy == NULL) {
        free(copy);
        if (v)
            st->pend = v;
        return FERRY_ENOMEM;
    }
    st->pend = v;
    if (len)
        memcpy(copy, data, len);
    fy_pipe_ref(p);
    st->pend[st->npend++] = (struct fy_ps_pending){p, cmd, len, copy};
    FY_UNUSED(s);
    return 0;
}

/* --- PUB ------------------------------------------------------------------- */

int fy_ps_pipe_sub(ferry_socket *s, struct fy_pipe *p, int cmd, const void *data, size_t len)
{
    struct fy_ps_pipe *pp = p->proto_data;
    if (pp == NULL) /* not (or no longer) one of ours */
        return 0;
    if (cmd != 1)
        return fy_prefixes_remove(pp->subs, data, len, 0);
    size_t n = fy_prefixes_count(pp->subs), bytes = fy_prefixes_bytes(pp->subs);
    if (!fy_prefixes_has(pp->subs, data, len) &&
        (n >= (size_t)s->opt.sub_max || len > s->opt.sub_max_bytes ||
         bytes > s->opt.sub_max_bytes - len)) {
        char why[160];
        snprintf(why, sizeof why,
                 "subscription of %zu bytes ignored: the subscriber holds %zu prefixes of %zu "
                 "bytes (FERRY_OPT_SUB_MAX %d, FERRY_OPT_SUB_MAX_BYTES %llu)",
                 len, n, bytes, s->opt.sub_max, (unsigned long long)s->opt.sub_max_bytes);
        fy_sock_note(s, 1, why);
        return FERRY_ENOSPC;
    }
    int rc = fy_prefixes_add(&pp->subs, data, len, 0);
    if (rc < 0)
        fy_sock_note(s, 0, "subscription ignored: out of memory");
    return rc;
}

static void pub_cmd(ferry_socket *s, struct fy_pipe *p, int cmd, const void *data, size_t len)
{
    fy_ps_pipe_sub(s, p, cmd, data, len);
}

static int pub_send(ferry_socket *s, const struct fy_txmsg *m)
{
    /* Take in the subscriptions that arrived since the last message. A
     * pipe carries nothing else towards a PUB: data would be a protocol
     * violation and is discarded. */
    for (size_t i = 0; i < s->npipes; i++) {
        struct fy_rxmsg junk = {0};
        struct fy_pipe *p = s->pipes[i];
        int rc;
        if (!fy_pipe_maybe(p)) /* the usual case: a look of a load or two */
            continue;
        while ((rc = fy_pipe_recv(p, &junk, 0)) == 1)
            fy_rxmsg_clear(&junk);
        if (rc < 0) { /* garbage from a subscriber, or it left */
            fy_sock_pipe_failed(s, p, rc);
            i--;
        }
    }
    fy_ps_publish(s, m);
    return 1;
}

void fy_ps_publish(ferry_socket *s, const struct fy_txmsg *m0)
{
    struct fy_txmsg whole = *m0;
    whole.whole = 1;
    whole.fanout = s->npipes > 1;
    struct fy_fanout fan = {0};
    whole.fan = whole.fanout ? &fan : NULL;
    const struct fy_txmsg *m = &whole;
    const void *first = m->nparts ? m->parts[0].data : "";
    size_t flen = m->nparts ? m->parts[0].len : 0;
    for (size_t i = 0; i < s->npipes; i++) {
        struct fy_pipe *p = s->pipes[i];
        struct fy_ps_pipe *pp = p->proto_data;
        if (p->dead || !fy_prefixes_match(pp->subs, first, flen))
            continue;
        int rc = fy_pipe_send(p, m);
        if (rc == 0) {
            pp->dropped++;
            fy_stat_add(&p->stat->dropped, 1);
            fy_sock_dropped(s, FY_DROP_FULL);
        } else if (rc < 0) {
            fy_sock_pipe_failed(s, p, rc);
            i--;
        }
    }
}

/* A PUB's peers send only subscriptions: as commands (ZMTP 3.1) or as
 * 0x01/0x00 messages (3.0). */
static const struct fy_wire pub_wire = {
    .name = "PUB", .peers = {"SUB", "XSUB"}, .in = FY_IN_SUBSCRIPTIONS, .fanout = 1};

void fy_ps_pipe_rm(ferry_socket *s, struct fy_pipe *p)
{
    FY_UNUSED(s);
    struct fy_ps_pipe *pp = p->proto_data;
    fy_prefixes_free(pp->subs);
    pp->subs = NULL;
}

/* A subscriber counts as a peer once it has subscribed to something;
 * subscriptions that arrived are taken in first. */
static int pub_peer_ready(ferry_socket *s, struct fy_pipe *p)
{
    FY_UNUSED(s);
    struct fy_rxmsg junk = {0};
    while (fy_pipe_recv(p, &junk, 0) == 1)
        fy_rxmsg_clear(&junk);
    struct fy_ps_pipe *pp = p->proto_data;
    return pp != NULL && fy_prefixes_count(pp->subs) > 0;
}

const struct fy_proto_ops fy_pub_ops = {
    .wire = &pub_wire,
    .type = FERRY_PUB,
    .name = "pub",
    .can_send = 1,
    .pipe_size = sizeof(struct fy_ps_pipe),
    .send = pub_send,
    .send_ready = fy_send_never_waits,
    .cmd = pub_cmd,
    .pipe_rm = fy_ps_pipe_rm,
    .peer_ready = pub_peer_ready,
};

/* --- SUB ------------------------------------------------------------------- */

struct sub_add_ctx {
    ferry_socket *s;
    struct fy_pipe *p;
};

static int sub_add_one(void *ctx, const void *prefix, size_t len)
{
    struct sub_add_ctx *c = ctx;
    int rc = sub_send(c->s, c->s->proto_state, c->p, 1, prefix, len);
    return rc < 0 ? rc : 0;
}

int fy_ps_sub_add(ferry_socket *s, struct fy_pipe *p)
{
    struct fy_ps_sub *st = s->proto_state;
    struct sub_add_ctx c = {s, p};
    return fy_prefixes_each(st->subs, sub_add_one, &c);
}

/* FERRY_OPT_SUBSCRIBE and FERRY_OPT_UNSUBSCRIBE: the SUB's own options. */
static int sub_setopt(ferry_socket *s, int opt, const void *data, size_t len)
{
    if (opt != FERRY_OPT_SUBSCRIBE && opt != FERRY_OPT_UNSUBSCRIBE)
        return FERRY_ENOTSUP;
    if (data == NULL && len > 0)
        return FERRY_EINVAL;
    pthread_mutex_lock(&s->mtx);
    int rc = fy_ps_sub_update(s, opt == FERRY_OPT_SUBSCRIBE, data, len);
    pthread_mutex_unlock(&s->mtx);
    return rc < 0 ? rc : 0;
}

int fy_ps_sub_update(ferry_socket *s, int subscribe, const void *data, size_t len)
{
    struct fy_ps_sub *st = s->proto_state;
    int rc = subscribe ? fy_prefixes_add(&st->subs, data, len, 1)
                       : fy_prefixes_remove(st->subs, data, len, 1);
    if (rc == 1) {
        fy_ps_sub_flush(s, st);
        for (size_t i = 0; i < s->npipes; i++) {
            struct fy_pipe *p = s->pipes[i];
            if (!p->dead)
                sub_send(s, st, p, subscribe, data, len); /* queued if no room */
        }
    }
    return rc;
}

/* A publisher that does not filter may send many messages a SUB does not
 * want: they are discarded a turn (FY_DROP_TURN) at a time. */
static int sub_recv(ferry_socket *s, struct fy_rxmsg *m, int check)
{
    struct fy_ps_sub *st = s->proto_state;
    if (st->npend)
        fy_ps_sub_flush(s, st);
    for (size_t spent = 0; spent < FY_DROP_TURN;) {
        int rc = fy_fq_recv(s, m, &st->cursor, check);
        if (rc != 1)
            return rc;
        ferry_msg *first = m->parts[0];
        if (fy_prefixes_match(st->subs, first->data, first->size))
            return 1;
        fy_rxmsg_drop(m, &spent);
    }
    fy_sock_signal(s);
    return 0;
}

void fy_ps_sub_fini(ferry_socket *s)
{
    struct fy_ps_sub *st = s->proto_state;
    if (st == NULL)
        return;
    fy_prefixes_free(st->subs);
    while (st->npend)
        pend_drop(st, st->npend - 1);
    free(st->pend);
}

static const struct fy_wire sub_wire = {.name = "SUB", .peers = {"PUB", "XPUB"}};

const struct fy_proto_ops fy_sub_ops = {
    .wire = &sub_wire,
    .type = FERRY_SUB,
    .name = "sub",
    .can_recv = 1,
    .state_size = sizeof(struct fy_ps_sub),
    .recv = sub_recv,
    .setopt = sub_setopt,
    .pipe_add = fy_ps_sub_add,
    .fini = fy_ps_sub_fini,
};
