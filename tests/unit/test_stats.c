/*
 * test_stats.c - the live counters: what ferry_socket_stats and the
 * counters file say after real traffic on every transport (messages and
 * bytes each way, a multipart message counted once, a peer that left kept
 * in the totals, a PUB's drops per subscriber), that ferry_stats_list sees
 * the same from outside, that FERRY_STATS=0 writes no file, and that
 * hostile files in /dev/shm (garbage, wrong size, a FIFO, a symlink, a
 * forged header) are skipped without harm.
 */
#include "../common.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>

static const char *const schemes[] = {"shm", "ipc", "tcp"};

struct find {
    const char *url;
    int seen_listen, seen_dial;
    ferry_sock_info listen, dial;
    ferry_peer_info listen_peer, dial_peer;
};

static int find_one(const ferry_sock_info *s, void *arg)
{
    struct find *f = arg;
    char want[200];
    snprintf(want, sizeof want, "listen %s", f->url);
    if (strcmp(s->endpoints, want) == 0) {
        f->seen_listen++;
        f->listen = *s;
        if (s->npeers)
            f->listen_peer = s->peers[0];
    }
    snprintf(want, sizeof want, "dial %s", f->url);
    if (strcmp(s->endpoints, want) == 0) {
        f->seen_dial++;
        f->dial = *s;
        if (s->npeers)
            f->dial_peer = s->peers[0];
    }
    return 0;
}

static void wait_peers(ferry_socket *s, int64_t want)
{
    int64_t n = -1;
    uint64_t until = t_now_ms() + 10000;
    while (ferry_getopt_int(s, FERRY_OPT_PEERS, &n) == 0 && n != want) {
        assert_true(t_now_ms() < until);
        usleep(1000); /* polls a state nobody announces to this caller */
    }
}

/* Five single-part messages and one of three parts, PUSH to PULL: counted
 * as six messages with all their bytes, on both sides, on each transport;
 * the listing from outside says the same; a peer that leaves stays in the
 * totals. */
static void test_counts(void **state)
{
    (void)state;
    for (size_t k = 0; k < 3; k++) {
        char url[128];
        t_url_for(url, sizeof url, schemes[k], "stats");
        ferry_socket *pull = t_open_timed(FERRY_PULL), *push = t_open_timed(FERRY_PUSH);
        assert_int_equal(ferry_listen(pull, url), 0);
        if (strcmp(schemes[k], "tcp") == 0)
            assert_int_equal(ferry_socket_addr(pull, url, sizeof url), 0);
        assert_int_equal(ferry_dial(push, url), 0);
        assert_int_equal(ferry_wait_peers(push, 1, 10000), 0);
        uint64_t bytes = 0;
        char buf[64];
        memset(buf, 'x', sizeof buf);
        for (size_t i = 1; i <= 5; i++) {
            assert_int_equal(ferry_send(push, buf, i * 10, 0), 0);
            bytes += i * 10;
        }
        assert_int_equal(ferry_send(push, "ab", 2, FERRY_MORE), 0);
        assert_int_equal(ferry_send(push, "", 0, FERRY_MORE), 0);
        assert_int_equal(ferry_send(push, "cde", 3, 0), 0);
        bytes += 5;
        size_t n;
        int64_t more = 1;
        for (int i = 0; i < 6; i++)
            do
                assert_int_equal(ferry_recv(pull, buf, sizeof buf, &n, 0), 0);
            while (ferry_getopt_int(pull, FERRY_OPT_RCVMORE, &more) == 0 && more);
        ferry_stats in, out;
        assert_int_equal(ferry_socket_stats(pull, &in), 0);
        assert_int_equal(ferry_socket_stats(push, &out), 0);
        assert_int_equal(out.msgs_out, 6);
        assert_int_equal(out.bytes_out, bytes);
        assert_int_equal(out.msgs_in, 0);
        assert_int_equal(out.peers, 1);
        assert_int_equal(in.msgs_in, 6);
        assert_int_equal(in.bytes_in, bytes);
        assert_int_equal(in.peers, 1);
        assert_int_equal(in.dropped + in.bad_input + in.refused, 0);

        struct find f = {.url = url};
        assert_int_equal(ferry_stats_list(getpid(), find_one, &f), 0);
        assert_int_equal(f.seen_listen, 1);
        assert_int_equal(f.seen_dial, 1);
        assert_int_equal(f.listen.type, FERRY_PULL);
        assert_int_equal(f.dial.type, FERRY_PUSH);
        assert_int_equal(f.listen.pid, getpid());
        assert_int_equal(f.listen.stats.msgs_in, 6);
        assert_int_equal(f.listen.stats.bytes_in, bytes);
        assert_int_equal(f.dial.stats.msgs_out, 6);
        assert_int_equal(f.listen.npeers, 1);
        assert_string_equal(f.listen_peer.transport, schemes[k]);
        assert_int_equal(f.listen_peer.msgs_in, 6);
        assert_true(f.listen_peer.last_active > 0);
        if (strcmp(schemes[k], "tcp") == 0)
            assert_memory_equal(f.dial_peer.addr, url, strlen(url)); /* the listener's address */
        else
            assert_int_equal(f.listen_peer.pid, getpid()); /* from the kernel */

        ferry_close(push); /* the peer leaves: its counts stay in the totals */
        wait_peers(pull, 0);
        assert_int_equal(ferry_socket_stats(pull, &in), 0);
        assert_int_equal(in.msgs_in, 6);
        assert_int_equal(in.bytes_in, bytes);
        assert_int_equal(in.peers, 0);
        ferry_close(pull);
        f = (struct find){.url = url};
        assert_int_equal(ferry_stats_list(getpid(), find_one, &f), 0);
        assert_int_equal(f.seen_listen + f.seen_dial, 0); /* closed: not listed */
    }
}

