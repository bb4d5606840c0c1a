/*
 * loop.c - the I/O threads (loop.h): epoll, a timer heap, a poke, tasks.
 *
 * One iteration of a thread, the only place that arms and sleeps:
 *   1. timers that are due, earliest first (each out of the heap while it
 *      runs, so it can re-arm itself);
 *   2. tasks other threads queued (fy_loop_run), then their waiters told;
 *   3. under the lock, note until when we sleep (sleep_until) so that a
 *      thread arming an earlier timer knows to poke; epoll_wait;
 *   4. the batch of fd events, in order; an fd deleted meanwhile on this
 *      thread has its remaining events in the batch forgotten.
 */
#include "loop.h"
#include "fy.h"

#include <assert.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define LOOP_MAX_THREADS 64
#define LOOP_BATCH 64
#define LOOP_TIMERS_PER_SOCKET 3 /* a socket's shm:// and tcp/ipc transports, its monitor */

struct loop_task {
    void (*fn)(void *);
    void *arg;
    int done;
    struct loop_task *next;
};

struct fy_loop {
    pthread_mutex_t lk; /* the heap, the tasks, sleep_until */
    pthread_cond_t task_done;
    int epfd;
    struct fy_io poke;
    pthread_t thr;
    int stop;
    pid_t pid; /* the process the thread runs in */
    struct fy_timer **heap;
    size_t nheap, cap_heap;
    uint64_t sleep_until; /* 0: awake (will look at the heap before sleeping) */
    struct loop_task *tasks, **tasks_tail;
    int running;              /* the thread has entered its loop */
    int holders;              /* sockets on this loop: the heap has room for their timers */
    int nwork;                /* offloaded work not yet done */
    struct fy_work *finished; /* offloaded work whose `done` is due */
    /* the batch being dispatched (loop thread only) */
    struct epoll_event batch[LOOP_BATCH];
    int bi, bn;
    unsigned char scratch[FY_LOOP_SCRATCH];
};

static struct {
    pthread_mutex_t lk;
    pthread_once_t once;
    struct fy_loop **loops;
    int n;
    int holders;
    unsigned next;
} g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_ONCE_INIT, NULL, 0, 0, 0};

static _Thread_local struct fy_loop *tl_loop;

/* --- the timer heap (lk held) ------------------------------------------------- */

static void heap_put(struct fy_loop *l, size_t i, struct fy_timer *t)
{
    l->heap[i] = t;
    t->slot = i + 1;
}

static void heap_up(struct fy_loop *l, size_t i)
{
    struct fy_timer *t = l->heap[i];
    while (i > 0 && l->heap[(i - 1) / 2]->due > t->due) {
        heap_put(l, i, l->heap[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    heap_put(l, i, t);
}

static void heap_down(struct fy_loop *l, size_t i)
{
    struct fy_timer *t = l->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= l->nheap)
            break;
        if (c + 1 < l->nheap && l->heap[c + 1]->due < l->heap[c]->due)
            c++;
        if (l->heap[c]->due >= t->due)
            break;
        heap_put(l, i, l->heap[c]);
        i = c;
    }
    heap_put(l, i, t);
}

static void heap_remove(struct fy_loop *l, struct fy_timer *t)
{
    size_t i = t->slot - 1;
    t->slot = 0;
    struct fy_timer *last = l->heap[--l->nheap];
    if (last == t)
        return;
    heap_put(l, i, last);
    heap_up(l, i);
    heap_down(l, last->slot - 1);
}

/* --- the poke ------------------------------------------------------------------ */

static void poke(struct fy_loop *l)
{
    uint64_t one = 1;
    ssize_t n = write(l->poke.fd, &one, sizeof one);
    FY_UNUSED(n);
}

static void on_poke(struct fy_io *io, uint32_t events)
{
    FY_UNUSED(events);
    uint64_t v;
    ssize_t n = read(io->fd, &v, sizeof v);
    FY_UNUSED(n);
}

/* --- fd watches ---------------------------------------------------------------- */

int fy_io_add(struct fy_loop *l, struct fy_io *io, int fd, fy_io_fn *fn, uint32_t events)
{
    io->fd = fd;
    io->fn = fn;
    io->loop = l;
    struct epoll_event ev = {.events = events, .data.ptr = io};
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) != 0)
        return -errno;
    io->added = 1;
    return 0;
}

