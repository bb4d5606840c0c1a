/*
 * ferry.h - the whole public API of ferry.
 *
 * ferry is a C11 library for messaging between processes on Linux: named
 * shared-memory regions, cross-process semaphores and a robust mutex today;
 * messaging sockets over shm://, ipc:// and tcp:// on top of them.
 *
 * Conventions, for every function below:
 *
 *  - Errors. A function returns 0 (or a non-negative count) on success and a
 *    negative error code on failure. Codes are the FERRY_E* values of
 *    FERRY_ERRNO_MAP: operating-system failures are the negated errno value
 *    (FERRY_EACCES == -EACCES), ferry's own conditions live from -4000 down,
 *    far from errno's range. ferry_strerror() names a code, ferry_err_name()
 *    gives its symbol, and ferry_errdetail() returns a one-line description
 *    of the calling thread's last failure ("open /dev/shm/ferry.x: permission
 *    denied"), which a command-line tool can print as is.
 *  - Names. Objects are named with 1..FERRY_NAME_MAX bytes of letters,
 *    digits, '.', '_' and '-'; "." and ".." and names starting with '.' are
 *    refused. A bad name is FERRY_EBADNAME and never reaches the OS.
 *  - Timeouts are milliseconds: 0 means "do not wait", -1 means "forever".
 *  - Threads. Handles may be used from several threads unless a function says
 *    otherwise; closing a handle while another thread uses it is undefined.
 *  - Nothing is exported but the ferry_ functions declared here.
 */
#ifndef FERRY_H
#define FERRY_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(FERRY_BUILDING) && defined(__GNUC__)
#define FERRY_API __attribute__((visibility("default")))
#else
#define FERRY_API
#endif

#define FERRY_VERSION_MAJOR 0
#define FERRY_VERSION_MINOR 1
#define FERRY_VERSION_PATCH 0
#define FERRY_VERSION_STRING "0.1.0"

/* Returns the library's version string ("0.1.0"); may differ from the
 * header's FERRY_VERSION_STRING when linked against another build. */
FERRY_API const char *ferry_version(void);

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */
/* ------------------------------------------------------------------------ */

/* XX(symbol, value, description): the single list behind the enum,
 * ferry_strerror() and ferry_err_name(). */
#define FERRY_ERRNO_MAP(XX)                                                                        \
    XX(EPERM, -EPERM, "operation not permitted")                                                   \
    XX(ENOENT, -ENOENT, "no such object")                                                          \
    XX(EINTR, -EINTR, "interrupted")                                                               \
    XX(EIO, -EIO, "input/output error")                                                            \
    XX(EBADF, -EBADF, "bad file descriptor")                                                       \
    XX(EAGAIN, -EAGAIN, "resource temporarily unavailable, try again")                             \
    XX(ENOMEM, -ENOMEM, "out of memory")                                                           \
    XX(EACCES, -EACCES, "permission denied")                                                       \
    XX(EEXIST, -EEXIST, "object already exists")                                                   \
    XX(EINVAL, -EINVAL, "invalid argument")                                                        \
    XX(EMFILE, -EMFILE, "too many open files")                                                     \
    XX(ENOSPC, -ENOSPC, "no space left")                                                           \
    XX(ERANGE, -ERANGE, "value out of range")                                                      \
    XX(ENAMETOOLONG, -ENAMETOOLONG, "name too long")                                               \
    XX(ENOTSUP, -ENOTSUP, "operation not supported")                                               \
    XX(EOVERFLOW, -EOVERFLOW, "value too large")                                                   \
    XX(EIDRM, -EIDRM, "object was removed")                                                        \
    XX(ETIMEDOUT, -ETIMEDOUT, "timed out")                                                         \
    XX(ECONNREFUSED, -ECONNREFUSED, "connection refused")                                          \
    XX(ECONNRESET, -ECONNRESET, "the peer went away")                                              \
    XX(EADDRINUSE, -EADDRINUSE, "address already in use")                                          \
    XX(EMSGSIZE, -EMSGSIZE, "message too large")                                                   \
    XX(EPROTO, -EPROTO, "protocol error")                                                          \
    XX(EHOSTUNREACH, -EHOSTUNREACH, "no route to the peer")                                        \
    XX(EOWNERDEAD, -EOWNERDEAD,                                                                    \
       "previous owner died; the lock is held, repair the protected state")                        \
    XX(ENOTRECOVERABLE, -ENOTRECOVERABLE,                                                          \
       "state not recoverable: owner died and nobody marked it consistent")                        \
    XX(EBADNAME, -4001, "invalid name (1-200 bytes of letters, digits, '.', '_', '-')")            \
    XX(EFOREIGN, -4002, "object exists but is not a ferry object")                                 \
    XX(EDAMAGED, -4003, "ferry object is damaged or truncated")                                    \
    XX(EVERSION, -4004, "ferry object has an unsupported layout version")                          \
    XX(ESIZE, -4005, "object size does not match the requested size")                              \
    XX(EKIND, -4006, "object is of another kind")                                                  \
    XX(ECORRUPT, -4007, "shared state written by a peer is corrupt")                               \
    XX(EBADURL, -4008, "invalid address (expected shm://NAME)")                                    \
    XX(EPEERTYPE, -4009, "peer has an incompatible socket type")                                   \
    XX(ESTATE, -4010, "operation not valid in the socket's current state")                         \
    XX(ECLOSED, -4011, "socket is closed")                                                         \
    XX(ENOPEER, -4012, "no peer to send to")                                                       \
    XX(EOWNER, -4013, "object belongs to another user")                                            \
    XX(EMECH, -4014, "the peer's security mechanism does not match ours (NULL against CURVE)")     \
    XX(EAUTH, -4015, "authentication failed: the peer's key is not admitted, or not proven")

enum ferry_errno {
#define FERRY_XX_(name, val, str) FERRY_##name = (val),
    FERRY_ERRNO_MAP(FERRY_XX_)
#undef FERRY_XX_
};

/* Describes an error code in a few words. Never NULL; the string is constant
 * and may be used from any thread. Unknown negative errno values get the C
 * library's description, anything else "unknown error". */
FERRY_API const char *ferry_strerror(int err);

/* The symbol of an error code ("FERRY_EACCES"), or "FERRY_UNKNOWN". */
FERRY_API const char *ferry_err_name(int err);

/* The calling thread's last failure as one line naming what failed and why,
 * or "" when the last ferry call on this thread did not record one. Valid
 * until the thread's next ferry call. */
FERRY_API const char *ferry_errdetail(void);

/* ------------------------------------------------------------------------ */
/* Names and object kinds                                                   */
/* ------------------------------------------------------------------------ */

#define FERRY_NAME_MAX 200

/* Returns 0 when name is a valid ferry object name, else FERRY_EBADNAME. */
FERRY_API int ferry_name_check(const char *name);

/* Flags for ferry_shm_open() and ferry_sem_open(). */
#define FERRY_CREATE 0x1 /* create the object when it does not exist        */
#define FERRY_EXCL 0x2   /* with FERRY_CREATE: fail with FERRY_EEXIST if it does */

/* ------------------------------------------------------------------------ */
/* Shared-memory regions                                                    */
/* ------------------------------------------------------------------------ */
/*
 * A region is a named block of memory that any process may map. It lives in
 * /dev/shm as "ferry.NAME" and starts with a 128-byte header (magic, layout
 * version, kind, size, creator pid and start time, creation time) that
 * ferry_shm_open() checks, so an object that is foreign, truncated or of a
 * newer layout is refused instead of mapped. The caller sees only the
 * user area behind the header: ferry_shm_addr() is 64-byte aligned.
 *
 * Creation is atomic: the object is built and initialised unnamed (an
 * O_TMPFILE in /dev/shm) and only then linked under its name, so nobody can
 * open a half-made region, and a creator that dies during creation leaves
 * nothing behind.
 *
 * A region outlives its processes until ferry_shm_unlink() or `ferry rm`.
 */
typedef struct ferry_shm ferry_shm;

