/*
 * shm.c - the shm:// transport: listeners, dialers and their redials, the
 * listener's side of the handshake (shm_int.h draws it; the dialer's side
 * is shm_dial.c, the messages shm_ctl.c), and the watch on each connection
 * that sees the peer's death. All of it runs on the socket's I/O thread
 * (loop.h) except ferry_listen and ferry_dial themselves.
 *
 * Everything a peer sends is checked before use: control messages (magic,
 * version, operation, sizes), the descriptors passed with them (shm_fd.c:
 * the connection memfd must be a tmpfs memfd sealed against shrinking, seals
 * read before the size, with exactly the agreed size, so the peer cannot
 * make our mapping fault; the wake block likewise; the wake-up fd must be a
 * datagram socket), and the peer's uid and pid (SO_PEERCRED). A refused
 * peer is told why in a REFUSE message.
 *
 * Lock order: the transport lock `lk`, then the socket's `mtx`. The
 * transport's state is freed on the I/O thread (shm_close_all hands it a
 * task), so a callback never meets it half gone.
 */
#include "shm_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/un.h>
#include <unistd.h>

/* A listener out of descriptors stops listening this long rather than spin
 * on a level-triggered event (the stream listener does the same). */
#define SHM_ACCEPT_PAUSE_NS 100000000u
/* Connections taken per listener event, so a crowd of dialers cannot hold
 * the I/O thread: the rest are reported again. */
#define SHM_ACCEPT_BATCH 64
/* How often the pollable fd's watchdog runs while peers share our wake
 * block (fy_sock_fd_watchdog). */
#define SHM_WATCHDOG_NS 1000000000u

struct shm_listener {
    struct fy_io io;
    struct shm_tran *t;
    uint64_t paused_until; /* monotonic ns; 0: listening */
    char name[FERRY_NAME_MAX + 1];
    struct shm_listener *next;
};

/* An accepted connection whose HELLO has not come yet. */
struct shm_pending {
    struct fy_io io;
    struct shm_tran *t;
    const struct shm_listener *l; /* the listener that took it (freed after it) */
    int fd_taken;                 /* the pipe made from it owns the fd */
    struct shm_pool *pool;        /* the pool our WELCOME offered (the transport's) */
    uid_t uid;
    pid_t pid;
    uint64_t deadline;
    struct shm_pending *next;
};

struct shm_dialer {
    struct shm_tran *t;
    char name[FERRY_NAME_MAX + 1];
    int connected;
    int backoff_ms;
    uint64_t next_try; /* monotonic ns; 0: not scheduled */
    /* a redial's handshake in progress: hs_step 1 awaits WELCOME, 2 ACK */
    struct shm_pipe *hs;
    int hs_step;
    uint64_t hs_deadline;
    struct fy_io hs_io;
    struct shm_dialer *next;
};

struct shm_tran {
    ferry_socket *s;
    pthread_mutex_t lk;
    struct fy_loop *loop;
    struct fy_timer timer; /* deadlines, redials, paused listeners, the watchdog */
    struct shm_listener *listeners;
    struct shm_pending *pendings;
    struct shm_dialer *dialers;
    struct shm_pipe **watched;
    size_t nwatched, cap_watched;
    struct shm_pool *pool; /* the broadcast pool, once a connection needed it (s->mtx) */
    int pool_failed;       /* making it failed (an old kernel): copies from then on */
    uint64_t pop_credit;   /* bytes the listener may still populate (populate_allowed) */
    uint64_t pop_at;       /* when the credit was last topped up; 0: never */
};

static void on_timer(struct fy_timer *tm);

/* What a listener populates for its dialers (FERRY_OPT_RING_PREFAULT).
 * The dialer chooses its ring's size and a connection costs it a memfd,
 * while populating costs the listener's I/O thread about 9 us a page on a
 * VM and commits the memory at once. So a listener populates a ring only
 * if it is no larger than its own FERRY_OPT_RING_SIZE, and the rings it
 * writes (whose pages it allocates) at most SHM_POP_BURST bytes at once
 * and SHM_POP_RATE bytes a second on average: dialers connecting in a loop
 * get lazy rings beyond that, and the I/O thread spends at most about a
 * seventh of its time populating. (The ring it reads is populated only
 * when the dialer already made every page of it: no allocation of ours.) */
#define SHM_POP_BURST (64u << 20)
#define SHM_POP_RATE 16u /* bytes a microsecond: about 15 MiB a second */

