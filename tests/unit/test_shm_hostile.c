/* test_shm_hostile.c - a hostile local peer in this process: it writes raw
 * records into the ring it shares with us and tampers with what the
 * handshake gave it. Each attack must cost us a bounded amount and leave
 * our honest peers served. */
#include "../common.h"

#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "raw_shm.h"

/* A PULL listening, and a PUSH dialed to it whose pipe we drive by hand. */
struct rig {
    ferry_socket *pull, *evil;
    struct shm_pipe *sp; /* the evil dialer's side of the connection */
    char url[96];
};

static int rig_maxmsg; /* the PULL's FERRY_OPT_MAXMSGSIZE when not 0 */

static void rig_open(struct rig *r, const char *tag, int ring)
{
    t_url(r->url, sizeof r->url, tag);
    assert_int_equal(ferry_socket_open(&r->pull, FERRY_PULL), 0);
    if (rig_maxmsg)
        assert_int_equal(ferry_setopt_int(r->pull, FERRY_OPT_MAXMSGSIZE, rig_maxmsg), 0);
    assert_int_equal(ferry_listen(r->pull, r->url), 0);
    assert_int_equal(ferry_socket_open(&r->evil, FERRY_PUSH), 0);
    assert_int_equal(ferry_setopt_int(r->evil, FERRY_OPT_RING_SIZE, ring), 0);
    assert_int_equal(ferry_dial(r->evil, r->url), 0);
    pthread_mutex_lock(&r->evil->mtx);
    assert_int_equal(r->evil->npipes, 1);
    r->sp = (struct shm_pipe *)r->evil->pipes[0];
    fy_pipe_ref(&r->sp->base);
    pthread_mutex_unlock(&r->evil->mtx);
}

static void rig_close(struct rig *r)
{
    fy_pipe_unref(&r->sp->base);
    ferry_close(r->evil);
    ferry_close(r->pull);
}

/* Writes one raw record; 0 when the ring is full. */
static int raw_put(struct shm_pipe *sp, const void *data, uint64_t len, uint32_t flags)
{
    int err;
    void *dst = fy_ring_claim(&sp->w, len, &err);
    if (dst == NULL)
        return 0;
    if (len)
        memcpy(dst, data, len);
    fy_ring_commit(&sp->w, flags);
    return 1;
}

static int64_t errors_of(ferry_socket *s)
{
    int64_t v = -1;
    assert_int_equal(ferry_getopt_int(s, FERRY_OPT_ERRORS, &v), 0);
    return v;
}

/* 9. Parts are counted, empty ones included: 65,536 pass, one more drops
 * the connection. */
static void test_part_limit(void **state)
{
    (void)state;
    struct rig r;
    rig_open(&r, "parts", 1 << 20);
    assert_int_equal(ferry_setopt_int(r.pull, FERRY_OPT_RCVTIMEO, 20000), 0);
    for (int i = 0; i < FY_MAX_PARTS - 1; i++)
        assert_int_equal(raw_put(r.sp, NULL, 0, FY_RING_F_MORE), 1);
    assert_int_equal(raw_put(r.sp, "end", 3, 0), 1);
    size_t n;
    char buf[8];
    int64_t more = 1;
    int parts = 0;
    while (more) {
        assert_int_equal(ferry_recv(r.pull, buf, sizeof buf, &n, 0), 0);
        parts++;
        assert_int_equal(ferry_getopt_int(r.pull, FERRY_OPT_RCVMORE, &more), 0);
    }
    assert_int_equal(parts, FY_MAX_PARTS);
    assert_int_equal(n, 3);
    assert_int_equal(errors_of(r.pull), 0);

    for (int i = 0; i < FY_MAX_PARTS; i++)
        assert_int_equal(raw_put(r.sp, NULL, 0, FY_RING_F_MORE), 1);
    assert_int_equal(raw_put(r.sp, NULL, 0, 0), 1);
    assert_int_equal(ferry_setopt_int(r.pull, FERRY_OPT_RCVTIMEO, 200), 0);
    /* the reader works through the 65,537 records in budgeted steps (a
     * sanitizer makes that take longer than one timeout): nothing arrives,
     * and the connection is dropped once the limit is passed */
    for (int k = 0; k < 100 && errors_of(r.pull) == 0; k++)
        assert_int_equal(ferry_recv(r.pull, buf, sizeof buf, &n, 0), FERRY_ETIMEDOUT);
    assert_int_equal(errors_of(r.pull), 1);
    rig_close(&r);
}