typedef struct ferry_shm_opts {
    /* Permission bits of a created object; 0 means 0600 (owner only). The
     * process umask does not apply. */
    unsigned mode;
    /* Called once by the creating process, before the region gets its name,
     * so no other process can see it uninitialised (the memory starts
     * zeroed). A non-zero return aborts the creation and is returned. */
    int (*init)(void *addr, size_t size, void *arg);
    void *init_arg;
} ferry_shm_opts;

/* Opens the region NAME and maps it.
 *  size  the size of the user area. When creating it must be > 0; when
 *        opening, 0 accepts any size and any other value must match
 *        (FERRY_ESIZE otherwise).
 *  flags 0 (open an existing region), FERRY_CREATE, FERRY_CREATE|FERRY_EXCL.
 *  opts  NULL for the defaults.
 * Errors: FERRY_EBADNAME, FERRY_ENOENT, FERRY_EEXIST, FERRY_EACCES,
 * FERRY_ESIZE, FERRY_EFOREIGN, FERRY_EOWNER, FERRY_EDAMAGED, FERRY_EVERSION, FERRY_EKIND,
 * FERRY_ENOMEM, and other OS errors. Does not block. */
FERRY_API int ferry_shm_open(ferry_shm **shm, const char *name, size_t size, int flags,
                             const ferry_shm_opts *opts);

/* Who may own an existing object that an open accepts. By default (the
 * plain ferry_shm_open() and ferry_sem_open()) only the caller's effective
 * uid or root: another local user could otherwise plant "ferry.NAME" with
 * mode 0666 and a valid header before the victim opens it, then read what
 * the victim writes there, or truncate it under the victim's mapping
 * (SIGBUS). An object of any other owner is refused with FERRY_EOWNER.
 * The _ex variants take owner_uid: one more uid whose objects are accepted,
 * or FERRY_OWNER_ANY to accept any owner (then the owner can still do all
 * of the above: use it only for objects whose owner you trust). Creation is
 * unaffected: a created object belongs to the caller. */
#define FERRY_OWNER_ANY ((int64_t)-1)

/* ferry_shm_open(), also accepting existing objects owned by owner_uid (a
 * uid, or FERRY_OWNER_ANY). */
FERRY_API int ferry_shm_open_ex(ferry_shm **shm, const char *name, size_t size, int flags,
                                const ferry_shm_opts *opts, int64_t owner_uid);

/* The start of the user area, 64-byte aligned. */
FERRY_API void *ferry_shm_addr(const ferry_shm *shm);

/* The size of the user area in bytes. */
FERRY_API size_t ferry_shm_size(const ferry_shm *shm);

/* The region's name, as given to ferry_shm_open(). */
FERRY_API const char *ferry_shm_name(const ferry_shm *shm);

/* 1 when this handle's ferry_shm_open() created the region, else 0. */
FERRY_API int ferry_shm_created(const ferry_shm *shm);

/* Unmaps the region and frees the handle. The region itself stays. NULL is
 * accepted. Returns 0. */
FERRY_API int ferry_shm_close(ferry_shm *shm);

/* Removes the name NAME. Processes that have the region mapped keep it until
 * they close it. Only ferry regions are removed (FERRY_EFOREIGN otherwise). */
FERRY_API int ferry_shm_unlink(const char *name);

/* ------------------------------------------------------------------------ */
/* Semaphores                                                               */
/* ------------------------------------------------------------------------ */
/*
 * A named counting semaphore shared by processes, listed by `ferry ls` like
 * a region. Two implementations behind one API, chosen at creation:
 *
 *  default         a futex word in a shared region. An uncontended wait or
 *                  post is one atomic instruction and no system call. If a
 *                  process dies holding units, they are lost.
 *  FERRY_SEM_UNDO  a System V semaphore whose operations use SEM_UNDO: the
 *                  kernel records each process's net adjustment and reverts
 *                  it when the process exits, however it exits (SIGKILL
 *                  included), and wakes the waiters at once. Cost: every
 *                  wait, post and value is a system call, also uncontended
 *                  (docs/architecture.md has measured figures), and the
 *                  value is limited to 32767. Semantics: a process's net
 *                  effect is undone at exit, so use it for units a process
 *                  takes and gives back (locks, resource pools), not to
 *                  signal another process: a post by a process that then
 *                  exits is taken back too.
 */
typedef struct ferry_sem ferry_sem;

#define FERRY_SEM_UNDO 0x100 /* ferry_sem_open() flag: see above */
#define FERRY_SEM_VALUE_MAX 32767

/* Opens or creates the semaphore NAME.
 *  flags  FERRY_CREATE, FERRY_EXCL, FERRY_SEM_UNDO (the latter only matters
 *         when creating; an opener gets the creator's choice).
 *  mode   permission bits when created, 0 means 0600.
 *  value  initial value when created (<= FERRY_SEM_VALUE_MAX).
 * Errors as for ferry_shm_open(), and FERRY_EKIND when NAME is not a
 * semaphore, FERRY_EOWNER when it belongs to another user (see
 * FERRY_OWNER_ANY), FERRY_ECORRUPT when an undo semaphore's System V set is
 * not a one-element private set created by and belonging to the object's
 * owner. Does not block. */
FERRY_API int ferry_sem_open(ferry_sem **sem, const char *name, int flags, unsigned mode,
                             unsigned value);

/* ferry_sem_open(), also accepting an existing semaphore owned by owner_uid
 * (a uid, or FERRY_OWNER_ANY); see FERRY_OWNER_ANY. */
FERRY_API int ferry_sem_open_ex(ferry_sem **sem, const char *name, int flags, unsigned mode,
                                unsigned value, int64_t owner_uid);

/* Adds one unit and wakes one waiter. FERRY_EOVERFLOW past
 * FERRY_SEM_VALUE_MAX. Does not block. */
FERRY_API int ferry_sem_post(ferry_sem *sem);

/* Takes one unit, waiting as long as needed. Returns 0, FERRY_EINTR (only
 * for the undo kind, when a signal handler interrupts the wait) or
 * FERRY_EIDRM when the semaphore was removed. */
FERRY_API int ferry_sem_wait(ferry_sem *sem);

/* Takes one unit if one is free now, else FERRY_EAGAIN. */
FERRY_API int ferry_sem_trywait(ferry_sem *sem);

/* Takes one unit, waiting at most timeout_ms milliseconds (-1: forever).
 * FERRY_ETIMEDOUT when the time passes. */
FERRY_API int ferry_sem_timedwait(ferry_sem *sem, int timeout_ms);

/* The current value (>= 0), or a negative error code. */
FERRY_API int ferry_sem_value(ferry_sem *sem);

/* 1 when the semaphore undoes a dead process's units, else 0. */
FERRY_API int ferry_sem_is_undo(const ferry_sem *sem);

/* Closes the handle. The semaphore stays. NULL is accepted. Returns 0. */
FERRY_API int ferry_sem_close(ferry_sem *sem);

/* Removes the semaphore NAME; waiters get FERRY_EIDRM (undo kind) or keep
 * the memory until they close (default kind). The System V set of an undo
 * semaphore is removed only when it was created by, and belongs to, the
 * object's owner: a set that a scribbled id points at survives. */
FERRY_API int ferry_sem_unlink(const char *name);

/* ------------------------------------------------------------------------ */
/* Robust mutex                                                             */
/* ------------------------------------------------------------------------ */
/*
 * A process-shared mutex that lives inside memory the caller provides,
 * normally a region (initialise it from the region's init callback). When a
 * process dies holding it, the next locker gets the lock together with
 * FERRY_EOWNERDEAD: it must repair the protected state, call
 * ferry_mutex_consistent(), then unlock as usual. Unlocking without
 * ferry_mutex_consistent() makes the mutex FERRY_ENOTRECOVERABLE for good.
 * Not recursive. Built on the kernel's robust futex list (a POSIX robust,
 * process-shared pthread mutex), so the kernel marks a dead owner's lock at
 * once and wakes a waiter: no polling.
 */
typedef struct ferry_mutex {
    _Alignas(8) unsigned char opaque_[64];
} ferry_mutex;

/* Initialises a mutex in shared memory. Call once, before anyone locks. */
FERRY_API int ferry_mutex_init(ferry_mutex *m);