static int populate_allowed(struct shm_tran *t, uint64_t cap, uint64_t bytes)
{
    if (cap > t->s->opt.ring_size)
        return 0;
    uint64_t now = fy_now_mono_ns();
    if (t->pop_at == 0) {
        t->pop_credit = SHM_POP_BURST;
    } else {
        uint64_t us = (now - t->pop_at) / 1000u;
        uint64_t add = us > 10000000u ? SHM_POP_BURST : us * SHM_POP_RATE; /* no overflow */
        t->pop_credit = t->pop_credit + add > SHM_POP_BURST ? SHM_POP_BURST : t->pop_credit + add;
    }
    t->pop_at = now;
    if (bytes > t->pop_credit)
        return 0;
    t->pop_credit -= bytes;
    return 1;
}

struct shm_pool *shm_tran_pool(ferry_socket *s)
{
    if (!s->proto->wire || !s->proto->wire->fanout)
        return NULL;
    pthread_mutex_lock(&s->mtx);
    struct shm_tran *t = s->shm_tran;
    struct shm_pool *pl = NULL;
    if (t != NULL) {
        if (t->pool == NULL && s->opt.shm_pool > 0 && !t->pool_failed) {
            t->pool = shm_pool_new(s->opt.shm_pool);
            t->pool_failed = t->pool == NULL; /* copies, as without one; not tried again */
        }
        pl = t->pool;
    }
    pthread_mutex_unlock(&s->mtx);
    return pl;
}

int shm_pool_offer(ferry_socket *s, struct shm_pipe *sp, struct shm_ctl *c, int *fds, int *nfds,
                   struct shm_pool **offered)
{
    struct shm_pool *pl = shm_tran_pool(s);
    c->pool_size = 0;
    *offered = pl;
    if (pl == NULL)
        return 0;
    if (sp != NULL && shm_pool_link(pl, &sp->pool, &sp->w) != 0)
        return fy_err(FERRY_ENOMEM, "shm pool: out of memory");
    c->pool_size = pl->size;
    fds[(*nfds)++] = pl->fd;
    return 0;
}

int shm_pool_accept(struct shm_pipe *sp, const struct shm_ctl *c, int fd)
{
    if (c->pool_size == 0)
        return 0;
    sp->rx_pool = shm_pool_map_peer(fd, c->pool_size);
    if (sp->rx_pool == NULL)
        return FERRY_EPROTO;
    sp->rx_pool_len = c->pool_size;
    return 0;
}

/* --- the transport state of a socket ----------------------------------------- */

static struct shm_tran *tran_get(ferry_socket *s, int *err)
{
    pthread_mutex_lock(&s->mtx);
    struct shm_tran *t = s->shm_tran;
    struct fy_loop *loop = NULL;
    if (t == NULL && !s->closing && (loop = fy_sock_loop(s, err)) != NULL) {
        t = calloc(1, sizeof *t);
        if (t != NULL) {
            t->s = s;
            t->loop = loop;
            pthread_mutex_init(&t->lk, NULL);
            s->shm_tran = t;
        } else {
            *err = FERRY_ENOMEM;
        }
    } else if (t == NULL && s->closing) {
        *err = FERRY_ECLOSED;
    }
    pthread_mutex_unlock(&s->mtx);
    return t;
}

/* Runs the timer no later than when (lk held). */
static void timer_at(struct shm_tran *t, uint64_t when)
{
    fy_timer_set(t->loop, &t->timer, on_timer, when);
}

static void on_pipe_event(struct fy_io *io, uint32_t events);

/* Hands a connected pipe to the socket and the I/O thread (lk held). */
static int tran_adopt(struct shm_tran *t, struct shm_pipe *sp)
{
    if (t->nwatched == t->cap_watched) {
        size_t cap = t->cap_watched ? t->cap_watched * 2 : 8;
        struct shm_pipe **v = realloc(t->watched, cap * sizeof *v);
        if (v == NULL)
            return FERRY_ENOMEM;
        t->watched = v;
        t->cap_watched = cap;
    }
    int rc = fy_sock_add_pipe(t->s, &sp->base);
    if (rc != 0)
        return rc;
    sp->t = t;
    if (fy_io_add(t->loop, &sp->io, sp->ctl_fd, on_pipe_event, FY_IO_IN | FY_IO_RDHUP) != 0) {
        fy_sock_pipe_dead(t->s, &sp->base, FERRY_ENOMEM, "epoll: out of memory");
        return FERRY_ENOMEM;
    }
    t->watched[t->nwatched++] = sp; /* the creator's reference moves here */
    if (t->nwatched == 1)
        timer_at(t, fy_now_mono_ns() + SHM_WATCHDOG_NS);
    return 0;
}

/* --- the watch on each connection ---------------------------------------------- */

static void dialer_schedule(struct shm_tran *t, struct shm_dialer *d, int err, const char *why);