/* 9. A part cannot be spread over empty CONT records either. */
static void test_empty_cont_refused(void **state)
{
    (void)state;
    struct rig r;
    rig_open(&r, "cont", 1 << 16);
    assert_int_equal(ferry_setopt_int(r.pull, FERRY_OPT_RCVTIMEO, 200), 0);
    for (int i = 0; i < 100; i++)
        assert_int_equal(raw_put(r.sp, NULL, 0, FY_RING_F_CONT), 1);
    assert_int_equal(raw_put(r.sp, "x", 1, 0), 1);
    size_t n;
    char buf[8];
    assert_int_equal(ferry_recv(r.pull, buf, sizeof buf, &n, 0), FERRY_ETIMEDOUT);
    assert_int_equal(errors_of(r.pull), 1);
    rig_close(&r);
}

/* 9. The sender keeps to the same limit. */
static void test_send_part_limit(void **state)
{
    (void)state;
    ferry_socket *push;
    assert_int_equal(ferry_socket_open(&push, FERRY_PUSH), 0);
    for (int i = 0; i < FY_MAX_PARTS; i++)
        assert_int_equal(ferry_send(push, "", 0, FERRY_MORE), 0);
    assert_int_equal(ferry_send(push, "", 0, FERRY_MORE), FERRY_EMSGSIZE);
    ferry_close(push);
}

/* --- packed records ---------------------------------------------------------- */

/* Writes a packed record by hand: count, the lengths, then the bytes the
 * lengths claim (as many as given, whatever the lengths say). */
static int raw_pack(struct shm_pipe *sp, uint32_t count, const uint32_t *lens, size_t nlens,
                    const void *data, size_t dlen, uint32_t flags)
{
    unsigned char rec[4096];
    size_t len = 4 + 4 * nlens + dlen;
    assert_true(len <= sizeof rec);
    memcpy(rec, &count, 4);
    if (nlens)
        memcpy(rec + 4, lens, 4 * nlens);
    if (dlen)
        memcpy(rec + 4 + 4 * nlens, data, dlen);
    return raw_put(sp, rec, len, FY_RING_F_PACK | flags);
}

/* 9. A packed record's table is the peer's word: a count of 0, a count
 * whose table runs past the record, lengths that do not add up to the
 * record (short or long), a pack inside a multipart message, a pack over
 * MAXMSGSIZE, and more parts than a writer packs each drop that connection,
 * counted, while an honest sender on the same socket is served; a well
 * formed pack from the same raw writer arrives as its parts. */