/* Locks, waiting as long as needed. 0, FERRY_EOWNERDEAD (locked: repair),
 * FERRY_ENOTRECOVERABLE, or FERRY_EINVAL for memory that is not an
 * initialised ferry_mutex. */
FERRY_API int ferry_mutex_lock(ferry_mutex *m);

/* Like ferry_mutex_lock(), but FERRY_EAGAIN instead of waiting. */
FERRY_API int ferry_mutex_trylock(ferry_mutex *m);

/* Like ferry_mutex_lock(), waiting at most timeout_ms (FERRY_ETIMEDOUT). */
FERRY_API int ferry_mutex_timedlock(ferry_mutex *m, int timeout_ms);

/* After FERRY_EOWNERDEAD and the repair: marks the state consistent. */
FERRY_API int ferry_mutex_consistent(ferry_mutex *m);

/* Unlocks. FERRY_EPERM when the caller does not hold it. */
FERRY_API int ferry_mutex_unlock(ferry_mutex *m);

/* Destroys an unlocked mutex. */
FERRY_API int ferry_mutex_destroy(ferry_mutex *m);

/* ------------------------------------------------------------------------ */
/* Messaging sockets                                                        */
/* ------------------------------------------------------------------------ */
/*
 * Sockets with ZeroMQ's patterns. Each socket has a type; it connects to
 * any number of peers of the compatible type (PAIR: exactly one):
 *
 *   PAIR <-> PAIR  one peer, both directions.
 *   REQ  <-> REP   REQ sends a request, then must receive the reply before
 *                  it sends again (FERRY_ESTATE otherwise). REP receives
 *                  requests from all its peers fairly and sends each reply
 *                  to the peer that asked. Both frame messages as ZeroMQ
 *                  does on every transport: a REQ puts an empty delimiter
 *                  part before the request and strips it from the reply; a
 *                  REP keeps the request's envelope (every part up to and
 *                  including the delimiter, at most 256) and sends it back
 *                  before the reply. A message without its envelope is
 *                  dropped and counted in FERRY_OPT_ERRORS. If a REQ's peer dies before
 *                  replying, recv fails with FERRY_ECONNRESET and the REQ
 *                  may send again; with FERRY_OPT_REQ_RESEND it resends the
 *                  request to another peer instead (when there is one).
 *   PUB  --> SUB   SUB subscribes to prefixes (FERRY_OPT_SUBSCRIBE; none:
 *                  nothing arrives). The PUB filters: a message travels only
 *                  to subscribers with a matching prefix. A slow subscriber
 *                  never blocks the PUB: past its high-water mark its
 *                  messages are dropped and counted (FERRY_OPT_DROPPED).
 *   XPUB --> SUB, XSUB   a PUB that also receives: each subscription as a
 *                  message, "\x01PREFIX" when a prefix gains its first
 *                  subscriber and "\x00PREFIX" when it loses its last (a
 *                  subscriber that goes away cancels its own);
 *                  FERRY_OPT_XPUB_VERBOSE passes every subscribe.
 *                  FERRY_OPT_XPUB_WELCOME_MSG is sent to each new subscriber
 *                  first. Other messages its subscribers send arrive too. At
 *                  most 10,000 messages (64 MiB) wait for recv; past that the
 *                  subscribers' input waits in their pipes (and a notice
 *                  that cannot wait is dropped and counted).
 *   XSUB --> PUB, XPUB   a SUB that subscribes with messages: a one-part
 *                  "\x01PREFIX" subscribes, "\x00PREFIX" unsubscribes (as
 *                  the options do, counted); other messages go to every
 *                  publisher. It receives everything its publishers send.
 *   PUSH --> PULL  PUSH sends each message to one puller, round-robin over
 *                  those with room; when every puller is full (or none is
 *                  connected) it blocks: it never drops. PULL receives from
 *                  all its pushers fairly.
 *   ROUTER <-> DEALER, REQ, ROUTER
 *                  every message received starts with a part holding the
 *                  routing id of the peer it came from (the id the peer
 *                  set with FERRY_OPT_ROUTING_ID, else one the ROUTER made:
 *                  5 bytes, 0x00 and a 32-bit number, as libzmq); a message
 *                  sent starts with the routing id of the peer it goes to,
 *                  and the rest is sent to that peer only. A message to an
 *                  unknown or gone peer, or to a full one, is dropped and
 *                  counted in FERRY_OPT_DROPPED (FERRY_EHOSTUNREACH and a
 *                  wait with FERRY_OPT_ROUTER_MANDATORY). A second peer
 *                  announcing a routing id in use is refused, unless
 *                  FERRY_OPT_ROUTER_HANDOVER.
 *   DEALER <-> ROUTER, REP, DEALER
 *                  an asynchronous REQ: each message goes to one peer,
 *                  round-robin over those with room (it blocks when all are
 *                  full, never drops), and messages are received from all
 *                  peers fairly, any number in either direction. No
 *                  envelope is added or taken: to talk to a REP, send an
 *                  empty part first (and receive one before the reply).
 *
 * Messages have one or more parts: every part but the last is sent with
 * FERRY_MORE, and a message arrives whole or not at all (a peer that dies
 * in the middle of a message loses only that incomplete message).
 *
 * Addresses: "shm://NAME" (NAME as for objects: shared memory between
 * processes of one host). The network transports follow.
 *
 * Threads: every call is thread-safe; send and recv on one socket may block
 * in two threads at once. ferry_close() must not race with other calls on
 * the same socket; the parts of one multipart message must come from one
 * thread. A socket does not survive fork(): use it in the process that
 * opened it (in a forked child, ferry_close on an inherited socket only
 * releases the child's copies of its descriptors; the connections stay the
 * parent's). A forked child may open sockets of its own; fork before
 * opening sockets where you can (the I/O thread may hold a lock of a
 * library that is not fork-aware at that moment).
 *
 * I/O threads: sockets that listen or dial share one background thread
 * per process (FERRY_IO_THREADS=N in the environment, 1 to 64, for more),
 * named "ferry-io", started with the first such socket and stopped with
 * the last close. They read tcp:// and ipc:// connections ahead of the
 * user, except that a blocking ferry_recv() on a socket with one
 * connection reads it itself while it waits, so the arrival of the data
 * wakes the receiver directly. A socket holds 2 descriptors (3 once such
 * a receive has waited) plus one per listening endpoint and one or two
 * per connection.
 */
typedef struct ferry_socket ferry_socket;
typedef struct ferry_msg ferry_msg;

enum ferry_type {
    FERRY_PAIR = 1,
    FERRY_PUB = 2,
    FERRY_SUB = 3,
    FERRY_REQ = 4,
    FERRY_REP = 5,
    FERRY_PUSH = 6,
    FERRY_PULL = 7,
    FERRY_DEALER = 8,
    FERRY_ROUTER = 9,
    FERRY_XPUB = 10,
    FERRY_XSUB = 11
};

#define FERRY_DONTWAIT 0x1 /* send/recv: do not wait, FERRY_EAGAIN instead */
#define FERRY_MORE 0x2     /* send: another part of this message follows   */
/* send: more messages follow at once. The peer need not be woken for this
 * one: the wake-up it is owed is given with the next send on this socket
 * without FERRY_BATCH, by ferry_flush(), by any call that waits on this
 * socket (a send that finds no room, a blocking recv) and by ferry_close;
 * while another thread already waits on this socket, sends wake at once.
 * A forwarder that moves a burst uses it so that its reader wakes once
 * per burst instead of once per message. On the last part of a multipart
 * message; a hint (tcp:// and ipc:// write as they do without it). */
#define FERRY_BATCH 0x4

/* Socket options (ferry_setopt / ferry_getopt). Integer options take an
 * int64_t (ferry_setopt_int). Unless noted, they apply to connections made
 * after they are set. */