static void watch_drop(struct shm_tran *t, struct shm_pipe *sp)
{
    fy_io_del(&sp->io);
    for (size_t i = 0; i < t->nwatched; i++) {
        if (t->watched[i] == sp) {
            t->watched[i] = t->watched[--t->nwatched];
            fy_pipe_unref(&sp->base);
            return;
        }
    }
}

static void on_pipe_event(struct fy_io *io, uint32_t events)
{
    FY_UNUSED(events);
    struct shm_pipe *sp = (struct shm_pipe *)((char *)io - offsetof(struct shm_pipe, io));
    struct shm_tran *t = sp->t;
    pthread_mutex_lock(&t->lk);
    /* Nothing is sent on the control socket after the handshake: any event
     * is EOF, a hang-up, or a protocol violation. All end the pipe. */
    static const char why[] = "the peer closed the connection, or its process ended";
    fy_sock_pipe_dead(t->s, &sp->base, FERRY_ECONNRESET, why);
    if (sp->dialer)
        dialer_schedule(t, sp->dialer, FERRY_ECONNRESET, why);
    watch_drop(t, sp);
    pthread_mutex_unlock(&t->lk);
}

/* --- dialing ----------------------------------------------------------------- */

static struct shm_dialer *dialer_add(struct shm_tran *t, const char *name)
{
    struct shm_dialer *d = calloc(1, sizeof *d);
    if (d == NULL)
        return NULL;
    d->t = t;
    snprintf(d->name, sizeof d->name, "%s", name);
    d->backoff_ms = t->s->opt.reconnect_ms;
    d->next = t->dialers;
    t->dialers = d;
    return d;
}

/* The next attempt after the backoff, which doubles up to the maximum; err
 * and why: what ended the last one (lk held). */
static void dialer_schedule(struct shm_tran *t, struct shm_dialer *d, int err, const char *why)
{
    char url[FERRY_NAME_MAX + 8];
    snprintf(url, sizeof url, "shm://%s", d->name);
    fy_ev_report(t->s, FERRY_EVENT_CONNECT_RETRIED, err, d->backoff_ms, url, NULL, NULL, "%s",
                 why && why[0] ? why : ferry_strerror(err));
    d->connected = 0;
    d->next_try = fy_now_mono_ns() + (uint64_t)d->backoff_ms * 1000000u;
    int max = t->s->opt.reconnect_max_ms;
    d->backoff_ms = d->backoff_ms * 2 > max ? max : d->backoff_ms * 2;
    timer_at(t, d->next_try);
}

/* A redial's handshake failed with rc (its detail in fy_err). */
static void hs_abort(struct shm_tran *t, struct shm_dialer *d, int rc)
{
    shm_dial_failed(t->s, d->hs, rc);
    fy_io_del(&d->hs_io);
    d->hs->base.ops->destroy(&d->hs->base);
    d->hs = NULL;
    d->hs_step = 0;
    dialer_schedule(t, d, rc, ferry_errdetail());
}

/* A redial's handshake moves on when the listener answers (lk taken). */
static void on_dial_io(struct fy_io *io, uint32_t events)
{
    FY_UNUSED(events);
    struct shm_dialer *d = (struct shm_dialer *)((char *)io - offsetof(struct shm_dialer, hs_io));
    struct shm_tran *t = d->t;
    pthread_mutex_lock(&t->lk);
    int rc = d->hs_step == 1 ? shm_dial_welcome(t->s, d->name, d->hs)
                             : shm_dial_ack(t->s, d->name, d->hs);
    if (rc == 0 && d->hs_step == 1) {
        d->hs_step = 2;
    } else if (rc == 0) {
        struct shm_pipe *sp = d->hs;
        fy_io_del(&d->hs_io);
        d->hs = NULL;
        d->hs_step = 0;
        sp->dialer = d;
        if ((rc = tran_adopt(t, sp)) == 0) {
            d->connected = 1;
            d->backoff_ms = t->s->opt.reconnect_ms;
        } else {
            fy_pipe_unref(&sp->base);
            dialer_schedule(t, d, rc, "refused by our own socket");
        }
    } else if (rc != -EAGAIN) {
        hs_abort(t, d, rc);
    }
    pthread_mutex_unlock(&t->lk);
}

/* Starts the redials that are due and gives up handshakes past their
 * deadline; the earliest time something is due next (lk held). */
