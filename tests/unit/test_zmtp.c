/*
 * test_zmtp.c - the ZMTP 3.1 codec (src/transport/zmtp/zmtp.c): greeting,
 * frame headers, commands and READY metadata against byte vectors written
 * out by hand from RFC 23 and RFC 37, and the decoder fed one stream in every
 * kind of split (whole, byte by byte, random pieces, straight into place
 * through zmtp_dec_room), counting allocations so nothing leaks.
 */
#include "../common.h"

#include "transport/zmtp/zmtp.h"

/* --- vectors (zmtp.md section 8) ------------------------------------------------ */

/* G1: NULL, 3.1, zero padding; the rest of the 64 octets are zero. */
static const unsigned char G1[ZMTP_GREETING_SIZE] = {0xff, 0,    0,    0,    0,   0,   0,   0,
                                                     0,    0x7f, 0x03, 0x01, 'N', 'U', 'L', 'L'};

static const unsigned char R1[] = {0x04, 0x1a, 0x05, 0x52, 0x45, 0x41, 0x44, 0x59, 0x0b, 0x53,
                                   0x6f, 0x63, 0x6b, 0x65, 0x74, 0x2d, 0x54, 0x79, 0x70, 0x65,
                                   0x00, 0x00, 0x00, 0x04, 0x50, 0x55, 0x53, 0x48};
static const unsigned char R2[] = {0x04, 0x1a, 0x05, 0x52, 0x45, 0x41, 0x44, 0x59, 0x0b, 0x53,
                                   0x6f, 0x63, 0x6b, 0x65, 0x74, 0x2d, 0x54, 0x79, 0x70, 0x65,
                                   0x00, 0x00, 0x00, 0x04, 0x50, 0x55, 0x4c, 0x4c};
static const unsigned char R3[] = {0x04, 0x29, 0x05, 0x52, 0x45, 0x41, 0x44, 0x59, 0x0b, 0x53, 0x6f,
                                   0x63, 0x6b, 0x65, 0x74, 0x2d, 0x54, 0x79, 0x70, 0x65, 0x00, 0x00,
                                   0x00, 0x06, 0x44, 0x45, 0x41, 0x4c, 0x45, 0x52, 0x08, 0x49, 0x64,
                                   0x65, 0x6e, 0x74, 0x69, 0x74, 0x79, 0x00, 0x00, 0x00, 0x00};
static const unsigned char R4[] = {0x04, 0x26, 0x05, 0x52, 0x45, 0x41, 0x44, 0x59, 0x0b, 0x53,
                                   0x6f, 0x63, 0x6b, 0x65, 0x74, 0x2d, 0x54, 0x79, 0x70, 0x65,
                                   0x00, 0x00, 0x00, 0x03, 0x52, 0x45, 0x51, 0x08, 0x49, 0x64,
                                   0x65, 0x6e, 0x74, 0x69, 0x74, 0x79, 0x00, 0x00, 0x00, 0x00};
static const unsigned char R5[] = {0x04, 0x19, 0x05, 0x52, 0x45, 0x41, 0x44, 0x59, 0x0b,
                                   0x53, 0x6f, 0x63, 0x6b, 0x65, 0x74, 0x2d, 0x54, 0x79,
                                   0x70, 0x65, 0x00, 0x00, 0x00, 0x03, 0x53, 0x55, 0x42};
static const unsigned char E1[] = {0x04, 0x0a, 0x05, 0x45, 0x52, 0x52,
                                   0x4f, 0x52, 0x03, 0x34, 0x30, 0x30};

static const unsigned char F1[] = {0x00, 0x05, 'h', 'e', 'l', 'l', 'o'};
static const unsigned char F2[] = {0x01, 0x05, 'h', 'e', 'l', 'l', 'o'};
static const unsigned char F3[] = {0x01, 0x00};
static const unsigned char F4[] = {0x00, 0xff};
static const unsigned char F5[] = {0x02, 0, 0, 0, 0, 0, 0, 0x01, 0x00};
static const unsigned char F6[] = {0x02, 0, 0, 0, 0, 0, 0, 0x01, 0x2c};
static const unsigned char F7[] = {0x03, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00};
static const unsigned char C1[] = {0x06, 0, 0, 0, 0, 0, 0, 0x01, 0x2c};

static const unsigned char S1[] = {0x04, 0x0d, 0x09, 'S', 'U', 'B', 'S', 'C',
                                   'R',  'I',  'B',  'E', 'a', 'b', 'c'};
static const unsigned char S2[] = {0x04, 0x0a, 0x06, 'C', 'A', 'N', 'C', 'E', 'L', 'a', 'b', 'c'};
static const unsigned char S3[] = {0x04, 0x0a, 0x09, 'S', 'U', 'B', 'S', 'C', 'R', 'I', 'B', 'E'};
static const unsigned char P1[] = {0x04, 0x07, 0x04, 'P', 'I', 'N', 'G', 0x00, 0x32};
static const unsigned char P2[] = {0x04, 0x09, 0x04, 'P', 'I', 'N', 'G', 0x00, 0x00, 'a', 'b'};
static const unsigned char P3[] = {0x04, 0x07, 0x04, 'P', 'O', 'N', 'G', 'a', 'b'};
static const unsigned char P4[] = {0x04, 0x05, 0x04, 'P', 'O', 'N', 'G'};

/* --- a growable byte string: streams and logs of what was decoded ---------------- */

struct buf {
    unsigned char *p;
    size_t n, cap;
};

static void buf_put(struct buf *b, const void *data, size_t n)
{
    if (b->cap - b->n < n) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->n < n)
            cap *= 2;
        unsigned char *p = realloc(b->p, cap);
        assert_non_null(p);
        b->p = p;
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->n, data, n);
    b->n += n;
}

