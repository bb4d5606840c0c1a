/*
 * pubsub_int.h - what PUB/SUB (pubsub.c) shares with XPUB/XSUB
 * (xpubsub.c): a publisher's view of a subscriber, its filtered send, and
 * a subscriber's own prefixes with the queue of subscriptions that wait
 * for room on a pipe. All with the socket's mtx held.
 */
#ifndef FY_PUBSUB_INT_H
#define FY_PUBSUB_INT_H

#include "../core/prefix.h"
#include "protocols.h"

/* A subscriber, as its publisher sees it (the pipe's proto_data). */
struct fy_ps_pipe {
    struct fy_prefixes *subs; /* a set: one cancel ends a prefix */
    uint64_t dropped;         /* messages it missed at its HWM */
};

/* A subscription command that did not fit its pipe's ring yet. */
struct fy_ps_pending {
    struct fy_pipe *p; /* holds a reference */
    int cmd;
    size_t len;
    unsigned char *data;
};

/* A subscriber's state (SUB, and the first member of XSUB's). */
struct fy_ps_sub {
    size_t cursor;
    struct fy_prefixes *subs;   /* counted */
    struct fy_ps_pending *pend; /* in order; retried before each receive */
    size_t npend;
};

/* Publisher side. A subscription (cmd 1) or cancel (0) from pipe p, held
 * to the caps (FERRY_OPT_SUB_MAX, _SUB_MAX_BYTES; a refusal is noted and
 * counted): 1 when p's set changed, 0 when not, < 0 refused. */
int fy_ps_pipe_sub(ferry_socket *s, struct fy_pipe *p, int cmd, const void *data, size_t len);

/* Sends m whole to every subscriber whose prefixes match its first part;
 * a full one misses it (counted in FERRY_OPT_DROPPED). Never blocks. */
void fy_ps_publish(ferry_socket *s, const struct fy_txmsg *m);

/* Frees p's prefixes (the protocol's pipe_rm). */
void fy_ps_pipe_rm(ferry_socket *s, struct fy_pipe *p);

/* Subscriber side (proto_state is, or begins with, struct fy_ps_sub).
 *  sub_update  adds (subscribe 1) or removes one of our prefixes, and
 *              tells every publisher when the set changed: 1 changed,
 *              0 not, < 0 error.
 *  sub_add     a new publisher learns every prefix (pipe_add).
 *  sub_flush   sends what waits for room.
 *  sub_fini    frees it all (fini). */
int fy_ps_sub_update(ferry_socket *s, int subscribe, const void *data, size_t len);
int fy_ps_sub_add(ferry_socket *s, struct fy_pipe *p);
void fy_ps_sub_flush(ferry_socket *s, struct fy_ps_sub *st);
void fy_ps_sub_fini(ferry_socket *s);

#endif /* FY_PUBSUB_INT_H */
