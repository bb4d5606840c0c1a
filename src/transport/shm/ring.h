/*
 * ring.h - the single-producer/single-consumer message ring of shm://.
 *
 * One ring carries one direction of one connection. It lives in a memfd
 * shared by exactly the two peers, sealed against shrinking, so neither can
 * make the other's mapping fault. Layout of a ring (offsets from its start):
 *
 *   0      line 0   capacity (informative only: each side uses the capacity
 *                   agreed at handshake); want_room, set by a writer that
 *                   found no room and may sleep, cleared by the reader that
 *                   then wakes it (so a reader freeing room costs a wake-up
 *                   only when somebody waits for it)
 *   64     line 1   head: consumer position (bytes, monotonic), and the
 *                   number of messages consumed. Written only by the reader.
 *   128    line 2   tail: producer position and messages produced. Written
 *                   only by the writer; the reader reads it only before
 *                   sleeping and to validate (never on the fast path).
 *   192    data     capacity bytes (a multiple of 64)
 *
 * Each index has a cache line to itself, so the reader's stores to head do
 * not evict the writer's line and the other way round. The writer keeps a
 * private copy of head and re-reads the shared one only when the ring looks
 * full (Aeron's cached head).
 *
 * Records, 8-byte aligned, never split across the end of the data area:
 *
 *   u32 len_flags   payload length (low 27 bits) | flags (high 5 bits)
 *   u32 tag         (uint32_t)(position >> 3) ^ FY_RING_TAG_SALT: the
 *                   position this record was written at, so a record left
 *                   over from the previous lap is never taken for a new
 *                   one (the salt keeps zeroed memory from matching)
 *   payload         len bytes, then padding to 8
 *
 * The writer fills the payload first and then stores the 8-byte header with
 * one release store: the reader polls the header at its position with one
 * acquire load, so a small message and its header arrive in the same cache
 * line and the reader needs no separate index on the fast path. At the end
 * of the data area the writer puts a PAD record covering the rest, and the
 * next record starts at offset 0.
 *
 * On commit the writer also blanks the header slot of the next record (if
 * it is free room) so that stale payload bytes of the previous lap cannot
 * pass for a record. The blank word carries the complement of the tag
 * expected at that position, never plain 0: the tag is 0 at one position in
 * every 32 GiB ((pos >> 3) == FY_RING_TAG_SALT), and a zero word there would
 * read as an empty message and leave the reader 8 bytes out of step.
 *
 * Nothing in the shared area is trusted by the side that reads it: the
 * reader checks every header (length within the data area, known flags,
 * PAD reaching exactly the end); the writer checks that head lies in
 * [tail - capacity, tail]. A violation returns FERRY_ECORRUPT and the
 * connection is dropped. A garbage header whose tag does not match is
 * indistinguishable from "not yet written" until the reader consults tail:
 * fy_ring_peek() does so before reporting "empty" to a caller about to
 * sleep, so a scribbled ring cannot make the reader wait forever.
 */
#ifndef FY_RING_H
#define FY_RING_H

#include "../../core/fy.h"

#define FY_RING_HDR 192u
#define FY_RING_REC_HDR 8u
#define FY_RING_LEN_MASK 0x07ffffffu /* a record is under 128 MiB (ring <= 256 MiB) */
#define FY_RING_F_PACK 0x08000000u   /* a whole message of several parts (shm_pipe.c) */
#define FY_RING_F_MORE 0x10000000u   /* another part of the same message follows */
#define FY_RING_F_CONT 0x20000000u   /* this part continues in the next record   */
#define FY_RING_F_CMD 0x40000000u    /* a control record (subscriptions)         */
#define FY_RING_F_PAD 0x80000000u    /* padding to the end of the data area      */
/* PACK with CONT (never otherwise together): a REF record, a whole message
 * lying in the writer's broadcast pool (pool.h) */
#define FY_RING_F_REF (FY_RING_F_PACK | FY_RING_F_CONT)

/* 1 if a record of these flags ends a message (the writer's and the
 * reader's message counts, which flow control compares): not a part with
 * more to come, a continued part or a command; a REF carries CONT but is a
 * whole message. */
static inline int fy_ring_ends_msg(uint32_t flags)
{
    return !(flags & (FY_RING_F_MORE | FY_RING_F_CONT | FY_RING_F_CMD)) ||
           (flags & FY_RING_F_REF) == FY_RING_F_REF;
}
#define FY_RING_TAG_SALT 0x9e3779b9u
#define FY_RING_MIN 4096u
#define FY_RING_MAX (256u << 20)