static void buf_free(struct buf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* One decoded frame in a log: the flags the decoder reports, the size in 8
 * octets, then the body. Two runs then compare with one memcmp, and the
 * expected log is written by the same function from the frames the test put
 * in the stream, not from anything the decoder said. */
static void log_frame(struct buf *to, int flags, const void *body, uint64_t size)
{
    unsigned char h[9];
    h[0] = (unsigned char)(flags & (ZMTP_MORE | ZMTP_COMMAND));
    for (int i = 0; i < 8; i++)
        h[1 + i] = (unsigned char)(size >> (56 - 8 * i));
    buf_put(to, h, sizeof h);
    buf_put(to, body, (size_t)size);
}

/* --- decoder callbacks that record and count ------------------------------------ */

/* The handle is a block with the body inside, not the body itself, so a
 * decoder that handed back the wrong pointer would be seen. */
struct blk {
    uint64_t size;
    unsigned char data[];
};

struct rec {
    long live;       /* blocks allocated and not yet freed */
    unsigned allocs; /* calls to alloc */
    unsigned grows;  /* calls to grow */
    int greetings;   /* calls to greeting */
    int minor;       /* the last minor it was given */
    unsigned frames; /* calls to frame */
    int fail_alloc;  /* alloc says "out of memory" */
    int greet_err;   /* greeting returns this */
    int frame_err;   /* frame returns this ... */
    unsigned err_at; /* ... for the frame with this index (0-based) */
    struct buf log;
};

static void *rec_alloc(void *ctx, uint64_t size, unsigned char **body)
{
    struct rec *r = ctx;
    r->allocs++;
    /* the tests never ask for more than a few hundred kB: anything larger
     * means the decoder passed a size it should have refused */
    assert_true(size <= (1u << 20));
    if (r->fail_alloc)
        return NULL;
    struct blk *b = malloc(sizeof *b + (size_t)size);
    assert_non_null(b);
    b->size = size;
    r->live++;
    *body = b->data;
    return b;
}

/* Frames larger than a chunk grow as their bytes arrive (zmtp.h). */
static void *rec_grow(void *ctx, void *handle, uint64_t cap, unsigned char **body)
{
    struct rec *r = ctx;
    struct blk *b = handle;
    assert_true(cap > b->size);
    r->grows++;
    if (r->fail_alloc)
        return NULL;
    b = realloc(b, sizeof *b + (size_t)cap);
    assert_non_null(b);
    b->size = cap;
    *body = b->data;
    return b;
}

static void rec_free(void *ctx, void *handle)
{
    struct rec *r = ctx;
    assert_non_null(handle);
    r->live--;
    free(handle);
}

static int rec_greeting(void *ctx, int minor)
{
    struct rec *r = ctx;
    r->greetings++;
    r->minor = minor;
    return r->greet_err;
}

static int rec_frame(void *ctx, int flags, void *handle, unsigned char *body, uint64_t size)
{
    struct rec *r = ctx;
    struct blk *b = handle;
    assert_non_null(b);
    assert_ptr_equal(body, b->data);
    assert_true(size == b->size);
    log_frame(&r->log, flags, body, size);
    unsigned n = r->frames++;
    rec_free(r, handle); /* ownership came with the call */
    return r->frame_err != 0 && n == r->err_at ? r->frame_err : 0;
}

static const struct zmtp_dec_ops rec_ops = {
    .alloc = rec_alloc,
    .grow = rec_grow,
    .free = rec_free,
    .greeting = rec_greeting,
    .frame = rec_frame,
};

static void rec_start(struct rec *r, struct zmtp_dec *d, uint64_t max_frame)
{
    memset(r, 0, sizeof *r);
    zmtp_dec_init(d, &rec_ops, r, max_frame);
}

/* zmtp_dec_fini, then nothing may be left allocated. */
static void rec_end(struct rec *r, struct zmtp_dec *d)
{
    zmtp_dec_fini(d);
    assert_int_equal(r->live, 0);
    buf_free(&r->log);
}

/* A fixed-seed xorshift: the "random" splits are the same on every run. */
static uint32_t rnd(uint32_t *s)
{
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *s = x;
}

/* --- greeting ------------------------------------------------------------------- */

static void test_greeting_bytes(void **state)
{
    (void)state;
    unsigned char g[ZMTP_GREETING_SIZE];
    memset(g, 0xaa, sizeof g);
    assert_int_equal(zmtp_greeting(g), ZMTP_GREETING_SIZE);
    assert_memory_equal(g, G1, sizeof G1);
}

/* Feeds g one octet at a time: the greeting callback must come exactly once,
 * on the 64th octet; the decoder must then be reading frames. Returns the
 * minor version it reported. */
static int greet_bytewise(const unsigned char g[ZMTP_GREETING_SIZE])
{
    struct rec r;
    struct zmtp_dec d;
    rec_start(&r, &d, 1000);
    for (size_t i = 0; i < ZMTP_GREETING_SIZE; i++) {
        assert_int_equal(zmtp_dec_feed(&d, g + i, 1), 0);
        assert_int_equal(r.greetings, i + 1 == ZMTP_GREETING_SIZE ? 1 : 0);
    }
    assert_int_equal(zmtp_dec_feed(&d, g, 0), 0);
    assert_int_equal(zmtp_dec_feed(&d, F1, sizeof F1), 0);
    assert_int_equal(r.greetings, 1);
    assert_int_equal(r.frames, 1);
    int minor = r.minor;
    rec_end(&r, &d);
    return minor;
}

static void test_greeting_bytewise(void **state)
{
    (void)state;
    unsigned char g[ZMTP_GREETING_SIZE];

    assert_int_equal(greet_bytewise(G1), 1);

    memcpy(g, G1, sizeof g); /* G2: libzmq's padding, a ZMTP 1.0 length */
    g[8] = 0x01;
    assert_int_equal(greet_bytewise(g), 1);

    memset(g + 1, 0xde, 8); /* the padding means nothing, whatever it holds */
    assert_int_equal(greet_bytewise(g), 1);

    memcpy(g, G1, sizeof g); /* G3: a 3.0 peer */
    g[11] = 0;
    assert_int_equal(greet_bytewise(g), 0);

    memcpy(g, G1, sizeof g); /* libzmq takes major 4 as 3.1 (zmtp.md 1.4) */
    g[10] = 4;
    g[11] = 7;
    assert_int_equal(greet_bytewise(g), 1);
    g[11] = 0;
    assert_int_equal(greet_bytewise(g), 1);

    memcpy(g, G1, sizeof g); /* 3.7 is a 3.1 peer too: later than 3.0 */
    g[11] = 7;
    assert_true(greet_bytewise(g) >= 1);

    memcpy(g, G1, sizeof g); /* as-server 1 with NULL: libzmq accepts it */
    g[32] = 1;
    assert_int_equal(greet_bytewise(g), 1);

    /* the whole greeting and a frame in one feed */
    struct rec r;
    struct zmtp_dec d;
    unsigned char s[ZMTP_GREETING_SIZE + sizeof F1];
    memcpy(s, G1, sizeof G1);
    memcpy(s + sizeof G1, F1, sizeof F1);
    rec_start(&r, &d, 1000);
    assert_int_equal(zmtp_dec_feed(&d, s, sizeof s), 0);
    assert_int_equal(r.greetings, 1);
    assert_int_equal(r.minor, 1);
    assert_int_equal(r.frames, 1);
    rec_end(&r, &d);
}

/* Feeds g octet by octet: every octet before first_bad is accepted, the one
 * at first_bad gets FERRY_EPROTO, and the decoder stays failed. The same
 * greeting fed whole is refused too. */
static void reject_at(const unsigned char g[ZMTP_GREETING_SIZE], size_t first_bad)
{
    struct rec r;
    struct zmtp_dec d;
    rec_start(&r, &d, 1000);
    for (size_t i = 0; i <= first_bad; i++) {
        int rc = zmtp_dec_feed(&d, g + i, 1);
        if (i < first_bad) {
            if (rc != 0)
                fail_msg("octet %zu refused (%d), expected the first refusal at %zu", i, rc,
                         first_bad);
        } else if (rc != FERRY_EPROTO) {
            fail_msg("octet %zu returned %d, expected FERRY_EPROTO at this first wrong octet", i,
                     rc);
        }
    }
    assert_non_null(d.why);
    assert_true(zmtp_dec_feed(&d, g, 1) < 0);
    assert_true(zmtp_dec_feed(&d, G1, sizeof G1) < 0);
    assert_int_equal(r.greetings, 0);
    assert_int_equal(r.allocs, 0);
    rec_end(&r, &d);

    rec_start(&r, &d, 1000);
    assert_int_equal(zmtp_dec_feed(&d, g, ZMTP_GREETING_SIZE), FERRY_EPROTO);
    assert_non_null(d.why);
    assert_int_equal(r.greetings, 0);
    rec_end(&r, &d);
}

static void test_greeting_rejected(void **state)
{
    (void)state;
    unsigned char g[ZMTP_GREETING_SIZE];

    memset(g, 0, sizeof g); /* an HTTP client that dialled the wrong port */
    memcpy(g, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27);
    reject_at(g, 0);

    memcpy(g, G1, sizeof g); /* signature end with LSB 0: ZMTP 1.0 */
    g[9] = 0x7e;
    reject_at(g, 9);

    /* major 0 is ZMTP 1.0 with a revision, 1 is 2.0; 2 was never used (libzmq
     * would take it as 3.1, ferry refuses it) */
    for (unsigned char major = 0; major < 3; major++) {
        memcpy(g, G1, sizeof g);
        g[10] = major;
        reject_at(g, 10);
    }

    memcpy(g, G1, sizeof g);
    memcpy(g + 12, "PLAIN\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 20);
    reject_at(g, 12);

    memcpy(g, G1, sizeof g); /* libzmq compares all 20 octets: no spaces */
    memset(g + 16, ' ', 16);
    reject_at(g, 16);

    memcpy(g, G1, sizeof g);
    memcpy(g + 12, "null", 4);
    reject_at(g, 12);

    memcpy(g, G1, sizeof g); /* a stray octet in the very last mechanism position */
    g[31] = 'X';
    reject_at(g, 31);
}

/* --- commands and READY metadata ------------------------------------------------- */

struct ready_vec {
    const unsigned char *v;
    size_t len;
    const char *type;
    int identity;
};

static const struct ready_vec readies[] = {
    {R1, sizeof R1, "PUSH", 0}, {R2, sizeof R2, "PULL", 0}, {R3, sizeof R3, "DEALER", 1},
    {R4, sizeof R4, "REQ", 1},  {R5, sizeof R5, "SUB", 0},
};

/* Splits a whole command frame (short header) into name and data. */
static void split_frame(const unsigned char *f, size_t len, const unsigned char **data,
                        size_t *dlen, const char *want)
{
    const unsigned char *name;
    size_t nlen;
    assert_true(len >= 2);
    assert_int_equal(f[0], ZMTP_COMMAND);
    assert_int_equal(f[1], len - 2);
    assert_int_equal(zmtp_cmd_split(f + 2, len - 2, &name, &nlen, data, dlen), 0);
    assert_true(zmtp_cmd_is(name, nlen, want));
}

static void test_ready_vectors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof readies / sizeof readies[0]; i++) {
        const struct ready_vec *rv = &readies[i];
        const unsigned char *name, *data, *val;
        size_t nlen, dlen, vlen;
        assert_int_equal(zmtp_cmd_split(rv->v + 2, rv->len - 2, &name, &nlen, &data, &dlen), 0);
        assert_int_equal(nlen, 5);
        assert_true(zmtp_cmd_is(name, nlen, "READY"));
        assert_false(zmtp_cmd_is(name, nlen, "ready")); /* names are exact, as in libzmq */
        assert_false(zmtp_cmd_is(name, nlen, "READ"));
        assert_false(zmtp_cmd_is(name, nlen, "READYX"));
        assert_ptr_equal(data, rv->v + 8);
        assert_int_equal(dlen, rv->len - 8);

        assert_int_equal(zmtp_meta_find(data, dlen, "Socket-Type", &val, &vlen), 1);
        assert_int_equal(vlen, strlen(rv->type));
        assert_memory_equal(val, rv->type, vlen);

        /* RFC 37: property names are case-insensitive */
        val = NULL;
        assert_int_equal(zmtp_meta_find(data, dlen, "socket-type", &val, &vlen), 1);
        assert_int_equal(vlen, strlen(rv->type));
        assert_memory_equal(val, rv->type, vlen);
        assert_int_equal(zmtp_meta_find(data, dlen, "SOCKET-TYPE", &val, &vlen), 1);

        assert_int_equal(zmtp_meta_find(data, dlen, "Socket-Typ", &val, &vlen), 0);
        assert_int_equal(zmtp_meta_find(data, dlen, "Socket-Types", &val, &vlen), 0);
        assert_int_equal(zmtp_meta_find(data, dlen, "X-Foo", &val, &vlen), 0);

        vlen = 99;
        int id = zmtp_meta_find(data, dlen, "Identity", &val, &vlen);
        assert_int_equal(id, rv->identity);
        if (rv->identity) {
            assert_int_equal(vlen, 0);
            assert_ptr_equal(val, rv->v + rv->len); /* at the end of the body */
        }
    }

    /* a READY with no properties (libzmq accepts it): nothing found, not malformed */
    static const unsigned char empty[] = {0x04, 0x06, 0x05, 'R', 'E', 'A', 'D', 'Y'};
    const unsigned char *data, *val;
    size_t dlen, vlen;
    split_frame(empty, sizeof empty, &data, &dlen, "READY");
    assert_int_equal(dlen, 0);
    assert_int_equal(zmtp_meta_find(data, dlen, "Socket-Type", &val, &vlen), 0);

    /* the other commands of section 8 */
    split_frame(E1, sizeof E1, &data, &dlen, "ERROR");
    assert_int_equal(dlen, 4);
    assert_memory_equal(data,
                        "\x03"
                        "400",
                        4);
    split_frame(S1, sizeof S1, &data, &dlen, "SUBSCRIBE");
    assert_int_equal(dlen, 3);
    assert_memory_equal(data, "abc", 3);
    split_frame(S3, sizeof S3, &data, &dlen, "SUBSCRIBE");
    assert_int_equal(dlen, 0);
    split_frame(S2, sizeof S2, &data, &dlen, "CANCEL");
    assert_int_equal(dlen, 3);
    split_frame(P1, sizeof P1, &data, &dlen, "PING");
    assert_int_equal(dlen, 2);
    assert_int_equal(data[0] << 8 | data[1], 50);
    split_frame(P4, sizeof P4, &data, &dlen, "PONG");
    assert_int_equal(dlen, 0);
}