void fy_io_mod(struct fy_io *io, uint32_t events)
{
    if (!io->added)
        return;
    struct epoll_event ev = {.events = events, .data.ptr = io};
    epoll_ctl(io->loop->epfd, EPOLL_CTL_MOD, io->fd, &ev);
}

void fy_io_del(struct fy_io *io)
{
    if (!io->added)
        return;
    struct fy_loop *l = io->loop;
    epoll_ctl(l->epfd, EPOLL_CTL_DEL, io->fd, NULL);
    io->added = 0;
    if (tl_loop == l)
        for (int i = l->bi + 1; i < l->bn; i++)
            if (l->batch[i].data.ptr == io)
                l->batch[i].data.ptr = NULL;
}

/* --- timers -------------------------------------------------------------------- */

void fy_timer_set(struct fy_loop *l, struct fy_timer *t, fy_timer_fn *fn, uint64_t due)
{
    pthread_mutex_lock(&l->lk);
    t->fn = fn;
    t->loop = l;
    int wake = 0;
    if (t->slot == 0) {
        assert(l->nheap < l->cap_heap); /* reserved in fy_loop_hold */
        t->due = due;
        l->heap[l->nheap++] = t;
        heap_up(l, l->nheap - 1);
        wake = 1;
    } else if (due < t->due) {
        t->due = due;
        heap_up(l, t->slot - 1);
        wake = 1;
    }
    if (wake && l->sleep_until != 0 && due < l->sleep_until && tl_loop != l) {
        l->sleep_until = 0; /* one poke is enough */
        poke(l);
    }
    pthread_mutex_unlock(&l->lk);
}

void fy_timer_stop(struct fy_timer *t)
{
    struct fy_loop *l = t->loop;
    if (l == NULL)
        return;
    pthread_mutex_lock(&l->lk);
    if (t->slot != 0)
        heap_remove(l, t);
    pthread_mutex_unlock(&l->lk);
}

/* --- tasks --------------------------------------------------------------------- */

void fy_loop_run(struct fy_loop *l, void (*fn)(void *), void *arg)
{
    if (l->pid != getpid())
        return; /* a forked child's inherited socket: no thread to ask */
    if (tl_loop == l) {
        fn(arg);
        return;
    }
    struct loop_task task = {.fn = fn, .arg = arg};
    pthread_mutex_lock(&l->lk);
    *l->tasks_tail = &task;
    l->tasks_tail = &task.next;
    poke(l);
    while (!task.done)
        pthread_cond_wait(&l->task_done, &l->lk);
    pthread_mutex_unlock(&l->lk);
}

static void run_finished(struct fy_loop *l)
{
    pthread_mutex_lock(&l->lk);
    struct fy_work *list = l->finished;
    l->finished = NULL;
    pthread_mutex_unlock(&l->lk);
    for (struct fy_work *w = list, *nx; w; w = nx) {
        nx = w->next; /* done may free w */
        w->done(w);
        pthread_mutex_lock(&l->lk);
        l->nwork--;
        pthread_mutex_unlock(&l->lk);
    }
}

static void run_tasks(struct fy_loop *l)
{
    run_finished(l);
    pthread_mutex_lock(&l->lk);
    struct loop_task *list = l->tasks;
    l->tasks = NULL;
    l->tasks_tail = &l->tasks;
    pthread_mutex_unlock(&l->lk);
    if (list == NULL)
        return;
    for (struct loop_task *t = list; t; t = t->next)
        t->fn(t->arg);
    pthread_mutex_lock(&l->lk);
    for (struct loop_task *t = list, *nx; t; t = nx) {
        nx = t->next; /* the waiter's stack: read before it may return */
        t->done = 1;
    }
    pthread_cond_broadcast(&l->task_done);
    pthread_mutex_unlock(&l->lk);
}

/* --- work off the loop --------------------------------------------------------- */

