/*
 * stream_int.h - the tcp:// and ipc:// transports (ZMTP 3.1 over a byte
 * stream): what their files share.
 *
 *   stream.c           the transport of one socket: its state, its timer
 *                      (handshake deadlines, heartbeats, redials, linger),
 *                      close with linger
 *   stream_endpoint.c  listeners (accept, admission) and dialers (connect,
 *                      backoff)
 *   stream_conn.c      a connection's life: handshake, output, teardown
 *   stream_rx.c        a connection's input: decoding, budgets, queueing
 *   stream_pipe.c      the pipe ops the socket calls (send, recv, ...)
 *   stream_curve.c     the CURVE mechanism on a connection (curve.h): its
 *                      handshake commands, sealing output, opening input
 *   stream_addr.c      addresses
 *
 * One lock. Everything here (listeners, dialers, connections, their
 * buffers) is guarded by the socket's mtx, like the pipes themselves: the
 * I/O thread (loop.h) takes it around each event and timer; user threads
 * hold it in the pipe ops. No system call made under it can block: every
 * fd is non-blocking.
 *
 * Who does the I/O. Sending: the user's thread encodes a message into the
 * connection's output buffer and, when that buffer was empty, writes it at
 * once (no hand-off, so a request leaves with no thread switch); whatever
 * the kernel does not take is written by the I/O thread on FY_IO_OUT, many
 * messages per write. Receiving: the I/O thread reads, decodes and queues
 * whole messages (up to RCVHWM, then it stops reading and TCP's flow
 * control pushes back on the peer), and wakes the socket's waiters. But a
 * receiver about to sleep on a socket whose only pipe is a live connection
 * parks on it (sock.h, park.c): the I/O thread stops waiting on its input,
 * the receiver polls the fd and reads and decodes on its own thread, with
 * the same code under the same lock, and hands the reading back when it
 * wakes. What only the I/O thread may do (closing the fd) is left to it:
 * a connection found broken on a user's thread is recorded (rx_fail) and
 * torn down at the I/O thread's next turn.
 *
 * A connection is a pipe (struct st_pipe). An accepted connection joins the
 * socket only once the handshake is done and the peer's socket type fits.
 * A dialer's pipe joins at once, as in ZeroMQ: messages sent before the
 * connection exists wait in it (up to SNDHWM) and leave after the
 * handshake. When a live connection breaks, its pipe dies (REQ learns it:
 * FERRY_ECONNRESET or resend) and the dialer makes a new one and redials
 * with exponential backoff.
 *
 * Lifetime. Fds are added to the loop from any thread but removed only on
 * the I/O thread (close runs as loop tasks), which forgets their events
 * still in the batch. The transport holds one reference on each pipe it
 * knows; a closed connection's reference is dropped at the transport's
 * next timer run (the "grave"), since the callback that closed it may
 * still be using it further up its stack.
 */
#ifndef FY_STREAM_INT_H
#define FY_STREAM_INT_H

#include "../../core/loop.h"
#include "../../core/monitor.h"
#include "../../core/sock.h"
#include "curve.h"
#include "zmtp.h"

#include <sys/socket.h>

/* A resolved address to bind or connect to. */
struct st_addr {
    struct sockaddr_storage ss;
    socklen_t len;
    int family; /* AF_INET, AF_INET6, AF_UNIX */
};

/* Parses the part of a tcp:// URL after the scheme: "HOST:PORT",
 * "[V6]:PORT", and for binding "*:PORT" (every IPv4 interface) and port
 * "*" or 0 (a free port). Host names go through getaddrinfo (the first
 * usable result). Returns 0 or FERRY_EBADURL / a resolver failure. */
int st_tcp_addr(const char *rest, int bind, struct st_addr *out);

/* ipc:// paths: "/abs/path", "rel/path", or "@name" for a Linux abstract
 * socket (as libzmq spells it: no trailing NUL in the address). */
int st_ipc_addr(const char *rest, struct st_addr *out);

/* 1 if the host in a tcp:// address is a literal IPv4 or IPv6 address
 * (nothing to resolve again on reconnect). */
int st_is_numeric(const char *rest);

/* Formats an address back as a URL ("tcp://127.0.0.1:40123"). */
void st_addr_url(const struct st_addr *a, char *buf, size_t len);

struct st_tran;
struct st_pipe;
struct st_resolve;

