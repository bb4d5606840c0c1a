/*
 * sock.h - the messaging socket core: sockets, pipes, and the two plug-in
 * tables (protocols and transports).
 *
 * Threads and locks. Each socket has one mutex, `mtx`. Every user call
 * takes it for short, non-blocking steps and never sleeps holding it: a
 * call that must wait releases it and sleeps on the socket's wake word
 * (fy_wake, below). The transports' background work (listeners, dialers,
 * connection liveness) runs on the process's I/O thread (loop.h), whose
 * callbacks take `mtx` to add or retire pipes. So every public call on a
 * socket is thread-safe, and a socket's send and recv may block in two
 * threads at once.
 *
 * Pipes. A pipe is one connection to one peer, whatever the transport.
 * The protocol decides which pipe a message goes to or comes from; the
 * transport moves the bytes. Pipe ops are called with `mtx` held and never
 * block: they return "not now" and the core waits.
 */
#ifndef FY_SOCK_H
#define FY_SOCK_H

#include "fy.h"
#include "loop.h"
#include "stats.h"

#include <pthread.h>

struct fy_pipe;
struct fy_proto_ops;
struct fy_loop;

/* The wake block: one cache line of shared memory per socket, mapped by
 * the socket and by every peer it is connected to over shm://. Anyone who
 * makes progress possible for the socket (a peer that wrote a message or
 * freed room, the I/O thread that added or lost a pipe) calls fy_wake().
 * A waiter increments `sleepers`, clears `woken`, re-checks its condition,
 * and sleeps on `seq` as a futex; the waker bumps `seq` and calls
 * FUTEX_WAKE only when `sleepers` is non-zero and it is the first to set
 * `woken` since: a busy socket costs its peers no system call, and a
 * publisher sending many messages to a sleeping subscriber pays one wake-up
 * per sleep, not one per message. */
struct fy_wake {
    char magic[8]; /* "FERRYWAK" */
    uint32_t version;
    int32_t owner_pid;
    _Alignas(64) _Atomic uint32_t seq;
    _Atomic uint32_t sleepers;
    _Atomic uint32_t fd_armed; /* the socket's eventfd wants a write */
    _Atomic uint32_t woken;    /* a wake-up was sent since a sleeper last armed it */
};
#define FY_WAKE_SIZE 4096u

/* Wakes the socket that owns w. efd is the write end of that socket's
 * pollable fd (-1: none); it is written with MSG_DONTWAIT, so a peer that
 * shares it cannot make the write block. */
int fy_wake(struct fy_wake *w, int efd); /* 1 when it made a system call */

/* Bells. A sleeping socket is woken through its own wake block; when one
 * send of a publisher finds several of its readers asleep, that is one
 * FUTEX_WAKE per reader, and a wake-up costs the waker several
 * microseconds on a VM (the kernel's, and the hypervisor's interrupt to the
 * other CPU). So a publisher owns a bell, a word its readers map but cannot
 * write (in the shm:// broadcast pool), and each reader that agreed to
 * (fy_pipe_ops.bell) sleeps on its own word and on the bells of its
 * publishers at once. While the socket gathers (a fan-out send, a flush),
 * fy_wake_peer claims each sleeping reader's wake-up as fy_wake does but
 * only counts it; fy_bell_ring then wakes them with one FUTEX_WAKE on the
 * bell when the send went to most of its peers, else one by one (the bell
 * wakes every reader asleep on it, those the send had nothing for too). A
 * reader that starts or stops hearing a bell ends its current sleep
 * unconditionally, since a peer may have claimed that sleep's wake-up
 * for a bell it did not hear. A reader counts its publishers' bells
 * against FY_BELLS_MAX; past that its peers wake it one by one. */
#define FY_BELLS_MAX 32
#define FY_BELL_BATCH 16
/* Wakes w's owner, as fy_wake, unless s gathers and bell is the bell
 * that owner sleeps on: then its wake-up is claimed and counted for
 * fy_bell_ring. listening: the flag by which the owner says it sleeps on
 * bell, read after the claim. mtx held; 1 when it made a system call
 * (one owed to the ring is not this pipe's: fy_pipe_stamp). */
int fy_wake_peer(ferry_socket *s, struct fy_wake *w, int efd, _Atomic uint32_t *bell,
                 const _Atomic uint32_t *listening);
/* Wakes what the gather claimed: through the bell when it claimed two
 * or more and was asked to wake a majority of the socket's peers, or
 * claimed more than FY_BELL_BATCH; else each through its own word. mtx
 * held. */
void fy_bell_ring(ferry_socket *s);

/* Parts per message, zero-length ones included, on every transport (the
 * same limit as ZMTP's): a peer's parts cost us memory and time whatever
 * their length. */
#define FY_MAX_PARTS 65536

/* A part of an outgoing message. */
struct fy_part {
    const void *data;
    size_t len;
};

/* An outgoing message: all its parts (the core buffers the parts of a
 * multipart message until the last one, so a message is sent whole). */
/* Where a transport put a fan-out message it writes once for all its
 * peers (the shm:// broadcast pool): the pattern gives each send that goes
 * to several pipes one of these, zeroed, so the first pipe's transport
 * places the message and the others of the same send refer to it.
 * owner: the transport object that filled it; the rest is its own. */
struct fy_fanout {
    const void *owner;
    uint64_t id, off, len;
    uint32_t parts;
};

struct fy_txmsg {
    struct fy_part *parts;
    size_t nparts;
    size_t total;          /* bytes in all parts */
    ferry_msg *claim;      /* single-part zero-copy message, or NULL */
    int whole;             /* write it only if it fits now, whole (PUB: never
                              stream, never leave half a message behind) */
    int fanout;            /* the same message goes to several pipes in this
                              send: a stream transport queues it rather than
                              writing each pipe's copy at once (stream_pipe.c) */
    struct fy_fanout *fan; /* with fanout: the send's shared placement, or NULL */
};

