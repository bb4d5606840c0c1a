/*
 * test_prefix.c - the prefix set (src/core/prefix.h) against a plain list
 * that answers the same questions by brute force: random adds and removes
 * (counted and not) over a small alphabet, so prefixes nest, split and
 * merge all the time; then the edge cases one by one.
 */
#include "../common.h"

#include "core/prefix.h"

/* The reference: a list of (prefix, count). */
enum { MAXP = 512, MAXLEN = 12 };
struct ref {
    unsigned char p[MAXP][MAXLEN];
    size_t len[MAXP];
    unsigned count[MAXP];
    size_t n;
};

static long ref_find(const struct ref *r, const unsigned char *p, size_t len)
{
    for (size_t i = 0; i < r->n; i++)
        if (r->len[i] == len && memcmp(r->p[i], p, len) == 0)
            return (long)i;
    return -1;
}

static int ref_add(struct ref *r, const unsigned char *p, size_t len, int counted)
{
    long i = ref_find(r, p, len);
    if (i >= 0) {
        r->count[i] += counted != 0;
        return 0;
    }
    memcpy(r->p[r->n], p, len);
    r->len[r->n] = len;
    r->count[r->n++] = 1;
    return 1;
}

static int ref_remove(struct ref *r, const unsigned char *p, size_t len, int counted)
{
    long i = ref_find(r, p, len);
    if (i < 0)
        return 0;
    if (counted && r->count[i] > 1) {
        r->count[i]--;
        return 0;
    }
    r->n--;
    memcpy(r->p[i], r->p[r->n], MAXLEN);
    r->len[i] = r->len[r->n];
    r->count[i] = r->count[r->n];
    return 1;
}

static int ref_match(const struct ref *r, const unsigned char *d, size_t len)
{
    for (size_t i = 0; i < r->n; i++)
        if (r->len[i] <= len && memcmp(r->p[i], d, r->len[i]) == 0)
            return 1;
    return 0;
}

static size_t ref_bytes(const struct ref *r)
{
    size_t b = 0;
    for (size_t i = 0; i < r->n; i++)
        b += r->len[i];
    return b;
}

static void rnd_bytes(unsigned char *b, size_t len)
{
    for (size_t i = 0; i < len; i++)
        b[i] = (unsigned char)("abc\0\xff"[rand() % 5]);
}

struct seen {
    const struct ref *r;
    size_t n;
    unsigned char last[MAXLEN + 1];
    size_t last_len;
};

/* each() gives every prefix once, in byte order */
static int each_check(void *ctx, const void *p, size_t len)
{
    struct seen *s = ctx;
    assert_true(ref_find(s->r, p, len) >= 0);
    if (s->n > 0) {
        size_t m = len < s->last_len ? len : s->last_len;
        int c = memcmp(s->last, p, m);
        assert_true(c < 0 || (c == 0 && s->last_len < len));
    }
    memcpy(s->last, p, len);
    s->last_len = len;
    s->n++;
    return 0;
}

static void check_same(const struct fy_prefixes *set, const struct ref *r)
{
    assert_int_equal(fy_prefixes_count(set), r->n);
    assert_int_equal(fy_prefixes_bytes(set), ref_bytes(r));
    struct seen s = {.r = r};
    assert_int_equal(fy_prefixes_each(set, each_check, &s), 0);
    assert_int_equal(s.n, r->n);
    for (int k = 0; k < 50; k++) {
        unsigned char d[MAXLEN + 4];
        size_t len = (size_t)(rand() % (MAXLEN + 4));
        rnd_bytes(d, len);
        assert_int_equal(fy_prefixes_match(set, d, len), ref_match(r, d, len));
    }
    for (size_t i = 0; i < r->n; i++) {
        assert_true(fy_prefixes_has(set, r->p[i], r->len[i]));
        assert_true(fy_prefixes_match(set, r->p[i], r->len[i]));
    }
}