static uint64_t run_dialers(struct shm_tran *t, uint64_t now)
{
    uint64_t next = UINT64_MAX;
    for (struct shm_dialer *d = t->dialers; d; d = d->next) {
        if (d->hs != NULL && now >= d->hs_deadline) {
            fy_err(FERRY_ETIMEDOUT, "shm://%s: handshake: the listener did not answer", d->name);
            hs_abort(t, d, FERRY_ETIMEDOUT); /* a listener that accepts but never answers */
        }
        if (!d->connected && d->hs == NULL && d->next_try != 0 && d->next_try <= now) {
            d->next_try = 0;
            fy_stat_inc(&t->s->stat->reconnects);
            struct shm_pipe *sp = NULL;
            int rc = shm_dial_start(t->s, d->name, &sp);
            if (rc != 0) {
                dialer_schedule(t, d, rc, ferry_errdetail());
            } else if (fy_io_add(t->loop, &d->hs_io, sp->ctl_fd, on_dial_io,
                                 FY_IO_IN | FY_IO_RDHUP) != 0) {
                sp->base.ops->destroy(&sp->base);
                dialer_schedule(t, d, FERRY_ENOMEM, "epoll: out of memory");
            } else {
                d->hs = sp;
                d->hs_step = 1;
                d->hs_deadline = now + (uint64_t)t->s->opt.handshake_ms * 1000000u;
            }
        }
        if (d->hs != NULL && d->hs_deadline < next)
            next = d->hs_deadline;
        if (!d->connected && d->hs == NULL && d->next_try != 0 && d->next_try < next)
            next = d->next_try;
    }
    return next;
}

static int shm_dial(ferry_socket *s, const char *name)
{
    int rc = ferry_name_check(name);
    if (rc != 0)
        return fy_err(FERRY_EBADURL, "shm://%.200s: bad name", name);
    struct shm_tran *t = tran_get(s, &rc);
    if (t == NULL)
        return rc;
    struct shm_pipe *sp = NULL;
    rc = shm_dial_connect(s, name, &sp);
    if (rc != 0 && rc != FERRY_ECONNREFUSED)
        return rc; /* permanent: wrong type, refused uid, bad peer */
    pthread_mutex_lock(&t->lk);
    struct shm_dialer *d = dialer_add(t, name);
    if (d == NULL) {
        pthread_mutex_unlock(&t->lk);
        if (sp)
            sp->base.ops->destroy(&sp->base);
        return FERRY_ENOMEM;
    }
    if (sp != NULL) {
        sp->dialer = d;
        rc = tran_adopt(t, sp);
        if (rc != 0) {
            fy_pipe_unref(&sp->base);
            pthread_mutex_unlock(&t->lk);
            return fy_err(rc, "shm://%s: connected, but the socket refused the pipe", name);
        }
        d->connected = 1;
    } else {
        dialer_schedule(t, d, rc, ferry_errdetail()); /* nobody listens yet: keep trying */
    }
    pthread_mutex_unlock(&t->lk);
    fy_err_clear();
    return 0;
}

/* --- listening ----------------------------------------------------------------- */

static void on_accept(struct fy_io *io, uint32_t events);

static int shm_listen(ferry_socket *s, const char *name)
{
    int rc = ferry_name_check(name);
    if (rc != 0)
        return fy_err(FERRY_EBADURL, "shm://%.200s: bad name", name);
    struct shm_tran *t = tran_get(s, &rc);
    if (t == NULL)
        return rc;
    struct shm_listener *l = calloc(1, sizeof *l);
    if (l == NULL)
        return FERRY_ENOMEM;
    l->t = t;
    snprintf(l->name, sizeof l->name, "%s", name);
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    struct sockaddr_un sa;
    socklen_t sl = shm_addr(&sa, name);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sl) != 0 || listen(fd, 128) != 0) {
        rc = -errno;
        if (rc == FERRY_EADDRINUSE)
            fy_err(rc, "shm://%s: a live socket already listens there", name);
        else
            fy_err(rc, "shm://%s: listen", name);
        if (fd >= 0)
            close(fd);
        free(l);
        return rc;
    }
    pthread_mutex_lock(&t->lk);
    char url[FERRY_NAME_MAX + 8];
    snprintf(url, sizeof url, "shm://%s", name);
    /* before the first connection can be taken and reported */
    fy_ev_report(s, FERRY_EVENT_LISTENING, 0, 0, url, NULL, NULL, NULL);
    rc = fy_io_add(t->loop, &l->io, fd, on_accept, FY_IO_IN);
    if (rc == 0) {
        l->next = t->listeners;
        t->listeners = l;
    }
    pthread_mutex_unlock(&t->lk);
    if (rc != 0) {
        close(fd);
        free(l);
        return fy_err(rc, "shm://%s: epoll", name);
    }
    pthread_mutex_lock(&s->mtx);
    snprintf(s->endpoint, sizeof s->endpoint, "shm://%s", name); /* ferry_socket_addr */
    pthread_mutex_unlock(&s->mtx);
    return 0;
}

