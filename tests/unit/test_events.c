/*
 * test_events.c - ferry_monitor: every kind of event provoked for real, on
 * each transport where it applies, and seen with the right reason: a
 * listen and a listen on a taken address, a refused connect and its
 * retries, a connection's whole life on both sides, a peer SIGKILLed, a
 * handshake with garbage, with the wrong socket type and with silence, a
 * heartbeat timeout over a network namespace's link taken down, drops,
 * and the queue's own promises (lost events counted, CLOSED never lost,
 * the monitor outliving its socket, its fd in a ferry_poller).
 */
#include "../common.h"
#include "core/fy.h"
#include "raw_shm.h"
#include "raw_zmtp.h"
#include "events.h"

#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/un.h>

static const char *const schemes[] = {"shm", "ipc", "tcp"};

static void bound_url(ferry_socket *s, char *url, size_t len)
{
    assert_int_equal(ferry_socket_addr(s, url, len), 0);
}

/* --- listening ----------------------------------------------------------------- */

static void test_listening_and_bind_failed(void **state)
{
    (void)state;
    for (size_t i = 0; i < FY_ARRAY_LEN(schemes); i++) {
        ferry_socket *a = t_open_timed(FERRY_PULL), *b = t_open_timed(FERRY_PULL);
        ferry_monitor *ma = mon(a), *mb = mon(b);
        char url[128], bound[256];
        t_url_for(url, sizeof url, schemes[i], "listen");
        assert_int_equal(ferry_listen(a, url), 0);
        bound_url(a, bound, sizeof bound);
        ferry_event ev = expect(ma, FERRY_EVENT_LISTENING, 1000);
        assert_string_equal(ev.endpoint, bound); /* tcp: the port resolved */
        assert_int_equal(ev.error, 0);
        assert_true(ev.time_ns > 0);
        /* the same address again: taken */
        assert_int_not_equal(ferry_listen(b, bound), 0);
        ev = expect(mb, FERRY_EVENT_BIND_FAILED, 1000);
        assert_int_equal(ev.error, FERRY_EADDRINUSE);
        assert_string_equal(ev.endpoint, bound);
        assert_true(strlen(ev.reason) > 0);
        ferry_close(a);
        ferry_close(b);
        ferry_monitor_close(ma);
        ferry_monitor_close(mb);
    }
}

/* --- a connection's life --------------------------------------------------------- */

static void test_connection_life(void **state)
{
    (void)state;
    for (size_t i = 0; i < FY_ARRAY_LEN(schemes); i++) {
        const char *sc = schemes[i];
        ferry_socket *l = t_open_timed(FERRY_PULL), *d = t_open_timed(FERRY_PUSH);
        ferry_setopt_int(d, FERRY_OPT_RECONNECT_IVL, 50);
        ferry_monitor *ml = mon(l), *md = mon(d);
        char url[128], bound[256];
        t_url_for(url, sizeof url, sc, "life");
        assert_int_equal(ferry_listen(l, url), 0);
        bound_url(l, bound, sizeof bound);
        assert_int_equal(ferry_dial(d, bound), 0);

        ferry_event ev = expect(md, FERRY_EVENT_CONNECTED, 5000);
        assert_string_equal(ev.endpoint, bound);
        ev = expect(md, FERRY_EVENT_HANDSHAKE_OK, 5000);
        assert_true(ev.peer_id > 0);
        if (strcmp(sc, "tcp") == 0) {
            assert_true(strncmp(ev.peer_addr, "tcp://127.0.0.1:", 16) == 0);
            assert_int_equal(ev.peer_uid, -1);
        } else { /* the kernel's word: the listener is this process */
            assert_int_equal(ev.peer_pid, getpid());
            assert_int_equal(ev.peer_uid, (int64_t)getuid());
        }
        ev = expect(ml, FERRY_EVENT_ACCEPTED, 5000);
        assert_string_equal(ev.endpoint, bound);
        if (strcmp(sc, "tcp") != 0)
            assert_int_equal(ev.peer_pid, getpid());
        else
            assert_true(strncmp(ev.peer_addr, "tcp://127.0.0.1:", 16) == 0);
        ev = expect(ml, FERRY_EVENT_HANDSHAKE_OK, 5000);
        unsigned lid = ev.peer_id;
        assert_true(lid > 0);

        /* a message goes through (events do not disturb traffic) */
        assert_int_equal(ferry_send(d, "x", 1, 0), 0);
        char buf[4];
        size_t n;
        assert_int_equal(ferry_recv(l, buf, sizeof buf, &n, 0), 0);

        /* the listener closes: the dialer sees its peer go, and retries */
        ferry_close(l);
        ev = expect(ml, FERRY_EVENT_CLOSED, 5000);
        assert_int_equal(ferry_monitor_recv(ml, &ev, 0), FERRY_ECLOSED);
        ev = expect(md, FERRY_EVENT_DISCONNECTED, 5000);
        assert_int_equal(ev.error, FERRY_ECONNRESET);
        ev = expect(md, FERRY_EVENT_CONNECT_RETRIED, 5000);
        assert_true(ev.value >= 50);
        assert_string_equal(ev.endpoint, bound);
        ferry_close(d);
        expect(md, FERRY_EVENT_CLOSED, 5000);
        ferry_monitor_close(ml);
        ferry_monitor_close(md);
    }
}

