/*
 * poller.c - ferry_poller: one thread waiting on many sockets and plain
 * file descriptors (ferry.h states the contract).
 *
 * It waits in an epoll set of its own, in the caller's thread: it is not
 * the I/O threads' event loop (loop.c), serves no transport, and holds no
 * lock while it sleeps.
 *
 * A socket is watched through a copy (dup) of its pollable fd, so that the
 * registration stays the poller's even when the socket is closed by
 * another thread: ferry_close writes the fd before closing its own copy,
 * and the wait wakes and reports FERRY_POLLERR. The poller also holds a
 * reference on the socket, which keeps its memory (and mutex) valid until
 * the entry is removed.
 *
 * Level-triggered sockets over an armed notification. A socket's fd is
 * written only after the socket was armed (fy_sock_ready with arm), so an
 * idle socket costs nothing per wait. The entries that may be ready are
 * kept on a "hot" list: new ones, ones the epoll set reported, and every
 * one reported ready by the last wait (it stays ready until the user
 * receives, so the next wait must look at it again). A wait looks at the
 * hot entries only; one found not ready is armed (then looked at once
 * more, so nothing slips between) and leaves the list. Only when nothing is
 * ready does the wait sleep in epoll. So the cost of a wait is the ready
 * entries plus the ones that became ready, not the number registered.
 */
#include "sock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

struct fy_poll_entry {
    ferry_socket *s; /* NULL for a plain fd */
    int fd;          /* the user's fd, or our copy of the socket's pollable fd */
    int events;
    void *user;
    int hot;  /* on the hot list */
    int cold; /* looked at and found not ready: leaves the hot list */
    int gone; /* removed (on the dead list) */
};

struct ferry_poller {
    int epfd;
    struct fy_poll_entry **ents; /* registered, in no particular order */
    size_t n, cap;
    struct fy_poll_entry **hot; /* may be ready: look before sleeping */
    size_t nhot, hotcap;
    size_t rot;    /* where the next look starts: ready entries take turns */
    int fds_first; /* alternates: neither sockets nor fds crowd the other out */
    /* entries whose fd epoll may still hold (the user closed it before
     * removing it, and another copy keeps the file open): kept until the
     * epoll set is rebuilt without them, so an event naming one finds it */
    struct fy_poll_entry **dead;
    size_t ndead, deadcap;
};

int ferry_poller_new(ferry_poller **out)
{
    fy_err_clear();
    if (out == NULL)
        return FERRY_EINVAL;
    *out = NULL;
    ferry_poller *p = calloc(1, sizeof *p);
    if (p == NULL)
        return fy_err(FERRY_ENOMEM, "poller new");
    p->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (p->epfd < 0) {
        int rc = fy_err(-errno, "poller new: epoll_create1");
        free(p);
        return rc;
    }
    *out = p;
    return 0;
}

static struct fy_poll_entry *find(ferry_poller *p, ferry_socket *s, int fd, size_t *at)
{
    for (size_t i = 0; i < p->n; i++) {
        struct fy_poll_entry *e = p->ents[i];
        if (s != NULL ? e->s == s : (e->s == NULL && e->fd == fd)) {
            if (at)
                *at = i;
            return e;
        }
    }
    return NULL;
}

static int grow(void *arr, size_t *cap, size_t n)
{
    if (n < *cap)
        return 0;
    size_t c = *cap ? *cap * 2 : 16;
    void **v = realloc(*(void ***)arr, c * sizeof *v);
    if (v == NULL)
        return FERRY_ENOMEM;
    *(void ***)arr = v;
    *cap = c;
    return 0;
}

static int make_hot(ferry_poller *p, struct fy_poll_entry *e)
{
    if (e->hot)
        return 0;
    if (grow(&p->hot, &p->hotcap, p->nhot) != 0)
        return FERRY_ENOMEM;
    p->hot[p->nhot++] = e;
    e->hot = 1;
    return 0;
}

static void drop_hot(ferry_poller *p, struct fy_poll_entry *e)
{
    for (size_t i = 0; e->hot && i < p->nhot; i++) {
        if (p->hot[i] == e) {
            p->hot[i] = p->hot[--p->nhot];
            e->hot = 0;
        }
    }
}

