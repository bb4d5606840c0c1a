/*
 * ring.c - the SPSC record ring; layout and trust rules in ring.h.
 *
 * Memory ordering, in one place:
 *  - writer: payload stores, then the record header with a release store;
 *    tail and produced are published with release stores after that.
 *  - reader: the header is loaded with acquire, which makes the payload
 *    visible; head and consumed are published with release stores after
 *    the reader is done with the bytes, so the writer (acquire load of
 *    head) cannot overwrite bytes still being read.
 */
#include "ring.h"

#include <string.h>

#define ALIGN8(x) (((x) + 7u) & ~(uint64_t)7u)

static inline _Atomic uint64_t *rec_word(unsigned char *data, uint64_t off)
{
    return (_Atomic uint64_t *)(void *)(data + off);
}

static inline uint32_t ring_tag(uint64_t pos) { return (uint32_t)(pos >> 3) ^ FY_RING_TAG_SALT; }

static inline uint64_t make_hdr(uint32_t len_flags, uint64_t pos)
{
    return (uint64_t)len_flags | ((uint64_t)ring_tag(pos) << 32);
}

/* A header word that can never be taken for a record at pos. */
static inline uint64_t ring_blank(uint64_t pos) { return (uint64_t)(~ring_tag(pos)) << 32; }

void fy_ring_format(void *mem, uint64_t cap)
{
    struct fy_ring_shared *sh = mem;
    sh->capacity = cap;
    atomic_store_explicit(&sh->head, 0, memory_order_relaxed);
    atomic_store_explicit(&sh->tail, 0, memory_order_relaxed);
}

void fy_ring_writer_init(struct fy_ring_writer *w, void *mem, uint64_t cap)
{
    memset(w, 0, sizeof *w);
    w->sh = mem;
    w->data = (unsigned char *)mem + FY_RING_HDR;
    w->cap = cap;
    w->claim_pos = UINT64_MAX;
}

void fy_ring_reader_init(struct fy_ring_reader *r, void *mem, uint64_t cap)
{
    memset(r, 0, sizeof *r);
    r->sh = mem;
    r->data = (const unsigned char *)mem + FY_RING_HDR;
    r->cap = cap;
    r->publish_msgs = UINT64_MAX;
}

/* Refreshes the cached head; FERRY_ECORRUPT when it is impossible. */
static int ring_load_head(struct fy_ring_writer *w)
{
    uint64_t h = atomic_load_explicit(&w->sh->head, memory_order_acquire);
    if (h > w->tail || w->tail - h > w->cap || h < w->head_cache || (h & 7u))
        return FERRY_ECORRUPT;
    w->head_cache = h;
    return 0;
}

int fy_ring_fits(struct fy_ring_writer *w, uint64_t total)
{
    if (w->cap - (w->tail - w->head_cache) >= total)
        return 1;
    int rc = ring_load_head(w);
    return rc != 0 ? rc : w->cap - (w->tail - w->head_cache) >= total;
}

void *fy_ring_claim(struct fy_ring_writer *w, uint64_t len, int *err)
{
    *err = 0;
    if (len > fy_ring_max_record(w->cap)) {
        *err = FERRY_EINVAL;
        return NULL;
    }
    uint64_t need = ALIGN8(FY_RING_REC_HDR + len);
    uint64_t off = w->tail % w->cap;
    uint64_t to_end = w->cap - off;
    uint64_t total = need <= to_end ? need : to_end + need; /* pad + record */
    if (w->cap - (w->tail - w->head_cache) < total) {
        if ((*err = ring_load_head(w)) != 0)
            return NULL;
        if (w->cap - (w->tail - w->head_cache) < total)
            return NULL;
    }
    if (need > to_end) {
        /* Pad to the end; the record starts at offset 0. The pad is
         * published now: the reader may skip it before the commit. */
        atomic_store_explicit(
            rec_word(w->data, off),
            make_hdr(FY_RING_F_PAD | (uint32_t)(to_end - FY_RING_REC_HDR), w->tail),
            memory_order_release);
        w->tail += to_end;
        off = 0;
    }
    w->claim_pos = w->tail;
    w->claim_size = len;
    return w->data + off + FY_RING_REC_HDR;
}

/* After the headers: the reader trusts a header only up to tail. */
static void ring_publish_tail(struct fy_ring_writer *w)
{
    atomic_store_explicit(&w->sh->produced, w->produced, memory_order_relaxed);
    atomic_store_explicit(&w->sh->tail, w->tail, memory_order_release);
}