/* A PUB whose subscriber does not read drops at its HWM: counted on the
 * socket and on that peer. */
static void test_pub_drops(void **state)
{
    (void)state;
    char url[128];
    t_url(url, sizeof url, "stats-pub");
    ferry_socket *pub = t_open_timed(FERRY_PUB), *sub = t_open_timed(FERRY_SUB);
    ferry_setopt_int(pub, FERRY_OPT_SNDHWM, 4);
    assert_int_equal(ferry_listen(pub, url), 0);
    assert_int_equal(ferry_setopt(sub, FERRY_OPT_SUBSCRIBE, "", 0), 0);
    assert_int_equal(ferry_dial(sub, url), 0);
    assert_int_equal(ferry_wait_peers(pub, 1, 10000), 0);
    for (int i = 0; i < 10; i++)
        assert_int_equal(ferry_send(pub, "m", 1, 0), 0);
    ferry_stats st;
    assert_int_equal(ferry_socket_stats(pub, &st), 0);
    assert_int_equal(st.msgs_out, 4);
    assert_int_equal(st.dropped, 6);
    assert_int_equal(st.dropped_no_route, 0); /* all six found their peer full */
    int64_t dropped = -1;
    assert_int_equal(ferry_getopt_int(pub, FERRY_OPT_DROPPED, &dropped), 0);
    assert_int_equal(dropped, 6);
    struct find f = {.url = url};
    assert_int_equal(ferry_stats_list(getpid(), find_one, &f), 0);
    assert_int_equal(f.seen_listen, 1);
    assert_int_equal(f.listen.stats.dropped, 6);
    assert_int_equal(f.listen_peer.dropped, 6);
    assert_int_equal(f.listen_peer.msgs_out, 4);
    /* its queue, sampled when it was found full: four waiting, in the ring */
    assert_int_equal(f.listen_peer.queued_out, 4);
    assert_int_equal(f.listen_peer.queued_out_max, 4);
    assert_true(f.listen_peer.ring_size > 0);
    assert_true(f.listen_peer.ring_fill >= 4 && f.listen_peer.ring_fill <= f.listen_peer.ring_size);
    ferry_close(sub);
    ferry_close(pub);
}

static int count_all(const ferry_sock_info *s, void *arg)
{
    (void)s;
    ++*(int *)arg;
    return 0;
}

/* A ROUTER's message to a routing id nobody has: dropped, with no route. */
static void test_router_no_route(void **state)
{
    (void)state;
    ferry_socket *r = t_open_timed(FERRY_ROUTER);
    assert_int_equal(ferry_send(r, "nobody", 6, FERRY_MORE), 0);
    assert_int_equal(ferry_send(r, "x", 1, 0), 0); /* dropped, as libzmq's ROUTER does */
    ferry_stats st;
    assert_int_equal(ferry_socket_stats(r, &st), 0);
    assert_int_equal(st.dropped, 1);
    assert_int_equal(st.dropped_no_route, 1);
    assert_int_equal(st.msgs_out, 0);
    ferry_close(r);
}

/* What a hostile file lists must be clean text: no control byte but the
 * endpoints' newlines, no DEL, valid UTF-8; peers within their socket. */
static int clean(const char *s, int nl)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if ((*p < 0x20 && !(nl && *p == '\n')) || *p == 0x7f || *p >= 0xf5 || *p == 0xc0 ||
            *p == 0xc1 || (p[0] == 0xc2 && p[1] >= 0x80 && p[1] < 0xa0) || /* C1: CSI, OSC */
            (p[0] == 0xed && p[1] >= 0xa0))                                /* surrogates */
            return 0;
    return 1;
}

