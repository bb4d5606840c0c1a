/*
 * curve.c - the CURVE mechanism's commands (curve.h tells the handshake).
 * Offsets below are those of RFC 26's grammar, which libzmq 4.3 checks
 * byte for byte (HELLO's padding is 72 octets: the grammar's count, not
 * the 70 of the RFC's prose).
 */
#include "curve.h"

#include "zmtp.h"

#include "ferry.h"

#include <sodium.h>
#include <string.h>

/* Where the parts of each command body are (RFC 26). */
#define HELLO_CEPH 80   /* C' */
#define HELLO_NONCE 112 /* short nonce */
#define HELLO_BOX 120   /* Box[64 zeros], 80 octets */
#define WELCOME_NONCE 8 /* 16 octets of a long nonce */
#define WELCOME_BOX 24  /* Box[S' + cookie], 144 octets */
#define COOKIE_LEN 96   /* long nonce (16) + Secretbox[C' + s'] (80) */
#define INIT_COOKIE 9
#define INIT_NONCE 105
#define INIT_BOX 113
#define VOUCH_LEN 96 /* long nonce (16) + Box[C' + S] (80) */
#define READY_NONCE 6
#define READY_BOX 14
#define MSG_NONCE 8
#define MSG_BOX 16
#define MAC crypto_box_MACBYTES

static int fail(struct zmtp_curve *c, const char *why)
{
    c->state = ZC_FAILED;
    c->why = why;
    return FERRY_EPROTO;
}

static void put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (56 - 8 * i));
}

static uint64_t get64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

/* A 24-octet nonce: a 16-octet prefix and a short nonce, or an 8-octet
 * prefix and 16 octets of a long one. */
static void nonce_short(unsigned char n[24], const char prefix[16], uint64_t v)
{
    memcpy(n, prefix, 16);
    put64(n + 16, v);
}

static void nonce_long(unsigned char n[24], const char prefix[8], const unsigned char *tail)
{
    memcpy(n, prefix, 8);
    memcpy(n + 8, tail, 16);
}

/* The next short nonce to send; 0 when they are spent. */
static uint64_t next_nonce(struct zmtp_curve *c)
{
    if (c->tx_nonce == UINT64_MAX)
        return 0;
    return c->tx_nonce++;
}

/* A short nonce from the peer must be above the last one taken. */
static int take_nonce(struct zmtp_curve *c, const unsigned char *p)
{
    uint64_t v = get64(p);
    if (v <= c->rx_nonce)
        return -1;
    c->rx_nonce = v;
    return 0;
}

/* Opens in place a box of the session key with the short nonce just taken:
 * box is its MAC, then clen octets that become the text. 0 or -1. */
static int open_short(struct zmtp_curve *c, unsigned char *box, size_t clen, const char prefix[16])
{
    unsigned char n[24];
    nonce_short(n, prefix, c->rx_nonce);
    return crypto_box_open_detached_afternm(box + MAC, box + MAC, box, clen, n, c->session);
}

/* The frame header of a command body of len octets, written before it. */
static size_t frame_start(unsigned char *out, size_t len)
{
    return zmtp_frame_hdr(out, ZMTP_COMMAND, len);
}

static int init_common(struct zmtp_curve *c, const unsigned char secret[ZC_KEY])
{
    memset(c, 0, sizeof *c);
    if (sodium_init() < 0)
        return FERRY_EIO;
    memcpy(c->perm_sec, secret, ZC_KEY);
    c->tx_nonce = 1;
    return 0;
}

int zc_client_init(struct zmtp_curve *c, const unsigned char secret[ZC_KEY],
                   const unsigned char server_public[ZC_KEY])
{
    int rc = init_common(c, secret);
    crypto_scalarmult_base(c->perm_pub, c->perm_sec);
    crypto_box_keypair(c->eph_pub, c->eph_sec);
    memcpy(c->peer_perm, server_public, ZC_KEY);
    c->state = ZC_CLIENT_HELLO;
    return rc;
}

/* A server does no curve arithmetic until a HELLO comes: an accepted
 * connection that never speaks costs nothing but its memory. */
