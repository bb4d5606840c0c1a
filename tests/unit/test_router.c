/*
 * test_router.c - ZeroMQ's envelopes, built by the patterns on every
 * transport: REQ's delimiter and a REP's saved route, checked on the wire
 * against hand-played peers (a request or reply without its envelope, an
 * envelope too long), each a clear, counted drop while a good peer is
 * served.
 */
#include "../common.h"
#include "events.h"
#include "raw_zmtp.h"

#include <pthread.h>

#define FY_RID_MAX_T 256 /* room for a routing id (at most 255 bytes) */

/* --- raw ZMTP messages ------------------------------------------------------- */

struct rawmsg {
    unsigned char *b;
    size_t len, cap;
};

/* Appends one frame (short or long form), MORE unless last. */
static void raw_frame(struct rawmsg *m, const void *data, size_t len, int last)
{
    if (m->len + len + 9 > m->cap) {
        m->cap = (m->len + len + 9) * 2;
        m->b = realloc(m->b, m->cap);
        assert_non_null(m->b);
    }
    int more = last ? 0 : 1;
    if (len < 256) {
        m->b[m->len++] = (unsigned char)more;
        m->b[m->len++] = (unsigned char)len;
    } else {
        m->b[m->len++] = (unsigned char)(more | 2);
        for (int i = 7; i >= 0; i--)
            m->b[m->len++] = (unsigned char)((uint64_t)len >> (8 * i));
    }
    if (len)
        memcpy(m->b + m->len, data, len);
    m->len += len;
}

static void raw_flush(int fd, struct rawmsg *m)
{
    raw_send(fd, m->b, m->len);
    m->len = 0;
}

/* Reads one message's frames from a raw peer: up to max frames into
 * f[i]/fl[i] (each at most 64 bytes kept). Returns the frame count. */
static size_t raw_msg(int fd, char f[][64], size_t *fl, size_t max)
{
    size_t n = 0;
    for (;;) {
        unsigned char h[2];
        raw_read(fd, h, 2, 5000);
        assert_int_equal(h[0] & 0x06, 0); /* short data frames only, here */
        assert_true(n < max);
        fl[n] = h[1];
        char body[256];
        if (h[1])
            raw_read(fd, body, h[1], 5000);
        memcpy(f[n], body, h[1] < 64 ? h[1] : 64);
        n++;
        if (!(h[0] & 1))
            return n;
    }
}

static int64_t opt_of(ferry_socket *s, int opt)
{
    int64_t v = -1;
    assert_int_equal(ferry_getopt_int(s, opt, &v), 0);
    return v;
}

static void drop_reason_has(ferry_socket *s, const char *what)
{
    char why[256];
    assert_int_equal(ferry_socket_drop_reason(s, why, sizeof why), 0);
    if (strstr(why, what) == NULL)
        fail_msg("drop reason '%s' lacks '%s'", why, what);
}

static void recv_is(ferry_socket *s, const char *want, int more)
{
    char buf[300];
    size_t len;
    assert_int_equal(ferry_recv(s, buf, sizeof buf, &len, 0), 0);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(buf, want, len);
    assert_int_equal(opt_of(s, FERRY_OPT_RCVMORE), more);
}

/* --- REP: requests without an envelope, envelopes too long -------------------- */

/* A DEALER played by hand sends a REP a request without the delimiter, and
 * one of two parts without it: both dropped and counted (libzmq drops
 * them too), the connection kept; then a proper request with two routing
 * frames is answered with exactly that envelope in front. */