void fy_ring_commit(struct fy_ring_writer *w, uint32_t flags)
{
    uint64_t pos = w->claim_pos;
    uint64_t len = w->claim_size;
    uint64_t next = pos + ALIGN8(FY_RING_REC_HDR + len);
    /* Clear the header slot of the next record if it is free room: it may
     * hold payload bytes of the previous lap, which must never pass for a
     * record (a relayed payload could forge one). The release store of
     * this record's header below orders the clearing before it. The
     * cleared word carries the complement of the tag expected there, not
     * 0: ring_tag() is 0 at one position in every 32 GiB, where a zero
     * word would read as an empty record and put the reader out of step. */
    if (next - w->head_cache >= w->cap)
        ring_load_head(w);
    if (next - w->head_cache < w->cap)
        atomic_store_explicit(rec_word(w->data, next % w->cap), ring_blank(next),
                              memory_order_relaxed);
    uint64_t hdr = make_hdr((uint32_t)len | (flags & ~FY_RING_LEN_MASK), pos);
    if (w->batching && !w->held) {
        w->held = 1; /* stored last, by fy_ring_batch_end */
        w->held_off = pos % w->cap;
        w->held_word = hdr;
    } else {
        atomic_store_explicit(rec_word(w->data, pos % w->cap), hdr, memory_order_release);
    }
    w->tail = pos + ALIGN8(FY_RING_REC_HDR + len);
    if (fy_ring_ends_msg(flags))
        w->produced++;
    w->claim_pos = UINT64_MAX;
    if (!w->batching)
        ring_publish_tail(w);
}

void fy_ring_batch_begin(struct fy_ring_writer *w)
{
    w->batching = 1;
    w->held = 0;
}

void fy_ring_batch_end(struct fy_ring_writer *w)
{
    w->batching = 0;
    if (!w->held)
        return; /* nothing was committed */
    atomic_store_explicit(rec_word(w->data, w->held_off), w->held_word, memory_order_release);
    w->held = 0;
    ring_publish_tail(w);
}

void fy_ring_abort(struct fy_ring_writer *w) { w->claim_pos = UINT64_MAX; }

int fy_ring_peek(struct fy_ring_reader *r, struct fy_ring_rec *rec, int check_tail)
{
    for (;;) {
        uint64_t off = r->pos % r->cap;
        uint64_t word =
            atomic_load_explicit(rec_word((unsigned char *)r->data, off), memory_order_acquire);
        if ((uint32_t)(word >> 32) != ring_tag(r->pos)) {
            if (!check_tail)
                return 0;
            /* Not written yet, or garbage? The writer publishes tail
             * after the header, so tail beyond pos means garbage. */
            uint64_t t = atomic_load_explicit(&r->sh->tail, memory_order_acquire);
            if (t <= r->pos)
                return 0;
            word =
                atomic_load_explicit(rec_word((unsigned char *)r->data, off), memory_order_acquire);
            if ((uint32_t)(word >> 32) != ring_tag(r->pos))
                return FERRY_ECORRUPT;
        }
        uint32_t lf = (uint32_t)word;
        uint32_t len = lf & FY_RING_LEN_MASK;
        uint32_t flags = lf & ~FY_RING_LEN_MASK;
        uint64_t to_end = r->cap - off;
        if (flags & FY_RING_F_PAD) {
            /* a writer pads only to the end, never a whole lap from 0 */
            if (flags != FY_RING_F_PAD || (uint64_t)len + FY_RING_REC_HDR != to_end || off == 0)
                return FERRY_ECORRUPT;
            /* A pad needs no release ordering of its own: it is part of
             * the released prefix as soon as the next record is. */
            if (r->q_count == 0) {
                r->head += to_end; /* published with what follows, or on empty */
            } else {
                unsigned last = (unsigned)((r->q_first + r->q_count - 1) % FY_RING_QUEUE);
                r->q[last].end += to_end; /* released together with it */
            }
            r->pos += to_end;
            continue;
        }
        if ((uint64_t)len > fy_ring_max_record(r->cap) ||
            ALIGN8(FY_RING_REC_HDR + (uint64_t)len) > to_end ||
            (flags & FY_RING_F_CMD && flags & (FY_RING_F_MORE | FY_RING_F_CONT)) ||
            (flags & FY_RING_F_PACK && flags != FY_RING_F_PACK && flags != FY_RING_F_REF))
            return FERRY_ECORRUPT;
        rec->data = r->data + off + FY_RING_REC_HDR;
        rec->len = len;
        rec->flags = flags;
        rec->end = r->pos + ALIGN8(FY_RING_REC_HDR + (uint64_t)len);
        return 1;
    }
}