int zc_server_init(struct zmtp_curve *c, const unsigned char secret[ZC_KEY])
{
    int rc = init_common(c, secret);
    c->server = 1;
    c->state = ZC_SERVER_HELLO;
    return rc;
}

/* The session key is made: the short-term secret, the cookie key and our
 * permanent secret have served their purpose. */
static void session_made(struct zmtp_curve *c)
{
    sodium_memzero(c->eph_sec, sizeof c->eph_sec);
    sodium_memzero(c->cookie_key, sizeof c->cookie_key);
    sodium_memzero(c->perm_sec, sizeof c->perm_sec);
}

size_t zc_hello(struct zmtp_curve *c, unsigned char *out, size_t cap)
{
    if (c->state != ZC_CLIENT_HELLO || cap < 9 + ZC_HELLO_SIZE)
        return 0;
    size_t h = frame_start(out, ZC_HELLO_SIZE);
    unsigned char *b = out + h;
    memset(b, 0, ZC_HELLO_SIZE);
    memcpy(b, "\5HELLO\1\0", 8);
    memcpy(b + HELLO_CEPH, c->eph_pub, ZC_KEY);
    unsigned char n[24], zeros[64] = {0};
    uint64_t v = next_nonce(c);
    put64(b + HELLO_NONCE, v);
    nonce_short(n, "CurveZMQHELLO---", v);
    if (crypto_box_easy(b + HELLO_BOX, zeros, sizeof zeros, n, c->peer_perm, c->eph_sec) != 0) {
        fail(c, "CURVE: the server's public key is weak");
        return 0;
    }
    c->state = ZC_CLIENT_WELCOME;
    return h + ZC_HELLO_SIZE;
}

int zc_on_hello(struct zmtp_curve *c, const unsigned char *body, size_t len, unsigned char *out,
                size_t cap, size_t *outlen)
{
    if (c->state != ZC_SERVER_HELLO)
        return fail(c, "CURVE: HELLO out of turn");
    if (len != ZC_HELLO_SIZE || memcmp(body, "\5HELLO", 6) != 0)
        return fail(c, "CURVE: malformed HELLO (wrong size)");
    if (body[6] != 1 || body[7] != 0)
        return fail(c, "CURVE: HELLO of an unknown version");
    memcpy(c->peer_eph, body + HELLO_CEPH, ZC_KEY);
    if (take_nonce(c, body + HELLO_NONCE) != 0)
        return fail(c, "CURVE: HELLO with a zero nonce");
    if (cap < 2 + ZC_WELCOME_SIZE)
        return fail(c, "CURVE: internal: no room for WELCOME");
    /* C' and s agree one key, for HELLO's box and for WELCOME's */
    unsigned char k[crypto_box_BEFORENMBYTES], n[24], zeros[64];
    if (crypto_box_beforenm(k, c->peer_eph, c->perm_sec) != 0)
        return fail(c, "CURVE: the client's short-term key is weak");
    nonce_short(n, "CurveZMQHELLO---", c->rx_nonce);
    int rc = crypto_box_open_easy_afternm(zeros, body + HELLO_BOX, 64 + MAC, n, k);
    if (rc != 0 || !sodium_is_zero(zeros, sizeof zeros)) {
        sodium_memzero(k, sizeof k);
        return fail(c, rc != 0 ? "CURVE: HELLO's box does not open (the client has the wrong "
                                 "server key)"
                               : "CURVE: HELLO's box is not 64 zeros");
    }
    crypto_box_keypair(c->eph_pub, c->eph_sec);
    randombytes_buf(c->cookie_key, sizeof c->cookie_key);
    /* the cookie: C' and s' sealed with a key only we hold */
    unsigned char plain[ZC_KEY + COOKIE_LEN], cn[24];
    unsigned char *cookie = plain + ZC_KEY;
    unsigned char sealed[2 * ZC_KEY];
    memcpy(sealed, c->peer_eph, ZC_KEY);
    memcpy(sealed + ZC_KEY, c->eph_sec, ZC_KEY);
    randombytes_buf(cookie, 16);
    nonce_long(cn, "COOKIE--", cookie);
    crypto_secretbox_easy(cookie + 16, sealed, sizeof sealed, cn, c->cookie_key);
    sodium_memzero(sealed, sizeof sealed);
    memcpy(plain, c->eph_pub, ZC_KEY);
    size_t h = frame_start(out, ZC_WELCOME_SIZE);
    unsigned char *b = out + h;
    memcpy(b, "\7WELCOME", 8);
    randombytes_buf(b + WELCOME_NONCE, 16);
    nonce_long(n, "WELCOME-", b + WELCOME_NONCE);
    crypto_box_easy_afternm(b + WELCOME_BOX, plain, sizeof plain, n, k);
    sodium_memzero(k, sizeof k);
    /* s is needed no more: the vouch is checked with S, its public half */
    crypto_scalarmult_base(c->perm_pub, c->perm_sec);
    sodium_memzero(c->perm_sec, sizeof c->perm_sec);
    *outlen = h + ZC_WELCOME_SIZE;
    c->state = ZC_SERVER_INITIATE;
    return 0;
}

