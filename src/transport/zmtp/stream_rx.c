/*
 * stream_rx.c - a connection's input: reading, ZMTP decoding (zmtp.h),
 * commands, assembling messages and queueing them for the socket, within
 * the budgets below (stream_int.h states them; docs/security.md lists
 * them).
 */
#include "stream_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

void st_rx_free(struct st_rx *r)
{
    if (r->parts == NULL)
        ferry_msg_free(r->one);
    for (size_t i = 0; r->parts && i < r->nparts; i++)
        ferry_msg_free(r->parts[i]);
    free(r->parts);
}

/* The next free slot of the input ring, or NULL (out of memory). */
static struct st_rx *rx_slot(struct st_pipe *p)
{
    if (p->rx_n == p->rx_cap) {
        size_t cap = p->rx_cap ? p->rx_cap * 2 : 16;
        struct st_rx *v = malloc(cap * sizeof *v);
        if (v == NULL)
            return NULL;
        for (size_t i = 0; i < p->rx_n; i++)
            v[i] = p->rxq[(p->rx_first + i) % p->rx_cap];
        free(p->rxq);
        p->rxq = v;
        p->rx_cap = cap;
        p->rx_first = 0;
    }
    struct st_rx *r = &p->rxq[(p->rx_first + p->rx_n) % p->rx_cap];
    memset(r, 0, sizeof *r);
    return r;
}

/* What the message being received holds now: its parts so far and the
 * buffer of the frame being read. */
static uint64_t partial_held(const struct st_pipe *p)
{
    return p->asm_total + (uint64_t)p->asm_n * ST_PART_COST + p->frame_cap;
}

/* Charges what p holds (queued and arriving, plus `extra` bytes its
 * partial message wants) beyond its allowance to the socket's pool. 0, or
 * -1 when the pool cannot take it: then nothing changes. Shrinking always
 * succeeds. */
int st_pool_charge(struct st_pipe *p, uint64_t extra)
{
    if (p->dying)
        return 0;
    struct st_tran *t = p->t;
    uint64_t held = partial_held(p) + extra + p->rx_bytes;
    uint64_t excess =
        held > ST_RX_BYTES + ST_PARTIAL_FLOOR ? held - ST_RX_BYTES - ST_PARTIAL_FLOOR : 0;
    uint64_t used = t->pool_used - p->pool_held + excess;
    if (excess > p->pool_held && used > t->s->opt.partial_max)
        return -1;
    t->pool_used = used;
    p->pool_held = excess;
    return 0;
}

void st_asm_clear(struct st_pipe *p)
{
    for (size_t i = 0; i < p->asm_n; i++)
        ferry_msg_free(p->asm_parts[i]);
    p->asm_n = 0;
    p->asm_total = 0;
    st_pool_charge(p, 0);
}

/* Frame buffers: a heap message whose data follows the struct, sized to
 * what has arrived (zmtp.h), charged to the budgets before it is taken. */
/* The pool cannot hold what p wants: p goes (inside the decoder: it stops
 * at once, and st_conn_read sees the closed fd). */
static void *over_budget(struct st_pipe *p)
{
    st_conn_broken(p, 1, FERRY_ENOMEM,
                   "partial messages past the socket's budget (%llu bytes, FERRY_OPT_PARTIAL_MAX)",
                   (unsigned long long)p->t->s->opt.partial_max);
    return NULL;
}

static void *dec_alloc(void *ctx, uint64_t cap, unsigned char **body)
{
    struct st_pipe *p = ctx;
    if (cap > SIZE_MAX - 256)
        return NULL;
    if (st_pool_charge(p, cap) < 0)
        return over_budget(p);
    ferry_msg *m = fy_msg_heap_in(p->t->s, (size_t)cap);
    if (m == NULL) {
        st_pool_charge(p, 0);
        return NULL;
    }
    p->frame_cap = cap;
    if (m->cap == 0)
        m->cap = (size_t)cap; /* the block's size, after a CURVE box moves data and size */
    *body = m->data;
    return m;
}

static void *dec_grow(void *ctx, void *handle, uint64_t cap, unsigned char **body)
{
    struct st_pipe *p = ctx;
    if (cap > SIZE_MAX - 256)
        return NULL;
    if (st_pool_charge(p, cap - p->frame_cap) < 0)
        return over_budget(p);
    ferry_msg *m = realloc(handle, sizeof *m + (size_t)cap);
    if (m == NULL) {
        st_pool_charge(p, 0);
        return NULL;
    }
    m->data = m + 1;
    m->size = (size_t)cap;
    m->cap = (size_t)cap; /* allocated exactly now */
    p->frame_cap = cap;
    *body = m->data;
    return m;
}

