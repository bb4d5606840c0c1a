/*
 * router.c - ROUTER: ZeroMQ's addressable socket, for servers and brokers.
 *
 * Every peer has a routing id: the one it announced (FERRY_OPT_ROUTING_ID
 * on its side, carried by the ZMTP READY's Identity or the shm://
 * handshake), else one generated here in libzmq's form, 0x00 and a 32-bit
 * big-endian counter (announced ids may not start with 0x00, so the two
 * kinds never collide). A received message is handed up with the routing
 * id of its pipe as a first part; a message sent names its peer in its
 * first part, and the rest goes to that pipe only.
 *
 * A message to an unknown or gone peer, or to one that is full, is
 * dropped and counted (FERRY_OPT_DROPPED), as libzmq's ROUTER drops it;
 * with FERRY_OPT_ROUTER_MANDATORY an unknown peer is FERRY_EHOSTUNREACH and
 * a full one "not now" (the core waits, up to SNDTIMEO, or FERRY_EAGAIN
 * with DONTWAIT). A peer announcing an id another live peer holds is
 * refused (counted in FERRY_OPT_REFUSED), unless FERRY_OPT_ROUTER_HANDOVER:
 * then it takes the id and the other gets a generated one (libzmq
 * disconnects the other; here it stays, under its new id).
 *
 * Looking a peer up is a walk over the pipes, comparing lengths first.
 */
#include "protocols.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct router_pipe {
    unsigned char id[FY_RID_MAX];
    size_t len;
    int started; /* has an id */
};

struct router_state {
    size_t rx_cursor;
    uint32_t next_id; /* the next generated id's number */
    int mandatory, handover;
};

/* The live, started pipe whose id is id[0..len), or NULL. */
static struct fy_pipe *router_find(ferry_socket *s, const void *id, size_t len)
{
    for (size_t i = 0; i < s->npipes; i++) {
        struct fy_pipe *p = s->pipes[i];
        const struct router_pipe *rp = p->proto_data;
        if (!p->dead && rp != NULL && rp->started && rp->len == len && memcmp(rp->id, id, len) == 0)
            return p;
    }
    return NULL;
}

/* Gives rp a fresh generated id (skipping any still in use after the
 * counter wrapped). */
static void router_generate(ferry_socket *s, struct router_state *st, struct router_pipe *rp)
{
    unsigned char id[5];
    do {
        uint32_t n = st->next_id++;
        id[0] = 0;
        id[1] = (unsigned char)(n >> 24);
        id[2] = (unsigned char)(n >> 16);
        id[3] = (unsigned char)(n >> 8);
        id[4] = (unsigned char)n;
    } while (router_find(s, id, sizeof id) != NULL);
    memcpy(rp->id, id, sizeof id);
    rp->len = sizeof id;
    rp->started = 1;
}

static int router_init(ferry_socket *s)
{
    struct router_state *st = s->proto_state;
    /* libzmq starts its counter at a random number, so that ids from two
     * lives of one server differ; the pid and the clock serve as well */
    st->next_id = (uint32_t)fy_now_mono_ns() ^ ((uint32_t)getpid() << 16);
    return 0;
}

/* Refuses p's announced id, saying why (counted in FERRY_OPT_REFUSED). */
static int router_refuse(ferry_socket *s, int rc, const struct fy_pipe *p, const char *what)
{
    char why[FY_RID_MAX * 4 + 100], id[FY_RID_MAX + 1];
    size_t n = p->peer_rid_len < 64 ? p->peer_rid_len : 64;
    memcpy(id, p->peer_rid, n);
    id[n] = '\0';
    for (size_t i = 0; i < n; i++)
        if (id[i] == '\0')
            id[i] = '?'; /* the note escapes the rest */
    snprintf(why, sizeof why, "router: a peer announced routing id '%s', %s: refused", id, what);
    fy_stat_inc(&s->stat->refused);
    fy_sock_note(s, 0, why);
    return fy_err(rc, "%s", why);
}

static int router_start(ferry_socket *s, struct fy_pipe *p)
{
    struct router_state *st = s->proto_state;
    struct router_pipe *rp = p->proto_data;
    if (p->peer_rid_len == 0) {
        router_generate(s, st, rp);
        return 0;
    }
    if (p->peer_rid[0] == 0)
        return router_refuse(s, FERRY_EPROTO, p, "starting with 0x00 (kept for generated ids)");
    struct fy_pipe *old = router_find(s, p->peer_rid, p->peer_rid_len);
    if (old != NULL && !st->handover)
        return router_refuse(s, FERRY_EADDRINUSE, p,
                             "held by another peer (see FERRY_OPT_ROUTER_HANDOVER)");
    if (old != NULL)
        router_generate(s, st, old->proto_data); /* handed over: the old one loses it */
    /* A dead peer's messages still queued keep its pipe: they must not
     * arrive under the id its successor now holds (replies would go to it) */
    for (size_t i = 0; i < s->npipes; i++) {
        struct fy_pipe *q = s->pipes[i];
        struct router_pipe *qp = q->proto_data;
        if (q != p && q->dead && qp != NULL && qp->started && qp->len == p->peer_rid_len &&
            memcmp(qp->id, p->peer_rid, p->peer_rid_len) == 0)
            router_generate(s, st, qp);
    }
    memcpy(rp->id, p->peer_rid, p->peer_rid_len);
    rp->len = p->peer_rid_len;
    rp->started = 1;
    return 0;
}

