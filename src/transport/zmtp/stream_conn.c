/*
 * stream_conn.c - one ZMTP connection's life (stream_int.h tells the
 * whole): the handshake (greeting, READY and the peer's type), the output
 * buffer and its writes, heartbeats, linger and teardown. Input is
 * stream_rx.c.
 */
#include "stream_int.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static uint64_t min_nz(uint64_t a, uint64_t b) { return b != 0 && b < a ? b : a; }

/* 1 if the peer's Socket-Type is one the pattern talks to (its wire
 * table: RFC 37's compatibility, as libzmq checks it). */
static int peer_ok(const struct fy_wire *w, const unsigned char *v, size_t n)
{
    for (size_t j = 0; j < FY_ARRAY_LEN(w->peers) && w->peers[j]; j++)
        if (strlen(w->peers[j]) == n && memcmp(w->peers[j], v, n) == 0)
            return 1;
    return 0;
}

/* Sets what the fd waits for: input unless paused or connecting, output while
 * there is something to write (or a connect to complete). */
void st_conn_interest(struct st_pipe *p)
{
    if (p->fd < 0)
        return;
    uint32_t want = 0;
    if (p->state == C_CONNECTING)
        want = FY_IO_OUT;
    else if (p->state != C_CLOSED) {
        if ((!p->rx_paused && !p->parked && !p->base.lent) || p->state == C_LINGER)
            want |= FY_IO_IN;
        if (p->hs_off < p->hs_len || (p->state >= C_ACTIVE && p->tx_off < p->tx_len && !p->tx_held))
            want |= FY_IO_OUT;
    }
    if (want == p->events)
        return;
    fy_io_mod(&p->io, want);
    p->events = want;
}

int st_tx_reserve(struct st_pipe *p, size_t more)
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

int st_tx_full(struct st_pipe *p)
{
    const struct fy_opts *o = &p->t->s->opt;
    uint64_t bytes = o->sndhwm_bytes;
    int full = (o->sndhwm > 0 && p->mk_n >= (size_t)o->sndhwm) ||
               (bytes > 0 && p->tx_len - p->tx_off >= bytes);
    p->tx_blocked |= full;
    return full;
}

void st_tx_put(struct st_pipe *p, const void *data, size_t len)
{
    if (len)
        memcpy(p->tx + p->tx_len, data, len);
    p->tx_len += len;
}

int st_mark_reserve(struct st_pipe *p)
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

void st_mark_push(struct st_pipe *p, uint64_t end)
{
    p->marks[(p->mk_head + p->mk_n++) % p->mk_cap] = end;
}

/* Forgets the marks of messages written out; 1 if any went. */
int st_marks_written(struct st_pipe *p)
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

int st_tx_frame(struct st_pipe *p, int flags, const void *a, size_t alen, const void *b,
                size_t blen)
{
    if (p->zc != NULL && p->state >= C_ACTIVE) {
        if (st_tx_reserve(p, (size_t)zc_wire_size(alen + blen)) != 0)
            return FERRY_ENOMEM;
        size_t n = zc_encode(p->zc, p->tx + p->tx_len,
                             ((flags & ZMTP_MORE) ? ZC_MORE : 0) |
                                 ((flags & ZMTP_COMMAND) ? ZC_COMMAND : 0),
                             a, alen, b, blen);
        if (n == 0)
            return FERRY_EPROTO; /* the nonces are spent: never reuse one */
        p->tx_len += n;
        return 0;
    }
    unsigned char h[ZMTP_HDR_MAX];
    size_t hl = zmtp_frame_hdr(h, flags, alen + blen);
    if (st_tx_reserve(p, hl + alen + blen) != 0)
        return FERRY_ENOMEM;
    st_tx_put(p, h, hl);
    st_tx_put(p, a, alen);
    st_tx_put(p, b, blen);
    return 0;
}

