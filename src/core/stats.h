/*
 * stats.h - live counters, readable by other processes (`ferry stat`).
 *
 * Each process that opens a socket gets one counters file,
 * /dev/shm/ferry-stat.PID (or ferry-stat.PID-N when that name is taken),
 * mode 0600, created at its first socket and removed with its last (or
 * at exit). The
 * owner holds a shared flock on it while it lives; a file nobody holds is
 * stale (a SIGKILLed process's) and is removed by the next process that
 * creates one and by `ferry stat`. The layout is fixed, so a reader reads
 * it while the owner runs, with no effect on the owner (Aeron's counters
 * file is the model):
 *
 *   offset 0       struct fy_stat_hdr   (one 4 KiB page)
 *   4096           FY_STAT_SOCKS x struct fy_stat_sock  (512 B each)
 *   then           FY_STAT_PEERS x struct fy_stat_peer  (256 B each)
 *
 * Only the owner writes. A counter is a 64-bit word stored with relaxed
 * atomics by the one thread that holds the socket's mutex, so a reader
 * sees each counter whole and never torn, though two counters may be a
 * message apart. The text of a slot (type, endpoints, peer address) and
 * its identity are guarded by the slot's `seq` (a seqlock: odd while the
 * owner writes; a reader copies, then accepts the copy only if `seq` was
 * even and unchanged). A slot is free while `live` is 0, listed at 1. A
 * reader trusts nothing in the file: every length and index is checked,
 * every string is cut at its field's end.
 *
 * Per peer the hot path stores its counters into the peer's own slot (a
 * cache line the owner alone writes); the socket's totals are the sum of
 * its live peers plus `retired`, what peers that left had counted.
 */
#ifndef FY_STATS_H
#define FY_STATS_H

#include "fy.h"

#include <time.h>

#define FY_STAT_MAGIC "FERRYST1"
#define FY_STAT_VERSION 3u
#define FY_STAT_SOCKS 256u  /* sockets listed per process; more are counted */
#define FY_STAT_PEERS 1024u /* peers listed per process; more are counted  */
#define FY_STAT_PREFIX "ferry-stat."

struct fy_stat_hdr {
    char magic[8];
    uint32_t version;
    uint32_t hdr_size, sock_size, peer_size;
    uint32_t sock_slots, peer_slots;
    int32_t pid;
    uint32_t uid;
    uint64_t start_time; /* /proc/PID/stat field 22: a recycled pid is not us */
    char command[64];    /* /proc/self/comm */
    _Atomic uint64_t unlisted_socks, unlisted_peers; /* no slot was free */
};

/* Counters of one direction pair; the order is the public struct's. */
struct fy_stat_io {
    _Atomic uint64_t msgs_in, bytes_in, msgs_out, bytes_out;
};

struct fy_stat_sock {
    _Atomic uint32_t seq;  /* seqlock over the fields up to endpoints */
    _Atomic uint32_t live; /* 0 free, 1 listed, 2 being filled in */
    uint32_t id;           /* the socket's number in its process, from 1 */
    int32_t type;          /* the socket type (ferry.h) */
    char endpoints[320];   /* "listen URL", "dial URL", one a line */
    _Alignas(64) struct fy_stat_io retired;
    _Atomic uint64_t dropped;   /* messages the pattern dropped: HWM, no route */
    _Atomic uint64_t bad_input; /* connections dropped for bad input */
    _Atomic uint64_t refused;   /* connections refused at a limit */
    _Atomic uint64_t reconnects;
    _Atomic uint64_t retired_dropped;
    _Atomic uint64_t dropped_noroute; /* of dropped: no peer to take it (unknown or gone) */
};

