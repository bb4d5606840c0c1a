/*
 * stream.c - the tcp:// and ipc:// transports: ZMTP 3.1 connections over
 * TCP and Unix stream sockets, driven by one epoll I/O thread per socket.
 *
 * One lock. Everything here (listeners, dialers, connections, their
 * buffers) is guarded by the socket's mtx, like the pipes themselves: the
 * I/O thread takes it around each event; user threads hold it in the pipe
 * ops. No system call made under it can block: every fd is non-blocking.
 *
 * Who does the I/O. Sending: the user's thread encodes a message into the
 * connection's output buffer and, when that buffer was empty, writes it at
 * once (no hand-off, so a request leaves with no thread switch); whatever
 * the kernel does not take is written by the I/O thread on EPOLLOUT, many
 * messages per write. Receiving: the I/O thread reads, decodes and queues
 * whole messages (up to RCVHWM, then it stops reading and TCP's flow
 * control pushes back on the peer), and wakes the socket's waiters.
 *
 * A connection is a pipe (struct st_pipe). An accepted connection joins the
 * socket only once the handshake is done and the peer's socket type fits.
 * A dialer's pipe joins at once, as in ZeroMQ: messages sent before the
 * connection exists wait in it (up to SNDHWM) and leave after the
 * handshake. When a live connection breaks, its pipe dies (REQ learns it:
 * FERRY_ECONNRESET or resend) and the dialer makes a new one and redials
 * with exponential backoff.
 *
 * Lifetime. The transport holds one reference on each pipe it knows; a
 * closed connection's reference is dropped by the I/O thread after the
 * batch of events it was closed in, so an event still in that batch never
 * points at freed memory.
 */
#include "stream_int.h"
#include "zmtp.h"

#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

enum { EV_CMD, EV_LISTENER, EV_CONN };
struct st_ev {
    int kind;
};

struct st_listener {
    struct st_ev ev;
    int fd;
    int unlink_path; /* ipc: remove the file at close if it is still ours */
    dev_t dev;
    ino_t ino;
    char path[108];
    struct st_listener *next;
};

struct st_pipe;

struct st_dialer {
    struct st_addr addr; /* tcp: re-resolved before each attempt */
    char rest[256];      /* the URL after the scheme */
    int ipc;
    int numeric;          /* the host is an address: never resolved again */
    struct st_pipe *pipe; /* current pipe: pending or connected (a reference) */
    int backoff_ms;
    uint64_t retry_at; /* monotonic ns; 0: not waiting */
    struct st_dialer *next;
};

/* Connection states. */
enum {
    C_IDLE,       /* a dialer's pipe without a connection */
    C_CONNECTING, /* non-blocking connect() in progress */
    C_HANDSHAKE,  /* greeting and READY sent, the peer's awaited */
    C_ACTIVE,     /* messages flow */
    C_LINGER,     /* closing: flushing, then FIN, then awaiting the peer's FIN */
    C_CLOSED
};

/* A received message waiting for the user, in a ring of them per pipe (no
 * allocation per message beyond the message itself). */
struct st_rx {
    ferry_msg *one;    /* a single part (parts == NULL) */
    ferry_msg **parts; /* several parts */
    size_t nparts;
    uint64_t charge; /* what it counts in rx_bytes */
};

/* A subscription to send once the peer's version is known. */
struct st_subq {
    struct st_subq *next;
    int cmd;
    size_t len;
    unsigned char data[];
};

struct st_pipe {
    struct fy_pipe base; /* first */
    struct st_ev ev;
    struct st_tran *t;
    struct st_pipe *next; /* in t->conns */
    int fd;
    int state;
    int in_sock; /* added to the socket's pipes */
    struct st_dialer *d;
    uint32_t events; /* epoll interest now */
    int peer_minor;
    /* handshake output, written before anything else */
    unsigned char hs[512]; /* greeting, READY with a 255-byte Identity, ERROR */
    size_t hs_len, hs_off;
    uint64_t hs_deadline;
    /* input */
    struct zmtp_dec dec;
    ferry_msg **asm_parts; /* the message being assembled */
    size_t asm_n, asm_cap;
    uint64_t asm_total;
    struct st_rx *rxq; /* ring: rx_n entries from rx_first */
    size_t rx_first, rx_cap;
    size_t rx_n;
    int rx_paused;
    /* output: bytes [tx_off, tx_len) of tx are still to write; marks
     * holds the stream offsets where queued messages end */
    unsigned char *tx;
    size_t tx_off, tx_len, tx_cap;
    uint64_t tx_base; /* stream offset of tx[0] */
    uint64_t *marks;
    size_t mk_head, mk_n, mk_cap;
    struct st_subq *subq, **subq_tail;
    /* heartbeats */
    uint64_t last_rx, next_ping, ping_sent, ttl_ns;
    uint64_t linger_deadline;
    int shut_wr;
    int werr;            /* a write failed with this errno; the I/O thread tears down */
    int lingering;       /* the socket closes: deliver what is queued, then FIN */
    int removed;         /* the protocol let the pipe go: the I/O thread closes it */
    size_t rx_bytes;     /* queued input, part overhead included */
    uint64_t frame_cap;  /* bytes of the frame being received, allocated so far */
    uint64_t pool_held;  /* what the partial message draws from the socket's pool */
    int dying;           /* st_destroy: the transport may be gone */
    uint64_t last_write; /* when a send last wrote (or queued) */
};

struct st_tran {
    ferry_socket *s;
    int epfd;
    struct st_ev cmd;
    int cmd_fd;
    pthread_t thr;
    int started;
    int stop;
    int closing;
    struct st_listener *listeners;
    struct st_listener *dead_listeners; /* closed; freed after the thread ends */
    struct st_dialer *dialers;
    struct st_pipe *conns;  /* every pipe with (or waiting for) a connection */
    struct st_pipe **grave; /* closed: references dropped after the batch */
    size_t ngrave, cap_grave;
    int nlinger;
    int any_removed;     /* some pipe has `removed` set */
    uint64_t pool_used;  /* partial input past the connections' floors */
    uint64_t next_timer; /* run the timers no later than this */
    unsigned char scratch[64 * 1024];
};

/* Limits on what one peer can make us hold (docs/security.md lists them).
 * Every part, a pattern's envelope frames included, is charged its bytes plus
 * ST_PART_COST (the message struct, the allocator's header and the
 * pointers that track it), so a flood of empty frames costs what it costs
 * us.
 *  - Whole messages waiting for the user: at most RCVHWM of them, and
 *    reading stops once they hold ST_RX_BYTES (checked after each message,
 *    so one message larger than that still passes when the queue is
 *    empty); TCP's flow control then holds the peer back.
 *  - A message still arriving: its parts so far and the buffer of the
 *    frame being read. A frame's buffer grows with the bytes that arrive
 *    (zmtp.h), never on the header's word.
 *  - Each connection has an allowance of its own, ST_RX_BYTES +
 *    ST_PARTIAL_FLOOR, for what it holds queued and arriving together;
 *    beyond it, it draws on one pool per socket (FERRY_OPT_PARTIAL_MAX),
 *    and a connection the pool cannot serve is dropped. What a message
 *    draws stays drawn until the user has read it (completing a message
 *    gives nothing back). So a socket holds at most n x (ST_RX_BYTES +
 *    ST_PARTIAL_FLOOR) + the pool over its n connections, and hostile
 *    peers that take the whole pool cannot stop messages that fit in
 *    another connection's own allowance. */
#define ST_MAX_PARTS FY_MAX_PARTS
#define ST_PART_COST 128u
#define ST_RX_BYTES (64u << 20)
#define ST_PARTIAL_FLOOR (256u << 10)
#define ST_CMD_MAX (64u << 10)   /* a command (READY...) before the handshake ends */
#define ST_TX_BACKLOG (1u << 20) /* no PONG while this much output waits */
#define ST_BURST_NS 10000u       /* sends closer than this are batched */
#define ST_DIRECT_MIN 8192u      /* messages this large skip our output buffer when they can */

