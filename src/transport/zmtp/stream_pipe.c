/*
 * stream_pipe.c - the pipe ops of a tcp:// or ipc:// connection, called by
 * the socket with its mtx held (sock.h): encoding a message into the
 * output (or straight to the kernel), handing over received messages,
 * subscriptions, and letting go.
 */
#include "stream_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

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

/* A message has joined the output: write it now (direct: the output was
 * idle), leave it to the I/O thread (FY_IO_OUT: a short burst, written
 * many messages a call), or, in a stream, write a batch from this thread
 * and hold less back (stream_int.h). prev: when the send before this one
 * came (stream_gap has seen it). */
static void out_next(struct st_pipe *p, int direct, uint64_t prev, uint64_t now)
{
    const ferry_socket *s = p->t->s;
    int stream = now - p->stream_since >= ST_FLUSH_NS;
    uint64_t batch = ST_BATCH_BYTES;
    if (s->opt.sndhwm_bytes > 0 && s->opt.sndhwm_bytes / 2 < batch)
        batch = s->opt.sndhwm_bytes / 2;
    int full = p->tx_len - p->tx_off >= batch ||
               (s->opt.sndhwm > 0 && p->mk_n >= (size_t)s->opt.sndhwm / 2);
    /* held output goes with a send after a pause, or once it is old */
    int due = p->tx_held && (now - prev >= ST_BURST_NS || now - p->held_since >= ST_FLUSH_NS);
    if (direct || due || (stream && full)) {
        st_conn_flush(p);
        return;
    }
    if (p->tx_held)
        return; /* joins what is held */
    if (!stream || (p->events & FY_IO_OUT)) {
        st_conn_interest(p); /* the I/O thread writes (it already will, when OUT is armed) */
        return;
    }
    st_hold(p, now);
}

/* Whether a send at now is part of a burst: the one before it on this
 * connection came less than ST_BURST_NS before, or the message goes to
 * several connections (a PUB's). Were a fan-out judged by the gap alone,
 * the previous message's writes to the other connections would always
 * look like a pause, every message would go out in one system call per
 * subscriber from the sender's thread, and a stream to 4 subscribers
 * crawled at 25 µs a message. */
static int st_burst(const struct fy_txmsg *m, uint64_t prev, uint64_t now)
{
    return m->fanout || now - prev < ST_BURST_NS;
}

/* Every send: a pause as long as ST_FLUSH_NS ends a stream. */
static void stream_gap(struct st_pipe *p, uint64_t prev, uint64_t now)
{
    if (now - prev >= ST_FLUSH_NS)
        p->stream_since = now;
}

/* A full queue that holds output back for a batch writes it and looks
 * again: held output must not make a sender wait, or a PUB drop. */
static int tx_full_held(struct st_pipe *p)
{
    if (!st_tx_full(p))
        return 0;
    if (!p->tx_held)
        return 1;
    st_conn_flush(p);
    return st_tx_full(p);
}

/* A message on a CURVE session: each part sealed into our output (a
 * sealed frame cannot go from the caller's buffer to the kernel). */
static int st_send_sealed(struct st_pipe *p, const struct fy_txmsg *m)
{
    uint64_t need = m->nparts ? 0 : zc_wire_size(0);
    for (size_t i = 0; i < m->nparts; i++)
        need += zc_wire_size(m->parts[i].len);
    int was_empty = p->tx_off == p->tx_len;
    if (need > SIZE_MAX / 2 || st_mark_reserve(p) != 0 || st_tx_reserve(p, (size_t)need) != 0)
        return FERRY_ENOMEM;
    int rc = m->nparts ? 0 : st_tx_frame(p, 0, NULL, 0, NULL, 0);
    for (size_t i = 0; i < m->nparts && rc == 0; i++)
        rc = st_tx_frame(p, i + 1 < m->nparts ? ZMTP_MORE : 0, m->parts[i].data, m->parts[i].len,
                         NULL, 0);
    if (rc != 0) { /* the nonces are spent: the session cannot go on */
        st_conn_fail_later(p, EPROTO);
        return FERRY_ECONNRESET;
    }
    st_mark_push(p, p->tx_base + p->tx_len);
    uint64_t now = fy_now_mono_ns();
    uint64_t prev = p->last_write;
    int direct = p->state == C_ACTIVE && was_empty && !st_burst(m, prev, now);
    p->last_write = now;
    stream_gap(p, prev, now);
    p->base.woke = direct; /* as st_send: write now unless part of a burst */
    out_next(p, direct, prev, now);
    return 1;
}

