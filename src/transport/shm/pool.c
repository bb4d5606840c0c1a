/*
 * pool.c - the broadcast pool of shm:// (pool.h says what and why).
 *
 * Chunks are taken first fit from the front of a list of free extents
 * (sorted, neighbours merged), so the pool's working set stays about what
 * is in flight, warm in the cache, and chunks one subscriber keeps for
 * long do not hold up the reuse of the others'. With the few chunks in
 * flight of a healthy stream the list has one or two extents.
 */
#include "pool.h"

#include "shm_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010 /* Linux 5.1 */
#endif

#define POOL_ALIGN 64u

struct shm_pool *shm_pool_new(uint64_t size)
{
    struct shm_pool *pl = calloc(1, sizeof *pl);
    if (pl == NULL) {
        fy_err(FERRY_ENOMEM, "shm pool: out of memory");
        return NULL;
    }
    pl->fd = memfd_create("ferry-pool", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (pl->fd < 0 || ftruncate(pl->fd, (off_t)size) != 0)
        goto fail;
    pl->map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, pl->fd, 0);
    if (pl->map == MAP_FAILED) {
        pl->map = NULL;
        goto fail;
    }
    /* After our writable mapping exists: from now on nobody, us included,
     * can map it writable again, so the peers we hand it to can only read. */
    if (fcntl(pl->fd, F_ADD_SEALS,
              F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_FUTURE_WRITE | F_SEAL_SEAL) != 0)
        goto fail;
    pl->size = size;
    pl->free[0] = (struct shm_pool_extent){SHM_POOL_BELL, size - SHM_POOL_BELL};
    pl->nfree = 1;
    pl->refs = 1;
    pthread_mutex_init(&pl->lk, NULL);
    return pl;
fail:
    fy_syserr("shm pool: %llu bytes", (unsigned long long)size);
    if (pl->map != NULL)
        munmap(pl->map, size);
    if (pl->fd >= 0)
        close(pl->fd);
    free(pl);
    return NULL;
}

void shm_pool_unref(struct shm_pool *pl)
{
    pthread_mutex_lock(&pl->lk);
    int left = --pl->refs;
    pthread_mutex_unlock(&pl->lk);
    if (left > 0)
        return;
    munmap(pl->map, pl->size);
    close(pl->fd);
    free(pl->links);
    pthread_mutex_destroy(&pl->lk);
    free(pl);
}

static struct shm_pool_chunk *chunk_at(struct shm_pool *pl, uint64_t seq)
{
    return &pl->chunks[seq % SHM_POOL_CHUNKS];
}

/* The chunk seq if it is still in use, else NULL. */
static struct shm_pool_chunk *chunk_live(struct shm_pool *pl, uint64_t seq)
{
    struct shm_pool_chunk *c = chunk_at(pl, seq);
    return c->live && c->seq == seq ? c : NULL;
}

/* Gives c's room back, merged with its free neighbours. lk held. */
static void chunk_free(struct shm_pool *pl, struct shm_pool_chunk *c)
{
    uint32_t lo = 0, hi = pl->nfree; /* the first extent after c */
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (pl->free[mid].off < c->off)
            lo = mid + 1;
        else
            hi = mid;
    }
    int prev = lo > 0 && pl->free[lo - 1].off + pl->free[lo - 1].len == c->off;
    int next = lo < pl->nfree && c->off + c->len == pl->free[lo].off;
    if (prev && next) {
        pl->free[lo - 1].len += c->len + pl->free[lo].len;
        memmove(&pl->free[lo], &pl->free[lo + 1], (pl->nfree - lo - 1) * sizeof pl->free[0]);
        pl->nfree--;
    } else if (prev) {
        pl->free[lo - 1].len += c->len;
    } else if (next) {
        pl->free[lo].off = c->off;
        pl->free[lo].len += c->len;
    } else {
        memmove(&pl->free[lo + 1], &pl->free[lo], (pl->nfree - lo) * sizeof pl->free[0]);
        pl->free[lo] = (struct shm_pool_extent){c->off, c->len};
        pl->nfree++;
    }
    c->live = 0;
    pl->live--;
    pl->used -= c->len;
}

/* One ring lets go of chunk seq; the last one frees it. lk held. */
static void chunk_unuse(struct shm_pool *pl, uint64_t seq)
{
    struct shm_pool_chunk *c = chunk_live(pl, seq);
    if (c != NULL && c->users > 0 && --c->users == 0)
        chunk_free(pl, c);
}

