/*
 * stream_curve.c - the security mechanism of one connection: NULL, or
 * CURVE (curve.h is the codec; auth.h says which client keys a server
 * admits). Here the codec meets the connection: which greeting we send,
 * what the peer's greeting must say, the handshake commands in turn, and
 * the sealing of frames that were queued before the session existed.
 */
#include "stream_int.h"

#include "../../core/auth.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int st_mech_start(struct st_pipe *p)
{
    ferry_socket *s = p->t->s;
    st_mech_end(p); /* a redial starts a new session */
    int mech = fy_auth_mech(s);
    if (mech == FY_MECH_NULL)
        return 0;
    p->zc = malloc(sizeof *p->zc);
    if (p->zc == NULL)
        return FERRY_ENOMEM;
    unsigned char secret[32], server[32];
    fy_auth_keys(s, secret, server);
    int rc = mech == FY_MECH_CURVE_SERVER ? zc_server_init(p->zc, secret)
                                          : zc_client_init(p->zc, secret, server);
    sodium_memzero(secret, sizeof secret);
    if (rc != 0)
        st_mech_end(p);
    return rc;
}

void st_mech_end(struct st_pipe *p)
{
    if (p->zc == NULL)
        return;
    zc_wipe(p->zc);
    free(p->zc);
    p->zc = NULL;
}

size_t st_mech_greeting(struct st_pipe *p, unsigned char out[ZMTP_GREETING_SIZE])
{
    if (p->zc == NULL)
        return zmtp_greeting(out);
    return zmtp_greeting_mech(out, ZMTP_MECH_CURVE, p->zc->server);
}

/* Room in the handshake output: what was written goes, so the buffer
 * holds the greeting and two commands whatever the kernel took. */
static unsigned char *hs_room(struct st_pipe *p, size_t *cap)
{
    if (p->hs_off == p->hs_len)
        p->hs_off = p->hs_len = 0;
    *cap = sizeof p->hs - p->hs_len;
    return p->hs + p->hs_len;
}

/* Our metadata, as READY carries it (INITIATE and READY under CURVE). */
static size_t our_meta(struct st_pipe *p, unsigned char out[ZMTP_META_MAX])
{
    ferry_socket *s = p->t->s;
    const struct fy_wire *w = s->proto->wire;
    return zmtp_meta(out, w->name, w->identity ? s->opt.routing_id : NULL,
                     w->identity ? s->opt.routing_id_len : 0);
}

/* The peer's greeting names another mechanism or the same role: refused,
 * counted, with what each side speaks in the reason. */
static int mech_mismatch(struct st_pipe *p, const char *why)
{
    ferry_socket *s = p->t->s;
    fy_stat_inc(&s->stat->refused);
    st_conn_broken(p, 0, FERRY_EMECH, "%s", why);
    return FERRY_EMECH;
}

static int curve_failed(struct st_pipe *p);

int st_mech_peer_greeting(struct st_pipe *p)
{
    int want = p->zc ? ZMTP_MECH_CURVE : ZMTP_MECH_NULL;
    int got = p->dec.peer_mech;
    if (got != want) {
        char why[160];
        snprintf(why, sizeof why,
                 "the peer speaks the %s security mechanism, this socket %s (the CURVE "
                 "options must agree on both ends)",
                 zmtp_mech_name(got), zmtp_mech_name(want));
        return mech_mismatch(p, why);
    }
    size_t cap, n;
    unsigned char *out = hs_room(p, &cap);
    if (p->zc == NULL) {
        unsigned char meta[ZMTP_META_MAX];
        size_t m = our_meta(p, meta);
        n = m ? zmtp_command(out, cap, "READY", meta, m) : 0;
    } else {
        /* libzmq's greeting says as-server 0 whatever its role, so only a
         * peer claiming to be a server tells us anything: two servers
         * would each wait for the other's HELLO */
        if (p->zc->server && p->dec.peer_as_server)
            return mech_mismatch(p, "both ends are CURVE servers (one must be the client)");
        if (p->zc->server)
            return 0; /* the client speaks first */
        n = zc_hello(p->zc, out, cap);
        if (n == 0)
            return curve_failed(p);
    }
    if (n == 0)
        return FERRY_EINVAL;
    p->hs_len += n;
    st_conn_flush(p);
    return 0;
}

