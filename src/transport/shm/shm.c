/*
 * shm.c - the shm:// transport: listeners, dialers, the handshake (see
 * shm_int.h), and the socket's I/O thread that accepts connections, watches
 * them for the peer's death and redials lost ones.
 *
 * Everything a peer sends is checked before use: control messages (magic,
 * version, operation, sizes), the descriptors passed with them (shm_fd.c:
 * the connection memfd must be a tmpfs memfd sealed against shrinking, seals
 * read before the size, with exactly the agreed size, so the peer cannot
 * make our mapping fault; the wake block likewise; the wake-up fd must be a
 * datagram socket), and the peer's uid and pid (SO_PEERCRED). A refused peer is told why in a
 * REFUSE message.
 *
 * Lock order: the transport lock `lk`, then the socket's `mtx`.
 */
#include "shm_int.h"

#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* A listener out of descriptors stops listening this long rather than spin
 * on a level-triggered event (the stream listener does the same). */
#define SHM_ACCEPT_PAUSE_NS 100000000u
/* Connections taken per listener event, so a crowd of dialers cannot hold
 * the I/O thread: the rest are reported again. */
#define SHM_ACCEPT_BATCH 64

struct shm_listener {
    struct shm_ev ev;
    uint64_t paused_until; /* monotonic ns; 0: listening */
    char name[FERRY_NAME_MAX + 1];
    struct shm_listener *next;
};

struct shm_pending {
    struct shm_ev ev;
    uid_t uid;
    pid_t pid;
    uint64_t deadline;
    struct shm_pending *next;
};

struct shm_dialer {
    char name[FERRY_NAME_MAX + 1];
    int connected;
    int backoff_ms;
    uint64_t next_try; /* monotonic ns; 0: not scheduled */
    struct shm_dialer *next;
};

struct shm_tran {
    ferry_socket *s;
    pthread_mutex_t lk;
    int epfd;
    struct shm_ev cmd; /* eventfd: wakes the thread */
    pthread_t thr;
    int started;
    _Atomic int stop;
    struct shm_listener *listeners;
    struct shm_pending *pendings;
    struct shm_dialer *dialers;
    struct shm_pipe **watched;
    size_t nwatched, cap_watched;
};

static void *shm_thread(void *arg);

/* --- small helpers --------------------------------------------------------- */

static socklen_t shm_addr(struct sockaddr_un *sa, const char *name)
{
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    int n = snprintf(sa->sun_path + 1, sizeof sa->sun_path - 1, "ferry/shm/%s", name);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
}

static void ctl_init(struct shm_ctl *c, int op, ferry_socket *s)
{
    memset(c, 0, sizeof *c);
    memcpy(c->magic, "FERRYCTL", 8);
    c->version = SHM_CTL_VERSION;
    c->op = (uint32_t)op;
    c->pid = (int32_t)getpid();
    if (s) {
        c->type = s->proto->type;
        c->ring_size = s->opt.ring_size;
        c->maxmsgsize = s->opt.maxmsgsize;
        c->rcvhwm = (uint32_t)s->opt.rcvhwm;
        c->sndhwm = (uint32_t)s->opt.sndhwm;
        if (s->proto->wire->identity && (op == SHM_OP_WELCOME || op == SHM_OP_HELLO)) {
            c->rid_len = (uint32_t)s->opt.routing_id_len;
            memcpy(c->rid, s->opt.routing_id, s->opt.routing_id_len);
        }
    }
}

/* The routing id a peer's WELCOME or HELLO announced, onto its pipe. 0,
 * or FERRY_EPROTO when it claims more than FY_RID_MAX bytes. */
static int ctl_peer_rid(const struct shm_ctl *c, struct fy_pipe *p)
{
    if (c->rid_len > FY_RID_MAX)
        return FERRY_EPROTO;
    p->peer_rid_len = c->rid_len;
    memcpy(p->peer_rid, c->rid, c->rid_len);
    return 0;
}

static int ctl_send(int fd, const struct shm_ctl *c, const int *fds, int nfds)
{
    struct iovec iov = {.iov_base = (void *)c, .iov_len = sizeof *c};
    union {
        char buf[CMSG_SPACE(sizeof(int) * 4)];
        struct cmsghdr align;
    } u;
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (nfds > 0) {
        memset(&u, 0, sizeof u);
        mh.msg_control = u.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
        memcpy(CMSG_DATA(cm), fds, sizeof(int) * (size_t)nfds);
    }
    ssize_t n;
    do
        n = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n != (ssize_t)sizeof *c)
        return n < 0 ? -errno : FERRY_EIO;
    return 0;
}

static void close_fds(int *fds, int n);