static void *work_thread(void *arg)
{
    struct fy_work *w = arg;
    struct fy_loop *l = w->loop;
    w->work(w);
    pthread_mutex_lock(&l->lk);
    w->next = l->finished;
    l->finished = w;
    poke(l);
    pthread_mutex_unlock(&l->lk);
    return NULL;
}

/* A detached thread for fn(arg). 0 or -errno. */
static int start_detached(void *(*fn)(void *), void *arg)
{
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    pthread_t t;
    int rc = pthread_create(&t, &a, fn, arg);
    pthread_attr_destroy(&a);
    return -rc;
}

int fy_loop_offload(struct fy_loop *l, struct fy_work *w, fy_work_fn *work, fy_work_fn *done)
{
    w->work = work;
    w->done = done;
    w->loop = l;
    pthread_mutex_lock(&l->lk);
    l->nwork++;
    pthread_mutex_unlock(&l->lk);
    int rc = start_detached(work_thread, w);
    if (rc != 0) {
        pthread_mutex_lock(&l->lk);
        l->nwork--;
        pthread_mutex_unlock(&l->lk);
    }
    return rc;
}

struct closing {
    int n;
    int fds[];
};

static void *close_thread(void *arg)
{
    struct closing *c = arg;
    for (int i = 0; i < c->n; i++)
        close(c->fds[i]);
    free(c);
    return NULL;
}

/* 1 if closing fd cannot call into a file system a peer may serve: a
 * memfd (F_GET_SEALS works on nothing else that could) or a socket. */
static int close_is_safe(int fd)
{
    int type;
    socklen_t len = sizeof type;
    return fcntl(fd, F_GET_SEALS) >= 0 || getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0;
}

void fy_close_foreign(const int *fds, int n)
{
    struct closing *c = NULL;
    for (int i = 0; i < n; i++) {
        if (fds[i] < 0)
            continue;
        if (close_is_safe(fds[i])) {
            close(fds[i]);
            continue;
        }
        if (c == NULL && (c = malloc(sizeof *c + (size_t)n * sizeof(int))) != NULL)
            c->n = 0;
        if (c != NULL)
            c->fds[c->n++] = fds[i];
        /* else: leak it rather than wait on a stranger's file system */
    }
    if (c != NULL && start_detached(close_thread, c) != 0)
        free(c); /* no thread: leak the fds, never block */
}

/* --- the thread ---------------------------------------------------------------- */

static void run_timers(struct fy_loop *l)
{
    uint64_t now = fy_now_mono_ns();
    pthread_mutex_lock(&l->lk);
    /* At most one pass over what is due now: a timer that re-arms itself
     * for "now" runs again at the next turn, after the fd events. */
    size_t budget = l->nheap;
    while (budget-- > 0 && l->nheap > 0 && l->heap[0]->due <= now) {
        struct fy_timer *t = l->heap[0];
        fy_timer_fn *fn = t->fn; /* under lk: fy_timer_set may re-arm it from any thread */
        heap_remove(l, t);
        pthread_mutex_unlock(&l->lk);
        fn(t);
        pthread_mutex_lock(&l->lk);
    }
    pthread_mutex_unlock(&l->lk);
}

/* The sleep: until the earliest timer (ns from now; -1: none), or a poke. */
static int64_t sleep_ns(struct fy_loop *l)
{
    pthread_mutex_lock(&l->lk);
    uint64_t due = l->nheap > 0 ? l->heap[0]->due : UINT64_MAX;
    int64_t ns = -1;
    if (l->tasks != NULL || l->finished != NULL || (l->stop && l->nwork == 0)) {
        ns = 0;
    } else if (due != UINT64_MAX) {
        uint64_t now = fy_now_mono_ns();
        uint64_t left = due <= now ? 0 : due - now;
        ns = left > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)left;
    }
    l->sleep_until = ns == 0 ? 0 : due;
    pthread_mutex_unlock(&l->lk);
    return ns;
}

/* ThreadSanitizer sees the order an fd's registration (epoll_ctl) gives
 * its events only through epoll_wait, which it intercepts; it does not
 * intercept epoll_pwait2. */
