/*
 * test_shm_pool.c - the broadcast pool of shm:// (src/transport/shm/pool.h):
 * a PUB writes a message for several subscribers once and each reads it in
 * place. What is checked: every subscriber gets every message whole and in
 * order, through the pool (in place) and through the copying fallback; the
 * subscribers cannot write the pool; a subscriber that lies about its ring
 * head is cut off while the others are served; a slow one costs copies and
 * its own drops, never a stall; a SIGKILLed one gives back what it held
 * (killed asleep on the bell, the survivors still wake to it);
 * subscribers asleep together are woken with one ring of the bell; and a
 * publisher that points outside its pool, or into its bell, is refused by
 * the reader.
 */
#include "common.h"

#include <errno.h>
#include <sys/mman.h>

#include "raw_shm.h"
#include "transport/shm/shm_int.h"

#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>

#define NSUBS 3

/* Message i: 8-byte index, then bytes derived from it, len bytes in all. */
static void fill(unsigned char *b, size_t len, uint64_t i)
{
    memcpy(b, &i, sizeof i);
    for (size_t k = sizeof i; k < len; k++)
        b[k] = (unsigned char)(i * 31u + k * 7u);
}

static int check(const unsigned char *b, size_t len, uint64_t i)
{
    uint64_t got;
    memcpy(&got, b, sizeof got);
    if (got != i)
        return 0;
    for (size_t k = sizeof i; k < len; k++)
        if (b[k] != (unsigned char)(i * 31u + k * 7u))
            return 0;
    return 1;
}

static size_t size_of(uint64_t i)
{
    static const size_t sizes[] = {100, 2048, 5000, 65536, 300000, 2047, 12345};
    return sizes[i % (sizeof sizes / sizeof sizes[0])];
}

static struct shm_pipe *first_pipe(ferry_socket *s)
{
    pthread_mutex_lock(&s->mtx);
    assert_true(s->npipes >= 1);
    struct fy_pipe *p = s->pipes[0];
    pthread_mutex_unlock(&s->mtx);
    assert_ptr_equal(p->ops, &fy_shm_pipe_ops);
    return (struct shm_pipe *)p;
}

/* The PUB's pool (it outlives the pipe it is found through: the
 * transport holds it until the socket closes). */
static struct shm_pool *pool_of(ferry_socket *pub)
{
    struct shm_pool *pl = NULL;
    pthread_mutex_lock(&pub->mtx);
    for (size_t i = 0; i < pub->npipes && pl == NULL; i++)
        pl = ((struct shm_pipe *)pub->pipes[i])->pool.pool;
    pthread_mutex_unlock(&pub->mtx);
    return pl;
}

static uint64_t pool_count(struct shm_pool *pl, const uint64_t *field)
{
    pthread_mutex_lock(&pl->lk);
    uint64_t v = *field;
    pthread_mutex_unlock(&pl->lk);
    return v;
}

static size_t pool_links(struct shm_pool *pl)
{
    pthread_mutex_lock(&pl->lk);
    size_t v = pl->nlinks;
    pthread_mutex_unlock(&pl->lk);
    return v;
}

/* n SUBs dialed to url, subscribed to topics[k] (NULL: everything),
 * and the PUB's wait until it has them all (count: its peers then). */
static void subs_dial(ferry_socket *pub, const char *url, ferry_socket **subs, int n,
                      const char *const *topics, int count)
{
    for (int k = 0; k < n; k++) {
        subs[k] = t_open_timed(FERRY_SUB);
        assert_int_equal(ferry_setopt_int(subs[k], FERRY_OPT_RING_SIZE, 4 << 20), 0);
        const char *t = topics ? topics[k] : "";
        assert_int_equal(ferry_setopt(subs[k], FERRY_OPT_SUBSCRIBE, t, strlen(t)), 0);
        assert_int_equal(ferry_dial(subs[k], url), 0);
    }
    assert_int_equal(ferry_wait_peers(pub, count, 10000), 0);
}

/* A PUB bound at a new url with a pool of pool_bytes and the given
 * SNDHWM (< 0: the default). */
static ferry_socket *pub_open(char *url, size_t ulen, int64_t pool_bytes, int64_t hwm)
{
    t_url(url, ulen, "pool");
    ferry_socket *pub = t_open_timed(FERRY_PUB);
    assert_int_equal(ferry_setopt_int(pub, FERRY_OPT_SHM_POOL, pool_bytes), 0);
    assert_int_equal(ferry_setopt_int(pub, FERRY_OPT_RING_SIZE, 4 << 20), 0);
    if (hwm >= 0)
        assert_int_equal(ferry_setopt_int(pub, FERRY_OPT_SNDHWM, hwm), 0);
    assert_int_equal(ferry_listen(pub, url), 0);
    return pub;
}

/* A PUB with a pool of pool_bytes, and n SUBs on it subscribed to
 * everything. */
static ferry_socket *pub_with_subs(char *url, size_t ulen, int64_t pool_bytes, ferry_socket **subs,
                                   int n)
{
    ferry_socket *pub = pub_open(url, ulen, pool_bytes, -1);
    subs_dial(pub, url, subs, n, NULL, n);
    return pub;
}

static void close_all(ferry_socket *pub, ferry_socket **subs, int n)
{
    for (int k = 0; k < n; k++)
        ferry_close(subs[k]);
    ferry_close(pub);
}

/* Receives message i on s and checks it; 1 if it came in place out of
 * the pool. */
static int recv_check_len(ferry_socket *s, uint64_t i, size_t want)
{
    ferry_msg *m = NULL;
    assert_int_equal(ferry_msg_recv(s, &m, 0), 0);
    size_t len = ferry_msg_size(m);
    assert_int_equal(len, want);
    assert_true(check(ferry_msg_data(m), len, i));
    struct shm_pipe *sp = (struct shm_pipe *)m->pipe;
    int pooled = m->kind == FY_MSG_INPLACE && sp->rx_pool != NULL &&
                 (const unsigned char *)m->data >= sp->rx_pool &&
                 (const unsigned char *)m->data < sp->rx_pool + sp->rx_pool_len;
    ferry_msg_free(m);
    return pooled;
}

