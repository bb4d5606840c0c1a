/*
 * socket.c - the socket core: open/close, options, the send and receive
 * paths, and the one place where callers wait (sock_run).
 *
 * The protocols (src/proto/) decide where a message goes; the transports
 * (src/transport/) move it. This file knows neither: it buffers the parts
 * of a multipart message, hands whole messages to the protocol, and waits
 * on the socket's wake word when the protocol says "not now".
 */
#include "auth.h"
#include "loop.h"
#include "monitor.h"
#include "sock.h"

#include <fcntl.h>
#include <assert.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/mman.h>
#include <sys/un.h>
#include <unistd.h>

static const struct fy_tran_ops *const transports[] = {&fy_shm_tran, &fy_tcp_tran, &fy_ipc_tran};

/* --- wake-ups ------------------------------------------------------------ */

/* 1 if w's owner sleeps and we are the first waker since it armed: the
 * others need not (FUTEX_WAKE wakes all its threads, and each re-arms
 * before sleeping). */
static int wake_claim(struct fy_wake *w)
{
    /* Pairs with the waiter's seq_cst increment of sleepers before its
     * last check: either it sees our progress, or we see it sleeping. */
    atomic_thread_fence(memory_order_seq_cst);
    return atomic_load_explicit(&w->sleepers, memory_order_relaxed) != 0 &&
           atomic_load_explicit(&w->woken, memory_order_relaxed) == 0 &&
           atomic_exchange_explicit(&w->woken, 1, memory_order_seq_cst) == 0;
}

static void wake_word(_Atomic uint32_t *word)
{
    atomic_fetch_add_explicit(word, 1, memory_order_release);
    fy_futex_wake(word, INT_MAX);
}

static int wake_seq(struct fy_wake *w)
{
    if (!wake_claim(w))
        return 0;
    wake_word(&w->seq);
    return 1;
}

/* 1 if the pollable fd is armed and we are the one to write it. */
static int wake_fd_claim(struct fy_wake *w)
{
    return atomic_load_explicit(&w->fd_armed, memory_order_relaxed) &&
           atomic_exchange_explicit(&w->fd_armed, 0, memory_order_acq_rel);
}

static int wake_fd(struct fy_wake *w, int efd)
{
    if (efd < 0 || !wake_fd_claim(w))
        return 0;
    ssize_t n = send(efd, "m", 1, MSG_DONTWAIT | MSG_NOSIGNAL);
    FY_UNUSED(n); /* EAGAIN: the fd is readable already */
    return 1;
}

int fy_wake(struct fy_wake *w, int efd)
{
    int sys = wake_seq(w);
    return wake_fd(w, efd) | sys;
}

int fy_wake_peer(ferry_socket *s, struct fy_wake *w, int efd, _Atomic uint32_t *bell,
                 const _Atomic uint32_t *listening)
{
    if (bell == NULL || s == NULL || !s->bell_gather)
        return fy_wake(w, efd);
    int sys = 0;
    s->bell_seen++;
    if (wake_claim(w)) {
        /* Read after the claim: a reader that stops listening clears the
         * flag before it next arms, so a claim of that arming sees it. */
        if (!atomic_load_explicit(listening, memory_order_relaxed)) {
            wake_word(&w->seq);
            sys = 1;
        } else { /* one system call for all at the ring: not this pipe's (fy_pipe_stamp) */
            /* a socket has one bell: its one shm:// transport's pool */
            assert(s->bell_word == NULL || s->bell_word == bell);
            if (s->bell_n < FY_BELL_BATCH)
                s->bell_woken[s->bell_n] = w;
            s->bell_n++;
            s->bell_word = bell;
        }
    }
    return wake_fd(w, efd) | sys;
}

void fy_bell_ring(ferry_socket *s)
{
    int n = s->bell_n;
    /* The bell wakes every reader asleep on it, those this send had
     * nothing for too: rung when the send went to most of the peers,
     * else each reader is woken through its own word. */
    if (n > 1 && (n > FY_BELL_BATCH || 2u * (size_t)s->bell_seen >= s->npipes))
        wake_word(s->bell_word);
    else
        for (int i = 0; i < n; i++)
            wake_word(&s->bell_woken[i]->seq);
    s->bell_n = 0;
    s->bell_seen = 0;
    s->bell_word = NULL;
}

/* A datagram from the socket to its own pollable fd: the read end sends
 * to its own address, so no second fd is needed (and none a peer holds). */
static void self_signal(ferry_socket *s)
{
    ssize_t n = sendto(s->event_fd, "m", 1, MSG_DONTWAIT | MSG_NOSIGNAL,
                       (const struct sockaddr *)(const void *)s->event_addr, s->event_addrlen);
    FY_UNUSED(n); /* EAGAIN: the fd is readable already */
}

void fy_sock_signal(ferry_socket *s)
{
    wake_seq(s->wake); /* its fence orders the kick's look too */
    fy_park_kick(s);
    if (wake_fd_claim(s->wake))
        self_signal(s);
}

/* Wakes the socket's sleeping callers. The pollable fd is not signalled:
 * it promises a message, and only peers writing data signal it. */
void fy_sock_wake(ferry_socket *s)
{
    wake_seq(s->wake);
    fy_park_kick(s);
}

void fy_sock_note(ferry_socket *s, int bad, const char *what)
{
    if (bad)
        fy_stat_inc(&s->stat->bad_input);
    fy_escape(s->drop_reason, sizeof s->drop_reason, what);
    fy_sock_wake(s); /* a caller may be waiting to see it (FERRY_OPT_ERRORS) */
    if (getenv("FERRY_DEBUG") != NULL)
        fprintf(stderr, "ferry[%d]: %s\n", (int)getpid(), s->drop_reason);
}

/* A poller holding the socket looks at it again after a change the user's
 * own call made (a REP that replied may receive, a REQ that took its reply
 * may send), or a pipe that came or went: nothing else writes the fd for
 * those, and a plain ferry_socket_fd user is not woken by them. mtx held,
 * as it is when a poller arms the fd and looks once more (fy_sock_ready):
 * the lock orders our change against that look, so this needs no fence,
 * and it costs a proxy's every send and receive only a load while the fd
 * is not armed. Callers blocked on the socket are not this one's to wake. */
static void tell_poller(ferry_socket *s)
{
    if (atomic_load_explicit(&s->npollers, memory_order_relaxed) != 0 && wake_fd_claim(s->wake))
        self_signal(s);
}

/* --- pipes ----------------------------------------------------------------- */

void fy_pipe_ref(struct fy_pipe *p)
{
    atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
}

void fy_pipe_set_url(struct fy_pipe *p, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    free(p->url);
    p->url = strdup(buf);
}

void fy_pipe_fini(struct fy_pipe *p)
{
    free(p->url);
    p->url = NULL;
}

void fy_pipe_unref(struct fy_pipe *p)
{
    if (atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) == 1) {
        p->ops->destroy(p);
    }
}

int fy_sock_add_pipe(ferry_socket *s, struct fy_pipe *p)
{
    pthread_mutex_lock(&s->mtx);
    int rc = fy_sock_add_pipe_locked(s, p);
    pthread_mutex_unlock(&s->mtx);
    return rc;
}

/* A peer slot in the counters file, described by its transport. */
static struct fy_stat_peer *pipe_stat_open(ferry_socket *s, struct fy_pipe *p)
{
    const char *tran = "?";
    if (p->ops->describe)
        p->ops->describe(p, &tran, p->addr, sizeof p->addr);
    struct fy_stat_peer *sp = fy_stat_peer_open(s->stat, tran, p->addr, p->peer_pid, p->peer_uid);
    p->stat_heap = sp != NULL && fy_stat_is_heap(sp);
    return sp;
}

int fy_pipe_recv(struct fy_pipe *p, struct fy_rxmsg *m, int check)
{
    size_t n0 = m->nparts;
    int rc = p->ops->recv(p, m, check);
    if (rc == 1) {
        uint64_t bytes = 0;
        for (size_t i = n0; i < m->nparts; i++)
            bytes += m->parts[i]->size;
        fy_pipe_count(p, &p->stat->io.msgs_in, &p->stat->io.bytes_in, bytes);
    }
    return rc;
}

void fy_pipe_depth(struct fy_pipe *p)
{
    struct fy_depth d = {0, 0, 0, 0};
    p->ops->depth(p, &d);
    struct fy_stat_peer *sp = p->stat;
    atomic_store_explicit(&sp->queued_out, d.out_msgs, memory_order_relaxed);
    if (d.out_msgs > atomic_load_explicit(&sp->queued_out_max, memory_order_relaxed))
        atomic_store_explicit(&sp->queued_out_max, d.out_msgs, memory_order_relaxed);
    atomic_store_explicit(&sp->queued_in, d.in_msgs, memory_order_relaxed);
    atomic_store_explicit(&sp->ring_fill, d.out_bytes, memory_order_relaxed);
    atomic_store_explicit(&sp->ring_size, d.ring_size, memory_order_relaxed);
}

void fy_sock_stamp_locked(ferry_socket *s)
{
    for (size_t i = 0; i < s->npipes; i++) {
        struct fy_pipe *p = s->pipes[i];
        if (atomic_load_explicit(&p->stat->io.msgs_in, memory_order_relaxed) +
                atomic_load_explicit(&p->stat->io.msgs_out, memory_order_relaxed) !=
            p->stamped)
            fy_pipe_stamp(p);
    }
}

struct fy_pipe *fy_pipe_by_id(ferry_socket *s, int id)
{
    for (size_t i = 0; i < s->npipes; i++)
        if (s->pipes[i]->id == id)
            return s->pipes[i];
    return NULL;
}

/* A new pipe's id: positive, and not the id of a pipe the socket still
 * has, even after 2^31 connections (REQ and REP find a request's pipe
 * again by its id alone, reqrep.c). mtx held. */
static int pipe_id_next(ferry_socket *s)
{
    for (;;) {
        s->next_pipe_id = s->next_pipe_id >= (unsigned)INT_MAX ? 1u : s->next_pipe_id + 1u;
        if (fy_pipe_by_id(s, (int)s->next_pipe_id) == NULL)
            return (int)s->next_pipe_id;
    }
}