static void test_rep_drops_request_without_envelope(void **state)
{
    (void)state;
    ferry_socket *rep = open_sock(FERRY_REP);
    assert_int_equal(ferry_listen(rep, "tcp://127.0.0.1:*"), 0);
    int fd = raw_peer(port_of(rep), "DEALER", "REP");
    struct rawmsg m = {0};
    raw_frame(&m, "bare", 4, 1);
    raw_flush(fd, &m);
    raw_frame(&m, "a", 1, 0);
    raw_frame(&m, "b", 1, 1);
    raw_flush(fd, &m);
    raw_frame(&m, "hop1", 4, 0);
    raw_frame(&m, "hop2", 4, 0);
    raw_frame(&m, "", 0, 0);
    raw_frame(&m, "q", 1, 0);
    raw_frame(&m, "", 0, 1); /* an empty last part is the body's */
    raw_flush(fd, &m);
    recv_is(rep, "q", 1);
    recv_is(rep, "", 0);
    assert_int_equal(opt_of(rep, FERRY_OPT_ERRORS), 2);
    drop_reason_has(rep, "without an envelope");
    assert_int_equal(ferry_send(rep, "r", 1, FERRY_MORE), 0);
    assert_int_equal(ferry_send(rep, "", 0, 0), 0);
    char f[8][64];
    size_t fl[8];
    assert_int_equal(raw_msg(fd, f, fl, 8), 5);
    assert_int_equal(fl[0], 4);
    assert_memory_equal(f[0], "hop1", 4);
    assert_memory_equal(f[1], "hop2", 4);
    assert_int_equal(fl[2], 0);
    assert_int_equal(fl[3], 1);
    assert_memory_equal(f[3], "r", 1);
    assert_int_equal(fl[4], 0);
    free(m.b);
    close(fd);
    ferry_close(rep);
}

/* An envelope of 10,000 routing frames is refused (the request dropped,
 * counted, the reason given) while a well-behaved REQ is served. */
static void test_rep_refuses_long_envelope(void **state)
{
    (void)state;
    ferry_socket *rep = open_sock(FERRY_REP), *req = open_sock(FERRY_REQ);
    assert_int_equal(ferry_listen(rep, "tcp://127.0.0.1:*"), 0);
    int port = port_of(rep);
    int fd = raw_peer(port, "DEALER", "REP");
    struct rawmsg m = {0};
    for (int i = 0; i < 10000; i++)
        raw_frame(&m, "r", 1, 0);
    raw_frame(&m, "", 0, 0);
    raw_frame(&m, "bomb", 4, 1);
    raw_frame(&m, "id", 2, 0); /* then a proper request on the same connection */
    raw_frame(&m, "", 0, 0);
    raw_frame(&m, "after", 5, 1);
    raw_flush(fd, &m);
    recv_is(rep, "after", 0); /* the bomb never reaches the user */
    assert_int_equal(opt_of(rep, FERRY_OPT_ERRORS), 1);
    drop_reason_has(rep, "over 256 frames");
    assert_int_equal(ferry_send(rep, "x", 1, 0), 0);
    char f[4][64];
    size_t fl[4];
    assert_int_equal(raw_msg(fd, f, fl, 4), 3);
    assert_memory_equal(f[0], "id", 2);
    char url[64];
    snprintf(url, sizeof url, "tcp://127.0.0.1:%d", port);
    assert_int_equal(ferry_dial(req, url), 0);
    assert_int_equal(ferry_send(req, "good", 4, 0), 0);
    recv_is(rep, "good", 0);
    assert_int_equal(ferry_send(rep, "ok", 2, 0), 0);
    recv_is(req, "ok", 0);
    free(m.b);
    close(fd);
    ferry_close(req);
    ferry_close(rep);
}

/* --- REQ: a reply without the delimiter ------------------------------------- */

/* A REP played by hand: the request arrives with the delimiter in front;
 * a reply without it is dropped and counted, the REQ goes on waiting, and
 * the proper reply that follows is delivered without the delimiter. */
static void test_req_drops_reply_without_delimiter(void **state)
{
    (void)state;
    ferry_socket *req = open_sock(FERRY_REQ);
    assert_int_equal(ferry_listen(req, "tcp://127.0.0.1:*"), 0);
    int fd = raw_peer(port_of(req), "REP", "REQ");
    assert_int_equal(ferry_send(req, "ask", 3, 0), 0);
    char f[4][64];
    size_t fl[4];
    assert_int_equal(raw_msg(fd, f, fl, 4), 2);
    assert_int_equal(fl[0], 0);
    assert_int_equal(fl[1], 3);
    assert_memory_equal(f[1], "ask", 3);
    struct rawmsg m = {0};
    raw_frame(&m, "nodelim", 7, 1);
    raw_frame(&m, "", 0, 0);
    raw_frame(&m, "answer", 6, 1);
    raw_flush(fd, &m);
    recv_is(req, "answer", 0);
    assert_int_equal(opt_of(req, FERRY_OPT_ERRORS), 1);
    drop_reason_has(req, "without the empty delimiter");
    free(m.b);
    close(fd);
    ferry_close(req);
}