static void test_ready_malformed(void **state)
{
    (void)state;
    const unsigned char *val;
    size_t vlen;
    /* R1's properties: 0b "Socket-Type" 00 00 00 04 "PUSH", 20 octets */
    const unsigned char *props = R1 + 8;
    const size_t plen = sizeof R1 - 8;
    assert_int_equal(plen, 20);
    unsigned char p[64];

    /* READY plus one trailing octet, zero or not: malformed even though
     * Socket-Type itself is whole (libzmq closes on it) */
    memcpy(p, props, plen);
    p[plen] = 0x00;
    assert_int_equal(zmtp_meta_find(p, plen + 1, "Socket-Type", &val, &vlen), -1);
    p[plen] = 0x0b;
    assert_int_equal(zmtp_meta_find(p, plen + 1, "Socket-Type", &val, &vlen), -1);
    assert_int_equal(zmtp_meta_find(p, plen + 1, "Identity", &val, &vlen), -1);

    /* every truncation of the property is malformed: inside the name, inside
     * the 4-octet value length, inside the value */
    for (size_t cut = 1; cut < plen; cut++)
        if (zmtp_meta_find(props, cut, "Socket-Type", &val, &vlen) != -1)
            fail_msg("properties cut to %zu octets not refused", cut);

    /* a value length far past the end, and one that would wrap a 32-bit sum */
    memcpy(p, props, plen);
    memcpy(p + 12, "\x00\x00\x00\x05", 4); /* 5, with 4 there */
    assert_int_equal(zmtp_meta_find(p, plen, "Socket-Type", &val, &vlen), -1);
    memcpy(p + 12, "\xff\xff\xff\xff", 4);
    assert_int_equal(zmtp_meta_find(p, plen, "Socket-Type", &val, &vlen), -1);

    /* a property name of length 0 */
    static const unsigned char zero_name[] = {0x00, 0x00, 0x00, 0x00, 0x00};
    assert_int_equal(zmtp_meta_find(zero_name, sizeof zero_name, "Socket-Type", &val, &vlen), -1);

    /* malformed command bodies */
    const unsigned char *name, *data;
    size_t nlen, dlen;
    assert_int_equal(zmtp_cmd_split(R1 + 2, 0, &name, &nlen, &data, &dlen), -1);
    assert_int_equal(zmtp_cmd_split((const unsigned char *)"\x00", 1, &name, &nlen, &data, &dlen),
                     -1);
    assert_int_equal(
        zmtp_cmd_split((const unsigned char *)"\x05READ", 5, &name, &nlen, &data, &dlen), -1);
    assert_int_equal(
        zmtp_cmd_split((const unsigned char *)"\x05READY", 6, &name, &nlen, &data, &dlen), 0);
    assert_int_equal(dlen, 0);
}

