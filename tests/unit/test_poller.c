/* test_poller.c - ferry_poller: sockets of every transport and plain fds in
 * one wait, level-triggered readiness, room to send, a socket closed while
 * another thread waits, timeouts, and 1,000 registered sockets. */
#include "../common.h"

#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/resource.h>

static ferry_socket *sock(int type)
{
    ferry_socket *s;
    assert_int_equal(ferry_socket_open(&s, type), 0);
    return s;
}

static uint64_t thread_cpu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Waits up to ms for exactly one ready entry and returns it. */
static ferry_poll_event wait_one(ferry_poller *p, int ms)
{
    ferry_poll_event ev[4];
    int n = ferry_poller_wait(p, ev, 4, ms);
    if (n != 1)
        fail_msg("poller wait: %d entries (%s), want 1", n, n < 0 ? ferry_strerror(n) : "");
    return ev[0];
}

static void want_nothing(ferry_poller *p)
{
    ferry_poll_event ev[4];
    assert_int_equal(ferry_poller_wait(p, ev, 4, 0), 0);
}

/* A PULL on each transport, a SUB, a pipe and an eventfd in one poller:
 * each is reported, with its user data, when it has something, and only
 * then; a socket stays reported until its message is received. */
static void test_mixed(void **state)
{
    (void)state;
    static const char *schemes[] = {"shm", "ipc", "tcp"};
    ferry_socket *pull[3], *push[3];
    ferry_poller *p;
    assert_int_equal(ferry_poller_new(&p), 0);
    for (int i = 0; i < 3; i++) {
        char name[64], url[128];
        t_name(name, sizeof name, "poll");
        if (i == 0)
            snprintf(url, sizeof url, "shm://%s", name);
        else if (i == 1)
            snprintf(url, sizeof url, "ipc://@%s", name);
        else
            snprintf(url, sizeof url, "tcp://127.0.0.1:0");
        pull[i] = sock(FERRY_PULL);
        assert_int_equal(ferry_listen(pull[i], url), 0);
        char want[128];
        snprintf(want, sizeof want, "%s", url);
        assert_int_equal(ferry_socket_addr(pull[i], url, sizeof url), 0); /* shm:// too */
        if (i < 2)
            assert_string_equal(url, want);
        push[i] = sock(FERRY_PUSH);
        assert_int_equal(ferry_dial(push[i], url), 0);
        assert_int_equal(ferry_poller_add(p, pull[i], FERRY_POLLIN, (void *)schemes[i]), 0);
    }
    ferry_socket *pub = sock(FERRY_PUB), *sub = sock(FERRY_SUB);
    assert_int_equal(ferry_listen(pub, "tcp://127.0.0.1:0"), 0);
    char purl[128];
    ferry_socket_addr(pub, purl, sizeof purl);
    assert_int_equal(ferry_setopt(sub, FERRY_OPT_SUBSCRIBE, "a", 1), 0);
    assert_int_equal(ferry_dial(sub, purl), 0);
    assert_int_equal(ferry_wait_peers(pub, 1, 10000), 0);
    assert_int_equal(ferry_poller_add(p, sub, FERRY_POLLIN, "sub"), 0);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    assert_true(efd >= 0);
    assert_int_equal(ferry_poller_add_fd(p, fds[0], FERRY_POLLIN, "pipe"), 0);
    assert_int_equal(ferry_poller_add_fd(p, efd, FERRY_POLLIN, "eventfd"), 0);
    want_nothing(p);

    char buf[32];
    size_t n;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(ferry_send(push[i], schemes[i], 3, 0), 0);
        ferry_poll_event ev = wait_one(p, 10000);
        assert_ptr_equal(ev.socket, pull[i]);
        assert_int_equal(ev.fd, -1);
        assert_int_equal(ev.events, FERRY_POLLIN);
        assert_ptr_equal(ev.user, schemes[i]);
        ev = wait_one(p, 0); /* level-triggered: still there */
        assert_ptr_equal(ev.socket, pull[i]);
        assert_int_equal(ferry_recv(pull[i], buf, sizeof buf, &n, FERRY_DONTWAIT), 0);
        assert_memory_equal(buf, schemes[i], 3);
        want_nothing(p);
    }
    assert_int_equal(ferry_send(pub, "b-not-for-it", 12, 0), 0);
    assert_int_equal(ferry_send(pub, "a-for-it", 8, 0), 0);
    ferry_poll_event ev = wait_one(p, 10000);
    assert_ptr_equal(ev.socket, sub);
    assert_int_equal(ferry_recv(sub, buf, sizeof buf, &n, FERRY_DONTWAIT), 0);
    assert_memory_equal(buf, "a-for-it", 8);
    want_nothing(p);

    assert_int_equal(write(fds[1], "x", 1), 1);
    ev = wait_one(p, 10000);
    assert_ptr_equal(ev.socket, NULL);
    assert_int_equal(ev.fd, fds[0]);
    assert_int_equal(ev.events, FERRY_POLLIN);
    assert_string_equal(ev.user, "pipe");
    assert_int_equal(read(fds[0], buf, 1), 1);
    uint64_t one = 1;
    assert_int_equal(write(efd, &one, sizeof one), sizeof one);
    ev = wait_one(p, 10000);
    assert_int_equal(ev.fd, efd);
    assert_string_equal(ev.user, "eventfd");
    assert_int_equal(read(efd, &one, sizeof one), sizeof one);
    want_nothing(p);

    /* a closed pipe end is an error/hang-up for the other */
    close(fds[1]);
    ev = wait_one(p, 10000);
    assert_int_equal(ev.fd, fds[0]);
    assert_true(ev.events & FERRY_POLLERR);
    assert_int_equal(ferry_poller_remove_fd(p, fds[0]), 0);
    assert_int_equal(ferry_poller_remove_fd(p, fds[0]), FERRY_EINVAL);
    close(fds[0]);
    /* an fd closed before it was removed, its file kept open by a copy */
    assert_int_equal(ferry_poller_remove_fd(p, efd), 0);
    close(efd);
    int gone = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC), keep = dup(gone);
    assert_true(gone >= 0 && keep >= 0);
    assert_int_equal(ferry_poller_add_fd(p, gone, FERRY_POLLIN, "closed"), 0);
    assert_int_equal(write(keep, &one, sizeof one), sizeof one); /* readable for good */
    close(gone);
    assert_int_equal(ferry_poller_remove_fd(p, gone), 0);
    want_nothing(p); /* its stale events are not reported */
    uint64_t t0 = t_now_ms(), cpu0 = thread_cpu_ms();
    ferry_poll_event spare[2];
    assert_int_equal(ferry_poller_wait(p, spare, 2, 200), 0); /* and it sleeps, not spins */
    assert_true(t_now_ms() - t0 >= 200);
    assert_true(thread_cpu_ms() - cpu0 < 100);
    close(keep);
    ferry_poller_free(p); /* with sockets still in it: gives them back */
    for (int i = 0; i < 3; i++) {
        ferry_close(push[i]);
        ferry_close(pull[i]);
    }
    ferry_close(sub);
    ferry_close(pub);
}

