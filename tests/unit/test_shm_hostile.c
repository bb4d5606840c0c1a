/* test_shm_hostile.c - a hostile local peer in this process: it writes raw
 * records into the ring it shares with us and tampers with what the
 * handshake gave it. Each attack must cost us a bounded amount and leave
 * our honest peers served. */
#include "../common.h"

#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>

#include "transport/shm/shm_int.h"

/* A PULL listening, and a PUSH dialed to it whose pipe we drive by hand. */
struct rig {
    ferry_socket *pull, *evil;
    struct shm_pipe *sp; /* the evil dialer's side of the connection */
    char url[96];
};

static void rig_open(struct rig *r, const char *tag, int ring)
{
    t_url(r->url, sizeof r->url, tag);
    assert_int_equal(ferry_socket_open(&r->pull, FERRY_PULL), 0);
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
    assert_int_equal(ferry_setopt_int(r.pull, FERRY_OPT_RCVTIMEO, 2000), 0);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_part_limit),
        cmocka_unit_test(test_empty_cont_refused),
        cmocka_unit_test(test_send_part_limit),
    };
    if (getenv("TEST_FILTER"))
        cmocka_set_test_filter(getenv("TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
