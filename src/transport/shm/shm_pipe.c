/*
 * shm_pipe.c - the data path of shm://: a pipe is two rings (ring.h) in a
 * memfd shared by the two peers, plus the peer's wake block.
 *
 * Sending writes a single part as one record. A multipart message small
 * enough for one record is packed into one (FY_RING_F_PACK: a REQ's
 * delimiter and body, a ROUTER's id and reply cost what a single part
 * costs); otherwise each part is a record (FERRY_MORE parts carry
 * FY_RING_F_MORE) and a part larger than a record can hold is cut into
 * FY_RING_F_CONT records. A message that fits in the room free now is
 * written at once, whole, and published at once (a ring batch); a larger
 * one is streamed across several calls (tx_partial), and a sender that
 * gives up half-way writes an ABORT command so the reader drops the
 * incomplete message. The reader delivers parts that are whole records,
 * or inside a packed one, in place (zero-copy), empty parts as nothing
 * held, and assembles the others in ordinary memory, handing a message
 * over only when its last record is in: a message arrives whole or not at
 * all.
 */
#include "shm_int.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#define ALIGN8(x) (((x) + 7u) & ~(uint64_t)7u)

/* Ring bytes needed to write the records of len bytes starting at ring
 * position pos (pads at the wrap included); advances *pos. */
static uint64_t part_cost(const struct shm_pipe *sp, uint64_t len, uint64_t *pos)
{
    uint64_t cap = sp->w.cap, total = 0;
    do {
        uint64_t chunk = len > sp->max_rec ? sp->max_rec : len;
        uint64_t need = ALIGN8(FY_RING_REC_HDR + chunk);
        uint64_t to_end = cap - *pos % cap;
        uint64_t c = need <= to_end ? need : to_end + need;
        total += c;
        *pos += c;
        len -= chunk;
    } while (len > 0);
    return total;
}

/* 1 when the peer has closed its socket (gracefully). */
static int peer_closed(const struct shm_pipe *sp)
{
    const struct shm_conn_hdr *h = sp->map;
    return atomic_load_explicit(&((struct shm_conn_hdr *)h)->closed[!sp->side],
                                memory_order_relaxed) != 0;
}

/* Our bell, if we have one (the pool's first line: sock.h, bells). */
static _Atomic uint32_t *own_bell(struct shm_pipe *sp)
{
    return sp->pool.pool != NULL ? (_Atomic uint32_t *)(void *)sp->pool.pool->map : NULL;
}

static void shm_wake_peer(struct shm_pipe *sp)
{
    struct shm_conn_hdr *h = sp->map;
    if (fy_wake_peer(sp->base.sock, sp->peer_wake, sp->peer_efd, own_bell(sp),
                     &h->bell_wait[!sp->side]))
        sp->base.woke = 1;
}

/* Sleeps of ours include the peer's bell from now on (the core counts
 * them): the peer may ring it instead of waking us alone. */
static const _Atomic uint32_t *shm_bell(struct fy_pipe *p)
{
    struct shm_pipe *sp = (struct shm_pipe *)p;
    if (sp->rx_pool == NULL || sp->map == NULL || !fy_futex_waitv_works())
        return NULL;
    atomic_store_explicit(&((struct shm_conn_hdr *)sp->map)->bell_wait[sp->side], 1,
                          memory_order_relaxed);
    return (const _Atomic uint32_t *)(const void *)sp->rx_pool;
}

/* Records were published: the peer is woken now, at the end of the send
 * (one pipe a send: sock.h, tx_defer), or, for a FERRY_BATCH send, when
 * the socket flushes (shm_flush). */
static void published(struct shm_pipe *sp)
{
    ferry_socket *s = sp->base.sock;
    /* A thread of ours already asleep on this socket (a recv begun before
     * the batch) would give nothing owed: wake now then. */
    if (s && s->tx_batch && atomic_load_explicit(&s->wake->sleepers, memory_order_relaxed) == 0) {
        sp->wake_owed = 1;
        s->wake_owed = 1;
        return;
    }
    if (s && s->tx_defer && (s->wake_later == NULL || s->wake_later == &sp->base)) {
        sp->wake_owed = 1;
        s->wake_later = &sp->base;
        return;
    }
    if (sp->wake_owed)
        sp->wake_owed = 0;
    shm_wake_peer(sp);
}

/* The writer found no room (ring or HWM): remember to ask the reader for
 * a wake-up (shm_send announces it, then looks once more). */
static void want_room(struct shm_pipe *sp) { sp->no_room = 1; }

/* After the reader published head: wakes the writer if it asked. The
 * fence orders the head store before the flag load; the writer orders its
 * flag store before its last look at head the same way (shm_send). The
 * flag stays set until the writer's send succeeds, so every publication
 * while it waits wakes it. */
static void room_published(struct shm_pipe *sp)
{
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&sp->r.sh->want_room, memory_order_relaxed))
        fy_wake(sp->peer_wake, sp->peer_efd); /* its pollable fd too: a poller's POLLOUT */
}

/* Writes whatever fits of one record chunk; returns 1 written, 0 no room,
 * < 0 corrupt. */
static int put_record(struct shm_pipe *sp, const void *data, uint64_t len, uint32_t flags)
{
    int err;
    void *dst = fy_ring_claim(&sp->w, len, &err);
    if (dst == NULL)
        return err ? err : 0;
    if (len)
        memcpy(dst, data, len);
    fy_ring_commit(&sp->w, flags);
    return 1;
}

/* Ring bytes of m packed in one record (put_pack), or 0 when it is not
 * packed: one part, too many, or more than one record holds. */