/* Listeners paused for want of descriptors listen again once their pause
 * is over; the earliest pause still running (lk held). */
static uint64_t listeners_resume(struct shm_tran *t, uint64_t now)
{
    uint64_t next = UINT64_MAX;
    for (struct shm_listener *l = t->listeners; l; l = l->next) {
        if (l->paused_until && now >= l->paused_until) {
            l->paused_until = 0;
            fy_io_mod(&l->io, FY_IO_IN);
        }
        if (l->paused_until && l->paused_until < next)
            next = l->paused_until;
    }
    return next;
}

static void on_pending(struct fy_io *io, uint32_t events);

/* A connection the listener took, reported once its first message says
 * it is a dialer (a `ferry ls` probe is not reported) or it fails:
 * ACCEPTED, and with err its HANDSHAKE_FAILED (the reason from fy_err). */
static void accepted_report(ferry_socket *s, const struct shm_listener *l, pid_t pid, uid_t uid,
                            int accepted, int err)
{
    char url[FERRY_NAME_MAX + 8];
    snprintf(url, sizeof url, "shm://%s", l->name);
    struct fy_ev_peer peer = {.pid = pid, .uid = uid, .addr = NULL};
    if (accepted)
        fy_ev_report(s, FERRY_EVENT_ACCEPTED, 0, 0, url, NULL, &peer, NULL);
    if (err != 0) {
        const char *why = ferry_errdetail();
        fy_ev_report(s, FERRY_EVENT_HANDSHAKE_FAILED, err, 0, url, NULL, &peer, "%s",
                     why[0] ? why : ferry_strerror(err));
    }
}

/* The socket's limits on what dialers can make it hold, as on tcp:// and
 * ipc://: FERRY_OPT_MAX_CONNECTIONS accepted connections, FERRY_OPT_BACKLOG
 * handshakes in progress. Past either, the dialer is told why and keeps
 * retrying (FERRY_ECONNREFUSED), and the refusal is counted in
 * FERRY_OPT_REFUSED. 1 if refused (fd closed). lk held. */
static int over_limits(struct shm_tran *t, const struct shm_listener *l, int fd,
                       const struct ucred *cr)
{
    ferry_socket *s = t->s;
    int conns = 0, shaking = 0;
    for (size_t i = 0; i < t->nwatched; i++)
        conns += t->watched[i]->side == 1;
    for (struct shm_pending *p = t->pendings; p; p = p->next)
        shaking++;
    char why[96];
    if (conns >= s->opt.max_conns)
        snprintf(why, sizeof why, "too many connections (%d, FERRY_OPT_MAX_CONNECTIONS)", conns);
    else if (shaking >= s->opt.backlog)
        snprintf(why, sizeof why, "too many handshakes in progress (%d, FERRY_OPT_BACKLOG)",
                 shaking);
    else
        return 0;
    char line[160];
    snprintf(line, sizeof line, "accepted connection refused: %s", why);
    pthread_mutex_lock(&s->mtx); /* counted before the dialer can hear of it */
    fy_stat_inc(&s->stat->refused);
    fy_sock_note(s, 0, line);
    pthread_mutex_unlock(&s->mtx);
    shm_refuse(fd, s, FERRY_ECONNREFUSED, "%s", why);
    accepted_report(s, l, cr->pid, cr->uid, 1, FERRY_ECONNREFUSED);
    close(fd);
    return 1;
}

/* One accepted connection: its uid, then WELCOME with our wake block and a
 * wake-up sender of its own, then it waits for HELLO. 0, or < 0 when the
 * listener must pause (out of descriptors). lk held. */
static int accept_one(struct shm_tran *t, struct shm_listener *l)
{
    ferry_socket *s = t->s;
    int fd = accept4(l->io.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return errno == ECONNABORTED || errno == EINTR ? 0 : -errno;
    struct ucred cr;
    socklen_t cl = sizeof cr;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl) != 0) {
        close(fd);
        return 0;
    }
    if (!fy_uid_allowed(s, cr.uid)) {
        shm_refuse(fd, s, FERRY_EACCES,
                   "uid %u may not connect (allowed: %lld and root; see FERRY_OPT_PEER_UID)",
                   (unsigned)cr.uid, (long long)s->opt.peer_uid);
        accepted_report(s, l, cr.pid, cr.uid, 1, FERRY_EACCES);
        close(fd);
        return 0;
    }
    if (over_limits(t, l, fd, &cr))
        return 0;
    struct shm_ctl c;
    shm_ctl_init(&c, SHM_OP_WELCOME, s);
    int efd = fy_sock_event_sender(s);
    int out_fds[3] = {s->wake_fd, efd}, nout = 2;
    struct shm_pool *offered = NULL;
    shm_pool_offer(s, NULL, &c, out_fds, &nout, &offered); /* linked once the pipe exists */
    struct shm_pending *pd = calloc(1, sizeof *pd);
    if (pd == NULL || efd < 0 || shm_ctl_send(fd, &c, out_fds, nout) != 0 ||
        fy_io_add(t->loop, &pd->io, fd, on_pending, FY_IO_IN | FY_IO_RDHUP) != 0) {
        if (efd >= 0)
            close(efd);
        free(pd);
        close(fd);
        return 0;
    }
    close(efd); /* the peer's now */
    pd->t = t;
    pd->pool = offered;
    pd->l = l;
    pd->uid = cr.uid;
    pd->pid = cr.pid;
    pd->deadline = fy_deadline_ns(s->opt.handshake_ms);
    pd->next = t->pendings;
    t->pendings = pd;
    timer_at(t, pd->deadline);
    return 0;
}