static void test_pack_hostile(void **state)
{
    (void)state;
    static const uint32_t two[] = {0, 3};
    enum { ZERO, TABLE_PAST, SHORT, LONG, INSIDE, TOO_BIG, TOO_MANY, GOOD, CASES };
    for (int c = 0; c < CASES; c++) {
        struct rig r;
        rig_maxmsg = 1000;
        rig_open(&r, "pack", 1 << 20);
        rig_maxmsg = 0;
        ferry_socket *honest;
        assert_int_equal(ferry_socket_open(&honest, FERRY_PUSH), 0);
        assert_int_equal(ferry_dial(honest, r.url), 0);
        assert_int_equal(ferry_setopt_int(r.pull, FERRY_OPT_RCVTIMEO, 5000), 0);
        switch (c) {
        case ZERO:
            assert_int_equal(raw_pack(r.sp, 0, NULL, 0, "abc", 3, 0), 1);
            break;
        case TABLE_PAST:
            assert_int_equal(raw_pack(r.sp, 1000, two, 2, "abc", 3, 0), 1);
            break;
        case SHORT:
            assert_int_equal(raw_pack(r.sp, 2, two, 2, "ab", 2, 0), 1);
            break;
        case LONG:
            assert_int_equal(raw_pack(r.sp, 2, two, 2, "abcd", 4, 0), 1);
            break;
        case INSIDE:
            assert_int_equal(raw_put(r.sp, "first", 5, FY_RING_F_MORE), 1);
            assert_int_equal(raw_pack(r.sp, 2, two, 2, "abc", 3, 0), 1);
            break;
        case TOO_BIG: {
            static char big[2000];
            uint32_t lens[2] = {0, sizeof big};
            assert_int_equal(raw_pack(r.sp, 2, lens, 2, big, sizeof big, 0), 1);
            break;
        }
        case TOO_MANY: { /* more parts than a writer packs (64) */
            uint32_t lens[65] = {0};
            assert_int_equal(raw_pack(r.sp, 65, lens, 65, NULL, 0, 0), 1);
            break;
        }
        case GOOD: {
            uint32_t lens[3] = {0, 3, 2};
            assert_int_equal(raw_pack(r.sp, 3, lens, 3, "abcde", 5, 0), 1);
            break;
        }
        }
        char buf[16];
        size_t n;
        int64_t more;
        if (c == GOOD) {
            const char *want[] = {"", "abc", "de"};
            for (int k = 0; k < 3; k++) {
                assert_int_equal(ferry_recv(r.pull, buf, sizeof buf, &n, 0), 0);
                assert_int_equal(n, strlen(want[k]));
                assert_memory_equal(buf, want[k], n);
                assert_int_equal(ferry_getopt_int(r.pull, FERRY_OPT_RCVMORE, &more), 0);
                assert_int_equal(more, k < 2);
            }
        }
        assert_int_equal(ferry_send(honest, "honest", 6, 0), 0);
        assert_int_equal(ferry_recv(r.pull, buf, sizeof buf, &n, 0), 0);
        assert_int_equal(n, 6);
        assert_memory_equal(buf, "honest", 6);
        if (c != GOOD) { /* the honest message may come first */
            assert_int_equal(ferry_setopt_int(r.pull, FERRY_OPT_RCVTIMEO, 50), 0);
            for (int k = 0; k < 100 && errors_of(r.pull) == 0; k++)
                assert_int_equal(ferry_recv(r.pull, buf, sizeof buf, &n, 0), FERRY_ETIMEDOUT);
        }
        assert_int_equal(errors_of(r.pull), c == GOOD ? 0 : 1);
        if (c != GOOD) { /* the reason says what was wrong */
            static const char *const said[] = {
                [ZERO] = "of 0 parts",         [TABLE_PAST] = "of 1000 parts",
                [SHORT] = "do not fill it",    [LONG] = "do not fill it",
                [INSIDE] = "inside a message", [TOO_BIG] = "MAXMSGSIZE",
                [TOO_MANY] = "of 65 parts",
            };
            char why[200];
            assert_int_equal(ferry_socket_drop_reason(r.pull, why, sizeof why), 0);
            if (strstr(why, said[c]) == NULL)
                fail_msg("case %d: drop reason '%s' does not say '%s'", c, why, said[c]);
        }
        ferry_close(honest);
        rig_close(&r);
    }
}

/* --- a raw listener that lies about who it is ------------------------------- */

static void lying_ctl(struct shm_ctl *c, int op)
{
    memset(c, 0, sizeof *c);
    memcpy(c->magic, "FERRYCTL", 8);
    c->version = SHM_CTL_VERSION;
    c->op = (uint32_t)op;
    c->type = FERRY_PULL;
    c->pid = 1; /* a claim: init */
    c->uid = 4242;
    c->ring_size = 65536;
}

/* Serves one dialer (WELCOME, HELLO, ACK) and then one STAT request, each
 * message claiming pid 1 and uid 4242. */
static void *lying_listener(void *arg)
{
    int lfd = *(int *)arg;
    struct shm_ctl c;
    int wake = memfd_create("t-wake", MFD_CLOEXEC | MFD_ALLOW_SEALING), sv[2];
    if (wake < 0 || ftruncate(wake, FY_WAKE_SIZE) != 0 ||
        fcntl(wake, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) != 0 ||
        socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv) != 0)
        fail_msg("raw listener set-up");
    int fds[2] = {wake, sv[1]};
    int conn = accept(lfd, NULL, NULL);
    lying_ctl(&c, SHM_OP_WELCOME);
    assert_int_equal(raw_shm_send(conn, &c, fds, 2), (ssize_t)sizeof c);
    assert_int_equal(raw_shm_read(conn, &c), (ssize_t)sizeof c);
    assert_int_equal(c.op, SHM_OP_HELLO);
    lying_ctl(&c, SHM_OP_ACK);
    assert_int_equal(raw_shm_send(conn, &c, NULL, 0), (ssize_t)sizeof c);

    int st = accept(lfd, NULL, NULL);
    lying_ctl(&c, SHM_OP_WELCOME);
    assert_int_equal(raw_shm_send(st, &c, fds, 2), (ssize_t)sizeof c);
    assert_int_equal(raw_shm_read(st, &c), (ssize_t)sizeof c);
    assert_int_equal(c.op, SHM_OP_STAT_REQ);
    lying_ctl(&c, SHM_OP_STAT_REP);
    assert_int_equal(raw_shm_send(st, &c, NULL, 0), (ssize_t)sizeof c);
    close(st);
    close(wake);
    close(sv[0]);
    close(sv[1]);
    return (void *)(intptr_t)conn; /* kept open until the test is done */
}

