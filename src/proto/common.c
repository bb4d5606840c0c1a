/*
 * common.c - the protocol registry, and the two ways of choosing a pipe
 * that the patterns share: round-robin for sending (load balancing) and
 * fair queuing for receiving.
 */
#include "protocols.h"

#include <string.h>

static const struct fy_proto_ops *const protocols[] = {
    &fy_pair_ops, &fy_pub_ops,  &fy_sub_ops,  &fy_req_ops,    &fy_rep_ops,    &fy_push_ops,
    &fy_pull_ops, &fy_xpub_ops, &fy_xsub_ops, &fy_dealer_ops, &fy_router_ops,
};

const struct fy_proto_ops *fy_proto_find(int type)
{
    for (size_t i = 0; i < FY_ARRAY_LEN(protocols); i++)
        if (protocols[i]->type == type)
            return protocols[i];
    return NULL;
}

const char *fy_type_name(int type)
{
    const struct fy_proto_ops *p = fy_proto_find(type);
    return p ? p->name : "unknown";
}

/* One compatibility table for every transport: the patterns' wire
 * descriptions (RFC 37's), so shm:// and ZMTP cannot disagree. */
int fy_types_compatible(int a, int b)
{
    const struct fy_proto_ops *p = fy_proto_find(a), *q = fy_proto_find(b);
    if (p == NULL || q == NULL)
        return 0;
    for (size_t i = 0; i < FY_ARRAY_LEN(p->wire->peers) && p->wire->peers[i]; i++)
        if (strcmp(p->wire->peers[i], q->wire->name) == 0)
            return 1;
    return 0;
}

struct fy_pipe *fy_proto_next_pipe(ferry_socket *s, size_t size);
struct fy_pipe *fy_proto_next_pipe(ferry_socket *s, size_t size)
{
    return s->proto->next_pipe ? s->proto->next_pipe(s, size) : NULL;
}

int fy_any_writable(ferry_socket *s)
{
    /* a pipe still in its handshake counts: what is sent waits in it */
    for (size_t i = 0; i < s->npipes; i++)
        if (!s->pipes[i]->dead && s->pipes[i]->ops->writable(s->pipes[i], 0))
            return 1;
    return 0;
}

int fy_send_never_waits(ferry_socket *s)
{
    FY_UNUSED(s);
    return 1;
}

int fy_pipe_live(ferry_socket *s, struct fy_pipe *p)
{
    for (size_t i = 0; i < s->npipes; i++)
        if (s->pipes[i] == p)
            return !p->dead;
    return 0;
}

int fy_rr_send(ferry_socket *s, const struct fy_txmsg *m, size_t *cursor, struct fy_pipe **out)
{
    /* A message already half-written into a pipe is finished there. */
    for (size_t i = 0; i < s->npipes; i++) {
        struct fy_pipe *p = s->pipes[i];
        if (!p->tx_partial)
            continue;
        int rc = fy_pipe_send(p, m);
        if (rc == 1) {
            *cursor = i + 1;
            if (out)
                *out = p;
        } else if (rc < 0) {
            fy_sock_pipe_failed(s, p, rc);
            return 0; /* start over on another pipe */
        }
        return rc;
    }
    int too_big = 0;
    size_t n = s->npipes;
    for (size_t k = 0; k < n && s->npipes > 0; k++) {
        size_t i = (*cursor + k) % s->npipes;
        struct fy_pipe *p = s->pipes[i];
        if (p->dead)
            continue;
        int rc = fy_pipe_send(p, m);
        if (rc == 1) {
            *cursor = i + 1;
            if (out)
                *out = p;
            return 1;
        }
        if (rc == 0 && p->tx_partial)
            return 0; /* started streaming into this one */
        if (rc == FERRY_EMSGSIZE) {
            too_big = 1;
        } else if (rc < 0) {
            fy_sock_pipe_failed(s, p, rc);
            k--; /* the array shifted */
            n--;
        }
    }
    return too_big ? fy_err(FERRY_EMSGSIZE, "send: message larger than the peer accepts") : 0;
}

struct fy_pipe *fy_rr_peek(ferry_socket *s, size_t cursor, size_t size)
{
    for (size_t k = 0; k < s->npipes; k++) {
        struct fy_pipe *p = s->pipes[(cursor + k) % s->npipes];
        if (!p->dead && p->ops->writable(p, size))
            return p;
    }
    return NULL;
}

int fy_fq_recv(ferry_socket *s, struct fy_rxmsg *m, size_t *cursor, int check)
{
    size_t n = s->npipes;
    for (size_t k = 0; k < n && s->npipes > 0; k++) {
        size_t i = (*cursor + k) % s->npipes;
        struct fy_pipe *p = s->pipes[i];
        int rc = fy_pipe_recv(p, m, check || p->dead);
        if (rc == 1) {
            m->from = p;
            *cursor = i + 1;
            return 1;
        }
        if (rc < 0) {
            fy_sock_pipe_failed(s, p, rc);
            k--;
            n--;
        }
    }
    return 0;
}

int fy_send_claim(ferry_socket *s, const struct fy_txmsg *m)
{
    struct fy_pipe *p = m->claim->pipe;
    if (!fy_pipe_live(s, p))
        return FERRY_ECONNRESET;
    return fy_pipe_commit(p, m->claim->size);
}