#if defined(__SANITIZE_THREAD__)
#define LOOP_PWAIT2 0
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define LOOP_PWAIT2 0
#endif
#endif
#ifndef LOOP_PWAIT2
#define LOOP_PWAIT2 1
#endif

/* epoll_wait with a timeout in nanoseconds: timers as short as tens of
 * microseconds (a stream's tail, stream_int.h) are kept to the
 * microsecond, not rounded up to a millisecond. epoll_pwait2 is Linux
 * 5.11; before it (and under TSan), milliseconds. */
static int loop_epoll(struct fy_loop *l, int64_t ns)
{
    static _Atomic int no_pwait2;
    if (LOOP_PWAIT2 && ns > 0 && !atomic_load_explicit(&no_pwait2, memory_order_relaxed)) {
        struct timespec ts = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
        int n = epoll_pwait2(l->epfd, l->batch, LOOP_BATCH, &ts, NULL);
        if (n >= 0 || errno == EINTR)
            return n;
        /* ENOSYS before Linux 5.11; EPERM where a seccomp filter predates it */
        atomic_store_explicit(&no_pwait2, 1, memory_order_relaxed);
    }
    int ms = ns < 0                            ? -1
             : ns > (int64_t)INT_MAX * 1000000 ? INT_MAX
                                               : (int)((ns + 999999) / 1000000);
    return epoll_wait(l->epfd, l->batch, LOOP_BATCH, ms);
}

static void *loop_thread(void *arg)
{
    struct fy_loop *l = arg;
    tl_loop = l;
    pthread_setname_np(pthread_self(), "ferry-io"); /* top -H, gdb, /proc: which thread is ours */
    prctl(PR_SET_TIMERSLACK, 1000UL); /* its short timers: 1 us late, not the default 50 */
    pthread_mutex_lock(&l->lk);
    l->running = 1; /* loop_start waits for this */
    pthread_cond_broadcast(&l->task_done);
    pthread_mutex_unlock(&l->lk);
    for (;;) {
        run_timers(l);
        run_tasks(l);
        int64_t ns = sleep_ns(l);
        pthread_mutex_lock(&l->lk);
        int stop = l->stop && l->tasks == NULL && l->nwork == 0;
        pthread_mutex_unlock(&l->lk);
        if (stop)
            break;
        int n = loop_epoll(l, ns);
        pthread_mutex_lock(&l->lk);
        l->sleep_until = 0;
        pthread_mutex_unlock(&l->lk);
        l->bn = n < 0 ? 0 : n;
        for (l->bi = 0; l->bi < l->bn; l->bi++) {
            struct fy_io *io = l->batch[l->bi].data.ptr;
            if (io != NULL)
                io->fn(io, l->batch[l->bi].events);
        }
        l->bn = 0;
    }
    return NULL;
}

/* --- starting and stopping ----------------------------------------------------- */

static void loop_free(struct fy_loop *l)
{
    if (l->epfd >= 0)
        close(l->epfd);
    if (l->poke.fd >= 0)
        close(l->poke.fd);
    pthread_cond_destroy(&l->task_done);
    pthread_mutex_destroy(&l->lk);
    free(l->heap);
    free(l);
}