static uint64_t pack_len(const struct shm_pipe *sp, const struct fy_txmsg *m)
{
    if (m->nparts < 2 || m->nparts > SHM_PACK_PARTS)
        return 0;
    uint64_t len = 4 + 4 * (uint64_t)m->nparts;
    for (size_t i = 0; i < m->nparts && len <= sp->max_rec; i++)
        len += m->parts[i].len;
    return len <= sp->max_rec ? len : 0;
}

uint64_t shm_pack_bytes(const struct fy_txmsg *m)
{
    uint64_t len = 4 + 4 * (uint64_t)m->nparts;
    for (size_t i = 0; i < m->nparts; i++)
        len += m->parts[i].len;
    return len;
}

void shm_pack_write(unsigned char *dst, const struct fy_txmsg *m)
{
    uint32_t n = (uint32_t)m->nparts;
    memcpy(dst, &n, 4);
    unsigned char *data = dst + 4 + 4 * (size_t)n;
    for (size_t i = 0; i < m->nparts; i++) {
        uint32_t plen = (uint32_t)m->parts[i].len;
        memcpy(dst + 4 + 4 * i, &plen, 4);
        if (plen)
            memcpy(data, m->parts[i].data, plen);
        data += plen;
    }
}

/* Writes a small multipart message as one packed record: the reader takes
 * it in one step, as it takes a single part, instead of a record per
 * part. 1, 0 no room, < 0 corrupt. */
static int put_pack(struct shm_pipe *sp, const struct fy_txmsg *m, uint64_t len)
{
    int err;
    unsigned char *dst = fy_ring_claim(&sp->w, len, &err);
    if (dst == NULL)
        return err ? err : 0;
    shm_pack_write(dst, m);
    fy_ring_commit(&sp->w, FY_RING_F_PACK);
    return 1;
}

static int shm_hwm_full(struct shm_pipe *sp);

/* Sends m as a REF to where the broadcast pool holds it (pool.h). 1, 0
 * no room in the ring (or over the HWM), SHM_COPY when it must be copied
 * instead, < 0 the peer broke the ring. */
#define SHM_COPY 2
static int put_ref(struct shm_pipe *sp, const struct fy_txmsg *m)
{
    if (shm_hwm_full(sp)) {
        want_room(sp);
        return 0;
    }
    struct shm_ref ref;
    int rc = shm_pool_place(&sp->pool, m, &ref);
    if (rc < 0)
        return fy_err(rc, "shm pipe %d (peer pid %d): the peer wrote an impossible ring head",
                      sp->base.id, sp->base.peer_pid);
    if (rc == 0)
        return SHM_COPY;
    rc = put_record(sp, &ref, sizeof ref, FY_RING_F_REF);
    shm_pool_placed(&sp->pool, rc == 1, sp->w.tail);
    if (rc == 0)
        want_room(sp);
    return rc;
}

/* Continues writing m from sp->tx_part/tx_off. 1 done, 0 room ran out. */
static int shm_write_from(struct shm_pipe *sp, const struct fy_txmsg *m)
{
    while (sp->tx_part < m->nparts) {
        const struct fy_part *pt = &m->parts[sp->tx_part];
        uint64_t left = pt->len - sp->tx_off;
        uint64_t chunk = left > sp->max_rec ? sp->max_rec : left;
        uint32_t flags = 0;
        if (chunk < left)
            flags |= FY_RING_F_CONT;
        else if (sp->tx_part + 1 < m->nparts)
            flags |= FY_RING_F_MORE;
        int rc = put_record(sp, (const char *)pt->data + sp->tx_off, chunk, flags);
        if (rc <= 0)
            return rc;
        sp->tx_off += chunk;
        if (sp->tx_off == pt->len) {
            sp->tx_part++;
            sp->tx_off = 0;
        }
    }
    return 1;
}

/* Pending ABORT from an earlier half-written message goes first. */
static int shm_flush_abort(struct shm_pipe *sp)
{
    if (!sp->abort_pending)
        return 1;
    unsigned char cmd = SHM_CMD_ABORT;
    int rc = put_record(sp, &cmd, 1, FY_RING_F_CMD);
    if (rc == 1)
        sp->abort_pending = 0;
    return rc;
}

/* The HWM in messages: checked against a cached copy of the reader's
 * count, refreshed only when the cache says full (as the ring's head). */
static int shm_hwm_full(struct shm_pipe *sp)
{
    if (sp->hwm == 0 || sp->w.produced - sp->consumed_cache < sp->hwm)
        return 0;
    uint64_t c = atomic_load_explicit(&sp->w.sh->consumed, memory_order_relaxed);
    if (c > sp->w.produced) /* impossible: a scribbled count blocks nothing */
        c = sp->w.produced;
    sp->consumed_cache = c > sp->consumed_cache ? c : sp->consumed_cache;
    return sp->w.produced - sp->consumed_cache >= sp->hwm;
}

static int shm_send_try(struct fy_pipe *p, const struct fy_txmsg *m);
static int shm_send_cmd_try(struct fy_pipe *p, int cmd, const void *data, size_t len);

/* Runs a write attempt (a message, or a command when m is NULL); when it
 * finds no room and the caller is about to sleep (its socket counts a
 * sleeper: the core's last check before the futex wait), announces
 * want_room, fences, and tries once more: a reader that published room
 * before it could see the flag is seen here. A spinning caller just tries
 * again later and costs the reader nothing. */