static int recv_check(ferry_socket *s, uint64_t i) { return recv_check_len(s, i, size_of(i)); }

/* Every subscriber gets every message, in order and intact, of sizes on
 * both sides of the pool's threshold; those of 2 KiB and more come in
 * place out of the pool, and the pool goes round many times. */
static void test_pool_delivers(void **state)
{
    (void)state;
    char url[96];
    ferry_socket *subs[NSUBS];
    ferry_socket *pub = pub_with_subs(url, sizeof url, 1 << 20, subs, NSUBS);
    unsigned char *buf = malloc(300000);
    uint64_t pooled = 0, big = 0, i = 0;
    for (int round = 0; round < 60; round++) {
        uint64_t first = i;
        for (int k = 0; k < 6; k++, i++) { /* at most ~0.7 MiB out at once */
            fill(buf, size_of(i), i);
            assert_int_equal(ferry_send(pub, buf, size_of(i), 0), 0);
        }
        for (int s = 0; s < NSUBS; s++)
            for (uint64_t j = first; j < i; j++) {
                pooled += (uint64_t)recv_check(subs[s], j);
                big += size_of(j) >= SHM_POOL_MIN;
            }
    }
    struct shm_pool *pl = pool_of(pub);
    assert_non_null(pl);
    assert_int_equal(pooled, big); /* every large one, for every subscriber */
    assert_int_equal(pool_count(pl, &pl->fallbacks), 0);
    assert_int_equal(pool_count(pl, &pl->placed), big / NSUBS);
    int64_t dropped = -1;
    assert_int_equal(ferry_getopt_int(pub, FERRY_OPT_DROPPED, &dropped), 0);
    assert_int_equal(dropped, 0);
    free(buf);
    close_all(pub, subs, NSUBS);
}

/* Multipart messages (a topic, then a body) travel packed in one chunk. */
static void test_pool_multipart(void **state)
{
    (void)state;
    char url[96];
    ferry_socket *subs[2];
    ferry_socket *pub = pub_with_subs(url, sizeof url, 1 << 20, subs, 2);
    unsigned char body[10000];
    for (uint64_t i = 0; i < 500; i++) {
        fill(body, sizeof body, i);
        assert_int_equal(ferry_send(pub, "camera/front", 12, FERRY_MORE), 0);
        assert_int_equal(ferry_send(pub, body, sizeof body, 0), 0);
        for (int s = 0; s < 2; s++) {
            char topic[32];
            size_t tlen = 0;
            assert_int_equal(ferry_recv(subs[s], topic, sizeof topic, &tlen, 0), 0);
            assert_int_equal(tlen, 12);
            assert_memory_equal(topic, "camera/front", 12);
            int64_t more = 0;
            ferry_getopt_int(subs[s], FERRY_OPT_RCVMORE, &more);
            assert_int_equal(more, 1);
            ferry_msg *m = NULL;
            assert_int_equal(ferry_msg_recv(subs[s], &m, 0), 0);
            assert_int_equal(ferry_msg_size(m), sizeof body);
            assert_true(check(ferry_msg_data(m), sizeof body, i));
            ferry_msg_free(m);
        }
    }
    struct shm_pool *pl = pool_of(pub);
    assert_int_equal(pool_count(pl, &pl->placed), 500);
    assert_int_equal(pool_count(pl, &pl->fallbacks), 0);
    close_all(pub, subs, 2);
}

/* A subscriber can read the pool and nothing more: its mapping cannot be
 * made writable, and the pool's memfd cannot be mapped writable again. */
static void test_pool_read_only(void **state)
{
    (void)state;
    char url[96];
    ferry_socket *subs[2];
    ferry_socket *pub = pub_with_subs(url, sizeof url, 1 << 20, subs, 2);
    struct shm_pipe *sp = first_pipe(subs[0]);
    assert_non_null(sp->rx_pool);
    assert_int_equal(mprotect((void *)sp->rx_pool, sp->rx_pool_len, PROT_READ | PROT_WRITE), -1);
    struct shm_pool *pl = pool_of(pub);
    assert_non_null(pl);
    void *w = mmap(NULL, pl->size, PROT_READ | PROT_WRITE, MAP_SHARED, pl->fd, 0);
    assert_true(w == MAP_FAILED);
    assert_int_equal(errno, EPERM);
    close_all(pub, subs, 2);
}

/* A subscriber that writes an impossible head into its ring (to make the
 * publisher reuse chunks early, or to confuse it) is cut off; the others
 * get every message intact. */
static void test_pool_scribbled_head(void **state)
{
    (void)state;
    char url[96];
    ferry_socket *subs[2];
    ferry_socket *pub = pub_with_subs(url, sizeof url, 256 << 10, subs, 2);
    unsigned char buf[20000];
    struct shm_pipe *liar = first_pipe(subs[0]);
    for (uint64_t i = 0; i < 4; i++) { /* the liar holds references, unread */
        fill(buf, sizeof buf, i);
        assert_int_equal(ferry_send(pub, buf, sizeof buf, 0), 0);
        ferry_msg *m = NULL;
        assert_int_equal(ferry_msg_recv(subs[1], &m, 0), 0);
        assert_true(check(ferry_msg_data(m), sizeof buf, i));
        ferry_msg_free(m);
    }
    atomic_store(&liar->r.sh->head, (uint64_t)1 << 40);
    for (uint64_t i = 4; i < 400; i++) {
        fill(buf, sizeof buf, i);
        assert_int_equal(ferry_send(pub, buf, sizeof buf, 0), 0);
        ferry_msg *m = NULL;
        assert_int_equal(ferry_msg_recv(subs[1], &m, 0), 0);
        assert_int_equal(ferry_msg_size(m), sizeof buf);
        assert_true(check(ferry_msg_data(m), sizeof buf, i));
        ferry_msg_free(m);
    }
    int64_t errors = 0;
    assert_int_equal(ferry_getopt_int(pub, FERRY_OPT_ERRORS, &errors), 0);
    assert_true(errors >= 1);
    close_all(pub, subs, 2);
}

