/*
 * test_curve.c - CURVE (RFC 26): the codec alone (a client and a server
 * state talking in memory, and every way a peer can lie to them), then
 * ferry sockets over tcp:// and ipc:// (patterns, admission, the allow
 * file, NULL against CURVE), and a hand-played hostile client over TCP.
 */
#include "common.h"
#include "events.h"
#include "raw_zmtp.h"
#include "transport/zmtp/curve.h"
#include "transport/zmtp/zmtp.h"

#include <sodium.h>
#include <sys/stat.h>

#define T_LEN(a) (sizeof(a) / sizeof((a)[0]))

static const char *drop_reason(ferry_socket *s)
{
    static char buf[256];
    assert_int_equal(ferry_socket_drop_reason(s, buf, sizeof buf), 0);
    return buf;
}

/* --- keys ----------------------------------------------------------------------- */

struct kp {
    char pub[41], sec[41];
    unsigned char p[32], s[32];
};

static struct kp new_kp(void)
{
    struct kp k;
    assert_int_equal(ferry_curve_keypair(k.pub, k.sec), 0);
    assert_int_equal(ferry_z85_decode(k.p, 32, k.pub, NULL), 0);
    assert_int_equal(ferry_z85_decode(k.s, 32, k.sec, NULL), 0);
    return k;
}

/* --- the codec ------------------------------------------------------------------ */

/* A frame written by the codec: its body (after the 2- or 9-octet header). */
static unsigned char *frame_body(unsigned char *f, size_t *len)
{
    if (f[0] & ZMTP_LONG) {
        uint64_t v = 0;
        for (int i = 0; i < 8; i++)
            v = v << 8 | f[1 + i];
        *len = (size_t)v;
        return f + 9;
    }
    *len = f[1];
    return f + 2;
}

struct duo {
    struct kp server, client;
    struct zmtp_curve c, s;
    unsigned char hello[ZC_FRAME_MAX], welcome[ZC_FRAME_MAX], initiate[ZC_FRAME_MAX],
        ready[ZC_FRAME_MAX];
    size_t hello_n, welcome_n, initiate_n, ready_n;
};

static const unsigned char meta_c[] = "\x0bSocket-Type\0\0\0\x03REQ";
static const unsigned char meta_s[] = "\x0bSocket-Type\0\0\0\x03REP";

/* Runs the handshake up to (and including) step `upto`: 1 HELLO, 2
 * WELCOME, 3 INITIATE, 4 READY. */
static void duo_run(struct duo *d, int upto)
{
    size_t bl, ml;
    unsigned char *b;
    const unsigned char *m;
    d->hello_n = zc_hello(&d->c, d->hello, sizeof d->hello);
    assert_int_equal(d->hello_n, 2 + ZC_HELLO_SIZE);
    if (upto < 2)
        return;
    b = frame_body(d->hello, &bl);
    assert_int_equal(zc_on_hello(&d->s, b, bl, d->welcome, sizeof d->welcome, &d->welcome_n), 0);
    if (upto < 3)
        return;
    b = frame_body(d->welcome, &bl);
    assert_int_equal(bl, ZC_WELCOME_SIZE);
    assert_int_equal(zc_on_welcome(&d->c, b, bl, meta_c, sizeof meta_c - 1, d->initiate,
                                   sizeof d->initiate, &d->initiate_n),
                     0);
    if (upto < 4)
        return;
    b = frame_body(d->initiate, &bl);
    assert_int_equal(zc_on_initiate(&d->s, b, bl, &m, &ml), 0);
    assert_int_equal(ml, sizeof meta_c - 1);
    assert_memory_equal(m, meta_c, ml);
    assert_memory_equal(d->s.peer_perm, d->client.p, 32); /* the client's key, proven */
    assert_int_equal(
        zc_ready(&d->s, meta_s, sizeof meta_s - 1, d->ready, sizeof d->ready, &d->ready_n), 0);
    b = frame_body(d->ready, &bl);
    assert_int_equal(zc_on_ready(&d->c, b, bl, &m, &ml), 0);
    assert_int_equal(ml, sizeof meta_s - 1);
    assert_memory_equal(m, meta_s, ml);
}

static void duo_init(struct duo *d)
{
    memset(d, 0, sizeof *d);
    d->server = new_kp();
    d->client = new_kp();
    assert_int_equal(zc_server_init(&d->s, d->server.s), 0);
    assert_int_equal(zc_client_init(&d->c, d->client.s, d->server.p), 0);
}

/* Seals a frame from `from` and opens it at `to`. */
static void pass(struct zmtp_curve *from, struct zmtp_curve *to, int flags, const char *text)
{
    unsigned char w[512];
    size_t n = zc_encode(from, w, flags, text, strlen(text), NULL, 0);
    assert_int_equal(n, zc_wire_size(strlen(text)));
    size_t bl, dl;
    unsigned char *b = frame_body(w, &bl);
    int f;
    assert_int_equal(zc_decode(to, b, bl, &f, &dl), 0);
    assert_int_equal(f, flags);
    assert_int_equal(dl, strlen(text));
    assert_memory_equal(b + ZC_MESSAGE_OVERHEAD, text, dl);
}