int fy_shm_stat(const char *name, struct shm_ctl *out);

/* 12. Who a peer is comes from the kernel: the dialer's pipe and the
 * listener's STAT answer (what `ferry ls` shows) carry SO_PEERCRED's pid
 * and uid, not the ones the listener claims. */
static void test_identity_from_kernel(void **state)
{
    (void)state;
    char n[64], u[96];
    t_name(n, sizeof n, "ident");
    snprintf(u, sizeof u, "shm://%s", n);
    int lfd = raw_shm_listen(n);
    assert_true(lfd >= 0);
    pthread_t thr;
    assert_int_equal(pthread_create(&thr, NULL, lying_listener, &lfd), 0);
    ferry_socket *push;
    assert_int_equal(ferry_socket_open(&push, FERRY_PUSH), 0);
    assert_int_equal(ferry_dial(push, u), 0);
    pthread_mutex_lock(&push->mtx);
    assert_int_equal(push->npipes, 1);
    int peer_pid = push->pipes[0]->peer_pid;
    unsigned peer_uid = push->pipes[0]->peer_uid;
    pthread_mutex_unlock(&push->mtx);
    assert_int_equal(peer_pid, getpid());
    assert_int_equal(peer_uid, getuid());

    struct shm_ctl *c = malloc(sizeof *c);
    assert_non_null(c);
    assert_int_equal(fy_shm_stat(n, c), 0);
    assert_int_equal(c->pid, getpid());
    assert_int_equal(c->uid, getuid());
    free(c);
    void *conn;
    pthread_join(thr, &conn);
    ferry_close(push);
    close((int)(intptr_t)conn);
    close(lfd);
}

/* --- 10: a flood of commands --------------------------------------------- */

struct flood {
    struct shm_pipe *sp;
    ferry_socket *victim;
    _Atomic int stop;
    _Atomic uint64_t written;
};

/* Keeps the ring full of ABORT, SUB and MORE records, refilling it as fast
 * as the reader frees room, and wakes the reader after each batch. */
static void *flooder(void *arg)
{
    struct flood *f = arg;
    static const unsigned char abort_cmd = SHM_CMD_ABORT, sub_cmd[2] = {SHM_CMD_SUB, 'x'};
    uint64_t n = 0;
    while (!atomic_load(&f->stop)) {
        int put = 0;
        for (int i = 0; i < 64; i++) {
            put += raw_put(f->sp, "part", 4, FY_RING_F_MORE);
            put += raw_put(f->sp, &abort_cmd, 1, FY_RING_F_CMD);
            put += raw_put(f->sp, sub_cmd, 2, FY_RING_F_CMD);
        }
        n += (uint64_t)put;
        fy_wake(f->sp->peer_wake, -1);
        if (put == 0)
            sched_yield();
    }
    atomic_store(&f->written, n);
    return NULL;
}

/* 10. A peer that keeps its ring full of commands cannot hold a receive
 * past its timeout: RCVTIMEO=100 returns within a second. */
static void test_command_flood_timeout(void **state)
{
    (void)state;
    struct rig r;
    rig_open(&r, "flood", 1 << 20);
    assert_int_equal(ferry_setopt_int(r.pull, FERRY_OPT_RCVTIMEO, 100), 0);
    struct flood f = {.sp = r.sp, .victim = r.pull};
    /* a full ring before the receive starts */
    while (raw_put(r.sp, "\x03", 1, FY_RING_F_CMD) == 1) {
    }
    pthread_t thr;
    assert_int_equal(pthread_create(&thr, NULL, flooder, &f), 0);
    char buf[8];
    size_t n;
    for (int i = 0; i < 3; i++) {
        uint64_t t0 = t_now_ms();
        assert_int_equal(ferry_recv(r.pull, buf, sizeof buf, &n, 0), FERRY_ETIMEDOUT);
        assert_true(t_now_ms() - t0 < 1000);
    }
    atomic_store(&f.stop, 1);
    pthread_join(thr, NULL);
    assert_true(atomic_load(&f.written) > 0);
    rig_close(&r);
}