/* A multipart message keeps its socket readable until its last part. */
static void test_level_multipart(void **state)
{
    (void)state;
    char url[96];
    t_url(url, sizeof url, "pollmp");
    ferry_socket *pull = sock(FERRY_PULL), *push = sock(FERRY_PUSH);
    assert_int_equal(ferry_listen(pull, url), 0);
    assert_int_equal(ferry_dial(push, url), 0);
    ferry_poller *p;
    assert_int_equal(ferry_poller_new(&p), 0);
    assert_int_equal(ferry_poller_add(p, pull, FERRY_POLLIN, NULL), 0);
    assert_int_equal(ferry_send(push, "one", 3, FERRY_MORE), 0);
    assert_int_equal(ferry_send(push, "two", 3, 0), 0);
    assert_ptr_equal(wait_one(p, 10000).socket, pull);
    char buf[8];
    size_t n;
    assert_int_equal(ferry_recv(pull, buf, sizeof buf, &n, 0), 0);
    assert_ptr_equal(wait_one(p, 0).socket, pull);
    assert_int_equal(ferry_recv(pull, buf, sizeof buf, &n, 0), 0);
    assert_memory_equal(buf, "two", 3);
    want_nothing(p);
    /* modify: not interested any more, then again */
    assert_int_equal(ferry_send(push, "three", 5, 0), 0);
    assert_int_equal(ferry_poller_modify(p, pull, 0, NULL), 0);
    want_nothing(p);
    assert_int_equal(ferry_poller_modify(p, pull, FERRY_POLLIN, "again"), 0);
    ferry_poll_event ev = wait_one(p, 10000);
    assert_string_equal(ev.user, "again");
    ferry_poller_free(p);
    ferry_close(push);
    ferry_close(pull);
}

