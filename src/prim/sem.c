/*
 * sem.c - named counting semaphores, in two kinds behind one API.
 *
 * The object is a region of kind FERRY_KIND_SEM whose user area is struct
 * sem_shared. The default kind counts in `value` and sleeps on it as a
 * futex; the undo kind keeps only the id of a System V semaphore there and
 * lets the kernel count, because only the kernel can give back the units of
 * a process that was SIGKILLed (SEM_UNDO): anything done in user space
 * would need a watcher to notice the death and would race with pid reuse.
 *
 * Everything read from the shared area is checked: a semid that is not a
 * one-element set owned by the object's owner is refused (FERRY_ECORRUPT),
 * a futex value out of range can only make post fail with EOVERFLOW.
 */
#include "region.h"

#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/sem.h>
#include <unistd.h>

struct sem_shared {
    _Atomic uint32_t value;   /* default kind: the count, and the futex word */
    _Atomic uint32_t waiters; /* default kind: sleepers (may overcount after a crash) */
    int32_t semid;            /* undo kind: System V semaphore set id */
    uint32_t reserved[13];
};
_Static_assert(sizeof(struct sem_shared) == 64, "one cache line");

struct ferry_sem {
    ferry_shm *shm;
    struct sem_shared *sh;
    int undo;
    int semid;
};

union semun_ {
    int val;
    struct semid_ds *buf;
};

struct sem_init_arg {
    unsigned value;
    unsigned mode;
    int undo;
    int semid; /* out */
};

static int sem_init_cb(void *addr, size_t size, void *arg)
{
    struct sem_shared *sh = addr;
    struct sem_init_arg *a = arg;
    FY_UNUSED(size);
    if (!a->undo) {
        atomic_store_explicit(&sh->value, a->value, memory_order_relaxed);
        return 0;
    }
    int id = semget(IPC_PRIVATE, 1, IPC_CREAT | (int)(a->mode & 0777));
    if (id < 0)
        return fy_syserr("semget");
    union semun_ u = {.val = (int)a->value};
    if (semctl(id, 0, SETVAL, u) != 0) {
        int rc = fy_syserr("semctl SETVAL");
        semctl(id, 0, IPC_RMID);
        return rc;
    }
    sh->semid = id;
    a->semid = id;
    return 0;
}

/* The semid stored in shared memory is untrusted: it must name a private
 * set of one semaphore that the object's owner created and still owns, or
 * anyone who can write the object could point us (and the IPC_RMID of
 * ferry_sem_unlink and `ferry rm`) at somebody else's set. */
static int sem_check_semid(int semid, const char *name, uid_t owner)
{
    struct semid_ds ds;
    union semun_ u = {.buf = &ds};
    if (semid < 0 || semctl(semid, 0, IPC_STAT, u) != 0) {
        if (errno == EACCES)
            return fy_syserr("semaphore %s", name);
        return fy_err(FERRY_ECORRUPT, "semaphore %s: kernel semaphore %d is gone", name, semid);
    }
    if (ds.sem_nsems != 1 || ds.sem_perm.__key != IPC_PRIVATE)
        return fy_err(FERRY_ECORRUPT, "semaphore %s: %d is not ferry's semaphore", name, semid);
    if (ds.sem_perm.cuid != owner || ds.sem_perm.uid != owner)
        return fy_err(FERRY_ECORRUPT,
                      "semaphore %s: kernel semaphore %d belongs to uid %u, the object to uid %u",
                      name, semid, (unsigned)ds.sem_perm.uid, (unsigned)owner);
    return 0;
}

int ferry_sem_open(ferry_sem **out, const char *name, int flags, unsigned mode, unsigned value)
{
    return ferry_sem_open_ex(out, name, flags, mode, value, (int64_t)geteuid());
}