/* --- 11: notifications a peer cannot switch off ------------------------- */

static int readable_within(int fd, int ms)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    return poll(&pfd, 1, ms);
}

/* 11. A peer that disconnects the wake-up socket it was given, or clears
 * fd_armed in our wake block, does not stop an honest peer's message from
 * making ferry_socket_fd readable: at once in the first case, within the
 * watchdog's second in the other. */
static void test_fd_not_silenced(void **state)
{
    (void)state;
    struct rig r;
    rig_open(&r, "silence", 1 << 16);
    ferry_socket *honest;
    assert_int_equal(ferry_socket_open(&honest, FERRY_PUSH), 0);
    assert_int_equal(ferry_dial(honest, r.url), 0);
    int fd;
    assert_int_equal(ferry_socket_fd(r.pull, &fd), 0);
    char buf[8];
    size_t n;
    assert_int_equal(ferry_recv(r.pull, buf, sizeof buf, &n, FERRY_DONTWAIT), FERRY_EAGAIN);

    struct sockaddr unspec = {.sa_family = AF_UNSPEC};
    assert_int_equal(connect(r.sp->peer_efd, &unspec, sizeof unspec), 0);
    assert_int_equal(ferry_send(honest, "a", 1, 0), 0);
    assert_int_equal(readable_within(fd, 2000), 1);
    assert_int_equal(ferry_recv(r.pull, buf, sizeof buf, &n, FERRY_DONTWAIT), 0);
    assert_int_equal(ferry_recv(r.pull, buf, sizeof buf, &n, FERRY_DONTWAIT), FERRY_EAGAIN);

    atomic_store(&r.sp->peer_wake->fd_armed, 0);
    uint64_t t0 = t_now_ms();
    assert_int_equal(ferry_send(honest, "b", 1, 0), 0);
    assert_int_equal(readable_within(fd, 3000), 1);
    assert_true(t_now_ms() - t0 < 2500); /* the watchdog runs every second */
    assert_int_equal(ferry_recv(r.pull, buf, sizeof buf, &n, FERRY_DONTWAIT), 0);
    assert_int_equal(buf[0], 'b');
    ferry_close(honest);
    rig_close(&r);
}

/* An old ferry's listener: a version-2 WELCOME to the next dialer. */
static void *old_listener(void *arg)
{
    int lfd = *(int *)arg;
    struct shm_ctl c;
    int conn = accept(lfd, NULL, NULL);
    lying_ctl(&c, SHM_OP_WELCOME);
    c.version = SHM_CTL_VERSION - 1;
    c.type = FERRY_REP;
    if (raw_shm_send(conn, &c, NULL, 0) != (ssize_t)sizeof c)
        fail_msg("raw send");
    char b[16];
    struct pollfd p = {.fd = conn, .events = POLLIN};
    poll(&p, 1, 5000); /* the dialer hangs up */
    ssize_t r = recv(conn, b, sizeof b, 0);
    (void)r;
    close(conn);
    return NULL;
}

/* 14. Another release's handshake: the previous version (3) has no
 * packed records, so versions do not mix. An old listener's WELCOME makes
 * our dial fail with FERRY_EVERSION naming both versions; an old dialer's
 * HELLO gets a REFUSE saying so, and the listener records why. */
