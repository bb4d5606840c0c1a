/*
 * curve_fuzz.c - libFuzzer target for the CURVE codec
 * (src/transport/zmtp/curve.c): every command a peer can send, at each
 * step of the handshake and after it.
 *
 * The first octet picks what the rest is:
 *   0  a HELLO body, to a server
 *   1  an INITIATE body, to a server that took a real client's HELLO
 *   2  a WELCOME body, to a client that sent its HELLO
 *   3  a READY body, to a client that sent its INITIATE
 *   4  MESSAGE bodies (2-octet length, then the body), to an active server
 *   5  a mask XORed over a real handshake and two MESSAGEs, both ways: the
 *      commands stay almost valid, so the fuzzer reaches the checks behind
 *      the boxes (cookie, vouch, nonces, flags)
 * Every body is copied to a block of its exact size, so ASan sees any read
 * past it. What the codec returns must be consistent: a success hands back
 * pointers and lengths inside the body; a failure leaves the state failed.
 *
 * libsodium's random source is replaced by a fixed stream (ChaCha20 with a
 * zero key), so an input replays the same run.
 *
 * Build: fuzz/run.sh builds it next to zmtp_fuzz.
 */
#include "transport/zmtp/curve.h"
#include "transport/zmtp/zmtp.h"

#include "ferry.h"

#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            __builtin_trap();                                                                      \
    } while (0)

/* --- a fixed random source ------------------------------------------------------ */

static uint64_t rnd_pos;

static void rnd_buf(void *buf, size_t n)
{
    static const unsigned char key[crypto_stream_chacha20_KEYBYTES];
    unsigned char nonce[crypto_stream_chacha20_NONCEBYTES] = {0};
    memcpy(nonce, &rnd_pos, sizeof rnd_pos);
    crypto_stream_chacha20(buf, n, nonce, key);
    rnd_pos++;
}

static uint32_t rnd_u32(void)
{
    uint32_t v;
    rnd_buf(&v, sizeof v);
    return v;
}

static const char *rnd_name(void) { return "fixed"; }

static struct randombytes_implementation fixed = {
    .implementation_name = rnd_name, .random = rnd_u32, .buf = rnd_buf};

static const unsigned char server_sec[32] = {1, 2, 3}, client_sec[32] = {4, 5, 6};
static unsigned char server_pub[32];

/* --- helpers -------------------------------------------------------------------- */

/* A frame's body, copied to a block of its exact size. */
static unsigned char *body_of(const unsigned char *frame, size_t *len)
{
    size_t h = (frame[0] & ZMTP_LONG) ? 9 : 2;
    uint64_t v = 0;
    if (h == 9)
        for (int i = 0; i < 8; i++)
            v = v << 8 | frame[1 + i];
    else
        v = frame[1];
    *len = (size_t)v;
    unsigned char *b = malloc(*len ? *len : 1);
    memcpy(b, frame + h, *len);
    return b;
}

static unsigned char *copy(const unsigned char *p, size_t n)
{
    unsigned char *b = malloc(n ? n : 1);
    if (n)
        memcpy(b, p, n);
    return b;
}

/* A pointer the codec returned lies inside [b, b + n). */
static void inside(const unsigned char *b, size_t n, const unsigned char *p, size_t pn)
{
    CHECK(p >= b && pn <= n && (size_t)(p - b) <= n - pn);
    volatile unsigned char sink = 0;
    for (size_t i = 0; i < pn; i++)
        sink ^= p[i];
    (void)sink;
}

static const unsigned char meta[] = "\x0bSocket-Type\0\0\0\x04PUSH";

struct pair {
    struct zmtp_curve c, s;
    unsigned char out[ZC_FRAME_MAX];
    size_t n;
};

static void pair_init(struct pair *p)
{
    CHECK(zc_client_init(&p->c, client_sec, server_pub) == 0);
    CHECK(zc_server_init(&p->s, server_sec) == 0);
}

/* Runs the real handshake up to step (1 HELLO taken, 2 WELCOME taken, 3
 * INITIATE taken); a mask, if any, is XORed over each command first. */