static void on_accept(struct fy_io *io, uint32_t events)
{
    FY_UNUSED(events);
    struct shm_listener *l = (struct shm_listener *)io;
    struct shm_tran *t = l->t;
    pthread_mutex_lock(&t->lk);
    for (int i = 0; i < SHM_ACCEPT_BATCH; i++) {
        int rc = accept_one(t, l);
        if (rc == -EMFILE || rc == -ENFILE || rc == -ENOMEM || rc == -ENOBUFS) {
            /* the connection stays in the backlog; the event would be
             * reported again at once, for as long as we are short */
            l->paused_until = fy_now_mono_ns() + SHM_ACCEPT_PAUSE_NS;
            fy_io_mod(&l->io, 0);
            timer_at(t, l->paused_until);
        }
        if (rc < 0)
            break; /* EAGAIN, or paused */
    }
    pthread_mutex_unlock(&t->lk);
}

static void stat_reply(struct shm_tran *t, int fd)
{
    ferry_socket *s = t->s;
    struct shm_ctl c;
    shm_ctl_init(&c, SHM_OP_STAT_REP, s);
    c.uid = (uint32_t)getuid();
    pthread_mutex_lock(&s->mtx);
    for (size_t i = 0; i < s->npipes && c.npeers < SHM_STAT_PEERS; i++) {
        struct fy_pipe *p = s->pipes[i];
        if (p->ops != &fy_shm_pipe_ops || p->dead)
            continue;
        struct shm_pipe *sp = (struct shm_pipe *)p;
        c.peers[c.npeers].pid = p->peer_pid;
        c.peers[c.npeers].rx_fill = fy_ring_fill_bytes(sp->r.sh);
        c.peers[c.npeers].tx_fill = fy_ring_fill_bytes(sp->w.sh);
        c.peers[c.npeers].ring_cap = sp->w.cap;
        c.npeers++;
    }
    pthread_mutex_unlock(&s->mtx);
    shm_ctl_send(fd, &c, NULL, 0);
}

