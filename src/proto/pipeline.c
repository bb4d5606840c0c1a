/*
 * pipeline.c - PUSH and PULL. PUSH load-balances: each message goes to the
 * next puller (round-robin) that has room; when none has, the sender waits
 * (PUSH never drops). PULL fair-queues over its pushers.
 */
#include "../core/sock.h"

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

const struct fy_proto_ops fy_push_ops = {
    .type = FERRY_PUSH,
    .name = "push",
    .peer = FERRY_PULL,
    .can_send = 1,
    .state_size = sizeof(struct pipeline_state),
    .send = push_send,
    .next_pipe = push_next,
};

const struct fy_proto_ops fy_pull_ops = {
    .type = FERRY_PULL,
    .name = "pull",
    .peer = FERRY_PUSH,
    .can_recv = 1,
    .state_size = sizeof(struct pipeline_state),
    .recv = pull_recv,
};