int ferry_sem_open_ex(ferry_sem **out, const char *name, int flags, unsigned mode, unsigned value,
                      int64_t owner_uid)
{
    fy_err_clear();
    if (owner_uid < FERRY_OWNER_ANY || owner_uid > UINT32_MAX)
        return fy_err(FERRY_EINVAL, "sem open: owner uid %lld", (long long)owner_uid);
    if (out == NULL)
        return fy_err(FERRY_EINVAL, "sem open: no handle pointer");
    *out = NULL;
    if (value > FERRY_SEM_VALUE_MAX)
        return fy_err(FERRY_EINVAL, "sem open %s: initial value %u > %d", name ? name : "", value,
                      FERRY_SEM_VALUE_MAX);
    ferry_sem *s = calloc(1, sizeof *s);
    if (s == NULL)
        return fy_err(FERRY_ENOMEM, "sem open");
    struct sem_init_arg a = {.value = value,
                             .mode = mode ? mode : 0600,
                             .undo = (flags & FERRY_SEM_UNDO) != 0,
                             .semid = -1};
    ferry_shm_opts opts = {.mode = a.mode, .init = sem_init_cb, .init_arg = &a};
    int rc = fy_region_open(&s->shm, name, FERRY_KIND_SEM, sizeof(struct sem_shared), flags,
                            a.undo ? FERRY_SEM_UNDO : 0, &opts, owner_uid);
    if (rc != 0) {
        if (a.semid >= 0) /* created the kernel object, lost the name race */
            semctl(a.semid, 0, IPC_RMID);
        free(s);
        return rc;
    }
    s->sh = ferry_shm_addr(s->shm);
    s->undo = (s->shm->flags & FERRY_SEM_UNDO) != 0;
    if (s->undo) {
        s->semid = s->sh->semid; /* read once: later scribbles cannot redirect us */
        rc = sem_check_semid(s->semid, name, s->shm->owner);
        if (rc != 0) {
            ferry_shm_close(s->shm);
            free(s);
            return rc;
        }
    }
    *out = s;
    return 0;
}

static int sem_undo_op(ferry_sem *s, short delta, int nowait, uint64_t deadline)
{
    struct sembuf op = {
        .sem_num = 0, .sem_op = delta, .sem_flg = (short)(SEM_UNDO | (nowait ? IPC_NOWAIT : 0))};
    for (;;) {
        int r;
        if (deadline == UINT64_MAX || nowait) {
            r = semop(s->semid, &op, 1);
        } else {
            uint64_t now = fy_now_mono_ns();
            if (now >= deadline)
                return fy_err(FERRY_ETIMEDOUT, "semaphore %s", s->shm->name);
            uint64_t left = deadline - now;
            struct timespec ts = {.tv_sec = (time_t)(left / 1000000000u),
                                  .tv_nsec = (long)(left % 1000000000u)};
            r = semtimedop(s->semid, &op, 1, &ts);
        }
        if (r == 0)
            return 0;
        switch (errno) {
        case EAGAIN:
            if (nowait)
                return FERRY_EAGAIN;
            return fy_err(FERRY_ETIMEDOUT, "semaphore %s", s->shm->name);
        case ERANGE:
            return fy_err(FERRY_EOVERFLOW, "post semaphore %s", s->shm->name);
        case EINTR:
            if (deadline != UINT64_MAX)
                continue; /* timed waits keep their absolute deadline */
            return FERRY_EINTR;
        case EINVAL:
        case EIDRM:
            return fy_err(FERRY_EIDRM, "semaphore %s", s->shm->name);
        default:
            return fy_syserr("semop %s", s->shm->name);
        }
    }
}

int ferry_sem_post(ferry_sem *s)
{
    if (s == NULL)
        return FERRY_EINVAL;
    if (s->undo)
        return sem_undo_op(s, 1, 1, 0);
    uint32_t v = atomic_load_explicit(&s->sh->value, memory_order_relaxed);
    do {
        if (v >= FERRY_SEM_VALUE_MAX)
            return fy_err(FERRY_EOVERFLOW, "post semaphore %s", s->shm->name);
    } while (!atomic_compare_exchange_weak_explicit(&s->sh->value, &v, v + 1, memory_order_seq_cst,
                                                    memory_order_relaxed));
    /* seq_cst on both sides pairs with the waiter's increment of `waiters`
     * before it re-reads `value` in the kernel: either it sees our unit or
     * we see it waiting. */
    if (atomic_load_explicit(&s->sh->waiters, memory_order_seq_cst) != 0)
        fy_futex_wake(&s->sh->value, 1);
    return 0;
}

