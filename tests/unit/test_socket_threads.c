/* test_socket_threads.c - sockets used from several threads at once, run
 * under TSan by `make test` (label "concurrency"): the socket lock, the I/O
 * thread, pipe references and the wake-ups. */
#include "../common.h"

#include <pthread.h>
#include <stdatomic.h>

enum { COUNT = 50000 };

static char g_url[96];

struct job {
    ferry_socket *s;
    int send;
    long done;
    int rc;
};

static void *worker(void *arg)
{
    struct job *j = arg;
    for (long i = 0; i < COUNT; i++) {
        uint32_t v = (uint32_t)i;
        size_t n;
        int rc =
            j->send ? ferry_send(j->s, &v, sizeof v, 0) : ferry_recv(j->s, &v, sizeof v, &n, 0);
        if (rc != 0) {
            j->rc = rc;
            return NULL;
        }
        if (!j->send && v != (uint32_t)i) { /* PAIR keeps order */
            j->rc = -1;
            return NULL;
        }
        j->done++;
    }
    return NULL;
}

/* PAIR full duplex: each socket sends in one thread and receives in
 * another, all four at once. */
static void test_pair_duplex(void **state)
{
    (void)state;
    snprintf(g_url, sizeof g_url, "shm://t-thr-pair-%d", (int)getpid());
    ferry_socket *a, *b;
    assert_int_equal(ferry_socket_open(&a, FERRY_PAIR), 0);
    assert_int_equal(ferry_socket_open(&b, FERRY_PAIR), 0);
    assert_int_equal(ferry_setopt_int(a, FERRY_OPT_RING_SIZE, 8192), 0);
    assert_int_equal(ferry_listen(a, g_url), 0);
    assert_int_equal(ferry_dial(b, g_url), 0);
    struct job jobs[4] = {{a, 1, 0, 0}, {b, 0, 0, 0}, {b, 1, 0, 0}, {a, 0, 0, 0}};
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, worker, &jobs[i]), 0);
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(jobs[i].rc, 0);
        assert_int_equal(jobs[i].done, COUNT);
    }
    ferry_close(b);
    ferry_close(a);
}

struct counter {
    ferry_socket *s;
    long got;
    int rc;
    long limit;
    pthread_mutex_t *mu;
    long *total;
};

static void *pull_worker(void *arg)
{
    struct counter *c = arg;
    for (;;) {
        pthread_mutex_lock(c->mu);
        int enough = *c->total >= c->limit;
        pthread_mutex_unlock(c->mu);
        if (enough)
            return NULL;
        uint32_t v;
        size_t n;
        int rc = ferry_recv(c->s, &v, sizeof v, &n, 0);
        if (rc == FERRY_ETIMEDOUT)
            continue;
        if (rc != 0) {
            c->rc = rc;
            return NULL;
        }
        pthread_mutex_lock(c->mu);
        (*c->total)++;
        pthread_mutex_unlock(c->mu);
        c->got++;
    }
}

/* Two PUSH sockets in two threads, one PULL drained by two threads. */
static void test_pull_two_readers(void **state)
{
    (void)state;
    snprintf(g_url, sizeof g_url, "shm://t-thr-pull-%d", (int)getpid());
    ferry_socket *pull, *p1, *p2;
    assert_int_equal(ferry_socket_open(&pull, FERRY_PULL), 0);
    assert_int_equal(ferry_setopt_int(pull, FERRY_OPT_RCVTIMEO, 100), 0);
    assert_int_equal(ferry_listen(pull, g_url), 0);
    assert_int_equal(ferry_socket_open(&p1, FERRY_PUSH), 0);
    assert_int_equal(ferry_socket_open(&p2, FERRY_PUSH), 0);
    assert_int_equal(ferry_dial(p1, g_url), 0);
    assert_int_equal(ferry_dial(p2, g_url), 0);
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    long total = 0;
    struct counter c[2] = {{pull, 0, 0, 2L * COUNT, &mu, &total},
                           {pull, 0, 0, 2L * COUNT, &mu, &total}};
    struct job senders[2] = {{p1, 1, 0, 0}, {p2, 1, 0, 0}};
    pthread_t t[4];
    pthread_create(&t[0], NULL, pull_worker, &c[0]);
    pthread_create(&t[1], NULL, pull_worker, &c[1]);
    pthread_create(&t[2], NULL, worker, &senders[0]);
    pthread_create(&t[3], NULL, worker, &senders[1]);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(senders[0].rc, 0);
    assert_int_equal(senders[1].rc, 0);
    assert_int_equal(c[0].rc, 0);
    assert_int_equal(c[1].rc, 0);
    assert_int_equal(c[0].got + c[1].got, 2L * COUNT);
    ferry_close(p1);
    ferry_close(p2);
    ferry_close(pull);
}

