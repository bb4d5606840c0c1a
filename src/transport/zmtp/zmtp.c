/*
 * zmtp.c - the ZMTP 3.1 codec: greeting, frames, commands, READY metadata.
 *
 * The decoder is a small state machine fed with whatever the socket
 * returned: a greeting in three pieces, a header split after its first
 * octet, a body in a thousand reads all work, because every byte is either
 * consumed into the state or handed on; nothing is ever left behind.
 */
#include "zmtp.h"

#include "ferry.h"

#include <string.h>

static const char mechanisms[][20] = {"NULL", "PLAIN", "CURVE"};

const char *zmtp_mech_name(int mech)
{
    return mech >= 0 && mech < ZMTP_MECH_OTHER ? mechanisms[mech] : "unknown";
}

size_t zmtp_greeting_mech(unsigned char out[ZMTP_GREETING_SIZE], int mech, int as_server)
{
    memset(out, 0, ZMTP_GREETING_SIZE);
    out[0] = 0xff;
    out[9] = 0x7f;
    out[10] = 3;
    out[11] = 1;
    memcpy(out + 12, mechanisms[mech < ZMTP_MECH_OTHER ? mech : 0], 20);
    out[32] = as_server ? 1 : 0;
    return ZMTP_GREETING_SIZE;
}

size_t zmtp_greeting(unsigned char out[ZMTP_GREETING_SIZE])
{
    return zmtp_greeting_mech(out, ZMTP_MECH_NULL, 0);
}

size_t zmtp_frame_hdr(unsigned char out[ZMTP_HDR_MAX], int flags, uint64_t size)
{
    flags &= ZMTP_MORE | ZMTP_COMMAND;
    if (size <= 255) {
        out[0] = (unsigned char)flags;
        out[1] = (unsigned char)size;
        return 2;
    }
    out[0] = (unsigned char)(flags | ZMTP_LONG);
    for (int i = 0; i < 8; i++)
        out[1 + i] = (unsigned char)(size >> (56 - 8 * i));
    return 9;
}

size_t zmtp_command(unsigned char *out, size_t cap, const char *name, const void *data, size_t len)
{
    size_t nlen = strlen(name);
    if (nlen == 0 || nlen > 255 || len > SIZE_MAX - 512)
        return 0;
    uint64_t body = 1 + nlen + len;
    unsigned char hdr[ZMTP_HDR_MAX];
    size_t h = zmtp_frame_hdr(hdr, ZMTP_COMMAND, body);
    if (cap < h || cap - h < body)
        return 0;
    memcpy(out, hdr, h);
    out[h] = (unsigned char)nlen;
    memcpy(out + h + 1, name, nlen);
    if (len)
        memcpy(out + h + 1 + nlen, data, len);
    return h + (size_t)body;
}

static size_t put_prop_n(unsigned char *p, const char *name, const void *val, size_t v)
{
    size_t n = strlen(name);
    p[0] = (unsigned char)n;
    memcpy(p + 1, name, n);
    p[1 + n] = (unsigned char)(v >> 24);
    p[2 + n] = (unsigned char)(v >> 16);
    p[3 + n] = (unsigned char)(v >> 8);
    p[4 + n] = (unsigned char)v;
    if (v)
        memcpy(p + 5 + n, val, v);
    return 5 + n + v;
}

size_t zmtp_meta(unsigned char out[ZMTP_META_MAX], const char *type, const void *id, size_t idlen)
{
    if (strlen(type) > 16 || idlen > 255)
        return 0;
    size_t n = put_prop_n(out, "Socket-Type", type, strlen(type));
    if (id != NULL)
        n += put_prop_n(out + n, "Identity", id, idlen);
    return n;
}

size_t zmtp_ready_id(unsigned char *out, size_t cap, const char *type, const void *id, size_t idlen)
{
    unsigned char meta[ZMTP_META_MAX];
    size_t n = zmtp_meta(meta, type, id, idlen);
    return n ? zmtp_command(out, cap, "READY", meta, n) : 0;
}

size_t zmtp_ready(unsigned char *out, size_t cap, const char *type, int with_identity)
{
    return zmtp_ready_id(out, cap, type, with_identity ? "" : NULL, 0);
}

int zmtp_cmd_split(const unsigned char *body, size_t len, const unsigned char **name, size_t *nlen,
                   const unsigned char **data, size_t *dlen)
{
    if (len < 1 || body[0] == 0 || (size_t)body[0] > len - 1)
        return -1;
    *name = body + 1;
    *nlen = body[0];
    *data = body + 1 + body[0];
    *dlen = len - 1 - body[0];
    return 0;
}

int zmtp_cmd_is(const unsigned char *name, size_t nlen, const char *want)
{
    return strlen(want) == nlen && memcmp(name, want, nlen) == 0;
}