/* Gives back the holds of lk up to ring position head (all with head =
 * UINT64_MAX). lk held. */
static void link_release(struct shm_pool_link *lk, uint64_t head)
{
    struct shm_pool *pl = lk->pool;
    while (lk->h_count > 0) {
        struct shm_pool_hold *h = &lk->holds[lk->h_first % SHM_POOL_HOLDS];
        if (h->ring_end > head)
            break;
        chunk_unuse(pl, h->chunk);
        lk->h_first++;
        lk->h_count--;
    }
}

/* Reads a peer's head and gives back what it has moved past. A head
 * outside [tail - capacity, tail] marks the peer bad: it is cut off at its
 * next send, and holds nothing from now on. lk held. */
static void link_reclaim(struct shm_pool_link *lk)
{
    if (lk->h_count == 0)
        return;
    uint64_t head = atomic_load_explicit(&lk->w->sh->head, memory_order_acquire);
    if (head > lk->w->tail || lk->w->tail - head > lk->w->cap) {
        lk->bad = 1;
        head = UINT64_MAX;
    }
    link_release(lk, head);
}

/* Every peer's. lk held. */
static void pool_reclaim(struct shm_pool *pl)
{
    for (size_t i = 0; i < pl->nlinks; i++)
        link_reclaim(pl->links[i]);
}

/* Room for len bytes as one chunk, first fit from the front: its
 * sequence number and offset, or -1. A new chunk needs its slot free: one
 * kept in use while SHM_POOL_CHUNKS newer ones came and went is skipped
 * over, a few times at most. lk held. */
static int pool_alloc(struct shm_pool *pl, uint64_t len, uint64_t *seq, uint64_t *off)
{
    len = (len + POOL_ALIGN - 1) & ~(uint64_t)(POOL_ALIGN - 1);
    if (pl->live >= SHM_POOL_CHUNKS)
        return -1;
    int tries = 0;
    while (chunk_at(pl, pl->next_seq)->live)
        if (++pl->next_seq, ++tries == 8)
            return -1;
    uint32_t i = 0;
    while (i < pl->nfree && pl->free[i].len < len)
        i++;
    if (i == pl->nfree)
        return -1;
    *off = pl->free[i].off;
    pl->free[i].off += len;
    pl->free[i].len -= len;
    if (pl->free[i].len == 0) {
        memmove(&pl->free[i], &pl->free[i + 1], (pl->nfree - i - 1) * sizeof pl->free[0]);
        pl->nfree--;
    }
    *seq = pl->next_seq++;
    struct shm_pool_chunk *c = chunk_at(pl, *seq);
    *c = (struct shm_pool_chunk){.seq = *seq, .off = *off, .len = len, .users = 0, .live = 1};
    pl->live++;
    pl->used += len;
    return 0;
}

/* Copies m into the pool at off (packed when it has several parts). */
static void pool_write(struct shm_pool *pl, uint64_t off, const struct fy_txmsg *m)
{
    unsigned char *dst = pl->map + off;
    if (m->nparts == 1)
        memcpy(dst, m->parts[0].data, m->parts[0].len);
    else
        shm_pack_write(dst, m);
}

/* Where m goes in the pool, placed now unless this send placed it
 * already (and it is still in use). 0, or -1 no room. lk held. */
static int pool_put(struct shm_pool *pl, const struct fy_txmsg *m)
{
    struct fy_fanout *f = m->fan;
    if (f->owner == pl && chunk_live(pl, f->id) != NULL)
        return 0;
    uint64_t len = m->nparts == 1 ? m->parts[0].len : shm_pack_bytes(m);
    /* Look at what the peers gave back only once an eighth of the pool is
     * out: each look reads a line per peer that its reader writes. */
    uint64_t seq, off;
    int looked = pl->used > pl->size / 8;
    if (looked)
        pool_reclaim(pl);
    if (pool_alloc(pl, len, &seq, &off) != 0) {
        if (looked) /* just looked: nothing more to find */
            return -1;
        pool_reclaim(pl);
        if (pool_alloc(pl, len, &seq, &off) != 0)
            return -1;
    }
    pool_write(pl, off, m);
    f->owner = pl;
    f->id = seq;
    f->off = off;
    f->len = len;
    f->parts = m->nparts == 1 ? 0 : (uint32_t)m->nparts;
    pl->placed++;
    return 0;
}