/* A ROUTER drops what it cannot deliver, unless MANDATORY, when it waits
 * for room: then some peer must have room. */
static int router_send_ready(ferry_socket *s)
{
    struct router_state *st = s->proto_state;
    return !st->mandatory || fy_any_writable(s);
}

static int router_send(ferry_socket *s, const struct fy_txmsg *m)
{
    struct router_state *st = s->proto_state;
    const struct fy_part *id = &m->parts[0];
    if (m->nparts < 2)
        return 1; /* a routing id and nothing to send: nothing goes (libzmq) */
    struct fy_pipe *p =
        id->len > 0 && id->len <= FY_RID_MAX ? router_find(s, id->data, id->len) : NULL;
    if (p == NULL) {
        if (st->mandatory)
            return fy_err(FERRY_EHOSTUNREACH, "router send: no peer has that routing id");
        fy_sock_dropped(s, FY_DROP_NOROUTE);
        return 1;
    }
    struct fy_txmsg rest = {
        .parts = m->parts + 1, .nparts = m->nparts - 1, .total = m->total - id->len};
    int rc = fy_pipe_send(p, &rest);
    if (rc == 1)
        return 1;
    if (rc == 0 && (p->tx_partial || st->mandatory))
        return 0; /* half-written (finish it there), or wait for room */
    if (rc == FERRY_EMSGSIZE)
        return fy_err(rc, "router send: message larger than the peer accepts");
    if (rc < 0) {
        fy_sock_pipe_failed(s, p, rc);
        if (st->mandatory)
            return fy_err(FERRY_EHOSTUNREACH, "router send: the peer is gone");
    }
    /* full, or gone: libzmq's ROUTER drops it too */
    fy_sock_dropped(s, rc < 0 ? FY_DROP_NOROUTE : FY_DROP_FULL);
    return 1;
}

/* Receives fairly and puts the routing id of the pipe in front. */
static int router_recv(ferry_socket *s, struct fy_rxmsg *m, int check)
{
    struct router_state *st = s->proto_state;
    int rc = fy_fq_recv(s, m, &st->rx_cursor, check);
    if (rc != 1)
        return rc;
    struct router_pipe *rp = m->from->proto_data;
    if (!rp->started)
        router_generate(s, st, rp);
    ferry_msg *idm = fy_msg_heap(rp->len);
    if (idm == NULL || fy_rxmsg_prepend(m, idm) != 0) {
        free(idm);
        fy_rxmsg_clear(m);
        return fy_err(FERRY_ENOMEM, "router recv");
    }
    memcpy(idm->data, rp->id, rp->len);
    return 1;
}

static int router_setopt(ferry_socket *s, int opt, const void *val, size_t len)
{
    if (opt != FERRY_OPT_ROUTER_MANDATORY && opt != FERRY_OPT_ROUTER_HANDOVER)
        return FERRY_ENOTSUP;
    int64_t v;
    if (val != NULL && len == sizeof(int64_t))
        memcpy(&v, val, sizeof v);
    else if (val != NULL && len == sizeof(int))
        v = *(const int *)val;
    else
        return fy_err(FERRY_EINVAL, "setopt %d: an int or int64_t", opt);
    struct router_state *st = s->proto_state;
    pthread_mutex_lock(&s->mtx);
    if (opt == FERRY_OPT_ROUTER_MANDATORY)
        st->mandatory = v != 0;
    else
        st->handover = v != 0;
    pthread_mutex_unlock(&s->mtx);
    return 0;
}

static int router_getopt(ferry_socket *s, int opt, int64_t *val)
{
    const struct router_state *st = s->proto_state;
    if (opt == FERRY_OPT_ROUTER_MANDATORY)
        *val = st->mandatory;
    else if (opt == FERRY_OPT_ROUTER_HANDOVER)
        *val = st->handover;
    else
        return FERRY_ENOTSUP;
    return 0;
}

static const struct fy_wire router_wire = {
    .name = "ROUTER", .peers = {"DEALER", "REQ", "ROUTER"}, .identity = 1};

const struct fy_proto_ops fy_router_ops = {
    .wire = &router_wire,
    .type = FERRY_ROUTER,
    .name = "router",
    .can_send = 1,
    .can_recv = 1,
    .state_size = sizeof(struct router_state),
    .pipe_size = sizeof(struct router_pipe),
    .init = router_init,
    .setopt = router_setopt,
    .getopt = router_getopt,
    .pipe_start = router_start,
    .send = router_send,
    .send_ready = router_send_ready,
    .recv = router_recv,
};