static struct fy_loop *loop_start(int *err)
{
    struct fy_loop *l = calloc(1, sizeof *l);
    if (l == NULL) {
        *err = fy_err(FERRY_ENOMEM, "I/O thread");
        return NULL;
    }
    pthread_mutex_init(&l->lk, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_cond_init(&l->task_done, &ca);
    pthread_condattr_destroy(&ca);
    l->tasks_tail = &l->tasks;
    l->pid = getpid();
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    l->poke.fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (l->epfd < 0 || l->poke.fd < 0 ||
        fy_io_add(l, &l->poke, l->poke.fd, on_poke, FY_IO_IN) != 0) {
        *err = fy_syserr("I/O thread: epoll/eventfd");
        loop_free(l);
        return NULL;
    }
    int rc = pthread_create(&l->thr, NULL, loop_thread, l);
    if (rc != 0) {
        *err = fy_err(-rc, "I/O thread: pthread_create");
        loop_free(l);
        return NULL;
    }
    /* Return only once the thread runs its loop: whatever the thread's
     * start does (a sanitizer's bookkeeping, the allocator) is over, so a
     * process that forks right after its first listen or dial does not fork
     * in the middle of it (the child would inherit its locks, held). */
    pthread_mutex_lock(&l->lk);
    while (!l->running)
        pthread_cond_wait(&l->task_done, &l->lk);
    pthread_mutex_unlock(&l->lk);
    return l;
}

static void loop_stop(struct fy_loop *l)
{
    pthread_mutex_lock(&l->lk);
    l->stop = 1;
    poke(l);
    pthread_mutex_unlock(&l->lk);
    pthread_join(l->thr, NULL);
    loop_free(l);
}

/* A child of fork() has none of the parent's threads: forget them (their
 * memory is the parent's business; the child's copies are left alone). */
static void after_fork_child(void)
{
    pthread_mutex_init(&g.lk, NULL);
    g.loops = NULL;
    g.n = 0;
    g.holders = 0;
    g.next = 0;
}

static void loop_once(void) { pthread_atfork(NULL, NULL, after_fork_child); }

static int threads_wanted(void)
{
    const char *v = getenv("FERRY_IO_THREADS");
    if (v == NULL || *v == '\0')
        return 1;
    char *end;
    long n = strtol(v, &end, 10);
    if (*end != '\0' || n < 1)
        return 1;
    return n > LOOP_MAX_THREADS ? LOOP_MAX_THREADS : (int)n;
}

int fy_loop_hold(struct fy_loop **out)
{
    pthread_once(&g.once, loop_once);
    pthread_mutex_lock(&g.lk);
    int err = FERRY_ENOMEM;
    if (g.n == 0) {
        int want = threads_wanted();
        g.loops = calloc((size_t)want, sizeof *g.loops);
        for (int i = 0; g.loops != NULL && i < want; i++) {
            struct fy_loop *l = loop_start(&err);
            if (l == NULL)
                break;
            g.loops[g.n++] = l;
        }
        if (g.n == 0) { /* with fewer threads than asked, run on those */
            free(g.loops);
            g.loops = NULL;
            pthread_mutex_unlock(&g.lk);
            return err;
        }
    }
    struct fy_loop *l = g.loops[g.next++ % (unsigned)g.n];
    pthread_mutex_lock(&l->lk);
    size_t want = (size_t)(l->holders + 1) * LOOP_TIMERS_PER_SOCKET;
    if (want > l->cap_heap) {
        size_t cap = want * 2;
        struct fy_timer **v = realloc(l->heap, cap * sizeof *v);
        if (v == NULL) {
            pthread_mutex_unlock(&l->lk);
            pthread_mutex_unlock(&g.lk);
            return fy_err(FERRY_ENOMEM, "I/O thread: timers");
        }
        l->heap = v;
        l->cap_heap = cap;
    }
    l->holders++;
    pthread_mutex_unlock(&l->lk);
    *out = l;
    g.holders++;
    pthread_mutex_unlock(&g.lk);
    return 0;
}

void fy_loop_release(struct fy_loop *l)
{
    if (l == NULL || l->pid != getpid())
        return;
    pthread_mutex_lock(&g.lk);
    pthread_mutex_lock(&l->lk);
    l->holders--;
    pthread_mutex_unlock(&l->lk);
    if (--g.holders > 0) {
        pthread_mutex_unlock(&g.lk);
        return;
    }
    struct fy_loop **loops = g.loops;
    int n = g.n;
    g.loops = NULL;
    g.n = 0;
    g.next = 0;
    /* joined under g.lk: a socket opened meanwhile waits for fresh threads
     * rather than take one that is stopping */
    for (int i = 0; i < n; i++)
        loop_stop(loops[i]);
    free(loops);
    pthread_mutex_unlock(&g.lk);
}

int fy_loop_on_thread(const struct fy_loop *l) { return tl_loop == l; }

unsigned char *fy_loop_scratch(void) { return tl_loop ? tl_loop->scratch : NULL; }

int fy_loop_threads(void)
{
    pthread_mutex_lock(&g.lk);
    int n = g.n;
    pthread_mutex_unlock(&g.lk);
    return n;
}