static void test_ready_encode(void **state)
{
    (void)state;
    unsigned char out[128];
    for (size_t i = 0; i < sizeof readies / sizeof readies[0]; i++) {
        const struct ready_vec *rv = &readies[i];
        memset(out, 0xaa, sizeof out);
        assert_int_equal(zmtp_ready(out, sizeof out, rv->type, rv->identity), rv->len);
        assert_memory_equal(out, rv->v, rv->len);
        assert_int_equal(out[rv->len], 0xaa);

        /* an exact fit works; one octet less writes nothing and returns 0 */
        assert_int_equal(zmtp_ready(out, rv->len, rv->type, rv->identity), rv->len);
        memset(out, 0xaa, sizeof out);
        assert_int_equal(zmtp_ready(out, rv->len - 1, rv->type, rv->identity), 0);
        for (size_t j = 0; j < sizeof out; j++)
            assert_int_equal(out[j], 0xaa);
    }
    assert_int_equal(zmtp_ready(out, sizeof R1, "PUSH", 0), sizeof R1);
    assert_memory_equal(out, R1, sizeof R1);
    assert_int_equal(zmtp_ready(out, sizeof R4, "REQ", 1), sizeof R4);
    assert_memory_equal(out, R4, sizeof R4);
    assert_int_equal(zmtp_ready(out, 0, "PUSH", 0), 0);
    assert_int_equal(zmtp_ready(out, 2, "PUSH", 0), 0);
}