/* Receives one control message and up to 4 descriptors (closing any
 * excess). Returns 0, FERRY_ECONNRESET on EOF, FERRY_EPROTO for a malformed
 * message, or -errno. */
static int ctl_recv(int fd, struct shm_ctl *c, int *fds, int *nfds)
{
    struct iovec iov = {.iov_base = c, .iov_len = sizeof *c};
    union {
        char buf[CMSG_SPACE(sizeof(int) * 8)];
        struct cmsghdr align;
    } u;
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
    *nfds = 0;
    ssize_t n;
    do
        n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
            continue;
        size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k; i++) {
            int f;
            memcpy(&f, CMSG_DATA(cm) + i * sizeof(int), sizeof f);
            if (*nfds < 4)
                fds[(*nfds)++] = f;
            else
                close(f);
        }
    }
    if (n == 0) {
        close_fds(fds, *nfds);
        *nfds = 0;
        return FERRY_ECONNRESET;
    }
    /* Another release's handshake is told apart before its size is held
     * against it (the message grew with the versions), so both ends can
     * say why they cannot talk. */
    int other = n >= 12 && memcmp(c->magic, "FERRYCTL", 8) == 0 && c->version != SHM_CTL_VERSION;
    if (other || n != (ssize_t)sizeof *c || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) ||
        memcmp(c->magic, "FERRYCTL", 8) != 0) {
        for (int i = 0; i < *nfds; i++)
            close(fds[i]);
        *nfds = 0;
        return other ? FERRY_EVERSION : FERRY_EPROTO;
    }
    c->text[sizeof c->text - 1] = '\0';
    return 0;
}

/* Waits up to the deadline for fd to be readable. */
static int wait_readable(int fd, uint64_t deadline)
{
    for (;;) {
        uint64_t now = fy_now_mono_ns();
        if (now >= deadline)
            return FERRY_ETIMEDOUT;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int ms = (int)((deadline - now + 999999u) / 1000000u);
        int r = poll(&pfd, 1, ms);
        if (r > 0)
            return 0;
        if (r < 0 && errno != EINTR)
            return -errno;
    }
}

static void close_fds(int *fds, int n)
{
    for (int i = 0; i < n; i++)
        if (fds[i] >= 0)
            close(fds[i]);
}

static struct fy_wake *map_wake(int fd)
{
    if (fy_shm_check_memfd(fd, FY_WAKE_SIZE) != 0)
        return NULL;
    void *p = mmap(NULL, FY_WAKE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    return p == MAP_FAILED ? NULL : p;
}

static struct shm_pipe *pipe_new(void)
{
    struct shm_pipe *sp = calloc(1, sizeof *sp);
    if (sp == NULL)
        return NULL;
    sp->base.ops = &fy_shm_pipe_ops;
    atomic_store(&sp->base.refs, 1); /* the creator's; handed to the I/O thread */
    sp->base.tran = sp;
    sp->ctl_fd = -1;
    sp->peer_efd = -1;
    sp->ev.kind = SHM_EV_PIPE;
    sp->ev.fd = -1;
    return sp;
}

/* Sets up both ring views once the connection memory is mapped.
 * dialer: writes the first ring, reads the second. */
static uint64_t hwm_min(uint64_t a, uint64_t b)
{
    return a == 0 ? b : b == 0 ? a : (a < b ? a : b);
}

static void pipe_rings(struct shm_pipe *sp, ferry_socket *s, uint64_t cap, int dialer,
                       uint64_t peer_maxmsg, uint32_t peer_rcvhwm, uint32_t peer_sndhwm)
{
    unsigned char *base = sp->map;
    void *d2l = base + SHM_CONN_HDR, *l2d = base + SHM_CONN_HDR + fy_ring_bytes(cap);
    fy_ring_writer_init(&sp->w, dialer ? d2l : l2d, cap);
    fy_ring_reader_init(&sp->r, dialer ? l2d : d2l, cap);
    sp->side = dialer ? 0 : 1;
    sp->max_rec = fy_ring_max_record(cap);
    sp->own_maxmsg = s->opt.maxmsgsize;
    sp->peer_maxmsg = peer_maxmsg ? peer_maxmsg : UINT64_MAX;
    sp->hwm = hwm_min((uint64_t)s->opt.sndhwm, peer_rcvhwm);
    /* The reader publishes its message count at least every half of the
     * HWM its writer works under, so a writer held by the HWM moves on. */
    uint64_t in_hwm = hwm_min(peer_sndhwm, (uint64_t)s->opt.rcvhwm);
    sp->r.publish_msgs = in_hwm ? (in_hwm + 1) / 2 : UINT64_MAX;
}

/* --- the transport state of a socket ----------------------------------------- */

static struct shm_tran *tran_get(ferry_socket *s, int *err)
{
    pthread_mutex_lock(&s->mtx);
    struct shm_tran *t = s->shm_tran;
    if (t == NULL && !s->closing) {
        t = calloc(1, sizeof *t);
        if (t != NULL) {
            t->s = s;
            pthread_mutex_init(&t->lk, NULL);
            t->epfd = epoll_create1(EPOLL_CLOEXEC);
            t->cmd.kind = SHM_EV_CMD;
            t->cmd.fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
            struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &t->cmd};
            if (t->epfd < 0 || t->cmd.fd < 0 ||
                epoll_ctl(t->epfd, EPOLL_CTL_ADD, t->cmd.fd, &ev) != 0 ||
                pthread_create(&t->thr, NULL, shm_thread, t) != 0) {
                *err = fy_syserr("shm: start I/O thread");
                if (t->epfd >= 0)
                    close(t->epfd);
                if (t->cmd.fd >= 0)
                    close(t->cmd.fd);
                pthread_mutex_destroy(&t->lk);
                free(t);
                t = NULL;
            } else {
                t->started = 1;
                s->shm_tran = t;
            }
        } else {
            *err = FERRY_ENOMEM;
        }
    } else if (t == NULL) {
        *err = FERRY_ECLOSED;
    }
    pthread_mutex_unlock(&s->mtx);
    return t;
}

