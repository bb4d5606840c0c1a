/*
 * test_router_load.c - a ROUTER serving many DEALER processes: every reply
 * reaches the dealer that asked, none is lost or duplicated, and dealers
 * killed with SIGKILL mid-stream cost the others nothing.
 *
 * 100 dealer processes send 10,000 requests each (a window of 32 in
 * flight) to one ROUTER that echoes them back, over shm:// and over
 * tcp://; 20 of them (which never finish) are killed once they are well
 * under way. Each
 * request carries its dealer's number and a sequence number; a dealer
 * checks every reply is its own and each sequence number comes back
 * exactly once. Under the sanitizers (several times slower) each dealer
 * sends 1,000.
 */
#include "common.h"

#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <sys/mman.h>

#define DEALERS 100
#define VICTIMS 20
#define WINDOW 32
#define REQUESTS (T_SANITIZED ? 1000 : 10000)

struct req {
    uint32_t dealer;
    uint32_t seq;
};

/* Shared with the children (MAP_SHARED before fork): the URL to dial, and
 * the replies each dealer has had, so the parent knows when a victim is
 * mid-stream. */
struct shared {
    char url[128];
    _Atomic uint32_t progress[DEALERS];
};
static struct shared *sh;

struct router_run {
    ferry_socket *r;
    _Atomic int stop;
    uint64_t served;
};

/* Echoes [id][request] back until told to stop. */
static void *router_thread(void *arg)
{
    struct router_run *rr = arg;
    unsigned char id[256], body[64];
    while (!atomic_load(&rr->stop)) {
        size_t idl = 0, n = 0;
        int rc = ferry_recv(rr->r, id, sizeof id, &idl, 0);
        if (rc == FERRY_ETIMEDOUT || rc == FERRY_EAGAIN)
            continue;
        if (rc != 0)
            break;
        int64_t more = 0;
        ferry_getopt_int(rr->r, FERRY_OPT_RCVMORE, &more);
        if (!more)
            continue;
        if (ferry_recv(rr->r, body, sizeof body, &n, 0) != 0)
            break;
        /* to a killed dealer: dropped and counted, never an error */
        if (ferry_send(rr->r, id, idl, FERRY_MORE) == 0 && ferry_send(rr->r, body, n, 0) == 0)
            rr->served++;
    }
    return NULL;
}

/* A dealer: WINDOW requests in flight, every reply checked. Exit codes:
 * 0 all REQUESTS answered exactly once; 2 a foreign reply; 3 a
 * duplicate; 4 a timeout; 1 set-up. */
static void dealer_main(struct t_pipe *go, uint32_t me)
{
    t_pipe_recv(go); /* the ROUTER listens, its URL is in sh->url */
    const char *url = sh->url;
    ferry_socket *d;
    CHILD_CHECK(ferry_socket_open(&d, FERRY_DEALER) == 0, 1);
    ferry_setopt_int(d, FERRY_OPT_RCVTIMEO, 20000);
    ferry_setopt_int(d, FERRY_OPT_SNDTIMEO, 20000);
    ferry_setopt_int(d, FERRY_OPT_RING_SIZE, 64 << 10);
    CHILD_CHECK(ferry_dial(d, url) == 0, 1);
    unsigned char *seen = calloc(REQUESTS, 1);
    CHILD_CHECK(seen != NULL, 1);
    /* a victim never finishes: it is always mid-stream when it is killed */
    uint32_t total = me < VICTIMS ? UINT32_MAX : REQUESTS;
    uint32_t sent = 0, got = 0;
    while (got < total) {
        while (sent < total && sent - got < WINDOW) {
            struct req q = {me, sent % REQUESTS};
            CHILD_CHECK(ferry_send(d, &q, sizeof q, 0) == 0, 1);
            sent++;
        }
        struct req a;
        size_t n = 0;
        int rc = ferry_recv(d, &a, sizeof a, &n, 0);
        if (rc != 0)
            _exit(4);
        if (n != sizeof a || a.dealer != me || a.seq >= REQUESTS)
            _exit(2);
        if (got < REQUESTS && seen[a.seq]++)
            _exit(3);
        got++;
        atomic_store_explicit(&sh->progress[me], got, memory_order_relaxed);
    }
    ferry_close(d);
    _exit(0);
}