static void test_handshake_version_refused(void **state)
{
    (void)state;
    char n[64], u[96];
    t_name(n, sizeof n, "vers");
    snprintf(u, sizeof u, "shm://%s", n);
    int lfd = raw_shm_listen(n);
    assert_true(lfd >= 0);
    ferry_socket *req;
    assert_int_equal(ferry_socket_open(&req, FERRY_REQ), 0);
    pthread_t thr;
    assert_int_equal(pthread_create(&thr, NULL, old_listener, &lfd), 0);
    assert_int_equal(ferry_dial(req, u), FERRY_EVERSION);
    char old_v[32], new_v[32];
    snprintf(old_v, sizeof old_v, "version %d", SHM_CTL_VERSION - 1);
    snprintf(new_v, sizeof new_v, "version %d", SHM_CTL_VERSION);
    assert_non_null(strstr(ferry_errdetail(), old_v));
    assert_non_null(strstr(ferry_errdetail(), new_v));
    pthread_join(thr, NULL);
    close(lfd);
    ferry_close(req);

    /* an old dialer against a new listener */
    ferry_socket *rep;
    assert_int_equal(ferry_socket_open(&rep, FERRY_REP), 0);
    assert_int_equal(ferry_listen(rep, u), 0);
    int fd = raw_shm_connect(n);
    assert_true(fd >= 0);
    struct shm_ctl c;
    assert_int_equal(raw_shm_read(fd, &c), (ssize_t)sizeof c);
    assert_int_equal(c.op, SHM_OP_WELCOME);
    lying_ctl(&c, SHM_OP_HELLO);
    c.version = SHM_CTL_VERSION - 1;
    c.type = FERRY_REQ;
    assert_int_equal(raw_shm_send(fd, &c, NULL, 0), (ssize_t)sizeof c);
    assert_int_equal(raw_shm_read(fd, &c), (ssize_t)sizeof c);
    assert_int_equal(c.op, SHM_OP_REFUSE);
    assert_int_equal(c.err, FERRY_EVERSION);
    assert_non_null(strstr(c.text, old_v));
    char why[200];
    assert_int_equal(ferry_socket_drop_reason(rep, why, sizeof why), 0);
    assert_non_null(strstr(why, old_v));
    close(fd);
    ferry_close(rep);
}

/* --- 13: the word a busy-polling reader watches --------------------------- */

struct flipper {
    _Atomic uint64_t *word; /* the next record's header in the evil ring */
    uint64_t wrong;         /* its tag's complement, in the high half */
    atomic_int stop;
    atomic_long flips;
};

/* Rewrites the watched word as fast as it can, never with the right tag:
 * each change wakes the spinner, which must find no record there. */
static void *flip_loop(void *arg)
{
    struct flipper *f = arg;
    for (uint64_t v = 1; !atomic_load(&f->stop); v++) {
        atomic_store_explicit(f->word, f->wrong | (v * 0x9e3779b97f4a7c15u >> 32),
                              memory_order_release);
        atomic_fetch_add(&f->flips, 1);
    }
    return NULL;
}

/* 13. A peer that keeps rewriting the header word a busy-polling reader
 * watches in its ring (socket.c, spin: a change means "look") gets nothing
 * through and keeps nobody waiting: an honest peer's 2,000 messages all
 * arrive, in order, and the evil connection delivers none. */
static void test_watched_word_flipped(void **state)
{
    (void)state;
    struct rig r;
    rig_open(&r, "flip", 1 << 16);
    assert_int_equal(ferry_setopt_int(r.pull, FERRY_OPT_SPIN, 200000), 0);
    assert_int_equal(ferry_setopt_int(r.pull, FERRY_OPT_RCVTIMEO, 10000), 0);
    ferry_socket *good;
    assert_int_equal(ferry_socket_open(&good, FERRY_PUSH), 0);
    assert_int_equal(ferry_dial(good, r.url), 0);
    assert_int_equal(ferry_wait_peers(r.pull, 2, 10000), 0);
    uint64_t pos = r.sp->w.tail; /* the evil side sends nothing: it stays */
    uint32_t tag = (uint32_t)(pos >> 3) ^ FY_RING_TAG_SALT;
    struct flipper f = {.word = (_Atomic uint64_t *)(void *)(r.sp->w.data + pos % r.sp->w.cap),
                        .wrong = (uint64_t)(~tag) << 32};
    pthread_t thr;
    assert_int_equal(pthread_create(&thr, NULL, flip_loop, &f), 0);
    while (atomic_load(&f.flips) == 0) /* flipping before the first message */
        sched_yield();
    for (uint32_t i = 0; i < 2000; i++) {
        uint32_t got = ~i;
        size_t n;
        assert_int_equal(ferry_send(good, &i, sizeof i, 0), 0);
        assert_int_equal(ferry_recv(r.pull, &got, sizeof got, &n, 0), 0);
        assert_int_equal(n, sizeof got);
        assert_int_equal(got, i);
    }
    atomic_store(&f.stop, 1);
    pthread_join(thr, NULL);
    uint32_t extra;
    size_t n;
    assert_int_equal(ferry_recv(r.pull, &extra, sizeof extra, &n, FERRY_DONTWAIT), FERRY_EAGAIN);
    ferry_close(good);
    rig_close(&r);
}