static void tran_poke(struct shm_tran *t)
{
    uint64_t one = 1;
    ssize_t n = write(t->cmd.fd, &one, sizeof one);
    FY_UNUSED(n);
}

/* Hands a connected pipe to the socket and the I/O thread (lk held). */
static int tran_adopt(struct shm_tran *t, struct shm_pipe *sp)
{
    int rc = fy_sock_add_pipe(t->s, &sp->base);
    if (rc != 0)
        return rc;
    if (t->nwatched == t->cap_watched) {
        size_t cap = t->cap_watched ? t->cap_watched * 2 : 8;
        struct shm_pipe **v = realloc(t->watched, cap * sizeof *v);
        if (v == NULL) {
            fy_sock_pipe_dead(t->s, &sp->base);
            return FERRY_ENOMEM;
        }
        t->watched = v;
        t->cap_watched = cap;
    }
    t->watched[t->nwatched++] = sp; /* the creator's reference moves here */
    sp->ev.fd = sp->ctl_fd;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = &sp->ev};
    epoll_ctl(t->epfd, EPOLL_CTL_ADD, sp->ctl_fd, &ev);
    return 0;
}

/* --- dialing ----------------------------------------------------------------- */

/* One connection attempt, handshake included, bounded by the handshake
 * timeout. FERRY_ECONNREFUSED means nobody listens (retry later). */
