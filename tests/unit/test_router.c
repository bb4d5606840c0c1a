/*
 * test_router.c - ZeroMQ's envelopes, built by the patterns on every
 * transport: REQ's delimiter and a REP's saved route, checked on the wire
 * against hand-played peers (a request or reply without its envelope, an
 * envelope too long), each a clear, counted drop while a good peer is
 * served.
 */
#include "../common.h"
#include "raw_zmtp.h"

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rep_drops_request_without_envelope),
        cmocka_unit_test(test_rep_refuses_long_envelope),
        cmocka_unit_test(test_req_drops_reply_without_delimiter),
        cmocka_unit_test(test_dealer_rep),
        cmocka_unit_test(test_dealer_dealer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