int fy_sock_add_pipe_locked(ferry_socket *s, struct fy_pipe *p)
{
    int rc = 0;
    if (s->closing)
        rc = FERRY_ECLOSED;
    if (rc == 0 && s->npipes == s->cap_pipes) {
        size_t cap = s->cap_pipes ? s->cap_pipes * 2 : 8;
        struct fy_pipe **v = realloc(s->pipes, cap * sizeof *v);
        if (v == NULL)
            rc = FERRY_ENOMEM;
        else {
            s->pipes = v;
            s->cap_pipes = cap;
        }
    }
    if (rc == 0 && s->proto->pipe_size && (p->proto_data = calloc(1, s->proto->pipe_size)) == NULL)
        rc = FERRY_ENOMEM;
    if (rc == 0 && (p->stat = pipe_stat_open(s, p)) == NULL)
        rc = FERRY_ENOMEM;
    if (rc == 0 && s->proto->pipe_add)
        rc = s->proto->pipe_add(s, p);
    if (rc == 0 && !p->pending && s->proto->pipe_start && (rc = s->proto->pipe_start(s, p)) != 0 &&
        s->proto->pipe_rm)
        s->proto->pipe_rm(s, p);
    if (rc != 0) {
        free(p->proto_data);
        p->proto_data = NULL;
        fy_stat_peer_close(NULL, p->stat, p->stat_heap);
        p->stat = NULL;
    }
    if (rc == 0) {
        p->sock = s;
        p->id = pipe_id_next(s);
        fy_stat_peer_id(p->stat, (uint32_t)p->id);
        s->pipes[s->npipes++] = p;
        fy_pipe_ref(p);
        if (p->ops->bell && s->proto->can_recv && s->nbells < FY_BELLS_MAX &&
            (p->bell = p->ops->bell(p)) != NULL) {
            s->nbells++;
            /* A sleep begun before does not hear this bell, yet the peer
             * may ring it for us already (and so claim our wake-up): that
             * sleep ends now, whatever woken says. */
            wake_word(&s->wake->seq);
        }
        fy_sock_wake(s);
        tell_poller(s); /* a peer to send to: a poller's POLLOUT */
        if (!p->pending)
            fy_ev_report(s, FERRY_EVENT_HANDSHAKE_OK, 0, 0, NULL, p, NULL, NULL);
    }
    return rc;
}

int fy_sock_pipe_start_locked(ferry_socket *s, struct fy_pipe *p)
{
    int rc = s->proto->pipe_start ? s->proto->pipe_start(s, p) : 0;
    if (rc == 0 && p->stat != NULL && p->ops->describe) {
        const char *tran = "?";
        p->ops->describe(p, &tran, p->addr, sizeof p->addr);
        fy_stat_peer_describe(p->stat, tran, p->addr, p->peer_pid, p->peer_uid);
    }
    if (rc == 0) {
        p->pending = 0;
        fy_ev_report(s, FERRY_EVENT_HANDSHAKE_OK, 0, 0, NULL, p, NULL, NULL);
    }
    return rc;
}

void fy_sock_remove_pipe(ferry_socket *s, struct fy_pipe *p)
{
    for (size_t i = 0; i < s->npipes; i++) {
        if (s->pipes[i] != p)
            continue;
        memmove(&s->pipes[i], &s->pipes[i + 1], (s->npipes - i - 1) * sizeof *s->pipes);
        s->npipes--;
        p->dead = 1;
        int belled = p->bell != NULL; /* still mapped: a sleep may hold it (fy_sock_wait) */
        if (belled) {
            s->nbells--;
            p->bell = NULL;
        }
        if (s->wake_later == p) { /* its send's wake-up, given while it is whole */
            s->wake_later = NULL;
            p->ops->flush(p);
        }
        p->ops->close(p);
        if (belled) /* the peer may have claimed our wake-up for a bell we no
                       longer hear (it stopped that when close cleared its flag) */
            wake_word(&s->wake->seq);
        if (s->proto->pipe_rm)
            s->proto->pipe_rm(s, p);
        free(p->proto_data);
        p->proto_data = NULL;
        fy_stat_peer_close(s->stat, p->stat, p->stat_heap);
        p->stat = NULL;
        /* a gather (this pipe's flush's too) rings while its wake blocks are mapped */
        if (s->bell_n > 0)
            fy_bell_ring(s);
        fy_pipe_unref(p);
        fy_sock_wake(s);
        tell_poller(s); /* what it waits for may have changed (a REP's requester) */
        return;
    }
}

/* A started pipe's peer is gone, first seen now: DISCONNECTED. */
static void pipe_gone(ferry_socket *s, struct fy_pipe *p, int err, const char *why)
{
    if (!p->dead && !p->pending)
        fy_ev_report(s, FERRY_EVENT_DISCONNECTED, err, 0, NULL, p, NULL, "%s",
                     why && why[0] ? why : ferry_strerror(err));
}

void fy_sock_pipe_failed(ferry_socket *s, struct fy_pipe *p, int rc)
{
    /* a pipe that found its peer gone sets no detail: the thread's may be
     * another pipe's */
    const char *why = rc == FERRY_ECONNRESET ? "the peer went away" : ferry_errdetail();
    if (rc != FERRY_ECONNRESET) /* out of memory is ours, not the peer's doing */
        fy_sock_note(s, rc != FERRY_ENOMEM, why[0] ? why : ferry_strerror(rc));
    pipe_gone(s, p, rc, why);
    fy_sock_remove_pipe(s, p);
}

void fy_sock_pipe_dead(ferry_socket *s, struct fy_pipe *p, int err, const char *why)
{
    pthread_mutex_lock(&s->mtx);
    fy_sock_pipe_dead_locked(s, p, err, why);
    pthread_mutex_unlock(&s->mtx);
}

void fy_sock_pipe_dead_locked(ferry_socket *s, struct fy_pipe *p, int err, const char *why)
{
    pipe_gone(s, p, err, why);
    p->dead = 1;
    /* A socket that receives keeps the pipe until it has taken what the
     * peer committed before it died; the others let it go now. */
    if (!s->proto->can_recv)
        fy_sock_remove_pipe(s, p);
    /* also the pollable fd: a REQ waiting in poll() for a reply must come
     * back to recv() to learn that its peer died */
    fy_sock_signal(s);
}

/* --- messages -------------------------------------------------------------- */

ferry_msg *fy_msg_heap(size_t size)
{
    ferry_msg *m = malloc(sizeof *m + (size ? size : 1));
    if (m == NULL)
        return NULL;
    memset(m, 0, sizeof *m);
    m->data = m + 1;
    m->size = size;
    m->kind = FY_MSG_HEAP;
    return m;
}

/* Drops the pipe reference of a message that holds no ring space. */
static void msg_release(ferry_msg *m)
{
    if (m->pipe != NULL)
        fy_pipe_unref(m->pipe);
    m->pipe = NULL;
}

#define SPARE_MAX 64

/* Heap messages kept for reuse: from FY_BIG_MIN bytes (below it the
 * allocator's own free lists serve well) to FY_BIG_MAX, the largest first
 * buffer a stream transport asks for (64 KiB and a CURVE box's overhead;
 * a larger frame's buffer grows from there, zmtp.h), at most FY_BIG_KEPT
 * bytes a socket: the input queue of a connection pauses at 1 MiB. */
#define FY_BIG_MIN (32u << 10)
#define FY_BIG_MAX ((64u << 10) + 64u)
#define FY_BIG_KEPT (1u << 20)

/* Keeps a heap message ferry_recv copied out; 0 when it is not kept. Its
 * capacity: m->cap when the block's size was noted (a kept block, a stream
 * frame's buffer), else its size (fy_msg_heap allocates exactly). Its data
 * may start past the block's start (an opened CURVE box) but lies in it. */
static int msg_keep_big(ferry_socket *s, ferry_msg *m)
{
    size_t cap = m->cap > m->size ? m->cap : m->size;
    uintptr_t block = (uintptr_t)(m + 1), data = (uintptr_t)m->data;
    if (m->kind != FY_MSG_HEAP || m->pipe != NULL || data < block || data - block > cap ||
        cap < FY_BIG_MIN || cap > FY_BIG_MAX || cap > FY_BIG_KEPT - s->spare_big_bytes ||
        s->closing)
        return 0;
    m->cap = cap;
    m->data = s->spare_big;
    s->spare_big = m;
    s->spare_big_bytes += m->cap;
    return 1;
}

ferry_msg *fy_msg_heap_in(ferry_socket *s, size_t size)
{
    for (ferry_msg **pp = &s->spare_big; size >= FY_BIG_MIN && *pp;
         pp = (ferry_msg **)&(*pp)->data) {
        ferry_msg *m = *pp;
        if (m->cap < size || m->cap / 2 > size)
            continue; /* too small, or would waste more than half */
        *pp = m->data;
        size_t cap = m->cap;
        s->spare_big_bytes -= cap;
        memset(m, 0, sizeof *m);
        m->data = m + 1;
        m->size = size;
        m->kind = FY_MSG_HEAP;
        m->cap = cap; /* what the block holds, kept when it is kept again */
        return m;
    }
    return fy_msg_heap(size);
}

ferry_msg *fy_msg_struct(ferry_socket *s)
{
    ferry_msg *m = s ? s->spare : NULL;
    if (m != NULL) {
        s->spare = (ferry_msg *)m->data; /* the next one is kept in data */
        s->nspare--;
    } else {
        m = malloc(sizeof *m);
        if (m == NULL)
            return NULL;
    }
    memset(m, 0, sizeof *m);
    return m;
}

ferry_msg *fy_msg_empty(ferry_socket *s)
{
    ferry_msg *m = fy_msg_struct(s);
    if (m != NULL) {
        m->kind = FY_MSG_EMPTY;
        /* Writable memory of its own, as a heap part's spare byte is: a
         * user terminating the 0 bytes with a NUL must not fault. The
         * token is unused in an empty part. */
        m->data = &m->token;
        m->sock = s;
    }
    return m;
}

/* Keeps an in-place message's struct for reuse; mtx held. */
static int msg_recycle(ferry_socket *s, ferry_msg *m)
{
    if (s == NULL || s->closing || s->nspare >= SPARE_MAX)
        return 0;
    m->pipe = NULL;
    m->data = s->spare;
    s->spare = m;
    s->nspare++;
    return 1;
}

/* Gives up an unsent claim, if it is still s's (mtx held): nothing was
 * published, the room is simply not used, and a poller waiting for room
 * to send is told. */
static void claim_drop(ferry_socket *s, ferry_msg *m)
{
    if (s->claim != m)
        return;
    s->claim = NULL;
    m->pipe->ops->unclaim(m->pipe);
    tell_poller(s);
}

static void msg_free(ferry_msg *m, int locked)
{
    if (m == NULL)
        return;
    if (m->kind == FY_MSG_EMPTY) {
        if (!locked || !msg_recycle(m->sock, m))
            free(m);
        return;
    }
    if (m->kind == FY_MSG_BRIEF) { /* freed in the receive that took it: mtx held */
        assert(locked);
        m->pipe->ops->release(m->pipe, m->token);
        if (!msg_recycle(m->sock, m))
            free(m);
        return;
    }
    if (m->kind == FY_MSG_INPLACE && m->pipe != NULL) {
        /* the fast path of a zero-copy receive: one hold of the lock. The
         * message holds a reference on its socket, which stays valid even
         * after ferry_close() until the last such message is freed. */
        struct fy_pipe *p = m->pipe;
        ferry_socket *s = m->sock;
        if (!locked)
            pthread_mutex_lock(&s->mtx);
        p->ops->release(p, m->token);
        int kept = msg_recycle(s, m);
        if (!locked)
            pthread_mutex_unlock(&s->mtx);
        fy_pipe_unref(p);
        if (!kept)
            free(m);
        fy_sock_unref(s);
        return;
    }
    if (m->kind == FY_MSG_CLAIM && m->sock) {
        ferry_socket *s = m->sock;
        if (!locked)
            pthread_mutex_lock(&s->mtx);
        claim_drop(s, m);
        if (!locked)
            pthread_mutex_unlock(&s->mtx);
    }
    if (m->kind == FY_MSG_COPY)
        free(m->data);
    msg_release(m);
    free(m);
}

void ferry_msg_free(ferry_msg *m) { msg_free(m, 0); }