static int shm_connect(ferry_socket *s, const char *name, struct shm_pipe **out)
{
    struct sockaddr_un sa;
    socklen_t sl = shm_addr(&sa, name);
    int fds[4], nfds = 0, rc;
    struct shm_ctl c;
    uint64_t deadline = fy_deadline_ns(s->opt.handshake_ms);
    int memfd = -1;
    struct shm_pipe *sp = pipe_new();
    if (sp == NULL)
        return FERRY_ENOMEM;
    /* non-blocking: a listener with a full backlog must not stall us */
    sp->ctl_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (sp->ctl_fd < 0) {
        rc = fy_syserr("shm://%s: socket", name);
        goto fail;
    }
    if (connect(sp->ctl_fd, (struct sockaddr *)&sa, sl) != 0) {
        rc = -errno;
        if (rc == -ENOENT || rc == -ECONNREFUSED || rc == -EAGAIN)
            rc = FERRY_ECONNREFUSED;
        fy_err(rc, "shm://%s: connect", name);
        goto fail;
    }
    /* The listener must be trusted too: an abstract name can be taken by
     * anyone, so a listener of a foreign uid could be squatting it. */
    struct ucred cr;
    socklen_t cl = sizeof cr;
    if (getsockopt(sp->ctl_fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl) != 0 ||
        !fy_uid_allowed(s, cr.uid)) {
        rc = fy_err(FERRY_EACCES, "shm://%s: the listener runs as uid %u (see FERRY_OPT_PEER_UID)",
                    name, (unsigned)cr.uid);
        goto fail;
    }
    /* WELCOME or REFUSE */
    if ((rc = wait_readable(sp->ctl_fd, deadline)) != 0 ||
        (rc = ctl_recv(sp->ctl_fd, &c, fds, &nfds)) != 0) {
        if (rc == FERRY_EVERSION)
            fy_err(rc,
                   "shm://%s: the listener (pid %d) speaks shm handshake version %u, this "
                   "ferry version %d: both ends need the same ferry release",
                   name, (int)cr.pid, (unsigned)c.version, SHM_CTL_VERSION);
        else
            fy_err(rc, "shm://%s: handshake", name);
        goto fail;
    }
    if (c.op == SHM_OP_REFUSE) {
        close_fds(fds, nfds);
        rc = c.err < 0 && c.err > -5000 ? c.err : FERRY_ECONNREFUSED;
        fy_err(rc, "shm://%s: refused by the listener (pid %d): %s", name, (int)cr.pid, c.text);
        goto fail;
    }
    if (c.op != SHM_OP_WELCOME || nfds != 2) {
        close_fds(fds, nfds);
        rc = fy_err(FERRY_EPROTO, "shm://%s: unexpected handshake message %u", name, c.op);
        goto fail;
    }
    if (ctl_peer_rid(&c, &sp->base) != 0) {
        close_fds(fds, nfds);
        rc = fy_err(FERRY_EPROTO, "shm://%s: the listener announced a routing id of %u bytes", name,
                    (unsigned)c.rid_len);
        goto fail;
    }
    if (!fy_types_compatible(s->proto->type, c.type)) {
        close_fds(fds, nfds);
        rc = fy_err(FERRY_EPEERTYPE, "shm://%s: a %s socket cannot talk to a %s socket", name,
                    s->proto->name, fy_type_name(c.type));
        goto fail;
    }
    sp->peer_wake = map_wake(fds[0]);
    close(fds[0]);
    if (sp->peer_wake == NULL || fy_shm_check_event_sock(fds[1]) != 0) {
        close(fds[1]);
        rc = fy_err(FERRY_EPROTO, "shm://%s: listener sent bad descriptors", name);
        goto fail;
    }
    sp->peer_efd = fds[1];
    /* who the listener is, from the kernel: its message's pid is a claim */
    sp->base.peer_pid = (int)cr.pid;
    sp->base.peer_uid = (unsigned)cr.uid;
    uint64_t cap = s->opt.ring_size;
    if (c.ring_size > cap && c.ring_size <= FY_RING_MAX)
        cap = c.ring_size;
    cap = (cap + 63u) & ~(uint64_t)63u;
    uint64_t peer_maxmsg = c.maxmsgsize;
    uint32_t peer_hwm = c.rcvhwm, peer_snd = c.sndhwm;

    /* The connection memory: made, formatted and sealed by the dialer. */
    sp->map_len = SHM_CONN_HDR + 2 * fy_ring_bytes(cap);
    memfd = memfd_create("ferry-conn", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (memfd < 0 || ftruncate(memfd, (off_t)sp->map_len) != 0 ||
        fcntl(memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
        rc = fy_syserr("shm://%s: connection memory (%zu bytes)", name, sp->map_len);
        goto fail;
    }
    sp->map = mmap(NULL, sp->map_len, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
    if (sp->map == MAP_FAILED) {
        sp->map = NULL;
        rc = fy_syserr("shm://%s: mmap %zu bytes", name, sp->map_len);
        goto fail;
    }
    struct shm_conn_hdr *h = sp->map;
    memcpy(h->magic, "FERRYCON", 8);
    h->version = 1;
    h->ring_cap = cap;
    fy_ring_format((char *)sp->map + SHM_CONN_HDR, cap);
    fy_ring_format((char *)sp->map + SHM_CONN_HDR + fy_ring_bytes(cap), cap);
    pipe_rings(sp, s, cap, 1, peer_maxmsg, peer_hwm, peer_snd);

    ctl_init(&c, SHM_OP_HELLO, s);
    c.ring_size = cap;
    int efd = fy_sock_event_sender(s);
    int out_fds[3] = {memfd, s->wake_fd, efd};
    rc = efd < 0 ? efd : ctl_send(sp->ctl_fd, &c, out_fds, 3);
    if (efd >= 0)
        close(efd); /* the peer's now */
    if (rc != 0) {
        fy_err(rc, "shm://%s: send hello", name);
        goto fail;
    }
    close(memfd);
    memfd = -1;
    if ((rc = wait_readable(sp->ctl_fd, deadline)) != 0 ||
        (rc = ctl_recv(sp->ctl_fd, &c, fds, &nfds)) != 0) {
        fy_err(rc, "shm://%s: handshake", name);
        goto fail;
    }
    close_fds(fds, nfds);
    if (c.op == SHM_OP_REFUSE) {
        rc = c.err < 0 && c.err > -5000 ? c.err : FERRY_ECONNREFUSED;
        fy_err(rc, "shm://%s: refused by the listener (pid %d): %s", name, (int)cr.pid, c.text);
        goto fail;
    }
    if (c.op != SHM_OP_ACK) {
        rc = fy_err(FERRY_EPROTO, "shm://%s: unexpected handshake message %u", name, c.op);
        goto fail;
    }
    *out = sp;
    return 0;
fail:
    if (memfd >= 0)
        close(memfd);
    sp->base.ops->destroy(&sp->base);
    return rc;
}

static struct shm_dialer *dialer_add(struct shm_tran *t, const char *name)
{
    struct shm_dialer *d = calloc(1, sizeof *d);
    if (d == NULL)
        return NULL;
    snprintf(d->name, sizeof d->name, "%s", name);
    d->backoff_ms = t->s->opt.reconnect_ms;
    d->next = t->dialers;
    t->dialers = d;
    return d;
}

static void dialer_schedule(struct shm_tran *t, struct shm_dialer *d)
{
    d->connected = 0;
    d->next_try = fy_now_mono_ns() + (uint64_t)d->backoff_ms * 1000000u;
    int max = t->s->opt.reconnect_max_ms;
    d->backoff_ms = d->backoff_ms * 2 > max ? max : d->backoff_ms * 2;
}

/* What listen and dial do first: check the name, start the transport. */
static struct shm_tran *shm_prologue(ferry_socket *s, const char *name, int *rc)
{
    *rc = ferry_name_check(name);
    if (*rc != 0) {
        *rc = fy_err(FERRY_EBADURL, "shm://%.200s: bad name", name);
        return NULL;
    }
    return tran_get(s, rc);
}

static int shm_dial(ferry_socket *s, const char *name)
{
    int rc;
    struct shm_tran *t = shm_prologue(s, name, &rc);
    if (t == NULL)
        return rc;
    struct shm_pipe *sp = NULL;
    rc = shm_connect(s, name, &sp);
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
        dialer_schedule(t, d); /* nobody listens yet: keep trying */
    }
    pthread_mutex_unlock(&t->lk);
    tran_poke(t);
    fy_err_clear();
    return 0;
}

/* --- listening ----------------------------------------------------------------- */

static int shm_listen(ferry_socket *s, const char *name)
{
    int rc;
    struct shm_tran *t = shm_prologue(s, name, &rc);
    if (t == NULL)
        return rc;
    struct shm_listener *l = calloc(1, sizeof *l);
    if (l == NULL)
        return FERRY_ENOMEM;
    l->ev.kind = SHM_EV_LISTENER;
    snprintf(l->name, sizeof l->name, "%s", name);
    l->ev.fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    struct sockaddr_un sa;
    socklen_t sl = shm_addr(&sa, name);
    if (l->ev.fd < 0 || bind(l->ev.fd, (struct sockaddr *)&sa, sl) != 0 ||
        listen(l->ev.fd, 128) != 0) {
        rc = -errno;
        if (rc == FERRY_EADDRINUSE)
            fy_err(rc, "shm://%s: a live socket already listens there", name);
        else
            fy_err(rc, "shm://%s: listen", name);
        if (l->ev.fd >= 0)
            close(l->ev.fd);
        free(l);
        return rc;
    }
    pthread_mutex_lock(&t->lk);
    l->next = t->listeners;
    t->listeners = l;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &l->ev};
    epoll_ctl(t->epfd, EPOLL_CTL_ADD, l->ev.fd, &ev);
    pthread_mutex_unlock(&t->lk);
    return 0;
}

static void refuse(int fd, ferry_socket *s, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void refuse(int fd, ferry_socket *s, int err, const char *fmt, ...)
{
    struct shm_ctl c;
    ctl_init(&c, SHM_OP_REFUSE, s);
    c.err = err;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c.text, sizeof c.text, fmt, ap);
    va_end(ap);
    ctl_send(fd, &c, NULL, 0);
}

static void listener_arm(struct shm_tran *t, struct shm_listener *l, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = &l->ev};
    epoll_ctl(t->epfd, EPOLL_CTL_MOD, l->ev.fd, &ev);
}