/* --- every transport ------------------------------------------------------ */

static const char *const kinds[] = {"shm", "ipc", "tcp"};

/* Makes s listen on a fresh endpoint of the given kind; *url is where to
 * dial it. */
static void listen_kind(ferry_socket *s, const char *kind, char *url, size_t len)
{
    char n[64];
    t_name(n, sizeof n, "rt");
    if (strcmp(kind, "shm") == 0)
        snprintf(url, len, "shm://%s", n);
    else if (strcmp(kind, "ipc") == 0)
        snprintf(url, len, "ipc://@%s", n);
    else
        snprintf(url, len, "tcp://127.0.0.1:*");
    assert_int_equal(ferry_listen(s, url), 0);
    if (strcmp(kind, "tcp") == 0)
        assert_int_equal(ferry_socket_addr(s, url, len), 0);
}

static void send_parts(ferry_socket *s, const char *const *parts, size_t n)
{
    for (size_t i = 0; i < n; i++)
        assert_int_equal(ferry_send(s, parts[i], strlen(parts[i]), i + 1 < n ? FERRY_MORE : 0), 0);
}

static void recv_parts(ferry_socket *s, const char *const *parts, size_t n)
{
    for (size_t i = 0; i < n; i++)
        recv_is(s, parts[i], i + 1 < n);
}

/* A DEALER frames REQ's envelope itself and talks to a REP, both ways of
 * binding, on every transport; the REP's reply comes back with the
 * delimiter in front, and empty parts survive. */
static void test_dealer_rep(void **state)
{
    (void)state;
    for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++) {
        for (int dealer_binds = 0; dealer_binds < 2; dealer_binds++) {
            ferry_socket *d = open_sock(FERRY_DEALER), *r = open_sock(FERRY_REP);
            char url[128];
            listen_kind(dealer_binds ? d : r, kinds[k], url, sizeof url);
            assert_int_equal(ferry_dial(dealer_binds ? r : d, url), 0);
            for (int i = 0; i < 3; i++) {
                const char *req[] = {"", "hello", ""};
                send_parts(d, req, 3);
                const char *body[] = {"hello", ""};
                recv_parts(r, body, 2);
                const char *rep[] = {"world", "", "!"};
                send_parts(r, rep, 3);
                const char *back[] = {"", "world", "", "!"};
                recv_parts(d, back, 4);
            }
            ferry_close(d);
            ferry_close(r);
        }
    }
}

/* DEALER to DEALER: any number of messages either way, no envelope; a
 * second peer gets every other message (round-robin). */
static void test_dealer_dealer(void **state)
{
    (void)state;
    for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++) {
        ferry_socket *a = open_sock(FERRY_DEALER), *b = open_sock(FERRY_DEALER),
                     *c = open_sock(FERRY_DEALER);
        char url[128];
        listen_kind(a, kinds[k], url, sizeof url);
        assert_int_equal(ferry_dial(b, url), 0);
        assert_int_equal(ferry_dial(c, url), 0);
        assert_int_equal(ferry_wait_peers(a, 2, 5000), 0);
        const char *one[] = {"x", "", "y"};
        send_parts(b, one, 3);
        send_parts(b, one, 3);
        recv_parts(a, one, 3);
        recv_parts(a, one, 3);
        for (int i = 0; i < 4; i++) {
            char m[8];
            snprintf(m, sizeof m, "m%d", i);
            assert_int_equal(ferry_send(a, m, strlen(m), 0), 0);
        }
        char g[4][8];
        size_t gl;
        ferry_socket *who[4] = {b, b, c, c};
        for (int i = 0; i < 4; i++) {
            assert_int_equal(ferry_recv(who[i], g[i], sizeof g[i] - 1, &gl, 0), 0);
            g[i][gl] = 0;
        }
        /* each peer got every other one */
        assert_int_equal(g[1][1] - g[0][1], 2);
        assert_int_equal(g[3][1] - g[2][1], 2);
        ferry_close(a);
        ferry_close(b);
        ferry_close(c);
    }
}

