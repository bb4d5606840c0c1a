/* hello.c - the README example: a counter in shared memory that any number
 * of processes bump under a robust mutex. Run it twice: it counts on. */
#include <ferry.h>
#include <stdio.h>

struct counter {
    ferry_mutex lock;
    long runs;
};

static int init(void *mem, size_t size, void *arg)
{
    (void)size, (void)arg;
    return ferry_mutex_init(&((struct counter *)mem)->lock); /* once, by the creator */
}

int main(int argc, char **argv)
{
    const char *name = argc > 1 ? argv[1] : "hello.counter";
    ferry_shm *shm;
    ferry_shm_opts opts = {.init = init};
    if (ferry_shm_open(&shm, name, sizeof(struct counter), FERRY_CREATE, &opts) < 0) {
        fprintf(stderr, "hello: %s\n", ferry_errdetail());
        return 1;
    }
    struct counter *c = ferry_shm_addr(shm);
    if (ferry_mutex_lock(&c->lock) == FERRY_EOWNERDEAD) /* a holder died: repair here */
        ferry_mutex_consistent(&c->lock);
    long runs = ++c->runs;
    ferry_mutex_unlock(&c->lock);
    printf("%s: run %ld\n", name, runs);
    ferry_shm_close(shm);
    return 0;
}