static void test_frame_hdr(void **state)
{
    (void)state;
    unsigned char h[ZMTP_HDR_MAX];
    assert_int_equal(zmtp_frame_hdr(h, 0, 255), 2);
    assert_memory_equal(h, F4, 2);
    assert_int_equal(zmtp_frame_hdr(h, 0, 256), 9);
    assert_memory_equal(h, F5, 9);
    assert_int_equal(zmtp_frame_hdr(h, 0, 300), 9);
    assert_memory_equal(h, F6, 9);
    assert_int_equal(zmtp_frame_hdr(h, ZMTP_MORE, 65536), 9);
    assert_memory_equal(h, F7, 9);
    assert_int_equal(zmtp_frame_hdr(h, ZMTP_COMMAND, 300), 9);
    assert_memory_equal(h, C1, 9);
    assert_int_equal(zmtp_frame_hdr(h, ZMTP_MORE, 0), 2);
    assert_memory_equal(h, F3, 2);
    assert_int_equal(zmtp_frame_hdr(h, 0, 5), 2);
    assert_memory_equal(h, F1, 2);
    assert_int_equal(zmtp_frame_hdr(h, ZMTP_COMMAND, 7), 2);
    assert_memory_equal(h, P1, 2);
    static const unsigned char big[] = {0x03, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe};
    assert_int_equal(zmtp_frame_hdr(h, ZMTP_MORE, (UINT64_C(1) << 63) - 2), 9);
    assert_memory_equal(h, big, 9);
}

/* zmtp_command(name, data) must give exactly the vector, fit in exactly its
 * length and refuse one octet less without writing. */
static void command_is(const char *name, const void *data, size_t len, const unsigned char *v,
                       size_t vlen)
{
    unsigned char out[400];
    memset(out, 0xaa, sizeof out);
    assert_int_equal(zmtp_command(out, sizeof out, name, data, len), vlen);
    assert_memory_equal(out, v, vlen);
    assert_int_equal(out[vlen], 0xaa);
    assert_int_equal(zmtp_command(out, vlen, name, data, len), vlen);
    memset(out, 0xaa, sizeof out);
    assert_int_equal(zmtp_command(out, vlen - 1, name, data, len), 0);
    assert_int_equal(out[0], 0xaa);
}

static void test_command_encode(void **state)
{
    (void)state;
    command_is("SUBSCRIBE", "abc", 3, S1, sizeof S1);
    command_is("CANCEL", "abc", 3, S2, sizeof S2);
    command_is("SUBSCRIBE", NULL, 0, S3, sizeof S3);
    command_is("PING", "\x00\x32", 2, P1, sizeof P1);
    command_is("PING",
               "\x00\x00"
               "ab",
               4, P2, sizeof P2);
    command_is("PONG", "ab", 2, P3, sizeof P3);
    command_is("PONG", NULL, 0, P4, sizeof P4);
    command_is("ERROR",
               "\x03"
               "400",
               4, E1, sizeof E1);

    /* a 300-octet body takes the long header C1 */
    unsigned char data[298], want[9 + 300];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (unsigned char)(i * 13 + 1);
    memcpy(want, C1, sizeof C1);
    want[9] = 1;
    want[10] = 'X';
    memcpy(want + 11, data, sizeof data);
    command_is("X", data, sizeof data, want, sizeof want);

    /* names of 0 or more than 255 octets cannot be written */
    unsigned char out[600];
    char name[257];
    memset(name, 'A', 256);
    name[256] = 0;
    assert_int_equal(zmtp_command(out, sizeof out, "", "abc", 3), 0);
    assert_int_equal(zmtp_command(out, sizeof out, name, NULL, 0), 0);
    name[255] = 0; /* 255 is the longest; its 256-octet body needs the long header */
    assert_int_equal(zmtp_command(out, sizeof out, name, NULL, 0), 9 + 256);
    static const unsigned char hdr256[] = {0x06, 0, 0, 0, 0, 0, 0, 0x01, 0x00};
    assert_memory_equal(out, hdr256, 9);
    assert_int_equal(out[9], 255);
}

/* --- the decoder over a whole stream -------------------------------------------- */

/* The stream of the split tests and what the decoder must report for it. */
struct stream {
    struct buf s;      /* the octets */
    struct buf expect; /* the log it must produce */
    size_t long_body;  /* where the 300-octet body starts */
};

static void add_raw(struct stream *st, const unsigned char *f, size_t len, int flags,
                    size_t hdr_len)
{
    buf_put(&st->s, f, len);
    log_frame(&st->expect, flags, f + hdr_len, len - hdr_len);
}

static void add_frame(struct stream *st, int flags, const unsigned char *body, size_t len)
{
    unsigned char h[ZMTP_HDR_MAX];
    buf_put(&st->s, h, zmtp_frame_hdr(h, flags, len));
    buf_put(&st->s, body, len);
    log_frame(&st->expect, flags, body, len);
}