/* Appends a command frame (commands are never counted against SNDHWM). */
int st_tx_command(struct st_pipe *p, const char *name, const void *data, size_t len)
{
    unsigned char head[256];
    size_t nlen = strlen(name);
    if (nlen == 0 || nlen > 255)
        return FERRY_EINVAL;
    head[0] = (unsigned char)nlen;
    memcpy(head + 1, name, nlen);
    return st_tx_frame(p, ZMTP_COMMAND, head, 1 + nlen, data, len);
}

int st_tx_subscription(struct st_pipe *p, int cmd, const void *data, size_t len)
{
    if (p->peer_minor >= 1)
        return st_tx_command(p, cmd ? "SUBSCRIBE" : "CANCEL", data, len);
    /* ZMTP 3.0: a message whose first byte is 1 (subscribe) or 0 */
    unsigned char c = cmd ? 1 : 0;
    return st_tx_frame(p, 0, &c, 1, data, len);
}

/* Writes what can be written now, without blocking. */
void st_conn_flush(struct st_pipe *p)
{
    if (p->fd < 0 || p->state == C_CONNECTING || p->state == C_CLOSED)
        return;
    while (p->hs_off < p->hs_len) {
        ssize_t n = send(p->fd, p->hs + p->hs_off, p->hs_len - p->hs_off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            if (errno != EAGAIN)
                st_conn_fail_later(p, errno);
            else
                st_conn_interest(p);
            return;
        }
        p->hs_off += (size_t)n;
    }
    if (p->state < C_ACTIVE)
        return st_conn_interest(p);
    int freed = 0;
    while (p->tx_off < p->tx_len) {
        ssize_t n = send(p->fd, p->tx + p->tx_off, p->tx_len - p->tx_off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            if (errno != EAGAIN) {
                st_conn_fail_later(p, errno);
                return;
            }
            break;
        }
        p->tx_off += (size_t)n;
        freed |= st_marks_written(p);
    }
    if (p->tx_off == p->tx_len && p->state == C_LINGER && !p->shut_wr) {
        shutdown(p->fd, SHUT_WR); /* our FIN: the peer reads to the end, then closes */
        p->shut_wr = 1;
    }
    p->tx_held = 0; /* all written, or the kernel is full: FY_IO_OUT takes the rest */
    st_conn_interest(p);
    /* Room wakes senders (and a poller's POLLOUT) once the queue is down
     * to half its limits, as libzmq's low-water mark: waking a blocked
     * sender for every message written would have it send one and sleep
     * again, a thread switch per message whenever the reader is the slower
     * side (CURVE's 64 B stream ran at half libzmq's rate so). */
    /* Only a queue someone found full owes a wake; commands (PING, PONG,
     * subscriptions) count against the bytes too, so the queue may get
     * there without any message finishing. */
    int hwm = p->t->s->opt.sndhwm;
    uint64_t bytes = p->t->s->opt.sndhwm_bytes;
    if ((freed || p->tx_blocked) && (hwm == 0 || p->mk_n <= (size_t)hwm / 2) &&
        (bytes == 0 || p->tx_len - p->tx_off <= bytes / 2)) {
        p->tx_blocked = 0;
        fy_sock_signal(p->t->s);
    }
}

/* A write failed. Writes happen inside pipe ops, while a protocol walks the
 * socket's pipes, so the pipe must not leave the socket here: shut the
 * socket down instead, and the I/O thread, which then reads EOF or the
 * error, tears the connection down. When the peer is gone (EPIPE,
 * ECONNRESET) only our sending side is shut: what it sent before it went
 * is still read first, and that may be the ERROR that says why it closed
 * on us (a refusal), which the user should see rather than "broken pipe". */
void st_conn_fail_later(struct st_pipe *p, int err)
{
    if (p->werr == 0)
        p->werr = err;
    if (p->fd >= 0)
        shutdown(p->fd, err == EPIPE || err == ECONNRESET ? SHUT_WR : SHUT_RDWR);
    st_poke(p->t);
}

