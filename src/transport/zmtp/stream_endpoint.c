/*
 * stream_endpoint.c - where tcp:// and ipc:// connections come from:
 * listeners (bind, accept, the admission checks: ipc:// peer uid,
 * FERRY_OPT_MAX_CONNECTIONS, FERRY_OPT_BACKLOG handshakes) and dialers
 * (resolve, non-blocking connect, redial with exponential backoff).
 */
#include "stream_int.h"

#include "../../core/auth.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static void on_accept(struct fy_io *io, uint32_t events);

static int sock_setup(int fd, int family)
{
    if (family != AF_UNIX) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return 0;
}

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

int st_listen(ferry_socket *s, const char *rest, int ipc)
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
    l->io.fd = fd;
    struct stat st;
    if (ipc && rest[0] != '@' && stat(rest, &st) == 0) {
        l->unlink_path = 1;
        l->dev = st.st_dev;
        l->ino = st.st_ino;
        snprintf(l->path, sizeof l->path, "%s", rest);
    }
    if (ipc)
        snprintf(l->url, sizeof l->url, "ipc://%s", rest);
    else
        st_addr_url(&bound, l->url, sizeof l->url);
    pthread_mutex_lock(&s->mtx);
    struct st_tran *t = st_tran_get(s, &rc);
    if (t != NULL) {
        l->t = t;
        /* before the first connection can be taken and reported */
        fy_ev_report(s, FERRY_EVENT_LISTENING, 0, 0, l->url, NULL, NULL, NULL);
        rc = fy_io_add(t->loop, &l->io, fd, on_accept, FY_IO_IN);
        if (rc != 0) {
            fy_err(rc, "%s://%s: epoll", ipc ? "ipc" : "tcp", rest);
            t = NULL;
        }
    }
    if (t != NULL) {
        l->next = t->listeners;
        t->listeners = l;
        snprintf(s->endpoint, sizeof s->endpoint, "%s", l->url);
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
static void refuse(struct st_tran *t, const struct st_listener *l, int fd,
                   const struct fy_ev_peer *peer, int err, const char *why)
{
    ferry_socket *s = t->s;
    fy_ev_report(s, FERRY_EVENT_HANDSHAKE_FAILED, err, 0, l->url, NULL, peer, "refused: %s", why);
    unsigned char out[ZMTP_GREETING_SIZE + 128], body[100];
    /* our mechanism in the greeting, or a CURVE client would read a
     * mismatch instead of the reason */
    int mech = fy_auth_mech(s);
    size_t n = zmtp_greeting_mech(out, mech == FY_MECH_NULL ? ZMTP_MECH_NULL : ZMTP_MECH_CURVE,
                                  mech == FY_MECH_CURVE_SERVER),
           wl = strlen(why) < 96 ? strlen(why) : 96;
    body[0] = (unsigned char)wl;
    memcpy(body + 1, why, wl);
    n += zmtp_command(out + n, sizeof out - n, "ERROR", body, wl + 1);
    ssize_t w = send(fd, out, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    FY_UNUSED(w);
    close(fd);
    fy_stat_inc(&s->stat->refused);
    char line[160];
    snprintf(line, sizeof line, "accepted connection refused: %s", why);
    fy_sock_note(s, 0, line);
}

/* Whether a connection just accepted may stay: the socket's limits, and
 * over ipc:// the peer's uid as the kernel reports it (cr, peer). 0, or
 * refused (the fd is closed). */
static int admit(struct st_tran *t, const struct st_listener *l, int fd, const struct ucred *cr,
                 const struct fy_ev_peer *peer)
{
    ferry_socket *s = t->s;
    int conns = 0, shaking = 0;
    for (struct st_pipe *p = t->conns; p; p = p->next) {
        conns += p->d == NULL;
        shaking += p->d == NULL && p->state == C_HANDSHAKE;
    }
    char why[96];
    if (peer->pid < 0) {
        refuse(t, l, fd, peer, FERRY_EACCES, "peer credentials unavailable");
        return -1;
    }
    if (peer->uid >= 0 && !fy_uid_allowed(s, cr->uid)) {
        snprintf(why, sizeof why, "access denied: uid %u may not connect (FERRY_OPT_PEER_UID)",
                 (unsigned)cr->uid);
        refuse(t, l, fd, peer, FERRY_EACCES, why);
        return -1;
    }
    if (conns >= s->opt.max_conns) {
        snprintf(why, sizeof why, "too many connections (%d, FERRY_OPT_MAX_CONNECTIONS)", conns);
        refuse(t, l, fd, peer, FERRY_ECONNREFUSED, why);
        return -1;
    }
    if (shaking >= s->opt.backlog) {
        snprintf(why, sizeof why, "too many handshakes in progress (%d, FERRY_OPT_BACKLOG)",
                 shaking);
        refuse(t, l, fd, peer, FERRY_ECONNREFUSED, why);
        return -1;
    }
    return 0;
}

/* Who connected, as the kernel says: over ipc:// its pid and uid (pid -1
 * when the kernel would not say), over tcp:// its address. */
static int peer_of(int fd, struct ucred *cr, struct fy_ev_peer *peer, char *addr, size_t alen)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    int family = getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 ? ss.ss_family : AF_UNIX;
    *peer = (struct fy_ev_peer){.pid = 0, .uid = -1, .addr = NULL};
    addr[0] = '\0';
    if (family == AF_UNIX) {
        socklen_t cl = sizeof *cr;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, cr, &cl) != 0) {
            peer->pid = -1;
        } else {
            peer->pid = cr->pid;
            peer->uid = cr->uid;
        }
    } else {
        struct st_addr a = {.len = sizeof a.ss};
        if (getpeername(fd, (struct sockaddr *)&a.ss, &a.len) == 0) {
            a.family = a.ss.ss_family;
            st_addr_url(&a, addr, alen);
            peer->addr = addr;
        }
    }
    return family;
}