/* Listeners paused for want of descriptors listen again once their pause
 * is over (lk held). */
static void listeners_resume(struct shm_tran *t, uint64_t now)
{
    for (struct shm_listener *l = t->listeners; l; l = l->next) {
        if (l->paused_until && now >= l->paused_until) {
            l->paused_until = 0;
            listener_arm(t, l, EPOLLIN);
        }
    }
}

static void on_accept(struct shm_tran *t, struct shm_listener *l)
{
    ferry_socket *s = t->s;
    for (int i = 0; i < SHM_ACCEPT_BATCH; i++) {
        int fd = accept4(l->ev.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0 && (errno == ECONNABORTED || errno == EINTR))
            continue;
        if (fd < 0 && (errno == EMFILE || errno == ENFILE || errno == ENOMEM || errno == ENOBUFS)) {
            /* the connection stays in the backlog; the event would be
             * reported again at once, for as long as we are short */
            l->paused_until = fy_now_mono_ns() + SHM_ACCEPT_PAUSE_NS;
            listener_arm(t, l, 0);
        }
        if (fd < 0)
            return; /* EAGAIN, or paused */
        struct ucred cr;
        socklen_t cl = sizeof cr;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl) != 0) {
            close(fd);
            continue;
        }
        if (!fy_uid_allowed(s, cr.uid)) {
            refuse(fd, s, FERRY_EACCES,
                   "uid %u may not connect (allowed: %lld and root; see FERRY_OPT_PEER_UID)",
                   (unsigned)cr.uid, (long long)s->opt.peer_uid);
            close(fd);
            continue;
        }
        struct shm_ctl c;
        ctl_init(&c, SHM_OP_WELCOME, s);
        int efd = fy_sock_event_sender(s);
        int out_fds[2] = {s->wake_fd, efd};
        struct shm_pending *pd = calloc(1, sizeof *pd);
        if (pd == NULL || efd < 0 || ctl_send(fd, &c, out_fds, 2) != 0) {
            if (efd >= 0)
                close(efd);
            free(pd);
            close(fd);
            continue;
        }
        close(efd); /* the peer's now */
        pd->ev.kind = SHM_EV_PENDING;
        pd->ev.fd = fd;
        pd->uid = cr.uid;
        pd->pid = cr.pid;
        pd->deadline = fy_deadline_ns(s->opt.handshake_ms);
        pd->next = t->pendings;
        t->pendings = pd;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = &pd->ev};
        epoll_ctl(t->epfd, EPOLL_CTL_ADD, fd, &ev);
    }
}