static int check_clean(const ferry_sock_info *s, void *arg)
{
    ++*(int *)arg;
    assert_true(clean(s->command, 0));
    assert_true(clean(s->endpoints, 1));
    assert_true(strnlen(s->endpoints, sizeof s->endpoints) < sizeof s->endpoints);
    assert_true(s->npeers <= 1024);
    for (size_t i = 0; i < s->npeers; i++) {
        assert_true(clean(s->peers[i].addr, 0));
        assert_true(clean(s->peers[i].transport, 0));
    }
    return 0;
}

/* FERRY_STATS=0: counted in memory, no file, not listed. */
static void test_stats_off(void **state)
{
    (void)state;
    struct t_pipe done;
    t_pipe_open(&done);
    pid_t pid = fork();
    if (pid == 0) {
        t_die_with_parent();
        setenv("FERRY_STATS", "0", 1);
        ferry_socket *a, *b;
        char url[128];
        t_url(url, sizeof url, "stats-off");
        CHILD_CHECK(ferry_socket_open(&a, FERRY_PAIR) == 0, 1);
        CHILD_CHECK(ferry_socket_open(&b, FERRY_PAIR) == 0, 2);
        CHILD_CHECK(ferry_listen(a, url) == 0 && ferry_dial(b, url) == 0, 3);
        CHILD_CHECK(ferry_send(b, "hello", 5, 0) == 0, 4);
        char buf[8];
        size_t n;
        CHILD_CHECK(ferry_recv(a, buf, sizeof buf, &n, 0) == 0, 5);
        ferry_stats st;
        CHILD_CHECK(ferry_socket_stats(a, &st) == 0 && st.msgs_in == 1 && st.bytes_in == 5, 6);
        t_pipe_send(&done, 'k');
        pause(); /* killed by the parent */
        _exit(0);
    }
    assert_int_equal(t_pipe_recv(&done), 'k');
    char path[64];
    snprintf(path, sizeof path, "/dev/shm/ferry-stat.%d", (int)pid);
    assert_int_not_equal(access(path, F_OK), 0);
    int n = 0;
    assert_int_equal(ferry_stats_list(pid, count_all, &n), 0);
    assert_int_equal(n, 0);
    kill(pid, SIGKILL);
    assert_int_equal(t_wait(pid), 128 + SIGKILL);
    t_pipe_close(&done);
}

/* Writes a file of len bytes at path, its start copied from head. */
static void put_file(const char *path, const void *head, size_t hlen, size_t len)
{
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)len), 0);
    if (hlen)
        assert_int_equal(pwrite(fd, head, hlen, 0), (ssize_t)hlen);
    close(fd);
}

/* Field 22 of /proc/PID/stat: the process's start time. */
static uint64_t start_time(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    assert_non_null(p);
    p += 2;
    for (int field = 3; field < 22 && p; field++)
        if ((p = strchr(p, ' ')) != NULL)
            p++;
    assert_non_null(p);
    return strtoull(p, NULL, 10);
}

/* Writes path as an owner would: under another name, locked, then linked,
 * so a sweep in a test process running beside us never finds it unheld.
 * The descriptor that holds the lock. */
