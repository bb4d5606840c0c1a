/*
 * curve.h - the CURVE security mechanism of ZMTP 3.1 (ZeroMQ RFC 26,
 * CurveZMQ), as a codec: command bodies in, command frames out, no
 * sockets, no threads, no policy. Which client keys are admitted is the
 * caller's business (stream_conn.c asks the socket's allow list); all the
 * cryptography is libsodium's (crypto_box, crypto_secretbox, randombytes).
 *
 * The handshake, after both greetings say "CURVE" (the server's with
 * as-server 1, the client's with 0):
 *
 *   C -> S  HELLO     C' and Box[64 zeros](C'->S): the client knows S
 *   S -> C  WELCOME   Box[S' + cookie](S->C'); the cookie is
 *                     Secretbox[C' + s'](K), K a key of this connection
 *   C -> S  INITIATE  the cookie back, and Box[C + vouch + metadata](C'->S'),
 *                     where the vouch Box[C' + S](C->S') proves the client
 *                     holds the secret of its permanent key C
 *   S -> C  READY     Box[metadata](S'->C')
 *
 * then every frame, commands included, travels as a MESSAGE:
 * Box[flags + body](C'->S' or S'->C'), flags bit 0 MORE and bit 1 COMMAND
 * (libzmq's tunnelling of PING, SUBSCRIBE...). RFC 26 calls MESSAGE a
 * command, but libzmq 4.3 sends it in a ZMTP data frame (never with MORE)
 * and drops, without a word, one that arrives in a command frame: we send
 * it as libzmq does and take either. Capital letters are permanent keys,
 * primed ones short-term keys made for this connection.
 *
 * Nonces: each side counts its short nonces from 1 (HELLO, INITIATE, READY
 * and MESSAGE share the counter), and a received short nonce must be
 * larger than the last one taken, so a replayed or reordered MESSAGE is
 * refused. Long nonces (WELCOME, cookie, vouch) are 16 random bytes.
 *
 * Secrets: the short-term secret keys and the cookie key are wiped as soon
 * as the session key (crypto_box_beforenm of C' and S') is made; the
 * session key and the permanent secret copy are wiped by zc_wipe.
 *
 * Sizes are checked exactly where RFC 26 fixes them (HELLO 200, WELCOME
 * 168) and at least where it does not (INITIATE 257, READY 30, MESSAGE
 * 33, each plus what its box holds). Every function that reads peer bytes
 * returns 0 or a FERRY_E* code with zc->why saying what was wrong.
 */
#ifndef FY_CURVE_H
#define FY_CURVE_H

#include <stddef.h>
#include <stdint.h>

#define ZC_KEY 32
#define ZC_HELLO_SIZE 200
#define ZC_WELCOME_SIZE 168
#define ZC_INITIATE_MIN 257
#define ZC_READY_MIN 30
#define ZC_MESSAGE_MIN 33
#define ZC_MESSAGE_OVERHEAD 33 /* "\7MESSAGE", nonce, MAC, flags */
/* A command frame the handshake writes: its header and body (an INITIATE or
 * READY carries metadata of at most ZC_META_MAX bytes). */
#define ZC_META_MAX 512
#define ZC_FRAME_MAX (9 + ZC_INITIATE_MIN + ZC_META_MAX)

/* The flags inside a MESSAGE box (libzmq's: RFC 26 reserves bits 1-7). */
#define ZC_MORE 0x01
#define ZC_COMMAND 0x02

enum {
    ZC_CLIENT_HELLO,    /* client: HELLO not yet written */
    ZC_CLIENT_WELCOME,  /* client: waits for WELCOME */
    ZC_CLIENT_READY,    /* client: INITIATE written, waits for READY */
    ZC_SERVER_HELLO,    /* server: waits for HELLO */
    ZC_SERVER_INITIATE, /* server: WELCOME written, waits for INITIATE */
    ZC_SERVER_READY,    /* server: INITIATE taken, READY not yet written */
    ZC_ACTIVE,          /* MESSAGEs both ways */
    ZC_FAILED
};