static void test_codec_handshake(void **state)
{
    (void)state;
    struct duo d;
    duo_init(&d);
    duo_run(&d, 4);
    assert_int_equal(d.c.state, ZC_ACTIVE);
    assert_int_equal(d.s.state, ZC_ACTIVE);
    /* the short-term secrets and the cookie key are gone once the session key exists */
    assert_true(sodium_is_zero(d.c.eph_sec, 32));
    assert_true(sodium_is_zero(d.s.eph_sec, 32));
    assert_true(sodium_is_zero(d.s.cookie_key, 32));
    assert_true(sodium_is_zero(d.c.perm_sec, 32)); /* each copy of a permanent secret too */
    assert_true(sodium_is_zero(d.s.perm_sec, 32));
    /* HELLO is 200 octets, 72 of them padding (RFC 26's grammar, as libzmq) */
    size_t bl;
    unsigned char *b = frame_body(d.hello, &bl);
    assert_int_equal(bl, 200);
    assert_memory_equal(b, "\5HELLO\1\0", 8);
    assert_true(sodium_is_zero(b + 8, 72));
    pass(&d.c, &d.s, ZC_MORE, "first part");
    pass(&d.c, &d.s, 0, "second part");
    pass(&d.s, &d.c, 0, "a reply");
    pass(&d.s, &d.c, ZC_COMMAND, "\4PING\0\0");
    /* the same text twice is two different ciphertexts (the nonce moves) */
    unsigned char w1[64], w2[64];
    size_t n1 = zc_encode(&d.c, w1, 0, "same", 4, NULL, 0);
    size_t n2 = zc_encode(&d.c, w2, 0, "same", 4, NULL, 0);
    assert_int_equal(n1, n2);
    assert_memory_not_equal(w1, w2, n1);
    /* a message's body never appears in clear on the wire */
    const char *secret = "the body nobody may read";
    unsigned char w[128];
    size_t n = zc_encode(&d.c, w, 0, secret, strlen(secret), NULL, 0);
    assert_null(memmem(w, n, secret, strlen(secret)));
    zc_wipe(&d.c);
    zc_wipe(&d.s);
    assert_true(sodium_is_zero((unsigned char *)&d.s, sizeof d.s));
}

static void test_codec_replay_reorder(void **state)
{
    (void)state;
    struct duo d;
    duo_init(&d);
    duo_run(&d, 4);
    unsigned char m1[64], m2[64], save[64];
    size_t n1 = zc_encode(&d.c, m1, 0, "one", 3, NULL, 0);
    size_t n2 = zc_encode(&d.c, m2, 0, "two", 3, NULL, 0);
    size_t bl, dl;
    int f;
    /* reordered: the second first is taken, the first then refused */
    memcpy(save, m2, n2);
    unsigned char *b = frame_body(m2, &bl);
    assert_int_equal(zc_decode(&d.s, b, bl, &f, &dl), 0);
    b = frame_body(m1, &bl);
    assert_int_equal(zc_decode(&d.s, b, bl, &f, &dl), FERRY_EPROTO);
    assert_non_null(strstr(d.s.why, "replayed or out of order"));
    /* replayed: a fresh server state that took m2 once refuses it again */
    struct duo e;
    duo_init(&e);
    duo_run(&e, 4);
    n1 = zc_encode(&e.c, m1, 0, "once", 4, NULL, 0);
    memcpy(save, m1, n1);
    b = frame_body(m1, &bl);
    assert_int_equal(zc_decode(&e.s, b, bl, &f, &dl), 0);
    memcpy(m1, save, n1);
    b = frame_body(m1, &bl);
    assert_int_equal(zc_decode(&e.s, b, bl, &f, &dl), FERRY_EPROTO);
    (void)n2;
}