static int shm_write(struct fy_pipe *p, const struct fy_txmsg *m, int cmd, const void *data,
                     size_t len)
{
    struct shm_pipe *sp = (struct shm_pipe *)p;
    if (sp->no_room)
        sp->no_room = 0;
    int rc = m ? shm_send_try(p, m) : shm_send_cmd_try(p, cmd, data, len);
    if (rc == 0 && sp->no_room && p->sock &&
        atomic_load_explicit(&p->sock->wake->sleepers, memory_order_relaxed) != 0) {
        atomic_store_explicit(&sp->w.sh->want_room, 1, memory_order_relaxed);
        atomic_thread_fence(memory_order_seq_cst);
        sp->asked = 1;
        sp->no_room = 0;
        rc = m ? shm_send_try(p, m) : shm_send_cmd_try(p, cmd, data, len);
    }
    if (rc == 1 && sp->asked) {
        atomic_store_explicit(&sp->w.sh->want_room, 0, memory_order_relaxed);
        sp->asked = 0;
    }
    return rc;
}

static int shm_send(struct fy_pipe *p, const struct fy_txmsg *m)
{
    return shm_write(p, m, 0, NULL, 0);
}

/* Writes what it can of m: 1 all of it, 0 no room (the rest waits), < 0
 * broken. *wrote: records were committed. */
static int shm_send_records(struct shm_pipe *sp, const struct fy_txmsg *m, int *wrote)
{
    struct fy_pipe *p = &sp->base;
    int rc = shm_flush_abort(sp);
    if (rc <= 0) {
        if (rc == 0)
            want_room(sp);
        return rc;
    }
    if (m->fan != NULL && sp->pool.pool != NULL && !p->tx_partial && m->total >= SHM_POOL_MIN) {
        rc = put_ref(sp, m);
        *wrote = rc == 1;
        if (rc != SHM_COPY)
            return rc;
    }
    uint64_t packed = p->tx_partial ? 0 : pack_len(sp, m);
    if ((!p->tx_partial && m->nparts == 1 && m->parts[0].len <= sp->max_rec) || packed) {
        /* the common case: one record, claimed against the cached head */
        if (shm_hwm_full(sp)) {
            want_room(sp);
            return 0;
        }
        rc =
            packed ? put_pack(sp, m, packed) : put_record(sp, m->parts[0].data, m->parts[0].len, 0);
        *wrote = rc == 1;
        if (rc == 0)
            want_room(sp);
        else if (rc < 0)
            fy_err(rc, "shm pipe %d (peer pid %d): ring head", p->id, p->peer_pid);
        return rc;
    }
    if (!p->tx_partial) {
        if (shm_hwm_full(sp)) {
            want_room(sp);
            return 0;
        }
        uint64_t cost = 0, pos = sp->w.tail; /* (a pending ABORT went first, above) */
        for (size_t i = 0; i < m->nparts; i++)
            cost += part_cost(sp, m->parts[i].len, &pos);
        /* Fits now: write it whole. Larger than the ring: stream it. */
        if (cost <= sp->w.cap || m->whole) {
            int fits = fy_ring_fits(&sp->w, cost);
            if (fits < 0)
                return fy_err(fits, "shm pipe %d (peer pid %d): ring head", p->id, p->peer_pid);
            if (!fits) {
                if (!m->whole)
                    want_room(sp);
                return 0;
            }
        }
        sp->tx_part = 0;
        sp->tx_off = 0;
    }
    /* several records: the reader sees them together (a ring batch) */
    fy_ring_batch_begin(&sp->w);
    rc = shm_write_from(sp, m);
    fy_ring_batch_end(&sp->w);
    if (rc < 0)
        return rc;
    if (rc == 0)
        want_room(sp);
    p->tx_partial = rc == 0;
    if (rc == 0 && sp->tx_part == 0 && sp->tx_off == 0)
        p->tx_partial = 0; /* nothing written yet: may still go elsewhere */
    *wrote = sp->tx_part > 0 || sp->tx_off > 0 || rc == 1;
    return rc;
}

/* The reader is woken only once what this call wrote is visible. */
static int shm_send_try(struct fy_pipe *p, const struct fy_txmsg *m)
{
    struct shm_pipe *sp = (struct shm_pipe *)p;
    if (p->dead || peer_closed(sp))
        return FERRY_ECONNRESET;
    if (sp->w.claim_pos != UINT64_MAX)
        return 0; /* a zero-copy allocation is outstanding on this ring */
    if (m->total > sp->peer_maxmsg)
        return FERRY_EMSGSIZE;
    int wrote = 0;
    int rc = shm_send_records(sp, m, &wrote);
    if (wrote)
        published(sp);
    return rc;
}

static void shm_describe(struct fy_pipe *p, const char **transport, char *addr, size_t len)
{
    FY_UNUSED(p);
    *transport = "shm";
    if (len)
        addr[0] = '\0'; /* the peer is its pid, from the kernel */
}

/* The peer's counts are its word: clamped to what our own side allows. */
static void shm_depth(struct fy_pipe *p, struct fy_depth *d)
{
    struct shm_pipe *sp = (struct shm_pipe *)p;
    uint64_t consumed = atomic_load_explicit(&sp->w.sh->consumed, memory_order_relaxed);
    uint64_t head = atomic_load_explicit(&sp->w.sh->head, memory_order_relaxed);
    uint64_t produced = atomic_load_explicit(&sp->r.sh->produced, memory_order_relaxed);
    uint64_t most = sp->w.cap / 8; /* a record is 8 bytes at least */
    d->out_msgs = consumed <= sp->w.produced ? sp->w.produced - consumed : 0;
    d->out_msgs = d->out_msgs < most ? d->out_msgs : most;
    d->out_bytes = head <= sp->w.tail && sp->w.tail - head <= sp->w.cap ? sp->w.tail - head : 0;
    d->in_msgs = produced >= sp->r.consumed ? produced - sp->r.consumed : 0;
    d->in_msgs = d->in_msgs < sp->r.cap / 8 ? d->in_msgs : sp->r.cap / 8;
    d->ring_size = sp->w.cap;
}

