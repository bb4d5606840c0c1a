/* test_ring.c - the shm:// ring on its own, at positions that traffic
 * reaches only after tens of gigabytes. */
#include "../common.h"

#include "transport/shm/ring.h"

enum { CAP = 4096 };

/* A ring whose writer and reader both stand at pos, its data area full of
 * stale bytes from an earlier lap. */
struct ring_at {
    void *mem;
    struct fy_ring_writer w;
    struct fy_ring_reader r;
};

static void ring_at(struct ring_at *t, uint64_t pos, unsigned char stale)
{
    t->mem = aligned_alloc(64, fy_ring_bytes(CAP));
    assert_non_null(t->mem);
    memset(t->mem, 0, FY_RING_HDR);
    memset((char *)t->mem + FY_RING_HDR, stale, CAP);
    fy_ring_format(t->mem, CAP);
    fy_ring_writer_init(&t->w, t->mem, CAP);
    fy_ring_reader_init(&t->r, t->mem, CAP);
    struct fy_ring_shared *sh = t->mem;
    atomic_store(&sh->head, pos);
    atomic_store(&sh->tail, pos);
    t->w.tail = t->w.head_cache = pos;
    t->r.pos = t->r.head = t->r.published = pos;
}

static void put(struct ring_at *t, const char *text, uint32_t flags)
{
    int err;
    size_t len = strlen(text);
    void *dst = fy_ring_claim(&t->w, len, &err);
    assert_non_null(dst);
    assert_int_equal(err, 0);
    memcpy(dst, text, len);
    fy_ring_commit(&t->w, flags);
}

static void get(struct ring_at *t, const char *text)
{
    struct fy_ring_rec rec;
    int moved;
    assert_int_equal(fy_ring_peek(&t->r, &rec, 1), 1);
    assert_int_equal(rec.len, strlen(text));
    assert_memory_equal(rec.data, text, rec.len);
    assert_int_equal(fy_ring_take(&t->r, &rec, 0, 1, &moved), 0);
}

/* The record ends where ring_tag() is 0: the slot the writer blanks there
 * must not read as an empty record (it did when the blank was 0). */
static void test_blank_at_zero_tag(void **state)
{
    (void)state;
    const uint64_t zero_tag_pos = (uint64_t)FY_RING_TAG_SALT << 3;
    static const unsigned char stale[] = {0x00, 0xa5, 0xff};
    for (size_t k = 0; k < sizeof stale; k++) {
        struct ring_at t;
        ring_at(&t, zero_tag_pos - 16, stale[k]); /* one 8-byte record fits before */
        put(&t, "8 bytes!", 0);
        get(&t, "8 bytes!");
        struct fy_ring_rec rec;
        assert_int_equal(fy_ring_peek(&t.r, &rec, 0), 0); /* nothing: no phantom */
        assert_int_equal(fy_ring_peek(&t.r, &rec, 1), 0);
        /* and the next real record, written at that position, is read whole */
        put(&t, "next one", 0);
        get(&t, "next one");
        assert_int_equal(fy_ring_peek(&t.r, &rec, 1), 0);
        free(t.mem);
    }
}

/* Every position around it, record sizes 0..40: the reader sees exactly
 * what was written, never an extra record. */
static void test_blank_around_zero_tag(void **state)
{
    (void)state;
    const uint64_t zero_tag_pos = (uint64_t)FY_RING_TAG_SALT << 3;
    char text[48];
    for (uint64_t back = 8; back <= 256; back += 8) {
        struct ring_at t;
        ring_at(&t, zero_tag_pos - back, 0);
        for (int i = 0; i < 12; i++) {
            size_t len = (size_t)(i * 7 + (int)back) % 41;
            memset(text, 'a' + i, len);
            text[len] = '\0';
            put(&t, text, 0);
            get(&t, text);
            struct fy_ring_rec rec;
            assert_int_equal(fy_ring_peek(&t.r, &rec, 1), 0);
        }
        free(t.mem);
    }
}

/* A batch is seen whole or not at all: until fy_ring_batch_end, the
 * reader finds nothing, even when it checks against tail (a held first
 * header must not look like garbage); after it, every record in order. */
static void test_batch_all_or_nothing(void **state)
{
    (void)state;
    struct ring_at t;
    ring_at(&t, CAP - 24, 0xa5); /* the batch wraps: a pad in the middle */
    struct fy_ring_rec rec;
    fy_ring_batch_begin(&t.w);
    put(&t, "one", FY_RING_F_MORE);
    assert_int_equal(fy_ring_peek(&t.r, &rec, 1), 0);
    put(&t, "two two two two", FY_RING_F_MORE);
    put(&t, "three", 0);
    assert_int_equal(fy_ring_peek(&t.r, &rec, 0), 0);
    assert_int_equal(fy_ring_peek(&t.r, &rec, 1), 0);
    fy_ring_batch_end(&t.w);
    get(&t, "one");
    get(&t, "two two two two");
    get(&t, "three");
    assert_int_equal(fy_ring_peek(&t.r, &rec, 1), 0);
    fy_ring_batch_begin(&t.w); /* an empty batch publishes nothing */
    fy_ring_batch_end(&t.w);
    assert_int_equal(fy_ring_peek(&t.r, &rec, 1), 0);
    free(t.mem);
}

/* FY_RING_F_PACK stands alone; with any other flag the record is
 * garbage. An in-place record taken for n holders comes back to the
 * writer only after the n-th release. */
static void test_pack_flag_and_holds(void **state)
{
    (void)state;
    struct ring_at t;
    ring_at(&t, 0, 0);
    struct fy_ring_rec rec;
    put(&t, "pack", FY_RING_F_PACK);
    assert_int_equal(fy_ring_peek(&t.r, &rec, 1), 1);
    assert_int_equal(rec.flags, FY_RING_F_PACK);
    int moved;
    int64_t id = fy_ring_take(&t.r, &rec, 3, 1, &moved);
    assert_true(id >= 0);
    assert_int_equal(fy_ring_peek(&t.r, &rec, 1), 0);
    assert_int_equal(fy_ring_flush(&t.r), 0); /* held: head stays */
    uint64_t before = atomic_load(&((struct fy_ring_shared *)t.mem)->head);
    fy_ring_release(&t.r, id);
    fy_ring_release(&t.r, id);
    assert_int_equal(atomic_load(&((struct fy_ring_shared *)t.mem)->head), before);
    assert_int_equal(fy_ring_release(&t.r, id), 1); /* the last one frees it */
    assert_true(atomic_load(&((struct fy_ring_shared *)t.mem)->head) > before);
    assert_int_equal(fy_ring_release(&t.r, id), 0); /* once too often: nothing */
    put(&t, "bad", FY_RING_F_PACK | FY_RING_F_MORE);
    assert_int_equal(fy_ring_peek(&t.r, &rec, 1), FERRY_ECORRUPT);
    free(t.mem);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blank_at_zero_tag),
        cmocka_unit_test(test_blank_around_zero_tag),
        cmocka_unit_test(test_batch_all_or_nothing),
        cmocka_unit_test(test_pack_flag_and_holds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