static void test_codec_forgeries(void **state)
{
    (void)state;
    size_t bl, dl, ml;
    unsigned char *b;
    const unsigned char *m;
    int f;
    /* a MESSAGE with one bit flipped in its box, or in its nonce */
    for (int where = 0; where < 3; where++) {
        struct duo d;
        duo_init(&d);
        duo_run(&d, 4);
        unsigned char w[64];
        zc_encode(&d.c, w, 0, "payload", 7, NULL, 0);
        b = frame_body(w, &bl);
        size_t at = where == 0 ? 10 : where == 1 ? 20 : bl - 1; /* nonce, MAC, text */
        b[at] ^= 0x40;
        assert_int_equal(zc_decode(&d.s, b, bl, &f, &dl), FERRY_EPROTO);
    }
    /* a HELLO boxed for another server key (a client with the wrong key) */
    {
        struct duo d;
        duo_init(&d);
        struct kp other = new_kp();
        assert_int_equal(zc_client_init(&d.c, d.client.s, other.p), 0);
        duo_run(&d, 1);
        b = frame_body(d.hello, &bl);
        unsigned char out[ZC_FRAME_MAX];
        size_t on;
        assert_int_equal(zc_on_hello(&d.s, b, bl, out, sizeof out, &on), FERRY_EPROTO);
        assert_non_null(strstr(d.s.why, "wrong server key"));
    }
    /* a HELLO cut short, one too long, of another version, with nonce 0 */
    for (int k = 0; k < 4; k++) {
        struct duo d;
        duo_init(&d);
        duo_run(&d, 1);
        b = frame_body(d.hello, &bl);
        if (k == 2)
            b[6] = 2;
        if (k == 3)
            memset(b + 112, 0, 8);
        size_t len = k == 0 ? bl - 1 : k == 1 ? bl + 1 : bl;
        unsigned char out[ZC_FRAME_MAX];
        size_t on;
        assert_int_equal(zc_on_hello(&d.s, b, len, out, sizeof out, &on), FERRY_EPROTO);
    }
    /* a WELCOME from a server that does not hold the key the client knows */
    {
        struct duo d;
        duo_init(&d);
        duo_run(&d, 2);
        b = frame_body(d.welcome, &bl);
        b[100] ^= 1;
        unsigned char out[ZC_FRAME_MAX];
        size_t on;
        assert_int_equal(zc_on_welcome(&d.c, b, bl, meta_c, 5, out, sizeof out, &on), FERRY_EPROTO);
    }
    /* INITIATE: a forged cookie, a flipped box, a truncated one, and one
     * whose vouch names another server */
    for (int k = 0; k < 3; k++) {
        struct duo d;
        duo_init(&d);
        duo_run(&d, 3);
        b = frame_body(d.initiate, &bl);
        if (k == 0)
            b[9 + 40] ^= 1; /* inside the cookie's box */
        if (k == 1)
            b[bl - 1] ^= 1;
        size_t len = k == 2 ? ZC_INITIATE_MIN - 1 : bl;
        assert_int_equal(zc_on_initiate(&d.s, b, len, &m, &ml), FERRY_EPROTO);
        if (k == 0)
            assert_non_null(strstr(d.s.why, "cookie"));
    }
    {
        /* a cookie from another connection of the same server: refused */
        struct duo d, e;
        duo_init(&d);
        duo_init(&e);
        memcpy(e.server.s, d.server.s, 32);
        memcpy(e.server.p, d.server.p, 32);
        assert_int_equal(zc_server_init(&e.s, d.server.s), 0);
        assert_int_equal(zc_client_init(&e.c, e.client.s, d.server.p), 0);
        duo_run(&d, 3);
        duo_run(&e, 3);
        unsigned char *bd = frame_body(d.initiate, &bl);
        size_t bel;
        unsigned char *be = frame_body(e.initiate, &bel);
        memcpy(bd + 9, be + 9, 96); /* e's cookie in d's INITIATE */
        assert_int_equal(zc_on_initiate(&d.s, bd, bl, &m, &ml), FERRY_EPROTO);
    }
    /* commands out of turn */
    {
        struct duo d;
        duo_init(&d);
        duo_run(&d, 4);
        b = frame_body(d.hello, &bl);
        unsigned char out[ZC_FRAME_MAX];
        size_t on;
        assert_int_equal(zc_on_hello(&d.s, b, bl, out, sizeof out, &on), FERRY_EPROTO);
        unsigned char junk[40] = "\7MESSAGE";
        assert_int_equal(zc_decode(&d.s, junk, ZC_MESSAGE_MIN - 1, &f, &dl), FERRY_EPROTO);
        memcpy(junk, "\7MESSAGX", 8);
        assert_int_equal(zc_decode(&d.s, junk, sizeof junk, &f, &dl), FERRY_EPROTO);
    }
}

/* Random bytes and cut-short commands at each step of the handshake: every
 * one refused, none read past its length (ASan watches). */
static void test_codec_noise(void **state)
{
    (void)state;
    for (int i = 0; i < 2000; i++) {
        struct duo d;
        duo_init(&d);
        int step = i % 4;
        size_t len = (size_t)randombytes_uniform(400);
        unsigned char *b = malloc(len ? len : 1);
        randombytes_buf(b, len);
        const unsigned char *m;
        size_t ml, on;
        unsigned char out[ZC_FRAME_MAX];
        int rc;
        if (step == 0) {
            rc = zc_on_hello(&d.s, b, len, out, sizeof out, &on);
        } else if (step == 1) {
            duo_run(&d, 1);
            rc = zc_on_welcome(&d.c, b, len, meta_c, 5, out, sizeof out, &on);
        } else if (step == 2) {
            duo_run(&d, 2);
            rc = zc_on_initiate(&d.s, b, len, &m, &ml);
        } else {
            duo_run(&d, 3);
            rc = zc_on_ready(&d.c, b, len, &m, &ml);
        }
        assert_int_equal(rc, FERRY_EPROTO);
        free(b);
    }
}

/* --- sockets ---------------------------------------------------------------------- */

static const char *const schemes[] = {"tcp", "ipc"};

static void url_for(const char *scheme, char *url, size_t len)
{
    char n[64];
    if (strcmp(scheme, "tcp") == 0)
        snprintf(url, len, "tcp://127.0.0.1:*");
    else
        snprintf(url, len, "ipc://@%s", t_name(n, sizeof n, "curve"));
}

static void set_key(ferry_socket *s, int opt, const char *z85)
{
    assert_int_equal(ferry_setopt(s, opt, z85, 40), 0);
}