static void dec_free(void *ctx, void *handle)
{
    struct st_pipe *p = ctx;
    ferry_msg_free(handle);
    p->frame_cap = 0;
    st_pool_charge(p, 0);
}

/* The peer's greeting is in: now our READY (or CURVE's HELLO). Sending it
 * only now (not with the greeting) gives the peer's READY a head start:
 * libzmq checks our READY as soon as it arrives and, on a type mismatch,
 * closes before its own READY is written, and then we could not tell why
 * we were dropped. */
static int dec_greeting(void *ctx, int minor)
{
    struct st_pipe *p = ctx;
    p->peer_minor = minor;
    return st_mech_peer_greeting(p);
}

/* A SUBSCRIBE or CANCEL, in either ZMTP form, for the pattern (when it takes subscriptions: it has
 * a cmd). */
static void sub_command_in(struct st_pipe *p, int sub, const unsigned char *data, size_t len)
{
    ferry_socket *s = p->t->s;
    if (s->proto->cmd == NULL)
        return;
    s->proto->cmd(s, &p->base, sub, data, len);
    fy_sock_wake(s); /* ferry_wait_peers counts a PUB's peer once it subscribed */
}

int st_rx_full(const struct st_pipe *p)
{
    const ferry_socket *s = p->t->s;
    return (s->opt.rcvhwm > 0 && p->rx_n >= (size_t)s->opt.rcvhwm) || p->rx_bytes >= ST_RX_QUEUE;
}

int st_rx_low(const struct st_pipe *p)
{
    const ferry_socket *s = p->t->s;
    return (s->opt.rcvhwm == 0 || p->rx_n <= (size_t)s->opt.rcvhwm / 2) &&
           p->rx_bytes <= ST_RX_QUEUE / 2;
}

uint64_t st_frame_max(const struct st_pipe *p, uint64_t body)
{
    return p->zc != NULL ? body + ZC_MESSAGE_OVERHEAD : body;
}

/* The most a message from this peer may carry: MAXMSGSIZE, or for a
 * pattern that takes only subscriptions as data (a PUB), what the longest
 * subscription may be. */
uint64_t st_msg_max(const struct st_pipe *p)
{
    const ferry_socket *s = p->t->s;
    uint64_t sub = s->opt.sub_max_bytes + 1; /* the 0x01/0x00, then the prefix */
    if (s->proto->wire->in == FY_IN_SUBSCRIPTIONS && sub < s->opt.maxmsgsize)
        return sub;
    return s->opt.maxmsgsize;
}

/* A whole message arrived: queue it, every frame as it came (a pattern's
 * envelope is the protocol's business). */
static int deliver(struct st_pipe *p)
{
    ferry_socket *s = p->t->s;
    const struct fy_wire *w = s->proto->wire;
    p->dec.max_frame = st_frame_max(p, st_msg_max(p)); /* the next frame starts a message */
    ferry_msg **parts = p->asm_parts;
    size_t n = p->asm_n;
    if (w->in == FY_IN_SUBSCRIPTIONS) {
        /* ZMTP 3.0 subscriptions: 1 or 0, then the prefix. Other data is
         * not for a publisher and is dropped, as libzmq's PUB does. */
        ferry_msg *f = parts[0];
        const unsigned char *b = f->data;
        if (f->size >= 1 && (b[0] == 1 || b[0] == 0))
            sub_command_in(p, b[0], b + 1, f->size - 1);
        st_asm_clear(p);
        return 0;
    }
    if (w->in == FY_IN_NONE) {
        st_asm_clear(p);
        return 0;
    }
    struct st_rx *r = rx_slot(p);
    if (r == NULL)
        return FERRY_ENOMEM;
    r->nparts = n;
    if (n == 1) {
        r->one = parts[0];
    } else {
        r->parts = malloc(n * sizeof *r->parts);
        if (r->parts == NULL)
            return FERRY_ENOMEM;
        memcpy(r->parts, parts, n * sizeof *parts);
    }
    r->charge = p->asm_total + (uint64_t)n * ST_PART_COST; /* every frame */
    p->rx_bytes += r->charge;
    p->asm_n = 0;
    p->asm_total = 0;
    st_pool_charge(p, 0); /* from arriving to queued: the same bytes, the same charge */
    p->rx_n++;
    if (st_rx_full(p))
        p->rx_paused = 1;
    return 1;
}