/* Busy-polling receivers watch their pipes' ring words without the lock
 * (socket.c, spin): two threads spinning on one PULL whose 4 KiB rings
 * wrap every few dozen messages (pads at every lap), fed by two PUSH
 * threads while a third PUSH connects, sends and leaves (a watched pipe
 * removed under the spinners). Every message arrives once, whole. */
enum { SPIN_COUNT = 20000, SPIN_EXTRA = 2000 };

static void *sized_sender(void *arg)
{
    struct job *j = arg;
    unsigned char buf[4 + 300];
    for (long i = 0; i < j->done; i++) {
        size_t len = 4 + (size_t)(i % 300);
        uint32_t v = (uint32_t)i;
        memcpy(buf, &v, 4);
        memset(buf + 4, (int)(i & 0xff), len - 4);
        if ((j->rc = ferry_send(j->s, buf, len, 0)) != 0)
            return NULL;
    }
    return NULL;
}

struct spinner {
    ferry_socket *s;
    atomic_long *total;
    long limit, got;
    int rc;
};

static void *spin_reader(void *arg)
{
    struct spinner *c = arg;
    while (atomic_load(c->total) < c->limit) {
        unsigned char buf[512];
        size_t n;
        int rc = ferry_recv(c->s, buf, sizeof buf, &n, 0);
        if (rc == FERRY_ETIMEDOUT)
            continue;
        uint32_t v;
        if (rc == 0 && n >= 4)
            memcpy(&v, buf, 4);
        if (rc != 0 || n < 4 || n != 4 + v % 300) {
            c->rc = rc != 0 ? rc : -1;
            return NULL;
        }
        for (size_t k = 4; k < n; k++)
            if (buf[k] != (unsigned char)(v & 0xff)) {
                c->rc = -2;
                return NULL;
            }
        atomic_fetch_add(c->total, 1);
        c->got++;
    }
    return NULL;
}

static void test_busy_poll_readers(void **state)
{
    (void)state;
    snprintf(g_url, sizeof g_url, "shm://t-thr-spin-%d", (int)getpid());
    ferry_socket *pull, *p[3];
    assert_int_equal(ferry_socket_open(&pull, FERRY_PULL), 0);
    assert_int_equal(ferry_setopt_int(pull, FERRY_OPT_SPIN, 2000), 0);
    assert_int_equal(ferry_setopt_int(pull, FERRY_OPT_RCVTIMEO, 100), 0);
    assert_int_equal(ferry_setopt_int(pull, FERRY_OPT_RING_SIZE, 4096), 0);
    assert_int_equal(ferry_listen(pull, g_url), 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(ferry_socket_open(&p[i], FERRY_PUSH), 0);
        assert_int_equal(ferry_setopt_int(p[i], FERRY_OPT_RING_SIZE, 4096), 0);
    }
    assert_int_equal(ferry_dial(p[0], g_url), 0);
    assert_int_equal(ferry_dial(p[1], g_url), 0);
    atomic_long total = 0;
    long all = 2L * SPIN_COUNT + SPIN_EXTRA;
    struct spinner c[2] = {{pull, &total, all, 0, 0}, {pull, &total, all, 0, 0}};
    struct job senders[3] = {
        {p[0], 1, SPIN_COUNT, 0}, {p[1], 1, SPIN_COUNT, 0}, {p[2], 1, SPIN_EXTRA, 0}};
    pthread_t t[4];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, spin_reader, &c[i]), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[2 + i], NULL, sized_sender, &senders[i]), 0);
    /* the third comes and goes while the others stream */
    assert_int_equal(ferry_dial(p[2], g_url), 0);
    assert_int_equal(ferry_wait_peers(p[2], 1, 5000), 0);
    sized_sender(&senders[2]);
    assert_int_equal(senders[2].rc, 0);
    assert_int_equal(ferry_setopt_int(p[2], FERRY_OPT_LINGER, -1), 0);
    assert_int_equal(ferry_close(p[2]), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(senders[0].rc, 0);
    assert_int_equal(senders[1].rc, 0);
    assert_int_equal(c[0].rc, 0);
    assert_int_equal(c[1].rc, 0);
    assert_int_equal(c[0].got + c[1].got, all);
    ferry_close(p[0]);
    ferry_close(p[1]);
    ferry_close(pull);
}