enum ferry_option {
    FERRY_OPT_RCVTIMEO = 1,           /* recv timeout, ms; -1 forever (default)           */
    FERRY_OPT_SNDTIMEO = 2,           /* send timeout, ms; -1 forever (default)           */
    FERRY_OPT_SNDHWM = 3,             /* messages queued per peer, 0 = ring size only; 1000 */
    FERRY_OPT_RCVHWM = 4,             /* ditto, receiving side; 1000                     */
    FERRY_OPT_MAXMSGSIZE = 5,         /* largest message accepted, bytes; 256 MiB         */
    FERRY_OPT_SUBSCRIBE = 6,          /* SUB: bytes, a prefix to receive (may be empty)   */
    FERRY_OPT_UNSUBSCRIBE = 7,        /* SUB: bytes, undo one SUBSCRIBE of that prefix    */
    FERRY_OPT_RING_SIZE = 8,          /* shm://: ring bytes per direction; 1 MiB          */
    FERRY_OPT_SPIN = 9,               /* busy-poll this many microseconds before sleeping;
                                         0 never; -1 (default) adaptive: up to 10 us,
                                         only while recent waits ended that soon     */
    FERRY_OPT_RCVMORE = 10,           /* get: 1 if the last part received has more after it */
    FERRY_OPT_TYPE = 11,              /* get: the socket type                             */
    FERRY_OPT_DROPPED = 12,           /* get: messages dropped: PUB at a subscriber's HWM,
                                         REP to a gone requester, ROUTER to an unknown,
                                         gone or full peer                               */
    FERRY_OPT_REQ_RESEND = 13,        /* REQ: 1 = resend to another peer if the peer dies */
    FERRY_OPT_PEER_UID = 14,          /* shm://, ipc://: uid allowed to connect besides
                                         root; -1 = any uid. Default: the socket's own uid */
    FERRY_OPT_PEERS = 15,             /* get: connected peers now                          */
    FERRY_OPT_RECONNECT_IVL = 16,     /* dialer: first retry after ms; 100   */
    FERRY_OPT_RECONNECT_IVL_MAX = 17, /* dialer: retry interval cap, ms; 5000 */
    FERRY_OPT_HANDSHAKE_IVL = 18,     /* connection set-up timeout, ms; 5000   */
    FERRY_OPT_ERRORS = 19,            /* get: connections dropped for bad input
                                         (corrupt ring, oversized message)    */
    FERRY_OPT_LINGER = 20,            /* tcp/ipc close: ms to flush queued messages and
                                         await the peer's FIN; -1 forever, 0 none; 1000 */
    FERRY_OPT_HEARTBEAT_IVL = 21,     /* tcp/ipc: send a ZMTP PING every ms; 0 off (default) */
    FERRY_OPT_HEARTBEAT_TIMEOUT = 22, /* tcp/ipc: drop a connection silent this long after a
                                         PING, ms; -1 = HEARTBEAT_IVL (default)          */
    FERRY_OPT_HEARTBEAT_TTL = 23,     /* tcp/ipc: ms the peer may wait for our traffic
                                         before dropping us (sent in PINGs); 0 none       */
    FERRY_OPT_BACKLOG = 24,           /* listen() backlog (tcp/ipc), and the most accepted
                                         connections in their handshake at once; 128      */
    FERRY_OPT_MAX_CONNECTIONS = 25,   /* accepted connections at once; past it a new one
                                         is refused at once and counted (REFUSED); 1024   */
    FERRY_OPT_PARTIAL_MAX = 26,       /* tcp/ipc: bytes all connections together may hold
                                         in messages still arriving, beyond 256 KiB each;
                                         a connection past it is dropped; 256 MiB          */
    FERRY_OPT_SUB_MAX = 27,           /* PUB: prefixes one subscriber may hold; 4096       */
    FERRY_OPT_SUB_MAX_BYTES = 28,     /* PUB: their total bytes; 256 KiB. A subscription
                                         past either is ignored and counted in ERRORS      */
    FERRY_OPT_REFUSED = 29,           /* get: connections refused at a limit (connections,
                                         handshakes, peer uid)                             */
    /* 30-39 are kept for other patterns' options. */
    FERRY_OPT_ROUTING_ID = 40,       /* REQ, DEALER, ROUTER: bytes (1..255, not starting
                                        with 0x00), the id a ROUTER peer will know this
                                        socket by (ZMTP READY Identity; the shm://
                                        handshake). Unset: the ROUTER generates one.
                                        Get it with ferry_getopt (len: bytes)          */
    FERRY_OPT_ROUTER_MANDATORY = 41, /* ROUTER: 1 = a message to an unknown or gone peer
                                        fails with FERRY_EHOSTUNREACH, and to a full one
                                        waits (FERRY_EAGAIN with DONTWAIT) instead of
                                        being dropped and counted in DROPPED; 0 (default) */
    FERRY_OPT_ROUTER_HANDOVER = 42,  /* ROUTER: 1 = a peer announcing a routing id that
                                        another peer holds takes it over (the other gets
                                        a generated one); 0 (default): it is refused,
                                        counted in REFUSED                              */
    FERRY_OPT_XPUB_VERBOSE = 50,     /* XPUB: 1 = pass every subscribe up, repeats too; 0 */
    FERRY_OPT_XPUB_WELCOME_MSG = 51, /* XPUB: bytes sent to each new subscriber first
                                        (a late joiner learns the state); none          */
    FERRY_OPT_RING_PREFAULT = 60     /* shm://: 1 = fault in and write the rings' pages
                                        when a connection is set up (each ring up to
                                        16 MiB; both ends decide for their own side),
                                        so the first lap takes no page fault mid-traffic
                                        (a busy REQ/REP's p99 on a VM: 27 -> 1.4 us).
                                        The price is paid at set-up: ~9 ms a connection
                                        with 1 MiB rings on the same VM (0.5 ms
                                        without), on the listener's I/O thread for its
                                        side, and the rings' memory committed at once.
                                        A listener populates a dialer's ring only when
                                        it is no larger than its own RING_SIZE, within
                                        a rate budget (docs/security.md).
                                        0 = pages as the traffic reaches them (default) */
    ,
    FERRY_OPT_SNDHWM_BYTES = 61, /* tcp/ipc: bytes of output one connection queues
                                    beyond what the kernel took before a sender waits
                                    (or a PUB drops), as SNDHWM counts messages; a
                                    message of any size is taken while less waits,
                                    so an empty queue always takes one. Keeps
                                    what a stalled peer makes us hold bounded and
                                    the queue in the cache; 0 = messages only.
                                    256 KiB                                        */
    FERRY_OPT_SHM_POOL = 62,     /* shm://, PUB and XPUB: bytes of the broadcast pool.
                                    A message of 2 KiB or more sent to several
                                    subscribers is written into it once, and each
                                    reads it in place through a read-only mapping
                                    (one copy, not one per subscriber). When it has
                                    no room (a slow subscriber holds the oldest
                                    message) messages are copied into each ring as
                                    without it. Its first 64 bytes are the bell:
                                    a send that wakes most of the subscribers
                                    (asleep in a receive or a wait) wakes them with one
                                    system call, not one each (Linux 5.16).
                                    Rounded up to the page size, at most
                                    256 MiB; set before the first shm:// connection
                                    (later ones share the pool). 0 = off (no pool,
                                    no bell). 16 MiB                               */
    /* CURVE (RFC 26) on tcp:// and ipc:// (docs/security.md). A key is 32
     * bytes, or 40 characters of Z85 (41 with a NUL). A socket speaks CURVE
     * once it is a server with its secret key, or a client with its secret
     * key and the server's public key; every connection it makes after that
     * is encrypted, and a peer speaking NULL is refused (FERRY_EMECH). A
     * CURVE socket refuses shm:// endpoints (FERRY_ENOTSUP): shared memory
     * admits by uid, not by key. */
    FERRY_OPT_CURVE_SERVER = 70,     /* 1 = this socket is a CURVE server; 0 (default) */
    FERRY_OPT_CURVE_SECRETKEY = 71,  /* our permanent secret key (set only) */
    FERRY_OPT_CURVE_PUBLICKEY = 72,  /* get: our public key (32 bytes, or Z85 when len
                                        >= 41); set: checked against the secret's */
    FERRY_OPT_CURVE_SERVERKEY = 73,  /* client: the server's public key */
    FERRY_OPT_CURVE_ALLOW = 74,      /* server: admit this client public key (each set
                                        adds one, up to 65,536; len 0 clears the list) */
    FERRY_OPT_CURVE_ALLOW_FILE = 75, /* server: a file of client public keys, Z85, one a
                                        line ('#' comments); read again at the next
                                        handshake after it changes. Fails closed: a
                                        missing, unsafe (writable by others) or
                                        malformed file admits nobody. len 0: none */
    FERRY_OPT_CURVE_ALLOW_ANY = 76   /* server: 1 = admit any client key (encryption
                                        without client authentication); 0 (default).
                                        A server with no key list, no file and not
                                        this cannot listen or dial (FERRY_EINVAL) */
};