/* FERRY_POLLOUT: a PUSH whose peer's ring is full is not writable; when the
 * peer takes its messages, the waiting poller is woken by the room. */
static void test_room_to_send(void **state)
{
    (void)state;
    char url[96];
    t_url(url, sizeof url, "pollout");
    ferry_socket *pull = sock(FERRY_PULL), *push = sock(FERRY_PUSH);
    assert_int_equal(ferry_setopt_int(push, FERRY_OPT_SNDHWM, 4), 0);
    assert_int_equal(ferry_setopt_int(pull, FERRY_OPT_RCVHWM, 4), 0);
    assert_int_equal(ferry_listen(pull, url), 0);
    assert_int_equal(ferry_dial(push, url), 0);
    ferry_poller *p;
    assert_int_equal(ferry_poller_new(&p), 0);
    assert_int_equal(ferry_poller_add(p, push, FERRY_POLLOUT | FERRY_POLLIN, NULL), 0);
    ferry_poll_event ev = wait_one(p, 10000);
    assert_int_equal(ev.events, FERRY_POLLOUT); /* a PUSH never has POLLIN */
    int sent = 0;
    while (ferry_send(push, "m", 1, FERRY_DONTWAIT) == 0)
        sent++;
    assert_true(sent >= 4);
    want_nothing(p); /* full: this look also arms it */
    char buf[4];
    size_t n;
    for (int i = 0; i < sent; i++)
        assert_int_equal(ferry_recv(pull, buf, sizeof buf, &n, 0), 0);
    ev = wait_one(p, 10000); /* the reader's room woke it */
    assert_int_equal(ev.events, FERRY_POLLOUT);
    assert_int_equal(ferry_send(push, "m", 1, FERRY_DONTWAIT), 0);
    ferry_poller_free(p);
    ferry_close(push);
    ferry_close(pull);
}

/* REQ and REP follow their state: a REQ may send only before its request
 * and receives only the reply; a REP receives a request and may then
 * send. A REQ whose peer dies with the reply due is readable: the recv
 * tells why. */
static void test_req_rep_states(void **state)
{
    (void)state;
    char url[96];
    t_url(url, sizeof url, "pollrr");
    ferry_socket *rep = sock(FERRY_REP), *req = sock(FERRY_REQ);
    assert_int_equal(ferry_listen(rep, url), 0);
    assert_int_equal(ferry_dial(req, url), 0);
    ferry_poller *p;
    assert_int_equal(ferry_poller_new(&p), 0);
    assert_int_equal(ferry_poller_add(p, req, FERRY_POLLIN | FERRY_POLLOUT, "req"), 0);
    assert_int_equal(ferry_poller_add(p, rep, FERRY_POLLIN | FERRY_POLLOUT, "rep"), 0);
    ferry_poll_event ev = wait_one(p, 10000);
    assert_ptr_equal(ev.socket, req);
    assert_int_equal(ev.events, FERRY_POLLOUT);
    assert_int_equal(ferry_send(req, "q", 1, 0), 0);
    ev = wait_one(p, 10000);
    assert_ptr_equal(ev.socket, rep);
    assert_int_equal(ev.events, FERRY_POLLIN);
    char buf[4];
    size_t n;
    assert_int_equal(ferry_recv(rep, buf, sizeof buf, &n, 0), 0);
    ev = wait_one(p, 0);
    assert_ptr_equal(ev.socket, rep);
    assert_int_equal(ev.events, FERRY_POLLOUT);
    assert_int_equal(ferry_send(rep, "a", 1, 0), 0);
    ev = wait_one(p, 10000);
    assert_ptr_equal(ev.socket, req);
    assert_int_equal(ev.events, FERRY_POLLIN);
    assert_int_equal(ferry_recv(req, buf, sizeof buf, &n, 0), 0);
    assert_memory_equal(buf, "a", 1);
    ev = wait_one(p, 0);
    assert_ptr_equal(ev.socket, req);
    assert_int_equal(ev.events, FERRY_POLLOUT);

    /* the REP goes away with the reply due */
    assert_int_equal(ferry_send(req, "q2", 2, 0), 0);
    assert_ptr_equal(wait_one(p, 10000).socket, rep);
    assert_int_equal(ferry_poller_remove(p, rep), 0);
    ferry_close(rep);
    ev = wait_one(p, 10000);
    assert_ptr_equal(ev.socket, req);
    assert_int_equal(ev.events, FERRY_POLLIN);
    assert_int_equal(ferry_recv(req, buf, sizeof buf, &n, 0), FERRY_ECONNRESET);
    ferry_poller_free(p);
    ferry_close(req);
}