/* Every wake-up reaches a receiver that always sleeps (FERRY_OPT_SPIN
 * 0): a send leaves its peer's wake-up to the end of its step (sock.h,
 * tx_defer), and one lost there would leave the receiver asleep until
 * its watchdog, a second later; the receive timeout is shorter. */
static void *rep_sleeper(void *arg)
{
    struct job *j = arg;
    for (long i = 0; i < j->done; i++) {
        char buf[64];
        size_t n;
        if ((j->rc = ferry_recv(j->s, buf, sizeof buf, &n, 0)) != 0 ||
            (j->rc = ferry_send(j->s, buf, n, 0)) != 0)
            return NULL;
    }
    return NULL;
}

static void test_sleeping_ping_pong(void **state)
{
    (void)state;
    enum { ROUNDS = 3000 };
    snprintf(g_url, sizeof g_url, "shm://t-thr-sleep-%d", (int)getpid());
    ferry_socket *rep, *req;
    assert_int_equal(ferry_socket_open(&rep, FERRY_REP), 0);
    assert_int_equal(ferry_socket_open(&req, FERRY_REQ), 0);
    for (int i = 0; i < 2; i++) {
        ferry_socket *s = i ? req : rep;
        assert_int_equal(ferry_setopt_int(s, FERRY_OPT_SPIN, 0), 0);
        assert_int_equal(ferry_setopt_int(s, FERRY_OPT_RCVTIMEO, 500), 0);
    }
    assert_int_equal(ferry_listen(rep, g_url), 0);
    assert_int_equal(ferry_dial(req, g_url), 0);
    struct job j = {rep, 0, ROUNDS, 0};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, rep_sleeper, &j), 0);
    for (long i = 0; i < ROUNDS; i++) {
        char buf[64];
        size_t n;
        int len = snprintf(buf, sizeof buf, "ping %ld", i);
        assert_int_equal(ferry_send(req, buf, (size_t)len, 0), 0);
        assert_int_equal(ferry_recv(req, buf, sizeof buf, &n, 0), 0);
        assert_int_equal(n, (size_t)len);
    }
    pthread_join(t, NULL);
    assert_int_equal(j.rc, 0);
    ferry_close(req);
    ferry_close(rep);
}

/* Sockets opened, connected and closed while their I/O threads work. */
static void test_open_close_churn(void **state)
{
    (void)state;
    snprintf(g_url, sizeof g_url, "shm://t-thr-churn-%d", (int)getpid());
    ferry_socket *pull;
    assert_int_equal(ferry_socket_open(&pull, FERRY_PULL), 0);
    assert_int_equal(ferry_listen(pull, g_url), 0);
    for (int i = 0; i < 200; i++) {
        ferry_socket *p;
        assert_int_equal(ferry_socket_open(&p, FERRY_PUSH), 0);
        assert_int_equal(ferry_dial(p, g_url), 0);
        assert_int_equal(ferry_send(p, "x", 1, 0), 0);
        ferry_msg *m;
        assert_int_equal(ferry_msg_recv(pull, &m, 0), 0);
        ferry_close(p); /* the in-place message outlives its sender */
        assert_int_equal(ferry_msg_size(m), 1);
        ferry_msg_free(m);
    }
    ferry_close(pull);
}

/* A forwarder thread: each message from `from`, part by part in place, on
 * to `to` with ferry_msg_send (its parts are held by `to` until the last),
 * until a one-part message, which it forwards and stops at. */
struct fwd {
    ferry_socket *from, *to;
    int rc;
};