/* --- ROUTER ------------------------------------------------------------------ */

/* Receives a ROUTER's message: the routing id into id (*idlen), then the
 * parts, which must be want[0..n). */
static void router_recv_from(ferry_socket *r, unsigned char *id, size_t *idlen,
                             const char *const *want, size_t n)
{
    assert_int_equal(ferry_recv(r, id, FY_RID_MAX_T, idlen, 0), 0);
    assert_int_equal(opt_of(r, FERRY_OPT_RCVMORE), 1);
    recv_parts(r, want, n);
}

static void router_send_to(ferry_socket *r, const unsigned char *id, size_t idlen,
                           const char *const *parts, size_t n)
{
    assert_int_equal(ferry_send(r, id, idlen, FERRY_MORE), 0);
    send_parts(r, parts, n);
}

/* DEALER to ROUTER and back on every transport, each side binding in turn:
 * two dealers get generated ids (libzmq's form: 0x00 and 4 bytes), each
 * reply reaches the dealer it names, multipart with empty parts. */
static void test_dealer_router(void **state)
{
    (void)state;
    for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++) {
        for (int router_binds = 0; router_binds < 2; router_binds++) {
            ferry_socket *r = open_sock(FERRY_ROUTER), *d[2];
            char url[128];
            d[0] = open_sock(FERRY_DEALER);
            d[1] = open_sock(FERRY_DEALER);
            if (router_binds) {
                listen_kind(r, kinds[k], url, sizeof url);
                assert_int_equal(ferry_dial(d[0], url), 0);
                assert_int_equal(ferry_dial(d[1], url), 0);
            } else {
                char url2[128];
                listen_kind(d[0], kinds[k], url, sizeof url);
                listen_kind(d[1], kinds[k], url2, sizeof url2);
                assert_int_equal(ferry_dial(r, url), 0);
                assert_int_equal(ferry_dial(r, url2), 0);
            }
            unsigned char id[2][FY_RID_MAX_T];
            size_t idl[2];
            for (int i = 0; i < 2; i++) {
                const char *m[] = {i ? "from1" : "from0", "", "tail"};
                send_parts(d[i], m, 3);
                router_recv_from(r, id[i], &idl[i], m, 3);
                assert_int_equal(idl[i], 5);
                assert_int_equal(id[i][0], 0);
            }
            assert_true(memcmp(id[0], id[1], 5) != 0);
            for (int i = 1; i >= 0; i--) {
                const char *m[] = {"", i ? "to1" : "to0", ""};
                router_send_to(r, id[i], idl[i], m, 3);
                recv_parts(d[i], m, 3);
            }
            ferry_close(d[0]);
            ferry_close(d[1]);
            ferry_close(r);
        }
    }
}

/* A ROUTER's copying receive of the id leaves the body, read in place in
 * the shm:// ring, for the next call: it must keep the ring mapped after
 * its DEALER is gone (socket.c, recv_step: the part left behind is
 * pinned). ASan sees a read of an unmapped ring. */
static void test_part_outlives_peer(void **state)
{
    (void)state;
    ferry_socket *r = open_sock(FERRY_ROUTER), *d = open_sock(FERRY_DEALER);
    char url[128];
    listen_kind(r, "shm", url, sizeof url);
    assert_int_equal(ferry_dial(d, url), 0);
    ferry_monitor *mon;
    assert_int_equal(ferry_monitor_open(r, FERRY_EVENT_ALL, 0, &mon), 0);
    static const char body[] = "the body, in place in the ring";
    assert_int_equal(ferry_send(d, body, sizeof body, 0), 0);
    unsigned char id[FY_RID_MAX_T];
    size_t idl;
    assert_int_equal(ferry_recv(r, id, sizeof id, &idl, 0), 0);
    int64_t more = 0;
    assert_int_equal(ferry_getopt_int(r, FERRY_OPT_RCVMORE, &more), 0);
    assert_int_equal(more, 1);
    ferry_close(d);
    expect(mon, FERRY_EVENT_DISCONNECTED, 5000); /* the pipe has left the socket */
    ferry_msg *m;
    assert_int_equal(ferry_msg_recv(r, &m, 0), 0);
    assert_int_equal(ferry_msg_size(m), sizeof body);
    assert_memory_equal(ferry_msg_data(m), body, sizeof body);
    ferry_msg_free(m);
    ferry_monitor_close(mon);
    ferry_close(r);
}