/* A ZAP status code (RFC 27) as a CURVE server sends it in ERROR, in words. */
static const char *zap_words(const unsigned char *r, int len)
{
    if (len == 3 && memcmp(r, "400", 3) == 0)
        return "the server does not admit our key";
    if (len == 3 && memcmp(r, "300", 3) == 0)
        return "the server's authenticator failed for now";
    if (len == 3 && memcmp(r, "500", 3) == 0)
        return "the server's authenticator failed";
    return NULL;
}

static int peer_error(struct st_pipe *p, const unsigned char *data, size_t dlen)
{
    int rl = dlen >= 1 && data[0] <= dlen - 1 ? data[0] : 0;
    const char *w = zap_words(data + 1, rl);
    if (w != NULL) {
        st_conn_broken(p, 0, FERRY_EAUTH, "refused by the server: %s (ERROR %.3s)", w,
                       (const char *)data + 1);
        return FERRY_EAUTH;
    }
    st_conn_broken(p, 1, FERRY_ECONNREFUSED, "peer sent ERROR '%.*s'", rl, (const char *)data + 1);
    return FERRY_ECONNREFUSED;
}

static int curve_failed(struct st_pipe *p)
{
    st_conn_broken(p, 1, FERRY_EPROTO, "%s", p->zc->why ? p->zc->why : "CURVE handshake failed");
    return FERRY_EPROTO;
}

/* Server: the INITIATE is open; the client's key must be admitted, its
 * type fit ours; then READY, and the connection joins. */
static int server_initiate(struct st_pipe *p, const unsigned char *meta, size_t mlen)
{
    ferry_socket *s = p->t->s;
    char why[200];
    if (fy_auth_admit(s, p->zc->peer_perm, why, sizeof why) != 0) {
        fy_stat_inc(&s->stat->refused);
        st_send_error(p, "400"); /* libzmq's clients read a ZAP status code */
        st_conn_broken(p, 0, FERRY_EAUTH, "%s", why);
        return FERRY_EAUTH;
    }
    int rc = st_conn_peer_ok(p, meta, mlen);
    if (rc != 0)
        return rc;
    unsigned char ours[ZMTP_META_MAX];
    size_t cap, n, m = our_meta(p, ours);
    unsigned char *out = hs_room(p, &cap);
    if (zc_ready(p->zc, ours, m, out, cap, &n) != 0)
        return curve_failed(p);
    p->hs_len += n;
    st_conn_flush(p); /* READY before any message: hs goes out first */
    return st_conn_join(p);
}

int st_curve_handshake(struct st_pipe *p, unsigned char *body, size_t len)
{
    struct zmtp_curve *c = p->zc;
    const unsigned char *name, *data, *meta;
    size_t nlen, dlen, mlen, cap, n;
    if (zmtp_cmd_split(body, len, &name, &nlen, &data, &dlen) == 0 &&
        zmtp_cmd_is(name, nlen, "ERROR"))
        return peer_error(p, data, dlen);
    if (c->state == ZC_CLIENT_WELCOME &&
        zmtp_cmd_split(body, len, &name, &nlen, &data, &dlen) == 0 &&
        zmtp_cmd_is(name, nlen, "HELLO"))
        return mech_mismatch(p, "both ends are CURVE clients (one must be the server)");
    unsigned char *out = hs_room(p, &cap);
    switch (c->state) {
    case ZC_SERVER_HELLO:
        if (zc_on_hello(c, body, len, out, cap, &n) != 0)
            return curve_failed(p);
        p->hs_len += n;
        st_conn_flush(p);
        return 0;
    case ZC_SERVER_INITIATE:
        if (zc_on_initiate(c, body, len, &meta, &mlen) != 0)
            return curve_failed(p);
        return server_initiate(p, meta, mlen);
    case ZC_CLIENT_WELCOME: {
        unsigned char ours[ZMTP_META_MAX];
        size_t m = our_meta(p, ours);
        if (zc_on_welcome(c, body, len, ours, m, out, cap, &n) != 0)
            return curve_failed(p);
        p->hs_len += n;
        st_conn_flush(p);
        return 0;
    }
    case ZC_CLIENT_READY:
        if (zc_on_ready(c, body, len, &meta, &mlen) != 0)
            return curve_failed(p);
        return st_conn_ready(p, meta, mlen);
    default:
        c->why = "CURVE: a command out of turn";
        return curve_failed(p);
    }
}