static void *forwarder(void *arg)
{
    struct fwd *f = arg;
    for (int parts = 0;;) {
        ferry_msg *m;
        int rc = ferry_msg_recv(f->from, &m, 0);
        if (rc != 0) {
            f->rc = rc;
            return NULL;
        }
        int more = ferry_msg_more(m);
        parts++;
        if ((rc = ferry_msg_send(f->to, m, more ? FERRY_MORE : 0)) != 0) {
            ferry_msg_free(m);
            f->rc = rc;
            return NULL;
        }
        if (!more && parts == 1)
            return NULL;
        if (!more)
            parts = 0;
    }
}

/* Two forwarders at once in opposite directions between two sockets (the
 * parts of each one's source held by the other's socket and freed there):
 * no lock taken in one order here and in the other there (TSan). */
static void test_cross_forward(void **state)
{
    (void)state;
    char ua[96], ub[96];
    t_url(ua, sizeof ua, "xfwd-a");
    t_url(ub, sizeof ub, "xfwd-b");
    ferry_socket *a1, *a2, *b1, *b2;
    assert_int_equal(ferry_socket_open(&a1, FERRY_PAIR), 0);
    assert_int_equal(ferry_socket_open(&a2, FERRY_PAIR), 0);
    assert_int_equal(ferry_socket_open(&b1, FERRY_PAIR), 0);
    assert_int_equal(ferry_socket_open(&b2, FERRY_PAIR), 0);
    ferry_socket *all[] = {a1, a2, b1, b2};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(ferry_setopt_int(all[i], FERRY_OPT_RCVTIMEO, 20000), 0);
        assert_int_equal(ferry_setopt_int(all[i], FERRY_OPT_SNDTIMEO, 20000), 0);
    }
    assert_int_equal(ferry_listen(a1, ua), 0);
    assert_int_equal(ferry_dial(a2, ua), 0);
    assert_int_equal(ferry_listen(b1, ub), 0);
    assert_int_equal(ferry_dial(b2, ub), 0);
    struct fwd x = {a1, b1, 0}, y = {b1, a1, 0};
    pthread_t tx, ty;
    assert_int_equal(pthread_create(&tx, NULL, forwarder, &x), 0);
    assert_int_equal(pthread_create(&ty, NULL, forwarder, &y), 0);
    enum { ROUNDS = 2000 };
    char body[200], got[200];
    size_t n;
    for (int r = 0; r < ROUNDS; r++) {
        memset(body, 'a' + r % 26, sizeof body);
        /* a message into each forwarder, then what each let out */
        ferry_socket *in[2] = {a2, b2}, *out[2] = {b2, a2};
        for (int k = 0; k < 2; k++) {
            assert_int_equal(ferry_send(in[k], &r, sizeof r, FERRY_MORE), 0);
            assert_int_equal(ferry_send(in[k], "", 0, FERRY_MORE), 0);
            assert_int_equal(ferry_send(in[k], body, sizeof body, 0), 0);
        }
        for (int k = 0; k < 2; k++) {
            int v = -1;
            assert_int_equal(ferry_recv(out[k], &v, sizeof v, &n, 0), 0);
            assert_int_equal(v, r);
            assert_int_equal(ferry_recv(out[k], got, sizeof got, &n, 0), 0);
            assert_int_equal(n, 0);
            assert_int_equal(ferry_recv(out[k], got, sizeof got, &n, 0), 0);
            assert_int_equal(n, sizeof body);
            assert_memory_equal(got, body, sizeof body);
        }
    }
    assert_int_equal(ferry_send(a2, ".", 1, 0), 0);
    assert_int_equal(ferry_send(b2, ".", 1, 0), 0);
    assert_int_equal(pthread_join(tx, NULL), 0);
    assert_int_equal(pthread_join(ty, NULL), 0);
    assert_int_equal(x.rc, 0);
    assert_int_equal(y.rc, 0);
    for (int k = 0; k < 2; k++) /* the stop messages, forwarded too */
        assert_int_equal(ferry_recv(k ? a2 : b2, got, sizeof got, &n, 0), 0);
    for (int i = 0; i < 4; i++)
        ferry_close(all[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pair_duplex),       cmocka_unit_test(test_pull_two_readers),
        cmocka_unit_test(test_busy_poll_readers), cmocka_unit_test(test_sleeping_ping_pong),
        cmocka_unit_test(test_open_close_churn),  cmocka_unit_test(test_cross_forward),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