/* A subscriber that never reads costs the publisher copies and loses
 * messages at its HWM; the publisher never waits and the reader that keeps
 * up gets everything. */
static void test_pool_slow_subscriber(void **state)
{
    (void)state;
    char url[96];
    ferry_socket *subs[2];
    ferry_socket *pub = pub_open(url, sizeof url, 128 << 10, -1);
    assert_int_equal(ferry_setopt_int(pub, FERRY_OPT_SNDTIMEO, 0), 0);
    subs_dial(pub, url, subs, 2, NULL, 2);
    unsigned char buf[10000];
    for (uint64_t i = 0; i < 3000; i++) {
        fill(buf, sizeof buf, i);
        assert_int_equal(ferry_send(pub, buf, sizeof buf, 0), 0);
        ferry_msg *m = NULL;
        assert_int_equal(ferry_msg_recv(subs[1], &m, 0), 0);
        assert_int_equal(ferry_msg_size(m), sizeof buf);
        assert_true(check(ferry_msg_data(m), sizeof buf, i));
        ferry_msg_free(m);
    }
    struct shm_pool *pl = pool_of(pub);
    assert_true(pool_count(pl, &pl->fallbacks) > 0);
    int64_t dropped = 0;
    assert_int_equal(ferry_getopt_int(pub, FERRY_OPT_DROPPED, &dropped), 0);
    assert_true(dropped > 0); /* the slow one's, at its HWM or ring */
    /* what the slow one did take is whole and in order */
    ferry_msg *m = NULL;
    uint64_t prev = 0;
    int got = 0;
    while (ferry_msg_recv(subs[0], &m, FERRY_DONTWAIT) == 0) {
        uint64_t i;
        memcpy(&i, ferry_msg_data(m), sizeof i);
        assert_true(got == 0 || i > prev);
        assert_true(check(ferry_msg_data(m), ferry_msg_size(m), i));
        prev = i;
        got++;
        ferry_msg_free(m);
    }
    assert_true(got > 0);
    close_all(pub, subs, 2);
}

/* A subscriber that keeps a message holds the chunks of what was sent to
 * it since (its ring gives records back in order), but no one else's:
 * the subscribers of another topic go on through the pool, and the kept
 * message stays intact. */
static void test_pool_kept_message(void **state)
{
    (void)state;
    char url[96];
    ferry_socket *pub = pub_open(url, sizeof url, 256 << 10, -1);
    ferry_socket *subs[3];
    static const char *const topics[] = {"a", "b", "b"};
    subs_dial(pub, url, subs, 3, topics, 3);
    unsigned char buf[20000];
    memset(buf, 'a', sizeof buf);
    assert_int_equal(ferry_send(pub, buf, sizeof buf, 0), 0);
    ferry_msg *kept = NULL;
    assert_int_equal(ferry_msg_recv(subs[0], &kept, 0), 0);
    for (uint64_t i = 1; i < 300; i++) { /* the pool's room is used about 20 times over */
        fill(buf, sizeof buf, i);
        buf[0] = 'b';
        assert_int_equal(ferry_send(pub, buf, sizeof buf, 0), 0);
        for (int k = 1; k < 3; k++) {
            ferry_msg *m = NULL;
            assert_int_equal(ferry_msg_recv(subs[k], &m, 0), 0);
            struct shm_pipe *sp = (struct shm_pipe *)m->pipe;
            assert_true((const unsigned char *)m->data >= sp->rx_pool &&
                        (const unsigned char *)m->data < sp->rx_pool + sp->rx_pool_len);
            assert_int_equal(memcmp(m->data, buf, sizeof buf), 0);
            ferry_msg_free(m);
        }
    }
    struct shm_pool *pl = pool_of(pub);
    assert_int_equal(pool_count(pl, &pl->fallbacks), 0);
    const unsigned char *d = ferry_msg_data(kept);
    for (size_t k = 0; k < sizeof buf; k++)
        assert_int_equal(d[k], 'a');
    ferry_msg_free(kept);
    close_all(pub, subs, 3);
}

/* References count against the subscriber's HWM like any message: a
 * stalled subscriber holds about SNDHWM of them, the rest are dropped. */
static void test_pool_hwm(void **state)
{
    (void)state;
    char url[96];
    ferry_socket *subs[2];
    ferry_socket *pub = pub_open(url, sizeof url, 16 << 20, 8);
    subs_dial(pub, url, subs, 2, NULL, 2);
    unsigned char buf[4096];
    for (uint64_t i = 0; i < 200; i++) {
        fill(buf, sizeof buf, i);
        assert_int_equal(ferry_send(pub, buf, sizeof buf, 0), 0);
        assert_int_equal(recv_check_len(subs[1], i, sizeof buf), 1);
    }
    int got = 0;
    ferry_msg *m = NULL;
    while (ferry_msg_recv(subs[0], &m, FERRY_DONTWAIT) == 0) {
        got++;
        ferry_msg_free(m);
    }
    assert_true(got >= 8 && got <= 16); /* the HWM is approximate by half of it */
    int64_t dropped = 0;
    assert_int_equal(ferry_getopt_int(pub, FERRY_OPT_DROPPED, &dropped), 0);
    assert_int_equal(dropped, 200 - got);
    close_all(pub, subs, 2);
}

/* A message read in place out of the pool stays valid after its socket is
 * closed, until it is freed, however much the publisher sends meanwhile;
 * after the free the publisher sees the subscriber leave. */
