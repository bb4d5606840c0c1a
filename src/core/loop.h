/*
 * loop.h - the process's event loop: the I/O threads every transport runs
 * on (listeners, handshakes, reading, liveness, redials, linger).
 *
 * Shape. Each I/O thread is one `fy_loop`: an epoll set whose entries are
 * fd callbacks (fy_io), a heap of timers (fy_timer), a poke (an eventfd
 * that interrupts the sleep) and a queue of tasks that other threads hand
 * it and wait for (fy_loop_run). One iteration, in one place (loop.c's
 * thread function): run the timers that are due, run the queued tasks,
 * sleep in epoll_wait until the earliest timer, dispatch the batch of fd
 * events.
 *
 * How many. One I/O thread per process by default, FERRY_IO_THREADS (1 to
 * 64, read when the first thread starts) for more. A socket takes a loop
 * (round-robin) the first time a transport needs one and keeps it until
 * ferry_close; the threads start with the first socket that takes a loop
 * and stop when the last one lets go.
 *
 * Threads and locks. Callbacks run on the loop's thread with no lock of
 * the loop held; they take their socket's locks themselves, must not block
 * (every fd is non-blocking) and must not wait for another socket. Lock
 * order: a socket's locks, then the loop's internal lock (fy_timer_set and
 * fy_io_* may be called with socket locks held).
 *
 * Lifetime. An fy_io or fy_timer is the caller's memory. It may be freed
 * once it is deleted (fy_io_del, fy_timer_stop) ON THE LOOP'S THREAD: from
 * a callback or from a task. Deleting an fd on the loop's thread also
 * forgets the events for it still waiting in the current batch, so a
 * callback may close connections other events of the batch point at.
 * Teardown from another thread goes through fy_loop_run.
 *
 * fork(). The threads do not exist in a child. A child's own new sockets
 * get fresh threads; sockets it inherited must not be used (ferry.h), and
 * ferry_close on one there releases only the child's copies of its own
 * descriptors (socket.c), touching neither a loop nor a connection.
 */
#ifndef FY_LOOP_H
#define FY_LOOP_H

#include <stddef.h>
#include <stdint.h>

struct fy_loop;

/* Readiness bits, as epoll's. */
#define FY_IO_IN 0x001u
#define FY_IO_OUT 0x004u
#define FY_IO_ERR 0x008u
#define FY_IO_HUP 0x010u
#define FY_IO_RDHUP 0x2000u

struct fy_io;
/* An fd is ready: events is what epoll reported. Loop thread. */
typedef void fy_io_fn(struct fy_io *io, uint32_t events);

struct fy_io {
    int fd;
    fy_io_fn *fn;
    struct fy_loop *loop; /* set by fy_io_add */
    int added;
};

struct fy_timer;
/* A timer is due. It is out of the heap while this runs: it re-arms
 * itself with fy_timer_set if it wants to run again. Loop thread. */
typedef void fy_timer_fn(struct fy_timer *t);

struct fy_timer {
    uint64_t due; /* monotonic ns */
    fy_timer_fn *fn;
    struct fy_loop *loop;
    size_t slot; /* its place in the heap, + 1; 0: not armed */
};

/* A loop for a new socket: the threads start if they were not running.
 * 0 and *out, or < 0 (detail in fy_err) when a thread cannot start. */
int fy_loop_hold(struct fy_loop **out);

/* Lets go of a loop taken with fy_loop_hold; the last one stops and joins
 * the threads. Not from a loop thread. */
void fy_loop_release(struct fy_loop *l);

/* Watches io->fd (non-blocking) for events (FY_IO_IN, FY_IO_OUT, ...;
 * level-triggered; 0: registered but quiet). Any thread. 0 or -errno. */
int fy_io_add(struct fy_loop *l, struct fy_io *io, int fd, fy_io_fn *fn, uint32_t events);

/* Changes what io waits for. Any thread. */
void fy_io_mod(struct fy_io *io, uint32_t events);

/* Stops watching io (the fd is not closed). Any thread; its memory may be
 * reused only after it was deleted on the loop's thread (see above). */
void fy_io_del(struct fy_io *io);

/* Makes t run no later than due (an earlier request stands): due 0 means
 * at the loop's next turn. Any thread. The heap has room reserved for two
 * timers per socket that holds the loop (fy_loop_hold), so this never
 * allocates. */
void fy_timer_set(struct fy_loop *l, struct fy_timer *t, fy_timer_fn *fn, uint64_t due);

/* Disarms t. Loop thread (or when the loop is stopped). */
void fy_timer_stop(struct fy_timer *t);

/* Runs fn(arg) on the loop's thread between two batches of events, and
 * returns once it has run. Not from a loop thread, nor with a lock a
 * callback of this loop may take. */
void fy_loop_run(struct fy_loop *l, void (*fn)(void *), void *arg);

/* Work that may block (a name lookup): `work` runs on a short-lived
 * thread of its own, with no lock held, then `done` runs on the loop's
 * thread like a callback. The caller owns w until done has run; done runs
 * even while the owner is being torn down, so a w whose owner went must be
 * marked as orphaned by the owner (on the loop's thread) and freed by
 * done. The loop's threads stop only once every offloaded w is done. 0 or
 * < 0 (no thread could start). */
struct fy_work;
typedef void fy_work_fn(struct fy_work *w);
struct fy_work {
    fy_work_fn *work, *done;
    struct fy_loop *loop;
    struct fy_work *next;
};
int fy_loop_offload(struct fy_loop *l, struct fy_work *w, fy_work_fn *work, fy_work_fn *done);

/* Closes descriptors a peer sent us. A descriptor we have not proved to be
 * a memfd or a socket may be a file on a FUSE mount the peer serves, whose
 * close(2) waits for the peer's daemon (FUSE_FLUSH): those are closed on a
 * thread of their own, so no caller waits on a peer. Any thread. */
void fy_close_foreign(const int *fds, int n);

/* 1 if the caller is l's thread. */
int fy_loop_on_thread(const struct fy_loop *l);

/* A buffer of FY_LOOP_SCRATCH bytes owned by the calling loop thread, for
 * reading: callbacks of one thread never run at once. */
#define FY_LOOP_SCRATCH (64u * 1024u)
unsigned char *fy_loop_scratch(void);

/* The I/O threads running now (tests and `ferry stat`). */
int fy_loop_threads(void);

#endif /* FY_LOOP_H */