static void shm_flush(struct fy_pipe *p)
{
    struct shm_pipe *sp = (struct shm_pipe *)p;
    if (sp->wake_owed) {
        sp->wake_owed = 0;
        shm_wake_peer(sp);
    }
}

static void shm_abort_tx(struct fy_pipe *p)
{
    struct shm_pipe *sp = (struct shm_pipe *)p;
    p->tx_partial = 0;
    sp->abort_pending = 1;
    if (shm_flush_abort(sp) == 1)
        shm_wake_peer(sp);
}

static int shm_writable(struct fy_pipe *p, size_t len)
{
    struct shm_pipe *sp = (struct shm_pipe *)p;
    /* An ABORT still owed (a streamed message given up while the ring was
     * full) goes first, now if it fits: a caller that only asks (a poller)
     * would otherwise never see room, since only a send would write it. */
    if (sp->abort_pending && !p->dead && shm_flush_abort(sp) == 1)
        shm_wake_peer(sp);
    if (p->dead || p->tx_partial || sp->abort_pending || sp->w.claim_pos != UINT64_MAX ||
        peer_closed(sp))
        return 0;
    if (len > sp->max_rec || len > sp->peer_maxmsg || shm_hwm_full(sp))
        return 0;
    /* against the head last read, read again only when it looks full: a
     * zero-copy claim asks this for every message, and the reader's line
     * is touched only then, as on the copying path */
    uint64_t pos = sp->w.tail;
    return fy_ring_fits(&sp->w, part_cost(sp, len, &pos)) == 1;
}

/* A poller waits for room: want_room makes the reader wake us (and write
 * our pollable fd, which the poller has armed) at its next publication;
 * the flag is cleared by our next successful send, as a sleeper's is. */
static void shm_arm_room(struct fy_pipe *p)
{
    struct shm_pipe *sp = (struct shm_pipe *)p;
    atomic_store_explicit(&sp->w.sh->want_room, 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_seq_cst); /* before the caller's last look at head */
    sp->asked = 1;
}

static void *shm_claim(struct fy_pipe *p, size_t size)
{
    struct shm_pipe *sp = (struct shm_pipe *)p;
    if (!shm_writable(p, size))
        return NULL;
    int err;
    return fy_ring_claim(&sp->w, size, &err);
}

static int shm_commit(struct fy_pipe *p, size_t size)
{
    struct shm_pipe *sp = (struct shm_pipe *)p;
    if (p->dead) {
        fy_ring_abort(&sp->w);
        return FERRY_ECONNRESET;
    }
    sp->w.claim_size = size;
    fy_ring_commit(&sp->w, 0);
    published(sp);
    return 1;
}

static void shm_unclaim(struct fy_pipe *p) { fy_ring_abort(&((struct shm_pipe *)p)->w); }

/* --- receiving ------------------------------------------------------------- */

static void rx_partial_drop(struct shm_pipe *sp)
{
    fy_rxmsg_clear(&sp->partial);
    free(sp->cur);
    sp->cur = NULL;
    sp->cur_len = sp->cur_cap = 0;
    sp->partial_total = 0;
}

/* The message being received went past our FERRY_OPT_MAXMSGSIZE. */
static int rx_too_big(const struct shm_pipe *sp)
{
    return fy_err(FERRY_EMSGSIZE, "shm pipe %d (peer pid %d): message over FERRY_OPT_MAXMSGSIZE",
                  sp->base.id, sp->base.peer_pid);
}

static ferry_msg *copied_msg(struct shm_pipe *sp, const void *data, size_t len);

/* A part that comes in pieces (CONT records: larger than a record) may
 * pass through the whole ring, which the message's earlier parts, held in
 * place, keep from turning over: the writer would wait for room that
 * never comes. They are copied out before the first piece is taken. */
static int rx_unpin_partial(struct shm_pipe *sp)
{
    for (size_t i = 0; i < sp->partial.nparts; i++) {
        ferry_msg *m = sp->partial.parts[i];
        if (m->kind != FY_MSG_INPLACE && m->kind != FY_MSG_BRIEF)
            continue;
        ferry_msg *c = copied_msg(sp, m->data, m->size);
        if (c == NULL)
            return FERRY_ENOMEM;
        sp->partial.parts[i] = c;
        fy_msg_free_locked(m);
    }
    return 0;
}

/* Appends a record to the part being assembled. Parts are counted, empty
 * ones included, against FY_MAX_PARTS: an 8-byte record carrying MORE
 * costs us a part's memory and time. A CONT record is always a full one
 * (the writer cuts a part at the largest record), so a part cannot be
 * spread over empty records either. */