static void test_pool_held_after_close(void **state)
{
    (void)state;
    char url[96];
    ferry_socket *subs[3];
    ferry_socket *pub = pub_with_subs(url, sizeof url, 256 << 10, subs, 3);
    unsigned char buf[20000];
    fill(buf, sizeof buf, 0);
    assert_int_equal(ferry_send(pub, buf, sizeof buf, 0), 0);
    ferry_msg *kept = NULL;
    assert_int_equal(ferry_msg_recv(subs[0], &kept, 0), 0);
    for (int k = 1; k < 3; k++)
        assert_int_equal(recv_check_len(subs[k], 0, sizeof buf), 1);
    ferry_close(subs[0]);                /* still holding message 0 */
    for (uint64_t i = 1; i < 200; i++) { /* the pool goes round about 15 times */
        fill(buf, sizeof buf, i);
        assert_int_equal(ferry_send(pub, buf, sizeof buf, 0), 0);
        for (int k = 1; k < 3; k++)
            recv_check_len(subs[k], i, sizeof buf);
    }
    assert_int_equal(ferry_msg_size(kept), sizeof buf);
    assert_true(check(ferry_msg_data(kept), sizeof buf, 0));
    ferry_msg_free(kept);
    uint64_t deadline = t_now_ms() + 10000;
    int64_t peers = 3;
    while (ferry_getopt_int(pub, FERRY_OPT_PEERS, &peers) == 0 && peers != 2 &&
           t_now_ms() < deadline)
        usleep(1000);
    assert_int_equal(peers, 2);
    for (int k = 1; k < 3; k++)
        ferry_close(subs[k]);
    ferry_close(pub);
}

/* A subscriber SIGKILLed while it holds messages in place in the pool
 * gives them back: afterwards the pool serves the survivor without a
 * single copy. */
static void peer_armed(ferry_socket *pub, pid_t pid);
static void survivors_hear_bell(ferry_socket *pub, ferry_socket **subs, int n);

static void test_pool_killed_reader(void **state)
{
    (void)state;
    char url[96];
    t_url(url, sizeof url, "poolkill");
    struct t_pipe bound, held;
    t_pipe_open(&bound);
    t_pipe_open(&held);
    pid_t kid = fork(); /* before this process has any thread */
    assert_true(kid >= 0);
    if (kid == 0) {
        t_die_with_parent();
        t_pipe_recv(&bound);
        ferry_socket *sub = NULL;
        CHILD_CHECK(ferry_socket_open(&sub, FERRY_SUB) == 0, 2);
        ferry_setopt_int(sub, FERRY_OPT_RCVTIMEO, 10000);
        CHILD_CHECK(ferry_setopt(sub, FERRY_OPT_SUBSCRIBE, "", 0) == 0, 3);
        CHILD_CHECK(ferry_dial(sub, url) == 0, 4);
        t_pipe_send(&held, 'c');
        ferry_msg *keep[8];
        for (int k = 0; k < 8; k++) /* held, in place, until killed */
            CHILD_CHECK(ferry_msg_recv(sub, &keep[k], 0) == 0, 5);
        t_pipe_send(&held, 'h');
        ferry_setopt_int(sub, FERRY_OPT_SPIN, 0);
        char c;
        size_t n;
        ferry_recv(sub, &c, 1, &n, 0); /* asleep, on the bell too, until killed */
        pause();
        _exit(0);
    }
    ferry_socket *pub = t_open_timed(FERRY_PUB);
    assert_int_equal(ferry_setopt_int(pub, FERRY_OPT_SHM_POOL, 1 << 20), 0);
    assert_int_equal(ferry_listen(pub, url), 0);
    ferry_socket *subs[2]; /* two survivors: one would get copies (no fan-out) */
    subs_dial(pub, url, subs, 2, NULL, 2);
    t_pipe_send(&bound, 'b');
    assert_int_equal(t_pipe_recv(&held), 'c');
    assert_int_equal(ferry_wait_peers(pub, 3, 10000), 0);
    static unsigned char buf[100000];
    uint64_t i = 0;
    for (; i < 8; i++) { /* 800 KB of a 1 MiB pool: the child holds them */
        fill(buf, sizeof buf, i);
        assert_int_equal(ferry_send(pub, buf, sizeof buf, 0), 0);
        for (int k = 0; k < 2; k++)
            assert_int_equal(recv_check_len(subs[k], i, sizeof buf), 1);
    }
    assert_int_equal(t_pipe_recv(&held), 'h');
    peer_armed(pub, kid);
    kill(kid, SIGKILL);
    assert_int_equal(t_wait(kid), 128 + SIGKILL);
    survivors_hear_bell(pub, subs, 2);
    struct shm_pool *pl = pool_of(pub);
    assert_non_null(pl);
    /* the publisher learns of the death from its I/O thread; the pipe's
     * holds go when it is destroyed */
    uint64_t deadline = t_now_ms() + 10000;
    while (pool_links(pl) != 2 && t_now_ms() < deadline)
        usleep(1000);
    assert_int_equal(pool_links(pl), 2);
    uint64_t fb = pool_count(pl, &pl->fallbacks);
    for (; i < 100; i++) {
        fill(buf, sizeof buf, i);
        assert_int_equal(ferry_send(pub, buf, sizeof buf, 0), 0);
        for (int k = 0; k < 2; k++)
            assert_int_equal(recv_check_len(subs[k], i, sizeof buf), 1);
    }
    assert_int_equal(pool_count(pl, &pl->fallbacks), fb);
    close_all(pub, subs, 2);
    t_pipe_close(&bound);
    t_pipe_close(&held);
}

/* The bell (sock.h, bells): a message that finds several subscribers
 * asleep wakes them all with one ring of the publisher's bell, which
 * lives in the pool's first line; one that finds a single subscriber
 * asleep wakes it through its own word and leaves the bell alone. */
#define BELL_SUBS 4

struct bell_sub {
    ferry_socket *s;
    _Atomic int got;
};

static void *bell_reader(void *arg)
{
    struct bell_sub *b = arg;
    char buf[64];
    size_t len;
    while (ferry_recv(b->s, buf, sizeof buf, &len, 0) == 0 && memcmp(buf, "all: stop", 9) != 0)
        atomic_fetch_add(&b->got, 1);
    return NULL;
}

static int bells_of(ferry_socket *s)
{
    pthread_mutex_lock(&s->mtx);
    int n = s->nbells;
    pthread_mutex_unlock(&s->mtx);
    return n;
}

/* Until s is armed to sleep: counted asleep, and woken cleared for the
 * next waker. */