struct st_listener {
    struct fy_io io; /* io.fd: the listening socket */
    struct st_tran *t;
    uint64_t paused_until; /* out of descriptors: not listening until then (0: listening) */
    int unlink_path;       /* ipc: remove the file at close if it is still ours */
    dev_t dev;
    ino_t ino;
    char path[108];
    char url[160]; /* its URL, the port resolved (its connections' events) */
    struct st_listener *next;
};

struct st_dialer {
    struct st_addr addr; /* tcp: re-resolved before each attempt */
    char rest[256];      /* the URL after the scheme */
    int ipc;
    int numeric;          /* the host is an address: never resolved again */
    struct st_pipe *pipe; /* current pipe: pending or connected (a reference) */
    int backoff_ms;
    uint64_t retry_at; /* monotonic ns; 0: not waiting */
    struct st_tran *t;
    struct st_resolve *resolving; /* a lookup of the host in progress, or NULL */
    struct st_dialer *next;
};

/* Connection states. */
enum {
    C_IDLE,       /* a dialer's pipe without a connection */
    C_CONNECTING, /* non-blocking connect() in progress */
    C_HANDSHAKE,  /* greeting and READY sent, the peer's awaited */
    C_ACTIVE,     /* messages flow */
    C_LINGER,     /* closing: flushing, then FIN, then awaiting the peer's FIN */
    C_CLOSED
};

/* A received message waiting for the user, in a ring of them per pipe (no
 * allocation per message beyond the message itself). */
struct st_rx {
    ferry_msg *one;    /* a single part (parts == NULL) */
    ferry_msg **parts; /* several parts */
    size_t nparts;
    uint64_t charge; /* what it counts in rx_bytes */
};

/* A subscription to send once the peer's version is known. */
struct st_subq {
    struct st_subq *next;
    int cmd;
    size_t len;
    unsigned char data[];
};

struct st_pipe {
    struct fy_pipe base; /* first */
    struct fy_io io;
    struct st_tran *t;
    struct st_pipe *next; /* in t->conns */
    int fd;
    int state;
    int in_sock; /* added to the socket's pipes */
    struct st_dialer *d;
    uint32_t events; /* what io waits for now */
    int peer_minor;
    struct zmtp_curve *zc; /* CURVE: the mechanism's state; NULL: NULL mechanism */
    /* handshake output, written before anything else: the greeting, READY
     * (a 255-byte Identity), ERROR; CURVE's HELLO and INITIATE, or WELCOME
     * and READY */
    unsigned char hs[64 + 2 * ZC_FRAME_MAX];
    size_t hs_len, hs_off;
    uint64_t hs_deadline;
    /* input */
    struct zmtp_dec dec;
    ferry_msg **asm_parts; /* the message being assembled */
    size_t asm_n, asm_cap;
    uint64_t asm_total;
    struct st_rx *rxq; /* ring: rx_n entries from rx_first */
    size_t rx_first, rx_cap;
    size_t rx_n;
    int rx_paused;
    /* output: bytes [tx_off, tx_len) of tx are still to write; marks
     * holds the stream offsets where queued messages end */
    unsigned char *tx;
    size_t tx_off, tx_len, tx_cap;
    uint64_t tx_base; /* stream offset of tx[0] */
    uint64_t *marks;
    size_t mk_head, mk_n, mk_cap;
    struct st_subq *subq, **subq_tail;
    /* heartbeats */
    uint64_t last_rx, next_ping, ping_sent, ttl_ns;
    uint64_t linger_deadline;
    int shut_wr;
    int tx_blocked;     /* st_send or st_writable found the queue full: wake at half */
    int werr;           /* a write failed with this errno; the I/O thread tears down */
    int lingering;      /* the socket closes: deliver what is queued, then FIN */
    int removed;        /* the protocol let the pipe go: the I/O thread closes it */
    size_t rx_bytes;    /* queued input, part overhead included */
    uint64_t frames_in; /* frames decoded, data and commands (a read turn's measure) */
    uint64_t frame_cap; /* bytes of the frame being received, allocated so far */
    uint64_t pool_held; /* what the partial message draws from the socket's pool */
    int dying;          /* st_destroy: the transport may be gone */
    int parked;         /* a receiver reads it (park): the I/O thread waits for no input */
    uint64_t loan_at;   /* when the receiver last gave the input back on loan */
    int rx_fail;        /* found broken off the I/O thread: the error, torn down there */
    int rx_fail_bad;
    char rx_fail_why[200];
    uint64_t last_write;   /* when a send last wrote (or queued) */
    uint64_t stream_since; /* sends since then came less than ST_FLUSH_NS apart */
    int tx_held;           /* output held back for a batch: no FY_IO_OUT for it */
    uint64_t held_since;   /* when the held output began */
    int in_held;           /* listed in t->held */
};