/* ferry_msg: one part of a message, owned by the user between recv and
 * free (or alloc and send). */
/* HEAP: data in the same block, after the struct. CLAIM: room claimed in
 * a peer's ring (ferry_msg_alloc). INPLACE: received, still in the ring.
 * EMPTY: a zero-length part. COPY: data in a block of its own, freed with
 * the struct (a claim given up before its multipart message was sent).
 * BRIEF: INPLACE without the references, for a receive that copies the
 * part out and frees it before it lets mtx go (struct fy_rxmsg's brief);
 * whatever such a receive keeps is made INPLACE first (fy_msg_pin). */
enum { FY_MSG_HEAP, FY_MSG_CLAIM, FY_MSG_INPLACE, FY_MSG_EMPTY, FY_MSG_COPY, FY_MSG_BRIEF };
struct ferry_msg {
    void *data;
    size_t size;
    int kind;
    int more;             /* received: more parts follow      */
    struct fy_pipe *pipe; /* CLAIM, INPLACE: holds a reference */
    int64_t token;        /* INPLACE: ring release token       */
    ferry_socket *sock;   /* CLAIM: the socket it was allocated on;
                             INPLACE: holds a reference on it;
                             EMPTY: whose spare list may take the struct
                             back (no reference: used only under its mtx) */
    size_t cap;           /* CLAIM: room claimed; HEAP: the block's
                             capacity, noted when the block was made
                             for a received frame or kept for reuse
                             (0: size)                          */
};

/* A received message: its parts, in order, delivered one per recv. The
 * first FY_RX_FEW part pointers live in the struct (a REQ's reply, a
 * ROUTER's id, delimiter and body need no allocation); more go to the
 * heap. parts points into the struct, so move one with fy_rxmsg_move(),
 * never by assignment. */
#define FY_RX_FEW 4
struct fy_rxmsg {
    ferry_msg **parts; /* few, or a heap array of cap entries */
    size_t nparts, next;
    size_t cap; /* 0 while parts is few */
    struct fy_pipe *from;
    /* Set by a receive that copies each part it hands out and frees it
     * under the same hold of mtx (ferry_recv): a transport may then give
     * parts in place without taking references (FY_MSG_BRIEF), two atomic
     * increments and two decrements a part fewer; the receive pins what it
     * keeps. Read by the transport before it fills the struct. */
    int brief;
    ferry_msg *few[FY_RX_FEW];
};

/* Makes a BRIEF part INPLACE: takes the references it goes without. mtx
 * held. */
void fy_msg_pin(ferry_msg *m);

/* A pipe's queues at one look (pipe op depth). */
struct fy_depth {
    uint64_t out_msgs, out_bytes; /* toward the peer, not yet taken by it */
    uint64_t in_msgs;             /* from the peer, not yet taken by the user */
    uint64_t ring_size;           /* shm://: the ring toward the peer; else 0 */
};

/* Transport-side operations on a pipe. All are called with the socket's
 * mtx held and must not block.
 *  send     writes a whole message. 1 sent, 0 no room now, < 0 broken.
 *  claim    room for one single-part message of size bytes, in place
 *           (NULL: not possible now or not supported; the core copies).
 *  commit   publishes a claimed message of size bytes (size <= claimed).
 *  unclaim  forgets a claim that will not be sent.
 *  recv     the next whole message: 1 and *m filled, 0 none yet, < 0
 *           broken (FERRY_ECORRUPT, FERRY_ECONNRESET, FERRY_EMSGSIZE).
 *           check: confirm "none" thoroughly (the caller will sleep).
 *  readable 0 when recv would surely find nothing now and do nothing: a
 *           cheap look before a call that would cost more (it may count
 *           the look as recv's own). 1 is only "maybe". NULL: always
 *           maybe. fy_pipe_maybe() calls it.
 *  watch    a word in memory the pipe's peer writes that changes when
 *           recv may have something new (shm://: the record header at the
 *           reader's position), or NULL. A spinning receiver loads it
 *           without mtx, holding a reference on the pipe (the word stays
 *           mapped while one is held), and takes mtx to look only once it
 *           changed: the message's own cache line brings the news, and
 *           the two lines after the word are fetched at once (what recv
 *           reads next, a record's payload). A change is only "maybe";
 *           an unchanged word is not "nothing" (the spinner still looks
 *           now and then). NULL: none.
 *  bell     the word the pipe's peer rings once for all its readers when
 *           one send of its woke several (a PUB's fan-out); the caller
 *           will include it in every sleep from now on, and the peer is
 *           told so here (it may then wake us through the bell alone).
 *           NULL: the peer has none, or this kernel cannot wait on two
 *           words at once. Called once, when the pipe joins a socket
 *           that receives, while the socket listens to fewer than
 *           FY_BELLS_MAX bells. NULL op: never.
 *  release  gives back an in-place message's token.
 *  send_cmd sends a control command (subscribe: 1, unsubscribe: 0).
 *  writable 1 if a message of len bytes would fit now.
 *  arm_room  the socket will wait for room without sleeping on its wake
 *           word (a poller): have the peer signal its pollable fd when room
 *           appears. NULL: the transport signals room anyway.
 *  abort_tx a message was left half-written (timeout): tell the peer to
 *           discard it.
 *  describe the transport's name ("shm", "ipc", "tcp") and the peer's
 *           address as text (tcp: host:port), for the counters file;
 *           called when the pipe joins the socket and when it starts.
 *  depth    what waits in the pipe's queues now (for the counters; a
 *           peer's numbers clamped to what is possible). NULL: unknown.
 *  flush    give the peer the wake-up its sends skipped while the socket's
 *           tx_batch was set (FERRY_BATCH), and write what sends left in
 *           the pipe's output to gather a batch (out_owed). NULL: the
 *           transport never skips or holds back either.
 *  park     the socket's only pipe, and its caller is about to sleep
 *           waiting for a message: the caller takes the reading over from
 *           the I/O thread, so that the data's arrival wakes it directly
 *           (one wake-up, as a plain blocking recv(2), rather than the I/O
 *           thread's and then the caller's). Returns an fd the caller
 *           polls for POLLIN, or -1 (not now: the caller sleeps as usual).
 *           Until unpark, the transport keeps the I/O thread from waiting
 *           on that fd's input, and wakes the socket's waiters if it
 *           closes the fd. NULL: never.
 *  unpark   the caller woke; readable: the fd polled readable, so read
 *           and decode what is there now, on the caller's thread, then
 *           give the reading back to the I/O thread. keep: no other
 *           thread waits on the socket, so the transport may leave the
 *           input off the I/O thread's watch (a loan) for the caller's
 *           next park, which then costs no system call, until reclaim,
 *           or until the caller has not parked for a while (the
 *           transport's own deadline: someone must read the peer's
 *           heartbeats and its hang-up).
 *  reclaim  the socket is about to wait in some other way (a thread
 *           sleeping on the wake word, a poller, the pollable fd armed):
 *           a loaned input goes back to the I/O thread now. NULL: none.
 *  close    the pipe leaves the socket: let the peer see it now (may run
 *           while in-place messages still reference the pipe).
 *  destroy  frees the pipe; called once, when the last reference goes,
 *           without mtx. */