struct fy_ring_shared {
    _Alignas(64) uint64_t capacity;
    _Atomic uint32_t want_room; /* the writer waits for room: wake it */
    uint32_t pad_w;
    uint64_t pad0[6];
    _Alignas(64) _Atomic uint64_t head;
    _Atomic uint64_t consumed;
    uint64_t pad1[6];
    _Alignas(64) _Atomic uint64_t tail;
    _Atomic uint64_t produced;
    uint64_t pad2[6];
    /* data follows at FY_RING_HDR */
};
_Static_assert(sizeof(struct fy_ring_shared) == FY_RING_HDR, "ring header is 3 lines");

/* The writer's private view. */
struct fy_ring_writer {
    struct fy_ring_shared *sh;
    unsigned char *data;
    uint64_t cap;
    uint64_t tail;       /* next write position                     */
    uint64_t head_cache; /* last head seen                          */
    uint64_t produced;
    uint64_t claim_pos; /* position of an outstanding claim, or ~0 */
    uint64_t claim_size;
    int batching;       /* between fy_ring_batch_begin and _end */
    int held;           /* the batch's first header is not stored yet: */
    uint64_t held_off;  /* where it goes */
    uint64_t held_word; /* and what */
};

/* The reader's private view. Records received in place may be released
 * out of order; head advances over the released prefix. The queue holds
 * consumed-but-unreleased records; adjacent released ones are merged. */
#define FY_RING_QUEUE 128
#define FY_RING_INPLACE_MAX                                                                        \
    60 /* in-place records outstanding at most; with                                               \
          copies between them the queue needs at most                                              \
          2 * 60 + 1 entries */
struct fy_ring_reader {
    struct fy_ring_shared *sh;
    const unsigned char *data;
    uint64_t cap;
    uint64_t pos;            /* next record to read            */
    uint64_t head;           /* released prefix               */
    uint64_t published;      /* head as the writer last saw it */
    uint64_t published_msgs; /* consumed as the writer last saw it */
    uint64_t publish_msgs;   /* publish at least every this many messages */
    int flush_pending;       /* found empty while holding records in place */
    int eager;               /* publish head whenever it moves: the writer
                                waits for it to reuse its broadcast pool */
    uint64_t consumed;
    struct {
        uint64_t end;
        uint32_t msgs;
        uint32_t holds; /* in place: releases still due */
        int released;
    } q[FY_RING_QUEUE];
    uint64_t q_first; /* sequence number of q's first entry */
    unsigned q_count;
    unsigned inplace;            /* outstanding in-place records */
    uint64_t look_pos, look_off; /* fy_ring_idle's pos % cap, kept while pos stays */
};

/* Bytes a ring of capacity cap occupies, header included. */
static inline size_t fy_ring_bytes(uint64_t cap) { return FY_RING_HDR + (size_t)cap; }

/* Largest payload one record can carry in a ring of capacity cap. */
static inline uint64_t fy_ring_max_record(uint64_t cap)
{
    uint64_t m = cap / 2 - FY_RING_REC_HDR;
    return m > FY_RING_LEN_MASK ? FY_RING_LEN_MASK : m;
}

/* Lays out a fresh ring in zeroed memory. */
void fy_ring_format(void *mem, uint64_t cap);

void fy_ring_writer_init(struct fy_ring_writer *w, void *mem, uint64_t cap);
void fy_ring_reader_init(struct fy_ring_reader *r, void *mem, uint64_t cap);

/* 1 if total bytes (records and padding) fit now, 0 if not, < 0 when the
 * head read is impossible. Checked against the head last read, which is
 * read again only when they do not seem to fit: the reader's cache line
 * is touched only when the ring looks full. */
int fy_ring_fits(struct fy_ring_writer *w, uint64_t total);

/* Claims room for a record of len payload bytes (len <= max record).
 * Returns a pointer to write the payload at, NULL when the ring is full
 * (the caller may wait and retry), and sets *err to FERRY_ECORRUPT when the
 * reader's head is impossible. Nothing is visible to the reader until
 * fy_ring_commit(); fy_ring_abort() forgets the claim. */
void *fy_ring_claim(struct fy_ring_writer *w, uint64_t len, int *err);
void fy_ring_commit(struct fy_ring_writer *w, uint32_t flags);
void fy_ring_abort(struct fy_ring_writer *w);

