/*
 * stream.c - the tcp:// and ipc:// transports of one socket: its state on
 * the socket's I/O thread (loop.h), the one timer that drives handshake
 * deadlines, heartbeats, redials, linger and the reaping of closed
 * connections, and close with linger. stream_int.h tells how the files of
 * the transport share the work.
 */
#include "stream_int.h"

#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static void on_timer(struct fy_timer *tm);

struct st_tran *st_tran_get(ferry_socket *s, int *err)
{
    /* mtx held */
    struct st_tran *t = s->stream_tran;
    if (t != NULL && !t->closing && !s->closing)
        return t;
    if (t != NULL || s->closing) {
        *err = FERRY_ECLOSED;
        return NULL;
    }
    struct fy_loop *loop = fy_sock_loop(s, err);
    if (loop == NULL)
        return NULL;
    t = calloc(1, sizeof *t);
    if (t == NULL) {
        *err = FERRY_ENOMEM;
        return NULL;
    }
    t->s = s;
    t->loop = loop;
    t->walk_at = 0;
    s->stream_tran = t;
    return t;
}

void st_timer_at(struct st_tran *t, uint64_t when)
{
    if (when == 0)
        return;
    if (when < t->walk_at)
        t->walk_at = when;
    fy_timer_set(t->loop, &t->timer, on_timer, when);
}

void st_poke(struct st_tran *t)
{
    t->walk_at = 0;
    fy_timer_set(t->loop, &t->timer, on_timer, 0);
}

void st_hold(struct st_pipe *p, uint64_t now)
{
    struct st_tran *t = p->t;
    p->tx_held = 1;
    p->held_since = now;
    t->s->out_owed = 1;
    if (!p->in_held) {
        if (t->nheld == t->cap_held) {
            size_t cap = t->cap_held ? t->cap_held * 2 : 8;
            struct st_pipe **v = realloc(t->held, cap * sizeof *v);
            if (v == NULL) { /* unlisted, the output cannot be held: write it */
                st_conn_flush(p);
                return;
            }
            t->held = v;
            t->cap_held = cap;
        }
        t->held[t->nheld++] = p;
        p->in_held = 1;
    }
    fy_timer_set(t->loop, &t->timer, on_timer, now + ST_FLUSH_NS);
}

/* Held output ST_FLUSH_NS old is written; the list keeps the pipes still
 * holding. The earliest of their deadlines, or UINT64_MAX. */
static uint64_t held_due(struct st_tran *t, uint64_t now)
{
    uint64_t next = UINT64_MAX;
    size_t k = 0;
    for (size_t i = 0; i < t->nheld; i++) {
        struct st_pipe *p = t->held[i];
        if (p->tx_held && p->state == C_ACTIVE && p->fd >= 0 && now >= p->held_since + ST_FLUSH_NS)
            st_conn_flush(p);
        if (p->tx_held && p->state == C_ACTIVE && p->fd >= 0) {
            t->held[k++] = p;
            next = next < p->held_since + ST_FLUSH_NS ? next : p->held_since + ST_FLUSH_NS;
        } else {
            p->in_held = 0;
        }
    }
    t->nheld = k;
    return next;
}

static uint64_t min_nz(uint64_t a, uint64_t b) { return b != 0 && b < a ? b : a; }

/* Every connection's deadlines, the dialers' redials, listeners paused for
 * want of descriptors, pipes the socket let go, and the grave; then the
 * timer is set for whatever is due next. */
static void on_timer(struct fy_timer *tm)
{
    struct st_tran *t = (struct st_tran *)((char *)tm - offsetof(struct st_tran, timer));
    ferry_socket *s = t->s;
    pthread_mutex_lock(&s->mtx);
    uint64_t now = fy_now_mono_ns(), next = UINT64_MAX;
    uint64_t held = held_due(t, now); /* before the grave below lets pipes go */
    if (now < t->walk_at) {           /* only held output was due */
        fy_timer_set(t->loop, &t->timer, on_timer, held < t->walk_at ? held : t->walk_at);
        pthread_mutex_unlock(&s->mtx);
        return;
    }
    t->walk_at = UINT64_MAX;
    if (t->any_failed) { /* found broken on a parked receiver's thread */
        t->any_failed = 0;
        for (struct st_pipe *p = t->conns, *nx; p; p = nx) {
            nx = p->next;
            if (p->rx_fail)
                st_conn_broken(p, p->rx_fail_bad, p->rx_fail, "%s", p->rx_fail_why);
        }
    }
    if (t->any_removed) {
        t->any_removed = 0;
        for (struct st_pipe *p = t->conns, *nx; p; p = nx) {
            nx = p->next;
            if (p->removed)
                st_conn_broken(p, 0, FERRY_ECLOSED, "released by the socket");
        }
    }
    for (struct st_pipe *p = t->conns, *nx; p; p = nx) {
        nx = p->next;
        uint64_t due;
        /* The timers first: a loan ended in this pass leaves its input
         * unread until the next, which the heartbeat check must know. */
        if (st_conn_timers(p, now, &due) == 0)
            next = min_nz(next, due);
        else
            continue;
        /* A receiver's loan (park.c) ends when it has not come back for
         * ST_LOAN_NS. One parked now ends it too (its interest stays off
         * while parked): its next unpark lends again and sets this timer,
         * so a socket parked for hours does not wake us every tick. */
        if (p->base.lent && (p->parked || now >= p->loan_at + ST_LOAN_NS)) {
            p->base.lent = 0;
            st_conn_interest(p);
        } else if (p->base.lent) {
            next = min_nz(next, p->loan_at + ST_LOAN_NS);
        }
    }
    for (struct st_dialer *d = t->dialers; d; d = d->next) {
        int wanted = d->pipe != NULL && (!t->closing || d->pipe->lingering);
        if (!wanted)
            d->retry_at = 0;
        if (d->retry_at && now >= d->retry_at)
            st_dialer_try(t, d, 1);
        if (d->retry_at)
            next = min_nz(next, d->retry_at);
    }
    for (struct st_listener *l = t->listeners; l; l = l->next) {
        if (l->paused_until && now >= l->paused_until) { /* a pause for want of fds is over */
            l->paused_until = 0;
            fy_io_mod(&l->io, FY_IO_IN);
        }
        if (l->paused_until)
            next = min_nz(next, l->paused_until);
    }
    /* Connections closed since the last run: nothing up any stack uses them
     * now (timers run between batches of events). */
    while (t->ngrave > 0)
        fy_pipe_unref(&t->grave[--t->ngrave]->base);
    if (next < t->walk_at) /* st_timer_at during the walk may have asked for earlier */
        t->walk_at = next;
    next = held < t->walk_at ? held : t->walk_at;
    if (next != UINT64_MAX)
        fy_timer_set(t->loop, &t->timer, on_timer, next);
    pthread_mutex_unlock(&s->mtx);
}