/* Changes no peer announces on the fd, each of which once went unseen by
 * a poller that had armed the socket and let it go cold:
 * - a PUSH registered for POLLOUT before its shm:// peer exists;
 * - a REP that replies while another request waits (its own send makes
 *   it readable);
 * - a REQ registered for POLLOUT only, whose reply the user takes;
 * - a REP behind 300 requests without an envelope (each dropped, counted):
 *   the protocol stops after a budget per look, and must say "more";
 * and one poller per socket. */
static void test_changes_seen(void **state)
{
    (void)state;
    char url[96];
    ferry_poller *p;
    assert_int_equal(ferry_poller_new(&p), 0);
    ferry_poll_event ev;

    t_url(url, sizeof url, "pollpeer");
    ferry_socket *push = sock(FERRY_PUSH), *pull = sock(FERRY_PULL);
    assert_int_equal(ferry_setopt_int(push, FERRY_OPT_RECONNECT_IVL, 10), 0);
    assert_int_equal(ferry_dial(push, url), 0); /* nobody there yet: redials */
    assert_int_equal(ferry_poller_add(p, push, FERRY_POLLOUT, "push"), 0);
    want_nothing(p);
    assert_int_equal(ferry_listen(pull, url), 0);
    ev = wait_one(p, 10000);
    assert_string_equal(ev.user, "push");
    assert_int_equal(ev.events, FERRY_POLLOUT);
    assert_int_equal(ferry_poller_remove(p, push), 0);

    t_url(url, sizeof url, "pollrep2");
    ferry_socket *rep = sock(FERRY_REP), *q1 = sock(FERRY_REQ), *q2 = sock(FERRY_REQ);
    assert_int_equal(ferry_listen(rep, url), 0);
    assert_int_equal(ferry_dial(q1, url), 0);
    assert_int_equal(ferry_dial(q2, url), 0);
    assert_int_equal(ferry_poller_add(p, rep, FERRY_POLLIN, "rep"), 0);
    assert_int_equal(ferry_send(q1, "r1", 2, 0), 0);
    assert_int_equal(ferry_send(q2, "r2", 2, 0), 0);
    char buf[8];
    size_t n;
    assert_string_equal(wait_one(p, 10000).user, "rep");
    assert_int_equal(ferry_recv(rep, buf, sizeof buf, &n, 0), 0);
    want_nothing(p); /* replying: not readable, so armed and cold */
    assert_int_equal(ferry_send(rep, buf, n, 0), 0);
    ev = wait_one(p, 10000); /* the second request, seen after the reply */
    assert_string_equal(ev.user, "rep");
    assert_int_equal(ferry_recv(rep, buf, sizeof buf, &n, 0), 0);
    assert_int_equal(ferry_send(rep, buf, n, 0), 0);
    assert_int_equal(ferry_poller_remove(p, rep), 0);

    assert_int_equal(ferry_poller_add(p, q1, FERRY_POLLOUT, "q1"), 0);
    want_nothing(p); /* its reply is due: no POLLOUT */
    assert_int_equal(ferry_recv(q1, buf, sizeof buf, &n, 0), 0);
    ev = wait_one(p, 10000);
    assert_string_equal(ev.user, "q1");
    assert_int_equal(ev.events, FERRY_POLLOUT);
    assert_int_equal(ferry_recv(q2, buf, sizeof buf, &n, 0), 0);

    /* one poller per socket */
    ferry_poller *p2;
    assert_int_equal(ferry_poller_new(&p2), 0);
    assert_int_equal(ferry_poller_add(p2, q1, FERRY_POLLIN, NULL), FERRY_EINVAL);
    assert_int_equal(ferry_poller_remove(p, q1), 0);
    assert_int_equal(ferry_poller_add(p2, q1, FERRY_POLLIN, NULL), 0);
    ferry_poller_free(p2);

    t_url(url, sizeof url, "pollbudget");
    ferry_socket *rep3 = sock(FERRY_REP), *dealer = sock(FERRY_DEALER);
    assert_int_equal(ferry_listen(rep3, url), 0);
    assert_int_equal(ferry_dial(dealer, url), 0);
    for (int i = 0; i < 300; i++)
        assert_int_equal(ferry_send(dealer, "no envelope", 11, 0), 0);
    assert_int_equal(ferry_send(dealer, "", 0, FERRY_MORE), 0);
    assert_int_equal(ferry_send(dealer, "ok", 2, 0), 0);
    assert_int_equal(ferry_poller_add(p, rep3, FERRY_POLLIN, "rep3"), 0);
    ev = wait_one(p, 10000);
    assert_string_equal(ev.user, "rep3");
    assert_int_equal(ferry_recv(rep3, buf, sizeof buf, &n, FERRY_DONTWAIT), 0);
    assert_memory_equal(buf, "ok", 2);
    int64_t errors = 0;
    assert_int_equal(ferry_getopt_int(rep3, FERRY_OPT_ERRORS, &errors), 0);
    assert_int_equal(errors, 300);

    ferry_poller_free(p);
    ferry_close(dealer);
    ferry_close(rep3);
    ferry_close(q1);
    ferry_close(q2);
    ferry_close(rep);
    ferry_close(pull);
    ferry_close(push);
}