static ferry_socket *curve_server(int type, const struct kp *k, const char *allow)
{
    ferry_socket *s;
    assert_int_equal(ferry_socket_open(&s, type), 0);
    assert_int_equal(ferry_setopt_int(s, FERRY_OPT_CURVE_SERVER, 1), 0);
    set_key(s, FERRY_OPT_CURVE_SECRETKEY, k->sec);
    if (allow)
        set_key(s, FERRY_OPT_CURVE_ALLOW, allow);
    return s;
}

static ferry_socket *curve_client(int type, const struct kp *k, const char *server_pub)
{
    ferry_socket *s;
    assert_int_equal(ferry_socket_open(&s, type), 0);
    set_key(s, FERRY_OPT_CURVE_SECRETKEY, k->sec);
    set_key(s, FERRY_OPT_CURVE_SERVERKEY, server_pub);
    return s;
}

static void bind_any(ferry_socket *s, const char *scheme, char *url, size_t len)
{
    char want[160];
    url_for(scheme, want, sizeof want);
    assert_int_equal(ferry_listen(s, want), 0);
    assert_int_equal(ferry_socket_addr(s, url, len), 0);
}

static void recv_is(ferry_socket *s, const void *want, size_t n)
{
    static char buf[4 << 20];
    size_t got = 0;
    assert_int_equal(ferry_setopt_int(s, FERRY_OPT_RCVTIMEO, 10000), 0);
    assert_int_equal(ferry_recv(s, buf, sizeof buf, &got, 0), 0);
    assert_int_equal(got, n);
    assert_memory_equal(buf, want, n);
}

/* Every pattern pair over CURVE, both transports, with a message sent
 * before the connection existed, a multipart one and a 3 MiB one. */
static void test_patterns(void **state)
{
    (void)state;
    static const int pairs[][2] = {{FERRY_REP, FERRY_REQ},
                                   {FERRY_PULL, FERRY_PUSH},
                                   {FERRY_ROUTER, FERRY_DEALER},
                                   {FERRY_PUB, FERRY_SUB}};
    struct kp sk = new_kp(), ck = new_kp();
    size_t big_n = 3u << 20;
    char *big = malloc(big_n);
    for (size_t i = 0; i < big_n; i++)
        big[i] = (char)(i * 7 + 1);
    for (size_t t = 0; t < T_LEN(schemes); t++) {
        for (size_t k = 0; k < T_LEN(pairs); k++) {
            int stype = pairs[k][0], ctype = pairs[k][1];
            ferry_socket *srv = curve_server(stype, &sk, ck.pub);
            ferry_socket *cli = curve_client(ctype, &ck, sk.pub);
            char url[200];
            bind_any(srv, schemes[t], url, sizeof url);
            if (ctype == FERRY_SUB)
                assert_int_equal(ferry_setopt(cli, FERRY_OPT_SUBSCRIBE, "t", 1), 0);
            assert_int_equal(ferry_dial(cli, url), 0);
            if (ctype == FERRY_PUSH) /* queued before the handshake: sealed at READY */
                assert_int_equal(ferry_send(cli, "early", 5, 0), 0);
            assert_int_equal(ferry_wait_peers(cli, 1, 10000), 0);
            assert_int_equal(ferry_wait_peers(srv, 1, 10000), 0);
            ferry_socket *from = cli, *to = srv;
            if (stype == FERRY_PUB) {
                from = srv;
                to = cli;
                /* the subscription travels sealed: the first message may
                 * precede it, so send until one arrives */
                assert_int_equal(ferry_setopt_int(cli, FERRY_OPT_RCVTIMEO, 50), 0);
                char b[16];
                size_t n;
                int rc;
                do {
                    assert_int_equal(ferry_send(srv, "tick", 4, 0), 0);
                    rc = ferry_recv(cli, b, sizeof b, &n, 0);
                } while (rc == FERRY_EAGAIN || rc == FERRY_ETIMEDOUT);
                assert_int_equal(rc, 0);
            }
            if (ctype == FERRY_PUSH)
                recv_is(srv, "early", 5);
            if (stype == FERRY_ROUTER) {
                assert_int_equal(ferry_send(cli, "hi", 2, 0), 0);
                char id[256];
                size_t idn;
                assert_int_equal(ferry_setopt_int(srv, FERRY_OPT_RCVTIMEO, 10000), 0);
                assert_int_equal(ferry_recv(srv, id, sizeof id, &idn, 0), 0);
                recv_is(srv, "hi", 2);
                assert_int_equal(ferry_send(srv, id, idn, FERRY_MORE), 0);
                assert_int_equal(ferry_send(srv, "back", 4, 0), 0);
                recv_is(cli, "back", 4);
            } else {
                assert_int_equal(ferry_send(from, "t-one", 5, FERRY_MORE), 0);
                assert_int_equal(ferry_send(from, "t-two", 5, 0), 0);
                recv_is(to, "t-one", 5);
                int64_t more = 0;
                assert_int_equal(ferry_getopt_int(to, FERRY_OPT_RCVMORE, &more), 0);
                assert_int_equal(more, 1);
                recv_is(to, "t-two", 5);
                for (int round = 0; round < 2; round++) {
                    if (round == 1) {
                        big[0] = 't';
                        assert_int_equal(ferry_send(from, big, big_n, 0), 0);
                        recv_is(to, big, big_n);
                    }
                    if (stype == FERRY_REP) { /* the reply, sealed the other way */
                        assert_int_equal(ferry_send(srv, "ok", 2, 0), 0);
                        recv_is(cli, "ok", 2);
                    }
                }
            }
            ferry_stats st;
            assert_int_equal(ferry_socket_stats(srv, &st), 0);
            assert_int_equal(st.bad_input, 0);
            assert_int_equal(st.refused, 0);
            ferry_close(cli);
            ferry_close(srv);
        }
    }
    free(big);
}