static void stat_reply(struct shm_tran *t, int fd)
{
    ferry_socket *s = t->s;
    struct shm_ctl c;
    ctl_init(&c, SHM_OP_STAT_REP, s);
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
    ctl_send(fd, &c, NULL, 0);
}

/* The dialer's HELLO: validate it and everything that came with it. */
static int on_hello(struct shm_tran *t, struct shm_pending *pd, struct shm_ctl *c, int *fds,
                    int nfds)
{
    ferry_socket *s = t->s;
    int fd = pd->ev.fd;
    if (!fy_types_compatible(s->proto->type, c->type)) {
        refuse(fd, s, FERRY_EPEERTYPE, "a %s socket cannot talk to a %s socket", s->proto->name,
               fy_type_name(c->type));
        return FERRY_EPEERTYPE;
    }
    if (s->proto->accept) {
        pthread_mutex_lock(&s->mtx);
        int arc = s->proto->accept(s);
        pthread_mutex_unlock(&s->mtx);
        if (arc != 0) {
            refuse(fd, s, arc, "%s", ferry_errdetail());
            return arc;
        }
    }
    uint64_t cap = c->ring_size;
    if (nfds != 3 || cap < FY_RING_MIN || cap > FY_RING_MAX || (cap & 63u) ||
        c->rid_len > FY_RID_MAX) {
        refuse(fd, s, FERRY_EPROTO, "bad hello");
        return FERRY_EPROTO;
    }
    struct shm_pipe *sp = pipe_new();
    if (sp == NULL)
        return FERRY_ENOMEM;
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
    if (rc == 0 && (sp->peer_wake = map_wake(fds[1])) == NULL)
        rc = FERRY_EPROTO;
    if (rc == 0 && fy_shm_check_event_sock(fds[2]) != 0)
        rc = FERRY_EPROTO;
    if (rc != 0) {
        refuse(fd, s, rc, "bad connection memory or descriptors");
        sp->base.ops->destroy(&sp->base);
        return rc;
    }
    sp->peer_efd = fds[2];
    fds[2] = -1;
    sp->base.peer_pid = pd->pid;
    sp->base.peer_uid = pd->uid;
    ctl_peer_rid(c, &sp->base); /* its length was checked above */
    pipe_rings(sp, s, cap, 0, c->maxmsgsize, c->rcvhwm, c->sndhwm);
    sp->ctl_fd = fd;
    pd->ev.fd = -1; /* the pipe owns the control socket now */
    /* Join the socket before the ACK: once the dialer has it, it may send
     * at once, and its message must find the pipe in place. */
    rc = tran_adopt(t, sp);
    if (rc != 0) {
        refuse(fd, s, rc, "%s", ferry_errdetail());
        fy_pipe_unref(&sp->base);
        return rc;
    }
    struct shm_ctl ack;
    ctl_init(&ack, SHM_OP_ACK, s);
    if (ctl_send(fd, &ack, NULL, 0) != 0)
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
    if (pd->ev.fd >= 0) {
        epoll_ctl(t->epfd, EPOLL_CTL_DEL, pd->ev.fd, NULL);
        close(pd->ev.fd);
    }
    free(pd);
}