static const struct fy_pipe_ops st_pipe_ops;
static void *st_thread(void *arg);
static void conn_flush(struct st_pipe *p);
static void conn_fail_later(struct st_pipe *p, int err);
static void conn_broken(struct st_pipe *p, int bad, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* --- small helpers ------------------------------------------------------------ */

static struct st_pipe *pipe_of(struct st_ev *ev)
{
    return (struct st_pipe *)((char *)ev - offsetof(struct st_pipe, ev));
}

static void tran_poke(struct st_tran *t)
{
    uint64_t one = 1;
    ssize_t n = write(t->cmd_fd, &one, sizeof one);
    FY_UNUSED(n);
}

static void timer_at(struct st_tran *t, uint64_t when)
{
    if (when != 0 && when < t->next_timer) {
        t->next_timer = when;
        tran_poke(t); /* the thread may be asleep with a later timeout */
    }
}

/* 1 if the peer's Socket-Type is one the pattern talks to (its wire
 * table: RFC 37's compatibility, as libzmq checks it). */
static int peer_ok(const struct fy_wire *w, const unsigned char *v, size_t n)
{
    for (size_t j = 0; j < FY_ARRAY_LEN(w->peers) && w->peers[j]; j++)
        if (strlen(w->peers[j]) == n && memcmp(w->peers[j], v, n) == 0)
            return 1;
    return 0;
}

/* Sets the epoll interest: input unless paused or connecting, output while
 * there is something to write (or a connect to complete). */
static void conn_interest(struct st_pipe *p)
{
    if (p->fd < 0)
        return;
    uint32_t want = 0;
    if (p->state == C_CONNECTING)
        want = EPOLLOUT;
    else if (p->state != C_CLOSED) {
        if (!p->rx_paused || p->state == C_LINGER)
            want |= EPOLLIN;
        if (p->hs_off < p->hs_len || (p->state >= C_ACTIVE && p->tx_off < p->tx_len))
            want |= EPOLLOUT;
    }
    if (want == p->events)
        return;
    struct epoll_event ev = {.events = want, .data.ptr = &p->ev};
    epoll_ctl(p->t->epfd, EPOLL_CTL_MOD, p->fd, &ev);
    p->events = want;
}

static void rx_free(struct st_rx *r)
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
static int pool_charge(struct st_pipe *p, uint64_t extra)
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

static void asm_clear(struct st_pipe *p)
{
    for (size_t i = 0; i < p->asm_n; i++)
        ferry_msg_free(p->asm_parts[i]);
    p->asm_n = 0;
    p->asm_total = 0;
    pool_charge(p, 0);
}

/* --- output ----------------------------------------------------------------- */

static int tx_reserve(struct st_pipe *p, size_t more)
{
    if (p->tx_off == p->tx_len) { /* all written: start over at the front */
        p->tx_base += p->tx_len;
        p->tx_off = p->tx_len = 0;
    }
    if (p->tx_cap - p->tx_len >= more)
        return 0;
    if (p->tx_off > 0) { /* slide the unwritten bytes down */
        memmove(p->tx, p->tx + p->tx_off, p->tx_len - p->tx_off);
        p->tx_base += p->tx_off;
        p->tx_len -= p->tx_off;
        p->tx_off = 0;
        if (p->tx_cap - p->tx_len >= more)
            return 0;
    }
    size_t cap = p->tx_cap ? p->tx_cap : 4096;
    while (cap - p->tx_len < more) {
        if (cap > SIZE_MAX / 2)
            return FERRY_ENOMEM;
        cap *= 2;
    }
    unsigned char *v = realloc(p->tx, cap);
    if (v == NULL)
        return FERRY_ENOMEM;
    p->tx = v;
    p->tx_cap = cap;
    return 0;
}

static void tx_put(struct st_pipe *p, const void *data, size_t len)
{
    if (len)
        memcpy(p->tx + p->tx_len, data, len);
    p->tx_len += len;
}

static int mark_reserve(struct st_pipe *p)
{
    if (p->mk_n == p->mk_cap) {
        size_t cap = p->mk_cap ? p->mk_cap * 2 : 16;
        uint64_t *v = malloc(cap * sizeof *v);
        if (v == NULL)
            return FERRY_ENOMEM;
        for (size_t i = 0; i < p->mk_n; i++)
            v[i] = p->marks[(p->mk_head + i) % p->mk_cap];
        free(p->marks);
        p->marks = v;
        p->mk_cap = cap;
        p->mk_head = 0;
    }
    return 0;
}

static void mark_push(struct st_pipe *p, uint64_t end)
{
    p->marks[(p->mk_head + p->mk_n++) % p->mk_cap] = end;
}

/* Forgets the marks of messages written out; 1 if any went. */
static int marks_written(struct st_pipe *p)
{
    uint64_t done = p->tx_base + p->tx_off;
    int any = 0;
    while (p->mk_n > 0 && p->marks[p->mk_head] <= done) {
        p->mk_head = (p->mk_head + 1) % p->mk_cap;
        p->mk_n--;
        any = 1;
    }
    return any;
}

/* Appends a command frame (commands are never counted against SNDHWM). */
static int tx_command(struct st_pipe *p, const char *name, const void *data, size_t len)
{
    size_t need = ZMTP_HDR_MAX + 1 + strlen(name) + len;
    if (tx_reserve(p, need) != 0)
        return FERRY_ENOMEM;
    size_t n = zmtp_command(p->tx + p->tx_len, p->tx_cap - p->tx_len, name, data, len);
    p->tx_len += n;
    return n ? 0 : FERRY_EINVAL;
}

static int tx_subscription(struct st_pipe *p, int cmd, const void *data, size_t len)
{
    if (p->peer_minor >= 1)
        return tx_command(p, cmd ? "SUBSCRIBE" : "CANCEL", data, len);
    /* ZMTP 3.0: a message whose first byte is 1 (subscribe) or 0 */
    if (tx_reserve(p, ZMTP_HDR_MAX + 1 + len) != 0)
        return FERRY_ENOMEM;
    unsigned char h[ZMTP_HDR_MAX];
    unsigned char c = cmd ? 1 : 0;
    tx_put(p, h, zmtp_frame_hdr(h, 0, 1 + len));
    tx_put(p, &c, 1);
    tx_put(p, data, len);
    return 0;
}

/* Writes what can be written now, without blocking. */
static void conn_flush(struct st_pipe *p)
{
    if (p->fd < 0 || p->state == C_CONNECTING || p->state == C_CLOSED)
        return;
    while (p->hs_off < p->hs_len) {
        ssize_t n = send(p->fd, p->hs + p->hs_off, p->hs_len - p->hs_off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            if (errno != EAGAIN)
                conn_fail_later(p, errno);
            else
                conn_interest(p);
            return;
        }
        p->hs_off += (size_t)n;
    }
    if (p->state < C_ACTIVE)
        return conn_interest(p);
    int freed = 0;
    while (p->tx_off < p->tx_len) {
        ssize_t n = send(p->fd, p->tx + p->tx_off, p->tx_len - p->tx_off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            if (errno != EAGAIN) {
                conn_fail_later(p, errno);
                return;
            }
            break;
        }
        p->tx_off += (size_t)n;
        freed |= marks_written(p);
    }
    if (p->tx_off == p->tx_len && p->state == C_LINGER && !p->shut_wr) {
        shutdown(p->fd, SHUT_WR); /* our FIN: the peer reads to the end, then closes */
        p->shut_wr = 1;
    }
    conn_interest(p);
    if (freed)
        fy_sock_wake(p->t->s);
}

/* --- connection set-up and teardown ------------------------------------------- */

/* A write failed. Writes happen inside pipe ops, while a protocol walks the
 * socket's pipes, so the pipe must not leave the socket here: shut the
 * socket down instead, and the I/O thread, which then reads EOF or the
 * error, tears the connection down. */
static void conn_fail_later(struct st_pipe *p, int err)
{
    if (p->werr == 0)
        p->werr = err;
    if (p->fd >= 0)
        shutdown(p->fd, SHUT_RDWR);
    tran_poke(p->t);
}

static void grave_add(struct st_tran *t, struct st_pipe *p)
{
    if (t->ngrave == t->cap_grave) {
        size_t cap = t->cap_grave ? t->cap_grave * 2 : 16;
        struct st_pipe **v = realloc(t->grave, cap * sizeof *v);
        if (v == NULL)
            return; /* leak one pipe rather than free it under a pending event */
        t->grave = v;
        t->cap_grave = cap;
    }
    t->grave[t->ngrave++] = p;
}

static void conns_unlink(struct st_tran *t, struct st_pipe *p)
{
    for (struct st_pipe **pp = &t->conns; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            p->next = NULL;
            return;
        }
}

static void conn_close_fd(struct st_pipe *p)
{
    if (p->fd >= 0) {
        epoll_ctl(p->t->epfd, EPOLL_CTL_DEL, p->fd, NULL);
        close(p->fd);
    }
    p->fd = -1;
    p->events = 0;
}

static void conn_reset_io(struct st_pipe *p)
{
    zmtp_dec_fini(&p->dec);
    asm_clear(p);
    p->hs_len = p->hs_off = 0;
    p->shut_wr = 0;
    p->werr = 0;
    p->ping_sent = 0;
    p->ttl_ns = 0;
}

static struct st_pipe *pipe_new(struct st_tran *t);
static void dialer_schedule(struct st_dialer *d, int first);

static void linger_done(struct st_pipe *p)
{
    p->lingering = 0;
    p->t->nlinger--;
    fy_sock_wake(p->t->s); /* ferry_close() waits for nlinger == 0 */
}

/* The connection is over (error, EOF, timeout, protocol violation). bad:
 * the peer broke the rules (counted in FERRY_OPT_ERRORS). */
static void conn_broken(struct st_pipe *p, int bad, const char *fmt, ...)
{
    struct st_tran *t = p->t;
    ferry_socket *s = t->s;
    if (p->state == C_CLOSED)
        return;
    char why[200], line[260];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    snprintf(line, sizeof line, "%s connection %d dropped: %s", p->d ? "dialed" : "accepted",
             p->base.id, why);
    int was_active = p->state >= C_ACTIVE;
    struct st_dialer *d = p->d;
    int retry = d != NULL && !was_active && !p->removed && (!t->closing || p->lingering);
    conn_close_fd(p);
    if (!t->closing)
        fy_sock_note(s, bad, line);
    if (p->lingering && !retry)
        linger_done(p);
    conn_reset_io(p);
    if (retry) {
        /* never connected: the pipe keeps what was queued and waits */
        p->state = C_IDLE;
        dialer_schedule(d, 0);
        return;
    }
    p->state = C_CLOSED;
    conns_unlink(t, p);
    if (p->in_sock)
        fy_sock_pipe_dead_locked(s, &p->base);
    if (d != NULL) {
        d->pipe = NULL;
        d->retry_at = 0;
        p->d = NULL;
        if (!t->closing) {
            struct st_pipe *np = pipe_new(t);
            if (np != NULL) {
                np->d = d;
                d->pipe = np;
                np->base.pending = 1;
                np->state = C_IDLE;
                if (fy_sock_add_pipe_locked(s, &np->base) == 0)
                    np->in_sock = 1;
                np->next = t->conns;
                t->conns = np;
            }
            d->backoff_ms = s->opt.reconnect_ms;
            dialer_schedule(d, 1);
        }
    }
    grave_add(t, p);
    tran_poke(t);
}

static void conn_start(struct st_pipe *p)
{
    ferry_socket *s = p->t->s;
    p->hs_len = zmtp_greeting(p->hs); /* READY follows once the peer's greeting is in */
    p->hs_off = 0;
    p->state = C_HANDSHAKE;
    p->hs_deadline = fy_now_mono_ns() + (uint64_t)s->opt.handshake_ms * 1000000u;
    timer_at(p->t, p->hs_deadline);
    conn_flush(p);
}

/* The most a message from this peer may carry: MAXMSGSIZE, or for a
 * pattern that takes only subscriptions as data (a PUB), what the longest
 * subscription may be. */
static uint64_t msg_max(const struct st_pipe *p)
{
    const ferry_socket *s = p->t->s;
    uint64_t sub = s->opt.sub_max_bytes + 1; /* the 0x01/0x00, then the prefix */
    if (s->proto->wire->in == FY_IN_SUBSCRIPTIONS && sub < s->opt.maxmsgsize)
        return sub;
    return s->opt.maxmsgsize;
}

/* The peer's READY arrived and its type fits: messages may flow. */
static int conn_ready(struct st_pipe *p, const unsigned char *meta, size_t mlen)
{
    struct st_tran *t = p->t;
    ferry_socket *s = t->s;
    const unsigned char *v = NULL;
    size_t vn = 0;
    int rc = zmtp_meta_find(meta, mlen, "Socket-Type", &v, &vn);
    if (rc < 0) {
        conn_broken(p, 1, "malformed READY metadata");
        return FERRY_EPROTO;
    }
    if (rc == 0 || !peer_ok(s->proto->wire, v, vn)) {
        char got[32];
        snprintf(got, sizeof got, "%.*s", rc == 0 ? 4 : (int)(vn < 16 ? vn : 16),
                 rc == 0 ? "none" : (const char *)v);
        static const char reason[] = "invalid socket type";
        unsigned char err[64];
        unsigned char body[1 + sizeof reason];
        body[0] = (unsigned char)(sizeof reason - 1);
        memcpy(body + 1, reason, sizeof reason - 1);
        size_t n = zmtp_command(err, sizeof err, "ERROR", body, sizeof reason);
        if (p->hs_off == p->hs_len) { /* never into the middle of our READY */
            ssize_t w = send(p->fd, err, n, MSG_NOSIGNAL | MSG_DONTWAIT);
            FY_UNUSED(w);
        }
        conn_broken(p, 1, "peer socket type %s cannot talk to %s", got, s->proto->wire->name);
        return FERRY_EPEERTYPE;
    }
    /* The routing id the peer announced, for a pattern that routes (a
     * ROUTER): at most 255 bytes (RFC 23), like every ZeroMQ peer sends. */
    rc = zmtp_meta_find(meta, mlen, "Identity", &v, &vn);
    if (rc > 0 && vn > FY_RID_MAX) {
        conn_broken(p, 1, "the peer announced a routing id (Identity) of %zu bytes, over %d", vn,
                    FY_RID_MAX);
        return FERRY_EPROTO;
    }
    p->base.peer_rid_len = rc > 0 ? vn : 0;
    if (rc > 0 && vn)
        memcpy(p->base.peer_rid, v, vn);
    if (!p->in_sock) {
        p->base.pending = 0;
        rc = fy_sock_add_pipe_locked(s, &p->base);
        if (rc != 0) {
            conn_broken(p, 0, "refused by the socket (%s): %s", ferry_strerror(rc),
                        ferry_errdetail());
            return rc;
        }
        p->in_sock = 1;
    } else if (p->base.pending && (rc = fy_sock_pipe_start_locked(s, &p->base)) != 0) {
        conn_broken(p, 0, "refused by the socket (%s): %s", ferry_strerror(rc), ferry_errdetail());
        return rc;
    }
    p->state = C_ACTIVE;
    /* the handshake is over: messages up to MAXMSGSIZE; commands up to
     * ST_CMD_MAX, or what a SUBSCRIBE may carry if more (a longer prefix
     * would be refused anyway: FERRY_OPT_SUB_MAX_BYTES) */
    p->dec.max_frame = msg_max(p);
    p->dec.max_cmd =
        s->opt.sub_max_bytes + 16 > ST_CMD_MAX ? s->opt.sub_max_bytes + 16 : ST_CMD_MAX;
    uint64_t now = fy_now_mono_ns();
    p->last_rx = now;
    if (s->opt.heartbeat_ivl > 0) {
        p->next_ping = now + (uint64_t)s->opt.heartbeat_ivl * 1000000u;
        timer_at(t, p->next_ping);
    }
    if (p->d)
        p->d->backoff_ms = s->opt.reconnect_ms;
    if (p->lingering)
        p->state = C_LINGER; /* connected while closing: deliver, then FIN */
    while (p->subq) {        /* subscriptions made before the peer was known */
        struct st_subq *q = p->subq;
        p->subq = q->next;
        tx_subscription(p, q->cmd, q->data, q->len);
        free(q);
    }
    p->subq_tail = &p->subq;
    conn_flush(p);
    fy_wake(s->wake, s->event_wfd);
    return 0;
}

/* --- input -------------------------------------------------------------------- */

/* Frame buffers: a heap message whose data follows the struct, sized to
 * what has arrived (zmtp.h), charged to the budgets before it is taken. */
/* The pool cannot hold what p wants: p goes (inside the decoder: it stops
 * at once, and conn_read sees the closed fd). */
static void *over_budget(struct st_pipe *p)
{
    conn_broken(p, 1,
                "partial messages past the socket's budget (%llu bytes, FERRY_OPT_PARTIAL_MAX)",
                (unsigned long long)p->t->s->opt.partial_max);
    return NULL;
}

static void *dec_alloc(void *ctx, uint64_t cap, unsigned char **body)
{
    struct st_pipe *p = ctx;
    if (cap > SIZE_MAX - 256)
        return NULL;
    if (pool_charge(p, cap) < 0)
        return over_budget(p);
    ferry_msg *m = fy_msg_heap((size_t)cap);
    if (m == NULL) {
        pool_charge(p, 0);
        return NULL;
    }
    p->frame_cap = cap;
    *body = m->data;
    return m;
}

static void *dec_grow(void *ctx, void *handle, uint64_t cap, unsigned char **body)
{
    struct st_pipe *p = ctx;
    if (cap > SIZE_MAX - 256)
        return NULL;
    if (pool_charge(p, cap - p->frame_cap) < 0)
        return over_budget(p);
    ferry_msg *m = realloc(handle, sizeof *m + (size_t)cap);
    if (m == NULL) {
        pool_charge(p, 0);
        return NULL;
    }
    m->data = m + 1;
    m->size = (size_t)cap;
    p->frame_cap = cap;
    *body = m->data;
    return m;
}

static void dec_free(void *ctx, void *handle)
{
    struct st_pipe *p = ctx;
    ferry_msg_free(handle);
    p->frame_cap = 0;
    pool_charge(p, 0);
}

/* The peer's greeting is in: now our READY. Sending it only now (not with
 * the greeting) gives the peer's READY a head start: libzmq checks our
 * READY as soon as it arrives and, on a type mismatch, closes before its
 * own READY is written, and then we could not tell why we were dropped. */
static int dec_greeting(void *ctx, int minor)
{
    struct st_pipe *p = ctx;
    ferry_socket *s = p->t->s;
    p->peer_minor = minor;
    const struct fy_wire *w = s->proto->wire;
    size_t n = zmtp_ready_id(p->hs + p->hs_len, sizeof p->hs - p->hs_len, w->name,
                             w->identity ? s->opt.routing_id : NULL,
                             w->identity ? s->opt.routing_id_len : 0);
    if (n == 0)
        return FERRY_EINVAL;
    p->hs_len += n;
    conn_flush(p);
    return 0;
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

static int rx_full(const struct st_pipe *p)
{
    const ferry_socket *s = p->t->s;
    return (s->opt.rcvhwm > 0 && p->rx_n >= (size_t)s->opt.rcvhwm) || p->rx_bytes >= ST_RX_BYTES;
}

/* A whole message arrived: queue it, every frame as it came (a pattern's
 * envelope is the protocol's business). */
static int deliver(struct st_pipe *p)
{
    ferry_socket *s = p->t->s;
    const struct fy_wire *w = s->proto->wire;
    p->dec.max_frame = msg_max(p); /* the next frame starts a message */
    ferry_msg **parts = p->asm_parts;
    size_t n = p->asm_n;
    if (w->in == FY_IN_SUBSCRIPTIONS) {
        /* ZMTP 3.0 subscriptions: 1 or 0, then the prefix. Other data is
         * not for a publisher and is dropped, as libzmq's PUB does. */
        ferry_msg *f = parts[0];
        const unsigned char *b = f->data;
        if (f->size >= 1 && (b[0] == 1 || b[0] == 0))
            sub_command_in(p, b[0], b + 1, f->size - 1);
        asm_clear(p);
        return 0;
    }
    if (w->in == FY_IN_NONE) {
        asm_clear(p);
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
    pool_charge(p, 0); /* from arriving to queued: the same bytes, the same charge */
    p->rx_n++;
    if (rx_full(p))
        p->rx_paused = 1;
    return 1;
}

static int on_command(struct st_pipe *p, const unsigned char *body, size_t len)
{
    const unsigned char *name, *data;
    size_t nlen, dlen;
    if (zmtp_cmd_split(body, len, &name, &nlen, &data, &dlen) != 0) {
        conn_broken(p, 1, "malformed command frame");
        return FERRY_EPROTO;
    }
    if (p->state == C_HANDSHAKE) {
        if (zmtp_cmd_is(name, nlen, "READY"))
            return conn_ready(p, data, dlen);
        if (zmtp_cmd_is(name, nlen, "ERROR")) {
            int rl = dlen >= 1 && data[0] <= dlen - 1 ? data[0] : 0;
            conn_broken(p, 1, "peer sent ERROR '%.*s'", rl, (const char *)data + 1);
        } else {
            conn_broken(p, 1, "unexpected command '%.*s' during the handshake",
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
            timer_at(p->t, p->last_rx + p->ttl_ns);
        size_t ctx = dlen - 2 > 16 ? 16 : dlen - 2;
        /* a peer that PINGs and never reads gets no more PONGs once our
         * output backs up: any of our traffic proves life anyway */
        if (p->tx_len - p->tx_off < ST_TX_BACKLOG && tx_command(p, "PONG", data + 2, ctx) == 0)
            conn_flush(p);
        return 0;
    }
    if (zmtp_cmd_is(name, nlen, "SUBSCRIBE") || zmtp_cmd_is(name, nlen, "CANCEL")) {
        sub_command_in(p, name[0] == 'S', data, dlen); /* to the pattern, if it takes them */
        return 0;
    }
    if (zmtp_cmd_is(name, nlen, "ERROR")) {
        int rl = dlen >= 1 && data[0] <= dlen - 1 ? data[0] : 0;
        conn_broken(p, 0, "peer sent ERROR '%.*s'", rl, (const char *)data + 1);
        return FERRY_ECONNRESET;
    }
    return 0; /* PONG and unknown commands: ignored, as RFC 37 asks */
}

static int dec_frame(void *ctx, int flags, void *handle, unsigned char *body, uint64_t size)
{
    struct st_pipe *p = ctx;
    ferry_msg *m = handle;
    m->size = (size_t)size;
    p->frame_cap = 0; /* charged again below, as a part, if it is kept */
    pool_charge(p, 0);
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
        conn_broken(p, 1, "message before the handshake finished");
        return FERRY_EPROTO;
    }
    ferry_socket *s = p->t->s;
    if (p->asm_n == ST_MAX_PARTS || size > msg_max(p) - p->asm_total) {
        ferry_msg_free(m);
        conn_broken(p, 1, "message larger than the maximum size (%llu bytes) or %d parts",
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
    if (pool_charge(p, size + ST_PART_COST) < 0) {
        ferry_msg_free(m);
        over_budget(p);
        return FERRY_EMSGSIZE;
    }
    p->asm_parts[p->asm_n++] = m;
    p->asm_total += size;
    if (flags & ZMTP_MORE) {
        /* the next frame may bring only what the message has left */
        p->dec.max_frame = msg_max(p) - p->asm_total;
        return 0;
    }
    int rc = deliver(p);
    return rc < 0 ? rc : 0;
}

static const struct zmtp_dec_ops st_dec_ops = {
    .alloc = dec_alloc,
    .grow = dec_grow,
    .free = dec_free,
    .greeting = dec_greeting,
    .frame = dec_frame,
};

/* Reads and decodes what the kernel has, up to a budget (fairness between
 * connections: level-triggered epoll brings us back for the rest). */
static void conn_read(struct st_pipe *p, uint32_t events)
{
    struct st_tran *t = p->t;
    ferry_socket *s = t->s;
    size_t budget = 1u << 20;
    size_t before = p->rx_n;
    /* A hang-up or error is reported even while reading is paused: then
     * read on regardless (the kernel holds a bounded amount) to reach the
     * end, or epoll would report it again and again. */
    int hup = (events & (EPOLLHUP | EPOLLERR)) != 0;
    while (p->fd >= 0 && (!p->rx_paused || hup || p->state == C_LINGER) && budget > 0) {
        size_t room;
        unsigned char *dst = zmtp_dec_room(&p->dec, &room);
        if (p->fd < 0)
            break; /* growing the frame's buffer went past the budget */
        int direct = dst != NULL && room >= sizeof t->scratch / 2;
        if (!direct) {
            dst = t->scratch;
            room = sizeof t->scratch;
        }
        ssize_t n = recv(p->fd, dst, room, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            if (errno != EAGAIN)
                conn_broken(p, 0, "read: %s", strerror(p->werr ? p->werr : errno));
            break;
        }
        if (n == 0) {
            if (p->werr) {
                conn_broken(p, 0, "write: %s", strerror(p->werr));
            } else if (p->state == C_LINGER) { /* the peer's FIN: a clean four-way close */
                conn_broken(p, 0, "closed");
            } else {
                conn_broken(p, 0, "the peer closed the connection");
            }
            break;
        }
        budget -= (size_t)n < budget ? (size_t)n : budget;
        p->last_rx = fy_now_mono_ns();
        if (p->state == C_LINGER)
            continue; /* closing: the peer's data is read only to reach its FIN */
        int rc =
            direct ? zmtp_dec_filled(&p->dec, (size_t)n) : zmtp_dec_feed(&p->dec, dst, (size_t)n);
        if (rc < 0) {
            if (p->state != C_CLOSED && p->state != C_IDLE)
                conn_broken(p, rc != FERRY_ENOMEM, "%s",
                            p->dec.why ? p->dec.why : ferry_strerror(rc));
            break;
        }
    }
    conn_interest(p);
    if (p->rx_n != before)
        fy_wake(s->wake, s->event_wfd);
}

/* --- pipe ops (socket mtx held) -------------------------------------------------- */

/* A message as frames: header and data of each, in wire order. */
/* A message as frames, in wire order: header and data of each, as an I/O
 * vector. Up to ST_FRAMES_INLINE frames live on the caller's stack (no
 * allocation per message); a longer multipart message grows onto the heap
 * (frames_free). The header slots are pointed at once all are in place. */
#define ST_FRAMES_INLINE 32
struct st_frames {
    struct iovec *iov;
    unsigned char (*hdr)[ZMTP_HDR_MAX];
    size_t n, cap; /* iov entries; hdr holds cap / 2 */
    size_t len;
    struct iovec iov0[2 * ST_FRAMES_INLINE];
    unsigned char hdr0[ST_FRAMES_INLINE][ZMTP_HDR_MAX];
};

static void frames_init(struct st_frames *f)
{
    f->iov = f->iov0;
    f->hdr = f->hdr0;
    f->n = f->len = 0;
    f->cap = 2 * ST_FRAMES_INLINE;
}

static void frames_free(struct st_frames *f)
{
    if (f->iov != f->iov0) {
        free(f->iov);
        free(f->hdr);
    }
}

static int frames_add(struct st_frames *f, int flags, const void *data, size_t len)
{
    if (f->n + 2 > f->cap) {
        size_t cap = f->cap * 2;
        struct iovec *iov = malloc(cap * sizeof *iov);
        unsigned char(*hdr)[ZMTP_HDR_MAX] = malloc(cap / 2 * sizeof *hdr);
        if (iov == NULL || hdr == NULL) {
            free(iov);
            free(hdr);
            return FERRY_ENOMEM;
        }
        memcpy(iov, f->iov, f->n * sizeof *iov);
        memcpy(hdr, f->hdr, f->n / 2 * sizeof *hdr);
        frames_free(f);
        f->iov = iov;
        f->hdr = hdr;
        f->cap = cap;
    }
    size_t hl = zmtp_frame_hdr(f->hdr[f->n / 2], flags, len);
    f->iov[f->n++] = (struct iovec){NULL, hl}; /* pointed at in frames_done */
    f->iov[f->n++] = (struct iovec){(void *)data, len};
    f->len += hl + len;
    return 0;
}

static void frames_done(struct st_frames *f)
{
    for (size_t i = 0; i < f->n; i += 2)
        f->iov[i].iov_base = f->hdr[i / 2];
}

static int st_send(struct fy_pipe *bp, const struct fy_txmsg *m)
{
    struct st_pipe *p = (struct st_pipe *)bp;
    ferry_socket *s = p->t->s;
    if (p->state == C_CLOSED || p->state == C_LINGER)
        return FERRY_ECONNRESET;
    if (s->opt.sndhwm > 0 && p->mk_n >= (size_t)s->opt.sndhwm)
        return 0;
    struct st_frames f;
    frames_init(&f);
    int rc = 0;
    if (m->nparts == 0)
        rc |= frames_add(&f, 0, NULL, 0);
    for (size_t i = 0; i < m->nparts; i++)
        rc |= frames_add(&f, i + 1 < m->nparts ? ZMTP_MORE : 0, m->parts[i].data, m->parts[i].len);
    if (rc != 0 || mark_reserve(p) != 0) {
        frames_free(&f);
        return FERRY_ENOMEM;
    }
    frames_done(&f);
    int was_empty = p->tx_off == p->tx_len;
    uint64_t now = fy_now_mono_ns();
    int direct = p->state == C_ACTIVE && was_empty && now - p->last_write >= ST_BURST_NS;
    p->last_write = now;
    size_t sent = 0;
    int tried = 0;
    if (direct && f.len >= ST_DIRECT_MIN && p->hs_off == p->hs_len && p->fd >= 0) {
        /* A large message on an idle connection goes from the caller's
         * buffer to the kernel in one sendmsg (no copy into ours); only
         * what the kernel does not take now is copied. */
        struct msghdr mh = {.msg_iov = f.iov, .msg_iovlen = f.n};
        ssize_t n = sendmsg(p->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        tried = 1;
        if (n > 0)
            sent = (size_t)n;
        else if (n < 0 && errno != EAGAIN && errno != EINTR)
            conn_fail_later(p, errno);
    }
    if (tx_reserve(p, f.len - sent) != 0) {
        frames_free(&f);
        if (sent > 0) /* half a message is on the wire: the stream is lost */
            conn_fail_later(p, ENOMEM);
        return sent > 0 ? 1 : FERRY_ENOMEM;
    }
    p->tx_base += sent; /* the buffer was empty: the stream moved on */
    size_t skip = sent;
    for (size_t i = 0; i < f.n; i++) {
        size_t l = f.iov[i].iov_len;
        if (skip >= l) {
            skip -= l;
            continue;
        }
        tx_put(p, (const unsigned char *)f.iov[i].iov_base + skip, l - skip);
        skip = 0;
    }
    frames_free(&f);
    mark_push(p, p->tx_base + p->tx_len); /* room reserved above */
    if (p->state != C_ACTIVE)
        return 1;
    /* Write at once when the output was idle: a request or a reply leaves
     * with no thread switch. But a send that follows the last direct write
     * within ST_BURST_NS is part of a burst: leave it to the I/O thread,
     * which then writes everything queued meanwhile in one call (one
     * system call per message would cap a stream at a tenth of its rate). */
    if (direct && !tried)
        conn_flush(p);
    else /* the rest goes on EPOLLOUT (after a sendmsg: the kernel is full now) */
        conn_interest(p);
    if (sent > 0 && marks_written(p))
        fy_sock_wake(s);
    return 1;
}

static void *st_claim(struct fy_pipe *p, size_t size)
{
    FY_UNUSED(p);
    FY_UNUSED(size);
    return NULL; /* a byte stream has no room to lend: the core copies */
}

static int st_commit(struct fy_pipe *p, size_t size)
{
    FY_UNUSED(p);
    FY_UNUSED(size);
    return FERRY_ENOTSUP;
}

static void st_unclaim(struct fy_pipe *p) { FY_UNUSED(p); }

static int st_recv(struct fy_pipe *bp, struct fy_rxmsg *m, int check)
{
    FY_UNUSED(check);
    struct st_pipe *p = (struct st_pipe *)bp;
    if (p->rx_n == 0)
        return p->state == C_CLOSED ? FERRY_ECONNRESET : 0;
    struct st_rx *r = &p->rxq[p->rx_first];
    p->rx_first = (p->rx_first + 1) % p->rx_cap;
    p->rx_n--;
    memset(m, 0, sizeof *m);
    if (r->parts == NULL) {
        m->one = r->one;
        m->parts = &m->one;
    } else {
        m->parts = r->parts;
    }
    m->nparts = r->nparts;
    p->rx_bytes -= r->charge;
    pool_charge(p, 0);
    if (p->rx_paused && !rx_full(p)) {
        p->rx_paused = 0;
        conn_interest(p);
    }
    return 1;
}

static void st_release(struct fy_pipe *p, int64_t token)
{
    FY_UNUSED(p);
    FY_UNUSED(token);
}

static int st_send_cmd(struct fy_pipe *bp, int cmd, const void *data, size_t len)
{
    struct st_pipe *p = (struct st_pipe *)bp;
    if (p->state == C_CLOSED || p->state == C_LINGER)
        return FERRY_ECONNRESET;
    if (p->state != C_ACTIVE) {
        struct st_subq *q = malloc(sizeof *q + len);
        if (q == NULL)
            return FERRY_ENOMEM;
        q->next = NULL;
        q->cmd = cmd;
        q->len = len;
        if (len)
            memcpy(q->data, data, len);
        *p->subq_tail = q;
        p->subq_tail = &q->next;
        return 1;
    }
    int was_empty = p->tx_off == p->tx_len;
    int rc = tx_subscription(p, cmd, data, len);
    if (rc < 0)
        return rc;
    if (was_empty)
        conn_flush(p);
    return 1;
}

static int st_writable(struct fy_pipe *bp, size_t len)
{
    FY_UNUSED(len);
    struct st_pipe *p = (struct st_pipe *)bp;
    ferry_socket *s = p->t->s;
    return p->state != C_CLOSED && (s->opt.sndhwm == 0 || p->mk_n < (size_t)s->opt.sndhwm);
}

static void st_abort_tx(struct fy_pipe *p) { FY_UNUSED(p); }

static void st_close(struct fy_pipe *bp)
{
    struct st_pipe *p = (struct st_pipe *)bp;
    p->in_sock = 0; /* the socket let it go; the transport still owns its fd */
    /* nobody will read what is queued: give it back now, not at destroy
     * (which may come after the transport is gone) */
    for (size_t i = 0; i < p->rx_n; i++)
        rx_free(&p->rxq[(p->rx_first + i) % p->rx_cap]);
    p->rx_n = 0;
    p->rx_bytes = 0;
    pool_charge(p, 0);
    if (p->state != C_CLOSED && !p->t->closing) {
        /* Let go while its connection lives (the protocol dropped it after
         * an error): the I/O thread closes it, and a dialer redials. Not
         * here: the protocol is walking its pipes. */
        p->removed = 1;
        p->t->any_removed = 1;
        tran_poke(p->t);
    }
}

static void st_destroy(struct fy_pipe *bp)
{
    struct st_pipe *p = (struct st_pipe *)bp;
    p->dying = 1; /* the transport may be freed: no pool to give back to */
    if (p->fd >= 0)
        close(p->fd);
    zmtp_dec_fini(&p->dec);
    asm_clear(p);
    free(p->asm_parts);
    for (size_t i = 0; i < p->rx_n; i++)
        rx_free(&p->rxq[(p->rx_first + i) % p->rx_cap]);
    free(p->rxq);
    while (p->subq) {
        struct st_subq *q = p->subq;
        p->subq = q->next;
        free(q);
    }
    free(p->tx);
    free(p->marks);
    free(p);
}

static const struct fy_pipe_ops st_pipe_ops = {
    .send = st_send,
    .claim = st_claim,
    .commit = st_commit,
    .unclaim = st_unclaim,
    .recv = st_recv,
    .release = st_release,
    .send_cmd = st_send_cmd,
    .writable = st_writable,
    .abort_tx = st_abort_tx,
    .close = st_close,
    .destroy = st_destroy,
};

/* A new pipe object; the caller links it (one reference, the transport's). */
static struct st_pipe *pipe_new(struct st_tran *t)
{
    struct st_pipe *p = calloc(1, sizeof *p);
    if (p == NULL)
        return NULL;
    p->base.ops = &st_pipe_ops;
    p->base.sock = t->s;
    atomic_store(&p->base.refs, 1);
    p->ev.kind = EV_CONN;
    p->t = t;
    p->fd = -1;
    p->subq_tail = &p->subq;
    zmtp_dec_init(&p->dec, &st_dec_ops, p, ST_CMD_MAX);
    return p;
}

/* --- the transport state of a socket --------------------------------------------- */

static struct st_tran *tran_get(ferry_socket *s, int *err)
{
    /* mtx held */
    struct st_tran *t = s->stream_tran;
    if (t != NULL && !t->closing && !s->closing)
        return t;
    if (t != NULL || s->closing) {
        *err = FERRY_ECLOSED;
        return NULL;
    }
    t = calloc(1, sizeof *t);
    if (t == NULL) {
        *err = FERRY_ENOMEM;
        return NULL;
    }
    t->s = s;
    t->cmd.kind = EV_CMD;
    t->next_timer = UINT64_MAX;
    t->epfd = epoll_create1(EPOLL_CLOEXEC);
    t->cmd_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &t->cmd};
    if (t->epfd < 0 || t->cmd_fd < 0 || epoll_ctl(t->epfd, EPOLL_CTL_ADD, t->cmd_fd, &ev) != 0 ||
        pthread_create(&t->thr, NULL, st_thread, t) != 0) {
        *err = fy_syserr("tcp/ipc: start the I/O thread");
        if (t->epfd >= 0)
            close(t->epfd);
        if (t->cmd_fd >= 0)
            close(t->cmd_fd);
        free(t);
        return NULL;
    }
    t->started = 1;
    s->stream_tran = t;
    return t;
}

static int sock_setup(int fd, int family)
{
    if (family != AF_UNIX) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return 0;
}

/* --- listening ------------------------------------------------------------------- */

/* An ipc:// path that exists: a socket nobody listens on is stale (its
 * owner died) and is replaced; a live one, or any other file, is not. */
static int ipc_take_path(const struct st_addr *a, const char *path)
{
    struct stat st;
    if (path[0] == '@' || lstat(path, &st) != 0)
        return 0;
    if (!S_ISSOCK(st.st_mode))
        return fy_err(FERRY_EADDRINUSE, "ipc://%s: exists and is not a socket", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return fy_syserr("socket");
    /* non-blocking: a live listener with a full backlog says EAGAIN */
    int live = connect(fd, (const struct sockaddr *)&a->ss, a->len) == 0 || errno == EAGAIN;
    int err = errno;
    close(fd);
    if (live)
        return fy_err(FERRY_EADDRINUSE, "ipc://%s: a live listener owns it", path);
    if (err != ECONNREFUSED)
        return fy_err(-err, "ipc://%s: cannot tell whether it is in use", path);
    if (unlink(path) != 0 && errno != ENOENT)
        return fy_syserr("ipc://%s: remove the stale socket", path);
    return 0;
}

static int stream_listen(ferry_socket *s, const char *rest, int ipc)
{
    struct st_addr a;
    int rc = ipc ? st_ipc_addr(rest, &a) : st_tcp_addr(rest, 1, &a);
    if (rc != 0)
        return rc;
    if (ipc && (rc = ipc_take_path(&a, rest)) != 0)
        return rc;
    int fd = socket(a.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return fy_syserr("%s://%s: socket", ipc ? "ipc" : "tcp", rest);
    int one = 1;
    if (!ipc)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (const struct sockaddr *)&a.ss, a.len) != 0 || listen(fd, s->opt.backlog) != 0) {
        rc = fy_syserr("%s://%s: bind/listen", ipc ? "ipc" : "tcp", rest);
        close(fd);
        return rc;
    }
    struct st_addr bound = a;
    bound.len = sizeof bound.ss;
    if (getsockname(fd, (struct sockaddr *)&bound.ss, &bound.len) != 0)
        bound = a;
    struct st_listener *l = calloc(1, sizeof *l);
    if (l == NULL) {
        close(fd);
        return FERRY_ENOMEM;
    }
    l->ev.kind = EV_LISTENER;
    l->fd = fd;
    struct stat st;
    if (ipc && rest[0] != '@' && stat(rest, &st) == 0) {
        l->unlink_path = 1;
        l->dev = st.st_dev;
        l->ino = st.st_ino;
        snprintf(l->path, sizeof l->path, "%s", rest);
    }
    pthread_mutex_lock(&s->mtx);
    struct st_tran *t = tran_get(s, &rc);
    if (t != NULL) {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &l->ev};
        if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
            rc = fy_syserr("epoll_ctl");
            t = NULL;
        }
    }
    if (t != NULL) {
        l->next = t->listeners;
        t->listeners = l;
        if (ipc)
            snprintf(s->endpoint, sizeof s->endpoint, "ipc://%s", rest);
        else
            st_addr_url(&bound, s->endpoint, sizeof s->endpoint);
    }
    pthread_mutex_unlock(&s->mtx);
    if (t == NULL) {
        if (l->unlink_path)
            unlink(l->path);
        close(fd);
        free(l);
    }
    return rc;
}

/* Refuses a connection we accepted: a ZMTP greeting and an ERROR command
 * saying why (so the peer can tell its user), then close. Written without
 * waiting: a peer that does not read just loses the explanation. */
static void refuse(struct st_tran *t, int fd, int bad, const char *why)
{
    ferry_socket *s = t->s;
    unsigned char out[ZMTP_GREETING_SIZE + 128], body[100];
    size_t n = zmtp_greeting(out), wl = strlen(why) < 96 ? strlen(why) : 96;
    body[0] = (unsigned char)wl;
    memcpy(body + 1, why, wl);
    n += zmtp_command(out + n, sizeof out - n, "ERROR", body, wl + 1);
    ssize_t w = send(fd, out, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    FY_UNUSED(w);
    close(fd);
    if (bad)
        s->errors++;
    else
        s->refused++;
    char line[160];
    snprintf(line, sizeof line, "accepted connection refused: %s", why);
    fy_sock_note(s, 0, line);
}

/* Whether a connection just accepted may stay: the socket's limits, and
 * over ipc:// the peer's uid as the kernel reports it. 0, or refused (the
 * fd is closed). */
static int admit(struct st_tran *t, int fd, int family, struct ucred *cr)
{
    ferry_socket *s = t->s;
    int conns = 0, shaking = 0;
    for (struct st_pipe *p = t->conns; p; p = p->next) {
        conns += p->d == NULL;
        shaking += p->d == NULL && p->state == C_HANDSHAKE;
    }
    char why[96];
    if (family == AF_UNIX) {
        socklen_t cl = sizeof *cr;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, cr, &cl) != 0) {
            refuse(t, fd, 0, "peer credentials unavailable");
            return -1;
        }
        if (!fy_uid_allowed(s, cr->uid)) {
            snprintf(why, sizeof why, "access denied: uid %u may not connect (FERRY_OPT_PEER_UID)",
                     (unsigned)cr->uid);
            refuse(t, fd, 0, why);
            return -1;
        }
    }
    if (conns >= s->opt.max_conns) {
        snprintf(why, sizeof why, "too many connections (%d, FERRY_OPT_MAX_CONNECTIONS)", conns);
        refuse(t, fd, 0, why);
        return -1;
    }
    if (shaking >= s->opt.backlog) {
        snprintf(why, sizeof why, "too many handshakes in progress (%d, FERRY_OPT_BACKLOG)",
                 shaking);
        refuse(t, fd, 0, why);
        return -1;
    }
    return 0;
}

static void on_accept(struct st_tran *t, struct st_listener *l)
{
    ferry_socket *s = t->s;
    for (int i = 0; i < 64; i++) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOMEM || errno == ENOBUFS) {
                char why[96];
                snprintf(why, sizeof why, "accept: %s (listener paused 100 ms)", strerror(errno));
                fy_sock_note(s, 0, why);
                /* out of descriptors: stop listening for a moment rather
                 * than spin on a level-triggered event */
                struct epoll_event ev = {.events = 0, .data.ptr = &l->ev};
                epoll_ctl(t->epfd, EPOLL_CTL_MOD, l->fd, &ev);
                timer_at(t, fy_now_mono_ns() + 100000000u);
            }
            return;
        }
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int family = getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 ? ss.ss_family : AF_UNIX;
        struct ucred cr = {.pid = 0, .uid = (uid_t)-1, .gid = (gid_t)-1};
        if (admit(t, fd, family, &cr) != 0)
            continue;
        sock_setup(fd, family);
        struct st_pipe *p = pipe_new(t);
        if (p == NULL) {
            close(fd);
            continue;
        }
        p->base.peer_pid = cr.pid;
        p->base.peer_uid = cr.uid;
        p->fd = fd;
        p->events = EPOLLIN;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &p->ev};
        if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
            st_destroy(&p->base); /* closes fd */
            continue;
        }
        p->next = t->conns;
        t->conns = p;
        conn_start(p);
    }
}