static int st_send(struct fy_pipe *bp, const struct fy_txmsg *m)
{
    struct st_pipe *p = (struct st_pipe *)bp;
    ferry_socket *s = p->t->s;
    if (p->state == C_CLOSED || p->state == C_LINGER)
        return FERRY_ECONNRESET;
    if (tx_full_held(p))
        return 0;
    if (p->zc != NULL && p->state == C_ACTIVE)
        return st_send_sealed(p, m);
    struct st_frames f;
    frames_init(&f);
    int rc = 0;
    if (m->nparts == 0)
        rc |= frames_add(&f, 0, NULL, 0);
    for (size_t i = 0; i < m->nparts; i++)
        rc |= frames_add(&f, i + 1 < m->nparts ? ZMTP_MORE : 0, m->parts[i].data, m->parts[i].len);
    if (rc != 0 || st_mark_reserve(p) != 0) {
        frames_free(&f);
        return FERRY_ENOMEM;
    }
    frames_done(&f);
    int was_empty = p->tx_off == p->tx_len;
    uint64_t now = fy_now_mono_ns();
    uint64_t prev = p->last_write;
    /* a large message is a burst of its own: it goes at once */
    int direct =
        p->state == C_ACTIVE && was_empty && (f.len >= ST_DIRECT_MIN || !st_burst(m, prev, now));
    p->last_write = now;
    stream_gap(p, prev, now);
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
            st_conn_fail_later(p, errno);
    }
    if (st_tx_reserve(p, f.len - sent) != 0) {
        frames_free(&f);
        if (sent > 0) /* half a message is on the wire: the stream is lost */
            st_conn_fail_later(p, ENOMEM);
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
        st_tx_put(p, (const unsigned char *)f.iov[i].iov_base + skip, l - skip);
        skip = 0;
    }
    frames_free(&f);
    st_mark_push(p, p->tx_base + p->tx_len); /* room reserved above */
    if (p->state != C_ACTIVE)
        return 1;
    /* Write at once when the output was idle: a request or a reply leaves
     * with no thread switch. But a send that follows the last direct write
     * within ST_BURST_NS is part of a burst: leave it to the I/O thread,
     * which then writes everything queued meanwhile in one call (one
     * system call per message would cap a stream at a tenth of its rate),
     * or, once the burst is a stream, write batches from here (out_next). */
    bp->woke = direct; /* a write now, or a sendmsg above: a system call */
    if (tried)         /* the rest goes on FY_IO_OUT: the kernel is full now */
        st_conn_interest(p);
    else
        out_next(p, direct, prev, now);
    if (sent > 0 && st_marks_written(p))
        fy_sock_signal(s); /* room under the HWM: senders, and a poller's POLLOUT */
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
    if (r->parts == NULL) {
        fy_rxmsg_one(m, r->one);
    } else {
        memset(m, 0, sizeof *m);
        m->parts = r->parts;
        m->nparts = m->cap = r->nparts;
    }
    p->rx_bytes -= r->charge;
    st_pool_charge(p, 0);
    if (p->rx_paused && st_rx_low(p)) {
        p->rx_paused = 0;
        st_conn_interest(p);
    }
    return 1;
}

static int st_readable(struct fy_pipe *bp)
{
    struct st_pipe *p = (struct st_pipe *)bp;
    return p->rx_n > 0 || p->state == C_CLOSED;
}

/* A receiver takes the reading over (sock.h, park.c): only from a live
 * connection the I/O thread is not tearing down or pausing. */
static int st_park(struct fy_pipe *bp)
{
    struct st_pipe *p = (struct st_pipe *)bp;
    struct st_tran *t = p->t;
    if (p->state != C_ACTIVE || p->fd < 0 || p->rx_paused || p->rx_fail || p->werr || p->removed ||
        p->lingering || p->dying || p->parked || t->closing)
        return -1;
    if (t->scratch == NULL && (t->scratch = malloc(FY_LOOP_SCRATCH)) == NULL)
        return -1;
    p->parked = 1;
    st_conn_interest(p); /* the I/O thread stops waiting for input */
    return p->fd;
}

static void st_unpark(struct fy_pipe *bp, int readable, int keep)
{
    struct st_pipe *p = (struct st_pipe *)bp;
    if (!p->parked)
        return;
    p->parked = 0;
    if (p->dying) /* the transport is gone (its fd with it) */
        return;
    /* the fd polled may have been closed (the I/O thread wakes us first) */
    if (readable && p->fd >= 0 && p->state == C_ACTIVE) {
        if (keep) {
            p->loan_at = fy_now_mono_ns();
            if (!bp->lent) { /* the timer takes it back if we do not come back */
                bp->lent = 1;
                st_timer_at(p->t, p->loan_at + ST_LOAN_NS);
            }
        } else {
            bp->lent = 0;
        }
        st_conn_read(p, 0); /* gives the input back to the I/O thread, unless loaned */
    } else {
        bp->lent = 0;
        st_conn_interest(p);
    }
}