static void wait_armed(ferry_socket *s)
{
    struct fy_wake *w = s->wake;
    uint64_t deadline = t_now_ms() + 10000;
    while ((atomic_load(&w->sleepers) == 0 || atomic_load(&w->woken) != 0) && t_now_ms() < deadline)
        usleep(200);
    assert_int_not_equal(atomic_load(&w->sleepers), 0);
    assert_int_equal(atomic_load(&w->woken), 0);
}

/* Until every subscriber is asleep on its wake word, and so on the bell. */
static void bell_all_asleep(struct bell_sub *b)
{
    for (int k = 0; k < BELL_SUBS; k++) {
        assert_int_equal(bells_of(b[k].s), 1);
        wait_armed(b[k].s);
    }
}

static void bell_all_got(struct bell_sub *b, const int *want)
{
    for (int k = 0; k < BELL_SUBS; k++) {
        uint64_t deadline = t_now_ms() + 10000;
        while (atomic_load(&b[k].got) < want[k] && t_now_ms() < deadline)
            usleep(200);
        assert_int_equal(atomic_load(&b[k].got), want[k]);
    }
}

static unsigned bell_wakes_of(ferry_socket *s)
{
    pthread_mutex_lock(&s->mtx);
    unsigned n = s->bell_wakes;
    pthread_mutex_unlock(&s->mtx);
    return n;
}

/* A message to every subscriber, all asleep: 1 if the bell rang once,
 * each woke to it, and none was woken through its own word. */
static int bell_round_all(ferry_socket *pub, struct bell_sub *b, int *want,
                          const _Atomic uint32_t *bell)
{
    bell_all_asleep(b);
    uint32_t rung = atomic_load(bell), seq[BELL_SUBS];
    unsigned heard[BELL_SUBS];
    for (int k = 0; k < BELL_SUBS; k++) {
        seq[k] = atomic_load(&b[k].s->wake->seq);
        heard[k] = bell_wakes_of(b[k].s);
    }
    assert_int_equal(ferry_send(pub, "all: to everyone", 16, 0), 0);
    for (int k = 0; k < BELL_SUBS; k++)
        want[k]++;
    bell_all_got(b, want);
    int ok = atomic_load(bell) == rung + 1;
    for (int k = 0; k < BELL_SUBS; k++)
        ok &= atomic_load(&b[k].s->wake->seq) == seq[k] && bell_wakes_of(b[k].s) > heard[k];
    return ok;
}

/* A message to one subscriber (topic only2): 1 if it was woken through
 * its own word and the bell was left alone. */
static int bell_round_one(ferry_socket *pub, struct bell_sub *b, int *want,
                          const _Atomic uint32_t *bell)
{
    bell_all_asleep(b);
    uint32_t rung = atomic_load(bell), seq2 = atomic_load(&b[2].s->wake->seq);
    assert_int_equal(ferry_send(pub, "only2: to one", 13, 0), 0);
    want[2]++;
    bell_all_got(b, want);
    assert_int_equal(atomic_load(bell), rung); /* whatever else: never the bell for one */
    return atomic_load(&b[2].s->wake->seq) != seq2;
}

/* Until pub's subscriber in process pid is armed to sleep, as seen in
 * its wake block, which pub maps. */
static void peer_armed(ferry_socket *pub, pid_t pid)
{
    struct fy_wake *w = NULL;
    pthread_mutex_lock(&pub->mtx);
    for (size_t i = 0; i < pub->npipes; i++)
        if (pub->pipes[i]->peer_pid == pid)
            w = ((struct shm_pipe *)pub->pipes[i])->peer_wake;
    pthread_mutex_unlock(&pub->mtx);
    assert_non_null(w);
    uint64_t deadline = t_now_ms() + 10000;
    while ((atomic_load(&w->sleepers) == 0 || atomic_load(&w->woken) != 0) && t_now_ms() < deadline)
        usleep(200);
    assert_int_not_equal(atomic_load(&w->sleepers), 0);
}

/* A subscriber was SIGKILLed asleep on the bell: the survivors, asleep
 * too, are still woken by it, and get the message. */
static void survivors_hear_bell(ferry_socket *pub, ferry_socket **subs, int n)
{
    struct bell_sub sv[2];
    pthread_t th[2];
    assert_true(n <= 2);
    for (int k = 0; k < n; k++) {
        sv[k].s = subs[k];
        atomic_init(&sv[k].got, 0);
        assert_int_equal(ferry_setopt_int(subs[k], FERRY_OPT_SPIN, 0), 0);
        assert_int_equal(pthread_create(&th[k], NULL, bell_reader, &sv[k]), 0);
    }
    int ok = 0; /* tried again when a survivor was between two sleeps (test_pool_bell) */
    for (int attempt = 1; attempt <= 3 && !ok; attempt++) {
        unsigned heard[2];
        for (int k = 0; k < n; k++) {
            wait_armed(subs[k]);
            heard[k] = bell_wakes_of(subs[k]);
        }
        assert_int_equal(ferry_send(pub, "all: after the kill", 19, 0), 0);
        ok = 1;
        for (int k = 0; k < n; k++) {
            uint64_t deadline = t_now_ms() + 10000;
            while (atomic_load(&sv[k].got) < attempt && t_now_ms() < deadline)
                usleep(200);
            assert_int_equal(atomic_load(&sv[k].got), attempt);
            ok &= bell_wakes_of(subs[k]) > heard[k];
        }
    }
    assert_true(ok);
    assert_int_equal(ferry_send(pub, "all: stop", 9, 0), 0);
    for (int k = 0; k < n; k++)
        pthread_join(th[k], NULL);
}