static int same_nocase(const unsigned char *a, size_t alen, const char *b)
{
    if (alen != strlen(b))
        return 0;
    for (size_t i = 0; i < alen; i++) {
        unsigned char x = a[i], y = (unsigned char)b[i];
        if (x >= 'A' && x <= 'Z')
            x = (unsigned char)(x + 32);
        if (y >= 'A' && y <= 'Z')
            y = (unsigned char)(y + 32);
        if (x != y)
            return 0;
    }
    return 1;
}

int zmtp_meta_find(const unsigned char *p, size_t len, const char *prop, const unsigned char **val,
                   size_t *vlen)
{
    int found = 0;
    size_t i = 0;
    while (i < len) {
        size_t n = p[i];
        if (n == 0 || len - i < 1 + n + 4)
            return -1;
        const unsigned char *name = p + i + 1;
        const unsigned char *l = name + n;
        uint64_t v = (uint64_t)l[0] << 24 | (uint64_t)l[1] << 16 | (uint64_t)l[2] << 8 | l[3];
        i += 1 + n + 4;
        if (v > len - i)
            return -1;
        if (!found && same_nocase(name, n, prop)) {
            *val = p + i;
            *vlen = (size_t)v;
            found = 1;
        }
        i += (size_t)v;
    }
    return found;
}

/* --- the decoder ---------------------------------------------------------------- */

void zmtp_dec_init(struct zmtp_dec *d, const struct zmtp_dec_ops *ops, void *ctx,
                   uint64_t max_frame)
{
    memset(d, 0, sizeof *d);
    d->ops = ops;
    d->ctx = ctx;
    d->max_frame = max_frame;
    d->max_cmd = max_frame;
    d->state = ZMTP_DEC_GREETING;
    d->need = ZMTP_GREETING_SIZE;
}

static int dec_fail(struct zmtp_dec *d, int err, const char *why)
{
    d->state = ZMTP_DEC_FAILED;
    d->why = why;
    return err;
}

/* Checks as much of the greeting as has arrived, so garbage is refused at
 * its first wrong octet rather than after 64. */
static int greeting_check(struct zmtp_dec *d)
{
    const unsigned char *g = d->buf;
    if (d->have >= 1 && g[0] != 0xff)
        return dec_fail(d, FERRY_EPROTO, "not ZMTP: bad signature");
    if (d->have >= 10 && (g[9] & 1) == 0)
        return dec_fail(d, FERRY_EPROTO, "not ZMTP 3: bad signature end (ZMTP 1.0?)");
    if (d->have >= 11 && g[10] < 3)
        return dec_fail(d, FERRY_EPROTO, "ZMTP version before 3.0 is not supported");
    /* refused at the first octet that fits neither mechanism we speak */
    if (d->have > 12) {
        size_t n = (d->have < 32 ? d->have : 32) - 12;
        if (memcmp(g + 12, mechanisms[ZMTP_MECH_NULL], n) != 0 &&
            memcmp(g + 12, mechanisms[ZMTP_MECH_CURVE], n) != 0)
            return dec_fail(d, FERRY_EPROTO,
                            "unsupported security mechanism (NULL and CURVE only)");
    }
    if (d->have >= 33) {
        d->peer_mech = ZMTP_MECH_OTHER;
        for (int m = 0; m < ZMTP_MECH_OTHER; m++)
            if (memcmp(g + 12, mechanisms[m], 20) == 0)
                d->peer_mech = m;
        d->peer_as_server = g[32] & 1;
    }
    return 0;
}

static int frame_start(struct zmtp_dec *d)
{
    const unsigned char *h = d->buf;
    d->flags = h[0];
    if (h[0] & ZMTP_LONG) {
        uint64_t v = 0;
        for (int i = 0; i < 8; i++)
            v = v << 8 | h[1 + i];
        d->size = v;
    } else {
        d->size = h[1];
    }
    if ((d->flags & ZMTP_COMMAND) && (d->flags & ZMTP_MORE))
        return dec_fail(d, FERRY_EPROTO, "command frame with MORE set");
    if (d->size > ((d->flags & ZMTP_COMMAND) ? d->max_cmd : d->max_frame))
        return dec_fail(d, FERRY_EMSGSIZE, "frame larger than the maximum message size");
    d->cap = d->ops->grow != NULL && d->size > ZMTP_DEC_FIRST ? ZMTP_DEC_CHUNK : d->size;
    d->handle = d->ops->alloc(d->ctx, d->cap, &d->body);
    if (d->handle == NULL)
        return dec_fail(d, FERRY_ENOMEM, "frame refused: out of memory or over the input budget");
    d->got = 0;
    d->state = ZMTP_DEC_BODY;
    return 0;
}