static void st_reclaim(struct fy_pipe *bp)
{
    struct st_pipe *p = (struct st_pipe *)bp;
    if (!bp->lent)
        return;
    bp->lent = 0;
    if (!p->dying)
        st_conn_interest(p);
}

/* The socket is about to wait, or ferry_flush, ferry_close: what was held
 * back for a batch goes now. */
static void st_flush(struct fy_pipe *bp)
{
    struct st_pipe *p = (struct st_pipe *)bp;
    if (p->tx_held)
        st_conn_flush(p);
}

static void st_release(struct fy_pipe *p, int64_t token)
{
    FY_UNUSED(p);
    FY_UNUSED(token);
}

/* tcp:// or ipc:// by the socket's family; a tcp peer's address:port. */
static void st_describe(struct fy_pipe *bp, const char **transport, char *addr, size_t len)
{
    struct st_pipe *p = (struct st_pipe *)bp;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (len)
        addr[0] = '\0';
    *transport = "tcp";
    if (p->fd < 0 || getsockname(p->fd, (struct sockaddr *)&ss, &sl) != 0)
        return;
    if (ss.ss_family == AF_UNIX) {
        *transport = "ipc";
        return;
    }
    struct st_addr a = {.len = sizeof a.ss};
    if (getpeername(p->fd, (struct sockaddr *)&a.ss, &a.len) == 0) {
        a.family = a.ss.ss_family;
        st_addr_url(&a, addr, len);
    }
}

static void st_depth(struct fy_pipe *bp, struct fy_depth *d)
{
    struct st_pipe *p = (struct st_pipe *)bp;
    d->out_msgs = p->mk_n;
    d->out_bytes = p->tx_len - p->tx_off;
    d->in_msgs = p->rx_n;
    d->ring_size = 0;
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
    int rc = st_tx_subscription(p, cmd, data, len);
    if (rc < 0)
        return rc;
    if (was_empty)
        st_conn_flush(p);
    return 1;
}

static int st_writable(struct fy_pipe *bp, size_t len)
{
    FY_UNUSED(len);
    struct st_pipe *p = (struct st_pipe *)bp;
    return p->state != C_CLOSED && !tx_full_held(p);
}

static void st_abort_tx(struct fy_pipe *p) { FY_UNUSED(p); }

static void st_close(struct fy_pipe *bp)
{
    struct st_pipe *p = (struct st_pipe *)bp;
    p->in_sock = 0; /* the socket let it go; the transport still owns its fd */
    /* nobody will read what is queued: give it back now, not at destroy
     * (which may come after the transport is gone) */
    for (size_t i = 0; i < p->rx_n; i++)
        st_rx_free(&p->rxq[(p->rx_first + i) % p->rx_cap]);
    p->rx_n = 0;
    p->rx_bytes = 0;
    st_pool_charge(p, 0);
    if (p->state != C_CLOSED && !p->t->closing) {
        /* Let go while its connection lives (the protocol dropped it after
         * an error): the I/O thread closes it, and a dialer redials. Not
         * here: the protocol is walking its pipes. */
        p->removed = 1;
        p->t->any_removed = 1;
        st_poke(p->t);
    }
}

static void st_destroy(struct fy_pipe *bp)
{
    struct st_pipe *p = (struct st_pipe *)bp;
    p->dying = 1; /* the transport may be freed: no pool to give back to */
    fy_pipe_fini(bp);
    if (p->fd >= 0)
        close(p->fd);
    zmtp_dec_fini(&p->dec);
    st_asm_clear(p);
    free(p->asm_parts);
    for (size_t i = 0; i < p->rx_n; i++)
        st_rx_free(&p->rxq[(p->rx_first + i) % p->rx_cap]);
    free(p->rxq);
    while (p->subq) {
        struct st_subq *q = p->subq;
        p->subq = q->next;
        free(q);
    }
    st_mech_end(p);
    free(p->tx);
    free(p->marks);
    free(p);
}

const struct fy_pipe_ops st_pipe_ops = {
    .send = st_send,
    .describe = st_describe,
    .depth = st_depth,
    .claim = st_claim,
    .commit = st_commit,
    .unclaim = st_unclaim,
    .recv = st_recv,
    .readable = st_readable,
    .release = st_release,
    .flush = st_flush,
    .park = st_park,
    .unpark = st_unpark,
    .reclaim = st_reclaim,
    .send_cmd = st_send_cmd,
    .writable = st_writable,
    .abort_tx = st_abort_tx,
    .close = st_close,
    .destroy = st_destroy,
};
