/*
 * pipeline.c - PUSH and PULL. PUSH load-balances: each message goes to the
 * next puller (round-robin) that has room; when none has, the sender waits
 * (PUSH never drops). PULL fair-queues over its pushers.
 */
#include "protocols.h"

struct pipeline_state {
    size_t cursor;
};

static int push_send(ferry_socket *s, const struct fy_txmsg *m)
{
    struct pipeline_state *st = s->proto_state;
    if (m->claim) {
        int rc = fy_send_claim(s, m);
        if (rc == 1)
            st->cursor++;
        return rc;
    }
    return fy_rr_send(s, m, &st->cursor, NULL);
}

static struct fy_pipe *push_next(ferry_socket *s, size_t size)
{
    struct pipeline_state *st = s->proto_state;
    return fy_rr_peek(s, st->cursor, size);
}

static int pull_recv(ferry_socket *s, struct fy_rxmsg *m, int check)
{
    struct pipeline_state *st = s->proto_state;
    return fy_fq_recv(s, m, &st->cursor, check);
}

/* A PUSH takes no data from its peers: what one sends is dropped. */
static const struct fy_wire push_wire = {.name = "PUSH", .peers = {"PULL"}, .in = FY_IN_NONE};

const struct fy_proto_ops fy_push_ops = {
    .wire = &push_wire,
    .type = FERRY_PUSH,
    .name = "push",
    .can_send = 1,
    .state_size = sizeof(struct pipeline_state),
    .send = push_send,
    .next_pipe = push_next,
};

static const struct fy_wire pull_wire = {.name = "PULL", .peers = {"PUSH"}};

const struct fy_proto_ops fy_pull_ops = {
    .wire = &pull_wire,
    .type = FERRY_PULL,
    .name = "pull",
    .can_recv = 1,
    .state_size = sizeof(struct pipeline_state),
    .recv = pull_recv,
};