static void on_pending(struct shm_tran *t, struct shm_pending *pd)
{
    struct shm_ctl c;
    int fds[4], nfds;
    int rc = ctl_recv(pd->ev.fd, &c, fds, &nfds);
    if (rc == -EAGAIN)
        return;
    if (rc == FERRY_EVERSION) {
        char why[160];
        snprintf(why, sizeof why,
                 "shm: a peer (pid %d) speaks shm handshake version %u, this ferry version %d: "
                 "refused",
                 (int)pd->pid, (unsigned)c.version, SHM_CTL_VERSION);
        pthread_mutex_lock(&t->s->mtx);
        fy_sock_note(t->s, 0, why);
        pthread_mutex_unlock(&t->s->mtx);
        refuse(pd->ev.fd, t->s, FERRY_EVERSION, "%s", why + 5);
    }
    if (rc == 0 && c.op == SHM_OP_STAT_REQ) {
        stat_reply(t, pd->ev.fd);
    } else if (rc == 0 && c.op == SHM_OP_HELLO) {
        epoll_ctl(t->epfd, EPOLL_CTL_DEL, pd->ev.fd, NULL);
        on_hello(t, pd, &c, fds, nfds);
    } else if (rc == 0) {
        refuse(pd->ev.fd, t->s, FERRY_EPROTO, "unexpected message %u", c.op);
    }
    close_fds(fds, rc == 0 ? nfds : 0);
    pending_free(t, pd);
}

/* --- the I/O thread --------------------------------------------------------- */

static void on_pipe_event(struct shm_tran *t, struct shm_pipe *sp)
{
    /* Nothing is sent on the control socket after the handshake: any event
     * is EOF, a hang-up, or a protocol violation. All end the pipe. */
    epoll_ctl(t->epfd, EPOLL_CTL_DEL, sp->ctl_fd, NULL);
    fy_sock_pipe_dead(t->s, &sp->base);
    if (sp->dialer)
        dialer_schedule(t, sp->dialer);
    for (size_t i = 0; i < t->nwatched; i++) {
        if (t->watched[i] == sp) {
            t->watched[i] = t->watched[--t->nwatched];
            fy_pipe_unref(&sp->base);
            break;
        }
    }
}

static int dialer_alive(struct shm_tran *t, struct shm_dialer *d)
{
    for (struct shm_dialer *x = t->dialers; x; x = x->next)
        if (x == d)
            return 1;
    return 0;
}

static void run_dialers(struct shm_tran *t)
{
    uint64_t now = fy_now_mono_ns();
    for (struct shm_dialer *d = t->dialers; d; d = d->next) {
        if (d->connected || d->next_try == 0 || d->next_try > now)
            continue;
        char name[FERRY_NAME_MAX + 1];
        snprintf(name, sizeof name, "%s", d->name);
        /* The handshake may take a while: not under lk. */
        pthread_mutex_unlock(&t->lk);
        struct shm_pipe *sp = NULL;
        int rc = shm_connect(t->s, name, &sp);
        pthread_mutex_lock(&t->lk);
        if (atomic_load(&t->stop) || !dialer_alive(t, d)) {
            if (sp)
                sp->base.ops->destroy(&sp->base);
            return;
        }
        if (rc == 0) {
            sp->dialer = d;
            if (tran_adopt(t, sp) == 0) {
                d->connected = 1;
                d->backoff_ms = t->s->opt.reconnect_ms;
                continue;
            }
            fy_pipe_unref(&sp->base);
        }
        dialer_schedule(t, d);
    }
}

static int next_timeout_ms(struct shm_tran *t)
{
    uint64_t now = fy_now_mono_ns(), next = UINT64_MAX;
    for (struct shm_pending *p = t->pendings; p; p = p->next)
        if (p->deadline < next)
            next = p->deadline;
    for (struct shm_dialer *d = t->dialers; d; d = d->next)
        if (!d->connected && d->next_try && d->next_try < next)
            next = d->next_try;
    for (struct shm_listener *l = t->listeners; l; l = l->next)
        if (l->paused_until && l->paused_until < next)
            next = l->paused_until;
    if (next == UINT64_MAX)
        return -1;
    return next <= now ? 0 : (int)((next - now + 999999u) / 1000000u);
}