/* The listener's own view of its close: its peers are disconnected by it. */
static void test_disconnected_by_close(void **state)
{
    (void)state;
    ferry_socket *l = t_open_timed(FERRY_PULL), *d = t_open_timed(FERRY_PUSH);
    ferry_monitor *ml = mon(l);
    char url[128], bound[256];
    t_url_for(url, sizeof url, "tcp", "own");
    assert_int_equal(ferry_listen(l, url), 0);
    bound_url(l, bound, sizeof bound);
    assert_int_equal(ferry_dial(d, bound), 0);
    expect(ml, FERRY_EVENT_HANDSHAKE_OK, 5000);
    ferry_close(l);
    ferry_event ev = expect(ml, FERRY_EVENT_DISCONNECTED, 5000);
    assert_int_equal(ev.error, FERRY_ECLOSED);
    expect(ml, FERRY_EVENT_CLOSED, 5000);
    ferry_close(d);
    ferry_monitor_close(ml);
}

/* --- a refused connect -------------------------------------------------------------- */

static void test_connect_refused(void **state)
{
    (void)state;
    for (size_t i = 0; i < FY_ARRAY_LEN(schemes); i++) {
        ferry_socket *d = t_open_timed(FERRY_PUSH);
        ferry_setopt_int(d, FERRY_OPT_RECONNECT_IVL, 20);
        ferry_setopt_int(d, FERRY_OPT_RECONNECT_IVL_MAX, 80);
        ferry_monitor *md = mon(d);
        char url[128];
        if (strcmp(schemes[i], "tcp") == 0) { /* a port nobody listens on: bound, not listening */
            int fd = socket(AF_INET, SOCK_STREAM, 0);
            struct sockaddr_in sa = {.sin_family = AF_INET,
                                     .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
            socklen_t sl = sizeof sa;
            assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
            assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
            snprintf(url, sizeof url, "tcp://127.0.0.1:%d", ntohs(sa.sin_port));
            assert_int_equal(ferry_dial(d, url), 0);
            close(fd);
        } else {
            t_url_for(url, sizeof url, schemes[i], "refused");
            assert_int_equal(ferry_dial(d, url), 0);
        }
        /* retried with a growing delay, each saying why */
        int64_t last = 0;
        for (int k = 0; k < 3; k++) {
            ferry_event ev = expect(md, FERRY_EVENT_CONNECT_RETRIED, 5000);
            assert_string_equal(ev.endpoint, url);
            assert_true(ev.error == FERRY_ECONNREFUSED || ev.error == FERRY_ENOENT);
            assert_true(strlen(ev.reason) > 0);
            assert_true(ev.value >= last);
            last = ev.value;
        }
        assert_int_equal(last, 80); /* capped at RECONNECT_IVL_MAX */
        ferry_close(d);
        ferry_monitor_close(md);
    }
}

/* --- a peer SIGKILLed ------------------------------------------------------------- */

static void test_peer_killed(void **state)
{
    (void)state;
    for (size_t i = 0; i < FY_ARRAY_LEN(schemes); i++) {
        const char *sc = schemes[i];
        ferry_socket *l = t_open_timed(FERRY_PULL);
        ferry_monitor *ml = mon(l);
        char url[128], bound[256];
        t_url_for(url, sizeof url, sc, "kill");
        assert_int_equal(ferry_listen(l, url), 0);
        bound_url(l, bound, sizeof bound);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            t_die_with_parent();
            ferry_socket *d = NULL;
            CHILD_CHECK(ferry_socket_open(&d, FERRY_PUSH) == 0, 2);
            CHILD_CHECK(ferry_dial(d, bound) == 0, 3);
            CHILD_CHECK(ferry_send(d, "alive", 5, 0) == 0, 4);
            for (;;)
                pause();
        }
        char buf[8];
        size_t n;
        assert_int_equal(ferry_recv(l, buf, sizeof buf, &n, 0), 0);
        ferry_event ok = expect(ml, FERRY_EVENT_HANDSHAKE_OK, 5000);
        if (strcmp(sc, "tcp") != 0)
            assert_int_equal(ok.peer_pid, pid);
        kill(pid, SIGKILL);
        assert_int_equal(t_wait(pid), 128 + SIGKILL);
        ferry_event ev = expect(ml, FERRY_EVENT_DISCONNECTED, 5000);
        assert_int_equal(ev.error, FERRY_ECONNRESET);
        assert_int_equal(ev.peer_id, ok.peer_id);
        if (strcmp(sc, "tcp") != 0)
            assert_int_equal(ev.peer_pid, pid);
        else
            assert_string_equal(ev.peer_addr, ok.peer_addr);
        fprintf(stderr, "note: %s: %s (%s)\n", sc, ev.reason, ferry_err_name(ev.error));
        ferry_close(l);
        ferry_monitor_close(ml);
    }
}