static int rx_append(struct shm_pipe *sp, const struct fy_ring_rec *rec)
{
    if ((rec->flags & FY_RING_F_CONT) && rec->len != sp->max_rec)
        return fy_err(FERRY_ECORRUPT, "shm pipe %d (peer pid %d): a short CONT record", sp->base.id,
                      sp->base.peer_pid);
    if (sp->cur_len == 0 && sp->partial.nparts > 0) {
        int rc = rx_unpin_partial(sp);
        if (rc != 0)
            return rc;
    }
    if (!(rec->flags & FY_RING_F_CONT) && sp->partial.nparts >= FY_MAX_PARTS)
        return fy_err(FERRY_EMSGSIZE, "shm pipe %d (peer pid %d): more than %d parts", sp->base.id,
                      sp->base.peer_pid, FY_MAX_PARTS);
    sp->partial_total += rec->len;
    if (sp->partial_total > sp->own_maxmsg)
        return rx_too_big(sp);
    if (sp->cur_len + rec->len > sp->cur_cap) {
        size_t cap = sp->cur_cap ? sp->cur_cap : 256;
        while (cap < sp->cur_len + rec->len)
            cap *= 2;
        unsigned char *b = realloc(sp->cur, cap);
        if (b == NULL)
            return FERRY_ENOMEM;
        sp->cur = b;
        sp->cur_cap = cap;
    }
    if (rec->len > 0) /* an empty part may come before any buffer exists */
        memcpy(sp->cur + sp->cur_len, rec->data, rec->len);
    sp->cur_len += rec->len;
    if (rec->flags & FY_RING_F_CONT)
        return 0;
    ferry_msg *part = fy_msg_heap(sp->cur_len);
    if (part == NULL)
        return FERRY_ENOMEM;
    if (sp->cur_len > 0)
        memcpy(part->data, sp->cur, sp->cur_len);
    sp->cur_len = 0;
    int rc = fy_rxmsg_push(&sp->partial, part);
    if (rc != 0)
        free(part);
    return rc;
}

/* What a new part may bring: a part more (FY_MAX_PARTS, empty ones
 * counted), len bytes more (MAXMSGSIZE). 0 or < 0. */
static int rx_part_check(struct shm_pipe *sp, size_t len)
{
    if (sp->partial.nparts >= FY_MAX_PARTS)
        return fy_err(FERRY_EMSGSIZE, "shm pipe %d (peer pid %d): more than %d parts", sp->base.id,
                      sp->base.peer_pid, FY_MAX_PARTS);
    sp->partial_total += len;
    return sp->partial_total > sp->own_maxmsg ? rx_too_big(sp) : 0;
}

/* A message struct for len bytes at data, in place in the ring record
 * whose token is tok (the caller holds the record for it). brief: for a
 * receive that frees it before mtx goes (struct fy_rxmsg), so without the
 * references on the pipe and the socket. */
static ferry_msg *inplace_msg(struct shm_pipe *sp, const void *data, size_t len, int64_t tok,
                              int brief)
{
    struct fy_pipe *p = &sp->base;
    ferry_msg *msg = fy_msg_struct(p->sock);
    if (msg == NULL)
        return NULL;
    msg->kind = FY_MSG_BRIEF;
    msg->data = (void *)data;
    msg->size = len;
    msg->pipe = p;
    msg->token = tok;
    msg->sock = p->sock;
    if (!brief)
        fy_msg_pin(msg);
    return msg;
}

/* A copy of len bytes at data, or an empty part (which holds nothing). */
static ferry_msg *copied_msg(struct shm_pipe *sp, const void *data, size_t len)
{
    if (len == 0)
        return fy_msg_empty(sp->base.sock);
    ferry_msg *msg = fy_msg_heap(len);
    if (msg != NULL)
        memcpy(msg->data, data, len);
    return msg;
}

/* Takes a record that is a whole part: in place (the ring keeps the bytes
 * until the message is freed) while the ring has room for another
 * outstanding record, else copied. last: it ends a message. */
static int rx_take_whole(struct shm_pipe *sp, const struct fy_ring_rec *rec, int last, int brief,
                         ferry_msg **out, int *moved)
{
    if (rec->len > sp->own_maxmsg)
        return rx_too_big(sp);
    ferry_msg *msg = NULL;
    int64_t tok = rec->len == 0 ? -1 : fy_ring_take(&sp->r, rec, 1, (uint32_t)last, moved);
    if (tok >= 0) {
        if ((msg = inplace_msg(sp, rec->data, rec->len, tok, brief)) == NULL) {
            fy_ring_release(&sp->r, tok);
            return FERRY_ENOMEM;
        }
    } else { /* empty, or too many outstanding in place: copy */
        if ((msg = copied_msg(sp, rec->data, rec->len)) == NULL)
            return FERRY_ENOMEM;
        fy_ring_take(&sp->r, rec, 0, (uint32_t)last, moved);
    }
    *out = msg;
    return 0;
}

/* A packed message's table (put_pack), copied out of the ring before it
 * is checked: the peer may rewrite shared memory at any moment, so the
 * count and the lengths are read from it once, and only the copies are
 * trusted. A writer packs at most SHM_PACK_PARTS parts; a reader takes no
 * more (one record must not bring more parts than the receive budget
 * means to handle under the mutex). */
struct pack_table {
    uint32_t n;     /* parts */
    uint32_t held;  /* parts that are not empty (each holds the record) */
    uint64_t bytes; /* the table's own bytes: where the first part starts */
    uint32_t lens[SHM_PACK_PARTS];
};

/* Reads and checks the table: 0, or < 0 (the connection is then dropped). */
static int pack_table_read(struct shm_pipe *sp, const struct fy_ring_rec *rec, struct pack_table *t)
{
    const unsigned char *d = rec->data;
    if (sp->partial.nparts > 0 || sp->cur_len > 0 || rec->len < 4)
        return fy_err(FERRY_ECORRUPT, "shm pipe %d (peer pid %d): a packed record inside a message",
                      sp->base.id, sp->base.peer_pid);
    memcpy(&t->n, d, 4);
    t->bytes = 4 + 4 * (uint64_t)t->n;
    if (t->n == 0 || t->n > SHM_PACK_PARTS || t->bytes > rec->len)
        return fy_err(FERRY_ECORRUPT, "shm pipe %d (peer pid %d): a packed record of %u parts",
                      sp->base.id, sp->base.peer_pid, t->n);
    memcpy(t->lens, d + 4, 4 * (size_t)t->n);
    uint64_t sum = 0;
    t->held = 0;
    for (uint32_t i = 0; i < t->n; i++) {
        sum += t->lens[i];
        t->held += t->lens[i] > 0;
    }
    if (sum != rec->len - t->bytes)
        return fy_err(FERRY_ECORRUPT,
                      "shm pipe %d (peer pid %d): a packed record whose parts do not fill it",
                      sp->base.id, sp->base.peer_pid);
    return sum > sp->own_maxmsg ? rx_too_big(sp) : 0;
}