static void stream_build(struct stream *st)
{
    static unsigned char pat[300];
    for (size_t i = 0; i < sizeof pat; i++)
        pat[i] = (unsigned char)(i * 7 + (i >> 8));
    memset(st, 0, sizeof *st);
    buf_put(&st->s, G1, sizeof G1);
    add_raw(st, R1, sizeof R1, ZMTP_COMMAND, 2);
    add_raw(st, F1, sizeof F1, 0, 2);
    add_raw(st, F2, sizeof F2, ZMTP_MORE, 2);
    buf_put(&st->s, F6, sizeof F6); /* 300 octets, long header */
    st->long_body = st->s.n;
    buf_put(&st->s, pat, 300);
    log_frame(&st->expect, 0, pat, 300);
    add_frame(st, 0, NULL, 0);                /* an empty final frame */
    add_raw(st, F3, sizeof F3, ZMTP_MORE, 2); /* the empty delimiter */
    add_frame(st, ZMTP_MORE, (const unsigned char *)"A", 1);
    add_raw(st, P1, sizeof P1, ZMTP_COMMAND, 2); /* a PING inside a multipart message */
    add_frame(st, ZMTP_MORE, (const unsigned char *)"B", 1);
    add_frame(st, 0, (const unsigned char *)"C", 1);
    /* what libzmq tolerates: a long header on a short body, reserved bits */
    static const unsigned char long_short[] = {0x02, 0, 0, 0, 0, 0, 0, 0, 3, 'a', 'b', 'c'};
    add_raw(st, long_short, sizeof long_short, 0, 9);
    static const unsigned char reserved[] = {0xf8, 0x01, 'x'};
    add_raw(st, reserved, sizeof reserved, 0, 2);
    add_frame(st, ZMTP_MORE, pat, 256);
    add_raw(st, S1, sizeof S1, ZMTP_COMMAND, 2);
    add_frame(st, 0, NULL, 0); /* the stream ends on an empty frame */
}

static void stream_free(struct stream *st)
{
    buf_free(&st->s);
    buf_free(&st->expect);
}

/* After a whole stream: one greeting, the expected frames, nothing held. */
static void stream_check(struct stream *st, struct rec *r, struct zmtp_dec *d)
{
    size_t room = 0;
    assert_int_equal(r->greetings, 1);
    assert_int_equal(r->minor, 1);
    assert_int_equal(r->live, 0);
    assert_int_equal(r->allocs, r->frames);
    assert_null(zmtp_dec_room(d, &room));
    assert_int_equal(r->log.n, st->expect.n);
    assert_memory_equal(r->log.p, st->expect.p, st->expect.n);
    rec_end(r, d);
}

static void test_stream_splits(void **state)
{
    (void)state;
    struct stream st;
    struct rec r;
    struct zmtp_dec d;
    stream_build(&st);

    /* (a) all at once */
    rec_start(&r, &d, 1 << 20);
    assert_int_equal(zmtp_dec_feed(&d, st.s.p, st.s.n), 0);
    stream_check(&st, &r, &d);

    /* (b) one octet at a time */
    rec_start(&r, &d, 1 << 20);
    for (size_t i = 0; i < st.s.n; i++)
        assert_int_equal(zmtp_dec_feed(&d, st.s.p + i, 1), 0);
    stream_check(&st, &r, &d);

    /* (c) random pieces, empty feeds among them, and now and then the body
     * written straight into zmtp_dec_room as the transport does */
    uint32_t seed = 0x2545f491;
    for (int iter = 0; iter < 400; iter++) {
        rec_start(&r, &d, 1 << 20);
        size_t off = 0;
        while (off < st.s.n) {
            uint32_t x = rnd(&seed);
            size_t n = (x & 15) == 0 ? (x >> 8) % 400 : (x >> 8) % 24;
            if (n > st.s.n - off)
                n = st.s.n - off;
            size_t room;
            unsigned char *dst = zmtp_dec_room(&d, &room);
            if (dst != NULL && (x & 0x30) == 0 && n > 0) {
                if (n > room)
                    n = room;
                memcpy(dst, st.s.p + off, n);
                assert_int_equal(zmtp_dec_filled(&d, n), 0);
            } else {
                assert_int_equal(zmtp_dec_feed(&d, st.s.p + off, n), 0);
            }
            off += n;
        }
        stream_check(&st, &r, &d);
    }
    stream_free(&st);
}

/* A frame header is only a claim: the body's buffer starts at one chunk
 * and grows with the bytes that come, never to the announced size at once;
 * a refused growth stops the decoder and leaks nothing. */
static void test_header_is_not_a_promise(void **state)
{
    (void)state;
    struct rec r;
    struct zmtp_dec d;
    unsigned char g[ZMTP_GREETING_SIZE], h[ZMTP_HDR_MAX];
    enum { BODY = 300000 };
    static unsigned char body[BODY];
    for (size_t i = 0; i < BODY; i++)
        body[i] = (unsigned char)(i * 7);
    zmtp_greeting(g);
    size_t hl = zmtp_frame_hdr(h, 0, BODY);
    rec_start(&r, &d, 1 << 20);
    assert_int_equal(zmtp_dec_feed(&d, g, sizeof g), 0);
    assert_int_equal(zmtp_dec_feed(&d, h, hl), 0);
    assert_int_equal(r.allocs, 1);
    size_t room;
    assert_non_null(zmtp_dec_room(&d, &room));
    assert_int_equal(room, ZMTP_DEC_CHUNK); /* not 300,000 */
    for (size_t off = 0; off < BODY; off += 1000)
        assert_int_equal(zmtp_dec_feed(&d, body + off, BODY - off < 1000 ? BODY - off : 1000), 0);
    assert_int_equal(r.frames, 1);
    assert_true(r.grows >= 2 && r.grows <= 4); /* fourfold: 64K, 256K, 300,000 */
    assert_memory_equal(r.log.p + r.log.n - BODY, body, BODY);
    rec_end(&r, &d);

    /* growth refused half-way: FERRY_ENOMEM, the partial frame freed */
    rec_start(&r, &d, 1 << 20);
    assert_int_equal(zmtp_dec_feed(&d, g, sizeof g), 0);
    assert_int_equal(zmtp_dec_feed(&d, h, hl), 0);
    assert_int_equal(zmtp_dec_feed(&d, body, ZMTP_DEC_CHUNK), 0);
    r.fail_alloc = 1;
    assert_int_equal(zmtp_dec_feed(&d, body + ZMTP_DEC_CHUNK, 10), FERRY_ENOMEM);
    assert_int_equal(r.frames, 0);
    assert_int_equal(r.live, 1);
    rec_end(&r, &d);

    /* up to ZMTP_DEC_FIRST (64 KiB and a CURVE box's overhead) the whole
     * body comes at once; one octet more starts at a chunk and grows */
    for (size_t n = ZMTP_DEC_FIRST; n <= ZMTP_DEC_FIRST + 1; n++) {
        hl = zmtp_frame_hdr(h, 0, n);
        rec_start(&r, &d, 1 << 20);
        assert_int_equal(zmtp_dec_feed(&d, g, sizeof g), 0);
        assert_int_equal(zmtp_dec_feed(&d, h, hl), 0);
        assert_non_null(zmtp_dec_room(&d, &room));
        assert_int_equal(room, n == ZMTP_DEC_FIRST ? n : ZMTP_DEC_CHUNK);
        assert_int_equal(zmtp_dec_feed(&d, body, n), 0);
        assert_int_equal(r.frames, 1);
        assert_int_equal(r.grows, n == ZMTP_DEC_FIRST ? 0 : 1);
        assert_memory_equal(r.log.p + r.log.n - n, body, n);
        rec_end(&r, &d);
    }
}