static void test_pool_bell(void **state)
{
    (void)state;
    if (!fy_futex_waitv_works())
        skip(); /* a kernel before 5.16: subscribers are woken one by one */
    char url[96];
    ferry_socket *pub = pub_open(url, sizeof url, 1 << 20, -1);
    struct bell_sub b[BELL_SUBS];
    pthread_t th[BELL_SUBS];
    for (int k = 0; k < BELL_SUBS; k++) {
        char only[16];
        snprintf(only, sizeof only, "only%d", k);
        b[k].s = t_open_timed(FERRY_SUB);
        atomic_init(&b[k].got, 0);
        assert_int_equal(ferry_setopt_int(b[k].s, FERRY_OPT_SPIN, 0), 0); /* sleep at once */
        assert_int_equal(ferry_setopt(b[k].s, FERRY_OPT_SUBSCRIBE, "all", 3), 0);
        assert_int_equal(ferry_setopt(b[k].s, FERRY_OPT_SUBSCRIBE, only, strlen(only)), 0);
        assert_int_equal(ferry_dial(b[k].s, url), 0);
    }
    assert_int_equal(ferry_wait_peers(pub, BELL_SUBS, 10000), 0);
    for (int k = 0; k < BELL_SUBS; k++)
        assert_int_equal(pthread_create(&th[k], NULL, bell_reader, &b[k]), 0);
    struct shm_pool *pl = pool_of(pub);
    assert_non_null(pl);
    const _Atomic uint32_t *bell = (const _Atomic uint32_t *)(const void *)pl->map;
    int want[BELL_SUBS] = {0};
    /* A round is tried again when a reader was between two sleeps as the
     * message came (its once-a-second re-check): then nobody woke it, and
     * it took the message on its own. A broken bell fails every try. */
    for (int round = 0; round < 3; round++) {
        int ok = 0;
        for (int attempt = 0; attempt < 3 && !ok; attempt++)
            ok = bell_round_all(pub, b, want, bell);
        assert_true(ok); /* one ring for four, and all four woke to it */
        ok = 0;
        for (int attempt = 0; attempt < 3 && !ok; attempt++)
            ok = bell_round_one(pub, b, want, bell);
        assert_true(ok); /* the one woken through its own word, the bell left alone */
    }
    assert_int_equal(ferry_send(pub, "all: stop", 9, 0), 0);
    for (int k = 0; k < BELL_SUBS; k++) {
        pthread_join(th[k], NULL);
        ferry_close(b[k].s);
    }
    ferry_close(pub);
}

/* A subscriber whose pipe to a publisher is cut off (here: the publisher
 * wrote a corrupt REF) while it still holds a message from it no longer
 * hears that publisher's bell, yet the publisher, which does not know,
 * goes on sending and waking it. Such a wake-up must come through the
 * subscriber's own word: a ring of the bell it no longer hears would use
 * its wake-up up, and its other publishers' messages would wait for its
 * once-a-second re-check. */
static void test_pool_bell_cut_off(void **state)
{
    (void)state;
    if (!fy_futex_waitv_works())
        skip();
    char url1[96], url2[96];
    ferry_socket *p1 = pub_open(url1, sizeof url1, 1 << 20, -1);
    ferry_socket *p2 = pub_open(url2, sizeof url2, 1 << 20, -1);
    struct bell_sub b[2]; /* [0] the subscriber cut off from p1, [1] another of p1's */
    for (int k = 0; k < 2; k++) {
        b[k].s = t_open_timed(FERRY_SUB);
        atomic_init(&b[k].got, 0);
        assert_int_equal(ferry_setopt_int(b[k].s, FERRY_OPT_SPIN, 0), 0);
        assert_int_equal(ferry_setopt(b[k].s, FERRY_OPT_SUBSCRIBE, "", 0), 0);
        /* cut off, b[0] does not dial p1 again during the test (it would
         * hear p1's bell again through the new pipe) */
        assert_int_equal(ferry_setopt_int(b[k].s, FERRY_OPT_RECONNECT_IVL, 600000), 0);
        assert_int_equal(ferry_setopt_int(b[k].s, FERRY_OPT_RECONNECT_IVL_MAX, 600000), 0);
        assert_int_equal(ferry_dial(b[k].s, url1), 0);
        assert_int_equal(ferry_wait_peers(p1, k + 1, 10000), 0); /* p1's pipes[0] is b[0]'s */
    }
    assert_int_equal(ferry_dial(b[0].s, url2), 0);
    assert_int_equal(ferry_wait_peers(p2, 1, 10000), 0);
    assert_int_equal(ferry_wait_peers(b[0].s, 2, 10000), 0);

    unsigned char big[4096];
    fill(big, sizeof big, 7);
    assert_int_equal(ferry_send(p1, big, sizeof big, 0), 0);
    ferry_msg *held = NULL; /* in place in p1's pool: keeps the cut pipe's memory */
    assert_int_equal(ferry_msg_recv(b[0].s, &held, 0), 0);
    assert_int_equal(recv_check_len(b[1].s, 7, sizeof big), 1);

    struct shm_pipe *w = first_pipe(p1);
    struct shm_ref ref = {.off = 0, .len = 64};
    int err = 0;
    void *dst = fy_ring_claim(&w->w, sizeof ref, &err);
    assert_non_null(dst);
    memcpy(dst, &ref, sizeof ref);
    fy_ring_commit(&w->w, FY_RING_F_REF);
    assert_int_equal(ferry_send(p1, "x", 1, 0), 0);
    char c[16];
    size_t n = 0;
    assert_int_equal(ferry_setopt_int(b[0].s, FERRY_OPT_RCVTIMEO, 300), 0);
    assert_int_equal(ferry_recv(b[0].s, c, sizeof c, &n, 0), FERRY_ETIMEDOUT);
    int64_t errors = 0;
    assert_int_equal(ferry_getopt_int(b[0].s, FERRY_OPT_ERRORS, &errors), 0);
    assert_int_equal(errors, 1);
    assert_int_equal(bells_of(b[0].s), 1); /* p2's alone */
    assert_int_equal(ferry_recv(b[1].s, c, sizeof c, &n, 0), 0);
    assert_int_equal(ferry_setopt_int(b[0].s, FERRY_OPT_RCVTIMEO, -1), 0);

    pthread_t th[2];
    for (int k = 0; k < 2; k++)
        assert_int_equal(pthread_create(&th[k], NULL, bell_reader, &b[k]), 0);
    /* Tried again (a new y) when b[0] was between two sleeps as y came
     * (its once-a-second re-check): then p1 claimed nothing. A wake-up
     * spent on the bell b[0] no longer hears fails every try. */
    int tries = 0, woken = 0;
    uint64_t deadline;
    for (; tries < 3 && !woken; tries++) {
        for (int k = 0; k < 2; k++)
            wait_armed(b[k].s);
        uint32_t seq = atomic_load(&b[0].s->wake->seq);
        assert_int_equal(ferry_send(p1, "y", 1, 0), 0); /* to both: p1 still has two peers */
        deadline = t_now_ms() + 3000;
        while (atomic_load(&b[0].s->wake->seq) == seq && t_now_ms() < deadline)
            usleep(200);
        woken = atomic_load(&b[0].s->wake->seq) != seq;
    }
    assert_true(woken); /* woken alone, not by the bell */
    assert_int_equal(ferry_send(p2, "z", 1, 0), 0);
    int want[2] = {1, tries}; /* b[0]: p2's z; b[1]: p1's ys */
    for (int k = 0; k < 2; k++) {
        deadline = t_now_ms() + 10000;
        while (atomic_load(&b[k].got) < want[k] && t_now_ms() < deadline)
            usleep(200);
        assert_int_equal(atomic_load(&b[k].got), want[k]);
    }
    assert_int_equal(ferry_send(p2, "all: stop", 9, 0), 0);
    assert_int_equal(ferry_send(p1, "all: stop", 9, 0), 0);
    for (int k = 0; k < 2; k++)
        pthread_join(th[k], NULL);
    ferry_msg_free(held);
    for (int k = 0; k < 2; k++)
        ferry_close(b[k].s);
    ferry_close(p1);
    ferry_close(p2);
}

