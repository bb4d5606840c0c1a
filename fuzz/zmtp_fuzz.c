/*
 * zmtp_fuzz.c - libFuzzer target for the ZMTP 3.1 decoder
 * (src/transport/zmtp/zmtp.c), the part of ferry that reads what a remote
 * peer sends.
 *
 * Each input is decoded twice by a fresh decoder: (a) in one feed, (b) in
 * pieces whose sizes come from octets 1-8 of the input. Those octets are the
 * greeting's padding, which the decoder must not look at, so the fuzzer can
 * vary the split without breaking the greeting. An octet with its top bit
 * set writes its piece through zmtp_dec_room/zmtp_dec_filled when a body is
 * in progress, as the transport does for large bodies. The two runs must
 * report the same thing (greeting, every frame, the first error): the split
 * of a stream must not change what it means, so a difference traps.
 *
 * Command bodies go through zmtp_cmd_split, zmtp_cmd_is and zmtp_meta_find
 * the way the transport uses them, and every octet they point at is read,
 * so ASan sees any out-of-bounds answer. Every handle is freed, and a run
 * that ends with a block still allocated traps (LSan would also say so).
 *
 * Build and run (clang; make_corpus.c writes the seeds):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -std=c11 \
 *       -Iinclude -Isrc fuzz/zmtp_fuzz.c src/transport/zmtp/zmtp.c -o zmtp_fuzz
 *   cc -D_GNU_SOURCE -std=c11 -Iinclude -Isrc fuzz/make_corpus.c \
 *       src/transport/zmtp/zmtp.c -o make_corpus
 *   ./make_corpus corpus && ./zmtp_fuzz corpus
 */
#include "transport/zmtp/zmtp.h"

#include "ferry.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FRAME (UINT64_C(1) << 20)

/* A broken invariant: a crash libFuzzer reports with the input. */
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            __builtin_trap();                                                                      \
    } while (0)

/* What one run saw, reduced to numbers the two runs can compare. */
struct run {
    long live;       /* blocks allocated and not freed */
    int greetings;   /* calls to greeting */
    int minor;       /* what it was told */
    unsigned frames; /* calls to frame */
    uint64_t hash;   /* FNV-1a over everything the callbacks were given */
};

static void mix(struct run *r, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        r->hash ^= b[i];
        r->hash *= UINT64_C(0x100000001b3);
    }
}

static void mix_int(struct run *r, uint64_t v)
{
    unsigned char b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(v >> (8 * i));
    mix(r, b, sizeof b);
}

static void *fz_alloc(void *ctx, uint64_t size, unsigned char **body)
{
    struct run *r = ctx;
    /* the decoder must have refused anything larger itself */
    CHECK(size <= MAX_FRAME);
    unsigned char *p = malloc(size ? (size_t)size : 1); /* malloc(0) may be NULL */
    if (p == NULL)
        return NULL;
    r->live++;
    *body = p;
    return p;
}

static void *fz_grow(void *ctx, void *handle, uint64_t cap, unsigned char **body)
{
    (void)ctx;
    CHECK(cap <= MAX_FRAME);
    unsigned char *p = realloc(handle, (size_t)cap);
    if (p == NULL)
        return NULL;
    *body = p;
    return p;
}

static void fz_free(void *ctx, void *handle)
{
    struct run *r = ctx;
    CHECK(handle != NULL);
    r->live--;
    free(handle);
}

static int fz_greeting(void *ctx, int minor)
{
    struct run *r = ctx;
    r->greetings++;
    r->minor = minor;
    mix_int(r, (uint64_t)minor);
    /* one minor value the "connection" refuses, so that path is walked too */
    return minor == 0x66 ? FERRY_ENOTSUP : 0;
}

/* Looks prop up in READY properties and reads every octet of the answer.
 * A name differing only in case must give the same answer (RFC 37). */
static void meta(struct run *r, const unsigned char *data, size_t dlen, const char *prop,
                 const char *other_case)
{
    const unsigned char *val = NULL, *val2 = NULL;
    size_t vlen = 0, vlen2 = 0;
    int f = zmtp_meta_find(data, dlen, prop, &val, &vlen);
    CHECK(f >= -1 && f <= 1);
    mix_int(r, (uint64_t)(f + 1));
    if (f == 1) {
        CHECK(val >= data && vlen <= dlen && (size_t)(val - data) <= dlen - vlen);
        mix(r, val, vlen);
    }
    int f2 = zmtp_meta_find(data, dlen, other_case, &val2, &vlen2);
    CHECK(f2 == f);
    if (f == 1)
        CHECK(val2 == val && vlen2 == vlen);
}