struct fy_stat_peer {
    _Atomic uint32_t seq;  /* seqlock over the fields up to addr */
    _Atomic uint32_t live; /* 0 free */
    uint32_t sock;         /* index of its socket's slot */
    uint32_t id;           /* the connection's number in its socket, from 1 */
    int32_t pid;           /* shm:// and ipc://: from the kernel; else 0 */
    uint32_t uid;
    char transport[8]; /* "shm", "ipc", "tcp" */
    char addr[96];     /* tcp: the peer's address:port; else the endpoint */
    _Alignas(64) struct fy_stat_io io;
    _Atomic uint64_t dropped;     /* messages dropped for this peer (HWM) */
    _Atomic uint64_t last_active; /* unix seconds of the last message */
    /* queues, sampled when last_active is written (sock.h, fy_pipe_stamp) */
    _Atomic uint64_t queued_out;     /* messages written, not yet taken by the peer */
    _Atomic uint64_t queued_out_max; /* the most seen */
    _Atomic uint64_t queued_in;      /* messages arrived, not yet taken by the user */
    _Atomic uint64_t ring_fill;      /* shm://: bytes in the ring toward the peer */
    _Atomic uint64_t ring_size;      /* shm://: that ring's size; else 0 */
    char reserved[40];               /* to 256 bytes: room for later counters */
};

_Static_assert(sizeof(struct fy_stat_hdr) <= 4096, "header fits its page");
_Static_assert(sizeof(struct fy_stat_sock) == 512, "socket slot is 512 bytes");
_Static_assert(sizeof(struct fy_stat_peer) == 256, "peer slot is 256 bytes");

#define FY_STAT_SIZE                                                                               \
    (4096u + FY_STAT_SOCKS * sizeof(struct fy_stat_sock) +                                         \
     FY_STAT_PEERS * sizeof(struct fy_stat_peer))

static inline struct fy_stat_sock *fy_stat_socks(const struct fy_stat_hdr *h)
{
    return (struct fy_stat_sock *)(void *)((char *)(uintptr_t)h + 4096);
}

static inline struct fy_stat_peer *fy_stat_peers(const struct fy_stat_hdr *h)
{
    return (struct fy_stat_peer *)(void *)(fy_stat_socks(h) + FY_STAT_SOCKS);
}

/* Removes the files nobody holds (stats.c), a bounded number per call. */
void fy_stat_sweep(void);
/* 1 and *pid when name is a counters file's public name. */
int fy_stat_name_pid(const char *name, int *pid);
/* 1 when a slot is in process memory, not in the file (decided by
 * address, never by what the shared file says). */
int fy_stat_is_heap(const void *slot);

/* A slot of process-local memory stands in when no file slot is free (or
 * counting to a file is off: FERRY_STATS=0), so the hot path never tests. */
struct fy_stat_sock *fy_stat_sock_open(int type);
void fy_stat_sock_close(struct fy_stat_sock *ss, int heap);   /* ferry_close: not listed */
void fy_stat_sock_release(struct fy_stat_sock *ss, int heap); /* the socket's memory goes */
/* Appends "listen URL" or "dial URL" to the socket's endpoint list. */
void fy_stat_sock_endpoint(struct fy_stat_sock *ss, const char *how, const char *url);

struct fy_stat_peer *fy_stat_peer_open(struct fy_stat_sock *ss, const char *transport,
                                       const char *addr, int pid, unsigned uid);
/* Rewrites a peer's description (a tcp:// dialer's peer is known once
 * connected). */
void fy_stat_peer_describe(struct fy_stat_peer *sp, const char *transport, const char *addr,
                           int pid, unsigned uid);
/* Records the connection's number in its socket. */
void fy_stat_peer_id(struct fy_stat_peer *sp, uint32_t id);
/* Adds the peer's counts to its socket's retired totals and frees it
 * (the socket's mutex held). */
void fy_stat_peer_close(struct fy_stat_sock *ss, struct fy_stat_peer *sp, int heap);

/* Single-writer increments (the caller holds the socket's mutex). */
static inline void fy_stat_add(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

/* Another thread may count these without the socket's mutex (the I/O
 * thread refusing a connection): rare, so an atomic add. */
static inline void fy_stat_inc(_Atomic uint64_t *c)
{
    atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

/* Stamps the time of the last message, in whole seconds (the coarse
 * clock: the vDSO's data page, no system call; still 4 ns, so the callers
 * stamp only now and then: sock.h, fy_pipe_stamp). */
static inline void fy_stat_touch(struct fy_stat_peer *sp)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    if (atomic_load_explicit(&sp->last_active, memory_order_relaxed) != (uint64_t)ts.tv_sec)
        atomic_store_explicit(&sp->last_active, (uint64_t)ts.tv_sec, memory_order_relaxed);
}

#endif