/* --- dialing --------------------------------------------------------------------- */

static void dialer_schedule(struct st_dialer *d, int first)
{
    struct st_pipe *p = d->pipe;
    if (p == NULL)
        return;
    struct st_tran *t = p->t;
    ferry_socket *s = t->s;
    int ivl = d->backoff_ms;
    if (!first) { /* exponential backoff, capped */
        long next = (long)d->backoff_ms * 2;
        d->backoff_ms = next > s->opt.reconnect_max_ms ? s->opt.reconnect_max_ms : (int)next;
    }
    d->retry_at = fy_now_mono_ns() + (uint64_t)ivl * 1000000u;
    timer_at(t, d->retry_at);
}

/* One connection attempt (I/O thread or ferry_dial, mtx held). A host
 * name is resolved again before each retry (its address may change), with
 * mtx released: a slow resolver must not stall the socket. The dialer
 * itself lives until the I/O thread has ended, so d stays valid. */
static void dialer_try(struct st_tran *t, struct st_dialer *d, int resolve)
{
    d->retry_at = 0;
    if (d->pipe == NULL || d->pipe->state != C_IDLE)
        return;
    if (resolve && !d->ipc && !d->numeric) {
        struct st_addr a;
        char rest[sizeof d->rest];
        memcpy(rest, d->rest, sizeof rest);
        pthread_mutex_unlock(&t->s->mtx);
        int rc = st_tcp_addr(rest, 0, &a);
        pthread_mutex_lock(&t->s->mtx);
        if (rc == 0)
            d->addr = a; /* else: keep the last good address */
        if (d->pipe == NULL || d->pipe->state != C_IDLE || (t->closing && !d->pipe->lingering))
            return;
    }
    struct st_pipe *p = d->pipe;
    int fd = socket(d->addr.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        dialer_schedule(d, 0);
        return;
    }
    sock_setup(fd, d->addr.family);
    int rc = connect(fd, (const struct sockaddr *)&d->addr.ss, d->addr.len);
    if (rc != 0 && errno != EINPROGRESS) {
        close(fd);
        dialer_schedule(d, 0);
        return;
    }
    p->fd = fd;
    p->state = C_CONNECTING;
    p->events = EPOLLOUT;
    zmtp_dec_init(&p->dec, &st_dec_ops, p, ST_CMD_MAX);
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = &p->ev};
    if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        close(fd);
        p->fd = -1;
        p->state = C_IDLE;
        dialer_schedule(d, 0);
        return;
    }
    p->hs_deadline = fy_now_mono_ns() + (uint64_t)t->s->opt.handshake_ms * 1000000u;
    timer_at(t, p->hs_deadline);
}