/* A client whose key is not admitted: ERROR 400, FERRY_EAUTH on both
 * sides, counted as refused; allow-any then admits it. */
static void test_admission(void **state)
{
    (void)state;
    struct kp sk = new_kp(), ck = new_kp(), other = new_kp();
    for (size_t t = 0; t < T_LEN(schemes); t++) {
        ferry_socket *srv = curve_server(FERRY_PULL, &sk, other.pub);
        ferry_socket *cli = curve_client(FERRY_PUSH, &ck, sk.pub);
        ferry_monitor *ms = mon(srv), *mc = mon(cli);
        char url[200];
        bind_any(srv, schemes[t], url, sizeof url);
        assert_int_equal(ferry_dial(cli, url), 0);
        ferry_event ev = expect(ms, FERRY_EVENT_HANDSHAKE_FAILED, 10000);
        assert_int_equal(ev.error, FERRY_EAUTH);
        assert_non_null(strstr(ev.reason, ck.pub)); /* names the key it refused */
        assert_non_null(strstr(ev.reason, "not on the allow list"));
        ev = expect(mc, FERRY_EVENT_HANDSHAKE_FAILED, 10000);
        assert_int_equal(ev.error, FERRY_EAUTH);
        assert_non_null(strstr(ev.reason, "does not admit our key"));
        ferry_stats st;
        assert_int_equal(ferry_socket_stats(srv, &st), 0);
        assert_true(st.refused >= 1);
        assert_int_equal(st.peers, 0);
        /* the client keeps trying; admitting any key lets it in */
        assert_int_equal(ferry_setopt_int(srv, FERRY_OPT_CURVE_ALLOW_ANY, 1), 0);
        assert_int_equal(ferry_wait_peers(srv, 1, 15000), 0);
        assert_int_equal(ferry_send(cli, "in", 2, 0), 0);
        recv_is(srv, "in", 2);
        ferry_monitor_close(ms);
        ferry_monitor_close(mc);
        ferry_close(cli);
        ferry_close(srv);
    }
}

/* NULL against CURVE, either way round, and two servers: FERRY_EMECH on
 * both sides, counted as refused; a client with the wrong server key fails
 * its handshake and the server counts bad input. */
static void test_mismatches(void **state)
{
    (void)state;
    struct kp sk = new_kp(), ck = new_kp(), wrong = new_kp();
    for (int k = 0; k < 4; k++) {
        ferry_socket *srv, *cli;
        if (k == 0) { /* plain server, CURVE client */
            assert_int_equal(ferry_socket_open(&srv, FERRY_PULL), 0);
            cli = curve_client(FERRY_PUSH, &ck, sk.pub);
        } else if (k == 1) { /* CURVE server, plain client */
            srv = curve_server(FERRY_PULL, &sk, ck.pub);
            assert_int_equal(ferry_socket_open(&cli, FERRY_PUSH), 0);
        } else if (k == 2) { /* two servers */
            srv = curve_server(FERRY_PULL, &sk, ck.pub);
            cli = curve_server(FERRY_PUSH, &ck, sk.pub);
        } else { /* the client knows another server key */
            srv = curve_server(FERRY_PULL, &sk, ck.pub);
            cli = curve_client(FERRY_PUSH, &ck, wrong.pub);
        }
        ferry_monitor *ms = mon(srv), *mc = mon(cli);
        char url[200];
        bind_any(srv, "tcp", url, sizeof url);
        assert_int_equal(ferry_dial(cli, url), 0);
        ferry_event es = expect(ms, FERRY_EVENT_HANDSHAKE_FAILED, 10000);
        ferry_event ec = expect(mc, FERRY_EVENT_HANDSHAKE_FAILED, 10000);
        ferry_stats st;
        assert_int_equal(ferry_socket_stats(srv, &st), 0);
        if (k < 3) {
            assert_int_equal(es.error, FERRY_EMECH);
            assert_int_equal(ec.error, FERRY_EMECH);
            assert_true(st.refused >= 1);
            if (k < 2) {
                assert_non_null(strstr(es.reason, k == 0 ? "speaks the CURVE" : "speaks the NULL"));
                assert_non_null(strstr(ec.reason, k == 0 ? "speaks the NULL" : "speaks the CURVE"));
            } else {
                assert_non_null(strstr(es.reason, "both ends are CURVE servers"));
            }
        } else {
            assert_int_equal(es.error, FERRY_EPROTO);
            assert_non_null(strstr(es.reason, "wrong server key"));
            assert_true(st.bad_input >= 1);
        }
        assert_int_equal(st.peers, 0);
        ferry_monitor_close(ms);
        ferry_monitor_close(mc);
        ferry_close(cli);
        ferry_close(srv);
    }
}