/* Opens a socket of the given type. */
FERRY_API int ferry_socket_open(ferry_socket **s, int type);

/* Closes the socket: its endpoints stop, its connections close (peers see
 * it at once), in-place messages still held by the user stay valid until
 * ferry_msg_free(). NULL is accepted. */
FERRY_API int ferry_close(ferry_socket *s);

/* Accepts connections at url. FERRY_EADDRINUSE when a live socket already
 * listens there; FERRY_EBADURL for a malformed url. URLs:
 *   shm://NAME           shared-memory rings (this host)
 *   ipc:///path/x.sock   Unix stream socket speaking ZMTP 3.1; a stale
 *                        socket file whose owner died is replaced, a live
 *                        one refused. ipc://@name: Linux abstract socket.
 *   tcp://HOST:PORT      TCP speaking ZMTP 3.1 (any ZeroMQ peer): HOST is
 *                        an address or name, * for every IPv4 interface,
 *                        [::1] for IPv6; PORT * (or 0) picks a free one,
 *                        readable back with ferry_socket_addr(). */
FERRY_API int ferry_listen(ferry_socket *s, const char *url);

/* The last endpoint this socket listens on, as a URL with the port
 * resolved ("tcp://127.0.0.1:40123"). FERRY_ENOSPC if len is too small
 * (the text is truncated), FERRY_ESTATE if it does not listen. */
FERRY_API int ferry_socket_addr(ferry_socket *s, char *buf, size_t len);

/* Why the socket's last connection was dropped ("accepted connection 3
 * dropped: not ZMTP: bad signature"), or "" if none was. Drops for bad
 * input are also counted in FERRY_OPT_ERRORS; with FERRY_DEBUG set in the
 * environment each is logged to stderr. */
FERRY_API int ferry_socket_drop_reason(ferry_socket *s, char *buf, size_t len);

/* Connects to url. If nobody listens yet, returns 0 and keeps trying in the
 * background (and reconnects whenever the connection is lost), with
 * exponential backoff from RECONNECT_IVL to RECONNECT_IVL_MAX. Errors that
 * retrying cannot fix are returned: FERRY_EBADURL, FERRY_EPEERTYPE,
 * FERRY_EACCES (the listener refused this uid). On shm:// it may block for
 * up to the handshake timeout; on tcp:// and ipc:// it never blocks (host
 * names are resolved with getaddrinfo, here and before each reconnect).
 *
 * tcp:// and ipc:// follow ZeroMQ: the connection's queue exists from this
 * call on, so messages sent before the peer is reached wait in it (up to
 * SNDHWM) and leave once the handshake is done. When a live connection
 * breaks, what is lost is what was queued for it and not yet written, plus
 * what the kernel had taken but the peer had not read; the socket then
 * redials with a fresh queue. */
FERRY_API int ferry_dial(ferry_socket *s, const char *url);

/* Sends one part of a message (copying it). flags: FERRY_DONTWAIT,
 * FERRY_MORE. Blocks while no peer can take it (up to SNDTIMEO:
 * FERRY_ETIMEDOUT), except PUB, which never blocks. When the last part
 * fails with FERRY_EAGAIN, FERRY_ETIMEDOUT or FERRY_EINTR the earlier parts
 * are kept (send the last one again); any other failure (a ROUTER's
 * FERRY_EHOSTUNREACH) drops the message whole. */
FERRY_API int ferry_send(ferry_socket *s, const void *buf, size_t len, int flags);

/* Drops the parts of a message begun with FERRY_MORE and not yet sent
 * whole (a sender giving up on it: after its last part failed with
 * FERRY_EAGAIN or FERRY_ETIMEDOUT, the parts are kept for a retry). */
FERRY_API void ferry_send_discard(ferry_socket *s);

/* Wakes the peers owed a wake-up by sends made with FERRY_BATCH, and
 * writes what a tcp:// or ipc:// connection holds back to batch a stream
 * (below). Never blocks; a socket that owes none returns at once. Call it
 * when a burst ends and before waiting anywhere but in this socket's own
 * calls (a ferry_poller, a plain poll): until then a reader of the batch
 * blocked in ferry_recv sleeps on for up to a second (its watchdog), and
 * one waiting in a poller or on its pollable fd is not woken at all.
 *
 * tcp:// and ipc:// batch on their own: once a sender has sent for 200 us
 * with no pause of 200 us, a message that comes less than 10 us after the
 * last is held back, and the sender writes what is held from its own
 * thread when it reaches 64 KiB (or half of SNDHWM or SNDHWM_BYTES), when
 * it is 200 us old or a send comes after a pause, when the sender waits
 * on the socket (a send that blocks, a recv that sleeps), calls this,
 * closes, or finds the queue full; else the I/O thread writes it 200 us
 * after it began to be held (1 ms before Linux 5.11). So held output is
 * at most about 200 us late. A single message, or a short burst, is
 * written at once. 0, or FERRY_EINVAL. */
FERRY_API int ferry_flush(ferry_socket *s);

/* For a forwarder that receives on s with blocking calls and sends each
 * message on to dst with FERRY_BATCH: from now on a call on s that is
 * about to wait (spin or sleep: a receive that finds nothing) first calls
 * ferry_flush(dst). So the burst ends exactly when the input runs dry, and
 * dst's reader is never left asleep on a batch while the forwarder sleeps
 * too, without asking s with FERRY_DONTWAIT (which, over tcp:// and
 * ipc://, takes back the connection a waiting receiver reads for itself,
 * at a cost of system calls each time). dst NULL ends it. Set it from the
 * thread that receives on s; dst must stay open while linked (link
 * NULL before closing it). ferry_proxy uses it. 0, or FERRY_EINVAL (s
 * NULL, or dst is s). */
FERRY_API int ferry_flush_on_wait(ferry_socket *s, ferry_socket *dst);

/* Receives the next part into buf (copying it). *len is set to the part's
 * full size; when that is larger than cap the part is truncated to cap
 * bytes (ZeroMQ's rule): compare *len with cap. FERRY_OPT_RCVMORE tells
 * whether more parts follow. Blocks up to RCVTIMEO unless FERRY_DONTWAIT. */
FERRY_API int ferry_recv(ferry_socket *s, void *buf, size_t cap, size_t *len, int flags);

/* Zero-copy. ferry_msg_alloc() returns a buffer to fill; on shm:// it is
 * room inside a peer's ring when the socket can tell which peer the next
 * message goes to (PAIR, PUSH), else ordinary memory (REQ and REP messages
 * carry ZeroMQ's envelope in front, so they are multipart and copied).
 * ferry_msg_send() sends it, or a message received (forwarding it: the
 * data is copied once, into the pipe; a part sent with FERRY_MORE is kept
 * as it is until its message goes, and a part received in place keeps its
 * room in its ring until then); ownership passes on success, on failure
 * the message is still yours. ferry_msg_recv() returns the next part; on
 * shm:// its data is read in place, in the ring, until ferry_msg_free()
 * (every part that fits one ring record, multipart messages included;
 * parts larger than that arrive in ordinary memory). A received message's
 * data is for reading: a message of 2 KiB or more that a PUB or XPUB sent to
 * several shm:// subscribers lies in the publisher's broadcast pool, which
 * subscribers map read-only (FERRY_OPT_SHM_POOL), and writing to it faults;
 * copy it to change it. At most one allocated, unsent message per socket at
 * a time: a second ferry_msg_alloc() gets ordinary memory. */