/* A command as the transport treats it; returns the connection's answer. */
static int command(struct run *r, const unsigned char *body, size_t len)
{
    const unsigned char *name, *data;
    size_t nlen, dlen;
    if (zmtp_cmd_split(body, len, &name, &nlen, &data, &dlen) < 0) {
        mix(r, "malformed", 9);
        return 0;
    }
    CHECK(nlen >= 1 && name == body + 1 && data == name + nlen && 1 + nlen + dlen == len);
    mix(r, name, nlen);
    if (zmtp_cmd_is(name, nlen, "READY")) {
        meta(r, data, dlen, "Socket-Type", "socket-TYPE");
        meta(r, data, dlen, "Identity", "IDENTITY");
        meta(r, data, dlen, "X-Foo", "x-foo");
    } else if (zmtp_cmd_is(name, nlen, "PING")) {
        if (dlen >= 2) { /* TTL, then at most 16 octets of context echoed in a PONG */
            mix_int(r, (uint64_t)(data[0] << 8 | data[1]));
            mix(r, data + 2, dlen - 2 > 16 ? 16 : dlen - 2);
        }
    } else if (zmtp_cmd_is(name, nlen, "ERROR")) {
        if (dlen >= 1 && data[0] <= dlen - 1)
            mix(r, data + 1, data[0]);
        return FERRY_ECONNRESET; /* the peer gave up: the transport drops it */
    } else if (zmtp_cmd_is(name, nlen, "SUBSCRIBE") || zmtp_cmd_is(name, nlen, "CANCEL") ||
               zmtp_cmd_is(name, nlen, "PONG")) {
        mix(r, data, dlen);
    }
    return 0;
}

static int fz_frame(void *ctx, int flags, void *handle, unsigned char *body, uint64_t size)
{
    struct run *r = ctx;
    CHECK(handle != NULL && size <= MAX_FRAME);
    CHECK(!((flags & ZMTP_COMMAND) && (flags & ZMTP_MORE))); /* refused by the decoder */
    r->frames++;
    mix_int(r, (uint64_t)flags);
    mix_int(r, size);
    mix(r, body, (size_t)size);
    int rc = (flags & ZMTP_COMMAND) ? command(r, body, (size_t)size) : 0;
    fz_free(r, handle);
    return rc;
}

static const struct zmtp_dec_ops fz_ops = {
    .alloc = fz_alloc,
    .grow = fz_grow,
    .free = fz_free,
    .greeting = fz_greeting,
    .frame = fz_frame,
};

/* After an error the decoder stays failed and calls nobody. */
static void still_failed(struct zmtp_dec *d, struct run *r, const uint8_t *data, size_t size)
{
    unsigned frames = r->frames;
    int greetings = r->greetings;
    CHECK(d->why != NULL);
    CHECK(zmtp_dec_feed(d, data, size) < 0);
    CHECK(r->frames == frames && r->greetings == greetings);
}

/* (a) the whole input in one feed. */
static int run_whole(const uint8_t *data, size_t size, struct run *r)
{
    struct zmtp_dec d;
    memset(r, 0, sizeof *r);
    zmtp_dec_init(&d, &fz_ops, r, MAX_FRAME);
    int rc = zmtp_dec_feed(&d, data, size);
    CHECK(rc <= 0);
    if (rc < 0)
        still_failed(&d, r, data, size);
    zmtp_dec_fini(&d);
    CHECK(r->live == 0);
    return rc;
}

/* (b) the same input in pieces sized by octets 1-8 (fewer if it is short). */
static int run_pieces(const uint8_t *data, size_t size, struct run *r)
{
    struct zmtp_dec d;
    memset(r, 0, sizeof *r);
    zmtp_dec_init(&d, &fz_ops, r, MAX_FRAME);
    const uint8_t *table = data + 1;
    size_t k = size > 9 ? 8 : size > 1 ? size - 1 : 0;
    size_t off = 0, j = 0;
    int rc = 0;
    while (off < size && rc == 0) {
        uint8_t v = k ? table[j++ % k] : 1;
        size_t n = v & 0x7f;
        if (n == 0) { /* an empty read: must change nothing */
            rc = zmtp_dec_feed(&d, data + off, 0);
            if (rc < 0)
                break;
            n = 1;
        }
        if (n > size - off)
            n = size - off;
        size_t room = 0;
        unsigned char *dst = (v & 0x80) ? zmtp_dec_room(&d, &room) : NULL;
        if (dst != NULL) {
            CHECK(room > 0);
            if (n > room)
                n = room;
            memcpy(dst, data + off, n);
            rc = zmtp_dec_filled(&d, n);
        } else {
            rc = zmtp_dec_feed(&d, data + off, n);
        }
        CHECK(rc <= 0);
        off += n;
    }
    if (rc < 0)
        still_failed(&d, r, data, size);
    zmtp_dec_fini(&d);
    CHECK(r->live == 0);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct run a, b;
    int rca = run_whole(data, size, &a);
    int rcb = run_pieces(data, size, &b);
    CHECK(rca == rcb);
    CHECK(a.greetings == b.greetings && a.minor == b.minor);
    CHECK(a.frames == b.frames && a.hash == b.hash);
    return 0;
}
