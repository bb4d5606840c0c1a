/*
 * park.c - a receiver that reads its only connection itself.
 *
 * Why. Over tcp:// and ipc:// the I/O thread reads the connections and
 * wakes the receiver once a message is whole: two wake-ups in a row for
 * every message that finds its receiver asleep, where a plain blocking
 * recv(2) has one. On a virtual machine a wake-up of a thread on the other
 * vCPU costs 5-20 us, so a request/reply round trip paid for four where
 * the raw socket pays for two.
 *
 * How. A caller about to sleep in a recv on a socket whose only pipe can
 * park (pipe op park, sock.h) sleeps in poll(2) on that pipe's fd instead
 * of the wake word, and when it wakes, reads and decodes on its own thread
 * (pipe op unpark) under the socket's mtx, as the I/O thread would, then
 * gives the input back to the I/O thread. Every other reason to wake (a
 * new pipe, the pipe dying, a message the I/O thread queued after all)
 * reaches it through the wakers this process has for the socket:
 * fy_sock_signal and fy_sock_wake write park_fd, an eventfd in the same
 * poll, once per park while `parked` is set. (shm:// peers wake the wake
 * word only; a socket with an shm:// pipe has two pipes and never parks,
 * and the new pipe's arrival is itself a local wake.)
 *
 * The race with the wakers: the waiter clears `park_kicked` and sets
 * `parked` (seq_cst) before its last look for a message, which it makes
 * under mtx; progress is made under mtx too, and a waker's fence comes
 * after its progress and before its look at `parked`. So either the
 * waiter's look finds the progress, or the waker finds `parked` and, the
 * first to set `park_kicked`, writes park_fd. Nothing here reads the wake
 * block, which peers share and may scribble on. One thread parks at a
 * time (the others sleep on the wake word as before); a waiter that
 * cannot park after all clears `parked` before it sleeps on the futex,
 * where wake_seq reaches it. A write to park_fd that nobody waited for
 * leaves it readable: the next park wakes at once, drains it and looks
 * again.
 *
 * The loan. Parking takes the fd off the I/O thread's epoll set and
 * giving it back puts it on again: two epoll_ctl calls per message, and a
 * system call costs a microsecond or more on a VM. A receiver that is the
 * socket's only waiter (no thread asleep on the wake word, no poller, the
 * pollable fd never armed, not told to busy-poll) lets the transport keep
 * the input off the I/O thread's watch after it read (unpark's keep), so
 * its next park costs no system call: a request/reply loop over ipc://
 * makes three system calls a round trip on each side (send, ppoll, recv)
 * instead of five. While the input is lent nobody else reads it, so a
 * receive does not spin on it (pipe's `lent`) but parks at once. Whoever
 * would wait another way takes the input back first (fy_park_reclaim,
 * under mtx, where the waiter counts itself); the transport takes it back
 * itself when the receiver has not come back for a while (its timer), so
 * the peer's heartbeats and hang-up are still read by somebody.
 */
#include "sock.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

/* The pipe a receive wait could park on: the socket's only one, if its
 * transport parks. */
static struct fy_pipe *park_pipe(ferry_socket *s)
{
    if (s->npipes != 1 || s->closing || s->pipes[0]->dead || s->pipes[0]->ops->park == NULL)
        return NULL;
    return s->pipes[0];
}

int fy_park_claim(ferry_socket *s)
{
    if (atomic_load_explicit(&s->park_fd, memory_order_relaxed) < 0)
        return 0; /* made under mtx in fy_park_begin, once */
    int zero = 0;
    if (!atomic_compare_exchange_strong_explicit(&s->parked, &zero, 1, memory_order_seq_cst,
                                                 memory_order_relaxed))
        return 0;
    atomic_store_explicit(&s->park_kicked, 0, memory_order_seq_cst);
    return 1;
}

int fy_park_begin(ferry_socket *s, int claimed, struct fy_pipe **out)
{
    /* mtx held */
    *out = NULL;
    struct fy_pipe *p = park_pipe(s);
    if (p == NULL)
        return -1;
    if (atomic_load_explicit(&s->park_fd, memory_order_relaxed) < 0) {
        /* the first wait that could park: made now, used from the next look
         * on (a socket that never waits this way never holds one) */
        atomic_store_explicit(&s->park_fd, eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC),
                              memory_order_relaxed);
        return -1;
    }
    if (!claimed)
        return -1;
    int fd = p->ops->park(p);
    if (fd < 0)
        return -1;
    fy_pipe_ref(p);
    *out = p;
    return fd;
}

void fy_park_end(ferry_socket *s) { atomic_store_explicit(&s->parked, 0, memory_order_relaxed); }

void fy_park_kick(ferry_socket *s)
{
    if (atomic_load_explicit(&s->parked, memory_order_seq_cst) &&
        !atomic_exchange_explicit(&s->park_kicked, 1, memory_order_seq_cst)) {
        uint64_t one = 1;
        ssize_t n =
            write(atomic_load_explicit(&s->park_fd, memory_order_relaxed), &one, sizeof one);
        FY_UNUSED(n); /* an eventfd's counter cannot overflow from this */
    }
}

int fy_park_sleep(ferry_socket *s, struct fy_pipe *p, int fd, uint64_t deadline)
{
    int kfd = atomic_load_explicit(&s->park_fd, memory_order_relaxed);
    struct pollfd fds[2] = {{.fd = fd, .events = POLLIN}, {.fd = kfd, .events = POLLIN}};
    /* Unlike the wake word, nothing the poll or the kick depends on is
     * shared with a peer that could scribble on it, so there is no
     * watchdog: a lost wake-up would show (test_park), not be papered over
     * a second later. */
    uint64_t now = fy_now_mono_ns();
    int rc = 0;
    if (now >= deadline) {
        fds[0].revents = fds[1].revents = 0;
    } else {
        uint64_t left = deadline - now;
        struct timespec ts = {(time_t)(left / 1000000000u), (long)(left % 1000000000u)};
        if (ppoll(fds, 2, deadline == UINT64_MAX ? NULL : &ts, NULL) < 0) {
            fds[0].revents = fds[1].revents = 0;
            rc = errno == EINTR ? FERRY_EINTR : fy_syserr("recv: ppoll"); /* not a busy loop */
        }
    }
    if (fds[1].revents & POLLIN) {
        uint64_t v;
        ssize_t n = read(kfd, &v, sizeof v);
        FY_UNUSED(n);
    }
    if (rc == 0 && deadline <= fy_now_mono_ns() && fds[0].revents == 0 && fds[1].revents == 0)
        rc = FERRY_ETIMEDOUT;
    /* the wakers need not write park_fd from here on: we look again
     * before we sleep again */
    atomic_fetch_sub_explicit(&s->wake->sleepers, 1, memory_order_relaxed);
    fy_park_end(s);
    pthread_mutex_lock(&s->mtx);
    /* (a socket told to busy-poll wants the I/O thread reading for it) */
    int keep = s->futex_waiters == 0 && !s->closing && s->opt.spin_us <= 0 &&
               !atomic_load_explicit(&s->fd_want, memory_order_relaxed) &&
               atomic_load_explicit(&s->npollers, memory_order_relaxed) == 0;
    p->ops->unpark(p, fds[0].revents != 0, keep);
    pthread_mutex_unlock(&s->mtx);
    fy_pipe_unref(p);
    return rc;
}

void fy_park_reclaim(ferry_socket *s)
{
    /* mtx held */
    for (size_t i = 0; i < s->npipes; i++)
        if (s->pipes[i]->ops->reclaim != NULL)
            s->pipes[i]->ops->reclaim(s->pipes[i]);
}