/* A routing id set with FERRY_OPT_ROUTING_ID is what the ROUTER knows the
 * peer by, on every transport; ids not allowed are refused by setopt. */
static void test_announced_id(void **state)
{
    (void)state;
    ferry_socket *x = open_sock(FERRY_DEALER);
    unsigned char big[256];
    memset(big, 'x', sizeof big);
    assert_int_equal(ferry_setopt(x, FERRY_OPT_ROUTING_ID, big, 256), FERRY_EINVAL);
    assert_int_equal(ferry_setopt(x, FERRY_OPT_ROUTING_ID, "\0ab", 3), FERRY_EINVAL);
    assert_int_equal(ferry_setopt(x, FERRY_OPT_ROUTING_ID, "", 0), FERRY_EINVAL);
    assert_int_equal(ferry_setopt(x, FERRY_OPT_ROUTING_ID, big, 255), 0);
    unsigned char got[300];
    size_t gl = sizeof got;
    assert_int_equal(ferry_getopt(x, FERRY_OPT_ROUTING_ID, got, &gl), 0);
    assert_int_equal(gl, 255);
    ferry_close(x);
    for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++) {
        ferry_socket *r = open_sock(FERRY_ROUTER), *d = open_sock(FERRY_DEALER);
        assert_int_equal(ferry_setopt(d, FERRY_OPT_ROUTING_ID, "alice", 5), 0);
        char url[128];
        listen_kind(r, kinds[k], url, sizeof url);
        assert_int_equal(ferry_dial(d, url), 0);
        const char *m[] = {"hi"};
        send_parts(d, m, 1);
        unsigned char id[FY_RID_MAX_T];
        size_t idl;
        router_recv_from(r, id, &idl, m, 1);
        assert_int_equal(idl, 5);
        assert_memory_equal(id, "alice", 5);
        const char *back[] = {"hello alice"};
        router_send_to(r, (const unsigned char *)"alice", 5, back, 1);
        recv_parts(d, back, 1);
        ferry_close(d);
        ferry_close(r);
    }
}

/* To an unknown peer: dropped and counted by default; FERRY_EHOSTUNREACH
 * with ROUTER_MANDATORY, also once a known peer has gone. */
static void test_mandatory(void **state)
{
    (void)state;
    for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++) {
        ferry_socket *r = open_sock(FERRY_ROUTER), *d = open_sock(FERRY_DEALER);
        assert_int_equal(ferry_setopt(d, FERRY_OPT_ROUTING_ID, "bob", 3), 0);
        char url[128];
        listen_kind(r, kinds[k], url, sizeof url);
        assert_int_equal(ferry_dial(d, url), 0);
        const char *m[] = {"x"};
        router_send_to(r, (const unsigned char *)"nobody", 6, m, 1);
        assert_int_equal(opt_of(r, FERRY_OPT_DROPPED), 1);
        assert_int_equal(opt_of(r, FERRY_OPT_ROUTER_MANDATORY), 0);
        assert_int_equal(ferry_setopt_int(r, FERRY_OPT_ROUTER_MANDATORY, 1), 0);
        assert_int_equal(opt_of(r, FERRY_OPT_ROUTER_MANDATORY), 1);
        assert_int_equal(ferry_send(r, "nobody", 6, FERRY_MORE), 0);
        assert_int_equal(ferry_send(r, "x", 1, 0), FERRY_EHOSTUNREACH);
        assert_int_equal(ferry_wait_peers(r, 1, 5000), 0);
        router_send_to(r, (const unsigned char *)"bob", 3, m, 1);
        recv_parts(d, m, 1);
        ferry_close(d);
        /* the peer is gone once the router has seen it go */
        int rc = 0;
        for (int i = 0; i < 200 && rc == 0; i++) {
            if (opt_of(r, FERRY_OPT_PEERS) != 0) {
                ferry_wait_peers(r, 1000000, 20); /* a bounded wait for a wake */
                continue;
            }
            assert_int_equal(ferry_send(r, "bob", 3, FERRY_MORE), 0);
            rc = ferry_send(r, "x", 1, 0);
        }
        assert_int_equal(rc, FERRY_EHOSTUNREACH);
        assert_int_equal(opt_of(r, FERRY_OPT_DROPPED), 1);
        ferry_close(r);
    }
}