static void *shm_thread(void *arg)
{
    struct shm_tran *t = arg;
    struct epoll_event evs[32];
    pthread_mutex_lock(&t->lk);
    while (!atomic_load(&t->stop)) {
        /* at least once a second: the pollable fd's watchdog */
        int timeout = next_timeout_ms(t);
        if (timeout < 0 || timeout > 1000)
            timeout = 1000;
        pthread_mutex_unlock(&t->lk);
        int n = epoll_wait(t->epfd, evs, 32, timeout);
        pthread_mutex_lock(&t->lk);
        if (atomic_load(&t->stop))
            break;
        for (int i = 0; i < n; i++) {
            struct shm_ev *ev = evs[i].data.ptr;
            switch (ev->kind) {
            case SHM_EV_CMD: {
                uint64_t v;
                ssize_t r = read(ev->fd, &v, sizeof v);
                FY_UNUSED(r);
                break;
            }
            case SHM_EV_LISTENER:
                on_accept(t, (struct shm_listener *)ev);
                break;
            case SHM_EV_PENDING:
                on_pending(t, (struct shm_pending *)ev);
                /* the list changed under later events of this batch: they
                 * may point at freed pendings, so take a fresh batch */
                i = n;
                break;
            case SHM_EV_PIPE:
                on_pipe_event(t, (struct shm_pipe *)((char *)ev - offsetof(struct shm_pipe, ev)));
                i = n; /* ditto: pipes may have gone */
                break;
            }
        }
        uint64_t now = fy_now_mono_ns();
        for (struct shm_pending *p = t->pendings, *nx; p; p = nx) {
            nx = p->next;
            if (p->deadline <= now)
                pending_free(t, p); /* half a handshake, then silence */
        }
        listeners_resume(t, now);
        fy_sock_fd_watchdog(t->s);
        run_dialers(t);
    }
    pthread_mutex_unlock(&t->lk);
    return NULL;
}

static void shm_close_all(ferry_socket *s)
{
    pthread_mutex_lock(&s->mtx);
    struct shm_tran *t = s->shm_tran;
    s->shm_tran = NULL;
    pthread_mutex_unlock(&s->mtx);
    if (t == NULL)
        return;
    atomic_store(&t->stop, 1);
    tran_poke(t);
    if (t->started)
        pthread_join(t->thr, NULL);
    while (t->listeners) {
        struct shm_listener *l = t->listeners;
        t->listeners = l->next;
        close(l->ev.fd);
        free(l);
    }
    while (t->pendings)
        pending_free(t, t->pendings);
    while (t->dialers) {
        struct shm_dialer *d = t->dialers;
        t->dialers = d->next;
        free(d);
    }
    for (size_t i = 0; i < t->nwatched; i++) {
        t->watched[i]->dialer = NULL;
        shutdown(t->watched[i]->ctl_fd, SHUT_RDWR);
        fy_pipe_unref(&t->watched[i]->base);
    }
    free(t->watched);
    close(t->epfd);
    close(t->cmd.fd);
    pthread_mutex_destroy(&t->lk);
    free(t);
}

const struct fy_tran_ops fy_shm_tran = {
    .scheme = "shm",
    .listen = shm_listen,
    .dial = shm_dial,
    .close_all = shm_close_all,
    .list = fy_shm_list,
};

/* --- `ferry ls`: live endpoints ------------------------------------------------ */

/* Asks the listener of NAME for its peers. out->pid and out->uid are the
 * listener's as the kernel reports them (SO_PEERCRED), not what it says;
 * the peers' pids are those the listener had from the kernel. */
int fy_shm_stat(const char *name, struct shm_ctl *out)
{
    struct sockaddr_un sa;
    socklen_t sl = shm_addr(&sa, name);
    int fds[4], nfds, rc;
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    uint64_t deadline = fy_deadline_ns(1000);
    if (connect(fd, (struct sockaddr *)&sa, sl) != 0) {
        rc = errno == ECONNREFUSED || errno == ENOENT ? FERRY_ENOENT : -errno;
        close(fd);
        return rc;
    }
    rc = wait_readable(fd, deadline);
    if (rc == 0)
        rc = ctl_recv(fd, out, fds, &nfds);
    if (rc == 0) {
        close_fds(fds, nfds);
        if (out->op == SHM_OP_REFUSE)
            rc = out->err;
    }
    if (rc == 0) {
        struct shm_ctl req;
        ctl_init(&req, SHM_OP_STAT_REQ, NULL);
        rc = ctl_send(fd, &req, NULL, 0);
    }
    if (rc == 0)
        rc = wait_readable(fd, deadline);
    if (rc == 0)
        rc = ctl_recv(fd, out, fds, &nfds);
    if (rc == 0) {
        close_fds(fds, nfds);
        if (out->op != SHM_OP_STAT_REP || out->npeers > SHM_STAT_PEERS)
            rc = FERRY_EPROTO;
    }
    struct ucred cr;
    socklen_t cl = sizeof cr;
    if (rc == 0 && getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl) != 0)
        rc = -errno;
    if (rc == 0) {
        out->pid = (int32_t)cr.pid;
        out->uid = (uint32_t)cr.uid;
    }
    close(fd);
    return rc;
}