static int sem_take(ferry_sem *s, uint64_t deadline, int nowait)
{
    if (s == NULL)
        return FERRY_EINVAL;
    if (s->undo)
        return sem_undo_op(s, -1, nowait, deadline);
    _Atomic uint32_t *val = &s->sh->value;
    for (;;) {
        uint32_t v = atomic_load_explicit(val, memory_order_relaxed);
        while (v > 0) {
            if (atomic_compare_exchange_weak_explicit(val, &v, v - 1, memory_order_acquire,
                                                      memory_order_relaxed))
                return 0;
        }
        if (nowait)
            return FERRY_EAGAIN;
        atomic_fetch_add_explicit(&s->sh->waiters, 1, memory_order_seq_cst);
        int rc = fy_futex_wait(val, 0, deadline);
        atomic_fetch_sub_explicit(&s->sh->waiters, 1, memory_order_relaxed);
        if (rc == FERRY_ETIMEDOUT)
            return fy_err(rc, "semaphore %s", s->shm->name);
        if (rc != 0 && rc != FERRY_EINTR)
            return fy_err(rc, "futex wait on semaphore %s", s->shm->name);
    }
}

int ferry_sem_wait(ferry_sem *s) { return sem_take(s, UINT64_MAX, 0); }

int ferry_sem_trywait(ferry_sem *s) { return sem_take(s, 0, 1); }

int ferry_sem_timedwait(ferry_sem *s, int timeout_ms)
{
    if (timeout_ms == 0)
        return sem_take(s, 0, 1) == FERRY_EAGAIN ? FERRY_ETIMEDOUT : 0;
    return sem_take(s, fy_deadline_ns(timeout_ms), 0);
}

int ferry_sem_value(ferry_sem *s)
{
    if (s == NULL)
        return FERRY_EINVAL;
    if (!s->undo) {
        uint32_t v = atomic_load_explicit(&s->sh->value, memory_order_relaxed);
        return v > (uint32_t)INT32_MAX ? FERRY_ECORRUPT : (int)v;
    }
    int v = semctl(s->semid, 0, GETVAL);
    if (v < 0)
        return errno == EINVAL || errno == EIDRM ? FERRY_EIDRM : -errno;
    return v;
}

int ferry_sem_is_undo(const ferry_sem *s) { return s ? s->undo : 0; }

int ferry_sem_close(ferry_sem *s)
{
    if (s == NULL)
        return 0;
    ferry_shm_close(s->shm);
    free(s);
    return 0;
}

/* Removes the kernel semaphore of an undo-kind object, if it is one, and
 * only if it passes sem_check_semid against the object's owner. Used by
 * ferry_sem_unlink() and ferry_object_remove(), whoever owns the object:
 * the header and the id are read with pread, never mapped, so an object
 * truncated meanwhile cannot make us fault. */
int fy_sem_remove_kernel(const char *name)
{
    struct fy_region_hdr hdr;
    struct stat st;
    struct sem_shared sh;
    int rc = fy_region_peek_user(name, &hdr, &st, &sh, sizeof sh);
    if (rc != 0)
        return rc;
    if (hdr.kind != FERRY_KIND_SEM)
        return fy_err(FERRY_EKIND, "%s is not a semaphore", name);
    if (hdr.flags & FERRY_SEM_UNDO) {
        rc = sem_check_semid(sh.semid, name, st.st_uid);
        if (rc == 0 && semctl(sh.semid, 0, IPC_RMID) != 0)
            rc = fy_syserr("remove kernel semaphore %d of %s", sh.semid, name);
    }
    return rc;
}

/* The value of semaphore NAME for listing, without mapping it: -1 when it
 * cannot be read. */
int fy_sem_peek_value(const char *name, int *undo)
{
    struct fy_region_hdr hdr;
    struct stat st;
    struct sem_shared sh;
    *undo = 0;
    if (fy_region_peek_user(name, &hdr, &st, &sh, sizeof sh) != 0 || hdr.kind != FERRY_KIND_SEM)
        return -1;
    if (!(hdr.flags & FERRY_SEM_UNDO)) {
        uint32_t v = atomic_load_explicit(&sh.value, memory_order_relaxed);
        return v > FERRY_SEM_VALUE_MAX ? -1 : (int)v;
    }
    *undo = 1;
    if (sem_check_semid(sh.semid, name, st.st_uid) != 0)
        return -1;
    int v = semctl(sh.semid, 0, GETVAL);
    return v < 0 ? -1 : v;
}

int ferry_sem_unlink(const char *name)
{
    char path[256];
    fy_err_clear();
    int rc = fy_sem_remove_kernel(name);
    if (rc != 0 && rc != FERRY_ECORRUPT)
        return rc;
    fy_region_path(path, sizeof path, name);
    if (unlink(path) != 0)
        return fy_syserr("unlink %s", path);
    return 0;
}