/* --- handshakes that fail ---------------------------------------------------------- */

/* A raw connection to a listener's address. */
static int raw_to(const char *bound)
{
    if (strncmp(bound, "tcp://", 6) == 0)
        return raw_connect(atoi(strrchr(bound, ':') + 1));
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    const char *name = bound + 6;
    int shm = strncmp(bound, "shm://", 6) == 0;
    int fd = socket(AF_UNIX, shm ? SOCK_SEQPACKET : SOCK_STREAM, 0);
    socklen_t sl;
    if (shm) { /* the listener's abstract address (shm_ctl.c) */
        sl = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 +
                         (size_t)snprintf(sa.sun_path + 1, sizeof sa.sun_path - 1, "ferry/shm/%s",
                                          name));
    } else { /* ipc://@name: abstract */
        sl = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 +
                         (size_t)snprintf(sa.sun_path + 1, sizeof sa.sun_path - 1, "%s", name + 1));
    }
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sl), 0);
    return fd;
}

static void test_handshake_garbage(void **state)
{
    (void)state;
    for (size_t i = 0; i < FY_ARRAY_LEN(schemes); i++) {
        ferry_socket *l = t_open_timed(FERRY_PULL);
        ferry_monitor *ml = mon(l);
        char url[128], bound[256];
        t_url_for(url, sizeof url, schemes[i], "garbage");
        assert_int_equal(ferry_listen(l, url), 0);
        bound_url(l, bound, sizeof bound);
        int fd = raw_to(bound);
        static const char junk[] =
            "GET / HTTP/1.1\r\nHost: ferry\r\n\r\n0123456789abcdef0123456789";
        assert_true(send(fd, junk, sizeof junk, MSG_NOSIGNAL) > 0);
        ferry_event ev = expect(ml, FERRY_EVENT_ACCEPTED, 5000);
        if (strcmp(schemes[i], "tcp") != 0)
            assert_int_equal(ev.peer_pid, getpid());
        ev = expect(ml, FERRY_EVENT_HANDSHAKE_FAILED, 5000);
        assert_int_equal(ev.error, FERRY_EPROTO);
        assert_true(strlen(ev.reason) > 0);
        fprintf(stderr, "note: %s: %s\n", schemes[i], ev.reason);
        /* the listener still serves */
        ferry_socket *d = t_open_timed(FERRY_PUSH);
        assert_int_equal(ferry_dial(d, bound), 0);
        expect(ml, FERRY_EVENT_HANDSHAKE_OK, 5000);
        close(fd);
        ferry_close(d);
        ferry_close(l);
        ferry_monitor_close(ml);
    }
}