struct fy_pipe_ops {
    int (*send)(struct fy_pipe *p, const struct fy_txmsg *m);
    void *(*claim)(struct fy_pipe *p, size_t size);
    int (*commit)(struct fy_pipe *p, size_t size);
    void (*unclaim)(struct fy_pipe *p);
    int (*recv)(struct fy_pipe *p, struct fy_rxmsg *m, int check);
    int (*readable)(struct fy_pipe *p);
    const _Atomic uint64_t *(*watch)(struct fy_pipe *p);
    const _Atomic uint32_t *(*bell)(struct fy_pipe *p);
    void (*release)(struct fy_pipe *p, int64_t token);
    int (*send_cmd)(struct fy_pipe *p, int cmd, const void *data, size_t len);
    int (*writable)(struct fy_pipe *p, size_t len);
    void (*arm_room)(struct fy_pipe *p);
    void (*abort_tx)(struct fy_pipe *p);
    void (*flush)(struct fy_pipe *p);
    void (*describe)(struct fy_pipe *p, const char **transport, char *addr, size_t len);
    void (*depth)(struct fy_pipe *p, struct fy_depth *d);
    int (*park)(struct fy_pipe *p);
    void (*unpark)(struct fy_pipe *p, int readable, int keep);
    void (*reclaim)(struct fy_pipe *p);
    void (*close)(struct fy_pipe *p);
    void (*destroy)(struct fy_pipe *p);
};

/* A routing id is 1..255 bytes (ZMTP's limit); ids starting with 0x00 are
 * reserved for the ones a ROUTER generates. */
#define FY_RID_MAX 255

struct fy_pipe {
    const struct fy_pipe_ops *ops;
    ferry_socket *sock;
    _Atomic int refs;
    int dead;       /* the peer is gone: no more sends; recv drains */
    int pending;    /* no peer yet (a tcp/ipc dialer before its handshake):
                       sends queue in it, but it counts as no peer */
    int tx_partial; /* a message is half-written: finish it here first */
    int id;
    int peer_pid;
    unsigned peer_uid;
    /* The routing id the peer announced (ZMTP READY's Identity, the shm://
     * handshake), peer_rid_len 0 if none: set by the transport before the
     * pipe starts (pipe_start), read by the protocol (a ROUTER). */
    unsigned char peer_rid[FY_RID_MAX];
    size_t peer_rid_len;
    void *proto_data;             /* the protocol's state for this pipe (pipe_size bytes,
                                     from joining the socket until pipe_rm) */
    void *tran;                   /* transport state                  */
    void *dialer;                 /* the dialer that made it, if any  */
    struct fy_stat_peer *stat;    /* its counters (stats.h), while in the socket */
    int stat_heap;                /* stat is in process memory, not in the counters file */
    uint64_t stamped;             /* its message count when last_active was last written */
    int woke;                     /* the last send made a system call (see fy_pipe_stamp) */
    int lent;                     /* its input is on loan to a receiver that parks (unpark's
                                     keep): nobody reads it until that receiver parks again
                                     or the transport's timer ends the loan, so a spin on
                                     it is pointless; set and cleared by the transport (mtx) */
    unsigned full;                /* sends that found it full */
    const _Atomic uint32_t *bell; /* the peer's bell we sleep on too (ops->bell), or NULL */
    char *url;                    /* the endpoint it came from (heap; fy_pipe_set_url) */
    char addr[96];                /* tcp://: the peer's address, kept once known (events) */
};

/* Names the endpoint a pipe came from (a listener's or dialer's URL, from
 * a printf format), for its events. The transport calls it when it makes
 * the pipe, and fy_pipe_fini in its destroy. Without memory the name
 * stays empty. */