int shm_pool_place(struct shm_pool_link *lk, const struct fy_txmsg *m, struct shm_ref *ref)
{
    struct shm_pool *pl = lk->pool;
    if (m->nparts == 0 || m->nparts > SHM_PACK_PARTS)
        return 0;
    pthread_mutex_lock(&pl->lk);
    int rc = 1;
    if (lk->h_count >= SHM_POOL_HOLDS)
        link_reclaim(lk);
    if (lk->bad) {
        rc = FERRY_ECORRUPT;
    } else if ((m->fan->owner == pl && m->fan->id == UINT64_MAX) || lk->h_count >= SHM_POOL_HOLDS) {
        rc = 0; /* this send found no room already; or this peer holds too many */
    } else if (pool_put(pl, m) != 0) {
        pl->fallbacks++; /* once per message: the other peers of this send copy too */
        m->fan->owner = pl;
        m->fan->id = UINT64_MAX;
        rc = 0;
    } else {
        /* The hold is taken now, under the lock that placed the chunk: a
         * pipe destroyed on another thread before the REF is in the ring
         * must not let the chunk be freed. Its ring position comes with
         * shm_pool_hold, after the commit. */
        struct shm_pool_hold *h = &lk->holds[(lk->h_first + lk->h_count) % SHM_POOL_HOLDS];
        h->ring_end = UINT64_MAX - 1; /* no head reaches it */
        h->chunk = m->fan->id;
        lk->h_count++;
        chunk_live(pl, m->fan->id)->users++; /* pool_put made sure it is */
        *ref = (struct shm_ref){.off = m->fan->off, .len = m->fan->len, .parts = m->fan->parts};
    }
    pthread_mutex_unlock(&pl->lk);
    return rc;
}

void shm_pool_placed(struct shm_pool_link *lk, int committed, uint64_t ring_end)
{
    struct shm_pool *pl = lk->pool;
    pthread_mutex_lock(&pl->lk);
    /* the hold place() took is the newest one (this pipe's send runs: its
     * link cannot be unlinked meanwhile) */
    if (lk->h_count > 0) {
        struct shm_pool_hold *h = &lk->holds[(lk->h_first + lk->h_count - 1) % SHM_POOL_HOLDS];
        if (committed) {
            h->ring_end = ring_end;
        } else {
            chunk_unuse(pl, h->chunk);
            lk->h_count--;
        }
    }
    pthread_mutex_unlock(&pl->lk);
}

int shm_pool_link(struct shm_pool *pl, struct shm_pool_link *lk, struct fy_ring_writer *w)
{
    lk->holds = malloc(SHM_POOL_HOLDS * sizeof *lk->holds);
    if (lk->holds == NULL)
        return FERRY_ENOMEM;
    pthread_mutex_lock(&pl->lk);
    if (pl->nlinks == pl->cap_links) {
        size_t cap = pl->cap_links ? 2 * pl->cap_links : 8;
        struct shm_pool_link **n = realloc(pl->links, cap * sizeof *n);
        if (n == NULL) {
            pthread_mutex_unlock(&pl->lk);
            free(lk->holds);
            lk->holds = NULL;
            return FERRY_ENOMEM;
        }
        pl->links = n;
        pl->cap_links = cap;
    }
    pl->links[pl->nlinks++] = lk;
    pl->refs++;
    lk->pool = pl;
    lk->w = w;
    lk->h_first = lk->h_count = 0;
    lk->bad = 0;
    pthread_mutex_unlock(&pl->lk);
    return 0;
}

void shm_pool_unlink(struct shm_pool_link *lk)
{
    struct shm_pool *pl = lk->pool;
    if (pl == NULL)
        return;
    pthread_mutex_lock(&pl->lk);
    link_release(lk, UINT64_MAX);
    for (size_t i = 0; i < pl->nlinks; i++) {
        if (pl->links[i] == lk) {
            pl->links[i] = pl->links[--pl->nlinks];
            break;
        }
    }
    pthread_mutex_unlock(&pl->lk);
    free(lk->holds);
    lk->holds = NULL;
    lk->pool = NULL;
    shm_pool_unref(pl);
}

const unsigned char *shm_pool_map_peer(int fd, uint64_t size)
{
    long page = sysconf(_SC_PAGESIZE);
    if (size == 0 || size > SHM_POOL_MAX || size % (uint64_t)page != 0 ||
        fy_shm_check_memfd(fd, (size_t)size) != 0)
        return NULL;
    void *m = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0);
    return m == MAP_FAILED ? NULL : m;
}