static int put_held(const char *path, const void *data, size_t len)
{
    char tmp[96];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    put_file(tmp, data, len, len);
    int fd = open(tmp, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(flock(fd, LOCK_SH), 0);
    assert_int_equal(link(tmp, path), 0);
    unlink(tmp);
    return fd;
}

/* Hostile files named for a live process (a child that opens no socket):
 * each is skipped, nothing is listed, nothing crashes or waits; a forged
 * file that passes the header check lists only well-formed slots. */
static void test_hostile_files(void **state)
{
    (void)state;
    struct t_pipe go;
    t_pipe_open(&go);
    pid_t pid = fork();
    if (pid == 0) {
        t_die_with_parent();
        t_pipe_recv(&go);
        _exit(0);
    }
    char path[64], own[64];
    snprintf(path, sizeof path, "/dev/shm/ferry-stat.%d", (int)pid);
    snprintf(own, sizeof own, "/dev/shm/ferry-stat.%d", (int)getpid());
    ferry_socket *mine = t_open_timed(FERRY_PAIR); /* so our own file exists */
    assert_int_equal(access(own, F_OK), 0);
    int n = 0;

    put_file(path, "garbage", 7, 1 << 20); /* wrong size, no magic */
    assert_int_equal(ferry_stats_list(pid, count_all, &n), 0);
    unlink(path);
    assert_int_equal(mkfifo(path, 0600), 0); /* opening must not wait for a writer */
    assert_int_equal(ferry_stats_list(pid, count_all, &n), 0);
    unlink(path);
    assert_int_equal(symlink(own, path), 0); /* not followed */
    assert_int_equal(ferry_stats_list(pid, count_all, &n), 0);
    unlink(path);
    assert_int_equal(n, 0);

    /* A copy of our own file renamed for the child: the header names
     * another pid, so it is refused whole. */
    int fd = open(own, O_RDONLY);
    assert_true(fd >= 0);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    void *img = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    assert_true(img != MAP_FAILED);
    close(fd);
    put_file(path, img, (size_t)st.st_size, (size_t)st.st_size);
    assert_int_equal(ferry_stats_list(pid, count_all, &n), 0);
    assert_int_equal(n, 0);

    /* The same with the pid forged to the child's and every slot scribbled:
     * live, a peer pointing at a socket slot out of range, an odd seqlock,
     * strings without a terminator. Whatever is listed is well-formed. */
    unsigned char *w = malloc((size_t)st.st_size), *w2 = malloc((size_t)st.st_size);
    assert_non_null(w);
    assert_non_null(w2);
    memcpy(w, img, (size_t)st.st_size);
    munmap(img, (size_t)st.st_size);
    int32_t fake = (int32_t)pid;
    memcpy(w + 32, &fake, sizeof fake); /* struct fy_stat_hdr.pid (src/core/stats.h) */
    uint64_t started = start_time(pid);
    assert_true(started != 0);
    memcpy(w + 40, &started, sizeof started); /* .start_time */
    for (size_t off = 4096; off + 4 <= (size_t)st.st_size; off += 64) {
        memset(w + off, 0x41, 64);
        uint32_t live = 1, seq = (off / 64) % 3 == 0 ? 1 : 2;
        memcpy(w + off, &seq, 4);
        memcpy(w + off + 4, &live, 4);
        if (off % 512 == 0 && off + 64 <= (size_t)st.st_size) /* text with escapes */
            memcpy(w + off + 16, "\x1b[31m\xff\xc0\x80ok\x7f\xc2\x9b\xed\xa0\x80", 16);
    }
    memcpy(w2, w, (size_t)st.st_size);
    put_file(path, w, (size_t)st.st_size, (size_t)st.st_size);
    free(w);
    n = 0;
    assert_int_equal(ferry_stats_list(pid, count_all, &n), 0);
    assert_int_equal(n, 0); /* nobody holds its lock: stale, and swept */
    assert_int_not_equal(access(path, F_OK), 0);
    /* held by a "live owner": read, and whatever it lists is clean */
    int hold = put_held(path, w2, (size_t)st.st_size);
    n = 0;
    assert_int_equal(ferry_stats_list(pid, check_clean, &n), 0);
    assert_true(n > 0 && n <= 256);
    close(hold);
    free(w2);
    t_pipe_send(&go, 'g');
    assert_int_equal(t_wait(pid), 0);
    t_pipe_close(&go);
    ferry_close(mine);
}

/* The plain name taken (by a file someone holds): the process counts in
 * ferry-stat.PID-1 instead, and is listed. */
static void test_name_taken(void **state)
{
    (void)state;
    struct t_pipe go, ready;
    t_pipe_open(&go);
    t_pipe_open(&ready);
    char url[128];
    t_url(url, sizeof url, "stats-taken");
    pid_t pid = fork();
    if (pid == 0) {
        t_die_with_parent();
        t_pipe_recv(&go);
        ferry_socket *s;
        CHILD_CHECK(ferry_socket_open(&s, FERRY_PULL) == 0, 1);
        CHILD_CHECK(ferry_listen(s, url) == 0, 2);
        t_pipe_send(&ready, 'r');
        t_pipe_recv(&go);
        _exit(0);
    }
    char path[64], second[64];
    snprintf(path, sizeof path, "/dev/shm/ferry-stat.%d", (int)pid);
    snprintf(second, sizeof second, "/dev/shm/ferry-stat.%d-1", (int)pid);
    int hold = put_held(path, "squat", 5);
    t_pipe_send(&go, 'g');
    assert_int_equal(t_pipe_recv(&ready), 'r');
    assert_int_equal(access(second, F_OK), 0);
    struct find f = {.url = url};
    assert_int_equal(ferry_stats_list(pid, find_one, &f), 0);
    assert_int_equal(f.seen_listen, 1);
    assert_int_equal(f.listen.pid, pid);
    t_pipe_send(&go, 'g');
    assert_int_equal(t_wait(pid), 0);
    int n = 0; /* _exit skips atexit: the file stays until a sweep finds it unheld */
    assert_int_equal(ferry_stats_list(pid, count_all, &n), 0);
    assert_int_equal(n, 0);
    assert_int_not_equal(access(second, F_OK), 0);
    assert_int_equal(access(path, F_OK), 0); /* still held: not swept */
    close(hold);
    unlink(path);
    t_pipe_close(&go);
    t_pipe_close(&ready);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counts),     cmocka_unit_test(test_pub_drops),
        cmocka_unit_test(test_stats_off),  cmocka_unit_test(test_hostile_files),
        cmocka_unit_test(test_name_taken), cmocka_unit_test(test_router_no_route),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