int st_curve_open(struct st_pipe *p, int *flags, unsigned char **body, uint64_t *size)
{
    /* RFC 26 makes MESSAGE a command; libzmq sends it in a data frame,
     * and so do we (curve.h). Either is taken: only a box that opens (and
     * a nonce above the last) counts. A MESSAGE never has MORE. */
    if (*flags & ZMTP_MORE) {
        st_conn_broken(p, 1, FERRY_EPROTO, "CURVE: a MESSAGE frame with MORE set");
        return FERRY_EPROTO;
    }
    int f;
    size_t dlen;
    if (zc_decode(p->zc, *body, (size_t)*size, &f, &dlen) != 0)
        return curve_failed(p);
    *flags = ((f & ZC_MORE) ? ZMTP_MORE : 0) | ((f & ZC_COMMAND) ? ZMTP_COMMAND : 0);
    *body += ZC_MESSAGE_OVERHEAD;
    *size = dlen;
    /* a tunnelled command is held to what it may be in clear */
    ferry_socket *s = p->t->s;
    uint64_t cmd_max =
        s->opt.sub_max_bytes + 16 > ST_CMD_MAX ? s->opt.sub_max_bytes + 16 : ST_CMD_MAX;
    if ((f & ZC_COMMAND) && dlen > cmd_max) {
        st_conn_broken(p, 1, FERRY_EMSGSIZE, "CURVE: a tunnelled command of %zu bytes", dlen);
        return FERRY_EMSGSIZE;
    }
    return 0;
}

/* Reads the frame header we wrote at tx[i]: its flags, header length and
 * body length. */
static size_t own_hdr(const unsigned char *h, int *flags, size_t *blen)
{
    *flags = h[0];
    if (!(h[0] & ZMTP_LONG)) {
        *blen = h[1];
        return 2;
    }
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | h[1 + i];
    *blen = (size_t)v;
    return 9;
}

int st_curve_seal_queue(struct st_pipe *p)
{
    if (p->tx_off == p->tx_len)
        return 0;
    /* what is queued: whole frames in clear, written by st_send; marks
     * hold the stream offsets where messages end, in the same order */
    size_t from = p->tx_off, end = p->tx_len, grown = 0, i;
    for (i = from; i < end;) {
        int f;
        size_t bl, hl = (p->tx[i] & ZMTP_LONG) ? 9 : 2;
        if (hl > end - i || (own_hdr(p->tx + i, &f, &bl), bl > end - i - hl))
            return FERRY_EPROTO; /* not whole frames: st_send only queues whole ones */
        grown += (size_t)zc_wire_size(bl) - hl - bl;
        i += hl + bl;
    }
    unsigned char *nb = malloc(end - from + grown);
    if (nb == NULL)
        return FERRY_ENOMEM;
    size_t o = 0, mk = 0;
    for (i = from; i < end;) {
        int f;
        size_t bl, hl = own_hdr(p->tx + i, &f, &bl);
        size_t w = zc_encode(
            p->zc, nb + o, ((f & ZMTP_MORE) ? ZC_MORE : 0) | ((f & ZMTP_COMMAND) ? ZC_COMMAND : 0),
            p->tx + i + hl, bl, NULL, 0);
        if (w == 0) {
            free(nb);
            return FERRY_ENOMEM;
        }
        i += hl + bl;
        o += w;
        /* a message that ended here ends at the new offset */
        while (mk < p->mk_n && p->marks[(p->mk_head + mk) % p->mk_cap] == p->tx_base + i) {
            p->marks[(p->mk_head + mk) % p->mk_cap] = p->tx_base + from + o;
            mk++;
        }
    }
    free(p->tx);
    p->tx = nb;
    p->tx_cap = end - from + grown;
    p->tx_base += from;
    p->tx_off = 0;
    p->tx_len = o;
    return 0;
}