/* The vouch: Box[C' + S](C -> S'), proving we hold C's secret. */
static int make_vouch(struct zmtp_curve *c, unsigned char vouch[VOUCH_LEN])
{
    unsigned char plain[2 * ZC_KEY], n[24];
    memcpy(plain, c->eph_pub, ZC_KEY);
    memcpy(plain + ZC_KEY, c->peer_perm, ZC_KEY);
    randombytes_buf(vouch, 16);
    nonce_long(n, "VOUCH---", vouch);
    return crypto_box_easy(vouch + 16, plain, sizeof plain, n, c->peer_eph, c->perm_sec);
}

int zc_on_welcome(struct zmtp_curve *c, const unsigned char *body, size_t len,
                  const unsigned char *meta, size_t mlen, unsigned char *out, size_t cap,
                  size_t *outlen)
{
    if (c->state != ZC_CLIENT_WELCOME)
        return fail(c, "CURVE: WELCOME out of turn");
    if (len != ZC_WELCOME_SIZE || memcmp(body, "\7WELCOME", 8) != 0)
        return fail(c, "CURVE: malformed WELCOME (wrong size)");
    unsigned char plain[ZC_KEY + COOKIE_LEN], n[24];
    nonce_long(n, "WELCOME-", body + WELCOME_NONCE);
    if (crypto_box_open_easy(plain, body + WELCOME_BOX, sizeof plain + MAC, n, c->peer_perm,
                             c->eph_sec) != 0)
        return fail(c, "CURVE: WELCOME's box does not open (not the server we know)");
    memcpy(c->peer_eph, plain, ZC_KEY);
    memcpy(c->cookie, plain + ZC_KEY, COOKIE_LEN);
    if (crypto_box_beforenm(c->session, c->peer_eph, c->eph_sec) != 0)
        return fail(c, "CURVE: the server's short-term key is weak");
    if (mlen > ZC_META_MAX || cap < ZC_FRAME_MAX)
        return fail(c, "CURVE: internal: metadata too long for INITIATE");
    unsigned char box[ZC_KEY + VOUCH_LEN + ZC_META_MAX];
    memcpy(box, c->perm_pub, ZC_KEY);
    if (make_vouch(c, box + ZC_KEY) != 0)
        return fail(c, "CURVE: the server's short-term key is weak");
    if (mlen)
        memcpy(box + ZC_KEY + VOUCH_LEN, meta, mlen);
    size_t plen = ZC_KEY + VOUCH_LEN + mlen;
    size_t blen = INIT_BOX + MAC + plen;
    size_t h = frame_start(out, blen);
    unsigned char *b = out + h;
    memcpy(b, "\10INITIATE", 9);
    memcpy(b + INIT_COOKIE, c->cookie, COOKIE_LEN);
    uint64_t v = next_nonce(c);
    put64(b + INIT_NONCE, v);
    nonce_short(n, "CurveZMQINITIATE", v);
    crypto_box_easy_afternm(b + INIT_BOX, box, plen, n, c->session);
    sodium_memzero(box, ZC_KEY + VOUCH_LEN);
    session_made(c);
    *outlen = h + blen;
    c->state = ZC_CLIENT_READY;
    return 0;
}