static uint32_t epoll_events(int events)
{
    return (events & FERRY_POLLIN ? EPOLLIN : 0) | (events & FERRY_POLLOUT ? EPOLLOUT : 0);
}

static int entry_add(ferry_poller *p, ferry_socket *s, int fd, int events, void *user)
{
    if (p == NULL || (s == NULL && fd < 0) || (events & ~(FERRY_POLLIN | FERRY_POLLOUT)))
        return FERRY_EINVAL;
    if (find(p, s, fd, NULL) != NULL)
        return fy_err(FERRY_EINVAL, "poller add: already registered");
    if (s != NULL && atomic_load_explicit(&s->npollers, memory_order_relaxed) != 0)
        return fy_err(FERRY_EINVAL, "poller add: the socket is in another poller");
    if (grow(&p->ents, &p->cap, p->n) != 0)
        return fy_err(FERRY_ENOMEM, "poller add");
    struct fy_poll_entry *e = calloc(1, sizeof *e);
    if (e == NULL)
        return fy_err(FERRY_ENOMEM, "poller add");
    *e = (struct fy_poll_entry){.s = s, .fd = fd, .events = events, .user = user};
    struct epoll_event ev = {.events = epoll_events(events), .data.ptr = e};
    if (s != NULL) {
        /* our own copy of the pollable fd (every socket has one, even one
         * that cannot receive: room to send is signalled on it too): the
         * registration stays ours when the socket closes */
        e->fd = fcntl(s->event_fd, F_DUPFD_CLOEXEC, 0);
        if (e->fd < 0) {
            free(e);
            return fy_err(-errno, "poller add: a copy of the socket's fd");
        }
        ev.events = EPOLLIN; /* a datagram on it: something may have changed */
    }
    if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, e->fd, &ev) != 0) {
        int rc = fy_err(-errno, "poller add: epoll_ctl");
        if (s != NULL)
            close(e->fd);
        free(e);
        return rc;
    }
    if (s != NULL) {
        atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&s->npollers, 1, memory_order_relaxed);
        if (make_hot(p, e) != 0) { /* looked at by the next wait, which arms it */
            epoll_ctl(p->epfd, EPOLL_CTL_DEL, e->fd, NULL);
            close(e->fd);
            atomic_fetch_sub_explicit(&s->npollers, 1, memory_order_relaxed);
            fy_sock_unref(s);
            free(e);
            return fy_err(FERRY_ENOMEM, "poller add");
        }
    }
    p->ents[p->n++] = e;
    return 0;
}

static int entry_modify(ferry_poller *p, ferry_socket *s, int fd, int events, void *user)
{
    if (p == NULL || (events & ~(FERRY_POLLIN | FERRY_POLLOUT)))
        return FERRY_EINVAL;
    struct fy_poll_entry *e = find(p, s, fd, NULL);
    if (e == NULL)
        return fy_err(FERRY_EINVAL, "poller modify: not registered");
    if (s == NULL) {
        struct epoll_event ev = {.events = epoll_events(events), .data.ptr = e};
        if (epoll_ctl(p->epfd, EPOLL_CTL_MOD, fd, &ev) != 0)
            return fy_err(-errno, "poller modify: epoll_ctl");
    }
    e->events = events;
    e->user = user;
    return s != NULL && make_hot(p, e) != 0 ? fy_err(FERRY_ENOMEM, "poller modify") : 0;
}

static void entry_free(ferry_poller *p, struct fy_poll_entry *e)
{
    drop_hot(p, e);
    if (e->s != NULL) {
        epoll_ctl(p->epfd, EPOLL_CTL_DEL, e->fd, NULL); /* our copy: always there */
        close(e->fd);
        atomic_fetch_sub_explicit(&e->s->npollers, 1, memory_order_relaxed);
        fy_sock_unref(e->s);
        free(e);
        return;
    }
    /* the fd stays the user's; if it was closed first, epoll may still
     * hold the file (another copy keeps it open) and name e in an event */
    if (epoll_ctl(p->epfd, EPOLL_CTL_DEL, e->fd, NULL) == 0 ||
        grow(&p->dead, &p->deadcap, p->ndead) != 0) {
        free(e);
        return;
    }
    e->gone = 1;
    p->dead[p->ndead++] = e;
}