/* Delivers a packed message's parts: in place, all sharing the record
 * (it is released when the last of them is freed), or copied when the
 * ring has too many in-place records out. Empty parts hold nothing. */
static int rx_take_pack(struct shm_pipe *sp, const struct fy_ring_rec *rec, struct fy_rxmsg *m,
                        int *moved)
{
    struct pack_table t;
    int rc = pack_table_read(sp, rec, &t);
    if (rc != 0)
        return rc;
    const unsigned char *data = (const unsigned char *)rec->data + t.bytes;
    /* one hold per part in place, and ours while building */
    int64_t tok = fy_ring_take(&sp->r, rec, t.held + 1, 1, moved);
    int brief = m->brief;
    memset(m, 0, sizeof *m);
    m->brief = brief;
    uint32_t i = 0; /* parts made: each has its hold (or has given it back) */
    for (; i < t.n; i++) {
        uint32_t len = t.lens[i];
        ferry_msg *f = tok >= 0 && len > 0 ? inplace_msg(sp, data, len, tok, brief)
                                           : copied_msg(sp, data, len);
        if (f == NULL) {
            rc = FERRY_ENOMEM;
            break;
        }
        if (fy_rxmsg_push(m, f) != 0) {
            fy_msg_free_locked(f);
            rc = FERRY_ENOMEM;
            i++;
            break;
        }
        data += len;
    }
    if (tok >= 0) {
        /* the holds of parts not made (after an error), then ours */
        for (uint32_t k = i; k < t.n; k++)
            if (t.lens[k] > 0)
                fy_ring_release(&sp->r, tok);
        *moved |= fy_ring_release(&sp->r, tok);
    } else {
        fy_ring_take(&sp->r, rec, 0, 1, moved);
    }
    if (rc != 0)
        fy_rxmsg_clear(m);
    return rc;
}

/* A REF record: the message lies in the peer's broadcast pool, which we
 * map read-only. It is delivered as a record in place would be (its parts
 * point into the pool; the REF record is held until they are freed, and
 * moving head past it gives the chunk back), or copied out when too many
 * are held. The reference is copied out of the ring and checked against
 * our mapping; the pool's bytes are the peer's as a record's are. */
static int rx_take_ref(struct shm_pipe *sp, const struct fy_ring_rec *rec, struct fy_rxmsg *m,
                       int *moved)
{
    struct shm_ref ref;
    if (rec->len != sizeof ref || sp->rx_pool == NULL || sp->partial.nparts > 0 || sp->cur_len > 0)
        return fy_err(FERRY_ECORRUPT, "shm pipe %d (peer pid %d): a pool reference %s", sp->base.id,
                      sp->base.peer_pid, sp->rx_pool == NULL ? "without a pool" : "out of place");
    memcpy(&ref, rec->data, sizeof ref);
    if (ref.off < SHM_POOL_BELL || ref.off > sp->rx_pool_len ||
        ref.len > sp->rx_pool_len - ref.off || ref.len == 0 || ref.parts > SHM_PACK_PARTS)
        return fy_err(FERRY_ECORRUPT,
                      "shm pipe %d (peer pid %d): a pool reference outside the pool (%llu bytes "
                      "at %llu)",
                      sp->base.id, sp->base.peer_pid, (unsigned long long)ref.len,
                      (unsigned long long)ref.off);
    struct fy_ring_rec in = {.data = sp->rx_pool + ref.off,
                             .len = (uint32_t)ref.len,
                             .flags = ref.parts ? FY_RING_F_PACK : 0,
                             .end = rec->end};
    if (ref.parts)
        return rx_take_pack(sp, &in, m, moved);
    ferry_msg *msg = NULL;
    int rc = rx_take_whole(sp, &in, 1, m->brief, &msg, moved);
    if (rc == 0)
        fy_rxmsg_one(m, msg);
    return rc;
}

static void rx_command(struct shm_pipe *sp, const struct fy_ring_rec *rec)
{
    const unsigned char *d = rec->data;
    if (rec->len < 1)
        return;
    if (d[0] == SHM_CMD_ABORT) {
        rx_partial_drop(sp);
        return;
    }
    ferry_socket *s = sp->base.sock;
    if ((d[0] == SHM_CMD_SUB || d[0] == SHM_CMD_UNSUB) && s && s->proto->cmd)
        s->proto->cmd(s, &sp->base, d[0] == SHM_CMD_SUB, d + 1, rec->len - 1u);
}

/* Records one recv call handles at most. The peer decides how many
 * records are waiting, and every one runs under the socket mutex: past the
 * budget the call returns "not now" and wakes its own socket, so the
 * waiting loop runs (timeouts hold, other pipes and threads get the lock)
 * and comes straight back. */
#define SHM_RX_BUDGET 256