struct waiter {
    ferry_poller *p;
    ferry_poll_event ev[4];
    int n;
};

static void *waiter(void *arg)
{
    struct waiter *w = arg;
    w->n = ferry_poller_wait(w->p, w->ev, 4, 20000);
    return NULL;
}

/* A socket closed by another thread while a wait runs: the wait wakes and
 * reports it with FERRY_POLLERR (until it is removed), and the poller's
 * hold keeps its memory valid meanwhile. */
static void test_close_while_waiting(void **state)
{
    (void)state;
    char url[96];
    t_url(url, sizeof url, "pollclose");
    ferry_socket *a = sock(FERRY_PULL), *b = sock(FERRY_SUB);
    assert_int_equal(ferry_listen(a, url), 0);
    ferry_poller *p;
    assert_int_equal(ferry_poller_new(&p), 0);
    assert_int_equal(ferry_poller_add(p, a, FERRY_POLLIN, "a"), 0);
    assert_int_equal(ferry_poller_add(p, b, FERRY_POLLIN, "b"), 0);
    want_nothing(p);
    struct waiter w = {.p = p};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, waiter, &w), 0);
    uint64_t t0 = t_now_ms();
    assert_int_equal(ferry_close(a), 0);
    pthread_join(t, NULL);
    assert_int_equal(w.n, 1);
    assert_ptr_equal(w.ev[0].socket, a);
    assert_int_equal(w.ev[0].events, FERRY_POLLERR);
    assert_true(t_now_ms() - t0 < 15000); /* woken, not timed out */
    ferry_poll_event ev = wait_one(p, 0); /* still, until removed */
    assert_string_equal(ev.user, "a");
    assert_int_equal(ferry_poller_remove(p, a), 0);
    want_nothing(p);
    ferry_poller_free(p);
    ferry_close(b);
}

/* Timeouts, bad arguments, double registration. */
static void test_timeouts_and_args(void **state)
{
    (void)state;
    ferry_poller *p;
    assert_int_equal(ferry_poller_new(&p), 0);
    ferry_poll_event ev[2];
    assert_int_equal(ferry_poller_wait(p, ev, 2, 0), 0);
    uint64_t t0 = t_now_ms();
    assert_int_equal(ferry_poller_wait(p, ev, 2, 50), 0);
    assert_true(t_now_ms() - t0 >= 50);
    assert_int_equal(ferry_poller_wait(p, NULL, 2, 0), FERRY_EINVAL);
    assert_int_equal(ferry_poller_wait(p, ev, 0, 0), FERRY_EINVAL);
    ferry_socket *s = sock(FERRY_PAIR);
    assert_int_equal(ferry_poller_add(p, s, FERRY_POLLIN, NULL), 0);
    assert_int_equal(ferry_poller_add(p, s, FERRY_POLLIN, NULL), FERRY_EINVAL);
    assert_int_equal(ferry_poller_add(p, s, 0x40, NULL), FERRY_EINVAL);
    assert_int_equal(ferry_poller_add_fd(p, -1, FERRY_POLLIN, NULL), FERRY_EINVAL);
    assert_int_equal(ferry_poller_remove_fd(p, 0), FERRY_EINVAL);
    assert_int_equal(ferry_poller_modify(p, s, 0x40, NULL), FERRY_EINVAL);
    assert_int_equal(ferry_poller_remove(p, s), 0);
    assert_int_equal(ferry_poller_remove(p, s), FERRY_EINVAL);
    assert_int_equal(ferry_poller_add(NULL, s, FERRY_POLLIN, NULL), FERRY_EINVAL);
    ferry_poller_free(p);
    ferry_poller_free(NULL);
    ferry_close(s);
}