/* The bell is the publisher's to write; one that rings it without end (a
 * bug, or a hostile publisher) only wakes its subscribers for nothing:
 * every message still arrives, whole and in order. */
struct hammer {
    _Atomic uint32_t *bell;
    _Atomic int stop, rung;
};

static void *bell_hammer(void *arg)
{
    struct hammer *h = arg;
    while (!atomic_load(&h->stop)) {
        atomic_fetch_add(h->bell, 1);
        syscall(SYS_futex, (uint32_t *)h->bell, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
        atomic_store(&h->rung, 1);
    }
    return NULL;
}

struct checker {
    ferry_socket *s;
    int bad;          /* messages missing, out of order or damaged */
    _Atomic int done; /* messages taken */
};

/* Receives messages 0..299 asleep between them (assertions stay on the
 * main thread: this one counts). */
static void *hammered_reader(void *arg)
{
    struct checker *c = arg;
    for (uint64_t i = 0; i < 300; i++) {
        ferry_msg *m = NULL;
        if (ferry_msg_recv(c->s, &m, 0) != 0) {
            c->bad++;
            break;
        }
        if (ferry_msg_size(m) != size_of(i) || !check(ferry_msg_data(m), size_of(i), i))
            c->bad++;
        ferry_msg_free(m);
        atomic_fetch_add(&c->done, 1);
    }
    return NULL;
}

static void test_pool_bell_hammered(void **state)
{
    (void)state;
    char url[96];
    ferry_socket *subs[2];
    ferry_socket *pub = pub_with_subs(url, sizeof url, 1 << 20, subs, 2);
    for (int k = 0; k < 2; k++)
        assert_int_equal(ferry_setopt_int(subs[k], FERRY_OPT_SPIN, 0), 0);
    struct shm_pool *pl = pool_of(pub);
    assert_non_null(pl);
    struct hammer h = {.bell = (_Atomic uint32_t *)(void *)pl->map};
    atomic_init(&h.stop, 0);
    atomic_init(&h.rung, 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, bell_hammer, &h), 0);
    while (!atomic_load(&h.rung))
        sched_yield();
    struct checker c[2] = {{subs[0], 0, 0}, {subs[1], 0, 0}};
    pthread_t rd[2];
    for (int k = 0; k < 2; k++) {
        assert_int_equal(ferry_setopt_int(subs[k], FERRY_OPT_RCVTIMEO, 10000), 0);
        assert_int_equal(pthread_create(&rd[k], NULL, hammered_reader, &c[k]), 0);
    }
    /* one message at a time (a PUB drops what a full ring cannot take),
     * each most likely finding the readers asleep */
    static unsigned char buf[300000]; /* size_of's largest */
    int sent = 0, taken = 1;
    for (uint64_t i = 0; i < 300 && taken; i++) {
        size_t len = size_of(i);
        fill(buf, len, i);
        if (ferry_send(pub, buf, len, 0) != 0)
            break;
        sent++;
        uint64_t until = t_now_ms() + 10000;
        for (int k = 0; k < 2; k++)
            while (atomic_load(&c[k].done) < sent && t_now_ms() < until)
                sched_yield();
        taken = atomic_load(&c[0].done) == sent && atomic_load(&c[1].done) == sent;
    }
    atomic_store(&h.stop, 1); /* before any assertion: nothing left running */
    pthread_join(th, NULL);
    for (int k = 0; k < 2; k++)
        pthread_join(rd[k], NULL);
    assert_int_equal(sent, 300);
    for (int k = 0; k < 2; k++) {
        assert_int_equal(atomic_load(&c[k].done), 300);
        assert_int_equal(c[k].bad, 0);
    }
    int64_t errors = 0;
    for (int k = 0; k < 2; k++) {
        assert_int_equal(ferry_getopt_int(subs[k], FERRY_OPT_ERRORS, &errors), 0);
        assert_int_equal(errors, 0);
    }
    close_all(pub, subs, 2);
}

/* A publisher whose REF points outside its pool, or that sends a REF
 * without having offered a pool, is dropped by the reader as corrupt. */
static void ref_refused(int64_t pool_bytes, uint64_t off)
{
    char url[96];
    ferry_socket *subs[1];
    ferry_socket *pub = pub_with_subs(url, sizeof url, pool_bytes, subs, 1);
    struct shm_pipe *w = first_pipe(pub);
    struct shm_ref ref = {.off = off, .len = 4096};
    int err = 0;
    void *dst = fy_ring_claim(&w->w, sizeof ref, &err);
    assert_non_null(dst);
    memcpy(dst, &ref, sizeof ref);
    fy_ring_commit(&w->w, FY_RING_F_REF);
    assert_int_equal(ferry_send(pub, "x", 1, 0), 0); /* wakes the reader */
    char b[16];
    ferry_setopt_int(subs[0], FERRY_OPT_RCVTIMEO, 300);
    size_t blen = 0;
    assert_int_equal(ferry_recv(subs[0], b, sizeof b, &blen, 0), FERRY_ETIMEDOUT);
    int64_t errors = 0;
    assert_int_equal(ferry_getopt_int(subs[0], FERRY_OPT_ERRORS, &errors), 0);
    assert_int_equal(errors, 1);
    ferry_close(subs[0]);
    ferry_close(pub);
}