void st_grave_add(struct st_tran *t, struct st_pipe *p)
{
    /* off the list of pipes holding output: the grave may free it before
     * the timer's next look at that list (a pipe broken later in the same
     * timer run than held_due) */
    if (p->in_held) {
        for (size_t i = 0; i < t->nheld; i++)
            if (t->held[i] == p) {
                t->held[i] = t->held[--t->nheld];
                break;
            }
        p->in_held = 0;
    }
    p->tx_held = 0;
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

void st_conn_close_fd(struct st_pipe *p)
{
    if (p->fd >= 0) {
        assert(fy_loop_on_thread(p->t->loop));
        fy_io_del(&p->io);
        if (p->parked) {
            /* its receiver polls the fd, and a poll holds the file open past
             * close(): end the connection now, and let it look again */
            shutdown(p->fd, SHUT_RDWR);
            fy_sock_wake(p->t->s);
        }
        close(p->fd);
    }
    p->fd = -1;
    p->events = 0;
}

static void conn_reset_io(struct st_pipe *p)
{
    zmtp_dec_fini(&p->dec);
    st_mech_end(p);
    st_asm_clear(p);
    p->hs_len = p->hs_off = 0;
    p->shut_wr = 0;
    p->werr = 0;
    p->ping_sent = 0;
    p->ttl_ns = 0;
    p->rx_fail = 0;
    p->base.lent = 0; /* no input left to lend */
}

/* A dialer whose connection broke after its handshake starts over with a
 * fresh pending pipe (the old one's queue went with it). */
static void redial(struct st_tran *t, struct st_dialer *d, int err, const char *why)
{
    ferry_socket *s = t->s;
    struct st_pipe *np = st_pipe_new(t);
    if (np != NULL) {
        np->d = d;
        d->pipe = np;
        np->base.pending = 1;
        np->state = C_IDLE;
        fy_pipe_set_url(&np->base, "%s://%s", d->ipc ? "ipc" : "tcp", d->rest);
        if (fy_sock_add_pipe_locked(s, &np->base) == 0)
            np->in_sock = 1;
        np->next = t->conns;
        t->conns = np;
    }
    d->backoff_ms = s->opt.reconnect_ms;
    st_dialer_schedule(d, 1, err, why);
}

static void linger_done(struct st_pipe *p)
{
    p->lingering = 0;
    p->t->nlinger--;
    fy_sock_wake(p->t->s); /* ferry_close() waits for nlinger == 0 */
}

/* The connection is over (error, EOF, timeout, protocol violation). bad:
 * the peer broke the rules (counted in FERRY_OPT_ERRORS). */
void st_conn_broken(struct st_pipe *p, int bad, int err, const char *fmt, ...)
{
    struct st_tran *t = p->t;
    ferry_socket *s = t->s;
    if (p->state == C_CLOSED)
        return;
    char raw[200], why[200], line[260];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    if (!fy_loop_on_thread(t->loop)) { /* a parked receiver's read: park.c */
        if (p->rx_fail == 0) {
            p->rx_fail = err != 0 ? err : FERRY_EPROTO;
            p->rx_fail_bad = bad;
            memcpy(p->rx_fail_why, raw, sizeof raw);
            t->any_failed = 1;
            st_poke(t);
        }
        return;
    }
    fy_escape(why, sizeof why, raw); /* it may quote the peer (its ERROR, its type) */
    snprintf(line, sizeof line, "%s connection %d dropped: %s", p->d ? "dialed" : "accepted",
             p->base.id, raw); /* fy_sock_note escapes it */
    int was_active = p->state >= C_ACTIVE;
    struct st_dialer *d = p->d;
    int retry = d != NULL && !was_active && !p->removed && (!t->closing || p->lingering);
    if (p->state == C_HANDSHAKE && !t->closing) /* while the fd still says who the peer is */
        fy_ev_report(s, FERRY_EVENT_HANDSHAKE_FAILED, err, 0, NULL, &p->base, NULL, "%s", why);
    st_conn_close_fd(p);
    if (!t->closing)
        fy_sock_note(s, bad, line);
    if (p->lingering && !retry)
        linger_done(p);
    conn_reset_io(p);
    if (retry) {
        /* never connected: the pipe keeps what was queued and waits */
        p->state = C_IDLE;
        st_dialer_schedule(d, 0, err, why);
        return;
    }
    p->state = C_CLOSED;
    conns_unlink(t, p);
    if (p->in_sock)
        fy_sock_pipe_dead_locked(s, &p->base, err, why);
    if (d != NULL) {
        d->pipe = NULL;
        d->retry_at = 0;
        p->d = NULL;
        if (!t->closing)
            redial(t, d, err, why);
    }
    st_grave_add(t, p);
    st_poke(t);
}

void st_conn_start(struct st_pipe *p)
{
    ferry_socket *s = p->t->s;
    if (st_mech_start(p) != 0) {
        st_conn_broken(p, 0, FERRY_ENOMEM, "out of memory for the CURVE state");
        return;
    }
    p->hs_len = st_mech_greeting(p, p->hs); /* what follows waits for the peer's greeting */
    p->hs_off = 0;
    p->state = C_HANDSHAKE;
    p->hs_deadline = fy_now_mono_ns() + (uint64_t)s->opt.handshake_ms * 1000000u;
    st_timer_at(p->t, p->hs_deadline);
    st_conn_flush(p);
}

void st_send_error(struct st_pipe *p, const char *reason)
{
    unsigned char err[300], body[256];
    size_t rl = strlen(reason) < 255 ? strlen(reason) : 255;
    body[0] = (unsigned char)rl;
    memcpy(body + 1, reason, rl);
    size_t n = zmtp_command(err, sizeof err, "ERROR", body, 1 + rl);
    if (p->fd >= 0 && p->hs_off == p->hs_len) { /* never into the middle of our own output */
        ssize_t w = send(p->fd, err, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        FY_UNUSED(w);
    }
}

int st_conn_peer_ok(struct st_pipe *p, const unsigned char *meta, size_t mlen)
{
    ferry_socket *s = p->t->s;
    const unsigned char *v = NULL;
    size_t vn = 0;
    int rc = zmtp_meta_find(meta, mlen, "Socket-Type", &v, &vn);
    if (rc < 0) {
        st_conn_broken(p, 1, FERRY_EPROTO, "malformed READY metadata");
        return FERRY_EPROTO;
    }
    if (rc == 0 || !peer_ok(s->proto->wire, v, vn)) {
        char got[32];
        snprintf(got, sizeof got, "%.*s", rc == 0 ? 4 : (int)(vn < 16 ? vn : 16),
                 rc == 0 ? "none" : (const char *)v);
        if (p->zc != NULL && p->zc->state == ZC_ACTIVE) { /* the server is past its READY */
            static const char r[] = "\023invalid socket type";
            if (st_tx_command(p, "ERROR", r, sizeof r - 1) == 0)
                st_conn_flush(p);
        } else {
            st_send_error(p, "invalid socket type");
        }
        st_conn_broken(p, 1, FERRY_EPEERTYPE, "peer socket type %s cannot talk to %s", got,
                       s->proto->wire->name);
        return FERRY_EPEERTYPE;
    }
    /* The routing id the peer announced, for a pattern that routes (a
     * ROUTER): at most 255 bytes (RFC 23), like every ZeroMQ peer sends. */
    rc = zmtp_meta_find(meta, mlen, "Identity", &v, &vn);
    if (rc > 0 && vn > FY_RID_MAX) {
        st_conn_broken(p, 1, FERRY_EPROTO,
                       "the peer announced a routing id (Identity) of %zu bytes, over %d", vn,
                       FY_RID_MAX);
        return FERRY_EPROTO;
    }
    p->base.peer_rid_len = rc > 0 ? vn : 0;
    if (rc > 0 && vn)
        memcpy(p->base.peer_rid, v, vn);
    return 0;
}

/* The handshake is done and the peer fits: messages may flow. */
int st_conn_join(struct st_pipe *p)
{
    struct st_tran *t = p->t;
    ferry_socket *s = t->s;
    int rc;
    if (!p->in_sock) {
        p->base.pending = 0;
        rc = fy_sock_add_pipe_locked(s, &p->base);
        if (rc != 0) {
            st_conn_broken(p, 0, rc, "refused by the socket (%s): %s", ferry_strerror(rc),
                           ferry_errdetail());
            return rc;
        }
        p->in_sock = 1;
    } else if (p->base.pending && (rc = fy_sock_pipe_start_locked(s, &p->base)) != 0) {
        st_conn_broken(p, 0, rc, "refused by the socket (%s): %s", ferry_strerror(rc),
                       ferry_errdetail());
        return rc;
    }
    p->state = C_ACTIVE;
    if (p->zc != NULL && st_curve_seal_queue(p) != 0) {
        st_conn_broken(p, 0, FERRY_ENOMEM, "the queued messages could not be sealed");
        return FERRY_ENOMEM;
    }
    /* the handshake is over: messages up to MAXMSGSIZE; commands up to
     * ST_CMD_MAX, or what a SUBSCRIBE may carry if more (a longer prefix
     * would be refused anyway: FERRY_OPT_SUB_MAX_BYTES). Under CURVE every
     * frame is a command (a MESSAGE) and the limits apply to what it holds. */
    p->dec.max_frame = st_frame_max(p, st_msg_max(p));
    p->dec.max_cmd =
        s->opt.sub_max_bytes + 16 > ST_CMD_MAX ? s->opt.sub_max_bytes + 16 : ST_CMD_MAX;
    if (p->zc != NULL) /* a MESSAGE may come in either kind of frame */
        p->dec.max_cmd = p->dec.max_frame > p->dec.max_cmd + ZC_MESSAGE_OVERHEAD
                             ? p->dec.max_frame
                             : p->dec.max_cmd + ZC_MESSAGE_OVERHEAD;
    uint64_t now = fy_now_mono_ns();
    p->last_rx = now;
    if (s->opt.heartbeat_ivl > 0) {
        p->next_ping = now + (uint64_t)s->opt.heartbeat_ivl * 1000000u;
        st_timer_at(t, p->next_ping);
    }
    if (p->d)
        p->d->backoff_ms = s->opt.reconnect_ms;
    if (p->lingering)
        p->state = C_LINGER; /* connected while closing: deliver, then FIN */
    while (p->subq) {        /* subscriptions made before the peer was known */
        struct st_subq *q = p->subq;
        p->subq = q->next;
        st_tx_subscription(p, q->cmd, q->data, q->len);
        free(q);
    }
    p->subq_tail = &p->subq;
    st_conn_flush(p);
    fy_sock_signal(s);
    return 0;
}

int st_conn_ready(struct st_pipe *p, const unsigned char *meta, size_t mlen)
{
    int rc = st_conn_peer_ok(p, meta, mlen);
    return rc != 0 ? rc : st_conn_join(p);
}

void st_conn_event(struct fy_io *io, uint32_t events)
{
    struct st_pipe *p = (struct st_pipe *)((char *)io - offsetof(struct st_pipe, io));
    ferry_socket *s = p->t->s;
    pthread_mutex_lock(&s->mtx);
    if (p->state == C_CONNECTING) {
        st_on_connected(p);
    } else if (p->state != C_CLOSED) {
        if (events & (FY_IO_IN | FY_IO_ERR | FY_IO_HUP))
            st_conn_read(p, events);
        if ((events & (FY_IO_OUT | FY_IO_ERR)) && p->fd >= 0)
            st_conn_flush(p);
    }
    pthread_mutex_unlock(&s->mtx);
}

/* A new pipe object; the caller links it (one reference, the transport's). */
struct st_pipe *st_pipe_new(struct st_tran *t)
{
    struct st_pipe *p = calloc(1, sizeof *p);
    if (p == NULL)
        return NULL;
    p->base.ops = &st_pipe_ops;
    p->base.sock = t->s;
    atomic_store(&p->base.refs, 1);
    p->t = t;
    p->fd = -1;
    p->subq_tail = &p->subq;
    zmtp_dec_init(&p->dec, &st_dec_ops, p, ST_CMD_MAX);
    return p;
}

int st_conn_timers(struct st_pipe *p, uint64_t now, uint64_t *next)
{
    ferry_socket *s = p->t->s;
    uint64_t ivl = (uint64_t)s->opt.heartbeat_ivl * 1000000u;
    uint64_t hb_to = (uint64_t)(s->opt.heartbeat_timeout >= 0 ? s->opt.heartbeat_timeout
                                                              : s->opt.heartbeat_ivl) *
                     1000000u;
    *next = UINT64_MAX;
    if (p->werr && p->fd >= 0 && p->state != C_CLOSED) {
        /* a write failed (st_conn_fail_later): read what the peer sent
         * before it went, then the connection ends */
        st_conn_read(p, FY_IO_IN);
        if (p->fd < 0 || p->state == C_CLOSED)
            return -1;
    }
    if (p->state == C_CONNECTING || p->state == C_HANDSHAKE) {
        if (now >= p->hs_deadline) {
            st_conn_broken(p, p->state == C_HANDSHAKE, FERRY_ETIMEDOUT, "%s timed out after %d ms",
                           p->state == C_HANDSHAKE ? "handshake" : "connect", s->opt.handshake_ms);
            return -1;
        }
        *next = p->hs_deadline;
    } else if (p->state == C_ACTIVE) {
        if (p->ping_sent && p->last_rx >= p->ping_sent)
            p->ping_sent = 0; /* anything heard counts as an answer */
        /* We are the one not reading (paused, or the input lent to a
         * receiver that has not come back to read it): the answers wait
         * unread in the kernel, they are not missing. A receiver parked
         * on it reads for itself, so its loan does not count. */
        if (p->rx_paused || (p->base.lent && !p->parked))
            p->ping_sent = 0, p->last_rx = now;
        if (p->ping_sent && now >= p->ping_sent + hb_to) {
            st_conn_broken(p, 0, FERRY_ETIMEDOUT, "heartbeat: no answer within %llu ms",
                           (unsigned long long)(hb_to / 1000000u));
            return -1;
        }
        if (p->ttl_ns && now >= p->last_rx + p->ttl_ns) {
            st_conn_broken(p, 0, FERRY_ETIMEDOUT, "heartbeat: silent past the peer's TTL");
            return -1;
        }
        if (ivl && now >= p->next_ping) {
            unsigned char ttl[2];
            uint64_t ds = (uint64_t)s->opt.heartbeat_ttl / 100;
            if (ds > 655)
                ds = 655; /* libzmq 4.3.4 overflows above 655 (docs/architecture.md) */
            ttl[0] = (unsigned char)(ds >> 8);
            ttl[1] = (unsigned char)ds;
            int was_empty = p->tx_off == p->tx_len;
            if (st_tx_command(p, "PING", ttl, 2) == 0 && was_empty)
                st_conn_flush(p);
            if (p->state != C_ACTIVE)
                return 0;
            if (!p->ping_sent)
                p->ping_sent = now;
            p->next_ping = now + ivl;
        }
        if (ivl)
            *next = min_nz(*next, p->next_ping);
        if (p->ping_sent)
            *next = min_nz(*next, p->ping_sent + hb_to);
        if (p->ttl_ns)
            *next = min_nz(*next, p->last_rx + p->ttl_ns);
    }
    if (p->lingering) {
        if (now >= p->linger_deadline) {
            linger_done(p);
            st_conn_broken(p, 0, FERRY_ECLOSED, "closed by this socket (linger time over)");
            return -1;
        }
        *next = min_nz(*next, p->linger_deadline);
    }
    return 0;
}