static void write_file(const char *path, const char *text, mode_t mode)
{
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(chmod(tmp, mode), 0);
    assert_int_equal(rename(tmp, path), 0); /* as an editor or a deploy tool replaces it */
}

/* Dials once with a fresh client of key ck; returns the client's handshake
 * result: 0 admitted, or the error of its first failed handshake. */
static int try_client(const char *url, const struct kp *ck, const struct kp *sk)
{
    ferry_socket *cli = curve_client(FERRY_PUSH, ck, sk->pub);
    ferry_monitor *m = mon(cli);
    assert_int_equal(ferry_dial(cli, url), 0);
    int rc = -1;
    uint64_t end = t_now_ms() + 10000;
    while (rc == -1 && t_now_ms() < end) {
        ferry_event ev;
        if (ferry_monitor_recv(m, &ev, 1000) != 0)
            continue;
        if (ev.kind == FERRY_EVENT_HANDSHAKE_OK)
            rc = 0;
        else if (ev.kind == FERRY_EVENT_HANDSHAKE_FAILED)
            rc = ev.error;
    }
    ferry_monitor_close(m);
    ferry_close(cli);
    return rc;
}

/* The allow file: a key added while the server runs is admitted, one
 * removed is refused at its next connection; a file writable by others or
 * with a bad line, or gone, admits nobody. */
static void test_allow_file(void **state)
{
    (void)state;
    struct kp sk = new_kp(), a = new_kp(), b = new_kp();
    char path[200], n[64], text[400];
    snprintf(path, sizeof path, "/tmp/%s.keys", t_name(n, sizeof n, "allow"));
    snprintf(text, sizeof text, "# who may connect\n%s\n", a.pub);
    write_file(path, text, 0600);
    ferry_socket *srv = curve_server(FERRY_PULL, &sk, NULL);
    assert_int_equal(ferry_setopt(srv, FERRY_OPT_CURVE_ALLOW_FILE, path, strlen(path)), 0);
    char url[200];
    bind_any(srv, "tcp", url, sizeof url);
    assert_int_equal(try_client(url, &a, &sk), 0);
    assert_int_equal(try_client(url, &b, &sk), FERRY_EAUTH);
    snprintf(text, sizeof text, "%s\n  %s  \r\n", a.pub, b.pub); /* b added */
    write_file(path, text, 0644);
    assert_int_equal(try_client(url, &b, &sk), 0);
    snprintf(text, sizeof text, "%s\n", b.pub); /* a removed */
    write_file(path, text, 0600);
    assert_int_equal(try_client(url, &a, &sk), FERRY_EAUTH);
    assert_int_equal(try_client(url, &b, &sk), 0);
    /* fails closed */
    write_file(path, text, 0666);
    assert_int_equal(try_client(url, &b, &sk), FERRY_EAUTH);
    assert_non_null(strstr(drop_reason(srv), "writable by group or others"));
    snprintf(text, sizeof text, "%s\nnot-a-key\n", b.pub);
    write_file(path, text, 0600);
    assert_int_equal(try_client(url, &b, &sk), FERRY_EAUTH);
    assert_non_null(strstr(drop_reason(srv), "line 2"));
    unlink(path);
    assert_int_equal(try_client(url, &b, &sk), FERRY_EAUTH);
    ferry_close(srv);
}