static void run_load(const char *url)
{
    pid_t pid[DEALERS];
    for (uint32_t i = 0; i < DEALERS; i++)
        atomic_store(&sh->progress[i], 0);
    /* the dealers first, waiting to be told where to dial: a process
     * forks before it opens sockets */
    struct t_pipe go;
    t_pipe_open(&go);
    for (uint32_t i = 0; i < DEALERS; i++) {
        pid[i] = fork();
        assert_true(pid[i] >= 0);
        if (pid[i] == 0) {
            t_die_with_parent();
            dealer_main(&go, i);
        }
    }
    struct router_run rr = {.stop = 0};
    assert_int_equal(ferry_socket_open(&rr.r, FERRY_ROUTER), 0);
    ferry_setopt_int(rr.r, FERRY_OPT_RCVTIMEO, 100);
    ferry_setopt_int(rr.r, FERRY_OPT_RING_SIZE, 64 << 10);
    ferry_setopt_int(rr.r, FERRY_OPT_SNDHWM, 0); /* replies to a slow dealer wait, never drop */
    assert_int_equal(ferry_listen(rr.r, url), 0);
    if (strncmp(url, "tcp:", 4) == 0) /* the port the kernel chose */
        assert_int_equal(ferry_socket_addr(rr.r, sh->url, sizeof sh->url), 0);
    else
        snprintf(sh->url, sizeof sh->url, "%s", url);
    for (int i = 0; i < DEALERS; i++)
        t_pipe_send(&go, 'g');
    pthread_t thr;
    assert_int_equal(pthread_create(&thr, NULL, router_thread, &rr), 0);

    /* the victims: the first VICTIMS dealers, each killed once a tenth
     * of its replies are in */
    for (int k = 0; k < VICTIMS; k++) {
        uint64_t deadline = t_now_ms() + 60000;
        while (atomic_load(&sh->progress[k]) < REQUESTS / 10 && t_now_ms() < deadline)
            usleep(1000);
        assert_true(atomic_load(&sh->progress[k]) >= REQUESTS / 10);
        kill(pid[k], SIGKILL);
    }
    for (int i = 0; i < DEALERS; i++) {
        int st = t_wait(pid[i]);
        if (i < VICTIMS)
            assert_int_equal(st, 128 + SIGKILL);
        else if (st != 0)
            fail_msg("dealer %d exited %d (2 foreign reply, 3 duplicate, 4 timeout)", i, st);
    }
    atomic_store(&rr.stop, 1);
    pthread_join(thr, NULL);
    int64_t dropped = 0, errors = 0;
    ferry_getopt_int(rr.r, FERRY_OPT_DROPPED, &dropped);
    ferry_getopt_int(rr.r, FERRY_OPT_ERRORS, &errors);
    assert_int_equal(errors, 0);
    uint64_t survivors = (uint64_t)(DEALERS - VICTIMS) * REQUESTS;
    t_pipe_close(&go);
    fprintf(stderr,
            "note: %s: %llu replies served (%llu to the survivors), %lld dropped for the dead\n",
            url, (unsigned long long)rr.served, (unsigned long long)survivors, (long long)dropped);
    assert_true(rr.served >= survivors);
    ferry_close(rr.r);
}

static void test_router_load_shm(void **state)
{
    (void)state;
    char url[96];
    t_url(url, sizeof url, "load");
    run_load(url);
}

static void test_router_load_tcp(void **state)
{
    (void)state;
    run_load("tcp://127.0.0.1:0");
}

int main(void)
{
    sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_router_load_shm),
        cmocka_unit_test(test_router_load_tcp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