void fy_msg_pin(ferry_msg *m)
{
    if (m == NULL || m->kind != FY_MSG_BRIEF)
        return;
    fy_pipe_ref(m->pipe);
    atomic_fetch_add_explicit(&m->sock->refs, 1, memory_order_relaxed);
    m->kind = FY_MSG_INPLACE;
}

void fy_msg_free_locked(ferry_msg *m) { msg_free(m, 1); }

void fy_rxmsg_clear(struct fy_rxmsg *m)
{
    for (size_t i = m->next; i < m->nparts; i++)
        msg_free(m->parts[i], 1);
    if (m->parts != m->few)
        free(m->parts);
    memset(m, 0, sizeof *m);
}

void fy_rxmsg_one(struct fy_rxmsg *m, ferry_msg *f)
{
    memset(m, 0, sizeof *m);
    m->few[0] = f;
    m->parts = m->few;
    m->nparts = 1;
}

/* Room for one part more; the array grows geometrically, so a message of
 * many parts costs linear time. */
static int rxmsg_room(struct fy_rxmsg *m)
{
    if (m->parts == NULL)
        m->parts = m->few;
    size_t have = m->parts == m->few ? FY_RX_FEW : m->cap;
    if (m->nparts < have)
        return 0;
    size_t cap = have * 2;
    ferry_msg **v =
        m->parts == m->few ? malloc(cap * sizeof *v) : realloc(m->parts, cap * sizeof *v);
    if (v == NULL)
        return FERRY_ENOMEM;
    if (m->parts == m->few)
        memcpy(v, m->few, m->nparts * sizeof *v);
    m->parts = v;
    m->cap = cap;
    return 0;
}

int fy_rxmsg_push_slow(struct fy_rxmsg *m, ferry_msg *f)
{
    if (rxmsg_room(m) != 0)
        return FERRY_ENOMEM;
    m->parts[m->nparts++] = f;
    return 0;
}

int fy_rxmsg_prepend(struct fy_rxmsg *m, ferry_msg *f)
{
    if (m->next > 0) { /* a stripped part's slot */
        m->parts[--m->next] = f;
        return 0;
    }
    if (rxmsg_room(m) != 0)
        return FERRY_ENOMEM;
    memmove(m->parts + 1, m->parts, m->nparts * sizeof *m->parts);
    m->parts[0] = f;
    m->nparts++;
    return 0;
}

void fy_rxmsg_move(struct fy_rxmsg *dst, struct fy_rxmsg *src)
{
    *dst = *src;
    if (src->parts == src->few)
        dst->parts = dst->few;
    memset(src, 0, sizeof *src);
}

void fy_rxmsg_strip(struct fy_rxmsg *m, size_t n)
{
    if (n > m->nparts - m->next)
        n = m->nparts - m->next;
    for (size_t i = 0; i < n; i++)
        msg_free(m->parts[m->next + i], 1);
    m->next += n;
}

void *ferry_msg_data(ferry_msg *m) { return m ? m->data : NULL; }
size_t ferry_msg_size(const ferry_msg *m) { return m ? m->size : 0; }
int ferry_msg_more(const ferry_msg *m) { return m ? m->more : 0; }

int ferry_msg_resize(ferry_msg *m, size_t size)
{
    if (m == NULL)
        return FERRY_EINVAL;
    if (m->kind == FY_MSG_INPLACE || size > (m->kind == FY_MSG_CLAIM ? m->cap : m->size))
        return fy_err(FERRY_EINVAL, "msg resize: %zu bytes do not fit", size);
    m->size = size;
    return 0;
}

/* --- URLs ------------------------------------------------------------------ */

int fy_url_split(const char *url, char *scheme, size_t slen, const char **rest)
{
    if (url == NULL)
        return fy_err(FERRY_EBADURL, "(null) url");
    const char *p = strstr(url, "://");
    if (p == NULL || p == url || (size_t)(p - url) >= slen)
        return fy_err(FERRY_EBADURL, "'%.200s'", url);
    memcpy(scheme, url, (size_t)(p - url));
    scheme[p - url] = '\0';
    *rest = p + 3;
    return 0;
}

static const struct fy_tran_ops *tran_find(const char *url, const char **rest)
{
    char scheme[16];
    if (fy_url_split(url, scheme, sizeof scheme, rest) != 0)
        return NULL;
    for (size_t i = 0; i < FY_ARRAY_LEN(transports); i++)
        if (strcmp(transports[i]->scheme, scheme) == 0)
            return transports[i];
    fy_err(FERRY_EBADURL, "'%.200s': unknown transport '%s'", url, scheme);
    return NULL;
}

/* --- open and close -------------------------------------------------------- */

void fy_sock_unref(ferry_socket *s)
{
    if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
        return;
    while (s->spare) {
        ferry_msg *m = s->spare;
        s->spare = m->data;
        free(m);
    }
    while (s->spare_big) {
        ferry_msg *m = s->spare_big;
        s->spare_big = m->data;
        free(m);
    }
    fy_stat_sock_release(s->stat, s->stat_heap);
    fy_auth_free(s);
    pthread_mutex_destroy(&s->mon_lk);
    pthread_mutex_destroy(&s->mtx);
    free(s);
}

static int sock_wake_create(ferry_socket *s)
{
    s->wake_fd = memfd_create("ferry-wake", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (s->wake_fd < 0)
        return fy_syserr("memfd_create");
    if (ftruncate(s->wake_fd, FY_WAKE_SIZE) != 0 ||
        fcntl(s->wake_fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0)
        return fy_syserr("wake block");
    s->wake = mmap(NULL, FY_WAKE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, s->wake_fd, 0);
    if (s->wake == MAP_FAILED) {
        s->wake = NULL;
        return fy_syserr("mmap wake block");
    }
    memcpy(s->wake->magic, "FERRYWAK", 8);
    s->wake->version = 1;
    s->wake->owner_pid = (int32_t)getpid();
    /* The pollable fd: a datagram socket rather than an eventfd, because
     * peers write to it, and only send(MSG_DONTWAIT) is non-blocking per
     * call whatever a peer does to its end. Each peer gets a sender of its
     * own (fy_sock_event_sender), connected to this socket's autobound
     * abstract address: one shared end could be disconnected by any peer
     * (connect(AF_UNSPEC)) for all of them, us included. */
    s->event_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    socklen_t sl = sizeof sa;
    if (s->event_fd < 0 || bind(s->event_fd, (struct sockaddr *)&sa, sizeof(sa_family_t)) != 0 ||
        getsockname(s->event_fd, (struct sockaddr *)&sa, &sl) != 0 || sl > sizeof s->event_addr)
        return fy_syserr("pollable fd");
    memcpy(s->event_addr, &sa, sl);
    s->event_addrlen = sl;
    return 0;
}

int fy_sock_event_sender(ferry_socket *s)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (const struct sockaddr *)(const void *)s->event_addr, s->event_addrlen) != 0) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    return fd;
}

void fy_sock_fd_watchdog(ferry_socket *s)
{
    if (!atomic_load_explicit(&s->fd_want, memory_order_relaxed) ||
        atomic_load_explicit(&s->wake->fd_armed, memory_order_seq_cst))
        return;
    /* Under mtx, as arm_fd is: between its drain and its arming the fd is
     * empty and unarmed, and a write then would be a wake-up for nothing
     * in the user's fresh arming. Only tried: the caller holds its
     * transport's lock, and a socket busy now is looked at next time. */
    if (pthread_mutex_trylock(&s->mtx) != 0)
        return;
    struct pollfd pfd = {.fd = s->event_fd, .events = POLLIN};
    if (!atomic_load_explicit(&s->wake->fd_armed, memory_order_seq_cst) && poll(&pfd, 1, 0) == 0) {
        /* armed by the user, disarmed by somebody who did not write: a
         * peer, or a waker between its two steps (then one spare datagram) */
        self_signal(s);
    }
    pthread_mutex_unlock(&s->mtx);
}