static void test_handshake_wrong_type(void **state)
{
    (void)state;
    for (size_t i = 0; i < FY_ARRAY_LEN(schemes); i++) {
        ferry_socket *l = t_open_timed(FERRY_PULL), *d = t_open_timed(FERRY_PULL);
        ferry_setopt_int(d, FERRY_OPT_RECONNECT_IVL, 1000);
        ferry_monitor *ml = mon(l), *md = mon(d);
        char url[128], bound[256];
        t_url_for(url, sizeof url, schemes[i], "type");
        assert_int_equal(ferry_listen(l, url), 0);
        bound_url(l, bound, sizeof bound);
        int rc = ferry_dial(d, bound); /* shm:// says at once; tcp/ipc later */
        assert_true(rc == 0 || rc == FERRY_EPEERTYPE);
        /* each side says why: the one that found out, and the one told */
        ferry_event ev = expect(ml, FERRY_EVENT_HANDSHAKE_FAILED, 5000);
        assert_int_equal(ev.error, FERRY_EPEERTYPE);
        assert_non_null(strcasestr(ev.reason, "PULL"));
        ev = expect(md, FERRY_EVENT_HANDSHAKE_FAILED, 5000);
        assert_true(ev.error == FERRY_EPEERTYPE || ev.error == FERRY_ECONNREFUSED);
        assert_true(strlen(ev.reason) > 0);
        ferry_close(d);
        ferry_close(l);
        ferry_monitor_close(ml);
        ferry_monitor_close(md);
    }
}

static void test_handshake_silent(void **state)
{
    (void)state;
    for (size_t i = 0; i < FY_ARRAY_LEN(schemes); i++) {
        ferry_socket *l = t_open_timed(FERRY_PULL);
        ferry_setopt_int(l, FERRY_OPT_HANDSHAKE_IVL, 200);
        ferry_monitor *ml = mon(l);
        char url[128], bound[256];
        t_url_for(url, sizeof url, schemes[i], "silent");
        assert_int_equal(ferry_listen(l, url), 0);
        bound_url(l, bound, sizeof bound);
        int fd = raw_to(bound);
        ferry_event ev = expect(ml, FERRY_EVENT_HANDSHAKE_FAILED, 5000);
        assert_int_equal(ev.error, FERRY_ETIMEDOUT);
        close(fd);
        ferry_close(l);
        ferry_monitor_close(ml);
    }
}

/* A hand-played shm:// dialer answers the WELCOME with a REFUSE of its own
 * whose code is no refusal (-EINTR, and one that is no error at all) and
 * whose text holds control bytes: the listener reports it as refused, not
 * with the peer's code, escaped, and serves the next dialer. */
static void test_shm_dialer_refusal_untrusted(void **state)
{
    (void)state;
    static const int32_t codes[] = {-EINTR, -4500, 7, FERRY_EPROTO};
    for (size_t i = 0; i < FY_ARRAY_LEN(codes); i++) {
        ferry_socket *l = t_open_timed(FERRY_PULL);
        ferry_monitor *ml = mon(l);
        char url[128];
        t_url(url, sizeof url, "refuse");
        const char *name = url + 6; /* after "shm://" */
        assert_int_equal(ferry_listen(l, url), 0);
        int fd = raw_shm_connect(name);
        assert_true(fd >= 0);
        struct shm_ctl c;
        assert_true(raw_shm_read(fd, &c) > 0); /* the WELCOME */
        memset(&c, 0, sizeof c);
        memcpy(c.magic, "FERRYCTL", 8);
        c.version = SHM_CTL_VERSION;
        c.op = SHM_OP_REFUSE;
        c.err = codes[i];
        memset(c.text, 0x1b, sizeof c.text); /* escapes, and no NUL */
        assert_true(raw_shm_send(fd, &c, NULL, 0) > 0);
        expect(ml, FERRY_EVENT_ACCEPTED, 5000);
        ferry_event ev = expect(ml, FERRY_EVENT_HANDSHAKE_FAILED, 5000);
        assert_int_equal(ev.error, codes[i] == FERRY_EPROTO ? FERRY_EPROTO : FERRY_ECONNREFUSED);
        assert_non_null(strstr(ev.reason, "refused by the dialer"));
        assert_null(strchr(ev.reason, 0x1b)); /* escaped */
        close(fd);
        ferry_socket *d = t_open_timed(FERRY_PUSH);
        assert_int_equal(ferry_dial(d, url), 0);
        expect(ml, FERRY_EVENT_HANDSHAKE_OK, 5000);
        ferry_close(d);
        ferry_close(l);
        ferry_monitor_close(ml);
    }
}