static int on_command(struct st_pipe *p, unsigned char *body, size_t len)
{
    const unsigned char *name, *data;
    size_t nlen, dlen;
    if (p->state == C_HANDSHAKE && p->zc != NULL)
        return st_curve_handshake(p, body, len);
    if (zmtp_cmd_split(body, len, &name, &nlen, &data, &dlen) != 0) {
        st_conn_broken(p, 1, FERRY_EPROTO, "malformed command frame");
        return FERRY_EPROTO;
    }
    if (p->state == C_HANDSHAKE) {
        if (zmtp_cmd_is(name, nlen, "READY"))
            return st_conn_ready(p, data, dlen);
        if (zmtp_cmd_is(name, nlen, "ERROR")) {
            int rl = dlen >= 1 && data[0] <= dlen - 1 ? data[0] : 0;
            st_conn_broken(p, 1, FERRY_ECONNREFUSED, "peer sent ERROR '%.*s'", rl,
                           (const char *)data + 1);
        } else {
            st_conn_broken(p, 1, FERRY_EPROTO, "unexpected command '%.*s' during the handshake",
                           (int)(nlen < 20 ? nlen : 20), (const char *)name);
        }
        return FERRY_EPROTO;
    }
    if (zmtp_cmd_is(name, nlen, "PING")) {
        if (dlen < 2)
            return 0; /* no TTL: malformed, ignored (a PONG would echo junk) */
        unsigned ttl = (unsigned)data[0] << 8 | data[1];
        p->ttl_ns = (uint64_t)ttl * 100000000u;
        if (p->ttl_ns)
            st_timer_at(p->t, p->last_rx + p->ttl_ns);
        size_t ctx = dlen - 2 > 16 ? 16 : dlen - 2;
        /* a peer that PINGs and never reads gets no more PONGs once our
         * output backs up: any of our traffic proves life anyway */
        if (p->tx_len - p->tx_off < ST_TX_BACKLOG && st_tx_command(p, "PONG", data + 2, ctx) == 0)
            st_conn_flush(p);
        return 0;
    }
    if (zmtp_cmd_is(name, nlen, "SUBSCRIBE") || zmtp_cmd_is(name, nlen, "CANCEL")) {
        sub_command_in(p, name[0] == 'S', data, dlen); /* to the pattern, if it takes them */
        return 0;
    }
    if (zmtp_cmd_is(name, nlen, "ERROR")) {
        int rl = dlen >= 1 && data[0] <= dlen - 1 ? data[0] : 0;
        st_conn_broken(p, 0, FERRY_ECONNRESET, "peer sent ERROR '%.*s'", rl,
                       (const char *)data + 1);
        return FERRY_ECONNRESET;
    }
    return 0; /* PONG and unknown commands: ignored, as RFC 37 asks */
}

static int dec_frame(void *ctx, int flags, void *handle, unsigned char *body, uint64_t size)
{
    struct st_pipe *p = ctx;
    ferry_msg *m = handle;
    m->size = (size_t)size;
    p->frames_in++;   /* a turn's measure (st_conn_read) */
    p->frame_cap = 0; /* charged again below, as a part, if it is kept */
    st_pool_charge(p, 0);
    if (p->zc != NULL && p->state == C_ACTIVE) { /* the frame is inside a MESSAGE */
        if (st_curve_open(p, &flags, &body, &size) != 0) {
            ferry_msg_free(m);
            return FERRY_EPROTO;
        }
        /* an empty part points at the flags octet: a byte it owns, for a
         * caller that writes a NUL after what it received */
        m->data = size ? body : body - 1;
        m->size = (size_t)size;
    }
    if (flags & ZMTP_COMMAND) {
        int rc = on_command(p, body, (size_t)size);
        ferry_msg_free(m);
        return rc < 0 ? rc : 0;
    }
    if (p->state == C_LINGER) { /* connected while closing: input is dropped */
        ferry_msg_free(m);
        return 0;
    }
    if (p->state != C_ACTIVE) {
        ferry_msg_free(m);
        st_conn_broken(p, 1, FERRY_EPROTO, "message before the handshake finished");
        return FERRY_EPROTO;
    }
    ferry_socket *s = p->t->s;
    if (p->asm_n == ST_MAX_PARTS || size > st_msg_max(p) - p->asm_total) {
        ferry_msg_free(m);
        st_conn_broken(p, 1, FERRY_EMSGSIZE,
                       "message larger than the maximum size (%llu bytes) or %d parts",
                       (unsigned long long)s->opt.maxmsgsize, ST_MAX_PARTS);
        return FERRY_EMSGSIZE;
    }
    if (p->asm_n == p->asm_cap) {
        size_t cap = p->asm_cap ? p->asm_cap * 2 : 4;
        ferry_msg **v = realloc(p->asm_parts, cap * sizeof *v);
        if (v == NULL) {
            ferry_msg_free(m);
            return FERRY_ENOMEM;
        }
        p->asm_parts = v;
        p->asm_cap = cap;
    }
    if (st_pool_charge(p, size + ST_PART_COST) < 0) {
        ferry_msg_free(m);
        over_budget(p);
        return FERRY_EMSGSIZE;
    }
    p->asm_parts[p->asm_n++] = m;
    p->asm_total += size;
    if (flags & ZMTP_MORE) {
        /* the next frame may bring only what the message has left */
        p->dec.max_frame = st_frame_max(p, st_msg_max(p) - p->asm_total);
        return 0;
    }
    int rc = deliver(p);
    return rc < 0 ? rc : 0;
}

