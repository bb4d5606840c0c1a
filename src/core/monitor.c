/*
 * monitor.c - a socket's events, queued for the program (ferry.h,
 * ferry_monitor; who reports what: monitor.h).
 *
 * Why a queue read with a call, and not a monitor socket as libzmq has.
 * A monitor socket is a socket: its events wait at a high-water mark like
 * messages, and what is dropped there is dropped silently; its reader must
 * be wired up over an inproc pair and its lifetime tied to the socket's;
 * and a reader that stops reading holds back the socket it watches. Here
 * the queue belongs to the monitor, a plain object: a full queue loses the
 * newest events and counts them (in the next event read and in
 * ferry_monitor_lost), CLOSED has a slot kept for it, nothing the socket
 * does ever waits for the reader, and the queue outlives the socket so its
 * last events can be read after ferry_close. Its eventfd makes it a
 * descriptor like any other for poll, epoll or a ferry_poller.
 *
 * Locks. s->mon_lk guards s->mon (which monitor, if any); m->lk guards the
 * queue. Both are leaves (monitor.h). The monitor holds a reference on its
 * socket, so s->mon_lk stays valid for ferry_monitor_close even after
 * ferry_close.
 */
#include "monitor.h"

#include "loop.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define MON_QUEUE_DEFAULT 256
#define MON_QUEUE_MAX 65536
#define MON_DROP_NS 100000000u /* at most one DROPPED event per cause per 100 ms */

enum { DROP_FULL, DROP_NOROUTE, DROP_CAUSES };

struct ferry_monitor {
    pthread_mutex_t lk;
    ferry_socket *sock; /* a reference; NULL once freed by ferry_monitor_close */
    unsigned kinds;
    int efd;        /* readable iff an event waits or the socket closed */
    ferry_event *q; /* cap + 1 slots: the last is kept for CLOSED */
    size_t cap, head, n;
    uint64_t lost, lost_since; /* in all; since the last event queued */
    int closed;                /* CLOSED is queued: nothing comes after it */
    /* drops held back by the rate limit (DROPPED) */
    uint64_t drops[DROP_CAUSES];
    uint64_t drop_sent_ns[DROP_CAUSES];
};

static uint64_t now_real_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The eventfd follows the queue: written when it stops being empty, read
 * back to zero when it empties (m->lk held). */
static void efd_set(struct ferry_monitor *m, int ready)
{
    uint64_t v = 1;
    ssize_t r = ready ? write(m->efd, &v, sizeof v) : read(m->efd, &v, sizeof v);
    FY_UNUSED(r); /* EAGAIN: already so */
}

/* Queues ev (m->lk held); a full queue counts it as lost instead. */
static void push(struct ferry_monitor *m, const ferry_event *ev)
{
    if (m->closed)
        return;
    int closing = ev->kind == FERRY_EVENT_CLOSED;
    if (m->n >= m->cap + (size_t)closing) {
        m->lost++;
        m->lost_since++;
        return;
    }
    ferry_event *slot = &m->q[(m->head + m->n) % (m->cap + 1)];
    *slot = *ev;
    slot->lost = m->lost_since;
    m->lost_since = 0;
    if (m->n++ == 0)
        efd_set(m, 1);
    m->closed = closing;
}

/* --- reporting ---------------------------------------------------------------- */

/* Who the peer of p is, as the event tells it. */
static void ev_peer_of(ferry_event *ev, struct fy_pipe *p)
{
    ev->peer_id = p->id > 0 && !p->pending ? (unsigned)p->id : 0;
    const char *tran = "";
    if (p->addr[0] == '\0' && p->ops->describe) /* before its handshake: not kept yet */
        p->ops->describe(p, &tran, ev->peer_addr, sizeof ev->peer_addr);
    else
        snprintf(ev->peer_addr, sizeof ev->peer_addr, "%s", p->addr);
    ev->peer_pid = p->peer_pid;
    ev->peer_uid = p->peer_pid > 0 ? (int64_t)p->peer_uid : -1;
}

static void deliver(ferry_socket *s, const ferry_event *ev)
{
    pthread_mutex_lock(&s->mon_lk);
    struct ferry_monitor *m = s->mon;
    if (m != NULL && ((m->kinds >> ev->kind) & 1u)) {
        pthread_mutex_lock(&m->lk);
        push(m, ev);
        pthread_mutex_unlock(&m->lk);
    }
    pthread_mutex_unlock(&s->mon_lk);
}

void fy_ev_report(ferry_socket *s, int kind, int err, int64_t value, const char *url,
                  struct fy_pipe *p, const struct fy_ev_peer *peer, const char *fmt, ...)
{
    if (!fy_ev_wanted(s, kind))
        return;
    ferry_event ev;
    memset(&ev, 0, sizeof ev);
    ev.kind = kind;
    ev.error = err;
    ev.value = value;
    ev.time_ns = now_real_ns();
    ev.peer_uid = -1;
    if (url == NULL && p != NULL)
        url = p->url;
    snprintf(ev.endpoint, sizeof ev.endpoint, "%s", url ? url : "");
    if (p != NULL) {
        ev_peer_of(&ev, p);
    } else if (peer != NULL) {
        ev.peer_pid = peer->pid;
        ev.peer_uid = peer->uid;
        snprintf(ev.peer_addr, sizeof ev.peer_addr, "%s", peer->addr ? peer->addr : "");
    }
    if (fmt != NULL) { /* escaped by the caller (monitor.h) */
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ev.reason, sizeof ev.reason, fmt, ap);
        va_end(ap);
    }
    deliver(s, &ev);
}