/* --- a heartbeat timeout: the link goes down under a live connection ------------ */

/* In a network namespace of its own (so the link taken down is ours
 * alone): its loopback up, a PULL listening, a PUSH with heartbeats
 * connected, then the link down. Exit code: 0 seen as it should be. */
static int heartbeat_child(void)
{
    if (unshare(CLONE_NEWNET) != 0)
        return 77;
    int ctl = socket(AF_INET, SOCK_DGRAM, 0);
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "lo");
    CHILD_CHECK(ioctl(ctl, SIOCGIFFLAGS, &ifr) == 0, 2);
    ifr.ifr_flags |= IFF_UP;
    CHILD_CHECK(ioctl(ctl, SIOCSIFFLAGS, &ifr) == 0, 3);
    ferry_socket *l = NULL, *d = NULL;
    CHILD_CHECK(ferry_socket_open(&l, FERRY_PULL) == 0, 4);
    CHILD_CHECK(ferry_socket_open(&d, FERRY_PUSH) == 0, 4);
    ferry_setopt_int(d, FERRY_OPT_HEARTBEAT_IVL, 100);
    ferry_setopt_int(d, FERRY_OPT_HEARTBEAT_TIMEOUT, 300);
    ferry_monitor *m = NULL;
    CHILD_CHECK(ferry_monitor_open(d, FERRY_EVENT_ALL, 0, &m) == 0, 5);
    CHILD_CHECK(ferry_listen(l, "tcp://127.0.0.1:*") == 0, 6);
    char bound[256];
    CHILD_CHECK(ferry_socket_addr(l, bound, sizeof bound) == 0, 7);
    CHILD_CHECK(ferry_dial(d, bound) == 0, 8);
    ferry_event ev;
    CHILD_CHECK(next_of(m, FERRY_EVENT_HANDSHAKE_OK, &ev, 5000) == 0, 9);
    ifr.ifr_flags &= ~IFF_UP;
    CHILD_CHECK(ioctl(ctl, SIOCSIFFLAGS, &ifr) == 0, 10);
    CHILD_CHECK(next_of(m, FERRY_EVENT_DISCONNECTED, &ev, 5000) == 0, 11);
    fprintf(stderr, "note: link down: %s (%s)\n", ev.reason, ferry_err_name(ev.error));
    CHILD_CHECK(ev.error == FERRY_ETIMEDOUT, 12);
    CHILD_CHECK(strstr(ev.reason, "heartbeat") != NULL, 13);
    CHILD_CHECK(next_of(m, FERRY_EVENT_CONNECT_RETRIED, &ev, 5000) == 0, 14);
    return 0;
}

static void test_heartbeat_timeout_link_down(void **state)
{
    (void)state;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        t_die_with_parent();
        _exit(heartbeat_child());
    }
    int rc = t_wait(pid);
    if (rc == 77)
        skip(); /* no network namespace for us: not root */
    assert_int_equal(rc, 0);
}

/* --- drops ------------------------------------------------------------------------ */