/* The dialer's HELLO: validate it and everything that came with it. */
static int on_hello(struct shm_tran *t, struct shm_pending *pd, struct shm_ctl *c, int *fds,
                    int nfds)
{
    ferry_socket *s = t->s;
    int fd = pd->io.fd;
    if (!fy_types_compatible(s->proto->type, c->type)) {
        shm_refuse(fd, s, FERRY_EPEERTYPE, "a %s socket cannot talk to a %s socket", s->proto->name,
                   fy_type_name(c->type));
        return FERRY_EPEERTYPE;
    }
    if (s->proto->accept) {
        pthread_mutex_lock(&s->mtx);
        int arc = s->proto->accept(s);
        pthread_mutex_unlock(&s->mtx);
        if (arc != 0) {
            shm_refuse(fd, s, arc, "%s", ferry_errdetail());
            return arc;
        }
    }
    uint64_t cap = c->ring_size;
    if (nfds != 3 + (c->pool_size != 0) || cap < FY_RING_MIN || cap > FY_RING_MAX || (cap & 63u) ||
        c->rid_len > FY_RID_MAX) {
        shm_refuse(fd, s, FERRY_EPROTO, "bad hello");
        return FERRY_EPROTO;
    }
    struct shm_pipe *sp = shm_pipe_new();
    if (sp == NULL)
        return fy_err(FERRY_ENOMEM, "out of memory");
    sp->map_len = SHM_CONN_HDR + 2 * fy_ring_bytes(cap);
    int rc = fy_shm_check_memfd(fds[0], sp->map_len);
    if (rc == 0) {
        sp->map = mmap(NULL, sp->map_len, PROT_READ | PROT_WRITE, MAP_SHARED, fds[0], 0);
        if (sp->map == MAP_FAILED) {
            sp->map = NULL;
            rc = FERRY_ENOMEM;
        }
    }
    if (rc == 0) {
        const struct shm_conn_hdr *h = sp->map;
        if (memcmp(h->magic, "FERRYCON", 8) != 0 || h->version != 1 || h->ring_cap != cap)
            rc = FERRY_EPROTO;
    }
    if (rc == 0 && (sp->peer_wake = shm_map_wake(fds[1])) == NULL)
        rc = FERRY_EPROTO;
    if (rc == 0 && fy_shm_check_event_sock(fds[2]) != 0)
        rc = FERRY_EPROTO;
    if (rc == 0 && nfds == 4)
        rc = shm_pool_accept(sp, c, fds[3]);
    if (rc == 0 && pd->pool != NULL && shm_pool_link(pd->pool, &sp->pool, &sp->w) != 0)
        rc = FERRY_ENOMEM;
    /* Once all is checked, our page tables, before the first message: the
     * ring we write (we would touch all of it on its first lap), and the
     * one we read only if the dialer made all of its pages (else it stays
     * lazy: a dialer cannot make us allocate its side); within the budget
     * above. */
    if (rc == 0 && s->opt.ring_prefault && populate_allowed(t, cap, fy_ring_bytes(cap))) {
        shm_populate((char *)sp->map + SHM_CONN_HDR + fy_ring_bytes(cap), fy_ring_bytes(cap), 0);
        shm_populate((char *)sp->map + SHM_CONN_HDR, fy_ring_bytes(cap), 1);
    }
    if (rc != 0) {
        shm_refuse(fd, s, rc, "bad connection memory or descriptors");
        sp->base.ops->destroy(&sp->base);
        return rc;
    }
    sp->peer_efd = fds[2];
    fds[2] = -1;
    fy_pipe_set_url(&sp->base, "shm://%s", pd->l->name);
    sp->base.peer_pid = pd->pid;
    sp->base.peer_uid = pd->uid;
    shm_ctl_peer_rid(c, &sp->base); /* its length was checked above */
    shm_pipe_rings(sp, s, cap, 0, c->maxmsgsize, c->rcvhwm, c->sndhwm);
    sp->ctl_fd = fd;
    pd->fd_taken = 1; /* the pipe owns the control socket now */
    /* Join the socket before the ACK: once the dialer has it, it may send
     * at once, and its message must find the pipe in place. */
    rc = tran_adopt(t, sp);
    if (rc != 0) {
        shm_refuse(fd, s, rc, "%s", ferry_errdetail());
        fy_pipe_unref(&sp->base);
        return rc;
    }
    struct shm_ctl ack;
    shm_ctl_init(&ack, SHM_OP_ACK, s);
    if (shm_ctl_send(fd, &ack, NULL, 0) != 0)
        shutdown(fd, SHUT_RDWR); /* the dialer is gone: the watch sees it */
    return 0;
}

static void pending_free(struct shm_tran *t, struct shm_pending *pd)
{
    for (struct shm_pending **pp = &t->pendings; *pp; pp = &(*pp)->next) {
        if (*pp == pd) {
            *pp = pd->next;
            break;
        }
    }
    fy_io_del(&pd->io);
    if (!pd->fd_taken)
        close(pd->io.fd);
    free(pd);
}