FERRY_API int ferry_msg_alloc(ferry_socket *s, ferry_msg **m, size_t size);
FERRY_API int ferry_msg_send(ferry_socket *s, ferry_msg *m, int flags);
FERRY_API int ferry_msg_recv(ferry_socket *s, ferry_msg **m, int flags);
FERRY_API void *ferry_msg_data(ferry_msg *m);
FERRY_API size_t ferry_msg_size(const ferry_msg *m);
/* 1 if more parts of the same message follow this received part. */
FERRY_API int ferry_msg_more(const ferry_msg *m);
/* Shrinks an allocated message before sending (size <= allocated). */
FERRY_API int ferry_msg_resize(ferry_msg *m, size_t size);
FERRY_API void ferry_msg_free(ferry_msg *m);

/* Options: see enum ferry_option. */
FERRY_API int ferry_setopt(ferry_socket *s, int opt, const void *val, size_t len);
FERRY_API int ferry_getopt(ferry_socket *s, int opt, void *val, size_t *len);
FERRY_API int ferry_setopt_int(ferry_socket *s, int opt, int64_t val);
FERRY_API int ferry_getopt_int(ferry_socket *s, int opt, int64_t *val);

/* Waits until the socket has at least count peers (for a PUB: count peers
 * that have subscribed to something), at most timeout_ms (-1: forever).
 * 0, or FERRY_ETIMEDOUT. */
FERRY_API int ferry_wait_peers(ferry_socket *s, int count, int timeout_ms);

/* A file descriptor for poll/epoll, for a loop of your own (ferry_poller
 * below does all this for you). Its semantics are those of an armed
 * notification, not of a level: it becomes readable when, after it was
 * armed, a message may have become ready, and you arm it with a
 * ferry_recv() (or ferry_msg_recv()) with FERRY_DONTWAIT that returns
 * FERRY_EAGAIN. So: when it is readable, receive with FERRY_DONTWAIT until
 * FERRY_EAGAIN; a message left unread is not announced again. It may be
 * readable with nothing to receive (a spurious wake-up: the receive then
 * says FERRY_EAGAIN and re-arms). Owned by the socket: do not close or
 * read it. Use it from one loop at a time, and not for a socket that is
 * in a ferry_poller (the poller arms and reads it for itself). */
FERRY_API int ferry_socket_fd(ferry_socket *s, int *fd);

/* ------------------------------------------------------------------------ */
/* Pollers: waiting on many sockets and file descriptors at once            */
/* ------------------------------------------------------------------------ */

/* A poller waits, in the calling thread, until one of its sockets or file
 * descriptors is ready, in an epoll set of its own.
 *
 * Sockets are level-triggered: a socket with a message waiting is reported
 * FERRY_POLLIN on every wait until the message is received (all its
 * parts); a look that finds one takes it into the socket for the next
 * receive, so it is a message, not a guess. FERRY_POLLOUT while a small
 * message could be sent without waiting: some peer has room in its ring
 * or under its HWM (a large message may still wait for more); a REQ only
 * before its request, a REP only once the request is all received, a PUB,
 * XPUB or XSUB always (they drop instead of waiting), a ROUTER always
 * unless FERRY_OPT_ROUTER_MANDATORY, then when some peer has room; never
 * while a ferry_msg_alloc() is outstanding. A socket that is closed while
 * registered (by any thread, even during a wait, which it wakes) is
 * reported FERRY_POLLERR until it is removed; the poller keeps the
 * socket's memory until then, so remove it (or free the poller). Plain
 * file descriptors are waited for with epoll's level-triggered events
 * (POLLIN, POLLOUT; errors and hang-ups come as FERRY_POLLERR).
 *
 * The cost of a wait grows with the entries that are ready, not with the
 * entries registered: an idle socket costs nothing until it is signalled.
 * A registered socket uses one more descriptor (the poller's copy of its
 * pollable fd).
 *
 * Threads: a poller is used by one thread at a time (add, modify, remove
 * and wait must not run at once on one poller); its sockets may be sent
 * on, received from and closed by any thread meanwhile. A socket is in at
 * most one poller at a time (FERRY_EINVAL), and its ferry_socket_fd() is
 * not for a loop of your own while it is.
 *
 * Remove a file descriptor before you close it. (One closed first while
 * another copy keeps its file open, a dup or a forked child's, would stay
 * in the epoll set; the poller drops it when it first reports, by
 * building its set anew, and ignores it.) */
typedef struct ferry_poller ferry_poller;

#define FERRY_POLLIN 0x1  /* a message can be received, a fd can be read  */
#define FERRY_POLLOUT 0x2 /* a message can be sent, a fd can be written   */
#define FERRY_POLLERR 0x4 /* reported only: socket closed, fd error/hangup */

typedef struct ferry_poll_event {
    ferry_socket *socket; /* the socket, or NULL for a file descriptor */
    int fd;               /* the file descriptor, or -1 for a socket */
    int events;           /* what is ready: FERRY_POLLIN | FERRY_POLLOUT | FERRY_POLLERR */
    void *user;           /* as given at add (or modify) */
} ferry_poll_event;

FERRY_API int ferry_poller_new(ferry_poller **p);
/* Removes every entry (giving back the sockets' memory) and frees it. */
FERRY_API void ferry_poller_free(ferry_poller *p);

/* Registers s for events (FERRY_POLLIN, FERRY_POLLOUT, both or none) with
 * user data. FERRY_EINVAL if it is already registered, here or in another
 * poller. */
FERRY_API int ferry_poller_add(ferry_poller *p, ferry_socket *s, int events, void *user);
FERRY_API int ferry_poller_modify(ferry_poller *p, ferry_socket *s, int events, void *user);
FERRY_API int ferry_poller_remove(ferry_poller *p, ferry_socket *s);

/* The same for a file descriptor of yours (a pipe, an eventfd, a timerfd, a
 * device): it stays yours; remove it before you close it. */
FERRY_API int ferry_poller_add_fd(ferry_poller *p, int fd, int events, void *user);
FERRY_API int ferry_poller_modify_fd(ferry_poller *p, int fd, int events, void *user);
FERRY_API int ferry_poller_remove_fd(ferry_poller *p, int fd);

/* Waits up to timeout_ms (-1: forever, 0: just look) for ready entries and
 * fills at most max of them into ev. Returns how many, 0 when the time ran
 * out, or an error (FERRY_EINTR when a signal interrupted the wait). With
 * more ready than max, the next waits report the others: sockets take
 * turns, and sockets and file descriptors alternate in going first. */
FERRY_API int ferry_poller_wait(ferry_poller *p, ferry_poll_event *ev, int max, int timeout_ms);

/* ------------------------------------------------------------------------ */
/* Proxy: a broker between two sockets                                       */
/* ------------------------------------------------------------------------ */