/* The stream cut after every possible octet, then dropped: what was
 * delivered is a prefix of the expected frames, and zmtp_dec_fini frees a
 * frame cut short. */
static void test_stream_cut(void **state)
{
    (void)state;
    struct stream st;
    struct rec r;
    struct zmtp_dec d;
    stream_build(&st);
    for (size_t cut = 0; cut <= st.s.n; cut++) {
        rec_start(&r, &d, 1 << 20);
        assert_int_equal(zmtp_dec_feed(&d, st.s.p, cut), 0);
        assert_true(r.log.n <= st.expect.n);
        if (r.log.n)
            assert_memory_equal(r.log.p, st.expect.p, r.log.n);
        assert_int_equal(r.greetings, cut >= ZMTP_GREETING_SIZE ? 1 : 0);
        assert_true(r.live == 0 || r.live == 1);
        rec_end(&r, &d);
    }

    /* in the middle of the 300-octet body the decoder holds one block, and
     * says where the other 150 octets go */
    size_t cut = st.long_body + 150, room = 0;
    rec_start(&r, &d, 1 << 20);
    assert_int_equal(zmtp_dec_feed(&d, st.s.p, cut), 0);
    assert_int_equal(r.live, 1);
    assert_non_null(zmtp_dec_room(&d, &room));
    assert_int_equal(room, 150);
    rec_end(&r, &d);
    stream_free(&st);
}

static void test_dec_room(void **state)
{
    (void)state;
    enum { BIG = 100000, CHUNK = 7000 };
    unsigned char *src = malloc(BIG);
    assert_non_null(src);
    for (size_t i = 0; i < BIG; i++)
        src[i] = (unsigned char)(i * 31 + (i >> 9));
    struct rec r;
    struct zmtp_dec d;
    struct buf want = {0};
    unsigned char h[ZMTP_HDR_MAX];
    size_t room, hl = zmtp_frame_hdr(h, ZMTP_MORE, BIG);

    rec_start(&r, &d, 1 << 20);
    assert_null(zmtp_dec_room(&d, &room)); /* greeting: no body */
    assert_int_equal(zmtp_dec_feed(&d, G1, sizeof G1), 0);
    assert_null(zmtp_dec_room(&d, &room)); /* between frames: no body */
    assert_int_equal(zmtp_dec_feed(&d, h, hl), 0);
    size_t off = 0;
    unsigned char *dst;
    while ((dst = zmtp_dec_room(&d, &room)) != NULL) {
        assert_true(room > 0 && room <= BIG - off); /* what fits now: the buffer grows */
        size_t n = room < CHUNK ? room : CHUNK;
        memcpy(dst, src + off, n);
        assert_int_equal(zmtp_dec_filled(&d, n), 0);
        off += n;
        assert_int_equal(r.frames, off == BIG ? 1 : 0);
    }
    assert_int_equal(off, BIG);
    log_frame(&want, ZMTP_MORE, src, BIG);

    /* the next frame: header and 5000 octets fed, the rest put in place */
    assert_int_equal(zmtp_dec_feed(&d, h, hl), 0);
    assert_int_equal(zmtp_dec_feed(&d, src, 5000), 0);
    for (off = 5000; off < BIG; off += room) {
        dst = zmtp_dec_room(&d, &room);
        assert_non_null(dst);
        assert_true(room <= BIG - off);
        memcpy(dst, src + off, room);
        assert_int_equal(zmtp_dec_filled(&d, room), 0);
    }
    log_frame(&want, ZMTP_MORE, src, BIG);

    /* and back to feeding */
    assert_int_equal(zmtp_dec_feed(&d, F1, sizeof F1), 0);
    log_frame(&want, 0, F1 + 2, 5);
    assert_int_equal(r.frames, 3);
    assert_int_equal(r.log.n, want.n);
    assert_memory_equal(r.log.p, want.p, want.n);

    /* claiming more than the room is refused, and the block is still freed */
    hl = zmtp_frame_hdr(h, 0, 10);
    assert_int_equal(zmtp_dec_feed(&d, h, hl), 0);
    assert_non_null(zmtp_dec_room(&d, &room));
    assert_int_equal(room, 10);
    assert_int_equal(zmtp_dec_filled(&d, 11), FERRY_EPROTO);
    assert_true(zmtp_dec_feed(&d, F1, sizeof F1) < 0);
    assert_int_equal(r.frames, 3);
    rec_end(&r, &d);
    buf_free(&want);
    free(src);
}

/* --- refusals -------------------------------------------------------------------- */

/* A decoder past G1 with max_frame; then f is fed and must give want. */
static void feed_after_greeting(const unsigned char *f, size_t len, uint64_t max_frame, int want,
                                struct rec *r, struct zmtp_dec *d)
{
    rec_start(r, d, max_frame);
    assert_int_equal(zmtp_dec_feed(d, G1, sizeof G1), 0);
    assert_int_equal(zmtp_dec_feed(d, f, len), want);
    if (want < 0) {
        assert_non_null(d->why);
        assert_true(zmtp_dec_feed(d, F1, sizeof F1) < 0);
    }
}