static void test_dropped_rate_limited(void **state)
{
    (void)state;
    ferry_socket *r = t_open_timed(FERRY_ROUTER);
    ferry_monitor *m = mon(r);
    assert_int_equal(ferry_listen(r, "tcp://127.0.0.1:*"),
                     0); /* its I/O thread: the limit's timer */
    ferry_event ev;
    expect(m, FERRY_EVENT_LISTENING, 1000);
    uint64_t t0 = t_now_ms();
    enum { N = 5000 };
    for (int i = 0; i < N; i++) { /* an unknown routing id: dropped, no route */
        assert_int_equal(ferry_send(r, "nobody", 6, FERRY_MORE), 0);
        assert_int_equal(ferry_send(r, "x", 1, 0), 0);
    }
    uint64_t took = t_now_ms() - t0;
    int64_t total = 0, events = 0;
    while (total < N && next_of(m, FERRY_EVENT_DROPPED, &ev, 2000) == 0) {
        assert_int_equal(ev.error, FERRY_EHOSTUNREACH);
        assert_true(ev.value > 0);
        total += ev.value;
        events++;
    }
    assert_int_equal(total, N); /* every drop in exactly one event */
    int64_t dropped = 0;
    assert_int_equal(ferry_getopt_int(r, FERRY_OPT_DROPPED, &dropped), 0);
    assert_int_equal(dropped, N);
    /* at most one per 100 ms, plus the first */
    fprintf(stderr, "note: %d drops in %llu ms: %lld events\n", N, (unsigned long long)took,
            (long long)events);
    assert_true(events <= 2 + (int64_t)(took / 100));
    assert_int_equal(ferry_monitor_recv(m, &ev, 0), FERRY_EAGAIN);
    ferry_close(r);
    ferry_monitor_close(m);
}

/* --- the queue's promises ------------------------------------------------------------ */

static void test_lost_counted_closed_kept(void **state)
{
    (void)state;
    ferry_socket *s = t_open_timed(FERRY_PULL);
    ferry_monitor *m = NULL;
    assert_int_equal(ferry_monitor_open(s, FERRY_EVENT_ALL, 4, &m), 0);
    for (int i = 0; i < 10; i++)
        assert_int_equal(ferry_listen(s, "tcp://127.0.0.1:*"), 0);
    ferry_close(s);
    ferry_event ev;
    for (int i = 0; i < 4; i++) {
        assert_int_equal(ferry_monitor_recv(m, &ev, 0), 0);
        assert_int_equal(ev.kind, FERRY_EVENT_LISTENING);
        assert_int_equal(ev.lost, 0);
    }
    assert_int_equal(ferry_monitor_recv(m, &ev, 0), 0);
    assert_int_equal(ev.kind, FERRY_EVENT_CLOSED); /* never lost */
    assert_int_equal(ev.lost, 6);                  /* and says how many were */
    assert_int_equal(ferry_monitor_lost(m), 6);
    assert_int_equal(ferry_monitor_recv(m, &ev, 100), FERRY_ECLOSED);
    ferry_monitor_close(m);
}