/* Moves messages between frontend and backend, both ways where their types
 * allow (XSUB-XPUB: data down, subscriptions up; ROUTER-DEALER: requests
 * and replies; PULL-PUSH: one way), in the calling thread, until TERMINATE
 * comes on control. Messages move whole (every part), in order per
 * direction. A single-part message received in place in an shm:// ring is
 * copied once, from the ring into its destination, and so is each part of
 * a multipart one (held in place until its last part goes).
 *
 * Nothing taken is lost to a full destination: a direction takes the next
 * message from its source only once the last one went out, so a full
 * destination pushes back on the source's senders through the source's
 * high-water mark, as a direct connection would. A destination that drops
 * by design drops and counts as it always does (a PUB or XPUB at a
 * subscriber's HWM, a ROUTER to an unknown or full peer: FERRY_OPT_DROPPED
 * on it); one that refuses a message for good (FERRY_EHOSTUNREACH from a
 * MANDATORY ROUTER, a message over its FERRY_OPT_MAXMSGSIZE) loses it,
 * counted in STATISTICS. A message held for room waits for all behind it
 * in its direction: a MANDATORY ROUTER waiting for one full peer holds up
 * the replies to the others.
 *
 * capture (or NULL): every message, both ways, is also sent to it, waiting
 * for room (a capture that cannot keep up, or a PUSH with no peer, stalls
 * the proxy; make it a PUB, which never waits, to lose copies instead).
 *
 * control (or NULL): a socket the proxy receives commands on, each a
 * message whose first part is the word: PAUSE (stop moving messages; those
 * held for room still go), RESUME, TERMINATE (deliver what is held, within
 * each destination's FERRY_OPT_SNDTIMEO, and return 0) and STATISTICS,
 * answered on control with nine 8-byte counters in host byte order:
 * frontend messages and bytes received, messages and bytes sent, the same
 * four for the backend (laid out as libzmq's eight, but counting messages
 * where libzmq counts frames), and messages lost. A REP control socket
 * gets an answer to every command (the word itself; UNKNOWN for others); a
 * PAIR only to STATISTICS. Answers are sent without waiting: a controller
 * that does not read them loses them, and never stalls the proxy.
 *
 * A proxy that moves messages one way only from a PULL, SUB or XSUB (to a
 * PUSH or a PUB) and has no capture does not poll its source: it receives
 * with blocking calls, so that over tcp:// and ipc:// a source with one
 * connection is read by the calling thread itself instead of handing each
 * message over from the I/O thread (about twice the throughput,
 * docs/benchmarks.md), and sends with FERRY_BATCH, the destination flushed
 * whenever the source runs dry (ferry_flush_on_wait, which it sets on the
 * source and clears when it returns). It hears control every 256 messages
 * and at least every 50 ms; it sets the source's FERRY_OPT_RCVTIMEO while
 * it runs and gives the caller's back when it returns.
 *
 * Returns 0 after TERMINATE, FERRY_EINVAL when no message could move (two
 * senders, two receivers, one socket given twice). Signals do not stop it:
 * a program that must stop on SIGINT sends TERMINATE from another thread
 * (as `ferry proxy` does). The sockets stay the caller's, but while the
 * proxy runs no other thread may use (or close) frontend, backend or
 * capture; control only through its peer. */
FERRY_API int ferry_proxy(ferry_socket *frontend, ferry_socket *backend, ferry_socket *capture,
                          ferry_socket *control);

/* ------------------------------------------------------------------------ */
/* Events: what happens to a socket's connections                           */
/* ------------------------------------------------------------------------ */

/* XX(symbol, value, name): every kind of event, with its number (an event
 * of kind K is chosen with the bit 1u << K) and the name ferry_event_name
 * gives it. What each one means, and what its fields carry:
 *  LISTENING         ferry_listen succeeded; endpoint is the URL with its
 *                    port resolved.
 *  BIND_FAILED       ferry_listen failed: error, reason.
 *  ACCEPTED          a listener took a connection: the peer's pid and uid
 *                    (shm://, ipc://, from the kernel) or address (tcp://).
 *                    On shm:// once its first message shows a dialer (a
 *                    `ferry ls` looking at the listener is not reported,
 *                    unless it is refused first: another uid, a limit).
 *  CONNECTED         a dialer's connection is up (its handshake follows).
 *  CONNECT_RETRIED   a dialer will try again in value ms: error and reason
 *                    say why (refused, unreachable, the peer went away).
 *  HANDSHAKE_OK      the peer is known and counts as one: peer_id names it
 *                    in ferry_socket_stats' listing and in later events.
 *  HANDSHAKE_FAILED  a connection ended before its handshake was done:
 *                    garbage or another protocol (FERRY_EPROTO), an
 *                    incompatible socket type (FERRY_EPEERTYPE), a refusal
 *                    (ours at a limit, the peer's: FERRY_ECONNREFUSED,
 *                    FERRY_EACCES), silence (FERRY_ETIMEDOUT). reason.
 *  DISCONNECTED      a peer that had completed its handshake is gone:
 *                    FERRY_ECONNRESET (it closed, or its process died),
 *                    FERRY_ETIMEDOUT (heartbeat: no answer), FERRY_EPROTO and
 *                    others (bad input: reason says which), FERRY_ECLOSED
 *                    (we closed).
 *  DROPPED           value messages dropped by the pattern: error is
 *                    FERRY_EAGAIN (a peer was full: HWM, ring) or
 *                    FERRY_EHOSTUNREACH (no peer to go to). At most ten such
 *                    events a second per socket and cause; drops in
 *                    between are added to the next one, which comes within
 *                    100 ms, so each drop is in exactly one event.
 *  CLOSED            the socket was closed: the last event. */
#define FERRY_EVENT_MAP(XX)                                                                        \
    XX(LISTENING, 1, "listening")                                                                  \
    XX(BIND_FAILED, 2, "bind-failed")                                                              \
    XX(ACCEPTED, 3, "accepted")                                                                    \
    XX(CONNECTED, 4, "connected")                                                                  \
    XX(CONNECT_RETRIED, 5, "connect-retried")                                                      \
    XX(HANDSHAKE_OK, 6, "handshake-ok")                                                            \
    XX(HANDSHAKE_FAILED, 7, "handshake-failed")                                                    \
    XX(DISCONNECTED, 8, "disconnected")                                                            \
    XX(DROPPED, 9, "dropped")                                                                      \
    XX(CLOSED, 10, "closed")

typedef enum ferry_event_kind {
#define FERRY_EVENT_ENUM(sym, val, name) FERRY_EVENT_##sym = val,
    FERRY_EVENT_MAP(FERRY_EVENT_ENUM)
#undef FERRY_EVENT_ENUM
} ferry_event_kind;

#define FERRY_EVENT_ALL 0x7feu /* every kind above */

typedef struct ferry_event {
    int kind;           /* FERRY_EVENT_* */
    int error;          /* why, as a ferry error code; 0 when the kind has none */
    int64_t value;      /* CONNECT_RETRIED: the delay (ms); DROPPED: messages */
    uint64_t time_ns;   /* when (CLOCK_REALTIME, ns since the epoch) */
    uint64_t lost;      /* events lost just before this one (the queue was full) */
    unsigned peer_id;   /* the peer's number in its socket (ferry_peer_info.id); 0: none yet */
    int peer_pid;       /* shm:// and ipc://: from the kernel; 0 unknown */
    int64_t peer_uid;   /* from the kernel; -1 unknown */
    char endpoint[256]; /* the listener's or dialer's URL */
    char peer_addr[96]; /* tcp://: the peer's tcp://HOST:PORT; empty otherwise */
    char reason[200];   /* why, as text (a peer's bytes in it are escaped) */
} ferry_event;

/* A monitor: a socket's events, queued for the program in the order they
 * happened. A slow reader never holds the socket back: when the queue is
 * full, new events are lost and counted (the next event read carries the
 * count in `lost`; ferry_monitor_lost gives the total), never silently.
 * CLOSED is never lost. The monitor outlives its socket: after ferry_close
 * the queued events, CLOSED last, can still be read.
 *
 * kinds: the bits of the kinds wanted (FERRY_EVENT_ALL). queue: events
 * held at most (1 to 65,536; 0: 256); each costs sizeof(ferry_event).
 * One monitor per socket at a time (FERRY_ESTATE while one is open). 0
 * and *out, or an error. */
typedef struct ferry_monitor ferry_monitor;
FERRY_API int ferry_monitor_open(ferry_socket *s, unsigned kinds, int queue, ferry_monitor **out);

/* The next event, waiting up to timeout_ms for one (0: do not wait; -1:
 * forever). 0 and *ev; FERRY_EAGAIN (timeout 0) or FERRY_ETIMEDOUT when
 * none came; FERRY_ECLOSED once the socket is closed and every event was
 * read. Any thread. */
FERRY_API int ferry_monitor_recv(ferry_monitor *m, ferry_event *ev, int timeout_ms);

/* A descriptor for poll, epoll or ferry_poller_add_fd: readable while an
 * event waits (level-triggered), and once the socket is closed. Owned by
 * the monitor: do not read or close it. */
FERRY_API int ferry_monitor_fd(const ferry_monitor *m);

/* Events lost so far because the queue was full. */
FERRY_API uint64_t ferry_monitor_lost(ferry_monitor *m);

/* Stops monitoring and frees the monitor (its socket, if still open, goes
 * on without one). No other thread may be using m. */