/* The cookie must be the one we made for this C': it holds s'. */
static int cookie_check(struct zmtp_curve *c, const unsigned char *cookie)
{
    unsigned char sealed[2 * ZC_KEY], n[24];
    nonce_long(n, "COOKIE--", cookie);
    int rc = crypto_secretbox_open_easy(sealed, cookie + 16, sizeof sealed + MAC, n,
                                        c->cookie_key) == 0 &&
                     sodium_memcmp(sealed, c->peer_eph, ZC_KEY) == 0 &&
                     sodium_memcmp(sealed + ZC_KEY, c->eph_sec, ZC_KEY) == 0
                 ? 0
                 : -1;
    sodium_memzero(sealed, sizeof sealed);
    return rc;
}

/* The vouch must say this C' and our S, boxed by the C the client names. */
static int vouch_check(struct zmtp_curve *c, const unsigned char *vouch)
{
    unsigned char plain[2 * ZC_KEY], n[24];
    nonce_long(n, "VOUCH---", vouch);
    if (crypto_box_open_easy(plain, vouch + 16, sizeof plain + MAC, n, c->peer_perm, c->eph_sec) !=
        0)
        return -1;
    return sodium_memcmp(plain, c->peer_eph, ZC_KEY) == 0 &&
                   sodium_memcmp(plain + ZC_KEY, c->perm_pub, ZC_KEY) == 0
               ? 0
               : -1;
}

int zc_on_initiate(struct zmtp_curve *c, unsigned char *body, size_t len,
                   const unsigned char **meta, size_t *mlen)
{
    if (c->state != ZC_SERVER_INITIATE)
        return fail(c, "CURVE: INITIATE out of turn");
    if (len < ZC_INITIATE_MIN || memcmp(body, "\10INITIATE", 9) != 0)
        return fail(c, "CURVE: malformed INITIATE (too short)");
    if (cookie_check(c, body + INIT_COOKIE) != 0)
        return fail(c, "CURVE: INITIATE carries a cookie we did not make");
    if (take_nonce(c, body + INIT_NONCE) != 0)
        return fail(c, "CURVE: INITIATE's nonce is not above HELLO's");
    if (crypto_box_beforenm(c->session, c->peer_eph, c->eph_sec) != 0)
        return fail(c, "CURVE: the client's short-term key is weak");
    size_t clen = len - INIT_BOX - MAC;
    unsigned char *plain = body + INIT_BOX + MAC;
    if (open_short(c, body + INIT_BOX, clen, "CurveZMQINITIATE") != 0)
        return fail(c, "CURVE: INITIATE's box does not open");
    memcpy(c->peer_perm, plain, ZC_KEY);
    if (vouch_check(c, plain + ZC_KEY) != 0)
        return fail(c, "CURVE: INITIATE's vouch does not prove the client's key");
    session_made(c);
    *meta = plain + ZC_KEY + VOUCH_LEN;
    *mlen = clen - ZC_KEY - VOUCH_LEN;
    c->state = ZC_SERVER_READY;
    return 0;
}

int zc_ready(struct zmtp_curve *c, const unsigned char *meta, size_t mlen, unsigned char *out,
             size_t cap, size_t *outlen)
{
    if (c->state != ZC_SERVER_READY)
        return fail(c, "CURVE: READY out of turn");
    if (mlen > ZC_META_MAX || cap < 9 + ZC_READY_MIN + mlen)
        return fail(c, "CURVE: internal: metadata too long for READY");
    size_t blen = READY_BOX + MAC + mlen;
    size_t h = frame_start(out, blen);
    unsigned char *b = out + h, n[24];
    memcpy(b, "\5READY", 6);
    uint64_t v = next_nonce(c);
    put64(b + READY_NONCE, v);
    nonce_short(n, "CurveZMQREADY---", v);
    crypto_box_easy_afternm(b + READY_BOX, meta, mlen, n, c->session);
    *outlen = h + blen;
    c->state = ZC_ACTIVE;
    return 0;
}