static void accept_batch(struct st_tran *t, struct st_listener *l)
{
    ferry_socket *s = t->s;
    for (int i = 0; i < 64; i++) {
        int fd = accept4(l->io.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOMEM || errno == ENOBUFS) {
                char why[96];
                snprintf(why, sizeof why, "accept: %s (listener paused 100 ms)", strerror(errno));
                fy_sock_note(s, 0, why);
                /* out of descriptors: stop listening for a moment rather
                 * than spin on a level-triggered event */
                fy_io_mod(&l->io, 0);
                l->paused_until = fy_now_mono_ns() + 100000000u;
                st_timer_at(t, l->paused_until);
            }
            return;
        }
        struct ucred cr = {.pid = 0, .uid = (uid_t)-1, .gid = (gid_t)-1};
        struct fy_ev_peer peer;
        char addr[96];
        int family = peer_of(fd, &cr, &peer, addr, sizeof addr);
        fy_ev_report(s, FERRY_EVENT_ACCEPTED, 0, 0, l->url, NULL, &peer, NULL);
        if (admit(t, l, fd, &cr, &peer) != 0)
            continue;
        sock_setup(fd, family);
        struct st_pipe *p = st_pipe_new(t);
        if (p == NULL) {
            close(fd);
            continue;
        }
        p->base.peer_pid = cr.pid;
        p->base.peer_uid = cr.uid;
        fy_pipe_set_url(&p->base, "%s", l->url);
        p->fd = fd;
        p->events = FY_IO_IN;
        if (fy_io_add(t->loop, &p->io, fd, st_conn_event, FY_IO_IN) != 0) {
            p->base.ops->destroy(&p->base); /* closes fd */
            continue;
        }
        p->next = t->conns;
        t->conns = p;
        st_conn_start(p);
    }
}

/* A listener is readable: take what connections wait, up to a batch (the
 * rest are reported again). */
static void on_accept(struct fy_io *io, uint32_t events)
{
    FY_UNUSED(events);
    struct st_listener *l = (struct st_listener *)io;
    struct st_tran *t = l->t;
    pthread_mutex_lock(&t->s->mtx);
    if (!t->closing)
        accept_batch(t, l);
    pthread_mutex_unlock(&t->s->mtx);
}

void st_dialer_schedule(struct st_dialer *d, int first, int err, const char *why)
{
    struct st_pipe *p = d->pipe;
    if (p == NULL)
        return;
    struct st_tran *t = p->t;
    ferry_socket *s = t->s;
    int ivl = d->backoff_ms;
    fy_stat_inc(&s->stat->reconnects);
    fy_ev_report(s, FERRY_EVENT_CONNECT_RETRIED, err, ivl, NULL, &p->base, NULL, "%s", why);
    if (!first) { /* exponential backoff, capped */
        long next = (long)d->backoff_ms * 2;
        d->backoff_ms = next > s->opt.reconnect_max_ms ? s->opt.reconnect_max_ms : (int)next;
    }
    d->retry_at = fy_now_mono_ns() + (uint64_t)ivl * 1000000u;
    st_timer_at(t, d->retry_at);
}

/* A host name looked up again off the I/O thread (a slow resolver must
 * stall no socket): the lookup runs on a thread of its own (loop.h), its
 * result comes back to the loop. A dialer that goes meanwhile (its socket
 * closes) leaves it orphaned (d NULL), and the result is dropped. */
struct st_resolve {
    struct fy_work w; /* first */
    struct st_dialer *d;
    char rest[256];
    struct st_addr addr;
    int rc;
};

static void resolve_work(struct fy_work *w)
{
    struct st_resolve *r = (struct st_resolve *)w;
    r->rc = st_tcp_addr(r->rest, 0, &r->addr);
}

static void resolve_done(struct fy_work *w)
{
    struct st_resolve *r = (struct st_resolve *)w;
    struct st_dialer *d = r->d;
    if (d == NULL) { /* orphaned on this thread by the teardown */
        free(r);
        return;
    }
    struct st_tran *t = d->t;
    pthread_mutex_lock(&t->s->mtx);
    d->resolving = NULL;
    if (r->rc == 0)
        d->addr = r->addr; /* else: keep the last good address */
    free(r);
    st_dialer_try(t, d, 0);
    pthread_mutex_unlock(&t->s->mtx);
}

