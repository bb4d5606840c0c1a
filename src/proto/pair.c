/* pair.c - PAIR: exactly one peer, both directions. A second peer is
 * refused while the first is connected. */
#include "protocols.h"

static int pair_accept(ferry_socket *s)
{
    for (size_t i = 0; i < s->npipes; i++)
        if (!s->pipes[i]->dead)
            return fy_err(FERRY_EADDRINUSE, "pair socket already has a peer");
    return 0;
}

static int pair_add(ferry_socket *s, struct fy_pipe *p)
{
    FY_UNUSED(p);
    return pair_accept(s);
}

static struct fy_pipe *pair_live(ferry_socket *s)
{
    for (size_t i = 0; i < s->npipes; i++)
        if (!s->pipes[i]->dead)
            return s->pipes[i];
    return NULL;
}

static int pair_send(ferry_socket *s, const struct fy_txmsg *m)
{
    if (m->claim)
        return fy_send_claim(s, m);
    size_t cursor = 0;
    return fy_rr_send(s, m, &cursor, NULL);
}

static int pair_recv(ferry_socket *s, struct fy_rxmsg *m, int check)
{
    size_t cursor = 0;
    return fy_fq_recv(s, m, &cursor, check);
}

static struct fy_pipe *pair_next(ferry_socket *s, size_t size)
{
    struct fy_pipe *p = pair_live(s);
    return p && p->ops->writable(p, size) ? p : NULL;
}

static const struct fy_wire pair_wire = {.name = "PAIR", .peers = {"PAIR"}};

const struct fy_proto_ops fy_pair_ops = {
    .wire = &pair_wire,
    .type = FERRY_PAIR,
    .name = "pair",
    .can_send = 1,
    .can_recv = 1,
    .send = pair_send,
    .recv = pair_recv,
    .accept = pair_accept,
    .pipe_add = pair_add,
    .next_pipe = pair_next,
};
