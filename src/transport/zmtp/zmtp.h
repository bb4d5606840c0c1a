/*
 * zmtp.h - the ZMTP 3.1 wire codec (ZeroMQ RFC 37, NULL mechanism).
 *
 * No sockets and no threads here: bytes in, frames out, and the few
 * encoders the transport needs. The decoder is what the fuzzer
 * (fuzz/zmtp_fuzz.c) drives, so everything it reads is treated as hostile.
 *
 * The stream, as both sides write it:
 *
 *   greeting   64 octets: FF, 8 octets of padding (not checked: libzmq puts
 *              a length there), 7F, major 03, minor (01 = 3.1), mechanism
 *              ("NULL" or "CURVE", curve.h) padded with NULs to 20 octets,
 *              as-server (CURVE: 1 from the server), 31 fillers.
 *   frames     flags (MORE 0x01, LONG 0x02, COMMAND 0x04; the rest
 *              reserved and ignored), size (1 octet, or 8 big-endian with
 *              LONG), body.
 *   commands   body = name length (1 octet), name, data. READY carries
 *              properties: name length (1), name, value length (4, big
 *              endian), value. Also ERROR, PING, PONG, SUBSCRIBE, CANCEL.
 *
 * ferry sends its whole greeting at once and its READY right behind it,
 * then nothing more until the peer's READY has arrived (libzmq 4.3.4 drops
 * a peer whose READY and first message reach it in one read before it has
 * sent its own READY; docs/architecture.md, "The handshake").
 */
#ifndef FY_ZMTP_H
#define FY_ZMTP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define ZMTP_GREETING_SIZE 64
#define ZMTP_MORE 0x01
#define ZMTP_LONG 0x02
#define ZMTP_COMMAND 0x04
#define ZMTP_HDR_MAX 9

/* Security mechanisms, as a greeting names them (all 20 octets compared,
 * as libzmq does). */
enum { ZMTP_MECH_NULL, ZMTP_MECH_PLAIN, ZMTP_MECH_CURVE, ZMTP_MECH_OTHER };

/* The mechanism's name ("NULL", "CURVE", ...; "unknown" for OTHER). */
const char *zmtp_mech_name(int mech);

/* Writes ferry's greeting (3.1, NULL, as-server 0). Returns 64. */
size_t zmtp_greeting(unsigned char out[ZMTP_GREETING_SIZE]);
/* The same with a mechanism and the as-server flag. */
size_t zmtp_greeting_mech(unsigned char out[ZMTP_GREETING_SIZE], int mech, int as_server);

/* Writes a frame header for a body of size bytes (flags: ZMTP_MORE and/or
 * ZMTP_COMMAND; LONG is chosen here). Returns its length, 2 or 9. */
size_t zmtp_frame_hdr(unsigned char out[ZMTP_HDR_MAX], int flags, uint64_t size);

/* Writes a command frame (header and body) "name" + data into out (cap
 * bytes). Returns its length, or 0 when it does not fit. */
size_t zmtp_command(unsigned char *out, size_t cap, const char *name, const void *data, size_t len);

/* Writes the metadata properties a READY (or CURVE's INITIATE and READY)
 * carries: Socket-Type, and an Identity of idlen (<= 255) bytes when id is
 * not NULL. Returns their length (at most ZMTP_META_MAX), 0 when too long. */
#define ZMTP_META_MAX (64 + 255)
size_t zmtp_meta(unsigned char out[ZMTP_META_MAX], const char *type, const void *id, size_t idlen);

/* Writes a READY command frame announcing socket type `type` ("REQ",
 * "PUSH", ...); with_identity adds an empty Identity property (libzmq's
 * REQ does). Returns its length, or 0 when it does not fit. */
size_t zmtp_ready(unsigned char *out, size_t cap, const char *type, int with_identity);
/* The same with an Identity of idlen (<= 255) bytes; id NULL: none. */
size_t zmtp_ready_id(unsigned char *out, size_t cap, const char *type, const void *id,
                     size_t idlen);

/* Splits a command body into its name and data. 0, or -1 when malformed. */
int zmtp_cmd_split(const unsigned char *body, size_t len, const unsigned char **name, size_t *nlen,
                   const unsigned char **data, size_t *dlen);

/* 1 if the command name is `want` (exact, case-sensitive as in libzmq). */
int zmtp_cmd_is(const unsigned char *name, size_t nlen, const char *want);