enum { NIDLE = 1000 };

/* 1,000 idle sockets and a busy pair: every wait reports the busy one
 * alone; ten sockets with messages and room for three per wait are all
 * reported within four waits (they take turns). */
static void test_thousand_sockets(void **state)
{
    (void)state;
    if (t_raise_nofile(4 * NIDLE + 64) != 0) {
        fprintf(stderr, "note: RLIMIT_NOFILE too low for %d sockets; skipped\n", NIDLE);
        skip();
    }
    ferry_socket **idle = calloc(NIDLE, sizeof *idle);
    assert_non_null(idle);
    ferry_poller *p;
    assert_int_equal(ferry_poller_new(&p), 0);
    for (int i = 0; i < NIDLE; i++) {
        idle[i] = sock(i % 2 ? FERRY_PULL : FERRY_SUB);
        assert_int_equal(ferry_poller_add(p, idle[i], FERRY_POLLIN, NULL), 0);
    }
    char url[96];
    t_url(url, sizeof url, "pollbusy");
    ferry_socket *pull = sock(FERRY_PULL), *push = sock(FERRY_PUSH);
    assert_int_equal(ferry_listen(pull, url), 0);
    assert_int_equal(ferry_dial(push, url), 0);
    assert_int_equal(ferry_poller_add(p, pull, FERRY_POLLIN, "busy"), 0);
    want_nothing(p);
    for (int r = 0; r < 100; r++) {
        assert_int_equal(ferry_send(push, &r, sizeof r, 0), 0);
        ferry_poll_event ev = wait_one(p, 10000);
        assert_ptr_equal(ev.socket, pull);
        int got;
        size_t n;
        assert_int_equal(ferry_recv(pull, &got, sizeof got, &n, 0), 0);
        assert_int_equal(got, r);
    }
    /* ten ready at once, three reported per wait */
    ferry_socket *src[10], *dst[10];
    for (int i = 0; i < 10; i++) {
        t_url(url, sizeof url, "pollten");
        dst[i] = sock(FERRY_PULL);
        src[i] = sock(FERRY_PUSH);
        assert_int_equal(ferry_listen(dst[i], url), 0);
        assert_int_equal(ferry_dial(src[i], url), 0);
        assert_int_equal(ferry_poller_add(p, dst[i], FERRY_POLLIN, dst[i]), 0);
        assert_int_equal(ferry_send(src[i], "x", 1, 0), 0);
    }
    int seen[10] = {0}, distinct = 0;
    for (int w = 0; w < 4; w++) {
        ferry_poll_event ev[3];
        int n = ferry_poller_wait(p, ev, 3, 10000);
        assert_true(n >= 1 && n <= 3);
        for (int k = 0; k < n; k++)
            for (int i = 0; i < 10; i++)
                if (ev[k].socket == dst[i] && !seen[i]++)
                    distinct++;
    }
    assert_int_equal(distinct, 10);
    ferry_poller_free(p);
    for (int i = 0; i < 10; i++) {
        ferry_close(src[i]);
        ferry_close(dst[i]);
    }
    for (int i = 0; i < NIDLE; i++)
        ferry_close(idle[i]);
    free(idle);
    ferry_close(push);
    ferry_close(pull);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mixed),
        cmocka_unit_test(test_level_multipart),
        cmocka_unit_test(test_room_to_send),
        cmocka_unit_test(test_req_rep_states),
        cmocka_unit_test(test_changes_seen),
        cmocka_unit_test(test_close_while_waiting),
        cmocka_unit_test(test_timeouts_and_args),
        cmocka_unit_test(test_thousand_sockets),
    };
    if (getenv("TEST_FILTER"))
        cmocka_set_test_filter(getenv("TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
