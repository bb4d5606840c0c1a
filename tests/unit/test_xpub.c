/*
 * test_xpub.c - XPUB and XSUB on every transport: subscriptions seen by
 * the application (first subscribe, last cancel, a subscriber that goes
 * away, verbose), the welcome message, an XSUB subscribing with messages
 * and receiving what its publisher filtered for it, a forwarder made of an
 * XSUB and an XPUB between a PUB and SUBs, and a subscription too large
 * for the caps refused and counted while the others are served.
 */
#include "../common.h"

static const char *const schemes[] = {"shm", "ipc", "tcp"};

/* Listens at a fresh URL of scheme; *url is where to dial. */
static void listen_at(ferry_socket *s, const char *scheme, const char *tag, char *url, size_t len)
{
    t_url_for(url, len, scheme, tag);
    assert_int_equal(ferry_listen(s, url), 0);
    if (strcmp(scheme, "tcp") == 0)
        assert_int_equal(ferry_socket_addr(s, url, len), 0);
}

/* Receives one message and checks it is exactly want[0..n). */
static void expect(ferry_socket *s, const void *want, size_t n)
{
    char buf[256];
    size_t len;
    assert_int_equal(ferry_recv(s, buf, sizeof buf, &len, 0), 0);
    if (len != n || memcmp(buf, want, n) != 0)
        fail_msg("got %zu bytes '%.*s', wanted %zu '%.*s'", len, (int)len, buf, n, (int)n,
                 (const char *)want);
}

static void expect_nothing(ferry_socket *s)
{
    char buf[64];
    size_t len;
    assert_int_equal(ferry_recv(s, buf, sizeof buf, &len, FERRY_DONTWAIT), FERRY_EAGAIN);
}

/* First subscribe and last cancel reach the application, once each. */
static void xpub_notices(const char *scheme)
{
    char url[128];
    ferry_socket *xpub = t_open_timed(FERRY_XPUB), *a = t_open_timed(FERRY_SUB),
                 *b = t_open_timed(FERRY_SUB);
    listen_at(xpub, scheme, "xpn", url, sizeof url);
    assert_int_equal(ferry_setopt(a, FERRY_OPT_SUBSCRIBE, "A", 1), 0);
    assert_int_equal(ferry_dial(a, url), 0);
    expect(xpub,
           "\x01"
           "A",
           2);
    assert_int_equal(ferry_setopt(b, FERRY_OPT_SUBSCRIBE, "A", 1), 0);
    assert_int_equal(ferry_setopt(b, FERRY_OPT_SUBSCRIBE, "B", 1), 0);
    assert_int_equal(ferry_dial(b, url), 0);
    expect(xpub,
           "\x01"
           "B",
           2); /* "A" had a subscriber already: no second notice */
    assert_int_equal(ferry_wait_peers(xpub, 2, 10000), 0);
    assert_int_equal(ferry_send(xpub, "A1", 2, 0), 0);
    expect(a, "A1", 2);
    expect(b, "A1", 2);
    /* a goes away: b still holds "A"; b cancels "B": the last one */
    ferry_close(a);
    assert_int_equal(ferry_setopt(b, FERRY_OPT_UNSUBSCRIBE, "B", 1), 0);
    expect(xpub,
           "\x00"
           "B",
           2);
    ferry_close(b); /* the last holder of "A" goes: its cancel is noticed */
    expect(xpub,
           "\x00"
           "A",
           2);
    ferry_close(xpub);
}

static void test_xpub_notices(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof schemes / sizeof *schemes; i++)
        xpub_notices(schemes[i]);
}