/* The body buffer is full but the frame is not: makes it four times as
 * large (at most the frame's size, at least a chunk more). Each step
 * copies what came so far, so the copies add up to a third of the frame
 * (doubling: all of it, which cost a 1 MiB ipc:// stream 8 % of its
 * rate), and what a peer makes us hold stays within 4x what it sent. */
static int body_grow(struct zmtp_dec *d)
{
    uint64_t want = d->cap * 4 > d->cap + ZMTP_DEC_CHUNK ? d->cap * 4 : d->cap + ZMTP_DEC_CHUNK;
    if (want > d->size)
        want = d->size;
    unsigned char *body = NULL;
    void *h = d->ops->grow(d->ctx, d->handle, want, &body);
    if (h == NULL)
        return dec_fail(d, FERRY_ENOMEM, "frame refused: out of memory or over the input budget");
    d->handle = h;
    d->body = body;
    d->cap = want;
    return 0;
}

static int frame_done(struct zmtp_dec *d)
{
    void *h = d->handle;
    d->handle = NULL;
    d->state = ZMTP_DEC_HDR;
    d->have = 0;
    d->need = 2;
    int rc = d->ops->frame(d->ctx, d->flags & (ZMTP_MORE | ZMTP_COMMAND), h, d->body, d->size);
    d->body = NULL;
    if (rc < 0 && d->state != ZMTP_DEC_FAILED)
        return dec_fail(d, rc, "refused by the connection");
    return rc < 0 ? rc : 0;
}

int zmtp_dec_feed(struct zmtp_dec *d, const unsigned char *data, size_t len)
{
    while (len > 0 || (d->state == ZMTP_DEC_BODY && d->got == d->size)) {
        switch (d->state) {
        case ZMTP_DEC_GREETING: {
            size_t n = d->need - d->have < len ? d->need - d->have : len;
            memcpy(d->buf + d->have, data, n);
            d->have += n;
            data += n;
            len -= n;
            int rc = greeting_check(d);
            if (rc < 0)
                return rc;
            if (d->have < d->need)
                break;
            d->state = ZMTP_DEC_HDR;
            d->have = 0;
            d->need = 2;
            rc = d->ops->greeting(d->ctx, d->buf[10] > 3 ? 1 : d->buf[11]);
            if (rc < 0)
                return d->state == ZMTP_DEC_FAILED ? rc : dec_fail(d, rc, "greeting refused");
            break;
        }
        case ZMTP_DEC_HDR: {
            if (d->have == 0) { /* the flags octet says how long the size is */
                d->buf[0] = *data++;
                len--;
                d->have = 1;
                d->need = (d->buf[0] & ZMTP_LONG) ? 9 : 2;
                break;
            }
            size_t n = d->need - d->have < len ? d->need - d->have : len;
            memcpy(d->buf + d->have, data, n);
            d->have += n;
            data += n;
            len -= n;
            if (d->have < d->need)
                break;
            int rc = frame_start(d);
            if (rc < 0)
                return rc;
            break;
        }
        case ZMTP_DEC_BODY: {
            if (d->got == d->cap && d->got < d->size) {
                int rc = body_grow(d);
                if (rc < 0)
                    return rc;
            }
            uint64_t missing = d->cap - d->got;
            size_t n = missing < len ? (size_t)missing : len;
            if (n)
                memcpy(d->body + d->got, data, n);
            d->got += n;
            data += n;
            len -= n;
            if (d->got == d->size) {
                int rc = frame_done(d);
                if (rc < 0)
                    return rc;
            }
            break;
        }
        default:
            return FERRY_EPROTO;
        }
    }
    return d->state == ZMTP_DEC_FAILED ? FERRY_EPROTO : 0;
}

unsigned char *zmtp_dec_room(struct zmtp_dec *d, size_t *room)
{
    if (d->state != ZMTP_DEC_BODY || d->got == d->size)
        return NULL;
    if (d->got == d->cap && body_grow(d) < 0)
        return NULL;
    uint64_t missing = d->cap - d->got;
    *room = missing > (uint64_t)SIZE_MAX ? SIZE_MAX : (size_t)missing;
    return d->body + d->got;
}

int zmtp_dec_filled(struct zmtp_dec *d, size_t n)
{
    if (d->state != ZMTP_DEC_BODY || n > d->cap - d->got)
        return dec_fail(d, FERRY_EPROTO, "internal: body overfilled");
    d->got += n;
    return d->got == d->size ? frame_done(d) : 0;
}

void zmtp_dec_fini(struct zmtp_dec *d)
{
    if (d->handle != NULL && d->ops->free)
        d->ops->free(d->ctx, d->handle);
    d->handle = NULL;
    d->body = NULL;
}