struct st_tran {
    ferry_socket *s;
    struct fy_loop *loop;
    struct fy_timer timer; /* st_on_timer */
    int closing;
    struct st_listener *listeners;
    struct st_dialer *dialers;
    struct st_pipe *conns;  /* every pipe with (or waiting for) a connection */
    struct st_pipe **grave; /* closed: references dropped at the next timer run */
    size_t ngrave, cap_grave;
    int nlinger;
    uint64_t close_deadline; /* lingering ends by then (UINT64_MAX: never) */
    int any_removed;         /* some pipe has `removed` set */
    int any_failed;          /* some pipe has `rx_fail` set */
    /* Pipes holding output back (tx_held), for the timer to write once it
     * is ST_FLUSH_NS old without walking every connection; the walk runs
     * only when walk_at (the earliest other deadline) is due or a poke
     * asked for it (walk_at 0). */
    struct st_pipe **held;
    size_t nheld, cap_held;
    uint64_t walk_at;
    unsigned char *scratch; /* FY_LOOP_SCRATCH bytes for reading on a user's thread (park) */
    uint64_t pool_used;     /* partial input past the connections' floors */
};

/* Limits on what one peer can make us hold (docs/security.md lists them).
 * Every part, a pattern's envelope frames included, is charged its bytes plus
 * ST_PART_COST (the message struct, the allocator's header and the
 * pointers that track it), so a flood of empty frames costs what it costs
 * us.
 *  - Whole messages waiting for the user: at most RCVHWM of them, and
 *    reading stops once they hold ST_RX_QUEUE bytes (checked after each
 *    message, so one message larger than that still passes when the queue
 *    is empty); the kernel's buffer holds the rest and TCP's flow control
 *    then holds the peer back. Reading resumes when the queue is down to
 *    half of both (a resume per message taken would cost a system call
 *    each). The byte bound is small so that the queue and the buffers the
 *    allocator hands out stay in the cache: at 64 MiB, a stream of 1 MiB
 *    messages ran 3-6x slower, every frame buffer new memory taking page
 *    faults.
 *  - A message still arriving: its parts so far and the buffer of the
 *    frame being read. A frame's buffer grows with the bytes that arrive
 *    (zmtp.h), never on the header's word.
 *  - Each connection has an allowance of its own, ST_RX_BYTES +
 *    ST_PARTIAL_FLOOR, for what it holds queued and arriving together;
 *    beyond it, it draws on one pool per socket (FERRY_OPT_PARTIAL_MAX),
 *    and a connection the pool cannot serve is dropped. What a message
 *    draws stays drawn until the user has read it (completing a message
 *    gives nothing back). So a socket holds at most n x (ST_RX_BYTES +
 *    ST_PARTIAL_FLOOR) + the pool over its n connections, and hostile
 *    peers that take the whole pool cannot stop messages that fit in
 *    another connection's own allowance. */
#define ST_MAX_PARTS FY_MAX_PARTS
#define ST_PART_COST 128u
#define ST_RX_BYTES (64u << 20)
#define ST_RX_QUEUE (1u << 20)
#define ST_PARTIAL_FLOOR (256u << 10)
#define ST_CMD_MAX (64u << 10)   /* a command (READY...) before the handshake ends */
#define ST_TX_BACKLOG (1u << 20) /* no PONG while this much output waits */
#define ST_BURST_NS 10000u       /* sends closer than this are batched */
#define ST_DIRECT_MIN 8192u      /* messages this large skip our output buffer when they can */
/* A sender that streams (has sent for ST_FLUSH_NS without a pause of that
 * long) writes its output itself once ST_BATCH_BYTES wait (or half its
 * SNDHWM, in messages or bytes), rather than handing each burst to the I/O
 * thread (as a short burst still is):
 * when the sender and its I/O thread share a CPU (a pinned process) every
 * hand-off is a context switch and a fight for the socket's lock, and
 * CURVE's 64 B stream ran at 0.5 M messages/s so, 1.0 M without. What is
 * held back is written by its next send once it is ST_FLUSH_NS old or that
 * send comes after a pause (ST_BURST_NS), by a wait on the socket (a
 * blocked send, a recv that sleeps), ferry_flush or ferry_close, by a send
 * that finds the queue full, or else by the transport's timer ST_FLUSH_NS
 * after it began to be held. */