/* Verbose: every subscribe, repeats included; the welcome message first. */
static void test_xpub_verbose_and_welcome(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof schemes / sizeof *schemes; i++) {
        char url[128];
        ferry_socket *xpub = t_open_timed(FERRY_XPUB);
        ferry_setopt_int(xpub, FERRY_OPT_XPUB_VERBOSE, 1);
        assert_int_equal(ferry_setopt(xpub, FERRY_OPT_XPUB_WELCOME_MSG, "Wstate=42", 9), 0);
        listen_at(xpub, schemes[i], "xpv", url, sizeof url);
        ferry_socket *a = t_open_timed(FERRY_SUB), *b = t_open_timed(FERRY_SUB);
        assert_int_equal(ferry_setopt(a, FERRY_OPT_SUBSCRIBE, "W", 1), 0);
        assert_int_equal(ferry_setopt(b, FERRY_OPT_SUBSCRIBE, "W", 1), 0);
        assert_int_equal(ferry_dial(a, url), 0);
        expect(a, "Wstate=42", 9); /* a late joiner learns the state */
        expect(xpub, "\x01W", 2);
        assert_int_equal(ferry_dial(b, url), 0);
        expect(b, "Wstate=42", 9);
        expect(xpub, "\x01W", 2); /* verbose: the repeat too */
        ferry_close(a);
        ferry_close(b);
        ferry_close(xpub);
    }
}

/* XSUB subscribes with messages; its publisher filters for it. */
static void test_xsub_subscribes_with_messages(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof schemes / sizeof *schemes; i++) {
        char url[128];
        ferry_socket *pub = t_open_timed(FERRY_PUB), *xsub = t_open_timed(FERRY_XSUB);
        listen_at(pub, schemes[i], "xsm", url, sizeof url);
        assert_int_equal(ferry_dial(xsub, url), 0);
        assert_int_equal(ferry_send(xsub, "\x01T", 2, 0), 0);
        assert_int_equal(ferry_wait_peers(pub, 1, 10000), 0); /* it has subscribed */
        assert_int_equal(ferry_send(pub, "U1", 2, 0), 0);     /* filtered by the PUB */
        assert_int_equal(ferry_send(pub, "T1", 2, 0), 0);
        expect(xsub, "T1", 2);
        expect_nothing(xsub);
        ferry_close(xsub);
        ferry_close(pub);
    }
}

/* One step of a forwarder: a message waiting on one side (within the
 * socket's RCVTIMEO) goes to the other. 1 if something moved. */
static int forward(ferry_socket *from, ferry_socket *to)
{
    char buf[256];
    size_t len;
    int rc = ferry_recv(from, buf, sizeof buf, &len, 0);
    if (rc != 0)
        return 0;
    assert_int_equal(ferry_send(to, buf, len, 0), 0);
    return 1;
}

/* PUB (tcp) -> XSUB | XPUB (shm) -> two SUBs: the subscriptions travel up
 * to the PUB, which then filters; each SUB gets exactly its topic. */