static int shm_recv(struct fy_pipe *p, struct fy_rxmsg *m, int check)
{
    struct shm_pipe *sp = (struct shm_pipe *)p;
    struct fy_ring_rec rec;
    int moved_any = 0, rc, budget = SHM_RX_BUDGET;
    /* a socket that does not receive (PUB) takes only commands; data from
     * the peer is a protocol violation and is skipped, never assembled */
    int takes_data = p->sock == NULL || p->sock->proto->can_recv;
    /* A busy socket never sleeps, so "nothing here" is also confirmed
     * against the writer's tail now and then: garbage cannot hide behind
     * a mismatched tag for long. */
    if (!check && (++sp->empty_polls & 1023) == 0)
        check = 1;
    for (;;) {
        if (!fy_ring_can_take(&sp->r)) {
            rc = 0; /* the user holds many in-place messages: free some */
            break;
        }
        if (budget-- == 0) {
            rc = 0;
            if (p->sock != NULL)
                fy_sock_signal(p->sock);
            break;
        }
        rc = fy_ring_peek(&sp->r, &rec, check);
        if (rc < 0)
            fy_err(rc, "shm pipe %d (peer pid %d): ring", p->id, p->peer_pid);
        if (rc <= 0)
            break;
        sp->empty_polls = 0;
        int moved = 0;
        if ((rec.flags & FY_RING_F_CMD) || !takes_data) {
            if (rec.flags & FY_RING_F_CMD)
                rx_command(sp, &rec);
            fy_ring_take(&sp->r, &rec, 0, (uint32_t)fy_ring_ends_msg(rec.flags), &moved);
            moved_any |= moved;
            continue;
        }
        if (rec.flags & FY_RING_F_PACK) { /* packed, or a REF (PACK|CONT) */
            rc = rec.flags & FY_RING_F_CONT ? rx_take_ref(sp, &rec, m, &moved)
                                            : rx_take_pack(sp, &rec, m, &moved);
            if (rc < 0)
                break;
            moved_any |= moved;
            rc = 1;
            break;
        }
        int last = !(rec.flags & (FY_RING_F_MORE | FY_RING_F_CONT));
        int whole = !(rec.flags & FY_RING_F_CONT) && sp->cur_len == 0; /* a part in one record */
        if (whole && last && sp->partial.nparts == 0) {                /* a single-part message */
            ferry_msg *msg = NULL;
            rc = rx_take_whole(sp, &rec, 1, m->brief, &msg, &moved);
            if (rc < 0)
                break;
            moved_any |= moved;
            fy_rxmsg_one(m, msg);
            rc = 1;
            break;
        }
        if (whole) { /* a part of a multipart message, in place as well */
            ferry_msg *msg = NULL;
            rc = rx_part_check(sp, rec.len);
            if (rc == 0)
                rc = rx_take_whole(sp, &rec, last, 0, &msg, &moved);
            if (rc == 0 && (rc = fy_rxmsg_push(&sp->partial, msg)) != 0)
                fy_msg_free_locked(msg); /* taken: its bytes are gone from the ring either way */
        } else {
            rc = rx_append(sp, &rec);
            if (rc == 0)
                fy_ring_take(&sp->r, &rec, 0, last, &moved);
        }
        if (rc < 0)
            break;
        moved_any |= moved;
        if (last) {
            fy_rxmsg_move(m, &sp->partial);
            sp->partial_total = 0;
            rc = 1;
            break;
        }
    }
    if (rc == 0 && fy_ring_flush(&sp->r))
        moved_any = 1; /* empty: let the writer see all the room */
    if (moved_any)
        room_published(sp); /* wakes the writer if it waits for room */
    if (rc < 0) {
        /* the others said what was wrong where they found it */
        if (rc == FERRY_ENOMEM)
            fy_err(rc, "shm pipe %d (peer pid %d): receiving a message", p->id, p->peer_pid);
        sp->errors++;
        return rc;
    }
    if (rc == 0 && p->dead) {
        /* The peer is gone and everything it committed has been taken;
         * an incomplete message it left is dropped. */
        if (check && fy_ring_peek(&sp->r, &rec, 1) == 0) {
            rx_partial_drop(sp);
            return FERRY_ECONNRESET;
        }
    }
    return rc;
}

/* A record at the reader's position (a pad counts: peek looks past it),
 * or the peer gone (recv then reports it). */
static int shm_readable(struct fy_pipe *p)
{
    struct shm_pipe *sp = (struct shm_pipe *)p;
    /* every 1024th empty look is recv's own, which checks against tail
     * (garbage cannot hide behind a tag that never matches) */
    if (p->dead || (sp->empty_polls & 1023) == 1023 || !fy_ring_idle(&sp->r))
        return 1;
    sp->empty_polls++;
    return 0;
}

static const _Atomic uint64_t *shm_watch(struct fy_pipe *p)
{
    return fy_ring_watch(&((struct shm_pipe *)p)->r);
}

static void shm_release(struct fy_pipe *p, int64_t token)
{
    struct shm_pipe *sp = (struct shm_pipe *)p;
    if (fy_ring_release(&sp->r, token) && !p->dead)
        room_published(sp);
}

static int shm_send_cmd(struct fy_pipe *p, int cmd, const void *data, size_t len)
{
    return shm_write(p, NULL, cmd, data, len);
}

static int shm_send_cmd_try(struct fy_pipe *p, int cmd, const void *data, size_t len)
{
    struct shm_pipe *sp = (struct shm_pipe *)p;
    if (p->dead)
        return FERRY_ECONNRESET;
    if (len + 1 > sp->max_rec)
        return FERRY_EMSGSIZE;
    if (sp->w.claim_pos != UINT64_MAX || shm_flush_abort(sp) != 1) {
        want_room(sp);
        return 0;
    }
    int err;
    unsigned char *dst = fy_ring_claim(&sp->w, len + 1, &err);
    if (dst == NULL) {
        if (err == 0)
            want_room(sp);
        return err ? err : 0;
    }
    dst[0] = cmd ? SHM_CMD_SUB : SHM_CMD_UNSUB;
    if (len)
        memcpy(dst + 1, data, len);
    fy_ring_commit(&sp->w, FY_RING_F_CMD);
    shm_wake_peer(sp);
    return 1;
}