/* A full peer with ROUTER_MANDATORY: FERRY_EAGAIN with DONTWAIT (and a
 * timeout when blocking), never a drop; without it, dropped and counted. */
static void test_mandatory_full(void **state)
{
    (void)state;
    ferry_socket *r = open_sock(FERRY_ROUTER), *d = open_sock(FERRY_DEALER);
    assert_int_equal(ferry_setopt_int(r, FERRY_OPT_SNDHWM, 4), 0);
    assert_int_equal(ferry_setopt_int(d, FERRY_OPT_RCVHWM, 4), 0);
    assert_int_equal(ferry_setopt_int(r, FERRY_OPT_SNDTIMEO, 100), 0);
    assert_int_equal(ferry_setopt(d, FERRY_OPT_ROUTING_ID, "slow", 4), 0);
    char url[128];
    listen_kind(r, "shm", url, sizeof url);
    assert_int_equal(ferry_dial(d, url), 0);
    assert_int_equal(ferry_wait_peers(r, 1, 5000), 0);
    assert_int_equal(ferry_setopt_int(r, FERRY_OPT_ROUTER_MANDATORY, 1), 0);
    int rc = 0, sent = 0;
    while (rc == 0 && sent < 100) {
        assert_int_equal(ferry_send(r, "slow", 4, FERRY_MORE), 0);
        rc = ferry_send(r, "m", 1, FERRY_DONTWAIT);
        sent += rc == 0;
    }
    assert_int_equal(rc, FERRY_EAGAIN);
    assert_true(sent >= 4 && sent < 100);
    /* not now: the routing id part is kept, the last part is sent again */
    assert_int_equal(ferry_send(r, "m", 1, 0), FERRY_ETIMEDOUT);
    assert_int_equal(opt_of(r, FERRY_OPT_DROPPED), 0);
    assert_int_equal(ferry_setopt_int(r, FERRY_OPT_ROUTER_MANDATORY, 0), 0);
    assert_int_equal(ferry_send(r, "m", 1, 0), 0);
    assert_int_equal(opt_of(r, FERRY_OPT_DROPPED), 1);
    for (int i = 0; i < sent; i++)
        recv_is(d, "m", 0);
    ferry_close(d);
    ferry_close(r);
}

/* Two peers claim one id: the second is refused (counted, the reason
 * given) and the first keeps it; with ROUTER_HANDOVER the second takes it
 * and the first gets a generated one. */