/* What the options take and refuse, and set-ups that cannot work. */
static void test_options(void **state)
{
    (void)state;
    struct kp k = new_kp();
    ferry_socket *s;
    assert_int_equal(ferry_socket_open(&s, FERRY_PULL), 0);
    assert_int_equal(ferry_setopt(s, FERRY_OPT_CURVE_SECRETKEY, k.sec, 39), FERRY_EINVAL);
    assert_int_equal(
        ferry_setopt(s, FERRY_OPT_CURVE_SECRETKEY, "#########################################", 40),
        FERRY_EINVAL);
    assert_int_equal(ferry_setopt(s, FERRY_OPT_CURVE_SECRETKEY, k.sec, 41), 0); /* with its NUL */
    assert_int_equal(ferry_setopt(s, FERRY_OPT_CURVE_SECRETKEY, k.s, 32), 0);
    assert_int_equal(ferry_setopt(s, FERRY_OPT_CURVE_PUBLICKEY, k.pub, 40), 0);
    struct kp other = new_kp();
    assert_int_equal(ferry_setopt(s, FERRY_OPT_CURVE_PUBLICKEY, other.pub, 40), FERRY_EINVAL);
    char z[64];
    size_t zl = sizeof z;
    assert_int_equal(ferry_getopt(s, FERRY_OPT_CURVE_PUBLICKEY, z, &zl), 0);
    assert_string_equal(z, k.pub);
    unsigned char raw[32];
    zl = 32;
    assert_int_equal(ferry_getopt(s, FERRY_OPT_CURVE_PUBLICKEY, raw, &zl), 0);
    assert_memory_equal(raw, k.p, 32);
    zl = sizeof z;
    assert_int_equal(ferry_getopt(s, FERRY_OPT_CURVE_SECRETKEY, z, &zl), FERRY_EACCES);
    assert_int_equal(ferry_setopt_int(s, FERRY_OPT_CURVE_SERVER, 2), FERRY_EINVAL);
    assert_int_equal(ferry_setopt_int(s, FERRY_OPT_CURVE_SERVER, 1), 0);
    int64_t v = 0;
    assert_int_equal(ferry_getopt_int(s, FERRY_OPT_CURVE_SERVER, &v), 0);
    assert_int_equal(v, 1);
    /* a server admitting nobody cannot listen; nor can a CURVE socket take shm:// */
    assert_int_equal(ferry_listen(s, "tcp://127.0.0.1:*"), FERRY_EINVAL);
    assert_non_null(strstr(ferry_errdetail(), "admitting nobody"));
    assert_int_equal(ferry_setopt_int(s, FERRY_OPT_CURVE_ALLOW_ANY, 1), 0);
    char n[64], url[100];
    snprintf(url, sizeof url, "shm://%s", t_name(n, sizeof n, "curveshm"));
    assert_int_equal(ferry_listen(s, url), FERRY_ENOTSUP);
    assert_int_equal(ferry_listen(s, "tcp://127.0.0.1:*"), 0);
    /* the role and keys are settled by the first endpoint; admission is not */
    assert_int_equal(ferry_setopt_int(s, FERRY_OPT_CURVE_SERVER, 0), FERRY_ESTATE);
    assert_int_equal(ferry_setopt(s, FERRY_OPT_CURVE_SECRETKEY, k.sec, 40), FERRY_ESTATE);
    assert_int_equal(ferry_setopt(s, FERRY_OPT_CURVE_ALLOW, other.pub, 40), 0);
    ferry_close(s);
    /* a client without the server's key, or without its own */
    assert_int_equal(ferry_socket_open(&s, FERRY_PUSH), 0);
    set_key(s, FERRY_OPT_CURVE_SECRETKEY, k.sec);
    /* a secret key says CURVE was meant: not silently plain */
    assert_int_equal(ferry_dial(s, "tcp://127.0.0.1:1"), FERRY_EINVAL);
    assert_non_null(strstr(ferry_errdetail(), "without the server's public key"));
    ferry_close(s);
    assert_int_equal(ferry_socket_open(&s, FERRY_PUSH), 0);
    set_key(s, FERRY_OPT_CURVE_SERVERKEY, k.pub);
    assert_int_equal(ferry_dial(s, "tcp://127.0.0.1:1"), FERRY_EINVAL);
    assert_non_null(strstr(ferry_errdetail(), "without its secret key"));
    ferry_close(s);
}

/* PINGs and PONGs sealed both ways keep a quiet session alive past the
 * heartbeat timeout (generous, for a loaded machine under ASan); empty
 * parts survive the trip. */
static void test_heartbeat_and_empty(void **state)
{
    (void)state;
    struct kp sk = new_kp(), ck = new_kp();
    ferry_socket *srv = curve_server(FERRY_PAIR, &sk, ck.pub);
    ferry_socket *cli = curve_client(FERRY_PAIR, &ck, sk.pub);
    for (int i = 0; i < 2; i++) {
        ferry_socket *s = i ? cli : srv;
        assert_int_equal(ferry_setopt_int(s, FERRY_OPT_HEARTBEAT_IVL, 50), 0);
        assert_int_equal(ferry_setopt_int(s, FERRY_OPT_HEARTBEAT_TIMEOUT, 600), 0);
    }
    ferry_monitor *m = mon(srv);
    char url[200];
    bind_any(srv, "tcp", url, sizeof url);
    assert_int_equal(ferry_dial(cli, url), 0);
    assert_int_equal(ferry_wait_peers(srv, 1, 10000), 0);
    expect(m, FERRY_EVENT_HANDSHAKE_OK, 5000);
    /* four heartbeat timeouts of silence (a PING every 50 ms): a PONG that
     * did not come back would end it */
    ferry_event ev;
    uint64_t end = t_now_ms() + 2400;
    while (t_now_ms() < end)
        if (ferry_monitor_recv(m, &ev, 100) == 0 && ev.kind == FERRY_EVENT_DISCONNECTED)
            fail_msg("disconnected during the silence: %s", ev.reason);
    assert_int_equal(ferry_send(cli, "", 0, FERRY_MORE), 0);
    assert_int_equal(ferry_send(cli, "x", 1, FERRY_MORE), 0);
    assert_int_equal(ferry_send(cli, "", 0, 0), 0);
    recv_is(srv, "", 0);
    recv_is(srv, "x", 1);
    recv_is(srv, "", 0);
    ferry_stats st;
    assert_int_equal(ferry_socket_stats(srv, &st), 0);
    assert_int_equal(st.bad_input, 0);
    ferry_monitor_close(m);
    ferry_close(cli);
    ferry_close(srv);
}

/* Sealed messages around the receiver's first buffer (64 KiB and a box's
 * overhead): each size twice, each with other bytes, so a reused block
 * (its data starting past the box's header) carries no earlier bytes
 * through, and a block refilled at one size serves the next. */