int ferry_socket_open(ferry_socket **out, int type)
{
    fy_err_clear();
    if (out == NULL)
        return FERRY_EINVAL;
    *out = NULL;
    const struct fy_proto_ops *proto = fy_proto_find(type);
    if (proto == NULL)
        return fy_err(FERRY_EINVAL, "socket open: unknown type %d", type);
    ferry_socket *s = calloc(1, sizeof *s);
    if (s == NULL)
        return fy_err(FERRY_ENOMEM, "socket open");
    s->wake_fd = s->event_fd = -1;
    atomic_store(&s->park_fd, -1);
    s->pid = (int)getpid();
    atomic_store(&s->refs, 1); /* the user's; in-place messages add theirs */
    pthread_mutex_init(&s->mtx, NULL);
    pthread_mutex_init(&s->mon_lk, NULL);
    s->proto = proto;
    s->opt = (struct fy_opts){.rcvtimeo = -1,
                              .sndtimeo = -1,
                              .sndhwm = 1000,
                              .rcvhwm = 1000,
                              .sndhwm_bytes = 256u << 10,
                              .maxmsgsize = 256u << 20,
                              .ring_size = 1u << 20,
                              .ring_prefault = 0,
                              .shm_pool = 16u << 20,
                              .spin_us = -1,
                              .peer_uid = (int64_t)geteuid(),
                              .reconnect_ms = 100,
                              .reconnect_max_ms = 5000,
                              .handshake_ms = 5000,
                              .linger_ms = 1000,
                              .heartbeat_ivl = 0,
                              .heartbeat_timeout = -1,
                              .heartbeat_ttl = 0,
                              .backlog = 128,
                              .max_conns = 1024,
                              .partial_max = 256u << 20,
                              .sub_max = 4096,
                              .sub_max_bytes = 256u << 10};
    int rc = sock_wake_create(s);
    if (rc == 0 && (s->stat = fy_stat_sock_open(type)) == NULL)
        rc = fy_err(FERRY_ENOMEM, "socket open");
    s->stat_heap = s->stat != NULL && fy_stat_is_heap(s->stat);
    if (rc == 0 && proto->state_size) {
        s->proto_state = calloc(1, proto->state_size);
        if (s->proto_state == NULL)
            rc = fy_err(FERRY_ENOMEM, "socket open");
    }
    if (rc == 0 && proto->init)
        rc = proto->init(s);
    if (rc != 0) {
        ferry_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

static void tx_free(struct fy_txown *own, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(own[i].copy);
        ferry_msg_free(own[i].msg);
    }
}

/* Drops the parts gathered so far. Without mtx: a forwarded part of
 * another socket takes that socket's to be freed, and two threads
 * forwarding each other's messages must not hold one lock each. */
static void tx_reset(ferry_socket *s)
{
    tx_free(s->tx_own, s->tx_nparts);
    s->tx_nparts = 0;
    s->tx_total = 0;
}

/* tx_reset for a caller that holds mtx: the parts are taken out (the
 * arrays with them) for tx_free_taken once mtx is let go. */
struct tx_taken {
    struct fy_txown *own;
    size_t n;
};

static struct tx_taken tx_take_locked(ferry_socket *s)
{
    struct tx_taken t = {s->tx_own, s->tx_nparts};
    s->tx_own = NULL;
    free(s->tx_parts);
    s->tx_parts = NULL;
    s->tx_cap = s->tx_nparts = s->tx_total = 0;
    return t;
}

static void tx_free_taken(struct tx_taken t)
{
    tx_free(t.own, t.n);
    free(t.own);
}

/* ferry_close in a forked child on a socket it inherited: the connections
 * and the I/O thread are the parent's (a shutdown() here would cut the
 * parent's connections, a lock here may have been held by the parent's
 * I/O thread at fork() and never come free), so only the child's copies
 * of the socket's own descriptors and mapping go; the rest of its memory
 * is left, a copy of the parent's. */
static void release_own_fds(ferry_socket *s)
{
    if (s->wake)
        munmap(s->wake, FY_WAKE_SIZE);
    if (s->wake_fd >= 0)
        close(s->wake_fd);
    if (s->event_fd >= 0)
        close(s->event_fd);
    if (s->park_fd >= 0)
        close(s->park_fd);
}

static int close_inherited(ferry_socket *s)
{
    release_own_fds(s);
    return 0;
}

int ferry_close(ferry_socket *s)
{
    if (s == NULL)
        return 0;
    if (s->pid != (int)getpid())
        return close_inherited(s);
    pthread_mutex_lock(&s->mtx);
    s->closing = 1;
    fy_sock_flush_locked(s);
    pthread_mutex_unlock(&s->mtx);
    /* a poller waiting on a copy of the pollable fd wakes and sees it */
    self_signal(s);
    for (size_t i = 0; i < FY_ARRAY_LEN(transports); i++)
        transports[i]->close_all(s);
    pthread_mutex_lock(&s->mtx);
    for (size_t i = 0; i < s->npipes; i++)
        pipe_gone(s, s->pipes[i], FERRY_ECLOSED, "the socket was closed");
    pthread_mutex_unlock(&s->mtx);
    fy_ev_socket_closed(s);
    fy_loop_release(s->loop);
    s->loop = NULL;
    pthread_mutex_lock(&s->mtx);
    fy_rxmsg_clear(&s->rx);
    while (s->npipes > 0) {
        struct fy_pipe *p = s->pipes[s->npipes - 1];
        p->dead = 1;
        fy_sock_remove_pipe(s, p);
    }
    if (s->claim) {
        s->claim->sock = NULL; /* the user still owns it; free() works */
        s->claim = NULL;
    }
    pthread_mutex_unlock(&s->mtx);
    if (s->proto->fini)
        s->proto->fini(s);
    fy_stat_sock_close(s->stat, s->stat_heap);
    tx_reset(s);
    free(s->tx_parts);
    free(s->tx_own);
    free(s->pipes);
    free(s->proto_state);
    release_own_fds(s);
    fy_sock_unref(s);
    return 0;
}

struct fy_loop *fy_sock_loop(ferry_socket *s, int *err)
{
    if (s->loop == NULL) {
        int rc = fy_loop_hold(&s->loop);
        if (rc != 0)
            *err = rc;
    }
    return s->loop;
}

int fy_tran_list(int (*fn)(const ferry_objinfo *, void *), void *arg)
{
    int rc = 0;
    for (size_t i = 0; i < FY_ARRAY_LEN(transports) && rc == 0; i++)
        if (transports[i]->list)
            rc = transports[i]->list(fn, arg);
    return rc;
}

static int sock_endpoint(ferry_socket *s, const char *url, int dial)
{
    fy_err_clear();
    if (s == NULL)
        return FERRY_EINVAL;
    const char *rest = NULL;
    const struct fy_tran_ops *t = tran_find(url, &rest);
    int rc = t == NULL ? FERRY_EBADURL : fy_auth_endpoint_ok(s, t->secure);
    if (rc == 0)
        rc = dial ? t->dial(s, rest) : t->listen(s, rest);
    if (rc == 0) { /* a listener's URL with its port resolved; mtx: one writer of the text */
        pthread_mutex_lock(&s->mtx);
        fy_stat_sock_endpoint(s->stat, dial ? "dial" : "listen", dial ? url : s->endpoint);
        pthread_mutex_unlock(&s->mtx); /* LISTENING came from the transport */
    } else if (!dial) {
        const char *why = ferry_errdetail();
        fy_ev_report(s, FERRY_EVENT_BIND_FAILED, rc, 0, url, NULL, NULL, "%s",
                     why[0] ? why : ferry_strerror(rc));
    }
    return rc;
}

int ferry_listen(ferry_socket *s, const char *url) { return sock_endpoint(s, url, 0); }

int ferry_dial(ferry_socket *s, const char *url) { return sock_endpoint(s, url, 1); }

/* --- waiting --------------------------------------------------------------- */

typedef int (*sock_step_fn)(ferry_socket *s, void *arg, int check);

/* The deadline passed: one more look, for what came meanwhile. */
static int last_look(ferry_socket *s, sock_step_fn step, void *arg)
{
    pthread_mutex_lock(&s->mtx);
    int rc = step(s, arg, 1);
    pthread_mutex_unlock(&s->mtx);
    return rc != 0 ? rc : FERRY_ETIMEDOUT;
}

/* The bells a receive sleeps on besides its own word (sock.h, bells),
 * with their values now, before the step's last look: a bell rung after
 * this makes the wait return. Each pipe is held until bells_drop, so its
 * mapping of the bell outlives the sleep. mtx held. */
static int bells_take(ferry_socket *s, struct fy_futex_word *v, struct fy_pipe **held)
{
    int n = 0;
    for (size_t i = 0; i < s->npipes && n < FY_BELLS_MAX; i++) {
        struct fy_pipe *p = s->pipes[i];
        if (p->bell == NULL)
            continue;
        fy_pipe_ref(p);
        held[n] = p;
        v[1 + n] =
            (struct fy_futex_word){p->bell, atomic_load_explicit(p->bell, memory_order_acquire)};
        n++;
    }
    return n;
}

static void bells_drop(struct fy_pipe **held, int n)
{
    for (int i = 0; i < n; i++)
        fy_pipe_unref(held[i]);
}

/* Sleeps while the wake word is still seq, and the bells in v[1..nbells]
 * (if any) unrung. *bell: a bell's ring ended the sleep. */
static int wake_sleep(struct fy_wake *w, uint32_t seq, struct fy_futex_word *v, int nbells,
                      uint64_t deadline, int *bell)
{
    /* Sleep at most a second at a time: the wake block is shared with
     * peers, and one that scribbles over it could otherwise keep us
     * asleep. A re-check a second costs nothing. */
    uint64_t watchdog = fy_now_mono_ns() + 1000000000u;
    uint64_t until = deadline < watchdog ? deadline : watchdog;
    int rc = FERRY_EINVAL, woke = -1;
    if (nbells > 0) {
        v[0] = (struct fy_futex_word){&w->seq, seq};
        rc = fy_futex_waitv(v, 1 + nbells, until, &woke);
    }
    /* (the bells cannot fail: held, aligned, and the probe passed; were
     * one to, this sleep ends at its watchdog and the next is the same) */
    if (nbells == 0 || (rc < 0 && rc != FERRY_ETIMEDOUT && rc != FERRY_EINTR))
        rc = fy_futex_wait(&w->seq, seq, until);
    *bell = woke >= 1;
    if (rc == FERRY_ETIMEDOUT && deadline > watchdog)
        rc = 0;
    return rc;
}

/* The one arm-and-sleep sequence (sock.h, struct fy_wake). */
int fy_sock_wait(ferry_socket *s, sock_step_fn step, void *arg, uint64_t deadline, int recv)
{
    struct fy_wake *w = s->wake;
    for (;;) {
        uint32_t seq = atomic_load_explicit(&w->seq, memory_order_acquire);
        int claimed = recv && fy_park_claim(s); /* before the arming: park.c */
        atomic_fetch_add_explicit(&w->sleepers, 1, memory_order_seq_cst);
        /* arm: the next waker must wake us (cleared before the re-check, so
         * any progress after the check finds it clear) */
        atomic_store_explicit(&w->woken, 0, memory_order_seq_cst);
        pthread_mutex_lock(&s->mtx);
        struct fy_futex_word v[1 + FY_BELLS_MAX];
        struct fy_pipe *held[FY_BELLS_MAX];
        int nbells = s->nbells > 0 ? bells_take(s, v, held) : 0;
        int rc = step(s, arg, 1);
        struct fy_pipe *pp = NULL;
        int pfd = -1;
        if (rc == 0) {
            fy_sock_flush_locked(s); /* no reader sleeps on what we batched while we do */
            fy_sock_stamp_locked(s);
            if (recv)
                pfd = fy_park_begin(s, claimed, &pp);
            if (pfd < 0) { /* on the wake word: the I/O thread must read for us */
                s->futex_waiters++;
                fy_park_reclaim(s);
            }
        }
        pthread_mutex_unlock(&s->mtx);
        if (pfd >= 0) {
            bells_drop(held, nbells);
            rc = fy_park_sleep(s, pp, pfd, deadline); /* sleepers given back there */
            if (rc == FERRY_ETIMEDOUT)
                return last_look(s, step, arg);
            if (rc < 0 && rc != FERRY_EINTR)
                return rc;
            continue; /* FERRY_EINTR too: the futex wait retries those */
        }
        if (claimed)
            fy_park_end(s);
        if (rc == 0) {
            int bell;
            rc = wake_sleep(w, seq, v, nbells, deadline, &bell);
            pthread_mutex_lock(&s->mtx);
            s->futex_waiters--;
            s->bell_wakes += (unsigned)bell;
            pthread_mutex_unlock(&s->mtx);
        } else {
            rc = rc > 0 ? INT_MAX : rc;
        }
        bells_drop(held, nbells);
        atomic_fetch_sub_explicit(&w->sleepers, 1, memory_order_relaxed);
        if (rc == INT_MAX)
            return 1;
        if (rc == FERRY_ETIMEDOUT)
            return last_look(s, step, arg);
        if (rc < 0 && rc != FERRY_EINTR)
            return rc;
    }
}

struct run_arg {
    sock_step_fn step;
    void *arg;
};

static int run_step(ferry_socket *s, void *arg, int check)
{
    struct run_arg *ra = arg;
    return s->closing ? FERRY_ECLOSED : ra->step(s, ra->arg, check);
}

/* A receiving spinner's watch: the words of the socket's pipes (pipe op
 * watch), each with the value it had at the last look with mtx and a
 * reference on its pipe, so the spinner can load them without mtx. */
#define SPIN_WATCH 4   /* a socket of more pipes is looked at with mtx */
#define SPIN_LOOKS 256 /* loads of unchanged words between two looks anyway */

struct spin_watch {
    size_t n;
    int stale; /* a word moved during the look: look again at once */
    struct fy_pipe *pipe[SPIN_WATCH];
    const _Atomic uint64_t *word[SPIN_WATCH];
    uint64_t seen[SPIN_WATCH];
};

static int watch_has(const struct spin_watch *sw, const struct fy_pipe *p)
{
    for (size_t i = 0; i < sw->n; i++)
        if (sw->pipe[i] == p)
            return 1;
    return 0;
}

/* mtx held, before a look: the words as they are now, so what the peer
 * writes after it shows as a change. n = 0 when some pipe has no word or
 * there are too many. The pipes of the old watch that this one no longer
 * holds are left in *gone, to be let go without mtx (fy_pipe_unref may
 * destroy). */
static void watch_take(ferry_socket *s, struct spin_watch *sw, struct spin_watch *gone)
{
    struct spin_watch nw = {0};
    if (s->npipes <= SPIN_WATCH) {
        for (size_t i = 0; i < s->npipes; i++) {
            struct fy_pipe *p = s->pipes[i];
            const _Atomic uint64_t *w = p->ops->watch ? p->ops->watch(p) : NULL;
            if (w == NULL) {
                nw.n = 0;
                break;
            }
            nw.pipe[nw.n] = p;
            nw.word[nw.n] = w;
            nw.seen[nw.n] = atomic_load_explicit(w, memory_order_relaxed);
            nw.n++;
        }
    }
    gone->n = 0;
    for (size_t i = 0; i < sw->n; i++)
        if (!watch_has(&nw, sw->pipe[i]))
            gone->pipe[gone->n++] = sw->pipe[i];
    for (size_t i = 0; i < nw.n; i++)
        if (!watch_has(sw, nw.pipe[i]))
            fy_pipe_ref(nw.pipe[i]);
    *sw = nw;
}

/* mtx held, after a look that found nothing: a word that moved meanwhile
 * (the look skipped a pad or took a command) is watched from where the
 * reader is now after one more look. */
static void watch_check(struct spin_watch *sw)
{
    for (size_t i = 0; i < sw->n; i++)
        if (sw->pipe[i]->ops->watch(sw->pipe[i]) != sw->word[i])
            sw->stale = 1;
}

static void watch_drop(struct spin_watch *sw)
{
    for (size_t i = 0; i < sw->n; i++)
        fy_pipe_unref(sw->pipe[i]);
    sw->n = 0;
}

/* 1 once a watched word changed (or there is no watch): time to look. */
static int watch_fired(const struct spin_watch *sw)
{
    if (sw->n == 0 || sw->stale)
        return 1;
    for (size_t i = 0; i < sw->n; i++)
        if (atomic_load_explicit(sw->word[i], memory_order_relaxed) != sw->seen[i]) {
            /* what follows the word is read next (a ring record's payload
             * after its header): fetched now, it travels while we take
             * mtx rather than after (on this VM, 1.3x faster round trips) */
            __builtin_prefetch((const char *)sw->word[i] + 64);
            __builtin_prefetch((const char *)sw->word[i] + 128);
            return 1;
        }
    return 0;
}

/* One look with mtx; with a watch (recv), its words taken first. */
static int spin_look(ferry_socket *s, sock_step_fn step, void *arg, struct spin_watch *sw)
{
    struct spin_watch gone = {0};
    pthread_mutex_lock(&s->mtx);
    if (sw != NULL)
        watch_take(s, sw, &gone);
    int rc = s->closing ? FERRY_ECLOSED : step(s, arg, 0);
    if (sw != NULL) {
        sw->stale = 0;
        if (rc == 0)
            watch_check(sw);
    }
    pthread_mutex_unlock(&s->mtx);
    watch_drop(&gone);
    return rc;
}

/* Tries step until it succeeds or fails, or until the clock passes end
 * (busy-polling: FERRY_OPT_SPIN). Its result, or 0. A receive watches its
 * pipes' words without mtx between looks and looks only when one changed
 * (or every SPIN_LOOKS loads: a closing, a new pipe, a peer gone): the
 * lock and the protocol's step are paid once per message, not per poll.
 * gentle: more pauses between two loads, and the clock read more often,
 * so a reader that spins while a stream is being written does not take
 * the line being written from the writer at every load. What a
 * FERRY_BATCH send of ours owes the peers is given first: a peer left
 * asleep would never answer a spin. */
static int spin(ferry_socket *s, sock_step_fn step, void *arg, uint64_t end, int gentle, int recv,
                int *lent)
{
    pthread_mutex_lock(&s->mtx);
    fy_sock_flush_locked(s);
    *lent = recv && s->npipes == 1 && s->pipes[0]->lent; /* nobody reads it: park at once */
    pthread_mutex_unlock(&s->mtx);
    if (*lent)
        return 0;
    struct spin_watch watch = {0}, *sw = recv ? &watch : NULL;
    /* A gentle spin that looks under the lock (no watch) pauses longer
     * between looks: each look takes the line a writer wants. */
    unsigned pauses = !gentle ? 1 : sw != NULL ? 8 : 32;
    unsigned clock_every = !gentle ? 63 : sw != NULL ? 15 : 0;
    int rc = 0;
    for (unsigned i = 1, idle = 0;; i++) {
        for (unsigned k = 0; k < pauses; k++)
            fy_cpu_relax();
        if (sw == NULL || watch_fired(sw) || ++idle >= SPIN_LOOKS) {
            idle = 0;
            if ((rc = spin_look(s, step, arg, sw)) != 0)
                break;
        }
        if ((i & clock_every) == 0 && fy_now_mono_ns() >= end)
            break;
    }
    if (sw != NULL)
        watch_drop(sw);
    return rc;
}

/* Adaptive spinning (FERRY_OPT_SPIN -1, the default). Sleeping and being
 * woken costs both sides system calls, on a VM several microseconds each
 * way; when the peer answers or the stream goes on within a few
 * microseconds, a short spin finds it first. So a wait spins up to
 * spin_ns, learnt from the waits before it:
 *  - a spin that found the message: the next spins twice as long as this
 *    one took (at least SPIN_MIN_NS, at most SPIN_MAX_NS);
 *  - a spin that found nothing: the wait sleeps, and the next
 *    SPIN_BACKOFF waits do not spin, twice as many after each such spin
 *    in a row, up to 64 times as many (so a connection whose answers take
 *    longer, a tcp:// round trip, soon spends SPIN_MAX_NS only once in
 *    a thousand waits);
 *  - a wait that slept and still ended within SPIN_TRY_NS (the message
 *    came soon after we slept): the next tries a full spin.
 * An idle socket's waits are long: it spins at most once in 1,025 waits
 * once its spins have found nothing six times in a row. Nor does one that
 * served SPIN_STREAK calls or more without waiting since its last wait: a
 * reader that keeps up with a fast stream only now and then catches up,
 * and sleeping there lets the writer run ahead, so the reader then takes
 * a batch instead of following the writer message by message over the
 * same cache lines (a 64 B stream: 20 % slower when such a reader spun). */
#define SPIN_MIN_NS 1000u
#define SPIN_MAX_NS 10000u
#define SPIN_TRY_NS 50000u
#define SPIN_BACKOFF 16u
#define SPIN_STREAK 8u

/* A spin found nothing: the next waits sleep at once (spin_adaptive). */
static void spin_failed(ferry_socket *s)
{
    uint32_t fails = atomic_load_explicit(&s->spin_fails, memory_order_relaxed);
    atomic_store_explicit(&s->spin_fails, fails < 6 ? fails + 1 : 6, memory_order_relaxed);
    atomic_store_explicit(&s->spin_skip, SPIN_BACKOFF << fails, memory_order_relaxed);
    atomic_store_explicit(&s->spin_ns, SPIN_MAX_NS, memory_order_relaxed);
}

static int spin_adaptive(ferry_socket *s, sock_step_fn step, void *arg, uint64_t deadline, int recv)
{
    uint32_t budget = atomic_load_explicit(&s->spin_ns, memory_order_relaxed);
    uint32_t skip = atomic_load_explicit(&s->spin_skip, memory_order_relaxed);
    uint32_t streak = atomic_load_explicit(&s->spin_streak, memory_order_relaxed);
    atomic_store_explicit(&s->spin_streak, 0, memory_order_relaxed);
    uint64_t t0 = fy_now_mono_ns();
    int rc;
    /* a wait after a fast stream's catch-up neither spins nor teaches */
    int learn = streak < SPIN_STREAK && skip == 0 && budget == 0;
    if (streak >= SPIN_STREAK) {
    } else if (skip > 0) {
        atomic_store_explicit(&s->spin_skip, skip - 1, memory_order_relaxed);
    } else if (budget > 0) {
        uint64_t end = t0 + budget < deadline ? t0 + budget : deadline;
        int lent;
        if ((rc = spin(s, step, arg, end, 1, recv, &lent)) != 0) {
            uint64_t took = fy_now_mono_ns() - t0;
            uint64_t next = 2 * took < SPIN_MIN_NS ? SPIN_MIN_NS : 2 * took;
            atomic_store_explicit(&s->spin_ns, next > SPIN_MAX_NS ? SPIN_MAX_NS : (uint32_t)next,
                                  memory_order_relaxed);
            atomic_store_explicit(&s->spin_fails, 0, memory_order_relaxed);
            return rc;
        }
        if (!lent) /* a lent input was not spun on: nothing learnt */
            spin_failed(s);
    }
    struct run_arg ra = {step, arg};
    rc = fy_sock_wait(s, run_step, &ra, deadline, recv);
    if (rc > 0 && learn && fy_now_mono_ns() - t0 < SPIN_TRY_NS)
        atomic_store_explicit(&s->spin_ns, SPIN_MAX_NS, memory_order_relaxed);
    return rc;
}

/* Runs step until it returns non-zero, sleeping on the wake word between
 * tries. step runs with mtx held. timeout_ms: -1 forever; nowait: one try
 * only; recv: step waits for a message (fy_sock_wait). Returns step's result (> 0 success, < 0
 * error), FERRY_EAGAIN or FERRY_ETIMEDOUT. */
static int sock_run(ferry_socket *s, sock_step_fn step, void *arg, int timeout_ms, int nowait,
                    int recv)
{
    uint64_t deadline = 0;
    int rc;
    pthread_mutex_lock(&s->mtx);
    rc = s->closing ? FERRY_ECLOSED : step(s, arg, 0);
    pthread_mutex_unlock(&s->mtx);
    if (rc > 0 && s->opt.spin_us < 0) /* a plain load and store: a hint (spin_adaptive) */
        atomic_store_explicit(&s->spin_streak,
                              atomic_load_explicit(&s->spin_streak, memory_order_relaxed) + 1,
                              memory_order_relaxed);
    if (rc != 0 || nowait)
        return rc != 0 ? rc : FERRY_EAGAIN;
    if (timeout_ms == 0)
        return FERRY_EAGAIN;
    deadline = fy_deadline_ns(timeout_ms);
    ferry_socket *dst = atomic_load_explicit(&s->flush_first, memory_order_relaxed);
    if (dst != NULL) /* a forwarder's burst ends here (ferry_flush_on_wait) */
        ferry_flush(dst);
    if (s->opt.spin_us < 0)
        return spin_adaptive(s, step, arg, deadline, recv);
    int lent;
    if (s->opt.spin_us > 0 &&
        (rc = spin(s, step, arg, fy_now_mono_ns() + (uint64_t)s->opt.spin_us * 1000u, 0, recv,
                   &lent)) != 0)
        return rc;
    struct run_arg ra = {step, arg};
    return fy_sock_wait(s, run_step, &ra, deadline, recv);
}

int ferry_flush_on_wait(ferry_socket *s, ferry_socket *dst)
{
    if (s == NULL || s == dst)
        return FERRY_EINVAL;
    atomic_store_explicit(&s->flush_first, dst, memory_order_relaxed);
    return 0;
}

/* --- send ------------------------------------------------------------------ */

void fy_sock_flush_locked(ferry_socket *s)
{
    if (!s->wake_owed && !s->out_owed)
        return;
    s->wake_owed = 0;
    s->out_owed = 0;
    int outer = s->bell_gather; /* a fan-out send's: it rings at its end */
    s->bell_gather = 1;
    for (size_t i = 0; i < s->npipes; i++)
        if (s->pipes[i]->ops->flush)
            s->pipes[i]->ops->flush(s->pipes[i]);
    if (!outer) {
        s->bell_gather = 0;
        fy_bell_ring(s);
    }
}

int ferry_flush(ferry_socket *s)
{
    if (s == NULL)
        return FERRY_EINVAL;
    pthread_mutex_lock(&s->mtx);
    fy_sock_flush_locked(s);
    pthread_mutex_unlock(&s->mtx);
    return 0;
}

struct send_arg {
    struct fy_txmsg *m;
    int batch; /* FERRY_BATCH */
};

/* A zero-copy message was published: the claim is over, and its struct
 * is kept for the next ferry_msg_alloc (mtx held, as it is for the send,
 * so a zero-copy send takes the lock once). */
static void claim_sent(ferry_socket *s, ferry_msg *m)
{
    if (s->claim == m)
        s->claim = NULL;
    fy_pipe_unref(m->pipe);
    if (!msg_recycle(s, m))
        free(m);
}

/* A batch's skipped wake-ups are given as soon as a send is not batched
 * or finds no room: a sender about to wait (or to return EAGAIN) must not
 * leave a reader asleep over what it already wrote. */
static int send_step(ferry_socket *s, void *arg, int check)
{
    FY_UNUSED(check);
    struct send_arg *sa = arg;
    if (sa->batch) /* stored only when set: the common send stores nothing here */
        s->tx_batch = 1;
    int fan = s->proto->wire->fanout; /* its readers' wake-ups rung at once, below */
    if (fan)
        s->bell_gather = 1;
    s->tx_defer = 1;
    int rc = s->proto->send(s, sa->m);
    s->tx_defer = 0;
    if (sa->batch)
        s->tx_batch = 0;
    if (rc == 1 && sa->m->claim != NULL)
        claim_sent(s, sa->m->claim);
    if (rc != 1 || (!sa->batch && s->wake_owed)) /* output held for a batch stays */
        fy_sock_flush_locked(s);
    if (rc == 1)
        tell_poller(s);
    if (s->wake_later != NULL) { /* last: see sock.h, tx_defer */
        struct fy_pipe *p = s->wake_later;
        s->wake_later = NULL;
        p->ops->flush(p);
    }
    if (fan) {
        s->bell_gather = 0;
        fy_bell_ring(s);
    }
    return rc;
}

/* Adds a part: a copy of buf, or msg itself (not NULL: buf and len are
 * its bytes, and on success it is the socket's). On failure nothing was
 * added (the caller drops the message whole). */
static int tx_append(ferry_socket *s, const void *buf, size_t len, ferry_msg *msg)
{
    if (s->tx_nparts >= FY_MAX_PARTS)
        return fy_err(FERRY_EMSGSIZE, "send: more than %d parts", FY_MAX_PARTS);
    if (s->tx_nparts == s->tx_cap) {
        size_t cap = s->tx_cap ? s->tx_cap * 2 : 4;
        struct fy_part *p = realloc(s->tx_parts, cap * sizeof *p);
        if (p == NULL)
            return FERRY_ENOMEM;
        s->tx_parts = p;
        struct fy_txown *o = realloc(s->tx_own, cap * sizeof *o);
        if (o == NULL)
            return FERRY_ENOMEM;
        s->tx_own = o;
        s->tx_cap = cap;
    }
    unsigned char *copy = NULL;
    if (msg == NULL) {
        if ((copy = malloc(len ? len : 1)) == NULL)
            return FERRY_ENOMEM;
        if (len)
            memcpy(copy, buf, len);
        buf = copy;
    }
    s->tx_own[s->tx_nparts] = (struct fy_txown){copy, msg};
    s->tx_parts[s->tx_nparts].data = buf;
    s->tx_parts[s->tx_nparts].len = len;
    s->tx_nparts++;
    s->tx_total += len;
    return 0;
}

static int sock_send_msg(ferry_socket *s, struct fy_txmsg *m, int flags)
{
    struct send_arg sa = {m, (flags & FERRY_BATCH) != 0};
    int rc = sock_run(s, send_step, &sa, s->opt.sndtimeo, flags & FERRY_DONTWAIT, 0);
    if (rc > 0)
        return 0;
    /* Gave up with a message half-written into a pipe (one larger than
     * the free room, streamed): the peer must discard that part. */
    pthread_mutex_lock(&s->mtx);
    for (size_t i = 0; i < s->npipes; i++)
        if (s->pipes[i]->tx_partial)
            s->pipes[i]->ops->abort_tx(s->pipes[i]);
    pthread_mutex_unlock(&s->mtx);
    if (rc == FERRY_ETIMEDOUT)
        return fy_err(rc, "send: no peer took the message in time");
    return rc;
}

void ferry_send_discard(ferry_socket *s)
{
    if (s == NULL)
        return;
    pthread_mutex_lock(&s->mtx);
    struct tx_taken t = tx_take_locked(s);
    pthread_mutex_unlock(&s->mtx);
    tx_free_taken(t);
}

/* ferry_send, and ferry_msg_send of a part it forwards (msg: the part's
 * message, or NULL). *kept: msg went into the message's list of parts and
 * is the socket's now (only when the call succeeded; a single part is
 * never kept: its bytes go at once, and msg stays the caller's to free). */
static int send_part(ferry_socket *s, const void *buf, size_t len, int flags, ferry_msg *msg,
                     int *kept)
{
    *kept = 0;
    if (!s->proto->can_send)
        return fy_err(FERRY_ENOTSUP, "send on a %s socket", s->proto->name);
    if (s->claim)
        return fy_err(FERRY_ESTATE, "send: an allocated message is still unsent");
    if (s->tx_total + len > s->opt.maxmsgsize || s->tx_total + len < len) {
        tx_reset(s);
        return fy_err(FERRY_EMSGSIZE, "send: message over %llu bytes (FERRY_OPT_MAXMSGSIZE)",
                      (unsigned long long)s->opt.maxmsgsize);
    }
    if (flags & FERRY_MORE) {
        pthread_mutex_lock(&s->mtx);
        int rc = tx_append(s, buf, len, msg);
        struct tx_taken t = {NULL, 0};
        if (rc != 0)
            t = tx_take_locked(s); /* the message can no longer be whole: dropped */
        pthread_mutex_unlock(&s->mtx);
        tx_free_taken(t);
        *kept = rc == 0 && msg != NULL;
        return rc;
    }
    struct fy_part one = {buf, len};
    struct fy_txmsg m = {.parts = &one, .nparts = 1, .total = len};
    int multi = s->tx_nparts > 0;
    if (multi) {
        int rc = tx_append(s, buf, len, msg);
        if (rc != 0) {
            tx_reset(s); /* out of memory: the message is dropped whole */
            return rc;
        }
        m.parts = s->tx_parts;
        m.nparts = s->tx_nparts;
        m.total = s->tx_total;
    }
    int rc = sock_send_msg(s, &m, flags);
    if (multi && rc != 0) { /* the last part stays the caller's */
        s->tx_nparts--;
        s->tx_total -= len;
        free(s->tx_own[s->tx_nparts].copy);
    }
    *kept = multi && rc == 0 && msg != NULL; /* freed with the others, just below */
    /* sent, or never will be (no route to the peer): dropped whole; not
     * now: the rest is kept for a retry */
    if (rc == 0 || (rc != FERRY_EAGAIN && rc != FERRY_ETIMEDOUT && rc != FERRY_EINTR))
        tx_reset(s);
    return rc;
}

int ferry_send(ferry_socket *s, const void *buf, size_t len, int flags)
{
    if (s == NULL || (buf == NULL && len > 0))
        return FERRY_EINVAL;
    fy_err_clear();
    int kept;
    return send_part(s, buf, len, flags, NULL, &kept);
}

int ferry_msg_alloc(ferry_socket *s, ferry_msg **out, size_t size)
{
    if (s == NULL || out == NULL)
        return FERRY_EINVAL;
    *out = NULL;
    if (size > s->opt.maxmsgsize)
        return fy_err(FERRY_EMSGSIZE, "msg alloc: %zu bytes over FERRY_OPT_MAXMSGSIZE", size);
    ferry_msg *m = NULL;
    pthread_mutex_lock(&s->mtx);
    if (s->claim == NULL && s->tx_nparts == 0 && s->proto->can_send) {
        struct fy_pipe *p = NULL;
        p = fy_proto_next_pipe(s, size);
        void *buf = p && p->ops->claim ? p->ops->claim(p, size) : NULL;
        if (buf != NULL && (m = fy_msg_struct(s)) == NULL)
            p->ops->unclaim(p);
        if (buf != NULL && m != NULL) {
            m->data = buf;
            m->size = m->cap = size;
            m->kind = FY_MSG_CLAIM;
            m->pipe = p;
            m->sock = s;
            fy_pipe_ref(p);
            s->claim = m;
        }
    }
    pthread_mutex_unlock(&s->mtx);
    if (m == NULL && (m = fy_msg_heap(size)) == NULL)
        return FERRY_ENOMEM;
    *out = m;
    return 0;
}

/* Gives up m's claim on s, its bytes copied into a block of its own. */
static int claim_to_copy(ferry_socket *s, ferry_msg *m)
{
    void *copy = malloc(m->size ? m->size : 1);
    if (copy == NULL)
        return FERRY_ENOMEM;
    memcpy(copy, m->data, m->size);
    pthread_mutex_lock(&s->mtx);
    claim_drop(s, m);
    pthread_mutex_unlock(&s->mtx);
    msg_release(m);
    m->sock = NULL;
    m->kind = FY_MSG_COPY;
    m->data = copy;
    m->cap = 0;
    return 0;
}

int ferry_msg_send(ferry_socket *s, ferry_msg *m, int flags)
{
    if (s == NULL || m == NULL)
        return FERRY_EINVAL;
    fy_err_clear();
    if (m->kind == FY_MSG_CLAIM && m->sock == s && !(flags & FERRY_MORE) && s->tx_nparts == 0) {
        struct fy_part one = {m->data, m->size};
        struct fy_txmsg tx = {.parts = &one, .nparts = 1, .total = m->size, .claim = m};
        return sock_send_msg(s, &tx, flags); /* sent: m is gone (claim_sent) */
    }
    /* A claim sent as a part of a multipart message on its own socket:
     * the socket sends nothing else while a claim holds its ring, so the
     * claim is given up first and its bytes kept in a copy, which stays
     * the caller's if the send fails. Sent on another socket, it is
     * copied like any bytes, and ends once they are taken. */
    if (m->kind == FY_MSG_CLAIM && m->sock == s) {
        int rc = claim_to_copy(s, m);
        if (rc != 0)
            return rc;
    }
    /* A received message (in place in a ring, or in memory of its own)
     * that is a part of a multipart message is kept as it is until the
     * message goes, then copied once, into the pipe: a proxy forwards what
     * it received. A claim, or a single part, is copied now (a single part
     * straight into the pipe, the ring's room given back at once). */
    int keep = m->size > 0 && (m->kind == FY_MSG_INPLACE || m->kind == FY_MSG_HEAP);
    int kept;
    int rc = send_part(s, m->data, m->size, flags, keep ? m : NULL, &kept);
    if (rc == 0 && !kept) /* kept: the socket's now, freed with its message */
        ferry_msg_free(m);
    return rc;
}

/* --- receive --------------------------------------------------------------- */

/* Arms the pollable fd: clears it (drain_it) and asks peers (and our own
 * transports) to write it on the next change. The caller then looks once
 * more. Drained first: a datagram drained after the arming could be the
 * claim of a writer whose message an earlier receive already took, and
 * the writer of the next one would then find the fd claimed and stay
 * silent. mtx held, so the watchdog cannot write in between. */
static void arm_fd(ferry_socket *s, int drain_it)
{
    char drain[64];
    /* bounded: anyone on the machine can send to the fd's address, and
     * what is left only makes it readable again (a spurious wake-up) */
    for (int k = 0; drain_it && k < 256 && recv(s->event_fd, drain, sizeof drain, MSG_DONTWAIT) > 0;
         k++) {
    }
    atomic_store_explicit(&s->fd_want, 1, memory_order_relaxed);
    atomic_store_explicit(&s->wake->fd_armed, 1, memory_order_seq_cst);
    /* the flag before the caller's last look at the rings (their loads are
     * acquire only): a writer that did not see it armed is seen there */
    atomic_thread_fence(memory_order_seq_cst);
}

/* 1 if a recv now would not wait: a message (or the rest of one) is here,
 * taken from the pipes into s->rx if need be, or an error is due. mtx held. */
static int recv_ready(ferry_socket *s)
{
    if (!s->proto->can_recv)
        return 0;
    if (s->rx_err != 0 || s->rx.next < s->rx.nparts)
        return 1;
    fy_rxmsg_clear(&s->rx);
    fy_err_clear();
    int rc = s->proto->recv(s, &s->rx, 1);
    if (rc == 1)
        return 1;
    if (rc < 0 && rc != FERRY_ESTATE) { /* e.g. a REQ whose peer died: recv must say so */
        s->rx_err = rc;
        fy_escape(s->rx_err_text, sizeof s->rx_err_text, ferry_errdetail());
        return 1;
    }
    return 0; /* nothing, or not in a state to receive (a REQ before its request) */
}

int fy_sock_rx_pending(const ferry_socket *s)
{
    return s->rx_err != 0 || s->rx.next < s->rx.nparts;
}

/* 1 if a send now would not wait. mtx held. */
static int send_ready(ferry_socket *s)
{
    if (!s->proto->can_send || s->claim != NULL)
        return 0;
    /* (parts kept for a message under way do not count: its last part is
     * what may wait, and it needs the room a message needs) */
    return s->proto->send_ready ? s->proto->send_ready(s) : fy_any_writable(s);
}

static int ready_now(ferry_socket *s, int events)
{
    int r = 0;
    if ((events & FERRY_POLLIN) && recv_ready(s))
        r |= FERRY_POLLIN;
    if ((events & FERRY_POLLOUT) && send_ready(s))
        r |= FERRY_POLLOUT;
    return r;
}

int fy_sock_ready(ferry_socket *s, int events, int arm)
{
    pthread_mutex_lock(&s->mtx);
    int r = s->closing ? FERRY_POLLERR : ready_now(s, events);
    if (r == 0 && arm) {
        arm_fd(s, 1);
        fy_park_reclaim(s);
        if (events & FERRY_POLLOUT)
            for (size_t i = 0; i < s->npipes; i++)
                if (s->pipes[i]->ops->arm_room)
                    s->pipes[i]->ops->arm_room(s->pipes[i]);
        r = ready_now(s, events);
    }
    pthread_mutex_unlock(&s->mtx);
    return r;
}

/* What a receive wants: the next part handed over (out), or copied into
 * buf and released at once, all under one hold of the lock. */
struct recv_req {
    ferry_msg **out;
    void *buf;
    size_t cap, *len;
};

static int recv_step(ferry_socket *s, void *arg, int check)
{
    struct recv_req *rq = arg;
    if (s->rx_err != 0) { /* found by a poller's look */
        int rc = s->rx_err;
        s->rx_err = 0;
        return fy_err(rc, "%s", s->rx_err_text);
    }
    int brief = 0;
    if (s->rx.next >= s->rx.nparts) {
        fy_rxmsg_clear(&s->rx);
        brief = s->rx.brief = rq->out == NULL;
        int rc = s->proto->recv(s, &s->rx, check);
        s->rx.brief = 0;
        if (rc <= 0)
            return rc;
    }
    ferry_msg *m = s->rx.parts[s->rx.next++];
    m->more = s->rx.next < s->rx.nparts;
    s->rcvmore = m->more;
    if (brief) /* the parts left for the next calls hold their references */
        for (size_t i = s->rx.next; i < s->rx.nparts; i++)
            fy_msg_pin(s->rx.parts[i]);
    if (!m->more) {
        fy_rxmsg_clear(&s->rx);
        tell_poller(s);
    }
    if (rq->out != NULL) {
        *rq->out = m;
    } else {
        size_t n = m->size < rq->cap ? m->size : rq->cap;
        if (n)
            memcpy(rq->buf, m->data, n);
        if (rq->len)
            *rq->len = m->size;
        if (!msg_keep_big(s, m))
            msg_free(m, 1);
    }
    return 1;
}

static int sock_recv_part(ferry_socket *s, struct recv_req *rq, int flags)
{
    if (!s->proto->can_recv)
        return fy_err(FERRY_ENOTSUP, "recv on a %s socket", s->proto->name);
    int nowait = flags & FERRY_DONTWAIT, timeout = s->opt.rcvtimeo;
    int rc = sock_run(s, recv_step, rq, timeout, nowait, 1);
    if (rc == FERRY_EAGAIN && (nowait || timeout == 0)) {
        /* DONTWAIT arms the pollable fd (ferry_socket_fd), then looks once
         * more so no message slips between. A poller holding the socket
         * drains the fd itself: what is queued there may be its news
         * (room, a peer). Both DONTWAIT and a receive timeout of 0 take a
         * lent input back (park.c), or it would stay unread until the
         * loan's timer ends it. */
        pthread_mutex_lock(&s->mtx);
        if (nowait)
            arm_fd(s, atomic_load_explicit(&s->npollers, memory_order_relaxed) == 0);
        fy_park_reclaim(s);
        rc = s->closing ? FERRY_ECLOSED : recv_step(s, rq, 1);
        pthread_mutex_unlock(&s->mtx);
        if (rc == 0)
            return FERRY_EAGAIN;
    }
    return rc > 0 ? 0 : rc;
}

int ferry_recv(ferry_socket *s, void *buf, size_t cap, size_t *len, int flags)
{
    if (s == NULL || (buf == NULL && cap > 0))
        return FERRY_EINVAL;
    fy_err_clear();
    struct recv_req rq = {.buf = buf, .cap = cap, .len = len};
    return sock_recv_part(s, &rq, flags);
}

int ferry_msg_recv(ferry_socket *s, ferry_msg **m, int flags)
{
    if (s == NULL || m == NULL)
        return FERRY_EINVAL;
    fy_err_clear();
    *m = NULL;
    struct recv_req rq = {.out = m};
    return sock_recv_part(s, &rq, flags);
}

static int peers_step(ferry_socket *s, void *arg, int check)
{
    FY_UNUSED(check);
    int want = *(int *)arg, have = 0;
    for (size_t i = 0; i < s->npipes; i++) {
        struct fy_pipe *p = s->pipes[i];
        if (p->dead || p->pending)
            continue;
        if (s->proto->peer_ready && !s->proto->peer_ready(s, p))
            continue;
        have++;
    }
    return have >= want;
}

int ferry_wait_peers(ferry_socket *s, int count, int timeout_ms)
{
    if (s == NULL || count < 0)
        return FERRY_EINVAL;
    fy_err_clear();
    int rc = sock_run(s, peers_step, &count, timeout_ms, 0, 0);
    if (rc == FERRY_EAGAIN || rc == FERRY_ETIMEDOUT)
        return fy_err(FERRY_ETIMEDOUT, "waiting for %d peer%s", count, count == 1 ? "" : "s");
    return rc > 0 ? 0 : rc;
}

static int copy_text(ferry_socket *s, const char *text, char *buf, size_t len)
{
    if (buf == NULL || len == 0)
        return FERRY_EINVAL;
    size_t n = strlen(text);
    int rc = n < len ? 0 : FERRY_ENOSPC;
    if (n >= len)
        n = len - 1;
    memcpy(buf, text, n);
    buf[n] = '\0';
    FY_UNUSED(s);
    return rc;
}

int ferry_socket_addr(ferry_socket *s, char *buf, size_t len)
{
    if (s == NULL)
        return FERRY_EINVAL;
    pthread_mutex_lock(&s->mtx);
    int rc = s->endpoint[0] ? copy_text(s, s->endpoint, buf, len)
                            : fy_err(FERRY_ESTATE, "socket addr: not listening");
    pthread_mutex_unlock(&s->mtx);
    return rc;
}

int ferry_socket_drop_reason(ferry_socket *s, char *buf, size_t len)
{
    if (s == NULL)
        return FERRY_EINVAL;
    pthread_mutex_lock(&s->mtx);
    int rc = copy_text(s, s->drop_reason, buf, len);
    pthread_mutex_unlock(&s->mtx);
    return rc;
}

int ferry_socket_fd(ferry_socket *s, int *fd)
{
    if (s == NULL || fd == NULL)
        return FERRY_EINVAL;
    if (!s->proto->can_recv)
        return fy_err(FERRY_ENOTSUP, "socket fd: a %s socket does not receive", s->proto->name);
    *fd = s->event_fd;
    return 0;
}

int fy_uid_allowed(const ferry_socket *s, unsigned uid)
{
    int64_t allowed = s->opt.peer_uid;
    return allowed < 0 || uid == 0 || uid == (unsigned)geteuid() || uid == (uint64_t)allowed;
}

/* --- options --------------------------------------------------------------- */

/* The routing id announced to peers: 1..255 bytes, not starting with 0x00
 * (a ROUTER generates those). Applies to connections made after it. */
static int sock_set_routing_id(ferry_socket *s, const void *val, size_t len)
{
    if (val == NULL || len == 0 || len > FY_RID_MAX)
        return fy_err(FERRY_EINVAL, "routing id: 1 to %d bytes (got %zu)", FY_RID_MAX, len);
    if (((const unsigned char *)val)[0] == 0)
        return fy_err(FERRY_EINVAL, "routing id: may not start with a zero byte (reserved for "
                                    "the ids a ROUTER generates)");
    pthread_mutex_lock(&s->mtx);
    memcpy(s->opt.routing_id, val, len);
    s->opt.routing_id_len = len;
    pthread_mutex_unlock(&s->mtx);
    return 0;
}

static int opt_int(const void *val, size_t len, int64_t *out)
{
    if (val == NULL)
        return FERRY_EINVAL;
    if (len == sizeof(int64_t))
        memcpy(out, val, sizeof(int64_t));
    else if (len == sizeof(int))
        *out = *(const int *)val;
    else
        return FERRY_EINVAL;
    return 0;
}

int ferry_setopt(ferry_socket *s, int opt, const void *val, size_t len)
{
    if (s == NULL)
        return FERRY_EINVAL;
    fy_err_clear();
    if (s->proto->setopt) { /* the pattern's own options first */
        int rc = s->proto->setopt(s, opt, val, len);
        if (rc != FERRY_ENOTSUP)
            return rc;
    }
    if (opt == FERRY_OPT_SUBSCRIBE || opt == FERRY_OPT_UNSUBSCRIBE)
        return fy_err(FERRY_ENOTSUP, "subscribe on a %s socket", s->proto->name);
    if (opt == FERRY_OPT_ROUTING_ID)
        return sock_set_routing_id(s, val, len);
    if (fy_auth_is_opt(opt))
        return fy_auth_setopt(s, opt, val, len);
    int64_t v;
    if (opt_int(val, len, &v) != 0)
        return fy_err(FERRY_EINVAL, "setopt %d: integer option needs an int or int64_t", opt);
    int rc = 0;
    pthread_mutex_lock(&s->mtx);
    struct fy_opts *o = &s->opt;
    switch (opt) {
    case FERRY_OPT_RCVTIMEO:
    case FERRY_OPT_SNDTIMEO:
        if (v < -1 || v > INT_MAX)
            rc = FERRY_EINVAL;
        else if (opt == FERRY_OPT_RCVTIMEO)
            o->rcvtimeo = (int)v;
        else
            o->sndtimeo = (int)v;
        break;
    case FERRY_OPT_SNDHWM:
    case FERRY_OPT_RCVHWM:
        if (v < 0 || v > INT_MAX)
            rc = FERRY_EINVAL;
        else if (opt == FERRY_OPT_SNDHWM)
            o->sndhwm = (int)v;
        else
            o->rcvhwm = (int)v;
        break;
    case FERRY_OPT_SNDHWM_BYTES:
        if (v < 0)
            rc = FERRY_EINVAL;
        else
            o->sndhwm_bytes = (uint64_t)v;
        break;
    case FERRY_OPT_MAXMSGSIZE:
        if (v <= 0)
            rc = FERRY_EINVAL;
        else
            o->maxmsgsize = (uint64_t)v;
        break;
    case FERRY_OPT_RING_SIZE:
        if (v < 4096 || v > (256 << 20))
            rc = FERRY_EINVAL;
        else
            o->ring_size = ((uint64_t)v + 63u) & ~(uint64_t)63u;
        break;
    case FERRY_OPT_SHM_POOL:
        if (v < 0 || v > (256 << 20))
            rc = FERRY_EINVAL;
        else {
            uint64_t pg = (uint64_t)sysconf(_SC_PAGESIZE);
            o->shm_pool = ((uint64_t)v + pg - 1) / pg * pg;
        }
        break;
    case FERRY_OPT_RING_PREFAULT:
        if (v != 0 && v != 1)
            rc = FERRY_EINVAL;
        else
            o->ring_prefault = (int)v;
        break;
    case FERRY_OPT_SPIN:
        if (v < -1 || v > 10000000)
            rc = FERRY_EINVAL;
        else
            o->spin_us = (int)v;
        break;
    case FERRY_OPT_REQ_RESEND:
        o->req_resend = v != 0;
        break;
    case FERRY_OPT_PEER_UID:
        if (v < -1 || v > UINT32_MAX)
            rc = FERRY_EINVAL;
        else
            o->peer_uid = v;
        break;
    case FERRY_OPT_RECONNECT_IVL:
    case FERRY_OPT_RECONNECT_IVL_MAX:
    case FERRY_OPT_HANDSHAKE_IVL:
        if (v < 1 || v > INT_MAX)
            rc = FERRY_EINVAL;
        else if (opt == FERRY_OPT_RECONNECT_IVL)
            o->reconnect_ms = (int)v;
        else if (opt == FERRY_OPT_RECONNECT_IVL_MAX)
            o->reconnect_max_ms = (int)v;
        else
            o->handshake_ms = (int)v;
        break;
    case FERRY_OPT_LINGER:
    case FERRY_OPT_HEARTBEAT_TIMEOUT:
        if (v < -1 || v > INT_MAX || (opt == FERRY_OPT_HEARTBEAT_TIMEOUT && v == 0))
            rc = FERRY_EINVAL;
        else if (opt == FERRY_OPT_LINGER)
            o->linger_ms = (int)v;
        else
            o->heartbeat_timeout = (int)v;
        break;
    case FERRY_OPT_HEARTBEAT_IVL:
    case FERRY_OPT_HEARTBEAT_TTL:
        if (v < 0 || v > INT_MAX)
            rc = FERRY_EINVAL;
        else if (opt == FERRY_OPT_HEARTBEAT_IVL)
            o->heartbeat_ivl = (int)v;
        else
            o->heartbeat_ttl = (int)v;
        break;
    case FERRY_OPT_BACKLOG:
        if (v < 1 || v > 65535)
            rc = FERRY_EINVAL;
        else
            o->backlog = (int)v;
        break;
    case FERRY_OPT_MAX_CONNECTIONS:
    case FERRY_OPT_SUB_MAX:
        if (v < 1 || v > INT_MAX)
            rc = FERRY_EINVAL;
        else if (opt == FERRY_OPT_MAX_CONNECTIONS)
            o->max_conns = (int)v;
        else
            o->sub_max = (int)v;
        break;
    case FERRY_OPT_PARTIAL_MAX:
    case FERRY_OPT_SUB_MAX_BYTES:
        if (v < 0)
            rc = FERRY_EINVAL;
        else if (opt == FERRY_OPT_PARTIAL_MAX)
            o->partial_max = (uint64_t)v;
        else
            o->sub_max_bytes = (uint64_t)v;
        break;
    default:
        rc = FERRY_ENOTSUP;
    }
    pthread_mutex_unlock(&s->mtx);
    if (rc != 0)
        return fy_err(rc, "setopt %d = %lld", opt, (long long)v);
    return 0;
}

int ferry_setopt_int(ferry_socket *s, int opt, int64_t val)
{
    return ferry_setopt(s, opt, &val, sizeof val);
}

int ferry_getopt_int(ferry_socket *s, int opt, int64_t *val)
{
    if (s == NULL || val == NULL)
        return FERRY_EINVAL;
    if (opt == FERRY_OPT_CURVE_SERVER || opt == FERRY_OPT_CURVE_ALLOW_ANY) {
        size_t len = sizeof *val;
        return fy_auth_getopt(s, opt, val, &len);
    }
    pthread_mutex_lock(&s->mtx);
    int rc = s->proto->getopt ? s->proto->getopt(s, opt, val) : FERRY_ENOTSUP;
    if (rc != FERRY_ENOTSUP) { /* the pattern's own option */
        pthread_mutex_unlock(&s->mtx);
        return rc;
    }
    rc = 0;
    const struct fy_opts *o = &s->opt;
    switch (opt) {
    case FERRY_OPT_RCVTIMEO:
        *val = o->rcvtimeo;
        break;
    case FERRY_OPT_SNDTIMEO:
        *val = o->sndtimeo;
        break;
    case FERRY_OPT_SNDHWM:
        *val = o->sndhwm;
        break;
    case FERRY_OPT_RCVHWM:
        *val = o->rcvhwm;
        break;
    case FERRY_OPT_SNDHWM_BYTES:
        *val = (int64_t)o->sndhwm_bytes;
        break;
    case FERRY_OPT_MAXMSGSIZE:
        *val = (int64_t)o->maxmsgsize;
        break;
    case FERRY_OPT_RING_SIZE:
        *val = (int64_t)o->ring_size;
        break;
    case FERRY_OPT_SPIN:
        *val = o->spin_us;
        break;
    case FERRY_OPT_RING_PREFAULT:
        *val = o->ring_prefault;
        break;
    case FERRY_OPT_SHM_POOL:
        *val = (int64_t)o->shm_pool;
        break;
    case FERRY_OPT_RCVMORE:
        *val = s->rcvmore;
        break;
    case FERRY_OPT_TYPE:
        *val = s->proto->type;
        break;
    case FERRY_OPT_DROPPED:
        *val = (int64_t)atomic_load_explicit(&s->stat->dropped, memory_order_relaxed);
        break;
    case FERRY_OPT_ERRORS:
        *val = (int64_t)atomic_load_explicit(&s->stat->bad_input, memory_order_relaxed);
        break;
    case FERRY_OPT_REQ_RESEND:
        *val = o->req_resend;
        break;
    case FERRY_OPT_PEER_UID:
        *val = o->peer_uid;
        break;
    case FERRY_OPT_RECONNECT_IVL:
        *val = o->reconnect_ms;
        break;
    case FERRY_OPT_RECONNECT_IVL_MAX:
        *val = o->reconnect_max_ms;
        break;
    case FERRY_OPT_HANDSHAKE_IVL:
        *val = o->handshake_ms;
        break;
    case FERRY_OPT_LINGER:
        *val = o->linger_ms;
        break;
    case FERRY_OPT_HEARTBEAT_IVL:
        *val = o->heartbeat_ivl;
        break;
    case FERRY_OPT_HEARTBEAT_TIMEOUT:
        *val = o->heartbeat_timeout;
        break;
    case FERRY_OPT_HEARTBEAT_TTL:
        *val = o->heartbeat_ttl;
        break;
    case FERRY_OPT_BACKLOG:
        *val = o->backlog;
        break;
    case FERRY_OPT_MAX_CONNECTIONS:
        *val = o->max_conns;
        break;
    case FERRY_OPT_PARTIAL_MAX:
        *val = (int64_t)o->partial_max;
        break;
    case FERRY_OPT_SUB_MAX:
        *val = o->sub_max;
        break;
    case FERRY_OPT_SUB_MAX_BYTES:
        *val = (int64_t)o->sub_max_bytes;
        break;
    case FERRY_OPT_REFUSED:
        *val = (int64_t)atomic_load_explicit(&s->stat->refused, memory_order_relaxed);
        break;
    case FERRY_OPT_PEERS: {
        int64_t n = 0;
        for (size_t i = 0; i < s->npipes; i++)
            n += !s->pipes[i]->dead && !s->pipes[i]->pending;
        *val = n;
        break;
    }
    default:
        rc = FERRY_ENOTSUP;
    }
    pthread_mutex_unlock(&s->mtx);
    return rc;
}

int ferry_getopt(ferry_socket *s, int opt, void *val, size_t *len)
{
    if (s != NULL && fy_auth_is_opt(opt))
        return fy_auth_getopt(s, opt, val, len);
    if (s != NULL && opt == FERRY_OPT_ROUTING_ID && len != NULL && (val != NULL || *len == 0)) {
        pthread_mutex_lock(&s->mtx);
        size_t n = s->opt.routing_id_len;
        int rc = *len >= n ? 0 : FERRY_ENOSPC;
        if (rc == 0 && n)
            memcpy(val, s->opt.routing_id, n);
        *len = n;
        pthread_mutex_unlock(&s->mtx);
        return rc;
    }
    if (len == NULL || val == NULL || *len < sizeof(int))
        return FERRY_EINVAL;
    int64_t v;
    int rc = ferry_getopt_int(s, opt, &v);
    if (rc != 0)
        return rc;
    if (*len >= sizeof(int64_t)) {
        memcpy(val, &v, sizeof v);
        *len = sizeof v;
    } else {
        *(int *)val = (int)v;
        *len = sizeof(int);
    }
    return 0;
}