static void test_duplicate_id(void **state)
{
    (void)state;
    for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k += 2) { /* shm, tcp */
        for (int handover = 0; handover < 2; handover++) {
            ferry_socket *r = open_sock(FERRY_ROUTER), *a = open_sock(FERRY_DEALER),
                         *b = open_sock(FERRY_DEALER);
            assert_int_equal(ferry_setopt_int(r, FERRY_OPT_ROUTER_HANDOVER, handover), 0);
            assert_int_equal(opt_of(r, FERRY_OPT_ROUTER_HANDOVER), handover);
            assert_int_equal(ferry_setopt(a, FERRY_OPT_ROUTING_ID, "dup", 3), 0);
            assert_int_equal(ferry_setopt(b, FERRY_OPT_ROUTING_ID, "dup", 3), 0);
            char url[128];
            listen_kind(r, kinds[k], url, sizeof url);
            assert_int_equal(ferry_dial(a, url), 0);
            assert_int_equal(ferry_wait_peers(r, 1, 5000), 0);
            int rc = ferry_dial(b, url);
            if (handover) {
                assert_int_equal(rc, 0);
                assert_int_equal(ferry_wait_peers(r, 2, 5000), 0);
                const char *m[] = {"to-b"};
                router_send_to(r, (const unsigned char *)"dup", 3, m, 1);
                recv_parts(b, m, 1);
                const char *fa[] = {"from-a"};
                send_parts(a, fa, 1);
                unsigned char id[FY_RID_MAX_T];
                size_t idl;
                router_recv_from(r, id, &idl, fa, 1);
                assert_int_equal(idl, 5); /* a generated id now */
                assert_int_equal(id[0], 0);
            } else {
                if (strcmp(kinds[k], "shm") == 0) {
                    assert_int_equal(rc, FERRY_EADDRINUSE); /* the handshake says why */
                    assert_non_null(strstr(ferry_errdetail(), "held by another peer"));
                } else {
                    assert_int_equal(rc, 0); /* tcp: refused after the handshake */
                }
                uint64_t end = t_now_ms() + 5000;
                while (opt_of(r, FERRY_OPT_REFUSED) < 1 && t_now_ms() < end)
                    ferry_wait_peers(r, 1000000, 20);
                assert_true(opt_of(r, FERRY_OPT_REFUSED) >= 1);
                drop_reason_has(r, "held by another peer");
                const char *m[] = {"to-a"};
                router_send_to(r, (const unsigned char *)"dup", 3, m, 1);
                recv_parts(a, m, 1);
            }
            ferry_close(a);
            ferry_close(b);
            ferry_close(r);
        }
    }
}

/* REQ to ROUTER: the ROUTER sees [id, "", body] and answers the same way;
 * on every transport. */
static void test_req_router(void **state)
{
    (void)state;
    for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++) {
        ferry_socket *r = open_sock(FERRY_ROUTER), *q = open_sock(FERRY_REQ);
        char url[128];
        listen_kind(r, kinds[k], url, sizeof url);
        assert_int_equal(ferry_dial(q, url), 0);
        for (int i = 0; i < 3; i++) {
            const char *m[] = {"ask", ""};
            send_parts(q, m, 2);
            unsigned char id[FY_RID_MAX_T];
            size_t idl;
            const char *got[] = {"", "ask", ""};
            router_recv_from(r, id, &idl, got, 3);
            const char *rep[] = {"", "answer"};
            router_send_to(r, id, idl, rep, 2);
            recv_is(q, "answer", 0);
        }
        ferry_close(q);
        ferry_close(r);
    }
}

struct chain_peer {
    const char *url;
    int type, n;
    int ok;
};

/* A REQ sending n requests and checking each reply, or a REP answering. */
static void *chain_main(void *arg)
{
    struct chain_peer *c = arg;
    ferry_socket *s;
    if (ferry_socket_open(&s, c->type) != 0)
        return NULL;
    ferry_setopt_int(s, FERRY_OPT_RCVTIMEO, 10000);
    ferry_setopt_int(s, FERRY_OPT_SNDTIMEO, 10000);
    if (ferry_dial(s, c->url) != 0) {
        ferry_close(s);
        return NULL;
    }
    int good = 0;
    for (int i = 0; i < c->n; i++) {
        char buf[64], want[72]; /* "re:" and all of buf */
        size_t len;
        if (c->type == FERRY_REQ) {
            int n = snprintf(buf, sizeof buf, "req-%p-%d", (void *)c, i);
            snprintf(want, sizeof want, "re:%s", buf);
            if (ferry_send(s, buf, (size_t)n, 0) != 0 ||
                ferry_recv(s, buf, sizeof buf - 1, &len, 0) != 0)
                break;
            buf[len] = 0;
            good += strcmp(buf, want) == 0;
        } else {
            if (ferry_recv(s, buf + 3, sizeof buf - 4, &len, 0) != 0)
                break;
            memcpy(buf, "re:", 3);
            if (ferry_send(s, buf, len + 3, 0) != 0)
                break;
            good++;
        }
    }
    c->ok = good == c->n;
    ferry_close(s);
    return NULL;
}