#define ST_BATCH_BYTES (64u << 10)
#define ST_FLUSH_NS 200000u

/* A receiver that read its connection itself may keep the input off the
 * I/O thread's watch for its next park (park.c, "The loan"): for this long
 * after it last did, then the transport's timer gives the input back to
 * the I/O thread, which then reads the peer's heartbeats and hang-up. */
#define ST_LOAN_NS 10000000u

/* --- stream.c: the transport ------------------------------------------------------ */

/* The socket's transport state, made (with its I/O thread) on first use.
 * mtx held. NULL and *err once the socket closes. */
struct st_tran *st_tran_get(ferry_socket *s, int *err);
/* Runs the transport's timer no later than when (0: ignored). */
void st_timer_at(struct st_tran *t, uint64_t when);
/* Lists p as holding output back since now: the timer writes it at now +
 * ST_FLUSH_NS unless something does before. */
void st_hold(struct st_pipe *p, uint64_t now);
/* Runs the timer at the loop's next turn: removed pipes, the grave. */
void st_poke(struct st_tran *t);

/* --- stream_endpoint.c: listeners and dialers -------------------------------------- */

int st_listen(ferry_socket *s, const char *rest, int ipc);
int st_dial(ferry_socket *s, const char *rest, int ipc);
/* The dialer leaves (teardown, I/O thread): a lookup in progress is
 * orphaned, d freed. */
void st_dialer_free(struct st_dialer *d);
/* The next attempt after the backoff (first: without doubling it); err
 * and why say what ended the last one (its CONNECT_RETRIED event). */
void st_dialer_schedule(struct st_dialer *d, int first, int err, const char *why);
/* One connection attempt; resolve: look the host name up again first (on
 * a thread of its own; the attempt follows). */
void st_dialer_try(struct st_tran *t, struct st_dialer *d, int resolve);
/* A non-blocking connect() finished (or failed). */
void st_on_connected(struct st_pipe *p);

/* --- stream_conn.c: a connection ---------------------------------------------------- */

/* A new pipe object; the caller links it (one reference, the transport's). */
struct st_pipe *st_pipe_new(struct st_tran *t);
/* The I/O thread's callback for a connection's fd. */
void st_conn_event(struct fy_io *io, uint32_t events);
/* Sets what the fd waits for from the connection's state. */
void st_conn_interest(struct st_pipe *p);
/* Writes what can be written now, without blocking. */
void st_conn_flush(struct st_pipe *p);
/* A write failed under a pipe op: the I/O thread tears down. */
void st_conn_fail_later(struct st_pipe *p, int err);
/* The connection is over; bad: the peer broke the rules (counted); err:
 * why, as a ferry error code, and fmt the text (both go to its event:
 * HANDSHAKE_FAILED, DISCONNECTED, CONNECT_RETRIED). On the I/O thread it
 * is torn down now; on a parked receiver's, it is marked (rx_fail: no more
 * input is read) and torn down by the I/O thread's next timer run. */