/* --- close: linger, then tear down ---------------------------------------------- */

/* On the I/O thread: listeners go; connections that carried messages
 * flush what is queued, send FIN, and wait for the peer's FIN, so that
 * close() finds no unread data and never turns into an RST that destroys
 * data the peer had not read yet. The others close now. */
static void close_begin(void *arg)
{
    struct st_tran *t = arg;
    ferry_socket *s = t->s;
    pthread_mutex_lock(&s->mtx);
    t->closing = 1;
    while (t->listeners) {
        struct st_listener *l = t->listeners;
        t->listeners = l->next;
        fy_io_del(&l->io);
        close(l->io.fd);
        struct stat st;
        if (l->unlink_path && stat(l->path, &st) == 0 && st.st_dev == l->dev && st.st_ino == l->ino)
            unlink(l->path);
        free(l);
    }
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
                st_conn_flush(p);
                st_conn_interest(p);
            }
        } else if (p->state != C_CLOSED) {
            st_conn_broken(p, 0, FERRY_ECLOSED, "socket closed");
        }
    }
    t->close_deadline = deadline;
    st_poke(t);
    pthread_mutex_unlock(&s->mtx);
}

/* On the I/O thread, once lingering is over: everything left goes. No
 * callback of the transport can run after this. */
static void teardown(void *arg)
{
    struct st_tran *t = arg;
    ferry_socket *s = t->s;
    pthread_mutex_lock(&s->mtx);
    fy_timer_stop(&t->timer);
    while (t->dialers) { /* first: their pipes may be freed just below */
        struct st_dialer *d = t->dialers;
        t->dialers = d->next;
        st_dialer_free(d);
    }
    while (t->conns) { /* what is left: close now (linger over, or none) */
        struct st_pipe *p = t->conns;
        t->conns = p->next;
        st_conn_close_fd(p);
        p->state = C_CLOSED;
        st_grave_add(t, p);
    }
    while (t->ngrave > 0)
        fy_pipe_unref(&t->grave[--t->ngrave]->base);
    /* pipes still in the socket (dead, draining) outlive us: they must not
     * give back to a pool that is about to go */
    for (size_t i = 0; i < s->npipes; i++)
        if (s->pipes[i]->ops == &st_pipe_ops)
            ((struct st_pipe *)s->pipes[i])->dying = 1;
    s->stream_tran = NULL;
    pthread_mutex_unlock(&s->mtx);
    free(t->grave);
    free(t->held);
    free(t->scratch);
    free(t);
}

static int linger_over(ferry_socket *s, void *arg, int check)
{
    FY_UNUSED(s);
    FY_UNUSED(check);
    return ((struct st_tran *)arg)->nlinger == 0;
}

/* ferry_close: linger (waiting on the socket's wake word for the I/O
 * thread to finish the lingering connections, or the deadline), then
 * tear down. */
static void stream_close_all(ferry_socket *s)
{
    pthread_mutex_lock(&s->mtx);
    struct st_tran *t = s->stream_tran;
    pthread_mutex_unlock(&s->mtx);
    if (t == NULL)
        return;
    fy_loop_run(t->loop, close_begin, t);
    fy_sock_wait(s, linger_over, t, t->close_deadline, 0);
    fy_loop_run(t->loop, teardown, t);
}

static int tcp_listen(ferry_socket *s, const char *rest) { return st_listen(s, rest, 0); }
static int ipc_listen(ferry_socket *s, const char *rest) { return st_listen(s, rest, 1); }
static int tcp_dial(ferry_socket *s, const char *rest) { return st_dial(s, rest, 0); }
static int ipc_dial(ferry_socket *s, const char *rest) { return st_dial(s, rest, 1); }

const struct fy_tran_ops fy_tcp_tran = {
    .scheme = "tcp",
    .secure = 1,
    .listen = tcp_listen,
    .dial = tcp_dial,
    .close_all = stream_close_all,
};

const struct fy_tran_ops fy_ipc_tran = {
    .scheme = "ipc",
    .secure = 1,
    .listen = ipc_listen,
    .dial = ipc_dial,
    .close_all = stream_close_all,
};