/* Moves one whole message from one socket to another (a broker's step). */
static void forward(ferry_socket *from, ferry_socket *to)
{
    for (int more = 1; more;) {
        ferry_msg *m;
        assert_int_equal(ferry_msg_recv(from, &m, 0), 0);
        more = ferry_msg_more(m);
        assert_int_equal(ferry_msg_send(to, m, more ? FERRY_MORE : 0), 0);
    }
}

/* REQ - ROUTER | broker | DEALER - REP: two REQs through a hand-written
 * broker to a REP; the envelopes stack (routing id, delimiter) and every
 * reply reaches the REQ that asked. */
static void test_chain(void **state)
{
    (void)state;
    ferry_socket *front = open_sock(FERRY_ROUTER), *back = open_sock(FERRY_DEALER);
    char fu[128], bu[128];
    listen_kind(front, "tcp", fu, sizeof fu);
    listen_kind(back, "shm", bu, sizeof bu);
    enum { N = 20 };
    struct chain_peer c[3] = {
        {fu, FERRY_REQ, N, 0}, {fu, FERRY_REQ, N, 0}, {bu, FERRY_REP, 2 * N, 0}};
    pthread_t th[3];
    for (int i = 0; i < 3; i++)
        assert_int_equal(pthread_create(&th[i], NULL, chain_main, &c[i]), 0);
    for (int i = 0; i < 2 * N; i++) {
        forward(front, back); /* one request at a time: the REP answers it */
        forward(back, front);
    }
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
        assert_true(c[i].ok);
    }
    ferry_close(front);
    ferry_close(back);
}

/* A peer announcing a 256-byte routing id (more than ZMTP allows) is
 * dropped, counted, the reason given, while another dealer is served. */
static void test_router_refuses_long_id(void **state)
{
    (void)state;
    ferry_socket *r = open_sock(FERRY_ROUTER), *d = open_sock(FERRY_DEALER);
    assert_int_equal(ferry_listen(r, "tcp://127.0.0.1:*"), 0);
    int port = port_of(r);
    int fd = raw_connect(port);
    raw_send(fd, greeting, sizeof greeting);
    unsigned char g[64];
    raw_read(fd, g, 64, 5000);
    /* READY: Socket-Type DEALER, Identity of 256 bytes (a long command) */
    unsigned char ready[400];
    size_t body = 6 + (1 + 11 + 4 + 6) + (1 + 8 + 4 + 256), o = 0;
    ready[o++] = 0x06;
    for (int i = 7; i >= 0; i--)
        ready[o++] = (unsigned char)((uint64_t)body >> (8 * i));
    memcpy(ready + o,
           "\x05READY\x0bSocket-Type\0\0\0\x06"
           "DEALER\x08Identity\0\0\x01\0",
           6 + 22 + 13);
    o += 6 + 22 + 13;
    memset(ready + o, 'i', 256);
    o += 256;
    raw_send(fd, ready, o);
    assert_true(raw_closed(fd, 5000));
    assert_int_equal(opt_of(r, FERRY_OPT_ERRORS), 1);
    drop_reason_has(r, "256 bytes");
    char url[64];
    snprintf(url, sizeof url, "tcp://127.0.0.1:%d", port);
    assert_int_equal(ferry_dial(d, url), 0);
    const char *m[] = {"fine"};
    send_parts(d, m, 1);
    unsigned char id[FY_RID_MAX_T];
    size_t idl;
    router_recv_from(r, id, &idl, m, 1);
    close(fd);
    ferry_close(d);
    ferry_close(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rep_drops_request_without_envelope),
        cmocka_unit_test(test_rep_refuses_long_envelope),
        cmocka_unit_test(test_req_drops_reply_without_delimiter),
        cmocka_unit_test(test_dealer_rep),
        cmocka_unit_test(test_dealer_dealer),
        cmocka_unit_test(test_dealer_router),
        cmocka_unit_test(test_part_outlives_peer),
        cmocka_unit_test(test_announced_id),
        cmocka_unit_test(test_mandatory),
        cmocka_unit_test(test_mandatory_full),
        cmocka_unit_test(test_duplicate_id),
        cmocka_unit_test(test_req_router),
        cmocka_unit_test(test_chain),
        cmocka_unit_test(test_router_refuses_long_id),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