static int entry_remove(ferry_poller *p, ferry_socket *s, int fd)
{
    if (p == NULL)
        return FERRY_EINVAL;
    size_t at;
    struct fy_poll_entry *e = find(p, s, fd, &at);
    if (e == NULL)
        return fy_err(FERRY_EINVAL, "poller remove: not registered");
    p->ents[at] = p->ents[--p->n];
    entry_free(p, e);
    return 0;
}

int ferry_poller_add(ferry_poller *p, ferry_socket *s, int events, void *user)
{
    fy_err_clear();
    return s == NULL ? FERRY_EINVAL : entry_add(p, s, -1, events, user);
}

int ferry_poller_modify(ferry_poller *p, ferry_socket *s, int events, void *user)
{
    fy_err_clear();
    return s == NULL ? FERRY_EINVAL : entry_modify(p, s, -1, events, user);
}

int ferry_poller_remove(ferry_poller *p, ferry_socket *s)
{
    fy_err_clear();
    return s == NULL ? FERRY_EINVAL : entry_remove(p, s, -1);
}

int ferry_poller_add_fd(ferry_poller *p, int fd, int events, void *user)
{
    fy_err_clear();
    return entry_add(p, NULL, fd, events, user);
}

int ferry_poller_modify_fd(ferry_poller *p, int fd, int events, void *user)
{
    fy_err_clear();
    return fd < 0 ? FERRY_EINVAL : entry_modify(p, NULL, fd, events, user);
}

int ferry_poller_remove_fd(ferry_poller *p, int fd)
{
    fy_err_clear();
    return fd < 0 ? FERRY_EINVAL : entry_remove(p, NULL, fd);
}

void ferry_poller_free(ferry_poller *p)
{
    if (p == NULL)
        return;
    while (p->n > 0)
        entry_free(p, p->ents[--p->n]);
    close(p->epfd); /* before the dead entries: no event can name one now */
    p->epfd = -1;
    for (size_t i = 0; i < p->ndead; i++)
        free(p->dead[i]);
    free(p->dead);
    free(p->ents);
    free(p->hot);
    free(p);
}

/* Looks at the hot entries, the ready ones into ev (at most max); an entry
 * found not ready is armed, looked at once more, and leaves the list. The
 * look starts where the last one stopped, so that with more ready entries
 * than max each gets its turn. */
static int look_hot(ferry_poller *p, ferry_poll_event *ev, int max)
{
    size_t nh = p->nhot, start = nh ? p->rot % nh : 0, seen = 0;
    int n = 0;
    for (; seen < nh && n < max; seen++) {
        struct fy_poll_entry *e = p->hot[(start + seen) % nh];
        int r = fy_sock_ready(e->s, e->events, 0);
        if (r == 0)
            r = fy_sock_ready(e->s, e->events, 1);
        e->cold = r == 0;
        if (r != 0)
            ev[n++] = (ferry_poll_event){.socket = e->s, .fd = -1, .events = r, .user = e->user};
    }
    size_t w = 0;
    for (size_t i = 0; i < nh; i++) {
        struct fy_poll_entry *e = p->hot[i];
        if (e->cold) {
            e->cold = e->hot = 0;
            continue;
        }
        p->hot[w++] = e;
    }
    p->nhot = w;
    p->rot = start + seen;
    return n;
}

static int user_events(uint32_t ep, int wanted)
{
    int r = 0;
    if (ep & EPOLLIN)
        r |= FERRY_POLLIN;
    if (ep & EPOLLOUT)
        r |= FERRY_POLLOUT;
    return (r & wanted) | (ep & (EPOLLERR | EPOLLHUP) ? FERRY_POLLERR : 0);
}