const struct zmtp_dec_ops st_dec_ops = {
    .alloc = dec_alloc,
    .grow = dec_grow,
    .free = dec_free,
    .greeting = dec_greeting,
    .frame = dec_frame,
};

/* What one call of st_conn_read may take in before it gives the loop (and
 * the socket's lock) to the others, in bytes read plus ST_PART_COST for
 * each frame decoded, data or command: a frame costs us that however short
 * it is, so a peer sending one-byte frames or PINGs is held to ~8,000 of
 * them a turn rather than a megabyte's worth (350,000), and other
 * connections' handshakes and the user's receives are not kept waiting
 * behind it. */
#define ST_READ_TURN (1u << 20)

/* Reads and decodes what the kernel has, up to a turn's worth (fairness
 * between connections: level-triggered readiness brings us back for the
 * rest). */
void st_conn_read(struct st_pipe *p, uint32_t events)
{
    struct st_tran *t = p->t;
    ferry_socket *s = t->s;
    size_t budget = ST_READ_TURN;
    size_t before = p->rx_n;
    unsigned char *scratch = fy_loop_scratch();
    if (!fy_loop_on_thread(t->loop))
        scratch = t->scratch; /* a parked receiver's thread (st_park made it) */
    else if (p->rx_fail)      /* a parked receiver found it broken: over now */
        st_conn_broken(p, p->rx_fail_bad, p->rx_fail, "%s", p->rx_fail_why);
    /* A hang-up or error is reported even while reading is paused: then
     * read on regardless (the kernel holds a bounded amount) to reach the
     * end, or the loop would report it again and again. */
    int hup = (events & (FY_IO_HUP | FY_IO_ERR)) != 0;
    while (p->fd >= 0 && !p->rx_fail && (!p->rx_paused || hup || p->state == C_LINGER) &&
           budget > 0) {
        size_t room;
        unsigned char *dst = zmtp_dec_room(&p->dec, &room);
        if (p->fd < 0 || p->rx_fail)
            break; /* growing the frame's buffer went past the budget */
        int direct = dst != NULL && room >= FY_LOOP_SCRATCH / 2;
        if (!direct) {
            dst = scratch;
            room = FY_LOOP_SCRATCH;
        }
        ssize_t n = recv(p->fd, dst, room, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            if (errno != EAGAIN)
                st_conn_broken(p, 0, -(p->werr ? p->werr : errno), "read: %s",
                               strerror(p->werr ? p->werr : errno));
            else if (p->werr) /* what the gone peer sent is read: over */
                st_conn_broken(p, 0, -p->werr, "write: %s", strerror(p->werr));
            break;
        }
        if (n == 0) {
            if (p->werr) {
                st_conn_broken(p, 0, -p->werr, "write: %s", strerror(p->werr));
            } else if (p->state == C_LINGER) { /* the peer's FIN: a clean four-way close */
                st_conn_broken(p, 0, FERRY_ECLOSED, "closed by this socket");
            } else {
                st_conn_broken(p, 0, FERRY_ECONNRESET, "the peer closed the connection");
            }
            break;
        }
        p->last_rx = fy_now_mono_ns();
        if (p->state == C_LINGER) {
            budget -= (size_t)n < budget ? (size_t)n : budget;
            continue; /* closing: the peer's data is read only to reach its FIN */
        }
        uint64_t frames = p->frames_in;
        int rc =
            direct ? zmtp_dec_filled(&p->dec, (size_t)n) : zmtp_dec_feed(&p->dec, dst, (size_t)n);
        uint64_t cost = (uint64_t)n + (p->frames_in - frames) * ST_PART_COST;
        budget -= cost < budget ? (size_t)cost : budget;
        if (rc < 0) {
            if (p->state != C_CLOSED && p->state != C_IDLE)
                st_conn_broken(p, rc != FERRY_ENOMEM, rc, "%s",
                               p->dec.why ? p->dec.why : ferry_strerror(rc));
            break;
        }
        if ((size_t)n < room)
            break; /* the kernel had no more: a read for EAGAIN would be one more system call
                      (level-triggered, the loop comes back if more has come meanwhile) */
    }
    st_conn_interest(p);
    if (p->rx_n != before)
        fy_sock_signal(s);
}