static void test_max_frame(void **state)
{
    (void)state;
    struct rec r;
    struct zmtp_dec d;
    unsigned char f[2 + 31];
    memset(f, 'z', sizeof f);

    f[0] = 0, f[1] = 30; /* equal to the limit: accepted */
    feed_after_greeting(f, 2 + 30, 30, 0, &r, &d);
    assert_int_equal(r.frames, 1);
    rec_end(&r, &d);

    f[1] = 31; /* one over, refused at its header, before any allocation */
    feed_after_greeting(f, 2, 30, FERRY_EMSGSIZE, &r, &d);
    assert_int_equal(r.allocs, 0);
    assert_int_equal(r.frames, 0);
    rec_end(&r, &d);

    /* the limit covers commands too (zmtp.md 3.6): a 26-octet READY body over 25 */
    feed_after_greeting(R1, sizeof R1, 25, FERRY_EMSGSIZE, &r, &d);
    assert_int_equal(r.allocs, 0);
    rec_end(&r, &d);

    /* 2^63 and 2^64-1 in a long header: refused without allocating */
    static const unsigned char huge[] = {0x02, 0x80, 0, 0, 0, 0, 0, 0, 0};
    feed_after_greeting(huge, sizeof huge, 30, FERRY_EMSGSIZE, &r, &d);
    assert_int_equal(r.allocs, 0);
    rec_end(&r, &d);
    static const unsigned char ones[] = {0x03, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    feed_after_greeting(ones, sizeof ones, 1 << 20, FERRY_EMSGSIZE, &r, &d);
    assert_int_equal(r.allocs, 0);
    rec_end(&r, &d);
}

static void test_command_with_more(void **state)
{
    (void)state;
    struct rec r;
    struct zmtp_dec d;
    /* a PING with MORE set: 0x05 */
    static const unsigned char ping_more[] = {0x05, 0x07, 0x04, 'P', 'I', 'N', 'G', 0x00, 0x32};
    feed_after_greeting(ping_more, sizeof ping_more, 1000, FERRY_EPROTO, &r, &d);
    assert_int_equal(r.allocs, 0);
    assert_int_equal(r.frames, 0);
    rec_end(&r, &d);

    /* the same with a long header: 0x07 */
    static const unsigned char long_more[] = {0x07, 0, 0, 0, 0, 0, 0, 0, 0x07};
    feed_after_greeting(long_more, sizeof long_more, 1000, FERRY_EPROTO, &r, &d);
    assert_int_equal(r.allocs, 0);
    rec_end(&r, &d);
}

static void test_callback_error(void **state)
{
    (void)state;
    struct rec r;
    struct zmtp_dec d;
    unsigned char s[ZMTP_GREETING_SIZE + sizeof R1 + sizeof F1 + sizeof F2];
    size_t n = 0;
    memcpy(s + n, G1, sizeof G1), n += sizeof G1;
    memcpy(s + n, R1, sizeof R1), n += sizeof R1;
    memcpy(s + n, F1, sizeof F1), n += sizeof F1;
    memcpy(s + n, F2, sizeof F2), n += sizeof F2;

    /* the frame callback refuses the second frame: F2 is never decoded */
    rec_start(&r, &d, 1000);
    r.frame_err = FERRY_ECONNRESET;
    r.err_at = 1;
    assert_int_equal(zmtp_dec_feed(&d, s, n), FERRY_ECONNRESET);
    assert_int_equal(r.frames, 2);
    assert_int_equal(r.allocs, 2);
    assert_int_equal(r.live, 0);
    assert_non_null(d.why);
    assert_true(zmtp_dec_feed(&d, F1, sizeof F1) < 0);
    assert_int_equal(r.frames, 2);
    rec_end(&r, &d);

    /* the same when the frame was filled through zmtp_dec_room */
    rec_start(&r, &d, 1000);
    r.frame_err = FERRY_EPEERTYPE;
    r.err_at = 0;
    assert_int_equal(zmtp_dec_feed(&d, s, ZMTP_GREETING_SIZE + 2), 0);
    size_t room;
    unsigned char *dst = zmtp_dec_room(&d, &room);
    assert_non_null(dst);
    assert_int_equal(room, sizeof R1 - 2);
    memcpy(dst, R1 + 2, room);
    assert_int_equal(zmtp_dec_filled(&d, room), FERRY_EPEERTYPE);
    assert_true(zmtp_dec_feed(&d, F1, sizeof F1) < 0);
    assert_int_equal(r.frames, 1);
    rec_end(&r, &d);

    /* the greeting callback refuses: nothing after it is decoded */
    rec_start(&r, &d, 1000);
    r.greet_err = FERRY_ENOTSUP;
    assert_int_equal(zmtp_dec_feed(&d, s, n), FERRY_ENOTSUP);
    assert_int_equal(r.greetings, 1);
    assert_int_equal(r.allocs, 0);
    assert_true(zmtp_dec_feed(&d, F1, sizeof F1) < 0);
    assert_int_equal(r.greetings, 1);
    rec_end(&r, &d);

    /* alloc fails: FERRY_ENOMEM, and it stays failed */
    rec_start(&r, &d, 1000);
    r.fail_alloc = 1;
    assert_int_equal(zmtp_dec_feed(&d, s, n), FERRY_ENOMEM);
    assert_int_equal(r.allocs, 1);
    assert_int_equal(r.frames, 0);
    assert_non_null(d.why);
    assert_true(zmtp_dec_feed(&d, F1, sizeof F1) < 0);
    assert_int_equal(r.allocs, 1);
    rec_end(&r, &d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greeting_bytes),
        cmocka_unit_test(test_greeting_bytewise),
        cmocka_unit_test(test_greeting_rejected),
        cmocka_unit_test(test_ready_vectors),
        cmocka_unit_test(test_ready_malformed),
        cmocka_unit_test(test_ready_encode),
        cmocka_unit_test(test_frame_hdr),
        cmocka_unit_test(test_command_encode),
        cmocka_unit_test(test_stream_splits),
        cmocka_unit_test(test_stream_cut),
        cmocka_unit_test(test_header_is_not_a_promise),
        cmocka_unit_test(test_dec_room),
        cmocka_unit_test(test_max_frame),
        cmocka_unit_test(test_command_with_more),
        cmocka_unit_test(test_callback_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