static void on_connected(struct st_pipe *p)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    if (err != 0) {
        conn_broken(p, 0, "connect: %s", strerror(err));
        return;
    }
    if (p->d != NULL && p->d->ipc) {
        /* who listens there, as the kernel says: an abstract name has no
         * permissions, so anyone could have bound it first */
        struct ucred cr;
        socklen_t cl = sizeof cr;
        if (getsockopt(p->fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl) != 0) {
            conn_broken(p, 0, "peer credentials: %s", strerror(errno));
            return;
        }
        if (!fy_uid_allowed(p->t->s, cr.uid)) {
            conn_broken(p, 0, "the listener runs as uid %u, not allowed (FERRY_OPT_PEER_UID)",
                        (unsigned)cr.uid);
            return;
        }
        p->base.peer_pid = cr.pid;
        p->base.peer_uid = cr.uid;
    }
    conn_start(p);
}

static int stream_dial(ferry_socket *s, const char *rest, int ipc)
{
    struct st_dialer *d = calloc(1, sizeof *d);
    if (d == NULL)
        return FERRY_ENOMEM;
    if (strlen(rest) >= sizeof d->rest) {
        free(d);
        return fy_err(FERRY_EBADURL, "%s://%.100s...: address too long", ipc ? "ipc" : "tcp", rest);
    }
    int rc = ipc ? st_ipc_addr(rest, &d->addr) : st_tcp_addr(rest, 0, &d->addr);
    if (rc != 0) {
        free(d);
        return rc;
    }
    snprintf(d->rest, sizeof d->rest, "%s", rest);
    d->ipc = ipc;
    d->numeric = !ipc && st_is_numeric(rest);
    pthread_mutex_lock(&s->mtx);
    struct st_tran *t = tran_get(s, &rc);
    struct st_pipe *p = t ? pipe_new(t) : NULL;
    if (t != NULL && p == NULL)
        rc = FERRY_ENOMEM;
    if (p != NULL) {
        p->base.pending = 1;
        p->state = C_IDLE;
        p->d = d;
        rc = fy_sock_add_pipe_locked(s, &p->base);
        if (rc != 0) {
            st_destroy(&p->base);
            p = NULL;
        }
    }
    if (p != NULL) {
        p->in_sock = 1;
        p->next = t->conns;
        t->conns = p;
        d->pipe = p;
        d->backoff_ms = s->opt.reconnect_ms;
        d->next = t->dialers;
        t->dialers = d;
        dialer_try(t, d, 0);
        tran_poke(t);
    } else {
        free(d);
    }
    pthread_mutex_unlock(&s->mtx);
    return rc;
}