static void test_sizes_around_a_block(void **state)
{
    (void)state;
    static const size_t sizes[] = {32768,      65536 - 33, 65536,  65536 + 31, 65536 + 32,
                                   65536 + 33, 65536 + 64, 131072, 65536,      40000};
    struct kp sk = new_kp(), ck = new_kp();
    ferry_socket *srv = curve_server(FERRY_PULL, &sk, ck.pub);
    ferry_socket *cli = curve_client(FERRY_PUSH, &ck, sk.pub);
    char url[200];
    bind_any(srv, "tcp", url, sizeof url);
    assert_int_equal(ferry_dial(cli, url), 0);
    size_t cap = 131072;
    unsigned char *msg = malloc(cap);
    assert_non_null(msg);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        for (int round = 0; round < 2; round++) {
            for (size_t j = 0; j < sizes[i]; j++)
                msg[j] = (unsigned char)(j * 13 + i * 7 + (size_t)round + 1);
            assert_int_equal(ferry_send(cli, msg, sizes[i], 0), 0);
            recv_is(srv, msg, sizes[i]);
        }
    ferry_stats st;
    assert_int_equal(ferry_socket_stats(srv, &st), 0);
    assert_int_equal(st.bad_input, 0);
    free(msg);
    ferry_close(cli);
    ferry_close(srv);
}

/* A client that completes the handshake by hand (the codec over a raw TCP
 * socket) and then lies: a replayed MESSAGE, a forged one, a frame in
 * clear. Each time the server drops it, counts bad input, and goes on
 * serving an honest client. */
static void hostile_session(int port, const struct kp *ck, const struct kp *sk,
                            struct zmtp_curve *c, int fd)
{
    unsigned char g[64], buf[2048];
    zmtp_greeting_mech(g, ZMTP_MECH_CURVE, 0);
    raw_send(fd, g, 64);
    raw_read(fd, buf, 64, 5000);
    assert_int_equal(buf[32], 1); /* the server says it is the server */
    assert_int_equal(zc_client_init(c, ck->s, sk->p), 0);
    size_t n = zc_hello(c, buf, sizeof buf);
    raw_send(fd, buf, n);
    raw_read(fd, buf, 2 + ZC_WELCOME_SIZE, 5000);
    unsigned char meta[ZMTP_META_MAX];
    size_t ml = zmtp_meta(meta, "PUSH", NULL, 0);
    unsigned char out[ZC_FRAME_MAX];
    assert_int_equal(zc_on_welcome(c, buf + 2, ZC_WELCOME_SIZE, meta, ml, out, sizeof out, &n), 0);
    raw_send(fd, out, n);
    raw_read(fd, buf, 2, 5000); /* READY: its header, then its body */
    assert_int_equal(buf[0], ZMTP_COMMAND);
    size_t bl = buf[1];
    raw_read(fd, buf, bl, 5000);
    const unsigned char *m;
    assert_int_equal(zc_on_ready(c, buf, bl, &m, &ml), 0);
    (void)port;
}

static void test_hostile_client(void **state)
{
    (void)state;
    struct kp sk = new_kp(), ck = new_kp(), good = new_kp();
    ferry_socket *srv = curve_server(FERRY_PULL, &sk, ck.pub);
    set_key(srv, FERRY_OPT_CURVE_ALLOW, good.pub);
    char url[200];
    bind_any(srv, "tcp", url, sizeof url);
    int port = port_of(srv);
    ferry_socket *honest = curve_client(FERRY_PUSH, &good, sk.pub);
    assert_int_equal(ferry_dial(honest, url), 0);
    for (int k = 0; k < 3; k++) {
        struct zmtp_curve c;
        int fd = raw_connect(port);
        hostile_session(port, &ck, &sk, &c, fd);
        unsigned char w[128];
        size_t n = zc_encode(&c, w, 0, "fine", 4, NULL, 0);
        raw_send(fd, w, n);
        recv_is(srv, "fine", 4); /* the session works */
        if (k == 0) {
            raw_send(fd, w, n); /* the same MESSAGE again */
        } else if (k == 1) {
            n = zc_encode(&c, w, 0, "forged", 6, NULL, 0);
            w[n - 1] ^= 1;
            raw_send(fd, w, n);
        } else {
            unsigned char clear[] = {0, 5, 'c', 'l', 'e', 'a', 'r'};
            raw_send(fd, clear, sizeof clear);
        }
        assert_true(raw_closed(fd, 5000));
        close(fd);
        zc_wipe(&c);
        assert_int_equal(ferry_send(honest, "honest", 6, 0), 0);
        recv_is(srv, "honest", 6);
    }
    ferry_stats st;
    assert_int_equal(ferry_socket_stats(srv, &st), 0);
    assert_int_equal(st.bad_input, 3);
    assert_int_equal(st.msgs_in, 6);
    ferry_close(honest);
    ferry_close(srv);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codec_handshake),
        cmocka_unit_test(test_codec_replay_reorder),
        cmocka_unit_test(test_codec_forgeries),
        cmocka_unit_test(test_codec_noise),
        cmocka_unit_test(test_patterns),
        cmocka_unit_test(test_admission),
        cmocka_unit_test(test_mismatches),
        cmocka_unit_test(test_allow_file),
        cmocka_unit_test(test_options),
        cmocka_unit_test(test_hostile_client),
        cmocka_unit_test(test_heartbeat_and_empty),
        cmocka_unit_test(test_sizes_around_a_block),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