static void shm_close(struct fy_pipe *p)
{
    struct shm_pipe *sp = (struct shm_pipe *)p;
    if (sp->map != NULL) /* our sleeps no longer hear its bell (fy_sock_remove_pipe) */
        atomic_store_explicit(&((struct shm_conn_hdr *)sp->map)->bell_wait[sp->side], 0,
                              memory_order_relaxed);
    /* A message still arriving can no longer complete. Its parts may be
     * in place, each holding a reference on this pipe: dropped now (mtx is
     * held, as their release needs), not at destroy, which they would
     * keep from ever coming. */
    rx_partial_drop(sp);
    shm_pipe_hangup(sp);
}

void shm_pipe_hangup(struct shm_pipe *sp)
{
    /* Messages read in place out of the peer's broadcast pool stay valid
     * until freed, after the close too; the peer reuses their chunks once
     * it thinks us gone. So with a pool the peer learns of it when the
     * last of them is freed (shm_destroy closes the socket); our own
     * watch sees the read side shut now and lets its reference go. */
    if (sp->rx_pool != NULL) {
        if (sp->ctl_fd >= 0)
            shutdown(sp->ctl_fd, SHUT_RD);
        return;
    }
    struct shm_conn_hdr *h = sp->map;
    if (h != NULL)
        atomic_store_explicit(&h->closed[sp->side], 1, memory_order_relaxed);
    /* The peer sees EOF now, even while in-place messages keep the
     * mapping alive here. */
    if (sp->ctl_fd >= 0)
        shutdown(sp->ctl_fd, SHUT_RDWR);
}

static void shm_destroy(struct fy_pipe *p)
{
    struct shm_pipe *sp = (struct shm_pipe *)p;
    fy_pipe_fini(p);
    /* Normally empty (shm_close dropped it under the mutex). Without the
     * mutex, and maybe after the socket: freed as the user frees, which
     * recycles nothing into the socket; no part here is in place, since
     * each of those holds a reference on this pipe. */
    for (size_t i = sp->partial.next; i < sp->partial.nparts; i++)
        ferry_msg_free(sp->partial.parts[i]);
    sp->partial.nparts = 0;
    rx_partial_drop(sp);
    shm_pool_unlink(&sp->pool);
    if (sp->rx_pool) { /* what shm_pipe_hangup left for now: nothing is read in place any more */
        if (sp->map != NULL)
            atomic_store_explicit(&((struct shm_conn_hdr *)sp->map)->closed[sp->side], 1,
                                  memory_order_relaxed);
        munmap((void *)sp->rx_pool, sp->rx_pool_len);
    }
    if (sp->map)
        munmap(sp->map, sp->map_len);
    if (sp->peer_wake)
        munmap(sp->peer_wake, FY_WAKE_SIZE);
    if (sp->peer_efd >= 0)
        close(sp->peer_efd);
    if (sp->ctl_fd >= 0)
        close(sp->ctl_fd);
    free(sp);
}

struct shm_pipe *shm_pipe_new(void)
{
    struct shm_pipe *sp = calloc(1, sizeof *sp);
    if (sp == NULL)
        return NULL;
    sp->base.ops = &fy_shm_pipe_ops;
    atomic_store(&sp->base.refs, 1); /* the creator's; handed to the I/O thread */
    sp->base.tran = sp;
    sp->ctl_fd = -1;
    sp->peer_efd = -1;
    return sp;
}

static uint64_t hwm_min(uint64_t a, uint64_t b)
{
    return a == 0 ? b : b == 0 ? a : (a < b ? a : b);
}

void shm_pipe_rings(struct shm_pipe *sp, ferry_socket *s, uint64_t cap, int dialer,
                    uint64_t peer_maxmsg, uint32_t peer_rcvhwm, uint32_t peer_sndhwm)
{
    unsigned char *base = sp->map;
    void *d2l = base + SHM_CONN_HDR, *l2d = base + SHM_CONN_HDR + fy_ring_bytes(cap);
    fy_ring_writer_init(&sp->w, dialer ? d2l : l2d, cap);
    fy_ring_reader_init(&sp->r, dialer ? l2d : d2l, cap);
    sp->side = dialer ? 0 : 1;
    sp->max_rec = fy_ring_max_record(cap);
    sp->own_maxmsg = s->opt.maxmsgsize;
    sp->peer_maxmsg = peer_maxmsg ? peer_maxmsg : UINT64_MAX;
    sp->hwm = hwm_min((uint64_t)s->opt.sndhwm, peer_rcvhwm);
    /* The reader publishes its message count at least every half of the
     * HWM its writer works under, so a writer held by the HWM moves on. */
    uint64_t in_hwm = hwm_min(peer_sndhwm, (uint64_t)s->opt.rcvhwm);
    sp->r.publish_msgs = in_hwm ? (in_hwm + 1) / 2 : UINT64_MAX;
    /* the writer reuses its pool as soon as our head passes its REFs */
    sp->r.eager = sp->rx_pool != NULL;
}

const struct fy_pipe_ops fy_shm_pipe_ops = {
    .send = shm_send,
    .claim = shm_claim,
    .commit = shm_commit,
    .unclaim = shm_unclaim,
    .recv = shm_recv,
    .readable = shm_readable,
    .watch = shm_watch,
    .bell = shm_bell,
    .release = shm_release,
    .send_cmd = shm_send_cmd,
    .writable = shm_writable,
    .arm_room = shm_arm_room,
    .abort_tx = shm_abort_tx,
    .flush = shm_flush,
    .describe = shm_describe,
    .depth = shm_depth,
    .close = shm_close,
    .destroy = shm_destroy,
};