static void test_forwarder_chain(void **state)
{
    (void)state;
    char up[128], down[128];
    ferry_socket *pub = t_open_timed(FERRY_PUB), *xsub = t_open_timed(FERRY_XSUB),
                 *xpub = t_open_timed(FERRY_XPUB), *a = t_open_timed(FERRY_SUB),
                 *b = t_open_timed(FERRY_SUB);
    listen_at(pub, "tcp", "fwu", up, sizeof up);
    listen_at(xpub, "shm", "fwd", down, sizeof down);
    assert_int_equal(ferry_dial(xsub, up), 0);
    assert_int_equal(ferry_setopt(a, FERRY_OPT_SUBSCRIBE, "a.", 2), 0);
    assert_int_equal(ferry_setopt(b, FERRY_OPT_SUBSCRIBE, "b.", 2), 0);
    assert_int_equal(ferry_dial(a, down), 0);
    assert_int_equal(ferry_dial(b, down), 0);
    /* the two subscriptions go up through the forwarder */
    for (int moved = 0; moved < 2;) {
        char buf[64];
        size_t len;
        assert_int_equal(ferry_recv(xpub, buf, sizeof buf, &len, 0), 0);
        assert_int_equal(ferry_send(xsub, buf, len, 0), 0);
        moved++;
    }
    assert_int_equal(ferry_wait_peers(pub, 1, 10000), 0);
    /* The PUB filters once a subscription is in: send b's topic until one
     * gets through, then a message nobody wants and one for a. Whatever
     * the XSUB receives goes down; "c." must never leave the publisher. */
    int got_b = 0, got_a = 0;
    char buf[64];
    size_t len;
    ferry_setopt_int(xsub, FERRY_OPT_RCVTIMEO, 5);
    for (int i = 0; i < 2000 && !got_b; i++) {
        char m[16];
        int n = snprintf(m, sizeof m, "b.%d", i);
        assert_int_equal(ferry_send(pub, m, (size_t)n, 0), 0);
        got_b = forward(xsub, xpub);
    }
    assert_true(got_b);
    ferry_setopt_int(xsub, FERRY_OPT_RCVTIMEO, 10000);
    assert_int_equal(ferry_send(pub, "c.no", 4, 0), 0);
    assert_int_equal(ferry_send(pub, "a.yes", 5, 0), 0);
    while (!got_a) {
        assert_int_equal(ferry_recv(xsub, buf, sizeof buf, &len, 0), 0);
        assert_true(len >= 2 && buf[0] != 'c'); /* filtered by the publisher */
        got_a = len == 5 && memcmp(buf, "a.yes", 5) == 0;
        assert_int_equal(ferry_send(xpub, buf, len, 0), 0);
    }
    expect(a, "a.yes", 5);
    assert_int_equal(ferry_recv(b, buf, sizeof buf, &len, 0), 0);
    assert_memory_equal(buf, "b.", 2);
    expect_nothing(a);
    ferry_close(a);
    ferry_close(b);
    ferry_close(xpub);
    ferry_close(xsub);
    ferry_close(pub);
}

/* A subscription past the caps (here one of 300 KiB over shm://, where it
 * fits the ring) is refused and counted; the XPUB goes on serving. */
static void test_oversized_subscription(void **state)
{
    (void)state;
    char url[128];
    ferry_socket *xpub = t_open_timed(FERRY_XPUB), *xsub = t_open_timed(FERRY_XSUB),
                 *sub = t_open_timed(FERRY_SUB);
    listen_at(xpub, "shm", "xbig", url, sizeof url);
    ferry_setopt_int(xsub, FERRY_OPT_RING_SIZE, 1 << 20);
    assert_int_equal(ferry_dial(xsub, url), 0);
    static unsigned char big[300 << 10];
    memset(big, 'p', sizeof big);
    big[0] = 1;
    assert_int_equal(ferry_send(xsub, big, sizeof big, 0), 0);
    assert_int_equal(ferry_setopt(sub, FERRY_OPT_SUBSCRIBE, "ok", 2), 0);
    assert_int_equal(ferry_dial(sub, url), 0);
    expect(xpub, "\x01ok", 3); /* the big one was not noticed: refused */
    int64_t errors = 0;
    assert_int_equal(ferry_getopt_int(xpub, FERRY_OPT_ERRORS, &errors), 0);
    assert_int_equal(errors, 1);
    char why[256];
    ferry_socket_drop_reason(xpub, why, sizeof why);
    assert_non_null(strstr(why, "FERRY_OPT_SUB_MAX_BYTES"));
    assert_int_equal(ferry_send(xpub, "ok!", 3, 0), 0);
    expect(sub, "ok!", 3);
    ferry_close(sub);
    ferry_close(xsub);
    ferry_close(xpub);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_xpub_notices),
        cmocka_unit_test(test_xpub_verbose_and_welcome),
        cmocka_unit_test(test_xsub_subscribes_with_messages),
        cmocka_unit_test(test_forwarder_chain),
        cmocka_unit_test(test_oversized_subscription),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