/* --- timers ---------------------------------------------------------------------- */

static uint64_t min_nz(uint64_t a, uint64_t b) { return b != 0 && b < a ? b : a; }

/* Handshake deadlines, heartbeats, reconnects, linger; returns the next
 * time something is due. */
static uint64_t run_timers(struct st_tran *t, uint64_t now)
{
    ferry_socket *s = t->s;
    uint64_t next = UINT64_MAX;
    uint64_t ivl = (uint64_t)s->opt.heartbeat_ivl * 1000000u;
    uint64_t hb_to = (uint64_t)(s->opt.heartbeat_timeout >= 0 ? s->opt.heartbeat_timeout
                                                              : s->opt.heartbeat_ivl) *
                     1000000u;
    for (struct st_pipe *p = t->conns, *nx; p; p = nx) {
        nx = p->next;
        if (p->state == C_CONNECTING || p->state == C_HANDSHAKE) {
            if (now >= p->hs_deadline) {
                conn_broken(p, p->state == C_HANDSHAKE, "%s timed out after %d ms",
                            p->state == C_HANDSHAKE ? "handshake" : "connect", s->opt.handshake_ms);
                continue;
            }
            next = min_nz(next, p->hs_deadline);
        } else if (p->state == C_ACTIVE) {
            if (p->ping_sent && p->last_rx >= p->ping_sent)
                p->ping_sent = 0; /* anything heard counts as an answer */
            if (p->rx_paused)     /* we are the one not reading: the peer's answers wait */
                p->ping_sent = 0, p->last_rx = now;
            if (p->ping_sent && now >= p->ping_sent + hb_to) {
                conn_broken(p, 0, "heartbeat: no answer within %llu ms",
                            (unsigned long long)(hb_to / 1000000u));
                continue;
            }
            if (p->ttl_ns && now >= p->last_rx + p->ttl_ns) {
                conn_broken(p, 0, "heartbeat: silent past the peer's TTL");
                continue;
            }
            if (ivl && now >= p->next_ping) {
                unsigned char ttl[2];
                uint64_t ds = (uint64_t)s->opt.heartbeat_ttl / 100;
                if (ds > 655)
                    ds = 655; /* libzmq 4.3.4 overflows above 655 (zmtp.md 5) */
                ttl[0] = (unsigned char)(ds >> 8);
                ttl[1] = (unsigned char)ds;
                int was_empty = p->tx_off == p->tx_len;
                if (tx_command(p, "PING", ttl, 2) == 0 && was_empty)
                    conn_flush(p);
                if (p->state != C_ACTIVE)
                    continue;
                if (!p->ping_sent)
                    p->ping_sent = now;
                p->next_ping = now + ivl;
            }
            if (ivl)
                next = min_nz(next, p->next_ping);
            if (p->ping_sent)
                next = min_nz(next, p->ping_sent + hb_to);
            if (p->ttl_ns)
                next = min_nz(next, p->last_rx + p->ttl_ns);
        }
        if (p->lingering) {
            if (now >= p->linger_deadline) {
                linger_done(p);
                conn_broken(p, 0, "linger time over");
                continue;
            }
            next = min_nz(next, p->linger_deadline);
        }
    }
    for (struct st_dialer *d = t->dialers; d; d = d->next) {
        int wanted = d->pipe != NULL && (!t->closing || d->pipe->lingering);
        if (!wanted)
            d->retry_at = 0;
        if (d->retry_at && now >= d->retry_at)
            dialer_try(t, d, 1);
        if (d->retry_at)
            next = min_nz(next, d->retry_at);
    }
    for (struct st_listener *l = t->listeners; l; l = l->next) {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &l->ev};
        epoll_ctl(t->epfd, EPOLL_CTL_MOD, l->fd, &ev); /* re-arm one paused by EMFILE */
    }
    return next;
}