static void test_ref_outside_pool(void **state)
{
    (void)state;
    ref_refused(1 << 20, (1 << 20) - 100);
}

static void test_ref_into_bell(void **state)
{
    (void)state;
    ref_refused(1 << 20, 0); /* the bell's line is no message's */
}

static void test_ref_without_pool(void **state)
{
    (void)state;
    ref_refused(0, 0);
}

/* What a subscriber accepts as a peer's pool, called directly: a memfd
 * sealed against shrinking, on tmpfs, of exactly the announced size, a
 * whole number of pages and at most SHM_POOL_MAX. */
static void test_pool_fd_checks(void **state)
{
    (void)state;
    int fd = memfd_create("t-pool", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 1 << 20), 0);
    assert_null(shm_pool_map_peer(fd, 1 << 20)); /* not sealed yet */
    assert_int_equal(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK), 0);
    const unsigned char *m = shm_pool_map_peer(fd, 1 << 20);
    assert_non_null(m);
    munmap((void *)m, 1 << 20);
    assert_null(shm_pool_map_peer(fd, 2 << 20));           /* not its size */
    assert_null(shm_pool_map_peer(fd, (1 << 20) - 100));   /* not whole pages */
    assert_null(shm_pool_map_peer(fd, 0));                 /* nothing */
    assert_null(shm_pool_map_peer(fd, (uint64_t)1 << 40)); /* past SHM_POOL_MAX */
    close(fd);
    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_null(shm_pool_map_peer(p[0], 1 << 20));
    close(p[0]);
    close(p[1]);
}

/* A publisher whose HELLO offers a pool that is not one (a pipe) is
 * refused with FERRY_EPROTO; the subscriber goes on serving an honest
 * publisher. */
static void test_pool_bad_hello(void **state)
{
    (void)state;
    char n[64], u[96];
    t_name(n, sizeof n, "poolhello");
    snprintf(u, sizeof u, "shm://%s", n);
    ferry_socket *sub = t_open_timed(FERRY_SUB);
    assert_int_equal(ferry_setopt(sub, FERRY_OPT_SUBSCRIBE, "", 0), 0);
    assert_int_equal(ferry_listen(sub, u), 0);
    int fd = raw_shm_connect(n);
    assert_true(fd >= 0);
    struct shm_ctl c;
    assert_true(raw_shm_read(fd, &c) > 0 && c.op == SHM_OP_WELCOME);
    const uint64_t cap = 65536;
    size_t len = SHM_CONN_HDR + 2 * fy_ring_bytes(cap);
    int conn = memfd_create("t-conn", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    assert_int_equal(ftruncate(conn, (off_t)len), 0);
    struct shm_conn_hdr *h = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, conn, 0);
    assert_true(h != MAP_FAILED);
    memcpy(h->magic, "FERRYCON", 8);
    h->version = 1;
    h->ring_cap = cap;
    munmap(h, len);
    assert_int_equal(fcntl(conn, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), 0);
    int wake = memfd_create("t-wake", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    assert_int_equal(ftruncate(wake, FY_WAKE_SIZE), 0);
    assert_int_equal(fcntl(wake, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), 0);
    int sv[2], bad[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(pipe(bad), 0);
    struct shm_ctl hello;
    memset(&hello, 0, sizeof hello);
    memcpy(hello.magic, "FERRYCTL", 8);
    hello.version = SHM_CTL_VERSION;
    hello.op = SHM_OP_HELLO;
    hello.type = FERRY_PUB;
    hello.ring_size = cap;
    hello.pool_size = 1 << 20;
    int fds[4] = {conn, wake, sv[1], bad[0]};
    assert_int_equal(raw_shm_send(fd, &hello, fds, 4), (ssize_t)sizeof hello);
    assert_true(raw_shm_read(fd, &c) > 0);
    assert_int_equal(c.op, SHM_OP_REFUSE);
    assert_int_equal(c.err, FERRY_EPROTO);
    close(fd);
    close(conn);
    close(wake);
    close(sv[0]);
    close(sv[1]);
    close(bad[0]);
    close(bad[1]);
    ferry_socket *pub = t_open_timed(FERRY_PUB);
    assert_int_equal(ferry_dial(pub, u), 0);
    assert_int_equal(ferry_wait_peers(pub, 1, 10000), 0);
    assert_int_equal(ferry_send(pub, "ok", 2, 0), 0);
    char b[8];
    size_t got = 0;
    assert_int_equal(ferry_recv(sub, b, sizeof b, &got, 0), 0);
    assert_int_equal(got, 2);
    ferry_close(pub);
    ferry_close(sub);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pool_killed_reader), /* forks: first, before any thread */
        cmocka_unit_test(test_pool_delivers),
        cmocka_unit_test(test_pool_multipart),
        cmocka_unit_test(test_pool_read_only),
        cmocka_unit_test(test_pool_scribbled_head),
        cmocka_unit_test(test_pool_slow_subscriber),
        cmocka_unit_test(test_pool_kept_message),
        cmocka_unit_test(test_pool_hwm),
        cmocka_unit_test(test_pool_held_after_close),
        cmocka_unit_test(test_pool_bell),
        cmocka_unit_test(test_pool_bell_cut_off),
        cmocka_unit_test(test_pool_bell_hammered),
        cmocka_unit_test(test_ref_outside_pool),
        cmocka_unit_test(test_ref_into_bell),
        cmocka_unit_test(test_ref_without_pool),
        cmocka_unit_test(test_pool_fd_checks),
        cmocka_unit_test(test_pool_bad_hello),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