/* Walks READY properties (data after the name). Finds `prop` (compared
 * without regard to case, as RFC 37 says). Returns 1 found (*val, *vlen
 * set), 0 absent, -1 malformed (truncated, or trailing bytes). */
int zmtp_meta_find(const unsigned char *p, size_t len, const char *prop, const unsigned char **val,
                   size_t *vlen);

/* --- the decoder ------------------------------------------------------------ */

/* Callbacks. The decoder owns nothing but the frame being filled.
 *  alloc     a buffer for the first cap bytes of a frame body: returns the
 *            handle that will be passed to grow, frame or free, *body the
 *            bytes; NULL: refused (the decoder stops with FERRY_ENOMEM).
 *            A frame header is only a claim: with grow set, cap is at most
 *            ZMTP_DEC_CHUNK, and the buffer grows as the bytes arrive, so
 *            a peer that announces 200 MiB and sends 10 bytes makes us hold
 *            one chunk, not 200 MiB. A frame of at most ZMTP_DEC_FIRST
 *            bytes gets its whole size at once: a 64 KiB message sealed in
 *            a CURVE box (33 bytes more) is not copied to grow by 33.
 *            Without grow, cap is the whole size.
 *  grow      the body must now hold cap bytes (more than before, at most
 *            the frame's size), keeping those received: returns the handle
 *            (it may move), *body updated; NULL: refused, the old handle
 *            is still valid (the decoder frees it with free at fini) and
 *            the decoder stops with FERRY_ENOMEM. Optional.
 *  free      releases a handle from alloc or grow (a frame cut short).
 *  greeting  the peer's 64 octets, already checked (signature, version
 *            3 or later); minor is the peer's minor version, and
 *            d->peer_mech and d->peer_as_server say what it offers (the
 *            callee checks that it fits). 0 to go on, < 0 to stop with
 *            that error.
 *  frame     a whole frame; ownership of handle passes to the callee.
 *            0 to go on, < 0 to stop with that error. */
#define ZMTP_DEC_CHUNK (64u << 10)
#define ZMTP_DEC_FIRST (ZMTP_DEC_CHUNK + 64u)
struct zmtp_dec_ops {
    void *(*alloc)(void *ctx, uint64_t cap, unsigned char **body);
    void *(*grow)(void *ctx, void *handle, uint64_t cap, unsigned char **body);
    void (*free)(void *ctx, void *handle);
    int (*greeting)(void *ctx, int minor);
    int (*frame)(void *ctx, int flags, void *handle, unsigned char *body, uint64_t size);
};

enum { ZMTP_DEC_GREETING, ZMTP_DEC_HDR, ZMTP_DEC_BODY, ZMTP_DEC_FAILED };

struct zmtp_dec {
    const struct zmtp_dec_ops *ops;
    void *ctx;
    uint64_t max_frame; /* larger message bodies are refused (FERRY_EMSGSIZE) */
    uint64_t max_cmd;   /* the same for command bodies (zmtp_dec_init: = max_frame) */
    int state;
    int peer_mech, peer_as_server;         /* from the peer's greeting */
    unsigned char buf[ZMTP_GREETING_SIZE]; /* greeting, or a frame header */
    size_t have, need;
    int flags;
    uint64_t size, got;
    uint64_t cap; /* bytes the body buffer holds now (<= size) */
    void *handle;
    unsigned char *body;
    const char *why; /* after a failure: what was wrong */
};

void zmtp_dec_init(struct zmtp_dec *d, const struct zmtp_dec_ops *ops, void *ctx,
                   uint64_t max_frame);

/* Feeds len bytes (any split of the stream). Consumes them all and returns
 * 0, or returns < 0 and stays failed: FERRY_EPROTO (d->why says what),
 * FERRY_EMSGSIZE, FERRY_ENOMEM, or a callback's error. */
int zmtp_dec_feed(struct zmtp_dec *d, const unsigned char *data, size_t len);

/* While a frame body is being filled: where its next bytes go and how many
 * fit there now (at most what is missing), so a large body can be read
 * straight into place. NULL when no body is in progress, or when the buffer
 * could not grow (the decoder has failed: the next feed or filled call
 * returns the error). zmtp_dec_filled() then reports n bytes written. */
unsigned char *zmtp_dec_room(struct zmtp_dec *d, size_t *room);
int zmtp_dec_filled(struct zmtp_dec *d, size_t n);

/* Frees a frame cut short. */
void zmtp_dec_fini(struct zmtp_dec *d);

#endif /* FY_ZMTP_H */