/* --- the I/O thread ------------------------------------------------------------- */

static void on_conn_event(struct st_pipe *p, uint32_t events)
{
    if (p->state == C_CLOSED)
        return; /* closed earlier in this batch */
    if (p->state == C_CONNECTING) {
        on_connected(p);
        return;
    }
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
        conn_read(p, events);
    if ((events & (EPOLLOUT | EPOLLERR)) && p->fd >= 0)
        conn_flush(p);
}

static void *st_thread(void *arg)
{
    struct st_tran *t = arg;
    ferry_socket *s = t->s;
    struct epoll_event evs[64];
    pthread_mutex_lock(&s->mtx);
    while (!t->stop) {
        uint64_t now = fy_now_mono_ns();
        if (now >= t->next_timer) {
            t->next_timer = UINT64_MAX;
            t->next_timer = min_nz(t->next_timer, run_timers(t, now));
        }
        int timeout = -1;
        if (t->next_timer <= now) {
            timeout = 0;
        } else if (t->next_timer != UINT64_MAX) {
            uint64_t ms = (t->next_timer - now + 999999u) / 1000000u;
            timeout = ms > INT_MAX ? INT_MAX : (int)ms;
        }
        if (t->any_removed) {
            t->any_removed = 0;
            for (struct st_pipe *p = t->conns, *nx; p; p = nx) {
                nx = p->next;
                if (p->removed)
                    conn_broken(p, 0, "released by the socket");
            }
        }
        while (t->ngrave > 0)
            fy_pipe_unref(&t->grave[--t->ngrave]->base);
        pthread_mutex_unlock(&s->mtx);
        int n = epoll_wait(t->epfd, evs, FY_ARRAY_LEN(evs), timeout);
        pthread_mutex_lock(&s->mtx);
        for (int i = 0; i < n && !t->stop; i++) {
            struct st_ev *ev = evs[i].data.ptr;
            if (ev->kind == EV_CMD) {
                uint64_t v;
                ssize_t r = read(t->cmd_fd, &v, sizeof v);
                FY_UNUSED(r);
            } else if (ev->kind == EV_LISTENER) {
                if (!t->closing) /* else it may be on the dead list: not touched */
                    on_accept(t, (struct st_listener *)ev);
            } else {
                on_conn_event(pipe_of(ev), evs[i].events);
            }
        }
    }
    pthread_mutex_unlock(&s->mtx);
    return NULL;
}