/* 14. A subscriber that writes garbage into its ring toward a PUB, behind
 * a header word whose tag never matches (so the publisher's one-load look
 * before each send, shm_readable, sees "nothing"): the look's periodic
 * full receive checks the ring against its tail, finds the garbage and
 * drops that subscriber, counted, within a few thousand sends, while an
 * honest subscriber gets every message. */
static void test_pub_hidden_garbage(void **state)
{
    (void)state;
    char url[96];
    t_url(url, sizeof url, "pubgarbage");
    ferry_socket *pub, *evil, *good;
    assert_int_equal(ferry_socket_open(&pub, FERRY_PUB), 0);
    assert_int_equal(ferry_socket_open(&evil, FERRY_SUB), 0);
    assert_int_equal(ferry_socket_open(&good, FERRY_SUB), 0);
    assert_int_equal(ferry_setopt(evil, FERRY_OPT_SUBSCRIBE, "", 0), 0);
    assert_int_equal(ferry_setopt(good, FERRY_OPT_SUBSCRIBE, "", 0), 0);
    assert_int_equal(ferry_setopt_int(good, FERRY_OPT_RCVHWM, 0), 0);
    assert_int_equal(ferry_setopt_int(good, FERRY_OPT_RCVTIMEO, 10000), 0);
    assert_int_equal(ferry_listen(pub, url), 0);
    assert_int_equal(ferry_dial(evil, url), 0);
    assert_int_equal(ferry_dial(good, url), 0);
    assert_int_equal(ferry_wait_peers(pub, 2, 10000), 0);
    pthread_mutex_lock(&evil->mtx);
    assert_int_equal(evil->npipes, 1);
    struct shm_pipe *sp = (struct shm_pipe *)evil->pipes[0];
    uint64_t pos = sp->w.tail;
    uint32_t tag = (uint32_t)(pos >> 3) ^ FY_RING_TAG_SALT;
    atomic_store_explicit((_Atomic uint64_t *)(void *)(sp->w.data + pos % sp->w.cap),
                          ((uint64_t)(~tag) << 32) | 8u, memory_order_release);
    atomic_store_explicit(&sp->w.sh->tail, pos + 16, memory_order_release);
    pthread_mutex_unlock(&evil->mtx);
    int64_t before = errors_of(pub);
    uint32_t i = 0;
    for (; i < 5000 && errors_of(pub) == before; i++) {
        uint32_t got = ~i;
        size_t n;
        assert_int_equal(ferry_send(pub, &i, sizeof i, 0), 0);
        assert_int_equal(ferry_recv(good, &got, sizeof got, &n, 0), 0);
        assert_int_equal(got, i);
    }
    assert_true(errors_of(pub) > before); /* found, and the connection dropped */
    assert_int_equal(ferry_wait_peers(pub, 1, 10000), 0);
    for (uint32_t k = i; k < i + 100; k++) { /* the honest one is still served */
        uint32_t got = ~k;
        size_t n;
        assert_int_equal(ferry_send(pub, &k, sizeof k, 0), 0);
        assert_int_equal(ferry_recv(good, &got, sizeof got, &n, 0), 0);
        assert_int_equal(got, k);
    }
    ferry_close(good);
    ferry_close(evil);
    ferry_close(pub);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_part_limit),
        cmocka_unit_test(test_empty_cont_refused),
        cmocka_unit_test(test_send_part_limit),
        cmocka_unit_test(test_pack_hostile),
        cmocka_unit_test(test_identity_from_kernel),
        cmocka_unit_test(test_command_flood_timeout),
        cmocka_unit_test(test_fd_not_silenced),
        cmocka_unit_test(test_handshake_version_refused),
        cmocka_unit_test(test_watched_word_flipped),
        cmocka_unit_test(test_pub_hidden_garbage),
    };
    if (getenv("TEST_FILTER"))
        cmocka_set_test_filter(getenv("TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