int zc_on_ready(struct zmtp_curve *c, unsigned char *body, size_t len, const unsigned char **meta,
                size_t *mlen)
{
    if (c->state != ZC_CLIENT_READY)
        return fail(c, "CURVE: READY out of turn");
    if (len < ZC_READY_MIN || memcmp(body, "\5READY", 6) != 0)
        return fail(c, "CURVE: malformed READY (too short)");
    if (take_nonce(c, body + READY_NONCE) != 0)
        return fail(c, "CURVE: READY with a zero nonce");
    size_t clen = len - READY_BOX - MAC;
    unsigned char *plain = body + READY_BOX + MAC;
    if (open_short(c, body + READY_BOX, clen, "CurveZMQREADY---") != 0)
        return fail(c, "CURVE: READY's box does not open");
    *meta = plain;
    *mlen = clen;
    c->state = ZC_ACTIVE;
    return 0;
}

size_t zc_encode(struct zmtp_curve *c, unsigned char *out, int flags, const void *a, size_t alen,
                 const void *b, size_t blen)
{
    uint64_t v = c->state == ZC_ACTIVE ? next_nonce(c) : 0;
    if (v == 0)
        return 0;
    size_t plen = 1 + alen + blen;
    /* in a data frame: libzmq 4.3 sends MESSAGE so, and silently drops
     * one that comes in a command frame */
    size_t h = zmtp_frame_hdr(out, 0, ZC_MESSAGE_OVERHEAD - 1 + plen);
    unsigned char *body = out + h, n[24];
    memcpy(body, "\7MESSAGE", 8);
    put64(body + MSG_NONCE, v);
    unsigned char *plain = body + MSG_BOX + MAC;
    plain[0] = (unsigned char)(flags & (ZC_MORE | ZC_COMMAND));
    if (alen)
        memcpy(plain + 1, a, alen);
    if (blen)
        memcpy(plain + 1 + alen, b, blen);
    nonce_short(n, c->server ? "CurveZMQMESSAGES" : "CurveZMQMESSAGEC", v);
    crypto_box_detached_afternm(plain, body + MSG_BOX, plain, plen, n, c->session);
    return h + ZC_MESSAGE_OVERHEAD - 1 + plen;
}

int zc_decode(struct zmtp_curve *c, unsigned char *body, size_t len, int *flags, size_t *dlen)
{
    if (c->state != ZC_ACTIVE)
        return fail(c, "CURVE: MESSAGE before the handshake finished");
    if (len < ZC_MESSAGE_MIN || memcmp(body, "\7MESSAGE", 8) != 0)
        return fail(c, len < ZC_MESSAGE_MIN ? "CURVE: MESSAGE too short"
                                            : "CURVE: a command other than MESSAGE after READY");
    uint64_t last = c->rx_nonce;
    if (take_nonce(c, body + MSG_NONCE) != 0)
        return fail(c, "CURVE: MESSAGE replayed or out of order (nonce not above the last)");
    unsigned char *plain = body + MSG_BOX + MAC;
    if (open_short(c, body + MSG_BOX, len - MSG_BOX - MAC,
                   c->server ? "CurveZMQMESSAGEC" : "CurveZMQMESSAGES") != 0) {
        c->rx_nonce = last;
        return fail(c, "CURVE: MESSAGE's box does not open (forged or damaged)");
    }
    /* the other bits are reserved, and ignored as libzmq does */
    int f = plain[0] & (ZC_MORE | ZC_COMMAND);
    if (f == (ZC_MORE | ZC_COMMAND))
        return fail(c, "CURVE: a tunnelled command with MORE set");
    *flags = f;
    *dlen = len - ZC_MESSAGE_OVERHEAD;
    return 0;
}

void zc_wipe(struct zmtp_curve *c) { sodium_memzero(c, sizeof *c); }