/* --- close: linger, then tear down ---------------------------------------------- */

static void stream_close_all(ferry_socket *s)
{
    pthread_mutex_lock(&s->mtx);
    struct st_tran *t = s->stream_tran;
    if (t == NULL) {
        pthread_mutex_unlock(&s->mtx);
        return;
    }
    t->closing = 1;
    while (t->listeners) {
        struct st_listener *l = t->listeners;
        t->listeners = l->next;
        epoll_ctl(t->epfd, EPOLL_CTL_DEL, l->fd, NULL);
        close(l->fd);
        struct stat st;
        if (l->unlink_path && stat(l->path, &st) == 0 && st.st_dev == l->dev && st.st_ino == l->ino)
            unlink(l->path);
        /* an event for it may sit in the I/O thread's current batch */
        l->next = t->dead_listeners;
        t->dead_listeners = l;
    }
    /* Linger: connections that carried messages flush what is queued,
     * send FIN, and wait for the peer's FIN, so that close() finds no
     * unread data and never turns into an RST that destroys data the peer
     * had not read yet. */
    int linger = s->opt.linger_ms;
    uint64_t now = fy_now_mono_ns();
    uint64_t deadline = linger < 0 ? UINT64_MAX : now + (uint64_t)linger * 1000000u;
    for (struct st_pipe *p = t->conns, *nx; p; p = nx) {
        nx = p->next;
        /* a dialer's pipe that never connected lingers too when messages
         * wait in it: they leave if the connection comes in time */
        int queued = p->state < C_ACTIVE && p->mk_n > 0 && p->d != NULL;
        if (linger != 0 && (p->state == C_ACTIVE || queued)) {
            p->lingering = 1;
            p->linger_deadline = deadline;
            t->nlinger++;
            if (p->state == C_ACTIVE) {
                p->state = C_LINGER;
                p->rx_paused = 0;
                conn_flush(p);
                conn_interest(p);
            }
        } else if (p->state != C_CLOSED) {
            conn_broken(p, 0, "socket closed");
        }
    }
    t->next_timer = 0;
    tran_poke(t);
    struct fy_wake *w = s->wake;
    while (t->nlinger > 0) {
        uint32_t seq = atomic_load_explicit(&w->seq, memory_order_acquire);
        atomic_fetch_add_explicit(&w->sleepers, 1, memory_order_seq_cst);
        atomic_store_explicit(&w->woken, 0, memory_order_seq_cst); /* arm (sock.h) */
        pthread_mutex_unlock(&s->mtx);
        fy_futex_wait(&w->seq, seq,
                      deadline == UINT64_MAX ? fy_now_mono_ns() + 1000000000u : deadline);
        atomic_fetch_sub_explicit(&w->sleepers, 1, memory_order_relaxed);
        pthread_mutex_lock(&s->mtx);
        if (deadline != UINT64_MAX && fy_now_mono_ns() >= deadline)
            break;
    }
    t->stop = 1;
    pthread_mutex_unlock(&s->mtx);
    tran_poke(t);
    if (t->started)
        pthread_join(t->thr, NULL);
    pthread_mutex_lock(&s->mtx);
    while (t->dialers) { /* first: their pipes may be freed just below */
        struct st_dialer *d = t->dialers;
        t->dialers = d->next;
        if (d->pipe)
            d->pipe->d = NULL;
        free(d);
    }
    while (t->conns) { /* what is left: close now (linger over, or none) */
        struct st_pipe *p = t->conns;
        t->conns = p->next;
        conn_close_fd(p);
        p->state = C_CLOSED;
        grave_add(t, p);
    }
    while (t->ngrave > 0)
        fy_pipe_unref(&t->grave[--t->ngrave]->base);
    /* pipes still in the socket (dead, draining) outlive us: they must not
     * give back to a pool that is about to go */
    for (size_t i = 0; i < s->npipes; i++)
        if (s->pipes[i]->ops == &st_pipe_ops)
            ((struct st_pipe *)s->pipes[i])->dying = 1;
    while (t->dead_listeners) {
        struct st_listener *l = t->dead_listeners;
        t->dead_listeners = l->next;
        free(l);
    }
    s->stream_tran = NULL;
    pthread_mutex_unlock(&s->mtx);
    free(t->grave);
    close(t->epfd);
    close(t->cmd_fd);
    free(t);
}

static int tcp_listen(ferry_socket *s, const char *rest) { return stream_listen(s, rest, 0); }
static int ipc_listen(ferry_socket *s, const char *rest) { return stream_listen(s, rest, 1); }
static int tcp_dial(ferry_socket *s, const char *rest) { return stream_dial(s, rest, 0); }
static int ipc_dial(ferry_socket *s, const char *rest) { return stream_dial(s, rest, 1); }

const struct fy_tran_ops fy_tcp_tran = {
    .scheme = "tcp",
    .listen = tcp_listen,
    .dial = tcp_dial,
    .close_all = stream_close_all,
};

const struct fy_tran_ops fy_ipc_tran = {
    .scheme = "ipc",
    .listen = ipc_listen,
    .dial = ipc_dial,
    .close_all = stream_close_all,
};