struct zmtp_curve {
    int server;
    int state;
    unsigned char perm_pub[ZC_KEY], perm_sec[ZC_KEY]; /* ours: S or C */
    unsigned char peer_perm[ZC_KEY]; /* client: S (given); server: C (from INITIATE) */
    unsigned char eph_pub[ZC_KEY], eph_sec[ZC_KEY]; /* ours: C' or S' */
    unsigned char peer_eph[ZC_KEY];                 /* theirs: S' or C' */
    unsigned char cookie_key[ZC_KEY];               /* server, until INITIATE */
    unsigned char cookie[96];                       /* client: from WELCOME */
    unsigned char session[ZC_KEY];                  /* crypto_box_beforenm(C', S') */
    uint64_t tx_nonce;                              /* the next short nonce we use */
    uint64_t rx_nonce;                              /* the last short nonce taken */
    const char *why;                                /* after a failure */
};

/* A client that knows the server's public key; secret is its own permanent
 * secret key (the public one is derived). 0, or FERRY_EIO when libsodium
 * cannot start. */
int zc_client_init(struct zmtp_curve *c, const unsigned char secret[ZC_KEY],
                   const unsigned char server_public[ZC_KEY]);
int zc_server_init(struct zmtp_curve *c, const unsigned char secret[ZC_KEY]);

/* Client: the HELLO command frame into out (cap >= ZC_FRAME_MAX). Returns
 * its length, or 0 in a wrong state. */
size_t zc_hello(struct zmtp_curve *c, unsigned char *out, size_t cap);

/* Server: takes a HELLO body and writes the WELCOME frame; *outlen its
 * length. 0 or FERRY_EPROTO. */
int zc_on_hello(struct zmtp_curve *c, const unsigned char *body, size_t len, unsigned char *out,
                size_t cap, size_t *outlen);

/* Client: takes a WELCOME body and writes the INITIATE frame carrying meta
 * (at most ZC_META_MAX bytes). 0 or FERRY_EPROTO. */
int zc_on_welcome(struct zmtp_curve *c, const unsigned char *body, size_t len,
                  const unsigned char *meta, size_t mlen, unsigned char *out, size_t cap,
                  size_t *outlen);

/* Server: takes an INITIATE body, opening its box in place. On success the
 * client's permanent key is in c->peer_perm (for the caller to admit or
 * refuse) and *meta, *mlen point at its metadata inside body. 0 or
 * FERRY_EPROTO. */
int zc_on_initiate(struct zmtp_curve *c, unsigned char *body, size_t len,
                   const unsigned char **meta, size_t *mlen);

/* Server: the READY frame with our metadata; the mechanism is then active. */
int zc_ready(struct zmtp_curve *c, const unsigned char *meta, size_t mlen, unsigned char *out,
             size_t cap, size_t *outlen);

/* Client: takes a READY body, opening its box in place; *meta, *mlen point
 * at the server's metadata inside body. The mechanism is then active. */
int zc_on_ready(struct zmtp_curve *c, unsigned char *body, size_t len, const unsigned char **meta,
                size_t *mlen);

/* The bytes a frame of len bytes takes sealed in a MESSAGE. */
static inline uint64_t zc_wire_size(uint64_t len)
{
    uint64_t body = ZC_MESSAGE_OVERHEAD + len;
    return (body > 255 ? 9 : 2) + body;
}

/* Writes one frame (flags ZC_MORE, ZC_COMMAND) as a MESSAGE (in a data
 * frame) into out, which has zc_wire_size(alen + blen) bytes: its body is the a
 * bytes then the b bytes (a command's name, then its data). Returns the
 * length written, or 0 when the nonces are spent (2^64: never in practice,
 * but a nonce is never reused). */
size_t zc_encode(struct zmtp_curve *c, unsigned char *out, int flags, const void *a, size_t alen,
                 const void *b, size_t blen);

/* Opens a MESSAGE command body in place: *flags (ZC_MORE, ZC_COMMAND) and
 * the frame's body at body + ZC_MESSAGE_OVERHEAD, *dlen bytes. 0 or
 * FERRY_EPROTO (not a MESSAGE, too short, a nonce not above the last one,
 * a box that does not open). */
int zc_decode(struct zmtp_curve *c, unsigned char *body, size_t len, int *flags, size_t *dlen);

/* Wipes every key the state holds. */
void zc_wipe(struct zmtp_curve *c);

#endif /* FY_CURVE_H */