FERRY_API void ferry_monitor_close(ferry_monitor *m);

/* The kind's name ("handshake-failed"), or "unknown". */
FERRY_API const char *ferry_event_name(int kind);

/* ------------------------------------------------------------------------ */
/* Keys: CURVE key pairs and Z85 text                                        */
/* ------------------------------------------------------------------------ */

/* A CURVE key (Curve25519, RFC 26) is 32 bytes, written as 40 characters of
 * Z85 (RFC 32), as libzmq writes them (zmq_curve_keypair). The buffers
 * below hold the 40 characters and a NUL. */
#define FERRY_KEY_TEXT 41

/* A new key pair, from the system's random source (libsodium). The secret
 * key is for its owner's eyes only: keep it in a file of mode 0600
 * (`ferry keygen -o FILE` does). 0, or FERRY_EIO without entropy. */
FERRY_API int ferry_curve_keypair(char public_key[FERRY_KEY_TEXT], char secret_key[FERRY_KEY_TEXT]);

/* The public key that goes with secret_key (40 characters of Z85). 0 or
 * FERRY_EINVAL. */
FERRY_API int ferry_curve_public(char public_key[FERRY_KEY_TEXT], const char *secret_key);

/* Z85: size bytes (a multiple of 4) as size / 4 * 5 characters and a NUL
 * in dest (cap bytes). 0, FERRY_EINVAL (size), FERRY_ERANGE (cap). */
FERRY_API int ferry_z85_encode(char *dest, size_t cap, const void *data, size_t size);

/* Z85 text (a multiple of 5 characters, every one from Z85's alphabet, each
 * group of 5 worth at most 32 bits) back to bytes in dest (cap bytes);
 * *size (if not NULL) gets their number. 0, FERRY_EINVAL (bad text, with
 * the place in ferry_errdetail), FERRY_ERANGE (cap). */
FERRY_API int ferry_z85_decode(void *dest, size_t cap, const char *text, size_t *size);

/* ------------------------------------------------------------------------ */
/* Counters, live (what `ferry stat` reads)                                 */
/* ------------------------------------------------------------------------ */

/* Every socket counts what it moves, per peer, in a file of its process's
 * (/dev/shm/ferry-stat.PID, mode 0600) that other processes read without
 * disturbing it. The file exists while the process has sockets (made at
 * the first, removed with the last or at exit; a killed process's is
 * removed by the next one and by ferry_stats_list) and costs the process
 * one descriptor meanwhile. FERRY_STATS=0 in the environment keeps the
 * counts in process memory only: ferry_socket_stats still works, the
 * process is not listed. A process lists up to 256 sockets and 1,024
 * peers; the others are counted but not listed. */

typedef struct ferry_stats {
    uint64_t msgs_in, bytes_in;   /* whole messages received, bytes of all parts */
    uint64_t msgs_out, bytes_out; /* whole messages sent                          */
    uint64_t dropped;             /* messages the pattern dropped: a full peer (HWM), no route */
    uint64_t dropped_no_route;    /* of those, with no peer to go to (an unknown routing id,
                                     a requester gone); the rest found their peer full */
    uint64_t bad_input;           /* connections dropped for bad input (FERRY_OPT_ERRORS) */
    uint64_t refused;             /* connections refused at a limit (FERRY_OPT_REFUSED)  */
    uint64_t reconnects;          /* dial attempts after the first (a peer gone or absent) */
    uint32_t peers;               /* connected now (tcp/ipc: handshake done)            */
} ferry_stats;

/* The socket's counters: its peers' now, plus those of peers gone. */
FERRY_API int ferry_socket_stats(ferry_socket *s, ferry_stats *out);

typedef struct ferry_peer_info {
    unsigned id;       /* the connection's number in its socket, from 1 */
    char transport[8]; /* "shm", "ipc", "tcp" */
    char addr[96];     /* tcp://HOST:PORT of a tcp peer; empty otherwise */
    int pid;           /* shm:// and ipc://: the peer's, from the kernel; else 0 */
    unsigned uid;
    uint64_t msgs_in, bytes_in, msgs_out, bytes_out;
    uint64_t dropped;    /* messages dropped because this peer was full */
    int64_t last_active; /* unix time (s) of its last message; 0 never. Exact
                            once the socket waits; while it is busy, written
                            every 64 messages */
    /* Its queues, sampled with last_active (so as of then): messages
     * written to it and not yet taken (and the most seen), messages from
     * it not yet received by the user; shm:// the bytes in the ring toward
     * it and that ring's size (ring_size 0 elsewhere). */
    uint64_t queued_out, queued_out_max, queued_in;
    uint64_t ring_fill, ring_size;
} ferry_peer_info;

typedef struct ferry_sock_info {
    int pid;             /* the owner process */
    unsigned uid;        /* its user */
    char command[64];    /* its name (/proc/PID/comm) */
    unsigned id;         /* the socket's number in that process, from 1 */
    int type;            /* FERRY_PAIR... */
    char endpoints[320]; /* "listen URL" and "dial URL" lines, in order */
    ferry_stats stats;
    size_t npeers;
    const ferry_peer_info *peers; /* valid during the callback only */
} ferry_sock_info;

/* Calls fn for each listed socket of process pid (0: of every process
 * whose file the caller may read), processes in pid order. fn returns 0
 * to go on, anything else to stop (that value is returned). Files of dead
 * processes are removed (when the caller may); files that are not
 * well-formed are skipped. Counters are read while their owner runs: each
 * is whole, two may be a message apart. */
FERRY_API int ferry_stats_list(int pid, int (*fn)(const ferry_sock_info *info, void *arg),
                               void *arg);

/* ------------------------------------------------------------------------ */
/* Listing and removing objects (what `ferry ls` and `ferry rm` use)        */
/* ------------------------------------------------------------------------ */

typedef enum ferry_kind {
    FERRY_KIND_UNKNOWN = 0, /* a ferry.* name whose header could not be read */
    FERRY_KIND_REGION = 1,
    FERRY_KIND_SEM = 2,
    FERRY_KIND_ENDPOINT = 3 /* a live shm:// listener (no file: a Unix socket in
                               the abstract namespace, gone with its process) */
} ferry_kind;

typedef struct ferry_objinfo {
    char name[FERRY_NAME_MAX + 1];
    ferry_kind kind;
    uint64_t size;       /* user bytes (regions), 0 otherwise          */
    int creator_pid;     /* process that created it                    */
    int creator_alive;   /* 1 if that very process (pid and start time) lives */
    int attached;        /* processes that have it mapped now, -1 unknown */
    uint64_t created_ns; /* CLOCK_REALTIME at creation, ns since epoch */
    unsigned mode;       /* permission bits                            */
    unsigned uid;        /* owner                                      */
    int sem_value;       /* semaphores: current value, -1 unknown      */
    int sem_undo;        /* semaphores: 1 for the undo kind            */
    int peers;           /* endpoints: connected peers                 */
    uint64_t fill;       /* endpoints: bytes queued in all its rings   */
    uint64_t ring_size;  /* endpoints: ring bytes per direction (first peer) */
    int error;           /* 0, or why the header could not be read     */
} ferry_objinfo;

/* Calls fn once for each ferry object on the machine, in name order
 * (regions and semaphores, then live shm:// endpoints, whose name is the
 * URL "shm://NAME"). fn
 * returns 0 to go on, anything else to stop (that value is returned).
 * Objects that cannot be read (permissions, damage) are still reported,
 * with kind FERRY_KIND_UNKNOWN and error set. */
FERRY_API int ferry_objects_list(int (*fn)(const ferry_objinfo *info, void *arg), void *arg);

/* Fills *info for the object NAME. */
FERRY_API int ferry_object_stat(const char *name, ferry_objinfo *info);

/* Removes the object NAME whatever its kind (for a semaphore of the undo
 * kind, the kernel semaphore too). A damaged ferry object can be removed;
 * a foreign file cannot (FERRY_EFOREIGN). */
FERRY_API int ferry_object_remove(const char *name);

#ifdef __cplusplus
}
#endif
#endif /* FERRY_H */