/* Queues a DROPPED event for what cause c holds back (m->lk held). */
static void drops_send(struct ferry_monitor *m, int c, uint64_t now_mono)
{
    if (m->drops[c] == 0)
        return;
    ferry_event ev;
    memset(&ev, 0, sizeof ev);
    ev.kind = FERRY_EVENT_DROPPED;
    ev.error = c == DROP_FULL ? FERRY_EAGAIN : FERRY_EHOSTUNREACH;
    ev.value = (int64_t)m->drops[c];
    ev.time_ns = now_real_ns();
    ev.peer_uid = -1;
    snprintf(ev.reason, sizeof ev.reason, "%s",
             c == DROP_FULL ? "a peer was full (high-water mark or ring)"
                            : "no peer to go to (an unknown routing id, a requester gone)");
    push(m, &ev);
    m->drops[c] = 0;
    m->drop_sent_ns[c] = now_mono;
}

/* The rate limit's deadline has come: what was held back goes (I/O thread). */
static void drops_due(struct fy_timer *t)
{
    ferry_socket *s = (ferry_socket *)((char *)t - offsetof(ferry_socket, mon_timer));
    pthread_mutex_lock(&s->mon_lk);
    struct ferry_monitor *m = s->mon;
    if (m != NULL) {
        pthread_mutex_lock(&m->lk);
        uint64_t now = fy_now_mono_ns(), next = UINT64_MAX;
        for (int c = 0; c < DROP_CAUSES; c++) {
            uint64_t due = m->drop_sent_ns[c] + MON_DROP_NS;
            if (now >= due)
                drops_send(m, c, now);
            else if (m->drops[c] != 0 && due < next)
                next = due; /* the other cause's turn is not yet */
        }
        if (next != UINT64_MAX)
            fy_timer_set(s->loop, &s->mon_timer, drops_due, next);
        pthread_mutex_unlock(&m->lk);
    }
    pthread_mutex_unlock(&s->mon_lk);
}

void fy_ev_dropped(ferry_socket *s, int why)
{
    if (!fy_ev_wanted(s, FERRY_EVENT_DROPPED))
        return;
    int c = why == FY_DROP_NOROUTE ? DROP_NOROUTE : DROP_FULL;
    /* the timer runs on the socket's I/O thread; a socket without one (no
     * endpoint: nothing to drop for but a routing id) reports each drop */
    struct fy_loop *loop = s->loop;
    pthread_mutex_lock(&s->mon_lk);
    struct ferry_monitor *m = s->mon;
    if (m != NULL && (m->kinds >> FERRY_EVENT_DROPPED) & 1u) {
        pthread_mutex_lock(&m->lk);
        m->drops[c]++;
        uint64_t now = fy_now_mono_ns(), due = m->drop_sent_ns[c] + MON_DROP_NS;
        if (m->drop_sent_ns[c] == 0 || now >= due || loop == NULL) {
            drops_send(m, c, now);
        } else if (m->drops[c] == 1) { /* the first held back: the rest join it */
            s->mon_timer_used = 1;
            fy_timer_set(loop, &s->mon_timer, drops_due, due);
        }
        pthread_mutex_unlock(&m->lk);
    }
    pthread_mutex_unlock(&s->mon_lk);
}

static void timer_stop(void *arg) { fy_timer_stop(arg); }

void fy_ev_socket_closed(ferry_socket *s)
{
    if (s->loop != NULL && s->mon_timer_used)
        fy_loop_run(s->loop, timer_stop, &s->mon_timer);
    pthread_mutex_lock(&s->mon_lk);
    struct ferry_monitor *m = s->mon;
    if (m != NULL) {
        pthread_mutex_lock(&m->lk);
        uint64_t now = fy_now_mono_ns();
        for (int c = 0; c < DROP_CAUSES; c++)
            drops_send(m, c, now);
        ferry_event ev;
        memset(&ev, 0, sizeof ev);
        ev.kind = FERRY_EVENT_CLOSED;
        ev.time_ns = now_real_ns();
        ev.peer_uid = -1;
        snprintf(ev.endpoint, sizeof ev.endpoint, "%s", s->endpoint);
        push(m, &ev);
        m->closed = 1;
        efd_set(m, 1); /* readable from now on: the reader learns it is over */
        pthread_mutex_unlock(&m->lk);
        s->mon = NULL;
        atomic_store_explicit(&s->mon_kinds, 0, memory_order_relaxed);
    }
    s->mon_gone = 1;
    pthread_mutex_unlock(&s->mon_lk);
}