static void test_monitor_api(void **state)
{
    (void)state;
    ferry_socket *s = t_open_timed(FERRY_PULL);
    ferry_monitor *m = NULL, *m2 = NULL;
    assert_int_equal(ferry_monitor_open(s, 1u << 30, 0, &m), FERRY_EINVAL);
    assert_int_equal(ferry_monitor_open(s, FERRY_EVENT_ALL, -1, &m), FERRY_EINVAL);
    assert_int_equal(ferry_monitor_open(s, FERRY_EVENT_ALL, 65537, &m), FERRY_EINVAL);
    /* only the kinds asked for (CLOSED always) */
    assert_int_equal(ferry_monitor_open(s, 1u << FERRY_EVENT_BIND_FAILED, 0, &m), 0);
    assert_int_equal(ferry_monitor_open(s, FERRY_EVENT_ALL, 0, &m2), FERRY_ESTATE);
    ferry_event ev;
    assert_int_equal(ferry_monitor_recv(m, &ev, 0), FERRY_EAGAIN);
    uint64_t t0 = t_now_ms();
    assert_int_equal(ferry_monitor_recv(m, &ev, 50), FERRY_ETIMEDOUT);
    assert_true(t_now_ms() - t0 >= 45);
    assert_int_equal(ferry_listen(s, "tcp://127.0.0.1:*"), 0); /* LISTENING: not asked */
    assert_int_equal(ferry_monitor_recv(m, &ev, 0), FERRY_EAGAIN);
    assert_string_equal(ferry_event_name(FERRY_EVENT_HANDSHAKE_FAILED), "handshake-failed");
    assert_string_equal(ferry_event_name(99), "unknown");
    /* closed before its socket: the socket goes on without it */
    ferry_monitor_close(m);
    assert_int_equal(ferry_monitor_open(s, FERRY_EVENT_ALL, 0, &m), 0);
    assert_int_equal(ferry_listen(s, "bogus://x"), FERRY_EBADURL); /* no transport: still said */
    assert_int_equal(ferry_monitor_recv(m, &ev, 0), 0);
    assert_int_equal(ev.kind, FERRY_EVENT_BIND_FAILED);
    assert_int_equal(ev.error, FERRY_EBADURL);
    assert_string_equal(ev.endpoint, "bogus://x");
    ferry_monitor_close(m);
    assert_int_equal(ferry_monitor_open(s, FERRY_EVENT_ALL, 0, &m), 0);
    ferry_monitor_close(m);
    assert_int_equal(ferry_listen(s, "tcp://127.0.0.1:*"), 0);
    ferry_close(s);
}

/* The fd in a ferry_poller: readable while an event waits, not after. */
static void test_monitor_in_poller(void **state)
{
    (void)state;
    ferry_socket *s = t_open_timed(FERRY_PULL);
    ferry_monitor *m = mon(s);
    ferry_poller *p = NULL;
    assert_int_equal(ferry_poller_new(&p), 0);
    int fd = ferry_monitor_fd(m);
    assert_true(fd >= 0);
    assert_int_equal(ferry_poller_add_fd(p, fd, FERRY_POLLIN, m), 0);
    ferry_poll_event pe;
    assert_int_equal(ferry_poller_wait(p, &pe, 1, 0), 0);
    assert_int_equal(ferry_listen(s, "tcp://127.0.0.1:*"), 0);
    assert_int_equal(ferry_poller_wait(p, &pe, 1, 1000), 1);
    assert_ptr_equal(pe.user, m);
    assert_true(pe.events & FERRY_POLLIN);
    assert_int_equal(ferry_poller_wait(p, &pe, 1, 0), 1); /* level: still there */
    ferry_event ev;
    assert_int_equal(ferry_monitor_recv(m, &ev, 0), 0);
    assert_int_equal(ferry_poller_wait(p, &pe, 1, 0), 0); /* drained */
    ferry_close(s);                                       /* CLOSED, then closed for good */
    assert_int_equal(ferry_poller_wait(p, &pe, 1, 1000), 1);
    assert_int_equal(ferry_monitor_recv(m, &ev, 0), 0);
    assert_int_equal(ev.kind, FERRY_EVENT_CLOSED);
    assert_int_equal(ferry_poller_wait(p, &pe, 1, 0), 1); /* stays readable: ECLOSED */
    assert_int_equal(ferry_monitor_recv(m, &ev, 0), FERRY_ECLOSED);
    assert_int_equal(ferry_poller_remove_fd(p, fd), 0);
    ferry_poller_free(p);
    ferry_monitor_close(m);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_listening_and_bind_failed),
        cmocka_unit_test(test_connection_life),
        cmocka_unit_test(test_disconnected_by_close),
        cmocka_unit_test(test_connect_refused),
        cmocka_unit_test(test_peer_killed),
        cmocka_unit_test(test_handshake_garbage),
        cmocka_unit_test(test_handshake_wrong_type),
        cmocka_unit_test(test_handshake_silent),
        cmocka_unit_test(test_shm_dialer_refusal_untrusted),
        cmocka_unit_test(test_heartbeat_timeout_link_down),
        cmocka_unit_test(test_dropped_rate_limited),
        cmocka_unit_test(test_lost_counted_closed_kept),
        cmocka_unit_test(test_monitor_api),
        cmocka_unit_test(test_monitor_in_poller),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