/* A new epoll set holding the live entries only: the one way to drop a
 * registration whose fd the user closed before removing it (epoll keeps
 * the file while another copy holds it open, and its events would keep
 * every wait from sleeping). Then the dead entries can go. */
static int rebuild(ferry_poller *p)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        return fy_err(-errno, "poller wait: epoll_create1");
    for (size_t i = 0; i < p->n; i++) {
        struct fy_poll_entry *e = p->ents[i];
        struct epoll_event ev = {.events = e->s ? EPOLLIN : epoll_events(e->events), .data.ptr = e};
        epoll_ctl(ep, EPOLL_CTL_ADD, e->fd, &ev); /* a closed user fd: not there, as before */
    }
    close(p->epfd);
    p->epfd = ep;
    for (size_t i = 0; i < p->ndead; i++)
        free(p->dead[i]);
    p->ndead = 0;
    return 0;
}

/* Collects what the epoll set reports (sleeping up to ms): sockets go on
 * the hot list, plain fds straight into ev. Returns the fds reported, or
 * < 0. */
static int collect(ferry_poller *p, ferry_poll_event *ev, int max, int ms)
{
    struct epoll_event got[64];
    int k = epoll_wait(p->epfd, got, (int)FY_ARRAY_LEN(got), ms);
    if (k < 0)
        return errno == EINTR ? fy_err(FERRY_EINTR, "poller wait") : fy_err(-errno, "poller wait");
    int n = 0, stale = 0;
    for (int i = 0; i < k; i++) {
        struct fy_poll_entry *e = got[i].data.ptr;
        if (e->gone) { /* a file the user closed without removing it first */
            stale = 1;
            continue;
        }
        if (e->s != NULL) {
            if (make_hot(p, e) != 0)
                return fy_err(FERRY_ENOMEM, "poller wait");
        } else if (n < max) {
            int r = user_events(got[i].events, e->events);
            if (r)
                ev[n++] =
                    (ferry_poll_event){.socket = NULL, .fd = e->fd, .events = r, .user = e->user};
        }
    }
    int rc = stale ? rebuild(p) : 0;
    if (rc != 0)
        return rc;
    return n;
}

/* What epoll reports (sleeping up to ms) and what the hot sockets have:
 * the ready entries into ev, fds and sockets taking turns to go first so
 * that neither kind can keep the other out of a short ev. A count, or < 0. */
static int gather(ferry_poller *p, ferry_poll_event *ev, int max, int ms)
{
    ferry_poll_event fdev[64];
    int nfd = collect(p, fdev, max < 64 ? max : 64, ms);
    if (nfd < 0)
        return nfd;
    int n = 0;
    p->fds_first = !p->fds_first;
    if (p->fds_first) {
        memcpy(ev, fdev, (size_t)nfd * sizeof *ev);
        n = nfd;
        n += look_hot(p, ev + n, max - n);
    } else {
        n = look_hot(p, ev, max);
        int k = nfd < max - n ? nfd : max - n; /* the rest: level-triggered, reported again */
        memcpy(ev + n, fdev, (size_t)k * sizeof *ev);
        n += k;
    }
    return n;
}

int ferry_poller_wait(ferry_poller *p, ferry_poll_event *ev, int max, int timeout_ms)
{
    fy_err_clear();
    if (p == NULL || ev == NULL || max <= 0)
        return FERRY_EINVAL;
    uint64_t deadline =
        timeout_ms < 0 ? UINT64_MAX : fy_now_mono_ns() + (uint64_t)timeout_ms * 1000000u;
    for (;;) {
        /* what is ready now, without sleeping */
        int n = gather(p, ev, max, 0);
        if (n != 0)
            return n;
        uint64_t now = fy_now_mono_ns();
        if (now >= deadline)
            return 0;
        int ms = deadline == UINT64_MAX ? -1
                                        : (int)((deadline - now + 999999u) / 1000000u > 1000000000u
                                                    ? 1000000000
                                                    : (deadline - now + 999999u) / 1000000u);
        n = gather(p, ev, max, ms);
        if (n != 0)
            return n;
        /* woken with nothing ready (a spurious datagram, a message another
         * thread took first): sleep again until the deadline */
    }
}