static void test_against_reference(void **state)
{
    (void)state;
    srand(7);
    for (int round = 0; round < 20; round++) {
        int counted = round & 1;
        struct fy_prefixes *set = NULL;
        static struct ref r;
        memset(&r, 0, sizeof r);
        for (int op = 0; op < 3000; op++) {
            unsigned char p[MAXLEN];
            size_t len = (size_t)(rand() % (MAXLEN + 1));
            rnd_bytes(p, len);
            if (rand() % 3 != 0 && r.n < MAXP) {
                assert_int_equal(fy_prefixes_add(&set, p, len, counted),
                                 ref_add(&r, p, len, counted));
            } else {
                if (r.n > 0 && rand() % 2) { /* remove one that is there */
                    size_t i = (size_t)rand() % r.n;
                    len = r.len[i];
                    memcpy(p, r.p[i], len);
                }
                assert_int_equal(fy_prefixes_remove(set, p, len, counted),
                                 ref_remove(&r, p, len, counted));
            }
            if (op % 100 == 0)
                check_same(set, &r);
        }
        check_same(set, &r);
        fy_prefixes_free(set);
    }
}

static void test_edges(void **state)
{
    (void)state;
    struct fy_prefixes *set = NULL;
    /* the empty set */
    assert_false(fy_prefixes_match(NULL, "x", 1));
    assert_int_equal(fy_prefixes_remove(NULL, "x", 1, 0), 0);
    assert_int_equal(fy_prefixes_count(NULL), 0);
    /* the empty prefix matches everything, the empty message included */
    assert_int_equal(fy_prefixes_add(&set, "", 0, 0), 1);
    assert_true(fy_prefixes_match(set, "", 0));
    assert_true(fy_prefixes_match(set, "anything", 8));
    assert_int_equal(fy_prefixes_remove(set, "", 0, 0), 1);
    assert_false(fy_prefixes_match(set, "anything", 8));
    /* a prefix longer than the message does not match it */
    assert_int_equal(fy_prefixes_add(&set, "abcdef", 6, 0), 1);
    assert_false(fy_prefixes_match(set, "abc", 3));
    assert_true(fy_prefixes_match(set, "abcdefg", 7));
    /* split, then merge back when the branch goes */
    assert_int_equal(fy_prefixes_add(&set, "abcxyz", 6, 0), 1);
    assert_int_equal(fy_prefixes_add(&set, "ab", 2, 0), 1);
    assert_true(fy_prefixes_match(set, "abq", 3));
    assert_int_equal(fy_prefixes_remove(set, "ab", 2, 0), 1);
    assert_false(fy_prefixes_match(set, "abq", 3));
    assert_int_equal(fy_prefixes_remove(set, "abcxyz", 6, 0), 1);
    assert_true(fy_prefixes_match(set, "abcdef!", 7));
    assert_false(fy_prefixes_match(set, "abcxyz", 6));
    /* counted: twice in, twice out */
    assert_int_equal(fy_prefixes_add(&set, "k", 1, 1), 1);
    assert_int_equal(fy_prefixes_add(&set, "k", 1, 1), 0);
    assert_int_equal(fy_prefixes_remove(set, "k", 1, 1), 0);
    assert_true(fy_prefixes_match(set, "k", 1));
    assert_int_equal(fy_prefixes_remove(set, "k", 1, 1), 1);
    assert_false(fy_prefixes_match(set, "k", 1));
    /* every byte value, NUL and 0xff included */
    for (int b = 0; b < 256; b++) {
        unsigned char c = (unsigned char)b;
        assert_int_equal(fy_prefixes_add(&set, &c, 1, 0), 1);
    }
    assert_int_equal(fy_prefixes_count(set), 257);
    fy_prefixes_free(set);
}

/* 20,000 nested prefixes ("a", "aa", ...): nothing recurses on depth. */
static void test_deep_chain(void **state)
{
    (void)state;
    enum { DEPTH = 20000 };
    static unsigned char a[DEPTH];
    memset(a, 'a', sizeof a);
    struct fy_prefixes *set = NULL;
    for (size_t i = 1; i <= DEPTH; i++)
        assert_int_equal(fy_prefixes_add(&set, a, i, 0), 1);
    assert_true(fy_prefixes_match(set, a, DEPTH));
    size_t n = 0;
    assert_int_equal(fy_prefixes_count(set), DEPTH);
    for (size_t i = 1; i <= DEPTH; i += 2)
        n += (size_t)fy_prefixes_remove(set, a, i, 0);
    assert_int_equal(n, DEPTH / 2);
    assert_false(fy_prefixes_match(set, a, 1));
    assert_true(fy_prefixes_match(set, a, 2));
    fy_prefixes_free(set);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_against_reference),
        cmocka_unit_test(test_edges),
        cmocka_unit_test(test_deep_chain),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
