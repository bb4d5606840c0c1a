/*
 * monitor.h - a socket's events (ferry_monitor, ferry.h), as the core and
 * the transports report them.
 *
 * Who reports what. The core: BIND_FAILED (ferry_listen), HANDSHAKE_OK (a
 * pipe starts counting as a peer), DISCONNECTED (a started pipe's peer is
 * gone, with the reason its transport gives), DROPPED (the pattern dropped
 * a message) and CLOSED (ferry_close). The transports: LISTENING (before
 * the listener can take a connection, so it comes first), ACCEPTED,
 * CONNECTED, CONNECT_RETRIED and HANDSHAKE_FAILED, which only they can
 * see. No pattern reports anything.
 *
 * Cost. A socket without a monitor pays one relaxed load per report
 * (fy_ev_wanted); the text of an event is formatted only when it is
 * wanted. Reports may come from any thread, with any of the socket's or
 * its transport's locks held: the monitor's locks are leaves, taken last,
 * and nothing is called while they are held but an eventfd write and the
 * loop's timer (whose lock comes after every socket lock, loop.h).
 */
#ifndef FY_MONITOR_H
#define FY_MONITOR_H

#include "sock.h"

/* Who the peer is when no pipe says it yet (an accepted connection before
 * its handshake): pid and uid from the kernel (0 and -1 unknown), addr a
 * tcp:// HOST:PORT or NULL. */
struct fy_ev_peer {
    int pid;
    int64_t uid;
    const char *addr;
};

static inline int fy_ev_wanted(ferry_socket *s, int kind)
{
    return (atomic_load_explicit(&s->mon_kinds, memory_order_relaxed) >> kind) & 1u;
}

/* Reports an event to s's monitor, if it wants the kind. url: the
 * endpoint (NULL: the pipe's). p: the pipe concerned (its id, peer and
 * address), or NULL and peer (or neither). fmt: the reason, or NULL; its
 * text must be escaped already (fy_escape), as ferry_errdetail's is, since
 * it may quote a peer's bytes and is not escaped again. */
void fy_ev_report(ferry_socket *s, int kind, int err, int64_t value, const char *url,
                  struct fy_pipe *p, const struct fy_ev_peer *peer, const char *fmt, ...)
    __attribute__((format(printf, 8, 9)));

/* fy_ev_dropped (declared in sock.h, for fy_sock_dropped): a message the
 * pattern dropped, counted into the next DROPPED event of its cause, at
 * most ten a second (mtx held). */

/* ferry_close: reports CLOSED, after any drops still held back, and lets
 * the monitor go on without the socket. Not on a loop thread. */
void fy_ev_socket_closed(ferry_socket *s);

#endif /* FY_MONITOR_H */