/* --- the program's side -------------------------------------------------------- */

int ferry_monitor_open(ferry_socket *s, unsigned kinds, int queue, ferry_monitor **out)
{
    fy_err_clear();
    if (s == NULL || out == NULL || queue < 0 || queue > MON_QUEUE_MAX ||
        (kinds & ~(unsigned)FERRY_EVENT_ALL) != 0)
        return fy_err(FERRY_EINVAL, "ferry_monitor_open: kinds 0x%x, queue %d (1 to %d, 0: %d)",
                      kinds, queue, MON_QUEUE_MAX, MON_QUEUE_DEFAULT);
    struct ferry_monitor *m = calloc(1, sizeof *m);
    size_t cap = queue ? (size_t)queue : MON_QUEUE_DEFAULT;
    if (m == NULL || (m->q = calloc(cap + 1, sizeof *m->q)) == NULL) {
        free(m);
        return fy_err(FERRY_ENOMEM, "ferry_monitor_open: a queue of %zu events", cap);
    }
    m->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (m->efd < 0) {
        int rc = fy_syserr("ferry_monitor_open: eventfd");
        free(m->q);
        free(m);
        return rc;
    }
    pthread_mutex_init(&m->lk, NULL);
    m->cap = cap;
    m->kinds = kinds | (1u << FERRY_EVENT_CLOSED);
    m->sock = s;
    int rc = 0;
    pthread_mutex_lock(&s->mon_lk);
    if (s->mon_gone)
        rc = fy_err(FERRY_ECLOSED, "ferry_monitor_open: the socket is closing");
    else if (s->mon != NULL)
        rc = fy_err(FERRY_ESTATE, "ferry_monitor_open: the socket has a monitor already");
    if (rc == 0) {
        atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
        s->mon = m;
        atomic_store_explicit(&s->mon_kinds, m->kinds, memory_order_relaxed);
    }
    pthread_mutex_unlock(&s->mon_lk);
    if (rc != 0) {
        m->sock = NULL;
        ferry_monitor_close(m);
        return rc;
    }
    *out = m;
    return 0;
}

/* Takes the next event (m->lk held): 0, FERRY_EAGAIN none, FERRY_ECLOSED. */
static int pop(struct ferry_monitor *m, ferry_event *ev)
{
    if (m->n == 0)
        return m->closed ? FERRY_ECLOSED : FERRY_EAGAIN;
    *ev = m->q[m->head];
    m->head = (m->head + 1) % (m->cap + 1);
    if (--m->n == 0 && !m->closed)
        efd_set(m, 0);
    return 0;
}

int ferry_monitor_recv(ferry_monitor *m, ferry_event *ev, int timeout_ms)
{
    fy_err_clear();
    if (m == NULL || ev == NULL)
        return FERRY_EINVAL;
    uint64_t deadline = fy_deadline_ns(timeout_ms);
    for (;;) {
        pthread_mutex_lock(&m->lk);
        int rc = pop(m, ev);
        pthread_mutex_unlock(&m->lk);
        if (rc != FERRY_EAGAIN)
            return rc;
        uint64_t now = fy_now_mono_ns();
        if (timeout_ms == 0)
            return FERRY_EAGAIN;
        if (deadline != UINT64_MAX && now >= deadline)
            return FERRY_ETIMEDOUT;
        int wait_ms = -1;
        if (deadline != UINT64_MAX) {
            uint64_t left = (deadline - now + 999999u) / 1000000u;
            wait_ms = left > 1000000 ? 1000000 : (int)left;
        }
        struct pollfd pfd = {.fd = m->efd, .events = POLLIN};
        if (poll(&pfd, 1, wait_ms) < 0 && errno != EINTR)
            return fy_syserr("ferry_monitor_recv: poll");
    }
}

int ferry_monitor_fd(const ferry_monitor *m) { return m ? m->efd : FERRY_EINVAL; }

uint64_t ferry_monitor_lost(ferry_monitor *m)
{
    if (m == NULL)
        return 0;
    pthread_mutex_lock(&m->lk);
    uint64_t n = m->lost;
    pthread_mutex_unlock(&m->lk);
    return n;
}

void ferry_monitor_close(ferry_monitor *m)
{
    if (m == NULL)
        return;
    ferry_socket *s = m->sock;
    if (s != NULL) {
        pthread_mutex_lock(&s->mon_lk);
        if (s->mon == m) {
            s->mon = NULL;
            atomic_store_explicit(&s->mon_kinds, 0, memory_order_relaxed);
        }
        pthread_mutex_unlock(&s->mon_lk);
        fy_sock_unref(s);
    }
    close(m->efd);
    pthread_mutex_destroy(&m->lk);
    free(m->q);
    free(m);
}

const char *ferry_event_name(int kind)
{
    switch (kind) {
#define FY_EVENT_NAME(sym, val, name)                                                              \
    case val:                                                                                      \
        return name;
        FERRY_EVENT_MAP(FY_EVENT_NAME)
#undef FY_EVENT_NAME
    }
    return "unknown";
}