static void on_pending(struct fy_io *io, uint32_t events)
{
    FY_UNUSED(events);
    struct shm_pending *pd = (struct shm_pending *)io;
    struct shm_tran *t = pd->t;
    pthread_mutex_lock(&t->lk);
    struct shm_ctl c;
    int fds[4], nfds;
    int rc = shm_ctl_recv(pd->io.fd, &c, fds, &nfds);
    if (rc == -EAGAIN) {
        pthread_mutex_unlock(&t->lk);
        return;
    }
    int got = rc == 0; /* fds[0..nfds) are ours to close */
    if (rc == FERRY_EVERSION) {
        char why[160];
        snprintf(why, sizeof why,
                 "shm: a peer (pid %d) speaks shm handshake version %u, this ferry version %d: "
                 "refused",
                 (int)pd->pid, (unsigned)c.version, SHM_CTL_VERSION);
        pthread_mutex_lock(&t->s->mtx);
        fy_sock_note(t->s, 0, why);
        pthread_mutex_unlock(&t->s->mtx);
        shm_refuse(pd->io.fd, t->s, FERRY_EVERSION, "%s", why + 5);
    } else if (rc != 0) {
        fy_err(rc, "handshake: %s", rc == FERRY_ECONNRESET ? "the dialer hung up" : "garbage");
    }
    if (rc == 0 && c.op == SHM_OP_STAT_REQ) {
        stat_reply(t, pd->io.fd); /* `ferry ls`: not a peer, not reported */
    } else if (rc == 0 && c.op == SHM_OP_HELLO) {
        accepted_report(t->s, pd->l, pd->pid, pd->uid, 1, 0);
        fy_io_del(&pd->io); /* the pipe's watch takes the fd over */
        rc = on_hello(t, pd, &c, fds, nfds);
        accepted_report(t->s, pd->l, pd->pid, pd->uid, 0, rc);
    } else if (rc == 0 && c.op == SHM_OP_REFUSE) { /* the dialer did not like our WELCOME */
        c.text[sizeof c.text - 1] = '\0';
        rc = c.err == FERRY_EPEERTYPE || c.err == FERRY_EPROTO || c.err == FERRY_EACCES
                 ? c.err
                 : FERRY_ECONNREFUSED; /* what a dialer refuses for; nothing else is taken */
        fy_err(rc, "refused by the dialer: %s", c.text);
        accepted_report(t->s, pd->l, pd->pid, pd->uid, 1, rc);
    } else {
        if (rc == 0) {
            rc = FERRY_EPROTO;
            shm_refuse(pd->io.fd, t->s, rc, "unexpected message %u", c.op);
        }
        accepted_report(t->s, pd->l, pd->pid, pd->uid, 1, rc);
    }
    shm_close_fds(fds, got ? nfds : 0);
    pending_free(t, pd);
    pthread_mutex_unlock(&t->lk);
}

/* --- the timer ----------------------------------------------------------------- */

static void on_timer(struct fy_timer *tm)
{
    struct shm_tran *t = (struct shm_tran *)((char *)tm - offsetof(struct shm_tran, timer));
    pthread_mutex_lock(&t->lk);
    uint64_t now = fy_now_mono_ns(), next = UINT64_MAX;
    for (struct shm_pending *p = t->pendings, *nx; p; p = nx) {
        nx = p->next;
        if (p->deadline <= now) {
            fy_err(FERRY_ETIMEDOUT, "handshake: no HELLO within %d ms", t->s->opt.handshake_ms);
            accepted_report(t->s, p->l, p->pid, p->uid, 1, FERRY_ETIMEDOUT);
            pending_free(t, p); /* half a handshake, then silence */
        } else if (p->deadline < next)
            next = p->deadline;
    }
    uint64_t l = listeners_resume(t, now), d = run_dialers(t, now);
    next = l < next ? l : next;
    next = d < next ? d : next;
    if (t->nwatched > 0) {
        /* peers share the wake block: one may clear fd_armed unwritten */
        fy_sock_fd_watchdog(t->s);
        if (now + SHM_WATCHDOG_NS < next)
            next = now + SHM_WATCHDOG_NS;
    }
    if (next != UINT64_MAX)
        timer_at(t, next);
    pthread_mutex_unlock(&t->lk);
}

/* --- close ----------------------------------------------------------------------- */

/* Frees the transport on its I/O thread: no callback of it can be running
 * or still be reported in the batch. */
static void teardown(void *arg)
{
    struct shm_tran *t = arg;
    fy_timer_stop(&t->timer);
    while (t->listeners) {
        struct shm_listener *l = t->listeners;
        t->listeners = l->next;
        fy_io_del(&l->io);
        close(l->io.fd);
        free(l);
    }
    while (t->pendings)
        pending_free(t, t->pendings);
    while (t->dialers) {
        struct shm_dialer *d = t->dialers;
        t->dialers = d->next;
        if (d->hs != NULL) {
            fy_io_del(&d->hs_io);
            d->hs->base.ops->destroy(&d->hs->base);
        }
        free(d);
    }
    for (size_t i = 0; i < t->nwatched; i++) {
        struct shm_pipe *sp = t->watched[i];
        fy_io_del(&sp->io);
        sp->dialer = NULL;
        shm_pipe_hangup(sp);
        fy_pipe_unref(&sp->base);
    }
    free(t->watched);
    if (t->pool != NULL)
        shm_pool_unref(t->pool); /* pipes still linked keep it */
    pthread_mutex_destroy(&t->lk);
    free(t);
}

static void shm_close_all(ferry_socket *s)
{
    pthread_mutex_lock(&s->mtx);
    struct shm_tran *t = s->shm_tran;
    s->shm_tran = NULL;
    pthread_mutex_unlock(&s->mtx);
    if (t != NULL)
        fy_loop_run(t->loop, teardown, t);
}

const struct fy_tran_ops fy_shm_tran = {
    .scheme = "shm",
    .listen = shm_listen,
    .dial = shm_dial,
    .close_all = shm_close_all,
    .list = fy_shm_list,
};