void st_dialer_free(struct st_dialer *d)
{
    if (d->resolving != NULL)
        d->resolving->d = NULL; /* resolve_done frees it */
    if (d->pipe)
        d->pipe->d = NULL;
    free(d);
}

/* One connection attempt (I/O thread or ferry_dial, mtx held); resolve: a
 * host name is looked up again first (its address may change), off the
 * I/O thread, and the attempt follows when the answer is in. */
void st_dialer_try(struct st_tran *t, struct st_dialer *d, int resolve)
{
    d->retry_at = 0;
    if (d->pipe == NULL || d->pipe->state != C_IDLE || d->resolving != NULL)
        return;
    if (t->closing && !d->pipe->lingering)
        return;
    if (resolve && !d->ipc && !d->numeric) {
        struct st_resolve *r = calloc(1, sizeof *r);
        if (r != NULL) {
            r->d = d;
            memcpy(r->rest, d->rest, sizeof r->rest);
            if (fy_loop_offload(t->loop, &r->w, resolve_work, resolve_done) == 0) {
                d->resolving = r;
                return;
            }
            free(r);
        } /* no thread for it: dial the last good address */
    }
    struct st_pipe *p = d->pipe;
    int fd = socket(d->addr.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    char why[96];
    if (fd < 0) {
        int e = errno;
        snprintf(why, sizeof why, "socket: %s", strerror(e));
        st_dialer_schedule(d, 0, -e, why);
        return;
    }
    sock_setup(fd, d->addr.family);
    int rc = connect(fd, (const struct sockaddr *)&d->addr.ss, d->addr.len);
    if (rc != 0 && errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        snprintf(why, sizeof why, "connect: %s", strerror(e));
        st_dialer_schedule(d, 0, -e, why);
        return;
    }
    p->fd = fd;
    p->state = C_CONNECTING;
    p->events = FY_IO_OUT;
    zmtp_dec_init(&p->dec, &st_dec_ops, p, ST_CMD_MAX);
    if (fy_io_add(t->loop, &p->io, fd, st_conn_event, FY_IO_OUT) != 0) {
        close(fd);
        p->fd = -1;
        p->state = C_IDLE;
        st_dialer_schedule(d, 0, FERRY_ENOMEM, "epoll: out of memory");
        return;
    }
    p->hs_deadline = fy_now_mono_ns() + (uint64_t)t->s->opt.handshake_ms * 1000000u;
    st_timer_at(t, p->hs_deadline);
}

void st_on_connected(struct st_pipe *p)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    if (err != 0) {
        st_conn_broken(p, 0, -err, "connect: %s", strerror(err));
        return;
    }
    if (p->d != NULL && p->d->ipc) {
        /* who listens there, as the kernel says: an abstract name has no
         * permissions, so anyone could have bound it first */
        struct ucred cr;
        socklen_t cl = sizeof cr;
        if (getsockopt(p->fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl) != 0) {
            st_conn_broken(p, 0, -errno, "peer credentials: %s", strerror(errno));
            return;
        }
        if (!fy_uid_allowed(p->t->s, cr.uid)) {
            st_conn_broken(p, 0, FERRY_EACCES,
                           "the listener runs as uid %u, not allowed (FERRY_OPT_PEER_UID)",
                           (unsigned)cr.uid);
            return;
        }
        p->base.peer_pid = cr.pid;
        p->base.peer_uid = cr.uid;
    }
    fy_ev_report(p->t->s, FERRY_EVENT_CONNECTED, 0, 0, NULL, &p->base, NULL, NULL);
    st_conn_start(p);
}

int st_dial(ferry_socket *s, const char *rest, int ipc)
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
    struct st_tran *t = st_tran_get(s, &rc);
    struct st_pipe *p = t ? st_pipe_new(t) : NULL;
    if (t != NULL && p == NULL)
        rc = FERRY_ENOMEM;
    if (p != NULL) {
        p->base.pending = 1;
        p->state = C_IDLE;
        p->d = d;
        fy_pipe_set_url(&p->base, "%s://%s", ipc ? "ipc" : "tcp", rest);
        rc = fy_sock_add_pipe_locked(s, &p->base);
        if (rc != 0) {
            p->base.ops->destroy(&p->base);
            p = NULL;
        }
    }
    if (p != NULL) {
        p->in_sock = 1;
        p->next = t->conns;
        t->conns = p;
        d->pipe = p;
        d->t = t;
        d->backoff_ms = s->opt.reconnect_ms;
        d->next = t->dialers;
        t->dialers = d;
        st_dialer_try(t, d, 0);
        st_poke(t);
    } else {
        free(d);
    }
    pthread_mutex_unlock(&s->mtx);
    return rc;
}
