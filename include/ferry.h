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
    XX(ECORRUPT, -4007, "shared state written by a peer is corrupt")

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
 * FERRY_ESIZE, FERRY_EFOREIGN, FERRY_EDAMAGED, FERRY_EVERSION, FERRY_EKIND,
 * FERRY_ENOMEM, and other OS errors. Does not block. */
FERRY_API int ferry_shm_open(ferry_shm **shm, const char *name, size_t size, int flags,
                             const ferry_shm_opts *opts);

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
 * semaphore. Does not block. */
FERRY_API int ferry_sem_open(ferry_sem **sem, const char *name, int flags, unsigned mode,
                             unsigned value);

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
 * the memory until they close (default kind). */
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
/* Listing and removing objects (what `ferry ls` and `ferry rm` use)        */
/* ------------------------------------------------------------------------ */

typedef enum ferry_kind {
    FERRY_KIND_UNKNOWN = 0, /* a ferry.* name whose header could not be read */
    FERRY_KIND_REGION = 1,
    FERRY_KIND_SEM = 2
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
    int error;           /* 0, or why the header could not be read     */
} ferry_objinfo;

/* Calls fn once for each ferry object on the machine, in name order. fn
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