void fy_pipe_set_url(struct fy_pipe *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void fy_pipe_fini(struct fy_pipe *p);

/* Samples the pipe's queues into its counters (socket.c). */
void fy_pipe_depth(struct fy_pipe *p);

/* The protocols move messages through these, so every message a pipe
 * takes or gives is counted in one place (mtx held: one writer). The time
 * of the last message is read from the clock only where it is cheap
 * against what the call costs anyway: the first message and every 64th, a
 * send that made a system call to wake the peer or write (p->woke, set by
 * the transport), the first send that found the pipe full and every 64th,
 * and the socket's waits (fy_sock_stamp_locked, before it sleeps). The
 * queues are sampled at the same moments. A clock read per message cost
 * 10 % of shm:// throughput. */
static inline void fy_pipe_stamp(struct fy_pipe *p)
{
    p->woke = 0;
    fy_stat_touch(p->stat);
    if (p->ops->depth)
        fy_pipe_depth(p);
    p->stamped = atomic_load_explicit(&p->stat->io.msgs_in, memory_order_relaxed) +
                 atomic_load_explicit(&p->stat->io.msgs_out, memory_order_relaxed);
}

static inline void fy_pipe_count(struct fy_pipe *p, _Atomic uint64_t *msgs, _Atomic uint64_t *bytes,
                                 uint64_t len)
{
    uint64_t n = atomic_load_explicit(msgs, memory_order_relaxed) + 1;
    atomic_store_explicit(msgs, n, memory_order_relaxed);
    fy_stat_add(bytes, len);
    if ((n & 63) == 1 || p->woke)
        fy_pipe_stamp(p);
}

static inline int fy_pipe_send(struct fy_pipe *p, const struct fy_txmsg *m)
{
    int rc = p->ops->send(p, m);
    if (rc == 1)
        fy_pipe_count(p, &p->stat->io.msgs_out, &p->stat->io.bytes_out, m->total);
    else if (rc == 0 && (++p->full & 63) == 1)
        fy_pipe_stamp(p); /* full: the moment its queue matters (first and every 64th) */
    return rc;
}

static inline int fy_pipe_commit(struct fy_pipe *p, size_t size)
{
    int rc = p->ops->commit(p, size);
    if (rc == 1)
        fy_pipe_count(p, &p->stat->io.msgs_out, &p->stat->io.bytes_out, size);
    return rc;
}

void fy_pipe_ref(struct fy_pipe *p);
void fy_pipe_unref(struct fy_pipe *p);

/* What a byte-stream transport (ZMTP) needs to know of a pattern, and all
 * it may know: the transports branch on these, never on a socket type.
 * Frames travel verbatim: envelopes (REQ's delimiter, a REP's route, a
 * ROUTER's routing id) are the protocol's business, on every transport.
 *  in   what arrives as data frames: MESSAGES; SUBSCRIPTIONS in the ZMTP
 *       3.0 form (0x01/0x00 + prefix, handed to the protocol's cmd; other
 *       data dropped: a PUB); NONE (dropped: a PUSH). SUBSCRIBE and CANCEL
 *       commands go to cmd whenever the protocol has one. */
enum fy_wire_in { FY_IN_MESSAGES, FY_IN_SUBSCRIPTIONS, FY_IN_NONE };
struct fy_wire {
    const char *name;     /* Socket-Type in READY ("REQ") */
    const char *peers[4]; /* the Socket-Types it talks to (RFC 37's table) */
    int identity;         /* READY (and the shm:// handshake) carries an Identity:
                             FERRY_OPT_ROUTING_ID, empty if unset (libzmq's REQ,
                             DEALER and ROUTER) */
    enum fy_wire_in in;
    int fanout; /* sends the same message to many peers (PUB, XPUB): a transport
                   that can write it once for all of them prepares for that at
                   connection set-up (the shm:// broadcast pool), and a send's
                   wake-ups of sleeping readers are gathered (fy_wake_peer) */
};

/* Protocol operations, called with mtx held; never block (setopt below
 * takes mtx itself).
 *  send  1 sent, 0 not now (the core waits and retries), < 0 error.
 *  recv  1 and *m filled, 0 nothing now, < 0 error.
 *  accept    before a connection is confirmed to the peer: 0 to accept,
 *            < 0 to refuse it (a PAIR that has its peer). NULL: accept.
 *  pipe_add  0 to accept the new pipe, < 0 to refuse it. Its proto_data
 *            (pipe_size bytes, zeroed) is already there.
 *  pipe_start  the pipe's peer is known (its handshake is done, its
 *            announced routing id in p->peer_rid): right after pipe_add for
 *            a pipe added ready, or when a pending one (a tcp/ipc dialer's)
 *            completes its handshake. 0, or < 0 to refuse the peer (the
 *            transport drops the connection; the detail in fy_err).
 *  pipe_rm   the pipe is leaving the socket; its proto_data is freed
 *            after this returns.
 *  cmd   a control command arrived on a pipe (subscriptions).
 *  setopt    the pattern's own options (SUB: SUBSCRIBE), asked before the
 *            core's: 0, < 0 an error, or FERRY_ENOTSUP when the option is
 *            not the pattern's. Called without mtx (it takes it).
 *  getopt    reads the pattern's own integer options, asked before the
 *            core's: 0, or FERRY_ENOTSUP when not the pattern's. mtx held.
 *  peer_ready  1 if pipe p counts as a peer for ferry_wait_peers (a PUB's
 *            subscriber once it has subscribed). NULL: every live pipe.
 *  send_ready  1 if a send now would not wait (FERRY_POLLOUT). NULL: some
 *            live pipe has room (fy_any_writable).
 *  state_size, pipe_size  the per-socket and per-pipe state the core
 *            allocates (zeroed) and frees for the protocol, as nng's
 *            protocols declare theirs. */
struct fy_proto_ops {
    int type;
    const char *name;
    int can_send, can_recv;
    size_t state_size;
    size_t pipe_size;
    const struct fy_wire *wire;
    int (*init)(ferry_socket *s);
    int (*setopt)(ferry_socket *s, int opt, const void *val, size_t len);
    int (*getopt)(ferry_socket *s, int opt, int64_t *val);
    int (*peer_ready)(ferry_socket *s, struct fy_pipe *p);
    int (*send_ready)(ferry_socket *s);
    int (*send)(ferry_socket *s, const struct fy_txmsg *m);
    int (*recv)(ferry_socket *s, struct fy_rxmsg *m, int check);
    int (*accept)(ferry_socket *s);
    int (*pipe_add)(ferry_socket *s, struct fy_pipe *p);
    int (*pipe_start)(ferry_socket *s, struct fy_pipe *p);
    void (*pipe_rm)(ferry_socket *s, struct fy_pipe *p);
    void (*cmd)(ferry_socket *s, struct fy_pipe *p, int cmd, const void *data, size_t len);
    struct fy_pipe *(*next_pipe)(ferry_socket *s, size_t size); /* for zero-copy alloc */
    void (*fini)(ferry_socket *s);
};

/* Helpers shared by the protocols (src/proto/common.c), mtx held. */

/* Sends m to one pipe, round-robin from *cursor, skipping full ones.
 * 1 sent (*out = the pipe), 0 all full or none. Broken pipes are removed. */
int fy_rr_send(ferry_socket *s, const struct fy_txmsg *m, size_t *cursor, struct fy_pipe **out);

/* Receives from the pipes fairly, round-robin from *cursor. 1 got (m->from
 * set), 0 nothing. Pipes that are broken, or dead and drained, are
 * removed. */
int fy_fq_recv(ferry_socket *s, struct fy_rxmsg *m, size_t *cursor, int check);

/* Sends a claimed message (m->claim) on its pipe. 1 sent, 0 no room,
 * FERRY_ECONNRESET when its pipe is gone (the core then copies). */
int fy_send_claim(ferry_socket *s, const struct fy_txmsg *m);

/* 1 if some live pipe of s would take a small message now. */
int fy_any_writable(ferry_socket *s);

/* 1 while a received message (or a receive error) waits for the user in
 * s->rx: taken from the pipes, by a poller's look or a multipart receive,
 * but not yet all received. A strictly alternating pattern (REQ, REP)
 * does not send meanwhile, as libzmq's do not before the last part. */
int fy_sock_rx_pending(const ferry_socket *s);

/* A send_ready for patterns whose sends never wait (they drop instead). */
int fy_send_never_waits(ferry_socket *s);

/* 1 if p is one of s's live pipes. */
int fy_pipe_live(ferry_socket *s, struct fy_pipe *p);

/* s's pipe (live or draining) with this id, or NULL. */
struct fy_pipe *fy_pipe_by_id(ferry_socket *s, int id);

/* Round-robin choice of a pipe with room for size bytes, or NULL. */
struct fy_pipe *fy_rr_peek(ferry_socket *s, size_t cursor, size_t size);

/* The pipe a zero-copy allocation of size bytes would go to (the
 * protocol's next_pipe), or NULL. */
struct fy_pipe *fy_proto_next_pipe(ferry_socket *s, size_t size);

const struct fy_proto_ops *fy_proto_find(int type);
const char *fy_type_name(int type);
int fy_types_compatible(int a, int b);

/* Transports. listen/dial are called from the user's thread without mtx;
 * they may block for a bounded time (a handshake with a local peer).
 * close_all stops every endpoint of the socket (called by ferry_close).
 * list (optional) reports the transport's live endpoints on the machine to
 * ferry_objects_list, stopping when fn returns non-zero (returned); it may
 * block for a bounded time per endpoint. */
struct fy_tran_ops {
    const char *scheme; /* "shm" */
    int secure;         /* carries the CURVE mechanism (auth.h) */
    int (*listen)(ferry_socket *s, const char *addr);
    int (*dial)(ferry_socket *s, const char *addr);
    void (*close_all)(ferry_socket *s);
    int (*list)(int (*fn)(const ferry_objinfo *, void *), void *arg);
};

/* The transports (socket.c holds the table). */
extern const struct fy_tran_ops fy_shm_tran, fy_tcp_tran, fy_ipc_tran;

/* Every transport's live endpoints, for ferry_objects_list. */
int fy_tran_list(int (*fn)(const ferry_objinfo *, void *), void *arg);

struct fy_opts {
    int rcvtimeo, sndtimeo; /* ms, -1 forever */
    int sndhwm, rcvhwm;     /* messages, 0 unlimited */
    uint64_t sndhwm_bytes;  /* tcp/ipc output queued per connection, 0 unlimited */
    uint64_t maxmsgsize;    /* bytes */
    uint64_t ring_size;     /* shm:// bytes per direction */
    int ring_prefault;      /* shm://: populate the rings at connection set-up */
    uint64_t shm_pool;      /* shm://: broadcast pool bytes (PUB, XPUB); 0 none */
    int spin_us;            /* busy-poll this long before sleeping; -1 adaptive */
    int req_resend;         /* REQ: resend to another peer when the peer dies */
    int64_t peer_uid;       /* shm:// allowed peer uid, -1 any; default: own uid */
    int reconnect_ms, reconnect_max_ms;
    int handshake_ms;
    int linger_ms;                        /* tcp/ipc close: flush and await FIN; -1 forever */
    int heartbeat_ivl;                    /* tcp/ipc: PING every ms, 0 off */
    int heartbeat_timeout;                /* ms without traffic after a PING; -1: = ivl */
    int heartbeat_ttl;                    /* ms, sent in PINGs: the peer's timeout for us */
    int backlog;                          /* tcp/ipc listen() backlog, and handshakes in progress */
    int max_conns;                        /* tcp/ipc: accepted connections */
    uint64_t partial_max;                 /* tcp/ipc: pool for messages still arriving */
    int sub_max;                          /* PUB: prefixes per subscriber */
    uint64_t sub_max_bytes;               /* PUB: their bytes */
    unsigned char routing_id[FY_RID_MAX]; /* announced to peers (wire->identity) */
    size_t routing_id_len;
};

struct ferry_socket {
    pthread_mutex_t mtx;
    int pid;          /* the process that opened it (a forked child's copy is not its own) */
    _Atomic int refs; /* the user's, plus one per in-place message */
    const struct fy_proto_ops *proto;
    void *proto_state;
    struct fy_opts opt;

    struct fy_pipe **pipes; /* live and draining pipes */
    size_t npipes, cap_pipes;
    unsigned next_pipe_id; /* the last id given (pipe_id_next) */

    /* wake block (shared with shm:// peers) and the pollable fd */
    int wake_fd; /* memfd of the wake block */
    struct fy_wake *wake;
    int event_fd; /* handed out by ferry_socket_fd: a datagram means "a
                     message may be ready"; we write it by sending to its
                     own address (fy_sock_signal) */
    /* event_fd's (autobound, abstract) address: each peer gets a sender
     * of its own connected to it (fy_sock_event_sender), never ours */
    char event_addr[112];
    unsigned event_addrlen;
    _Atomic int fd_want; /* the user has armed the pollable fd at least once */
    /* A receiver reading its only connection itself (pipe op park): it
     * sleeps in poll(2) on that connection's fd and park_fd, an eventfd
     * made at the first such wait, which the socket's own wakers
     * (fy_sock_signal, fy_sock_wake) write while `parked` is set. */
    _Atomic int park_fd;
    _Atomic int parked;
    _Atomic int park_kicked; /* park_fd written since the receiver parked */
    int futex_waiters;       /* threads asleep on the wake word to receive (mtx) */
    int nbells;              /* pipes whose peer's bell we sleep on (mtx) */
    int bell_gather;         /* wake-ups are being gathered (mtx; fy_wake_peer) */
    unsigned bell_wakes;     /* sleeps a bell's ring ended (mtx; for tests) */
    int bell_seen;           /* readers the gather was asked to wake */
    int bell_n;              /* those whose wake-up it claimed */
    struct fy_wake *bell_woken[FY_BELL_BATCH]; /* the first of them */
    _Atomic uint32_t *bell_word;               /* the bell that wakes them all */
    _Atomic int npollers;                      /* ferry_pollers holding it (at most one) */

    /* multipart assembly of outgoing parts: each part's bytes are a copy
     * of the caller's (tx_own[i].copy) or a message given with
     * ferry_msg_send, kept as it is and freed once sent (tx_own[i].msg):
     * a forwarded part is copied once, into the pipe. Both are freed
     * without mtx (a message of another socket takes that one's). */
    struct fy_part *tx_parts;
    size_t tx_nparts, tx_cap;
    struct fy_txown {
        unsigned char *copy;
        ferry_msg *msg;
    } * tx_own;
    size_t tx_total;
    /* the message being received, part by part */
    struct fy_rxmsg rx;
    int rcvmore;
    int rx_err; /* a receive error a poller's look found, for the next recv */
    char rx_err_text[160];

    /* FERRY_BATCH: set (mtx) while the protocol sends such a message, so a
     * transport may skip the peer's wake-up; it then sets wake_owed, and
     * fy_sock_flush_locked gives what is owed. */
    int tx_batch;
    int wake_owed;
    /* Set (mtx) while the protocol sends any message: a transport may
     * leave the peer's wake-up of one pipe (wake_later) to the end of the
     * send step, which gives it (pipe op flush) before mtx goes. Why:
     * the wake-up's check needs a full fence after the message's stores,
     * and a fence right behind them waits for the stores' cache lines to
     * come from the reader polling them; a few hundred instructions later
     * they have (shm:// 64 B stream with a busy reader, on this VM: 3.5
     * -> 7.2 M messages/s in its slow state, 14.8 -> 17-23 M in its fast
     * one). */
    int tx_defer;
    struct fy_pipe *wake_later;
    /* tcp://, ipc://: a streaming sender's last messages wait in a pipe's
     * output to be written with the next ones; a wait on the socket,
     * ferry_flush, ferry_close or a send that finds no room writes them
     * (pipe op flush), else the transport's timer does. */
    int out_owed;

    ferry_msg *claim; /* the outstanding zero-copy allocation, if any */
    ferry_msg *spare; /* recycled message structs (mtx), a short free list */
    int nspare;
    ferry_msg *spare_big; /* large heap messages ferry_recv copied out (mtx) */
    size_t spare_big_bytes;

    /* its counters (stats.h): messages the pattern dropped
     * (FERRY_OPT_DROPPED), pipes dropped for bad input, connections refused
     * at a limit, and its peers' totals */
    struct fy_stat_sock *stat;
    int stat_heap; /* stat is in process memory, not in the counters file */
    int closing;

    struct fy_loop *loop; /* the I/O thread its transports run on, once one needs it */
    void *shm_tran;       /* shm:// transport state (listeners, dialers, watches) */
    /* FERRY_OPT_SPIN -1 (adaptive, socket.c spin_adaptive): how long the
     * next wait spins before it sleeps, and waits left before spinning is
     * tried again after a spin that found nothing. Hints, not state: any
     * thread may update them, relaxed. */
    _Atomic uint32_t spin_ns;
    _Atomic uint32_t spin_skip;
    _Atomic uint32_t spin_fails;       /* spins in a row that found nothing */
    _Atomic uint32_t spin_streak;      /* calls served without a wait since the last */
    ferry_socket *_Atomic flush_first; /* flushed before a call here waits (ferry_flush_on_wait) */
    void *stream_tran;                 /* tcp:// and ipc:// state (src/transport/zmtp/stream.c) */
    /* events (monitor.c, monitor.h) */
    pthread_mutex_t mon_lk;     /* a leaf lock: guards mon and mon_gone */
    struct ferry_monitor *mon;  /* the monitor, if one is open */
    int mon_gone;               /* closed: no monitor may attach now */
    _Atomic unsigned mon_kinds; /* the kinds mon wants (0: none): read without the lock */
    struct fy_timer mon_timer;  /* sends the drops the rate limit held back */
    int mon_timer_used;         /* mon_timer was armed once (ferry_close stops it) */

    struct fy_auth *auth; /* CURVE settings (auth.h), once a FERRY_OPT_CURVE_* is set */

    char endpoint[160];    /* the last endpoint bound, ports resolved */
    char drop_reason[200]; /* why the last connection was dropped */
};

/* Adds a connected pipe to the socket (takes mtx). Returns 0, or < 0 when
 * the protocol refuses it (the caller then destroys it). */
int fy_sock_add_pipe(ferry_socket *s, struct fy_pipe *p);
int fy_sock_add_pipe_locked(ferry_socket *s, struct fy_pipe *p); /* mtx held */

/* A pending pipe's handshake is done: it counts as a peer from now on, if
 * the protocol's pipe_start accepts it (< 0: refused, it stays pending).
 * mtx held. */
int fy_sock_pipe_start_locked(ferry_socket *s, struct fy_pipe *p);

/* A pipe's send or recv failed with rc (< 0): its peer is gone
 * (FERRY_ECONNRESET) or broke the rules (anything else: counted in
 * FERRY_OPT_ERRORS, the transport's ferry_errdetail() kept as the drop
 * reason). Either way the pipe leaves the socket. mtx held. */
void fy_sock_pipe_failed(ferry_socket *s, struct fy_pipe *p, int rc);

/* Marks a pipe dead (the peer went away: err and why say how, for its
 * DISCONNECTED event); takes mtx; wakes waiters. The pipe leaves the
 * socket once the protocol has drained it. */
void fy_sock_pipe_dead(ferry_socket *s, struct fy_pipe *p, int err, const char *why);
void fy_sock_pipe_dead_locked(ferry_socket *s, struct fy_pipe *p, int err,
                              const char *why); /* mtx held */

/* A message the pattern dropped, and why: its peer was full (HWM, ring),
 * or it had none to go to (an unknown routing id, a requester gone).
 * FERRY_OPT_DROPPED counts both (mtx held). */
enum { FY_DROP_FULL, FY_DROP_NOROUTE };
void fy_ev_dropped(ferry_socket *s, int why); /* monitor.c: a DROPPED event */
static inline void fy_sock_dropped(ferry_socket *s, int why)
{
    fy_stat_add(&s->stat->dropped, 1);
    if (why == FY_DROP_NOROUTE)
        fy_stat_add(&s->stat->dropped_noroute, 1);
    if (atomic_load_explicit(&s->mon_kinds, memory_order_relaxed) != 0)
        fy_ev_dropped(s, why);
}

/* Receives through a pipe, counting what arrived (mtx held). */
int fy_pipe_recv(struct fy_pipe *p, struct fy_rxmsg *m, int check);

/* 0 when p's recv would surely find nothing now (pipe op readable). */
static inline int fy_pipe_maybe(struct fy_pipe *p)
{
    return p->ops->readable == NULL || p->ops->readable(p);
}

/* Writes last_active of the pipes that moved messages since it was last
 * written (mtx held; before the socket sleeps). */
void fy_sock_stamp_locked(ferry_socket *s);

/* Gives the wake-ups skipped by FERRY_BATCH sends (mtx held). */
void fy_sock_flush_locked(ferry_socket *s);

/* Removes a pipe from the socket (mtx held). */
void fy_sock_remove_pipe(ferry_socket *s, struct fy_pipe *p);

/* The socket's I/O thread (loop.h), taken the first time a transport asks
 * and kept until ferry_close. NULL and *err when no thread can start. mtx
 * held. */
struct fy_loop *fy_sock_loop(ferry_socket *s, int *err);

/* Drops a reference; the last one frees the socket's memory. */
void fy_sock_unref(ferry_socket *s);

/* Records why a connection or a peer's request was refused or dropped
 * (ferry_socket_drop_reason; escaped, since it may quote a peer's bytes;
 * also on stderr with FERRY_DEBUG). bad: the peer broke the rules, counted
 * in FERRY_OPT_ERRORS. mtx held. */
void fy_sock_note(ferry_socket *s, int bad, const char *what);

/* A new datagram socket connected to s's pollable fd, for one peer: a peer
 * that disconnects or reconfigures it affects only its own wake-ups. The
 * caller closes it once handed over. -errno on failure. */
int fy_sock_event_sender(ferry_socket *s);

/* The pollable fd's watchdog: a peer shares the wake block and may clear
 * fd_armed without writing the fd. Called about once a second by the I/O
 * thread, without mtx (it only tries to take it, and skips a socket that
 * is busy); writes the fd if the user armed it, nobody holds it armed and
 * it is not readable. */
void fy_sock_fd_watchdog(ferry_socket *s);

/* Waits on the socket's wake word until step (called with mtx held; check
 * 1: "confirm thoroughly, the caller will sleep") returns non-zero, or the
 * deadline (monotonic ns; UINT64_MAX: none) passes: the one place a
 * socket's waiter arms and sleeps. recv: step waits for a message, so the
 * waiter may read the socket's only connection itself (pipe op park).
 * Returns 1 when step succeeded, step's error, or FERRY_ETIMEDOUT. Called
 * without mtx. */
int fy_sock_wait(ferry_socket *s, int (*step)(ferry_socket *s, void *arg, int check), void *arg,
                 uint64_t deadline, int recv);

/* park.c: a receive wait reading the socket's only connection itself.
 * claim   before the waiter's last look (without mtx): 1 if it may park
 *         (nobody else is parked; `parked` is set), else 0.
 * begin   after that look found nothing (mtx held): the fd to poll and
 *         the pipe (a reference), or -1 (sleep on the wake word; call
 *         fy_park_end first if claimed).
 * sleep   polls, then unparks the pipe (reading it if it polled readable)
 *         and drops the reference; it also does the waiter's decrement of
 *         `sleepers`. 0, FERRY_EINTR, FERRY_ETIMEDOUT or a ppoll failure. Without mtx.
 * kick    a waker's part, after its seq_cst fence: writes park_fd once
 *         per park while a receiver is parked. It looks only at the
 *         socket's own memory, never at the wake block, which shm://
 *         peers share and may have written anything into.
 * reclaim (mtx held) the socket will be waited on in another way: input
 *         a receiver kept for its next park (pipe op unpark's keep) goes
 *         back to the I/O thread. */
int fy_park_claim(ferry_socket *s);
int fy_park_begin(ferry_socket *s, int claimed, struct fy_pipe **out);
void fy_park_end(ferry_socket *s);
int fy_park_sleep(ferry_socket *s, struct fy_pipe *p, int fd, uint64_t deadline);
void fy_park_kick(ferry_socket *s);
void fy_park_reclaim(ferry_socket *s);

/* A message may be ready, or room to send: wakes the socket's waiters
 * and, if the user armed it, its pollable fd (mtx may be held). */
void fy_sock_signal(ferry_socket *s);

/* What of events (FERRY_POLLIN, FERRY_POLLOUT) a recv or send would find
 * ready now without waiting, or FERRY_POLLERR once the socket is closing.
 * With arm, before the last look: the pollable fd is armed (and the pipes
 * asked to signal room, for FERRY_POLLOUT), so that a change after it
 * writes the fd. A message found is kept for the next recv, as is an error
 * (a REQ's peer that died). Takes mtx. */
int fy_sock_ready(ferry_socket *s, int events, int arm);

/* Wakes this socket's own waiters (mtx may be held). */
void fy_sock_wake(ferry_socket *s);

/* Frees a received message's parts; the socket's mtx must be held. */
void fy_rxmsg_clear(struct fy_rxmsg *m);

/* What a pattern's recv may spend on messages it drops (unwanted topics,
 * bad envelopes) before it yields the socket's lock and says "not now":
 * FY_DROP_TURN parts, since freeing a message costs a part each, so a peer
 * flooding 65,535-part messages holds the lock no longer than one sending
 * single parts. The waiting loop, which keeps timeouts, comes back at once. */
#define FY_DROP_TURN 4096u

/* Frees m, a message being dropped, and charges it to *spent (parts). */
static inline void fy_rxmsg_drop(struct fy_rxmsg *m, size_t *spent)
{
    *spent += m->nparts ? m->nparts : 1;
    fy_rxmsg_clear(m);
}

/* Makes m a message of the one part f. */
void fy_rxmsg_one(struct fy_rxmsg *m, ferry_msg *f);

/* Appends a part (m zeroed or built by these functions). 0 or
 * FERRY_ENOMEM (then f is not m's). */
int fy_rxmsg_push_slow(struct fy_rxmsg *m, ferry_msg *f);
static inline int fy_rxmsg_push(struct fy_rxmsg *m, ferry_msg *f)
{
    if (m->parts == NULL)
        m->parts = m->few;
    if (m->parts != m->few || m->nparts == FY_RX_FEW)
        return fy_rxmsg_push_slow(m, f);
    m->parts[m->nparts++] = f;
    return 0;
}

/* Puts f before the next part to be delivered. 0 or FERRY_ENOMEM. */
int fy_rxmsg_prepend(struct fy_rxmsg *m, ferry_msg *f);

/* Moves src's parts to dst (whose own are not freed) and zeroes src. */
void fy_rxmsg_move(struct fy_rxmsg *dst, struct fy_rxmsg *src);

/* Frees the next n parts of a received message (a protocol strips what is
 * not for the user: an envelope); the user receives from the part after
 * them. mtx held. */
void fy_rxmsg_strip(struct fy_rxmsg *m, size_t n);

/* Heap message of size bytes. */
ferry_msg *fy_msg_heap(size_t size);

/* Frees a received part while holding its socket's mtx (ferry_msg_free
 * would take it again). */
void fy_msg_free_locked(ferry_msg *m);

/* A received empty part: no bytes, no reference on anything (an
 * envelope's delimiter costs no ring record held and no atomics); the
 * struct comes from and goes back to s's spare list. mtx held. */
ferry_msg *fy_msg_empty(ferry_socket *s);

/* A zeroed message struct without data (for in-place messages), from the
 * socket's free list when it has one; mtx held. */
ferry_msg *fy_msg_struct(ferry_socket *s);

/* A heap message of `size` bytes for a transport's input (fy_msg_heap),
 * taken from the 32-64 KiB messages ferry_recv has copied out when one
 * fits: a stream of such messages then reuses memory that is mapped and in
 * the cache, instead of taking page faults on blocks the allocator gave
 * back to the system once its queue emptied. mtx held. */
ferry_msg *fy_msg_heap_in(ferry_socket *s, size_t size);

/* 1 if a peer running as uid may talk to s: root, s's own uid, and
 * FERRY_OPT_PEER_UID (-1: anyone). The uid must come from the kernel
 * (SO_PEERCRED), never from the peer's word. */
int fy_uid_allowed(const ferry_socket *s, unsigned uid);

/* URL: splits "scheme://rest". Returns FERRY_EBADURL on malformed input. */
int fy_url_split(const char *url, char *scheme, size_t slen, const char **rest);

#endif /* FY_SOCK_H */
