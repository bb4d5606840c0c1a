/*
 * pool.h - the broadcast pool of shm://: a message sent to several peers
 * is written once into memory they all map, and each peer's ring carries
 * only a reference to it.
 *
 * Without it a PUB with N subscribers on shm:// copies each message into N
 * rings: a 1 MiB camera frame to 8 local readers is 8 MiB of copying. With
 * it the publisher copies the frame once into its pool and writes a
 * 24-byte REF record (struct shm_ref) into each subscriber's ring; each
 * subscriber reads the frame in place, out of its read-only mapping of the
 * pool.
 *
 * Who owns what:
 *  - The pool is one memfd per sending socket, made by us, sealed against
 *    shrinking, growing and any *future* write mapping (F_SEAL_FUTURE_WRITE)
 *    after we mapped it writable. A peer gets the descriptor at the
 *    handshake and can map it read-only and nothing else: it cannot write
 *    what the other peers read (test_pool_read_only).
 *  - Which chunk of the pool is in use is known only here, in private
 *    memory: a FIFO of chunks, each with the number of peers whose rings
 *    still hold a reference to it, and per peer (struct shm_pool_link) a
 *    FIFO of (ring position after the REF record, chunk).
 *  - A peer gives a chunk back by moving its ring's head past the REF
 *    record, which it does when the message is freed (in place, the ring
 *    record is held as for any in-place message). That head is the only
 *    thing a peer writes that we read here, and it is checked as the
 *    ring's writer checks it (within [tail - capacity, tail]); a peer
 *    that writes an impossible one is cut off (its send fails with
 *    FERRY_ECORRUPT) and its references are dropped at once. A peer that
 *    lies a head forward only frees chunks it still reads: its own harm.
 *  - A peer that dies, or is dropped, gives back everything it held when
 *    its pipe is destroyed (shm_pool_unlink).
 *
 * The pool's first SHM_POOL_BELL bytes are no message's: they hold the
 * publisher's bell (sock.h, bells), a word its subscribers sleep on and
 * cannot write, so that one FUTEX_WAKE wakes all of them and no peer can
 * ring it for the others.
 *
 * The publisher never waits for the pool: when it has no room (slow
 * subscribers hold most of it, or the pool is too small for the message),
 * the message goes into each ring as a copy, exactly as without a pool,
 * and is counted in `fallbacks`. A slow subscriber thus costs the publisher
 * copies, never a stall, and loses messages only at its HWM, as before. A
 * chunk is free as soon as the last ring lets go of it, whatever the order
 * (first fit from the front, free room merged): a subscriber that lags, or
 * keeps a message, holds what was sent to it since (its ring gives records
 * back in order), never the room of what went only to others.
 *
 * Locking: the pool's own mutex guards everything here. The chunks are
 * placed and noted from a send (socket mutex held); links are dropped when
 * a pipe is destroyed, on whatever thread that happens.
 */
#ifndef FY_SHM_POOL_H
#define FY_SHM_POOL_H

#include "../../core/sock.h"
#include "ring.h"

#include <pthread.h>

/* Messages smaller than this are copied into each ring: a REF record and
 * the bookkeeping cost about what copying 2 KiB does. */
#define SHM_POOL_MIN 2048u
/* A pool a peer announces may be at most this large (it costs us address
 * space, and page-table memory as we read it): the largest ring. */
#define SHM_POOL_MAX (256u << 20)
/* The bell's line at the pool's start; references into it are refused. */
#define SHM_POOL_BELL 64u
/* Chunks in use at once, and REFs outstanding per peer; past either the
 * message is copied instead. */
#define SHM_POOL_CHUNKS 4096u
#define SHM_POOL_HOLDS 1024u

/* The payload of a REF record (FY_RING_F_REF): where in the sender's pool
 * the message lies. parts 0: one part of len bytes; else a packed message
 * of that many parts (shm_pipe.c's put_pack layout: a u32 count, a u32
 * length per part, the parts back to back). */
struct shm_ref {
    uint64_t off;
    uint64_t len;
    uint32_t parts;
    uint32_t zero;
};

struct shm_pool_chunk {
    uint64_t seq;      /* the chunk's id (its slot is seq % SHM_POOL_CHUNKS) */
    uint64_t off, len; /* where in the pool (len rounded up to 64) */
    uint32_t users;    /* rings still holding a reference */
    int live;
};

struct shm_pool_extent {
    uint64_t off, len;
};

struct shm_pool_hold {
    uint64_t ring_end; /* the REF record's end in that ring */
    uint64_t chunk;    /* the chunk's sequence number */
};

struct shm_pool_link; /* in struct shm_pipe */

struct shm_pool {
    pthread_mutex_t lk;
    int refs; /* the transport's, and one per linked pipe */
    int fd;
    unsigned char *map;
    uint64_t size;
    struct shm_pool_chunk chunks[SHM_POOL_CHUNKS];
    uint64_t next_seq;
    uint32_t live; /* chunks in use */
    uint64_t used; /* their bytes */
    /* the free room, sorted by offset, neighbours merged: at most one
     * extent more than there are chunks in use */
    struct shm_pool_extent free[SHM_POOL_CHUNKS + 1];
    uint32_t nfree;
    struct shm_pool_link **links;
    size_t nlinks, cap_links;
    uint64_t placed;    /* messages written into the pool */
    uint64_t fallbacks; /* fan-out messages copied for want of room */
};

/* A sender's view of one peer's use of the pool (lives in the pipe). */
struct shm_pool_link {
    struct shm_pool *pool;
    struct fy_ring_writer *w; /* the ring the REF records go into */
    struct shm_pool_hold *holds;
    uint32_t h_first, h_count;
    int bad; /* the peer wrote an impossible head */
};

/* A new pool of size bytes (a multiple of the page size), or NULL with
 * fy_err set. */
struct shm_pool *shm_pool_new(uint64_t size);
void shm_pool_unref(struct shm_pool *pl);

/* Makes lk a user of pl (the ring w carries its REFs). 0 or
 * FERRY_ENOMEM. */
int shm_pool_link(struct shm_pool *pl, struct shm_pool_link *lk, struct fy_ring_writer *w);
/* Gives back all lk holds and leaves the pool (idempotent). */
void shm_pool_unlink(struct shm_pool_link *lk);

/* Puts fan-out message m in the pool, or finds it there already (m->fan
 * says where the first pipe of this send put it), for link lk, and takes
 * lk's hold on it. 1 and *ref filled: then call shm_pool_placed; 0 when it
 * should be copied instead (no room, or lk has too many references out);
 * FERRY_ECORRUPT when lk's peer wrote an impossible head. */
int shm_pool_place(struct shm_pool_link *lk, const struct fy_txmsg *m, struct shm_ref *ref);
/* After place(): the REF was committed to lk's ring, ending at ring_end,
 * or (committed 0) not written, and the hold is given back. */
void shm_pool_placed(struct shm_pool_link *lk, int committed, uint64_t ring_end);

/* The receiving side: maps a peer's pool read-only after checking the
 * descriptor (a sealed memfd on tmpfs of exactly size bytes, size within
 * SHM_POOL_MAX). The mapping, or NULL. */
const unsigned char *shm_pool_map_peer(int fd, uint64_t size);

#endif /* FY_SHM_POOL_H */