static int handshake(struct pair *p, int step, const unsigned char *mask, size_t mlen)
{
    size_t k = 0, bl, ml;
    const unsigned char *m;
    unsigned char hello[ZC_FRAME_MAX];
    CHECK(zc_hello(&p->c, hello, sizeof hello) > 0);
    unsigned char *b = body_of(hello, &bl);
    for (size_t i = 0; i < bl && k < mlen; i++)
        b[i] ^= mask[k++];
    int rc = zc_on_hello(&p->s, b, bl, p->out, sizeof p->out, &p->n);
    free(b);
    if (rc != 0 || step < 2)
        return rc;
    b = body_of(p->out, &bl);
    for (size_t i = 0; i < bl && k < mlen; i++)
        b[i] ^= mask[k++];
    rc = zc_on_welcome(&p->c, b, bl, meta, sizeof meta - 1, p->out, sizeof p->out, &p->n);
    free(b);
    if (rc != 0 || step < 3)
        return rc;
    b = body_of(p->out, &bl);
    for (size_t i = 0; i < bl && k < mlen; i++)
        b[i] ^= mask[k++];
    rc = zc_on_initiate(&p->s, b, bl, &m, &ml);
    if (rc == 0)
        inside(b, bl, m, ml);
    free(b);
    if (rc != 0)
        return rc;
    rc = zc_ready(&p->s, meta, sizeof meta - 1, p->out, sizeof p->out, &p->n);
    CHECK(rc == 0);
    b = body_of(p->out, &bl);
    for (size_t i = 0; i < bl && k < mlen; i++)
        b[i] ^= mask[k++];
    rc = zc_on_ready(&p->c, b, bl, &m, &ml);
    if (rc == 0)
        inside(b, bl, m, ml);
    free(b);
    return rc;
}

/* One MESSAGE from `from` to `to`, masked. */
static void message(struct zmtp_curve *from, struct zmtp_curve *to, const unsigned char *mask,
                    size_t mlen)
{
    unsigned char w[256];
    size_t n = zc_encode(from, w, ZC_MORE, "fuzz", 4, "ed", 2);
    CHECK(n == zc_wire_size(6));
    size_t bl, dl;
    int f;
    unsigned char *b = body_of(w, &bl);
    for (size_t i = 0; i < bl && i < mlen; i++)
        b[i] ^= mask[i];
    if (zc_decode(to, b, bl, &f, &dl) == 0)
        inside(b, bl, b + ZC_MESSAGE_OVERHEAD, dl);
    free(b);
}

/* The failure contract: a refusal leaves the state failed, with a reason. */
static void refused(const struct zmtp_curve *c, int rc)
{
    CHECK(rc == 0 || (rc == FERRY_EPROTO && c->state == ZC_FAILED && c->why != NULL));
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    randombytes_set_implementation(&fixed);
    if (sodium_init() < 0)
        abort();
    crypto_scalarmult_base(server_pub, server_sec);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    rnd_pos = 0;
    int mode = data[0] % 6;
    const unsigned char *in = data + 1;
    size_t n = size - 1;
    struct pair p;
    pair_init(&p);
    unsigned char *b = copy(in, n);
    const unsigned char *m;
    size_t ml, dl;
    int rc, f;
    switch (mode) {
    case 0:
        refused(&p.s, zc_on_hello(&p.s, b, n, p.out, sizeof p.out, &p.n));
        break;
    case 1:
        CHECK(handshake(&p, 1, NULL, 0) == 0);
        rc = zc_on_initiate(&p.s, b, n, &m, &ml);
        refused(&p.s, rc);
        if (rc == 0)
            inside(b, n, m, ml);
        break;
    case 2:
        CHECK(handshake(&p, 1, NULL, 0) == 0);
        refused(&p.c, zc_on_welcome(&p.c, b, n, meta, sizeof meta - 1, p.out, sizeof p.out, &p.n));
        break;
    case 3:
        CHECK(handshake(&p, 2, NULL, 0) == 0);
        rc = zc_on_ready(&p.c, b, n, &m, &ml);
        refused(&p.c, rc);
        if (rc == 0)
            inside(b, n, m, ml);
        break;
    case 4:
        CHECK(handshake(&p, 3, NULL, 0) == 0);
        for (size_t i = 0; i + 2 <= n && p.s.state == ZC_ACTIVE;) {
            size_t len = (size_t)in[i] << 8 | in[i + 1];
            i += 2;
            if (len > n - i)
                len = n - i;
            unsigned char *one = copy(in + i, len);
            rc = zc_decode(&p.s, one, len, &f, &dl);
            refused(&p.s, rc);
            if (rc == 0)
                inside(one, len, one + ZC_MESSAGE_OVERHEAD, dl);
            free(one);
            i += len;
        }
        break;
    default:
        if (handshake(&p, 3, in, n) == 0 && p.c.state == ZC_ACTIVE && p.s.state == ZC_ACTIVE) {
            size_t used = ZC_HELLO_SIZE + ZC_WELCOME_SIZE;
            const unsigned char *rest = n > used ? in + used : in;
            size_t rl = n > used ? n - used : 0;
            message(&p.c, &p.s, rest, rl);
            message(&p.s, &p.c, rest, rl);
        }
        break;
    }
    free(b);
    zc_wipe(&p.c);
    zc_wipe(&p.s);
    return 0;
}
