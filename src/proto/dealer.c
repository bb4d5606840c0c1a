/*
 * dealer.c - DEALER: ZeroMQ's asynchronous REQ. Each message goes to the
 * next peer with room, round-robin (when every peer is full, or none is
 * connected, the sender waits: a DEALER never drops); messages are received
 * from all peers fairly. No envelope is added or taken: a DEALER talking
 * to a REP frames the delimiter itself, and one behind a ROUTER sees what
 * the ROUTER's user sent after the routing id.
 */
#include "protocols.h"

struct dealer_state {
    size_t tx_cursor, rx_cursor;
};

static int dealer_send(ferry_socket *s, const struct fy_txmsg *m)
{
    struct dealer_state *st = s->proto_state;
    if (m->claim) {
        int rc = fy_send_claim(s, m);
        if (rc == 1)
            st->tx_cursor++;
        return rc;
    }
    return fy_rr_send(s, m, &st->tx_cursor, NULL);
}

static int dealer_recv(ferry_socket *s, struct fy_rxmsg *m, int check)
{
    struct dealer_state *st = s->proto_state;
    return fy_fq_recv(s, m, &st->rx_cursor, check);
}

static struct fy_pipe *dealer_next(ferry_socket *s, size_t size)
{
    struct dealer_state *st = s->proto_state;
    return fy_rr_peek(s, st->tx_cursor, size);
}

/* READY carries an Identity, empty unless FERRY_OPT_ROUTING_ID is set, as
 * libzmq's DEALER sends it. */
static const struct fy_wire dealer_wire = {
    .name = "DEALER", .peers = {"ROUTER", "REP", "DEALER"}, .identity = 1};

const struct fy_proto_ops fy_dealer_ops = {
    .wire = &dealer_wire,
    .type = FERRY_DEALER,
    .name = "dealer",
    .can_send = 1,
    .can_recv = 1,
    .state_size = sizeof(struct dealer_state),
    .send = dealer_send,
    .recv = dealer_recv,
    .next_pipe = dealer_next,
};