/* A batch: the records committed between these two calls become visible
 * to the reader together. The first one's header is held back and stored
 * (with release) at fy_ring_batch_end, after every later record and the
 * blanked slot behind them: a reader that sees it sees them all, so it
 * takes a small multipart message in one pass instead of chasing records
 * while the writer still owns their cache line. Tail and the message
 * count are published once, at the end; before that the reader's "empty,
 * or garbage?" check sees tail at or before the held record and says
 * empty. A writer that dies inside a batch has published none of it. */
void fy_ring_batch_begin(struct fy_ring_writer *w);
void fy_ring_batch_end(struct fy_ring_writer *w);

/* A record seen by the reader. */
struct fy_ring_rec {
    const void *data;
    uint32_t len;
    uint32_t flags;
    uint64_t end; /* position after the record */
};

/* Looks at the next record without consuming it. Returns 1 and fills *rec,
 * 0 when there is none, FERRY_ECORRUPT when the ring holds garbage. With
 * check_tail, "none" is confirmed against the writer's tail (use it before
 * sleeping; it touches the writer's cache line). */
int fy_ring_peek(struct fy_ring_reader *r, struct fy_ring_rec *rec, int check_tail);

/* 0 when no record has been written at the reader's position yet (one
 * load; 1 may still be garbage, which fy_ring_peek() tells). */
static inline int fy_ring_maybe(const struct fy_ring_reader *r)
{
    const _Atomic uint64_t *w = (const _Atomic uint64_t *)(const void *)(r->data + r->pos % r->cap);
    uint64_t word = atomic_load_explicit((_Atomic uint64_t *)w, memory_order_relaxed);
    return (uint32_t)(word >> 32) == ((uint32_t)(r->pos >> 3) ^ FY_RING_TAG_SALT);
}

/* 1 when a look would find nothing and owe the writer nothing: no record
 * at the reader's position (by its tag alone, as fy_ring_maybe) and head
 * published. For a caller that looks at many rings that are nearly always
 * empty (a publisher's subscribers' rings, on every send): one load, and
 * the division of the position by the capacity only when it moved. */
static inline int fy_ring_idle(struct fy_ring_reader *r)
{
    if (r->head != r->published)
        return 0;
    if (r->look_pos != r->pos) {
        r->look_pos = r->pos;
        r->look_off = r->pos % r->cap;
    }
    const _Atomic uint64_t *w = (const _Atomic uint64_t *)(const void *)(r->data + r->look_off);
    uint64_t word = atomic_load_explicit((_Atomic uint64_t *)w, memory_order_relaxed);
    return (uint32_t)(word >> 32) != ((uint32_t)(r->pos >> 3) ^ FY_RING_TAG_SALT);
}

/* The header word at the reader's position: the writer's next store
 * there is the next record (or a pad before it). For a spinning reader to
 * watch without its lock; it changes no more than that. */
static inline const _Atomic uint64_t *fy_ring_watch(const struct fy_ring_reader *r)
{
    return (const _Atomic uint64_t *)(const void *)(r->data + r->pos % r->cap);
}

/* Consumes the peeked record. In place (inplace = n > 0): the data stays
 * valid until fy_ring_release(r, returned id) has been called n times
 * (several messages may point into one record); returns -1 (nothing
 * consumed) when too many in-place records are outstanding: copy instead.
 * Copying (inplace=0): the caller has copied the data already; the record
 * is released at once and 0 is returned. msgs is the number of messages the
 * record completes (0 for a non-final part). Returns 1 in *moved when head
 * moved (the writer may be waiting for room). */
int64_t fy_ring_take(struct fy_ring_reader *r, const struct fy_ring_rec *rec, uint32_t inplace,
                     uint32_t msgs, int *moved);

/* Publishes a head the writer has not seen yet; 1 if it did (the writer
 * may want a wake-up). Call when the ring is found empty. */
int fy_ring_flush(struct fy_ring_reader *r);

/* 0 when a copying take would find no queue entry (too many in-place
 * records held, interleaved with copies): wait for releases. */
int fy_ring_can_take(const struct fy_ring_reader *r);

/* Releases one hold of an in-place record; the last frees it. Returns 1
 * when head was published. */
int fy_ring_release(struct fy_ring_reader *r, int64_t id);

/* Messages and bytes waiting in the ring, from the shared indices (for
 * `ferry ls`; approximate while the ring is in use). */
uint64_t fy_ring_fill_bytes(const struct fy_ring_shared *sh);

#endif /* FY_RING_H */