void st_conn_broken(struct st_pipe *p, int bad, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* A connection is up (accepted, or connected): our greeting goes out. */
void st_conn_start(struct st_pipe *p);
/* The peer's READY is in: checks its type and routing id, joins the
 * socket. 0 or < 0 (the connection is closed). */
int st_conn_ready(struct st_pipe *p, const unsigned char *meta, size_t mlen);
/* Its two halves: the check (the peer's type fits ours, its routing id's
 * length; an ERROR and the connection closed when not), and the join. */
int st_conn_peer_ok(struct st_pipe *p, const unsigned char *meta, size_t mlen);
int st_conn_join(struct st_pipe *p);
/* Handshake deadline, heartbeats and linger of one connection at now; the
 * next time it needs the timer (UINT64_MAX: none). 0, or -1 when the
 * connection was closed. */
int st_conn_timers(struct st_pipe *p, uint64_t now, uint64_t *next);
/* Closes the fd (I/O thread). */
void st_conn_close_fd(struct st_pipe *p);
/* The transport drops its reference at the next timer run. */
void st_grave_add(struct st_tran *t, struct st_pipe *p);
/* Output buffer: room for more bytes, append, a message's end mark. */
int st_tx_reserve(struct st_pipe *p, size_t more);
/* 1 when the output queue takes no more messages: SNDHWM of them, or
 * SNDHWM_BYTES waiting. A message is taken while less than both waits (so
 * one of any size always is, by an empty queue); a blocked sender is woken
 * once the queue is down to half of both. Counting bytes as well bounds
 * what a slow or stalled peer makes us hold (SNDHWM of 1 MiB messages
 * would be a gigabyte per connection) and keeps the queue in the cache:
 * the copy in and the kernel's copy out then run at the cache's speed, and
 * a large message finds the queue empty and goes from the caller's buffer
 * (ipc:// 64 KiB messages: 1.4 -> 3-4 GB/s on the bench machine). */
int st_tx_full(struct st_pipe *p);
void st_tx_put(struct st_pipe *p, const void *data, size_t len);
int st_mark_reserve(struct st_pipe *p);
void st_mark_push(struct st_pipe *p, uint64_t end);
/* Forgets the marks of messages written out; 1 if any went. */
int st_marks_written(struct st_pipe *p);
/* Appends a command frame (commands are never counted against SNDHWM). */
int st_tx_command(struct st_pipe *p, const char *name, const void *data, size_t len);
/* A SUBSCRIBE or CANCEL in the form the peer's ZMTP version takes. */
int st_tx_subscription(struct st_pipe *p, int cmd, const void *data, size_t len);

/* --- stream_rx.c: input ------------------------------------------------------------- */

extern const struct zmtp_dec_ops st_dec_ops;
/* Reads and decodes what the kernel has, up to a budget. On the I/O
 * thread, or on a parked receiver's (mtx held either way). */
void st_conn_read(struct st_pipe *p, uint32_t events);
/* Charges what p holds beyond its allowance (plus extra) to the pool; 0,
 * or -1 when the pool cannot take it (nothing changes). */
int st_pool_charge(struct st_pipe *p, uint64_t extra);
/* Frees the message being assembled. */
void st_asm_clear(struct st_pipe *p);
void st_rx_free(struct st_rx *r);
/* The most a message from this peer may carry. */
uint64_t st_msg_max(const struct st_pipe *p);
/* The largest frame that may bring body bytes (under CURVE, a MESSAGE's
 * overhead more). */
uint64_t st_frame_max(const struct st_pipe *p, uint64_t body);
/* 1 when the input queue is at RCVHWM or ST_RX_QUEUE (reading pauses). */
int st_rx_full(const struct st_pipe *p);
/* 1 when a paused input queue is down to half of both (reading resumes). */
int st_rx_low(const struct st_pipe *p);

/* --- stream_curve.c: CURVE on a connection --------------------------------------------- */

/* The connection starts: the mechanism it speaks is the socket's now
 * (auth.h); for CURVE, its state is made. 0 or FERRY_ENOMEM. */
int st_mech_start(struct st_pipe *p);
/* Its greeting, with our mechanism and role. */
size_t st_mech_greeting(struct st_pipe *p, unsigned char out[ZMTP_GREETING_SIZE]);
/* The peer's greeting is in: refuses a mechanism or role that does not
 * fit ours (FERRY_EMECH, the connection is closed), and writes what we
 * say next: READY (NULL) or HELLO (a CURVE client). */
int st_mech_peer_greeting(struct st_pipe *p);
/* A command during a CURVE handshake (body as the frame has it, opened in
 * place). 0 or < 0 (the connection is closed). */
int st_curve_handshake(struct st_pipe *p, unsigned char *body, size_t len);
/* A frame of an active CURVE session: opens the MESSAGE in place and sets
 * *flags (ZMTP_MORE, ZMTP_COMMAND), *body and *size to the frame inside.
 * 0 or < 0 (the connection is closed). */
int st_curve_open(struct st_pipe *p, int *flags, unsigned char **body, uint64_t *size);
/* The session is up: what was queued in clear before it existed (messages
 * sent before the connection) is sealed in place of it. 0 or FERRY_ENOMEM. */
int st_curve_seal_queue(struct st_pipe *p);
/* Wipes and frees the mechanism's state. */
void st_mech_end(struct st_pipe *p);
/* Appends one frame to the output: in clear, or sealed in a MESSAGE when
 * a CURVE session is up. Its body is the a bytes then the b bytes. */
int st_tx_frame(struct st_pipe *p, int flags, const void *a, size_t alen, const void *b,
                size_t blen);
/* A refusal that stops the handshake: an ERROR with this reason (a ZAP
 * status code such as "400" for CURVE), written directly when our own
 * handshake output is all out. */
void st_send_error(struct st_pipe *p, const char *reason);

/* --- stream_pipe.c ------------------------------------------------------------------ */

extern const struct fy_pipe_ops st_pipe_ops;

#endif /* FY_STREAM_INT_H */
