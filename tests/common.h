/*
 * common.h - helpers for ferry's tests: unique object names (so `ctest -j`
 * is safe), child processes, and pipes used as "I am ready" signals so that
 * no test sleeps in place of synchronisation.
 */
#ifndef FERRY_TEST_COMMON_H
#define FERRY_TEST_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ferry.h"

/* T_SANITIZED: built with ASan or TSan (gcc says so with __SANITIZE_*__,
 * clang only through __has_feature). RSS and heap figures mean nothing
 * there: shadow memory and the sanitizer's own allocator. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define T_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define T_SANITIZED 1
#endif
#endif
#ifndef T_SANITIZED
#define T_SANITIZED 0
#endif
#if defined(__SANITIZE_THREAD__)
#define T_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define T_TSAN 1
#endif
#endif
#ifndef T_TSAN
#define T_TSAN 0
#endif

/* "t-<tag>-<pid>-<counter>": unique across processes and calls. */
static inline const char *t_name(char *buf, size_t len, const char *tag)
{
    static unsigned counter;
    snprintf(buf, len, "t-%s-%d-%u", tag, (int)getpid(), counter++);
    return buf;
}

/* "shm://t-<tag>-<pid>-<counter>": a unique endpoint. */
static inline const char *t_url(char *buf, size_t len, const char *tag)
{
    char n[64];
    t_name(n, sizeof n, tag);
    snprintf(buf, len, "shm://%s", n);
    return buf;
}

/* A URL to listen at for scheme "shm", "ipc" or "tcp" (tcp: a free port
 * on loopback, chosen at listen time: read it back with
 * ferry_socket_addr). */
static inline void t_url_for(char *buf, size_t len, const char *scheme, const char *tag)
{
    if (strcmp(scheme, "shm") == 0)
        t_url(buf, len, tag);
    else if (strcmp(scheme, "ipc") == 0)
        snprintf(buf, len, "ipc://@ferry-test-%s-%d", tag, (int)getpid());
    else
        snprintf(buf, len, "tcp://127.0.0.1:*");
}

/* A socket of type whose sends and receives give up after 10 s. */
static inline ferry_socket *t_open_timed(int type)
{
    ferry_socket *s = NULL;
    assert_int_equal(ferry_socket_open(&s, type), 0);
    ferry_setopt_int(s, FERRY_OPT_RCVTIMEO, 10000);
    ferry_setopt_int(s, FERRY_OPT_SNDTIMEO, 10000);
    return s;
}

/* In a child process: exit with code (and say why on stderr) unless cond. */
#define CHILD_CHECK(cond, code)                                                                    \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "child %d: %s failed at line %d: %s\n", (int)getpid(), #cond,          \
                    __LINE__, ferry_errdetail());                                                  \
            _exit(code);                                                                           \
        }                                                                                          \
    } while (0)

static inline void t_path(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "/dev/shm/ferry.%s", name);
}

static inline int t_exists(const char *name)
{
    char p[300];
    struct stat st;
    t_path(p, sizeof p, name);
    return stat(p, &st) == 0;
}

#include <sys/prctl.h>

/* In a child: die when the test process dies, so that a failed test leaves
 * no process running behind it. */
static inline void t_die_with_parent(void) { prctl(PR_SET_PDEATHSIG, SIGKILL); }

/* Waits for pid and returns its exit code, or 128+signal. */
static inline int t_wait(pid_t pid)
{
    int st;
    while (waitpid(pid, &st, 0) < 0) {
    }
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    return 128 + WTERMSIG(st);
}

/* A receive on a thread of its own (run with pthread_create): one message
 * into got (cap bytes); with reply, its size is then sent back as the
 * answer (a REP worker). rc: the first call that failed, or 0. */
struct t_recv_job {
    ferry_socket *s;
    unsigned char *got;
    size_t cap, n;
    int reply;
    int rc;
};

static inline void *t_recv_thread(void *arg)
{
    struct t_recv_job *j = arg;
    j->rc = ferry_recv(j->s, j->got, j->cap, &j->n, 0);
    if (j->rc == 0 && j->reply)
        j->rc = ferry_send(j->s, &j->n, sizeof j->n, 0);
    return NULL;
}

/* A one-shot signal between processes: the writer says "ready" (or sends
 * a byte), the reader blocks until it comes. */
struct t_pipe {
    int r, w;
};

static inline void t_pipe_open(struct t_pipe *p)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    p->r = fds[0];
    p->w = fds[1];
}

static inline void t_pipe_send(struct t_pipe *p, char c)
{
    if (write(p->w, &c, 1) != 1)
        _exit(99);
}

static inline char t_pipe_recv(struct t_pipe *p)
{
    char c = 0;
    if (read(p->r, &c, 1) != 1)
        return 0;
    return c;
}

static inline void t_pipe_close(struct t_pipe *p)
{
    close(p->r);
    close(p->w);
}

/* Raises the soft limit on open files to the hard one; 0 when at least
 * need descriptors may then be open. */
static inline int t_raise_nofile(rlim_t need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -1;
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    return rl.rlim_cur >= need ? 0 : -1;
}

static inline uint64_t t_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

#endif