/* Publishes head (and the message count) to the writer. */
static void ring_publish(struct fy_ring_reader *r)
{
    r->published = r->head;
    r->published_msgs = r->consumed;
    atomic_store_explicit(&r->sh->consumed, r->consumed, memory_order_relaxed);
    atomic_store_explicit(&r->sh->head, r->head, memory_order_release);
}

/* Publishing head on every record would make the reader write a line the
 * writer may read, and (through the wake-up check) cost a fence per
 * message. So head is published once an eighth of the ring has been freed,
 * and whenever the reader finds the ring empty (fy_ring_flush): a writer
 * waiting for room then always gets it. */
static int ring_maybe_publish(struct fy_ring_reader *r)
{
    /* also every publish_msgs messages (half the HWM), so a writer held by
     * its message HWM does not wait for a whole eighth of the ring */
    if (r->eager ? r->head == r->published
                 : r->head - r->published < r->cap / 8 &&
                       r->consumed - r->published_msgs < r->publish_msgs)
        return 0;
    ring_publish(r);
    return 1;
}

int fy_ring_flush(struct fy_ring_reader *r)
{
    if (r->q_count > 0)
        r->flush_pending = 1; /* held records: publish again when released */
    if (r->head == r->published)
        return 0;
    ring_publish(r);
    return 1;
}

/* Moves head over the released prefix of the queue. */
static int ring_advance(struct fy_ring_reader *r)
{
    while (r->q_count > 0) {
        unsigned i = (unsigned)(r->q_first % FY_RING_QUEUE);
        if (!r->q[i].released)
            break;
        r->head = r->q[i].end;
        r->consumed += r->q[i].msgs;
        r->q_first++;
        r->q_count--;
    }
    if (r->q_count == 0) {
        r->head = r->pos; /* pads read after the last record */
        /* The reader found the ring empty while it still held records in
         * place: the writer may be waiting for exactly the room they hold,
         * and this reader may never receive again (it polls its fd, which
         * only the writer would signal). Now that all are released,
         * publish as the empty ring would have. */
        if (r->flush_pending) {
            r->flush_pending = 0;
            return fy_ring_flush(r);
        }
    }
    return ring_maybe_publish(r);
}

int64_t fy_ring_take(struct fy_ring_reader *r, const struct fy_ring_rec *rec, uint32_t inplace,
                     uint32_t msgs, int *moved)
{
    *moved = 0;
    /* Two entries stay free for copies, which may each need one. */
    if (inplace && (r->inplace >= FY_RING_INPLACE_MAX || r->q_count + 2 > FY_RING_QUEUE))
        return -1;
    r->pos = rec->end;
    if (!inplace && r->q_count == 0) {
        r->head = rec->end;
        r->consumed += msgs;
        *moved = ring_maybe_publish(r);
        return 0;
    }
    unsigned last = (unsigned)((r->q_first + r->q_count - 1) % FY_RING_QUEUE);
    if (!inplace && r->q[last].released) {
        r->q[last].end = rec->end; /* merge with the released tail entry */
        r->q[last].msgs += msgs;
        return 0;
    }
    /* A copy-take behind an outstanding in-place record needs an entry. */
    if (r->q_count >= FY_RING_QUEUE)
        return -2; /* full: nothing taken; the caller waits for releases */
    uint64_t seq = r->q_first + r->q_count;
    unsigned i = (unsigned)(seq % FY_RING_QUEUE);
    r->q[i].end = rec->end;
    r->q[i].msgs = msgs;
    r->q[i].holds = inplace;
    r->q[i].released = !inplace;
    r->q_count++;
    if (inplace)
        r->inplace++;
    return inplace ? (int64_t)seq : 0;
}

int fy_ring_can_take(const struct fy_ring_reader *r)
{
    if (r->q_count < FY_RING_QUEUE)
        return 1;
    unsigned last = (unsigned)((r->q_first + r->q_count - 1) % FY_RING_QUEUE);
    return r->q[last].released;
}

int fy_ring_release(struct fy_ring_reader *r, int64_t id)
{
    uint64_t seq = (uint64_t)id;
    if (seq < r->q_first || seq - r->q_first >= r->q_count)
        return 0;
    unsigned i = (unsigned)(seq % FY_RING_QUEUE);
    if (r->q[i].released || --r->q[i].holds > 0)
        return 0;
    r->q[i].released = 1;
    r->inplace--;
    return ring_advance(r);
}

uint64_t fy_ring_fill_bytes(const struct fy_ring_shared *sh)
{
    uint64_t t = atomic_load_explicit(&((struct fy_ring_shared *)sh)->tail, memory_order_relaxed);
    uint64_t h = atomic_load_explicit(&((struct fy_ring_shared *)sh)->head, memory_order_relaxed);
    return t >= h ? t - h : 0;
}
